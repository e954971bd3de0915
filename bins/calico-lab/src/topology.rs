//! The lab's network: a fabric namespace with a bridge (the "physical"
//! L2 segment, 192.0.2.0/24), compute hosts as namespaces plugged into it,
//! and workloads as namespaces plugged into their host by a veth named as
//! Nova names tap devices. Only documentation/benchmark ranges are used, and
//! only inside namespaces the lab created.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::netns::{add_ns, ip, ns_name, sysctl};

pub const FABRIC_GW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Address workloads use as their gateway; the host answers it by proxy ARP.
pub const WORKLOAD_GW: &str = "169.254.1.1";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Host {
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
    pub agent_pid: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Workload {
    /// OpenStack project namespace as Calico sees it (e.g. `production`).
    pub namespace: String,
    pub name: String,
    pub host: String,
    pub ns: String,
    pub iface: String,
    pub ip: Ipv4Addr,
    pub labels: std::collections::BTreeMap<String, String>,
    pub server_pid: Option<u32>,
    /// A VM's DHCP client.
    #[serde(default)]
    pub client_pid: Option<u32>,
    /// A VM's instance UUID (its port's device_id), for metadata.
    #[serde(default)]
    pub instance: Option<String>,
}

impl Workload {
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The fabric namespace (bridge, and etcd when the lab uses it).
pub fn fabric_ns() -> String {
    ns_name("fabric")
}

pub fn host_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 10 + index as u8)
}

/// Creates the fabric namespace and its bridge.
pub fn create_fabric() -> Result<()> {
    let fabric = fabric_ns();
    add_ns(&fabric)?;
    ip(&["-n", &fabric, "link", "add", "br0", "type", "bridge"])?;
    ip(&[
        "-n",
        &fabric,
        "addr",
        "add",
        &format!("{FABRIC_GW}/24"),
        "dev",
        "br0",
    ])?;
    ip(&["-n", &fabric, "link", "set", "br0", "up"])?;
    Ok(())
}

/// Creates a compute host: namespace, uplink `eth0` on the fabric, default
/// route via the fabric gateway (proxy ARP needs a default route).
pub fn create_host(name: &str, index: usize) -> Result<Host> {
    let ns = ns_name(name);
    let fabric = fabric_ns();
    add_ns(&ns)?;
    let peer = format!("up-{name}");
    ip(&[
        "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &peer, "netns",
        &fabric,
    ])
    .with_context(|| format!("cannot create the uplink of {name}"))?;
    ip(&["-n", &fabric, "link", "set", &peer, "master", "br0", "up"])?;
    let addr = host_ip(index);
    ip(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{addr}/24"),
        "dev",
        "eth0",
    ])?;
    ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
    ip(&[
        "-n",
        &ns,
        "route",
        "add",
        "default",
        "via",
        &FABRIC_GW.to_string(),
        "dev",
        "eth0",
    ])?;
    sysctl(&ns, "net.ipv4.ip_forward", "1")?;
    Ok(Host {
        name: name.to_string(),
        ns,
        ip: addr,
        agent_pid: None,
    })
}

/// A tap name as Nova makes them: `tap` + the first 11 characters of the
/// Neutron port id (here derived from the workload's identity).
pub fn tap_name(namespace: &str, name: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in format!("{namespace}/{name}").bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("tap{:011x}", h & 0xfff_ffff_ffff)
}

/// Creates a workload namespace plugged into its host by a tap veth, with
/// its address and the Calico-style default route.
pub fn create_workload(
    host: &Host,
    namespace: &str,
    name: &str,
    addr: Ipv4Addr,
) -> Result<Workload> {
    let iface = tap_name(namespace, name);
    plug(host, namespace, name, &iface, addr, WORKLOAD_GW)
}

/// Plugs a VM as Nova does for a bound Neutron port: tap `iface` on the
/// host, the port's address as a /32 in the VM, default route via the
/// subnet's gateway (which the host answers by proxy ARP).
pub fn plug(
    host: &Host,
    namespace: &str,
    name: &str,
    iface: &str,
    addr: Ipv4Addr,
    gateway: &str,
) -> Result<Workload> {
    let ns = ns_name(&format!("w-{namespace}-{name}"));
    add_ns(&ns)?;
    ip(&[
        "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", iface, "netns",
        &host.ns,
    ])?;
    ip(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{addr}/32"),
        "dev",
        "eth0",
    ])?;
    ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
    ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    ip(&[
        "-n", &ns, "route", "add", gateway, "dev", "eth0", "scope", "link",
    ])?;
    ip(&[
        "-n", &ns, "route", "add", "default", "via", gateway, "dev", "eth0",
    ])?;
    ip(&["-n", &host.ns, "link", "set", iface, "up"])?;
    Ok(Workload {
        namespace: namespace.to_string(),
        name: name.to_string(),
        host: host.name.clone(),
        ns,
        iface: iface.to_string(),
        ip: addr,
        labels: Default::default(),
        server_pid: None,
        client_pid: None,
        instance: None,
    })
}
