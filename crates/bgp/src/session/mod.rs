//! One peer's BGP session (RFC 4271 §8), sans IO.
//!
//! The driver owns the sockets and the clock. It tells the session what
//! happened (`start`, `connected`, `received`, `closed`, `handle_timeout`)
//! and carries out the [`Action`]s the session queues (`poll_action`):
//! open a TCP connection, send bytes, close a connection. Routes learned
//! and the session going up or down are actions too, for the RIB.
//!
//! A session may briefly hold two connections to its peer, one it opened
//! and one it accepted; the collision is resolved by BGP identifier as
//! RFC 4271 §6.8 says, and the loser is closed with Cease/collision.

mod config;
mod conn;
mod negotiate;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub use config::SessionConfig;
pub use negotiate::{negotiate, Negotiated, PeerGracefulRestart};

use crate::wire::{fsm_error, Codec, Family, Message, Notification, Update};
use conn::{Conn, ConnState};

/// Which of the (at most two) connections an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The connection this side opened.
    Outgoing,
    /// The connection the peer opened and we accepted.
    Incoming,
}

/// The RFC 4271 FSM state, as status output names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        }
    }
}

/// What the driver (or the RIB) must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open an outgoing TCP connection to the peer; report `connected` or
    /// `closed(Side::Outgoing, ..)`.
    Connect,
    Send(Side, Vec<u8>),
    /// Close this connection (after sending what was queued for it).
    Close(Side),
    Established(Box<Negotiated>),
    /// Routes from the peer (treat-as-withdraw already applied).
    Update(Box<Update>),
    /// The peer asked for our routes of this family again.
    RouteRefresh(Family),
    /// The session left Established. With `graceful`, the peer's routes
    /// are kept as stale (RFC 4724) until it comes back or its restart
    /// time runs out; otherwise they are gone now.
    Down {
        reason: String,
        graceful: bool,
    },
}

/// Counters for status output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub updates_received: u64,
    pub updates_sent: u64,
    pub messages_received: u64,
    pub messages_sent: u64,
    pub established_count: u64,
}

pub struct Session {
    cfg: SessionConfig,
    enabled: bool,
    outgoing: Option<Conn>,
    incoming: Option<Conn>,
    /// When to open the next outgoing connection.
    connect_at: Option<Instant>,
    /// Current wait after an error; doubles while errors repeat.
    error_wait: Duration,
    actions: VecDeque<Action>,
    last_error: Option<String>,
    state: State,
    since: Instant,
    stats: SessionStats,
}

/// Cease subcodes (RFC 4486).
pub const CEASE: u8 = 6;
pub const CEASE_ADMIN_SHUTDOWN: u8 = 2;
pub const CEASE_PEER_DECONFIGURED: u8 = 3;
pub const CEASE_ADMIN_RESET: u8 = 4;
pub const CEASE_CONNECTION_REJECTED: u8 = 5;
pub const CEASE_COLLISION: u8 = 7;
/// A connection arriving this soon after the session came up is taken for
/// the peer's half of a simultaneous open, not a restart.
const SIMULTANEOUS_OPEN_WINDOW: Duration = Duration::from_secs(10);
/// Hold time while waiting for the peer's OPEN (RFC 4271 §8.2.2 suggests 4 min).
const OPEN_HOLD: Duration = Duration::from_secs(240);

impl Session {
    pub fn new(cfg: SessionConfig, now: Instant) -> Self {
        let error_wait = cfg.error_wait_min;
        Session {
            cfg,
            enabled: false,
            outgoing: None,
            incoming: None,
            connect_at: None,
            error_wait,
            actions: VecDeque::new(),
            last_error: None,
            state: State::Idle,
            since: now,
            stats: SessionStats::default(),
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// The graceful-restart flags of our next OPEN (RFC 4724 §3): they
    /// change once our restart is over, without touching the session.
    pub fn set_restart_flags(&mut self, restarting: bool, forwarding_preserved: bool) {
        self.cfg.restarting = restarting;
        self.cfg.forwarding_preserved = forwarding_preserved;
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// When the current state was entered.
    pub fn since(&self) -> Instant {
        self.since
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// What was negotiated, while Established.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.established_conn().and_then(|c| c.negotiated())
    }

    /// The remaining hold time, while a hold timer runs.
    pub fn hold_remaining(&self, now: Instant) -> Option<Duration> {
        let c = self.established_conn()?;
        Some(c.hold_deadline?.saturating_duration_since(now))
    }

    pub fn keepalive_remaining(&self, now: Instant) -> Option<Duration> {
        let c = self.established_conn()?;
        Some(c.keepalive_deadline?.saturating_duration_since(now))
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The earliest time `handle_timeout` has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = [&self.outgoing, &self.incoming];
        let conn_deadlines = conns
            .into_iter()
            .flatten()
            .flat_map(|c| [c.hold_deadline, c.keepalive_deadline]);
        conn_deadlines.chain([self.connect_at]).flatten().min()
    }

    /// Administratively up: connect (unless passive) after the connect delay.
    pub fn start(&mut self, now: Instant) {
        if self.enabled {
            return;
        }
        self.enabled = true;
        self.error_wait = self.cfg.error_wait_min;
        if !self.cfg.passive {
            self.connect_at = Some(now + self.cfg.connect_delay);
        }
        self.set_state(now, State::Active);
    }

    /// Administratively down: both connections get Cease with `subcode`.
    pub fn stop(&mut self, now: Instant, subcode: u8) {
        self.enabled = false;
        self.connect_at = None;
        for side in [Side::Outgoing, Side::Incoming] {
            self.fail(
                now,
                side,
                Some(Notification::new(CEASE, subcode, vec![])),
                "stopped",
            );
        }
        self.connect_at = None;
        self.set_state(now, State::Idle);
    }

    /// A TCP connection is up: one we opened (after `Action::Connect`), or
    /// one the peer opened to us.
    pub fn connected(&mut self, now: Instant, side: Side) {
        if !self.enabled {
            if side == Side::Incoming {
                self.reject_incoming();
            }
            return;
        }
        if side == Side::Incoming {
            if let Some(est) = self.established_side() {
                let restartable = self.negotiated().is_some_and(|n| n.graceful_restart_both);
                if !restartable {
                    // An established session wins over a new connection.
                    self.reject_incoming();
                    return;
                }
                if est == Side::Incoming {
                    // The peer opened a second connection to us: its end of
                    // the first one is gone (RFC 4724 §4.2).
                    self.fail(now, est, None, "Peer restarted");
                }
                // Otherwise the new connection's OPEN decides: a restarted
                // peer, or the tail of a simultaneous open.
            }
        }
        if side == Side::Outgoing {
            if self.outgoing.is_none() {
                // An attempt we gave up on (collision) completed anyway.
                self.actions.push_back(Action::Close(Side::Outgoing));
                return;
            }
            self.connect_at = None;
        }
        let mut conn = Conn::new(side);
        conn.hold_deadline = Some(now + OPEN_HOLD);
        conn.state = ConnState::OpenSent;
        *self.slot(side) = Some(conn);
        let open = Message::Open(self.cfg.open());
        self.send(now, side, &open);
        self.refresh_state(now);
    }

    /// The connection failed to open, or the peer closed it, or it broke.
    pub fn closed(&mut self, now: Instant, side: Side, reason: &str) {
        if self.slot(side).is_none() {
            return;
        }
        self.fail(now, side, None, reason);
    }

    /// Bytes arrived on a connection.
    pub fn received(&mut self, now: Instant, side: Side, bytes: &[u8]) {
        let Some(conn) = self.slot(side).as_mut() else {
            return;
        };
        conn.rx.extend_from_slice(bytes);
        loop {
            let Some(conn) = self.slot(side).as_mut() else {
                return;
            };
            let codec = conn.codec();
            match codec.decode(&conn.rx) {
                Ok(None) => return,
                Ok(Some((msg, used))) => {
                    conn.rx.drain(..used);
                    self.stats.messages_received += 1;
                    self.on_message(now, side, msg);
                }
                Err(n) => {
                    let reason = format!("Received malformed message: {n}");
                    self.fail(now, side, Some(n), &reason);
                    return;
                }
            }
        }
    }

    /// Runs every timer that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.connect_at.is_some_and(|t| t <= now) {
            self.connect_at = None;
            if self.enabled && self.outgoing.is_none() && self.established_conn().is_none() {
                self.outgoing = Some(Conn::new(Side::Outgoing));
                self.actions.push_back(Action::Connect);
                // If the attempt hangs, try again after the retry time.
                self.connect_at = Some(now + self.cfg.connect_retry);
                self.refresh_state(now);
            }
        }
        for side in [Side::Outgoing, Side::Incoming] {
            let Some(conn) = self.slot(side).as_ref() else {
                continue;
            };
            if conn.hold_deadline.is_some_and(|t| t <= now) {
                let n = Notification::new(4, 0, vec![]);
                self.fail(now, side, Some(n), "Hold timer expired");
                continue;
            }
            if conn.keepalive_deadline.is_some_and(|t| t <= now) {
                self.send(now, side, &Message::Keepalive);
            }
        }
    }

    /// Sends routes to the peer (only while Established; dropped
    /// otherwise, since the RIB sends everything again on Established).
    pub fn send_update(&mut self, now: Instant, update: &Update) -> bool {
        let Some(side) = self.established_side() else {
            return false;
        };
        self.stats.updates_sent += 1;
        self.send(now, side, &Message::Update(update.clone()));
        true
    }

    /// Asks the peer to send its routes of `family` again (RFC 2918).
    pub fn request_refresh(&mut self, now: Instant, family: Family) {
        if let Some(side) = self.established_side() {
            let msg = Message::RouteRefresh {
                afi: family.afi(),
                safi: family.safi(),
                subtype: 0,
            };
            self.send(now, side, &msg);
        }
    }

    fn on_message(&mut self, now: Instant, side: Side, msg: Message) {
        let Some(conn) = self.slot(side).as_mut() else {
            return;
        };
        if let Some(neg) = conn.negotiated() {
            // Any message from the peer restarts its hold timer.
            let hold = neg.hold_time;
            if !hold.is_zero() {
                conn.hold_deadline = Some(now + hold);
            }
        }
        match (conn.state.clone(), msg) {
            (ConnState::OpenSent, Message::Open(open)) => self.on_open(now, side, &open),
            (ConnState::OpenConfirm(neg), Message::Keepalive) => {
                self.on_established(now, side, *neg)
            }
            (ConnState::Established(_), Message::Keepalive) => {}
            (ConnState::Established(_), Message::Update(u)) => self.on_update(u),
            (ConnState::Established(neg), Message::RouteRefresh { afi, safi, .. }) => {
                if let Some(f) =
                    Family::from_afi_safi(afi, safi).filter(|f| neg.families.contains(f))
                {
                    self.actions.push_back(Action::RouteRefresh(f));
                }
            }
            (_, Message::Notification(n)) => {
                let reason = format!("Received: {n}");
                self.fail(now, side, None, &reason);
            }
            (state, other) => {
                let reason = format!(
                    "Unexpected {} in state {:?}",
                    message_name(&other),
                    self.state
                );
                // RFC 6608: the subcode names the state it came in.
                let subcode = match state {
                    ConnState::Connecting => fsm_error::UNSPECIFIED,
                    ConnState::OpenSent => fsm_error::UNEXPECTED_IN_OPENSENT,
                    ConnState::OpenConfirm(_) => fsm_error::UNEXPECTED_IN_OPENCONFIRM,
                    ConnState::Established(_) => fsm_error::UNEXPECTED_IN_ESTABLISHED,
                };
                self.fail(now, side, Some(Notification::fsm(subcode)), &reason);
            }
        }
    }

    fn on_open(&mut self, now: Instant, side: Side, open: &crate::wire::Open) {
        let neg = match negotiate(&self.cfg, open) {
            Ok(n) => n,
            Err(n) => {
                let reason = format!("Error: {n}");
                self.fail(now, side, Some(n), &reason);
                return;
            }
        };
        let restarted = matches!(
            open.graceful_restart(),
            Some(crate::wire::Capability::GracefulRestart {
                restarting: true,
                ..
            })
        );
        if !self.resolve_collision(now, side, neg.peer_id, restarted) {
            return;
        }
        let Some(conn) = self.slot(side).as_mut() else {
            return;
        };
        conn.hold_deadline = (!neg.hold_time.is_zero()).then(|| now + neg.hold_time);
        conn.state = ConnState::OpenConfirm(Box::new(neg));
        self.send(now, side, &Message::Keepalive);
        self.refresh_state(now);
    }

    /// With two connections, keeps the one opened by the side with the
    /// higher BGP identifier. Returns whether `side` survives.
    ///
    /// Against an Established connection, a new one wins only if the peer
    /// says it restarted (the Restart State bit), or the session has been
    /// up long enough that this cannot be the other half of a simultaneous
    /// open: then the old session ended gracefully (RFC 4724 §4.2).
    fn resolve_collision(
        &mut self,
        now: Instant,
        side: Side,
        peer_id: std::net::Ipv4Addr,
        peer_restarted: bool,
    ) -> bool {
        let other = match side {
            Side::Outgoing => Side::Incoming,
            Side::Incoming => Side::Outgoing,
        };
        let Some(other_conn) = self.slot(other).as_ref() else {
            return true;
        };
        let n = Notification::new(CEASE, CEASE_COLLISION, vec![]);
        match other_conn.state {
            // Not up yet: resolved when its OPEN arrives, if it ever does.
            ConnState::Connecting => return true,
            ConnState::Established(ref neg) => {
                let settled = other_conn
                    .established_at
                    .is_some_and(|t| now.saturating_duration_since(t) >= SIMULTANEOUS_OPEN_WINDOW);
                if neg.graceful_restart_both && (peer_restarted || settled) {
                    self.fail(now, other, None, "Peer restarted");
                    return true;
                }
                // An established session wins over a new connection.
                self.drop_conn(now, side, Some(n));
                return false;
            }
            ConnState::OpenSent | ConnState::OpenConfirm(_) => {}
        }
        let keep = if u32::from(self.cfg.router_id) > u32::from(peer_id) {
            Side::Outgoing
        } else {
            Side::Incoming
        };
        let lose = if keep == Side::Outgoing {
            Side::Incoming
        } else {
            Side::Outgoing
        };
        self.drop_conn(now, lose, Some(n));
        lose != side
    }

    fn on_established(&mut self, now: Instant, side: Side, neg: Negotiated) {
        let Some(conn) = self.slot(side).as_mut() else {
            return;
        };
        conn.state = ConnState::Established(Box::new(neg.clone()));
        conn.established_at = Some(now);
        self.connect_at = None;
        self.error_wait = self.cfg.error_wait_min;
        self.last_error = None;
        self.stats.established_count += 1;
        self.actions.push_back(Action::Established(Box::new(neg)));
        self.refresh_state(now);
    }

    fn on_update(&mut self, mut u: Update) {
        self.stats.updates_received += 1;
        if u.treat_as_withdraw {
            // RFC 7606: the routes are gone, the session stays up.
            let announced = std::mem::take(&mut u.announced);
            u.withdrawn.extend(announced);
            u.treat_as_withdraw = false;
        }
        self.actions.push_back(Action::Update(Box::new(u)));
    }

    /// Ends one connection: sends `notification` first if given, reports
    /// Down if it was Established, and schedules the next attempt.
    fn fail(&mut self, now: Instant, side: Side, notification: Option<Notification>, reason: &str) {
        let Some(conn) = self.slot(side).as_ref() else {
            return;
        };
        let was = conn.state.clone();
        // Only a deliberate end (a NOTIFICATION received, or sent for
        // anything but a silent peer) drops the peer's routes at once.
        let deliberate =
            reason.starts_with("Received:") || notification.as_ref().is_some_and(|n| n.code != 4);
        self.drop_conn(now, side, notification);
        self.last_error = Some(reason.to_string());
        if let ConnState::Established(neg) = &was {
            // RFC 4724 (and RFC 8538 for the hold timer): a session lost
            // this way leaves the peer's routes in place for its restart time.
            let graceful = neg.graceful_restart_both && !deliberate;
            self.actions.push_back(Action::Down {
                reason: reason.to_string(),
                graceful,
            });
        }
        if self.enabled && self.outgoing.is_none() && self.incoming.is_none() {
            let errored = !matches!(was, ConnState::Connecting);
            let wait = if errored {
                self.error_wait
            } else {
                self.cfg.connect_retry
            };
            if errored {
                self.error_wait = (self.error_wait * 2).min(self.cfg.error_wait_max);
            }
            if !self.cfg.passive {
                self.connect_at = Some(now + wait);
            }
        }
        self.refresh_state(now);
    }

    fn drop_conn(&mut self, now: Instant, side: Side, notification: Option<Notification>) {
        let Some(conn) = self.slot(side).take() else {
            return;
        };
        if let Some(n) = notification {
            if !matches!(conn.state, ConnState::Connecting) {
                let mut bytes = Vec::new();
                conn.codec().encode(&Message::Notification(n), &mut bytes);
                self.stats.messages_sent += 1;
                self.actions.push_back(Action::Send(side, bytes));
            }
        }
        self.actions.push_back(Action::Close(side));
        self.refresh_state(now);
    }

    fn reject_incoming(&mut self) {
        let n = Notification::new(CEASE, CEASE_CONNECTION_REJECTED, vec![]);
        let mut bytes = Vec::new();
        Codec::default().encode(&Message::Notification(n), &mut bytes);
        self.actions.push_back(Action::Send(Side::Incoming, bytes));
        self.actions.push_back(Action::Close(Side::Incoming));
    }

    fn send(&mut self, now: Instant, side: Side, msg: &Message) {
        let Some(conn) = self.slot(side).as_mut() else {
            return;
        };
        let mut bytes = Vec::new();
        conn.codec().encode(msg, &mut bytes);
        if let Some(neg) = conn.negotiated() {
            let ka = neg.keepalive;
            conn.keepalive_deadline = (!ka.is_zero()).then(|| now + ka);
        }
        self.stats.messages_sent += 1;
        self.actions.push_back(Action::Send(side, bytes));
    }

    fn slot(&mut self, side: Side) -> &mut Option<Conn> {
        match side {
            Side::Outgoing => &mut self.outgoing,
            Side::Incoming => &mut self.incoming,
        }
    }

    fn established_conn(&self) -> Option<&Conn> {
        [&self.outgoing, &self.incoming]
            .into_iter()
            .flatten()
            .find(|c| matches!(c.state, ConnState::Established(_)))
    }

    fn established_side(&self) -> Option<Side> {
        self.established_conn().map(|c| c.side)
    }

    /// The session's state is its most advanced connection's.
    fn refresh_state(&mut self, now: Instant) {
        let best = [&self.outgoing, &self.incoming]
            .into_iter()
            .flatten()
            .map(|c| c.public_state())
            .max();
        let state = match best {
            Some(s) => s,
            None if self.enabled => State::Active,
            None => State::Idle,
        };
        self.set_state(now, state);
    }

    fn set_state(&mut self, now: Instant, state: State) {
        if state != self.state {
            self.state = state;
            self.since = now;
        }
    }
}

fn message_name(m: &Message) -> &'static str {
    match m {
        Message::Open(_) => "OPEN",
        Message::Update(_) => "UPDATE",
        Message::Notification(_) => "NOTIFICATION",
        Message::Keepalive => "KEEPALIVE",
        Message::RouteRefresh { .. } => "ROUTE-REFRESH",
    }
}

#[cfg(test)]
mod tests;
