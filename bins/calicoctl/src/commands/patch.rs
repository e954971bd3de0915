//! `patch`: apply a JSON merge patch (RFC 7386) to one resource, validate the
//! result and write it back guarded by its resourceVersion.

use anyhow::{anyhow, bail, Result};
use calico_api::AnyResource;
use calico_client::client::prepare;
use clap::Args;

use crate::Global;

#[derive(Args, Debug)]
pub struct PatchArgs {
    pub kind: String,
    pub name: String,
    /// The patch, as JSON or YAML.
    #[arg(short = 'p', long = "patch")]
    pub patch: String,
    /// Patch type: merge (strategic is accepted and treated as merge).
    #[arg(short = 't', long = "type", default_value = "strategic")]
    pub patch_type: String,
    #[arg(short = 'n', long = "namespace", default_value = "")]
    pub namespace: String,
    #[command(flatten)]
    pub global: Global,
}

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    match patch {
        serde_json::Value::Object(p) => {
            if !target.is_object() {
                *target = serde_json::Value::Object(Default::default());
            }
            let t = target.as_object_mut().expect("made an object above");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

pub fn run(a: &PatchArgs) -> Result<()> {
    if !matches!(a.patch_type.as_str(), "merge" | "strategic") {
        bail!("unsupported patch type {:?}: use merge", a.patch_type);
    }
    let info = super::kind_arg(&a.kind)?;
    let patch: serde_json::Value =
        serde_yaml::from_str(&a.patch).map_err(|e| anyhow!("invalid patch {:?}: {e}", a.patch))?;
    let client = super::connect(&a.global)?;
    let current = client
        .get(info, &a.namespace, &a.name)
        .map_err(|e| anyhow!("{e}"))?
        .ok_or_else(|| anyhow!("resource does not exist: {}({})", info.kind, a.name))?;
    let mut value = current.to_json_value();
    merge_patch(&mut value, &patch);
    let mut patched = AnyResource::from_value(info.kind, value).map_err(|e| {
        anyhow!(
            "the patched {} {:?} is invalid: field {}: {}",
            info.kind,
            a.name,
            e.field,
            e.message
        )
    })?;
    let m = patched.metadata();
    let cm = current.metadata();
    if m.name != cm.name || m.namespace != cm.namespace {
        bail!("a patch may not change metadata.name or metadata.namespace");
    }
    prepare(&mut patched);
    // Keep the revision we read so a concurrent change is detected.
    patched.metadata_mut().resource_version = cm.resource_version.clone();
    client.replace(patched).map_err(|e| anyhow!("{e}"))?;
    println!("Successfully patched 1 '{}' resource", info.kind);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = serde_json::json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &serde_json::json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, serde_json::json!({"a": "z", "c": {"d": "e"}}));
    }
}
