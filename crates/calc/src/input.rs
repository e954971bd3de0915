//! What the calculation consumes: datastore state, already decoded. The
//! agent's syncer turns raw keys into these (and logs what does not decode).

use std::net::IpAddr;

use calico_api::AnyResource;
use ipnet::IpNet;

/// One change of the cluster state. (`AnyResource` is large; boxing it would
/// buy nothing for a value built once per update, as in `calico-api`.)
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A v3 resource was created or updated.
    Resource(AnyResource),
    /// A v3 resource was deleted.
    ResourceRemoved {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    /// An IPAM block exists (or changed owner). `affinity` is the host it is
    /// affine to (`host:<node>` with the prefix removed), if any.
    Block {
        cidr: IpNet,
        affinity: Option<String>,
    },
    BlockRemoved {
        cidr: IpNet,
    },
    /// A host's claim on an IPAM block (`/calico/ipam/v2/host/<host>/ipvN/block/<cidr>`).
    /// Only BGP uses it: a host announces the blocks it holds confirmed
    /// affinities for, as upstream's confd does from these keys.
    BlockAffinity {
        host: String,
        cidr: IpNet,
        state: AffinityState,
    },
    BlockAffinityRemoved {
        host: String,
        cidr: IpNet,
    },
    /// The initial snapshot is complete: the calculation may now emit
    /// `Update::InSync` after its first flush.
    InSync,
}

/// The `state` of a block affinity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AffinityState {
    /// `confirmed`, or no state at all (data written by old releases, which
    /// upstream treats as implicitly confirmed).
    Confirmed,
    /// `pending`: the claim is being made; upstream's confd ignores it.
    Pending,
    /// `pendingDeletion`, or a state this version does not know: announced
    /// (upstream keeps the blackhole route) but no longer hiding the /32s
    /// inside it.
    PendingDeletion,
}

impl AffinityState {
    /// Parses the stored `state` string as upstream reads it.
    pub fn parse(s: &str) -> AffinityState {
        match s {
            "" | "confirmed" => AffinityState::Confirmed,
            "pending" => AffinityState::Pending,
            _ => AffinityState::PendingDeletion,
        }
    }
}

/// Host facts the agent knows from outside the datastore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostIdentity {
    pub node_name: String,
    /// The node's own address (NODE `IP`), used for VTEP locality and CrossSubnet.
    pub node_ip: Option<IpAddr>,
}
