"""The ML2 mechanism driver ``calico``.

Binding as upstream (a live "Calico per-host agent (felix)" on the host,
vif_type ``tap``), but on ``local``, ``flat`` and ``vxlan`` segments: in
calico-rs a tenant network is routed at L3 whatever Neutron calls it.
Every change is handed to the co-process with the object as Neutron's
database now has it."""

import time

from neutron.plugins.ml2.drivers import mech_agent
from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import events
from neutron_lib.callbacks import registry
from neutron_lib.callbacks import resources
from neutron_lib import context as n_context
from neutron_lib import exceptions as n_exc
from neutron_lib.plugins import directory
from oslo_config import cfg
from oslo_log import log

from networking_calico_rs import config
from networking_calico_rs import core as core_mod
from networking_calico_rs import keystone
from networking_calico_rs import neutron_data

LOG = log.getLogger(__name__)

AGENT_TYPE = "Calico per-host agent (felix)"
VIF_TYPE = "tap"
VIF_DETAILS = {portbindings.CAP_PORT_FILTER: True,
               "mac_address": "00:61:fe:ed:ca:fe"}
NETWORK_TYPES = ("local", "flat", "vxlan")


class CalicoRuleNotSupported(n_exc.InvalidInput):
    pass


class CalicoMechanismDriver(mech_agent.SimpleAgentMechanismDriverBase):

    def __init__(self):
        super(CalicoMechanismDriver, self).__init__(
            AGENT_TYPE, VIF_TYPE, VIF_DETAILS)
        self.core = None

    def initialize(self):
        config.register(cfg.CONF)
        self.core = core_mod.Core.from_conf(cfg.CONF)
        self._subscribe()

    # --- binding -----------------------------------------------------
    def get_allowed_network_types(self, agent=None):
        return NETWORK_TYPES

    def get_mappings(self, agent):
        return {}

    def physnet_in_mappings(self, physnet, mappings):
        # Calico routes; no bridge mappings decide where a flat network is.
        return True

    def get_workers(self):
        from networking_calico_rs import workers
        return [workers.CalicoLeaderWorker(self)]

    # --- subnets -----------------------------------------------------
    def create_subnet_postcommit(self, context):
        self._call("sync_subnet", "subnet " + context.current["id"],
                   subnet=context.current)

    def update_subnet_postcommit(self, context):
        self.create_subnet_postcommit(context)

    def delete_subnet_postcommit(self, context):
        self._call("delete_subnet", "subnet " + context.current["id"],
                   id=context.current["id"])

    # --- ports -------------------------------------------------------
    def create_port_postcommit(self, context):
        # Bound ports arrive as an update (ML2 binds after this call).
        if context.current.get(portbindings.VIF_TYPE) in (None, "unbound"):
            return
        self._sync_port(None, context.current)

    def update_port_postcommit(self, context):
        self._sync_port(context.original, context.current)

    def delete_port_postcommit(self, context):
        if neutron_data.is_endpoint_port(context.current):
            self._call("delete_port", "port " + context.current["id"],
                       port=context.current)

    def _sync_port(self, original, current, plugin_context=None):
        plugin = directory.get_plugin()
        ctx = plugin_context or n_context.get_admin_context()
        try:
            port = plugin.get_port(ctx, current["id"])
        except n_exc.PortNotFound:
            return
        if not neutron_data.is_endpoint_port(port) and not (
                original and neutron_data.is_endpoint_port(original)):
            return
        start = time.monotonic()
        extras = neutron_data.port_extras(
            plugin, ctx, port, keystone.projects(cfg.CONF))
        try:
            written = self.core.call(
                "sync_port", original=original, current=port,
                event_current=current, extras=extras)
            if written:
                LOG.info("calico: port %s synced in %.1f ms (%s)", port["id"],
                         (time.monotonic() - start) * 1000,
                         ", ".join("%s %s" % (w["outcome"], w["key"].rsplit("/", 1)[-1])
                                   for w in written))
        except core_mod.CoreError as e:
            LOG.error("calico: port %s not written: %s", port["id"], e)
            if e.kind == "translate":
                self._report_port_error(plugin, ctx, port)
            return
        except Exception:
            # Never fail Neutron's request for our sake: the leader's next
            # resync writes what this call could not.
            LOG.exception("calico: port %s not written", port["id"])
            return
        # Written again after an error we reported (not our own status
        # change coming back, which writes nothing).
        if written and port.get("status") == "ERROR":
            self._recover_port_status(plugin, ctx, port)

    def _recover_port_status(self, plugin, ctx, port):
        """A port we reported in ERROR is written again: back to what its
        host's agent last said (no new status key comes for it)."""
        host = port.get(portbindings.HOST_ID)
        if not host:
            return
        status = self.core.call("port_status", host=host,
                                port_id=port["id"]) or "DOWN"
        plugin.update_port_status(ctx, port["id"], status, host=host)

    def _report_port_error(self, plugin, ctx, port):
        try:
            done = plugin.update_port_status(
                ctx, port["id"], "ERROR", host=port.get(portbindings.HOST_ID))
            LOG.info("calico: port %s reported ERROR (%s)", port["id"], done)
        except Exception:
            LOG.exception("calico: cannot set port %s to ERROR", port["id"])

    def resync_ports(self, port_ids):
        """Rewrites ports whose extras changed (a floating IP moved)."""
        for port_id in port_ids:
            if port_id:
                self._sync_port(None, {"id": port_id})

    # --- security groups (Neutron's callback registry) ---------------
    def _subscribe(self):
        sg, rule = resources.SECURITY_GROUP, resources.SECURITY_GROUP_RULE
        fip = resources.FLOATING_IP
        for res, event, handler in [
                (sg, events.AFTER_CREATE, self._on_sg_changed),
                (sg, events.AFTER_UPDATE, self._on_sg_changed),
                (sg, events.AFTER_DELETE, self._on_sg_deleted),
                (rule, events.BEFORE_CREATE, self._on_rule_before_create),
                (rule, events.AFTER_CREATE, self._on_rule_changed),
                (rule, events.AFTER_DELETE, self._on_rule_changed),
                (fip, events.AFTER_CREATE, self._on_fip_changed),
                (fip, events.AFTER_UPDATE, self._on_fip_changed),
                (fip, events.AFTER_DELETE, self._on_fip_changed)]:
            registry.subscribe(handler, res, event)

    def _on_sg_changed(self, resource, event, trigger, payload=None):
        self.sync_security_group(payload.resource_id)

    def _on_sg_deleted(self, resource, event, trigger, payload=None):
        self._call("delete_security_group",
                   "security group " + payload.resource_id,
                   id=payload.resource_id)

    def _on_rule_changed(self, resource, event, trigger, payload=None):
        sg_id = (payload.metadata or {}).get("security_group_id")
        if not sg_id and payload.states:
            sg_id = payload.latest_state.get("security_group_id")
        if sg_id:
            self.sync_security_group(sg_id)

    def _on_rule_before_create(self, resource, event, trigger,
                               payload=None):
        """Refuses a rule Calico cannot express, so that no group is ever
        half-written: the API call fails with the reason."""
        rule = dict(payload.latest_state)
        group = {"id": rule.get("security_group_id"),
                 "security_group_rules": [rule]}
        try:
            self.core.call("validate_security_group", security_group=group)
        except core_mod.CoreError as e:
            if e.kind == "translate":
                raise CalicoRuleNotSupported(
                    error_message="calico cannot express this rule: %s" % e)
            # The check could not run (e.g. the datastore is down at the
            # co-process's start): the rule is accepted, and a group that
            # cannot be expressed keeps its last good policy when written.
            LOG.warning("calico: rule not checked: %s", e)
        except Exception:
            LOG.exception("calico: rule not checked")

    def sync_security_group(self, sg_id):
        plugin = directory.get_plugin()
        ctx = n_context.get_admin_context()
        try:
            group = plugin.get_security_group(ctx, sg_id)
        except Exception:
            LOG.info("calico: security group %s is gone", sg_id)
            return
        self._call("sync_security_group", "security group " + sg_id,
                   security_group=group)

    def _on_fip_changed(self, resource, event, trigger, payload=None):
        port_ids = set()
        for state in payload.states or ():
            if isinstance(state, dict):
                port_ids.add(state.get("port_id"))
        self.resync_ports(sorted(p for p in port_ids if p))

    def _call(self, op, what, **args):
        try:
            return self.core.call(op, **args)
        except core_mod.CoreError as e:
            LOG.error("calico: %s not written: %s", what, e)
        except Exception:
            LOG.exception("calico: %s not written", what)
