//! calico-lab: simulated compute hosts (network namespaces) each running
//! calico-node, workloads plugged in by tap veths as Nova plugs VMs, and the
//! article's demo with a reachability matrix.
//!
//!   calico-lab demo [--datastore local|etcd]   build, show, tear down
//!   calico-lab up [--hosts N] [--datastore ..]  keep a lab running
//!   calico-lab status | down

mod demo;
mod fabric_bgp;
mod lab;
mod netns;
mod openstack;
mod procs;
mod state;
mod topology;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::lab::StoreKind;
use crate::state::LabState;

#[derive(Parser)]
#[command(
    name = "calico-lab",
    version,
    about = "Simulated Calico compute hosts in network namespaces"
)]
struct Cli {
    /// Where the lab keeps its state, logs and embedded datastore.
    #[arg(long, global = true, default_value = "/tmp/calico-lab")]
    dir: PathBuf,
    /// Prefix of the lab's namespace names (several labs can coexist).
    #[arg(long, global = true, env = "CALICO_LAB_PREFIX", default_value = netns::DEFAULT_PREFIX)]
    prefix: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, ValueEnum, Debug)]
enum Store {
    Local,
    Etcd,
}

impl From<Store> for StoreKind {
    fn from(s: Store) -> Self {
        match s {
            Store::Local => StoreKind::Local,
            Store::Etcd => StoreKind::Etcd,
        }
    }
}

#[derive(Clone, Copy, ValueEnum, Debug)]
enum RoutingArg {
    /// Native routing, routes exchanged by BGP (with a BIRD ToR).
    Bgp,
    /// VXLAN between hosts.
    Vxlan,
}

impl From<RoutingArg> for lab::Routing {
    fn from(r: RoutingArg) -> Self {
        match r {
            RoutingArg::Bgp => lab::Routing::Bgp,
            RoutingArg::Vxlan => lab::Routing::Vxlan,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Apply the article's resources, show who can reach whom, tear down.
    Demo {
        #[arg(long, value_enum, default_value = "local")]
        datastore: Store,
        /// Make the first N hosts BGP route reflectors (mesh off); the demo
        /// then runs N+2 hosts.
        #[arg(long, default_value_t = 0)]
        route_reflectors: usize,
        /// Leave the lab running afterwards (remove it with `down`).
        #[arg(long)]
        keep: bool,
    },
    /// The article's OpenStack steps: neutron-server with the calico
    /// driver, a network, security groups and VMs on two hosts; shows the
    /// agents, the ports and the reachability matrix, then tears down.
    Openstack {
        #[arg(long, value_enum, default_value = "local")]
        datastore: Store,
        /// neutron-server's message bus (the driver needs none).
        #[arg(long, value_enum, default_value = "none")]
        message_bus: openstack::controller::MessageBus,
        /// Leave the lab and controller running afterwards.
        #[arg(long)]
        keep: bool,
    },
    /// Create a lab with an OpenStack controller and leave it running.
    OpenstackUp {
        #[arg(long, value_enum, default_value = "local")]
        datastore: Store,
        /// neutron-server's message bus (the driver needs none).
        #[arg(long, value_enum, default_value = "none")]
        message_bus: openstack::controller::MessageBus,
    },
    /// Run the `openstack` CLI against the lab's neutron-server.
    Os {
        /// The API port of the neutron-server to ask.
        #[arg(long, default_value_t = openstack::controller::API_PORT)]
        api_port: u16,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Boot a VM (as Nova) for a port bound to a lab host.
    Boot {
        name: String,
        #[arg(long)]
        port: String,
        /// The port's host, address and gateway, when the caller knows
        /// them (skips asking Neutron; benchmarks).
        #[arg(long, requires_all = ["ip", "gateway"])]
        host: Option<String>,
        #[arg(long)]
        ip: Option<std::net::Ipv4Addr>,
        #[arg(long)]
        gateway: Option<String>,
    },
    /// Delete a VM booted with `boot`.
    DeleteVm { name: String },
    /// Start or stop a (further) neutron-server on PORT over the same data.
    NeutronServer {
        #[arg(value_parser = ["start", "stop"])]
        action: String,
        #[arg(long, default_value_t = openstack::controller::API_PORT)]
        port: u16,
    },
    /// Create a lab and leave it running.
    Up {
        #[arg(long, default_value_t = 2)]
        hosts: usize,
        #[arg(long, value_enum, default_value = "local")]
        datastore: Store,
        /// How workloads on different hosts reach each other.
        #[arg(long, value_enum, default_value = "bgp")]
        routing: RoutingArg,
        /// Make the first N hosts BGP route reflectors (mesh off).
        #[arg(long, default_value_t = 0)]
        route_reflectors: usize,
    },
    /// Add a workload to a running lab.
    AddWorkload {
        #[arg(long)]
        host: String,
        #[arg(long, default_value = "default")]
        namespace: String,
        name: String,
        /// Labels as key=value.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// A fixed address instead of one from IPAM (as Neutron assigns them).
        #[arg(long)]
        ip: Option<std::net::Ipv4Addr>,
    },
    /// Show hosts, workloads, agents and routes of the running lab.
    Status,
    /// Stop and start a host's calico-node (the dataplane stays programmed).
    RestartAgent { host: String },
    /// Stop a host's calico-node.
    StopAgent { host: String },
    /// Start a host's calico-node again.
    StartAgent { host: String },
    /// Stop or start the lab's etcd (its data is kept).
    Datastore {
        #[arg(value_parser = ["stop", "start"])]
        action: String,
    },
    /// Start an echo server on the fabric (outside every pool); prints its log file.
    ServeExternal {
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// Run a command inside a workload's (namespace/name) or host's namespace.
    Exec {
        target: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<String>,
    },
    /// Stop the lab's processes and remove its namespaces.
    Down,
    /// (internal) allocate a workload address with IPAM, print it.
    #[command(hide = true)]
    InternalAssign {
        #[arg(long)]
        host: String,
        #[arg(long)]
        handle: String,
        #[arg(long = "env")]
        env: Vec<String>,
    },
    /// (internal) exit 0 if GET http://ADDR PATH answers 200.
    #[command(hide = true)]
    InternalHttpOk { addr: String, path: String },
    /// (internal) print the body of GET http://ADDR PATH (fails unless 200).
    #[command(hide = true)]
    InternalHttpGet { addr: String, path: String },
    /// (internal) the stand-in for nova-api-metadata, listening on LISTEN.
    #[command(hide = true)]
    InternalMetadataServer { listen: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    netns::set_prefix(&cli.prefix);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("calico-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Network namespaces, veths and nftables need root; say so up front
/// rather than failing halfway through with an `ip` error.
fn require_root(cmd: &Cmd) -> Result<()> {
    let internal = matches!(
        cmd,
        Cmd::InternalAssign { .. }
            | Cmd::InternalHttpOk { .. }
            | Cmd::InternalHttpGet { .. }
            | Cmd::Status
    );
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !internal && !root {
        bail!("calico-lab creates network namespaces and must run as root (try sudo)");
    }
    Ok(())
}

fn run(cli: Cli) -> Result<ExitCode> {
    require_root(&cli.command)?;
    match cli.command {
        Cmd::Demo {
            datastore,
            route_reflectors,
            keep,
        } => {
            demo::run(&cli.dir, datastore.into(), route_reflectors, keep).map(|_| ExitCode::SUCCESS)
        }
        Cmd::Openstack {
            datastore,
            message_bus,
            keep,
        } => {
            openstack::run(&cli.dir, datastore.into(), message_bus, keep).map(|_| ExitCode::SUCCESS)
        }
        Cmd::OpenstackUp {
            datastore,
            message_bus,
        } => {
            let state =
                openstack::up(&cli.dir, datastore.into(), message_bus).inspect_err(|_| {
                    let _ = lab::down(&cli.dir);
                })?;
            print_status(&state);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Os { api_port, args } => {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            print!(
                "{}",
                openstack::controller::openstack_at(&cli.dir, api_port, &refs)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Boot {
            name,
            port,
            host,
            ip,
            gateway,
        } => {
            let mut state = load(&cli.dir)?;
            let vm = match (host, ip, gateway) {
                (Some(h), Some(ip), Some(gw)) => {
                    openstack::nova::plug_vm(&mut state, &name, &port, &h, ip, &gw)?
                }
                _ => openstack::nova::boot(&mut state, &name, &port)?,
            };
            println!("{} on {}: {} via {}", vm.id(), vm.host, vm.ip, vm.iface);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::DeleteVm { name } => {
            let mut state = load(&cli.dir)?;
            openstack::nova::destroy(&mut state, &name)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::NeutronServer { action, port } => {
            let mut state = load(&cli.dir)?;
            if action == "start" {
                openstack::controller::start_server(&mut state, port)?;
            } else {
                openstack::controller::stop_server(&mut state, port)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Up {
            hosts,
            datastore,
            routing,
            route_reflectors,
        } => {
            let opts = lab::LabOptions {
                hosts,
                store: datastore.into(),
                routing: routing.into(),
                route_reflectors,
            };
            let state = lab::up(&cli.dir, &opts).inspect_err(|_| {
                let _ = lab::down(&cli.dir);
            })?;
            print_status(&state);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::AddWorkload {
            host,
            namespace,
            name,
            labels,
            ip,
        } => {
            let Some(mut state) = LabState::load(&cli.dir)? else {
                bail!("no lab is up in {}", cli.dir.display())
            };
            let labels: Vec<(String, String)> = labels
                .iter()
                .map(|l| {
                    l.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .ok_or_else(|| anyhow::anyhow!("label {l:?} is not key=value"))
                })
                .collect::<Result<_>>()?;
            let refs: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let w = lab::add_workload_at(&mut state, &host, &namespace, &name, &refs, ip)?;
            println!("{} on {}: {} via {}", w.id(), w.host, w.ip, w.iface);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status => {
            match LabState::load(&cli.dir)? {
                Some(s) => print_status(&s),
                None => println!("no lab is up in {}", cli.dir.display()),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::RestartAgent { host } => with_host(&cli.dir, &host, |s, i| {
            lab::stop_agent(s, i)?;
            lab::start_agent(s, i)?;
            lab::wait_ready(&s.hosts[i], &s.dir)
        }),
        Cmd::StopAgent { host } => with_host(&cli.dir, &host, lab::stop_agent),
        Cmd::StartAgent { host } => with_host(&cli.dir, &host, |s, i| {
            lab::start_agent(s, i)?;
            lab::wait_ready(&s.hosts[i], &s.dir)
        }),
        Cmd::Datastore { action } => {
            let mut state = load(&cli.dir)?;
            lab::set_datastore_running(&mut state, action == "start")?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::ServeExternal { port } => {
            let mut state = load(&cli.dir)?;
            let log = lab::serve_external(&mut state, port)?;
            println!("{}", log.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Exec { target, cmd } => {
            let state = load(&cli.dir)?;
            let ns = state
                .workloads
                .iter()
                .find(|w| w.id() == target)
                .map(|w| w.ns.clone())
                .or_else(|| state.host(&target).map(|h| h.ns.clone()))
                .ok_or_else(|| anyhow::anyhow!("no workload or host {target:?} in the lab"))?;
            let status = std::process::Command::new("ip")
                .args(["netns", "exec", &ns])
                .args(&cmd)
                .status()?;
            Ok(ExitCode::from(status.code().unwrap_or(1) as u8))
        }
        Cmd::Down => {
            lab::down(&cli.dir)?;
            println!("lab removed");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::InternalAssign { host, handle, env } => {
            let ip = demo::assign_address(&host, &handle, &env)?;
            println!("{ip}");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::InternalHttpGet { addr, path } => {
            print!("{}", openstack::services::http_get(&addr, &path)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::InternalMetadataServer { listen } => {
            openstack::services::serve_metadata(&cli.dir, &listen)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::InternalHttpOk { addr, path } => Ok(if http_ok(&addr, &path) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
    }
}

fn load(dir: &std::path::Path) -> Result<LabState> {
    LabState::load(dir)?.ok_or_else(|| anyhow::anyhow!("no lab is up in {}", dir.display()))
}

fn with_host(
    dir: &std::path::Path,
    host: &str,
    f: impl FnOnce(&mut LabState, usize) -> Result<()>,
) -> Result<ExitCode> {
    let mut state = load(dir)?;
    let i = state
        .hosts
        .iter()
        .position(|h| h.name == host)
        .ok_or_else(|| anyhow::anyhow!("no host {host} in the lab"))?;
    f(&mut state, i)?;
    Ok(ExitCode::SUCCESS)
}

fn http_ok(addr: &str, path: &str) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    if write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    // HTTP/1.0 from Python's wsgiref (Keystone's server), 1.1 elsewhere.
    buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200")
}

/// `2/3 Established` from what the host's agent publishes, or `-`.
fn bgp_summary(s: &LabState, host: &str) -> String {
    let out = lab::calicoctl(s, &["node", "status", "--node", host, "-o", "json"], None)
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    match v["peers"].as_array() {
        Some(peers) => {
            let up = peers.iter().filter(|p| p["state"] == "Established").count();
            format!("{up}/{} Established", peers.len())
        }
        None => "-".to_string(),
    }
}

fn print_status(s: &LabState) {
    println!("lab in {} ({:?})", s.dir.display(), s.datastore);
    let mut rows = vec![vec![
        "HOST".to_string(),
        "ADDRESS".into(),
        "AGENT PID".into(),
        "NAMESPACE".into(),
        "BGP".into(),
    ]];
    for h in &s.hosts {
        rows.push(vec![
            h.name.clone(),
            h.ip.to_string(),
            h.agent_pid.map(|p| p.to_string()).unwrap_or_default(),
            h.ns.clone(),
            bgp_summary(s, &h.name),
        ]);
    }
    print!("{}", demo::table(&rows));
    if !s.workloads.is_empty() {
        let mut rows = vec![vec![
            "WORKLOAD".to_string(),
            "HOST".into(),
            "ADDRESS".into(),
            "TAP".into(),
            "LABELS".into(),
        ]];
        for w in &s.workloads {
            let labels = w
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            rows.push(vec![
                w.id(),
                w.host.clone(),
                w.ip.to_string(),
                w.iface.clone(),
                labels,
            ]);
        }
        println!();
        print!("{}", demo::table(&rows));
    }
}
