//! Which IP pools apply to a host and a use (lcg `lib/ipam/pools.go`,
//! `determinePools`, `SelectsNode`, `filterPoolsByUse`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use calico_api::network::{AllowedUse, AssignmentMode, IPPool};
use calico_api::selector::Selector;
use ipnet::IpNet;

use crate::keys::version_of;

/// A pool with its parsed CIDR and effective block size.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolInfo {
    pub name: String,
    pub net: IpNet,
    pub block_size: u8,
    pub pool: IPPool,
}

impl PoolInfo {
    /// `None` for a pool whose CIDR does not parse (never written by us).
    pub fn new(pool: &IPPool) -> Option<PoolInfo> {
        let net = pool.spec.net()?.trunc();
        let block_size = pool.spec.effective_block_size();
        if block_size < net.prefix_len() || block_size > net.max_prefix_len() {
            return None;
        }
        Some(PoolInfo {
            name: pool.metadata.name.clone(),
            net,
            block_size,
            pool: pool.clone(),
        })
    }

    pub fn version(&self) -> u8 {
        version_of(&self.net)
    }

    pub fn enabled(&self) -> bool {
        !self.pool.spec.disabled
    }

    /// Whether the pool's `nodeSelector` selects a node with these labels
    /// (an empty selector selects every node; one that does not parse, none).
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        let s = self.pool.spec.node_selector.trim();
        if s.is_empty() {
            return true;
        }
        match Selector::parse(s) {
            Ok(sel) => sel.matches(labels),
            Err(e) => {
                tracing::warn!(pool = %self.name, selector = s, "invalid nodeSelector: {e}");
                false
            }
        }
    }

    /// True if the `nodeSelector` selects every node (so node labels need
    /// not be read to apply it).
    pub fn selects_all(&self) -> bool {
        let s = self.pool.spec.node_selector.trim();
        s.is_empty() || Selector::parse(s).is_ok_and(|sel| sel.is_all())
    }

    pub fn allows(&self, use_: AllowedUse) -> bool {
        self.pool.spec.allows(use_)
    }

    /// Pools in `Manual` assignment mode are only used when asked for by CIDR.
    pub fn automatic(&self) -> bool {
        self.pool.spec.assignment_mode != Some(AssignmentMode::Manual)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.net.contains(&ip)
    }
}

/// Parsed pools, in the order given (the store's: by name).
pub fn pool_infos(pools: &[IPPool]) -> Vec<PoolInfo> {
    pools.iter().filter_map(PoolInfo::new).collect()
}

/// The pool holding `ip`, if any.
pub fn pool_for_ip(pools: &[PoolInfo], ip: IpAddr) -> Option<&PoolInfo> {
    pools.iter().find(|p| p.contains(ip))
}

/// The pool holding block `cidr`, if any.
pub fn pool_for_block<'a>(pools: &'a [PoolInfo], cidr: &IpNet) -> Option<&'a PoolInfo> {
    pools.iter().find(|p| p.net.contains(&cidr.network()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use calico_api::network::IPPoolSpec;

    fn pool(name: &str, cidr: &str, sel: &str) -> IPPool {
        IPPool::new(
            name,
            IPPoolSpec {
                cidr: cidr.into(),
                node_selector: sel.into(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn selection() {
        let labels = BTreeMap::from([("zone".to_string(), "a".to_string())]);
        let p = PoolInfo::new(&pool("p", "10.0.0.0/16", "zone == 'a'")).unwrap();
        assert!(p.selects(&labels));
        assert!(!p.selects(&BTreeMap::new()));
        assert!(PoolInfo::new(&pool("q", "10.0.0.0/16", ""))
            .unwrap()
            .selects(&BTreeMap::new()));
        assert!(!PoolInfo::new(&pool("r", "10.0.0.0/16", "(("))
            .unwrap()
            .selects(&labels));
        assert_eq!(p.block_size, 26);
        assert!(p.allows(AllowedUse::Workload) && p.allows(AllowedUse::Tunnel));
        let v6 = PoolInfo::new(&pool("v6", "fd00::/64", "")).unwrap();
        assert_eq!((v6.block_size, v6.version()), (122, 6));
        let infos = pool_infos(&[pool("a", "10.0.0.0/16", ""), pool("b", "bogus", "")]);
        assert_eq!(infos.len(), 1);
        assert_eq!(
            pool_for_ip(&infos, "10.0.3.4".parse().unwrap())
                .unwrap()
                .name,
            "a"
        );
        assert!(pool_for_ip(&infos, "10.1.3.4".parse().unwrap()).is_none());
    }
}
