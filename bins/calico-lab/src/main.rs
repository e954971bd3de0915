//! calico-lab: simulated compute hosts (network namespaces) each running
//! calico-node, workloads plugged in by tap veths as Nova plugs VMs, and the
//! article's demo with a reachability matrix.
//!
//!   calico-lab demo [--datastore local|etcd]   build, show, tear down
//!   calico-lab up [--hosts N] [--datastore ..]  keep a lab running
//!   calico-lab status | down

mod demo;
mod lab;
mod netns;
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
#[command(name = "calico-lab", version, about = "Simulated Calico compute hosts in network namespaces")]
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

#[derive(Subcommand)]
enum Cmd {
    /// Apply the article's resources, show who can reach whom, tear down.
    Demo {
        #[arg(long, value_enum, default_value = "local")]
        datastore: Store,
        /// Leave the lab running afterwards (remove it with `down`).
        #[arg(long)]
        keep: bool,
    },
    /// Create a lab and leave it running.
    Up {
        #[arg(long, default_value_t = 2)]
        hosts: usize,
        #[arg(long, value_enum, default_value = "local")]
        datastore: Store,
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
    },
    /// Show hosts, workloads, agents and routes of the running lab.
    Status,
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

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Cmd::Demo { datastore, keep } => demo::run(&cli.dir, datastore.into(), keep).map(|_| ExitCode::SUCCESS),
        Cmd::Up { hosts, datastore } => {
            let state = lab::up(&cli.dir, hosts, datastore.into()).inspect_err(|_| {
                let _ = lab::down(&cli.dir);
            })?;
            print_status(&state);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::AddWorkload { host, namespace, name, labels } => {
            let Some(mut state) = LabState::load(&cli.dir)? else { bail!("no lab is up in {}", cli.dir.display()) };
            let labels: Vec<(String, String)> = labels
                .iter()
                .map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| anyhow::anyhow!("label {l:?} is not key=value")))
                .collect::<Result<_>>()?;
            let refs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let w = lab::add_workload(&mut state, &host, &namespace, &name, &refs)?;
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
        Cmd::InternalHttpOk { addr, path } => Ok(if http_ok(&addr, &path) { ExitCode::SUCCESS } else { ExitCode::FAILURE }),
    }
}

fn http_ok(addr: &str, path: &str) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return false };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    if write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

fn print_status(s: &LabState) {
    println!("lab in {} ({:?})", s.dir.display(), s.datastore);
    let mut rows = vec![vec!["HOST".to_string(), "ADDRESS".into(), "AGENT PID".into(), "NAMESPACE".into()]];
    for h in &s.hosts {
        rows.push(vec![h.name.clone(), h.ip.to_string(), h.agent_pid.map(|p| p.to_string()).unwrap_or_default(), h.ns.clone()]);
    }
    print!("{}", demo::table(&rows));
    if !s.workloads.is_empty() {
        let mut rows = vec![vec!["WORKLOAD".to_string(), "HOST".into(), "ADDRESS".into(), "TAP".into(), "LABELS".into()]];
        for w in &s.workloads {
            let labels = w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
            rows.push(vec![w.id(), w.host.clone(), w.ip.to_string(), w.iface.clone(), labels]);
        }
        println!();
        print!("{}", demo::table(&rows));
    }
}
