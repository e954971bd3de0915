//! Static checks for calicoctl.
//!
//! [`shadowed_allows`]: a policy whose first deciding rule for a direction
//! is an unconditional Deny (no match criteria at all) ends evaluation of its
//! tier for every endpoint it selects, so the Allow rules of any LATER policy
//! in the same tier and direction are unreachable for those endpoints. The
//! classic trap: a GlobalNetworkPolicy `default-deny-all` without `order`
//! sorts by name before NetworkPolicies without `order`, so they never allow
//! anything. Only certain shadowing is reported: the earlier policy must
//! select everything the later one selects, either structurally (its
//! selector is `all()` over a scope that contains the later policy's) or
//! for every given endpoint the later policy selects (at least one).
//!
//! Endpoint labels used here are the endpoint's own labels plus the implicit
//! namespace and orchestrator labels (profiles are not consulted).

use std::collections::BTreeMap;

use calico_api::endpoint::WorkloadEndpoint;
use calico_api::policy::{default_types, PolicyType, Rule, DEFAULT_TIER};
use calico_api::selector::Selector;
use calico_api::{AnyResource, LABEL_NAMESPACE, LABEL_ORCHESTRATOR};

use crate::model::{PolicyId, PolicyKind};

/// `earlier`'s rule `rule` (0-based, in `direction`'s rule list) denies
/// everything, so `later`'s Allow rules in that direction never apply.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shadowing {
    pub earlier: PolicyId,
    pub later: PolicyId,
    pub rule: usize,
    pub direction: PolicyType,
}

struct Pol<'a> {
    id: PolicyId,
    tier: &'a str,
    order: Option<f64>,
    selector: Selector,
    /// GlobalNetworkPolicy namespaceSelector (None: not set).
    ns_selector: Option<Selector>,
    ingress: Option<&'a [Rule]>,
    egress: Option<&'a [Rule]>,
}

impl Pol<'_> {
    fn rules(&self, d: PolicyType) -> Option<&[Rule]> {
        match d {
            PolicyType::Ingress => self.ingress,
            PolicyType::Egress => self.egress,
        }
    }

    fn selects(&self, ep: &WorkloadEndpoint, labels: &BTreeMap<String, String>) -> bool {
        let ns = &ep.metadata.namespace;
        let scope_ok = match (self.id.kind, &self.ns_selector) {
            (PolicyKind::NetworkPolicy, _) => self.id.namespace == *ns,
            (_, None) => true,
            (_, Some(s)) if s.is_global() => false,
            (_, Some(s)) => {
                let nl: BTreeMap<String, String> =
                    [("projectcalico.org/name".to_string(), ns.clone())].into();
                s.matches(&nl)
            }
        };
        scope_ok && self.selector.matches(labels)
    }

    /// True if this policy certainly selects every endpoint `o` can select.
    fn covers(&self, o: &Pol) -> bool {
        if !self.selector.is_all() {
            return false;
        }
        match (self.id.kind, &self.ns_selector) {
            (PolicyKind::GlobalNetworkPolicy, None) => true,
            (PolicyKind::GlobalNetworkPolicy, Some(s)) => {
                s.is_all() && (o.id.kind == PolicyKind::NetworkPolicy)
            }
            (PolicyKind::NetworkPolicy, _) => {
                o.id.kind == PolicyKind::NetworkPolicy && o.id.namespace == self.id.namespace
            }
            _ => false,
        }
    }
}

fn unconditional(r: &Rule) -> bool {
    r.ip_version.is_none()
        && r.protocol.is_none()
        && r.not_protocol.is_none()
        && r.icmp.is_none()
        && r.not_icmp.is_none()
        && r.source.is_empty()
        && r.destination.is_empty()
        && r.http.is_none()
}

/// Index of the first rule that decides every packet, if it is a Deny.
fn deny_all_rule(rules: &[Rule]) -> Option<usize> {
    let (i, r) = rules
        .iter()
        .enumerate()
        .find(|(_, r)| unconditional(r) && r.action != calico_api::policy::Action::Log)?;
    (r.action == calico_api::policy::Action::Deny).then_some(i)
}

fn parse_pols(policies: &[AnyResource]) -> Vec<Pol<'_>> {
    let mut out = Vec::new();
    for r in policies {
        let (id, tier, order, sel, ns_sel, types, ingress, egress) = match r {
            AnyResource::NetworkPolicy(p) => (
                PolicyId {
                    kind: PolicyKind::NetworkPolicy,
                    namespace: p.metadata.namespace.clone(),
                    name: p.metadata.name.clone(),
                },
                &p.spec.tier,
                p.spec.order,
                &p.spec.selector,
                None,
                &p.spec.types,
                &p.spec.ingress,
                &p.spec.egress,
            ),
            AnyResource::GlobalNetworkPolicy(p) => {
                if p.spec.pre_dnat || p.spec.do_not_track {
                    continue;
                }
                let ns_sel = if p.spec.namespace_selector.is_empty() {
                    None
                } else {
                    match Selector::parse(&p.spec.namespace_selector) {
                        Ok(s) => Some(s),
                        Err(_) => continue,
                    }
                };
                (
                    PolicyId {
                        kind: PolicyKind::GlobalNetworkPolicy,
                        namespace: String::new(),
                        name: p.metadata.name.clone(),
                    },
                    &p.spec.tier,
                    p.spec.order,
                    &p.spec.selector,
                    ns_sel,
                    &p.spec.types,
                    &p.spec.ingress,
                    &p.spec.egress,
                )
            }
            _ => continue,
        };
        let Ok(selector) = Selector::parse(sel) else {
            continue;
        };
        let types = if types.is_empty() {
            default_types(ingress, egress)
        } else {
            types.clone()
        };
        out.push(Pol {
            id,
            tier: if tier.is_empty() { DEFAULT_TIER } else { tier },
            order,
            selector,
            ns_selector: ns_sel,
            ingress: types.contains(&PolicyType::Ingress).then_some(&ingress[..]),
            egress: types.contains(&PolicyType::Egress).then_some(&egress[..]),
        });
    }
    out
}

/// True if any policy has an unconditional Deny, the only case in which
/// `shadowed_allows` can report anything; callers with many endpoints skip
/// loading them otherwise.
pub fn any_unconditional_deny(policies: &[AnyResource]) -> bool {
    parse_pols(policies).iter().any(|p| {
        [PolicyType::Ingress, PolicyType::Egress]
            .into_iter()
            .any(|d| p.rules(d).and_then(deny_all_rule).is_some())
    })
}

/// Reports Allow rules that an earlier unconditional Deny makes unreachable.
/// `policies` may hold any resources; NetworkPolicies and
/// GlobalNetworkPolicies are considered.
pub fn shadowed_allows(policies: &[AnyResource], endpoints: &[WorkloadEndpoint]) -> Vec<Shadowing> {
    let mut pols = parse_pols(policies);
    let key = |o: Option<f64>| o.filter(|x| !x.is_nan()).unwrap_or(f64::INFINITY);
    pols.sort_by(|a, b| {
        a.tier
            .cmp(b.tier)
            .then_with(|| key(a.order).total_cmp(&key(b.order)))
            .then_with(|| a.id.name.cmp(&b.id.name))
            .then_with(|| a.id.namespace.cmp(&b.id.namespace))
            .then_with(|| a.id.kind.cmp(&b.id.kind))
    });
    let labels: Vec<BTreeMap<String, String>> = endpoints
        .iter()
        .map(|e| {
            let mut l = e.metadata.labels.clone();
            l.insert(LABEL_NAMESPACE.into(), e.metadata.namespace.clone());
            if !e.spec.orchestrator.is_empty() {
                l.insert(LABEL_ORCHESTRATOR.into(), e.spec.orchestrator.clone());
            }
            l
        })
        .collect();
    let mut out = Vec::new();
    for dir in [PolicyType::Ingress, PolicyType::Egress] {
        for (i, early) in pols.iter().enumerate() {
            let Some(rule) = early.rules(dir).and_then(deny_all_rule) else {
                continue;
            };
            for late in &pols[i + 1..] {
                if late.tier != early.tier {
                    break;
                }
                let Some(late_rules) = late.rules(dir) else {
                    continue;
                };
                if !late_rules
                    .iter()
                    .any(|r| r.action == calico_api::policy::Action::Allow)
                {
                    continue;
                }
                let by_endpoints = late.ns_selector.is_none() && {
                    let selected: Vec<usize> = (0..endpoints.len())
                        .filter(|&k| late.selects(&endpoints[k], &labels[k]))
                        .collect();
                    !selected.is_empty()
                        && selected
                            .iter()
                            .all(|&k| early.selects(&endpoints[k], &labels[k]))
                };
                if early.covers(late) || by_endpoints {
                    out.push(Shadowing {
                        earlier: early.id.clone(),
                        later: late.id.clone(),
                        rule,
                        direction: dir,
                    });
                }
            }
        }
    }
    out.sort();
    out
}
