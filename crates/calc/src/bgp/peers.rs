//! This node's peerings: the mesh, then the BGPPeers' global, node-specific
//! and reverse peerings, in upstream's order of precedence.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use calico_api::duration::parse_go_duration;
use calico_api::network::{BGPPeerSpec, BgpPassword};

use super::store::{NodeBgp, PeerDef, Store};
use super::{NextHopMode, Password, PeerIntent, PeerKind, DEFAULT_PORT};

pub(super) struct Ctx<'a> {
    pub store: &'a Store,
    pub me_name: &'a str,
    pub me: &'a NodeBgp,
    pub local_as: u32,
    pub secrets: &'a Path,
    /// Passwords read during this computation, by secret name and key (a
    /// reflector's BGPPeer gives hundreds of peerings the same one).
    pub read: RefCell<BTreeMap<(String, String), Option<Password>>>,
}

/// Where a peering is keyed, as upstream's v1 peer keys: global peerings by
/// address and port, node-specific ones (for this node) likewise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Global,
    Node,
}

/// A peering before it is rendered for this node (upstream's v1 `BGPPeer`).
#[derive(Clone, Debug)]
struct Candidate {
    bgp_peer: String,
    ip: IpAddr,
    /// 0: not set.
    port: u16,
    peer_as: u32,
    /// 0: not set.
    local_as: u32,
    use_node_ip: bool,
    keep_next_hop: bool,
    next_hop_mode: Option<NextHopMode>,
    /// The address is some Calico node's.
    calico_node: bool,
    ttl: u8,
    filters: Vec<String>,
    num_allow_local_as: u32,
    reachable_by: Option<IpAddr>,
    rr_cluster_id: Option<String>,
    password: Option<Password>,
    restart_time: Option<Duration>,
    local_workload: bool,
    passive: bool,
}

/// Seconds, rounded as upstream rounds `maxRestartTime`.
fn restart_time(
    what: &str,
    field: &str,
    v: &Option<String>,
    w: &mut Vec<String>,
) -> Option<Duration> {
    let s = v.as_deref()?;
    match parse_go_duration(s) {
        Ok(d) => Some(Duration::from_secs(d.as_secs_f64().round() as u64)),
        Err(e) => {
            w.push(format!("{what}: invalid {field} {s:?} ({e}); default used"));
            None
        }
    }
}

fn next_hop(spec: &BGPPeerSpec) -> (bool, Option<NextHopMode>) {
    match spec.next_hop_mode.as_deref() {
        // nextHopMode, when set, replaces keepOriginalNextHop.
        Some(m) => (
            false,
            match m {
                "Self" => Some(NextHopMode::ForceSelf),
                "Keep" => Some(NextHopMode::Keep),
                _ => Some(NextHopMode::Auto),
            },
        ),
        None => (spec.keep_original_next_hop == Some(true), None),
    }
}

impl Ctx<'_> {
    fn nodes(&self) -> impl Iterator<Item = (&String, &NodeBgp)> {
        self.store.nodes.iter()
    }

    fn secret(&self, what: &str, p: &Option<BgpPassword>, w: &mut Vec<String>) -> Option<Password> {
        let r = p.as_ref()?.secret_key_ref.as_ref()?;
        let key = (r.name.clone(), r.key.clone());
        if let Some(known) = self.read.borrow().get(&key) {
            return known.clone();
        }
        let path = self.secrets.join(&r.name).join(&r.key);
        let pw = match std::fs::read_to_string(&path) {
            Ok(mut s) => {
                if s.ends_with('\n') {
                    s.pop();
                    if s.ends_with('\r') {
                        s.pop();
                    }
                }
                Some(Password(s))
            }
            Err(e) => {
                w.push(format!(
                    "{what}: password secret {}/{} not readable at {} ({e}); peering without a password",
                    r.name,
                    r.key,
                    path.display()
                ));
                None
            }
        };
        self.read.borrow_mut().insert(key, pw.clone());
        pw
    }

    /// The fields every peering of a BGPPeer shares (upstream's
    /// `setPeerConfigFieldsFromV3Resource`).
    fn finish(&self, name: &str, spec: &BGPPeerSpec, c: &mut Candidate, w: &mut Vec<String>) {
        let what = format!("BGPPeer {name}");
        c.password = self.secret(&what, &spec.password, w);
        c.use_node_ip = spec.source_address.as_deref() != Some("None");
        c.restart_time = restart_time(&what, "maxRestartTime", &spec.max_restart_time, w);
    }

    /// Peerings with a Calico node's addresses (upstream's `nodeAsBGPPeers`).
    fn node_as_peers(
        &self,
        peer_name: &str,
        def: &PeerDef,
        (node_name, node): (&String, &NodeBgp),
        families: [bool; 2],
        w: &mut Vec<String>,
    ) -> Vec<Candidate> {
        let s = self.store;
        let mut out = Vec::new();
        for (v6, wanted) in [(false, families[0]), (true, families[1])] {
            let Some(ip) = node.addr(v6).filter(|_| wanted) else {
                continue;
            };
            let (keep_next_hop, next_hop_mode) = next_hop(&def.spec);
            let mut c = Candidate {
                bgp_peer: peer_name.to_string(),
                ip,
                port: s.listen_port_of(node_name).unwrap_or(0),
                peer_as: s.as_of(node),
                local_as: 0,
                use_node_ip: true,
                keep_next_hop,
                next_hop_mode,
                calico_node: false,
                ttl: def.spec.ttl_security.unwrap_or(0),
                filters: def.spec.filters.clone(),
                num_allow_local_as: 0,
                reachable_by: self.reachable_by(peer_name, def, ip, w),
                rr_cluster_id: node.rr_cluster_id.clone(),
                password: None,
                restart_time: None,
                local_workload: false,
                passive: false,
            };
            self.finish(peer_name, &def.spec, &mut c, w);
            out.push(c);
        }
        out
    }

    fn reachable_by(
        &self,
        name: &str,
        def: &PeerDef,
        ip: IpAddr,
        w: &mut Vec<String>,
    ) -> Option<IpAddr> {
        let r = def.spec.reachable_by.as_str();
        if r.is_empty() {
            return None;
        }
        match r.parse::<IpAddr>() {
            Ok(gw) if gw.is_ipv4() == ip.is_ipv4() => Some(gw),
            _ => {
                w.push(format!(
                    "BGPPeer {name}: reachableBy {r:?} is not an address of {ip}'s family; ignored"
                ));
                None
            }
        }
    }

    /// Nodes whose address is `ip`, whose AS is `asn` (0: the cluster's)
    /// and whose listen port, when both are known, is `port`.
    fn nodes_with(&self, ip: IpAddr, asn: u32, port: Option<u16>) -> Vec<&String> {
        let s = self.store;
        let want_as = if asn == 0 { s.global_as() } else { asn };
        self.nodes()
            .filter(|(_, n)| n.has_addr(ip) && s.as_of(n) == want_as)
            .filter(|(name, _)| match (port, s.listen_port_of(name)) {
                (Some(p), Some(lp)) => p == lp,
                _ => true,
            })
            .map(|(name, _)| name)
            .collect()
    }

    /// The forward peerings of one BGPPeer (upstream's first two passes).
    fn forward(&self, name: &str, def: &PeerDef, w: &mut Vec<String>) -> Vec<Candidate> {
        let spec = &def.spec;
        if def.workload_selector.is_set() {
            return self.workload_peers(name, def);
        }
        if def.peer_selector.is_set() {
            return self
                .nodes()
                .filter(|(_, n)| def.peer_selector.matches(&n.labels))
                .flat_map(|n| self.node_as_peers(name, def, n, [true, true], w))
                .collect();
        }
        let Some((ip, port)) = def.peer_ip() else {
            if !spec.peer_ip.is_empty() {
                w.push(format!(
                    "BGPPeer {name}: peerIP {:?} is not an address (or address:port); skipped",
                    spec.peer_ip
                ));
            }
            return vec![];
        };
        let peer_as = spec.as_number.map_or(0, |a| a.0);
        if peer_as == 0 {
            w.push(format!(
                "BGPPeer {name}: peerIP {} has no asNumber; skipped",
                spec.peer_ip
            ));
            return vec![];
        }
        let reachable_by = match spec.reachable_by.as_str() {
            "" => None,
            r => match r.parse::<IpAddr>() {
                Ok(gw) if gw.is_ipv4() == ip.is_ipv4() => Some(gw),
                _ => {
                    // Upstream drops the whole BGPPeer here.
                    w.push(format!(
                        "BGPPeer {name}: reachableBy {r:?} is not an address of peerIP's family; skipped"
                    ));
                    return vec![];
                }
            },
        };
        // Without a port, a peer that is a Calico node is reached on its
        // listen port.
        let port = port.unwrap_or_else(|| {
            self.nodes_with(ip, peer_as, None)
                .first()
                .and_then(|n| self.store.listen_port_of(n))
                .unwrap_or(0)
        });
        let (keep_next_hop, next_hop_mode) = next_hop(spec);
        let mut c = Candidate {
            bgp_peer: name.to_string(),
            ip,
            port,
            peer_as,
            local_as: spec.local_as_number.map_or(0, |a| a.0),
            use_node_ip: true,
            keep_next_hop,
            next_hop_mode,
            calico_node: self.nodes().any(|(_, n)| n.has_addr(ip)),
            ttl: spec.ttl_security.unwrap_or(0),
            filters: spec.filters.clone(),
            num_allow_local_as: spec.num_allowed_local_as_numbers.unwrap_or(0),
            reachable_by,
            rr_cluster_id: None,
            password: None,
            restart_time: None,
            local_workload: false,
            passive: false,
        };
        self.finish(name, spec, &mut c, w);
        vec![c]
    }

    /// Local workloads the BGPPeer's `localWorkloadSelector` matches: their
    /// first IPv4 and first IPv6 address, passive, no source address. (The
    /// selector sees the endpoint's own labels and its namespace and
    /// orchestrator labels, not labels inherited from profiles.)
    fn workload_peers(&self, name: &str, def: &PeerDef) -> Vec<Candidate> {
        let spec = &def.spec;
        let mut out = Vec::new();
        for wep in self.store.local_weps.values() {
            // A workload peers through one BGPPeer: the first by name of
            // those that apply to this node and select it (Felix's choice).
            let active = self.store.peers.iter().find(|(_, d)| {
                d.workload_selector.matches(&wep.labels) && d.applies_to(self.me_name, self.me)
            });
            if active.map(|(n, _)| n.as_str()) != Some(name) {
                continue;
            }
            let first = |v6: bool| wep.addrs.iter().find(|a| a.is_ipv6() == v6).copied();
            for ip in [first(false), first(true)].into_iter().flatten() {
                out.push(Candidate {
                    bgp_peer: name.to_string(),
                    ip,
                    port: 0,
                    peer_as: spec.as_number.map_or(0, |a| a.0),
                    local_as: spec.local_as_number.map_or(0, |a| a.0),
                    use_node_ip: false,
                    keep_next_hop: false,
                    next_hop_mode: None,
                    calico_node: false,
                    ttl: 0,
                    filters: spec.filters.clone(),
                    num_allow_local_as: 0,
                    reachable_by: None,
                    rr_cluster_id: None,
                    password: None,
                    restart_time: None,
                    local_workload: true,
                    passive: true,
                });
            }
        }
        out
    }

    /// The reverse peerings a BGPPeer gives this node: when this node is
    /// one the BGPPeer points at, peerings back to the nodes it applies to.
    fn reverse(&self, name: &str, def: &PeerDef, w: &mut Vec<String>) -> Vec<Candidate> {
        let spec = &def.spec;
        if spec.reverse_peering.as_deref() == Some("Manual") || def.workload_selector.is_set() {
            return vec![];
        }
        let families = if def.peer_selector.is_set() {
            if !def.peer_selector.matches(&self.me.labels) {
                return vec![];
            }
            [true, true]
        } else {
            let Some((ip, port)) = def.peer_ip() else {
                return vec![];
            };
            let asn = spec.as_number.map_or(0, |a| a.0);
            if !self
                .nodes_with(ip, asn, port)
                .iter()
                .any(|n| *n == self.me_name)
            {
                return vec![];
            }
            [ip.is_ipv4(), ip.is_ipv6()]
        };
        self.nodes()
            .filter(|(n, node)| {
                if !spec.node.is_empty() {
                    spec.node == **n
                } else if def.node_selector.is_set() {
                    def.node_selector.matches(&node.labels)
                } else {
                    true
                }
            })
            .flat_map(|n| self.node_as_peers(name, def, n, families, w))
            .collect()
    }

    /// Every peering of this node, by name.
    pub fn peers(&self, w: &mut Vec<String>) -> BTreeMap<String, PeerIntent> {
        let mut out = BTreeMap::new();
        self.mesh(&mut out, w);
        let mut emitted: BTreeMap<(Scope, IpAddr, u16), Candidate> = BTreeMap::new();
        let mut emit = |scope: Scope, c: Candidate| {
            if emitted.contains_key(&(Scope::Global, c.ip, c.port)) {
                return;
            }
            emitted.entry((scope, c.ip, c.port)).or_insert(c);
        };
        let defs = &self.store.peers;
        // Global peerings first, so that node-specific ones to the same
        // address and port give way to them.
        for (name, def) in defs.iter().filter(|(_, d)| d.is_global()) {
            for c in self.forward(name, def, w) {
                emit(Scope::Global, c);
            }
        }
        for (name, def) in defs.iter().filter(|(_, d)| !d.is_global()) {
            if def.applies_to(self.me_name, self.me) {
                for c in self.forward(name, def, w) {
                    emit(Scope::Node, c);
                }
            }
        }
        for (name, def) in defs {
            for c in self.reverse(name, def, w) {
                emit(Scope::Node, c);
            }
        }
        for ((scope, _, _), c) in emitted {
            if let Some(p) = self.render(scope, c) {
                out.insert(p.name.clone(), p);
            }
        }
        out
    }

    /// A candidate as a session of this node (None: with ourselves, or of a
    /// family we have no address of).
    fn render(&self, scope: Scope, c: Candidate) -> Option<PeerIntent> {
        let mine = self.me.addr(c.ip.is_ipv6())?;
        if c.ip == mine {
            return None;
        }
        let (prefix, kind) = match (c.local_workload, scope) {
            (true, _) => ("Local_Workload", PeerKind::LocalWorkload),
            (false, Scope::Global) => ("Global", PeerKind::Global),
            (false, Scope::Node) => ("Node", PeerKind::NodeSpecific),
        };
        let mut name = format!("{prefix}_{}", name_part(c.ip));
        if c.port > 0 {
            name.push_str(&format!("_port_{}", c.port));
        }
        let local_as = if c.local_as != 0 {
            c.local_as
        } else {
            self.local_as
        };
        let my_rr = self.me.rr_cluster_id.as_deref();
        let rr_client =
            c.peer_as == local_as && my_rr.is_some() && c.rr_cluster_id.as_deref() != my_rr;
        let passive = c.passive
            || (scope == Scope::Global && c.calico_node && c.ip.to_string() > mine.to_string());
        Some(PeerIntent {
            name,
            kind,
            bgp_peer: Some(c.bgp_peer),
            address: c.ip,
            port: if c.port > 0 { c.port } else { DEFAULT_PORT },
            peer_as: c.peer_as,
            local_as,
            passive,
            source_address: c.use_node_ip.then_some(mine),
            rr_client,
            keep_next_hop: c.keep_next_hop && c.peer_as != local_as,
            next_hop_mode: c.next_hop_mode,
            restart_time: c.restart_time,
            password: c.password,
            filters: c.filters,
            ttl_security: (c.ttl > 0).then_some(c.ttl),
            num_allowed_local_as: (c.num_allow_local_as > 0).then_some(c.num_allow_local_as),
            reachable_by: c.reachable_by,
        })
    }

    /// The node-to-node mesh.
    fn mesh(&self, out: &mut BTreeMap<String, PeerIntent>, w: &mut Vec<String>) {
        let s = self.store;
        if !s.mesh_enabled() || self.me.rr_cluster_id.is_some() {
            return;
        }
        let cfg = s.default_config();
        let restart = cfg.and_then(|c| {
            restart_time(
                "BGPConfiguration default",
                "nodeMeshMaxRestartTime",
                &c.node_mesh_max_restart_time,
                w,
            )
        });
        let password = cfg.and_then(|c| {
            self.secret(
                "BGPConfiguration default (nodeMeshPassword)",
                &c.node_mesh_password,
                w,
            )
        });
        let mut seen: BTreeSet<IpAddr> = BTreeSet::new();
        for (name, n) in self.nodes() {
            if n.rr_cluster_id.is_some() {
                continue;
            }
            for v6 in [false, true] {
                let (Some(mine), Some(ip)) = (self.me.addr(v6), n.addr(v6)) else {
                    continue;
                };
                // Ourselves; and one session per address should two nodes
                // claim the same one.
                if ip == mine || !seen.insert(ip) {
                    continue;
                }
                let p = PeerIntent {
                    name: format!("Mesh_{}", name_part(ip)),
                    kind: PeerKind::Mesh,
                    bgp_peer: None,
                    address: ip,
                    port: s.listen_port_of(name).unwrap_or(DEFAULT_PORT),
                    peer_as: s.as_of(n),
                    local_as: self.local_as,
                    passive: ip.to_string() > mine.to_string(),
                    source_address: Some(mine),
                    rr_client: false,
                    keep_next_hop: false,
                    next_hop_mode: None,
                    restart_time: restart,
                    password: password.clone(),
                    filters: vec![],
                    ttl_security: None,
                    num_allowed_local_as: None,
                    reachable_by: None,
                };
                out.insert(p.name.clone(), p);
            }
        }
    }
}

/// The address as it appears in a BIRD protocol name: `.` and `:` become `_`.
pub(super) fn name_part(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "_")
}
