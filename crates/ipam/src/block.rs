//! Allocation blocks (lcg `lib/backend/model/block.go`, `lib/ipam/ipam_block.go`):
//! the stored JSON, block arithmetic (ordinal ↔ address, which block holds an
//! address, the order in which a host tries a pool's blocks) and the pure
//! operations on one block (assign, release, attribute bookkeeping).
//!
//! Stored JSON, field order as upstream's Go struct:
//! ```json
//! {"cidr":"10.0.0.0/26","affinity":"host:node-1","allocations":[0,null,...],
//!  "unallocated":[1,2,...],"attributes":[{"handle_id":"h","secondary":{"node":"node-1"}}],
//!  "sequenceNumber":1700000000000000001,"sequenceNumberForAllocation":{"0":1700000000000000000},
//!  "deleted":false}
//! ```
//! Fields this crate does not know (`hostAffinity`, `strictAffinity`,
//! `affinityClaimTime`, ...) are kept and written back unchanged.
//!
//! Allocation order is upstream's: a new block's free list is `0..n`,
//! auto-assign takes ordinals from the front of `unallocated`, and released
//! ordinals are appended at the back, so a just-released address is the last
//! to be handed out again.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::reserved::Reservations;

/// Attribute keys upstream clients set on allocations.
pub const ATTR_NODE: &str = "node";
pub const ATTR_POD: &str = "pod";
pub const ATTR_NAMESPACE: &str = "namespace";
pub const ATTR_TYPE: &str = "type";
pub const ATTR_TIMESTAMP: &str = "timestamp";
/// `type` values of tunnel addresses.
pub const TYPE_VXLAN: &str = "vxlanTunnelAddress";
pub const TYPE_VXLAN_V6: &str = "vxlanV6TunnelAddress";
pub const TYPE_IPIP: &str = "ipipTunnelAddress";
pub const TYPE_WIREGUARD: &str = "wireguardTunnelAddress";
/// Handle of the addresses Windows hosts reserve in each of their blocks;
/// they do not make a block "in use".
pub const WINDOWS_RESERVED_HANDLE: &str = "windows-reserved-ipam-handle";

/// `host:<node>`, the block affinity of a host.
pub fn host_affinity(host: &str) -> String {
    format!("host:{host}")
}

/// Handles written by some old clients carry a trailing `\r...`; upstream
/// compares only what precedes it.
pub fn sanitize_handle(h: &str) -> &str {
    h.split('\r').next().unwrap_or(h)
}

// ---------------------------------------------------------------------------
// Block arithmetic

pub fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

pub fn u128_to_ip(v: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(v))
    } else {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    }
}

fn bits(net: &IpNet) -> u8 {
    net.max_prefix_len()
}

/// Number of addresses in `cidr` (saturating at `u128::MAX` for a /0 IPv6).
pub fn num_addresses(cidr: &IpNet) -> u128 {
    let host_bits = bits(cidr) - cidr.prefix_len();
    1u128.checked_shl(host_bits as u32).unwrap_or(u128::MAX)
}

/// The block of size `/block_prefix` that holds `ip`.
pub fn block_for_ip(ip: IpAddr, block_prefix: u8) -> IpNet {
    IpNet::new(ip, block_prefix)
        .expect("block prefix within the address family")
        .trunc()
}

/// How many `/block_prefix` blocks `pool` holds (saturating).
pub fn blocks_in(pool: &IpNet, block_prefix: u8) -> u128 {
    let n = block_prefix.saturating_sub(pool.prefix_len());
    1u128.checked_shl(n as u32).unwrap_or(u128::MAX)
}

/// The `i`-th block of `pool` (0 = the one at the pool's start).
pub fn nth_block(pool: &IpNet, block_prefix: u8, i: u128) -> IpNet {
    let v6 = matches!(pool, IpNet::V6(_));
    let size_bits = (bits(pool) - block_prefix) as u32;
    let base = ip_to_u128(pool.network());
    let addr = base.wrapping_add(i.checked_shl(size_bits).unwrap_or(0));
    IpNet::new(u128_to_ip(addr, v6), block_prefix).expect("valid prefix")
}

/// Index of `block` within `pool` (None if it is not one of its blocks).
pub fn block_index(pool: &IpNet, block_prefix: u8, block: &IpNet) -> Option<u128> {
    if block.prefix_len() != block_prefix || !pool.contains(&block.network()) {
        return None;
    }
    let size_bits = (bits(pool) - block_prefix) as u32;
    let off = ip_to_u128(block.network()) - ip_to_u128(pool.network());
    Some(off.checked_shr(size_bits).unwrap_or(0))
}

/// FNV-1 (32-bit) of the host name: the seed upstream derives a host's
/// starting block from, so that one host's claims start at the same place
/// and different hosts start at different places.
fn fnv1_32(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h = h.wrapping_mul(0x0100_0193);
        h ^= b as u32;
    }
    h
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The pseudo-random but deterministic index at which `host` starts walking
/// a pool of `count` blocks.
pub fn host_start_index(host: &str, count: u128) -> u128 {
    if count == 0 {
        return 0;
    }
    let a = splitmix64(fnv1_32(host) as u64) as u128;
    let b = splitmix64(a as u64 ^ 0x5851_f42d_4c95_7f2d) as u128;
    ((a << 64) | b) % count
}

/// The order in which a host tries the blocks of a pool: every block once,
/// starting at the host's start index and wrapping around (upstream's
/// `randomBlockGenerator`, with a different but equally host-seeded start).
#[derive(Clone, Debug)]
pub struct BlockOrder {
    pool: IpNet,
    block_prefix: u8,
    count: u128,
    start: u128,
    emitted: u128,
}

impl BlockOrder {
    pub fn for_host(pool: &IpNet, block_prefix: u8, host: &str) -> BlockOrder {
        let count = blocks_in(pool, block_prefix);
        BlockOrder {
            pool: pool.trunc(),
            block_prefix,
            count,
            start: host_start_index(host, count),
            emitted: 0,
        }
    }

    /// From the pool's first block.
    pub fn sequential(pool: &IpNet, block_prefix: u8) -> BlockOrder {
        BlockOrder {
            pool: pool.trunc(),
            block_prefix,
            count: blocks_in(pool, block_prefix),
            start: 0,
            emitted: 0,
        }
    }

    /// Position of `block` in this order (0 = first tried).
    pub fn position(&self, block: &IpNet) -> Option<u128> {
        let i = block_index(&self.pool, self.block_prefix, block)?;
        Some((i + self.count - self.start) % self.count)
    }

    pub fn count(&self) -> u128 {
        self.count
    }
}

impl Iterator for BlockOrder {
    type Item = IpNet;
    fn next(&mut self) -> Option<IpNet> {
        if self.emitted >= self.count {
            return None;
        }
        let i = (self.start + self.emitted) % self.count;
        self.emitted += 1;
        Some(nth_block(&self.pool, self.block_prefix, i))
    }
}

// ---------------------------------------------------------------------------
// Stored model

/// What one or more allocations of a block share: their handle and
/// free-form attributes (upstream: `AttrPrimary` / `AttrSecondary`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AllocationAttribute {
    /// JSON `handle_id`.
    pub handle_id: Option<String>,
    /// JSON `secondary`.
    pub secondary: BTreeMap<String, String>,
    /// Fields of newer upstream versions (e.g. `alternate`), kept as read.
    pub extra: Map<String, Value>,
}

impl Serialize for AllocationAttribute {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(2 + self.extra.len()))?;
        m.serialize_entry("handle_id", &self.handle_id)?;
        m.serialize_entry("secondary", &self.secondary)?;
        for (k, v) in &self.extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for AllocationAttribute {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = AllocationAttribute;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an allocation attribute object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<AllocationAttribute, A::Error> {
                let mut a = AllocationAttribute::default();
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        "handle_id" => a.handle_id = m.next_value()?,
                        "secondary" => {
                            a.secondary = m.next_value::<Option<_>>()?.unwrap_or_default()
                        }
                        _ => {
                            let v: Value = m.next_value()?;
                            a.extra.insert(k, v);
                        }
                    }
                }
                Ok(a)
            }
        }
        d.deserialize_map(V)
    }
}

impl AllocationAttribute {
    /// The handle, sanitised as upstream compares it.
    pub fn handle(&self) -> Option<&str> {
        self.handle_id.as_deref().map(sanitize_handle)
    }
}

/// One block of a pool and its allocations.
#[derive(Clone, Debug, PartialEq)]
pub struct AllocationBlock {
    pub cidr: IpNet,
    /// `host:<node>` when the block belongs to a host.
    pub affinity: Option<String>,
    /// Per ordinal: index into `attributes` when allocated.
    pub allocations: Vec<Option<usize>>,
    /// Free ordinals in the order they will be handed out.
    pub unallocated: Vec<usize>,
    pub attributes: Vec<AllocationAttribute>,
    /// Bumped on every write of the block.
    pub sequence_number: u64,
    /// Ordinal (as a decimal string) → block sequence number when allocated.
    pub sequence_number_for_allocation: BTreeMap<String, u64>,
    pub deleted: bool,
    /// Fields this crate does not model, written back unchanged.
    pub extra: Map<String, Value>,
}

impl Serialize for AllocationBlock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(8 + self.extra.len()))?;
        m.serialize_entry("cidr", &self.cidr.to_string())?;
        m.serialize_entry("affinity", &self.affinity)?;
        m.serialize_entry("allocations", &self.allocations)?;
        m.serialize_entry("unallocated", &self.unallocated)?;
        m.serialize_entry("attributes", &self.attributes)?;
        m.serialize_entry("sequenceNumber", &self.sequence_number)?;
        m.serialize_entry(
            "sequenceNumberForAllocation",
            &self.sequence_number_for_allocation,
        )?;
        m.serialize_entry("deleted", &self.deleted)?;
        for (k, v) in &self.extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for AllocationBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = AllocationBlock;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an allocation block object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<AllocationBlock, A::Error> {
                use serde::de::Error;
                let mut cidr: Option<String> = None;
                let mut b = AllocationBlock {
                    cidr: IpNet::V4(Default::default()),
                    affinity: None,
                    allocations: Vec::new(),
                    unallocated: Vec::new(),
                    attributes: Vec::new(),
                    sequence_number: 0,
                    sequence_number_for_allocation: BTreeMap::new(),
                    deleted: false,
                    extra: Map::new(),
                };
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        "cidr" => cidr = m.next_value()?,
                        "affinity" => b.affinity = m.next_value()?,
                        "allocations" => {
                            b.allocations = m.next_value::<Option<_>>()?.unwrap_or_default()
                        }
                        "unallocated" => {
                            b.unallocated = m.next_value::<Option<_>>()?.unwrap_or_default()
                        }
                        "attributes" => {
                            b.attributes = m.next_value::<Option<_>>()?.unwrap_or_default()
                        }
                        "sequenceNumber" => {
                            b.sequence_number = m.next_value::<Option<_>>()?.unwrap_or_default()
                        }
                        "sequenceNumberForAllocation" => {
                            b.sequence_number_for_allocation =
                                m.next_value::<Option<_>>()?.unwrap_or_default()
                        }
                        "deleted" => b.deleted = m.next_value::<Option<_>>()?.unwrap_or_default(),
                        _ => {
                            let v: Value = m.next_value()?;
                            b.extra.insert(k, v);
                        }
                    }
                }
                let cidr = cidr.ok_or_else(|| A::Error::missing_field("cidr"))?;
                let net: IpNet = cidr
                    .parse()
                    .map_err(|_| A::Error::custom(format!("invalid cidr {cidr:?}")))?;
                b.cidr = net.trunc();
                b.check().map_err(A::Error::custom)?;
                Ok(b)
            }
        }
        d.deserialize_map(V)
    }
}

/// The outcome of releasing one address of a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Release {
    /// Released; it was allocated under this handle.
    Released { handle: Option<String> },
    /// The address was not allocated.
    NotAllocated,
    /// Still allocated, but not with the expected handle or sequence number:
    /// left alone.
    Mismatch(String),
    /// The address is not in this block.
    OutsideBlock,
}

impl AllocationBlock {
    /// A new, empty block. Its sequence number starts at the current time in
    /// nanoseconds, as upstream does, so that a deleted and re-created block
    /// never repeats a sequence number.
    pub fn new(cidr: IpNet, affinity: Option<String>) -> AllocationBlock {
        let cidr = cidr.trunc();
        let n = usize::try_from(num_addresses(&cidr)).expect("block size is small");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        AllocationBlock {
            cidr,
            affinity,
            allocations: vec![None; n],
            unallocated: (0..n).collect(),
            attributes: Vec::new(),
            sequence_number: now,
            sequence_number_for_allocation: BTreeMap::new(),
            deleted: false,
            extra: Map::new(),
        }
    }

    /// Internal consistency of a decoded block.
    pub fn check(&self) -> Result<(), String> {
        let n = num_addresses(&self.cidr);
        if n > 1 << 16 {
            return Err(format!("block {} is too large", self.cidr));
        }
        let n = n as usize;
        if self.allocations.len() != n {
            return Err(format!(
                "block {} has {} allocation slots, expected {n}",
                self.cidr,
                self.allocations.len()
            ));
        }
        if let Some(i) = self
            .allocations
            .iter()
            .flatten()
            .find(|i| **i >= self.attributes.len())
        {
            return Err(format!(
                "block {} refers to attribute {i}, but has {}",
                self.cidr,
                self.attributes.len()
            ));
        }
        if let Some(o) = self.unallocated.iter().find(|o| **o >= n) {
            return Err(format!(
                "block {} lists free ordinal {o} out of range",
                self.cidr
            ));
        }
        Ok(())
    }

    pub fn num_addresses(&self) -> usize {
        self.allocations.len()
    }

    pub fn version(&self) -> u8 {
        crate::keys::version_of(&self.cidr)
    }

    /// The node this block is affine to (`host:<node>`).
    pub fn host(&self) -> Option<&str> {
        self.affinity.as_deref()?.strip_prefix("host:")
    }

    pub fn is_affine_to(&self, host: &str) -> bool {
        self.host() == Some(host)
    }

    pub fn ordinal_to_ip(&self, ord: usize) -> IpAddr {
        let v6 = matches!(self.cidr, IpNet::V6(_));
        u128_to_ip(ip_to_u128(self.cidr.network()) + ord as u128, v6)
    }

    pub fn ip_to_ordinal(&self, ip: IpAddr) -> Option<usize> {
        if !self.cidr.contains(&ip) {
            return None;
        }
        Some((ip_to_u128(ip) - ip_to_u128(self.cidr.network())) as usize)
    }

    fn attr_of(&self, ord: usize) -> Option<&AllocationAttribute> {
        self.allocations[ord].map(|i| &self.attributes[i])
    }

    fn is_windows_reserved(attr: &AllocationAttribute) -> bool {
        attr.handle()
            .is_some_and(|h| h.eq_ignore_ascii_case(WINDOWS_RESERVED_HANDLE))
    }

    /// No address is in use (addresses reserved for Windows do not count).
    pub fn is_empty(&self) -> bool {
        (0..self.allocations.len())
            .filter_map(|o| self.attr_of(o))
            .all(Self::is_windows_reserved)
    }

    /// Allocated addresses, reserved ones included (upstream's "in use").
    pub fn in_use(&self) -> usize {
        self.allocations.iter().filter(|a| a.is_some()).count()
    }

    /// Allocated addresses other than Windows-reserved ones.
    pub fn in_use_by_workloads(&self) -> usize {
        (0..self.allocations.len())
            .filter_map(|o| self.attr_of(o))
            .filter(|a| !Self::is_windows_reserved(a))
            .count()
    }

    /// Free addresses that auto-assign may hand out.
    pub fn num_free(&self, reserved: &Reservations) -> usize {
        if reserved.matches_whole(&self.cidr) {
            return 0;
        }
        if reserved.matches_some(&self.cidr) {
            return self
                .unallocated
                .iter()
                .filter(|o| !reserved.matches_ip(self.ordinal_to_ip(**o)))
                .count();
        }
        self.unallocated.len()
    }

    /// Every allocated address with its ordinal and attributes.
    pub fn allocated(&self) -> impl Iterator<Item = (usize, IpAddr, &AllocationAttribute)> + '_ {
        (0..self.allocations.len())
            .filter_map(move |o| self.attr_of(o).map(|a| (o, self.ordinal_to_ip(o), a)))
    }

    pub fn attributes_for(&self, ip: IpAddr) -> Option<&AllocationAttribute> {
        self.attr_of(self.ip_to_ordinal(ip)?)
    }

    /// The block sequence number at the time `ord` was allocated (0 if unknown).
    pub fn sequence_number_for(&self, ord: usize) -> u64 {
        self.sequence_number_for_allocation
            .get(&ord.to_string())
            .copied()
            .unwrap_or(0)
    }

    pub fn ips_by_handle(&self, handle: &str) -> Vec<IpAddr> {
        self.allocated()
            .filter(|(_, _, a)| a.handle() == Some(handle))
            .map(|(_, ip, _)| ip)
            .collect()
    }

    pub fn count_by_handle(&self, handle: &str) -> usize {
        self.allocated()
            .filter(|(_, _, a)| a.handle() == Some(handle))
            .count()
    }

    /// Every handle with at least one allocation here.
    pub fn handles(&self) -> BTreeSet<String> {
        self.allocated()
            .filter_map(|(_, _, a)| a.handle().map(str::to_string))
            .collect()
    }

    fn find_or_add_attribute(
        &mut self,
        handle: Option<&str>,
        attrs: &BTreeMap<String, String>,
    ) -> usize {
        if let Some(i) = self.attributes.iter().position(|a| {
            a.handle_id.as_deref() == handle && a.secondary == *attrs && a.extra.is_empty()
        }) {
            return i;
        }
        self.attributes.push(AllocationAttribute {
            handle_id: handle.map(str::to_string),
            secondary: attrs.clone(),
            extra: Map::new(),
        });
        self.attributes.len() - 1
    }

    fn record(&mut self, ord: usize, attr: usize) {
        self.allocations[ord] = Some(attr);
        self.sequence_number_for_allocation
            .insert(ord.to_string(), self.sequence_number);
    }

    /// Takes up to `num` free addresses from the front of the free list,
    /// skipping (and keeping in place) reserved ones.
    pub fn auto_assign(
        &mut self,
        num: usize,
        handle: Option<&str>,
        attrs: &BTreeMap<String, String>,
        reserved: &Reservations,
    ) -> Vec<IpAddr> {
        let mut taken = Vec::new();
        let mut keep = Vec::with_capacity(self.unallocated.len());
        let free = std::mem::take(&mut self.unallocated);
        let mut attr = None;
        for ord in free {
            if taken.len() >= num || reserved.matches_ip(self.ordinal_to_ip(ord)) {
                keep.push(ord);
                continue;
            }
            let a = *attr.get_or_insert_with(|| self.find_or_add_attribute(handle, attrs));
            self.record(ord, a);
            taken.push(self.ordinal_to_ip(ord));
        }
        self.unallocated = keep;
        taken
    }

    /// Allocates one specific address. `Err(false)` if it is outside the
    /// block, `Err(true)` if it is already allocated.
    pub fn assign(
        &mut self,
        ip: IpAddr,
        handle: Option<&str>,
        attrs: &BTreeMap<String, String>,
    ) -> Result<(), bool> {
        let ord = self.ip_to_ordinal(ip).ok_or(false)?;
        if self.allocations[ord].is_some() {
            return Err(true);
        }
        let a = self.find_or_add_attribute(handle, attrs);
        self.record(ord, a);
        self.unallocated.retain(|o| *o != ord);
        Ok(())
    }

    /// Releases one address if it is allocated and (when given) still carries
    /// `handle` and `sequence`. Call [`Self::compact_attributes`] afterwards.
    pub fn release_one(
        &mut self,
        ip: IpAddr,
        handle: Option<&str>,
        sequence: Option<u64>,
    ) -> Release {
        let Some(ord) = self.ip_to_ordinal(ip) else {
            return Release::OutsideBlock;
        };
        let Some(attr) = self.attr_of(ord) else {
            return Release::NotAllocated;
        };
        let stored = attr.handle().map(str::to_string);
        if let Some(want) = handle {
            if stored.as_deref() != Some(sanitize_handle(want)) {
                return Release::Mismatch(format!(
                    "allocated to handle {} instead of {want}",
                    stored.as_deref().unwrap_or("<none>")
                ));
            }
        }
        if let Some(seq) = sequence {
            let cur = self.sequence_number_for(ord);
            if cur != seq {
                return Release::Mismatch(format!(
                    "sequence number is {cur} instead of {seq} (re-allocated since)"
                ));
            }
        }
        self.allocations[ord] = None;
        self.unallocated.push(ord);
        self.sequence_number_for_allocation.remove(&ord.to_string());
        Release::Released { handle: stored }
    }

    /// Releases every address of `handle` (lowest ordinal first).
    pub fn release_by_handle(&mut self, handle: &str) -> Vec<IpAddr> {
        let ips = self.ips_by_handle(handle);
        for ip in &ips {
            self.release_one(*ip, None, None);
        }
        self.compact_attributes();
        ips
    }

    /// Drops attributes no allocation refers to any more, keeping the order
    /// of the others and renumbering the allocations.
    pub fn compact_attributes(&mut self) {
        let used: BTreeSet<usize> = self.allocations.iter().flatten().copied().collect();
        if used.len() == self.attributes.len() {
            return;
        }
        let mut remap = vec![None; self.attributes.len()];
        let mut kept = Vec::with_capacity(used.len());
        for (i, a) in std::mem::take(&mut self.attributes).into_iter().enumerate() {
            if used.contains(&i) {
                remap[i] = Some(kept.len());
                kept.push(a);
            }
        }
        self.attributes = kept;
        for slot in self.allocations.iter_mut().flatten() {
            *slot = remap[*slot].expect("used attribute kept");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn attrs(node: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(ATTR_NODE.to_string(), node.to_string())])
    }

    #[test]
    fn arithmetic() {
        let b = AllocationBlock::new(net("10.1.2.64/26"), None);
        assert_eq!(b.num_addresses(), 64);
        assert_eq!(b.ordinal_to_ip(0), ip("10.1.2.64"));
        assert_eq!(b.ordinal_to_ip(63), ip("10.1.2.127"));
        assert_eq!(b.ip_to_ordinal(ip("10.1.2.100")), Some(36));
        assert_eq!(b.ip_to_ordinal(ip("10.1.2.128")), None);
        assert_eq!(block_for_ip(ip("10.1.2.100"), 26), net("10.1.2.64/26"));
        assert_eq!(block_for_ip(ip("fd00::1:ff"), 122), net("fd00::1:c0/122"));
        let pool = net("10.64.0.0/16");
        assert_eq!(blocks_in(&pool, 26), 1024);
        assert_eq!(nth_block(&pool, 26, 5), net("10.64.1.64/26"));
        assert_eq!(block_index(&pool, 26, &net("10.64.1.64/26")), Some(5));
        assert_eq!(block_index(&pool, 26, &net("10.65.0.0/26")), None);
        assert_eq!(block_index(&pool, 26, &net("10.64.0.0/25")), None);
        let v6 = AllocationBlock::new(net("fd00::/122"), None);
        assert_eq!(v6.ordinal_to_ip(63), ip("fd00::3f"));
        assert_eq!(num_addresses(&net("::/0")), u128::MAX);
    }

    #[test]
    fn block_order_visits_every_block_once() {
        let pool = net("10.0.0.0/22");
        let order: Vec<IpNet> = BlockOrder::for_host(&pool, 26, "node-a").collect();
        assert_eq!(order.len(), 16);
        let set: BTreeSet<IpNet> = order.iter().copied().collect();
        assert_eq!(set.len(), 16);
        let o = BlockOrder::for_host(&pool, 26, "node-a");
        for (i, b) in order.iter().enumerate() {
            assert_eq!(o.position(b), Some(i as u128));
        }
        // Deterministic per host; differs between (most) hosts.
        let again: Vec<IpNet> = BlockOrder::for_host(&pool, 26, "node-a").collect();
        assert_eq!(order, again);
        let starts: BTreeSet<IpNet> = (0..20)
            .map(|i| {
                BlockOrder::for_host(&pool, 26, &format!("node-{i}"))
                    .next()
                    .unwrap()
            })
            .collect();
        assert!(starts.len() > 5, "{starts:?}");
        assert_eq!(
            BlockOrder::sequential(&pool, 26).next(),
            Some(net("10.0.0.0/26"))
        );
    }

    #[test]
    fn assign_release_and_attributes() {
        let mut b = AllocationBlock::new(net("10.0.0.0/30"), Some(host_affinity("n1")));
        assert!(b.is_empty() && b.is_affine_to("n1"));
        let got = b.auto_assign(2, Some("h1"), &attrs("n1"), &Reservations::default());
        assert_eq!(got, vec![ip("10.0.0.0"), ip("10.0.0.1")]);
        assert_eq!(b.attributes.len(), 1);
        assert_eq!(b.allocations, vec![Some(0), Some(0), None, None]);
        assert_eq!(b.assign(ip("10.0.0.3"), Some("h2"), &attrs("n2")), Ok(()));
        assert_eq!(
            b.assign(ip("10.0.0.3"), Some("h2"), &attrs("n2")),
            Err(true)
        );
        assert_eq!(b.assign(ip("10.0.1.3"), None, &attrs("n2")), Err(false));
        assert_eq!(b.unallocated, vec![2]);
        assert_eq!(b.count_by_handle("h1"), 2);
        assert_eq!(
            b.handles(),
            BTreeSet::from(["h1".to_string(), "h2".to_string()])
        );
        // Wrong handle: left alone.
        assert!(matches!(
            b.release_one(ip("10.0.0.0"), Some("h2"), None),
            Release::Mismatch(_)
        ));
        assert!(matches!(
            b.release_one(ip("10.0.0.0"), None, Some(12345)),
            Release::Mismatch(_)
        ));
        let seq = b.sequence_number_for(0);
        assert_eq!(
            b.release_one(ip("10.0.0.0"), Some("h1"), Some(seq)),
            Release::Released {
                handle: Some("h1".into())
            }
        );
        assert_eq!(
            b.release_one(ip("10.0.0.0"), None, None),
            Release::NotAllocated
        );
        assert_eq!(
            b.release_one(ip("10.0.1.0"), None, None),
            Release::OutsideBlock
        );
        b.compact_attributes();
        assert_eq!(b.attributes.len(), 2);
        // Released ordinals go to the back of the free list.
        assert_eq!(b.unallocated, vec![2, 0]);
        assert_eq!(b.release_by_handle("h1"), vec![ip("10.0.0.1")]);
        assert_eq!(b.attributes.len(), 1);
        assert_eq!(b.allocations[3], Some(0));
        assert_eq!(b.attributes[0].handle_id.as_deref(), Some("h2"));
        assert!(!b.is_empty());
        b.release_by_handle("h2");
        assert!(b.is_empty() && b.attributes.is_empty());
        assert!(b.sequence_number_for_allocation.is_empty());
    }

    #[test]
    fn reserved_addresses_are_skipped_and_kept() {
        let mut b = AllocationBlock::new(net("10.0.0.0/29"), None);
        let r = Reservations::from_strings(["10.0.0.0/31", "10.0.0.4"]);
        assert_eq!(b.num_free(&r), 5);
        let got = b.auto_assign(3, None, &BTreeMap::new(), &r);
        assert_eq!(got, vec![ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.5")]);
        assert_eq!(b.unallocated, vec![0, 1, 4, 6, 7]);
        assert_eq!(b.num_free(&r), 2);
        let all = Reservations::from_strings(["10.0.0.0/24"]);
        assert_eq!(b.num_free(&all), 0);
    }

    #[test]
    fn windows_reserved_addresses_do_not_make_a_block_busy() {
        let mut b = AllocationBlock::new(net("10.0.0.0/30"), None);
        b.assign(
            ip("10.0.0.0"),
            Some(WINDOWS_RESERVED_HANDLE),
            &BTreeMap::new(),
        )
        .unwrap();
        assert!(b.is_empty());
        assert_eq!(b.in_use(), 1);
        assert_eq!(b.in_use_by_workloads(), 0);
    }

    #[test]
    fn json_shape_and_round_trip() {
        let mut b = AllocationBlock::new(net("10.0.0.0/30"), Some(host_affinity("n1")));
        b.sequence_number = 7;
        b.auto_assign(1, Some("h1"), &attrs("n1"), &Reservations::default());
        b.sequence_number += 1;
        let v = serde_json::to_value(&b).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "cidr",
                "affinity",
                "allocations",
                "unallocated",
                "attributes",
                "sequenceNumber",
                "sequenceNumberForAllocation",
                "deleted"
            ]
        );
        assert_eq!(
            v,
            serde_json::json!({
                "cidr": "10.0.0.0/30",
                "affinity": "host:n1",
                "allocations": [0, null, null, null],
                "unallocated": [1, 2, 3],
                "attributes": [{"handle_id": "h1", "secondary": {"node": "n1"}}],
                "sequenceNumber": 8,
                "sequenceNumberForAllocation": {"0": 7},
                "deleted": false
            })
        );
        let back: AllocationBlock = serde_json::from_value(v).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn decodes_upstream_variants() {
        // An old block: null attributes, no sequence numbers, hostAffinity and
        // strictAffinity fields (kept on write-back).
        let text = r#"{"cidr":"192.168.0.0/30","affinity":null,"allocations":[null,null,null,null],
            "unallocated":[0,1,2,3],"attributes":null,"deleted":false,
            "strictAffinity":false,"hostAffinity":"old"}"#;
        let b: AllocationBlock = serde_json::from_str(text).unwrap();
        assert!(b.attributes.is_empty() && b.affinity.is_none());
        assert_eq!(b.extra.get("hostAffinity"), Some(&Value::from("old")));
        let again = serde_json::to_value(&b).unwrap();
        assert_eq!(again["strictAffinity"], Value::from(false));
        // Attribute with a null secondary and an "alternate" field.
        let text = r#"{"cidr":"10.0.0.0/31","affinity":"host:a","allocations":[0,null],"unallocated":[1],
            "attributes":[{"handle_id":null,"secondary":null,"alternate":{"pod":"x"}}]}"#;
        let b: AllocationBlock = serde_json::from_str(text).unwrap();
        assert_eq!(b.attributes[0].handle(), None);
        assert!(b.attributes[0].extra.contains_key("alternate"));
        // Inconsistent blocks are refused.
        for bad in [
            r#"{"cidr":"10.0.0.0/31","allocations":[0],"unallocated":[],"attributes":[]}"#,
            r#"{"cidr":"10.0.0.0/31","allocations":[0,null],"unallocated":[1],"attributes":[]}"#,
            r#"{"cidr":"10.0.0.0/31","allocations":[null,null],"unallocated":[5],"attributes":[]}"#,
            r#"{"cidr":"nope","allocations":[],"unallocated":[],"attributes":[]}"#,
        ] {
            assert!(
                serde_json::from_str::<AllocationBlock>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
