//! Dataplane conditions made visible outside the log: counted per type for
//! /metrics, and the ones an operator has to act on written to this host's
//! Node resource as an annotation, where `calicoctl get node <host> -o yaml`
//! shows them.
//!
//! An annotation rather than a status field: upstream's Node status has no
//! conditions, and annotations are free-form metadata every upstream reader
//! keeps, so the Node stays readable by upstream tools.

use calico_api::network::Node;
use calico_client::{Client, ClientError};
use calico_dataplane::{Condition, PendingReason};
use tracing::{info, warn};

/// The Node annotation holding the conditions, one per line.
pub const NODE_ANNOTATION: &str = "calico-rs/dataplane-conditions";

/// Every condition type, as the `type` label of the conditions gauge.
pub const CONDITION_TYPES: [&str; 4] = [
    "MissingKernelFeature",
    "RoutesPending",
    "InterfaceSettingsPending",
    "VxlanPending",
];

pub fn condition_type(c: &Condition) -> &'static str {
    match c {
        Condition::MissingKernelFeature { .. } => CONDITION_TYPES[0],
        Condition::RoutesPending { .. } => CONDITION_TYPES[1],
        Condition::InterfaceSettingsPending { .. } => CONDITION_TYPES[2],
        Condition::VxlanPending { .. } => CONDITION_TYPES[3],
    }
}

/// How many conditions of each type (every type present, 0 if none).
pub fn count_by_type(cs: &[Condition]) -> Vec<(&'static str, u64)> {
    CONDITION_TYPES
        .iter()
        .map(|t| {
            let n = cs.iter().filter(|c| condition_type(c) == *t).count();
            (*t, n as u64)
        })
        .collect()
}

/// The conditions worth a Node write: not the waits for an interface the
/// orchestrator has yet to create (normal for a moment with every new VM,
/// and shown per endpoint as status `down`).
pub fn for_node(cs: &[Condition]) -> Vec<String> {
    let waits_for_interface = |c: &Condition| match c {
        Condition::InterfaceSettingsPending { .. } => true,
        Condition::RoutesPending { reason, .. } => matches!(
            reason,
            PendingReason::InterfaceMissing(_) | PendingReason::InterfaceDown(_)
        ),
        _ => false,
    };
    let mut v: Vec<String> = cs
        .iter()
        .filter(|c| !waits_for_interface(c))
        .map(|c| c.to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Keeps the Node annotation equal to the latest conditions; writes only
/// when they change (and once at start, to clear what a previous run left).
pub struct NodeConditions {
    client: Client,
    node: String,
    published: Option<Vec<String>>,
}

impl NodeConditions {
    pub fn new(client: Client, node: &str) -> NodeConditions {
        NodeConditions {
            client,
            node: node.to_string(),
            published: None,
        }
    }

    pub fn publish(&mut self, conditions: &[String]) {
        if self.published.as_deref() == Some(conditions) {
            return;
        }
        match self.write(conditions) {
            Ok(()) => {
                info!(count = conditions.len(), "dataplane conditions on the Node");
                self.published = Some(conditions.to_vec());
            }
            Err(e) => warn!(error = %e, "cannot write the conditions to the Node; will retry"),
        }
    }

    /// Compare-and-swap on the Node, retried on conflict (IPAM and
    /// calicoctl write it too).
    fn write(&self, conditions: &[String]) -> Result<(), ClientError> {
        let mut last = None;
        for _ in 0..5 {
            let Some(mut node) = self.client.get_as::<Node>("", &self.node)? else {
                return Ok(()); // Deleted under us; the agent re-registers on restart.
            };
            let ann = &mut node.metadata.annotations;
            let before = ann.get(NODE_ANNOTATION).cloned();
            if conditions.is_empty() {
                ann.remove(NODE_ANNOTATION);
            } else {
                ann.insert(NODE_ANNOTATION.to_string(), conditions.join("\n"));
            }
            if ann.get(NODE_ANNOTATION) == before.as_ref() {
                return Ok(());
            }
            match self.client.replace(node.into()) {
                Ok(_) => return Ok(()),
                Err(e @ ClientError::Conflict { .. }) => last = Some(e),
                Err(ClientError::Store(e)) if e.is_conflict() => last = Some(ClientError::Store(e)),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("a conflict"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calico_dataplane::KernelFeature;
    use std::sync::Arc;

    fn ipip_missing() -> Condition {
        Condition::MissingKernelFeature {
            pool: "tunl-pool".into(),
            feature: KernelFeature::IpipTunnel,
            detail: "no ipip module".into(),
        }
    }

    fn tap_missing() -> Condition {
        Condition::RoutesPending {
            reason: PendingReason::InterfaceMissing("tap1".into()),
            dsts: vec!["198.19.0.1/32".parse().unwrap()],
        }
    }

    #[test]
    fn counts_every_type_and_keeps_interface_waits_off_the_node() {
        let cs = vec![
            ipip_missing(),
            tap_missing(),
            Condition::InterfaceSettingsPending {
                iface: "tap1".into(),
            },
        ];
        assert_eq!(
            count_by_type(&cs),
            vec![
                ("MissingKernelFeature", 1),
                ("RoutesPending", 1),
                ("InterfaceSettingsPending", 1),
                ("VxlanPending", 0)
            ]
        );
        assert_eq!(for_node(&cs), vec![ipip_missing().to_string()]);
    }

    #[test]
    fn the_node_annotation_follows_the_conditions() {
        let dir = tempfile::tempdir().unwrap();
        let store = calico_datastore::LocalStore::open(dir.path().join("db")).unwrap();
        let client = Client::new(Arc::new(store));
        let mut node = Node::new("h1", Default::default());
        node.metadata
            .labels
            .insert("rack".to_string(), "r1".to_string());
        // Left by a previous run whose kernel lacked VXLAN.
        node.metadata
            .annotations
            .insert(NODE_ANNOTATION.to_string(), "stale".to_string());
        client.create(node.into()).unwrap();
        let read = |c: &Client| c.get_as::<Node>("", "h1").unwrap().unwrap();

        let mut nc = NodeConditions::new(Client::new(client.store().clone()), "h1");
        let text = ipip_missing().to_string();
        nc.publish(std::slice::from_ref(&text));
        let n = read(&client);
        assert_eq!(n.metadata.annotations.get(NODE_ANNOTATION), Some(&text));
        assert_eq!(
            n.metadata.labels.get("rack").map(String::as_str),
            Some("r1")
        );

        // Unchanged conditions: no write.
        let rv = n.metadata.resource_version.clone();
        nc.publish(std::slice::from_ref(&text));
        assert_eq!(read(&client).metadata.resource_version, rv);

        nc.publish(&[]);
        assert_eq!(
            read(&client).metadata.annotations.get(NODE_ANNOTATION),
            None
        );

        // A fresh agent clears what an earlier one left, even with nothing to say.
        let mut n = read(&client);
        n.metadata
            .annotations
            .insert(NODE_ANNOTATION.to_string(), "stale".to_string());
        client.replace(n.into()).unwrap();
        NodeConditions::new(Client::new(client.store().clone()), "h1").publish(&[]);
        assert_eq!(
            read(&client).metadata.annotations.get(NODE_ANNOTATION),
            None
        );
    }
}
