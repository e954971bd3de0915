"""``calico-resync``: reconcile the datastore with Neutron's database now.

    calico-resync --config-file /etc/neutron/neutron.conf \\
                  --config-file /etc/neutron/plugins/ml2/ml2_conf.ini

Loads Neutron's plugins as neutron-server does (so it reads the same
database and the same ``[calico]`` options), runs one resync and prints
what it did per kind, with timings; ``--json`` prints the report as JSON.
Exits 1 if any object could not be written."""

import json
import sys


def _load_plugin(args):
    from neutron.common import config as common_config
    common_config.register_common_config_options()
    common_config.init(args)
    from neutron import manager
    manager.init()
    from neutron_lib.plugins import directory
    return directory.get_plugin()


def _print_table(report):
    rows = [("KIND", "CREATED", "UPDATED", "DELETED", "UNCHANGED",
             "ERRORS", "SECONDS")]
    for kind in ("subnets", "policies", "endpoints", "felix_config"):
        k = report[kind]
        rows.append((kind, k["created"], k["updated"], k["deleted"],
                     k["unchanged"], len(k["errors"]),
                     "%.3f" % k["seconds"]))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    for kind in ("subnets", "policies", "endpoints", "felix_config"):
        for err in report[kind]["errors"]:
            print("error: %s" % err)
    print("read %d ports, %d security groups, %d subnets from Neutron in "
          "%.3f s (Keystone's projects: %.3f s); datastore reconciled in "
          "%.3f s; %.3f s in all"
          % (report["ports"], report["security_groups"],
             report["subnets_read"], report["neutron_read_seconds"],
             report["keystone_seconds"], report["seconds"],
             report["total_seconds"]))


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv
    if as_json:
        argv.remove("--json")
    _load_plugin(argv)
    from oslo_config import cfg
    from networking_calico_rs import config
    from networking_calico_rs import core as core_mod
    from networking_calico_rs import workers
    config.register(cfg.CONF)
    core = core_mod.Core.from_conf(cfg.CONF)
    try:
        report = workers.resync(core)
    finally:
        core.close()
    if as_json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        _print_table(report)
    errors = sum(len(report[k]["errors"]) for k in
                 ("subnets", "policies", "endpoints", "felix_config"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
