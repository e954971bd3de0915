//! The article's demo: two compute hosts, the article's resources applied
//! verbatim, workloads in the production, staging and frontend namespaces,
//! and a reachability matrix that shows, for each source, destination and
//! port, what the kernel did and which policy the reference evaluator says
//! decided it. Then the ordering trap is fixed and the matrix shown again.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use calico_api::decode::decode_documents;
use calico_api::AnyResource;
use calico_calc::reference::{evaluate, Packet, World};

use crate::lab::{self, calicoctl, say, sibling, StoreKind};
use crate::netns;
use crate::state::LabState;
use crate::topology::Workload;

/// The article's documents, as in tests/fixtures/article.
pub const ARTICLE: [&str; 7] = [
    include_str!("../../../tests/fixtures/article/01-bgp-peer.yaml"),
    include_str!("../../../tests/fixtures/article/02-ipip-pool.yaml"),
    include_str!("../../../tests/fixtures/article/03-web-db-policy.yaml"),
    include_str!("../../../tests/fixtures/article/04-deny-all-default.yaml"),
    include_str!("../../../tests/fixtures/article/05-default-deny-all.yaml"),
    include_str!("../../../tests/fixtures/article/06-frontend-allow-http.yaml"),
    include_str!("../../../tests/fixtures/article/07-default-ipv4-pool.yaml"),
];

/// The fix for the ordering trap: a default deny without the explicit Deny
/// rule (end-of-tier deny), so earlier-named namespaced policies still run.
pub const FIX: &str = "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: default-deny-all
spec:
  selector: all()
  types:
  - Ingress
  - Egress
  egress:
  - action: Allow
";

const PORTS: [u16; 2] = [80, 81];

/// Aligned table (same layout as calicoctl's).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut w = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count() + 3);
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.extend(std::iter::repeat_n(' ', w[i] - c.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Allocates a workload address for `host` from IPAM (run inside the
/// fabric namespace so it reaches the lab's etcd).
pub fn assign_address(host: &str, handle: &str, env: &[String]) -> Result<Ipv4Addr> {
    for e in env {
        if let Some((k, v)) = e.split_once('=') {
            std::env::set_var(k, v);
        }
    }
    let cfg = calico_client::load_client_config(None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let client = calico_client::Client::connect(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    calico_ipam_assign(client, host, handle)
}

/// One IPv4 address from the lab's pool, in `host`'s block.
fn calico_ipam_assign(client: calico_client::Client, host: &str, handle: &str) -> Result<Ipv4Addr> {
    use calico_ipam::assign::AutoAssignArgs;
    let ipam = calico_ipam::Ipam::new(client.store().clone());
    let args = AutoAssignArgs {
        num4: 1,
        handle_id: Some(handle.to_string()),
        attrs: [
            ("node".to_string(), host.to_string()),
            ("type".to_string(), "lab-workload".to_string()),
        ]
        .into(),
        hostname: host.to_string(),
        ipv4_pools: vec!["198.19.0.0/16".parse().unwrap()],
        ..Default::default()
    };
    let res = ipam
        .auto_assign(&args)
        .map_err(|e| anyhow::anyhow!("IPAM: {e}"))?;
    match res.v4.addrs().first() {
        Some(IpAddr::V4(a)) => Ok(*a),
        _ => bail!("IPAM assigned no address: {}", res.v4.msgs.join("; ")),
    }
}

/// The world the reference evaluator judges: the resources applied so far
/// plus the workloads' endpoints.
fn world(resources: &[AnyResource], workloads: &[Workload]) -> Result<World> {
    let mut world = World::default();
    for r in resources {
        world.add(r.clone());
    }
    for w in workloads {
        let wep = format!(
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: {}\n  namespace: {}\n  labels: {}\nspec:\n  node: {}\n  orchestrator: openstack\n  interfaceName: {}\n  ipNetworks: [{}/32]\n",
            w.name,
            w.namespace,
            serde_json::to_string(&w.labels)?,
            w.host,
            w.iface,
            w.ip
        );
        for d in decode_documents(&wep).map_err(|e| anyhow::anyhow!("{e:?}"))? {
            world.add(d.resource);
        }
    }
    Ok(world)
}

/// Probes every (source, destination, port) from inside the source's
/// namespace, a few at a time.
fn probe_all(workloads: &[Workload], ports: &[u16]) -> Result<Vec<(usize, usize, u16, bool)>> {
    let probe = sibling("calico-probe")?;
    let mut jobs = Vec::new();
    for (i, _) in workloads.iter().enumerate() {
        for (j, _) in workloads.iter().enumerate() {
            if i != j {
                for &p in ports {
                    jobs.push((i, j, p));
                }
            }
        }
    }
    let (tx, rx) = mpsc::channel();
    for chunk in jobs.chunks(8) {
        let mut handles = Vec::new();
        for &(i, j, p) in chunk {
            let (src, dst) = (workloads[i].clone(), workloads[j].clone());
            let probe = probe.clone();
            let tx = tx.clone();
            handles.push(std::thread::spawn(move || {
                let ok = netns::exec_ok(
                    &src.ns,
                    &[
                        probe.to_str().unwrap(),
                        "tcp",
                        &format!("{}:{p}", dst.ip),
                        "--timeout-ms",
                        "400",
                    ],
                );
                let _ = tx.send((i, j, p, ok));
            }));
        }
        for h in handles {
            let _ = h.join();
        }
    }
    drop(tx);
    let mut out: Vec<_> = rx.into_iter().collect();
    out.sort();
    Ok(out)
}

/// Prints the reachability grid: one row per source, one column per
/// destination, a mark per port (✔ reached, ✘ blocked) with a letter naming
/// the policy that decided, explained below the grid. Returns how many probes
/// disagreed with the reference evaluator (marked `!`).
fn matrix(title: &str, resources: &[AnyResource], workloads: &[Workload]) -> Result<usize> {
    let world = world(resources, workloads)?;
    matrix_in(title, &world, workloads, &PORTS)
}

/// `matrix` over a given world (e.g. the resources read back from the
/// datastore) and ports.
pub fn matrix_in(
    title: &str,
    world: &World,
    workloads: &[Workload],
    ports: &[u16],
) -> Result<usize> {
    let results = probe_all(workloads, ports)?;
    let mut legend: Vec<String> = Vec::new();
    let mut cells = vec![vec![String::new(); workloads.len()]; workloads.len()];
    let mut mismatches = 0;
    for (i, j, port, ok) in results {
        let (s, d) = (&workloads[i], &workloads[j]);
        let pkt = Packet {
            src: IpAddr::V4(s.ip),
            dst: IpAddr::V4(d.ip),
            protocol: 6,
            src_port: 40000,
            dst_port: port,
            icmp_type: None,
            icmp_code: None,
        };
        let v = evaluate(world, &pkt);
        let by = match (&v.egress, &v.ingress) {
            (Some(e), _) if !e.allowed => format!("egress: {}", e.by),
            (_, Some(i)) => format!("ingress: {}", i.by),
            (Some(e), None) => format!("egress: {}", e.by),
            (None, None) => "unpoliced".to_string(),
        };
        let idx = legend.iter().position(|l| *l == by).unwrap_or_else(|| {
            legend.push(by.clone());
            legend.len() - 1
        });
        let letter = (b'a' + (idx % 26) as u8) as char;
        let mut cell = format!("{port}{}{letter}", if ok { "✔" } else { "✘" });
        if ok != v.allowed {
            mismatches += 1;
            cell.push('!');
        }
        let c = &mut cells[i][j];
        if !c.is_empty() {
            c.push(' ');
        }
        c.push_str(&cell);
    }
    say(title);
    let mut rows = vec![std::iter::once("FROM \\ TO".to_string())
        .chain(workloads.iter().map(Workload::id))
        .collect::<Vec<_>>()];
    for (i, w) in workloads.iter().enumerate() {
        let mut row = vec![w.id()];
        for (j, c) in cells[i].iter().enumerate() {
            row.push(if i == j { "-".to_string() } else { c.clone() });
        }
        rows.push(row);
    }
    print!("{}", table(&rows));
    println!("decided by (reference evaluator; the marks are what the kernel did):");
    for (k, l) in legend.iter().enumerate() {
        println!("  {}  {l}", (b'a' + (k % 26) as u8) as char);
    }
    if mismatches > 0 {
        println!("  !  the kernel disagreed with the reference evaluator");
    }
    Ok(mismatches)
}

/// Shows the dataplane conditions an agent reported (e.g. IP-in-IP pools on
/// a kernel without the ipip device).
/// The Node annotation where calico-node puts the conditions an operator
/// has to act on.
const CONDITIONS_ANNOTATION: &str = "calico-rs/dataplane-conditions";

/// Shows the agents' conditions as an operator finds them: on each Node
/// (`calicoctl get node <host> -o yaml`). They are written just after the
/// first apply, so wait a moment for them.
fn show_conditions(state: &LabState) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let found = node_conditions(state);
        if !found.is_empty() || Instant::now() > deadline {
            for (host, c) in &found {
                println!("  {host}: {c}");
            }
            if found.is_empty() {
                println!("  (none)");
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (host, condition) from every Node's conditions annotation.
fn node_conditions(state: &LabState) -> Vec<(String, String)> {
    let Ok(json) = calicoctl(state, &["get", "nodes", "-o", "json"], None) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&json) else {
        return Vec::new();
    };
    let items = v["items"].as_array().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for n in items {
        let host = n["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(text) = n["metadata"]["annotations"][CONDITIONS_ANNOTATION].as_str() {
            out.extend(text.lines().map(|c| (host.clone(), c.to_string())));
        }
    }
    out
}

/// Every host's BGP sessions, as an operator checks them: `calicoctl node
/// status` (from the datastore, any machine) and `birdc show protocols`
/// against the agent's BIRD-compatible control socket.
fn show_bgp(state: &LabState) -> Result<()> {
    for h in &state.hosts {
        say(&format!("calicoctl node status --node {}", h.name));
        print!(
            "{}",
            calicoctl(state, &["node", "status", "--node", &h.name], None)?
        );
    }
    let first = &state.hosts[0];
    say(&format!(
        "calicoctl node routes --node {} (what it announced to and learned from each peer)",
        first.name
    ));
    std::thread::sleep(Duration::from_secs(1));
    print!(
        "{}",
        calicoctl(state, &["node", "routes", "--node", &first.name], None).unwrap_or_default()
    );
    let sock = crate::fabric_bgp::run_dir(&state.dir, &first.name).join("bird.ctl");
    say(&format!("birdc -s {} show protocols", sock.display()));
    print!(
        "{}",
        crate::fabric_bgp::birdc(&sock, &["show", "protocols"])?
    );
    let tor = crate::fabric_bgp::tor_socket(&state.dir);
    say("the ToR (real BIRD): birdc show protocols");
    print!(
        "{}",
        crate::fabric_bgp::birdc(&tor, &["show", "protocols"])?
    );
    Ok(())
}

/// Waits until every host routes to every workload (local /32 or remote).
pub fn wait_programmed(state: &LabState) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut missing = Vec::new();
        for h in &state.hosts {
            let routes = netns::exec(&h.ns, &["ip", "route"]).unwrap_or_default();
            for w in &state.workloads {
                if !routes
                    .lines()
                    .any(|l| l.starts_with(&format!("{} ", w.ip)) || covered(l, w.ip))
                {
                    missing.push(format!("{} on {}", w.ip, h.name));
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("routes still missing after 30 s: {}", missing.join(", "));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// True if a route line's destination prefix (not default) contains `ip`.
fn covered(line: &str, ip: Ipv4Addr) -> bool {
    let dst = line.split_whitespace().next().unwrap_or("");
    let dst = if dst == "blackhole" { "" } else { dst };
    dst.parse::<ipnet::Ipv4Net>()
        .map(|n| n.prefix_len() > 0 && n.contains(&ip))
        .unwrap_or(false)
}

pub fn run(dir: &Path, store: StoreKind, route_reflectors: usize, keep: bool) -> Result<()> {
    let result = run_inner(dir, store, route_reflectors);
    if !keep || result.is_err() {
        say("tearing the lab down");
        lab::down(dir)?;
    }
    result
}

fn run_inner(dir: &Path, store: StoreKind, route_reflectors: usize) -> Result<()> {
    let opts = lab::LabOptions {
        hosts: if route_reflectors > 0 {
            route_reflectors + 2
        } else {
            2
        },
        store,
        routing: lab::Routing::Bgp,
        route_reflectors,
    };
    let mut state = lab::up(dir, &opts)?;
    show_bgp(&state)?;
    say("applying the article's resources verbatim with calicoctl");
    let all = ARTICLE.join("---\n");
    print!("{}", calicoctl(&state, &["apply", "-f", "-"], Some(&all))?);
    print!(
        "{}",
        calicoctl(&state, &["get", "ippools", "-o", "wide"], None)?
    );
    let mut resources: Vec<AnyResource> = decode_documents(&all)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .into_iter()
        .map(|d| d.resource)
        .collect();

    say("starting workloads (tap devices as Nova names them; addresses from the lab's pool, routed natively by BGP)");
    // With route reflectors, the workloads live on two clients, whose
    // routes reach each other only through the reflectors.
    let first = format!("host{}", route_reflectors + 1);
    let second = format!("host{}", route_reflectors + 2);
    for (host, ns, name, app) in [
        (&first, "production", "web", "web"),
        (&second, "production", "database", "database"),
        (&first, "staging", "web", "web"),
        (&second, "staging", "database", "database"),
        (&second, "frontend", "frontend", "frontend"),
    ] {
        let w = lab::add_workload(&mut state, host, ns, name, &[("app", app)])?;
        println!("  {:<22} {:<6} {:<14} {}", w.id(), w.host, w.ip, w.iface);
    }
    wait_programmed(&state).context("the agents did not program the workloads")?;
    say("the ToR's kernel learned every host's block by BGP (ip route show proto bird in the fabric)");
    print!("{}", crate::fabric_bgp::tor_routes());
    say(&format!("conditions the agents report on their Nodes (annotation {CONDITIONS_ANNOTATION}; a kernel without IP-in-IP cannot encapsulate the article's pools; the lab's own pool is routed natively)"));
    show_conditions(&state);
    print!(
        "{}",
        calicoctl(
            &state,
            &["get", "workloadendpoints", "-A", "-o", "wide"],
            None
        )?
    );

    let m1 = matrix(
        "reachability with the article's policies as published (GlobalNetworkPolicy default-deny-all has no order and an explicit Deny, so it sorts before the namespaced policies and denies their traffic too)",
        &resources,
        &state.workloads,
    )?;
    say("fixing the trap: default-deny-all without the explicit Deny rule (deny at the end of the tier instead)");
    print!("{}", calicoctl(&state, &["apply", "-f", "-"], Some(FIX))?);
    resources.retain(|r| r.name() != "default-deny-all");
    resources.extend(
        decode_documents(FIX)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .into_iter()
            .map(|d| d.resource),
    );
    // Give the agents a moment to apply the change (they react within ms).
    std::thread::sleep(Duration::from_millis(500));
    let m2 = matrix("reachability after the fix", &resources, &state.workloads)?;
    if m1 + m2 > 0 {
        bail!(
            "{} probe(s) disagreed with the reference evaluator",
            m1 + m2
        );
    }
    say("every probe agreed with the reference evaluator");
    Ok(())
}
