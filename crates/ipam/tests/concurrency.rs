//! 8 processes × 500 allocations against one pool, on both backends; then
//! every address is unique, the handles account for every address, and
//! releasing everything (half by handle from the 8 processes at once, half in
//! one bulk release by address) leaves the pool empty and the blocks gone.
//!
//! The processes are this test binary re-executed (`current_exe()`) with
//! `--exact --ignored child_process` and the role in `CALICO_IPAM_TEST_ROLE`;
//! `child_process` is ignored in a normal run, so it never counts as a test.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use calico_datastore::{connect, DatastoreConfig, EtcdConfig};
use calico_ipam::affinity::STATE_CONFIRMED;
use calico_ipam::block::block_for_ip;
use calico_ipam::{AutoAssignArgs, Ipam, ReleaseOptions};
use common::{attrs, Fixture};
use ipnet::IpNet;

const ROLE_ENV: &str = "CALICO_IPAM_TEST_ROLE";
const CONFIG_ENV: &str = "CALICO_IPAM_TEST_CONFIG";
const PROC_ENV: &str = "CALICO_IPAM_TEST_PROC";
const COUNT_ENV: &str = "CALICO_IPAM_TEST_COUNT";
const START_ENV: &str = "CALICO_IPAM_TEST_START_AT_MS";

const PROCS: usize = 8;
const PER_PROC: usize = 500;
/// Two processes per host: they contend for the same blocks, and the four
/// hosts contend for claiming new ones.
const HOSTS: usize = 4;
const POOL: &str = "10.64.0.0/16";

fn host_of(proc_: usize) -> String {
    format!("host-{}", proc_ % HOSTS)
}

fn handle_of(proc_: usize, n: usize) -> String {
    format!("wl-{proc_}-{n}")
}

fn encode_config(cfg: &DatastoreConfig) -> String {
    match cfg {
        DatastoreConfig::Local { path } => format!("local:{}", path.display()),
        DatastoreConfig::Etcd(e) => format!("etcd:{}", e.endpoints.join(",")),
    }
}

fn decode_config(s: &str) -> DatastoreConfig {
    match s.split_once(':') {
        Some(("local", path)) => DatastoreConfig::Local {
            path: PathBuf::from(path),
        },
        Some(("etcd", eps)) => DatastoreConfig::Etcd(EtcdConfig::new(eps.split(','))),
        _ => panic!("bad {CONFIG_ENV}: {s}"),
    }
}

/// Kills the child (by its handle, i.e. its PID) if the test bails out.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(role: &str, cfg: &DatastoreConfig, proc_: usize, start_at_ms: u128) -> ChildGuard {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "--ignored",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE_ENV, role)
        .env(CONFIG_ENV, encode_config(cfg))
        .env(PROC_ENV, proc_.to_string())
        .env(COUNT_ENV, PER_PROC.to_string())
        .env(START_ENV, start_at_ms.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    ChildGuard(child)
}

/// Runs `role` in every process at once; returns each process's tagged lines.
fn run_all(role: &str, cfg: &DatastoreConfig, tag: &str) -> Vec<Vec<String>> {
    let start_at = (std::time::SystemTime::now() + Duration::from_millis(300))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let mut children: Vec<ChildGuard> = (0..PROCS).map(|i| spawn(role, cfg, i, start_at)).collect();
    let mut out = Vec::new();
    for c in &mut children {
        let mut text = String::new();
        c.0.stdout
            .as_mut()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        let status = c.0.wait().unwrap();
        assert!(status.success(), "{role} child failed: {status}");
        assert!(
            text.contains("DONE"),
            "{role} child did not finish:\n{text}"
        );
        out.push(
            text.lines()
                .filter_map(|l| l.find(tag).map(|i| l[i + tag.len()..].to_string()))
                .collect(),
        );
    }
    out
}

fn wait_until(start_at_ms: &str) {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(start_at_ms.parse().unwrap());
    if let Ok(d) = at.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(d);
    }
}

/// Entry point of the child processes, not a test: ignored so that a normal
/// run does not count it as passing; the parent runs it with `--ignored`.
#[test]
#[ignore = "helper entry point for child processes"]
fn child_process() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let cfg = decode_config(&std::env::var(CONFIG_ENV).unwrap());
    let ipam = Ipam::new(Arc::from(connect(&cfg).unwrap()));
    let proc_: usize = std::env::var(PROC_ENV).unwrap().parse().unwrap();
    let count: usize = std::env::var(COUNT_ENV).unwrap().parse().unwrap();
    wait_until(&std::env::var(START_ENV).unwrap());
    let host = host_of(proc_);
    let mut out = String::new();
    match role.as_str() {
        "alloc" => {
            for n in 0..count {
                let handle = handle_of(proc_, n);
                let r = ipam
                    .auto_assign(&AutoAssignArgs {
                        num4: 1,
                        handle_id: Some(handle.clone()),
                        attrs: attrs(&host),
                        hostname: host.clone(),
                        ..Default::default()
                    })
                    .unwrap()
                    .complete()
                    .unwrap_or_else(|e| panic!("{host}: allocation {n} failed: {e}"));
                out.push_str(&format!("ALLOC {} {handle}\n", r.v4.ips[0].addr()));
            }
        }
        "release" => {
            // The even-numbered half; the parent releases the rest by address.
            for n in (0..count).step_by(2) {
                let handle = handle_of(proc_, n);
                let ips = ipam.release_by_handle(&handle).unwrap();
                assert_eq!(ips.len(), 1, "{handle} released {ips:?}");
                out.push_str(&format!("FREED {} {handle}\n", ips[0]));
            }
        }
        other => panic!("unknown role {other}"),
    }
    out.push_str("DONE\n");
    print!("{out}");
}

fn concurrent_allocations(f: &Fixture) {
    f.pool("pool", POOL, |s| s.block_size = Some(26));
    let pool: IpNet = POOL.parse().unwrap();
    let t = Instant::now();
    let lines = run_all("alloc", &f.config, "ALLOC ");
    let alloc_time = t.elapsed();

    // Every address handed out once, and to the handle that asked.
    let mut by_ip: BTreeMap<IpAddr, String> = BTreeMap::new();
    for (p, ls) in lines.iter().enumerate() {
        assert_eq!(
            ls.len(),
            PER_PROC,
            "process {p} reported {} allocations",
            ls.len()
        );
        for l in ls {
            let (ip, handle) = l.split_once(' ').unwrap();
            let ip: IpAddr = ip.parse().unwrap();
            assert!(pool.contains(&ip));
            if let Some(prev) = by_ip.insert(ip, handle.to_string()) {
                panic!("{ip} handed out twice: to {prev} and {handle}");
            }
        }
    }
    assert_eq!(by_ip.len(), PROCS * PER_PROC);

    // The stored state agrees: blocks hold exactly these allocations under
    // these handles, each handle counts exactly its address, each block is
    // affine to a host with a confirmed affinity.
    let snap = f.ipam.snapshot().unwrap();
    assert!(snap.corrupt.is_empty(), "{:?}", snap.corrupt);
    let mut stored: BTreeMap<IpAddr, String> = BTreeMap::new();
    for b in &snap.blocks {
        for (_, ip, a) in b.value.allocated() {
            assert!(stored.insert(ip, a.handle().unwrap().to_string()).is_none());
        }
    }
    assert_eq!(
        stored, by_ip,
        "blocks record exactly the reported allocations"
    );
    assert_eq!(snap.handles.len(), PROCS * PER_PROC);
    for (id, h) in &snap.handles {
        let ips: Vec<&IpAddr> = by_ip
            .iter()
            .filter(|(_, hh)| *hh == id)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(ips.len(), 1, "handle {id}");
        let want = BTreeMap::from([(block_for_ip(*ips[0], 26).to_string(), 1u64)]);
        assert_eq!(h.value.block, want, "handle {id} counts its block");
    }
    let affs: BTreeSet<(String, IpNet)> = snap
        .affinities
        .iter()
        .map(|(h, c, a)| {
            assert_eq!(a.value.state, STATE_CONFIRMED, "no claim left half-done");
            (h.clone(), *c)
        })
        .collect();
    for b in &snap.blocks {
        let host = b.value.host().expect("every block belongs to a host");
        assert!(affs.contains(&(host.to_string(), b.value.cidr)));
    }
    assert_eq!(affs.len(), snap.blocks.len());
    let nblocks = snap.blocks.len();

    // Release everything: half by handle from every process at once...
    let t = Instant::now();
    let freed = run_all("release", &f.config, "FREED ");
    let mut freed_ips: BTreeMap<IpAddr, String> = BTreeMap::new();
    for l in freed.iter().flatten() {
        let (ip, handle) = l.split_once(' ').unwrap();
        assert!(freed_ips
            .insert(ip.parse().unwrap(), handle.to_string())
            .is_none());
    }
    assert_eq!(freed_ips.len(), PROCS * PER_PROC / 2);
    // ...and the other half in one bulk release by address (with handles,
    // so that only still-matching allocations go).
    let rest: Vec<ReleaseOptions> = by_ip
        .iter()
        .filter(|(ip, _)| !freed_ips.contains_key(ip))
        .map(|(ip, h)| ReleaseOptions::with_handle(*ip, h))
        .collect();
    let r = f.ipam.release_ips(&rest).unwrap();
    assert_eq!(r.released.len(), rest.len());
    assert!(r.not_allocated.is_empty() && r.skipped.is_empty());
    let release_time = t.elapsed();
    for (ip, h) in by_ip
        .iter()
        .filter(|(ip, _)| !freed_ips.contains_key(ip))
        .map(|(i, h)| (*i, h.clone()))
        .collect::<Vec<_>>()
    {
        freed_ips.insert(ip, h);
    }
    assert_eq!(freed_ips, by_ip, "each handle released exactly its address");
    let u = f.ipam.utilization().unwrap();
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].in_use(), 0, "the pool is empty");
    assert!(f.ipam.snapshot().unwrap().handles.is_empty());
    // The hosts go away: their (empty) blocks go with their affinities.
    let mut released = 0;
    for h in 0..HOSTS {
        released += f
            .ipam
            .release_host_affinities(&format!("host-{h}"), true)
            .unwrap();
    }
    assert_eq!(released, nblocks);
    let left = f.ipam.store().list(calico_ipam::keys::IPAM_PREFIX).unwrap();
    assert!(
        left.kvs.is_empty(),
        "left behind: {:?}",
        left.kvs.iter().map(|k| &k.key).collect::<Vec<_>>()
    );
    eprintln!(
        "{}: {PROCS} processes x {PER_PROC} allocations in {alloc_time:?} ({:.0}/s), {nblocks} blocks; released in {release_time:?}",
        f.ipam.store().describe(),
        (PROCS * PER_PROC) as f64 / alloc_time.as_secs_f64()
    );
}

both_backends!(concurrent_allocations);
