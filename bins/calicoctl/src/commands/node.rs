//! `node status` (upstream's layout) and `node routes` (ours), read from the
//! BGP status calico-node publishes in the datastore, so neither needs root
//! nor the node itself: `--node NAME` works from any machine.

use std::path::Path;

use anyhow::{anyhow, Result};
use calico_client::bgp_status::{BgpPeerStatus, BgpRouteEntry, BgpRoutes, BgpStatus};
use clap::{Args, Subcommand};

use crate::Global;

#[derive(Args)]
pub struct NodeArgs {
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(Subcommand)]
enum NodeCommand {
    /// BGP sessions of a node, as upstream prints them.
    Status(StatusArgs),
    /// Routes a node announces to and learned from each BGP peer (ours).
    Routes(StatusArgs),
}

#[derive(Args)]
struct StatusArgs {
    /// The node (default: this host's node name, from
    /// /var/lib/calico/nodename or the hostname).
    #[arg(long)]
    node: Option<String>,
    /// Output format: the upstream tables, or the status as json/yaml.
    #[arg(short = 'o', long = "output", default_value = "table")]
    output: String,
    #[command(flatten)]
    global: Global,
}

pub fn run(a: &NodeArgs) -> Result<()> {
    match &a.command {
        NodeCommand::Status(s) => status(s),
        NodeCommand::Routes(s) => routes(s),
    }
}

fn status(a: &StatusArgs) -> Result<()> {
    let node = match &a.node {
        Some(n) => n.clone(),
        None => local_node_name()?,
    };
    let client = super::connect(&a.global)?;
    let key = calico_client::keys::bgp_status_key(&node);
    let kv = client.store().get(&key).map_err(|e| anyhow!("{e}"))?;
    let Some(kv) = kv else {
        // The key lives under the agent's lease: no key, no agent.
        println!("Calico process is not running.");
        return Err(anyhow!(
            "no BGP status for node {node:?}: calico-node is not running there, or BGP is off"
        ));
    };
    let status: BgpStatus = serde_json::from_slice(&kv.value).map_err(|e| anyhow!("{key}: {e}"))?;
    match a.output.as_str() {
        "table" => print!("{}", render(&status)),
        "json" => println!("{}", serde_json::to_string_pretty(&status)?),
        "yaml" => print!("{}", serde_yaml::to_string(&status)?),
        other => {
            return Err(anyhow!(
                "unknown output format {other:?}: use table, json or yaml"
            ))
        }
    }
    Ok(())
}

fn routes(a: &StatusArgs) -> Result<()> {
    let node = match &a.node {
        Some(n) => n.clone(),
        None => local_node_name()?,
    };
    let client = super::connect(&a.global)?;
    let key = calico_client::keys::bgp_routes_key(&node);
    let Some(kv) = client.store().get(&key).map_err(|e| anyhow!("{e}"))? else {
        return Err(anyhow!(
            "no BGP routes for node {node:?}: calico-node is not running there, or BGP is off"
        ));
    };
    let r: BgpRoutes = serde_json::from_slice(&kv.value).map_err(|e| anyhow!("{key}: {e}"))?;
    match a.output.as_str() {
        "table" => print!("{}", render_routes(&r)),
        "json" => println!("{}", serde_json::to_string_pretty(&r)?),
        "yaml" => print!("{}", serde_yaml::to_string(&r)?),
        other => {
            return Err(anyhow!(
                "unknown output format {other:?}: use table, json or yaml"
            ))
        }
    }
    Ok(())
}

/// One row per route, grouped by peer: announced first, then learned.
pub fn render_routes(r: &BgpRoutes) -> String {
    let mut rows: Vec<&BgpRouteEntry> = r.routes.iter().collect();
    rows.sort_by(|a, b| {
        (&a.peer, &a.direction, &a.destination).cmp(&(&b.peer, &b.direction, &b.destination))
    });
    let mut table = vec![[
        "PEER",
        "PEER ADDRESS",
        "DIRECTION",
        "DESTINATION",
        "NEXT HOP",
        "AS PATH",
        "FLAGS",
    ]
    .map(String::from)
    .to_vec()];
    for e in rows {
        let mut flags = Vec::new();
        if e.best {
            flags.push("best");
        }
        if e.stale {
            flags.push("stale");
        }
        table.push(vec![
            e.peer.clone(),
            e.peer_ip.clone(),
            e.direction.clone(),
            e.destination.clone(),
            e.next_hop.clone(),
            e.as_path.clone(),
            flags.join(","),
        ]);
    }
    let mut out = crate::table::render(&table);
    if r.truncated {
        out.push_str(&format!(
            "(only the first {} routes are published)\n",
            calico_client::bgp_status::MAX_ROUTES
        ));
    }
    out
}

/// Upstream's output: the process line, then a table per IP family.
pub fn render(s: &BgpStatus) -> String {
    let mut out = String::from("Calico process is running.\n");
    for (family, v6) in [("IPv4", false), ("IPv6", true)] {
        out.push_str(&format!("\n{family} BGP status\n"));
        let rows: Vec<Vec<String>> = s
            .peers
            .iter()
            .filter(|p| p.peer_ip.contains(':') == v6)
            .map(row)
            .collect();
        if rows.is_empty() {
            out.push_str(&format!("No {family} peers found.\n"));
        } else {
            out.push_str(&crate::boxed_table::render(
                &["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"],
                &rows,
            ));
        }
    }
    out.push('\n');
    out
}

fn row(p: &BgpPeerStatus) -> Vec<String> {
    let kind = match p.peer_type.as_str() {
        "NodeMesh" => "node-to-node mesh",
        "GlobalPeer" => "global",
        _ => "node specific",
    };
    // BIRD's protocol state: up once Established, start before.
    let state = if p.state == "Established" {
        "up"
    } else {
        "start"
    };
    vec![
        p.peer_ip.clone(),
        kind.to_string(),
        state.to_string(),
        since(&p.since),
        p.info.clone(),
    ]
}

/// BIRD's `since`: the time of day if today, else the date (local time).
fn since(rfc3339: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(rfc3339) else {
        return rfc3339.to_string();
    };
    let local = t.with_timezone(&chrono::Local);
    if local.date_naive() == chrono::Local::now().date_naive() {
        local.format("%H:%M:%S").to_string()
    } else {
        local.format("%Y-%m-%d").to_string()
    }
}

/// This host's node name as calico-node chose it.
fn local_node_name() -> Result<String> {
    let file = Path::new("/var/lib/calico/nodename");
    if let Ok(s) = std::fs::read_to_string(file) {
        if !s.trim().is_empty() {
            return Ok(s.trim().to_string());
        }
    }
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_err(|e| anyhow!("cannot read the hostname: {e}"))?;
    Ok(h.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(ip: &str, name: &str, state: &str, info: &str) -> BgpPeerStatus {
        BgpPeerStatus {
            name: name.into(),
            peer_ip: ip.into(),
            peer_type: calico_client::bgp_status::peer_type_of(name).into(),
            state: state.into(),
            since: "2020-01-02T17:38:47Z".into(),
            info: info.into(),
            ..Default::default()
        }
    }

    #[test]
    fn renders_upstreams_layout() {
        let s = BgpStatus {
            node: "h1".into(),
            peers: vec![
                peer(
                    "172.31.40.217",
                    "Mesh_172_31_40_217",
                    "Established",
                    "Established",
                ),
                peer(
                    "192.168.10.254",
                    "Global_192_168_10_254",
                    "Active",
                    "Active Socket: Connection refused",
                ),
            ],
            ..Default::default()
        };
        let out = render(&s);
        let want = "Calico process is running.\n\nIPv4 BGP status\n\
+----------------+-------------------+-------+------------+-----------------------------------+\n\
|  PEER ADDRESS  |     PEER TYPE     | STATE |   SINCE    |               INFO                |\n\
+----------------+-------------------+-------+------------+-----------------------------------+\n\
| 172.31.40.217  | node-to-node mesh | up    | 2020-01-02 | Established                       |\n\
| 192.168.10.254 | global            | start | 2020-01-02 | Active Socket: Connection refused |\n\
+----------------+-------------------+-------+------------+-----------------------------------+\n\
\nIPv6 BGP status\nNo IPv6 peers found.\n\n";
        assert_eq!(out, want, "\n{out}");
    }
}

#[cfg(test)]
mod route_tests {
    use super::*;

    #[test]
    fn routes_are_grouped_by_peer_and_flagged() {
        let e = |peer: &str, dir: &str, dst: &str, best: bool| BgpRouteEntry {
            peer: peer.into(),
            peer_ip: "10.0.0.2".into(),
            direction: dir.into(),
            destination: dst.into(),
            next_hop: "10.0.0.2".into(),
            best,
            ..Default::default()
        };
        let r = BgpRoutes {
            node: "h1".into(),
            routes: vec![
                e("Mesh_10_0_0_2", "learned", "10.65.2.0/26", true),
                e("Mesh_10_0_0_2", "announced", "10.65.1.0/26", false),
            ],
            truncated: true,
            ..Default::default()
        };
        let out = render_routes(&r);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("PEER "), "{out}");
        assert!(
            lines[1].contains("announced") && lines[1].contains("10.65.1.0/26"),
            "{out}"
        );
        assert!(
            lines[2].contains("learned") && lines[2].trim_end().ends_with("best"),
            "{out}"
        );
        assert!(lines[3].starts_with("(only the first"), "{out}");
    }
}
