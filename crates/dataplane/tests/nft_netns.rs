//! Real-kernel tests of the nftables PolicyManager (run as root).
//!
//! Each test builds throw-away network namespaces named `cnft-<pid>-<tag>-*`:
//! a "host" namespace routing Calico style (/32 routes, proxy_arp) between
//! "workload" namespaces, plus an "ext" namespace behind a veth uplink
//! (192.0.2.0/24). Workloads use 198.18.0.0/15 only. The manager runs with
//! the real `nft` inside the host namespace (`ip netns exec`), and traffic is
//! checked with the calico-probe echo client/server, started from this very
//! test binary (`probe_entry` below) so no separately built binary is needed.
//! Every namespace is deleted and every spawned process killed (by PID) in a
//! Drop guard, also on panic. Without root or `nft` the tests are skipped,
//! and fail under CI=true.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use calico_calc::model::{
    Action, Encap, EndpointKey, EndpointToHostAction, HostConfig, IpSetMember, LocalEndpoint,
    Policy, PolicyId, PolicyKind, Pool, PortRange, Rule, Side, TierDefault, TierPolicies, Update,
};
use calico_dataplane::nft::render::{self, ipset_name, SetKind};
use calico_dataplane::nft::{CommandNft, PolicyManager};
use calico_dataplane::Manager;
use ipnet::IpNet;

const PROBE_ENV: &str = "CALICO_PROBE_ARGS";

/// Not a test: the entry point used when this binary is re-executed inside
/// a namespace as the probe (`CALICO_PROBE_ARGS` set). Ignored, so that a
/// normal run does not count it as a passing test; run with `--ignored`.
#[test]
#[ignore = "helper entry point for child processes"]
fn probe_entry() {
    if let Ok(args) = std::env::var(PROBE_ENV) {
        let args: Vec<String> = args.split('\x1f').map(String::from).collect();
        let code = calico_probe::run(&args);
        std::process::exit(code);
    }
}

// ------------------------------------------------------------------ lab

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Namespaces and processes of one test; torn down on drop.
struct Lab {
    prefix: String,
    host: String,
    ext: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// None (skipped; a failure under CI=true) without root or nft.
fn lab(tag: &str) -> Option<Lab> {
    let test = format!("nft_netns {tag}");
    let tools = [("nft", "nftables"), ("ip", "iproute2")];
    if !calico_testsupport::require_root(&test) || !calico_testsupport::require_tools(&test, &tools)
    {
        return None;
    }
    let prefix = format!("cnft-{}-{tag}", std::process::id());
    let mut lab = Lab {
        host: format!("{prefix}-h"),
        ext: format!("{prefix}-ext"),
        prefix,
        namespaces: vec![],
        children: vec![],
    };
    for ns in [lab.host.clone(), lab.ext.clone()] {
        sh(&["ip", "netns", "add", &ns]);
        lab.namespaces.push(ns.clone());
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
    }
    let (h, x) = (lab.host.clone(), lab.ext.clone());
    sh(&[
        "ip", "link", "add", "up0", "netns", &h, "type", "veth", "peer", "name", "up0", "netns", &x,
    ]);
    sh(&["ip", "-n", &h, "addr", "add", "192.0.2.1/24", "dev", "up0"]);
    sh(&["ip", "-n", &x, "addr", "add", "192.0.2.2/24", "dev", "up0"]);
    sh(&["ip", "-n", &h, "link", "set", "up0", "up"]);
    sh(&["ip", "-n", &x, "link", "set", "up0", "up"]);
    // The default route is also what makes proxy_arp answer 169.254.1.1.
    sh(&[
        "ip",
        "-n",
        &h,
        "route",
        "add",
        "default",
        "via",
        "192.0.2.2",
        "dev",
        "up0",
    ]);
    sh(&[
        "ip",
        "netns",
        "exec",
        &h,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    Some(lab)
}

impl Lab {
    /// A workload namespace `<prefix>-<name>` with `eth0` = `addr`/32,
    /// attached to the host as `iface`.
    fn workload(&mut self, name: &str, iface: &str, addr: &str) -> String {
        let ns = format!("{}-{name}", self.prefix);
        let h = self.host.clone();
        sh(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        sh(&[
            "ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", iface,
            "netns", &h,
        ]);
        sh(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/32"),
            "dev",
            "eth0",
        ]);
        sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        sh(&[
            "ip",
            "-n",
            &ns,
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
            &ns,
            "route",
            "add",
            "default",
            "via",
            "169.254.1.1",
            "dev",
            "eth0",
        ]);
        sh(&[
            "ip",
            "netns",
            "exec",
            &h,
            "sysctl",
            "-qw",
            &format!("net.ipv4.conf.{iface}.proxy_arp=1"),
            &format!("net.ipv4.neigh.{iface}.proxy_delay=0"),
            // As calico-node sets it: metadata DNATed to 127.0.0.1 routes.
            &format!("net.ipv4.conf.{iface}.route_localnet=1"),
        ]);
        sh(&["ip", "-n", &h, "link", "set", iface, "up"]);
        sh(&[
            "ip",
            "-n",
            &h,
            "route",
            "add",
            &format!("{addr}/32"),
            "dev",
            iface,
            "scope",
            "link",
        ]);
        ns
    }

    fn probe_cmd(ns: &str, args: &[&str]) -> Command {
        let exe = std::env::current_exe().unwrap();
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns])
            .arg(exe)
            .args([
                "probe_entry",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(PROBE_ENV, args.join("\x1f"));
        c
    }

    /// Start echo servers in `ns`; returns once they are bound.
    fn serve(&mut self, ns: &str, tcp: &str) {
        let mut child = Self::probe_cmd(ns, &["serve", "--tcp", tcp])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn probe server");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        self.children.push(child);
        let mut line = String::new();
        loop {
            line.clear();
            let n = out.read_line(&mut line).unwrap();
            assert!(n > 0, "probe server in {ns} exited before READY");
            if line.starts_with("READY") {
                break;
            }
        }
        // Keep draining so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in out.lines() {});
    }

    /// Run the probe client in `ns`; true if every round trip was answered.
    fn reach(ns: &str, target: &str, extra: &[&str]) -> bool {
        let mut args = vec!["tcp", target, "--timeout-ms", "400"];
        args.extend_from_slice(extra);
        let out = Self::probe_cmd(ns, &args).output().expect("run probe");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("OK") || l.starts_with("FAIL"))
            .unwrap_or("");
        eprintln!("probe {ns} -> {target}: {line}");
        match out.status.code() {
            Some(0) => true,
            Some(1) => false,
            other => panic!("probe exited with {other:?}: {text}"),
        }
    }

    fn spawn_session(ns: &str, target: &str, count: &str) -> Child {
        Self::probe_cmd(
            ns,
            &[
                "tcp",
                target,
                "--timeout-ms",
                "1000",
                "--count",
                count,
                "--interval-ms",
                "100",
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn session")
    }

    fn nft(&self, args: &str) -> String {
        let mut v = vec!["ip", "netns", "exec", &self.host, "nft"];
        v.extend(args.split_whitespace());
        sh(&v)
    }

    fn manager(&self) -> PolicyManager<CommandNft> {
        PolicyManager::new(CommandNft::in_netns(self.host.clone()))
    }
}

// ------------------------------------------------------------------ model

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn rule(action: Action, id: &str) -> Rule {
    Rule {
        action,
        ip_version: None,
        protocol: None,
        not_protocol: None,
        icmp_type: None,
        icmp_code: None,
        not_icmp_type: None,
        not_icmp_code: None,
        src: Side::default(),
        dst: Side::default(),
        id: id.into(),
    }
}

fn np(ns: &str, name: &str) -> PolicyId {
    PolicyId {
        kind: PolicyKind::NetworkPolicy,
        namespace: ns.into(),
        name: name.into(),
    }
}

fn policy(id: &PolicyId, inbound: Vec<Rule>, outbound: Vec<Rule>) -> Update {
    Update::PolicyUpsert(Arc::new(Policy {
        id: id.clone(),
        inbound,
        outbound,
    }))
}

fn ep(
    ns: &str,
    name: &str,
    iface: &str,
    addr: &str,
    pols: &[(&PolicyId, bool, bool)],
) -> LocalEndpoint {
    let tiers = if pols.is_empty() {
        vec![]
    } else {
        vec![TierPolicies {
            name: "default".into(),
            default_action: TierDefault::Deny,
            ingress: pols.iter().filter(|p| p.1).map(|p| p.0.clone()).collect(),
            egress: pols.iter().filter(|p| p.2).map(|p| p.0.clone()).collect(),
        }]
    };
    LocalEndpoint {
        key: EndpointKey {
            namespace: ns.into(),
            name: name.into(),
        },
        iface: iface.into(),
        mac: None,
        addrs: vec![net(&format!("{addr}/32"))],
        allow_spoofed: vec![],
        tiers,
        profiles: vec!["allow-all".into()],
        nats: vec![],
    }
}

fn up(e: LocalEndpoint) -> Update {
    Update::EndpointUpsert(Arc::new(e))
}

fn config(to_host: EndpointToHostAction) -> HostConfig {
    let mut c = render::default_host_config();
    c.interface_prefixes = vec!["tap".into()];
    c.default_endpoint_to_host_action = to_host;
    c
}

fn base_updates() -> Vec<Update> {
    vec![
        Update::Config(config(EndpointToHostAction::Drop)),
        Update::Pools(vec![pool("198.18.0.0/16", false)]),
        policy(
            &render::profile_id("allow-all"),
            vec![rule(Action::Allow, "pi")],
            vec![rule(Action::Allow, "po")],
        ),
    ]
}

fn pool(cidr: &str, nat: bool) -> Pool {
    Pool {
        name: "p".into(),
        cidr: net(cidr),
        nat_outgoing: nat,
        vxlan: Encap::Never,
        ipip: Encap::Never,
        disabled: false,
    }
}

/// The article's web-db-policy, compiled as the calc would.
fn web_db() -> (PolicyId, Vec<Update>) {
    let pid = np("production", "web-db-policy");
    let mut from_web = rule(Action::Allow, "in0");
    from_web.src.ip_set = Some("s:web".into());
    let set: BTreeSet<IpSetMember> = [IpSetMember::Net(net("198.18.0.1/32"))].into();
    (
        pid.clone(),
        vec![
            Update::IpSetUpsert {
                id: "s:web".into(),
                members: set,
            },
            policy(&pid, vec![from_web], vec![rule(Action::Allow, "out0")]),
        ],
    )
}

fn feed(pm: &mut PolicyManager<CommandNft>, updates: &[Update]) -> usize {
    for u in updates {
        pm.on_update(u);
    }
    pm.apply().expect("apply").writes
}

// ------------------------------------------------------------------ tests

#[test]
fn article_policies_are_enforced() {
    let Some(mut lab) = lab("art") else { return };
    let web = lab.workload("web", "tapweb", "198.18.0.1");
    let db = lab.workload("db", "tapdb", "198.18.0.2");
    let other = lab.workload("oth", "tapother", "198.18.0.3");
    let stg = lab.workload("stg", "tapstg", "198.18.0.4");
    let fe = lab.workload("fe", "tapfe", "198.18.0.5");
    lab.serve(&db, "5432");
    lab.serve(&web, "80");
    lab.serve(&stg, "80");
    lab.serve(&fe, "80,81");

    let (pid, mut updates) = web_db();
    let deny = np("staging", "deny-all-default");
    let http = np("frontend", "frontend-allow-http");
    let mut allow80 = rule(Action::Allow, "r80");
    allow80.protocol = Some(6);
    allow80.dst.ports = vec![PortRange { min: 80, max: 80 }];
    updates.extend(base_updates());
    updates.extend([
        policy(
            &deny,
            vec![rule(Action::Deny, "d0")],
            vec![rule(Action::Allow, "a0")],
        ),
        policy(&http, vec![allow80], vec![]),
        up(ep("production", "web", "tapweb", "198.18.0.1", &[])),
        up(ep(
            "production",
            "db",
            "tapdb",
            "198.18.0.2",
            &[(&pid, true, true)],
        )),
        up(ep("production", "other", "tapother", "198.18.0.3", &[])),
        up(ep(
            "staging",
            "s1",
            "tapstg",
            "198.18.0.4",
            &[(&deny, true, true)],
        )),
        up(ep(
            "frontend",
            "f1",
            "tapfe",
            "198.18.0.5",
            &[(&http, true, false)],
        )),
    ]);
    let mut pm = lab.manager();
    assert!(feed(&mut pm, &updates) > 0);

    assert!(
        Lab::reach(&web, "198.18.0.2:5432", &[]),
        "web -> database allowed"
    );
    assert!(
        !Lab::reach(&other, "198.18.0.2:5432", &[]),
        "other -> database denied"
    );
    assert!(
        Lab::reach(&db, "198.18.0.1:80", &[]),
        "database egress allowed"
    );
    assert!(
        !Lab::reach(&web, "198.18.0.4:80", &[]),
        "staging default deny"
    );
    assert!(
        Lab::reach(&stg, "198.18.0.1:80", &[]),
        "staging egress allowed"
    );
    assert!(
        Lab::reach(&web, "198.18.0.5:80", &[]),
        "frontend TCP 80 allowed"
    );
    assert!(
        !Lab::reach(&web, "198.18.0.5:81", &[]),
        "frontend TCP 81 denied"
    );

    // Counters and comments make the verdict traceable.
    let listing = lab.nft("list table inet calico");
    assert!(
        listing.contains("comment \"staging/deny-all-default d0"),
        "{listing}"
    );
    // A no-op apply writes nothing.
    assert_eq!(pm.apply().unwrap().writes, 0);
}

#[test]
fn spoofed_sources_are_dropped() {
    let Some(mut lab) = lab("spf") else { return };
    let web = lab.workload("web", "tapweb", "198.18.0.1");
    let db = lab.workload("db", "tapdb", "198.18.0.2");
    lab.serve(&db, "80");
    // A foreign address on the workload, with a host route back so only our
    // rules can stop the flow.
    sh(&[
        "ip",
        "-n",
        &web,
        "addr",
        "add",
        "198.18.0.99/32",
        "dev",
        "eth0",
    ]);
    sh(&[
        "ip",
        "-n",
        &lab.host,
        "route",
        "add",
        "198.18.0.99/32",
        "dev",
        "tapweb",
        "scope",
        "link",
    ]);
    let mut pm = lab.manager();
    let mut updates = base_updates();
    updates.push(up(ep("p", "web", "tapweb", "198.18.0.1", &[])));
    updates.push(up(ep("p", "db", "tapdb", "198.18.0.2", &[])));
    feed(&mut pm, &updates);

    assert!(Lab::reach(&web, "198.18.0.2:80", &[]));
    assert!(
        !Lab::reach(&web, "198.18.0.2:80", &["--bind", "198.18.0.99"]),
        "spoofed source dropped"
    );
    let sp = lab.nft("list chain inet calico cali-sp-tapweb");
    assert!(
        sp.lines()
            .any(|l| l.contains("spoofed source") && !l.contains("packets 0 ")),
        "drop counter counted: {sp}"
    );
    // allowSpoofedSourcePrefixes lets it through.
    let mut e = ep("p", "web", "tapweb", "198.18.0.1", &[]);
    e.allow_spoofed = vec![net("198.18.0.99/32")];
    feed(&mut pm, &[up(e)]);
    assert!(Lab::reach(
        &web,
        "198.18.0.2:80",
        &["--bind", "198.18.0.99"]
    ));
}

#[test]
fn drift_repair_restart_and_established_flows() {
    let Some(mut lab) = lab("drf") else { return };
    let web = lab.workload("web", "tapweb", "198.18.0.1");
    let db = lab.workload("db", "tapdb", "198.18.0.2");
    let other = lab.workload("oth", "tapother", "198.18.0.3");
    lab.serve(&db, "5432");
    let (pid, mut updates) = web_db();
    updates.extend(base_updates());
    updates.extend([
        up(ep("production", "web", "tapweb", "198.18.0.1", &[])),
        up(ep(
            "production",
            "db",
            "tapdb",
            "198.18.0.2",
            &[(&pid, true, true)],
        )),
        up(ep("production", "other", "tapother", "198.18.0.3", &[])),
    ]);
    let mut pm = lab.manager();
    feed(&mut pm, &updates);
    assert!(!Lab::reach(&other, "198.18.0.2:5432", &[]));

    // Someone deletes our forward chain: policy is no longer enforced.
    lab.nft("delete chain inet calico cali-FORWARD");
    assert!(Lab::reach(&other, "198.18.0.2:5432", &[]), "drift visible");
    pm.resync();
    assert!(pm.apply().unwrap().writes > 0);
    assert!(
        !Lab::reach(&other, "198.18.0.2:5432", &[]),
        "enforced again"
    );
    assert!(Lab::reach(&web, "198.18.0.2:5432", &[]));

    // Someone deletes a set member: web loses access until the repair.
    let s4 = ipset_name("s:web", SetKind::Addr, false);
    lab.nft(&format!("delete element inet calico {s4} {{ 198.18.0.1 }}"));
    assert!(!Lab::reach(&web, "198.18.0.2:5432", &[]));
    pm.resync();
    assert_eq!(
        pm.apply().unwrap().writes,
        1,
        "only the element is re-added"
    );
    assert!(Lab::reach(&web, "198.18.0.2:5432", &[]));

    // Restart: a new manager on the same kernel state writes nothing, and an
    // established flow keeps working throughout.
    let session = Lab::spawn_session(&web, "198.18.0.2:5432", "15");
    lab.children.push(session);
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(pm);
    let mut pm2 = lab.manager();
    assert_eq!(
        feed(&mut pm2, &updates),
        0,
        "restart reconcile wrote something"
    );
    let session = lab.children.pop().unwrap();
    let out = session.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "session broke across restart: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Conntrack fast path: with the allow rule gone, new connections are
    // denied but an established one continues.
    let session = Lab::spawn_session(&web, "198.18.0.2:5432", "10");
    lab.children.push(session);
    std::thread::sleep(std::time::Duration::from_millis(300));
    feed(
        &mut pm2,
        &[policy(&pid, vec![], vec![rule(Action::Allow, "out0")])],
    );
    assert!(
        !Lab::reach(&web, "198.18.0.2:5432", &[]),
        "new connection denied"
    );
    let session = lab.children.pop().unwrap();
    let out = session.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "established flow cut: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn nat_outgoing_floating_ips_and_workload_to_host() {
    let Some(mut lab) = lab("nat") else { return };
    let web = lab.workload("web", "tapweb", "198.18.0.1");
    let vm = lab.workload("vm", "tapvm", "198.18.0.2");
    let ext = lab.ext.clone();
    let host = lab.host.clone();
    lab.serve(&ext, "7000");
    lab.serve(&vm, "80");
    lab.serve(&host, "9000");
    // ext reaches the floating IP through the host.
    sh(&[
        "ip",
        "-n",
        &ext,
        "route",
        "add",
        "192.0.2.100/32",
        "via",
        "192.0.2.1",
    ]);

    let mut pm = lab.manager();
    let mut updates = base_updates();
    updates.push(up(ep("p", "web", "tapweb", "198.18.0.1", &[])));
    updates.push(up(ep("p", "vm", "tapvm", "198.18.0.2", &[])));
    feed(&mut pm, &updates);
    assert!(
        !Lab::reach(&web, "192.0.2.2:7000", &[]),
        "no route back without NAT"
    );
    feed(&mut pm, &[Update::Pools(vec![pool("198.18.0.0/16", true)])]);
    assert!(
        Lab::reach(&web, "192.0.2.2:7000", &[]),
        "natOutgoing masquerades"
    );

    // 1:1 NAT: 192.0.2.100 <-> 198.18.0.2, without natOutgoing.
    let mut vm_ep = ep("p", "vm", "tapvm", "198.18.0.2", &[]);
    vm_ep.nats = vec![(
        "198.18.0.2".parse::<IpAddr>().unwrap(),
        "192.0.2.100".parse::<IpAddr>().unwrap(),
    )];
    feed(
        &mut pm,
        &[Update::Pools(vec![pool("198.18.0.0/16", false)]), up(vm_ep)],
    );
    assert!(Lab::reach(&ext, "192.0.2.100:80", &[]), "floating IP DNAT");
    assert!(Lab::reach(&vm, "192.0.2.2:7000", &[]), "floating IP SNAT");
    assert!(
        !Lab::reach(&web, "192.0.2.2:7000", &[]),
        "no SNAT for others"
    );

    // defaultEndpointToHostAction: Drop, then Accept.
    assert!(!Lab::reach(&web, "192.0.2.1:9000", &[]));
    feed(
        &mut pm,
        &[Update::Config(config(EndpointToHostAction::Accept))],
    );
    assert!(Lab::reach(&web, "192.0.2.1:9000", &[]));

    // OpenStack metadata: 169.254.169.254:80 DNATed to metadataAddr:Port
    // and let in although workloads may not reach the host otherwise; off,
    // nothing answers there.
    lab.serve(&host, "8775");
    let metadata = "169.254.169.254:80";
    feed(
        &mut pm,
        &[Update::Config(config(EndpointToHostAction::Drop))],
    );
    assert!(!Lab::reach(&web, metadata, &[]), "no metadata DNAT");
    let mut with_metadata = config(EndpointToHostAction::Drop);
    with_metadata.metadata = Some(("127.0.0.1".parse().unwrap(), 8775));
    feed(&mut pm, &[Update::Config(with_metadata.clone())]);
    assert!(
        Lab::reach(&web, metadata, &[]),
        "metadata on the host's loopback"
    );
    assert!(
        !Lab::reach(&web, "192.0.2.1:9000", &[]),
        "nothing else let in"
    );
    // A metadata server elsewhere (ext stands in for the controller, which
    // routes to the workloads).
    sh(&[
        "ip",
        "-n",
        &ext,
        "route",
        "add",
        "198.18.0.0/16",
        "via",
        "192.0.2.1",
    ]);
    with_metadata.metadata = Some(("192.0.2.2".parse().unwrap(), 7000));
    feed(&mut pm, &[Update::Config(with_metadata)]);
    assert!(
        Lab::reach(&web, metadata, &[]),
        "metadata on the controller"
    );
}

/// Every rule feature the renderer emits is accepted by the real nft, and
/// reads back (fingerprints, set elements incl. named ports) as in sync.
#[test]
fn every_rule_feature_loads_and_reads_back() {
    let Some(lab) = lab("all") else { return };
    let pid = np("ns", "kitchen-sink");
    let mut rules = Vec::new();
    let mut r = rule(Action::Allow, "a");
    r.protocol = Some(17);
    r.src.nets = vec![
        net("198.18.0.0/24"),
        net("198.18.0.7/32"),
        net("2001:db8::/64"),
    ];
    r.src.not_nets = vec![net("198.18.0.128/25"), net("2001:db8::1/128")];
    r.dst.ports = vec![
        PortRange { min: 53, max: 53 },
        PortRange {
            min: 1000,
            max: 2000,
        },
    ];
    r.dst.named_port_sets = vec!["s:np".into()];
    r.dst.not_ports = vec![PortRange {
        min: 1500,
        max: 1500,
    }];
    r.src.not_named_port_sets = vec!["s:np".into()];
    rules.push(r);
    let mut r = rule(Action::Deny, "b");
    r.protocol = Some(1);
    r.icmp_type = Some(8);
    r.icmp_code = Some(0);
    rules.push(r);
    let mut r = rule(Action::Log, "c");
    r.protocol = Some(58);
    r.not_icmp_type = Some(128);
    r.not_icmp_code = Some(0);
    rules.push(r);
    let mut r = rule(Action::Pass, "d");
    r.ip_version = Some(6);
    r.not_protocol = Some(6);
    r.dst.ip_set = Some("s:v6".into());
    r.src.not_ip_sets = vec!["s:web".into()];
    rules.push(r);
    let mut r = rule(Action::Allow, "e");
    r.src.ports = vec![PortRange { min: 1, max: 1023 }];
    r.dst.not_ports = vec![
        PortRange { min: 22, max: 22 },
        PortRange { min: 80, max: 90 },
    ];
    rules.push(r);
    let mut r = rule(Action::Deny, "f");
    r.protocol = Some(1);
    r.not_icmp_type = Some(3);
    rules.push(r);

    let np_members: BTreeSet<IpSetMember> = [
        IpSetMember::NetPort {
            net: net("198.18.0.1/32"),
            protocol: 6,
            port: 80,
        },
        IpSetMember::NetPort {
            net: net("198.18.0.0/24"),
            protocol: 6,
            port: 80,
        },
        IpSetMember::NetPort {
            net: net("198.18.0.2/32"),
            protocol: 17,
            port: 53,
        },
        IpSetMember::NetPort {
            net: net("2001:db8::2/128"),
            protocol: 6,
            port: 443,
        },
    ]
    .into();
    let mut updates = base_updates();
    updates.extend([
        Update::IpSetUpsert {
            id: "s:np".into(),
            members: np_members,
        },
        Update::IpSetUpsert {
            id: "s:v6".into(),
            members: [
                IpSetMember::Net(net("2001:db8::/48")),
                IpSetMember::Net(net("198.18.4.0/24")),
            ]
            .into(),
        },
        policy(&pid, rules.clone(), rules),
        up(ep("ns", "e", "tapall", "198.18.0.9", &[(&pid, true, true)])),
    ]);
    let mut e = ep("ns", "e2", "tapall2", "198.18.0.10", &[(&pid, true, true)]);
    e.nats = vec![(
        "198.18.0.10".parse::<IpAddr>().unwrap(),
        "192.0.2.50".parse::<IpAddr>().unwrap(),
    )];
    e.tiers.insert(
        0,
        TierPolicies {
            name: "first".into(),
            default_action: TierDefault::Pass,
            ingress: vec![pid.clone()],
            egress: vec![],
        },
    );
    updates.push(up(e));
    let mut pm = lab.manager();
    assert!(feed(&mut pm, &updates) > 0);
    pm.resync();
    assert_eq!(
        pm.apply().unwrap().writes,
        0,
        "kernel read back differs from what was written"
    );
    let n4 = ipset_name("s:np", SetKind::NamedPort, false);
    let listing = lab.nft(&format!("list set inet calico {n4}"));
    assert!(listing.contains("198.18.0.0/24 . tcp . 80"), "{listing}");
}

/// nft's own error text reaches the caller; a missing table lists as None.
#[test]
fn command_backend_reports_nft_stderr() {
    use calico_dataplane::NftBackend;
    let Some(lab) = lab("err") else { return };
    let mut be = CommandNft::in_netns(lab.host.clone());
    assert!(be.list_table().unwrap().is_none());
    let err = be
        .apply("add table inet calico\nadd rule inet calico nosuchchain accept\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("No such file or directory"), "{err}");
    assert!(err.contains("/dev/stdin:2"), "{err}");
    assert!(
        be.list_table().unwrap().is_none(),
        "failed transaction left nothing behind"
    );
}
