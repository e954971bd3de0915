//! Routes learned by BGP, in the main table with BIRD's protocol number
//! (`proto bird`, 12), as upstream's BIRD installs them.
//!
//! The speaker hands over best-path changes in batches; `apply` writes
//! them in batches too (the backend sends a batch in a few system calls),
//! so a peer's whole table reaches the kernel in a few round trips.
//!
//! Restart keeps routes: on start the routes of our protocol already in the
//! kernel are read and left in place. Only once the speaker says it has
//! converged (`converged`) are those no peer re-announced removed, so
//! traffic to other hosts keeps flowing while the agent restarts.
//!
//! Memory: a full table can be 100,000 routes or more, so each destination
//! costs one small map slot (16 bytes for IPv4): what we want there and
//! what the kernel has, each the index of one of the few distinct next
//! hops, stored once.

use std::collections::{BTreeMap, HashMap, HashSet};

use ipnet::IpNet;

use crate::netlink::{ErrorKind, KernelRoute, NetlinkBackend, RouteKind};
use crate::prefixmap::PrefixMap;
use crate::{ApplyStats, DataplaneError};

/// `rtm_protocol` BIRD marks its routes with (`/etc/iproute2/rt_protos`).
pub const RTPROT_BIRD: u8 = 12;

/// Destinations looked at per backend batch.
const CHUNK: usize = 4096;

/// After this many route changes, free heap goes back to the kernel.
const TRIM_AFTER: usize = 10_000;

/// No route.
const NONE: u32 = u32::MAX;

/// One destination: the route we want and the route of our protocol the
/// kernel has (as last read or written), as indexes into `Kinds`, or NONE.
#[derive(Clone, Copy)]
struct Slot {
    want: u32,
    have: u32,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            want: NONE,
            have: NONE,
        }
    }
}

/// The distinct route kinds (next hops) in use, each stored once.
#[derive(Default)]
struct Kinds {
    list: Vec<RouteKind>,
    index: HashMap<RouteKind, u32>,
}

impl Kinds {
    fn intern(&mut self, kind: RouteKind) -> u32 {
        if let Some(i) = self.index.get(&kind) {
            return *i;
        }
        let i = self.list.len() as u32;
        self.list.push(kind.clone());
        self.index.insert(kind, i);
        i
    }

    fn get(&self, i: u32) -> Option<&RouteKind> {
        self.list.get(i as usize)
    }
}

pub struct LearnedRoutes<B> {
    nl: B,
    protocol: u8,
    routes: PrefixMap<Slot>,
    /// Slots with a `want`.
    wanted: usize,
    kinds: Kinds,
    /// Number of kinds after the last clean-up.
    kinds_kept: usize,
    dirty: HashSet<IpNet>,
    need_read: bool,
    /// Deleting routes nobody asked for waits until the speaker converged.
    converged: bool,
    /// Routes whose next hop the kernel refused (unreachable gateway).
    failed: BTreeMap<IpNet, String>,
    /// Destinations looked at since the heap was last trimmed.
    since_trim: usize,
}

impl<B: NetlinkBackend> LearnedRoutes<B> {
    pub fn new(nl: B, protocol: u8) -> Self {
        LearnedRoutes {
            nl,
            protocol,
            routes: PrefixMap::default(),
            wanted: 0,
            kinds: Kinds::default(),
            kinds_kept: 0,
            dirty: HashSet::new(),
            need_read: true,
            converged: false,
            failed: BTreeMap::new(),
            since_trim: 0,
        }
    }

    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// Sets (Some) or removes (None) the route for `dst`; its protocol is
    /// ours whatever the caller put in.
    pub fn set(&mut self, dst: IpNet, route: Option<KernelRoute>) {
        let want = route.map_or(NONE, |r| self.kinds.intern(r.kind));
        let slot = match self.routes.get_mut(&dst) {
            Some(s) => s,
            None if want == NONE => return,
            None => self.routes.get_or_default(dst),
        };
        match (slot.want == NONE, want == NONE) {
            (true, false) => self.wanted += 1,
            (false, true) => self.wanted -= 1,
            _ => {}
        }
        slot.want = want;
        self.dirty.insert(dst);
    }

    /// From now on, routes of ours that are not desired are deleted.
    pub fn converged(&mut self) {
        if !self.converged {
            self.converged = true;
            let stale = self
                .routes
                .iter()
                .filter(|(_, s)| s.want == NONE && s.have != NONE)
                .map(|(d, _)| d);
            self.dirty.extend(stale);
        }
    }

    pub fn resync(&mut self) {
        self.need_read = true;
    }

    pub fn desired_len(&self) -> usize {
        self.wanted
    }

    /// Routes the kernel refused, with the reason.
    pub fn failures(&self) -> &BTreeMap<IpNet, String> {
        &self.failed
    }

    pub fn apply(&mut self) -> Result<ApplyStats, DataplaneError> {
        let mut stats = ApplyStats::default();
        if self.need_read {
            let read = self
                .nl
                .routes(self.protocol)
                .map_err(|e| DataplaneError::Netlink(e.to_string()))?;
            for s in self.routes.values_mut() {
                s.have = NONE;
            }
            for r in read {
                let kind = self.kinds.intern(r.kind);
                self.routes.get_or_default(r.dst).have = kind;
            }
            self.dirty.extend(self.routes.keys());
            self.need_read = false;
        }
        // Taken, not drained: a burst's room is not kept for ever.
        let dirty: Vec<IpNet> = std::mem::take(&mut self.dirty).into_iter().collect();
        let mut result = Ok(());
        for (n, chunk) in dirty.chunks(CHUNK).enumerate() {
            if let Err(e) = self.apply_chunk(chunk, &mut stats) {
                // Whatever was not done is tried again next time.
                self.dirty.extend(dirty[n * CHUNK..].iter().copied());
                result = Err(e);
                break;
            }
        }
        if self.kinds.list.len() > 2 * self.kinds_kept.max(64) {
            self.forget_unused_kinds();
        }
        self.since_trim += dirty.len();
        if self.since_trim >= TRIM_AFTER {
            drop(dirty);
            // A table's worth of changes leaves freed memory behind.
            crate::heap::trim();
            self.since_trim = 0;
        }
        result.map(|()| stats)
    }

    /// Drops the kinds no slot uses any more (next hops of peers gone).
    fn forget_unused_kinds(&mut self) {
        let mut used = vec![false; self.kinds.list.len()];
        for (_, s) in self.routes.iter() {
            for i in [s.want, s.have] {
                if i != NONE {
                    used[i as usize] = true;
                }
            }
        }
        let mut remap = vec![NONE; used.len()];
        let old = std::mem::take(&mut self.kinds);
        for (i, kind) in old.list.into_iter().enumerate() {
            if used[i] {
                remap[i] = self.kinds.intern(kind);
            }
        }
        for s in self.routes.values_mut() {
            for i in [&mut s.want, &mut s.have] {
                if *i != NONE {
                    *i = remap[*i as usize];
                }
            }
        }
        self.kinds_kept = self.kinds.list.len();
    }

    fn apply_chunk(
        &mut self,
        chunk: &[IpNet],
        stats: &mut ApplyStats,
    ) -> Result<(), DataplaneError> {
        let mut writes = Vec::new();
        let mut deletes = Vec::new();
        let route = |dst: IpNet, kind: &RouteKind| KernelRoute {
            dst,
            kind: kind.clone(),
            protocol: self.protocol,
        };
        for dst in chunk {
            let Some(slot) = self.routes.get(dst) else {
                continue;
            };
            match (self.kinds.get(slot.want), self.kinds.get(slot.have)) {
                (Some(want), Some(have)) if want.satisfied_by(have) => {}
                (Some(want), _) => writes.push(route(*dst, want)),
                (None, Some(have)) if self.converged => deletes.push(route(*dst, have)),
                (None, None) => {
                    self.routes.remove(dst);
                    self.failed.remove(dst);
                }
                (None, Some(_)) => {
                    self.failed.remove(dst);
                }
            }
        }
        for (route, result) in writes.iter().zip(self.nl.replace_routes(&writes)) {
            match result {
                Ok(()) => {
                    self.failed.remove(&route.dst);
                    if let Some(s) = self.routes.get_mut(&route.dst) {
                        s.have = s.want;
                    }
                    stats.writes += 1;
                }
                Err(e) => {
                    // An unreachable next hop is the peer's problem, not an
                    // apply failure; it is retried on the next change.
                    self.failed.insert(route.dst, e.to_string());
                }
            }
        }
        let results = self.nl.del_routes(&deletes);
        for (i, (route, result)) in deletes.iter().zip(results).enumerate() {
            match result {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => {
                    self.dirty.extend(deletes[i..].iter().map(|r| r.dst));
                    return Err(DataplaneError::Netlink(e.to_string()));
                }
            }
            if let Some(s) = self.routes.get_mut(&route.dst) {
                s.have = NONE;
                if s.want == NONE {
                    self.routes.remove(&route.dst);
                }
            }
            stats.writes += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::fake::FakeNetlink;
    use crate::netlink::RouteKind;

    fn via(dst: &str, gw: &str) -> KernelRoute {
        KernelRoute {
            dst: dst.parse().unwrap(),
            kind: RouteKind::Via {
                gateway: gw.parse().unwrap(),
                iface: None,
                onlink: false,
            },
            protocol: RTPROT_BIRD,
        }
    }

    /// A host on 10.0.0.0/24, so next hops there are reachable.
    fn host() -> FakeNetlink {
        let nl = FakeNetlink::new();
        nl.add_link("eth0", "veth", 1500, true);
        nl.add_address("eth0", "10.0.0.1/24");
        nl
    }

    #[test]
    fn restart_keeps_old_routes_until_converged() {
        let mut nl = host();
        nl.replace_route(&via("10.65.1.0/26", "10.0.0.2")).unwrap();
        nl.replace_route(&via("10.65.2.0/26", "10.0.0.3")).unwrap();
        let mut m = LearnedRoutes::new(nl, RTPROT_BIRD);
        let r = via("10.65.1.0/26", "10.0.0.2");
        m.set(r.dst, Some(r));
        m.apply().unwrap();
        assert_eq!(
            m.nl.routes(RTPROT_BIRD).unwrap().len(),
            2,
            "nothing deleted before convergence"
        );
        m.converged();
        m.apply().unwrap();
        let left = m.nl.routes(RTPROT_BIRD).unwrap();
        assert_eq!(left.len(), 1);
        assert!(via("10.65.1.0/26", "10.0.0.2").satisfied_by(&left[0]));
    }

    #[test]
    fn changes_and_withdrawals_reach_the_kernel() {
        let mut m = LearnedRoutes::new(host(), RTPROT_BIRD);
        m.converged();
        for i in 0..100u32 {
            let r = via(&format!("10.66.{}.0/26", i), "10.0.0.2");
            m.set(r.dst, Some(r));
        }
        assert_eq!(m.apply().unwrap().writes, 100);
        let moved = via("10.66.5.0/26", "10.0.0.9");
        m.set(moved.dst, Some(moved.clone()));
        m.set("10.66.6.0/26".parse().unwrap(), None);
        m.apply().unwrap();
        let routes = m.nl.routes(RTPROT_BIRD).unwrap();
        assert_eq!(routes.len(), 99);
        assert!(routes.iter().any(|r| moved.satisfied_by(r)));
        assert_eq!(
            m.apply().unwrap(),
            ApplyStats::default(),
            "nothing left to do"
        );
    }

    #[test]
    fn routes_share_their_next_hop() {
        let mut m = LearnedRoutes::new(host(), RTPROT_BIRD);
        m.converged();
        for i in 0..1000u32 {
            let r = via(&format!("10.67.{}.{}/32", i / 256, i % 256), "10.0.0.2");
            m.set(r.dst, Some(r));
        }
        assert_eq!(m.apply().unwrap().writes, 1000);
        assert_eq!(m.kinds.list.len(), 1, "one next hop, stored once");
        // A resync reads the kernel's copy: in sync, nothing is written.
        m.resync();
        assert_eq!(m.apply().unwrap().writes, 0);
        for i in 0..1000u32 {
            m.set(
                format!("10.67.{}.{}/32", i / 256, i % 256).parse().unwrap(),
                None,
            );
        }
        assert_eq!(m.apply().unwrap().writes, 1000);
        assert_eq!(m.routes.iter().count(), 0, "nothing kept for routes gone");
        assert_eq!(m.desired_len(), 0);
    }

    #[test]
    fn next_hops_no_route_uses_are_forgotten() {
        let nl = host();
        nl.add_address("eth0", "10.1.0.1/16");
        let mut m = LearnedRoutes::new(nl, RTPROT_BIRD);
        m.converged();
        let dst = |i: u32| format!("10.70.{i}.0/26");
        for i in 0..200u32 {
            let r = via(&dst(i), &format!("10.1.{}.{}", i / 200, i % 200 + 2));
            m.set(r.dst, Some(r));
        }
        m.apply().unwrap();
        assert_eq!(m.kinds.list.len(), 200);
        // Every route moves to one next hop.
        for i in 0..200u32 {
            let r = via(&dst(i), "10.0.0.2");
            m.set(r.dst, Some(r));
        }
        m.apply().unwrap();
        // (apply does this once the kinds have doubled since the last time)
        m.forget_unused_kinds();
        assert_eq!(m.kinds.list.len(), 1, "the old next hops are gone");
        let routes = m.nl.routes(RTPROT_BIRD).unwrap();
        assert_eq!(routes.len(), 200);
        assert!(routes
            .iter()
            .all(|r| via(&r.dst.to_string(), "10.0.0.2").satisfied_by(r)));
        m.resync();
        assert_eq!(m.apply().unwrap().writes, 0, "indexes still right");
    }

    #[test]
    fn refused_routes_are_reported_and_retried() {
        let mut m = LearnedRoutes::new(host(), RTPROT_BIRD);
        m.converged();
        let bad = via("10.68.0.0/26", "192.0.2.1");
        let good = via("10.68.1.0/26", "10.0.0.2");
        m.set(bad.dst, Some(bad.clone()));
        m.set(good.dst, Some(good.clone()));
        m.apply().unwrap();
        assert!(m.failures().contains_key(&bad.dst));
        assert_eq!(m.nl.routes(RTPROT_BIRD).unwrap().len(), 1);
        // The peer moves it to a reachable next hop.
        let fixed = via("10.68.0.0/26", "10.0.0.3");
        m.set(fixed.dst, Some(fixed));
        m.apply().unwrap();
        assert!(m.failures().is_empty());
        assert_eq!(m.nl.routes(RTPROT_BIRD).unwrap().len(), 2);
    }

    #[test]
    fn a_failed_delete_is_tried_again() {
        let mut m = LearnedRoutes::new(host(), RTPROT_BIRD);
        m.converged();
        for i in 0..3u32 {
            let r = via(&format!("10.69.{i}.0/26"), "10.0.0.2");
            m.set(r.dst, Some(r));
        }
        m.apply().unwrap();
        for i in 0..3u32 {
            m.set(format!("10.69.{i}.0/26").parse().unwrap(), None);
        }
        m.nl.fail_next("del_route", ErrorKind::Other);
        assert!(m.apply().is_err());
        m.apply().unwrap();
        assert!(m.nl.routes(RTPROT_BIRD).unwrap().is_empty());
    }
}
