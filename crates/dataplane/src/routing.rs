//! The routing half of the dataplane as one [`Manager`]: MTU file, VXLAN
//! device, IPIP probe, per-interface sysctls and routes, applied in that
//! order (the VXLAN device must exist before routes through it).
//!
//! A failure in one part does not stop the others; the first error is
//! returned after all parts ran, and the failed part retries on the next
//! apply. The parts stay public for callers that need their own API.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use calico_calc::model::Update;
use regex::Regex;

use crate::condition::Condition;
use crate::iface::InterfaceSysctlManager;
use crate::ipip::IpipManager;
use crate::mtu::{self, MtuManager};
use crate::netlink::{Mac, NetlinkBackend, NetlinkError, RtNetlink};
use crate::routes::{RouteManager, RouteManagerConfig, DEFAULT_ROUTE_PROTOCOL, VXLAN_IFACE};
use crate::sysctl::{ProcSysctl, SysctlBackend};
use crate::vxlan::{VxlanManager, VxlanManagerConfig};
use crate::{ApplyStats, DataplaneError, Manager};

#[derive(Clone, Debug)]
pub struct RoutingConfig {
    /// This node's name (its `VtepUpsert` is the local VTEP).
    pub node_name: String,
    /// Directory of the `mtu` file (default `/var/lib/calico`).
    pub state_dir: PathBuf,
    /// `mtuIfacePattern`.
    pub mtu_pattern: Regex,
    /// Protocol number marking our routes (default 80).
    pub route_protocol: u8,
}

impl RoutingConfig {
    pub fn new(node_name: impl Into<String>) -> Self {
        RoutingConfig {
            node_name: node_name.into(),
            state_dir: PathBuf::from(mtu::DEFAULT_STATE_DIR),
            mtu_pattern: mtu::default_pattern(),
            route_protocol: DEFAULT_ROUTE_PROTOCOL,
        }
    }
}

pub struct Routing<B, S> {
    pub mtu: MtuManager<B>,
    pub vxlan: VxlanManager<B>,
    pub ipip: IpipManager<B>,
    pub ifaces: InterfaceSysctlManager<S>,
    pub routes: RouteManager<B>,
    vxlan_generation: u64,
}

impl Routing<RtNetlink, ProcSysctl> {
    /// Managers on the calling thread's network namespace.
    pub fn kernel(cfg: RoutingConfig) -> Result<Self, NetlinkError> {
        Routing::new(cfg, RtNetlink::new, ProcSysctl::new())
    }
}

impl<B: NetlinkBackend, S: SysctlBackend> Routing<B, S> {
    /// `backend` is called once per netlink-using part.
    pub fn new(
        cfg: RoutingConfig,
        mut backend: impl FnMut() -> Result<B, NetlinkError>,
        sysctl: S,
    ) -> Result<Self, NetlinkError> {
        let mut vx_cfg = VxlanManagerConfig::new(cfg.node_name.clone());
        vx_cfg.mtu_pattern = cfg.mtu_pattern.clone();
        Ok(Routing {
            mtu: MtuManager::new(backend()?, cfg.state_dir.clone(), cfg.mtu_pattern.clone()),
            vxlan: VxlanManager::new(backend()?, vx_cfg),
            ipip: IpipManager::new(backend()?).with_mtu_pattern(cfg.mtu_pattern.clone()),
            ifaces: InterfaceSysctlManager::new(sysctl),
            routes: RouteManager::new(
                backend()?,
                RouteManagerConfig {
                    protocol: cfg.route_protocol,
                    vxlan_iface: VXLAN_IFACE.to_string(),
                },
            ),
            vxlan_generation: 0,
        })
    }

    /// This node's VXLAN tunnel endpoint (tunnel address from IPAM).
    pub fn set_local_vtep(&mut self, tunnel_ip: Ipv4Addr, mac: Mac, node_ip: Ipv4Addr) {
        self.vxlan.set_local_vtep(tunnel_ip, mac, node_ip);
    }

    /// An interface appeared, disappeared or was recreated.
    pub fn on_interface_update(&mut self, name: &str) {
        self.routes.on_interface_update(name);
        self.ifaces.on_interface_update(name);
    }

    /// Everything currently waiting or unsupported.
    pub fn conditions(&self) -> Vec<Condition> {
        let mut c = self.ipip.conditions();
        c.extend(self.vxlan.conditions());
        c.extend(self.ifaces.conditions());
        c.extend(self.routes.conditions());
        c
    }
}

impl<B: NetlinkBackend, S: SysctlBackend> Manager for Routing<B, S> {
    fn on_update(&mut self, update: &Update) {
        self.mtu.on_update(update);
        self.vxlan.on_update(update);
        self.ipip.on_update(update);
        self.ifaces.on_update(update);
        self.routes.on_update(update);
    }

    fn apply(&mut self) -> Result<ApplyStats, DataplaneError> {
        let mut stats = ApplyStats::default();
        let mut first_err = None;
        let mut note = |r: Result<ApplyStats, DataplaneError>, part: &str| match r {
            Ok(s) => stats.writes += s.writes,
            Err(e) => {
                tracing::warn!(part, error = %e, "apply failed; will retry");
                first_err.get_or_insert(e);
            }
        };
        note(self.mtu.apply(), "mtu");
        note(self.vxlan.apply(), "vxlan");
        if self.vxlan.device_generation() != self.vxlan_generation {
            self.vxlan_generation = self.vxlan.device_generation();
            self.routes.on_interface_update(VXLAN_IFACE);
        }
        note(self.ipip.apply(), "ipip");
        note(self.ifaces.apply(), "sysctl");
        note(self.routes.apply(), "routes");
        match first_err {
            None => Ok(stats),
            Some(e) => Err(e),
        }
    }

    fn resync(&mut self) {
        self.mtu.resync();
        self.vxlan.resync();
        self.ipip.resync();
        self.ifaces.resync();
        self.routes.resync();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{FakeNetlink, RouteKind};
    use crate::sysctl::FakeSysctl;
    use calico_calc::model::{
        Encap, EndpointKey, EndpointToHostAction, HostConfig, LocalEndpoint, Pool, Route,
        RouteTarget, Vtep,
    };
    use std::sync::Arc;

    fn updates() -> Vec<Update> {
        vec![
            Update::Config(HostConfig {
                interface_prefixes: vec!["tap".into()],
                default_endpoint_to_host_action: EndpointToHostAction::Drop,
                failsafe_inbound: vec![],
                failsafe_outbound: vec![],
                vxlan_vni: 4096,
                vxlan_port: 4789,
                vxlan_mtu: 0,
                log_prefix: "calico-packet".into(),
                metadata: None,
            }),
            Update::Pools(vec![
                Pool {
                    name: "vx".into(),
                    cidr: "198.18.0.0/16".parse().unwrap(),
                    nat_outgoing: true,
                    vxlan: Encap::Always,
                    ipip: Encap::Never,
                    disabled: false,
                },
                Pool {
                    name: "tunl".into(),
                    cidr: "198.19.0.0/16".parse().unwrap(),
                    nat_outgoing: false,
                    vxlan: Encap::Never,
                    ipip: Encap::Always,
                    disabled: false,
                },
            ]),
            Update::EndpointUpsert(Arc::new(LocalEndpoint {
                key: EndpointKey {
                    namespace: "openstack".into(),
                    name: "vm1".into(),
                },
                iface: "tap1".into(),
                mac: None,
                addrs: vec!["198.18.1.1/32".parse().unwrap()],
                allow_spoofed: vec![],
                tiers: vec![],
                profiles: vec![],
                nats: vec![],
            })),
            Update::VtepUpsert(Vtep {
                node: "node1".into(),
                node_ip: "192.0.2.1".parse().unwrap(),
                tunnel_ip: "198.18.1.0".parse().unwrap(),
                mac: "66:00:00:00:00:01".into(),
            }),
            Update::VtepUpsert(Vtep {
                node: "node2".into(),
                node_ip: "192.0.2.2".parse().unwrap(),
                tunnel_ip: "198.18.2.0".parse().unwrap(),
                mac: "66:00:00:00:00:02".into(),
            }),
            Update::RouteUpsert(Route {
                dst: "198.18.1.0/26".parse().unwrap(),
                target: RouteTarget::Blackhole,
            }),
            Update::RouteUpsert(Route {
                dst: "198.18.2.0/26".parse().unwrap(),
                target: RouteTarget::Vxlan {
                    gateway: "198.18.2.0".parse().unwrap(),
                },
            }),
            Update::InSync,
        ]
    }

    #[test]
    fn the_kernel_flavour_can_move_to_a_dataplane_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<Routing<RtNetlink, ProcSysctl>>();
        assert_send::<Routing<FakeNetlink, FakeSysctl>>();
    }

    #[test]
    fn everything_together_and_vxlan_recreation_rewrites_routes() {
        let dir = tempfile::tempdir().unwrap();
        let nl = FakeNetlink::new();
        nl.add_link("eth0", "veth", 1500, true);
        nl.add_address("eth0", "192.0.2.1/24");
        nl.add_link("tap1", "tap", 1500, true);
        let sys = FakeSysctl::new();
        sys.add_iface("tap1");
        let mut cfg = RoutingConfig::new("node1");
        cfg.state_dir = dir.path().to_path_buf();
        let mut r = Routing::new(cfg, || Ok(nl.clone()), sys.clone()).unwrap();
        for u in updates() {
            r.on_update(&u);
        }
        r.apply().unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("mtu")).unwrap(),
            "1450\n"
        );
        assert!(nl.link(VXLAN_IFACE).is_some());
        assert!(matches!(
            nl.route("198.18.2.0/26").unwrap().kind,
            RouteKind::Via { .. }
        ));
        assert_eq!(
            nl.route("198.18.1.1/32").unwrap().kind,
            RouteKind::Dev {
                iface: "tap1".into()
            }
        );
        assert_eq!(
            sys.get("net/ipv4/conf/tap1/proxy_arp").as_deref(),
            Some("1")
        );
        // IPIP is missing in this kernel: reported, everything else works.
        let c = r.conditions();
        assert_eq!(c.len(), 1, "{c:?}");
        assert!(c[0].to_string().contains("tunl"));
        assert_eq!(r.apply().unwrap().writes, 0);

        // The VNI changes: the device is recreated and the kernel drops its
        // routes; the composite tells the route manager.
        let mut u = updates();
        if let Update::Config(c) = &mut u[0] {
            c.vxlan_vni = 4100;
        }
        r.on_update(&u[0]);
        r.apply().unwrap();
        assert_eq!(nl.link(VXLAN_IFACE).unwrap().vxlan.unwrap().vni, 4100);
        assert!(nl.route("198.18.2.0/26").is_some());
    }
}
