//! The desired state built by applying emitted [`Update`]s in order, as a
//! dataplane would, while checking the emission contract: no unchanged
//! object re-emitted, no removal or delta of something unknown, and every
//! reference (endpoint → policy → IP set, VXLAN route → VTEP) satisfied at
//! the moment it is emitted. Contract breaches are collected in
//! [`DesiredState::violations`] rather than panicking.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ipnet::IpNet;

use crate::model::{
    EndpointKey, HostConfig, IpSetId, IpSetMember, LocalEndpoint, Policy, PolicyId, PolicyKind,
    Pool, RouteTarget, Update, Vtep,
};

#[derive(Clone, Debug, Default)]
pub struct DesiredState {
    pub config: Option<HostConfig>,
    pub pools: Option<Vec<Pool>>,
    pub ip_sets: BTreeMap<IpSetId, BTreeSet<IpSetMember>>,
    pub policies: BTreeMap<PolicyId, Arc<Policy>>,
    pub endpoints: BTreeMap<EndpointKey, Arc<LocalEndpoint>>,
    pub vteps: BTreeMap<String, Vtep>,
    pub routes: BTreeMap<IpNet, RouteTarget>,
    pub in_sync: bool,
    /// Breaches of the emission contract seen so far (not part of equality).
    pub violations: Vec<String>,
}

/// Equality of content; `violations` is ignored.
impl PartialEq for DesiredState {
    fn eq(&self, o: &Self) -> bool {
        self.config == o.config
            && self.pools == o.pools
            && self.ip_sets == o.ip_sets
            && self.policies == o.policies
            && self.endpoints == o.endpoints
            && self.vteps == o.vteps
            && self.routes == o.routes
            && self.in_sync == o.in_sync
    }
}

fn set_refs(p: &Policy) -> impl Iterator<Item = &IpSetId> {
    p.inbound.iter().chain(&p.outbound).flat_map(|r| {
        [&r.src, &r.dst].into_iter().flat_map(|s| {
            s.ip_set
                .iter()
                .chain(&s.not_ip_sets)
                .chain(&s.named_port_sets)
                .chain(&s.not_named_port_sets)
        })
    })
}

fn policy_refs(e: &LocalEndpoint) -> impl Iterator<Item = PolicyId> + '_ {
    e.tiers
        .iter()
        .flat_map(|t| t.ingress.iter().chain(&t.egress).cloned())
        .chain(e.profiles.iter().map(|p| PolicyId {
            kind: PolicyKind::Profile,
            namespace: String::new(),
            name: p.clone(),
        }))
}

impl DesiredState {
    pub fn new() -> DesiredState {
        DesiredState::default()
    }

    /// Builds a state from a sequence of updates.
    pub fn from_updates<'a>(updates: impl IntoIterator<Item = &'a Update>) -> DesiredState {
        let mut s = DesiredState::new();
        for u in updates {
            s.apply(u);
        }
        s
    }

    fn violation(&mut self, msg: String) {
        self.violations.push(msg);
    }

    /// Applies one update.
    pub fn apply(&mut self, u: &Update) {
        match u {
            Update::Config(c) => {
                if self.config.as_ref() == Some(c) {
                    self.violation("unchanged Config re-emitted".into());
                }
                self.config = Some(c.clone());
            }
            Update::Pools(p) => {
                if self.pools.as_ref() == Some(p) {
                    self.violation("unchanged Pools re-emitted".into());
                }
                self.pools = Some(p.clone());
            }
            Update::IpSetUpsert { id, members } => {
                if self.ip_sets.get(id) == Some(members) {
                    self.violation(format!("unchanged IP set {id} re-emitted"));
                }
                self.ip_sets.insert(id.clone(), members.clone());
            }
            Update::IpSetDelta { id, added, removed } => {
                if added.is_empty() && removed.is_empty() {
                    self.violation(format!("empty delta for IP set {id}"));
                }
                let Some(set) = self.ip_sets.get_mut(id) else {
                    self.violation(format!("delta for unknown IP set {id}"));
                    return;
                };
                let mut bad = Vec::new();
                for m in removed {
                    if !set.remove(m) {
                        bad.push(format!("IP set {id}: removed member {m:?} was not present"));
                    }
                }
                for m in added {
                    if !set.insert(m.clone()) {
                        bad.push(format!(
                            "IP set {id}: added member {m:?} was already present"
                        ));
                    }
                }
                self.violations.extend(bad);
            }
            Update::IpSetRemove { id } => {
                if self.ip_sets.remove(id).is_none() {
                    self.violation(format!("removal of unknown IP set {id}"));
                }
                if let Some(p) = self
                    .policies
                    .values()
                    .find(|p| set_refs(p).any(|s| s == id))
                {
                    let pid = p.id.clone();
                    self.violation(format!("IP set {id} removed while {pid} uses it"));
                }
            }
            Update::PolicyUpsert(p) => {
                if self.policies.get(&p.id) == Some(p) {
                    self.violation(format!("unchanged {} re-emitted", p.id));
                }
                let missing: Vec<String> = set_refs(p)
                    .filter(|s| !self.ip_sets.contains_key(*s))
                    .map(|s| format!("{} uses unknown IP set {s}", p.id))
                    .collect();
                self.violations.extend(missing);
                self.policies.insert(p.id.clone(), p.clone());
            }
            Update::PolicyRemove(id) => {
                if self.policies.remove(id).is_none() {
                    self.violation(format!("removal of unknown {id}"));
                }
                if let Some(e) = self
                    .endpoints
                    .values()
                    .find(|e| policy_refs(e).any(|p| p == *id))
                {
                    let k = e.key.clone();
                    self.violation(format!("{id} removed while endpoint {k:?} uses it"));
                }
            }
            Update::EndpointUpsert(e) => {
                if self.endpoints.get(&e.key) == Some(e) {
                    self.violation(format!("unchanged endpoint {:?} re-emitted", e.key));
                }
                let missing: Vec<String> = policy_refs(e)
                    .filter(|p| !self.policies.contains_key(p))
                    .map(|p| format!("endpoint {:?} uses unknown {p}", e.key))
                    .collect();
                self.violations.extend(missing);
                self.endpoints.insert(e.key.clone(), e.clone());
            }
            Update::EndpointRemove(k) => {
                if self.endpoints.remove(k).is_none() {
                    self.violation(format!("removal of unknown endpoint {k:?}"));
                }
            }
            Update::VtepUpsert(v) => {
                if self.vteps.get(&v.node) == Some(v) {
                    self.violation(format!("unchanged VTEP {} re-emitted", v.node));
                }
                self.vteps.insert(v.node.clone(), v.clone());
            }
            Update::VtepRemove { node } => match self.vteps.remove(node) {
                None => self.violation(format!("removal of unknown VTEP {node}")),
                Some(v) => {
                    let gw = RouteTarget::Vxlan {
                        gateway: v.tunnel_ip,
                    };
                    let still_served = self.vteps.values().any(|o| o.tunnel_ip == v.tunnel_ip);
                    let user = self.routes.iter().find(|(_, t)| **t == gw);
                    if let (Some((dst, _)), false) = (user, still_served) {
                        let dst = *dst;
                        self.violation(format!("VTEP {node} removed while route {dst} uses it"));
                    }
                }
            },
            Update::RouteUpsert(r) => {
                if self.routes.get(&r.dst) == Some(&r.target) {
                    self.violation(format!("unchanged route {} re-emitted", r.dst));
                }
                if let RouteTarget::Vxlan { gateway } = &r.target {
                    if !self.vteps.values().any(|v| v.tunnel_ip == *gateway) {
                        self.violation(format!("route {} via unknown VTEP {gateway}", r.dst));
                    }
                }
                self.routes.insert(r.dst, r.target.clone());
            }
            Update::RouteRemove { dst } => {
                if self.routes.remove(dst).is_none() {
                    self.violation(format!("removal of unknown route {dst}"));
                }
            }
            Update::InSync => {
                if self.in_sync {
                    self.violation("InSync emitted twice".into());
                }
                self.in_sync = true;
            }
        }
    }
}
