//! Pure, incremental calculation of one host's desired dataplane state.
//!
//! Input: decoded datastore updates (`input::Input`). Output: typed deltas
//! (`model::Update`) in dependency order. No I/O: the agent feeds it and the
//! dataplane consumes what it emits.
//!
//! - [`Calculator`]: the incremental calculation (see `calculator.rs` for
//!   the wiring diagram).
//! - [`reference`]: a small evaluator of packets straight from the v3
//!   resources, written from the policy semantics alone.
//! - [`verdict`]: the same evaluation over the compiled output
//!   ([`desired::DesiredState`]), i.e. what the dataplane programs.
//! - [`analysis`]: static checks for calicoctl (shadowed allow rules).

pub mod input;
pub mod model;

pub mod analysis;
pub mod bgp;
pub mod desired;
pub mod packet;
pub mod reference;
pub mod verdict;

mod calculator;
mod config;
mod effsel;
mod endpoints;
mod hash;
mod intern;
mod ipsets;
mod labels;
mod policies;
mod routes;
mod rules;
mod selector_index;
mod sequencer;

pub use calculator::Calculator;
pub use config::{default_failsafe_inbound, default_failsafe_outbound};
pub use input::{AffinityState, HostIdentity, Input};
pub use labels::{LABEL_NAME, NAMESPACE_PROFILE_PREFIX};
