//! Neutron's dicts, as a mechanism driver receives them (`context.current`,
//! plugin `get_*` calls), read leniently: fields the translation does not
//! use are ignored, fields it uses must have the right type.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{from_dict, Result};

/// A Neutron port (`context.current` / `get_port`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Port {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub network_id: String,
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    pub mac_address: String,
    #[serde(default)]
    pub device_id: String,
    #[serde(default)]
    pub device_owner: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub fixed_ips: Vec<FixedIp>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub allowed_address_pairs: Vec<AddressPair>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub port_security_enabled: Option<bool>,
    #[serde(default, rename = "binding:host_id")]
    pub host_id: Option<String>,
    #[serde(default, rename = "binding:vif_type")]
    pub vif_type: Option<String>,
    #[serde(
        default,
        rename = "binding:profile",
        deserialize_with = "null_as_default"
    )]
    pub binding_profile: BindingProfile,
    #[serde(default, deserialize_with = "null_as_default")]
    pub dns_assignment: Vec<DnsAssignment>,
    #[serde(default)]
    pub qos_policy_id: Option<String>,
    #[serde(default)]
    pub qos_network_policy_id: Option<String>,
}

impl Port {
    pub fn from_value(v: &Value) -> Result<Port> {
        let id = v.get("id").and_then(Value::as_str).unwrap_or("?");
        from_dict(&format!("port {id}"), v)
    }

    /// `port <id>`, for errors.
    pub fn object(&self) -> String {
        format!("port {}", self.id)
    }

    /// The project: `project_id`, else `tenant_id` (older Neutron).
    pub fn project(&self) -> Option<&str> {
        self.project_id.as_deref().or(self.tenant_id.as_deref())
    }

    /// The host the port is bound to (`binding:host_id`), if any.
    pub fn host(&self) -> Option<&str> {
        self.host_id.as_deref().filter(|h| !h.is_empty())
    }

    /// The destination of a live migration in progress
    /// (`binding:profile.migrating_to`).
    pub fn migrating_to(&self) -> Option<&str> {
        self.binding_profile
            .migrating_to
            .as_deref()
            .filter(|h| !h.is_empty())
    }

    /// The QoS policy that applies: the port's own, else its network's.
    pub fn qos_policy(&self) -> Option<&str> {
        self.qos_policy_id
            .as_deref()
            .or(self.qos_network_policy_id.as_deref())
            .filter(|p| !p.is_empty())
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct FixedIp {
    #[serde(default)]
    pub subnet_id: Option<String>,
    pub ip_address: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct AddressPair {
    pub ip_address: String,
    #[serde(default)]
    pub mac_address: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct BindingProfile {
    #[serde(default)]
    pub migrating_to: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct DnsAssignment {
    #[serde(default)]
    pub fqdn: Option<String>,
}

/// A security group rule (`get_security_group_rules`, or an entry of a
/// group's `security_group_rules`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct SecurityGroupRule {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub security_group_id: Option<String>,
    pub direction: String,
    #[serde(default = "ipv4")]
    pub ethertype: String,
    /// `null`, a name (`tcp`, `icmp`, ...), a number as a string (`"6"`, as
    /// the API stores numbers) or as a number (older data).
    #[serde(default)]
    pub protocol: Option<Value>,
    #[serde(default)]
    pub port_range_min: Option<i64>,
    #[serde(default)]
    pub port_range_max: Option<i64>,
    #[serde(default)]
    pub remote_ip_prefix: Option<String>,
    #[serde(default)]
    pub remote_group_id: Option<String>,
    #[serde(default)]
    pub remote_address_group_id: Option<String>,
}

fn ipv4() -> String {
    "IPv4".to_string()
}

/// A security group, with its rules when Neutron includes them.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct SecurityGroup {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub security_group_rules: Vec<Value>,
}

impl SecurityGroup {
    pub fn from_value(v: &Value) -> Result<SecurityGroup> {
        let id = v.get("id").and_then(Value::as_str).unwrap_or("?");
        from_dict(&format!("security group {id}"), v)
    }
}

/// A subnet (`context.current` / `get_subnet`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Subnet {
    pub id: String,
    #[serde(default)]
    pub network_id: String,
    #[serde(default)]
    pub cidr: String,
    #[serde(default)]
    pub gateway_ip: Option<String>,
    #[serde(default)]
    pub enable_dhcp: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub host_routes: Vec<Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub dns_nameservers: Vec<String>,
    #[serde(default)]
    pub ipv6_ra_mode: Option<String>,
    #[serde(default)]
    pub ipv6_address_mode: Option<String>,
}

impl Subnet {
    pub fn from_value(v: &Value) -> Result<Subnet> {
        let id = v.get("id").and_then(Value::as_str).unwrap_or("?");
        from_dict(&format!("subnet {id}"), v)
    }
}

/// A floating IP (`get_floatingips`); upstream's own query rows
/// (`int_ip`, `ext_ip`) read too.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct FloatingIp {
    #[serde(default, alias = "int_ip")]
    pub fixed_ip_address: Option<String>,
    #[serde(default, alias = "ext_ip")]
    pub floating_ip_address: Option<String>,
    #[serde(default, alias = "fixed_port_id")]
    pub port_id: Option<String>,
}

/// A network: only its name is used.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Network {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// A Keystone project's name and parent, for the project labels.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Project {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub parent_id: Option<String>,
}

/// A QoS policy with its rules (`get_policy` / `qos_policy.rules`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct QosPolicy {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub rules: Vec<QosRule>,
}

/// A QoS rule; only `bandwidth_limit` and `packet_rate_limit` rules are
/// expressed on a WorkloadEndpoint.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct QosRule {
    #[serde(default, rename = "type")]
    pub rule_type: Option<String>,
    #[serde(default)]
    pub direction: Option<String>,
    #[serde(default)]
    pub max_kbps: Option<i64>,
    #[serde(default)]
    pub max_burst_kbps: Option<i64>,
    #[serde(default)]
    pub max_kpps: Option<i64>,
    /// Anything else (dscp_mark, min_kbps, ...), kept so that rule types we
    /// ignore still decode.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_port_as_neutron_passes_it() {
        let v = json!({
            "id": "p1", "name": "", "network_id": "n1", "tenant_id": "t", "project_id": "t",
            "mac_address": "fa:16:3e:00:00:01", "admin_state_up": true, "status": "DOWN",
            "device_id": "vm1", "device_owner": "compute:nova",
            "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.5"}],
            "allowed_address_pairs": [], "extra_dhcp_opts": [], "security_groups": ["sg1"],
            "binding:host_id": "compute1", "binding:vif_type": "unbound",
            "binding:vif_details": {}, "binding:vnic_type": "normal", "binding:profile": {},
            "port_security_enabled": true, "qos_policy_id": null, "qos_network_policy_id": null,
            "dns_assignment": [{"hostname": "host-10-0-0-5", "ip_address": "10.0.0.5", "fqdn": "host-10-0-0-5.openstacklocal."}],
            "tags": [], "created_at": "2026-01-01T00:00:00Z", "revision_number": 1
        });
        let p = Port::from_value(&v).unwrap();
        assert_eq!(p.host(), Some("compute1"));
        assert_eq!(p.project(), Some("t"));
        assert_eq!(p.migrating_to(), None);
        assert_eq!(
            p.dns_assignment[0].fqdn.as_deref(),
            Some("host-10-0-0-5.openstacklocal.")
        );

        let e = Port::from_value(&json!({"id": "p2", "network_id": "n", "mac_address": 5}))
            .unwrap_err();
        assert_eq!(e.object, "port p2");
        assert_eq!(e.field, "mac_address");
        let e = Port::from_value(&json!({"id": "p3", "network_id": "n"})).unwrap_err();
        assert!(e.message.contains("mac_address"), "{e}");
    }
}
