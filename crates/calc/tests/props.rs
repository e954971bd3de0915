//! Property tests.
//!
//! 1. `verdict(compiled output) == reference(world)` for random small worlds
//!    (namespaces, endpoints with random labels/addresses/named ports,
//!    network sets, a host endpoint, NPs/GNPs/profiles/tiers with random
//!    orders, actions incl. Pass/Log, selectors, namespace selectors,
//!    nets/notNets, ports/ranges/named ports, protocols incl. ICMP type/code,
//!    ipVersion) and random packets.
//! 2. Incremental == from scratch: random sequences of upserts, deletes and
//!    flushes (labels, orders, rules, profiles, tiers, nodes, pools, blocks)
//!    build, from the flushed deltas, the same state a fresh Calculator
//!    builds from the final world alone; the emission contract holds
//!    throughout (checked by `DesiredState`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use calico_api::endpoint::{
    EndpointPort, GlobalNetworkSet, HostEndpoint, HostEndpointSpec, NetworkSet, NetworkSetSpec,
    WorkloadEndpoint, WorkloadEndpointSpec,
};
use calico_api::network::{EncapMode, IPPool, IPPoolSpec, Node, NodeBgpSpec, NodeSpec};
use calico_api::numorstring::{Port, Protocol};
use calico_api::policy::{
    Action, EntityRule, GlobalNetworkPolicy, GlobalNetworkPolicySpec, IcmpFields, NetworkPolicy,
    NetworkPolicySpec, PolicyType, Profile, ProfileSpec, Rule, Tier, TierDefaultAction, TierSpec,
};
use calico_api::AnyResource;
use calico_calc::desired::DesiredState;
use calico_calc::packet::Packet;
use calico_calc::reference::World;
use calico_calc::{reference, verdict, Calculator, HostIdentity, Input};
use ipnet::IpNet;
use proptest::prelude::*;
use proptest::sample::select;

const HOST: &str = "node1";
const NAMESPACES: [&str; 3] = ["ns0", "ns1", "ns2"];
const KEYS: [&str; 3] = ["app", "role", "env"];
const VALUES: [&str; 3] = ["a", "b", "c"];

fn labels() -> BoxedStrategy<BTreeMap<String, String>> {
    prop::collection::btree_map(select(&KEYS[..]), select(&VALUES[..]), 0..3)
        .prop_map(|m| {
            m.into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .boxed()
}

fn atom() -> BoxedStrategy<String> {
    let k = select(&KEYS[..]);
    let v = select(&VALUES[..]);
    prop_oneof![
        (k.clone()).prop_map(|k| format!("has({k})")),
        (k.clone()).prop_map(|k| format!("!has({k})")),
        (k.clone(), v.clone()).prop_map(|(k, v)| format!("{k} == '{v}'")),
        (k.clone(), v.clone()).prop_map(|(k, v)| format!("{k} != '{v}'")),
        (k, v).prop_map(|(k, v)| format!("{k} in {{'{v}', 'c'}}")),
        Just("all()".to_string()),
        select(&NAMESPACES[..]).prop_map(|n| format!("projectcalico.org/namespace == '{n}'")),
    ]
    .boxed()
}

fn selector() -> BoxedStrategy<String> {
    prop_oneof![
        3 => atom(),
        1 => (atom(), atom()).prop_map(|(a, b)| format!("{a} && {b}")),
        1 => (atom(), atom()).prop_map(|(a, b)| format!("{a} || {b}")),
    ]
    .boxed()
}

fn ns_selector() -> BoxedStrategy<String> {
    prop_oneof![
        Just("all()".to_string()),
        Just("global()".to_string()),
        select(&["red", "blue"][..]).prop_map(|t| format!("team == '{t}'")),
        select(&NAMESPACES[..]).prop_map(|n| format!("projectcalico.org/name == '{n}'")),
        Just("!has(team)".to_string()),
    ]
    .boxed()
}

const NETS: [&str; 8] = [
    "10.0.0.0/30",
    "10.0.0.4/32",
    "192.0.2.0/24",
    "0.0.0.0/0",
    "203.0.113.5/32",
    "fd00::/64",
    "fd00::3/128",
    "2001:db8::/32",
];

fn nets() -> BoxedStrategy<Vec<String>> {
    prop::collection::vec(select(&NETS[..]).prop_map(str::to_string), 0..2).boxed()
}

fn port() -> BoxedStrategy<Port> {
    prop_oneof![
        select(&[53u16, 80, 443, 8080][..]).prop_map(Port::single),
        Just(Port::Range { min: 80, max: 443 }),
        select(&["http", "dns", "alt"][..]).prop_map(|n| Port::Named(n.to_string())),
    ]
    .boxed()
}

fn entity_rule(with_ports: bool) -> BoxedStrategy<EntityRule> {
    (
        prop::option::weighted(0.12, nets()),
        prop::option::weighted(0.08, nets()),
        prop::option::weighted(0.3, selector()),
        prop::option::weighted(0.1, selector()),
        prop::option::weighted(0.12, ns_selector()),
        prop::option::weighted(0.3, prop::collection::vec(port(), 1..3)),
        prop::option::weighted(0.1, prop::collection::vec(port(), 1..2)),
    )
        .prop_map(move |(n, nn, s, ns, nss, p, np)| EntityRule {
            nets: n.unwrap_or_default(),
            not_nets: nn.unwrap_or_default(),
            selector: s.unwrap_or_default(),
            not_selector: ns.unwrap_or_default(),
            namespace_selector: nss.unwrap_or_default(),
            ports: if with_ports {
                p.unwrap_or_default()
            } else {
                vec![]
            },
            not_ports: if with_ports {
                np.unwrap_or_default()
            } else {
                vec![]
            },
            ..EntityRule::default()
        })
        .boxed()
}

fn rule() -> BoxedStrategy<Rule> {
    let action = select(&[Action::Allow, Action::Deny, Action::Pass, Action::Log][..]);
    let proto = select(&[0u8, 0, 0, 0, 6, 6, 17, 1, 58, 132][..]);
    (
        action,
        proto,
        prop::option::weighted(0.1, select(&[6u8, 17, 1][..])),
        prop::option::weighted(0.12, select(&[4i64, 6][..])),
        prop::option::weighted(
            0.5,
            (
                select(&[0i64, 8][..]),
                prop::option::of(select(&[0i64, 1][..])),
            ),
        ),
        prop::option::weighted(
            0.2,
            (
                select(&[0i64, 8][..]),
                prop::option::of(select(&[0i64, 1][..])),
            ),
        ),
        entity_rule(true),
        entity_rule(true),
        any::<bool>(),
    )
        .prop_map(
            |(action, proto, not_proto, ipv, icmp, not_icmp, src, dst, src_ports)| {
                let mut r = Rule::new(action);
                let port_proto = matches!(proto, 6 | 17 | 132);
                if proto != 0 {
                    r.protocol = Some(Protocol::Number(proto));
                }
                r.not_protocol = not_proto.map(Protocol::Number);
                let icmp_proto = matches!(proto, 1 | 58);
                r.ip_version = match proto {
                    1 => Some(4),
                    58 => Some(6),
                    _ => ipv,
                };
                let f = |(t, c): (i64, Option<i64>)| IcmpFields {
                    icmp_type: Some(t),
                    code: c,
                };
                if icmp_proto {
                    r.icmp = icmp.map(f);
                    r.not_icmp = not_icmp.map(f);
                }
                let strip = |mut e: EntityRule, keep: bool| {
                    if !(port_proto && keep) {
                        e.ports.clear();
                        e.not_ports.clear();
                    }
                    e
                };
                r.source = strip(src, src_ports);
                r.destination = strip(dst, true);
                r
            },
        )
        .boxed()
}

/// 0-3 random rules, sometimes closed by a catch-all rule.
fn rules() -> BoxedStrategy<Vec<Rule>> {
    (
        prop::collection::vec(rule(), 0..4),
        prop::option::weighted(
            0.3,
            select(&[Action::Allow, Action::Deny, Action::Pass][..]),
        ),
    )
        .prop_map(|(mut v, last)| {
            v.extend(last.map(Rule::new));
            v
        })
        .boxed()
}

fn order() -> BoxedStrategy<Option<f64>> {
    prop::option::of(select(&[1.0, 10.0, 10.0, 100.0][..])).boxed()
}

fn types() -> BoxedStrategy<Vec<PolicyType>> {
    (0..4usize)
        .prop_map(|i| match i {
            0 => vec![],
            1 => vec![PolicyType::Ingress],
            2 => vec![PolicyType::Egress],
            _ => vec![PolicyType::Ingress, PolicyType::Egress],
        })
        .boxed()
}

fn tier_name() -> BoxedStrategy<String> {
    select(&["", "default", "t1"][..])
        .prop_map(str::to_string)
        .boxed()
}

fn named_ports() -> BoxedStrategy<Vec<EndpointPort>> {
    let p = |name: &str, proto: &str, port: u16| EndpointPort {
        name: name.into(),
        protocol: Protocol::Name(proto.into()),
        port,
        host_port: None,
        host_ip: String::new(),
    };
    prop::collection::vec(
        select(&[0usize, 1, 2, 3][..]).prop_map(move |i| match i {
            0 => p("http", "TCP", 80),
            1 => p("http", "TCP", 8080),
            2 => p("dns", "UDP", 53),
            _ => p("alt", "TCP", 443),
        }),
        0..3,
    )
    .boxed()
}

/// One resource (or block) of the random world; `idx` picks the name.
fn wep(idx: usize) -> BoxedStrategy<AnyResource> {
    (
        select(&NAMESPACES[..]),
        prop::option::weighted(0.8, Just(HOST)),
        labels(),
        named_ports(),
        prop::collection::vec(select(&["p0", "p1", "p0", "kns.ns0", "missing"][..]), 0..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(ns, node, labels, ports, profiles, orch, v6)| {
            let mut ips = vec![format!("10.0.0.{}/32", idx + 1)];
            if v6 {
                ips.push(format!("fd00::{}/128", idx + 1));
            }
            let mut w = WorkloadEndpoint::new(
                format!("e{idx}"),
                WorkloadEndpointSpec {
                    orchestrator: if orch {
                        "openstack".into()
                    } else {
                        String::new()
                    },
                    node: node.unwrap_or("node2").into(),
                    interface_name: format!("tap{idx}"),
                    ip_networks: ips,
                    profiles: profiles.into_iter().map(str::to_string).collect(),
                    ports,
                    ..Default::default()
                },
            );
            w.metadata.namespace = ns.into();
            w.metadata.labels = labels;
            AnyResource::WorkloadEndpoint(w)
        })
        .boxed()
}

fn policy(idx: usize) -> BoxedStrategy<AnyResource> {
    let name = ["a", "b", "c", "d"][idx % 4].to_string();
    (
        any::<bool>(),
        select(&NAMESPACES[..]),
        tier_name(),
        order(),
        selector(),
        prop::option::weighted(0.2, ns_selector()),
        types(),
        rules(),
        rules(),
    )
        .prop_map(
            move |(global, ns, tier, order, sel, nssel, types, ingress, egress)| {
                let mut ingress = ingress;
                let mut egress = egress;
                // Explicit types must cover the rules (upstream validation).
                if !types.is_empty() {
                    if !types.contains(&PolicyType::Ingress) {
                        ingress.clear();
                    }
                    if !types.contains(&PolicyType::Egress) {
                        egress.clear();
                    }
                }
                if global {
                    AnyResource::GlobalNetworkPolicy(GlobalNetworkPolicy::new(
                        name.clone(),
                        GlobalNetworkPolicySpec {
                            tier,
                            order,
                            selector: sel,
                            namespace_selector: nssel.unwrap_or_default(),
                            types,
                            ingress,
                            egress,
                            ..Default::default()
                        },
                    ))
                } else {
                    let mut p = NetworkPolicy::new(
                        name.clone(),
                        NetworkPolicySpec {
                            tier,
                            order,
                            selector: sel,
                            types,
                            ingress,
                            egress,
                            ..Default::default()
                        },
                    );
                    p.metadata.namespace = ns.into();
                    AnyResource::NetworkPolicy(p)
                }
            },
        )
        .boxed()
}

fn profile(name: &'static str) -> BoxedStrategy<AnyResource> {
    let team = prop::option::of(select(&["red", "blue"][..]));
    (rules(), rules(), labels(), team)
        .prop_map(move |(ingress, egress, mut l, team)| {
            if let Some(t) = team {
                l.insert("team".into(), t.into());
            }
            AnyResource::Profile(Profile::new(
                name,
                ProfileSpec {
                    ingress,
                    egress,
                    labels_to_apply: l,
                },
            ))
        })
        .boxed()
}

fn tier() -> BoxedStrategy<AnyResource> {
    (
        prop::option::of(select(&[50.0, 1_000_000.0, 2_000_000.0][..])),
        any::<bool>(),
    )
        .prop_map(|(order, pass)| {
            AnyResource::Tier(Tier::new(
                "t1",
                TierSpec {
                    order,
                    default_action: Some(if pass {
                        TierDefaultAction::Pass
                    } else {
                        TierDefaultAction::Deny
                    }),
                },
            ))
        })
        .boxed()
}

fn netset(idx: usize) -> BoxedStrategy<AnyResource> {
    (any::<bool>(), select(&NAMESPACES[..]), labels(), nets())
        .prop_map(move |(global, ns, l, nets)| {
            if global {
                let mut s = GlobalNetworkSet::new(
                    format!("g{idx}"),
                    NetworkSetSpec {
                        nets,
                        ..Default::default()
                    },
                );
                s.metadata.labels = l;
                AnyResource::GlobalNetworkSet(s)
            } else {
                let mut s = NetworkSet::new(
                    format!("s{idx}"),
                    NetworkSetSpec {
                        nets,
                        ..Default::default()
                    },
                );
                s.metadata.namespace = ns.into();
                s.metadata.labels = l;
                AnyResource::NetworkSet(s)
            }
        })
        .boxed()
}

fn hep() -> BoxedStrategy<AnyResource> {
    (labels(), named_ports())
        .prop_map(|(l, ports)| {
            let mut h = HostEndpoint::new(
                "h0",
                HostEndpointSpec {
                    node: "node2".into(),
                    interface_name: "eth0".into(),
                    expected_ips: vec!["203.0.113.5".into()],
                    ports,
                    ..Default::default()
                },
            );
            h.metadata.labels = l;
            AnyResource::HostEndpoint(h)
        })
        .boxed()
}

/// Anything the world may contain.
fn any_resource() -> BoxedStrategy<AnyResource> {
    prop_oneof![
        4 => (0..6usize).prop_flat_map(wep),
        4 => (0..4usize).prop_flat_map(policy),
        2 => select(&["p0", "p1", "kns.ns0", "kns.ns1"][..]).prop_flat_map(profile),
        1 => tier(),
        1 => (0..2usize).prop_flat_map(netset),
        1 => hep(),
    ]
    .boxed()
}

fn world() -> BoxedStrategy<Vec<AnyResource>> {
    (
        prop::collection::vec((0..6usize).prop_flat_map(wep), 2..7),
        prop::collection::vec((0..4usize).prop_flat_map(policy), 0..6),
        (profile("p0"), profile("p1")),
        prop::collection::vec(
            select(&["kns.ns0", "kns.ns1"][..]).prop_flat_map(profile),
            0..2,
        ),
        prop::option::of(tier()),
        prop::collection::vec((0..2usize).prop_flat_map(netset), 0..3),
        prop::option::of(hep()),
    )
        .prop_map(|(w, p, (p0, p1), pr, t, n, h)| {
            let mut v = w;
            v.extend(p);
            v.push(p0);
            v.push(p1);
            v.extend(pr);
            v.extend(t);
            v.extend(n);
            v.extend(h);
            v
        })
        .boxed()
}

const ADDRS_V4: [&str; 9] = [
    "10.0.0.1",
    "10.0.0.2",
    "10.0.0.3",
    "10.0.0.4",
    "10.0.0.5",
    "10.0.0.6",
    "192.0.2.9",
    "203.0.113.5",
    "8.8.8.8",
];
const ADDRS_V6: [&str; 5] = ["fd00::1", "fd00::2", "fd00::3", "fd00::4", "2001:db8::1"];

fn packet() -> BoxedStrategy<Packet> {
    (
        prop::bool::weighted(0.25),
        prop_oneof![4 => 0..6usize, 1 => 6..9usize],
        prop_oneof![4 => 0..6usize, 1 => 6..9usize],
        select(&[6u8, 6, 17, 1, 132][..]),
        select(&[53u16, 80, 443, 1000, 8080][..]),
        select(&[53u16, 80, 443, 1000][..]),
        select(&[0u8, 8][..]),
        select(&[0u8, 1][..]),
    )
        .prop_map(|(v6, s, d, proto, dport, sport, t, c)| {
            let pick = |i: usize| -> IpAddr {
                if v6 {
                    ADDRS_V6[i % ADDRS_V6.len()].parse().unwrap()
                } else {
                    ADDRS_V4[i].parse().unwrap()
                }
            };
            let (src, dst) = (pick(s), pick(d));
            if proto == 1 {
                Packet::icmp(src, dst, t, c)
            } else {
                Packet {
                    src,
                    dst,
                    protocol: proto,
                    src_port: sport,
                    dst_port: dport,
                    icmp_type: None,
                    icmp_code: None,
                }
            }
        })
        .boxed()
}

/// Keyed world: the last resource of each (kind, ns, name) wins.
fn dedup(rs: Vec<AnyResource>) -> Vec<AnyResource> {
    let mut m: BTreeMap<(String, String, String), AnyResource> = BTreeMap::new();
    for r in rs {
        let md = r.metadata();
        m.insert(
            (r.kind().to_string(), md.namespace.clone(), md.name.clone()),
            r,
        );
    }
    m.into_values().collect()
}

/// Case count: `PROPTEST_CASES` overrides the default (for soak runs).
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn new_calc() -> Calculator {
    Calculator::new(HostIdentity {
        node_name: HOST.into(),
        node_ip: None,
    })
}

fn compile(rs: &[AnyResource]) -> DesiredState {
    let mut calc = new_calc();
    for r in rs {
        calc.on_input(Input::Resource(r.clone()));
    }
    let out = calc.flush();
    let s = DesiredState::from_updates(&out);
    assert!(s.violations.is_empty(), "{:#?}", s.violations);
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(400), ..ProptestConfig::default() })]

    #[test]
    fn compiled_verdict_matches_reference(rs in world(), pkts in prop::collection::vec(packet(), 40)) {
        let rs = dedup(rs);
        let state = compile(&rs);
        let mut w = World::from_resources(rs.iter().cloned());
        w.local_node = Some(HOST.into());
        for p in &pkts {
            let v = verdict::evaluate(&state, p);
            let r = reference::evaluate(&w, p);
            prop_assert_eq!(&v, &r, "packet {:?}\nworld {:#?}", p, rs);
        }
    }
}

// ---- incremental == from scratch ---------------------------------------------

#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum Op {
    Upsert(AnyResource),
    /// Delete the n-th (mod len) currently present resource.
    Delete(usize),
    Block(IpNet, Option<String>),
    BlockRemoved(IpNet),
    Flush,
}

fn node(name: &'static str) -> BoxedStrategy<AnyResource> {
    (
        select(&["172.20.0.2/24", "172.20.1.3/24", "172.20.0.9/16"][..]),
        prop::option::weighted(0.8, select(&["10.0.5.1", "10.0.6.1"][..])),
    )
        .prop_map(move |(addr, tun)| {
            AnyResource::Node(Node::new(
                name,
                NodeSpec {
                    bgp: Some(NodeBgpSpec {
                        ipv4_address: addr.into(),
                        ..Default::default()
                    }),
                    ipv4_vxlan_tunnel_addr: tun.unwrap_or_default().into(),
                    vxlan_tunnel_mac_addr: if tun.is_some() {
                        "66:00:00:00:00:01".into()
                    } else {
                        String::new()
                    },
                    ..Default::default()
                },
            ))
        })
        .boxed()
}

fn pool() -> BoxedStrategy<AnyResource> {
    (
        select(&["p1", "p2"][..]),
        select(&["10.0.0.0/16", "10.0.0.0/24", "192.0.2.0/24"][..]),
        select(&[EncapMode::Never, EncapMode::Always, EncapMode::CrossSubnet][..]),
    )
        .prop_map(|(name, cidr, mode)| {
            AnyResource::IPPool(IPPool::new(
                name,
                IPPoolSpec {
                    cidr: cidr.into(),
                    vxlan_mode: Some(mode),
                    ..Default::default()
                },
            ))
        })
        .boxed()
}

fn op() -> BoxedStrategy<Op> {
    let block = select(&["10.0.0.0/29", "10.0.0.8/29", "10.0.1.0/26", "10.0.0.4/32"][..])
        .prop_map(|s| s.parse::<IpNet>().unwrap());
    prop_oneof![
        8 => any_resource().prop_map(Op::Upsert),
        2 => select(&[HOST, "node2", "node3"][..]).prop_flat_map(node).prop_map(Op::Upsert),
        1 => pool().prop_map(Op::Upsert),
        3 => any::<usize>().prop_map(Op::Delete),
        1 => (block.clone(), prop::option::of(select(&[HOST, "node2", "node3"][..]).prop_map(str::to_string)))
            .prop_map(|(b, a)| Op::Block(b, a)),
        1 => block.prop_map(Op::BlockRemoved),
        3 => Just(Op::Flush),
    ]
        .boxed()
}

type Key = (String, String, String);

fn key(r: &AnyResource) -> Key {
    let m = r.metadata();
    (r.kind().to_string(), m.namespace.clone(), m.name.clone())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(300), ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_from_scratch(ops in prop::collection::vec(op(), 1..60)) {
        let mut calc = new_calc();
        let mut state = DesiredState::new();
        let mut present: BTreeMap<Key, AnyResource> = BTreeMap::new();
        let mut blocks: BTreeMap<IpNet, Option<String>> = BTreeMap::new();
        let flush = |calc: &mut Calculator, state: &mut DesiredState| {
            for u in calc.flush() {
                state.apply(&u);
            }
        };
        for op in ops {
            match op {
                Op::Upsert(r) => {
                    present.insert(key(&r), r.clone());
                    calc.on_input(Input::Resource(r));
                }
                Op::Delete(n) => {
                    if present.is_empty() {
                        continue;
                    }
                    let k = present.keys().nth(n % present.len()).unwrap().clone();
                    present.remove(&k);
                    let kind = calico_api::lookup_kind(&k.0).unwrap().kind;
                    calc.on_input(Input::ResourceRemoved { kind, namespace: k.1, name: k.2 });
                }
                Op::Block(c, a) => {
                    blocks.insert(c, a.clone());
                    calc.on_input(Input::Block { cidr: c, affinity: a });
                }
                Op::BlockRemoved(c) => {
                    blocks.remove(&c);
                    calc.on_input(Input::BlockRemoved { cidr: c });
                }
                Op::Flush => flush(&mut calc, &mut state),
            }
            prop_assert!(state.violations.is_empty(), "{:#?}", state.violations);
        }
        flush(&mut calc, &mut state);
        prop_assert!(state.violations.is_empty(), "{:#?}", state.violations);
        // Nothing further to say once flushed.
        prop_assert_eq!(calc.flush(), vec![]);

        let mut fresh = new_calc();
        for r in present.values() {
            fresh.on_input(Input::Resource(r.clone()));
        }
        for (c, a) in &blocks {
            fresh.on_input(Input::Block { cidr: *c, affinity: a.clone() });
        }
        let scratch = DesiredState::from_updates(&fresh.flush());
        prop_assert!(scratch.violations.is_empty(), "{:#?}", scratch.violations);
        prop_assert_eq!(&state.ip_sets, &scratch.ip_sets);
        prop_assert_eq!(&state.policies, &scratch.policies);
        prop_assert_eq!(&state.endpoints, &scratch.endpoints);
        prop_assert_eq!(&state.routes, &scratch.routes);
        prop_assert_eq!(&state.vteps, &scratch.vteps);
        prop_assert_eq!(&state.pools, &scratch.pools);
        prop_assert_eq!(&state.config, &scratch.config);
    }
}
