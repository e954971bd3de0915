//! Conntrack clean-up for addresses local workloads give up.
//!
//! Policy is only consulted for a flow's first packet; later packets pass on
//! `ct state established`. OpenStack reuses addresses, so when an endpoint is
//! removed or loses an address, the flows of that address are deleted (as
//! Felix does): a new VM that gets the address never inherits the old VM's
//! established flows, and its own policy decides afresh. An address that is
//! removed and re-added in the same batch (endpoint deleted and recreated)
//! is cleaned too. Deletion runs after the policy has been applied, so
//! anything that reconnects meets the new rules.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::Command;

use calico_calc::model::{EndpointKey, Update};

use crate::{ApplyStats, DataplaneError, Manager};

/// Deletes the kernel's conntrack entries with an address as source or
/// destination.
pub trait ConntrackBackend {
    fn delete_flows(&mut self, addr: IpAddr) -> Result<(), DataplaneError>;
}

/// The `conntrack` tool (conntrack-tools), optionally in a named namespace.
#[derive(Clone, Debug, Default)]
pub struct CommandConntrack {
    netns: Option<String>,
}

impl CommandConntrack {
    pub fn new() -> Self {
        CommandConntrack::default()
    }

    pub fn in_netns(netns: impl Into<String>) -> Self {
        CommandConntrack {
            netns: Some(netns.into()),
        }
    }

    fn command(&self) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "conntrack"]);
                c
            }
            None => Command::new("conntrack"),
        }
    }
}

impl ConntrackBackend for CommandConntrack {
    fn delete_flows(&mut self, addr: IpAddr) -> Result<(), DataplaneError> {
        let family = if addr.is_ipv4() { "ipv4" } else { "ipv6" };
        for side in ["-s", "-d"] {
            let out = self
                .command()
                .args(["-D", "-f", family, side, &addr.to_string()])
                .output()
                .map_err(|e| DataplaneError::Other(format!("cannot run conntrack: {e}")))?;
            // Exit status 1 with "0 flow entries" just means nothing matched.
            let text = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() && !text.contains("flow entries have been deleted") {
                return Err(DataplaneError::Other(format!(
                    "conntrack -D {side} {addr}: {}",
                    text.trim()
                )));
            }
        }
        Ok(())
    }
}

/// Records deletions instead of making them, for tests.
#[derive(Clone, Debug, Default)]
pub struct FakeConntrack {
    pub deleted: Vec<IpAddr>,
    pub fail: bool,
}

impl ConntrackBackend for FakeConntrack {
    fn delete_flows(&mut self, addr: IpAddr) -> Result<(), DataplaneError> {
        if self.fail {
            return Err(DataplaneError::Other("conntrack failed".into()));
        }
        self.deleted.push(addr);
        Ok(())
    }
}

pub struct ConntrackManager<B> {
    backend: B,
    /// The addresses each local endpoint holds.
    held: BTreeMap<EndpointKey, BTreeSet<IpAddr>>,
    /// Addresses given up since the last successful apply.
    pending: BTreeSet<IpAddr>,
}

impl<B: ConntrackBackend> ConntrackManager<B> {
    pub fn new(backend: B) -> Self {
        ConntrackManager {
            backend,
            held: BTreeMap::new(),
            pending: BTreeSet::new(),
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    fn give_up(&mut self, addrs: impl IntoIterator<Item = IpAddr>) {
        self.pending.extend(addrs);
    }
}

impl<B: ConntrackBackend> Manager for ConntrackManager<B> {
    fn on_update(&mut self, update: &Update) {
        match update {
            Update::EndpointUpsert(ep) => {
                let now: BTreeSet<IpAddr> = ep.addrs.iter().map(|n| n.addr()).collect();
                let before = self.held.insert(ep.key.clone(), now.clone());
                let lost: Vec<IpAddr> = before
                    .unwrap_or_default()
                    .difference(&now)
                    .copied()
                    .collect();
                self.give_up(lost);
            }
            Update::EndpointRemove(key) => {
                if let Some(before) = self.held.remove(key) {
                    self.give_up(before);
                }
            }
            _ => {}
        }
    }

    fn apply(&mut self) -> Result<ApplyStats, DataplaneError> {
        let mut stats = ApplyStats::default();
        while let Some(addr) = self.pending.first().copied() {
            self.backend.delete_flows(addr)?;
            self.pending.remove(&addr);
            stats.writes += 1;
        }
        Ok(stats)
    }

    fn resync(&mut self) {}
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use calico_calc::model::LocalEndpoint;

    use super::*;

    fn ep(name: &str, addrs: &[&str]) -> Update {
        Update::EndpointUpsert(Arc::new(LocalEndpoint {
            key: key(name),
            iface: format!("tap{name}"),
            mac: None,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            allow_spoofed: vec![],
            tiers: vec![],
            profiles: vec![],
            nats: vec![],
        }))
    }

    fn key(name: &str) -> EndpointKey {
        EndpointKey {
            namespace: "openstack".into(),
            name: name.into(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn removed_and_lost_addresses_are_cleaned_once() {
        let mut m = ConntrackManager::new(FakeConntrack::default());
        m.on_update(&ep("a", &["198.18.0.1/32", "fd00::1/128"]));
        m.apply().unwrap();
        assert!(
            m.backend().deleted.is_empty(),
            "a new endpoint cleans nothing"
        );
        // Loses its IPv6 address.
        m.on_update(&ep("a", &["198.18.0.1/32"]));
        m.apply().unwrap();
        assert_eq!(m.backend().deleted, vec![ip("fd00::1")]);
        // Deleted and recreated with the same address in one batch.
        m.on_update(&Update::EndpointRemove(key("a")));
        m.on_update(&ep("a2", &["198.18.0.1/32"]));
        m.apply().unwrap();
        assert_eq!(m.backend().deleted, vec![ip("fd00::1"), ip("198.18.0.1")]);
        m.apply().unwrap();
        assert_eq!(m.backend().deleted.len(), 2, "nothing is deleted twice");
    }

    #[test]
    fn a_failed_deletion_is_retried() {
        let mut m = ConntrackManager::new(FakeConntrack {
            fail: true,
            ..Default::default()
        });
        m.on_update(&ep("a", &["198.18.0.1/32"]));
        m.on_update(&Update::EndpointRemove(key("a")));
        assert!(m.apply().is_err());
        m.backend_mut().fail = false;
        m.apply().unwrap();
        assert_eq!(m.backend().deleted, vec![ip("198.18.0.1")]);
    }
}
