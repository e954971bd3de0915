//! Releasing addresses (by address or by handle), block affinities (of one
//! block, of a host, of a pool) and deleting pools (lcg `lib/ipam/ipam.go`
//! `ReleaseIPs`, `ReleaseByHandle`, `ReleaseHostAffinities`,
//! `ReleasePoolAffinities`, `ensureConsistentAffinity`;
//! `ipam_block_reader_writer.go` `releaseBlockAffinity`;
//! `lib/clientv3/ippool.go` `Delete`).
//!
//! A block left empty and without affinity is deleted. After a release, a
//! block whose pool no longer selects its host loses its affinity if empty.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use calico_api::network::{IPPool, Node};
use calico_api::{lookup_kind, AnyResource};
use calico_client::ClientError;
use ipnet::IpNet;

use crate::affinity::BlockAffinity;
use crate::block::{block_for_ip, AllocationBlock, Release};
use crate::error::{IpamError, Result};
use crate::handle::IpamHandle;
use crate::keys::{affinity_key, block_key, handle_key, version_of};
use crate::pools::{pool_for_block, pool_for_ip, PoolInfo};
use crate::store::{delete_op, get, write_op, Retry, Versioned};
use crate::Ipam;

/// One address to release; with a handle (and sequence number), only if it
/// is still allocated under that handle (at that sequence number).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseOptions {
    pub address: IpAddr,
    pub handle: Option<String>,
    pub sequence_number: Option<u64>,
}

impl ReleaseOptions {
    pub fn ip(address: IpAddr) -> ReleaseOptions {
        ReleaseOptions {
            address,
            handle: None,
            sequence_number: None,
        }
    }

    pub fn with_handle(address: IpAddr, handle: &str) -> ReleaseOptions {
        ReleaseOptions {
            address,
            handle: Some(handle.to_string()),
            sequence_number: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReleaseResult {
    pub released: Vec<IpAddr>,
    /// Asked for, but not allocated.
    pub not_allocated: Vec<IpAddr>,
    /// Allocated under another handle or sequence number: left alone.
    pub skipped: Vec<(IpAddr, String)>,
}

impl ReleaseResult {
    fn merge(&mut self, o: ReleaseResult) {
        self.released.extend(o.released);
        self.not_allocated.extend(o.not_allocated);
        self.skipped.extend(o.skipped);
    }
}

/// What releasing a block affinity did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AffinityRelease {
    /// Removed; the block was deleted (empty) or kept without affinity.
    Released,
    /// The host had no such affinity.
    NotFound,
    /// Kept: the block still has allocations and it had to be empty.
    NotEmpty,
    /// The block belongs to another host; the stale affinity was removed.
    OtherHost,
}

impl Ipam {
    /// Releases addresses. Addresses not allocated, or (when a handle or
    /// sequence number is given) allocated to someone else, are reported and
    /// left alone.
    pub fn release_ips(&self, opts: &[ReleaseOptions]) -> Result<ReleaseResult> {
        // Last request for an address wins.
        let mut unique: BTreeMap<IpAddr, ReleaseOptions> = BTreeMap::new();
        for o in opts {
            unique.insert(o.address, o.clone());
        }
        let pools = self.pools()?;
        let mut by_block: BTreeMap<IpNet, Vec<ReleaseOptions>> = BTreeMap::new();
        let mut out = ReleaseResult::default();
        let mut listed: Option<Vec<IpNet>> = None;
        for (ip, o) in unique {
            let cidr = match pool_for_ip(&pools, ip) {
                Some(p) => Some(block_for_ip(ip, p.block_size)),
                None => {
                    // Not in any pool (deleted?): find its block by scanning.
                    if listed.is_none() {
                        listed = Some(self.blocks(0)?.into_iter().map(|b| b.value.cidr).collect());
                    }
                    listed
                        .as_ref()
                        .unwrap()
                        .iter()
                        .find(|c| c.contains(&ip))
                        .copied()
                }
            };
            match cidr {
                Some(c) => by_block.entry(c).or_default().push(o),
                None => out.not_allocated.push(ip),
            }
        }
        for (cidr, reqs) in by_block {
            out.merge(self.release_from_block(&cidr, &reqs, &pools)?);
        }
        Ok(out)
    }

    fn release_from_block(
        &self,
        cidr: &IpNet,
        reqs: &[ReleaseOptions],
        pools: &[PoolInfo],
    ) -> Result<ReleaseResult> {
        let key = block_key(cidr);
        let mut retry = Retry::new("releasing addresses");
        loop {
            retry.attempt()?;
            let mut out = ReleaseResult::default();
            let Some(cur) = get::<AllocationBlock>(self.store(), &key)? else {
                // The pool's block size may not be the blocks' (pool deleted
                // and re-created with another size): release from the blocks
                // that actually hold the addresses.
                let version = crate::keys::version_of(cidr);
                let listed = self.store().list(&crate::keys::block_prefix(version))?;
                let blocks: Vec<IpNet> = listed
                    .kvs
                    .iter()
                    .filter_map(|kv| crate::keys::parse_block_key(&kv.key))
                    .collect();
                let mut groups: BTreeMap<IpNet, Vec<ReleaseOptions>> = BTreeMap::new();
                for r in reqs {
                    match blocks.iter().find(|c| c.contains(&r.address)) {
                        Some(c) if c != cidr => groups.entry(*c).or_default().push(r.clone()),
                        _ => out.not_allocated.push(r.address),
                    }
                }
                for (c, rs) in groups {
                    out.merge(self.release_from_block(&c, &rs, pools)?);
                }
                return Ok(out);
            };
            let mut b = cur.value.clone();
            let mut handles = BTreeSet::new();
            for r in reqs {
                match b.release_one(r.address, r.handle.as_deref(), r.sequence_number) {
                    Release::Released { handle } => {
                        out.released.push(r.address);
                        handles.extend(handle);
                    }
                    Release::NotAllocated | Release::OutsideBlock => {
                        out.not_allocated.push(r.address)
                    }
                    Release::Mismatch(m) => out.skipped.push((r.address, m)),
                }
            }
            if out.released.is_empty() {
                return Ok(out);
            }
            b.compact_attributes();
            b.sequence_number += 1;
            let mut ops = vec![if b.is_empty() && b.affinity.is_none() {
                delete_op(&key, cur.rev)
            } else {
                write_op(&key, &b, cur.rev)
            }];
            let mut deferred = Vec::new();
            for h in handles {
                if ops.len() < self.store().max_txn_ops() {
                    ops.extend(self.handle_op(&h, &b)?);
                } else {
                    deferred.push(h);
                }
            }
            match self.store().txn(&ops) {
                Ok(_) => {}
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
            for h in deferred {
                self.sync_handle(&h, cidr)?;
            }
            self.ensure_consistent_affinity(&b, pools);
            return Ok(out);
        }
    }

    /// Sets handle `id`'s count for block `cidr` to what the block holds for
    /// it (the block is rewritten unchanged in the same transaction so that
    /// the count cannot be stale).
    pub fn sync_handle(&self, id: &str, cidr: &IpNet) -> Result<()> {
        let mut retry = Retry::new("updating a handle");
        loop {
            retry.attempt()?;
            let block = self.get_block(cidr)?;
            let empty = AllocationBlock::new(*cidr, None);
            let b = block.as_ref().map_or(&empty, |b| &b.value);
            let mut ops = Vec::new();
            if let Some(cur) = &block {
                ops.push(write_op(&cur.key, &cur.value, cur.rev));
            }
            ops.extend(self.handle_op(id, b)?);
            if ops.len() <= usize::from(block.is_some()) {
                return Ok(());
            }
            match self.store().txn(&ops) {
                Ok(_) => return Ok(()),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Releases every address allocated under `handle`; returns them. A
    /// handle that does not exist has nothing to release.
    pub fn release_by_handle(&self, handle: &str) -> Result<Vec<IpAddr>> {
        let Some(h) = self.get_handle(handle)? else {
            return Ok(Vec::new());
        };
        let pools = self.pools()?;
        let mut released = Vec::new();
        let mut known = Some(h.clone());
        for cidr in h.value.blocks() {
            let (ips, after) = self.release_handle_in_block(handle, &cidr, &pools, known.take())?;
            released.extend(ips);
            known = after;
        }
        Ok(released)
    }

    /// Releases `handle`'s addresses in one block and drops the block from
    /// the handle, in one transaction. `known`: the handle as last seen (read
    /// again if stale). Returns the addresses and the handle as written.
    fn release_handle_in_block(
        &self,
        handle: &str,
        cidr: &IpNet,
        pools: &[PoolInfo],
        known: Option<Versioned<IpamHandle>>,
    ) -> Result<(Vec<IpAddr>, Option<Versioned<IpamHandle>>)> {
        let bkey = block_key(cidr);
        let hkey = handle_key(handle);
        let mut known = known;
        let mut retry = Retry::new("releasing by handle");
        loop {
            retry.attempt()?;
            let block = get::<AllocationBlock>(self.store(), &bkey)?;
            let cur_handle = match known.take() {
                Some(h) => Some(h),
                None => get::<IpamHandle>(self.store(), &hkey)?,
            };
            let mut ops = Vec::new();
            let mut ips = Vec::new();
            let mut after = None;
            if let Some(b) = &block {
                let mut v = b.value.clone();
                ips = v.release_by_handle(handle);
                if !ips.is_empty() {
                    v.sequence_number += 1;
                    ops.push(if v.is_empty() && v.affinity.is_none() {
                        delete_op(&bkey, b.rev)
                    } else {
                        write_op(&bkey, &v, b.rev)
                    });
                    after = Some(v);
                }
            }
            let mut handle_after = cur_handle.clone();
            if let Some(h) = &cur_handle {
                if h.value.count(cidr) > 0 || !ips.is_empty() {
                    let mut hv = h.value.clone();
                    hv.set_count(cidr, 0);
                    if hv.is_empty() {
                        ops.push(delete_op(&hkey, h.rev));
                        handle_after = None;
                    } else {
                        ops.push(write_op(&hkey, &hv, h.rev));
                        handle_after = Some(Versioned {
                            key: hkey.clone(),
                            value: hv,
                            rev: 0,
                        });
                    }
                }
            }
            if ops.is_empty() {
                return Ok((ips, cur_handle));
            }
            match self.store().txn(&ops) {
                Ok(rev) => {
                    if let Some(h) = handle_after.as_mut() {
                        if h.rev == 0 {
                            h.rev = rev;
                        }
                    }
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
            if let Some(v) = after {
                self.ensure_consistent_affinity(&v, pools);
            }
            return Ok((ips, handle_after));
        }
    }

    /// Every address allocated under `handle`.
    pub fn ips_by_handle(&self, handle: &str) -> Result<Vec<IpAddr>> {
        let Some(h) = self.get_handle(handle)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for cidr in h.value.blocks() {
            if let Some(b) = self.get_block(&cidr)? {
                out.extend(b.value.ips_by_handle(handle));
            }
        }
        Ok(out)
    }

    /// Removes `host`'s affinity to block `cidr`: in one transaction, the
    /// affinity goes and the block is deleted (if empty) or kept without
    /// affinity. With `require_empty`, a block in use keeps its affinity.
    pub fn release_block_affinity(
        &self,
        host: &str,
        cidr: &IpNet,
        require_empty: bool,
    ) -> Result<AffinityRelease> {
        let akey = affinity_key(host, cidr);
        let bkey = block_key(cidr);
        let mut retry = Retry::new("releasing a block affinity");
        loop {
            retry.attempt()?;
            let Some(aff) = get::<BlockAffinity>(self.store(), &akey)? else {
                return Ok(AffinityRelease::NotFound);
            };
            let mut ops = vec![delete_op(&akey, aff.rev)];
            let mut outcome = AffinityRelease::Released;
            if let Some(b) = get::<AllocationBlock>(self.store(), &bkey)? {
                if !b.value.is_affine_to(host) {
                    outcome = AffinityRelease::OtherHost;
                } else if b.value.is_empty() {
                    ops.push(delete_op(&bkey, b.rev));
                } else if require_empty {
                    return Ok(AffinityRelease::NotEmpty);
                } else {
                    let mut v = b.value.clone();
                    v.affinity = None;
                    v.sequence_number += 1;
                    ops.push(write_op(&bkey, &v, b.rev));
                }
            }
            match self.store().txn(&ops) {
                Ok(_) => return Ok(outcome),
                Err(e)
                    if e.is_conflict() || matches!(e, calico_datastore::Error::NotFound { .. }) =>
                {
                    continue
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Releases every affinity of `host` (both IP versions); returns how many.
    /// Used when a node goes away (`must_be_empty` false keeps its
    /// allocations, in blocks that no longer belong to anyone).
    pub fn release_host_affinities(&self, host: &str, require_empty: bool) -> Result<usize> {
        let mut n = 0;
        for v in [4, 6] {
            for (cidr, _) in self.host_affinities(host, v)? {
                if self.release_block_affinity(host, &cidr, require_empty)?
                    == AffinityRelease::Released
                {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Releases every affinity (of any host) to blocks inside `pool`.
    pub fn release_pool_affinities(&self, pool: &IpNet) -> Result<usize> {
        let mut n = 0;
        for (host, cidr, _) in self.all_affinities()? {
            if version_of(&cidr) == version_of(pool)
                && pool.contains(&cidr.network())
                && self.release_block_affinity(&host, &cidr, false)? == AffinityRelease::Released
            {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Addresses allocated in the blocks of `pool` (Windows-reserved ones aside).
    pub fn pool_allocations(&self, pool: &PoolInfo) -> Result<usize> {
        Ok(self
            .blocks(pool.version())?
            .iter()
            .filter(|b| pool.net.contains(&b.value.cidr.network()))
            .map(|b| b.value.in_use_by_workloads())
            .sum())
    }

    /// Deletes a pool as upstream does (disable it, release the affinities of
    /// its blocks, delete it) — but refuses while its blocks still hold
    /// allocations unless `force`. Forced, the allocations stay, in blocks
    /// without affinity (`calicoctl ipam show` lists them as orphaned).
    pub fn delete_pool(
        &self,
        name: &str,
        resource_version: Option<&str>,
        force: bool,
    ) -> Result<IPPool> {
        let info = lookup_kind("IPPool").expect("IPPool is a known kind");
        let id = format!("IPPool({name})");
        let pool = self
            .client()
            .get_as::<IPPool>("", name)?
            .ok_or(ClientError::NotFound { id: id.clone() })?;
        if let Some(rv) = resource_version.filter(|v| !v.is_empty()) {
            if rv != pool.metadata.resource_version {
                return Err(ClientError::Conflict {
                    id,
                    expected: rv.to_string(),
                    actual: pool.metadata.resource_version.clone(),
                }
                .into());
            }
        }
        let Some(pinfo) = PoolInfo::new(&pool) else {
            // A pool whose CIDR does not parse has no blocks.
            return Ok(self.client().delete(info, "", name, None)?.try_into_pool());
        };
        let count = self.pool_allocations(&pinfo)?;
        if count > 0 && !force {
            return Err(IpamError::PoolInUse {
                name: name.to_string(),
                cidr: pool.spec.cidr.clone(),
                count,
            });
        }
        if !pool.spec.disabled {
            let mut p = pool.clone();
            p.spec.disabled = true;
            self.client().replace(AnyResource::IPPool(p))?;
        }
        self.release_pool_affinities(&pinfo.net)?;
        let deleted = self.client().delete(info, "", name, None)?.try_into_pool();
        Ok(deleted)
    }

    /// After a release: if the block's pool no longer selects the block's
    /// host, release the (empty) block's affinity. Best effort.
    fn ensure_consistent_affinity(&self, b: &AllocationBlock, pools: &[PoolInfo]) {
        let Some(host) = b.host() else { return };
        let enabled: Vec<PoolInfo> = pools.iter().filter(|p| p.enabled()).cloned().collect();
        let pool = match pool_for_block(&enabled, &b.cidr) {
            None => return,
            // Selects every node: no need to read this one.
            Some(p) if p.selects_all() => return,
            Some(p) => p,
        };
        let node = match self.client().get_as::<Node>("", host) {
            Ok(Some(n)) => n,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(%host, "cannot read node to check block affinity: {e}");
                return;
            }
        };
        if pool.selects(&node.metadata.labels) {
            return;
        }
        if let Err(e) = self.release_block_affinity(host, &b.cidr, true) {
            tracing::warn!(%host, cidr = %b.cidr, "cannot release affinity: {e}");
        }
    }

    /// Deletes handle `id` if it is still at revision `rev` (a leaked handle
    /// from a `check` report). `Ok(false)` if it is gone or changed.
    pub fn delete_handle_if_unchanged(&self, id: &str, rev: i64) -> Result<bool> {
        match self.store().delete(&handle_key(id), Some(rev)) {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() || matches!(e, calico_datastore::Error::NotFound { .. }) => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
}

trait IntoPool {
    fn try_into_pool(self) -> IPPool;
}

impl IntoPool for AnyResource {
    fn try_into_pool(self) -> IPPool {
        match self {
            AnyResource::IPPool(p) => p,
            other => serde_json::from_value(other.to_json_value()).expect("an IPPool"),
        }
    }
}
