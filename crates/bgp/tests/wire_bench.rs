//! How fast the codec turns a full Calico-sized table into messages and back.
//! Run in release:
//!   cargo test --release -p calico-bgp --test wire_bench -- --ignored --nocapture

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use calico_bgp::wire::*;
use ipnet::{IpNet, Ipv4Net};

const ROUTES: u32 = 100_000;

/// 100,000 /32s as BIRD sends Calico's borrowed addresses over iBGP with
/// add-path: empty AS path, next hop, LOCAL_PREF, one community.
fn table() -> Update {
    let announced = (0..ROUTES)
        .map(|i| {
            let addr = Ipv4Addr::from(0x0a00_0000 + i);
            Nlri::new(IpNet::V4(Ipv4Net::new(addr, 32).unwrap()), Some(1))
        })
        .collect();
    let attrs = PathAttributes {
        next_hop: Some(Ipv4Addr::new(10, 99, 0, 1)),
        local_pref: Some(100),
        communities: vec![(64512 << 16) | 100],
        ..PathAttributes::default()
    };
    Update {
        announced,
        attrs,
        ..Update::default()
    }
}

/// Best of `reps` timings of `f`.
fn best(reps: usize, mut f: impl FnMut()) -> Duration {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

#[test]
#[ignore = "benchmark; run in release with --ignored --nocapture"]
fn decode_100k_host_routes() {
    let codec = Codec {
        four_octet_as: true,
        add_path_rx: vec![Family::Ipv4Unicast],
        add_path_tx: vec![Family::Ipv4Unicast],
        ..Codec::default()
    };
    let update = Message::Update(table());
    let mut wire = Vec::new();
    codec.encode(&update, &mut wire);

    let (mut decoded, mut messages) = (0, 0);
    let decode = best(10, || {
        (decoded, messages) = (0, 0);
        let mut rest = &wire[..];
        while let Ok(Some((Message::Update(u), used))) = codec.decode(rest) {
            decoded += u.announced.len();
            messages += 1;
            rest = &rest[used..];
        }
    });
    assert_eq!(decoded, ROUTES as usize);
    let encode = best(10, || {
        let mut out = Vec::with_capacity(wire.len());
        codec.encode(&update, &mut out);
        assert_eq!(out.len(), wire.len());
    });
    let rate = |d: Duration| f64::from(ROUTES) / d.as_secs_f64();
    let mb = wire.len() as f64 / 1e6;
    println!(
        "{ROUTES} /32 NLRI (add-path) in {messages} UPDATEs, {mb:.2} MB: decode {:.1} ms ({:.1} M prefixes/s, {:.0} MB/s), encode {:.1} ms ({:.1} M prefixes/s)",
        decode.as_secs_f64() * 1e3,
        rate(decode) / 1e6,
        mb / decode.as_secs_f64(),
        encode.as_secs_f64() * 1e3,
        rate(encode) / 1e6,
    );
}
