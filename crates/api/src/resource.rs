//! The `Resource` trait every v3 kind implements, and the macro that declares
//! a kind's top-level struct (apiVersion, kind, metadata, spec).

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::meta::ObjectMeta;
use crate::validate::FieldErrors;

/// Behaviour of a kind's `spec`: upstream defaults and validation. Both get
/// the metadata because some rules depend on the name (e.g. singletons).
pub trait Spec {
    /// Fills in the defaults that upstream shows on read-back.
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {}
    /// Records every problem under its field path (paths start with `spec.`).
    fn validate(&self, meta: &ObjectMeta, errs: &mut FieldErrors);
}

/// A projectcalico.org/v3 kind.
pub trait Resource:
    Serialize + DeserializeOwned + Clone + Debug + PartialEq + Default + Send + Sync + 'static
{
    const KIND: &'static str;
    /// Lower-case plural as used in etcd keys and on the command line.
    const PLURAL: &'static str;
    const NAMESPACED: bool;

    fn metadata(&self) -> &ObjectMeta;
    fn metadata_mut(&mut self) -> &mut ObjectMeta;
    fn apply_defaults(&mut self);
    /// Validates the spec and the name rules of the kind.
    fn validate(&self) -> Result<(), FieldErrors>;
}

/// Declares a kind. The struct is strict (unknown fields are errors), like
/// upstream's decoder for user input; `stored::typed_lenient` reads stored
/// values leniently on top of it.
macro_rules! resource {
    ($(#[$doc:meta])* $name:ident, $spec:ty, kind = $kind:literal, plural = $plural:literal, namespaced = $ns:literal, name_rule = $rule:path) => {
        $(#[$doc])*
        #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            pub api_version: String,
            pub kind: String,
            #[serde(default, deserialize_with = "crate::resource::null_as_default")]
            pub metadata: $crate::meta::ObjectMeta,
            #[serde(default, deserialize_with = "crate::resource::null_as_default")]
            pub spec: $spec,
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    api_version: $crate::meta::API_VERSION.to_string(),
                    kind: $kind.to_string(),
                    metadata: Default::default(),
                    spec: Default::default(),
                }
            }
        }

        impl $name {
            /// A new resource of this kind with the given name and spec.
            pub fn new(name: impl Into<String>, spec: $spec) -> Self {
                let mut r = Self::default();
                r.metadata.name = name.into();
                r.spec = spec;
                r
            }
        }

        impl $crate::resource::Resource for $name {
            const KIND: &'static str = $kind;
            const PLURAL: &'static str = $plural;
            const NAMESPACED: bool = $ns;
            fn metadata(&self) -> &$crate::meta::ObjectMeta {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut $crate::meta::ObjectMeta {
                &mut self.metadata
            }
            fn apply_defaults(&mut self) {
                $crate::resource::Spec::apply_defaults(&mut self.spec, &self.metadata);
            }
            fn validate(&self) -> Result<(), $crate::validate::FieldErrors> {
                let mut errs = $crate::validate::FieldErrors::default();
                $crate::resource::check_meta(&self.metadata, $ns, &mut errs);
                $rule(&self.metadata.name, &mut errs);
                $crate::resource::Spec::validate(&self.spec, &self.metadata, &mut errs);
                errs.into_result()
            }
        }
    };
}
pub(crate) use resource;

/// Metadata rules common to all kinds: namespace presence and labels.
pub fn check_meta(meta: &ObjectMeta, namespaced: bool, errs: &mut FieldErrors) {
    if namespaced {
        if !meta.namespace.is_empty() && !crate::validate::is_dns1123_label(&meta.namespace) {
            errs.add(
                "metadata.namespace",
                format!(
                    "invalid namespace {:?}: {}",
                    meta.namespace,
                    crate::validate::NAME_RULE
                ),
            );
        }
    } else if !meta.namespace.is_empty() {
        errs.add(
            "metadata.namespace",
            "this kind is not namespaced; remove metadata.namespace",
        );
    }
    crate::validate::check_labels("metadata.labels", &meta.labels, errs);
    crate::validate::check_annotations("metadata.annotations", &meta.annotations, errs);
}

/// Treats an explicit `null` (e.g. `metadata:` with nothing under it) as the
/// default value, as Go's decoder does for structs.
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    use serde::Deserialize;
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
