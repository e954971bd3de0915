//! The small decisions of the mechanism driver itself, as upstream's
//! `mech_calico.py` makes them: which ports it handles, which updates it
//! ignores, where a port's WorkloadEndpoints should exist, what it tells
//! Nova at binding, and how agent and endpoint status become Neutron's.

use serde_json::{json, Value};

use crate::neutron::Port;

/// The Neutron agent type of each host's Calico agent.
pub const AGENT_TYPE: &str = "Calico per-host agent (felix)";
/// The agent's binary, as `openstack network agent list` shows it.
pub const AGENT_BINARY: &str = "calico-felix";
/// Neutron's topic for L2 agents (`neutron_lib.constants.L2_AGENT_TOPIC`).
pub const L2_AGENT_TOPIC: &str = "N/A";
/// The `vif_type` of a port bound by this driver: Nova plugs a routed tap.
pub const VIF_TYPE: &str = "tap";
/// The tap MAC Nova sets when the port's own MAC cannot be used.
pub const DEFAULT_TAP_MAC: &str = "00:61:fe:ed:ca:fe";
/// Network types whose ports bind. Upstream binds `local` and `flat`
/// only; we also bind `vxlan`, the article's tenant network type: Calico
/// routes every port at L3 (natively, by BGP or over VXLAN between hosts),
/// whatever Neutron calls the network.
pub const BINDABLE_NETWORK_TYPES: [&str; 3] = ["local", "flat", "vxlan"];

/// The agent state reported to Neutron for a live host (what upstream
/// casts to `report_state` when the host's status key is written);
/// `start_flag` when the agent has just started.
pub fn felix_agent_state(host: &str, start_flag: bool) -> Value {
    let mut state = json!({
        "agent_type": AGENT_TYPE,
        "binary": AGENT_BINARY,
        "host": host,
        "topic": L2_AGENT_TOPIC,
    });
    if start_flag {
        state["start_flag"] = Value::Bool(true);
    }
    state
}

/// Whether ports on a segment of this network type bind.
pub fn network_type_bindable(network_type: &str) -> bool {
    BINDABLE_NETWORK_TYPES.contains(&network_type)
}

/// The `binding:vif_details` given to Nova: `port_filter` and the tap MAC,
/// derived from the port's MAC as older libvirt did (first octet `fe`), so
/// that a live migration to a newer libvirt keeps the MAC the VM has
/// learned; `DEFAULT_TAP_MAC` when the port's MAC is not `xx:xx:xx:xx:xx:xx`.
/// (Upstream v3.31 always gave `DEFAULT_TAP_MAC`; later releases derive it.)
pub fn vif_details(port_mac: Option<&str>) -> Value {
    let derived = port_mac.and_then(|mac| {
        let parts: Vec<&str> = mac.split(':').collect();
        (parts.len() == 6 && parts.iter().all(|p| p.len() == 2))
            .then(|| format!("fe:{}", parts[1..].join(":")))
    });
    json!({
        "port_filter": true,
        "mac_address": derived.as_deref().unwrap_or(DEFAULT_TAP_MAC),
    })
}

/// Whether an update changed nothing but `status`, `updated_at` and
/// `revision_number` (our own status report coming back): ignored.
pub fn is_status_only_change(original: &Value, current: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            for f in ["status", "updated_at", "revision_number"] {
                m.remove(f);
            }
        }
        v
    };
    strip(original) == strip(current)
}

/// Whether `port` (as now in Neutron's database; `None` once deleted)
/// should have a WorkloadEndpoint on `host`: bound there (any `vif_type`
/// but `unbound`, and also while `unbound` during a live migration's
/// rebind, as the VM still runs there), or being live-migrated there.
pub fn wep_desired_on(port: Option<&Port>, host: &str) -> bool {
    let Some(port) = port else {
        return false;
    };
    let migrating_to = port.migrating_to();
    if port.host() == Some(host)
        && (port.vif_type.as_deref() != Some("unbound") || migrating_to.is_some())
    {
        return true;
    }
    migrating_to == Some(host)
}

/// The hosts whose WorkloadEndpoint slot of a port an update may touch
/// (old and new host, old and new migration destination), each once, in
/// upstream's order; each is then synced to `wep_desired_on`.
pub fn hosts_to_sync(original: Option<&Port>, current: &Port) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    let candidates = [
        original.and_then(Port::host),
        original.and_then(Port::migrating_to),
        current.migrating_to(),
        current.host(),
    ];
    for h in candidates.into_iter().flatten() {
        if !hosts.iter().any(|x| x == h) {
            hosts.push(h.to_string());
        }
    }
    hosts
}

/// Neutron's port status for an endpoint's status value (`up`, `down`,
/// `error`); a deleted or unreadable status is `ERROR`, as upstream.
pub fn port_status(endpoint_status: Option<&str>) -> &'static str {
    match endpoint_status {
        Some("up") => "ACTIVE",
        Some("down") => "DOWN",
        _ => "ERROR",
    }
}
