//! Differential check of policy on the real kernel: random policies over
//! every match field (see `generate.rs`) go through the real calculation
//! (`calico-calc`) and the real nftables dataplane into a host namespace;
//! every workload then probes every other over IPv4 and IPv6 with TCP, UDP
//! and ICMP, and each kernel verdict must equal the reference evaluator's
//! (`calico_calc::reference`, written straight from the semantics).
//!
//! Rounds replace the previous round's policies, so incremental updates are
//! exercised too. A seed reproduces a run: `CALICO_DIFF_SEED=<n>`.
//! `CALICO_DIFF_LONG=1` runs the long mode (several seeds, ≥ 20,000
//! verdicts) whose result is recorded in docs/benchmarks.md.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use calico_calc::reference::{evaluate, Packet, World};

/// Probes answered within this are allowed; a disagreement is re-probed
/// with the long timeout before it counts (a busy 2-core machine).
const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_millis(2000);
/// Probes in flight per source workload.
const WORKERS_PER_SOURCE: usize = 12;

use super::generate::{self, Rng};
use super::topology::{
    self, next_source_port, probe, Probe, Topology, Workload, TCP_PORTS, UDP_PORTS,
};
use super::{prerequisites_met, workload_resource, Host};

#[derive(Clone, Debug)]
struct Case {
    src: usize,
    dst: usize,
    v6: bool,
    probe: Probe,
    src_port: u16,
}

impl Case {
    fn packet(&self, wls: &[Workload]) -> Packet {
        let (s, d) = (wls[self.src].addr(self.v6), wls[self.dst].addr(self.v6));
        match self.probe {
            Probe::Tcp(p) => Packet::tcp(s, d, self.src_port, p),
            Probe::Udp(p) => Packet::udp(s, d, self.src_port, p),
            Probe::Ping => Packet::icmp(s, d, if self.v6 { 128 } else { 8 }, 0),
        }
    }
}

fn cases(n: usize) -> Vec<Case> {
    let mut probes: Vec<Probe> = TCP_PORTS.iter().map(|p| Probe::Tcp(*p)).collect();
    probes.extend(UDP_PORTS.iter().map(|p| Probe::Udp(*p)));
    probes.push(Probe::Ping);
    let mut out = Vec::new();
    for src in 0..n {
        for dst in (0..n).filter(|d| *d != src) {
            for v6 in [false, true] {
                for probe in &probes {
                    out.push(Case {
                        src,
                        dst,
                        v6,
                        probe: *probe,
                        src_port: next_source_port(),
                    });
                }
            }
        }
    }
    out
}

/// Runs the cases, each from its source workload's namespace, many at once.
fn run_cases(wls: &[Workload], cases: &[Case], timeout: Duration) -> Vec<bool> {
    let results = Mutex::new(vec![false; cases.len()]);
    let mut by_src: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, c) in cases.iter().enumerate() {
        by_src.entry(c.src).or_default().push(i);
    }
    std::thread::scope(|sc| {
        for (src, idx) in &by_src {
            let (results, netns) = (&results, &wls[*src].netns);
            let queue = Mutex::new(idx.clone());
            sc.spawn(move || {
                topology::enter_netns(netns);
                // Threads started here inherit the namespace.
                std::thread::scope(|inner| {
                    for _ in 0..WORKERS_PER_SOURCE {
                        inner.spawn(|| loop {
                            let Some(i) = queue.lock().unwrap().pop() else {
                                break;
                            };
                            let c = &cases[i];
                            let dst = wls[c.dst].addr(c.v6);
                            let ok = probe(dst, c.src_port, c.probe, timeout);
                            results.lock().unwrap()[i] = ok;
                        });
                    }
                });
            });
        }
    });
    results.into_inner().unwrap()
}

struct Tally {
    verdicts: usize,
    allowed: usize,
    failures: Vec<String>,
}

fn describe(c: &Case, wls: &[Workload]) -> String {
    format!(
        "{} -> {} {:?} over IPv{} (src port {})",
        wls[c.src].name,
        wls[c.dst].name,
        c.probe,
        if c.v6 { 6 } else { 4 },
        c.src_port
    )
}

/// One round: a random world, programmed, every case probed and compared.
fn round(host: &mut Host, topo: &Topology, rng: &mut Rng, label: &str, tally: &mut Tally) {
    let wls = &topo.workloads;
    let (resources, yaml) = generate::world(rng, wls);
    host.program(&resources);
    let mut world = World::default();
    for r in resources.iter().cloned() {
        world.add(r);
    }
    for w in wls {
        world.add(workload_resource(w));
    }
    let cases = cases(wls.len());
    let got = run_cases(wls, &cases, SHORT);
    let mut disputed = Vec::new();
    for (c, got) in cases.iter().zip(got) {
        let want = evaluate(&world, &c.packet(wls));
        tally.verdicts += 1;
        tally.allowed += usize::from(want.allowed);
        if want.allowed != got {
            disputed.push((c.clone(), want));
        }
    }
    if disputed.is_empty() {
        return;
    }
    // Re-probe with fresh source ports and a long timeout.
    let mut again: Vec<Case> = disputed.iter().map(|(c, _)| c.clone()).collect();
    for c in &mut again {
        c.src_port = next_source_port();
    }
    let got = run_cases(wls, &again, LONG);
    let mut bad = Vec::new();
    for ((c, want), got) in again.iter().zip(&disputed).map(|(c, d)| (c, &d.1)).zip(got) {
        if want.allowed != got {
            bad.push(format!(
                "  {}: kernel {} but reference {} (egress {:?}, ingress {:?})",
                describe(c, wls),
                if got { "allowed" } else { "denied" },
                if want.allowed { "allows" } else { "denies" },
                want.egress.as_ref().map(|e| &e.by),
                want.ingress.as_ref().map(|i| &i.by),
            ));
        }
    }
    if !bad.is_empty() {
        let dump = dump_ruleset(&topo.host, label);
        if let Ok(secs) = std::env::var("CALICO_DIFF_PAUSE_SECS") {
            eprintln!(
                "{label}: paused for inspection; host namespace {}\n{}",
                topo.host,
                bad.join("\n")
            );
            std::thread::sleep(Duration::from_secs(secs.parse().unwrap_or(300)));
        }
        tally.failures.push(format!(
            "{label}: {} disagreement(s) (kernel ruleset in {dump}):\n{}\npolicies:\n{yaml}",
            bad.len(),
            bad.join("\n")
        ));
    }
}

/// Saves the host's ruleset for a failure report; returns the file name.
fn dump_ruleset(host: &str, label: &str) -> String {
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", host, "nft", "list", "table", "inet", "calico",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("nft list failed: {e}"));
    let path = std::env::temp_dir().join(format!(
        "calico-differential-{}.nft",
        label.replace(' ', "-")
    ));
    let _ = std::fs::write(&path, out);
    path.display().to_string()
}

fn run(seeds: &[u64], rounds: usize) -> Tally {
    let topo = Topology::new(&format!("cdiff-{}", std::process::id()));
    let mut host = Host::new(&topo, &[]);
    let mut tally = Tally {
        verdicts: 0,
        allowed: 0,
        failures: Vec::new(),
    };
    let started = Instant::now();
    for seed in seeds {
        let mut rng = Rng(*seed);
        for r in 0..rounds {
            round(
                &mut host,
                &topo,
                &mut rng,
                &format!("seed {seed:#x} round {r}"),
                &mut tally,
            );
        }
        eprintln!(
            "differential: seed {seed:#x}: {} verdicts so far, {} failing rounds, {:.0?}",
            tally.verdicts,
            tally.failures.len(),
            started.elapsed()
        );
    }
    tally
}

#[test]
fn kernel_verdicts_match_the_reference_evaluator() {
    if !prerequisites_met(
        "kernel_verdicts_match_the_reference_evaluator",
        &["ip", "nft"],
    ) {
        return;
    }
    let long = std::env::var("CALICO_DIFF_LONG").is_ok_and(|v| v == "1");
    let seeds: Vec<u64> = match std::env::var("CALICO_DIFF_SEED") {
        Ok(s) => vec![s.parse().expect("CALICO_DIFF_SEED is a number")],
        Err(_) if long => vec![0x5eed_0001, 0x5eed_0002, 0x5eed_0003],
        Err(_) => vec![0x5eed_cafe],
    };
    let rounds = if long { 20 } else { 6 };
    let tally = run(&seeds, rounds);
    eprintln!(
        "differential: {} kernel verdicts ({} expected allowed, {} denied), seeds {seeds:x?}, {} failing rounds",
        tally.verdicts,
        tally.allowed,
        tally.verdicts - tally.allowed,
        tally.failures.len()
    );
    assert!(
        tally.verdicts >= 2000,
        "too few verdicts: {}",
        tally.verdicts
    );
    assert!(
        tally.allowed > 0 && tally.allowed < tally.verdicts,
        "the generator should produce both outcomes"
    );
    assert!(tally.failures.is_empty(), "{}", tally.failures.join("\n\n"));
}
