//! Translation of Neutron-shaped data (lower-case UUIDs, as a real
//! neutron-server passes them), its validation, and the data that cannot be
//! expressed: reported on the object, never half-written.

use calico_api::{lookup_kind, AnyResource};
use calico_openstack::endpoint::{Endpoint, PortExtras};
use calico_openstack::neutron::Port;
use calico_openstack::policy::Policy;
use calico_openstack::{
    driver, felix, names, network_policy, security_group_policy, store, workload_endpoint, Config,
    Region,
};
use serde_json::{json, Value};

const PORT_ID: &str = "3f2a9c1e-7b4d-4e8a-9c1f-0d2b6a7e5f41";
const VM_ID: &str = "9b1c2d3e-4f5a-4b6c-8d7e-1f2a3b4c5d6e";
const NET_ID: &str = "5d7e9f1a-2b3c-4d5e-8f9a-0b1c2d3e4f5a";
const SUBNET_ID: &str = "6e8f0a2b-3c4d-4e5f-9a0b-1c2d3e4f5a6b";
const SUBNET6_ID: &str = "7f9a1b3c-4d5e-4f6a-8b1c-2d3e4f5a6b7c";
const SG_WEB: &str = "c0a1b2c3-d4e5-4f6a-8b9c-0d1e2f3a4b5c";
const SG_DEFAULT: &str = "d1b2c3d4-e5f6-4a7b-9c0d-1e2f3a4b5c6d";

fn port() -> Value {
    json!({
        "id": PORT_ID, "name": "web-port", "network_id": NET_ID,
        "tenant_id": "fake_project_id", "project_id": "fake_project_id",
        "mac_address": "fa:16:3e:12:34:56", "admin_state_up": true, "status": "DOWN",
        "device_id": VM_ID, "device_owner": "compute:nova",
        "fixed_ips": [
            {"subnet_id": SUBNET_ID, "ip_address": "10.65.0.5"},
            {"subnet_id": SUBNET6_ID, "ip_address": "fd5f:5d7e::5"}
        ],
        "allowed_address_pairs": [{"ip_address": "10.65.0.200", "mac_address": "fa:16:3e:12:34:56"}],
        "extra_dhcp_opts": [], "security_groups": [SG_DEFAULT, SG_WEB],
        "binding:host_id": "compute-1", "binding:vif_type": "tap", "binding:vnic_type": "normal",
        "binding:vif_details": {"port_filter": true}, "binding:profile": {},
        "port_security_enabled": true, "qos_policy_id": null, "qos_network_policy_id": null,
        "dns_name": "web", "dns_assignment": [
            {"hostname": "web", "ip_address": "10.65.0.5", "fqdn": "web.example.org."},
            {"hostname": "web", "ip_address": "fd5f:5d7e::5", "fqdn": "web.example.org."}
        ],
        "description": "", "tags": [], "created_at": "2026-11-21T10:00:00Z",
        "updated_at": "2026-11-21T10:00:01Z", "revision_number": 3
    })
}

fn extras() -> PortExtras {
    PortExtras::from_value(&json!({
        "subnets": [
            {"id": SUBNET_ID, "name": "sub1", "network_id": NET_ID, "cidr": "10.65.0.0/24",
             "gateway_ip": "10.65.0.1", "enable_dhcp": true, "ip_version": 4,
             "host_routes": [], "dns_nameservers": [], "allocation_pools": []},
            {"id": SUBNET6_ID, "cidr": "fd5f:5d7e::/64", "gateway_ip": "fd5f:5d7e::1"}
        ],
        "floating_ips": [
            {"id": "f1", "floating_ip_address": "172.24.4.10", "fixed_ip_address": "10.65.0.5",
             "port_id": PORT_ID, "router_id": "r1", "status": "ACTIVE"},
            {"id": "f2", "floating_ip_address": "172.24.4.11", "fixed_ip_address": "10.65.0.9",
             "port_id": "another-port"}
        ],
        "security_groups": [
            {"id": SG_DEFAULT, "name": "default", "security_group_rules": []},
            {"id": SG_WEB, "name": "web servers!"}
        ],
        "network": {"id": NET_ID, "name": "net1", "mtu": 1450},
        "project": {"name": "Demo Project", "parent_id": "default"}
    }))
    .unwrap()
}

#[test]
fn a_bound_port_becomes_a_valid_workload_endpoint() {
    let cfg = Config::default();
    let ep = workload_endpoint(&port(), &extras(), &cfg).unwrap();
    let name = format!(
        "compute--1-openstack-{}-{}",
        VM_ID.replace('-', "--"),
        PORT_ID.replace('-', "--")
    );
    assert_eq!(ep.name(), name);
    assert_eq!(
        ep.key(),
        format!("/calico/resources/v3/projectcalico.org/workloadendpoints/openstack/{name}")
    );
    let want = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": name,
            "namespace": "openstack",
            "labels": {
                format!("sg.projectcalico.org/openstack-{SG_DEFAULT}"): "default",
                "sg-name.projectcalico.org/openstack-default": SG_DEFAULT,
                format!("sg.projectcalico.org/openstack-{SG_WEB}"): "web_servers",
                "sg-name.projectcalico.org/openstack-web_servers": SG_WEB,
                "projectcalico.org/namespace": "openstack",
                "projectcalico.org/orchestrator": "openstack",
                "projectcalico.org/openstack-project-id": "fake_project_id",
                "projectcalico.org/openstack-project-name": "Demo_Project",
                "projectcalico.org/openstack-project-parent-id": "default",
                "projectcalico.org/openstack-network-name": "net1"
            },
            "annotations": {
                "openstack.projectcalico.org/network-id": NET_ID,
                "openstack.projectcalico.org/fqdn": "web.example.org."
            }
        },
        "spec": {
            "orchestrator": "openstack",
            "workload": VM_ID,
            "node": "compute-1",
            "endpoint": PORT_ID,
            "ipNetworks": ["10.65.0.5/32", "fd5f:5d7e::5/128", "10.65.0.200/32"],
            "ipNATs": [{"internalIP": "10.65.0.5", "externalIP": "172.24.4.10"}],
            "ipv4Gateway": "10.65.0.1",
            "ipv6Gateway": "fd5f:5d7e::1",
            "interfaceName": "tap3f2a9c1e-7b",
            "mac": "fa:16:3e:12:34:56",
            "allowedIps": ["10.65.0.200/32"]
        }
    });
    assert_eq!(ep.to_value(), want);
}

#[test]
fn this_projects_reader_reads_what_the_driver_writes() {
    let cfg = Config::default();
    let ep = workload_endpoint(&port(), &extras(), &cfg).unwrap();
    let bytes = serde_json::to_vec(&store::put_value(
        &ep.to_value(),
        None,
        "u1",
        "2026-11-21T10:00:02Z",
    ))
    .unwrap();
    let info = lookup_kind("WorkloadEndpoint").unwrap();
    let got = calico_client::client::decode(info, &ep.key(), &bytes, 7).unwrap();
    let AnyResource::WorkloadEndpoint(w) = got else {
        panic!("not a WorkloadEndpoint")
    };
    // allowedIps is not Calico's: the reader ignores it, as upstream's does.
    assert_eq!(w.spec, ep.resource.spec);
    assert_eq!(w.metadata.labels, ep.resource.metadata.labels);
    assert_eq!(w.metadata.uid, "u1");

    let sg = json!({"id": SG_WEB, "name": "web", "security_group_rules": [
        {"id": "r1", "security_group_id": SG_WEB, "direction": "ingress", "ethertype": "IPv4",
         "protocol": "tcp", "port_range_min": 80, "port_range_max": 80,
         "remote_ip_prefix": "0.0.0.0/0", "remote_group_id": null}
    ]});
    let p = network_policy(&sg, &cfg).unwrap();
    let bytes = serde_json::to_vec(&store::put_value(
        &p.to_value(),
        None,
        "u2",
        "2026-11-21T10:00:02Z",
    ))
    .unwrap();
    let info = lookup_kind("NetworkPolicy").unwrap();
    let got = calico_client::client::decode(info, &p.key(), &bytes, 8).unwrap();
    let AnyResource::NetworkPolicy(np) = got else {
        panic!("not a NetworkPolicy")
    };
    assert_eq!(np.metadata.name, format!("ossg.default.{SG_WEB}"));
    assert_eq!(np.spec.tier, "default");
    assert_eq!(np.spec.ingress, p.resource.spec.ingress);
    assert_eq!(
        p.key(),
        calico_client::keys::resource_key(info, "openstack", &format!("ossg.default.{SG_WEB}"))
    );
}

#[test]
fn regions_name_the_namespace() {
    let cfg = Config {
        region: Region::new(Some("europe")).unwrap(),
        ..Default::default()
    };
    let ep = workload_endpoint(&port(), &extras(), &cfg).unwrap();
    assert_eq!(ep.namespace(), "openstack-region-europe");
    assert_eq!(
        ep.resource.metadata.labels["projectcalico.org/namespace"],
        "openstack-region-europe"
    );
    assert!(ep
        .key()
        .contains("/workloadendpoints/openstack-region-europe/"));
}

#[test]
fn the_status_identity_comes_back_from_the_name() {
    let ep = workload_endpoint(&port(), &extras(), &Config::default()).unwrap();
    let parts = names::split_endpoint_name(ep.name()).unwrap();
    assert_eq!(parts.host, "compute-1");
    assert_eq!(parts.device_id, VM_ID);
    assert_eq!(parts.port_id, PORT_ID);
}

#[test]
fn optional_data_missing_leaves_fields_out() {
    // No subnets, network, project or SG names known: no gateways, no
    // network or project name labels, SG labels with empty values.
    let mut p = port();
    p["dns_assignment"] = json!([]);
    p["allowed_address_pairs"] = json!([]);
    let ep = workload_endpoint(&p, &PortExtras::default(), &Config::default()).unwrap();
    let v = ep.to_value();
    assert!(v["spec"].get("ipv4Gateway").is_none());
    assert!(v["spec"].get("ipNATs").is_none());
    assert_eq!(v["spec"]["allowedIps"], json!([]));
    let labels = v["metadata"]["labels"].as_object().unwrap();
    assert_eq!(
        labels[&format!("sg.projectcalico.org/openstack-{SG_WEB}")],
        ""
    );
    assert!(!labels.keys().any(|k| k.starts_with("sg-name.")));
    assert!(!labels.contains_key("projectcalico.org/openstack-network-name"));
    assert!(!labels.contains_key("projectcalico.org/openstack-project-name"));
    assert_eq!(
        v["metadata"]["annotations"],
        json!({"openstack.projectcalico.org/network-id": NET_ID})
    );
}

#[test]
fn a_live_migration_destination_is_the_same_port_on_another_host() {
    let mut p = port();
    p["binding:profile"] = json!({"migrating_to": "compute-2"});
    let port = Port::from_value(&p).unwrap();
    assert_eq!(port.migrating_to(), Some("compute-2"));
    let ep = Endpoint::translate(&port, "compute-2", &extras(), &Config::default()).unwrap();
    ep.validate().unwrap();
    assert_eq!(ep.resource.spec.node, "compute-2");
    assert!(ep.name().starts_with("compute--2-openstack-"));
}

fn port_error(p: Value) -> calico_openstack::Error {
    workload_endpoint(&p, &extras(), &Config::default()).unwrap_err()
}

#[test]
fn ports_that_cannot_be_expressed_are_reported() {
    let mut p = port();
    p["fixed_ips"][0]["ip_address"] = json!("10.65.0.300");
    let e = port_error(p);
    assert_eq!(e.object, format!("port {PORT_ID}"));
    assert_eq!(e.field, "fixed_ips[0].ip_address");

    let mut p = port();
    p["allowed_address_pairs"] = json!([{"ip_address": "10.65.1.0/24"}]);
    let e = port_error(p);
    assert_eq!(e.field, "allowed_address_pairs[0].ip_address");
    assert!(e.message.contains("single addresses"), "{e}");

    let mut p = port();
    p["device_id"] = json!("vm-");
    assert_eq!(port_error(p).field, "device_id");

    let mut p = port();
    p["binding:host_id"] = json!("");
    assert_eq!(port_error(p).field, "binding:host_id");

    let mut p = port();
    p["mac_address"] = json!("not a mac");
    let e = port_error(p);
    assert!(e.message.contains("spec.mac"), "{e}");

    let mut p = port();
    p["security_groups"] = json!("sg");
    assert_eq!(port_error(p).field, "security_groups");
}

#[test]
fn address_pairs_given_as_host_prefixes_are_kept() {
    // Upstream appends /32 to whatever the pair holds ("10.65.0.7/32/32").
    let mut p = port();
    p["allowed_address_pairs"] = json!([
        {"ip_address": "10.65.0.7/32"}, {"ip_address": "fd5f:5d7e::7/128"}, {"ip_address": "fd5f:5d7e::8"}
    ]);
    let ep = workload_endpoint(&p, &extras(), &Config::default()).unwrap();
    assert_eq!(
        ep.allowed_ips,
        ["10.65.0.7/32", "fd5f:5d7e::7/128", "fd5f:5d7e::8/128"]
    );
}

fn rule(over: Value) -> Value {
    let mut r = json!({
        "id": "r", "security_group_id": SG_WEB, "direction": "ingress", "ethertype": "IPv4",
        "protocol": null, "port_range_min": null, "port_range_max": null,
        "remote_ip_prefix": null, "remote_group_id": null, "remote_address_group_id": null,
        "normalized_cidr": null, "description": "", "tenant_id": "fake_project_id"
    });
    for (k, v) in over.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

fn policy(rules: Vec<Value>) -> calico_openstack::Result<Policy> {
    security_group_policy(SG_WEB, &rules, &Config::default())
}

fn rules_json(p: &Policy) -> Value {
    p.to_value()["spec"].clone()
}

#[test]
fn neutrons_default_group() {
    // What Neutron creates for every project.
    let rules = vec![
        rule(json!({"id": "a", "security_group_id": SG_DEFAULT, "remote_group_id": SG_DEFAULT})),
        rule(
            json!({"id": "b", "security_group_id": SG_DEFAULT, "ethertype": "IPv6", "remote_group_id": SG_DEFAULT}),
        ),
        rule(json!({"id": "c", "security_group_id": SG_DEFAULT, "direction": "egress"})),
        rule(
            json!({"id": "d", "security_group_id": SG_DEFAULT, "direction": "egress", "ethertype": "IPv6"}),
        ),
    ];
    let p = security_group_policy(SG_DEFAULT, &rules, &Config::default()).unwrap();
    let sel = format!("has(sg.projectcalico.org/openstack-{SG_DEFAULT})");
    assert_eq!(
        rules_json(&p),
        json!({
            "selector": sel,
            "ingress": [
                {"action": "Allow", "ipVersion": 4, "source": {"selector": sel}},
                {"action": "Allow", "ipVersion": 6, "source": {"selector": sel}}
            ],
            "egress": [{"action": "Allow", "ipVersion": 4}, {"action": "Allow", "ipVersion": 6}]
        })
    );
}

#[test]
fn protocols_as_neutrons_api_stores_them() {
    let p = policy(vec![
        rule(json!({"protocol": "tcp", "port_range_min": 80, "port_range_max": 80, "remote_ip_prefix": "0.0.0.0/0"})),
        rule(json!({"protocol": "udp", "port_range_min": 5000, "port_range_max": 5100})),
        rule(json!({"protocol": "6", "port_range_min": 22, "port_range_max": 22})),
        rule(json!({"protocol": "icmp", "port_range_min": 8, "port_range_max": null})),
        rule(json!({"ethertype": "IPv6", "protocol": "ipv6-icmp", "port_range_min": 128, "port_range_max": 0})),
        rule(json!({"ethertype": "IPv6", "protocol": "icmpv6", "port_range_min": 128})),
        rule(json!({"ethertype": "IPv6", "protocol": "58", "port_range_min": 135})),
        rule(json!({"protocol": "sctp", "port_range_min": 0, "port_range_max": 65535})),
        rule(json!({"protocol": "gre"})),
        rule(json!({"protocol": "ip"})),
        rule(json!({"protocol": "0"})),
        rule(json!({"protocol": "any"})),
        rule(json!({"direction": "egress", "protocol": "tcp", "port_range_min": 443, "port_range_max": 443,
                    "remote_ip_prefix": "10.1.2.3/16"})),
        rule(json!({"direction": "egress", "ethertype": "IPv6", "remote_ip_prefix": "fd00::1"})),
    ])
    .unwrap();
    let spec = rules_json(&p);
    assert_eq!(
        spec["ingress"],
        json!([
            {"action": "Allow", "ipVersion": 4, "protocol": 6, "source": {"nets": ["0.0.0.0/0"]}, "destination": {"ports": [80]}},
            {"action": "Allow", "ipVersion": 4, "protocol": 17, "destination": {"ports": ["5000:5100"]}},
            {"action": "Allow", "ipVersion": 4, "protocol": 6, "destination": {"ports": [22]}},
            {"action": "Allow", "ipVersion": 4, "protocol": "ICMP", "icmp": {"type": 8}},
            {"action": "Allow", "ipVersion": 6, "protocol": "ICMPv6", "icmp": {"type": 128, "code": 0}},
            {"action": "Allow", "ipVersion": 6, "protocol": 58, "icmp": {"type": 128}},
            {"action": "Allow", "ipVersion": 6, "protocol": 58, "icmp": {"type": 135}},
            {"action": "Allow", "ipVersion": 4, "protocol": 132, "destination": {"ports": ["1:65535"]}},
            {"action": "Allow", "ipVersion": 4, "protocol": 47},
            {"action": "Allow", "ipVersion": 4},
            {"action": "Allow", "ipVersion": 4},
            {"action": "Allow", "ipVersion": 4}
        ])
    );
    assert_eq!(
        spec["egress"],
        json!([
            {"action": "Allow", "ipVersion": 4, "protocol": 6, "destination": {"nets": ["10.1.0.0/16"], "ports": [443]}},
            {"action": "Allow", "ipVersion": 6, "destination": {"nets": ["fd00::1/128"]}}
        ])
    );
}

#[test]
fn a_group_without_egress_rules_governs_ingress_only() {
    // As upstream: no types written; Calico defaults them from the rules.
    let p = policy(vec![rule(
        json!({"protocol": "tcp", "port_range_min": 80, "port_range_max": 80}),
    )])
    .unwrap();
    assert!(p.to_value()["spec"].get("types").is_none());
    assert!(p.to_value()["spec"].get("order").is_none());
    let mut r = p.resource.clone();
    calico_api::Resource::apply_defaults(&mut r);
    assert_eq!(r.spec.types, [calico_api::policy::PolicyType::Ingress]);
    // An empty group: a policy selecting its members with no rules.
    let empty = policy(vec![]).unwrap();
    assert_eq!(
        rules_json(&empty),
        json!({"selector": format!("has(sg.projectcalico.org/openstack-{SG_WEB})")})
    );
}

#[test]
fn rules_of_other_groups_are_skipped() {
    let p = policy(vec![
        rule(json!({"protocol": "tcp", "port_range_min": 80, "port_range_max": 80})),
        rule(json!({"security_group_id": SG_DEFAULT, "protocol": "bogus"})),
    ])
    .unwrap();
    assert_eq!(p.resource.spec.ingress.len(), 1);
}

#[test]
fn rules_that_cannot_be_expressed_are_reported_and_nothing_is_written() {
    let cases = [
        (
            json!({"id": "r1", "protocol": "bogus"}),
            "protocol",
            "not a protocol Calico supports",
        ),
        (
            json!({"id": "r2", "protocol": 300}),
            "protocol",
            "not an IP protocol number",
        ),
        (
            json!({"id": "r3", "ethertype": "IPv5"}),
            "ethertype",
            "IPv4 or IPv6",
        ),
        (
            json!({"id": "r4", "direction": "sideways"}),
            "direction",
            "ingress or egress",
        ),
        (
            json!({"id": "r5", "remote_address_group_id": "ag1"}),
            "remote_address_group_id",
            "address groups",
        ),
        (
            json!({"id": "r6", "remote_ip_prefix": "10.0.0.0/33"}),
            "remote_ip_prefix",
            "not an IP prefix",
        ),
        (
            json!({"id": "r7", "protocol": "tcp", "port_range_min": 90, "port_range_max": 80}),
            "port_range_min",
            "empty",
        ),
        (
            json!({"id": "r8", "protocol": "tcp", "port_range_min": 70000, "port_range_max": 70000}),
            "port_range_min",
            "not a port number",
        ),
        (
            json!({"id": "r9", "port_range_min": "eighty"}),
            "port_range_min",
            "invalid type",
        ),
    ];
    for (over, field, msg) in cases {
        let id = over["id"].as_str().unwrap().to_string();
        let e = policy(vec![
            rule(
                json!({"id": "ok", "protocol": "tcp", "port_range_min": 80, "port_range_max": 80}),
            ),
            rule(over),
        ])
        .unwrap_err();
        assert_eq!(
            e.object,
            format!("security group {SG_WEB} rule {id}"),
            "{e}"
        );
        assert_eq!(e.field, field, "{e}");
        assert!(e.message.contains(msg), "{e}");
    }
    // Rules Calico's validation refuses: ports on a protocol without ports,
    // ICMP types out of range.
    for over in [
        json!({"protocol": "dccp", "port_range_min": 80, "port_range_max": 80}),
        json!({"protocol": "icmp", "port_range_min": 255, "port_range_max": 0}),
        json!({"protocol": null, "port_range_min": 80, "port_range_max": 81}),
    ] {
        let e = policy(vec![rule(over.clone())]).unwrap_err();
        assert_eq!(e.object, format!("security group {SG_WEB}"), "{over}: {e}");
        assert!(e.message.contains("would be invalid"), "{e}");
    }
}

#[test]
fn put_keeps_stored_metadata_and_replaces_labels_and_spec() {
    let ep = workload_endpoint(&port(), &extras(), &Config::default()).unwrap();
    let stored = json!({
        "kind": "WorkloadEndpoint", "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": ep.name(), "namespace": "openstack", "uid": "old-uid",
                     "creationTimestamp": "2020-01-01T00:00:00Z", "labels": {"stale": "x"},
                     "annotations": {"old": "y"}, "generation": 4},
        "spec": {"orchestrator": "openstack", "stale": true}
    });
    let v = store::put_value(
        &ep.to_value(),
        Some(&serde_json::to_vec(&stored).unwrap()),
        "new-uid",
        "now",
    );
    assert_eq!(v["metadata"]["uid"], "old-uid");
    assert_eq!(v["metadata"]["creationTimestamp"], "2020-01-01T00:00:00Z");
    assert_eq!(v["metadata"]["generation"], 4);
    assert_eq!(v["metadata"]["labels"], ep.to_value()["metadata"]["labels"]);
    assert_eq!(
        v["metadata"]["annotations"],
        ep.to_value()["metadata"]["annotations"]
    );
    assert_eq!(v["spec"], ep.to_value()["spec"]);

    // A policy has no labels of its own: stored ones stay (upstream's put
    // sets labels only when it has some).
    let p = policy(vec![]).unwrap();
    let stored = json!({"kind": "NetworkPolicy", "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": p.name(), "namespace": "openstack", "uid": "u", "creationTimestamp": "t",
                     "labels": {"projectcalico.org/tier": "default"}}, "spec": {}});
    let v = store::put_value(
        &p.to_value(),
        Some(&serde_json::to_vec(&stored).unwrap()),
        "x",
        "y",
    );
    assert_eq!(
        v["metadata"]["labels"],
        json!({"projectcalico.org/tier": "default"})
    );
    assert_eq!(v["spec"], p.to_value()["spec"]);

    // Unreadable stored data is replaced as if there was none.
    let v = store::put_value(&p.to_value(), Some(b"{not json"), "x", "y");
    assert_eq!(
        v["metadata"],
        json!({"name": p.name(), "namespace": "openstack", "uid": "x", "creationTimestamp": "y"})
    );
}

#[test]
fn felix_configuration_is_added_to_not_replaced() {
    let stored = json!({"kind": "FelixConfiguration", "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": "default"},
        "spec": {"interfacePrefix": "cali", "logSeverityScreen": "Info", "someFutureField": 3}});
    let spec = felix::felix_configuration_spec(Some(&stored)).unwrap();
    assert_eq!(
        spec,
        json!({"interfacePrefix": "cali,tap", "logSeverityScreen": "Info", "someFutureField": 3,
               "endpointReportingEnabled": true})
    );
    let stored =
        json!({"spec": {"interfacePrefix": "cali,tap", "endpointReportingEnabled": false}});
    assert_eq!(
        felix::felix_configuration_spec(Some(&stored)).unwrap(),
        json!({"interfacePrefix": "cali,tap", "endpointReportingEnabled": true})
    );
    let stored = json!({"spec": {"interfacePrefix": "tap", "endpointReportingEnabled": true}});
    assert!(felix::felix_configuration_spec(Some(&stored)).is_none());
    // A spec that is not an object counts as empty.
    let stored = json!({"spec": "garbage"});
    assert_eq!(
        felix::felix_configuration_spec(Some(&stored)).unwrap(),
        json!({"endpointReportingEnabled": true, "interfacePrefix": "tap"})
    );
}

#[test]
fn cluster_information_is_shared_with_other_orchestrators() {
    let stored = json!({"spec": {"clusterGUID": "abc", "clusterType": "k8s,bgp", "calicoVersion": "v3.31.0"}});
    assert_eq!(
        felix::cluster_information_spec(Some(&stored), "new").unwrap(),
        json!({"clusterGUID": "abc", "clusterType": "k8s,bgp,openstack", "calicoVersion": "v3.31.0",
               "datastoreReady": true})
    );
    let stored = json!({"spec": {"clusterGUID": "abc", "clusterType": "openstack", "datastoreReady": false}});
    assert!(felix::cluster_information_spec(Some(&stored), "new").is_none());
}

#[test]
fn driver_decisions() {
    assert!(calico_openstack::endpoint::is_endpoint_port("compute:nova"));
    assert!(calico_openstack::endpoint::is_endpoint_port("compute:az1"));
    assert!(calico_openstack::endpoint::is_endpoint_port(
        "kuryr:container"
    ));
    assert!(!calico_openstack::endpoint::is_endpoint_port(
        "network:dhcp"
    ));
    assert!(!calico_openstack::endpoint::is_endpoint_port(
        "network:router_interface"
    ));

    let mut current = port();
    let original = port();
    current["status"] = json!("ACTIVE");
    current["revision_number"] = json!(4);
    current["updated_at"] = json!("later");
    assert!(driver::is_status_only_change(&original, &current));
    current["security_groups"] = json!([SG_WEB]);
    assert!(!driver::is_status_only_change(&original, &current));

    let bound = Port::from_value(&port()).unwrap();
    assert!(driver::wep_desired_on(Some(&bound), "compute-1"));
    assert!(!driver::wep_desired_on(Some(&bound), "compute-2"));
    assert!(!driver::wep_desired_on(None, "compute-1"));
    let mut unbound = port();
    unbound["binding:vif_type"] = json!("unbound");
    let unbound = Port::from_value(&unbound).unwrap();
    assert!(!driver::wep_desired_on(Some(&unbound), "compute-1"));
    let mut migrating = port();
    migrating["binding:vif_type"] = json!("unbound");
    migrating["binding:profile"] = json!({"migrating_to": "compute-2"});
    let migrating = Port::from_value(&migrating).unwrap();
    assert!(driver::wep_desired_on(Some(&migrating), "compute-1"));
    assert!(driver::wep_desired_on(Some(&migrating), "compute-2"));
    assert_eq!(
        driver::hosts_to_sync(Some(&bound), &migrating),
        ["compute-1", "compute-2"]
    );
    let mut moved = port();
    moved["binding:host_id"] = json!("compute-3");
    let moved = Port::from_value(&moved).unwrap();
    assert_eq!(
        driver::hosts_to_sync(Some(&bound), &moved),
        ["compute-1", "compute-3"]
    );
    assert_eq!(driver::hosts_to_sync(None, &bound), ["compute-1"]);

    assert_eq!(
        driver::vif_details(Some("fa:16:3e:aa:bb:cc")),
        json!({"port_filter": true, "mac_address": "fe:16:3e:aa:bb:cc"})
    );
    assert_eq!(
        driver::vif_details(Some("not-a-mac"))["mac_address"],
        driver::DEFAULT_TAP_MAC
    );
    assert_eq!(
        driver::vif_details(None)["mac_address"],
        driver::DEFAULT_TAP_MAC
    );

    assert_eq!(driver::port_status(Some("up")), "ACTIVE");
    assert_eq!(driver::port_status(Some("down")), "DOWN");
    assert_eq!(driver::port_status(Some("error")), "ERROR");
    assert_eq!(driver::port_status(None), "ERROR");
    assert!(driver::network_type_bindable("vxlan"));
    assert!(driver::network_type_bindable("flat"));
    assert!(!driver::network_type_bindable("vlan"));
}

#[test]
fn qos_rules_with_odd_directions_are_reported() {
    let mut ex = extras();
    ex.qos_policy = Some(
        serde_json::from_value(json!({"id": "q", "rules": [
            {"type": "bandwidth_limit", "direction": "sideways", "max_kbps": 10}
        ]}))
        .unwrap(),
    );
    let e = workload_endpoint(&port(), &ex, &Config::default()).unwrap_err();
    assert_eq!(e.object, "QoS policy q");
    ex.qos_policy = Some(
        serde_json::from_value(
            json!({"id": "q", "rules": [{"type": "dscp_marking", "dscp_mark": 26}]}),
        )
        .unwrap(),
    );
    let ep = workload_endpoint(&port(), &ex, &Config::default()).unwrap();
    assert!(ep.resource.spec.qos_controls.is_none());
}
