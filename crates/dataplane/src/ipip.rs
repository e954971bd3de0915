//! The IP-in-IP tunnel device (`tunl0`) for `ipipMode` pools.
//!
//! While some IPv4 pool uses IPIP the manager makes sure `tunl0` exists (the
//! kernel creates it on its own in every namespace when ipip is built in;
//! otherwise creating it is the probe), is up, has MTU host − 20 and carries
//! the IPIP tunnel address when one is set. Routes over it come from BGP, as
//! upstream. On a kernel without ipip the probe fails with "not supported":
//! the manager then reports a [`Condition::MissingKernelFeature`] per IPIP
//! pool and returns success, so every other pool keeps working. The probe
//! result is remembered until `resync`, so there is no error storm.

use std::net::{IpAddr, Ipv4Addr};

use calico_calc::model::{Encap, Update};
use ipnet::IpNet;
use regex::Regex;

use crate::condition::{Condition, KernelFeature};
use crate::mtu;
use crate::netlink::{ErrorKind, LinkChange, NetlinkBackend};
use crate::{ApplyStats, DataplaneError, Manager};

pub const IPIP_IFACE: &str = "tunl0";

pub struct IpipManager<B> {
    nl: B,
    iface: String,
    mtu_pattern: Regex,
    ipip_pools: Vec<String>,
    tunnel_addr: Option<Ipv4Addr>,
    dirty: bool,
    /// `Some(detail)` once the probe found the kernel lacks ipip.
    unsupported: Option<String>,
}

impl<B: NetlinkBackend> IpipManager<B> {
    pub fn new(nl: B) -> Self {
        IpipManager {
            nl,
            iface: IPIP_IFACE.to_string(),
            mtu_pattern: mtu::default_pattern(),
            ipip_pools: Vec::new(),
            tunnel_addr: None,
            dirty: true,
            unsupported: None,
        }
    }

    pub fn with_mtu_pattern(mut self, pattern: Regex) -> Self {
        self.mtu_pattern = pattern;
        self
    }

    /// This node's IPIP tunnel address (Node `ipv4IPIPTunnelAddr`).
    pub fn set_tunnel_addr(&mut self, addr: Option<Ipv4Addr>) {
        if self.tunnel_addr != addr {
            self.tunnel_addr = addr;
            self.dirty = true;
        }
    }

    /// One condition per IPIP pool while the kernel lacks ipip.
    pub fn conditions(&self) -> Vec<Condition> {
        match &self.unsupported {
            None => Vec::new(),
            Some(detail) => self
                .ipip_pools
                .iter()
                .map(|pool| Condition::MissingKernelFeature {
                    pool: pool.clone(),
                    feature: KernelFeature::IpipTunnel,
                    detail: detail.clone(),
                })
                .collect(),
        }
    }

    /// True once the probe found that the kernel has no ipip support.
    pub fn ipip_missing(&self) -> bool {
        self.unsupported.is_some()
    }
}

impl<B: NetlinkBackend> Manager for IpipManager<B> {
    fn on_update(&mut self, update: &Update) {
        if let Update::Pools(pools) = update {
            let names: Vec<String> = pools
                .iter()
                .filter(|p| p.ipip != Encap::Never && p.cidr.addr().is_ipv4())
                .map(|p| p.name.clone())
                .collect();
            if names != self.ipip_pools {
                self.ipip_pools = names;
                self.dirty = true;
            }
        }
    }

    fn apply(&mut self) -> Result<ApplyStats, DataplaneError> {
        let mut stats = ApplyStats::default();
        if !self.dirty || self.ipip_pools.is_empty() || self.unsupported.is_some() {
            self.dirty = false;
            return Ok(stats);
        }
        let links = self.nl.links()?;
        let link = match links.iter().find(|l| l.name == self.iface) {
            Some(l) => l.clone(),
            None => match self.nl.add_ipip(&self.iface) {
                Ok(()) => {
                    stats.writes += 1;
                    let links = self.nl.links()?;
                    links
                        .into_iter()
                        .find(|l| l.name == self.iface)
                        .ok_or_else(|| DataplaneError::Netlink("tunl0 vanished".into()))?
                }
                Err(e) if e.kind == ErrorKind::NotSupported => {
                    let detail = format!("creating {} failed: {}", self.iface, e.message);
                    // Reported through `conditions()`; the agent logs each
                    // condition once, so a periodic re-probe stays quiet.
                    tracing::debug!(%detail, "kernel has no IP-in-IP support");
                    self.unsupported = Some(detail);
                    self.dirty = false;
                    return Ok(stats);
                }
                Err(e) => return Err(e.into()),
            },
        };
        let host = mtu::host_mtu(
            links.iter().map(|l| (l.name.as_str(), l.mtu)),
            &self.mtu_pattern,
        );
        let want_mtu = host.saturating_sub(mtu::IPIP_OVERHEAD);
        let change = LinkChange {
            up: (!link.up).then_some(true),
            mtu: (link.mtu != want_mtu).then_some(want_mtu),
            mac: None,
        };
        if change != LinkChange::default() {
            self.nl.set_link(&self.iface, &change)?;
            stats.writes += 1;
        }
        if let Some(addr) = self.tunnel_addr {
            let want = IpNet::new(IpAddr::V4(addr), 32).expect("/32");
            let have = self.nl.addrs()?;
            if !have.iter().any(|a| a.iface == self.iface && a.addr == want) {
                match self.nl.add_addr(&self.iface, want) {
                    Ok(()) => stats.writes += 1,
                    Err(e) if e.kind == ErrorKind::Exists => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        self.dirty = false;
        Ok(stats)
    }

    fn resync(&mut self) {
        self.unsupported = None;
        self.dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::FakeNetlink;
    use calico_calc::model::Pool;

    fn pools() -> Update {
        let p = |name: &str, cidr: &str, vxlan, ipip| Pool {
            name: name.into(),
            cidr: cidr.parse().unwrap(),
            nat_outgoing: false,
            vxlan,
            ipip,
            disabled: false,
        };
        Update::Pools(vec![
            p("ipip-pool", "198.18.0.0/16", Encap::Never, Encap::Always),
            p("vxlan-pool", "198.19.0.0/16", Encap::Always, Encap::Never),
        ])
    }

    #[test]
    fn missing_ipip_is_a_condition_not_an_error() {
        let nl = FakeNetlink::new();
        nl.add_link("eth0", "veth", 1500, true);
        let mut m = IpipManager::new(nl.clone());
        m.on_update(&pools());
        assert_eq!(m.apply().unwrap().writes, 0);
        let c = m.conditions();
        assert_eq!(c.len(), 1);
        match &c[0] {
            Condition::MissingKernelFeature { pool, feature, .. } => {
                assert_eq!(pool, "ipip-pool");
                assert_eq!(*feature, KernelFeature::IpipTunnel);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(c[0].to_string().contains("ipip-pool"));
        assert!(m.ipip_missing());
        // Not probed again on every apply.
        m.on_update(&pools());
        m.apply().unwrap();
        assert!(nl.ops().is_empty());
        // No IPIP pool any more: no condition.
        m.on_update(&Update::Pools(vec![]));
        assert!(m.conditions().is_empty());
    }

    #[test]
    fn creates_and_configures_tunl0_when_supported() {
        let nl = FakeNetlink::new();
        nl.set_ipip_supported(true);
        nl.add_link("eth0", "veth", 1500, true);
        let mut m = IpipManager::new(nl.clone());
        m.set_tunnel_addr(Some("198.18.0.1".parse().unwrap()));
        m.on_update(&pools());
        assert_eq!(m.apply().unwrap().writes, 3);
        let l = nl.link(IPIP_IFACE).unwrap();
        assert!(l.up);
        assert_eq!(l.mtu, 1480);
        assert!(m.conditions().is_empty());
        m.resync();
        assert_eq!(m.apply().unwrap().writes, 0);
    }
}
