"""The ``[calico]`` options: upstream networking-calico's, plus ours for
the embedded datastore and the co-process binary."""

import shutil

from oslo_config import cfg

GROUP = "calico"

OPTS = [
    # Upstream's datastore options.
    cfg.StrOpt("etcd_host", default="127.0.0.1", help="etcd host or proxy"),
    cfg.PortOpt("etcd_port", default=2379, help="etcd port"),
    cfg.StrOpt("etcd_scheme", default="http", help="http or https"),
    cfg.StrOpt("etcd_key_file", help="client key for etcd TLS"),
    cfg.StrOpt("etcd_cert_file", help="client certificate for etcd TLS"),
    cfg.StrOpt("etcd_ca_cert_file", help="CA certificate for etcd TLS"),
    cfg.StrOpt("etcd_username", help="etcd user"),
    cfg.StrOpt("etcd_password", secret=True, help="etcd password"),
    cfg.IntOpt("etcd_timeout", default=60, help="etcd request timeout (s)"),
    cfg.StrOpt("openstack_region",
               help="Region: namespace openstack-region-<region> and "
                    "region-<region> status paths"),
    # Upstream's QoS defaults (the translation applies them).
    cfg.IntOpt("max_ingress_connections_per_port", default=0),
    cfg.IntOpt("max_egress_connections_per_port", default=0),
    cfg.IntOpt("ingress_burst_bits", default=4294967296),
    cfg.IntOpt("egress_burst_bits", default=4294967296),
    cfg.IntOpt("ingress_minburst_bytes", default=0),
    cfg.IntOpt("egress_minburst_bytes", default=0),
    cfg.IntOpt("ingress_burst_packets", default=5),
    cfg.IntOpt("egress_burst_packets", default=5),
    # Upstream's driver options.
    cfg.StrOpt("elector_name", help="Name in the election key "
               "(default: this host's name)"),
    cfg.StrOpt("startup_resync", default="always",
               choices=["always", "never"],
               help="Resync the datastore from Neutron when elected"),
    cfg.IntOpt("resync_interval_secs", default=60,
               deprecated_for_removal=True,
               help="Ignored, as upstream since the periodic resync went"),
    cfg.IntOpt("resync_max_interval_secs", default=3600,
               deprecated_for_removal=True, help="Ignored"),
    cfg.IntOpt("num_port_status_threads", default=4, help="Ignored: "
               "port status is written in order by the leader"),
    cfg.IntOpt("project_name_cache_max", default=100,
               help="Keystone projects cached for the project-name labels "
                    "(the cache is emptied when it holds this many)"),
    # Ours.
    cfg.StrOpt("datastore_type", default="etcdv3",
               choices=["etcdv3", "local"],
               help="etcdv3 (as upstream) or local, the embedded "
                    "single-file store of a one-host cloud"),
    cfg.StrOpt("local_datastore_path", default="/var/lib/calico/calico.db",
               help="The embedded store's file (datastore_type = local)"),
    cfg.StrOpt("calico_neutron_path",
               help="The calico-neutron binary (default: from PATH, else "
                    "/usr/local/bin/calico-neutron)"),
    cfg.IntOpt("status_poll_secs", default=5,
               help="How long the leader waits for status changes per "
                    "round (the election is refreshed between rounds)"),
]

# The options the co-process reads, by name.
CORE_OPTIONS = [
    "etcd_host", "etcd_port", "etcd_scheme", "etcd_key_file",
    "etcd_cert_file", "etcd_ca_cert_file", "etcd_username", "etcd_password",
    "etcd_timeout", "openstack_region", "max_ingress_connections_per_port",
    "max_egress_connections_per_port", "ingress_burst_bits",
    "egress_burst_bits", "ingress_minburst_bytes", "egress_minburst_bytes",
    "ingress_burst_packets", "egress_burst_packets", "datastore_type",
    "local_datastore_path",
]


def register(conf=cfg.CONF):
    conf.register_opts(OPTS, GROUP)


def core_options(conf=cfg.CONF):
    group = getattr(conf, GROUP)
    return {name: getattr(group, name) for name in CORE_OPTIONS
            if getattr(group, name) is not None}


def binary_path(conf=cfg.CONF):
    explicit = getattr(conf, GROUP).calico_neutron_path
    if explicit:
        return explicit
    return shutil.which("calico-neutron") or "/usr/local/bin/calico-neutron"
