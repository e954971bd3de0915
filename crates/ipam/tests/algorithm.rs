//! The IPAM algorithm end to end, on both backends.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use calico_api::network::{AllowedUse, IPPool};
use calico_ipam::affinity::{BlockAffinity, STATE_CONFIRMED, STATE_PENDING};
use calico_ipam::keys::{affinity_key, block_key, handle_key};
use calico_ipam::tunnel::{ensure_vxlan_tunnel_address, vxlan_handle};
use calico_ipam::{
    AffinityRelease, AllocationBlock, AssignIpArgs, AutoAssignArgs, IpamConfig, IpamError,
    ReleaseOptions,
};
use common::{attrs, block_size, ip, uses, vxlan, Fixture};
use ipnet::IpNet;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn args(host: &str, n: usize, handle: &str) -> AutoAssignArgs {
    AutoAssignArgs {
        num4: n,
        handle_id: Some(handle.to_string()),
        attrs: attrs(host),
        hostname: host.to_string(),
        ..Default::default()
    }
}

fn assign(f: &Fixture, host: &str, n: usize, handle: &str) -> Vec<IpAddr> {
    f.ipam
        .auto_assign(&args(host, n, handle))
        .unwrap()
        .v4
        .addrs()
}

fn block(f: &Fixture, cidr: &str) -> Option<AllocationBlock> {
    f.ipam.get_block(&net(cidr)).unwrap().map(|b| b.value)
}

fn affinity_state(f: &Fixture, host: &str, cidr: &str) -> Option<String> {
    f.ipam
        .store()
        .get(&affinity_key(host, &net(cidr)))
        .unwrap()
        .map(|kv| {
            serde_json::from_slice::<BlockAffinity>(&kv.value)
                .unwrap()
                .state
        })
}

fn blocks_of(ips: &[IpAddr], bs: u8) -> BTreeSet<IpNet> {
    ips.iter()
        .map(|i| calico_ipam::block::block_for_ip(*i, bs))
        .collect()
}

both_backends!(
    affine_blocks_first_then_new_claims,
    borrowing_unless_strict_affinity,
    max_blocks_per_host,
    reservations_are_skipped,
    disabled_pools_are_skipped,
    node_selector_and_allowed_uses,
    requested_pools,
    release_by_ip_and_by_handle,
    empty_non_affine_block_is_removed,
    affinity_released_when_pool_stops_selecting_host,
    pool_deletion,
    assign_specific_ip,
    concurrent_double_assign_conflicts,
    ipv6_and_dual_stack,
    upstream_data_reads_back,
    leftover_pending_affinities,
    config_rules,
    vxlan_tunnel_address,
    check_finds_problems_and_report_releases_leaks,
    pool_exhaustion_is_partial,
);

fn affine_blocks_first_then_new_claims(f: &Fixture) {
    f.pool("p", "10.0.0.0/24", |_| {});
    f.node("a", &[]);
    let first = assign(f, "a", 1, "h1");
    assert_eq!(first.len(), 1);
    let b0 = calico_ipam::block::block_for_ip(first[0], 26);
    let blk = block(f, &b0.to_string()).unwrap();
    assert_eq!(blk.affinity.as_deref(), Some("host:a"));
    assert_eq!(
        affinity_state(f, "a", &b0.to_string()).as_deref(),
        Some(STATE_CONFIRMED)
    );
    // The lowest free ordinal of a fresh block first.
    assert_eq!(first[0], b0.network());
    // The rest of that block before any new one.
    let more = assign(f, "a", 63, "h2");
    assert_eq!(blocks_of(&more, 26), BTreeSet::from([b0]));
    // Then a new block is claimed.
    let next = assign(f, "a", 2, "h3");
    let b1 = blocks_of(&next, 26);
    assert_eq!(b1.len(), 1);
    assert!(!b1.contains(&b0));
    let affs = f.ipam.host_affinities("a", 4).unwrap();
    assert_eq!(affs.len(), 2);
    assert!(affs.iter().all(|(_, a)| a.value.state == STATE_CONFIRMED));
    // A second host gets its own block.
    let other = assign(f, "b", 1, "h4");
    assert!(
        blocks_of(&other, 26).is_disjoint(&blocks_of(&[first.clone(), more, next].concat(), 26))
    );
    // Handles count their addresses per block.
    let h2 = f.ipam.get_handle("h2").unwrap().unwrap().value;
    assert_eq!(h2.count(&b0), 63);
    assert_eq!(f.ipam.ips_by_handle("h1").unwrap(), first);
}

fn borrowing_unless_strict_affinity(f: &Fixture) {
    // Two blocks only.
    f.pool("p", "10.1.0.0/25", |_| {});
    let a = assign(f, "a", 1, "ha");
    let b = assign(f, "b", 1, "hb");
    assert_ne!(blocks_of(&a, 26), blocks_of(&b, 26));
    // c finds no free block: it borrows, nearest in its own order first.
    let c = assign(f, "c", 3, "hc");
    assert_eq!(c.len(), 3);
    assert!(f.ipam.host_affinities("c", 4).unwrap().is_empty());
    let (borrowed, unclassified) = f.ipam.borrowed_ips().unwrap();
    assert_eq!(unclassified, 0);
    assert_eq!(borrowed.len(), 3);
    assert!(borrowed
        .iter()
        .all(|x| x.borrowing_node == "c" && (x.block_owner == "a" || x.block_owner == "b")));
    // With strict affinity, no borrowing: the request comes back short.
    f.ipam
        .set_config(IpamConfig {
            strict_affinity: true,
            ..IpamConfig::default()
        })
        .unwrap();
    let r = f.ipam.auto_assign(&args("d", 1, "hd")).unwrap();
    assert!(r.v4.ips.is_empty());
    let e = r.v4.partial_fulfillment_error().unwrap().to_string();
    assert!(
        e.contains("Assigned 0 out of 1") && e.contains("strict affinity"),
        "{e}"
    );
    // a can still use its own block.
    assert_eq!(assign(f, "a", 1, "ha2").len(), 1);
}

fn max_blocks_per_host(f: &Fixture) {
    f.pool("p", "10.2.0.0/22", |_| {});
    f.ipam
        .set_config(IpamConfig {
            strict_affinity: true,
            auto_allocate_blocks: true,
            max_blocks_per_host: 1,
        })
        .unwrap();
    let r = f.ipam.auto_assign(&args("a", 65, "h")).unwrap();
    assert_eq!(r.v4.ips.len(), 64);
    let e = r.v4.partial_fulfillment_error().unwrap().to_string();
    assert!(e.contains("limit of 1 blocks reached"), "{e}");
    assert_eq!(f.ipam.host_affinities("a", 4).unwrap().len(), 1);
    // The per-request limit applies too (the smaller one wins).
    f.ipam.set_config(IpamConfig::default()).unwrap();
    let mut a = args("b", 130, "hb");
    a.max_blocks_per_host = 2;
    let r = f.ipam.auto_assign(&a).unwrap();
    assert_eq!(r.v4.ips.len(), 128);
    assert_eq!(f.ipam.host_affinities("b", 4).unwrap().len(), 2);
}

fn reservations_are_skipped(f: &Fixture) {
    f.pool("p", "10.3.0.0/24", block_size(26));
    // All of the first block, the first 4 addresses and one more of the others.
    f.reservation(
        "r",
        &[
            "10.3.0.0/26",
            "10.3.0.64/30",
            "10.3.0.128/30",
            "10.3.0.192/30",
            "10.3.0.70",
        ],
    );
    let got = assign(f, "a", 100, "h");
    assert_eq!(got.len(), 100);
    let res = f.ipam.reservations().unwrap();
    assert!(got.iter().all(|i| !res.matches_ip(*i)), "{got:?}");
    assert!(
        block(f, "10.3.0.0/26").is_none(),
        "a wholly reserved block is never claimed"
    );
    // Explicit assignment may use a reserved address (as upstream).
    f.ipam
        .assign_ip(&AssignIpArgs::new(ip("10.3.0.65"), "a"))
        .unwrap();
}

fn disabled_pools_are_skipped(f: &Fixture) {
    f.pool("off", "10.4.0.0/24", |s| s.disabled = true);
    let e = f.ipam.auto_assign(&args("a", 1, "h")).unwrap_err();
    assert!(matches!(e, IpamError::NoPools { .. }), "{e}");
    f.pool("on", "10.5.0.0/24", |_| {});
    let got = assign(f, "a", 5, "h");
    assert!(got.iter().all(|i| net("10.5.0.0/24").contains(i)));
    // Nor can one assign from a disabled pool explicitly.
    let e = f
        .ipam
        .assign_ip(&AssignIpArgs::new(ip("10.4.0.1"), "a"))
        .unwrap_err();
    assert!(matches!(e, IpamError::NotInPool(_)), "{e}");
}

fn node_selector_and_allowed_uses(f: &Fixture) {
    f.pool("zone-a", "10.6.0.0/24", |s| {
        s.node_selector = "zone == 'a'".into()
    });
    f.pool("zone-b", "10.7.0.0/24", |s| {
        s.node_selector = "zone == 'b'".into()
    });
    f.pool("tunnels", "10.8.0.0/24", uses(&[AllowedUse::Tunnel]));
    f.node("na", &[("zone", "a")]);
    f.node("nb", &[("zone", "b")]);
    let a = assign(f, "na", 3, "h");
    assert!(a.iter().all(|i| net("10.6.0.0/24").contains(i)));
    let b = assign(f, "nb", 3, "h2");
    assert!(b.iter().all(|i| net("10.7.0.0/24").contains(i)));
    // A node without a Node resource has no labels: only the tunnel pool
    // selects it, and it does not allow workloads.
    let e = f.ipam.auto_assign(&args("ghost", 1, "h3")).unwrap_err();
    assert!(matches!(e, IpamError::NoPoolForUse { .. }), "{e}");
    let mut t = args("ghost", 1, "h4");
    t.intended_use = AllowedUse::Tunnel;
    let got = f.ipam.auto_assign(&t).unwrap().v4.addrs();
    assert!(net("10.8.0.0/24").contains(&got[0]));
    // A selector that matches no node at all.
    f.update_pool("tunnels", |s| s.node_selector = "has(nothing)".into());
    let e = f.ipam.auto_assign(&args("ghost", 1, "h5")).unwrap_err();
    assert!(matches!(e, IpamError::NoPools { .. }), "{e}");
}

fn requested_pools(f: &Fixture) {
    f.pool("one", "10.9.0.0/24", |_| {});
    f.pool("two", "10.9.1.0/24", |s| {
        s.node_selector = "has(nope)".into()
    });
    f.pool("off", "10.9.2.0/24", |s| s.disabled = true);
    let mut a = args("a", 2, "h");
    // Requested pools are used even when their selector does not match.
    a.ipv4_pools = vec![net("10.9.1.0/24")];
    let got = f.ipam.auto_assign(&a).unwrap().v4.addrs();
    assert!(got.iter().all(|i| net("10.9.1.0/24").contains(i)));
    a.ipv4_pools = vec![net("10.9.2.0/24")];
    assert!(matches!(
        f.ipam.auto_assign(&a).unwrap_err(),
        IpamError::PoolNotEnabled(_)
    ));
    a.ipv4_pools = vec![net("fd00::/120")];
    assert!(matches!(
        f.ipam.auto_assign(&a).unwrap_err(),
        IpamError::Invalid(_)
    ));
}

fn release_by_ip_and_by_handle(f: &Fixture) {
    f.pool("p", "10.10.0.0/24", |_| {});
    let h1 = assign(f, "a", 3, "h1");
    let h2 = assign(f, "a", 2, "h2");
    // By address.
    let r = f.ipam.release_ips(&[ReleaseOptions::ip(h1[0])]).unwrap();
    assert_eq!(r.released, vec![h1[0]]);
    assert_eq!(f.ipam.ips_by_handle("h1").unwrap(), h1[1..].to_vec());
    let b0 = calico_ipam::block::block_for_ip(h1[0], 26);
    assert_eq!(
        f.ipam.get_handle("h1").unwrap().unwrap().value.count(&b0),
        2
    );
    // Not allocated (again), and outside any pool.
    let r = f
        .ipam
        .release_ips(&[
            ReleaseOptions::ip(h1[0]),
            ReleaseOptions::ip(ip("192.168.0.1")),
        ])
        .unwrap();
    assert!(r.released.is_empty());
    assert_eq!(r.not_allocated.len(), 2);
    // With the wrong handle: left alone.
    let r = f
        .ipam
        .release_ips(&[ReleaseOptions::with_handle(h2[0], "h1")])
        .unwrap();
    assert!(r.released.is_empty());
    assert_eq!(r.skipped.len(), 1);
    assert!(f.ipam.assignment_attributes(h2[0]).unwrap().is_some());
    // By handle: every address, and the handle goes away.
    let mut got = f.ipam.release_by_handle("h1").unwrap();
    got.sort();
    assert_eq!(got, h1[1..].to_vec());
    assert!(f.ipam.get_handle("h1").unwrap().is_none());
    assert!(f.ipam.release_by_handle("h1").unwrap().is_empty());
    assert_eq!(f.ipam.release_by_handle("h2").unwrap().len(), 2);
    assert!(f.ipam.store().get(&handle_key("h2")).unwrap().is_none());
    // The affine block stays (empty) for the host's next workloads.
    let blk = block(f, &b0.to_string()).unwrap();
    assert!(blk.is_empty() && blk.attributes.is_empty());
    assert_eq!(blk.affinity.as_deref(), Some("host:a"));
    // Released addresses are handed out last.
    let again = assign(f, "a", 1, "h3");
    assert!(!h1.contains(&again[0]) && !h2.contains(&again[0]));
}

fn empty_non_affine_block_is_removed(f: &Fixture) {
    f.pool("p", "10.11.0.0/26", |_| {});
    f.node("a", &[]);
    let got = assign(f, "a", 2, "h");
    let cidr = net("10.11.0.0/26");
    assert_eq!(
        f.ipam.release_block_affinity("a", &cidr, true).unwrap(),
        AffinityRelease::NotEmpty
    );
    assert_eq!(
        f.ipam
            .release_block_affinity("other", &cidr, false)
            .unwrap(),
        AffinityRelease::NotFound
    );
    // The host goes away keeping its addresses: the block loses its affinity.
    assert_eq!(f.ipam.release_host_affinities("a", false).unwrap(), 1);
    let blk = block(f, "10.11.0.0/26").unwrap();
    assert!(blk.affinity.is_none());
    assert!(affinity_state(f, "a", "10.11.0.0/26").is_none());
    // Another host can borrow from it meanwhile.
    let b = assign(f, "b", 1, "hb");
    assert!(net("10.11.0.0/26").contains(&b[0]));
    f.ipam.release_ips(&[ReleaseOptions::ip(got[0])]).unwrap();
    assert!(block(f, "10.11.0.0/26").is_some());
    f.ipam.release_by_handle("h").unwrap();
    f.ipam.release_by_handle("hb").unwrap();
    assert!(
        block(f, "10.11.0.0/26").is_none(),
        "empty block without affinity is deleted"
    );
}

fn affinity_released_when_pool_stops_selecting_host(f: &Fixture) {
    f.pool("p1", "10.12.0.0/24", |_| {});
    f.pool("p2", "10.13.0.0/24", |s| {
        s.node_selector = "has(never)".into()
    });
    f.node("a", &[("role", "x")]);
    let got = assign(f, "a", 1, "h");
    let b = calico_ipam::block::block_for_ip(got[0], 26);
    // The pool stops selecting the node while the block is in use: the
    // affinity stays until the block is empty; releasing the last address
    // then releases it (and the empty block goes).
    f.update_pool("p1", |s| s.node_selector = "role == 'y'".into());
    f.update_pool("p2", |s| s.node_selector = "role == 'x'".into());
    assert_eq!(
        affinity_state(f, "a", &b.to_string()).as_deref(),
        Some(STATE_CONFIRMED)
    );
    f.ipam.release_by_handle("h").unwrap();
    assert!(affinity_state(f, "a", &b.to_string()).is_none());
    assert!(block(f, &b.to_string()).is_none());
    // An empty affine block whose pool stops selecting the host is released
    // by the host's next auto-assign.
    let got = assign(f, "a", 1, "h2");
    let b2 = calico_ipam::block::block_for_ip(got[0], 26);
    assert!(net("10.13.0.0/24").contains(&got[0]));
    f.ipam.release_by_handle("h2").unwrap();
    f.update_pool("p2", |s| s.node_selector = "role == 'z'".into());
    f.update_pool("p1", |s| s.node_selector = "all()".into());
    assert!(block(f, &b2.to_string()).is_some());
    let got = assign(f, "a", 1, "h3");
    assert!(net("10.12.0.0/24").contains(&got[0]));
    assert!(block(f, &b2.to_string()).is_none());
    assert!(affinity_state(f, "a", &b2.to_string()).is_none());
}

fn pool_deletion(f: &Fixture) {
    f.pool("p", "10.14.0.0/24", |_| {});
    f.pool("q", "10.15.0.0/24", |s| s.disabled = true);
    let got = assign(f, "a", 2, "h");
    let e = f.ipam.delete_pool("p", None, false).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, IpamError::PoolInUse { count: 2, .. })
            && msg.contains("IP pool p (10.14.0.0/24) still has 2 allocated address(es)")
            && msg.contains("--force"),
        "{msg}"
    );
    // Nothing changed.
    let p = f.client.get_as::<IPPool>("", "p").unwrap().unwrap();
    assert!(!p.spec.disabled);
    f.ipam.release_by_handle("h").unwrap();
    f.ipam.delete_pool("p", None, false).unwrap();
    assert!(f.client.get_as::<IPPool>("", "p").unwrap().is_none());
    assert!(f.ipam.host_affinities("a", 4).unwrap().is_empty());
    assert!(
        f.ipam.blocks(4).unwrap().is_empty(),
        "empty blocks go with their affinities"
    );
    // Forced: allocations stay, in blocks that belong to nobody.
    f.update_pool("q", |s| s.disabled = false);
    let mut kept = assign(f, "a", 1, "h2");
    kept.extend(assign(f, "b", 1, "h3"));
    assert_eq!(blocks_of(&kept, 26).len(), 2);
    f.ipam.delete_pool("q", None, true).unwrap();
    for k in &kept {
        let blk = block(f, &calico_ipam::block::block_for_ip(*k, 26).to_string()).unwrap();
        assert!(blk.affinity.is_none() && !blk.is_empty());
    }
    let usage = f.ipam.utilization().unwrap();
    assert_eq!(usage.len(), 1);
    assert!(usage[0].name.is_none() && usage[0].blocks.len() == 2);
    // The pool comes back with a larger block size: the old /26 blocks are
    // still found for the addresses they hold.
    f.pool("q2", "10.15.0.0/24", block_size(24));
    let at = f.ipam.assignment_attributes(kept[0]).unwrap().unwrap();
    assert_eq!(at.handle(), Some("h2"));
    // Released orphans empty and delete their blocks (one call, two blocks).
    let mut released = f
        .ipam
        .release_ips(&[ReleaseOptions::ip(kept[0]), ReleaseOptions::ip(kept[1])])
        .unwrap()
        .released;
    released.sort();
    kept.sort();
    assert_eq!(released, kept);
    assert!(f.ipam.blocks(0).unwrap().is_empty());
    assert!(f.ipam.get_handle("h3").unwrap().is_none());
    let _ = got;
}

fn assign_specific_ip(f: &Fixture) {
    f.pool("p", "10.16.0.0/24", |_| {});
    let mut a = AssignIpArgs::new(ip("10.16.0.70"), "a");
    a.handle_id = Some("w1".into());
    a.attrs = attrs("a");
    f.ipam.assign_ip(&a).unwrap();
    let blk = block(f, "10.16.0.64/26").unwrap();
    assert_eq!(blk.affinity.as_deref(), Some("host:a"));
    assert_eq!(
        affinity_state(f, "a", "10.16.0.64/26").as_deref(),
        Some(STATE_CONFIRMED)
    );
    assert_eq!(f.ipam.ips_by_handle("w1").unwrap(), vec![ip("10.16.0.70")]);
    let at = f
        .ipam
        .assignment_attributes(ip("10.16.0.70"))
        .unwrap()
        .unwrap();
    assert_eq!(at.handle(), Some("w1"));
    // Twice: conflict.
    let e = f.ipam.assign_ip(&a).unwrap_err();
    assert!(matches!(e, IpamError::AlreadyAssigned(_)), "{e}");
    // Another host may use a's block unless strict affinity.
    f.ipam
        .assign_ip(&AssignIpArgs::new(ip("10.16.0.71"), "b"))
        .unwrap();
    f.ipam
        .set_config(IpamConfig {
            strict_affinity: true,
            ..IpamConfig::default()
        })
        .unwrap();
    let e = f
        .ipam
        .assign_ip(&AssignIpArgs::new(ip("10.16.0.72"), "b"))
        .unwrap_err();
    assert!(matches!(e, IpamError::AffinityMismatch { .. }), "{e}");
    let e = f
        .ipam
        .assign_ip(&AssignIpArgs::new(ip("10.99.0.1"), "b"))
        .unwrap_err();
    assert!(matches!(e, IpamError::NotInPool(_)), "{e}");
    // Auto-assign for a continues in its block after the explicit address.
    let got = assign(f, "a", 1, "w2");
    assert_eq!(got, vec![ip("10.16.0.64")]);
}

fn concurrent_double_assign_conflicts(f: &Fixture) {
    f.pool("p", "10.17.0.0/24", |_| {});
    // Many threads (each its own connection) race for one address: exactly
    // one wins.
    let winners: Vec<bool> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|i| {
                let ipam = f.reopen();
                s.spawn(move || {
                    let mut a = AssignIpArgs::new(ip("10.17.0.9"), &format!("n{}", i % 2));
                    a.handle_id = Some(format!("t{i}"));
                    match ipam.assign_ip(&a) {
                        Ok(()) => true,
                        Err(IpamError::AlreadyAssigned(_)) => false,
                        Err(e) => panic!("{e}"),
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(winners.iter().filter(|w| **w).count(), 1);
    let handles = f.ipam.snapshot().unwrap().handles;
    assert_eq!(handles.len(), 1, "only the winner's handle exists");
}

fn ipv6_and_dual_stack(f: &Fixture) {
    f.pool("v4", "10.18.0.0/24", |_| {});
    f.pool("v6", "fd00:18::/120", |_| {});
    let r = f
        .ipam
        .auto_assign(&AutoAssignArgs {
            num4: 1,
            num6: 2,
            handle_id: Some("ds".into()),
            hostname: "a".into(),
            ..Default::default()
        })
        .unwrap()
        .complete()
        .unwrap();
    assert_eq!(r.v4.ips.len(), 1);
    assert_eq!(r.v6.ips.len(), 2);
    assert!(r
        .v6
        .ips
        .iter()
        .all(|n| n.prefix_len() == 122 && net("fd00:18::/120").contains(&n.addr())));
    assert_eq!(r.v4.ips[0].prefix_len(), 26);
    let k = f
        .ipam
        .store()
        .list("/calico/ipam/v2/assignment/ipv6/block/")
        .unwrap();
    assert_eq!(k.kvs.len(), 1);
    let key = &k.kvs[0].key;
    assert!(
        key.starts_with("/calico/ipam/v2/assignment/ipv6/block/fd00:18::") && key.ends_with("-122"),
        "{key}"
    );
    assert_eq!(f.ipam.host_affinities("a", 6).unwrap().len(), 1);
    assert_eq!(f.ipam.release_by_handle("ds").unwrap().len(), 3);
    assert_eq!(f.ipam.release_host_affinities("a", true).unwrap(), 2);
    assert!(f.ipam.snapshot().unwrap().blocks.is_empty());
}

fn upstream_data_reads_back(f: &Fixture) {
    f.pool("p", "192.168.0.0/16", |_| {});
    // A block, affinity and handle as upstream Calico writes them.
    let blk = r#"{"cidr":"192.168.10.0/26","affinity":"host:up","allocations":[0,1,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null,null],"unallocated":[2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,57,58,59,60,61,62,63],"attributes":[{"handle_id":"vxlan-tunnel-addr-up","secondary":{"node":"up","type":"vxlanTunnelAddress"}},{"handle_id":"k8s-pod-network.abc","secondary":{"namespace":"default","node":"up","pod":"web-1","timestamp":"2024-01-01 00:00:00 +0000 UTC"}}],"sequenceNumber":1700000000000000005,"sequenceNumberForAllocation":{"0":1700000000000000000,"1":1700000000000000004},"deleted":false,"affinityClaimTime":"2024-01-01T00:00:00Z"}"#;
    let s = f.ipam.store();
    s.create(&block_key(&net("192.168.10.0/26")), blk.as_bytes(), None)
        .unwrap();
    s.create(
        &affinity_key("up", &net("192.168.10.0/26")),
        br#"{"state":"confirmed","deleted":false}"#,
        None,
    )
    .unwrap();
    s.create(
        &handle_key("k8s-pod-network.abc"),
        br#"{"block":{"192.168.10.0/26":1},"deleted":false}"#,
        None,
    )
    .unwrap();
    s.create(
        &handle_key("vxlan-tunnel-addr-up"),
        br#"{"block":{"192.168.10.0/26":1},"deleted":false}"#,
        None,
    )
    .unwrap();
    s.create(
        "/calico/ipam/v2/config",
        br#"{"strict_affinity":false,"auto_allocate_blocks":true}"#,
        None,
    )
    .unwrap();
    let at = f
        .ipam
        .assignment_attributes(ip("192.168.10.1"))
        .unwrap()
        .unwrap();
    assert_eq!(at.secondary["pod"], "web-1");
    // The host's next address comes from its (upstream-written) block.
    let got = assign(f, "up", 1, "mine");
    assert_eq!(got, vec![ip("192.168.10.2")]);
    assert_eq!(
        f.ipam.release_by_handle("k8s-pod-network.abc").unwrap(),
        vec![ip("192.168.10.1")]
    );
    let v: serde_json::Value = serde_json::from_slice(
        &s.get(&block_key(&net("192.168.10.0/26")))
            .unwrap()
            .unwrap()
            .value,
    )
    .unwrap();
    assert_eq!(
        v["affinityClaimTime"], "2024-01-01T00:00:00Z",
        "unknown fields survive"
    );
    assert_eq!(
        v["sequenceNumberForAllocation"]["0"],
        1700000000000000000u64
    );
    assert_eq!(v["sequenceNumber"], 1700000000000000007u64);
    assert_eq!(v["attributes"].as_array().unwrap().len(), 2);
    assert_eq!(v["unallocated"][61], 1, "released ordinal at the back");
    let u = f.ipam.utilization().unwrap();
    assert_eq!(u[0].in_use(), 2);
}

fn leftover_pending_affinities(f: &Fixture) {
    f.pool("p", "10.19.0.0/25", |_| {});
    let s = f.ipam.store();
    // A crash after writing a pending affinity, before creating the block:
    // the host's next allocation completes the claim.
    let (b0, b1) = (net("10.19.0.0/26"), net("10.19.0.64/26"));
    s.create(
        &affinity_key("a", &b0),
        br#"{"state":"pending","deleted":false}"#,
        None,
    )
    .unwrap();
    let got = assign(f, "a", 1, "h");
    assert!(b0.contains(&got[0]));
    assert_eq!(
        affinity_state(f, "a", "10.19.0.0/26").as_deref(),
        Some(STATE_CONFIRMED)
    );
    // A pending affinity to a block another host owns is stale: removed.
    let gb = assign(f, "b", 1, "hb");
    assert!(b1.contains(&gb[0]));
    s.create(
        &affinity_key("a", &b1),
        br#"{"state":"pending","deleted":false}"#,
        None,
    )
    .unwrap();
    let more = assign(f, "a", 64, "h2");
    assert_eq!(more.len(), 64);
    assert!(affinity_state(f, "a", "10.19.0.64/26").is_none());
    // Crash after creating the block, before confirming: confirmed on use.
    f.ipam.release_by_handle("h").unwrap();
    f.ipam.release_by_handle("h2").unwrap();
    let kv = s.get(&affinity_key("a", &b0)).unwrap().unwrap();
    s.update(
        &affinity_key("a", &b0),
        br#"{"state":"pending","deleted":false}"#,
        kv.mod_revision,
        None,
    )
    .unwrap();
    assert_eq!(
        affinity_state(f, "a", "10.19.0.0/26").as_deref(),
        Some(STATE_PENDING)
    );
    assign(f, "a", 1, "h3");
    assert_eq!(
        affinity_state(f, "a", "10.19.0.0/26").as_deref(),
        Some(STATE_CONFIRMED)
    );
}

fn config_rules(f: &Fixture) {
    assert_eq!(f.ipam.get_config().unwrap(), IpamConfig::default());
    let e = f
        .ipam
        .set_config(IpamConfig {
            strict_affinity: false,
            auto_allocate_blocks: false,
            max_blocks_per_host: 0,
        })
        .unwrap_err();
    assert!(e.to_string().contains("Cannot disable"), "{e}");
    let e = f
        .ipam
        .set_config(IpamConfig {
            max_blocks_per_host: 3,
            ..IpamConfig::default()
        })
        .unwrap_err();
    assert!(e.to_string().contains("requires StrictAffinity"), "{e}");
    let c = IpamConfig {
        strict_affinity: true,
        auto_allocate_blocks: true,
        max_blocks_per_host: 3,
    };
    f.ipam.set_config(c).unwrap();
    assert_eq!(f.ipam.get_config().unwrap(), c);
    let raw = f
        .ipam
        .store()
        .get("/calico/ipam/v2/config")
        .unwrap()
        .unwrap();
    assert_eq!(
        raw.value_str().unwrap(),
        r#"{"strict_affinity":true,"auto_allocate_blocks":true,"maxBlocksPerHost":3}"#
    );
}

fn vxlan_tunnel_address(f: &Fixture) {
    let e = ensure_vxlan_tunnel_address(&f.client, &f.ipam, "n1").unwrap_err();
    assert!(matches!(e, IpamError::NodeNotFound(_)), "{e}");
    f.node("n1", &[]);
    f.pool("plain", "10.20.0.0/24", |_| {});
    assert_eq!(
        ensure_vxlan_tunnel_address(&f.client, &f.ipam, "n1").unwrap(),
        None
    );
    // A VXLAN pool that does not allow tunnels does not count.
    f.pool("vx-workloads", "10.21.0.0/24", |s| {
        vxlan(s);
        s.allowed_uses = vec![AllowedUse::Workload];
    });
    assert_eq!(
        ensure_vxlan_tunnel_address(&f.client, &f.ipam, "n1").unwrap(),
        None
    );
    f.pool("vx", "10.22.0.0/24", vxlan);
    let a = ensure_vxlan_tunnel_address(&f.client, &f.ipam, "n1")
        .unwrap()
        .unwrap();
    assert!(net("10.22.0.0/24").contains(&a));
    assert_eq!(
        f.get_node("n1").unwrap().spec.ipv4_vxlan_tunnel_addr,
        a.to_string()
    );
    let at = f.ipam.assignment_attributes(a).unwrap().unwrap();
    assert_eq!(at.handle(), Some(vxlan_handle("n1").as_str()));
    assert_eq!(
        at.secondary,
        BTreeMap::from([
            ("node".to_string(), "n1".to_string()),
            ("type".to_string(), "vxlanTunnelAddress".to_string())
        ])
    );
    // Idempotent.
    for _ in 0..3 {
        assert_eq!(
            ensure_vxlan_tunnel_address(&f.client, &f.ipam, "n1").unwrap(),
            Some(a)
        );
    }
    assert_eq!(f.ipam.ips_by_handle(&vxlan_handle("n1")).unwrap(), vec![a]);
    // An extra address under the handle is dropped: exactly one.
    let mut extra = AssignIpArgs::new(ip("10.22.0.200"), "n1");
    extra.handle_id = Some(vxlan_handle("n1"));
    f.ipam.assign_ip(&extra).unwrap();
    assert_eq!(
        ensure_vxlan_tunnel_address(&f.client, &f.ipam, "n1").unwrap(),
        Some(a)
    );
    assert_eq!(f.ipam.ips_by_handle(&vxlan_handle("n1")).unwrap(), vec![a]);
    // The node's field edited to an address that is not ours: re-assigned.
    let mut n = f.get_node("n1").unwrap();
    n.spec.ipv4_vxlan_tunnel_addr = "10.22.0.250".into();
    f.client.replace(calico_api::AnyResource::Node(n)).unwrap();
    let b = ensure_vxlan_tunnel_address(&f.client, &f.ipam, "n1")
        .unwrap()
        .unwrap();
    assert_eq!(f.ipam.ips_by_handle(&vxlan_handle("n1")).unwrap(), vec![b]);
    assert_eq!(
        f.get_node("n1").unwrap().spec.ipv4_vxlan_tunnel_addr,
        b.to_string()
    );
    // No more VXLAN: released, field cleared.
    f.update_pool("vx", |s| {
        s.vxlan_mode = Some(calico_api::network::EncapMode::Never)
    });
    assert_eq!(
        ensure_vxlan_tunnel_address(&f.client, &f.ipam, "n1").unwrap(),
        None
    );
    assert!(f
        .get_node("n1")
        .unwrap()
        .spec
        .ipv4_vxlan_tunnel_addr
        .is_empty());
    assert!(f.ipam.assignment_attributes(b).unwrap().is_none());
    assert!(f.ipam.get_handle(&vxlan_handle("n1")).unwrap().is_none());
    assert_eq!(
        ensure_vxlan_tunnel_address(&f.client, &f.ipam, "n1").unwrap(),
        None
    );
}

fn check_finds_problems_and_report_releases_leaks(f: &Fixture) {
    use calico_api::endpoint::{WorkloadEndpoint, WorkloadEndpointSpec};
    f.pool("p", "10.23.0.0/24", |_| {});
    f.pool("os", "10.24.0.0/24", |_| {});
    f.node("n1", &[]);
    let used = assign(f, "n1", 1, "wep-1");
    let leaked = assign(f, "n1", 2, "gone");
    let mut wep = WorkloadEndpoint::new(
        "n1-k8s-pod1-eth0",
        WorkloadEndpointSpec {
            orchestrator: "k8s".into(),
            node: "n1".into(),
            pod: "pod1".into(),
            endpoint: "eth0".into(),
            interface_name: "cali1".into(),
            ip_networks: vec![format!("{}/32", used[0]), "10.23.0.200/32".into()],
            ..Default::default()
        },
    );
    wep.metadata.namespace = "default".into();
    f.client
        .create(calico_api::AnyResource::WorkloadEndpoint(wep))
        .unwrap();
    let mut vm = WorkloadEndpoint::new(
        "n1-openstack-vm1-tap1",
        WorkloadEndpointSpec {
            orchestrator: "openstack".into(),
            node: "n1".into(),
            workload: "vm1".into(),
            endpoint: "tap1".into(),
            interface_name: "tap1".into(),
            ip_networks: vec!["10.24.0.7/32".into()],
            ..Default::default()
        },
    );
    vm.metadata.namespace = "openstack".into();
    f.client
        .create(calico_api::AnyResource::WorkloadEndpoint(vm))
        .unwrap();
    // A leaked handle and a block of a node that no longer exists.
    f.ipam
        .store()
        .create(
            &handle_key("orphan-handle"),
            br#"{"block":{},"deleted":false}"#,
            None,
        )
        .unwrap();
    assign(f, "dead-node", 1, "dead");
    let r = f.ipam.check().unwrap();
    let mut want_leaked: Vec<IpAddr> = leaked.clone();
    want_leaked.push(f.ipam.ips_by_handle("dead").unwrap()[0]);
    want_leaked.sort();
    assert_eq!(r.leaked, want_leaked);
    assert_eq!(r.not_allocated.len(), 1);
    assert_eq!(r.not_allocated[0].0, ip("10.23.0.200"));
    assert_eq!(
        r.neutron_assigned.len(),
        1,
        "OpenStack (Neutron) addresses are not problems"
    );
    assert_eq!(r.leaked_handles.len(), 1);
    assert_eq!(r.leaked_handles[0].id, "orphan-handle");
    assert_eq!(r.orphaned_blocks.len(), 1);
    assert_eq!(r.orphaned_blocks[0].1, "dead-node");
    assert_eq!(r.problems(), 3 + 1 + 1 + 1);
    // Release from the report: only still-leaked addresses with the same handle.
    let report = r.report("v-test");
    // Meanwhile one leaked address is released and re-allocated to someone else.
    f.ipam
        .release_ips(&[ReleaseOptions::ip(leaked[0])])
        .unwrap();
    f.ipam
        .assign_ip(&AssignIpArgs::new(leaked[0], "n1").handle("new-owner"))
        .unwrap();
    let (ips, handles) = calico_ipam::check::merge_reports(&[report]);
    assert_eq!(ips.len(), 3);
    let res = f.ipam.release_ips(&ips).unwrap();
    assert_eq!(res.released.len(), 2);
    assert_eq!(res.skipped.len(), 1);
    assert_eq!(res.skipped[0].0, leaked[0]);
    assert!(res.not_allocated.is_empty());
    assert_eq!(f.ipam.ips_by_handle("new-owner").unwrap(), vec![leaked[0]]);
    for h in handles {
        assert!(f
            .ipam
            .delete_handle_if_unchanged(&h.id, h.revision.parse().unwrap())
            .unwrap());
    }
    let r = f.ipam.check().unwrap();
    assert_eq!(r.leaked, vec![leaked[0]]);
    assert!(r.leaked_handles.is_empty());
    assert_eq!(
        r.orphaned_blocks.len(),
        1,
        "the dead node's (now empty) block still names it until its affinity is released"
    );
    assert_eq!(
        f.ipam.release_host_affinities("dead-node", true).unwrap(),
        1
    );
    assert!(f.ipam.check().unwrap().orphaned_blocks.is_empty());
}

fn pool_exhaustion_is_partial(f: &Fixture) {
    f.pool("tiny", "10.25.0.0/26", |_| {});
    let r = f.ipam.auto_assign(&args("a", 70, "h")).unwrap();
    assert_eq!(r.v4.ips.len(), 64);
    let e = r.clone().complete().unwrap_err().to_string();
    assert!(
        e.contains("Assigned 64 out of 70 requested IPv4 addresses")
            && e.contains("No IPs available in pools: [10.25.0.0/26]"),
        "{e}"
    );
    let r = f.ipam.auto_assign(&args("b", 1, "h2")).unwrap();
    assert!(r.v4.ips.is_empty());
    assert!(f.ipam.get_handle("h2").unwrap().is_none());
    assert_eq!(f.ipam.get_handle("h").unwrap().unwrap().value.total(), 64);
}
