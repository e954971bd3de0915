//! Status written back to the datastore, at upstream's keys and in
//! upstream's encoding: the agent's liveness (`.../host/<host>/status`
//! under a lease, so it disappears when the agent dies, and
//! `last_reported_status`), and per-endpoint status that the OpenStack
//! driver turns into Neutron port status.

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use calico_datastore::{Datastore, LeaseId};
use tracing::{info, warn};

use crate::conditions::NodeConditions;

/// Identity of a local workload endpoint as its status key needs it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointStatusId {
    pub orchestrator: String,
    pub workload: String,
    pub endpoint: String,
}

impl EndpointStatusId {
    /// The identity upstream Felix keys a v3 WorkloadEndpoint's status by:
    /// taken from its name (`<node>-<orchestrator>-<workload>-<endpoint>`,
    /// `-` inside a part doubled), the workload prefixed with the namespace
    /// (`openstack/<device id>`). A name that does not split into four
    /// parts falls back to the spec's fields.
    pub fn for_workload_endpoint(
        namespace: &str,
        name: &str,
        orchestrator: &str,
        workload: &str,
        endpoint: &str,
    ) -> EndpointStatusId {
        let parts = split_name(name);
        let (orchestrator, workload, endpoint) = match parts.as_slice() {
            [_, o, w, e] => (o.as_str(), w.as_str(), e.as_str()),
            _ => (orchestrator, workload, endpoint),
        };
        EndpointStatusId {
            orchestrator: orchestrator.to_string(),
            workload: format!("{namespace}/{workload}"),
            endpoint: endpoint.to_string(),
        }
    }
}

/// Splits a WorkloadEndpoint name at single dashes (a doubled dash is a
/// dash inside a part), as upstream and the OpenStack driver do.
fn split_name(name: &str) -> Vec<String> {
    calico_api::endpoint::split_workload_endpoint_name(name)
}

/// What the OpenStack driver maps to Neutron port status (ACTIVE, DOWN,
/// ERROR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointStatus {
    /// Interface there; its routes, sysctls and chains in the kernel.
    Up,
    /// Interface missing or down.
    Down,
    /// Programming it failed (retried).
    Error,
}

impl EndpointStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointStatus::Up => "up",
            EndpointStatus::Down => "down",
            EndpointStatus::Error => "error",
        }
    }

    /// The key's value as upstream encodes it.
    fn value(self) -> String {
        format!(r#"{{"status":"{}"}}"#, self.as_str())
    }
}

/// Escapes an id for one segment of a status key as upstream does (`%` as
/// `%25` first, then `/` as `%2f`), so a `/` in a name cannot add a level.
pub fn escape_segment(id: &str) -> String {
    id.replace('%', "%25").replace('/', "%2f")
}

/// Formats a float as Go's `encoding/json` does for the values we write:
/// shortest round-trip digits, no trailing `.0`, exponent form only below
/// 1e-6 or from 1e21 (`5e-07`, two exponent digits at least).
pub fn go_json_float(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || (1e-6..1e21).contains(&a) {
        return format!("{v}");
    }
    let s = format!("{v:e}");
    let (mantissa, exp) = s.split_once('e').expect("exponent form");
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exp),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

/// The value of the agent status keys: `{"time","uptime","first_update"}`
/// in upstream's field order, time as RFC 3339 UTC seconds.
pub fn felix_status_value(time: &str, uptime_secs: f64, first_update: bool) -> String {
    format!(
        r#"{{"time":{},"uptime":{},"first_update":{first_update}}}"#,
        serde_json::Value::from(time),
        go_json_float(uptime_secs)
    )
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub struct StatusReporter {
    store: Arc<dyn Datastore>,
    node: String,
    host_prefix: String,
    ttl: Duration,
    started: Instant,
    /// Set once a status key write succeeded: networking-calico reads a
    /// true `first_update` as "the agent restarted".
    first_report_sent: bool,
    lease: Option<LeaseId>,
    /// Endpoint status keys as the datastore holds them (as far as we know).
    written: BTreeMap<String, String>,
    /// When `written` was last replaced by a listing of the host's keys (so
    /// keys left by an earlier run, or changed behind our back, are known
    /// and repaired); `None` before the first.
    listed_at: Option<Instant>,
    /// How often to list again.
    relist_every: Duration,
}

impl StatusReporter {
    /// `started`: when the process started (the reported uptime).
    pub fn new(
        store: Arc<dyn Datastore>,
        region: &str,
        host: &str,
        interval: Duration,
        started: Instant,
    ) -> StatusReporter {
        StatusReporter {
            store,
            node: host.to_string(),
            host_prefix: format!("/calico/felix/v2/{region}/host/{host}"),
            ttl: interval.mul_f64(2.5).max(Duration::from_secs(5)),
            started,
            first_report_sent: false,
            lease: None,
            written: BTreeMap::new(),
            listed_at: None,
            relist_every: interval * 10,
        }
    }

    pub fn status_key(&self) -> String {
        format!("{}/status", self.host_prefix)
    }

    fn endpoint_prefix(&self) -> String {
        format!("{}/workload/", self.host_prefix)
    }

    pub fn endpoint_key(&self, id: &EndpointStatusId) -> String {
        format!(
            "{}{}/{}/endpoint/{}",
            self.endpoint_prefix(),
            escape_segment(&id.orchestrator),
            escape_segment(&id.workload),
            escape_segment(&id.endpoint)
        )
    }

    /// A live lease for the status key: kept alive, or a new one.
    fn lease(&mut self) -> Option<LeaseId> {
        if let Some(l) = self.lease {
            if self.store.keep_alive(l).is_ok() {
                return Some(l);
            }
        }
        match self.store.grant_lease(self.ttl) {
            Ok(l) => {
                self.lease = Some(l);
                Some(l)
            }
            Err(e) => {
                warn!(error = %e, "cannot grant the status lease");
                None
            }
        }
    }

    /// Writes the liveness status (leased) and `last_reported_status`.
    pub fn report(&mut self) {
        let value = felix_status_value(
            &now(),
            self.started.elapsed().as_secs_f64(),
            !self.first_report_sent,
        );
        let Some(lease) = self.lease() else { return };
        if let Err(e) = self
            .store
            .put(&self.status_key(), value.as_bytes(), Some(lease))
        {
            warn!(error = %e, "cannot write status");
            return;
        }
        self.first_report_sent = true;
        if let Err(e) = self.store.put(
            &format!("{}/last_reported_status", self.host_prefix),
            value.as_bytes(),
            None,
        ) {
            warn!(error = %e, "cannot write last_reported_status");
        }
    }

    /// Learns the endpoint status keys this host has in the datastore, so
    /// that those of endpoints gone while the agent was down are removed
    /// (and, listed again now and then, keys changed or deleted by others
    /// are put right).
    fn list_existing(&mut self) {
        match self.store.list(&self.endpoint_prefix()) {
            Ok(l) => {
                self.written = l
                    .kvs
                    .into_iter()
                    .map(|kv| {
                        let v = String::from_utf8_lossy(&kv.value).into_owned();
                        (kv.key, v)
                    })
                    .collect();
                self.listed_at = Some(Instant::now());
            }
            Err(e) => warn!(error = %e, "cannot list endpoint status keys; will retry"),
        }
    }

    /// Makes this host's endpoint status keys exactly `statuses`: writes new
    /// and changed ones, deletes the others (also those from before a
    /// restart). Failed writes are retried on the next call.
    /// The BGP status under the liveness lease, so it goes when the agent
    /// does (`calicoctl node status` then says the process is not running).
    pub fn report_bgp(&mut self, json: &str) {
        let key = calico_client::keys::bgp_status_key(&self.node);
        let lease = self.lease();
        if let Err(e) = self.store.put(&key, json.as_bytes(), lease) {
            warn!(%key, error = %e, "cannot write the BGP status");
        }
    }

    /// The BGP routes, under the liveness lease too.
    pub fn report_bgp_routes(&mut self, json: &str) {
        let key = calico_client::keys::bgp_routes_key(&self.node);
        let lease = self.lease();
        if let Err(e) = self.store.put(&key, json.as_bytes(), lease) {
            warn!(%key, error = %e, "cannot write the BGP routes");
        }
    }

    pub fn report_endpoints(&mut self, statuses: &BTreeMap<EndpointStatusId, EndpointStatus>) {
        if self
            .listed_at
            .is_none_or(|t| t.elapsed() >= self.relist_every)
        {
            self.list_existing();
        }
        let desired: BTreeMap<String, String> = statuses
            .iter()
            .map(|(id, s)| (self.endpoint_key(id), s.value()))
            .collect();
        let stale: Vec<String> = self
            .written
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .cloned()
            .collect();
        for k in stale {
            match self.store.delete(&k, None) {
                Ok(_) => {
                    info!(key = %k, "endpoint status removed");
                    self.written.remove(&k);
                }
                Err(calico_datastore::Error::NotFound { .. }) => {
                    self.written.remove(&k);
                }
                Err(e) => warn!(key = %k, error = %e, "cannot remove endpoint status"),
            }
        }
        for (k, v) in desired {
            if self.written.get(&k) == Some(&v) {
                continue;
            }
            match self.store.put(&k, v.as_bytes(), None) {
                Ok(_) => {
                    info!(key = %k, status = %v, "endpoint status");
                    self.written.insert(k, v);
                }
                Err(e) => warn!(key = %k, error = %e, "cannot write endpoint status"),
            }
        }
    }
}

/// One message to the status thread. `None` parts leave that part as it
/// is: endpoint statuses and conditions are only known after the first
/// apply, and until then nothing is written or removed.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub liveness: bool,
    pub endpoints: Option<BTreeMap<EndpointStatusId, EndpointStatus>>,
    pub conditions: Option<Vec<String>>,
    /// BGP status (JSON) for `calicoctl node status --node`.
    pub bgp: Option<String>,
    /// BGP routes (JSON) for `calicoctl node routes --node`.
    pub bgp_routes: Option<String>,
}

impl Report {
    /// Folds a newer report into this one (queued reports are coalesced).
    fn merge(&mut self, newer: Report) {
        self.liveness |= newer.liveness;
        if newer.endpoints.is_some() {
            self.endpoints = newer.endpoints;
        }
        if newer.conditions.is_some() {
            self.conditions = newer.conditions;
        }
        if newer.bgp.is_some() {
            self.bgp = newer.bgp;
        }
        if newer.bgp_routes.is_some() {
            self.bgp_routes = newer.bgp_routes;
        }
    }
}

/// A [`StatusReporter`] on its own thread: its datastore writes (the
/// liveness key, and one per endpoint that came up or went) never hold up
/// the agent's main loop, where a policy change would wait behind them
/// (a host gaining 1,000 endpoints wrote 1,000 keys in a row there).
/// Queued reports are coalesced. The main loop still sends every liveness
/// report, so a stuck loop stops the liveness reports as before.
pub struct StatusThread {
    tx: Option<mpsc::Sender<Report>>,
    handle: Option<JoinHandle<()>>,
}

impl StatusThread {
    pub fn spawn(
        mut reporter: StatusReporter,
        mut conditions: Option<NodeConditions>,
    ) -> std::io::Result<StatusThread> {
        let (tx, rx) = mpsc::channel::<Report>();
        let handle = std::thread::Builder::new()
            .name("status".into())
            .spawn(move || {
                while let Ok(mut r) = rx.recv() {
                    for newer in rx.try_iter() {
                        r.merge(newer);
                    }
                    if r.liveness {
                        reporter.report();
                    }
                    if let Some(eps) = &r.endpoints {
                        reporter.report_endpoints(eps);
                    }
                    if let Some(b) = &r.bgp {
                        reporter.report_bgp(b);
                    }
                    if let Some(b) = &r.bgp_routes {
                        reporter.report_bgp_routes(b);
                    }
                    if let (Some(c), Some(nc)) = (&r.conditions, conditions.as_mut()) {
                        nc.publish(c);
                    }
                }
            })?;
        Ok(StatusThread {
            tx: Some(tx),
            handle: Some(handle),
        })
    }

    pub fn send(&self, r: Report) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(r);
        }
    }

    /// Waits until every queued report is written; later reports are
    /// dropped.
    pub fn finish(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calico_datastore::LocalStore;

    fn store() -> (tempfile::TempDir, Arc<dyn Datastore>) {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path().join("db")).unwrap();
        (dir, Arc::new(s))
    }

    fn reporter(store: &Arc<dyn Datastore>) -> StatusReporter {
        StatusReporter::new(
            store.clone(),
            "no-region",
            "h1",
            Duration::from_secs(30),
            Instant::now(),
        )
    }

    fn id(workload: &str, endpoint: &str) -> EndpointStatusId {
        EndpointStatusId {
            orchestrator: "openstack".into(),
            workload: workload.into(),
            endpoint: endpoint.into(),
        }
    }

    fn value(store: &Arc<dyn Datastore>, key: &str) -> Option<String> {
        store
            .get(key)
            .unwrap()
            .map(|kv| String::from_utf8(kv.value).unwrap())
    }

    #[test]
    fn floats_are_encoded_as_go_encodes_them() {
        assert_eq!(go_json_float(0.0), "0");
        assert_eq!(go_json_float(10.0), "10");
        assert_eq!(go_json_float(12.5), "12.5");
        assert_eq!(go_json_float(0.000123), "0.000123");
        assert_eq!(go_json_float(5e-7), "5e-07");
        assert_eq!(go_json_float(1e21), "1e+21");
    }

    #[test]
    fn status_value_is_upstreams_shape_and_first_update_is_a_bool_set_once() {
        let (_d, s) = store();
        let mut r = reporter(&s);
        r.report();
        let first = value(&s, "/calico/felix/v2/no-region/host/h1/status").unwrap();
        let v: serde_json::Value = serde_json::from_str(&first).unwrap();
        assert_eq!(v["first_update"], serde_json::Value::Bool(true), "{first}");
        assert!(v["uptime"].is_number(), "{first}");
        let t = v["time"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(t).is_ok() && t.ends_with('Z') && t.len() == 20,
            "{first}"
        );
        // Field order as upstream's struct: time, uptime, first_update.
        assert!(first.starts_with(r#"{"time":""#), "{first}");
        assert!(first.contains(r#","uptime":"#), "{first}");
        assert!(first.ends_with(r#","first_update":true}"#), "{first}");
        assert_eq!(
            value(
                &s,
                "/calico/felix/v2/no-region/host/h1/last_reported_status"
            )
            .as_deref(),
            Some(first.as_str())
        );
        let key = s
            .get("/calico/felix/v2/no-region/host/h1/status")
            .unwrap()
            .unwrap();
        assert_ne!(key.lease, 0, "the status key is leased");

        r.report();
        let second = value(&s, "/calico/felix/v2/no-region/host/h1/status").unwrap();
        assert!(second.ends_with(r#","first_update":false}"#), "{second}");
        // A restarted agent (a new reporter) says so again, once.
        let mut restarted = reporter(&s);
        restarted.report();
        let third = value(&s, "/calico/felix/v2/no-region/host/h1/status").unwrap();
        assert!(third.ends_with(r#","first_update":true}"#), "{third}");
    }

    #[test]
    fn endpoint_identity_comes_from_the_name_as_upstream() {
        // As networking-calico names a port's endpoint.
        let id = EndpointStatusId::for_workload_endpoint(
            "openstack",
            "compute--1-openstack-8a1f--vm-port--9",
            "openstack",
            "8a1f-vm",
            "port-9",
        );
        assert_eq!(
            id,
            EndpointStatusId {
                orchestrator: "openstack".into(),
                workload: "openstack/8a1f-vm".into(),
                endpoint: "port-9".into(),
            }
        );
        let (_d, s) = store();
        assert_eq!(
            reporter(&s).endpoint_key(&id),
            "/calico/felix/v2/no-region/host/h1/workload/openstack/openstack%2f8a1f-vm/endpoint/port-9"
        );
        // A name not in that form: the spec's fields.
        let id = EndpointStatusId::for_workload_endpoint("ns", "web", "openstack", "w", "e");
        assert_eq!(id.workload, "ns/w");
        assert_eq!(split_name("a-b--c-d"), vec!["a", "b-c", "d"]);
        assert_eq!(split_name("-a"), vec!["-a"]);
    }

    #[test]
    fn endpoint_keys_escape_slash_and_percent_as_upstream() {
        let (_d, s) = store();
        let r = reporter(&s);
        assert_eq!(
            r.endpoint_key(&EndpointStatusId {
                orchestrator: "k8s".into(),
                workload: "ns/pod%1".into(),
                endpoint: "eth0".into(),
            }),
            "/calico/felix/v2/no-region/host/h1/workload/k8s/ns%2fpod%251/endpoint/eth0"
        );
    }

    #[test]
    fn endpoint_statuses_follow_the_desired_map_and_stale_keys_from_before_a_restart_go() {
        let (_d, s) = store();
        let prefix = "/calico/felix/v2/no-region/host/h1/workload/openstack";
        // Left by an earlier run: one endpoint since deleted, one still there.
        s.put(
            &format!("{prefix}/gone/endpoint/tapgone"),
            br#"{"status":"up"}"#,
            None,
        )
        .unwrap();
        s.put(
            &format!("{prefix}/vm1/endpoint/tap1"),
            br#"{"status":"up"}"#,
            None,
        )
        .unwrap();
        // Another host's key is not ours to touch.
        let other = "/calico/felix/v2/no-region/host/h2/workload/openstack/x/endpoint/tapx";
        s.put(other, br#"{"status":"up"}"#, None).unwrap();

        let mut r = reporter(&s);
        let mut want = BTreeMap::new();
        want.insert(id("vm1", "tap1"), EndpointStatus::Down);
        want.insert(id("vm2", "tap2"), EndpointStatus::Error);
        r.report_endpoints(&want);
        assert_eq!(value(&s, &format!("{prefix}/gone/endpoint/tapgone")), None);
        assert_eq!(
            value(&s, &format!("{prefix}/vm1/endpoint/tap1")).as_deref(),
            Some(r#"{"status":"down"}"#)
        );
        assert_eq!(
            value(&s, &format!("{prefix}/vm2/endpoint/tap2")).as_deref(),
            Some(r#"{"status":"error"}"#)
        );
        assert!(value(&s, other).is_some());

        want.insert(id("vm1", "tap1"), EndpointStatus::Up);
        want.remove(&id("vm2", "tap2"));
        r.report_endpoints(&want);
        assert_eq!(
            value(&s, &format!("{prefix}/vm1/endpoint/tap1")).as_deref(),
            Some(r#"{"status":"up"}"#)
        );
        assert_eq!(value(&s, &format!("{prefix}/vm2/endpoint/tap2")), None);
        let left: Vec<String> = s
            .list("/calico/felix/v2/no-region/host/h1/workload/")
            .unwrap()
            .kvs
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        assert_eq!(left, vec![format!("{prefix}/vm1/endpoint/tap1")]);
    }

    #[test]
    fn keys_changed_behind_our_back_are_put_right_at_the_next_listing() {
        let (_d, s) = store();
        let mut r = reporter(&s);
        let mut want = BTreeMap::new();
        want.insert(id("vm1", "tap1"), EndpointStatus::Up);
        r.report_endpoints(&want);
        let key = r.endpoint_key(&id("vm1", "tap1"));
        s.delete(&key, None).unwrap();
        let foreign = format!("{}openstack/x/endpoint/y", r.endpoint_prefix());
        s.put(&foreign, b"{}", None).unwrap();
        r.report_endpoints(&want);
        assert_eq!(value(&s, &key), None, "not listed again yet");
        r.relist_every = Duration::ZERO;
        r.report_endpoints(&want);
        assert_eq!(value(&s, &key).as_deref(), Some(r#"{"status":"up"}"#));
        assert_eq!(value(&s, &foreign), None);
    }

    #[test]
    fn queued_reports_coalesce_without_losing_liveness_or_statuses() {
        let mut r = Report {
            liveness: true,
            endpoints: None,
            conditions: Some(vec!["a".into()]),
            bgp: Some("{}".into()),
            bgp_routes: None,
        };
        let mut eps = BTreeMap::new();
        eps.insert(id("vm1", "tap1"), EndpointStatus::Up);
        r.merge(Report {
            liveness: false,
            endpoints: Some(eps.clone()),
            conditions: None,
            bgp: None,
            bgp_routes: None,
        });
        assert!(r.liveness);
        assert_eq!(
            r.bgp.as_deref(),
            Some("{}"),
            "kept when the newer report has none"
        );
        assert_eq!(r.endpoints, Some(eps));
        assert_eq!(r.conditions, Some(vec!["a".to_string()]));
    }
}
