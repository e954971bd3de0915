//! `calicoctl get` tables, byte for byte as upstream calicoctl v3.31 prints
//! them: its column sets per kind, Go's tabwriter layout (every column padded,
//! the last one too), Go's printing of unset and float fields, a blank line
//! after each table, one table per named resource, and names not found
//! reported at the end with a failing exit.

use std::path::PathBuf;
use std::process::{Command, Output};

const CALICOCTL: &str = env!("CARGO_BIN_EXE_calicoctl");

struct Ctl {
    cfg: PathBuf,
    dir: tempfile::TempDir,
}

impl Ctl {
    fn new() -> Ctl {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("calicoctl.cfg");
        std::fs::write(
            &cfg,
            format!(
                "apiVersion: projectcalico.org/v3\nkind: CalicoAPIConfig\nmetadata:\nspec:\n  datastoreType: local\n  datastorePath: {}\n",
                dir.path().join("calico.db").display()
            ),
        )
        .unwrap();
        Ctl { cfg, dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(CALICOCTL)
            .args(args)
            .arg("-c")
            .arg(&self.cfg)
            .env_remove("DATASTORE_TYPE")
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

    fn apply(&self, yaml: &str) {
        let f = self.dir.path().join("in.yaml");
        std::fs::write(&f, yaml).unwrap();
        self.ok(&["apply", "-f", f.to_str().unwrap()]);
    }
}

const POLICIES: &str = "apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: security
spec:
  order: 100
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: security.block
spec:
  tier: security
  order: 10
  selector: all()
  ingress:
  - action: Deny
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-dns
spec:
  selector: all()
  egress:
  - action: Allow
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: web
  namespace: prod
spec:
  order: 1500000
  selector: app == 'web'
  ingress:
  - action: Allow
";

#[test]
fn policy_and_tier_tables() {
    let c = Ctl::new();
    c.apply(POLICIES);
    assert_eq!(
        c.ok(&["get", "gnp"]),
        "NAME             TIER       \n\
         allow-dns        default    \n\
         security.block   security   \n\n"
    );
    // An unset order prints as Go prints a nil *float64.
    assert_eq!(
        c.ok(&["get", "gnp", "-o", "wide"]),
        "NAME             TIER       ORDER   SELECTOR   \n\
         allow-dns        default    <nil>   all()      \n\
         security.block   security   10      all()      \n\n"
    );
    assert_eq!(
        c.ok(&["get", "tiers"]),
        "NAME       ORDER   \nsecurity   100     \n\n"
    );
    // No NAMESPACE column unless -n or -A is given; then the same one.
    assert_eq!(
        c.ok(&["get", "networkpolicy", "-o", "wide", "-n", "default"]),
        "NAMESPACE   NAME   TIER   ORDER   SELECTOR   \n\n"
    );
    assert_eq!(c.ok(&["get", "networkpolicy"]), "NAME   TIER   \n\n");
    let with_ns = "NAMESPACE   NAME   TIER      ORDER     SELECTOR       \n\
                   prod        web    default   1.5e+06   app == 'web'   \n\n";
    assert_eq!(
        c.ok(&["get", "networkpolicy", "-n", "prod", "-o", "wide"]),
        with_ns
    );
    assert_eq!(c.ok(&["get", "networkpolicy", "-A", "-o", "wide"]), with_ns);
}

#[test]
fn pool_and_cluster_configuration_tables() {
    let c = Ctl::new();
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: pool1
spec:
  cidr: 10.0.1.0/24
  vxlanMode: Always
  natOutgoing: true
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  logSeverityScreen: Info
  asNumber: 64513
---
apiVersion: projectcalico.org/v3
kind: ClusterInformation
metadata:
  name: default
spec:
  clusterGUID: 3b2d5c1e
  clusterType: openstack
  calicoVersion: v3.31.0
---
apiVersion: projectcalico.org/v3
kind: IPAMConfiguration
metadata:
  name: default
spec:
  strictAffinity: true
  maxBlocksPerHost: 4
",
    );
    assert_eq!(
        c.ok(&["get", "ippools", "-o", "wide"]),
        "NAME    CIDR          NAT    IPIPMODE   VXLANMODE   DISABLED   DISABLEBGPEXPORT   SELECTOR   ASSIGNMENTMODE   \n\
         pool1   10.0.1.0/24   true   Never      Always      false      false              all()      Automatic        \n\n"
    );
    // Unset pointers: "-" where the template says so, else <nil>.
    assert_eq!(
        c.ok(&["get", "bgpconfig"]),
        "NAME      LOGSEVERITY   MESHENABLED   ASNUMBER   \n\
         default   Info          -             64513      \n\n"
    );
    assert_eq!(
        c.ok(&["get", "clusterinfo"]),
        "NAME      CLUSTERGUID   CLUSTERTYPE   CALICOVERSION   DATASTOREREADY   \n\
         default   3b2d5c1e      openstack     v3.31.0         <nil>            \n\n"
    );
    assert_eq!(
        c.ok(&["get", "ipamconfig"]),
        "NAME      STRICTAFFINITY   AUTOALLOCATEBLOCKS   \n\
         default   true             false                \n\n"
    );
    assert_eq!(
        c.ok(&["get", "ipamconfig", "-o", "wide"]),
        "NAME      STRICTAFFINITY   AUTOALLOCATEBLOCKS   MAXBLOCKSPERHOST   \n\
         default   true             false                4                  \n\n"
    );
}

#[test]
fn several_names_print_each_found_one_and_report_the_missing() {
    let c = Ctl::new();
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: ippool-name1
spec:
  cidr: 10.0.1.0/24
  nodeSelector: foo == 'bar'
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: ippool-name2
spec:
  cidr: fed0:8001::/64
  blockSize: 123
",
    );
    // Upstream's own expected output (calicoctl/tests/st: data.py's
    // ippool_name1_rev1_table and ippool_name2_rev1_table, with the padding
    // and blank lines test_crud.py adds): one table per name.
    let first = "NAME           CIDR          SELECTOR       \n\
                 ippool-name1   10.0.1.0/24   foo == 'bar'   \n\n";
    let second = "NAME           CIDR             SELECTOR   \n\
                  ippool-name2   fed0:8001::/64   all()      \n\n";
    assert_eq!(
        c.ok(&["get", "ippool", "ippool-name1", "ippool-name2"]),
        format!("{first}{second}")
    );
    let o = c.run(&[
        "get",
        "ippool",
        "ippool-name1",
        "blah",
        "ippool-name2",
        "nope",
    ]);
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        format!("{first}{second}")
    );
    assert_eq!(
        String::from_utf8(o.stderr).unwrap(),
        "resource does not exist: IPPool(blah)\nresource does not exist: IPPool(nope)\n"
    );
}

#[test]
fn endpoint_node_and_profile_tables() {
    let c = Ctl::new();
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node1-openstack-vm1-tap1234
  namespace: openstack
spec:
  orchestrator: openstack
  node: node1
  workload: vm1
  endpoint: tap1234
  interfaceName: tap1234
  ipNetworks:
  - 10.200.0.5/32
  ipNATs:
  - internalIP: 10.200.0.5
    externalIP: 172.24.4.10
  profiles:
  - openstack-sg-a
---
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: bare
---
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: bgp1
spec:
  bgp:
    ipv4Address: 10.0.0.1/24
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: openstack-sg-a
spec:
  labelsToApply:
    a.b: x
    a: y
",
    );
    assert_eq!(
        c.ok(&["get", "wep", "-n", "openstack"]),
        "NAMESPACE   WORKLOAD   NODE    NETWORKS        INTERFACE   \n\
         openstack   vm1        node1   10.200.0.5/32   tap1234     \n\n"
    );
    // A NAT prints as Go prints the struct.
    assert_eq!(
        c.ok(&["get", "wep", "-A", "-o", "wide"]),
        "NAMESPACE   NAME                          WORKLOAD   NODE    NETWORKS        INTERFACE   PROFILES         NATS                       \n\
         openstack   node1-openstack-vm1-tap1234   vm1        node1   10.200.0.5/32   tap1234     openstack-sg-a   {10.200.0.5 172.24.4.10}   \n\n"
    );
    // Nothing for a node without BGP settings; the global AS in parentheses.
    assert_eq!(
        c.ok(&["get", "nodes", "-o", "wide"]),
        "NAME   ASN       IPV4          IPV6   \n\
         bare                                  \n\
         bgp1   (64512)   10.0.0.1/24          \n\n"
    );
    // Labels as sorted key=value strings.
    assert_eq!(
        c.ok(&["get", "profiles", "-o", "wide"]),
        "NAME             LABELS      \n\
         openstack-sg-a   a.b=x,a=y   \n\n"
    );
}

#[test]
fn bgp_filter_table_and_short_names() {
    let c = Ctl::new();
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata:
  name: export-pools
spec:
  exportV4:
    - action: Accept
      matchOperator: In
      cidr: 10.0.0.0/16
    - action: Reject
  importV6:
    - action: Reject
      source: RemotePeers
",
    );
    let table = "NAME           NUMEXPORTV4   NUMIMPORTV4   NUMEXPORTV6   NUMIMPORTV6   \n\
                 export-pools   2             0             0             1             \n\n";
    for kind in ["bgpfilter", "bgpfilters", "bgpf", "bfs", "BGPFilter"] {
        assert_eq!(c.ok(&["get", kind]), table, "{kind}");
    }
    assert_eq!(c.ok(&["get", "bgpfilter", "-o", "wide"]), table);
    let yaml = c.ok(&["get", "bgpfilter", "export-pools", "-o", "yaml"]);
    assert!(yaml.contains("kind: BGPFilter"), "{yaml}");
    assert!(yaml.contains("matchOperator: In"), "{yaml}");
}

/// CalicoNodeStatus: the columns of later upstream (v3.31's calicoctl has no
/// table for the kind), and the status block through `get -o yaml` and back.
#[test]
fn calico_node_status_table_and_status_round_trip() {
    let c = Ctl::new();
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: CalicoNodeStatus
metadata:
  name: host1-status
spec:
  node: host1
  classes: [Agent, BGP, Routes]
  updatePeriodSeconds: 10
---
apiVersion: projectcalico.org/v3
kind: CalicoNodeStatus
metadata:
  name: host2-once
spec:
  node: host2
  classes: [BGP]
  updatePeriodSeconds: 0
",
    );
    let ps = "NAME           NODE    \n\
              host1-status   host1   \n\
              host2-once     host2   \n\n";
    for kind in [
        "caliconodestatus",
        "caliconodestatuses",
        "nodestatus",
        "nodestatuses",
        "CalicoNodeStatus",
    ] {
        assert_eq!(c.ok(&["get", kind]), ps, "{kind}");
    }
    assert_eq!(
        c.ok(&["get", "caliconodestatus", "-o", "wide"]),
        "NAME           NODE    CLASSES            \n\
         host1-status   host1   Agent,BGP,Routes   \n\
         host2-once     host2   BGP                \n\n"
    );

    // Before the agent reports: the empty status as upstream prints it.
    let yaml = c.ok(&["get", "nodestatus", "host2-once", "-o", "yaml"]);
    let status_of = |yaml: &str| {
        let v: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
        v["status"].clone()
    };
    let empty: serde_yaml::Value = serde_yaml::from_str(
        "agent: {birdV4: {}, birdV6: {}}
bgp: {numberEstablishedV4: 0, numberEstablishedV6: 0, numberNotEstablishedV4: 0, numberNotEstablishedV6: 0}
lastUpdated: null
routes: {}",
    )
    .unwrap();
    assert_eq!(status_of(&yaml), empty, "{yaml}");
    assert!(yaml.contains("updatePeriodSeconds: 0"), "{yaml}");

    // A report (as the agent writes it) survives get -o yaml and apply.
    let reported = "apiVersion: projectcalico.org/v3
kind: CalicoNodeStatus
metadata:
  name: host1-status
spec:
  node: host1
  classes: [Agent, BGP, Routes]
  updatePeriodSeconds: 10
status:
  lastUpdated: '2021-09-19T20:48:43Z'
  agent:
    birdV4: {state: Ready, version: v0.3.3+birdv1.6.8, routerID: 192.0.2.11, lastBootTime: '2021-09-19 20:10:56', lastReconfigurationTime: '2021-09-19 20:10:56'}
    birdV6: {state: Ready, version: v0.3.3+birdv1.6.8, routerID: 192.0.2.11, lastBootTime: '2021-09-19 20:10:56', lastReconfigurationTime: '2021-09-19 20:10:56'}
  bgp:
    numberEstablishedV4: 1
    numberNotEstablishedV4: 1
    numberEstablishedV6: 0
    numberNotEstablishedV6: 0
    peersV4:
    - {peerIP: 192.0.2.12, type: NodeMesh, state: Established, since: '20:10:58'}
    - {peerIP: 192.168.10.254, type: GlobalPeer, state: Active, since: '20:10:57'}
  routes:
    routesV4:
    - {type: FIB, destination: 10.65.0.0/26, gateway: N/A, interface: blackhole, learnedFrom: {sourceType: Static}}
    - {type: FIB, destination: 10.65.1.0/26, gateway: 192.0.2.12, interface: eth0, learnedFrom: {sourceType: NodeMesh, peerIP: 192.0.2.12}}
";
    c.apply(reported);
    let want = status_of(reported);
    let got = c.ok(&["get", "caliconodestatus", "host1-status", "-o", "yaml"]);
    assert_eq!(status_of(&got), want, "{got}");
    // Read back as printed, applied again, printed again: the same status.
    let f = c.dir.path().join("back.yaml");
    std::fs::write(&f, &got).unwrap();
    c.ok(&["apply", "-f", f.to_str().unwrap()]);
    let again = c.ok(&["get", "caliconodestatus", "host1-status", "-o", "json"]);
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(
        serde_yaml::to_value(&again["status"]).unwrap(),
        want,
        "{again}"
    );
    assert_eq!(
        again["status"]["bgp"]["peersV4"][1]["type"],
        serde_json::json!("GlobalPeer")
    );

    // Invalid specs are refused with the field named.
    let f = c.dir.path().join("bad.yaml");
    std::fs::write(
        &f,
        "apiVersion: projectcalico.org/v3
kind: CalicoNodeStatus
metadata:
  name: bad
spec:
  node: host1
  classes: [Agent, Interfaces]
  updatePeriodSeconds: 100000
",
    )
    .unwrap();
    let o = c.run(&["create", "-f", f.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("spec.classes[1]"), "{err}");
    assert!(err.contains("spec.updatePeriodSeconds"), "{err}");

    assert!(c
        .ok(&["delete", "caliconodestatus", "host2-once"])
        .contains("Successfully deleted 1 'CalicoNodeStatus' resource(s)"));
}
