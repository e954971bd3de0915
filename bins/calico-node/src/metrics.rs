//! Counters and gauges the agent exposes on /metrics (Prometheus text), and
//! the liveness/readiness flags behind /liveness and /readiness.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Metrics {
    pub local_endpoints: Gauge,
    pub active_policies: Gauge,
    pub active_rules: Gauge,
    pub ip_sets: Gauge,
    pub routes: Gauge,
    /// Last apply duration in microseconds.
    pub last_apply_micros: Gauge,
    pub applies: Counter,
    pub apply_errors: Counter,
    pub datastore_errors: Counter,
    pub bad_datastore_values: Counter,
    /// Unix seconds of the main loop's last turn (liveness).
    pub heartbeat: Gauge,
    pub in_sync: AtomicBool,
    pub applied_once: AtomicBool,
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Metrics {
    pub fn beat(&self) {
        self.heartbeat.set(now_secs());
    }
    /// Live while the main loop has turned within the last 60 s.
    pub fn live(&self) -> bool {
        now_secs().saturating_sub(self.heartbeat.get()) < 60
    }
    /// Ready once in sync with the datastore and the dataplane applied.
    pub fn ready(&self) -> bool {
        self.in_sync.load(Ordering::Relaxed) && self.applied_once.load(Ordering::Relaxed)
    }

    pub fn render(&self) -> String {
        let in_sync = if self.in_sync.load(Ordering::Relaxed) {
            1.0
        } else {
            0.0
        };
        // (name, help, type, value), in the order Prometheus shows them.
        let series: [(&str, &str, &str, f64); 11] = [
            (
                "felix_active_local_endpoints",
                "Local workload endpoints.",
                "gauge",
                self.local_endpoints.get() as f64,
            ),
            (
                "felix_active_local_policies",
                "Policies and profiles active on this host.",
                "gauge",
                self.active_policies.get() as f64,
            ),
            (
                "felix_active_local_rules",
                "Rules of the active policies and profiles.",
                "gauge",
                self.active_rules.get() as f64,
            ),
            (
                "felix_ipsets_calico",
                "IP sets programmed.",
                "gauge",
                self.ip_sets.get() as f64,
            ),
            (
                "felix_routes",
                "Routes in the desired state.",
                "gauge",
                self.routes.get() as f64,
            ),
            (
                "felix_int_dataplane_apply_time_seconds",
                "Duration of the last dataplane apply.",
                "gauge",
                self.last_apply_micros.get() as f64 / 1e6,
            ),
            (
                "felix_int_dataplane_applies_total",
                "Dataplane applies.",
                "counter",
                self.applies.get() as f64,
            ),
            (
                "felix_int_dataplane_failures_total",
                "Failed dataplane applies (retried).",
                "counter",
                self.apply_errors.get() as f64,
            ),
            (
                "felix_datastore_errors_total",
                "Datastore connection errors.",
                "counter",
                self.datastore_errors.get() as f64,
            ),
            (
                "felix_datastore_bad_values_total",
                "Datastore values skipped because they do not decode.",
                "counter",
                self.bad_datastore_values.get() as f64,
            ),
            (
                "felix_resync_state",
                "1 when in sync with the datastore.",
                "gauge",
                in_sync,
            ),
        ];
        series
            .iter()
            .map(|(name, help, kind, v)| {
                format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n")
            })
            .collect()
    }
}
