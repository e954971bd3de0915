//! The speaker's status as BIRD would show it: one view per address family
//! (`bird.ctl` for IPv4, `bird6.ctl` for IPv6, as upstream runs two
//! daemons), with the protocols Calico's template configures (`static1`,
//! `kernel1`, `device1`, `direct1`, then one BGP protocol per peer).

use std::net::IpAddr;
use std::time::SystemTime;

use crate::session::State;
use crate::status::{PeerStatus, RouteStatus, SpeakerStatus, LOCAL_PROTOCOL};
use crate::wire::{self, AsSegment, Capability};

use super::view::*;

/// `iface_for` names the interface a next hop is reached on (BIRD prints
/// `via GW on IFACE`).
pub fn bird_view(
    status: &SpeakerStatus,
    ipv6: bool,
    iface_for: &dyn Fn(IpAddr) -> String,
) -> BirdView {
    let started = status.started.unwrap_or(SystemTime::UNIX_EPOCH);
    let mut protocols: Vec<ProtocolView> = ["static1", "kernel1", "device1", "direct1"]
        .into_iter()
        .zip([
            ProtoKind::Static,
            ProtoKind::Kernel,
            ProtoKind::Device,
            ProtoKind::Direct,
        ])
        .map(|(n, k)| ProtocolView::new(n, k, ProtoState::Up, started))
        .collect();
    protocols.extend(
        status
            .peers
            .iter()
            .filter(|p| p.address.is_ipv6() == ipv6)
            .map(protocol),
    );
    let routes = status
        .routes
        .iter()
        .filter(|r| r.prefix.addr().is_ipv6() == ipv6)
        .map(|r| route(r, iface_for))
        .collect();
    BirdView {
        ipv6,
        router_id: status.router_id.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
        now: SystemTime::now(),
        started,
        reconfigured: started,
        protocols,
        routes,
        ..BirdView::default()
    }
}

fn protocol(p: &PeerStatus) -> ProtocolView {
    let established = p.state == State::Established;
    let state = if established {
        ProtoState::Up
    } else {
        ProtoState::Start
    };
    let mut v = ProtocolView::new(&p.name, ProtoKind::Bgp, state, p.since);
    v.description = Some("Connection to BGP peer".to_string());
    v.input_filter = "calico_import_from_bgp_peers".to_string();
    v.output_filter = "calico_export_to_bgp_peers".to_string();
    v.stats.imported = p.received as u32;
    v.stats.exported = p.exported as u32;
    v.stats.preferred = p.preferred as u32;
    let mut d = BgpDetail::new(bgp_state(p.state), p.address, p.peer_as, p.local_as);
    d.passive = p.passive;
    d.multihop = true;
    d.rr_client = p.rr_client;
    d.last_error = if established {
        None
    } else {
        p.last_error.clone()
    };
    if let (true, Some(id)) = (established, p.neighbor_id) {
        d.session = Some(session(p, id));
    }
    v.bgp = Some(d);
    v
}

fn bgp_state(s: State) -> BgpState {
    match s {
        State::Idle => BgpState::Idle,
        State::Connect => BgpState::Connect,
        State::Active => BgpState::Active,
        State::OpenSent => BgpState::OpenSent,
        State::OpenConfirm => BgpState::OpenConfirm,
        State::Established => BgpState::Established,
    }
}

fn session(p: &PeerStatus, neighbor_id: std::net::Ipv4Addr) -> BgpSession {
    let caps = &p.peer_capabilities;
    let has = |f: &dyn Fn(&Capability) -> bool| caps.iter().any(f);
    let add_path = caps.iter().find_map(|c| match c {
        Capability::AddPath(l) => Some(l.clone()),
        _ => None,
    });
    let peer_sends = add_path
        .as_ref()
        .is_some_and(|l| l.iter().any(|(_, _, m)| *m != wire::AddPathMode::Receive));
    let peer_receives = add_path
        .as_ref()
        .is_some_and(|l| l.iter().any(|(_, _, m)| *m != wire::AddPathMode::Send));
    let gr = caps.iter().find_map(|c| match c {
        Capability::GracefulRestart { families, .. } => {
            Some(families.iter().any(|(_, _, fwd)| *fwd))
        }
        _ => None,
    });
    let as4 = has(&|c| matches!(c, Capability::FourOctetAs(_)));
    let secs = |t: Option<(u64, u64)>| t.map_or((0, 0), |(a, b)| (a as u32, b as u32));
    BgpSession {
        neighbor_id,
        neighbor_caps: NeighborCaps {
            refresh: has(&|c| matches!(c, Capability::RouteRefresh)),
            enhanced_refresh: has(&|c| matches!(c, Capability::EnhancedRouteRefresh)),
            graceful_restart: match gr {
                None => GrCapability::None,
                Some(false) => GrCapability::Aware,
                Some(true) => GrCapability::Able,
            },
            long_lived_gr: GrCapability::None,
            as4,
            add_path_rx: peer_sends,
            add_path_tx: peer_receives,
            ext_messages: has(&|c| matches!(c, Capability::ExtendedMessage)),
        },
        as4,
        add_path_rx: peer_sends,
        add_path_tx: peer_receives,
        ext_messages: false,
        source_address: p.source_address.unwrap_or(p.address),
        hold_timer: secs(p.hold),
        keepalive_timer: secs(p.keepalive),
    }
}

fn route(r: &RouteStatus, iface_for: &dyn Fn(IpAddr) -> String) -> RouteView {
    if r.from_name == LOCAL_PROTOCOL {
        let mut v = RouteView::new(
            r.prefix,
            RouteDest::Blackhole,
            LOCAL_PROTOCOL,
            RouteSource::Static,
            r.since,
        );
        v.primary = r.best;
        return v;
    }
    let a = &r.attrs;
    let next_hop: Option<IpAddr> = match r.prefix {
        ipnet::IpNet::V4(_) => a.next_hop.map(IpAddr::V4),
        ipnet::IpNet::V6(_) => a.mp_next_hop.map(|n| IpAddr::V6(n.global)),
    };
    let dest = match next_hop {
        Some(gw) => RouteDest::Via {
            gateway: gw,
            iface: iface_for(gw),
        },
        None => RouteDest::Unreachable,
    };
    let mut v = RouteView::new(r.prefix, dest, &r.from_name, RouteSource::Bgp, r.since);
    v.primary = r.best;
    v.from = r.from_address.filter(|f| Some(*f) != next_hop);
    v.bgp = Some(BgpRouteAttrs {
        origin: match a.origin {
            wire::Origin::Igp => Origin::Igp,
            wire::Origin::Egp => Origin::Egp,
            wire::Origin::Incomplete => Origin::Incomplete,
        },
        as_path: a
            .as_path
            .iter()
            .flat_map(|s| match s {
                AsSegment::Sequence(v) | AsSegment::Set(v) => v.clone(),
            })
            .collect(),
        next_hop,
        next_hop_link_local: a.mp_next_hop.and_then(|n| n.link_local).map(IpAddr::V6),
        med: a.med,
        local_pref: a.local_pref,
        atomic_aggregate: a.atomic_aggregate,
        communities: a
            .communities
            .iter()
            .map(|c| ((c >> 16) as u16, *c as u16))
            .collect(),
        originator_id: a.originator_id,
        cluster_list: a.cluster_list.clone(),
        igp_metric: None,
        stale: r.stale,
    });
    v
}
