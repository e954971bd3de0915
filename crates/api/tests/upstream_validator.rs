//! Agreement with upstream Calico's validator.
//!
//! The cases in `tests/fixtures/upstream_validator/*.yaml` restate, as facts, the
//! verdicts of upstream's `libcalico-go/lib/validator/v3` (its Go rules, the CRD
//! schema and CEL rules it also runs, and its test table): a document in our v3
//! form, whether upstream accepts it, and for rejected documents the field our
//! error should name. Each case is decoded, defaulted and validated the way
//! `calicoctl apply` does, and every disagreement is reported at the end.
//!
//! Case format (one YAML list per file):
//!
//! ```yaml
//! - case: short description
//!   kind: NetworkPolicy          # the document's kind
//!   name: thing                  # optional; a per-kind default otherwise
//!   namespace: default           # optional
//!   labels: {}                   # optional metadata.labels
//!   annotations: {}              # optional metadata.annotations
//!   spec: {...}                  # optional spec
//!   status: {...}                # optional status (Node, CalicoNodeStatus)
//!   valid: false                 # upstream's verdict (and ours)
//!   field: spec.ingress[0].action   # optional: a field our errors must name
//!   differs: why                 # only where we deliberately differ from upstream
//! ```
//!
//! A few cases need values too long to write out (253-character names, 256 kB
//! annotations); they are built in `generated_cases`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use calico_api::decode::decode_documents;
use calico_api::lookup_kind;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The table has hundreds of cases; far fewer means files went missing.
const MIN_CASES: usize = 400;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    case: String,
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    spec: Option<Value>,
    /// Only Node and CalicoNodeStatus have a status.
    #[serde(default)]
    status: Option<Value>,
    valid: bool,
    #[serde(default)]
    field: Option<String>,
    /// Why we deliberately give a different verdict from upstream (rare). The
    /// `valid` flag then states our verdict.
    #[serde(default)]
    differs: Option<String>,
}

fn default_name(kind: &str) -> &'static str {
    match kind {
        "ClusterInformation" | "FelixConfiguration" | "BGPConfiguration" | "IPAMConfiguration" => {
            "default"
        }
        "NetworkPolicy" | "GlobalNetworkPolicy" => "thing",
        "Node" => "node1",
        _ => "test",
    }
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upstream_validator")
}

fn load_cases() -> Vec<(String, Case)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_dir())
        .expect("fixture directory exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("readable fixture");
        let cases: Vec<Case> = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not a list of cases: {e}", f.display()));
        let file = f.file_name().unwrap().to_string_lossy().to_string();
        out.extend(cases.into_iter().map(|c| (file.clone(), c)));
    }
    out
}

/// The document a case describes, as JSON text (which is also YAML).
fn document(c: &Case) -> String {
    let mut meta = Map::new();
    let name = c
        .name
        .clone()
        .unwrap_or_else(|| default_name(&c.kind).to_string());
    if !name.is_empty() {
        meta.insert("name".into(), json!(name));
    }
    if let Some(ns) = &c.namespace {
        meta.insert("namespace".into(), json!(ns));
    }
    if let Some(l) = &c.labels {
        meta.insert("labels".into(), json!(l));
    }
    if let Some(a) = &c.annotations {
        meta.insert("annotations".into(), json!(a));
    }
    let mut doc = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": c.kind,
        "metadata": meta,
    });
    if let Some(spec) = &c.spec {
        doc["spec"] = spec.clone();
    }
    if let Some(status) = &c.status {
        doc["status"] = status.clone();
    }
    doc.to_string()
}

/// Decodes, defaults and validates like `calicoctl apply`: returns the fields
/// of every error (empty when the document is accepted).
fn verdict(text: &str) -> Vec<(String, String)> {
    let docs = match decode_documents(text) {
        Ok(d) => d,
        Err(errs) => {
            return errs
                .into_iter()
                .map(|e| (e.field.unwrap_or_default(), e.message))
                .collect()
        }
    };
    let mut out = Vec::new();
    for d in docs {
        let mut r = d.resource;
        let info = lookup_kind(r.kind()).expect("decoded kinds are known");
        if info.namespaced && r.metadata().namespace.is_empty() {
            r.metadata_mut().namespace = "default".into();
        }
        r.apply_defaults();
        if let Err(errs) = r.validate() {
            out.extend(errs.0.into_iter().map(|e| (e.field, e.message)));
        }
    }
    out
}

/// Checks one case; returns a description of the disagreement, if any.
fn check(file: &str, c: &Case) -> Option<String> {
    let text = document(c);
    let errors = verdict(&text);
    let accepted = errors.is_empty();
    let where_ = format!("{file}: {}", c.case);
    if accepted != c.valid {
        let got = if accepted {
            "accepted".to_string()
        } else {
            format!("rejected: {errors:?}")
        };
        return Some(format!(
            "{where_}\n    expected {}, {got}\n    document: {text}",
            if c.valid { "valid" } else { "invalid" }
        ));
    }
    if let Some(field) = &c.field {
        // Naming an element of the expected list (`nets[1]` for `nets`) counts.
        let names = |f: &String| f == field || f.starts_with(&format!("{field}["));
        if !errors.iter().any(|(f, _)| names(f)) {
            return Some(format!(
                "{where_}\n    rejected, but no error names {field}: {errors:?}\n    document: {text}"
            ));
        }
    }
    None
}

/// Cases whose values are too long to write in the fixture files.
fn generated_cases() -> Vec<Case> {
    let xs = |n: usize| "x".repeat(n);
    let case = |desc: &str, kind: &str, name: String, spec: Value, valid: bool| Case {
        case: desc.to_string(),
        kind: kind.to_string(),
        name: Some(name),
        namespace: None,
        labels: None,
        annotations: None,
        spec: Some(spec),
        status: None,
        valid,
        field: (!valid).then(|| "metadata.name".to_string()),
        differs: None,
    };
    let pool = json!({"cidr": "1.2.3.0/26"});
    let mut out = vec![
        case(
            "IPPool name of 253 characters is valid",
            "IPPool",
            xs(253),
            pool.clone(),
            true,
        ),
        case(
            "IPPool name of 254 characters is invalid",
            "IPPool",
            xs(254),
            pool.clone(),
            false,
        ),
        case(
            "NetworkPolicy name of 253 characters is valid",
            "NetworkPolicy",
            xs(253),
            json!({}),
            true,
        ),
        case(
            "NetworkPolicy name of 254 characters is invalid",
            "NetworkPolicy",
            xs(254),
            json!({}),
            false,
        ),
        case(
            "GlobalNetworkPolicy name of 253 characters is valid",
            "GlobalNetworkPolicy",
            xs(253),
            json!({}),
            true,
        ),
        case(
            "GlobalNetworkPolicy name of 254 characters is invalid",
            "GlobalNetworkPolicy",
            xs(254),
            json!({}),
            false,
        ),
        case(
            "Tier name of 63 characters is valid",
            "Tier",
            xs(63),
            json!({"order": 100}),
            true,
        ),
        case(
            "Tier name of 64 characters is invalid",
            "Tier",
            xs(64),
            json!({"order": 100}),
            false,
        ),
        case(
            "Profile name of 253 characters is valid",
            "Profile",
            xs(253),
            json!({}),
            true,
        ),
        case(
            "HostEndpoint name of 254 characters is invalid",
            "HostEndpoint",
            xs(254),
            json!({"node": "n", "interfaceName": "eth0"}),
            false,
        ),
        case(
            "GlobalNetworkSet name made of 100-character labels is valid",
            "GlobalNetworkSet",
            format!("{}.{}", xs(100), xs(100)),
            json!({}),
            true,
        ),
    ];
    let label = |desc: &str, value: String, valid: bool| {
        let mut c = case(desc, "IPPool", "pool.name".into(), pool.clone(), valid);
        c.labels = Some(BTreeMap::from([(
            "projectcalico.org/label".to_string(),
            value,
        )]));
        c.field = (!valid).then(|| "metadata.labels.projectcalico.org/label".to_string());
        c
    };
    out.push(label("label value of 63 characters is valid", xs(63), true));
    out.push(label(
        "label value of 64 characters is invalid",
        xs(64),
        false,
    ));
    let annotation = |desc: &str, len: usize, valid: bool| {
        let mut c = case(desc, "IPPool", "pool.name".into(), pool.clone(), valid);
        c.annotations = Some(BTreeMap::from([("key".to_string(), xs(len))]));
        c.field = (!valid).then(|| "metadata.annotations".to_string());
        c
    };
    // The limit counts keys and values: "key" is 3 bytes.
    out.push(annotation(
        "annotations totalling exactly 256 kB are valid",
        256 * 1024 - 3,
        true,
    ));
    out.push(annotation(
        "annotations totalling 256 kB + 1 byte are invalid",
        256 * 1024 - 2,
        false,
    ));
    let labels_to_apply = |desc: &str, value: String, valid: bool| {
        let mut spec = Map::new();
        spec.insert(
            "labelsToApply".into(),
            json!({"project.calico.org/my-valid-label": value}),
        );
        let mut c = case(desc, "Profile", "test".into(), Value::Object(spec), valid);
        c.field =
            (!valid).then(|| "spec.labelsToApply.project.calico.org/my-valid-label".to_string());
        c
    };
    out.push(labels_to_apply(
        "labelsToApply value of 63 characters is valid",
        xs(63),
        true,
    ));
    out.push(labels_to_apply(
        "labelsToApply value of 64 characters is invalid",
        xs(64),
        false,
    ));
    out
}

#[test]
fn verdicts_agree_with_upstream() {
    let mut cases = load_cases();
    cases.extend(
        generated_cases()
            .into_iter()
            .map(|c| ("generated".to_string(), c)),
    );
    assert!(
        cases.len() >= MIN_CASES,
        "only {} cases found in {}",
        cases.len(),
        fixture_dir().display()
    );
    let failures: Vec<String> = cases.iter().filter_map(|(f, c)| check(f, c)).collect();
    let differing = cases.iter().filter(|(_, c)| c.differs.is_some()).count();
    eprintln!(
        "{} cases, {} deliberately differing from upstream",
        cases.len(),
        differing
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases disagree:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The harness itself must be able to fail: a wrong verdict is reported.
#[test]
fn a_wrong_verdict_is_reported() {
    let c = Case {
        case: "pool without a CIDR, claimed valid".into(),
        kind: "IPPool".into(),
        name: None,
        namespace: None,
        labels: None,
        annotations: None,
        spec: Some(json!({})),
        status: None,
        valid: true,
        field: None,
        differs: None,
    };
    assert!(check("self-test", &c).is_some());
    let c = Case {
        valid: false,
        field: Some("spec.nonsense".into()),
        ..c
    };
    let msg = check("self-test", &c).expect("the field is not named");
    assert!(msg.contains("no error names spec.nonsense"), "{msg}");
}
