//! What each peer is sent: iBGP split horizon and route reflection
//! (RFC 4456), the operator's export policy, and the attribute changes at
//! the AS boundary. Per peer, what was last sent is remembered, so only
//! differences go out and a ROUTE-REFRESH can send everything again.

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::wire::{AsSegment, Family, MpNextHop, Nlri, PathAttributes, Update};

use super::best::DEFAULT_LOCAL_PREF;
use super::{Entry, Map, Path, PeerId, PeerInfo, Source};

/// The operator's filters (Calico's export rules, BGPFilters).
pub trait ExportPolicy {
    /// Whether `peer` may be sent this best path.
    fn allow(&self, peer: &PeerInfo, prefix: &IpNet, path: &Path) -> bool;
    /// Whether a route received from `peer` is accepted at all.
    fn import(&self, _peer: &PeerInfo, _prefix: &IpNet, _attrs: &PathAttributes) -> bool {
        true
    }
}

/// Exports everything the BGP rules allow.
pub struct ExportAll;

impl ExportPolicy for ExportAll {
    fn allow(&self, _: &PeerInfo, _: &IpNet, _: &Path) -> bool {
        true
    }
}

pub(super) struct Context<'a> {
    pub cluster_id: Option<Ipv4Addr>,
    pub peers: &'a Map<PeerId, PeerInfo>,
}

/// What one peer has been sent, and which prefixes to look at again.
/// Per prefix, the path ids sent (0 without ADD-PATH) with their attributes.
#[derive(Default)]
pub struct PeerExport {
    sent: Map<IpNet, Sent>,
    /// Paths in `sent` (with ADD-PATH, several per prefix), kept so status
    /// output need not count.
    count: usize,
    /// Prefixes to look at for this peer only (it came up, asked for a
    /// refresh); those changed for everyone come to `flush` separately.
    pending: Vec<IpNet>,
}

/// The paths one prefix was sent as: nearly always one, kept in place.
#[derive(Default)]
enum Sent {
    #[default]
    None,
    One((u32, Arc<PathAttributes>)),
    Many(Vec<(u32, Arc<PathAttributes>)>),
}

impl Sent {
    fn push(&mut self, x: (u32, Arc<PathAttributes>)) {
        *self = match std::mem::take(self) {
            Sent::None => Sent::One(x),
            Sent::One(a) => Sent::Many(vec![a, x]),
            Sent::Many(mut v) => {
                v.push(x);
                Sent::Many(v)
            }
        }
    }
}

impl std::ops::Deref for Sent {
    type Target = [(u32, Arc<PathAttributes>)];

    fn deref(&self) -> &Self::Target {
        match self {
            Sent::None => &[],
            Sent::One(x) => std::slice::from_ref(x),
            Sent::Many(v) => v,
        }
    }
}

impl PeerExport {
    /// Paths sent (with ADD-PATH, several per prefix).
    pub fn len(&self) -> usize {
        self.count
    }

    /// What the peer was sent, by prefix.
    pub fn sent(&self) -> impl Iterator<Item = (&IpNet, &PathAttributes)> {
        self.sent
            .iter()
            .flat_map(|(p, v)| v.iter().map(move |(_, a)| (p, &**a)))
    }

    pub fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    pub(super) fn mark_all(&mut self, prefixes: impl IntoIterator<Item = IpNet>) {
        self.pending.extend(prefixes);
    }

    /// Forgets what was sent, so everything is sent again.
    pub(super) fn forget(&mut self) {
        self.sent.clear();
        self.count = 0;
    }

    /// The UPDATEs that bring the peer from what it has to what it should
    /// have, for its pending prefixes and `changed` (sorted, the prefixes
    /// changed for everyone, with their entries: shared, so a burst is not
    /// copied per peer). `entry` looks up a pending prefix's paths. A peer
    /// with ADD-PATH gets every path it may hear, best first, each under
    /// its own path id (as BIRD's `add paths tx`); others get the best path
    /// if they may hear it. Announcements sharing attributes go in one
    /// UPDATE (the codec splits it to the message size).
    pub(super) fn flush<'p>(
        &mut self,
        id: PeerId,
        peer: &PeerInfo,
        ctx: &Context,
        policy: &dyn ExportPolicy,
        entry: impl Fn(&IpNet) -> Option<&'p Entry>,
        changed: &[(IpNet, Option<&'p Entry>)],
    ) -> Vec<Update> {
        if self.pending.is_empty() && changed.is_empty() {
            return Vec::new();
        }
        let mut withdrawn = Vec::new();
        let mut groups: Map<Arc<PathAttributes>, Vec<Nlri>> = Map::default();
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_unstable();
        pending.dedup();
        for (prefix, e) in merge_sorted(&pending, changed, entry) {
            let add_path = peer.add_path_tx.contains(&Family::of(&prefix));
            let best = e.and_then(|e| e.best());
            let others = e.filter(|_| add_path).into_iter().flat_map(|e| {
                e.paths
                    .iter()
                    .enumerate()
                    .filter(move |(i, _)| *i as u32 != e.best)
                    .map(|(_, p)| p)
            });
            let nlri = |path_id: u32| Nlri {
                prefix,
                path_id: add_path.then_some(path_id),
            };
            let had = self.sent.remove(&prefix).unwrap_or_default();
            self.count -= had.len();
            let mut now_sent = Sent::None;
            for p in best.into_iter().chain(others) {
                if !may_send(id, peer, ctx, policy, &prefix, p) {
                    continue;
                }
                let Some(attrs) = outgoing_attrs(peer, ctx, &prefix, p) else {
                    continue;
                };
                let path_id = if add_path { p.local_id } else { 0 };
                match had.iter().find(|(i, a)| *i == path_id && **a == attrs) {
                    Some((_, same)) => now_sent.push((path_id, same.clone())),
                    None => {
                        let attrs = Arc::new(attrs);
                        groups.entry(attrs.clone()).or_default().push(nlri(path_id));
                        now_sent.push((path_id, attrs));
                    }
                }
            }
            for (old_id, _) in had.iter() {
                if !now_sent.iter().any(|(i, _)| i == old_id) {
                    withdrawn.push(nlri(*old_id));
                }
            }
            if !now_sent.is_empty() {
                self.count += now_sent.len();
                self.sent.insert(prefix, now_sent);
            }
        }
        let mut out = Vec::new();
        if !withdrawn.is_empty() {
            out.push(Update {
                withdrawn,
                ..Default::default()
            });
        }
        for (attrs, announced) in groups {
            out.push(Update {
                announced,
                attrs: (*attrs).clone(),
                ..Default::default()
            });
        }
        out
    }
}

/// The union of a sorted list of prefixes and a sorted list of prefixes
/// with a value each (their entries), sorted, each prefix once, with its
/// value (looked up with `best` for those only in the first list).
fn merge_sorted<'a, T: Copy + 'a>(
    a: &'a [IpNet],
    b: &'a [(IpNet, T)],
    best: impl Fn(&IpNet) -> T + 'a,
) -> impl Iterator<Item = (IpNet, T)> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        let next = match (a.get(i), b.get(j)) {
            (None, None) => return None,
            (Some(x), None) => (*x, best(x)),
            (None, Some(y)) => *y,
            (Some(x), Some(y)) if y.0 <= *x => *y,
            (Some(x), Some(_)) => (*x, best(x)),
        };
        while a.get(i) == Some(&next.0) {
            i += 1;
        }
        while b.get(j).is_some_and(|y| y.0 == next.0) {
            j += 1;
        }
        Some(next)
    })
}

/// The BGP rules on who may hear a path, then the operator's policy.
fn may_send(
    id: PeerId,
    peer: &PeerInfo,
    ctx: &Context,
    policy: &dyn ExportPolicy,
    prefix: &IpNet,
    path: &Path,
) -> bool {
    if !peer.families.contains(&Family::of(prefix)) {
        return false;
    }
    if let Source::Peer(src) = path.source {
        if src == id {
            return false;
        }
        let Some(from) = ctx.peers.get(&src) else {
            return false;
        };
        // iBGP split horizon; a reflector passes client routes to everyone
        // and non-client routes to clients (RFC 4456 §6).
        if from.ibgp()
            && peer.ibgp()
            && !(ctx.cluster_id.is_some() && (from.rr_client || peer.rr_client))
        {
            return false;
        }
    }
    policy.allow(peer, prefix, path)
}

/// The attributes as this peer receives them; None when there is no
/// next hop we could give it.
fn outgoing_attrs(
    peer: &PeerInfo,
    ctx: &Context,
    prefix: &IpNet,
    path: &Path,
) -> Option<PathAttributes> {
    let mut a = (*path.attrs).clone();
    let mut next_hop_self = path.source == Source::Local || peer.next_hop_self;
    if peer.ibgp() {
        a.local_pref = Some(a.local_pref.unwrap_or(DEFAULT_LOCAL_PREF));
        if let Source::Peer(src) = path.source {
            if ctx.peers.get(&src).is_some_and(|f| f.ibgp()) {
                reflect(&mut a, ctx, ctx.peers[&src].router_id);
            }
        }
    } else {
        prepend(&mut a, peer.local_as);
        a.local_pref = None;
        a.originator_id = None;
        a.cluster_list.clear();
        if path.source != Source::Local {
            a.med = None;
        }
        next_hop_self |= !peer.keep_next_hop;
    }
    match prefix {
        IpNet::V4(_) => {
            a.mp_next_hop = None;
            if next_hop_self || a.next_hop.is_none() {
                a.next_hop = Some(peer.local_v4?);
            }
        }
        IpNet::V6(_) => {
            a.next_hop = None;
            if next_hop_self || a.mp_next_hop.is_none() {
                a.mp_next_hop = Some(MpNextHop {
                    global: peer.local_v6?,
                    link_local: None,
                });
            }
        }
    }
    Some(a)
}

/// RFC 4456 §8: ORIGINATOR_ID names the first iBGP router; CLUSTER_LIST
/// records each reflector's cluster.
fn reflect(a: &mut PathAttributes, ctx: &Context, learned_from: Ipv4Addr) {
    if a.originator_id.is_none() {
        a.originator_id = Some(learned_from);
    }
    if let Some(c) = ctx.cluster_id {
        a.cluster_list.insert(0, c);
    }
}

/// Puts our AS in front of the AS_PATH (RFC 4271 §5.1.2).
fn prepend(a: &mut PathAttributes, asn: u32) {
    match a.as_path.first_mut() {
        Some(AsSegment::Sequence(seq)) if seq.len() < 255 => seq.insert(0, asn),
        _ => a.as_path.insert(0, AsSegment::Sequence(vec![asn])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_sorted_is_the_sorted_union() {
        let n = |s: &str| -> IpNet { s.parse().unwrap() };
        let a = [n("10.0.0.0/26"), n("10.0.1.0/26"), n("10.0.3.0/26")];
        let b = [
            n("10.0.1.0/26"),
            n("10.0.2.0/26"),
            n("10.0.3.0/26"),
            n("10.0.4.0/26"),
        ];
        let with: Vec<(IpNet, Option<&Path>)> = b.iter().map(|p| (*p, None)).collect();
        let got: Vec<IpNet> = merge_sorted(&a, &with, |_| None).map(|(p, _)| p).collect();
        let mut want: Vec<IpNet> = a.iter().chain(&b).copied().collect();
        want.sort();
        want.dedup();
        assert_eq!(got, want);
        assert_eq!(merge_sorted(&[], &with, |_| None).count(), 4);
        assert_eq!(merge_sorted(&a, &[], |_| None::<&Path>).count(), 3);
    }
}
