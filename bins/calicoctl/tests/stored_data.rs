//! Data in etcd as other upstream versions write it, put there with
//! etcdctl: values with fields this version does not know are read (while
//! the same document given to `calicoctl apply` is rejected), policies are
//! read in every key layout upstream has used and written in the current
//! one, and workload endpoints are stored with upstream's labels.

use std::path::PathBuf;
use std::process::{Command, Output};

use calico_datastore::testing::EtcdServer;
use serde_json::Value;

const CALICOCTL: &str = env!("CARGO_BIN_EXE_calicoctl");
const V3: &str = "/calico/resources/v3/projectcalico.org";

struct Cluster {
    etcd: EtcdServer,
    cfg: PathBuf,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let etcd = EtcdServer::start();
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("calicoctl.cfg");
        std::fs::write(
            &cfg,
            format!(
                "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata:\nspec:\n  datastoreType: etcdv3\n  etcdEndpoints: {}\n",
                etcd.endpoint()
            ),
        )
        .unwrap();
        Cluster { etcd, cfg, dir }
    }

    fn calicoctl(&self, args: &[&str]) -> Output {
        Command::new(CALICOCTL)
            .args(args)
            .arg("-c")
            .arg(&self.cfg)
            .env_remove("DATASTORE_TYPE")
            .env_remove("ETCD_ENDPOINTS")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.calicoctl(args);
        assert!(
            o.status.success(),
            "calicoctl {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!stderr.contains("skipping"), "calicoctl {args:?}: {stderr}");
        String::from_utf8(o.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    fn apply_text(&self, name: &str, text: &str) -> Output {
        let f = self.dir.path().join(name);
        std::fs::write(&f, text).unwrap();
        self.calicoctl(&["apply", "-f", f.to_str().unwrap()])
    }

    fn etcdctl(&self, args: &[&str]) -> String {
        let o = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.etcd.endpoint())
            .args(args)
            .output()
            .expect("etcdctl (Debian etcd-client) is installed");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    }

    fn put(&self, key: &str, value: &Value) {
        self.etcdctl(&["put", key, &value.to_string()]);
    }

    /// The stored value at `key`, or None.
    fn stored(&self, key: &str) -> Option<Value> {
        let out = self.etcdctl(&["get", key, "--print-value-only"]);
        let out = out.trim();
        (!out.is_empty()).then(|| serde_json::from_str(out).unwrap())
    }
}

fn names(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn assert_rejected_naming(o: &Output, field: &str) {
    assert!(!o.status.success(), "apply accepted an unknown field");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(field), "error does not name {field}: {err}");
}

#[test]
fn unknown_fields_are_read_from_the_datastore_but_rejected_as_input() {
    let c = Cluster::start();
    // A Node as a newer upstream writes it (spec.interfaces is recent).
    let node = serde_json::json!({
        "kind": "Node", "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": "n1", "uid": "1b0e3b52-7c1f-4b8e-9a53-6f3ad1b2c001",
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"bgp": {"ipv4Address": "10.0.0.1/24"},
                 "interfaces": [{"name": "eth0", "addresses": ["10.0.0.1"]}]},
        "status": {"podCIDRs": ["10.244.0.0/24"]}
    });
    c.put(&format!("{V3}/nodes/n1"), &node);
    let policy = serde_json::json!({
        "kind": "NetworkPolicy", "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": "default.web", "namespace": "prod",
                     "annotations": {"projectcalico.org/metadata": "{\"name\":\"web\"}"}},
        "spec": {"tier": "default", "order": 100, "selector": "app == 'web'",
                 "futureSpecField": {"mode": "Strict"},
                 "ingress": [{"action": "Allow", "futureRuleField": true}],
                 "types": ["Ingress"]}
    });
    c.put(&format!("{V3}/networkpolicies/prod/default.web"), &policy);

    let t = c.ok(&["get", "nodes", "-o", "wide"]);
    assert!(
        t.lines()
            .any(|l| l.starts_with("n1 ") && l.contains("10.0.0.1/24")),
        "{t}"
    );
    let np = c.json(&["get", "networkpolicy", "web", "-n", "prod"]);
    assert_eq!(np["spec"]["selector"], "app == 'web'");
    assert_eq!(np["spec"]["ingress"][0]["action"], "Allow");
    assert!(np["spec"].get("futureSpecField").is_none(), "{np}");

    // The client reads, changes and writes them back (as upstream, fields it
    // does not know are not kept).
    c.ok(&["label", "nodes", "n1", "rack=r1"]);
    let n1 = c.json(&["get", "node", "n1"]);
    assert_eq!(n1["metadata"]["labels"]["rack"], "r1");
    assert_eq!(
        n1["metadata"]["uid"],
        "1b0e3b52-7c1f-4b8e-9a53-6f3ad1b2c001"
    );
    c.ok(&["label", "networkpolicy", "web", "-n", "prod", "team=a"]);
    let np = c.json(&["get", "networkpolicy", "-n", "prod"]);
    assert_eq!(names(&np), vec!["web"]);

    // The same documents as input: an error naming the field, nothing written.
    let before = c.stored(&format!("{V3}/nodes/n1"));
    let mut node_doc = node.clone();
    node_doc["metadata"] = serde_json::json!({"name": "n1"});
    node_doc.as_object_mut().unwrap().remove("status");
    let o = c.apply_text("node.json", &node_doc.to_string());
    assert_rejected_naming(&o, "spec.interfaces");
    assert_eq!(c.stored(&format!("{V3}/nodes/n1")), before);
    let mut policy_doc = policy.clone();
    policy_doc["metadata"] = serde_json::json!({"name": "web", "namespace": "prod"});
    let o = c.apply_text("policy.json", &policy_doc.to_string());
    assert_rejected_naming(&o, "spec.futureSpecField");
}

/// A default-tier policy as each upstream generation stored it.
fn policy_value(stored_name: &str, given_name: Option<&str>, tier: Option<&str>) -> Value {
    let mut v = serde_json::json!({
        "kind": "NetworkPolicy", "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": stored_name, "namespace": "prod"},
        "spec": {"selector": "all()", "types": ["Ingress"]}
    });
    if let Some(n) = given_name {
        v["metadata"]["annotations"] = serde_json::json!({
            "projectcalico.org/metadata": serde_json::json!({"name": n}).to_string()
        });
    }
    if let Some(t) = tier {
        v["spec"]["tier"] = Value::from(t);
    }
    v
}

#[test]
fn policies_are_read_in_every_upstream_layout() {
    let c = Cluster::start();
    let np = |n: &str| format!("{V3}/networkpolicies/prod/{n}");
    // v3.29 and later: tiered key and name, the given name in an annotation.
    c.put(
        &np("default.new31"),
        &policy_value("default.new31", Some("new31"), Some("default")),
    );
    // v3.22–v3.28: tiered key and name, no annotation.
    c.put(
        &np("default.old28"),
        &policy_value("default.old28", None, None),
    );
    // Before v3.22 (and calico-rs before this layout): the plain name.
    c.put(&np("old21"), &policy_value("old21", None, None));

    let list = c.json(&["get", "networkpolicy", "-n", "prod"]);
    assert_eq!(names(&list), vec!["new31", "old21", "old28"]);
    for item in list["items"].as_array().unwrap() {
        assert_eq!(item["spec"]["tier"], "default", "{item}");
        assert_eq!(
            item["metadata"]["labels"]["projectcalico.org/tier"], "default",
            "{item}"
        );
        assert!(item["metadata"].get("annotations").is_none(), "{item}");
    }
    for name in ["new31", "old28", "old21"] {
        let p = c.json(&["get", "networkpolicy", name, "-n", "prod"]);
        assert_eq!(p["metadata"]["name"], name);
    }

    // A write moves a policy from an old key to the current one.
    c.ok(&["label", "networkpolicy", "old21", "-n", "prod", "moved=yes"]);
    assert!(c.stored(&np("old21")).is_none());
    let moved = c
        .stored(&np("default.old21"))
        .expect("written at the tiered key");
    assert_eq!(moved["metadata"]["name"], "default.old21");
    assert_eq!(moved["metadata"]["labels"]["moved"], "yes");
    let list = c.json(&["get", "networkpolicy", "-n", "prod"]);
    assert_eq!(names(&list), vec!["new31", "old21", "old28"]);

    // Deleting by the user's name finds the old layouts too.
    c.ok(&["delete", "networkpolicy", "old28", "-n", "prod"]);
    assert!(c.stored(&np("default.old28")).is_none());
    // A policy at both keys (written by two versions) is listed once.
    c.put(&np("new31"), &policy_value("new31", None, None));
    let list = c.json(&["get", "networkpolicy", "-n", "prod"]);
    assert_eq!(names(&list), vec!["new31", "old21"]);
}

#[test]
fn policies_are_written_as_upstream_writes_them() {
    let c = Cluster::start();
    let o = c.apply_text(
        "all.yaml",
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: security\nspec:\n  order: 100\n\
---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: security.block\nspec:\n  tier: security\n  selector: all()\n  ingress:\n  - action: Deny\n\
---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: allow-dns\nspec:\n  selector: all()\n  egress:\n  - action: Allow\n\
---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: web\n  namespace: prod\nspec:\n  selector: app == 'web'\n  ingress:\n  - action: Allow\n",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let web = c
        .stored(&format!("{V3}/networkpolicies/prod/default.web"))
        .expect("a default-tier policy is stored under default.<name>");
    assert_eq!(web["metadata"]["name"], "default.web");
    assert_eq!(
        web["metadata"]["annotations"]["projectcalico.org/metadata"],
        r#"{"name":"web"}"#
    );
    assert!(web["metadata"].get("labels").is_none(), "{web}");
    // Upstream stores the tier only when it was given; reads fill it in.
    assert!(web["spec"].get("tier").is_none(), "{web}");
    let read = c.json(&["get", "networkpolicy", "web", "-n", "prod"]);
    assert_eq!(read["spec"]["tier"], "default");
    assert!(c
        .stored(&format!("{V3}/networkpolicies/prod/web"))
        .is_none());
    let dns = c
        .stored(&format!("{V3}/globalnetworkpolicies/default.allow-dns"))
        .expect("GNP under default.<name>");
    assert_eq!(dns["metadata"]["name"], "default.allow-dns");
    let block = c
        .stored(&format!("{V3}/globalnetworkpolicies/security.block"))
        .expect("a tiered name is stored as it is");
    assert_eq!(
        block["metadata"]["labels"]["projectcalico.org/tier"],
        "security"
    );
    assert_eq!(block["spec"]["tier"], "security");
    assert_eq!(
        block["metadata"]["annotations"]["projectcalico.org/metadata"],
        r#"{"name":"security.block"}"#
    );
}

#[test]
fn workload_endpoints_are_stored_with_upstreams_labels() {
    let c = Cluster::start();
    let o = c.apply_text(
        "wep.yaml",
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: node1-openstack-vm1-tap1234\n  namespace: openstack\n  labels:\n    app: web\n    projectcalico.org/orchestrator: k8s\nspec:\n  orchestrator: openstack\n  node: node1\n  workload: vm1\n  endpoint: tap1234\n  interfaceName: tap1234\n  ipNetworks:\n  - 10.200.0.5/32\n",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let wep = c
        .stored(&format!(
            "{V3}/workloadendpoints/openstack/node1-openstack-vm1-tap1234"
        ))
        .unwrap();
    // Set from the endpoint, overriding what was given.
    let labels = &wep["metadata"]["labels"];
    assert_eq!(labels["projectcalico.org/namespace"], "openstack");
    assert_eq!(labels["projectcalico.org/orchestrator"], "openstack");
    assert_eq!(labels["app"], "web");
    assert_eq!(labels.as_object().unwrap().len(), 3, "{labels}");
}
