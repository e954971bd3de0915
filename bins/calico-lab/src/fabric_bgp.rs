//! The lab's routed fabric: workloads' addresses routed natively (no
//! encapsulation) between hosts by BGP, and the article's ToR router — a
//! real BIRD 2 in the fabric namespace at 192.168.10.254, AS 64512 — that
//! every host peers with through the article's BGPPeer. With route
//! reflectors, the first hosts reflect and the full mesh is off, as
//! upstream's route-reflector docs set it up.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::lab::{calicoctl, say};
use crate::netns::{self, ip, spawn};
use crate::state::LabState;
use crate::topology::fabric_ns;

/// The article's BGP peer (its `peerIP`).
pub const TOR_IP: &str = "192.168.10.254";
pub const TOR_AS: u32 = 64512;
/// Cluster ID the lab's route reflectors share.
pub const RR_CLUSTER_ID: &str = "224.0.0.1";

/// The article's BGPPeer, as the lab applies it (the demo applies the
/// article's file verbatim, which is the same resource).
pub const ARTICLE_PEER: &str = "apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: bgp-peer-1
spec:
  peerIP: 192.168.10.254
  asNumber: 64512
";

/// The reflector topology of upstream's docs.
const RR_RESOURCES: &str = "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  nodeToNodeMeshEnabled: false
  asNumber: 64512
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: peer-with-route-reflectors
spec:
  nodeSelector: all()
  peerSelector: route-reflector == 'true'
";

/// BIRD's control socket of the ToR.
pub fn tor_socket(dir: &Path) -> PathBuf {
    dir.join("tor").join("bird.ctl")
}

/// Each agent's run directory (its `bird.ctl` and `bird6.ctl`).
pub fn run_dir(dir: &Path, host: &str) -> PathBuf {
    dir.join(host).join("run")
}

/// Starts the ToR: 192.168.10.254 on the fabric's loopback (hosts reach
/// it through their default route) and BIRD peering with every host.
pub fn start_tor(state: &mut LabState) -> Result<()> {
    let fabric = fabric_ns();
    ip(&[
        "-n",
        &fabric,
        "addr",
        "add",
        &format!("{TOR_IP}/32"),
        "dev",
        "lo",
    ])?;
    let dir = state.dir.join("tor");
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("bird.conf");
    std::fs::write(&conf, tor_config(state))?;
    let sock = tor_socket(&state.dir);
    let pid = spawn(
        &fabric,
        &[
            "bird",
            "-f",
            "-c",
            conf.to_str().unwrap(),
            "-s",
            sock.to_str().unwrap(),
        ],
        &[],
        &dir.join("bird.log"),
    )
    .context("cannot start BIRD as the ToR (apt-get install bird2)")?;
    state.extra_pids.push(pid);
    state.save()
}

/// The ToR's BIRD configuration: iBGP with every host, what it learns in
/// the fabric's kernel (so the "outside" reaches workloads natively).
fn tor_config(state: &LabState) -> String {
    let mut c = format!(
        "router id {TOR_IP};\n\
         protocol device {{ }}\n\
         protocol direct {{ ipv4; interface \"br0\"; }}\n\
         protocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}\n"
    );
    for h in &state.hosts {
        c.push_str(&format!(
            "protocol bgp {name} {{\n  local {TOR_IP} as {TOR_AS};\n  neighbor {ip} as {TOR_AS};\n  multihop;\n  graceful restart;\n  connect delay time 1; connect retry time 3; error wait time 1,5;\n  ipv4 {{ import all; export none; }};\n}}\n",
            name = h.name,
            ip = h.ip
        ));
    }
    c
}

/// Makes the first `n` hosts route reflectors and turns the mesh off.
pub fn configure_route_reflectors(state: &LabState, n: usize) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let rrs: Vec<&str> = state
        .hosts
        .iter()
        .take(n)
        .map(|h| h.name.as_str())
        .collect();
    say(&format!(
        "route reflectors: {} (cluster {RR_CLUSTER_ID}); node-to-node mesh off",
        rrs.join(", ")
    ));
    for name in &rrs {
        let patch = format!(
            "{{\"metadata\":{{\"labels\":{{\"route-reflector\":\"true\"}}}},\"spec\":{{\"bgp\":{{\"routeReflectorClusterID\":\"{RR_CLUSTER_ID}\"}}}}}}"
        );
        calicoctl(state, &["patch", "node", name, "-p", &patch], None)
            .with_context(|| format!("cannot make {name} a route reflector"))?;
    }
    calicoctl(state, &["apply", "-f", "-"], Some(RR_RESOURCES))?;
    Ok(())
}

/// Waits until every host has every session Established, as its agent
/// reports in the datastore (what `calicoctl node status --node` reads).
pub fn wait_established(state: &LabState, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut waiting = Vec::new();
        for h in &state.hosts {
            let out = calicoctl(
                state,
                &["node", "status", "--node", &h.name, "-o", "json"],
                None,
            )
            .unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            let peers = v["peers"].as_array().cloned().unwrap_or_default();
            let down: Vec<String> = peers
                .iter()
                .filter(|p| p["state"] != "Established")
                .map(|p| format!("{}→{}", h.name, p["peerIP"].as_str().unwrap_or("?")))
                .collect();
            if peers.is_empty() {
                waiting.push(format!("{} (no status yet)", h.name));
            }
            waiting.extend(down);
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "BGP sessions not Established after {timeout:?}: {}",
                waiting.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `birdc -s <socket> <cmd>`, as an operator would run it.
pub fn birdc(socket: &Path, cmd: &[&str]) -> Result<String> {
    let mut args = vec!["-s", socket.to_str().unwrap()];
    args.extend_from_slice(cmd);
    let out = std::process::Command::new("birdc")
        .args(&args)
        .output()
        .context("cannot run birdc (apt-get install bird2)")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The ToR's kernel routes learned by BGP (what the "outside" can reach).
pub fn tor_routes() -> String {
    netns::exec(&fabric_ns(), &["ip", "route", "show", "proto", "bird"]).unwrap_or_default()
}
