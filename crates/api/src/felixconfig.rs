//! PLACEHOLDER until the full FelixConfiguration spec lands (overwrite freely).
use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::resource::{resource, Spec};
use crate::validate::FieldErrors;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FelixConfigurationSpec {}

impl Spec for FelixConfigurationSpec {
    fn validate(&self, _meta: &ObjectMeta, _errs: &mut FieldErrors) {}
}

resource!(
    /// Felix settings.
    FelixConfiguration, FelixConfigurationSpec, kind = "FelixConfiguration",
    plural = "felixconfigurations", namespaced = false, name_rule = crate::network::check_config_name
);
