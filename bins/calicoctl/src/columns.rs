//! What `get` tables show per kind: upstream calicoctl's column sets (its
//! `resourcemgr/*.go`, v3.31; IPAMConfiguration's and CalicoNodeStatus's from
//! later upstream, as v3.31's calicoctl does not handle those kinds) and
//! each cell as its Go template prints the field: `<nil>` for an unset
//! pointer, floats as Go's `%v` (`1e+06`), structs as `{a b}`.

use calico_api::network::AsNumber;
use calico_api::AnyResource;

/// The columns `-o ps` shows.
pub fn ps_columns(kind: &str) -> &'static [&'static str] {
    match kind {
        "BGPConfiguration" => &["NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"],
        "BGPFilter" => &[
            "NAME",
            "NUMEXPORTV4",
            "NUMIMPORTV4",
            "NUMEXPORTV6",
            "NUMIMPORTV6",
        ],
        "BGPPeer" => &["NAME", "PEERIP", "NODE", "ASN"],
        "CalicoNodeStatus" => &["NAME", "NODE"],
        "ClusterInformation" => &[
            "NAME",
            "CLUSTERGUID",
            "CLUSTERTYPE",
            "CALICOVERSION",
            "DATASTOREREADY",
        ],
        "HostEndpoint" => &["NAME", "NODE"],
        "IPAMConfiguration" => &["NAME", "STRICTAFFINITY", "AUTOALLOCATEBLOCKS"],
        "IPPool" => &["NAME", "CIDR", "SELECTOR"],
        "NetworkPolicy" | "GlobalNetworkPolicy" => &["NAME", "TIER"],
        "Tier" => &["NAME", "ORDER"],
        "WorkloadEndpoint" => &["WORKLOAD", "NODE", "NETWORKS", "INTERFACE"],
        _ => &["NAME"],
    }
}

/// The columns `-o wide` shows.
pub fn wide_columns(kind: &str) -> &'static [&'static str] {
    match kind {
        "CalicoNodeStatus" => &["NAME", "NODE", "CLASSES"],
        "HostEndpoint" => &["NAME", "NODE", "INTERFACE", "IPS", "PROFILES"],
        "IPAMConfiguration" => &[
            "NAME",
            "STRICTAFFINITY",
            "AUTOALLOCATEBLOCKS",
            "MAXBLOCKSPERHOST",
        ],
        "IPPool" => &[
            "NAME",
            "CIDR",
            "NAT",
            "IPIPMODE",
            "VXLANMODE",
            "DISABLED",
            "DISABLEBGPEXPORT",
            "SELECTOR",
            "ASSIGNMENTMODE",
        ],
        "IPReservation" => &["NAME", "CIDRS"],
        "NetworkPolicy" | "GlobalNetworkPolicy" => &["NAME", "TIER", "ORDER", "SELECTOR"],
        "NetworkSet" | "GlobalNetworkSet" => &["NAME", "NETS"],
        "Node" => &["NAME", "ASN", "IPV4", "IPV6"],
        "Profile" => &["NAME", "LABELS"],
        "WorkloadEndpoint" => &[
            "NAME",
            "WORKLOAD",
            "NODE",
            "NETWORKS",
            "INTERFACE",
            "PROFILES",
            "NATS",
        ],
        other => ps_columns(other),
    }
}

/// Every column a kind offers (for custom-columns).
pub fn known_columns(kind: &str) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = vec!["NAME"];
    for c in ps_columns(kind).iter().chain(wide_columns(kind)) {
        if !v.contains(c) {
            v.push(c);
        }
    }
    if calico_api::lookup_kind(kind).is_some_and(|k| k.namespaced) {
        v.push("NAMESPACE");
    }
    if kind == "WorkloadEndpoint" {
        v.push("ORCHESTRATOR");
    }
    v
}

/// `{{.Order}}` of a `*float64`: `%v`, or `<nil>` when unset.
fn order(o: Option<f64>) -> String {
    o.map(go_float).unwrap_or_else(|| NIL.to_string())
}

const NIL: &str = "<nil>";

/// A float as Go's `%v` prints it: the shortest exact digits, in exponent
/// form (`1e+06`, `1.5e-05`) when the exponent is below -4 or 6 and above.
pub fn go_float(f: f64) -> String {
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is a number");
    if (-4..6).contains(&exp) {
        format!("{f}")
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// A pointer field printed by a Go template: its value, or `<nil>`.
fn or_nil<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| NIL.to_string())
}

/// `{{if .X}}{{.X}}{{else}}-{{end}}` of a pointer field.
fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_string())
}

/// upstream's `joinAndTruncate`: joined with `,`, cut to `max` characters
/// ending in `...` when longer (0: never cut).
fn join_truncated(items: &[String], max: usize) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item);
        if max > 0 && out.len() > max {
            out.truncate(max - 3);
            out.push_str("...");
            break;
        }
    }
    out
}

/// The cell of column `col` for `r`. `global_as` is the cluster's AS number,
/// shown in parentheses for nodes that inherit it.
pub fn cell(r: &AnyResource, col: &str, global_as: AsNumber) -> String {
    let m = r.metadata();
    match (r, col) {
        (_, "NAME") => m.name.clone(),
        (_, "NAMESPACE") => m.namespace.clone(),
        (AnyResource::NetworkPolicy(p), c) => {
            policy_cell(&p.spec.tier, p.spec.order, &p.spec.selector, c)
        }
        (AnyResource::GlobalNetworkPolicy(p), c) => {
            policy_cell(&p.spec.tier, p.spec.order, &p.spec.selector, c)
        }
        (AnyResource::Tier(t), "ORDER") => order(t.spec.order),
        (AnyResource::IPPool(_), _) => ippool_cell(r, col),
        (AnyResource::WorkloadEndpoint(_), _) => workload_cell(r, col),
        (AnyResource::Node(n), c) => {
            // Nothing at all for a node without BGP settings.
            let Some(bgp) = &n.spec.bgp else {
                return String::new();
            };
            match c {
                "ASN" => match bgp.as_number {
                    Some(a) => a.to_string(),
                    None => format!("({global_as})"),
                },
                "IPV4" => bgp.ipv4_address.clone(),
                "IPV6" => bgp.ipv6_address.clone(),
                _ => String::new(),
            }
        }
        _ => config_cell(r, col),
    }
}

fn policy_cell(tier: &str, o: Option<f64>, selector: &str, col: &str) -> String {
    match col {
        "TIER" => tier.to_string(),
        "ORDER" => order(o),
        "SELECTOR" => selector.to_string(),
        _ => String::new(),
    }
}

fn ippool_cell(r: &AnyResource, col: &str) -> String {
    let AnyResource::IPPool(p) = r else {
        return String::new();
    };
    let s = &p.spec;
    match col {
        "CIDR" => s.cidr.clone(),
        "SELECTOR" => s.node_selector.clone(),
        "NAT" => s.nat_outgoing.to_string(),
        "IPIPMODE" => format!("{:?}", s.ipip()),
        "VXLANMODE" => format!("{:?}", s.vxlan()),
        "DISABLED" => s.disabled.to_string(),
        "DISABLEBGPEXPORT" => s.disable_bgp_export.to_string(),
        "ASSIGNMENTMODE" => or_nil(s.assignment_mode.map(|m| format!("{m:?}"))),
        _ => String::new(),
    }
}

fn workload_cell(r: &AnyResource, col: &str) -> String {
    let AnyResource::WorkloadEndpoint(w) = r else {
        return String::new();
    };
    let s = &w.spec;
    match col {
        "WORKLOAD" if s.workload.is_empty() => s.pod.clone(),
        "WORKLOAD" => s.workload.clone(),
        "NODE" => s.node.clone(),
        "ORCHESTRATOR" => s.orchestrator.clone(),
        "NETWORKS" => s.ip_networks.join(","),
        "INTERFACE" => s.interface_name.clone(),
        "PROFILES" => s.profiles.join(","),
        // Go prints the struct: {internal external}.
        "NATS" => s
            .ip_nats
            .iter()
            .map(|n| format!("{{{} {}}}", n.internal_ip, n.external_ip))
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    }
}

/// Cells of the remaining kinds: cluster configuration, peers, endpoints, sets.
fn config_cell(r: &AnyResource, col: &str) -> String {
    match (r, col) {
        (AnyResource::BGPConfiguration(b), c) => match c {
            "LOGSEVERITY" => b.spec.log_severity_screen.clone().unwrap_or_default(),
            "MESHENABLED" => or_dash(b.spec.node_to_node_mesh_enabled),
            "ASNUMBER" => or_dash(b.spec.as_number),
            _ => String::new(),
        },
        (AnyResource::ClusterInformation(ci), c) => match c {
            "CLUSTERGUID" => ci.spec.cluster_guid.clone(),
            "CLUSTERTYPE" => ci.spec.cluster_type.clone(),
            "CALICOVERSION" => ci.spec.calico_version.clone(),
            "DATASTOREREADY" => or_nil(ci.spec.datastore_ready),
            _ => String::new(),
        },
        (AnyResource::IPAMConfiguration(i), c) => match c {
            "STRICTAFFINITY" => i.spec.strict_affinity.to_string(),
            // Plain Go bool and int32: unset reads as false and 0.
            "AUTOALLOCATEBLOCKS" => i.spec.auto_allocate_blocks.unwrap_or(false).to_string(),
            "MAXBLOCKSPERHOST" => i.spec.max_blocks_per_host.unwrap_or(0).to_string(),
            _ => String::new(),
        },
        (AnyResource::BGPPeer(p), c) => match c {
            "PEERIP" => p.spec.peer_ip.clone(),
            "NODE" if !p.spec.node.is_empty() => p.spec.node.clone(),
            "NODE" if !p.spec.node_selector.is_empty() => p.spec.node_selector.clone(),
            "NODE" => "(global)".into(),
            "ASN" => p.spec.as_number.unwrap_or(AsNumber(0)).to_string(),
            _ => String::new(),
        },
        (AnyResource::BGPFilter(f), c) => match c {
            "NUMEXPORTV4" => f.spec.export_v4.len().to_string(),
            "NUMIMPORTV4" => f.spec.import_v4.len().to_string(),
            "NUMEXPORTV6" => f.spec.export_v6.len().to_string(),
            "NUMIMPORTV6" => f.spec.import_v6.len().to_string(),
            _ => String::new(),
        },
        (AnyResource::HostEndpoint(h), c) => match c {
            "NODE" => h.spec.node.clone(),
            "INTERFACE" => h.spec.interface_name.clone(),
            "IPS" => h.spec.expected_ips.join(","),
            "PROFILES" => h.spec.profiles.join(","),
            _ => String::new(),
        },
        (AnyResource::Profile(p), "LABELS") => {
            let mut pairs: Vec<String> = p
                .spec
                .labels_to_apply
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            pairs.sort();
            pairs.join(",")
        }
        (AnyResource::NetworkSet(n), "NETS") => join_truncated(&n.spec.nets, 80),
        (AnyResource::GlobalNetworkSet(n), "NETS") => join_truncated(&n.spec.nets, 80),
        (AnyResource::IPReservation(r), "CIDRS") => join_truncated(&r.spec.reserved_cidrs, 80),
        (AnyResource::CalicoNodeStatus(s), "NODE") => s.spec.node.clone(),
        // `{{join .Spec.Classes ","}}`: never cut.
        (AnyResource::CalicoNodeStatus(s), "CLASSES") => join_truncated(s.spec.classes(), 0),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_go_does() {
        assert_eq!(go_float(100.0), "100");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(123456.0), "123456");
        assert_eq!(go_float(1_000_000.0), "1e+06");
        assert_eq!(go_float(10_000_000.0), "1e+07");
        assert_eq!(go_float(1234567.0), "1.234567e+06");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(0.0), "0");
    }

    #[test]
    fn long_lists_are_cut_at_80() {
        let nets: Vec<String> = (0..20).map(|i| format!("10.0.{i}.0/24")).collect();
        let s = join_truncated(&nets, 80);
        assert_eq!(s.len(), 80);
        assert!(s.ends_with("..."));
        assert_eq!(join_truncated(&nets[..2], 80), "10.0.0.0/24,10.0.1.0/24");
    }
}
