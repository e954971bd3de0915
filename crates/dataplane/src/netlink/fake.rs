//! An in-memory kernel for manager tests: links, addresses, main-table
//! routes, neighbours and FDB entries, with the kernel behaviours the
//! managers depend on (routes need an existing, up interface; deleting or
//! downing a link drops what hangs off it; replace semantics; deletes match
//! the protocol). Cloning shares the state, so a test keeps one handle to
//! inspect or disturb the "kernel" while a manager owns another.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::IpNet;

use super::{
    Addr, ErrorKind, FdbEntry, KernelRoute, Link, LinkChange, Mac, Neighbour, NetlinkBackend,
    NetlinkError, RouteKind, VxlanInfo, VxlanSpec,
};

#[derive(Debug, Default)]
struct State {
    links: BTreeMap<String, Link>,
    next_index: u32,
    addrs: Vec<Addr>,
    routes: Vec<KernelRoute>,
    neighbours: Vec<Neighbour>,
    fdb: Vec<FdbEntry>,
    ipip_supported: bool,
    /// Every successful write, in order, rendered as text.
    ops: Vec<String>,
    reads: usize,
    failures: HashMap<String, Vec<NetlinkError>>,
}

#[derive(Clone, Debug, Default)]
pub struct FakeNetlink {
    state: Arc<Mutex<State>>,
}

fn err(kind: ErrorKind, msg: impl Into<String>) -> NetlinkError {
    NetlinkError::new(kind, msg)
}

impl State {
    fn take_failure(&mut self, op: &str) -> Result<(), NetlinkError> {
        if let Some(list) = self.failures.get_mut(op) {
            if !list.is_empty() {
                return Err(list.remove(0));
            }
        }
        Ok(())
    }

    fn link_up(&self, name: &str) -> Result<&Link, NetlinkError> {
        let link = self
            .links
            .get(name)
            .ok_or_else(|| err(ErrorKind::NoDevice, format!("no device {name}")))?;
        if !link.up {
            return Err(err(ErrorKind::NetworkDown, format!("{name} is down")));
        }
        Ok(link)
    }

    fn connected_iface(&self, gw: IpAddr) -> Option<String> {
        self.addrs
            .iter()
            .filter(|a| a.addr.trunc().contains(&gw))
            .filter(|a| self.links.get(&a.iface).is_some_and(|l| l.up))
            .map(|a| a.iface.clone())
            .next()
    }

    fn drop_iface_objects(&mut self, name: &str, with_addrs: bool) {
        self.routes.retain(|r| r.iface() != Some(name));
        self.neighbours.retain(|n| n.iface != name);
        self.fdb.retain(|f| f.iface != name);
        if with_addrs {
            self.addrs.retain(|a| a.iface != name);
        }
    }
}

impl FakeNetlink {
    pub fn new() -> Self {
        Self::default()
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ----- test helpers (the orchestrator's / an admin's side) -----

    /// Adds an interface (as an orchestrator would); returns its index.
    pub fn add_link(&self, name: &str, kind: &str, mtu: u32, up: bool) -> u32 {
        let mut st = self.st();
        st.next_index += 1;
        let index = st.next_index;
        st.links.insert(
            name.to_string(),
            Link {
                index,
                name: name.to_string(),
                kind: Some(kind.to_string()),
                mtu,
                mac: Some([0x02, 0, 0, 0, (index >> 8) as u8, index as u8]),
                up,
                vxlan: None,
            },
        );
        index
    }

    /// Removes an interface and everything that hangs off it.
    pub fn remove_link(&self, name: &str) {
        let mut st = self.st();
        st.links.remove(name);
        st.drop_iface_objects(name, true);
    }

    /// Sets a link up/down behind the manager's back (down drops its routes).
    pub fn set_up(&self, name: &str, up: bool) {
        let mut st = self.st();
        if let Some(l) = st.links.get_mut(name) {
            l.up = up;
        }
        if !up {
            st.routes.retain(|r| r.iface() != Some(name));
        }
    }

    pub fn add_address(&self, iface: &str, addr: &str) {
        self.st().addrs.push(Addr {
            iface: iface.to_string(),
            addr: addr.parse().expect("address"),
        });
    }

    /// Inserts a route without any checks (pre-existing or foreign routes).
    pub fn insert_route(&self, route: KernelRoute) {
        let mut st = self.st();
        st.routes.retain(|r| r.dst != route.dst);
        st.routes.push(route);
    }

    /// Removes every route to `dst` (as `ip route del` by an admin would).
    pub fn remove_route(&self, dst: &str) {
        let dst: IpNet = dst.parse().expect("dst");
        self.st().routes.retain(|r| r.dst != dst);
    }

    pub fn remove_neighbour(&self, iface: &str, ip: IpAddr) {
        self.st()
            .neighbours
            .retain(|n| !(n.iface == iface && n.ip == ip));
    }

    pub fn all_routes(&self) -> Vec<KernelRoute> {
        let mut v = self.st().routes.clone();
        v.sort();
        v
    }

    pub fn route(&self, dst: &str) -> Option<KernelRoute> {
        let dst: IpNet = dst.parse().expect("dst");
        self.st().routes.iter().find(|r| r.dst == dst).cloned()
    }

    pub fn link(&self, name: &str) -> Option<Link> {
        self.st().links.get(name).cloned()
    }

    pub fn all_addrs(&self) -> Vec<Addr> {
        self.st().addrs.clone()
    }

    pub fn all_neighbours(&self) -> Vec<Neighbour> {
        self.st().neighbours.clone()
    }

    pub fn all_fdb(&self) -> Vec<FdbEntry> {
        self.st().fdb.clone()
    }

    /// Whether `add_ipip` succeeds (this project's CI kernel has no ipip).
    pub fn set_ipip_supported(&self, yes: bool) {
        self.st().ipip_supported = yes;
    }

    /// Makes the next call of `op` (a trait method name) fail with `kind`.
    pub fn fail_next(&self, op: &str, kind: ErrorKind) {
        self.st()
            .failures
            .entry(op.to_string())
            .or_default()
            .push(err(kind, format!("injected failure of {op}")));
    }

    /// Successful writes so far, as text.
    pub fn ops(&self) -> Vec<String> {
        self.st().ops.clone()
    }

    /// Returns and clears the write log.
    pub fn take_ops(&self) -> Vec<String> {
        std::mem::take(&mut self.st().ops)
    }

    /// Number of dump calls so far (links/addrs/routes/neighbours/fdb).
    pub fn reads(&self) -> usize {
        self.st().reads
    }
}

impl NetlinkBackend for FakeNetlink {
    fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let mut st = self.st();
        st.take_failure("links")?;
        st.reads += 1;
        Ok(st.links.values().cloned().collect())
    }

    fn addrs(&mut self) -> Result<Vec<Addr>, NetlinkError> {
        let mut st = self.st();
        st.take_failure("addrs")?;
        st.reads += 1;
        Ok(st.addrs.clone())
    }

    fn add_addr(&mut self, iface: &str, addr: IpNet) -> Result<(), NetlinkError> {
        let mut st = self.st();
        st.take_failure("add_addr")?;
        if !st.links.contains_key(iface) {
            return Err(err(ErrorKind::NoDevice, format!("no device {iface}")));
        }
        let a = Addr {
            iface: iface.to_string(),
            addr,
        };
        if st.addrs.contains(&a) {
            return Err(err(ErrorKind::Exists, "address exists"));
        }
        st.addrs.push(a);
        st.ops.push(format!("add_addr {addr} dev {iface}"));
        Ok(())
    }

    fn del_addr(&mut self, iface: &str, addr: IpNet) -> Result<(), NetlinkError> {
        let mut st = self.st();
        st.take_failure("del_addr")?;
        let before = st.addrs.len();
        st.addrs.retain(|a| !(a.iface == iface && a.addr == addr));
        if st.addrs.len() == before {
            return Err(err(ErrorKind::NotFound, "no such address"));
        }
        st.ops.push(format!("del_addr {addr} dev {iface}"));
        Ok(())
    }

    fn routes(&mut self, protocol: u8) -> Result<Vec<KernelRoute>, NetlinkError> {
        let mut st = self.st();
        st.take_failure("routes")?;
        st.reads += 1;
        Ok(st
            .routes
            .iter()
            .filter(|r| r.protocol == protocol)
            .cloned()
            .collect())
    }

    fn replace_route(&mut self, route: &KernelRoute) -> Result<(), NetlinkError> {
        let mut st = self.st();
        st.take_failure("replace_route")?;
        let mut stored = route.clone();
        match &route.kind {
            RouteKind::Dev { iface } => {
                st.link_up(iface)?;
            }
            RouteKind::Blackhole => {}
            RouteKind::Via {
                gateway,
                iface,
                onlink,
            } => match iface {
                Some(i) => {
                    st.link_up(i)?;
                    if !onlink && st.connected_iface(*gateway).as_deref() != Some(i.as_str()) {
                        return Err(err(ErrorKind::Unreachable, "gateway not on link"));
                    }
                }
                None => {
                    let i = st
                        .connected_iface(*gateway)
                        .ok_or_else(|| err(ErrorKind::Unreachable, "network unreachable"))?;
                    stored.kind = RouteKind::Via {
                        gateway: *gateway,
                        iface: Some(i),
                        onlink: *onlink,
                    };
                }
            },
            RouteKind::Unsupported { .. } => {
                return Err(err(ErrorKind::Other, "unsupported route type"));
            }
        }
        st.routes.retain(|r| r.dst != route.dst);
        st.routes.push(stored);
        st.ops.push(format!("replace_route {route}"));
        Ok(())
    }

    fn del_route(&mut self, route: &KernelRoute) -> Result<(), NetlinkError> {
        let mut st = self.st();
        st.take_failure("del_route")?;
        let pos = st
            .routes
            .iter()
            .position(|r| r.dst == route.dst && r.protocol == route.protocol)
            .ok_or_else(|| err(ErrorKind::NotFound, "no such route"))?;
        st.routes.remove(pos);
        st.ops.push(format!("del_route {route}"));
        Ok(())
    }

    fn add_vxlan(&mut self, spec: &VxlanSpec) -> Result<(), NetlinkError> {
        let mut st = self.st();
        st.take_failure("add_vxlan")?;
        if st.links.contains_key(&spec.name) {
            return Err(err(ErrorKind::Exists, "link exists"));
        }
        if !st.links.values().any(|l| l.index == spec.parent) {
            return Err(err(ErrorKind::NoDevice, "no parent device"));
        }
        st.next_index += 1;
        let index = st.next_index;
        st.links.insert(
            spec.name.clone(),
            Link {
                index,
                name: spec.name.clone(),
                kind: Some("vxlan".into()),
                mtu: spec.mtu,
                mac: Some(spec.mac),
                up: false,
                vxlan: Some(VxlanInfo {
                    vni: spec.vni,
                    port: spec.port,
                    local: Some(spec.local),
                    parent: Some(spec.parent),
                    learning: false,
                }),
            },
        );
        st.ops.push(format!(
            "add_vxlan {} id {} dstport {} local {} mtu {}",
            spec.name, spec.vni, spec.port, spec.local, spec.mtu
        ));
        Ok(())
    }

    fn add_ipip(&mut self, name: &str) -> Result<(), NetlinkError> {
        let mut st = self.st();
        st.take_failure("add_ipip")?;
        if !st.ipip_supported {
            return Err(err(
                ErrorKind::NotSupported,
                "create ipip link: Operation not supported",
            ));
        }
        if st.links.contains_key(name) {
            return Err(err(ErrorKind::Exists, "link exists"));
        }
        st.next_index += 1;
        let index = st.next_index;
        st.links.insert(
            name.to_string(),
            Link {
                index,
                name: name.to_string(),
                kind: Some("ipip".into()),
                mtu: 1480,
                mac: None,
                up: false,
                vxlan: None,
            },
        );
        st.ops.push(format!("add_ipip {name}"));
        Ok(())
    }

    fn del_link(&mut self, name: &str) -> Result<(), NetlinkError> {
        let mut st = self.st();
        st.take_failure("del_link")?;
        if st.links.remove(name).is_none() {
            return Err(err(ErrorKind::NoDevice, format!("no device {name}")));
        }
        st.drop_iface_objects(name, true);
        st.ops.push(format!("del_link {name}"));
        Ok(())
    }

    fn set_link(&mut self, name: &str, change: &LinkChange) -> Result<(), NetlinkError> {
        let mut st = self.st();
        st.take_failure("set_link")?;
        let link = st
            .links
            .get_mut(name)
            .ok_or_else(|| err(ErrorKind::NoDevice, format!("no device {name}")))?;
        if let Some(up) = change.up {
            link.up = up;
        }
        if let Some(mtu) = change.mtu {
            link.mtu = mtu;
        }
        if let Some(mac) = change.mac {
            link.mac = Some(mac);
        }
        if change.up == Some(false) {
            st.routes.retain(|r| r.iface() != Some(name));
        }
        st.ops.push(format!("set_link {name} {change:?}"));
        Ok(())
    }

    fn neighbours(&mut self, iface: &str) -> Result<Vec<Neighbour>, NetlinkError> {
        let mut st = self.st();
        st.take_failure("neighbours")?;
        st.reads += 1;
        Ok(st
            .neighbours
            .iter()
            .filter(|n| n.iface == iface)
            .cloned()
            .collect())
    }

    fn replace_neighbour(&mut self, iface: &str, ip: IpAddr, mac: Mac) -> Result<(), NetlinkError> {
        let mut st = self.st();
        st.take_failure("replace_neighbour")?;
        if !st.links.contains_key(iface) {
            return Err(err(ErrorKind::NoDevice, format!("no device {iface}")));
        }
        st.neighbours.retain(|n| !(n.iface == iface && n.ip == ip));
        st.neighbours.push(Neighbour {
            iface: iface.to_string(),
            ip,
            mac: Some(mac),
            permanent: true,
        });
        st.ops.push(format!(
            "replace_neighbour {ip} lladdr {} dev {iface}",
            super::format_mac(&mac)
        ));
        Ok(())
    }

    fn del_neighbour(&mut self, iface: &str, ip: IpAddr) -> Result<(), NetlinkError> {
        let mut st = self.st();
        st.take_failure("del_neighbour")?;
        let before = st.neighbours.len();
        st.neighbours.retain(|n| !(n.iface == iface && n.ip == ip));
        if before == st.neighbours.len() {
            return Err(err(ErrorKind::NotFound, "no such neighbour"));
        }
        st.ops.push(format!("del_neighbour {ip} dev {iface}"));
        Ok(())
    }

    fn fdb(&mut self, iface: &str) -> Result<Vec<FdbEntry>, NetlinkError> {
        let mut st = self.st();
        st.take_failure("fdb")?;
        st.reads += 1;
        Ok(st
            .fdb
            .iter()
            .filter(|f| f.iface == iface)
            .cloned()
            .collect())
    }

    fn replace_fdb(&mut self, iface: &str, mac: Mac, dst: IpAddr) -> Result<(), NetlinkError> {
        let mut st = self.st();
        st.take_failure("replace_fdb")?;
        if !st.links.contains_key(iface) {
            return Err(err(ErrorKind::NoDevice, format!("no device {iface}")));
        }
        st.fdb.retain(|f| !(f.iface == iface && f.mac == mac));
        st.fdb.push(FdbEntry {
            iface: iface.to_string(),
            mac,
            dst: Some(dst),
            permanent: true,
        });
        st.ops.push(format!(
            "replace_fdb {} dst {dst} dev {iface}",
            super::format_mac(&mac)
        ));
        Ok(())
    }

    fn del_fdb(&mut self, iface: &str, mac: Mac, dst: IpAddr) -> Result<(), NetlinkError> {
        let mut st = self.st();
        st.take_failure("del_fdb")?;
        let before = st.fdb.len();
        st.fdb
            .retain(|f| !(f.iface == iface && f.mac == mac && f.dst == Some(dst)));
        if before == st.fdb.len() {
            return Err(err(ErrorKind::NotFound, "no such fdb entry"));
        }
        st.ops.push(format!(
            "del_fdb {} dst {dst} dev {iface}",
            super::format_mac(&mac)
        ));
        Ok(())
    }
}
