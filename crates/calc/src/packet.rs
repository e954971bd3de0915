//! A packet to evaluate and the verdict shape shared by [`crate::reference`]
//! (over v3 resources) and [`crate::verdict`] (over the compiled model).

use std::fmt;
use std::net::IpAddr;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_SCTP: u8 = 132;

/// The first packet of a flow, as policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
}

impl Packet {
    pub fn tcp(src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16) -> Packet {
        Packet {
            src,
            dst,
            protocol: PROTO_TCP,
            src_port,
            dst_port,
            icmp_type: None,
            icmp_code: None,
        }
    }

    pub fn udp(src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16) -> Packet {
        Packet {
            protocol: PROTO_UDP,
            ..Packet::tcp(src, dst, src_port, dst_port)
        }
    }

    /// ICMP (or ICMPv6 for IPv6 addresses) with a type and code.
    pub fn icmp(src: IpAddr, dst: IpAddr, icmp_type: u8, icmp_code: u8) -> Packet {
        Packet {
            src,
            dst,
            protocol: if src.is_ipv4() {
                PROTO_ICMP
            } else {
                PROTO_ICMPV6
            },
            src_port: 0,
            dst_port: 0,
            icmp_type: Some(icmp_type),
            icmp_code: Some(icmp_code),
        }
    }

    /// 4 or 6.
    pub fn ip_version(&self) -> u8 {
        if self.src.is_ipv4() {
            4
        } else {
            6
        }
    }
}

/// One direction's outcome and what decided it, e.g.
/// `NetworkPolicy production/web-db-policy (rule 1)`, `end of tier default`,
/// `Profile kns.openstack`, `no profile`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub by: String,
}

/// Egress is decided on the source if it is a policed workload endpoint,
/// ingress on the destination likewise; an unpoliced side is `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub egress: Option<Decision>,
    pub ingress: Option<Decision>,
}

impl Verdict {
    pub fn new(egress: Option<Decision>, ingress: Option<Decision>) -> Verdict {
        Verdict {
            allowed: egress.as_ref().is_none_or(|d| d.allowed)
                && ingress.as_ref().is_none_or(|d| d.allowed),
            egress,
            ingress,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.allowed { "allowed" } else { "denied" })?;
        for (dir, d) in [("egress", &self.egress), ("ingress", &self.ingress)] {
            if let Some(d) = d {
                let v = if d.allowed { "allow" } else { "deny" };
                write!(f, "; {dir}: {v} by {}", d.by)?;
            }
        }
        Ok(())
    }
}
