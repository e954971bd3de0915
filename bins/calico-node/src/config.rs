//! The agent's configuration, from flags and the environment as upstream
//! calico-node reads it: NODENAME, IP, the datastore settings shared with
//! calicoctl, FELIX_* overrides, and a configurable state directory.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use ipnet::{IpNet, Ipv4Net};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "calico-node",
    version,
    about = "Calico per-host agent (calico-rs)"
)]
pub struct Args {
    /// This host's name in the datastore (default: the state dir's
    /// `nodename` file, else the hostname).
    #[arg(long, env = "NODENAME")]
    pub node_name: Option<String>,
    /// This host's IPv4 address, optionally with prefix length (e.g.
    /// 192.0.2.11/24); `autodetect` or unset: the address of the interface
    /// holding the default route.
    #[arg(long, env = "IP")]
    pub ip: Option<String>,
    /// Client config file (as calicoctl's); else DATASTORE_TYPE / ETCD_*
    /// environment; else the embedded store.
    #[arg(short = 'c', long = "config", env = "CALICO_CONFIG")]
    pub config: Option<PathBuf>,
    /// State directory (upstream: /var/lib/calico): MTU file, node name.
    #[arg(long, env = "CALICO_STATE_DIR", default_value = "/var/lib/calico")]
    pub state_dir: PathBuf,
    /// Run directory (upstream: /var/run/calico): BIRD's control sockets
    /// `bird.ctl` and `bird6.ctl` are answered there.
    #[arg(long, env = "CALICO_RUN_DIR", default_value = "/var/run/calico")]
    pub run_dir: PathBuf,
    /// Health endpoint port (/liveness, /readiness); 0 disables.
    #[arg(long, env = "FELIX_HEALTHPORT", default_value_t = 9099)]
    pub health_port: u16,
    /// Prometheus metrics port (/metrics); 0 disables.
    #[arg(long, env = "FELIX_PROMETHEUSMETRICSPORT", default_value_t = 9091)]
    pub metrics_port: u16,
    /// Address the health and metrics servers bind to.
    #[arg(long, env = "FELIX_HEALTHHOST", default_value = "127.0.0.1")]
    pub health_host: String,
    /// OpenStack region (status keys live under region-<name>).
    #[arg(long, env = "FELIX_OPENSTACKREGION")]
    pub region: Option<String>,
    /// Seconds between status reports (FelixConfiguration reportingInterval).
    #[arg(long, env = "FELIX_REPORTINGINTERVALSECS", default_value_t = 30)]
    pub reporting_interval_secs: u64,
    /// Seconds between drift checks of the kernel state.
    #[arg(long, env = "CALICO_RESYNC_INTERVAL_SECS", default_value_t = 5)]
    pub resync_interval_secs: u64,
    /// Run one sync-and-apply cycle, then exit (for tests and scripts).
    #[arg(long)]
    pub once: bool,
}

/// Resolved configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    pub ip: Option<Ipv4Net>,
    pub args: Args,
    /// FELIX_* variables, passed to the calculation as overrides.
    pub felix_env: Vec<(String, String)>,
}

impl AgentConfig {
    pub fn state_dir(&self) -> &Path {
        &self.args.state_dir
    }
    pub fn node_ip(&self) -> Option<IpAddr> {
        self.ip.map(|n| IpAddr::V4(n.addr()))
    }
    /// `no-region` or `region-<name>` as in upstream status keys.
    pub fn region_segment(&self) -> String {
        match &self.args.region {
            Some(r) if !r.is_empty() => format!("region-{r}"),
            _ => "no-region".to_string(),
        }
    }
}

pub fn resolve(args: Args) -> Result<AgentConfig> {
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("cannot create state directory {}", args.state_dir.display()))?;
    let node_name = resolve_node_name(&args)?;
    let ip = match args.ip.as_deref() {
        None | Some("") | Some("autodetect") => autodetect_ip(),
        Some("none") => None,
        Some(s) => Some(parse_ip(s)?),
    };
    let felix_env = std::env::vars()
        .filter(|(k, _)| k.starts_with("FELIX_"))
        .collect();
    Ok(AgentConfig {
        node_name,
        ip,
        args,
        felix_env,
    })
}

fn resolve_node_name(args: &Args) -> Result<String> {
    let file = args.state_dir.join("nodename");
    let name = match &args.node_name {
        Some(n) if !n.is_empty() => n.clone(),
        _ => match std::fs::read_to_string(&file) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => hostname()?,
        },
    };
    if !calico_api::validate::is_dns1123_subdomain(&name) {
        bail!("node name {name:?} is not a valid resource name (lower-case DNS subdomain); set NODENAME");
    }
    // Remember it, as upstream does, so a later hostname change keeps the node.
    std::fs::write(&file, &name).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(name)
}

fn hostname() -> Result<String> {
    let s =
        std::fs::read_to_string("/proc/sys/kernel/hostname").context("cannot read the hostname")?;
    Ok(s.trim().to_ascii_lowercase())
}

fn parse_ip(s: &str) -> Result<Ipv4Net> {
    if let Ok(n) = s.parse::<Ipv4Net>() {
        return Ok(n);
    }
    let a: Ipv4Addr = s.parse().map_err(|_| {
        anyhow!("IP={s:?} is not an IPv4 address (e.g. 192.0.2.11 or 192.0.2.11/24)")
    })?;
    Ok(Ipv4Net::new(a, 32).expect("/32 is valid"))
}

/// The first global IPv4 address of the interface that holds the default
/// route in this network namespace (no packet is sent).
fn autodetect_ip() -> Option<Ipv4Net> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    let iface = routes
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[1] == "00000000")
        .map(|f| f[0].to_string())?;
    let out = Command::new("ip")
        .args(["-j", "-4", "addr", "show", "dev", &iface])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let info = v.get(0)?.get("addr_info")?.as_array()?;
    info.iter().find_map(|a| {
        let local = a.get("local")?.as_str()?;
        let plen = a.get("prefixlen")?.as_u64()?;
        format!("{local}/{plen}").parse::<Ipv4Net>().ok()
    })
}

/// The node address as the Node resource records it (`a.b.c.d/len`).
pub fn ip_with_prefix(n: &Ipv4Net) -> String {
    IpNet::V4(*n).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_parsing() {
        assert_eq!(parse_ip("192.0.2.11/24").unwrap().prefix_len(), 24);
        assert_eq!(parse_ip("192.0.2.11").unwrap().prefix_len(), 32);
        assert!(parse_ip("nonsense").is_err());
    }
}
