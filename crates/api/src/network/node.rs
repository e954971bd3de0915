//! Node: a compute host running calico-node, with its addresses and status.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::bgp::AsNumber;
use crate::meta::ObjectMeta;
use crate::resource::Spec;
use crate::validate::{check_name, FieldErrors};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeBgpSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    #[serde(
        default,
        rename = "ipv4Address",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_address: String,
    #[serde(
        default,
        rename = "ipv6Address",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_address: String,
    #[serde(
        default,
        rename = "ipv4IPIPTunnelAddr",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_ipip_tunnel_addr: String,
    #[serde(
        default,
        rename = "routeReflectorClusterID",
        skip_serializing_if = "String::is_empty"
    )]
    pub route_reflector_cluster_id: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrchRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    #[serde(default)]
    pub orchestrator: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeAddress {
    pub address: String,
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub address_type: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeWireguardSpec {
    #[serde(
        default,
        rename = "interfaceIPv4Address",
        skip_serializing_if = "String::is_empty"
    )]
    pub interface_ipv4_address: String,
    #[serde(
        default,
        rename = "interfaceIPv6Address",
        skip_serializing_if = "String::is_empty"
    )]
    pub interface_ipv6_address: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBgpSpec>,
    #[serde(
        default,
        rename = "ipv4VXLANTunnelAddr",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_vxlan_tunnel_addr: String,
    #[serde(
        default,
        rename = "vxlanTunnelMACAddr",
        skip_serializing_if = "String::is_empty"
    )]
    pub vxlan_tunnel_mac_addr: String,
    #[serde(
        default,
        rename = "ipv6VXLANTunnelAddr",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_vxlan_tunnel_addr: String,
    #[serde(
        default,
        rename = "vxlanTunnelMACAddrV6",
        skip_serializing_if = "String::is_empty"
    )]
    pub vxlan_tunnel_mac_addr_v6: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orch_refs: Vec<OrchRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<NodeWireguardSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
}

fn check_ip_with_prefix(field: &str, s: &str, errs: &mut FieldErrors) {
    if !s.is_empty() && s.parse::<IpNet>().is_err() && s.parse::<IpAddr>().is_err() {
        errs.add(
            field,
            format!("{s:?} is not a valid address (expected e.g. 10.0.0.1/24)"),
        );
    }
}

fn check_ip(field: &str, s: &str, errs: &mut FieldErrors) {
    if !s.is_empty() && s.parse::<IpAddr>().is_err() {
        errs.add(field, format!("{s:?} is not a valid IP address"));
    }
}

fn check_mac(field: &str, s: &str, errs: &mut FieldErrors) {
    let ok = s.split(':').count() == 6
        && s.split(':')
            .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok());
    if !s.is_empty() && !ok {
        errs.add(field, format!("{s:?} is not a valid MAC address"));
    }
}

impl Spec for NodeSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        if let Some(b) = &self.bgp {
            if *b == NodeBgpSpec::default() {
                errs.add(
                    "spec.bgp",
                    "spec.bgp must not be empty: set ipv4Address or ipv6Address, or remove it",
                );
            }
            check_ip_with_prefix("spec.bgp.ipv4Address", &b.ipv4_address, errs);
            check_ip_with_prefix("spec.bgp.ipv6Address", &b.ipv6_address, errs);
            check_ip(
                "spec.bgp.ipv4IPIPTunnelAddr",
                &b.ipv4_ipip_tunnel_addr,
                errs,
            );
            if !b.route_reflector_cluster_id.is_empty()
                && b.route_reflector_cluster_id
                    .parse::<std::net::Ipv4Addr>()
                    .is_err()
            {
                errs.add(
                    "spec.bgp.routeReflectorClusterID",
                    "must be IPv4-formatted, e.g. 224.0.0.1",
                );
            }
        }
        check_ip(
            "spec.ipv4VXLANTunnelAddr",
            &self.ipv4_vxlan_tunnel_addr,
            errs,
        );
        check_ip(
            "spec.ipv6VXLANTunnelAddr",
            &self.ipv6_vxlan_tunnel_addr,
            errs,
        );
        check_mac("spec.vxlanTunnelMACAddr", &self.vxlan_tunnel_mac_addr, errs);
        check_mac(
            "spec.vxlanTunnelMACAddrV6",
            &self.vxlan_tunnel_mac_addr_v6,
            errs,
        );
        for (i, a) in self.addresses.iter().enumerate() {
            check_ip_with_prefix(&format!("spec.addresses[{i}].address"), &a.address, errs);
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub wireguard_public_key: String,
    #[serde(
        default,
        rename = "wireguardPublicKeyV6",
        skip_serializing_if = "String::is_empty"
    )]
    pub wireguard_public_key_v6: String,
    #[serde(default, rename = "podCIDRs", skip_serializing_if = "Vec::is_empty")]
    pub pod_cidrs: Vec<String>,
}

impl NodeStatus {
    pub fn is_empty(&self) -> bool {
        *self == NodeStatus::default()
    }
}

/// A compute host running calico-node. Unlike the other kinds it has a status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    pub api_version: String,
    pub kind: String,
    #[serde(default, deserialize_with = "crate::resource::null_as_default")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "crate::resource::null_as_default")]
    pub spec: NodeSpec,
    #[serde(
        default,
        deserialize_with = "crate::resource::null_as_default",
        skip_serializing_if = "NodeStatus::is_empty"
    )]
    pub status: NodeStatus,
}

impl Default for Node {
    fn default() -> Self {
        Node {
            api_version: crate::meta::API_VERSION.to_string(),
            kind: "Node".to_string(),
            metadata: ObjectMeta::default(),
            spec: NodeSpec::default(),
            status: NodeStatus::default(),
        }
    }
}

impl Node {
    pub fn new(name: impl Into<String>, spec: NodeSpec) -> Self {
        let mut n = Node::default();
        n.metadata.name = name.into();
        n.spec = spec;
        n
    }
}

impl crate::resource::Resource for Node {
    const KIND: &'static str = "Node";
    const PLURAL: &'static str = "nodes";
    const NAMESPACED: bool = false;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
    fn apply_defaults(&mut self) {}
    fn validate(&self) -> Result<(), FieldErrors> {
        let mut errs = FieldErrors::default();
        crate::resource::check_meta(&self.metadata, false, &mut errs);
        check_name(&self.metadata.name, &mut errs);
        self.spec.validate(&self.metadata, &mut errs);
        errs.into_result()
    }
}
