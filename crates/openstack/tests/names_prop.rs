//! Property: WorkloadEndpoint names with `-` inside their parts read back
//! into the same parts, by the one splitting rule that calico-node's
//! status reporting also uses (`calico_api::endpoint::split_workload_endpoint_name`).

use calico_api::endpoint::split_workload_endpoint_name;
use calico_openstack::names::{
    check_name_segment, endpoint_name, endpoint_name_without_host, split_endpoint_name,
};
use proptest::prelude::*;

/// Segments the driver accepts: non-empty, not starting or ending with
/// `-`, dashes (also runs of them) anywhere inside.
fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._]([a-zA-Z0-9._-]{0,30}[a-zA-Z0-9._])?"
}

fn uuid_like() -> impl Strategy<Value = String> {
    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
}

proptest! {
    #[test]
    fn names_split_back_into_their_parts(host in segment(), device in segment(), port in segment()) {
        for (f, v) in [("host", &host), ("device", &device), ("port", &port)] {
            prop_assert!(check_name_segment("p", f, v).is_ok());
        }
        let name = endpoint_name(&host, &device, &port);
        let parts = split_endpoint_name(&name).expect("four parts, openstack second");
        prop_assert_eq!(&parts.host, &host);
        prop_assert_eq!(&parts.device_id, &device);
        prop_assert_eq!(&parts.port_id, &port);
        prop_assert_eq!(
            split_workload_endpoint_name(&name),
            vec![host.clone(), "openstack".to_string(), device.clone(), port.clone()]
        );
    }

    #[test]
    fn the_host_comes_off_for_uuid_ids(host in segment(), device in uuid_like(), port in uuid_like()) {
        // Upstream relies on device and port IDs being UUIDs (never the
        // segment "openstack"), whatever the host is called.
        let name = endpoint_name(&host, &device, &port);
        prop_assert_eq!(
            endpoint_name_without_host(&name),
            format!("openstack-{}-{}", device.replace('-', "--"), port.replace('-', "--"))
        );
    }

    #[test]
    fn segments_at_the_edges_are_refused(s in segment()) {
        let leading = format!("-{s}");
        let trailing = format!("{s}-");
        prop_assert!(check_name_segment("p", "f", &leading).is_err());
        prop_assert!(check_name_segment("p", "f", &trailing).is_err());
    }
}
