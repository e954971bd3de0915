//! FelixConfiguration and ClusterInformation `default`, as the driver
//! provides them at the end of each resync (upstream's
//! `provide_felix_config`). Both work on the stored spec as JSON, adding
//! to it and keeping everything else (also fields this version of the
//! project does not know), and say whether a write is needed; the write is
//! a compare-and-swap on the revision read, retried on conflict.

use serde_json::{Map, Value};

/// Agent name of the cluster type and of the interface prefix.
pub const OPENSTACK: &str = "openstack";
/// The interface prefix of Nova's taps.
pub const TAP_PREFIX: &str = "tap";

fn spec_of(existing: Option<&Value>) -> Map<String, Value> {
    // A missing or unreadable resource counts as an empty spec, which the
    // write then replaces (upstream does the same for corrupt JSON).
    existing
        .and_then(|v| v.get("spec"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// The FelixConfiguration `default` spec the driver needs, given the stored
/// resource (whole JSON value, or `None`): `endpointReportingEnabled: true`
/// (so Felix reports endpoint status for Neutron's port status) and `tap`
/// among the comma-separated `interfacePrefix`es (appended when missing;
/// `interfacePrefix: tap` when unset). `None` when the stored spec already
/// has both.
pub fn felix_configuration_spec(existing: Option<&Value>) -> Option<Value> {
    let mut spec = spec_of(existing);
    let mut changed = false;
    if !truthy(spec.get("endpointReportingEnabled")) {
        spec.insert("endpointReportingEnabled".into(), Value::Bool(true));
        changed = true;
    }
    let prefix = spec
        .get("interfacePrefix")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut prefixes: Vec<&str> = if prefix.is_empty() {
        vec![]
    } else {
        prefix.split(',').collect()
    };
    if !prefixes.contains(&TAP_PREFIX) {
        prefixes.push(TAP_PREFIX);
        spec.insert("interfacePrefix".into(), prefixes.join(",").into());
        changed = true;
    }
    changed.then_some(Value::Object(spec))
}

/// The ClusterInformation `default` spec the driver needs, given the stored
/// resource: a `clusterGUID` (`new_guid`, 32 hex digits as upstream's
/// `uuid4().hex`, when there is none), `openstack` in `clusterType`
/// (appended after a comma unless the type already mentions it), and
/// `datastoreReady: true` when it is not set at all (an explicit `false`,
/// e.g. during another orchestrator's upgrade, is kept). `None` when
/// nothing needs to change.
pub fn cluster_information_spec(existing: Option<&Value>, new_guid: &str) -> Option<Value> {
    let mut spec = spec_of(existing);
    let mut changed = false;
    if !truthy(spec.get("clusterGUID")) {
        spec.insert("clusterGUID".into(), new_guid.into());
        changed = true;
    }
    let cluster_type = spec
        .get("clusterType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if cluster_type.is_empty() {
        spec.insert("clusterType".into(), OPENSTACK.into());
        changed = true;
    } else if !cluster_type.contains(OPENSTACK) {
        spec.insert(
            "clusterType".into(),
            format!("{cluster_type},{OPENSTACK}").into(),
        );
        changed = true;
    }
    if !spec.contains_key("datastoreReady") {
        spec.insert("datastoreReady".into(), Value::Bool(true));
        changed = true;
    }
    changed.then_some(Value::Object(spec))
}

/// A whole resource value for a non-namespaced kind named `default` with
/// `spec`, as upstream builds one when none is stored (`store::put_value`
/// adds uid and creation time, and keeps a stored resource's metadata).
pub fn default_resource(kind: &str, spec: Value) -> Value {
    serde_json::json!({
        "kind": kind,
        "apiVersion": calico_api::API_VERSION,
        "metadata": {"name": "default"},
        "spec": spec,
    })
}
