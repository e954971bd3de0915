//! ClusterInformation (a stored kind) and CalicoAPIConfig (the client
//! configuration file, never stored).

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::resource::{resource, Spec};
use crate::validate::FieldErrors;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterInformationSpec {
    #[serde(
        default,
        rename = "clusterGUID",
        skip_serializing_if = "String::is_empty"
    )]
    pub cluster_guid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub calico_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore_ready: Option<bool>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl Spec for ClusterInformationSpec {
    fn validate(&self, _meta: &ObjectMeta, _errs: &mut FieldErrors) {}
}

fn check_default_name(name: &str, errs: &mut FieldErrors) {
    if name != "default" {
        errs.add(
            "metadata.name",
            format!(
                "invalid name {name:?}: ClusterInformation has one resource, named \"default\""
            ),
        );
    }
}

resource!(
    /// Cluster identity and version (singleton `default`).
    ClusterInformation, ClusterInformationSpec, kind = "ClusterInformation",
    plural = "clusterinformations", namespaced = false, name_rule = check_default_name
);

/// The client configuration: `/etc/calico/calicoctl.cfg` and friends.
/// `datastoreType: local` with `datastorePath` selects the embedded store,
/// an addition of ours; everything else is upstream's.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CalicoAPIConfigSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub datastore_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub datastore_path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub etcd_endpoints: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub etcd_discovery_srv: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub etcd_username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub etcd_password: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub etcd_key_file: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub etcd_cert_file: String,
    #[serde(
        default,
        rename = "etcdCACertFile",
        skip_serializing_if = "String::is_empty"
    )]
    pub etcd_ca_cert_file: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub etcd_key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub etcd_cert: String,
    #[serde(
        default,
        rename = "etcdCACert",
        skip_serializing_if = "String::is_empty"
    )]
    pub etcd_ca_cert: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kubeconfig: String,
    #[serde(
        default,
        rename = "k8sAPIEndpoint",
        skip_serializing_if = "String::is_empty"
    )]
    pub k8s_api_endpoint: String,
    #[serde(
        default,
        rename = "k8sKeyFile",
        skip_serializing_if = "String::is_empty"
    )]
    pub k8s_key_file: String,
    #[serde(
        default,
        rename = "k8sCertFile",
        skip_serializing_if = "String::is_empty"
    )]
    pub k8s_cert_file: String,
    #[serde(
        default,
        rename = "k8sCAFile",
        skip_serializing_if = "String::is_empty"
    )]
    pub k8s_ca_file: String,
    #[serde(
        default,
        rename = "k8sAPIToken",
        skip_serializing_if = "String::is_empty"
    )]
    pub k8s_api_token: String,
    #[serde(
        default,
        rename = "k8sInsecureSkipTLSVerify",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub k8s_insecure_skip_tls_verify: bool,
    #[serde(
        default,
        rename = "k8sDisableNodePoll",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub k8s_disable_node_poll: bool,
    #[serde(
        default,
        rename = "k8sClientQPS",
        skip_serializing_if = "Option::is_none"
    )]
    pub k8s_client_qps: Option<f64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kubeconfig_inline: String,
}

/// The datastore types a client config may name.
pub const DATASTORE_TYPES: [&str; 3] = ["etcdv3", "kubernetes", "local"];

impl Spec for CalicoAPIConfigSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        if !self.datastore_type.is_empty()
            && !DATASTORE_TYPES.contains(&self.datastore_type.as_str())
        {
            errs.add(
                "spec.datastoreType",
                format!("unknown datastore type {:?}: expected etcdv3 or local (kubernetes is not supported by calico-rs)", self.datastore_type),
            );
        }
        for (i, ep) in self
            .etcd_endpoints
            .split(',')
            .filter(|e| !e.trim().is_empty())
            .enumerate()
        {
            let ep = ep.trim();
            if !(ep.starts_with("http://") || ep.starts_with("https://")) {
                errs.add(
                    format!("spec.etcdEndpoints[{i}]"),
                    format!("{ep:?} must start with http:// or https://"),
                );
            } else if ep.contains('<') || ep.contains('>') {
                errs.add(
                    format!("spec.etcdEndpoints[{i}]"),
                    format!("{ep:?} still contains a placeholder: replace it with your etcd server's address"),
                );
            }
        }
    }
}

fn any_name(_name: &str, _errs: &mut FieldErrors) {}

resource!(
    /// Client configuration (`calicoctl.cfg`).
    CalicoAPIConfig, CalicoAPIConfigSpec, kind = "CalicoAPIConfig",
    plural = "calicoapiconfigs", namespaced = false, name_rule = any_name
);
