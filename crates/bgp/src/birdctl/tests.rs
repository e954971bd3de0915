//! Replies compared with what Calico's BIRD 1.6 answered.
//!
//! `testdata/bird16-lab.txt` is the raw socket output of projectcalico/bird
//! (`v0.3.3+birdv1.6.8`, built from its last commit) running
//! `testdata/bird16-lab-a.conf` (Calico's templates cut down) in a network
//! namespace, peering over a veth pair with a BIRD 2.0.12 running
//! `testdata/bird2-lab-b.conf`; see `testdata/README.md`. [`lab_view`] is
//! the same state as a `BirdView`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::SystemTime;

use chrono::{Local, TimeZone};

use super::*;

/// A local time on the day of the lab capture, 2026-12-07.
fn at(h: u32, m: u32, s: u32) -> SystemTime {
    at_day(7, h, m, s)
}

fn at_day(day: u32, h: u32, m: u32, s: u32) -> SystemTime {
    Local
        .with_ymd_and_hms(2026, 12, day, h, m, s)
        .earliest()
        .expect("a local time")
        .into()
}

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn counters(received: u32, rejected: u32, filtered: u32, accepted: u32) -> ChangeCounters {
    ChangeCounters {
        received,
        rejected,
        filtered,
        ignored: 0,
        accepted,
    }
}

fn stats(imported: u32, exported: u32, preferred: u32) -> ProtoStats {
    ProtoStats {
        imported,
        exported,
        preferred,
        import_updates: counters(imported, 0, 0, imported),
        ..ProtoStats::default()
    }
}

fn bgp_protocol(name: &str, state: ProtoState, since: SystemTime, b: BgpDetail) -> ProtocolView {
    ProtocolView {
        description: Some("Connection to BGP peer".into()),
        bgp: Some(b),
        ..ProtocolView::new(name, ProtoKind::Bgp, state, since)
    }
}

/// The lab's node A, as its BIRD 1.6 showed it.
pub(crate) fn lab_view() -> BirdView {
    let boot = at(0, 38, 10);
    let up = at(0, 41, 2);
    let mut kernel = ProtocolView::new("kernel1", ProtoKind::Kernel, ProtoState::Up, boot);
    kernel.output_filter = "calico_kernel_programming".into();
    kernel.stats = ProtoStats {
        export_updates: counters(9, 3, 0, 6),
        export_withdraws: counters(2, 0, 0, 2),
        ..stats(2, 4, 2)
    };

    let mut mesh2 = BgpDetail::new(BgpState::Established, v4("10.99.0.2"), 64512, 64512);
    mesh2.multihop = true;
    mesh2.session = Some(BgpSession {
        neighbor_id: Ipv4Addr::new(10, 99, 0, 2),
        neighbor_caps: NeighborCaps {
            refresh: true,
            enhanced_refresh: true,
            graceful_restart: GrCapability::Able,
            long_lived_gr: GrCapability::Aware,
            as4: true,
            add_path_rx: true,
            add_path_tx: true,
            ext_messages: false,
        },
        as4: true,
        add_path_rx: true,
        add_path_tx: true,
        ext_messages: false,
        source_address: v4("10.99.0.1"),
        hold_timer: (210, 240),
        keepalive_timer: (60, 80),
    });
    let mut mesh2 = bgp_protocol("Mesh_10_99_0_2", ProtoState::Up, up, mesh2);
    mesh2.input_filter = "(unnamed)".into();
    mesh2.output_filter = "(unnamed)".into();
    mesh2.stats = ProtoStats {
        export_updates: counters(8, 3, 3, 2),
        ..stats(3, 2, 2)
    };

    let mut node3 = BgpDetail::new(BgpState::Connect, v4("10.99.0.3"), 64512, 64512);
    node3.multihop = true;
    node3.last_error = Some("Socket: No route to host".into());
    let mut node3 = bgp_protocol("Node_10_99_0_3", ProtoState::Start, boot, node3);
    node3.output_filter = "(unnamed)".into();

    let mut global4 = BgpDetail::new(BgpState::Idle, v4("10.99.0.4"), 64512, 64512);
    global4.passive = true;
    let global4 = bgp_protocol("Global_10_99_0_4", ProtoState::Start, boot, global4);

    let mesh5 = BgpDetail::new(BgpState::Idle, v4("10.99.0.5"), 64512, 64512);
    let mesh5 = bgp_protocol("Mesh_10_99_0_5", ProtoState::Down, at(0, 40, 8), mesh5);

    let protocols = vec![
        ProtocolView {
            stats: stats(2, 0, 2),
            ..ProtocolView::new("static1", ProtoKind::Static, ProtoState::Up, boot)
        },
        kernel,
        ProtocolView {
            stats: stats(0, 0, 0),
            ..ProtocolView::new("device1", ProtoKind::Device, ProtoState::Up, boot)
        },
        ProtocolView {
            stats: stats(1, 0, 1),
            ..ProtocolView::new("direct1", ProtoKind::Direct, ProtoState::Up, boot)
        },
        mesh2,
        node3,
        global4,
        mesh5,
    ];

    let via_b = || RouteDest::Via {
        gateway: v4("10.99.0.2"),
        iface: "cbcA".into(),
    };
    let learned = |prefix: &str, dest| RouteView {
        kernel: Some(KernelAttrs {
            source: 3,
            ..KernelAttrs::default()
        }),
        ..RouteView::new(
            prefix.parse().unwrap(),
            dest,
            "kernel1",
            RouteSource::Inherit,
            boot,
        )
    };
    let block = |prefix: &str, dest| RouteView {
        exported_to: vec!["Mesh_10_99_0_2".into(), "kernel1".into()],
        ..RouteView::new(
            prefix.parse().unwrap(),
            dest,
            "static1",
            RouteSource::Static,
            boot,
        )
    };
    let from_b = |prefix: &str, attrs: BgpRouteAttrs| RouteView {
        bgp: Some(attrs),
        exported_to: vec!["kernel1".into()],
        ..RouteView::new(
            prefix.parse().unwrap(),
            via_b(),
            "Mesh_10_99_0_2",
            RouteSource::Bgp,
            up,
        )
    };
    let plain = BgpRouteAttrs {
        next_hop: Some(v4("10.99.0.2")),
        local_pref: Some(100),
        igp_metric: Some(IgpMetric::Metric(0)),
        ..BgpRouteAttrs::default()
    };
    let tagged = BgpRouteAttrs {
        as_path: vec![65001],
        med: Some(5),
        communities: vec![(64512, 100), (65000, 7)],
        ..plain.clone()
    };
    let routes = vec![
        learned("0.0.0.0/0", via_b()),
        block("192.168.10.0/26", RouteDest::Blackhole),
        block("192.168.10.64/26", RouteDest::Unreachable),
        from_b("192.168.20.0/26", plain.clone()),
        from_b("192.168.30.0/26", tagged),
        learned(
            "192.168.10.5/32",
            RouteDest::Device {
                iface: "cbcA".into(),
            },
        ),
        RouteView {
            primary: false,
            exported_to: vec![],
            ..from_b("10.99.0.0/24", plain)
        },
        RouteView::new(
            "10.99.0.0/24".parse().unwrap(),
            RouteDest::Device {
                iface: "cbcA".into(),
            },
            "direct1",
            RouteSource::Device,
            boot,
        ),
    ];

    BirdView {
        router_id: Ipv4Addr::new(10, 99, 0, 1),
        now: at(0, 41, 31),
        started: boot,
        reconfigured: at(0, 40, 8),
        protocols,
        routes,
        ..BirdView::default()
    }
}

/// A lab capture: the greeting, then each command and its reply.
fn capture(text: &str) -> (String, Vec<(String, String)>) {
    let mut parts = text.split("== ");
    let greeting = parts.next().unwrap().to_string();
    let replies = parts
        .map(|p| {
            let (cmd, reply) = p.split_once('\n').unwrap();
            (cmd.to_string(), reply.to_string())
        })
        .collect();
    (greeting, replies)
}

fn text(view: &BirdView, cmd: &str) -> String {
    String::from_utf8(reply(view, cmd)).unwrap()
}

#[track_caller]
fn assert_reply(view: &BirdView, cmd: &str, expected: &str) {
    let got = text(view, cmd);
    if got != expected {
        let diff: Vec<String> = got
            .lines()
            .zip(expected.lines())
            .enumerate()
            .filter(|(_, (g, e))| g != e)
            .take(5)
            .map(|(i, (g, e))| format!("line {i}:\n  got      {g:?}\n  expected {e:?}"))
            .collect();
        panic!(
            "{cmd:?}:\n{}\n--- got ---\n{got}--- expected ---\n{expected}",
            diff.join("\n")
        );
    }
}

#[test]
fn every_captured_reply_is_reproduced_byte_for_byte() {
    let view = lab_view();
    let (hello, replies) = capture(include_str!("testdata/bird16-lab.txt"));
    assert_eq!(String::from_utf8(greeting(&view)).unwrap(), hello);
    assert!(replies.len() >= 15);
    for (cmd, expected) in &replies {
        assert_reply(&view, cmd, expected);
    }
}

/// The IPv6 lab: Calico's bird6 (the same source built with
/// `--enable-ipv6 --with-sysconfig=linux-v6`) and BIRD 2.0.12 on a veth
/// pair with fd00:99::1/64 and fd00:99::2/64.
fn lab6_view() -> BirdView {
    let boot = at(0, 51, 10);
    let up = at(0, 51, 12);
    let ip6 = |s: &str| -> IpAddr { s.parse().unwrap() };
    let mut mesh = BgpDetail::new(BgpState::Established, ip6("fd00:99::2"), 64512, 64512);
    mesh.multihop = true;
    mesh.session = Some(BgpSession {
        neighbor_id: Ipv4Addr::new(10, 99, 0, 2),
        neighbor_caps: NeighborCaps {
            refresh: true,
            enhanced_refresh: true,
            graceful_restart: GrCapability::Able,
            long_lived_gr: GrCapability::Aware,
            as4: true,
            add_path_rx: true,
            add_path_tx: true,
            ext_messages: false,
        },
        as4: true,
        add_path_rx: true,
        add_path_tx: true,
        ext_messages: false,
        source_address: ip6("fd00:99::1"),
        hold_timer: (183, 240),
        keepalive_timer: (67, 80),
    });
    let mut mesh = bgp_protocol("Mesh_fd00_99__2", ProtoState::Up, up, mesh);
    mesh.output_filter = "(unnamed)".into();
    mesh.stats = ProtoStats {
        export_updates: counters(5, 2, 1, 2),
        ..stats(2, 2, 1)
    };
    let proto = |name: &str, kind| ProtocolView::new(name, kind, ProtoState::Up, boot);
    let cbca = || "cbcA".to_string();
    let bgp = |communities| BgpRouteAttrs {
        next_hop: Some(ip6("fd00:99::2")),
        local_pref: Some(100),
        communities,
        igp_metric: Some(IgpMetric::Metric(0)),
        ..BgpRouteAttrs::default()
    };
    let via_b = || RouteDest::Via {
        gateway: ip6("fd00:99::2"),
        iface: cbca(),
    };
    let net = |s: &str| s.parse().unwrap();
    BirdView {
        ipv6: true,
        router_id: Ipv4Addr::new(10, 99, 0, 1),
        now: at(0, 51, 30),
        started: boot,
        reconfigured: boot,
        protocols: vec![
            proto("static1", ProtoKind::Static),
            proto("kernel1", ProtoKind::Kernel),
            proto("device1", ProtoKind::Device),
            proto("direct1", ProtoKind::Direct),
            mesh,
        ],
        routes: vec![
            RouteView {
                kernel: Some(KernelAttrs {
                    source: 3,
                    metric: 1024,
                    prefsrc: None,
                    scope: Some(0),
                }),
                ..RouteView::new(
                    net("fd00:10:244:1::5/128"),
                    RouteDest::Device { iface: cbca() },
                    "kernel1",
                    RouteSource::Inherit,
                    boot,
                )
            },
            RouteView::new(
                net("fd00:10:244:1::/122"),
                RouteDest::Blackhole,
                "static1",
                RouteSource::Static,
                boot,
            ),
            RouteView {
                bgp: Some(bgp(vec![(64512, 100)])),
                ..RouteView::new(
                    net("fd00:10:244:2::/122"),
                    via_b(),
                    "Mesh_fd00_99__2",
                    RouteSource::Bgp,
                    up,
                )
            },
            RouteView::new(
                net("fd00:99::/64"),
                RouteDest::Device { iface: cbca() },
                "direct1",
                RouteSource::Device,
                boot,
            ),
            RouteView {
                bgp: Some(bgp(vec![])),
                primary: false,
                ..RouteView::new(
                    net("fd00:99::/64"),
                    via_b(),
                    "Mesh_fd00_99__2",
                    RouteSource::Bgp,
                    up,
                )
            },
        ],
        ..BirdView::default()
    }
}

#[test]
fn the_ipv6_daemons_replies_are_reproduced_byte_for_byte() {
    let view = lab6_view();
    let (hello, replies) = capture(include_str!("testdata/bird6-lab.txt"));
    assert_eq!(String::from_utf8(greeting(&view)).unwrap(), hello);
    assert_eq!(replies.len(), 8);
    for (cmd, expected) in &replies {
        assert_reply(&view, cmd, expected);
    }
}

#[test]
fn more_captured_replies() {
    // Answers of the same BIRD 1.6 in the same lab, not in the capture file.
    let v = lab_view();
    assert_reply(
        &v,
        "show route for 1.2.3.4",
        "1007-0.0.0.0/0          via 10.99.0.2 on cbcA [kernel1 00:38:10] * (10)\n0000 \n",
    );
    assert_reply(
        &v,
        "show route for 192.168.10.0/24",
        "1007-0.0.0.0/0          via 10.99.0.2 on cbcA [kernel1 00:38:10] * (10)\n0000 \n",
    );
    assert_reply(
        &v,
        "show route for 192.168.10.5",
        "1007-192.168.10.5/32    dev cbcA [kernel1 00:38:10] * (10)\n0000 \n",
    );
    assert_reply(
        &v,
        "show route 10.99.0.0/24 all",
        concat!(
            "1007-10.99.0.0/24       dev cbcA [direct1 00:38:10] * (240)\n",
            "1008-\tType: device unicast univ\n",
            "1007-                   via 10.99.0.2 on cbcA [Mesh_10_99_0_2 00:41:02] (100/0) [i]\n",
            "1008-\tType: BGP unicast univ\n",
            "1012-\tBGP.origin: IGP\n",
            " \tBGP.as_path: \n",
            " \tBGP.next_hop: 10.99.0.2\n",
            " \tBGP.local_pref: 100\n",
            "0000 \n"
        ),
    );
    assert_reply(&v, "show route 192.168.20.0/26 protocol static1", "0000 \n");
    assert_reply(&v, "show route 192.168.10.0/26 all count", "0000 \n");
    assert_reply(&v, "show route filtered", "0000 \n");
    assert_reply(&v, "show route protocol Mesh_10_99_0_5", "0000 \n");
    assert_reply(
        &v,
        "show route protocol kernel1 count",
        "0014 2 of 8 routes for 7 networks\n",
    );
    assert_reply(
        &v,
        "show route table master count",
        "0014 8 of 8 routes for 7 networks\n",
    );
    assert_reply(&v, "show route primary", concat!(
        "1007-0.0.0.0/0          via 10.99.0.2 on cbcA [kernel1 00:38:10] * (10)\n",
        " 192.168.10.0/26    blackhole [static1 00:38:10] * (200)\n",
        " 192.168.10.64/26   unreachable [static1 00:38:10] * (200)\n",
        " 192.168.20.0/26    via 10.99.0.2 on cbcA [Mesh_10_99_0_2 00:41:02] * (100/0) [i]\n",
        " 192.168.30.0/26    via 10.99.0.2 on cbcA [Mesh_10_99_0_2 00:41:02] * (100/0) [AS65001i]\n",
        " 192.168.10.5/32    dev cbcA [kernel1 00:38:10] * (10)\n",
        " 10.99.0.0/24       dev cbcA [direct1 00:38:10] * (240)\n",
        "0000 \n"));
    assert_reply(
        &v,
        "show route export Mesh_10_99_0_2",
        concat!(
            "1007-192.168.10.0/26    blackhole [static1 00:38:10] * (200)\n",
            " 192.168.10.64/26   unreachable [static1 00:38:10] * (200)\n",
            "0000 \n"
        ),
    );
    assert_reply(
        &v,
        "show route noexport Mesh_10_99_0_2",
        concat!(
            "1007-0.0.0.0/0          via 10.99.0.2 on cbcA [kernel1 00:38:10] * (10)\n",
            " 192.168.10.5/32    dev cbcA [kernel1 00:38:10] * (10)\n",
            " 10.99.0.0/24       dev cbcA [direct1 00:38:10] * (240)\n",
            "0000 \n"
        ),
    );
    let stats = text(&v, "show route stats");
    assert!(stats.ends_with("                    via 10.99.0.2 on cbcA [Mesh_10_99_0_2 00:41:02] (100/0) [i]\n0014 8 of 8 routes for 7 networks\n"), "{stats}");
    assert_reply(&v, "show protocols kernel1", "2002-name     proto    table    state  since       info\n1002-kernel1  Kernel   master   up     00:38:10    \n0000 \n");
    assert_reply(
        &v,
        r#"show protocols "Mesh_10_99_0_?""#,
        concat!(
            "2002-name     proto    table    state  since       info\n",
            "1002-Mesh_10_99_0_2 BGP      master   up     00:41:02    Established   \n",
            " Mesh_10_99_0_5 BGP      master   down   00:40:08    \n",
            "0000 \n"
        ),
    );
    assert_reply(
        &v,
        "show protocols all \"*_5\"",
        concat!(
            "2002-name     proto    table    state  since       info\n",
            "1002-Mesh_10_99_0_5 BGP      master   down   00:40:08    \n",
            "1006-  Description:    Connection to BGP peer\n",
            "   Preference:     100\n",
            "   Input filter:   ACCEPT\n",
            "   Output filter:  REJECT\n",
            "   BGP state:          Down\n",
            "     Neighbor address: 10.99.0.5\n",
            "     Neighbor AS:      64512\n",
            " \n",
            "0000 \n"
        ),
    );
    assert_reply(&v, "restrict", "0016 Access restricted\n");
    assert_reply(&v, "configure", "8007 Access denied\n");
    assert_reply(&v, "show route 192.168.10.1/24", "9001 Invalid prefix\n");
    assert_reply(&v, "show status\r\n", &text(&v, "show status"));
}

#[test]
fn a_bgp_session_that_lost_its_peer() {
    // BIRD 1.6 after the peer's BIRD was stopped (also from the lab).
    let mut v = lab_view();
    let p = &mut v.protocols[4];
    p.state = ProtoState::Start;
    p.since = at(0, 39, 18);
    p.stats = ProtoStats::default();
    let b = p.bgp.as_mut().unwrap();
    b.state = BgpState::Active;
    b.session = None;
    b.connect_delay = Some((2, 2));
    b.last_error = Some("Socket: Connection refused".into());
    assert_reply(&v, "show protocols Mesh_10_99_0_2", concat!(
        "2002-name     proto    table    state  since       info\n",
        "1002-Mesh_10_99_0_2 BGP      master   start  00:39:18    Active        Socket: Connection refused\n",
        "0000 \n"));
    let all = text(&v, "show protocols all Mesh_10_99_0_2");
    assert!(
        all.ends_with(concat!(
            "   BGP state:          Active\n",
            "     Neighbor address: 10.99.0.2\n",
            "     Neighbor AS:      64512\n",
            "     Connect delay:    2/2\n",
            "     Last error:       Socket: Connection refused\n",
            " \n",
            "0000 \n"
        )),
        "{all}"
    );
    assert!(all.contains("   Routes:         0 imported, 0 exported, 0 preferred\n"));
}

#[test]
fn since_is_a_date_after_twenty_hours() {
    let mut v = lab_view();
    v.protocols.truncate(1);
    v.now = at(20, 38, 9);
    assert!(text(&v, "show protocols").contains("up     00:38:10    \n"));
    v.now = at(20, 38, 10);
    assert!(text(&v, "show protocols").contains("up     2026-12-07  \n"));
    v.now = at_day(9, 1, 0, 0);
    v.routes.truncate(1);
    assert_reply(
        &v,
        "show route",
        "1007-0.0.0.0/0          via 10.99.0.2 on cbcA [kernel1 2026-12-07] * (10)\n0000 \n",
    );
}

#[test]
fn status_while_recovering_from_a_graceful_restart() {
    // The layout calico-node's readiness check was written against.
    let mut v = lab_view();
    v.graceful_restart = Some(GracefulRecovery {
        waiting_protocols: 1,
        wait_remaining: 215,
        wait_total: 240,
    });
    v.protocols[4].gr_pending = true;
    assert_reply(
        &v,
        "show status",
        concat!(
            "1000-BIRD v0.3.3+birdv1.6.8\n",
            "1011-Router ID is 10.99.0.1\n",
            " Current server time is 2026-12-07 00:41:31\n",
            " Last reboot on 2026-12-07 00:38:10\n",
            " Last reconfiguration on 2026-12-07 00:40:08\n",
            "0024-Graceful restart recovery in progress\n",
            "   Waiting for 1 protocols to recover\n",
            "   Wait timer is 215/240\n",
            "0013 Daemon is up and running\n"
        ),
    );
    assert!(text(&v, "show protocols all Mesh_10_99_0_2")
        .contains("\n   Output filter:  (unnamed)\n   GR recovery:    pending\n"));
    v.graceful_restart = None;
    v.daemon = DaemonState::ShuttingDown;
    assert!(text(&v, "show status").ends_with("0013 Shutdown in progress\n"));
}

#[test]
fn bgp_details_birds_layout_prints() {
    let mut b = BgpDetail::new(BgpState::Established, v4("172.17.8.102"), 65530, 64512);
    b.rr_client = true;
    b.neighbor_restart = Some(Some(97));
    b.last_error = Some("Received: Hold timer expired".into());
    b.session = Some(BgpSession {
        neighbor_id: Ipv4Addr::new(147, 75, 36, 73),
        neighbor_caps: NeighborCaps {
            refresh: true,
            graceful_restart: GrCapability::Aware,
            as4: true,
            ..NeighborCaps::default()
        },
        as4: true,
        add_path_rx: false,
        add_path_tx: false,
        ext_messages: false,
        source_address: v4("10.99.182.129"),
        hold_timer: (66, 90),
        keepalive_timer: (18, 30),
    });
    let p = ProtocolView::new(
        "Global_172_17_8_102",
        ProtoKind::Bgp,
        ProtoState::Up,
        at(0, 41, 2),
    );
    let v = BirdView {
        now: at(0, 41, 31),
        protocols: vec![ProtocolView { bgp: Some(b), ..p }],
        ..BirdView::default()
    };
    assert_reply(&v, "show protocols all", concat!(
        "2002-name     proto    table    state  since       info\n",
        "1002-Global_172_17_8_102 BGP      master   up     00:41:02    Established   Received: Hold timer expired\n",
        "1006-  Preference:     100\n",
        "   Input filter:   ACCEPT\n",
        "   Output filter:  REJECT\n",
        "   Routes:         0 imported, 0 exported, 0 preferred\n",
        "   Route change stats:     received   rejected   filtered    ignored   accepted\n",
        "     Import updates:              0          0          0          0          0\n",
        "     Import withdraws:            0          0        ---          0          0\n",
        "     Export updates:              0          0          0        ---          0\n",
        "     Export withdraws:            0        ---        ---        ---          0\n",
        "   BGP state:          Established\n",
        "     Neighbor address: 172.17.8.102\n",
        "     Neighbor AS:      65530\n",
        "     Neighbor graceful restart active\n",
        "     Restart timer:    97/-\n",
        "     Neighbor ID:      147.75.36.73\n",
        "     Neighbor caps:    refresh restart-aware AS4\n",
        "     Session:          external route-reflector AS4\n",
        "     Source address:   10.99.182.129\n",
        "     Hold timer:       66/90\n",
        "     Keepalive timer:  18/30\n",
        "     Last error:       Received: Hold timer expired\n",
        " \n",
        "0000 \n"));
    assert_reply(
        &BirdView::default(),
        "show protocols",
        "8003 No protocols match\n",
    );
}

#[test]
fn ipv6_multipath_and_attribute_layouts() {
    let t = at(0, 41, 2);
    let hop = |g: &str, w| NextHop {
        gateway: g.parse().unwrap(),
        iface: "eth0".into(),
        weight: w,
    };
    let mut ecmp = RouteView::new(
        "fd00:10:244:1::/122".parse().unwrap(),
        RouteDest::Multipath(vec![hop("fd00::2", 1), hop("fd00::3", 1)]),
        "kernel1",
        RouteSource::Inherit,
        t,
    );
    ecmp.kernel = Some(KernelAttrs {
        source: 3,
        metric: 1024,
        prefsrc: Some("fd00::1".parse().unwrap()),
        scope: None,
    });
    let mut reflected = RouteView::new(
        "fd00:10:244:2::/122".parse().unwrap(),
        RouteDest::Via {
            gateway: "fd00::1".parse().unwrap(),
            iface: "eth0".into(),
        },
        "Mesh_fd00__5",
        RouteSource::Bgp,
        t,
    );
    reflected.from = Some("fd00::5".parse().unwrap());
    reflected.bgp = Some(BgpRouteAttrs {
        origin: Origin::Incomplete,
        as_path: vec![64513, 65001],
        next_hop: Some("fd00::9".parse().unwrap()),
        next_hop_link_local: Some("fe80::9".parse().unwrap()),
        local_pref: Some(2147482623),
        atomic_aggregate: true,
        originator_id: Some(Ipv4Addr::new(10, 0, 0, 9)),
        cluster_list: vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2)],
        igp_metric: Some(IgpMetric::Unknown),
        stale: true,
        ..BgpRouteAttrs::default()
    });
    let v = BirdView {
        ipv6: true,
        now: at(0, 41, 31),
        routes: vec![ecmp, reflected],
        ..BirdView::default()
    };
    assert_reply(&v, "show route all", concat!(
        "1007-fd00:10:244:1::/122 multipath [kernel1 00:41:02] * (10)\n",
        " \tvia fd00::2 on eth0 weight 1\n",
        " \tvia fd00::3 on eth0 weight 1\n",
        "1008-\tType: inherit unicast univ\n",
        "1012-\tKernel.source: 3\n",
        " \tKernel.metric: 1024\n",
        " \tKernel.prefsrc: fd00::1\n",
        "1007-fd00:10:244:2::/122 via fd00::1 on eth0 [Mesh_fd00__5 00:41:02 from fd00::5] * (100s/?) [AS65001?]\n",
        "1008-\tType: BGP unicast univ\n",
        "1012-\tBGP.origin: Incomplete\n",
        " \tBGP.as_path: 64513 65001\n",
        " \tBGP.next_hop: fd00::9 fe80::9\n",
        " \tBGP.local_pref: 2147482623\n",
        " \tBGP.atomic_aggr: \n",
        " \tBGP.originator_id: 10.0.0.9\n",
        " \tBGP.cluster_list: 1.1.1.1 2.2.2.2\n",
        "0000 \n"));
    assert_reply(&v, "show route for fd00:10:244:2::7", "1007-fd00:10:244:2::/122 via fd00::1 on eth0 [Mesh_fd00__5 00:41:02 from fd00::5] * (100s/?) [AS65001?]\n0000 \n");
    assert_reply(&v, "show route for 10.0.0.1", "9001 syntax error\n");
}

#[test]
fn long_values_are_cut_as_bird_cuts_them() {
    let mut r = RouteView::new(
        "10.0.0.0/8".parse().unwrap(),
        RouteDest::Blackhole,
        "Mesh_1",
        RouteSource::Bgp,
        SystemTime::UNIX_EPOCH,
    );
    r.bgp = Some(BgpRouteAttrs {
        as_path: (1..200).map(|i| 4_200_000_000 + i).collect(),
        communities: (0..100).map(|i| (65000, 1000 + i)).collect(),
        ..BgpRouteAttrs::default()
    });
    let v = BirdView {
        routes: vec![r],
        ..BirdView::default()
    };
    let out = text(&v, "show route all");
    let path = out.lines().find(|l| l.contains("BGP.as_path")).unwrap();
    assert!(path.ends_with(" ..."), "{path}");
    assert!(path.len() < 500);
    let lines: Vec<&str> = out.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.contains("BGP.community"))
        .unwrap();
    assert!(lines[first].len() < 500);
    assert!(
        lines[first + 1].starts_with(" \t\t(65000,"),
        "{}",
        lines[first + 1]
    );
    let all: usize = lines[first..]
        .iter()
        .map(|l| l.matches("(65000,").count())
        .sum();
    assert_eq!(all, 100);
    assert_eq!(
        String::from_utf8(reply(
            &v,
            &format!("show protocols \"{}\"", "x".repeat(4100))
        ))
        .unwrap(),
        "9000 Command too long\n"
    );
}

#[test]
fn pattern_matching_is_birds() {
    use super::format::pattern_match as m;
    assert!(m("*", "anything"));
    assert!(m("Mesh*", "Mesh_10_0_0_1"));
    assert!(m("*_1", "Mesh_10_0_0_1"));
    assert!(m("M?sh*1", "Mesh_10_0_0_1"));
    assert!(!m("Mesh", "Mesh_10_0_0_1"));
    assert!(!m("Node*", "Mesh_10_0_0_1"));
    assert!(m("*a*b*", "xxaxxbxx"));
    assert!(!m("*a*b", "xxaxxbxx"));
}

#[test]
fn ipv4_compatible_addresses_keep_their_dotted_quad() {
    use super::format::ip;
    assert_eq!(ip(v4("1.2.3.4")), "1.2.3.4");
    assert_eq!(ip("::1.2.3.4".parse().unwrap()), "::1.2.3.4");
    assert_eq!(ip("::ffff:1.2.3.4".parse().unwrap()), "::ffff:1.2.3.4");
    assert_eq!(ip("::1".parse().unwrap()), "::1");
    assert_eq!(ip("::".parse().unwrap()), "::");
    assert_eq!(ip("fd00:0:0:1::".parse().unwrap()), "fd00:0:0:1::");
}

/// Upstream consumers of the socket, ported from projectcalico/calico to
/// read our replies exactly as they read BIRD's.
mod calico_readers {
    use super::*;
    use crate::birdctl::calico_ports::*;

    fn session(view: &BirdView, cmds: &[&str]) -> Vec<u8> {
        let mut out = greeting(view);
        for c in cmds {
            out.extend(reply(view, c));
        }
        out
    }

    #[test]
    fn calicoctl_node_status_reads_show_protocols() {
        let v = lab_view();
        let peers = scan_bird_peers("4", &session(&v, &["show protocols"])).unwrap();
        let rows: Vec<(&str, &str, &str, &str, &str, &str)> = peers
            .iter()
            .map(|p| {
                (
                    p.peer_ip.as_str(),
                    p.peer_type.as_str(),
                    p.state.as_str(),
                    p.since.as_str(),
                    p.bgp_state.as_str(),
                    p.info.as_str(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (
                    "10.99.0.2",
                    "node-to-node mesh",
                    "up",
                    "00:41:02",
                    "Established",
                    ""
                ),
                (
                    "10.99.0.3",
                    "node specific",
                    "start",
                    "00:38:10",
                    "Connect",
                    "Socket: No route to host"
                ),
                ("10.99.0.4", "global", "start", "00:38:10", "Passive", ""),
            ]
        );
        // A down session has no info column, so calicoctl leaves it out
        // (as it does with BIRD).
        assert!(!peers.iter().any(|p| p.peer_ip == "10.99.0.5"));
    }

    #[test]
    fn calicoctl_reads_ipv6_peer_names() {
        let mut b = BgpDetail::new(
            BgpState::Established,
            "fd80:24e2:f998:72d7::2".parse().unwrap(),
            64512,
            64512,
        );
        b.session = None;
        let p = ProtocolView::new(
            "Mesh_fd80_24e2_f998_72d7__2",
            ProtoKind::Bgp,
            ProtoState::Up,
            at(0, 41, 2),
        );
        let v = BirdView {
            ipv6: true,
            now: at(0, 41, 31),
            protocols: vec![ProtocolView { bgp: Some(b), ..p }],
            ..BirdView::default()
        };
        let peers = scan_bird_peers("6", &session(&v, &["show protocols"])).unwrap();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].peer_ip, "fd80:24e2:f998:72d7::2");
    }

    #[test]
    fn birds_own_capitalised_headings_are_refused() {
        // What BIRD 2 prints, and why calicoctl cannot read BIRD 2.
        let bird2 = b"0001 BIRD 2.0.12 ready.\n2002-Name       Proto      Table      State  Since         Info\n0000 \n";
        assert_eq!(
            scan_bird_peers("4", bird2).unwrap_err(),
            "unknown BIRD table output format"
        );
    }

    #[test]
    fn readiness_and_node_status_read_show_status() {
        let mut v = lab_view();
        assert_eq!(
            bird_gr_in_progress(&session(&v, &["show status"])),
            Ok(false)
        );
        let s = scan_bird_status(&session(&v, &["show status"]));
        assert!(s.ready);
        assert_eq!(s.version, "v0.3.3+birdv1.6.8");
        assert_eq!(s.router_id, "10.99.0.1");
        assert_eq!(s.server_time, "2026-12-07 00:41:31");
        assert_eq!(s.last_boot_time, "2026-12-07 00:38:10");
        assert_eq!(s.last_reconfig_time, "2026-12-07 00:40:08");
        v.graceful_restart = Some(GracefulRecovery {
            waiting_protocols: 2,
            wait_remaining: 100,
            wait_total: 240,
        });
        assert_eq!(
            bird_gr_in_progress(&session(&v, &["show status"])),
            Ok(true)
        );
    }

    #[test]
    fn node_status_populator_completes_a_peer_from_show_protocols_all() {
        let v = lab_view();
        // The populator asks this after `show protocols`, on the same
        // connection; what it scans is this reply.
        let (state, addr) = complete_peer(&reply(&v, "show protocols all Mesh_10_99_0_2"));
        assert_eq!(state, "Established");
        assert_eq!(addr, "10.99.0.2");
    }

    #[test]
    fn node_status_populator_reads_show_route() {
        let v = lab_view();
        let routes = scan_bird_routes(&session(&v, &["show route"])).unwrap();
        let got: Vec<String> = routes
            .iter()
            .map(|r| {
                format!(
                    "{} {} {} {} {}",
                    r.dest, r.gateway, r.iface, r.learned_from, r.primary
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                "0.0.0.0/0 10.99.0.2 cbcA kernel1 true",
                "192.168.10.0/26 N/A blackhole static1 true",
                "192.168.10.64/26 N/A unreachable static1 true",
                "192.168.20.0/26 10.99.0.2 cbcA Mesh_10_99_0_2 true",
                "192.168.30.0/26 10.99.0.2 cbcA Mesh_10_99_0_2 true",
                "192.168.10.5/32 N/A cbcA kernel1 true",
                "10.99.0.0/24 N/A cbcA direct1 true",
                "10.99.0.0/24 10.99.0.2 cbcA Mesh_10_99_0_2 false",
            ]
        );
    }
}

/// The server on a real socket, and real clients on it.
mod socket {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixStream;
    use std::path::Path;
    use std::process::Command;
    use std::sync::Arc;
    use std::time::Duration;

    fn lab_server(dir: &Path) -> Server {
        Server::start(&dir.join("bird.ctl"), Arc::new(lab_view)).expect("server")
    }

    /// Reads one reply (up to and including its final line).
    fn read_reply(r: &mut impl BufRead) -> String {
        let mut out = String::new();
        loop {
            let mut line = String::new();
            assert!(r.read_line(&mut line).unwrap() > 0, "closed after {out:?}");
            out.push_str(&line);
            let b = line.as_bytes();
            if b.len() > 4 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b' ' {
                return out;
            }
        }
    }

    fn connect(path: &Path) -> (UnixStream, BufReader<UnixStream>) {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let r = BufReader::new(s.try_clone().unwrap());
        (s, r)
    }

    #[test]
    fn one_connection_many_commands() {
        let dir = tempfile::tempdir().unwrap();
        let server = lab_server(dir.path());
        let path = server.path().to_path_buf();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660);
        let (mut s, mut r) = connect(&path);
        assert_eq!(read_reply(&mut r), "0001 BIRD v0.3.3+birdv1.6.8 ready.\n");
        // Two commands in one write, one with a CRLF, as a pipelining client might.
        s.write_all(b"show status\r\nshow protocols Foo\n").unwrap();
        assert_eq!(read_reply(&mut r), text(&lab_view(), "show status"));
        assert_eq!(read_reply(&mut r), "9002 Foo is not a protocol\n");
        let long = format!("show protocols \"{}\"\n", "x".repeat(10_000));
        s.write_all(long.as_bytes()).unwrap();
        assert_eq!(read_reply(&mut r), "9000 Command too long\n");
        s.write_all(b"show route count\n").unwrap();
        assert_eq!(read_reply(&mut r), "0014 8 of 8 routes for 7 networks\n");
        // A silent client holds nobody up.
        let (_idle, mut idle_r) = connect(&path);
        read_reply(&mut idle_r);
        let (mut s2, mut r2) = connect(&path);
        read_reply(&mut r2);
        s2.write_all(b"show route for 192.168.20.7\n").unwrap();
        assert!(read_reply(&mut r2).starts_with("1007-192.168.20.0/26 "));
        server.stop();
        assert!(!path.exists(), "stop removes the socket");
        let mut rest = String::new();
        let _ = r.read_to_string(&mut rest);
        assert_eq!(rest, "", "stop disconnects clients");
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/calico/bird.ctl");
        let first = Server::start(&path, Arc::new(lab_view)).unwrap();
        let err = Server::start(&path, Arc::new(lab_view))
            .err()
            .expect("in use");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        // A socket nobody answers on any more, as a crash leaves it. Until
        // a connect is refused: a process another test forks in the same
        // instant holds a copy of the listener until it execs.
        let stale_path = dir.path().join("stale.ctl");
        drop(std::os::unix::net::UnixListener::bind(&stale_path).unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::os::unix::net::UnixStream::connect(&stale_path).is_ok() {
            assert!(std::time::Instant::now() < deadline, "nobody should answer");
            std::thread::sleep(Duration::from_millis(10));
        }
        let stale = Server::start(&dir.path().join("stale.ctl"), Arc::new(lab_view)).unwrap();
        let (_s, mut r) = connect(stale.path());
        assert!(read_reply(&mut r).starts_with("0001 "));
        std::fs::write(dir.path().join("file.ctl"), "not a socket").unwrap();
        let err = Server::start(&dir.path().join("file.ctl"), Arc::new(lab_view)).err();
        assert_eq!(err.unwrap().kind(), std::io::ErrorKind::AlreadyExists);
        first.stop();
        stale.stop();
    }

    #[test]
    fn stop_leaves_a_successors_socket_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bird.ctl");
        let old = Server::start(&path, Arc::new(lab_view)).unwrap();
        std::fs::remove_file(&path).unwrap();
        let new = Server::start(&path, Arc::new(lab_view)).unwrap();
        let started = std::time::Instant::now();
        old.stop();
        assert!(started.elapsed() < Duration::from_secs(2));
        let (_s, mut r) = connect(&path);
        assert!(read_reply(&mut r).starts_with("0001 "));
        new.stop();
        assert!(!path.exists());
    }

    #[test]
    fn too_many_clients_are_turned_away() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ServerOptions {
            max_clients: 1,
            ..ServerOptions::default()
        };
        let server =
            Server::start_with(&dir.path().join("b.ctl"), Arc::new(lab_view), opts).unwrap();
        let (_s, mut r) = connect(server.path());
        read_reply(&mut r);
        let (_s2, mut r2) = connect(server.path());
        let mut rest = String::new();
        let _ = r2.read_to_string(&mut rest);
        assert_eq!(rest, "");
        server.stop();
    }

    /// birdc's output for each command, as it printed it against the real
    /// BIRD 1.6 of the lab (`testdata/birdc-2.0.12-vs-bird16.txt`).
    fn birdc_capture() -> Vec<(String, String, i32)> {
        let text = include_str!("testdata/birdc-2.0.12-vs-bird16.txt");
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(cmd_end) = rest.find('\n') {
            let cmd = rest[3..cmd_end].to_string();
            let body_start = cmd_end + 1;
            let exit_at = rest[body_start..].find("== exit ").unwrap() + body_start;
            let exit_end = rest[exit_at..].find('\n').unwrap() + exit_at;
            let code = rest[exit_at + 8..exit_end].parse().unwrap();
            out.push((cmd, rest[body_start..exit_at].to_string(), code));
            rest = &rest[exit_end + 1..];
        }
        out
    }

    #[test]
    fn debian_birdc_shows_what_it_shows_for_calicos_bird() {
        if !calico_testsupport::require_tools(
            "debian_birdc_shows_what_it_shows_for_calicos_bird",
            &[("birdc", "bird2")],
        ) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let server = lab_server(dir.path());
        let expected = birdc_capture();
        assert_eq!(expected.len(), 4);
        for (cmd, want, want_code) in &expected {
            let out = Command::new("birdc")
                .arg("-s")
                .arg(server.path())
                .args(cmd.split(' '))
                .output()
                .expect("birdc runs");
            let got = String::from_utf8(out.stdout).unwrap();
            assert_eq!(&got, want, "birdc {cmd}");
            assert_eq!(out.status.code(), Some(*want_code), "birdc {cmd}");
        }
        // birdc exits 1 when the reply is an error.
        let out = Command::new("birdc")
            .arg("-s")
            .arg(server.path())
            .args(["show", "protocols", "Foo"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "BIRD v0.3.3+birdv1.6.8 ready.\nFoo is not a protocol\n"
        );
        assert_eq!(out.status.code(), Some(1));
        // birdc expands abbreviated command words (not their arguments)
        // itself: this sends `show route count`.
        let out = Command::new("birdc")
            .arg("-s")
            .arg(server.path())
            .args(["sh", "ro", "count"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "BIRD v0.3.3+birdv1.6.8 ready.\n8 of 8 routes for 7 networks\n"
        );
        // `birdc -r` restricts the session first.
        let out = Command::new("birdc")
            .arg("-r")
            .arg("-s")
            .arg(server.path())
            .args(["show", "route", "for", "192.168.30.1", "all"])
            .output()
            .unwrap();
        let got = String::from_utf8(out.stdout).unwrap();
        assert!(
            got.contains("\tBGP.community: (64512,100) (65000,7)\n"),
            "{got}"
        );
        server.stop();
    }

    #[test]
    fn the_harness_node_status_script_reads_us() {
        let script = Path::new("/work/shared/reference/bgp-harness/node_status.py");
        if !script.exists() {
            calico_testsupport::skip(
                "the_harness_node_status_script_reads_us",
                "the reference harness is not on this machine",
            );
            return;
        }
        if !calico_testsupport::require_tools(
            "the_harness_node_status_script_reads_us",
            &[("python3", "python3")],
        ) {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let server = lab_server(dir.path());
        let out = Command::new("python3")
            .arg(script)
            .arg(server.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        let got = String::from_utf8(out.stdout).unwrap();
        assert!(
            got.contains("| 10.99.0.2    | node-to-node mesh | up    | 00:41:02 | Established                      |"),
            "{got}"
        );
        assert!(got.contains("| 10.99.0.3    | node specific     | start | 00:38:10 | Connect Socket: No route to host |"));
        assert!(got.contains("| 10.99.0.4    | global            | start | 00:38:10 | Passive                          |"));
        server.stop();
    }
}
