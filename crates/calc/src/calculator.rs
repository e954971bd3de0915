//! Wiring of the calculation.
//!
//! ```text
//!  on_input ──► pending (last value per resource key; nothing else happens)
//!
//!  flush:
//!   pending ─┬─► config (FelixConfiguration, env) ─────────────────────────────► Config
//!            ├─► pools (IPPool) ──────────────────────────────┬─────────────────► Pools
//!            ├─► tiers, policies, profiles ─► Policies        │
//!            │        │ selector                              │
//!            │        ▼                                       │
//!            │   policy index (local endpoints) ─ matches ─► LocalEndpoints ─► EndpointUpsert
//!            │        ▲                          (dirty only)     │ refs
//!            ├─► labels (inheritance) ──┐                         ▼
//!            │                          │            Policies::settle (compile active) ─► PolicyUpsert
//!            ├─► endpoints, host endpoints, network sets          │ IP set refs
//!            │        │ labels + addresses                        ▼
//!            │        └────────────────────► IpSets (index over all entities) ─► IpSetUpsert/Delta
//!            └─► nodes, blocks, endpoints' addresses ─► Routes ─► VtepUpsert, RouteUpsert
//!
//!   Sequencer: diff against what was sent, emit in dependency order, InSync once.
//! ```
//!
//! Each node is a plain struct owned here; nodes return what changed and
//! this module routes it, so the data flow is visible in one place.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use calico_api::endpoint::{
    EndpointPort, GlobalNetworkSet, HostEndpoint, NetworkSet, WorkloadEndpoint,
};
use calico_api::network::Node;
use calico_api::policy::{
    default_types, GlobalNetworkPolicy, NetworkPolicy, PolicyType, Profile, Tier,
    TierDefaultAction, DEFAULT_TIER,
};
use calico_api::selector::Selector;
use calico_api::validate::parse_net;
use calico_api::{lookup_kind, AnyResource, LABEL_NAMESPACE, LABEL_ORCHESTRATOR};
use ipnet::{IpNet, Ipv4Net};

use crate::bgp::{BgpCalc, BgpIntent, RouterId};
use crate::config::{pool, ConfigInputs};
use crate::effsel::{EffSel, Entity, LabelMap, Scope};
use crate::endpoints::{profile_id, LocalEndpoints, LocalInfo};
use crate::input::{HostIdentity, Input};
use crate::intern::Interner;
use crate::ipsets::{EntityAddrs, IpSets};
use crate::labels::{LabelInheritance, LabelSource};
use crate::model::{EndpointKey, PolicyId, PolicyKind, Pool, TierDefault, Update};
use crate::policies::{Policies, PolicyRecord, RecordChange, TierInfo};
use crate::routes::{NodeInfo, Routes, WepRoutes};
use crate::selector_index::{MatchEvent, SelectorIndex};
use crate::sequencer::Sequencer;

/// Everything that can carry labels and addresses for rule selectors.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum EntKey {
    Wep(EndpointKey),
    Hep(String),
    NetSet(String, String),
    GlobalNetSet(String),
}

type ResKey = (&'static str, String, String);

/// Processing order of kinds within a flush (it only affects how much work
/// is repeated, not the result).
fn kind_rank(kind: &str) -> u8 {
    match kind {
        "FelixConfiguration" => 0,
        "Tier" => 1,
        "Profile" => 2,
        "GlobalNetworkPolicy" | "NetworkPolicy" => 3,
        "IPPool" => 4,
        "Node" => 5,
        _ => 6,
    }
}

/// The incremental calculation of one host's desired dataplane state.
pub struct Calculator {
    host: HostIdentity,
    /// Boxed: resources are large and are moved while coalescing and sorting.
    pending: HashMap<ResKey, Option<Box<AnyResource>>>,
    pending_blocks: BTreeMap<IpNet, Option<Option<String>>>,
    warnings: Vec<String>,
    ents: Interner<EntKey>,
    labels: LabelInheritance,
    ipsets: IpSets,
    policy_index: SelectorIndex<u32, u32>,
    policies: Policies,
    endpoints: LocalEndpoints,
    routes: Routes,
    config: ConfigInputs,
    config_dirty: bool,
    pools: BTreeMap<String, Pool>,
    pools_dirty: bool,
    seq: crate::sequencer::Sequencer,
    events: Vec<MatchEvent<u32, u32>>,
    bgp: BgpCalc,
    /// An input changed what the BGP intent depends on since it was taken.
    bgp_dirty: bool,
    /// The intent last taken (None: never taken).
    bgp_last: Option<Option<BgpIntent>>,
    /// Warnings of the last BGP computation (repeated ones are not re-reported).
    bgp_warned: Vec<String>,
}

impl Calculator {
    pub fn new(host: HostIdentity) -> Calculator {
        Calculator {
            routes: Routes::new(&host.node_name, host.node_ip),
            bgp: BgpCalc::new(host.node_name.clone()),
            host,
            pending: HashMap::new(),
            pending_blocks: BTreeMap::new(),
            warnings: Vec::new(),
            ents: Interner::default(),
            labels: LabelInheritance::default(),
            ipsets: IpSets::default(),
            policy_index: SelectorIndex::default(),
            policies: Policies::default(),
            endpoints: LocalEndpoints::default(),
            config: ConfigInputs::default(),
            config_dirty: true,
            pools: BTreeMap::new(),
            pools_dirty: true,
            seq: Sequencer::default(),
            events: Vec::new(),
            bgp_dirty: true,
            bgp_last: None,
            bgp_warned: Vec::new(),
        }
    }

    /// Records one change; the work happens in [`Calculator::flush`] (and,
    /// for BGP, in [`Calculator::take_bgp_intent`]).
    pub fn on_input(&mut self, input: Input) {
        self.bgp_dirty |= self.bgp.on_input(&input);
        match input {
            Input::Resource(r) => {
                let m = r.metadata();
                let key = (r.kind(), m.namespace.clone(), m.name.clone());
                self.pending.insert(key, Some(Box::new(r)));
            }
            Input::ResourceRemoved {
                kind,
                namespace,
                name,
            } => match lookup_kind(kind) {
                Some(info) => {
                    self.pending.insert((info.kind, namespace, name), None);
                }
                None => self
                    .warnings
                    .push(format!("removal of unknown kind {kind:?} ignored")),
            },
            Input::Block { cidr, affinity } => {
                self.pending_blocks.insert(cidr.trunc(), Some(affinity));
            }
            Input::BlockRemoved { cidr } => {
                self.pending_blocks.insert(cidr.trunc(), None);
            }
            // Only BGP uses block affinities.
            Input::BlockAffinity { .. } | Input::BlockAffinityRemoved { .. } => {}
            Input::InSync => self.seq.request_in_sync(),
        }
    }

    /// `CALICO_ROUTER_ID` for the BGP intent.
    pub fn set_bgp_router_id(&mut self, r: RouterId) {
        self.bgp.set_router_id(r);
        self.bgp_dirty = true;
    }

    /// Where BGP passwords are read from (see [`BgpCalc::set_secrets_dir`]).
    pub fn set_bgp_secrets_dir(&mut self, dir: impl Into<std::path::PathBuf>) {
        self.bgp.set_secrets_dir(dir);
        self.bgp_dirty = true;
    }

    /// Makes the next [`Calculator::take_bgp_intent`] recompute even without
    /// a datastore change (e.g. to re-read password files).
    pub fn refresh_bgp(&mut self) {
        self.bgp_dirty = true;
    }

    /// The BGP calculation, for inspection.
    pub fn bgp(&self) -> &BgpCalc {
        &self.bgp
    }

    /// The BGP intent when it changed since the last call: `Some(Some(i))`
    /// a new intent, `Some(None)` BGP is not possible on this node (it has
    /// no BGP address), `None` nothing changed. The first call always
    /// answers `Some`. Warnings go to [`Calculator::take_warnings`].
    pub fn take_bgp_intent(&mut self) -> Option<Option<BgpIntent>> {
        self.warnings.extend(self.bgp.take_warnings());
        if !std::mem::take(&mut self.bgp_dirty) && self.bgp_last.is_some() {
            return None;
        }
        let (intent, warnings) = self.bgp.compute();
        for w in &warnings {
            if !self.bgp_warned.contains(w) {
                self.warnings.push(w.clone());
            }
        }
        self.bgp_warned = warnings;
        if self.bgp_last.as_ref() == Some(&intent) {
            return None;
        }
        self.bgp_last = Some(intent.clone());
        Some(intent)
    }

    /// `FELIX_*` environment settings, applied over the FelixConfiguration
    /// resources. Other variables are ignored.
    pub fn set_env_overrides(&mut self, vars: Vec<(String, String)>) {
        self.config.env = vars;
        self.config_dirty = true;
    }

    /// Warnings about skipped or partially used data since the last call.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Processes everything recorded since the last flush and returns the
    /// resulting deltas, in dependency order.
    pub fn flush(&mut self) -> Vec<Update> {
        let mut pending: Vec<(ResKey, Option<Box<AnyResource>>)> = self.pending.drain().collect();
        pending.sort_unstable_by(|a, b| (kind_rank(a.0 .0), &a.0).cmp(&(kind_rank(b.0 .0), &b.0)));
        for ((kind, ns, name), res) in pending {
            self.apply(kind, &ns, &name, res.map(|r| *r));
        }
        for (cidr, aff) in std::mem::take(&mut self.pending_blocks) {
            self.routes.set_block(cidr, aff);
        }
        let index = &self.policy_index;
        self.endpoints.resolve(
            &mut self.policies,
            |h| index.matches_of_entity(h),
            &mut self.seq.endpoints,
        );
        self.policies
            .settle(&mut self.ipsets, &mut self.seq.policies, &mut self.warnings);
        self.ipsets.settle();
        if std::mem::take(&mut self.pools_dirty) {
            self.routes
                .set_pools(self.pools.values().map(|p| (p.cidr, p.vxlan)).collect());
            self.seq.pools.set(self.pools.values().cloned().collect());
        }
        self.routes.flush(&mut self.seq.routes, &mut self.seq.vteps);
        if std::mem::take(&mut self.config_dirty) {
            let c = self.config.compute(&mut self.warnings);
            self.seq.config.set(c);
        }
        self.seq.flush(&mut self.ipsets)
    }

    fn apply(&mut self, kind: &str, ns: &str, name: &str, res: Option<AnyResource>) {
        match (kind, res) {
            ("FelixConfiguration", r) => {
                let spec = match r {
                    Some(AnyResource::FelixConfiguration(f)) => Some(f.spec),
                    _ => None,
                };
                if name == "default" {
                    self.config.default = spec;
                    self.config_dirty = true;
                } else if name.strip_prefix("node.") == Some(self.host.node_name.as_str()) {
                    self.config.node = spec;
                    self.config_dirty = true;
                }
            }
            ("Tier", r) => {
                let info = match r {
                    Some(AnyResource::Tier(t)) => Some(tier_info(&t)),
                    _ => None,
                };
                if self.policies.set_tier(name, info) {
                    let members: Vec<u32> = self.policies.tier_members(name).collect();
                    for h in members {
                        self.mark_selected_dirty(h);
                    }
                }
            }
            ("Profile", r) => {
                let p = match r {
                    Some(AnyResource::Profile(p)) => Some(p),
                    _ => None,
                };
                self.apply_profile(name, p);
            }
            ("NetworkPolicy", r) => {
                let p = match r {
                    Some(AnyResource::NetworkPolicy(p)) => Some(p),
                    _ => None,
                };
                self.apply_np(ns, name, p);
            }
            ("GlobalNetworkPolicy", r) => {
                let p = match r {
                    Some(AnyResource::GlobalNetworkPolicy(p)) => Some(p),
                    _ => None,
                };
                self.apply_gnp(name, p);
            }
            ("WorkloadEndpoint", r) => {
                let key = EndpointKey {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                };
                match r {
                    Some(AnyResource::WorkloadEndpoint(w)) if !ns.is_empty() => {
                        self.apply_wep(key, w)
                    }
                    Some(_) => {
                        self.warnings.push(format!(
                            "WorkloadEndpoint {name:?} has no namespace; ignored"
                        ));
                        self.remove_wep(key);
                    }
                    None => self.remove_wep(key),
                }
            }
            ("HostEndpoint", r) => {
                let key = EntKey::Hep(name.to_string());
                match r {
                    Some(AnyResource::HostEndpoint(h)) => self.apply_hep(key, h),
                    _ => self.remove_entity(key),
                }
            }
            ("NetworkSet", r) => {
                let key = EntKey::NetSet(ns.to_string(), name.to_string());
                match r {
                    Some(AnyResource::NetworkSet(s)) if !ns.is_empty() => self.apply_netset(key, s),
                    _ => self.remove_entity(key),
                }
            }
            ("GlobalNetworkSet", r) => {
                let key = EntKey::GlobalNetSet(name.to_string());
                match r {
                    Some(AnyResource::GlobalNetworkSet(s)) => self.apply_gnetset(key, s),
                    _ => self.remove_entity(key),
                }
            }
            ("Node", r) => {
                let info = match r {
                    Some(AnyResource::Node(n)) => Some(node_info(&n)),
                    _ => None,
                };
                self.routes.set_node(name, info);
            }
            ("IPPool", r) => {
                let p = match r {
                    Some(AnyResource::IPPool(p)) => match pool(&p) {
                        Some(p) => Some(p),
                        None => {
                            self.warnings.push(format!(
                                "IPPool {name}: invalid cidr {:?}; ignored",
                                p.spec.cidr
                            ));
                            None
                        }
                    },
                    _ => None,
                };
                let changed = match p {
                    Some(p) => self.pools.insert(name.to_string(), p.clone()) != Some(p),
                    None => self.pools.remove(name).is_some(),
                };
                self.pools_dirty |= changed;
            }
            _ => {}
        }
    }

    // ---- policies, profiles, tiers ----------------------------------------

    fn handle_events(&mut self) {
        for ev in self.events.drain(..) {
            let (MatchEvent::Started(_, e) | MatchEvent::Stopped(_, e)) = ev;
            self.endpoints.mark_dirty(e);
        }
    }

    /// Marks every local endpoint a policy selects for re-resolution.
    fn mark_selected_dirty(&mut self, h: u32) {
        for e in self.policy_index.matches_of_selector(h) {
            self.endpoints.mark_dirty(e);
        }
    }

    fn set_policy(&mut self, id: PolicyId, def: Option<(PolicyRecord, Option<EffSel>)>) {
        let h = self.policies.handle(&id);
        let (rec, sel) = match def {
            Some((r, s)) => (Some(r), s),
            None => (None, None),
        };
        let change = self.policies.set_record(h, rec);
        match sel {
            Some(s) => {
                self.policy_index
                    .upsert_selector(h, std::sync::Arc::new(s), &mut self.events)
            }
            None => self.policy_index.remove_selector(h, &mut self.events),
        }
        self.handle_events();
        if change == RecordChange::Placement {
            self.mark_selected_dirty(h);
        }
        self.policies.release_if_unused(h);
    }

    fn apply_np(&mut self, ns: &str, name: &str, p: Option<NetworkPolicy>) {
        let id = PolicyId {
            kind: PolicyKind::NetworkPolicy,
            namespace: ns.to_string(),
            name: name.to_string(),
        };
        let def = p.and_then(|p| {
            if ns.is_empty() {
                self.warnings
                    .push(format!("NetworkPolicy {name:?} has no namespace; ignored"));
                return None;
            }
            let s = &p.spec;
            let sel = self.policy_selector(&id, &s.selector, &s.service_account_selector)?;
            let rec = record(&s.tier, s.order, &s.types, &s.ingress, &s.egress, Some(ns));
            Some((
                rec,
                sel.map(|sel| EffSel::new(sel, Scope::Namespace(ns.to_string()))),
            ))
        });
        self.set_policy(id, def);
    }

    fn apply_gnp(&mut self, name: &str, p: Option<GlobalNetworkPolicy>) {
        let id = PolicyId {
            kind: PolicyKind::GlobalNetworkPolicy,
            namespace: String::new(),
            name: name.to_string(),
        };
        let def = p.and_then(|p| {
            let s = &p.spec;
            let sel = self.policy_selector(&id, &s.selector, &s.service_account_selector)?;
            let scope = if s.namespace_selector.is_empty() {
                Scope::Any
            } else {
                match Selector::parse(&s.namespace_selector) {
                    Ok(n) => Scope::from_namespace_selector(n),
                    Err(e) => {
                        self.warnings.push(format!(
                            "{id}: invalid namespaceSelector {:?}: {e}; policy ignored",
                            s.namespace_selector
                        ));
                        return None;
                    }
                }
            };
            // preDNAT and doNotTrack policies apply to host endpoints only.
            let sel = sel.filter(|_| !s.pre_dnat && !s.do_not_track);
            let rec = record(&s.tier, s.order, &s.types, &s.ingress, &s.egress, None);
            Some((rec, sel.map(|sel| EffSel::new(sel, scope))))
        });
        self.set_policy(id, def);
    }

    /// The policy's endpoint selector: Err/None → ignore the policy; Some(None)
    /// → the policy exists but selects no workload endpoint.
    fn policy_selector(
        &mut self,
        id: &PolicyId,
        selector: &str,
        sa_selector: &str,
    ) -> Option<Option<Selector>> {
        let sel = match Selector::parse(selector) {
            Ok(s) => s,
            Err(e) => {
                self.warnings.push(format!(
                    "{id}: invalid selector {selector:?}: {e}; policy ignored"
                ));
                return None;
            }
        };
        if !sa_selector.is_empty() {
            self.warnings.push(format!(
                "{id}: serviceAccountSelector is not supported; the policy selects no endpoint"
            ));
            return Some(None);
        }
        Some(Some(sel))
    }

    fn apply_profile(&mut self, name: &str, p: Option<Profile>) {
        let labels = p.as_ref().map(|p| p.spec.labels_to_apply.clone());
        for e in self.labels.set_profile_labels(name, labels) {
            self.refresh_entity(e);
        }
        let h = self.policies.handle(&profile_id(name));
        let rec = p.map(|p| PolicyRecord {
            tier: String::new(),
            order: None,
            ingress: true,
            egress: true,
            namespace: None,
            inbound: p.spec.ingress,
            outbound: p.spec.egress,
        });
        if self.policies.set_record(h, rec) == RecordChange::Placement {
            self.endpoints.mark_profile_users(name);
        }
        self.policies.release_if_unused(h);
    }

    // ---- entities ---------------------------------------------------------

    /// Re-evaluates an entity whose inherited labels changed.
    fn refresh_entity(&mut self, e: u32) {
        let Some(ent) = self.labels.entity(e) else {
            return;
        };
        if self.endpoints.contains(e) {
            self.policy_index
                .upsert_entity(e, ent.clone(), &mut self.events);
            self.handle_events();
        }
        self.ipsets.relabel(e, ent);
    }

    fn set_entity(&mut self, key: EntKey, src: LabelSource, addrs: EntityAddrs) -> (u32, Entity) {
        let e = self.ents.intern(&key);
        let ent = self.labels.set_source(e, src);
        self.ipsets.upsert_entity(e, ent.clone(), addrs);
        (e, ent)
    }

    fn remove_entity(&mut self, key: EntKey) {
        let Some(e) = self.ents.get(&key) else {
            return;
        };
        self.labels.remove_source(e);
        self.ipsets.remove_entity(e);
        self.policy_index.remove_entity(e, &mut self.events);
        self.events.clear();
        self.endpoints
            .remove(e, &mut self.policies, &mut self.seq.endpoints);
        self.ents.release(e);
    }

    fn remove_wep(&mut self, key: EndpointKey) {
        self.routes.set_wep(&key, None);
        self.remove_entity(EntKey::Wep(key));
    }

    fn apply_wep(&mut self, key: EndpointKey, w: WorkloadEndpoint) {
        let s = &w.spec;
        let mut own: LabelMap = w.metadata.labels.clone();
        own.insert(LABEL_NAMESPACE.to_string(), key.namespace.clone());
        if !s.orchestrator.is_empty() {
            own.insert(LABEL_ORCHESTRATOR.to_string(), s.orchestrator.clone());
        }
        let what = format!("WorkloadEndpoint {}/{}", key.namespace, key.name);
        let addrs: Vec<IpNet> = self
            .parse_nets(&what, "ipNetworks", &s.ip_networks)
            .into_iter()
            .filter(|n| {
                let host = n.prefix_len() == n.max_prefix_len();
                if !host {
                    self.warnings.push(format!(
                        "{what}: ipNetworks entry {n} is not a /32 or /128; skipped"
                    ));
                }
                host
            })
            .collect();
        let ports = self.parse_ports(&what, &s.ports);
        let src = LabelSource {
            own,
            profiles: s.profiles.clone(),
            namespace: Some(key.namespace.clone()),
        };
        let (e, ent) = self.set_entity(
            EntKey::Wep(key.clone()),
            src,
            EntityAddrs {
                nets: addrs.clone(),
                ports,
            },
        );
        let on_host = s.node == self.host.node_name;
        if on_host && s.interface_name.is_empty() {
            self.warnings.push(format!(
                "{what} is on this host but has no interfaceName; not programmed"
            ));
        }
        let local = on_host && !s.interface_name.is_empty();
        if local {
            let info = LocalInfo {
                key: key.clone(),
                iface: s.interface_name.clone(),
                mac: (!s.mac.is_empty()).then(|| s.mac.clone()),
                addrs: addrs.clone(),
                allow_spoofed: self.parse_nets(
                    &what,
                    "allowSpoofedSourcePrefixes",
                    &s.allow_spoofed_source_prefixes,
                ),
                nats: s
                    .ip_nats
                    .iter()
                    .filter_map(|n| {
                        match (
                            n.internal_ip.parse::<IpAddr>(),
                            n.external_ip.parse::<IpAddr>(),
                        ) {
                            (Ok(i), Ok(x)) => Some((i, x)),
                            _ => {
                                self.warnings.push(format!(
                                    "{what}: invalid ipNATs entry {}→{}; skipped",
                                    n.internal_ip, n.external_ip
                                ));
                                None
                            }
                        }
                    })
                    .collect(),
                profiles: s.profiles.clone(),
            };
            self.policy_index.upsert_entity(e, ent, &mut self.events);
            self.handle_events();
            self.endpoints.upsert(e, info);
        } else if self.endpoints.contains(e) {
            self.policy_index.remove_entity(e, &mut self.events);
            self.events.clear();
            self.endpoints
                .remove(e, &mut self.policies, &mut self.seq.endpoints);
        }
        self.routes.set_wep(
            &key,
            Some(WepRoutes {
                node: s.node.clone(),
                addrs,
                local_iface: local.then(|| s.interface_name.clone()),
            }),
        );
    }

    fn apply_hep(&mut self, key: EntKey, h: HostEndpoint) {
        let what = format!("HostEndpoint {}", h.metadata.name);
        let nets = h
            .spec
            .expected_ips
            .iter()
            .filter_map(|ip| match ip.parse::<IpAddr>() {
                Ok(a) => Some(IpNet::from(a)),
                Err(_) => {
                    self.warnings
                        .push(format!("{what}: invalid expectedIPs entry {ip:?}; skipped"));
                    None
                }
            })
            .collect();
        let ports = self.parse_ports(&what, &h.spec.ports);
        let src = LabelSource {
            own: h.metadata.labels.clone(),
            profiles: h.spec.profiles.clone(),
            namespace: None,
        };
        self.set_entity(key, src, EntityAddrs { nets, ports });
    }

    fn apply_netset(&mut self, key: EntKey, s: NetworkSet) {
        let ns = s.metadata.namespace.clone();
        let what = format!("NetworkSet {ns}/{}", s.metadata.name);
        let nets = self.parse_nets(&what, "nets", &s.spec.nets);
        let mut own = s.metadata.labels.clone();
        own.insert(LABEL_NAMESPACE.to_string(), ns.clone());
        let src = LabelSource {
            own,
            profiles: vec![],
            namespace: Some(ns),
        };
        self.set_entity(
            key,
            src,
            EntityAddrs {
                nets,
                ports: vec![],
            },
        );
    }

    fn apply_gnetset(&mut self, key: EntKey, s: GlobalNetworkSet) {
        let what = format!("GlobalNetworkSet {}", s.metadata.name);
        let nets = self.parse_nets(&what, "nets", &s.spec.nets);
        let src = LabelSource {
            own: s.metadata.labels.clone(),
            profiles: vec![],
            namespace: None,
        };
        self.set_entity(
            key,
            src,
            EntityAddrs {
                nets,
                ports: vec![],
            },
        );
    }

    fn parse_nets(&mut self, what: &str, field: &str, list: &[String]) -> Vec<IpNet> {
        list.iter()
            .filter_map(|n| match parse_net(n) {
                Ok(n) => Some(n.trunc()),
                Err(e) => {
                    self.warnings
                        .push(format!("{what}: {field}: {e}; entry skipped"));
                    None
                }
            })
            .collect()
    }

    fn parse_ports(&mut self, what: &str, ports: &[EndpointPort]) -> Vec<(String, u8, u16)> {
        ports
            .iter()
            .filter_map(|p| match p.protocol.number() {
                0 => {
                    self.warnings.push(format!(
                        "{what}: port {:?} has unknown protocol {}; skipped",
                        p.name, p.protocol
                    ));
                    None
                }
                n => Some((p.name.clone(), n, p.port)),
            })
            .collect()
    }
}

fn tier_info(t: &Tier) -> TierInfo {
    let order = t.spec.order.or_else(|| {
        (t.metadata.name == DEFAULT_TIER).then_some(calico_api::policy::DEFAULT_TIER_ORDER)
    });
    TierInfo {
        order,
        default_action: match t.spec.default_action {
            Some(TierDefaultAction::Pass) => TierDefault::Pass,
            _ => TierDefault::Deny,
        },
    }
}

fn record(
    tier: &str,
    order: Option<f64>,
    types: &[PolicyType],
    ingress: &[calico_api::policy::Rule],
    egress: &[calico_api::policy::Rule],
    namespace: Option<&str>,
) -> PolicyRecord {
    let types = if types.is_empty() {
        default_types(ingress, egress)
    } else {
        types.to_vec()
    };
    let in_ = types.contains(&PolicyType::Ingress);
    let eg = types.contains(&PolicyType::Egress);
    PolicyRecord {
        tier: if tier.is_empty() { DEFAULT_TIER } else { tier }.to_string(),
        order,
        ingress: in_,
        egress: eg,
        namespace: namespace.map(str::to_string),
        inbound: if in_ { ingress.to_vec() } else { vec![] },
        outbound: if eg { egress.to_vec() } else { vec![] },
    }
}

/// Strips a `/len` suffix.
fn parse_addr(s: &str) -> Option<IpAddr> {
    s.split('/').next()?.trim().parse().ok()
}

fn node_info(n: &Node) -> NodeInfo {
    let bgp_v4 = n
        .spec
        .bgp
        .as_ref()
        .map(|b| b.ipv4_address.as_str())
        .unwrap_or("");
    let v4_net = bgp_v4.parse::<Ipv4Net>().ok();
    let ip = parse_addr(bgp_v4).or_else(|| {
        let addrs: Vec<(IpAddr, &str)> = n
            .spec
            .addresses
            .iter()
            .filter_map(|a| parse_addr(&a.address).map(|ip| (ip, a.address_type.as_str())))
            .collect();
        let rank = |(ip, t): &(IpAddr, &str)| {
            (
                !ip.is_ipv4(),
                match *t {
                    "CalicoNodeIP" => 0,
                    "InternalIP" => 1,
                    _ => 2,
                },
            )
        };
        addrs.iter().min_by_key(|a| rank(a)).map(|a| a.0)
    });
    let vtep = match (
        n.spec.ipv4_vxlan_tunnel_addr.parse(),
        n.spec.vxlan_tunnel_mac_addr.is_empty(),
    ) {
        (Ok(t), false) => Some((t, n.spec.vxlan_tunnel_mac_addr.clone())),
        _ => None,
    };
    NodeInfo { ip, v4_net, vtep }
}
