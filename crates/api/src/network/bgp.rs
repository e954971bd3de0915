//! BGP kinds: AS numbers, BGPPeer and BGPConfiguration.

use std::fmt;
use std::net::IpAddr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::meta::ObjectMeta;
use crate::resource::{resource, Spec};
use crate::validate::{check_name, check_selector, parse_net, FieldErrors};

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
