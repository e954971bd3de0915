//! Revisioned key-value store with etcd v3's data model.
//!
//! Two backends implement [`Datastore`]:
//! - [`EtcdStore`] (`etcdv3`): a real etcd v3 cluster, as upstream Calico uses.
//! - [`LocalStore`] (`local`): one SQLite file shared by several processes on
//!   one host, with the same revision, watch, compaction and lease semantics.
//!
//! The API is synchronous on purpose: its callers (a CLI, IPAM CAS loops,
//! an agent's threads) should not need an async runtime. The etcd backend owns
//! a private tokio runtime and blocks on it.
//!
//! Semantics shared by both backends (and checked by `tests/conformance.rs`):
//! - One global revision, bumped once per write transaction; every key written
//!   by that transaction gets it as `mod_revision`. A fresh store is at revision 1.
//! - `create_revision` is the revision that created the key, `version` counts
//!   writes since creation (1 on create).
//! - `Update` on a missing key fails with `Conflict { actual: 0 }`;
//!   `Delete` on a missing key fails with `NotFound` (with or without a revision).
//! - A write naming a lease that does not exist fails with
//!   `NotFound { key: "lease <id>" }`; so do `keep_alive` and `revoke_lease`.
//! - A transaction may not name the same key twice (etcd refuses it).

mod error;
pub mod etcd;
pub mod local;
pub mod testing;

use std::cell::RefCell;
use std::fmt;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Duration;

pub use error::{Error, Result};
pub use etcd::EtcdStore;
pub use local::LocalStore;

/// etcd revision; 0 = "none".
pub type Revision = i64;
/// Lease id; 0 = no lease.
pub type LeaseId = i64;

/// Default path of the `local` backend's database file.
pub const DEFAULT_LOCAL_PATH: &str = "/var/lib/calico/calico.db";

/// Default dial/request timeout for etcd (upstream Calico uses 10 s).
pub const DEFAULT_ETCD_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: Revision,
    pub mod_revision: Revision,
    pub version: i64,
    pub lease: LeaseId,
}

impl KeyValue {
    /// The value as UTF-8 text, if it is (Calico stores JSON).
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    pub kvs: Vec<KeyValue>,
    /// Store revision at the read; watch from `revision + 1` to see what follows.
    pub revision: Revision,
}

/// One write in a transaction, each with its own condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Fails with `AlreadyExists` if the key exists.
    Create {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    /// Fails with `Conflict` unless the key's mod_revision equals `mod_revision`
    /// (`actual: 0` if the key is missing).
    Update {
        key: String,
        value: Vec<u8>,
        mod_revision: Revision,
        lease: Option<LeaseId>,
    },
    /// Unconditional write (status keys).
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    /// Fails with `NotFound` if absent, or `Conflict` if `Some(rev)` differs
    /// from the key's mod_revision.
    Delete {
        key: String,
        mod_revision: Option<Revision>,
    },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Create { key, .. }
            | Op::Update { key, .. }
            | Op::Put { key, .. }
            | Op::Delete { key, .. } => key,
        }
    }

    /// The lease a write attaches (`None` for deletes and for lease 0).
    pub fn lease(&self) -> Option<LeaseId> {
        match self {
            Op::Create { lease, .. } | Op::Update { lease, .. } | Op::Put { lease, .. } => {
                lease.filter(|l| *l != 0)
            }
            Op::Delete { .. } => None,
        }
    }

    /// Check this op's condition against the key's current state; the same
    /// rule for both backends (etcd evaluates it server-side, and we re-run it
    /// on the snapshot the failed txn returns to name the failing op).
    pub(crate) fn check(&self, current: Option<&KeyValue>) -> Result<()> {
        let actual = current.map_or(0, |kv| kv.mod_revision);
        match self {
            Op::Create { key, .. } if current.is_some() => {
                Err(Error::AlreadyExists { key: key.clone() })
            }
            Op::Update {
                key, mod_revision, ..
            } if current.is_none() || actual != *mod_revision => Err(Error::Conflict {
                key: key.clone(),
                expected: *mod_revision,
                actual,
            }),
            Op::Delete { key, .. } if current.is_none() => {
                Err(Error::NotFound { key: key.clone() })
            }
            Op::Delete {
                key,
                mod_revision: Some(rev),
            } if actual != *rev => Err(Error::Conflict {
                key: key.clone(),
                expected: *rev,
                actual,
            }),
            _ => Ok(()),
        }
    }
}

/// Reject transactions naming a key twice (etcd does; the local store follows).
pub(crate) fn check_txn_shape(ops: &[Op], max: usize) -> Result<()> {
    if ops.len() > max {
        return Err(Error::Backend(format!(
            "transaction has {} operations; the maximum is {max}",
            ops.len()
        )));
    }
    let mut keys: Vec<&str> = ops.iter().map(Op::key).collect();
    keys.sort_unstable();
    if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::Backend(format!(
            "transaction names key {} more than once",
            w[0]
        )));
    }
    Ok(())
}

pub(crate) fn lease_not_found(lease: LeaseId) -> Error {
    Error::NotFound {
        key: format!("lease {lease}"),
    }
}

/// Exclusive end of the key range covering `prefix` (etcd's "prefix end"):
/// the prefix with its last byte below 0xff incremented. `None` = no upper
/// bound (empty prefix, or a prefix of only 0xff bytes).
pub fn prefix_range_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let i = prefix.iter().rposition(|b| *b < 0xff)?;
    let mut end = prefix[..=i].to_vec();
    end[i] += 1;
    Some(end)
}

pub enum WatchEvent {
    /// Create or update (`kv.create_revision == kv.mod_revision` on create).
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// Explicit delete or lease expiry.
    Delete {
        key: String,
        mod_revision: Revision,
        prev: Option<KeyValue>,
    },
    /// "Resync": the start revision is gone; the watch ends after this event.
    Compacted { compact_revision: Revision },
    /// E.g. connection lost; the watch ends after this event.
    Error(Error),
}

impl fmt::Debug for WatchEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchEvent::Put { kv, prev } => write!(
                f,
                "Put({} @{} = {:?}, prev @{:?})",
                kv.key,
                kv.mod_revision,
                String::from_utf8_lossy(&kv.value),
                prev.as_ref().map(|p| p.mod_revision)
            ),
            WatchEvent::Delete {
                key,
                mod_revision,
                prev,
            } => write!(
                f,
                "Delete({key} @{mod_revision}, prev @{:?})",
                prev.as_ref().map(|p| p.mod_revision)
            ),
            WatchEvent::Compacted { compact_revision } => {
                write!(f, "Compacted(@{compact_revision})")
            }
            WatchEvent::Error(e) => write!(f, "Error({e})"),
        }
    }
}

impl WatchEvent {
    /// Revision of the change (None for Compacted/Error).
    pub fn revision(&self) -> Option<Revision> {
        match self {
            WatchEvent::Put { kv, .. } => Some(kv.mod_revision),
            WatchEvent::Delete { mod_revision, .. } => Some(*mod_revision),
            _ => None,
        }
    }

    /// Key of the change (None for Compacted/Error).
    pub fn key(&self) -> Option<&str> {
        match self {
            WatchEvent::Put { kv, .. } => Some(&kv.key),
            WatchEvent::Delete { key, .. } => Some(key),
            _ => None,
        }
    }
}

/// A running watch: a stream of [`WatchEvent`]s in revision order.
/// Dropping it cancels the watch. It is also an `Iterator` (blocking `next`).
pub struct Watch {
    rx: Receiver<WatchEvent>,
    /// One event taken off the channel by `is_closed` and not yet returned.
    peeked: RefCell<Option<WatchEvent>>,
    /// Dropped with the Watch; its Drop stops the producer (thread or task).
    _cancel: Box<dyn Send>,
}

impl Watch {
    /// Build a watch from a channel fed by a producer; dropping `cancel`
    /// must stop that producer. Public so that test doubles can implement
    /// [`Datastore`].
    pub fn new(rx: Receiver<WatchEvent>, cancel: Box<dyn Send>) -> Watch {
        Watch {
            rx,
            peeked: RefCell::new(None),
            _cancel: cancel,
        }
    }

    /// Next event, blocking; `None` once the watch has ended.
    pub fn recv(&self) -> Option<WatchEvent> {
        if let Some(ev) = self.peeked.borrow_mut().take() {
            return Some(ev);
        }
        self.rx.recv().ok()
    }

    /// Next event, waiting at most `d`; `None` on timeout or end
    /// (tell them apart with [`Watch::is_closed`]).
    pub fn recv_timeout(&self, d: Duration) -> Option<WatchEvent> {
        if let Some(ev) = self.peeked.borrow_mut().take() {
            return Some(ev);
        }
        self.rx.recv_timeout(d).ok()
    }

    /// Next event if one is ready now.
    pub fn try_recv(&self) -> Option<WatchEvent> {
        if let Some(ev) = self.peeked.borrow_mut().take() {
            return Some(ev);
        }
        self.rx.try_recv().ok()
    }

    /// True once the watch has ended and every event has been received.
    pub fn is_closed(&self) -> bool {
        let mut peeked = self.peeked.borrow_mut();
        if peeked.is_some() {
            return false;
        }
        match self.rx.try_recv() {
            Ok(ev) => {
                *peeked = Some(ev);
                false
            }
            Err(TryRecvError::Empty) => false,
            Err(TryRecvError::Disconnected) => true,
        }
    }
}

impl Iterator for Watch {
    type Item = WatchEvent;
    fn next(&mut self) -> Option<WatchEvent> {
        self.recv()
    }
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

pub trait Datastore: Send + Sync {
    /// E.g. `etcdv3 (http://127.0.0.1:2379)` or `local (/var/lib/calico/calico.db)`.
    fn describe(&self) -> String;
    fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    /// Keys starting with `prefix`, in lexical (byte) order, plus the store
    /// revision of the read.
    fn list(&self, prefix: &str) -> Result<ListResult>;
    /// Returns the new mod_revision.
    fn create(&self, key: &str, value: &[u8], lease: Option<LeaseId>) -> Result<Revision>;
    fn update(
        &self,
        key: &str,
        value: &[u8],
        mod_revision: Revision,
        lease: Option<LeaseId>,
    ) -> Result<Revision>;
    fn put(&self, key: &str, value: &[u8], lease: Option<LeaseId>) -> Result<Revision>;
    /// Returns the deleted kv.
    fn delete(&self, key: &str, mod_revision: Option<Revision>) -> Result<KeyValue>;
    /// All-or-nothing. On a failed condition nothing is written and the error
    /// is that of the FIRST failing op. Returns the transaction's revision.
    fn txn(&self, ops: &[Op]) -> Result<Revision>;
    /// Largest number of ops one `txn` may carry (etcd: 128, its server default).
    fn max_txn_ops(&self) -> usize;
    fn grant_lease(&self, ttl: Duration) -> Result<LeaseId>;
    /// `NotFound` if the lease expired or was revoked.
    fn keep_alive(&self, lease: LeaseId) -> Result<()>;
    /// Deletes the lease and every key attached to it.
    fn revoke_lease(&self, lease: LeaseId) -> Result<()>;
    /// All events under `prefix` with revision >= `start_revision`, in order;
    /// 0 = from now (only writes after this call returns).
    fn watch(&self, prefix: &str, start_revision: Revision) -> Result<Watch>;
    fn current_revision(&self) -> Result<Revision>;
    /// Drop history below `revision`. `Compacted` if already compacted there.
    fn compact(&self, revision: Revision) -> Result<()>;
}

// Built once per process; the size difference does not matter, and callers
// match on `Etcd(EtcdConfig)` directly, so no Box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatastoreConfig {
    Local { path: PathBuf },
    Etcd(EtcdConfig),
}

impl Default for DatastoreConfig {
    fn default() -> Self {
        DatastoreConfig::Local {
            path: PathBuf::from(DEFAULT_LOCAL_PATH),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `http://host:port` or `https://host:port` (https ⇒ TLS). Without a
    /// scheme, TLS is used iff certificate material is configured.
    pub endpoints: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_cert_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Inline PEM (CalicoAPIConfig etcdCACert/etcdCert/etcdKey); wins over the files.
    pub ca_cert_pem: Option<String>,
    pub cert_pem: Option<String>,
    pub key_pem: Option<String>,
    /// Dial and per-request timeout.
    pub timeout: Duration,
}

impl EtcdConfig {
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> EtcdConfig {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..EtcdConfig::default()
        }
    }
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".to_string()],
            username: None,
            password: None,
            ca_cert_file: None,
            cert_file: None,
            key_file: None,
            ca_cert_pem: None,
            cert_pem: None,
            key_pem: None,
            timeout: DEFAULT_ETCD_TIMEOUT,
        }
    }
}

// Hand-written so that secrets never end up in logs.
impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("username", &self.username)
            .field("password", &redact(&self.password))
            .field("ca_cert_file", &self.ca_cert_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("ca_cert_pem", &self.ca_cert_pem.as_ref().map(|_| "<pem>"))
            .field("cert_pem", &self.cert_pem.as_ref().map(|_| "<pem>"))
            .field("key_pem", &redact(&self.key_pem))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Open the configured backend.
pub fn connect(cfg: &DatastoreConfig) -> Result<Box<dyn Datastore>> {
    Ok(match cfg {
        DatastoreConfig::Local { path } => Box::new(LocalStore::open(path)?),
        DatastoreConfig::Etcd(etcd) => Box::new(EtcdStore::connect(etcd)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end() {
        assert_eq!(prefix_range_end(b"/a/"), Some(b"/a0".to_vec()));
        assert_eq!(prefix_range_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_range_end(b"\xff\xff"), None);
        assert_eq!(prefix_range_end(b""), None);
    }

    #[test]
    fn op_check_rules() {
        let kv = KeyValue {
            key: "k".into(),
            value: vec![],
            create_revision: 2,
            mod_revision: 5,
            version: 3,
            lease: 0,
        };
        let upd = |rev| Op::Update {
            key: "k".into(),
            value: vec![],
            mod_revision: rev,
            lease: None,
        };
        assert!(upd(5).check(Some(&kv)).is_ok());
        assert!(matches!(
            upd(4).check(Some(&kv)),
            Err(Error::Conflict {
                expected: 4,
                actual: 5,
                ..
            })
        ));
        assert!(matches!(
            upd(0).check(None),
            Err(Error::Conflict { actual: 0, .. })
        ));
        let del = |rev| Op::Delete {
            key: "k".into(),
            mod_revision: rev,
        };
        assert!(matches!(del(None).check(None), Err(Error::NotFound { .. })));
        assert!(matches!(
            del(Some(3)).check(None),
            Err(Error::NotFound { .. })
        ));
        assert!(del(Some(5)).check(Some(&kv)).is_ok());
        assert!(matches!(
            del(Some(4)).check(Some(&kv)),
            Err(Error::Conflict { .. })
        ));
        let dup = [del(None), upd(1)];
        assert!(check_txn_shape(&dup, 10).is_err());
    }

    #[test]
    fn config_debug_redacts_secrets() {
        let cfg = EtcdConfig {
            password: Some("hunter2".into()),
            key_pem: Some("-----BEGIN PRIVATE KEY-----".into()),
            ..EtcdConfig::default()
        };
        let s = format!("{cfg:?}");
        assert!(!s.contains("hunter2") && !s.contains("PRIVATE"), "{s}");
    }
}
