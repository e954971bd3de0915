//! Global IPAM settings (lcg `lib/backend/model/ipam_config.go`), stored at
//! `/calico/ipam/v2/config` as Go writes them, every field `omitempty`:
//! `{"strict_affinity":true,"auto_allocate_blocks":true,"maxBlocksPerHost":4}`.
//!
//! No key means the defaults: no strict affinity, automatic block
//! allocation, no per-host block limit. A stored object without
//! `auto_allocate_blocks` means `false`, as it does upstream.

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpamConfig {
    /// Hosts may only use their own blocks (no borrowing).
    #[serde(rename = "strict_affinity", default, skip_serializing_if = "is_false")]
    pub strict_affinity: bool,
    /// Hosts claim new blocks as they need them.
    #[serde(
        rename = "auto_allocate_blocks",
        default,
        skip_serializing_if = "is_false"
    )]
    pub auto_allocate_blocks: bool,
    /// Most blocks one host may own; 0 = no limit.
    #[serde(rename = "maxBlocksPerHost", default, skip_serializing_if = "is_zero")]
    pub max_blocks_per_host: u32,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Default for IpamConfig {
    fn default() -> Self {
        IpamConfig {
            strict_affinity: false,
            auto_allocate_blocks: true,
            max_blocks_per_host: 0,
        }
    }
}

impl IpamConfig {
    /// Upstream's rules for a new configuration (`SetIPAMConfig`).
    pub fn validate(&self) -> Result<(), String> {
        if !self.strict_affinity && !self.auto_allocate_blocks {
            return Err(
                "Cannot disable 'StrictAffinity' and 'AutoAllocateBlocks' at the same time".into(),
            );
        }
        if self.max_blocks_per_host > 0 && !self.strict_affinity {
            return Err("MaxBlocksPerHost requires StrictAffinity to be enabled".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_as_go_writes_it() {
        assert_eq!(
            serde_json::to_string(&IpamConfig::default()).unwrap(),
            r#"{"auto_allocate_blocks":true}"#
        );
        let c = IpamConfig {
            strict_affinity: true,
            auto_allocate_blocks: true,
            max_blocks_per_host: 4,
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"strict_affinity":true,"auto_allocate_blocks":true,"maxBlocksPerHost":4}"#
        );
        let read: IpamConfig = serde_json::from_str(r#"{"strict_affinity":true}"#).unwrap();
        assert!(read.strict_affinity && !read.auto_allocate_blocks);
        assert!(c.validate().is_ok());
        assert!(IpamConfig {
            strict_affinity: false,
            auto_allocate_blocks: false,
            max_blocks_per_host: 0
        }
        .validate()
        .is_err());
        assert!(IpamConfig {
            max_blocks_per_host: 2,
            ..IpamConfig::default()
        }
        .validate()
        .is_err());
    }
}
