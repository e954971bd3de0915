//! `[calico] openstack_region`: the namespace of everything the driver
//! writes and the region string of its private etcd paths.

use calico_api::validate::is_dns1123_label;

use crate::error::{Error, Result};

/// Namespace of all OpenStack resources when no region is configured.
pub const NO_REGION_NAMESPACE: &str = "openstack";
/// Region string of the legacy paths when no region is configured.
pub const NO_REGION: &str = "no-region";
/// Prefix of the region string when a region is configured.
pub const REGION_PREFIX: &str = "region-";
/// Prefix of a region's namespace (followed by the region string).
pub const REGION_NAMESPACE_PREFIX: &str = "openstack-";
/// Longest region name: `openstack-region-<name>` must be a DNS label.
pub const MAX_REGION_LEN: usize = 63 - (REGION_NAMESPACE_PREFIX.len() + REGION_PREFIX.len());

/// The configured region, if any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Region(Option<String>);

impl Region {
    /// No region: namespace `openstack`, paths under `no-region`.
    pub fn none() -> Region {
        Region(None)
    }

    /// From `[calico] openstack_region`; unset or empty means no region. A
    /// region must be a DNS label of at most 46 characters, as upstream
    /// checks.
    pub fn new(openstack_region: Option<&str>) -> Result<Region> {
        let Some(r) = openstack_region.filter(|r| !r.is_empty()) else {
            return Ok(Region(None));
        };
        if r.len() > MAX_REGION_LEN {
            return Err(Error::new(
                "[calico] openstack_region",
                "",
                format!("{r:?} is longer than {MAX_REGION_LEN} characters"),
            ));
        }
        if !is_dns1123_label(r) {
            return Err(Error::new(
                "[calico] openstack_region",
                "",
                format!("{r:?} is not a valid DNS label (lower-case alphanumerics and '-', starting and ending with an alphanumeric)"),
            ));
        }
        Ok(Region(Some(r.to_string())))
    }

    /// The region name as configured.
    pub fn name(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// `no-region` or `region-<name>`, as in `/calico/dhcp/v2/<region string>/...`.
    pub fn region_string(&self) -> String {
        match &self.0 {
            Some(r) => format!("{REGION_PREFIX}{r}"),
            None => NO_REGION.to_string(),
        }
    }

    /// `openstack` or `openstack-region-<name>`.
    pub fn namespace(&self) -> String {
        match &self.0 {
            Some(_) => format!("{REGION_NAMESPACE_PREFIX}{}", self.region_string()),
            None => NO_REGION_NAMESPACE.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_as_upstream() {
        let none = Region::new(None).unwrap();
        assert_eq!(none.region_string(), "no-region");
        assert_eq!(none.namespace(), "openstack");
        assert_eq!(Region::new(Some("")).unwrap(), none);
        let eu = Region::new(Some("europe")).unwrap();
        assert_eq!(eu.region_string(), "region-europe");
        assert_eq!(eu.namespace(), "openstack-region-europe");
        assert_eq!(MAX_REGION_LEN, 46);
        assert!(Region::new(Some(&"a".repeat(46))).is_ok());
        assert!(Region::new(Some(&"a".repeat(47))).is_err());
        assert!(Region::new(Some("Europe")).is_err());
        assert!(Region::new(Some("eu_west")).is_err());
        assert!(Region::new(Some("-eu")).is_err());
    }
}
