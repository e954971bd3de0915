//! New TCP connections per second through ingress policy of 1, 100 and
//! 1,000 rules, every connection a new flow (so every SYN walks the
//! policy), side by side in one run:
//!
//! - `calico-rs`: the rules as networking-calico writes security-group
//!   rules (a NetworkPolicy `ossg.default.<sg>`: remote CIDRs with port
//!   ranges, and remote groups as selectors), through the real calculation
//!   and the real nftables dataplane;
//! - `iptables+ipset`: what upstream Felix programs, one iptables rule per
//!   Calico rule (remote groups as ipsets);
//! - `nft-linear`: the same rules as a plain linear nft chain.
//!
//!   calico-bench conn-rate [--seconds S] [--rounds R] [--rules 1,100,1000]
//!
//! Topology: a host namespace routing between a client and a server
//! namespace (198.18.20.0/24 only), as calico-node wires workloads. Only
//! the matching rule is the last one, so every rule is evaluated. The
//! client connects in a loop (SO_LINGER 0, so no TIME_WAIT), one thread in
//! the client namespace; the figure is the median of the rounds.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use calico_api::decode::decode_documents;
use calico_api::AnyResource;
use calico_calc::input::{HostIdentity, Input};
use calico_calc::Calculator;
use calico_dataplane::nft::{CommandNft, PolicyManager};
use calico_dataplane::Manager;
use socket2::{Domain, Protocol, Socket, Type};

const CLIENT_IP: &str = "198.18.20.1";
const SERVER_IP: &str = "198.18.20.2";
const PORT: u16 = 8080;
const GROUPS: usize = 5;
const NODE: &str = "bench-host";

fn sh(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("cannot run {args:?}"))?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn sh_in(ns: &str, input: &str, args: &[&str]) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {args:?}"))?;
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn enter_netns(ns: &str) -> Result<()> {
    let path = format!("/var/run/netns/{ns}");
    let f = std::fs::File::open(&path)?;
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)?;
    let me = std::fs::metadata("/proc/thread-self/ns/net")?;
    let target = std::fs::metadata(&path)?;
    if (me.dev(), me.ino()) != (target.dev(), target.ino()) {
        bail!("thread is not in namespace {ns}");
    }
    Ok(())
}

/// The namespaces; removed on drop, also on error.
struct Net {
    host: String,
    client: String,
    server: String,
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server, &self.host] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

impl Net {
    fn up() -> Result<Net> {
        let p = format!("cbcr-{}", std::process::id());
        let net = Net {
            host: format!("{p}-h"),
            client: format!("{p}-c"),
            server: format!("{p}-s"),
        };
        for ns in [&net.host, &net.client, &net.server] {
            sh(&["ip", "netns", "add", ns])?;
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        sh_in(&net.host, "", &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        for (ns, iface, ip) in [
            (&net.client, "tapclient", CLIENT_IP),
            (&net.server, "tapserver", SERVER_IP),
        ] {
            let h = &net.host;
            sh(&[
                "ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", iface,
                "netns", h,
            ])?;
            sh(&[
                "ip",
                "-n",
                h,
                "link",
                "set",
                iface,
                "address",
                "ee:ee:ee:ee:ee:ee",
                "up",
            ])?;
            sh(&["ip", "-n", ns, "link", "set", "eth0", "up"])?;
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/32"),
                "dev",
                "eth0",
            ])?;
            sh(&[
                "ip",
                "-n",
                ns,
                "neigh",
                "add",
                "169.254.1.1",
                "lladdr",
                "ee:ee:ee:ee:ee:ee",
                "dev",
                "eth0",
                "nud",
                "permanent",
            ])?;
            sh(&["ip", "-n", ns, "route", "add", "169.254.1.1", "dev", "eth0"])?;
            sh(&[
                "ip",
                "-n",
                ns,
                "route",
                "add",
                "default",
                "via",
                "169.254.1.1",
                "dev",
                "eth0",
            ])?;
            sh(&[
                "ip",
                "-n",
                h,
                "route",
                "add",
                &format!("{ip}/32"),
                "dev",
                iface,
            ])?;
        }
        net.serve()?;
        Ok(net)
    }

    /// Accepts and resets connections, on a thread of its own (it blocks in
    /// accept and ends with the process). A deep backlog, so a moment
    /// without CPU for this thread never drops a SYN.
    fn serve(&self) -> Result<()> {
        let ns = self.server.clone();
        sh_in(&ns, "", &["sysctl", "-qw", "net.core.somaxconn=65535"])?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let listener = enter_netns(&ns).and_then(|_| {
                let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
                s.set_reuse_address(true)?;
                s.bind(&SocketAddr::from(([0, 0, 0, 0], PORT)).into())?;
                s.listen(65535)?;
                Ok(TcpListener::from(s))
            });
            let l = match listener {
                Ok(l) => {
                    let _ = tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            // Reset, not FIN: no TIME_WAIT to collide with when the
            // client's source ports wrap around.
            while let Ok((c, _)) = l.accept() {
                let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
            }
        });
        rx.recv()?
    }

    /// Connections per second from the client for `secs`, and how many
    /// connections failed.
    fn rate(&self, secs: f64) -> Result<(f64, u64)> {
        let ns = self.client.clone();
        std::thread::spawn(move || -> Result<(f64, u64)> {
            enter_netns(&ns)?;
            let to: SocketAddr = format!("{SERVER_IP}:{PORT}").parse()?;
            let (start, mut n, mut failed) = (Instant::now(), 0u64, 0u64);
            while start.elapsed().as_secs_f64() < secs {
                let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
                s.set_linger(Some(Duration::ZERO))?;
                // A reset means the handshake completed and the server
                // already accepted and reset it before connect returned:
                // the SYN passed the policy. Denied SYNs are dropped, never
                // reset, so they time out.
                match s.connect_timeout(&to.into(), Duration::from_secs(1)) {
                    Ok(()) => n += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => n += 1,
                    Err(_) => failed += 1,
                }
            }
            Ok((n as f64 / start.elapsed().as_secs_f64(), failed))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("client thread panicked"))?
    }
}

/// Where a security-group rule admits traffic from.
#[derive(Clone, Debug)]
enum Source {
    Cidr(String),
    /// A remote security group (its members' addresses).
    Group(usize),
}

/// One security-group rule as networking-calico renders it.
#[derive(Clone, Debug)]
struct SgRule {
    source: Source,
    proto: &'static str,
    min: u16,
    max: u16,
}

/// `n` rules: n−1 that never match the client (other CIDRs, other ports),
/// one in ten of them a remote group, then the one that admits it.
fn sg_rules(n: usize) -> Vec<SgRule> {
    let mut out = Vec::new();
    for i in 0..n.saturating_sub(1) {
        let min = 1000 + (i as u16 % 50) * 100;
        out.push(SgRule {
            source: if i % 10 == 9 {
                Source::Group(i % GROUPS)
            } else {
                Source::Cidr(format!("10.{}.{}.0/24", i / 256, i % 256))
            },
            proto: if i % 3 == 2 { "udp" } else { "tcp" },
            min,
            max: min + (i as u16 % 7),
        });
    }
    out.push(SgRule {
        source: Source::Cidr(format!("{CLIENT_IP}/32")),
        proto: "tcp",
        min: PORT,
        max: PORT,
    });
    out
}

fn group_label(g: usize) -> String {
    format!("sg.projectcalico.org/openstack-remote{g}")
}

/// Addresses of remote-group members (on other hosts).
fn group_member(g: usize, j: usize) -> String {
    format!("10.250.{g}.{}", j + 1)
}

fn decode(doc: &str) -> Result<AnyResource> {
    let mut r = decode_documents(doc)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .pop()
        .context("no document")?
        .resource;
    r.apply_defaults();
    Ok(r)
}

/// The resources: the two workloads, remote-group members, and the
/// security group's NetworkPolicy with `rules`.
fn calico_resources(rules: &[SgRule]) -> Result<Vec<AnyResource>> {
    let wep = |name: &str, node: &str, ip: &str, labels: &str| {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: {node}-openstack-{name}-tap{name}\n  namespace: openstack\n  labels:\n{labels}spec:\n  node: {node}\n  orchestrator: openstack\n  workload: {name}\n  endpoint: tap{name}\n  interfaceName: tap{name}\n  ipNetworks: [{ip}/32]\n  profiles: [open]\n"
        )
    };
    let sg = "    sg.projectcalico.org/openstack-bench: bench\n";
    let mut docs = vec![
        wep("client", NODE, CLIENT_IP, "    role: client\n"),
        wep("server", NODE, SERVER_IP, sg),
        "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata:\n  name: open\nspec:\n  egress: [{action: Allow}]\n".to_string(),
    ];
    for g in 0..GROUPS {
        for j in 0..4 {
            let labels = format!("    {}: g\n", group_label(g));
            docs.push(wep(
                &format!("m{g}x{j}"),
                "elsewhere",
                &group_member(g, j),
                &labels,
            ));
        }
    }
    let mut pol = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: ossg.default.bench\n  namespace: openstack\nspec:\n  selector: has(sg.projectcalico.org/openstack-bench)\n  types: [Ingress]\n  ingress:\n".to_string();
    for r in rules {
        let src = match &r.source {
            Source::Cidr(cidr) => format!("nets: [{cidr}]"),
            Source::Group(group) => format!("selector: \"has({})\"", group_label(*group)),
        };
        let (proto, min, max) = (r.proto, r.min, r.max);
        let ports = if min == max {
            format!("{min}")
        } else {
            format!("'{min}:{max}'")
        };
        pol.push_str(&format!(
            "  - action: Allow\n    ipVersion: 4\n    protocol: {}\n    source:\n      {src}\n    destination:\n      ports: [{ports}]\n",
            proto.to_uppercase()
        ));
    }
    docs.push(pol);
    docs.iter().map(|d| decode(d)).collect()
}

/// Programs calico-rs's ruleset into the host namespace.
fn program_calico(net: &Net, rules: &[SgRule]) -> Result<()> {
    let mut calc = Calculator::new(HostIdentity {
        node_name: NODE.into(),
        node_ip: None,
    });
    for r in calico_resources(rules)? {
        calc.on_input(Input::Resource(r));
    }
    calc.on_input(Input::InSync);
    let mut nft = PolicyManager::new(CommandNft::in_netns(net.host.clone()));
    let mut cfg_prefix = Vec::new();
    for u in calc.flush() {
        cfg_prefix.push(u);
    }
    for u in &cfg_prefix {
        nft.on_update(u);
    }
    nft.apply().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// Felix-style iptables: conntrack fast path, then the server's ingress
/// chain with one rule per Calico rule (remote groups as ipsets), then drop.
fn program_iptables(net: &Net, rules: &[SgRule]) -> Result<()> {
    let mut ipsets = String::new();
    for g in 0..GROUPS {
        ipsets.push_str(&format!("create bench-g{g} hash:net family inet\n"));
        for j in 0..4 {
            ipsets.push_str(&format!("add bench-g{g} {}\n", group_member(g, j)));
        }
    }
    sh_in(&net.host, &ipsets, &["ipset", "restore"])?;
    let mut t = String::from("*filter\n:cali-tw-server - [0:0]\n:cali-pi-bench - [0:0]\n");
    t.push_str("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n");
    t.push_str("-A FORWARD -o tapserver -j cali-tw-server\n");
    t.push_str("-A cali-tw-server -j cali-pi-bench\n-A cali-tw-server -j DROP\n");
    for r in rules {
        let src = match &r.source {
            Source::Cidr(cidr) => format!("-s {cidr}"),
            Source::Group(group) => format!("-m set --match-set bench-g{group} src"),
        };
        let (proto, min, max) = (r.proto, r.min, r.max);
        // multiport rejects a range whose ends are equal.
        let ports = if min == max {
            format!("{min}")
        } else {
            format!("{min}:{max}")
        };
        t.push_str(&format!(
            "-A cali-pi-bench -p {proto} {src} -m multiport --dports {ports} -j ACCEPT\n"
        ));
    }
    t.push_str("COMMIT\n");
    sh_in(&net.host, &t, &["iptables-restore"])
}

fn clear_iptables(net: &Net) -> Result<()> {
    sh_in(
        &net.host,
        "*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n",
        &["iptables-restore"],
    )?;
    let _ = sh_in(&net.host, "", &["iptables", "-X"]);
    let _ = sh_in(&net.host, "", &["ipset", "destroy"]);
    // iptables-nft leaves its tables behind; remove them.
    let _ = sh_in(&net.host, "", &["nft", "flush", "ruleset"]);
    Ok(())
}

/// The same rules as a plain linear nft chain (no sets, no families twice).
fn program_nft_linear(net: &Net, rules: &[SgRule]) -> Result<()> {
    let mut t = String::from("table inet linear {\n");
    for g in 0..GROUPS {
        let members: Vec<String> = (0..4).map(|j| group_member(g, j)).collect();
        t.push_str(&format!(
            "  set g{g} {{ type ipv4_addr; flags interval; elements = {{ {} }}; }}\n",
            members.join(", ")
        ));
    }
    t.push_str("  chain fwd-base {\n    type filter hook forward priority 0; policy accept;\n    ct state established,related accept\n    oifname \"tapserver\" jump pol\n    oifname \"tapserver\" drop\n  }\n  chain pol {\n");
    for r in rules {
        let src = match &r.source {
            Source::Cidr(cidr) => format!("ip saddr {cidr}"),
            Source::Group(group) => format!("ip saddr @g{group}"),
        };
        let (proto, min, max) = (r.proto, r.min, r.max);
        t.push_str(&format!("    {src} {proto} dport {min}-{max} accept\n"));
    }
    t.push_str("  }\n}\n");
    sh_in(&net.host, &t, &["nft", "-f", "-"])
}

fn clear_nft(net: &Net) -> Result<()> {
    sh_in(&net.host, "", &["nft", "flush", "ruleset"])
}

struct Opts {
    seconds: f64,
    rounds: usize,
    rules: Vec<usize>,
}

fn opts(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        seconds: 3.0,
        rounds: 3,
        rules: vec![1, 100, 1000],
    };
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).context("flag needs a value")?;
        match args[i].as_str() {
            "--seconds" => o.seconds = v.parse()?,
            "--rounds" => o.rounds = v.parse()?,
            "--rules" => o.rules = v.split(',').map(|s| s.parse()).collect::<Result<_, _>>()?,
            f => bail!("unknown flag {f}"),
        }
        i += 2;
    }
    Ok(o)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

type Program = fn(&Net, &[SgRule]) -> Result<()>;
type Clear = fn(&Net) -> Result<()>;

pub fn run(args: &[String]) -> Result<()> {
    let o = opts(args)?;
    if !nix::unistd::geteuid().is_root() {
        bail!("conn-rate needs root (network namespaces)");
    }
    let net = Net::up()?;
    let engines: [(&str, Program, Clear); 4] = [
        ("no-policy", |_, _| Ok(()), |_| Ok(())),
        ("calico-rs", program_calico, clear_nft),
        ("iptables+ipset", program_iptables, clear_iptables),
        ("nft-linear", program_nft_linear, clear_nft),
    ];
    println!(
        "new TCP connections/s through ingress policy (median of {} rounds of {} s)",
        o.rounds, o.seconds
    );
    println!("{:<16} {:>7} {:>10}", "ENGINE", "RULES", "CONN/S");
    let mut results: Vec<(&str, usize, f64)> = Vec::new();
    for n in &o.rules {
        let rules = sg_rules(*n);
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); engines.len()];
        // Rounds interleave the engines, so a busy moment hits all alike.
        for _ in 0..o.rounds {
            for (k, (_, program, clear)) in engines.iter().enumerate() {
                program(&net, &rules)?;
                net.rate(0.3)?; // warm-up (neighbour entries, caches)
                let (rate, failed) = net.rate(o.seconds)?;
                if failed > 0 {
                    bail!(
                        "{}: {failed} connections failed: the ruleset does not admit the client",
                        engines[k].0
                    );
                }
                samples[k].push(rate);
                clear(&net)?;
            }
        }
        for (k, (name, _, _)) in engines.iter().enumerate() {
            let m = median(samples[k].clone());
            println!("{name:<16} {n:>7} {m:>10.0}");
            results.push((name, *n, m));
        }
    }
    println!("\nratio of the largest to the smallest rule count:");
    let (lo, hi) = (o.rules[0], *o.rules.last().unwrap());
    for (name, _, _) in &engines {
        let at = |n: usize| results.iter().find(|r| r.0 == *name && r.1 == n).unwrap().2;
        println!("{name:<16} {:.2}", at(hi) / at(lo));
    }
    Ok(())
}
