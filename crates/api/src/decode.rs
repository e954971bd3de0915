//! Turning YAML or JSON text into resources: multi-document files, `List`
//! wrappers, strict field checking with paths, and hints for the common
//! mistake of YAML that lost its indentation.

use std::fmt;

use serde::Deserialize;

use crate::kinds::{is_client_config_kind, lookup_kind, AnyResource};
use crate::meta::API_VERSION;
use crate::resource::Resource;

/// A field-level decoding failure inside one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDecodeError {
    /// Path such as `spec.ingress[0].action`; empty for the document itself.
    pub field: String,
    pub message: String,
}

/// Why one document of a file could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentError {
    /// 1-based position of the document in its file (`---` separated).
    pub document: usize,
    pub kind: Option<String>,
    pub name: Option<String>,
    /// Set for namespaced documents, so messages can say `ns/name`.
    pub namespace: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.document)?;
        match (&self.kind, &self.name) {
            (Some(k), Some(n)) if !n.is_empty() => write!(f, " ({k} {n:?})")?,
            (Some(k), _) => write!(f, " ({k})")?,
            _ => {}
        }
        if let Some(field) = &self.field {
            if !field.is_empty() {
                write!(f, ", field {field}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// One decoded resource and the document it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    pub document: usize,
    pub resource: AnyResource,
}

/// Deserialises a typed resource from a JSON value with the failing field's path.
pub fn typed<R: Resource>(value: serde_json::Value) -> Result<R, FieldDecodeError> {
    serde_path_to_error::deserialize::<_, R>(value).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        FieldDecodeError {
            field,
            message: with_suggestion(&e.into_inner().to_string()),
        }
    })
}

/// v1 fields kept in the types only so that their errors can explain the
/// replacement; never suggest them.
const NEVER_SUGGEST: [&str; 2] = ["ipip", "nat-outgoing"];

/// Adds "did you mean `x`?" to serde's unknown field / unknown variant
/// messages when one of the accepted names is close to what was written
/// (`peerIp` → `peerIP`, `always` → `Always`, `port` → `ports`).
pub fn with_suggestion(message: &str) -> String {
    for prefix in ["unknown field `", "unknown variant `"] {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        let Some(end) = rest.find('`') else {
            break;
        };
        let (bad, tail) = (&rest[..end], &rest[end + 1..]);
        // The accepted names are the back-quoted words after the bad one.
        let candidates: Vec<&str> = tail
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|c| !NEVER_SUGGEST.contains(c))
            .collect();
        if let Some(s) = closest(bad, &candidates) {
            return format!("{prefix}{bad}` (did you mean `{s}`?){tail}");
        }
    }
    message.to_string()
}

/// The candidate equal to `word` ignoring case, else the one within a small
/// edit distance (about a third of the word's length, at most 3).
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let w = word.to_ascii_lowercase();
    if let Some(c) = candidates.iter().find(|c| c.to_ascii_lowercase() == w) {
        return Some(c);
    }
    let limit = (w.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (edit_distance(&w, &c.to_ascii_lowercase()), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, counted in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Decodes every document of a YAML or JSON text. Returns all resources, or
/// every error found (so the user fixes them in one go). Empty documents are
/// skipped; `kind: List` / `<Kind>List` wrappers are unpacked.
pub fn decode_documents(text: &str) -> Result<Vec<Decoded>, Vec<DocumentError>> {
    let (out, errors) = decode_documents_partial(text);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Like `decode_documents`, but returns the documents that did decode
/// alongside the errors, so callers can validate those too and report every
/// problem of a file in one go.
pub fn decode_documents_partial(text: &str) -> (Vec<Decoded>, Vec<DocumentError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let flattened = flattened_documents(text);
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let n = i + 1;
        let hint = if flattened.contains(&n) {
            FLATTENED_HINT
        } else {
            ""
        };
        let value = match serde_json::Value::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                errors.push(DocumentError {
                    document: n,
                    kind: None,
                    name: None,
                    namespace: None,
                    field: None,
                    message: format!("invalid YAML/JSON: {e}{hint}"),
                });
                // A syntax error leaves the parser unable to find later
                // documents reliably; stop here.
                break;
            }
        };
        if value.is_null() {
            continue;
        }
        match decode_value(n, value, hint) {
            Ok(mut rs) => out.append(&mut rs),
            Err(e) => errors.push(e),
        }
    }
    (out, errors)
}

const FLATTENED_HINT: &str = " (hint: this document looks like YAML that lost its indentation: \
`metadata:` or `spec:` is followed by unindented lines, so their fields landed at the top level; \
indent the fields under metadata: and spec: by two spaces)";

// Private and called once per document: boxing the error buys nothing.
#[allow(clippy::result_large_err)]
fn decode_value(
    n: usize,
    value: serde_json::Value,
    hint: &str,
) -> Result<Vec<Decoded>, DocumentError> {
    let namespace = value
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let err =
        |kind: Option<String>, name: Option<String>, field: &str, message: String| DocumentError {
            document: n,
            kind,
            name,
            namespace: namespace.clone(),
            field: Some(field.to_string()),
            message,
        };
    let obj = match value.as_object() {
        Some(o) => o,
        None => {
            return Err(err(
                None,
                None,
                "",
                format!(
                "expected a resource (a mapping with apiVersion, kind, metadata, spec), found {}",
                type_name(&value)
            ),
            ))
        }
    };
    let kind_raw = obj
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("")
        .to_string();
    let name = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|v| v.as_str())
        .map(str::to_string);
    if kind_raw.is_empty() {
        return Err(err(None, name, "kind", format!("kind is missing{hint}")));
    }
    match obj.get("apiVersion").and_then(|v| v.as_str()) {
        Some(API_VERSION) => {}
        Some(other) => {
            return Err(err(
                Some(kind_raw.clone()),
                name,
                "apiVersion",
                format!("unsupported apiVersion {other:?}: expected {API_VERSION:?}"),
            ))
        }
        None => {
            return Err(err(
                Some(kind_raw.clone()),
                name,
                "apiVersion",
                format!("apiVersion is missing: expected {API_VERSION:?}"),
            ))
        }
    }
    if kind_raw == "List" || kind_raw.ends_with("List") && obj.contains_key("items") {
        let items = obj
            .get("items")
            .and_then(|i| i.as_array())
            .cloned()
            .unwrap_or_default();
        let mut out = Vec::new();
        for item in items {
            out.append(&mut decode_value(n, item, hint)?);
        }
        return Ok(out);
    }
    if is_client_config_kind(&kind_raw) {
        return Err(err(
            Some(kind_raw),
            name,
            "kind",
            "CalicoAPIConfig is client configuration, not a resource: pass it with -c/--config"
                .into(),
        ));
    }
    let info = match lookup_kind(&kind_raw) {
        Some(i) if i.kind == kind_raw => i,
        Some(i) => {
            return Err(err(
                Some(kind_raw.clone()),
                name,
                "kind",
                format!("unknown kind {kind_raw:?}: did you mean {:?}?", i.kind),
            ))
        }
        None => {
            return Err(err(
                Some(kind_raw.clone()),
                name,
                "kind",
                format!("unknown kind {kind_raw:?}"),
            ))
        }
    };
    if let Some(f) = stray_top_level_field(obj) {
        return Err(err(
            Some(kind_raw),
            name,
            &f,
            format!("unknown field {f:?} at the top level (only apiVersion, kind, metadata and spec belong there){}", if hint.is_empty() { misplaced_hint(&f) } else { hint.to_string() }),
        ));
    }
    let r = AnyResource::from_value(info.kind, value.clone()).map_err(|e| {
        let msg = if hint.is_empty() {
            e.message
        } else {
            format!("{}{hint}", e.message)
        };
        err(Some(kind_raw.clone()), name.clone(), &e.field, msg)
    })?;
    Ok(vec![Decoded {
        document: n,
        resource: r,
    }])
}

fn stray_top_level_field(obj: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    obj.keys()
        .find(|k| {
            !matches!(
                k.as_str(),
                "apiVersion" | "kind" | "metadata" | "spec" | "status"
            )
        })
        .cloned()
}

/// For a stray top-level field, say where it probably belongs.
fn misplaced_hint(field: &str) -> String {
    let metadata_fields = [
        "name",
        "namespace",
        "labels",
        "annotations",
        "resourceVersion",
        "uid",
    ];
    if metadata_fields.contains(&field) {
        format!(" (hint: {field} belongs under metadata:, indented)")
    } else {
        format!(" (hint: if {field} is a spec field, indent it under spec:)")
    }
}

fn type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "nothing",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}

/// 1-based numbers of the documents in which `metadata:` or `spec:` stands
/// alone on a line at column 0 and the next content line is not indented:
/// the signature of YAML pasted from a page that dropped leading spaces.
fn flattened_documents(text: &str) -> Vec<usize> {
    let mut docs = Vec::new();
    let mut doc = 1;
    let mut saw_content = false;
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("---") {
            if saw_content {
                doc += 1;
                saw_content = false;
            }
            continue;
        }
        let t = line.trim_end();
        if t.is_empty() || t.trim_start().starts_with('#') {
            continue;
        }
        saw_content = true;
        if t == "metadata:" || t == "spec:" {
            let next = lines[i + 1..]
                .iter()
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
            if let Some(next) = next {
                let starts_at_col0 = !next.starts_with(' ') && !next.starts_with('\t');
                let is_doc_key = ["apiVersion:", "kind:", "metadata:", "spec:", "---"]
                    .iter()
                    .any(|k| next.starts_with(k));
                if starts_at_col0 && !is_doc_key && !docs.contains(&doc) {
                    docs.push(doc);
                }
            }
        }
    }
    docs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_multiple_documents_and_lists() {
        let text = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: a\nspec:\n  cidr: 10.0.0.0/16\n---\n---\napiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems:\n- apiVersion: projectcalico.org/v3\n  kind: IPPool\n  metadata:\n    name: b\n  spec:\n    cidr: 10.1.0.0/16\n";
        let d = decode_documents(text).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].document, 3);
        assert_eq!(d[1].resource.name(), "b");
    }

    #[test]
    fn unknown_field_has_path() {
        let text = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: p\nspec:\n  ingress:\n  - action: Allow\n    sauce: {}\n";
        let e = decode_documents(text).unwrap_err();
        assert_eq!(e[0].field.as_deref(), Some("spec.ingress[0].sauce"));
        assert!(e[0].message.contains("sauce"), "{}", e[0].message);
    }

    #[test]
    fn flattened_yaml_gets_a_hint() {
        let text = "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\nname: bgp-peer-1\nspec:\npeerIP: 192.168.10.254\nasNumber: 64512\n";
        let e = decode_documents(text).unwrap_err();
        assert!(e[0].message.contains("lost its indentation"), "{}", e[0]);
    }

    #[test]
    fn unknown_names_get_a_suggestion() {
        let text = "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: p\nspec:\n  peerIp: 10.0.0.1\n";
        let e = decode_documents(text).unwrap_err();
        assert_eq!(e[0].field.as_deref(), Some("spec.peerIp"));
        assert!(
            e[0].message
                .starts_with("unknown field `peerIp` (did you mean `peerIP`?), expected one of"),
            "{}",
            e[0].message
        );
        let text = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: a\nspec:\n  cidr: 10.0.0.0/16\n  ipipMode: always\n";
        let e = decode_documents(text).unwrap_err();
        assert!(
            e[0].message
                .contains("unknown variant `always` (did you mean `Always`?)"),
            "{}",
            e[0].message
        );
        assert!(
            with_suggestion("unknown field `port`, expected `ports` or `nets`")
                .contains("(did you mean `ports`?)")
        );
        assert!(with_suggestion(
            "unknown field `natOutgoin`, expected one of `cidr`, `natOutgoing`"
        )
        .contains("did you mean `natOutgoing`"));
        // Nothing close: the message is unchanged.
        let m = "unknown variant `Accept`, expected one of `Allow`, `Deny`, `Log`, `Pass`";
        assert_eq!(with_suggestion(m), m);
        // Deprecated v1 fields are never suggested.
        assert_eq!(
            with_suggestion("unknown field `ipop`, expected `cidr` or `ipip`"),
            "unknown field `ipop`, expected `cidr` or `ipip`"
        );
        assert_eq!(edit_distance("ordr", "order"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn wrong_case_kind_suggests() {
        let text = "apiVersion: projectcalico.org/v3\nkind: ippool\nmetadata:\n  name: a\nspec:\n  cidr: 10.0.0.0/16\n";
        let e = decode_documents(text).unwrap_err();
        assert!(e[0].message.contains("did you mean \"IPPool\""), "{}", e[0]);
    }
}
