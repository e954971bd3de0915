//! Main-table routes: a host route per local workload address to its
//! interface, blackholes for local blocks, remote blocks over VXLAN
//! (`via <tunnel ip> dev vxlan.calico onlink`) and CrossSubnet routes
//! without encapsulation (`via <node ip>`).
//!
//! Ownership: every route this manager writes carries its protocol number
//! (default 80). Only routes with that number are ever read back or deleted,
//! so other routes are never touched (a foreign route with the same
//! destination as a desired one is overwritten by the replace, as Calico's
//! own desired state wins for the addresses it manages).
//!
//! Incremental: `on_update` marks destinations dirty; `apply` writes only
//! dirty destinations whose kernel route (as last written or read) differs.
//! `resync` re-reads the kernel's routes of our protocol on the next apply;
//! that is also what happens on start, so a restart reconciles without a
//! flush: still-desired routes are left alone, our stale ones deleted.
//! Deletions wait for `Update::InSync`, so a restarted agent never removes a
//! route just because the datastore snapshot has not been fully replayed.
//! A route whose interface does not exist yet (or is down) is *pending*:
//! not an error, retried on every apply, reported by [`RouteManager::conditions`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use calico_calc::model::{EndpointKey, RouteTarget, Update};
use ipnet::IpNet;

use crate::condition::{Condition, PendingReason};
use crate::netlink::{ErrorKind, KernelRoute, NetlinkBackend, RouteKind};
use crate::{ApplyStats, DataplaneError, Manager};

/// `rtm_protocol` of Calico's routes (upstream marks its blackholes and
/// VXLAN routes with 80).
pub const DEFAULT_ROUTE_PROTOCOL: u8 = 80;
/// Name of the VXLAN device.
pub const VXLAN_IFACE: &str = "vxlan.calico";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteManagerConfig {
    /// Protocol number marking our routes.
    pub protocol: u8,
    /// Device for `RouteTarget::Vxlan` routes.
    pub vxlan_iface: String,
}

impl Default for RouteManagerConfig {
    fn default() -> Self {
        RouteManagerConfig {
            protocol: DEFAULT_ROUTE_PROTOCOL,
            vxlan_iface: VXLAN_IFACE.to_string(),
        }
    }
}

/// Turns an endpoint address into the host route's destination.
fn host_dst(addr: &IpNet) -> IpNet {
    IpNet::from(addr.addr())
}

pub struct RouteManager<B> {
    nl: B,
    cfg: RouteManagerConfig,
    /// Local endpoints: interface and host-route destinations.
    endpoints: BTreeMap<EndpointKey, (String, Vec<IpNet>)>,
    ep_by_dst: BTreeMap<IpNet, BTreeSet<EndpointKey>>,
    /// Routes from `RouteUpsert`.
    explicit: BTreeMap<IpNet, RouteTarget>,
    /// Our routes as the kernel holds them (last read or written).
    actual: BTreeMap<IpNet, KernelRoute>,
    dirty: BTreeSet<IpNet>,
    pending: BTreeMap<IpNet, PendingReason>,
    need_read: bool,
    in_sync: bool,
}

impl<B: NetlinkBackend> RouteManager<B> {
    pub fn new(nl: B, cfg: RouteManagerConfig) -> Self {
        RouteManager {
            nl,
            cfg,
            endpoints: BTreeMap::new(),
            ep_by_dst: BTreeMap::new(),
            explicit: BTreeMap::new(),
            actual: BTreeMap::new(),
            dirty: BTreeSet::new(),
            pending: BTreeMap::new(),
            need_read: true,
            in_sync: false,
        }
    }

    pub fn config(&self) -> &RouteManagerConfig {
        &self.cfg
    }

    /// The desired route for `dst`: a local endpoint's address wins over an
    /// explicit route with the same destination.
    fn desired(&self, dst: &IpNet) -> Option<KernelRoute> {
        let protocol = self.cfg.protocol;
        if let Some(key) = self.ep_by_dst.get(dst).and_then(|k| k.iter().next()) {
            let iface = self.endpoints[key].0.clone();
            return Some(KernelRoute {
                dst: *dst,
                kind: RouteKind::Dev { iface },
                protocol,
            });
        }
        let kind = match self.explicit.get(dst)? {
            RouteTarget::Local { iface } => RouteKind::Dev {
                iface: iface.clone(),
            },
            RouteTarget::Blackhole => RouteKind::Blackhole,
            RouteTarget::Vxlan { gateway } => RouteKind::Via {
                gateway: IpAddr::V4(*gateway),
                iface: Some(self.cfg.vxlan_iface.clone()),
                onlink: true,
            },
            RouteTarget::NoEncap { gateway } => RouteKind::Via {
                gateway: *gateway,
                iface: None,
                onlink: false,
            },
        };
        Some(KernelRoute {
            dst: *dst,
            kind,
            protocol,
        })
    }

    /// Tells the manager that interface `name` appeared, disappeared or was
    /// recreated (the kernel drops an interface's routes with it): its
    /// routes are rewritten on the next apply.
    pub fn on_interface_update(&mut self, name: &str) {
        let stale: Vec<IpNet> = self
            .actual
            .iter()
            .filter(|(_, r)| r.iface() == Some(name))
            .map(|(d, _)| *d)
            .collect();
        for d in stale {
            self.actual.remove(&d);
            self.dirty.insert(d);
        }
        for (iface, dsts) in self.endpoints.values() {
            if iface == name {
                self.dirty.extend(dsts.iter().copied());
            }
        }
        let vxlan = name == self.cfg.vxlan_iface;
        for (dst, t) in &self.explicit {
            let hit = match t {
                RouteTarget::Local { iface } => iface == name,
                RouteTarget::Vxlan { .. } => vxlan,
                _ => false,
            };
            if hit {
                self.dirty.insert(*dst);
            }
        }
    }

    /// Destinations waiting for an interface or gateway, and why.
    pub fn pending_routes(&self) -> Vec<(IpNet, PendingReason)> {
        self.pending.iter().map(|(d, r)| (*d, r.clone())).collect()
    }

    /// Pending routes grouped by reason.
    pub fn conditions(&self) -> Vec<Condition> {
        let mut by_reason: BTreeMap<PendingReason, Vec<IpNet>> = BTreeMap::new();
        for (d, r) in &self.pending {
            by_reason.entry(r.clone()).or_default().push(*d);
        }
        by_reason
            .into_iter()
            .map(|(reason, dsts)| Condition::RoutesPending { reason, dsts })
            .collect()
    }

    /// Our routes as the manager believes the kernel holds them.
    pub fn programmed(&self) -> Vec<KernelRoute> {
        self.actual.values().cloned().collect()
    }

    fn set_pending(&mut self, dst: IpNet, reason: PendingReason) {
        if self.pending.get(&dst) != Some(&reason) {
            tracing::info!(%dst, %reason, "route pending");
        }
        self.pending.insert(dst, reason);
        self.dirty.remove(&dst);
    }

    fn settled(&mut self, dst: &IpNet) {
        self.pending.remove(dst);
        self.dirty.remove(dst);
    }

    fn delete(
        &mut self,
        route: &KernelRoute,
        stats: &mut ApplyStats,
    ) -> Result<(), crate::netlink::NetlinkError> {
        match self.nl.del_route(route) {
            Ok(()) => {
                stats.writes += 1;
                tracing::debug!(%route, "deleted route");
                self.actual.remove(&route.dst);
                Ok(())
            }
            Err(e) if e.kind == ErrorKind::NotFound => {
                self.actual.remove(&route.dst);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn read_kernel(&mut self) -> Result<(), DataplaneError> {
        let routes = self.nl.routes(self.cfg.protocol)?;
        self.actual.clear();
        for r in routes {
            self.actual.entry(r.dst).or_insert(r);
        }
        self.dirty.extend(self.actual.keys().copied());
        self.dirty.extend(self.ep_by_dst.keys().copied());
        self.dirty.extend(self.explicit.keys().copied());
        self.need_read = false;
        Ok(())
    }
}

impl<B: NetlinkBackend> Manager for RouteManager<B> {
    fn on_update(&mut self, update: &Update) {
        match update {
            Update::EndpointUpsert(ep) => {
                let dsts: Vec<IpNet> = ep.addrs.iter().map(host_dst).collect();
                if let Some((_, old)) = self.endpoints.get(&ep.key) {
                    for d in old.clone() {
                        if let Some(set) = self.ep_by_dst.get_mut(&d) {
                            set.remove(&ep.key);
                            if set.is_empty() {
                                self.ep_by_dst.remove(&d);
                            }
                        }
                        self.dirty.insert(d);
                    }
                }
                for d in &dsts {
                    self.ep_by_dst.entry(*d).or_default().insert(ep.key.clone());
                    self.dirty.insert(*d);
                }
                self.endpoints
                    .insert(ep.key.clone(), (ep.iface.clone(), dsts));
            }
            Update::EndpointRemove(key) => {
                if let Some((_, old)) = self.endpoints.remove(key) {
                    for d in old {
                        if let Some(set) = self.ep_by_dst.get_mut(&d) {
                            set.remove(key);
                            if set.is_empty() {
                                self.ep_by_dst.remove(&d);
                            }
                        }
                        self.dirty.insert(d);
                    }
                }
            }
            Update::RouteUpsert(r) if self.explicit.get(&r.dst) != Some(&r.target) => {
                self.explicit.insert(r.dst, r.target.clone());
                self.dirty.insert(r.dst);
            }
            Update::RouteRemove { dst } => {
                self.dirty
                    .extend(self.explicit.remove_entry(dst).map(|(d, _)| d));
            }
            Update::InSync if !self.in_sync => {
                self.in_sync = true;
                // Deletions deferred until now are still in `dirty`; make sure.
                let stale: Vec<IpNet> = self
                    .actual
                    .keys()
                    .filter(|d| self.desired(d).is_none())
                    .copied()
                    .collect();
                self.dirty.extend(stale);
            }
            _ => {}
        }
    }

    fn apply(&mut self) -> Result<ApplyStats, DataplaneError> {
        let mut stats = ApplyStats::default();
        if self.need_read {
            self.read_kernel()?;
        }
        if self.dirty.is_empty() && self.pending.is_empty() {
            return Ok(stats);
        }
        let work: BTreeSet<IpNet> = self
            .dirty
            .iter()
            .chain(self.pending.keys())
            .copied()
            .collect();
        let needs_links = work
            .iter()
            .any(|d| self.desired(d).is_some_and(|r| r.iface().is_some()));
        let links: HashMap<String, bool> = if needs_links {
            self.nl
                .links()?
                .into_iter()
                .map(|l| (l.name, l.up))
                .collect()
        } else {
            HashMap::new()
        };

        let mut failures = Vec::new();
        for dst in work {
            let want = self.desired(&dst);
            let have = self.actual.get(&dst).cloned();
            let Some(want) = want else {
                self.pending.remove(&dst);
                match have {
                    None => {
                        self.dirty.remove(&dst);
                    }
                    // Deletion waits for the first complete snapshot.
                    Some(_) if !self.in_sync => {}
                    Some(h) => match self.delete(&h, &mut stats) {
                        Ok(()) => {
                            self.dirty.remove(&dst);
                        }
                        Err(e) => failures.push(e),
                    },
                }
                continue;
            };
            if have.as_ref().is_some_and(|h| want.satisfied_by(h)) {
                self.settled(&dst);
                continue;
            }
            if let Some(iface) = want.iface() {
                let reason = match links.get(iface) {
                    None => Some(PendingReason::InterfaceMissing(iface.to_string())),
                    Some(false) => Some(PendingReason::InterfaceDown(iface.to_string())),
                    Some(true) => None,
                };
                if let Some(reason) = reason {
                    // A route of ours elsewhere for this destination is wrong.
                    if let (Some(h), true) = (&have, self.in_sync) {
                        if let Err(e) = self.delete(h, &mut stats) {
                            failures.push(e);
                        }
                    }
                    self.set_pending(dst, reason);
                    continue;
                }
            }
            match self.nl.replace_route(&want) {
                Ok(()) => {
                    stats.writes += 1;
                    tracing::debug!(route = %want, "programmed route");
                    self.actual.insert(dst, want);
                    self.settled(&dst);
                }
                Err(e) => {
                    let iface = want.iface().unwrap_or("?").to_string();
                    match (e.kind, &want.kind) {
                        (ErrorKind::NoDevice, _) => {
                            self.set_pending(dst, PendingReason::InterfaceMissing(iface))
                        }
                        (ErrorKind::NetworkDown, _) => {
                            self.set_pending(dst, PendingReason::InterfaceDown(iface))
                        }
                        (ErrorKind::Unreachable, RouteKind::Via { gateway, .. }) => {
                            self.set_pending(dst, PendingReason::GatewayUnreachable(*gateway))
                        }
                        _ => failures.push(e),
                    }
                }
            }
        }
        match failures.first() {
            None => Ok(stats),
            Some(first) => {
                tracing::warn!(failed = failures.len(), error = %first, "route writes failed; will retry");
                Err(DataplaneError::Netlink(format!(
                    "{} route operation(s) failed, first: {first}",
                    failures.len()
                )))
            }
        }
    }

    fn resync(&mut self) {
        self.need_read = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::FakeNetlink;
    use calico_calc::model::{LocalEndpoint, Route};
    use std::sync::Arc;

    fn ep(name: &str, iface: &str, addrs: &[&str]) -> Update {
        Update::EndpointUpsert(Arc::new(LocalEndpoint {
            key: key(name),
            iface: iface.into(),
            mac: None,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            allow_spoofed: vec![],
            tiers: vec![],
            profiles: vec![],
            nats: vec![],
        }))
    }

    fn key(name: &str) -> EndpointKey {
        EndpointKey {
            namespace: "openstack".into(),
            name: name.into(),
        }
    }

    fn route(dst: &str, target: RouteTarget) -> Update {
        Update::RouteUpsert(Route {
            dst: dst.parse().unwrap(),
            target,
        })
    }

    fn kr(dst: &str, kind: RouteKind, protocol: u8) -> KernelRoute {
        KernelRoute {
            dst: dst.parse().unwrap(),
            kind,
            protocol,
        }
    }

    fn dev(i: &str) -> RouteKind {
        RouteKind::Dev { iface: i.into() }
    }

    fn setup() -> (FakeNetlink, RouteManager<FakeNetlink>) {
        let nl = FakeNetlink::new();
        nl.add_link("eth0", "veth", 1500, true);
        nl.add_address("eth0", "192.0.2.1/24");
        nl.add_link("tap1", "tap", 1500, true);
        nl.add_link("tap2", "tap", 1500, true);
        let m = RouteManager::new(nl.clone(), RouteManagerConfig::default());
        (nl, m)
    }

    #[test]
    fn programs_every_route_kind_and_second_apply_is_a_no_op() {
        let (nl, mut m) = setup();
        nl.add_link(VXLAN_IFACE, "vxlan", 1410, true);
        m.on_update(&ep("a", "tap1", &["198.18.1.1/32", "2001:db8::1/128"]));
        m.on_update(&route("198.18.1.0/26", RouteTarget::Blackhole));
        m.on_update(&route(
            "198.18.2.0/26",
            RouteTarget::Vxlan {
                gateway: "198.18.2.0".parse().unwrap(),
            },
        ));
        m.on_update(&route(
            "198.18.3.0/26",
            RouteTarget::NoEncap {
                gateway: "192.0.2.3".parse().unwrap(),
            },
        ));
        m.on_update(&Update::InSync);
        assert_eq!(m.apply().unwrap().writes, 5);
        assert_eq!(nl.route("198.18.1.1/32").unwrap().kind, dev("tap1"));
        assert_eq!(nl.route("2001:db8::1/128").unwrap().kind, dev("tap1"));
        assert_eq!(
            nl.route("198.18.1.0/26").unwrap().kind,
            RouteKind::Blackhole
        );
        assert_eq!(
            nl.route("198.18.2.0/26").unwrap().kind,
            RouteKind::Via {
                gateway: "198.18.2.0".parse().unwrap(),
                iface: Some(VXLAN_IFACE.into()),
                onlink: true
            }
        );
        assert_eq!(
            nl.route("198.18.3.0/26").unwrap().kind,
            RouteKind::Via {
                gateway: "192.0.2.3".parse().unwrap(),
                iface: Some("eth0".into()),
                onlink: false
            }
        );
        assert!(nl.all_routes().iter().all(|r| r.protocol == 80));
        nl.take_ops();
        let reads = nl.reads();
        assert_eq!(m.apply().unwrap().writes, 0);
        assert!(nl.take_ops().is_empty());
        assert_eq!(nl.reads(), reads, "a no-op apply does not even read");
        // Re-sending the same state is also a no-op.
        m.on_update(&ep("a", "tap1", &["198.18.1.1/32", "2001:db8::1/128"]));
        m.on_update(&route("198.18.1.0/26", RouteTarget::Blackhole));
        assert_eq!(m.apply().unwrap().writes, 0);
        assert!(nl.take_ops().is_empty());
    }

    #[test]
    fn add_remove_and_replace_are_incremental() {
        let (nl, mut m) = setup();
        m.on_update(&ep("a", "tap1", &["198.18.1.1/32"]));
        m.on_update(&ep("b", "tap2", &["198.18.1.2/32"]));
        m.on_update(&Update::InSync);
        m.apply().unwrap();
        nl.take_ops();

        // Endpoint b moves its address to tap1: one replace.
        m.on_update(&ep("b", "tap1", &["198.18.1.2/32"]));
        assert_eq!(m.apply().unwrap().writes, 1);
        assert_eq!(
            nl.take_ops(),
            vec!["replace_route 198.18.1.2/32 dev tap1 scope link proto 80"]
        );
        // Endpoint a goes away: one delete.
        m.on_update(&Update::EndpointRemove(key("a")));
        assert_eq!(m.apply().unwrap().writes, 1);
        assert_eq!(
            nl.take_ops(),
            vec!["del_route 198.18.1.1/32 dev tap1 scope link proto 80"]
        );
        assert!(nl.route("198.18.1.1/32").is_none());
        // Blackhole becomes a VXLAN route (the device exists): replace.
        nl.add_link(VXLAN_IFACE, "vxlan", 1410, true);
        m.on_update(&route("198.18.5.0/26", RouteTarget::Blackhole));
        m.apply().unwrap();
        m.on_update(&route(
            "198.18.5.0/26",
            RouteTarget::Vxlan {
                gateway: "198.18.5.0".parse().unwrap(),
            },
        ));
        nl.take_ops();
        assert_eq!(m.apply().unwrap().writes, 1);
        assert!(nl.take_ops()[0].starts_with("replace_route 198.18.5.0/26 via 198.18.5.0"));
        m.on_update(&Update::RouteRemove {
            dst: "198.18.5.0/26".parse().unwrap(),
        });
        assert_eq!(m.apply().unwrap().writes, 1);
        assert!(nl.route("198.18.5.0/26").is_none());
    }

    #[test]
    fn endpoint_route_wins_over_explicit_route_for_same_destination() {
        let (nl, mut m) = setup();
        m.on_update(&route("198.18.1.1/32", RouteTarget::Blackhole));
        m.on_update(&ep("a", "tap1", &["198.18.1.1/32"]));
        m.apply().unwrap();
        assert_eq!(nl.route("198.18.1.1/32").unwrap().kind, dev("tap1"));
        m.on_update(&Update::EndpointRemove(key("a")));
        m.apply().unwrap();
        assert_eq!(
            nl.route("198.18.1.1/32").unwrap().kind,
            RouteKind::Blackhole
        );
    }

    #[test]
    fn missing_interface_keeps_route_pending_without_errors() {
        let (nl, mut m) = setup();
        m.on_update(&ep("late", "tap9", &["198.18.1.9/32"]));
        m.on_update(&ep("a", "tap1", &["198.18.1.1/32"]));
        m.on_update(&Update::InSync);
        assert_eq!(m.apply().unwrap().writes, 1);
        assert!(nl.route("198.18.1.9/32").is_none());
        assert_eq!(
            m.pending_routes(),
            vec![(
                "198.18.1.9/32".parse().unwrap(),
                PendingReason::InterfaceMissing("tap9".into())
            )]
        );
        assert_eq!(
            m.conditions(),
            vec![Condition::RoutesPending {
                reason: PendingReason::InterfaceMissing("tap9".into()),
                dsts: vec!["198.18.1.9/32".parse().unwrap()]
            }]
        );
        // Retried quietly.
        for _ in 0..3 {
            assert_eq!(m.apply().unwrap().writes, 0);
        }
        // The orchestrator creates it, but down first.
        nl.add_link("tap9", "tap", 1500, false);
        assert_eq!(m.apply().unwrap().writes, 0);
        assert_eq!(
            m.pending_routes()[0].1,
            PendingReason::InterfaceDown("tap9".into())
        );
        nl.set_up("tap9", true);
        assert_eq!(m.apply().unwrap().writes, 1);
        assert_eq!(nl.route("198.18.1.9/32").unwrap().kind, dev("tap9"));
        assert!(m.pending_routes().is_empty());
        assert!(m.conditions().is_empty());
    }

    #[test]
    fn vxlan_routes_wait_for_the_device() {
        let (nl, mut m) = setup();
        m.on_update(&route(
            "198.18.2.0/26",
            RouteTarget::Vxlan {
                gateway: "198.18.2.0".parse().unwrap(),
            },
        ));
        m.apply().unwrap();
        assert!(nl.route("198.18.2.0/26").is_none());
        assert_eq!(m.pending_routes().len(), 1);
        nl.add_link(VXLAN_IFACE, "vxlan", 1410, true);
        assert_eq!(m.apply().unwrap().writes, 1);
        // The device is deleted and recreated: the kernel drops the route;
        // the hook makes the manager rewrite it.
        nl.remove_link(VXLAN_IFACE);
        nl.add_link(VXLAN_IFACE, "vxlan", 1410, true);
        assert!(nl.route("198.18.2.0/26").is_none());
        m.on_interface_update(VXLAN_IFACE);
        assert_eq!(m.apply().unwrap().writes, 1);
        assert!(nl.route("198.18.2.0/26").is_some());
    }

    #[test]
    fn unreachable_gateway_is_pending() {
        let (nl, mut m) = setup();
        m.on_update(&route(
            "198.18.3.0/26",
            RouteTarget::NoEncap {
                gateway: "198.19.0.1".parse().unwrap(),
            },
        ));
        assert_eq!(m.apply().unwrap().writes, 0);
        assert_eq!(
            m.pending_routes()[0].1,
            PendingReason::GatewayUnreachable("198.19.0.1".parse().unwrap())
        );
        nl.add_link("eth1", "veth", 1500, true);
        nl.add_address("eth1", "198.19.0.2/24");
        assert_eq!(m.apply().unwrap().writes, 1);
    }

    #[test]
    fn restart_reconciles_without_flush() {
        let (nl, _) = setup();
        // Left by a previous run: still desired, stale, and foreign routes.
        nl.insert_route(kr("198.18.1.1/32", dev("tap1"), 80));
        nl.insert_route(kr("198.18.1.0/26", RouteKind::Blackhole, 80));
        nl.insert_route(kr("198.18.9.0/26", RouteKind::Blackhole, 80));
        nl.insert_route(kr("198.18.1.7/32", dev("tap2"), 80));
        nl.insert_route(kr("192.0.2.0/24", dev("eth0"), 2));
        nl.insert_route(kr("198.18.200.0/24", RouteKind::Blackhole, 4));
        nl.insert_route(kr(
            "0.0.0.0/0",
            RouteKind::Via {
                gateway: "192.0.2.254".parse().unwrap(),
                iface: Some("eth0".into()),
                onlink: false,
            },
            3,
        ));
        let foreign: Vec<_> = nl
            .all_routes()
            .into_iter()
            .filter(|r| r.protocol != 80)
            .collect();

        let mut m = RouteManager::new(nl.clone(), RouteManagerConfig::default());
        m.on_update(&ep("a", "tap1", &["198.18.1.1/32"]));
        m.on_update(&ep("b", "tap2", &["198.18.1.2/32"]));
        m.on_update(&route("198.18.1.0/26", RouteTarget::Blackhole));
        // Before InSync: only the missing route is added, nothing deleted.
        assert_eq!(m.apply().unwrap().writes, 1);
        assert_eq!(
            nl.take_ops(),
            vec!["replace_route 198.18.1.2/32 dev tap2 scope link proto 80"]
        );
        assert!(nl.route("198.18.9.0/26").is_some());
        // After InSync: only our stale routes go.
        m.on_update(&Update::InSync);
        assert_eq!(m.apply().unwrap().writes, 2);
        let mut ops = nl.take_ops();
        ops.sort();
        assert_eq!(
            ops,
            vec![
                "del_route 198.18.1.7/32 dev tap2 scope link proto 80",
                "del_route blackhole 198.18.9.0/26 proto 80",
            ]
        );
        for f in &foreign {
            assert!(nl.all_routes().contains(f), "foreign route {f} kept");
        }
        assert_eq!(nl.route("198.18.1.1/32").unwrap().kind, dev("tap1"));
        assert_eq!(m.apply().unwrap().writes, 0);
    }

    #[test]
    fn resync_repairs_drift() {
        let (nl, mut m) = setup();
        m.on_update(&ep("a", "tap1", &["198.18.1.1/32"]));
        m.on_update(&route("198.18.1.0/26", RouteTarget::Blackhole));
        m.on_update(&Update::InSync);
        m.apply().unwrap();
        // Someone deletes one route and overwrites the other with theirs,
        // and adds one of "ours" by hand.
        nl.remove_route("198.18.1.1/32");
        nl.insert_route(kr("198.18.1.0/26", dev("tap2"), 4));
        nl.insert_route(kr("198.18.77.0/26", RouteKind::Blackhole, 80));
        assert_eq!(m.apply().unwrap().writes, 0, "no read without resync");
        m.resync();
        assert_eq!(m.apply().unwrap().writes, 3);
        assert_eq!(nl.route("198.18.1.1/32").unwrap().kind, dev("tap1"));
        let bh = nl.route("198.18.1.0/26").unwrap();
        assert_eq!((bh.kind, bh.protocol), (RouteKind::Blackhole, 80));
        assert!(nl.route("198.18.77.0/26").is_none());
        m.resync();
        assert_eq!(m.apply().unwrap().writes, 0);
    }

    #[test]
    fn failed_write_stays_dirty_and_is_retried() {
        let (nl, mut m) = setup();
        m.on_update(&ep("a", "tap1", &["198.18.1.1/32"]));
        m.on_update(&ep("b", "tap2", &["198.18.1.2/32"]));
        nl.fail_next("replace_route", ErrorKind::Other);
        assert!(m.apply().is_err());
        assert_eq!(nl.all_routes().len(), 1, "the other route still went in");
        assert_eq!(m.apply().unwrap().writes, 1);
        assert_eq!(nl.all_routes().len(), 2);
        // A failed initial read leaves the manager wanting to read.
        let mut m2 = RouteManager::new(nl.clone(), RouteManagerConfig::default());
        nl.fail_next("routes", ErrorKind::Other);
        assert!(m2.apply().is_err());
        m2.on_update(&Update::InSync);
        m2.apply().unwrap();
        assert_eq!(
            nl.all_routes().len(),
            0,
            "m2 wants nothing; it deletes ours"
        );
    }

    #[test]
    fn interface_recreated_behind_our_back() {
        let (nl, mut m) = setup();
        m.on_update(&ep("a", "tap1", &["198.18.1.1/32"]));
        m.apply().unwrap();
        nl.remove_link("tap1");
        nl.add_link("tap1", "tap", 1500, true);
        assert!(nl.route("198.18.1.1/32").is_none());
        m.on_interface_update("tap1");
        assert_eq!(m.apply().unwrap().writes, 1);
        assert!(nl.route("198.18.1.1/32").is_some());
    }
}
