//! Label inheritance: the labels selectors see on an entity.
//!
//! - Workload endpoint: own labels, overridden by the implicit
//!   `projectcalico.org/namespace` and `projectcalico.org/orchestrator`
//!   (upstream's client writes these), layered over the `labelsToApply` of
//!   its profiles (the first listed profile wins among profiles; own labels
//!   win over all).
//! - Host endpoint: own labels over its profiles' `labelsToApply`.
//! - NetworkSet: own labels plus the namespace label. GlobalNetworkSet: own.
//! - Namespace labels (for `namespaceSelector`): `projectcalico.org/name:
//!   <ns>` over the `labelsToApply` of the profile `kns.<ns>`.
//!
//! Keeps, per entity, the inputs of that computation and reverse indexes
//! (profile → entities listing it, namespace → entities in it) so a profile
//! change recomputes only the entities it affects.

use std::collections::HashMap;
use std::sync::Arc;

use crate::effsel::{Entity, LabelMap};
use crate::intern::{IdMap, IdSet};

/// Label of a namespace's own name, for namespace selectors.
pub const LABEL_NAME: &str = "projectcalico.org/name";
/// Profiles named `kns.<namespace>` carry a namespace's labels.
pub const NAMESPACE_PROFILE_PREFIX: &str = "kns.";

/// What an entity's effective labels are computed from.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LabelSource {
    /// Own labels with the implicit ones already applied.
    pub own: LabelMap,
    /// Profiles whose `labelsToApply` are inherited, in priority order.
    pub profiles: Vec<String>,
    /// Namespace for namespaced kinds.
    pub namespace: Option<String>,
}

#[derive(Default)]
pub(crate) struct LabelInheritance {
    profile_labels: HashMap<String, Arc<LabelMap>>,
    ns_cache: HashMap<String, Arc<LabelMap>>,
    sources: IdMap<u32, LabelSource>,
    profile_users: HashMap<String, IdSet<u32>>,
    ns_members: HashMap<String, IdSet<u32>>,
}

impl LabelInheritance {
    /// Records an entity's label inputs and returns its effective view.
    pub(crate) fn set_source(&mut self, id: u32, src: LabelSource) -> Entity {
        self.remove_source(id);
        for p in &src.profiles {
            self.profile_users.entry(p.clone()).or_default().insert(id);
        }
        if let Some(ns) = &src.namespace {
            self.ns_members.entry(ns.clone()).or_default().insert(id);
        }
        self.sources.insert(id, src);
        self.entity(id).expect("just inserted")
    }

    pub(crate) fn remove_source(&mut self, id: u32) {
        let Some(old) = self.sources.remove(&id) else {
            return;
        };
        for p in &old.profiles {
            remove_member(&mut self.profile_users, p, id);
        }
        if let Some(ns) = &old.namespace {
            remove_member(&mut self.ns_members, ns, id);
        }
    }

    /// The entity's current effective labels and namespace labels.
    pub(crate) fn entity(&mut self, id: u32) -> Option<Entity> {
        let src = self.sources.get(&id)?;
        let mut labels = if src
            .profiles
            .iter()
            .any(|p| self.profile_labels.get(p).is_some_and(|l| !l.is_empty()))
        {
            let mut m = LabelMap::new();
            for p in src.profiles.iter().rev() {
                if let Some(l) = self.profile_labels.get(p) {
                    m.extend(l.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
            m
        } else {
            LabelMap::new()
        };
        if labels.is_empty() {
            labels = src.own.clone();
        } else {
            labels.extend(src.own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let namespace = src.namespace.clone();
        let ns_labels = namespace.as_ref().map(|ns| self.namespace_labels(ns));
        Some(Entity {
            labels: Arc::new(labels),
            namespace: namespace.map(|n| Arc::from(n.as_str())),
            ns_labels,
        })
    }

    pub(crate) fn namespace_labels(&mut self, ns: &str) -> Arc<LabelMap> {
        if let Some(l) = self.ns_cache.get(ns) {
            return l.clone();
        }
        let mut m = self
            .profile_labels
            .get(&format!("{NAMESPACE_PROFILE_PREFIX}{ns}"))
            .map(|l| (**l).clone())
            .unwrap_or_default();
        m.insert(LABEL_NAME.to_string(), ns.to_string());
        let m = Arc::new(m);
        self.ns_cache.insert(ns.to_string(), m.clone());
        m
    }

    /// Records a profile's `labelsToApply` (None: profile deleted) and
    /// returns the entities whose effective view may have changed.
    pub(crate) fn set_profile_labels(&mut self, name: &str, labels: Option<LabelMap>) -> Vec<u32> {
        let new = labels.filter(|l| !l.is_empty()).map(Arc::new);
        let old = self.profile_labels.get(name).cloned();
        if old == new {
            return Vec::new();
        }
        match new {
            Some(l) => self.profile_labels.insert(name.to_string(), l),
            None => self.profile_labels.remove(name),
        };
        let mut affected: IdSet<u32> = self
            .profile_users
            .get(name)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        if let Some(ns) = name.strip_prefix(NAMESPACE_PROFILE_PREFIX) {
            self.ns_cache.remove(ns);
            if let Some(members) = self.ns_members.get(ns) {
                affected.extend(members.iter().copied());
            }
        }
        affected.into_iter().collect()
    }
}

fn remove_member(m: &mut HashMap<String, IdSet<u32>>, key: &str, id: u32) {
    if let Some(s) = m.get_mut(key) {
        s.remove(&id);
        if s.is_empty() {
            m.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lm(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn own_labels_win_first_profile_wins() {
        let mut li = LabelInheritance::default();
        li.set_profile_labels("p1", Some(lm(&[("a", "p1"), ("b", "p1")])));
        li.set_profile_labels("p2", Some(lm(&[("b", "p2"), ("c", "p2")])));
        let e = li.set_source(
            1,
            LabelSource {
                own: lm(&[("a", "own")]),
                profiles: vec!["p1".into(), "p2".into()],
                namespace: Some("prod".into()),
            },
        );
        assert_eq!(*e.labels, lm(&[("a", "own"), ("b", "p1"), ("c", "p2")]));
        assert_eq!(*e.ns_labels.unwrap(), lm(&[(LABEL_NAME, "prod")]));
        // A namespace profile changes the namespace labels of members.
        let affected = li.set_profile_labels("kns.prod", Some(lm(&[("env", "production")])));
        assert_eq!(affected, vec![1]);
        let e = li.entity(1).unwrap();
        assert_eq!(
            *e.ns_labels.unwrap(),
            lm(&[(LABEL_NAME, "prod"), ("env", "production")])
        );
        // Profile label change affects users only.
        assert_eq!(li.set_profile_labels("p2", None), vec![1]);
        assert!(li
            .set_profile_labels("p9", Some(lm(&[("z", "1")])))
            .is_empty());
        assert_eq!(
            *li.entity(1).unwrap().labels,
            lm(&[("a", "own"), ("b", "p1")])
        );
        li.remove_source(1);
        assert!(li.set_profile_labels("p1", None).is_empty());
    }
}
