//! `calico-bench bgp-mesh`: one receiver holding an iBGP session with
//! every other node of a simulated full-mesh cluster, each peer announcing
//! its one /26 block, as a Calico node sees its mesh after a restart.
//!
//!   calico-bench bgp-mesh [--peers 999] [--rounds R] [--receivers calico-rs,bird] [--idle S] [--spread-ms 0,3000]
//!
//! Per round and receiver, fresh namespaces R (receiver, 10.200.0.1/16 on
//! a veth) and S (the simulator: the peers' addresses 10.200.0.2 … on the
//! other end, one per peer). Neighbour entries are static on both sides,
//! so the kernel's neighbour-table limits (gc_thresh3 = 1024, shared by all
//! namespaces) play no part. The receiver is configured with every peer,
//! passive (as for the half of a mesh with higher addresses), and
//! originates 192.168.20.0/26 (sent to every peer):
//!
//! - calico-rs: this binary's `bgp-receiver`, as calico-node runs BGP;
//! - bird2: BIRD 2 with one `protocol bgp` per peer (from a template with
//!   Calico's settings) and a kernel protocol.
//!
//! The simulator (peersim.rs) then opens the sessions, in each of two
//! arrival patterns: all at once (a node restarting: every peer's retry
//! finds it at about the same moment), and spread evenly over 3 s (as
//! peers on Calico's `connect retry time 3` would). A simulated peer whose
//! attempt is not Established within 5 s drops it and tries again, and a
//! session the receiver ends is made again. Peer i announces
//! 10.65.0.0/16's i-th /26 with itself as next hop, then End-of-RIB. Clock: from the simulator starting to (sessions) every
//! session Established at the simulator, (RIB) every route in the
//! receiver's table (calico-rs: its route sink; BIRD: `show route count
//! where source = RTS_BGP`, polled every 100 ms) and (kernel) every route
//! in R's main table as `proto bird` (rtnetlink notifications). CPU: the
//! receiver's user+system time from the start to complete, and per second
//! while idle for `--idle` seconds afterwards (sessions up, keepalives and
//! status work only). Memory: VmRSS when ready and after the idle time,
//! and VmHWM.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ipnet::{IpNet, Ipv4Net};

use super::kwatch::{count_in, KernelWatch};
use super::peersim::{SimPeer, Simulator};
use super::receiver::{mesh_name, ASN};
use super::util::{
    bird_route_count, ip_batch, load_average, median, proc_stat, sh, Namespaces, ProcStat,
};
use super::{fmt_secs, keep_if_asked, mib, parse_flags, require_root, secs, Kind, Receiver};

const RECEIVER: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const FIRST_PEER: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
const MAC_R: &str = "02:00:0a:c8:00:01";
const MAC_S: &str = "02:00:0a:c8:00:02";
const TIMEOUT: Duration = Duration::from_secs(90);

struct Opts {
    peers: usize,
    rounds: usize,
    receivers: Vec<Kind>,
    idle: u64,
    /// Each arrival pattern is measured: the peers' connects spread evenly
    /// over this long (zero: all at once).
    spreads: Vec<Duration>,
}

fn peer_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(FIRST_PEER) + i as u32)
}

fn peer_block(i: usize) -> IpNet {
    let base = u32::from(Ipv4Addr::new(10, 65, 0, 0));
    IpNet::V4(Ipv4Net::new(Ipv4Addr::from(base + 64 * i as u32), 26).expect("valid /26"))
}

fn bird_conf(dir: &Path, peers: &[Ipv4Addr]) -> String {
    let mut s = format!(
        r#"log "{dir}/receiver.log" all;
router id {RECEIVER};
protocol device {{ scan time 2; }}
protocol direct {{ ipv4; interface "bm*"; }}
protocol static blocks {{ ipv4; route 192.168.20.0/26 blackhole; }}
protocol kernel {{
  ipv4 {{ import none; export filter {{ if source = RTS_BGP then accept; reject; }}; }};
  persist; scan time 2; graceful restart; merge paths on;
}}
template bgp mesh {{
  local {RECEIVER} as {ASN};
  passive on;
  multihop;
  connect delay time 1; connect retry time 3; error wait time 5,60;
  graceful restart; graceful restart time 120;
  ipv4 {{ import all; export where source = RTS_STATIC; add paths on; next hop self; gateway recursive; }};
}}
"#,
        dir = dir.display()
    );
    for p in peers {
        s.push_str(&format!(
            "protocol bgp {} from mesh {{ neighbor {p} as {ASN}; }}\n",
            mesh_name(*p)
        ));
    }
    s
}

#[derive(Default)]
struct Sample {
    sessions: Option<f64>,
    rib: Option<f64>,
    kernel: Option<f64>,
    ready: ProcStat,
    done: ProcStat,
    after: ProcStat,
    idle_secs: f64,
    in_kernel: usize,
    established: usize,
    connect_failures: usize,
    errors: Vec<String>,
}

impl Sample {
    fn cpu(&self) -> f64 {
        self.done.cpu.saturating_sub(self.ready.cpu).as_secs_f64()
    }

    /// CPU share of one core while idle, in percent.
    fn idle_cpu(&self) -> f64 {
        100.0 * self.after.cpu.saturating_sub(self.done.cpu).as_secs_f64() / self.idle_secs
    }
}

fn setup(r: &str, s: &str, n: usize) -> Result<()> {
    sh(&[
        "ip", "link", "add", "bmR", "netns", r, "address", MAC_R, "type", "veth", "peer", "name",
        "bmS", "netns", s, "address", MAC_S,
    ])?;
    ip_batch(
        r,
        &format!("addr add {RECEIVER}/16 dev bmR\nlink set bmR up\n"),
    )?;
    let mut cmds = String::from("link set bmS up\n");
    let mut neigh = String::new();
    for i in 0..n {
        cmds.push_str(&format!("addr add {}/16 dev bmS\n", peer_addr(i)));
        neigh.push_str(&format!(
            "neigh replace {} lladdr {MAC_S} dev bmR nud permanent\n",
            peer_addr(i)
        ));
    }
    cmds.push_str(&format!(
        "neigh replace {RECEIVER} lladdr {MAC_R} dev bmS nud permanent\n"
    ));
    ip_batch(s, &cmds)?;
    ip_batch(r, &neigh)?;
    Ok(())
}

fn round(kind: Kind, n: usize, idle: u64, spread: Duration, tag: &str) -> Result<Sample> {
    let dir = tempfile::tempdir()?;
    let dirp = dir.path();
    keep_if_asked(dirp);
    let (r, s) = (format!("{tag}-r"), format!("{tag}-s"));
    let mut nss = Namespaces::default();
    nss.add(&r)?;
    nss.add(&s)?;
    setup(&r, &s, n)?;
    let peers: Vec<Ipv4Addr> = (0..n).map(peer_addr).collect();
    let watch = KernelWatch::start(&r, calico_dataplane::learned::RTPROT_BIRD, n)?;
    let mut recv = match kind {
        Kind::CalicoRs => Receiver::calico(&r, RECEIVER, &peers, n, dirp)?,
        Kind::Bird => Receiver::bird(&r, &bird_conf(dirp, &peers), dirp)?,
    };
    let pid = recv.daemon.pid();
    recv.maybe_profile(&format!("mesh-{}", kind.name()))?;
    // Let BIRD's protocols finish starting (they are all passive).
    std::thread::sleep(Duration::from_millis(500));
    let ready = proc_stat(pid)?;
    let start = Instant::now();
    let sim = Simulator::start(
        &s,
        SocketAddr::new(RECEIVER.into(), 179),
        ASN,
        (0..n)
            .map(|i| SimPeer {
                address: peer_addr(i),
                prefix: peer_block(i),
            })
            .collect(),
        spread,
    )?;
    let (mut rib, mut kernel) = (None, None);
    let mut last_count = Instant::now() - Duration::from_secs(1);
    while (rib.is_none() || kernel.is_none()) && start.elapsed() < TIMEOUT {
        recv.daemon.check_alive()?;
        if rib.is_none() {
            rib = match kind {
                Kind::CalicoRs => recv.line_at("rib").map(|(_, t)| t),
                Kind::Bird if last_count.elapsed() >= Duration::from_millis(100) => {
                    last_count = Instant::now();
                    let ctl = recv.ctl.as_ref().context("ctl")?;
                    let c = bird_route_count(ctl, "show route count where source = RTS_BGP")?;
                    (c >= n).then(Instant::now)
                }
                Kind::Bird => None,
            };
        }
        if kernel.is_none() {
            kernel = watch.reached();
        }
        if let Some(e) = watch.error() {
            bail!("kernel watch: {e}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let done = proc_stat(pid)?;
    let t_done = Instant::now();
    std::thread::sleep(Duration::from_secs(idle));
    let after = proc_stat(pid)?;
    let idle_secs = t_done.elapsed().as_secs_f64();
    let in_kernel = count_in(&r, calico_dataplane::learned::RTPROT_BIRD)?;
    let p = &sim.progress;
    let sample = Sample {
        sessions: secs(Some(start), *p.all_established.lock().unwrap()),
        rib: secs(Some(start), rib),
        kernel: secs(Some(start), kernel),
        ready,
        done,
        after,
        idle_secs,
        in_kernel,
        established: p.established.load(Ordering::Relaxed),
        connect_failures: p.connect_failures.load(Ordering::Relaxed),
        errors: p.errors.lock().unwrap().clone(),
    };
    drop(sim);
    drop(watch);
    recv.stop();
    drop(nss);
    super::copy_kept();
    Ok(sample)
}

fn arrival(spread: Duration) -> String {
    if spread.is_zero() {
        "at once".to_string()
    } else {
        format!("over {} s", spread.as_secs_f64())
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let mut o = Opts {
        peers: 999,
        rounds: 2,
        receivers: vec![Kind::CalicoRs, Kind::Bird],
        idle: 5,
        spreads: vec![Duration::ZERO, Duration::from_secs(3)],
    };
    parse_flags(args, |f, v| {
        match f {
            "--peers" => o.peers = v.parse()?,
            "--rounds" => o.rounds = v.parse()?,
            "--receivers" => o.receivers = Kind::parse_list(v)?,
            "--idle" => o.idle = v.parse()?,
            "--spread-ms" => {
                o.spreads = v
                    .split(',')
                    .map(|ms| ms.parse().map(Duration::from_millis))
                    .collect::<Result<_, _>>()?
            }
            f => bail!("unknown flag {f}"),
        }
        Ok(())
    })?;
    if o.peers == 0 || o.peers > 1000 {
        bail!("--peers must be 1..=1000");
    }
    require_root()?;
    println!(
        "bgp-mesh: {} iBGP peers (simulated, one /26 each) into one receiver; times from the first connect; {} rounds; load {}",
        o.peers,
        o.rounds,
        load_average()
    );
    println!(
        "{:<10} {:>9} {:>5} {:>10} {:>7} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "RECEIVER",
        "CONNECTS",
        "ROUND",
        "SESSIONS s",
        "RIB s",
        "KERNEL s",
        "CPU s",
        "IDLE CPU",
        "RSS0 MiB",
        "RSS MiB",
        "+RSS MiB",
        "PEAK MiB",
        "IN KERNEL"
    );
    let mut all: Vec<(Kind, Duration, Sample)> = Vec::new();
    for round_no in 0..o.rounds {
        for &spread in &o.spreads {
            for &kind in &o.receivers {
                let tag = format!("cbm{}", std::process::id());
                let s = round(kind, o.peers, o.idle, spread, &tag)?;
                println!(
                    "{:<10} {:>9} {:>5} {:>10} {:>7} {:>9} {:>7.2} {:>8.1}% {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9}",
                    kind.name(),
                    arrival(spread),
                    round_no + 1,
                    fmt_secs(s.sessions),
                    fmt_secs(s.rib),
                    fmt_secs(s.kernel),
                    s.cpu(),
                    s.idle_cpu(),
                    mib(s.ready.rss_kb),
                    mib(s.after.rss_kb),
                    mib(s.after.rss_kb.saturating_sub(s.ready.rss_kb)),
                    mib(s.after.hwm_kb),
                    s.in_kernel,
                );
                if s.established < o.peers || s.connect_failures > 0 || !s.errors.is_empty() {
                    println!(
                        "           {} of {} peers established, {} attempts not Established within {} s (retried), {} sessions ended by the receiver after Established (made again){}",
                        s.established,
                        o.peers,
                        s.connect_failures,
                        super::peersim::OPEN_TIMEOUT.as_secs(),
                        s.errors.len(),
                        s.errors.first().map(|e| format!(", first: {e}")).unwrap_or_default()
                    );
                }
                all.push((kind, spread, s));
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
    println!("\nmedian over {} rounds:", o.rounds);
    for &spread in &o.spreads {
        for &kind in &o.receivers {
            let of = |f: &dyn Fn(&Sample) -> f64| {
                median(
                    all.iter()
                        .filter(|(k, sp, _)| *k == kind && *sp == spread)
                        .map(|(_, _, s)| f(s))
                        .collect(),
                )
            };
            println!(
                "{:<10} connects {}: sessions {:.2} s, RIB {:.2} s, kernel {:.2} s, CPU {:.2} s, idle CPU {:.1}%, RSS +{:.1} MiB (total {:.1}, peak {:.1} MiB)",
                kind.name(),
                arrival(spread),
                of(&|s| s.sessions.unwrap_or(f64::NAN)),
                of(&|s| s.rib.unwrap_or(f64::NAN)),
                of(&|s| s.kernel.unwrap_or(f64::NAN)),
                of(&|s| s.cpu()),
                of(&|s| s.idle_cpu()),
                of(&|s| mib(s.after.rss_kb.saturating_sub(s.ready.rss_kb))),
                of(&|s| mib(s.after.rss_kb)),
                of(&|s| mib(s.after.hwm_kb)),
            );
        }
    }
    Ok(())
}
