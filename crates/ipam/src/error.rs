//! The IPAM error type.

use std::net::IpAddr;

use calico_client::ClientError;
use ipnet::IpNet;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The datastore failed (unreachable, or a CAS conflict that ran out of retries).
    #[error("{0}")]
    Store(#[from] calico_datastore::Error),
    /// Reading or writing a v3 resource (pool, node, ...) failed.
    #[error("{0}")]
    Client(#[from] ClientError),
    /// A stored IPAM value does not decode or is inconsistent.
    #[error("stored IPAM data at {key} is invalid: {message}")]
    Corrupt { key: String, message: String },
    /// No enabled pool of this IP version selects the node.
    #[error("no configured Calico pools for node {node} (IPv{version})")]
    NoPools { node: String, version: u8 },
    /// Pools select the node, but none allows this use.
    #[error("cannot find a qualified ippool: no IPv{version} pool selecting node {node} allows {use_} addresses")]
    NoPoolForUse {
        node: String,
        version: u8,
        use_: String,
    },
    /// A pool asked for by CIDR is not an enabled pool.
    #[error("the given pool ({0}) does not exist, or is not enabled")]
    PoolNotEnabled(IpNet),
    #[error("the provided IP address {0} is not in a configured pool")]
    NotInPool(IpAddr),
    #[error("IP address {0} is already assigned")]
    AlreadyAssigned(IpAddr),
    /// Strict affinity forbids using a block of another host (or of none).
    #[error("block {block} is {owner}; strict affinity forbids assigning {ip} for host {host}")]
    AffinityMismatch {
        ip: IpAddr,
        block: IpNet,
        owner: String,
        host: String,
    },
    /// Fewer addresses than requested could be assigned (those that were are
    /// kept and returned in the result, never in this error).
    #[error("{0}")]
    Partial(String),
    /// Concurrent writers kept winning every compare-and-swap.
    #[error("max retries hit - excessive concurrent IPAM requests ({0})")]
    MaxRetries(String),
    #[error("node {0} does not exist")]
    NodeNotFound(String),
    /// A pool that still has allocations was not deleted.
    #[error("IP pool {name} ({cidr}) still has {count} allocated address(es): release them first (see `calicoctl ipam show --show-blocks` and `calicoctl ipam release`), or delete the pool with --force to leave them as orphaned allocations")]
    PoolInUse {
        name: String,
        cidr: String,
        count: usize,
    },
    #[error("{0}")]
    Invalid(String),
}

impl IpamError {
    /// A compare-and-swap lost against a concurrent writer: re-read and retry.
    pub fn is_conflict(&self) -> bool {
        matches!(self, IpamError::Store(e) if e.is_conflict())
    }

    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            IpamError::Store(calico_datastore::Error::NotFound { .. })
        )
    }
}

pub type Result<T> = std::result::Result<T, IpamError>;
