//! Property tests of block arithmetic and allocation order, against a
//! simple model of upstream's free list (take from the front, released
//! ordinals appended at the back).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use calico_ipam::block::{
    block_for_ip, block_index, blocks_in, nth_block, AllocationBlock, BlockOrder, Release,
};
use calico_ipam::Reservations;
use ipnet::IpNet;
use proptest::prelude::*;

fn v4_block() -> impl Strategy<Value = IpNet> {
    (any::<u32>(), 20u8..=32).prop_map(|(a, p)| {
        IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), p)
            .unwrap()
            .trunc()
    })
}

fn v6_block() -> impl Strategy<Value = IpNet> {
    (any::<u128>(), 116u8..=128).prop_map(|(a, p)| {
        IpNet::new(IpAddr::V6(Ipv6Addr::from(a)), p)
            .unwrap()
            .trunc()
    })
}

fn any_block() -> impl Strategy<Value = IpNet> {
    prop_oneof![v4_block(), v6_block()]
}

#[derive(Clone, Debug)]
enum Step {
    Assign { n: usize, handle: u8 },
    Release { pick: usize, by_handle: bool },
    ReleaseHandle(u8),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            (1usize..6, 0u8..4).prop_map(|(n, handle)| Step::Assign { n, handle }),
            (any::<usize>(), any::<bool>())
                .prop_map(|(pick, by_handle)| Step::Release { pick, by_handle }),
            (0u8..4).prop_map(Step::ReleaseHandle),
        ],
        0..60,
    )
}

proptest! {
    #[test]
    fn ordinal_and_address_are_inverse(block in any_block(), ord in any::<usize>()) {
        let b = AllocationBlock::new(block, None);
        let ord = ord % b.num_addresses();
        let ip = b.ordinal_to_ip(ord);
        prop_assert!(block.contains(&ip));
        prop_assert_eq!(b.ip_to_ordinal(ip), Some(ord));
        prop_assert_eq!(block_for_ip(ip, block.prefix_len()), block);
    }

    #[test]
    fn addresses_outside_have_no_ordinal(block in v4_block(), a in any::<u32>()) {
        let ip = IpAddr::V4(Ipv4Addr::from(a));
        let b = AllocationBlock::new(block, None);
        prop_assert_eq!(b.ip_to_ordinal(ip).is_some(), block.contains(&ip));
    }

    #[test]
    fn block_of_address_is_inside_its_pool(a in any::<u32>(), plen in 8u8..=26, extra in 0u8..=6) {
        let bs = (plen + extra).clamp(20, 32).max(plen);
        let pool = IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), plen).unwrap().trunc();
        let ip = IpAddr::V4(Ipv4Addr::from(a));
        let b = block_for_ip(ip, bs);
        prop_assert!(pool.contains(&b.network()) && b.contains(&ip));
        let i = block_index(&pool, bs, &b).unwrap();
        prop_assert!(i < blocks_in(&pool, bs));
        prop_assert_eq!(nth_block(&pool, bs, i), b);
    }

    #[test]
    fn block_order_is_a_permutation(a in any::<u32>(), plen in 16u8..=26, host in "[a-z0-9.-]{1,20}") {
        let pool = IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), plen).unwrap().trunc();
        let order = BlockOrder::for_host(&pool, 26, &host);
        let all: Vec<IpNet> = order.clone().collect();
        prop_assert_eq!(all.len() as u128, blocks_in(&pool, 26));
        let set: BTreeSet<IpNet> = all.iter().copied().collect();
        prop_assert_eq!(set.len(), all.len());
        for (i, b) in all.iter().enumerate() {
            prop_assert!(pool.contains(&b.network()));
            prop_assert_eq!(order.position(b), Some(i as u128));
        }
        // Deterministic: the same host walks the same way.
        let again: Vec<IpNet> = BlockOrder::for_host(&pool, 26, &host).collect();
        prop_assert_eq!(all, again);
    }

    #[test]
    fn fresh_block_hands_out_lowest_ordinals_first(block in any_block(), chunks in prop::collection::vec(1usize..9, 1..20)) {
        let mut b = AllocationBlock::new(block, None);
        let mut next = 0usize;
        for n in chunks {
            let got = b.auto_assign(n, Some("h"), &BTreeMap::new(), &Reservations::default());
            let want: Vec<IpAddr> = (next..(next + n).min(b.num_addresses())).map(|o| b.ordinal_to_ip(o)).collect();
            prop_assert_eq!(&got, &want);
            next += got.len();
        }
    }

    #[test]
    fn allocation_order_follows_the_free_list_model(block in v4_block(), steps in steps()) {
        let mut b = AllocationBlock::new(block, Some("host:n".into()));
        let n = b.num_addresses();
        let mut free: VecDeque<usize> = (0..n).collect();
        let mut owner: BTreeMap<usize, u8> = BTreeMap::new();
        for step in steps {
            match step {
                Step::Assign { n: k, handle } => {
                    let h = format!("h{handle}");
                    let attrs = BTreeMap::from([("node".to_string(), format!("n{handle}"))]);
                    let got = b.auto_assign(k, Some(&h), &attrs, &Reservations::default());
                    let want: Vec<usize> = (0..k.min(free.len())).map(|_| free.pop_front().unwrap()).collect();
                    prop_assert_eq!(got.clone(), want.iter().map(|o| b.ordinal_to_ip(*o)).collect::<Vec<_>>());
                    for o in want {
                        prop_assert!(owner.insert(o, handle).is_none(), "ordinal handed out twice");
                    }
                }
                Step::Release { pick, by_handle } => {
                    let o = pick % n;
                    let ip = b.ordinal_to_ip(o);
                    let handle = owner.get(&o).map(|h| format!("h{h}"));
                    let r = b.release_one(ip, if by_handle { handle.as_deref() } else { None }, None);
                    b.compact_attributes();
                    match owner.remove(&o) {
                        Some(h) => {
                            prop_assert_eq!(r, Release::Released { handle: Some(format!("h{h}")) });
                            free.push_back(o);
                        }
                        None => prop_assert_eq!(r, Release::NotAllocated),
                    }
                }
                Step::ReleaseHandle(h) => {
                    let mine: Vec<usize> = owner.iter().filter(|(_, v)| **v == h).map(|(o, _)| *o).collect();
                    let got = b.release_by_handle(&format!("h{h}"));
                    prop_assert_eq!(got, mine.iter().map(|o| b.ordinal_to_ip(*o)).collect::<Vec<_>>());
                    for o in mine {
                        owner.remove(&o);
                        free.push_back(o);
                    }
                }
            }
            // Invariants after every step.
            prop_assert_eq!(b.unallocated.iter().copied().collect::<VecDeque<_>>(), free.clone());
            prop_assert!(b.check().is_ok());
            prop_assert_eq!(b.in_use(), owner.len());
            prop_assert_eq!(b.is_empty(), owner.is_empty());
            let used: BTreeSet<usize> = b.allocations.iter().flatten().copied().collect();
            prop_assert_eq!(used.len(), b.attributes.len(), "every attribute referenced");
            for h in 0u8..4 {
                let count = owner.values().filter(|v| **v == h).count();
                prop_assert_eq!(b.count_by_handle(&format!("h{h}")), count);
            }
            prop_assert_eq!(b.sequence_number_for_allocation.len(), owner.len());
        }
        let json = serde_json::to_string(&b).unwrap();
        let back: AllocationBlock = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, b);
    }

    #[test]
    fn reserved_addresses_are_never_handed_out(block in v4_block(), res_len in 24u8..=32, off in any::<u32>(), k in 1usize..80) {
        let mut b = AllocationBlock::new(block, None);
        let base = u32::from(match block.network() { IpAddr::V4(a) => a, _ => unreachable!() });
        let size = b.num_addresses() as u32;
        let r_ip = Ipv4Addr::from(base.wrapping_add(off % size));
        let r = Reservations::new([IpNet::new(IpAddr::V4(r_ip), res_len).unwrap()]);
        let free_before = b.num_free(&r);
        let got = b.auto_assign(k, None, &BTreeMap::new(), &r);
        prop_assert_eq!(got.len(), k.min(free_before));
        for ip in got {
            prop_assert!(!r.matches_ip(ip));
        }
    }
}
