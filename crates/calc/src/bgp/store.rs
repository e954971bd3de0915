//! What BGP keeps of the inputs, in the form the computation reads.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use calico_api::endpoint::WorkloadEndpoint;
use calico_api::network::{
    parse_peer_ip, BGPConfigurationSpec, BGPFilterSpec, BGPPeer, BGPPeerSpec, IPPool, Node,
};
use calico_api::selector::Selector;
use calico_api::{AnyResource, LABEL_NAMESPACE, LABEL_ORCHESTRATOR};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{BgpCommunity, Encapsulation, PoolRouting, DEFAULT_AS};
use crate::input::{AffinityState, Input};

/// A Node as BGP sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct NodeBgp {
    pub v4: Option<Ipv4Net>,
    pub v6: Option<Ipv6Net>,
    pub asn: Option<u32>,
    /// Present (non-empty) on route reflectors; kept as text because
    /// upstream compares cluster IDs as text.
    pub rr_cluster_id: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl NodeBgp {
    pub fn addr(&self, v6: bool) -> Option<IpAddr> {
        if v6 {
            self.v6.map(|n| IpAddr::V6(n.addr()))
        } else {
            self.v4.map(|n| IpAddr::V4(n.addr()))
        }
    }

    pub fn has_addr(&self, a: IpAddr) -> bool {
        self.addr(a.is_ipv6()) == Some(a)
    }
}

/// A selector field: unset, or parsed (None when it does not parse, which
/// matches nothing, as upstream's `nodesMatching` on a parse error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Sel {
    Unset,
    Set(Option<Selector>),
}

impl Sel {
    fn parse(field: &str, what: &str, s: &str, warnings: &mut Vec<String>) -> Sel {
        if s.is_empty() {
            return Sel::Unset;
        }
        match Selector::parse(s) {
            Ok(sel) => Sel::Set(Some(sel)),
            Err(e) => {
                warnings.push(format!(
                    "{what}: invalid {field} {s:?}: {e}; it selects nothing"
                ));
                Sel::Set(None)
            }
        }
    }

    pub fn is_set(&self) -> bool {
        matches!(self, Sel::Set(_))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Sel::Unset => false,
            Sel::Set(s) => s.as_ref().is_some_and(|s| s.matches(labels)),
        }
    }
}

/// A BGPPeer with its selectors parsed.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct PeerDef {
    pub spec: BGPPeerSpec,
    pub node_selector: Sel,
    pub peer_selector: Sel,
    pub workload_selector: Sel,
}

impl PeerDef {
    fn new(p: &BGPPeer, warnings: &mut Vec<String>) -> PeerDef {
        let what = format!("BGPPeer {}", p.metadata.name);
        let s = &p.spec;
        PeerDef {
            node_selector: Sel::parse("nodeSelector", &what, &s.node_selector, warnings),
            peer_selector: Sel::parse("peerSelector", &what, &s.peer_selector, warnings),
            workload_selector: Sel::parse(
                "localWorkloadSelector",
                &what,
                &s.local_workload_selector,
                warnings,
            ),
            spec: s.clone(),
        }
    }

    /// Applies to every node (no `node`, no `nodeSelector`).
    pub fn is_global(&self) -> bool {
        self.spec.node.is_empty() && !self.node_selector.is_set()
    }

    /// Applies to the node with this name and labels.
    pub fn applies_to(&self, name: &str, n: &NodeBgp) -> bool {
        if !self.spec.node.is_empty() {
            self.spec.node == name
        } else if self.node_selector.is_set() {
            self.node_selector.matches(&n.labels)
        } else {
            true
        }
    }

    /// `peerIP` split, when set and valid.
    pub fn peer_ip(&self) -> Option<(IpAddr, Option<u16>)> {
        if self.spec.peer_ip.is_empty() {
            return None;
        }
        parse_peer_ip(&self.spec.peer_ip).ok()
    }
}

/// One of this host's workload endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct LocalWep {
    pub addrs: Vec<IpAddr>,
    pub floating: Vec<IpAddr>,
    pub labels: BTreeMap<String, String>,
}

pub(super) struct Store {
    me: String,
    pub nodes: BTreeMap<String, NodeBgp>,
    pub peers: BTreeMap<String, PeerDef>,
    /// The `default` BGPConfiguration and this node's `node.<name>`.
    default: Option<BGPConfigurationSpec>,
    mine: Option<BGPConfigurationSpec>,
    /// `listenPort` of every `node.<name>` configuration that sets one.
    node_ports: BTreeMap<String, u16>,
    pub filters: BTreeMap<String, BGPFilterSpec>,
    pub pools: BTreeMap<String, PoolRouting>,
    /// Every IPAM block and the host it is affine to.
    pub blocks: BTreeMap<IpNet, Option<String>>,
    /// This host's block affinities.
    pub affinities: BTreeMap<IpNet, AffinityState>,
    pub local_weps: BTreeMap<(String, String), LocalWep>,
}

/// Sets `slot`, reporting whether the value changed.
fn set<K: Ord, V: PartialEq>(map: &mut BTreeMap<K, V>, k: K, v: Option<V>) -> bool {
    match v {
        Some(v) => {
            if map.get(&k) == Some(&v) {
                false
            } else {
                map.insert(k, v);
                true
            }
        }
        None => map.remove(&k).is_some(),
    }
}

fn set_opt<V: PartialEq>(slot: &mut Option<V>, v: Option<V>) -> bool {
    if *slot == v {
        false
    } else {
        *slot = v;
        true
    }
}

impl Store {
    pub fn new(me: &str) -> Store {
        Store {
            me: me.to_string(),
            nodes: BTreeMap::new(),
            peers: BTreeMap::new(),
            default: None,
            mine: None,
            node_ports: BTreeMap::new(),
            filters: BTreeMap::new(),
            pools: BTreeMap::new(),
            blocks: BTreeMap::new(),
            affinities: BTreeMap::new(),
            local_weps: BTreeMap::new(),
        }
    }

    pub fn apply(&mut self, input: &Input, warnings: &mut Vec<String>) -> bool {
        match input {
            Input::Resource(r) => self.apply_resource(r, warnings),
            Input::ResourceRemoved {
                kind,
                namespace,
                name,
            } => self.remove(kind, namespace, name),
            Input::Block { cidr, affinity } => {
                set(&mut self.blocks, cidr.trunc(), Some(affinity.clone()))
            }
            Input::BlockRemoved { cidr } => set(&mut self.blocks, cidr.trunc(), None),
            Input::BlockAffinity { host, cidr, state } if *host == self.me => {
                set(&mut self.affinities, cidr.trunc(), Some(*state))
            }
            Input::BlockAffinityRemoved { host, cidr } if *host == self.me => {
                set(&mut self.affinities, cidr.trunc(), None)
            }
            Input::BlockAffinity { .. } | Input::BlockAffinityRemoved { .. } | Input::InSync => {
                false
            }
        }
    }

    fn apply_resource(&mut self, r: &AnyResource, warnings: &mut Vec<String>) -> bool {
        match r {
            AnyResource::Node(n) => {
                let v = node_bgp(n, warnings);
                set(&mut self.nodes, n.metadata.name.clone(), Some(v))
            }
            AnyResource::BGPPeer(p) => {
                let v = PeerDef::new(p, warnings);
                set(&mut self.peers, p.metadata.name.clone(), Some(v))
            }
            AnyResource::BGPConfiguration(c) => {
                self.set_config(&c.metadata.name, Some(&c.spec), warnings)
            }
            AnyResource::BGPFilter(f) => set(
                &mut self.filters,
                f.metadata.name.clone(),
                Some(f.spec.clone()),
            ),
            AnyResource::IPPool(p) => {
                let v = pool_routing(p);
                if v.is_none() {
                    warnings.push(format!(
                        "IPPool {}: invalid cidr {:?}; not used for BGP",
                        p.metadata.name, p.spec.cidr
                    ));
                }
                set(&mut self.pools, p.metadata.name.clone(), v)
            }
            AnyResource::WorkloadEndpoint(w) => {
                let key = (w.metadata.namespace.clone(), w.metadata.name.clone());
                let v = self.local_wep(w);
                set(&mut self.local_weps, key, v)
            }
            _ => false,
        }
    }

    fn remove(&mut self, kind: &str, ns: &str, name: &str) -> bool {
        match kind {
            "Node" => set(&mut self.nodes, name.to_string(), None),
            "BGPPeer" => set(&mut self.peers, name.to_string(), None),
            "BGPConfiguration" => self.set_config(name, None, &mut Vec::new()),
            "BGPFilter" => set(&mut self.filters, name.to_string(), None),
            "IPPool" => set(&mut self.pools, name.to_string(), None),
            "WorkloadEndpoint" => set(
                &mut self.local_weps,
                (ns.to_string(), name.to_string()),
                None,
            ),
            _ => false,
        }
    }

    fn set_config(
        &mut self,
        name: &str,
        spec: Option<&BGPConfigurationSpec>,
        warnings: &mut Vec<String>,
    ) -> bool {
        if name == "default" {
            return set_opt(&mut self.default, spec.cloned());
        }
        let Some(node) = name.strip_prefix("node.") else {
            if spec.is_some() {
                warnings.push(format!(
                    "BGPConfiguration {name:?} is neither \"default\" nor \"node.<nodename>\"; ignored"
                ));
            }
            return false;
        };
        let port = spec.and_then(|s| s.listen_port).filter(|p| *p != 0);
        let mut changed = set(&mut self.node_ports, node.to_string(), port);
        if node == self.me {
            changed |= set_opt(&mut self.mine, spec.cloned());
        }
        changed
    }

    /// This host's endpoint as BGP needs it; None for other hosts' (and for
    /// one without an interface, which the dataplane does not program).
    fn local_wep(&self, w: &WorkloadEndpoint) -> Option<LocalWep> {
        let s = &w.spec;
        if s.node != self.me || s.interface_name.is_empty() {
            return None;
        }
        let host_addr = |n: &String| -> Option<IpAddr> {
            let net = calico_api::validate::parse_net(n).ok()?;
            (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
        };
        let mut labels = w.metadata.labels.clone();
        labels.insert(LABEL_NAMESPACE.to_string(), w.metadata.namespace.clone());
        if !s.orchestrator.is_empty() {
            labels.insert(LABEL_ORCHESTRATOR.to_string(), s.orchestrator.clone());
        }
        Some(LocalWep {
            addrs: s.ip_networks.iter().filter_map(host_addr).collect(),
            floating: s
                .ip_nats
                .iter()
                .filter_map(|n| n.external_ip.parse().ok())
                .collect(),
            labels,
        })
    }

    pub fn default_config(&self) -> Option<&BGPConfigurationSpec> {
        self.default.as_ref()
    }

    /// The cluster's AS: the `default` BGPConfiguration's, else 64512.
    pub fn global_as(&self) -> u32 {
        self.default
            .as_ref()
            .and_then(|c| c.as_number)
            .map_or(DEFAULT_AS, |a| a.0)
    }

    /// A node's AS: its own, else the cluster's.
    pub fn as_of(&self, n: &NodeBgp) -> u32 {
        n.asn.unwrap_or_else(|| self.global_as())
    }

    /// A node's BGP port when one is configured: its `node.<name>`
    /// BGPConfiguration's `listenPort`, else the `default` one's.
    pub fn listen_port_of(&self, node: &str) -> Option<u16> {
        self.node_ports.get(node).copied().or_else(|| {
            self.default
                .as_ref()
                .and_then(|c| c.listen_port)
                .filter(|p| *p != 0)
        })
    }

    pub fn mesh_enabled(&self) -> bool {
        self.default
            .as_ref()
            .and_then(|c| c.node_to_node_mesh_enabled)
            != Some(false)
    }

    /// `prefixAdvertisements` resolved: this node's configuration's when it
    /// has some, else the `default` one's.
    pub fn communities(&self) -> BTreeMap<IpNet, BTreeSet<BgpCommunity>> {
        let src = [self.mine.as_ref(), self.default.as_ref()]
            .into_iter()
            .flatten()
            .find(|c| !c.prefix_advertisements.is_empty());
        let mut out: BTreeMap<IpNet, BTreeSet<BgpCommunity>> = BTreeMap::new();
        let Some(c) = src else {
            return out;
        };
        for pa in &c.prefix_advertisements {
            let Ok(cidr) = calico_api::validate::parse_net(&pa.cidr) else {
                continue;
            };
            let set: BTreeSet<BgpCommunity> = pa
                .communities
                .iter()
                .filter_map(|v| {
                    BgpCommunity::parse(v).or_else(|| {
                        c.communities
                            .iter()
                            .find(|d| d.name == *v)
                            .and_then(|d| BgpCommunity::parse(&d.value))
                    })
                })
                .collect();
            if !set.is_empty() {
                out.entry(cidr.trunc()).or_default().extend(set);
            }
        }
        out
    }
}

fn node_bgp(n: &Node, warnings: &mut Vec<String>) -> NodeBgp {
    let mut out = NodeBgp {
        labels: n.metadata.labels.clone(),
        ..Default::default()
    };
    let Some(b) = &n.spec.bgp else {
        return out;
    };
    let what = format!("Node {}", n.metadata.name);
    if !b.ipv4_address.is_empty() {
        match calico_api::validate::parse_net(&b.ipv4_address) {
            Ok(IpNet::V4(v)) => out.v4 = Some(v),
            _ => warnings.push(format!(
                "{what}: invalid spec.bgp.ipv4Address {:?}; treated as unset",
                b.ipv4_address
            )),
        }
    }
    if !b.ipv6_address.is_empty() {
        match calico_api::validate::parse_net(&b.ipv6_address) {
            Ok(IpNet::V6(v)) => out.v6 = Some(v),
            _ => warnings.push(format!(
                "{what}: invalid spec.bgp.ipv6Address {:?}; treated as unset",
                b.ipv6_address
            )),
        }
    }
    out.asn = b.as_number.map(|a| a.0);
    let rr = b.route_reflector_cluster_id.trim();
    if !rr.is_empty() {
        if rr.parse::<std::net::Ipv4Addr>().is_err() {
            warnings.push(format!(
                "{what}: routeReflectorClusterID {rr:?} is not an IPv4 address; the node is still treated as a route reflector"
            ));
        }
        out.rr_cluster_id = Some(rr.to_string());
    }
    out
}

fn pool_routing(p: &IPPool) -> Option<PoolRouting> {
    use calico_api::network::EncapMode;
    let cidr = calico_api::validate::parse_net(&p.spec.cidr).ok()?.trunc();
    let mode = |m: EncapMode| match m {
        EncapMode::Never => None,
        EncapMode::Always => Some(false),
        EncapMode::CrossSubnet => Some(true),
    };
    // Upstream checks VXLAN first (a pool with both is invalid anyway).
    let encapsulation = match (mode(p.spec.vxlan()), mode(p.spec.ipip())) {
        (Some(cross_subnet), _) => Encapsulation::Vxlan { cross_subnet },
        (None, Some(cross_subnet)) => Encapsulation::IpIp { cross_subnet },
        (None, None) => Encapsulation::None,
    };
    Some(PoolRouting {
        name: p.metadata.name.clone(),
        cidr,
        encapsulation,
        disable_bgp_export: p.spec.disable_bgp_export,
        nat_outgoing: p.spec.nat_outgoing,
        disabled: p.spec.disabled,
    })
}
