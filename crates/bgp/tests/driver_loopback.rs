//! Two speakers on real TCP sockets over loopback (127.0.0.1 and
//! 127.0.0.2, both local): the session comes up, routes flow both ways,
//! a withdrawal arrives, and stopping one side is seen by the other.

mod common;

use common::{wait_route, wait_until};

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::mpsc;
use std::time::Duration;

use calico_bgp::driver::{Command, Driver};
use calico_bgp::rib::BestChange;
use calico_bgp::session::{SessionConfig, State};
use calico_bgp::speaker::{PeerConfig, Speaker};
use calico_bgp::wire::PathAttributes;
use ipnet::IpNet;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn start(me: &str, id: [u8; 4]) -> (Driver, SocketAddr, mpsc::Receiver<Vec<BestChange>>) {
    let (tx, rx) = mpsc::channel();
    let speaker = Speaker::new(Ipv4Addr::from(id), 64512, None);
    let (d, addr) = Driver::start(
        SocketAddr::new(ip(me), 0),
        speaker,
        Box::new(move |c| {
            let _ = tx.send(c);
        }),
    )
    .expect("driver starts");
    (d, addr, rx)
}

fn peer(name: &str, me: &str, to: SocketAddr, id: [u8; 4]) -> PeerConfig {
    let mut s = SessionConfig::new(64512, 64512, Ipv4Addr::from(id));
    s.connect_delay = Duration::from_millis(50);
    s.hold_time = 9;
    PeerConfig {
        name: name.into(),
        address: to.ip(),
        port: to.port(),
        session: s,
        rr_client: false,
        keep_next_hop: false,
        next_hop_self: false,
        local_v4: me.parse().ok(),
        local_v6: None,
        source_address: Some(ip(me)),
        password: None,
        allow_local_as: 0,
        ttl_security: None,
    }
}

fn wait_for(
    rx: &mpsc::Receiver<Vec<BestChange>>,
    what: impl Fn(&BestChange) -> bool,
) -> BestChange {
    wait_route(rx, what, 10).expect("no such route change within 10 s")
}

fn state(d: &Driver, name: &str) -> Option<State> {
    let snap = d.snapshot(Duration::from_secs(2))?;
    snap.peers.iter().find(|p| p.name == name).map(|p| p.state)
}

#[test]
fn two_speakers_exchange_routes_over_tcp() {
    let (a, a_addr, a_routes) = start("127.0.0.1", [10, 0, 0, 1]);
    let (b, b_addr, b_routes) = start("127.0.0.2", [10, 0, 0, 2]);
    a.send(Command::Peers(vec![peer(
        "Mesh_127_0_0_2",
        "127.0.0.1",
        b_addr,
        [10, 0, 0, 1],
    )]));
    // b's peer listens on a's real port; b connects out too, and the
    // collision leaves one connection.
    b.send(Command::Peers(vec![peer(
        "Mesh_127_0_0_1",
        "127.0.0.2",
        a_addr,
        [10, 0, 0, 2],
    )]));
    let block: IpNet = "10.65.1.0/26".parse().unwrap();
    a.send(Command::LocalRoutes(vec![(
        block,
        PathAttributes::default(),
    )]));
    let got = wait_for(&b_routes, |c| c.prefix == block && c.best.is_some());
    let attrs = &got.best.unwrap().attrs;
    assert_eq!(attrs.next_hop, Some(Ipv4Addr::new(127, 0, 0, 1)));

    let other: IpNet = "10.65.2.0/26".parse().unwrap();
    b.send(Command::LocalRoutes(vec![(
        other,
        PathAttributes::default(),
    )]));
    wait_for(&a_routes, |c| c.prefix == other && c.best.is_some());
    assert_eq!(state(&a, "Mesh_127_0_0_2"), Some(State::Established));
    assert_eq!(state(&b, "Mesh_127_0_0_1"), Some(State::Established));

    a.send(Command::LocalRoutes(vec![]));
    wait_for(&b_routes, |c| c.prefix == block && c.best.is_none());

    // a de-configures b: b sees a Cease and drops a's routes at once.
    a.send(Command::LocalRoutes(vec![(
        block,
        PathAttributes::default(),
    )]));
    wait_for(&b_routes, |c| c.prefix == block && c.best.is_some());
    a.send(Command::Peers(vec![]));
    wait_for(&b_routes, |c| c.prefix == block && c.best.is_none());
    let snap = b.snapshot(Duration::from_secs(2)).unwrap();
    let p = &snap.peers[0];
    assert_ne!(p.state, State::Established);
    assert!(
        p.last_error.as_deref().unwrap_or("").contains("Received"),
        "{:?}",
        p.last_error
    );
    a.stop();
    b.stop();
}

fn established(d: &Driver) -> bool {
    d.snapshot(Duration::from_secs(2))
        .is_some_and(|s| s.peers.iter().all(|p| p.state == State::Established))
}

/// TCP MD5 keys follow the configuration: a key removed or changed is
/// removed or changed on the listening socket too, so the peer's next
/// (unsigned, or differently signed) connection is accepted.
#[test]
fn md5_keys_on_the_listener_follow_the_configuration() {
    let (a, a_addr, _a_routes) = start("127.0.7.1", [10, 0, 7, 1]);
    let (b, b_addr, _b_routes) = start("127.0.7.2", [10, 0, 7, 2]);
    // a only accepts, so every session is b's connection to a's listener.
    let configure = |password: Option<&str>| {
        let mut to_b = peer("Node_b", "127.0.7.1", b_addr, [10, 0, 7, 1]);
        to_b.session.passive = true;
        to_b.password = password.map(str::to_string);
        let mut to_a = peer("Node_a", "127.0.7.2", a_addr, [10, 0, 7, 2]);
        to_a.session.error_wait_min = Duration::from_millis(200);
        to_a.session.connect_retry = Duration::from_millis(500);
        to_a.password = password.map(str::to_string);
        a.send(Command::Peers(vec![to_b]));
        b.send(Command::Peers(vec![to_a]));
    };
    for password in [Some("k1"), None, Some("k2"), Some("k1")] {
        configure(password);
        assert!(
            wait_until(10, || established(&a) && established(&b)),
            "up with password {password:?}: {:?}",
            a.snapshot(Duration::from_secs(2)).map(|s| s.peers)
        );
    }
}
