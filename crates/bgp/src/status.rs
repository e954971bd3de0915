//! A snapshot of the speaker for status output (`birdc`, `calicoctl node
//! status`, metrics): plain data with wall-clock times.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime};

use ipnet::IpNet;

use crate::rib::Source;
use crate::session::{SessionStats, State};
use crate::speaker::Speaker;
use crate::wire::{Capability, PathAttributes};

#[derive(Clone, Debug, Default)]
pub struct SpeakerStatus {
    pub router_id: Option<Ipv4Addr>,
    pub local_as: u32,
    pub cluster_id: Option<Ipv4Addr>,
    pub started: Option<SystemTime>,
    pub peers: Vec<PeerStatus>,
    /// Present only in full snapshots.
    pub routes: Vec<RouteStatus>,
    /// Per peer (by name), what it was sent; only in full snapshots.
    pub exports: Vec<(String, Vec<(IpNet, PathAttributes)>)>,
}

#[derive(Clone, Debug)]
pub struct PeerStatus {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub local_as: u32,
    pub peer_as: u32,
    pub state: State,
    pub since: SystemTime,
    pub last_error: Option<String>,
    pub neighbor_id: Option<Ipv4Addr>,
    pub source_address: Option<IpAddr>,
    /// (remaining, negotiated) seconds.
    pub hold: Option<(u64, u64)>,
    pub keepalive: Option<(u64, u64)>,
    pub rr_client: bool,
    pub passive: bool,
    pub peer_capabilities: Vec<Capability>,
    pub received: usize,
    pub preferred: usize,
    pub exported: usize,
    /// Established and End-of-RIB received for every family.
    pub synced: bool,
    pub stats: SessionStats,
}

#[derive(Clone, Debug)]
pub struct RouteStatus {
    pub prefix: IpNet,
    /// Protocol name of where it came from (`static1` for our own routes).
    pub from_name: String,
    pub from_address: Option<IpAddr>,
    pub best: bool,
    pub stale: bool,
    pub since: SystemTime,
    pub attrs: PathAttributes,
}

/// Name BIRD's template gives the routes a node originates.
pub const LOCAL_PROTOCOL: &str = "static1";

pub fn snapshot(speaker: &Speaker, started: SystemTime, with_routes: bool) -> SpeakerStatus {
    let now = Instant::now();
    let wall = SystemTime::now();
    let to_wall = |t: Instant| wall - now.saturating_duration_since(t);
    let secs = |d: Duration| d.as_secs();
    let peers = speaker
        .peers()
        .map(|(id, cfg, s)| {
            let neg = s.negotiated();
            PeerStatus {
                name: cfg.name.clone(),
                address: cfg.address,
                port: cfg.port,
                local_as: cfg.session.local_as,
                peer_as: cfg.session.peer_as,
                state: s.state(),
                since: to_wall(s.since()),
                last_error: s.last_error().map(str::to_string),
                neighbor_id: neg.map(|n| n.peer_id),
                source_address: cfg.source_address,
                hold: neg.and_then(|n| Some((secs(s.hold_remaining(now)?), secs(n.hold_time)))),
                keepalive: neg
                    .and_then(|n| Some((secs(s.keepalive_remaining(now)?), secs(n.keepalive)))),
                rr_client: cfg.rr_client,
                passive: cfg.session.passive,
                peer_capabilities: neg.map(|n| n.peer_capabilities.clone()).unwrap_or_default(),
                received: speaker.rib().received_count(id),
                preferred: speaker.rib().preferred_count(id),
                exported: speaker.rib().exported_count(id),
                synced: speaker.synced(id),
                stats: s.stats().clone(),
            }
        })
        .collect();
    let routes = if with_routes {
        routes(speaker, &to_wall)
    } else {
        Vec::new()
    };
    let exports = if with_routes {
        speaker
            .peers()
            .map(|(id, cfg, _)| {
                let mut sent = speaker.rib().exported(id);
                sent.sort_by_key(|a| a.0);
                (cfg.name.clone(), sent)
            })
            .collect()
    } else {
        Vec::new()
    };
    SpeakerStatus {
        router_id: Some(speaker.rib().router_id()),
        local_as: speaker.rib().local_as(),
        cluster_id: speaker.rib().cluster_id(),
        started: Some(started),
        peers,
        routes,
        exports,
    }
}

fn routes(speaker: &Speaker, to_wall: &dyn Fn(Instant) -> SystemTime) -> Vec<RouteStatus> {
    let mut out = Vec::new();
    for (prefix, paths, best_first) in speaker.rib().iter() {
        for (i, p) in paths.iter().enumerate() {
            let (from_name, from_address) = match p.source {
                Source::Local => (LOCAL_PROTOCOL.to_string(), None),
                Source::Peer(id) => match speaker.peer_config(id) {
                    Some(c) => (c.name.clone(), Some(c.address)),
                    None => continue,
                },
            };
            out.push(RouteStatus {
                prefix,
                from_name,
                from_address,
                best: best_first && i == 0,
                stale: p.stale,
                since: to_wall(p.since.instant()),
                attrs: (*p.attrs).clone(),
            });
        }
    }
    out.sort_by(|a, b| a.prefix.cmp(&b.prefix).then(b.best.cmp(&a.best)));
    out
}
