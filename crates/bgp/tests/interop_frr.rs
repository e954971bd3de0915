//! Our speaker against a real FRR (Debian's frr: bgpd and zebra), each in a
//! network namespace this test creates, joined by a veth pair: iBGP and
//! eBGP over IPv4 and IPv6 (one session per family), routes both ways (FRR's
//! zebra puts ours in its kernel), withdrawals both ways, FRR's bgpd killed
//! and restarted (graceful restart: its routes stay with us meanwhile), our
//! speaker restarted (FRR as graceful-restart helper keeps ours), and TCP MD5.
//!
//! FRR runs without systemd, as /work/shared/reference/bgp-harness does it:
//! each daemon in the foreground under `ip netns exec`, with its own
//! pathspace (`-N`), configuration, PID file and vty sockets in the test's
//! directory. The daemons are killed by PID and the namespaces deleted when
//! the lab is dropped, also when a check fails.

mod common;

use common::{established, net, wait_route, wait_until};

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use calico_bgp::driver::{Command, Driver};
use calico_bgp::rib::BestChange;
use calico_bgp::session::{SessionConfig, State};
use calico_bgp::speaker::{PeerConfig, Speaker};
use calico_bgp::wire::{AddPathMode, Capability, Family, PathAttributes};
use calico_testsupport::netns::{Netns, Proc};

const OUR_AS: u32 = 64512;
const FRR_LIB: &str = "/usr/lib/frr";
const OUR_V4: &str = "10.202.0.1";
const OUR_V6: &str = "fd00:202::1";
const FRR_V4: &str = "10.202.0.2";
const FRR_V6: &str = "fd00:202::2";
/// FRR's own blocks, and ours.
const FRR_BLOCK4: &str = "192.168.30.0/26";
const FRR_BLOCK6: &str = "fd00:30::/64";
const OUR_BLOCK4: &str = "10.66.1.0/26";
const OUR_BLOCK6: &str = "fd00:66::/122";

struct Lab {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    ours: Netns,
    frr_ns: Netns,
    zebra: Option<Proc>,
    bgpd: Option<Proc>,
    frr_as: u32,
    password: Option<String>,
}

impl Lab {
    fn new(tag: &str, frr_as: u32, password: Option<&str>) -> Lab {
        let ours = Netns::create("cbgpf", &format!("{tag}a"));
        let frr_ns = Netns::create("cbgpf", &format!("{tag}b"));
        let (va, vb) = (format!("cbf{tag}a"), format!("cbf{tag}b"));
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
            &frr_ns.name,
        ]);
        ours.ip(&["addr", "add", &format!("{OUR_V4}/24"), "dev", &va]);
        ours.ip(&["addr", "add", &format!("{OUR_V6}/64"), "dev", &va, "nodad"]);
        ours.ip(&["link", "set", &va, "up"]);
        frr_ns.ip(&["addr", "add", &format!("{FRR_V4}/24"), "dev", &vb]);
        frr_ns.ip(&["addr", "add", &format!("{FRR_V6}/64"), "dev", &vb, "nodad"]);
        frr_ns.ip(&["link", "set", &vb, "up"]);
        let d = tempfile::tempdir().unwrap();
        // The daemons drop to user frr: they write their logs, PID files
        // and vty sockets here.
        calico_testsupport::netns::run(&["chown", "frr:frr", d.path().to_str().unwrap()]);
        let mut lab = Lab {
            dir: d.path().to_path_buf(),
            _dir: d,
            ours,
            frr_ns,
            zebra: None,
            bgpd: None,
            frr_as,
            password: password.map(str::to_string),
        };
        std::fs::write(
            lab.dir.join("frr.conf"),
            frr_conf(frr_as, password, &lab.dir),
        )
        .unwrap();
        // As the harness does: the pathspace's run directory exists, owned
        // by frr (/var/run/frr itself may be gone after a reboot without
        // systemd's tmpfiles).
        std::fs::create_dir_all(lab.run_dir()).unwrap();
        calico_testsupport::netns::run(&["chown", "frr:frr", lab.run_dir().to_str().unwrap()]);
        lab.zebra = Some(lab.daemon("zebra"));
        // bgpd talks to zebra over zserv.api in the pathspace's directory.
        let zserv = lab.run_dir().join("zserv.api");
        assert!(
            wait_until(10, || zserv.exists()),
            "zebra did not come up; its log:\n{}",
            lab.log("zebra")
        );
        lab.start_bgpd();
        lab
    }

    /// FRR's `-N` pathspace: the namespace's name, so parallel runs differ.
    fn pathspace(&self) -> &str {
        &self.frr_ns.name
    }

    /// Where FRR keeps what `-N` puts under /var/run/frr.
    fn run_dir(&self) -> PathBuf {
        Path::new("/var/run/frr").join(self.pathspace())
    }

    /// One FRR daemon in the foreground (so its PID is the child's), with
    /// every file it writes in the test's directory.
    fn daemon(&self, name: &str) -> Proc {
        let bin = format!("{FRR_LIB}/{name}");
        let conf = self.dir.join("frr.conf");
        let pid = self.dir.join(format!("{name}.pid"));
        let log = format!("file:{}", self.dir.join(format!("{name}.log")).display());
        let dir = self.dir.to_str().unwrap();
        let args = [
            bin.as_str(),
            "-N",
            self.pathspace(),
            "-f",
            conf.to_str().unwrap(),
            "-i",
            pid.to_str().unwrap(),
            "--vty_socket",
            dir,
            "-P",
            "0",
            "--log",
            &log,
        ];
        self.frr_ns.spawn(&args)
    }

    fn start_bgpd(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("bgpd.vty"));
        self.bgpd = Some(self.daemon("bgpd"));
        let vty = self.dir.join("bgpd.vty");
        assert!(
            wait_until(10, || vty.exists()),
            "bgpd did not come up; its log:\n{}",
            self.log("bgpd")
        );
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// `vtysh -c` against this lab's daemons; each argument is one command.
    fn vtysh(&self, cmds: &[&str]) -> String {
        let mut c = std::process::Command::new("vtysh");
        c.args(["--vty_socket", self.dir.to_str().unwrap()]);
        for cmd in cmds {
            c.args(["-c", cmd]);
        }
        let out = c.output().expect("vtysh runs");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// Everything useful when a check fails.
    fn frr_state(&self) -> String {
        format!(
            "{}\n{}\n{}\n--- bgpd.log (tail)\n{}",
            self.vtysh(&["show bgp summary"]),
            self.vtysh(&["show bgp ipv4 unicast"]),
            self.vtysh(&["show bgp ipv6 unicast"]),
            tail(&self.log("bgpd"), 30),
        )
    }

    fn frr_route(&self, prefix: &str) -> String {
        let v6 = prefix.contains(':');
        let fam = if v6 { "-6" } else { "-4" };
        self.frr_ns.ip(&[fam, "route", "show", prefix])
    }

    /// Changes FRR's running configuration of `address-family <family> unicast`.
    fn frr_af(&self, family: &str, line: &str) {
        let router = format!("router bgp {}", self.frr_as);
        let af = format!("address-family {family} unicast");
        self.vtysh(&["configure terminal", &router, &af, line]);
    }

    /// Our speaker, started in our namespace, peering with FRR over v4 and v6.
    fn speaker(&self, routes: mpsc::Sender<Vec<BestChange>>, restarting: bool) -> Driver {
        let ns = self.ours.name.clone();
        let password = self.password.clone();
        let frr_as = self.frr_as;
        std::thread::spawn(move || {
            enter(&ns);
            let speaker = Speaker::new(OUR_V4.parse().unwrap(), OUR_AS, None);
            let sink = Box::new(move |c| {
                let _ = routes.send(c);
            });
            let (d, _) = Driver::start("[::]:179".parse().unwrap(), speaker, sink).unwrap();
            d.send(Command::Peers(vec![
                peer(
                    FRR_V4,
                    Family::Ipv4Unicast,
                    frr_as,
                    password.clone(),
                    restarting,
                ),
                peer(FRR_V6, Family::Ipv6Unicast, frr_as, password, restarting),
            ]));
            d.send(Command::LocalRoutes(vec![
                (net(OUR_BLOCK4), PathAttributes::default()),
                (net(OUR_BLOCK6), PathAttributes::default()),
            ]));
            d
        })
        .join()
        .unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut p) = self.bgpd.take() {
            p.kill();
        }
        if let Some(mut p) = self.zebra.take() {
            p.kill();
        }
        let _ = std::fs::remove_dir_all(self.run_dir());
        // The namespaces go when the fields drop, after this.
    }
}

/// Moves this thread (and the threads it starts) into namespace `ns`.
fn enter(ns: &str) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    // SAFETY: setns on a valid namespace fd affects only this thread.
    assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
}

fn peer(
    addr: &str,
    family: Family,
    peer_as: u32,
    password: Option<String>,
    restarting: bool,
) -> PeerConfig {
    let mut s = SessionConfig::new(OUR_AS, peer_as, OUR_V4.parse().unwrap());
    s.families = vec![family];
    s.connect_delay = Duration::from_millis(100);
    s.error_wait_min = Duration::from_secs(1);
    s.restarting = restarting;
    let address: IpAddr = addr.parse().unwrap();
    let name = format!("Node_{}", addr.replace(['.', ':'], "_"));
    PeerConfig {
        name,
        address,
        port: 179,
        session: s,
        rr_client: false,
        keep_next_hop: false,
        next_hop_self: false,
        local_v4: Some(OUR_V4.parse().unwrap()),
        local_v6: Some(OUR_V6.parse().unwrap()),
        source_address: Some(if address.is_ipv4() {
            OUR_V4.parse().unwrap()
        } else {
            OUR_V6.parse().unwrap()
        }),
        password,
        allow_local_as: 0,
        ttl_security: None,
    }
}

/// FRR as a ToR: one block per family, a session per family, graceful
/// restart keeping forwarding state (the F bit), ADD-PATH both ways (its path ids reach our decoder), what it
/// learns from us in its kernel (zebra does that).
fn frr_conf(frr_as: u32, password: Option<&str>, dir: &Path) -> String {
    let pw = password
        .map(|p| format!(" neighbor {OUR_V4} password {p}\n neighbor {OUR_V6} password {p}\n"))
        .unwrap_or_default();
    format!(
        r#"frr defaults datacenter
hostname frr-test
log file {log}
!
router bgp {frr_as}
 bgp router-id {FRR_V4}
 no bgp ebgp-requires-policy
 no bgp network import-check
 no bgp default ipv4-unicast
 bgp graceful-restart
 bgp graceful-restart preserve-fw-state
 neighbor {OUR_V4} remote-as {OUR_AS}
 neighbor {OUR_V6} remote-as {OUR_AS}
{pw} !
 address-family ipv4 unicast
  network {FRR_BLOCK4}
  neighbor {OUR_V4} activate
  neighbor {OUR_V4} addpath-tx-all-paths
 exit-address-family
 !
 address-family ipv6 unicast
  network {FRR_BLOCK6}
  neighbor {OUR_V6} activate
  neighbor {OUR_V6} addpath-tx-all-paths
 exit-address-family
!
"#,
        log = dir.join("frr.log").display(),
    )
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn can_run(test: &str) -> bool {
    calico_testsupport::require_root(test)
        && calico_testsupport::require_tools(test, &[("vtysh", "frr"), ("ip", "iproute2")])
        && (["zebra", "bgpd"]
            .iter()
            .all(|d| Path::new(FRR_LIB).join(d).exists())
            || calico_testsupport::skip(
                test,
                "FRR's daemons are not in /usr/lib/frr (apt-get install frr)",
            ))
}

/// Brings both sessions up and checks routes went both ways.
fn exchange(
    tag: &str,
    frr_as: u32,
    password: Option<&str>,
) -> (Lab, Driver, mpsc::Receiver<Vec<BestChange>>) {
    let lab = Lab::new(tag, frr_as, password);
    let (tx, rx) = mpsc::channel();
    let d = lab.speaker(tx, false);
    assert!(
        wait_until(30, || established(&d) == 2),
        "sessions up; FRR says:\n{}",
        lab.frr_state()
    );
    let v4 = wait_route(&rx, |c| c.prefix == net(FRR_BLOCK4) && c.best.is_some(), 10)
        .unwrap_or_else(|| panic!("FRR's v4 block; FRR:\n{}", lab.frr_state()));
    assert_eq!(
        v4.best.unwrap().attrs.next_hop,
        Some(FRR_V4.parse::<Ipv4Addr>().unwrap())
    );
    assert!(
        wait_until(10, || lab.frr_route(OUR_BLOCK4).contains("via 10.202.0.1")),
        "our v4 block in FRR's kernel; FRR has:\n{}",
        lab.frr_state()
    );
    assert!(
        wait_until(10, || lab.frr_route(OUR_BLOCK6).contains("via fd00:202::1")),
        "our v6 block in FRR's kernel; FRR has:\n{}",
        lab.frr_state()
    );
    assert!(
        lab.frr_route(OUR_BLOCK4).contains("proto bgp"),
        "{}",
        lab.frr_route(OUR_BLOCK4)
    );
    // FRR sends path ids (ADD-PATH), so its routes above went through
    // our add-path decoder.
    let snap = d.snapshot(Duration::from_secs(2)).unwrap();
    for p in &snap.peers {
        let sends = p.peer_capabilities.iter().any(|c| match c {
            Capability::AddPath(l) => l
                .iter()
                .any(|(_, _, m)| matches!(m, AddPathMode::Send | AddPathMode::Both)),
            _ => false,
        });
        assert!(sends, "{}: {:?}", p.name, p.peer_capabilities);
    }
    let mut v6 = None;
    let arrived = wait_until(10, || {
        let snap = d.snapshot(Duration::from_secs(2)).unwrap();
        v6 = snap
            .routes
            .into_iter()
            .find(|r| r.prefix == net(FRR_BLOCK6));
        v6.is_some()
    });
    assert!(arrived, "FRR's v6 block with us; FRR:\n{}", lab.frr_state());
    let nh = v6.unwrap().attrs.mp_next_hop.expect("an IPv6 next hop");
    assert_eq!(nh.global, FRR_V6.parse::<std::net::Ipv6Addr>().unwrap());
    (lab, d, rx)
}

#[test]
fn ibgp_with_frr_both_families_withdrawals_and_graceful_restart() {
    if !can_run("ibgp_with_frr_both_families_withdrawals_and_graceful_restart") {
        return;
    }
    let (mut lab, d, rx) = exchange("i", OUR_AS, None);
    let shown = lab.vtysh(&[&format!("show bgp ipv4 unicast {OUR_BLOCK4}")]);
    assert!(
        shown.contains("internal") && shown.contains("localpref 100"),
        "{shown}"
    );

    // FRR asks for our routes again (ROUTE-REFRESH): we send them all
    // again, and the session stays up.
    let sent = |d: &Driver| {
        let snap = d.snapshot(Duration::from_secs(2)).unwrap();
        let p = snap.peers.iter().find(|p| p.address.is_ipv4()).unwrap();
        (p.state, p.stats.updates_sent, p.stats.established_count)
    };
    let (_, before, ups) = sent(&d);
    lab.vtysh(&[&format!("clear bgp ipv4 unicast {OUR_V4} soft in")]);
    assert!(
        wait_until(10, || sent(&d).1 > before),
        "our table again after FRR's ROUTE-REFRESH: {:?}\n{}",
        sent(&d),
        lab.frr_state()
    );
    let (state, _, established_count) = sent(&d);
    assert_eq!((state, established_count), (State::Established, ups));
    assert!(lab.frr_route(OUR_BLOCK4).contains("via 10.202.0.1"));

    // Our withdrawal: the v4 block leaves FRR's kernel, the v6 one stays.
    d.send(Command::LocalRoutes(vec![(
        net(OUR_BLOCK6),
        PathAttributes::default(),
    )]));
    assert!(
        wait_until(10, || lab.frr_route(OUR_BLOCK4).is_empty()),
        "withdrawn from FRR: {}",
        lab.frr_state()
    );
    assert!(lab.frr_route(OUR_BLOCK6).contains("via fd00:202::1"));

    // FRR's withdrawal (its operator removes the network statement).
    lab.frr_af("ipv6", &format!("no network {FRR_BLOCK6}"));
    wait_route(&rx, |c| c.prefix == net(FRR_BLOCK6) && c.best.is_none(), 10)
        .unwrap_or_else(|| panic!("FRR's v6 withdrawal; FRR:\n{}", lab.frr_state()));
    lab.frr_af("ipv6", &format!("network {FRR_BLOCK6}"));
    wait_route(&rx, |c| c.prefix == net(FRR_BLOCK6) && c.best.is_some(), 10)
        .unwrap_or_else(|| panic!("FRR's v6 block back; FRR:\n{}", lab.frr_state()));

    // FRR's bgpd dies (no NOTIFICATION): graceful restart keeps its routes
    // with us, marked stale, until it is back and has sent End-of-RIB.
    lab.bgpd.take().unwrap().kill();
    let lost = wait_route(
        &rx,
        |c| c.prefix == net(FRR_BLOCK4) && c.best.as_ref().is_none_or(|b| !b.stale),
        3,
    );
    assert!(
        lost.is_none(),
        "FRR's route must stay, stale, during its restart: {lost:?}"
    );
    let snap = d.snapshot(Duration::from_secs(2)).unwrap();
    let r = snap
        .routes
        .iter()
        .find(|r| r.prefix == net(FRR_BLOCK4))
        .expect("kept during the restart");
    assert!(r.stale, "marked stale while FRR is away");
    assert!(established(&d) < 2);
    lab.start_bgpd();
    assert!(
        wait_until(30, || established(&d) == 2),
        "back up; FRR:\n{}",
        lab.frr_state()
    );
    let lost = wait_route(
        &rx,
        |c| c.prefix == net(FRR_BLOCK4) && c.best.as_ref().is_none_or(|b| b.stale),
        5,
    );
    assert!(lost.is_none(), "refreshed, never withdrawn: {lost:?}");
    assert!(
        wait_until(10, || {
            let snap = d.snapshot(Duration::from_secs(2)).unwrap();
            snap.routes
                .iter()
                .any(|r| r.prefix == net(FRR_BLOCK4) && !r.stale)
        }),
        "End-of-RIB cleared the stale mark; FRR:\n{}",
        lab.frr_state()
    );
    assert!(wait_until(10, || lab
        .frr_route(OUR_BLOCK6)
        .contains("via fd00:202::1")));

    // Now we restart: FRR, as graceful-restart helper, keeps our route in
    // its kernel while we are away, and takes the fresh one after.
    d.stop();
    std::thread::sleep(Duration::from_secs(2));
    let kept = lab.frr_route(OUR_BLOCK6);
    assert!(
        kept.contains("via fd00:202::1"),
        "FRR dropped our route while we restarted: {kept:?}\n{}",
        lab.frr_state()
    );
    let shown = lab.vtysh(&[&format!("show bgp ipv6 unicast {OUR_BLOCK6}")]);
    assert!(shown.contains("(stale)"), "FRR keeps it as stale: {shown}");
    let (tx, rx) = mpsc::channel();
    let d = lab.speaker(tx, true);
    assert!(
        wait_until(30, || established(&d) == 2),
        "up again; FRR:\n{}",
        lab.frr_state()
    );
    wait_route(&rx, |c| c.prefix == net(FRR_BLOCK4) && c.best.is_some(), 10)
        .expect("FRR's block in the new speaker");
    let show = format!("show bgp ipv6 unicast {OUR_BLOCK6}");
    assert!(
        wait_until(10, || {
            let shown = lab.vtysh(&[&show]);
            shown.contains("best") && !shown.contains("stale")
        }),
        "our routes again end FRR's stale mark: {}",
        lab.vtysh(&[&show])
    );
    assert!(lab.frr_route(OUR_BLOCK6).contains("via fd00:202::1"));
    d.stop();
}

#[test]
fn ebgp_with_frr_and_md5() {
    if !can_run("ebgp_with_frr_and_md5") {
        return;
    }
    let (lab, d, rx) = exchange("e", 65002, Some("s3cret"));
    let snap = d.snapshot(Duration::from_secs(2)).unwrap();
    let r = snap
        .routes
        .iter()
        .find(|r| r.prefix == net(FRR_BLOCK4))
        .unwrap();
    assert_eq!(r.attrs.first_as(), Some(65002));
    let shown = lab.vtysh(&[&format!("show bgp ipv4 unicast {OUR_BLOCK4}")]);
    assert!(
        shown.contains(&format!("\n  {OUR_AS}\n")) && shown.contains("external"),
        "{shown}"
    );
    let shown = lab.vtysh(&[&format!("show bgp ipv6 unicast {OUR_BLOCK6}")]);
    assert!(shown.contains(&format!("\n  {OUR_AS}\n")), "{shown}");

    // The segments are signed: both ends' sockets carry the key.
    for ns in [&lab.frr_ns, &lab.ours] {
        let ss = ns.exec(&["ss", "-tnie", "state", "established"]);
        let ss = String::from_utf8_lossy(&ss.stdout).into_owned();
        assert_eq!(
            ss.matches("md5keys:").count(),
            2,
            "both sessions signed in {}: {ss}",
            ns.name
        );
    }

    // A withdrawal over eBGP.
    d.send(Command::LocalRoutes(vec![]));
    assert!(
        wait_until(10, || lab.frr_route(OUR_BLOCK4).is_empty()
            && lab.frr_route(OUR_BLOCK6).is_empty()),
        "withdrawn from FRR: {}",
        lab.frr_state()
    );
    drop(rx);
    d.stop();
}
