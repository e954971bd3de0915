//! The desired state of one host, as the calculation hands it to the
//! dataplane: IP sets, compiled policies and profiles, local endpoints with
//! their ordered tiers, routes, VXLAN tunnel endpoints, pools and config.
//!
//! Everything is keyed so the dataplane can apply deltas: an `*Upsert`
//! replaces the object with that key, a `*Remove` deletes it.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::IpNet;

/// Stable id of an IP set: `s:` + hash of the canonical selector (plus the
/// named port, for named-port sets). Many rules with the same selector share
/// one set.
pub type IpSetId = String;

/// Members of an IP set: addresses/CIDRs, or (for named ports) address,
/// protocol and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpSetMember {
    Net(IpNet),
    NetPort { net: IpNet, protocol: u8, port: u16 },
}

/// Identity of a workload endpoint on this host.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointKey {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyKind {
    GlobalNetworkPolicy,
    NetworkPolicy,
    Profile,
}

/// Identity of a compiled policy or profile.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyId {
    pub kind: PolicyKind,
    /// Empty for GlobalNetworkPolicy and Profile.
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for PolicyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            PolicyKind::GlobalNetworkPolicy => write!(f, "GlobalNetworkPolicy {}", self.name),
            PolicyKind::NetworkPolicy => {
                write!(f, "NetworkPolicy {}/{}", self.namespace, self.name)
            }
            PolicyKind::Profile => write!(f, "Profile {}", self.name),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Allow,
    Deny,
    Pass,
    Log,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub min: u16,
    pub max: u16,
}

/// One side (source or destination) of a compiled rule. Empty lists mean
/// "no constraint". Positive lists match if ANY entry matches; negative
/// lists match if NO entry matches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Side {
    pub nets: Vec<IpNet>,
    pub not_nets: Vec<IpNet>,
    /// Address must be in this set (rule `selector` combined with
    /// `namespaceSelector` and, for NetworkPolicy, the implicit namespace).
    pub ip_set: Option<IpSetId>,
    /// Address must NOT be in any of these sets (`notSelector`).
    pub not_ip_sets: Vec<IpSetId>,
    /// Ports: numeric ranges, or named-port sets (address . proto . port).
    /// The side's port constraint holds if any range OR any named set matches.
    pub ports: Vec<PortRange>,
    pub named_port_sets: Vec<IpSetId>,
    pub not_ports: Vec<PortRange>,
    pub not_named_port_sets: Vec<IpSetId>,
}

/// A rule compiled for the dataplane.
///
/// A rule the calculation could not compile (invalid data, or a match the
/// L3/L4 dataplane cannot enforce) is emitted as a rule that never matches:
/// `protocol == not_protocol == Some(255)`. It keeps later rules at their
/// source positions; a dataplane may render it as is or skip it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    pub action: Action,
    /// 4 or 6; None = both families.
    pub ip_version: Option<u8>,
    pub protocol: Option<u8>,
    pub not_protocol: Option<u8>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub not_icmp_type: Option<u8>,
    pub not_icmp_code: Option<u8>,
    pub src: Side,
    pub dst: Side,
    /// Stable short hash of the rule's content and position; used in nft
    /// comments and counters so a verdict can be traced to its rule.
    pub id: String,
}

/// A compiled policy or profile: inbound rules apply to traffic TO the
/// endpoint (ingress), outbound to traffic FROM it (egress).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub id: PolicyId,
    pub inbound: Vec<Rule>,
    pub outbound: Vec<Rule>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TierDefault {
    Deny,
    Pass,
}

/// The policies of one tier that apply to an endpoint, in order, per direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierPolicies {
    pub name: String,
    pub default_action: TierDefault,
    /// Policies with ingress rules/types selecting the endpoint, ordered.
    pub ingress: Vec<PolicyId>,
    pub egress: Vec<PolicyId>,
}

/// A workload endpoint on this host with everything its chains need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalEndpoint {
    pub key: EndpointKey,
    pub iface: String,
    pub mac: Option<String>,
    pub addrs: Vec<IpNet>,
    /// Extra source prefixes the workload may send from (allowSpoofedSourcePrefixes).
    pub allow_spoofed: Vec<IpNet>,
    /// Tiers with at least one policy for this endpoint, in tier order.
    pub tiers: Vec<TierPolicies>,
    /// Profile names, in the endpoint's order.
    pub profiles: Vec<String>,
    /// 1:1 NAT (OpenStack floating IPs): (internal, external).
    pub nats: Vec<(IpAddr, IpAddr)>,
}

/// Where traffic to a prefix goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RouteTarget {
    /// A local workload: `dst dev <iface> scope link`.
    Local { iface: String },
    /// An unallocated part of a local block: `blackhole dst`.
    Blackhole,
    /// A remote workload/block over VXLAN: `dst via <tunnel ip> dev vxlan.calico onlink`.
    Vxlan { gateway: Ipv4Addr },
    /// A remote block in the same subnet without encapsulation (CrossSubnet):
    /// `dst via <node ip>`.
    NoEncap { gateway: IpAddr },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    pub dst: IpNet,
    pub target: RouteTarget,
}

/// A host's VXLAN tunnel endpoint. Remote hosts' are used for ARP/FDB
/// entries and routes; this host's own is emitted too, so the dataplane can
/// configure `vxlan.calico` from it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Vtep {
    pub node: String,
    pub node_ip: IpAddr,
    pub tunnel_ip: Ipv4Addr,
    pub mac: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encap {
    Never,
    Always,
    CrossSubnet,
}

/// What the dataplane needs of an IP pool.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pool {
    pub name: String,
    pub cidr: IpNet,
    pub nat_outgoing: bool,
    pub vxlan: Encap,
    pub ipip: Encap,
    pub disabled: bool,
}

/// One protocol/port pair of the failsafe lists.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProtoPort {
    pub protocol: u8,
    pub port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndpointToHostAction {
    Drop,
    Return,
    Accept,
}

/// Effective Felix settings for this host (defaults, then FelixConfiguration
/// `default`, then `node.<name>`, then FELIX_* environment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostConfig {
    pub interface_prefixes: Vec<String>,
    pub default_endpoint_to_host_action: EndpointToHostAction,
    pub failsafe_inbound: Vec<ProtoPort>,
    pub failsafe_outbound: Vec<ProtoPort>,
    pub vxlan_vni: u32,
    pub vxlan_port: u16,
    /// 0 = compute from the host MTU.
    pub vxlan_mtu: u32,
    pub log_prefix: String,
    /// OpenStack's metadata service (`metadataAddr`:`metadataPort`):
    /// workloads' 169.254.169.254:80 is DNATed there and let in.
    pub metadata: Option<(std::net::Ipv4Addr, u16)>,
}

/// The deltas the calculation emits, in dependency order within a flush:
/// IP sets (upserts/deltas) → policies → endpoints → routes/VTEPs, then
/// removals in reverse order. `InSync` follows the first complete flush.
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    Config(HostConfig),
    Pools(Vec<Pool>),
    IpSetUpsert {
        id: IpSetId,
        members: BTreeSet<IpSetMember>,
    },
    IpSetDelta {
        id: IpSetId,
        added: BTreeSet<IpSetMember>,
        removed: BTreeSet<IpSetMember>,
    },
    IpSetRemove {
        id: IpSetId,
    },
    PolicyUpsert(Arc<Policy>),
    PolicyRemove(PolicyId),
    EndpointUpsert(Arc<LocalEndpoint>),
    EndpointRemove(EndpointKey),
    VtepUpsert(Vtep),
    VtepRemove {
        node: String,
    },
    RouteUpsert(Route),
    RouteRemove {
        dst: IpNet,
    },
    /// The datastore snapshot has been fully processed at least once.
    InSync,
}
