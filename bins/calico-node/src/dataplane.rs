//! The host's dataplane: the nftables policy manager, the routing managers
//! (routes, VXLAN, IPIP probe, sysctls, MTU) and the conntrack clean-up of
//! addresses endpoints give up, driven together.
//!
//! Drift checks of nftables are skipped while the network namespace's
//! nftables generation is still the one our last write or read left: every
//! change to any nft object is a transaction that bumps it, so an unchanged
//! generation means nothing drifted. Reading the table back is not cheap
//! (1,000 endpoints: ~5 MB of `nft -j` output, ~0.5 s), and it runs on the
//! agent's main loop, so every policy change arriving meanwhile waited.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use calico_calc::model::{EndpointKey, Update};
use calico_dataplane::learned::{LearnedRoutes, RTPROT_BIRD};
use calico_dataplane::netlink::KernelRoute;
use calico_dataplane::{
    ApplyStats, CommandConntrack, CommandNft, Condition, ConntrackManager, DataplaneError,
    GenerationTracked, Manager, PolicyManager, ProcSysctl, RoutingConfig, RtNetlink,
};
use ipnet::IpNet;
use tracing::warn;

use crate::config::AgentConfig;
use crate::epstatus::LocalEndpoints;
use crate::status::EndpointStatus;

pub struct Dataplane {
    policy: PolicyManager<GenerationTracked<CommandNft>>,
    routing: calico_dataplane::Routing<RtNetlink, ProcSysctl>,
    /// Routes learned by BGP (`proto bird`).
    learned: LearnedRoutes<RtNetlink>,
    /// Deletes the flows of addresses local endpoints give up; applied last.
    conntrack: ConntrackManager<CommandConntrack>,
    /// Conditions last logged, so each is logged once when it appears.
    logged: BTreeSet<String>,
    endpoints: LocalEndpoints,
    /// Outcome of the last apply, for endpoint status.
    policy_ok: bool,
    apply_failed: bool,
    /// How long the last apply spent in the policy (nft) and routing parts.
    pub last_policy_time: Duration,
    pub last_routing_time: Duration,
}

impl Dataplane {
    pub fn new(cfg: &AgentConfig) -> Result<Dataplane> {
        let mut rc = RoutingConfig::new(cfg.node_name.clone());
        rc.state_dir = cfg.state_dir().to_path_buf();
        let routing = calico_dataplane::Routing::kernel(rc)
            .map_err(|e| anyhow!("cannot open netlink: {e}"))?;
        let nl = RtNetlink::new().map_err(|e| anyhow!("cannot open netlink: {e}"))?;
        Ok(Dataplane {
            policy: PolicyManager::new(GenerationTracked::new(CommandNft::new())),
            routing,
            learned: LearnedRoutes::new(nl, RTPROT_BIRD),
            conntrack: ConntrackManager::new(CommandConntrack::new()),
            logged: BTreeSet::new(),
            endpoints: LocalEndpoints::default(),
            policy_ok: false,
            apply_failed: false,
            last_policy_time: Duration::ZERO,
            last_routing_time: Duration::ZERO,
        })
    }

    pub fn on_update(&mut self, u: &Update) {
        self.policy.on_update(u);
        self.routing.on_update(u);
        self.conntrack.on_update(u);
        self.endpoints.on_update(u);
    }

    /// Best-path changes from BGP, as kernel routes (None: remove).
    pub fn set_learned(&mut self, changes: Vec<(IpNet, Option<KernelRoute>)>) {
        for (dst, route) in changes {
            self.learned.set(dst, route);
        }
    }

    /// BGP has heard every peer's whole table: learned routes kept from
    /// before a restart that nobody re-announced may now go.
    pub fn learned_converged(&mut self) {
        self.learned.converged();
    }

    /// Applies everything; returns the first error (all are attempted).
    pub fn apply(&mut self) -> Result<ApplyStats, DataplaneError> {
        let t = Instant::now();
        let p = self.policy.apply();
        self.last_policy_time = t.elapsed();
        let t = Instant::now();
        let r = self.routing.apply();
        let l = self.learned.apply();
        self.last_routing_time = t.elapsed();
        // After the new policy is in place, so reconnects meet it.
        let c = self.conntrack.apply();
        self.log_conditions();
        self.policy_ok = p.is_ok();
        self.apply_failed = p.is_err() || r.is_err();
        let mut stats = ApplyStats::default();
        let mut first = None;
        for res in [p, r, l, c] {
            match res {
                Ok(s) => stats.writes += s.writes,
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        first.map_or(Ok(stats), Err)
    }

    /// Drift check at the next apply: routes, links and sysctls always;
    /// nftables only if its generation moved since our last write or read.
    /// Returns true if the nft table will be read back.
    pub fn resync(&mut self) -> bool {
        self.routing.resync();
        self.learned.resync();
        if self.policy.backend().unchanged() {
            return false;
        }
        self.policy.resync();
        true
    }

    /// True while something waits on the kernel (e.g. a tap device that
    /// Nova has not created yet): the agent retries soon.
    pub fn has_pending(&self) -> bool {
        self.routing.conditions().iter().any(|c| {
            matches!(
                c,
                Condition::RoutesPending { .. }
                    | Condition::InterfaceSettingsPending { .. }
                    | Condition::VxlanPending { .. }
            )
        })
    }

    /// Every local endpoint's status as of the last apply.
    pub fn endpoint_statuses(&self) -> BTreeMap<EndpointKey, EndpointStatus> {
        self.endpoints
            .statuses(&self.routing, self.policy_ok, self.apply_failed)
    }

    /// Everything currently waiting or unsupported.
    pub fn conditions(&self) -> Vec<Condition> {
        self.routing.conditions()
    }

    fn log_conditions(&mut self) {
        let now: BTreeSet<String> = self
            .routing
            .conditions()
            .iter()
            .map(|c| c.to_string())
            .collect();
        for c in now.difference(&self.logged) {
            warn!(condition = %c, "dataplane condition");
        }
        self.logged = now;
    }
}
