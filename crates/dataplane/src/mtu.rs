//! MTU computation (as upstream Felix): the host MTU is the smallest MTU of
//! the interfaces matching the MTU interface pattern (1460 if none match);
//! each enabled encapsulation subtracts its overhead; the workload MTU is
//! the smallest of those (or the host MTU when no encapsulation is in use)
//! and is written to `<state dir>/mtu` for the orchestrator's plugins.

use std::path::PathBuf;

use calico_calc::model::{Encap, HostConfig, Pool, Update};
use regex::Regex;

use crate::netlink::NetlinkBackend;
use crate::{ApplyStats, DataplaneError, Manager};

/// Felix's default `mtuIfacePattern`.
pub const DEFAULT_MTU_IFACE_PATTERN: &str = r"^((en|wl|ww|sl|ib)[opsx].*|(eth|wlan|wwan).*)";
/// Host MTU when no interface matches the pattern.
pub const FALLBACK_HOST_MTU: u32 = 1460;
pub const VXLAN_OVERHEAD: u32 = 50;
pub const VXLAN6_OVERHEAD: u32 = 70;
pub const IPIP_OVERHEAD: u32 = 20;
/// Default state directory; the MTU file is `<state dir>/mtu`.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/calico";

/// The default interface pattern, compiled.
pub fn default_pattern() -> Regex {
    Regex::new(DEFAULT_MTU_IFACE_PATTERN).expect("default MTU pattern compiles")
}

/// Smallest MTU among `(name, mtu)` interfaces whose name matches `pattern`.
pub fn host_mtu<'a>(links: impl IntoIterator<Item = (&'a str, u32)>, pattern: &Regex) -> u32 {
    links
        .into_iter()
        .filter(|(name, mtu)| *mtu > 0 && pattern.is_match(name))
        .map(|(_, mtu)| mtu)
        .min()
        .unwrap_or(FALLBACK_HOST_MTU)
}

/// Which encapsulations the pools use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encaps {
    pub vxlan_v4: bool,
    pub vxlan_v6: bool,
    pub ipip: bool,
}

impl Encaps {
    /// Every pool counts, disabled ones too: their existing addresses are
    /// still routed.
    pub fn from_pools(pools: &[Pool]) -> Self {
        let mut e = Encaps::default();
        for p in pools {
            if p.vxlan != Encap::Never {
                match p.cidr {
                    ipnet::IpNet::V4(_) => e.vxlan_v4 = true,
                    ipnet::IpNet::V6(_) => e.vxlan_v6 = true,
                }
            }
            if p.ipip != Encap::Never && p.cidr.addr().is_ipv4() {
                e.ipip = true;
            }
        }
        e
    }
}

/// MTU of the IPv4 VXLAN device: the configured value, else host − 50.
pub fn vxlan_mtu(host_mtu: u32, configured: u32) -> u32 {
    if configured > 0 {
        configured
    } else {
        host_mtu.saturating_sub(VXLAN_OVERHEAD)
    }
}

/// Workload MTU: the smallest MTU among enabled encapsulations, else the
/// host MTU.
pub fn workload_mtu(host_mtu: u32, encaps: Encaps, configured_vxlan_mtu: u32) -> u32 {
    let mut candidates = Vec::new();
    if encaps.vxlan_v4 {
        candidates.push(vxlan_mtu(host_mtu, configured_vxlan_mtu));
    }
    if encaps.vxlan_v6 {
        candidates.push(host_mtu.saturating_sub(VXLAN6_OVERHEAD));
    }
    if encaps.ipip {
        candidates.push(host_mtu.saturating_sub(IPIP_OVERHEAD));
    }
    candidates.into_iter().min().unwrap_or(host_mtu)
}

/// Computes the workload MTU and keeps `<state dir>/mtu` up to date.
pub struct MtuManager<B> {
    nl: B,
    state_dir: PathBuf,
    pattern: Regex,
    pools: Vec<Pool>,
    config: Option<HostConfig>,
    dirty: bool,
    /// Last value written (or found) in the file.
    written: Option<u32>,
    host_mtu: Option<u32>,
}

impl<B: NetlinkBackend> MtuManager<B> {
    /// `state_dir` defaults to [`DEFAULT_STATE_DIR`] in the agent;
    /// `pattern` is FelixConfiguration `mtuIfacePattern` (see
    /// [`default_pattern`]).
    pub fn new(nl: B, state_dir: impl Into<PathBuf>, pattern: Regex) -> Self {
        MtuManager {
            nl,
            state_dir: state_dir.into(),
            pattern,
            pools: Vec::new(),
            config: None,
            dirty: true,
            written: None,
            host_mtu: None,
        }
    }

    /// The host MTU found by the last apply.
    pub fn host_mtu(&self) -> Option<u32> {
        self.host_mtu
    }

    /// The workload MTU last written.
    pub fn workload_mtu(&self) -> Option<u32> {
        self.written
    }

    pub fn mtu_file(&self) -> PathBuf {
        self.state_dir.join("mtu")
    }
}

impl<B: NetlinkBackend> Manager for MtuManager<B> {
    fn on_update(&mut self, update: &Update) {
        match update {
            Update::Pools(p) => {
                self.pools = p.clone();
                self.dirty = true;
            }
            Update::Config(c) => {
                self.config = Some(c.clone());
                self.dirty = true;
            }
            _ => {}
        }
    }

    fn apply(&mut self) -> Result<ApplyStats, DataplaneError> {
        if !self.dirty {
            return Ok(ApplyStats::default());
        }
        let links = self.nl.links()?;
        let host = host_mtu(
            links.iter().map(|l| (l.name.as_str(), l.mtu)),
            &self.pattern,
        );
        self.host_mtu = Some(host);
        let configured = self.config.as_ref().map_or(0, |c| c.vxlan_mtu);
        let mtu = workload_mtu(host, Encaps::from_pools(&self.pools), configured);
        let path = self.mtu_file();
        if self.written.is_none() {
            self.written = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse().ok());
        }
        let mut stats = ApplyStats::default();
        if self.written != Some(mtu) {
            let io =
                |e: std::io::Error| DataplaneError::Other(format!("write {}: {e}", path.display()));
            std::fs::create_dir_all(&self.state_dir).map_err(io)?;
            let tmp = self.state_dir.join(".mtu.tmp");
            std::fs::write(&tmp, format!("{mtu}\n")).map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
            tracing::info!(mtu, host_mtu = host, file = %path.display(), "wrote workload MTU");
            self.written = Some(mtu);
            stats.writes += 1;
        }
        self.dirty = false;
        Ok(stats)
    }

    fn resync(&mut self) {
        self.dirty = true;
        self.written = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::FakeNetlink;

    fn pool(name: &str, cidr: &str, vxlan: Encap, ipip: Encap) -> Pool {
        Pool {
            name: name.into(),
            cidr: cidr.parse().unwrap(),
            nat_outgoing: false,
            vxlan,
            ipip,
            disabled: false,
        }
    }

    #[test]
    fn host_mtu_uses_matching_interfaces_only() {
        let p = default_pattern();
        let links = [
            ("lo", 65536),
            ("eth0", 9001),
            ("ens3", 1500),
            ("tap123", 1400),
            ("vxlan.calico", 1410),
            ("wlan0", 2304),
        ];
        assert_eq!(host_mtu(links, &p), 1500);
        assert_eq!(
            host_mtu([("lo", 65536), ("tap1", 1500)], &p),
            FALLBACK_HOST_MTU
        );
        // enX needs one of o/p/s/x next.
        assert_eq!(host_mtu([("enq0", 1000), ("enp0s3", 1450)], &p), 1450);
        let custom = Regex::new("^tap").unwrap();
        assert_eq!(host_mtu([("tap1", 1400), ("eth0", 1500)], &custom), 1400);
    }

    #[test]
    fn workload_mtu_is_min_over_enabled_encaps() {
        let none = Encaps::default();
        assert_eq!(workload_mtu(1500, none, 0), 1500);
        let vx = Encaps {
            vxlan_v4: true,
            ..none
        };
        assert_eq!(workload_mtu(1500, vx, 0), 1450);
        assert_eq!(workload_mtu(1500, vx, 1400), 1400);
        let vx6 = Encaps {
            vxlan_v6: true,
            ..none
        };
        assert_eq!(workload_mtu(1500, vx6, 0), 1430);
        let ipip = Encaps { ipip: true, ..none };
        assert_eq!(workload_mtu(1500, ipip, 0), 1480);
        let both = Encaps {
            vxlan_v4: true,
            ipip: true,
            vxlan_v6: false,
        };
        assert_eq!(workload_mtu(1500, both, 0), 1450);
        assert_eq!(workload_mtu(FALLBACK_HOST_MTU, vx, 0), 1410);
    }

    #[test]
    fn encaps_from_pools() {
        let pools = vec![
            pool("a", "198.18.0.0/16", Encap::Always, Encap::Never),
            pool("b", "192.0.2.0/24", Encap::Never, Encap::CrossSubnet),
            pool("c", "2001:db8::/64", Encap::Never, Encap::Never),
        ];
        assert_eq!(
            Encaps::from_pools(&pools),
            Encaps {
                vxlan_v4: true,
                vxlan_v6: false,
                ipip: true
            }
        );
    }

    #[test]
    fn manager_writes_the_file_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let nl = FakeNetlink::new();
        nl.add_link("eth0", "veth", 1500, true);
        let mut m = MtuManager::new(nl.clone(), &state, default_pattern());
        assert_eq!(m.apply().unwrap().writes, 1);
        assert_eq!(
            std::fs::read_to_string(state.join("mtu")).unwrap(),
            "1500\n"
        );
        assert_eq!(m.apply().unwrap().writes, 0);

        m.on_update(&Update::Pools(vec![pool(
            "p",
            "198.18.0.0/16",
            Encap::Always,
            Encap::Never,
        )]));
        assert_eq!(m.apply().unwrap().writes, 1);
        assert_eq!(
            std::fs::read_to_string(state.join("mtu")).unwrap(),
            "1450\n"
        );
        assert_eq!(m.workload_mtu(), Some(1450));
        assert_eq!(m.host_mtu(), Some(1500));

        // A restarted manager finds the file already right.
        let mut m2 = MtuManager::new(nl, &state, default_pattern());
        m2.on_update(&Update::Pools(vec![pool(
            "p",
            "198.18.0.0/16",
            Encap::Always,
            Encap::Never,
        )]));
        assert_eq!(m2.apply().unwrap().writes, 0);
    }
}
