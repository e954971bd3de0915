//! Reconciling the datastore with Neutron's database, as upstream's
//! resync does: for each kind, in upstream's order (subnets, then policies
//! before the endpoints that use them, then Felix's settings), what Neutron
//! has is written (only where it differs) and what it no longer has is
//! removed, every write and delete compare-and-swap. An object that cannot
//! be translated is reported and its stored data is left as it was (never
//! half-written); the rest goes on.

use std::collections::BTreeSet;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::driver::wep_desired_on;
use crate::endpoint::{is_endpoint_port, Endpoint};
use crate::neutron::Port;
use crate::sync::{
    render_endpoint, render_resource, same_value, Outcome, SyncError, SyncResult, Syncer,
};
use crate::PortExtras;
use calico_datastore::{Error as StoreError, Op};

/// Everything resync needs from Neutron, read in one go.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Snapshot {
    pub ports: Vec<PortWithExtras>,
    pub security_groups: Vec<Value>,
    pub subnets: Vec<Value>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct PortWithExtras {
    pub port: Value,
    pub extras: PortExtras,
    /// The port's subnets by id, found in the snapshot's `subnets`, instead
    /// of a copy of each in `extras.subnets` (3,000 copies of the same
    /// subnet are megabytes of JSON to write and read).
    pub subnet_ids: Vec<String>,
}

/// Counts and timings of one kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KindReport {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    pub unchanged: usize,
    pub errors: Vec<String>,
    pub seconds: f64,
}

impl KindReport {
    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Created => self.created += 1,
            Outcome::Updated => self.updated += 1,
            Outcome::Deleted => self.deleted += 1,
            Outcome::Unchanged => self.unchanged += 1,
            Outcome::Absent => {}
        }
    }
}

/// What a resync did, per kind, in upstream's order.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    pub subnets: KindReport,
    pub policies: KindReport,
    pub endpoints: KindReport,
    pub felix_config: KindReport,
    pub seconds: f64,
}

impl Report {
    pub fn errors(&self) -> usize {
        [
            &self.subnets,
            &self.policies,
            &self.endpoints,
            &self.felix_config,
        ]
        .iter()
        .map(|k| k.errors.len())
        .sum()
    }
}

/// One desired entry: its key, and how to write it.
enum Desired {
    Resource(Value),
    /// A WorkloadEndpoint, and whether it keeps its stored project labels
    /// (`PortExtras::project_unavailable`).
    Endpoint(Value, bool),
    Bytes(Vec<u8>),
}

/// Runs a whole resync. Fails only when the datastore fails; bad Neutron
/// objects are in the report.
pub fn resync(syncer: &Syncer, snapshot: &Snapshot) -> SyncResult<Report> {
    let start = Instant::now();
    let mut report = Report {
        subnets: reconcile_subnets(syncer, &snapshot.subnets)?,
        policies: reconcile_policies(syncer, &snapshot.security_groups)?,
        endpoints: reconcile_endpoints(syncer, &snapshot.ports, &snapshot.subnets)?,
        ..Report::default()
    };
    let t = Instant::now();
    for w in syncer.provide_felix_config()? {
        report.felix_config.count(w.outcome);
    }
    report.felix_config.seconds = t.elapsed().as_secs_f64();
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

fn reconcile_subnets(syncer: &Syncer, subnets: &[Value]) -> SyncResult<KindReport> {
    let region = &syncer.config().region;
    let mut desired = Vec::new();
    let mut failed = BTreeSet::new();
    let mut errors = Vec::new();
    for s in subnets {
        match crate::subnet::dhcp_subnet(s, region) {
            Ok(Some(d)) => desired.push((d.key.clone(), Desired::Bytes(d.to_bytes()))),
            Ok(None) => {}
            Err(e) => {
                failed.insert(crate::keys::subnet_key(region, id_of(s)));
                errors.push(e.to_string());
            }
        }
    }
    let mut prefixes = vec![format!("{}/", crate::keys::subnet_dir(region))];
    prefixes.extend(crate::keys::legacy_prefixes(region));
    reconcile(syncer, &prefixes, desired, &failed, errors)
}

fn reconcile_policies(syncer: &Syncer, groups: &[Value]) -> SyncResult<KindReport> {
    let cfg = syncer.config();
    let mut desired = Vec::new();
    let mut failed = BTreeSet::new();
    let mut errors = Vec::new();
    for sg in groups {
        match crate::policy::network_policy(sg, cfg) {
            Ok(p) => desired.push((p.key(), Desired::Resource(p.to_value()))),
            Err(e) => {
                failed.insert(syncer.security_group_key(id_of(sg)));
                errors.push(e.to_string());
            }
        }
    }
    let prefix = crate::keys::security_group_policy_prefix(&cfg.region.namespace());
    reconcile(syncer, &[prefix], desired, &failed, errors)
}

fn reconcile_endpoints(
    syncer: &Syncer,
    ports: &[PortWithExtras],
    subnets: &[Value],
) -> SyncResult<KindReport> {
    let cfg = syncer.config();
    let mut desired = Vec::new();
    let mut failed = BTreeSet::new();
    let mut errors = Vec::new();
    let by_id: std::collections::HashMap<&str, crate::neutron::Subnet> = subnets
        .iter()
        .filter_map(|s| {
            Some((
                s.get("id")?.as_str()?,
                crate::neutron::Subnet::from_value(s).ok()?,
            ))
        })
        .collect();
    for p in ports {
        let resolved;
        let extras = if p.subnet_ids.is_empty() {
            &p.extras
        } else {
            let mut e = p.extras.clone();
            e.subnets.extend(
                p.subnet_ids
                    .iter()
                    .filter_map(|id| by_id.get(id.as_str()).cloned()),
            );
            resolved = e;
            &resolved
        };
        let port = match Port::from_value(&p.port) {
            Ok(port) => port,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        if !is_endpoint_port(&port.device_owner) {
            continue;
        }
        for host in port.host().into_iter().chain(port.migrating_to()) {
            if !wep_desired_on(Some(&port), host) {
                continue;
            }
            let ep = Endpoint::translate(&port, host, extras, cfg);
            match ep.and_then(|ep| ep.validate().map(|()| ep)) {
                Ok(ep) => desired.push((
                    ep.key(),
                    Desired::Endpoint(ep.to_value(), extras.project_unavailable),
                )),
                Err(e) => {
                    let name = crate::names::endpoint_name(host, &port.device_id, &port.id);
                    failed.insert(crate::keys::workload_endpoint_key(
                        &cfg.region.namespace(),
                        &name,
                    ));
                    errors.push(e.to_string());
                }
            }
        }
    }
    let prefix = crate::keys::workload_endpoint_prefix(&cfg.region.namespace());
    reconcile(syncer, &[prefix], desired, &failed, errors)
}

/// Writes `desired`, then removes whatever is stored under `prefixes` that
/// is neither desired nor the key of an object that failed to translate
/// (that one keeps its last good value). One list per prefix; the writes
/// go in transactions of conditional operations (each create only if the
/// key is still absent, each update and delete only at the revision
/// listed), so a resync of thousands of objects is a few round trips. A
/// transaction that loses a race is redone key by key, each with its own
/// compare-and-swap.
fn reconcile(
    syncer: &Syncer,
    prefixes: &[String],
    desired: Vec<(String, Desired)>,
    failed: &BTreeSet<String>,
    errors: Vec<String>,
) -> SyncResult<KindReport> {
    let start = Instant::now();
    let mut report = KindReport {
        errors,
        ..KindReport::default()
    };
    let mut stored = std::collections::BTreeMap::new();
    for prefix in prefixes {
        for kv in syncer.store().list(prefix)?.kvs {
            stored.insert(kv.key.clone(), kv);
        }
    }
    let mut plan = Vec::new();
    let mut wanted = BTreeSet::new();
    for (key, value) in desired {
        let known = stored.get(&key);
        let bytes = match &value {
            Desired::Resource(v) => render_resource(v, known),
            Desired::Endpoint(v, keep) => render_endpoint(v, known, *keep),
            Desired::Bytes(b) => b.clone(),
        };
        wanted.insert(key.clone());
        let (op, outcome) = match known {
            Some(kv) if same_value(&kv.value, &bytes) => {
                report.count(Outcome::Unchanged);
                continue;
            }
            Some(kv) => (
                Op::Update {
                    key: key.clone(),
                    value: bytes,
                    mod_revision: kv.mod_revision,
                    lease: None,
                },
                Outcome::Updated,
            ),
            None => (
                Op::Create {
                    key: key.clone(),
                    value: bytes,
                    lease: None,
                },
                Outcome::Created,
            ),
        };
        plan.push(Planned {
            op,
            outcome,
            redo: Some(value),
        });
    }
    for (key, kv) in &stored {
        if !wanted.contains(key) && !failed.contains(key) {
            plan.push(Planned {
                op: Op::Delete {
                    key: key.clone(),
                    mod_revision: Some(kv.mod_revision),
                },
                outcome: Outcome::Deleted,
                redo: None,
            });
        }
    }
    apply(syncer, plan, &mut report)?;
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// One write of a resync, and how to redo it alone if its batch fails.
struct Planned {
    op: Op,
    outcome: Outcome,
    /// The value to write again (`None`: a delete).
    redo: Option<Desired>,
}

fn apply(syncer: &Syncer, plan: Vec<Planned>, report: &mut KindReport) -> SyncResult<()> {
    let store = syncer.store();
    let batch = store.max_txn_ops().max(1);
    for chunk in plan.chunks(batch) {
        let ops: Vec<Op> = chunk.iter().map(|p| p.op.clone()).collect();
        match store.txn(&ops) {
            Ok(_) => chunk.iter().for_each(|p| report.count(p.outcome)),
            Err(
                StoreError::Conflict { .. }
                | StoreError::AlreadyExists { .. }
                | StoreError::NotFound { .. },
            ) => {
                for p in chunk {
                    let key = p.op.key();
                    let outcome = match &p.redo {
                        Some(Desired::Resource(v)) => syncer.put_resource(key, v),
                        Some(Desired::Endpoint(v, keep)) => syncer.put_endpoint(key, v, *keep),
                        Some(Desired::Bytes(b)) => syncer.put_bytes(key, b),
                        None => syncer.remove(key),
                    };
                    match outcome {
                        Ok(o) => report.count(o),
                        Err(SyncError::Translate(e)) => report.errors.push(e.to_string()),
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn id_of(v: &Value) -> &str {
    v.get("id").and_then(Value::as_str).unwrap_or("?")
}
