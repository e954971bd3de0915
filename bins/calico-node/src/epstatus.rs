//! Per-endpoint status from what the dataplane managers know after an
//! apply: `up` only when the interface exists and the endpoint's host
//! routes, its interface sysctls and the policy chains are in the kernel;
//! `down` while the interface is missing or down; `error` when the apply
//! that should have programmed it failed.
//!
//! Upstream Felix reports a failed workload as `down`; networking-calico
//! maps `error` to Neutron's ERROR, which tells the operator more.

use std::collections::{BTreeMap, HashMap};

use calico_calc::model::{EndpointKey, LocalEndpoint, Update};
use calico_dataplane::netlink::NetlinkBackend;
use calico_dataplane::{PendingReason, Routing, SysctlBackend};
use ipnet::IpNet;

use crate::status::EndpointStatus;

/// What the status of one local endpoint depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Wanted {
    iface: String,
    /// Host-route destinations of its addresses.
    dsts: Vec<IpNet>,
}

/// The local endpoints as the dataplane was told about them.
#[derive(Default)]
pub struct LocalEndpoints(BTreeMap<EndpointKey, Wanted>);

impl LocalEndpoints {
    pub fn on_update(&mut self, u: &Update) {
        match u {
            Update::EndpointUpsert(ep) => {
                self.0.insert(ep.key.clone(), wanted(ep));
            }
            Update::EndpointRemove(k) => {
                self.0.remove(k);
            }
            _ => {}
        }
    }

    /// The status of every local endpoint. `policy_ok`: the last policy
    /// apply succeeded (one nft transaction holds every endpoint's chains);
    /// `apply_failed`: some part of the last apply failed.
    pub fn statuses<B: NetlinkBackend, S: SysctlBackend>(
        &self,
        routing: &Routing<B, S>,
        policy_ok: bool,
        apply_failed: bool,
    ) -> BTreeMap<EndpointKey, EndpointStatus> {
        let programmed: HashMap<IpNet, String> = routing
            .routes
            .programmed()
            .into_iter()
            .filter_map(|r| r.iface().map(|i| (r.dst, i.to_string())))
            .collect();
        let pending: HashMap<IpNet, PendingReason> =
            routing.routes.pending_routes().into_iter().collect();
        let waiting = routing.ifaces.pending_interfaces();
        self.0
            .iter()
            .map(|(key, w)| {
                let missing = waiting.contains(&w.iface)
                    || w.dsts.iter().any(|d| {
                        matches!(
                            pending.get(d),
                            Some(
                                PendingReason::InterfaceMissing(_)
                                    | PendingReason::InterfaceDown(_)
                            )
                        )
                    });
                let in_kernel = policy_ok
                    && routing.ifaces.is_settled(&w.iface)
                    && w.dsts.iter().all(|d| programmed.get(d) == Some(&w.iface));
                let status = if missing {
                    EndpointStatus::Down
                } else if in_kernel {
                    EndpointStatus::Up
                } else if apply_failed {
                    EndpointStatus::Error
                } else {
                    EndpointStatus::Down
                };
                (key.clone(), status)
            })
            .collect()
    }
}

fn wanted(ep: &LocalEndpoint) -> Wanted {
    Wanted {
        iface: ep.iface.clone(),
        dsts: ep.addrs.iter().map(|a| IpNet::from(a.addr())).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calico_dataplane::netlink::ErrorKind;
    use calico_dataplane::{FakeNetlink, FakeSysctl, Manager, RoutingConfig};
    use std::sync::Arc;

    fn key(name: &str) -> EndpointKey {
        EndpointKey {
            namespace: "openstack".into(),
            name: name.into(),
        }
    }

    fn ep(name: &str, iface: &str, addr: &str) -> Update {
        Update::EndpointUpsert(Arc::new(LocalEndpoint {
            key: key(name),
            iface: iface.into(),
            mac: None,
            addrs: vec![addr.parse().unwrap()],
            allow_spoofed: vec![],
            tiers: vec![],
            profiles: vec![],
            nats: vec![],
        }))
    }

    struct Host {
        _dir: tempfile::TempDir,
        nl: FakeNetlink,
        sys: FakeSysctl,
        routing: Routing<FakeNetlink, FakeSysctl>,
        eps: LocalEndpoints,
    }

    impl Host {
        fn new() -> Host {
            let dir = tempfile::tempdir().unwrap();
            let nl = FakeNetlink::new();
            nl.add_link("eth0", "veth", 1500, true);
            let sys = FakeSysctl::new();
            let mut cfg = RoutingConfig::new("h1");
            cfg.state_dir = dir.path().to_path_buf();
            let routing = Routing::new(cfg, || Ok(nl.clone()), sys.clone()).unwrap();
            Host {
                _dir: dir,
                nl,
                sys,
                routing,
                eps: LocalEndpoints::default(),
            }
        }

        fn update(&mut self, u: Update) {
            self.routing.on_update(&u);
            self.eps.on_update(&u);
        }

        fn plug(&self, iface: &str) {
            self.nl.add_link(iface, "tun", 1500, true);
            self.sys.add_iface(iface);
        }

        /// Applies and returns the statuses (policy as given).
        fn apply(&mut self, policy_ok: bool) -> BTreeMap<EndpointKey, EndpointStatus> {
            let failed = self.routing.apply().is_err() || !policy_ok;
            self.eps.statuses(&self.routing, policy_ok, failed)
        }
    }

    #[test]
    fn down_until_the_interface_exists_then_up() {
        let mut h = Host::new();
        h.update(ep("vm1", "tap1", "198.19.0.1/32"));
        h.update(Update::InSync);
        assert_eq!(h.apply(true)[&key("vm1")], EndpointStatus::Down);
        assert_eq!(h.apply(true)[&key("vm1")], EndpointStatus::Down, "still");
        h.plug("tap1");
        assert_eq!(h.apply(true)[&key("vm1")], EndpointStatus::Up);
        // The interface goes away (VM stopped): down again.
        h.nl.remove_link("tap1");
        h.sys.remove_iface("tap1");
        h.routing.on_interface_update("tap1");
        assert_eq!(h.apply(true)[&key("vm1")], EndpointStatus::Down);
    }

    #[test]
    fn a_failed_route_write_is_an_error_for_that_endpoint_only() {
        let mut h = Host::new();
        h.plug("tap1");
        h.update(ep("vm1", "tap1", "198.19.0.1/32"));
        h.update(Update::InSync);
        assert_eq!(h.apply(true)[&key("vm1")], EndpointStatus::Up);
        h.plug("tap2");
        h.update(ep("vm2", "tap2", "198.19.0.2/32"));
        h.nl.fail_next("replace_route", ErrorKind::Other);
        let s = h.apply(true);
        assert_eq!(s[&key("vm2")], EndpointStatus::Error);
        assert_eq!(s[&key("vm1")], EndpointStatus::Up);
        // The retry succeeds.
        assert_eq!(h.apply(true)[&key("vm2")], EndpointStatus::Up);
    }

    #[test]
    fn a_failed_policy_apply_is_an_error_for_every_endpoint_with_its_interface() {
        let mut h = Host::new();
        h.plug("tap1");
        h.update(ep("vm1", "tap1", "198.19.0.1/32"));
        h.update(ep("vm2", "tap2", "198.19.0.2/32"));
        h.update(Update::InSync);
        let s = h.apply(false);
        assert_eq!(s[&key("vm1")], EndpointStatus::Error);
        assert_eq!(s[&key("vm2")], EndpointStatus::Down, "no interface yet");
        assert_eq!(h.apply(true)[&key("vm1")], EndpointStatus::Up);
    }

    #[test]
    fn removed_endpoints_have_no_status() {
        let mut h = Host::new();
        h.plug("tap1");
        h.update(ep("vm1", "tap1", "198.19.0.1/32"));
        h.update(Update::InSync);
        assert_eq!(h.apply(true).len(), 1);
        h.update(Update::EndpointRemove(key("vm1")));
        assert!(h.apply(true).is_empty());
    }
}
