//! Endpoint kinds: WorkloadEndpoint, HostEndpoint, NetworkSet and
//! GlobalNetworkSet.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::resource::{resource, Spec};
use crate::validate::{check_name, is_interface_name, parse_net, FieldErrors};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpNat {
    #[serde(rename = "internalIP")]
    pub internal_ip: String,
    #[serde(rename = "externalIP")]
    pub external_ip: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointPort {
    #[serde(default)]
    pub name: String,
    pub protocol: crate::numorstring::Protocol,
    #[serde(default)]
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    #[serde(default, rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// Which endpoint a port list belongs to: only workload ports may map a host
/// port, and only they may then go without a name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PortOwner {
    Workload,
    Host,
}

fn check_port_name(field: &str, p: &EndpointPort, owner: PortOwner, errs: &mut FieldErrors) {
    let host_mapped = p.host_port.is_some_and(|h| h != 0);
    if p.name.is_empty() {
        if owner == PortOwner::Host || !host_mapped {
            errs.add(
                field,
                "a port needs a name (a workload port may omit it only when it maps a hostPort)",
            );
        }
    } else if !crate::numorstring::is_port_name(&p.name) {
        errs.add(
            field,
            format!(
                "invalid port name {:?}: {}",
                p.name,
                crate::numorstring::PORT_NAME_RULE
            ),
        );
    }
}

fn check_host_mapping(f: &str, p: &EndpointPort, owner: PortOwner, errs: &mut FieldErrors) {
    if owner == PortOwner::Host {
        if p.host_port.is_some() || !p.host_ip.is_empty() {
            errs.add(
                format!("{f}.hostPort"),
                "hostPort and hostIP belong to workload endpoint ports only",
            );
        }
    } else if !p.host_ip.is_empty() {
        if let Err(m) = crate::validate::parse_masked_net(&p.host_ip) {
            errs.add(format!("{f}.hostIP"), m);
        }
    }
}

fn check_ports(ports: &[EndpointPort], owner: PortOwner, errs: &mut FieldErrors) {
    for (i, p) in ports.iter().enumerate() {
        let f = format!("spec.ports[{i}]");
        check_port_name(&format!("{f}.name"), p, owner, errs);
        if !p.protocol.supports_ports() {
            errs.add(
                format!("{f}.protocol"),
                "endpoint ports must be TCP, UDP or SCTP",
            );
        }
        if p.port == 0 {
            errs.add(format!("{f}.port"), "port must be 1-65535");
        }
        check_host_mapping(&f, p, owner, errs);
    }
}

/// Checks fields that name other resources (nodes, profiles, orchestrators).
fn check_refs(fields: &[(&str, &str, &str)], profiles: &[String], errs: &mut FieldErrors) {
    for (field, what, value) in fields {
        if !value.is_empty() {
            crate::validate::check_name_ref(field, what, value, errs);
        }
    }
    for (i, p) in profiles.iter().enumerate() {
        crate::validate::check_name_ref(&format!("spec.profiles[{i}]"), "profile", p, errs);
    }
}

/// Upstream's container ID form: alphanumerics and '-', not starting or
/// ending with '-' (upper case allowed).
fn is_container_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEndpointSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub orchestrator: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(
        default,
        rename = "containerID",
        skip_serializing_if = "String::is_empty"
    )]
    pub container_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_name: String,
    #[serde(default, rename = "ipNetworks", skip_serializing_if = "Vec::is_empty")]
    pub ip_networks: Vec<String>,
    #[serde(default, rename = "ipNATs", skip_serializing_if = "Vec::is_empty")]
    pub ip_nats: Vec<IpNat>,
    #[serde(
        default,
        rename = "ipv4Gateway",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_gateway: String,
    #[serde(
        default,
        rename = "ipv6Gateway",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_gateway: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_spoofed_source_prefixes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_controls: Option<serde_json::Value>,
}

impl WorkloadEndpointSpec {
    /// The endpoint's addresses (valid entries only).
    pub fn nets(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.ip_networks.iter().filter_map(|n| parse_net(n).ok())
    }
}

fn check_ip(field: &str, s: &str, errs: &mut FieldErrors) {
    if !s.is_empty() && s.parse::<IpAddr>().is_err() {
        errs.add(field, format!("{s:?} is not a valid IP address"));
    }
}

fn check_gateway(field: &str, s: &str, version: u8, errs: &mut FieldErrors) {
    if s.is_empty() {
        return;
    }
    match s.parse::<IpAddr>() {
        Err(_) => errs.add(field, format!("{s:?} is not a valid IP address")),
        Ok(ip) if ip.is_ipv4() != (version == 4) => {
            errs.add(field, format!("{s:?} is not an IPv{version} address"))
        }
        Ok(_) => {}
    }
}

impl WorkloadEndpointSpec {
    fn check_networks(&self, errs: &mut FieldErrors) {
        for (i, n) in self.ip_networks.iter().enumerate() {
            match parse_net(n) {
                Ok(net) if net.prefix_len() != net.max_prefix_len() => errs.add(
                    format!("spec.ipNetworks[{i}]"),
                    format!("{n:?}: workload addresses must be /32 (IPv4) or /128 (IPv6)"),
                ),
                Ok(_) => {}
                Err(m) => errs.add(format!("spec.ipNetworks[{i}]"), m),
            }
        }
        for (i, nat) in self.ip_nats.iter().enumerate() {
            self.check_nat(i, nat, errs);
        }
        check_gateway("spec.ipv4Gateway", &self.ipv4_gateway, 4, errs);
        check_gateway("spec.ipv6Gateway", &self.ipv6_gateway, 6, errs);
        for (i, n) in self.allow_spoofed_source_prefixes.iter().enumerate() {
            if let Err(m) = parse_net(n) {
                errs.add(format!("spec.allowSpoofedSourcePrefixes[{i}]"), m);
            }
        }
    }

    fn check_nat(&self, i: usize, nat: &IpNat, errs: &mut FieldErrors) {
        let internal = nat.internal_ip.parse::<IpAddr>();
        let external = nat.external_ip.parse::<IpAddr>();
        if internal.is_err() {
            errs.add(
                format!("spec.ipNATs[{i}].internalIP"),
                format!("{:?} is not a valid IP address", nat.internal_ip),
            );
        }
        if external.is_err() {
            errs.add(
                format!("spec.ipNATs[{i}].externalIP"),
                format!("{:?} is not a valid IP address", nat.external_ip),
            );
        }
        let (Ok(int), Ok(ext)) = (internal, external) else {
            return;
        };
        if int.is_ipv4() != ext.is_ipv4() {
            errs.add(
                format!("spec.ipNATs[{i}].externalIP"),
                format!(
                    "{ext} and internalIP {int} are of different IP versions: a NAT maps IPv4 to IPv4 or IPv6 to IPv6"
                ),
            );
        }
        if !self.nets().any(|n| n.contains(&int)) {
            errs.add(
                format!("spec.ipNATs[{i}].internalIP"),
                format!("{int} is not one of the endpoint's ipNetworks: a NAT's internalIP must be an address of the endpoint"),
            );
        }
    }

    fn check_identity(&self, errs: &mut FieldErrors) {
        if self.interface_name.is_empty() {
            errs.add("spec.interfaceName", "interfaceName is required");
        } else if !is_interface_name(&self.interface_name) {
            errs.add(
                "spec.interfaceName",
                format!("invalid interface name {:?}: 1-15 characters of letters, digits, '_', '.', '-'", self.interface_name),
            );
        }
        if !self.container_id.is_empty() && !is_container_id(&self.container_id) {
            errs.add(
                "spec.containerID",
                format!("invalid container ID {:?}: letters, digits and '-', starting and ending with a letter or digit", self.container_id),
            );
        }
        let refs = [
            (
                "spec.orchestrator",
                "orchestrator",
                self.orchestrator.as_str(),
            ),
            ("spec.workload", "workload", &self.workload),
            ("spec.node", "node", &self.node),
            ("spec.pod", "pod", &self.pod),
            ("spec.endpoint", "endpoint", &self.endpoint),
            (
                "spec.serviceAccountName",
                "service account",
                &self.service_account_name,
            ),
        ];
        check_refs(&refs, &self.profiles, errs);
        let mac_ok = self.mac.split(':').count() == 6
            && self
                .mac
                .split(':')
                .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok());
        if !self.mac.is_empty() && !mac_ok {
            errs.add(
                "spec.mac",
                format!("{:?} is not a valid MAC address", self.mac),
            );
        }
    }
}

impl Spec for WorkloadEndpointSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        self.check_networks(errs);
        self.check_identity(errs);
        check_ports(&self.ports, PortOwner::Workload, errs);
    }
}

/// WorkloadEndpoint names are derived from their identifiers upstream, but
/// any valid name is accepted (operators create them by hand in labs).
fn check_wep_name(name: &str, errs: &mut FieldErrors) {
    check_name(name, errs)
}

resource!(
    /// A VM's or container's interface on a compute host.
    WorkloadEndpoint, WorkloadEndpointSpec, kind = "WorkloadEndpoint",
    plural = "workloadendpoints", namespaced = true, name_rule = check_wep_name
);

/// Escapes one segment of a derived WorkloadEndpoint name (`-` → `--`).
fn escape_segment(s: &str) -> String {
    s.replace('-', "--")
}

/// Upstream's derived name: `<node>-<orchestrator>-<workload>-<endpoint>`,
/// each segment's dashes doubled.
pub fn workload_endpoint_name(
    node: &str,
    orchestrator: &str,
    workload: &str,
    endpoint: &str,
) -> String {
    [node, orchestrator, workload, endpoint]
        .iter()
        .map(|s| escape_segment(s))
        .collect::<Vec<_>>()
        .join("-")
}

/// Splits a derived WorkloadEndpoint name into its segments, as upstream's
/// `names.ParseWorkloadEndpointName` does: a single `-` separates segments,
/// a doubled one is a `-` inside a segment, and the first character never
/// starts a separator. It inverts `workload_endpoint_name` for segments that
/// are non-empty and neither begin nor end with `-` (upstream refuses such
/// segments when it derives a name).
pub fn split_workload_endpoint_name(name: &str) -> Vec<String> {
    let b = name.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 1;
    while i < b.len() {
        if b[i] == b'-' {
            if b.get(i + 1) == Some(&b'-') {
                i += 2;
                continue;
            }
            parts.push(name[start..i].replace("--", "-"));
            start = i + 1;
        }
        i += 1;
    }
    parts.push(name[start.min(name.len())..].replace("--", "-"));
    parts
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostEndpointSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface_name: String,
    #[serde(default, rename = "expectedIPs", skip_serializing_if = "Vec::is_empty")]
    pub expected_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

impl Spec for HostEndpointSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        if self.node.is_empty() {
            errs.add("spec.node", "node is required");
        }
        if self.interface_name.is_empty() && self.expected_ips.is_empty() {
            errs.add(
                "spec.interfaceName",
                "set interfaceName (\"*\" for all interfaces) or expectedIPs",
            );
        }
        if !self.interface_name.is_empty()
            && self.interface_name != "*"
            && !is_interface_name(&self.interface_name)
        {
            errs.add(
                "spec.interfaceName",
                format!("invalid interface name {:?}", self.interface_name),
            );
        }
        for (i, ip) in self.expected_ips.iter().enumerate() {
            check_ip(&format!("spec.expectedIPs[{i}]"), ip, errs);
        }
        check_refs(&[("spec.node", "node", &self.node)], &self.profiles, errs);
        check_ports(&self.ports, PortOwner::Host, errs);
    }
}

resource!(
    /// A host's own interface (or all of them) under policy.
    HostEndpoint, HostEndpointSpec, kind = "HostEndpoint", plural = "hostendpoints",
    namespaced = false, name_rule = check_name
);

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSetSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_egress_domains: Vec<String>,
}

impl Spec for NetworkSetSpec {
    fn validate(&self, meta: &ObjectMeta, errs: &mut FieldErrors) {
        if meta.labels.contains_key(crate::LABEL_NAMESPACE) {
            errs.add(
                format!("metadata.labels.{}", crate::LABEL_NAMESPACE),
                format!(
                    "{} is set by Calico from the namespace and may not be used as a label of a network set",
                    crate::LABEL_NAMESPACE
                ),
            );
        }
        for (i, n) in self.nets.iter().enumerate() {
            if let Err(m) = parse_net(n) {
                errs.add(format!("spec.nets[{i}]"), m);
            }
        }
    }
}

resource!(
    /// Named, labelled CIDRs in a namespace, for rule selectors.
    NetworkSet, NetworkSetSpec, kind = "NetworkSet", plural = "networksets",
    namespaced = true, name_rule = check_name
);
resource!(
    /// Named, labelled CIDRs cluster-wide, for rule selectors.
    GlobalNetworkSet, NetworkSetSpec, kind = "GlobalNetworkSet", plural = "globalnetworksets",
    namespaced = false, name_rule = check_name
);

/// Labels that Calico adds to every endpoint for selectors to match on.
pub fn implicit_labels(namespace: &str, orchestrator: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    if !namespace.is_empty() {
        m.insert(crate::LABEL_NAMESPACE.to_string(), namespace.to_string());
    }
    if !orchestrator.is_empty() {
        m.insert(
            crate::LABEL_ORCHESTRATOR.to_string(),
            orchestrator.to_string(),
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Resource;

    fn errors(r: &impl Resource) -> Vec<(String, String)> {
        match r.validate() {
            Ok(()) => vec![],
            Err(e) => e.0.into_iter().map(|e| (e.field, e.message)).collect(),
        }
    }

    fn has(errs: &[(String, String)], field: &str, msg: &str) -> bool {
        errs.iter().any(|(f, m)| f == field && m.contains(msg))
    }

    fn wep(spec: WorkloadEndpointSpec) -> WorkloadEndpoint {
        let mut w = WorkloadEndpoint::new("node1-openstack-vm1-tap1", spec);
        w.metadata.namespace = "openstack".into();
        if w.spec.interface_name.is_empty() {
            w.spec.interface_name = "tap1".into();
        }
        w
    }

    #[test]
    fn derived_names_split_back_into_their_segments() {
        let name = workload_endpoint_name("felix-host-1", "openstack", "instance-1", "DEAD-BEEF");
        assert_eq!(name, "felix--host--1-openstack-instance--1-DEAD--BEEF");
        assert_eq!(
            split_workload_endpoint_name(&name),
            ["felix-host-1", "openstack", "instance-1", "DEAD-BEEF"]
        );
        // A segment ending in '-' reads back differently (upstream refuses to
        // derive such names).
        assert_eq!(split_workload_endpoint_name("a---b"), ["a-", "b"]);
        assert_eq!(split_workload_endpoint_name("-x"), ["-x"]);
        assert_eq!(split_workload_endpoint_name(""), [""]);
    }

    #[test]
    fn nats_belong_to_the_endpoint() {
        let spec = WorkloadEndpointSpec {
            ip_networks: vec!["10.65.0.5/32".into()],
            ip_nats: vec![
                IpNat {
                    internal_ip: "10.65.0.5".into(),
                    external_ip: "172.24.4.10".into(),
                },
                IpNat {
                    internal_ip: "10.65.0.6".into(),
                    external_ip: "2001:db8::1".into(),
                },
            ],
            ..Default::default()
        };
        let e = errors(&wep(spec));
        assert!(
            has(
                &e,
                "spec.ipNATs[1].internalIP",
                "not one of the endpoint's ipNetworks"
            ),
            "{e:?}"
        );
        assert!(
            has(&e, "spec.ipNATs[1].externalIP", "different IP versions"),
            "{e:?}"
        );
        assert_eq!(e.len(), 2, "{e:?}");
    }

    #[test]
    fn gateways_have_the_right_family() {
        let spec = WorkloadEndpointSpec {
            ipv4_gateway: "fe80::1".into(),
            ipv6_gateway: "10.0.0.1".into(),
            ..Default::default()
        };
        let e = errors(&wep(spec));
        assert!(has(&e, "spec.ipv4Gateway", "not an IPv4 address"), "{e:?}");
        assert!(has(&e, "spec.ipv6Gateway", "not an IPv6 address"), "{e:?}");
    }

    #[test]
    fn endpoint_port_names() {
        let spec = HostEndpointSpec {
            node: "node1".into(),
            interface_name: "eth0".into(),
            ports: vec![EndpointPort {
                name: "Web_UI".into(),
                protocol: Default::default(),
                port: 8080,
                host_port: None,
                host_ip: String::new(),
            }],
            ..Default::default()
        };
        let e = errors(&HostEndpoint::new("h", spec));
        assert!(
            has(&e, "spec.ports[0].name", "invalid port name \"Web_UI\""),
            "{e:?}"
        );
    }

    #[test]
    fn network_sets_may_not_carry_the_namespace_label() {
        let mut ns = NetworkSet::new("n", NetworkSetSpec::default());
        ns.metadata.namespace = "default".into();
        ns.metadata
            .labels
            .insert(crate::LABEL_NAMESPACE.into(), "other".into());
        let e = errors(&ns);
        assert!(
            has(
                &e,
                "metadata.labels.projectcalico.org/namespace",
                "may not be used"
            ),
            "{e:?}"
        );
        let mut gns = GlobalNetworkSet::new("g", NetworkSetSpec::default());
        gns.metadata.labels = ns.metadata.labels.clone();
        assert!(!errors(&gns).is_empty());
    }
}
