//! Counters and gauges the agent exposes on /metrics (Prometheus text), and
//! the liveness/readiness flags behind /liveness and /readiness.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use calico_calc::model::{EndpointKey, IpSetId, Update};
use ipnet::IpNet;

use crate::conditions::CONDITION_TYPES;

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
    /// Current dataplane conditions per type (`CONDITION_TYPES` order).
    pub conditions: Mutex<Vec<(&'static str, u64)>>,
    /// The BGP series, rendered by the agent from the speaker's status
    /// (empty while BGP is off).
    pub bgp: Mutex<String>,
}

/// The objects the update stream has made current, each counted once
/// however often it is re-sent or changed (an endpoint's labels changing
/// re-sends the endpoint; a selector's members changing re-sends its set).
#[derive(Default)]
pub struct ObjectCounts {
    endpoints: BTreeSet<EndpointKey>,
    /// Policy or profile -> its rule count.
    policies: BTreeMap<String, usize>,
    ip_sets: BTreeSet<IpSetId>,
    routes: BTreeSet<IpNet>,
}

impl ObjectCounts {
    pub fn observe(&mut self, u: &Update) {
        match u {
            Update::EndpointUpsert(ep) => {
                self.endpoints.insert(ep.key.clone());
            }
            Update::EndpointRemove(k) => {
                self.endpoints.remove(k);
            }
            Update::PolicyUpsert(p) => {
                self.policies
                    .insert(p.id.to_string(), p.inbound.len() + p.outbound.len());
            }
            Update::PolicyRemove(id) => {
                self.policies.remove(&id.to_string());
            }
            Update::IpSetUpsert { id, .. } | Update::IpSetDelta { id, .. } => {
                self.ip_sets.insert(id.clone());
            }
            Update::IpSetRemove { id } => {
                self.ip_sets.remove(id);
            }
            Update::RouteUpsert(r) => {
                self.routes.insert(r.dst);
            }
            Update::RouteRemove { dst } => {
                self.routes.remove(dst);
            }
            _ => {}
        }
    }

    /// Sets the gauges.
    pub fn publish(&self, m: &Metrics) {
        m.local_endpoints.set(self.endpoints.len() as u64);
        m.active_policies.set(self.policies.len() as u64);
        m.active_rules
            .set(self.policies.values().sum::<usize>() as u64);
        m.ip_sets.set(self.ip_sets.len() as u64);
        m.routes.set(self.routes.len() as u64);
    }
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

    pub fn set_conditions(&self, by_type: Vec<(&'static str, u64)>) {
        *self.conditions.lock().unwrap_or_else(|e| e.into_inner()) = by_type;
    }

    /// One labelled series per condition type, 0 when none (so an alert
    /// can match on the series being above 0).
    fn render_conditions(&self) -> String {
        let current = self
            .conditions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let name = "felix_dataplane_conditions";
        let mut s = format!(
            "# HELP {name} Dataplane conditions by type (e.g. a pool needing a kernel feature this host lacks).\n# TYPE {name} gauge\n"
        );
        for t in CONDITION_TYPES {
            let n = current.iter().find(|(k, _)| *k == t).map_or(0, |(_, n)| *n);
            s.push_str(&format!("{name}{{type=\"{t}\"}} {n}\n"));
        }
        s
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
        let mut out: String = series
            .iter()
            .map(|(name, help, kind, v)| {
                format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n")
            })
            .collect();
        out.push_str(&self.render_conditions());
        out.push_str(&self.bgp.lock().unwrap_or_else(|e| e.into_inner()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calico_api::decode::decode_documents;
    use calico_calc::input::{HostIdentity, Input};
    use calico_calc::Calculator;

    fn resources(yaml: &str) -> Vec<Input> {
        decode_documents(yaml)
            .unwrap()
            .into_iter()
            .map(|d| Input::Resource(d.resource))
            .collect()
    }

    fn wep(name: &str, ip: &str, color: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: h1-openstack-{name}-tap{name}\n  namespace: prod\n  labels:\n    color: {color}\nspec:\n  orchestrator: openstack\n  node: h1\n  workload: vm{name}\n  endpoint: tap{name}\n  interfaceName: tap{name}\n  ipNetworks: [{ip}/32]\n"
        )
    }

    const POLICY: &str = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: reds\n  namespace: prod\nspec:\n  selector: all()\n  ingress:\n  - action: Allow\n    source:\n      selector: color == 'red'\n  - action: Allow\n    source:\n      selector: color == 'blue'\n";

    fn gauge_line(m: &Metrics, name: &str) -> String {
        m.render()
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap()
            .to_string()
    }

    #[test]
    fn gauges_count_distinct_objects_however_often_they_change() {
        let mut calc = Calculator::new(HostIdentity {
            node_name: "h1".into(),
            node_ip: None,
        });
        let mut counts = ObjectCounts::default();
        let m = Metrics::default();
        let mut feed = |calc: &mut Calculator, inputs: Vec<Input>| {
            for i in inputs {
                calc.on_input(i);
            }
            for u in calc.flush() {
                counts.observe(&u);
            }
            counts.publish(&m);
        };
        let mut first = resources(POLICY);
        first.extend(resources(&wep("1", "10.0.0.1", "red")));
        first.extend(resources(&wep("2", "10.0.0.2", "blue")));
        first.push(Input::InSync);
        feed(&mut calc, first);
        let ip_sets_at_start = m.ip_sets.get();
        assert!(ip_sets_at_start >= 2, "the two selectors' sets");
        // Labels change 50 times: each change re-sends the endpoint and
        // changes the sets' members, and nothing is counted twice.
        for round in 0..50 {
            let color = if round % 2 == 0 { "blue" } else { "red" };
            feed(&mut calc, resources(&wep("1", "10.0.0.1", color)));
        }
        assert_eq!(m.local_endpoints.get(), 2);
        assert_eq!(m.active_policies.get(), 1);
        assert_eq!(m.active_rules.get(), 2);
        assert_eq!(m.ip_sets.get(), ip_sets_at_start);
        assert_eq!(
            gauge_line(&m, "felix_active_local_endpoints"),
            "felix_active_local_endpoints 2"
        );
        // Removal is counted once too, also when re-sent.
        for _ in 0..3 {
            feed(
                &mut calc,
                vec![Input::ResourceRemoved {
                    kind: "WorkloadEndpoint",
                    namespace: "prod".into(),
                    name: "h1-openstack-2-tap2".into(),
                }],
            );
        }
        assert_eq!(m.local_endpoints.get(), 1);
    }

    #[test]
    fn condition_series_are_labelled_by_type_and_present_when_zero() {
        let m = Metrics::default();
        let text = m.render();
        assert!(
            text.contains("felix_dataplane_conditions{type=\"MissingKernelFeature\"} 0\n"),
            "{text}"
        );
        m.set_conditions(vec![("MissingKernelFeature", 1), ("RoutesPending", 0)]);
        let text = m.render();
        assert!(
            text.contains("felix_dataplane_conditions{type=\"MissingKernelFeature\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("felix_dataplane_conditions{type=\"VxlanPending\"} 0\n"));
    }
}
