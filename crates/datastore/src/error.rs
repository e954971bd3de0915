//! The one error type shared by both backends, so callers (IPAM CAS loops,
//! calicoctl) can match on the outcome without knowing which store they use.

use crate::Revision;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key (or, for lease operations and writes naming a lease, the lease,
    /// rendered as `lease <id>`) does not exist.
    #[error("not found: {key}")]
    NotFound { key: String },

    /// A create found the key already present.
    #[error("already exists: {key}")]
    AlreadyExists { key: String },

    /// A compare-and-swap failed: the key's mod_revision was `actual`
    /// (0 = the key does not exist) instead of `expected`.
    #[error("conflict on {key}: expected mod_revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },

    /// The requested revision has been compacted away. `compacted` is the
    /// store's compaction revision (0 if the backend could not tell).
    #[error("revision {requested} has been compacted (history starts at revision {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },

    /// The store cannot be reached. Always one line naming the endpoint and
    /// the cause, e.g. `cannot reach etcd at http://127.0.0.1:2379: connection refused`.
    #[error("cannot reach etcd at {endpoint}: {cause}")]
    Unavailable { endpoint: String, cause: String },

    /// The datastore configuration is unusable (bad endpoint, unreadable
    /// certificate, rejected credentials, unusable local path...).
    #[error("invalid datastore configuration: {0}")]
    InvalidConfig(String),

    /// Anything else the backend reported.
    #[error("datastore error: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// True for the errors a CAS loop should retry after re-reading
    /// (the key changed or appeared/disappeared under us).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. } | Error::AlreadyExists { .. })
    }
}
