//! Neutron port → WorkloadEndpoint, as upstream's `endpoints.py` writes it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use calico_api::endpoint::{IpNat, WorkloadEndpoint, WorkloadEndpointSpec};
use calico_api::{Resource, LABEL_NAMESPACE, LABEL_ORCHESTRATOR};
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::names::{
    check_name_segment, endpoint_name, interface_name, sanitize_label, LABEL_MAX_LENGTH,
    ORCHESTRATOR,
};
use crate::neutron::{FloatingIp, Network, Port, Project, QosPolicy, SecurityGroup, Subnet};
use crate::policy::{SG_LABEL_PREFIX, SG_NAME_LABEL_PREFIX, SG_NAME_MAX_LENGTH};
use crate::qos::qos_controls;
use crate::Config;

/// Label with the port's project ID.
pub const PROJECT_ID_LABEL: &str = "projectcalico.org/openstack-project-id";
/// Label with the project's (sanitised) name, from Keystone.
pub const PROJECT_NAME_LABEL: &str = "projectcalico.org/openstack-project-name";
/// Label with the project's parent ID, from Keystone.
pub const PROJECT_PARENT_ID_LABEL: &str = "projectcalico.org/openstack-project-parent-id";
/// Label with the port's network's (sanitised) name.
pub const NETWORK_NAME_LABEL: &str = "projectcalico.org/openstack-network-name";
/// Annotation with the port's network ID.
pub const NETWORK_ID_ANNOTATION: &str = "openstack.projectcalico.org/network-id";
/// Annotation with the port's DNS name (`dns_assignment[0].fqdn`).
pub const FQDN_ANNOTATION: &str = "openstack.projectcalico.org/fqdn";
/// The WorkloadEndpoint field, not in Calico's API, where upstream repeats
/// the allowed-address-pair addresses so that the DHCP agent can leave them
/// out (they are also in `ipNetworks`, for routing).
pub const ALLOWED_IPS_FIELD: &str = "allowedIps";

/// Whether a port is a VM's (device owner `compute:*`) or a Kuryr
/// container's; the driver ignores all others (routers, DHCP, ...).
pub fn is_endpoint_port(device_owner: &str) -> bool {
    device_owner.starts_with("compute:") || device_owner.starts_with("kuryr:container")
}

/// What upstream reads from Neutron's database and Keystone besides the port
/// dict. The driver gathers it with plugin calls; all of it is optional,
/// and a missing part leaves the corresponding fields out, as upstream.
/// Each list takes Neutron's dicts as they are (extra fields are ignored).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct PortExtras {
    /// The subnets of the port's fixed IPs (for `gateway_ip`).
    pub subnets: Vec<Subnet>,
    /// Floating IPs associated with the port (`ipNATs`).
    pub floating_ips: Vec<FloatingIp>,
    /// The port's security groups (for their names).
    pub security_groups: Vec<SecurityGroup>,
    /// The port's network (for its name).
    pub network: Option<Network>,
    /// The port's project, from Keystone.
    pub project: Option<Project>,
    /// Keystone could not be asked about the port's project (and its name
    /// was not cached): the endpoint keeps the project labels it is stored
    /// with, so an outage never takes away labels a policy selects on.
    pub project_unavailable: bool,
    /// The QoS policy that applies (the port's, else its network's).
    pub qos_policy: Option<QosPolicy>,
}

impl PortExtras {
    pub fn from_value(v: &Value) -> Result<PortExtras> {
        crate::error::from_dict("port extras", v)
    }
}

/// A WorkloadEndpoint as upstream writes it: the v3 resource, plus the
/// `allowedIps` list that upstream adds to its spec (Calico's API has no
/// such field; Calico ignores it, the DHCP agent reads it).
#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    pub resource: WorkloadEndpoint,
    pub allowed_ips: Vec<String>,
}

impl Endpoint {
    /// Translates `port` bound (or being bound, for a live migration) to
    /// `host`, without checking the result against Calico's API (see
    /// `validate`).
    pub fn translate(
        port: &Port,
        host: &str,
        extras: &PortExtras,
        cfg: &Config,
    ) -> Result<Endpoint> {
        let object = port.object();
        check_name_segment(&object, "binding:host_id", host)?;
        check_name_segment(&object, "device_id", &port.device_id)?;
        check_name_segment(&object, "id", &port.id)?;
        let namespace = cfg.region.namespace();

        let mut spec = WorkloadEndpointSpec {
            orchestrator: ORCHESTRATOR.to_string(),
            workload: port.device_id.clone(),
            node: host.to_string(),
            endpoint: port.id.clone(),
            interface_name: interface_name(&port.id),
            mac: port.mac_address.clone(),
            ..Default::default()
        };

        // Fixed IPs as /32 and /128, each family's gateway from its subnet
        // (if several, the last one wins, as upstream).
        for (i, ip) in port.fixed_ips.iter().enumerate() {
            let field = format!("fixed_ips[{i}].ip_address");
            let addr: IpAddr = ip.ip_address.parse().map_err(|_| {
                Error::new(
                    &object,
                    &field,
                    format!("{:?} is not an IP address", ip.ip_address),
                )
            })?;
            spec.ip_networks.push(host_net(&ip.ip_address, addr));
            let gateway = ip
                .subnet_id
                .as_deref()
                .and_then(|id| extras.subnets.iter().find(|s| s.id == id))
                .and_then(|s| s.gateway_ip.clone());
            if let Some(gw) = gateway {
                if addr.is_ipv4() {
                    spec.ipv4_gateway = gw;
                } else {
                    spec.ipv6_gateway = gw;
                }
            }
        }

        // Allowed address pairs: routed to the port (ipNetworks) and listed
        // again for the DHCP agent (allowedIps).
        let mut allowed_ips = Vec::new();
        for (i, pair) in port.allowed_address_pairs.iter().enumerate() {
            let net = address_pair_net(
                &object,
                &format!("allowed_address_pairs[{i}].ip_address"),
                &pair.ip_address,
            )?;
            spec.ip_networks.push(net.clone());
            allowed_ips.push(net);
        }

        // Floating IPs: 1:1 NAT to the fixed IP.
        for fip in &extras.floating_ips {
            if fip.port_id.as_deref().is_some_and(|p| p != port.id) {
                continue;
            }
            if let (Some(int), Some(ext)) = (&fip.fixed_ip_address, &fip.floating_ip_address) {
                spec.ip_nats.push(IpNat {
                    internal_ip: int.clone(),
                    external_ip: ext.clone(),
                });
            }
        }

        spec.qos_controls = qos_controls(extras.qos_policy.as_ref(), &cfg.qos)?;

        let mut wep = WorkloadEndpoint::new(endpoint_name(host, &port.device_id, &port.id), spec);
        wep.metadata.namespace = namespace.clone();
        wep.metadata.labels = labels(port, extras, &namespace);
        wep.metadata.annotations = annotations(port);
        Ok(Endpoint {
            resource: wep,
            allowed_ips,
        })
    }

    pub fn name(&self) -> &str {
        &self.resource.metadata.name
    }

    pub fn namespace(&self) -> &str {
        &self.resource.metadata.namespace
    }

    /// Where it is stored.
    pub fn key(&self) -> String {
        crate::keys::workload_endpoint_key(self.namespace(), self.name())
    }

    /// The stored JSON without `uid` and `creationTimestamp` (see
    /// `store::put_value`): this project's encoding of the resource, with
    /// `spec.allowedIps` added as upstream writes it (always, even empty).
    pub fn to_value(&self) -> Value {
        let mut v = serde_json::to_value(&self.resource).expect("resources always serialise");
        v["spec"][ALLOWED_IPS_FIELD] = Value::from(self.allowed_ips.clone());
        v
    }

    /// Checks the resource against Calico's API rules (names, addresses,
    /// NATs, labels), so that nothing Calico would reject is written.
    pub fn validate(&self) -> Result<()> {
        self.resource.validate().map_err(|errs| {
            Error::new(
                format!("port {}", self.resource.spec.endpoint),
                "",
                format!(
                    "its WorkloadEndpoint {} would be invalid: {errs}",
                    self.name()
                ),
            )
        })
    }
}

/// Translates and checks a bound port (Neutron's port dict) into the
/// WorkloadEndpoint upstream writes on its host. Errors if the port is not
/// bound to a host or cannot be expressed.
pub fn workload_endpoint(port: &Value, extras: &PortExtras, cfg: &Config) -> Result<Endpoint> {
    let port = Port::from_value(port)?;
    let host = port
        .host()
        .ok_or_else(|| {
            Error::new(
                port.object(),
                "binding:host_id",
                "the port is not bound to a host",
            )
        })?
        .to_string();
    let ep = Endpoint::translate(&port, &host, extras, cfg)?;
    ep.validate()?;
    Ok(ep)
}

/// `addr/32` or `addr/128`, keeping the address as Neutron spells it.
fn host_net(text: &str, addr: IpAddr) -> String {
    let len = if addr.is_ipv4() { 32 } else { 128 };
    format!("{text}/{len}")
}

/// An allowed address pair's address as a host network. Neutron allows a
/// CIDR there; upstream appends `/32` regardless (writing `a.b.c.d/32/32`
/// or `a.b.c.0/24/32`, which Calico cannot read), so we keep a host prefix
/// as it is and refuse a wider one: an endpoint's networks are single
/// addresses.
fn address_pair_net(object: &str, field: &str, text: &str) -> Result<String> {
    if let Some((addr_text, _)) = text.split_once('/') {
        let net: IpNet = text.parse().map_err(|_| {
            Error::new(
                object,
                field,
                format!("{text:?} is not an IP address or CIDR"),
            )
        })?;
        if net.prefix_len() != net.max_prefix_len() {
            return Err(Error::new(
                object,
                field,
                format!("{text:?}: only single addresses (/32, /128) can be allowed address pairs of a Calico port"),
            ));
        }
        return Ok(format!("{addr_text}/{}", net.prefix_len()));
    }
    let addr: IpAddr = text
        .parse()
        .map_err(|_| Error::new(object, field, format!("{text:?} is not an IP address")))?;
    Ok(host_net(text, addr))
}

fn labels(port: &Port, extras: &PortExtras, namespace: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for sg_id in &port.security_groups {
        let name = extras
            .security_groups
            .iter()
            .find(|sg| &sg.id == sg_id)
            .and_then(|sg| sg.name.as_deref())
            .map(|n| sanitize_label(n, SG_NAME_MAX_LENGTH))
            .unwrap_or_default();
        labels.insert(format!("{SG_LABEL_PREFIX}{sg_id}"), name.clone());
        if !name.is_empty() {
            labels.insert(format!("{SG_NAME_LABEL_PREFIX}{name}"), sg_id.clone());
        }
    }
    labels.insert(LABEL_NAMESPACE.to_string(), namespace.to_string());
    labels.insert(LABEL_ORCHESTRATOR.to_string(), ORCHESTRATOR.to_string());
    if let Some(project) = port.project() {
        labels.insert(PROJECT_ID_LABEL.to_string(), project.to_string());
    }
    if let Some(p) = &extras.project {
        // Upstream caches Keystone's projects by ID and labels only ports
        // whose project it found; a project without a name would not be
        // listed there.
        if let Some(name) = &p.name {
            labels.insert(
                PROJECT_NAME_LABEL.to_string(),
                sanitize_label(name, LABEL_MAX_LENGTH),
            );
            labels.insert(
                PROJECT_PARENT_ID_LABEL.to_string(),
                p.parent_id.clone().unwrap_or_default(),
            );
        }
    }
    if let Some(name) = extras.network.as_ref().and_then(|n| n.name.as_deref()) {
        labels.insert(
            NETWORK_NAME_LABEL.to_string(),
            sanitize_label(name, LABEL_MAX_LENGTH),
        );
    }
    labels
}

fn annotations(port: &Port) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert(NETWORK_ID_ANNOTATION.to_string(), port.network_id.clone());
    if let Some(fqdn) = port.dns_assignment.first().and_then(|d| d.fqdn.as_deref()) {
        a.insert(FQDN_ANNOTATION.to_string(), fqdn.to_string());
    }
    a
}

/// Gives `new` (an endpoint resource) the project name and parent labels
/// of `stored` (the same endpoint as stored), or none if it has none.
pub fn keep_project_labels(new: &mut Value, stored: &Value) {
    // Label names hold a '/': looked up by key, not by JSON pointer.
    let stored_labels = stored.pointer("/metadata/labels");
    let kept: Vec<(&str, Value)> = [PROJECT_NAME_LABEL, PROJECT_PARENT_ID_LABEL]
        .into_iter()
        .filter_map(|k| Some((k, stored_labels?.get(k)?.clone())))
        .collect();
    let Some(labels) = new
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    labels.remove(PROJECT_NAME_LABEL);
    labels.remove(PROJECT_PARENT_ID_LABEL);
    for (k, v) in kept {
        labels.insert(k.to_string(), v);
    }
}
