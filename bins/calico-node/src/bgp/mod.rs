//! BGP in the agent: the speaker (crates/bgp) started, configured and
//! stopped from the calculation's `BgpIntent`, its best paths turned into
//! kernel routes, and its status published (BIRD's control sockets, the
//! datastore for `calicoctl node status`).
//!
//! The speaker runs on its own thread; best-path changes come back to the
//! agent's loop as events, so all kernel programming stays on one thread.

mod birdctl;
pub mod policy;
pub mod translate;

use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use calico_bgp::driver::{Command, Driver};
use calico_bgp::rib::BestChange;
use calico_bgp::speaker::Speaker;
use calico_bgp::status::SpeakerStatus;
use calico_calc::bgp::BgpIntent;
use calico_dataplane::netlink::KernelRoute;
use ipnet::IpNet;
use tracing::{info, warn};

use crate::agent::Event;

/// Give up waiting for every peer's End-of-RIB after this long: stale
/// routes from before a restart are removed then at the latest.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(120);

pub struct Bgp {
    events: Sender<Event>,
    run_dir: std::path::PathBuf,
    driver: Option<Driver>,
    /// BIRD's control sockets, answered while the speaker runs.
    sockets: Vec<calico_bgp::birdctl::Server>,
    listen: Option<SocketAddr>,
    intent: Option<BgpIntent>,
    started: Instant,
    converged: bool,
}

impl Bgp {
    pub fn new(events: Sender<Event>, run_dir: std::path::PathBuf) -> Bgp {
        Bgp {
            events,
            run_dir,
            driver: None,
            sockets: Vec::new(),
            listen: None,
            intent: None,
            started: Instant::now(),
            converged: false,
        }
    }

    pub fn intent(&self) -> Option<&BgpIntent> {
        self.intent.as_ref()
    }

    /// Applies a new intent: the speaker starts when this node has a BGP
    /// address, restarts only when its identity or listening address
    /// changes, and otherwise just gets the new peers, routes and policy.
    pub fn on_intent(&mut self, intent: Option<BgpIntent>) {
        let Some(intent) = intent else {
            if let Some(d) = self.driver.take() {
                info!("BGP off for this node: stopping the speaker");
                self.sockets.clear();
                d.stop();
            }
            self.intent = None;
            self.listen = None;
            return;
        };
        let listen = translate::listen_address(&intent);
        if self.listen != Some(listen) {
            if let Some(d) = self.driver.take() {
                d.stop();
            }
            self.start(&intent, listen);
        }
        if let Some(d) = &self.driver {
            let identity_changed = self.intent.as_ref().is_none_or(|old| {
                (old.router_id, old.local_as, old.rr_cluster_id)
                    != (intent.router_id, intent.local_as, intent.rr_cluster_id)
            });
            if identity_changed {
                d.send(Command::Identity {
                    router_id: intent.router_id,
                    local_as: intent.local_as,
                    cluster_id: intent.rr_cluster_id,
                });
            }
            d.send(Command::Policy(Box::new(policy::CalicoPolicy::new(
                &intent,
            ))));
            d.send(Command::LocalRoutes(translate::local_routes(&intent)));
            d.send(Command::Peers(translate::peer_configs(&intent)));
        }
        self.intent = Some(intent);
    }

    fn start(&mut self, intent: &BgpIntent, listen: SocketAddr) {
        let speaker = Speaker::new(intent.router_id, intent.local_as, intent.rr_cluster_id);
        let events = self.events.clone();
        let sink = Box::new(move |changes: Vec<BestChange>| {
            let _ = events.send(Event::BgpRoutes(changes));
        });
        match Driver::start(listen, speaker, sink) {
            Ok((d, addr)) => {
                info!(%addr, router_id = %intent.router_id, asn = intent.local_as, "BGP speaker listening");
                self.sockets = birdctl::serve(&self.run_dir, d.handle());
                self.driver = Some(d);
                self.listen = Some(listen);
            }
            Err(e) => {
                // Retried on the next intent (e.g. another BGP daemon still
                // holds the port).
                warn!(%listen, error = %e, "cannot start the BGP speaker");
                self.listen = None;
            }
        }
    }

    /// Kernel routes for a batch of best-path changes.
    pub fn kernel_changes(&self, changes: &[BestChange]) -> Vec<(IpNet, Option<KernelRoute>)> {
        changes
            .iter()
            .map(|c| (c.prefix, translate::kernel_route(c, self.intent.as_ref())))
            .collect()
    }

    /// True once (and then always) when every configured peer has sent its
    /// whole table, or the deadline passed, or BGP is off for this node:
    /// learned routes from before a restart that no peer re-announced may
    /// then go. Asked only once the datastore snapshot is in.
    pub fn poll_converged(&mut self) -> bool {
        if self.converged {
            return true;
        }
        let done = match (&self.driver, &self.intent) {
            (None, _) | (_, None) => true,
            (Some(d), Some(intent)) => {
                let synced = d.sessions.lock().ok().is_some_and(|s| {
                    s.peers.len() == intent.peers.len() && s.peers.iter().all(|p| p.synced)
                });
                synced || self.started.elapsed() >= CONVERGE_DEADLINE
            }
        };
        if done {
            info!("BGP converged: learned routes no peer re-announced may now be removed");
            self.converged = true;
        }
        done
    }

    /// Session status as of the speaker's last publish (at most 1 s old).
    pub fn sessions(&self) -> Option<SpeakerStatus> {
        let d = self.driver.as_ref()?;
        d.sessions.lock().ok().map(|s| s.clone())
    }
}

/// The status JSON `calicoctl node status --node` reads.
pub fn status_json(node: &str, s: &SpeakerStatus) -> String {
    use calico_client::bgp_status::{peer_type_of, BgpPeerStatus, BgpStatus};
    let rfc3339 = |t: std::time::SystemTime| {
        chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let peers = s
        .peers
        .iter()
        .map(|p| BgpPeerStatus {
            name: p.name.clone(),
            peer_ip: p.address.to_string(),
            peer_type: peer_type_of(&p.name).to_string(),
            state: p.state.name().to_string(),
            since: rfc3339(p.since),
            info: match (&p.last_error, p.state) {
                (Some(e), st) if st != calico_bgp::session::State::Established => {
                    format!("{} {e}", st.name())
                }
                _ => p.state.name().to_string(),
            },
            routes_received: p.received as u64,
            routes_preferred: p.preferred as u64,
            routes_exported: p.exported as u64,
        })
        .collect();
    let status = BgpStatus {
        node: node.to_string(),
        last_updated: rfc3339(std::time::SystemTime::now()),
        router_id: s.router_id.map(|r| r.to_string()).unwrap_or_default(),
        as_number: s.local_as,
        peers,
    };
    serde_json::to_string(&status).unwrap_or_default()
}
