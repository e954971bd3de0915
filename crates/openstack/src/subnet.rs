//! Subnet → the data the DHCP agents read at
//! `/calico/dhcp/v2/<region string>/subnet/<id>`, as upstream's
//! `subnets.py` writes it (JSON text, not a v3 resource).

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::neutron::Subnet;
use crate::region::Region;

/// A subnet's DHCP data and where it goes.
#[derive(Clone, Debug, PartialEq)]
pub struct DhcpSubnet {
    pub key: String,
    pub value: Value,
}

impl DhcpSubnet {
    /// The value as upstream stores it: `json.dumps` text, byte for byte
    /// (upstream's resync compares the text).
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::pyjson::dumps(&self.value)
    }
}

/// `str(netaddr.IPNetwork(cidr))`: the address as given (host bits kept)
/// in canonical form, and a host prefix when none is given.
fn canonical_cidr(object: &str, cidr: &str) -> Result<String> {
    if let Ok(net) = cidr.parse::<IpNet>() {
        return Ok(net.to_string());
    }
    match cidr.parse::<IpAddr>() {
        Ok(a) => Ok(IpNet::from(a).to_string()),
        Err(_) => Err(Error::new(
            object,
            "cidr",
            format!("{cidr:?} is not a CIDR"),
        )),
    }
}

/// The subnet's data (upstream's `subnet_etcd_data`): `network_id`, `cidr`,
/// `host_routes`, `gateway_ip` (null when none), `dns_servers` when there
/// are any, and the IPv6 RA and address modes when both are set.
pub fn subnet_data(subnet: &Subnet) -> Result<Value> {
    let object = format!("subnet {}", subnet.id);
    let mut m = Map::new();
    m.insert("network_id".into(), subnet.network_id.clone().into());
    m.insert("cidr".into(), canonical_cidr(&object, &subnet.cidr)?.into());
    m.insert(
        "host_routes".into(),
        Value::Array(subnet.host_routes.clone()),
    );
    m.insert(
        "gateway_ip".into(),
        subnet.gateway_ip.clone().map_or(Value::Null, Value::from),
    );
    if !subnet.dns_nameservers.is_empty() {
        m.insert("dns_servers".into(), subnet.dns_nameservers.clone().into());
    }
    let mode = |m: &Option<String>| m.clone().filter(|s| !s.is_empty());
    if let (Some(ra), Some(addr)) = (mode(&subnet.ipv6_ra_mode), mode(&subnet.ipv6_address_mode)) {
        m.insert("ipv6_ra_mode".into(), ra.into());
        m.insert("ipv6_address_mode".into(), addr.into());
    }
    Ok(Value::Object(m))
}

/// What to store for a Neutron subnet dict: its key and data when DHCP is
/// enabled; `None` when it is not (then the key must not exist).
pub fn dhcp_subnet(subnet: &Value, region: &Region) -> Result<Option<DhcpSubnet>> {
    let s = Subnet::from_value(subnet)?;
    if !s.enable_dhcp {
        return Ok(None);
    }
    Ok(Some(DhcpSubnet {
        key: crate::keys::subnet_key(region, &s.id),
        value: subnet_data(&s)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_as_netaddr_prints_them() {
        for (given, want) in [
            ("10.65.0.0/24", "10.65.0.0/24"),
            ("10.65.0.5/24", "10.65.0.5/24"),
            ("10.65.0.5", "10.65.0.5/32"),
            ("2001:DB8:A41:2:0:0:0:0/64", "2001:db8:a41:2::/64"),
            ("fd00::", "fd00::/128"),
        ] {
            assert_eq!(canonical_cidr("s", given).unwrap(), want, "{given}");
        }
        assert!(canonical_cidr("s", "nonsense").is_err());
    }
}
