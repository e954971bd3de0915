//! A raw TCP peer (std::net::TcpStream on loopback, every message built
//! by hand) against our Driver: it completes the OPEN exchange and then
//! misbehaves.
//!
//! - RFC 7606: an UPDATE with a malformed attribute is treat-as-withdraw:
//!   the session stays up and its prefixes are withdrawn (here and at the
//!   peers we passed them on to); a malformed optional attribute of the
//!   "attribute discard" kind costs only the attribute.
//! - RFC 4271 §6: a malformed header (marker, length, type) or an NLRI
//!   that cannot be parsed gets a NOTIFICATION and the connection is
//!   closed; the peer's routes go at once.
//! - Random junk in every state never panics the driver, and a well-behaved
//!   speaker peering with the same driver stays Established and keeps
//!   exchanging routes throughout.
//!
//! The raw peer connects from 127.0.0.1 (what Linux picks towards any
//! 127.x address); the drivers listen on other loopback addresses.

mod common;

use common::{net, wait_until};

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use calico_bgp::driver::{Command, Driver};
use calico_bgp::session::{SessionConfig, State};
use calico_bgp::speaker::{PeerConfig, Speaker};
use calico_bgp::status::{PeerStatus, RouteStatus};
use calico_bgp::wire::{Codec, Message, Notification, PathAttributes};

const OUR_AS: u32 = 64512;
/// The raw peer is eBGP, so what it announces is passed on to the good peer.
const RAW_AS: u16 = 65010;
const RAW_ADDR: &str = "127.0.0.1";
const RAW_NAME: &str = "Node_127_0_0_1";
const GOOD_NAME: &str = "Node_good";

// ---- messages by hand ------------------------------------------------------

fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(kind);
    m.extend_from_slice(body);
    m
}

fn keepalive() -> Vec<u8> {
    msg(4, &[])
}

/// OPEN from AS `RAW_AS`, hold 90 s, id 10.99.0.1, offering IPv4 unicast
/// and 4-octet AS numbers.
fn open() -> Vec<u8> {
    let caps: Vec<u8> = [
        vec![1, 4, 0, 1, 0, 1],        // multiprotocol IPv4 unicast
        vec![65, 4, 0, 0, 0xfd, 0xf2], // 4-octet AS 65010
    ]
    .concat();
    let mut body = vec![4];
    body.extend_from_slice(&RAW_AS.to_be_bytes());
    body.extend_from_slice(&90u16.to_be_bytes());
    body.extend_from_slice(&[10, 99, 0, 1]);
    body.push((caps.len() + 2) as u8);
    body.extend_from_slice(&[2, caps.len() as u8]);
    body.extend_from_slice(&caps);
    msg(1, &body)
}

fn attr(flags: u8, code: u8, value: &[u8]) -> Vec<u8> {
    let mut a = vec![flags, code, value.len() as u8];
    a.extend_from_slice(value);
    a
}

const ORIGIN: u8 = 1;
const AS_PATH: u8 = 2;
const NEXT_HOP: u8 = 3;
const LOCAL_PREF: u8 = 5;
const ATOMIC_AGGREGATE: u8 = 6;
const COMMUNITIES: u8 = 8;
const MP_REACH: u8 = 14;
const WK: u8 = 0x40;
const OPT_TRANS: u8 = 0xc0;

fn origin() -> Vec<u8> {
    attr(WK, ORIGIN, &[0])
}

/// AS_PATH: one AS_SEQUENCE of the raw peer's AS, 4 octets per AS.
fn as_path() -> Vec<u8> {
    let mut v = vec![2, 1];
    v.extend_from_slice(&u32::from(RAW_AS).to_be_bytes());
    attr(WK, AS_PATH, &v)
}

fn next_hop() -> Vec<u8> {
    attr(WK, NEXT_HOP, &[127, 0, 0, 1])
}

fn good_attrs() -> Vec<u8> {
    [origin(), as_path(), next_hop()].concat()
}

/// IPv4 NLRI for whole-octet prefixes like "10.90.1.0/24".
fn nlri(prefixes: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in prefixes {
        let n: ipnet::Ipv4Net = p.parse().unwrap();
        let len = n.prefix_len();
        out.push(len);
        out.extend_from_slice(&n.network().octets()[..usize::from(len).div_ceil(8)]);
    }
    out
}

fn update(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
    body.extend_from_slice(withdrawn);
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(attrs);
    body.extend_from_slice(nlri);
    msg(2, &body)
}

fn announce(prefixes: &[&str]) -> Vec<u8> {
    update(&[], &good_attrs(), &nlri(prefixes))
}

// ---- the raw peer ------------------------------------------------------------

struct RawPeer {
    s: TcpStream,
    rx: Vec<u8>,
    codec: Codec,
}

impl RawPeer {
    fn connect(to: SocketAddr) -> RawPeer {
        let s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).expect("connects");
        assert_eq!(
            s.local_addr().unwrap().ip(),
            RAW_ADDR.parse::<IpAddr>().unwrap()
        );
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_nodelay(true).unwrap();
        RawPeer {
            s,
            rx: Vec::new(),
            codec: Codec::default(),
        }
    }

    /// Connects and completes the OPEN exchange: Established on both sides.
    fn established(to: SocketAddr) -> RawPeer {
        let mut p = RawPeer::connect(to);
        match p.recv() {
            Some(Message::Open(o)) => assert_eq!(o.asn(), OUR_AS),
            other => panic!("expected the driver's OPEN, got {other:?}"),
        }
        p.send(&open());
        p.send(&keepalive());
        p.codec.four_octet_as = true;
        match p.recv() {
            Some(Message::Keepalive) => {}
            other => panic!("expected KEEPALIVE, got {other:?}"),
        }
        p
    }

    fn send(&mut self, bytes: &[u8]) {
        // A write may fail once the driver has closed: that is the test's
        // business to check with recv.
        let _ = self.s.write_all(bytes);
    }

    /// The next message; None when the driver closed the connection.
    /// Panics on a timeout: the driver must answer or close.
    fn recv(&mut self) -> Option<Message> {
        loop {
            match self.codec.decode(&self.rx) {
                Ok(Some((m, used))) => {
                    self.rx.drain(..used);
                    return Some(m);
                }
                Ok(None) => {}
                Err(n) => panic!("the driver sent something malformed: {n:?}"),
            }
            let mut buf = [0u8; 4096];
            match self.s.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.rx.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("reading from the driver: {e}"),
            }
        }
    }

    /// Skips UPDATEs and KEEPALIVEs until a NOTIFICATION, then expects the
    /// connection to close.
    fn expect_notification(&mut self) -> Notification {
        loop {
            match self.recv() {
                Some(Message::Notification(n)) => {
                    assert!(self.recv().is_none(), "closed after the NOTIFICATION");
                    return n;
                }
                Some(Message::Update(_) | Message::Keepalive) => continue,
                other => panic!("expected a NOTIFICATION, got {other:?}"),
            }
        }
    }
}

// ---- the drivers ---------------------------------------------------------------

struct Lab {
    /// The driver under test, at 127.0.<n>.1.
    d: Driver,
    listen: SocketAddr,
    /// A well-behaved speaker peering with it, at 127.0.<n>.2.
    good: Driver,
}

fn session(peer_as: u32, id: Ipv4Addr) -> SessionConfig {
    let mut s = SessionConfig::new(OUR_AS, peer_as, id);
    s.connect_delay = Duration::from_millis(50);
    s.error_wait_min = Duration::from_millis(200);
    s.hold_time = 9;
    s
}

fn peer_cfg(name: &str, to: SocketAddr, me: Ipv4Addr, s: SessionConfig) -> PeerConfig {
    PeerConfig {
        name: name.into(),
        address: to.ip(),
        port: to.port(),
        session: s,
        rr_client: false,
        keep_next_hop: false,
        next_hop_self: false,
        local_v4: Some(me),
        local_v6: None,
        source_address: Some(IpAddr::V4(me)),
        password: None,
        allow_local_as: 0,
        ttl_security: None,
    }
}

impl Lab {
    fn new(n: u8) -> Lab {
        let a = Ipv4Addr::new(127, 0, n, 1);
        let b = Ipv4Addr::new(127, 0, n, 2);
        let start = |addr: Ipv4Addr| {
            let speaker = Speaker::new(addr, OUR_AS, None);
            Driver::start(
                SocketAddr::new(IpAddr::V4(addr), 0),
                speaker,
                Box::new(|_| {}),
            )
            .expect("driver starts")
        };
        let (d, listen) = start(a);
        let (good, good_listen) = start(b);
        // The raw peer only connects to us.
        let mut raw = session(u32::from(RAW_AS), a);
        raw.passive = true;
        let raw_addr = SocketAddr::new(RAW_ADDR.parse().unwrap(), 179);
        d.send(Command::Peers(vec![
            peer_cfg(RAW_NAME, raw_addr, a, raw),
            peer_cfg(GOOD_NAME, good_listen, a, session(OUR_AS, a)),
        ]));
        good.send(Command::Peers(vec![peer_cfg(
            GOOD_NAME,
            listen,
            b,
            session(OUR_AS, b),
        )]));
        good.send(Command::LocalRoutes(vec![(
            net("10.91.0.0/24"),
            PathAttributes::default(),
        )]));
        let lab = Lab { d, listen, good };
        assert!(
            wait_until(10, || lab.peer(&lab.d, GOOD_NAME).state
                == State::Established),
            "the good peer comes up"
        );
        lab
    }

    fn peer(&self, d: &Driver, name: &str) -> PeerStatus {
        let snap = d
            .snapshot(Duration::from_secs(2))
            .expect("the driver answers (it has not panicked)");
        snap.peers.into_iter().find(|p| p.name == name).unwrap()
    }

    fn routes(&self, d: &Driver, prefix: &str) -> Vec<RouteStatus> {
        let p = net(prefix);
        d.snapshot(Duration::from_secs(2))
            .expect("the driver answers (it has not panicked)")
            .routes
            .into_iter()
            .filter(|r| r.prefix == p)
            .collect()
    }

    /// Whether `prefix` is with us and, passed on, with the good peer.
    fn has(&self, prefix: &str) -> (bool, bool) {
        (
            !self.routes(&self.d, prefix).is_empty(),
            !self.routes(&self.good, prefix).is_empty(),
        )
    }

    fn wait_has(&self, prefix: &str, want: bool, why: &str) {
        assert!(
            wait_until(5, || self.has(prefix) == (want, want)),
            "{why}: {prefix} should be {} (us, good peer) = {:?}",
            if want { "there" } else { "gone" },
            self.has(prefix)
        );
    }

    /// The good peer is still up and routes still flow between us.
    fn still_serving(&self, round: usize) {
        assert_eq!(self.peer(&self.d, GOOD_NAME).state, State::Established);
        let block = format!("10.92.{}.0/24", round % 256);
        self.good.send(Command::LocalRoutes(vec![
            (net("10.91.0.0/24"), PathAttributes::default()),
            (net(&block), PathAttributes::default()),
        ]));
        assert!(
            wait_until(5, || !self.routes(&self.d, &block).is_empty()),
            "a new route from the good peer arrives ({block})"
        );
        assert!(!self.routes(&self.d, "10.91.0.0/24").is_empty());
    }
}

// ---- the tests -----------------------------------------------------------------

#[test]
fn treat_as_withdraw_keeps_the_session_and_withdraws_the_prefixes() {
    let lab = Lab::new(4);
    let mut raw = RawPeer::established(lab.listen);
    assert!(wait_until(5, || lab.peer(&lab.d, RAW_NAME).state == State::Established));

    let prefixes = ["10.90.1.0/24", "10.90.2.0/24"];
    let withdraw_cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "ORIGIN value 5",
            [attr(WK, ORIGIN, &[5]), as_path(), next_hop()].concat(),
        ),
        (
            "ORIGIN of 2 bytes",
            [attr(WK, ORIGIN, &[0, 0]), as_path(), next_hop()].concat(),
        ),
        (
            "ORIGIN flagged optional",
            [attr(OPT_TRANS, ORIGIN, &[0]), as_path(), next_hop()].concat(),
        ),
        ("ORIGIN missing", [as_path(), next_hop()].concat()),
        ("AS_PATH missing", [origin(), next_hop()].concat()),
        ("NEXT_HOP missing", [origin(), as_path()].concat()),
        (
            "AS_PATH segment overruns the attribute",
            [
                origin(),
                attr(WK, AS_PATH, &[2, 3, 0, 0, 0xfd, 0xf2]),
                next_hop(),
            ]
            .concat(),
        ),
        (
            "NEXT_HOP of 3 bytes",
            [origin(), as_path(), attr(WK, NEXT_HOP, &[127, 0, 1])].concat(),
        ),
        (
            "NEXT_HOP 0.0.0.0",
            [origin(), as_path(), attr(WK, NEXT_HOP, &[0, 0, 0, 0])].concat(),
        ),
        (
            "NEXT_HOP multicast",
            [origin(), as_path(), attr(WK, NEXT_HOP, &[224, 0, 0, 5])].concat(),
        ),
        (
            "COMMUNITIES of 3 bytes",
            [good_attrs(), attr(OPT_TRANS, COMMUNITIES, &[0, 1, 2])].concat(),
        ),
        (
            // RFC 7606 §4: the last attribute claims more than the section holds.
            "attribute overruns the path attribute section",
            [good_attrs(), vec![OPT_TRANS, COMMUNITIES, 8, 0, 0, 0, 1]].concat(),
        ),
    ];
    for (what, attrs) in &withdraw_cases {
        raw.send(&announce(&prefixes));
        for p in prefixes {
            lab.wait_has(p, true, &format!("announced before {what}"));
        }
        raw.send(&update(&[], attrs, &nlri(&prefixes)));
        for p in prefixes {
            lab.wait_has(p, false, &format!("treat-as-withdraw for {what}"));
        }
        let st = lab.peer(&lab.d, RAW_NAME);
        assert_eq!(st.state, State::Established, "{what}: {:?}", st.last_error);
    }
    // The session is still in step: KEEPALIVE answered with routes, no
    // NOTIFICATION anywhere in what we were sent.
    raw.send(&announce(&["10.90.3.0/24"]));
    lab.wait_has("10.90.3.0/24", true, "after all that, a route is accepted");

    // Attribute discard: a malformed ATOMIC_AGGREGATE is dropped, the
    // route stays.
    let attrs = [good_attrs(), attr(WK, ATOMIC_AGGREGATE, &[1])].concat();
    raw.send(&update(&[], &attrs, &nlri(&["10.90.4.0/24"])));
    lab.wait_has("10.90.4.0/24", true, "attribute discard keeps the route");
    assert!(!lab.routes(&lab.d, "10.90.4.0/24")[0].attrs.atomic_aggregate);

    // LOCAL_PREF from an eBGP peer is ignored (RFC 4271 §5.1.5): it must
    // not make the route win, nor travel on into our AS.
    let attrs = [good_attrs(), attr(WK, LOCAL_PREF, &500u32.to_be_bytes())].concat();
    raw.send(&update(&[], &attrs, &nlri(&["10.90.5.0/24"])));
    lab.wait_has("10.90.5.0/24", true, "a route with LOCAL_PREF from eBGP");
    let ours = &lab.routes(&lab.d, "10.90.5.0/24")[0];
    assert_eq!(ours.attrs.local_pref, None, "{ours:?}");
    let passed_on = &lab.routes(&lab.good, "10.90.5.0/24")[0];
    assert_eq!(passed_on.attrs.local_pref, Some(100), "{passed_on:?}");

    // An ordinary withdrawal still works, and a clean close drops the rest.
    raw.send(&update(&nlri(&["10.90.3.0/24"]), &[], &[]));
    lab.wait_has("10.90.3.0/24", false, "withdrawn");
    assert_eq!(
        lab.peer(&lab.d, RAW_NAME).stats.updates_received,
        2 * withdraw_cases.len() as u64 + 4
    );
    drop(raw);
    lab.wait_has("10.90.4.0/24", false, "the raw peer's routes go with it");
    lab.still_serving(0);
}

#[test]
fn malformed_messages_get_a_notification_and_a_close() {
    let lab = Lab::new(5);
    let prefix = "10.90.9.0/24";
    let mut kinds = vec![
        (
            "bad marker",
            {
                let mut m = keepalive();
                m[3] = 0;
                m
            },
            (1, 1),
        ),
        (
            "length below 19",
            {
                let mut m = keepalive();
                m[17] = 18;
                m
            },
            (1, 2),
        ),
        (
            "UPDATE longer than 4096",
            {
                let mut m = announce(&[prefix]);
                m[16..18].copy_from_slice(&5000u16.to_be_bytes());
                m
            },
            (1, 2),
        ),
        ("KEEPALIVE with a body", msg(4, &[0]), (1, 2)),
        ("unknown type 9", msg(9, &[0, 0, 0, 0]), (1, 3)),
        (
            "NLRI prefix length 33",
            update(&[], &good_attrs(), &[33, 10, 0, 0, 0, 0]),
            (3, 10),
        ),
        (
            "NLRI cut short",
            update(&[], &good_attrs(), &[24, 10, 90]),
            (3, 10),
        ),
        (
            "withdrawn length overruns the message",
            {
                let mut m = update(&[], &good_attrs(), &[]);
                m[19..21].copy_from_slice(&200u16.to_be_bytes());
                m
            },
            (3, 1),
        ),
        (
            "MP_REACH cut short",
            update(
                &[],
                &[good_attrs(), attr(0x80, MP_REACH, &[0, 2, 1, 16])].concat(),
                &[],
            ),
            (3, 9),
        ),
        ("a second OPEN", open(), (5, 3)),
    ];
    for (i, (what, bad, (code, subcode))) in kinds.drain(..).enumerate() {
        let mut raw = RawPeer::established(lab.listen);
        raw.send(&announce(&[prefix]));
        lab.wait_has(prefix, true, what);
        raw.send(&bad);
        let n = raw.expect_notification();
        assert_eq!((n.code, n.subcode), (code, subcode), "{what}: {n:?}");
        // The peer misbehaved: its routes go now (no graceful restart).
        lab.wait_has(prefix, false, what);
        let st = lab.peer(&lab.d, RAW_NAME);
        assert_ne!(st.state, State::Established, "{what}");
        assert!(
            st.last_error.as_deref().unwrap_or("").contains("alformed")
                || st
                    .last_error
                    .as_deref()
                    .unwrap_or("")
                    .contains("Unexpected"),
            "{what}: {:?}",
            st.last_error
        );
        lab.still_serving(i);
    }

    // Before the OPEN exchange is done, too.
    let mut raw = RawPeer::connect(lab.listen);
    assert!(matches!(raw.recv(), Some(Message::Open(_))));
    raw.send(&announce(&[prefix]));
    let n = raw.expect_notification();
    assert_eq!((n.code, n.subcode), (5, 1), "UPDATE in OpenSent: {n:?}");
    let mut raw = RawPeer::connect(lab.listen);
    assert!(matches!(raw.recv(), Some(Message::Open(_))));
    raw.send(&open());
    assert!(matches!(raw.recv(), Some(Message::Keepalive)));
    raw.codec.four_octet_as = true;
    raw.send(&announce(&[prefix]));
    let n = raw.expect_notification();
    assert_eq!((n.code, n.subcode), (5, 2), "UPDATE in OpenConfirm: {n:?}");
    lab.still_serving(99);
}

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A message to mangle: a valid one of each kind the raw peer could send.
fn sample(rng: &mut Rng) -> Vec<u8> {
    match rng.below(5) {
        0 => announce(&["10.93.0.0/16", "10.94.1.0/24"]),
        1 => update(&nlri(&["10.93.0.0/16"]), &[], &[]),
        2 => open(),
        3 => msg(5, &[0, 1, 0, 1]),
        _ => msg(3, &[6, 2]),
    }
}

/// Flips, truncates, extends or replaces parts of a message.
fn mangle(rng: &mut Rng, mut m: Vec<u8>) -> Vec<u8> {
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !m.is_empty() => {
                let i = rng.below(m.len());
                m[i] ^= 1 << rng.below(8);
            }
            1 if !m.is_empty() => {
                let i = rng.below(m.len());
                m[i] = rng.next() as u8;
            }
            2 => m.truncate(rng.below(m.len() + 1)),
            3 => {
                let extra = rng.below(40);
                m.extend(rng.bytes(extra));
            }
            4 if m.len() > 19 => {
                // Keep the header's length true to the new size.
                let extra = rng.below(20);
                m.extend(rng.bytes(extra));
                let len = m.len() as u16;
                m[16..18].copy_from_slice(&len.to_be_bytes());
            }
            _ => {
                let n = rng.below(64);
                m = rng.bytes(n);
            }
        }
    }
    m
}

#[test]
fn junk_in_every_state_never_stops_the_driver() {
    let lab = Lab::new(6);
    let mut rng = Rng(0x5eed_b9b9_0000_0001);
    let rounds = 400;
    for round in 0..rounds {
        let mut raw = match rng.below(3) {
            // Junk before our OPEN is answered, after it, or once Established.
            0 => {
                let mut r = RawPeer::connect(lab.listen);
                let m = r.recv();
                assert!(
                    matches!(m, Some(Message::Open(_))),
                    "round {round}: {m:?} {:?}",
                    lab.peer(&lab.d, RAW_NAME)
                );
                r
            }
            1 => {
                let mut r = RawPeer::connect(lab.listen);
                let m = r.recv();
                assert!(
                    matches!(m, Some(Message::Open(_))),
                    "round {round}: {m:?} {:?}",
                    lab.peer(&lab.d, RAW_NAME)
                );
                r.send(&open());
                r
            }
            _ => RawPeer::established(lab.listen),
        };
        for _ in 0..=rng.below(3) {
            let m = sample(&mut rng);
            let bad = mangle(&mut rng, m);
            raw.send(&bad);
        }
        // Sometimes a clean end, sometimes the peer just goes.
        if rng.below(2) == 0 {
            raw.send(&keepalive());
        }
        drop(raw);
        if round % 25 == 24 {
            lab.still_serving(round);
        }
    }
    // And a proper peer still gets in afterwards.
    let mut raw = RawPeer::established(lab.listen);
    raw.send(&announce(&["10.90.7.0/24"]));
    lab.wait_has("10.90.7.0/24", true, "a route after the junk");
    lab.still_serving(rounds);
}
