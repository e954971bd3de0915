//! `calico-bench bgp-receive`: how fast a receiver takes one peer's full
//! table into its RIB and its kernel, and what it costs in memory.
//!
//!   calico-bench bgp-receive [--routes N] [--rounds R] [--receivers calico-rs,bird]
//!
//! Per round and receiver, fresh namespaces A and B joined by a veth
//! (10.99.0.1/24 ↔ 10.99.0.2/24). A runs BIRD 2 originating N /32
//! blackholes (172.16.0.0/12) plus 192.168.10.0/26 and exporting them over
//! iBGP (AS 64512, add-path, next hop self), as bgp-harness's birdA.conf
//! does. B runs the receiver, passive, originating 192.168.20.0/26:
//!
//! - calico-rs: this binary's `bgp-receiver` (the speaker's Driver and
//!   `LearnedRoutes<RtNetlink>`, as calico-node runs them);
//! - bird2: BIRD 2 with a kernel protocol exporting BGP routes to B's main
//!   table (`scan time 2`, `persist`, `merge paths`, as Calico's template).
//!
//! Clock: from the session's Established (as the sender logged it, to the
//! microsecond) to (RIB) every prefix in the receiver's table (calico-rs:
//! its route sink counted N+1 best paths; BIRD: `show protocols all`'s
//! imported count, polled every 10 ms, so an upper bound: BIRD answers its
//! control socket between chunks of work) and (kernel) N+1 `proto bird` routes in B's main
//! table (rtnetlink notifications counted as they come; checked by a dump
//! at the end). Memory: the receiver's VmRSS when ready (no session yet)
//! and 1 s after the kernel is complete, and its VmHWM; CPU: user+system
//! time from ready until 1 s after complete.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::kwatch::{count_in, KernelWatch};
use super::util::{
    birdc, ip_batch, load_average, median, proc_stat, sh, start_bird, wait_bird, Namespaces,
    ProcStat,
};
use super::{fmt_secs, keep_if_asked, mib, parse_flags, require_root, secs, Kind, Receiver};

const SENDER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const RECEIVER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const TIMEOUT: Duration = Duration::from_secs(120);

struct Opts {
    routes: usize,
    rounds: usize,
    receivers: Vec<Kind>,
}

fn sender_conf(dir: &Path) -> String {
    format!(
        r#"log "{dir}/sender.log" all;
timeformat log "%s.%6f";
router id {SENDER};
protocol device {{ scan time 2; }}
protocol direct {{ ipv4; interface "bb*"; }}
protocol static blocks {{
  ipv4;
  route 192.168.10.0/26 blackhole;
  include "{dir}/sender-routes.conf";
}}
filter export_to_peers {{
  if net ~ [ 192.168.0.0/16+, 172.16.0.0/12+ ] then accept;
  reject;
}}
protocol bgp Mesh_10_99_0_2 {{
  local {SENDER} as 64512;
  neighbor {RECEIVER} as 64512;
  multihop;
  connect delay time 1; connect retry time 3; error wait time 5,60;
  graceful restart;
  debug {{ states }};
  ipv4 {{ import none; export filter export_to_peers; add paths on; next hop self; gateway recursive; }};
}}
"#,
        dir = dir.display()
    )
}

fn receiver_conf(dir: &Path) -> String {
    format!(
        r#"log "{dir}/receiver.log" {{ info, warning, error, fatal }};
router id {RECEIVER};
protocol device {{ scan time 2; }}
protocol direct {{ ipv4; interface "bb*"; }}
protocol static blocks {{ ipv4; route 192.168.20.0/26 blackhole; }}
protocol kernel {{
  ipv4 {{ import none; export filter {{ if source = RTS_BGP then accept; reject; }}; }};
  persist; scan time 2; graceful restart; merge paths on;
}}
protocol bgp Mesh_10_99_0_1 {{
  local {RECEIVER} as 64512;
  neighbor {SENDER} as 64512;
  passive on;
  multihop;
  graceful restart;
  ipv4 {{ import all; export where net ~ [ 192.168.0.0/16+ ]; add paths on; next hop self; gateway recursive; }};
}}
"#,
        dir = dir.display()
    )
}

fn sender_routes(n: usize) -> String {
    let base = u32::from(Ipv4Addr::new(172, 16, 0, 0));
    let mut s = String::with_capacity(n * 40);
    for i in 0..n as u32 {
        s.push_str(&format!(
            "  route {}/32 blackhole;\n",
            Ipv4Addr::from(base + i)
        ));
    }
    s
}

#[derive(Default)]
struct Sample {
    rib: Option<f64>,
    kernel: Option<f64>,
    ready: ProcStat,
    after: ProcStat,
    in_kernel: usize,
    overflows: u32,
}

/// When the sender's session came up, from its log (BIRD stamps the state
/// change when it happens, in epoch seconds: see `timeformat log`; its
/// control socket would answer late, while it is busy sending).
fn established_at(log: &Path) -> Option<Instant> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .lines()
        .find(|l| l.contains("Mesh_10_99_0_2: State changed to up"))?;
    let secs: f64 = line.split_whitespace().next()?.parse().ok()?;
    let at = std::time::UNIX_EPOCH + Duration::from_secs_f64(secs);
    let ago = std::time::SystemTime::now()
        .duration_since(at)
        .unwrap_or_default();
    Instant::now().checked_sub(ago)
}

/// BIRD's imported-route count for one protocol (`show protocols all`).
fn bird_imported(ctl: &Path, proto: &str) -> Result<usize> {
    let reply = birdc(ctl, &format!("show protocols all {proto}"))?;
    Ok(reply
        .lines()
        .find_map(|l| {
            let l = l.trim_start_matches(|c: char| c.is_ascii_digit() || c == '-');
            l.trim()
                .strip_prefix("Routes:")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0))
}

fn round(kind: Kind, n: usize, tag: &str) -> Result<Sample> {
    let dir = tempfile::tempdir()?;
    let dirp = dir.path();
    keep_if_asked(dirp);
    let (a, b) = (format!("{tag}-a"), format!("{tag}-b"));
    let mut nss = Namespaces::default();
    nss.add(&a)?;
    nss.add(&b)?;
    sh(&[
        "ip", "link", "add", "bbA", "netns", &a, "type", "veth", "peer", "name", "bbB", "netns", &b,
    ])?;
    ip_batch(&a, "addr add 10.99.0.1/24 dev bbA\nlink set bbA up\n")?;
    ip_batch(&b, "addr add 10.99.0.2/24 dev bbB\nlink set bbB up\n")?;
    let expect = n + 1;
    let watch = KernelWatch::start(&b, calico_dataplane::learned::RTPROT_BIRD, expect)?;
    let mut recv = match kind {
        Kind::CalicoRs => Receiver::calico(&b, RECEIVER, &[SENDER], expect, dirp)?,
        Kind::Bird => Receiver::bird(&b, &receiver_conf(dirp), dirp)?,
    };
    let pid = recv.daemon.pid();
    recv.maybe_profile(&format!("receive-{}", kind.name()))?;
    let ready = proc_stat(pid)?;
    std::fs::write(dirp.join("sender-routes.conf"), sender_routes(n))?;
    std::fs::write(dirp.join("sender.conf"), sender_conf(dirp))?;
    let sctl = dirp.join("sender.ctl");
    let mut sender = start_bird(
        "BIRD sender",
        &a,
        &dirp.join("sender.conf"),
        &sctl,
        &dirp.join("sender.err"),
    )?;
    wait_bird(&sctl, &mut sender, Duration::from_secs(60))?;
    let start = Instant::now();
    let (mut est, mut rib, mut kernel) = (None, None, None);
    while rib.is_none() || kernel.is_none() {
        if start.elapsed() > TIMEOUT {
            bail!(
                "{}: not converged after {TIMEOUT:?}: {} routes in the kernel",
                kind.name(),
                watch.count()
            );
        }
        recv.daemon.check_alive()?;
        sender.check_alive()?;
        if est.is_none() {
            est = established_at(&dirp.join("sender.log"));
        } else if rib.is_none() {
            rib = match kind {
                Kind::CalicoRs => recv.line_at("rib").map(|(_, t)| t),
                Kind::Bird => {
                    let ctl = recv.ctl.as_ref().context("ctl")?;
                    (bird_imported(ctl, "Mesh_10_99_0_1")? >= expect).then(Instant::now)
                }
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
    std::thread::sleep(Duration::from_secs(1));
    let after = proc_stat(pid)?;
    let in_kernel = count_in(&b, calico_dataplane::learned::RTPROT_BIRD)?;
    let s = Sample {
        rib: secs(est, rib),
        kernel: secs(est, kernel),
        ready,
        after,
        in_kernel,
        overflows: watch.overflows(),
    };
    drop(watch);
    sender.stop();
    recv.stop();
    drop(nss);
    super::copy_kept();
    Ok(s)
}

pub fn run(args: &[String]) -> Result<()> {
    let mut o = Opts {
        routes: 100_000,
        rounds: 3,
        receivers: vec![Kind::CalicoRs, Kind::Bird],
    };
    parse_flags(args, |f, v| {
        match f {
            "--routes" => o.routes = v.parse()?,
            "--rounds" => o.rounds = v.parse()?,
            "--receivers" => o.receivers = Kind::parse_list(v)?,
            f => bail!("unknown flag {f}"),
        }
        Ok(())
    })?;
    require_root()?;
    println!(
        "bgp-receive: BIRD 2 sends {} /32 + 1 /26 over iBGP; times from Established; {} rounds; load {}",
        o.routes,
        o.rounds,
        load_average()
    );
    println!(
        "{:<10} {:>5} {:>7} {:>9} {:>10} {:>10} {:>9} {:>9} {:>7} {:>9}",
        "RECEIVER",
        "ROUND",
        "RIB s",
        "KERNEL s",
        "RSS0 MiB",
        "RSS MiB",
        "+RSS MiB",
        "PEAK MiB",
        "CPU s",
        "IN KERNEL"
    );
    let mut all: Vec<(Kind, Sample)> = Vec::new();
    for r in 0..o.rounds {
        for &kind in &o.receivers {
            let tag = format!("cbr{}", std::process::id());
            let s = round(kind, o.routes, &tag)?;
            println!(
                "{:<10} {:>5} {:>7} {:>9} {:>10.1} {:>10.1} {:>9.1} {:>9.1} {:>7.2} {:>9}{}",
                kind.name(),
                r + 1,
                fmt_secs(s.rib),
                fmt_secs(s.kernel),
                mib(s.ready.rss_kb),
                mib(s.after.rss_kb),
                mib(s.after.rss_kb.saturating_sub(s.ready.rss_kb)),
                mib(s.after.hwm_kb),
                (s.after.cpu.saturating_sub(s.ready.cpu)).as_secs_f64(),
                s.in_kernel,
                if s.overflows > 0 {
                    format!(" (netlink overflowed {}x, recounted)", s.overflows)
                } else {
                    String::new()
                }
            );
            all.push((kind, s));
            // Let the kernel finish tearing the old namespaces down.
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    println!("\nmedian over {} rounds:", o.rounds);
    for &kind in &o.receivers {
        let of = |f: &dyn Fn(&Sample) -> f64| {
            median(
                all.iter()
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, s)| f(s))
                    .collect(),
            )
        };
        println!(
            "{:<10} RIB {:.2} s, kernel {:.2} s, RSS +{:.1} MiB (peak {:.1} MiB), CPU {:.2} s",
            kind.name(),
            of(&|s| s.rib.unwrap_or(f64::NAN)),
            of(&|s| s.kernel.unwrap_or(f64::NAN)),
            of(&|s| mib(s.after.rss_kb.saturating_sub(s.ready.rss_kb))),
            of(&|s| mib(s.after.hwm_kb)),
            of(&|s| s.after.cpu.saturating_sub(s.ready.cpu).as_secs_f64()),
        );
    }
    Ok(())
}
