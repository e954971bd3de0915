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
    /// The initial snapshot is complete: the calculation may now emit
    /// `Update::InSync` after its first flush.
    InSync,
}

/// Host facts the agent knows from outside the datastore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostIdentity {
    pub node_name: String,
    /// The node's own address (NODE `IP`), used for VTEP locality and CrossSubnet.
    pub node_ip: Option<IpAddr>,
}
