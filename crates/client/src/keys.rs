//! Upstream's etcd key layout for v3 resources.

use calico_api::{KindInfo, API_GROUP_PREFIX};

use crate::policy_names::{is_tiered_kind, storage_name};

/// `/calico/resources/v3/projectcalico.org/<plural>/[<namespace>/]<name>`,
/// with a policy's name in its stored (tiered) form.
pub fn resource_key(info: &KindInfo, namespace: &str, name: &str) -> String {
    if is_tiered_kind(info) {
        return raw_key(info, namespace, &storage_name(name));
    }
    raw_key(info, namespace, name)
}

/// Where a resource may be stored, the current layout first: for policies
/// also the untiered key of releases before v3.22.
pub fn candidate_keys(info: &KindInfo, namespace: &str, name: &str) -> Vec<String> {
    let current = resource_key(info, namespace, name);
    let legacy = raw_key(info, namespace, name);
    if legacy == current {
        vec![current]
    } else {
        vec![current, legacy]
    }
}

fn raw_key(info: &KindInfo, namespace: &str, name: &str) -> String {
    if info.namespaced {
        format!("{API_GROUP_PREFIX}/{}/{namespace}/{name}", info.plural)
    } else {
        format!("{API_GROUP_PREFIX}/{}/{name}", info.plural)
    }
}

/// Prefix under which all resources of a kind (optionally of one namespace)
/// live. Ends in `/` so that `ippools` does not also match `ippoolsx`.
pub fn kind_prefix(info: &KindInfo, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if info.namespaced => format!("{API_GROUP_PREFIX}/{}/{ns}/", info.plural),
        _ => format!("{API_GROUP_PREFIX}/{}/", info.plural),
    }
}

/// Where calico-node publishes its BGP status (sessions by peer) for
/// `calicoctl node status --node` (our addition: upstream reads BIRD's
/// socket on the node itself). Written under the agent's liveness lease.
pub fn bgp_status_key(node: &str) -> String {
    format!("/calico/calico-rs/v1/host/{node}/bgp-status")
}

/// Where calico-node publishes its BGP routes for `calicoctl node routes`.
pub fn bgp_routes_key(node: &str) -> String {
    format!("/calico/calico-rs/v1/host/{node}/bgp-routes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use calico_api::lookup_kind;

    #[test]
    fn keys_follow_upstream() {
        let pool = lookup_kind("ippool").unwrap();
        assert_eq!(
            resource_key(pool, "", "default-pool"),
            "/calico/resources/v3/projectcalico.org/ippools/default-pool"
        );
        let np = lookup_kind("networkpolicy").unwrap();
        assert_eq!(
            resource_key(np, "production", "web-db-policy"),
            "/calico/resources/v3/projectcalico.org/networkpolicies/production/default.web-db-policy"
        );
        assert_eq!(
            candidate_keys(np, "production", "web-db-policy"),
            vec![
                "/calico/resources/v3/projectcalico.org/networkpolicies/production/default.web-db-policy",
                "/calico/resources/v3/projectcalico.org/networkpolicies/production/web-db-policy",
            ]
        );
        assert_eq!(candidate_keys(pool, "", "p").len(), 1);
        let status = lookup_kind("caliconodestatus").unwrap();
        assert_eq!(
            resource_key(status, "", "host1-status"),
            "/calico/resources/v3/projectcalico.org/caliconodestatuses/host1-status"
        );
        assert_eq!(
            kind_prefix(np, Some("staging")),
            "/calico/resources/v3/projectcalico.org/networkpolicies/staging/"
        );
    }
}
