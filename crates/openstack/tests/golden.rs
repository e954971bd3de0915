//! Golden tests: upstream's own fixtures (networking-calico's unit-test
//! ports, security groups, rules and subnets) translate to exactly the
//! datastore keys and JSON values upstream's tests expect, compared as JSON
//! values. The cases are in `golden/upstream.json`, each naming the
//! upstream test it comes from.
//!
//! Deliberate differences, normalised here and nowhere else:
//! - empty `ingress`/`egress` lists are left out (upstream writes `[]`;
//!   Calico reads both the same) — `drop_empty_rule_lists`;
//! - rules with `tcp`/`udp`/... carry the protocol number: upstream's unit
//!   test mocks Neutron's protocol map, production upstream writes the
//!   number as we do (the cases say so in their `note`).
//!
//! Upstream's fixture IDs are upper case (`DEADBEEF-1234-5678`), which
//! Calico's name rules refuse, so these cases are translated without
//! `validate()`; `translate.rs` checks validation with Neutron-shaped data.

use calico_openstack::endpoint::{Endpoint, PortExtras};
use calico_openstack::neutron::{Port, SecurityGroupRule};
use calico_openstack::policy::{translate_rule, Policy};
use calico_openstack::{dhcp_subnet, felix, keys, store, Config, QosConfig, Region};
use serde_json::Value;

fn cases() -> Value {
    serde_json::from_str(include_str!("golden/upstream.json")).unwrap()
}

fn config(case: &Value) -> Config {
    let region = Region::new(case["region"].as_str()).unwrap();
    let qos = match case.get("qos") {
        Some(q) => serde_json::from_value::<QosConfig>(q.clone()).unwrap(),
        None => QosConfig::default(),
    };
    Config { region, qos }
}

fn drop_empty_rule_lists(mut v: Value) -> Value {
    if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) {
        for f in ["ingress", "egress"] {
            if spec
                .get(f)
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
            {
                spec.remove(f);
            }
        }
    }
    v
}

#[track_caller]
fn assert_json_eq(what: &str, got: &Value, want: &Value) {
    assert!(
        got == want,
        "{what}\n got: {}\nwant: {}",
        serde_json::to_string_pretty(got).unwrap(),
        serde_json::to_string_pretty(want).unwrap()
    );
}

#[test]
fn ports_become_upstreams_workload_endpoints() {
    let all = cases();
    for case in all["endpoints"].as_array().unwrap() {
        let name = case["case"].as_str().unwrap();
        let cfg = config(case);
        let port = Port::from_value(&case["port"]).unwrap();
        let extras = PortExtras::from_value(&case["extras"]).unwrap();
        let host = case["host"].as_str().or(port.host()).unwrap().to_string();
        let ep = Endpoint::translate(&port, &host, &extras, &cfg)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ep.key(), case["key"].as_str().unwrap(), "{name}");
        assert_json_eq(name, &ep.to_value(), &case["value"]);

        // As stored: upstream adds a uid and a creation time, which its
        // tests leave out.
        let stored = store::put_value(&ep.to_value(), None, "uid-1", "2026-01-01T00:00:00Z");
        assert_eq!(stored["metadata"]["uid"], "uid-1", "{name}");
        assert_eq!(
            stored["metadata"]["creationTimestamp"],
            "2026-01-01T00:00:00Z"
        );
        let mut stripped = stored.clone();
        let m = stripped["metadata"].as_object_mut().unwrap();
        m.remove("uid");
        m.remove("creationTimestamp");
        assert_json_eq(name, &stripped, &case["value"]);
    }
}

#[test]
fn security_groups_become_upstreams_policies() {
    let all = cases();
    for case in all["policies"].as_array().unwrap() {
        let name = case["case"].as_str().unwrap();
        let cfg = config(case);
        let p = Policy::translate(
            case["sg_id"].as_str().unwrap(),
            case["rules"].as_array().unwrap(),
            &cfg,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.key(), case["key"].as_str().unwrap(), "{name}");
        assert_json_eq(
            name,
            &p.to_value(),
            &drop_empty_rule_lists(case["value"].clone()),
        );
    }
}

#[test]
fn rules_map_as_upstream() {
    let all = cases();
    for case in all["rules"].as_array().unwrap() {
        let name = case["case"].as_str().unwrap();
        let rule: SecurityGroupRule = serde_json::from_value(case["rule"].clone()).unwrap();
        let got = translate_rule(name, &rule).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_json_eq(name, &serde_json::to_value(&got).unwrap(), &case["want"]);
    }
}

#[test]
fn subnets_become_upstreams_dhcp_data() {
    let all = cases();
    for case in all["subnets"].as_array().unwrap() {
        let name = case["case"].as_str().unwrap();
        let region = Region::new(case["region"].as_str()).unwrap();
        let got = dhcp_subnet(&case["subnet"], &region).unwrap();
        match got {
            None => assert!(case["key"].is_null(), "{name}: expected data"),
            Some(d) => {
                assert_eq!(d.key, case["key"].as_str().unwrap(), "{name}");
                assert_json_eq(name, &d.value, &case["value"]);
                // Stored as json.dumps text, which decodes to the same value.
                let text: Value = serde_json::from_slice(&d.to_bytes()).unwrap();
                assert_json_eq(name, &text, &case["value"]);
            }
        }
    }
}

#[test]
fn felix_configuration_and_cluster_information_as_upstream() {
    let all = cases();
    let case = &all["felix"];
    let guid = case["cluster_guid"].as_str().unwrap();
    let ci = felix::cluster_information_spec(None, guid).unwrap();
    let fc = felix::felix_configuration_spec(None).unwrap();
    let writes = &case["writes"];
    let ci_value = felix::default_resource("ClusterInformation", ci);
    let fc_value = felix::default_resource("FelixConfiguration", fc);
    assert_json_eq(
        "ClusterInformation",
        &ci_value,
        &writes[keys::cluster_information_key()],
    );
    assert_json_eq(
        "FelixConfiguration",
        &fc_value,
        &writes[keys::felix_configuration_key()],
    );
    // A second resync finds them in place and writes nothing.
    assert!(felix::cluster_information_spec(Some(&ci_value), "other").is_none());
    assert!(felix::felix_configuration_spec(Some(&fc_value)).is_none());
}

#[test]
fn agent_states_as_upstream() {
    let all = cases();
    for case in all["agent_states"].as_array().unwrap() {
        let got = calico_openstack::driver::felix_agent_state(
            case["host"].as_str().unwrap(),
            case["start_flag"].as_bool().unwrap(),
        );
        assert_json_eq("felix_agent_state", &got, &case["want"]);
    }
}
