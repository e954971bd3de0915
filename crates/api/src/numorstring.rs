//! Fields that upstream accepts as either a number or a string: ports
//! (`80`, `"1000:2000"`, `"http"`) and protocols (`TCP`, `6`).

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A rule port: one number, an inclusive range, or a named port resolved
/// against the endpoints' `ports`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Port {
    Range { min: u16, max: u16 },
    Named(String),
}

impl Port {
    pub fn single(p: u16) -> Port {
        Port::Range { min: p, max: p }
    }

    /// Parses the string form; errors say what was wrong.
    pub fn parse_str(s: &str) -> Result<Port, String> {
        let num = |t: &str| -> Result<u16, String> {
            t.trim()
                .parse::<u16>()
                .map_err(|_| format!("invalid port {s:?}: port numbers are 1-65535"))
        };
        if let Some((a, b)) = s.split_once(':') {
            let (min, max) = (num(a)?, num(b)?);
            if min > max {
                return Err(format!(
                    "invalid port range {s:?}: the minimum is greater than the maximum"
                ));
            }
            return Ok(Port::Range { min, max });
        }
        if s.bytes().all(|c| c.is_ascii_digit()) && !s.is_empty() {
            return Ok(Port::single(num(s)?));
        }
        if is_port_name(s) {
            Ok(Port::Named(s.to_string()))
        } else {
            Err(format!(
                "invalid port {s:?}: expected a number, a range \"min:max\" or a port name ({PORT_NAME_RULE})"
            ))
        }
    }

    pub fn contains(&self, p: u16) -> bool {
        match self {
            Port::Range { min, max } => *min <= p && p <= *max,
            Port::Named(_) => false,
        }
    }
}

/// What a port name may look like, for messages.
pub const PORT_NAME_RULE: &str =
    "1-15 lower-case letters, digits and '-', with at least one letter, no '--' and no '-' at either end";

/// IANA service name rules, as Kubernetes applies them to named ports
/// (upstream validates rule and endpoint port names with them).
pub fn is_port_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 15
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.iter().any(|c| c.is_ascii_lowercase())
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !s.contains("--")
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Range { min, max } if min == max => write!(f, "{min}"),
            Port::Range { min, max } => write!(f, "{min}:{max}"),
            Port::Named(n) => f.write_str(n),
        }
    }
}

impl Serialize for Port {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Port::Range { min, max } if min == max => s.serialize_u16(*min),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Port, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number, a \"min:max\" range or a port name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
                u16::try_from(v)
                    .map(Port::single)
                    .map_err(|_| E::custom(format!("invalid port {v}: port numbers are 1-65535")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
                u16::try_from(v)
                    .map(Port::single)
                    .map_err(|_| E::custom(format!("invalid port {v}: port numbers are 1-65535")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Port, E> {
                Port::parse_str(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// An IP protocol by name (`TCP`, `UDP`, `ICMP`, `ICMPv6`, `SCTP`,
/// `UDPLite`) or number (1-255).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Name(String),
    Number(u8),
}

pub const PROTOCOL_NAMES: [(&str, u8); 6] = [
    ("TCP", 6),
    ("UDP", 17),
    ("ICMP", 1),
    ("ICMPv6", 58),
    ("SCTP", 132),
    ("UDPLite", 136),
];

impl Protocol {
    /// The IANA protocol number.
    pub fn number(&self) -> u8 {
        match self {
            Protocol::Number(n) => *n,
            Protocol::Name(name) => PROTOCOL_NAMES
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| *v)
                .unwrap_or(0),
        }
    }
    /// Protocols that rules and endpoint ports may give ports for: TCP, UDP
    /// and SCTP, as upstream allows (UDPLite has ports on the wire, but
    /// upstream does not accept port matches for it).
    pub fn supports_ports(&self) -> bool {
        matches!(self.number(), 6 | 17 | 132)
    }
    pub fn is_icmp(&self) -> bool {
        matches!(self.number(), 1 | 58)
    }
    pub fn parse_str(s: &str) -> Result<Protocol, String> {
        if let Ok(n) = s.parse::<u8>() {
            return Protocol::from_number(n as u64);
        }
        if PROTOCOL_NAMES.iter().any(|(n, _)| *n == s) {
            return Ok(Protocol::Name(s.to_string()));
        }
        let hint = PROTOCOL_NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(n, _)| format!(" (did you mean {n}?)"))
            .unwrap_or_default();
        Err(format!(
            "invalid protocol {s:?}{hint}: expected TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number 1-255"
        ))
    }
    fn from_number(n: u64) -> Result<Protocol, String> {
        match n {
            1..=255 => Ok(Protocol::Number(n as u8)),
            _ => Err(format!("invalid protocol number {n}: expected 1-255")),
        }
    }
}

impl Default for Protocol {
    fn default() -> Self {
        Protocol::Name("TCP".into())
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Name(n) => f.write_str(n),
            Protocol::Number(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Protocol::Name(n) => s.serialize_str(n),
            Protocol::Number(n) => s.serialize_u8(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Protocol, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Protocol;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a protocol name or number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Protocol, E> {
                Protocol::from_number(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Protocol, E> {
                Protocol::from_number(v.max(0) as u64).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Protocol, E> {
                Protocol::parse_str(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Serialises an optional float the way Go's encoding/json does: integral
/// values without a fractional part (`order: 100`, not `100.0`).
pub mod go_float {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => s.serialize_i64(*f as i64),
            Some(f) => s.serialize_f64(*f),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Option::<f64>::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_round_trip() {
        let p: Vec<Port> = serde_json::from_str(r#"[80, "443", "1000:2000", "http"]"#).unwrap();
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"[80,443,"1000:2000","http"]"#
        );
        assert!(serde_json::from_str::<Port>(r#""2000:1000""#).is_err());
        assert!(serde_json::from_str::<Port>("70000").is_err());
        assert!(serde_json::from_str::<Port>(r#""bad name!""#).is_err());
    }

    #[test]
    fn port_names_follow_iana_rules() {
        for ok in ["http", "http-alt", "h2", "x-1-y"] {
            assert!(is_port_name(ok), "{ok}");
        }
        for bad in [
            "HTTP",
            "http_alt",
            "-http",
            "http-",
            "a--b",
            "123",
            "",
            "abcdefghijklmnop",
        ] {
            assert!(!is_port_name(bad), "{bad}");
        }
        let e = serde_json::from_str::<Port>(r#""http_alt""#).unwrap_err();
        assert!(e.to_string().contains("lower-case letters"), "{e}");
        let e = serde_json::from_str::<Port>("70000").unwrap_err();
        assert!(e.to_string().contains("port numbers are 1-65535"), "{e}");
    }

    #[test]
    fn protocols() {
        let p: Protocol = serde_json::from_str(r#""TCP""#).unwrap();
        assert!(p.supports_ports());
        let e = serde_json::from_str::<Protocol>(r#""tcp""#).unwrap_err();
        assert!(e.to_string().contains("did you mean TCP"));
        assert_eq!(serde_json::from_str::<Protocol>("17").unwrap().number(), 17);
        assert!(serde_json::from_str::<Protocol>("0").is_err());
    }
}
