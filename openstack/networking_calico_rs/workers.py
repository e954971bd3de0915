"""The leader worker: forked by neutron-server (one process), it takes
part in the election and, while it leads, resyncs once and turns the
agents' status keys into Neutron agent heartbeats and port status. Agent
rows are written straight to Neutron's database, as the RPC handler of a
real agent's ``report_state`` would, so no message bus is needed."""

import gc
import threading
import time

import eventlet
from neutron.db import provisioning_blocks
from neutron_lib.callbacks import resources
from neutron_lib import context as n_context
from neutron_lib.plugins import directory
from neutron_lib import worker
from oslo_config import cfg
from oslo_log import log

from networking_calico_rs import core as core_mod
from networking_calico_rs import keystone
from networking_calico_rs import neutron_data

LOG = log.getLogger(__name__)

AGENT_TYPE = "Calico per-host agent (felix)"


def agent_state(host, start_flag):
    state = {"agent_type": AGENT_TYPE, "binary": "calico-felix",
             "host": host, "topic": "N/A", "configurations": {}}
    if start_flag:
        state["start_flag"] = True
    return state


class CalicoLeaderWorker(worker.BaseWorker):
    def __init__(self, driver):
        super(CalicoLeaderWorker, self).__init__(
            worker_process_count=1, desc="calico leader worker")
        self._driver = driver
        self._thread = None
        self._core = None
        self._running = False

    def start(self):
        super(CalicoLeaderWorker, self).start(desc="calico leader worker")
        self._running = True
        self._thread = eventlet.spawn(self._run)

    def stop(self):
        self._running = False
        if self._core is not None:
            try:
                self._core.call("resign")
            except Exception:
                pass

    def wait(self):
        if self._thread is not None:
            self._thread.wait()

    def reset(self):
        pass

    def _run(self):
        self._core = core_mod.Core.from_conf(cfg.CONF)
        leading = False
        while self._running:
            try:
                now = self._core.call("elect")["leader"]
                if now and not leading:
                    LOG.info("calico: this process leads")
                    self._on_elected()
                elif leading and not now:
                    LOG.warning("calico: no longer the leader")
                leading = now
                if leading:
                    self._apply_status()
                else:
                    eventlet.sleep(cfg.CONF.calico.status_poll_secs)
            except Exception:
                LOG.exception("calico: leader loop failed; retrying")
                eventlet.sleep(5)
        LOG.info("calico: leader worker stopped")

    def _on_elected(self):
        self._core.call("provide_felix_config")
        if cfg.CONF.calico.startup_resync == "always":
            report = resync(self._core)
            LOG.info("calico: resync done: %s", report)

    def _apply_status(self):
        timeout_ms = cfg.CONF.calico.status_poll_secs * 1000
        events = self._core.call("poll_status", timeout_ms=timeout_ms)
        if not events:
            return
        plugin = directory.get_plugin()
        ctx = n_context.get_admin_context()
        for ev in events:
            try:
                if ev["event"] == "agent_alive":
                    plugin.create_or_update_agent(
                        ctx, agent_state(ev["host"], ev["start_flag"]))
                else:
                    set_port_status(plugin, ctx, ev)
            except Exception:
                LOG.exception("calico: cannot record %s", ev)


def set_port_status(plugin, ctx, ev):
    port_id, status, host = ev["port_id"], ev["status"], ev["host"]
    if status == "ACTIVE":
        # Completes the L2-agent provisioning block ML2 put on the port.
        provisioning_blocks.provisioning_complete(
            ctx, port_id, resources.PORT,
            provisioning_blocks.L2_AGENT_ENTITY)
    plugin.update_port_status(ctx, port_id, status, host=host)


def resync(core):
    """One resync from Neutron's database; returns the report, with the
    time of the whole: Keystone's project list, the read, the hand-over and
    the datastore's part.

    Keystone's projects are listed while Neutron's database is read (a
    thread; a green one in neutron-server): a cold listing is four
    requests (discovery, token, discovery, list), 0.15-0.3 s measured.

    Python's cyclic garbage collector is off meanwhile: the snapshot makes
    tens of thousands of small dicts and lists, which set off full
    collections that took as long as the read itself (none of them is
    garbage; the collector runs again afterwards)."""
    start = time.monotonic()
    projects = keystone.projects(cfg.CONF)
    timing = {}

    def list_projects():
        projects.refresh()
        timing["keystone"] = time.monotonic() - start

    listing = threading.Thread(target=list_projects, daemon=True)
    listing.start()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        plugin = directory.get_plugin()
        snap = neutron_data.snapshot(plugin, n_context.get_admin_context())
        read_secs = time.monotonic() - start
        listing.join()
        neutron_data.add_projects(snap, projects)
        report = core.call("resync", snapshot=snap)
    finally:
        if was_enabled:
            gc.enable()
    report["total_seconds"] = round(time.monotonic() - start, 3)
    report["neutron_read_seconds"] = round(read_secs, 3)
    report["keystone_seconds"] = round(timing.get("keystone", 0.0), 3)
    report["ports"] = len(snap["ports"])
    report["security_groups"] = len(snap["security_groups"])
    report["subnets_read"] = len(snap["subnets"])
    return report
