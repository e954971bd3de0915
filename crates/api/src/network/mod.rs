//! Addressing and routing kinds: IP pools and IPAM settings, BGP, Node and
//! CalicoNodeStatus.

mod bgp;
mod bgpfilter;
mod ippool;
mod node;
mod nodestatus;

pub use bgp::*;
pub use bgpfilter::*;
pub use ippool::*;
pub use node::*;
pub use nodestatus::*;
