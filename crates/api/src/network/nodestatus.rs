//! CalicoNodeStatus: a request for one node's agent to report its BGP
//! daemon, BGP sessions and routes, and (in `status`) the report.
//!
//! The user writes `spec` (which node, which classes of information, how
//! often); the node's agent writes `status`. Field names and JSON shapes are
//! upstream's: every status struct is printed even when empty (Go prints a
//! struct field whatever its `omitempty`), `lastUpdated` is `null` until
//! the first report, and the four session counts are always present.
//!
//! Validation is upstream's: `node` required and a valid name,
//! `classes` required (an empty list is accepted, a missing one is not),
//! each class one of `Agent`, `BGP`, `Routes` (the enum of upstream's CRD
//! schema) and none twice, `updatePeriodSeconds` required and at most one
//! day (0 turns periodic updates off). The status is not validated, as
//! upstream does not validate it: only the agent writes it.

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::resource::{null_as_default, Spec};
use crate::validate::{check_name, is_name_pattern, FieldErrors, NAME_RULE};

/// Class: the BGP daemon (`status.agent`).
pub const CLASS_AGENT: &str = "Agent";
/// Class: BGP sessions (`status.bgp`).
pub const CLASS_BGP: &str = "BGP";
/// Class: routes (`status.routes`).
pub const CLASS_ROUTES: &str = "Routes";
/// Every class a CalicoNodeStatus may ask for.
pub const NODE_STATUS_CLASSES: [&str; 3] = [CLASS_AGENT, CLASS_BGP, CLASS_ROUTES];
/// Longest update period upstream accepts: one day.
pub const MAX_UPDATE_PERIOD_SECONDS: u32 = 86_400;

/// `status.agent.birdV4.state` values.
pub const DAEMON_READY: &str = "Ready";
pub const DAEMON_NOT_READY: &str = "NotReady";

/// `status.bgp.peersV*[].type` values.
pub const PEER_TYPE_NODE_MESH: &str = "NodeMesh";
pub const PEER_TYPE_NODE_PEER: &str = "NodePeer";
pub const PEER_TYPE_GLOBAL_PEER: &str = "GlobalPeer";

/// `status.routes.routesV*[].type` values: a route used for forwarding
/// (`FIB`) or only known (`RIB`).
pub const ROUTE_TYPE_FIB: &str = "FIB";
pub const ROUTE_TYPE_RIB: &str = "RIB";

/// `status.routes.routesV*[].learnedFrom.sourceType` values.
pub const SOURCE_KERNEL: &str = "Kernel";
pub const SOURCE_STATIC: &str = "Static";
pub const SOURCE_DIRECT: &str = "Direct";
pub const SOURCE_NODE_MESH: &str = "NodeMesh";
pub const SOURCE_BGP_PEER: &str = "BGPPeer";

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CalicoNodeStatusSpec {
    /// The node whose agent reports.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// What to report: `Agent`, `BGP`, `Routes`. `None` (missing or null)
    /// is distinct from an empty list, as upstream's `required` rule tells
    /// them apart; an empty list is not written back (Go's `omitempty`).
    #[serde(default, skip_serializing_if = "no_classes")]
    pub classes: Option<Vec<String>>,
    /// Seconds between reports; 0 reports once and never again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_period_seconds: Option<u32>,
}

fn no_classes(c: &Option<Vec<String>>) -> bool {
    c.as_ref().is_none_or(Vec::is_empty)
}

impl CalicoNodeStatusSpec {
    /// The classes asked for (none when unset).
    pub fn classes(&self) -> &[String] {
        self.classes.as_deref().unwrap_or_default()
    }

    /// Whether `class` (e.g. [`CLASS_BGP`]) is asked for.
    pub fn has_class(&self, class: &str) -> bool {
        self.classes().iter().any(|c| c == class)
    }
}

impl Spec for CalicoNodeStatusSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        if self.node.is_empty() {
            errs.add(
                "spec.node",
                "node is required: the name of the node to report on",
            );
        } else if !is_name_pattern(&self.node) {
            errs.add(
                "spec.node",
                format!("invalid node name {:?}: {NAME_RULE}", self.node),
            );
        }
        match &self.classes {
            None => errs.add(
                "spec.classes",
                format!(
                    "classes is required: list what to report, from {}",
                    NODE_STATUS_CLASSES.join(", ")
                ),
            ),
            Some(classes) => {
                for (i, c) in classes.iter().enumerate() {
                    let field = format!("spec.classes[{i}]");
                    if !NODE_STATUS_CLASSES.contains(&c.as_str()) {
                        errs.add(
                            field,
                            format!(
                                "unknown class {c:?}: expected one of {}",
                                NODE_STATUS_CLASSES.join(", ")
                            ),
                        );
                    } else if classes[..i].contains(c) {
                        errs.add(field, format!("class {c:?} is listed twice"));
                    }
                }
            }
        }
        match self.update_period_seconds {
            None => errs.add(
                "spec.updatePeriodSeconds",
                format!(
                    "updatePeriodSeconds is required: seconds between updates, 0 to {MAX_UPDATE_PERIOD_SECONDS} (0: report once, never refresh)"
                ),
            ),
            Some(p) if p > MAX_UPDATE_PERIOD_SECONDS => errs.add(
                "spec.updatePeriodSeconds",
                format!("{p} is more than {MAX_UPDATE_PERIOD_SECONDS} seconds (one day)"),
            ),
            Some(_) => {}
        }
    }
}

/// The report. Written by the node's agent, never validated.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CalicoNodeStatusStatus {
    /// When the agent last wrote the report (RFC 3339, UTC); `null` before.
    #[serde(default)]
    pub last_updated: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub agent: CalicoNodeAgentStatus,
    #[serde(default, deserialize_with = "null_as_default")]
    pub bgp: CalicoNodeBGPStatus,
    #[serde(default, deserialize_with = "null_as_default")]
    pub routes: CalicoNodeBGPRouteStatus,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CalicoNodeAgentStatus {
    /// The IPv4 BGP daemon (upstream's `bird`).
    #[serde(default, rename = "birdV4", deserialize_with = "null_as_default")]
    pub bird_v4: BGPDaemonStatus,
    /// The IPv6 BGP daemon (upstream's `bird6`).
    #[serde(default, rename = "birdV6", deserialize_with = "null_as_default")]
    pub bird_v6: BGPDaemonStatus,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BGPDaemonStatus {
    /// `Ready` or `NotReady`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, rename = "routerID", skip_serializing_if = "String::is_empty")]
    pub router_id: String,
    /// As BIRD's `show status` prints it: `2021-09-19 20:10:56`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_boot_time: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_reconfiguration_time: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CalicoNodeBGPStatus {
    #[serde(default)]
    pub number_established_v4: i64,
    #[serde(default)]
    pub number_not_established_v4: i64,
    #[serde(default)]
    pub number_established_v6: i64,
    #[serde(default)]
    pub number_not_established_v6: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers_v4: Vec<CalicoNodePeer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers_v6: Vec<CalicoNodePeer>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CalicoNodePeer {
    #[serde(default, rename = "peerIP", skip_serializing_if = "String::is_empty")]
    pub peer_ip: String,
    /// `NodeMesh`, `NodePeer` or `GlobalPeer`.
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub peer_type: String,
    /// The BGP FSM state: `Idle`, `Connect`, `Active`, `OpenSent`,
    /// `OpenConfirm`, `Established`, `Close`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
    /// BIRD's `since` column: a time of day, or a date after 20 hours.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub since: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CalicoNodeBGPRouteStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes_v4: Vec<CalicoNodeRoute>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes_v6: Vec<CalicoNodeRoute>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CalicoNodeRoute {
    /// `FIB` (used for forwarding) or `RIB`.
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub route_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub destination: String,
    /// The next hop, or `N/A` (a blackhole or a directly connected route).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub interface: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub learned_from: CalicoNodeRouteLearnedFrom,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CalicoNodeRouteLearnedFrom {
    /// `Kernel`, `Static`, `Direct`, `NodeMesh` or `BGPPeer`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_type: String,
    /// The peer that sent the route (`NodeMesh` and `BGPPeer` only).
    #[serde(default, rename = "peerIP", skip_serializing_if = "String::is_empty")]
    pub peer_ip: String,
}

/// A request for node status reports, and the latest report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CalicoNodeStatus {
    pub api_version: String,
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spec: CalicoNodeStatusSpec,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: CalicoNodeStatusStatus,
}

impl Default for CalicoNodeStatus {
    fn default() -> Self {
        CalicoNodeStatus {
            api_version: crate::meta::API_VERSION.to_string(),
            kind: "CalicoNodeStatus".to_string(),
            metadata: ObjectMeta::default(),
            spec: CalicoNodeStatusSpec::default(),
            status: CalicoNodeStatusStatus::default(),
        }
    }
}

impl CalicoNodeStatus {
    pub fn new(name: impl Into<String>, spec: CalicoNodeStatusSpec) -> Self {
        let mut r = CalicoNodeStatus::default();
        r.metadata.name = name.into();
        r.spec = spec;
        r
    }
}

impl crate::resource::Resource for CalicoNodeStatus {
    const KIND: &'static str = "CalicoNodeStatus";
    const PLURAL: &'static str = "caliconodestatuses";
    const NAMESPACED: bool = false;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
    fn apply_defaults(&mut self) {}
    fn validate(&self) -> Result<(), FieldErrors> {
        let mut errs = FieldErrors::default();
        crate::resource::check_meta(&self.metadata, false, &mut errs);
        check_name(&self.metadata.name, &mut errs);
        self.spec.validate(&self.metadata, &mut errs);
        errs.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Resource;

    fn spec(classes: &[&str], period: u32) -> CalicoNodeStatusSpec {
        CalicoNodeStatusSpec {
            node: "node1".into(),
            classes: Some(classes.iter().map(|c| c.to_string()).collect()),
            update_period_seconds: Some(period),
        }
    }

    #[test]
    fn an_empty_status_is_printed_as_go_prints_it() {
        let r = CalicoNodeStatus::new("s1", spec(&["Agent", "BGP"], 10));
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "apiVersion": "projectcalico.org/v3",
                "kind": "CalicoNodeStatus",
                "metadata": {"name": "s1"},
                "spec": {"node": "node1", "classes": ["Agent", "BGP"], "updatePeriodSeconds": 10},
                "status": {
                    "lastUpdated": null,
                    "agent": {"birdV4": {}, "birdV6": {}},
                    "bgp": {"numberEstablishedV4": 0, "numberNotEstablishedV4": 0,
                            "numberEstablishedV6": 0, "numberNotEstablishedV6": 0},
                    "routes": {}
                }
            })
        );
        let back: CalicoNodeStatus = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_full_status_round_trips() {
        let v = serde_json::json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": "CalicoNodeStatus",
            "metadata": {"name": "s1"},
            "spec": {"node": "node1", "classes": ["Agent", "BGP", "Routes"], "updatePeriodSeconds": 0},
            "status": {
                "lastUpdated": "2021-09-19T20:48:43Z",
                "agent": {
                    "birdV4": {"state": "Ready", "version": "v0.3.3+birdv1.6.8", "routerID": "172.17.0.3",
                               "lastBootTime": "2021-09-19 20:10:56", "lastReconfigurationTime": "2021-09-19 20:10:56"},
                    "birdV6": {"state": "NotReady"}
                },
                "bgp": {
                    "numberEstablishedV4": 1, "numberNotEstablishedV4": 1,
                    "numberEstablishedV6": 0, "numberNotEstablishedV6": 0,
                    "peersV4": [
                        {"peerIP": "172.17.0.5", "type": "NodeMesh", "state": "Established", "since": "09:19:28"},
                        {"peerIP": "172.17.0.9", "type": "GlobalPeer", "state": "Active", "since": "09:19:28"}
                    ]
                },
                "routes": {
                    "routesV4": [
                        {"type": "FIB", "destination": "192.168.110.128/26", "gateway": "172.17.0.5",
                         "interface": "eth0", "learnedFrom": {"sourceType": "NodeMesh", "peerIP": "172.17.0.5"}},
                        {"type": "FIB", "destination": "192.168.162.128/26", "gateway": "N/A",
                         "interface": "blackhole", "learnedFrom": {"sourceType": "Static"}}
                    ]
                }
            }
        });
        let r: CalicoNodeStatus = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(r.status.bgp.peers_v4[1].peer_type, PEER_TYPE_GLOBAL_PEER);
        assert_eq!(
            r.status.routes.routes_v4[1].learned_from.source_type,
            SOURCE_STATIC
        );
        assert_eq!(serde_json::to_value(&r).unwrap(), v);
        assert!(r.validate().is_ok());
    }

    #[test]
    fn nulls_read_as_empty() {
        let r: CalicoNodeStatus = serde_json::from_value(serde_json::json!({
            "apiVersion": "projectcalico.org/v3", "kind": "CalicoNodeStatus",
            "metadata": {"name": "s1"},
            "spec": {"node": "n", "classes": null, "updatePeriodSeconds": 5},
            "status": {"lastUpdated": null, "agent": null, "bgp": null, "routes": null}
        }))
        .unwrap();
        assert_eq!(r.spec.classes, None);
        assert_eq!(r.status, CalicoNodeStatusStatus::default());
    }

    #[test]
    fn validation_follows_upstream() {
        let fields = |s: CalicoNodeStatusSpec| -> Vec<String> {
            match CalicoNodeStatus::new("s1", s).validate() {
                Ok(()) => vec![],
                Err(e) => e.0.into_iter().map(|e| e.field).collect(),
            }
        };
        assert!(fields(spec(&["Agent", "BGP", "Routes"], 86_400)).is_empty());
        assert!(fields(spec(&["Routes"], 0)).is_empty());
        // An empty list passes upstream's `required` (only nil fails).
        assert!(fields(spec(&[], 10)).is_empty());
        assert_eq!(
            fields(spec(&["Agent"], 86_401)),
            ["spec.updatePeriodSeconds"]
        );
        assert_eq!(fields(spec(&["agent"], 1)), ["spec.classes[0]"]);
        assert_eq!(fields(spec(&["BGP", "BGP"], 1)), ["spec.classes[1]"]);
        let mut s = spec(&["BGP"], 1);
        s.classes = None;
        s.update_period_seconds = None;
        s.node = "Node_1".into();
        assert_eq!(
            fields(s),
            ["spec.node", "spec.classes", "spec.updatePeriodSeconds"]
        );
    }

    #[test]
    fn a_newer_status_is_read_leniently() {
        let v = serde_json::json!({
            "apiVersion": "projectcalico.org/v3", "kind": "CalicoNodeStatus",
            "metadata": {"name": "s1"},
            "spec": {"node": "n", "classes": ["BGP"], "updatePeriodSeconds": 5, "futureSpec": 1},
            "status": {
                "lastUpdated": "2021-09-19T20:48:43Z",
                "conditions": [{"type": "Ready"}],
                "bgp": {"numberEstablishedV4": 1, "numberNotEstablishedV4": 0,
                        "numberEstablishedV6": 0, "numberNotEstablishedV6": 0,
                        "peersV4": [{"peerIP": "10.0.0.2", "type": "NodeMesh", "state": "Established",
                                     "since": "01:02:03", "holdTime": 90}]}
            }
        });
        let got = crate::stored::typed_lenient::<CalicoNodeStatus>(v).unwrap();
        let mut ignored = got.ignored.clone();
        ignored.sort();
        assert_eq!(
            ignored,
            [
                "spec.futureSpec",
                "status.bgp.peersV4[0].holdTime",
                "status.conditions"
            ]
        );
        assert_eq!(got.resource.status.bgp.peers_v4[0].peer_ip, "10.0.0.2");
        assert_eq!(got.resource.status.bgp.number_established_v4, 1);
    }

    #[test]
    fn class_queries() {
        let s = spec(&["Agent", "Routes"], 1);
        assert!(s.has_class(CLASS_AGENT) && s.has_class(CLASS_ROUTES) && !s.has_class(CLASS_BGP));
        assert!(CalicoNodeStatusSpec::default().classes().is_empty());
    }
}
