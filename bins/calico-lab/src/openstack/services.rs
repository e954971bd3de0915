//! What a VM meets when it boots, as on a real compute host: a
//! `calico-dhcp-agent` per host (its address, gateway, MTU and DNS by
//! DHCP), a stand-in for nova-api-metadata where the controller runs (the
//! fabric) behind Felix's 169.254.169.254 DNAT, and floating IPs reached
//! from the lab's outside (the fabric, where the ToR is).

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::controller::calico_datastore_lines;
use super::nova::VM_NAMESPACE;
use crate::lab::{calicoctl, sibling};
use crate::netns::spawn;
use crate::state::LabState;
use crate::topology::{fabric_ns, FABRIC_GW};

/// Where the metadata stand-in listens (the fabric's side of the hosts'
/// uplinks: the controller's address), and FelixConfiguration points.
pub const METADATA_PORT: u16 = 8775;

/// Starts calico-dhcp-agent on every host, with neutron.conf lines a
/// compute host has (`[DEFAULT] host`, `[calico]` for the datastore).
pub fn start_dhcp_agents(state: &mut LabState) -> Result<()> {
    let agent = sibling("calico-dhcp-agent")?;
    let calico = calico_datastore_lines(state)?;
    let hosts = state.hosts.clone();
    for h in &hosts {
        let dir = state.dir.join(&h.name);
        std::fs::create_dir_all(&dir)?;
        let conf = dir.join("dhcp-agent.conf");
        std::fs::write(
            &conf,
            format!(
                "[DEFAULT]\nhost = {}\ndhcp_confs = {}\n[calico]\n{calico}",
                h.name,
                dir.join("dhcp").display()
            ),
        )?;
        let pid = spawn(
            &h.ns,
            &[
                agent.to_str().unwrap(),
                "--config-file",
                conf.to_str().unwrap(),
                "--mtu-file",
                dir.join("mtu").to_str().unwrap(),
            ],
            &[],
            &dir.join("dhcp-agent.log"),
        )?;
        if let Some(c) = state.openstack.as_mut() {
            c.dhcp_agents.push((h.name.clone(), pid));
        }
        state.save()?;
    }
    Ok(())
}

/// Starts the metadata stand-in in the fabric and points Felix at it
/// (FelixConfiguration `default`: `metadataAddr`, `metadataPort`).
pub fn start_metadata(state: &mut LabState) -> Result<()> {
    let me = sibling("calico-lab")?;
    let listen = format!("{FABRIC_GW}:{METADATA_PORT}");
    let pid = spawn(
        &fabric_ns(),
        &[
            me.to_str().unwrap(),
            "--dir",
            state.dir.to_str().unwrap(),
            "internal-metadata-server",
            &listen,
        ],
        &[],
        &state.dir.join("metadata.log"),
    )?;
    if let Some(c) = state.openstack.as_mut() {
        c.metadata_pid = Some(pid);
    }
    state.save()?;
    set_metadata(state, Some((&FABRIC_GW.to_string(), METADATA_PORT)))
}

/// Points FelixConfiguration `default` at a metadata server, or turns the
/// DNAT off (`none`). The driver creates `default` when neutron-server
/// starts; this waits for it.
pub fn set_metadata(state: &LabState, to: Option<(&str, u16)>) -> Result<()> {
    let (addr, port) = to.unwrap_or(("none", METADATA_PORT));
    let patch = json!({"spec": {"metadataAddr": addr, "metadataPort": port}}).to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match calicoctl(
            state,
            &["patch", "felixconfiguration", "default", "-p", &patch],
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// The stand-in for nova-api-metadata: `/openstack/latest/meta_data.json`
/// for the VM whose address the request comes from (Felix's DNAT keeps
/// the source, as nova-api-metadata relies on), 404 for anything else.
pub fn serve_metadata(dir: &Path, listen: &str) -> Result<()> {
    let l = TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    println!("metadata stand-in listening on {listen}");
    for conn in l.incoming() {
        let Ok(conn) = conn else { continue };
        let dir = dir.to_path_buf();
        std::thread::spawn(move || {
            let _ = answer(&dir, conn);
        });
    }
    Ok(())
}

fn answer(dir: &Path, mut conn: TcpStream) -> Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let from = conn.peer_addr()?.ip();
    // The whole request head is read before answering: closing with
    // unread bytes would reset the connection under the answer.
    let mut reader = BufReader::new(&conn);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut header = String::new();
    while reader.read_line(&mut header)? > 0 && header.trim_end() != "" {
        header.clear();
    }
    let vm = LabState::load(dir)?.and_then(|s| {
        s.workloads
            .into_iter()
            .find(|w| w.namespace == VM_NAMESPACE && IpAddr::V4(w.ip) == from)
    });
    println!(
        "GET {path} from {from}: {}",
        vm.as_ref().map_or("unknown VM", |w| w.name.as_str())
    );
    let (status, body) = match (path.as_str(), vm) {
        ("/openstack/latest/meta_data.json", Some(w)) => (
            "200 OK",
            json!({
                "uuid": w.instance.clone().unwrap_or_default(),
                "name": w.name,
                "hostname": w.name,
                "availability_zone": "nova",
                "launch_index": 0,
            })
            .to_string(),
        ),
        (_, None) => ("404 Not Found", format!("no instance has address {from}\n")),
        _ => ("404 Not Found", "not found\n".to_string()),
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    Ok(())
}

/// GET http://ADDR PATH: the body on 200, an error otherwise (run inside a
/// VM's namespace by `calico-lab internal-http-get`).
pub fn http_get(addr: &str, path: &str) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse()?, Duration::from_secs(3))
        .with_context(|| format!("cannot connect to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut s, &mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{}", head.lines().next().unwrap_or("no answer"));
    }
    Ok(body.to_string())
}

/// What VM `name`'s DHCP client was last given (its last lease).
pub fn lease(dir: &Path, name: &str) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(dir.join(format!("vm-{name}.dhcp"))).unwrap_or_default();
    let last = text
        .split("\n\n")
        .filter(|b| b.contains("new_ip_address="))
        .last()
        .unwrap_or_default();
    last.lines()
        .filter_map(|l| l.strip_prefix("new_")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The VMs' leases, as a table.
pub fn leases_table(state: &LabState) -> Vec<Vec<String>> {
    let mut rows = vec![["VM", "HOST", "ADDRESS", "GATEWAY", "MTU", "NAME"]
        .map(String::from)
        .to_vec()];
    for w in state
        .workloads
        .iter()
        .filter(|w| w.namespace == VM_NAMESPACE)
    {
        let l = lease(&state.dir, &w.name);
        let get = |k: &str| l.get(k).cloned().unwrap_or_else(|| "-".into());
        let name = match (l.get("host_name"), l.get("domain_name")) {
            (Some(h), Some(d)) => format!("{h}.{d}"),
            (Some(h), None) => h.clone(),
            _ => "-".into(),
        };
        rows.push(vec![
            w.name.clone(),
            w.host.clone(),
            format!("{}/{}", get("ip_address"), prefix_len(&get("subnet_mask"))),
            get("routers"),
            get("interface_mtu"),
            name,
        ]);
    }
    rows
}

/// 255.255.255.0 → 24.
fn prefix_len(mask: &str) -> String {
    mask.parse::<std::net::Ipv4Addr>()
        .map(|m| u32::from(m).count_ones().to_string())
        .unwrap_or_else(|_| mask.to_string())
}

/// What VM `ns` reads at 169.254.169.254 (its instance's metadata).
pub fn fetch_metadata(ns: &str) -> Result<serde_json::Value> {
    let me = sibling("calico-lab")?;
    let body = crate::netns::exec(
        ns,
        &[
            me.to_str().unwrap(),
            "internal-http-get",
            "169.254.169.254:80",
            "/openstack/latest/meta_data.json",
        ],
    )?;
    Ok(serde_json::from_str(&body)?)
}

/// The fabric's route to a floating IP, as BIRD (the ToR) learned it from
/// the VM's host: its next hop.
pub fn fabric_next_hop(fip: &str) -> Option<String> {
    let out = crate::netns::exec(&fabric_ns(), &["ip", "route", "show", fip]).ok()?;
    let mut words = out.split_whitespace();
    words.find(|w| *w == "via")?;
    words.next().map(str::to_string)
}

/// Waits until the fabric routes `fip` via `host_ip`.
pub fn wait_fabric_route(fip: &str, host_ip: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while fabric_next_hop(fip).as_deref() != Some(host_ip) {
        if Instant::now() > deadline {
            bail!(
                "the fabric routes {fip} via {:?}, not {host_ip}, after {limit:?}",
                fabric_next_hop(fip)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// The address the fabric's echo server saw the last connection from.
pub fn last_seen_from(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("CONN tcp from "))?;
    let peer = line
        .strip_prefix("CONN tcp from ")?
        .split_whitespace()
        .next()?;
    let sock: std::net::SocketAddr = peer.parse().ok()?;
    // A dual-stack listener shows IPv4 peers as ::ffff:a.b.c.d.
    Some(sock.ip().to_canonical().to_string())
}

/// Connects from namespace `ns` to `target` (ADDR:PORT) with the probe.
pub fn reaches(ns: &str, target: &str) -> bool {
    let Ok(probe) = sibling("calico-probe") else {
        return false;
    };
    crate::netns::exec_ok(
        ns,
        &[
            probe.to_str().unwrap(),
            "tcp",
            target,
            "--timeout-ms",
            "1500",
        ],
    )
}
