//! How a write combines with what is stored, as upstream's
//! `datamodel_v3.put`: the stored resource's metadata is kept (`uid`,
//! `creationTimestamp`, and anything else), labels and annotations are
//! replaced when the new value has any (so a port leaves a security group
//! when its label goes), and the spec is replaced. Pure: the caller passes
//! the fresh UID and the time, and does the compare-and-swap.

use serde_json::{Map, Value};

/// The creation time format upstream writes (`2015-05-19T20:32:12Z`).
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// The value to store for `new` (a whole resource as `to_value` gives it)
/// over `existing` (the stored bytes, if any): `uid` and
/// `creationTimestamp` from the stored resource, else `fresh_uid` and
/// `now`.
pub fn put_value(new: &Value, existing: Option<&[u8]>, fresh_uid: &str, now: &str) -> Value {
    let stored: Option<Map<String, Value>> = existing
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .and_then(|v| match v {
            Value::Object(m) if m.get("metadata").is_some_and(Value::is_object) => Some(m),
            _ => None,
        });
    let mut value = stored.unwrap_or_else(|| {
        let mut m = Map::new();
        m.insert("kind".into(), new["kind"].clone());
        m.insert("apiVersion".into(), new["apiVersion"].clone());
        m.insert(
            "metadata".into(),
            serde_json::json!({"name": new["metadata"]["name"].clone()}),
        );
        m
    });
    let meta = value
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .expect("metadata is an object");
    let new_meta = &new["metadata"];
    if let Some(ns) = new_meta.get("namespace").filter(|n| !n.is_null()) {
        meta.insert("namespace".into(), ns.clone());
    }
    meta.entry("creationTimestamp")
        .or_insert_with(|| Value::from(now));
    meta.entry("uid").or_insert_with(|| Value::from(fresh_uid));
    for field in ["annotations", "labels"] {
        if let Some(m) = new_meta
            .get(field)
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty())
        {
            meta.insert(field.into(), Value::Object(m.clone()));
        }
    }
    value.insert(
        "spec".into(),
        new.get("spec").cloned().unwrap_or(Value::Null),
    );
    Value::Object(value)
}
