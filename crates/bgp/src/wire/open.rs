//! OPEN (RFC 4271 §4.2) and the capabilities it carries (RFC 5492), with
//! RFC 9072's extended optional-parameter length for very long lists.

use std::net::Ipv4Addr;

use super::notification::{open_error, Notification};
use super::{header, EncodeError, Family, Reader, AS_TRANS, MAX_MESSAGE_LEN};

/// The OPEN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    /// The 2-octet AS field: [`AS_TRANS`] when the real AS needs 4 octets.
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

/// One capability (RFC 5492). Capabilities we know but find malformed are
/// kept as `Unknown`, so a session can still see and ignore them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// Code 1 (RFC 4760); any AFI/SAFI, including ones we do not speak.
    Multiprotocol {
        afi: u16,
        safi: u8,
    },
    /// Code 2 (RFC 2918).
    RouteRefresh,
    /// Code 6 (RFC 8654).
    ExtendedMessage,
    /// Code 64 (RFC 4724). `restart_time` is 12 bits; each family says whether
    /// forwarding state was preserved.
    GracefulRestart {
        restarting: bool,
        restart_time: u16,
        families: Vec<(u16, u8, bool)>,
    },
    /// Code 65 (RFC 6793).
    FourOctetAs(u32),
    /// Code 69 (RFC 7911).
    AddPath(Vec<(u16, u8, AddPathMode)>),
    /// Code 70 (RFC 7313).
    EnhancedRouteRefresh,
    Unknown {
        code: u8,
        value: Vec<u8>,
    },
}

/// What a speaker offers for a family's path identifiers (RFC 7911 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddPathMode {
    Receive = 1,
    Send = 2,
    Both = 3,
}

impl AddPathMode {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(AddPathMode::Receive),
            2 => Some(AddPathMode::Send),
            3 => Some(AddPathMode::Both),
            _ => None,
        }
    }
}

/// An optional [`AddPathMode`]: what one side offered for a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Offered(Option<AddPathMode>);

impl Offered {
    pub(crate) fn receives(self) -> bool {
        matches!(self.0, Some(AddPathMode::Receive | AddPathMode::Both))
    }
    pub(crate) fn sends(self) -> bool {
        matches!(self.0, Some(AddPathMode::Send | AddPathMode::Both))
    }
}

impl Open {
    /// An OPEN for `asn`: the 2-octet field gets [`AS_TRANS`] when `asn` does
    /// not fit, and a FourOctetAs capability is added if `capabilities` lacks
    /// one (RFC 6793 §3).
    pub fn new(
        asn: u32,
        hold_time: u16,
        bgp_id: Ipv4Addr,
        mut capabilities: Vec<Capability>,
    ) -> Self {
        if !capabilities
            .iter()
            .any(|c| matches!(c, Capability::FourOctetAs(_)))
        {
            capabilities.push(Capability::FourOctetAs(asn));
        }
        Open {
            version: 4,
            my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
            hold_time,
            bgp_id,
            capabilities,
        }
    }

    /// The 4-octet AS from the capability, else my_as.
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(asn) => Some(*asn),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }

    /// Families offered with the Multiprotocol capability that we speak. A
    /// peer with no Multiprotocol capability at all speaks IPv4 unicast only
    /// (RFC 4760 §8).
    pub fn families(&self) -> Vec<Family> {
        let mut mp = self.capabilities.iter().filter_map(|c| match c {
            Capability::Multiprotocol { afi, safi } => Some(Family::from_afi_safi(*afi, *safi)),
            _ => None,
        });
        let Some(first) = mp.next() else {
            return vec![Family::Ipv4Unicast];
        };
        let mut out: Vec<Family> = std::iter::once(first).chain(mp).flatten().collect();
        out.sort();
        out.dedup();
        out
    }

    /// The graceful-restart capability, if offered.
    pub fn graceful_restart(&self) -> Option<&Capability> {
        self.capabilities
            .iter()
            .find(|c| matches!(c, Capability::GracefulRestart { .. }))
    }

    pub(crate) fn add_path_mode(&self, family: Family) -> Offered {
        let key = (family.afi(), family.safi());
        Offered(self.capabilities.iter().find_map(|c| match c {
            Capability::AddPath(list) => list.iter().find(|e| (e.0, e.1) == key).map(|e| e.2),
            _ => None,
        }))
    }
}

/// Decodes an OPEN body. Checks only what makes the message meaningless:
/// the version, hold time 1 or 2 (RFC 4271 §6.2), a zero BGP identifier
/// (RFC 6286), and the optional-parameter framing. Whether the AS and hold
/// time are acceptable is the session's call.
pub(crate) fn decode(body: &[u8]) -> Result<Open, Notification> {
    let mut r = Reader::new(body);
    let malformed = || Notification::open_error(0, Vec::new());
    let (version, my_as, hold_time, id) = (r.u8(), r.u16(), r.u16(), r.u32());
    let (Some(version), Some(my_as), Some(hold_time), Some(id)) = (version, my_as, hold_time, id)
    else {
        return Err(malformed());
    };
    if version != 4 {
        return Err(Notification::open_error(
            open_error::UNSUPPORTED_VERSION,
            vec![0, 4],
        ));
    }
    if hold_time == 1 || hold_time == 2 {
        return Err(Notification::unacceptable_hold_time());
    }
    if id == 0 {
        return Err(Notification::open_error(
            open_error::BAD_BGP_IDENTIFIER,
            id.to_be_bytes().to_vec(),
        ));
    }
    let capabilities = decode_parameters(r).ok_or_else(malformed)??;
    Ok(Open {
        version,
        my_as,
        hold_time,
        bgp_id: Ipv4Addr::from(id),
        capabilities,
    })
}

/// The optional parameters: None when their framing is broken, Some(Err)
/// for a parameter type other than Capabilities.
fn decode_parameters(mut r: Reader<'_>) -> Option<Result<Vec<Capability>, Notification>> {
    let mut len = usize::from(r.u8()?);
    let mut extended = false;
    if len == 255 && r.rest().first() == Some(&255) {
        // RFC 9072: type 255 announces a 2-octet length, and 2-octet
        // parameter lengths after it.
        r.u8()?;
        len = usize::from(r.u16()?);
        extended = true;
    }
    let mut params = Reader::new(r.take(len)?);
    if !r.is_empty() {
        return None;
    }
    let mut caps = Vec::new();
    while !params.is_empty() {
        let kind = params.u8()?;
        let plen = if extended {
            params.u16()?.into()
        } else {
            params.u8()?.into()
        };
        let value = params.take(plen)?;
        if kind != 2 {
            let data = vec![kind];
            return Some(Err(Notification::open_error(
                open_error::UNSUPPORTED_OPTIONAL_PARAMETER,
                data,
            )));
        }
        decode_capabilities(value, &mut caps)?;
    }
    Some(Ok(caps))
}

fn decode_capabilities(value: &[u8], caps: &mut Vec<Capability>) -> Option<()> {
    let mut r = Reader::new(value);
    while !r.is_empty() {
        let code = r.u8()?;
        let len = usize::from(r.u8()?);
        let value = r.take(len)?;
        caps.push(
            decode_capability(code, value).unwrap_or_else(|| Capability::Unknown {
                code,
                value: value.to_vec(),
            }),
        );
    }
    Some(())
}

/// A known capability, or None when its value does not have the known shape.
fn decode_capability(code: u8, value: &[u8]) -> Option<Capability> {
    let empty = value.is_empty();
    match code {
        1 if value.len() == 4 => Some(Capability::Multiprotocol {
            afi: u16::from_be_bytes([value[0], value[1]]),
            safi: value[3],
        }),
        2 if empty => Some(Capability::RouteRefresh),
        6 if empty => Some(Capability::ExtendedMessage),
        64 => decode_graceful_restart(value),
        65 if value.len() == 4 => Some(Capability::FourOctetAs(u32::from_be_bytes([
            value[0], value[1], value[2], value[3],
        ]))),
        69 => decode_add_path(value),
        70 if empty => Some(Capability::EnhancedRouteRefresh),
        _ => None,
    }
}

fn decode_graceful_restart(value: &[u8]) -> Option<Capability> {
    if value.len() < 2 || !(value.len() - 2).is_multiple_of(4) {
        return None;
    }
    let word = u16::from_be_bytes([value[0], value[1]]);
    let families = value[2..]
        .chunks_exact(4)
        .map(|c| (u16::from_be_bytes([c[0], c[1]]), c[2], c[3] & 0x80 != 0))
        .collect();
    Some(Capability::GracefulRestart {
        restarting: word & 0x8000 != 0,
        restart_time: word & 0x0fff,
        families,
    })
}

/// RFC 7911 §4: a Send/Receive value other than 1..3 makes the whole
/// capability "not understood".
fn decode_add_path(value: &[u8]) -> Option<Capability> {
    if value.is_empty() || !value.len().is_multiple_of(4) {
        return None;
    }
    let entries = value
        .chunks_exact(4)
        .map(|c| {
            Some((
                u16::from_be_bytes([c[0], c[1]]),
                c[2],
                AddPathMode::from_u8(c[3])?,
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Capability::AddPath(entries))
}

fn encode_capability(cap: &Capability, out: &mut Vec<u8>) {
    let (code, value): (u8, Vec<u8>) = match cap {
        Capability::Multiprotocol { afi, safi } => {
            let [a, b] = afi.to_be_bytes();
            (1, vec![a, b, 0, *safi])
        }
        Capability::RouteRefresh => (2, vec![]),
        Capability::ExtendedMessage => (6, vec![]),
        Capability::GracefulRestart {
            restarting,
            restart_time,
            families,
        } => {
            let word = (restart_time & 0x0fff) | if *restarting { 0x8000 } else { 0 };
            let mut v = word.to_be_bytes().to_vec();
            for (afi, safi, fwd) in families.iter().take(63) {
                v.extend_from_slice(&afi.to_be_bytes());
                v.extend_from_slice(&[*safi, if *fwd { 0x80 } else { 0 }]);
            }
            (64, v)
        }
        Capability::FourOctetAs(asn) => (65, asn.to_be_bytes().to_vec()),
        Capability::AddPath(list) => {
            let mut v = Vec::new();
            for (afi, safi, mode) in list.iter().take(63) {
                v.extend_from_slice(&afi.to_be_bytes());
                v.extend_from_slice(&[*safi, *mode as u8]);
            }
            (69, v)
        }
        Capability::EnhancedRouteRefresh => (70, vec![]),
        Capability::Unknown { code, value } => (*code, value[..value.len().min(255)].to_vec()),
    };
    out.extend_from_slice(&[code, value.len() as u8]);
    out.extend_from_slice(&value);
}

/// All capabilities go in one Capabilities parameter; past 255 bytes that
/// needs RFC 9072's extended length. Nothing is written if the OPEN would
/// exceed 4096 bytes.
pub(crate) fn encode(open: &Open, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let mut caps = Vec::new();
    for cap in &open.capabilities {
        encode_capability(cap, &mut caps);
    }
    let mut params = Vec::with_capacity(caps.len() + 6);
    match u8::try_from(caps.len()) {
        Ok(_) if caps.is_empty() => params.push(0),
        Ok(n) if n <= 253 => params.extend_from_slice(&[n + 2, 2, n]),
        _ => {
            let total =
                u16::try_from(caps.len() + 3).map_err(|_| EncodeError::OpenTooLarge(caps.len()))?;
            params.extend_from_slice(&[255, 255]);
            params.extend_from_slice(&total.to_be_bytes());
            params.push(2);
            params.extend_from_slice(&(total - 3).to_be_bytes());
        }
    }
    params.extend_from_slice(&caps);
    let len = super::HEADER_LEN + 10 + params.len();
    if len > MAX_MESSAGE_LEN {
        return Err(EncodeError::OpenTooLarge(len));
    }
    header::write(out, header::OPEN, |b| {
        b.push(open.version);
        b.extend_from_slice(&open.my_as.to_be_bytes());
        b.extend_from_slice(&open.hold_time.to_be_bytes());
        b.extend_from_slice(&open.bgp_id.octets());
        b.extend_from_slice(&params);
    });
    Ok(())
}
