//! The node's VXLAN tunnel address (calico-node `pkg/allocateip/allocateip.go`):
//! while an enabled IPv4 pool with `vxlanMode` Always or CrossSubnet selects
//! the node and allows Tunnel use, the node holds exactly one address from
//! such a pool, allocated under handle `vxlan-tunnel-addr-<node>` with
//! attributes `node: <node>`, `type: vxlanTunnelAddress`, and recorded in its
//! Node resource's `spec.ipv4VXLANTunnelAddr`. When no such pool remains the
//! address is released and the field cleared. Idempotent: a still-valid
//! address is kept.

use std::collections::BTreeMap;
use std::net::IpAddr;

use calico_api::network::{AllowedUse, EncapMode, IPPool, Node};
use calico_api::AnyResource;
use calico_client::{Client, ClientError};
use ipnet::IpNet;

use crate::assign::AutoAssignArgs;
use crate::block::{ATTR_NODE, ATTR_TYPE, TYPE_VXLAN};
use crate::error::{IpamError, Result};
use crate::pools::{pool_infos, PoolInfo};
use crate::release::ReleaseOptions;
use crate::store::Retry;
use crate::Ipam;

/// `vxlan-tunnel-addr-<node>`, upstream's handle for the address.
pub fn vxlan_handle(node: &str) -> String {
    format!("vxlan-tunnel-addr-{node}")
}

/// The attributes upstream stores with the address.
pub fn vxlan_attrs(node: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (ATTR_NODE.to_string(), node.to_string()),
        (ATTR_TYPE.to_string(), TYPE_VXLAN.to_string()),
    ])
}

/// CIDRs of the enabled IPv4 VXLAN pools that select a node with these
/// labels and allow Tunnel addresses.
pub fn vxlan_pool_cidrs(pools: &[PoolInfo], labels: &BTreeMap<String, String>) -> Vec<IpNet> {
    pools
        .iter()
        .filter(|p| {
            p.enabled()
                && p.version() == 4
                && p.pool.spec.vxlan() != EncapMode::Never
                && p.allows(AllowedUse::Tunnel)
                && p.selects(labels)
        })
        .map(|p| p.net)
        .collect()
}

fn parse_addr(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<IpNet>().ok().map(|n| n.addr()))
}

/// Makes the node's VXLAN tunnel address what the pools call for; returns
/// it (`None`: no VXLAN pool applies). The Node resource must exist.
pub fn ensure_vxlan_tunnel_address(
    client: &Client,
    ipam: &Ipam,
    node_name: &str,
) -> Result<Option<IpAddr>> {
    let node = client
        .get_as::<Node>("", node_name)?
        .ok_or_else(|| IpamError::NodeNotFound(node_name.to_string()))?;
    let pools = pool_infos(&client.list_as::<IPPool>(None)?);
    let cidrs = vxlan_pool_cidrs(&pools, &node.metadata.labels);
    let handle = vxlan_handle(node_name);
    let current = parse_addr(&node.spec.ipv4_vxlan_tunnel_addr);

    if cidrs.is_empty() {
        ipam.release_by_handle(&handle)?;
        if let Some(ip) = current {
            // An address from before handles were used (no handle, no
            // attributes) is ours too; one with another handle is not.
            match ipam.assignment_attributes(ip)? {
                Some(a) if a.handle() == Some(handle.as_str()) => {
                    ipam.release_ips(&[ReleaseOptions::with_handle(ip, &handle)])?;
                }
                Some(a) if a.handle().is_none() && a.secondary.is_empty() => {
                    ipam.release_ips(&[ReleaseOptions::ip(ip)])?;
                }
                _ => {}
            }
        }
        if !node.spec.ipv4_vxlan_tunnel_addr.is_empty() {
            set_node_address(client, node_name, None)?;
        }
        return Ok(None);
    }

    if let Some(ip) = current {
        if let Some(a) = ipam.assignment_attributes(ip)? {
            let ours = a.secondary.get(ATTR_TYPE).map(String::as_str) == Some(TYPE_VXLAN)
                && a.secondary.get(ATTR_NODE).map(String::as_str) == Some(node_name);
            if ours && cidrs.iter().any(|c| c.contains(&ip)) {
                // Keep it, and nothing else under the handle.
                let extra: Vec<ReleaseOptions> = ipam
                    .ips_by_handle(&handle)?
                    .into_iter()
                    .filter(|x| *x != ip)
                    .map(|x| ReleaseOptions::with_handle(x, &handle))
                    .collect();
                if !extra.is_empty() {
                    ipam.release_ips(&extra)?;
                }
                return Ok(Some(ip));
            }
        }
    }

    // No valid address: drop whatever the handle holds and assign anew.
    ipam.release_by_handle(&handle)?;
    let args = AutoAssignArgs {
        num4: 1,
        handle_id: Some(handle.clone()),
        attrs: vxlan_attrs(node_name),
        hostname: node_name.to_string(),
        ipv4_pools: cidrs,
        intended_use: AllowedUse::Tunnel,
        ..Default::default()
    };
    let assigned = ipam.auto_assign(&args)?;
    if let Some(e) = assigned.v4.partial_fulfillment_error() {
        let _ = ipam.release_by_handle(&handle);
        return Err(e);
    }
    let ip = assigned.v4.addrs()[0];
    if let Err(e) = set_node_address(client, node_name, Some(ip)) {
        let _ = ipam.release_by_handle(&handle);
        return Err(e);
    }
    Ok(Some(ip))
}

/// Writes `spec.ipv4VXLANTunnelAddr` (compare-and-swap on the Node's
/// resourceVersion, re-read on conflict).
fn set_node_address(client: &Client, node_name: &str, addr: Option<IpAddr>) -> Result<()> {
    let want = addr.map(|a| a.to_string()).unwrap_or_default();
    let mut retry = Retry::new("updating the node's tunnel address");
    loop {
        retry.attempt()?;
        let mut node = client
            .get_as::<Node>("", node_name)?
            .ok_or_else(|| IpamError::NodeNotFound(node_name.to_string()))?;
        if node.spec.ipv4_vxlan_tunnel_addr == want {
            return Ok(());
        }
        node.spec.ipv4_vxlan_tunnel_addr = want.clone();
        match client.replace(AnyResource::Node(node)) {
            Ok(_) => return Ok(()),
            Err(ClientError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
