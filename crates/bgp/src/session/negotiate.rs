//! Checking the peer's OPEN and working out what both sides agreed to
//! (RFC 4271 §6.2, RFC 4760, RFC 6793, RFC 7911, RFC 4724).

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::wire::{AddPathMode, Capability, Codec, Family, Notification, Open};

use super::SessionConfig;

/// The peer's graceful-restart capability, as it applies to this session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerGracefulRestart {
    pub restart_time: Duration,
    /// The peer says it has just restarted (the R bit).
    pub restarting: bool,
    /// Families for which the peer kept forwarding state across its restart.
    pub forwarding: Vec<Family>,
    /// Families the peer supports graceful restart for at all.
    pub families: Vec<Family>,
}

/// What a session runs with once both OPENs are exchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub peer_as: u32,
    pub peer_id: Ipv4Addr,
    pub hold_time: Duration,
    pub keepalive: Duration,
    pub families: Vec<Family>,
    pub codec: Codec,
    pub route_refresh: bool,
    pub graceful_restart: Option<PeerGracefulRestart>,
    /// Both sides offered graceful restart: the peer keeps our routes
    /// across our restart, and we keep theirs.
    pub graceful_restart_both: bool,
    /// The peer's capabilities as received, for status output.
    pub peer_capabilities: Vec<Capability>,
}

/// OPEN error subcodes (RFC 4271 §4.5).
const OPEN_ERROR: u8 = 2;
const UNSUPPORTED_VERSION: u8 = 1;
const BAD_PEER_AS: u8 = 2;
const BAD_BGP_ID: u8 = 3;
const UNACCEPTABLE_HOLD_TIME: u8 = 6;

/// Checks the peer's OPEN against our configuration and negotiates.
pub fn negotiate(cfg: &SessionConfig, open: &Open) -> Result<Negotiated, Notification> {
    if open.version != 4 {
        return Err(Notification::new(
            OPEN_ERROR,
            UNSUPPORTED_VERSION,
            vec![0, 4],
        ));
    }
    let peer_as = open.asn();
    if peer_as != cfg.peer_as {
        return Err(Notification::new(OPEN_ERROR, BAD_PEER_AS, vec![]));
    }
    if open.hold_time == 1 || open.hold_time == 2 {
        return Err(Notification::new(
            OPEN_ERROR,
            UNACCEPTABLE_HOLD_TIME,
            vec![],
        ));
    }
    let id_unusable = open.bgp_id.is_unspecified()
        || open.bgp_id.is_broadcast()
        || (cfg.is_ibgp() && open.bgp_id == cfg.router_id);
    if id_unusable {
        return Err(Notification::new(OPEN_ERROR, BAD_BGP_ID, vec![]));
    }
    let hold = open.hold_time.min(cfg.hold_time);
    Ok(Negotiated {
        peer_as,
        peer_id: open.bgp_id,
        hold_time: Duration::from_secs(hold.into()),
        keepalive: Duration::from_secs((hold / 3).into()),
        families: common_families(cfg, open),
        codec: codec(cfg, open),
        route_refresh: open.capabilities.iter().any(|c| {
            matches!(
                c,
                Capability::RouteRefresh | Capability::EnhancedRouteRefresh
            )
        }),
        graceful_restart: peer_graceful_restart(open),
        graceful_restart_both: cfg.graceful_restart.is_some()
            && open
                .capabilities
                .iter()
                .any(|c| matches!(c, Capability::GracefulRestart { .. })),
        peer_capabilities: open.capabilities.clone(),
    })
}

/// Families both sides offered; a peer without any multiprotocol
/// capability speaks IPv4 unicast only (RFC 4760 §8).
fn common_families(cfg: &SessionConfig, open: &Open) -> Vec<Family> {
    let offered: Vec<Family> = open
        .capabilities
        .iter()
        .filter_map(|c| match c {
            Capability::Multiprotocol { afi, safi } => Family::from_afi_safi(*afi, *safi),
            _ => None,
        })
        .collect();
    let has_mp = open
        .capabilities
        .iter()
        .any(|c| matches!(c, Capability::Multiprotocol { .. }));
    let theirs = if has_mp {
        offered
    } else {
        vec![Family::Ipv4Unicast]
    };
    cfg.families
        .iter()
        .copied()
        .filter(|f| theirs.contains(f))
        .collect()
}

fn codec(cfg: &SessionConfig, open: &Open) -> Codec {
    let caps = &open.capabilities;
    let four_octet_as = caps.iter().any(|c| matches!(c, Capability::FourOctetAs(_)));
    let extended_message = cfg.extended_message
        && caps
            .iter()
            .any(|c| matches!(c, Capability::ExtendedMessage));
    let peer_add_path: Vec<(Family, AddPathMode)> = caps
        .iter()
        .filter_map(|c| match c {
            Capability::AddPath(list) => Some(list.clone()),
            _ => None,
        })
        .flatten()
        .filter_map(|(afi, safi, mode)| Some((Family::from_afi_safi(afi, safi)?, mode)))
        .collect();
    let mut add_path_rx = Vec::new();
    let mut add_path_tx = Vec::new();
    if let Some(ours) = cfg.add_path {
        for f in &cfg.families {
            let Some((_, theirs)) = peer_add_path.iter().find(|(pf, _)| pf == f) else {
                continue;
            };
            if receives(ours) && sends(*theirs) {
                add_path_rx.push(*f);
            }
            if sends(ours) && receives(*theirs) {
                add_path_tx.push(*f);
            }
        }
    }
    Codec {
        four_octet_as,
        extended_message,
        add_path_rx,
        add_path_tx,
    }
}

fn receives(m: AddPathMode) -> bool {
    matches!(m, AddPathMode::Receive | AddPathMode::Both)
}

fn sends(m: AddPathMode) -> bool {
    matches!(m, AddPathMode::Send | AddPathMode::Both)
}

fn peer_graceful_restart(open: &Open) -> Option<PeerGracefulRestart> {
    open.capabilities.iter().find_map(|c| match c {
        Capability::GracefulRestart {
            restarting,
            restart_time,
            families,
        } => Some(PeerGracefulRestart {
            restart_time: Duration::from_secs((*restart_time).into()),
            restarting: *restarting,
            forwarding: families
                .iter()
                .filter(|(_, _, fwd)| *fwd)
                .filter_map(|(a, s, _)| Family::from_afi_safi(*a, *s))
                .collect(),
            families: families
                .iter()
                .filter_map(|(a, s, _)| Family::from_afi_safi(*a, *s))
                .collect(),
        }),
        _ => None,
    })
}
