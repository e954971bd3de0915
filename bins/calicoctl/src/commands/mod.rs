//! One module per calicoctl command, plus what they share.

pub mod delete;
pub mod get;
pub mod ipam;
pub mod label;
pub mod node;
pub mod patch;
pub mod version;
pub mod write;

use anyhow::{anyhow, Result};
use calico_api::{lookup_kind, KindInfo};
use calico_client::{load_client_config, Client};

use crate::Global;

/// Connects to the configured datastore; errors are one line naming it.
pub fn connect(global: &Global) -> Result<Client> {
    let cfg = load_client_config(global.config.as_deref()).map_err(|e| anyhow!("{e}"))?;
    Client::connect(&cfg).map_err(|e| anyhow!("{e}"))
}

/// Resolves a kind argument (case-insensitive, plurals and short names).
pub fn kind_arg(s: &str) -> Result<&'static KindInfo> {
    lookup_kind(s).ok_or_else(|| {
        anyhow!(
            "resource type {s:?} is not supported; known types: {}",
            calico_api::KINDS
                .iter()
                .map(|k| k.plural)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// `'IPPool'` when all resources are of one kind, else nothing; used in
/// "Successfully applied 3 'IPPool' resource(s)".
pub fn kind_phrase<'a>(kinds: impl Iterator<Item = &'a str>) -> String {
    let kinds: Vec<&str> = kinds.collect();
    match kinds.first() {
        Some(first) if kinds.iter().all(|k| k == first) => format!(" '{first}'"),
        _ => String::new(),
    }
}
