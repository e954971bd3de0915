//! Addressing and routing kinds: IP pools and IPAM settings, BGP, and Node.

mod bgp;
mod ippool;
mod node;

pub use bgp::*;
pub use ippool::*;
pub use node::*;
