//! Routes learned by BGP, in the main table with BIRD's protocol number
//! (`proto bird`, 12), as upstream's BIRD installs them.
//!
//! The speaker hands over best-path changes in batches; `apply` writes
//! them in batches too (the backend pipelines a batch over one netlink
//! socket), so a peer's whole table reaches the kernel in a few round trips.
//!
//! Restart keeps routes: on start the routes of our protocol already in the
//! kernel are read and left in place. Only once the speaker says it has
//! converged (`converged`) are those no peer re-announced removed, so
//! traffic to other hosts keeps flowing while the agent restarts.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use crate::netlink::{ErrorKind, KernelRoute, NetlinkBackend};
use crate::{ApplyStats, DataplaneError};

/// `rtm_protocol` BIRD marks its routes with (`/etc/iproute2/rt_protos`).
pub const RTPROT_BIRD: u8 = 12;

pub struct LearnedRoutes<B> {
    nl: B,
    protocol: u8,
    desired: BTreeMap<IpNet, KernelRoute>,
    /// Our protocol's routes as the kernel holds them.
    actual: BTreeMap<IpNet, KernelRoute>,
    dirty: BTreeSet<IpNet>,
    need_read: bool,
    /// Deleting routes nobody asked for waits until the speaker converged.
    converged: bool,
    /// Routes whose next hop the kernel refused (unreachable gateway).
    failed: BTreeMap<IpNet, String>,
}

impl<B: NetlinkBackend> LearnedRoutes<B> {
    pub fn new(nl: B, protocol: u8) -> Self {
        LearnedRoutes {
            nl,
            protocol,
            desired: BTreeMap::new(),
            actual: BTreeMap::new(),
            dirty: BTreeSet::new(),
            need_read: true,
            converged: false,
            failed: BTreeMap::new(),
        }
    }

    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// Sets (Some) or removes (None) the route for `dst`; its protocol is
    /// ours whatever the caller put in.
    pub fn set(&mut self, dst: IpNet, route: Option<KernelRoute>) {
        match route {
            Some(mut r) => {
                r.protocol = self.protocol;
                self.desired.insert(dst, r);
            }
            None => {
                self.desired.remove(&dst);
            }
        }
        self.dirty.insert(dst);
    }

    /// From now on, routes of ours that are not desired are deleted.
    pub fn converged(&mut self) {
        if !self.converged {
            self.converged = true;
            self.dirty.extend(self.actual.keys().copied());
        }
    }

    pub fn resync(&mut self) {
        self.need_read = true;
    }

    pub fn desired_len(&self) -> usize {
        self.desired.len()
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
            self.actual = read.into_iter().map(|r| (r.dst, r)).collect();
            self.dirty.extend(self.actual.keys().copied());
            self.dirty.extend(self.desired.keys().copied());
            self.need_read = false;
        }
        let mut writes = Vec::new();
        let mut deletes = Vec::new();
        for dst in std::mem::take(&mut self.dirty) {
            match (self.desired.get(&dst), self.actual.get(&dst)) {
                (Some(want), Some(have)) if want.satisfied_by(have) => {}
                (Some(want), _) => writes.push(want.clone()),
                (None, Some(have)) if self.converged => deletes.push(have.clone()),
                _ => {}
            }
        }
        for (route, result) in writes.iter().zip(self.nl.replace_routes(&writes)) {
            match result {
                Ok(()) => {
                    self.failed.remove(&route.dst);
                    self.actual.insert(route.dst, route.clone());
                    stats.writes += 1;
                }
                Err(e) => {
                    // An unreachable next hop is the peer's problem, not an
                    // apply failure; it is retried on the next change.
                    self.failed.insert(route.dst, e.to_string());
                }
            }
        }
        for (route, result) in deletes.iter().zip(self.nl.del_routes(&deletes)) {
            match result {
                Ok(()) => {}
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => {
                    self.dirty.insert(route.dst);
                    return Err(DataplaneError::Netlink(e.to_string()));
                }
            }
            self.actual.remove(&route.dst);
            stats.writes += 1;
        }
        Ok(stats)
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
}
