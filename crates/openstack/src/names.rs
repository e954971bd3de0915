//! Names networking-calico derives from Neutron identifiers: WorkloadEndpoint
//! names, tap interface names and sanitised label names and values.

use calico_api::endpoint::{split_workload_endpoint_name, workload_endpoint_name};

use crate::error::{Error, Result};

/// The orchestrator segment of every OpenStack WorkloadEndpoint name, and its
/// `spec.orchestrator`.
pub const ORCHESTRATOR: &str = "openstack";

/// Longest label name or value Calico accepts.
pub const LABEL_MAX_LENGTH: usize = 63;

/// `<host>-openstack-<device_id>-<port_id>`, with every `-` inside a segment
/// doubled (upstream's `endpoint_name`).
pub fn endpoint_name(host: &str, device_id: &str, port_id: &str) -> String {
    workload_endpoint_name(host, ORCHESTRATOR, device_id, port_id)
}

/// Checks that a segment of an endpoint name reads back from the name:
/// non-empty and neither starting nor ending with `-`. Upstream does not
/// check this, and then reports the endpoint's status under a different
/// identity (the port never goes ACTIVE); we refuse such ports instead.
pub fn check_name_segment(object: &str, field: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::new(object, field, "must not be empty"));
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err(Error::new(
            object,
            field,
            format!("{value:?} must not begin or end with '-': it could not be read back from the WorkloadEndpoint name"),
        ));
    }
    Ok(())
}

/// The identifiers in an OpenStack WorkloadEndpoint name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointNameParts {
    pub host: String,
    pub device_id: String,
    pub port_id: String,
}

/// Splits an OpenStack WorkloadEndpoint name into host, device and port, by
/// the rule upstream (and calico-node's status reporting) use; `None` when
/// the name does not have four segments with `openstack` second.
pub fn split_endpoint_name(name: &str) -> Option<EndpointNameParts> {
    let mut parts = split_workload_endpoint_name(name).into_iter();
    let (Some(host), Some(orch), Some(device_id), Some(port_id), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    (orch == ORCHESTRATOR).then_some(EndpointNameParts {
        host,
        device_id,
        port_id,
    })
}

/// The name without its host segment (`openstack-<device>-<port>`, still
/// escaped), as upstream's `endpoint_name_without_host` computes it: from
/// the last segment that is exactly `openstack` (device and port IDs are
/// UUIDs and cannot contain it). A name without such a segment is returned
/// unchanged.
pub fn endpoint_name_without_host(name: &str) -> String {
    let parts: Vec<&str> = name.split('-').collect();
    match parts.iter().rposition(|p| *p == ORCHESTRATOR) {
        Some(pos) => parts[pos..].join("-"),
        None => name.to_string(),
    }
}

/// The prefix of the names of all WorkloadEndpoints on `host` (what the
/// DHCP agent watches).
pub fn host_endpoint_prefix(host: &str) -> String {
    format!("{}-{ORCHESTRATOR}-", host.replace('-', "--"))
}

/// The tap interface Nova creates for a port: `tap` and the port ID's first
/// 11 characters.
pub fn interface_name(port_id: &str) -> String {
    let mut name = String::from("tap");
    name.extend(port_id.chars().take(11));
    name
}

/// Upstream's `sanitize_label_name_value`: the first `max_length` characters,
/// each outside `[-_.A-Za-z0-9]` replaced by `_`, then non-alphanumerics
/// trimmed from both ends.
pub fn sanitize_label(name: &str, max_length: usize) -> String {
    let replaced: String = name
        .chars()
        .take(max_length)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    replaced
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_upstream() {
        assert_eq!(
            endpoint_name("felix-host-1", "instance-1", "DEADBEEF-1234-5678"),
            "felix--host--1-openstack-instance--1-DEADBEEF--1234--5678"
        );
        assert_eq!(interface_name("DEADBEEF-1234-5678"), "tapDEADBEEF-12");
        assert_eq!(interface_name("HELLO-1234-5678"), "tapHELLO-1234-");
        assert_eq!(interface_name("short"), "tapshort");
        assert_eq!(
            host_endpoint_prefix("felix-host-1"),
            "felix--host--1-openstack-"
        );
    }

    #[test]
    fn splitting_names() {
        let parts = split_endpoint_name("felix--host--1-openstack-instance--1-DEAD--BEEF").unwrap();
        assert_eq!(parts.host, "felix-host-1");
        assert_eq!(parts.device_id, "instance-1");
        assert_eq!(parts.port_id, "DEAD-BEEF");
        assert!(split_endpoint_name("h-k8s-pod-eth0").is_none());
        assert!(split_endpoint_name("h-openstack-vm").is_none());
        assert!(split_endpoint_name("h-openstack-vm-p-x").is_none());
    }

    #[test]
    fn name_without_host_as_upstream() {
        // upstream's test_endpoint_name_without_host_with_openstack_in_host
        for full in [
            "felix--host--1-openstack-vm--id-port--id",
            "openstack--ctrl--1-openstack-vm--id-port--id",
            "host--openstack-openstack-vm--id-port--id",
            "openstack-openstack-vm--id-port--id",
        ] {
            assert_eq!(
                endpoint_name_without_host(full),
                "openstack-vm--id-port--id",
                "{full}"
            );
        }
        assert_eq!(
            endpoint_name_without_host("no-orchestrator"),
            "no-orchestrator"
        );
    }

    #[test]
    fn segments_that_do_not_read_back_are_refused() {
        assert!(check_name_segment("port p", "device_id", "vm-1").is_ok());
        for bad in ["", "-vm", "vm-"] {
            assert!(
                check_name_segment("port p", "device_id", bad).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn sanitising_labels() {
        assert_eq!(sanitize_label("My default SG", 27), "My_default_SG");
        assert_eq!(sanitize_label("pname+jane3", 63), "pname_jane3");
        assert_eq!(sanitize_label("--web--", 63), "web");
        assert_eq!(sanitize_label("__", 63), "");
        assert_eq!(sanitize_label("a.b-c_d", 63), "a.b-c_d");
        assert_eq!(sanitize_label("héllo wörld!", 63), "h_llo_w_rld");
        assert_eq!(sanitize_label("abcdef", 3), "abc");
        // Truncation first, then trimming: "ab " -> "ab_" -> "ab".
        assert_eq!(sanitize_label("ab cd", 3), "ab");
    }
}
