//! BGP in the agent: the speaker (crates/bgp) started, configured and
//! stopped from the calculation's `BgpIntent`, its best paths turned into
//! kernel routes, and its status published (BIRD's control sockets, the
//! datastore for `calicoctl node status`).
//!
//! The speaker runs on its own thread; best-path changes come back to the
//! agent's loop as events, so all kernel programming stays on one thread.

pub mod birdctl;
pub mod policy;
pub mod statics;
pub mod translate;

use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use calico_bgp::driver::{Command, Driver};
use calico_bgp::rib::BestChange;
use calico_bgp::speaker::{Speaker, Start};
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
    /// The policy last given to the speaker.
    policy: Option<policy::CalicoPolicy>,
    started: Instant,
    converged: bool,
    /// Routes to peers behind a gateway (`reachableBy`).
    statics: statics::PeerStatics,
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
            policy: None,
            started: Instant::now(),
            converged: false,
            statics: statics::PeerStatics::default(),
        }
    }

    pub fn intent(&self) -> Option<&BgpIntent> {
        self.intent.as_ref()
    }

    /// Applies a new intent; returns the kernel changes of the static
    /// routes to peers behind a gateway.
    pub fn on_intent(&mut self, intent: Option<BgpIntent>) -> statics::Changes {
        let wanted = statics::wanted(intent.as_ref());
        self.apply_intent(intent);
        self.statics.set(wanted)
    }

    /// The speaker starts when this node has a BGP address, restarts only
    /// when its identity or listening address changes, and otherwise just
    /// gets the new peers, routes and policy.
    fn apply_intent(&mut self, intent: Option<BgpIntent>) {
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
            let new = policy::CalicoPolicy::new(&intent);
            if self.policy.as_ref() != Some(&new) {
                let refresh = self
                    .policy
                    .as_ref()
                    .is_some_and(|old| old.imports_differ(&new));
                d.send(Command::Policy(Box::new(new.clone())));
                if refresh {
                    d.send(Command::RefreshImports);
                }
                self.policy = Some(new);
            }
            d.send(Command::LocalRoutes(translate::local_routes(&intent)));
            d.send(Command::Peers(translate::peer_configs(&intent)));
        }
        self.intent = Some(intent);
    }

    fn start(&mut self, intent: &BgpIntent, listen: SocketAddr) {
        self.policy = None;
        let mut speaker = Speaker::new(intent.router_id, intent.local_as, intent.rr_cluster_id);
        let start = start_kind(&self.run_dir);
        info!(?start, "BGP speaker starting");
        speaker.set_start(start);
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

    /// Kernel routes for a batch of best-path changes (less those a
    /// static route to a peer hides).
    pub fn kernel_changes(&mut self, changes: &[BestChange]) -> Vec<(IpNet, Option<KernelRoute>)> {
        let routes = changes
            .iter()
            .map(|c| (c.prefix, translate::kernel_route(c, self.intent.as_ref())))
            .collect();
        self.statics.filter(routes)
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

    /// A full snapshot, routes included (None when BGP is off or the
    /// speaker does not answer).
    pub fn snapshot(&self) -> Option<SpeakerStatus> {
        self.driver.as_ref()?.snapshot(Duration::from_secs(2))
    }

    /// Session status as of the speaker's last publish (at most 1 s old).
    pub fn sessions(&self) -> Option<SpeakerStatus> {
        let d = self.driver.as_ref()?;
        d.sessions.lock().ok().map(|s| s.clone())
    }
}

/// The status JSON `calicoctl node status --node` reads.
/// Marks, in the run directory, that a speaker ran since the host booted.
const STARTED_MARK: &str = "bgp.started";

/// Warm when a speaker already ran on this host since it booted: the run
/// directory is a tmpfs (`/var/run`), so the mark goes with the kernel's
/// routes, and while it is there the routes we announced (workloads,
/// blocks) and those learned (`proto bird`) are still in the kernel, as
/// upstream's `bird -R` assumes. Peers then keep forwarding to us while we
/// come back; after a boot they drop what they kept at once.
fn start_kind(run_dir: &std::path::Path) -> Start {
    let mark = run_dir.join(STARTED_MARK);
    let start = if mark.exists() {
        Start::Warm
    } else {
        Start::Cold
    };
    if let Err(e) = std::fs::create_dir_all(run_dir).and_then(|()| std::fs::write(&mark, b"")) {
        warn!(path = %mark.display(), error = %e, "cannot mark the BGP start; the next start will be cold");
    }
    start
}

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

/// The routes JSON `calicoctl node routes --node` reads: per peer what it
/// was sent and what it sent us, capped at `MAX_ROUTES` entries.
pub fn routes_json(node: &str, s: &SpeakerStatus) -> String {
    use calico_bgp::status::LOCAL_PROTOCOL;
    use calico_client::bgp_status::{BgpRouteEntry, BgpRoutes, MAX_ROUTES};
    let as_path = |a: &calico_bgp::wire::PathAttributes| {
        a.as_path
            .iter()
            .flat_map(|seg| match seg {
                calico_bgp::wire::AsSegment::Sequence(v) | calico_bgp::wire::AsSegment::Set(v) => {
                    v.clone()
                }
            })
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let next_hop = |prefix: &IpNet, a: &calico_bgp::wire::PathAttributes| match prefix {
        IpNet::V4(_) => a.next_hop.map(|n| n.to_string()).unwrap_or_default(),
        IpNet::V6(_) => a
            .mp_next_hop
            .map(|n| n.global.to_string())
            .unwrap_or_default(),
    };
    let peer_ip = |name: &str| {
        s.peers
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.address.to_string())
            .unwrap_or_default()
    };
    let announced = s.exports.iter().flat_map(|(peer, sent)| {
        sent.iter().map(move |(prefix, a)| BgpRouteEntry {
            peer: peer.clone(),
            peer_ip: peer_ip(peer),
            direction: "announced".into(),
            destination: prefix.to_string(),
            next_hop: next_hop(prefix, a),
            as_path: as_path(a),
            ..Default::default()
        })
    });
    let learned = s
        .routes
        .iter()
        .filter(|r| r.from_name != LOCAL_PROTOCOL)
        .map(|r| BgpRouteEntry {
            peer: r.from_name.clone(),
            peer_ip: r.from_address.map(|a| a.to_string()).unwrap_or_default(),
            direction: "learned".into(),
            destination: r.prefix.to_string(),
            next_hop: next_hop(&r.prefix, &r.attrs),
            as_path: as_path(&r.attrs),
            best: r.best,
            stale: r.stale,
        });
    let mut routes: Vec<BgpRouteEntry> = announced.chain(learned).take(MAX_ROUTES + 1).collect();
    let truncated = routes.len() > MAX_ROUTES;
    routes.truncate(MAX_ROUTES);
    let out = BgpRoutes {
        node: node.to_string(),
        last_updated: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        truncated,
        routes,
    };
    serde_json::to_string(&out).unwrap_or_default()
}

/// A per-peer series: name, help, type, and how to read it off a peer.
type PeerSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&calico_bgp::status::PeerStatus) -> u64,
);

/// Prometheus series for the speaker: sessions by state (every state, 0
/// when none), and per peer the routes received and advertised and the
/// UPDATE counters (`rate()` of those is updates per second).
pub fn metrics_text(s: &SpeakerStatus) -> String {
    use calico_bgp::session::State;
    let mut out = String::from(
        "# HELP calico_bgp_sessions BGP sessions by state.\n# TYPE calico_bgp_sessions gauge\n",
    );
    for st in [
        State::Idle,
        State::Connect,
        State::Active,
        State::OpenSent,
        State::OpenConfirm,
        State::Established,
    ] {
        let n = s.peers.iter().filter(|p| p.state == st).count();
        out.push_str(&format!(
            "calico_bgp_sessions{{state=\"{}\"}} {n}\n",
            st.name()
        ));
    }
    let series: [PeerSeries; 4] = [
        (
            "calico_bgp_routes_received",
            "Routes accepted from the peer.",
            "gauge",
            |p| p.received as u64,
        ),
        (
            "calico_bgp_routes_advertised",
            "Routes advertised to the peer.",
            "gauge",
            |p| p.exported as u64,
        ),
        (
            "calico_bgp_updates_received_total",
            "UPDATE messages received from the peer.",
            "counter",
            |p| p.stats.updates_received,
        ),
        (
            "calico_bgp_updates_sent_total",
            "UPDATE messages sent to the peer.",
            "counter",
            |p| p.stats.updates_sent,
        ),
    ];
    for (name, help, kind, value) in series {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for p in &s.peers {
            out.push_str(&format!(
                "{name}{{peer=\"{}\",peer_ip=\"{}\"}} {}\n",
                p.name,
                p.address,
                value(p)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use calico_bgp::session::{SessionStats, State};
    use calico_bgp::status::PeerStatus;
    use std::time::SystemTime;

    #[test]
    fn the_first_start_since_boot_is_cold_and_later_ones_warm() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("calico");
        assert_eq!(start_kind(&run), Start::Cold);
        assert_eq!(start_kind(&run), Start::Warm);
        assert_eq!(start_kind(&run), Start::Warm);
    }

    fn peer(name: &str, ip: &str, state: State, err: Option<&str>) -> PeerStatus {
        PeerStatus {
            name: name.into(),
            address: ip.parse().unwrap(),
            port: 179,
            local_as: 64512,
            peer_as: 64512,
            state,
            since: SystemTime::now(),
            last_error: err.map(str::to_string),
            neighbor_id: None,
            source_address: None,
            hold: None,
            keepalive: None,
            rr_client: false,
            passive: false,
            peer_capabilities: vec![],
            received: 3,
            preferred: 2,
            exported: 1,
            synced: false,
            stats: SessionStats {
                updates_received: 7,
                ..Default::default()
            },
        }
    }

    fn status() -> SpeakerStatus {
        SpeakerStatus {
            router_id: Some("10.0.0.1".parse().unwrap()),
            local_as: 64512,
            peers: vec![
                peer("Mesh_10_0_0_2", "10.0.0.2", State::Established, None),
                peer(
                    "Global_192_168_10_254",
                    "192.168.10.254",
                    State::Active,
                    Some("Socket: Connection refused"),
                ),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn status_json_is_what_calicoctl_reads() {
        let v: serde_json::Value = serde_json::from_str(&status_json("h1", &status())).unwrap();
        assert_eq!(v["routerID"], "10.0.0.1");
        assert_eq!(v["peers"][0]["peerIP"], "10.0.0.2");
        assert_eq!(v["peers"][0]["type"], "NodeMesh");
        assert_eq!(v["peers"][0]["info"], "Established");
        assert_eq!(v["peers"][1]["type"], "GlobalPeer");
        assert_eq!(v["peers"][1]["info"], "Active Socket: Connection refused");
    }

    #[test]
    fn metrics_count_sessions_by_state_and_routes_by_peer() {
        let text = metrics_text(&status());
        assert!(
            text.contains("calico_bgp_sessions{state=\"Established\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("calico_bgp_sessions{state=\"Active\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("calico_bgp_sessions{state=\"Idle\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "calico_bgp_routes_received{peer=\"Mesh_10_0_0_2\",peer_ip=\"10.0.0.2\"} 3\n"
            ),
            "{text}"
        );
        assert!(text.contains("calico_bgp_updates_received_total{peer=\"Mesh_10_0_0_2\",peer_ip=\"10.0.0.2\"} 7\n"), "{text}");
    }
}
