//! Conditions: states the routing managers cannot resolve by retrying
//! harder, reported (not returned as errors) so the agent can log and
//! expose them while everything else keeps working.

use std::fmt;

use ipnet::IpNet;

/// A kernel capability a pool needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelFeature {
    /// IP-in-IP tunnel devices (`ipip` link type, `tunl0`).
    IpipTunnel,
    /// VXLAN devices.
    Vxlan,
}

impl fmt::Display for KernelFeature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KernelFeature::IpipTunnel => "IP-in-IP tunnel device (link type ipip)",
            KernelFeature::Vxlan => "VXLAN device (link type vxlan)",
        })
    }
}

/// Why a route (or an interface's settings) waits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PendingReason {
    /// The interface does not exist yet (the orchestrator creates it later).
    InterfaceMissing(String),
    /// The interface exists but is administratively down.
    InterfaceDown(String),
    /// The gateway of a route is not reachable (no connected route).
    GatewayUnreachable(std::net::IpAddr),
}

impl fmt::Display for PendingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PendingReason::InterfaceMissing(i) => write!(f, "interface {i} does not exist yet"),
            PendingReason::InterfaceDown(i) => write!(f, "interface {i} is down"),
            PendingReason::GatewayUnreachable(g) => write!(f, "gateway {g} is not reachable"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Condition {
    /// A pool asks for an encapsulation this kernel cannot provide; its
    /// traffic is not encapsulated. Every other pool keeps working.
    MissingKernelFeature {
        pool: String,
        feature: KernelFeature,
        detail: String,
    },
    /// Routes waiting for something; retried on every apply.
    RoutesPending {
        reason: PendingReason,
        dsts: Vec<IpNet>,
    },
    /// Per-interface sysctls waiting for the interface to appear.
    InterfaceSettingsPending { iface: String },
    /// The VXLAN device is wanted but cannot be set up yet.
    VxlanPending { reason: String },
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::MissingKernelFeature {
                pool,
                feature,
                detail,
            } => write!(
                f,
                "IP pool {pool}: kernel lacks {feature}; pool traffic is not encapsulated ({detail})"
            ),
            Condition::RoutesPending { reason, dsts } => {
                write!(f, "{} route(s) pending: {reason}", dsts.len())?;
                if let Some(first) = dsts.first() {
                    write!(f, " (e.g. {first})")?;
                }
                Ok(())
            }
            Condition::InterfaceSettingsPending { iface } => {
                write!(f, "interface {iface} sysctls pending: interface does not exist yet")
            }
            Condition::VxlanPending { reason } => write!(f, "VXLAN device pending: {reason}"),
        }
    }
}
