//! The lab plays Nova: a port bound to a lab host becomes a "VM", a
//! namespace plugged into that host by a veth named as Nova names taps
//! (`tap` + the first 11 characters of the port id), with the port's
//! address and its subnet's gateway, and a small server on the ports the
//! demo probes.

use std::net::Ipv4Addr;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::controller::openstack_json;
use crate::lab::sibling;
use crate::netns::{del_ns, spawn};
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
    let (addr, subnet_id) =
        first_ipv4(&port).with_context(|| format!("port {port_id} has no IPv4 address"))?;
    let subnet = openstack_json(&["subnet", "show", &subnet_id])?;
    let gateway = subnet["gateway_ip"]
        .as_str()
        .with_context(|| format!("subnet {subnet_id} has no gateway"))?;
    plug_vm(state, name, port_id, &host.name, addr, gateway)
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
    let mut vm = plug(
        &host,
        VM_NAMESPACE,
        name,
        &tap_for_port(port_id),
        addr,
        gateway,
    )?;
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
    procs::stop(&vm.server_pid.into_iter().collect::<Vec<_>>(), Until::Gone)?;
    del_ns(&vm.ns);
    state.save()
}
