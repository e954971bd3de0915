//! `version`: client version and commit, and the cluster's version and type
//! from ClusterInformation `default` (written by calico-node).

use anyhow::Result;
use calico_api::config::ClusterInformation;

use crate::Global;

pub const CLIENT_VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));
pub const GIT_COMMIT: &str = env!("CALICO_GIT_COMMIT");

fn line(label: &str, value: &str) {
    // Labels padded so the values line up, as upstream prints them.
    println!("{:<18} {value}", format!("{label}:"));
}

pub fn run(global: &Global) -> Result<()> {
    line("Client Version", CLIENT_VERSION);
    line("Git commit", GIT_COMMIT);
    let info = super::connect(global).and_then(|c| {
        c.get_as::<ClusterInformation>("", "default")
            .map_err(|e| anyhow::anyhow!("{e}"))
    });
    match info {
        Ok(ci) => {
            let spec = ci.map(|c| c.spec).unwrap_or_default();
            let or_unknown = |s: &str| {
                if s.is_empty() {
                    "unknown".to_string()
                } else {
                    s.to_string()
                }
            };
            line("Cluster Version", &or_unknown(&spec.calico_version));
            line("Cluster Type", &or_unknown(&spec.cluster_type));
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!(
            "Unable to retrieve Cluster Version or Type: {e}"
        )),
    }
}
