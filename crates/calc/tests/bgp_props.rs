//! The BGP intent depends only on the datastore's final state: fed the
//! same changes in any order (each key's own changes in order, with stale
//! versions and deletions along the way), `BgpCalc` gives the intent it
//! gives when fed only the final resources in canonical order. And an input
//! it calls unchanged never changes the intent.

use std::net::IpAddr;

use calico_api::endpoint::{IpNat, WorkloadEndpoint, WorkloadEndpointSpec};
use calico_api::network::{
    AsNumber, BGPConfiguration, BGPConfigurationSpec, BGPPeer, BGPPeerSpec, EncapMode, IPPool,
    IPPoolSpec, Node, NodeBgpSpec, NodeSpec,
};
use calico_api::AnyResource;
use calico_calc::bgp::BgpCalc;
use calico_calc::{AffinityState, Input};
use ipnet::IpNet;
use proptest::prelude::*;

const ME: &str = "n0";

/// Every key the generated datastore can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Node(u8),
    Peer(u8),
    DefaultConfig,
    NodeConfig,
    Pool(u8),
    Block(u8),
    Affinity(u8, bool),
    Wep(u8),
}

/// Per key, its versions in order (None: a deletion).
type Histories = Vec<(Key, Vec<Option<u8>>)>;

const NODES: u8 = 5;
const PEERS: u8 = 6;

fn keys() -> Vec<Key> {
    let mut k = Vec::new();
    k.extend((0..NODES).map(Key::Node));
    k.extend((0..PEERS).map(Key::Peer));
    k.push(Key::DefaultConfig);
    k.push(Key::NodeConfig);
    k.extend((0..2).map(Key::Pool));
    k.extend((0..4).map(Key::Block));
    k.extend((0..4).map(|b| Key::Affinity(b, true)));
    k.push(Key::Affinity(1, false));
    k.extend((0..4).map(Key::Wep));
    k
}

fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn block_cidr(b: u8) -> IpNet {
    format!("192.168.0.{}/26", b * 64).parse().unwrap()
}

fn node(i: u8, v: u8) -> AnyResource {
    let bit = |n: u8| v >> n & 1 == 1;
    let mut l = Vec::new();
    if bit(4) {
        l.push(("rr", "true"));
    }
    l.push(("rack", if bit(5) { "r1" } else { "r2" }));
    let mut n = Node::new(
        format!("n{i}"),
        NodeSpec {
            bgp: Some(NodeBgpSpec {
                // This node always has an IPv4 address, so there is an intent.
                ipv4_address: if i == 0 || bit(0) {
                    format!("10.0.0.{}/24", i + 1)
                } else {
                    String::new()
                },
                ipv6_address: if bit(1) {
                    format!("fd00::{}/64", i + 1)
                } else {
                    String::new()
                },
                as_number: bit(2).then_some(AsNumber(65001)),
                route_reflector_cluster_id: if bit(3) {
                    format!("224.0.0.{}", 1 + i % 2)
                } else {
                    String::new()
                },
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    n.metadata.labels = labels(&l);
    n.into()
}

fn peer(j: u8, v: u8) -> AnyResource {
    let bit = |n: u8| v >> n & 1 == 1;
    let asn = Some(AsNumber(if bit(0) { 64512 } else { 65001 }));
    let mut s = match j {
        0 => BGPPeerSpec {
            peer_ip: "192.168.10.254".into(),
            as_number: asn,
            ..Default::default()
        },
        1 => BGPPeerSpec {
            node_selector: "all()".into(),
            peer_selector: "rr == 'true'".into(),
            ..Default::default()
        },
        2 => BGPPeerSpec {
            node_selector: "rack == 'r1'".into(),
            peer_ip: if bit(2) {
                "172.16.0.1:1790"
            } else {
                "172.16.0.1"
            }
            .into(),
            as_number: asn,
            ..Default::default()
        },
        3 => BGPPeerSpec {
            peer_ip: "10.0.0.3".into(),
            as_number: asn,
            ..Default::default()
        },
        4 => BGPPeerSpec {
            local_workload_selector: "role == 'router'".into(),
            as_number: Some(AsNumber(65100)),
            ..Default::default()
        },
        _ => BGPPeerSpec {
            node: "n1".into(),
            peer_selector: "rack == 'r2'".into(),
            ..Default::default()
        },
    };
    if bit(1) {
        s.reverse_peering = Some("Manual".into());
    }
    if bit(3) {
        s.keep_original_next_hop = Some(true);
    }
    BGPPeer::new(format!("p{j}"), s).into()
}

fn default_config(v: u8) -> AnyResource {
    let bit = |n: u8| v >> n & 1 == 1;
    BGPConfiguration::new(
        "default",
        BGPConfigurationSpec {
            node_to_node_mesh_enabled: bit(0).then_some(false),
            as_number: bit(1).then_some(AsNumber(64600)),
            listen_port: bit(2).then_some(1790),
            node_mesh_max_restart_time: bit(3).then(|| "300s".to_string()),
            ..Default::default()
        },
    )
    .into()
}

fn node_config(v: u8) -> AnyResource {
    BGPConfiguration::new(
        "node.n1",
        BGPConfigurationSpec {
            listen_port: Some(1800 + u16::from(v & 1)),
            ..Default::default()
        },
    )
    .into()
}

fn pool(k: u8, v: u8) -> AnyResource {
    let bit = |n: u8| v >> n & 1 == 1;
    let (name, cidr) = if k == 0 {
        ("p-192", "192.168.0.0/16")
    } else {
        ("p-10", "10.65.0.0/16")
    };
    IPPool::new(
        name,
        IPPoolSpec {
            cidr: cidr.into(),
            disable_bgp_export: bit(0),
            vxlan_mode: bit(1).then_some(EncapMode::Always),
            ipip_mode: (!bit(1) && bit(2)).then_some(EncapMode::CrossSubnet),
            ..Default::default()
        },
    )
    .into()
}

fn wep(k: u8, v: u8) -> AnyResource {
    let bit = |n: u8| v >> n & 1 == 1;
    let host = if bit(0) { ME } else { "n1" };
    let mut w = WorkloadEndpoint::default();
    w.metadata.name = format!("w{k}");
    w.metadata.namespace = "openstack".into();
    if bit(5) {
        w.metadata.labels = labels(&[("role", "router")]);
    }
    let a = format!("192.168.0.{}/32", k * 64 + 5 + (v >> 1 & 3));
    w.spec = WorkloadEndpointSpec {
        node: host.into(),
        orchestrator: "openstack".into(),
        interface_name: format!("tapw{k}"),
        ip_networks: vec![a, format!("10.65.0.{k}/32"), format!("fd00:9::{k}/128")],
        ip_nats: if bit(4) {
            vec![IpNat {
                internal_ip: format!("10.65.0.{k}"),
                external_ip: format!("203.0.113.{k}"),
            }]
        } else {
            vec![]
        },
        ..Default::default()
    };
    w.into()
}

/// The input that puts `key` at `variant`, or removes it.
fn input(key: Key, variant: Option<u8>) -> Input {
    let removed = |kind: &'static str, ns: &str, name: String| Input::ResourceRemoved {
        kind,
        namespace: ns.into(),
        name,
    };
    match (key, variant) {
        (Key::Node(i), Some(v)) => Input::Resource(node(i, v)),
        (Key::Node(i), None) => removed("Node", "", format!("n{i}")),
        (Key::Peer(j), Some(v)) => Input::Resource(peer(j, v)),
        (Key::Peer(j), None) => removed("BGPPeer", "", format!("p{j}")),
        (Key::DefaultConfig, Some(v)) => Input::Resource(default_config(v)),
        (Key::DefaultConfig, None) => removed("BGPConfiguration", "", "default".into()),
        (Key::NodeConfig, Some(v)) => Input::Resource(node_config(v)),
        (Key::NodeConfig, None) => removed("BGPConfiguration", "", "node.n1".into()),
        (Key::Pool(k), Some(v)) => Input::Resource(pool(k, v)),
        (Key::Pool(k), None) => removed("IPPool", "", if k == 0 { "p-192" } else { "p-10" }.into()),
        (Key::Block(b), Some(v)) => Input::Block {
            cidr: block_cidr(b),
            affinity: match v % 3 {
                0 => Some(ME.into()),
                1 => Some("n1".into()),
                _ => None,
            },
        },
        (Key::Block(b), None) => Input::BlockRemoved {
            cidr: block_cidr(b),
        },
        (Key::Affinity(b, mine), Some(v)) => Input::BlockAffinity {
            host: if mine { ME } else { "n1" }.into(),
            cidr: block_cidr(b),
            state: [
                AffinityState::Confirmed,
                AffinityState::Pending,
                AffinityState::PendingDeletion,
            ][usize::from(v % 3)],
        },
        (Key::Affinity(b, mine), None) => Input::BlockAffinityRemoved {
            host: if mine { ME } else { "n1" }.into(),
            cidr: block_cidr(b),
        },
        (Key::Wep(k), Some(v)) => Input::Resource(wep(k, v)),
        (Key::Wep(k), None) => removed("WorkloadEndpoint", "openstack", format!("w{k}")),
    }
}

/// Per key, its versions in order (None: a deletion). This node's Node
/// always ends present.
fn histories() -> impl Strategy<Value = Histories> {
    let ks = keys();
    let n = ks.len();
    prop::collection::vec(
        prop::collection::vec(prop::option::weighted(0.8, 0u8..64), 1..=3),
        n,
    )
    .prop_map(move |hs| {
        ks.iter()
            .copied()
            .zip(hs)
            .map(|(k, mut h)| {
                if k == Key::Node(0) {
                    let last = h.last_mut().unwrap();
                    *last = Some(last.unwrap_or(0));
                }
                (k, h)
            })
            .collect()
    })
}

/// The histories interleaved: `order` says which key's next version comes
/// next (each key's versions stay in order).
fn interleave(hs: &Histories, order: &[usize]) -> Vec<Input> {
    let mut slots: Vec<usize> = hs
        .iter()
        .enumerate()
        .flat_map(|(i, (_, h))| std::iter::repeat_n(i, h.len()))
        .collect();
    // `order` is a permutation of the slots.
    slots = order.iter().map(|&o| slots[o]).collect();
    let mut next = vec![0usize; hs.len()];
    slots
        .into_iter()
        .map(|i| {
            let (k, h) = &hs[i];
            let v = h[next[i]];
            next[i] += 1;
            input(*k, v)
        })
        .collect()
}

fn canonical(hs: &Histories) -> BgpCalc {
    let mut c = BgpCalc::new(ME);
    for (k, h) in hs {
        if let Some(v) = *h.last().unwrap() {
            c.on_input(&input(*k, Some(v)));
        }
    }
    c
}

fn with_order() -> impl Strategy<Value = (Histories, Vec<usize>)> {
    histories().prop_flat_map(|hs| {
        let n: usize = hs.iter().map(|(_, h)| h.len()).sum();
        let order: Vec<usize> = (0..n).collect();
        (Just(hs), Just(order).prop_shuffle())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_order_converges_to_the_canonical_intent((hs, order) in with_order()) {
        let want = canonical(&hs).intent();
        prop_assert!(want.is_some(), "this node always has an address");
        let mut c = BgpCalc::new(ME);
        let mut last = c.intent();
        for i in interleave(&hs, &order) {
            let changed = c.on_input(&i);
            let now = c.intent();
            if !changed {
                prop_assert_eq!(&now, &last, "an input reported unchanged changed the intent: {:?}", i);
            }
            last = now;
        }
        prop_assert_eq!(last, want);
    }
}

#[test]
fn the_generated_cluster_exercises_the_rules() {
    // One fixed history with every key present, to check the generator
    // reaches peers of each kind and every origin.
    let hs: Histories = keys()
        .into_iter()
        .map(|k| {
            let v = match k {
                Key::Node(0) => 0b10_0011,
                Key::Node(2) => 0b00_0011,
                Key::Node(3) => 0b01_0001,
                Key::Node(_) => 0b00_0001,
                Key::DefaultConfig => 0,
                Key::Block(b) => b % 3,
                // Block 1 is another host's: its address here is borrowed.
                Key::Affinity(1, true) => 1,
                Key::Wep(k) => 0b10_0001 | (k & 1) << 4,
                _ => 0,
            };
            (k, vec![Some(v)])
        })
        .collect();
    let i = canonical(&hs).intent().unwrap();
    let kinds: std::collections::BTreeSet<_> = i.peers.values().map(|p| p.kind).collect();
    assert_eq!(kinds.len(), 4, "{:?}", i.peers.keys().collect::<Vec<_>>());
    let whys: std::collections::BTreeSet<_> = i.originate.iter().map(|o| o.why).collect();
    assert_eq!(whys.len(), 4, "{:?}", i.originate);
    assert!(i
        .peers
        .values()
        .all(|p| p.address != IpAddr::from([10, 0, 0, 1])));
}
