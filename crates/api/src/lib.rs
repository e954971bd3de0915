//! projectcalico.org/v3 resource types with upstream defaults and validation,
//! the selector language, and decoding of YAML/JSON manifests.
//!
//! Pure data and logic: no I/O, no datastore. Everything that reads or writes
//! resources builds on these types.

pub mod config;
pub mod decode;
pub mod duration;
pub mod endpoint;
pub mod felixconfig;
pub mod kinds;
pub mod meta;
pub mod network;
pub mod numorstring;
pub mod policy;
pub mod resource;
pub mod selector;
pub mod stored;
pub mod validate;

pub use kinds::{lookup_kind, AnyResource, KindInfo, KINDS};
pub use meta::{ObjectMeta, API_GROUP_PREFIX, API_VERSION};
pub use resource::Resource;

/// Label Calico sets on every namespaced endpoint: its namespace.
pub const LABEL_NAMESPACE: &str = "projectcalico.org/namespace";
/// Label Calico sets on every workload endpoint: its orchestrator.
pub const LABEL_ORCHESTRATOR: &str = "projectcalico.org/orchestrator";
