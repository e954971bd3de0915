//! The agent's main loop: one thread owns the calculation, the dataplane
//! managers and the BGP glue; the syncer thread and the BGP speaker feed it
//! events through one channel. Changes are applied as soon as they arrive
//! (a burst is drained into one batch first), drift is checked on a timer,
//! and a lost datastore leaves the dataplane as it is.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};
use calico_api::AnyResource;
use calico_bgp::rib::BestChange;
use calico_calc::input::{HostIdentity, Input};
use calico_calc::model::{EndpointKey, Update};
use calico_calc::Calculator;
use calico_client::{load_client_config, Client};
use tracing::{debug, error, info, warn};

use crate::bgp::Bgp;
use crate::conditions::{self, NodeConditions};
use crate::config::AgentConfig;
use crate::dataplane::Dataplane;
use crate::metrics::{Metrics, ObjectCounts};
use crate::status::{EndpointStatus, EndpointStatusId, Report, StatusReporter, StatusThread};
use crate::syncer::{SyncMsg, Syncer};

/// Everything the main loop reacts to.
pub enum Event {
    Sync(SyncMsg),
    /// Best-path changes from the BGP speaker.
    BgpRoutes(Vec<BestChange>),
}

impl From<SyncMsg> for Event {
    fn from(m: SyncMsg) -> Event {
        Event::Sync(m)
    }
}

/// Connects, retrying until the datastore answers (the agent may start
/// before etcd).
fn connect(cfg: &AgentConfig) -> Result<Client> {
    let client_cfg = load_client_config(cfg.args.config.as_deref()).map_err(|e| anyhow!("{e}"))?;
    let mut delay = Duration::from_millis(200);
    loop {
        match Client::connect(&client_cfg) {
            Ok(c) => return Ok(c),
            Err(e) => {
                warn!(error = %e, "datastore not reachable yet; retrying");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

pub fn run(cfg: AgentConfig) -> Result<()> {
    let (mut agent, events) = Agent::start(cfg)?;
    loop {
        agent.metrics.beat();
        let first = match events.recv_timeout(agent.time_to_wake()) {
            Ok(ev) => Some(ev),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(anyhow!("the syncer thread stopped"))
            }
        };
        let batch = Batch::take(first, &events);
        for ev in batch.events {
            agent.on_event(ev);
        }
        let updates = agent.flush_calculation();
        agent.run_timers();
        if agent.due() && agent.apply(batch.received, updates) {
            info!("--once: synced and applied; exiting");
            return Ok(());
        }
        agent.report_periodically();
        agent.report_bgp_changes();
        agent.report_bgp_routes();
        agent.report_node_status();
    }
}

/// The events that arrived together, and when the first did (for the
/// per-batch debug line calico-bench reads).
struct Batch {
    events: Vec<Event>,
    received: (SystemTime, Instant),
}

impl Batch {
    fn take(first: Option<Event>, rx: &Receiver<Event>) -> Batch {
        let received = (SystemTime::now(), Instant::now());
        let mut events: Vec<Event> = first.into_iter().collect();
        events.extend(rx.try_iter());
        Batch { events, received }
    }
}

struct Agent {
    cfg: AgentConfig,
    client: Client,
    ipam: calico_ipam::Ipam,
    metrics: Arc<Metrics>,
    calc: Calculator,
    dataplane: Dataplane,
    bgp: Bgp,
    status: StatusThread,
    counts: ObjectCounts,
    /// Local endpoints' orchestrator identity, for their status keys.
    wep_ids: BTreeMap<EndpointKey, EndpointStatusId>,
    /// Endpoint statuses and Node conditions as last sent (None before the
    /// first apply: nothing is known yet, so nothing is written or removed).
    last_statuses: Option<BTreeMap<EndpointStatusId, EndpointStatus>>,
    last_conditions: Option<Vec<String>>,
    calc_in_sync: bool,
    dirty: bool,
    /// Inputs in the current batch, and whether an IP pool changed.
    batch_inputs: usize,
    pools_changed: bool,
    resync_every: Duration,
    status_every: Duration,
    next_resync: Instant,
    next_status: Instant,
    retry_at: Option<Instant>,
    resynced: bool,
    /// BGP sessions' states as last written to the datastore.
    last_bgp: Option<Vec<(String, calico_bgp::session::State)>>,
    /// The routes as last written (without the time), and when to look again.
    last_routes: Option<String>,
    next_routes_report: Instant,
    /// CalicoNodeStatus resources for this node.
    node_status: crate::nodestatus::Reports,
}

impl Agent {
    /// Registers the node, starts the health server, the syncer and the
    /// status writer; returns the agent and the channel its events come on.
    fn start(cfg: AgentConfig) -> Result<(Agent, Receiver<Event>)> {
        let started = Instant::now();
        info!(node = %cfg.node_name, ip = ?cfg.ip, state_dir = %cfg.state_dir().display(), "calico-node starting");
        let client = connect(&cfg)?;
        let store = client.store().clone();
        crate::register::ensure_node(&client, &cfg)?;
        crate::register::ensure_cluster_information(&client)?;
        crate::register::ensure_default_tier(&client)?;
        let ipam = calico_ipam::Ipam::new(store.clone());
        ensure_tunnel_address(&client, &ipam, &cfg.node_name);

        let metrics = Arc::new(Metrics::default());
        metrics.beat();
        start_health_servers(&cfg, &metrics);

        let dataplane = Dataplane::new(&cfg)?;
        let calc = new_calculator(&cfg);
        let (tx, rx) = mpsc::channel();
        let syncer = Syncer {
            store: store.clone(),
            tx: tx.clone(),
            metrics: metrics.clone(),
        };
        std::thread::Builder::new()
            .name("syncer".into())
            .spawn(move || syncer.run())?;
        let status = StatusThread::spawn(
            StatusReporter::new(
                store.clone(),
                &cfg.region_segment(),
                &cfg.node_name,
                Duration::from_secs(cfg.args.reporting_interval_secs.max(1)),
                started,
            ),
            Some(NodeConditions::new(Client::new(store), &cfg.node_name)),
        )?;
        let resync_every = Duration::from_secs(cfg.args.resync_interval_secs.max(1));
        let status_every = Duration::from_secs(cfg.args.reporting_interval_secs.max(1));
        let run_dir = cfg.args.run_dir.clone();
        let node_name = cfg.node_name.clone();
        let agent = Agent {
            cfg,
            client,
            ipam,
            metrics,
            calc,
            dataplane,
            bgp: Bgp::new(tx, run_dir),
            status,
            counts: ObjectCounts::default(),
            wep_ids: BTreeMap::new(),
            last_statuses: None,
            last_conditions: None,
            calc_in_sync: false,
            dirty: false,
            batch_inputs: 0,
            pools_changed: false,
            resync_every,
            status_every,
            next_resync: Instant::now() + resync_every,
            next_status: Instant::now(),
            retry_at: None,
            resynced: false,
            last_bgp: None,
            last_routes: None,
            next_routes_report: Instant::now(),
            node_status: crate::nodestatus::Reports::new(&node_name),
        };
        Ok((agent, rx))
    }

    /// How long the loop may sleep before a timer is due.
    fn time_to_wake(&self) -> Duration {
        let mut wake = self.next_resync.min(self.next_status);
        if let Some(r) = self.retry_at {
            wake = wake.min(r);
        }
        let mut sleep = wake.saturating_duration_since(Instant::now());
        if self.bgp.intent().is_some() {
            // Session changes are published within a second.
            sleep = sleep.min(Duration::from_secs(1));
        }
        sleep
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Sync(SyncMsg::Inputs(inputs)) => {
                self.batch_inputs += inputs.len();
                for i in inputs {
                    self.pools_changed |= matches!(
                        &i,
                        Input::Resource(AnyResource::IPPool(_))
                            | Input::ResourceRemoved { kind: "IPPool", .. }
                    );
                    track_wep(&self.cfg.node_name, &i, &mut self.wep_ids);
                    self.node_status.on_input(&i);
                    self.calc.on_input(i);
                }
            }
            Event::Sync(SyncMsg::Disconnected(e)) => {
                self.metrics.in_sync.store(false, Ordering::Relaxed);
                warn!(error = %e, "lost the datastore; dataplane left as it is");
            }
            Event::Sync(SyncMsg::InSync) => self.metrics.in_sync.store(true, Ordering::Relaxed),
            Event::BgpRoutes(changes) => {
                self.dataplane
                    .set_learned(self.bgp.kernel_changes(&changes));
                self.dirty = true;
            }
        }
    }

    /// Runs the calculation over the batch and hands its output to the
    /// dataplane and the BGP speaker; returns how many updates it made.
    fn flush_calculation(&mut self) -> usize {
        if std::mem::take(&mut self.pools_changed) {
            // A VXLAN pool appeared or went: claim or release the tunnel
            // address (the Node update comes back through the watch).
            ensure_tunnel_address(&self.client, &self.ipam, &self.cfg.node_name);
        }
        for w in self.calc.take_warnings() {
            warn!("{w}");
        }
        let updates = self.calc.flush();
        for u in &updates {
            self.counts.observe(u);
            if matches!(u, Update::InSync) {
                self.calc_in_sync = true;
            }
            self.dataplane.on_update(u);
        }
        self.dirty |= !updates.is_empty();
        self.counts.publish(&self.metrics);
        // BGP starts from a complete snapshot only, like the dataplane.
        if self.calc_in_sync {
            if let Some(intent) = self.calc.take_bgp_intent() {
                let statics = self.bgp.on_intent(intent);
                if !statics.is_empty() {
                    self.dataplane.set_learned(statics);
                    self.dirty = true;
                }
            }
            if self.bgp.poll_converged() {
                self.dataplane.learned_converged();
            }
        }
        updates.len()
    }

    fn run_timers(&mut self) {
        let now = Instant::now();
        self.resynced = false;
        if now >= self.next_resync {
            self.next_resync = now + self.resync_every;
            if self.calc_in_sync {
                self.resynced = self.dataplane.resync();
                self.dirty = true;
            }
        }
        if self.retry_at.is_some_and(|r| now >= r) {
            self.retry_at = None;
            self.dirty = true;
        }
    }

    /// Never program a partial snapshot: wait for the first in-sync.
    fn due(&self) -> bool {
        self.dirty && self.calc_in_sync
    }

    /// Programs the kernel and reports what changed; true when `--once`
    /// is done.
    fn apply(&mut self, received: (SystemTime, Instant), updates: usize) -> bool {
        let calc_time = received.1.elapsed();
        let t = Instant::now();
        let failed = match self.dataplane.apply() {
            Ok(_) => false,
            Err(e) => {
                error!(error = %e, "dataplane apply failed; will retry");
                true
            }
        };
        self.metrics
            .last_apply_micros
            .set(t.elapsed().as_micros() as u64);
        self.metrics.applies.inc();
        // Where the time of a change goes (calico-bench latency reads it).
        debug!(
            inputs = std::mem::take(&mut self.batch_inputs),
            updates,
            resync = self.resynced,
            recv_unix_us = received
                .0
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_micros())
                .unwrap_or(0),
            calc_ms = calc_time.as_secs_f64() * 1e3,
            nft_ms = self.dataplane.last_policy_time.as_secs_f64() * 1e3,
            routes_ms = self.dataplane.last_routing_time.as_secs_f64() * 1e3,
            "batch applied"
        );
        if failed {
            self.metrics.apply_errors.inc();
            self.retry_at = Some(Instant::now() + Duration::from_millis(500));
        } else {
            self.metrics.applied_once.store(true, Ordering::Relaxed);
            if self.dataplane.has_pending() {
                // E.g. a tap device not created yet: look again soon.
                self.retry_at = Some(Instant::now() + Duration::from_millis(250));
            }
        }
        self.dirty = false;
        self.report_changes();
        if self.cfg.args.once && !failed {
            self.status.send(Report {
                liveness: true,
                ..Default::default()
            });
            self.status.finish();
            return true;
        }
        false
    }

    /// Endpoint statuses and conditions, written now if they changed.
    fn report_changes(&mut self) {
        let statuses = with_status_ids(self.dataplane.endpoint_statuses(), &self.wep_ids);
        let conds = self.dataplane.conditions();
        self.metrics
            .set_conditions(conditions::count_by_type(&conds));
        let conds = conditions::for_node(&conds);
        if self.last_statuses.as_ref() != Some(&statuses)
            || self.last_conditions.as_ref() != Some(&conds)
        {
            self.status.send(Report {
                liveness: false,
                endpoints: Some(statuses.clone()),
                conditions: Some(conds.clone()),
                ..Default::default()
            });
            self.last_statuses = Some(statuses);
            self.last_conditions = Some(conds);
        }
    }

    /// Everything again on the reporting interval: a write that failed
    /// last time is retried, and the liveness key refreshed.
    fn report_periodically(&mut self) {
        if Instant::now() < self.next_status {
            return;
        }
        self.next_status = Instant::now() + self.status_every;
        self.status.send(Report {
            liveness: true,
            endpoints: self.last_statuses.clone(),
            conditions: self.last_conditions.clone(),
            bgp: self
                .bgp
                .sessions()
                .map(|s| crate::bgp::status_json(&self.cfg.node_name, &s)),
            bgp_routes: None,
        });
        // Written again at the next look: a renewed lease drops old keys.
        self.last_routes = None;
    }
}

impl Agent {
    /// Writes the BGP status as soon as a session changes state.
    fn report_bgp_changes(&mut self) {
        let Some(s) = self.bgp.sessions() else {
            self.metrics
                .bgp
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            return;
        };
        *self.metrics.bgp.lock().unwrap_or_else(|e| e.into_inner()) = crate::bgp::metrics_text(&s);
        let states: Vec<_> = s.peers.iter().map(|p| (p.name.clone(), p.state)).collect();
        if self.last_bgp.as_ref() == Some(&states) {
            return;
        }
        self.last_bgp = Some(states);
        self.status.send(Report {
            bgp: Some(crate::bgp::status_json(&self.cfg.node_name, &s)),
            ..Default::default()
        });
    }

    /// CalicoNodeStatus resources for this node that are due.
    fn report_node_status(&mut self) {
        let bgp = &self.bgp;
        self.node_status.run(&self.client, || bgp.snapshot());
    }

    /// The routes each peer was sent and sent us, every few seconds while
    /// they change (a full snapshot of the speaker's table).
    fn report_bgp_routes(&mut self) {
        if Instant::now() < self.next_routes_report || self.bgp.intent().is_none() {
            return;
        }
        self.next_routes_report = Instant::now() + Duration::from_secs(5);
        let Some(snap) = self.bgp.snapshot() else {
            return;
        };
        let json = crate::bgp::routes_json(&self.cfg.node_name, &snap);
        // lastUpdated aside, unchanged routes are not written again.
        let body = json
            .split_once(",\"truncated\"")
            .map(|(_, b)| b.to_string());
        if body.is_some() && body == self.last_routes {
            return;
        }
        self.last_routes = body;
        self.status.send(Report {
            bgp_routes: Some(json),
            ..Default::default()
        });
    }
}

fn start_health_servers(cfg: &AgentConfig, metrics: &Arc<Metrics>) {
    let host = &cfg.args.health_host;
    let (health, prom) = (cfg.args.health_port, cfg.args.metrics_port);
    if health != 0 {
        crate::health::serve(
            format!("{host}:{health}"),
            metrics.clone(),
            true,
            prom == health,
        );
    }
    if prom != 0 && prom != health {
        crate::health::serve(format!("{host}:{prom}"), metrics.clone(), false, true);
    }
}

fn new_calculator(cfg: &AgentConfig) -> Calculator {
    let mut calc = Calculator::new(HostIdentity {
        node_name: cfg.node_name.clone(),
        node_ip: cfg.node_ip(),
    });
    calc.set_env_overrides(cfg.felix_env.clone());
    // As upstream's confd: the BGP router ID is the node's IPv4 address
    // unless CALICO_ROUTER_ID gives one (or "hash").
    if let Ok(v) = std::env::var("CALICO_ROUTER_ID") {
        match calico_calc::bgp::RouterId::parse(&v) {
            Ok(r) => calc.set_bgp_router_id(r),
            Err(e) => warn!("{e}; using the node's IPv4 address"),
        }
    }
    calc
}

/// Keys endpoint statuses by the orchestrator identity their status keys
/// use (endpoints without one have no key).
fn with_status_ids(
    statuses: BTreeMap<EndpointKey, EndpointStatus>,
    ids: &BTreeMap<EndpointKey, EndpointStatusId>,
) -> BTreeMap<EndpointStatusId, EndpointStatus> {
    statuses
        .into_iter()
        .filter_map(|(k, s)| Some((ids.get(&k)?.clone(), s)))
        .collect()
}

/// Remembers orchestrator/workload/endpoint of this host's WorkloadEndpoints.
fn track_wep(node: &str, input: &Input, ids: &mut BTreeMap<EndpointKey, EndpointStatusId>) {
    match input {
        Input::Resource(AnyResource::WorkloadEndpoint(w)) if w.spec.node == node => {
            let key = EndpointKey {
                namespace: w.metadata.namespace.clone(),
                name: w.metadata.name.clone(),
            };
            let id = EndpointStatusId::for_workload_endpoint(
                &w.metadata.namespace,
                &w.metadata.name,
                &w.spec.orchestrator,
                &w.spec.workload,
                &w.spec.endpoint,
            );
            ids.insert(key, id);
        }
        Input::ResourceRemoved {
            kind: "WorkloadEndpoint",
            namespace,
            name,
        } => {
            ids.remove(&EndpointKey {
                namespace: namespace.clone(),
                name: name.clone(),
            });
        }
        _ => {}
    }
}

/// Keeps this node's VXLAN tunnel address in step with the pools; failures
/// are logged and retried on the next pool change or restart.
fn ensure_tunnel_address(client: &Client, ipam: &calico_ipam::Ipam, node: &str) {
    match calico_ipam::tunnel::ensure_vxlan_tunnel_address(client, ipam, node) {
        Ok(Some(ip)) => info!(%ip, "VXLAN tunnel address"),
        Ok(None) => {}
        Err(e) => warn!(error = %e, "cannot allocate the VXLAN tunnel address"),
    }
}
