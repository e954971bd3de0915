//! IPAM handles (lcg `lib/backend/model/ipam_handle.go`): one key per
//! allocation owner, `/calico/ipam/v2/handle/<id>`, counting its addresses
//! per block: `{"block":{"10.0.0.0/26":2},"deleted":false}`. Release by
//! handle visits only the blocks listed here.
//!
//! This crate writes a handle in the same transaction as the block whose
//! allocations it counts, and sets the block's count to what the block
//! actually holds for the handle, so a handle never drifts from its blocks.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct IpamHandle {
    /// Block CIDR (`10.0.0.0/26`) → number of this handle's addresses there.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub block: BTreeMap<String, u64>,
    #[serde(default)]
    pub deleted: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, u64>, D::Error> {
    Ok(Option::deserialize(d)?.unwrap_or_default())
}

impl IpamHandle {
    /// Sets the count for `block` (0 removes the entry).
    pub fn set_count(&mut self, block: &IpNet, n: u64) {
        if n == 0 {
            self.block.remove(&block.to_string());
        } else {
            self.block.insert(block.to_string(), n);
        }
    }

    pub fn count(&self, block: &IpNet) -> u64 {
        self.block.get(&block.to_string()).copied().unwrap_or(0)
    }

    /// Total addresses recorded.
    pub fn total(&self) -> u64 {
        self.block.values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.block.values().all(|n| *n == 0)
    }

    /// The blocks listed (entries that do not parse are skipped).
    pub fn blocks(&self) -> Vec<IpNet> {
        self.block
            .keys()
            .filter_map(|k| k.parse::<IpNet>().ok().map(|n| n.trunc()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_json() {
        let b: IpNet = "10.0.0.0/26".parse().unwrap();
        let mut h = IpamHandle::default();
        assert!(h.is_empty());
        h.set_count(&b, 2);
        assert_eq!(
            serde_json::to_string(&h).unwrap(),
            r#"{"block":{"10.0.0.0/26":2},"deleted":false}"#
        );
        assert_eq!(h.count(&b), 2);
        assert_eq!(h.total(), 2);
        assert_eq!(h.blocks(), vec![b]);
        h.set_count(&b, 0);
        assert!(h.is_empty() && h.block.is_empty());
        let old: IpamHandle = serde_json::from_str(r#"{"block":null}"#).unwrap();
        assert!(old.is_empty());
    }
}
