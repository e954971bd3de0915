//! Local workload endpoints and the ordered policies of each.
//!
//! Only endpoints marked dirty are re-resolved on a flush: when their own
//! resource changes, when a policy starts or stops selecting them, when a
//! selected policy's tier/order/direction or its tier changes, or when a
//! profile they list appears or disappears. Resolution also moves the
//! endpoint's references on policies (which makes policies active or not).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::intern::{IdMap, IdSet};
use crate::model::{EndpointKey, LocalEndpoint, PolicyId, PolicyKind, TierPolicies};
use crate::policies::Policies;
use crate::sequencer::Tracked;

/// The parts of a local endpoint that come from its own resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LocalInfo {
    pub key: EndpointKey,
    pub iface: String,
    pub mac: Option<String>,
    pub addrs: Vec<IpNet>,
    pub allow_spoofed: Vec<IpNet>,
    pub nats: Vec<(IpAddr, IpAddr)>,
    pub profiles: Vec<String>,
}

struct EpState {
    info: LocalInfo,
    /// Set when `info` changed since the endpoint was last emitted.
    info_changed: bool,
    /// Policy and profile handles this endpoint holds a reference on, in
    /// order (profiles last).
    refs: Vec<u32>,
    /// What was last built (shared with the sequencer), to skip rebuilding
    /// when a re-resolution comes out the same.
    current: Option<Arc<LocalEndpoint>>,
}

/// Whether `tiers` is what resolving `hs` (sorted) would build, without
/// building it.
fn same_tiers(tiers: &[TierPolicies], hs: &[u32], policies: &Policies) -> bool {
    let mut ti = 0;
    let (mut ii, mut ei) = (0, 0);
    let mut cur: Option<&str> = None;
    for p in hs {
        let (Some(rec), Some(id)) = (policies.record(*p), policies.id(*p)) else {
            return false;
        };
        if cur != Some(rec.tier.as_str()) {
            if cur.is_some() {
                let t = &tiers[ti];
                if ii != t.ingress.len() || ei != t.egress.len() {
                    return false;
                }
                ti += 1;
            }
            let Some(t) = tiers.get(ti) else {
                return false;
            };
            if t.name != rec.tier
                || t.default_action != policies.tier_info(&rec.tier).default_action
            {
                return false;
            }
            cur = Some(rec.tier.as_str());
            (ii, ei) = (0, 0);
        }
        let t = &tiers[ti];
        if rec.ingress {
            if t.ingress.get(ii) != Some(id) {
                return false;
            }
            ii += 1;
        }
        if rec.egress {
            if t.egress.get(ei) != Some(id) {
                return false;
            }
            ei += 1;
        }
    }
    match cur {
        None => tiers.is_empty(),
        Some(_) => {
            let t = &tiers[ti];
            ii == t.ingress.len() && ei == t.egress.len() && ti + 1 == tiers.len()
        }
    }
}

#[derive(Default)]
pub(crate) struct LocalEndpoints {
    eps: IdMap<u32, EpState>,
    dirty: IdSet<u32>,
    by_profile: HashMap<String, IdSet<u32>>,
}

pub(crate) fn profile_id(name: &str) -> PolicyId {
    PolicyId {
        kind: PolicyKind::Profile,
        namespace: String::new(),
        name: name.to_string(),
    }
}

impl LocalEndpoints {
    pub(crate) fn contains(&self, h: u32) -> bool {
        self.eps.contains_key(&h)
    }

    pub(crate) fn upsert(&mut self, h: u32, info: LocalInfo) {
        if let Some(old) = self.eps.get_mut(&h) {
            if old.info == info {
                return;
            }
            for p in &old.info.profiles {
                remove_member(&mut self.by_profile, p, h);
            }
            for p in &info.profiles {
                self.by_profile.entry(p.clone()).or_default().insert(h);
            }
            old.info = info;
            old.info_changed = true;
        } else {
            for p in &info.profiles {
                self.by_profile.entry(p.clone()).or_default().insert(h);
            }
            self.eps.insert(
                h,
                EpState {
                    info,
                    info_changed: true,
                    refs: Vec::new(),
                    current: None,
                },
            );
        }
        self.dirty.insert(h);
    }

    pub(crate) fn remove(
        &mut self,
        h: u32,
        policies: &mut Policies,
        out: &mut Tracked<EndpointKey, Arc<LocalEndpoint>>,
    ) {
        let Some(old) = self.eps.remove(&h) else {
            return;
        };
        for p in &old.info.profiles {
            remove_member(&mut self.by_profile, p, h);
        }
        for r in old.refs {
            policies.decref(r);
        }
        self.dirty.remove(&h);
        out.remove(&old.info.key);
    }

    pub(crate) fn mark_dirty(&mut self, h: u32) {
        if self.eps.contains_key(&h) {
            self.dirty.insert(h);
        }
    }

    pub(crate) fn mark_profile_users(&mut self, profile: &str) {
        if let Some(users) = self.by_profile.get(profile) {
            self.dirty.extend(users.iter().copied());
        }
    }

    /// Re-resolves dirty endpoints. `matched(h)` lists the policies whose
    /// selector currently matches endpoint `h`.
    pub(crate) fn resolve<I: Iterator<Item = u32>>(
        &mut self,
        policies: &mut Policies,
        matched: impl Fn(u32) -> I,
        out: &mut Tracked<EndpointKey, Arc<LocalEndpoint>>,
    ) {
        for h in std::mem::take(&mut self.dirty) {
            let Some(ep) = self.eps.get_mut(&h) else {
                continue;
            };
            let mut hs: Vec<u32> = matched(h)
                .filter(|p| policies.record(*p).is_some())
                .collect();
            policies.sort(&mut hs);
            let mut profile_hs = Vec::new();
            for name in &ep.info.profiles {
                if let Some(ph) = policies.existing_handle(&profile_id(name)) {
                    if policies.record(ph).is_some() {
                        profile_hs.push(ph);
                    }
                }
            }
            // Unchanged inputs (the common case when a policy's order moves
            // but not relative to this endpoint's other policies): done.
            let same = !ep.info_changed
                && ep.refs.len() == hs.len() + profile_hs.len()
                && ep.refs[..hs.len()] == hs[..]
                && ep.refs[hs.len()..] == profile_hs[..]
                && ep
                    .current
                    .as_ref()
                    .is_some_and(|c| same_tiers(&c.tiers, &hs, policies));
            if same {
                continue;
            }
            ep.info_changed = false;
            let mut tiers: Vec<TierPolicies> = Vec::new();
            for p in &hs {
                let (Some(rec), Some(id)) = (policies.record(*p), policies.id(*p)) else {
                    continue;
                };
                if tiers.last().map(|t| t.name.as_str()) != Some(rec.tier.as_str()) {
                    tiers.push(TierPolicies {
                        name: rec.tier.clone(),
                        default_action: policies.tier_info(&rec.tier).default_action,
                        ingress: Vec::new(),
                        egress: Vec::new(),
                    });
                }
                let t = tiers.last_mut().expect("pushed");
                if rec.ingress {
                    t.ingress.push(id.clone());
                }
                if rec.egress {
                    t.egress.push(id.clone());
                }
            }
            for t in &mut tiers {
                t.ingress.shrink_to_fit();
                t.egress.shrink_to_fit();
            }
            let profiles: Vec<String> = profile_hs
                .iter()
                .filter_map(|ph| policies.id(*ph).map(|id| id.name.clone()))
                .collect();
            hs.extend(profile_hs);
            for r in &hs {
                policies.incref(*r);
            }
            for r in std::mem::replace(&mut ep.refs, hs) {
                policies.decref(r);
            }
            let i = &ep.info;
            let built = Arc::new(LocalEndpoint {
                key: i.key.clone(),
                iface: i.iface.clone(),
                mac: i.mac.clone(),
                addrs: i.addrs.clone(),
                allow_spoofed: i.allow_spoofed.clone(),
                tiers,
                profiles,
                nats: i.nats.clone(),
            });
            ep.current = Some(built.clone());
            out.set(i.key.clone(), built);
        }
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
