//! The article's YAML documents, applied with calicoctl, read back equal on
//! both backends; against a real etcd the keys and JSON are upstream's.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use calico_datastore::testing::EtcdServer;
use serde_json::Value;

const CALICOCTL: &str = env!("CARGO_BIN_EXE_calicoctl");

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/article")
}

fn fixture_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

struct Ctl {
    cfg: PathBuf,
}

impl Ctl {
    fn run(&self, args: &[&str]) -> Output {
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
        let o = self.run(args);
        assert!(
            o.status.success(),
            "calicoctl {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

fn local_ctl(dir: &Path) -> Ctl {
    let cfg = dir.join("calicoctl.cfg");
    std::fs::write(
        &cfg,
        format!(
            "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata:\nspec:\n  datastoreType: local\n  datastorePath: {}\n",
            dir.join("calico.db").display()
        ),
    )
    .unwrap();
    Ctl { cfg }
}

fn etcd_ctl(dir: &Path, etcd: &EtcdServer) -> Ctl {
    // The article's config file, with the placeholder filled in.
    let text = std::fs::read_to_string(fixtures_dir().join("../article-calicoctl.cfg"))
        .unwrap()
        .replace("http://<ETCD_IP>:2379", &etcd.endpoint());
    let cfg = dir.join("calicoctl.cfg");
    std::fs::write(&cfg, text).unwrap();
    Ctl { cfg }
}

/// Every field the user wrote must come back with the same value.
fn assert_subset(written: &Value, read: &Value, path: &str) {
    match (written, read) {
        (Value::Object(w), Value::Object(r)) => {
            for (k, v) in w {
                let rv = r
                    .get(k)
                    .unwrap_or_else(|| panic!("{path}.{k} missing in read-back {read}"));
                assert_subset(v, rv, &format!("{path}.{k}"));
            }
        }
        (Value::Array(w), Value::Array(r)) => {
            assert_eq!(w.len(), r.len(), "{path}: length differs");
            for (i, (a, b)) in w.iter().zip(r).enumerate() {
                assert_subset(a, b, &format!("{path}[{i}]"));
            }
        }
        (w, r) => assert_eq!(w, r, "{path} differs"),
    }
}

fn check_round_trip(ctl: &Ctl) {
    let out = ctl.ok(&["apply", "-f", fixtures_dir().to_str().unwrap()]);
    assert!(out.contains("Successfully applied 7"), "{out}");
    for f in fixture_files() {
        let written: Value = serde_yaml::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let read: Value =
            serde_yaml::from_str(&ctl.ok(&["get", "-f", f.to_str().unwrap(), "-o", "yaml"]))
                .unwrap();
        assert_subset(&written, &read, f.file_name().unwrap().to_str().unwrap());
        let meta = &read["metadata"];
        assert!(
            meta["uid"].as_str().is_some_and(|u| u.len() == 36),
            "uid set: {meta}"
        );
        assert!(
            meta["creationTimestamp"].is_string(),
            "creationTimestamp set: {meta}"
        );
        assert!(meta["resourceVersion"]
            .as_str()
            .is_some_and(|r| r.parse::<i64>().is_ok()));
        // Applying again changes nothing but the revision.
        let again = ctl.ok(&["apply", "-f", f.to_str().unwrap()]);
        assert!(again.starts_with("Successfully applied 1"), "{again}");
        let read2: Value =
            serde_yaml::from_str(&ctl.ok(&["get", "-f", f.to_str().unwrap(), "-o", "yaml"]))
                .unwrap();
        assert_eq!(read["spec"], read2["spec"]);
        assert_eq!(
            read["metadata"]["uid"], read2["metadata"]["uid"],
            "uid survives updates"
        );
    }
    // Upstream defaults are visible on read-back.
    let pool: Value =
        serde_json::from_str(&ctl.ok(&["get", "ippool", "default-pool", "-o", "json"])).unwrap();
    assert_eq!(pool["spec"]["blockSize"], 26);
    assert_eq!(
        pool["spec"]["allowedUses"],
        serde_json::json!(["Workload", "Tunnel"])
    );
    assert_eq!(pool["spec"]["vxlanMode"], "Never");
    assert_eq!(pool["spec"]["nodeSelector"], "all()");
    let gnp: Value =
        serde_json::from_str(&ctl.ok(&["get", "gnp", "default-deny-all", "-o", "json"])).unwrap();
    assert_eq!(
        gnp["spec"]["types"],
        serde_json::json!(["Ingress", "Egress"])
    );
    assert_eq!(gnp["spec"]["tier"], "default");
    let np: Value = serde_json::from_str(&ctl.ok(&[
        "get",
        "networkpolicy",
        "frontend-allow-http",
        "-n",
        "frontend",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(np["spec"]["types"], serde_json::json!(["Ingress"]));
    // Tables line up with upstream's columns.
    let t = ctl.ok(&["get", "ippools", "-o", "wide"]);
    let header = t.lines().next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("NAT") && header.contains("IPIPMODE"),
        "{t}"
    );
    assert!(
        t.contains("default-pool") && t.contains("172.16.0.0/16"),
        "{t}"
    );
    let t = ctl.ok(&["get", "networkpolicies", "-A"]);
    assert!(t.lines().next().unwrap().starts_with("NAMESPACE"), "{t}");
    // Header, three policies, and the blank line upstream ends a table with.
    assert_eq!(t.lines().count(), 5, "{t}");
    assert!(t.ends_with("\n\n"), "{t:?}");
}

#[test]
fn article_documents_round_trip_on_local() {
    let dir = tempfile::tempdir().unwrap();
    check_round_trip(&local_ctl(dir.path()));
}

#[test]
fn article_documents_round_trip_on_etcd_with_upstream_keys() {
    let etcd = EtcdServer::start();
    let dir = tempfile::tempdir().unwrap();
    let ctl = etcd_ctl(dir.path(), &etcd);
    check_round_trip(&ctl);

    let etcdctl = |args: &[&str]| {
        let o = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(etcd.endpoint())
            .args(args)
            .output()
            .expect("etcdctl (Debian etcd-client) is installed");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let keys = etcdctl(&["get", "--prefix", "/calico/resources/v3/", "--keys-only"]);
    let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    for k in [
        "/calico/resources/v3/projectcalico.org/bgppeers/bgp-peer-1",
        "/calico/resources/v3/projectcalico.org/ippools/default-pool",
        "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-pool",
        // Policies under their tiered names, as upstream v3.29+ stores them.
        "/calico/resources/v3/projectcalico.org/networkpolicies/production/default.web-db-policy",
        "/calico/resources/v3/projectcalico.org/networkpolicies/staging/default.deny-all-default",
        "/calico/resources/v3/projectcalico.org/networkpolicies/frontend/default.frontend-allow-http",
        "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/default.default-deny-all",
    ] {
        assert!(keys.contains(&k), "{k} not in {keys:?}");
    }
    assert_eq!(keys.len(), 7, "{keys:?}");
    // Upstream JSON: the whole v3 object, resourceVersion cleared.
    let raw = etcdctl(&[
        "get",
        "/calico/resources/v3/projectcalico.org/networkpolicies/production/default.web-db-policy",
        "--print-value-only",
    ]);
    let v: Value = serde_json::from_str(raw.trim()).unwrap();
    assert_eq!(v["apiVersion"], "projectcalico.org/v3");
    assert_eq!(v["kind"], "NetworkPolicy");
    assert_eq!(v["metadata"]["name"], "default.web-db-policy");
    assert_eq!(
        v["metadata"]["annotations"]["projectcalico.org/metadata"],
        r#"{"name":"web-db-policy"}"#
    );
    assert_eq!(v["metadata"]["namespace"], "production");
    assert!(v["metadata"].get("resourceVersion").is_none(), "{v}");
    assert!(v["metadata"]["uid"].is_string());
    assert_eq!(
        v["spec"]["ingress"][0]["source"]["selector"],
        "app == 'web'"
    );

    // Data written by another tool at an upstream key reads back (the
    // reverse direction): a pool put with etcdctl as upstream would store it.
    let upstream_pool = r#"{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"from-etcdctl","uid":"0d5ec3c6-9a8c-4f56-8c76-0123456789ab","creationTimestamp":"2024-01-01T00:00:00Z"},"spec":{"cidr":"192.168.128.0/20","vxlanMode":"Always","ipipMode":"Never","natOutgoing":true,"blockSize":26,"nodeSelector":"all()","allowedUses":["Workload","Tunnel"]}}"#;
    etcdctl(&[
        "put",
        "/calico/resources/v3/projectcalico.org/ippools/from-etcdctl",
        upstream_pool,
    ]);
    let t = ctl.ok(&["get", "ippools", "-o", "wide"]);
    assert!(
        t.lines().any(|l| l.starts_with("from-etcdctl")
            && l.contains("192.168.128.0/20")
            && l.contains("Always")),
        "{t}"
    );
}

#[test]
fn unreachable_etcd_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.cfg");
    // Port 1 on loopback: nothing listens there.
    std::fs::write(&cfg, "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nspec:\n  datastoreType: etcdv3\n  etcdEndpoints: http://127.0.0.1:1\n").unwrap();
    let ctl = Ctl { cfg };
    let start = std::time::Instant::now();
    let o = ctl.run(&["get", "ippools"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(start.elapsed() < std::time::Duration::from_secs(15));
}

#[test]
fn apply_warns_about_the_articles_ordering_trap() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = local_ctl(dir.path());
    let o = ctl.run(&["apply", "-f", fixtures_dir().to_str().unwrap()]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.lines().any(
            |l| l.starts_with("warning: GlobalNetworkPolicy default-deny-all")
                && l.contains("NetworkPolicy production/web-db-policy")
        ),
        "{err}"
    );
    // With an order on the default deny (after the namespaced policies), no warning.
    let fixed = dir.path().join("fixed.yaml");
    std::fs::write(
        &fixed,
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: default-deny-all\nspec:\n  order: 2000\n  selector: all()\n  ingress:\n  - action: Deny\n  egress:\n  - action: Allow\n---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: web-db-policy\n  namespace: production\nspec:\n  order: 100\n  selector: app == 'database'\n  ingress:\n  - action: Allow\n    source:\n      selector: app == 'web'\n  egress:\n  - action: Allow\n---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: frontend-allow-http\n  namespace: frontend\nspec:\n  order: 100\n  selector: app == 'frontend'\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [80]\n",
    )
    .unwrap();
    let o = ctl.run(&["apply", "-f", fixed.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("warning:"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
