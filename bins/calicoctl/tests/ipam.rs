//! `calicoctl ipam show|check|release|configure` and `delete ippool` with
//! allocations, against the real binary (local store; one etcd run).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use calico_api::endpoint::{WorkloadEndpoint, WorkloadEndpointSpec};
use calico_api::network::{IPPool, IPPoolSpec, Node, NodeSpec};
use calico_api::AnyResource;
use calico_client::Client;
use calico_datastore::testing::EtcdServer;
use calico_datastore::{connect, DatastoreConfig};
use calico_ipam::{AssignIpArgs, AutoAssignArgs, Ipam};

const CALICOCTL: &str = env!("CARGO_BIN_EXE_calicoctl");

struct Env {
    cfg: PathBuf,
    ipam: Ipam,
    client: Client,
    _dir: tempfile::TempDir,
    _etcd: Option<EtcdServer>,
}

impl Env {
    fn local() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("calico.db");
        let cfg = dir.path().join("calicoctl.cfg");
        std::fs::write(
            &cfg,
            format!(
                "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata:\nspec:\n  datastoreType: local\n  datastorePath: {}\n",
                db.display()
            ),
        )
        .unwrap();
        Env::open(cfg, DatastoreConfig::Local { path: db }, dir, None)
    }

    fn etcd() -> Env {
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
        let ds = etcd.datastore_config();
        Env::open(cfg, ds, dir, Some(etcd))
    }

    fn open(
        cfg: PathBuf,
        ds: DatastoreConfig,
        dir: tempfile::TempDir,
        etcd: Option<EtcdServer>,
    ) -> Env {
        let store: Arc<dyn calico_datastore::Datastore> = Arc::from(connect(&ds).unwrap());
        Env {
            cfg,
            ipam: Ipam::new(store.clone()),
            client: Client::new(store),
            _dir: dir,
            _etcd: etcd,
        }
    }

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
            "calicoctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            !o.status.success(),
            "calicoctl {args:?} succeeded: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8(o.stderr).unwrap()
    }

    fn pool(&self, name: &str, cidr: &str) {
        self.client
            .create(AnyResource::IPPool(IPPool::new(
                name,
                IPPoolSpec {
                    cidr: cidr.into(),
                    ..Default::default()
                },
            )))
            .unwrap();
    }

    fn node(&self, name: &str) {
        self.client
            .create(AnyResource::Node(Node::new(name, NodeSpec::default())))
            .unwrap();
    }

    fn assign(&self, ip: &str, host: &str, handle: &str, attrs: &[(&str, &str)]) {
        self.ipam
            .assign_ip(
                &AssignIpArgs::new(ip.parse().unwrap(), host)
                    .handle(handle)
                    .attrs(
                        attrs
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                    ),
            )
            .unwrap();
    }

    fn wep(&self, name: &str, node: &str, ip: &str) {
        let mut w = WorkloadEndpoint::new(
            name,
            WorkloadEndpointSpec {
                orchestrator: "k8s".into(),
                node: node.into(),
                pod: "p".into(),
                endpoint: "eth0".into(),
                interface_name: "cali0".into(),
                ip_networks: vec![format!("{ip}/32")],
                ..Default::default()
            },
        );
        w.metadata.namespace = "default".into();
        self.client
            .create(AnyResource::WorkloadEndpoint(w))
            .unwrap();
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn show_tables() {
    let e = Env::local();
    e.pool("pool-a", "10.0.0.0/24");
    e.pool("pool-b", "10.1.0.0/16");
    // Two blocks of pool-a: 3 addresses for n1, 1 borrowed by n2 from n1's block.
    e.assign(
        "10.0.0.1",
        "n1",
        "h1",
        &[("node", "n1"), ("namespace", "ns"), ("pod", "web")],
    );
    e.assign("10.0.0.2", "n1", "h2", &[("node", "n1")]);
    e.assign(
        "10.0.0.3",
        "n2",
        "h3",
        &[("node", "n2"), ("type", "vxlanTunnelAddress")],
    );
    e.assign("10.0.0.70", "n1", "h4", &[("node", "n1")]);
    let out = e.ok(&["ipam", "show"]);
    assert_eq!(
        out,
        "\
+----------+-------------+-----------+------------+--------------+
| GROUPING |    CIDR     | IPS TOTAL | IPS IN USE |   IPS FREE   |
+----------+-------------+-----------+------------+--------------+
| IP Pool  | 10.0.0.0/24 |       256 | 4 (2%)     | 252 (98%)    |
| IP Pool  | 10.1.0.0/16 |     65536 | 0 (0%)     | 65536 (100%) |
+----------+-------------+-----------+------------+--------------+
"
    );
    let out = e.ok(&["ipam", "show", "--show-blocks"]);
    assert_eq!(
        out,
        "\
+----------+--------------+-----------+------------+--------------+
| GROUPING |     CIDR     | IPS TOTAL | IPS IN USE |   IPS FREE   |
+----------+--------------+-----------+------------+--------------+
| IP Pool  | 10.0.0.0/24  |       256 | 4 (2%)     | 252 (98%)    |
| Block    | 10.0.0.0/26  |        64 | 3 (5%)     | 61 (95%)     |
| Block    | 10.0.0.64/26 |        64 | 1 (2%)     | 63 (98%)     |
| IP Pool  | 10.1.0.0/16  |     65536 | 0 (0%)     | 65536 (100%) |
+----------+--------------+-----------+------------+--------------+
"
    );
    let out = e.ok(&["ipam", "show", "--ip=10.0.0.1"]);
    assert_eq!(
        out,
        "IP 10.0.0.1 is in use\nAttributes:\n  namespace: ns\n  node: n1\n  pod: web\n"
    );
    assert_eq!(
        e.ok(&["ipam", "show", "--ip=10.0.0.9"]),
        "10.0.0.9 is not assigned\n"
    );
    assert_eq!(
        e.ok(&["ipam", "show", "--ip=192.168.7.7"]),
        "192.168.7.7 is not assigned\n"
    );
    assert!(e
        .fails(&["ipam", "show", "--ip=nonsense"])
        .contains("invalid IP address"));
    let out = e.ok(&["ipam", "show", "--show-borrowed"]);
    assert_eq!(
        out,
        "\
+----------+----------------+-------------+-------------+--------------------+--------------+
|    IP    | BORROWING-NODE |    BLOCK    | BLOCK OWNER |        TYPE        | ALLOCATED-TO |
+----------+----------------+-------------+-------------+--------------------+--------------+
| 10.0.0.3 | n2             | 10.0.0.0/26 | n1          | vxlanTunnelAddress |              |
+----------+----------------+-------------+-------------+--------------------+--------------+
"
    );
    assert_eq!(
        e.ok(&["ipam", "show", "--show-configuration"]),
        "\
+--------------------+-------+
|      PROPERTY      | VALUE |
+--------------------+-------+
| StrictAffinity     | false |
| AutoAllocateBlocks | true  |
| MaxBlocksPerHost   |     0 |
+--------------------+-------+
"
    );
    // Only one of the view flags at a time.
    e.fails(&["ipam", "show", "--show-blocks", "--show-borrowed"]);
    // A pool too big for exact figures prints as Go's %.5g does.
    e.pool("big", "10.64.0.0/10");
    let out = e.ok(&["ipam", "show"]);
    assert!(
        out.contains("| IP Pool  | 10.64.0.0/10 | 4.1943e+06 | 0 (0%)     | 4.1943e+06 (100%) |"),
        "{out}"
    );
}

#[test]
fn configure() {
    let e = Env::local();
    assert_eq!(
        e.ok(&["ipam", "configure", "--strictaffinity=true"]),
        "Successfully set StrictAffinity to: true\n"
    );
    assert!(e.ipam.get_config().unwrap().strict_affinity);
    assert_eq!(
        e.ok(&["ipam", "configure", "--max-blocks-per-host=4"]),
        "Successfully set MaxBlocksPerHost to: 4\n"
    );
    let out = e.ok(&["ipam", "show", "--show-configuration"]);
    assert!(
        out.contains("| StrictAffinity     | true  |")
            && out.contains("| MaxBlocksPerHost   |     4 |"),
        "{out}"
    );
    let raw = e
        .ipam
        .store()
        .get("/calico/ipam/v2/config")
        .unwrap()
        .unwrap();
    assert_eq!(
        raw.value_str().unwrap(),
        r#"{"strict_affinity":true,"auto_allocate_blocks":true,"maxBlocksPerHost":4}"#
    );
    // A block limit needs strict affinity (upstream's rule).
    assert!(e
        .fails(&["ipam", "configure", "--strictaffinity=false"])
        .contains("MaxBlocksPerHost requires StrictAffinity"));
    assert!(e
        .fails(&["ipam", "configure", "--strictaffinity=maybe"])
        .contains("Use true or false to set strictaffinity"));
    assert!(e
        .fails(&["ipam", "configure"])
        .contains("at least one configuration option"));
}

#[test]
fn release_by_ip() {
    let e = Env::local();
    e.pool("p", "10.2.0.0/24");
    e.assign("10.2.0.5", "n1", "h", &[]);
    assert_eq!(
        e.ok(&["ipam", "release", "--ip=10.2.0.5"]),
        "Successfully released IP address 10.2.0.5\n"
    );
    assert!(e
        .ipam
        .assignment_attributes(ip("10.2.0.5"))
        .unwrap()
        .is_none());
    assert!(e.ipam.get_handle("h").unwrap().is_none());
    assert!(e
        .fails(&["ipam", "release", "--ip=10.2.0.5"])
        .contains("IP address 10.2.0.5 is not assigned"));
    e.fails(&["ipam", "release"]);
}

#[test]
fn check_report_and_release_from_report() {
    let e = Env::local();
    let dir = tempfile::tempdir().unwrap();
    e.pool("p", "10.3.0.0/24");
    e.node("n1");
    e.assign("10.3.0.1", "n1", "wl-1", &[("node", "n1")]);
    e.assign(
        "10.3.0.2",
        "n1",
        "wl-gone",
        &[("node", "n1"), ("namespace", "default"), ("pod", "gone")],
    );
    e.wep("n1-k8s-p-eth0", "n1", "10.3.0.1");
    e.ipam
        .store()
        .create(
            "/calico/ipam/v2/handle/stale-handle",
            br#"{"block":{},"deleted":false}"#,
            None,
        )
        .unwrap();
    let report = dir.path().join("report.json");
    let out = e.ok(&[
        "ipam",
        "check",
        "--show-problem-ips",
        "-o",
        report.to_str().unwrap(),
    ]);
    for line in [
        "Checking IPAM for inconsistencies...",
        "Found 1 IPAM blocks.",
        " IPAM block 10.3.0.0/26 affinity=host:n1:",
        "IPAM blocks record 2 allocations.",
        "Found 1 active IP pools.",
        "Found 0 node tunnel IPs.",
        "Found 1 workload IPs.",
        "  n1 has 2 allocations",
        "  10.3.0.2 leaked; attrs Main:wl-gone Extra:namespace=default,node=n1,pod=gone",
        "Found 1 IPs that are allocated in IPAM but not actually in use.",
        "Found 1 handles with no matching IPs (and 2 handles with matches).",
        "Found 0 blocks affine to nodes that no longer exist.",
        "Check complete; found 2 problems.",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?} in:\n{out}"
        );
    }
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["allocations"]["10.3.0.2"][0]["inUse"], false);
    assert_eq!(r["allocations"]["10.3.0.2"][0]["handle"], "wl-gone");
    assert_eq!(r["allocations"]["10.3.0.1"][0]["inUse"], true);
    assert_eq!(
        r["allocations"]["10.3.0.1"][0]["owners"][0],
        "Workload(default/n1-k8s-p-eth0)"
    );
    assert_eq!(r["leakedHandles"][0]["ID"], "stale-handle");
    // Upstream refuses unless the data store is locked (or --force).
    let rep = format!("--from-report={}", report.display());
    assert!(e
        .fails(&["ipam", "release", &rep])
        .contains("data store is not locked. Either lock the data store, or re-run with --force"));
    let out = e.ok(&["ipam", "release", &rep, "--force"]);
    assert!(
        out.contains("WARNING: Data store is not locked. Ignoring due to --force option"),
        "{out}"
    );
    assert!(
        out.contains("Releasing 1 old IPs...\nReleased 1 IPs successfully"),
        "{out}"
    );
    assert!(
        out.contains("Released 1 handles; 0 skipped; 0 errors."),
        "{out}"
    );
    assert!(
        out.ends_with("You may now unlock the data store.\n"),
        "{out}"
    );
    assert!(e
        .ipam
        .assignment_attributes(ip("10.3.0.2"))
        .unwrap()
        .is_none());
    assert!(e
        .ipam
        .assignment_attributes(ip("10.3.0.1"))
        .unwrap()
        .is_some());
    let out = e.ok(&["ipam", "check"]);
    assert!(out.contains("Check complete; found 0 problems."), "{out}");
    // A stale report: the address was re-allocated to another owner since.
    e.assign("10.3.0.3", "n1", "old", &[]);
    e.ok(&["ipam", "check", "-o", report.to_str().unwrap()]);
    e.ok(&["ipam", "release", "--ip=10.3.0.3"]);
    e.assign("10.3.0.3", "n1", "new-owner", &[]);
    let out = e.ok(&["ipam", "release", &rep, "--force"]);
    assert!(out.contains("Released 0 IPs successfully"), "{out}");
    assert!(
        out.contains(
            "1 addresses marked as leaked in the report have been re-allocated since; left alone."
        ),
        "{out}"
    );
    assert_eq!(
        e.ipam.ips_by_handle("new-owner").unwrap(),
        vec![ip("10.3.0.3")]
    );
    // A locked data store (ClusterInformation datastoreReady: false) needs no --force.
    let ci = r#"{"apiVersion":"projectcalico.org/v3","kind":"ClusterInformation","metadata":{"name":"default"},"spec":{"clusterGUID":"abc","datastoreReady":false}}"#;
    let f = dir.path().join("ci.json");
    std::fs::write(&f, ci).unwrap();
    e.ok(&["apply", "-f", f.to_str().unwrap()]);
    // The old report is from before: another cluster GUID now.
    assert!(e
        .fails(&["ipam", "release", &rep, "--force"])
        .contains("mismatched cluster GUID"));
    e.ok(&["ipam", "check", "-o", report.to_str().unwrap()]);
    let out = e.ok(&["ipam", "release", &rep]);
    assert!(
        out.contains("Released 1 IPs successfully") && !out.contains("WARNING"),
        "{out}"
    );
}

#[test]
fn delete_pool_with_allocations_refuses_unless_forced() {
    let e = Env::local();
    e.pool("busy", "10.4.0.0/24");
    e.pool("idle", "10.5.0.0/24");
    e.assign("10.4.0.10", "n1", "h1", &[]);
    e.assign("10.4.0.11", "n1", "h2", &[]);
    let err = e.fails(&["delete", "ippool", "busy"]);
    assert!(
        err.contains("IP pool busy (10.4.0.0/24) still has 2 allocated address(es)")
            && err.contains("--force"),
        "{err}"
    );
    assert!(e.client.get_as::<IPPool>("", "busy").unwrap().is_some());
    // The same through a file.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pool.yaml");
    std::fs::write(
        &f,
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: busy\nspec:\n  cidr: 10.4.0.0/24\n",
    )
    .unwrap();
    assert!(e
        .fails(&["delete", "-f", f.to_str().unwrap()])
        .contains("still has 2 allocated"));
    // An empty pool deletes as before.
    assert_eq!(
        e.ok(&["delete", "ippool", "idle"]),
        "Successfully deleted 1 'IPPool' resource(s)\n"
    );
    // Forced: deleted; the allocations stay, in a block without affinity.
    assert_eq!(
        e.ok(&["delete", "-f", f.to_str().unwrap(), "--force"]),
        "Successfully deleted 1 'IPPool' resource(s)\n"
    );
    assert!(e.client.get_as::<IPPool>("", "busy").unwrap().is_none());
    let b = e
        .ipam
        .get_block(&"10.4.0.0/26".parse().unwrap())
        .unwrap()
        .unwrap()
        .value;
    assert!(b.affinity.is_none() && b.in_use() == 2);
    let out = e.ok(&["ipam", "show", "--show-blocks"]);
    assert!(
        out.contains("| Block    | 10.4.0.0/26 |        64 | 2 (3%)     | 62 (97%) |"),
        "{out}"
    );
    assert!(!out.contains("IP Pool"), "{out}");
    assert!(e
        .fails(&["delete", "ippool", "nope"])
        .contains("resource does not exist: IPPool(nope)"));
    assert!(e
        .ok(&["delete", "ippool", "nope", "--skip-not-exists"])
        .contains("Skipped 1 resource(s) that do not exist"));
}

#[test]
fn etcd_show_check_release() {
    let e = Env::etcd();
    e.pool("p", "10.6.0.0/24");
    e.node("n1");
    let r = e
        .ipam
        .auto_assign(&AutoAssignArgs {
            num4: 3,
            handle_id: Some("h".into()),
            hostname: "n1".into(),
            attrs: BTreeMap::from([("node".to_string(), "n1".to_string())]),
            ..Default::default()
        })
        .unwrap();
    let ips = r.v4.addrs();
    let out = e.ok(&["ipam", "show", "--show-blocks"]);
    assert!(
        out.contains("| IP Pool  | 10.6.0.0/24") && out.contains("3 (1%)"),
        "{out}"
    );
    let out = e.ok(&["ipam", "check"]);
    assert!(
        out.contains("Found 3 IPs that are allocated in IPAM but not actually in use."),
        "{out}"
    );
    let ip0 = format!("--ip={}", ips[0]);
    assert!(e
        .ok(&["ipam", "release", &ip0])
        .starts_with("Successfully released"));
    assert_eq!(e.ipam.ips_by_handle("h").unwrap().len(), 2);
    let err = e.fails(&["delete", "ippool", "p"]);
    assert!(err.contains("still has 2 allocated address(es)"), "{err}");
    e.ok(&["delete", "ippool", "p", "--force"]);
}
