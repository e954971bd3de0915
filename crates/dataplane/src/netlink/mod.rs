//! Kernel access for routes, links, addresses, neighbours (ARP/NDP) and the
//! bridge forwarding database, behind one small synchronous trait.
//!
//! `rtnl::RtNetlink` talks to the kernel of the calling thread's network
//! namespace; `fake::FakeNetlink` is an in-memory kernel for tests. Managers
//! only see [`NetlinkBackend`], and refer to interfaces by name (the adapter
//! resolves indices).

mod batch;
pub mod fake;
pub mod rtnl;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

pub use fake::FakeNetlink;
pub use rtnl::RtNetlink;

/// The main routing table.
pub const MAIN_TABLE: u32 = 254;

/// A MAC address.
pub type Mac = [u8; 6];

/// Parses `aa:bb:cc:dd:ee:ff` (also accepts `-` separators).
pub fn parse_mac(s: &str) -> Option<Mac> {
    let mut out = [0u8; 6];
    let mut parts = s.split([':', '-']);
    for byte in out.iter_mut() {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(out)
}

/// Formats a MAC as lower-case `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Broad classes of netlink failure the managers react to differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// ENOENT/ESRCH: the object to delete/change is not there.
    NotFound,
    /// ENODEV: the interface does not exist (yet).
    NoDevice,
    /// EEXIST.
    Exists,
    /// ENETDOWN: the interface is administratively down.
    NetworkDown,
    /// ENETUNREACH/EHOSTUNREACH: a gateway is not reachable.
    Unreachable,
    /// EOPNOTSUPP/EAFNOSUPPORT: the kernel lacks the feature (e.g. a link type).
    NotSupported,
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetlinkError {
    pub kind: ErrorKind,
    pub message: String,
}

impl NetlinkError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        NetlinkError {
            kind,
            message: message.into(),
        }
    }

    /// Classifies a positive errno value.
    pub fn from_errno(errno: i32, context: &str) -> Self {
        let kind = match errno {
            libc::ENOENT | libc::ESRCH => ErrorKind::NotFound,
            libc::ENODEV => ErrorKind::NoDevice,
            libc::EEXIST => ErrorKind::Exists,
            libc::ENETDOWN => ErrorKind::NetworkDown,
            libc::ENETUNREACH | libc::EHOSTUNREACH => ErrorKind::Unreachable,
            libc::EOPNOTSUPP | libc::EAFNOSUPPORT => ErrorKind::NotSupported,
            _ => ErrorKind::Other,
        };
        let text = std::io::Error::from_raw_os_error(errno);
        NetlinkError::new(kind, format!("{context}: {text}"))
    }
}

impl fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NetlinkError {}

impl From<NetlinkError> for crate::DataplaneError {
    fn from(e: NetlinkError) -> Self {
        crate::DataplaneError::Netlink(e.message)
    }
}

/// VXLAN attributes of a link, as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanInfo {
    pub vni: u32,
    pub port: u16,
    pub local: Option<Ipv4Addr>,
    /// Index of the parent (underlay) device.
    pub parent: Option<u32>,
    pub learning: bool,
}

/// A network interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND` ("veth", "vxlan", "ipip", ...), if any.
    pub kind: Option<String>,
    pub mtu: u32,
    pub mac: Option<Mac>,
    /// Administratively up (IFF_UP).
    pub up: bool,
    pub vxlan: Option<VxlanInfo>,
}

/// What to create for a VXLAN device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanSpec {
    pub name: String,
    pub vni: u32,
    pub port: u16,
    pub local: Ipv4Addr,
    /// Index of the parent device (the interface holding `local`).
    pub parent: u32,
    pub mtu: u32,
    pub mac: Mac,
}

/// Changes to an existing link; `None` leaves the attribute alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkChange {
    pub up: Option<bool>,
    pub mtu: Option<u32>,
    pub mac: Option<Mac>,
}

/// An address on an interface (`addr` keeps the host bits: 198.18.1.0/32).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr {
    pub iface: String,
    pub addr: IpNet,
}

/// Where a route sends traffic.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKind {
    /// `dst dev <iface> scope link`.
    Dev { iface: String },
    /// `blackhole dst`.
    Blackhole,
    /// `dst via <gateway> [dev <iface>] [onlink]`. When written with no
    /// interface the kernel resolves it from the gateway; read-back fills it.
    Via {
        gateway: IpAddr,
        iface: Option<String>,
        onlink: bool,
    },
    /// Any other route type (unreachable, prohibit, multipath, ...), kept
    /// only so a stale route of ours can still be deleted. `rtype` is the
    /// kernel's `rtm_type`.
    Unsupported { rtype: u8 },
}

/// One route in the main table.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KernelRoute {
    pub dst: IpNet,
    pub kind: RouteKind,
    /// `rtm_protocol`; Calico-rs marks its routes with its own number.
    pub protocol: u8,
}

impl KernelRoute {
    /// The interface the route names, if any.
    pub fn iface(&self) -> Option<&str> {
        match &self.kind {
            RouteKind::Dev { iface } => Some(iface),
            RouteKind::Via { iface, .. } => iface.as_deref(),
            _ => None,
        }
    }

    /// True if `actual` (as read back or last written) already does what
    /// `self` asks for. A gateway route written without an interface is
    /// satisfied by the interface the kernel chose.
    pub fn satisfied_by(&self, actual: &KernelRoute) -> bool {
        self.dst == actual.dst
            && self.protocol == actual.protocol
            && self.kind.satisfied_by(&actual.kind)
    }
}

impl RouteKind {
    /// True if a route of kind `actual` already does what `self` asks for:
    /// a gateway route written without an interface is satisfied by the
    /// interface the kernel chose.
    pub fn satisfied_by(&self, actual: &RouteKind) -> bool {
        match (self, actual) {
            (
                RouteKind::Via {
                    gateway: g1,
                    iface: i1,
                    onlink: o1,
                },
                RouteKind::Via {
                    gateway: g2,
                    iface: i2,
                    onlink: o2,
                },
            ) => g1 == g2 && o1 == o2 && (i1.is_none() || i1 == i2),
            (a, b) => a == b,
        }
    }
}

impl fmt::Display for KernelRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RouteKind::Dev { iface } => write!(f, "{} dev {iface} scope link", self.dst)?,
            RouteKind::Blackhole => write!(f, "blackhole {}", self.dst)?,
            RouteKind::Via {
                gateway,
                iface,
                onlink,
            } => {
                write!(f, "{} via {gateway}", self.dst)?;
                if let Some(i) = iface {
                    write!(f, " dev {i}")?;
                }
                if *onlink {
                    f.write_str(" onlink")?;
                }
            }
            RouteKind::Unsupported { rtype } => write!(f, "type-{rtype} {}", self.dst)?,
        }
        write!(f, " proto {}", self.protocol)
    }
}

/// An ARP/NDP entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub iface: String,
    pub ip: IpAddr,
    pub mac: Option<Mac>,
    pub permanent: bool,
}

/// A bridge forwarding-database entry on a device (`bridge fdb ... self`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdbEntry {
    pub iface: String,
    pub mac: Mac,
    /// Remote VTEP address (`dst`), for VXLAN devices.
    pub dst: Option<IpAddr>,
    pub permanent: bool,
}

/// Routes, links, addresses, neighbours and FDB entries of one network
/// namespace. Writes of routes, neighbours and FDB entries have replace
/// semantics (create or overwrite), so they are idempotent.
pub trait NetlinkBackend {
    fn links(&mut self) -> Result<Vec<Link>, NetlinkError>;
    /// Every address of every interface.
    fn addrs(&mut self) -> Result<Vec<Addr>, NetlinkError>;
    fn add_addr(&mut self, iface: &str, addr: IpNet) -> Result<(), NetlinkError>;
    fn del_addr(&mut self, iface: &str, addr: IpNet) -> Result<(), NetlinkError>;

    /// Routes of the main table (both families) whose protocol is `protocol`.
    fn routes(&mut self, protocol: u8) -> Result<Vec<KernelRoute>, NetlinkError>;
    /// Creates the route, or replaces the route with the same destination.
    fn replace_route(&mut self, route: &KernelRoute) -> Result<(), NetlinkError>;
    /// Deletes the route with this destination *and protocol* only.
    fn del_route(&mut self, route: &KernelRoute) -> Result<(), NetlinkError>;
    /// `replace_route` for many routes; a backend may pipeline them.
    fn replace_routes(&mut self, routes: &[KernelRoute]) -> Vec<Result<(), NetlinkError>> {
        routes.iter().map(|r| self.replace_route(r)).collect()
    }
    /// `del_route` for many routes; a backend may pipeline them.
    fn del_routes(&mut self, routes: &[KernelRoute]) -> Vec<Result<(), NetlinkError>> {
        routes.iter().map(|r| self.del_route(r)).collect()
    }

    fn add_vxlan(&mut self, spec: &VxlanSpec) -> Result<(), NetlinkError>;
    /// Creates an IP-in-IP tunnel device; `ErrorKind::NotSupported` when the
    /// kernel has no ipip support.
    fn add_ipip(&mut self, name: &str) -> Result<(), NetlinkError>;
    fn del_link(&mut self, name: &str) -> Result<(), NetlinkError>;
    fn set_link(&mut self, name: &str, change: &LinkChange) -> Result<(), NetlinkError>;

    /// ARP/NDP entries of one interface.
    fn neighbours(&mut self, iface: &str) -> Result<Vec<Neighbour>, NetlinkError>;
    /// Creates or replaces a permanent neighbour entry.
    fn replace_neighbour(&mut self, iface: &str, ip: IpAddr, mac: Mac) -> Result<(), NetlinkError>;
    fn del_neighbour(&mut self, iface: &str, ip: IpAddr) -> Result<(), NetlinkError>;

    /// FDB entries of the device itself (NTF_SELF) on one interface.
    fn fdb(&mut self, iface: &str) -> Result<Vec<FdbEntry>, NetlinkError>;
    /// Creates or replaces `<mac> dst <dst> self permanent`.
    fn replace_fdb(&mut self, iface: &str, mac: Mac, dst: IpAddr) -> Result<(), NetlinkError>;
    fn del_fdb(&mut self, iface: &str, mac: Mac, dst: IpAddr) -> Result<(), NetlinkError>;
}

impl<T: NetlinkBackend + ?Sized> NetlinkBackend for Box<T> {
    fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        (**self).links()
    }
    fn addrs(&mut self) -> Result<Vec<Addr>, NetlinkError> {
        (**self).addrs()
    }
    fn add_addr(&mut self, iface: &str, addr: IpNet) -> Result<(), NetlinkError> {
        (**self).add_addr(iface, addr)
    }
    fn del_addr(&mut self, iface: &str, addr: IpNet) -> Result<(), NetlinkError> {
        (**self).del_addr(iface, addr)
    }
    fn routes(&mut self, protocol: u8) -> Result<Vec<KernelRoute>, NetlinkError> {
        (**self).routes(protocol)
    }
    fn replace_route(&mut self, route: &KernelRoute) -> Result<(), NetlinkError> {
        (**self).replace_route(route)
    }
    fn del_route(&mut self, route: &KernelRoute) -> Result<(), NetlinkError> {
        (**self).del_route(route)
    }
    fn replace_routes(&mut self, routes: &[KernelRoute]) -> Vec<Result<(), NetlinkError>> {
        (**self).replace_routes(routes)
    }
    fn del_routes(&mut self, routes: &[KernelRoute]) -> Vec<Result<(), NetlinkError>> {
        (**self).del_routes(routes)
    }
    fn add_vxlan(&mut self, spec: &VxlanSpec) -> Result<(), NetlinkError> {
        (**self).add_vxlan(spec)
    }
    fn add_ipip(&mut self, name: &str) -> Result<(), NetlinkError> {
        (**self).add_ipip(name)
    }
    fn del_link(&mut self, name: &str) -> Result<(), NetlinkError> {
        (**self).del_link(name)
    }
    fn set_link(&mut self, name: &str, change: &LinkChange) -> Result<(), NetlinkError> {
        (**self).set_link(name, change)
    }
    fn neighbours(&mut self, iface: &str) -> Result<Vec<Neighbour>, NetlinkError> {
        (**self).neighbours(iface)
    }
    fn replace_neighbour(&mut self, iface: &str, ip: IpAddr, mac: Mac) -> Result<(), NetlinkError> {
        (**self).replace_neighbour(iface, ip, mac)
    }
    fn del_neighbour(&mut self, iface: &str, ip: IpAddr) -> Result<(), NetlinkError> {
        (**self).del_neighbour(iface, ip)
    }
    fn fdb(&mut self, iface: &str) -> Result<Vec<FdbEntry>, NetlinkError> {
        (**self).fdb(iface)
    }
    fn replace_fdb(&mut self, iface: &str, mac: Mac, dst: IpAddr) -> Result<(), NetlinkError> {
        (**self).replace_fdb(iface, mac, dst)
    }
    fn del_fdb(&mut self, iface: &str, mac: Mac, dst: IpAddr) -> Result<(), NetlinkError> {
        (**self).del_fdb(iface, mac, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip() {
        let m = parse_mac("66:00:0A:ff:00:01").unwrap();
        assert_eq!(m, [0x66, 0, 0x0a, 0xff, 0, 1]);
        assert_eq!(format_mac(&m), "66:00:0a:ff:00:01");
        assert_eq!(parse_mac("66:00:0a:ff:00"), None);
        assert_eq!(parse_mac("66:00:0a:ff:00:01:02"), None);
        assert_eq!(parse_mac("66:00:0a:ff:00:zz"), None);
    }

    #[test]
    fn gateway_route_without_iface_is_satisfied_by_resolved_one() {
        let want = KernelRoute {
            dst: "198.18.3.0/26".parse().unwrap(),
            kind: RouteKind::Via {
                gateway: "192.0.2.3".parse().unwrap(),
                iface: None,
                onlink: false,
            },
            protocol: 80,
        };
        let mut have = want.clone();
        have.kind = RouteKind::Via {
            gateway: "192.0.2.3".parse().unwrap(),
            iface: Some("eth1".into()),
            onlink: false,
        };
        assert!(want.satisfied_by(&have));
        assert!(!have.satisfied_by(&KernelRoute {
            protocol: 4,
            ..have.clone()
        }));
    }
}
