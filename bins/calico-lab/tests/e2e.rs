//! End-to-end tests of calico-node in network namespaces, through the lab:
//! the article's policies across two hosts (VXLAN), NAT-outgoing,
//! anti-spoofing, drift repair, restart without a lost packet and a
//! datastore outage. Root only (they create namespaces); every lab is torn
//! down by a guard, even when an assertion fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{sibling, Lab, SERIAL};

const ARTICLE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/article");

fn article() -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(ARTICLE_DIR)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

const FIX: &str = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: default-deny-all\nspec:\n  selector: all()\n  types: [Ingress, Egress]\n  egress:\n  - action: Allow\n";

#[test]
fn agent_enforces_the_article_and_survives_restarts_and_drift() {
    if !calico_testsupport::require_root(
        "agent_enforces_the_article_and_survives_restarts_and_drift",
    ) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // VXLAN between the hosts (the BGP fabric has tests of its own).
    let lab = Lab::up_with("a", &["--hosts", "2", "--routing", "vxlan"]);
    lab.calicoctl(&["apply", "-f", "-"], &article());
    let web = lab.add("host1", "production", "web", "web");
    let db = lab.add("host2", "production", "database", "database");
    let sweb = lab.add("host1", "staging", "web", "web");
    let sdb = lab.add("host2", "staging", "database", "database");
    let fe = lab.add("host2", "frontend", "frontend", "frontend");

    // The article as published: the GNP's explicit Deny sorts first (the trap).
    lab.expect_reach(
        "production/web",
        &fe,
        81,
        false,
        "frontend 81 is never allowed",
    );
    lab.expect_reach(
        "production/web",
        &db,
        80,
        false,
        "the trap: default-deny-all runs before web-db-policy",
    );

    // The fix: end-of-tier deny instead of an explicit Deny rule.
    lab.calicoctl(&["apply", "-f", "-"], FIX);
    lab.expect_reach(
        "production/web",
        &db,
        5432,
        true,
        "web-db-policy allows web -> database across hosts (VXLAN)",
    );
    lab.expect_reach(
        "production/web",
        &fe,
        80,
        true,
        "frontend-allow-http allows TCP 80",
    );
    lab.expect_reach(
        "production/web",
        &fe,
        81,
        false,
        "frontend-allow-http allows only TCP 80",
    );
    lab.expect_reach(
        "production/web",
        &sdb,
        80,
        false,
        "staging's deny-all-default",
    );
    lab.expect_reach(
        "staging/web",
        &sdb,
        80,
        false,
        "staging's deny-all-default applies within staging too",
    );
    lab.expect_reach(
        "staging/database",
        &web,
        80,
        false,
        "nothing allows ingress to production/web",
    );
    let _ = sweb;

    // Remote workloads are reached over vxlan.calico.
    let routes = String::from_utf8_lossy(&lab.exec("host1", &["ip", "route"]).stdout).into_owned();
    assert!(
        routes
            .lines()
            .any(|l| l.contains("dev vxlan.calico") && l.contains("onlink")),
        "{routes}"
    );

    // NAT-outgoing: a destination outside every pool sees the host's address.
    let log = lab
        .ok(&["serve-external", "--port", "8080"])
        .trim()
        .to_string();
    lab.expect_reach(
        "production/web",
        "192.0.2.1",
        8080,
        true,
        "natOutgoing lets workloads reach the outside",
    );
    let seen = std::fs::read_to_string(&log).unwrap();
    // The server listens dual-stack, so IPv4 peers show as ::ffff:a.b.c.d.
    let sources: Vec<&str> = seen
        .lines()
        .filter_map(|l| l.strip_prefix("CONN tcp from "))
        .collect();
    assert!(!sources.is_empty(), "no connection seen: {seen}");
    assert!(
        sources
            .iter()
            .all(|s| s.contains("192.0.2.11]") || s.starts_with("192.0.2.11:")),
        "source should be host1's address: {seen}"
    );
    assert!(!seen.contains(&web), "workload address leaked: {seen}");

    // Anti-spoofing: a workload may only send from its own address.
    assert!(lab
        .exec(
            "production/web",
            &["ip", "addr", "add", "198.19.250.250/32", "dev", "eth0"]
        )
        .status
        .success());
    let probe = sibling("calico-probe");
    let spoofed = lab.exec(
        "production/web",
        &[
            probe.to_str().unwrap(),
            "tcp",
            &format!("{fe}:80"),
            "--bind",
            "198.19.250.250",
            "--timeout-ms",
            "500",
        ],
    );
    assert!(
        !spoofed.status.success(),
        "spoofed source must be dropped: {}",
        String::from_utf8_lossy(&spoofed.stdout)
    );
    lab.expect_reach(
        "production/web",
        &fe,
        80,
        true,
        "its own address still works",
    );

    // Drift repair: our table and a route removed behind the agent's back.
    assert!(lab
        .exec("host2", &["nft", "delete", "table", "inet", "calico"])
        .status
        .success());
    assert!(lab
        .exec("host2", &["ip", "route", "del", &format!("{db}/32")])
        .status
        .success());
    lab.expect_reach(
        "production/web",
        &fe,
        81,
        false,
        "policy restored after the table was deleted",
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = String::from_utf8_lossy(&lab.exec("host2", &["ip", "route"]).stdout).into_owned();
        if r.lines().any(|l| l.starts_with(&format!("{db} "))) {
            break;
        }
        assert!(Instant::now() < deadline, "route to {db} not restored: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
    lab.expect_reach(
        "production/web",
        &db,
        5432,
        true,
        "the workload route is back",
    );

    // A workload whose address Neutron assigned (no IPAM block covers it) is
    // reached across hosts through a per-address VXLAN route.
    lab.calicoctl(
        &["apply", "-f", "-"],
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: neutron-pool\nspec:\n  cidr: 198.18.100.0/24\n  vxlanMode: Always\n  nodeSelector: has(neutron-only)\n",
    );
    let out = lab.ok(&[
        "add-workload",
        "--host",
        "host1",
        "--namespace",
        "production",
        "vm7",
        "--label",
        "app=web",
        "--ip",
        "198.18.100.7",
    ]);
    assert!(out.contains("198.18.100.7"), "{out}");
    lab.expect_reach(
        "production/vm7",
        &db,
        5432,
        true,
        "a Neutron-addressed VM reaches the database on the other host",
    );
    let r2 = String::from_utf8_lossy(&lab.exec("host2", &["ip", "route"]).stdout).into_owned();
    assert!(
        r2.lines()
            .any(|l| l.starts_with("198.18.100.7 ") && l.contains("vxlan.calico")),
        "{r2}"
    );

    // The agent allocated its VXLAN tunnel address from IPAM and recorded it.
    let node: serde_json::Value =
        serde_json::from_str(&lab.calicoctl(&["get", "node", "host1", "-o", "json"], "")).unwrap();
    let tunnel = node["spec"]["ipv4VXLANTunnelAddr"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        tunnel.starts_with("198.19."),
        "tunnel address from the lab pool: {node}"
    );

    // Status flows back: liveness under a lease, endpoint status, metrics.
    let store = calico_datastore::LocalStore::open(lab.dir.path().join("calico.db")).unwrap();
    use calico_datastore::Datastore;
    let status = store
        .get("/calico/felix/v2/no-region/host/host1/status")
        .unwrap()
        .expect("felix status key");
    assert_ne!(status.lease, 0, "the status key lives under a lease");
    // Endpoint status is written with the periodic report (every 5 s in the lab).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let eps = store
            .list("/calico/felix/v2/no-region/host/host2/workload/openstack/")
            .unwrap();
        let up = eps.kvs.iter().any(|kv| {
            // Upstream's workload id: <namespace>/<workload>, `/` escaped.
            kv.key
                .contains("/workload/openstack/production%2fdatabase/endpoint/")
                && kv.value_str() == Some(r#"{"status":"up"}"#)
        });
        if up {
            break;
        }
        let keys: Vec<&String> = eps.kvs.iter().map(|k| &k.key).collect();
        assert!(
            Instant::now() < deadline,
            "no endpoint status for production/database: {keys:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let metrics = lab.exec("host1", &["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9091; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3"]);
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    let endpoints_line = metrics
        .lines()
        .find(|l| l.starts_with("felix_active_local_endpoints "))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert_eq!(
        endpoints_line, "felix_active_local_endpoints 3",
        "{metrics}"
    );

    // Bad data written behind calicoctl's back is logged with its key and skipped.
    store
        .put(
            "/calico/resources/v3/projectcalico.org/networkpolicies/production/broken",
            b"{not json",
            None,
        )
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    lab.expect_reach(
        "production/web",
        &fe,
        81,
        false,
        "still enforcing after bad data",
    );
    lab.expect_reach(
        "production/web",
        &db,
        5432,
        true,
        "still allowing after bad data",
    );
    let log = std::fs::read_to_string(lab.dir.path().join("host1.log")).unwrap();
    assert!(
        log.contains("networkpolicies/production/broken"),
        "the bad key is logged"
    );
    store
        .delete(
            "/calico/resources/v3/projectcalico.org/networkpolicies/production/broken",
            None,
        )
        .unwrap();

    // Restart without a lost packet: ping web -> database across restarts of both agents.
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{}w-production-web", lab.prefix),
            "ping",
            "-n",
            "-q",
            "-i",
            "0.05",
            "-c",
            "120",
            &db,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ping (apt-get install iputils-ping)");
    std::thread::sleep(Duration::from_millis(500));
    lab.ok(&["restart-agent", "host2"]);
    lab.ok(&["restart-agent", "host1"]);
    let out = ping.wait_with_output().unwrap();
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        summary.contains("120 received") && summary.contains(" 0% packet loss"),
        "packets lost across restarts: {summary}"
    );
    // And the restarted agents still enforce.
    lab.expect_reach("production/web", &fe, 81, false, "policy after restart");
    lab.expect_reach("production/web", &db, 5432, true, "allow after restart");
}

#[test]
fn datastore_outage_keeps_the_dataplane_and_catches_up() {
    if !calico_testsupport::require_root("datastore_outage_keeps_the_dataplane_and_catches_up") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up("b", 2, "etcd");
    lab.calicoctl(&["apply", "-f", "-"], &article());
    lab.calicoctl(&["apply", "-f", "-"], FIX);
    let _web = lab.add("host1", "production", "web", "web");
    let db = lab.add("host2", "production", "database", "database");
    lab.expect_reach("production/web", &db, 5432, true, "before the outage");

    lab.ok(&["datastore", "stop"]);
    std::thread::sleep(Duration::from_secs(2));
    lab.expect_reach(
        "production/web",
        &db,
        5432,
        true,
        "the dataplane stays while etcd is down",
    );
    // The agents are alive (not crashed) and keep enforcing.
    assert!(lab.exec("host2", &["true"]).status.success());
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lab.dir.path().join("lab.json")).unwrap())
            .unwrap();
    for h in state["hosts"].as_array().unwrap() {
        let pid = h["agent_pid"].as_u64().unwrap();
        assert!(
            Path::new(&format!("/proc/{pid}")).exists(),
            "agent {} died during the outage\n{}",
            h["name"],
            lab.logs()
        );
    }

    lab.ok(&["datastore", "start"]);
    // A change made after the store returns reaches the dataplane.
    lab.calicoctl(
        &[
            "delete",
            "networkpolicy",
            "web-db-policy",
            "-n",
            "production",
        ],
        "",
    );
    lab.expect_reach(
        "production/web",
        &db,
        5432,
        false,
        "the agent resynced and removed the allow",
    );
}

fn metrics_of(lab: &Lab, host: &str) -> String {
    let out = lab.exec(host, &["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9091; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn metric_line(metrics: &str, series: &str) -> String {
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("{series} ")))
        .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
        .to_string()
}

/// Waits until `f` returns Some, failing with `what` after 20 s.
fn eventually<T>(lab: &Lab, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}\n{}", lab.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wep_yaml(color: &str) -> String {
    let name = calico_api::endpoint::workload_endpoint_name("host1", "openstack", "vm1", "tapst1");
    format!(
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: {name}\n  namespace: status\n  labels:\n    color: {color}\nspec:\n  orchestrator: openstack\n  node: host1\n  workload: vm1\n  endpoint: tapst1\n  interfaceName: tapst1\n  ipNetworks:\n  - 198.19.200.1/32\n"
    )
}

#[test]
fn status_tells_the_truth() {
    if !calico_testsupport::require_root("e2e") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up("st", 1, "local");
    use calico_datastore::Datastore;
    let store = calico_datastore::LocalStore::open(lab.dir.path().join("calico.db")).unwrap();
    let get = |key: &str| -> Option<String> {
        store
            .get(key)
            .unwrap()
            .map(|kv| String::from_utf8(kv.value).unwrap())
    };
    let host = "/calico/felix/v2/no-region/host/host1";
    // Left from before a restart: an endpoint status of a VM deleted meanwhile.
    let stale = format!("{host}/workload/openstack/gone/endpoint/tapgone");
    store.put(&stale, br#"{"status":"up"}"#, None).unwrap();
    lab.ok(&["restart-agent", "host1"]);

    // Felix status as upstream; first_update true on the first report only.
    // (The old agent's last value may still be there for a moment.)
    let first = eventually(&lab, "no first_update true after the restart", || {
        get(&format!("{host}/status")).filter(|s| s.ends_with(r#""first_update":true}"#))
    });
    let v: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(v["first_update"], serde_json::Value::Bool(true), "{first}");
    assert!(v["uptime"].as_f64().is_some(), "{first}");
    assert!(first.starts_with(r#"{"time":""#), "{first}");
    eventually(&lab, "first_update stays true", || {
        get(&format!("{host}/status")).filter(|s| s.ends_with(r#""first_update":false}"#))
    });
    eventually(&lab, "stale endpoint status not removed at start", || {
        get(&stale).is_none().then_some(())
    });

    // An endpoint whose tap Nova has not created yet: down. Its workload id
    // is <namespace>/<workload> as upstream's, the '/' escaped in the key.
    lab.calicoctl(&["apply", "-f", "-"], &wep_yaml("red"));
    let key = format!("{host}/workload/openstack/status%2fvm1/endpoint/tapst1");
    eventually(&lab, "no down status for the tap-less endpoint", || {
        get(&key).filter(|v| v == r#"{"status":"down"}"#)
    });
    // The tap appears: up once routes, sysctls and chains are in.
    assert!(lab
        .exec(
            "host1",
            &["bash", "-c", "ip link add tapst1 type veth peer name tapst1p && ip link set tapst1p up && ip link set tapst1 up"]
        )
        .status
        .success());
    eventually(&lab, "no up status after the tap appeared", || {
        get(&key).filter(|v| v == r#"{"status":"up"}"#)
    });
    let routes = lab.exec("host1", &["ip", "route", "show", "198.19.200.1"]);
    assert!(
        String::from_utf8_lossy(&routes.stdout).contains("dev tapst1"),
        "up means the route is in"
    );

    // Labels changed many times: the gauges count the endpoint once.
    for i in 0..12 {
        let color = if i % 2 == 0 { "blue" } else { "red" };
        lab.calicoctl(&["apply", "-f", "-"], &wep_yaml(color));
    }
    std::thread::sleep(Duration::from_millis(500));
    let m = metrics_of(&lab, "host1");
    assert_eq!(
        metric_line(&m, "felix_active_local_endpoints"),
        "felix_active_local_endpoints 1",
        "{m}"
    );

    // An IP-in-IP pool: on a kernel without ipip that is a condition,
    // visible as a metric and on the Node (calicoctl get node -o yaml).
    let has_ipip = lab
        .exec(
            "host1",
            &[
                "bash",
                "-c",
                "ip link add tprobe type ipip && ip link del tprobe",
            ],
        )
        .status
        .success();
    lab.calicoctl(
        &["apply", "-f", "-"],
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: st-ipip\nspec:\n  cidr: 198.18.64.0/24\n  ipipMode: Always\n",
    );
    let want = if has_ipip { " 0" } else { " 1" };
    let series = "felix_dataplane_conditions{type=\"MissingKernelFeature\"}";
    eventually(&lab, "condition metric", || {
        metrics_of(&lab, "host1")
            .lines()
            .any(|l| l == format!("{series}{want}"))
            .then_some(())
    });
    let node = eventually(&lab, "condition on the Node", || {
        let yaml = lab.calicoctl(&["get", "node", "host1", "-o", "yaml"], "");
        (yaml.contains("calico-rs/dataplane-conditions") != has_ipip).then_some(yaml)
    });
    if !has_ipip {
        assert!(node.contains("st-ipip"), "{node}");
    }
    // The pool goes: so does the condition.
    lab.calicoctl(&["delete", "ippool", "st-ipip"], "");
    eventually(&lab, "condition cleared from the Node", || {
        let yaml = lab.calicoctl(&["get", "node", "host1", "-o", "yaml"], "");
        (!yaml.contains("calico-rs/dataplane-conditions")).then_some(())
    });

    // The endpoint is deleted: its status key goes.
    let name = calico_api::endpoint::workload_endpoint_name("host1", "openstack", "vm1", "tapst1");
    lab.calicoctl(&["delete", "workloadendpoint", &name, "-n", "status"], "");
    eventually(&lab, "status key of a deleted endpoint remains", || {
        get(&key).is_none().then_some(())
    });
}

/// PIDs the lab recorded: agents, workload servers, etcd, extras.
fn lab_pids(lab: &Lab) -> Vec<u32> {
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lab.dir.path().join("lab.json")).unwrap())
            .unwrap();
    let mut pids = Vec::new();
    for h in state["hosts"].as_array().unwrap() {
        pids.extend(h["agent_pid"].as_u64());
    }
    for w in state["workloads"].as_array().unwrap() {
        pids.extend(w["server_pid"].as_u64());
    }
    pids.extend(state["datastore"]["Etcd"]["pid"].as_u64());
    pids.into_iter().map(|p| p as u32).collect()
}

/// Processes (zombies included) whose command line or environment names
/// `dir`: the lab's agents carry it in CALICO_STATE_DIR.
fn processes_naming(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let read = |f: &str| std::fs::read(e.path().join(f)).unwrap_or_default();
        let text =
            String::from_utf8_lossy(&[read("cmdline"), read("environ")].concat()).into_owned();
        if text.contains(&needle) {
            found.push(format!("{name}: {}", text.replace('\0', " ")));
        }
    }
    found
}

#[test]
fn the_lab_reaps_what_it_starts() {
    if !calico_testsupport::require_root("e2e") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // `up` then `down` as separate invocations: the agents outlived `up`.
    let lab = Lab::up("rp", 2, "etcd");
    lab.add("host1", "reap", "a", "a");
    lab.add("host2", "reap", "b", "b");
    let pids = lab_pids(&lab);
    assert_eq!(pids.len(), 5, "2 agents, 2 servers, etcd");
    let t = Instant::now();
    lab.ok(&["down"]);
    let took = t.elapsed();
    let left: Vec<String> = pids
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .collect();
    assert!(left.is_empty(), "left after down (zombies?): {left:?}");
    // Stopped together, not one second each.
    assert!(took < Duration::from_secs(4), "down took {took:?}");

    // `demo` starts and stops its lab in one process.
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Command::new(common::LAB)
        .arg("--dir")
        .arg(dir.path())
        .args(["--prefix", "e2dm-", "demo"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut teardown_started = None;
    use std::io::BufRead;
    for line in std::io::BufReader::new(demo.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.contains("tearing the lab down") {
            teardown_started = Some(Instant::now());
        }
        out.push_str(&line);
        out.push('\n');
    }
    let status = demo.wait().unwrap();
    let teardown = teardown_started.map(|t| t.elapsed());
    let mut err = String::new();
    use std::io::Read;
    demo.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "demo failed:\n{out}\n{err}");
    let teardown = teardown.expect("the demo tears down");
    // 2 agents and 5 workload servers, stopped together and reaped.
    assert!(
        teardown < Duration::from_secs(3),
        "teardown took {teardown:?}"
    );
    let left = processes_naming(dir.path());
    assert!(left.is_empty(), "left after demo: {left:?}");
}
