//! The VXLAN device (`vxlan.calico`) and its per-remote-VTEP entries.
//!
//! While at least one IPv4 pool uses VXLAN (Always or CrossSubnet) and this
//! node's VTEP is known, the manager keeps: the device (VNI and UDP port from
//! config, local address = this node's IP, parent = the interface holding
//! it, no learning, MTU host − 50 unless configured, the VTEP MAC, up), the
//! tunnel address on it, and for every remote VTEP a permanent ARP entry
//! (tunnel IP → MAC) and a permanent FDB entry (MAC → node IP, self). When
//! no pool uses VXLAN any more the device is deleted, which drops its
//! entries and routes with it.
//!
//! The device belongs to Calico, so every permanent entry on it that is not
//! desired is removed (after `InSync`). Kernel state is read once (start or
//! `resync`) and then diffed in memory.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use calico_calc::model::{Encap, HostConfig, Pool, Update, Vtep};
use ipnet::IpNet;
use regex::Regex;

use crate::condition::Condition;
use crate::mtu;
use crate::netlink::{
    format_mac, parse_mac, ErrorKind, Link, LinkChange, Mac, NetlinkBackend, VxlanSpec,
};
use crate::routes::VXLAN_IFACE;
use crate::{ApplyStats, DataplaneError, Manager};

pub const DEFAULT_VXLAN_VNI: u32 = 4096;
pub const DEFAULT_VXLAN_PORT: u16 = 4789;

#[derive(Clone, Debug)]
pub struct VxlanManagerConfig {
    /// This node's name: a `VtepUpsert` for it describes the local VTEP.
    pub node_name: String,
    pub iface: String,
    /// `mtuIfacePattern` for the host MTU.
    pub mtu_pattern: Regex,
}

impl VxlanManagerConfig {
    pub fn new(node_name: impl Into<String>) -> Self {
        VxlanManagerConfig {
            node_name: node_name.into(),
            iface: VXLAN_IFACE.to_string(),
            mtu_pattern: mtu::default_pattern(),
        }
    }
}

/// This node's VTEP: the tunnel address (from IPAM), the device MAC and the
/// node address the tunnel runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalVtep {
    pub tunnel_ip: Ipv4Addr,
    pub mac: Mac,
    pub node_ip: Ipv4Addr,
}

pub struct VxlanManager<B> {
    nl: B,
    cfg: VxlanManagerConfig,
    /// Names of IPv4 pools that use VXLAN.
    vxlan_pools: Vec<String>,
    host: Option<HostConfig>,
    local: Option<LocalVtep>,
    remotes: BTreeMap<String, Vtep>,
    dirty: bool,
    /// Re-read the device's neighbours/FDB on the next apply.
    need_read: bool,
    in_sync: bool,
    neigh_actual: BTreeMap<Ipv4Addr, Mac>,
    fdb_actual: BTreeMap<Mac, IpAddr>,
    generation: u64,
    condition: Option<Condition>,
}

impl<B: NetlinkBackend> VxlanManager<B> {
    pub fn new(nl: B, cfg: VxlanManagerConfig) -> Self {
        VxlanManager {
            nl,
            cfg,
            vxlan_pools: Vec::new(),
            host: None,
            local: None,
            remotes: BTreeMap::new(),
            dirty: true,
            need_read: true,
            in_sync: false,
            neigh_actual: BTreeMap::new(),
            fdb_actual: BTreeMap::new(),
            generation: 0,
            condition: None,
        }
    }

    /// Sets this node's VTEP (tunnel address from IPAM, MAC, node address).
    pub fn set_local_vtep(&mut self, tunnel_ip: Ipv4Addr, mac: Mac, node_ip: Ipv4Addr) {
        let v = LocalVtep {
            tunnel_ip,
            mac,
            node_ip,
        };
        if self.local != Some(v) {
            self.local = Some(v);
            self.dirty = true;
        }
    }

    pub fn local_vtep(&self) -> Option<LocalVtep> {
        self.local
    }

    /// Bumped whenever the device is created or deleted; the kernel drops
    /// the device's routes with it, so the route manager must rewrite them
    /// (see `RouteManager::on_interface_update`).
    pub fn device_generation(&self) -> u64 {
        self.generation
    }

    /// True while some pool uses VXLAN.
    pub fn wanted(&self) -> bool {
        !self.vxlan_pools.is_empty()
    }

    pub fn conditions(&self) -> Vec<Condition> {
        self.condition.iter().cloned().collect()
    }

    fn pending(&mut self, reason: String) -> Result<ApplyStats, DataplaneError> {
        let c = Condition::VxlanPending { reason };
        if self.condition.as_ref() != Some(&c) {
            tracing::info!(condition = %c, "VXLAN pending");
        }
        self.condition = Some(c);
        Ok(ApplyStats::default())
    }

    fn desired_neighbours(&self) -> BTreeMap<Ipv4Addr, Mac> {
        self.remote_vteps()
            .map(|(v, mac, _)| (v.tunnel_ip, mac))
            .collect()
    }

    fn desired_fdb(&self) -> BTreeMap<Mac, IpAddr> {
        self.remote_vteps()
            .map(|(_, mac, ip)| (mac, IpAddr::V4(ip)))
            .collect()
    }

    /// Remote VTEPs that can be programmed on an IPv4 device.
    fn remote_vteps(&self) -> impl Iterator<Item = (&Vtep, Mac, Ipv4Addr)> {
        self.remotes.values().filter_map(|v| {
            let mac = parse_mac(&v.mac)?;
            match v.node_ip {
                IpAddr::V4(ip) => Some((v, mac, ip)),
                IpAddr::V6(_) => None,
            }
        })
    }

    fn read_entries(&mut self) -> Result<(), DataplaneError> {
        let iface = self.cfg.iface.clone();
        self.neigh_actual = self
            .nl
            .neighbours(&iface)?
            .into_iter()
            .filter(|n| n.permanent)
            .filter_map(|n| match (n.ip, n.mac) {
                (IpAddr::V4(ip), Some(mac)) => Some((ip, mac)),
                _ => None,
            })
            .collect();
        self.fdb_actual = self
            .nl
            .fdb(&iface)?
            .into_iter()
            .filter_map(|f| Some((f.mac, f.dst?)))
            .collect();
        Ok(())
    }

    fn delete_device(&mut self, stats: &mut ApplyStats) -> Result<(), DataplaneError> {
        match self.nl.del_link(&self.cfg.iface) {
            Ok(()) => {
                stats.writes += 1;
                self.generation += 1;
                tracing::info!(iface = %self.cfg.iface, "deleted VXLAN device");
            }
            Err(e) if matches!(e.kind, ErrorKind::NoDevice | ErrorKind::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        self.neigh_actual.clear();
        self.fdb_actual.clear();
        Ok(())
    }

    fn device_matches(link: &Link, spec: &VxlanSpec) -> bool {
        link.kind.as_deref() == Some("vxlan")
            && link.vxlan.as_ref().is_some_and(|v| {
                v.vni == spec.vni
                    && v.port == spec.port
                    && v.local == Some(spec.local)
                    && v.parent == Some(spec.parent)
                    && !v.learning
            })
    }

    fn do_apply(&mut self, stats: &mut ApplyStats) -> Result<(), DataplaneError> {
        let iface = self.cfg.iface.clone();
        if !self.wanted() {
            self.condition = None;
            if !self.in_sync {
                // Deleting waits for the complete snapshot.
                return Ok(());
            }
            if self.nl.links()?.iter().any(|l| l.name == iface) {
                self.delete_device(stats)?;
            }
            self.need_read = false;
            self.dirty = false;
            return Ok(());
        }
        let Some(local) = self.local else {
            self.pending("this node's VTEP (tunnel address and MAC) is not known yet".into())?;
            return Ok(());
        };
        let links = self.nl.links()?;
        let addrs = self.nl.addrs()?;
        let parent_name = addrs
            .iter()
            .find(|a| a.addr.addr() == IpAddr::V4(local.node_ip) && a.iface != iface)
            .map(|a| a.iface.clone());
        let Some(parent) = parent_name
            .as_ref()
            .and_then(|n| links.iter().find(|l| &l.name == n))
        else {
            self.pending(format!(
                "no interface holds this node's address {}",
                local.node_ip
            ))?;
            return Ok(());
        };
        let host_mtu = mtu::host_mtu(
            links.iter().map(|l| (l.name.as_str(), l.mtu)),
            &self.cfg.mtu_pattern,
        );
        let cfg = self.host.as_ref();
        let spec = VxlanSpec {
            name: iface.clone(),
            vni: cfg.map_or(DEFAULT_VXLAN_VNI, |c| c.vxlan_vni),
            port: cfg.map_or(DEFAULT_VXLAN_PORT, |c| c.vxlan_port),
            local: local.node_ip,
            parent: parent.index,
            mtu: mtu::vxlan_mtu(host_mtu, cfg.map_or(0, |c| c.vxlan_mtu)),
            mac: local.mac,
        };

        let existing = links.iter().find(|l| l.name == iface);
        let fresh = match existing {
            Some(l) if Self::device_matches(l, &spec) => {
                let change = LinkChange {
                    up: (!l.up).then_some(true),
                    mtu: (l.mtu != spec.mtu).then_some(spec.mtu),
                    mac: (l.mac != Some(spec.mac)).then_some(spec.mac),
                };
                if change != LinkChange::default() {
                    self.nl.set_link(&iface, &change)?;
                    stats.writes += 1;
                }
                false
            }
            other => {
                if other.is_some() {
                    tracing::info!(%iface, "VXLAN device settings changed; recreating it");
                    self.delete_device(stats)?;
                }
                self.nl.add_vxlan(&spec)?;
                self.generation += 1;
                stats.writes += 1;
                self.nl.set_link(
                    &iface,
                    &LinkChange {
                        up: Some(true),
                        ..Default::default()
                    },
                )?;
                stats.writes += 1;
                tracing::info!(%iface, vni = spec.vni, port = spec.port, local = %spec.local,
                    parent = %parent.name, mtu = spec.mtu, "created VXLAN device");
                self.neigh_actual.clear();
                self.fdb_actual.clear();
                true
            }
        };
        if !fresh && self.need_read {
            self.read_entries()?;
        }
        self.need_read = false;

        // Tunnel address: exactly one IPv4 address, ours.
        let want_addr = IpNet::new(IpAddr::V4(local.tunnel_ip), 32).expect("/32");
        let on_dev: Vec<IpNet> = if fresh {
            Vec::new()
        } else {
            addrs
                .iter()
                .filter(|a| a.iface == iface && a.addr.addr().is_ipv4())
                .map(|a| a.addr)
                .collect()
        };
        if !on_dev.contains(&want_addr) {
            match self.nl.add_addr(&iface, want_addr) {
                Ok(()) => stats.writes += 1,
                Err(e) if e.kind == ErrorKind::Exists => {}
                Err(e) => return Err(e.into()),
            }
        }
        for stale in on_dev.into_iter().filter(|a| *a != want_addr) {
            match self.nl.del_addr(&iface, stale) {
                Ok(()) => stats.writes += 1,
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }

        // ARP entries.
        let want = self.desired_neighbours();
        for (ip, mac) in &want {
            if self.neigh_actual.get(ip) != Some(mac) {
                self.nl.replace_neighbour(&iface, IpAddr::V4(*ip), *mac)?;
                stats.writes += 1;
                self.neigh_actual.insert(*ip, *mac);
            }
        }
        let stale: Vec<Ipv4Addr> = self
            .neigh_actual
            .keys()
            .filter(|ip| !want.contains_key(ip))
            .copied()
            .collect();
        let mut deferred = false;
        for ip in stale {
            if !self.in_sync {
                deferred = true;
                continue;
            }
            match self.nl.del_neighbour(&iface, IpAddr::V4(ip)) {
                Ok(()) => stats.writes += 1,
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            self.neigh_actual.remove(&ip);
        }

        // FDB entries.
        let want = self.desired_fdb();
        for (mac, dst) in &want {
            if self.fdb_actual.get(mac) != Some(dst) {
                if let Some(old) = self.fdb_actual.get(mac).copied() {
                    // A MAC can have several remotes; drop the old one.
                    match self.nl.del_fdb(&iface, *mac, old) {
                        Ok(()) => stats.writes += 1,
                        Err(e) if e.kind == ErrorKind::NotFound => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                self.nl.replace_fdb(&iface, *mac, *dst)?;
                stats.writes += 1;
                self.fdb_actual.insert(*mac, *dst);
            }
        }
        let stale: Vec<(Mac, IpAddr)> = self
            .fdb_actual
            .iter()
            .filter(|(m, _)| !want.contains_key(*m))
            .map(|(m, d)| (*m, *d))
            .collect();
        for (mac, dst) in stale {
            if !self.in_sync {
                deferred = true;
                continue;
            }
            match self.nl.del_fdb(&iface, mac, dst) {
                Ok(()) => stats.writes += 1,
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            tracing::debug!(mac = %format_mac(&mac), %dst, "deleted stale FDB entry");
            self.fdb_actual.remove(&mac);
        }

        self.condition = None;
        self.dirty = deferred;
        Ok(())
    }
}

impl<B: NetlinkBackend> Manager for VxlanManager<B> {
    fn on_update(&mut self, update: &Update) {
        match update {
            Update::Pools(pools) => {
                let names: Vec<String> = pools
                    .iter()
                    .filter(|p: &&Pool| p.vxlan != Encap::Never && p.cidr.addr().is_ipv4())
                    .map(|p| p.name.clone())
                    .collect();
                if names != self.vxlan_pools {
                    self.vxlan_pools = names;
                    self.dirty = true;
                }
            }
            Update::Config(c) if self.host.as_ref() != Some(c) => {
                self.host = Some(c.clone());
                self.dirty = true;
            }
            Update::VtepUpsert(v) => {
                if v.node == self.cfg.node_name {
                    match (v.node_ip, parse_mac(&v.mac)) {
                        (IpAddr::V4(node_ip), Some(mac)) => {
                            self.set_local_vtep(v.tunnel_ip, mac, node_ip)
                        }
                        _ => tracing::warn!(vtep = ?v, "unusable local VTEP"),
                    }
                } else if self.remotes.get(&v.node) != Some(v) {
                    if parse_mac(&v.mac).is_none() || v.node_ip.is_ipv6() {
                        tracing::warn!(vtep = ?v, "remote VTEP has a bad MAC or an IPv6 address; skipped");
                    }
                    self.remotes.insert(v.node.clone(), v.clone());
                    self.dirty = true;
                }
            }
            Update::VtepRemove { node } => {
                self.dirty |= self.remotes.remove(node).is_some();
            }
            Update::InSync if !self.in_sync => {
                self.in_sync = true;
                self.dirty = true;
            }
            _ => {}
        }
    }

    fn apply(&mut self) -> Result<ApplyStats, DataplaneError> {
        if !self.dirty && !self.need_read {
            return Ok(ApplyStats::default());
        }
        let mut stats = ApplyStats::default();
        self.do_apply(&mut stats)?;
        Ok(stats)
    }

    fn resync(&mut self) {
        self.need_read = true;
        self.dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{FakeNetlink, Neighbour};
    use calico_calc::model::EndpointToHostAction;

    fn pools(vxlan: Encap) -> Update {
        Update::Pools(vec![Pool {
            name: "pool-a".into(),
            cidr: "198.18.0.0/16".parse().unwrap(),
            nat_outgoing: false,
            vxlan,
            ipip: Encap::Never,
            disabled: false,
        }])
    }

    fn config(vni: u32, mtu: u32) -> Update {
        Update::Config(HostConfig {
            interface_prefixes: vec!["tap".into()],
            default_endpoint_to_host_action: EndpointToHostAction::Drop,
            failsafe_inbound: vec![],
            failsafe_outbound: vec![],
            vxlan_vni: vni,
            vxlan_port: 4789,
            vxlan_mtu: mtu,
            log_prefix: "calico-packet".into(),
            metadata: None,
        })
    }

    fn vtep(node: &str, node_ip: &str, tunnel: &str, mac: &str) -> Update {
        Update::VtepUpsert(Vtep {
            node: node.into(),
            node_ip: node_ip.parse().unwrap(),
            tunnel_ip: tunnel.parse().unwrap(),
            mac: mac.into(),
        })
    }

    fn setup() -> (FakeNetlink, VxlanManager<FakeNetlink>) {
        let nl = FakeNetlink::new();
        nl.add_link("eth0", "veth", 1500, true);
        nl.add_address("eth0", "192.0.2.1/24");
        let m = VxlanManager::new(nl.clone(), VxlanManagerConfig::new("node1"));
        (nl, m)
    }

    fn neighbours(nl: &FakeNetlink) -> Vec<(IpAddr, String)> {
        nl.all_neighbours()
            .into_iter()
            .map(|n: Neighbour| (n.ip, format_mac(&n.mac.unwrap())))
            .collect()
    }

    fn fdb(nl: &FakeNetlink) -> Vec<(String, IpAddr)> {
        nl.all_fdb()
            .into_iter()
            .map(|f| (format_mac(&f.mac), f.dst.unwrap()))
            .collect()
    }

    #[test]
    fn device_lifecycle_follows_pools_and_vteps() {
        let (nl, mut m) = setup();
        m.on_update(&config(4096, 0));
        m.on_update(&pools(Encap::Never));
        m.on_update(&vtep(
            "node1",
            "192.0.2.1",
            "198.18.1.0",
            "66:00:00:00:00:01",
        ));
        m.on_update(&vtep(
            "node2",
            "192.0.2.2",
            "198.18.2.0",
            "66:00:00:00:00:02",
        ));
        m.on_update(&Update::InSync);
        assert_eq!(m.apply().unwrap().writes, 0);
        assert!(nl.link(VXLAN_IFACE).is_none());

        // A VXLAN pool appears.
        m.on_update(&pools(Encap::Always));
        m.apply().unwrap();
        let dev = nl.link(VXLAN_IFACE).expect("device created");
        let vx = dev.vxlan.clone().unwrap();
        assert_eq!((vx.vni, vx.port, vx.learning), (4096, 4789, false));
        assert_eq!(vx.local, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(vx.parent, nl.link("eth0").map(|l| l.index));
        assert_eq!(dev.mtu, 1450);
        assert_eq!(dev.mac, parse_mac("66:00:00:00:00:01"));
        assert!(dev.up);
        assert!(nl
            .all_addrs()
            .iter()
            .any(|a| a.iface == VXLAN_IFACE && a.addr == "198.18.1.0/32".parse().unwrap()));
        assert_eq!(
            neighbours(&nl),
            vec![("198.18.2.0".parse().unwrap(), "66:00:00:00:00:02".into())]
        );
        assert_eq!(
            fdb(&nl),
            vec![("66:00:00:00:00:02".into(), "192.0.2.2".parse().unwrap())]
        );
        assert_eq!(m.device_generation(), 1);
        nl.take_ops();
        assert_eq!(m.apply().unwrap().writes, 0);
        m.on_update(&vtep(
            "node2",
            "192.0.2.2",
            "198.18.2.0",
            "66:00:00:00:00:02",
        ));
        assert_eq!(m.apply().unwrap().writes, 0);
        assert!(nl.take_ops().is_empty());

        // A third node, then node2 leaves.
        m.on_update(&vtep(
            "node3",
            "192.0.2.3",
            "198.18.3.0",
            "66:00:00:00:00:03",
        ));
        assert_eq!(m.apply().unwrap().writes, 2);
        m.on_update(&Update::VtepRemove {
            node: "node2".into(),
        });
        assert_eq!(m.apply().unwrap().writes, 2);
        assert_eq!(
            neighbours(&nl),
            vec![("198.18.3.0".parse().unwrap(), "66:00:00:00:00:03".into())]
        );
        assert_eq!(
            fdb(&nl),
            vec![("66:00:00:00:00:03".into(), "192.0.2.3".parse().unwrap())]
        );
        // node3 moves to another address: FDB follows.
        m.on_update(&vtep(
            "node3",
            "192.0.2.4",
            "198.18.3.0",
            "66:00:00:00:00:03",
        ));
        m.apply().unwrap();
        assert_eq!(
            fdb(&nl),
            vec![("66:00:00:00:00:03".into(), "192.0.2.4".parse().unwrap())]
        );

        // No pool uses VXLAN any more: the device goes.
        m.on_update(&pools(Encap::Never));
        assert_eq!(m.apply().unwrap().writes, 1);
        assert!(nl.link(VXLAN_IFACE).is_none());
        assert!(nl.all_neighbours().is_empty() && nl.all_fdb().is_empty());
        assert_eq!(m.device_generation(), 2);
        assert_eq!(m.apply().unwrap().writes, 0);
    }

    #[test]
    fn changed_vni_recreates_the_device_and_mtu_follows_config() {
        let (nl, mut m) = setup();
        m.on_update(&config(4096, 0));
        m.on_update(&pools(Encap::CrossSubnet));
        m.set_local_vtep(
            "198.18.1.0".parse().unwrap(),
            parse_mac("66:00:00:00:00:01").unwrap(),
            "192.0.2.1".parse().unwrap(),
        );
        m.on_update(&vtep(
            "node2",
            "192.0.2.2",
            "198.18.2.0",
            "66:00:00:00:00:02",
        ));
        m.apply().unwrap();
        let g = m.device_generation();
        m.on_update(&config(4097, 0));
        m.apply().unwrap();
        assert_eq!(nl.link(VXLAN_IFACE).unwrap().vxlan.unwrap().vni, 4097);
        assert!(m.device_generation() > g);
        let g = m.device_generation();
        assert_eq!(nl.all_neighbours().len(), 1, "entries re-added");
        assert_eq!(nl.all_fdb().len(), 1);
        // MTU override: adjusted in place, not recreated.
        m.on_update(&config(4097, 1400));
        nl.take_ops();
        assert_eq!(m.apply().unwrap().writes, 1);
        assert_eq!(nl.link(VXLAN_IFACE).unwrap().mtu, 1400);
        assert_eq!(m.device_generation(), g);
    }

    #[test]
    fn pending_until_local_vtep_and_node_address_are_known() {
        let (nl, mut m) = setup();
        m.on_update(&pools(Encap::Always));
        m.apply().unwrap();
        assert!(matches!(
            m.conditions().as_slice(),
            [Condition::VxlanPending { .. }]
        ));
        m.set_local_vtep(
            "198.18.1.0".parse().unwrap(),
            parse_mac("66:00:00:00:00:01").unwrap(),
            "192.0.2.99".parse().unwrap(),
        );
        m.apply().unwrap();
        assert!(m.conditions()[0].to_string().contains("192.0.2.99"));
        assert!(nl.link(VXLAN_IFACE).is_none());
        nl.add_address("eth0", "192.0.2.99/24");
        m.apply().unwrap();
        assert!(m.conditions().is_empty());
        assert!(nl.link(VXLAN_IFACE).is_some());
    }

    #[test]
    fn resync_repairs_entries_and_restart_writes_nothing() {
        let (nl, mut m) = setup();
        m.on_update(&pools(Encap::Always));
        m.on_update(&vtep(
            "node1",
            "192.0.2.1",
            "198.18.1.0",
            "66:00:00:00:00:01",
        ));
        m.on_update(&vtep(
            "node2",
            "192.0.2.2",
            "198.18.2.0",
            "66:00:00:00:00:02",
        ));
        m.on_update(&Update::InSync);
        m.apply().unwrap();

        // Restart: a new manager with the same state writes nothing.
        let mut m2 = VxlanManager::new(nl.clone(), VxlanManagerConfig::new("node1"));
        m2.on_update(&pools(Encap::Always));
        m2.on_update(&vtep(
            "node1",
            "192.0.2.1",
            "198.18.1.0",
            "66:00:00:00:00:01",
        ));
        m2.on_update(&vtep(
            "node2",
            "192.0.2.2",
            "198.18.2.0",
            "66:00:00:00:00:02",
        ));
        nl.take_ops();
        assert_eq!(m2.apply().unwrap().writes, 0);
        m2.on_update(&Update::InSync);
        assert_eq!(m2.apply().unwrap().writes, 0);
        assert!(nl.take_ops().is_empty());

        // Drift: our ARP entry vanishes, a stale one appears.
        nl.remove_neighbour(VXLAN_IFACE, "198.18.2.0".parse().unwrap());
        NetlinkBackend::replace_neighbour(
            &mut nl.clone(),
            VXLAN_IFACE,
            "198.18.9.0".parse().unwrap(),
            [0x66, 0, 0, 0, 0, 9],
        )
        .unwrap();
        m2.resync();
        assert_eq!(m2.apply().unwrap().writes, 2);
        assert_eq!(
            neighbours(&nl),
            vec![("198.18.2.0".parse().unwrap(), "66:00:00:00:00:02".into())]
        );
    }

    #[test]
    fn nothing_is_deleted_before_in_sync() {
        let (nl, mut m) = setup();
        m.on_update(&pools(Encap::Always));
        m.on_update(&vtep(
            "node1",
            "192.0.2.1",
            "198.18.1.0",
            "66:00:00:00:00:01",
        ));
        m.on_update(&vtep(
            "node2",
            "192.0.2.2",
            "198.18.2.0",
            "66:00:00:00:00:02",
        ));
        m.on_update(&Update::InSync);
        m.apply().unwrap();
        // Restarted agent that has not yet heard of node2, nor of the pool.
        let mut m2 = VxlanManager::new(nl.clone(), VxlanManagerConfig::new("node1"));
        m2.on_update(&vtep(
            "node1",
            "192.0.2.1",
            "198.18.1.0",
            "66:00:00:00:00:01",
        ));
        assert_eq!(m2.apply().unwrap().writes, 0);
        assert!(nl.link(VXLAN_IFACE).is_some());
        m2.on_update(&pools(Encap::Always));
        assert_eq!(m2.apply().unwrap().writes, 0);
        assert_eq!(nl.all_neighbours().len(), 1);
        m2.on_update(&Update::InSync);
        assert_eq!(m2.apply().unwrap().writes, 2, "stale ARP + FDB removed");
        assert!(nl.all_neighbours().is_empty());
    }
}
