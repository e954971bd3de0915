//! Node: a compute host running calico-node, with its addresses and status.

use serde::{Deserialize, Serialize};

use super::bgp::AsNumber;
use crate::meta::ObjectMeta;
use crate::resource::Spec;
use crate::validate::{
    check_cidr_of_family, check_ip_of_family, check_name, parse_masked_net, FieldErrors,
};

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

fn check_mac(field: &str, s: &str, errs: &mut FieldErrors) {
    let ok = s.split(':').count() == 6
        && s.split(':')
            .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok());
    if !s.is_empty() && !ok {
        errs.add(field, format!("{s:?} is not a valid MAC address"));
    }
}

/// The address types a node may list.
const ADDRESS_TYPES: [&str; 3] = ["CalicoNodeIP", "InternalIP", "ExternalIP"];

fn check_bgp(b: &NodeBgpSpec, errs: &mut FieldErrors) {
    if *b == NodeBgpSpec::default() {
        errs.add(
            "spec.bgp",
            "spec.bgp must not be empty: set ipv4Address or ipv6Address, or remove it",
        );
    }
    check_cidr_of_family("spec.bgp.ipv4Address", &b.ipv4_address, 4, errs);
    check_cidr_of_family("spec.bgp.ipv6Address", &b.ipv6_address, 6, errs);
    check_ip_of_family(
        "spec.bgp.ipv4IPIPTunnelAddr",
        &b.ipv4_ipip_tunnel_addr,
        4,
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

fn check_addresses(addresses: &[NodeAddress], errs: &mut FieldErrors) {
    for (i, a) in addresses.iter().enumerate() {
        if let Err(m) = parse_masked_net(&a.address) {
            errs.add(format!("spec.addresses[{i}].address"), m);
        }
        if !a.address_type.is_empty() && !ADDRESS_TYPES.contains(&a.address_type.as_str()) {
            errs.add(
                format!("spec.addresses[{i}].type"),
                format!(
                    "unknown address type {:?}: expected {}",
                    a.address_type,
                    ADDRESS_TYPES.join(", ")
                ),
            );
        }
    }
}

impl Spec for NodeSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        if let Some(b) = &self.bgp {
            check_bgp(b, errs);
        }
        check_ip_of_family(
            "spec.ipv4VXLANTunnelAddr",
            &self.ipv4_vxlan_tunnel_addr,
            4,
            errs,
        );
        check_ip_of_family(
            "spec.ipv6VXLANTunnelAddr",
            &self.ipv6_vxlan_tunnel_addr,
            6,
            errs,
        );
        check_mac("spec.vxlanTunnelMACAddr", &self.vxlan_tunnel_mac_addr, errs);
        check_mac(
            "spec.vxlanTunnelMACAddrV6",
            &self.vxlan_tunnel_mac_addr_v6,
            errs,
        );
        if let Some(w) = &self.wireguard {
            check_ip_of_family(
                "spec.wireguard.interfaceIPv4Address",
                &w.interface_ipv4_address,
                4,
                errs,
            );
            check_ip_of_family(
                "spec.wireguard.interfaceIPv6Address",
                &w.interface_ipv6_address,
                6,
                errs,
            );
        }
        check_addresses(&self.addresses, errs);
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

    fn validate(&self, errs: &mut FieldErrors) {
        for (field, key) in [
            ("status.wireguardPublicKey", &self.wireguard_public_key),
            ("status.wireguardPublicKeyV6", &self.wireguard_public_key_v6),
        ] {
            if !key.is_empty() && !is_wireguard_key(key) {
                errs.add(
                    field,
                    format!("{key:?} is not a WireGuard public key (44 characters of base64)"),
                );
            }
        }
    }
}

/// A WireGuard key as text: 32 bytes in padded standard base64, that is 43
/// base64 characters and one '='.
fn is_wireguard_key(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 44
        && b[43] == b'='
        && b[..43]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/'))
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
        self.status.validate(&mut errs);
        errs.into_result()
    }
}
