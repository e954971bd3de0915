//! BGPFilter: ordered accept/reject rules on the routes a BGP peering
//! imports and exports (upstream v3.31's shape: CIDR with a match operator
//! and optional prefix-length range, the route's source, and the interface
//! it was learned on). BGPPeers name filters in `spec.filters`.

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::resource::{resource, Spec};
use crate::validate::{check_name, parse_masked_net, FieldErrors};

/// The accepted `action` values.
pub const FILTER_ACTIONS: [&str; 2] = ["Accept", "Reject"];
/// The accepted `matchOperator` values.
pub const MATCH_OPERATORS: [&str; 4] = ["Equal", "NotEqual", "In", "NotIn"];
/// The one accepted `source` value: routes learned from BGP peers.
pub const SOURCE_REMOTE_PEERS: &str = "RemotePeers";

/// A range of prefix lengths a route must have (with `cidr` and `In`/`NotIn`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPFilterPrefixLength {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i32>,
}

/// One rule. Upstream has a V4 and a V6 struct with the same fields; here one
/// struct serves both lists, and validation checks the family of the list.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPFilterRule {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_length: Option<BGPFilterPrefixLength>,
    /// `RemotePeers`: only routes learned from BGP peers.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// An interface name pattern (`*` wildcards) the route's interface matches.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface: String,
    /// `Equal`, `NotEqual`, `In` or `NotIn`, relating the route to `cidr`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub match_operator: String,
    /// `Accept` or `Reject`. Always written, as upstream's field has no `omitempty`.
    #[serde(default)]
    pub action: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPFilterSpec {
    #[serde(default, rename = "exportV4", skip_serializing_if = "Vec::is_empty")]
    pub export_v4: Vec<BGPFilterRule>,
    #[serde(default, rename = "importV4", skip_serializing_if = "Vec::is_empty")]
    pub import_v4: Vec<BGPFilterRule>,
    #[serde(default, rename = "exportV6", skip_serializing_if = "Vec::is_empty")]
    pub export_v6: Vec<BGPFilterRule>,
    #[serde(default, rename = "importV6", skip_serializing_if = "Vec::is_empty")]
    pub import_v6: Vec<BGPFilterRule>,
}

/// Upstream's `bgpFilterInterface`: `*`, or 1-15 of letters, digits, `_`,
/// `.`, `*` and `-`.
pub fn is_filter_interface(s: &str) -> bool {
    s == "*"
        || ((1..=15).contains(&s.len())
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'*' | b'-')))
}

impl BGPFilterRule {
    /// Checks one rule of a `version` (4 or 6) list; `f` is its field path.
    pub fn check(&self, f: &str, version: u8, errs: &mut FieldErrors) {
        let max_len: i32 = if version == 4 { 32 } else { 128 };
        if !self.cidr.is_empty() {
            match parse_masked_net(&self.cidr) {
                Err(m) => errs.add(format!("{f}.cidr"), m),
                Ok(n) if n.addr().is_ipv4() != (version == 4) => errs.add(
                    format!("{f}.cidr"),
                    format!("{:?} is not an IPv{version} network", self.cidr),
                ),
                Ok(_) => {}
            }
        }
        if let Some(p) = &self.prefix_length {
            for (name, v) in [("min", p.min), ("max", p.max)] {
                if let Some(v) = v {
                    if !(0..=max_len).contains(&v) {
                        errs.add(
                            format!("{f}.prefixLength.{name}"),
                            format!("invalid prefix length {v}: expected 0-{max_len}"),
                        );
                    }
                }
            }
        }
        if !self.source.is_empty() && self.source != SOURCE_REMOTE_PEERS {
            errs.add(
                format!("{f}.source"),
                format!(
                    "invalid value {:?}: expected {SOURCE_REMOTE_PEERS}",
                    self.source
                ),
            );
        }
        if !self.interface.is_empty() && !is_filter_interface(&self.interface) {
            errs.add(
                format!("{f}.interface"),
                format!(
                    "invalid interface {:?}: 1-15 letters, digits, '_', '.', '-' or '*' wildcards",
                    self.interface
                ),
            );
        }
        if !self.match_operator.is_empty()
            && !MATCH_OPERATORS.contains(&self.match_operator.as_str())
        {
            errs.add(
                format!("{f}.matchOperator"),
                format!(
                    "invalid value {:?}: expected one of {}",
                    self.match_operator,
                    MATCH_OPERATORS.join(", ")
                ),
            );
        }
        if self.action.is_empty() {
            errs.add(
                format!("{f}.action"),
                "action is required (Accept or Reject)",
            );
        } else if !FILTER_ACTIONS.contains(&self.action.as_str()) {
            errs.add(
                format!("{f}.action"),
                format!(
                    "invalid value {:?}: expected one of {}",
                    self.action,
                    FILTER_ACTIONS.join(", ")
                ),
            );
        }
        match (self.cidr.is_empty(), self.match_operator.is_empty()) {
            (false, true) => errs.add(
                format!("{f}.matchOperator"),
                "matchOperator cannot be empty when cidr is set",
            ),
            (true, false) => errs.add(
                format!("{f}.cidr"),
                "cidr cannot be empty when matchOperator is set",
            ),
            _ => {}
        }
        if self.cidr.is_empty() && self.prefix_length.is_some() {
            errs.add(
                format!("{f}.cidr"),
                "cidr cannot be empty when prefixLength is set",
            );
        }
    }
}

impl Spec for BGPFilterSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        for (name, rules, version) in [
            ("exportV4", &self.export_v4, 4),
            ("importV4", &self.import_v4, 4),
            ("exportV6", &self.export_v6, 6),
            ("importV6", &self.import_v6, 6),
        ] {
            for (i, r) in rules.iter().enumerate() {
                r.check(&format!("spec.{name}[{i}]"), version, errs);
            }
        }
    }
}

resource!(
    /// Import/export route filters for BGP peerings (named by BGPPeer `filters`).
    BGPFilter, BGPFilterSpec, kind = "BGPFilter", plural = "bgpfilters", namespaced = false,
    name_rule = check_name
);
