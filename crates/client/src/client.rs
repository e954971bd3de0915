//! `Client`: v3 resources on top of the datastore trait, encoded as upstream
//! does (full JSON object, `resourceVersion` = the key's mod revision, `uid`
//! and `creationTimestamp` set on create), with cross-resource validation
//! (pool overlap, immutable pool fields, tiers) and batched writes.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use calico_api::network::{find_overlapping_pool, IPPool};
use calico_api::policy::{Tier, DEFAULT_TIER};
use calico_api::validate::FieldErrors;
use calico_api::{
    lookup_kind, AnyResource, KindInfo, Resource, LABEL_NAMESPACE, LABEL_ORCHESTRATOR,
};
use calico_datastore::{Datastore, Op, Revision};

use crate::config::ClientConfig;
use crate::keys::{candidate_keys, kind_prefix, resource_key};
use crate::policy_names;

/// Namespace used for namespaced kinds when none is given (as upstream).
pub const DEFAULT_NAMESPACE: &str = "default";

#[derive(Debug)]
pub enum ClientError {
    /// The datastore failed (unreachable, CAS conflict, ...).
    Store(calico_datastore::Error),
    /// The resource breaks a rule; every field error is listed.
    Invalid {
        id: String,
        errors: FieldErrors,
    },
    AlreadyExists {
        id: String,
    },
    NotFound {
        id: String,
    },
    /// resourceVersion given does not match the stored one.
    Conflict {
        id: String,
        expected: String,
        actual: String,
    },
    /// A stored value that does not decode (written behind our back).
    Corrupt {
        key: String,
        message: String,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Store(e) => write!(f, "{e}"),
            ClientError::Invalid { id, errors } => write!(f, "{id} is invalid: {errors}"),
            ClientError::AlreadyExists { id } => write!(f, "resource already exists: {id}"),
            ClientError::NotFound { id } => write!(f, "resource does not exist: {id}"),
            ClientError::Conflict { id, expected, actual } => write!(
                f,
                "update conflict on {id}: resourceVersion {expected} is stale (current is {actual}); get the resource again and retry"
            ),
            ClientError::Corrupt { key, message } => {
                write!(f, "stored value at {key} is not a valid resource: {message}")
            }
        }
    }
}

impl std::error::Error for ClientError {}

impl From<calico_datastore::Error> for ClientError {
    fn from(e: calico_datastore::Error) -> Self {
        ClientError::Store(e)
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// A list read: the good resources, the revision of the read, and entries
/// that could not be decoded (reported, never fatal).
#[derive(Debug, Default)]
pub struct Listed {
    pub items: Vec<AnyResource>,
    pub revision: Revision,
    pub bad: Vec<(String, String)>,
}

/// A resource as stored, with the key it lives at.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub key: String,
    pub resource: AnyResource,
}

/// What a batched write should do with one resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// Fails if the resource exists.
    Create,
    /// Fails if it does not; CAS on resourceVersion when the resource carries one.
    Replace,
    /// Create or replace.
    Apply,
}

/// Outcome of one resource of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub resource: AnyResource,
    pub created: bool,
}

pub struct Client {
    store: Arc<dyn Datastore>,
}

fn id_of(info: &KindInfo, ns: &str, name: &str) -> String {
    if info.namespaced {
        format!("{}({}/{})", info.kind, ns, name)
    } else {
        format!("{}({})", info.kind, name)
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Encodes a resource as upstream stores it: resourceVersion cleared, a
/// policy's name in its stored form and its tier only if it was given
/// (`tier_given`, from before defaults were applied).
pub fn encode(r: &AnyResource, tier_given: bool) -> Vec<u8> {
    let mut r = r.clone();
    r.metadata_mut().resource_version.clear();
    policy_names::to_storage(&mut r, tier_given);
    serde_json::to_vec(&r).expect("resources always serialise")
}

/// Decodes a stored value of a known kind, setting resourceVersion. Reads
/// are lenient as upstream's are: fields this version does not know (written
/// by a newer one) are ignored; only values that cannot be a resource of the
/// kind at all are errors.
pub fn decode(
    info: &KindInfo,
    key: &str,
    value: &[u8],
    mod_revision: Revision,
) -> Result<AnyResource> {
    let corrupt = |message: String| ClientError::Corrupt {
        key: key.to_string(),
        message,
    };
    let v: serde_json::Value = serde_json::from_slice(value).map_err(|e| corrupt(e.to_string()))?;
    let mut r = AnyResource::from_stored_value(info.kind, v)
        .map_err(|e| {
            if e.field.is_empty() {
                corrupt(e.message)
            } else {
                corrupt(format!("field {}: {}", e.field, e.message))
            }
        })?
        .resource;
    policy_names::from_storage(&mut r).map_err(corrupt)?;
    r.metadata_mut().resource_version = mod_revision.to_string();
    Ok(r)
}

/// A resource as currently stored, and where: a policy may still be at the
/// key of an older layout, which the next write moves to the current one.
struct Existing {
    resource: AnyResource,
    revision: Revision,
    key: String,
}

impl Client {
    pub fn new(store: Arc<dyn Datastore>) -> Client {
        Client { store }
    }

    /// Connects to the configured datastore.
    pub fn connect(cfg: &ClientConfig) -> Result<Client> {
        let store = calico_datastore::connect(&cfg.datastore)?;
        Ok(Client::new(Arc::from(store)))
    }

    pub fn store(&self) -> &Arc<dyn Datastore> {
        &self.store
    }

    pub fn get(&self, info: &KindInfo, namespace: &str, name: &str) -> Result<Option<AnyResource>> {
        let ns = effective_namespace(info, namespace);
        Ok(self.find(info, ns, name)?.map(|e| e.resource))
    }

    /// Reads a resource at the first of its candidate keys that holds it.
    fn find(&self, info: &KindInfo, ns: &str, name: &str) -> Result<Option<Existing>> {
        for key in candidate_keys(info, ns, name) {
            if let Some(kv) = self.store.get(&key)? {
                let resource = decode(info, &key, &kv.value, kv.mod_revision)?;
                // A policy whose stored name maps to another name is not this
                // one (upstream checks the same).
                if !policy_names::is_tiered_kind(info) || resource.name() == name {
                    return Ok(Some(Existing {
                        resource,
                        revision: kv.mod_revision,
                        key,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Lists a kind, in one namespace or (None) all of them. A policy stored
    /// under both the current and an older key is listed once, from the
    /// current key.
    pub fn list(&self, info: &KindInfo, namespace: Option<&str>) -> Result<Listed> {
        let prefix = kind_prefix(info, namespace);
        let res = self.store.list(&prefix)?;
        let mut out = Listed {
            revision: res.revision,
            ..Default::default()
        };
        let mut decoded = Vec::with_capacity(res.kvs.len());
        for kv in res.kvs {
            match decode(info, &kv.key, &kv.value, kv.mod_revision) {
                Ok(r) => decoded.push((kv.key, r)),
                Err(e) => out.bad.push((kv.key.clone(), e.to_string())),
            }
        }
        if policy_names::is_tiered_kind(info) {
            decoded = once_per_policy(info, decoded);
        }
        out.items = decoded.into_iter().map(|(_, r)| r).collect();
        Ok(out)
    }

    /// Typed get.
    pub fn get_as<R: Resource>(&self, namespace: &str, name: &str) -> Result<Option<R>> {
        let info = lookup_kind(R::KIND).expect("registered kind");
        Ok(self.get(info, namespace, name)?.map(|r| downcast::<R>(r)))
    }

    /// Typed list (bad entries are skipped; use `list` to see them).
    pub fn list_as<R: Resource>(&self, namespace: Option<&str>) -> Result<Vec<R>> {
        let info = lookup_kind(R::KIND).expect("registered kind");
        Ok(self
            .list(info, namespace)?
            .items
            .into_iter()
            .map(downcast::<R>)
            .collect())
    }

    pub fn create(&self, r: AnyResource) -> Result<AnyResource> {
        Ok(self
            .write_all(vec![r], WriteMode::Create)?
            .remove(0)
            .resource)
    }

    pub fn replace(&self, r: AnyResource) -> Result<AnyResource> {
        Ok(self
            .write_all(vec![r], WriteMode::Replace)?
            .remove(0)
            .resource)
    }

    pub fn apply(&self, r: AnyResource) -> Result<AnyResource> {
        Ok(self
            .write_all(vec![r], WriteMode::Apply)?
            .remove(0)
            .resource)
    }

    /// Deletes a resource; with `resource_version`, only if it still matches.
    pub fn delete(
        &self,
        info: &KindInfo,
        namespace: &str,
        name: &str,
        resource_version: Option<&str>,
    ) -> Result<AnyResource> {
        let ns = effective_namespace(info, namespace);
        let id = id_of(info, ns, name);
        let rev = match resource_version.filter(|v| !v.is_empty()) {
            Some(v) => Some(v.parse::<Revision>().map_err(|_| ClientError::Invalid {
                id: id.clone(),
                errors: FieldErrors(vec![calico_api::validate::FieldError {
                    field: "metadata.resourceVersion".into(),
                    message: format!("{v:?} is not a valid resourceVersion"),
                }]),
            })?),
            None => None,
        };
        // The current layout's key first; a policy may still be at an older one.
        let mut result = Err(calico_datastore::Error::NotFound { key: id.clone() });
        for key in candidate_keys(info, ns, name) {
            result = self.store.delete(&key, rev).map(|kv| (key, kv));
            if !matches!(result, Err(calico_datastore::Error::NotFound { .. })) {
                break;
            }
        }
        match result {
            Ok((key, kv)) => decode(info, &key, &kv.value, kv.mod_revision),
            Err(calico_datastore::Error::NotFound { .. }) => Err(ClientError::NotFound { id }),
            Err(calico_datastore::Error::Conflict {
                expected, actual, ..
            }) => Err(ClientError::Conflict {
                id,
                expected: expected.to_string(),
                actual: actual.to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Validates every resource (alone, against each other and against the
    /// store) and only then writes them, in transactions as large as the
    /// backend allows. Nothing is written if any resource is invalid.
    pub fn write_all(&self, resources: Vec<AnyResource>, mode: WriteMode) -> Result<Vec<Written>> {
        let mut resources = resources;
        let tiers_given: Vec<bool> = resources.iter().map(policy_names::tier_given).collect();
        for r in resources.iter_mut() {
            prepare(r);
        }
        for r in &resources {
            r.validate().map_err(|errors| ClientError::Invalid {
                id: r.display_id(),
                errors,
            })?;
        }
        let existing = self.existing_for(&resources)?;
        self.cross_validate(&resources, &existing)?;

        let now = now_rfc3339();
        let mut planned: Vec<(Vec<Op>, Written)> = Vec::with_capacity(resources.len());
        for (r, tier_given) in resources.into_iter().zip(tiers_given) {
            planned.push(plan_write(r, tier_given, mode, &existing, &now)?);
        }

        // A resource's ops (a move from an old key is two) share a transaction.
        let chunk = self.store.max_txn_ops().max(2);
        let mut out = Vec::with_capacity(planned.len());
        let mut iter = planned.into_iter().peekable();
        while iter.peek().is_some() {
            let mut batch: Vec<(Vec<Op>, Written)> = Vec::new();
            let mut n_ops = 0;
            while let Some((ops, _)) = iter.peek() {
                if !batch.is_empty() && n_ops + ops.len() > chunk {
                    break;
                }
                n_ops += ops.len();
                batch.extend(iter.next());
            }
            let ops: Vec<Op> = batch.iter().flat_map(|(ops, _)| ops.clone()).collect();
            let rev = self
                .store
                .txn(&ops)
                .map_err(|e| self.map_write_error(e, &batch))?;
            for (_, mut w) in batch {
                w.resource.metadata_mut().resource_version = rev.to_string();
                out.push(w);
            }
        }
        Ok(out)
    }

    fn map_write_error(
        &self,
        e: calico_datastore::Error,
        batch: &[(Vec<Op>, Written)],
    ) -> ClientError {
        let id_for = |key: &str| {
            batch
                .iter()
                .find(|(ops, _)| ops.iter().any(|op| op.key() == key))
                .map(|(_, w)| w.resource.display_id())
                .unwrap_or_else(|| key.to_string())
        };
        match e {
            calico_datastore::Error::AlreadyExists { key } => {
                ClientError::AlreadyExists { id: id_for(&key) }
            }
            calico_datastore::Error::NotFound { key } => ClientError::NotFound { id: id_for(&key) },
            calico_datastore::Error::Conflict {
                key,
                expected,
                actual,
            } => ClientError::Conflict {
                id: id_for(&key),
                expected: expected.to_string(),
                actual: actual.to_string(),
            },
            other => ClientError::Store(other),
        }
    }

    /// Current stored state of every resource the batch touches, by the
    /// resource's current-layout key, read with one list per kind (cheap for
    /// large batches) or one lookup per resource.
    fn existing_for(&self, resources: &[AnyResource]) -> Result<HashMap<String, Existing>> {
        let mut per_kind: HashMap<&'static str, usize> = HashMap::new();
        for r in resources {
            *per_kind.entry(r.kind()).or_default() += 1;
        }
        let mut out: HashMap<String, Existing> = HashMap::new();
        for (kind, count) in per_kind {
            let info = lookup_kind(kind).expect("registered kind");
            if count > 8 {
                let res = self.store.list(&kind_prefix(info, None))?;
                for kv in res.kvs {
                    let Ok(r) = decode(info, &kv.key, &kv.value, kv.mod_revision) else {
                        continue;
                    };
                    let current = if policy_names::is_tiered_kind(info) {
                        resource_key(info, &r.metadata().namespace, r.name())
                    } else {
                        kv.key.clone()
                    };
                    // Where a policy is at both keys, the current one is it.
                    if out.get(&current).is_some_and(|e| e.key == current) {
                        continue;
                    }
                    let e = Existing {
                        resource: r,
                        revision: kv.mod_revision,
                        key: kv.key,
                    };
                    out.insert(current, e);
                }
            } else {
                for r in resources.iter().filter(|r| r.kind() == kind) {
                    let (ns, name) = (&r.metadata().namespace, r.name());
                    match self.find(info, ns, name) {
                        Ok(Some(e)) => {
                            out.insert(resource_key(info, ns, name), e);
                        }
                        // A value that does not decode counts as absent (the create
                        // then finds its key taken).
                        Ok(None) | Err(ClientError::Corrupt { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(out)
    }

    /// Rules that need other resources: pools must not overlap (each other
    /// or what is stored), a pool's CIDR and block size never change, and a
    /// policy's tier must exist.
    fn cross_validate(
        &self,
        batch: &[AnyResource],
        existing: &HashMap<String, Existing>,
    ) -> Result<()> {
        let pools_in_batch: Vec<&IPPool> = batch
            .iter()
            .filter_map(|r| match r {
                AnyResource::IPPool(p) => Some(p),
                _ => None,
            })
            .collect();
        if !pools_in_batch.is_empty() {
            let stored: Vec<IPPool> = self.list_as::<IPPool>(None)?;
            for (i, p) in pools_in_batch.iter().enumerate() {
                let id = format!("IPPool({})", p.metadata.name);
                let Some(net) = p.spec.net() else { continue };
                // Stored pools that this batch replaces are judged by their new version.
                let others = stored
                    .iter()
                    .filter(|s| {
                        !pools_in_batch
                            .iter()
                            .any(|b| b.metadata.name == s.metadata.name)
                    })
                    .chain(pools_in_batch[..i].iter().copied());
                if let Some(o) = find_overlapping_pool(&net, &p.metadata.name, others) {
                    return Err(invalid(
                        &id,
                        "spec.cidr",
                        &format!(
                            "{} overlaps IPPool {:?} ({})",
                            p.spec.cidr, o.metadata.name, o.spec.cidr
                        ),
                    ));
                }
                if let Some(cur) = stored.iter().find(|s| s.metadata.name == p.metadata.name) {
                    if cur.spec.net() != p.spec.net() {
                        return Err(invalid(&id, "spec.cidr", &format!("the CIDR of an existing pool cannot be changed (it is {}); create a new pool instead", cur.spec.cidr)));
                    }
                    if cur.spec.effective_block_size() != p.spec.effective_block_size() {
                        return Err(invalid(
                            &id,
                            "spec.blockSize",
                            &format!(
                                "the block size of an existing pool cannot be changed (it is {})",
                                cur.spec.effective_block_size()
                            ),
                        ));
                    }
                }
            }
        }
        let _ = existing;
        let mut tiers_checked: HashMap<String, bool> = HashMap::new();
        for r in batch {
            let tier = match r {
                AnyResource::NetworkPolicy(p) => &p.spec.tier,
                AnyResource::GlobalNetworkPolicy(p) => &p.spec.tier,
                _ => continue,
            };
            if tier.is_empty() || tier == DEFAULT_TIER {
                continue;
            }
            let in_batch = batch
                .iter()
                .any(|t| matches!(t, AnyResource::Tier(t) if &t.metadata.name == tier));
            let exists = match tiers_checked.get(tier) {
                Some(e) => *e,
                None => {
                    let e = in_batch || self.get_as::<Tier>("", tier)?.is_some();
                    tiers_checked.insert(tier.clone(), e);
                    e
                }
            };
            if !exists {
                return Err(invalid(
                    &r.display_id(),
                    "spec.tier",
                    &format!("tier {tier:?} does not exist; create the Tier first"),
                ));
            }
        }
        Ok(())
    }
}

/// The ops that write one resource, given what is stored: a create, an
/// update at its key, or (for a policy still at an older layout's key) the
/// old key's removal and a create at the current key.
fn plan_write(
    mut r: AnyResource,
    tier_given: bool,
    mode: WriteMode,
    existing: &HashMap<String, Existing>,
    now: &str,
) -> Result<(Vec<Op>, Written)> {
    let info = r.info();
    let key = resource_key(info, &r.metadata().namespace, r.name());
    let id = r.display_id();
    let given_rv = r.metadata().resource_version.clone();
    let current = match (mode, existing.get(&key)) {
        (WriteMode::Create, Some(_)) => return Err(ClientError::AlreadyExists { id }),
        (WriteMode::Replace, None) => return Err(ClientError::NotFound { id }),
        (WriteMode::Create | WriteMode::Apply, None) => {
            if mode == WriteMode::Create && !given_rv.is_empty() {
                return Err(invalid(
                    &id,
                    "metadata.resourceVersion",
                    "must not be set when creating a resource",
                ));
            }
            let meta = r.metadata_mut();
            meta.uid = uuid::Uuid::new_v4().to_string();
            meta.creation_timestamp = Some(now.to_string());
            None
        }
        (WriteMode::Replace | WriteMode::Apply, Some(cur)) => {
            if !given_rv.is_empty() && given_rv != cur.revision.to_string() {
                return Err(ClientError::Conflict {
                    id,
                    expected: given_rv,
                    actual: cur.revision.to_string(),
                });
            }
            let cur_meta = cur.resource.metadata();
            let meta = r.metadata_mut();
            meta.uid = cur_meta.uid.clone();
            meta.creation_timestamp = cur_meta.creation_timestamp.clone();
            Some(cur)
        }
    };
    r.metadata_mut().resource_version.clear();
    let value = encode(&r, tier_given);
    let ops = match current {
        None => vec![Op::Create {
            key,
            value,
            lease: None,
        }],
        Some(cur) if cur.key == key => vec![Op::Update {
            key,
            value,
            mod_revision: cur.revision,
            lease: None,
        }],
        Some(cur) => vec![
            Op::Delete {
                key: cur.key.clone(),
                mod_revision: Some(cur.revision),
            },
            Op::Create {
                key,
                value,
                lease: None,
            },
        ],
    };
    let created = ops.len() == 1 && matches!(ops[0], Op::Create { .. });
    Ok((
        ops,
        Written {
            resource: r,
            created,
        },
    ))
}

fn invalid(id: &str, field: &str, message: &str) -> ClientError {
    ClientError::Invalid {
        id: id.to_string(),
        errors: FieldErrors(vec![calico_api::validate::FieldError {
            field: field.into(),
            message: message.into(),
        }]),
    }
}

/// Defaults every resource gets before validation: namespace for namespaced
/// kinds, the kind's own upstream defaults, and the labels upstream stores on
/// a workload endpoint (its namespace and orchestrator, overriding any given).
pub fn prepare(r: &mut AnyResource) {
    default_namespace(r);
    r.apply_defaults();
    if let AnyResource::WorkloadEndpoint(w) = r {
        let labels = &mut w.metadata.labels;
        labels.insert(LABEL_NAMESPACE.to_string(), w.metadata.namespace.clone());
        labels.insert(LABEL_ORCHESTRATOR.to_string(), w.spec.orchestrator.clone());
    }
}

/// Puts a namespaced resource given without a namespace in `default`.
pub fn default_namespace(r: &mut AnyResource) {
    if r.info().namespaced && r.metadata().namespace.is_empty() {
        r.metadata_mut().namespace = DEFAULT_NAMESPACE.to_string();
    }
}

fn effective_namespace<'a>(info: &KindInfo, ns: &'a str) -> &'a str {
    if info.namespaced && ns.is_empty() {
        DEFAULT_NAMESPACE
    } else if info.namespaced {
        ns
    } else {
        ""
    }
}

/// Drops a policy read from an older layout's key when the same policy is
/// also at its current key (two versions wrote it).
fn once_per_policy(
    info: &KindInfo,
    decoded: Vec<(String, AnyResource)>,
) -> Vec<(String, AnyResource)> {
    let at_current_key =
        |key: &str, r: &AnyResource| resource_key(info, &r.metadata().namespace, r.name()) == key;
    let current: std::collections::HashSet<(String, String)> = decoded
        .iter()
        .filter(|(key, r)| at_current_key(key, r))
        .map(|(_, r)| (r.metadata().namespace.clone(), r.name().to_string()))
        .collect();
    decoded
        .into_iter()
        .filter(|(key, r)| {
            at_current_key(key, r)
                || !current.contains(&(r.metadata().namespace.clone(), r.name().to_string()))
        })
        .collect()
}

/// Converts an `AnyResource` known to be of kind `R` into `R`.
fn downcast<R: Resource>(r: AnyResource) -> R {
    serde_json::from_value(r.to_json_value()).expect("kind checked by caller")
}
