//! IPReservation filter: addresses auto-assign must never hand out
//! (lcg `lib/ipam/reserved.go`). Explicit assignment (`assign_ip`) ignores
//! reservations, as upstream does.

use std::net::IpAddr;

use ipnet::IpNet;

/// The reserved CIDRs of one IP version (single addresses are /32 or /128).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reservations {
    nets: Vec<IpNet>,
}

impl Reservations {
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Reservations {
        Reservations {
            nets: nets.into_iter().map(|n| n.trunc()).collect(),
        }
    }

    /// Parses `reservedCIDRs` entries (CIDRs or bare addresses), skipping
    /// those that do not parse (validation already rejected them on write).
    pub fn from_strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Reservations {
        Reservations::new(items.into_iter().filter_map(|s| {
            s.parse::<IpNet>()
                .ok()
                .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
        }))
    }

    /// Only the reservations of one IP version.
    pub fn of_version(&self, version: u8) -> Reservations {
        Reservations {
            nets: self
                .nets
                .iter()
                .filter(|n| crate::keys::version_of(n) == version)
                .copied()
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn matches_ip(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// True if every address of `cidr` is reserved (one reservation covers it).
    pub fn matches_whole(&self, cidr: &IpNet) -> bool {
        self.nets
            .iter()
            .any(|n| n.prefix_len() <= cidr.prefix_len() && n.contains(&cidr.network()))
    }

    /// True if some address of `cidr` is reserved.
    pub fn matches_some(&self, cidr: &IpNet) -> bool {
        self.nets
            .iter()
            .any(|n| n.contains(&cidr.network()) || cidr.contains(&n.network()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_and_partial() {
        let r = Reservations::from_strings(["10.0.0.0/25", "10.0.1.7", "bogus", "fd00::/120"]);
        let b0: IpNet = "10.0.0.0/26".parse().unwrap();
        let b1: IpNet = "10.0.1.0/26".parse().unwrap();
        let b2: IpNet = "10.0.2.0/26".parse().unwrap();
        assert!(r.matches_whole(&b0) && r.matches_some(&b0));
        assert!(!r.matches_whole(&b1) && r.matches_some(&b1));
        assert!(!r.matches_some(&b2));
        assert!(r.matches_ip("10.0.1.7".parse().unwrap()));
        assert!(!r.matches_ip("10.0.1.8".parse().unwrap()));
        assert!(r.of_version(4).matches_ip("10.0.0.3".parse().unwrap()));
        assert!(!r.of_version(4).matches_ip("fd00::1".parse().unwrap()));
        assert!(r.of_version(6).matches_ip("fd00::1".parse().unwrap()));
    }
}
