//! Bringing a lab up and down: fabric, hosts with their agents, the
//! datastore (embedded file, or etcd inside the fabric namespace), and
//! workloads with echo servers. Every resource write goes through the real
//! `calicoctl`, run inside the fabric namespace so it reaches etcd there.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::netns::{self, del_ns, exec_ok, lab_namespaces, spawn};
use crate::procs::{self, Until};
use crate::state::{Datastore, LabState};
use crate::topology::{self, fabric_ns, Workload, FABRIC_GW};

/// The lab's own pool for workloads (benchmark range, never routed outside
/// the lab), carried over VXLAN.
pub const LAB_POOL_VXLAN: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: lab-vxlan-pool
spec:
  cidr: 198.19.0.0/16
  vxlanMode: Always
  natOutgoing: true
";

/// The same range routed natively: hosts learn each other's blocks by BGP.
pub const LAB_POOL_NATIVE: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: lab-pool
spec:
  cidr: 198.19.0.0/16
  ipipMode: Never
  vxlanMode: Never
  natOutgoing: true
";

/// How workloads on different hosts reach each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// Natively, with routes exchanged by BGP (and the ToR peer).
    Bgp,
    /// Over VXLAN (no BGP needed).
    Vxlan,
}

/// What `up` builds.
#[derive(Clone, Copy, Debug)]
pub struct LabOptions {
    pub hosts: usize,
    pub store: StoreKind,
    pub routing: Routing,
    /// The first N hosts reflect routes; the mesh is off (BGP only).
    pub route_reflectors: usize,
}

/// A sibling binary of this executable (calicoctl, calico-node, calico-probe).
pub fn sibling(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let p = me.parent().context("exe dir")?.join(name);
    if !p.exists() {
        bail!(
            "{} not found next to calico-lab: build the workspace first (cargo build --release)",
            p.display()
        );
    }
    Ok(p)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Local,
    Etcd,
}

pub fn say(msg: &str) {
    println!("\x1b[1m==>\x1b[0m {msg}");
}

/// Runs calicoctl (inside the fabric namespace) with `input` on stdin.
pub fn calicoctl(state: &LabState, args: &[&str], input: Option<&str>) -> Result<String> {
    let ctl = sibling("calicoctl")?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &fabric_ns()])
        .arg(&ctl)
        .args(args);
    cmd.env_remove("ETCD_ENDPOINTS")
        .env_remove("DATASTORE_TYPE")
        .env_remove("DATASTORE_PATH");
    cmd.envs(state.datastore_env());
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("cannot run calicoctl")?;
    if let Some(text) = input {
        child.stdin.take().unwrap().write_all(text.as_bytes())?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "calicoctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn start_etcd(dir: &Path) -> Result<Datastore> {
    let data_dir = dir.join("etcd");
    let endpoint = format!("http://{FABRIC_GW}:2379");
    let fabric = fabric_ns();
    let pid = spawn(
        &fabric,
        &[
            "etcd",
            "--name",
            "lab",
            "--data-dir",
            &data_dir.display().to_string(),
            "--listen-client-urls",
            &endpoint,
            "--advertise-client-urls",
            &endpoint,
            "--listen-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-cluster",
            "lab=http://127.0.0.1:2380",
        ],
        &[],
        &dir.join("etcd.log"),
    )
    .context("cannot start etcd (apt-get install etcd-server)")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !exec_ok(
        &fabric,
        &["etcdctl", "--endpoints", &endpoint, "endpoint", "health"],
    ) {
        if Instant::now() > deadline {
            let _ = procs::stop(&[pid], Until::Gone);
            bail!(
                "etcd did not become healthy; see {}",
                dir.join("etcd.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(Datastore::Etcd {
        endpoint,
        pid: Some(pid),
        data_dir,
    })
}

/// Creates the fabric, the datastore and the compute hosts, each running
/// calico-node, and applies the lab's pool; with BGP routing also the ToR
/// and its BGPPeer, and waits for every session.
pub fn up(dir: &Path, opts: &LabOptions) -> Result<LabState> {
    let (hosts, store) = (opts.hosts, opts.store);
    if LabState::load(dir)?.is_some() {
        bail!(
            "a lab is already up in {} (run `calico-lab down` first)",
            dir.display()
        );
    }
    let leftovers = lab_namespaces();
    if !leftovers.is_empty() {
        bail!(
            "namespaces from an earlier lab still exist ({}); run `calico-lab down`",
            leftovers.join(", ")
        );
    }
    std::fs::create_dir_all(dir)?;
    // A new lab starts from an empty datastore.
    for stale in ["calico.db", "calico.db-wal", "calico.db-shm"] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    let _ = std::fs::remove_dir_all(dir.join("etcd"));
    say(&format!(
        "creating the fabric (192.0.2.0/24) and {hosts} compute hosts"
    ));
    topology::create_fabric()?;
    let datastore = match store {
        StoreKind::Local => Datastore::Local {
            path: dir.join("calico.db"),
        },
        StoreKind::Etcd => {
            say("starting etcd inside the fabric namespace");
            start_etcd(dir)?
        }
    };
    let mut state = LabState {
        dir: dir.to_path_buf(),
        datastore,
        hosts: Vec::new(),
        workloads: Vec::new(),
        extra_pids: Vec::new(),
        openstack: None,
    };
    state.save()?;
    for i in 1..=hosts {
        let h = topology::create_host(&format!("host{i}"), i)?;
        state.hosts.push(h);
        state.save()?;
    }
    let bgp = opts.routing == Routing::Bgp;
    let pool = if bgp { LAB_POOL_NATIVE } else { LAB_POOL_VXLAN };
    calicoctl(&state, &["apply", "-f", "-"], Some(pool))?;
    if bgp {
        say(&format!(
            "starting the ToR router (BIRD) at {} and the article's BGPPeer",
            crate::fabric_bgp::TOR_IP
        ));
        crate::fabric_bgp::start_tor(&mut state)?;
        calicoctl(
            &state,
            &["apply", "-f", "-"],
            Some(crate::fabric_bgp::ARTICLE_PEER),
        )?;
    }
    for i in 0..state.hosts.len() {
        start_agent(&mut state, i)?;
    }
    state.save()?;
    say("waiting for every calico-node to be ready");
    for h in &state.hosts {
        wait_ready(h, dir)?;
    }
    if bgp {
        crate::fabric_bgp::configure_route_reflectors(&state, opts.route_reflectors)?;
        say("waiting for every BGP session to be Established");
        crate::fabric_bgp::wait_established(&state, Duration::from_secs(60))?;
    }
    Ok(state)
}

/// Starts calico-node inside host `i`'s namespace (logs appended to
/// `<dir>/<host>.log`) and records its PID.
pub fn start_agent(state: &mut LabState, i: usize) -> Result<()> {
    let node = sibling("calico-node")?;
    let dir = state.dir.clone();
    let env_ds = state.datastore_env();
    let h = &mut state.hosts[i];
    let state_dir = dir.join(&h.name);
    std::fs::create_dir_all(&state_dir)?;
    let mut env = vec![
        ("NODENAME".to_string(), h.name.clone()),
        ("IP".to_string(), format!("{}/24", h.ip)),
        (
            "CALICO_STATE_DIR".to_string(),
            state_dir.display().to_string(),
        ),
        ("FELIX_REPORTINGINTERVALSECS".to_string(), "5".to_string()),
        ("CALICO_RESYNC_INTERVAL_SECS".to_string(), "2".to_string()),
        (
            "CALICO_RUN_DIR".to_string(),
            crate::fabric_bgp::run_dir(&dir, &h.name)
                .display()
                .to_string(),
        ),
    ];
    env.extend(env_ds);
    let log = dir.join(format!("{}.log", h.name));
    let pid = crate::netns::spawn_appending(&h.ns, &[node.to_str().unwrap()], &env, &log)?;
    h.agent_pid = Some(pid);
    state.save()
}

/// Stops host `i`'s agent (by PID). The dataplane it programmed stays.
pub fn stop_agent(state: &mut LabState, i: usize) -> Result<()> {
    if let Some(pid) = state.hosts[i].agent_pid.take() {
        procs::stop(&[pid], Until::Exited)?;
    }
    state.save()
}

/// Stops (`false`) or restarts (`true`) the lab's etcd, keeping its data.
pub fn set_datastore_running(state: &mut LabState, running: bool) -> Result<()> {
    let dir = state.dir.clone();
    match &mut state.datastore {
        Datastore::Local { .. } => {
            bail!("the embedded datastore cannot be stopped; use --datastore etcd")
        }
        Datastore::Etcd { pid, .. } => {
            if let Some(p) = pid.take() {
                procs::stop(&[p], Until::Exited)?;
            }
            if running {
                let Datastore::Etcd { pid: new_pid, .. } = start_etcd(&dir)? else {
                    unreachable!()
                };
                *pid = new_pid;
            }
        }
    }
    state.save()
}

/// Starts an echo server in the fabric namespace (an address outside every
/// pool: what NAT-outgoing is for); its log shows the sources it saw.
pub fn serve_external(state: &mut LabState, port: u16) -> Result<PathBuf> {
    let probe = sibling("calico-probe")?;
    let log = state.dir.join(format!("external-{port}.log"));
    let pid = spawn(
        &fabric_ns(),
        &[probe.to_str().unwrap(), "serve", "--tcp", &port.to_string()],
        &[],
        &log,
    )?;
    state.extra_pids.push(pid);
    state.save()?;
    Ok(log)
}

/// Polls the agent's /readiness from inside its namespace.
pub fn wait_ready(h: &topology::Host, dir: &Path) -> Result<()> {
    let probe = sibling("calico-lab")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !exec_ok(
        &h.ns,
        &[
            probe.to_str().unwrap(),
            "internal-http-ok",
            "127.0.0.1:9099",
            "/readiness",
        ],
    ) {
        if Instant::now() > deadline {
            bail!(
                "calico-node on {} is not ready after 30 s; see {}",
                h.name,
                dir.join(format!("{}.log", h.name)).display()
            );
        }
        if let Some(pid) = h.agent_pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                bail!(
                    "calico-node on {} exited; see {}",
                    h.name,
                    dir.join(format!("{}.log", h.name)).display()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Adds a workload: address from IPAM (the host's block of the lab pool),
/// namespace + tap veth, echo servers on TCP 80, 81 and 5432, and its
/// WorkloadEndpoint (written with calicoctl, as an orchestrator would).
pub fn add_workload(
    state: &mut LabState,
    host: &str,
    namespace: &str,
    name: &str,
    labels: &[(&str, &str)],
) -> Result<Workload> {
    add_workload_at(state, host, namespace, name, labels, None)
}

/// `add_workload` with an optional fixed address, as when Neutron rather
/// than Calico IPAM assigns it: no IPAM block covers it, so other hosts
/// reach it through a per-address route.
pub fn add_workload_at(
    state: &mut LabState,
    host: &str,
    namespace: &str,
    name: &str,
    labels: &[(&str, &str)],
    fixed: Option<Ipv4Addr>,
) -> Result<Workload> {
    let h = state
        .host(host)
        .ok_or_else(|| anyhow!("no host {host} in the lab"))?
        .clone();
    let me = sibling("calico-lab")?;
    let mut args = vec![
        me.to_str().unwrap().to_string(),
        "internal-assign".into(),
        "--host".into(),
        host.into(),
        "--handle".into(),
        format!("lab.{namespace}.{name}"),
    ];
    for (k, v) in state.datastore_env() {
        args.push("--env".into());
        args.push(format!("{k}={v}"));
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let ip: Ipv4Addr = match fixed {
        Some(ip) => ip,
        None => netns::exec(&fabric_ns(), &argv)?
            .trim()
            .parse()
            .context("IPAM returned no IPv4 address")?,
    };
    let mut w = topology::create_workload(&h, namespace, name, ip)?;
    w.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
    let probe = sibling("calico-probe")?;
    let server = spawn(
        &w.ns,
        &[probe.to_str().unwrap(), "serve", "--tcp", "80,81,5432"],
        &[],
        &state.dir.join(format!("w-{namespace}-{name}.log")),
    )?;
    w.server_pid = Some(server);
    let labels_yaml: String = w
        .labels
        .iter()
        .map(|(k, v)| format!("    {k}: {v}\n"))
        .collect();
    let wep = format!(
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: {}\n  namespace: {namespace}\n  labels:\n{labels_yaml}spec:\n  orchestrator: openstack\n  node: {host}\n  workload: {name}\n  endpoint: {}\n  interfaceName: {}\n  ipNetworks:\n  - {ip}/32\n",
        calico_api::endpoint::workload_endpoint_name(host, "openstack", name, &w.iface),
        w.iface,
        w.iface
    );
    calicoctl(state, &["apply", "-f", "-"], Some(&wep))?;
    state.workloads.push(w.clone());
    state.save()?;
    Ok(w)
}

/// Stops every process the lab started (by PID, all at once, waiting until
/// none is left, not even as a zombie) and removes every namespace it
/// created, then its directory's state file.
pub fn down(dir: &Path) -> Result<()> {
    let mut stopped = Ok(());
    if let Some(state) = LabState::load(dir)? {
        let mut pids: Vec<u32> = state
            .workloads
            .iter()
            .flat_map(|w| w.server_pid.into_iter().chain(w.client_pid))
            .collect();
        pids.extend(state.hosts.iter().filter_map(|h| h.agent_pid));
        if let Datastore::Etcd { pid: Some(pid), .. } = &state.datastore {
            pids.push(*pid);
        }
        pids.extend(&state.extra_pids);
        if let Some(ctl) = &state.openstack {
            pids.extend(ctl.pids());
        }
        stopped = procs::stop(&pids, Until::Gone);
        if stopped.is_ok() {
            let _ = std::fs::remove_file(LabState::file(dir));
        }
    }
    for ns in lab_namespaces() {
        del_ns(&ns);
    }
    stopped
}
