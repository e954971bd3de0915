//! The BGP status calico-node publishes for `calicoctl node status --node`
//! (our addition; upstream's calicoctl must run on the node and read BIRD's
//! socket). Peers carry the same facts BIRD's `show protocols` row does.

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BgpStatus {
    pub node: String,
    /// RFC 3339.
    pub last_updated: String,
    #[serde(rename = "routerID")]
    pub router_id: String,
    pub as_number: u32,
    #[serde(default)]
    pub peers: Vec<BgpPeerStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BgpPeerStatus {
    /// BIRD protocol name, e.g. `Mesh_10_0_0_2`.
    pub name: String,
    #[serde(rename = "peerIP")]
    pub peer_ip: String,
    /// As upstream's CalicoNodeStatus: `NodeMesh`, `NodePeer`, `GlobalPeer`.
    #[serde(rename = "type")]
    pub peer_type: String,
    /// BGP FSM state: `Idle`, `Connect`, `Active`, `OpenSent`,
    /// `OpenConfirm`, `Established`.
    pub state: String,
    /// When the state was entered (RFC 3339).
    pub since: String,
    /// BIRD's info column: the state, then the last error if any.
    pub info: String,
    #[serde(default)]
    pub routes_received: u64,
    #[serde(default)]
    pub routes_preferred: u64,
    #[serde(default)]
    pub routes_exported: u64,
}

/// The peer type of a BIRD protocol name, as upstream names it.
pub fn peer_type_of(name: &str) -> &'static str {
    if name.starts_with("Mesh_") {
        "NodeMesh"
    } else if name.starts_with("Global_") {
        "GlobalPeer"
    } else {
        "NodePeer"
    }
}

/// The routes a node announces (per peer) and learned (per peer), for
/// `calicoctl node routes` (our addition). At most [`MAX_ROUTES`] entries
/// are published; `truncated` says when there were more.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BgpRoutes {
    pub node: String,
    pub last_updated: String,
    #[serde(default)]
    pub truncated: bool,
    #[serde(default)]
    pub routes: Vec<BgpRouteEntry>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BgpRouteEntry {
    /// BIRD protocol name of the peer.
    pub peer: String,
    #[serde(rename = "peerIP")]
    pub peer_ip: String,
    /// `announced` (sent to the peer) or `learned` (received from it).
    pub direction: String,
    pub destination: String,
    #[serde(default)]
    pub next_hop: String,
    #[serde(default)]
    pub as_path: String,
    /// Learned: the best path to its destination (in the kernel).
    #[serde(default)]
    pub best: bool,
    /// Learned: kept across the peer's graceful restart.
    #[serde(default)]
    pub stale: bool,
}

/// The most route entries a node publishes (a datastore value stays well
/// under etcd's request size limit).
pub const MAX_ROUTES: usize = 5000;
