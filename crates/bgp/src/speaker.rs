//! The whole speaker, sans IO: the configured peers' sessions around one
//! RIB. The driver feeds it socket events and the clock, calls `commit`
//! after each batch of events (so a burst of UPDATEs becomes one round of
//! best-path work and one batch of kernel changes), and carries out its
//! outputs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::rib::{BestChange, ExportAll, ExportPolicy, Map, PeerId, PeerInfo, Rib};
use crate::session::{
    Action, Negotiated, Session, SessionConfig, Side, State, CEASE_ADMIN_RESET,
    CEASE_PEER_DECONFIGURED,
};
use crate::wire::{Family, PathAttributes, Update};

/// One configured peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// BIRD-style protocol name (`Mesh_10_0_0_2`), unique per speaker.
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub session: SessionConfig,
    pub rr_client: bool,
    pub keep_next_hop: bool,
    /// Next hop self on everything sent to this peer, reflected iBGP routes
    /// included (BGPPeer `nextHopMode: Self`, BIRD's `next hop self`).
    pub next_hop_self: bool,
    /// Our addresses given as next hop to this peer.
    pub local_v4: Option<Ipv4Addr>,
    pub local_v6: Option<Ipv6Addr>,
    /// Bind outgoing connections to this address.
    pub source_address: Option<IpAddr>,
    /// TCP MD5 signature key (RFC 2385).
    pub password: Option<String>,
    /// Accept routes carrying our own AS up to this many times.
    pub allow_local_as: u32,
    /// GTSM (RFC 5082, BGPPeer `ttlSecurity`): the peer is at most this
    /// many hops away; we send with TTL 255 and drop segments that arrive
    /// with less than 256 - hops, as BIRD's `ttl security on` with
    /// `multihop hops`.
    pub ttl_security: Option<u8>,
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Open a TCP connection to the peer (from `PeerConfig`).
    Connect(PeerId),
    Send(PeerId, Side, Vec<u8>),
    Close(PeerId, Side),
    /// Prefixes whose best path changed (one commit's worth): program the
    /// kernel.
    Routes(Vec<BestChange>),
    /// The peer set changed: e.g. listening sockets' MD5 keys.
    PeersChanged,
}

struct Peer {
    cfg: PeerConfig,
    session: Session,
    /// End-of-RIB still to be sent after the initial table.
    eor_due: Vec<Family>,
    /// Stale routes (after a graceful down) go at this time.
    stale_deadline: Option<Instant>,
    /// Restart time the peer asked for, from its last OPEN.
    peer_restart_time: Option<Duration>,
    /// Families the peer sent End-of-RIB for since it was last Established.
    eor_received: Vec<Family>,
}

/// Wait for End-of-RIB after a graceful peer comes back before giving up
/// on its stale routes.
const STALE_AFTER_REESTABLISH: Duration = Duration::from_secs(120);

/// RFC 4724 §4.1's Selection_Deferral_Timer: how long a restarting speaker
/// holds its End-of-RIB back waiting for its peers' tables.
const SELECTION_DEFERRAL: Duration = Duration::from_secs(120);

/// How this process started: sets the graceful-restart flags of the first
/// OPEN to each peer (RFC 4724 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Nothing we announced in an earlier life is still forwarded (the
    /// host booted): Forwarding State clear, so helpers drop it at once.
    Cold,
    /// The speaker restarted while the kernel kept forwarding: Restart
    /// State and Forwarding State set, End-of-RIB deferred (§4.1).
    Warm,
}

pub struct Speaker {
    rib: Rib,
    policy: Box<dyn ExportPolicy + Send>,
    peers: Map<PeerId, Peer>,
    by_name: BTreeMap<String, PeerId>,
    next_id: u32,
    outputs: VecDeque<Output>,
    /// While we restart (peers configured with `restarting`): until when
    /// End-of-RIB may be held back.
    deferral: Option<Instant>,
    /// The deferral time ran out; it is not started again.
    deferral_over: bool,
    /// Each peer's next timer (its session's or its stale routes'), and
    /// the same in time order: with a thousand peers, finding the next
    /// timer or the due ones must not visit every peer on every event.
    deadlines: Map<PeerId, Instant>,
    timers: BTreeSet<(Instant, PeerId)>,
    /// Peers owed End-of-RIB markers at the next commit.
    eor_pending: Vec<PeerId>,
    start: Start,
    /// Peers configured before this time are part of the start (set at
    /// the first `set_peers`); later ones meet a running speaker.
    startup_ends: Option<Instant>,
}

impl Speaker {
    pub fn new(router_id: Ipv4Addr, local_as: u32, cluster_id: Option<Ipv4Addr>) -> Speaker {
        Speaker {
            rib: Rib::new(router_id, local_as, cluster_id),
            policy: Box::new(ExportAll),
            peers: Map::default(),
            by_name: BTreeMap::new(),
            next_id: 1,
            outputs: VecDeque::new(),
            deferral: None,
            deferral_over: false,
            deadlines: Map::default(),
            timers: BTreeSet::new(),
            eor_pending: Vec::new(),
            start: Start::Cold,
            startup_ends: None,
        }
    }

    /// Says how this process started; call before the first `set_peers`.
    pub fn set_start(&mut self, start: Start) {
        self.start = start;
    }

    /// The session settings a new peer starts with: its own, plus the
    /// restart flags of this start while the start lasts.
    fn starting_session(&mut self, now: Instant, cfg: &SessionConfig) -> SessionConfig {
        let ends = *self.startup_ends.get_or_insert(now + SELECTION_DEFERRAL);
        let mut session = cfg.clone();
        if now >= ends || self.deferral_over {
            session.forwarding_preserved = true;
        } else if self.start == Start::Warm {
            session.restarting = true;
        }
        session
    }

    pub fn rib(&self) -> &Rib {
        &self.rib
    }

    pub fn set_identity(
        &mut self,
        router_id: Ipv4Addr,
        local_as: u32,
        cluster_id: Option<Ipv4Addr>,
    ) {
        self.rib.set_identity(router_id, local_as, cluster_id);
    }

    /// Replaces the import/export policy; exports are re-evaluated at the
    /// next commit (routes already accepted stay until refreshed).
    pub fn set_policy(&mut self, policy: Box<dyn ExportPolicy + Send>) {
        self.policy = policy;
        self.rib.reexport_all();
    }

    /// Asks every established peer that can for its routes again
    /// (ROUTE-REFRESH): needed after the import policy changed, since
    /// routes it refused were not kept.
    pub fn refresh_imports(&mut self, now: Instant) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            let p = self.peers.get_mut(&id).expect("listed");
            let Some(neg) = p.session.negotiated().filter(|n| n.route_refresh) else {
                continue;
            };
            for f in neg.families.clone() {
                p.session.request_refresh(now, f);
            }
            self.drain(now, id);
        }
    }

    pub fn peer_config(&self, id: PeerId) -> Option<&PeerConfig> {
        self.peers.get(&id).map(|p| &p.cfg)
    }

    pub fn session(&self, id: PeerId) -> Option<&Session> {
        self.peers.get(&id).map(|p| &p.session)
    }

    /// Peers by name, in name order.
    pub fn peers(&self) -> impl Iterator<Item = (PeerId, &PeerConfig, &Session)> {
        self.by_name.values().map(|id| {
            let p = &self.peers[id];
            (*id, &p.cfg, &p.session)
        })
    }

    /// Established, and the peer has sent its whole table (End-of-RIB for
    /// every family).
    pub fn synced(&self, id: PeerId) -> bool {
        self.peers.get(&id).is_some_and(|p| {
            p.session
                .negotiated()
                .is_some_and(|n| n.families.iter().all(|f| p.eor_received.contains(f)))
        })
    }

    /// The peer that a connection from `addr` belongs to.
    pub fn peer_by_address(&self, addr: IpAddr) -> Option<PeerId> {
        self.peers
            .iter()
            .find(|(_, p)| p.cfg.address == addr)
            .map(|(id, _)| *id)
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        let out = self.outputs.pop_front();
        if out.is_none() && self.outputs.capacity() > 4096 {
            // A table's worth of changes went through: give the room back.
            self.outputs = VecDeque::new();
        }
        out
    }

    /// Makes the configured peers exactly `wanted`: new ones start, gone
    /// ones stop, changed ones restart; the others are left alone.
    pub fn set_peers(&mut self, now: Instant, wanted: Vec<PeerConfig>) {
        let wanted: BTreeMap<String, PeerConfig> =
            wanted.into_iter().map(|p| (p.name.clone(), p)).collect();
        let gone: Vec<String> = self
            .by_name
            .keys()
            .filter(|n| {
                wanted
                    .get(*n)
                    .is_none_or(|w| *w != self.peers[&self.by_name[*n]].cfg)
            })
            .cloned()
            .collect();
        let changed = !gone.is_empty() || wanted.keys().any(|n| !self.by_name.contains_key(n));
        for name in gone {
            let id = self.by_name.remove(&name).expect("listed above");
            let mut peer = self.peers.remove(&id).expect("indexed");
            let subcode = if wanted.contains_key(&name) {
                CEASE_ADMIN_RESET
            } else {
                CEASE_PEER_DECONFIGURED
            };
            peer.session.stop(now, subcode);
            while let Some(a) = peer.session.poll_action() {
                if let Action::Send(side, bytes) = a {
                    self.outputs.push_back(Output::Send(id, side, bytes));
                } else if let Action::Close(side) = a {
                    self.outputs.push_back(Output::Close(id, side));
                }
            }
            self.rib.remove_peer(id);
            self.reschedule(id);
        }
        for (name, cfg) in wanted {
            if self.by_name.contains_key(&name) {
                continue;
            }
            let session_cfg = self.starting_session(now, &cfg.session);
            if session_cfg.restarting && !self.deferral_over {
                self.deferral.get_or_insert(now + SELECTION_DEFERRAL);
            }
            let id = PeerId(self.next_id);
            self.next_id += 1;
            let mut session = Session::new(session_cfg, now);
            session.start(now);
            self.rib.set_peer(id, peer_info(&cfg, None));
            self.by_name.insert(name, id);
            self.peers.insert(
                id,
                Peer {
                    cfg,
                    session,
                    eor_due: Vec::new(),
                    stale_deadline: None,
                    peer_restart_time: None,
                    eor_received: Vec::new(),
                },
            );
            self.drain(now, id);
        }
        if changed {
            self.outputs.push_back(Output::PeersChanged);
        }
    }

    /// This node's own routes (blocks, workloads, floating IPs).
    pub fn set_local_routes(&mut self, now: Instant, routes: &[(IpNet, PathAttributes)]) {
        self.rib.set_local(routes, now);
    }

    pub fn connected(&mut self, now: Instant, id: PeerId, side: Side) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.session.connected(now, side);
            self.drain(now, id);
        }
    }

    pub fn received(&mut self, now: Instant, id: PeerId, side: Side, bytes: &[u8]) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.session.received(now, side, bytes);
            self.drain(now, id);
        }
    }

    pub fn closed(&mut self, now: Instant, id: PeerId, side: Side, reason: &str) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.session.closed(now, side, reason);
            self.drain(now, id);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let next = self.timers.first().map(|(t, _)| *t);
        [next, self.deferral].into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deferral.is_some_and(|t| t <= now) {
            // Held End-of-RIBs go at the next commit.
            self.deferral = None;
            self.deferral_over = true;
        }
        let due: Vec<PeerId> = self
            .timers
            .range(..=(now, PeerId(u32::MAX)))
            .map(|(_, id)| *id)
            .collect();
        for id in due {
            let Some(p) = self.peers.get_mut(&id) else {
                self.reschedule(id);
                continue;
            };
            if p.session.poll_timeout().is_some_and(|t| t <= now) {
                p.session.handle_timeout(now);
            }
            if p.stale_deadline.is_some_and(|t| t <= now) {
                p.stale_deadline = None;
                self.rib.flush_stale(id, None);
            }
            self.drain(now, id);
        }
    }

    /// Works out best paths and exports for everything that changed since
    /// the last commit, and queues the UPDATEs and kernel changes.
    pub fn commit(&mut self, now: Instant) {
        let (changes, updates) = self.rib.commit(self.policy.as_ref());
        if !changes.is_empty() {
            self.outputs.push_back(Output::Routes(changes));
        }
        // Only the peers sent something have anything to carry out.
        let mut touched = std::mem::take(&mut self.eor_pending);
        for (id, msgs) in updates {
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            for u in &msgs {
                p.session.send_update(now, u);
            }
            touched.push(id);
        }
        touched.sort_unstable();
        touched.dedup();
        for id in touched {
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            let due = std::mem::take(&mut p.eor_due);
            let (held, due): (Vec<Family>, Vec<Family>) =
                due.into_iter().partition(|f| self.eor_held(id, *f));
            if !held.is_empty() {
                // Looked at again at each commit until it may go.
                self.eor_pending.push(id);
            }
            let p = self.peers.get_mut(&id).expect("looked up above");
            p.eor_due = held;
            for f in due {
                p.session.send_update(
                    now,
                    &Update {
                        end_of_rib: Some(f),
                        ..Default::default()
                    },
                );
            }
            if p.eor_due.is_empty() && p.session.state() == State::Established {
                // Our restart is over for this peer: should the session
                // drop, we come back still forwarding, not restarting.
                p.session.set_restart_flags(false, true);
            }
            self.drain(now, id);
        }
    }

    /// RFC 4724 §4.1: while we restart, End-of-RIB for `family` waits
    /// until every other graceful peer of that family has sent us its own
    /// (or the deferral time is up). A peer takes our End-of-RIB to mean
    /// that what it still has from us and we did not send again is gone;
    /// sent early, a route reflector's clients would drop the routes it
    /// has not yet learned back from the other clients.
    fn eor_held(&self, id: PeerId, family: Family) -> bool {
        if self.deferral.is_none() || !self.peers[&id].session.config().restarting {
            return false;
        }
        self.peers.iter().any(|(other, q)| {
            let graceful = q.cfg.session.graceful_restart.is_some();
            if *other == id || !graceful || !q.cfg.session.families.contains(&family) {
                return false;
            }
            match q.session.negotiated() {
                // Not back yet: wait for it, until the deferral time is up.
                None => true,
                // Peers restarting too, or without graceful restart, are
                // not waited for; the others until their End-of-RIB.
                Some(n) => {
                    n.graceful_restart.as_ref().is_some_and(|g| !g.restarting)
                        && n.families.contains(&family)
                        && !q.eor_received.contains(&family)
                }
            }
        })
    }

    /// Carries out what a session asked for, then files its next timer.
    fn drain(&mut self, now: Instant, id: PeerId) {
        self.carry_out(now, id);
        self.reschedule(id);
    }

    fn reschedule(&mut self, id: PeerId) {
        let next = self.peers.get(&id).and_then(|p| {
            [p.session.poll_timeout(), p.stale_deadline]
                .into_iter()
                .flatten()
                .min()
        });
        if self.deadlines.get(&id) == next.as_ref() {
            return;
        }
        if let Some(old) = self.deadlines.remove(&id) {
            self.timers.remove(&(old, id));
        }
        if let Some(t) = next {
            self.deadlines.insert(id, t);
            self.timers.insert((t, id));
        }
    }

    fn carry_out(&mut self, now: Instant, id: PeerId) {
        loop {
            let Some(p) = self.peers.get_mut(&id) else {
                return;
            };
            let Some(action) = p.session.poll_action() else {
                return;
            };
            match action {
                Action::Connect => self.outputs.push_back(Output::Connect(id)),
                Action::Send(side, bytes) => self.outputs.push_back(Output::Send(id, side, bytes)),
                Action::Close(side) => self.outputs.push_back(Output::Close(id, side)),
                Action::Established(neg) => self.on_established(now, id, &neg),
                Action::Update(u) => {
                    self.rib.apply_update(id, &u, now, self.policy.as_ref());
                    if let Some(f) = u.end_of_rib {
                        self.rib.flush_stale(id, Some(f));
                        if let Some(p) = self.peers.get_mut(&id) {
                            p.eor_received.push(f);
                        }
                    }
                }
                Action::RouteRefresh(_) => self.rib.refresh(id),
                Action::Down { graceful, .. } => {
                    let p = self.peers.get_mut(&id).expect("checked");
                    p.eor_due.clear();
                    let keep =
                        graceful.then(|| p.peer_restart_time.unwrap_or(STALE_AFTER_REESTABLISH));
                    p.stale_deadline = keep.map(|t| now + t);
                    self.rib.peer_down(id, keep.is_some());
                }
            }
        }
    }

    fn on_established(&mut self, now: Instant, id: PeerId, neg: &Negotiated) {
        let p = self.peers.get_mut(&id).expect("called for a known peer");
        p.peer_restart_time = neg.graceful_restart.as_ref().map(|g| g.restart_time);
        p.eor_due = neg.families.clone();
        self.eor_pending.push(id);
        p.eor_received.clear();
        if p.stale_deadline.is_some() {
            // Back after a graceful restart: its stale routes wait for its
            // End-of-RIB, but not for ever; those of families it did not
            // keep forwarding go now (RFC 4724 §4.2).
            p.stale_deadline = Some(now + STALE_AFTER_REESTABLISH);
            let kept = neg.graceful_restart.as_ref().map(|g| &g.forwarding);
            for f in &p.cfg.session.families {
                if kept.is_none_or(|k| !k.contains(f)) {
                    self.rib.flush_stale(id, Some(*f));
                }
            }
        }
        self.rib.set_peer(id, peer_info(&p.cfg, Some(neg)));
        self.rib.peer_up(id);
    }
}

fn peer_info(cfg: &PeerConfig, neg: Option<&Negotiated>) -> PeerInfo {
    PeerInfo {
        address: cfg.address,
        router_id: neg.map_or(Ipv4Addr::UNSPECIFIED, |n| n.peer_id),
        local_as: cfg.session.local_as,
        peer_as: cfg.session.peer_as,
        rr_client: cfg.rr_client,
        local_v4: cfg.local_v4,
        local_v6: cfg.local_v6,
        keep_next_hop: cfg.keep_next_hop,
        next_hop_self: cfg.next_hop_self,
        allow_local_as: cfg.allow_local_as,
        families: neg.map_or_else(Vec::new, |n| n.families.clone()),
        add_path_tx: neg.map_or_else(Vec::new, |n| n.codec.add_path_tx.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, addr: &str, peer_as: u32) -> PeerConfig {
        PeerConfig {
            name: name.into(),
            address: addr.parse().unwrap(),
            port: 179,
            session: SessionConfig::new(64512, peer_as, Ipv4Addr::new(10, 0, 0, 1)),
            rr_client: false,
            keep_next_hop: false,
            next_hop_self: false,
            local_v4: Some(Ipv4Addr::new(10, 0, 0, 1)),
            local_v6: None,
            source_address: None,
            password: None,
            allow_local_as: 0,
            ttl_security: None,
        }
    }

    fn ids(s: &Speaker) -> Vec<(String, PeerId)> {
        s.peers().map(|(id, c, _)| (c.name.clone(), id)).collect()
    }

    #[test]
    fn peering_changes_leave_unrelated_sessions_alone() {
        let now = Instant::now();
        let mut s = Speaker::new(Ipv4Addr::new(10, 0, 0, 1), 64512, None);
        s.set_peers(
            now,
            vec![
                peer("Mesh_10_0_0_2", "10.0.0.2", 64512),
                peer("Mesh_10_0_0_3", "10.0.0.3", 64512),
            ],
        );
        let before = ids(&s);
        let a = before[0].1;
        s.connected(now, a, Side::Outgoing);
        while s.poll_output().is_some() {}
        let a_state = s.session(a).unwrap().state();
        // 10.0.0.3 goes, 10.0.0.4 comes, 10.0.0.2 is untouched.
        s.set_peers(
            now,
            vec![
                peer("Mesh_10_0_0_2", "10.0.0.2", 64512),
                peer("Mesh_10_0_0_4", "10.0.0.4", 64512),
            ],
        );
        let after = ids(&s);
        assert_eq!(after[0], before[0], "same peer, same session");
        assert_eq!(s.session(a).unwrap().state(), a_state);
        assert_eq!(after[1].0, "Mesh_10_0_0_4");
        let outs: Vec<Output> = std::iter::from_fn(|| s.poll_output()).collect();
        assert!(
            !outs
                .iter()
                .any(|o| matches!(o, Output::Close(id, _) | Output::Send(id, _, _) if *id == a)),
            "{outs:?}"
        );
        // A changed setting (the peer's AS) restarts only that session.
        s.set_peers(
            now,
            vec![
                peer("Mesh_10_0_0_2", "10.0.0.2", 65000),
                peer("Mesh_10_0_0_4", "10.0.0.4", 64512),
            ],
        );
        let again = ids(&s);
        assert_ne!(again[0].1, a, "reconfigured: a new session");
        assert_eq!(again[1], after[1], "the other one kept");
    }
    use crate::wire::{Codec, Message};

    fn peer_cfg(last: u8, restarting: bool) -> PeerConfig {
        let mut session = SessionConfig::new(64512, 64512, Ipv4Addr::new(10, 0, 0, 1));
        session.restarting = restarting;
        PeerConfig {
            name: format!("Node_10_0_0_{last}"),
            address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
            port: 179,
            session,
            rr_client: true,
            keep_next_hop: false,
            next_hop_self: false,
            local_v4: Some(Ipv4Addr::new(10, 0, 0, 1)),
            local_v6: None,
            source_address: None,
            password: None,
            allow_local_as: 0,
            ttl_security: None,
        }
    }

    fn bytes(msgs: &[Message]) -> Vec<u8> {
        let codec = Codec {
            four_octet_as: true,
            ..Codec::default()
        };
        let mut out = Vec::new();
        msgs.iter().for_each(|m| codec.encode(m, &mut out));
        out
    }

    /// The peers that were sent an IPv4 End-of-RIB since the last call.
    fn eor_sent(s: &mut Speaker) -> Vec<IpAddr> {
        let codec = Codec {
            four_octet_as: true,
            ..Codec::default()
        };
        let mut to = Vec::new();
        while let Some(out) = s.poll_output() {
            let Output::Send(id, _, mut b) = out else {
                continue;
            };
            while let Ok(Some((m, used))) = codec.decode(&b) {
                b.drain(..used);
                if let Message::Update(u) = m {
                    if u.end_of_rib == Some(Family::Ipv4Unicast) {
                        to.push(s.peer_config(id).unwrap().address);
                    }
                }
            }
        }
        to
    }

    /// The peer at 10.0.0.`last` connects and the session comes up; it
    /// offers graceful restart, without the Restart State bit.
    fn up(s: &mut Speaker, now: Instant, last: u8) -> PeerId {
        let id = s
            .peer_by_address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)))
            .unwrap();
        s.connected(now, id, Side::Incoming);
        let mut theirs = SessionConfig::new(64512, 64512, Ipv4Addr::new(10, 0, 0, last));
        theirs.add_path = None;
        let open = Message::Open(theirs.open());
        s.received(now, id, Side::Incoming, &bytes(&[open, Message::Keepalive]));
        assert_eq!(
            s.session(id).unwrap().state(),
            crate::session::State::Established
        );
        id
    }

    fn eor_from(s: &mut Speaker, now: Instant, id: PeerId) {
        let eor = Message::Update(Update::end_of_rib(Family::Ipv4Unicast));
        s.received(now, id, Side::Incoming, &bytes(&[eor]));
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn a_restarting_speaker_holds_end_of_rib_until_its_peers_sent_theirs() {
        let now = Instant::now();
        let mut s = Speaker::new(
            Ipv4Addr::new(10, 0, 0, 1),
            64512,
            Some(Ipv4Addr::new(10, 0, 0, 1)),
        );
        s.set_peers(now, vec![peer_cfg(2, true), peer_cfg(3, true)]);
        let a = up(&mut s, now, 2);
        s.commit(now);
        assert_eq!(
            eor_sent(&mut s),
            Vec::<IpAddr>::new(),
            "10.0.0.3 is not back yet"
        );
        let b = up(&mut s, now, 3);
        s.commit(now);
        assert_eq!(
            eor_sent(&mut s),
            Vec::<IpAddr>::new(),
            "neither has sent its table"
        );
        eor_from(&mut s, now, a);
        s.commit(now);
        assert_eq!(eor_sent(&mut s), vec![ip(3)], "10.0.0.2's table is in");
        eor_from(&mut s, now, b);
        s.commit(now);
        assert_eq!(eor_sent(&mut s), vec![ip(2)]);
    }

    /// The Restart State and Forwarding State bits of the OPEN the
    /// speaker would send the peer at 10.0.0.`last` now.
    fn restart_bits(s: &Speaker, last: u8) -> (bool, bool) {
        let id = s.peer_by_address(ip(last)).unwrap();
        let open = s.session(id).unwrap().config().open();
        match open.graceful_restart() {
            Some(crate::wire::Capability::GracefulRestart {
                restarting,
                families,
                ..
            }) => (*restarting, families.iter().all(|(_, _, f)| *f)),
            other => panic!("no graceful restart capability: {other:?}"),
        }
    }

    #[test]
    fn restart_bits_follow_how_the_speaker_started_and_clear_after_its_end_of_rib() {
        let now = Instant::now();
        for (start, first) in [(Start::Warm, (true, true)), (Start::Cold, (false, false))] {
            let mut s = Speaker::new(Ipv4Addr::new(10, 0, 0, 1), 64512, None);
            s.set_start(start);
            s.set_peers(now, vec![peer_cfg(2, false)]);
            assert_eq!(restart_bits(&s, 2), first, "{start:?}: first OPEN");
            let a = up(&mut s, now, 2);
            eor_from(&mut s, now, a);
            s.commit(now);
            assert_eq!(eor_sent(&mut s), vec![ip(2)]);
            assert_eq!(restart_bits(&s, 2), (false, true), "{start:?}: start over");
            // A peer configured long after the start meets a running speaker.
            let later = now + SELECTION_DEFERRAL;
            s.set_peers(later, vec![peer_cfg(2, false), peer_cfg(3, false)]);
            assert_eq!(restart_bits(&s, 3), (false, true), "{start:?}: new peer");
        }
    }

    /// The peer at 10.0.0.`last` announces `prefix`, then its session
    /// drops (gracefully: both sides offered graceful restart).
    fn announce_then_drop(s: &mut Speaker, now: Instant, last: u8, prefix: &str) -> PeerId {
        let id = up(s, now, last);
        let update = Update {
            announced: vec![crate::wire::Nlri::new(prefix.parse().unwrap(), None)],
            attrs: PathAttributes {
                next_hop: Some(Ipv4Addr::new(10, 0, 0, last)),
                local_pref: Some(100),
                ..Default::default()
            },
            ..Default::default()
        };
        s.received(now, id, Side::Incoming, &bytes(&[Message::Update(update)]));
        s.commit(now);
        s.closed(now, id, Side::Incoming, "Connection reset");
        s.commit(now);
        assert!(s
            .rib()
            .best(&prefix.parse().unwrap())
            .is_some_and(|p| p.stale));
        id
    }

    #[test]
    fn stale_routes_go_at_once_when_the_peer_comes_back_without_forwarding_state() {
        let now = Instant::now();
        let prefix: IpNet = "10.65.2.0/26".parse().unwrap();
        for forwarding in [true, false] {
            let mut s = Speaker::new(Ipv4Addr::new(10, 0, 0, 1), 64512, None);
            s.set_peers(now, vec![peer_cfg(2, false)]);
            let id = announce_then_drop(&mut s, now, 2, "10.65.2.0/26");
            s.connected(now, id, Side::Incoming);
            let mut theirs = SessionConfig::new(64512, 64512, Ipv4Addr::new(10, 0, 0, 2));
            theirs.add_path = None;
            theirs.restarting = forwarding;
            let open = Message::Open(theirs.open());
            s.received(now, id, Side::Incoming, &bytes(&[open, Message::Keepalive]));
            s.commit(now);
            let kept = s.rib().best(&prefix).is_some();
            assert_eq!(kept, forwarding, "Forwarding State bit {forwarding}");
        }
    }

    #[test]
    fn the_deferral_ends_with_its_timer_and_only_a_restarting_speaker_defers() {
        let now = Instant::now();
        let mut s = Speaker::new(Ipv4Addr::new(10, 0, 0, 1), 64512, None);
        s.set_peers(now, vec![peer_cfg(2, true), peer_cfg(3, true)]);
        up(&mut s, now, 2);
        s.commit(now);
        assert_eq!(eor_sent(&mut s), Vec::<IpAddr>::new());
        let later = now + SELECTION_DEFERRAL;
        assert!(s.poll_timeout().is_some_and(|t| t <= later));
        s.handle_timeout(later);
        s.commit(later);
        assert_eq!(eor_sent(&mut s), vec![ip(2)], "10.0.0.3 never came");
        assert!(s.poll_timeout().is_none_or(|t| t > later), "no busy loop");

        // Not restarting: End-of-RIB follows the table at once.
        let mut s = Speaker::new(Ipv4Addr::new(10, 0, 0, 1), 64512, None);
        s.set_peers(now, vec![peer_cfg(2, false), peer_cfg(3, false)]);
        up(&mut s, now, 2);
        s.commit(now);
        assert_eq!(eor_sent(&mut s), vec![ip(2)]);
    }

    fn peer_delayed(name: &str, last: u8, delay: u64) -> PeerConfig {
        let mut p = peer(name, &format!("10.0.0.{last}"), 64512);
        p.session.connect_delay = Duration::from_secs(delay);
        p
    }

    fn connects(s: &mut Speaker) -> Vec<PeerId> {
        std::iter::from_fn(|| s.poll_output())
            .filter_map(|o| match o {
                Output::Connect(id) => Some(id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn timers_are_filed_per_peer_and_only_due_ones_run() {
        let t0 = Instant::now();
        let mut s = Speaker::new(Ipv4Addr::new(10, 0, 0, 1), 64512, None);
        s.set_peers(t0, vec![peer_delayed("a", 2, 1), peer_delayed("b", 3, 5)]);
        assert!(connects(&mut s).is_empty());
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        // Nothing is due yet.
        s.handle_timeout(t0 + Duration::from_millis(500));
        assert!(connects(&mut s).is_empty());
        s.handle_timeout(t0 + Duration::from_secs(1));
        let a = s.by_name["a"];
        assert_eq!(connects(&mut s), vec![a]);
        // The attempt is refused: a waits its connect retry (3 s), b its
        // delay (5 s).
        let refused = t0 + Duration::from_millis(1500);
        s.closed(refused, a, Side::Outgoing, "Connection refused");
        let retry = refused + Duration::from_secs(3);
        assert_eq!(s.poll_timeout(), Some(retry));
        // b goes: its timer goes with it.
        s.set_peers(t0, vec![peer_delayed("a", 2, 1)]);
        s.handle_timeout(retry);
        assert_eq!(connects(&mut s), vec![a], "a retries");
        assert_eq!(s.timers.len(), 1);
        assert_eq!(s.deadlines.len(), 1);
    }
}
