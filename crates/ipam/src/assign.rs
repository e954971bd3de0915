//! Auto-assign and assignment of a specific address (lcg `lib/ipam/ipam.go`
//! `AutoAssign`, `autoAssign`, `findOrClaimBlock`, `AssignIP`, and
//! `ipam_block_reader_writer.go` for claiming blocks).
//!
//! For each IP version: the enabled pools of that version that select the
//! host (its Node's labels against `nodeSelector`; or the pools asked for by
//! CIDR) and allow the intended use; then
//! 1. the host's affine blocks in those pools (key order),
//! 2. a new block, claimed in upstream's three steps — write a *pending*
//!    affinity, create the block (compare-and-swap: only one host can), then
//!    *confirm* the affinity; a host that loses the race removes its pending
//!    affinity and tries the next block — as long as the host owns fewer than
//!    `maxBlocksPerHost` blocks and `autoAllocateBlocks` is on,
//! 3. unless `strictAffinity`, a free address in any block of those pools
//!    (other hosts' blocks, nearest first in the host's block order).
//!
//! Affine blocks whose pool no longer selects the host, or whose pool is
//! gone, lose their affinity on the way when they are empty.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;

use calico_api::network::AllowedUse;
use calico_datastore::Op;
use ipnet::IpNet;

use crate::affinity::{BlockAffinity, STATE_CONFIRMED, STATE_PENDING};
use crate::block::{block_for_ip, host_affinity, AllocationBlock, BlockOrder};
use crate::config::IpamConfig;
use crate::error::{IpamError, Result};
use crate::handle::IpamHandle;
use crate::keys::{affinity_key, block_key, handle_key, parse_affinity_key};
use crate::pools::{pool_for_block, PoolInfo};
use crate::reserved::Reservations;
use crate::store::{delete_op, encode, get, write_op, Retry, Versioned};
use crate::Ipam;

/// What to auto-assign.
#[derive(Clone, Debug)]
pub struct AutoAssignArgs {
    pub num4: usize,
    pub num6: usize,
    /// Owner of the addresses (e.g. a workload id); `release_by_handle` frees them all.
    pub handle_id: Option<String>,
    /// Free-form attributes stored with the addresses (`node`, `namespace`,
    /// `pod`, `type`, ... as upstream clients set them).
    pub attrs: BTreeMap<String, String>,
    /// The node whose blocks to use.
    pub hostname: String,
    /// Use only these IPv4 pools (by CIDR; they must be enabled). Empty = the
    /// pools whose `nodeSelector` selects the host.
    pub ipv4_pools: Vec<IpNet>,
    pub ipv6_pools: Vec<IpNet>,
    /// Most blocks the host may own; 0 = the global `maxBlocksPerHost`
    /// (the smaller of the two applies when both are set).
    pub max_blocks_per_host: u32,
    /// `Workload` or `Tunnel`: only pools allowing it are used.
    pub intended_use: AllowedUse,
}

impl Default for AutoAssignArgs {
    fn default() -> Self {
        AutoAssignArgs {
            num4: 0,
            num6: 0,
            handle_id: None,
            attrs: BTreeMap::new(),
            hostname: String::new(),
            ipv4_pools: Vec::new(),
            ipv6_pools: Vec::new(),
            max_blocks_per_host: 0,
            intended_use: AllowedUse::Workload,
        }
    }
}

/// The addresses of one IP version an auto-assign handed out. Fewer than
/// requested is not an error by itself (the ones assigned are kept, under the
/// handle): see [`Assignments::partial_fulfillment_error`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Assignments {
    pub version: u8,
    /// Each address with its block's prefix length (e.g. `10.0.0.5/26`).
    pub ips: Vec<IpNet>,
    pub num_requested: usize,
    /// Why fewer addresses than requested were assigned.
    pub msgs: Vec<String>,
}

impl Assignments {
    fn new(version: u8, num: usize) -> Assignments {
        Assignments {
            version,
            num_requested: num,
            ..Default::default()
        }
    }

    fn add_msg(&mut self, m: impl Into<String>) {
        let m = m.into();
        if !self.msgs.contains(&m) {
            self.msgs.push(m);
        }
    }

    pub fn addrs(&self) -> Vec<IpAddr> {
        self.ips.iter().map(|n| n.addr()).collect()
    }

    pub fn is_complete(&self) -> bool {
        self.ips.len() >= self.num_requested
    }

    /// `Assigned 1 out of 2 requested IPv4 addresses; <why>` when short.
    pub fn partial_fulfillment_error(&self) -> Option<IpamError> {
        if self.is_complete() {
            return None;
        }
        let mut s = format!(
            "Assigned {} out of {} requested IPv{} addresses",
            self.ips.len(),
            self.num_requested,
            self.version
        );
        for m in &self.msgs {
            s.push_str("; ");
            s.push_str(m);
        }
        Some(IpamError::Partial(s))
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct AutoAssignResult {
    pub v4: Assignments,
    pub v6: Assignments,
}

impl AutoAssignResult {
    pub fn addrs(&self) -> Vec<IpAddr> {
        let mut v = self.v4.addrs();
        v.extend(self.v6.addrs());
        v
    }

    /// The result if every requested address was assigned, else the error
    /// (the addresses assigned stay allocated under the handle).
    pub fn complete(self) -> Result<AutoAssignResult> {
        if let Some(e) = self.v4.partial_fulfillment_error() {
            return Err(e);
        }
        if let Some(e) = self.v6.partial_fulfillment_error() {
            return Err(e);
        }
        Ok(self)
    }
}

/// Assignment of one specific address.
#[derive(Clone, Debug)]
pub struct AssignIpArgs {
    pub ip: IpAddr,
    pub handle_id: Option<String>,
    pub attrs: BTreeMap<String, String>,
    /// The node the address is for (its block is claimed for it if unowned).
    pub hostname: String,
}

impl AssignIpArgs {
    pub fn new(ip: IpAddr, hostname: &str) -> AssignIpArgs {
        AssignIpArgs {
            ip,
            handle_id: None,
            attrs: BTreeMap::new(),
            hostname: hostname.to_string(),
        }
    }

    pub fn handle(mut self, handle_id: &str) -> AssignIpArgs {
        self.handle_id = Some(handle_id.to_string());
        self
    }

    pub fn attrs(mut self, attrs: BTreeMap<String, String>) -> AssignIpArgs {
        self.attrs = attrs;
        self
    }
}

/// The result of turning an affinity into a usable block.
pub(crate) enum Claim {
    Block(Box<Versioned<AllocationBlock>>),
    /// The block belongs to another host (our affinity was removed).
    Lost,
}

enum Found {
    Block(Box<Versioned<AllocationBlock>>, bool),
    NoFreeBlocks,
    BlockLimit,
    AutoAllocateDisabled,
}

/// Everything one version's auto-assign needs.
struct Ctx<'a> {
    host: &'a str,
    cfg: IpamConfig,
    reserved: Reservations,
    pools: Vec<PoolInfo>,
    handle: Option<&'a str>,
    attrs: &'a BTreeMap<String, String>,
    version: u8,
}

pub(crate) fn conflict(key: &str) -> IpamError {
    IpamError::Store(calico_datastore::Error::Conflict {
        key: key.to_string(),
        expected: 0,
        actual: 0,
    })
}

impl Ipam {
    /// Auto-assigns `num4` IPv4 and `num6` IPv6 addresses for a host.
    /// Errors only when nothing could be tried (no usable pool, datastore
    /// down before the first address); a shortfall is reported in the result.
    pub fn auto_assign(&self, args: &AutoAssignArgs) -> Result<AutoAssignResult> {
        if args.hostname.is_empty() {
            return Err(IpamError::Invalid("auto-assign needs a host name".into()));
        }
        for (pools, v) in [(&args.ipv4_pools, 4), (&args.ipv6_pools, 6)] {
            if let Some(p) = pools.iter().find(|p| crate::keys::version_of(p) != v) {
                return Err(IpamError::Invalid(format!(
                    "provided IPv{v} IPPools list contains {p}, which is not an IPv{v} pool"
                )));
            }
        }
        let mut out = AutoAssignResult {
            v4: Assignments::new(4, args.num4),
            v6: Assignments::new(6, args.num6),
        };
        if args.num4 > 0 {
            out.v4 = self.auto_assign_version(args, 4, args.num4, &args.ipv4_pools)?;
        }
        if args.num6 > 0 {
            out.v6 = match self.auto_assign_version(args, 6, args.num6, &args.ipv6_pools) {
                Ok(a) => a,
                // Keep the IPv4 addresses visible to the caller.
                Err(e) if !out.v4.ips.is_empty() => {
                    let mut a = Assignments::new(6, args.num6);
                    a.add_msg(e.to_string());
                    a
                }
                Err(e) => return Err(e),
            };
        }
        Ok(out)
    }

    fn auto_assign_version(
        &self,
        args: &AutoAssignArgs,
        version: u8,
        num: usize,
        requested: &[IpNet],
    ) -> Result<Assignments> {
        let host = args.hostname.as_str();
        let cfg = self.get_config()?;
        let (all, reserved) = self.pools_and_reservations()?;
        let reserved = reserved.of_version(version);
        let enabled: Vec<&PoolInfo> = all
            .iter()
            .filter(|p| p.version() == version && p.enabled())
            .collect();
        // Node labels matter only if some pool selects a subset of nodes.
        let labels = if enabled.iter().all(|p| p.selects_all()) {
            BTreeMap::new()
        } else {
            self.node_labels(host)?
        };
        let selecting: Vec<PoolInfo> = if requested.is_empty() {
            enabled
                .iter()
                .filter(|p| p.automatic() && p.selects(&labels))
                .map(|p| (*p).clone())
                .collect()
        } else {
            requested
                .iter()
                .map(|r| {
                    enabled
                        .iter()
                        .find(|p| p.net == r.trunc())
                        .map(|p| (*p).clone())
                        .ok_or(IpamError::PoolNotEnabled(*r))
                })
                .collect::<Result<_>>()?
        };
        if selecting.is_empty() {
            return Err(IpamError::NoPools {
                node: host.to_string(),
                version,
            });
        }
        let usable: Vec<PoolInfo> = selecting
            .iter()
            .filter(|p| p.allows(args.intended_use))
            .cloned()
            .collect();
        if usable.is_empty() {
            return Err(IpamError::NoPoolForUse {
                node: host.to_string(),
                version,
                use_: format!("{:?}", args.intended_use),
            });
        }

        // The host's affine blocks: those in usable pools are tried first;
        // empty ones whose pool no longer selects the host (or is gone) are
        // released.
        let mut remaining = VecDeque::new();
        // Newest claims first (the likeliest to have room), and first of all
        // the block that last had room.
        let mut affs = self.host_affinity_kvs(host, version)?;
        affs.sort_by_key(|(_, a)| std::cmp::Reverse(a.mod_revision));
        if let Some(h) = self.hint(host, version) {
            if let Some(i) = affs.iter().position(|(c, _)| *c == h) {
                let x = affs.remove(i);
                affs.insert(0, x);
            }
        }
        for (cidr, aff) in affs {
            if pool_for_block(&usable, &cidr).is_some() {
                remaining.push_back((cidr, Some(aff)));
                continue;
            }
            if pool_for_block(&selecting, &cidr).is_some() {
                continue;
            }
            let keep = match pool_for_block(&all, &cidr) {
                Some(p) => !p.enabled() || p.selects(&labels),
                None => false,
            };
            if !keep {
                match self.release_block_affinity(host, &cidr, true) {
                    Ok(r) => {
                        tracing::info!(%host, %cidr, ?r, "released affinity of a block its pool no longer gives this host")
                    }
                    Err(e) => tracing::warn!(%host, %cidr, "could not release stale affinity: {e}"),
                }
            }
        }

        let mut max_blocks = args.max_blocks_per_host;
        if cfg.max_blocks_per_host > 0 && (max_blocks == 0 || max_blocks > cfg.max_blocks_per_host)
        {
            max_blocks = cfg.max_blocks_per_host;
        }
        let ctx = Ctx {
            host,
            cfg,
            reserved,
            pools: usable,
            handle: args.handle_id.as_deref(),
            attrs: &args.attrs,
            version,
        };
        let mut ia = Assignments::new(version, num);
        if let Err(e) = self.assign_loop(&ctx, &mut ia, remaining, max_blocks) {
            if ia.ips.is_empty() {
                return Err(e);
            }
            // Addresses already assigned must reach the caller (they hold
            // the handle to release them): report the error as the reason.
            ia.add_msg(e.to_string());
        }
        Ok(ia)
    }

    fn assign_loop(
        &self,
        ctx: &Ctx,
        ia: &mut Assignments,
        mut remaining: VecDeque<(IpNet, Option<calico_datastore::KeyValue>)>,
        max_blocks: u32,
    ) -> Result<()> {
        let num = ia.num_requested;
        let mut owned = remaining.len();
        let mut fruitless = 0;
        while ia.ips.len() < num {
            let allow_new = max_blocks == 0 || owned < max_blocks as usize;
            match self.find_or_claim_block(ctx, &mut remaining, allow_new)? {
                Found::Block(b, newly) => {
                    if newly {
                        owned += 1;
                    }
                    let cidr = b.value.cidr;
                    let (got, free_after) = self.assign_from_block(
                        ctx,
                        *b,
                        num - ia.ips.len(),
                        ctx.cfg.strict_affinity,
                    )?;
                    self.set_hint(ctx.host, ctx.version, (free_after > 0).then_some(cidr));
                    if got.is_empty() {
                        // Someone filled the block between our read and write.
                        fruitless += 1;
                        if fruitless > crate::store::MAX_RETRIES {
                            return Err(IpamError::MaxRetries(
                                "finding a block with free addresses".into(),
                            ));
                        }
                    }
                    ia.ips.extend(got);
                }
                Found::NoFreeBlocks => {
                    if ctx.cfg.strict_affinity {
                        ia.add_msg("No more free affine blocks and strict affinity enabled");
                    }
                    break;
                }
                Found::AutoAllocateDisabled => {
                    ia.add_msg(
                        "No more free affine blocks and automatic block allocation is disabled",
                    );
                    break;
                }
                Found::BlockLimit => {
                    ia.add_msg(format!(
                        "Need to allocate an IPAM block but could not - limit of {max_blocks} blocks reached for this node"
                    ));
                    return Ok(());
                }
            }
        }
        if ia.ips.len() < num && !ctx.cfg.strict_affinity {
            self.borrow(ctx, ia)?;
        }
        Ok(())
    }

    /// Free addresses in any existing block of the usable pools, blocks
    /// nearest in the host's order first.
    fn borrow(&self, ctx: &Ctx, ia: &mut Assignments) -> Result<()> {
        let blocks = self.blocks(ctx.version)?;
        let mut exhausted = Vec::new();
        for pool in &ctx.pools {
            let order = BlockOrder::for_host(&pool.net, pool.block_size, ctx.host);
            let mut cands: Vec<(u128, Versioned<AllocationBlock>)> = blocks
                .iter()
                .filter(|b| b.value.num_free(&ctx.reserved) > 0)
                .filter_map(|b| order.position(&b.value.cidr).map(|p| (p, b.clone())))
                .collect();
            cands.sort_by_key(|(p, _)| *p);
            for (_, b) in cands {
                let rem = ia.num_requested - ia.ips.len();
                if rem == 0 {
                    return Ok(());
                }
                let (got, _) = self.assign_from_block(ctx, b, rem, false)?;
                ia.ips.extend(got);
            }
            if ia.ips.len() < ia.num_requested {
                exhausted.push(pool.net.to_string());
            }
        }
        if !exhausted.is_empty() {
            ia.add_msg(format!(
                "No IPs available in pools: [{}]",
                exhausted.join(" ")
            ));
        }
        Ok(())
    }

    fn find_or_claim_block(
        &self,
        ctx: &Ctx,
        remaining: &mut VecDeque<(IpNet, Option<calico_datastore::KeyValue>)>,
        allow_new: bool,
    ) -> Result<Found> {
        while let Some((cidr, aff)) = remaining.pop_front() {
            if ctx.reserved.matches_whole(&cidr) {
                continue;
            }
            let mut aff = match aff {
                Some(kv) => match crate::store::decode::<BlockAffinity>(&kv) {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("skipping affinity: {e}");
                        continue;
                    }
                },
                None => match get::<BlockAffinity>(self.store(), &affinity_key(ctx.host, &cidr))? {
                    Some(a) => a,
                    None => continue,
                },
            };
            let mut retry = Retry::new("loading an affine block");
            loop {
                retry.attempt()?;
                match self.block_from_affinity(ctx.host, aff.clone()) {
                    Ok(Claim::Block(b)) => {
                        if b.value.num_free(&ctx.reserved) > 0 {
                            // Keep it for the next round: it may still have room.
                            remaining.push_front((cidr, None));
                            return Ok(Found::Block(b, false));
                        }
                        break;
                    }
                    Ok(Claim::Lost) => break,
                    Err(e) if e.is_conflict() => {
                        match get::<BlockAffinity>(self.store(), &aff.key)? {
                            Some(a) => aff = a,
                            None => break,
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if !allow_new {
            return Ok(Found::BlockLimit);
        }
        if !ctx.cfg.auto_allocate_blocks {
            return Ok(Found::AutoAllocateDisabled);
        }
        let mut retry = Retry::new("claiming a new block");
        loop {
            retry.attempt()?;
            let Some(subnet) = self.find_usable_block(ctx)? else {
                return Ok(Found::NoFreeBlocks);
            };
            let mut inner = Retry::new("claiming a block affinity");
            loop {
                inner.attempt()?;
                let pa = match self.pending_affinity(ctx.host, &subnet) {
                    Ok(a) => a,
                    Err(e) if e.is_conflict() => continue,
                    Err(e) => return Err(e),
                };
                match self.block_from_affinity(ctx.host, pa.clone()) {
                    Ok(Claim::Block(b)) => {
                        if b.value.num_free(&ctx.reserved) > 0 {
                            remaining.push_front((subnet, None));
                            return Ok(Found::Block(b, true));
                        }
                        break;
                    }
                    Ok(Claim::Lost) => break,
                    Err(e) if e.is_conflict() => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// A block of the usable pools that does not exist yet (or exists, is
    /// ours and has room: another process of this host claimed it meanwhile),
    /// in the host's block order.
    fn find_usable_block(&self, ctx: &Ctx) -> Result<Option<IpNet>> {
        let existing: HashMap<IpNet, (bool, usize)> = self
            .blocks(ctx.version)?
            .into_iter()
            .map(|b| {
                (
                    b.value.cidr,
                    (
                        b.value.is_affine_to(ctx.host),
                        b.value.num_free(&ctx.reserved),
                    ),
                )
            })
            .collect();
        for pool in &ctx.pools {
            let mut reserved_skips = 0u32;
            for subnet in BlockOrder::for_host(&pool.net, pool.block_size, ctx.host) {
                if ctx.reserved.matches_whole(&subnet) {
                    reserved_skips += 1;
                    if reserved_skips > 1 << 20 {
                        break;
                    }
                    continue;
                }
                match existing.get(&subnet) {
                    None => return Ok(Some(subnet)),
                    Some((true, free)) if *free > 0 => return Ok(Some(subnet)),
                    Some(_) => {}
                }
            }
        }
        Ok(None)
    }

    /// Creates a pending affinity for `host` on `cidr`, or returns the
    /// existing one (marked pending unless already confirmed).
    pub(crate) fn pending_affinity(
        &self,
        host: &str,
        cidr: &IpNet,
    ) -> Result<Versioned<BlockAffinity>> {
        let key = affinity_key(host, cidr);
        let a = BlockAffinity::with_state(STATE_PENDING);
        match self.store().create(&key, &encode(&a), None) {
            Ok(rev) => Ok(Versioned { key, value: a, rev }),
            Err(calico_datastore::Error::AlreadyExists { .. }) => {
                let cur =
                    get::<BlockAffinity>(self.store(), &key)?.ok_or_else(|| conflict(&key))?;
                if cur.value.state == STATE_CONFIRMED {
                    Ok(cur)
                } else {
                    self.set_affinity_state(cur, STATE_PENDING)
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    fn set_affinity_state(
        &self,
        aff: Versioned<BlockAffinity>,
        state: &str,
    ) -> Result<Versioned<BlockAffinity>> {
        let mut v = aff.value;
        v.state = state.to_string();
        let rev = self.store().update(&aff.key, &encode(&v), aff.rev, None)?;
        Ok(Versioned {
            key: aff.key,
            value: v,
            rev,
        })
    }

    fn confirm_affinity(&self, aff: Versioned<BlockAffinity>) -> Result<Versioned<BlockAffinity>> {
        let key = aff.key.clone();
        match self.set_affinity_state(aff, STATE_CONFIRMED) {
            Ok(a) => Ok(a),
            Err(e) if e.is_conflict() => match get::<BlockAffinity>(self.store(), &key)? {
                // Another process of this host confirmed it.
                Some(cur) if cur.value.state == STATE_CONFIRMED => Ok(cur),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// The block an affinity of `host` refers to: created (and the affinity
    /// confirmed) if missing; the affinity confirmed if it is not yet; the
    /// affinity removed if the block belongs to someone else.
    pub(crate) fn block_from_affinity(
        &self,
        host: &str,
        aff: Versioned<BlockAffinity>,
    ) -> Result<Claim> {
        let (_, cidr) = parse_affinity_key(&aff.key)
            .ok_or_else(|| IpamError::Invalid(format!("not an affinity key: {}", aff.key)))?;
        let bkey = block_key(&cidr);
        let Some(b) = get::<AllocationBlock>(self.store(), &bkey)? else {
            let aff = self.set_affinity_state(aff, STATE_PENDING)?;
            return self.claim_affine_block(host, aff);
        };
        if !b.value.is_affine_to(host) {
            // Stale affinity (the block went to another host, or lost its owner).
            match self.store().delete(&aff.key, Some(aff.rev)) {
                Ok(_) | Err(calico_datastore::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(Claim::Lost);
        }
        if aff.value.is_confirmed() {
            return Ok(Claim::Block(Box::new(b)));
        }
        let aff = self.set_affinity_state(aff, STATE_PENDING)?;
        // Write the block to give it a new revision: writers still holding
        // the old one must re-read it.
        let mut v = b.value;
        v.sequence_number += 1;
        let rev = self.store().update(&bkey, &encode(&v), b.rev, None)?;
        self.confirm_affinity(aff)?;
        Ok(Claim::Block(Box::new(Versioned {
            key: bkey,
            value: v,
            rev,
        })))
    }

    /// Creates the block of a pending affinity (compare-and-swap: fails if it
    /// exists), then confirms the affinity. If another host owns the block,
    /// removes the pending affinity and returns `Lost`.
    pub(crate) fn claim_affine_block(
        &self,
        host: &str,
        aff: Versioned<BlockAffinity>,
    ) -> Result<Claim> {
        let (_, cidr) = parse_affinity_key(&aff.key)
            .ok_or_else(|| IpamError::Invalid(format!("not an affinity key: {}", aff.key)))?;
        let bkey = block_key(&cidr);
        let block = AllocationBlock::new(cidr, Some(host_affinity(host)));
        match self.store().create(&bkey, &encode(&block), None) {
            Ok(rev) => {
                self.confirm_affinity(aff)?;
                Ok(Claim::Block(Box::new(Versioned {
                    key: bkey,
                    value: block,
                    rev,
                })))
            }
            Err(calico_datastore::Error::AlreadyExists { .. }) => {
                let existing =
                    get::<AllocationBlock>(self.store(), &bkey)?.ok_or_else(|| conflict(&bkey))?;
                if existing.value.is_affine_to(host) {
                    // Another process of this host claimed it.
                    self.confirm_affinity(aff)?;
                    return Ok(Claim::Block(Box::new(existing)));
                }
                match self.store().delete(&aff.key, Some(aff.rev)) {
                    Ok(_) | Err(calico_datastore::Error::NotFound { .. }) => {}
                    Err(e) if e.is_conflict() => {}
                    Err(e) => return Err(e.into()),
                }
                Ok(Claim::Lost)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The write that brings handle `id` in line with `block` (its count there
    /// becomes what the block holds for it); `None` if there is nothing to write.
    pub(crate) fn handle_op(&self, id: &str, block: &AllocationBlock) -> Result<Option<Op>> {
        let cur = get::<IpamHandle>(self.store(), &handle_key(id))?;
        Ok(handle_op_with(id, block, cur))
    }

    /// Up to `num` addresses from one block, written with the handle in one
    /// transaction; re-reads and retries on conflict. `aff_check`: the block
    /// must (still) be affine to the host (strict affinity); if it is not,
    /// nothing is assigned from it. Returns the addresses and how many remain
    /// free in the block.
    fn assign_from_block(
        &self,
        ctx: &Ctx,
        block: Versioned<AllocationBlock>,
        num: usize,
        aff_check: bool,
    ) -> Result<(Vec<IpNet>, usize)> {
        let mut cur = block;
        let mut handle = HandleRead::default();
        let mut retry = Retry::new("assigning addresses from a block");
        loop {
            retry.attempt()?;
            let mut b = cur.value.clone();
            if aff_check && !b.is_affine_to(ctx.host) {
                // Strict affinity, and the block stopped being ours since we
                // chose it (its affinity was released): use another one.
                return Ok((Vec::new(), 0));
            }
            let ips = b.auto_assign(num, ctx.handle, ctx.attrs, &ctx.reserved);
            if ips.is_empty() {
                return Ok((Vec::new(), 0));
            }
            b.sequence_number += 1;
            let mut ops = vec![write_op(&cur.key, &b, cur.rev)];
            if let Some(h) = ctx.handle {
                ops.extend(handle.op(self, h, &b)?);
            }
            let started = std::time::Instant::now();
            match self.store().txn(&ops) {
                Ok(_) => {
                    let len = b.cidr.prefix_len();
                    let free = b.num_free(&ctx.reserved);
                    return Ok((
                        ips.into_iter()
                            .map(|ip| IpNet::new(ip, len).expect("valid prefix"))
                            .collect(),
                        free,
                    ));
                }
                Err(e) if e.is_conflict() => {
                    retry.lost_after(started.elapsed());
                    if handle.lost(&e, ctx.handle) {
                        continue;
                    }
                    match get::<AllocationBlock>(self.store(), &cur.key)? {
                        Some(n) => cur = n,
                        None => return Ok((Vec::new(), 0)),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Assigns one specific address of an enabled pool to `hostname`,
    /// claiming its block for the host if nobody has it. Fails if the address
    /// is taken, or if strict affinity is on and the block is another host's.
    pub fn assign_ip(&self, args: &AssignIpArgs) -> Result<()> {
        let ip = args.ip;
        let host = args.hostname.as_str();
        if host.is_empty() {
            return Err(IpamError::Invalid("assign_ip needs a host name".into()));
        }
        let pools = self.pools()?;
        let pool = pools
            .iter()
            .find(|p| p.enabled() && p.contains(ip))
            .ok_or(IpamError::NotInPool(ip))?;
        let cfg = self.get_config()?;
        let cidr = block_for_ip(ip, pool.block_size);
        let bkey = block_key(&cidr);
        let mut handle = HandleRead::default();
        let mut retry = Retry::new("assigning an address");
        loop {
            retry.attempt()?;
            let cur = match get::<AllocationBlock>(self.store(), &bkey)? {
                Some(b) => b,
                None => {
                    let pa = match self.pending_affinity(host, &cidr) {
                        Ok(a) => a,
                        Err(e) if e.is_conflict() => continue,
                        Err(e) => return Err(e),
                    };
                    match self.claim_affine_block(host, pa) {
                        Ok(Claim::Block(b)) => *b,
                        Ok(Claim::Lost) => continue,
                        Err(e) if e.is_conflict() => continue,
                        Err(e) => return Err(e),
                    }
                }
            };
            let mut b = cur.value.clone();
            if cfg.strict_affinity && !b.is_affine_to(host) {
                return Err(IpamError::AffinityMismatch {
                    ip,
                    block: cidr,
                    owner: b
                        .affinity
                        .clone()
                        .unwrap_or_else(|| "not affine to any host".into()),
                    host: host.to_string(),
                });
            }
            match b.assign(ip, args.handle_id.as_deref(), &args.attrs) {
                Ok(()) => {}
                Err(true) => return Err(IpamError::AlreadyAssigned(ip)),
                Err(false) => return Err(IpamError::NotInPool(ip)),
            }
            b.sequence_number += 1;
            let mut ops = vec![write_op(&bkey, &b, cur.rev)];
            if let Some(h) = &args.handle_id {
                ops.extend(handle.op(self, h, &b)?);
            }
            match self.store().txn(&ops) {
                Ok(_) => return Ok(()),
                Err(e) if e.is_conflict() => {
                    handle.lost(&e, args.handle_id.as_deref());
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The handle write for `block` given the handle's current state.
pub(crate) fn handle_op_with(
    id: &str,
    block: &AllocationBlock,
    cur: Option<Versioned<IpamHandle>>,
) -> Option<Op> {
    let key = handle_key(id);
    let (mut h, rev) = match cur {
        Some(c) => (c.value, c.rev),
        None => (IpamHandle::default(), 0),
    };
    h.set_count(&block.cidr, block.count_by_handle(id) as u64);
    if h.is_empty() {
        (rev != 0).then(|| delete_op(&key, rev))
    } else {
        Some(write_op(&key, &h, rev))
    }
}

/// The key a failed compare-and-swap names.
pub(crate) fn conflict_key(e: &calico_datastore::Error) -> Option<&str> {
    match e {
        calico_datastore::Error::Conflict { key, .. }
        | calico_datastore::Error::AlreadyExists { key } => Some(key),
        _ => None,
    }
}

/// How an allocation learns its handle's state: it first assumes the handle
/// is new (most are: one per workload) and creates it in the block's
/// transaction; if that finds the handle exists, it reads it from then on.
#[derive(Default)]
struct HandleRead {
    read: bool,
}

impl HandleRead {
    fn op(&self, ipam: &Ipam, id: &str, block: &AllocationBlock) -> Result<Option<Op>> {
        if self.read {
            ipam.handle_op(id, block)
        } else {
            Ok(handle_op_with(id, block, None))
        }
    }

    /// After a failed transaction: true if the handle caused it (the block
    /// read is still good).
    fn lost(&mut self, e: &calico_datastore::Error, id: Option<&str>) -> bool {
        match (conflict_key(e), id) {
            (Some(k), Some(id)) if k == handle_key(id) => {
                self.read = true;
                true
            }
            _ => false,
        }
    }
}
