//! A small reference evaluator written straight from the policy semantics
//! (calico-core §1, §3, §4) over raw v3 resources. It shares nothing with the
//! incremental calculation except the resource types and the selector
//! evaluator, so agreement between the two is evidence both are right.
//!
//! Semantics, for one packet:
//! - Egress is decided on the source if it is a policed workload endpoint
//!   (one whose `ipNetworks` holds the address, on `local_node` if set),
//!   ingress likewise on the destination.
//! - An endpoint's labels: own labels, overridden by
//!   `projectcalico.org/namespace` and (if set) `projectcalico.org/orchestrator`,
//!   over its profiles' `labelsToApply` (first listed profile first).
//! - A NetworkPolicy applies to endpoints of its namespace its selector
//!   matches; a GlobalNetworkPolicy to endpoints its selector (and
//!   `namespaceSelector`, against the namespace's labels
//!   `projectcalico.org/name` + `labelsToApply` of profile `kns.<ns>`)
//!   matches. `preDNAT`/`doNotTrack` policies apply to host endpoints only; a
//!   `serviceAccountSelector` is not supported (the policy applies nowhere).
//!   Direction: the policy's `types`, defaulted from its rules.
//! - Order: tiers by order (unset last; tier `default` 1,000,000 unless a Tier
//!   says otherwise), then name; policies by order (unset last), name,
//!   namespace, kind. Allow/Deny decide, Pass leaves the tier, Log goes on;
//!   a tier that has a policy for the direction ends with its default action
//!   (Deny unless the Tier says Pass). Then profiles, in order; nothing
//!   allowed ⇒ denied.
//! - A rule side's selectors are about the entities holding the address:
//!   workload endpoints (any node), host endpoints (`expectedIPs`), network
//!   sets and global network sets (`nets`). The positive part holds if some
//!   entity holding the address matches `selector` (all() if empty) within
//!   the namespace scope (the NetworkPolicy's namespace, or
//!   `namespaceSelector`: all() = any namespace, global() = non-namespaced
//!   only); it is required whenever `selector` is set, or — when a scope
//!   exists — any of `selector`, `notSelector`, `namespaceSelector` is.
//!   `notSelector` holds if no entity holding the address matches it.
//!   Named ports resolve against the ports of entities matching the positive
//!   part (any entity if there is none) with the rule's protocol.
//! - A rule this model cannot express (invalid fields, `http`,
//!   `serviceAccounts`, `services`) never matches.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::net::IpAddr;

use calico_api::endpoint::{
    EndpointPort, GlobalNetworkSet, HostEndpoint, NetworkSet, WorkloadEndpoint,
};
use calico_api::numorstring::Port;
use calico_api::policy::{
    Action, EntityRule, GlobalNetworkPolicy, NetworkPolicy, PolicyType, Profile, Rule, Tier,
    TierDefaultAction,
};
use calico_api::selector::Selector;
use calico_api::AnyResource;
use ipnet::IpNet;

pub use crate::packet::{Decision, Packet, Verdict};

type Labels = BTreeMap<String, String>;

/// The resources that decide a packet's fate.
#[derive(Clone, Debug, Default)]
pub struct World {
    /// If set, only workload endpoints on this node are policed (one
    /// host's view); all endpoints still count as selector members.
    pub local_node: Option<String>,
    pub workload_endpoints: Vec<WorkloadEndpoint>,
    pub host_endpoints: Vec<HostEndpoint>,
    pub network_sets: Vec<NetworkSet>,
    pub global_network_sets: Vec<GlobalNetworkSet>,
    pub network_policies: Vec<NetworkPolicy>,
    pub global_network_policies: Vec<GlobalNetworkPolicy>,
    pub profiles: Vec<Profile>,
    pub tiers: Vec<Tier>,
}

impl World {
    pub fn from_resources(rs: impl IntoIterator<Item = AnyResource>) -> World {
        let mut w = World::default();
        for r in rs {
            w.add(r);
        }
        w
    }

    /// Adds a resource; kinds that do not affect policy are ignored.
    pub fn add(&mut self, r: AnyResource) {
        match r {
            AnyResource::WorkloadEndpoint(x) => self.workload_endpoints.push(x),
            AnyResource::HostEndpoint(x) => self.host_endpoints.push(x),
            AnyResource::NetworkSet(x) => self.network_sets.push(x),
            AnyResource::GlobalNetworkSet(x) => self.global_network_sets.push(x),
            AnyResource::NetworkPolicy(x) => self.network_policies.push(x),
            AnyResource::GlobalNetworkPolicy(x) => self.global_network_policies.push(x),
            AnyResource::Profile(x) => self.profiles.push(x),
            AnyResource::Tier(x) => self.tiers.push(x),
            _ => {}
        }
    }

    fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.metadata.name == name)
    }

    fn wep_labels(&self, w: &WorkloadEndpoint) -> Labels {
        let mut l = Labels::new();
        for p in w.spec.profiles.iter().rev() {
            if let Some(p) = self.profile(p) {
                l.extend(p.spec.labels_to_apply.clone());
            }
        }
        l.extend(w.metadata.labels.clone());
        l.insert(
            calico_api::LABEL_NAMESPACE.into(),
            w.metadata.namespace.clone(),
        );
        if !w.spec.orchestrator.is_empty() {
            l.insert(
                calico_api::LABEL_ORCHESTRATOR.into(),
                w.spec.orchestrator.clone(),
            );
        }
        l
    }

    fn namespace_labels(&self, ns: &str) -> Labels {
        let mut l = self
            .profile(&format!("kns.{ns}"))
            .map(|p| p.spec.labels_to_apply.clone())
            .unwrap_or_default();
        l.insert("projectcalico.org/name".into(), ns.into());
        l
    }

    /// Every entity a rule selector can match, as (labels, namespace,
    /// addresses, named ports).
    fn entities(&self) -> Vec<Ent<'_>> {
        let mut out = Vec::new();
        for w in &self.workload_endpoints {
            out.push(Ent {
                labels: self.wep_labels(w),
                namespace: Some(w.metadata.namespace.clone()),
                nets: wep_nets(w),
                ports: &w.spec.ports,
            });
        }
        for h in &self.host_endpoints {
            let mut labels = Labels::new();
            for p in h.spec.profiles.iter().rev() {
                if let Some(p) = self.profile(p) {
                    labels.extend(p.spec.labels_to_apply.clone());
                }
            }
            labels.extend(h.metadata.labels.clone());
            out.push(Ent {
                labels,
                namespace: None,
                nets: h
                    .spec
                    .expected_ips
                    .iter()
                    .filter_map(|i| i.parse::<IpAddr>().ok().map(IpNet::from))
                    .collect(),
                ports: &h.spec.ports,
            });
        }
        for s in &self.network_sets {
            let mut labels = s.metadata.labels.clone();
            labels.insert(
                calico_api::LABEL_NAMESPACE.into(),
                s.metadata.namespace.clone(),
            );
            out.push(Ent {
                labels,
                namespace: Some(s.metadata.namespace.clone()),
                nets: nets(&s.spec.nets),
                ports: &[],
            });
        }
        for s in &self.global_network_sets {
            out.push(Ent {
                labels: s.metadata.labels.clone(),
                namespace: None,
                nets: nets(&s.spec.nets),
                ports: &[],
            });
        }
        out
    }
}

struct Ent<'a> {
    labels: Labels,
    namespace: Option<String>,
    nets: Vec<IpNet>,
    ports: &'a [EndpointPort],
}

/// A workload's addresses: host prefixes only (/32, /128).
fn wep_nets(w: &WorkloadEndpoint) -> Vec<IpNet> {
    nets(&w.spec.ip_networks)
        .into_iter()
        .filter(|n| n.prefix_len() == n.max_prefix_len())
        .collect()
}

fn nets(v: &[String]) -> Vec<IpNet> {
    v.iter()
        .filter_map(|s| calico_api::validate::parse_net(s).ok())
        .collect()
}

/// The verdict for `pkt` in `world`.
pub fn evaluate(world: &World, pkt: &Packet) -> Verdict {
    let ents = world.entities();
    let policed = |ip: IpAddr| {
        world.workload_endpoints.iter().find(|w| {
            world.local_node.as_ref().is_none_or(|n| *n == w.spec.node)
                && wep_nets(w).iter().any(|n| n.contains(&ip))
        })
    };
    let ctx = Ctx { world, ents: &ents };
    Verdict::new(
        policed(pkt.src).map(|w| ctx.decide(w, PolicyType::Egress, pkt)),
        policed(pkt.dst).map(|w| ctx.decide(w, PolicyType::Ingress, pkt)),
    )
}

/// A policy applying to an endpoint, reduced to what ordering needs.
struct Applied<'a> {
    tier: String,
    order: Option<f64>,
    name: &'a str,
    namespace: &'a str,
    kind: &'static str,
    rules: &'a [Rule],
}

impl Applied<'_> {
    fn title(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

fn types_of(types: &[PolicyType], ingress: &[Rule], egress: &[Rule]) -> Vec<PolicyType> {
    if !types.is_empty() {
        return types.to_vec();
    }
    if egress.is_empty() {
        vec![PolicyType::Ingress]
    } else if ingress.is_empty() {
        vec![PolicyType::Egress]
    } else {
        vec![PolicyType::Ingress, PolicyType::Egress]
    }
}

fn cmp_order(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

struct Ctx<'a> {
    world: &'a World,
    ents: &'a [Ent<'a>],
}

impl<'a> Ctx<'a> {
    fn tier(&self, name: &str) -> (Option<f64>, bool) {
        match self.world.tiers.iter().find(|t| t.metadata.name == name) {
            Some(t) => (
                t.spec.order.or((name == "default").then_some(1_000_000.0)),
                t.spec.default_action == Some(TierDefaultAction::Pass),
            ),
            None => ((name == "default").then_some(1_000_000.0), false),
        }
    }

    fn applied(&self, w: &WorkloadEndpoint, dir: PolicyType) -> Vec<Applied<'a>> {
        let labels = self.world.wep_labels(w);
        let ns = &w.metadata.namespace;
        let sel_ok = |s: &str| Selector::parse(s).is_ok_and(|s| s.matches(&labels));
        let tier_of = |t: &str| {
            if t.is_empty() {
                "default".to_string()
            } else {
                t.to_string()
            }
        };
        let mut out = Vec::new();
        for p in &self.world.network_policies {
            let s = &p.spec;
            if p.metadata.namespace == *ns
                && s.service_account_selector.is_empty()
                && sel_ok(&s.selector)
                && types_of(&s.types, &s.ingress, &s.egress).contains(&dir)
            {
                out.push(Applied {
                    tier: tier_of(&s.tier),
                    order: s.order,
                    name: &p.metadata.name,
                    namespace: &p.metadata.namespace,
                    kind: "NetworkPolicy",
                    rules: if dir == PolicyType::Ingress {
                        &s.ingress
                    } else {
                        &s.egress
                    },
                });
            }
        }
        for p in &self.world.global_network_policies {
            let s = &p.spec;
            let ns_ok = s.namespace_selector.is_empty()
                || Selector::parse(&s.namespace_selector).is_ok_and(|n| {
                    // global(): non-namespaced entities only (never a workload).
                    !n.is_global() && n.matches(&self.world.namespace_labels(ns))
                });
            if !s.pre_dnat
                && !s.do_not_track
                && s.service_account_selector.is_empty()
                && ns_ok
                && sel_ok(&s.selector)
                && types_of(&s.types, &s.ingress, &s.egress).contains(&dir)
            {
                out.push(Applied {
                    tier: tier_of(&s.tier),
                    order: s.order,
                    name: &p.metadata.name,
                    namespace: "",
                    kind: "GlobalNetworkPolicy",
                    rules: if dir == PolicyType::Ingress {
                        &s.ingress
                    } else {
                        &s.egress
                    },
                });
            }
        }
        out.sort_by(|a, b| {
            let (ta, tb) = (self.tier(&a.tier).0, self.tier(&b.tier).0);
            cmp_order(ta, tb)
                .then_with(|| a.tier.cmp(&b.tier))
                .then_with(|| cmp_order(a.order, b.order))
                .then_with(|| a.name.cmp(b.name))
                .then_with(|| a.namespace.cmp(b.namespace))
                .then_with(|| a.kind.cmp(b.kind))
        });
        out
    }

    fn decide(&self, w: &WorkloadEndpoint, dir: PolicyType, pkt: &Packet) -> Decision {
        let applied = self.applied(w, dir);
        let mut i = 0;
        while i < applied.len() {
            let tier = applied[i].tier.clone();
            let end = applied[i..]
                .iter()
                .position(|a| a.tier != tier)
                .map_or(applied.len(), |n| i + n);
            let mut passed = false;
            'pols: for a in &applied[i..end] {
                let ns = (a.kind == "NetworkPolicy").then_some(a.namespace);
                for (n, r) in a.rules.iter().enumerate() {
                    if self.rule_matches(r, ns, pkt) {
                        let by = format!("{} (rule {})", a.title(), n + 1);
                        match r.action {
                            Action::Allow => return Decision { allowed: true, by },
                            Action::Deny => return Decision { allowed: false, by },
                            Action::Pass => {
                                passed = true;
                                break 'pols;
                            }
                            Action::Log => {}
                        }
                    }
                }
            }
            if !passed && !self.tier(&tier).1 {
                return Decision {
                    allowed: false,
                    by: format!("end of tier {tier}"),
                };
            }
            i = end;
        }
        for name in &w.spec.profiles {
            let Some(p) = self.world.profile(name) else {
                continue;
            };
            let rules = if dir == PolicyType::Ingress {
                &p.spec.ingress
            } else {
                &p.spec.egress
            };
            for r in rules {
                if self.rule_matches(r, None, pkt) {
                    let by = format!("Profile {name}");
                    match r.action {
                        Action::Allow => return Decision { allowed: true, by },
                        Action::Deny => return Decision { allowed: false, by },
                        Action::Pass => break,
                        Action::Log => {}
                    }
                }
            }
        }
        Decision {
            allowed: false,
            by: "no profile".into(),
        }
    }

    /// Rule match; `ns` is the namespace of a NetworkPolicy.
    fn rule_matches(&self, r: &Rule, ns: Option<&str>, pkt: &Packet) -> bool {
        self.try_rule_matches(r, ns, pkt).unwrap_or(false)
    }

    /// None: the rule cannot be expressed and never matches.
    fn try_rule_matches(&self, r: &Rule, ns: Option<&str>, pkt: &Packet) -> Option<bool> {
        if r.http.is_some() {
            return None;
        }
        let proto = |p: &calico_api::numorstring::Protocol| match p.number() {
            0 => None,
            n => Some(n),
        };
        let protocol = match &r.protocol {
            Some(p) => Some(proto(p)?),
            None => None,
        };
        let not_protocol = match &r.not_protocol {
            Some(p) => Some(proto(p)?),
            None => None,
        };
        let with_ports = |e: &EntityRule| !e.ports.is_empty() || !e.not_ports.is_empty();
        if (with_ports(&r.source) || with_ports(&r.destination))
            && !matches!(protocol, Some(6 | 17 | 132 | 136))
        {
            return None;
        }
        let mut ok = true;
        match r.ip_version {
            None => {}
            Some(4) => ok &= pkt.src.is_ipv4(),
            Some(6) => ok &= pkt.src.is_ipv6(),
            Some(_) => return None,
        }
        ok &= protocol.is_none_or(|p| p == pkt.protocol);
        ok &= not_protocol.is_none_or(|p| p != pkt.protocol);
        for (icmp, negate) in [(&r.icmp, false), (&r.not_icmp, true)] {
            let Some(f) = icmp else { continue };
            if !matches!(protocol, Some(1 | 58)) {
                return None;
            }
            let t = f.icmp_type.map(u8::try_from).transpose().ok()?;
            let c = f.code.map(u8::try_from).transpose().ok()?;
            if c.is_some() && t.is_none() {
                return None;
            }
            if t.is_none() {
                continue;
            }
            let hit = t.is_none_or(|t| pkt.icmp_type == Some(t))
                && c.is_none_or(|c| pkt.icmp_code == Some(c));
            ok &= hit != negate;
        }
        let src = self.side(&r.source, ns, protocol, pkt.src, pkt.protocol, pkt.src_port)?;
        let dst = self.side(
            &r.destination,
            ns,
            protocol,
            pkt.dst,
            pkt.protocol,
            pkt.dst_port,
        )?;
        Some(ok && src && dst)
    }

    fn side(
        &self,
        e: &EntityRule,
        ns: Option<&str>,
        rule_proto: Option<u8>,
        ip: IpAddr,
        proto: u8,
        port: u16,
    ) -> Option<bool> {
        if e.service_accounts.is_some() || e.services.is_some() {
            return None;
        }
        let parse = |s: &str| -> Option<Option<Selector>> {
            if s.is_empty() {
                Some(None)
            } else {
                Selector::parse(s).ok().map(Some)
            }
        };
        let sel = parse(&e.selector)?;
        let not_sel = parse(&e.not_selector)?;
        let ns_sel = parse(&e.namespace_selector)?;
        let parse_nets = |v: &[String]| -> Option<Vec<IpNet>> {
            v.iter()
                .map(|s| calico_api::validate::parse_net(s).ok())
                .collect()
        };
        let pos_nets = parse_nets(&e.nets)?;
        let neg_nets = parse_nets(&e.not_nets)?;
        for p in e.ports.iter().chain(&e.not_ports) {
            if let Port::Range { min, max } = p {
                if min > max {
                    return None;
                }
            }
            if matches!(p, Port::Named(_)) && rule_proto.is_none() {
                return None;
            }
        }
        // The namespace scope of the positive selector.
        let has_scope = ns_sel.is_some() || ns.is_some();
        let in_scope = |x: &Ent| match (&ns_sel, ns) {
            (Some(s), _) if s.is_global() => x.namespace.is_none(),
            (Some(s), _) => x
                .namespace
                .as_ref()
                .is_some_and(|n| s.matches(&self.world.namespace_labels(n))),
            (None, Some(ns)) => x.namespace.as_deref() == Some(ns),
            (None, None) => true,
        };
        let uses_selectors = sel.is_some() || not_sel.is_some() || ns_sel.is_some();
        let positive_required = sel.is_some() || (has_scope && uses_selectors);
        let all = Selector::all();
        let sel_ref = sel.as_ref().unwrap_or(&all);
        let positive = |x: &Ent| !positive_required || (in_scope(x) && sel_ref.matches(&x.labels));
        let holding = |x: &&Ent| x.nets.iter().any(|n| n.contains(&ip));

        let mut ok = true;
        ok &= pos_nets.is_empty() || pos_nets.iter().any(|n| n.contains(&ip));
        ok &= !neg_nets.iter().any(|n| n.contains(&ip));
        if positive_required {
            ok &= self.ents.iter().filter(holding).any(&positive);
        }
        if let Some(ns) = &not_sel {
            ok &= !self
                .ents
                .iter()
                .filter(holding)
                .any(|x| ns.matches(&x.labels));
        }
        let named_hit = |name: &str| {
            self.ents.iter().filter(holding).any(|x| {
                positive(x)
                    && x.ports.iter().any(|p| {
                        p.name == name && Some(p.protocol.number()) == rule_proto && p.port == port
                    })
            })
        };
        let hit = |p: &Port| match p {
            Port::Range { min, max } => *min <= port && port <= *max,
            Port::Named(n) => named_hit(n),
        };
        if !e.ports.is_empty() {
            ok &= e.ports.iter().any(hit);
        }
        ok &= !e.not_ports.iter().any(hit);
        let _ = proto;
        Some(ok)
    }
}
