//! The lab plays Nova: a port bound to a lab host becomes a "VM", a
//! namespace plugged into that host by a veth named as Nova names taps
//! (`tap` + the first 11 characters of the port id) with the port's MAC,
//! which gets its address, gateway, MTU and DNS by DHCP from the host's
//! calico-dhcp-agent (ISC dhclient in the VM), and a small server on the
//! ports the demo probes.

use std::net::Ipv4Addr;

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::controller::openstack_json;
use crate::lab::sibling;
use crate::netns::{add_ns, del_ns, ip, ns_name, spawn};
use crate::procs::{self, Until};
use crate::state::LabState;
use crate::topology::{plug, Workload};

/// The namespace (in Calico terms) the lab files VMs under.
pub const VM_NAMESPACE: &str = "vm";

/// Nova's tap name for a port.
pub fn tap_for_port(port_id: &str) -> String {
    format!("tap{}", &port_id[..port_id.len().min(11)])
}

/// Boots VM `name` on the host its port is bound to.
pub fn boot(state: &mut LabState, name: &str, port_id: &str) -> Result<Workload> {
    let port = openstack_json(&["port", "show", port_id])?;
    let vif = port["binding_vif_type"].as_str().unwrap_or("");
    if vif != "tap" {
        bail!("port {port_id} is not bound (binding:vif_type {vif:?}): Nova would not boot it");
    }
    let host_name = port["binding_host_id"].as_str().unwrap_or("");
    let host = state
        .host(host_name)
        .with_context(|| format!("port {port_id} is bound to {host_name:?}, not a lab host"))?
        .clone();
    let (addr, _) =
        first_ipv4(&port).with_context(|| format!("port {port_id} has no IPv4 address"))?;
    let mac = port["mac_address"].as_str().context("port has no MAC")?;
    let instance = port["device_id"].as_str().unwrap_or_default();
    let mut vm = plug_dhcp(state, name, port_id, &host.name, mac)?;
    if vm.ip != addr {
        bail!("VM {name} got {} by DHCP, but its port has {addr}", vm.ip);
    }
    vm.instance = Some(instance.to_string());
    start_vm(state, vm)
}

/// Seconds a VM waits for its DHCP lease.
const LEASE_WAIT: Duration = Duration::from_secs(60);

/// Plugs VM `name` with `mac` and runs its DHCP client until it has a
/// lease (the address the host's calico-dhcp-agent gives the port).
fn plug_dhcp(
    state: &mut LabState,
    name: &str,
    port_id: &str,
    host: &str,
    mac: &str,
) -> Result<Workload> {
    let host = state
        .host(host)
        .with_context(|| format!("{host:?} is not a lab host"))?
        .clone();
    let ns = ns_name(&format!("w-{VM_NAMESPACE}-{name}"));
    let iface = tap_for_port(port_id);
    add_ns(&ns)?;
    ip(&[
        "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &iface, "netns",
        &host.ns,
    ])?;
    ip(&["-n", &ns, "link", "set", "eth0", "address", mac])?;
    ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
    ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    ip(&["-n", &host.ns, "link", "set", &iface, "up"])?;
    let files = DhcpFiles::new(&state.dir, name);
    files.write_script()?;
    std::fs::write(state.dir.join("dhclient.conf"), DHCLIENT_CONF)?;
    let _ = std::fs::remove_file(&files.record);
    let pid = spawn(
        &ns,
        &[
            "dhclient",
            "-4",
            "-d",
            "-cf",
            state.dir.join("dhclient.conf").to_str().unwrap(),
            "-sf",
            files.script.to_str().unwrap(),
            "-lf",
            files.leases.to_str().unwrap(),
            "-pf",
            files.pid.to_str().unwrap(),
            "eth0",
        ],
        &[],
        &files.log,
    )?;
    let mut vm = Workload {
        namespace: VM_NAMESPACE.to_string(),
        name: name.to_string(),
        host: host.name.clone(),
        ns,
        iface,
        ip: Ipv4Addr::UNSPECIFIED,
        labels: Default::default(),
        server_pid: None,
        client_pid: Some(pid),
        instance: None,
    };
    match files.wait_lease(LEASE_WAIT) {
        Ok(addr) => {
            vm.ip = addr;
            Ok(vm)
        }
        Err(e) => {
            // Not left half-booted: the client and namespace go.
            let _ = procs::stop(&[pid], Until::Gone);
            del_ns(&vm.ns);
            Err(e.context(format!("see {}", files.log.display())))
        }
    }
}

/// The DHCP client's files of VM `name` in the lab directory.
struct DhcpFiles {
    script: std::path::PathBuf,
    record: std::path::PathBuf,
    leases: std::path::PathBuf,
    pid: std::path::PathBuf,
    log: std::path::PathBuf,
}

/// Asks for what the agent gives, and retries quickly (a VM plugged just
/// before the agent restarted its network's dnsmasq asks again in 1-2 s).
const DHCLIENT_CONF: &str =
    "option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, host-name,
        interface-mtu, rfc3442-classless-static-routes;
initial-interval 1;
backoff-cutoff 2;
";

impl DhcpFiles {
    fn new(dir: &std::path::Path, name: &str) -> DhcpFiles {
        let f = |ext: &str| dir.join(format!("vm-{name}.{ext}"));
        DhcpFiles {
            script: f("dhclient-script"),
            record: f("dhcp"),
            leases: f("leases"),
            pid: f("dhclient.pid"),
            log: f("dhclient.log"),
        }
    }

    /// The VM's dhclient-script: configures what the lease says (address,
    /// MTU, default route) and records it for the lab.
    fn write_script(&self) -> Result<()> {
        let text = format!(
            "#!/bin/sh\n\
             {{ echo \"reason=$reason\"; echo \"at=$(date +%s.%N)\"; env | grep -E '^new_' | sort; echo; }} >> {record}\n\
             case \"$reason\" in\n\
             BOUND|RENEW|REBIND|REBOOT)\n\
             \x20 ip -4 addr flush dev \"$interface\"\n\
             \x20 ip addr add \"$new_ip_address/$new_subnet_mask\" dev \"$interface\"\n\
             \x20 [ -n \"$new_interface_mtu\" ] && ip link set dev \"$interface\" mtu \"$new_interface_mtu\"\n\
             \x20 ip route replace default via \"$new_routers\" dev \"$interface\" ;;\n\
             esac\n\
             exit 0\n",
            record = self.record.display()
        );
        std::fs::write(&self.script, text)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.script, std::fs::Permissions::from_mode(0o755))?;
        Ok(())
    }

    /// The address of the first lease, within `limit`: BOUND, or REBOOT
    /// when a VM booted again (on another host too) had its old lease
    /// confirmed.
    fn wait_lease(&self, limit: Duration) -> Result<Ipv4Addr> {
        let deadline = Instant::now() + limit;
        loop {
            let text = std::fs::read_to_string(&self.record).unwrap_or_default();
            let bound = text
                .split("\n\n")
                .find(|b| b.contains("reason=BOUND") || b.contains("reason=REBOOT"));
            if let Some(addr) = bound.and_then(|b| {
                b.lines()
                    .find_map(|l| l.strip_prefix("new_ip_address="))
                    .and_then(|a| a.trim().parse().ok())
            }) {
                return Ok(addr);
            }
            if Instant::now() > deadline {
                bail!("no DHCP lease after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Plugs VM `name` for a port whose host, address and gateway are known.
pub fn plug_vm(
    state: &mut LabState,
    name: &str,
    port_id: &str,
    host: &str,
    addr: Ipv4Addr,
    gateway: &str,
) -> Result<Workload> {
    let host = state
        .host(host)
        .with_context(|| format!("{host:?} is not a lab host"))?
        .clone();
    let vm = plug(
        &host,
        VM_NAMESPACE,
        name,
        &tap_for_port(port_id),
        addr,
        gateway,
    )?;
    start_vm(state, vm)
}

/// Starts the VM's servers and records it.
fn start_vm(state: &mut LabState, mut vm: Workload) -> Result<Workload> {
    let name = vm.name.clone();
    let probe = sibling("calico-probe")?;
    vm.server_pid = Some(spawn(
        &vm.ns,
        &[probe.to_str().unwrap(), "serve", "--tcp", "22,80,5432"],
        &[],
        &state.dir.join(format!("vm-{name}.log")),
    )?);
    state.workloads.push(vm.clone());
    state.save()?;
    Ok(vm)
}

fn first_ipv4(port: &Value) -> Option<(Ipv4Addr, String)> {
    port["fixed_ips"].as_array()?.iter().find_map(|ip| {
        let addr = ip["ip_address"].as_str()?.parse().ok()?;
        Some((addr, ip["subnet_id"].as_str()?.to_string()))
    })
}

/// Deletes VM `name` (as Nova does before its port is deleted or moved).
pub fn destroy(state: &mut LabState, name: &str) -> Result<()> {
    let Some(i) = state
        .workloads
        .iter()
        .position(|w| w.namespace == VM_NAMESPACE && w.name == name)
    else {
        bail!("no VM {name} in the lab");
    };
    let vm = state.workloads.remove(i);
    let pids: Vec<u32> = vm.server_pid.into_iter().chain(vm.client_pid).collect();
    procs::stop(&pids, Until::Gone)?;
    del_ns(&vm.ns);
    state.save()
}
