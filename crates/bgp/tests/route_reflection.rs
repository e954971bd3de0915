//! Several of our speakers on real TCP over loopback (every 127.0.0.x is
//! local, so each speaker has its own address and no root is needed):
//!
//! - Route reflection (RFC 4456): two reflectors in one cluster, three
//!   clients that peer only with the reflectors. Every client learns every
//!   other client's block through both reflectors, with ORIGINATOR_ID and
//!   CLUSTER_LIST set and the originator's next hop kept; nothing loops
//!   (a reflector drops what the other reflects back to it, a client never
//!   hears its own block, the UPDATE counters settle); a withdrawal at the
//!   source reaches everyone; with one reflector gone the other carries on.
//!   The same with the reflectors in two clusters: each then keeps the
//!   other's reflections (losing on CLUSTER_LIST length) and, as ADD-PATH
//!   sends every path, passes them on; a client drops its own block coming
//!   back (ORIGINATOR_ID).
//! - A reflector that restarts (Restart State bit) holds its End-of-RIB
//!   until its clients' tables are back, so no client drops a route.
//! - A full iBGP mesh of three without reflection: routes are not passed
//!   on (split horizon), so a speaker whose direct session to the origin
//!   goes away loses the origin's route even though the third still has it.

mod common;

use common::{net, wait_until};

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use calico_bgp::driver::{Command, Driver, RouteSink};
use calico_bgp::session::{SessionConfig, State};
use calico_bgp::speaker::{PeerConfig, Speaker};
use calico_bgp::status::{RouteStatus, SpeakerStatus};
use calico_bgp::wire::PathAttributes;

const AS: u32 = 64512;

struct Node {
    name: &'static str,
    addr: Ipv4Addr,
    id: Ipv4Addr,
    listen: SocketAddr,
    driver: Driver,
}

impl Node {
    /// A speaker listening on `addr` (a random port), best-path changes
    /// discarded: the checks read the RIB through snapshots.
    fn start(name: &'static str, addr: &str, id: &str, cluster: Option<&str>) -> Node {
        Node::start_at(name, addr, 0, id, cluster, Box::new(|_| {}))
    }

    fn start_at(
        name: &'static str,
        addr: &str,
        port: u16,
        id: &str,
        cluster: Option<&str>,
        sink: RouteSink,
    ) -> Node {
        let addr: Ipv4Addr = addr.parse().unwrap();
        let id: Ipv4Addr = id.parse().unwrap();
        let speaker = Speaker::new(id, AS, cluster.map(|c| c.parse().unwrap()));
        let (driver, listen) =
            Driver::start(SocketAddr::new(IpAddr::V4(addr), port), speaker, sink)
                .expect("driver starts");
        Node {
            name,
            addr,
            id,
            listen,
            driver,
        }
    }

    /// iBGP to `to`; `client`: `to` is our route-reflector client.
    fn peer(&self, to: &Node, client: bool) -> PeerConfig {
        let mut s = SessionConfig::new(AS, AS, self.id);
        s.connect_delay = Duration::from_millis(50);
        s.error_wait_min = Duration::from_millis(500);
        s.hold_time = 9;
        PeerConfig {
            name: format!("Node_{}", to.addr.to_string().replace('.', "_")),
            address: to.listen.ip(),
            port: to.listen.port(),
            session: s,
            rr_client: client,
            keep_next_hop: false,
            next_hop_self: false,
            local_v4: Some(self.addr),
            local_v6: None,
            source_address: Some(IpAddr::V4(self.addr)),
            password: None,
            allow_local_as: 0,
            ttl_security: None,
        }
    }

    fn originate(&self, blocks: &[&str]) {
        self.driver.send(Command::LocalRoutes(
            blocks
                .iter()
                .map(|b| (net(b), PathAttributes::default()))
                .collect(),
        ));
    }

    fn snap(&self) -> SpeakerStatus {
        self.driver
            .snapshot(Duration::from_secs(2))
            .unwrap_or_else(|| panic!("{} answers", self.name))
    }

    /// Every path this node has to `prefix`, best first.
    fn paths(&self, prefix: &str) -> Vec<RouteStatus> {
        let p = net(prefix);
        self.snap()
            .routes
            .into_iter()
            .filter(|r| r.prefix == p)
            .collect()
    }

    fn established(&self) -> usize {
        self.snap()
            .peers
            .iter()
            .filter(|p| p.state == State::Established)
            .count()
    }
}

fn ip(a: Ipv4Addr) -> Option<IpAddr> {
    Some(IpAddr::V4(a))
}

/// Every node's routes, for failure messages.
fn dump(nodes: &[&Node]) -> String {
    let mut s = String::new();
    for n in nodes {
        let snap = n.snap();
        s += &format!("--- {} ({})\n", n.name, n.addr);
        for p in &snap.peers {
            s += &format!(
                "  peer {} {:?} rx {} tx {} err {:?}\n",
                p.name, p.state, p.received, p.exported, p.last_error
            );
        }
        for r in &snap.routes {
            s += &format!(
                "  {} from {} best {} stale {} nh {:?} orig {:?} clusters {:?}\n",
                r.prefix,
                r.from_name,
                r.best,
                r.stale,
                r.attrs.next_hop,
                r.attrs.originator_id,
                r.attrs.cluster_list
            );
        }
    }
    s
}

/// UPDATEs received by all nodes together.
fn updates_received(nodes: &[&Node]) -> u64 {
    nodes
        .iter()
        .flat_map(|n| n.snap().peers)
        .map(|p| p.stats.updates_received)
        .sum()
}

const CLUSTER: &str = "10.0.0.100";

#[test]
fn two_reflectors_in_one_cluster_reflect_between_clients() {
    reflection(1, [CLUSTER, CLUSTER]);
}

/// Two clusters: each reflector takes the other's reflections (a longer
/// CLUSTER_LIST, never best while the client's own path is there), and a
/// withdrawal must not leave the two holding each other's copy.
#[test]
fn reflectors_in_two_clusters_reflect_between_clients() {
    reflection(2, ["10.0.0.101", "10.0.0.102"]);
}

/// Reflectors and clients on 127.0.<net>.x, reflector i in `clusters[i]`.
fn reflection(net: u8, clusters: [&str; 2]) {
    let same_cluster = clusters[0] == clusters[1];
    let addr = |host: u8| format!("127.0.{net}.{host}");
    let rr1 = Node::start("rr1", &addr(11), "10.0.0.11", Some(clusters[0]));
    let rr2 = Node::start("rr2", &addr(12), "10.0.0.12", Some(clusters[1]));
    let clients = [
        Node::start("c1", &addr(21), "10.0.0.21", None),
        Node::start("c2", &addr(22), "10.0.0.22", None),
        Node::start("c3", &addr(23), "10.0.0.23", None),
    ];
    let blocks = [
        format!("10.7{net}.1.0/26"),
        format!("10.7{net}.2.0/26"),
        format!("10.7{net}.3.0/26"),
    ];
    let blocks = [&*blocks[0], &*blocks[1], &*blocks[2]];
    let cluster_of = |rr: Option<IpAddr>| -> Ipv4Addr {
        let i = usize::from(rr != ip(rr1.addr));
        clusters[i].parse().unwrap()
    };
    for (rr, other) in [(&rr1, &rr2), (&rr2, &rr1)] {
        let mut peers = vec![rr.peer(other, false)];
        peers.extend(clients.iter().map(|c| rr.peer(c, true)));
        rr.driver.send(Command::Peers(peers));
    }
    for (c, block) in clients.iter().zip(blocks) {
        c.driver.send(Command::Peers(vec![
            c.peer(&rr1, false),
            c.peer(&rr2, false),
        ]));
        c.originate(&[block]);
    }
    let all: Vec<&Node> = [&rr1, &rr2].into_iter().chain(&clients).collect();
    assert!(
        wait_until(15, || rr1.established() == 4
            && rr2.established() == 4
            && clients.iter().all(|c| c.established() == 2)),
        "sessions up:\n{}",
        dump(&all)
    );

    // Each client has each other client's block from both reflectors, as
    // reflected routes: originator and cluster recorded, next hop kept.
    // Reflectors send every path a client may hear (ADD-PATH), so with two
    // clusters each also passes on the other's reflection (two clusters
    // long): four paths, two of each length.
    let per_block = if same_cluster { 2 } else { 4 };
    let converged = || {
        clients.iter().all(|c| {
            blocks
                .iter()
                .zip(&clients)
                .filter(|(_, origin)| origin.addr != c.addr)
                .all(|(b, _)| c.paths(b).len() == per_block)
        })
    };
    assert!(wait_until(10, converged), "reflected:\n{}", dump(&all));
    for c in &clients {
        for (block, origin) in blocks.iter().zip(&clients) {
            let paths = c.paths(block);
            if origin.addr == c.addr {
                // Its own block, and nothing reflected back to it.
                assert_eq!(paths.len(), 1, "{}: {paths:?}", c.name);
                assert_eq!(paths[0].from_name, "static1");
                continue;
            }
            let mut from: Vec<Option<IpAddr>> = paths.iter().map(|p| p.from_address).collect();
            from.sort();
            from.dedup();
            assert_eq!(from, vec![ip(rr1.addr), ip(rr2.addr)], "{}", c.name);
            for p in &paths {
                let a = &p.attrs;
                assert_eq!(a.originator_id, Some(origin.id), "{}: {p:?}", c.name);
                // The reflector's own cluster first, then the other's if
                // the path went through both.
                let own = cluster_of(p.from_address);
                let other = cluster_of(if p.from_address == ip(rr1.addr) {
                    ip(rr2.addr)
                } else {
                    ip(rr1.addr)
                });
                let shortest = a.cluster_list == vec![own];
                let through_both = !same_cluster && a.cluster_list == vec![own, other];
                assert!(shortest || through_both, "{}: {p:?}", c.name);
                assert_eq!(a.next_hop, Some(origin.addr), "{}: {p:?}", c.name);
                assert_eq!(a.local_pref, Some(100));
                assert!(a.as_path.is_empty(), "iBGP: {:?}", a.as_path);
            }
            assert!(paths[0].best);
            assert_eq!(paths[0].attrs.cluster_list.len(), 1, "shortest wins");
        }
    }

    // Each reflector has each block straight from its client. What the
    // other reflector sends back is dropped when it carries the same
    // cluster; otherwise it is kept, but loses on its CLUSTER_LIST.
    for rr in [&rr1, &rr2] {
        let other_rr = if rr.addr == rr1.addr { &rr2 } else { &rr1 };
        for (block, origin) in blocks.iter().zip(&clients) {
            let paths = rr.paths(block);
            assert_eq!(paths[0].from_address, ip(origin.addr), "{paths:?}");
            assert_eq!(paths[0].attrs.originator_id, None);
            assert!(paths[0].attrs.cluster_list.is_empty());
            if same_cluster {
                assert_eq!(paths.len(), 1, "{}: {paths:?}", rr.name);
            } else {
                assert_eq!(paths.len(), 2, "{}: {paths:?}", rr.name);
                let a = &paths[1].attrs;
                assert_eq!(paths[1].from_address, ip(other_rr.addr));
                assert_eq!(a.originator_id, Some(origin.id));
                assert_eq!(a.cluster_list, vec![cluster_of(ip(other_rr.addr))]);
            }
        }
        let snap = rr.snap();
        let other = snap.peers.iter().find(|p| !p.rr_client).unwrap();
        assert_eq!(other.state, State::Established);
        assert_eq!(other.exported, 3, "client routes go to the other reflector");
        if same_cluster {
            assert_eq!(other.received, 0, "{}: its reflections loop back", rr.name);
            assert!(other.stats.updates_received > 0, "they were sent, though");
        } else {
            assert_eq!(other.received, 3, "{}", rr.name);
        }
        for p in snap.peers.iter().filter(|p| p.rr_client) {
            assert_eq!(p.received, 1, "{}: {}", rr.name, p.name);
            // The other clients' blocks; with two clusters their second
            // paths too, and the client's own block as the other reflector
            // reflected it (the client drops that: its ORIGINATOR_ID).
            let want = if same_cluster { 2 } else { 5 };
            assert_eq!(p.exported, want, "{}: {}", rr.name, p.name);
        }
    }

    // No loop: once converged, nothing more is sent (keepalives only).
    let before = updates_received(&all);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(before, updates_received(&all), "UPDATEs keep flowing");

    // A withdrawal at the source goes everywhere.
    clients[0].originate(&[]);
    assert!(
        wait_until(10, || all.iter().all(|n| n.paths(blocks[0]).is_empty())),
        "withdrawn everywhere:\n{}",
        dump(&all)
    );
    for n in &all[..] {
        for b in &blocks[1..] {
            assert!(!n.paths(b).is_empty(), "{} lost {b}", n.name);
        }
    }

    // One reflector goes: the other carries the clients' routes alone,
    // including a block announced after it went.
    let [c1, c2, c3] = clients;
    let rest = [&rr2, &c1, &c2, &c3];
    rr1.driver.stop();
    assert!(
        wait_until(10, || rr2.established() == 3
            && [&c1, &c2, &c3].iter().all(|c| c.established() == 1)),
        "sessions to rr1 down:\n{}",
        dump(&rest)
    );
    let late = format!("10.7{net}.4.0/26");
    c1.originate(&[&late]);
    for c in [&c2, &c3] {
        assert!(
            wait_until(10, || {
                let p = c.paths(&late);
                p.len() == 1 && p[0].from_address == ip(rr2.addr)
            }),
            "{} learns c1's new block through rr2:\n{}",
            c.name,
            dump(&rest)
        );
    }
    // rr1's paths wait, stale, for its graceful restart; rr2's (its
    // reflection of rr1's reflection too, with two clusters: rr2 keeps
    // that stale and usable) are fresh and the best is one of them.
    assert!(
        wait_until(10, || {
            let paths = c3.paths(blocks[1]);
            paths[0].best
                && !paths[0].stale
                && paths[0].from_address == ip(rr2.addr)
                && paths
                    .iter()
                    .all(|p| p.stale == (p.from_address == ip(rr1.addr)))
        }),
        "c3: rr2's paths fresh, one of them best, rr1's stale:\n{}",
        dump(&rest)
    );
    for n in rest {
        n.driver.send(Command::Stop);
    }
}

#[test]
fn full_mesh_does_not_pass_routes_on() {
    let a = Node::start("a", "127.0.0.31", "10.0.0.31", None);
    let b = Node::start("b", "127.0.0.32", "10.0.0.32", None);
    let c = Node::start("c", "127.0.0.33", "10.0.0.33", None);
    let nodes = [&a, &b, &c];
    let blocks = ["10.79.1.0/26", "10.79.2.0/26", "10.79.3.0/26"];
    for (n, block) in nodes.iter().zip(blocks) {
        let peers = nodes
            .iter()
            .filter(|o| o.addr != n.addr)
            .map(|o| n.peer(o, false))
            .collect();
        n.driver.send(Command::Peers(peers));
        n.originate(&[block]);
    }
    assert!(
        wait_until(10, || nodes.iter().all(|n| {
            n.established() == 2 && blocks.iter().all(|b| !n.paths(b).is_empty())
        })),
        "mesh converged:\n{}",
        dump(&nodes)
    );
    // Each block once, from its origin; each speaker sends only its own.
    for n in nodes {
        for (block, origin) in blocks.iter().zip(nodes) {
            let paths = n.paths(block);
            assert_eq!(paths.len(), 1, "{}: {paths:?}", n.name);
            if origin.addr != n.addr {
                assert_eq!(paths[0].from_address, ip(origin.addr));
                assert_eq!(paths[0].attrs.originator_id, None);
                assert!(paths[0].attrs.cluster_list.is_empty());
            }
        }
        for p in n.snap().peers {
            assert_eq!((p.received, p.exported), (1, 1), "{}: {}", n.name, p.name);
        }
    }

    // a and c stop peering: c loses a's block although b still has it.
    a.driver.send(Command::Peers(vec![a.peer(&b, false)]));
    c.driver.send(Command::Peers(vec![c.peer(&b, false)]));
    assert!(
        wait_until(10, || c.paths(blocks[0]).is_empty()
            && a.paths(blocks[2]).is_empty()),
        "split horizon: b must not pass a's block to c:\n{}",
        dump(&nodes)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(c.paths(blocks[0]).is_empty(), "{}", dump(&nodes));
    assert_eq!(b.paths(blocks[0]).len(), 1);
    assert_eq!(b.paths(blocks[2]).len(), 1);
}

/// RFC 4724 §4.1: a reflector that restarts must not send End-of-RIB to
/// its clients before it has their routes again; a client takes that
/// End-of-RIB as "everything you still have from me is gone", so its
/// stale reflected routes (still in its kernel) would be flushed while
/// the reflector has nothing to replace them with yet.
#[test]
fn a_restarting_reflector_never_makes_clients_drop_routes() {
    let (tx, c2_changes) = std::sync::mpsc::channel();
    let rr = Node::start("rr", "127.0.3.11", "10.0.0.11", Some(CLUSTER));
    let c1 = Node::start("c1", "127.0.3.21", "10.0.0.21", None);
    let sink: RouteSink = Box::new(move |c| {
        let _ = tx.send(c);
    });
    let c2 = Node::start_at("c2", "127.0.3.22", 0, "10.0.0.22", None, sink);
    // c1 is slow to come back to a restarted reflector: it waits 3 s after
    // an error, and the reflector never connects to it.
    let rr_peers = || {
        let mut to_c1 = rr.peer(&c1, true);
        to_c1.session.passive = true;
        vec![to_c1, rr.peer(&c2, true)]
    };
    rr.driver.send(Command::Peers(rr_peers()));
    let mut c1_to_rr = c1.peer(&rr, false);
    c1_to_rr.session.error_wait_min = Duration::from_secs(3);
    c1.driver.send(Command::Peers(vec![c1_to_rr]));
    c2.driver.send(Command::Peers(vec![c2.peer(&rr, false)]));
    c1.originate(&["10.73.1.0/26"]);
    assert!(
        wait_until(10, || c2.paths("10.73.1.0/26").len() == 1),
        "reflected:\n{}",
        dump(&[&rr, &c1, &c2])
    );

    // The reflector restarts on the same address and port.
    let (listen, peers) = (rr.listen, rr_peers());
    rr.driver.stop();
    let rr = Node::start_at(
        "rr",
        "127.0.3.11",
        listen.port(),
        "10.0.0.11",
        Some(CLUSTER),
        Box::new(|_| {}),
    );
    let peers = peers
        .into_iter()
        .map(|mut p| {
            p.session.restarting = true;
            p
        })
        .collect();
    rr.driver.send(Command::Peers(peers));
    assert!(
        wait_until(10, || {
            let p = c2.paths("10.73.1.0/26");
            rr.established() == 2 && p.len() == 1 && !p[0].stale
        }),
        "back, and c1's block refreshed at c2:\n{}",
        dump(&[&rr, &c1, &c2])
    );
    let lost: Vec<_> = c2_changes
        .try_iter()
        .flatten()
        .filter(|c| c.prefix == net("10.73.1.0/26") && c.best.is_none())
        .collect();
    assert!(
        lost.is_empty(),
        "c2 dropped c1's block while the reflector restarted: {lost:?}"
    );
}
