//! The BGP-4 wire codec: bytes to [`Message`]s and back.
//!
//! Decoding is sans-IO and incremental: [`Codec::decode`] looks at the front of
//! a receive buffer and says "not a whole message yet", "here is one message and
//! how many bytes it used", or "send this NOTIFICATION and close". Encoding
//! appends whole messages to a send buffer, splitting a large [`Update`] over as
//! many UPDATE messages as the negotiated size limit needs.
//!
//! What a session negotiated in its OPEN exchange (4-octet AS numbers, extended
//! messages, add-path per family and direction) changes the wire format, so it
//! lives in [`Codec`]; [`Codec::negotiate`] derives it from the two OPENs.
//!
//! Malformed input never panics and never makes the decoder allocate more than
//! the input could hold. UPDATE errors follow RFC 7606: most malformed
//! attributes make the UPDATE "treat-as-withdraw" ([`Update::treat_as_withdraw`])
//! or are discarded, and only what makes the NLRI unparseable resets the session.

mod aspath;
mod attrs;
mod header;
mod nlri;
mod notification;
mod open;
mod update;

#[cfg(test)]
mod tests;

pub use attrs::{AsSegment, MpNextHop, Origin, PathAttributes, RawAttribute};
pub use nlri::Nlri;
pub use notification::{cease, fsm_error, header_error, open_error, update_error, Notification};
pub use open::{AddPathMode, Capability, Open};
pub use update::Update;

/// Length of the fixed message header: marker (16), length (2), type (1).
pub const HEADER_LEN: usize = 19;
/// The largest message RFC 4271 allows.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The largest message once both sides advertised Extended Message (RFC 8654).
pub const MAX_EXTENDED_LEN: usize = 65535;
/// The 2-octet stand-in for a 4-octet AS number (RFC 6793).
pub const AS_TRANS: u16 = 23456;

/// The address families calico-node speaks: unicast IPv4 and IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// AFI 1, SAFI 1.
    Ipv4Unicast,
    /// AFI 2, SAFI 1.
    Ipv6Unicast,
}

impl Family {
    /// Both families, in AFI order.
    pub const ALL: [Family; 2] = [Family::Ipv4Unicast, Family::Ipv6Unicast];

    /// The IANA Address Family Identifier.
    pub fn afi(self) -> u16 {
        match self {
            Family::Ipv4Unicast => 1,
            Family::Ipv6Unicast => 2,
        }
    }

    /// The Subsequent Address Family Identifier (always unicast here).
    pub fn safi(self) -> u8 {
        1
    }

    /// The family for an AFI/SAFI pair, if it is one we speak.
    pub fn from_afi_safi(afi: u16, safi: u8) -> Option<Family> {
        match (afi, safi) {
            (1, 1) => Some(Family::Ipv4Unicast),
            (2, 1) => Some(Family::Ipv6Unicast),
            _ => None,
        }
    }

    /// The family a prefix belongs to.
    pub fn of(prefix: &ipnet::IpNet) -> Family {
        match prefix {
            ipnet::IpNet::V4(_) => Family::Ipv4Unicast,
            ipnet::IpNet::V6(_) => Family::Ipv6Unicast,
        }
    }

    /// Longest prefix length an NLRI of this family may carry.
    pub(crate) fn max_prefix_len(self) -> u8 {
        match self {
            Family::Ipv4Unicast => 32,
            Family::Ipv6Unicast => 128,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::Ipv4Unicast => "ipv4 unicast",
            Family::Ipv6Unicast => "ipv6 unicast",
        })
    }
}

/// One BGP message (RFC 4271 §4, plus ROUTE-REFRESH from RFC 2918/7313).
///
/// Messages live only between the socket and the session, so boxing the
/// large `Update` would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    /// `subtype` is 0 (normal), 1 (BoRR) or 2 (EoRR) per RFC 7313; others are
    /// passed up so the session can ignore them as that RFC says.
    RouteRefresh {
        afi: u16,
        safi: u8,
        subtype: u8,
    },
}

/// Why [`Codec::encode_checked`] could not put everything on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The path attributes alone leave no room for a single NLRI in one message.
    #[error("path attributes of {0} bytes leave no room for NLRI in one message")]
    AttributesTooLarge(usize),
    /// Announcements need a next hop of their family: `next_hop` for IPv4,
    /// `mp_next_hop` for IPv6.
    #[error("{0} routes announced without a next hop")]
    MissingNextHop(Family),
    /// The OPEN (its capabilities) does not fit in 4096 bytes.
    #[error("OPEN of {0} bytes exceeds the 4096-byte limit")]
    OpenTooLarge(usize),
}

/// What was negotiated, which changes how messages decode/encode.
///
/// `add_path_rx` lists the families whose received NLRI carry a path id (we
/// said Receive and the peer said Send); `add_path_tx` those whose sent NLRI
/// must carry one (RFC 7911 §4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Codec {
    pub four_octet_as: bool,
    pub extended_message: bool,
    pub add_path_rx: Vec<Family>,
    pub add_path_tx: Vec<Family>,
}

impl Codec {
    /// The codec for a session whose OPENs were `local` (sent) and `remote`
    /// (received): each feature is on only when both sides advertised it.
    pub fn negotiate(local: &Open, remote: &Open) -> Codec {
        let both = |probe: fn(&Capability) -> bool| {
            local.capabilities.iter().any(probe) && remote.capabilities.iter().any(probe)
        };
        let mut codec = Codec {
            four_octet_as: both(|c| matches!(c, Capability::FourOctetAs(_))),
            extended_message: both(|c| matches!(c, Capability::ExtendedMessage)),
            ..Codec::default()
        };
        for family in Family::ALL {
            let ours = local.add_path_mode(family);
            let theirs = remote.add_path_mode(family);
            if ours.receives() && theirs.sends() {
                codec.add_path_rx.push(family);
            }
            if ours.sends() && theirs.receives() {
                codec.add_path_tx.push(family);
            }
        }
        codec
    }

    /// The size limit for UPDATE, NOTIFICATION and ROUTE-REFRESH messages.
    pub fn max_message_len(&self) -> usize {
        if self.extended_message {
            MAX_EXTENDED_LEN
        } else {
            MAX_MESSAGE_LEN
        }
    }

    pub(crate) fn rx_path_id(&self, family: Family) -> bool {
        self.add_path_rx.contains(&family)
    }

    pub(crate) fn tx_path_id(&self, family: Family) -> bool {
        self.add_path_tx.contains(&family)
    }

    /// Ok(None): not a whole message yet. Ok(Some((msg, consumed))).
    /// Err(n): the NOTIFICATION to send before closing (RFC 4271 §6 / RFC 7606
    /// session-reset cases).
    pub fn decode(&self, buf: &[u8]) -> Result<Option<(Message, usize)>, Notification> {
        let Some(head) = header::parse(buf, self.max_message_len())? else {
            return Ok(None);
        };
        let Some(whole) = buf.get(..head.len) else {
            return Ok(None);
        };
        let body = &whole[HEADER_LEN..];
        let msg = match head.kind {
            header::OPEN => Message::Open(open::decode(body)?),
            header::UPDATE => Message::Update(update::decode(self, body)?),
            header::NOTIFICATION => Message::Notification(notification::decode(body)),
            header::KEEPALIVE => Message::Keepalive,
            _ => header::decode_route_refresh(whole)?,
        };
        Ok(Some((msg, head.len)))
    }

    /// Appends one or more whole messages to `out`. An [`Update`] is split over
    /// as many UPDATE messages as the size limit needs: withdrawals first, IPv4
    /// routes in the UPDATE body, IPv6 routes always in MP_REACH/MP_UNREACH, and
    /// an End-of-RIB marker last. What cannot be encoded (see [`EncodeError`])
    /// is left out; use [`Codec::encode_checked`] to learn about it.
    pub fn encode(&self, msg: &Message, out: &mut Vec<u8>) {
        let _ = self.encode_checked(msg, out);
    }

    /// [`Codec::encode`], saying what it had to leave out. On `Err`, `out` still
    /// holds every message that could be encoded (e.g. the withdrawals).
    pub fn encode_checked(&self, msg: &Message, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        match msg {
            Message::Open(o) => open::encode(o, out),
            Message::Update(u) => update::encode(self, u, out),
            Message::Notification(n) => {
                notification::encode(n, self.max_message_len(), out);
                Ok(())
            }
            Message::Keepalive => {
                header::write(out, header::KEEPALIVE, |_| {});
                Ok(())
            }
            &Message::RouteRefresh { afi, safi, subtype } => {
                header::write(out, header::ROUTE_REFRESH, |b| {
                    b.extend_from_slice(&afi.to_be_bytes());
                    b.extend_from_slice(&[subtype, safi]);
                });
                Ok(())
            }
        }
    }
}

/// A cursor over untrusted bytes: every read is bounds-checked and says
/// `None` instead of panicking when the input runs out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}
