//! CalicoNodeStatus reports: what upstream's calico-node status reporter
//! (`node/pkg/status`) writes into `status`, computed from the speaker's
//! snapshot instead of from BIRD's control sockets.
//!
//! Upstream's populators ask BIRD (`show status`, `show protocols`,
//! `show protocols all NAME`, `show route`) and copy what it prints; our
//! speaker answers those same commands (`calico_bgp::birdctl`) from the same
//! snapshot, so the values here are the ones upstream would read from our
//! sockets: the same version, router ID, times and `since` columns.
//!
//! - Agent: `Ready` with BIRD's version, router ID, boot and reconfiguration
//!   times (`2021-09-19 20:10:56`, local time, as BIRD prints them) for both
//!   families while the speaker runs; only `NotReady` when it does not (as
//!   upstream when it cannot reach BIRD's socket).
//! - BGP: one peer per BGP protocol named `Mesh_…`, `Node_…` or `Global_…`
//!   (others are skipped, as upstream skips them), by the family of its
//!   address: type `NodeMesh`, `NodePeer`, `GlobalPeer` from the name, the
//!   FSM state as BIRD's `BGP state:` line names it (a passive peer waiting
//!   shows BIRD's `Passive`, which upstream maps to no state), `since` as the
//!   `since` column; established means the protocol is `up`.
//! - Routes: every path in the RIB: `FIB` for the best path of a prefix,
//!   `RIB` for the others. Our own routes (`static1`) are BIRD's blackholes:
//!   gateway `N/A`, interface `blackhole`, source `Static`. Learned ones have
//!   the next hop as gateway, the interface it is reached on (when known),
//!   and source `NodeMesh` (from a `Mesh_` protocol) or `BGPPeer`, with the
//!   peer's address. A path without a next hop is `unreachable`.
//!
//! Differences from upstream: only the requested classes are filled and the
//! others are left empty (upstream keeps whatever an earlier report left in
//! them); the speaker's RIB has no kernel or direct routes, so `Kernel` and
//! `Direct` sources never appear (BIRD imports the host's routes too).
//!
//! Writes are upstream's: only the status changes, compare-and-swap on the
//! resource, and nothing is written when the report has not changed apart
//! from `lastUpdated` (so `lastUpdated` is the time of the last change).

// The agent's loop calls these; until it does, only the tests do.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use calico_api::network::{
    BGPDaemonStatus, CalicoNodeAgentStatus, CalicoNodeBGPRouteStatus, CalicoNodeBGPStatus,
    CalicoNodePeer, CalicoNodeRoute, CalicoNodeRouteLearnedFrom, CalicoNodeStatus,
    CalicoNodeStatusSpec, CalicoNodeStatusStatus, CLASS_AGENT, CLASS_BGP, CLASS_ROUTES,
    DAEMON_NOT_READY, DAEMON_READY, PEER_TYPE_GLOBAL_PEER, PEER_TYPE_NODE_MESH,
    PEER_TYPE_NODE_PEER, ROUTE_TYPE_FIB, ROUTE_TYPE_RIB, SOURCE_BGP_PEER, SOURCE_NODE_MESH,
    SOURCE_STATIC,
};
use calico_bgp::birdctl::CALICO_BIRD_VERSION;
use calico_bgp::session::State;
use calico_bgp::status::{PeerStatus, RouteStatus, SpeakerStatus, LOCAL_PROTOCOL};
use calico_client::{Client, ClientError};
use chrono::{DateTime, Local, Utc};

/// BIRD shows a time of day in `since` columns for 20 hours, then a date.
const TIME_OF_DAY_LIMIT: Duration = Duration::from_secs(20 * 3600);

/// Compare-and-swap attempts before a write gives up (each conflict means
/// someone else wrote the resource in between).
const MAX_ATTEMPTS: usize = 5;

/// The report `spec` asks for, from the speaker's snapshot `snap` (with
/// routes: `status::snapshot(.., true)`), at `now`. Interfaces of learned
/// routes are left empty; see [`fill_with`].
#[cfg(test)]
pub fn fill(
    spec: &CalicoNodeStatusSpec,
    snap: &SpeakerStatus,
    now: SystemTime,
) -> CalicoNodeStatusStatus {
    fill_with(spec, snap, now, &|_| None)
}

/// [`fill`], with `iface_for` naming the interface a next hop is reached on
/// (BIRD's `via GW on IFACE`).
pub fn fill_with(
    spec: &CalicoNodeStatusSpec,
    snap: &SpeakerStatus,
    now: SystemTime,
    iface_for: &dyn Fn(IpAddr) -> Option<String>,
) -> CalicoNodeStatusStatus {
    let mut status = CalicoNodeStatusStatus {
        last_updated: Some(rfc3339(now)),
        ..Default::default()
    };
    if spec.has_class(CLASS_AGENT) {
        status.agent = agent(snap);
    }
    if spec.has_class(CLASS_BGP) {
        status.bgp = bgp(snap, now);
    }
    if spec.has_class(CLASS_ROUTES) {
        status.routes = routes(snap, iface_for);
    }
    status
}

/// Whether a report is due: always for a resource not reported on yet
/// (`last_written` None: new, or its spec changed; upstream reports at once
/// then, whatever the period), never again with period 0, else once the
/// period has passed since the last report. A spec without a period is not
/// reported on (upstream skips it).
///
/// `last_written` is when the last report was made, whether or not it
/// changed anything in the datastore ([`Written::Unchanged`] counts).
pub fn due(spec: &CalicoNodeStatusSpec, last_written: Option<Instant>, now: Instant) -> bool {
    let Some(period) = spec.update_period_seconds else {
        return false;
    };
    match last_written {
        None => true,
        Some(_) if period == 0 => false,
        Some(t) => now.saturating_duration_since(t) >= Duration::from_secs(period.into()),
    }
}

/// What a [`write`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    /// The status was stored; the resource's new resourceVersion.
    Updated(String),
    /// The stored status already says the same (apart from `lastUpdated`).
    Unchanged,
    /// The spec is no longer the one the status was made for: nothing was
    /// written. Make a new report for the stored spec.
    SpecChanged,
    /// The resource is gone.
    Gone,
}

/// Stores `status` as the status of CalicoNodeStatus `name`, if its spec is
/// still `spec` (the one the status was made for). Only the status changes:
/// the resource is read, its status replaced and written back on condition
/// that nobody wrote it in between; on a conflict it is read again, so a
/// spec, labels or annotations changed meanwhile are never overwritten.
pub fn write(
    client: &Client,
    name: &str,
    spec: &CalicoNodeStatusSpec,
    status: &CalicoNodeStatusStatus,
) -> Result<Written, ClientError> {
    write_inner(client, name, spec, status, &mut || {})
}

/// [`write`], calling `before_swap` between each read and its
/// compare-and-swap (tests use it to write in between).
fn write_inner(
    client: &Client,
    name: &str,
    spec: &CalicoNodeStatusSpec,
    status: &CalicoNodeStatusStatus,
    before_swap: &mut dyn FnMut(),
) -> Result<Written, ClientError> {
    let mut last_conflict = None;
    for _ in 0..MAX_ATTEMPTS {
        let Some(mut current) = client.get_as::<CalicoNodeStatus>("", name)? else {
            return Ok(Written::Gone);
        };
        if current.spec != *spec {
            return Ok(Written::SpecChanged);
        }
        if same_report(&current.status, status) {
            return Ok(Written::Unchanged);
        }
        // `current` carries the resourceVersion it was read at: the replace
        // is a compare-and-swap on it.
        current.status = status.clone();
        before_swap();
        match client.replace(current.into()) {
            Ok(r) => return Ok(Written::Updated(r.metadata().resource_version.clone())),
            Err(e @ ClientError::Conflict { .. }) => last_conflict = Some(e),
            Err(ClientError::Store(e)) if e.is_conflict() => {
                last_conflict = Some(ClientError::Store(e))
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_conflict.expect("every attempt ended in a conflict"))
}

/// Equal apart from `lastUpdated` (upstream compares the report it made
/// with the stored one before it sets the time).
fn same_report(a: &CalicoNodeStatusStatus, b: &CalicoNodeStatusStatus) -> bool {
    a.agent == b.agent && a.bgp == b.bgp && a.routes == b.routes
}

fn agent(snap: &SpeakerStatus) -> CalicoNodeAgentStatus {
    let Some(started) = snap.started else {
        let not_ready = BGPDaemonStatus {
            state: DAEMON_NOT_READY.to_string(),
            ..Default::default()
        };
        return CalicoNodeAgentStatus {
            bird_v4: not_ready.clone(),
            bird_v6: not_ready,
        };
    };
    // One speaker answers for both of upstream's daemons; BIRD's router ID
    // is 0.0.0.0 until it has one.
    let daemon = BGPDaemonStatus {
        state: DAEMON_READY.to_string(),
        version: CALICO_BIRD_VERSION.to_string(),
        router_id: snap
            .router_id
            .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED)
            .to_string(),
        last_boot_time: bird_datetime(started),
        last_reconfiguration_time: bird_datetime(started),
    };
    CalicoNodeAgentStatus {
        bird_v4: daemon.clone(),
        bird_v6: daemon,
    }
}

/// The peer type of a BIRD protocol name Calico's template generates
/// (`Mesh_10_0_0_2`, `Node_…`, `Global_…`); None for other protocols.
fn peer_type(name: &str) -> Option<&'static str> {
    let (prefix, rest) = name.split_once('_')?;
    if rest.is_empty() {
        return None;
    }
    match prefix {
        "Mesh" => Some(PEER_TYPE_NODE_MESH),
        "Node" => Some(PEER_TYPE_NODE_PEER),
        "Global" => Some(PEER_TYPE_GLOBAL_PEER),
        _ => None,
    }
}

fn bgp(snap: &SpeakerStatus, now: SystemTime) -> CalicoNodeBGPStatus {
    let mut out = CalicoNodeBGPStatus::default();
    for p in &snap.peers {
        let Some(peer_type) = peer_type(&p.name) else {
            continue;
        };
        let up = p.state == State::Established;
        let (peers, established, not_established) = if p.address.is_ipv6() {
            (
                &mut out.peers_v6,
                &mut out.number_established_v6,
                &mut out.number_not_established_v6,
            )
        } else {
            (
                &mut out.peers_v4,
                &mut out.number_established_v4,
                &mut out.number_not_established_v4,
            )
        };
        if up {
            *established += 1;
        } else {
            *not_established += 1;
        }
        peers.push(CalicoNodePeer {
            peer_ip: p.address.to_string(),
            peer_type: peer_type.to_string(),
            state: session_state(p).to_string(),
            since: bird_since(now, p.since),
        });
    }
    out
}

/// BIRD's `BGP state:` as upstream maps it: the FSM states by name; BIRD's
/// `Passive` (a passive peer waiting) is not among upstream's states and
/// maps to nothing.
fn session_state(p: &PeerStatus) -> &'static str {
    if p.state == State::Idle && p.passive {
        return "";
    }
    p.state.name()
}

fn routes(
    snap: &SpeakerStatus,
    iface_for: &dyn Fn(IpAddr) -> Option<String>,
) -> CalicoNodeBGPRouteStatus {
    let mut out = CalicoNodeBGPRouteStatus::default();
    for r in &snap.routes {
        let route = route(r, iface_for);
        if r.prefix.addr().is_ipv6() {
            out.routes_v6.push(route);
        } else {
            out.routes_v4.push(route);
        }
    }
    out
}

fn route(r: &RouteStatus, iface_for: &dyn Fn(IpAddr) -> Option<String>) -> CalicoNodeRoute {
    let route_type = if r.best {
        ROUTE_TYPE_FIB
    } else {
        ROUTE_TYPE_RIB
    };
    let mut out = CalicoNodeRoute {
        route_type: route_type.to_string(),
        destination: r.prefix.to_string(),
        ..Default::default()
    };
    if r.from_name == LOCAL_PROTOCOL {
        out.gateway = "N/A".to_string();
        out.interface = "blackhole".to_string();
        out.learned_from.source_type = SOURCE_STATIC.to_string();
        return out;
    }
    let next_hop: Option<IpAddr> = match r.prefix {
        ipnet::IpNet::V4(_) => r.attrs.next_hop.map(IpAddr::V4),
        ipnet::IpNet::V6(_) => r.attrs.mp_next_hop.map(|n| IpAddr::V6(n.global)),
    };
    match next_hop {
        Some(gw) => {
            out.gateway = gw.to_string();
            out.interface = iface_for(gw).unwrap_or_default();
        }
        None => {
            out.gateway = "N/A".to_string();
            out.interface = "unreachable".to_string();
        }
    }
    let source = if peer_type(&r.from_name) == Some(PEER_TYPE_NODE_MESH) {
        SOURCE_NODE_MESH
    } else {
        SOURCE_BGP_PEER
    };
    out.learned_from = CalicoNodeRouteLearnedFrom {
        source_type: source.to_string(),
        peer_ip: r
            .from_address
            .map(|a| a.to_string())
            .unwrap_or_else(|| address_from_name(&r.from_name, r.prefix.addr().is_ipv6())),
    };
    out
}

/// Upstream's reading of a protocol name: the part after the type, with
/// `_` as the family's separator (`Mesh_10_0_0_2` → `10.0.0.2`).
fn address_from_name(name: &str, ipv6: bool) -> String {
    let rest = name.split_once('_').map_or("", |(_, r)| r);
    rest.replace('_', if ipv6 { ":" } else { "." })
}

/// `metav1.Time` as JSON: RFC 3339 in UTC, whole seconds.
fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(whole_seconds(t))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// BIRD keeps whole seconds.
fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => UNIX_EPOCH,
    }
}

/// `show status` times (BIRD's `timeformat base`), local time.
fn bird_datetime(t: SystemTime) -> String {
    DateTime::<Local>::from(whole_seconds(t))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A `since` column (BIRD 1.6's `timeformat protocol`): the local time of
/// day within the last 20 hours, the date before that.
fn bird_since(now: SystemTime, t: SystemTime) -> String {
    let age = now.duration_since(t).unwrap_or_default();
    let format = if age.as_secs() < TIME_OF_DAY_LIMIT.as_secs() {
        "%H:%M:%S"
    } else {
        "%Y-%m-%d"
    };
    DateTime::<Local>::from(whole_seconds(t))
        .format(format)
        .to_string()
}

/// The CalicoNodeStatus resources naming this node, and when each was last
/// reported on; the agent feeds it every input and runs it every turn.
pub struct Reports {
    node: String,
    tracked: std::collections::BTreeMap<String, (CalicoNodeStatusSpec, Option<Instant>)>,
}

impl Reports {
    pub fn new(node: &str) -> Reports {
        Reports {
            node: node.to_string(),
            tracked: Default::default(),
        }
    }

    /// Follows CalicoNodeStatus resources: a changed spec is reported on
    /// at once, one for another node is forgotten.
    pub fn on_input(&mut self, input: &calico_calc::input::Input) {
        use calico_api::AnyResource;
        use calico_calc::input::Input;
        match input {
            Input::Resource(AnyResource::CalicoNodeStatus(r)) => {
                let name = r.metadata.name.clone();
                if r.spec.node != self.node {
                    self.tracked.remove(&name);
                    return;
                }
                let unchanged = self.tracked.get(&name).is_some_and(|(s, _)| *s == r.spec);
                if !unchanged {
                    self.tracked.insert(name, (r.spec.clone(), None));
                }
            }
            Input::ResourceRemoved {
                kind: "CalicoNodeStatus",
                name,
                ..
            } => {
                self.tracked.remove(name);
            }
            _ => {}
        }
    }

    /// Writes the reports that are due, from one snapshot of the speaker
    /// (taken only when a report is due).
    pub fn run(&mut self, client: &Client, snapshot: impl FnOnce() -> Option<SpeakerStatus>) {
        let now = Instant::now();
        let due: Vec<String> = self
            .tracked
            .iter()
            .filter(|(_, (spec, last))| due(spec, *last, now))
            .map(|(n, _)| n.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        let snap = snapshot().unwrap_or_default();
        let subnets = crate::bgp::birdctl::local_subnets();
        let iface = |gw: IpAddr| {
            let i = crate::bgp::birdctl::iface_for(&subnets, gw);
            (i != "?").then_some(i)
        };
        for name in due {
            let Some((spec, last)) = self.tracked.get_mut(&name) else {
                continue;
            };
            let status = fill_with(spec, &snap, SystemTime::now(), &iface);
            match write(client, &name, spec, &status) {
                Ok(Written::Updated(_) | Written::Unchanged) => *last = Some(now),
                // The watch brings the new spec or the removal.
                Ok(Written::SpecChanged | Written::Gone) => {}
                Err(e) => {
                    tracing::warn!(%name, error = %e, "cannot write CalicoNodeStatus; will retry")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use calico_bgp::session::SessionStats;
    use calico_bgp::wire::{MpNextHop, PathAttributes};
    use ipnet::IpNet;

    fn spec(classes: &[&str]) -> CalicoNodeStatusSpec {
        CalicoNodeStatusSpec {
            node: "host1".into(),
            classes: Some(classes.iter().map(|c| c.to_string()).collect()),
            update_period_seconds: Some(10),
        }
    }

    const ALL: [&str; 3] = ["Agent", "BGP", "Routes"];

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// 2021-09-19T20:48:43Z, and times before it.
    const NOW: u64 = 1_632_084_523;

    fn peer(name: &str, address: &str, state: State, since: SystemTime) -> PeerStatus {
        PeerStatus {
            name: name.to_string(),
            address: address.parse().unwrap(),
            port: 179,
            local_as: 64512,
            peer_as: 64512,
            state,
            since,
            last_error: None,
            neighbor_id: None,
            source_address: None,
            hold: None,
            keepalive: None,
            rr_client: false,
            passive: false,
            peer_capabilities: Vec::new(),
            received: 0,
            preferred: 0,
            exported: 0,
            synced: false,
            stats: SessionStats::default(),
        }
    }

    fn local_route(prefix: &str) -> RouteStatus {
        RouteStatus {
            prefix: prefix.parse().unwrap(),
            from_name: LOCAL_PROTOCOL.to_string(),
            from_address: None,
            best: true,
            stale: false,
            since: at(NOW - 60),
            attrs: PathAttributes::default(),
        }
    }

    fn learned(prefix: &str, from: &PeerStatus, best: bool) -> RouteStatus {
        let prefix: IpNet = prefix.parse().unwrap();
        let mut attrs = PathAttributes::default();
        match from.address {
            IpAddr::V4(a) => attrs.next_hop = Some(a),
            IpAddr::V6(a) => {
                attrs.mp_next_hop = Some(MpNextHop {
                    global: a,
                    link_local: None,
                })
            }
        }
        RouteStatus {
            prefix,
            from_name: from.name.clone(),
            from_address: Some(from.address),
            best,
            stale: false,
            since: at(NOW - 30),
            attrs,
        }
    }

    /// A mesh peer and a global peer (down) over IPv4, a mesh peer over
    /// IPv6; our two blocks, a block learned from the mesh peer and the same
    /// block (a second path) from the global peer.
    fn snapshot() -> SpeakerStatus {
        let mesh = peer(
            "Mesh_10_0_0_2",
            "10.0.0.2",
            State::Established,
            at(NOW - 50),
        );
        let global = peer(
            "Global_192_168_10_254",
            "192.168.10.254",
            State::Active,
            at(NOW - 25 * 3600),
        );
        let mesh6 = peer("Mesh_fd00__2", "fd00::2", State::Established, at(NOW - 40));
        let routes = vec![
            local_route("10.65.0.0/26"),
            learned("10.65.1.0/26", &mesh, true),
            learned("10.65.1.0/26", &global, false),
            local_route("fd00:65::/122"),
            learned("fd00:65::40/122", &mesh6, true),
        ];
        // Not every field: the snapshot grows fields these tests do not use.
        SpeakerStatus {
            router_id: Some(Ipv4Addr::new(10, 0, 0, 1)),
            local_as: 64512,
            started: Some(at(NOW - 3600)),
            peers: vec![mesh, global, mesh6],
            routes,
            ..Default::default()
        }
    }

    fn eth0(_: IpAddr) -> Option<String> {
        Some("eth0".to_string())
    }

    #[test]
    fn a_mesh_peer_and_a_global_peer() {
        let s = fill(&spec(&["BGP"]), &snapshot(), at(NOW));
        assert_eq!(s.last_updated.as_deref(), Some("2021-09-19T20:48:43Z"));
        let b = &s.bgp;
        assert_eq!(
            (b.number_established_v4, b.number_not_established_v4),
            (1, 1)
        );
        assert_eq!(
            b.peers_v4,
            vec![
                CalicoNodePeer {
                    peer_ip: "10.0.0.2".into(),
                    peer_type: "NodeMesh".into(),
                    state: "Established".into(),
                    since: bird_since(at(NOW), at(NOW - 50)),
                },
                CalicoNodePeer {
                    peer_ip: "192.168.10.254".into(),
                    peer_type: "GlobalPeer".into(),
                    state: "Active".into(),
                    since: bird_since(at(NOW), at(NOW - 25 * 3600)),
                },
            ]
        );
        // A time of day within 20 hours, a date before.
        assert_eq!(b.peers_v4[0].since.len(), "20:47:53".len());
        assert_eq!(b.peers_v4[1].since.len(), "2021-09-18".len());
    }

    #[test]
    fn peer_types_and_states_follow_the_protocol_name_and_bird() {
        let mut snap = snapshot();
        let mut node = peer("Node_10_0_0_9", "10.0.0.9", State::Idle, at(NOW));
        node.passive = true;
        snap.peers.push(node);
        snap.peers
            .push(peer("Other_10_0_0_8", "10.0.0.8", State::Connect, at(NOW)));
        snap.peers
            .push(peer("kernel1", "10.0.0.7", State::Connect, at(NOW)));
        let b = fill(&spec(&["BGP"]), &snap, at(NOW)).bgp;
        let last = b.peers_v4.last().unwrap();
        assert_eq!(last.peer_type, "NodePeer");
        // BIRD says "Passive", which upstream's states do not include.
        assert_eq!(last.state, "");
        assert_eq!(b.peers_v4.len(), 3, "protocols of other names are skipped");
        assert_eq!(b.number_not_established_v4, 2);
    }

    #[test]
    fn ipv6_peers_and_routes_are_reported_apart() {
        let s = fill_with(&spec(&ALL), &snapshot(), at(NOW), &eth0);
        assert_eq!(
            (s.bgp.number_established_v6, s.bgp.number_not_established_v6),
            (1, 0)
        );
        assert_eq!(s.bgp.peers_v6.len(), 1);
        assert_eq!(s.bgp.peers_v6[0].peer_ip, "fd00::2");
        assert_eq!(s.bgp.peers_v6[0].peer_type, "NodeMesh");
        assert_eq!(
            s.routes.routes_v6,
            vec![
                CalicoNodeRoute {
                    route_type: "FIB".into(),
                    destination: "fd00:65::/122".into(),
                    gateway: "N/A".into(),
                    interface: "blackhole".into(),
                    learned_from: CalicoNodeRouteLearnedFrom {
                        source_type: "Static".into(),
                        peer_ip: String::new()
                    },
                },
                CalicoNodeRoute {
                    route_type: "FIB".into(),
                    destination: "fd00:65::40/122".into(),
                    gateway: "fd00::2".into(),
                    interface: "eth0".into(),
                    learned_from: CalicoNodeRouteLearnedFrom {
                        source_type: "NodeMesh".into(),
                        peer_ip: "fd00::2".into()
                    },
                },
            ]
        );
        assert!(s
            .routes
            .routes_v4
            .iter()
            .all(|r| !r.destination.contains(':')));
    }

    #[test]
    fn routes_fib_for_the_best_path_rib_for_the_others() {
        let s = fill(&spec(&["Routes"]), &snapshot(), at(NOW));
        let r = &s.routes.routes_v4;
        assert_eq!(r.len(), 3);
        assert_eq!(
            (
                r[0].route_type.as_str(),
                r[0].learned_from.source_type.as_str()
            ),
            ("FIB", "Static")
        );
        assert_eq!(
            r[1],
            CalicoNodeRoute {
                route_type: "FIB".into(),
                destination: "10.65.1.0/26".into(),
                gateway: "10.0.0.2".into(),
                // fill() knows no interfaces.
                interface: String::new(),
                learned_from: CalicoNodeRouteLearnedFrom {
                    source_type: "NodeMesh".into(),
                    peer_ip: "10.0.0.2".into()
                },
            }
        );
        assert_eq!(r[2].route_type, "RIB");
        assert_eq!(r[2].learned_from.source_type, "BGPPeer");
        assert_eq!(r[2].learned_from.peer_ip, "192.168.10.254");

        // No next hop: BIRD's unreachable. No address: read from the name.
        let mut snap = snapshot();
        snap.routes[1].attrs.next_hop = None;
        snap.routes[1].from_address = None;
        let r = &fill(&spec(&["Routes"]), &snap, at(NOW)).routes.routes_v4[1];
        assert_eq!(
            (r.gateway.as_str(), r.interface.as_str()),
            ("N/A", "unreachable")
        );
        assert_eq!(r.learned_from.peer_ip, "10.0.0.2");
    }

    #[test]
    fn the_agent_class() {
        let s = fill(&spec(&["Agent"]), &snapshot(), at(NOW));
        let d = &s.agent.bird_v4;
        assert_eq!(d.state, "Ready");
        assert_eq!(d.version, "v0.3.3+birdv1.6.8");
        assert_eq!(d.router_id, "10.0.0.1");
        assert_eq!(d.last_boot_time, bird_datetime(at(NOW - 3600)));
        assert_eq!(d.last_reconfiguration_time, d.last_boot_time);
        assert_eq!(s.agent.bird_v6, *d);

        // No speaker: NotReady and nothing else, for both families.
        let s = fill(&spec(&["Agent"]), &SpeakerStatus::default(), at(NOW));
        let not_ready = BGPDaemonStatus {
            state: "NotReady".into(),
            ..Default::default()
        };
        assert_eq!(s.agent.bird_v4, not_ready);
        assert_eq!(s.agent.bird_v6, not_ready);
    }

    #[test]
    fn only_the_requested_classes_are_filled() {
        let snap = snapshot();
        let s = fill(&spec(&["Agent", "Routes"]), &snap, at(NOW));
        assert_eq!(s.bgp, CalicoNodeBGPStatus::default());
        assert_ne!(s.agent, CalicoNodeAgentStatus::default());
        assert!(!s.routes.routes_v4.is_empty());

        let s = fill(&spec(&["BGP"]), &snap, at(NOW));
        assert_eq!(s.agent, CalicoNodeAgentStatus::default());
        assert_eq!(s.routes, CalicoNodeBGPRouteStatus::default());

        let s = fill(&spec(&[]), &snap, at(NOW));
        assert_eq!(
            s,
            CalicoNodeStatusStatus {
                last_updated: Some("2021-09-19T20:48:43Z".into()),
                ..Default::default()
            }
        );
    }

    /// What upstream's populators would read from our BIRD sockets for
    /// the same snapshot is what `fill` reports.
    #[test]
    fn fill_agrees_with_what_birdc_shows() {
        use calico_bgp::birdctl::{bird_view, reply};
        let snap = snapshot();
        let now = at(NOW);
        let s = fill_with(&spec(&ALL), &snap, now, &eth0);
        for ipv6 in [false, true] {
            let mut view = bird_view(&snap, ipv6, &|_| "eth0".to_string());
            view.now = now;
            let text = |cmd: &str| String::from_utf8(reply(&view, cmd)).unwrap();
            // A reply line's text, as upstream's parsers take it: after
            // `CODE-` or the one space that continues a code.
            let data = |l: &str| -> String {
                match l.strip_prefix(' ') {
                    Some(rest) => rest.to_string(),
                    None => l.get(5..).unwrap_or_default().to_string(),
                }
            };

            let status = text("show status");
            let daemon = if ipv6 {
                &s.agent.bird_v6
            } else {
                &s.agent.bird_v4
            };
            assert!(status.contains(&format!("1000-BIRD {}\n", daemon.version)));
            assert!(status.contains(&format!("Router ID is {}\n", daemon.router_id)));
            assert!(status.contains(&format!("Last reboot on {}\n", daemon.last_boot_time)));
            assert!(status.contains(&format!(
                "Last reconfiguration on {}\n",
                daemon.last_reconfiguration_time
            )));

            // show protocols: name proto table state since info.
            let peers = if ipv6 {
                &s.bgp.peers_v6
            } else {
                &s.bgp.peers_v4
            };
            let rows: Vec<Vec<String>> = text("show protocols")
                .lines()
                .map(|l| data(l).split_whitespace().map(str::to_string).collect())
                .filter(|c: &Vec<String>| c.len() >= 6 && c[1] == "BGP")
                .collect();
            assert_eq!(rows.len(), peers.len());
            for (row, p) in rows.iter().zip(peers) {
                assert_eq!(row[4], p.since, "{row:?}");
                let all = text(&format!("show protocols all {}", row[0]));
                let field = |key: &str| {
                    all.lines()
                        .find_map(|l| l.split_once(key).map(|(_, v)| v.trim().to_string()))
                        .unwrap()
                };
                assert_eq!(field("BGP state:"), p.state);
                assert_eq!(field("Neighbor address:"), p.peer_ip);
                let up = row[3] == "up";
                assert_eq!(up, p.state == "Established");
            }

            // show route: "DEST via GW on IFACE [PROTO TIME] * ..." or
            // "DEST blackhole [static1 TIME] * ...".
            let routes = if ipv6 {
                &s.routes.routes_v6
            } else {
                &s.routes.routes_v4
            };
            let shown: Vec<String> = text("show route")
                .lines()
                .filter(|l| l.contains('['))
                .map(|l| data(l).to_string())
                .collect();
            assert_eq!(shown.len(), routes.len(), "{shown:?}");
            let mut dest = String::new();
            for (line, r) in shown.iter().zip(routes) {
                let words: Vec<&str> = line.split_whitespace().collect();
                if !line.starts_with(' ') {
                    dest = words[0].to_string();
                }
                assert_eq!(dest, r.destination, "{line}");
                assert_eq!(line.contains("] *"), r.route_type == "FIB", "{line}");
                if let Some(i) = words.iter().position(|w| *w == "via") {
                    assert_eq!(words[i + 1], r.gateway);
                    assert_eq!(words[i + 3], r.interface);
                } else {
                    assert!(line.contains(" blackhole "), "{line}");
                    assert_eq!(r.interface, "blackhole");
                }
            }
        }
    }

    #[test]
    fn due_follows_the_period() {
        let t0 = Instant::now();
        let s = spec(&["BGP"]);
        assert!(due(&s, None, t0), "a new request is reported at once");
        assert!(!due(&s, Some(t0), t0 + Duration::from_secs(9)));
        assert!(due(&s, Some(t0), t0 + Duration::from_secs(10)));
        let once = CalicoNodeStatusSpec {
            update_period_seconds: Some(0),
            ..s.clone()
        };
        assert!(due(&once, None, t0));
        assert!(!due(&once, Some(t0), t0 + Duration::from_secs(86_400 * 7)));
        let unset = CalicoNodeStatusSpec {
            update_period_seconds: None,
            ..s
        };
        assert!(!due(&unset, None, t0));
    }

    fn store() -> (tempfile::TempDir, Client) {
        let dir = tempfile::tempdir().unwrap();
        let store = calico_datastore::LocalStore::open(dir.path().join("db")).unwrap();
        (dir, Client::new(Arc::new(store)))
    }

    fn read(c: &Client, name: &str) -> CalicoNodeStatus {
        c.get_as::<CalicoNodeStatus>("", name).unwrap().unwrap()
    }

    fn create(c: &Client, name: &str, s: &CalicoNodeStatusSpec) {
        c.create(CalicoNodeStatus::new(name, s.clone()).into())
            .unwrap();
    }

    #[test]
    fn the_writer_stores_only_the_status() {
        let (_dir, c) = store();
        let s = spec(&ALL);
        let mut r = CalicoNodeStatus::new("st", s.clone());
        r.metadata.labels.insert("team".into(), "net".into());
        c.create(r.into()).unwrap();
        let before = read(&c, "st");

        let report = fill(&s, &snapshot(), at(NOW));
        let Written::Updated(rv) = write(&c, "st", &s, &report).unwrap() else {
            panic!("not written")
        };
        let after = read(&c, "st");
        assert_eq!(after.metadata.resource_version, rv);
        assert_eq!(after.status, report);
        assert_eq!(after.spec, before.spec);
        assert_eq!(after.metadata.labels, before.metadata.labels);
        assert_eq!(after.metadata.uid, before.metadata.uid);
        assert_eq!(
            after.metadata.creation_timestamp,
            before.metadata.creation_timestamp
        );

        // The same report later: nothing to write, lastUpdated stays.
        let later = fill(&s, &snapshot(), at(NOW + 10));
        assert_eq!(write(&c, "st", &s, &later).unwrap(), Written::Unchanged);
        assert_eq!(read(&c, "st").metadata.resource_version, rv);
        assert_eq!(
            read(&c, "st").status.last_updated.as_deref(),
            Some("2021-09-19T20:48:43Z")
        );

        // A changed report is written.
        let mut snap = snapshot();
        snap.peers[1].state = State::Established;
        let changed = fill(&s, &snap, at(NOW + 20));
        assert!(matches!(
            write(&c, "st", &s, &changed).unwrap(),
            Written::Updated(_)
        ));
        assert_eq!(read(&c, "st").status.bgp.number_established_v4, 2);

        assert_eq!(write(&c, "gone", &s, &changed).unwrap(), Written::Gone);
    }

    #[test]
    fn a_spec_changed_meanwhile_is_never_overwritten() {
        let (dir, c) = store();
        let s = spec(&ALL);
        create(&c, "st", &s);
        let report = fill(&s, &snapshot(), at(NOW));

        // Changed before the read: nothing is written.
        let mut r = read(&c, "st");
        r.spec.classes = Some(vec!["BGP".into()]);
        c.replace(r.into()).unwrap();
        assert_eq!(write(&c, "st", &s, &report).unwrap(), Written::SpecChanged);
        assert_eq!(read(&c, "st").status, CalicoNodeStatusStatus::default());

        // Changed between the read and the swap, by another client: the swap
        // fails, the re-read sees the new spec, nothing is written.
        let s = read(&c, "st").spec;
        let report = fill(&s, &snapshot(), at(NOW));
        let other = Client::new(Arc::new(
            calico_datastore::LocalStore::open(dir.path().join("db")).unwrap(),
        ));
        let mut calls = 0;
        let outcome = write_inner(&c, "st", &s, &report, &mut || {
            calls += 1;
            let mut r = read(&other, "st");
            r.spec.update_period_seconds = Some(60);
            other.replace(r.into()).unwrap();
        })
        .unwrap();
        assert_eq!(outcome, Written::SpecChanged);
        assert_eq!(calls, 1);
        let stored = read(&c, "st");
        assert_eq!(stored.spec.update_period_seconds, Some(60));
        assert_eq!(stored.status, CalicoNodeStatusStatus::default());
    }

    #[test]
    fn a_conflict_over_metadata_is_retried_and_keeps_it() {
        let (_dir, c) = store();
        let s = spec(&["BGP"]);
        create(&c, "st", &s);
        let report = fill(&s, &snapshot(), at(NOW));
        let mut calls = 0;
        let outcome = write_inner(&c, "st", &s, &report, &mut || {
            calls += 1;
            if calls == 1 {
                let mut r = read(&c, "st");
                r.metadata.labels.insert("seen".into(), "yes".into());
                c.replace(r.into()).unwrap();
            }
        })
        .unwrap();
        assert!(matches!(outcome, Written::Updated(_)), "{outcome:?}");
        assert_eq!(calls, 2);
        let stored = read(&c, "st");
        assert_eq!(stored.status, report);
        assert_eq!(
            stored.metadata.labels.get("seen").map(String::as_str),
            Some("yes")
        );
    }

    #[test]
    fn endless_conflicts_are_an_error() {
        let (_dir, c) = store();
        let s = spec(&["BGP"]);
        create(&c, "st", &s);
        let report = fill(&s, &snapshot(), at(NOW));
        let mut n = 0;
        let e = write_inner(&c, "st", &s, &report, &mut || {
            n += 1;
            let mut r = read(&c, "st");
            r.metadata.labels.insert("n".into(), n.to_string());
            c.replace(r.into()).unwrap();
        })
        .unwrap_err();
        assert!(
            matches!(&e, ClientError::Conflict { .. })
                || matches!(&e, ClientError::Store(s) if s.is_conflict()),
            "{e}"
        );
        assert_eq!(n, MAX_ATTEMPTS);
        assert_eq!(read(&c, "st").status, CalicoNodeStatusStatus::default());
    }

    /// A resource written by a newer version, with fields this one does not
    /// know in its spec and status, is read, and its status rewritten.
    #[test]
    fn a_newer_stored_resource_is_read_and_its_status_rewritten() {
        let (_dir, c) = store();
        let key = "/calico/resources/v3/projectcalico.org/caliconodestatuses/st";
        let value = serde_json::json!({
            "apiVersion": "projectcalico.org/v3", "kind": "CalicoNodeStatus",
            "metadata": {"name": "st", "uid": "u1", "creationTimestamp": "2021-09-19T20:00:00Z"},
            "spec": {"node": "host1", "classes": ["BGP"], "updatePeriodSeconds": 10},
            "status": {
                "lastUpdated": "2021-09-19T20:10:00Z",
                "conditions": [{"type": "Ready", "status": "True"}],
                "agent": {"birdV4": {}, "birdV6": {}},
                "bgp": {"numberEstablishedV4": 0, "numberNotEstablishedV4": 1,
                        "numberEstablishedV6": 0, "numberNotEstablishedV6": 0,
                        "peersV4": [{"peerIP": "10.0.0.2", "type": "NodeMesh", "state": "Active",
                                     "since": "20:00:00", "reason": "connect failed"}]},
                "routes": {}
            }
        });
        c.store()
            .txn(&[calico_datastore::Op::Create {
                key: key.to_string(),
                value: serde_json::to_vec(&value).unwrap(),
                lease: None,
            }])
            .unwrap();
        let stored = read(&c, "st");
        assert_eq!(stored.status.bgp.number_not_established_v4, 1);
        assert_eq!(stored.status.bgp.peers_v4[0].state, "Active");

        let report = fill(&stored.spec, &snapshot(), at(NOW));
        assert!(matches!(
            write(&c, "st", &stored.spec, &report).unwrap(),
            Written::Updated(_)
        ));
        let raw: serde_json::Value =
            serde_json::from_slice(&c.store().get(key).unwrap().unwrap().value).unwrap();
        assert_eq!(raw["status"]["bgp"]["numberEstablishedV4"], 1);
        assert_eq!(raw["status"]["lastUpdated"], "2021-09-19T20:48:43Z");
        assert_eq!(raw["metadata"]["uid"], "u1");
        // Fields this version does not know are dropped on write, as upstream
        // drops them.
        assert!(raw["status"].get("conditions").is_none());
    }

    #[test]
    fn addresses_from_protocol_names() {
        assert_eq!(address_from_name("Mesh_10_0_0_2", false), "10.0.0.2");
        assert_eq!(
            address_from_name("Global_fd80_24e2_f998_72d7__2", true),
            "fd80:24e2:f998:72d7::2"
        );
        assert_eq!(peer_type("Mesh_"), None);
        assert_eq!(peer_type("static1"), None);
    }
}
