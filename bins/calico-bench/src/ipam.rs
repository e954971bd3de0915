//! `calico-bench ipam [local|etcd]`: IPAM auto-assign throughput for one
//! host, one allocator and then 8 concurrent allocator processes (this binary
//! re-executed as `ipam-child`), each allocation one address under its own
//! handle, as a CNI/agent would ask. Also reports release-by-handle
//! throughput and datastore round trips per operation.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use calico_api::network::{IPPool, IPPoolSpec};
use calico_api::AnyResource;
use calico_client::Client;
use calico_datastore::{
    connect, Datastore, DatastoreConfig, EtcdConfig, KeyValue, LeaseId, ListResult, Op, Revision,
    Watch,
};
use calico_ipam::{AutoAssignArgs, Ipam};

const SINGLE: usize = 2000;
const PROCS: usize = 8;
const PER_PROC: usize = 500;
const HOST: &str = "bench-host";

/// Counts the round trips IPAM makes.
struct Counting {
    inner: Box<dyn Datastore>,
    reads: AtomicU64,
    writes: AtomicU64,
}

impl Counting {
    fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }
    fn write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
    fn take(&self) -> (u64, u64) {
        (
            self.reads.swap(0, Ordering::Relaxed),
            self.writes.swap(0, Ordering::Relaxed),
        )
    }
}

impl Datastore for Counting {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn get(&self, key: &str) -> calico_datastore::Result<Option<KeyValue>> {
        self.read();
        self.inner.get(key)
    }
    fn list(&self, prefix: &str) -> calico_datastore::Result<ListResult> {
        self.read();
        self.inner.list(prefix)
    }
    fn create(
        &self,
        key: &str,
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> calico_datastore::Result<Revision> {
        self.write();
        self.inner.create(key, value, lease)
    }
    fn update(
        &self,
        key: &str,
        value: &[u8],
        rev: Revision,
        lease: Option<LeaseId>,
    ) -> calico_datastore::Result<Revision> {
        self.write();
        self.inner.update(key, value, rev, lease)
    }
    fn put(
        &self,
        key: &str,
        value: &[u8],
        lease: Option<LeaseId>,
    ) -> calico_datastore::Result<Revision> {
        self.write();
        self.inner.put(key, value, lease)
    }
    fn delete(&self, key: &str, rev: Option<Revision>) -> calico_datastore::Result<KeyValue> {
        self.write();
        self.inner.delete(key, rev)
    }
    fn txn(&self, ops: &[Op]) -> calico_datastore::Result<Revision> {
        self.write();
        self.inner.txn(ops)
    }
    fn max_txn_ops(&self) -> usize {
        self.inner.max_txn_ops()
    }
    fn grant_lease(&self, ttl: Duration) -> calico_datastore::Result<LeaseId> {
        self.inner.grant_lease(ttl)
    }
    fn keep_alive(&self, lease: LeaseId) -> calico_datastore::Result<()> {
        self.inner.keep_alive(lease)
    }
    fn revoke_lease(&self, lease: LeaseId) -> calico_datastore::Result<()> {
        self.inner.revoke_lease(lease)
    }
    fn watch(&self, prefix: &str, start: Revision) -> calico_datastore::Result<Watch> {
        self.inner.watch(prefix, start)
    }
    fn current_revision(&self) -> calico_datastore::Result<Revision> {
        self.inner.current_revision()
    }
    fn compact(&self, revision: Revision) -> calico_datastore::Result<()> {
        self.inner.compact(revision)
    }
}

fn encode_config(cfg: &DatastoreConfig) -> String {
    match cfg {
        DatastoreConfig::Local { path } => format!("local:{}", path.display()),
        DatastoreConfig::Etcd(e) => format!("etcd:{}", e.endpoints.join(",")),
    }
}

fn decode_config(s: &str) -> Result<DatastoreConfig> {
    Ok(match s.split_once(':') {
        Some(("local", path)) => DatastoreConfig::Local { path: path.into() },
        Some(("etcd", eps)) => DatastoreConfig::Etcd(EtcdConfig::new(eps.split(','))),
        _ => bail!("bad datastore {s:?}"),
    })
}

fn one(ipam: &Ipam, handle: String) -> Result<()> {
    ipam.auto_assign(&AutoAssignArgs {
        num4: 1,
        handle_id: Some(handle),
        hostname: HOST.to_string(),
        attrs: [("node".to_string(), HOST.to_string())].into(),
        ..Default::default()
    })?
    .complete()?;
    Ok(())
}

/// `ipam-child <datastore> <id> <count> <start-at-unix-ms>`: `count`
/// allocations, then prints `ELAPSED <seconds>`.
pub fn child(args: &[String]) -> Result<()> {
    let [cfg, id, count, start] = args else {
        bail!("usage: calico-bench ipam-child DATASTORE ID COUNT START_MS");
    };
    let ipam = Ipam::new(Arc::from(connect(&decode_config(cfg)?)?));
    let count: usize = count.parse()?;
    let at = std::time::UNIX_EPOCH + Duration::from_millis(start.parse()?);
    if let Ok(d) = at.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(d);
    }
    let t = Instant::now();
    for n in 0..count {
        one(&ipam, format!("c{id}-{n}"))?;
    }
    println!("ELAPSED {}", t.elapsed().as_secs_f64());
    Ok(())
}

struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn setup(cfg: &DatastoreConfig) -> Result<()> {
    let client = Client::new(Arc::from(connect(cfg)?));
    client.create(AnyResource::IPPool(IPPool::new(
        "bench",
        IPPoolSpec {
            cidr: "10.128.0.0/14".into(),
            ..Default::default()
        },
    )))?;
    Ok(())
}

fn bench(backend: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let _etcd;
    let cfg = match backend {
        "local" => DatastoreConfig::Local {
            path: dir.path().join("calico.db"),
        },
        "etcd" => {
            let e = calico_datastore::testing::EtcdServer::start();
            let c = e.datastore_config();
            _etcd = e;
            c
        }
        other => bail!("unknown backend {other:?}"),
    };
    setup(&cfg)?;
    let counting = Arc::new(Counting {
        inner: connect(&cfg)?,
        reads: AtomicU64::new(0),
        writes: AtomicU64::new(0),
    });
    let ipam = Ipam::new(counting.clone());

    // One allocator.
    let t = Instant::now();
    for n in 0..SINGLE {
        one(&ipam, format!("s-{n}"))?;
    }
    let alloc = t.elapsed();
    let (r, w) = counting.take();
    let t = Instant::now();
    for n in 0..SINGLE {
        ipam.release_by_handle(&format!("s-{n}"))?;
    }
    let release = t.elapsed();
    let (rr, rw) = counting.take();
    println!(
        "ipam/{backend}: 1 allocator, {SINGLE} allocations on one host: {:.0} allocations/s ({:.2} ms each; {:.1} reads + {:.1} writes each); release by handle {:.0}/s ({:.1} reads + {:.1} writes each)",
        SINGLE as f64 / alloc.as_secs_f64(),
        alloc.as_secs_f64() * 1000.0 / SINGLE as f64,
        r as f64 / SINGLE as f64,
        w as f64 / SINGLE as f64,
        SINGLE as f64 / release.as_secs_f64(),
        rr as f64 / SINGLE as f64,
        rw as f64 / SINGLE as f64,
    );

    // 8 allocator processes, same host.
    let me = std::env::current_exe()?;
    let start_at = (std::time::SystemTime::now() + Duration::from_millis(500))
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let t = Instant::now();
    let mut kids: Vec<Guard> = (0..PROCS)
        .map(|i| {
            Command::new(&me)
                .args([
                    "ipam-child",
                    &encode_config(&cfg),
                    &i.to_string(),
                    &PER_PROC.to_string(),
                    &start_at.to_string(),
                ])
                .stdout(Stdio::piped())
                .spawn()
                .map(Guard)
        })
        .collect::<std::io::Result<_>>()?;
    let mut longest = 0f64;
    for k in &mut kids {
        let out = k.0.wait_with_output_ref()?;
        let secs: f64 = out
            .lines()
            .find_map(|l| l.strip_prefix("ELAPSED "))
            .context("child did not report")?
            .trim()
            .parse()?;
        longest = longest.max(secs);
    }
    let wall = t.elapsed().as_secs_f64() - 0.5;
    let total = (PROCS * PER_PROC) as f64;
    println!(
        "ipam/{backend}: {PROCS} allocator processes x {PER_PROC} on one host: {:.0} allocations/s aggregate (slowest process {:.2} s, wall {:.2} s)",
        total / longest,
        longest,
        wall
    );
    let u = ipam.utilization()?;
    let used: u128 = u.iter().map(|p| p.in_use()).sum();
    if used != total as u128 {
        bail!("expected {total} addresses in use, found {used}");
    }
    Ok(())
}

trait WaitOutput {
    fn wait_with_output_ref(&mut self) -> Result<String>;
}

impl WaitOutput for Child {
    fn wait_with_output_ref(&mut self) -> Result<String> {
        let mut s = String::new();
        std::io::Read::read_to_string(self.stdout.as_mut().context("stdout")?, &mut s)?;
        let st = self.wait()?;
        if !st.success() {
            bail!("allocator process failed: {st}");
        }
        Ok(s)
    }
}

pub fn run(backends: &[&str]) -> Result<()> {
    for b in backends {
        bench(b)?;
    }
    Ok(())
}
