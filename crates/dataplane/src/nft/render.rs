//! Pure rendering of the calc model into nft chains, sets and maps. No state,
//! no I/O: every function maps model values to `ChainSpec`/`Elems`.
//!
//! Marks (as Felix, inside `0xffff0000`): `0x10000` = a policy/profile
//! accepted the packet, `0x20000` = a policy passed it to the next tier.

use std::collections::BTreeSet;
use std::net::IpAddr;

use calico_calc::model::{
    EndpointToHostAction, HostConfig, IpSetId, IpSetMember, LocalEndpoint, Policy, PolicyId,
    PolicyKind, Pool, ProtoPort, TierDefault,
};
use ipnet::IpNet;
use sha2::{Digest, Sha256};

use super::backend::net_text;
use super::table::{hex16, ChainKind, ChainSpec, Elems, RuleSpec, SetDef};

pub const MARK_ACCEPT: &str = "0x00010000";
pub const MARK_PASS: &str = "0x00020000";
/// Clears accept and pass.
const MARK_CLEAR_BOTH: &str = "0xfffcffff";
/// Clears pass only.
const MARK_CLEAR_PASS: &str = "0xfffdffff";

// Base chains.
pub const CHAIN_RAW_PREROUTING: &str = "cali-raw-PREROUTING";
pub const CHAIN_FORWARD: &str = "cali-FORWARD";
pub const CHAIN_INPUT: &str = "cali-INPUT";
pub const CHAIN_OUTPUT: &str = "cali-OUTPUT";
pub const CHAIN_PREROUTING: &str = "cali-PREROUTING";
pub const CHAIN_NAT_OUTPUT: &str = "cali-nat-OUTPUT";
pub const CHAIN_POSTROUTING: &str = "cali-POSTROUTING";
// Shared regular chain.
pub const CHAIN_WL_TO_HOST: &str = "cali-wl-to-host";

// Verdict maps keyed by interface name.
pub const MAP_SPOOF: &str = "cali-sp-wl";
pub const MAP_FROM_WL: &str = "cali-from-wl";
pub const MAP_TO_WL: &str = "cali-to-wl";
// 1:1 NAT maps (floating IPs).
pub const MAP_FIP_DNAT4: &str = "cali-fip-dnat4";
pub const MAP_FIP_DNAT6: &str = "cali-fip-dnat6";
pub const MAP_FIP_SNAT4: &str = "cali-fip-snat4";
pub const MAP_FIP_SNAT6: &str = "cali-fip-snat6";
// Static sets.
pub const SET_POOLS4: &str = "cali-pools4";
pub const SET_POOLS6: &str = "cali-pools6";
pub const SET_MASQ4: &str = "cali-masq4";
pub const SET_MASQ6: &str = "cali-masq6";
pub const SET_FAILSAFE_IN: &str = "cali-failsafe-in";
pub const SET_FAILSAFE_OUT: &str = "cali-failsafe-out";

/// Direction of policy relative to the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dir {
    /// Traffic to the workload: inbound rules, `cali-tw-`, `cali-pi-`/`cali-pri-`.
    Ingress,
    /// Traffic from the workload: outbound rules, `cali-fw-`, `cali-po-`/`cali-pro-`.
    Egress,
}

/// How a model IP set is used: plain addresses, or named-port triples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetKind {
    Addr,
    NamedPort,
}

/// A model IP set in one usage; becomes two nft sets (v4 and v6).
pub type SetRef = (IpSetId, SetKind);

/// Settings the rendering depends on, derived from config and pools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub interface_prefixes: Vec<String>,
    pub endpoint_to_host: EndpointToHostAction,
    pub log_prefix: String,
    /// Drop VXLAN (udp/vxlan_port) from workloads: some pool uses VXLAN.
    pub drop_vxlan_from_wl: Option<u16>,
    /// Drop IPIP from workloads: some pool uses IPIP.
    pub drop_ipip_from_wl: bool,
    /// OpenStack special cases (DHCP, DNS to the host): an interface prefix is `tap`.
    pub openstack: bool,
    /// Where workloads' 169.254.169.254:80 goes (OpenStack metadata).
    pub metadata: Option<(std::net::Ipv4Addr, u16)>,
}

impl Settings {
    pub fn new(cfg: &HostConfig, pools: &[Pool]) -> Self {
        use calico_calc::model::Encap;
        Settings {
            interface_prefixes: cfg.interface_prefixes.clone(),
            endpoint_to_host: cfg.default_endpoint_to_host_action,
            log_prefix: cfg.log_prefix.clone(),
            drop_vxlan_from_wl: pools
                .iter()
                .any(|p| p.vxlan != Encap::Never)
                .then_some(cfg.vxlan_port),
            drop_ipip_from_wl: pools.iter().any(|p| p.ipip != Encap::Never),
            openstack: cfg.interface_prefixes.iter().any(|p| p == "tap"),
            metadata: cfg.metadata,
        }
    }
}

/// Felix's defaults, used until the first `Update::Config`.
pub fn default_host_config() -> HostConfig {
    let pp = |protocol, port| ProtoPort { protocol, port };
    HostConfig {
        interface_prefixes: vec!["cali".into()],
        default_endpoint_to_host_action: EndpointToHostAction::Drop,
        failsafe_inbound: vec![
            pp(6, 22),
            pp(17, 68),
            pp(6, 179),
            pp(6, 2379),
            pp(6, 2380),
            pp(6, 5473),
            pp(6, 6443),
            pp(6, 6666),
            pp(6, 6667),
        ],
        failsafe_outbound: vec![
            pp(17, 53),
            pp(17, 67),
            pp(6, 179),
            pp(6, 2379),
            pp(6, 2380),
            pp(6, 5473),
            pp(6, 6443),
            pp(6, 6666),
            pp(6, 6667),
        ],
        vxlan_vni: 4096,
        vxlan_port: 4789,
        vxlan_mtu: 0,
        log_prefix: "calico-packet".into(),
        metadata: None,
    }
}

fn short_hash(s: &str) -> String {
    hex16(&Sha256::digest(s.as_bytes()))
}

/// `cali-pi-`/`cali-po-` (policies) or `cali-pri-`/`cali-pro-` (profiles) +
/// 16 hex digits of SHA-256 over kind, namespace and name.
pub fn policy_chain_name(id: &PolicyId, dir: Dir) -> String {
    let prefix = match (id.kind == PolicyKind::Profile, dir) {
        (false, Dir::Ingress) => "cali-pi-",
        (false, Dir::Egress) => "cali-po-",
        (true, Dir::Ingress) => "cali-pri-",
        (true, Dir::Egress) => "cali-pro-",
    };
    format!(
        "{prefix}{}",
        short_hash(&format!("{:?}/{}/{}", id.kind, id.namespace, id.name))
    )
}

/// The id a profile name has in the model.
pub fn profile_id(name: &str) -> PolicyId {
    PolicyId {
        kind: PolicyKind::Profile,
        namespace: String::new(),
        name: name.to_string(),
    }
}

/// Interface part of per-endpoint chain names: the name itself when it is a
/// safe nft identifier tail, else a hash.
fn iface_tag(iface: &str) -> String {
    let ok = !iface.is_empty()
        && iface.len() <= 15
        && iface
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        iface.to_string()
    } else {
        format!("h{}", &short_hash(iface)[..12])
    }
}

/// `cali-tw-<iface>`: to the workload (ingress policy).
pub fn to_wl_chain(iface: &str) -> String {
    format!("cali-tw-{}", iface_tag(iface))
}
/// `cali-fw-<iface>`: from the workload (egress policy).
pub fn from_wl_chain(iface: &str) -> String {
    format!("cali-fw-{}", iface_tag(iface))
}
/// `cali-sp-<iface>`: anti-spoofing for packets from the workload.
pub fn spoof_chain_name(iface: &str) -> String {
    format!("cali-sp-{}", iface_tag(iface))
}

/// `s4-`/`s6-` (addresses) or `n4-`/`n6-` (named ports) + hash of the id.
pub fn ipset_name(id: &str, kind: SetKind, v6: bool) -> String {
    let p = match (kind, v6) {
        (SetKind::Addr, false) => "s4-",
        (SetKind::Addr, true) => "s6-",
        (SetKind::NamedPort, false) => "n4-",
        (SetKind::NamedPort, true) => "n6-",
    };
    format!("{p}{}", short_hash(id))
}

pub fn ipset_def(kind: SetKind, v6: bool) -> SetDef {
    let addr = if v6 { "ipv6_addr" } else { "ipv4_addr" };
    match kind {
        SetKind::Addr => SetDef::set(&[addr], true),
        SetKind::NamedPort => SetDef::set(&[addr, "inet_proto", "inet_service"], true),
    }
}

/// Quote an interface name as a map key.
pub fn iface_key(iface: &str) -> String {
    format!("\"{}\"", iface.replace('"', ""))
}

/// Merge overlapping/adjacent prefixes so interval sets never see overlaps.
pub fn aggregate(nets: impl IntoIterator<Item = IpNet>) -> Vec<IpNet> {
    let v: Vec<IpNet> = nets.into_iter().map(|n| n.trunc()).collect();
    IpNet::aggregate(&v)
}

/// Elements of one nft set for a model IP set.
pub fn ipset_elems(members: Option<&BTreeSet<IpSetMember>>, kind: SetKind, v6: bool) -> Elems {
    let mut out = Elems::new();
    let Some(members) = members else {
        return out;
    };
    let fam_ok = |n: &IpNet| matches!(n, IpNet::V6(_)) == v6;
    match kind {
        SetKind::Addr => {
            let nets = members.iter().filter_map(|m| match m {
                IpSetMember::Net(n) if fam_ok(n) => Some(*n),
                _ => None,
            });
            for n in aggregate(nets) {
                out.insert(net_text(&n), None);
            }
        }
        SetKind::NamedPort => {
            let mut groups: std::collections::BTreeMap<(u8, u16), Vec<IpNet>> = Default::default();
            for m in members {
                if let IpSetMember::NetPort {
                    net,
                    protocol,
                    port,
                } = m
                {
                    if fam_ok(net) {
                        groups.entry((*protocol, *port)).or_default().push(*net);
                    }
                }
            }
            for ((proto, port), nets) in groups {
                for n in aggregate(nets) {
                    out.insert(format!("{} . {proto} . {port}", net_text(&n)), None);
                }
            }
        }
    }
    out
}

/// Pool CIDRs of one family (all pools, or only natOutgoing ones).
pub fn pool_elems(pools: &[Pool], v6: bool, masq_only: bool) -> Elems {
    let nets = pools
        .iter()
        .filter(|p| matches!(p.cidr, IpNet::V6(_)) == v6 && (!masq_only || p.nat_outgoing))
        .map(|p| p.cidr);
    aggregate(nets)
        .iter()
        .map(|n| (net_text(n), None))
        .collect()
}

pub fn failsafe_elems(list: &[ProtoPort]) -> Elems {
    list.iter()
        .map(|p| (format!("{} . {}", p.protocol, p.port), None))
        .collect()
}

/// Every static set and map with its type.
pub fn static_sets() -> Vec<(&'static str, SetDef)> {
    vec![
        (SET_POOLS4, SetDef::set(&["ipv4_addr"], true)),
        (SET_POOLS6, SetDef::set(&["ipv6_addr"], true)),
        (SET_MASQ4, SetDef::set(&["ipv4_addr"], true)),
        (SET_MASQ6, SetDef::set(&["ipv6_addr"], true)),
        (
            SET_FAILSAFE_IN,
            SetDef::set(&["inet_proto", "inet_service"], false),
        ),
        (
            SET_FAILSAFE_OUT,
            SetDef::set(&["inet_proto", "inet_service"], false),
        ),
        (MAP_SPOOF, SetDef::map(&["ifname"], "verdict")),
        (MAP_FROM_WL, SetDef::map(&["ifname"], "verdict")),
        (MAP_TO_WL, SetDef::map(&["ifname"], "verdict")),
        (MAP_FIP_DNAT4, SetDef::map(&["ipv4_addr"], "ipv4_addr")),
        (MAP_FIP_DNAT6, SetDef::map(&["ipv6_addr"], "ipv6_addr")),
        (MAP_FIP_SNAT4, SetDef::map(&["ipv4_addr"], "ipv4_addr")),
        (MAP_FIP_SNAT6, SetDef::map(&["ipv6_addr"], "ipv6_addr")),
    ]
}

fn r(body: impl Into<String>) -> RuleSpec {
    RuleSpec::new(body)
}
fn rc(body: impl Into<String>, comment: impl Into<String>) -> RuleSpec {
    RuleSpec::commented(body, comment)
}

/// All base chains plus `cali-wl-to-host`.
pub fn base_chains(s: &Settings) -> Vec<(&'static str, ChainSpec)> {
    let prefix_rules = |f: &dyn Fn(&str) -> RuleSpec| -> Vec<RuleSpec> {
        s.interface_prefixes.iter().map(|p| f(p)).collect()
    };
    let ct_fast = || rc("ct state established,related accept", "conntrack fast path");

    let mut raw = vec![r(format!("iifname vmap @{MAP_SPOOF}"))];
    raw.extend(prefix_rules(&|p| {
        rc(
            format!("iifname \"{p}*\" counter drop"),
            "unknown workload interface",
        )
    }));

    let mut fwd = vec![
        ct_fast(),
        r(format!("iifname vmap @{MAP_FROM_WL}")),
        r(format!("oifname vmap @{MAP_TO_WL}")),
    ];
    fwd.extend(prefix_rules(&|p| {
        rc(
            format!("oifname \"{p}*\" counter drop"),
            "unknown workload interface",
        )
    }));

    let mut input = vec![ct_fast()];
    input.extend(prefix_rules(&|p| {
        rc(
            format!("iifname \"{p}*\" goto {CHAIN_WL_TO_HOST}"),
            "workload to host",
        )
    }));
    input.push(rc(
        format!("meta l4proto . th dport @{SET_FAILSAFE_IN} accept"),
        "failsafe in",
    ));

    let output = vec![
        ct_fast(),
        rc(
            format!("meta l4proto . th dport @{SET_FAILSAFE_OUT} accept"),
            "failsafe out",
        ),
    ];

    let mut wl_to_host = vec![
        rc("ct state invalid counter drop", "invalid"),
        rc(
            "icmpv6 type { 130, 131, 132, 133, 135, 136, 143 } accept",
            "IPv6 neighbour discovery and MLD",
        ),
    ];
    if s.openstack {
        // Each DHCP only in its own family: nothing is admitted more widely.
        wl_to_host.push(rc(
            "meta nfproto ipv4 udp sport 68 udp dport 67 accept",
            "DHCPv4 (OpenStack)",
        ));
        wl_to_host.push(rc(
            "meta nfproto ipv6 udp sport 546 udp dport 547 accept",
            "DHCPv6 (OpenStack)",
        ));
        wl_to_host.push(rc("udp dport 53 accept", "DNS (OpenStack)"));
        wl_to_host.push(rc("tcp dport 53 accept", "DNS (OpenStack)"));
    }
    if let Some((addr, port)) = s.metadata {
        // The DNATed metadata request, before the workload's egress policy.
        wl_to_host.push(rc(
            format!("ip daddr {addr} tcp dport {port} accept"),
            "OpenStack metadata",
        ));
    }
    wl_to_host.push(rc(
        format!("iifname vmap @{MAP_FROM_WL}"),
        "endpoint egress policy",
    ));
    wl_to_host.push(match s.endpoint_to_host {
        EndpointToHostAction::Drop => rc("counter drop", "defaultEndpointToHostAction Drop"),
        EndpointToHostAction::Return => rc("return", "defaultEndpointToHostAction Return"),
        EndpointToHostAction::Accept => rc("accept", "defaultEndpointToHostAction Accept"),
    });

    let metadata_dnat = s.metadata.map(|(addr, port)| {
        rc(
            format!("ip daddr 169.254.169.254 tcp dport 80 dnat ip to {addr}:{port}"),
            "OpenStack metadata",
        )
    });
    let fip_dnat = || {
        vec![
            rc(
                format!("dnat ip to ip daddr map @{MAP_FIP_DNAT4}"),
                "floating IP DNAT",
            ),
            r(format!("dnat ip6 to ip6 daddr map @{MAP_FIP_DNAT6}")),
        ]
    };
    let post = vec![
        rc(
            format!("ip daddr != @{SET_POOLS4} snat ip to ip saddr map @{MAP_FIP_SNAT4}"),
            "floating IP SNAT",
        ),
        r(format!(
            "ip6 daddr != @{SET_POOLS6} snat ip6 to ip6 saddr map @{MAP_FIP_SNAT6}"
        )),
        rc(
            format!("ip saddr @{SET_MASQ4} ip daddr != @{SET_POOLS4} masquerade"),
            "natOutgoing",
        ),
        rc(
            format!("ip6 saddr @{SET_MASQ6} ip6 daddr != @{SET_POOLS6} masquerade"),
            "natOutgoing",
        ),
    ];

    let base = |ty, hook, prio, rules| ChainSpec {
        kind: ChainKind::base(ty, hook, prio),
        rules,
    };
    vec![
        (
            CHAIN_RAW_PREROUTING,
            base("filter", "prerouting", -300, raw),
        ),
        (CHAIN_FORWARD, base("filter", "forward", 0, fwd)),
        (CHAIN_INPUT, base("filter", "input", 0, input)),
        (CHAIN_OUTPUT, base("filter", "output", 0, output)),
        (
            CHAIN_PREROUTING,
            base(
                "nat",
                "prerouting",
                -100,
                fip_dnat().into_iter().chain(metadata_dnat).collect(),
            ),
        ),
        (CHAIN_NAT_OUTPUT, base("nat", "output", -100, fip_dnat())),
        (CHAIN_POSTROUTING, base("nat", "postrouting", 100, post)),
        (CHAIN_WL_TO_HOST, ChainSpec::regular(wl_to_host)),
    ]
}

/// Anti-spoofing: accept only the endpoint's own addresses, its
/// allowSpoofedSourcePrefixes, DHCPv4 discovery from 0.0.0.0 and IPv6
/// link-local/unspecified (neighbour discovery, DAD); drop the rest.
pub fn spoof_chain(ep: &LocalEndpoint) -> ChainSpec {
    let all: Vec<IpNet> = ep.addrs.iter().chain(&ep.allow_spoofed).copied().collect();
    let v4 = aggregate(all.iter().filter(|n| matches!(n, IpNet::V4(_))).copied());
    let mut v6 = aggregate(all.iter().filter(|n| matches!(n, IpNet::V6(_))).copied());
    v6 = aggregate(v6.into_iter().chain(["fe80::/10".parse().unwrap()]));
    let mut rules = Vec::new();
    if !v4.is_empty() {
        rules.push(rc(
            format!("ip saddr {} return", net_list(&v4)),
            "own IPv4 source",
        ));
    }
    rules.push(rc(
        format!("ip6 saddr {} return", net_list(&v6)),
        "own IPv6 source",
    ));
    rules.push(rc(
        "ip saddr 0.0.0.0 udp sport 68 udp dport 67 return",
        "DHCPv4 discovery",
    ));
    rules.push(rc("ip6 saddr :: meta l4proto 58 return", "IPv6 DAD"));
    rules.push(rc("counter drop", "spoofed source address"));
    ChainSpec::regular(rules)
}

/// `cali-tw-`/`cali-fw-` for one endpoint: invalid drop, mark reset, tiers
/// (each: jump policies while not passed, return when accepted, tier default),
/// then profiles, then "no profile matched" drop.
pub fn endpoint_chain(ep: &LocalEndpoint, dir: Dir, s: &Settings) -> ChainSpec {
    let mut rules = vec![
        rc("ct state invalid counter drop", "invalid"),
        rc(
            format!("meta mark set meta mark & {MARK_CLEAR_BOTH}"),
            "clear accept and pass marks",
        ),
    ];
    if dir == Dir::Egress {
        if let Some(port) = s.drop_vxlan_from_wl {
            rules.push(rc(
                format!("udp dport {port} counter drop"),
                "VXLAN from workload",
            ));
        }
        if s.drop_ipip_from_wl {
            rules.push(rc("meta l4proto 4 counter drop", "IPIP from workload"));
        }
    }
    let mut first_tier = true;
    for tier in &ep.tiers {
        let pols = match dir {
            Dir::Ingress => &tier.ingress,
            Dir::Egress => &tier.egress,
        };
        if pols.is_empty() {
            continue;
        }
        if !first_tier {
            rules.push(rc(
                format!("meta mark set meta mark & {MARK_CLEAR_PASS}"),
                format!("start of tier {}", tier.name),
            ));
        }
        first_tier = false;
        for (i, pid) in pols.iter().enumerate() {
            let chain = policy_chain_name(pid, dir);
            let label = policy_label(pid);
            if i == 0 {
                rules.push(rc(format!("jump {chain}"), label));
            } else {
                rules.push(rc(
                    format!("meta mark & {MARK_PASS} == 0 jump {chain}"),
                    label,
                ));
            }
            rules.push(rc(
                format!("meta mark & {MARK_ACCEPT} == {MARK_ACCEPT} return"),
                "policy accepted",
            ));
        }
        if tier.default_action == TierDefault::Deny {
            rules.push(rc(
                format!("meta mark & {MARK_PASS} == 0 counter drop"),
                format!("tier {}: no policy passed", tier.name),
            ));
        }
    }
    for name in &ep.profiles {
        let chain = policy_chain_name(&profile_id(name), dir);
        rules.push(rc(format!("jump {chain}"), format!("profile {name}")));
        rules.push(rc(
            format!("meta mark & {MARK_ACCEPT} == {MARK_ACCEPT} return"),
            "profile accepted",
        ));
    }
    rules.push(rc("counter drop", "no profile matched"));
    ChainSpec::regular(rules)
}

/// Human label of a policy for rule comments.
pub fn policy_label(id: &PolicyId) -> String {
    let s = match id.kind {
        PolicyKind::GlobalNetworkPolicy => id.name.clone(),
        PolicyKind::NetworkPolicy => format!("{}/{}", id.namespace, id.name),
        PolicyKind::Profile => format!("profile {}", id.name),
    };
    if s.len() > 80 {
        s[..80].to_string()
    } else {
        s
    }
}

/// The chain of one policy in one direction. A policy missing from the model
/// renders as an empty chain (matches nothing). IP sets used are added to
/// `refs`.
pub fn policy_chain(
    id: &PolicyId,
    policy: Option<&Policy>,
    dir: Dir,
    log_prefix: &str,
    refs: &mut BTreeSet<SetRef>,
) -> ChainSpec {
    let mut rules = Vec::new();
    if let Some(p) = policy {
        let list = match dir {
            Dir::Ingress => &p.inbound,
            Dir::Egress => &p.outbound,
        };
        let label = policy_label(id);
        let profile = id.kind == PolicyKind::Profile;
        rules = super::rules::policy_rules(list, profile, &label, log_prefix, refs);
    }
    ChainSpec::regular(rules)
}

fn net_list(nets: &[IpNet]) -> String {
    if nets.len() == 1 {
        net_text(&nets[0])
    } else {
        let items: Vec<String> = nets.iter().map(net_text).collect();
        format!("{{ {} }}", items.join(", "))
    }
}

/// 1:1 NAT map elements (floating IPs) of all endpoints: (dnat, snat) per
/// family. Conflicting external addresses keep the first endpoint's mapping.
pub fn fip_elems<'a>(eps: impl Iterator<Item = &'a LocalEndpoint>) -> [Elems; 4] {
    let mut dnat4 = Elems::new();
    let mut dnat6 = Elems::new();
    let mut snat4 = Elems::new();
    let mut snat6 = Elems::new();
    for ep in eps {
        for (int, ext) in &ep.nats {
            match (int, ext) {
                (IpAddr::V4(i), IpAddr::V4(e)) => {
                    dnat4.entry(e.to_string()).or_insert(Some(i.to_string()));
                    snat4.entry(i.to_string()).or_insert(Some(e.to_string()));
                }
                (IpAddr::V6(i), IpAddr::V6(e)) => {
                    dnat6.entry(e.to_string()).or_insert(Some(i.to_string()));
                    snat6.entry(i.to_string()).or_insert(Some(e.to_string()));
                }
                _ => tracing::warn!(endpoint = %ep.key.name, "ignoring mixed-family NAT"),
            }
        }
    }
    [dnat4, dnat6, snat4, snat6]
}
