//! The `[calico]` options of neutron.conf: upstream's etcd options, plus
//! ours for the embedded store. The driver's shim passes them after
//! oslo.config has read the files; `calico-dhcp-agent` reads the files
//! itself (`NeutronConf`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use calico_datastore::{DatastoreConfig, EtcdConfig};
use serde::Deserialize;

use crate::{Config, QosConfig};

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
    pub fn datastore(&self) -> Result<DatastoreConfig, String> {
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
            other => Err(format!(
                "[calico] datastore_type: {other:?} is neither \"etcdv3\" nor \"local\""
            )),
        }
    }

    pub fn translation(&self) -> Result<Config, String> {
        let region = self.openstack_region.as_deref().filter(|r| !r.is_empty());
        Config::new(region, self.qos.clone()).map_err(|e| format!("[calico] openstack_region: {e}"))
    }

    /// The `[calico]` section of neutron.conf files as oslo.config reads
    /// them; an option of the wrong type is an error naming it.
    pub fn from_conf(conf: &NeutronConf) -> Result<Options, String> {
        let mut obj = serde_json::Map::new();
        for (k, v) in conf.section("calico") {
            let value = match k.as_str() {
                "etcd_port" | "etcd_timeout" => v
                    .parse::<u64>()
                    .map(serde_json::Value::from)
                    .map_err(|_| format!("[calico] {k}: {v:?} is not a number"))?,
                _ => serde_json::Value::from(v.clone()),
            };
            obj.insert(k.clone(), value);
        }
        // QoS options are numbers too; those we do not need stay default.
        obj.retain(|k, _| !k.starts_with("max_") && !k.contains("burst"));
        serde_json::from_value(serde_json::Value::Object(obj)).map_err(|e| format!("[calico]: {e}"))
    }
}

/// neutron.conf and friends as oslo.config reads them: `[section]`,
/// `key = value`, `#` and `;` comments; later files override earlier ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NeutronConf {
    sections: BTreeMap<String, BTreeMap<String, String>>,
}

impl NeutronConf {
    pub fn read(files: &[impl AsRef<Path>]) -> Result<NeutronConf, String> {
        let mut conf = NeutronConf::default();
        for f in files {
            let f = f.as_ref();
            let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
            conf.parse(&text)
                .map_err(|e| format!("{}: {e}", f.display()))?;
        }
        Ok(conf)
    }

    pub fn parse(&mut self, text: &str) -> Result<(), String> {
        let mut section: Option<String> = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = Some(name.trim().to_string());
                continue;
            }
            let Some((k, v)) = line.split_once('=').or_else(|| line.split_once(':')) else {
                return Err(format!(
                    "line {}: neither a [section] nor key = value",
                    n + 1
                ));
            };
            let Some(sec) = &section else {
                return Err(format!(
                    "line {}: {:?} before any [section]",
                    n + 1,
                    k.trim()
                ));
            };
            self.sections
                .entry(sec.clone())
                .or_default()
                .insert(k.trim().to_string(), v.trim().to_string());
        }
        Ok(())
    }

    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections
            .get(section)?
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn section(&self, section: &str) -> impl Iterator<Item = (&String, &String)> {
        self.sections.get(section).into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_calico_section_of_neutron_conf() {
        let mut conf = NeutronConf::default();
        conf.parse(
            "[DEFAULT]\nhost = compute-1\n# comment\n[calico]\netcd_host = 10.0.0.5\netcd_port = 2379\n\
             openstack_region = r1\n",
        )
        .unwrap();
        conf.parse("[calico]\netcd_port = 12379\n").unwrap();
        assert_eq!(conf.get("DEFAULT", "host"), Some("compute-1"));
        let o = Options::from_conf(&conf).unwrap();
        assert_eq!((o.etcd_host.as_str(), o.etcd_port), ("10.0.0.5", 12379));
        assert_eq!(o.openstack_region.as_deref(), Some("r1"));
        let mut bad = NeutronConf::default();
        bad.parse("[calico]\netcd_port = x\n").unwrap();
        assert!(Options::from_conf(&bad).unwrap_err().contains("etcd_port"));
        assert!(NeutronConf::default()
            .parse("etcd_host = x")
            .unwrap_err()
            .contains("line 1"));
    }
}
