//! Two sessions wired back to back through an in-memory network: every
//! byte they exchange goes through the real codec.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::*;
use crate::wire::{AddPathMode, Nlri, PathAttributes};

/// One TCP connection between the two sessions.
struct Link {
    a: Side,
    b: Side,
    /// Bytes stop flowing (a dead peer) but nobody notices a close.
    frozen: bool,
}

struct Net {
    a: Session,
    b: Session,
    now: Instant,
    links: Vec<Link>,
    /// Actions other than Send/Connect/Close, per session, in order.
    a_events: Vec<Action>,
    b_events: Vec<Action>,
    b_listening: bool,
    a_listening: bool,
}

fn cfg(local_as: u32, peer_as: u32, id: [u8; 4]) -> SessionConfig {
    let mut c = SessionConfig::new(local_as, peer_as, Ipv4Addr::from(id));
    c.families = vec![Family::Ipv4Unicast, Family::Ipv6Unicast];
    c.hold_time = 9;
    c
}

impl Net {
    fn new(a: SessionConfig, b: SessionConfig) -> Net {
        let now = Instant::now();
        Net {
            a: Session::new(a, now),
            b: Session::new(b, now),
            now,
            links: Vec::new(),
            a_events: Vec::new(),
            b_events: Vec::new(),
            b_listening: true,
            a_listening: true,
        }
    }

    fn start(&mut self) {
        self.a.start(self.now);
        self.b.start(self.now);
        self.pump();
    }

    /// Carries out actions until both sessions are quiet.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut busy = false;
            while let Some(act) = self.a.poll_action() {
                busy = true;
                self.act(true, act);
            }
            while let Some(act) = self.b.poll_action() {
                busy = true;
                self.act(false, act);
            }
            if !busy {
                return;
            }
        }
        panic!("sessions never went quiet");
    }

    fn act(&mut self, from_a: bool, act: Action) {
        let now = self.now;
        match act {
            Action::Connect => {
                let listening = if from_a {
                    self.b_listening
                } else {
                    self.a_listening
                };
                let (me, peer) = self.pair(from_a);
                if listening {
                    me.connected(now, Side::Outgoing);
                    peer.connected(now, Side::Incoming);
                    let (a, b) = if from_a {
                        (Side::Outgoing, Side::Incoming)
                    } else {
                        (Side::Incoming, Side::Outgoing)
                    };
                    self.links.push(Link {
                        a,
                        b,
                        frozen: false,
                    });
                } else {
                    me.closed(now, Side::Outgoing, "Connection refused");
                }
            }
            Action::Send(side, bytes) => {
                let Some(link) = self.link(from_a, side) else {
                    return;
                };
                if link.frozen {
                    return;
                }
                let to = if from_a { link.b } else { link.a };
                let (_, peer) = self.pair(from_a);
                peer.received(now, to, &bytes);
            }
            Action::Close(side) => {
                let Some(i) = self
                    .links
                    .iter()
                    .position(|l| (if from_a { l.a } else { l.b }) == side)
                else {
                    return;
                };
                let link = self.links.remove(i);
                let to = if from_a { link.b } else { link.a };
                if !link.frozen {
                    let (_, peer) = self.pair(from_a);
                    peer.closed(now, to, "Connection closed");
                }
            }
            other => {
                if from_a {
                    self.a_events.push(other)
                } else {
                    self.b_events.push(other)
                }
            }
        }
    }

    fn pair(&mut self, from_a: bool) -> (&mut Session, &mut Session) {
        if from_a {
            (&mut self.a, &mut self.b)
        } else {
            (&mut self.b, &mut self.a)
        }
    }

    fn link(&self, from_a: bool, side: Side) -> Option<&Link> {
        self.links
            .iter()
            .find(|l| (if from_a { l.a } else { l.b }) == side)
    }

    /// Advances the clock by `d`, firing timers as they fall due.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
    }

    fn established(&self) -> bool {
        self.a.state() == State::Established && self.b.state() == State::Established
    }
}

fn count_established(events: &[Action]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Action::Established(_)))
        .count()
}

#[test]
fn comes_up_and_negotiates_capabilities() {
    let mut b = cfg(64512, 64512, [10, 0, 0, 2]);
    b.passive = true;
    let mut net = Net::new(cfg(64512, 64512, [10, 0, 0, 1]), b);
    net.start();
    assert_eq!(
        net.a.state(),
        State::Active,
        "nothing before the connect delay"
    );
    net.advance(Duration::from_secs(2));
    assert!(
        net.established(),
        "a={:?} b={:?}",
        net.a.state(),
        net.b.state()
    );
    let neg = net.a.negotiated().unwrap();
    assert_eq!(neg.peer_id, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(neg.families, vec![Family::Ipv4Unicast, Family::Ipv6Unicast]);
    assert!(neg.codec.four_octet_as);
    assert_eq!(neg.codec.add_path_rx, neg.families);
    assert_eq!(neg.codec.add_path_tx, neg.families);
    assert_eq!(neg.hold_time, Duration::from_secs(9));
    assert!(neg.graceful_restart_both);
    assert_eq!(count_established(&net.a_events), 1);
    assert_eq!(count_established(&net.b_events), 1);
}

#[test]
fn keepalives_keep_it_up_and_a_silent_peer_is_dropped_gracefully() {
    let mut net = Net::new(
        cfg(64512, 64512, [10, 0, 0, 1]),
        cfg(64512, 64512, [10, 0, 0, 2]),
    );
    net.start();
    net.advance(Duration::from_secs(2));
    assert!(net.established());
    net.advance(Duration::from_secs(60));
    assert!(net.established(), "keepalives every hold/3 keep it up");
    for l in &mut net.links {
        l.frozen = true;
    }
    net.advance(Duration::from_secs(10));
    let down = net.a_events.iter().find_map(|e| match e {
        Action::Down { reason, graceful } => Some((reason.clone(), *graceful)),
        _ => None,
    });
    assert_eq!(down, Some(("Hold timer expired".into(), true)));
}

#[test]
fn a_wrong_peer_as_is_refused_and_retried_with_backoff() {
    let mut b = cfg(64512, 64512, [10, 0, 0, 2]);
    b.passive = true;
    let mut net = Net::new(cfg(64512, 64513, [10, 0, 0, 1]), b);
    net.start();
    net.advance(Duration::from_secs(2));
    assert!(!net.established());
    assert!(
        net.a.last_error().unwrap().contains("Bad peer AS"),
        "{:?}",
        net.a.last_error()
    );
    assert!(
        net.b.last_error().unwrap().contains("Received"),
        "{:?}",
        net.b.last_error()
    );
    // Backoff: 5 s, then 10 s: two more attempts (OPEN and NOTIFICATION
    // each) in the next 20 s, where a fixed 3 s retry would make six.
    let before = net.a.stats().messages_sent;
    net.advance(Duration::from_secs(20));
    let sent = net.a.stats().messages_sent - before;
    assert_eq!(sent, 4, "{sent} messages in 20 s");
}

#[test]
fn simultaneous_connections_leave_exactly_one() {
    let mut net = Net::new(
        cfg(64512, 64512, [10, 0, 0, 1]),
        cfg(64512, 64512, [10, 0, 0, 2]),
    );
    // Both connect at the same instant.
    net.a.start(net.now);
    net.b.start(net.now);
    net.now += Duration::from_secs(1);
    net.a.handle_timeout(net.now);
    net.b.handle_timeout(net.now);
    net.pump();
    net.advance(Duration::from_secs(1));
    assert!(net.established());
    assert_eq!(net.links.len(), 1, "the collision loser is closed");
    // 10.0.0.2 has the higher identifier: its outgoing connection wins.
    assert_eq!(net.links[0].b, Side::Outgoing);
    assert_eq!(count_established(&net.a_events), 1);
    assert_eq!(count_established(&net.b_events), 1);
}

#[test]
fn updates_flow_and_a_notification_ends_it_hard() {
    let mut net = Net::new(
        cfg(64512, 64512, [10, 0, 0, 1]),
        cfg(64512, 64512, [10, 0, 0, 2]),
    );
    net.start();
    net.advance(Duration::from_secs(2));
    let update = Update {
        announced: vec![Nlri {
            prefix: "10.65.0.0/26".parse().unwrap(),
            path_id: Some(1),
        }],
        attrs: PathAttributes {
            next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
            local_pref: Some(100),
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(net.a.send_update(net.now, &update));
    net.pump();
    let got: Vec<&Update> = net
        .b_events
        .iter()
        .filter_map(|e| match e {
            Action::Update(u) => Some(u.as_ref()),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![&update]);
    net.a.stop(net.now, CEASE_ADMIN_SHUTDOWN);
    net.pump();
    let down = net.b_events.iter().find_map(|e| match e {
        Action::Down { reason, graceful } => Some((reason.clone(), *graceful)),
        _ => None,
    });
    let (reason, graceful) = down.expect("b saw the session go down");
    assert!(!graceful, "a NOTIFICATION means a deliberate stop");
    assert!(reason.contains("Administrative shutdown"), "{reason}");
    assert_eq!(net.a.state(), State::Idle);
}

#[test]
fn passive_side_never_connects() {
    let mut a = cfg(64512, 64512, [10, 0, 0, 1]);
    a.passive = true;
    let mut b = cfg(64512, 64512, [10, 0, 0, 2]);
    b.passive = true;
    let mut net = Net::new(a, b);
    net.start();
    net.advance(Duration::from_secs(30));
    assert_eq!(net.a.state(), State::Active);
    assert!(net.links.is_empty());
}

#[test]
fn ebgp_with_two_octet_peer_as_and_no_add_path() {
    let mut a = cfg(4_200_000_000, 65001, [10, 0, 0, 1]);
    a.add_path = None;
    let b = cfg(65001, 4_200_000_000, [10, 0, 0, 2]);
    let mut net = Net::new(a, b);
    net.start();
    net.advance(Duration::from_secs(2));
    assert!(net.established());
    let neg = net.b.negotiated().unwrap();
    assert_eq!(neg.peer_as, 4_200_000_000);
    assert!(neg.codec.add_path_rx.is_empty() && neg.codec.add_path_tx.is_empty());
    let _ = AddPathMode::Both;
}

#[test]
fn garbage_gets_a_header_error_and_never_panics() {
    let mut net = Net::new(
        cfg(64512, 64512, [10, 0, 0, 1]),
        cfg(64512, 64512, [10, 0, 0, 2]),
    );
    net.start();
    net.advance(Duration::from_secs(2));
    let side = net.links[0].b;
    net.b.received(net.now, side, &[0u8; 40]);
    let sent_notification = std::iter::from_fn(|| net.b.poll_action()).any(|a| match a {
        Action::Send(_, bytes) => bytes.len() > 18 && bytes[18] == 3 && bytes[19] == 1,
        _ => false,
    });
    assert!(sent_notification, "message header error sent");
    assert_ne!(net.b.state(), State::Established);
}

/// The NOTIFICATION a lone session sends after `bytes` arrive on an
/// incoming connection brought to `state` first.
fn fsm_error_for(state: State, bytes: &[u8]) -> Option<(u8, u8)> {
    let now = Instant::now();
    let mut s = Session::new(cfg(64512, 64512, [10, 0, 0, 1]), now);
    s.start(now);
    s.connected(now, Side::Incoming);
    let codec = Codec::default();
    let mut peer_open = Vec::new();
    codec.encode(
        &Message::Open(cfg(64512, 64512, [10, 0, 0, 2]).open()),
        &mut peer_open,
    );
    let mut keepalive = Vec::new();
    codec.encode(&Message::Keepalive, &mut keepalive);
    if state >= State::OpenConfirm {
        s.received(now, Side::Incoming, &peer_open);
    }
    if state == State::Established {
        s.received(now, Side::Incoming, &keepalive);
    }
    assert_eq!(s.state(), state);
    while s.poll_action().is_some() {}
    s.received(now, Side::Incoming, bytes);
    std::iter::from_fn(|| s.poll_action()).find_map(|a| match a {
        Action::Send(_, b) if b.len() >= 21 && b[18] == 3 => Some((b[19], b[20])),
        _ => None,
    })
}

#[test]
fn unexpected_messages_get_the_rfc6608_subcode_of_the_state() {
    let codec = Codec::default();
    let mut update = Vec::new();
    codec.encode(
        &Message::Update(Update::end_of_rib(Family::Ipv4Unicast)),
        &mut update,
    );
    let mut open = Vec::new();
    codec.encode(
        &Message::Open(cfg(64512, 64512, [10, 0, 0, 2]).open()),
        &mut open,
    );
    assert_eq!(fsm_error_for(State::OpenSent, &update), Some((5, 1)));
    assert_eq!(fsm_error_for(State::OpenConfirm, &update), Some((5, 2)));
    assert_eq!(fsm_error_for(State::Established, &open), Some((5, 3)));
}

#[test]
fn a_peer_that_restarts_replaces_its_old_session_gracefully() {
    let mut b = cfg(64512, 64512, [10, 0, 0, 2]);
    b.passive = true;
    let mut net = Net::new(cfg(64512, 64512, [10, 0, 0, 1]), b.clone());
    net.start();
    net.advance(Duration::from_secs(2));
    assert!(net.established());
    // b dies without a word (its old connection just goes silent) and comes
    // back with the Restart State bit, connecting to a.
    for l in &mut net.links {
        l.frozen = true;
    }
    let mut b2 = b;
    b2.passive = false;
    b2.restarting = true;
    net.b = Session::new(b2, net.now);
    net.b.start(net.now);
    net.a_listening = true;
    net.advance(Duration::from_secs(3));
    let downs: Vec<(String, bool)> = net
        .a_events
        .iter()
        .filter_map(|e| match e {
            Action::Down { reason, graceful } => Some((reason.clone(), *graceful)),
            _ => None,
        })
        .collect();
    assert_eq!(downs, vec![("Peer restarted".to_string(), true)]);
    assert_eq!(count_established(&net.a_events), 2);
    assert!(net.established());
}

#[test]
fn a_second_connection_right_after_establishment_is_a_collision_not_a_restart() {
    let mut b = cfg(64512, 64512, [10, 0, 0, 2]);
    b.passive = true;
    let mut net = Net::new(cfg(64512, 64512, [10, 0, 0, 1]), b.clone());
    net.start();
    net.advance(Duration::from_secs(2));
    assert!(net.established());
    // The tail of a simultaneous open: b's own attempt (no Restart State
    // bit) arrives just after a's connection became Established.
    let mut b2 = b;
    b2.passive = false;
    b2.connect_delay = Duration::from_millis(100);
    let mut late = Session::new(b2, net.now);
    late.start(net.now);
    net.now += Duration::from_millis(200);
    late.handle_timeout(net.now);
    assert_eq!(late.poll_action(), Some(Action::Connect));
    late.connected(net.now, Side::Outgoing);
    net.a.connected(net.now, Side::Incoming);
    let mut to_a = Vec::new();
    while let Some(a) = late.poll_action() {
        if let Action::Send(_, bytes) = a {
            to_a.extend(bytes);
        }
    }
    net.a.received(net.now, Side::Incoming, &to_a);
    let actions: Vec<Action> = std::iter::from_fn(|| net.a.poll_action()).collect();
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Down { .. })),
        "{actions:?}"
    );
    assert!(
        actions.contains(&Action::Close(Side::Incoming)),
        "the newcomer is closed: {actions:?}"
    );
    assert_eq!(net.a.state(), State::Established);
}
