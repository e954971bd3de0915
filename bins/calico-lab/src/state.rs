//! The running lab, saved as JSON in the lab directory so `status` and
//! `down` (separate invocations) know what `up` created.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::topology::{Host, Workload};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Datastore {
    /// The embedded store: one SQLite file every agent opens.
    Local { path: PathBuf },
    /// etcd running inside the fabric namespace.
    Etcd {
        endpoint: String,
        pid: Option<u32>,
        data_dir: PathBuf,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LabState {
    pub dir: PathBuf,
    pub datastore: Datastore,
    pub hosts: Vec<Host>,
    pub workloads: Vec<Workload>,
    /// Other processes the lab started (e.g. servers in the fabric).
    #[serde(default)]
    pub extra_pids: Vec<u32>,
    /// The OpenStack controller (`calico-lab openstack`), if started.
    #[serde(default)]
    pub openstack: Option<crate::openstack::controller::Controller>,
}

impl LabState {
    pub fn file(dir: &Path) -> PathBuf {
        dir.join("lab.json")
    }
    pub fn load(dir: &Path) -> Result<Option<LabState>> {
        let f = Self::file(dir);
        if !f.exists() {
            return Ok(None);
        }
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("cannot read {}", f.display()))?;
        Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!("{} is not a lab state file", f.display())
        })?))
    }
    /// Written to a temporary file and renamed over the old one, so a
    /// `calico-lab` running meanwhile (`exec` during `restart-agent`) never
    /// reads half a file.
    pub fn save(&self) -> Result<()> {
        let f = Self::file(&self.dir);
        let tmp = f.with_extension(format!("json.{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &f).with_context(|| format!("cannot replace {}", f.display()))
    }
    /// Environment that points calicoctl/calico-node at the lab's datastore.
    pub fn datastore_env(&self) -> Vec<(String, String)> {
        match &self.datastore {
            Datastore::Local { path } => vec![
                ("DATASTORE_TYPE".into(), "local".into()),
                ("DATASTORE_PATH".into(), path.display().to_string()),
            ],
            Datastore::Etcd { endpoint, .. } => vec![
                ("DATASTORE_TYPE".into(), "etcdv3".into()),
                ("ETCD_ENDPOINTS".into(), endpoint.clone()),
            ],
        }
    }
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }
}
