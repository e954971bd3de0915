//! Path attributes (RFC 4271 §5, 1997, 4456, 4760, 6793, 8092) with RFC 7606
//! error handling: each malformation costs what that RFC says, from cheapest
//! to dearest: the attribute is discarded, the UPDATE's routes are treated as
//! withdrawn, or the session is reset.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::aspath::{self, Confed};
use super::nlri::{self, Nlri};
use super::notification::{update_error, Notification};
use super::{Codec, Family, Reader, AS_TRANS};

pub use super::aspath::AsSegment;

/// The attributes of an UPDATE's announced routes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PathAttributes {
    pub origin: Origin,
    /// Always 4-octet AS numbers, whatever the session negotiated.
    pub as_path: Vec<AsSegment>,
    /// The IPv4 next hop: NEXT_HOP for body NLRI, or a 4-octet MP_REACH one.
    pub next_hop: Option<Ipv4Addr>,
    /// The IPv6 next hop from MP_REACH (global, optional link-local).
    pub mp_next_hop: Option<MpNextHop>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<(u32, Ipv4Addr)>,
    pub communities: Vec<u32>,
    pub large_communities: Vec<[u32; 3]>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    /// Unknown optional transitive attributes, passed on with the Partial
    /// bit set (RFC 4271 §5). Unknown non-transitive ones are dropped.
    pub other: Vec<RawAttribute>,
}

/// ORIGIN (RFC 4271 §5.1.1); lower is preferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Origin {
    #[default]
    Igp,
    Egp,
    Incomplete,
}

/// The next hop of IPv6 routes: a global address and, when the peer is on
/// the same link, its link-local one (RFC 2545 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MpNextHop {
    pub global: Ipv6Addr,
    pub link_local: Option<Ipv6Addr>,
}

/// An attribute kept as bytes. `flags` never has the Extended Length bit:
/// that is chosen again on encode.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawAttribute {
    pub flags: u8,
    pub code: u8,
    pub value: Vec<u8>,
}

impl PathAttributes {
    /// AS_PATH length as best-path selection counts it: an AS_SET counts 1.
    pub fn as_path_len(&self) -> usize {
        aspath::path_len(&self.as_path)
    }

    /// The leftmost AS, the neighbour that sent the route (when the path
    /// starts with a sequence).
    pub fn first_as(&self) -> Option<u32> {
        match self.as_path.first()? {
            AsSegment::Sequence(a) => a.first().copied(),
            AsSegment::Set(_) => None,
        }
    }

    /// Whether `asn` is anywhere in the path: loop detection.
    pub fn contains_as(&self, asn: u32) -> bool {
        self.count_as(asn) > 0
    }

    /// How often `asn` appears on the AS_PATH.
    pub fn count_as(&self, asn: u32) -> usize {
        self.as_path
            .iter()
            .map(|s| match s {
                AsSegment::Sequence(a) | AsSegment::Set(a) => {
                    a.iter().filter(|x| **x == asn).count()
                }
            })
            .sum()
    }
}

pub(crate) const OPTIONAL: u8 = 0x80;
pub(crate) const TRANSITIVE: u8 = 0x40;
pub(crate) const PARTIAL: u8 = 0x20;
pub(crate) const EXTENDED: u8 = 0x10;

pub(crate) const ORIGIN: u8 = 1;
pub(crate) const AS_PATH: u8 = 2;
pub(crate) const NEXT_HOP: u8 = 3;
pub(crate) const MED: u8 = 4;
pub(crate) const LOCAL_PREF: u8 = 5;
pub(crate) const ATOMIC_AGGREGATE: u8 = 6;
pub(crate) const AGGREGATOR: u8 = 7;
pub(crate) const COMMUNITIES: u8 = 8;
pub(crate) const ORIGINATOR_ID: u8 = 9;
pub(crate) const CLUSTER_LIST: u8 = 10;
pub(crate) const MP_REACH: u8 = 14;
pub(crate) const MP_UNREACH: u8 = 15;
pub(crate) const AS4_PATH: u8 = 17;
pub(crate) const AS4_AGGREGATOR: u8 = 18;
pub(crate) const LARGE_COMMUNITIES: u8 = 32;

/// The Optional and Transitive bits each known attribute must carry.
fn expected_flags(code: u8) -> Option<u8> {
    match code {
        ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF | ATOMIC_AGGREGATE => Some(TRANSITIVE),
        MED | ORIGINATOR_ID | CLUSTER_LIST | MP_REACH | MP_UNREACH => Some(OPTIONAL),
        AGGREGATOR | COMMUNITIES | AS4_PATH | AS4_AGGREGATOR | LARGE_COMMUNITIES => {
            Some(OPTIONAL | TRANSITIVE)
        }
        _ => None,
    }
}

/// One attribute as framed on the wire; `whole` is what a NOTIFICATION quotes.
#[derive(Debug, Clone, Copy)]
struct Attr<'a> {
    flags: u8,
    code: u8,
    value: &'a [u8],
    whole: &'a [u8],
}

/// The attribute section of one UPDATE, decoded but not yet combined with
/// the body's NLRI (that is `update::decode`'s job).
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub attrs: PathAttributes,
    pub reach: Option<(Family, Vec<Nlri>)>,
    pub unreach: Option<(Family, Vec<Nlri>)>,
    /// The 4-octet next hop MP_REACH gave IPv4 routes.
    pub mp_ipv4_next_hop: Option<Ipv4Addr>,
    pub treat_as_withdraw: bool,
    /// NEXT_HOP was malformed: that matters only if body NLRI exist.
    pub bad_next_hop: bool,
    pub has_origin: bool,
    pub has_as_path: bool,
    as4_path: Option<Vec<AsSegment>>,
    as4_aggregator: Option<(u32, Ipv4Addr)>,
}

/// What a malformed attribute costs (RFC 7606 §2, §7).
enum Fault {
    Discard,
    Withdraw,
    BadNextHop,
    Reset(Notification),
}

fn fault_for(a: &Attr<'_>) -> Fault {
    match a.code {
        ATOMIC_AGGREGATE | AGGREGATOR | AS4_PATH | AS4_AGGREGATOR => Fault::Discard,
        NEXT_HOP => Fault::BadNextHop,
        MP_REACH | MP_UNREACH => Fault::Reset(Notification::update_error(
            update_error::OPTIONAL_ATTRIBUTE_ERROR,
            a.whole.to_vec(),
        )),
        _ => Fault::Withdraw,
    }
}

/// Decodes the path attribute section of an UPDATE.
pub(crate) fn decode(codec: &Codec, bytes: &[u8]) -> Result<Decoded, Notification> {
    let mut d = Decoded::default();
    let mut seen = [false; 256];
    let mut r = Reader::new(bytes);
    while !r.is_empty() {
        let Some(a) = next_attribute(&mut r)? else {
            // RFC 7606 §4: the lengths disagree; the Total Path Attribute
            // Length still locates the NLRI.
            d.treat_as_withdraw = true;
            break;
        };
        if std::mem::replace(&mut seen[usize::from(a.code)], true) {
            // RFC 7606 §3(g): repeats are dropped, except MP_* (no way to
            // tell which NLRI are meant).
            if matches!(a.code, MP_REACH | MP_UNREACH) {
                return Err(malformed_list());
            }
            continue;
        }
        let ok = expected_flags(a.code).is_none_or(|f| a.flags & (OPTIONAL | TRANSITIVE) == f);
        if !ok || decode_one(codec, &a, &mut d)?.is_none() {
            match fault_for(&a) {
                Fault::Discard => {}
                Fault::Withdraw => d.treat_as_withdraw = true,
                Fault::BadNextHop => d.bad_next_hop = true,
                Fault::Reset(n) => return Err(n),
            }
        }
    }
    d.has_origin = seen[usize::from(ORIGIN)];
    d.has_as_path = seen[usize::from(AS_PATH)];
    if !codec.four_octet_as {
        merge_as4(&mut d);
    }
    Ok(d)
}

fn malformed_list() -> Notification {
    Notification::update_error(update_error::MALFORMED_ATTRIBUTE_LIST, Vec::new())
}

/// The next attribute, or None when its header or value overruns the
/// section (treat-as-withdraw), unless it is MP_* (session reset).
fn next_attribute<'a>(r: &mut Reader<'a>) -> Result<Option<Attr<'a>>, Notification> {
    let start = r.rest();
    let code = start.get(1).copied();
    let framed = (|| {
        let flags = r.u8()?;
        let code = r.u8()?;
        let len = if flags & EXTENDED != 0 {
            r.u16()?.into()
        } else {
            r.u8()?.into()
        };
        let value = r.take(len)?;
        let whole = &start[..start.len() - r.rest().len()];
        Some(Attr {
            flags,
            code,
            value,
            whole,
        })
    })();
    match (framed, code) {
        (Some(a), _) => Ok(Some(a)),
        (None, Some(MP_REACH | MP_UNREACH)) => Err(malformed_list()),
        (None, _) => Ok(None),
    }
}

/// Stores one attribute in `d`. Ok(None) when it is malformed (the caller
/// charges the fault); Err for an unrecognised well-known attribute.
fn decode_one(codec: &Codec, a: &Attr<'_>, d: &mut Decoded) -> Result<Option<()>, Notification> {
    let v = a.value;
    let p = &mut d.attrs;
    let width = if codec.four_octet_as { 4 } else { 2 };
    Ok(match a.code {
        ORIGIN => decode_origin(v).map(|o| p.origin = o),
        AS_PATH => aspath::decode(v, width, Confed::Reject).map(|s| p.as_path = s),
        NEXT_HOP => ipv4(v).map(|n| p.next_hop = Some(n)),
        MED => u32_of(v).map(|m| p.med = Some(m)),
        LOCAL_PREF => u32_of(v).map(|l| p.local_pref = Some(l)),
        ATOMIC_AGGREGATE => v.is_empty().then(|| p.atomic_aggregate = true),
        AGGREGATOR => aggregator(v, width).map(|g| p.aggregator = Some(g)),
        COMMUNITIES => words(v, 4).map(|c| p.communities = c.map(u32_be).collect()),
        LARGE_COMMUNITIES => words(v, 12).map(|c| p.large_communities = c.map(large).collect()),
        ORIGINATOR_ID => ipv4(v).map(|o| p.originator_id = Some(o)),
        CLUSTER_LIST => words(v, 4).map(|c| p.cluster_list = c.map(|w| u32_be(w).into()).collect()),
        MP_REACH => decode_mp_reach(codec, v, d),
        MP_UNREACH => decode_mp_unreach(codec, v, d),
        // RFC 6793 §6: between two 4-octet speakers these must not appear.
        AS4_PATH if codec.four_octet_as => Some(()),
        AS4_AGGREGATOR if codec.four_octet_as => Some(()),
        AS4_PATH => decode_as4_path(v).map(|s| d.as4_path = Some(s)),
        AS4_AGGREGATOR => aggregator(v, 4).map(|g| d.as4_aggregator = Some(g)),
        _ if a.flags & OPTIONAL == 0 => {
            let data = a.whole.to_vec();
            return Err(Notification::update_error(
                update_error::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                data,
            ));
        }
        _ if a.flags & TRANSITIVE != 0 => {
            let flags = a.flags & (OPTIONAL | TRANSITIVE | PARTIAL);
            p.other.push(RawAttribute {
                flags,
                code: a.code,
                value: v.to_vec(),
            });
            Some(())
        }
        _ => Some(()),
    })
}

fn decode_origin(v: &[u8]) -> Option<Origin> {
    match v {
        [0] => Some(Origin::Igp),
        [1] => Some(Origin::Egp),
        [2] => Some(Origin::Incomplete),
        _ => None,
    }
}

fn decode_as4_path(v: &[u8]) -> Option<Vec<AsSegment>> {
    // RFC 6793 §6: too short to hold one AS is malformed.
    if v.len() < 6 {
        return None;
    }
    aspath::decode(v, 4, Confed::Skip)
}

fn u32_be(w: &[u8]) -> u32 {
    u32::from_be_bytes([w[0], w[1], w[2], w[3]])
}

fn u32_of(v: &[u8]) -> Option<u32> {
    (v.len() == 4).then(|| u32_be(v))
}

fn ipv4(v: &[u8]) -> Option<Ipv4Addr> {
    u32_of(v).map(Ipv4Addr::from)
}

fn large(w: &[u8]) -> [u32; 3] {
    [u32_be(&w[0..4]), u32_be(&w[4..8]), u32_be(&w[8..12])]
}

/// A non-empty list of `size`-byte items (RFC 7606 §7.8, §7.10; RFC 8092 §6).
fn words(v: &[u8], size: usize) -> Option<std::slice::ChunksExact<'_, u8>> {
    (!v.is_empty() && v.len().is_multiple_of(size)).then(|| v.chunks_exact(size))
}

/// AGGREGATOR: the AS in the session's width, then the router id.
fn aggregator(v: &[u8], width: usize) -> Option<(u32, Ipv4Addr)> {
    match (width, v) {
        (2, &[a, b, ref id @ ..]) if id.len() == 4 => {
            Some((u16::from_be_bytes([a, b]).into(), ipv4(id)?))
        }
        (4, v) if v.len() == 8 => Some((u32_be(v), ipv4(&v[4..])?)),
        _ => None,
    }
}

/// RFC 6793 §4.2.3: an AGGREGATOR naming a real 2-octet AS means the
/// aggregation happened after the path left 4-octet land, so the AS4_*
/// attributes are stale and ignored; otherwise they refine what we have.
fn merge_as4(d: &mut Decoded) {
    let (as4_path, as4_aggregator) = (d.as4_path.take(), d.as4_aggregator.take());
    match d.attrs.aggregator {
        Some((asn, _)) if asn != u32::from(AS_TRANS) => return,
        Some(_) => d.attrs.aggregator = as4_aggregator.or(d.attrs.aggregator),
        None => {}
    }
    if let Some(as4) = as4_path {
        d.attrs.as_path = aspath::merge(&d.attrs.as_path, as4);
    }
}

/// MP_REACH_NLRI (RFC 4760 §3). Families we do not speak are skipped whole;
/// a next hop of the wrong size or bad NLRI is malformed (session reset).
fn decode_mp_reach(codec: &Codec, v: &[u8], d: &mut Decoded) -> Option<()> {
    let mut r = Reader::new(v);
    let (afi, safi) = (r.u16()?, r.u8()?);
    let nh_len = usize::from(r.u8()?);
    let nh = r.take(nh_len)?;
    r.u8()?; // reserved (was the SNPA count)
    let Some(family) = Family::from_afi_safi(afi, safi) else {
        return Some(());
    };
    match (family, nh.len()) {
        (Family::Ipv4Unicast, 4) => d.mp_ipv4_next_hop = ipv4(nh),
        (_, 16 | 32) => d.attrs.mp_next_hop = Some(mp_next_hop(nh)),
        _ => return None,
    }
    let mut routes = Vec::new();
    nlri::decode_all(r.rest(), family, codec.rx_path_id(family), &mut routes).ok()?;
    d.reach = Some((family, routes));
    Some(())
}

fn mp_next_hop(nh: &[u8]) -> MpNextHop {
    let addr = |b: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(b).unwrap_or_default());
    MpNextHop {
        global: addr(&nh[..16]),
        link_local: nh.get(16..32).map(addr),
    }
}

/// MP_UNREACH_NLRI (RFC 4760 §4); no NLRI at all is an End-of-RIB marker.
fn decode_mp_unreach(codec: &Codec, v: &[u8], d: &mut Decoded) -> Option<()> {
    let mut r = Reader::new(v);
    let (afi, safi) = (r.u16()?, r.u8()?);
    let Some(family) = Family::from_afi_safi(afi, safi) else {
        return Some(());
    };
    let mut routes = Vec::new();
    nlri::decode_all(r.rest(), family, codec.rx_path_id(family), &mut routes).ok()?;
    d.unreach = Some((family, routes));
    Some(())
}

/// Appends one attribute, choosing the Extended Length bit when needed.
/// Values past 65535 bytes are cut; such an UPDATE cannot be sent anyway
/// and the caller's size check catches it.
pub(crate) fn put(out: &mut Vec<u8>, flags: u8, code: u8, value: &[u8]) {
    let value = &value[..value.len().min(0xffff)];
    if value.len() > 255 {
        out.extend_from_slice(&[flags | EXTENDED, code]);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&[flags & !EXTENDED, code, value.len() as u8]);
    }
    out.extend_from_slice(value);
}

/// Encodes every attribute but MP_REACH/MP_UNREACH, in type-code order.
/// NEXT_HOP only goes with body (IPv4) NLRI (RFC 4760 §3).
pub(crate) fn encode(codec: &Codec, p: &PathAttributes, with_next_hop: bool, out: &mut Vec<u8>) {
    let wk = TRANSITIVE;
    let ot = OPTIONAL | TRANSITIVE;
    put(out, wk, ORIGIN, &[p.origin as u8]);
    encode_as_path(codec, p, out);
    if let Some(nh) = p.next_hop.filter(|_| with_next_hop) {
        put(out, wk, NEXT_HOP, &nh.octets());
    }
    if let Some(med) = p.med {
        put(out, OPTIONAL, MED, &med.to_be_bytes());
    }
    if let Some(lp) = p.local_pref {
        put(out, wk, LOCAL_PREF, &lp.to_be_bytes());
    }
    if p.atomic_aggregate {
        put(out, wk, ATOMIC_AGGREGATE, &[]);
    }
    encode_aggregator(codec, p, out);
    put_list(
        out,
        ot,
        COMMUNITIES,
        p.communities.iter().map(|c| c.to_be_bytes()),
    );
    if let Some(id) = p.originator_id {
        put(out, OPTIONAL, ORIGINATOR_ID, &id.octets());
    }
    put_list(
        out,
        OPTIONAL,
        CLUSTER_LIST,
        p.cluster_list.iter().map(|c| c.octets()),
    );
    encode_as4(codec, p, out);
    let large = p.large_communities.iter().map(|l| {
        let mut b = [0u8; 12];
        l.iter()
            .zip(b.chunks_exact_mut(4))
            .for_each(|(w, c)| c.copy_from_slice(&w.to_be_bytes()));
        b
    });
    put_list(out, ot, LARGE_COMMUNITIES, large);
    encode_other(p, out);
}

/// A list attribute, left out when empty (an empty one is malformed).
fn put_list<const N: usize>(
    out: &mut Vec<u8>,
    flags: u8,
    code: u8,
    items: impl Iterator<Item = [u8; N]>,
) {
    let value: Vec<u8> = items.flatten().collect();
    if !value.is_empty() {
        put(out, flags, code, &value);
    }
}

fn encode_as_path(codec: &Codec, p: &PathAttributes, out: &mut Vec<u8>) {
    let mut v = Vec::new();
    aspath::encode(&p.as_path, if codec.four_octet_as { 4 } else { 2 }, &mut v);
    put(out, TRANSITIVE, AS_PATH, &v);
}

fn encode_aggregator(codec: &Codec, p: &PathAttributes, out: &mut Vec<u8>) {
    let Some((asn, id)) = p.aggregator else {
        return;
    };
    let mut v = Vec::with_capacity(8);
    if codec.four_octet_as {
        v.extend_from_slice(&asn.to_be_bytes());
    } else {
        v.extend_from_slice(&aspath::two_octet(asn).to_be_bytes());
    }
    v.extend_from_slice(&id.octets());
    put(out, OPTIONAL | TRANSITIVE, AGGREGATOR, &v);
}

/// On a 2-octet session, the 4-octet truth travels in AS4_PATH and
/// AS4_AGGREGATOR, sent only when some AS does not fit (RFC 6793 §4.2.2).
fn encode_as4(codec: &Codec, p: &PathAttributes, out: &mut Vec<u8>) {
    if codec.four_octet_as {
        return;
    }
    if aspath::needs_as4(&p.as_path) {
        let mut v = Vec::new();
        aspath::encode(&p.as_path, 4, &mut v);
        put(out, OPTIONAL | TRANSITIVE, AS4_PATH, &v);
    }
    if let Some((asn, id)) = p.aggregator.filter(|(asn, _)| *asn > 0xffff) {
        let mut v = asn.to_be_bytes().to_vec();
        v.extend_from_slice(&id.octets());
        put(out, OPTIONAL | TRANSITIVE, AS4_AGGREGATOR, &v);
    }
}

/// Unknown attributes go out once each, optional transitive with Partial
/// set (we did not understand them); codes we encode ourselves are skipped.
fn encode_other(p: &PathAttributes, out: &mut Vec<u8>) {
    let mut sent = [false; 256];
    for raw in &p.other {
        let code = usize::from(raw.code);
        if expected_flags(raw.code).is_some() || std::mem::replace(&mut sent[code], true) {
            continue;
        }
        put(out, OPTIONAL | TRANSITIVE | PARTIAL, raw.code, &raw.value);
    }
}
