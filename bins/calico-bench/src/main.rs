//! Benchmarks for the figures in docs/benchmarks.md. Each prints what it
//! measured and how; none asserts a time.
//!
//!   calico-bench selector            ns per selector evaluation
//!   calico-bench apply [local|etcd]  `calicoctl apply` of a 10,000-document file
//!   calico-bench ipam [local|etcd]   IPAM allocations/s, 1 and 8 allocators on one host
//!   calico-bench calc                incremental calculation: 10,000 endpoints, 1,000 policies
//!   calico-bench latency [local|etcd] policy apply-to-enforced latency in a lab (root)
//!   calico-bench pps                 64-byte UDP pps, no policy vs 1,000 policies (root)
//!   calico-bench conn-rate           new TCP connections/s through 1..1,000 rules (root)
//!   calico-bench bgp-receive         100,000 routes from one BIRD peer: calico-rs vs BIRD 2 (root)
//!   calico-bench bgp-mesh            999 iBGP peers, one /26 each: calico-rs vs BIRD 2 (root)
//!   calico-bench openstack-resync [local|etcd]  the driver's resync of 3,000 ports, 100 groups
//!   calico-bench openstack-latency   port create → ACTIVE through neutron-server (root)
//!   calico-bench openstack-resync-full  calico-resync of 3,000 ports through neutron-server (root)
//!   calico-bench openstack-dhcp      port bound → the VM's DHCP lease, 100 VMs on one host (root)
//!
//! Build in release mode first (`cargo build --release -p calicoctl -p calico-bench`).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use calico_api::selector::Selector;

mod bgp;
mod calc;
mod connrate;
mod dataplane;
mod ipam;
mod neutron;
mod openstack;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("selector") => bench_selector(),
        Some("apply") => {
            let backends: Vec<&str> = if args.len() > 1 {
                args[1..].iter().map(String::as_str).collect()
            } else {
                vec!["local", "etcd"]
            };
            for b in backends {
                bench_apply(b, 10_000)?;
            }
            Ok(())
        }
        Some("ipam") => {
            let backends: Vec<&str> = if args.len() > 1 {
                args[1..].iter().map(String::as_str).collect()
            } else {
                vec!["local", "etcd"]
            };
            ipam::run(&backends)
        }
        Some("ipam-child") => ipam::child(&args[1..]),
        Some("calc") => calc::run(),
        Some("latency") => dataplane::latency(&args[1..]),
        Some("latency-poll") => dataplane::poll(&args[1..]),
        Some("pps") => dataplane::pps(&args[1..]),
        Some("conn-rate") => connrate::run(&args[1..]),
        Some("bgp-receive") => bgp::receive::run(&args[1..]),
        Some("bgp-mesh") => bgp::mesh::run(&args[1..]),
        Some("bgp-receiver") => bgp::receiver::run(&args[1..]),
        Some("openstack-resync") => openstack::run(&args[1..]),
        Some("openstack-latency") => neutron::latency(&args[1..]),
        Some("openstack-resync-full") => neutron::resync_full(&args[1..]),
        Some("openstack-dhcp") => neutron::dhcp_latency(&args[1..]),
        _ => bail!("usage: calico-bench selector | apply [local|etcd] | ipam [local|etcd] | calc | latency [local|etcd] | pps | conn-rate | bgp-receive | bgp-mesh | openstack-resync [local|etcd] | openstack-latency | openstack-resync-full | openstack-dhcp"),
    }
}

fn bench_selector() -> Result<()> {
    let sel = Selector::parse(
        "app == 'web' && tier in {'frontend', 'backend'} && has(env) && version != 'v1' && !has(quarantine)",
    )?;
    let mut labels = BTreeMap::new();
    for (k, v) in [
        ("app", "web"),
        ("tier", "backend"),
        ("env", "prod"),
        ("version", "v2"),
        ("team", "blue"),
        ("region", "eu"),
        ("zone", "a"),
        ("projectcalico.org/namespace", "production"),
        ("projectcalico.org/orchestrator", "openstack"),
        ("owner", "ops"),
    ] {
        labels.insert(k.to_string(), v.to_string());
    }
    assert!(sel.matches(&labels), "the benchmark selector must match");
    let iterations = 5_000_000u64;
    // Warm up, then measure several rounds and report the best and median.
    for _ in 0..iterations / 10 {
        black_box(sel.matches(black_box(&labels)));
    }
    let mut rounds: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iterations {
                black_box(sel.matches(black_box(&labels)));
            }
            t.elapsed().as_nanos() as f64 / iterations as f64
        })
        .collect();
    rounds.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "selector: 5-term selector vs 10 labels (BTreeMap), {iterations} evaluations x 5 rounds"
    );
    println!(
        "selector: best {:.1} ns/eval, median {:.1} ns/eval",
        rounds[0], rounds[2]
    );
    Ok(())
}

/// 10,000 documents of the kinds a large cluster has many of.
fn write_documents(path: &Path, count: usize) -> Result<()> {
    let mut s = String::with_capacity(count * 300);
    for i in 0..count {
        match i % 4 {
            0 => s.push_str(&format!(
                "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: np-{i}\n  namespace: ns-{}\nspec:\n  order: {}\n  selector: app == 'app-{i}'\n  ingress:\n  - action: Allow\n    protocol: TCP\n    source:\n      selector: role == 'client-{i}'\n    destination:\n      ports: [80, 443]\n  egress:\n  - action: Allow\n---\n",
                i % 50,
                i % 1000
            )),
            1 => s.push_str(&format!(
                "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: gnp-{i}\nspec:\n  selector: tenant == 't-{i}'\n  ingress:\n  - action: Deny\n    source:\n      nets: [10.{}.{}.0/24]\n---\n",
                (i / 256) % 256,
                i % 256
            )),
            2 => s.push_str(&format!(
                "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: host{}-openstack-vm{i}-eth0\n  namespace: openstack\n  labels:\n    app: app-{i}\nspec:\n  orchestrator: openstack\n  node: host{}\n  workload: vm{i}\n  endpoint: eth0\n  interfaceName: tap{i:011x}\n  ipNetworks: [172.{}.{}.{}/32]\n---\n",
                i % 1000,
                i % 1000,
                16 + (i >> 16) % 16,
                (i >> 8) % 256,
                i % 256
            )),
            _ => s.push_str(&format!(
                "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata:\n  name: set-{i}\n  labels:\n    role: client-{i}\nspec:\n  nets: [192.168.{}.{}/32]\n---\n",
                (i / 256) % 256,
                i % 256
            )),
        }
    }
    std::fs::write(path, s)?;
    Ok(())
}

fn calicoctl() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let p = me.parent().context("exe dir")?.join("calicoctl");
    if !p.exists() {
        bail!(
            "{} not found: build it first (cargo build --release -p calicoctl)",
            p.display()
        );
    }
    Ok(p)
}

fn timed_apply(cfg: &Path, file: &Path) -> Result<Duration> {
    let t = Instant::now();
    let o = Command::new(calicoctl()?)
        .arg("apply")
        .arg("-f")
        .arg(file)
        .arg("-c")
        .arg(cfg)
        .output()?;
    let d = t.elapsed();
    if !o.status.success() {
        bail!(
            "calicoctl apply failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(d)
}

fn bench_apply(backend: &str, count: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("docs.yaml");
    write_documents(&file, count)?;
    let cfg = dir.path().join("calicoctl.cfg");
    let _etcd;
    match backend {
        "local" => std::fs::write(
            &cfg,
            format!("apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n  datastoreType: local\n  datastorePath: {}\n", dir.path().join("calico.db").display()),
        )?,
        "etcd" => {
            let etcd = calico_datastore::testing::EtcdServer::start();
            std::fs::write(
                &cfg,
                format!("apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n  datastoreType: etcdv3\n  etcdEndpoints: {}\n", etcd.endpoint()),
            )?;
            _etcd = etcd;
        }
        other => bail!("unknown backend {other:?}"),
    }
    let create = timed_apply(&cfg, &file)?;
    let update = timed_apply(&cfg, &file)?;
    println!(
        "apply/{backend}: {count} documents ({} KiB): first apply (creates) {:.2} s, second apply (updates) {:.2} s",
        std::fs::metadata(&file)?.len() / 1024,
        create.as_secs_f64(),
        update.as_secs_f64()
    );
    Ok(())
}
