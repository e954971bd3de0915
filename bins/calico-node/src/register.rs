//! Start-up writes: this host's Node resource, ClusterInformation `default`
//! (so `calicoctl version` shows the cluster version) and the `default`
//! tier. All compare-and-swap, retried on conflict.

use anyhow::{anyhow, Result};
use calico_api::config::{ClusterInformation, ClusterInformationSpec};
use calico_api::network::{Node, NodeBgpSpec};
use calico_api::policy::{Tier, TierSpec, DEFAULT_TIER};
use calico_client::{Client, ClientError};
use tracing::info;

use crate::config::{ip_with_prefix, AgentConfig};

pub const CALICO_VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));
pub const CLUSTER_TYPE: &str = "openstack,calico-rs";

const RETRIES: usize = 10;

fn retry<T>(mut f: impl FnMut() -> Result<T, ClientError>) -> Result<T> {
    let mut last = None;
    for _ in 0..RETRIES {
        match f() {
            Ok(v) => return Ok(v),
            Err(e @ (ClientError::Conflict { .. } | ClientError::AlreadyExists { .. })) => {
                last = Some(e)
            }
            Err(ClientError::Store(e)) if e.is_conflict() => last = Some(ClientError::Store(e)),
            Err(e) => return Err(anyhow!("{e}")),
        }
    }
    Err(anyhow!(
        "gave up after {RETRIES} conflicting writes: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// Creates or updates the Node resource with this host's address, keeping
/// every other field (tunnel addresses, labels) as it is.
pub fn ensure_node(client: &Client, cfg: &AgentConfig) -> Result<Node> {
    retry(|| {
        let existing = client.get_as::<Node>("", &cfg.node_name)?;
        let mut node = existing
            .clone()
            .unwrap_or_else(|| Node::new(cfg.node_name.clone(), Default::default()));
        if let Some(ip) = &cfg.ip {
            let bgp = node.spec.bgp.get_or_insert_with(NodeBgpSpec::default);
            bgp.ipv4_address = ip_with_prefix(ip);
        }
        if node.spec.vxlan_tunnel_mac_addr.is_empty() {
            node.spec.vxlan_tunnel_mac_addr = random_mac();
        }
        if existing.as_ref() == Some(&node) {
            return Ok(node);
        }
        let written = match existing {
            Some(_) => client.replace(node.into())?,
            None => client.create(node.into())?,
        };
        info!(node = %cfg.node_name, "registered Node resource");
        Ok(serde_json::from_value(written.to_json_value()).expect("a Node"))
    })
}

/// ClusterInformation `default`: created with a new cluster GUID if missing;
/// the version and readiness kept current.
pub fn ensure_cluster_information(client: &Client) -> Result<()> {
    retry(|| {
        let existing = client.get_as::<ClusterInformation>("", "default")?;
        let mut ci = existing.clone().unwrap_or_else(|| {
            ClusterInformation::new(
                "default",
                ClusterInformationSpec {
                    cluster_guid: uuid::Uuid::new_v4().simple().to_string(),
                    ..Default::default()
                },
            )
        });
        ci.spec.calico_version = CALICO_VERSION.to_string();
        if ci.spec.cluster_type.is_empty() {
            ci.spec.cluster_type = CLUSTER_TYPE.to_string();
        }
        ci.spec.datastore_ready.get_or_insert(true);
        if existing.as_ref() == Some(&ci) {
            return Ok(());
        }
        match existing {
            Some(_) => client.replace(ci.into())?,
            None => client.create(ci.into())?,
        };
        Ok(())
    })
}

/// The `default` tier exists in every upstream cluster.
pub fn ensure_default_tier(client: &Client) -> Result<()> {
    retry(|| {
        if client.get_as::<Tier>("", DEFAULT_TIER)?.is_none() {
            client.create(Tier::new(DEFAULT_TIER, TierSpec::default()).into())?;
        }
        Ok(())
    })
}

/// A random locally administered unicast MAC for the VXLAN device; kept on
/// the Node so it survives restarts and remote hosts can program FDB entries.
fn random_mac() -> String {
    let b = *uuid::Uuid::new_v4().as_bytes();
    let first = (b[0] & 0xfe) | 0x02;
    format!(
        "{first:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[1], b[2], b[3], b[4], b[5]
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn macs_are_local_unicast() {
        let m = super::random_mac();
        let first = u8::from_str_radix(&m[..2], 16).unwrap();
        assert_eq!(first & 0x03, 0x02, "{m}");
        assert_eq!(m.split(':').count(), 6);
    }
}
