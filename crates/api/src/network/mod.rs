//! Addressing and routing kinds: IP pools and IPAM settings, BGP, and Node.

mod bgp;
mod bgpfilter;
mod ippool;
mod node;

pub use bgp::*;
pub use bgpfilter::*;
pub use ippool::*;
pub use node::*;
