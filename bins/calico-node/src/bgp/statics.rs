//! Static routes to BGP peers behind a gateway (BGPPeer `reachableBy`).
//! Upstream's template gives each such peer a BIRD static route that
//! BIRD's kernel protocol installs, so it lands in the kernel as
//! `proto bird`, beside the learned routes, and beats a BGP route to the
//! same prefix (BIRD's preferences: static 200, BGP 100).

use std::collections::BTreeMap;

use calico_calc::bgp::BgpIntent;
use calico_dataplane::learned::RTPROT_BIRD;
use calico_dataplane::netlink::{KernelRoute, RouteKind};
use ipnet::IpNet;

/// Kernel changes: a route to program, or None to remove one.
pub type Changes = Vec<(IpNet, Option<KernelRoute>)>;

#[derive(Default)]
pub struct PeerStatics {
    routes: BTreeMap<IpNet, KernelRoute>,
    /// What BGP chose for prefixes a static route hides, given back when
    /// the static route goes.
    hidden: BTreeMap<IpNet, KernelRoute>,
}

impl PeerStatics {
    /// The static routes become `wanted`; returns the kernel changes.
    pub fn set(&mut self, wanted: BTreeMap<IpNet, KernelRoute>) -> Changes {
        let mut changes = Changes::new();
        for dst in self.routes.keys() {
            if !wanted.contains_key(dst) {
                changes.push((*dst, self.hidden.remove(dst)));
            }
        }
        for (dst, route) in &wanted {
            if self.routes.get(dst) != Some(route) {
                changes.push((*dst, Some(route.clone())));
            }
        }
        self.routes = wanted;
        changes
    }

    /// BGP's kernel changes, less those a static route hides.
    pub fn filter(&mut self, changes: Changes) -> Changes {
        changes
            .into_iter()
            .filter(|(dst, route)| {
                if !self.routes.contains_key(dst) {
                    return true;
                }
                match route {
                    Some(r) => self.hidden.insert(*dst, r.clone()),
                    None => self.hidden.remove(dst),
                };
                false
            })
            .collect()
    }
}

/// The static routes the intent's peers ask for: the peer's /32 (/128)
/// via its `reachableBy` gateway.
pub fn wanted(intent: Option<&BgpIntent>) -> BTreeMap<IpNet, KernelRoute> {
    let Some(intent) = intent else {
        return BTreeMap::new();
    };
    intent
        .peers
        .values()
        .filter_map(|p| {
            let gateway = p.reachable_by?;
            let dst = IpNet::from(p.address);
            let route = KernelRoute {
                dst,
                kind: RouteKind::Via {
                    gateway,
                    iface: None,
                    onlink: false,
                },
                protocol: RTPROT_BIRD,
            };
            Some((dst, route))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn via(dst: &str, gw: &str) -> (IpNet, KernelRoute) {
        let dst: IpNet = dst.parse().unwrap();
        let route = KernelRoute {
            dst,
            kind: RouteKind::Via {
                gateway: gw.parse().unwrap(),
                iface: None,
                onlink: false,
            },
            protocol: RTPROT_BIRD,
        };
        (dst, route)
    }

    #[test]
    fn a_static_route_hides_bgp_for_its_prefix_and_gives_it_back_when_it_goes() {
        let mut s = PeerStatics::default();
        let (peer, by_gw) = via("192.168.10.254/32", "10.0.0.1");
        let (_, by_bgp) = via("192.168.10.254/32", "10.0.0.9");
        let (other, other_route) = via("10.65.1.0/26", "10.0.0.9");
        assert_eq!(
            s.set([(peer, by_gw.clone())].into()),
            vec![(peer, Some(by_gw.clone()))]
        );
        assert_eq!(s.set([(peer, by_gw.clone())].into()), vec![], "unchanged");
        let passed = s.filter(vec![
            (peer, Some(by_bgp.clone())),
            (other, Some(other_route.clone())),
        ]);
        assert_eq!(passed, vec![(other, Some(other_route))]);
        assert_eq!(s.set(BTreeMap::new()), vec![(peer, Some(by_bgp))]);
        assert_eq!(s.filter(vec![(peer, None)]), vec![(peer, None)]);
        s.set([(peer, by_gw.clone())].into());
        assert_eq!(s.set(BTreeMap::new()), vec![(peer, None)], "nothing hidden");
    }
}
