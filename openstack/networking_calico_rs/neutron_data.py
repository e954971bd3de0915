"""Reading what the translation needs from Neutron's plugins: a port's
subnets, security groups (with their rules), network and floating IPs, and
the whole snapshot a resync compares against. Bulk reads for the snapshot,
so a resync costs a handful of queries, not several per port."""

from neutron_lib.plugins import constants as plugin_constants
from neutron_lib.plugins import directory

ENDPOINT_OWNER_PREFIXES = ("compute:", "kuryr:container")


def is_endpoint_port(port):
    return (port.get("device_owner") or "").startswith(
        ENDPOINT_OWNER_PREFIXES)


def _l3_plugin():
    return directory.get_plugin(plugin_constants.L3)


def _floating_ips(context, port_ids):
    l3 = _l3_plugin()
    if l3 is None or not port_ids:
        return []
    return l3.get_floatingips(context, filters={"port_id": list(port_ids)})


def port_extras(plugin, context, port):
    """Everything about one port the translation reads besides the port."""
    subnet_ids = [ip["subnet_id"] for ip in port.get("fixed_ips") or []]
    sg_ids = port.get("security_groups") or []
    extras = {
        "subnets": plugin.get_subnets(context,
                                      filters={"id": subnet_ids})
        if subnet_ids else [],
        "security_groups": plugin.get_security_groups(
            context, filters={"id": sg_ids}) if sg_ids else [],
        "floating_ips": _floating_ips(context, [port["id"]]),
    }
    try:
        extras["network"] = plugin.get_network(context, port["network_id"])
    except Exception:
        pass
    return extras


def snapshot(plugin, context):
    """Neutron's ports (with their extras), security groups and subnets."""
    subnets = plugin.get_subnets(context)
    groups = plugin.get_security_groups(context)
    networks = {n["id"]: n for n in plugin.get_networks(context)}
    subnets_by_id = {s["id"]: s for s in subnets}
    groups_by_id = {g["id"]: g for g in groups}
    ports = [p for p in plugin.get_ports(context) if is_endpoint_port(p)]
    fips = {}
    for fip in _floating_ips(context, [p["id"] for p in ports]):
        fips.setdefault(fip.get("port_id"), []).append(fip)
    entries = []
    for p in ports:
        extras = {
            "subnets": [subnets_by_id[ip["subnet_id"]]
                        for ip in p.get("fixed_ips") or []
                        if ip["subnet_id"] in subnets_by_id],
            "security_groups": [groups_by_id[g]
                                for g in p.get("security_groups") or []
                                if g in groups_by_id],
            "floating_ips": fips.get(p["id"], []),
        }
        if p["network_id"] in networks:
            extras["network"] = networks[p["network_id"]]
        entries.append({"port": p, "extras": extras})
    return {"ports": entries, "security_groups": groups, "subnets": subnets}
