//! Pure, incremental calculation of one host's desired dataplane state.
//!
//! Input: decoded datastore updates (`input::Input`). Output: typed deltas
//! (`model::Update`) in dependency order. No I/O: the agent feeds it and the
//! dataplane consumes what it emits.

pub mod input;
pub mod model;
