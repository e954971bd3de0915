//! Agent and endpoint status, from the keys each host's agent writes
//! (`/calico/felix/v2/<region>/host/<host>/status`, and
//! `.../workload/openstack/<workload>/endpoint/<port id>`) to what Neutron
//! records: an agent heartbeat per status write, a port status per endpoint
//! status change. A snapshot first, then a watch from the snapshot's
//! revision; a broken or compacted watch starts over with a snapshot.

use std::sync::Arc;
use std::time::Duration;

use calico_datastore::{Datastore, Error as StoreError, KeyValue, Watch, WatchEvent};
use serde::Serialize;

use crate::driver::port_status;
use crate::keys::felix_status_dir;
use crate::region::Region;

/// Something for Neutron to record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum StatusEvent {
    /// The host's agent reported in (`start_flag` on its first report).
    AgentAlive { host: String, start_flag: bool },
    /// A port's status on a host (`ACTIVE`, `DOWN`, `ERROR`).
    PortStatus {
        host: String,
        port_id: String,
        status: String,
    },
}

pub struct StatusWatcher {
    store: Arc<dyn Datastore>,
    dir: String,
    watch: Option<Watch>,
}

impl StatusWatcher {
    pub fn new(store: Arc<dyn Datastore>, region: &Region) -> StatusWatcher {
        StatusWatcher {
            store,
            dir: format!("{}/", felix_status_dir(region)),
            watch: None,
        }
    }

    /// What happened since the last call, waiting up to `timeout` for the
    /// first event. The first call (and the first after a broken watch)
    /// returns the whole snapshot.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<StatusEvent>, StoreError> {
        let Some(watch) = &self.watch else {
            return self.snapshot();
        };
        let mut events = Vec::new();
        let mut next = watch.recv_timeout(timeout);
        while let Some(ev) = next {
            match ev {
                WatchEvent::Put { kv, .. } => events.extend(self.on_put(&kv)),
                WatchEvent::Delete { key, .. } => events.extend(self.on_delete(&key)),
                WatchEvent::Compacted { .. } | WatchEvent::Error(_) => {
                    self.watch = None;
                    events.extend(self.snapshot()?);
                    return Ok(events);
                }
            }
            next = watch.try_recv();
        }
        if watch.is_closed() {
            self.watch = None;
        }
        Ok(events)
    }

    fn snapshot(&mut self) -> Result<Vec<StatusEvent>, StoreError> {
        let list = self.store.list(&self.dir)?;
        let events = list.kvs.iter().filter_map(|kv| self.on_put(kv)).collect();
        self.watch = Some(self.store.watch(&self.dir, list.revision + 1)?);
        Ok(events)
    }

    fn on_put(&self, kv: &KeyValue) -> Option<StatusEvent> {
        match parse_key(kv.key.strip_prefix(&self.dir)?)? {
            Key::Agent { host } => {
                let v: serde_json::Value = serde_json::from_slice(&kv.value).unwrap_or_default();
                Some(StatusEvent::AgentAlive {
                    host,
                    start_flag: v.get("first_update").and_then(|f| f.as_bool()) == Some(true),
                })
            }
            Key::Endpoint { host, port_id } => {
                let v: serde_json::Value = serde_json::from_slice(&kv.value).unwrap_or_default();
                let status = v.get("status").and_then(|s| s.as_str());
                Some(StatusEvent::PortStatus {
                    host,
                    port_id,
                    status: port_status(status).to_string(),
                })
            }
        }
    }

    /// A gone agent key is left to Neutron's `agent_down_time` (as
    /// upstream); a gone endpoint status makes the port `ERROR`.
    fn on_delete(&self, key: &str) -> Option<StatusEvent> {
        match parse_key(key.strip_prefix(&self.dir)?)? {
            Key::Agent { .. } => None,
            Key::Endpoint { host, port_id } => Some(StatusEvent::PortStatus {
                host,
                port_id,
                status: port_status(None).to_string(),
            }),
        }
    }
}

/// The Neutron status a port's endpoint on `host` has now (from its
/// status key), `None` when its agent has not reported it. Used when a port
/// recovers from an error the driver reported: no new status key is
/// written then, so the driver looks it up.
pub fn current_port_status(
    store: &dyn Datastore,
    region: &Region,
    host: &str,
    port_id: &str,
) -> Result<Option<String>, StoreError> {
    let dir = format!("{}/", felix_status_dir(region));
    let prefix = format!("{dir}{host}/workload/openstack/");
    for kv in store.list(&prefix)?.kvs {
        if let Some(Key::Endpoint { port_id: p, .. }) = parse_key(&kv.key[dir.len()..]) {
            if p == port_id {
                let v: serde_json::Value = serde_json::from_slice(&kv.value).unwrap_or_default();
                let status = v.get("status").and_then(|s| s.as_str());
                return Ok(Some(port_status(status).to_string()));
            }
        }
    }
    Ok(None)
}

#[derive(Debug, PartialEq, Eq)]
enum Key {
    Agent { host: String },
    Endpoint { host: String, port_id: String },
}

/// `<host>/status` or `<host>/workload/openstack/<workload>/endpoint/<id>`
/// (below the status directory); anything else is not ours.
fn parse_key(rest: &str) -> Option<Key> {
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [host, "status"] => Some(Key::Agent {
            host: host.to_string(),
        }),
        [host, "workload", "openstack", _workload, "endpoint", port] => Some(Key::Endpoint {
            host: host.to_string(),
            port_id: port.replace("%2f", "/").replace("%25", "%"),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_as_the_agent_writes_them() {
        assert_eq!(
            parse_key("h1/status"),
            Some(Key::Agent { host: "h1".into() })
        );
        assert_eq!(
            parse_key("h1/workload/openstack/openstack%2fvm-1/endpoint/port-9"),
            Some(Key::Endpoint {
                host: "h1".into(),
                port_id: "port-9".into()
            })
        );
        assert_eq!(parse_key("h1/last_reported_status"), None);
        assert_eq!(parse_key("h1/workload/k8s/ns%2fpod/endpoint/eth0"), None);
    }

    #[test]
    fn snapshot_then_changes() {
        let dir = tempfile::tempdir().unwrap();
        let s: Arc<dyn Datastore> =
            Arc::new(calico_datastore::LocalStore::open(dir.path().join("db")).unwrap());
        let base = "/calico/felix/v2/no-region/host";
        s.put(
            &format!("{base}/h1/status"),
            br#"{"time":"t","uptime":1,"first_update":true}"#,
            None,
        )
        .unwrap();
        let ep = format!("{base}/h1/workload/openstack/openstack%2fvm/endpoint/p1");
        s.put(&ep, br#"{"status":"up"}"#, None).unwrap();
        let mut w = StatusWatcher::new(s.clone(), &Region::none());
        let first = w.poll(Duration::from_millis(10)).unwrap();
        assert_eq!(
            first,
            vec![
                StatusEvent::AgentAlive {
                    host: "h1".into(),
                    start_flag: true
                },
                StatusEvent::PortStatus {
                    host: "h1".into(),
                    port_id: "p1".into(),
                    status: "ACTIVE".into()
                },
            ]
        );
        s.put(&ep, br#"{"status":"down"}"#, None).unwrap();
        s.put(
            &format!("{base}/h1/status"),
            br#"{"time":"t","uptime":2,"first_update":false}"#,
            None,
        )
        .unwrap();
        s.delete(&ep, None).unwrap();
        let mut got = Vec::new();
        for _ in 0..50 {
            got.extend(w.poll(Duration::from_millis(100)).unwrap());
            if got.len() >= 3 {
                break;
            }
        }
        let statuses: Vec<_> = got
            .iter()
            .map(|e| match e {
                StatusEvent::AgentAlive { start_flag, .. } => format!("agent {start_flag}"),
                StatusEvent::PortStatus { status, .. } => status.clone(),
            })
            .collect();
        assert_eq!(statuses, ["DOWN", "agent false", "ERROR"]);
    }
}
