//! From what the calculation wants (`BgpIntent`) to what the speaker runs
//! (peer configs, local routes), and from the speaker's best paths to
//! kernel routes.

use std::net::IpAddr;

use calico_bgp::rib::{BestChange, Source};
use calico_bgp::session::SessionConfig;
use calico_bgp::speaker::PeerConfig;
use calico_bgp::wire::{Family, PathAttributes};
use calico_calc::bgp::{
    BgpCommunity, BgpIntent, Encapsulation, NextHopMode, PeerIntent, PoolRouting,
};
use calico_dataplane::netlink::{KernelRoute, RouteKind};
use ipnet::IpNet;

/// Name of the IP-in-IP device learned routes of IP-in-IP pools use.
pub const IPIP_IFACE: &str = "tunl0";

/// One session per peering, of the peer's address family, as upstream
/// runs separate `bird` and `bird6` with the same timers.
pub fn peer_configs(intent: &BgpIntent) -> Vec<PeerConfig> {
    intent
        .peers
        .values()
        .map(|p| peer_config(intent, p))
        .collect()
}

fn peer_config(intent: &BgpIntent, p: &PeerIntent) -> PeerConfig {
    let mut s = SessionConfig::new(p.local_as, p.peer_as, intent.router_id);
    s.families = vec![if p.address.is_ipv4() {
        Family::Ipv4Unicast
    } else {
        Family::Ipv6Unicast
    }];
    s.passive = p.passive;
    s.graceful_restart = Some(p.effective_restart_time());
    PeerConfig {
        name: p.name.clone(),
        address: p.address,
        port: p.port,
        session: s,
        rr_client: p.rr_client,
        keep_next_hop: p.keep_next_hop || p.next_hop_mode == Some(NextHopMode::Keep),
        next_hop_self: p.next_hop_mode == Some(NextHopMode::ForceSelf),
        local_v4: intent.ipv4.map(|n| n.addr()),
        local_v6: intent.ipv6.map(|n| n.addr()),
        source_address: p.source_address,
        password: p.password.as_ref().map(|pw| pw.0.clone()),
        allow_local_as: p.num_allowed_local_as.unwrap_or(0),
        ttl_security: p.ttl_security,
    }
}

/// This node's own routes, with the communities `prefixAdvertisements`
/// give them (every advertisement whose prefix contains the route).
pub fn local_routes(intent: &BgpIntent) -> Vec<(IpNet, PathAttributes)> {
    intent
        .originate
        .iter()
        .map(|o| {
            let mut attrs = PathAttributes::default();
            for (prefix, comms) in &intent.communities {
                if prefix.contains(&o.prefix) {
                    for c in comms {
                        match *c {
                            BgpCommunity::Standard(a, b) => {
                                attrs.communities.push((u32::from(a) << 16) | u32::from(b))
                            }
                            BgpCommunity::Large(a, b, c) => attrs.large_communities.push([a, b, c]),
                        }
                    }
                }
            }
            attrs.communities.sort_unstable();
            attrs.communities.dedup();
            (o.prefix, attrs)
        })
        .collect()
}

/// The kernel route for a best-path change: None removes ours. Our own
/// routes are not programmed here (blocks are blackholes from the routing
/// manager); routes in VXLAN pools are the VXLAN dataplane's; routes in
/// IP-in-IP pools go through the tunnel, except CrossSubnet ones to a next
/// hop in our own subnet (upstream's `calico_kernel_programming` filter).
pub fn kernel_route(change: &BestChange, intent: Option<&BgpIntent>) -> Option<KernelRoute> {
    let best = change.best.as_ref()?;
    if best.source == Source::Local {
        return None;
    }
    let gateway: IpAddr = match change.prefix {
        IpNet::V4(_) => IpAddr::V4(best.attrs.next_hop?),
        IpNet::V6(_) => IpAddr::V6(best.attrs.mp_next_hop?.global),
    };
    let ours = intent.is_some_and(|i| {
        i.ipv4.is_some_and(|n| IpAddr::V4(n.addr()) == gateway)
            || i.ipv6.is_some_and(|n| IpAddr::V6(n.addr()) == gateway)
    });
    if ours || gateway.is_unspecified() {
        return None;
    }
    let pool = intent.and_then(|i| pool_of(&i.pools, &change.prefix));
    let kind = match pool.map(|p| p.encapsulation) {
        Some(Encapsulation::Vxlan { .. }) => return None,
        Some(Encapsulation::IpIp { cross_subnet })
            if !(cross_subnet && same_subnet(intent, gateway)) =>
        {
            RouteKind::Via {
                gateway,
                iface: Some(IPIP_IFACE.to_string()),
                onlink: true,
            }
        }
        _ => RouteKind::Via {
            gateway,
            iface: None,
            onlink: false,
        },
    };
    Some(KernelRoute {
        dst: change.prefix,
        kind,
        protocol: calico_dataplane::learned::RTPROT_BIRD,
    })
}

/// The most specific pool containing `prefix`.
pub fn pool_of<'a>(pools: &'a [PoolRouting], prefix: &IpNet) -> Option<&'a PoolRouting> {
    pools
        .iter()
        .filter(|p| p.cidr.contains(prefix))
        .max_by_key(|p| p.cidr.prefix_len())
}

fn same_subnet(intent: Option<&BgpIntent>, gateway: IpAddr) -> bool {
    match (intent, gateway) {
        (Some(i), IpAddr::V4(g)) => i.ipv4.is_some_and(|n| n.contains(&g)),
        (Some(i), IpAddr::V6(g)) => i.ipv6.is_some_and(|n| n.contains(&g)),
        _ => false,
    }
}

/// Where the speaker listens: all addresses, or the node's only with
/// `bindMode: NodeIP`.
pub fn listen_address(intent: &BgpIntent) -> std::net::SocketAddr {
    let ip = match (intent.bind_node_ip, intent.ipv4) {
        (true, Some(n)) => IpAddr::V4(n.addr()),
        _ => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    };
    std::net::SocketAddr::new(ip, intent.listen_port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use calico_bgp::rib::{Path, PeerId};
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    fn intent(pools: Vec<PoolRouting>) -> BgpIntent {
        BgpIntent {
            node_name: "h1".into(),
            router_id: "192.0.2.11".parse().unwrap(),
            local_as: 64512,
            listen_port: 179,
            bind_node_ip: false,
            ipv4: Some("192.0.2.11/24".parse().unwrap()),
            ipv6: None,
            rr_cluster_id: None,
            peers: BTreeMap::new(),
            originate: BTreeSet::new(),
            pools,
            communities: BTreeMap::new(),
            filters: BTreeMap::new(),
        }
    }

    fn pool(cidr: &str, encapsulation: Encapsulation) -> PoolRouting {
        PoolRouting {
            name: cidr.into(),
            cidr: cidr.parse().unwrap(),
            encapsulation,
            disable_bgp_export: false,
            nat_outgoing: false,
            disabled: false,
        }
    }

    fn learned(prefix: &str, next_hop: &str) -> BestChange {
        let attrs = PathAttributes {
            next_hop: Some(next_hop.parse().unwrap()),
            ..Default::default()
        };
        BestChange {
            prefix: prefix.parse().unwrap(),
            best: Some(Path {
                source: Source::Peer(PeerId(1)),
                path_id: 0,
                attrs: Arc::new(attrs),
                stale: false,
                since: calico_bgp::rib::Since::at(std::time::Instant::now()),
                local_id: 1,
            }),
        }
    }

    #[test]
    fn bgppeer_ttl_security_and_next_hop_self_reach_the_session() {
        let mut i = intent(vec![]);
        let peer = calico_calc::bgp::PeerIntent {
            name: "Global_192_168_10_254".into(),
            kind: calico_calc::bgp::PeerKind::Global,
            bgp_peer: Some("tor".into()),
            address: "192.168.10.254".parse().unwrap(),
            port: 179,
            peer_as: 64512,
            local_as: 64512,
            passive: false,
            source_address: None,
            rr_client: false,
            keep_next_hop: false,
            next_hop_mode: Some(NextHopMode::ForceSelf),
            restart_time: None,
            password: None,
            filters: vec![],
            ttl_security: Some(2),
            num_allowed_local_as: None,
            reachable_by: None,
        };
        i.peers.insert(peer.name.clone(), peer);
        let cfgs = peer_configs(&i);
        assert_eq!(cfgs.len(), 1);
        assert_eq!(cfgs[0].ttl_security, Some(2));
        assert!(cfgs[0].next_hop_self && !cfgs[0].keep_next_hop);
    }

    #[test]
    fn learned_routes_follow_the_pool_encapsulation() {
        let i = intent(vec![
            pool("198.19.0.0/16", Encapsulation::None),
            pool("10.10.0.0/16", Encapsulation::IpIp { cross_subnet: true }),
            pool(
                "10.20.0.0/16",
                Encapsulation::Vxlan {
                    cross_subnet: false,
                },
            ),
        ]);
        let native = kernel_route(&learned("198.19.1.0/26", "192.0.2.12"), Some(&i)).unwrap();
        assert_eq!(
            native.kind,
            RouteKind::Via {
                gateway: "192.0.2.12".parse().unwrap(),
                iface: None,
                onlink: false
            }
        );
        assert_eq!(native.protocol, 12);
        // CrossSubnet IP-in-IP: plain within our subnet, tunnel beyond it.
        let near = kernel_route(&learned("10.10.1.0/26", "192.0.2.12"), Some(&i)).unwrap();
        assert_eq!(near.iface(), None);
        let far = kernel_route(&learned("10.10.2.0/26", "203.0.113.5"), Some(&i)).unwrap();
        assert_eq!(far.iface(), Some(IPIP_IFACE));
        assert!(
            kernel_route(&learned("10.20.1.0/26", "192.0.2.12"), Some(&i)).is_none(),
            "VXLAN pools are VXLAN's"
        );
        assert!(
            kernel_route(&learned("198.19.2.0/26", "192.0.2.11"), Some(&i)).is_none(),
            "never via ourselves"
        );
        let gone = BestChange {
            prefix: "198.19.1.0/26".parse().unwrap(),
            best: None,
        };
        assert!(kernel_route(&gone, Some(&i)).is_none());
    }
}
