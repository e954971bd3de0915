//! Printing resources: `ps` and `wide` tables with upstream's columns,
//! `custom-columns=`, and `yaml` / `json` (single resource or a `<Kind>List`).

use calico_api::network::AsNumber;
use calico_api::{AnyResource, KindInfo, API_VERSION};

use crate::table;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    Ps,
    Wide,
    Yaml,
    Json,
    CustomColumns(Vec<String>),
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "ps" => Ok(Format::Ps),
            "wide" => Ok(Format::Wide),
            "yaml" => Ok(Format::Yaml),
            "json" => Ok(Format::Json),
            _ => {
                if let Some(cols) = s.strip_prefix("custom-columns=") {
                    let cols: Vec<String> = cols
                        .split(',')
                        .map(|c| c.trim().to_ascii_uppercase())
                        .filter(|c| !c.is_empty())
                        .collect();
                    if cols.is_empty() {
                        return Err("custom-columns= needs at least one column name".into());
                    }
                    Ok(Format::CustomColumns(cols))
                } else {
                    Err(format!("unknown output format {s:?}: expected ps, wide, yaml, json or custom-columns=COL,..."))
                }
            }
        }
    }
}

/// Context some columns need (the global AS number for inherited node ASNs).
pub struct Context {
    pub global_as: AsNumber,
}

fn ps_columns(kind: &str) -> &'static [&'static str] {
    match kind {
        "IPPool" => &["NAME", "CIDR", "SELECTOR"],
        "BGPPeer" => &["NAME", "PEERIP", "NODE", "ASN"],
        "WorkloadEndpoint" => &["WORKLOAD", "NODE", "NETWORKS", "INTERFACE"],
        "HostEndpoint" => &["NAME", "NODE"],
        _ => &["NAME"],
    }
}

fn wide_columns(kind: &str) -> &'static [&'static str] {
    match kind {
        "IPPool" => &[
            "NAME",
            "CIDR",
            "NAT",
            "IPIPMODE",
            "VXLANMODE",
            "DISABLED",
            "DISABLEBGPEXPORT",
            "SELECTOR",
        ],
        "Node" => &["NAME", "ASN", "IPV4", "IPV6"],
        "BGPPeer" => &["NAME", "PEERIP", "NODE", "ASN"],
        "NetworkPolicy" | "GlobalNetworkPolicy" => &["NAME", "ORDER", "SELECTOR"],
        "WorkloadEndpoint" => &[
            "NAME",
            "WORKLOAD",
            "NODE",
            "NETWORKS",
            "INTERFACE",
            "PROFILES",
            "NATS",
        ],
        "HostEndpoint" => &["NAME", "NODE", "INTERFACE", "IPS", "PROFILES"],
        "Profile" => &["NAME", "LABELS"],
        "NetworkSet" | "GlobalNetworkSet" => &["NAME", "NETS"],
        "Tier" => &["NAME", "ORDER", "DEFAULTACTION"],
        "IPReservation" => &["NAME", "CIDRS"],
        _ => &["NAME"],
    }
}

/// All column names a kind offers (for custom-columns).
pub fn known_columns(kind: &str) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = ps_columns(kind).to_vec();
    for c in wide_columns(kind) {
        if !v.contains(c) {
            v.push(c);
        }
    }
    if !v.contains(&"NAME") {
        v.insert(0, "NAME");
    }
    if calico_api::lookup_kind(kind).is_some_and(|k| k.namespaced) {
        v.push("NAMESPACE");
    }
    v
}

fn order_str(o: Option<f64>) -> String {
    match o {
        Some(f) if f.fract() == 0.0 => format!("{}", f as i64),
        Some(f) => f.to_string(),
        None => String::new(),
    }
}

fn bool_str(b: bool) -> String {
    b.to_string()
}

fn cell(r: &AnyResource, col: &str, ctx: &Context) -> String {
    let m = r.metadata();
    match (r, col) {
        (_, "NAME") => m.name.clone(),
        (_, "NAMESPACE") => m.namespace.clone(),
        (AnyResource::IPPool(p), c) => match c {
            "CIDR" => p.spec.cidr.clone(),
            "SELECTOR" => p.spec.node_selector.clone(),
            "NAT" => bool_str(p.spec.nat_outgoing),
            "IPIPMODE" => format!("{:?}", p.spec.ipip()),
            "VXLANMODE" => format!("{:?}", p.spec.vxlan()),
            "DISABLED" => bool_str(p.spec.disabled),
            "DISABLEBGPEXPORT" => bool_str(p.spec.disable_bgp_export),
            _ => String::new(),
        },
        (AnyResource::Node(n), c) => {
            let bgp = n.spec.bgp.clone().unwrap_or_default();
            match c {
                "ASN" => match bgp.as_number {
                    Some(a) => a.to_string(),
                    None => format!("({})", ctx.global_as),
                },
                "IPV4" => bgp.ipv4_address,
                "IPV6" => bgp.ipv6_address,
                _ => String::new(),
            }
        }
        (AnyResource::BGPPeer(p), c) => match c {
            "PEERIP" => p.spec.peer_ip.clone(),
            "NODE" => {
                if !p.spec.node.is_empty() {
                    p.spec.node.clone()
                } else if !p.spec.node_selector.is_empty() {
                    p.spec.node_selector.clone()
                } else {
                    "(global)".into()
                }
            }
            "ASN" => p.spec.as_number.map(|a| a.to_string()).unwrap_or_default(),
            _ => String::new(),
        },
        (AnyResource::NetworkPolicy(p), c) => match c {
            "ORDER" => order_str(p.spec.order),
            "SELECTOR" => p.spec.selector.clone(),
            _ => String::new(),
        },
        (AnyResource::GlobalNetworkPolicy(p), c) => match c {
            "ORDER" => order_str(p.spec.order),
            "SELECTOR" => p.spec.selector.clone(),
            _ => String::new(),
        },
        (AnyResource::WorkloadEndpoint(w), c) => match c {
            "WORKLOAD" => w.spec.workload.clone(),
            "NODE" => w.spec.node.clone(),
            "NETWORKS" => w.spec.ip_networks.join(","),
            "INTERFACE" => w.spec.interface_name.clone(),
            "PROFILES" => w.spec.profiles.join(","),
            "NATS" => w
                .spec
                .ip_nats
                .iter()
                .map(|n| format!("{}:{}", n.internal_ip, n.external_ip))
                .collect::<Vec<_>>()
                .join(","),
            _ => String::new(),
        },
        (AnyResource::HostEndpoint(h), c) => match c {
            "NODE" => h.spec.node.clone(),
            "INTERFACE" => h.spec.interface_name.clone(),
            "IPS" => h.spec.expected_ips.join(","),
            "PROFILES" => h.spec.profiles.join(","),
            _ => String::new(),
        },
        (AnyResource::Profile(p), "LABELS") => p
            .spec
            .labels_to_apply
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        (AnyResource::NetworkSet(n), "NETS") => n.spec.nets.join(","),
        (AnyResource::GlobalNetworkSet(n), "NETS") => n.spec.nets.join(","),
        (AnyResource::Tier(t), c) => match c {
            "ORDER" => order_str(t.spec.order),
            "DEFAULTACTION" => t
                .spec
                .default_action
                .map(|a| format!("{a:?}"))
                .unwrap_or_default(),
            _ => String::new(),
        },
        (AnyResource::IPReservation(r), "CIDRS") => r.spec.reserved_cidrs.join(","),
        _ => String::new(),
    }
}

/// Renders resources of one kind as a table.
pub fn render_table(
    info: &KindInfo,
    items: &[AnyResource],
    format: &Format,
    all_namespaces: bool,
    ctx: &Context,
) -> Result<String, String> {
    let mut cols: Vec<&str> = match format {
        Format::Ps => ps_columns(info.kind).to_vec(),
        Format::Wide => wide_columns(info.kind).to_vec(),
        Format::CustomColumns(c) => {
            let known = known_columns(info.kind);
            let mut v = Vec::new();
            for name in c {
                match known.iter().find(|k| **k == name.as_str()) {
                    Some(k) => v.push(*k),
                    None => {
                        return Err(format!(
                            "unknown column {name:?} for {}: available columns are {}",
                            info.kind,
                            known.join(", ")
                        ))
                    }
                }
            }
            v
        }
        _ => unreachable!("tables only"),
    };
    if info.namespaced && all_namespaces && !cols.contains(&"NAMESPACE") {
        cols.insert(0, "NAMESPACE");
    }
    let mut rows = vec![cols.iter().map(|c| c.to_string()).collect::<Vec<_>>()];
    for r in items {
        rows.push(cols.iter().map(|c| cell(r, c, ctx)).collect());
    }
    Ok(table::render(&rows))
}

/// Sorts object keys recursively, as upstream's YAML output (which goes
/// through a JSON map) shows them.
fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut entries: Vec<(String, serde_json::Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

/// One resource alone, or several as a `<Kind>List` (`List` if mixed).
pub fn document(items: &[AnyResource], single: bool, revision: i64) -> serde_json::Value {
    if single && items.len() == 1 {
        return items[0].to_json_value();
    }
    let kind = match items.first() {
        Some(first) if items.iter().all(|r| r.kind() == first.kind()) => {
            format!("{}List", first.kind())
        }
        _ => "List".to_string(),
    };
    serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "items": items.iter().map(AnyResource::to_json_value).collect::<Vec<_>>(),
        "metadata": { "resourceVersion": revision.to_string() },
    })
}

pub fn to_yaml(v: serde_json::Value) -> String {
    serde_yaml::to_string(&sorted(v)).expect("JSON values always serialise")
}

pub fn to_json(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("JSON values always serialise");
    s.push('\n');
    s
}
