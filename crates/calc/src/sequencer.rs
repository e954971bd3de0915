//! Coalesces desired-state changes between flushes and emits them against
//! what was already sent, in dependency order:
//!
//! ```text
//! Config, Pools, IpSetUpsert/Delta → PolicyUpsert → EndpointUpsert → VtepUpsert → RouteUpsert
//! then RouteRemove → VtepRemove → EndpointRemove → PolicyRemove → IpSetRemove, then InSync (once)
//! ```
//!
//! An object set back to what was last sent, or set and removed before being
//! sent, produces nothing; a removal of something never sent is dropped.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use ipnet::IpNet;

use crate::ipsets::IpSets;
use crate::model::{
    EndpointKey, HostConfig, LocalEndpoint, Policy, PolicyId, Pool, RouteTarget, Update, Vtep,
};

/// Desired values of one kind of keyed object, diffed against what was sent.
pub(crate) struct Tracked<K, V> {
    sent: HashMap<K, V>,
    /// Changes since the last drain: Some = desired value, None = removed.
    pending: HashMap<K, Option<V>>,
}

impl<K, V> Default for Tracked<K, V> {
    fn default() -> Self {
        Tracked {
            sent: HashMap::new(),
            pending: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + Hash + Ord, V: Clone + PartialEq> Tracked<K, V> {
    pub(crate) fn set(&mut self, k: K, v: V) {
        self.pending.insert(k, Some(v));
    }

    pub(crate) fn remove(&mut self, k: &K) {
        if self.sent.contains_key(k) {
            self.pending.insert(k.clone(), None);
        } else {
            self.pending.remove(k);
        }
    }

    /// The current desired value.
    #[cfg(test)]
    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        match self.pending.get(k) {
            Some(p) => p.as_ref(),
            None => self.sent.get(k),
        }
    }

    /// Returns (upserts, removals) since the last drain, each sorted by key.
    pub(crate) fn drain(&mut self) -> (Vec<(K, V)>, Vec<K>) {
        let mut pending: Vec<(K, Option<V>)> = self.pending.drain().collect();
        pending.sort_by(|a, b| a.0.cmp(&b.0));
        let (mut up, mut rm) = (Vec::new(), Vec::new());
        for (k, v) in pending {
            match v {
                Some(v) => {
                    if self.sent.get(&k) != Some(&v) {
                        self.sent.insert(k.clone(), v.clone());
                        up.push((k, v));
                    }
                }
                None => {
                    if self.sent.remove(&k).is_some() {
                        rm.push(k);
                    }
                }
            }
        }
        (up, rm)
    }
}

/// A single value (config, pool list) emitted whenever it changes.
pub(crate) struct Latest<V> {
    sent: Option<V>,
    pending: Option<V>,
}

impl<V> Default for Latest<V> {
    fn default() -> Self {
        Latest {
            sent: None,
            pending: None,
        }
    }
}

impl<V: Clone + PartialEq> Latest<V> {
    pub(crate) fn set(&mut self, v: V) {
        self.pending = Some(v);
    }

    fn drain(&mut self) -> Option<V> {
        let v = self.pending.take()?;
        if self.sent.as_ref() == Some(&v) {
            return None;
        }
        self.sent = Some(v.clone());
        Some(v)
    }
}

#[derive(Default)]
pub(crate) struct Sequencer {
    pub config: Latest<HostConfig>,
    pub pools: Latest<Vec<Pool>>,
    pub policies: Tracked<PolicyId, Arc<Policy>>,
    pub endpoints: Tracked<EndpointKey, Arc<LocalEndpoint>>,
    pub vteps: Tracked<String, Vtep>,
    pub routes: Tracked<IpNet, RouteTarget>,
    in_sync_requested: bool,
    in_sync_sent: bool,
}

impl Sequencer {
    pub(crate) fn request_in_sync(&mut self) {
        self.in_sync_requested = true;
    }

    pub(crate) fn flush(&mut self, ipsets: &mut IpSets) -> Vec<Update> {
        let mut out = Vec::new();
        if let Some(c) = self.config.drain() {
            out.push(Update::Config(c));
        }
        if let Some(p) = self.pools.drain() {
            out.push(Update::Pools(p));
        }
        let mut set_removes = Vec::new();
        ipsets.drain(&mut out, &mut set_removes);
        let (pol_up, pol_rm) = self.policies.drain();
        let (ep_up, ep_rm) = self.endpoints.drain();
        let (vtep_up, vtep_rm) = self.vteps.drain();
        let (route_up, route_rm) = self.routes.drain();
        out.extend(pol_up.into_iter().map(|(_, p)| Update::PolicyUpsert(p)));
        out.extend(ep_up.into_iter().map(|(_, e)| Update::EndpointUpsert(e)));
        out.extend(vtep_up.into_iter().map(|(_, v)| Update::VtepUpsert(v)));
        out.extend(
            route_up
                .into_iter()
                .map(|(dst, target)| Update::RouteUpsert(crate::model::Route { dst, target })),
        );
        out.extend(route_rm.into_iter().map(|dst| Update::RouteRemove { dst }));
        out.extend(vtep_rm.into_iter().map(|node| Update::VtepRemove { node }));
        out.extend(ep_rm.into_iter().map(Update::EndpointRemove));
        out.extend(pol_rm.into_iter().map(Update::PolicyRemove));
        out.extend(set_removes);
        if self.in_sync_requested && !self.in_sync_sent {
            self.in_sync_sent = true;
            out.push(Update::InSync);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked_suppresses_noops() {
        let mut t: Tracked<u32, &str> = Tracked::default();
        t.set(1, "a");
        t.set(2, "b");
        t.remove(&2);
        t.remove(&3);
        assert_eq!(t.drain(), (vec![(1, "a")], vec![]));
        t.set(1, "a");
        assert_eq!(t.drain(), (vec![], vec![]));
        t.set(1, "b");
        t.set(1, "a");
        assert_eq!(t.drain(), (vec![], vec![]));
        assert_eq!(t.get(&1), Some(&"a"));
        t.remove(&1);
        assert_eq!(t.get(&1), None);
        t.set(1, "c");
        assert_eq!(t.drain(), (vec![(1, "c")], vec![]));
        t.remove(&1);
        assert_eq!(t.drain(), (vec![], vec![1]));
        assert_eq!(t.drain(), (vec![], vec![]));
    }

    #[test]
    fn latest_emits_changes_only() {
        let mut l: Latest<u32> = Latest::default();
        l.set(1);
        assert_eq!(l.drain(), Some(1));
        l.set(1);
        assert_eq!(l.drain(), None);
        l.set(2);
        assert_eq!(l.drain(), Some(2));
        assert_eq!(l.drain(), None);
    }
}
