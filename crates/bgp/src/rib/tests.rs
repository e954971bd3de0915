use std::net::Ipv4Addr;
use std::time::Instant;

use super::*;
use crate::wire::{AsSegment, Origin};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn peer(last: u8, peer_as: u32, rr_client: bool) -> PeerInfo {
    PeerInfo {
        address: format!("10.0.0.{last}").parse().unwrap(),
        router_id: Ipv4Addr::new(10, 0, 0, last),
        local_as: 64512,
        peer_as,
        rr_client,
        local_v4: Some(Ipv4Addr::new(10, 0, 0, 1)),
        local_v6: Some("fd00::1".parse().unwrap()),
        keep_next_hop: false,
        next_hop_self: false,
        allow_local_as: 0,
        families: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
        add_path_tx: vec![],
    }
}

fn announce(prefix: &str, next_hop: [u8; 4], as_path: Vec<u32>) -> Update {
    Update {
        announced: vec![Nlri {
            prefix: net(prefix),
            path_id: None,
        }],
        attrs: PathAttributes {
            next_hop: Some(Ipv4Addr::from(next_hop)),
            as_path: if as_path.is_empty() {
                vec![]
            } else {
                vec![AsSegment::Sequence(as_path)]
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

fn withdraw(prefix: &str) -> Update {
    Update {
        withdrawn: vec![Nlri {
            prefix: net(prefix),
            path_id: None,
        }],
        ..Default::default()
    }
}

/// A RIB for node 10.0.0.1 with iBGP peers 2 and 3 (both Established).
fn two_ibgp_peers(cluster: Option<Ipv4Addr>, clients: bool) -> Rib {
    let mut rib = Rib::new(Ipv4Addr::new(10, 0, 0, 1), 64512, cluster);
    for (id, last) in [(2, 2), (3, 3)] {
        rib.set_peer(PeerId(id), peer(last, 64512, clients));
        rib.peer_up(PeerId(id));
    }
    rib
}

fn sent_to(updates: &[(PeerId, Vec<Update>)], id: u32) -> Vec<Update> {
    updates
        .iter()
        .filter(|(p, _)| *p == PeerId(id))
        .flat_map(|(_, u)| u.clone())
        .collect()
}

#[test]
fn local_routes_go_to_ibgp_peers_with_next_hop_self() {
    let mut rib = two_ibgp_peers(None, false);
    rib.set_local(
        &[(net("10.65.0.0/26"), PathAttributes::default())],
        Instant::now(),
    );
    let (best, updates) = rib.commit(&ExportAll);
    assert_eq!(best.len(), 1);
    let to2 = sent_to(&updates, 2);
    assert_eq!(to2.len(), 1);
    assert_eq!(to2[0].announced[0].prefix, net("10.65.0.0/26"));
    assert_eq!(to2[0].attrs.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(to2[0].attrs.local_pref, Some(100));
    assert!(to2[0].attrs.as_path.is_empty(), "iBGP adds no AS");
    // Nothing changed: nothing sent.
    let (best, updates) = rib.commit(&ExportAll);
    assert!(best.is_empty() && updates.is_empty());
    // Gone: withdrawn.
    rib.set_local(&[], Instant::now());
    let (_, updates) = rib.commit(&ExportAll);
    assert_eq!(
        sent_to(&updates, 3)[0].withdrawn[0].prefix,
        net("10.65.0.0/26")
    );
}

#[test]
fn ibgp_routes_are_not_passed_on_without_reflection() {
    let mut rib = two_ibgp_peers(None, false);
    rib.apply_update(
        PeerId(2),
        &announce("10.65.1.0/26", [10, 0, 0, 2], vec![]),
        Instant::now(),
        &ExportAll,
    );
    let (best, updates) = rib.commit(&ExportAll);
    assert_eq!(
        best[0].best.as_ref().unwrap().source,
        Source::Peer(PeerId(2))
    );
    assert!(sent_to(&updates, 3).is_empty(), "split horizon");
    assert!(sent_to(&updates, 2).is_empty(), "never back to the sender");
}

#[test]
fn a_reflector_passes_client_routes_on_with_originator_and_cluster() {
    let cluster = Ipv4Addr::new(224, 0, 0, 1);
    let mut rib = two_ibgp_peers(Some(cluster), true);
    rib.apply_update(
        PeerId(2),
        &announce("10.65.1.0/26", [10, 0, 0, 2], vec![]),
        Instant::now(),
        &ExportAll,
    );
    let (_, updates) = rib.commit(&ExportAll);
    let to3 = sent_to(&updates, 3);
    assert_eq!(to3.len(), 1);
    assert_eq!(to3[0].attrs.originator_id, Some(Ipv4Addr::new(10, 0, 0, 2)));
    assert_eq!(to3[0].attrs.cluster_list, vec![cluster]);
    assert_eq!(
        to3[0].attrs.next_hop,
        Some(Ipv4Addr::new(10, 0, 0, 2)),
        "next hop kept"
    );
}

#[test]
fn next_hop_mode_self_applies_to_reflected_routes_too() {
    let mut rib = two_ibgp_peers(Some(Ipv4Addr::new(224, 0, 0, 1)), true);
    let mut three = peer(3, 64512, true);
    three.next_hop_self = true;
    rib.set_peer(PeerId(3), three);
    rib.apply_update(
        PeerId(2),
        &announce("10.65.1.0/26", [10, 0, 0, 2], vec![]),
        Instant::now(),
        &ExportAll,
    );
    let (_, updates) = rib.commit(&ExportAll);
    let to3 = sent_to(&updates, 3);
    assert_eq!(to3.len(), 1);
    assert_eq!(to3[0].attrs.next_hop, Some(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(to3[0].attrs.originator_id, Some(Ipv4Addr::new(10, 0, 0, 2)));
}

#[test]
fn reflected_routes_that_loop_are_dropped() {
    let cluster = Ipv4Addr::new(224, 0, 0, 1);
    let mut rib = two_ibgp_peers(Some(cluster), true);
    let mut u = announce("10.65.1.0/26", [10, 0, 0, 2], vec![]);
    u.attrs.originator_id = Some(Ipv4Addr::new(10, 0, 0, 1));
    rib.apply_update(PeerId(2), &u, Instant::now(), &ExportAll);
    let mut u = announce("10.65.2.0/26", [10, 0, 0, 2], vec![]);
    u.attrs.cluster_list = vec![cluster];
    rib.apply_update(PeerId(2), &u, Instant::now(), &ExportAll);
    let (best, _) = rib.commit(&ExportAll);
    assert!(best.is_empty(), "{best:?}");
}

#[test]
fn ebgp_gets_our_as_and_no_local_pref() {
    let mut rib = Rib::new(Ipv4Addr::new(10, 0, 0, 1), 64512, None);
    rib.set_peer(PeerId(9), peer(9, 65000, false));
    rib.peer_up(PeerId(9));
    rib.set_local(
        &[(net("10.65.0.0/26"), PathAttributes::default())],
        Instant::now(),
    );
    let (_, updates) = rib.commit(&ExportAll);
    let u = &sent_to(&updates, 9)[0];
    assert_eq!(u.attrs.as_path, vec![AsSegment::Sequence(vec![64512])]);
    assert_eq!(u.attrs.local_pref, None);
    // A route that already has our AS in it comes back: a loop.
    rib.apply_update(
        PeerId(9),
        &announce("10.70.0.0/16", [10, 0, 0, 9], vec![65000, 64512]),
        Instant::now(),
        &ExportAll,
    );
    let (best, _) = rib.commit(&ExportAll);
    assert!(best.is_empty());
}

#[test]
fn best_path_prefers_shorter_as_path_then_lower_origin() {
    let mut rib = Rib::new(Ipv4Addr::new(10, 0, 0, 1), 64512, None);
    rib.set_peer(PeerId(8), peer(8, 65008, false));
    rib.set_peer(PeerId(9), peer(9, 65009, false));
    rib.apply_update(
        PeerId(8),
        &announce("10.70.0.0/16", [10, 0, 0, 8], vec![65008, 1, 2]),
        Instant::now(),
        &ExportAll,
    );
    rib.apply_update(
        PeerId(9),
        &announce("10.70.0.0/16", [10, 0, 0, 9], vec![65009, 1]),
        Instant::now(),
        &ExportAll,
    );
    rib.commit(&ExportAll);
    assert_eq!(
        rib.best(&net("10.70.0.0/16")).unwrap().source,
        Source::Peer(PeerId(9))
    );
    let mut u = announce("10.70.0.0/16", [10, 0, 0, 8], vec![65008, 1]);
    u.attrs.origin = Origin::Igp;
    rib.apply_update(PeerId(8), &u, Instant::now(), &ExportAll);
    let mut u = announce("10.70.0.0/16", [10, 0, 0, 9], vec![65009, 1]);
    u.attrs.origin = Origin::Incomplete;
    rib.apply_update(PeerId(9), &u, Instant::now(), &ExportAll);
    let (best, _) = rib.commit(&ExportAll);
    assert_eq!(best.len(), 1);
    assert_eq!(
        rib.best(&net("10.70.0.0/16")).unwrap().source,
        Source::Peer(PeerId(8))
    );
}

#[test]
fn graceful_restart_keeps_routes_stale_until_end_of_rib() {
    let mut rib = two_ibgp_peers(None, false);
    rib.apply_update(
        PeerId(2),
        &announce("10.65.1.0/26", [10, 0, 0, 2], vec![]),
        Instant::now(),
        &ExportAll,
    );
    rib.apply_update(
        PeerId(2),
        &announce("10.65.2.0/26", [10, 0, 0, 2], vec![]),
        Instant::now(),
        &ExportAll,
    );
    rib.commit(&ExportAll);
    rib.peer_down(PeerId(2), true);
    rib.commit(&ExportAll);
    assert!(rib.best(&net("10.65.1.0/26")).unwrap().stale, "kept, stale");
    // The peer comes back and re-announces one of the two.
    rib.peer_up(PeerId(2));
    rib.apply_update(
        PeerId(2),
        &announce("10.65.1.0/26", [10, 0, 0, 2], vec![]),
        Instant::now(),
        &ExportAll,
    );
    rib.flush_stale(PeerId(2), Some(Family::Ipv4Unicast));
    let (best, _) = rib.commit(&ExportAll);
    assert!(!rib.best(&net("10.65.1.0/26")).unwrap().stale);
    assert!(rib.best(&net("10.65.2.0/26")).is_none());
    assert!(best
        .iter()
        .any(|c| c.prefix == net("10.65.2.0/26") && c.best.is_none()));
}

#[test]
fn a_hard_down_removes_at_once_and_withdraws() {
    let cluster = Ipv4Addr::new(224, 0, 0, 1);
    let mut rib = two_ibgp_peers(Some(cluster), true);
    rib.apply_update(
        PeerId(2),
        &announce("10.65.1.0/26", [10, 0, 0, 2], vec![]),
        Instant::now(),
        &ExportAll,
    );
    rib.commit(&ExportAll);
    rib.peer_down(PeerId(2), false);
    let (best, updates) = rib.commit(&ExportAll);
    assert_eq!(best.len(), 1);
    assert!(best[0].best.is_none());
    assert_eq!(sent_to(&updates, 3)[0].withdrawn.len(), 1);
    assert_eq!(rib.received_count(PeerId(2)), 0);
    rib.apply_update(
        PeerId(3),
        &withdraw("10.65.9.0/26"),
        Instant::now(),
        &ExportAll,
    );
    assert!(
        rib.commit(&ExportAll).0.is_empty(),
        "withdrawing the unknown is harmless"
    );
}

#[test]
fn route_refresh_sends_everything_again() {
    let mut rib = two_ibgp_peers(None, false);
    rib.set_local(
        &[(net("10.65.0.0/26"), PathAttributes::default())],
        Instant::now(),
    );
    rib.commit(&ExportAll);
    rib.refresh(PeerId(2));
    let (_, updates) = rib.commit(&ExportAll);
    assert_eq!(sent_to(&updates, 2).len(), 1);
    assert!(sent_to(&updates, 3).is_empty());
}

#[test]
fn add_path_tx_gives_a_path_id() {
    let mut rib = Rib::new(Ipv4Addr::new(10, 0, 0, 1), 64512, None);
    let mut p = peer(2, 64512, false);
    p.add_path_tx = vec![Family::Ipv4Unicast];
    rib.set_peer(PeerId(2), p);
    rib.peer_up(PeerId(2));
    rib.set_local(
        &[
            (net("10.65.0.0/26"), PathAttributes::default()),
            (net("fd00:65::/122"), PathAttributes::default()),
        ],
        Instant::now(),
    );
    let (_, updates) = rib.commit(&ExportAll);
    let sent = sent_to(&updates, 2);
    let v4 = sent
        .iter()
        .find(|u| u.announced[0].prefix.addr().is_ipv4())
        .unwrap();
    let v6 = sent
        .iter()
        .find(|u| u.announced[0].prefix.addr().is_ipv6())
        .unwrap();
    assert_eq!(v4.announced[0].path_id, Some(1));
    assert_eq!(v6.announced[0].path_id, None);
    assert_eq!(
        v6.attrs.mp_next_hop.unwrap().global,
        "fd00::1".parse::<std::net::Ipv6Addr>().unwrap()
    );
    assert_eq!(v6.attrs.next_hop, None);
}

#[test]
fn add_path_peers_hear_every_path_others_only_the_best() {
    let cluster = Ipv4Addr::new(224, 0, 0, 1);
    let mut rib = Rib::new(Ipv4Addr::new(10, 0, 0, 1), 64512, Some(cluster));
    for last in [2, 3, 4, 5] {
        let mut p = peer(last, 64512, true);
        if last == 4 {
            p.add_path_tx = vec![Family::Ipv4Unicast];
        }
        rib.set_peer(PeerId(last.into()), p);
        rib.peer_up(PeerId(last.into()));
    }
    // The same prefix (an anycast address) from two clients.
    rib.apply_update(
        PeerId(2),
        &announce("10.65.9.1/32", [10, 0, 0, 2], vec![]),
        Instant::now(),
        &ExportAll,
    );
    rib.apply_update(
        PeerId(3),
        &announce("10.65.9.1/32", [10, 0, 0, 3], vec![]),
        Instant::now(),
        &ExportAll,
    );
    let (_, updates) = rib.commit(&ExportAll);
    let to4: Vec<Nlri> = sent_to(&updates, 4)
        .into_iter()
        .flat_map(|u| u.announced)
        .collect();
    let mut ids: Vec<u32> = to4.iter().map(|n| n.path_id.unwrap()).collect();
    ids.sort();
    assert_eq!(ids, [1, 2], "both paths, each under its own id");
    let to5: Vec<Nlri> = sent_to(&updates, 5)
        .into_iter()
        .flat_map(|u| u.announced)
        .collect();
    assert_eq!(to5.len(), 1, "only the best without ADD-PATH");
    assert_eq!(to5[0].path_id, None);
    assert_eq!(rib.exported_count(PeerId(4)), 2);
    // One source withdraws: the ADD-PATH peer loses exactly that path.
    rib.apply_update(
        PeerId(3),
        &withdraw("10.65.9.1/32"),
        Instant::now(),
        &ExportAll,
    );
    let (_, updates) = rib.commit(&ExportAll);
    let w: Vec<Nlri> = sent_to(&updates, 4)
        .into_iter()
        .flat_map(|u| u.withdrawn)
        .collect();
    assert_eq!(w.len(), 1);
    assert_eq!(rib.exported_count(PeerId(4)), 1);
}

#[test]
fn allow_local_as_accepts_our_as_that_many_times() {
    let mut rib = Rib::new(Ipv4Addr::new(10, 0, 0, 1), 64512, None);
    let mut p = peer(9, 65000, false);
    p.allow_local_as = 1;
    rib.set_peer(PeerId(9), p);
    rib.apply_update(
        PeerId(9),
        &announce("10.70.0.0/16", [10, 0, 0, 9], vec![65000, 64512]),
        Instant::now(),
        &ExportAll,
    );
    rib.apply_update(
        PeerId(9),
        &announce("10.71.0.0/16", [10, 0, 0, 9], vec![65000, 64512, 64512]),
        Instant::now(),
        &ExportAll,
    );
    rib.commit(&ExportAll);
    assert!(rib.best(&net("10.70.0.0/16")).is_some(), "once is allowed");
    assert!(rib.best(&net("10.71.0.0/16")).is_none(), "twice is a loop");
}

#[test]
fn local_pref_from_an_ebgp_peer_is_ignored() {
    // Peer 2 is iBGP (LOCAL_PREF 100 implied), peer 4 eBGP claiming 500.
    let mut rib = two_ibgp_peers(None, false);
    rib.set_peer(PeerId(4), peer(4, 65001, false));
    rib.peer_up(PeerId(4));
    let now = Instant::now();
    let mut from_ebgp = announce("10.70.0.0/24", [10, 0, 0, 4], vec![65001]);
    from_ebgp.attrs.local_pref = Some(500);
    rib.apply_update(PeerId(4), &from_ebgp, now, &ExportAll);
    let mut from_ibgp = announce("10.70.0.0/24", [10, 0, 0, 9], vec![65002]);
    from_ibgp.attrs.local_pref = Some(200);
    rib.apply_update(PeerId(2), &from_ibgp, now, &ExportAll);
    rib.commit(&ExportAll);
    let best = rib.best(&net("10.70.0.0/24")).unwrap();
    assert_eq!(best.source, Source::Peer(PeerId(2)), "the iBGP 200 wins");
    // Withdrawn from iBGP: the eBGP path goes on into the AS with 100.
    rib.apply_update(PeerId(2), &withdraw("10.70.0.0/24"), now, &ExportAll);
    let (_, updates) = rib.commit(&ExportAll);
    let best = rib.best(&net("10.70.0.0/24")).unwrap();
    assert_eq!(best.attrs.local_pref, None);
    let to3 = sent_to(&updates, 3);
    assert_eq!(to3.len(), 1, "{to3:?}");
    assert_eq!(to3[0].attrs.local_pref, Some(100));
}

#[test]
fn routes_with_a_martian_next_hop_are_ignored() {
    let mut rib = two_ibgp_peers(None, false);
    let now = Instant::now();
    rib.apply_update(
        PeerId(2),
        &announce("10.71.0.0/24", [10, 0, 0, 2], vec![]),
        now,
        &ExportAll,
    );
    rib.commit(&ExportAll);
    assert!(rib.best(&net("10.71.0.0/24")).is_some());
    for nh in [[0, 0, 0, 0], [224, 0, 0, 5], [255, 255, 255, 255]] {
        // The new announcement replaces the old one, and is unusable.
        rib.apply_update(
            PeerId(2),
            &announce("10.71.0.0/24", nh, vec![]),
            now,
            &ExportAll,
        );
        let (changes, _) = rib.commit(&ExportAll);
        assert!(rib.best(&net("10.71.0.0/24")).is_none(), "{nh:?}");
        assert!(changes.iter().all(|c| c.best.is_none()), "{changes:?}");
    }
    // IPv6: a multicast global next hop, or none at all.
    let mut v6 = Update {
        announced: vec![Nlri {
            prefix: net("fd00:71::/64"),
            path_id: None,
        }],
        ..Default::default()
    };
    for (global, ll) in [("ff02::1", None), ("::", None), ("::", Some("fe80::2"))] {
        v6.attrs.mp_next_hop = Some(crate::wire::MpNextHop {
            global: global.parse().unwrap(),
            link_local: ll.map(|l: &str| l.parse().unwrap()),
        });
        rib.apply_update(PeerId(2), &v6, now, &ExportAll);
        rib.commit(&ExportAll);
        let kept = rib.best(&net("fd00:71::/64")).is_some();
        assert_eq!(kept, ll.is_some(), "{global} {ll:?}");
    }
}

mod model {
    //! The RIB against a plain model: after any mix of announcements,
    //! withdrawals, peer-downs and stale flushes, the best-path changes a
    //! commit reports add up to what `best` says, `best` is what selection
    //! over the paths gives, and the per-peer counts (kept as paths come and
    //! go) equal a count over the table.

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        /// Peer (2..=4) announces prefix (0..6) with a MED.
        Announce(u32, u8, u32),
        Withdraw(u32, u8),
        Down(u32, bool),
        Flush(u32),
        Local(Vec<u8>),
        Commit,
    }

    fn prefix(i: u8) -> IpNet {
        net(&format!("10.65.{i}.0/26"))
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (2u32..=4, 0u8..6, 0u32..3).prop_map(|(p, i, m)| Op::Announce(p, i, m)),
            3 => (2u32..=4, 0u8..6).prop_map(|(p, i)| Op::Withdraw(p, i)),
            1 => (2u32..=4, any::<bool>()).prop_map(|(p, g)| Op::Down(p, g)),
            1 => (2u32..=4).prop_map(Op::Flush),
            1 => proptest::collection::vec(0u8..6, 0..3).prop_map(Op::Local),
            3 => Just(Op::Commit),
        ]
    }

    fn check(rib: &Rib, model: &BTreeMap<IpNet, Path>) {
        let mut received: BTreeMap<u32, usize> = BTreeMap::new();
        let mut preferred: BTreeMap<u32, usize> = BTreeMap::new();
        let mut stale: BTreeMap<u32, usize> = BTreeMap::new();
        for i in 0..6 {
            let p = prefix(i);
            assert_eq!(rib.best(&p), model.get(&p), "best of {p}");
        }
        for (p, paths, best_first) in rib.iter() {
            assert!(best_first, "settled after a commit");
            let owned: Vec<Path> = paths.iter().map(|x| (*x).clone()).collect();
            let want = best::select(&owned, &rib.peers).map(|i| &owned[i]);
            assert_eq!(rib.best(&p), want, "best of {p} is the selection");
            for x in &paths {
                if let Source::Peer(PeerId(id)) = x.source {
                    *received.entry(id).or_default() += 1;
                    if x.stale {
                        *stale.entry(id).or_default() += 1;
                    }
                }
            }
            if let Some(Source::Peer(PeerId(id))) = rib.best(&p).map(|x| x.source) {
                *preferred.entry(id).or_default() += 1;
            }
        }
        for id in 2..=4 {
            let r = received.get(&id).copied().unwrap_or(0);
            let b = preferred.get(&id).copied().unwrap_or(0);
            assert_eq!(rib.received_count(PeerId(id)), r, "received from {id}");
            assert_eq!(rib.preferred_count(PeerId(id)), b, "preferred from {id}");
            let st = stale.get(&id).copied().unwrap_or(0);
            let kept = rib.counts.get(&PeerId(id)).map_or(0, |c| c.stale);
            assert_eq!(kept, st, "stale from {id}");
        }
    }

    proptest! {
        #[test]
        fn changes_best_paths_and_counts_agree(ops in proptest::collection::vec(op(), 1..60)) {
            let mut rib = Rib::new(Ipv4Addr::new(10, 0, 0, 1), 64512, None);
            for id in 2..=4u32 {
                rib.set_peer(PeerId(id), peer(id as u8, 64512, false));
                rib.peer_up(PeerId(id));
            }
            let now = Instant::now();
            let mut model: BTreeMap<IpNet, Path> = BTreeMap::new();
            let ops = ops.into_iter().chain([Op::Commit]);
            for op in ops {
                match op {
                    Op::Announce(p, i, med) => {
                        let mut u = announce(&prefix(i).to_string(), [10, 0, 0, p as u8], vec![]);
                        u.attrs.med = Some(med);
                        rib.apply_update(PeerId(p), &u, now, &ExportAll);
                    }
                    Op::Withdraw(p, i) => {
                        rib.apply_update(PeerId(p), &withdraw(&prefix(i).to_string()), now, &ExportAll)
                    }
                    Op::Down(p, graceful) => rib.peer_down(PeerId(p), graceful),
                    Op::Flush(p) => rib.flush_stale(PeerId(p), None),
                    Op::Local(list) => {
                        let routes: Vec<(IpNet, PathAttributes)> = list
                            .iter()
                            .map(|i| (prefix(*i), PathAttributes::default()))
                            .collect();
                        rib.set_local(&routes, now);
                    }
                    Op::Commit => {
                        let (changes, _) = rib.commit(&ExportAll);
                        for c in changes {
                            prop_assert_ne!(model.get(&c.prefix), c.best.as_ref(), "a change changes something");
                            match c.best {
                                Some(b) => model.insert(c.prefix, b),
                                None => model.remove(&c.prefix),
                            };
                        }
                        check(&rib, &model);
                    }
                }
            }
        }
    }
}

#[test]
fn a_prefix_with_one_path_needs_no_allocation_of_its_own() {
    // What a table entry costs: a path inline, the best as an index.
    assert!(
        std::mem::size_of::<Entry>() <= 48,
        "{}",
        std::mem::size_of::<Entry>()
    );
    let mut e = Entry::default();
    let p = |id: u32| Path {
        source: Source::Peer(PeerId(id)),
        path_id: 0,
        attrs: Arc::new(PathAttributes::default()),
        stale: false,
        since: Since::at(Instant::now()),
        local_id: id,
    };
    e.paths.push(p(1));
    assert!(matches!(e.paths, Paths::One(_)));
    e.paths.push(p(2));
    e.paths.push(p(3));
    assert_eq!(e.paths.remove(0).source, Source::Peer(PeerId(1)));
    assert_eq!(e.paths.remove(1).source, Source::Peer(PeerId(3)));
    assert!(matches!(e.paths, Paths::One(_)));
    assert_eq!(e.paths[0].source, Source::Peer(PeerId(2)));
    e.paths.remove(0);
    assert!(e.paths.is_empty());
}
