//! One test per rule, on small clusters written as the user writes them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use calico_api::decode::decode_documents;
use ipnet::IpNet;

use super::*;
use crate::input::{AffinityState, Input};

/// Inputs from YAML documents.
fn docs(yaml: &str) -> Vec<Input> {
    decode_documents(yaml)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .into_iter()
        .map(|d| Input::Resource(d.resource))
        .collect()
}

/// A Node document.
fn node(name: &str, bgp: &str, labels: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n  bgp: {{{bgp}}}\n---\n"
    )
}

fn v4node(name: &str, ip: &str) -> String {
    node(name, &format!("ipv4Address: {ip}/24"), "")
}

fn peer(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: {name}\nspec: {{{spec}}}\n---\n"
    )
}

fn config(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata:\n  name: {name}\nspec: {{{spec}}}\n---\n"
    )
}

fn calc(node_name: &str, yaml: &str) -> BgpCalc {
    let mut c = BgpCalc::new(node_name);
    for i in docs(yaml) {
        c.on_input(&i);
    }
    c
}

fn intent(node_name: &str, yaml: &str) -> BgpIntent {
    calc(node_name, yaml).intent().expect("an intent")
}

fn names(i: &BgpIntent) -> Vec<&str> {
    i.peers.keys().map(String::as_str).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn three_nodes() -> String {
    v4node("a", "10.0.0.1") + &v4node("b", "10.0.0.2") + &v4node("c", "10.0.0.3")
}

// ---- the mesh -------------------------------------------------------------

#[test]
fn mesh_of_three() {
    let i = intent("b", &three_nodes());
    assert_eq!(i.router_id, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!((i.local_as, i.listen_port), (64512, 179));
    assert_eq!(i.ipv4, Some("10.0.0.2/24".parse().unwrap()));
    assert_eq!(names(&i), ["Mesh_10_0_0_1", "Mesh_10_0_0_3"]);
    let a = &i.peers["Mesh_10_0_0_1"];
    assert_eq!(a.kind, PeerKind::Mesh);
    assert_eq!(
        (a.address, a.port, a.peer_as, a.local_as),
        (ip("10.0.0.1"), 179, 64512, 64512)
    );
    assert_eq!(a.source_address, Some(ip("10.0.0.2")));
    assert!(!a.passive, "the lower address is not waited for");
    assert!(
        i.peers["Mesh_10_0_0_3"].passive,
        "a higher peer connects to us"
    );
    assert_eq!(a.restart_time, None);
    assert_eq!(a.effective_restart_time(), Duration::from_secs(120));
    assert!(!a.rr_client && a.bgp_peer.is_none() && a.password.is_none());
}

#[test]
fn mesh_passive_side_compares_addresses_as_text() {
    // Upstream compares strings: "10.0.0.10" < "10.0.0.9".
    let y = v4node("nine", "10.0.0.9") + &v4node("ten", "10.0.0.10");
    assert!(!intent("nine", &y).peers["Mesh_10_0_0_10"].passive);
    assert!(intent("ten", &y).peers["Mesh_10_0_0_9"].passive);
}

#[test]
fn mesh_disabled_by_the_default_configuration() {
    let y = three_nodes() + &config("default", "nodeToNodeMeshEnabled: false");
    assert!(intent("a", &y).peers.is_empty());
    // Only "default" switches it.
    let y = three_nodes() + &config("node.a", "listenPort: 1790");
    assert_eq!(intent("a", &y).peers.len(), 2);
}

#[test]
fn mesh_ports_as_restart_time_and_password() {
    let dir = tempdir();
    std::fs::create_dir_all(dir.join("bgp")).unwrap();
    std::fs::write(dir.join("bgp/mesh"), "s3cret\n").unwrap();
    let y = three_nodes().replace("ipv4Address: 10.0.0.3/24", "ipv4Address: 10.0.0.3/24, asNumber: 65003")
        + &config(
            "default",
            "asNumber: 64600, listenPort: 1790, nodeMeshMaxRestartTime: 300s, nodeMeshPassword: {secretKeyRef: {name: bgp, key: mesh}}",
        )
        + &config("node.b", "listenPort: 1800");
    let mut c = calc("a", &y);
    c.set_secrets_dir(&dir);
    let i = c.intent().unwrap();
    assert_eq!((i.local_as, i.listen_port), (64600, 1790));
    let b = &i.peers["Mesh_10_0_0_2"];
    let cc = &i.peers["Mesh_10_0_0_3"];
    assert_eq!((b.port, b.peer_as), (1800, 64600), "b's own listen port");
    assert_eq!(
        (cc.port, cc.peer_as),
        (1790, 65003),
        "the cluster's port, c's AS"
    );
    assert_eq!(b.restart_time, Some(Duration::from_secs(300)));
    assert_eq!(b.password, Some(Password("s3cret".into())));
    assert_eq!(format!("{:?}", b.password), "Some(Password(<redacted>))");
    // The name carries no port for the mesh.
    assert_eq!(names(&i), ["Mesh_10_0_0_2", "Mesh_10_0_0_3"]);
    // b listens on its own port.
    let mut c = calc("b", &y);
    c.set_secrets_dir(&dir);
    assert_eq!(c.intent().unwrap().listen_port, 1800);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn mesh_covers_each_family_separately() {
    let y = node(
        "a",
        "ipv4Address: 10.0.0.1/24, ipv6Address: 'fd00::1/64'",
        "",
    ) + &node(
        "b",
        "ipv4Address: 10.0.0.2/24, ipv6Address: 'fd00::2/64'",
        "",
    ) + &node("c", "ipv4Address: 10.0.0.3/24", "")
        + &node("d", "ipv6Address: 'fd00::4/64'", "");
    let i = intent("a", &y);
    assert_eq!(
        names(&i),
        [
            "Mesh_10_0_0_2",
            "Mesh_10_0_0_3",
            "Mesh_fd00__2",
            "Mesh_fd00__4"
        ]
    );
    let p = &i.peers["Mesh_fd00__4"];
    assert_eq!(
        (p.address, p.source_address),
        (ip("fd00::4"), Some(ip("fd00::1")))
    );
    assert!(p.passive, "fd00::4 > fd00::1");
    assert_eq!(i.ipv6, Some("fd00::1/64".parse().unwrap()));
    // c has no IPv6 address: only IPv4 sessions.
    assert_eq!(names(&intent("c", &y)), ["Mesh_10_0_0_1", "Mesh_10_0_0_2"]);
}

#[test]
fn ipv6_only_node_needs_a_router_id() {
    let y = node("d", "ipv6Address: 'fd00::4/64'", "") + &v4node("a", "10.0.0.1");
    let c = calc("d", &y);
    let (i, w) = c.compute();
    assert!(i.is_none());
    assert!(w[0].contains("CALICO_ROUTER_ID"), "{w:?}");
    let mut c = calc("d", &y);
    c.set_router_id(RouterId::Hash);
    let i = c.intent().unwrap();
    assert_eq!(i.router_id, hash_to_ipv4("d"));
    assert!(i.peers.is_empty(), "no IPv6 peer");
    c.set_router_id(RouterId::parse("192.0.2.7").unwrap());
    assert_eq!(c.intent().unwrap().router_id, Ipv4Addr::new(192, 0, 2, 7));
    assert!(RouterId::parse("nonsense").is_err());
    assert_eq!(RouterId::parse("").unwrap(), RouterId::NodeIp);
}

#[test]
fn router_id_hash_matches_upstream() {
    // upstream's template_funcs_test.go.
    assert_eq!(hash_to_ipv4("Testrobin123"), Ipv4Addr::new(207, 94, 5, 27));
    assert_eq!(hash_to_ipv4("nodeTest"), Ipv4Addr::new(109, 174, 215, 226));
}

#[test]
fn no_intent_without_a_bgp_address() {
    let y = three_nodes() + &node("x", "asNumber: 65000", "");
    assert!(calc("x", &y).intent().is_none());
    assert!(calc("unknown", &y).intent().is_none());
    // Nodes without addresses are not peers.
    assert_eq!(intent("a", &y).peers.len(), 2);
}

// ---- route reflectors ------------------------------------------------------

/// The documented route-reflector setup: two reflectors (cluster ID and a
/// label), two clients, mesh off, one BGPPeer.
fn rr_cluster(mesh: bool) -> String {
    let rr = |n: &str, ip: &str| {
        node(
            n,
            &format!("ipv4Address: {ip}/24, routeReflectorClusterID: 224.0.0.1"),
            "route-reflector: 'true'",
        )
    };
    let mut y = rr("rr1", "10.0.0.1")
        + &rr("rr2", "10.0.0.2")
        + &v4node("c1", "10.0.0.11")
        + &v4node("c2", "10.0.0.12")
        + &peer(
            "peer-with-route-reflectors",
            "nodeSelector: all(), peerSelector: route-reflector == 'true'",
        );
    if !mesh {
        y += &config("default", "nodeToNodeMeshEnabled: false");
    }
    y
}

#[test]
fn route_reflector_topology() {
    let y = rr_cluster(false);
    // Clients peer with the reflectors only.
    let c1 = intent("c1", &y);
    assert_eq!(names(&c1), ["Node_10_0_0_1", "Node_10_0_0_2"]);
    let p = &c1.peers["Node_10_0_0_1"];
    assert_eq!(p.kind, PeerKind::NodeSpecific);
    assert_eq!(p.bgp_peer.as_deref(), Some("peer-with-route-reflectors"));
    assert!(!p.rr_client && !p.passive);
    assert_eq!(c1.rr_cluster_id, None);
    // Reflectors peer with each other and with every client (the reverse
    // peerings), and mark the clients as such.
    let rr1 = intent("rr1", &y);
    assert_eq!(rr1.rr_cluster_id, Some(Ipv4Addr::new(224, 0, 0, 1)));
    assert_eq!(
        names(&rr1),
        ["Node_10_0_0_11", "Node_10_0_0_12", "Node_10_0_0_2"]
    );
    assert!(rr1.peers["Node_10_0_0_11"].rr_client);
    assert!(rr1.peers["Node_10_0_0_12"].rr_client);
    assert!(
        !rr1.peers["Node_10_0_0_2"].rr_client,
        "same cluster ID: not a client"
    );
}

#[test]
fn reflectors_leave_the_mesh() {
    // Mesh left on: clients mesh among themselves but not with reflectors;
    // reflectors have no mesh at all.
    let y = rr_cluster(true);
    assert_eq!(
        names(&intent("c1", &y)),
        ["Mesh_10_0_0_12", "Node_10_0_0_1", "Node_10_0_0_2"]
    );
    assert!(intent("rr1", &y)
        .peers
        .values()
        .all(|p| p.kind != PeerKind::Mesh));
}

#[test]
fn reflector_with_another_cluster_id_is_a_client() {
    let y = rr_cluster(false).replace(
        "ipv4Address: 10.0.0.2/24, routeReflectorClusterID: 224.0.0.1",
        "ipv4Address: 10.0.0.2/24, routeReflectorClusterID: 224.0.0.2",
    );
    assert!(intent("rr1", &y).peers["Node_10_0_0_2"].rr_client);
}

// ---- explicit peers ---------------------------------------------------------

/// The article's global peer.
const GLOBAL_3040: &str = "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: bgppeer-global-3040
spec:
  peerIP: 192.168.10.254
  asNumber: 64512
---
";

#[test]
fn global_peer_on_every_node() {
    let y = three_nodes() + GLOBAL_3040;
    for n in ["a", "b", "c"] {
        let i = intent(n, &y);
        let p = &i.peers["Global_192_168_10_254"];
        assert_eq!(p.kind, PeerKind::Global);
        assert_eq!(
            (p.address, p.port, p.peer_as),
            (ip("192.168.10.254"), 179, 64512)
        );
        assert!(!p.passive, "not a Calico node: we connect");
        assert!(!p.rr_client);
        assert_eq!(p.source_address, Some(i.ipv4.unwrap().addr().into()));
        assert_eq!(i.peers.len(), 3);
    }
    // From a route reflector, the (same-AS) ToR is a client.
    let y = rr_cluster(false) + GLOBAL_3040;
    assert!(intent("rr1", &y).peers["Global_192_168_10_254"].rr_client);
    assert!(!intent("c1", &y).peers["Global_192_168_10_254"].rr_client);
}

#[test]
fn global_peer_to_a_calico_node_is_passive_towards_higher_and_reversed() {
    // A global BGPPeer naming node c's address: every other node gets
    // Global_10_0_0_3 (passive: c's address is higher), and c gets the
    // reverse peerings to every node.
    let y = three_nodes()
        + &config("default", "nodeToNodeMeshEnabled: false")
        + &peer("to-c", "peerIP: 10.0.0.3, asNumber: 64512");
    let a = intent("a", &y);
    assert_eq!(names(&a), ["Global_10_0_0_3"]);
    assert!(a.peers["Global_10_0_0_3"].passive);
    let c = intent("c", &y);
    assert_eq!(names(&c), ["Node_10_0_0_1", "Node_10_0_0_2"]);
    assert!(c.peers.values().all(|p| !p.passive));
    // An AS that is not c's: no reverse peerings.
    let y = y.replace("asNumber: 64512", "asNumber: 65000");
    assert!(intent("c", &y).peers.is_empty());
    // reversePeering: Manual: none either.
    let y = three_nodes()
        + &config("default", "nodeToNodeMeshEnabled: false")
        + &peer(
            "to-c",
            "peerIP: 10.0.0.3, asNumber: 64512, reversePeering: Manual",
        );
    assert!(intent("c", &y).peers.is_empty());
}

#[test]
fn node_and_node_selector_scope_a_peer() {
    let y = node("a", "ipv4Address: 10.0.0.1/24", "rack: r1")
        + &node("b", "ipv4Address: 10.0.0.2/24", "rack: r2")
        + &config("default", "nodeToNodeMeshEnabled: false")
        + &peer("tor-b", "node: b, peerIP: 172.16.0.1, asNumber: 65001")
        + &peer(
            "tor-r1",
            "nodeSelector: rack == 'r1', peerIP: 172.16.1.1, asNumber: 65001",
        );
    assert_eq!(names(&intent("a", &y)), ["Node_172_16_1_1"]);
    assert_eq!(names(&intent("b", &y)), ["Node_172_16_0_1"]);
    let p = &intent("a", &y).peers["Node_172_16_1_1"];
    assert_eq!(
        (p.kind, p.peer_as, p.local_as),
        (PeerKind::NodeSpecific, 65001, 64512)
    );
}

#[test]
fn label_change_moves_a_node_into_and_out_of_a_selector() {
    let y = node("a", "ipv4Address: 10.0.0.1/24", "rack: r1")
        + &config("default", "nodeToNodeMeshEnabled: false")
        + &peer(
            "tor-r1",
            "nodeSelector: rack == 'r1', peerIP: 172.16.1.1, asNumber: 65001",
        );
    let mut c = calc("a", &y);
    assert_eq!(names(&c.intent().unwrap()), ["Node_172_16_1_1"]);
    let moved = docs(&node("a", "ipv4Address: 10.0.0.1/24", "rack: r2"));
    assert!(c.on_input(&moved[0]));
    assert!(c.intent().unwrap().peers.is_empty());
    assert!(
        !c.on_input(&moved[0]),
        "the same Node again changes nothing"
    );
    let back = docs(&node("a", "ipv4Address: 10.0.0.1/24", "rack: r1"));
    assert!(c.on_input(&back[0]));
    assert_eq!(names(&c.intent().unwrap()), ["Node_172_16_1_1"]);
    // Deleting the BGPPeer removes the peering.
    assert!(c.on_input(&Input::ResourceRemoved {
        kind: "BGPPeer",
        namespace: String::new(),
        name: "tor-r1".into()
    }));
    assert!(c.intent().unwrap().peers.is_empty());
}

#[test]
fn peer_selector_peers_follow_node_changes() {
    let y = three_nodes()
        + &config("default", "nodeToNodeMeshEnabled: false")
        + &peer("edge", "nodeSelector: all(), peerSelector: edge == 'yes'");
    let mut c = calc("a", &y);
    assert!(c.intent().unwrap().peers.is_empty());
    c.on_input(
        &docs(&node(
            "c",
            "ipv4Address: 10.0.0.3/24, asNumber: 65003",
            "edge: 'yes'",
        ))[0],
    );
    let i = c.intent().unwrap();
    assert_eq!(names(&i), ["Node_10_0_0_3"]);
    assert_eq!(
        i.peers["Node_10_0_0_3"].peer_as, 65003,
        "the selected node's AS"
    );
    // c moves address: the peering follows.
    c.on_input(
        &docs(&node(
            "c",
            "ipv4Address: 10.0.0.33/24, asNumber: 65003",
            "edge: 'yes'",
        ))[0],
    );
    assert_eq!(names(&c.intent().unwrap()), ["Node_10_0_0_33"]);
    c.on_input(&Input::ResourceRemoved {
        kind: "Node",
        namespace: String::new(),
        name: "c".into(),
    });
    assert!(c.intent().unwrap().peers.is_empty());
}

#[test]
fn ports_and_ipv6_in_names() {
    let y = node(
        "a",
        "ipv4Address: 10.0.0.1/24, ipv6Address: 'fd00::1/64'",
        "",
    ) + &v4node("b", "10.0.0.2")
        + &config("default", "nodeToNodeMeshEnabled: false")
        + &config("node.b", "listenPort: 1790")
        + &peer("p4", "peerIP: '10.1.1.1:1790', asNumber: 65001")
        + &peer("p6", "peerIP: '[fd00::99]:180', asNumber: 65001")
        + &peer("p6b", "peerIP: 'fd00::98', asNumber: 65001")
        + &peer("to-b", "node: a, peerIP: 10.0.0.2, asNumber: 64512");
    let i = intent("a", &y);
    assert_eq!(
        names(&i),
        [
            "Global_10_1_1_1_port_1790",
            "Global_fd00__98",
            "Global_fd00__99_port_180",
            "Node_10_0_0_2_port_1790"
        ]
    );
    assert_eq!(i.peers["Global_10_1_1_1_port_1790"].port, 1790);
    let p6 = &i.peers["Global_fd00__99_port_180"];
    assert_eq!((p6.address, p6.port), (ip("fd00::99"), 180));
    assert_eq!(p6.source_address, Some(ip("fd00::1")));
    // A Calico node's address without a port: that node's listen port.
    assert_eq!(i.peers["Node_10_0_0_2_port_1790"].port, 1790);
}

#[test]
fn never_peer_with_ourselves() {
    let y = three_nodes()
        + &config("default", "nodeToNodeMeshEnabled: false")
        + &peer("all", "nodeSelector: all(), peerSelector: all()");
    let i = intent("a", &y);
    assert_eq!(names(&i), ["Node_10_0_0_2", "Node_10_0_0_3"]);
    let y = three_nodes() + &peer("me", "peerIP: 10.0.0.1, asNumber: 64512");
    assert!(!intent("a", &y).peers.contains_key("Global_10_0_0_1"));
}

#[test]
fn global_peering_wins_over_node_specific_and_explicit_over_reverse() {
    let y = three_nodes()
        + &config("default", "nodeToNodeMeshEnabled: false")
        + &peer("a-global", "peerIP: 172.16.0.1, asNumber: 65001")
        + &peer("b-node", "node: a, peerIP: 172.16.0.1, asNumber: 65002");
    let i = intent("a", &y);
    assert_eq!(names(&i), ["Global_172_16_0_1"]);
    assert_eq!(i.peers["Global_172_16_0_1"].peer_as, 65001);
    // Same key from two global BGPPeers: the first name wins.
    let y = three_nodes()
        + &peer("z", "peerIP: 172.16.0.1, asNumber: 65009")
        + &peer("y", "peerIP: 172.16.0.1, asNumber: 65008");
    assert_eq!(intent("a", &y).peers["Global_172_16_0_1"].peer_as, 65008);
    // An explicit node-specific peering to b wins over b's reverse one.
    let y = three_nodes()
        + &config("default", "nodeToNodeMeshEnabled: false")
        + &peer(
            "a-to-b",
            "node: a, peerIP: 10.0.0.2, asNumber: 64512, maxRestartTime: 30s",
        )
        + &peer("b-to-a", "node: b, peerIP: 10.0.0.1, asNumber: 64512");
    let p = &intent("a", &y).peers["Node_10_0_0_2"];
    assert_eq!(p.bgp_peer.as_deref(), Some("a-to-b"));
    assert_eq!(p.restart_time, Some(Duration::from_secs(30)));
}

#[test]
fn per_peer_options() {
    let dir = tempdir();
    std::fs::create_dir_all(dir.join("tor")).unwrap();
    std::fs::write(dir.join("tor/pw"), "hunter2").unwrap();
    let y = three_nodes()
        + &config("default", "nodeToNodeMeshEnabled: false")
        + &peer(
            "ebgp",
            "peerIP: 172.16.0.1, asNumber: 65001, keepOriginalNextHop: true, ttlSecurity: 2, \
             numAllowedLocalASNumbers: 3, reachableBy: 10.0.0.254, sourceAddress: None, \
             maxRestartTime: 90s, filters: [f1, missing], password: {secretKeyRef: {name: tor, key: pw}}",
        )
        + &peer("ibgp", "peerIP: 172.16.0.2, asNumber: 64512, keepOriginalNextHop: true")
        + &peer("local-as", "peerIP: 172.16.0.3, asNumber: 65010, localASNumber: 65010, keepOriginalNextHop: true")
        + &peer("self", "peerIP: 172.16.0.4, asNumber: 65001, nextHopMode: Self")
        + &peer("nopw", "peerIP: 172.16.0.5, asNumber: 65001, password: {secretKeyRef: {name: tor, key: absent}}")
        + "apiVersion: projectcalico.org/v3\nkind: BGPFilter\nmetadata:\n  name: f1\nspec:\n  exportV4: [{action: Reject, cidr: 10.0.0.0/8, matchOperator: In}]\n---\n";
    let mut c = calc("a", &y);
    c.set_secrets_dir(&dir);
    let (i, w) = c.compute();
    let i = i.unwrap();
    let p = &i.peers["Global_172_16_0_1"];
    assert!(p.keep_next_hop, "eBGP keeps the next hop");
    assert_eq!(p.ttl_security, Some(2));
    assert_eq!(p.num_allowed_local_as, Some(3));
    assert_eq!(p.reachable_by, Some(ip("10.0.0.254")));
    assert_eq!(p.source_address, None);
    assert_eq!(p.restart_time, Some(Duration::from_secs(90)));
    assert_eq!(p.filters, ["f1", "missing"]);
    assert_eq!(p.password, Some(Password("hunter2".into())));
    assert_eq!(i.filters.keys().collect::<Vec<_>>(), ["f1"]);
    assert!(w.iter().any(|w| w.contains("\"missing\"")), "{w:?}");
    // keepOriginalNextHop means nothing towards our own AS…
    assert!(!i.peers["Global_172_16_0_2"].keep_next_hop);
    // …where our AS on the session is localASNumber.
    let l = &i.peers["Global_172_16_0_3"];
    assert_eq!((l.local_as, l.peer_as), (65010, 65010));
    assert!(!l.keep_next_hop);
    assert_eq!(
        i.peers["Global_172_16_0_4"].next_hop_mode,
        Some(NextHopMode::ForceSelf)
    );
    assert_eq!(i.peers["Global_172_16_0_5"].password, None);
    assert!(w.iter().any(|w| w.contains("tor/absent")), "{w:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn peer_ip_without_as_number_is_skipped() {
    let y = three_nodes() + &peer("no-as", "peerIP: 172.16.0.1");
    let (i, w) = calc("a", &y).compute();
    assert!(!i.unwrap().peers.contains_key("Global_172_16_0_1"));
    assert!(w[0].contains("no asNumber"), "{w:?}");
}

#[test]
fn local_workload_peers() {
    let y = node(
        "a",
        "ipv4Address: 10.0.0.1/24, ipv6Address: 'fd00::1/64'",
        "",
    ) + &v4node("b", "10.0.0.2")
        + &config("default", "nodeToNodeMeshEnabled: false")
        + &peer(
            "vrouter",
            "localWorkloadSelector: role == 'router', asNumber: 65100",
        )
        + &wep(
            "a",
            "router1",
            "role: router",
            &["192.168.5.7/32", "fd00:5::7/128", "192.168.5.8/32"],
            &[],
        )
        + &wep("a", "web", "role: web", &["192.168.5.9/32"], &[])
        + &wep("b", "router2", "role: router", &["192.168.6.7/32"], &[]);
    let i = intent("a", &y);
    assert_eq!(
        names(&i),
        ["Local_Workload_192_168_5_7", "Local_Workload_fd00_5__7"]
    );
    let p = &i.peers["Local_Workload_192_168_5_7"];
    assert_eq!(p.kind, PeerKind::LocalWorkload);
    assert!(p.passive);
    assert_eq!((p.source_address, p.peer_as), (None, 65100));
    // A workload two BGPPeers select peers through the first by name, even
    // a node-specific one when the other is global.
    let y =
        y + &peer(
            "a-vrouter",
            "node: a, localWorkloadSelector: role == 'router', asNumber: 65200",
        ) + &peer(
            "b-vrouter",
            "node: b, localWorkloadSelector: has(role), asNumber: 65300",
        );
    let i = intent("a", &y);
    assert_eq!(i.peers["Local_Workload_192_168_5_7"].peer_as, 65200);
    assert_eq!(
        i.peers["Local_Workload_192_168_5_7"].bgp_peer.as_deref(),
        Some("a-vrouter")
    );
    assert!(
        !i.peers.contains_key("Local_Workload_192_168_5_9"),
        "b-vrouter is b's"
    );
}

// ---- what is originated ----------------------------------------------------

fn wep(node: &str, name: &str, labels: &str, nets: &[&str], nats: &[(&str, &str)]) -> String {
    let nats: Vec<String> = nats
        .iter()
        .map(|(i, x)| format!("{{internalIP: {i}, externalIP: {x}}}"))
        .collect();
    format!(
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: {node}-openstack-{name}-eth0\n  namespace: openstack\n  labels: {{{labels}}}\nspec:\n  node: {node}\n  orchestrator: openstack\n  workload: {name}\n  endpoint: eth0\n  interfaceName: tap{name}\n  ipNetworks: [{}]\n  ipNATs: [{}]\n---\n",
        nets.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", "),
        nats.join(", ")
    )
}

fn aff(host: &str, cidr: &str, state: AffinityState) -> Input {
    Input::BlockAffinity {
        host: host.into(),
        cidr: net(cidr),
        state,
    }
}

fn block(cidr: &str, host: Option<&str>) -> Input {
    Input::Block {
        cidr: net(cidr),
        affinity: host.map(str::to_string),
    }
}

fn origin(i: &BgpIntent) -> BTreeMap<String, OriginKind> {
    i.originate
        .iter()
        .map(|o| (o.prefix.to_string(), o.why))
        .collect()
}

#[test]
fn originated_prefixes() {
    let y = v4node("a", "10.0.0.1")
        + &v4node("b", "10.0.0.2")
        + &wep(
            "a",
            "vm1",
            "",
            &["192.168.0.5/32"],
            &[("192.168.0.5", "203.0.113.9")],
        )
        + &wep("a", "vm2", "", &["192.168.0.70/32"], &[])
        + &wep("a", "vm3", "", &["10.65.0.4/32", "fd00:9::4/128"], &[])
        + &wep("b", "vm4", "", &["192.168.0.71/32"], &[]);
    let mut c = calc("a", &y);
    for i in [
        block("192.168.0.0/26", Some("a")),
        block("192.168.0.64/26", Some("b")),
        block("192.168.0.128/26", Some("a")),
        block("192.168.0.192/26", Some("a")),
        aff("a", "192.168.0.0/26", AffinityState::Confirmed),
        aff("a", "192.168.0.128/26", AffinityState::Pending),
        aff("a", "192.168.0.192/26", AffinityState::PendingDeletion),
        aff("b", "192.168.0.64/26", AffinityState::Confirmed),
    ] {
        c.on_input(&i);
    }
    let i = c.intent().unwrap();
    let want: BTreeMap<String, OriginKind> = [
        ("192.168.0.0/26", OriginKind::AffineBlock),
        ("192.168.0.192/26", OriginKind::AffineBlock),
        ("192.168.0.70/32", OriginKind::Borrowed),
        ("10.65.0.4/32", OriginKind::Workload),
        ("fd00:9::4/128", OriginKind::Workload),
        ("203.0.113.9/32", OriginKind::FloatingIp),
    ]
    .into_iter()
    .map(|(p, k)| (p.to_string(), k))
    .collect();
    assert_eq!(origin(&i), want);
    // The pending block is claimed: its addresses stop being borrowed and
    // the /32 inside our confirmed block is never announced on its own.
    assert!(c.on_input(&aff("a", "192.168.0.128/26", AffinityState::Confirmed)));
    assert!(origin(&c.intent().unwrap()).contains_key("192.168.0.128/26"));
    // Another host's affinity is not ours.
    assert!(!c.on_input(&aff("b", "192.168.0.128/26", AffinityState::Confirmed)));
    // The endpoint leaves: its address is withdrawn.
    c.on_input(&Input::ResourceRemoved {
        kind: "WorkloadEndpoint",
        namespace: "openstack".into(),
        name: "a-openstack-vm2-eth0".into(),
    });
    assert!(!origin(&c.intent().unwrap()).contains_key("192.168.0.70/32"));
}

#[test]
fn disable_bgp_export_pools_are_withheld() {
    let y = v4node("a", "10.0.0.1")
        + "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: quiet\nspec:\n  cidr: 192.168.0.0/24\n  disableBGPExport: true\n---\n"
        + "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: loud\nspec:\n  cidr: 10.65.0.0/16\n  vxlanMode: CrossSubnet\n  natOutgoing: true\n---\n"
        + &wep("a", "vm1", "", &["192.168.0.5/32", "10.65.0.5/32"], &[]);
    let mut c = calc("a", &y);
    c.on_input(&aff("a", "192.168.0.64/26", AffinityState::Confirmed));
    let i = c.intent().unwrap();
    assert_eq!(origin(&i).into_keys().collect::<Vec<_>>(), ["10.65.0.5/32"]);
    assert_eq!(
        i.pools,
        [
            PoolRouting {
                name: "loud".into(),
                cidr: net("10.65.0.0/16"),
                encapsulation: Encapsulation::Vxlan { cross_subnet: true },
                disable_bgp_export: false,
                nat_outgoing: true,
                disabled: false,
            },
            PoolRouting {
                name: "quiet".into(),
                cidr: net("192.168.0.0/24"),
                encapsulation: Encapsulation::None,
                disable_bgp_export: true,
                nat_outgoing: false,
                disabled: false,
            },
        ]
    );
}

#[test]
fn other_hosts_endpoints_cost_nothing() {
    let mut c = calc("a", &three_nodes());
    let other = docs(&wep("b", "vm", "", &["192.168.0.5/32"], &[]));
    assert!(
        !c.on_input(&other[0]),
        "another host's endpoint changes nothing"
    );
    let policy = docs(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  selector: all()\n",
    );
    assert!(!c.on_input(&policy[0]));
    // An endpoint moving away from this host is forgotten.
    let mine = docs(&wep("a", "vm", "", &["192.168.0.5/32"], &[]));
    assert!(c.on_input(&mine[0]));
    let moved = docs(&wep("b", "vm", "", &["192.168.0.5/32"], &[]));
    let moved = match &moved[0] {
        Input::Resource(calico_api::AnyResource::WorkloadEndpoint(w)) => {
            let mut w = w.clone();
            w.metadata.name = "a-openstack-vm-eth0".into();
            Input::Resource(w.into())
        }
        _ => unreachable!(),
    };
    assert!(c.on_input(&moved));
    assert!(c.intent().unwrap().originate.is_empty());
}

// ---- communities -------------------------------------------------------------

#[test]
fn communities_from_prefix_advertisements() {
    let y = three_nodes()
        + &config(
            "default",
            "communities: [{name: bgp-large-community, value: '63400:300:100'}, {name: std, value: '100:200'}], \
             prefixAdvertisements: [{cidr: 172.218.4.0/26, communities: [bgp-large-community, '63400:120']}, \
             {cidr: 'fd00::/64', communities: [std, unknown-name]}]",
        )
        + &config("node.b", "prefixAdvertisements: [{cidr: 10.9.0.0/16, communities: ['1:1']}]");
    let i = intent("a", &y);
    let want: BTreeMap<IpNet, BTreeSet<BgpCommunity>> = [
        (
            net("172.218.4.0/26"),
            [
                BgpCommunity::Large(63400, 300, 100),
                BgpCommunity::Standard(63400, 120),
            ]
            .into_iter()
            .collect(),
        ),
        (
            net("fd00::/64"),
            [BgpCommunity::Standard(100, 200)].into_iter().collect(),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(i.communities, want);
    assert_eq!(
        BgpCommunity::Large(63400, 300, 100).to_string(),
        "63400:300:100"
    );
    // b's own prefixAdvertisements replace the cluster's.
    assert_eq!(
        intent("b", &y).communities.keys().collect::<Vec<_>>(),
        [&net("10.9.0.0/16")]
    );
}

// ---- helpers -------------------------------------------------------------------

fn tempdir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "calico-bgp-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

// ---- through the Calculator ------------------------------------------------------

#[test]
fn calculator_hands_out_the_intent_when_it_changes() {
    use crate::{Calculator, HostIdentity};
    let mut c = Calculator::new(HostIdentity {
        node_name: "a".into(),
        node_ip: None,
    });
    // First call: there is no intent yet, and that is news.
    assert_eq!(c.take_bgp_intent(), Some(None));
    assert_eq!(c.take_bgp_intent(), None);
    for i in docs(&three_nodes()) {
        c.on_input(i);
    }
    let first = c.take_bgp_intent().expect("changed").expect("an intent");
    assert_eq!(names(&first), ["Mesh_10_0_0_2", "Mesh_10_0_0_3"]);
    assert_eq!(c.take_bgp_intent(), None, "nothing changed since");
    // Unrelated input: no new intent.
    for i in docs(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\nspec:\n  selector: all()\n",
    ) {
        c.on_input(i);
    }
    c.flush();
    assert_eq!(c.take_bgp_intent(), None);
    // A relevant one that ends where it started: recomputed, not handed out.
    for i in docs(GLOBAL_3040) {
        c.on_input(i);
    }
    c.on_input(Input::ResourceRemoved {
        kind: "BGPPeer",
        namespace: String::new(),
        name: "bgppeer-global-3040".into(),
    });
    assert_eq!(c.take_bgp_intent(), None);
    // The router ID setting is an input too.
    c.set_bgp_router_id(RouterId::Fixed(Ipv4Addr::new(1, 2, 3, 4)));
    let i = c.take_bgp_intent().unwrap().unwrap();
    assert_eq!(i.router_id, Ipv4Addr::new(1, 2, 3, 4));
    // Losing the address: Some(None).
    c.on_input(Input::ResourceRemoved {
        kind: "Node",
        namespace: String::new(),
        name: "a".into(),
    });
    assert_eq!(c.take_bgp_intent(), Some(None));
    // Warnings reach the calculator's list once.
    for i in docs(&(v4node("a", "10.0.0.1") + &peer("no-as", "peerIP: 172.16.0.1"))) {
        c.on_input(i);
    }
    assert!(c.take_bgp_intent().is_some());
    let w = c.take_warnings();
    assert_eq!(
        w.iter().filter(|w| w.contains("no asNumber")).count(),
        1,
        "{w:?}"
    );
    c.refresh_bgp();
    assert_eq!(c.take_bgp_intent(), None);
    assert!(c.take_warnings().iter().all(|w| !w.contains("no asNumber")));
}

/// Scale check (run with `--release --ignored`): 1,000 nodes in the
/// route-reflector layout, 100,000 endpoints of which 100 are local.
#[test]
#[ignore]
fn scale_thousand_nodes_hundred_thousand_endpoints() {
    use calico_api::endpoint::{WorkloadEndpoint, WorkloadEndpointSpec};
    use calico_api::network::{BGPPeer, BGPPeerSpec, Node, NodeBgpSpec, NodeSpec};
    use std::time::Instant;
    let mut c = BgpCalc::new("n0");
    let t = Instant::now();
    for i in 0..1000u32 {
        let mut n = Node::new(
            format!("n{i}"),
            NodeSpec {
                bgp: Some(NodeBgpSpec {
                    ipv4_address: format!("10.{}.{}.{}/16", i >> 16, (i >> 8) & 255, i & 255),
                    route_reflector_cluster_id: if i % 250 == 1 {
                        "224.0.0.1".into()
                    } else {
                        String::new()
                    },
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        if i % 250 == 1 {
            n.metadata
                .labels
                .insert("route-reflector".into(), "true".into());
        }
        c.on_input(&Input::Resource(n.into()));
    }
    c.on_input(&docs(&config("default", "nodeToNodeMeshEnabled: false")).remove(0));
    c.on_input(&Input::Resource(
        BGPPeer::new(
            "rr",
            BGPPeerSpec {
                node_selector: "all()".into(),
                peer_selector: "route-reflector == 'true'".into(),
                ..Default::default()
            },
        )
        .into(),
    ));
    let nodes = t.elapsed();
    let t = Instant::now();
    let mut changed = 0;
    for e in 0..100_000u32 {
        let mut w = WorkloadEndpoint::default();
        w.metadata.namespace = "openstack".into();
        w.metadata.name = format!("w{e}");
        w.spec = WorkloadEndpointSpec {
            node: format!("n{}", e % 1000),
            interface_name: format!("tap{e}"),
            ip_networks: vec![format!(
                "172.{}.{}.{}/32",
                16 + (e >> 16),
                (e >> 8) & 255,
                e & 255
            )],
            ..Default::default()
        };
        changed += usize::from(c.on_input(&Input::Resource(w.into())));
    }
    let weps = t.elapsed();
    assert_eq!(changed, 100);
    let t = Instant::now();
    let rr = {
        let mut r = BgpCalc::new("n1");
        std::mem::swap(&mut r.store, &mut c.store);
        let i = r.intent().unwrap();
        std::mem::swap(&mut r.store, &mut c.store);
        i
    };
    let client = c.intent().unwrap();
    let compute = t.elapsed();
    assert_eq!(rr.peers.len(), 999);
    assert_eq!(client.peers.len(), 4);
    assert_eq!(client.originate.len(), 100);
    eprintln!(
        "1000 nodes: {nodes:?}; 100k endpoints: {weps:?}; intents of a reflector and a client: {compute:?}"
    );
}
