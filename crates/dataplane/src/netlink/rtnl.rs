//! The real [`NetlinkBackend`]: rtnetlink over a NETLINK_ROUTE socket.
//!
//! rtnetlink is async (tokio); this adapter owns a small current-thread
//! runtime and blocks on each request, so managers stay synchronous. The
//! socket belongs to the network namespace of the thread that called
//! [`RtNetlink::new`]; every object, FDB entries included, goes through
//! netlink (no `ip`/`bridge` subprocesses).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::stream::{StreamExt, TryStreamExt};
use ipnet::IpNet;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{
    InfoData, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use rtnetlink::{LinkIpIp, LinkUnspec, LinkVxlan, RouteMessageBuilder};

use super::batch::{BatchSocket, BATCH_ROUTES};
use super::{
    Addr, ErrorKind, FdbEntry, KernelRoute, Link, LinkChange, Mac, Neighbour, NetlinkBackend,
    NetlinkError, RouteKind, VxlanInfo, VxlanSpec, MAIN_TABLE,
};

pub struct RtNetlink {
    rt: tokio::runtime::Runtime,
    handle: rtnetlink::Handle,
    /// Route writes in bulk (None if it could not be opened: then they
    /// are pipelined over `handle`).
    batch: Option<BatchSocket>,
    /// name -> index, refreshed by every `links()` dump and on misses.
    index_cache: HashMap<String, u32>,
}

fn nl_err(e: rtnetlink::Error, context: &str) -> NetlinkError {
    match e {
        rtnetlink::Error::NetlinkError(msg) => match msg.code {
            Some(code) => NetlinkError::from_errno(code.get().abs(), context),
            None => NetlinkError::new(ErrorKind::Other, format!("{context}: unexpected ACK")),
        },
        other => NetlinkError::new(ErrorKind::Other, format!("{context}: {other}")),
    }
}

fn mac_of(bytes: &[u8]) -> Option<Mac> {
    <[u8; 6]>::try_from(bytes).ok()
}

fn route_addr(ip: IpAddr) -> RouteAddress {
    match ip {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    }
}

fn from_route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn neigh_addr(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
        IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
    }
}

/// The destination address and link-layer address of a neighbour or FDB
/// message (ARP entries and bridge FDB entries share the message type).
fn dest_and_mac(attrs: &[NeighbourAttribute]) -> (Option<IpAddr>, Option<Mac>) {
    let mut dst = None;
    let mut mac = None;
    for a in attrs {
        match a {
            NeighbourAttribute::Destination(d) => dst = from_neigh_addr(d),
            NeighbourAttribute::LinkLayerAddress(l) => mac = mac_of(l),
            _ => {}
        }
    }
    (dst, mac)
}

fn from_neigh_addr(a: &NeighbourAddress) -> Option<IpAddr> {
    match a {
        NeighbourAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        NeighbourAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn parse_link(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        name: String::new(),
        kind: None,
        mtu: 0,
        mac: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        vxlan: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::Mtu(m) => link.mtu = *m,
            LinkAttribute::Address(a) => link.mac = mac_of(a),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => link.kind = Some(k.to_string()),
                        LinkInfo::Data(InfoData::Vxlan(v)) => {
                            let mut vx = VxlanInfo {
                                vni: 0,
                                port: 0,
                                local: None,
                                parent: None,
                                learning: true,
                            };
                            for a in v {
                                match a {
                                    InfoVxlan::Id(id) => vx.vni = *id,
                                    InfoVxlan::Port(p) => vx.port = *p,
                                    InfoVxlan::Local(l) => vx.local = Some(*l),
                                    InfoVxlan::Link(l) => vx.parent = Some(*l),
                                    InfoVxlan::Learning(b) => vx.learning = *b,
                                    _ => {}
                                }
                            }
                            link.vxlan = Some(vx);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link
}

impl RtNetlink {
    /// Opens a NETLINK_ROUTE socket in the calling thread's network namespace.
    pub fn new() -> Result<Self, NetlinkError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| NetlinkError::new(ErrorKind::Other, format!("tokio runtime: {e}")))?;
        let handle = rt.block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection()
                .map_err(|e| NetlinkError::new(ErrorKind::Other, format!("netlink socket: {e}")))?;
            tokio::spawn(conn);
            Ok::<_, NetlinkError>(handle)
        })?;
        Ok(RtNetlink {
            rt,
            handle,
            batch: BatchSocket::open().ok(),
            index_cache: HashMap::new(),
        })
    }

    fn dump_links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let handle = self.handle.clone();
        let msgs: Vec<LinkMessage> = self
            .rt
            .block_on(async { handle.link().get().execute().try_collect().await })
            .map_err(|e| nl_err(e, "dump links"))?;
        let links: Vec<Link> = msgs.iter().map(parse_link).collect();
        self.index_cache = links.iter().map(|l| (l.name.clone(), l.index)).collect();
        Ok(links)
    }

    fn index(&mut self, name: &str) -> Result<u32, NetlinkError> {
        if let Some(i) = self.index_cache.get(name) {
            return Ok(*i);
        }
        let handle = self.handle.clone();
        let name_owned = name.to_string();
        let msgs: Vec<LinkMessage> = self
            .rt
            .block_on(async {
                handle
                    .link()
                    .get()
                    .match_name(name_owned)
                    .execute()
                    .try_collect()
                    .await
            })
            .map_err(|e| nl_err(e, &format!("look up {name}")))?;
        let idx = msgs
            .first()
            .map(|m| m.header.index)
            .ok_or_else(|| NetlinkError::new(ErrorKind::NoDevice, format!("no device {name}")))?;
        self.index_cache.insert(name.to_string(), idx);
        Ok(idx)
    }

    /// Runs `op` with the index of `name`; if the cached index turns out to
    /// be stale (interface recreated), looks it up again and retries once.
    fn with_index<T>(
        &mut self,
        name: &str,
        mut op: impl FnMut(&mut Self, u32) -> Result<T, NetlinkError>,
    ) -> Result<T, NetlinkError> {
        let cached = self.index_cache.contains_key(name);
        let idx = self.index(name)?;
        match op(self, idx) {
            Err(e) if cached && e.kind == ErrorKind::NoDevice => {
                self.index_cache.remove(name);
                let idx = self.index(name)?;
                op(self, idx)
            }
            r => r,
        }
    }

    fn name_map(&mut self) -> Result<HashMap<u32, String>, NetlinkError> {
        Ok(self
            .dump_links()?
            .into_iter()
            .map(|l| (l.index, l.name))
            .collect())
    }

    fn route_message(&mut self, route: &KernelRoute) -> Result<RouteMessage, NetlinkError> {
        let mut msg = base_message(route);
        match &route.kind {
            RouteKind::Dev { iface } => {
                let idx = self.index(iface)?;
                msg.header.scope = RouteScope::Link;
                msg.header.kind = RouteType::Unicast;
                msg.attributes.push(RouteAttribute::Oif(idx));
            }
            RouteKind::Blackhole => {
                msg.header.scope = RouteScope::Universe;
                msg.header.kind = RouteType::BlackHole;
            }
            RouteKind::Via {
                gateway,
                iface,
                onlink,
            } => {
                msg.header.scope = RouteScope::Universe;
                msg.header.kind = RouteType::Unicast;
                if let Some(i) = iface {
                    let idx = self.index(i)?;
                    msg.attributes.push(RouteAttribute::Oif(idx));
                }
                msg.attributes
                    .push(RouteAttribute::Gateway(route_addr(*gateway)));
                if *onlink {
                    msg.header.flags.insert(RouteFlags::Onlink);
                }
            }
            RouteKind::Unsupported { rtype } => {
                msg.header.scope = RouteScope::Universe;
                msg.header.kind = RouteType::from(*rtype);
            }
        }
        Ok(msg)
    }

    fn parse_route(msg: &RouteMessage, names: &HashMap<u32, String>) -> Option<KernelRoute> {
        let mut dst_ip = None;
        let mut gateway = None;
        let mut oif = None;
        let mut multipath = false;
        for a in &msg.attributes {
            match a {
                RouteAttribute::Destination(d) => dst_ip = from_route_addr(d),
                RouteAttribute::Gateway(g) => gateway = from_route_addr(g),
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::MultiPath(_) => multipath = true,
                _ => {}
            }
        }
        let dst_ip = dst_ip.unwrap_or(match msg.header.address_family {
            AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        });
        let dst = IpNet::new(dst_ip, msg.header.destination_prefix_length).ok()?;
        let iface = |i: u32| names.get(&i).cloned().unwrap_or_else(|| format!("if{i}"));
        let kind = match (msg.header.kind, gateway, oif) {
            (RouteType::BlackHole, _, _) => RouteKind::Blackhole,
            (RouteType::Unicast, _, _) if multipath => RouteKind::Unsupported {
                rtype: u8::from(RouteType::Unicast),
            },
            (RouteType::Unicast, Some(gw), o) => RouteKind::Via {
                gateway: gw,
                iface: o.map(iface),
                onlink: msg.header.flags.contains(RouteFlags::Onlink),
            },
            (RouteType::Unicast, None, Some(o)) => RouteKind::Dev { iface: iface(o) },
            (t, _, _) => RouteKind::Unsupported { rtype: u8::from(t) },
        };
        Some(KernelRoute {
            dst,
            kind,
            protocol: u8::from(msg.header.protocol),
        })
    }

    /// Sends the requests that could be built in one batch; a request that
    /// could not be built keeps its error. None: the batch socket is
    /// missing or lost track of the answers (nothing is known).
    fn send_batch(
        &mut self,
        msgs: Vec<Result<(u16, RouteNetlinkMessage), NetlinkError>>,
        context: &dyn Fn(usize) -> String,
    ) -> Option<Vec<Result<(), NetlinkError>>> {
        let batch = self.batch.as_mut()?;
        let mut out: Vec<Result<(), NetlinkError>> = Vec::with_capacity(msgs.len());
        let mut sent = Vec::with_capacity(msgs.len());
        let mut slots = Vec::with_capacity(msgs.len());
        for (i, m) in msgs.into_iter().enumerate() {
            match m {
                Ok(m) => {
                    sent.push(m);
                    slots.push(i);
                    out.push(Ok(()));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        let errnos = batch.send(sent)?;
        for (slot, errno) in slots.into_iter().zip(errnos) {
            if errno != 0 {
                out[slot] = Err(NetlinkError::from_errno(errno, &context(slot)));
            }
        }
        Some(out)
    }

    /// One request per route, many in flight, each acknowledged.
    fn pipelined_replace(&mut self, routes: &[KernelRoute]) -> Vec<Result<(), NetlinkError>> {
        let msgs: Vec<Result<RouteMessage, NetlinkError>> =
            routes.iter().map(|r| self.route_message(r)).collect();
        let handle = self.handle.clone();
        self.rt.block_on(
            futures_util::stream::iter(msgs.into_iter().zip(routes).map(|(m, route)| {
                let handle = handle.clone();
                async move {
                    handle
                        .route()
                        .add(m?)
                        .replace()
                        .execute()
                        .await
                        .map_err(|e| nl_err(e, &format!("replace route {route}")))
                }
            }))
            .buffered(PIPELINE)
            .collect::<Vec<_>>(),
        )
    }

    fn pipelined_del(&mut self, routes: &[KernelRoute]) -> Vec<Result<(), NetlinkError>> {
        let handle = self.handle.clone();
        self.rt.block_on(
            futures_util::stream::iter(routes.iter().map(|route| {
                let handle = handle.clone();
                async move {
                    handle
                        .route()
                        .del(del_message(route))
                        .execute()
                        .await
                        .map_err(|e| nl_err(e, &format!("delete route {route}")))
                }
            }))
            .buffered(PIPELINE)
            .collect::<Vec<_>>(),
        )
    }

    fn neighbour_message(idx: u32, family: AddressFamily) -> NeighbourMessage {
        let mut msg = NeighbourMessage::default();
        msg.header.family = family;
        msg.header.ifindex = idx;
        msg
    }

    fn dump_neighbours(
        &mut self,
        family: AddressFamily,
    ) -> Result<Vec<NeighbourMessage>, NetlinkError> {
        let handle = self.handle.clone();
        self.rt
            .block_on(async {
                handle
                    .neighbours()
                    .get()
                    .set_address_family(family)
                    .execute()
                    .try_collect()
                    .await
            })
            .map_err(|e| nl_err(e, "dump neighbours"))
    }
}

impl NetlinkBackend for RtNetlink {
    fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        self.dump_links()
    }

    fn addrs(&mut self) -> Result<Vec<Addr>, NetlinkError> {
        let names = self.name_map()?;
        let handle = self.handle.clone();
        let msgs: Vec<_> = self
            .rt
            .block_on(async { handle.address().get().execute().try_collect().await })
            .map_err(|e| nl_err(e, "dump addresses"))?;
        let mut out = Vec::new();
        for m in msgs {
            let mut local = None;
            let mut address = None;
            for a in &m.attributes {
                match a {
                    AddressAttribute::Local(ip) => local = Some(*ip),
                    AddressAttribute::Address(ip) => address = Some(*ip),
                    _ => {}
                }
            }
            let Some(ip) = local.or(address) else {
                continue;
            };
            let Ok(addr) = IpNet::new(ip, m.header.prefix_len) else {
                continue;
            };
            let iface = names
                .get(&m.header.index)
                .cloned()
                .unwrap_or_else(|| format!("if{}", m.header.index));
            out.push(Addr { iface, addr });
        }
        Ok(out)
    }

    fn add_addr(&mut self, iface: &str, addr: IpNet) -> Result<(), NetlinkError> {
        self.with_index(iface, |s, idx| {
            let handle = s.handle.clone();
            s.rt.block_on(async {
                handle
                    .address()
                    .add(idx, addr.addr(), addr.prefix_len())
                    .execute()
                    .await
            })
            .map_err(|e| nl_err(e, &format!("add address {addr} to {iface}")))
        })
    }

    fn del_addr(&mut self, iface: &str, addr: IpNet) -> Result<(), NetlinkError> {
        let idx = self.index(iface)?;
        let handle = self.handle.clone();
        let msgs: Vec<_> = self
            .rt
            .block_on(async {
                handle
                    .address()
                    .get()
                    .set_link_index_filter(idx)
                    .execute()
                    .try_collect()
                    .await
            })
            .map_err(|e| nl_err(e, "dump addresses"))?;
        let found = msgs.into_iter().find(|m| {
            m.header.index == idx
                && m.header.prefix_len == addr.prefix_len()
                && m.attributes.iter().any(|a| {
                    matches!(a, AddressAttribute::Local(ip) | AddressAttribute::Address(ip)
                        if *ip == addr.addr())
                })
        });
        let Some(msg) = found else {
            return Err(NetlinkError::new(
                ErrorKind::NotFound,
                format!("no address {addr} on {iface}"),
            ));
        };
        let handle = self.handle.clone();
        self.rt
            .block_on(async { handle.address().del(msg).execute().await })
            .map_err(|e| nl_err(e, &format!("delete address {addr} from {iface}")))
    }

    fn routes(&mut self, protocol: u8) -> Result<Vec<KernelRoute>, NetlinkError> {
        let names = self.name_map()?;
        let mut out = Vec::new();
        for v6 in [false, true] {
            let req = if v6 {
                RouteMessageBuilder::<Ipv6Addr>::new().build()
            } else {
                RouteMessageBuilder::<Ipv4Addr>::new().build()
            };
            let handle = self.handle.clone();
            let msgs: Vec<RouteMessage> = self
                .rt
                .block_on(async { handle.route().get(req).execute().try_collect().await })
                .map_err(|e| nl_err(e, "dump routes"))?;
            for m in &msgs {
                if u8::from(m.header.protocol) != protocol {
                    continue;
                }
                let table = m
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        RouteAttribute::Table(t) => Some(*t),
                        _ => None,
                    })
                    .unwrap_or(u32::from(m.header.table));
                if table != MAIN_TABLE {
                    continue;
                }
                if let Some(r) = Self::parse_route(m, &names) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    fn replace_route(&mut self, route: &KernelRoute) -> Result<(), NetlinkError> {
        let iface = route.iface().map(str::to_string);
        let attempt = |s: &mut Self| {
            let msg = s.route_message(route)?;
            let handle = s.handle.clone();
            s.rt.block_on(async { handle.route().add(msg).replace().execute().await })
                .map_err(|e| nl_err(e, &format!("replace route {route}")))
        };
        match attempt(self) {
            // A cached ifindex can be stale if the interface was recreated.
            Err(e) if e.kind == ErrorKind::NoDevice && iface.is_some() => {
                self.index_cache.clear();
                attempt(self)
            }
            r => r,
        }
    }

    fn del_route(&mut self, route: &KernelRoute) -> Result<(), NetlinkError> {
        let msg = del_message(route);
        let handle = self.handle.clone();
        self.rt
            .block_on(async { handle.route().del(msg).execute().await })
            .map_err(|e| nl_err(e, &format!("delete route {route}")))
    }

    fn replace_routes(&mut self, routes: &[KernelRoute]) -> Vec<Result<(), NetlinkError>> {
        let mut out = Vec::with_capacity(routes.len());
        for chunk in routes.chunks(BATCH_ROUTES) {
            let msgs: Vec<_> = chunk
                .iter()
                .map(|r| {
                    self.route_message(r).map(|m| {
                        (
                            NLM_F_CREATE | NLM_F_REPLACE,
                            RouteNetlinkMessage::NewRoute(m),
                        )
                    })
                })
                .collect();
            match self.send_batch(msgs, &|i| format!("replace route {}", chunk[i])) {
                Some(results) => out.extend(results),
                None => out.extend(self.pipelined_replace(chunk)),
            }
        }
        // A cached ifindex can be stale if the interface was recreated.
        let stale: Vec<usize> = (0..routes.len())
            .filter(|&i| {
                routes[i].iface().is_some()
                    && matches!(&out[i], Err(e) if e.kind == ErrorKind::NoDevice)
            })
            .collect();
        if !stale.is_empty() {
            self.index_cache.clear();
            for i in stale {
                out[i] = self.replace_route(&routes[i]);
            }
        }
        out
    }

    fn del_routes(&mut self, routes: &[KernelRoute]) -> Vec<Result<(), NetlinkError>> {
        let mut out = Vec::with_capacity(routes.len());
        for chunk in routes.chunks(BATCH_ROUTES) {
            let msgs = chunk
                .iter()
                .map(|r| Ok((0, RouteNetlinkMessage::DelRoute(del_message(r)))))
                .collect();
            match self.send_batch(msgs, &|i| format!("delete route {}", chunk[i])) {
                Some(results) => out.extend(results),
                None => out.extend(self.pipelined_del(chunk)),
            }
        }
        out
    }

    fn add_vxlan(&mut self, spec: &VxlanSpec) -> Result<(), NetlinkError> {
        let msg = LinkVxlan::new(&spec.name, spec.vni)
            .port(spec.port)
            .local(spec.local)
            .dev(spec.parent)
            .learning(false)
            .mtu(spec.mtu)
            .address(spec.mac.to_vec())
            .build();
        let handle = self.handle.clone();
        self.rt
            .block_on(async { handle.link().add(msg).execute().await })
            .map_err(|e| nl_err(e, &format!("create vxlan device {}", spec.name)))
    }

    fn add_ipip(&mut self, name: &str) -> Result<(), NetlinkError> {
        let msg = LinkIpIp::new(name).build();
        let handle = self.handle.clone();
        self.rt
            .block_on(async { handle.link().add(msg).execute().await })
            .map_err(|e| nl_err(e, &format!("create ipip device {name}")))
    }

    fn del_link(&mut self, name: &str) -> Result<(), NetlinkError> {
        let idx = self.index(name)?;
        let handle = self.handle.clone();
        let r = self
            .rt
            .block_on(async { handle.link().del(idx).execute().await })
            .map_err(|e| nl_err(e, &format!("delete link {name}")));
        self.index_cache.remove(name);
        r
    }

    fn set_link(&mut self, name: &str, change: &LinkChange) -> Result<(), NetlinkError> {
        let change = change.clone();
        self.with_index(name, |s, idx| {
            let mut b = LinkUnspec::new_with_index(idx);
            match change.up {
                Some(true) => b = b.up(),
                Some(false) => b = b.down(),
                None => {}
            }
            if let Some(mtu) = change.mtu {
                b = b.mtu(mtu);
            }
            if let Some(mac) = change.mac {
                b = b.address(mac.to_vec());
            }
            let msg = b.build();
            let handle = s.handle.clone();
            s.rt.block_on(async { handle.link().set(msg).execute().await })
                .map_err(|e| nl_err(e, &format!("set link {name}")))
        })
    }

    fn neighbours(&mut self, iface: &str) -> Result<Vec<Neighbour>, NetlinkError> {
        let idx = self.index(iface)?;
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            for m in self.dump_neighbours(family)? {
                if m.header.ifindex != idx {
                    continue;
                }
                let (ip, mac) = dest_and_mac(&m.attributes);
                if let Some(ip) = ip {
                    out.push(Neighbour {
                        iface: iface.to_string(),
                        ip,
                        mac,
                        permanent: m.header.state == NeighbourState::Permanent,
                    });
                }
            }
        }
        Ok(out)
    }

    fn replace_neighbour(&mut self, iface: &str, ip: IpAddr, mac: Mac) -> Result<(), NetlinkError> {
        self.with_index(iface, |s, idx| {
            let handle = s.handle.clone();
            s.rt.block_on(async {
                handle
                    .neighbours()
                    .add(idx, ip)
                    .link_layer_address(&mac)
                    .state(NeighbourState::Permanent)
                    .replace()
                    .execute()
                    .await
            })
            .map_err(|e| nl_err(e, &format!("replace neighbour {ip} on {iface}")))
        })
    }

    fn del_neighbour(&mut self, iface: &str, ip: IpAddr) -> Result<(), NetlinkError> {
        let idx = self.index(iface)?;
        let mut msg = Self::neighbour_message(idx, family_of(ip));
        msg.attributes
            .push(NeighbourAttribute::Destination(neigh_addr(ip)));
        let handle = self.handle.clone();
        self.rt
            .block_on(async { handle.neighbours().del(msg).execute().await })
            .map_err(|e| nl_err(e, &format!("delete neighbour {ip} on {iface}")))
    }

    fn fdb(&mut self, iface: &str) -> Result<Vec<FdbEntry>, NetlinkError> {
        let idx = self.index(iface)?;
        let mut out = Vec::new();
        for m in self.dump_neighbours(AddressFamily::Bridge)? {
            if m.header.ifindex != idx || !m.header.flags.contains(NeighbourFlags::Own) {
                continue;
            }
            let (dst, mac) = dest_and_mac(&m.attributes);
            if let Some(mac) = mac {
                out.push(FdbEntry {
                    iface: iface.to_string(),
                    mac,
                    dst,
                    permanent: m.header.state == NeighbourState::Permanent,
                });
            }
        }
        Ok(out)
    }

    fn replace_fdb(&mut self, iface: &str, mac: Mac, dst: IpAddr) -> Result<(), NetlinkError> {
        self.with_index(iface, |s, idx| {
            let handle = s.handle.clone();
            s.rt.block_on(async {
                handle
                    .neighbours()
                    .add_bridge(idx, &mac)
                    .flags(NeighbourFlags::Own)
                    .state(NeighbourState::Permanent)
                    .destination(dst)
                    .replace()
                    .execute()
                    .await
            })
            .map_err(|e| nl_err(e, &format!("replace fdb entry on {iface}")))
        })
    }

    fn del_fdb(&mut self, iface: &str, mac: Mac, dst: IpAddr) -> Result<(), NetlinkError> {
        let idx = self.index(iface)?;
        let mut msg = Self::neighbour_message(idx, AddressFamily::Bridge);
        msg.header.flags = NeighbourFlags::Own;
        msg.header.state = NeighbourState::Permanent;
        msg.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        msg.attributes
            .push(NeighbourAttribute::Destination(neigh_addr(dst)));
        let handle = self.handle.clone();
        self.rt
            .block_on(async { handle.neighbours().del(msg).execute().await })
            .map_err(|e| nl_err(e, &format!("delete fdb entry on {iface}")))
    }
}

/// Requests after which a pipelined batch waits for answers.
const PIPELINE: usize = 512;

/// A delete that matches by destination, table, type and protocol only:
/// the kernel then never deletes a route with another protocol (not ours).
fn del_message(route: &KernelRoute) -> RouteMessage {
    let mut msg = base_message(route);
    msg.header.scope = RouteScope::NoWhere;
    msg.header.kind = match route.kind {
        RouteKind::Blackhole => RouteType::BlackHole,
        RouteKind::Unsupported { rtype } => RouteType::from(rtype),
        _ => RouteType::Unicast,
    };
    msg
}

/// A main-table message for the route's destination and protocol.
fn base_message(route: &KernelRoute) -> RouteMessage {
    let dst_ip = route.dst.network();
    let mut msg = match dst_ip {
        IpAddr::V4(_) => RouteMessageBuilder::<Ipv4Addr>::new().build(),
        IpAddr::V6(_) => RouteMessageBuilder::<Ipv6Addr>::new().build(),
    };
    msg.header.destination_prefix_length = route.dst.prefix_len();
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::from(route.protocol);
    msg.attributes
        .push(RouteAttribute::Destination(route_addr(dst_ip)));
    msg
}
