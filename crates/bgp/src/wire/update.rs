//! UPDATE (RFC 4271 §4.3) normalised: IPv4 routes in the body and routes in
//! MP_REACH/MP_UNREACH (RFC 4760) become one list of announcements and one
//! of withdrawals; End-of-RIB markers (RFC 4724) are recognised.

use super::attrs::{self, PathAttributes};
use super::nlri::{self, Nlri};
use super::notification::{update_error, Notification};
use super::{header, Codec, EncodeError, Family, Reader, HEADER_LEN};

/// One UPDATE, normalised: IPv4 body NLRI/withdrawn and MP_REACH/MP_UNREACH
/// (RFC 4760) merged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    pub withdrawn: Vec<Nlri>,
    pub announced: Vec<Nlri>,
    /// Meaningful only when `announced` is non-empty (default otherwise).
    pub attrs: PathAttributes,
    /// RFC 4724 End-of-RIB marker (IPv4: an empty UPDATE; IPv6: MP_UNREACH
    /// with no NLRI).
    pub end_of_rib: Option<Family>,
    /// RFC 7606: attributes were malformed; `announced` must be handled as
    /// withdrawn.
    pub treat_as_withdraw: bool,
}

impl Update {
    /// An End-of-RIB marker for `family`.
    pub fn end_of_rib(family: Family) -> Self {
        Update {
            end_of_rib: Some(family),
            ..Update::default()
        }
    }
}

fn invalid_network_field() -> Notification {
    Notification::update_error(update_error::INVALID_NETWORK_FIELD, Vec::new())
}

/// Decodes an UPDATE body (after the header).
pub(crate) fn decode(codec: &Codec, body: &[u8]) -> Result<Update, Notification> {
    let mut r = Reader::new(body);
    let malformed =
        || Notification::update_error(update_error::MALFORMED_ATTRIBUTE_LIST, Vec::new());
    let withdrawn_len = usize::from(r.u16().ok_or_else(malformed)?);
    let withdrawn = r.take(withdrawn_len).ok_or_else(malformed)?;
    let attrs_len = usize::from(r.u16().ok_or_else(malformed)?);
    let attr_bytes = r.take(attrs_len).ok_or_else(malformed)?;
    let body_nlri = r.rest();

    let v4 = Family::Ipv4Unicast;
    let mut u = Update::default();
    nlri::decode_all(withdrawn, v4, codec.rx_path_id(v4), &mut u.withdrawn)
        .map_err(|_| invalid_network_field())?;
    let mut d = attrs::decode(codec, attr_bytes)?;
    nlri::decode_all(body_nlri, v4, codec.rx_path_id(v4), &mut u.announced)
        .map_err(|_| invalid_network_field())?;
    let has_body_nlri = !u.announced.is_empty();

    if let Some((_, routes)) = d.reach.take() {
        u.announced.extend(routes);
    }
    let mp_eor = match d.unreach.take() {
        Some((family, routes)) if routes.is_empty() => Some(family),
        Some((_, routes)) => {
            u.withdrawn.extend(routes);
            None
        }
        None => None,
    };
    if body.len() == 4 {
        u.end_of_rib = Some(v4);
    } else if u.announced.is_empty() && u.withdrawn.is_empty() {
        u.end_of_rib = mp_eor;
    }
    if u.announced.is_empty() {
        return Ok(u);
    }
    finish_attributes(&mut u, d, has_body_nlri);
    Ok(u)
}

/// Settles the next hop and the well-known mandatory checks (RFC 7606 §3(d):
/// missing ones mean treat-as-withdraw). NEXT_HOP counts only for body
/// NLRI; without them it is ignored, malformed or not (RFC 4760 §3).
fn finish_attributes(u: &mut Update, d: attrs::Decoded, has_body_nlri: bool) {
    let mut attrs = d.attrs;
    let mut withdraw = d.treat_as_withdraw || !d.has_origin || !d.has_as_path;
    if has_body_nlri {
        withdraw |= d.bad_next_hop || attrs.next_hop.is_none();
    } else {
        attrs.next_hop = d.mp_ipv4_next_hop;
    }
    u.attrs = attrs;
    u.treat_as_withdraw = withdraw;
}

/// Encodes `u` as as many UPDATE messages as it takes. Order: IPv4, then
/// IPv6, each withdrawals before announcements, End-of-RIB last. An empty
/// `Update` without `end_of_rib` writes nothing (an empty UPDATE would be
/// an End-of-RIB).
pub(crate) fn encode(codec: &Codec, u: &Update, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut result = Ok(());
    for family in Family::ALL {
        let pick = |list: &[Nlri]| -> Vec<Nlri> {
            list.iter()
                .filter(|n| n.family() == family)
                .copied()
                .collect()
        };
        let withdrawn = pick(&u.withdrawn);
        let mut announced = pick(&u.announced);
        let layout = if announced.is_empty() {
            Ok(Layout::withdraw_only(codec, family))
        } else {
            Layout::new(codec, family, &u.attrs)
        };
        let layout = layout.unwrap_or_else(|e| {
            result = Err(e);
            announced.clear();
            Layout::withdraw_only(codec, family)
        });
        if let Err(e) = layout.encode(&withdrawn, &announced, out) {
            result = Err(e);
        }
    }
    if let Some(family) = u.end_of_rib {
        encode_end_of_rib(family, out);
    }
    result
}

fn encode_end_of_rib(family: Family, out: &mut Vec<u8>) {
    header::write(out, header::UPDATE, |b| match family {
        Family::Ipv4Unicast => b.extend_from_slice(&[0, 0, 0, 0]),
        Family::Ipv6Unicast => {
            b.extend_from_slice(&[0, 0, 0, 6]);
            let [a0, a1] = family.afi().to_be_bytes();
            attrs::put(
                b,
                attrs::OPTIONAL,
                attrs::MP_UNREACH,
                &[a0, a1, family.safi()],
            );
        }
    });
}

/// How one family's routes are laid out in UPDATE messages: IPv4 in the
/// body, IPv6 in MP_UNREACH/MP_REACH (as the first attributes, RFC 7606
/// §5.1), sized against the negotiated limit.
struct Layout {
    family: Family,
    path_id: bool,
    max: usize,
    /// The other attributes, encoded once for all messages.
    attrs: Vec<u8>,
    /// The MP_REACH next-hop field (IPv6 only).
    next_hop: Vec<u8>,
}

/// MP_* attribute header with Extended Length (4) plus AFI/SAFI (3).
const MP_UNREACH_OVERHEAD: usize = 7;
/// Of which MP_REACH adds the next-hop length octet and the reserved one.
const MP_REACH_OVERHEAD: usize = 9;

impl Layout {
    fn new(codec: &Codec, family: Family, a: &PathAttributes) -> Result<Layout, EncodeError> {
        let mut layout = Layout::withdraw_only(codec, family);
        match family {
            Family::Ipv4Unicast if a.next_hop.is_none() => {
                return Err(EncodeError::MissingNextHop(family))
            }
            Family::Ipv4Unicast => {}
            Family::Ipv6Unicast => {
                let nh = a.mp_next_hop.ok_or(EncodeError::MissingNextHop(family))?;
                layout.next_hop.extend_from_slice(&nh.global.octets());
                if let Some(ll) = nh.link_local {
                    layout.next_hop.extend_from_slice(&ll.octets());
                }
            }
        }
        attrs::encode(codec, a, family == Family::Ipv4Unicast, &mut layout.attrs);
        // The widest NLRI must fit beside the attributes in an empty message.
        let widest =
            1 + usize::from(family.max_prefix_len()) / 8 + if layout.path_id { 4 } else { 0 };
        if HEADER_LEN + 4 + layout.announce_overhead() + widest > layout.max {
            return Err(EncodeError::AttributesTooLarge(layout.attrs.len()));
        }
        Ok(layout)
    }

    fn withdraw_only(codec: &Codec, family: Family) -> Layout {
        Layout {
            family,
            path_id: codec.tx_path_id(family),
            max: codec.max_message_len(),
            attrs: Vec::new(),
            next_hop: Vec::new(),
        }
    }

    fn mp(&self) -> bool {
        self.family == Family::Ipv6Unicast
    }

    fn withdraw_overhead(&self) -> usize {
        if self.mp() {
            MP_UNREACH_OVERHEAD
        } else {
            0
        }
    }

    fn announce_overhead(&self) -> usize {
        let mp = if self.mp() {
            MP_REACH_OVERHEAD + self.next_hop.len()
        } else {
            0
        };
        mp + self.attrs.len()
    }

    /// Greedy packing: withdrawals first, then announcements share the
    /// last withdrawal message if there is room.
    fn encode(
        &self,
        withdrawn: &[Nlri],
        announced: &[Nlri],
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let (mut wi, mut ai) = (0, 0);
        while wi < withdrawn.len() || ai < announced.len() {
            let mut room = self.max - HEADER_LEN - 4;
            let w0 = wi;
            wi = self.fill(withdrawn, wi, self.withdraw_overhead(), &mut room);
            let a0 = ai;
            if wi == withdrawn.len() {
                ai = self.fill(announced, ai, self.announce_overhead(), &mut room);
            }
            if (w0, a0) == (wi, ai) {
                // Cannot happen after Layout::new's check; never loop forever.
                return Err(EncodeError::AttributesTooLarge(self.attrs.len()));
            }
            self.message(&withdrawn[w0..wi], &announced[a0..ai], out);
        }
        Ok(())
    }

    /// Takes routes from `from` while they fit in `room` after `overhead`
    /// (paid only if at least one route goes in); returns the next index.
    fn fill(&self, routes: &[Nlri], from: usize, overhead: usize, room: &mut usize) -> usize {
        let mut i = from;
        let Some(first) = routes.get(i) else { return i };
        if *room < overhead + first.wire_len(self.path_id) {
            return i;
        }
        *room -= overhead;
        while let Some(n) = routes.get(i) {
            let len = n.wire_len(self.path_id);
            if len > *room {
                break;
            }
            *room -= len;
            i += 1;
        }
        i
    }

    fn message(&self, withdrawn: &[Nlri], announced: &[Nlri], out: &mut Vec<u8>) {
        header::write(out, header::UPDATE, |b| {
            if self.mp() {
                self.mp_body(withdrawn, announced, b);
            } else {
                self.body(withdrawn, announced, b);
            }
        });
    }

    fn body(&self, withdrawn: &[Nlri], announced: &[Nlri], b: &mut Vec<u8>) {
        let wlen: usize = withdrawn.iter().map(|n| n.wire_len(self.path_id)).sum();
        b.extend_from_slice(&(wlen as u16).to_be_bytes());
        withdrawn.iter().for_each(|n| n.encode(self.path_id, b));
        if announced.is_empty() {
            b.extend_from_slice(&[0, 0]);
            return;
        }
        b.extend_from_slice(&(self.attrs.len() as u16).to_be_bytes());
        b.extend_from_slice(&self.attrs);
        announced.iter().for_each(|n| n.encode(self.path_id, b));
    }

    fn mp_body(&self, withdrawn: &[Nlri], announced: &[Nlri], b: &mut Vec<u8>) {
        b.extend_from_slice(&[0, 0, 0, 0]);
        let start = b.len();
        let [a0, a1] = self.family.afi().to_be_bytes();
        let safi = self.family.safi();
        if !withdrawn.is_empty() {
            let mut v = vec![a0, a1, safi];
            withdrawn
                .iter()
                .for_each(|n| n.encode(self.path_id, &mut v));
            put_mp(b, attrs::MP_UNREACH, &v);
        }
        if !announced.is_empty() {
            let mut v = vec![a0, a1, safi, self.next_hop.len() as u8];
            v.extend_from_slice(&self.next_hop);
            v.push(0);
            announced
                .iter()
                .for_each(|n| n.encode(self.path_id, &mut v));
            put_mp(b, attrs::MP_REACH, &v);
            b.extend_from_slice(&self.attrs);
        }
        let len = (b.len() - start) as u16;
        b[start - 2..start].copy_from_slice(&len.to_be_bytes());
    }
}

/// MP_* always with Extended Length, so the overhead is fixed.
fn put_mp(b: &mut Vec<u8>, code: u8, value: &[u8]) {
    b.extend_from_slice(&[attrs::OPTIONAL | attrs::EXTENDED, code]);
    b.extend_from_slice(&(value.len() as u16).to_be_bytes());
    b.extend_from_slice(value);
}
