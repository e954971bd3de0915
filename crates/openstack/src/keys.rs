//! Datastore keys of everything the driver reads and writes. v3 resources
//! use this project's key builder (`calico_client::keys`), so they live
//! exactly where calicoctl and calico-node look for them; the private
//! OpenStack paths are upstream's.

use calico_api::{lookup_kind, KindInfo};
use calico_client::keys::{kind_prefix, resource_key};

use crate::region::Region;

fn kind(name: &str) -> &'static KindInfo {
    lookup_kind(name).expect("calico_api knows every kind the driver writes")
}

/// `/calico/resources/v3/projectcalico.org/workloadendpoints/<namespace>/<name>`.
pub fn workload_endpoint_key(namespace: &str, name: &str) -> String {
    resource_key(kind("WorkloadEndpoint"), namespace, name)
}

/// Prefix of all WorkloadEndpoints of a namespace (ends in `/`).
pub fn workload_endpoint_prefix(namespace: &str) -> String {
    kind_prefix(kind("WorkloadEndpoint"), Some(namespace))
}

/// `/calico/resources/v3/projectcalico.org/networkpolicies/<namespace>/<name>`;
/// `ossg.default.<id>` names already carry their tier, so the key holds
/// the name as it is.
pub fn network_policy_key(namespace: &str, name: &str) -> String {
    resource_key(kind("NetworkPolicy"), namespace, name)
}

/// Prefix of all NetworkPolicies of a namespace (ends in `/`).
pub fn network_policy_prefix(namespace: &str) -> String {
    kind_prefix(kind("NetworkPolicy"), Some(namespace))
}

/// Prefix of the policies of security groups in a namespace: resync reads
/// these and deletes those without a group (other policies in the
/// namespace are left alone).
pub fn security_group_policy_prefix(namespace: &str) -> String {
    format!(
        "{}{}",
        network_policy_prefix(namespace),
        crate::policy::POLICY_NAME_PREFIX
    )
}

/// What resync deletes as data of older layouts: the pre-region subnet
/// data, and, once a region is configured, the WorkloadEndpoints and
/// security group policies left in the region-less namespace `openstack`
/// (as upstream's `delete_legacy_etcd_data`).
pub fn legacy_prefixes(region: &Region) -> Vec<String> {
    let mut v = vec![format!("{LEGACY_SUBNET_DIR}/")];
    if region.name().is_some() {
        let ns = crate::region::NO_REGION_NAMESPACE;
        v.push(workload_endpoint_prefix(ns));
        v.push(security_group_policy_prefix(ns));
    }
    v
}

/// `/calico/resources/v3/projectcalico.org/felixconfigurations/default`.
pub fn felix_configuration_key() -> String {
    resource_key(kind("FelixConfiguration"), "", "default")
}

/// `/calico/resources/v3/projectcalico.org/clusterinformations/default`.
pub fn cluster_information_key() -> String {
    resource_key(kind("ClusterInformation"), "", "default")
}

/// `/calico/dhcp/v2/<region string>/subnet`: the DHCP agents' subnet data.
pub fn subnet_dir(region: &Region) -> String {
    format!("/calico/dhcp/v2/{}/subnet", region.region_string())
}

/// `/calico/dhcp/v2/<region string>/subnet/<subnet id>`.
pub fn subnet_key(region: &Region, subnet_id: &str) -> String {
    format!("{}/{subnet_id}", subnet_dir(region))
}

/// Subnet data of the pre-region data model; resync deletes it.
pub const LEGACY_SUBNET_DIR: &str = "/calico/dhcp/v1/subnet";

/// `/calico/felix/v2/<region string>/host`: where each host's agent reports
/// its liveness (`<host>/status`) and its endpoints' status.
pub fn felix_status_dir(region: &Region) -> String {
    format!("/calico/felix/v2/{}/host", region.region_string())
}

/// `/calico/openstack/v2/<region string>/neutron_election`.
pub fn election_key(region: &Region) -> String {
    format!(
        "/calico/openstack/v2/{}/neutron_election",
        region.region_string()
    )
}

/// The election key of the pre-region data model (also written upstream).
pub const LEGACY_ELECTION_KEY: &str = "/calico/openstack/v1/neutron_election";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_as_upstream() {
        let r = Region::none();
        assert_eq!(
            workload_endpoint_key("openstack", "h-openstack-vm-p"),
            "/calico/resources/v3/projectcalico.org/workloadendpoints/openstack/h-openstack-vm-p"
        );
        assert_eq!(
            network_policy_key("openstack", "ossg.default.SGID-default"),
            "/calico/resources/v3/projectcalico.org/networkpolicies/openstack/ossg.default.SGID-default"
        );
        assert_eq!(
            felix_configuration_key(),
            "/calico/resources/v3/projectcalico.org/felixconfigurations/default"
        );
        assert_eq!(
            cluster_information_key(),
            "/calico/resources/v3/projectcalico.org/clusterinformations/default"
        );
        assert_eq!(
            subnet_key(&r, "subnet-id-10.65.0--24"),
            "/calico/dhcp/v2/no-region/subnet/subnet-id-10.65.0--24"
        );
        assert_eq!(felix_status_dir(&r), "/calico/felix/v2/no-region/host");
        assert_eq!(legacy_prefixes(&r), ["/calico/dhcp/v1/subnet/"]);
        assert_eq!(
            security_group_policy_prefix("openstack"),
            "/calico/resources/v3/projectcalico.org/networkpolicies/openstack/ossg.default."
        );
        let eu = Region::new(Some("europe")).unwrap();
        assert_eq!(
            election_key(&eu),
            "/calico/openstack/v2/region-europe/neutron_election"
        );
        assert_eq!(
            workload_endpoint_prefix(&eu.namespace()),
            "/calico/resources/v3/projectcalico.org/workloadendpoints/openstack-region-europe/"
        );
        assert_eq!(
            legacy_prefixes(&eu),
            [
                "/calico/dhcp/v1/subnet/",
                "/calico/resources/v3/projectcalico.org/workloadendpoints/openstack/",
                "/calico/resources/v3/projectcalico.org/networkpolicies/openstack/ossg.default.",
            ]
        );
        assert_eq!(
            network_policy_prefix("openstack"),
            "/calico/resources/v3/projectcalico.org/networkpolicies/openstack/"
        );
    }
}
