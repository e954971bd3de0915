//! Effective Felix settings for this host and the pool list.
//!
//! Precedence (lowest first): Felix's built-in defaults, FelixConfiguration
//! `default`, FelixConfiguration `node.<name>`, `FELIX_*` environment.

use calico_api::felixconfig::{FelixConfigurationSpec, ProtoPort as ApiProtoPort};
use calico_api::network::{EncapMode, IPPool};

use crate::model::{Encap, EndpointToHostAction, HostConfig, Pool, ProtoPort};

pub(crate) const DEFAULT_INTERFACE_PREFIXES: [&str; 2] = ["cali", "tap"];
pub(crate) const DEFAULT_VXLAN_VNI: u32 = 4096;
pub(crate) const DEFAULT_VXLAN_PORT: u16 = 4789;
pub(crate) const DEFAULT_LOG_PREFIX: &str = "calico-packet";
const TCP: u8 = 6;
const UDP: u8 = 17;
const SCTP: u8 = 132;

fn pp(protocol: u8, port: u16) -> ProtoPort {
    ProtoPort { protocol, port }
}

/// Felix's default `failsafeInboundHostPorts`.
pub fn default_failsafe_inbound() -> Vec<ProtoPort> {
    vec![
        pp(TCP, 22),
        pp(UDP, 68),
        pp(TCP, 179),
        pp(TCP, 2379),
        pp(TCP, 2380),
        pp(TCP, 5473),
        pp(TCP, 6443),
        pp(TCP, 6666),
        pp(TCP, 6667),
    ]
}

/// Felix's default `failsafeOutboundHostPorts`.
pub fn default_failsafe_outbound() -> Vec<ProtoPort> {
    vec![
        pp(UDP, 53),
        pp(UDP, 67),
        pp(TCP, 179),
        pp(TCP, 2379),
        pp(TCP, 2380),
        pp(TCP, 5473),
        pp(TCP, 6443),
        pp(TCP, 6666),
        pp(TCP, 6667),
    ]
}

/// The inputs of the host configuration.
#[derive(Default)]
pub(crate) struct ConfigInputs {
    pub default: Option<FelixConfigurationSpec>,
    pub node: Option<FelixConfigurationSpec>,
    pub env: Vec<(String, String)>,
}

impl ConfigInputs {
    pub(crate) fn compute(&self, warnings: &mut Vec<String>) -> HostConfig {
        let mut spec = FelixConfigurationSpec::default();
        if let Some(d) = &self.default {
            spec.merge_from(d);
        }
        if let Some(n) = &self.node {
            spec.merge_from(n);
        }
        for (k, v) in &self.env {
            let is_felix = k.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("FELIX_"));
            if !is_felix {
                continue;
            }
            match spec.set_from_env_name(k, v) {
                Ok(_) => {}
                Err(e) => warnings.push(format!("ignoring environment setting: {e}")),
            }
        }
        host_config(&spec, warnings)
    }
}

fn host_config(spec: &FelixConfigurationSpec, warnings: &mut Vec<String>) -> HostConfig {
    let interface_prefixes = match &spec.interface_prefix {
        Some(p) => {
            let v: Vec<String> = p
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if v.is_empty() {
                DEFAULT_INTERFACE_PREFIXES.map(String::from).to_vec()
            } else {
                v
            }
        }
        None => DEFAULT_INTERFACE_PREFIXES.map(String::from).to_vec(),
    };
    let default_endpoint_to_host_action = match spec.default_endpoint_to_host_action.as_deref() {
        None => EndpointToHostAction::Drop,
        Some(a) if a.eq_ignore_ascii_case("drop") => EndpointToHostAction::Drop,
        Some(a) if a.eq_ignore_ascii_case("return") => EndpointToHostAction::Return,
        Some(a) if a.eq_ignore_ascii_case("accept") => EndpointToHostAction::Accept,
        Some(a) => {
            warnings.push(format!(
                "defaultEndpointToHostAction {a:?} is not Drop, Return or Accept; using Drop"
            ));
            EndpointToHostAction::Drop
        }
    };
    let failsafe = |list: &Option<Vec<ApiProtoPort>>,
                    default: Vec<ProtoPort>,
                    field: &str,
                    warnings: &mut Vec<String>| {
        match list {
        None => default,
        Some(l) => l
            .iter()
            .filter_map(|p| {
                let proto = match p.protocol.to_ascii_lowercase().as_str() {
                    "" | "tcp" => TCP,
                    "udp" => UDP,
                    "sctp" => SCTP,
                    other => {
                        warnings.push(format!("{field}: unknown protocol {other:?}; entry skipped"));
                        return None;
                    }
                };
                if p.net.as_deref().is_some_and(|n| !n.is_empty()) {
                    warnings.push(format!(
                        "{field}: {}:{} is limited to {:?}, which is not supported; it applies to all addresses",
                        p.protocol,
                        p.port,
                        p.net.as_deref().unwrap_or_default()
                    ));
                }
                Some(pp(proto, p.port))
            })
            .collect(),
    }
    };
    let failsafe_inbound = failsafe(
        &spec.failsafe_inbound_host_ports,
        default_failsafe_inbound(),
        "failsafeInboundHostPorts",
        warnings,
    );
    let failsafe_outbound = failsafe(
        &spec.failsafe_outbound_host_ports,
        default_failsafe_outbound(),
        "failsafeOutboundHostPorts",
        warnings,
    );
    let vxlan_vni = match spec.vxlan_vni {
        None => DEFAULT_VXLAN_VNI,
        Some(v) => u32::try_from(v)
            .ok()
            .filter(|v| *v > 0 && *v < (1 << 24))
            .unwrap_or_else(|| {
                warnings.push(format!(
                    "vxlanVNI {v} is out of range; using {DEFAULT_VXLAN_VNI}"
                ));
                DEFAULT_VXLAN_VNI
            }),
    };
    let vxlan_port = match spec.vxlan_port {
        None => DEFAULT_VXLAN_PORT,
        Some(v) => u16::try_from(v).ok().filter(|v| *v > 0).unwrap_or_else(|| {
            warnings.push(format!(
                "vxlanPort {v} is out of range; using {DEFAULT_VXLAN_PORT}"
            ));
            DEFAULT_VXLAN_PORT
        }),
    };
    let vxlan_mtu = match spec.vxlan_mtu {
        None => 0,
        Some(v) => u32::try_from(v).unwrap_or_else(|_| {
            warnings.push(format!("vxlanMTU {v} is out of range; computing it"));
            0
        }),
    };
    let metadata = metadata(spec, &interface_prefixes, warnings);
    HostConfig {
        metadata,
        interface_prefixes,
        default_endpoint_to_host_action,
        failsafe_inbound,
        failsafe_outbound,
        vxlan_vni,
        vxlan_port,
        vxlan_mtu,
        log_prefix: spec
            .log_prefix
            .clone()
            .unwrap_or_else(|| DEFAULT_LOG_PREFIX.to_string()),
    }
}

/// Felix's metadata DNAT: only when OpenStack is active (an
/// `interfacePrefix` naming `tap`, as the Neutron driver sets it, or the
/// address or port moved from their defaults 127.0.0.1 and 8775; our
/// default prefixes include `tap` without meaning OpenStack) and the
/// address is an IPv4 address; `none` turns it off. A host name is not
/// resolved (as Felix): no DNAT, and a warning says so.
fn metadata(
    spec: &FelixConfigurationSpec,
    prefixes: &[String],
    warnings: &mut Vec<String>,
) -> Option<(std::net::Ipv4Addr, u16)> {
    let addr = spec.metadata_addr.as_deref().unwrap_or("127.0.0.1");
    let port = spec.metadata_port.unwrap_or(8775);
    let tap = spec.interface_prefix.is_some() && prefixes.iter().any(|p| p == "tap");
    let active = tap || addr != "127.0.0.1" || port != 8775;
    if !active || addr.is_empty() || addr.eq_ignore_ascii_case("none") {
        return None;
    }
    let Ok(port) = u16::try_from(port) else {
        warnings.push(format!(
            "metadataPort {port} is out of range; no metadata DNAT"
        ));
        return None;
    };
    match addr.parse() {
        Ok(a) => Some((a, port)),
        Err(_) => {
            warnings.push(format!(
                "metadataAddr {addr:?} is not an IPv4 address (host names are not resolved); no metadata DNAT"
            ));
            None
        }
    }
}

pub(crate) fn encap(m: EncapMode) -> Encap {
    match m {
        EncapMode::Never => Encap::Never,
        EncapMode::Always => Encap::Always,
        EncapMode::CrossSubnet => Encap::CrossSubnet,
    }
}

/// What the dataplane needs of a pool (None: the CIDR is unusable).
pub(crate) fn pool(p: &IPPool) -> Option<Pool> {
    Some(Pool {
        name: p.metadata.name.clone(),
        cidr: p.spec.cidr.parse::<ipnet::IpNet>().ok()?.trunc(),
        nat_outgoing: p.spec.nat_outgoing,
        vxlan: encap(p.spec.vxlan()),
        ipip: encap(p.spec.ipip()),
        disabled: p.spec.disabled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_follows_felixs_openstack_rules() {
        let m = |spec: FelixConfigurationSpec| {
            let mut w = Vec::new();
            let got = host_config(&spec, &mut w).metadata;
            (got.map(|(a, p)| format!("{a}:{p}")), w.len())
        };
        assert_eq!(m(Default::default()), (None, 0), "not OpenStack");
        let tap = || FelixConfigurationSpec {
            interface_prefix: Some("tap".into()),
            ..Default::default()
        };
        assert_eq!(m(tap()), (Some("127.0.0.1:8775".into()), 0));
        let moved = FelixConfigurationSpec {
            metadata_addr: Some("10.0.0.1".into()),
            metadata_port: Some(1234),
            ..Default::default()
        };
        assert_eq!(m(moved), (Some("10.0.0.1:1234".into()), 0));
        for (addr, warns) in [
            ("none", 0),
            ("NONE", 0),
            ("", 0),
            ("nova-api.example", 1),
            ("fd00::1", 1),
        ] {
            let spec = FelixConfigurationSpec {
                metadata_addr: Some(addr.into()),
                ..tap()
            };
            assert_eq!(m(spec), (None, warns), "{addr:?}");
        }
    }

    #[test]
    fn defaults_then_default_then_node_then_env() {
        let mut w = Vec::new();
        let mut inputs = ConfigInputs::default();
        let c = inputs.compute(&mut w);
        assert_eq!(c.interface_prefixes, vec!["cali", "tap"]);
        assert_eq!(
            c.default_endpoint_to_host_action,
            EndpointToHostAction::Drop
        );
        assert_eq!(c.failsafe_inbound[0], pp(TCP, 22));
        assert_eq!(c.failsafe_outbound[0], pp(UDP, 53));
        assert_eq!((c.vxlan_vni, c.vxlan_port, c.vxlan_mtu), (4096, 4789, 0));
        assert_eq!(c.log_prefix, "calico-packet");
        inputs.default = Some(FelixConfigurationSpec {
            interface_prefix: Some("tap".into()),
            vxlan_vni: Some(5000),
            log_prefix: Some("x".into()),
            ..Default::default()
        });
        inputs.node = Some(FelixConfigurationSpec {
            vxlan_vni: Some(6000),
            default_endpoint_to_host_action: Some("Accept".into()),
            ..Default::default()
        });
        inputs.env = vec![
            ("FELIX_LOGPREFIX".into(), "env".into()),
            ("PATH".into(), "/bin".into()),
            ("FELIX_VXLANPORT".into(), "not-a-number".into()),
        ];
        let c = inputs.compute(&mut w);
        assert_eq!(c.interface_prefixes, vec!["tap"]);
        assert_eq!(c.vxlan_vni, 6000);
        assert_eq!(
            c.default_endpoint_to_host_action,
            EndpointToHostAction::Accept
        );
        assert_eq!(c.log_prefix, "env");
        assert_eq!(w.len(), 1, "{w:?}");
    }
}
