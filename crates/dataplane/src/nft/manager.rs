//! `PolicyManager`: keeps the calc model (config, pools, IP sets, policies,
//! endpoints), turns the changed parts into desired chains/sets on `apply`,
//! and lets [`Table`] write the difference in one transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use calico_calc::model::{
    EndpointKey, HostConfig, IpSetId, IpSetMember, LocalEndpoint, Policy, PolicyId, Pool, Update,
};

use super::backend::NftBackend;
use super::render::{self, Dir, SetRef, Settings};
use super::table::{Elems, Table};
use crate::{ApplyStats, DataplaneError, Manager};

/// A policy or profile chain in one direction.
type ChainRef = (PolicyId, Dir);

#[derive(Debug)]
struct EpState {
    iface: String,
    refs: BTreeSet<ChainRef>,
}

/// Programs `table inet calico` from the calc's `Update` stream.
///
/// ```no_run
/// use calico_dataplane::nft::{CommandNft, PolicyManager};
/// use calico_dataplane::Manager;
/// let mut pm = PolicyManager::new(CommandNft::new());
/// // pm.on_update(&update) for each update, then:
/// pm.apply().unwrap();
/// ```
pub struct PolicyManager<B: NftBackend> {
    backend: B,
    table: Table,
    config: HostConfig,
    pools: Vec<Pool>,
    ipsets: HashMap<IpSetId, BTreeSet<IpSetMember>>,
    policies: HashMap<PolicyId, Arc<Policy>>,
    endpoints: BTreeMap<EndpointKey, Arc<LocalEndpoint>>,

    settings: Option<Settings>,
    ep_state: HashMap<EndpointKey, EpState>,
    chain_refs: HashMap<ChainRef, usize>,
    /// Programmed policy chains and the IP sets each uses.
    programmed_chains: HashMap<ChainRef, BTreeSet<SetRef>>,
    set_refs: HashMap<SetRef, usize>,
    programmed_sets: HashSet<SetRef>,

    dirty_base: bool,
    dirty_fips: bool,
    dirty_eps: BTreeSet<EndpointKey>,
    dirty_policies: BTreeSet<PolicyId>,
    dirty_ipsets: BTreeSet<IpSetId>,
}

impl<B: NftBackend> PolicyManager<B> {
    pub fn new(backend: B) -> Self {
        PolicyManager {
            backend,
            table: Table::new(),
            config: render::default_host_config(),
            pools: Vec::new(),
            ipsets: HashMap::new(),
            policies: HashMap::new(),
            endpoints: BTreeMap::new(),
            settings: None,
            ep_state: HashMap::new(),
            chain_refs: HashMap::new(),
            programmed_chains: HashMap::new(),
            set_refs: HashMap::new(),
            programmed_sets: HashSet::new(),
            dirty_base: true,
            dirty_fips: true,
            dirty_eps: BTreeSet::new(),
            dirty_policies: BTreeSet::new(),
            dirty_ipsets: BTreeSet::new(),
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The desired table (after folding pending updates into it).
    pub fn table(&mut self) -> &Table {
        self.compute();
        &self.table
    }

    /// The whole desired ruleset as an nft script that would create it from
    /// scratch (debugging, golden tests, benchmarks).
    pub fn desired_script(&mut self) -> String {
        self.compute();
        self.table.desired_script()
    }

    /// Name of the chain holding a policy's rules for one direction.
    pub fn policy_chain_name(id: &PolicyId, dir: Dir) -> String {
        render::policy_chain_name(id, dir)
    }

    /// Number of policy/profile chains currently wanted (referenced).
    pub fn programmed_policy_chains(&self) -> usize {
        self.programmed_chains.len()
    }

    /// Fold pending model changes into the desired table (no kernel access).
    fn compute(&mut self) {
        let settings = Settings::new(&self.config, &self.pools);
        let settings_changed = self.settings.as_ref() != Some(&settings);
        if settings_changed {
            // Endpoint chains and log prefixes depend on the settings.
            self.dirty_eps.extend(self.endpoints.keys().cloned());
            self.dirty_policies
                .extend(self.programmed_chains.keys().map(|(id, _)| id.clone()));
            self.settings = Some(settings.clone());
            self.dirty_base = true;
        }
        if self.dirty_base {
            for (name, def) in render::static_sets() {
                self.table.ensure_set(name, def, None);
            }
            for (name, spec) in render::base_chains(&settings) {
                self.table.set_chain(name, spec);
            }
            self.table.set_elements(
                render::SET_POOLS4,
                render::pool_elems(&self.pools, false, false),
            );
            self.table.set_elements(
                render::SET_POOLS6,
                render::pool_elems(&self.pools, true, false),
            );
            self.table.set_elements(
                render::SET_MASQ4,
                render::pool_elems(&self.pools, false, true),
            );
            self.table.set_elements(
                render::SET_MASQ6,
                render::pool_elems(&self.pools, true, true),
            );
            self.table.set_elements(
                render::SET_FAILSAFE_IN,
                render::failsafe_elems(&self.config.failsafe_inbound),
            );
            self.table.set_elements(
                render::SET_FAILSAFE_OUT,
                render::failsafe_elems(&self.config.failsafe_outbound),
            );
            self.dirty_base = false;
        }

        // Endpoints: their chains, dispatch entries and policy references.
        let mut touched: BTreeSet<ChainRef> = BTreeSet::new();
        // Two passes so an interface handed from one endpoint to another in
        // the same batch is first released, then claimed.
        let dirty_eps = std::mem::take(&mut self.dirty_eps);
        for key in &dirty_eps {
            let Some(old) = self.ep_state.remove(key) else {
                continue;
            };
            self.dirty_fips = true;
            if self.endpoints.get(key).map(|e| &e.iface) != Some(&old.iface) {
                self.remove_endpoint_chains(&old.iface);
            }
            for r in old.refs {
                *self.chain_refs.entry(r.clone()).or_default() -= 1;
                touched.insert(r);
            }
        }
        for key in dirty_eps {
            let Some(ep) = self.endpoints.get(&key).cloned() else {
                continue;
            };
            if !ep.nats.is_empty() {
                self.dirty_fips = true;
            }
            let refs = endpoint_refs(&ep);
            for r in &refs {
                *self.chain_refs.entry(r.clone()).or_default() += 1;
                touched.insert(r.clone());
            }
            let iface = ep.iface.clone();
            let key_text = render::iface_key(&iface);
            let (sp, fw, tw) = (
                render::spoof_chain_name(&iface),
                render::from_wl_chain(&iface),
                render::to_wl_chain(&iface),
            );
            self.table.set_chain(&sp, render::spoof_chain(&ep));
            self.table
                .set_chain(&fw, render::endpoint_chain(&ep, Dir::Egress, &settings));
            self.table
                .set_chain(&tw, render::endpoint_chain(&ep, Dir::Ingress, &settings));
            self.table.put_element(
                render::MAP_SPOOF,
                key_text.clone(),
                Some(format!("goto {sp}")),
            );
            self.table.put_element(
                render::MAP_FROM_WL,
                key_text.clone(),
                Some(format!("jump {fw}")),
            );
            self.table
                .put_element(render::MAP_TO_WL, key_text, Some(format!("goto {tw}")));
            self.ep_state.insert(key, EpState { iface, refs });
        }
        if self.dirty_fips {
            let [d4, d6, s4, s6] = render::fip_elems(self.endpoints.values().map(|e| &**e));
            self.table.set_elements(render::MAP_FIP_DNAT4, d4);
            self.table.set_elements(render::MAP_FIP_DNAT6, d6);
            self.table.set_elements(render::MAP_FIP_SNAT4, s4);
            self.table.set_elements(render::MAP_FIP_SNAT6, s6);
            self.dirty_fips = false;
        }

        // Policy chains: (re)render referenced ones, drop unreferenced ones.
        for id in std::mem::take(&mut self.dirty_policies) {
            for dir in [Dir::Ingress, Dir::Egress] {
                touched.insert((id.clone(), dir));
            }
        }
        let mut touched_sets: BTreeSet<SetRef> = BTreeSet::new();
        for cref in touched {
            let wanted = self.chain_refs.get(&cref).copied().unwrap_or(0) > 0;
            if self.chain_refs.get(&cref) == Some(&0) {
                self.chain_refs.remove(&cref);
            }
            let name = render::policy_chain_name(&cref.0, cref.1);
            let old_sets = self.programmed_chains.remove(&cref);
            let was = old_sets.is_some();
            for s in old_sets.unwrap_or_default() {
                *self.set_refs.entry(s.clone()).or_default() -= 1;
                touched_sets.insert(s);
            }
            if wanted {
                let mut sets = BTreeSet::new();
                let policy = self.policies.get(&cref.0).map(|p| &**p);
                if policy.is_none() {
                    tracing::warn!(policy = %cref.0, "endpoint references unknown policy; programming it empty");
                }
                let spec =
                    render::policy_chain(&cref.0, policy, cref.1, &settings.log_prefix, &mut sets);
                self.table.set_chain(&name, spec);
                for s in &sets {
                    *self.set_refs.entry(s.clone()).or_default() += 1;
                    touched_sets.insert(s.clone());
                }
                self.programmed_chains.insert(cref, sets);
            } else if was {
                self.table.remove_chain(&name);
            }
        }

        // IP sets: create/fill referenced ones, delete unreferenced ones.
        let dirty_ipsets = std::mem::take(&mut self.dirty_ipsets);
        for sref in &self.programmed_sets {
            if dirty_ipsets.contains(&sref.0) {
                touched_sets.insert(sref.clone());
            }
        }
        for sref in touched_sets {
            let wanted = self.set_refs.get(&sref).copied().unwrap_or(0) > 0;
            if !wanted {
                self.set_refs.remove(&sref);
            }
            for v6 in [false, true] {
                let name = render::ipset_name(&sref.0, sref.1, v6);
                if wanted {
                    self.table.ensure_set(
                        &name,
                        render::ipset_def(sref.1, v6),
                        Some(sref.0.clone()),
                    );
                    let elems: Elems = render::ipset_elems(self.ipsets.get(&sref.0), sref.1, v6);
                    self.table.set_elements(&name, elems);
                } else {
                    self.table.remove_set(&name);
                }
            }
            if wanted {
                self.programmed_sets.insert(sref);
            } else {
                self.programmed_sets.remove(&sref);
            }
        }
    }

    fn remove_endpoint_chains(&mut self, iface: &str) {
        let key = render::iface_key(iface);
        self.table.remove_element(render::MAP_SPOOF, &key);
        self.table.remove_element(render::MAP_FROM_WL, &key);
        self.table.remove_element(render::MAP_TO_WL, &key);
        self.table.remove_chain(&render::spoof_chain_name(iface));
        self.table.remove_chain(&render::from_wl_chain(iface));
        self.table.remove_chain(&render::to_wl_chain(iface));
    }
}

fn endpoint_refs(ep: &LocalEndpoint) -> BTreeSet<ChainRef> {
    let mut refs = BTreeSet::new();
    for tier in &ep.tiers {
        for id in &tier.ingress {
            refs.insert((id.clone(), Dir::Ingress));
        }
        for id in &tier.egress {
            refs.insert((id.clone(), Dir::Egress));
        }
    }
    for name in &ep.profiles {
        let id = render::profile_id(name);
        refs.insert((id.clone(), Dir::Ingress));
        refs.insert((id, Dir::Egress));
    }
    refs
}

impl<B: NftBackend> Manager for PolicyManager<B> {
    fn on_update(&mut self, update: &Update) {
        match update {
            Update::Config(cfg) => {
                if *cfg != self.config {
                    self.config = cfg.clone();
                    self.dirty_base = true;
                }
            }
            Update::Pools(pools) => {
                if *pools != self.pools {
                    self.pools = pools.clone();
                    self.dirty_base = true;
                }
            }
            Update::IpSetUpsert { id, members } => {
                self.ipsets.insert(id.clone(), members.clone());
                self.dirty_ipsets.insert(id.clone());
            }
            Update::IpSetDelta { id, added, removed } => {
                let set = self.ipsets.entry(id.clone()).or_default();
                for m in removed {
                    set.remove(m);
                }
                set.extend(added.iter().cloned());
                self.dirty_ipsets.insert(id.clone());
            }
            Update::IpSetRemove { id } => {
                self.ipsets.remove(id);
                self.dirty_ipsets.insert(id.clone());
            }
            Update::PolicyUpsert(p) => {
                if self.policies.get(&p.id).map(|cur| **cur != **p) != Some(false) {
                    self.policies.insert(p.id.clone(), p.clone());
                    self.dirty_policies.insert(p.id.clone());
                }
            }
            Update::PolicyRemove(id) => {
                if self.policies.remove(id).is_some() {
                    self.dirty_policies.insert(id.clone());
                }
            }
            Update::EndpointUpsert(ep) => {
                if self.endpoints.get(&ep.key).map(|cur| **cur != **ep) != Some(false) {
                    self.endpoints.insert(ep.key.clone(), ep.clone());
                    self.dirty_eps.insert(ep.key.clone());
                }
            }
            Update::EndpointRemove(key) => {
                if self.endpoints.remove(key).is_some() {
                    self.dirty_eps.insert(key.clone());
                }
            }
            Update::VtepUpsert(_)
            | Update::VtepRemove { .. }
            | Update::RouteUpsert(_)
            | Update::RouteRemove { .. }
            | Update::InSync => {}
        }
    }

    fn apply(&mut self) -> Result<ApplyStats, DataplaneError> {
        self.compute();
        self.table.apply(&mut self.backend)
    }

    fn resync(&mut self) {
        self.table.resync();
    }
}
