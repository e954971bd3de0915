//! Turns the datastore into a stream of calculation inputs: list, then
//! watch from the list's revision; on a compacted watch or a lost
//! connection, re-list and emit only what changed (so the dataplane keeps
//! its last good state meanwhile). Bad values are logged with their key and
//! skipped, never fatal.

use std::collections::HashMap;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use calico_api::{lookup_kind, AnyResource, KINDS};
use calico_calc::input::{AffinityState, Input};
use calico_client::policy_names::{is_tiered_kind, name_from_storage};
use calico_datastore::{Datastore, KeyValue, WatchEvent};
use ipnet::IpNet;
use tracing::{info, warn};

use crate::metrics::Metrics;

const RESOURCE_PREFIX: &str = "/calico/resources/v3/projectcalico.org/";
const BLOCK_PREFIX: &str = "/calico/ipam/v2/assignment/";
const AFFINITY_PREFIX: &str = calico_ipam::keys::AFFINITY_PREFIX;

/// The prefixes the calculation reads.
const PREFIXES: [&str; 3] = [RESOURCE_PREFIX, BLOCK_PREFIX, AFFINITY_PREFIX];

/// What the syncer tells the agent.
#[derive(Debug)]
pub enum SyncMsg {
    Inputs(Vec<Input>),
    /// The datastore cannot be reached; the agent keeps its dataplane.
    Disconnected(String),
    /// A (re)sync completed; everything up to now has been delivered.
    InSync,
}

/// Decodes one key/value into a calculation input. `Ok(None)` for keys the
/// calculation does not use; `Err` for values that do not decode.
pub fn decode(kv: &KeyValue) -> Result<Option<Input>, String> {
    if let Some(rest) = kv.key.strip_prefix(RESOURCE_PREFIX) {
        let plural = rest.split('/').next().unwrap_or("");
        let Some(info) = KINDS.iter().find(|k| k.plural == plural) else {
            return Ok(None);
        };
        return calico_client::client::decode(info, &kv.key, &kv.value, kv.mod_revision)
            .map(|r| Some(Input::Resource(r)))
            .map_err(|e| e.to_string());
    }
    if kv.key.starts_with(BLOCK_PREFIX) {
        let cidr = block_cidr(&kv.key).ok_or_else(|| format!("{}: not a block key", kv.key))?;
        let v: serde_json::Value =
            serde_json::from_slice(&kv.value).map_err(|e| format!("{}: {e}", kv.key))?;
        let affinity = v
            .get("affinity")
            .and_then(|a| a.as_str())
            .and_then(|a| a.strip_prefix("host:"))
            .map(str::to_string);
        return Ok(Some(Input::Block { cidr, affinity }));
    }
    if kv.key.starts_with(AFFINITY_PREFIX) {
        let (host, cidr) = calico_ipam::keys::parse_affinity_key(&kv.key)
            .ok_or_else(|| format!("{}: not a block affinity key", kv.key))?;
        let v: serde_json::Value =
            serde_json::from_slice(&kv.value).map_err(|e| format!("{}: {e}", kv.key))?;
        // Upstream marks an affinity being removed in the Kubernetes
        // datastore with `deleted: true`; it no longer counts.
        if v.get("deleted").and_then(|d| d.as_bool()) == Some(true) {
            return Ok(Some(Input::BlockAffinityRemoved { host, cidr }));
        }
        let state = v.get("state").and_then(|s| s.as_str()).unwrap_or("");
        return Ok(Some(Input::BlockAffinity {
            host,
            cidr,
            state: AffinityState::parse(state),
        }));
    }
    Ok(None)
}

/// The removal input for a deleted key, when the resource it held was never
/// delivered (else `Syncer` uses the name it delivered). A policy's name is
/// worked out from its stored name as upstream does without the value.
pub fn removal(key: &str) -> Option<Input> {
    if let Some(rest) = key.strip_prefix(RESOURCE_PREFIX) {
        let parts: Vec<&str> = rest.split('/').collect();
        let info = KINDS.iter().find(|k| k.plural == parts[0])?;
        let (namespace, stored) = match (info.namespaced, parts.as_slice()) {
            (true, [_, ns, name]) => (ns.to_string(), *name),
            (false, [_, name]) => (String::new(), *name),
            _ => return None,
        };
        let name = if is_tiered_kind(info) {
            name_from_storage(stored).to_string()
        } else {
            stored.to_string()
        };
        let kind = lookup_kind(info.kind)?.kind;
        return Some(Input::ResourceRemoved {
            kind,
            namespace,
            name,
        });
    }
    if key.starts_with(BLOCK_PREFIX) {
        return block_cidr(key).map(|cidr| Input::BlockRemoved { cidr });
    }
    if key.starts_with(AFFINITY_PREFIX) {
        return calico_ipam::keys::parse_affinity_key(key)
            .map(|(host, cidr)| Input::BlockAffinityRemoved { host, cidr });
    }
    None
}

/// `/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26` → 10.0.0.0/26.
fn block_cidr(key: &str) -> Option<IpNet> {
    let last = key.rsplit('/').next()?;
    let (addr, len) = last.rsplit_once('-')?;
    format!("{addr}/{len}").parse().ok()
}

/// What the syncer has delivered: the revision per key (to diff after a
/// re-list) and, per resource key, the removal that undoes it. A resource's
/// name is not always its key's last segment (a policy stored under its
/// tiered name), so removals use the name that was delivered.
#[derive(Default)]
struct Known {
    revisions: HashMap<String, i64>,
    removals: HashMap<String, Input>,
}

impl Known {
    fn removal(&mut self, key: &str) -> Option<Input> {
        self.removals.remove(key).or_else(|| removal(key))
    }
}

fn removal_of(r: &AnyResource) -> Input {
    Input::ResourceRemoved {
        kind: r.kind(),
        namespace: r.metadata().namespace.clone(),
        name: r.name().to_string(),
    }
}

/// Runs forever on its own thread: delivers inputs to `tx`.
pub struct Syncer {
    pub store: Arc<dyn Datastore>,
    pub tx: Sender<crate::agent::Event>,
    pub metrics: Arc<Metrics>,
}

impl Syncer {
    pub fn run(self) {
        let mut known = Known::default();
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.sync_once(&mut known) {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => {
                    self.metrics.datastore_errors.inc();
                    warn!(error = %e, "datastore unavailable; keeping the current dataplane and retrying");
                    if self.tx.send(SyncMsg::Disconnected(e).into()).is_err() {
                        return;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// One list + watch cycle; returns when the watch ends (error/compaction).
    fn sync_once(&self, known: &mut Known) -> Result<(), String> {
        let mut inputs = Vec::new();
        let mut seen: HashMap<String, i64> = HashMap::new();
        // The two lists are read at different revisions; the watch starts
        // after the EARLIER one, or a change made between them under the
        // first prefix (e.g. another host's Node getting its VXLAN tunnel
        // address while this agent starts) would never be seen. Events the
        // second list already holds are skipped by revision below.
        let mut revision = i64::MAX;
        for prefix in PREFIXES {
            let res = self.store.list(prefix).map_err(|e| e.to_string())?;
            revision = revision.min(res.revision);
            for kv in res.kvs {
                seen.insert(kv.key.clone(), kv.mod_revision);
                if known.revisions.get(&kv.key) == Some(&kv.mod_revision) {
                    continue;
                }
                self.push_decoded(&kv, &mut inputs, &mut known.removals);
            }
        }
        let gone: Vec<String> = known
            .revisions
            .keys()
            .filter(|k| !seen.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            inputs.extend(known.removal(&key));
        }
        known.revisions = seen;
        info!(
            revision,
            changes = inputs.len(),
            "datastore snapshot loaded"
        );
        inputs.push(Input::InSync);
        if self.tx.send(SyncMsg::Inputs(inputs).into()).is_err()
            || self.tx.send(SyncMsg::InSync.into()).is_err()
        {
            return Ok(());
        }
        let watch = self
            .store
            .watch("/calico/", revision + 1)
            .map_err(|e| e.to_string())?;
        loop {
            let Some(ev) = watch.recv() else {
                return Err("watch closed".into());
            };
            let mut batch = Vec::new();
            let mut ev = Some(ev);
            // Drain what is already queued so a burst becomes one batch.
            while let Some(e) = ev {
                match e {
                    WatchEvent::Put { kv, .. } => {
                        let listed_newer = known
                            .revisions
                            .get(&kv.key)
                            .is_some_and(|&r| r >= kv.mod_revision);
                        if PREFIXES.iter().any(|p| kv.key.starts_with(p)) && !listed_newer {
                            known.revisions.insert(kv.key.clone(), kv.mod_revision);
                            self.push_decoded(&kv, &mut batch, &mut known.removals);
                        }
                    }
                    WatchEvent::Delete {
                        key, mod_revision, ..
                    } => {
                        // (A replayed delete of a key listed since re-created is stale.)
                        if known.revisions.get(&key).is_some_and(|&r| r < mod_revision) {
                            known.revisions.remove(&key);
                            batch.extend(known.removal(&key));
                        }
                    }
                    WatchEvent::Compacted { compact_revision } => {
                        info!(compact_revision, "watch history compacted; re-listing");
                        let _ = self.tx.send(SyncMsg::Inputs(batch).into());
                        return Ok(());
                    }
                    WatchEvent::Error(e) => {
                        let _ = self.tx.send(SyncMsg::Inputs(batch).into());
                        return Err(e.to_string());
                    }
                }
                ev = watch.try_recv();
            }
            if !batch.is_empty() && self.tx.send(SyncMsg::Inputs(batch).into()).is_err() {
                return Ok(());
            }
        }
    }

    fn push_decoded(
        &self,
        kv: &KeyValue,
        out: &mut Vec<Input>,
        removals: &mut HashMap<String, Input>,
    ) {
        match decode(kv) {
            Ok(Some(i)) => {
                if let Input::Resource(r) = &i {
                    removals.insert(kv.key.clone(), removal_of(r));
                }
                out.push(i)
            }
            Ok(None) => {}
            Err(e) => {
                self.metrics.bad_datastore_values.inc();
                warn!(key = %kv.key, error = %e, "skipping a value that does not decode");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            lease: 0,
        }
    }

    #[test]
    fn decodes_resources_blocks_and_removals() {
        let pool = r#"{"apiVersion":"projectcalico.org/v3","kind":"IPPool","metadata":{"name":"p"},"spec":{"cidr":"10.0.0.0/16"}}"#;
        match decode(&kv(
            "/calico/resources/v3/projectcalico.org/ippools/p",
            pool,
        ))
        .unwrap()
        {
            Some(Input::Resource(r)) => assert_eq!(r.name(), "p"),
            other => panic!("{other:?}"),
        }
        let block = r#"{"cidr":"10.0.0.0/26","affinity":"host:h1","allocations":[],"unallocated":[],"attributes":[],"deleted":false}"#;
        match decode(&kv(
            "/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26",
            block,
        ))
        .unwrap()
        {
            Some(Input::Block { cidr, affinity }) => {
                assert_eq!(cidr.to_string(), "10.0.0.0/26");
                assert_eq!(affinity.as_deref(), Some("h1"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decode(&kv(
                "/calico/ipam/v2/host/h1/ipv4/block/10.0.0.0-26",
                r#"{"state":"confirmed","deleted":false}"#
            ))
            .unwrap(),
            Some(Input::BlockAffinity {
                host: "h1".into(),
                cidr: "10.0.0.0/26".parse().unwrap(),
                state: AffinityState::Confirmed
            })
        );
        assert_eq!(
            decode(&kv(
                "/calico/ipam/v2/host/h1/ipv6/block/fd00::-122",
                r#"{"state":"pending","deleted":false}"#
            ))
            .unwrap(),
            Some(Input::BlockAffinity {
                host: "h1".into(),
                cidr: "fd00::/122".parse().unwrap(),
                state: AffinityState::Pending
            })
        );
        assert_eq!(
            removal("/calico/ipam/v2/host/h1/ipv4/block/10.0.0.0-26"),
            Some(Input::BlockAffinityRemoved {
                host: "h1".into(),
                cidr: "10.0.0.0/26".parse().unwrap()
            })
        );
        assert!(decode(&kv(
            "/calico/resources/v3/projectcalico.org/ippools/p",
            "{not json"
        ))
        .is_err());
        assert_eq!(
            removal("/calico/resources/v3/projectcalico.org/networkpolicies/prod/web"),
            Some(Input::ResourceRemoved {
                kind: "NetworkPolicy",
                namespace: "prod".into(),
                name: "web".into()
            })
        );
        assert!(
            decode(&kv("/calico/felix/v2/no-region/host/h/status", "{}"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn policies_at_tiered_keys_are_removed_by_the_name_delivered() {
        let removed = |name: &str| Input::ResourceRemoved {
            kind: "NetworkPolicy",
            namespace: "prod".into(),
            name: name.into(),
        };
        let key = "/calico/resources/v3/projectcalico.org/networkpolicies/prod/default.web";
        // Upstream v3.31's value: tiered name, the user's name in an annotation.
        let value = r#"{"kind":"NetworkPolicy","apiVersion":"projectcalico.org/v3","metadata":{"name":"default.web","namespace":"prod","annotations":{"projectcalico.org/metadata":"{\"name\":\"web\"}"}},"spec":{"tier":"default","selector":"all()"}}"#;
        let mut known = Known::default();
        match decode(&kv(key, value)).unwrap() {
            Some(Input::Resource(r)) => {
                assert_eq!(r.name(), "web");
                known.removals.insert(key.into(), removal_of(&r));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(known.removal(key), Some(removed("web")));
        // Never delivered: the stored name, less the default tier's prefix.
        assert_eq!(removal(key), Some(removed("web")));
        let explicit =
            "/calico/resources/v3/projectcalico.org/networkpolicies/prod/default.default.web";
        assert_eq!(removal(explicit), Some(removed("default.web")));
    }

    #[test]
    fn values_from_newer_versions_are_delivered() {
        let node = r#"{"kind":"Node","apiVersion":"projectcalico.org/v3","metadata":{"name":"h2"},"spec":{"bgp":{"ipv4Address":"10.0.0.2/24"},"interfaces":[{"name":"eth0"}]}}"#;
        match decode(&kv("/calico/resources/v3/projectcalico.org/nodes/h2", node)).unwrap() {
            Some(Input::Resource(r)) => assert_eq!(r.name(), "h2"),
            other => panic!("{other:?}"),
        }
    }
}
