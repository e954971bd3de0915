//! NOTIFICATION (RFC 4271 §4.5, §6): the error codes, their subcodes, and the
//! human text a status display shows for them.

use super::header;

/// Error codes (RFC 4271 §4.5, RFC 7313 for ROUTE-REFRESH).
pub const MESSAGE_HEADER_ERROR: u8 = 1;
pub const OPEN_MESSAGE_ERROR: u8 = 2;
pub const UPDATE_MESSAGE_ERROR: u8 = 3;
pub const HOLD_TIMER_EXPIRED: u8 = 4;
pub const FSM_ERROR: u8 = 5;
pub const CEASE: u8 = 6;
pub const ROUTE_REFRESH_MESSAGE_ERROR: u8 = 7;

/// Subcodes of Message Header Error (RFC 4271 §6.1).
pub mod header_error {
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;
}

/// Subcodes of OPEN Message Error (RFC 4271 §6.2, RFC 5492, RFC 9234).
pub mod open_error {
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
    pub const ROLE_MISMATCH: u8 = 11;
}

/// Subcodes of UPDATE Message Error (RFC 4271 §6.3).
pub mod update_error {
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    pub const INVALID_ORIGIN: u8 = 6;
    pub const INVALID_NEXT_HOP: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// Subcodes of Finite State Machine Error (RFC 6608).
pub mod fsm_error {
    pub const UNSPECIFIED: u8 = 0;
    pub const UNEXPECTED_IN_OPENSENT: u8 = 1;
    pub const UNEXPECTED_IN_OPENCONFIRM: u8 = 2;
    pub const UNEXPECTED_IN_ESTABLISHED: u8 = 3;
}

/// Subcodes of Cease (RFC 4486, RFC 8538, RFC 9384).
pub mod cease {
    pub const MAX_PREFIXES: u8 = 1;
    pub const ADMIN_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMIN_RESET: u8 = 4;
    pub const CONNECTION_REJECTED: u8 = 5;
    pub const OTHER_CONFIG_CHANGE: u8 = 6;
    pub const CONNECTION_COLLISION: u8 = 7;
    pub const OUT_OF_RESOURCES: u8 = 8;
    pub const HARD_RESET: u8 = 9;
    pub const BFD_DOWN: u8 = 10;
}

/// A NOTIFICATION: sent before closing, or received as the peer's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl Notification {
    pub fn new(code: u8, subcode: u8, data: Vec<u8>) -> Self {
        Notification {
            code,
            subcode,
            data,
        }
    }

    pub fn hold_timer_expired() -> Self {
        Self::new(HOLD_TIMER_EXPIRED, 0, Vec::new())
    }

    /// An event the FSM did not expect; `subcode` from [`fsm_error`].
    pub fn fsm(subcode: u8) -> Self {
        Self::new(FSM_ERROR, subcode, Vec::new())
    }

    /// A Cease with a subcode from [`cease`] and no data.
    pub fn cease(subcode: u8) -> Self {
        Self::new(CEASE, subcode, Vec::new())
    }

    /// Administrative Shutdown or Reset carrying an operator's message
    /// (RFC 9003: a length octet and up to 255 bytes of UTF-8, cut at a
    /// character boundary).
    pub fn cease_with_message(subcode: u8, message: &str) -> Self {
        let mut end = message.len().min(255);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let mut data = vec![end as u8];
        data.extend_from_slice(&message.as_bytes()[..end]);
        Self::new(CEASE, subcode, data)
    }

    pub fn open_error(subcode: u8, data: Vec<u8>) -> Self {
        Self::new(OPEN_MESSAGE_ERROR, subcode, data)
    }

    pub fn update_error(subcode: u8, data: Vec<u8>) -> Self {
        Self::new(UPDATE_MESSAGE_ERROR, subcode, data)
    }

    /// The peer's OPEN names an AS we are not configured for.
    pub fn bad_peer_as() -> Self {
        Self::open_error(open_error::BAD_PEER_AS, Vec::new())
    }

    /// The peer's hold time is 1 or 2 s or otherwise refused.
    pub fn unacceptable_hold_time() -> Self {
        Self::open_error(open_error::UNACCEPTABLE_HOLD_TIME, Vec::new())
    }

    /// RFC 9003 shutdown communication, when the data carries one.
    pub fn shutdown_message(&self) -> Option<&str> {
        if self.code != CEASE || !matches!(self.subcode, cease::ADMIN_SHUTDOWN | cease::ADMIN_RESET)
        {
            return None;
        }
        let (&len, text) = self.data.split_first()?;
        let text = text.get(..usize::from(len))?;
        std::str::from_utf8(text).ok().filter(|t| !t.is_empty())
    }
}

fn code_text(code: u8) -> Option<&'static str> {
    Some(match code {
        MESSAGE_HEADER_ERROR => "Invalid message header",
        OPEN_MESSAGE_ERROR => "Invalid OPEN message",
        UPDATE_MESSAGE_ERROR => "Invalid UPDATE message",
        HOLD_TIMER_EXPIRED => "Hold timer expired",
        FSM_ERROR => "Finite state machine error",
        CEASE => "Cease",
        ROUTE_REFRESH_MESSAGE_ERROR => "Invalid ROUTE-REFRESH message",
        _ => return None,
    })
}

fn subcode_text(code: u8, subcode: u8) -> Option<&'static str> {
    Some(match (code, subcode) {
        (1, 1) => "Connection not synchronized",
        (1, 2) => "Bad message length",
        (1, 3) => "Bad message type",
        (2, 1) => "Unsupported version number",
        (2, 2) => "Bad peer AS",
        (2, 3) => "Bad BGP identifier",
        (2, 4) => "Unsupported optional parameter",
        (2, 5) => "Authentication failure",
        (2, 6) => "Unacceptable hold time",
        (2, 7) => "Unsupported capability",
        (2, 11) => "Role mismatch",
        (3, 1) => "Malformed attribute list",
        (3, 2) => "Unrecognized well-known attribute",
        (3, 3) => "Missing mandatory attribute",
        (3, 4) => "Invalid attribute flags",
        (3, 5) => "Invalid attribute length",
        (3, 6) => "Invalid ORIGIN attribute",
        (3, 7) => "AS routing loop",
        (3, 8) => "Invalid NEXT_HOP attribute",
        (3, 9) => "Optional attribute error",
        (3, 10) => "Invalid network field",
        (3, 11) => "Malformed AS_PATH",
        (5, 1) => "Unexpected message in OpenSent state",
        (5, 2) => "Unexpected message in OpenConfirm state",
        (5, 3) => "Unexpected message in Established state",
        (6, 1) => "Maximum number of prefixes reached",
        (6, 2) => "Administrative shutdown",
        (6, 3) => "Peer de-configured",
        (6, 4) => "Administrative reset",
        (6, 5) => "Connection rejected",
        (6, 6) => "Other configuration change",
        (6, 7) => "Connection collision resolution",
        (6, 8) => "Out of resources",
        (6, 9) => "Hard reset",
        (6, 10) => "BFD session down",
        (7, 1) => "Invalid message length",
        _ => return None,
    })
}

/// Human text in the style of BIRD's logs: the subcode's text where it says
/// it all ("Bad peer AS"), "Cease: <reason>" for Cease, the code's text
/// otherwise, and an RFC 9003 shutdown message quoted after a colon.
impl std::fmt::Display for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (code, sub) = (code_text(self.code), subcode_text(self.code, self.subcode));
        match (code, sub) {
            (None, _) => write!(f, "Unknown error {}/{}", self.code, self.subcode)?,
            (Some(c), Some(s))
                if self.code == CEASE || self.code == ROUTE_REFRESH_MESSAGE_ERROR =>
            {
                write!(f, "{c}: {s}")?
            }
            (Some(_), Some(s)) => f.write_str(s)?,
            (Some(c), None) if self.subcode == 0 => f.write_str(c)?,
            (Some(c), None) => write!(f, "{c} (subcode {})", self.subcode)?,
        }
        if let Some(text) = self.shutdown_message() {
            write!(f, ": \"{}\"", text.escape_debug())?;
        }
        Ok(())
    }
}

pub(crate) fn decode(body: &[u8]) -> Notification {
    // The header check guarantees the two code octets.
    Notification::new(body[0], body[1], body[2..].to_vec())
}

/// Data beyond what fits in one message is cut: the code and subcode matter,
/// the data is diagnostics.
pub(crate) fn encode(n: &Notification, max_len: usize, out: &mut Vec<u8>) {
    let room = max_len - super::HEADER_LEN - 2;
    let data = &n.data[..n.data.len().min(room)];
    header::write(out, header::NOTIFICATION, |b| {
        b.extend_from_slice(&[n.code, n.subcode]);
        b.extend_from_slice(data);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_reads_like_bird() {
        assert_eq!(
            Notification::hold_timer_expired().to_string(),
            "Hold timer expired"
        );
        assert_eq!(
            Notification::cease(cease::ADMIN_SHUTDOWN).to_string(),
            "Cease: Administrative shutdown"
        );
        assert_eq!(Notification::bad_peer_as().to_string(), "Bad peer AS");
        assert_eq!(Notification::cease(0).to_string(), "Cease");
        assert_eq!(
            Notification::new(3, 0, vec![]).to_string(),
            "Invalid UPDATE message"
        );
        assert_eq!(
            Notification::new(2, 99, vec![]).to_string(),
            "Invalid OPEN message (subcode 99)"
        );
        assert_eq!(
            Notification::new(42, 1, vec![]).to_string(),
            "Unknown error 42/1"
        );
    }

    #[test]
    fn shutdown_communication_is_shown_and_bounded() {
        let n = Notification::cease_with_message(cease::ADMIN_SHUTDOWN, "maintenance");
        assert_eq!(n.data[0], 11);
        assert_eq!(
            n.to_string(),
            "Cease: Administrative shutdown: \"maintenance\""
        );
        let long = "é".repeat(200); // 400 bytes: cut to 254, a char boundary
        let n = Notification::cease_with_message(cease::ADMIN_RESET, &long);
        assert_eq!(n.data.len(), 255);
        assert_eq!(n.shutdown_message().unwrap().chars().count(), 127);
        // A length octet that overruns the data is not a message.
        assert_eq!(
            Notification::new(CEASE, 2, vec![9, b'x']).shutdown_message(),
            None
        );
    }

    #[test]
    fn encode_cuts_data_to_the_limit() {
        let mut out = Vec::new();
        encode(&Notification::new(1, 2, vec![7; 5000]), 4096, &mut out);
        assert_eq!(out.len(), 4096);
        assert_eq!(decode(&out[19..]).data.len(), 4096 - 21);
    }
}
