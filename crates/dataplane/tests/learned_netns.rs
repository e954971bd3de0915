//! BGP-learned routes through the real kernel: 10,000 routes written in
//! pipelined batches, kept across a restart until BGP has converged, then
//! only what is still wanted. Root only; the namespace is the test's own.

use std::net::Ipv4Addr;
use std::time::Instant;

use calico_dataplane::learned::{LearnedRoutes, RTPROT_BIRD};
use calico_dataplane::netlink::{KernelRoute, RouteKind, RtNetlink};
use calico_testsupport::netns::Netns;
use ipnet::IpNet;

fn route(i: u32) -> (IpNet, Option<KernelRoute>) {
    let dst: IpNet = IpNet::from(std::net::IpAddr::V4(Ipv4Addr::from(0xC612_0000 + i)));
    let r = KernelRoute {
        dst,
        kind: RouteKind::Via {
            gateway: "198.19.255.2".parse().unwrap(),
            iface: None,
            onlink: false,
        },
        protocol: RTPROT_BIRD,
    };
    (dst, Some(r))
}

fn count(ns: &Netns) -> usize {
    ns.ip(&["route", "show", "proto", "bird"]).lines().count()
}

/// Runs `f` on a thread inside the namespace (netlink sockets are per
/// namespace of the thread that opens them).
fn inside<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter();
            f()
        })
        .join()
        .unwrap()
    })
}

#[test]
fn ten_thousand_routes_in_batches_kept_across_a_restart_until_converged() {
    if !calico_testsupport::require_root(
        "ten_thousand_routes_in_batches_kept_across_a_restart_until_converged",
    ) {
        return;
    }
    let ns = Netns::create("clrn", "a");
    ns.ip(&["link", "add", "cl0", "type", "veth", "peer", "name", "cl1"]);
    ns.ip(&["addr", "add", "198.19.255.1/24", "dev", "cl0"]);
    ns.ip(&["link", "set", "cl0", "up"]);
    ns.ip(&["link", "set", "cl1", "up"]);

    let took = inside(&ns, || {
        let mut m = LearnedRoutes::new(RtNetlink::new().unwrap(), RTPROT_BIRD);
        m.converged();
        for i in 0..10_000 {
            let (d, r) = route(i);
            m.set(d, r);
        }
        let t = Instant::now();
        let stats = m.apply().unwrap();
        assert_eq!(stats.writes, 10_000);
        assert!(m.failures().is_empty(), "{:?}", m.failures().iter().next());
        t.elapsed()
    });
    assert_eq!(count(&ns), 10_000);
    eprintln!("10,000 routes written in {took:?}");

    // A restarted agent wants only the first half back.
    inside(&ns, || {
        let mut m = LearnedRoutes::new(RtNetlink::new().unwrap(), RTPROT_BIRD);
        for i in 0..5_000 {
            let (d, r) = route(i);
            m.set(d, r);
        }
        m.apply().unwrap();
        assert_eq!(count(&ns), 10_000, "nothing removed before BGP converged");
        m.converged();
        m.apply().unwrap();
    });
    assert_eq!(count(&ns), 5_000, "the rest removed once converged");
    // Foreign routes (another protocol) are never touched.
    ns.ip(&[
        "route",
        "add",
        "198.20.0.0/24",
        "via",
        "198.19.255.2",
        "proto",
        "static",
    ]);
    inside(&ns, || {
        let mut m = LearnedRoutes::new(RtNetlink::new().unwrap(), RTPROT_BIRD);
        m.converged();
        m.apply().unwrap();
    });
    assert_eq!(count(&ns), 0);
    assert!(ns
        .ip(&["route", "show", "198.20.0.0/24"])
        .contains("proto static"));
}
