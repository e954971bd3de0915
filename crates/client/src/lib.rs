//! The typed v3 resource client that calicoctl, calico-node and the OpenStack
//! driver share: upstream's etcd key layout and JSON encoding on top of the
//! datastore trait, cross-resource validation, and client configuration
//! (`calicoctl.cfg` and the `DATASTORE_TYPE` / `ETCD_*` environment).

pub mod bgp_status;
pub mod client;
pub mod config;
pub mod keys;
pub mod policy_names;

pub use client::{Client, ClientError, Stored};
pub use config::{load_client_config, ClientConfig, ConfigError, DEFAULT_CONFIG_PATH};
