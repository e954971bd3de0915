//! What this node announces (upstream's `bird_aggr.cfg`: a blackhole static
//! route per affine block, `calico_aggr` hiding the /32s inside confirmed
//! blocks, and the export filter passing the learned /32s of workloads).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::store::Store;
use super::{OriginKind, Originated};
use crate::input::AffinityState;

/// The IPAM block (of any host) that contains `a`, if any. Blocks do not
/// overlap, so trying each prefix length finds the one.
fn containing_block(s: &Store, a: IpAddr) -> Option<(IpNet, &Option<String>)> {
    let max = if a.is_ipv4() { 32 } else { 128 };
    (0..=max).rev().find_map(|len| {
        let net = IpNet::new(a, len).ok()?.trunc();
        s.blocks.get(&net).map(|aff| (net, aff))
    })
}

/// This host's confirmed block containing `a`: routes inside it are covered
/// by the block itself (`calico_aggr`'s `net ~ block → reject`).
fn confirmed_block(s: &Store, a: IpAddr) -> Option<IpNet> {
    let max = if a.is_ipv4() { 32 } else { 128 };
    (0..=max).rev().find_map(|len| {
        let net = IpNet::new(a, len).ok()?.trunc();
        (s.affinities.get(&net) == Some(&AffinityState::Confirmed)).then_some(net)
    })
}

pub(super) fn originate(s: &Store) -> BTreeSet<Originated> {
    let mut out: BTreeMap<IpNet, OriginKind> = BTreeMap::new();
    for (net, state) in &s.affinities {
        // Pending claims are not acted on; a block of one address has no
        // blackhole route (its workload's own route is announced instead).
        if *state != AffinityState::Pending && net.prefix_len() < net.max_prefix_len() {
            out.insert(*net, OriginKind::AffineBlock);
        }
    }
    for wep in s.local_weps.values() {
        for a in &wep.addrs {
            let why = match confirmed_block(s, *a) {
                Some(b) if b.prefix_len() < b.max_prefix_len() => continue,
                Some(_) => OriginKind::AffineBlock,
                None if containing_block(s, *a).is_some() => OriginKind::Borrowed,
                None => OriginKind::Workload,
            };
            out.entry(IpNet::from(*a)).or_insert(why);
        }
    }
    for wep in s.local_weps.values() {
        for a in &wep.floating {
            if confirmed_block(s, *a).is_some_and(|b| b.prefix_len() < b.max_prefix_len()) {
                continue;
            }
            out.entry(IpNet::from(*a)).or_insert(OriginKind::FloatingIp);
        }
    }
    let withheld: Vec<IpNet> = s
        .pools
        .values()
        .filter(|p| p.disable_bgp_export)
        .map(|p| p.cidr)
        .collect();
    out.into_iter()
        .filter(|(prefix, _)| !withheld.iter().any(|w| w.contains(prefix)))
        .map(|(prefix, why)| Originated { prefix, why })
        .collect()
}
