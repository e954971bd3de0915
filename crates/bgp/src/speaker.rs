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
    Action, Negotiated, Session, SessionConfig, Side, CEASE_ADMIN_RESET, CEASE_PEER_DECONFIGURED,
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
    /// Our addresses given as next hop to this peer.
    pub local_v4: Option<Ipv4Addr>,
    pub local_v6: Option<Ipv6Addr>,
    /// Bind outgoing connections to this address.
    pub source_address: Option<IpAddr>,
    /// TCP MD5 signature key (RFC 2385).
    pub password: Option<String>,
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

pub struct Speaker {
    rib: Rib,
    policy: Box<dyn ExportPolicy + Send>,
    peers: Map<PeerId, Peer>,
    by_name: BTreeMap<String, PeerId>,
    next_id: u32,
    outputs: VecDeque<Output>,
    /// Each peer's next timer (its session's or its stale routes'), and
    /// the same in time order: with a thousand peers, finding the next
    /// timer or the due ones must not visit every peer on every event.
    deadlines: Map<PeerId, Instant>,
    timers: BTreeSet<(Instant, PeerId)>,
    /// Peers owed End-of-RIB markers at the next commit.
    eor_pending: Vec<PeerId>,
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
            deadlines: Map::default(),
            timers: BTreeSet::new(),
            eor_pending: Vec::new(),
        }
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
            let id = PeerId(self.next_id);
            self.next_id += 1;
            let mut session = Session::new(cfg.session.clone(), now);
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
        self.timers.first().map(|(t, _)| *t)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
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
            for f in std::mem::take(&mut p.eor_due) {
                p.session.send_update(
                    now,
                    &Update {
                        end_of_rib: Some(f),
                        ..Default::default()
                    },
                );
            }
            self.drain(now, id);
        }
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
            // End-of-RIB, but not for ever.
            p.stale_deadline = Some(now + STALE_AFTER_REESTABLISH);
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
        families: neg.map_or_else(Vec::new, |n| n.families.clone()),
        add_path_tx: neg.map_or_else(Vec::new, |n| n.codec.add_path_tx.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, last: u8, delay: u64) -> PeerConfig {
        let mut s = SessionConfig::new(64512, 64512, Ipv4Addr::new(10, 0, 0, 1));
        s.connect_delay = Duration::from_secs(delay);
        PeerConfig {
            name: name.into(),
            address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)),
            port: 179,
            session: s,
            rr_client: false,
            keep_next_hop: false,
            local_v4: Some(Ipv4Addr::new(10, 0, 0, 1)),
            local_v6: None,
            source_address: None,
            password: None,
        }
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
        s.set_peers(t0, vec![peer("a", 2, 1), peer("b", 3, 5)]);
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
        s.set_peers(t0, vec![peer("a", 2, 1)]);
        s.handle_timeout(retry);
        assert_eq!(connects(&mut s), vec![a], "a retries");
        assert_eq!(s.timers.len(), 1);
        assert_eq!(s.deadlines.len(), 1);
    }
}
