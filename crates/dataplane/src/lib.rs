//! Programs the Linux kernel from the desired state the calculation emits.
//!
//! Each manager owns one kind of kernel object, records intent in
//! `on_update` and writes only the difference in `apply`; kernel access sits
//! behind small traits (`NftBackend`, `NetlinkBackend`, `SysctlBackend`) so
//! managers are tested against in-memory fakes, and only the thin adapters
//! need a network namespace.

use calico_calc::model::Update;

// nftables policy: one `table inet calico` (see `nft::PolicyManager`).
pub mod nft;
pub use nft::{CommandNft, FakeNft, GenerationTracked, NftBackend, PolicyManager};

// Routes, links and per-interface settings (see `routing::Routing` for the
// combined manager).
pub mod condition;
pub mod conntrack;
pub mod heap;
pub mod iface;
pub mod ipip;
pub mod learned;
pub mod mtu;
pub mod netlink;
mod prefixmap;
pub mod routes;
pub mod routing;
pub mod sysctl;
pub mod vxlan;

pub use condition::{Condition, KernelFeature, PendingReason};
pub use conntrack::{CommandConntrack, ConntrackBackend, ConntrackManager, FakeConntrack};
pub use iface::InterfaceSysctlManager;
pub use ipip::IpipManager;
pub use mtu::MtuManager;
pub use netlink::{FakeNetlink, NetlinkBackend, RtNetlink};
pub use routes::{RouteManager, RouteManagerConfig};
pub use routing::{Routing, RoutingConfig};
pub use sysctl::{FakeSysctl, ProcSysctl, SysctlBackend};
pub use vxlan::{LocalVtep, VxlanManager, VxlanManagerConfig};

/// A manager failed to bring the kernel to the desired state. The caller
/// keeps the manager dirty and retries; nothing is flushed.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("nftables: {0}")]
    Nft(String),
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("sysctl {path}: {cause}")]
    Sysctl { path: String, cause: String },
    #[error("{0}")]
    Other(String),
}

/// What one apply changed, for metrics and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub writes: usize,
}

/// One kind of kernel object, kept in step with the desired state.
pub trait Manager {
    /// Record intent; never touches the kernel.
    fn on_update(&mut self, update: &Update);
    /// Write what differs between desired and actual. Must be idempotent; on
    /// error the manager stays dirty so the next call retries.
    fn apply(&mut self) -> Result<ApplyStats, DataplaneError>;
    /// Forget what the manager believes the kernel holds and re-read it on the
    /// next apply (drift repair, restart reconcile).
    fn resync(&mut self);
}
