//! Choosing the best path (RFC 4271 §9.1.2.2, RFC 4456 §9), in the order
//! BIRD applies: our own routes first (BIRD's static protocol outranks
//! BGP), then a refreshed path over a stale one, then the BGP tie-breaks.

use std::cmp::Ordering;
use std::net::Ipv4Addr;

use crate::wire::Origin;

use super::{Map, Path, PeerId, PeerInfo, Source};

/// LOCAL_PREF assumed when a path carries none (eBGP-learned, local).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// Index of the best path, if any.
pub fn select(paths: &[Path], peers: &Map<PeerId, PeerInfo>) -> Option<usize> {
    (0..paths.len()).min_by(|&a, &b| compare(&paths[a], &paths[b], peers))
}

/// `Less` when `a` is better than `b`.
pub fn compare(a: &Path, b: &Path, peers: &Map<PeerId, PeerInfo>) -> Ordering {
    let pa = peer_of(a, peers);
    let pb = peer_of(b, peers);
    let local = |p: &Path| p.source != Source::Local;
    local(a)
        .cmp(&local(b))
        .then(a.stale.cmp(&b.stale))
        .then_with(|| local_pref(b).cmp(&local_pref(a)))
        .then_with(|| a.attrs.as_path_len().cmp(&b.attrs.as_path_len()))
        .then_with(|| origin_rank(a.attrs.origin).cmp(&origin_rank(b.attrs.origin)))
        .then_with(|| med(a, b))
        .then_with(|| ibgp(pa).cmp(&ibgp(pb)))
        .then_with(|| router_id(a, pa).cmp(&router_id(b, pb)))
        .then_with(|| a.attrs.cluster_list.len().cmp(&b.attrs.cluster_list.len()))
        .then_with(|| pa.map(|p| p.address).cmp(&pb.map(|p| p.address)))
        .then(a.path_id.cmp(&b.path_id))
}

fn peer_of<'a>(p: &Path, peers: &'a Map<PeerId, PeerInfo>) -> Option<&'a PeerInfo> {
    match p.source {
        Source::Peer(id) => peers.get(&id),
        Source::Local => None,
    }
}

fn local_pref(p: &Path) -> u32 {
    p.attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
}

fn origin_rank(o: Origin) -> u8 {
    match o {
        Origin::Igp => 0,
        Origin::Egp => 1,
        Origin::Incomplete => 2,
    }
}

/// MED is compared only between paths from the same neighbouring AS.
fn med(a: &Path, b: &Path) -> Ordering {
    if a.attrs.first_as() != b.attrs.first_as() {
        return Ordering::Equal;
    }
    a.attrs.med.unwrap_or(0).cmp(&b.attrs.med.unwrap_or(0))
}

/// eBGP-learned (false) sorts before iBGP-learned (true).
fn ibgp(p: Option<&PeerInfo>) -> bool {
    p.is_some_and(|p| p.ibgp())
}

/// A reflected path is compared by the router that originated it.
fn router_id(p: &Path, peer: Option<&PeerInfo>) -> u32 {
    let id = p
        .attrs
        .originator_id
        .or(peer.map(|x| x.router_id))
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    u32::from(id)
}
