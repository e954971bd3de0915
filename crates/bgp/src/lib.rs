//! The BGP speaker calico-node runs in place of BIRD.
//!
//! Everything here is sans-IO: the wire codec turns bytes into messages and
//! back, sessions turn events (bytes received, timers, TCP up/down) into
//! actions (bytes to send, timers to set, routes learned), and the RIB turns
//! routes into best paths and per-peer exports. Sockets, timers and the
//! kernel live in calico-node's thin driver.

pub mod birdctl;
