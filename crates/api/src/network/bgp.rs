//! BGP kinds: AS numbers, BGPPeer and BGPConfiguration.

use std::fmt;
use std::net::IpAddr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::meta::ObjectMeta;
use crate::resource::{resource, Spec};
use crate::validate::{
    check_ip_of_family, check_name, check_name_ref, check_selector, parse_masked_net, FieldErrors,
};

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
    #[serde(
        default,
        rename = "numAllowedLocalASNumbers",
        skip_serializing_if = "Option::is_none"
    )]
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

/// Splits `IP`, `IP:port` or `[IPv6]:port` as upstream's peerIP accepts
/// (ports 1-65535).
pub fn parse_peer_ip(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        if sa.port() == 0 {
            return Err(format!("{s:?} has port 0: peer ports are 1-65535"));
        }
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

impl BGPPeerSpec {
    /// Which peers the resource selects: node vs nodeSelector, peerIP vs
    /// peerSelector vs localWorkloadSelector, and the AS number each needs.
    fn check_peer_choice(&self, errs: &mut FieldErrors) {
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
            if self.as_number.is_some_and(|a| a.0 != 0) {
                errs.add(
                    "spec.asNumber",
                    "asNumber cannot be set together with peerSelector",
                );
            }
        }
        if !self.local_workload_selector.is_empty() {
            if !self.peer_ip.is_empty() {
                errs.add(
                    "spec.peerIP",
                    "peerIP must be empty when localWorkloadSelector is set",
                );
            }
            if !self.peer_selector.is_empty() {
                errs.add(
                    "spec.peerSelector",
                    "peerSelector must be empty when localWorkloadSelector is set",
                );
            }
            if self.as_number.is_none_or(|a| a.0 == 0) {
                errs.add(
                    "spec.asNumber",
                    "asNumber is required when localWorkloadSelector is set",
                );
            }
        }
        let peer = if self.peer_ip.is_empty() {
            None
        } else {
            match parse_peer_ip(&self.peer_ip) {
                Ok((ip, _)) => Some(ip),
                Err(m) => {
                    errs.add("spec.peerIP", m);
                    None
                }
            }
        };
        self.check_reachable_by(peer, errs);
    }

    /// reachableBy is the gateway to the peer: an address of its family.
    fn check_reachable_by(&self, peer: Option<IpAddr>, errs: &mut FieldErrors) {
        if self.reachable_by.is_empty() {
            return;
        }
        if self.peer_ip.is_empty() {
            errs.add(
                "spec.reachableBy",
                "reachableBy must be empty when peerIP is empty",
            );
        }
        match self.reachable_by.parse::<IpAddr>() {
            Err(_) => errs.add(
                "spec.reachableBy",
                format!("{:?} is not a valid IP address", self.reachable_by),
            ),
            Ok(gw) => {
                if peer.is_some_and(|p| p.is_ipv4() != gw.is_ipv4()) {
                    errs.add(
                        "spec.reachableBy",
                        "reachableBy and peerIP must be of the same IP family",
                    );
                }
            }
        }
    }
}

impl Spec for BGPPeerSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        self.check_peer_choice(errs);
        if !self.node.is_empty() {
            crate::validate::check_name_ref("spec.node", "node", &self.node, errs);
        }
        for (i, f) in self.filters.iter().enumerate() {
            crate::validate::check_name_ref(&format!("spec.filters[{i}]"), "BGPFilter", f, errs);
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

/// A community value: `aa:nn` of 16-bit numbers (standard) or `aa:nn:mm`
/// of 32-bit numbers (large). Returns why not, if not.
fn community_error(v: &str) -> Option<String> {
    let parts: Vec<&str> = v.split(':').collect();
    let bits = match parts.len() {
        2 => 16,
        3 => 32,
        _ => {
            return Some(format!(
                "invalid community {v:?}: expected aa:nn or aa:nn:mm"
            ))
        }
    };
    if !parts
        .iter()
        .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
    {
        return Some(format!(
            "invalid community {v:?}: expected aa:nn or aa:nn:mm"
        ));
    }
    let max = if bits == 16 {
        u64::from(u16::MAX)
    } else {
        u64::from(u32::MAX)
    };
    if parts
        .iter()
        .any(|p| p.parse::<u64>().map_or(true, |n| n > max))
    {
        return Some(format!(
            "invalid community {v:?}: each part of a {} community is a {bits}-bit number",
            if bits == 16 { "standard" } else { "large" }
        ));
    }
    None
}

const LOG_LEVELS: [&str; 6] = ["Trace", "Debug", "Info", "Warning", "Error", "Fatal"];

impl BGPConfigurationSpec {
    fn check_enums(&self, errs: &mut FieldErrors) {
        if let Some(l) = &self.log_severity_screen {
            if !l.is_empty() && !LOG_LEVELS.iter().any(|a| a.eq_ignore_ascii_case(l)) {
                errs.add(
                    "spec.logSeverityScreen",
                    format!(
                        "invalid value {l:?}: expected one of {} (any case)",
                        LOG_LEVELS.join(", ")
                    ),
                );
            }
        }
        one_of("spec.bindMode", &self.bind_mode, &["None", "NodeIP"], errs);
        one_of(
            "spec.serviceLoadBalancerAggregation",
            &self.service_load_balancer_aggregation,
            &["Enabled", "Disabled"],
            errs,
        );
    }

    fn check_addresses(&self, errs: &mut FieldErrors) {
        for (name, list) in [
            ("serviceLoadBalancerIPs", &self.service_load_balancer_ips),
            ("serviceExternalIPs", &self.service_external_ips),
            ("serviceClusterIPs", &self.service_cluster_ips),
        ] {
            for (i, b) in list.iter().enumerate() {
                if let Err(m) = parse_masked_net(&b.cidr) {
                    errs.add(format!("spec.{name}[{i}].cidr"), m);
                }
            }
        }
        check_ip_of_family(
            "spec.localWorkloadPeeringIPV4",
            &self.local_workload_peering_ipv4,
            4,
            errs,
        );
        check_ip_of_family(
            "spec.localWorkloadPeeringIPV6",
            &self.local_workload_peering_ipv6,
            6,
            errs,
        );
        for (i, iface) in self.ignored_interfaces.iter().enumerate() {
            let ok = iface != "*"
                && (1..=15).contains(&iface.len())
                && iface
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'*' | b'-'));
            if !ok {
                errs.add(
                    format!("spec.ignoredInterfaces[{i}]"),
                    format!("invalid interface name {iface:?}: 1-15 letters, digits, '_', '.', '-' or '*' wildcards (not just \"*\")"),
                );
            }
        }
    }

    fn check_communities(&self, errs: &mut FieldErrors) {
        for (i, c) in self.communities.iter().enumerate() {
            if c.name.is_empty() {
                errs.add(
                    format!("spec.communities[{i}].name"),
                    "a community needs a name",
                );
            } else {
                check_name_ref(
                    &format!("spec.communities[{i}].name"),
                    "community",
                    &c.name,
                    errs,
                );
            }
            if c.value.is_empty() {
                errs.add(
                    format!("spec.communities[{i}].value"),
                    "a community needs a value",
                );
            } else if let Some(m) = community_error(&c.value) {
                errs.add(format!("spec.communities[{i}].value"), m);
            }
        }
        if !self.communities.is_empty() && self.prefix_advertisements.is_empty() {
            errs.add(
                "spec.communities",
                "communities are defined but not used in prefixAdvertisements",
            );
        }
        for (i, p) in self.prefix_advertisements.iter().enumerate() {
            let f = format!("spec.prefixAdvertisements[{i}]");
            if p.cidr.is_empty() {
                errs.add(format!("{f}.cidr"), "cidr is required");
            } else if let Err(m) = parse_masked_net(&p.cidr) {
                errs.add(format!("{f}.cidr"), m);
            }
            if p.communities.is_empty() {
                errs.add(
                    format!("{f}.communities"),
                    "list at least one community to advertise",
                );
            }
            for (j, c) in p.communities.iter().enumerate() {
                let looks_like_value = c.contains(':');
                let defined = self.communities.iter().any(|n| &n.name == c);
                let problem = if looks_like_value {
                    community_error(c)
                } else if defined {
                    None
                } else {
                    Some(format!("{c:?} is neither a community value nor the name of one in spec.communities"))
                };
                if let Some(m) = problem {
                    errs.add(format!("{f}.communities[{j}]"), m);
                }
            }
        }
    }

    /// Cluster-wide settings that upstream's client accepts only in the
    /// `default` configuration, not in per-node ones.
    fn check_default_only(&self, errs: &mut FieldErrors) {
        let set = [
            (
                "nodeToNodeMeshEnabled",
                self.node_to_node_mesh_enabled.is_some(),
            ),
            ("asNumber", self.as_number.is_some()),
            (
                "serviceLoadBalancerIPs",
                !self.service_load_balancer_ips.is_empty(),
            ),
            ("serviceExternalIPs", !self.service_external_ips.is_empty()),
            ("serviceClusterIPs", !self.service_cluster_ips.is_empty()),
            ("nodeMeshPassword", self.node_mesh_password.is_some()),
            (
                "nodeMeshMaxRestartTime",
                self.node_mesh_max_restart_time.is_some(),
            ),
        ];
        for (field, is_set) in set {
            if is_set {
                errs.add(
                    format!("spec.{field}"),
                    format!("{field} can only be set in the \"default\" BGPConfiguration"),
                );
            }
        }
    }

    /// Node-to-node mesh settings mean nothing with the mesh turned off.
    fn check_mesh(&self, errs: &mut FieldErrors) {
        if self.node_to_node_mesh_enabled != Some(false) {
            return;
        }
        if self.node_mesh_password.is_some() {
            errs.add(
                "spec.nodeMeshPassword",
                "nodeMeshPassword cannot be set when nodeToNodeMeshEnabled is false",
            );
        }
        if self.node_mesh_max_restart_time.is_some() {
            errs.add(
                "spec.nodeMeshMaxRestartTime",
                "nodeMeshMaxRestartTime cannot be set when nodeToNodeMeshEnabled is false",
            );
        }
    }
}

impl Spec for BGPConfigurationSpec {
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        // Upstream omits a zero listenPort (it means "the default, 179").
        if self.listen_port == Some(0) {
            self.listen_port = None;
        }
    }

    fn validate(&self, meta: &ObjectMeta, errs: &mut FieldErrors) {
        self.check_enums(errs);
        self.check_addresses(errs);
        self.check_communities(errs);
        self.check_mesh(errs);
        if meta.name != "default" {
            self.check_default_only(errs);
        }
        if let Some(t) = &self.node_mesh_max_restart_time {
            if crate::duration::parse_go_duration(t).is_err() {
                errs.add(
                    "spec.nodeMeshMaxRestartTime",
                    format!("invalid duration {t:?} (expected e.g. 120s, 2m)"),
                );
            }
        }
    }
}

/// `default`, or `node.<nodename>` for per-node settings.
pub fn check_config_name(name: &str, errs: &mut FieldErrors) {
    let ok = name == "default"
        || name
            .strip_prefix("node.")
            .is_some_and(crate::validate::is_resource_name);
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
