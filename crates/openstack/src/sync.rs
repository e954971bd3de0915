//! The driver's writes to the datastore: every resource written with
//! compare-and-swap over what is stored (so two neutron-servers, or a
//! resync racing a port update, never overwrite each other blindly), and
//! only when the value changes. Works over any `Datastore`: etcd or the
//! embedded store.

use std::sync::Arc;

use calico_datastore::{Datastore, Error as StoreError, KeyValue};
use serde_json::Value;

use crate::driver::{hosts_to_sync, wep_desired_on};
use crate::neutron::Port;
use crate::store::{put_value, TIMESTAMP_FORMAT};
use crate::{Config, PortExtras};

/// How many times a write re-reads and retries after losing a race.
const CAS_ATTEMPTS: usize = 8;

/// What a write did to one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    Deleted,
    /// A delete found nothing to delete.
    Absent,
}

/// A write that failed: a translation error (bad Neutron data, nothing of
/// the object written) or the datastore refusing or failing.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Translate(#[from] crate::Error),
    #[error("datastore: {0}")]
    Store(#[from] StoreError),
}

pub type SyncResult<T> = std::result::Result<T, SyncError>;

/// One key written, for the driver's log and the resync counts.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Written {
    pub key: String,
    pub outcome: Outcome,
}

/// Writes what the driver derives from Neutron's objects.
pub struct Syncer {
    store: Arc<dyn Datastore>,
    cfg: Config,
}

impl Syncer {
    pub fn new(store: Arc<dyn Datastore>, cfg: Config) -> Syncer {
        Syncer { store, cfg }
    }

    pub fn store(&self) -> &Arc<dyn Datastore> {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Writes a v3 resource at `key`, keeping the stored uid and creation
    /// time, replacing labels, annotations and spec (as upstream's put).
    pub fn put_resource(&self, key: &str, new: &Value) -> SyncResult<Outcome> {
        self.cas_write(key, |existing| render_resource(new, existing))
    }

    /// Writes a WorkloadEndpoint; with `keep_project_labels` (Keystone could
    /// not name its project) it keeps the project labels it is stored with.
    pub fn put_endpoint(
        &self,
        key: &str,
        new: &Value,
        keep_project_labels: bool,
    ) -> SyncResult<Outcome> {
        self.cas_write(key, |existing| {
            render_endpoint(new, existing, keep_project_labels)
        })
    }

    /// Writes `bytes` at `key` as they are (the DHCP agents' subnet data).
    pub fn put_bytes(&self, key: &str, bytes: &[u8]) -> SyncResult<Outcome> {
        self.cas_write(key, |_| bytes.to_vec())
    }

    /// Read, derive, write conditionally on what was read; again on a race.
    /// A value that equals the stored one (as JSON, else as bytes) is left
    /// alone, so a resync of unchanged data writes nothing.
    fn cas_write(
        &self,
        key: &str,
        derive: impl Fn(Option<&KeyValue>) -> Vec<u8>,
    ) -> SyncResult<Outcome> {
        let mut last_err = None;
        for _ in 0..CAS_ATTEMPTS {
            let existing = self.store.get(key)?;
            let bytes = derive(existing.as_ref());
            let result = match &existing {
                Some(kv) if same_value(&kv.value, &bytes) => return Ok(Outcome::Unchanged),
                Some(kv) => self
                    .store
                    .update(key, &bytes, kv.mod_revision, None)
                    .map(|_| Outcome::Updated),
                None => self
                    .store
                    .create(key, &bytes, None)
                    .map(|_| Outcome::Created),
            };
            match result {
                Ok(o) => return Ok(o),
                Err(e @ (StoreError::Conflict { .. } | StoreError::AlreadyExists { .. })) => {
                    last_err = Some(e)
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last_err.expect("the loop ran").into())
    }

    /// Deletes `key` if present, conditionally on the revision read.
    pub fn remove(&self, key: &str) -> SyncResult<Outcome> {
        let mut last_err = None;
        for _ in 0..CAS_ATTEMPTS {
            let Some(kv) = self.store.get(key)? else {
                return Ok(Outcome::Absent);
            };
            match self.store.delete(key, Some(kv.mod_revision)) {
                Ok(_) => return Ok(Outcome::Deleted),
                Err(StoreError::NotFound { .. }) => return Ok(Outcome::Absent),
                Err(e @ StoreError::Conflict { .. }) => last_err = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last_err.expect("the loop ran").into())
    }

    /// Brings a port's WorkloadEndpoints in line with the port as Neutron
    /// now has it (`current`, re-read from its database) after a change
    /// from `original`: written on the hosts where it should exist,
    /// removed from the others it may have been on (migration, unbinding).
    /// Ports that are not VM ports are not endpoints. A security group of
    /// the port that has no policy yet gets one first, so that a new
    /// endpoint never exists without the policy its labels select (a
    /// group's later changes come through its own callbacks, with its
    /// rules re-read).
    pub fn sync_port(
        &self,
        original: Option<&Value>,
        current: &Value,
        extras: &PortExtras,
    ) -> SyncResult<Vec<Written>> {
        let current_port = Port::from_value(current)?;
        let original_port = original.map(Port::from_value).transpose()?;
        let mut written = Vec::new();
        let is_endpoint = crate::endpoint::is_endpoint_port(&current_port.device_owner);
        if is_endpoint {
            for sg in &extras.security_groups {
                if self.store.get(&self.security_group_key(&sg.id))?.is_none() {
                    written
                        .extend(self.sync_security_group_parts(&sg.id, &sg.security_group_rules)?);
                }
            }
        }
        for host in hosts_to_sync(original_port.as_ref(), &current_port) {
            if is_endpoint && wep_desired_on(Some(&current_port), &host) {
                let ep =
                    crate::endpoint::Endpoint::translate(&current_port, &host, extras, &self.cfg)?;
                ep.validate()?;
                let key = ep.key();
                let outcome =
                    self.put_endpoint(&key, &ep.to_value(), extras.project_unavailable)?;
                written.push(Written { key, outcome });
            } else {
                let devices = [Some(&current_port), original_port.as_ref()];
                written.extend(self.remove_endpoint_on(&host, devices.into_iter().flatten())?);
            }
        }
        Ok(written)
    }

    /// Removes every WorkloadEndpoint a deleted port had.
    pub fn delete_port(&self, port: &Value) -> SyncResult<Vec<Written>> {
        let port = Port::from_value(port)?;
        let mut hosts: Vec<&str> = port.host().into_iter().collect();
        hosts.extend(port.migrating_to());
        let mut written = Vec::new();
        for host in hosts {
            written.extend(self.remove_endpoint_on(host, [&port])?);
        }
        Ok(written)
    }

    fn remove_endpoint_on<'a>(
        &self,
        host: &str,
        ports: impl IntoIterator<Item = &'a Port>,
    ) -> SyncResult<Vec<Written>> {
        let ns = self.cfg.region.namespace();
        let mut keys: Vec<String> = ports
            .into_iter()
            .map(|p| {
                let name = crate::names::endpoint_name(host, &p.device_id, &p.id);
                crate::keys::workload_endpoint_key(&ns, &name)
            })
            .collect();
        keys.dedup();
        let mut written = Vec::new();
        for key in keys {
            let outcome = self.remove(&key)?;
            if outcome == Outcome::Deleted {
                written.push(Written { key, outcome });
            }
        }
        Ok(written)
    }

    /// Writes a security group's policy (Neutron's group dict with its
    /// `security_group_rules`).
    pub fn sync_security_group(&self, sg: &Value) -> SyncResult<Vec<Written>> {
        let sg = crate::neutron::SecurityGroup::from_value(sg)?;
        self.sync_security_group_parts(&sg.id, &sg.security_group_rules)
    }

    fn sync_security_group_parts(&self, id: &str, rules: &[Value]) -> SyncResult<Vec<Written>> {
        let policy = crate::policy::security_group_policy(id, rules, &self.cfg)?;
        let key = policy.key();
        let outcome = self.put_resource(&key, &policy.to_value())?;
        Ok(vec![Written { key, outcome }])
    }

    /// Removes a deleted security group's policy.
    pub fn delete_security_group(&self, sg_id: &str) -> SyncResult<Written> {
        let key = self.security_group_key(sg_id);
        let outcome = self.remove(&key)?;
        Ok(Written { key, outcome })
    }

    pub fn security_group_key(&self, sg_id: &str) -> String {
        crate::keys::network_policy_key(
            &self.cfg.region.namespace(),
            &crate::policy::policy_name(sg_id),
        )
    }

    /// Writes a subnet's DHCP data, or removes it when DHCP is off.
    pub fn sync_subnet(&self, subnet: &Value) -> SyncResult<Written> {
        let id = subnet.get("id").and_then(Value::as_str).unwrap_or("?");
        match crate::subnet::dhcp_subnet(subnet, &self.cfg.region)? {
            Some(data) => {
                let outcome = self.put_bytes(&data.key, &data.to_bytes())?;
                Ok(Written {
                    key: data.key,
                    outcome,
                })
            }
            None => self.delete_subnet(id),
        }
    }

    pub fn delete_subnet(&self, subnet_id: &str) -> SyncResult<Written> {
        let key = crate::keys::subnet_key(&self.cfg.region, subnet_id);
        let outcome = self.remove(&key)?;
        Ok(Written { key, outcome })
    }

    /// FelixConfiguration and ClusterInformation `default` as the driver
    /// provides them: endpoint reporting on, `tap` among the interface
    /// prefixes, a cluster GUID, `openstack` in the cluster type, the
    /// datastore ready. Existing settings are kept.
    pub fn provide_felix_config(&self) -> SyncResult<Vec<Written>> {
        let mut written = Vec::new();
        let felix = crate::keys::felix_configuration_key();
        written.push(
            self.provide_default(&felix, "FelixConfiguration", |existing| {
                crate::felix::felix_configuration_spec(existing)
            })?,
        );
        let cluster = crate::keys::cluster_information_key();
        let guid = uuid::Uuid::new_v4().simple().to_string();
        written.push(
            self.provide_default(&cluster, "ClusterInformation", |existing| {
                crate::felix::cluster_information_spec(existing, &guid)
            })?,
        );
        Ok(written)
    }

    fn provide_default(
        &self,
        key: &str,
        kind: &str,
        spec_for: impl Fn(Option<&Value>) -> Option<Value>,
    ) -> SyncResult<Written> {
        let outcome = self.cas_write(key, |existing| {
            let stored: Option<Value> =
                existing.and_then(|kv| serde_json::from_slice(&kv.value).ok());
            match spec_for(stored.as_ref()) {
                None => existing.map(|kv| kv.value.clone()).unwrap_or_default(),
                Some(spec) => {
                    let mut value =
                        stored.unwrap_or_else(|| crate::felix::default_resource(kind, Value::Null));
                    if !value.get("metadata").is_some_and(Value::is_object) {
                        value = crate::felix::default_resource(kind, Value::Null);
                    }
                    value["spec"] = spec;
                    let meta = value["metadata"].as_object_mut().expect("checked above");
                    meta.entry("uid")
                        .or_insert_with(|| uuid::Uuid::new_v4().to_string().into());
                    meta.entry("creationTimestamp").or_insert_with(|| {
                        chrono::Utc::now()
                            .format(TIMESTAMP_FORMAT)
                            .to_string()
                            .into()
                    });
                    serde_json::to_vec(&value).expect("JSON values always serialise")
                }
            }
        })?;
        Ok(Written {
            key: key.to_string(),
            outcome,
        })
    }
}

/// The bytes to store for resource `new` over what is stored (see
/// `store::put_value`).
pub(crate) fn render_resource(new: &Value, existing: Option<&KeyValue>) -> Vec<u8> {
    let uid = uuid::Uuid::new_v4().to_string();
    let now = chrono::Utc::now().format(TIMESTAMP_FORMAT).to_string();
    let value = put_value(new, existing.map(|kv| kv.value.as_slice()), &uid, &now);
    serde_json::to_vec(&value).expect("JSON values always serialise")
}

/// `render_resource` for an endpoint, keeping the stored project labels
/// when `keep_project_labels`.
pub(crate) fn render_endpoint(
    new: &Value,
    existing: Option<&KeyValue>,
    keep_project_labels: bool,
) -> Vec<u8> {
    if !keep_project_labels {
        return render_resource(new, existing);
    }
    let stored = existing
        .and_then(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
        .unwrap_or(Value::Null);
    let mut new = new.clone();
    crate::endpoint::keep_project_labels(&mut new, &stored);
    render_resource(&new, existing)
}

/// Equal as JSON when both parse (key order and spacing aside), else as
/// bytes.
pub(crate) fn same_value(stored: &[u8], new: &[u8]) -> bool {
    if stored == new {
        return true;
    }
    match (
        serde_json::from_slice::<Value>(stored),
        serde_json::from_slice::<Value>(new),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
