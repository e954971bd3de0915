//! NLRI: `[path id] length prefix-octets` (RFC 4271 §4.3, RFC 7911 §3).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{Family, Reader};

/// One prefix as announced or withdrawn; `path_id` is present exactly when
/// add-path is on for the family in that direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nlri {
    /// Always `trunc()`'d: host bits beyond the length are zero.
    pub prefix: IpNet,
    pub path_id: Option<u32>,
}

impl Nlri {
    /// An NLRI for `prefix`, host bits cleared.
    pub fn new(prefix: IpNet, path_id: Option<u32>) -> Self {
        Nlri {
            prefix: prefix.trunc(),
            path_id,
        }
    }

    pub fn family(&self) -> Family {
        Family::of(&self.prefix)
    }

    /// Bytes on the wire, with or without a path id.
    pub(crate) fn wire_len(&self, path_id: bool) -> usize {
        usize::from(path_id) * 4 + 1 + usize::from(self.prefix.prefix_len()).div_ceil(8)
    }

    /// Appends the encoding; `path_id` says whether add-path is on, and a
    /// missing id is then sent as 0.
    pub(crate) fn encode(&self, path_id: bool, out: &mut Vec<u8>) {
        if path_id {
            out.extend_from_slice(&self.path_id.unwrap_or(0).to_be_bytes());
        }
        let len = self.prefix.prefix_len();
        let octets = usize::from(len).div_ceil(8);
        out.push(len);
        match self.prefix.trunc().addr() {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..octets]),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..octets]),
        }
    }
}

/// Why an NLRI field did not parse; all of these reset the session
/// (RFC 7606 §5.3): without the NLRI, not even treat-as-withdraw is possible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadNlri;

/// Parses every NLRI in `bytes`, appending to `out`.
pub(crate) fn decode_all(
    bytes: &[u8],
    family: Family,
    path_id: bool,
    out: &mut Vec<Nlri>,
) -> Result<(), BadNlri> {
    let mut r = Reader::new(bytes);
    while !r.is_empty() {
        let id = if path_id {
            Some(r.u32().ok_or(BadNlri)?)
        } else {
            None
        };
        let len = r.u8().ok_or(BadNlri)?;
        if len > family.max_prefix_len() {
            return Err(BadNlri);
        }
        let octets = r.take(usize::from(len).div_ceil(8)).ok_or(BadNlri)?;
        out.push(Nlri {
            prefix: prefix(family, octets, len),
            path_id: id,
        });
    }
    Ok(())
}

/// The prefix from its significant octets; bits past `len` are cleared.
fn prefix(family: Family, octets: &[u8], len: u8) -> IpNet {
    match family {
        Family::Ipv4Unicast => {
            let mut a = [0u8; 4];
            a[..octets.len()].copy_from_slice(octets);
            // len <= 32 was checked, so new() cannot fail.
            let net = Ipv4Net::new(Ipv4Addr::from(a), len).unwrap_or_default();
            IpNet::V4(net.trunc())
        }
        Family::Ipv6Unicast => {
            let mut a = [0u8; 16];
            a[..octets.len()].copy_from_slice(octets);
            let net = Ipv6Net::new(Ipv6Addr::from(a), len).unwrap_or_default();
            IpNet::V6(net.trunc())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8], family: Family, path_id: bool) -> Result<Vec<Nlri>, BadNlri> {
        let mut out = Vec::new();
        decode_all(bytes, family, path_id, &mut out).map(|()| out)
    }

    #[test]
    fn rfc4271_prefix_encoding() {
        // 10.1.0.0/16, 192.168.1.0/24, 0.0.0.0/0, 10.0.0.1/32
        let bytes = [16, 10, 1, 24, 192, 168, 1, 0, 32, 10, 0, 0, 1];
        let got = parse(&bytes, Family::Ipv4Unicast, false).unwrap();
        let want: Vec<Nlri> = ["10.1.0.0/16", "192.168.1.0/24", "0.0.0.0/0", "10.0.0.1/32"]
            .iter()
            .map(|p| Nlri::new(p.parse().unwrap(), None))
            .collect();
        assert_eq!(got, want);
        let mut again = Vec::new();
        want.iter().for_each(|n| n.encode(false, &mut again));
        assert_eq!(again, bytes);
    }

    #[test]
    fn host_bits_are_cleared() {
        // /9 with the whole second octet set: only its top bit survives.
        let got = parse(&[9, 10, 0xff], Family::Ipv4Unicast, false).unwrap();
        assert_eq!(got[0].prefix, "10.128.0.0/9".parse::<IpNet>().unwrap());
    }

    #[test]
    fn add_path_ids() {
        let bytes = [0, 0, 0, 7, 32, 192, 0, 2, 1];
        let got = parse(&bytes, Family::Ipv4Unicast, true).unwrap();
        assert_eq!(
            got,
            vec![Nlri::new("192.0.2.1/32".parse().unwrap(), Some(7))]
        );
        // The same bytes without add-path are a /0 then garbage.
        assert_eq!(parse(&bytes, Family::Ipv4Unicast, false), Err(BadNlri));
    }

    #[test]
    fn ipv6_prefixes() {
        let bytes = [
            64, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 128, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 1,
        ];
        let got = parse(&bytes, Family::Ipv6Unicast, false).unwrap();
        assert_eq!(got[0].prefix, "2001:db8:0:1::/64".parse::<IpNet>().unwrap());
        assert_eq!(got[1].prefix, "fe80::1/128".parse::<IpNet>().unwrap());
    }

    #[test]
    fn bad_lengths_are_errors() {
        assert_eq!(
            parse(&[33, 1, 2, 3, 4, 5], Family::Ipv4Unicast, false),
            Err(BadNlri)
        );
        assert_eq!(parse(&[129], Family::Ipv6Unicast, false), Err(BadNlri));
        assert_eq!(
            parse(&[24, 10, 0], Family::Ipv4Unicast, false),
            Err(BadNlri)
        );
        assert_eq!(parse(&[0, 0, 1], Family::Ipv4Unicast, true), Err(BadNlri));
    }
}
