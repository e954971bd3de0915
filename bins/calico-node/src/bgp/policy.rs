//! Calico's route filters, as upstream's BIRD templates apply them:
//!
//! Export (`calico_export_to_bgp_peers`), in order: a peer's BGPFilter
//! export rules (first match decides); nothing inside a `disableBGPExport`
//! pool; this node's own routes (its blocks, borrowed and Neutron /32s,
//! floating IPs); never the more-specifics inside one of this node's own
//! blocks; anything else only if it is inside an enabled IP pool.
//!
//! Import: a peer's BGPFilter import rules (first match decides), else
//! everything.

use std::collections::BTreeMap;
use std::net::IpAddr;

use calico_api::network::{BGPFilterRule, BGPFilterSpec};
use calico_bgp::rib::{ExportPolicy, Path, PeerInfo, Source};
use calico_bgp::wire::PathAttributes;
use calico_calc::bgp::{BgpIntent, OriginKind, PoolRouting};
use ipnet::IpNet;

#[derive(Clone, Debug, PartialEq)]
pub struct CalicoPolicy {
    pools: Vec<PoolRouting>,
    own_blocks: Vec<IpNet>,
    /// Per peer address, its filters in order.
    filters: BTreeMap<IpAddr, Vec<BGPFilterSpec>>,
}

impl CalicoPolicy {
    /// Whether going from `self` to `new` can change what is imported.
    pub fn imports_differ(&self, new: &CalicoPolicy) -> bool {
        self.filters != new.filters
    }

    pub fn new(intent: &BgpIntent) -> CalicoPolicy {
        let own_blocks = intent
            .originate
            .iter()
            .filter(|o| o.why == OriginKind::AffineBlock)
            .map(|o| o.prefix)
            .collect();
        let filters = intent
            .peers
            .values()
            .map(|p| {
                let specs = p
                    .filters
                    .iter()
                    .filter_map(|n| intent.filters.get(n).cloned())
                    .collect();
                (p.address, specs)
            })
            .collect();
        CalicoPolicy {
            pools: intent.pools.clone(),
            own_blocks,
            filters,
        }
    }

    /// The first matching rule's verdict over the peer's filters.
    fn filter_verdict(
        &self,
        peer: &PeerInfo,
        prefix: &IpNet,
        learned: bool,
        export: bool,
    ) -> Option<bool> {
        let specs = self.filters.get(&peer.address)?;
        specs.iter().find_map(|spec| {
            let rules = match (export, prefix) {
                (true, IpNet::V4(_)) => &spec.export_v4,
                (true, IpNet::V6(_)) => &spec.export_v6,
                (false, IpNet::V4(_)) => &spec.import_v4,
                (false, IpNet::V6(_)) => &spec.import_v6,
            };
            rules
                .iter()
                .find(|r| rule_matches(r, prefix, learned))
                .map(|r| r.action == "Accept")
        })
    }
}

impl ExportPolicy for CalicoPolicy {
    fn allow(&self, peer: &PeerInfo, prefix: &IpNet, path: &Path) -> bool {
        let learned = path.source != Source::Local;
        if let Some(v) = self.filter_verdict(peer, prefix, learned, true) {
            return v;
        }
        let pool = crate::bgp::translate::pool_of(&self.pools, prefix);
        if pool.is_some_and(|p| p.disable_bgp_export) {
            return false;
        }
        if !learned {
            return true;
        }
        if self
            .own_blocks
            .iter()
            .any(|b| b.contains(prefix) && b != prefix)
        {
            return false;
        }
        pool.is_some_and(|p| !p.disabled)
    }

    fn import(&self, peer: &PeerInfo, prefix: &IpNet, _attrs: &PathAttributes) -> bool {
        self.filter_verdict(peer, prefix, true, false)
            .unwrap_or(true)
    }
}

/// Upstream's rule semantics: `cidr` with `matchOperator` (and
/// `prefixLength` bounds for In/NotIn), `source: RemotePeers` only for
/// learned routes. An interface condition cannot hold for BGP routes here.
fn rule_matches(r: &BGPFilterRule, prefix: &IpNet, learned: bool) -> bool {
    if r.source == "RemotePeers" && !learned {
        return false;
    }
    if !r.interface.is_empty() {
        return false;
    }
    if r.cidr.is_empty() {
        return true;
    }
    let Ok(cidr) = r.cidr.parse::<IpNet>() else {
        return false;
    };
    let len_ok = |p: &IpNet| {
        r.prefix_length.as_ref().is_none_or(|l| {
            let len = i32::from(p.prefix_len());
            l.min.is_none_or(|m| len >= m) && l.max.is_none_or(|m| len <= m)
        })
    };
    match r.match_operator.as_str() {
        "Equal" => *prefix == cidr,
        "NotEqual" => *prefix != cidr,
        "In" => cidr.contains(prefix) && len_ok(prefix),
        "NotIn" => !(cidr.contains(prefix) && len_ok(prefix)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(op: &str, cidr: &str, action: &str) -> BGPFilterRule {
        BGPFilterRule {
            cidr: cidr.into(),
            match_operator: op.into(),
            action: action.into(),
            ..Default::default()
        }
    }

    #[test]
    fn filter_rules_match_as_upstream_describes() {
        let p: IpNet = "10.65.1.0/26".parse().unwrap();
        assert!(rule_matches(
            &rule("In", "10.65.0.0/16", "Reject"),
            &p,
            true
        ));
        assert!(!rule_matches(
            &rule("NotIn", "10.65.0.0/16", "Reject"),
            &p,
            true
        ));
        assert!(rule_matches(
            &rule("Equal", "10.65.1.0/26", "Accept"),
            &p,
            false
        ));
        assert!(rule_matches(
            &rule("NotEqual", "10.65.2.0/26", "Accept"),
            &p,
            false
        ));
        let mut r = rule("In", "10.65.0.0/16", "Accept");
        r.prefix_length = Some(calico_api::network::BGPFilterPrefixLength {
            min: Some(27),
            max: None,
        });
        assert!(!rule_matches(&r, &p, true), "/26 is shorter than min 27");
        let mut r = rule("In", "10.0.0.0/8", "Accept");
        r.source = "RemotePeers".into();
        assert!(
            !rule_matches(&r, &p, false),
            "our own route is not from a peer"
        );
    }
}
