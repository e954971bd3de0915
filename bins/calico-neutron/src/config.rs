//! The driver's `[calico]` options, as the shim passes them after
//! oslo.config has read neutron.conf: upstream's etcd options, plus ours
//! for the embedded store.

use std::path::PathBuf;
use std::time::Duration;

use calico_datastore::{DatastoreConfig, EtcdConfig};
use calico_openstack::{Config, QosConfig};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct Options {
    /// `etcdv3` (upstream's only store) or `local` (the embedded one).
    pub datastore_type: String,
    pub local_datastore_path: PathBuf,
    pub etcd_host: String,
    pub etcd_port: u16,
    pub etcd_scheme: String,
    pub etcd_ca_cert_file: Option<PathBuf>,
    pub etcd_cert_file: Option<PathBuf>,
    pub etcd_key_file: Option<PathBuf>,
    pub etcd_username: Option<String>,
    pub etcd_password: Option<String>,
    pub etcd_timeout: u64,
    pub openstack_region: Option<String>,
    #[serde(flatten)]
    pub qos: QosConfig,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            datastore_type: "etcdv3".into(),
            local_datastore_path: calico_datastore::DEFAULT_LOCAL_PATH.into(),
            etcd_host: "127.0.0.1".into(),
            etcd_port: 2379,
            etcd_scheme: "http".into(),
            etcd_ca_cert_file: None,
            etcd_cert_file: None,
            etcd_key_file: None,
            etcd_username: None,
            etcd_password: None,
            etcd_timeout: 60,
            openstack_region: None,
            qos: QosConfig::default(),
        }
    }
}

impl Options {
    pub fn datastore(&self) -> anyhow::Result<DatastoreConfig> {
        match self.datastore_type.as_str() {
            "etcdv3" => Ok(DatastoreConfig::Etcd(EtcdConfig {
                endpoints: vec![format!(
                    "{}://{}:{}",
                    self.etcd_scheme, self.etcd_host, self.etcd_port
                )],
                username: self.etcd_username.clone().filter(|s| !s.is_empty()),
                password: self.etcd_password.clone().filter(|s| !s.is_empty()),
                ca_cert_file: self.etcd_ca_cert_file.clone(),
                cert_file: self.etcd_cert_file.clone(),
                key_file: self.etcd_key_file.clone(),
                timeout: Duration::from_secs(self.etcd_timeout.max(1)),
                ..EtcdConfig::default()
            })),
            "local" => Ok(DatastoreConfig::Local {
                path: self.local_datastore_path.clone(),
            }),
            other => anyhow::bail!(
                "[calico] datastore_type: {other:?} is neither \"etcdv3\" nor \"local\""
            ),
        }
    }

    pub fn translation(&self) -> anyhow::Result<Config> {
        let region = self.openstack_region.as_deref().filter(|r| !r.is_empty());
        Config::new(region, self.qos.clone())
            .map_err(|e| anyhow::anyhow!("[calico] openstack_region: {e}"))
    }
}
