//! Calico IPAM on the datastore trait, with upstream's data model and keys
//! (lcg `lib/ipam`, `lib/backend/model/block*.go`), so data written by
//! upstream Calico reads back and vice versa.
//!
//! IP pools are carved into blocks (default /26 for IPv4, /122 for IPv6).
//! A host claims blocks (an *affinity*) and hands out its workload and
//! tunnel addresses from them, so each host announces a few aggregated
//! routes. Auto-assign uses the host's own blocks first, then claims a new
//! one, then — unless `strictAffinity` — borrows a free address from another
//! host's block. Every allocation is recorded under a *handle* (its owner),
//! which release-by-handle uses.
//!
//! # Concurrency and crash semantics
//!
//! Every write is a compare-and-swap on the key's revision, retried (with a
//! little random back-off) up to [`store::MAX_RETRIES`] times after
//! re-reading. Concurrent allocators — threads, processes, hosts — therefore
//! never hand out an address twice and never lose one.
//!
//! An allocation (or release) writes the block and the handle that counts it
//! in *one* transaction (both compare-and-swap), and sets the handle's count
//! for that block to what the block then holds for it. A crash at any point
//! thus leaves either the old or the new state of both — never an address
//! that no handle knows of (upstream writes the handle before the block on
//! assign and after it on release to get the weaker "handles may over-count"
//! guarantee; our transaction is strictly stronger and also costs fewer round
//! trips). Claiming a block follows upstream's three steps (pending affinity,
//! create the block, confirm the affinity); a crash between them leaves a
//! pending affinity that the host's next allocation completes or, if
//! another host won the block, removes. Releasing an affinity removes it and
//! deletes (empty) or un-assigns (non-empty) the block in one transaction.

pub mod affinity;
pub mod assign;
pub mod block;
pub mod check;
pub mod config;
mod error;
pub mod handle;
pub mod keys;
pub mod pools;
pub mod release;
pub mod reserved;
pub mod store;
pub mod tunnel;
pub mod usage;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use calico_api::network::{IPPool, IPReservation, Node};
use calico_api::{lookup_kind, AnyResource, API_GROUP_PREFIX};
use calico_client::Client;
use calico_datastore::Datastore;
use ipnet::IpNet;

pub use affinity::BlockAffinity;
pub use assign::{AssignIpArgs, Assignments, AutoAssignArgs, AutoAssignResult};
pub use block::AllocationBlock;
pub use config::IpamConfig;
pub use error::{IpamError, Result};
pub use handle::IpamHandle;
pub use pools::PoolInfo;
pub use release::{AffinityRelease, ReleaseOptions, ReleaseResult};
pub use reserved::Reservations;
pub use store::Versioned;

/// IPAM over one datastore. Cheap to create; safe to share between threads.
pub struct Ipam {
    store: Arc<dyn Datastore>,
    client: Client,
    /// Per (host, IP version): the block that last had room, tried first
    /// next time (only an ordering hint; the block is always re-read).
    hints: Mutex<HashMap<(String, u8), IpNet>>,
}

/// Everything IPAM stores, read in one go (for `check`, `show` and tests).
#[derive(Debug, Default)]
pub struct Snapshot {
    pub blocks: Vec<Versioned<AllocationBlock>>,
    /// `(host, block CIDR, affinity)`.
    pub affinities: Vec<(String, IpNet, Versioned<BlockAffinity>)>,
    /// `(handle id, handle)`.
    pub handles: Vec<(String, Versioned<IpamHandle>)>,
    /// Keys under `/calico/ipam/v2/` whose value does not decode.
    pub corrupt: Vec<(String, String)>,
}

impl Ipam {
    pub fn new(store: Arc<dyn Datastore>) -> Ipam {
        Ipam {
            client: Client::new(store.clone()),
            store,
            hints: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn hint(&self, host: &str, version: u8) -> Option<IpNet> {
        self.hints
            .lock()
            .unwrap()
            .get(&(host.to_string(), version))
            .copied()
    }

    pub(crate) fn set_hint(&self, host: &str, version: u8, block: Option<IpNet>) {
        let mut h = self.hints.lock().unwrap();
        match block {
            Some(b) => h.insert((host.to_string(), version), b),
            None => h.remove(&(host.to_string(), version)),
        };
    }

    pub fn store(&self) -> &dyn Datastore {
        self.store.as_ref()
    }

    /// The v3 resource client (pools, nodes, reservations) on the same store.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The global configuration (defaults when none is stored).
    pub fn get_config(&self) -> Result<IpamConfig> {
        Ok(store::get::<IpamConfig>(self.store(), keys::CONFIG_KEY)?
            .map(|v| v.value)
            .unwrap_or_default())
    }

    /// Replaces the global configuration (compare-and-swap), after upstream's
    /// checks: strict affinity and automatic block allocation cannot both be
    /// off, and a block limit needs strict affinity.
    pub fn set_config(&self, cfg: IpamConfig) -> Result<()> {
        cfg.validate().map_err(IpamError::Invalid)?;
        let mut retry = store::Retry::new("writing the IPAM configuration");
        loop {
            retry.attempt()?;
            let rev =
                store::get::<IpamConfig>(self.store(), keys::CONFIG_KEY)?.map_or(0, |v| v.rev);
            match self
                .store
                .txn(&[store::write_op(keys::CONFIG_KEY, &cfg, rev)])
            {
                Ok(_) => return Ok(()),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The labels pools' `nodeSelector`s are matched against: those of the
    /// Node resource (a node without one has no labels).
    pub fn node_labels(&self, host: &str) -> Result<BTreeMap<String, String>> {
        Ok(self
            .client
            .get_as::<Node>("", host)?
            .map(|n| n.metadata.labels)
            .unwrap_or_default())
    }

    /// Every IPReservation's CIDRs.
    pub fn reservations(&self) -> Result<Reservations> {
        let rs = self.client.list_as::<IPReservation>(None)?;
        Ok(Reservations::from_strings(rs.iter().flat_map(|r| {
            r.spec.reserved_cidrs.iter().map(String::as_str)
        })))
    }

    /// Every pool (enabled or not, both versions), parsed, by name.
    pub fn pools(&self) -> Result<Vec<PoolInfo>> {
        Ok(pools::pool_infos(&self.client.list_as::<IPPool>(None)?))
    }

    /// Pools and reservations with one read: their keys share the prefix
    /// `/calico/resources/v3/projectcalico.org/ip` (`ippools/`,
    /// `ipreservations/`; `ipamconfigurations/` is skipped).
    pub fn pools_and_reservations(&self) -> Result<(Vec<PoolInfo>, Reservations)> {
        let pool_kind = lookup_kind("IPPool").expect("known kind");
        let res_kind = lookup_kind("IPReservation").expect("known kind");
        let pool_prefix = format!("{API_GROUP_PREFIX}/{}/", pool_kind.plural);
        let res_prefix = format!("{API_GROUP_PREFIX}/{}/", res_kind.plural);
        let listed = self.store.list(&format!("{API_GROUP_PREFIX}/ip"))?;
        let mut pools = Vec::new();
        let mut reserved = Vec::new();
        for kv in &listed.kvs {
            let info = if kv.key.starts_with(&pool_prefix) {
                pool_kind
            } else if kv.key.starts_with(&res_prefix) {
                res_kind
            } else {
                continue;
            };
            match calico_client::client::decode(info, &kv.key, &kv.value, kv.mod_revision) {
                Ok(AnyResource::IPPool(p)) => pools.push(p),
                Ok(AnyResource::IPReservation(r)) => reserved.extend(r.spec.reserved_cidrs),
                Ok(_) => {}
                Err(e) => tracing::warn!(key = %kv.key, "skipping undecodable resource: {e}"),
            }
        }
        Ok((
            pools::pool_infos(&pools),
            Reservations::from_strings(reserved.iter().map(String::as_str)),
        ))
    }

    pub fn get_block(&self, cidr: &IpNet) -> Result<Option<Versioned<AllocationBlock>>> {
        store::get(self.store(), &keys::block_key(cidr))
    }

    pub fn get_handle(&self, id: &str) -> Result<Option<Versioned<IpamHandle>>> {
        store::get(self.store(), &keys::handle_key(id))
    }

    /// The stored block that holds `ip`: the one its pool's block size
    /// implies, else (pool gone or re-created with another block size) any
    /// block containing it.
    pub fn find_block_for(
        &self,
        ip: std::net::IpAddr,
        pools: &[PoolInfo],
    ) -> Result<Option<IpNet>> {
        if let Some(p) = pools::pool_for_ip(pools, ip) {
            let cidr = block::block_for_ip(ip, p.block_size);
            if self.store.get(&keys::block_key(&cidr))?.is_some() {
                return Ok(Some(cidr));
            }
        }
        let version = match ip {
            std::net::IpAddr::V4(_) => 4,
            std::net::IpAddr::V6(_) => 6,
        };
        let listed = self.store.list(&keys::block_prefix(version))?;
        Ok(listed
            .kvs
            .iter()
            .filter_map(|kv| keys::parse_block_key(&kv.key))
            .find(|c| c.contains(&ip)))
    }

    /// Blocks of one version (4 or 6), or of both (0), in key order; blocks
    /// that do not decode are skipped (see [`Ipam::snapshot`] to see them).
    pub fn blocks(&self, version: u8) -> Result<Vec<Versioned<AllocationBlock>>> {
        let prefix = if version == 0 {
            keys::BLOCK_PREFIX.to_string()
        } else {
            keys::block_prefix(version)
        };
        Ok(store::list(self.store(), &prefix, |k| {
            keys::parse_block_key(k).is_some()
        })?
        .items)
    }

    /// One host's affinities of one version: `(block CIDR, affinity)`.
    pub fn host_affinities(
        &self,
        host: &str,
        version: u8,
    ) -> Result<Vec<(IpNet, Versioned<BlockAffinity>)>> {
        let l = store::list::<BlockAffinity>(
            self.store(),
            &keys::host_affinity_prefix(host, version),
            |k| keys::parse_affinity_key(k).is_some_and(|(h, _)| h == host),
        )?;
        Ok(l.items
            .into_iter()
            .filter_map(|a| keys::parse_affinity_key(&a.key).map(|(_, c)| (c, a)))
            .collect())
    }

    /// One host's affinity keys of one version, undecoded: `(block CIDR, kv)`.
    pub(crate) fn host_affinity_kvs(
        &self,
        host: &str,
        version: u8,
    ) -> Result<Vec<(IpNet, calico_datastore::KeyValue)>> {
        Ok(self
            .store
            .list(&keys::host_affinity_prefix(host, version))?
            .kvs
            .into_iter()
            .filter_map(|kv| match keys::parse_affinity_key(&kv.key) {
                Some((h, c)) if h == host => Some((c, kv)),
                _ => None,
            })
            .collect())
    }

    /// Every affinity of every host: `(host, block CIDR, affinity)`.
    pub fn all_affinities(&self) -> Result<Vec<(String, IpNet, Versioned<BlockAffinity>)>> {
        let l = store::list::<BlockAffinity>(self.store(), keys::AFFINITY_PREFIX, |k| {
            keys::parse_affinity_key(k).is_some()
        })?;
        Ok(l.items
            .into_iter()
            .filter_map(|a| keys::parse_affinity_key(&a.key).map(|(h, c)| (h, c, a)))
            .collect())
    }

    /// Reads all IPAM keys.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let res = self.store.list(keys::IPAM_PREFIX)?;
        let mut s = Snapshot::default();
        for kv in &res.kvs {
            let bad = |e: IpamError| (kv.key.clone(), e.to_string());
            if keys::parse_block_key(&kv.key).is_some() {
                match store::decode::<AllocationBlock>(kv) {
                    Ok(b) => s.blocks.push(b),
                    Err(e) => s.corrupt.push(bad(e)),
                }
            } else if let Some((host, cidr)) = keys::parse_affinity_key(&kv.key) {
                match store::decode::<BlockAffinity>(kv) {
                    Ok(a) => s.affinities.push((host, cidr, a)),
                    Err(e) => s.corrupt.push(bad(e)),
                }
            } else if let Some(id) = keys::parse_handle_key(&kv.key) {
                match store::decode::<IpamHandle>(kv) {
                    Ok(h) => s.handles.push((id.to_string(), h)),
                    Err(e) => s.corrupt.push(bad(e)),
                }
            }
        }
        Ok(s)
    }
}
