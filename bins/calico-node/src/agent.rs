//! The agent's main loop: one thread owns the calculation and the
//! dataplane managers; the syncer thread feeds it. Changes are applied as
//! soon as they arrive (a burst is drained into one batch first), drift is
//! checked on a timer, and a lost datastore leaves the dataplane as it is.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};
use calico_api::AnyResource;
use calico_calc::input::{HostIdentity, Input};
use calico_calc::model::{EndpointKey, Update};
use calico_calc::Calculator;
use calico_client::{load_client_config, Client};
use tracing::{debug, error, info, warn};

use crate::conditions::{self, NodeConditions};
use crate::config::AgentConfig;
use crate::metrics::{Metrics, ObjectCounts};
use crate::status::{EndpointStatus, EndpointStatusId, Report, StatusReporter, StatusThread};
use crate::syncer::{SyncMsg, Syncer};

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
    let host = &cfg.args.health_host;
    if cfg.args.health_port != 0 {
        crate::health::serve(
            format!("{host}:{}", cfg.args.health_port),
            metrics.clone(),
            true,
            cfg.args.metrics_port == cfg.args.health_port,
        );
    }
    if cfg.args.metrics_port != 0 && cfg.args.metrics_port != cfg.args.health_port {
        crate::health::serve(
            format!("{host}:{}", cfg.args.metrics_port),
            metrics.clone(),
            false,
            true,
        );
    }

    let mut dataplane = crate::dataplane::Dataplane::new(&cfg)?;
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

    let (tx, rx) = mpsc::channel();
    let syncer = Syncer {
        store: store.clone(),
        tx,
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
    let mut counts = ObjectCounts::default();
    // Local endpoints' orchestrator identity, for their status keys.
    let mut wep_ids: BTreeMap<EndpointKey, EndpointStatusId> = BTreeMap::new();
    // Endpoint statuses and Node conditions as last sent (None before the
    // first apply: nothing is known yet, so nothing is written or removed).
    let mut last_statuses: Option<BTreeMap<EndpointStatusId, EndpointStatus>> = None;
    let mut last_conditions: Option<Vec<String>> = None;
    let mut calc_in_sync = false;
    let mut dirty = false;
    let resync_every = Duration::from_secs(cfg.args.resync_interval_secs.max(1));
    let status_every = Duration::from_secs(cfg.args.reporting_interval_secs.max(1));
    let mut next_resync = Instant::now() + resync_every;
    let mut next_status = Instant::now();
    let mut retry_at: Option<Instant> = None;

    loop {
        metrics.beat();
        let now = Instant::now();
        let mut wake = next_resync.min(next_status);
        if let Some(r) = retry_at {
            wake = wake.min(r);
        }
        let first = match rx.recv_timeout(wake.saturating_duration_since(now)) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(anyhow!("the syncer thread stopped"))
            }
        };
        // When this batch arrived, for the per-batch debug line below.
        let received = (SystemTime::now(), Instant::now());
        let mut batch_inputs = 0usize;
        let mut msgs: Vec<SyncMsg> = first.into_iter().collect();
        let mut pools_changed = false;
        msgs.extend(rx.try_iter());
        for m in msgs {
            match m {
                SyncMsg::Inputs(inputs) => {
                    batch_inputs += inputs.len();
                    for i in inputs {
                        pools_changed |= matches!(
                            &i,
                            Input::Resource(AnyResource::IPPool(_))
                                | Input::ResourceRemoved { kind: "IPPool", .. }
                        );
                        track_wep(&cfg.node_name, &i, &mut wep_ids);
                        calc.on_input(i);
                    }
                }
                SyncMsg::Disconnected(e) => {
                    metrics.in_sync.store(false, Ordering::Relaxed);
                    warn!(error = %e, "lost the datastore; dataplane left as it is");
                }
                SyncMsg::InSync => metrics.in_sync.store(true, Ordering::Relaxed),
            }
        }
        if pools_changed {
            // A VXLAN pool appeared or went: claim or release the tunnel
            // address (the Node update comes back through the watch).
            ensure_tunnel_address(&client, &ipam, &cfg.node_name);
        }
        for w in calc.take_warnings() {
            warn!("{w}");
        }
        let updates = calc.flush();
        for u in &updates {
            counts.observe(u);
            if matches!(u, Update::InSync) {
                calc_in_sync = true;
            }
            dataplane.on_update(u);
        }
        dirty |= !updates.is_empty();
        let calc_time = received.1.elapsed();
        counts.publish(&metrics);

        let now = Instant::now();
        let mut resynced = false;
        if now >= next_resync {
            next_resync = now + resync_every;
            if calc_in_sync {
                resynced = dataplane.resync();
                dirty = true;
            }
        }
        if retry_at.is_some_and(|r| now >= r) {
            retry_at = None;
            dirty = true;
        }
        // Never program a partial snapshot: wait for the first in-sync.
        if dirty && calc_in_sync {
            let t = Instant::now();
            let mut failed = false;
            if let Err(e) = dataplane.apply() {
                failed = true;
                error!(error = %e, "dataplane apply failed; will retry");
            }
            metrics
                .last_apply_micros
                .set(t.elapsed().as_micros() as u64);
            metrics.applies.inc();
            // Where the time of a change goes (calico-bench latency reads it).
            debug!(
                inputs = batch_inputs,
                updates = updates.len(),
                resync = resynced,
                recv_unix_us = received
                    .0
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_micros())
                    .unwrap_or(0),
                calc_ms = calc_time.as_secs_f64() * 1e3,
                nft_ms = dataplane.last_policy_time.as_secs_f64() * 1e3,
                routes_ms = dataplane.last_routing_time.as_secs_f64() * 1e3,
                "batch applied"
            );
            if failed {
                metrics.apply_errors.inc();
                retry_at = Some(Instant::now() + Duration::from_millis(500));
            } else {
                metrics.applied_once.store(true, Ordering::Relaxed);
                if dataplane.has_pending() {
                    // E.g. a tap device not created yet: look again soon.
                    retry_at = Some(Instant::now() + Duration::from_millis(250));
                }
            }
            dirty = false;
            let statuses = with_status_ids(dataplane.endpoint_statuses(), &wep_ids);
            let conds = dataplane.conditions();
            metrics.set_conditions(conditions::count_by_type(&conds));
            let conds = conditions::for_node(&conds);
            if last_statuses.as_ref() != Some(&statuses) || last_conditions.as_ref() != Some(&conds)
            {
                // Changed: written now, not at the next periodic report.
                status.send(Report {
                    liveness: false,
                    endpoints: Some(statuses.clone()),
                    conditions: Some(conds.clone()),
                });
                last_statuses = Some(statuses);
                last_conditions = Some(conds);
            }
            if cfg.args.once && !failed {
                status.send(Report {
                    liveness: true,
                    ..Default::default()
                });
                status.finish();
                info!("--once: synced and applied; exiting");
                return Ok(());
            }
        }
        if Instant::now() >= next_status {
            next_status = Instant::now() + status_every;
            // Everything again: a write that failed last time is retried.
            status.send(Report {
                liveness: true,
                endpoints: last_statuses.clone(),
                conditions: last_conditions.clone(),
            });
        }
    }
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
