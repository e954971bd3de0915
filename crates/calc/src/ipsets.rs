//! The IP sets active rules need, refcounted, with members kept current.
//!
//! A set is active while at least one active policy's compiled rules name
//! it. Members come from every entity (local and remote endpoints, host
//! endpoints, network sets) the set's selector matches, found through a
//! [`SelectorIndex`]; each member is counted per contributing entity so
//! overlapping contributions are handled. Changes are kept as a pending
//! delta against what was last emitted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use ipnet::IpNet;

use crate::effsel::Entity;
use crate::intern::{IdMap, IdSet, Interner};
use crate::model::{IpSetId, IpSetMember, Update};
use crate::rules::IpSetDef;
use crate::selector_index::{MatchEvent, SelectorIndex};

/// What an entity contributes to sets: its addresses and its named ports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EntityAddrs {
    pub nets: Vec<IpNet>,
    /// (name, protocol, port)
    pub ports: Vec<(String, u8, u16)>,
}

impl EntityAddrs {
    fn members(&self, def: &IpSetDef) -> Vec<IpSetMember> {
        match &def.named_port {
            None => self.nets.iter().map(|n| IpSetMember::Net(*n)).collect(),
            Some((proto, name)) => self
                .ports
                .iter()
                .filter(|(n, p, _)| n == name && p == proto)
                .flat_map(|(_, p, port)| {
                    self.nets.iter().map(move |n| IpSetMember::NetPort {
                        net: *n,
                        protocol: *p,
                        port: *port,
                    })
                })
                .collect(),
        }
    }
}

struct SetState {
    def: Arc<IpSetDef>,
    refs: u32,
    members: HashMap<IpSetMember, u32>,
    /// Members are being computed through the index.
    indexed: bool,
    /// Emitted at least once (deltas apply); otherwise a full upsert is due.
    sent: bool,
    /// member → true (added) / false (removed) since the last emit.
    pending: BTreeMap<IpSetMember, bool>,
}

impl SetState {
    fn add(&mut self, m: IpSetMember) -> bool {
        let c = self.members.entry(m.clone()).or_insert(0);
        *c += 1;
        if *c == 1 {
            self.note(m, true);
            return true;
        }
        false
    }

    fn remove(&mut self, m: &IpSetMember) -> bool {
        let Some(c) = self.members.get_mut(m) else {
            return false;
        };
        *c -= 1;
        if *c == 0 {
            self.members.remove(m);
            self.note(m.clone(), false);
            return true;
        }
        false
    }

    fn note(&mut self, m: IpSetMember, added: bool) {
        if !self.sent {
            return;
        }
        match self.pending.get(&m) {
            Some(prev) if *prev != added => {
                self.pending.remove(&m);
            }
            _ => {
                self.pending.insert(m, added);
            }
        }
    }
}

#[derive(Default)]
pub(crate) struct IpSets {
    ids: Interner<IpSetId>,
    sets: IdMap<u32, SetState>,
    /// Handles whose refcount changed since the last activation pass.
    touched: IdSet<u32>,
    entities: IdMap<u32, EntityAddrs>,
    index: SelectorIndex<u32, u32>,
    dirty: IdSet<u32>,
    /// Emitted sets that are no longer active.
    to_remove: BTreeSet<IpSetId>,
    events: Vec<MatchEvent<u32, u32>>,
}

impl IpSets {
    pub(crate) fn incref(&mut self, def: &Arc<IpSetDef>) {
        let h = self.ids.intern(&def.id);
        let s = self.sets.entry(h).or_insert_with(|| SetState {
            def: def.clone(),
            refs: 0,
            members: HashMap::new(),
            indexed: false,
            sent: false,
            pending: BTreeMap::new(),
        });
        s.refs += 1;
        self.touched.insert(h);
    }

    pub(crate) fn decref(&mut self, id: &str) {
        let Some(h) = self.ids.get(&id.to_string()) else {
            return;
        };
        if let Some(s) = self.sets.get_mut(&h) {
            s.refs = s.refs.saturating_sub(1);
            self.touched.insert(h);
        }
    }

    /// Starts computing newly referenced sets and drops unreferenced ones.
    /// Run after all refcount changes of a flush, so a set that is released
    /// and re-acquired in one flush does not churn.
    pub(crate) fn settle(&mut self) {
        let mut events = std::mem::take(&mut self.events);
        for h in std::mem::take(&mut self.touched) {
            let Some(s) = self.sets.get(&h) else { continue };
            if s.refs == 0 {
                let s = self.sets.remove(&h).expect("present");
                self.index.remove_selector(h, &mut events);
                events.clear();
                if s.sent {
                    self.to_remove.insert(s.def.id.clone());
                }
                self.dirty.remove(&h);
                self.ids.release(h);
            } else if !s.indexed {
                // Newly active: compute members. If it was removed earlier in
                // this flush, the full upsert replaces it instead.
                self.to_remove.remove(&s.def.id);
                let sel = Arc::new(s.def.sel.clone());
                if let Some(s) = self.sets.get_mut(&h) {
                    s.indexed = true;
                }
                self.index.upsert_selector(h, sel, &mut events);
                self.apply_events(&mut events);
                self.dirty.insert(h);
            }
        }
        self.events = events;
    }

    /// Adds or updates an entity (any endpoint, host endpoint or network set).
    pub(crate) fn upsert_entity(&mut self, id: u32, ent: Entity, addrs: EntityAddrs) {
        let mut events = std::mem::take(&mut self.events);
        let old_addrs = self.entities.get(&id).cloned();
        if old_addrs.as_ref() != Some(&addrs) {
            // Re-contribute to the sets it already matches.
            let matched: Vec<u32> = self.index.matches_of_entity(id).collect();
            for h in matched {
                if let Some(s) = self.sets.get_mut(&h) {
                    if let Some(old) = &old_addrs {
                        for m in old.members(&s.def) {
                            s.remove(&m);
                        }
                    }
                    for m in addrs.members(&s.def) {
                        s.add(m);
                    }
                    self.dirty.insert(h);
                }
            }
        }
        self.entities.insert(id, addrs);
        self.index.upsert_entity(id, ent, &mut events);
        self.apply_events(&mut events);
        self.events = events;
    }

    /// An entity's labels changed but not its addresses.
    pub(crate) fn relabel(&mut self, id: u32, ent: Entity) {
        if let Some(addrs) = self.entities.get(&id).cloned() {
            self.upsert_entity(id, ent, addrs);
        }
    }

    pub(crate) fn remove_entity(&mut self, id: u32) {
        let mut events = std::mem::take(&mut self.events);
        self.index.remove_entity(id, &mut events);
        self.apply_events(&mut events);
        self.entities.remove(&id);
        self.events = events;
    }

    fn apply_events(&mut self, events: &mut Vec<MatchEvent<u32, u32>>) {
        for ev in events.drain(..) {
            let (h, e, started) = match ev {
                MatchEvent::Started(h, e) => (h, e, true),
                MatchEvent::Stopped(h, e) => (h, e, false),
            };
            let (Some(s), Some(addrs)) = (self.sets.get_mut(&h), self.entities.get(&e)) else {
                continue;
            };
            for m in addrs.members(&s.def) {
                if started {
                    s.add(m);
                } else {
                    s.remove(&m);
                }
            }
            self.dirty.insert(h);
        }
    }

    /// Emits upserts/deltas for changed sets and the removals, separately
    /// (the sequencer places them).
    pub(crate) fn drain(&mut self, upserts: &mut Vec<Update>, removes: &mut Vec<Update>) {
        let mut dirty: Vec<(IpSetId, u32)> = self
            .dirty
            .drain()
            .filter_map(|h| self.sets.get(&h).map(|s| (s.def.id.clone(), h)))
            .collect();
        dirty.sort();
        for (id, h) in dirty {
            let s = self.sets.get_mut(&h).expect("filtered");
            if !s.sent {
                s.sent = true;
                s.pending.clear();
                upserts.push(Update::IpSetUpsert {
                    id,
                    members: s.members.keys().cloned().collect(),
                });
            } else if !s.pending.is_empty() {
                let mut added = BTreeSet::new();
                let mut removed = BTreeSet::new();
                for (m, a) in std::mem::take(&mut s.pending) {
                    if a {
                        added.insert(m);
                    } else {
                        removed.insert(m);
                    }
                }
                upserts.push(Update::IpSetDelta { id, added, removed });
            }
        }
        for id in std::mem::take(&mut self.to_remove) {
            removes.push(Update::IpSetRemove { id });
        }
    }

    /// Number of active sets (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn active(&self) -> usize {
        self.sets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effsel::{EffSel, LabelMap, Scope};
    use calico_api::selector::Selector;

    fn ent(labels: &[(&str, &str)]) -> Entity {
        let l: LabelMap = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Entity {
            labels: Arc::new(l),
            namespace: None,
            ns_labels: None,
        }
    }

    fn addrs(ips: &[&str], ports: &[(&str, u8, u16)]) -> EntityAddrs {
        EntityAddrs {
            nets: ips.iter().map(|s| s.parse().unwrap()).collect(),
            ports: ports
                .iter()
                .map(|(n, p, port)| (n.to_string(), *p, *port))
                .collect(),
        }
    }

    fn def(s: &str) -> Arc<IpSetDef> {
        Arc::new(IpSetDef::selector(EffSel::new(
            Selector::parse(s).unwrap(),
            Scope::Any,
        )))
    }

    fn drain(s: &mut IpSets) -> Vec<Update> {
        let (mut u, mut r) = (Vec::new(), Vec::new());
        s.drain(&mut u, &mut r);
        u.extend(r);
        u
    }

    fn net(s: &str) -> IpSetMember {
        IpSetMember::Net(s.parse().unwrap())
    }

    #[test]
    fn lifecycle_and_deltas() {
        let mut s = IpSets::default();
        s.upsert_entity(1, ent(&[("app", "web")]), addrs(&["10.0.0.1/32"], &[]));
        s.upsert_entity(2, ent(&[("app", "db")]), addrs(&["10.0.0.2/32"], &[]));
        let d = def("app == 'web'");
        s.incref(&d);
        s.incref(&d);
        s.settle();
        assert_eq!(
            drain(&mut s),
            vec![Update::IpSetUpsert {
                id: d.id.clone(),
                members: [net("10.0.0.1/32")].into()
            }]
        );
        // A label change adds a member; an overlapping duplicate is counted.
        s.upsert_entity(2, ent(&[("app", "web")]), addrs(&["10.0.0.2/32"], &[]));
        s.upsert_entity(3, ent(&[("app", "web")]), addrs(&["10.0.0.1/32"], &[]));
        assert_eq!(
            drain(&mut s),
            vec![Update::IpSetDelta {
                id: d.id.clone(),
                added: [net("10.0.0.2/32")].into(),
                removed: [].into()
            }]
        );
        s.remove_entity(3);
        assert!(drain(&mut s).is_empty());
        // Add then remove within one flush cancels out.
        s.upsert_entity(4, ent(&[("app", "web")]), addrs(&["10.0.0.4/32"], &[]));
        s.remove_entity(4);
        assert!(drain(&mut s).is_empty());
        // Address change of a member.
        s.upsert_entity(1, ent(&[("app", "web")]), addrs(&["10.0.0.9/32"], &[]));
        assert_eq!(
            drain(&mut s),
            vec![Update::IpSetDelta {
                id: d.id.clone(),
                added: [net("10.0.0.9/32")].into(),
                removed: [net("10.0.0.1/32")].into()
            }]
        );
        s.decref(&d.id);
        s.settle();
        assert!(drain(&mut s).is_empty());
        s.decref(&d.id);
        s.settle();
        assert_eq!(
            drain(&mut s),
            vec![Update::IpSetRemove { id: d.id.clone() }]
        );
        assert_eq!(s.active(), 0);
        // Never emitted: activate and release in one flush emits nothing.
        s.incref(&d);
        s.decref(&d.id);
        s.settle();
        assert!(drain(&mut s).is_empty());
    }

    #[test]
    fn named_ports() {
        let mut s = IpSets::default();
        s.upsert_entity(
            1,
            ent(&[("app", "web")]),
            addrs(&["10.0.0.1/32"], &[("http", 6, 8080), ("dns", 17, 53)]),
        );
        let d = Arc::new(IpSetDef::named_port(
            EffSel::new(Selector::all(), Scope::Any),
            6,
            "http",
        ));
        s.incref(&d);
        s.settle();
        assert_eq!(
            drain(&mut s),
            vec![Update::IpSetUpsert {
                id: d.id.clone(),
                members: [IpSetMember::NetPort {
                    net: "10.0.0.1/32".parse().unwrap(),
                    protocol: 6,
                    port: 8080
                }]
                .into()
            }]
        );
    }
}
