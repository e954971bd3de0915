//! Printing resources: `ps` and `wide` tables with upstream's columns,
//! `custom-columns=`, and `yaml` / `json` (single resource or a `<Kind>List`).

use calico_api::network::AsNumber;
use calico_api::{AnyResource, KindInfo, API_VERSION};

use crate::{columns, table};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    Ps,
    Wide,
    Yaml,
    Json,
    CustomColumns(Vec<String>),
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "ps" => Ok(Format::Ps),
            "wide" => Ok(Format::Wide),
            "yaml" => Ok(Format::Yaml),
            "json" => Ok(Format::Json),
            _ => {
                if let Some(cols) = s.strip_prefix("custom-columns=") {
                    let cols: Vec<String> = cols
                        .split(',')
                        .map(|c| c.trim().to_ascii_uppercase())
                        .filter(|c| !c.is_empty())
                        .collect();
                    if cols.is_empty() {
                        return Err("custom-columns= needs at least one column name".into());
                    }
                    Ok(Format::CustomColumns(cols))
                } else {
                    Err(format!("unknown output format {s:?}: expected ps, wide, yaml, json or custom-columns=COL,..."))
                }
            }
        }
    }
}

/// Renders resources of one kind as a table, followed by a blank line as
/// upstream leaves after each table. `print_namespace` (`-n` or `-A` given)
/// puts a NAMESPACE column first for namespaced kinds in `ps` and `wide`.
pub fn render_table(
    info: &KindInfo,
    items: &[AnyResource],
    format: &Format,
    print_namespace: bool,
    global_as: AsNumber,
) -> Result<String, String> {
    let mut cols: Vec<&str> = match format {
        Format::Ps => columns::ps_columns(info.kind).to_vec(),
        Format::Wide => columns::wide_columns(info.kind).to_vec(),
        Format::CustomColumns(c) => return custom_table(info, items, c, global_as),
        _ => unreachable!("tables only"),
    };
    if info.namespaced && print_namespace {
        cols.insert(0, "NAMESPACE");
    }
    Ok(table_of(&cols, items, global_as))
}

fn custom_table(
    info: &KindInfo,
    items: &[AnyResource],
    wanted: &[String],
    global_as: AsNumber,
) -> Result<String, String> {
    let known = columns::known_columns(info.kind);
    let mut cols = Vec::new();
    for name in wanted {
        match known.iter().find(|k| **k == name.as_str()) {
            Some(k) => cols.push(*k),
            None => {
                return Err(format!(
                    "unknown column {name:?} for {}: available columns are {}",
                    info.kind,
                    known.join(", ")
                ))
            }
        }
    }
    Ok(table_of(&cols, items, global_as))
}

fn table_of(cols: &[&str], items: &[AnyResource], global_as: AsNumber) -> String {
    let mut rows = vec![cols.iter().map(|c| c.to_string()).collect::<Vec<_>>()];
    for r in items {
        rows.push(
            cols.iter()
                .map(|c| columns::cell(r, c, global_as))
                .collect(),
        );
    }
    let mut out = table::render(&rows);
    out.push('\n');
    out
}

/// Sorts object keys recursively, as upstream's YAML output (which goes
/// through a JSON map) shows them.
fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut entries: Vec<(String, serde_json::Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

/// One resource alone, or several as a `<Kind>List` (`List` if mixed).
pub fn document(items: &[AnyResource], single: bool, revision: i64) -> serde_json::Value {
    if single && items.len() == 1 {
        return items[0].to_json_value();
    }
    let kind = match items.first() {
        Some(first) if items.iter().all(|r| r.kind() == first.kind()) => {
            format!("{}List", first.kind())
        }
        _ => "List".to_string(),
    };
    serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": kind,
        "items": items.iter().map(AnyResource::to_json_value).collect::<Vec<_>>(),
        "metadata": { "resourceVersion": revision.to_string() },
    })
}

pub fn to_yaml(v: serde_json::Value) -> String {
    serde_yaml::to_string(&sorted(v)).expect("JSON values always serialise")
}

pub fn to_json(v: &serde_json::Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("JSON values always serialise");
    s.push('\n');
    s
}
