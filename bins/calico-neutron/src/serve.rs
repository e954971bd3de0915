//! The requests the shim sends, each answered from the crates'
//! translation, sync, resync, election and status code.

use std::sync::Arc;
use std::time::Duration;

use calico_datastore::Datastore;
use calico_openstack::driver::is_status_only_change;
use calico_openstack::election::{Elector, LEASE_TTL};
use calico_openstack::resync::{resync, Snapshot};
use calico_openstack::status::{current_port_status, StatusWatcher};
use calico_openstack::sync::{SyncError, Syncer};
use calico_openstack::PortExtras;
use serde::Deserialize;
use serde_json::{json, Value};

use calico_openstack::options::Options;

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Init {
        options: Options,
        /// Upstream's `<elector name>:<pid>`.
        #[serde(default)]
        elector_id: Option<String>,
    },
    Ping,
    SyncPort {
        #[serde(default)]
        original: Option<Value>,
        /// The port as the update event carried it (`context.current`),
        /// when it differs from `current`, re-read from the database.
        #[serde(default)]
        event_current: Option<Value>,
        current: Value,
        #[serde(default)]
        extras: PortExtras,
    },
    DeletePort {
        port: Value,
    },
    ValidatePort {
        port: Value,
        #[serde(default)]
        extras: PortExtras,
    },
    SyncSecurityGroup {
        security_group: Value,
    },
    ValidateSecurityGroup {
        security_group: Value,
    },
    DeleteSecurityGroup {
        id: String,
    },
    SyncSubnet {
        subnet: Value,
    },
    DeleteSubnet {
        id: String,
    },
    ProvideFelixConfig,
    Resync {
        snapshot: Snapshot,
    },
    Elect,
    Resign,
    PollStatus {
        #[serde(default)]
        timeout_ms: u64,
    },
    PortStatus {
        host: String,
        port_id: String,
    },
}

/// What the co-process holds between requests.
#[derive(Default)]
pub struct Server {
    state: Option<State>,
}

struct State {
    syncer: Syncer,
    elector: Elector,
    status: StatusWatcher,
}

/// A failed request: its reply carries the message and, for data that
/// cannot be translated, the object and field.
enum Failure {
    Request(String),
    Sync(SyncError),
}

impl From<SyncError> for Failure {
    fn from(e: SyncError) -> Failure {
        Failure::Sync(e)
    }
}

impl From<calico_datastore::Error> for Failure {
    fn from(e: calico_datastore::Error) -> Failure {
        Failure::Sync(e.into())
    }
}

impl From<calico_openstack::Error> for Failure {
    fn from(e: calico_openstack::Error) -> Failure {
        Failure::Sync(e.into())
    }
}

impl Server {
    /// Gives up leadership, if held (the process is ending).
    pub fn shutdown(&mut self) {
        if let Some(state) = self.state.as_mut() {
            state.elector.resign();
        }
    }

    pub fn handle_line(&mut self, line: &str) -> Value {
        let result = match serde_json::from_str::<Request>(line) {
            Ok(req) => self.handle(req),
            Err(e) => Err(Failure::Request(format!("bad request: {e}"))),
        };
        match result {
            Ok(v) => json!({"ok": true, "result": v}),
            Err(Failure::Request(msg)) => json!({"ok": false, "kind": "request", "error": msg}),
            Err(Failure::Sync(SyncError::Translate(e))) => json!({
                "ok": false, "kind": "translate", "error": e.to_string(),
                "object": e.object, "field": e.field,
            }),
            Err(Failure::Sync(SyncError::Store(e))) => {
                json!({"ok": false, "kind": "datastore", "error": e.to_string()})
            }
        }
    }

    fn handle(&mut self, req: Request) -> Result<Value, Failure> {
        if let Request::Init {
            options,
            elector_id,
        } = req
        {
            return self.init(options, elector_id);
        }
        if let Request::Ping = req {
            return Ok(json!("pong"));
        }
        let Some(state) = self.state.as_mut() else {
            return Err(Failure::Request("not initialised: send init first".into()));
        };
        state.handle(req)
    }

    fn init(&mut self, options: Options, elector_id: Option<String>) -> Result<Value, Failure> {
        let fail = Failure::Request;
        let cfg = options.translation().map_err(fail)?;
        let ds = options.datastore().map_err(fail)?;
        let store: Arc<dyn Datastore> = Arc::from(calico_datastore::connect(&ds)?);
        let id = elector_id.unwrap_or_else(|| format!("calico-neutron:{}", std::process::id()));
        let describe = store.describe();
        self.state = Some(State {
            elector: Elector::new(store.clone(), &cfg.region, id, LEASE_TTL),
            status: StatusWatcher::new(store.clone(), &cfg.region),
            syncer: Syncer::new(store, cfg),
        });
        Ok(json!({"datastore": describe}))
    }
}

impl State {
    fn handle(&mut self, req: Request) -> Result<Value, Failure> {
        let s = &self.syncer;
        Ok(match req {
            Request::Init { .. } | Request::Ping => unreachable!("handled by Server"),
            Request::SyncPort {
                original,
                event_current,
                current,
                extras,
            } => {
                let event = event_current.as_ref().unwrap_or(&current);
                if original
                    .as_ref()
                    .is_some_and(|o| is_status_only_change(o, event))
                {
                    // Our own status report coming back.
                    return Ok(json!([]));
                }
                json!(s.sync_port(original.as_ref(), &current, &extras)?)
            }
            Request::DeletePort { port } => json!(s.delete_port(&port)?),
            Request::ValidatePort { port, extras } => {
                let ep = calico_openstack::workload_endpoint(&port, &extras, s.config())?;
                ep.to_value()
            }
            Request::SyncSecurityGroup { security_group } => {
                json!(s.sync_security_group(&security_group)?)
            }
            Request::ValidateSecurityGroup { security_group } => {
                calico_openstack::network_policy(&security_group, s.config())?.to_value()
            }
            Request::DeleteSecurityGroup { id } => json!(s.delete_security_group(&id)?),
            Request::SyncSubnet { subnet } => json!(s.sync_subnet(&subnet)?),
            Request::DeleteSubnet { id } => json!(s.delete_subnet(&id)?),
            Request::ProvideFelixConfig => json!(s.provide_felix_config()?),
            Request::Resync { snapshot } => json!(resync(s, &snapshot)?),
            Request::Elect => {
                let leader = self.elector.step()?;
                json!({"leader": leader, "id": self.elector.id()})
            }
            Request::Resign => {
                self.elector.resign();
                json!({"leader": false})
            }
            Request::PortStatus { host, port_id } => json!(current_port_status(
                s.store().as_ref(),
                &s.config().region,
                &host,
                &port_id
            )?),
            Request::PollStatus { timeout_ms } => {
                json!(self.status.poll(Duration::from_millis(timeout_ms))?)
            }
        })
    }
}
