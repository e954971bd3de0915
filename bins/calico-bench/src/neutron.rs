//! Benchmarks through a real neutron-server (`calico-lab openstack-up`, a
//! subprocess; root, and `setup.sh --openstack`):
//!
//!   calico-bench openstack-latency [--ports N]
//!       port create → ACTIVE, one port at a time on one host: the API call
//!       (Neutron, binding, our driver's write), Nova's part (the lab plugs
//!       the VM), and until Neutron shows ACTIVE (the host's agent programs
//!       the port and reports, the leader records it). Our driver's own
//!       share of the API call is read from neutron-server's log.
//!   calico-bench openstack-resync-full [--ports N] [--groups G]
//!       `calico-resync` over N bound ports in G security groups (the
//!       agents stopped): Keystone's project list, Neutron's database reads,
//!       the datastore side and the whole, warm (nothing to do) and after
//!       half the endpoints were deleted.
//!
//! The bench talks HTTP to neutron-server from inside the lab's fabric
//! namespace (its API listens on that namespace's loopback), with a token
//! of the lab's admin from the lab's Keystone.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

const PREFIX: &str = "bos-";
const API: &str = "127.0.0.1:9696";

/// The admin's Keystone token, taken once the lab is up.
static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A lab with a controller; `calico-lab down` on drop.
struct Lab {
    exe: PathBuf,
    dir: PathBuf,
}

impl Lab {
    fn up(dir: &Path) -> Result<Lab> {
        let exe = crate::dataplane::sibling("calico-lab")?;
        let lab = Lab {
            exe,
            dir: dir.to_path_buf(),
        };
        let _ = lab.cmd(&["down"]).output();
        let out = lab.cmd(&["openstack-up"]).stdin(Stdio::null()).output()?;
        if !out.status.success() {
            bail!(
                "calico-lab openstack-up: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = lab
            .cmd(&["os", "token", "issue", "-f", "value", "-c", "id"])
            .output()?;
        let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || token.is_empty() {
            bail!(
                "no Keystone token: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = TOKEN.set(token);
        Ok(lab)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.exe);
        c.arg("--dir")
            .arg(&self.dir)
            .arg("--prefix")
            .arg(PREFIX)
            .args(args);
        c
    }

    fn neutron_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("openstack/log/neutron-server-9696.log"))
            .unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.cmd(&["down"]).output();
    }
}

/// One HTTP/1.1 request to neutron-server; the status and the JSON body.
fn http(method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
    let mut s = TcpStream::connect(API)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let token = TOKEN.get().map(String::as_str).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {API}\r\nContent-Type: application/json\r\n\
         X-Auth-Token: {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    let json = if body.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&body).with_context(|| format!("{method} {path}: {body}"))?
    };
    Ok((status, json))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn post(path: &str, body: Value) -> Result<Value> {
    let (status, v) = http("POST", path, Some(&body))?;
    if !(200..300).contains(&status) {
        bail!("POST {path}: {status} {v}");
    }
    Ok(v)
}

/// A network with a /16 subnet and a security group allowing HTTP.
fn tenant() -> Result<(String, String, String)> {
    let net = post("/v2.0/networks", json!({"network": {"name": "bench"}}))?;
    let net_id = net["network"]["id"]
        .as_str()
        .context("network id")?
        .to_string();
    let sub = post(
        "/v2.0/subnets",
        json!({"subnet": {"network_id": net_id, "ip_version": 4, "cidr": "10.64.0.0/16"}}),
    )?;
    let gateway = sub["subnet"]["gateway_ip"]
        .as_str()
        .context("gateway")?
        .to_string();
    let sg = group("web")?;
    Ok((net_id, sg, gateway))
}

fn group(name: &str) -> Result<String> {
    let sg = post(
        "/v2.0/security-groups",
        json!({"security_group": {"name": name}}),
    )?;
    let id = sg["security_group"]["id"]
        .as_str()
        .context("sg id")?
        .to_string();
    post(
        "/v2.0/security-group-rules",
        json!({"security_group_rule": {"security_group_id": id, "direction": "ingress",
               "protocol": "tcp", "port_range_min": 80, "port_range_max": 80}}),
    )?;
    Ok(id)
}

fn port_body(net: &str, sg: &str, host: &str, i: usize) -> Value {
    json!({"network_id": net, "name": format!("p{i}"), "binding:host_id": host,
           "device_owner": "compute:nova", "device_id": format!("vm-{i}"),
           "security_groups": [sg]})
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn latency(args: &[String]) -> Result<()> {
    let n = arg(args, "--ports", 100);
    let dir = tempfile::tempdir()?;
    let lab = Lab::up(dir.path())?;
    crate::bgp::util::enter_netns(&format!("{PREFIX}fabric"))?;
    let (net, sg, gateway) = tenant()?;
    let mut rows = Vec::new();
    for i in 0..n {
        let t0 = Instant::now();
        let port = post(
            "/v2.0/ports",
            json!({"port": port_body(&net, &sg, "host1", i)}),
        )?;
        let t_api = t0.elapsed();
        let p = &port["port"];
        let id = p["id"].as_str().context("port id")?.to_string();
        if p["binding:vif_type"] != "tap" {
            bail!("port {id} did not bind: {p}");
        }
        let ip = p["fixed_ips"][0]["ip_address"]
            .as_str()
            .context("ip")?
            .to_string();
        let out = lab
            .cmd(&[
                "boot",
                &format!("b{i}"),
                "--port",
                &id,
                "--host",
                "host1",
                "--ip",
                &ip,
                "--gateway",
                &gateway,
            ])
            .output()?;
        if !out.status.success() {
            bail!("boot: {}", String::from_utf8_lossy(&out.stderr));
        }
        let t_plug = t0.elapsed();
        loop {
            let (_, v) = http("GET", &format!("/v2.0/ports/{id}"), None)?;
            if v["port"]["status"] == "ACTIVE" {
                break;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("port {id} not ACTIVE after 60 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let total = t0.elapsed();
        rows.push((id, t_api, t_plug - t_api, total - t_plug, total));
    }
    report_latency(&lab, &rows);
    Ok(())
}

/// Port bound → the VM's DHCP lease, one port at a time on one host: the
/// lab boots each VM by DHCP (ISC dhclient; calico-dhcp-agent restarts the
/// network's dnsmasq with the new tap).
pub fn dhcp_latency(args: &[String]) -> Result<()> {
    let n = arg(args, "--ports", 100);
    let dir = tempfile::tempdir()?;
    let lab = Lab::up(dir.path())?;
    crate::bgp::util::enter_netns(&format!("{PREFIX}fabric"))?;
    let (net, sg, _) = tenant()?;
    let (mut plug, mut dhcp, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let port = post(
            "/v2.0/ports",
            json!({"port": port_body(&net, &sg, "host1", i)}),
        )?;
        // The port is bound when the API call returns.
        let bound = wall();
        let id = port["port"]["id"].as_str().context("port id")?.to_string();
        let vm = format!("d{i}");
        let out = lab.cmd(&["boot", &vm, "--port", &id]).output()?;
        if !out.status.success() {
            bail!("boot: {}", String::from_utf8_lossy(&out.stderr));
        }
        let record = std::fs::read_to_string(dir.path().join(format!("vm-{vm}.dhcp")))?;
        let at = |reason: &str| -> Result<f64> {
            record
                .split("\n\n")
                .find(|b| b.contains(&format!("reason={reason}\n")))
                .and_then(|b| b.lines().find_map(|l| l.strip_prefix("at=")))
                .and_then(|t| t.trim().parse().ok())
                .with_context(|| format!("no {reason} in {record}"))
        };
        let (start, lease) = (at("PREINIT")?, at("BOUND")?);
        plug.push((start - bound) * 1e3);
        dhcp.push((lease - start) * 1e3);
        total.push((lease - bound) * 1e3);
        eprint!("\r{} / {n} VMs", i + 1);
    }
    eprintln!();
    println!("port bound → DHCP lease, {n} VMs one after another on one host (ms)");
    println!("{:<44} {:>8} {:>8} {:>8}", "", "p50", "p99", "max");
    for (name, mut v) in [
        ("bound → DHCP client started (lab as Nova)", plug),
        ("client started → lease", dhcp),
        ("total", total),
    ] {
        v.sort_by(f64::total_cmp);
        println!(
            "{name:<44} {:>8.0} {:>8.0} {:>8.0}",
            percentile(&v, 0.5),
            percentile(&v, 0.99),
            v.last().copied().unwrap_or(0.0)
        );
    }
    Ok(())
}

/// Seconds since the epoch, as `date +%s.%N` prints them.
fn wall() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

type Row = (String, Duration, Duration, Duration, Duration);

fn report_latency(lab: &Lab, rows: &[Row]) {
    let log = lab.neutron_log();
    // "calico: port <id> synced in <ms> ms": our driver's time in the API call.
    let driver_ms: Vec<f64> = rows
        .iter()
        .map(|(id, ..)| {
            log.lines()
                .filter(|l| l.contains(&format!("calico: port {id} synced in")))
                .filter_map(|l| {
                    l.split(" synced in ")
                        .nth(1)?
                        .split(' ')
                        .next()?
                        .parse::<f64>()
                        .ok()
                })
                .sum()
        })
        .collect();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    let col = |f: &dyn Fn(&Row) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        (percentile(&v, 0.5), percentile(&v, 0.99))
    };
    println!(
        "port create → ACTIVE, {} ports one after another on one host (ms)",
        rows.len()
    );
    println!("{:<44} {:>8} {:>8}", "PHASE", "P50", "P99");
    let show = |name: &str, (p50, p99): (f64, f64)| println!("{name:<44} {p50:>8.0} {p99:>8.0}");
    show(
        "API call (Neutron + binding + driver write)",
        col(&|r| ms(&r.1)),
    );
    let mut d = driver_ms.clone();
    d.sort_by(f64::total_cmp);
    show(
        "  of which our driver (shim + co-process)",
        (percentile(&d, 0.5), percentile(&d, 0.99)),
    );
    show("Nova's part (the lab plugs the VM)", col(&|r| ms(&r.2)));
    show(
        "plugged → ACTIVE (agent, status, leader)",
        col(&|r| ms(&r.3)),
    );
    show("total", col(&|r| ms(&r.4)));
}

pub fn resync_full(args: &[String]) -> Result<()> {
    let n = arg(args, "--ports", 3000);
    let groups = arg(args, "--groups", 100);
    let dir = tempfile::tempdir()?;
    let lab = Lab::up(dir.path())?;
    crate::bgp::util::enter_netns(&format!("{PREFIX}fabric"))?;
    let (net, _, _) = tenant()?;
    let t = Instant::now();
    let sgs: Vec<String> = (0..groups)
        .map(|g| group(&format!("g{g}")))
        .collect::<Result<_>>()?;
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let ports: Vec<Value> = chunk
            .iter()
            .map(|&i| port_body(&net, &sgs[i % groups], ["host1", "host2"][i % 2], i))
            .collect();
        post("/v2.0/ports", json!({"ports": ports}))?;
        eprint!(
            "\rcreated {} ports ({:.0} s)",
            chunk[chunk.len() - 1] + 1,
            t.elapsed().as_secs_f64()
        );
    }
    eprintln!();
    let conf = |f: &str| dir.path().join("openstack").join(f).display().to_string();
    let resync = || -> Result<Value> {
        let out = Command::new("calico-resync")
            .env(
                "PYTHONPATH",
                concat!(env!("CARGO_MANIFEST_DIR"), "/../../openstack"),
            )
            .args([
                "--json",
                "--config-file",
                &conf("neutron-9696.conf"),
                "--config-file",
                &conf("ml2_conf.ini"),
            ])
            .stderr(Stdio::null())
            .output()?;
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    // The agents' programming and status reports would compete with the
    // resync for the two cores: a quiet machine, as a controller would be.
    for host in ["host1", "host2"] {
        lab.cmd(&["stop-agent", host]).output()?;
    }
    println!("calico-resync over {n} bound ports in {groups} security groups (seconds)");
    println!(
        "{:<8} {:>9} {:>13} {:>10} {:>7} {:>8} {:>6}",
        "RUN", "KEYSTONE", "NEUTRON READ", "DATASTORE", "WHOLE", "CREATED", "PORTS"
    );
    let secs = |r: &Value, k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    for run in ["first", "warm", "warm", "warm", "repair", "repair"] {
        if run == "repair" {
            delete_half_the_endpoints(dir.path())?;
        }
        let r = resync()?;
        println!(
            "{run:<8} {:>9.3} {:>13.3} {:>10.3} {:>7.3} {:>8} {:>6}",
            secs(&r, "keystone_seconds"),
            secs(&r, "neutron_read_seconds"),
            secs(&r, "seconds"),
            secs(&r, "total_seconds"),
            r["endpoints"]["created"],
            r["ports"]
        );
    }
    drop(lab);
    Ok(())
}

fn delete_half_the_endpoints(dir: &Path) -> Result<()> {
    let store = calico_datastore::LocalStore::open(dir.join("calico.db"))?;
    use calico_datastore::Datastore;
    let prefix = calico_openstack::keys::workload_endpoint_prefix("openstack");
    for kv in store.list(&prefix)?.kvs.iter().step_by(2) {
        store.delete(&kv.key, None)?;
    }
    Ok(())
}
