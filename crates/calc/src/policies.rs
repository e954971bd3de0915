//! Policies, profiles and tiers: what is known of each, how they sort, and
//! which are active (used by at least one local endpoint) with their
//! compiled form.
//!
//! Order (calico-core §4, current upstream rule): tiers by `order` (unset
//! last) then name; inside a tier by policy `order` (unset = infinity), then
//! name, then namespace (empty for GlobalNetworkPolicy), then kind. The
//! `default` tier has order 1,000,000 unless a Tier resource says otherwise;
//! other tiers without a resource sort last with default action Deny.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use calico_api::policy::{Rule as ApiRule, DEFAULT_TIER, DEFAULT_TIER_ORDER};

use crate::intern::{IdMap, IdSet, Interner};
use crate::ipsets::IpSets;
use crate::model::{Policy, PolicyId, TierDefault};
use crate::rules::{compile_policy, Compiled};
use crate::sequencer::Tracked;

/// What ordering and compilation need of a policy or profile.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PolicyRecord {
    pub tier: String,
    pub order: Option<f64>,
    pub ingress: bool,
    pub egress: bool,
    /// Namespace of a NetworkPolicy (scopes its rule selectors).
    pub namespace: Option<String>,
    /// Rules of the directions the policy applies in (others are dropped).
    pub inbound: Vec<ApiRule>,
    pub outbound: Vec<ApiRule>,
}

impl PolicyRecord {
    /// Fields that decide where the policy sits for an endpoint.
    fn placement_eq(&self, o: &PolicyRecord) -> bool {
        self.tier == o.tier
            && self.order.map(f64::to_bits) == o.order.map(f64::to_bits)
            && self.ingress == o.ingress
            && self.egress == o.egress
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct TierInfo {
    pub order: Option<f64>,
    pub default_action: TierDefault,
}

struct Active {
    refs: u32,
    compiled: Option<Compiled>,
}

/// What a record change means for endpoints using the policy.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RecordChange {
    None,
    /// Only the rules changed: re-emit the policy, endpoints unaffected.
    Rules,
    /// Tier, order or direction changed (or created/deleted): the
    /// endpoints it selects must be re-resolved.
    Placement,
}

#[derive(Default)]
pub(crate) struct Policies {
    ids: Interner<PolicyId>,
    records: IdMap<u32, PolicyRecord>,
    tiers: HashMap<String, TierInfo>,
    tier_members: HashMap<String, IdSet<u32>>,
    active: IdMap<u32, Active>,
    touched: IdSet<u32>,
    content_dirty: IdSet<u32>,
}

fn order_key(o: Option<f64>) -> f64 {
    match o {
        Some(x) if !x.is_nan() => x,
        _ => f64::INFINITY,
    }
}

impl Policies {
    pub(crate) fn handle(&mut self, id: &PolicyId) -> u32 {
        self.ids.intern(id)
    }

    pub(crate) fn existing_handle(&self, id: &PolicyId) -> Option<u32> {
        self.ids.get(id)
    }

    pub(crate) fn id(&self, h: u32) -> Option<&PolicyId> {
        self.ids.key(h)
    }

    pub(crate) fn record(&self, h: u32) -> Option<&PolicyRecord> {
        self.records.get(&h)
    }

    /// Stores (or with None deletes) a record.
    pub(crate) fn set_record(&mut self, h: u32, rec: Option<PolicyRecord>) -> RecordChange {
        let old = self.records.get(&h);
        let change = match (old, &rec) {
            (None, None) => RecordChange::None,
            (Some(o), Some(n)) if o == n => RecordChange::None,
            (Some(o), Some(n)) if o.placement_eq(n) => RecordChange::Rules,
            _ => RecordChange::Placement,
        };
        if let Some(o) = old {
            if let Some(s) = self.tier_members.get_mut(&o.tier) {
                s.remove(&h);
                if s.is_empty() {
                    self.tier_members.remove(&o.tier);
                }
            }
        }
        match rec {
            Some(r) => {
                self.tier_members
                    .entry(r.tier.clone())
                    .or_default()
                    .insert(h);
                self.records.insert(h, r);
            }
            None => {
                self.records.remove(&h);
            }
        }
        if change != RecordChange::None {
            self.content_dirty.insert(h);
        }
        change
    }

    /// Stores (or with None deletes) a Tier resource; true if it changed.
    pub(crate) fn set_tier(&mut self, name: &str, info: Option<TierInfo>) -> bool {
        let old = self.tiers.get(name).copied();
        if old == info {
            return false;
        }
        match info {
            Some(i) => self.tiers.insert(name.to_string(), i),
            None => self.tiers.remove(name),
        };
        true
    }

    pub(crate) fn tier_members(&self, tier: &str) -> impl Iterator<Item = u32> + '_ {
        self.tier_members.get(tier).into_iter().flatten().copied()
    }

    pub(crate) fn tier_info(&self, name: &str) -> TierInfo {
        self.tiers.get(name).copied().unwrap_or(TierInfo {
            order: (name == DEFAULT_TIER).then_some(DEFAULT_TIER_ORDER),
            default_action: TierDefault::Deny,
        })
    }

    /// Sorts policy handles into evaluation order (tier, order, name,
    /// namespace, kind). Handles without a record sort last. Keys are
    /// computed once per handle, not per comparison.
    pub(crate) fn sort(&self, hs: &mut Vec<u32>) {
        let mut keyed: Vec<(f64, &str, f64, Option<&PolicyId>, u32)> = hs
            .iter()
            .map(|h| {
                let rec = self.records.get(h);
                let tier = rec.map_or("", |r| r.tier.as_str());
                (
                    order_key(self.tier_info(tier).order),
                    tier,
                    order_key(rec.and_then(|r| r.order)),
                    self.ids.key(*h),
                    *h,
                )
            })
            .collect();
        keyed.sort_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then_with(|| a.1.cmp(b.1))
                .then_with(|| a.2.total_cmp(&b.2))
                .then_with(|| match (a.3, b.3) {
                    (Some(x), Some(y)) => x
                        .name
                        .cmp(&y.name)
                        .then_with(|| x.namespace.cmp(&y.namespace))
                        .then_with(|| x.kind.cmp(&y.kind)),
                    _ => Ordering::Equal,
                })
        });
        hs.clear();
        hs.extend(keyed.iter().map(|k| k.4));
    }

    pub(crate) fn incref(&mut self, h: u32) {
        self.active
            .entry(h)
            .or_insert(Active {
                refs: 0,
                compiled: None,
            })
            .refs += 1;
        self.touched.insert(h);
    }

    pub(crate) fn decref(&mut self, h: u32) {
        if let Some(a) = self.active.get_mut(&h) {
            a.refs = a.refs.saturating_sub(1);
            self.touched.insert(h);
        }
    }

    /// After endpoint resolution: compiles newly active or changed policies,
    /// drops unused ones, and moves IP set references accordingly.
    pub(crate) fn settle(
        &mut self,
        ipsets: &mut IpSets,
        out: &mut Tracked<PolicyId, Arc<Policy>>,
        warnings: &mut Vec<String>,
    ) {
        let content_dirty = std::mem::take(&mut self.content_dirty);
        let mut hs: Vec<u32> = self.touched.drain().collect();
        hs.extend(content_dirty.iter().copied());
        hs.sort_unstable();
        hs.dedup();
        for h in hs {
            let Some(id) = self.ids.key(h).cloned() else {
                continue;
            };
            let refs = self.active.get(&h).map_or(0, |a| a.refs);
            let compiled = self.active.get(&h).is_some_and(|a| a.compiled.is_some());
            let rec = self.records.get(&h);
            match rec {
                // Still active and unchanged: only its refcount moved.
                Some(_) if refs > 0 && compiled && !content_dirty.contains(&h) => {}
                Some(rec) if refs > 0 => {
                    let compiled = compile_policy(
                        &id,
                        rec.namespace.as_deref(),
                        &rec.inbound,
                        &rec.outbound,
                        warnings,
                    );
                    for s in &compiled.sets {
                        ipsets.incref(s);
                    }
                    let a = self.active.get_mut(&h).expect("refs > 0");
                    if let Some(old) = a.compiled.take() {
                        for s in &old.sets {
                            ipsets.decref(&s.id);
                        }
                    }
                    out.set(id, compiled.policy.clone());
                    a.compiled = Some(compiled);
                }
                _ => {
                    if let Some(a) = self.active.get_mut(&h) {
                        if let Some(old) = a.compiled.take() {
                            for s in &old.sets {
                                ipsets.decref(&s.id);
                            }
                        }
                        out.remove(&id);
                        if a.refs == 0 {
                            self.active.remove(&h);
                        }
                    }
                    if rec.is_none() && !self.active.contains_key(&h) {
                        self.ids.release(h);
                    }
                }
            }
        }
    }

    /// Handles that are neither stored nor used can be forgotten; called
    /// for handles interned speculatively (e.g. a deleted unknown policy).
    pub(crate) fn release_if_unused(&mut self, h: u32) {
        if !self.records.contains_key(&h) && !self.active.contains_key(&h) {
            self.ids.release(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PolicyKind;

    fn rec(tier: &str, order: Option<f64>) -> PolicyRecord {
        PolicyRecord {
            tier: tier.into(),
            order,
            ingress: true,
            egress: false,
            namespace: None,
            inbound: vec![],
            outbound: vec![],
        }
    }

    fn pid(kind: PolicyKind, ns: &str, name: &str) -> PolicyId {
        PolicyId {
            kind,
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn ordering() {
        let mut p = Policies::default();
        let gnp = PolicyKind::GlobalNetworkPolicy;
        let np = PolicyKind::NetworkPolicy;
        let items = [
            (pid(np, "production", "web-db-policy"), rec("default", None)),
            (pid(gnp, "", "default-deny-all"), rec("default", None)),
            (pid(np, "a", "x"), rec("default", Some(10.0))),
            (pid(gnp, "", "x"), rec("default", Some(10.0))),
            (pid(np, "b", "x"), rec("default", Some(10.0))),
            (pid(gnp, "", "sec"), rec("security", Some(1000.0))),
            (pid(gnp, "", "notier"), rec("zzz", Some(1.0))),
            (pid(gnp, "", "early"), rec("default", Some(-5.5))),
        ];
        let mut hs = Vec::new();
        for (id, r) in items {
            let h = p.handle(&id);
            p.set_record(h, Some(r));
            hs.push(h);
        }
        p.set_tier(
            "security",
            Some(TierInfo {
                order: Some(100.0),
                default_action: TierDefault::Pass,
            }),
        );
        p.sort(&mut hs);
        let names: Vec<String> = hs
            .iter()
            .map(|h| {
                let id = p.id(*h).unwrap();
                format!("{:?}/{}/{}", id.kind, id.namespace, id.name)
            })
            .collect();
        assert_eq!(
            names,
            vec![
                "GlobalNetworkPolicy//sec",
                "GlobalNetworkPolicy//early",
                "GlobalNetworkPolicy//x",
                "NetworkPolicy/a/x",
                "NetworkPolicy/b/x",
                "GlobalNetworkPolicy//default-deny-all",
                "NetworkPolicy/production/web-db-policy",
                "GlobalNetworkPolicy//notier",
            ]
        );
        assert_eq!(p.tier_info("default").order, Some(DEFAULT_TIER_ORDER));
        assert_eq!(p.tier_info("zzz").order, None);
    }

    #[test]
    fn record_changes() {
        let mut p = Policies::default();
        let h = p.handle(&pid(PolicyKind::GlobalNetworkPolicy, "", "a"));
        assert_eq!(
            p.set_record(h, Some(rec("default", None))),
            RecordChange::Placement
        );
        assert_eq!(
            p.set_record(h, Some(rec("default", None))),
            RecordChange::None
        );
        let mut r = rec("default", None);
        r.inbound
            .push(ApiRule::new(calico_api::policy::Action::Allow));
        assert_eq!(p.set_record(h, Some(r)), RecordChange::Rules);
        assert_eq!(
            p.set_record(h, Some(rec("default", Some(1.0)))),
            RecordChange::Placement
        );
        assert_eq!(p.tier_members("default").count(), 1);
        assert_eq!(p.set_record(h, None), RecordChange::Placement);
        assert_eq!(p.tier_members("default").count(), 0);
    }
}
