//! Subnets and this host's ports as the DHCP agent reads them, and the
//! networks they make. Read leniently as upstream's agent reads them: a
//! value that cannot be used is an error the caller logs and skips.

use std::collections::BTreeMap;
use std::net::IpAddr;

use calico_openstack::endpoint::{ALLOWED_IPS_FIELD, FQDN_ANNOTATION, NETWORK_ID_ANNOTATION};
use calico_openstack::names::split_endpoint_name;
use ipnet::IpNet;
use serde_json::Value;

/// How an IPv6 subnet gives out addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V6Mode {
    /// DHCPv6 hands out the port's address (the default).
    Stateful,
    /// Router advertisements only (RA and address modes both `slaac`).
    Slaac,
}

/// One DHCP-enabled Neutron subnet, from `/calico/dhcp/v2/<region>/subnet/<id>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub id: String,
    pub network_id: String,
    /// As stored (host bits may be set); `cidr.trunc()` is the network.
    pub cidr: IpNet,
    pub gateway: Option<IpAddr>,
    pub dns_servers: Vec<IpAddr>,
    pub host_routes: Vec<(IpNet, IpAddr)>,
    pub v6_mode: V6Mode,
}

impl Subnet {
    /// Parses the stored value. Like upstream's agent it needs `cidr` and
    /// a `gateway_ip` key (null: no gateway); `network_id` defaults to
    /// `calico`; there is no `ip_version` (the CIDR says it).
    pub fn parse(id: &str, value: &[u8]) -> Result<Subnet, String> {
        let v: Value =
            serde_json::from_slice(value).map_err(|e| format!("subnet {id}: not JSON: {e}"))?;
        let field = |name: &str| v.get(name).filter(|f| !f.is_null());
        let cidr_text = field("cidr")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("subnet {id}: no cidr"))?;
        let cidr: IpNet = cidr_text
            .parse()
            .map_err(|_| format!("subnet {id}: cidr {cidr_text:?} is not a CIDR"))?;
        if v.get("gateway_ip").is_none() {
            return Err(format!("subnet {id}: no gateway_ip"));
        }
        let gateway = match field("gateway_ip") {
            None => None,
            Some(g) => Some(parse_addr(id, "gateway_ip", g, cidr)?),
        };
        let dns_servers = match field("dns_servers") {
            None => vec![],
            Some(Value::Array(list)) => list
                .iter()
                .map(|a| parse_any_family(id, "dns_servers", a))
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(format!("subnet {id}: dns_servers {other} is not a list")),
        };
        let host_routes = match field("host_routes") {
            None => vec![],
            Some(Value::Array(list)) => list
                .iter()
                .map(|r| host_route(id, r))
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(format!("subnet {id}: host_routes {other} is not a list")),
        };
        let mode = |k: &str| field(k).and_then(Value::as_str);
        let slaac =
            mode("ipv6_ra_mode") == Some("slaac") && mode("ipv6_address_mode") == Some("slaac");
        Ok(Subnet {
            id: id.to_string(),
            network_id: field("network_id")
                .and_then(Value::as_str)
                .unwrap_or("calico")
                .to_string(),
            cidr,
            gateway,
            dns_servers,
            host_routes,
            v6_mode: if slaac {
                V6Mode::Slaac
            } else {
                V6Mode::Stateful
            },
        })
    }

    pub fn is_v6(&self) -> bool {
        matches!(self.cidr, IpNet::V6(_))
    }

    /// dnsmasq's tag for the subnet.
    pub fn tag(&self) -> String {
        format!("subnet-{}", self.id)
    }
}

fn parse_any_family(id: &str, field: &str, v: &Value) -> Result<IpAddr, String> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("subnet {id}: {field}: {v} is not an IP address"))
}

fn parse_addr(id: &str, field: &str, v: &Value, cidr: IpNet) -> Result<IpAddr, String> {
    let a = parse_any_family(id, field, v)?;
    if a.is_ipv4() != cidr.addr().is_ipv4() {
        return Err(format!(
            "subnet {id}: {field} {a} is not of {cidr}'s family"
        ));
    }
    Ok(a)
}

fn host_route(id: &str, r: &Value) -> Result<(IpNet, IpAddr), String> {
    let dest = r
        .get("destination")
        .and_then(Value::as_str)
        .and_then(|d| d.parse::<IpNet>().ok());
    let hop = r
        .get("nexthop")
        .and_then(Value::as_str)
        .and_then(|d| d.parse::<IpAddr>().ok());
    match (dest, hop) {
        (Some(d), Some(h)) => Ok((d, h)),
        _ => Err(format!(
            "subnet {id}: host route {r} needs destination and nexthop"
        )),
    }
}

/// One of this host's Neutron ports, from its WorkloadEndpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// The Neutron port id (the endpoint segment of the name).
    pub id: String,
    pub tap: String,
    pub mac: String,
    /// Its addresses, allowed-address-pair ones left out.
    pub ips: Vec<IpAddr>,
    /// The annotation `openstack.projectcalico.org/network-id`.
    pub network_id: Option<String>,
    /// The annotation `openstack.projectcalico.org/fqdn`.
    pub fqdn: Option<String>,
}

impl Port {
    /// Parses a WorkloadEndpoint; `Ok(None)` when it is not an OpenStack
    /// endpoint of `host` or has nothing to serve (no `ipNetworks`), which
    /// upstream treats as a delete.
    pub fn parse(host: &str, value: &[u8]) -> Result<Option<Port>, String> {
        let v: Value = serde_json::from_slice(value).map_err(|e| format!("not JSON: {e}"))?;
        let name = v["metadata"]["name"].as_str().ok_or("no metadata.name")?;
        let Some(parts) = split_endpoint_name(name) else {
            return Ok(None);
        };
        if parts.host != host {
            return Ok(None);
        }
        let spec = &v["spec"];
        let text = |k: &str| spec[k].as_str().filter(|s| !s.is_empty());
        let (Some(tap), Some(mac)) = (text("interfaceName"), text("mac")) else {
            return Err(format!("{name}: needs spec.interfaceName and spec.mac"));
        };
        let nets = |k: &str| -> Result<Vec<IpNet>, String> {
            spec[k]
                .as_array()
                .map(|l| l.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|n| {
                    n.as_str()
                        .and_then(|s| s.parse::<IpNet>().ok())
                        .ok_or_else(|| format!("{name}: spec.{k}: {n} is not a CIDR"))
                })
                .collect()
        };
        let allowed = nets(ALLOWED_IPS_FIELD)?;
        let ips: Vec<IpAddr> = nets("ipNetworks")?
            .into_iter()
            .filter(|n| !allowed.contains(n))
            .map(|n| n.addr())
            .collect();
        if ips.is_empty() {
            return Ok(None);
        }
        let annotation = |k: &str| {
            v["metadata"]["annotations"][k]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        Ok(Some(Port {
            id: parts.port_id,
            tap: tap.to_string(),
            mac: mac.to_ascii_lowercase(),
            ips,
            network_id: annotation(NETWORK_ID_ANNOTATION),
            fqdn: annotation(FQDN_ANNOTATION),
        }))
    }
}

/// A port's address on one of the network's subnets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub ip: IpAddr,
    pub subnet_id: String,
}

/// A Neutron network with ports on this host: what one dnsmasq serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Network {
    pub id: String,
    /// All of the network's DHCP subnets, in id order.
    pub subnets: Vec<Subnet>,
    /// Its ports on this host with their allocations, in port id order.
    pub ports: Vec<(Port, Vec<Allocation>)>,
}

/// Groups ports by the network of their addresses' subnets. A subnet is
/// found by CIDR, among the port's network's when the port names it; an
/// address no subnet covers is not served. Networks without ports here
/// are left out (their dnsmasq, if any, stops).
pub fn networks(
    subnets: &BTreeMap<String, Subnet>,
    ports: &BTreeMap<String, Port>,
) -> BTreeMap<String, Network> {
    let mut out: BTreeMap<String, Network> = BTreeMap::new();
    for port in ports.values() {
        let mut by_net: BTreeMap<&str, Vec<Allocation>> = BTreeMap::new();
        for ip in &port.ips {
            let found = subnets.values().find(|s| {
                s.cidr.trunc().contains(ip)
                    && port.network_id.as_ref().is_none_or(|n| *n == s.network_id)
            });
            if let Some(s) = found {
                by_net.entry(&s.network_id).or_default().push(Allocation {
                    ip: *ip,
                    subnet_id: s.id.clone(),
                });
            }
        }
        for (net, allocations) in by_net {
            out.entry(net.to_string())
                .or_insert_with(|| Network {
                    id: net.to_string(),
                    subnets: subnets
                        .values()
                        .filter(|s| s.network_id == net)
                        .cloned()
                        .collect(),
                    ports: vec![],
                })
                .ports
                .push((port.clone(), allocations));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's test_mainline subnets.
    const V4: &str = r#"{"network_id": "calico-network-id", "cidr": "10.65.0.0/24", "gateway_ip": "10.65.0.1", "host_routes": [{"destination": "11.11.0.0/16", "nexthop": "10.65.0.1"}]}"#;
    const V6: &str = r#"{"network_id": "calico-network-id", "cidr": "2001:db8:1::/80", "gateway_ip": "2001:db8:1::1", "host_routes": []}"#;

    fn wep(name: &str, ips: &[&str], allowed: &[&str]) -> Vec<u8> {
        serde_json::json!({
            "kind": "WorkloadEndpoint",
            "metadata": {"name": name, "namespace": "openstack",
                         "annotations": {"openstack.projectcalico.org/network-id": "calico-network-id",
                                         "openstack.projectcalico.org/fqdn": "vm1.example.org"}},
            "spec": {"interfaceName": "tap1234567890a", "mac": "FA:16:3E:00:00:01",
                     "ipNetworks": ips, "allowedIps": allowed}
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn subnets_read_as_upstream_writes_them() {
        let s = Subnet::parse("v4subnet-1", V4.as_bytes()).unwrap();
        assert_eq!(s.network_id, "calico-network-id");
        assert_eq!(s.gateway, Some("10.65.0.1".parse().unwrap()));
        assert_eq!(
            s.host_routes,
            vec![(
                "11.11.0.0/16".parse().unwrap(),
                "10.65.0.1".parse().unwrap()
            )]
        );
        assert_eq!(s.v6_mode, V6Mode::Stateful);
        let s6 = Subnet::parse("v6subnet-1", V6.as_bytes()).unwrap();
        assert!(s6.is_v6());
        let slaac = r#"{"cidr": "2001:db8:2::/64", "gateway_ip": null, "ipv6_ra_mode": "slaac", "ipv6_address_mode": "slaac"}"#;
        let s = Subnet::parse("s", slaac.as_bytes()).unwrap();
        assert_eq!(
            (s.v6_mode, s.gateway, s.network_id.as_str()),
            (V6Mode::Slaac, None, "calico")
        );
    }

    #[test]
    fn unusable_subnet_data_is_an_error_naming_it() {
        for (bad, says) in [
            ("nonsense", "not JSON"),
            (r#"{"gateway_ip": "10.65.0.1"}"#, "no cidr"),
            (r#"{"cidr": "10.65.0.0/24"}"#, "no gateway_ip"),
            (
                r#"{"cidr": "10.65.0/24", "gateway_ip": null}"#,
                "not a CIDR",
            ),
            (
                r#"{"cidr": "10.65.0.0/24", "gateway_ip": "fd00::1"}"#,
                "family",
            ),
            (
                r#"{"cidr": "10.65.0.0/24", "gateway_ip": null, "dns_servers": "8.8.8.8"}"#,
                "not a list",
            ),
            (
                r#"{"cidr": "10.65.0.0/24", "gateway_ip": null, "host_routes": [{"destination": "x"}]}"#,
                "host route",
            ),
        ] {
            let e = Subnet::parse("sub-1", bad.as_bytes()).unwrap_err();
            assert!(e.contains("sub-1") && e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn ports_are_this_hosts_with_allowed_address_pairs_left_out() {
        let name = "my--host-openstack-instance--1-port--1";
        let p = Port::parse(
            "my-host",
            &wep(name, &["10.65.0.2/32", "10.65.0.9/32"], &["10.65.0.9/32"]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.id, "port-1");
        assert_eq!(p.ips, vec!["10.65.0.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(p.mac, "fa:16:3e:00:00:01");
        assert_eq!(p.fqdn.as_deref(), Some("vm1.example.org"));
        assert_eq!(
            Port::parse("other", &wep(name, &["10.65.0.2/32"], &[])).unwrap(),
            None
        );
        assert_eq!(
            Port::parse("my-host", &wep(name, &[], &[])).unwrap(),
            None,
            "no ipNetworks: a delete"
        );
        let no_mac =
            br#"{"metadata": {"name": "h-openstack-i-p"}, "spec": {"interfaceName": "tap1"}}"#;
        assert!(Port::parse("h", no_mac).unwrap_err().contains("spec.mac"));
    }

    #[test]
    fn networks_group_ports_by_their_subnets_network() {
        let mut subnets = BTreeMap::new();
        for (id, v) in [("v4subnet-1", V4), ("v6subnet-1", V6)] {
            subnets.insert(id.to_string(), Subnet::parse(id, v.as_bytes()).unwrap());
        }
        let other = r#"{"network_id": "other", "cidr": "10.65.0.0/24", "gateway_ip": "10.65.0.1"}"#;
        subnets.insert(
            "reused".into(),
            Subnet::parse("reused", other.as_bytes()).unwrap(),
        );
        let p = Port::parse(
            "h",
            &wep(
                "h-openstack-i-p1",
                &["10.65.0.2/32", "2001:db8:1::2/128", "192.0.2.9/32"],
                &[],
            ),
        )
        .unwrap()
        .unwrap();
        let nets = networks(&subnets, &[("p1".to_string(), p)].into());
        assert_eq!(nets.keys().collect::<Vec<_>>(), ["calico-network-id"]);
        let n = &nets["calico-network-id"];
        assert_eq!(
            n.subnets.len(),
            2,
            "the reused CIDR of another network is not ours"
        );
        let subs: Vec<&str> = n.ports[0].1.iter().map(|a| a.subnet_id.as_str()).collect();
        assert_eq!(
            subs,
            ["v4subnet-1", "v6subnet-1"],
            "192.0.2.9 is on no subnet"
        );
        assert!(networks(&subnets, &BTreeMap::new()).is_empty());
    }
}
