//! Per-workload-interface kernel parameters, plus global forwarding.
//!
//! For every local endpoint's interface (as Felix's endpoint manager):
//! IPv4 `conf/<if>/route_localnet=1`, `neigh/<if>/proxy_delay=0`,
//! `conf/<if>/proxy_arp=1`, `conf/<if>/forwarding=1`; and when the endpoint
//! has IPv6 addresses and the host has IPv6: `conf/<if>/accept_ra=0`,
//! `proxy_ndp=1`, `forwarding=1`. Globally `net.ipv4.ip_forward=1`, and
//! `net.ipv6.conf.all.forwarding=1` once some endpoint has IPv6 (only then,
//! because turning IPv6 forwarding on stops the host accepting router
//! advertisements).
//!
//! Values are read first and written only when different. An interface that
//! does not exist yet is pending and retried on every apply.

use std::collections::{BTreeMap, BTreeSet};

use calico_calc::model::{EndpointKey, Update};

use crate::condition::Condition;
use crate::sysctl::{valid_iface_name, SysctlBackend, SysctlError, SysctlErrorKind};
use crate::{ApplyStats, DataplaneError, Manager};

pub struct InterfaceSysctlManager<S> {
    sys: S,
    /// endpoint -> (interface, has IPv6 addresses)
    endpoints: BTreeMap<EndpointKey, (String, bool)>,
    dirty: BTreeSet<String>,
    pending: BTreeSet<String>,
    globals_done: bool,
    host_ipv6: bool,
    v6_forwarding_done: bool,
}

/// The per-interface parameters for `iface`.
pub fn iface_sysctls(iface: &str, ipv6: bool) -> Vec<(String, &'static str)> {
    let mut v = vec![
        (format!("net/ipv4/conf/{iface}/route_localnet"), "1"),
        (format!("net/ipv4/neigh/{iface}/proxy_delay"), "0"),
        (format!("net/ipv4/conf/{iface}/proxy_arp"), "1"),
        (format!("net/ipv4/conf/{iface}/forwarding"), "1"),
    ];
    if ipv6 {
        v.push((format!("net/ipv6/conf/{iface}/accept_ra"), "0"));
        v.push((format!("net/ipv6/conf/{iface}/proxy_ndp"), "1"));
        v.push((format!("net/ipv6/conf/{iface}/forwarding"), "1"));
    }
    v
}

impl<S: SysctlBackend> InterfaceSysctlManager<S> {
    pub fn new(sys: S) -> Self {
        InterfaceSysctlManager {
            sys,
            endpoints: BTreeMap::new(),
            dirty: BTreeSet::new(),
            pending: BTreeSet::new(),
            globals_done: false,
            host_ipv6: false,
            v6_forwarding_done: false,
        }
    }

    /// Interface `name` appeared or was recreated: set its parameters again.
    pub fn on_interface_update(&mut self, name: &str) {
        if self.endpoints.values().any(|(i, _)| i == name) {
            self.dirty.insert(name.to_string());
        }
    }

    /// Interfaces waiting to appear.
    pub fn pending_interfaces(&self) -> Vec<String> {
        self.pending.iter().cloned().collect()
    }

    /// True once `iface`'s parameters are all set in the kernel: false while
    /// it is missing, after a failed write, or before the next apply.
    pub fn is_settled(&self, iface: &str) -> bool {
        !self.pending.contains(iface) && !self.dirty.contains(iface)
    }

    pub fn conditions(&self) -> Vec<Condition> {
        self.pending
            .iter()
            .map(|iface| Condition::InterfaceSettingsPending {
                iface: iface.clone(),
            })
            .collect()
    }

    /// `None` if no endpoint uses `iface`; else whether it needs IPv6 settings.
    fn wanted(&self, iface: &str) -> Option<bool> {
        let mut found = None;
        for (i, v6) in self.endpoints.values() {
            if i == iface {
                found = Some(found.unwrap_or(false) || *v6);
            }
        }
        found.map(|v6| v6 && self.host_ipv6)
    }

    /// Writes `value` if the parameter holds something else; returns writes.
    fn ensure(&mut self, path: &str, value: &str) -> Result<usize, SysctlError> {
        match self.sys.read(path)? {
            Some(v) if v == value => Ok(0),
            Some(_) => {
                self.sys.write(path, value)?;
                tracing::debug!(%path, %value, "sysctl set");
                Ok(1)
            }
            None => Err(SysctlError {
                path: path.to_string(),
                kind: SysctlErrorKind::NotFound,
                cause: "parameter does not exist".into(),
            }),
        }
    }
}

impl<S: SysctlBackend> Manager for InterfaceSysctlManager<S> {
    fn on_update(&mut self, update: &Update) {
        match update {
            Update::EndpointUpsert(ep) => {
                let v6 = ep.addrs.iter().any(|a| a.addr().is_ipv6());
                let new = (ep.iface.clone(), v6);
                let old = self.endpoints.insert(ep.key.clone(), new.clone());
                if old.as_ref() != Some(&new) {
                    self.dirty.insert(new.0);
                }
                if let Some((old_iface, _)) = old {
                    if old_iface != ep.iface {
                        self.dirty.insert(old_iface);
                    }
                }
            }
            Update::EndpointRemove(key) => {
                if let Some((iface, _)) = self.endpoints.remove(key) {
                    // Nothing to undo (the interface goes away); forget it.
                    self.dirty.insert(iface);
                }
            }
            _ => {}
        }
    }

    fn apply(&mut self) -> Result<ApplyStats, DataplaneError> {
        let mut stats = ApplyStats::default();
        if !self.globals_done {
            stats.writes += self.ensure("net/ipv4/ip_forward", "1")?;
            self.host_ipv6 = self.sys.read("net/ipv6/conf/all/forwarding")?.is_some();
            self.globals_done = true;
        }
        if self.host_ipv6 && !self.v6_forwarding_done && self.endpoints.values().any(|(_, v6)| *v6)
        {
            stats.writes += self.ensure("net/ipv6/conf/all/forwarding", "1")?;
            self.v6_forwarding_done = true;
        }
        let work: BTreeSet<String> = self.dirty.union(&self.pending).cloned().collect();
        let mut failures: Vec<SysctlError> = Vec::new();
        'ifaces: for iface in work {
            self.dirty.remove(&iface);
            self.pending.remove(&iface);
            let Some(v6) = self.wanted(&iface) else {
                continue;
            };
            if !valid_iface_name(&iface) {
                tracing::warn!(%iface, "invalid interface name; sysctls not set");
                continue;
            }
            if self
                .sys
                .read(&format!("net/ipv4/conf/{iface}/forwarding"))?
                .is_none()
            {
                if self.pending.insert(iface.clone()) {
                    tracing::debug!(%iface, "interface not there yet; sysctls pending");
                }
                continue;
            }
            for (path, value) in iface_sysctls(&iface, v6) {
                match self.ensure(&path, value) {
                    Ok(n) => stats.writes += n,
                    Err(e) if e.kind == SysctlErrorKind::NotFound => {
                        // Vanished in between: wait for it again.
                        self.pending.insert(iface.clone());
                        continue 'ifaces;
                    }
                    Err(e) => {
                        self.dirty.insert(iface.clone());
                        failures.push(e);
                        continue 'ifaces;
                    }
                }
            }
        }
        match failures.into_iter().next() {
            None => Ok(stats),
            Some(e) => Err(e.into()),
        }
    }

    fn resync(&mut self) {
        self.globals_done = false;
        self.v6_forwarding_done = false;
        let all: Vec<String> = self.endpoints.values().map(|(i, _)| i.clone()).collect();
        self.dirty.extend(all);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysctl::FakeSysctl;
    use calico_calc::model::LocalEndpoint;
    use std::sync::Arc;

    fn ep(name: &str, iface: &str, addrs: &[&str]) -> Update {
        Update::EndpointUpsert(Arc::new(LocalEndpoint {
            key: EndpointKey {
                namespace: "openstack".into(),
                name: name.into(),
            },
            iface: iface.into(),
            mac: None,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            allow_spoofed: vec![],
            tiers: vec![],
            profiles: vec![],
            nats: vec![],
        }))
    }

    #[test]
    fn sets_per_interface_and_global_parameters_once() {
        let sys = FakeSysctl::new();
        sys.add_iface("tap1");
        let mut m = InterfaceSysctlManager::new(sys.clone());
        m.on_update(&ep("a", "tap1", &["198.18.1.1/32"]));
        assert_eq!(m.apply().unwrap().writes, 5);
        assert_eq!(sys.get("net/ipv4/ip_forward").as_deref(), Some("1"));
        assert_eq!(
            sys.get("net/ipv4/conf/tap1/proxy_arp").as_deref(),
            Some("1")
        );
        assert_eq!(
            sys.get("net/ipv4/neigh/tap1/proxy_delay").as_deref(),
            Some("0")
        );
        assert_eq!(
            sys.get("net/ipv4/conf/tap1/forwarding").as_deref(),
            Some("1")
        );
        assert_eq!(
            sys.get("net/ipv4/conf/tap1/route_localnet").as_deref(),
            Some("1")
        );
        // No IPv6 address: IPv6 settings and global v6 forwarding untouched.
        assert_eq!(
            sys.get("net/ipv6/conf/tap1/accept_ra").as_deref(),
            Some("1")
        );
        assert_eq!(
            sys.get("net/ipv6/conf/all/forwarding").as_deref(),
            Some("0")
        );
        sys.take_writes();
        assert_eq!(m.apply().unwrap().writes, 0);
        m.on_update(&ep("a", "tap1", &["198.18.1.1/32"]));
        assert_eq!(m.apply().unwrap().writes, 0);
        assert!(sys.take_writes().is_empty());
    }

    #[test]
    fn ipv6_endpoint_gets_ipv6_settings_when_host_has_ipv6() {
        let sys = FakeSysctl::new();
        sys.add_iface("tap6");
        let mut m = InterfaceSysctlManager::new(sys.clone());
        m.on_update(&ep("a", "tap6", &["198.18.1.1/32", "2001:db8::1/128"]));
        m.apply().unwrap();
        assert_eq!(
            sys.get("net/ipv6/conf/tap6/accept_ra").as_deref(),
            Some("0")
        );
        assert_eq!(
            sys.get("net/ipv6/conf/tap6/proxy_ndp").as_deref(),
            Some("1")
        );
        assert_eq!(
            sys.get("net/ipv6/conf/tap6/forwarding").as_deref(),
            Some("1")
        );
        assert_eq!(
            sys.get("net/ipv6/conf/all/forwarding").as_deref(),
            Some("1")
        );

        let sys = FakeSysctl::new();
        sys.add_iface("tap6");
        sys.disable_ipv6();
        let mut m = InterfaceSysctlManager::new(sys.clone());
        m.on_update(&ep("a", "tap6", &["2001:db8::1/128"]));
        assert_eq!(m.apply().unwrap().writes, 5, "IPv4 settings only");
    }

    #[test]
    fn missing_interface_is_pending_then_configured() {
        let sys = FakeSysctl::new();
        let mut m = InterfaceSysctlManager::new(sys.clone());
        m.on_update(&ep("a", "tap9", &["198.18.1.9/32"]));
        assert!(!m.is_settled("tap9"), "not applied yet");
        assert_eq!(m.apply().unwrap().writes, 1, "ip_forward only");
        assert_eq!(m.pending_interfaces(), vec!["tap9".to_string()]);
        assert!(!m.is_settled("tap9"), "missing");
        assert_eq!(
            m.conditions(),
            vec![Condition::InterfaceSettingsPending {
                iface: "tap9".into()
            }]
        );
        assert_eq!(m.apply().unwrap().writes, 0);
        sys.add_iface("tap9");
        assert_eq!(m.apply().unwrap().writes, 4);
        assert!(m.pending_interfaces().is_empty());
        assert!(m.is_settled("tap9"));
        // The endpoint goes away before its interface appears: not pending.
        m.on_update(&ep("b", "tap10", &["198.18.1.10/32"]));
        m.apply().unwrap();
        m.on_update(&Update::EndpointRemove(EndpointKey {
            namespace: "openstack".into(),
            name: "b".into(),
        }));
        m.apply().unwrap();
        assert!(m.pending_interfaces().is_empty());
    }

    #[test]
    fn resync_and_interface_hook_repair_drift() {
        let sys = FakeSysctl::new();
        sys.add_iface("tap1");
        let mut m = InterfaceSysctlManager::new(sys.clone());
        m.on_update(&ep("a", "tap1", &["198.18.1.1/32"]));
        m.apply().unwrap();
        sys.set("net/ipv4/conf/tap1/proxy_arp", "0");
        sys.set("net/ipv4/ip_forward", "0");
        assert_eq!(m.apply().unwrap().writes, 0);
        m.resync();
        assert_eq!(m.apply().unwrap().writes, 2);
        // Interface recreated: fresh defaults; the hook re-applies.
        sys.remove_iface("tap1");
        sys.add_iface("tap1");
        m.on_interface_update("tap1");
        assert_eq!(m.apply().unwrap().writes, 4);
    }

    #[test]
    fn hostile_interface_names_are_never_used_in_paths() {
        let sys = FakeSysctl::new();
        let mut m = InterfaceSysctlManager::new(sys.clone());
        m.on_update(&ep("a", "..", &["198.18.1.1/32"]));
        m.on_update(&ep("b", "a/../../x", &["198.18.1.2/32"]));
        assert_eq!(m.apply().unwrap().writes, 1);
        assert!(m.pending_interfaces().is_empty());
    }
}
