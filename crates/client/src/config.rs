//! Client configuration as upstream calicoctl reads it: a CalicoAPIConfig
//! file (`-c`, default `/etc/calico/calicoctl.cfg`), else the environment
//! (`DATASTORE_TYPE`, `ETCD_ENDPOINTS`, `ETCD_*_FILE`, each also with a
//! `CALICO_` prefix), else the embedded `local` store.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use calico_api::config::{CalicoAPIConfig, CalicoAPIConfigSpec};
use calico_api::decode::typed;
use calico_api::Resource;
use calico_datastore::{DatastoreConfig, EtcdConfig, DEFAULT_LOCAL_PATH};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/calico/calicoctl.cfg";

/// Where the datastore is and how the configuration was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    pub datastore: DatastoreConfig,
    /// E.g. `file /etc/calico/calicoctl.cfg`, `environment`, `default`.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    Read {
        path: PathBuf,
        cause: String,
    },
    Invalid {
        origin: String,
        field: String,
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, cause } => {
                write!(f, "cannot read config file {}: {cause}", path.display())
            }
            ConfigError::Invalid {
                origin,
                field,
                message,
            } if field.is_empty() => {
                write!(f, "invalid client configuration in {origin}: {message}")
            }
            ConfigError::Invalid {
                origin,
                field,
                message,
            } => {
                write!(
                    f,
                    "invalid client configuration in {origin}, field {field}: {message}"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Loads the client configuration the way upstream does. `explicit` is the
/// `-c/--config` argument: when given, the file must exist.
pub fn load_client_config(explicit: Option<&Path>) -> Result<ClientConfig, ConfigError> {
    load_with(explicit, Path::new(DEFAULT_CONFIG_PATH), &|k| {
        std::env::var(k).ok()
    })
}

/// `load_client_config` with the default path and environment injected (tests).
pub fn load_with(
    explicit: Option<&Path>,
    default_path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ClientConfig, ConfigError> {
    let path = match explicit {
        Some(p) => Some(p),
        None if default_path.exists() => Some(default_path),
        None => None,
    };
    if let Some(path) = path {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            cause: e.to_string(),
        })?;
        let origin = format!("file {}", path.display());
        let spec = parse_config_text(&text, &origin)?;
        return Ok(ClientConfig {
            datastore: spec_to_datastore(&spec, &origin, env)?,
            source: origin,
        });
    }
    let spec = spec_from_env(env);
    let any = spec != CalicoAPIConfigSpec::default();
    let origin = if any { "environment" } else { "default" }.to_string();
    Ok(ClientConfig {
        datastore: spec_to_datastore(&spec, &origin, env)?,
        source: origin,
    })
}

/// Parses and validates a CalicoAPIConfig document.
pub fn parse_config_text(text: &str, origin: &str) -> Result<CalicoAPIConfigSpec, ConfigError> {
    let invalid = |field: &str, message: String| ConfigError::Invalid {
        origin: origin.to_string(),
        field: field.to_string(),
        message,
    };
    let value: serde_json::Value =
        serde_yaml::from_str(text).map_err(|e| invalid("", format!("invalid YAML: {e}")))?;
    match value.get("kind").and_then(|k| k.as_str()) {
        Some("CalicoAPIConfig") => {}
        Some(k) => {
            return Err(invalid(
                "kind",
                format!("expected kind CalicoAPIConfig, found {k:?}"),
            ))
        }
        None => return Err(invalid("kind", "kind: CalicoAPIConfig is missing".into())),
    }
    let cfg: CalicoAPIConfig = typed(value).map_err(|e| invalid(&e.field, e.message))?;
    if let Err(errs) = cfg.validate() {
        let e = &errs.0[0];
        return Err(invalid(&e.field, e.message.clone()));
    }
    Ok(cfg.spec)
}

fn env_var(env: &dyn Fn(&str) -> Option<String>, name: &str) -> String {
    env(&format!("CALICO_{name}"))
        .or_else(|| env(name))
        .unwrap_or_default()
}

/// The spec the environment describes (empty fields where unset).
pub fn spec_from_env(env: &dyn Fn(&str) -> Option<String>) -> CalicoAPIConfigSpec {
    CalicoAPIConfigSpec {
        datastore_type: env_var(env, "DATASTORE_TYPE"),
        datastore_path: env_var(env, "DATASTORE_PATH"),
        etcd_endpoints: env_var(env, "ETCD_ENDPOINTS"),
        etcd_discovery_srv: env_var(env, "ETCD_DISCOVERY_SRV"),
        etcd_username: env_var(env, "ETCD_USERNAME"),
        etcd_password: env_var(env, "ETCD_PASSWORD"),
        etcd_key_file: env_var(env, "ETCD_KEY_FILE"),
        etcd_cert_file: env_var(env, "ETCD_CERT_FILE"),
        etcd_ca_cert_file: env_var(env, "ETCD_CA_CERT_FILE"),
        ..Default::default()
    }
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Turns a validated spec into a datastore configuration. Unset type means
/// etcdv3 when endpoints are given, else the embedded store (upstream would
/// fall back to Kubernetes, which calico-rs does not use).
pub fn spec_to_datastore(
    spec: &CalicoAPIConfigSpec,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<DatastoreConfig, ConfigError> {
    let invalid = |field: &str, message: String| ConfigError::Invalid {
        origin: origin.to_string(),
        field: field.to_string(),
        message,
    };
    let kind = match spec.datastore_type.as_str() {
        "" if !spec.etcd_endpoints.is_empty() => "etcdv3",
        "" => "local",
        k => k,
    };
    match kind {
        "local" => {
            let path = if spec.datastore_path.is_empty() {
                DEFAULT_LOCAL_PATH
            } else {
                &spec.datastore_path
            };
            Ok(DatastoreConfig::Local {
                path: PathBuf::from(path),
            })
        }
        "etcdv3" => {
            let mut cfg = EtcdConfig::default();
            if !spec.etcd_discovery_srv.is_empty() && spec.etcd_endpoints.is_empty() {
                return Err(invalid(
                    "spec.etcdDiscoverySrv",
                    "DNS SRV discovery is not supported; list the endpoints in etcdEndpoints"
                        .into(),
                ));
            }
            if !spec.etcd_endpoints.is_empty() {
                cfg.endpoints = spec
                    .etcd_endpoints
                    .split(',')
                    .map(|e| e.trim().to_string())
                    .filter(|e| !e.is_empty())
                    .collect();
            }
            for (i, ep) in cfg.endpoints.iter().enumerate() {
                if ep.contains('<') || ep.contains('>') {
                    return Err(invalid(
                        &format!("spec.etcdEndpoints[{i}]"),
                        format!("{ep:?} still contains a placeholder: replace it with your etcd server's address"),
                    ));
                }
                if !(ep.starts_with("http://") || ep.starts_with("https://")) {
                    return Err(invalid(
                        &format!("spec.etcdEndpoints[{i}]"),
                        format!("{ep:?} must start with http:// or https://"),
                    ));
                }
            }
            cfg.username = opt(&spec.etcd_username);
            cfg.password = opt(&spec.etcd_password);
            cfg.ca_cert_file = opt(&spec.etcd_ca_cert_file).map(PathBuf::from);
            cfg.cert_file = opt(&spec.etcd_cert_file).map(PathBuf::from);
            cfg.key_file = opt(&spec.etcd_key_file).map(PathBuf::from);
            cfg.ca_cert_pem = opt(&spec.etcd_ca_cert);
            cfg.cert_pem = opt(&spec.etcd_cert);
            cfg.key_pem = opt(&spec.etcd_key);
            if cfg.cert_file.is_some() != cfg.key_file.is_some() {
                return Err(invalid(
                    "spec.etcdCertFile",
                    "etcdCertFile and etcdKeyFile must be given together".into(),
                ));
            }
            let timeout = env_var(env, "DATASTORE_TIMEOUT");
            if !timeout.is_empty() {
                cfg.timeout =
                    parse_timeout(&timeout).map_err(|m| invalid("DATASTORE_TIMEOUT", m))?;
            }
            Ok(DatastoreConfig::Etcd(cfg))
        }
        "kubernetes" => Err(invalid(
            "spec.datastoreType",
            "the kubernetes datastore is not supported by calico-rs; use etcdv3 or local".into(),
        )),
        other => Err(invalid(
            "spec.datastoreType",
            format!("unknown datastore type {other:?}: expected etcdv3 or local"),
        )),
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    calico_api::duration::parse_go_duration(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn article_config_file_loads() {
        // The article's file, with a real address in place of <ETCD_IP>.
        let text = "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata:\nspec:\n  datastoreType: \"etcdv3\"\n  etcdEndpoints: \"http://10.0.0.5:2379\"\n";
        let spec = parse_config_text(text, "test").unwrap();
        match spec_to_datastore(&spec, "test", &no_env).unwrap() {
            DatastoreConfig::Etcd(c) => assert_eq!(c.endpoints, vec!["http://10.0.0.5:2379"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn placeholder_endpoint_is_named() {
        let text = "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata:\nspec:\n  datastoreType: \"etcdv3\"\n  etcdEndpoints: \"http://<ETCD_IP>:2379\"\n";
        let e = parse_config_text(text, "file x.cfg")
            .unwrap_err()
            .to_string();
        assert!(e.contains("placeholder") && e.contains("x.cfg"), "{e}");
    }

    #[test]
    fn unknown_field_is_an_error() {
        let text = "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n  datastoreTyp: etcdv3\n";
        let e = parse_config_text(text, "f").unwrap_err().to_string();
        assert!(e.contains("datastoreTyp"), "{e}");
    }

    #[test]
    fn environment_and_default() {
        let env = |k: &str| match k {
            "DATASTORE_TYPE" => Some("etcdv3".to_string()),
            "ETCD_ENDPOINTS" => Some("http://a:2379,http://b:2379".to_string()),
            "CALICO_ETCD_CA_CERT_FILE" => Some("/ca.pem".to_string()),
            _ => None,
        };
        let c = load_with(None, Path::new("/nonexistent"), &env).unwrap();
        assert_eq!(c.source, "environment");
        match c.datastore {
            DatastoreConfig::Etcd(e) => {
                assert_eq!(e.endpoints.len(), 2);
                assert_eq!(e.ca_cert_file.as_deref(), Some(Path::new("/ca.pem")));
            }
            other => panic!("{other:?}"),
        }
        let c = load_with(None, Path::new("/nonexistent"), &no_env).unwrap();
        assert_eq!(
            c.datastore,
            DatastoreConfig::Local {
                path: DEFAULT_LOCAL_PATH.into()
            }
        );
        let local = |k: &str| match k {
            "DATASTORE_TYPE" => Some("local".to_string()),
            "DATASTORE_PATH" => Some("/tmp/x.db".to_string()),
            _ => None,
        };
        let c = load_with(None, Path::new("/nonexistent"), &local).unwrap();
        assert_eq!(
            c.datastore,
            DatastoreConfig::Local {
                path: "/tmp/x.db".into()
            }
        );
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let e = load_with(
            Some(Path::new("/nonexistent.cfg")),
            Path::new("/x"),
            &no_env,
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent.cfg"));
    }
}
