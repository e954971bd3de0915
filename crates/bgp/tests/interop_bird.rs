//! Our speaker against a real BIRD 2 (Debian's bird2), each in a network
//! namespace this test creates, joined by a veth pair: iBGP and eBGP over
//! IPv4 and IPv6, routes both ways (BIRD puts ours in its kernel), a
//! withdrawal, BIRD killed and restarted (graceful restart: its routes stay
//! with us meanwhile), and TCP MD5.

mod common;

use common::{established, net, wait_route, wait_until};

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::mpsc;
use std::time::Duration;

use calico_bgp::driver::{Command, Driver};
use calico_bgp::rib::BestChange;
use calico_bgp::session::SessionConfig;
use calico_bgp::speaker::{PeerConfig, Speaker};
use calico_bgp::wire::{Family, PathAttributes};
use calico_testsupport::netns::{Netns, Proc};

const OUR_AS: u32 = 64512;

struct Lab {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    ours: Netns,
    bird_ns: Netns,
    bird: Option<Proc>,
    bird_as: u32,
    password: Option<String>,
    /// GTSM on both sides (BIRD's `ttl security on`, our `ttl_security`).
    gtsm: bool,
}

impl Lab {
    fn new(tag: &str, bird_as: u32, password: Option<&str>, gtsm: bool) -> Lab {
        let ours = Netns::create("cbgpi", &format!("{tag}a"));
        let bird_ns = Netns::create("cbgpi", &format!("{tag}b"));
        let (va, vb) = (format!("cbi{tag}a"), format!("cbi{tag}b"));
        ours.ip(&[
            "link",
            "add",
            &va,
            "type",
            "veth",
            "peer",
            "name",
            &vb,
            "netns",
            &bird_ns.name,
        ]);
        ours.ip(&["addr", "add", "10.201.0.1/24", "dev", &va]);
        ours.ip(&["addr", "add", "fd00:201::1/64", "dev", &va, "nodad"]);
        ours.ip(&["link", "set", &va, "up"]);
        bird_ns.ip(&["addr", "add", "10.201.0.2/24", "dev", &vb]);
        bird_ns.ip(&["addr", "add", "fd00:201::2/64", "dev", &vb, "nodad"]);
        bird_ns.ip(&["link", "set", &vb, "up"]);
        let d = tempfile::tempdir().unwrap();
        let mut lab = Lab {
            dir: d.path().to_path_buf(),
            _dir: d,
            ours,
            bird_ns,
            bird: None,
            bird_as,
            password: password.map(str::to_string),
            gtsm,
        };
        lab.start_bird(false);
        lab
    }

    fn start_bird(&mut self, recovering: bool) {
        let conf = self.dir.join("bird.conf");
        std::fs::write(
            &conf,
            bird_conf(self.bird_as, self.password.as_deref(), self.gtsm),
        )
        .unwrap();
        let sock = self.dir.join("bird.ctl");
        let conf = conf.to_str().unwrap().to_string();
        let sock = sock.to_str().unwrap().to_string();
        let mut args = vec!["bird", "-f", "-c", &conf, "-s", &sock];
        if recovering {
            args.push("-R");
        }
        self.bird = Some(self.bird_ns.spawn(&args));
    }

    fn birdc(&self, cmd: &str) -> String {
        let sock = self.dir.join("bird.ctl");
        let mut args = vec!["birdc", "-s", sock.to_str().unwrap()];
        args.extend(cmd.split(' '));
        let out = self.bird_ns.exec(&args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Our speaker, started in our namespace, peering with BIRD over v4 and v6.
    fn speaker(&self, routes: mpsc::Sender<Vec<BestChange>>) -> Driver {
        let ns = self.ours.name.clone();
        let password = self.password.clone();
        let bird_as = self.bird_as;
        let hops = self.gtsm.then_some(1);
        std::thread::spawn(move || {
            let path = format!("/run/netns/{ns}");
            let f = std::fs::File::open(&path).unwrap();
            use std::os::fd::AsRawFd;
            // SAFETY: moves only this short-lived thread.
            assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            let speaker = Speaker::new(Ipv4Addr::new(10, 201, 0, 1), OUR_AS, None);
            let sink = Box::new(move |c| {
                let _ = routes.send(c);
            });
            let (d, _) = Driver::start("[::]:179".parse().unwrap(), speaker, sink).unwrap();
            d.send(Command::Peers(vec![
                peer(
                    "Node_10_201_0_2",
                    "10.201.0.2",
                    Family::Ipv4Unicast,
                    bird_as,
                    password.clone(),
                    hops,
                ),
                peer(
                    "Node_fd00__201__2",
                    "fd00:201::2",
                    Family::Ipv6Unicast,
                    bird_as,
                    password,
                    hops,
                ),
            ]));
            d.send(Command::LocalRoutes(vec![
                ("10.65.1.0/26".parse().unwrap(), PathAttributes::default()),
                ("fd00:65::/122".parse().unwrap(), PathAttributes::default()),
            ]));
            d
        })
        .join()
        .unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut b) = self.bird.take() {
            b.kill();
        }
    }
}

fn peer(
    name: &str,
    addr: &str,
    family: Family,
    peer_as: u32,
    password: Option<String>,
    ttl_security: Option<u8>,
) -> PeerConfig {
    let mut s = SessionConfig::new(OUR_AS, peer_as, Ipv4Addr::new(10, 201, 0, 1));
    s.families = vec![family];
    s.connect_delay = Duration::from_millis(100);
    s.error_wait_min = Duration::from_secs(1);
    let address: IpAddr = addr.parse().unwrap();
    PeerConfig {
        name: name.into(),
        address,
        port: 179,
        session: s,
        rr_client: false,
        keep_next_hop: false,
        next_hop_self: false,
        local_v4: Some(Ipv4Addr::new(10, 201, 0, 1)),
        local_v6: Some("fd00:201::1".parse().unwrap()),
        source_address: Some(if address.is_ipv4() {
            "10.201.0.1".parse().unwrap()
        } else {
            "fd00:201::1".parse().unwrap()
        }),
        password,
        allow_local_as: 0,
        ttl_security,
    }
}

/// BIRD as the article's ToR: originates one block per family, puts
/// what it learns from us into its kernel.
fn bird_conf(bird_as: u32, password: Option<&str>, gtsm: bool) -> String {
    let mut pw = password
        .map(|p| format!("password \"{p}\";"))
        .unwrap_or_default();
    if gtsm {
        // Direct neighbours: BIRD sends with TTL 255 and drops less.
        pw.push_str(" ttl security on;");
    }
    format!(
        r#"router id 10.201.0.2;
protocol device {{ scan time 2; }}
protocol direct {{ ipv4; ipv6; interface "cbi*"; }}
protocol static s4 {{ ipv4; route 192.168.20.0/26 blackhole; }}
protocol static s6 {{ ipv6; route fd00:20::/64 blackhole; }}
protocol kernel k4 {{ ipv4 {{ import none; export where source = RTS_BGP; }}; scan time 2; }}
protocol kernel k6 {{ ipv6 {{ import none; export where source = RTS_BGP; }}; scan time 2; }}
protocol bgp calico4 {{
  local 10.201.0.2 as {bird_as}; neighbor 10.201.0.1 as {OUR_AS}; {pw}
  graceful restart; connect delay time 1; connect retry time 2; error wait time 1,5;
  ipv4 {{ import all; export where proto = "s4"; add paths on; next hop self; }};
}}
protocol bgp calico6 {{
  local fd00:201::2 as {bird_as}; neighbor fd00:201::1 as {OUR_AS}; {pw}
  graceful restart; connect delay time 1; connect retry time 2; error wait time 1,5;
  ipv6 {{ import all; export where proto = "s6"; add paths on; next hop self; }};
}}
"#
    )
}

fn can_run(test: &str) -> bool {
    calico_testsupport::require_root(test)
        && calico_testsupport::require_tools(
            test,
            &[("bird", "bird2"), ("birdc", "bird2"), ("ip", "iproute2")],
        )
}

fn exchange(
    tag: &str,
    bird_as: u32,
    password: Option<&str>,
    gtsm: bool,
) -> (Lab, Driver, mpsc::Receiver<Vec<BestChange>>) {
    let lab = Lab::new(tag, bird_as, password, gtsm);
    let (tx, rx) = mpsc::channel();
    let d = lab.speaker(tx);
    assert!(
        wait_until(20, || established(&d) == 2),
        "sessions up; BIRD says:\n{}",
        lab.birdc("show protocols")
    );
    let v4 = wait_route(
        &rx,
        |c| c.prefix == net("192.168.20.0/26") && c.best.is_some(),
        10,
    )
    .expect("BIRD's v4 block");
    let nh = v4.best.unwrap().attrs.next_hop;
    assert_eq!(nh, Some(Ipv4Addr::new(10, 201, 0, 2)));
    assert!(
        wait_until(10, || lab
            .bird_ns
            .ip(&["route", "show", "10.65.1.0/26"])
            .contains("via 10.201.0.1")),
        "our v4 block in BIRD's kernel; BIRD has:\n{}",
        lab.birdc("show route all")
    );
    assert!(
        wait_until(10, || lab
            .bird_ns
            .ip(&["-6", "route", "show", "fd00:65::/122"])
            .contains("via fd00:201::1")),
        "our v6 block in BIRD's kernel:\n{}",
        lab.birdc("show route")
    );
    (lab, d, rx)
}

#[test]
fn ibgp_with_bird_both_families_withdrawal_and_graceful_restart() {
    if !can_run("ibgp_with_bird_both_families_withdrawal_and_graceful_restart") {
        return;
    }
    let (mut lab, d, rx) = exchange("i", OUR_AS, None, false);
    let proto = lab.bird_ns.ip(&["route", "show", "10.65.1.0/26"]);
    assert!(proto.contains("proto bird"), "{proto}");
    // IPv6 from BIRD reached us too (it was sent in the same dump).
    let snap = d.snapshot(Duration::from_secs(2)).unwrap();
    assert!(
        snap.routes.iter().any(|r| r.prefix == net("fd00:20::/64")),
        "{:?}",
        snap.routes
    );

    // Withdrawal: our block goes from BIRD's kernel.
    d.send(Command::LocalRoutes(vec![(
        "fd00:65::/122".parse().unwrap(),
        PathAttributes::default(),
    )]));
    assert!(
        wait_until(10, || lab
            .bird_ns
            .ip(&["route", "show", "10.65.1.0/26"])
            .is_empty()),
        "withdrawn"
    );

    // BIRD dies: graceful restart keeps its routes with us.
    lab.bird.take().unwrap().kill();
    let lost = wait_route(
        &rx,
        |c| c.prefix == net("192.168.20.0/26") && c.best.is_none(),
        3,
    );
    assert!(lost.is_none(), "BIRD's route must survive its restart");
    lab.start_bird(true);
    assert!(wait_until(20, || established(&d) == 2), "back up");
    let lost = wait_route(
        &rx,
        |c| c.prefix == net("192.168.20.0/26") && c.best.as_ref().is_none_or(|b| b.stale),
        5,
    );
    assert!(lost.is_none(), "refreshed, never withdrawn: {lost:?}");
    let snap = d.snapshot(Duration::from_secs(2)).unwrap();
    let r = snap
        .routes
        .iter()
        .find(|r| r.prefix == net("192.168.20.0/26"))
        .expect("still there");
    assert!(!r.stale, "End-of-RIB cleared the stale mark");
    d.stop();
}

#[test]
fn ebgp_with_bird_md5_and_ttl_security() {
    if !can_run("ebgp_with_bird_md5_and_ttl_security") {
        return;
    }
    // BIRD drops our segments unless they arrive with TTL 255: no session
    // without our GTSM.
    let (lab, d, _rx) = exchange("e", 65001, Some("s3cret"), true);
    let snap = d.snapshot(Duration::from_secs(2)).unwrap();
    let r = snap
        .routes
        .iter()
        .find(|r| r.prefix == net("192.168.20.0/26"))
        .unwrap();
    assert_eq!(r.attrs.first_as(), Some(65001));
    let shown = lab.birdc("show route 10.65.1.0/26 all");
    assert!(shown.contains(&format!("BGP.as_path: {OUR_AS}")), "{shown}");
    d.stop();
    let _: Option<SocketAddr> = None;
}
