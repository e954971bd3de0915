//! Incremental selector ↔ entity matching.
//!
//! Each selector is filed under the one label every match must carry
//! ([`EffSel::index_key`]); selectors with no such label go to a fallback
//! bucket. When an entity's labels change only the selectors filed under its
//! labels (plus the fallback) are evaluated. Symmetrically, entities are
//! indexed by label so a new selector is evaluated only against entities that
//! carry its index label. Every change reports the matches that started or
//! stopped, so callers do work proportional to what changed.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use crate::effsel::{EffSel, Entity};
use crate::intern::{IdMap, IdSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MatchEvent<S, E> {
    Started(S, E),
    Stopped(S, E),
}

struct LabelBucket<S> {
    /// Selectors requiring only that the label exists.
    any_value: IdSet<S>,
    by_value: HashMap<String, IdSet<S>>,
}

impl<S> Default for LabelBucket<S> {
    fn default() -> Self {
        LabelBucket {
            any_value: IdSet::default(),
            by_value: HashMap::new(),
        }
    }
}

struct SelEntry {
    sel: Arc<EffSel>,
    key: Option<(String, Option<String>)>,
}

pub(crate) struct SelectorIndex<S, E> {
    selectors: IdMap<S, SelEntry>,
    buckets: HashMap<String, LabelBucket<S>>,
    fallback: IdSet<S>,
    entities: IdMap<E, Entity>,
    /// label key → value → entities carrying it.
    entities_by_label: HashMap<String, HashMap<String, IdSet<E>>>,
    sel_matches: IdMap<S, IdSet<E>>,
    ent_matches: IdMap<E, IdSet<S>>,
}

impl<S, E> Default for SelectorIndex<S, E> {
    fn default() -> Self {
        SelectorIndex {
            selectors: IdMap::default(),
            buckets: HashMap::new(),
            fallback: IdSet::default(),
            entities: IdMap::default(),
            entities_by_label: HashMap::new(),
            sel_matches: IdMap::default(),
            ent_matches: IdMap::default(),
        }
    }
}

impl<S: Copy + Eq + Hash, E: Copy + Eq + Hash> SelectorIndex<S, E> {
    /// Adds or replaces a selector.
    pub(crate) fn upsert_selector(
        &mut self,
        id: S,
        sel: Arc<EffSel>,
        out: &mut Vec<MatchEvent<S, E>>,
    ) {
        if let Some(old) = self.selectors.get(&id) {
            if old.sel == sel {
                return;
            }
            self.unfile(id);
        }
        let key = sel.index_key();
        match &key {
            None => {
                self.fallback.insert(id);
            }
            Some((k, v)) => {
                let b = self.buckets.entry(k.clone()).or_default();
                match v {
                    None => b.any_value.insert(id),
                    Some(v) => b.by_value.entry(v.clone()).or_default().insert(id),
                };
            }
        }
        // Evaluate against the candidate entities only.
        let mut now: IdSet<E> = IdSet::default();
        {
            let mut check = |e: &E| {
                if let Some(ent) = self.entities.get(e) {
                    if sel.matches(ent) {
                        now.insert(*e);
                    }
                }
            };
            match &key {
                None => self.entities.keys().for_each(&mut check),
                Some((k, None)) => {
                    if let Some(vals) = self.entities_by_label.get(k) {
                        vals.values().flatten().for_each(&mut check);
                    }
                }
                Some((k, Some(v))) => {
                    if let Some(ents) = self.entities_by_label.get(k).and_then(|m| m.get(v)) {
                        ents.iter().for_each(&mut check);
                    }
                }
            }
        }
        self.selectors.insert(id, SelEntry { sel, key });
        let old = self.sel_matches.remove(&id).unwrap_or_default();
        for e in old.difference(&now) {
            remove_pair(&mut self.ent_matches, *e, id);
            out.push(MatchEvent::Stopped(id, *e));
        }
        for e in now.difference(&old) {
            self.ent_matches.entry(*e).or_default().insert(id);
            out.push(MatchEvent::Started(id, *e));
        }
        if !now.is_empty() {
            self.sel_matches.insert(id, now);
        }
    }

    pub(crate) fn remove_selector(&mut self, id: S, out: &mut Vec<MatchEvent<S, E>>) {
        if !self.selectors.contains_key(&id) {
            return;
        }
        self.unfile(id);
        self.selectors.remove(&id);
        for e in self.sel_matches.remove(&id).unwrap_or_default() {
            remove_pair(&mut self.ent_matches, e, id);
            out.push(MatchEvent::Stopped(id, e));
        }
    }

    fn unfile(&mut self, id: S) {
        let Some(entry) = self.selectors.get(&id) else {
            return;
        };
        match &entry.key {
            None => {
                self.fallback.remove(&id);
            }
            Some((k, v)) => {
                if let Some(b) = self.buckets.get_mut(k) {
                    match v {
                        None => {
                            b.any_value.remove(&id);
                        }
                        Some(v) => {
                            if let Some(s) = b.by_value.get_mut(v) {
                                s.remove(&id);
                                if s.is_empty() {
                                    b.by_value.remove(v);
                                }
                            }
                        }
                    }
                    if b.any_value.is_empty() && b.by_value.is_empty() {
                        self.buckets.remove(k);
                    }
                }
            }
        }
    }

    /// Adds or replaces an entity.
    pub(crate) fn upsert_entity(&mut self, id: E, ent: Entity, out: &mut Vec<MatchEvent<S, E>>) {
        if let Some(old) = self.entities.get(&id) {
            if *old == ent {
                return;
            }
            let old_labels = old.labels.clone();
            self.unindex_entity(id, &old_labels);
        }
        for (k, v) in ent.labels.iter() {
            self.entities_by_label
                .entry(k.clone())
                .or_default()
                .entry(v.clone())
                .or_default()
                .insert(id);
        }
        let mut now: IdSet<S> = IdSet::default();
        {
            let mut check = |s: &S| {
                if let Some(entry) = self.selectors.get(s) {
                    if entry.sel.matches(&ent) {
                        now.insert(*s);
                    }
                }
            };
            self.fallback.iter().for_each(&mut check);
            for (k, v) in ent.labels.iter() {
                if let Some(b) = self.buckets.get(k) {
                    b.any_value.iter().for_each(&mut check);
                    if let Some(s) = b.by_value.get(v) {
                        s.iter().for_each(&mut check);
                    }
                }
            }
        }
        self.entities.insert(id, ent);
        let old = self.ent_matches.remove(&id).unwrap_or_default();
        for s in old.difference(&now) {
            remove_pair(&mut self.sel_matches, *s, id);
            out.push(MatchEvent::Stopped(*s, id));
        }
        for s in now.difference(&old) {
            self.sel_matches.entry(*s).or_default().insert(id);
            out.push(MatchEvent::Started(*s, id));
        }
        if !now.is_empty() {
            self.ent_matches.insert(id, now);
        }
    }

    pub(crate) fn remove_entity(&mut self, id: E, out: &mut Vec<MatchEvent<S, E>>) {
        let Some(old) = self.entities.remove(&id) else {
            return;
        };
        self.unindex_entity(id, &old.labels);
        for s in self.ent_matches.remove(&id).unwrap_or_default() {
            remove_pair(&mut self.sel_matches, s, id);
            out.push(MatchEvent::Stopped(s, id));
        }
    }

    fn unindex_entity(&mut self, id: E, labels: &crate::effsel::LabelMap) {
        for (k, v) in labels.iter() {
            if let Some(vals) = self.entities_by_label.get_mut(k) {
                if let Some(ents) = vals.get_mut(v) {
                    ents.remove(&id);
                    if ents.is_empty() {
                        vals.remove(v);
                    }
                }
                if vals.is_empty() {
                    self.entities_by_label.remove(k);
                }
            }
        }
    }

    pub(crate) fn matches_of_selector(&self, id: S) -> impl Iterator<Item = E> + '_ {
        self.sel_matches.get(&id).into_iter().flatten().copied()
    }

    pub(crate) fn matches_of_entity(&self, id: E) -> impl Iterator<Item = S> + '_ {
        self.ent_matches.get(&id).into_iter().flatten().copied()
    }

    #[cfg(test)]
    pub(crate) fn fallback_len(&self) -> usize {
        self.fallback.len()
    }
}

fn remove_pair<A: Eq + Hash, B: Eq + Hash>(m: &mut IdMap<A, IdSet<B>>, a: A, b: B) {
    if let Some(s) = m.get_mut(&a) {
        s.remove(&b);
        if s.is_empty() {
            m.remove(&a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effsel::{LabelMap, Scope};
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

    fn sel(s: &str) -> Arc<EffSel> {
        Arc::new(EffSel::new(Selector::parse(s).unwrap(), Scope::Any))
    }

    fn sorted(mut v: Vec<MatchEvent<u32, u32>>) -> Vec<MatchEvent<u32, u32>> {
        v.sort_by_key(|e| match e {
            MatchEvent::Started(s, e) => (0, *s, *e),
            MatchEvent::Stopped(s, e) => (1, *s, *e),
        });
        v
    }

    #[test]
    fn matches_follow_label_and_selector_changes() {
        let mut idx: SelectorIndex<u32, u32> = SelectorIndex::default();
        let mut ev = Vec::new();
        idx.upsert_entity(1, ent(&[("app", "web")]), &mut ev);
        idx.upsert_entity(2, ent(&[("app", "db")]), &mut ev);
        assert!(ev.is_empty());
        idx.upsert_selector(10, sel("app == 'web'"), &mut ev);
        idx.upsert_selector(11, sel("!has(x)"), &mut ev);
        idx.upsert_selector(12, sel("has(app)"), &mut ev);
        assert_eq!(idx.fallback_len(), 1);
        assert_eq!(
            sorted(std::mem::take(&mut ev)),
            vec![
                MatchEvent::Started(10, 1),
                MatchEvent::Started(11, 1),
                MatchEvent::Started(11, 2),
                MatchEvent::Started(12, 1),
                MatchEvent::Started(12, 2),
            ]
        );
        // Label change on entity 2: starts matching 10, stops matching 11.
        idx.upsert_entity(2, ent(&[("app", "web"), ("x", "1")]), &mut ev);
        assert_eq!(
            sorted(std::mem::take(&mut ev)),
            vec![MatchEvent::Started(10, 2), MatchEvent::Stopped(11, 2)]
        );
        // Unchanged entity: nothing.
        idx.upsert_entity(2, ent(&[("app", "web"), ("x", "1")]), &mut ev);
        assert!(ev.is_empty());
        // Selector change.
        idx.upsert_selector(10, sel("app == 'db'"), &mut ev);
        assert_eq!(
            sorted(std::mem::take(&mut ev)),
            vec![MatchEvent::Stopped(10, 1), MatchEvent::Stopped(10, 2)]
        );
        idx.remove_entity(1, &mut ev);
        assert_eq!(
            sorted(std::mem::take(&mut ev)),
            vec![MatchEvent::Stopped(11, 1), MatchEvent::Stopped(12, 1)]
        );
        idx.remove_selector(12, &mut ev);
        assert_eq!(
            sorted(std::mem::take(&mut ev)),
            vec![MatchEvent::Stopped(12, 2)]
        );
        assert_eq!(idx.matches_of_entity(2).count(), 0);
    }
}
