//! Upstream's etcd key layout for IPAM data (lcg `lib/backend/model/block.go`,
//! `block_affinity.go`, `ipam_handle.go`, `ipam_config.go`):
//!
//! | data | key |
//! |---|---|
//! | block | `/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26` |
//! | affinity | `/calico/ipam/v2/host/<host>/ipv4/block/10.0.0.0-26` |
//! | handle | `/calico/ipam/v2/handle/<id>` |
//! | config | `/calico/ipam/v2/config` |
//!
//! A CIDR appears with its `/` replaced by `-`, IPv6 in its compressed form
//! (`fd00::-122`), as Go's `net.IPNet.String()` prints it.

use ipnet::IpNet;

/// Everything IPAM stores lives below this prefix.
pub const IPAM_PREFIX: &str = "/calico/ipam/v2/";
/// Blocks of both IP versions.
pub const BLOCK_PREFIX: &str = "/calico/ipam/v2/assignment/";
/// Affinities of every host.
pub const AFFINITY_PREFIX: &str = "/calico/ipam/v2/host/";
/// Handles.
pub const HANDLE_PREFIX: &str = "/calico/ipam/v2/handle/";
/// The global IPAM configuration.
pub const CONFIG_KEY: &str = "/calico/ipam/v2/config";

/// 4 or 6.
pub fn version_of(net: &IpNet) -> u8 {
    match net {
        IpNet::V4(_) => 4,
        IpNet::V6(_) => 6,
    }
}

/// `10.0.0.0-26`: the key segment naming a CIDR.
pub fn cidr_segment(net: &IpNet) -> String {
    format!("{}-{}", net.network(), net.prefix_len())
}

fn parse_cidr_segment(seg: &str) -> Option<IpNet> {
    let (addr, len) = seg.split_once('-')?;
    let net: IpNet = format!("{addr}/{len}").parse().ok()?;
    Some(net.trunc())
}

/// `/calico/ipam/v2/assignment/ipv4/block/`: the blocks of one IP version.
pub fn block_prefix(version: u8) -> String {
    format!("{BLOCK_PREFIX}ipv{version}/block/")
}

pub fn block_key(cidr: &IpNet) -> String {
    format!("{}{}", block_prefix(version_of(cidr)), cidr_segment(cidr))
}

/// The CIDR a block key names (`None` for anything else).
pub fn parse_block_key(key: &str) -> Option<IpNet> {
    let rest = key.strip_prefix(BLOCK_PREFIX)?;
    let (ver, rest) = rest.split_once('/')?;
    let seg = rest.strip_prefix("block/")?;
    if seg.contains('/') {
        return None;
    }
    let net = parse_cidr_segment(seg)?;
    (ver == format!("ipv{}", version_of(&net))).then_some(net)
}

/// `/calico/ipam/v2/host/<host>/ipv4/block/`: one host's affinities of one version.
pub fn host_affinity_prefix(host: &str, version: u8) -> String {
    format!("{AFFINITY_PREFIX}{host}/ipv{version}/block/")
}

pub fn affinity_key(host: &str, cidr: &IpNet) -> String {
    format!(
        "{}{}",
        host_affinity_prefix(host, version_of(cidr)),
        cidr_segment(cidr)
    )
}

/// The host and CIDR an affinity key names.
pub fn parse_affinity_key(key: &str) -> Option<(String, IpNet)> {
    let rest = key.strip_prefix(AFFINITY_PREFIX)?;
    let mut parts = rest.split('/');
    let host = parts.next()?;
    let ver = parts.next()?;
    if parts.next()? != "block" {
        return None;
    }
    let net = parse_cidr_segment(parts.next()?)?;
    if parts.next().is_some() || host.is_empty() || ver != format!("ipv{}", version_of(&net)) {
        return None;
    }
    Some((host.to_string(), net))
}

pub fn handle_key(handle_id: &str) -> String {
    format!("{HANDLE_PREFIX}{handle_id}")
}

/// The handle id a handle key names.
pub fn parse_handle_key(key: &str) -> Option<&str> {
    key.strip_prefix(HANDLE_PREFIX)
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn keys_follow_upstream() {
        let b = net("10.0.0.0/26");
        assert_eq!(
            block_key(&b),
            "/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26"
        );
        assert_eq!(
            affinity_key("node-1", &b),
            "/calico/ipam/v2/host/node-1/ipv4/block/10.0.0.0-26"
        );
        assert_eq!(handle_key("h1"), "/calico/ipam/v2/handle/h1");
        let v6 = net("fd00:0:0:0:0:0:0:0/122");
        assert_eq!(
            block_key(&v6),
            "/calico/ipam/v2/assignment/ipv6/block/fd00::-122"
        );
        assert_eq!(
            affinity_key("n", &v6),
            "/calico/ipam/v2/host/n/ipv6/block/fd00::-122"
        );
    }

    #[test]
    fn keys_parse_back() {
        for s in [
            "10.0.0.0/26",
            "192.168.255.192/26",
            "fd00::/122",
            "2001:db8::40/122",
        ] {
            let n = net(s);
            assert_eq!(parse_block_key(&block_key(&n)), Some(n));
            assert_eq!(
                parse_affinity_key(&affinity_key("host.a", &n)),
                Some(("host.a".to_string(), n))
            );
        }
        assert_eq!(parse_handle_key("/calico/ipam/v2/handle/abc"), Some("abc"));
        assert_eq!(parse_handle_key("/calico/ipam/v2/handle/"), None);
        assert_eq!(
            parse_block_key("/calico/ipam/v2/assignment/ipv6/block/10.0.0.0-26"),
            None
        );
        assert_eq!(
            parse_block_key("/calico/ipam/v2/assignment/ipv4/block/x"),
            None
        );
        assert_eq!(
            parse_affinity_key("/calico/ipam/v2/host/h/ipv4/block/10.0.0.0-26/x"),
            None
        );
        assert_eq!(
            parse_affinity_key("/calico/ipam/v2/host//ipv4/block/10.0.0.0-26"),
            None
        );
    }
}
