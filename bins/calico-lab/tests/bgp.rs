//! BGP end to end, through the lab: calico-nodes in namespaces exchange
//! their workloads' routes by BGP (native routing, no encapsulation) with
//! each other and the ToR (a real BIRD), in a full mesh and through route
//! reflectors; operators' views (`calicoctl node status`, `birdc` against
//! the agent's socket) tell the truth; an agent restart loses no packet.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Lab, SERIAL};

const ALLOW_ALL: &str = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: allow-all\nspec:\n  selector: all()\n  types: [Ingress, Egress]\n  ingress:\n  - action: Allow\n  egress:\n  - action: Allow\n";

const NODE_STATUS: &str = "apiVersion: projectcalico.org/v3\nkind: CalicoNodeStatus\nmetadata:\n  name: host1-status\nspec:\n  node: host1\n  classes: [Agent, BGP, Routes]\n  updatePeriodSeconds: 5\n";

fn can_run(test: &str) -> bool {
    calico_testsupport::require_root(test)
        && calico_testsupport::require_tools(test, &[("bird", "bird2"), ("birdc", "bird2")])
}

fn socket(lab: &Lab, host: &str) -> PathBuf {
    lab.dir.path().join(host).join("run").join("bird.ctl")
}

fn birdc(sock: &std::path::Path, cmd: &str) -> String {
    let mut args = vec!["-s".to_string(), sock.display().to_string()];
    args.extend(cmd.split(' ').map(str::to_string));
    let out = Command::new("birdc")
        .args(&args)
        .output()
        .expect("birdc runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// BGP rows of `show protocols` as upstream calicoctl reads them: name
/// `(Global|Node|Mesh)_…`, proto `BGP`, then state and info.
fn bgp_rows(show_protocols: &str) -> Vec<(String, String, String)> {
    show_protocols
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let name = *cols.first()?;
            let kind = ["Mesh_", "Node_", "Global_"]
                .iter()
                .any(|p| name.starts_with(p));
            (kind && cols.get(1) == Some(&"BGP")).then(|| {
                (
                    name.to_string(),
                    cols.get(3).unwrap_or(&"").to_string(),
                    cols[5..].join(" "),
                )
            })
        })
        .collect()
}

/// Polls `cond` every 200 ms for up to `secs` seconds.
fn wait(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn routes(lab: &Lab, host: &str) -> String {
    let o = lab.exec(host, &["ip", "route", "show", "proto", "bird"]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_mesh_of_three_routes_natively_and_reports_the_truth() {
    if !can_run("a_mesh_of_three_routes_natively_and_reports_the_truth") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up_with("bm", &["--hosts", "3"]);
    lab.calicoctl(&["apply", "-f", "-"], ALLOW_ALL);
    let ips: Vec<String> = (1..=3)
        .map(|i| lab.add(&format!("host{i}"), "default", &format!("w{i}"), "w"))
        .collect();
    for from in 1..=3 {
        for (to, ip) in ips.iter().enumerate() {
            if to + 1 != from {
                lab.expect_reach(
                    &format!("default/w{from}"),
                    ip,
                    80,
                    true,
                    "native routing by BGP",
                );
            }
        }
    }
    let r1 = routes(&lab, "host1");
    assert!(
        r1.contains("via 192.0.2.12") && r1.contains("via 192.0.2.13"),
        "host1's BGP routes:\n{r1}"
    );
    assert!(!r1.contains("vxlan"), "no encapsulation: {r1}");

    let status = lab.calicoctl(&["node", "status", "--node", "host1"], "");
    assert!(status.starts_with("Calico process is running."), "{status}");
    assert_eq!(
        status.matches("node-to-node mesh | up").count(),
        2,
        "{status}"
    );
    assert!(
        status.contains("192.168.10.254 | global            | up"),
        "{status}"
    );
    assert!(status.contains("No IPv6 peers found."), "{status}");

    let shown = birdc(&socket(&lab, "host1"), "show protocols");
    assert!(
        shown.contains("name     proto    table    state  since       info"),
        "{shown}"
    );
    let rows = bgp_rows(&shown);
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "Global_192_168_10_254",
            "Mesh_192_0_2_12",
            "Mesh_192_0_2_13"
        ],
        "{shown}"
    );
    assert!(
        rows.iter().all(|r| r.1 == "up" && r.2 == "Established"),
        "{rows:?}"
    );
    let r = birdc(&socket(&lab, "host1"), "show route");
    assert!(r.contains("via 192.0.2.12 on eth0 [Mesh_192_0_2_12"), "{r}");

    // reachableBy: a static route to the ToR through the fabric's gateway,
    // as upstream's template makes it; the session stays up; it goes with
    // the field.
    let article_peer = "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: bgp-peer-1\nspec:\n  peerIP: 192.168.10.254\n  asNumber: 64512\n";
    lab.calicoctl(
        &["apply", "-f", "-"],
        &format!("{article_peer}  reachableBy: 192.0.2.1\n"),
    );
    let tor_route = |lab: &Lab| {
        routes(lab, "host1")
            .lines()
            .any(|l| l.starts_with("192.168.10.254 via 192.0.2.1"))
    };
    assert!(
        wait(15, || tor_route(&lab)),
        "static route to the ToR:\n{}",
        routes(&lab, "host1")
    );
    lab.calicoctl(&["apply", "-f", "-"], article_peer);
    assert!(
        wait(15, || !tor_route(&lab)),
        "static route gone:\n{}",
        routes(&lab, "host1")
    );
    let status = lab.calicoctl(&["node", "status", "--node", "host1"], "");
    assert!(
        status.contains("192.168.10.254 | global            | up"),
        "{status}"
    );

    // Upstream's CalicoNodeStatus: the agent fills the status it asks for.
    lab.calicoctl(&["apply", "-f", "-"], NODE_STATUS);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let out = lab.calicoctl(
            &["get", "caliconodestatus", "host1-status", "-o", "json"],
            "",
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let bgp = &v["status"]["bgp"];
        let done = bgp["numberEstablishedV4"] == 3
            && v["status"]["agent"]["birdV4"]["state"] == "Ready"
            && v["status"]["routes"]["routesV4"]
                .as_array()
                .is_some_and(|r| !r.is_empty());
        if done {
            let peers = bgp["peersV4"].as_array().unwrap();
            assert!(
                peers.iter().any(|p| p["peerIP"] == "192.0.2.12"
                    && p["type"] == "NodeMesh"
                    && p["state"] == "Established"),
                "{out}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "CalicoNodeStatus never filled:\n{out}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    // `calicoctl node routes`: what host1 announced to and learned from each peer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let out = lab.calicoctl_try(&["node", "routes", "--node", "host1"]);
        let learned = out.lines().any(|l| {
            l.starts_with("Mesh_192_0_2_12") && l.contains("learned") && l.contains("best")
        });
        let announced = out
            .lines()
            .any(|l| l.starts_with("Global_192_168_10_254") && l.contains("announced"));
        if learned && announced {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "node routes:\n{out}");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

#[test]
fn route_reflectors_carry_client_routes() {
    if !can_run("route_reflectors_carry_client_routes") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up_with("br", &["--hosts", "4", "--route-reflectors", "2"]);
    lab.calicoctl(&["apply", "-f", "-"], ALLOW_ALL);
    let a = lab.add("host3", "default", "a", "w");
    let b = lab.add("host4", "default", "b", "w");
    lab.expect_reach(
        "default/a",
        &b,
        80,
        true,
        "client to client through reflected routes",
    );
    lab.expect_reach("default/b", &a, 80, true, "and back");

    // Clients peer only with the reflectors (and the ToR), never each other.
    let status = lab.calicoctl(&["node", "status", "--node", "host3", "-o", "json"], "");
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let mut peers: Vec<&str> = v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peerIP"].as_str().unwrap())
        .collect();
    peers.sort();
    assert_eq!(
        peers,
        ["192.0.2.11", "192.0.2.12", "192.168.10.254"],
        "{status}"
    );

    // host4's block reached host3 reflected: ORIGINATOR_ID and CLUSTER_LIST set.
    let all = birdc(&socket(&lab, "host3"), "show route all");
    assert!(all.contains("BGP.originator_id: 192.0.2.14"), "{all}");
    assert!(all.contains("BGP.cluster_list: 224.0.0.1"), "{all}");
    let r3 = routes(&lab, "host3");
    assert!(
        r3.contains("via 192.0.2.14"),
        "next hop kept through the reflector:\n{r3}"
    );
}

#[test]
fn an_agent_restart_loses_no_packet() {
    if !can_run("an_agent_restart_loses_no_packet") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up_with("bg", &["--hosts", "2"]);
    lab.calicoctl(&["apply", "-f", "-"], ALLOW_ALL);
    let _a = lab.add("host1", "default", "a", "w");
    let b = lab.add("host2", "default", "b", "w");
    lab.expect_reach("default/a", &b, 80, true, "before the restarts");
    std::thread::scope(|s| {
        let pinger = s.spawn(|| {
            lab.exec(
                "default/a",
                &["ping", "-c", "150", "-i", "0.1", "-W", "1", &b],
            )
        });
        std::thread::sleep(std::time::Duration::from_secs(1));
        lab.ok(&["restart-agent", "host2"]);
        std::thread::sleep(std::time::Duration::from_secs(2));
        lab.ok(&["restart-agent", "host1"]);
        let out = pinger.join().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("150 packets transmitted, 150 received"),
            "lost pings across restarts:\n{text}\n{}",
            lab.logs()
        );
    });
    // And the sessions came back.
    let status = lab.calicoctl(&["node", "status", "--node", "host1"], "");
    assert!(status.contains("node-to-node mesh | up"), "{status}");
}
