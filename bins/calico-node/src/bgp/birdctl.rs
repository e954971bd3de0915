//! BIRD's control sockets (`bird.ctl`, `bird6.ctl`) in the run directory,
//! so `birdc -s /var/run/calico/bird.ctl show protocols` and upstream
//! tools that read them work against the agent's own speaker.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use calico_bgp::birdctl::{bird_view, Server};
use calico_bgp::driver::DriverHandle;
use ipnet::IpNet;
use tracing::{info, warn};

/// Starts both sockets; a socket that cannot be served is logged and
/// skipped (BGP itself works without it).
pub fn serve(run_dir: &Path, speaker: DriverHandle) -> Vec<Server> {
    let mut servers = Vec::new();
    for (file, ipv6) in [("bird.ctl", false), ("bird6.ctl", true)] {
        let path = run_dir.join(file);
        let handle = speaker.clone();
        let source = Arc::new(move || {
            let status = handle.snapshot(Duration::from_secs(2)).unwrap_or_default();
            let subnets = local_subnets();
            bird_view(&status, ipv6, &|gw| iface_for(&subnets, gw))
        });
        match Server::start(&path, source) {
            Ok(s) => {
                info!(path = %path.display(), "answering BIRD's control protocol");
                servers.push(s);
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot serve BIRD's control socket")
            }
        }
    }
    servers
}

/// Interface subnets of this namespace, from `ip -j addr`.
pub fn local_subnets() -> Vec<(IpNet, String)> {
    let Ok(out) = std::process::Command::new("ip")
        .args(["-j", "addr"])
        .output()
    else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return Vec::new();
    };
    let mut nets = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        let name = link
            .get("ifname")
            .and_then(|n| n.as_str())
            .unwrap_or_default();
        for a in link
            .get("addr_info")
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
        {
            let local = a.get("local").and_then(|l| l.as_str()).unwrap_or_default();
            let plen = a.get("prefixlen").and_then(|p| p.as_u64()).unwrap_or(0);
            if let Ok(n) = format!("{local}/{plen}").parse::<IpNet>() {
                nets.push((n.trunc(), name.to_string()));
            }
        }
    }
    nets
}

/// The interface whose subnet holds `gw` (BIRD's `on IFACE`).
pub fn iface_for(subnets: &[(IpNet, String)], gw: IpAddr) -> String {
    subnets
        .iter()
        .filter(|(n, _)| n.contains(&gw))
        .max_by_key(|(n, _)| n.prefix_len())
        .map(|(_, i)| i.clone())
        .unwrap_or_else(|| "?".to_string())
}
