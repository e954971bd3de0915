//! The Neutron ML2 driver `calico` end to end: Debian's neutron-server
//! (with MariaDB and Keystone; RabbitMQ in one test, no message bus in the
//! others) and the `openstack` CLI
//! driving the lab's hosts, whose calico-node programs VMs the lab boots as
//! Nova would. Root only; the lab (controller included) is torn down by a
//! guard, even when an assertion fails.

mod common;

use std::time::{Duration, Instant};

use common::{Lab, SERIAL};
use serde_json::{json, Value};

fn require(test: &str) -> bool {
    calico_testsupport::require_root(test)
        && calico_testsupport::require_tools(
            test,
            &[
                ("neutron-server", "neutron-server"),
                ("openstack", "python3-openstackclient"),
                ("mariadbd", "mariadb-server"),
                ("keystone-manage", "python3-keystone"),
                ("epmd", "rabbitmq-server"),
            ],
        )
}

/// Polls `f` until it returns true; panics with `what` after `limit`.
fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "{what} (after {limit:?})");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn agent_alive(lab: &Lab, host: &str) -> Option<bool> {
    let agents = lab.os_json(&["network", "agent", "list"]);
    agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["Host"] == host)
        .map(|a| {
            assert_eq!(a["Agent Type"], "Calico per-host agent (felix)");
            assert_eq!(a["Binary"], "calico-felix");
            a["Alive"] == Value::Bool(true)
        })
}

/// `net1` with subnet `sub1` (10.65.0.0/24); returns the network.
fn create_network(lab: &Lab) -> Value {
    let net = lab.os_json(&["network", "create", "net1"]);
    lab.os_json(&[
        "subnet",
        "create",
        "sub1",
        "--network",
        "net1",
        "--subnet-range",
        "10.65.0.0/24",
    ]);
    net
}

/// An external network `ext` (203.0.113.0/24) and a router `r1` with its
/// gateway there and an interface on `sub1`: what floating IPs need.
fn external_network(lab: &Lab) {
    lab.os_json(&[
        "network",
        "create",
        "ext",
        "--external",
        "--provider-network-type",
        "flat",
        "--provider-physical-network",
        "provider",
    ]);
    lab.os_json(&[
        "subnet",
        "create",
        "ext-sub",
        "--network",
        "ext",
        "--subnet-range",
        "203.0.113.0/24",
        "--no-dhcp",
    ]);
    lab.os_json(&["router", "create", "r1"]);
    for args in [
        &["router", "set", "r1", "--external-gateway", "ext"][..],
        &["router", "add", "subnet", "r1", "sub1"],
    ] {
        let o = lab.os(args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

/// `openstack security group rule create SG --ingress ARGS...`.
fn try_ingress_rule(lab: &Lab, sg: &str, args: &str) -> std::process::Output {
    let mut a = vec!["security", "group", "rule", "create", sg, "--ingress"];
    a.extend(args.split_whitespace());
    lab.os(&a)
}

/// `try_ingress_rule`, which must succeed; returns the rule.
fn ingress_rule(lab: &Lab, sg: &str, args: &str) -> Value {
    let o = try_ingress_rule(lab, sg, &format!("{args} -f json"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

fn port_create(lab: &Lab, name: &str, host: &str, sg: &str) -> Value {
    lab.os_json(&[
        "port",
        "create",
        name,
        "--network",
        "net1",
        "--host",
        host,
        "--device-owner",
        "compute:nova",
        "--device",
        &format!("vm-{name}"),
        "--security-group",
        sg,
    ])
}

fn port_status(lab: &Lab, port: &str) -> String {
    lab.os_json(&["port", "show", port])["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Boots VM `name` for `port`; returns its address.
fn boot(lab: &Lab, name: &str, port: &str) -> String {
    let out = lab.ok(&["boot", name, "--port", port]);
    // "vm/<name> on <host>: <ip> via <tap>"
    out.split_whitespace().nth(3).unwrap().to_string()
}

fn weps(lab: &Lab) -> Vec<Value> {
    let out = lab.calicoctl(
        &["get", "workloadendpoints", "-n", "openstack", "-o", "json"],
        "",
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

fn routes_on(lab: &Lab, host: &str) -> String {
    String::from_utf8_lossy(&lab.exec(host, &["ip", "route"]).stdout).into_owned()
}

#[test]
fn neutron_binds_ports_and_security_groups_take_effect() {
    if !require("neutron_binds_ports_and_security_groups_take_effect") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // With the article's message bus, RabbitMQ (the other tests run
    // without one): the driver needs none, and a bus changes nothing.
    let lab = Lab::openstack_up_with("os", "local", &["--message-bus", "rabbitmq"]);
    let rabbit_log = lab.dir.path().join("openstack/log/rabbit@localhost.log");
    eventually(
        "neutron-server on RabbitMQ",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(&rabbit_log)
                .is_ok_and(|t| t.contains("accepting AMQP connection"))
        },
    );

    // Every host's agent is a live Neutron agent.
    assert_eq!(agent_alive(&lab, "host1"), Some(true));
    assert_eq!(agent_alive(&lab, "host2"), Some(true));

    // A tenant network as the article's ml2_conf.ini makes it: vxlan.
    let net = create_network(&lab);
    assert_eq!(net["provider:network_type"], "vxlan");
    lab.os_json(&["security", "group", "create", "web"]);
    lab.os_json(&["security", "group", "create", "client"]);
    let http = ingress_rule(
        &lab,
        "web",
        "--protocol tcp --dst-port 80 --remote-group client",
    );

    // Ports bind on live hosts (vif tap), VMs boot, ports go ACTIVE.
    let web_port = port_create(&lab, "web-port", "host1", "web");
    assert_eq!(web_port["binding_vif_type"], "tap", "{web_port}");
    let client_port = port_create(&lab, "client-port", "host2", "client");
    assert_eq!(client_port["binding_vif_type"], "tap");
    let web_ip = boot(&lab, "web", web_port["id"].as_str().unwrap());
    let client_ip = boot(&lab, "client", client_port["id"].as_str().unwrap());
    for p in ["web-port", "client-port"] {
        eventually(&format!("{p} ACTIVE"), Duration::from_secs(60), || {
            port_status(&lab, p) == "ACTIVE"
        });
    }

    // Traffic exactly as the security groups say.
    lab.expect_reach(
        "vm/client",
        &web_ip,
        80,
        true,
        "web allows http from client",
    );
    lab.expect_reach("vm/client", &web_ip, 22, false, "web has no ssh rule");
    lab.expect_reach(
        "vm/web",
        &client_ip,
        80,
        false,
        "client has no ingress rules",
    );

    // A rule added on the running VM takes effect, and a removed one stops.
    ingress_rule(
        &lab,
        "web",
        "--protocol tcp --dst-port 22 --remote-group client",
    );
    lab.expect_reach("vm/client", &web_ip, 22, true, "ssh rule added");
    let o = lab.os(&[
        "security",
        "group",
        "rule",
        "delete",
        http["id"].as_str().unwrap(),
    ]);
    assert!(o.status.success());
    lab.expect_reach("vm/client", &web_ip, 80, false, "http rule removed");

    // Membership: a port joining a group carries its label (and so its
    // policy), and leaving drops it.
    let client_sg = lab.os_json(&["security", "group", "show", "client"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let label = format!("sg.projectcalico.org/openstack-{client_sg}");
    let web_labels = |lab: &Lab| {
        weps(lab)
            .iter()
            .find(|e| e["spec"]["endpoint"] == web_port["id"])
            .map(|e| e["metadata"]["labels"].clone())
            .unwrap_or(Value::Null)
    };
    assert!(lab
        .os(&["port", "set", "web-port", "--security-group", "client"])
        .status
        .success());
    eventually("web-port joins client", Duration::from_secs(20), || {
        web_labels(&lab).get(&label).is_some()
    });
    assert!(lab
        .os(&["port", "unset", "web-port", "--security-group", "client"])
        .status
        .success());
    eventually("web-port leaves client", Duration::from_secs(20), || {
        web_labels(&lab).get(&label).is_none()
    });

    // A floating IP (an external network, a router as the article's
    // service_plugins = router gives) becomes the endpoint's ipNATs, and
    // goes with it.
    external_network(&lab);
    let fip = lab.os_json(&["floating", "ip", "create", "ext", "--port", "web-port"]);
    let fip_addr = fip["floating_ip_address"].as_str().unwrap().to_string();
    let nats = |lab: &Lab| {
        weps(lab)
            .iter()
            .find(|e| e["spec"]["endpoint"] == web_port["id"])
            .map(|e| e["spec"]["ipNATs"].clone())
            .unwrap_or(Value::Null)
    };
    eventually("the floating IP in ipNATs", Duration::from_secs(20), || {
        nats(&lab) == json!([{"internalIP": web_ip, "externalIP": fip_addr}])
    });
    assert!(lab
        .os(&["floating", "ip", "delete", fip["id"].as_str().unwrap()])
        .status
        .success());
    eventually(
        "no ipNATs once the floating IP is gone",
        Duration::from_secs(20),
        || nats(&lab).is_null(),
    );

    // What Calico cannot express is refused, with the reason, and nothing
    // of it is written.
    let policies = |lab: &Lab| {
        let t = lab.calicoctl(
            &["get", "networkpolicies", "-n", "openstack", "-o", "json"],
            "",
        );
        serde_json::from_str::<Value>(&t).unwrap()["items"].clone()
    };
    let before = policies(&lab);
    lab.os_json(&[
        "address",
        "group",
        "create",
        "ag1",
        "--address",
        "10.9.0.0/16",
    ]);
    let o = try_ingress_rule(&lab, "web", "--remote-address-group ag1");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("calico cannot express"),
        "{err}"
    );
    assert_eq!(policies(&lab), before, "a refused rule changes no policy");
    // A port whose data cannot be translated (an address pair wider than a
    // host) goes ERROR and keeps its last good endpoint; fixed, it recovers.
    let wep_before = weps(&lab);
    let o = lab.os(&[
        "port",
        "set",
        "web-port",
        "--allowed-address",
        "ip-address=10.66.0.0/24",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    eventually("web-port ERROR", Duration::from_secs(20), || {
        port_status(&lab, "web-port") == "ERROR"
    });
    assert_eq!(
        weps(&lab),
        wep_before,
        "nothing of the bad port was written"
    );
    let o = lab.os(&["port", "set", "web-port", "--no-allowed-address"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    eventually("web-port ACTIVE again", Duration::from_secs(20), || {
        port_status(&lab, "web-port") == "ACTIVE"
    });

    // A port moved to another host: Nova moves the VM, the endpoint follows.
    lab.ok(&["delete-vm", "web"]);
    let o = lab.os(&["port", "set", "web-port", "--host", "host2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    eventually(
        "the endpoint moves to host2",
        Duration::from_secs(20),
        || {
            let w = weps(&lab);
            w.iter()
                .any(|e| e["spec"]["endpoint"] == web_port["id"] && e["spec"]["node"] == "host2")
                && !w.iter().any(|e| e["spec"]["node"] == "host1")
        },
    );
    let web_ip2 = boot(&lab, "web", web_port["id"].as_str().unwrap());
    assert_eq!(web_ip, web_ip2);
    eventually("web-port ACTIVE on host2", Duration::from_secs(60), || {
        port_status(&lab, "web-port") == "ACTIVE"
    });
    lab.expect_reach("vm/client", &web_ip, 22, true, "ssh after the move");

    // A deleted port takes its endpoint, route and rules with it.
    let client_tap = format!("tap{}", &client_port["id"].as_str().unwrap()[..11]);
    let ruleset = |lab: &Lab| {
        String::from_utf8_lossy(&lab.exec("host2", &["nft", "list", "ruleset"]).stdout).into_owned()
    };
    assert!(
        ruleset(&lab).contains(&client_tap),
        "the client's rules are in host2's kernel"
    );
    lab.ok(&["delete-vm", "client"]);
    let o = lab.os(&["port", "delete", "client-port"]);
    assert!(o.status.success());
    eventually(
        "the client endpoint is gone",
        Duration::from_secs(20),
        || {
            !weps(&lab)
                .iter()
                .any(|e| e["spec"]["endpoint"] == client_port["id"])
        },
    );
    let dst = format!("{client_ip} ");
    eventually(
        "no rules for the deleted port",
        Duration::from_secs(20),
        || !ruleset(&lab).contains(&client_tap),
    );
    eventually(
        "no host routes to the deleted port",
        Duration::from_secs(20),
        || {
            ["host1", "host2"]
                .iter()
                .all(|h| !routes_on(&lab, h).lines().any(|l| l.starts_with(&dst)))
        },
    );

    // An agent that stops goes dead in Neutron, and no port binds there;
    // started again, it is alive and binds.
    lab.ok(&["stop-agent", "host1"]);
    eventually("host1's agent dead", Duration::from_secs(60), || {
        agent_alive(&lab, "host1") == Some(false)
    });
    let refused = port_create(&lab, "late-port", "host1", "web");
    assert_eq!(refused["binding_vif_type"], "binding_failed", "{refused}");
    lab.ok(&["start-agent", "host1"]);
    eventually("host1's agent alive again", Duration::from_secs(60), || {
        agent_alive(&lab, "host1") == Some(true)
    });
    let bound = port_create(&lab, "later-port", "host1", "web");
    assert_eq!(bound["binding_vif_type"], "tap", "{bound}");

    // `down` leaves no process of the controller behind (Keystone,
    // RabbitMQ and its Erlang VM included).
    let fabric = format!("{}fabric", lab.prefix);
    let out = std::process::Command::new("ip")
        .args(["netns", "pids", &fabric])
        .output()
        .unwrap();
    let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert!(pids.len() > 5, "the controller's processes: {pids:?}");
    lab.ok(&["down"]);
    let left: Vec<String> = pids
        .iter()
        .filter_map(|p| std::fs::read(format!("/proc/{p}/cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .collect();
    assert!(left.is_empty(), "left running after down: {left:?}");
}

/// `calico-resync --json` with the first server's configuration.
fn calico_resync(lab: &Lab) -> Value {
    let dir = lab.dir.path().join("openstack");
    let shim = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openstack");
    let o = lab.in_fabric(&[
        "env",
        &format!("PYTHONPATH={shim}"),
        "calico-resync",
        "--json",
        "--config-file",
        dir.join("neutron-9696.conf").to_str().unwrap(),
        "--config-file",
        dir.join("ml2_conf.ini").to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "calico-resync: {stdout}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_str(&stdout).unwrap()
}

/// The project labels of the endpoint of the VM `device`.
fn project_labels(lab: &Lab, device: &str) -> Option<(Value, Value, Value)> {
    let wep = weps(lab)
        .into_iter()
        .find(|w| w["spec"]["workload"] == device)?;
    let label =
        |k: &str| wep["metadata"]["labels"][format!("projectcalico.org/openstack-{k}")].clone();
    Some((
        label("project-id"),
        label("project-name"),
        label("project-parent-id"),
    ))
}

/// Keystone's names, through the driver's `[keystone_authtoken]` (as
/// upstream): a port of a project within a project is labelled with the
/// project's name and its parent's id; a renamed project gets its new
/// (sanitised) name at the next resync.
fn keystone_projects_name_endpoints(lab: &Lab) {
    let demo = lab.os_json(&["project", "create", "demo"]);
    let web = lab.os_json(&["project", "create", "--parent", "demo", "demo-web"]);
    lab.os_json(&[
        "port",
        "create",
        "pd",
        "--network",
        "net1",
        "--project",
        "demo-web",
        "--host",
        "host2",
        "--device-owner",
        "compute:nova",
        "--device",
        "vm-pd",
    ]);
    let expected = |name: &str| Some((web["id"].clone(), json!(name), demo["id"].clone()));
    eventually(
        "the endpoint names its project",
        Duration::from_secs(20),
        || project_labels(lab, "vm-pd") == expected("demo-web"),
    );
    // The other endpoints are the admin's, a top-level project (parent:
    // the domain).
    let admin = weps(lab)
        .into_iter()
        .find(|w| w["spec"]["workload"] == "vm-p0")
        .expect("p0's endpoint");
    assert_eq!(
        admin["metadata"]["labels"]["projectcalico.org/openstack-project-name"],
        "admin"
    );
    assert_eq!(
        admin["metadata"]["labels"]["projectcalico.org/openstack-project-parent-id"],
        "default"
    );

    lab.ok(&["os", "project", "set", "--name", "demo web!", "demo-web"]);
    let report = calico_resync(lab);
    assert_eq!(report["endpoints"]["updated"], 1, "{report}");
    assert_eq!(project_labels(lab, "vm-pd"), expected("demo_web"));
}

/// The driver's data as compared across a resync: names, labels and specs
/// (revisions and timestamps aside).
fn driver_data(lab: &Lab) -> Vec<Value> {
    let mut out = Vec::new();
    for kind in ["workloadendpoints", "networkpolicies"] {
        let text = lab.calicoctl(&["get", kind, "-n", "openstack", "-o", "json"], "");
        let v: Value = serde_json::from_str(&text).unwrap();
        for item in v["items"].as_array().cloned().unwrap_or_default() {
            let name = item["metadata"]["name"].as_str().unwrap_or("");
            if kind == "networkpolicies" && !name.starts_with("ossg.default.") {
                continue;
            }
            out.push(json!({
                "kind": item["kind"], "name": item["metadata"]["name"],
                "labels": item["metadata"]["labels"], "spec": item["spec"],
            }));
        }
    }
    out.sort_by_key(|v| v.to_string());
    out
}

fn etcd_get(lab: &Lab, key: &str) -> String {
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(lab.dir.path().join("lab.json")).unwrap())
            .unwrap();
    let endpoint = state["datastore"]["Etcd"]["endpoint"]
        .as_str()
        .unwrap()
        .to_string();
    let o = lab.in_fabric(&[
        "etcdctl",
        "--endpoints",
        &endpoint,
        "get",
        key,
        "--print-value-only",
    ]);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

const ELECTION_KEY: &str = "/calico/openstack/v2/no-region/neutron_election";

#[test]
fn resync_repairs_the_datastore_and_one_leader_is_elected() {
    if !require("resync_repairs_the_datastore_and_one_leader_is_elected") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::openstack_up("or", "etcd");

    create_network(&lab);
    let web = lab.os_json(&["security", "group", "create", "web"]);
    lab.os_json(&["security", "group", "create", "db"]);
    ingress_rule(&lab, "web", "--protocol tcp --dst-port 80");
    for i in 0..6 {
        let p = port_create(
            &lab,
            &format!("p{i}"),
            ["host1", "host2"][i % 2],
            ["web", "db"][i % 3 / 2],
        );
        assert_eq!(p["binding_vif_type"], "tap");
    }
    // One with several addresses and address pairs in two subnets and two
    // groups: resync reads Neutron's tables and must build exactly the
    // endpoint the live path built (order included).
    lab.os_json(&[
        "subnet",
        "create",
        "sub2",
        "--network",
        "net1",
        "--subnet-range",
        "10.66.0.0/24",
    ]);
    lab.os_json(&[
        "port",
        "create",
        "pm",
        "--network",
        "net1",
        "--host",
        "host1",
        "--device-owner",
        "compute:nova",
        "--device",
        "vm-pm",
        "--security-group",
        "web",
        "--security-group",
        "db",
        "--fixed-ip",
        "subnet=sub2",
        "--fixed-ip",
        "subnet=sub1",
        "--allowed-address",
        "ip-address=10.65.0.250",
        "--allowed-address",
        "ip-address=10.65.0.9",
    ]);
    eventually("seven endpoints", Duration::from_secs(20), || {
        weps(&lab).len() == 7
    });
    let before = driver_data(&lab);
    // An operator's own policy in the same namespace: not the driver's.
    lab.calicoctl(
        &["apply", "-f", "-"],
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: operator-allow\n  namespace: openstack\nspec:\n  selector: all()\n  ingress:\n  - action: Allow\n    protocol: TCP\n",
    );
    let operator_rv = |lab: &Lab| {
        let t = lab.calicoctl(
            &[
                "get",
                "networkpolicy",
                "-n",
                "openstack",
                "operator-allow",
                "-o",
                "json",
            ],
            "",
        );
        serde_json::from_str::<Value>(&t).unwrap()["metadata"]["resourceVersion"].clone()
    };
    let rv = operator_rv(&lab);

    // Behind the driver's back: half the endpoints deleted, a policy
    // corrupted.
    for w in weps(&lab).iter().take(3) {
        lab.calicoctl(
            &[
                "delete",
                "workloadendpoint",
                "-n",
                "openstack",
                w["metadata"]["name"].as_str().unwrap(),
            ],
            "",
        );
    }
    let name = format!("ossg.default.{}", web["id"].as_str().unwrap());
    lab.calicoctl(
        &["apply", "-f", "-"],
        &format!("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: openstack\nspec:\n  selector: all()\n  ingress:\n  - action: Allow\n"),
    );
    assert_ne!(driver_data(&lab), before);

    let report = calico_resync(&lab);
    assert_eq!(report["endpoints"]["created"], 3, "{report}");
    assert_eq!(report["policies"]["updated"], 1, "{report}");
    assert_eq!(report["endpoints"]["updated"], 0, "{report}");
    assert_eq!(report["ports"], 7);
    assert_eq!(driver_data(&lab), before, "everything is back as it was");
    assert_eq!(operator_rv(&lab), rv, "the operator's policy is untouched");

    keystone_projects_name_endpoints(&lab);

    // Two neutron-servers on one datastore: one leader; when it stops, the
    // other takes over, and keeps the agents alive in Neutron.
    let leader = etcd_get(&lab, ELECTION_KEY);
    assert!(leader.contains(':'), "leader {leader:?}");
    lab.ok(&["neutron-server", "start", "--port", "9697"]);
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        etcd_get(&lab, ELECTION_KEY),
        leader,
        "the first leader stays"
    );
    // Behind the driver's back again: the next leader's resync on taking
    // over repairs it.
    let gone = weps(&lab)[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    lab.calicoctl(
        &["delete", "workloadendpoint", "-n", "openstack", &gone],
        "",
    );
    lab.ok(&["neutron-server", "stop", "--port", "9696"]);
    eventually("the second server leads", Duration::from_secs(30), || {
        let now = etcd_get(&lab, ELECTION_KEY);
        !now.is_empty() && now != leader
    });
    eventually(
        "the new leader's resync restores the endpoint",
        Duration::from_secs(20),
        || {
            weps(&lab)
                .iter()
                .any(|e| e["metadata"]["name"] == gone.as_str())
        },
    );
    std::thread::sleep(Duration::from_secs(20));
    let out = lab.ok(&[
        "os",
        "--api-port",
        "9697",
        "network",
        "agent",
        "list",
        "-f",
        "json",
    ]);
    let agents: Value = serde_json::from_str(&out).unwrap();
    for a in agents.as_array().unwrap() {
        assert_eq!(a["Alive"], true, "heartbeats from the new leader: {a}");
    }
}

/// The fabric's (the outside's) next hop for `addr`, if it has a route.
fn fabric_next_hop(lab: &Lab, addr: &str) -> Option<String> {
    let out = lab.in_fabric(&["ip", "route", "show", addr]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    words.find(|w| *w == "via")?;
    words.next().map(str::to_string)
}

/// Whether the outside (the fabric) connects to `target` (ADDR:PORT).
fn outside_reaches(lab: &Lab, target: &str) -> bool {
    let probe = common::sibling("calico-probe");
    let out = lab.in_fabric(&[
        probe.to_str().unwrap(),
        "tcp",
        target,
        "--timeout-ms",
        "1000",
    ]);
    out.status.success()
}

/// What VM `vm` reads at 169.254.169.254, or why it could not.
fn metadata(lab: &Lab, vm: &str) -> Result<Value, String> {
    let me = common::sibling("calico-lab");
    let out = lab.exec(
        &format!("vm/{vm}"),
        &[
            me.to_str().unwrap(),
            "internal-http-get",
            "169.254.169.254:80",
            "/openstack/latest/meta_data.json",
        ],
    );
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

#[test]
fn vms_boot_by_dhcp_read_metadata_and_are_reached_by_floating_ip() {
    if !require("vms_boot_by_dhcp_read_metadata_and_are_reached_by_floating_ip") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::openstack_up("vs", "local");
    create_network(&lab);
    lab.os_json(&["security", "group", "create", "public-web"]);
    ingress_rule(&lab, "public-web", "--protocol tcp --dst-port 80");
    let a_port = port_create(&lab, "a-port", "host1", "public-web");
    let b_port = port_create(&lab, "b-port", "host2", "public-web");

    // DHCP: `boot` plugs the VM and waits for its lease, which must be
    // the port's address (it fails otherwise).
    let a_ip = boot(&lab, "a", a_port["id"].as_str().unwrap());
    assert_eq!(a_ip, a_port["fixed_ips"][0]["ip_address"].as_str().unwrap());
    boot(&lab, "b", b_port["id"].as_str().unwrap());
    let lease = std::fs::read_to_string(lab.dir.path().join("vm-a.dhcp")).unwrap();
    let mtu = std::fs::read_to_string(lab.dir.path().join("host1/mtu")).unwrap();
    for want in [
        "new_routers=10.65.0.1".to_string(),
        format!("new_interface_mtu={}", mtu.trim()),
        format!("new_host_name=host-{}", a_ip.replace('.', "-")),
        "new_domain_name=openstacklocal".to_string(),
    ] {
        assert!(lease.contains(&want), "{want} in the lease:\n{lease}");
    }

    // Metadata: the instance's own, through Felix's DNAT, once its port is
    // programmed (Nova starts the VM after that); refused when
    // FelixConfiguration turns it off.
    for p in ["a-port", "b-port"] {
        eventually(&format!("{p} ACTIVE"), Duration::from_secs(60), || {
            port_status(&lab, p) == "ACTIVE"
        });
    }
    let m = metadata(&lab, "a").unwrap();
    assert_eq!(m["name"], "a", "{m}");
    assert_eq!(m["uuid"], a_port["device_id"], "{m}");
    lab.calicoctl(
        &[
            "patch",
            "felixconfiguration",
            "default",
            "-p",
            r#"{"spec":{"metadataAddr":"none"}}"#,
        ],
        "",
    );
    eventually("metadata refused when off", Duration::from_secs(20), || {
        metadata(&lab, "a").is_err()
    });

    // A floating IP: announced by its VM's host, reached from outside,
    // the VM's traffic leaves with it; moved, its route follows; deleted,
    // it goes.
    external_network(&lab);
    let fip = lab.os_json(&["floating", "ip", "create", "ext", "--port", "a-port"]);
    let addr = fip["floating_ip_address"].as_str().unwrap().to_string();
    let fip_id = fip["id"].as_str().unwrap().to_string();
    eventually(
        "the outside routes the floating IP to host1",
        Duration::from_secs(30),
        || fabric_next_hop(&lab, &addr).as_deref() == Some("192.0.2.11"),
    );
    assert!(
        outside_reaches(&lab, &format!("{addr}:80")),
        "outside -> {addr}:80 (VM a)"
    );
    let log = lab.ok(&["serve-external", "--port", "7000"]);
    let log = log.trim().rsplit(' ').next().unwrap().to_string();
    lab.expect_reach("vm/a", "192.0.2.1", 7000, true, "a reaches the outside");
    let seen = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        seen.lines()
            .any(|l| l.starts_with("CONN tcp from") && l.contains(&addr)),
        "the outside sees a's floating IP {addr}:\n{seen}"
    );
    assert!(lab
        .os(&["floating", "ip", "set", "--port", "b-port", &fip_id])
        .status
        .success());
    eventually(
        "the route follows to host2",
        Duration::from_secs(30),
        || fabric_next_hop(&lab, &addr).as_deref() == Some("192.0.2.12"),
    );
    assert!(
        outside_reaches(&lab, &format!("{addr}:80")),
        "outside -> {addr}:80 (VM b)"
    );
    assert!(lab
        .os(&["floating", "ip", "delete", &fip_id])
        .status
        .success());
    eventually(
        "the floating IP's route gone",
        Duration::from_secs(30),
        || fabric_next_hop(&lab, &addr).is_none(),
    );
    assert!(
        !outside_reaches(&lab, &format!("{addr}:80")),
        "nothing answers at {addr}"
    );
}
