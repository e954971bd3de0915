//! Security group → NetworkPolicy `ossg.default.<id>`, as upstream's
//! `policy.py` writes it. Membership is not in the policy: each port carries
//! a label per security group, and the policy selects `has(<label>)`.

use calico_api::numorstring::{Port as RulePort, Protocol};
use calico_api::policy::{Action, IcmpFields, NetworkPolicy, NetworkPolicySpec, Rule};
use calico_api::Resource;
use ipnet::IpNet;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::neutron::{SecurityGroup, SecurityGroupRule};
use crate::Config;

/// Prefix of the label marking a port as a member of a group (then the
/// group's ID); its value is the group's sanitised name.
pub const SG_LABEL_PREFIX: &str = "sg.projectcalico.org/openstack-";
/// Prefix of the label naming a port's group (then the sanitised name);
/// its value is the group's ID.
pub const SG_NAME_LABEL_PREFIX: &str = "sg-name.projectcalico.org/openstack-";
/// Longest sanitised group name in a label (upstream keeps the whole
/// label, prefix included, within 63 characters).
pub const SG_NAME_MAX_LENGTH: usize = 63 - SG_NAME_LABEL_PREFIX.len();
/// Prefix of the policies of security groups (then the group's ID).
pub const POLICY_NAME_PREFIX: &str = "ossg.default.";

/// Neutron's `IP_PROTOCOL_MAP` (neutron-lib): the protocol names its API
/// accepts, with their numbers. Upstream writes the number for these names
/// (so `tcp` becomes `6`); `icmp` and `ipv6-icmp` are handled before.
pub const IP_PROTOCOL_MAP: [(&str, u8); 25] = [
    ("ah", 51),
    ("dccp", 33),
    ("egp", 8),
    ("esp", 50),
    ("gre", 47),
    ("hopopt", 0),
    ("icmp", 1),
    ("igmp", 2),
    ("ip", 0),
    ("ipip", 4),
    ("ipv6-encap", 41),
    ("ipv6-frag", 44),
    ("ipv6-icmp", 58),
    ("icmpv6", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("ipv6-route", 43),
    ("ospf", 89),
    ("pgm", 113),
    ("rsvp", 46),
    ("sctp", 132),
    ("tcp", 6),
    ("udp", 17),
    ("udplite", 136),
    ("vrrp", 112),
];

/// `ossg.default.<sg id>`.
pub fn policy_name(sg_id: &str) -> String {
    format!("{POLICY_NAME_PREFIX}{sg_id}")
}

/// The label a member port of the group carries.
pub fn sg_label(sg_id: &str) -> String {
    format!("{SG_LABEL_PREFIX}{sg_id}")
}

/// `has(sg.projectcalico.org/openstack-<sg id>)`: the group's members.
pub fn sg_selector(sg_id: &str) -> String {
    format!("has({})", sg_label(sg_id))
}

/// A security group's policy as upstream writes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub resource: NetworkPolicy,
}

impl Policy {
    /// Translates a group's rules (rules of other groups in `rules` are
    /// skipped, as upstream does) without checking the result against
    /// Calico's API (see `validate`). Ingress rules allow traffic from the
    /// rule's remote group or prefix to the group's members; egress rules
    /// from the members to the remote. No `order` and no `types`, as
    /// upstream: Calico then applies the policy to ingress only when the
    /// group has no egress rules (and such a port's egress is denied, as in
    /// Neutron).
    pub fn translate(sg_id: &str, rules: &[Value], cfg: &Config) -> Result<Policy> {
        let mut spec = NetworkPolicySpec {
            selector: sg_selector(sg_id),
            ..Default::default()
        };
        for (i, v) in rules.iter().enumerate() {
            let rule_id = v.get("id").and_then(Value::as_str);
            let object = match rule_id {
                Some(id) => format!("security group {sg_id} rule {id}"),
                None => format!("security group {sg_id} rule #{i}"),
            };
            let rule: SecurityGroupRule = crate::error::from_dict(&object, v)?;
            if rule
                .security_group_id
                .as_deref()
                .is_some_and(|g| g != sg_id)
            {
                continue;
            }
            let translated = translate_rule(&object, &rule)?;
            match rule.direction.as_str() {
                "ingress" => spec.ingress.push(translated),
                _ => spec.egress.push(translated),
            }
        }
        let mut np = NetworkPolicy::new(policy_name(sg_id), spec);
        np.metadata.namespace = cfg.region.namespace();
        Ok(Policy { resource: np })
    }

    pub fn name(&self) -> &str {
        &self.resource.metadata.name
    }

    pub fn namespace(&self) -> &str {
        &self.resource.metadata.namespace
    }

    /// Where it is stored (`.../networkpolicies/<namespace>/ossg.default.<id>`).
    pub fn key(&self) -> String {
        crate::keys::network_policy_key(self.namespace(), self.name())
    }

    /// The stored JSON without `uid` and `creationTimestamp`: this project's
    /// encoding of the resource. As upstream: no tier in the spec (the name
    /// carries it) and no `projectcalico.org/metadata` annotation.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(&self.resource).expect("resources always serialise")
    }

    /// Checks the policy against Calico's API rules (as it reads after
    /// defaults), so that a group Calico would reject is never written.
    pub fn validate(&self) -> Result<()> {
        let mut r = self.resource.clone();
        r.apply_defaults();
        r.validate().map_err(|errs| {
            let sg = self
                .name()
                .strip_prefix(POLICY_NAME_PREFIX)
                .unwrap_or(self.name());
            Error::new(
                format!("security group {sg}"),
                "",
                format!("its NetworkPolicy would be invalid: {errs}"),
            )
        })
    }
}

/// Translates and checks a security group dict with its
/// `security_group_rules` into the NetworkPolicy upstream writes.
pub fn network_policy(security_group: &Value, cfg: &Config) -> Result<Policy> {
    let sg = SecurityGroup::from_value(security_group)?;
    security_group_policy(&sg.id, &sg.security_group_rules, cfg)
}

/// Translates and checks a group's rules (`get_security_group_rules`).
pub fn security_group_policy(sg_id: &str, rules: &[Value], cfg: &Config) -> Result<Policy> {
    let p = Policy::translate(sg_id, rules, cfg)?;
    p.validate()?;
    Ok(p)
}

/// What a rule's protocol means for its port range.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RangeMeaning {
    Ports,
    IcmpTypeCode,
}

/// Maps a Neutron protocol as upstream does: any/0/-1/null → no protocol;
/// `ipv6-icmp` → ICMPv6; `icmp` → ICMP, or ICMPv6 for IPv6; a number →
/// itself; a name in `IP_PROTOCOL_MAP` → its number; any other name in
/// upper case. Differences, each where upstream writes something Calico
/// cannot read or reads differently: a number given as a string (`"6"`,
/// how Neutron's API stores numbers) is written as the number (upstream
/// writes the string, which Calico reads as the number); protocol 0 (`ip`,
/// `hopopt`, `"0"`) means any protocol, as Felix treats it; a name Calico
/// does not know is an error.
fn map_protocol(
    object: &str,
    rule: &SecurityGroupRule,
) -> Result<(Option<Protocol>, RangeMeaning)> {
    let bad = |m: String| Error::new(object, "protocol", m);
    let number = |n: i64| -> Result<(Option<Protocol>, RangeMeaning)> {
        match n {
            -1 | 0 => Ok((None, RangeMeaning::Ports)),
            1..=255 => {
                let meaning = if n == 1 || n == 58 {
                    RangeMeaning::IcmpTypeCode
                } else {
                    RangeMeaning::Ports
                };
                Ok((Some(Protocol::Number(n as u8)), meaning))
            }
            _ => Err(bad(format!("{n} is not an IP protocol number (0-255)"))),
        }
    };
    match &rule.protocol {
        None | Some(Value::Null) => Ok((None, RangeMeaning::Ports)),
        Some(Value::Number(n)) => number(
            n.as_i64()
                .ok_or_else(|| bad(format!("{n} is not an IP protocol number (0-255)")))?,
        ),
        Some(Value::String(s)) => match s.as_str() {
            "any" => Ok((None, RangeMeaning::Ports)),
            "ipv6-icmp" => Ok((
                Some(Protocol::Name("ICMPv6".into())),
                RangeMeaning::IcmpTypeCode,
            )),
            "icmp" => {
                let name = if rule.ethertype == "IPv6" {
                    "ICMPv6"
                } else {
                    "ICMP"
                };
                Ok((
                    Some(Protocol::Name(name.into())),
                    RangeMeaning::IcmpTypeCode,
                ))
            }
            s => {
                if let Some((_, n)) = IP_PROTOCOL_MAP.iter().find(|(name, _)| *name == s) {
                    return number(*n as i64);
                }
                if let Ok(n) = s.parse::<i64>() {
                    return number(n);
                }
                let upper = s.to_uppercase();
                Protocol::parse_str(&upper)
                    .map(|p| (Some(p), RangeMeaning::Ports))
                    .map_err(|_| bad(format!("{s:?} is not a protocol Calico supports (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite, a name of Neutron's or a number 1-255)")))
            }
        },
        Some(other) => Err(bad(format!("{other} is not a protocol name or number"))),
    }
}

/// The port match of a rule, as upstream: none for `port_range_min` -1 or
/// no range, one port when both ends are equal, else `"min:max"`.
/// Differences: with only one end given upstream writes `"25:None"`; we
/// take the one port. A range starting at 0 (all ports) starts at 1, as
/// Calico's ports do.
fn port_match(object: &str, min: Option<i64>, max: Option<i64>) -> Result<Vec<RulePort>> {
    if min == Some(-1) {
        return Ok(vec![]);
    }
    let (lo, hi) = match (min, max) {
        (None, None) => return Ok(vec![]),
        (Some(a), None) | (None, Some(a)) => (a, a),
        (Some(a), Some(b)) => (a, b),
    };
    let port = |field: &str, p: i64| -> Result<u16> {
        u16::try_from(p)
            .map_err(|_| Error::new(object, field, format!("{p} is not a port number (0-65535)")))
    };
    let (mut lo, hi) = (port("port_range_min", lo)?, port("port_range_max", hi)?);
    if lo > hi {
        return Err(Error::new(
            object,
            "port_range_min",
            format!("port range {lo}:{hi} is empty"),
        ));
    }
    if lo == 0 && hi > 0 {
        lo = 1;
    }
    Ok(vec![RulePort::Range { min: lo, max: hi }])
}

/// ICMP type and code, from `port_range_min` and `port_range_max` (-1 or
/// none: any).
fn icmp_match(rule: &SecurityGroupRule) -> Option<IcmpFields> {
    let given = |v: Option<i64>| v.filter(|v| *v != -1);
    let fields = IcmpFields {
        icmp_type: given(rule.port_range_min),
        code: given(rule.port_range_max),
    };
    (fields != IcmpFields::default()).then_some(fields)
}

/// The remote side's prefix: Neutron keeps it as given (`normalized_cidr`
/// holds the masked form); upstream writes it as given. We write the masked
/// network, as Neutron's `normalized_cidr` and Felix read it, and a bare
/// address as a host prefix.
fn remote_net(object: &str, text: &str) -> Result<String> {
    let net: IpNet = match text.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => match text.parse::<std::net::IpAddr>() {
            Ok(a) => IpNet::from(a),
            Err(_) => {
                return Err(Error::new(
                    object,
                    "remote_ip_prefix",
                    format!("{text:?} is not an IP prefix"),
                ))
            }
        },
    };
    Ok(net.trunc().to_string())
}

/// One Neutron rule as one Calico rule (upstream's
/// `_neutron_rule_to_etcd_rule`), with the differences noted on
/// `map_protocol`, `port_match` and `remote_net`, and: a port range on
/// ICMP given by number (1, 58, `icmpv6`) is the ICMP type and code, as
/// for `icmp` (upstream writes it as ports, which Calico rejects); a rule
/// with a `remote_address_group_id` is an error (upstream ignores the
/// address group, allowing every address).
pub fn translate_rule(object: &str, rule: &SecurityGroupRule) -> Result<Rule> {
    let ingress = match rule.direction.as_str() {
        "ingress" => true,
        "egress" => false,
        other => {
            return Err(Error::new(
                object,
                "direction",
                format!("{other:?}: a rule is ingress or egress"),
            ))
        }
    };
    let ip_version = match rule.ethertype.as_str() {
        "IPv4" => 4,
        "IPv6" => 6,
        other => {
            return Err(Error::new(
                object,
                "ethertype",
                format!("{other:?}: a rule is IPv4 or IPv6"),
            ))
        }
    };
    if let Some(ag) = &rule.remote_address_group_id {
        return Err(Error::new(
            object,
            "remote_address_group_id",
            format!("address groups ({ag}) are not supported by Calico's OpenStack driver"),
        ));
    }
    let mut r = Rule::new(Action::Allow);
    r.ip_version = Some(ip_version);
    let (protocol, meaning) = map_protocol(object, rule)?;
    r.protocol = protocol;
    let ports = match meaning {
        RangeMeaning::IcmpTypeCode => {
            r.icmp = icmp_match(rule);
            vec![]
        }
        RangeMeaning::Ports => port_match(object, rule.port_range_min, rule.port_range_max)?,
    };
    // The remote side: the source of an ingress rule, the destination of
    // an egress one. Ports are always the destination's.
    let remote = if ingress {
        &mut r.source
    } else {
        &mut r.destination
    };
    if let Some(g) = &rule.remote_group_id {
        remote.selector = sg_selector(g);
    }
    if let Some(p) = &rule.remote_ip_prefix {
        remote.nets = vec![remote_net(object, p)?];
    }
    r.destination.ports = ports;
    Ok(r)
}
