//! The BGP speaker calico-node runs in place of BIRD.
//!
//! The protocol is sans-IO: the wire codec turns bytes into messages and
//! back, sessions turn events (bytes received, the clock, TCP up/down) into
//! actions (bytes to send, connections to open or close, routes learned),
//! and the RIB turns routes into best paths and per-peer exports. The
//! speaker ties sessions to the RIB. Only `driver` (TCP) and `birdctl`'s
//! server (BIRD's control socket) touch sockets; the kernel is programmed
//! by the agent from the best-path changes.

pub mod birdctl;
pub mod driver;
pub mod rib;
pub mod session;
pub mod speaker;
pub mod status;
pub mod wire;
