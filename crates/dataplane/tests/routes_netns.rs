//! Real-kernel tests of the routing managers (needs root, `ip`, `bridge`
//! and `ping`; each test skips with a message otherwise).
//!
//! How the managers run inside a namespace: network-namespace membership is
//! per thread, so each simulated host gets a dedicated worker thread that
//! enters the namespace with setns(2) (and checks that it did before doing
//! anything else). The managers are created and driven on that thread, so
//! their netlink sockets belong to the namespace and `/proc/sys/net`
//! resolves to its parameters. Topology set-up and inspection run on the
//! test thread with `ip -n` / `ip netns exec`.
//!
//! Safety: only namespaces created here (`crt-<pid>-...`) are changed;
//! addresses come only from 198.18.0.0/15 and 192.0.2.0/24. A guard
//! deletes the namespaces and kills spawned processes (by PID) even when a
//! test panics, and each test checks that the root namespace gained no
//! Calico device.

use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use calico_calc::model::{
    Encap, EndpointKey, EndpointToHostAction, HostConfig, LocalEndpoint, Pool, Route, RouteTarget,
    Update, Vtep,
};
use calico_dataplane::condition::{Condition, KernelFeature, PendingReason};
use calico_dataplane::netlink::{parse_mac, RtNetlink};
use calico_dataplane::routing::{Routing, RoutingConfig};
use calico_dataplane::sysctl::ProcSysctl;
use calico_dataplane::Manager;
use serde_json::Value;

type Kernel = Routing<RtNetlink, ProcSysctl>;

// ---------------------------------------------------------------- helpers

fn run(cmd: &[&str]) -> Output {
    Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"))
}

/// Runs a command that must succeed; returns stdout.
fn sh(cmd: &[&str]) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(cmd: &[&str]) -> Value {
    let s = sh(cmd);
    if s.trim().is_empty() {
        return Value::Array(vec![]);
    }
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{cmd:?}: bad JSON {e}: {s}"))
}

/// Root and the tools; otherwise skipped (failed under CI=true).
fn environment_ok(test: &str) -> bool {
    let tools = [
        ("ip", "iproute2"),
        ("bridge", "iproute2"),
        ("ping", "iputils-ping"),
    ];
    calico_testsupport::require_root(test) && calico_testsupport::require_tools(test, &tools)
}

fn root_links() -> Vec<String> {
    json(&["ip", "-j", "link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

/// Namespaces and processes of one test; removed on drop (also on panic).
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    root_links_before: Vec<String>,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        Lab {
            prefix: format!("crt-{}-{tag}", std::process::id()),
            namespaces: Vec::new(),
            children: Vec::new(),
            root_links_before: root_links(),
        }
    }

    fn ns(&mut self, role: &str) -> String {
        let name = format!("{}-{role}", self.prefix);
        sh(&["ip", "netns", "add", &name]);
        self.namespaces.push(name.clone());
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A host namespace (uplinks come from `link_hosts`).
    fn host(&mut self, role: &str) -> String {
        self.ns(role)
    }

    /// Connects two hosts' `eth1` and gives each a default route via the
    /// other (proxy ARP answers only with a route via another interface).
    fn link_hosts(&self, h1: &str, a1: &str, h2: &str, a2: &str) {
        sh(&[
            "ip", "link", "add", "eth1", "netns", h1, "type", "veth", "peer", "name", "eth1",
            "netns", h2,
        ]);
        for (h, a, other) in [(h1, a1, a2), (h2, a2, a1)] {
            sh(&[
                "ip",
                "-n",
                h,
                "addr",
                "add",
                &format!("{a}/24"),
                "dev",
                "eth1",
            ]);
            sh(&["ip", "-n", h, "link", "set", "eth1", "up"]);
            sh(&[
                "ip", "-n", h, "route", "add", "default", "via", other, "dev", "eth1",
            ]);
        }
    }

    /// A workload namespace with `eth0` = `addr`/32, attached to `host` via
    /// `tap` (what the orchestrator does: Calico style fake gateway).
    fn workload(&mut self, role: &str, host: &str, tap: &str, addr: &str) -> String {
        let w = self.ns(role);
        sh(&[
            "ip", "link", "add", "eth0", "netns", &w, "type", "veth", "peer", "name", tap, "netns",
            host,
        ]);
        sh(&[
            "ip",
            "-n",
            &w,
            "addr",
            "add",
            &format!("{addr}/32"),
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", &w, "link", "set", "eth0", "up"]);
        sh(&[
            "ip",
            "-n",
            &w,
            "route",
            "add",
            "169.254.1.1",
            "dev",
            "eth0",
            "scope",
            "link",
        ]);
        sh(&[
            "ip",
            "-n",
            &w,
            "route",
            "add",
            "default",
            "via",
            "169.254.1.1",
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", host, "link", "set", tap, "up"]);
        w
    }

    fn spawn(&mut self, cmd: &[&str]) -> usize {
        let child = Command::new(cmd[0])
            .args(&cmd[1..])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        self.children.push(child);
        self.children.len() - 1
    }

    fn wait(&mut self, idx: usize) -> String {
        let child = &mut self.children[idx];
        let mut out = String::new();
        use std::io::Read;
        if let Some(mut s) = child.stdout.take() {
            s.read_to_string(&mut out).unwrap();
        }
        child.wait().unwrap();
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            // Kill by PID (only our own children), then reap.
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = run(&["ip", "netns", "del", ns]);
        }
        if !std::thread::panicking() {
            let now = root_links();
            for l in &now {
                assert!(
                    self.root_links_before.contains(l)
                        || !(l.starts_with("tap") || l == "vxlan.calico"),
                    "root namespace gained link {l}"
                );
            }
        }
    }
}

type Job = Box<dyn FnOnce(&mut Option<Kernel>) + Send>;

/// A thread inside a network namespace, owning the managers of one host.
struct NsWorker {
    tx: Option<mpsc::Sender<Job>>,
    handle: Option<JoinHandle<()>>,
}

fn enter_netns(ns: &str) -> Result<(), String> {
    let path = format!("/var/run/netns/{ns}");
    let f = std::fs::File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("setns {path}: {e}"))?;
    // Verify before anything touches the kernel: this thread's namespace
    // is the target, and not the root namespace.
    let me = std::fs::metadata("/proc/thread-self/ns/net").map_err(|e| e.to_string())?;
    let target = std::fs::metadata(&path).map_err(|e| e.to_string())?;
    // `/proc/self` is the main thread, which stays in the test's namespace.
    let home = std::fs::metadata("/proc/self/ns/net").map_err(|e| e.to_string())?;
    if (me.dev(), me.ino()) != (target.dev(), target.ino()) || me.ino() == home.ino() {
        return Err(format!("thread is not in namespace {ns}"));
    }
    Ok(())
}

impl NsWorker {
    fn spawn(ns: &str) -> NsWorker {
        let ns = ns.to_string();
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let handle = std::thread::spawn(move || {
            let entered = enter_netns(&ns);
            let ok = entered.is_ok();
            ready_tx.send(entered).unwrap();
            if !ok {
                return;
            }
            let mut slot: Option<Kernel> = None;
            for job in rx {
                job(&mut slot);
            }
        });
        ready_rx.recv().unwrap().expect("enter namespace");
        NsWorker {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Option<Kernel>) -> T + Send + 'static,
    ) -> T {
        let (rtx, rrx) = mpsc::channel();
        self.tx
            .as_ref()
            .unwrap()
            .send(Box::new(move |slot: &mut Option<Kernel>| {
                let r = catch_unwind(AssertUnwindSafe(|| f(slot)));
                let _ = rtx.send(r);
            }))
            .unwrap();
        match rrx.recv().unwrap() {
            Ok(v) => v,
            Err(p) => resume_unwind(p),
        }
    }

    /// (Re)creates the managers, feeds `updates`, applies; returns writes.
    fn start(&self, node: &str, state_dir: &std::path::Path, updates: Vec<Update>) -> usize {
        let mut cfg = RoutingConfig::new(node);
        cfg.state_dir = state_dir.to_path_buf();
        self.run(move |slot| {
            let mut k = Routing::kernel(cfg).expect("netlink");
            for u in &updates {
                k.on_update(u);
            }
            let w = k.apply().expect("apply").writes;
            *slot = Some(k);
            w
        })
    }

    fn update(&self, updates: Vec<Update>) -> usize {
        self.run(move |slot| {
            let k = slot.as_mut().unwrap();
            for u in &updates {
                k.on_update(u);
            }
            k.apply().expect("apply").writes
        })
    }

    fn resync_apply(&self) -> usize {
        self.run(|slot| {
            let k = slot.as_mut().unwrap();
            k.resync();
            k.apply().expect("apply").writes
        })
    }

    fn conditions(&self) -> Vec<Condition> {
        self.run(|slot| slot.as_ref().unwrap().conditions())
    }
}

impl Drop for NsWorker {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------- model input

fn config() -> Update {
    Update::Config(HostConfig {
        interface_prefixes: vec!["tap".into()],
        default_endpoint_to_host_action: EndpointToHostAction::Drop,
        failsafe_inbound: vec![],
        failsafe_outbound: vec![],
        vxlan_vni: 4096,
        vxlan_port: 4789,
        vxlan_mtu: 0,
        log_prefix: "calico-packet".into(),
        metadata: None,
    })
}

fn pools(vxlan: Encap, ipip_pool: bool) -> Update {
    let mut v = vec![Pool {
        name: "pool-vx".into(),
        cidr: "198.18.0.0/16".parse().unwrap(),
        nat_outgoing: false,
        vxlan,
        ipip: Encap::Never,
        disabled: false,
    }];
    if ipip_pool {
        v.push(Pool {
            name: "pool-ipip".into(),
            cidr: "198.19.0.0/16".parse().unwrap(),
            nat_outgoing: false,
            vxlan: Encap::Never,
            ipip: Encap::Always,
            disabled: false,
        });
    }
    Update::Pools(v)
}

fn endpoint(name: &str, iface: &str, addr: &str) -> Update {
    Update::EndpointUpsert(Arc::new(LocalEndpoint {
        key: EndpointKey {
            namespace: "openstack".into(),
            name: name.into(),
        },
        iface: iface.into(),
        mac: None,
        addrs: vec![format!("{addr}/32").parse().unwrap()],
        allow_spoofed: vec![],
        tiers: vec![],
        profiles: vec![],
        nats: vec![],
    }))
}

fn route(dst: &str, target: RouteTarget) -> Update {
    Update::RouteUpsert(Route {
        dst: dst.parse().unwrap(),
        target,
    })
}

fn vteps() -> Vec<Update> {
    vec![
        Update::VtepUpsert(Vtep {
            node: "node1".into(),
            node_ip: "192.0.2.1".parse().unwrap(),
            tunnel_ip: "198.18.1.0".parse().unwrap(),
            mac: "66:00:00:00:00:01".into(),
        }),
        Update::VtepUpsert(Vtep {
            node: "node2".into(),
            node_ip: "192.0.2.2".parse().unwrap(),
            tunnel_ip: "198.18.2.0".parse().unwrap(),
            mac: "66:00:00:00:00:02".into(),
        }),
    ]
}

/// Host n (1 or 2): its endpoints, its block's blackhole, the other host's
/// block over VXLAN.
fn host_updates(n: u8, workloads: &[(&str, &str, &str)], vxlan: Encap) -> Vec<Update> {
    let other = 3 - n;
    let mut u = vec![config(), pools(vxlan, false)];
    u.extend(vteps());
    for (name, tap, addr) in workloads {
        u.push(endpoint(name, tap, addr));
    }
    u.push(route(&format!("198.18.{n}.0/26"), RouteTarget::Blackhole));
    u.push(route(
        &format!("198.18.{other}.0/26"),
        RouteTarget::Vxlan {
            gateway: Ipv4Addr::new(198, 18, other, 0),
        },
    ));
    u.push(Update::InSync);
    u
}

fn ping(w: &str, dst: &str) -> bool {
    run(&[
        "ip", "netns", "exec", w, "ping", "-c", "3", "-i", "0.2", "-W", "2", dst,
    ])
    .status
    .success()
}

fn proto80_routes(ns: &str) -> Vec<Value> {
    json(&["ip", "-n", ns, "-j", "route", "show", "proto", "80"])
        .as_array()
        .unwrap()
        .clone()
}

fn find_route<'a>(routes: &'a [Value], dst: &str) -> Option<&'a Value> {
    routes.iter().find(|r| r["dst"] == dst)
}

fn sysctl(ns: &str, path: &str) -> String {
    sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "cat",
        &format!("/proc/sys/{path}"),
    ])
    .trim()
    .to_string()
}

// ---------------------------------------------------------------- tests

#[test]
fn workload_routes_sysctls_and_ping() {
    if !environment_ok("workload_routes_sysctls_and_ping") {
        return;
    }
    let root_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let mut lab = Lab::new("wl");
    let h1 = lab.host("h1");
    let h2 = lab.host("h2");
    lab.link_hosts(&h1, "192.0.2.1", &h2, "192.0.2.2");
    let wa = lab.workload("wa", &h1, "tapwa", "198.18.1.1");
    let _wb = lab.workload("wb", &h1, "tapwb", "198.18.1.2");
    // (No ping before the managers run: a failed ARP for the fake gateway
    // would leave the workload's neighbour entry FAILED for a while.)
    assert!(proto80_routes(&h1).is_empty());

    let state = tempfile::tempdir().unwrap();
    let worker = NsWorker::spawn(&h1);
    let wl = [("wa", "tapwa", "198.18.1.1"), ("wb", "tapwb", "198.18.1.2")];
    let writes = worker.start("node1", state.path(), host_updates(1, &wl, Encap::Never));
    assert!(writes > 0);

    let routes = proto80_routes(&h1);
    for (tap, ip) in [("tapwa", "198.18.1.1"), ("tapwb", "198.18.1.2")] {
        let r = find_route(&routes, ip).unwrap_or_else(|| panic!("route {ip}: {routes:?}"));
        assert_eq!(r["dev"], tap);
        assert_eq!(r["scope"], "link");
        for (p, v) in [
            ("net/ipv4/conf/{}/proxy_arp", "1"),
            ("net/ipv4/neigh/{}/proxy_delay", "0"),
            ("net/ipv4/conf/{}/forwarding", "1"),
            ("net/ipv4/conf/{}/route_localnet", "1"),
        ] {
            assert_eq!(sysctl(&h1, &p.replace("{}", tap)), v, "{p} on {tap}");
        }
    }
    let bh = find_route(&routes, "198.18.1.0/26").expect("blackhole");
    assert_eq!(bh["type"], "blackhole");
    assert_eq!(sysctl(&h1, "net/ipv4/ip_forward"), "1");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        root_forward,
        "root namespace untouched"
    );
    // No VXLAN pool: no device, the remote block's route waits for it.
    assert!(
        run(&["ip", "-n", &h1, "link", "show", "vxlan.calico"])
            .status
            .code()
            != Some(0)
    );
    assert_eq!(
        std::fs::read_to_string(state.path().join("mtu")).unwrap(),
        "1500\n"
    );
    assert!(
        ping(&wa, "198.18.1.2"),
        "workload to workload through the host"
    );
    assert_eq!(worker.update(vec![]), 0, "no-op apply writes nothing");
}

#[test]
fn vxlan_between_two_hosts() {
    if !environment_ok("vxlan_between_two_hosts") {
        return;
    }
    let mut lab = Lab::new("vx");
    let h1 = lab.host("h1");
    let h2 = lab.host("h2");
    lab.link_hosts(&h1, "192.0.2.1", &h2, "192.0.2.2");
    let w1 = lab.workload("w1", &h1, "tapw1", "198.18.1.1");
    let _w2 = lab.workload("w2", &h2, "tapw2", "198.18.2.1");
    let s1 = tempfile::tempdir().unwrap();
    let s2 = tempfile::tempdir().unwrap();
    let k1 = NsWorker::spawn(&h1);
    let k2 = NsWorker::spawn(&h2);
    k1.start(
        "node1",
        s1.path(),
        host_updates(1, &[("w1", "tapw1", "198.18.1.1")], Encap::Always),
    );
    k2.start(
        "node2",
        s2.path(),
        host_updates(2, &[("w2", "tapw2", "198.18.2.1")], Encap::Always),
    );
    assert!(k1.conditions().is_empty(), "{:?}", k1.conditions());

    let dev = json(&["ip", "-n", &h1, "-j", "-d", "link", "show", "vxlan.calico"]);
    let dev = &dev[0];
    let info = &dev["linkinfo"]["info_data"];
    assert_eq!(info["id"], 4096);
    assert_eq!(info["port"], 4789);
    assert_eq!(info["local"], "192.0.2.1");
    assert_eq!(info["link"], "eth1");
    assert_eq!(info["learning"], false);
    assert_eq!(dev["mtu"], 1450, "eth1 (1500) matches the MTU pattern");
    assert_eq!(dev["address"], "66:00:00:00:00:01");
    assert!(dev["flags"]
        .as_array()
        .unwrap()
        .contains(&Value::from("UP")));
    assert_eq!(
        std::fs::read_to_string(s1.path().join("mtu")).unwrap(),
        "1450\n"
    );
    let addrs = sh(&["ip", "-n", &h1, "-4", "addr", "show", "dev", "vxlan.calico"]);
    assert!(addrs.contains("198.18.1.0/32"), "{addrs}");

    let neigh = json(&[
        "ip",
        "-n",
        &h1,
        "-j",
        "neigh",
        "show",
        "dev",
        "vxlan.calico",
    ]);
    let n = neigh.as_array().unwrap();
    assert_eq!(n.len(), 1, "{neigh}");
    assert_eq!(n[0]["dst"], "198.18.2.0");
    assert_eq!(n[0]["lladdr"], "66:00:00:00:00:02");
    assert!(n[0]["state"]
        .as_array()
        .unwrap()
        .contains(&Value::from("PERMANENT")));
    let fdb = json(&[
        "ip",
        "netns",
        "exec",
        &h1,
        "bridge",
        "-j",
        "fdb",
        "show",
        "dev",
        "vxlan.calico",
    ]);
    let f: Vec<&Value> = fdb
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["dst"].is_string())
        .collect();
    assert_eq!(f.len(), 1, "{fdb}");
    assert_eq!(f[0]["mac"], "66:00:00:00:00:02");
    assert_eq!(f[0]["dst"], "192.0.2.2");
    assert!(f[0]["flags"]
        .as_array()
        .unwrap()
        .contains(&Value::from("self")));
    assert_eq!(f[0]["state"], "permanent");

    let routes = proto80_routes(&h1);
    let r = find_route(&routes, "198.18.2.0/26").expect("remote block route");
    assert_eq!(r["gateway"], "198.18.2.0");
    assert_eq!(r["dev"], "vxlan.calico");
    assert!(r["flags"]
        .as_array()
        .unwrap()
        .contains(&Value::from("onlink")));

    assert!(ping(&w1, "198.18.2.1"), "workload to workload across VXLAN");

    // The pool stops using VXLAN: the device goes, its routes with it, and
    // the remote route is reported pending.
    assert!(k1.update(vec![pools(Encap::Never, false)]) >= 1);
    assert!(
        run(&["ip", "-n", &h1, "link", "show", "vxlan.calico"])
            .status
            .code()
            != Some(0)
    );
    assert!(find_route(&proto80_routes(&h1), "198.18.2.0/26").is_none());
    assert!(k1.conditions().iter().any(|c| matches!(
        c,
        Condition::RoutesPending { reason: PendingReason::InterfaceMissing(i), .. } if i == "vxlan.calico"
    )));
    // And back.
    k1.update(vec![pools(Encap::Always, false)]);
    assert!(find_route(&proto80_routes(&h1), "198.18.2.0/26").is_some());
    assert!(ping(&w1, "198.18.2.1"));
    drop((k1, k2));
}

#[test]
fn drift_repair_pending_interface_and_ipip_condition() {
    if !environment_ok("drift_repair_pending_interface_and_ipip_condition") {
        return;
    }
    let mut lab = Lab::new("dr");
    let h1 = lab.host("h1");
    let h2 = lab.host("h2");
    lab.link_hosts(&h1, "192.0.2.1", &h2, "192.0.2.2");
    let wa = lab.workload("wa", &h1, "tapwa", "198.18.1.1");
    let _wb = lab.workload("wb", &h1, "tapwb", "198.18.1.2");
    sh(&[
        "ip",
        "-n",
        &h1,
        "route",
        "add",
        "198.18.99.0/24",
        "via",
        "192.0.2.2",
        "proto",
        "static",
    ]);
    let state = tempfile::tempdir().unwrap();
    let k = NsWorker::spawn(&h1);
    let mut u = host_updates(
        1,
        &[
            ("wa", "tapwa", "198.18.1.1"),
            ("wb", "tapwb", "198.18.1.2"),
            ("wc", "tapwc", "198.18.1.3"),
        ],
        Encap::Never,
    );
    let in_sync = u.len() - 1;
    u.insert(in_sync, pools(Encap::Never, true));
    k.start("node1", state.path(), u);

    // Drift: a route deleted behind our back comes back on resync.
    sh(&["ip", "-n", &h1, "route", "del", "198.18.1.2/32"]);
    assert!(!ping(&wa, "198.18.1.2"));
    assert_eq!(k.resync_apply(), 1);
    assert!(find_route(&proto80_routes(&h1), "198.18.1.2").is_some());
    assert!(ping(&wa, "198.18.1.2"));
    let foreign = sh(&["ip", "-n", &h1, "route", "show", "198.18.99.0/24"]);
    assert!(
        foreign.contains("proto static"),
        "foreign route kept: {foreign}"
    );

    // tapwc does not exist yet: pending, not an error.
    let c = k.conditions();
    assert!(
        c.iter().any(|c| matches!(c, Condition::RoutesPending {
            reason: PendingReason::InterfaceMissing(i), dsts } if i == "tapwc" && dsts.len() == 1)),
        "{c:?}"
    );
    assert!(c.contains(&Condition::InterfaceSettingsPending {
        iface: "tapwc".into()
    }));
    assert_eq!(k.update(vec![]), 0, "pending retries write nothing");
    let wc = lab.workload("wc", &h1, "tapwc", "198.18.1.3");
    // The route, and the sysctls whose defaults differ (forwarding is
    // already on for new interfaces once ip_forward=1).
    assert!(k.update(vec![]) >= 4, "route + sysctls once tapwc exists");
    assert!(find_route(&proto80_routes(&h1), "198.18.1.3").is_some());
    assert_eq!(sysctl(&h1, "net/ipv4/conf/tapwc/proxy_arp"), "1");
    assert_eq!(sysctl(&h1, "net/ipv4/neigh/tapwc/proxy_delay"), "0");
    assert_eq!(sysctl(&h1, "net/ipv4/conf/tapwc/route_localnet"), "1");
    assert!(k
        .conditions()
        .iter()
        .all(|c| !c.to_string().contains("tapwc")));
    assert!(ping(&wc, "198.18.1.1"));

    // IPIP: this kernel may lack it; then a condition names the pool.
    let ipip_available = run(&["ip", "-n", &h2, "link", "add", "crt-probe", "type", "ipip"])
        .status
        .success();
    let c = k.conditions();
    if ipip_available {
        eprintln!("kernel has ipip: positive IPIP path not asserted here");
    } else {
        assert!(
            c.iter()
                .any(|c| matches!(c, Condition::MissingKernelFeature {
                pool, feature: KernelFeature::IpipTunnel, .. } if pool == "pool-ipip")),
            "{c:?}"
        );
        eprintln!(
            "reported: {}",
            c.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    assert!(ping(&wa, "198.18.1.3"), "other pools keep working");
}

#[test]
fn restart_without_flush_loses_no_packet() {
    if !environment_ok("restart_without_flush_loses_no_packet") {
        return;
    }
    let mut lab = Lab::new("rs");
    let h1 = lab.host("h1");
    let h2 = lab.host("h2");
    lab.link_hosts(&h1, "192.0.2.1", &h2, "192.0.2.2");
    let wa = lab.workload("wa", &h1, "tapwa", "198.18.1.1");
    let _wb = lab.workload("wb", &h1, "tapwb", "198.18.1.2");
    // Left behind by an earlier run: a stale route of ours; and a foreign one.
    sh(&[
        "ip",
        "-n",
        &h1,
        "route",
        "add",
        "blackhole",
        "198.18.9.0/26",
        "proto",
        "80",
    ]);
    sh(&[
        "ip",
        "-n",
        &h1,
        "route",
        "add",
        "blackhole",
        "198.18.10.0/26",
        "proto",
        "static",
    ]);
    let state = tempfile::tempdir().unwrap();
    let k = NsWorker::spawn(&h1);
    let wl = [("wa", "tapwa", "198.18.1.1"), ("wb", "tapwb", "198.18.1.2")];
    // First run without InSync: nothing is deleted yet.
    let mut first = host_updates(1, &wl, Encap::Never);
    first.pop();
    k.start("node1", state.path(), first);
    assert!(find_route(&proto80_routes(&h1), "198.18.9.0/26").is_some());
    assert!(ping(&wa, "198.18.1.2"));

    let count = 80;
    let p = lab.spawn(&[
        "ip",
        "netns",
        "exec",
        &wa,
        "ping",
        "-c",
        &count.to_string(),
        "-i",
        "0.05",
        "-W",
        "1",
        "198.18.1.2",
    ]);
    std::thread::sleep(Duration::from_millis(800));
    // Restart: new managers, same desired state, read the kernel, reconcile.
    let before = sh(&["ip", "-n", &h1, "route", "show", "proto", "80"]);
    let writes = k.start("node1", state.path(), host_updates(1, &wl, Encap::Never));
    std::thread::sleep(Duration::from_millis(300));
    let summary = lab.wait(p);
    assert_eq!(writes, 1, "only the stale route is deleted");
    let line = summary
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary: {summary}"));
    assert!(
        line.starts_with(&format!("{count} packets transmitted, {count} received")),
        "packet lost across restart: {line}"
    );
    let after = sh(&["ip", "-n", &h1, "route", "show", "proto", "80"]);
    assert!(
        !after.contains("198.18.9.0/26"),
        "stale route removed: {after}"
    );
    assert_eq!(
        before
            .lines()
            .filter(|l| !l.contains("198.18.9.0/26"))
            .collect::<Vec<_>>(),
        after.lines().collect::<Vec<_>>(),
        "still-desired routes untouched"
    );
    assert!(sh(&["ip", "-n", &h1, "route", "show", "198.18.10.0/26"]).contains("proto static"));
    // A local VTEP given explicitly (agent API) with no VXLAN pool changes nothing.
    let changed = k.run(|slot| {
        let r = slot.as_mut().unwrap();
        r.set_local_vtep(
            "198.18.1.0".parse().unwrap(),
            parse_mac("66:00:00:00:00:01").unwrap(),
            "192.0.2.1".parse().unwrap(),
        );
        r.apply().unwrap().writes
    });
    assert_eq!(changed, 0);
}

#[test]
fn learned_routes_in_bulk_with_one_refused() {
    use calico_dataplane::learned::{LearnedRoutes, RTPROT_BIRD};
    use calico_dataplane::netlink::{KernelRoute, RouteKind};

    if !environment_ok("learned_routes_in_bulk_with_one_refused") {
        return;
    }
    let mut lab = Lab::new("lb");
    let h1 = lab.host("h1");
    let h2 = lab.host("h2");
    lab.link_hosts(&h1, "192.0.2.1", &h2, "192.0.2.2");
    let worker = NsWorker::spawn(&h1);
    let via = |i: u32, gw: &str| KernelRoute {
        dst: format!(
            "{}/32",
            Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i)
        )
        .parse()
        .unwrap(),
        kind: RouteKind::Via {
            gateway: gw.parse().unwrap(),
            iface: None,
            onlink: false,
        },
        protocol: RTPROT_BIRD,
    };
    // 3,000 routes (three netlink batches), one of them to a next hop that
    // is not on any link: the kernel refuses just that one.
    let (writes, failed) = worker.run(move |_| {
        let mut m = LearnedRoutes::new(RtNetlink::new().unwrap(), RTPROT_BIRD);
        m.converged();
        for i in 0..3000 {
            let gw = if i == 1234 {
                "198.19.255.1"
            } else {
                "192.0.2.2"
            };
            let r = via(i, gw);
            m.set(r.dst, Some(r));
        }
        let writes = m.apply().unwrap().writes;
        let failed: Vec<String> = m.failures().keys().map(|k| k.to_string()).collect();
        // Half are withdrawn; a resync then finds nothing to do.
        for i in 0..1500 {
            m.set(via(i, "192.0.2.2").dst, None);
        }
        m.apply().unwrap();
        m.resync();
        let again = m.apply().unwrap().writes;
        (writes, (failed, again))
    });
    assert_eq!(writes, 2999);
    assert_eq!(failed.0, vec!["198.18.4.210/32".to_string()]);
    assert_eq!(failed.1, 0, "in sync after a resync");
    let routes = json(&["ip", "-n", &h1, "-j", "route", "show", "proto", "12"]);
    assert_eq!(routes.as_array().unwrap().len(), 1500);
}
