//! How (Global)NetworkPolicy names are stored, as upstream's etcd backend
//! does it. Since v3.29 upstream stores a policy under its tiered name
//! (`default.<name>` for a default-tier policy named without a prefix; a
//! `<tier>.<name>` or `knp.`/`ossg.` name as it is) in both the key and
//! `metadata.name`, and records the name the user gave in the annotation
//! `projectcalico.org/metadata: {"name":"<name>"}`, which reads remove again.
//! v3.22–v3.28 used the same tiered key and name without the annotation;
//! earlier versions (and calico-rs before it followed this) stored the plain
//! name. All of these read back; writes use the current layout. Policies in a
//! tier other than `default` also get the label `projectcalico.org/tier`,
//! and reads add `projectcalico.org/tier: default` where it is missing.

use calico_api::policy::DEFAULT_TIER;
use calico_api::{AnyResource, KindInfo};

/// Annotation holding the user's name of a policy stored under its tiered name.
pub const METADATA_ANNOTATION: &str = "projectcalico.org/metadata";
/// Label naming a policy's tier.
pub const TIER_LABEL: &str = "projectcalico.org/tier";

/// Prefixes of names that are stored as they are (Kubernetes and OpenStack
/// policies already carry their tier).
const FORMATTED_PREFIXES: [&str; 4] = [
    "knp.default.",
    "kanp.adminnetworkpolicy.",
    "kbanp.baselineadminnetworkpolicy.",
    "ossg.",
];

/// True for the kinds whose names are stored tiered.
pub fn is_tiered_kind(info: &KindInfo) -> bool {
    matches!(info.kind, "NetworkPolicy" | "GlobalNetworkPolicy")
}

/// The name a policy is stored under: `default.<name>` for a name without a
/// tier prefix, otherwise the name itself.
pub fn storage_name(name: &str) -> String {
    if name.is_empty()
        || name.contains('.')
        || FORMATTED_PREFIXES.iter().any(|p| name.starts_with(p))
    {
        name.to_string()
    } else {
        format!("{DEFAULT_TIER}.{name}")
    }
}

/// The user's name for a stored policy when only its stored name is known
/// (a deleted key): upstream's rule for values without the annotation.
pub fn name_from_storage(stored: &str) -> &str {
    stored
        .strip_prefix(&format!("{DEFAULT_TIER}."))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(stored)
}

fn tier_of(r: &AnyResource) -> Option<&str> {
    match r {
        AnyResource::NetworkPolicy(p) => Some(&p.spec.tier),
        AnyResource::GlobalNetworkPolicy(p) => Some(&p.spec.tier),
        _ => None,
    }
}

/// True unless `r` is a policy without `spec.tier`: upstream stores the tier
/// only when it was given (and fills it in from the name on reads).
pub fn tier_given(r: &AnyResource) -> bool {
    tier_of(r).is_none_or(|t| !t.is_empty())
}

/// Turns a policy into what upstream stores: tiered name, the annotation
/// with the given name, the tier label outside the default tier, and no
/// `spec.tier` unless it was given. Other kinds are left alone.
pub fn to_storage(r: &mut AnyResource, tier_given: bool) {
    let Some(tier) = tier_of(r).map(str::to_string) else {
        return;
    };
    if !tier_given && tier == DEFAULT_TIER {
        match r {
            AnyResource::NetworkPolicy(p) => p.spec.tier.clear(),
            AnyResource::GlobalNetworkPolicy(p) => p.spec.tier.clear(),
            _ => {}
        }
    }
    let meta = r.metadata_mut();
    let name = std::mem::take(&mut meta.name);
    meta.annotations.insert(
        METADATA_ANNOTATION.to_string(),
        serde_json::json!({ "name": name }).to_string(),
    );
    meta.name = storage_name(&name);
    if !tier.is_empty() && tier != DEFAULT_TIER {
        meta.labels.insert(TIER_LABEL.to_string(), tier);
    }
}

/// The tier a policy name implies, for values stored without `spec.tier`.
pub fn tier_from_name(name: &str) -> &str {
    if name.starts_with("kanp.adminnetworkpolicy.") {
        return "adminnetworkpolicy";
    }
    if name.starts_with("kbanp.baselineadminnetworkpolicy.") {
        return "baselineadminnetworkpolicy";
    }
    if name.starts_with("knp.default.") || name.starts_with("ossg.") {
        return DEFAULT_TIER;
    }
    name.split_once('.').map_or(DEFAULT_TIER, |(tier, _)| tier)
}

/// Undoes `to_storage` on a policy read back, for every layout: the name from
/// the annotation if there is one, else `default.` removed from default-tier
/// names; the tier filled in from the name where the value has none; and the
/// default tier label added where none is set.
pub fn from_storage(r: &mut AnyResource) -> Result<(), String> {
    let Some(tier) = tier_of(r).map(str::to_string) else {
        return Ok(());
    };
    restore_name(r, &tier)?;
    let name = r.name().to_string();
    match r {
        AnyResource::NetworkPolicy(p) if p.spec.tier.is_empty() => {
            p.spec.tier = tier_from_name(&name).to_string()
        }
        AnyResource::GlobalNetworkPolicy(p) if p.spec.tier.is_empty() => {
            p.spec.tier = tier_from_name(&name).to_string()
        }
        _ => {}
    }
    r.metadata_mut()
        .labels
        .entry(TIER_LABEL.to_string())
        .or_insert_with(|| DEFAULT_TIER.to_string());
    Ok(())
}

fn restore_name(r: &mut AnyResource, tier: &str) -> Result<(), String> {
    let meta = r.metadata_mut();
    if let Some(text) = meta.annotations.remove(METADATA_ANNOTATION) {
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("annotation {METADATA_ANNOTATION}: {e}"))?;
        if let Some(name) = v.get("name").and_then(|n| n.as_str()) {
            meta.name = name.to_string();
        }
    } else if tier.is_empty() || tier == DEFAULT_TIER {
        meta.name = name_from_storage(&meta.name).to_string();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use calico_api::policy::{GlobalNetworkPolicy, NetworkPolicy};

    #[test]
    fn storage_names_follow_upstream() {
        assert_eq!(storage_name("allow-dns"), "default.allow-dns");
        assert_eq!(storage_name("default.allow-dns"), "default.allow-dns");
        assert_eq!(storage_name("security.allow-dns"), "security.allow-dns");
        assert_eq!(storage_name("ossg.default.abc"), "ossg.default.abc");
        assert_eq!(storage_name("knp.default.web"), "knp.default.web");
        assert_eq!(name_from_storage("default.allow-dns"), "allow-dns");
        assert_eq!(name_from_storage("ossg.default.abc"), "ossg.default.abc");
        assert_eq!(name_from_storage("plain"), "plain");
    }

    #[test]
    fn write_then_read_restores_the_name() {
        let mut np = NetworkPolicy::new("web", Default::default());
        np.metadata.namespace = "prod".into();
        np.spec.tier = "default".into();
        let mut r = AnyResource::from(np);
        to_storage(&mut r, true);
        assert_eq!(r.name(), "default.web");
        assert_eq!(
            r.metadata().annotations[METADATA_ANNOTATION],
            r#"{"name":"web"}"#
        );
        assert!(!r.metadata().labels.contains_key(TIER_LABEL));
        from_storage(&mut r).unwrap();
        assert_eq!(r.name(), "web");
        assert!(r.metadata().annotations.is_empty());
        assert_eq!(r.metadata().labels[TIER_LABEL], "default");
    }

    #[test]
    fn other_tiers_get_the_label_and_keep_their_name() {
        let mut gnp = GlobalNetworkPolicy::new("security.block", Default::default());
        gnp.spec.tier = "security".into();
        let mut r = AnyResource::from(gnp);
        to_storage(&mut r, true);
        assert_eq!(r.name(), "security.block");
        assert_eq!(r.metadata().labels[TIER_LABEL], "security");
        from_storage(&mut r).unwrap();
        assert_eq!(r.name(), "security.block");
    }

    #[test]
    fn a_defaulted_tier_is_not_stored() {
        let mut gnp = GlobalNetworkPolicy::new("p", Default::default());
        let given = tier_given(&AnyResource::from(gnp.clone()));
        assert!(!given);
        gnp.spec.tier = "default".into(); // as defaulting does before the write
        let mut r = AnyResource::from(gnp);
        to_storage(&mut r, given);
        assert!(!r.to_json_value()["spec"]
            .as_object()
            .is_some_and(|s| s.contains_key("tier")));
        from_storage(&mut r).unwrap();
        match r {
            AnyResource::GlobalNetworkPolicy(p) => assert_eq!(p.spec.tier, "default"),
            _ => unreachable!(),
        }
    }

    #[test]
    fn v3_28_values_without_the_annotation_lose_the_prefix() {
        let mut gnp = GlobalNetworkPolicy::new("default.allow-dns", Default::default());
        gnp.spec.tier = "default".into();
        let mut r = AnyResource::from(gnp);
        from_storage(&mut r).unwrap();
        assert_eq!(r.name(), "allow-dns");
    }

    #[test]
    fn a_missing_tier_comes_from_the_name() {
        for (name, tier) in [
            ("default.allow-dns", "default"),
            ("plain", "default"),
            ("security.block", "security"),
            ("ossg.default.abc", "default"),
            ("knp.default.web", "default"),
            ("kanp.adminnetworkpolicy.x", "adminnetworkpolicy"),
        ] {
            let mut r = AnyResource::from(GlobalNetworkPolicy::new(name, Default::default()));
            from_storage(&mut r).unwrap();
            match r {
                AnyResource::GlobalNetworkPolicy(p) => assert_eq!(p.spec.tier, tier, "{name}"),
                _ => unreachable!(),
            }
        }
    }
}
