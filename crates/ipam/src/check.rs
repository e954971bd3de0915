//! The IPAM consistency checker behind `calicoctl ipam check` (ctl
//! `commands/ipam/check.go`), and the report it writes, which
//! `calicoctl ipam release --from-report` reads (same JSON as upstream's).
//!
//! An allocation is *in use* when a WorkloadEndpoint's `ipNetworks` or a
//! Node's tunnel address holds it (or it is reserved for Windows). The check
//! finds:
//! - allocations not in use: leaked (their workload endpoint or node is gone),
//! - addresses in use in an active pool without an allocation (OpenStack
//!   workload addresses are assigned by Neutron, not Calico IPAM: counted
//!   apart, not as problems),
//! - handles no allocation refers to, and handles allocations name but that
//!   do not exist,
//! - blocks affine to nodes that no longer exist,
//! - stored IPAM values that do not decode.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use calico_api::config::ClusterInformation;
use calico_api::endpoint::WorkloadEndpoint;
use calico_api::network::Node;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::block::{
    ATTR_NAMESPACE, ATTR_NODE, ATTR_POD, ATTR_TIMESTAMP, ATTR_TYPE, WINDOWS_RESERVED_HANDLE,
};
use crate::error::Result;
use crate::release::ReleaseOptions;
use crate::Ipam;

/// One allocation, as the report records it (upstream's field names).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Allocation {
    pub ip: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub handle: String,
    #[serde(
        rename = "sequenceNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sequence_number: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub alloc_type: String,
    #[serde(
        rename = "creationTimestamp",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub creation_timestamp: String,
    /// Held by a workload or node; false = leaked.
    #[serde(rename = "inUse", default)]
    pub in_use: bool,
    /// From a block that is not affine to the allocation's node.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub borrowed: bool,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub owners: Vec<String>,
    /// Block and attribute text (not in upstream's report; for printing).
    #[serde(skip)]
    pub block: Option<IpNet>,
    #[serde(skip)]
    pub attr_string: String,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<String>, D::Error> {
    Ok(Option::deserialize(d)?.unwrap_or_default())
}

/// A handle no allocation refers to (Go field names, as upstream writes them).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct HandleInfo {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "UID", default)]
    pub uid: Option<String>,
    /// The handle key's revision when checked: deleted only if unchanged.
    #[serde(rename = "Revision", default)]
    pub revision: String,
}

/// The machine-readable report (`calicoctl ipam check -o FILE`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub version: String,
    #[serde(rename = "clusterGUID", default)]
    pub cluster_guid: String,
    #[serde(rename = "datastoreLocked", default)]
    pub datastore_locked: bool,
    #[serde(rename = "clusterInformationRevision", default)]
    pub cluster_info_revision: String,
    #[serde(rename = "clusterType", default)]
    pub cluster_type: String,
    /// Address → its allocations (more than one means a corrupt overlap).
    #[serde(default)]
    pub allocations: BTreeMap<String, Vec<Allocation>>,
    #[serde(
        rename = "leakedHandles",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub leaked_handles: Vec<HandleInfo>,
}

/// The cluster identity a report is tied to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterMeta {
    pub guid: String,
    pub cluster_type: String,
    /// ClusterInformation `default`'s resourceVersion ("" if there is none).
    pub revision: String,
    /// `datastoreReady: false`.
    pub locked: bool,
}

impl Ipam {
    /// ClusterInformation `default` (all empty if it does not exist).
    pub fn cluster_meta(&self) -> Result<ClusterMeta> {
        Ok(
            match self.client().get_as::<ClusterInformation>("", "default")? {
                Some(ci) => ClusterMeta {
                    guid: ci.spec.cluster_guid,
                    cluster_type: ci.spec.cluster_type,
                    revision: ci.metadata.resource_version,
                    locked: ci.spec.datastore_ready == Some(false),
                },
                None => ClusterMeta::default(),
            },
        )
    }
}

/// Everything `check` found.
#[derive(Clone, Debug, Default)]
pub struct CheckResult {
    pub cluster: ClusterMeta,
    /// `(block, affinity)` in key order.
    pub blocks: Vec<(IpNet, Option<String>)>,
    /// Undecodable IPAM keys and why.
    pub corrupt: Vec<(String, String)>,
    /// CIDRs of the enabled pools.
    pub active_pools: Vec<IpNet>,
    pub node_ips: usize,
    pub workload_ips: usize,
    /// Address → who holds it.
    pub in_use: BTreeMap<IpAddr, Vec<String>>,
    pub allocations: BTreeMap<IpAddr, Vec<Allocation>>,
    pub allocations_by_node: BTreeMap<String, usize>,
    pub num_handles: usize,
    /// Allocated, held by nobody.
    pub leaked: Vec<IpAddr>,
    /// Held by a workload or node in an active pool, not allocated.
    pub not_allocated: Vec<(IpAddr, String)>,
    /// Held by a workload or node, outside every active pool.
    pub not_in_pool: Vec<(IpAddr, String)>,
    /// Addresses of OpenStack workloads (Neutron's IPAM) in active pools
    /// without a Calico allocation: expected, not a problem.
    pub neutron_assigned: Vec<(IpAddr, String)>,
    pub multiple_owners: Vec<(IpAddr, Vec<String>)>,
    pub leaked_handles: Vec<HandleInfo>,
    /// Handles named by allocations that do not exist.
    pub missing_handles: Vec<String>,
    /// `(block, node)`: blocks affine to a node that does not exist.
    pub orphaned_blocks: Vec<(IpNet, String)>,
}

impl CheckResult {
    pub fn problems(&self) -> usize {
        self.leaked.len()
            + self.not_allocated.len()
            + self.not_in_pool.len()
            + self.leaked_handles.len()
            + self.orphaned_blocks.len()
            + self.corrupt.len()
    }

    pub fn report(&self, version: &str) -> Report {
        Report {
            version: version.to_string(),
            cluster_guid: self.cluster.guid.clone(),
            datastore_locked: self.cluster.locked,
            cluster_info_revision: self.cluster.revision.clone(),
            cluster_type: self.cluster.cluster_type.clone(),
            allocations: self
                .allocations
                .iter()
                .map(|(ip, a)| (ip.to_string(), a.clone()))
                .collect(),
            leaked_handles: self.leaked_handles.clone(),
        }
    }
}

fn normalise_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<IpNet>().ok().map(|n| n.addr()))
}

/// The tunnel addresses a node holds (as upstream's `getNodeIPs`, plus the
/// IPv6 ones).
pub fn node_tunnel_ips(n: &Node) -> Vec<IpAddr> {
    let mut v = vec![
        n.spec.ipv4_vxlan_tunnel_addr.as_str(),
        n.spec.ipv6_vxlan_tunnel_addr.as_str(),
    ];
    if let Some(w) = &n.spec.wireguard {
        v.push(&w.interface_ipv4_address);
        v.push(&w.interface_ipv6_address);
    }
    if let Some(b) = &n.spec.bgp {
        v.push(&b.ipv4_ipip_tunnel_addr);
    }
    v.into_iter().filter_map(normalise_ip).collect()
}

fn attr_string(handle: Option<&str>, secondary: &BTreeMap<String, String>) -> String {
    let kvs: Vec<String> = secondary.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "Main:{} Extra:{}",
        handle.unwrap_or("<none>"),
        kvs.join(",")
    )
}

impl Ipam {
    /// Cross-checks blocks, handles, pools, nodes and workload endpoints.
    pub fn check(&self) -> Result<CheckResult> {
        let mut r = CheckResult {
            cluster: self.cluster_meta()?,
            ..Default::default()
        };
        let snap = self.snapshot()?;
        r.corrupt = snap.corrupt.clone();
        let mut handles_in_use: BTreeSet<String> = BTreeSet::new();
        for b in &snap.blocks {
            let b = &b.value;
            r.blocks.push((b.cidr, b.affinity.clone()));
            let owner = b.host().unwrap_or("").to_string();
            for (ord, ip, attr) in b.allocated() {
                let handle = attr.handle().map(str::to_string);
                let mut a = Allocation {
                    ip: ip.to_string(),
                    sequence_number: Some(b.sequence_number_for(ord)),
                    block: Some(b.cidr),
                    attr_string: attr_string(handle.as_deref(), &attr.secondary),
                    ..Default::default()
                };
                if let Some(h) = &handle {
                    if h == WINDOWS_RESERVED_HANDLE {
                        a.in_use = true;
                        a.owners.push("Reserved for Windows".into());
                    } else {
                        a.handle = h.clone();
                        handles_in_use.insert(h.clone());
                    }
                }
                let get = |k: &str| attr.secondary.get(k).cloned().unwrap_or_default();
                a.node = match attr.secondary.get(ATTR_NODE) {
                    Some(n) if !n.is_empty() => n.clone(),
                    _ => owner.clone(),
                };
                a.pod = get(ATTR_POD);
                a.namespace = get(ATTR_NAMESPACE);
                a.alloc_type = get(ATTR_TYPE);
                a.creation_timestamp = get(ATTR_TIMESTAMP);
                a.borrowed = a.node != owner;
                *r.allocations_by_node.entry(a.node.clone()).or_default() += 1;
                r.allocations.entry(ip).or_default().push(a);
            }
        }

        let pools = self.pools()?;
        r.active_pools = pools
            .iter()
            .filter(|p| p.enabled())
            .map(|p| p.net)
            .collect();

        let nodes = self.client().list_as::<Node>(None)?;
        let node_names: BTreeSet<&str> = nodes.iter().map(|n| n.metadata.name.as_str()).collect();
        let mut openstack_owners: BTreeSet<String> = BTreeSet::new();
        for n in &nodes {
            for ip in node_tunnel_ips(n) {
                r.node_ips += 1;
                r.in_use
                    .entry(ip)
                    .or_default()
                    .push(format!("Node({})", n.metadata.name));
            }
        }
        for w in self.client().list_as::<WorkloadEndpoint>(None)? {
            let owner = format!("Workload({}/{})", w.metadata.namespace, w.metadata.name);
            if w.spec.orchestrator == "openstack" {
                openstack_owners.insert(owner.clone());
            }
            for net in &w.spec.ip_networks {
                if let Some(ip) = normalise_ip(net) {
                    r.workload_ips += 1;
                    r.in_use.entry(ip).or_default().push(owner.clone());
                }
            }
        }
        for (ip, owners) in &r.in_use {
            if let Some(allocs) = r.allocations.get_mut(ip) {
                for a in allocs {
                    a.in_use = true;
                    a.owners.extend(owners.iter().cloned());
                }
            }
            if owners.len() > 1 {
                r.multiple_owners.push((*ip, owners.clone()));
            }
        }

        for (ip, allocs) in &r.allocations {
            if !allocs.iter().any(|a| a.in_use) {
                r.leaked.push(*ip);
            }
        }
        for (ip, owners) in &r.in_use {
            if r.allocations.contains_key(ip) {
                continue;
            }
            let owner = owners.join(", ");
            if !r.active_pools.iter().any(|p| p.contains(ip)) {
                r.not_in_pool.push((*ip, owner));
            } else if owners.iter().all(|o| openstack_owners.contains(o)) {
                r.neutron_assigned.push((*ip, owner));
            } else {
                r.not_allocated.push((*ip, owner));
            }
        }

        r.num_handles = snap.handles.len();
        let handle_ids: BTreeSet<&str> = snap.handles.iter().map(|(id, _)| id.as_str()).collect();
        for (id, h) in &snap.handles {
            if !handles_in_use.contains(id) {
                r.leaked_handles.push(HandleInfo {
                    id: id.clone(),
                    uid: None,
                    revision: h.rev.to_string(),
                });
            }
        }
        r.missing_handles = handles_in_use
            .iter()
            .filter(|h| !handle_ids.contains(h.as_str()))
            .cloned()
            .collect();

        for b in &snap.blocks {
            if let Some(host) = b.value.host() {
                if !node_names.contains(host) {
                    r.orphaned_blocks.push((b.value.cidr, host.to_string()));
                }
            }
        }
        Ok(r)
    }
}

/// The leaked addresses and handles common to every report (an address
/// must be leaked in all of them; a handle must also be at the same
/// revision), as release requests that only apply while the address is still
/// allocated under the same handle and sequence number.
pub fn merge_reports(reports: &[Report]) -> (Vec<ReleaseOptions>, Vec<HandleInfo>) {
    let mut ips: Option<BTreeMap<String, ReleaseOptions>> = None;
    let mut handles: Option<BTreeMap<String, HandleInfo>> = None;
    for rep in reports {
        let mut merged = BTreeMap::new();
        for allocs in rep.allocations.values() {
            for a in allocs {
                if a.in_use || ips.as_ref().is_some_and(|m| !m.contains_key(&a.ip)) {
                    continue;
                }
                let Ok(addr) = a.ip.parse::<IpAddr>() else {
                    continue;
                };
                merged.insert(
                    a.ip.clone(),
                    ReleaseOptions {
                        address: addr,
                        handle: (!a.handle.is_empty()).then(|| a.handle.clone()),
                        sequence_number: a.sequence_number,
                    },
                );
            }
        }
        ips = Some(merged);
        let mut mh = BTreeMap::new();
        for h in &rep.leaked_handles {
            match &handles {
                None => {
                    mh.insert(h.id.clone(), h.clone());
                }
                Some(prev) if prev.get(&h.id).is_some_and(|p| p.revision == h.revision) => {
                    mh.insert(h.id.clone(), h.clone());
                }
                Some(_) => {}
            }
        }
        handles = Some(mh);
    }
    (
        ips.unwrap_or_default().into_values().collect(),
        handles.unwrap_or_default().into_values().collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(ip: &str, handle: &str, in_use: bool) -> Allocation {
        Allocation {
            ip: ip.into(),
            handle: handle.into(),
            sequence_number: Some(3),
            in_use,
            ..Default::default()
        }
    }

    #[test]
    fn report_json_matches_upstream_names() {
        let mut rep = Report {
            version: "v0.1.0".into(),
            ..Default::default()
        };
        rep.allocations
            .insert("10.0.0.1".into(), vec![alloc("10.0.0.1", "h1", false)]);
        rep.leaked_handles.push(HandleInfo {
            id: "h2".into(),
            uid: None,
            revision: "7".into(),
        });
        let v = serde_json::to_value(&rep).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "version": "v0.1.0", "clusterGUID": "", "datastoreLocked": false,
                "clusterInformationRevision": "", "clusterType": "",
                "allocations": {"10.0.0.1": [{"ip": "10.0.0.1", "handle": "h1", "sequenceNumber": 3, "inUse": false, "owners": []}]},
                "leakedHandles": [{"ID": "h2", "UID": null, "Revision": "7"}]
            })
        );
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back.allocations["10.0.0.1"][0].handle, "h1");
        // Upstream writes "owners": null for an allocation nobody holds.
        let up: Allocation =
            serde_json::from_str(r#"{"ip":"10.0.0.2","inUse":false,"owners":null}"#).unwrap();
        assert!(up.owners.is_empty());
    }

    #[test]
    fn merge_keeps_what_every_report_calls_leaked() {
        let mut a = Report::default();
        let mut b = Report::default();
        for (ip, h) in [("10.0.0.1", "h1"), ("10.0.0.2", "h2"), ("10.0.0.3", "h3")] {
            a.allocations.insert(ip.into(), vec![alloc(ip, h, false)]);
        }
        b.allocations
            .insert("10.0.0.1".into(), vec![alloc("10.0.0.1", "h1", false)]);
        b.allocations
            .insert("10.0.0.2".into(), vec![alloc("10.0.0.2", "h2", true)]);
        b.allocations
            .insert("10.0.0.4".into(), vec![alloc("10.0.0.4", "h4", false)]);
        a.leaked_handles = vec![
            HandleInfo {
                id: "x".into(),
                uid: None,
                revision: "1".into(),
            },
            HandleInfo {
                id: "y".into(),
                uid: None,
                revision: "1".into(),
            },
        ];
        b.leaked_handles = vec![
            HandleInfo {
                id: "x".into(),
                uid: None,
                revision: "1".into(),
            },
            HandleInfo {
                id: "y".into(),
                uid: None,
                revision: "2".into(),
            },
        ];
        let (ips, handles) = merge_reports(&[a.clone(), b]);
        assert_eq!(ips.len(), 1);
        assert_eq!(ips[0].address.to_string(), "10.0.0.1");
        assert_eq!(ips[0].handle.as_deref(), Some("h1"));
        assert_eq!(ips[0].sequence_number, Some(3));
        assert_eq!(
            handles.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
            ["x"]
        );
        let (ips, handles) = merge_reports(&[a]);
        assert_eq!((ips.len(), handles.len()), (3, 2));
    }
}
