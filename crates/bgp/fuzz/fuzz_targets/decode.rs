//! Decodes arbitrary bytes as a BGP stream with every Codec flag combination
//! (from the first input byte), then re-encodes what decoded and checks that
//! our own output decodes, to the same thing where the wire allows.
#![no_main]

use calico_bgp::wire::{AsSegment, Codec, Family, Message, Nlri, PathAttributes, Update, AS_TRANS};
use libfuzzer_sys::fuzz_target;

/// Bit 0: 4-octet AS; bit 1: extended messages; bits 2-3: add-path receive
/// for IPv4/IPv6; bits 4-5: add-path send for IPv4/IPv6.
fn codec(flags: u8) -> Codec {
    let families = |shift: u8| {
        Family::ALL
            .into_iter()
            .enumerate()
            .filter(|(i, _)| flags >> (shift + *i as u8) & 1 == 1)
            .map(|(_, f)| f)
            .collect()
    };
    Codec {
        four_octet_as: flags & 1 != 0,
        extended_message: flags & 2 != 0,
        add_path_rx: families(2),
        add_path_tx: families(4),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let codec = codec(flags);
    while let Ok(Some((msg, used))) = codec.decode(rest) {
        assert!((19..=rest.len()).contains(&used));
        assert!(used <= codec.max_message_len());
        rest = &rest[used..];
        reencode(&codec, &msg);
    }
});

/// Encodes `msg` with `codec`'s send side and decodes it with a codec whose
/// receive side matches: our output must always decode without error.
fn reencode(codec: &Codec, msg: &Message) {
    let peer = Codec {
        add_path_rx: codec.add_path_tx.clone(),
        ..codec.clone()
    };
    let mut out = Vec::new();
    let complete = codec.encode_checked(msg, &mut out).is_ok();
    let mut again = Vec::new();
    let mut rest = &out[..];
    while !rest.is_empty() {
        let (m, used) = peer
            .decode(rest)
            .expect("our output decodes")
            .expect("whole messages");
        again.push(m);
        rest = &rest[used..];
    }
    if !complete {
        return;
    }
    match msg {
        Message::Update(u) if u.treat_as_withdraw => {}
        Message::Update(u) => check_update(codec, u, again),
        _ => assert_eq!(again, vec![msg.clone()]),
    }
}

fn check_update(codec: &Codec, u: &Update, parts: Vec<Message>) {
    let (mut withdrawn, mut announced, mut eor) = (Vec::new(), Vec::new(), None);
    for m in parts {
        let Message::Update(p) = m else {
            panic!("not an UPDATE")
        };
        assert!(!p.treat_as_withdraw);
        if let Some(first) = p.announced.first() {
            assert_eq!(
                normal(&p.attrs),
                normal(&expected_attrs(codec, &u.attrs, first.family()))
            );
        }
        withdrawn.extend(p.withdrawn);
        announced.extend(p.announced);
        eor = eor.or(p.end_of_rib);
    }
    assert_eq!(withdrawn, sent(codec, &u.withdrawn));
    assert_eq!(announced, sent(codec, &u.announced));
    assert_eq!(eor, u.end_of_rib);
}

/// The routes as they go out: IPv4 first, path ids as the send side says.
fn sent(codec: &Codec, list: &[Nlri]) -> Vec<Nlri> {
    let mut out = Vec::new();
    for family in Family::ALL {
        let tx = codec.add_path_tx.contains(&family);
        out.extend(list.iter().filter(|n| n.family() == family).map(|n| Nlri {
            prefix: n.prefix,
            path_id: tx.then(|| n.path_id.unwrap_or(0)),
        }));
    }
    out
}

/// Each family's messages carry only its next hop; on a 2-octet session an
/// AGGREGATOR with a real 2-octet AS hides AS4_PATH (RFC 6793 §4.2.3).
fn expected_attrs(codec: &Codec, a: &PathAttributes, family: Family) -> PathAttributes {
    let mut e = a.clone();
    match family {
        Family::Ipv4Unicast => e.mp_next_hop = None,
        Family::Ipv6Unicast => e.next_hop = None,
    }
    let stale =
        matches!(e.aggregator, Some((asn, _)) if asn <= 0xffff && asn != u32::from(AS_TRANS));
    if !codec.four_octet_as && stale {
        let t = |v: &Vec<u32>| {
            v.iter()
                .map(|&x| if x > 0xffff { u32::from(AS_TRANS) } else { x })
                .collect()
        };
        e.as_path = e
            .as_path
            .iter()
            .map(|s| match s {
                AsSegment::Sequence(v) => AsSegment::Sequence(t(v)),
                AsSegment::Set(v) => AsSegment::Set(t(v)),
            })
            .collect();
    }
    e
}

/// Differences the wire does not carry: where a long sequence is split,
/// and the Partial bit we set on unknown attributes we pass on.
fn normal(a: &PathAttributes) -> PathAttributes {
    let mut n = a.clone();
    n.as_path.clear();
    for seg in &a.as_path {
        match (n.as_path.last_mut(), seg) {
            (Some(AsSegment::Sequence(prev)), AsSegment::Sequence(next)) => prev.extend(next),
            _ => n.as_path.push(seg.clone()),
        }
    }
    n.other.iter_mut().for_each(|r| r.flags |= 0x20);
    n
}
