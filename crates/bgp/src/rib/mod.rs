//! The routing table: every path to every prefix (from this node and from
//! each peer), the best of them, and what each peer has been sent.
//!
//! Changes go in as local routes, peer UPDATEs and peer-down events; each
//! returns the prefixes whose paths changed. `commit` then works out, for
//! just those prefixes, the new best paths and per-peer exports, so the
//! cost of a change is the prefixes it touches times the peers, never the
//! whole table.

mod best;
mod export;
mod prefixmap;

/// The RIB's maps: prefixes and peer ids hashed fast (SipHash was a tenth
/// of the time spent with a thousand peers), still randomly seeded.
pub type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub type Set<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use ipnet::IpNet;

use crate::wire::{Family, Nlri, PathAttributes, Update};

pub use best::compare;
pub use export::{ExportAll, ExportPolicy, PeerExport};
pub use prefixmap::PrefixMap;

/// Who a path came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// Originated by this node.
    Local,
    Peer(PeerId),
}

/// A peer's index in the RIB, given by the speaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u32);

/// What the RIB needs to know about a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub address: IpAddr,
    pub router_id: Ipv4Addr,
    pub local_as: u32,
    pub peer_as: u32,
    /// We reflect routes to this peer as to a route-reflector client.
    pub rr_client: bool,
    /// Our IPv4/IPv6 address towards this peer (next hop self).
    pub local_v4: Option<Ipv4Addr>,
    pub local_v6: Option<std::net::Ipv6Addr>,
    /// Keep the next hop of routes sent to this eBGP peer.
    pub keep_next_hop: bool,
    /// Next hop self on every route sent to this peer (`nextHopMode: Self`).
    pub next_hop_self: bool,
    /// Routes from this peer may carry our AS this many times
    /// (`numAllowedLocalASNumbers`, BIRD's `allow local as`).
    pub allow_local_as: u32,
    pub families: Vec<Family>,
    /// Send a path id with each prefix (ADD-PATH tx negotiated).
    pub add_path_tx: Vec<Family>,
}

impl PeerInfo {
    pub fn ibgp(&self) -> bool {
        self.local_as == self.peer_as
    }
}

/// One path to a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    pub source: Source,
    /// The path id the peer gave it (0 without ADD-PATH).
    pub path_id: u32,
    pub attrs: Arc<PathAttributes>,
    /// Kept across the peer's graceful restart, not yet refreshed.
    pub stale: bool,
    /// When it was learned or last changed.
    pub since: Since,
    /// The path id this node sends it under to ADD-PATH peers: unique
    /// among the prefix's paths, kept while the path exists.
    pub local_id: u32,
}

/// A time to the second in 4 bytes (a full table holds one per path):
/// seconds since the process first asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Since(u32);

impl Since {
    pub fn at(t: Instant) -> Since {
        let secs = t.saturating_duration_since(since_epoch()).as_secs();
        Since(u32::try_from(secs).unwrap_or(u32::MAX))
    }

    pub fn instant(self) -> Instant {
        since_epoch() + std::time::Duration::from_secs(u64::from(self.0))
    }
}

fn since_epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A prefix's paths. An entry whose last path went stays until the next
/// commit, so the commit still knows what its best path was.
///
/// The best path is kept as an index, not a copy: a path that was best at
/// the last commit and is removed or changed before the next one is moved
/// to `Rib::retired` first, so the commit can still compare against it.
struct Entry {
    paths: Paths,
    /// Index in `paths` of the best path as of the last commit, or `NO_BEST`
    /// (none then, or it has since been retired).
    best: u32,
}

const NO_BEST: u32 = u32::MAX;

impl Default for Entry {
    fn default() -> Self {
        Entry {
            paths: Paths::None,
            best: NO_BEST,
        }
    }
}

impl Entry {
    fn best(&self) -> Option<&Path> {
        self.paths.get(self.best as usize)
    }
}

/// A prefix's paths. Nearly every prefix has one, kept in place: a table
/// of 100,000 prefixes then costs no allocation per prefix.
enum Paths {
    None,
    One(Path),
    Many(Vec<Path>),
}

impl Paths {
    fn push(&mut self, p: Path) {
        *self = match std::mem::replace(self, Paths::None) {
            Paths::None => Paths::One(p),
            Paths::One(a) => Paths::Many(vec![a, p]),
            Paths::Many(mut v) => {
                v.push(p);
                Paths::Many(v)
            }
        }
    }

    fn remove(&mut self, i: usize) -> Path {
        let (rest, p) = match std::mem::replace(self, Paths::None) {
            Paths::None => panic!("no path {i}"),
            Paths::One(a) => {
                assert_eq!(i, 0, "one path");
                (Paths::None, a)
            }
            Paths::Many(mut v) => {
                let p = v.remove(i);
                if v.len() == 1 {
                    (Paths::One(v.pop().expect("one left")), p)
                } else {
                    (Paths::Many(v), p)
                }
            }
        };
        *self = rest;
        p
    }
}

impl std::ops::Deref for Paths {
    type Target = [Path];

    fn deref(&self) -> &[Path] {
        match self {
            Paths::None => &[],
            Paths::One(p) => std::slice::from_ref(p),
            Paths::Many(v) => v,
        }
    }
}

impl std::ops::DerefMut for Paths {
    fn deref_mut(&mut self) -> &mut [Path] {
        match self {
            Paths::None => &mut [],
            Paths::One(p) => std::slice::from_mut(p),
            Paths::Many(v) => v,
        }
    }
}

/// Per-peer path counts, kept as paths come and go (status output asks
/// every second; counting by scanning the table would cost peers × routes).
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    received: usize,
    preferred: usize,
    /// Of `received`, those kept stale across the peer's restart.
    stale: usize,
}

/// A change of a prefix's best path, as the kernel sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BestChange {
    pub prefix: IpNet,
    /// None: no path left.
    pub best: Option<Path>,
}

pub struct Rib {
    router_id: Ipv4Addr,
    cluster_id: Option<Ipv4Addr>,
    local_as: u32,
    entries: PrefixMap<Entry>,
    /// Paths that were best at the last commit and have since been removed
    /// or changed, by prefix.
    retired: Map<IpNet, Path>,
    counts: Map<PeerId, Counts>,
    /// Peers removed since the last commit, whose counts go once it is done.
    removed: Vec<PeerId>,
    peers: Map<PeerId, PeerInfo>,
    /// Prefixes changed since the last commit.
    dirty: Set<IpNet>,
    /// Per established peer: what it was last sent.
    exports: Map<PeerId, PeerExport>,
}

impl Rib {
    pub fn new(router_id: Ipv4Addr, local_as: u32, cluster_id: Option<Ipv4Addr>) -> Rib {
        Rib {
            router_id,
            cluster_id,
            local_as,
            entries: PrefixMap::default(),
            retired: Map::default(),
            counts: Map::default(),
            removed: Vec::new(),
            peers: Map::default(),
            dirty: Set::default(),
            exports: Map::default(),
        }
    }

    pub fn set_identity(
        &mut self,
        router_id: Ipv4Addr,
        local_as: u32,
        cluster_id: Option<Ipv4Addr>,
    ) {
        self.router_id = router_id;
        self.local_as = local_as;
        self.cluster_id = cluster_id;
    }

    pub fn router_id(&self) -> Ipv4Addr {
        self.router_id
    }

    pub fn local_as(&self) -> u32 {
        self.local_as
    }

    pub fn cluster_id(&self) -> Option<Ipv4Addr> {
        self.cluster_id
    }

    pub fn set_peer(&mut self, id: PeerId, info: PeerInfo) {
        self.peers.insert(id, info);
    }

    pub fn peer(&self, id: PeerId) -> Option<&PeerInfo> {
        self.peers.get(&id)
    }

    /// Removes a peer with all its paths (it was de-configured).
    pub fn remove_peer(&mut self, id: PeerId) {
        self.drop_paths(|_, p| p.source == Source::Peer(id));
        self.exports.remove(&id);
        self.peers.remove(&id);
        self.removed.push(id);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The best path as of the last commit.
    pub fn best(&self, prefix: &IpNet) -> Option<&Path> {
        match self.retired.get(prefix) {
            Some(p) => Some(p),
            None => self.entries.get(prefix)?.best(),
        }
    }

    /// Every prefix with its paths, for status output, and whether the
    /// first is the best (false only for a prefix changed since the last
    /// commit whose best is not settled yet).
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, Vec<&Path>, bool)> {
        self.entries
            .iter()
            .filter(|(_, e)| !e.paths.is_empty())
            .map(|(p, e)| {
                let best = e.best();
                let mut v: Vec<&Path> = best.into_iter().collect();
                v.extend(
                    e.paths
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i as u32 != e.best)
                        .map(|(_, p)| p),
                );
                (p, v, best.is_some())
            })
    }

    /// Paths received from one peer (accepted after import checks).
    pub fn received_count(&self, id: PeerId) -> usize {
        self.counts.get(&id).map_or(0, |c| c.received)
    }

    /// Prefixes whose best path (as of the last commit) is from this peer.
    pub fn preferred_count(&self, id: PeerId) -> usize {
        self.counts.get(&id).map_or(0, |c| c.preferred)
    }

    /// What this peer was last sent.
    pub fn exported(&self, id: PeerId) -> Vec<(IpNet, PathAttributes)> {
        self.exports
            .get(&id)
            .map(|e| e.sent().map(|(p, a)| (*p, a.clone())).collect())
            .unwrap_or_default()
    }

    pub fn exported_count(&self, id: PeerId) -> usize {
        self.exports.get(&id).map_or(0, |e| e.len())
    }

    /// Sets this node's own routes to exactly `routes`.
    pub fn set_local(&mut self, routes: &[(IpNet, PathAttributes)], now: Instant) {
        let wanted: Map<IpNet, &PathAttributes> =
            routes.iter().map(|(p, a)| (p.trunc(), a)).collect();
        let stale: Vec<IpNet> = self
            .entries
            .iter()
            .filter(|(p, e)| {
                e.paths.iter().any(|x| x.source == Source::Local) && !wanted.contains_key(p)
            })
            .map(|(p, _)| p)
            .collect();
        for p in stale {
            self.remove_path(p, Source::Local, 0);
        }
        for (prefix, attrs) in wanted {
            let same = self
                .entries
                .get(&prefix)
                .and_then(|e| e.paths.iter().find(|x| x.source == Source::Local))
                .is_some_and(|x| *x.attrs == *attrs);
            if !same {
                self.put_path(prefix, Source::Local, 0, Arc::new(attrs.clone()), now);
            }
        }
    }

    /// Applies an UPDATE from a peer; routes that would loop, or that the
    /// import policy refuses, are handled as withdrawn.
    pub fn apply_update(
        &mut self,
        id: PeerId,
        update: &Update,
        now: Instant,
        policy: &dyn ExportPolicy,
    ) {
        for n in &update.withdrawn {
            self.remove_path(n.prefix, Source::Peer(id), n.path_id.unwrap_or(0));
        }
        if update.announced.is_empty() {
            return;
        }
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let mut attrs = update.attrs.clone();
        if !peer.ibgp() {
            // RFC 4271 §5.1.5: LOCAL_PREF from an external peer is ignored;
            // it must neither win best-path selection nor travel on.
            attrs.local_pref = None;
        }
        if self.loops(peer, &attrs) {
            for n in &update.announced {
                self.remove_path(n.prefix, Source::Peer(id), n.path_id.unwrap_or(0));
            }
            return;
        }
        let refused: Vec<bool> = update
            .announced
            .iter()
            .map(|n| {
                unusable_next_hop(&n.prefix, &attrs) || !policy.import(peer, &n.prefix, &attrs)
            })
            .collect();
        let attrs = Arc::new(attrs);
        for (Nlri { prefix, path_id }, refused) in update.announced.iter().zip(refused) {
            let path_id = path_id.unwrap_or(0);
            if refused {
                self.remove_path(*prefix, Source::Peer(id), path_id);
            } else {
                self.put_path(*prefix, Source::Peer(id), path_id, attrs.clone(), now);
            }
        }
    }

    /// RFC 4456 §8 and RFC 4271 §9.1.2: our own AS, router id or cluster
    /// id on the path means it went round a loop.
    fn loops(&self, peer: &PeerInfo, attrs: &PathAttributes) -> bool {
        if !peer.ibgp() {
            return attrs.count_as(self.local_as) > peer.allow_local_as as usize;
        }
        attrs.originator_id == Some(self.router_id)
            || self
                .cluster_id
                .is_some_and(|c| attrs.cluster_list.contains(&c))
    }

    /// The peer's session ended. Gracefully: its paths stay, marked stale,
    /// until `end_of_rib` or `flush_stale`. Otherwise they go now.
    pub fn peer_down(&mut self, id: PeerId, graceful: bool) {
        self.exports.remove(&id);
        if !graceful {
            self.drop_paths(|_, p| p.source == Source::Peer(id));
            return;
        }
        for (prefix, e) in self.entries.iter_mut() {
            for i in 0..e.paths.len() {
                if e.paths[i].source == Source::Peer(id) && !e.paths[i].stale {
                    retire(&mut self.retired, &prefix, e, i);
                    e.paths[i].stale = true;
                    self.counts.entry(id).or_default().stale += 1;
                    self.dirty.insert(prefix);
                }
            }
        }
    }

    /// The peer finished sending `family` (End-of-RIB), or its restart time
    /// ran out (`family` None: all): its paths still stale are gone.
    pub fn flush_stale(&mut self, id: PeerId, family: Option<Family>) {
        if self.counts.get(&id).is_none_or(|c| c.stale == 0) {
            // The usual End-of-RIB: nothing stale, no need to look.
            return;
        }
        self.drop_paths(|prefix, p| {
            p.source == Source::Peer(id)
                && p.stale
                && family.is_none_or(|f| f == Family::of(prefix))
        });
    }

    /// Starts exporting to a peer whose session is Established; the next
    /// commit sends it the whole table.
    pub fn peer_up(&mut self, id: PeerId) {
        self.exports.insert(id, PeerExport::default());
        let all: Vec<IpNet> = self.entries.keys().collect();
        self.exports
            .get_mut(&id)
            .expect("just inserted")
            .mark_all(all);
    }

    /// The export policy changed: every peer's exports are worked out again
    /// (only differences are sent).
    pub fn reexport_all(&mut self) {
        let all: Vec<IpNet> = self.entries.keys().collect();
        for e in self.exports.values_mut() {
            e.mark_all(all.iter().copied());
        }
    }

    /// Everything again for this peer (ROUTE-REFRESH).
    pub fn refresh(&mut self, id: PeerId) {
        if let Some(e) = self.exports.get_mut(&id) {
            e.forget();
            let all: Vec<IpNet> = self.entries.keys().collect();
            e.mark_all(all);
        }
    }

    fn drop_paths(&mut self, doomed: impl Fn(&IpNet, &Path) -> bool) {
        for (prefix, e) in self.entries.iter_mut() {
            let mut i = 0;
            while i < e.paths.len() {
                if doomed(&prefix, &e.paths[i]) {
                    take_path(&mut self.retired, &mut self.counts, &prefix, e, i);
                    self.dirty.insert(prefix);
                } else {
                    i += 1;
                }
            }
        }
    }

    fn put_path(
        &mut self,
        prefix: IpNet,
        source: Source,
        path_id: u32,
        attrs: Arc<PathAttributes>,
        now: Instant,
    ) {
        let e = self.entries.get_or_default(prefix);
        let since = Since::at(now);
        match e
            .paths
            .iter()
            .position(|p| p.source == source && p.path_id == path_id)
        {
            Some(i) => {
                let old = &e.paths[i];
                let path = Path {
                    source,
                    path_id,
                    since: if old.attrs == attrs { old.since } else { since },
                    attrs,
                    stale: false,
                    local_id: old.local_id,
                };
                if e.paths[i] == path {
                    return;
                }
                retire(&mut self.retired, &prefix, e, i);
                if e.paths[i].stale {
                    if let Source::Peer(id) = source {
                        if let Some(c) = self.counts.get_mut(&id) {
                            c.stale = c.stale.saturating_sub(1);
                        }
                    }
                }
                e.paths[i] = path;
            }
            None => {
                let local_id = 1 + e.paths.iter().map(|p| p.local_id).max().unwrap_or(0);
                e.paths.push(Path {
                    source,
                    path_id,
                    attrs,
                    stale: false,
                    since,
                    local_id,
                });
                if let Source::Peer(id) = source {
                    self.counts.entry(id).or_default().received += 1;
                }
            }
        }
        self.dirty.insert(prefix);
    }

    fn remove_path(&mut self, prefix: IpNet, source: Source, path_id: u32) {
        let Some(e) = self.entries.get_mut(&prefix) else {
            return;
        };
        let Some(i) = e
            .paths
            .iter()
            .position(|p| p.source == source && p.path_id == path_id)
        else {
            return;
        };
        take_path(&mut self.retired, &mut self.counts, &prefix, e, i);
        self.dirty.insert(prefix);
    }

    /// Recomputes the best paths of changed prefixes and what each peer
    /// must be sent. Returns the best-path changes (for the kernel) and,
    /// per peer, the UPDATEs to send.
    pub fn commit(
        &mut self,
        policy: &dyn ExportPolicy,
    ) -> (Vec<BestChange>, Vec<(PeerId, Vec<Update>)>) {
        // Taken, not drained: a burst's capacity is not kept for ever.
        let mut dirty: Vec<IpNet> = std::mem::take(&mut self.dirty).into_iter().collect();
        dirty.sort_unstable();
        let mut changes = Vec::new();
        for prefix in &dirty {
            let Some(e) = self.entries.get_mut(prefix) else {
                continue;
            };
            let retired = self.retired.remove(prefix);
            let before = retired.as_ref().or(e.best());
            let after = best::select(&e.paths, &self.peers);
            let changed = before != after.map(|i| &e.paths[i]);
            if changed {
                if let Some(Source::Peer(id)) = before.map(|p| p.source) {
                    let c = self.counts.entry(id).or_default();
                    c.preferred = c.preferred.saturating_sub(1);
                }
                if let Some(Source::Peer(id)) = after.map(|i| e.paths[i].source) {
                    self.counts.entry(id).or_default().preferred += 1;
                }
                changes.push(BestChange {
                    prefix: *prefix,
                    best: after.map(|i| e.paths[i].clone()),
                });
            }
            e.best = after.map_or(NO_BEST, |i| i as u32);
            if e.paths.is_empty() {
                self.entries.remove(prefix);
            }
        }
        self.retired = Map::default();
        for id in std::mem::take(&mut self.removed) {
            if !self.peers.contains_key(&id)
                && self
                    .counts
                    .get(&id)
                    .is_some_and(|c| c.received == 0 && c.preferred == 0)
            {
                self.counts.remove(&id);
            }
        }
        let ctx = export::Context {
            cluster_id: self.cluster_id,
            peers: &self.peers,
        };
        let entries = &self.entries;
        // Each changed prefix's entry, looked up once for all peers.
        let changed: Vec<(IpNet, Option<&Entry>)> =
            dirty.iter().map(|p| (*p, entries.get(p))).collect();
        let mut updates = Vec::new();
        for (id, exp) in self.exports.iter_mut() {
            let Some(peer) = self.peers.get(id) else {
                continue;
            };
            let msgs = exp.flush(*id, peer, &ctx, policy, |p| entries.get(p), &changed);
            if !msgs.is_empty() {
                updates.push((*id, msgs));
            }
        }
        updates.sort_by_key(|(id, _)| *id);
        (changes, updates)
    }
}

/// RFC 4271 §6.3, RFC 7606 §7.3: a next hop that cannot be a neighbour
/// (unspecified, multicast, broadcast) makes the route unusable. It is
/// ignored, replacing what the peer sent before for the prefix (as BIRD
/// does); the session stays up.
fn unusable_next_hop(prefix: &IpNet, attrs: &PathAttributes) -> bool {
    match prefix {
        IpNet::V4(_) => attrs
            .next_hop
            .is_some_and(|nh| nh.is_unspecified() || nh.is_multicast() || nh.is_broadcast()),
        IpNet::V6(_) => attrs.mp_next_hop.is_some_and(|nh| {
            nh.global.is_multicast() || (nh.global.is_unspecified() && nh.link_local.is_none())
        }),
    }
}

/// Before path `i` of a prefix changes or goes: if it was the best at the
/// last commit, the commit must still see it as it was.
fn retire(retired: &mut Map<IpNet, Path>, prefix: &IpNet, e: &mut Entry, i: usize) {
    if e.best == i as u32 {
        retired.insert(*prefix, e.paths[i].clone());
        e.best = NO_BEST;
    }
}

/// Removes path `i` of a prefix, keeping the best index and the counts.
fn take_path(
    retired: &mut Map<IpNet, Path>,
    counts: &mut Map<PeerId, Counts>,
    prefix: &IpNet,
    e: &mut Entry,
    i: usize,
) {
    retire(retired, prefix, e, i);
    let p = e.paths.remove(i);
    if e.best != NO_BEST && e.best > i as u32 {
        e.best -= 1;
    }
    if let Source::Peer(id) = p.source {
        if let Some(c) = counts.get_mut(&id) {
            c.received = c.received.saturating_sub(1);
            if p.stale {
                c.stale = c.stale.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests;
