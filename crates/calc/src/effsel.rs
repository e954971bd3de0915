//! Effective selectors: a label selector plus the namespace scope that policy
//! kind and `namespaceSelector` add, and the entities they are matched
//! against (endpoints, host endpoints, network sets with their labels).
//!
//! Upstream folds the scope into selector text (`(ns == 'x') && (sel)`, or a
//! `pcns.`-prefixed namespace selector); here it is kept structured so the
//! namespace selector is evaluated against the namespace's own labels.

use std::collections::BTreeMap;
use std::sync::Arc;

use calico_api::selector::Selector;
use calico_api::LABEL_NAMESPACE;

use crate::hash::b64_hash;

pub(crate) type LabelMap = BTreeMap<String, String>;

/// What a selector is matched against: effective labels (own, implicit and
/// inherited), the namespace for namespaced kinds, and that namespace's labels.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entity {
    pub labels: Arc<LabelMap>,
    pub namespace: Option<Arc<str>>,
    pub ns_labels: Option<Arc<LabelMap>>,
}

/// Which entities a selector may match, by namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    /// Any entity, namespaced or not (GlobalNetworkPolicy, Profile).
    Any,
    /// Only entities in this namespace (NetworkPolicy).
    Namespace(String),
    /// Any namespaced entity (`namespaceSelector: all()`).
    Namespaced,
    /// Namespaced entities whose namespace's labels match.
    NsSelector(Selector),
    /// Only non-namespaced entities (`namespaceSelector: global()`).
    NonNamespaced,
}

impl Scope {
    /// The scope a non-empty `namespaceSelector` text gives.
    pub(crate) fn from_namespace_selector(sel: Selector) -> Scope {
        if sel.is_global() {
            Scope::NonNamespaced
        } else if sel.is_all() {
            Scope::Namespaced
        } else {
            Scope::NsSelector(sel)
        }
    }

    fn admits(&self, e: &Entity) -> bool {
        match self {
            Scope::Any => true,
            Scope::Namespace(ns) => e.namespace.as_deref() == Some(ns.as_str()),
            Scope::Namespaced => e.namespace.is_some(),
            Scope::NsSelector(s) => match (&e.namespace, &e.ns_labels) {
                (Some(_), Some(l)) => s.matches(&**l),
                _ => false,
            },
            Scope::NonNamespaced => e.namespace.is_none(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct EffSel {
    pub sel: Selector,
    pub scope: Scope,
}

impl EffSel {
    pub(crate) fn new(sel: Selector, scope: Scope) -> EffSel {
        EffSel { sel, scope }
    }

    pub(crate) fn matches(&self, e: &Entity) -> bool {
        self.scope.admits(e) && self.sel.matches(&*e.labels)
    }

    /// Unambiguous canonical text (NUL separates the parts; selector text
    /// cannot contain one).
    pub(crate) fn canonical(&self) -> String {
        let sel = self.sel.canonical();
        match &self.scope {
            Scope::Any => sel,
            Scope::Namespace(ns) => format!("{sel}\0ns={ns}"),
            Scope::Namespaced => format!("{sel}\0ns:all"),
            Scope::NsSelector(s) => format!("{sel}\0nssel={s}"),
            Scope::NonNamespaced => format!("{sel}\0ns:global"),
        }
    }

    /// IP set id: an unscoped selector keeps the selector's own unique id
    /// (as upstream); scoped ones hash the canonical text the same way.
    pub(crate) fn set_id(&self) -> String {
        match self.scope {
            Scope::Any => self.sel.unique_id(),
            _ => format!("s:{}", b64_hash(self.canonical().as_bytes(), 38)),
        }
    }

    /// The label every match must carry that narrows candidates most:
    /// `(key, Some(value))` beats `(key, None)`, and any key beats the
    /// implicit namespace/orchestrator keys, which most endpoints share.
    /// None: the selector must be checked against every entity.
    pub(crate) fn index_key(&self) -> Option<(String, Option<String>)> {
        let mut req: Vec<(&str, Option<&str>)> = self.sel.required_labels();
        match &self.scope {
            Scope::Namespace(ns) => req.push((LABEL_NAMESPACE, Some(ns.as_str()))),
            Scope::Namespaced | Scope::NsSelector(_) => req.push((LABEL_NAMESPACE, None)),
            Scope::Any | Scope::NonNamespaced => {}
        }
        req.into_iter()
            .min_by_key(|(k, v)| (k.starts_with("projectcalico.org/"), v.is_none()))
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> Selector {
        Selector::parse(s).unwrap()
    }

    fn ent(labels: &[(&str, &str)], ns: Option<&str>, ns_labels: &[(&str, &str)]) -> Entity {
        let l: LabelMap = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let nl: LabelMap = ns_labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Entity {
            labels: Arc::new(l),
            namespace: ns.map(Arc::from),
            ns_labels: ns.map(|_| Arc::new(nl)),
        }
    }

    #[test]
    fn scopes() {
        let e = ent(&[("app", "web")], Some("prod"), &[("env", "p")]);
        let g = ent(&[("app", "web")], None, &[]);
        let s = |scope| EffSel::new(sel("app == 'web'"), scope);
        assert!(s(Scope::Any).matches(&e) && s(Scope::Any).matches(&g));
        assert!(s(Scope::Namespace("prod".into())).matches(&e));
        assert!(!s(Scope::Namespace("dev".into())).matches(&e));
        assert!(!s(Scope::Namespace("prod".into())).matches(&g));
        assert!(s(Scope::Namespaced).matches(&e) && !s(Scope::Namespaced).matches(&g));
        assert!(!s(Scope::NonNamespaced).matches(&e) && s(Scope::NonNamespaced).matches(&g));
        assert!(s(Scope::NsSelector(sel("env == 'p'"))).matches(&e));
        assert!(!s(Scope::NsSelector(sel("env == 'd'"))).matches(&e));
        assert!(!s(Scope::NsSelector(sel("all()"))).matches(&g));
    }

    #[test]
    fn ids_and_index_keys() {
        let a = EffSel::new(sel("app == 'web'"), Scope::Any);
        assert_eq!(a.set_id(), sel("app == 'web'").unique_id());
        let b = EffSel::new(sel("app == 'web'"), Scope::Namespace("x".into()));
        assert_ne!(a.set_id(), b.set_id());
        assert_eq!(b.set_id().len(), 40);
        assert_eq!(a.index_key(), Some(("app".into(), Some("web".into()))));
        let c = EffSel::new(sel("all()"), Scope::Namespace("x".into()));
        assert_eq!(
            c.index_key(),
            Some((LABEL_NAMESPACE.into(), Some("x".into())))
        );
        let d = EffSel::new(sel("has(sg) && role == 'db'"), Scope::Namespace("x".into()));
        assert_eq!(d.index_key(), Some(("role".into(), Some("db".into()))));
        assert_eq!(EffSel::new(sel("!has(a)"), Scope::Any).index_key(), None);
    }
}
