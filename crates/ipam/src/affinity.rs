//! Block affinities (lcg `lib/backend/model/block_affinity.go`): the key
//! `/calico/ipam/v2/host/<host>/ipv4/block/<cidr>` says that a host claims a
//! block; its value records how far the claim got:
//! `{"state":"confirmed|pending|pendingDeletion","deleted":false}`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const STATE_CONFIRMED: &str = "confirmed";
pub const STATE_PENDING: &str = "pending";
pub const STATE_PENDING_DELETION: &str = "pendingDeletion";

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct BlockAffinity {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub deleted: bool,
    /// Fields of other upstream versions, kept as read.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl BlockAffinity {
    pub fn with_state(state: &str) -> BlockAffinity {
        BlockAffinity {
            state: state.to_string(),
            ..Default::default()
        }
    }

    /// Confirmed; an empty state (data from old releases) counts as
    /// confirmed, as upstream treats it.
    pub fn is_confirmed(&self) -> bool {
        self.state == STATE_CONFIRMED || self.state.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let a = BlockAffinity::with_state(STATE_PENDING);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"state":"pending","deleted":false}"#
        );
        let old: BlockAffinity = serde_json::from_str("{}").unwrap();
        assert!(old.is_confirmed());
        let c: BlockAffinity =
            serde_json::from_str(r#"{"state":"confirmed","deleted":false}"#).unwrap();
        assert!(c.is_confirmed());
        assert!(!BlockAffinity::with_state(STATE_PENDING_DELETION).is_confirmed());
    }
}
