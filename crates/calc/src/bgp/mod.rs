//! Who this node peers with over BGP and what it announces, computed from
//! the datastore resources alone: the same decisions upstream's confd makes
//! when it renders BIRD's configuration (`bird.cfg`, `bird6.cfg`,
//! `bird_aggr.cfg`, `bird_ipam.cfg`), as data a BGP speaker can act on.
//!
//! [`BgpCalc`] takes the calculation's [`Input`]s, keeps what BGP needs
//! (every Node's BGP addresses, AS and labels; BGPPeers, BGPConfigurations,
//! BGPFilters, IP pools; every IPAM block's owner; this host's affinities and
//! its own WorkloadEndpoints) and produces a [`BgpIntent`] on demand.
//!
//! Cost: an input costs a map update (a WorkloadEndpoint of another host
//! costs a comparison and, at most, one removal). Computing the intent is
//! O(nodes × BGPPeers) for the peerings plus O(local endpoints) for what is
//! originated; it is done only when asked for and only after a relevant
//! input changed something ([`BgpCalc::on_input`] says whether it did).
//!
//! Upstream rules this follows, with the places they live in upstream
//! (v3.31: `confd/pkg/backends/calico/client.go` `updatePeersV1`, the
//! `bird*.cfg.template`s; the same in later releases' `bgp_processor.go`):
//!
//! - **Mesh**: every other node with an address of the family, unless the
//!   `default` BGPConfiguration says `nodeToNodeMeshEnabled: false`. Nodes
//!   with a `routeReflectorClusterID` are left out, and a node that is itself
//!   a route reflector has no mesh at all. Named `Mesh_<ip>`; passive when the
//!   peer's address is greater than ours *as text* (Go compares the strings,
//!   so `10.0.0.10` < `10.0.0.9`); the peer's AS is its own, else the
//!   cluster's; the port is the peer's listen port (its `node.<name>`
//!   BGPConfiguration, else the `default` one); restart time
//!   `nodeMeshMaxRestartTime`; password `nodeMeshPassword`.
//! - **BGPPeers**: with neither `node` nor `nodeSelector` a peering is
//!   global (`Global_<ip>`, on every node); otherwise node-specific
//!   (`Node_<ip>`) on the named or selected nodes. The remote side is
//!   `peerIP` (`IP`, `IP:port` or `[IPv6]:port`), or every node matching
//!   `peerSelector` (their addresses of both families, their AS, their
//!   listen port), or the local workloads matching `localWorkloadSelector`
//!   (`Local_Workload_<ip>`, passive, no source address). A port adds
//!   `_port_<n>` to the name; a `peerIP` without one that is a Calico node's
//!   address (and AS) uses that node's listen port.
//! - **Reverse peerings**: unless `reversePeering: Manual`, the nodes a
//!   BGPPeer points at (by `peerSelector`, or by `peerIP` + AS + port) get
//!   `Node_` peerings back to the nodes it applies to, so a route-reflector
//!   BGPPeer (`nodeSelector: all()`, `peerSelector: route-reflector ==
//!   'true'`) gives the reflectors their clients. A global peering wins over a
//!   node-specific one to the same address and port, and an explicit one over
//!   a reverse one. Where two BGPPeers give the same key, the one whose name
//!   sorts first wins (upstream's choice depends on Go's map order).
//! - **Per peering**: never with our own address; `passive` for a global
//!   `peerIP` peering to a Calico node whose address is greater (as text);
//!   `rr client` when we are a reflector, the peer has our AS (our
//!   `localASNumber` for this peering, if set) and a different or no cluster
//!   ID; `keepOriginalNextHop` only towards another AS, `nextHopMode`
//!   instead of it when set; source address our address unless
//!   `sourceAddress: None`.
//! - **Originated**: this host's affine IPAM blocks (from its affinity keys,
//!   not `pending`; blocks of a single address are not), plus local workload
//!   addresses outside those blocks, plus floating IPs (`ipNATs`); anything
//!   inside an IP pool with `disableBGPExport` is withheld. See
//!   [`OriginKind`].
//!
//! Deliberate differences from upstream, each where upstream would write a
//! BIRD configuration that fails or does something nobody asked for:
//! a `peerIP` BGPPeer without an AS number is skipped with a warning
//! (upstream writes `as 0`); a BGPPeer with neither `peerIP`, `peerSelector`
//! nor `localWorkloadSelector` makes no reverse peerings (upstream matches it
//! against every node lacking an address); a mesh peer without an AS of its
//! own gets the cluster's AS (as v3.31; later releases use this node's);
//! a `peerIP` with a port matches a node whose effective listen port (its
//! own, else the cluster's) is that port.

mod originate;
mod peers;
mod store;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use calico_api::network::BGPFilterSpec;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::input::Input;
use store::Store;

/// The AS number of a cluster that configures none (upstream's default).
pub const DEFAULT_AS: u32 = 64512;
/// BGP's port, used when no BGPConfiguration sets `listenPort`.
pub const DEFAULT_PORT: u16 = 179;
/// The graceful-restart time a peering without `restart_time` gets (BIRD's).
pub const DEFAULT_RESTART_TIME: Duration = Duration::from_secs(120);
/// Where BGP passwords are read from: `<dir>/<secret name>/<key>`.
pub const DEFAULT_SECRETS_DIR: &str = "/etc/calico/secrets";

/// Everything this node's BGP speaker should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpIntent {
    pub node_name: String,
    /// The node's IPv4 address, or `CALICO_ROUTER_ID` ([`RouterId`]).
    pub router_id: Ipv4Addr,
    /// The node's `asNumber`, else the `default` BGPConfiguration's, else 64512.
    pub local_as: u32,
    /// `listenPort` of `node.<name>`, else of `default`, else 179.
    pub listen_port: u16,
    /// `bindMode: NodeIP` in the `default` BGPConfiguration: listen only on
    /// the node's addresses (BIRD's `listen bgp address`).
    pub bind_node_ip: bool,
    /// The node's BGP addresses with their subnets (`spec.bgp.ipv4Address`).
    pub ipv4: Option<Ipv4Net>,
    pub ipv6: Option<Ipv6Net>,
    /// Set when this node is a route reflector.
    pub rr_cluster_id: Option<Ipv4Addr>,
    /// Peerings by BIRD protocol name (`Mesh_10_0_0_2`, `Global_…`,
    /// `Node_…_port_180`, `Local_Workload_…`), as `calicoctl node status`
    /// parses them.
    pub peers: BTreeMap<String, PeerIntent>,
    /// What this node announces; one entry per prefix.
    pub originate: BTreeSet<Originated>,
    /// Every IP pool, ordered by CIDR: the export filter withholds
    /// `disable_bgp_export` pools; learned routes in VXLAN pools are left to
    /// the VXLAN dataplane, in IP-in-IP pools they go through the tunnel.
    pub pools: Vec<PoolRouting>,
    /// Communities to attach to announced routes inside a prefix (BIRD's
    /// `net ~ prefix`), from `prefixAdvertisements`: the `node.<name>`
    /// BGPConfiguration's if it has any, else the `default` one's. Names are
    /// resolved through the same resource's `communities`.
    pub communities: BTreeMap<IpNet, BTreeSet<BgpCommunity>>,
    /// The BGPFilters the peerings name, by name (missing ones are left out,
    /// as upstream skips them, and warned about).
    pub filters: BTreeMap<String, BGPFilterSpec>,
}

/// One BGP session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIntent {
    /// The BIRD protocol name (also the key in [`BgpIntent::peers`]).
    pub name: String,
    pub kind: PeerKind,
    /// The BGPPeer that made it (None for the mesh).
    pub bgp_peer: Option<String>,
    pub address: IpAddr,
    /// The peer's port (179 unless set).
    pub port: u16,
    pub peer_as: u32,
    /// Our AS on this session: the BGPPeer's `localASNumber`, else ours.
    pub local_as: u32,
    /// Wait for the peer to connect.
    pub passive: bool,
    /// Our address of the peer's family, unless `sourceAddress: None`.
    pub source_address: Option<IpAddr>,
    /// We are a route reflector and this peer is our client.
    pub rr_client: bool,
    /// Deprecated `keepOriginalNextHop`, already limited to eBGP as upstream.
    pub keep_next_hop: bool,
    pub next_hop_mode: Option<NextHopMode>,
    /// Graceful-restart time; None: the default ([`DEFAULT_RESTART_TIME`]).
    pub restart_time: Option<Duration>,
    /// TCP MD5 password (see [`BgpCalc::set_secrets_dir`]).
    pub password: Option<Password>,
    /// BGPFilter names in order; their specs are in [`BgpIntent::filters`].
    pub filters: Vec<String>,
    /// GTSM: the peer is at most this many hops away.
    pub ttl_security: Option<u8>,
    /// `allow local as N`.
    pub num_allowed_local_as: Option<u32>,
    /// A gateway to reach the peer through (a static /32 or /128 route).
    pub reachable_by: Option<IpAddr>,
}

impl PeerIntent {
    /// The restart time to use.
    pub fn effective_restart_time(&self) -> Duration {
        self.restart_time.unwrap_or(DEFAULT_RESTART_TIME)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerKind {
    /// Node-to-node mesh.
    Mesh,
    /// A BGPPeer for every node.
    Global,
    /// A BGPPeer for some nodes, or the reverse side of a peering.
    NodeSpecific,
    /// A local workload selected by `localWorkloadSelector`.
    LocalWorkload,
}

/// BGPPeer `nextHopMode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NextHopMode {
    /// BGP's default behaviour.
    Auto,
    /// `next hop self`.
    ForceSelf,
    /// `next hop keep`.
    Keep,
}

/// A password; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A prefix this node announces, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Originated {
    pub prefix: IpNet,
    pub why: OriginKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OriginKind {
    /// An IPAM block this host holds an affinity for (confirmed, or being
    /// deleted), announced whole as upstream's blackhole static route; the
    /// local addresses inside a confirmed one are not announced separately.
    AffineBlock,
    /// A local workload address inside an IPAM block this host does not
    /// announce (another host's, one without affinity, or ours while pending):
    /// announced as a /32 or /128, more specific than the owner's block.
    Borrowed,
    /// A local workload address no IPAM block covers (Neutron's own IPAM).
    Workload,
    /// A floating IP (`ipNATs` `externalIP`) of a local workload.
    FloatingIp,
}

/// What the BGP side needs of an IP pool.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PoolRouting {
    pub name: String,
    pub cidr: IpNet,
    pub encapsulation: Encapsulation,
    pub disable_bgp_export: bool,
    pub nat_outgoing: bool,
    pub disabled: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encapsulation {
    None,
    /// IP-in-IP; `cross_subnet`: only towards other subnets.
    IpIp {
        cross_subnet: bool,
    },
    Vxlan {
        cross_subnet: bool,
    },
}

/// A BGP community: standard (`aa:nn`, RFC 1997) or large (`aa:nn:mm`, RFC 8092).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BgpCommunity {
    Standard(u16, u16),
    Large(u32, u32, u32),
}

impl BgpCommunity {
    /// Parses `aa:nn` or `aa:nn:mm`.
    pub fn parse(s: &str) -> Option<BgpCommunity> {
        let parts: Vec<&str> = s.split(':').collect();
        let digits = |p: &&str| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit());
        if !parts.iter().all(digits) {
            return None;
        }
        match parts.as_slice() {
            [a, b] => Some(BgpCommunity::Standard(a.parse().ok()?, b.parse().ok()?)),
            [a, b, c] => Some(BgpCommunity::Large(
                a.parse().ok()?,
                b.parse().ok()?,
                c.parse().ok()?,
            )),
            _ => None,
        }
    }
}

impl fmt::Display for BgpCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BgpCommunity::Standard(a, b) => write!(f, "{a}:{b}"),
            BgpCommunity::Large(a, b, c) => write!(f, "{a}:{b}:{c}"),
        }
    }
}

/// Where the router ID comes from (`CALICO_ROUTER_ID`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RouterId {
    /// The node's IPv4 address (unset variable).
    #[default]
    NodeIp,
    /// `hash`: upstream's `hashToIPv4(nodename)`, for IPv6-only nodes.
    Hash,
    /// An explicit address.
    Fixed(Ipv4Addr),
}

impl RouterId {
    /// Reads `CALICO_ROUTER_ID`'s value: empty → node IP, `hash`, or an
    /// IPv4 address (anything else is an error).
    pub fn parse(v: &str) -> Result<RouterId, String> {
        match v.trim() {
            "" => Ok(RouterId::NodeIp),
            "hash" => Ok(RouterId::Hash),
            s => s.parse().map(RouterId::Fixed).map_err(|_| {
                format!("CALICO_ROUTER_ID {s:?} is neither \"hash\" nor an IPv4 address")
            }),
        }
    }
}

/// Upstream's `hashToIPv4`: the first four bytes of SHA-256 of the node
/// name, with a first byte above 223 (multicast and reserved) lowered by 32.
pub fn hash_to_ipv4(node_name: &str) -> Ipv4Addr {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(node_name.as_bytes());
    let first = if h[0] > 223 { h[0] - 32 } else { h[0] };
    Ipv4Addr::new(first, h[1], h[2], h[3])
}

/// The BGP calculation of one node. See the module documentation.
pub struct BgpCalc {
    node_name: String,
    router_id: RouterId,
    secrets_dir: PathBuf,
    store: Store,
    warnings: Vec<String>,
}

impl BgpCalc {
    pub fn new(node_name: impl Into<String>) -> BgpCalc {
        let node_name = node_name.into();
        BgpCalc {
            store: Store::new(&node_name),
            node_name,
            router_id: RouterId::NodeIp,
            secrets_dir: PathBuf::from(DEFAULT_SECRETS_DIR),
            warnings: Vec::new(),
        }
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// `CALICO_ROUTER_ID` (see [`RouterId::parse`]).
    pub fn set_router_id(&mut self, r: RouterId) {
        self.router_id = r;
    }

    /// The directory BGP passwords are read from. There is no Kubernetes
    /// here to hold the Secret a `password.secretKeyRef {name, key}` (or
    /// `nodeMeshPassword`) names, so the password is the content of the file
    /// `<dir>/<name>/<key>` (one trailing newline removed), read whenever the
    /// intent is computed. A missing or unreadable file leaves the peering
    /// without a password, with a warning. Default [`DEFAULT_SECRETS_DIR`].
    pub fn set_secrets_dir(&mut self, dir: impl Into<PathBuf>) {
        self.secrets_dir = dir.into();
    }

    /// Records one input; true when it changed anything the intent depends on.
    pub fn on_input(&mut self, input: &Input) -> bool {
        self.store.apply(input, &mut self.warnings)
    }

    /// Warnings about inputs that could not be used, since the last call.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The intent; None when this node has no BGP address (or no router ID).
    pub fn intent(&self) -> Option<BgpIntent> {
        self.compute().0
    }

    /// The intent and what was wrong while computing it (a missing secret, a
    /// BGPPeer that cannot be used, …).
    pub fn compute(&self) -> (Option<BgpIntent>, Vec<String>) {
        let mut warnings = Vec::new();
        let intent = self.compute_into(&mut warnings);
        (intent, warnings)
    }

    fn compute_into(&self, warnings: &mut Vec<String>) -> Option<BgpIntent> {
        let s = &self.store;
        let me = s.nodes.get(&self.node_name)?;
        if me.v4.is_none() && me.v6.is_none() {
            return None;
        }
        let router_id = match self.router_id {
            RouterId::Fixed(a) => a,
            RouterId::Hash => hash_to_ipv4(&self.node_name),
            RouterId::NodeIp => match me.v4 {
                Some(n) => n.addr(),
                None => {
                    warnings.push(format!(
                        "node {} has no IPv4 address for a BGP router ID; set CALICO_ROUTER_ID (an IPv4 address, or \"hash\")",
                        self.node_name
                    ));
                    return None;
                }
            },
        };
        let local_as = me.asn.unwrap_or_else(|| s.global_as());
        let ctx = peers::Ctx {
            store: s,
            me_name: &self.node_name,
            me,
            local_as,
            secrets: &self.secrets_dir,
            read: Default::default(),
        };
        let peers = ctx.peers(warnings);
        let mut filters = BTreeMap::new();
        for p in peers.values() {
            for f in &p.filters {
                match s.filters.get(f) {
                    Some(spec) => {
                        filters.insert(f.clone(), spec.clone());
                    }
                    None => warnings.push(format!(
                        "BGP peering {} names BGPFilter {f:?}, which does not exist; skipped",
                        p.name
                    )),
                }
            }
        }
        let mut seen = BTreeSet::new();
        warnings.retain(|w| seen.insert(w.clone()));
        Some(BgpIntent {
            node_name: self.node_name.clone(),
            router_id,
            local_as,
            listen_port: s.listen_port_of(&self.node_name).unwrap_or(DEFAULT_PORT),
            bind_node_ip: s.default_config().and_then(|c| c.bind_mode.as_deref()) == Some("NodeIP"),
            ipv4: me.v4,
            ipv6: me.v6,
            rr_cluster_id: me.rr_cluster_id.as_deref().and_then(|r| r.parse().ok()),
            peers,
            originate: originate::originate(s),
            pools: {
                let mut v: Vec<PoolRouting> = s.pools.values().cloned().collect();
                v.sort_by(|a, b| (a.cidr, &a.name).cmp(&(b.cidr, &b.name)));
                v
            },
            communities: s.communities(),
            filters,
        })
    }
}
