//! Addressing and routing kinds: IPPool, IPReservation, IPAMConfiguration,
//! BGPPeer, BGPConfiguration and Node.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::meta::ObjectMeta;
use crate::resource::{resource, Spec};
use crate::validate::{check_name, check_selector, parse_cidr, parse_net, FieldErrors};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EncapMode {
    #[default]
    Never,
    Always,
    CrossSubnet,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllowedUse {
    Workload,
    Tunnel,
    LoadBalancer,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignmentMode {
    Automatic,
    Manual,
}

/// IPv4 link-local: never a pool (upstream rule).
const LINK_LOCAL_V4: &str = "169.254.0.0/16";
const LINK_LOCAL_V6: &str = "fe80::/10";

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPPoolSpec {
    #[serde(default)]
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan_mode: Option<EncapMode>,
    #[serde(default, rename = "ipipMode", skip_serializing_if = "Option::is_none")]
    pub ipip_mode: Option<EncapMode>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nat_outgoing: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    #[serde(
        default,
        rename = "disableBGPExport",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub disable_bgp_export: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u8>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_selector: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uses: Vec<AllowedUse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_mode: Option<AssignmentMode>,
    /// Deprecated v1 field; accepted only so that its error can say so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip: Option<serde_json::Value>,
    /// Deprecated v1 field; accepted only so that its error can say so.
    #[serde(
        default,
        rename = "nat-outgoing",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub nat_outgoing_v1: bool,
}

impl IPPoolSpec {
    /// The parsed CIDR (valid pools only).
    pub fn net(&self) -> Option<IpNet> {
        parse_cidr(&self.cidr).ok()
    }
    pub fn effective_block_size(&self) -> u8 {
        self.block_size.unwrap_or(match self.net() {
            Some(IpNet::V6(_)) => 122,
            _ => 26,
        })
    }
    pub fn allows(&self, use_: AllowedUse) -> bool {
        if self.allowed_uses.is_empty() {
            matches!(use_, AllowedUse::Workload | AllowedUse::Tunnel)
        } else {
            self.allowed_uses.contains(&use_)
        }
    }
    pub fn vxlan(&self) -> EncapMode {
        self.vxlan_mode.unwrap_or_default()
    }
    pub fn ipip(&self) -> EncapMode {
        self.ipip_mode.unwrap_or_default()
    }
}

impl Spec for IPPoolSpec {
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        // Normalise the CIDR text (e.g. upper-case IPv6) so read-back is canonical.
        if let Ok(net) = parse_cidr(&self.cidr) {
            self.cidr = net.to_string();
        }
        self.vxlan_mode.get_or_insert(EncapMode::Never);
        self.ipip_mode.get_or_insert(EncapMode::Never);
        self.block_size = Some(self.effective_block_size());
        if self.node_selector.is_empty() {
            self.node_selector = "all()".to_string();
        }
        if self.allowed_uses.is_empty() {
            self.allowed_uses = vec![AllowedUse::Workload, AllowedUse::Tunnel];
        }
        self.assignment_mode
            .get_or_insert(AssignmentMode::Automatic);
    }

    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        if self.ipip.is_some() {
            errs.add(
                "spec.ipip",
                "the v1 field ipip is no longer supported; use ipipMode: Always|CrossSubnet|Never",
            );
        }
        if self.nat_outgoing_v1 {
            errs.add(
                "spec.nat-outgoing",
                "the v1 field nat-outgoing is no longer supported; use natOutgoing",
            );
        }
        let net = if self.cidr.is_empty() {
            errs.add("spec.cidr", "cidr is required");
            None
        } else {
            match parse_cidr(&self.cidr) {
                Ok(n) => Some(n),
                Err(m) => {
                    errs.add("spec.cidr", m);
                    None
                }
            }
        };
        if self.ipip() != EncapMode::Never && self.vxlan() != EncapMode::Never {
            errs.add(
                "spec.vxlanMode",
                "ipipMode and vxlanMode cannot both be enabled on one pool",
            );
        }
        if let Some(net) = net {
            let v6 = matches!(net, IpNet::V6(_));
            if v6 && self.ipip() != EncapMode::Never {
                errs.add("spec.ipipMode", "IPIP is not supported on an IPv6 pool");
            }
            let (lo, hi) = if v6 { (116, 128) } else { (20, 32) };
            let bs = self.effective_block_size();
            if !(lo..=hi).contains(&bs) {
                errs.add(
                    "spec.blockSize",
                    format!(
                        "block size {bs} is out of range: IPv{} pools take {lo} to {hi}",
                        if v6 { 6 } else { 4 }
                    ),
                );
            } else if !self.disabled && net.prefix_len() > bs {
                errs.add(
                    "spec.cidr",
                    format!(
                        "IP pool size is too small for use with Calico IPAM: /{} is smaller than one /{bs} block",
                        net.prefix_len()
                    ),
                );
            }
            let ll: IpNet = if v6 { LINK_LOCAL_V6 } else { LINK_LOCAL_V4 }
                .parse()
                .unwrap();
            if ll.contains(&net.network()) || net.contains(&ll.network()) {
                errs.add(
                    "spec.cidr",
                    format!("{net} overlaps the link-local range {ll}"),
                );
            }
        }
        check_selector("spec.nodeSelector", &self.node_selector, errs);
        if !self.namespace_selector.is_empty() {
            check_selector("spec.namespaceSelector", &self.namespace_selector, errs);
        }
        let mut seen = Vec::new();
        for (i, u) in self.allowed_uses.iter().enumerate() {
            if seen.contains(u) {
                errs.add(
                    format!("spec.allowedUses[{i}]"),
                    format!("{u:?} is listed twice"),
                );
            }
            seen.push(*u);
        }
        if self.allowed_uses.contains(&AllowedUse::LoadBalancer) && self.allowed_uses.len() > 1 {
            errs.add(
                "spec.allowedUses",
                "LoadBalancer cannot be combined with other uses",
            );
        }
    }
}

resource!(
    /// A range of workload addresses with its encapsulation and NAT settings.
    IPPool, IPPoolSpec, kind = "IPPool", plural = "ippools", namespaced = false,
    name_rule = check_name
);

/// Returns the first pool whose CIDR overlaps `cidr`, skipping the pool named
/// `except` (the one being updated).
pub fn find_overlapping_pool<'a>(
    cidr: &IpNet,
    except: &str,
    pools: impl IntoIterator<Item = &'a IPPool>,
) -> Option<&'a IPPool> {
    pools.into_iter().find(|p| {
        p.metadata.name != except
            && p.spec
                .net()
                .is_some_and(|n| n.contains(&cidr.network()) || cidr.contains(&n.network()))
    })
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPReservationSpec {
    #[serde(default, rename = "reservedCIDRs")]
    pub reserved_cidrs: Vec<String>,
}

impl Spec for IPReservationSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        for (i, c) in self.reserved_cidrs.iter().enumerate() {
            if let Err(m) = parse_net(c) {
                errs.add(format!("spec.reservedCIDRs[{i}]"), m);
            }
        }
    }
}

resource!(
    /// Addresses IPAM must never hand out.
    IPReservation, IPReservationSpec, kind = "IPReservation", plural = "ipreservations",
    namespaced = false, name_rule = check_name
);

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IPAMConfigurationSpec {
    #[serde(default)]
    pub strict_affinity: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_blocks_per_host: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_allocate_blocks: Option<bool>,
}

impl Spec for IPAMConfigurationSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        if self.max_blocks_per_host.is_some_and(|m| m < 0) {
            errs.add(
                "spec.maxBlocksPerHost",
                "maxBlocksPerHost must be 0 (unlimited) or more",
            );
        }
    }
}

fn check_singleton_default(name: &str, errs: &mut FieldErrors) {
    if name != "default" {
        errs.add(
            "metadata.name",
            format!("invalid name {name:?}: this kind only has one resource, named \"default\""),
        );
    }
}

resource!(
    /// Cluster-wide IPAM settings (singleton `default`).
    IPAMConfiguration, IPAMConfigurationSpec, kind = "IPAMConfiguration",
    plural = "ipamconfigurations", namespaced = false, name_rule = check_singleton_default
);

/// A BGP AS number; upstream accepts a number, a numeric string, or the
/// dotted `high.low` form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AsNumber(pub u32);

impl AsNumber {
    pub fn parse_str(s: &str) -> Result<AsNumber, String> {
        if let Some((hi, lo)) = s.split_once('.') {
            let hi: u16 = hi.parse().map_err(|_| format!("invalid AS number {s:?}"))?;
            let lo: u16 = lo.parse().map_err(|_| format!("invalid AS number {s:?}"))?;
            return Ok(AsNumber(((hi as u32) << 16) | lo as u32));
        }
        s.parse::<u32>().map(AsNumber).map_err(|_| {
            format!("invalid AS number {s:?}: expected 0-4294967295 or the dotted form")
        })
    }
}

impl fmt::Display for AsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for AsNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for AsNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<AsNumber, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AsNumber;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an AS number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<AsNumber, E> {
                u32::try_from(v)
                    .map(AsNumber)
                    .map_err(|_| E::custom(format!("invalid AS number {v}: expected 0-4294967295")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<AsNumber, E> {
                u32::try_from(v)
                    .map(AsNumber)
                    .map_err(|_| E::custom(format!("invalid AS number {v}: expected 0-4294967295")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<AsNumber, E> {
                AsNumber::parse_str(&v.to_string()).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AsNumber, E> {
                AsNumber::parse_str(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BgpPassword {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPPeerSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(default, rename = "peerIP", skip_serializing_if = "String::is_empty")]
    pub peer_ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_selector: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer_selector: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_original_next_hop: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<BgpPassword>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_detection_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bird_gateway_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_allowed_local_as_numbers: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_security: Option<u8>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reachable_by: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub external_network: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_workload_selector: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_peering: Option<String>,
    #[serde(
        default,
        rename = "localASNumber",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_as_number: Option<AsNumber>,
}

/// Splits `IP`, `IP:port` or `[IPv6]:port` as upstream's peerIP accepts.
pub fn parse_peer_ip(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Ok((sa.ip(), Some(sa.port())));
    }
    Err(format!(
        "{s:?} is not a valid IP address (or IP:port, [IPv6]:port)"
    ))
}

fn one_of(field: &str, v: &Option<String>, allowed: &[&str], errs: &mut FieldErrors) {
    if let Some(v) = v {
        if !allowed.contains(&v.as_str()) {
            errs.add(
                field,
                format!(
                    "invalid value {v:?}: expected one of {}",
                    allowed.join(", ")
                ),
            );
        }
    }
}

impl Spec for BGPPeerSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        if !self.node.is_empty() && !self.node_selector.is_empty() {
            errs.add("spec.node", "node and nodeSelector cannot both be set");
        }
        if !self.node_selector.is_empty() {
            check_selector("spec.nodeSelector", &self.node_selector, errs);
        }
        if !self.peer_selector.is_empty() {
            check_selector("spec.peerSelector", &self.peer_selector, errs);
            if !self.peer_ip.is_empty() {
                errs.add(
                    "spec.peerIP",
                    "peerIP cannot be set together with peerSelector",
                );
            }
            if self.as_number.is_some() {
                errs.add(
                    "spec.asNumber",
                    "asNumber cannot be set together with peerSelector",
                );
            }
        } else {
            if self.peer_ip.is_empty() {
                errs.add("spec.peerIP", "peerIP is required (or peerSelector)");
            } else if let Err(m) = parse_peer_ip(&self.peer_ip) {
                errs.add("spec.peerIP", m);
            }
            if self.as_number.is_none() {
                errs.add("spec.asNumber", "asNumber is required when peerIP is set");
            }
        }
        if !self.node.is_empty() && !crate::validate::is_dns1123_subdomain(&self.node) {
            errs.add("spec.node", format!("invalid node name {:?}", self.node));
        }
        if !self.local_workload_selector.is_empty() {
            check_selector(
                "spec.localWorkloadSelector",
                &self.local_workload_selector,
                errs,
            );
        }
        one_of(
            "spec.nextHopMode",
            &self.next_hop_mode,
            &["Auto", "Self", "Keep"],
            errs,
        );
        one_of(
            "spec.sourceAddress",
            &self.source_address,
            &["UseNodeIP", "None"],
            errs,
        );
        one_of(
            "spec.failureDetectionMode",
            &self.failure_detection_mode,
            &["None", "BFDIfDirectlyConnected"],
            errs,
        );
        one_of(
            "spec.restartMode",
            &self.restart_mode,
            &["GracefulRestart", "LongLivedGracefulRestart"],
            errs,
        );
        one_of(
            "spec.birdGatewayMode",
            &self.bird_gateway_mode,
            &["Recursive", "DirectIfDirectlyConnected"],
            errs,
        );
        one_of(
            "spec.reversePeering",
            &self.reverse_peering,
            &["Auto", "Manual"],
            errs,
        );
        if self.keep_original_next_hop == Some(true) && self.next_hop_mode.is_some() {
            errs.add(
                "spec.keepOriginalNextHop",
                "keepOriginalNextHop and nextHopMode cannot both be set",
            );
        }
        if let Some(t) = &self.max_restart_time {
            if crate::duration::parse_go_duration(t).is_err() {
                errs.add(
                    "spec.maxRestartTime",
                    format!("invalid duration {t:?} (expected e.g. 120s, 2m)"),
                );
            }
        }
        if let Some(p) = &self.password {
            if let Some(r) = &p.secret_key_ref {
                if r.name.is_empty() || r.key.is_empty() {
                    errs.add("spec.password.secretKeyRef", "name and key are required");
                }
            }
        }
        if self.reachable_by.parse::<IpAddr>().is_err() && !self.reachable_by.is_empty() {
            errs.add(
                "spec.reachableBy",
                format!("{:?} is not a valid IP address", self.reachable_by),
            );
        }
    }
}

resource!(
    /// A BGP peering: an external router (ToR), or other Calico nodes.
    BGPPeer, BGPPeerSpec, kind = "BGPPeer", plural = "bgppeers", namespaced = false,
    name_rule = check_name
);

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceIpBlock {
    pub cidr: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Community {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrefixAdvertisement {
    #[serde(default)]
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPConfigurationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    #[serde(
        default,
        rename = "serviceLoadBalancerIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_load_balancer_ips: Vec<ServiceIpBlock>,
    #[serde(
        default,
        rename = "serviceExternalIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_external_ips: Vec<ServiceIpBlock>,
    #[serde(
        default,
        rename = "serviceClusterIPs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub service_cluster_ips: Vec<ServiceIpBlock>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<Community>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<BgpPassword>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_max_restart_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_interfaces: Vec<String>,
    #[serde(
        default,
        rename = "localWorkloadPeeringIPV4",
        skip_serializing_if = "String::is_empty"
    )]
    pub local_workload_peering_ipv4: String,
    #[serde(
        default,
        rename = "localWorkloadPeeringIPV6",
        skip_serializing_if = "String::is_empty"
    )]
    pub local_workload_peering_ipv6: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_load_balancer_aggregation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programmed_route_refresh_interval: Option<String>,
}

fn valid_community(v: &str) -> bool {
    let parts: Vec<&str> = v.split(':').collect();
    matches!(parts.len(), 2 | 3) && parts.iter().all(|p| p.parse::<u32>().is_ok())
}

impl Spec for BGPConfigurationSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        one_of(
            "spec.logSeverityScreen",
            &self.log_severity_screen,
            &[
                "Debug", "Info", "Warning", "Error", "Fatal", "DEBUG", "INFO", "WARNING", "ERROR",
                "FATAL",
            ],
            errs,
        );
        one_of("spec.bindMode", &self.bind_mode, &["None", "NodeIP"], errs);
        one_of(
            "spec.serviceLoadBalancerAggregation",
            &self.service_load_balancer_aggregation,
            &["Enabled", "Disabled"],
            errs,
        );
        for (name, list) in [
            ("serviceLoadBalancerIPs", &self.service_load_balancer_ips),
            ("serviceExternalIPs", &self.service_external_ips),
            ("serviceClusterIPs", &self.service_cluster_ips),
        ] {
            for (i, b) in list.iter().enumerate() {
                if let Err(m) = parse_net(&b.cidr) {
                    errs.add(format!("spec.{name}[{i}].cidr"), m);
                }
            }
        }
        for (i, c) in self.communities.iter().enumerate() {
            if !valid_community(&c.value) {
                errs.add(
                    format!("spec.communities[{i}].value"),
                    format!(
                        "invalid community {:?}: expected aa:nn or aa:nn:mm",
                        c.value
                    ),
                );
            }
        }
        for (i, p) in self.prefix_advertisements.iter().enumerate() {
            if let Err(m) = parse_net(&p.cidr) {
                errs.add(format!("spec.prefixAdvertisements[{i}].cidr"), m);
            }
            for (j, c) in p.communities.iter().enumerate() {
                if !valid_community(c) && !self.communities.iter().any(|n| &n.name == c) {
                    errs.add(
                        format!("spec.prefixAdvertisements[{i}].communities[{j}]"),
                        format!("{c:?} is neither a community value nor the name of one in spec.communities"),
                    );
                }
            }
        }
        if self.listen_port == Some(0) {
            errs.add("spec.listenPort", "listenPort must be 1-65535");
        }
    }
}

/// `default`, or `node.<nodename>` for per-node settings.
pub fn check_config_name(name: &str, errs: &mut FieldErrors) {
    let ok = name == "default"
        || name
            .strip_prefix("node.")
            .is_some_and(crate::validate::is_dns1123_subdomain);
    if !ok {
        errs.add(
            "metadata.name",
            format!("invalid name {name:?}: must be \"default\" or \"node.<nodename>\""),
        );
    }
}

resource!(
    /// BGP settings: global (`default`) or per node (`node.<name>`).
    BGPConfiguration, BGPConfigurationSpec, kind = "BGPConfiguration",
    plural = "bgpconfigurations", namespaced = false, name_rule = check_config_name
);

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
