//! The fixed 19-byte message header (RFC 4271 §4.1) and the two messages
//! that are little more than a header: KEEPALIVE and ROUTE-REFRESH.

use super::notification::{header_error, Notification, ROUTE_REFRESH_MESSAGE_ERROR};
use super::{Message, HEADER_LEN, MAX_MESSAGE_LEN};

pub(crate) const OPEN: u8 = 1;
pub(crate) const UPDATE: u8 = 2;
pub(crate) const NOTIFICATION: u8 = 3;
pub(crate) const KEEPALIVE: u8 = 4;
pub(crate) const ROUTE_REFRESH: u8 = 5;

const MARKER: [u8; 16] = [0xff; 16];

/// A checked header: `len` is the whole message length, within limits for `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub len: usize,
    pub kind: u8,
}

/// Checks the header at the front of `buf`. Ok(None) until 19 bytes are there;
/// Err for a bad marker, a length out of range for the type, or an unknown
/// type, with the data RFC 4271 §6.1 asks for.
pub(crate) fn parse(buf: &[u8], max_len: usize) -> Result<Option<Header>, Notification> {
    // A wrong marker byte is wrong however few bytes have arrived; saying so
    // early keeps a desynchronised peer from making us wait for a bogus length.
    let seen = buf.len().min(MARKER.len());
    if buf[..seen] != MARKER[..seen] {
        return Err(Notification::new(
            super::notification::MESSAGE_HEADER_ERROR,
            header_error::CONNECTION_NOT_SYNCHRONIZED,
            Vec::new(),
        ));
    }
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
    let kind = buf[18];
    let (min, max) = match kind {
        OPEN => (29, MAX_MESSAGE_LEN),
        UPDATE => (23, max_len),
        NOTIFICATION => (21, max_len),
        KEEPALIVE => (HEADER_LEN, HEADER_LEN),
        ROUTE_REFRESH => (23, max_len),
        _ => {
            return Err(Notification::new(
                super::notification::MESSAGE_HEADER_ERROR,
                header_error::BAD_MESSAGE_TYPE,
                vec![kind],
            ))
        }
    };
    if len < min || len > max {
        return Err(Notification::new(
            super::notification::MESSAGE_HEADER_ERROR,
            header_error::BAD_MESSAGE_LENGTH,
            buf[16..18].to_vec(),
        ));
    }
    Ok(Some(Header { len, kind }))
}

/// Appends a message of type `kind` whose body `body` writes, then fills in
/// the length. The caller keeps the body within the limit.
pub(crate) fn write(out: &mut Vec<u8>, kind: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&[0, 0, kind]);
    body(out);
    let len = u16::try_from(out.len() - start).unwrap_or(u16::MAX);
    out[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
}

/// ROUTE-REFRESH (RFC 2918): AFI, subtype (RFC 7313, was reserved), SAFI.
/// BoRR/EoRR must be exactly 23 bytes (RFC 7313 §5); a plain request may
/// carry ORF entries (RFC 5291), which we never negotiate and so ignore.
pub(crate) fn decode_route_refresh(whole: &[u8]) -> Result<Message, Notification> {
    let body = &whole[HEADER_LEN..];
    let afi = u16::from_be_bytes([body[0], body[1]]);
    let (subtype, safi) = (body[2], body[3]);
    if matches!(subtype, 1 | 2) && body.len() != 4 {
        return Err(Notification::new(
            ROUTE_REFRESH_MESSAGE_ERROR,
            1,
            whole.to_vec(),
        ));
    }
    Ok(Message::RouteRefresh { afi, safi, subtype })
}
