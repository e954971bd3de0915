//! Status written back to the datastore, at upstream's keys: the agent's
//! liveness (`.../host/<host>/status` under a lease, so it disappears when
//! the agent dies, and `last_reported_status`), and per-endpoint status that
//! the OpenStack driver turns into Neutron port status.

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use calico_datastore::{Datastore, LeaseId};
use tracing::warn;

/// Identity of a local workload endpoint as its status key needs it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EndpointStatusId {
    pub orchestrator: String,
    pub workload: String,
    pub endpoint: String,
}

pub struct StatusReporter {
    store: Arc<dyn Datastore>,
    host_prefix: String,
    interval: Duration,
    started: Instant,
    first_update: String,
    lease: Option<LeaseId>,
    /// Endpoint status keys we wrote, and their value.
    written: BTreeMap<String, String>,
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl StatusReporter {
    pub fn new(
        store: Arc<dyn Datastore>,
        region: &str,
        host: &str,
        interval: Duration,
    ) -> StatusReporter {
        StatusReporter {
            store,
            host_prefix: format!("/calico/felix/v2/{region}/host/{host}"),
            interval,
            started: Instant::now(),
            first_update: now(),
            lease: None,
            written: BTreeMap::new(),
        }
    }

    pub fn status_key(&self) -> String {
        format!("{}/status", self.host_prefix)
    }

    /// Writes the liveness status; the lease lives 2.5 reporting intervals.
    pub fn report(&mut self) {
        let value = serde_json::json!({
            "time": now(),
            "uptime": self.started.elapsed().as_secs_f64(),
            "first_update": self.first_update,
        })
        .to_string();
        let lease = match self.lease {
            Some(l) if self.store.keep_alive(l).is_ok() => l,
            _ => match self
                .store
                .grant_lease(self.interval.mul_f64(2.5).max(Duration::from_secs(5)))
            {
                Ok(l) => {
                    self.lease = Some(l);
                    l
                }
                Err(e) => {
                    warn!(error = %e, "cannot grant the status lease");
                    return;
                }
            },
        };
        if let Err(e) = self
            .store
            .put(&self.status_key(), value.as_bytes(), Some(lease))
        {
            warn!(error = %e, "cannot write status");
            return;
        }
        let _ = self.store.put(
            &format!("{}/last_reported_status", self.host_prefix),
            value.as_bytes(),
            None,
        );
    }

    /// Makes the endpoint status keys match `up` (each endpoint that is
    /// programmed): writes new ones, deletes those of endpoints now gone.
    pub fn report_endpoints(&mut self, up: &[EndpointStatusId]) {
        let mut desired = BTreeMap::new();
        for id in up {
            let key = format!(
                "{}/workload/{}/{}/endpoint/{}",
                self.host_prefix, id.orchestrator, id.workload, id.endpoint
            );
            desired.insert(key, r#"{"status":"up"}"#.to_string());
        }
        let stale: Vec<String> = self
            .written
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .cloned()
            .collect();
        for k in stale {
            if self.store.delete(&k, None).is_ok()
                || !self.store.get(&k).map(|v| v.is_some()).unwrap_or(true)
            {
                self.written.remove(&k);
            }
        }
        for (k, v) in desired {
            if self.written.get(&k) != Some(&v) && self.store.put(&k, v.as_bytes(), None).is_ok() {
                self.written.insert(k, v);
            }
        }
    }
}

/// A [`StatusReporter`] on its own thread: its datastore writes (the
/// liveness key, and one per endpoint that came up or went) never hold up
/// the agent's main loop, where a policy change would wait behind them
/// (a host gaining 1,000 endpoints wrote 1,000 keys in a row there).
/// Queued reports are coalesced to the newest. The main loop still sends
/// every report, so a stuck loop stops the liveness reports as before.
pub struct StatusThread {
    tx: Option<mpsc::Sender<Vec<EndpointStatusId>>>,
    handle: Option<JoinHandle<()>>,
}

impl StatusThread {
    pub fn spawn(mut reporter: StatusReporter) -> std::io::Result<StatusThread> {
        let (tx, rx) = mpsc::channel::<Vec<EndpointStatusId>>();
        let handle = std::thread::Builder::new()
            .name("status".into())
            .spawn(move || {
                while let Ok(up) = rx.recv() {
                    let up = rx.try_iter().last().unwrap_or(up);
                    reporter.report();
                    reporter.report_endpoints(&up);
                }
            })?;
        Ok(StatusThread {
            tx: Some(tx),
            handle: Some(handle),
        })
    }

    /// Queues a report: liveness, and `up` as the endpoints that are up.
    pub fn report(&self, up: Vec<EndpointStatusId>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(up);
        }
    }

    /// Waits until every queued report is written.
    pub fn finish(mut self) {
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
