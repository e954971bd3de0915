//! Routes and VXLAN tunnel endpoints.
//!
//! Sources of routes, each recomputed only when something it depends on
//! changes:
//! - local workload endpoint addresses → `Local{iface}`;
//! - IPAM blocks affine to this host → `Blackhole` (not for /32 blocks);
//! - blocks affine to a remote node inside a VXLAN pool → `Vxlan` via the
//!   node's tunnel address (`Always`, or `CrossSubnet` across subnets) or
//!   `NoEncap` via the node address (`CrossSubnet`, same subnet);
//! - remote workload endpoint addresses inside a VXLAN pool that no block
//!   affine to the endpoint's node covers (Neutron-assigned addresses,
//!   borrowed addresses) → a host route the same way (our addition).
//!
//! When two sources want the same prefix the more specific kind wins: local
//! endpoint, then remote endpoint, then block.
//!
//! VTEPs are emitted for every node with a VXLAN tunnel address and MAC,
//! this host included (the dataplane configures `vxlan.calico` from its own
//! entry, as Felix's does); this host's underlay address falls back to
//! `HostIdentity::node_ip` when its Node resource has none.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net};

use crate::model::{Encap, EndpointKey, RouteTarget, Vtep};
use crate::sequencer::Tracked;

/// What routing needs of a Node resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NodeInfo {
    /// Underlay address.
    pub ip: Option<IpAddr>,
    /// `spec.bgp.ipv4Address` with its prefix: the node's subnet.
    pub v4_net: Option<Ipv4Net>,
    /// VXLAN tunnel address and MAC.
    pub vtep: Option<(Ipv4Addr, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WepRoutes {
    pub node: String,
    pub addrs: Vec<IpNet>,
    /// Interface, for endpoints on this host.
    pub local_iface: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Source {
    Wep(Arc<EndpointKey>),
    Block(IpNet),
}

/// A source's route for a prefix, ranked by (priority, source).
type Wish = ((u8, Source), RouteTarget);

const PRIO_LOCAL: u8 = 0;
const PRIO_REMOTE_WEP: u8 = 1;
const PRIO_BLOCK: u8 = 2;

#[derive(Default)]
pub(crate) struct Routes {
    host: String,
    host_ip: Option<IpAddr>,
    nodes: HashMap<String, NodeInfo>,
    pools: Vec<(IpNet, Encap)>,
    blocks: HashMap<IpNet, Option<String>>,
    blocks_by_node: HashMap<String, HashSet<IpNet>>,
    weps: HashMap<Arc<EndpointKey>, WepRoutes>,
    weps_by_node: HashMap<String, HashSet<Arc<EndpointKey>>>,
    /// Per prefix, every source's wish, best first (usually exactly one).
    contrib: HashMap<IpNet, Vec<Wish>>,
    src_routes: HashMap<Source, Vec<IpNet>>,
    dirty_sources: HashSet<Source>,
    dirty_nodes: HashSet<String>,
    all_dirty: bool,
}

impl Routes {
    pub(crate) fn new(host: &str, host_ip: Option<IpAddr>) -> Routes {
        Routes {
            host: host.to_string(),
            host_ip,
            ..Routes::default()
        }
    }

    fn mark_node_sources(&mut self, node: &str) {
        if let Some(bs) = self.blocks_by_node.get(node) {
            self.dirty_sources
                .extend(bs.iter().map(|b| Source::Block(*b)));
        }
        if let Some(ws) = self.weps_by_node.get(node) {
            self.dirty_sources
                .extend(ws.iter().map(|w| Source::Wep(w.clone())));
        }
    }

    pub(crate) fn set_node(&mut self, name: &str, info: Option<NodeInfo>) {
        if self.nodes.get(name) == info.as_ref() {
            return;
        }
        match info {
            Some(i) => self.nodes.insert(name.to_string(), i),
            None => self.nodes.remove(name),
        };
        if name == self.host {
            // Our subnet decides CrossSubnet for every remote source.
            self.all_dirty = true;
        } else {
            self.mark_node_sources(name);
        }
        self.dirty_nodes.insert(name.to_string());
    }

    pub(crate) fn set_pools(&mut self, mut pools: Vec<(IpNet, Encap)>) {
        pools.sort_by_key(|(n, _)| (n.addr(), n.prefix_len()));
        if pools != self.pools {
            self.pools = pools;
            self.all_dirty = true;
        }
    }

    pub(crate) fn set_block(&mut self, cidr: IpNet, affinity: Option<Option<String>>) {
        let old = self.blocks.get(&cidr).cloned();
        if old == affinity {
            return;
        }
        if let Some(Some(n)) = &old {
            if let Some(s) = self.blocks_by_node.get_mut(n) {
                s.remove(&cidr);
                if s.is_empty() {
                    self.blocks_by_node.remove(n);
                }
            }
        }
        match &affinity {
            Some(a) => {
                if let Some(n) = a {
                    self.blocks_by_node
                        .entry(n.clone())
                        .or_default()
                        .insert(cidr);
                }
                self.blocks.insert(cidr, a.clone());
            }
            None => {
                self.blocks.remove(&cidr);
            }
        }
        self.dirty_sources.insert(Source::Block(cidr));
        // Endpoint host routes depend on which blocks their node owns.
        for n in [old.flatten(), affinity.flatten()].into_iter().flatten() {
            if let Some(ws) = self.weps_by_node.get(&n) {
                self.dirty_sources
                    .extend(ws.iter().map(|w| Source::Wep(w.clone())));
            }
        }
    }

    pub(crate) fn set_wep(&mut self, key: &EndpointKey, wep: Option<WepRoutes>) {
        let key = Arc::new(key.clone());
        let old = self.weps.get(&key);
        if old == wep.as_ref() {
            return;
        }
        if let Some(o) = old {
            if let Some(s) = self.weps_by_node.get_mut(&o.node) {
                s.remove(&key);
                if s.is_empty() {
                    self.weps_by_node.remove(&o.node);
                }
            }
        }
        match wep {
            Some(w) => {
                self.weps_by_node
                    .entry(w.node.clone())
                    .or_default()
                    .insert(key.clone());
                self.weps.insert(key.clone(), w);
            }
            None => {
                self.weps.remove(&key);
            }
        }
        self.dirty_sources.insert(Source::Wep(key));
    }

    fn pool_encap(&self, dst: &IpNet) -> Encap {
        self.pools
            .iter()
            .filter(|(p, _)| p.contains(dst))
            .max_by_key(|(p, _)| p.prefix_len())
            .map_or(Encap::Never, |(_, e)| *e)
    }

    fn vtep(&self, node: &str) -> Option<Vtep> {
        let n = self.nodes.get(node)?;
        let (tunnel_ip, mac) = n.vtep.clone()?;
        let node_ip = match n.ip {
            Some(ip) => ip,
            None if node == self.host => self.host_ip?,
            None => return None,
        };
        Some(Vtep {
            node: node.to_string(),
            node_ip,
            tunnel_ip,
            mac,
        })
    }

    fn same_subnet(&self, ip: IpAddr) -> bool {
        let own = self.nodes.get(&self.host).and_then(|n| n.v4_net);
        match (own, ip) {
            (Some(net), IpAddr::V4(a)) => net.trunc().contains(&a),
            _ => false,
        }
    }

    /// How to reach `dst`, owned by remote `node`, if its pool says so.
    fn remote_target(&self, node: &str, dst: &IpNet) -> Option<RouteTarget> {
        if !matches!(dst, IpNet::V4(_)) {
            return None;
        }
        let encap = self.pool_encap(dst);
        let n = self.nodes.get(node)?;
        let vxlan = || {
            self.vtep(node).map(|v| RouteTarget::Vxlan {
                gateway: v.tunnel_ip,
            })
        };
        match encap {
            Encap::Never => None,
            Encap::Always => vxlan(),
            Encap::CrossSubnet => match n.ip {
                Some(ip) if self.same_subnet(ip) => Some(RouteTarget::NoEncap { gateway: ip }),
                _ => vxlan(),
            },
        }
    }

    fn compute(&self, src: &Source) -> Vec<(u8, IpNet, RouteTarget)> {
        match src {
            Source::Block(cidr) => match self.blocks.get(cidr) {
                Some(Some(node)) if *node == self.host => {
                    if cidr.prefix_len() == cidr.max_prefix_len() {
                        vec![]
                    } else {
                        vec![(PRIO_BLOCK, *cidr, RouteTarget::Blackhole)]
                    }
                }
                Some(Some(node)) => self
                    .remote_target(node, cidr)
                    .map(|t| vec![(PRIO_BLOCK, *cidr, t)])
                    .unwrap_or_default(),
                _ => vec![],
            },
            Source::Wep(key) => {
                let Some(w) = self.weps.get(key) else {
                    return vec![];
                };
                if w.node == self.host {
                    return match &w.local_iface {
                        Some(iface) => w
                            .addrs
                            .iter()
                            .map(|a| {
                                (
                                    PRIO_LOCAL,
                                    *a,
                                    RouteTarget::Local {
                                        iface: iface.clone(),
                                    },
                                )
                            })
                            .collect(),
                        None => vec![],
                    };
                }
                let own_blocks = self.blocks_by_node.get(&w.node);
                w.addrs
                    .iter()
                    .filter(|a| !own_blocks.is_some_and(|bs| bs.iter().any(|b| b.contains(*a))))
                    .filter_map(|a| {
                        self.remote_target(&w.node, a)
                            .map(|t| (PRIO_REMOTE_WEP, *a, t))
                    })
                    .collect()
            }
        }
    }

    pub(crate) fn flush(
        &mut self,
        routes: &mut Tracked<IpNet, RouteTarget>,
        vteps: &mut Tracked<String, Vtep>,
    ) {
        if std::mem::take(&mut self.all_dirty) {
            self.dirty_sources
                .extend(self.blocks.keys().map(|b| Source::Block(*b)));
            self.dirty_sources
                .extend(self.weps.keys().map(|k| Source::Wep(k.clone())));
            self.dirty_nodes.extend(self.nodes.keys().cloned());
        }
        let mut dirty_dsts: HashSet<IpNet> = HashSet::new();
        for src in std::mem::take(&mut self.dirty_sources) {
            let new = self.compute(&src);
            for dst in self.src_routes.remove(&src).unwrap_or_default() {
                if let Some(c) = self.contrib.get_mut(&dst) {
                    c.retain(|((_, s), _)| *s != src);
                    if c.is_empty() {
                        self.contrib.remove(&dst);
                    }
                }
                dirty_dsts.insert(dst);
            }
            if !new.is_empty() {
                let mut dsts = Vec::with_capacity(new.len());
                for (prio, dst, target) in new {
                    let c = self.contrib.entry(dst).or_default();
                    let k = (prio, src.clone());
                    let at = c.partition_point(|(x, _)| *x < k);
                    c.insert(at, (k, target));
                    dirty_dsts.insert(dst);
                    dsts.push(dst);
                }
                self.src_routes.insert(src, dsts);
            }
        }
        for dst in dirty_dsts {
            match self
                .contrib
                .get(&dst)
                .and_then(|c| c.first())
                .map(|(_, t)| t)
            {
                Some(t) => routes.set(dst, t.clone()),
                None => routes.remove(&dst),
            }
        }
        for node in std::mem::take(&mut self.dirty_nodes) {
            match self.vtep(&node) {
                Some(v) => vteps.set(node, v),
                None => vteps.remove(&node),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn node(ip: &str, prefix: u8, tunnel: Option<&str>) -> NodeInfo {
        NodeInfo {
            ip: Some(ip.parse().unwrap()),
            v4_net: Some(Ipv4Net::new(ip.parse().unwrap(), prefix).unwrap()),
            vtep: tunnel.map(|t| (t.parse().unwrap(), "66:00:00:00:00:01".into())),
        }
    }

    fn key(name: &str) -> EndpointKey {
        EndpointKey {
            namespace: "openstack".into(),
            name: name.into(),
        }
    }

    fn flush(
        r: &mut Routes,
        t: &mut Tracked<IpNet, RouteTarget>,
        v: &mut Tracked<String, Vtep>,
    ) -> Vec<(IpNet, RouteTarget)> {
        r.flush(t, v);
        let (up, _) = t.drain();
        up
    }

    #[test]
    fn local_blocks_remote_blocks_and_neutron_addresses() {
        let mut r = Routes::new("h1", None);
        let (mut t, mut v) = (Tracked::default(), Tracked::default());
        r.set_node("h1", Some(node("10.0.0.1", 24, Some("192.168.0.1"))));
        r.set_node("h2", Some(node("10.0.1.2", 24, Some("192.168.0.2"))));
        r.set_node("h3", Some(node("10.0.0.3", 24, Some("192.168.0.3"))));
        r.set_pools(vec![
            (net("192.168.0.0/16"), Encap::Always),
            (net("172.16.0.0/16"), Encap::CrossSubnet),
        ]);
        r.set_block(net("192.168.1.0/26"), Some(Some("h1".into())));
        r.set_block(net("192.168.1.64/32"), Some(Some("h1".into())));
        r.set_block(net("192.168.2.0/26"), Some(Some("h2".into())));
        r.set_block(net("172.16.2.0/26"), Some(Some("h2".into())));
        r.set_block(net("172.16.3.0/26"), Some(Some("h3".into())));
        r.set_wep(
            &key("local"),
            Some(WepRoutes {
                node: "h1".into(),
                addrs: vec![net("192.168.1.5/32")],
                local_iface: Some("tap1".into()),
            }),
        );
        r.set_wep(
            &key("in-block"),
            Some(WepRoutes {
                node: "h2".into(),
                addrs: vec![net("192.168.2.7/32")],
                local_iface: None,
            }),
        );
        r.set_wep(
            &key("neutron"),
            Some(WepRoutes {
                node: "h2".into(),
                addrs: vec![net("192.168.9.9/32"), net("10.99.0.1/32")],
                local_iface: None,
            }),
        );
        let mut got = flush(&mut r, &mut t, &mut v);
        got.sort_by_key(|(d, _)| *d);
        let vx = |g: &str| RouteTarget::Vxlan {
            gateway: g.parse().unwrap(),
        };
        assert_eq!(
            got,
            vec![
                (net("172.16.2.0/26"), vx("192.168.0.2")),
                (
                    net("172.16.3.0/26"),
                    RouteTarget::NoEncap {
                        gateway: "10.0.0.3".parse().unwrap()
                    }
                ),
                (net("192.168.1.0/26"), RouteTarget::Blackhole),
                (
                    net("192.168.1.5/32"),
                    RouteTarget::Local {
                        iface: "tap1".into()
                    }
                ),
                (net("192.168.2.0/26"), vx("192.168.0.2")),
                (net("192.168.9.9/32"), vx("192.168.0.2")),
            ]
        );
        let (vt, _) = v.drain();
        assert_eq!(
            vt.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            vec!["h1", "h2", "h3"]
        );
        // A block claimed by h2 now covers the Neutron address: the host route goes.
        r.set_block(net("192.168.9.0/26"), Some(Some("h2".into())));
        r.flush(&mut t, &mut v);
        let (up, rm) = t.drain();
        assert_eq!(up, vec![(net("192.168.9.0/26"), vx("192.168.0.2"))]);
        assert_eq!(rm, vec![net("192.168.9.9/32")]);
        // Node h2 loses its VTEP: its routes and VTEP go.
        r.set_node("h2", Some(node("10.0.1.2", 24, None)));
        r.flush(&mut t, &mut v);
        let (up, rm) = t.drain();
        assert!(up.is_empty());
        assert_eq!(rm.len(), 3, "{rm:?}");
        assert_eq!(v.drain().1, vec!["h2".to_string()]);
    }
}
