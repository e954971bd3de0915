//! Differential check on the real kernel: random policies are applied to a
//! two-host lab, every workload probes every other on a few ports, and the
//! kernel's verdict must equal the reference evaluator's (crates/calc,
//! written straight from the semantics). Seeds are fixed, so a failure
//! reproduces; set CALICO_DIFF_SEED to explore others.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use calico_api::decode::decode_documents;
use calico_calc::reference::{evaluate, Packet, World};
use common::{sibling, Lab, SERIAL};

/// A small deterministic generator (no dependency needed for this).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

struct Wl {
    id: String,
    ns: &'static str,
    name: &'static str,
    host: &'static str,
    app: &'static str,
    tier: &'static str,
    ip: String,
}

const PORTS: [u16; 3] = [80, 81, 5432];
const SELECTORS: [&str; 7] = [
    "all()",
    "app == 'a'",
    "app == 'b'",
    "app in {'a', 'c'}",
    "has(tier)",
    "tier != 'x'",
    "!has(tier)",
];

fn rule(rng: &mut Rng, ips: &[String]) -> String {
    let action = *rng.pick(&["Allow", "Allow", "Allow", "Deny", "Pass", "Log"]);
    let mut r = format!("  - action: {action}\n");
    let with_ports = rng.chance(50);
    if with_ports || rng.chance(30) {
        r.push_str("    protocol: TCP\n");
    }
    let mut src = String::new();
    match rng.next() % 4 {
        0 => src.push_str(&format!("      selector: {:?}\n", rng.pick(&SELECTORS))),
        1 => src.push_str(&format!("      nets: [{}/32]\n", rng.pick(ips))),
        2 => src.push_str(&format!(
            "      notSelector: {:?}\n",
            rng.pick(&SELECTORS[1..])
        )),
        _ => {}
    }
    if !src.is_empty() {
        r.push_str(&format!("    source:\n{src}"));
    }
    if with_ports {
        let ports = *rng.pick(&["[80]", "[81]", "[5432]", "['80:81']", "[80, 5432]"]);
        let key = if rng.chance(20) { "notPorts" } else { "ports" };
        r.push_str(&format!("    destination:\n      {key}: {ports}\n"));
    }
    r
}

/// A random set of policies over the workloads' labels.
fn policies(rng: &mut Rng, ips: &[String]) -> String {
    let mut docs = Vec::new();
    let n = 2 + rng.next() % 4;
    for i in 0..n {
        let global = rng.chance(40);
        let mut d = if global {
            format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: diff-{i}\nspec:\n")
        } else {
            let ns = rng.pick(&["ns1", "ns2"]);
            format!("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: diff-{i}\n  namespace: {ns}\nspec:\n")
        };
        if rng.chance(60) {
            d.push_str(&format!("  order: {}\n", rng.next() % 5 * 10));
        }
        d.push_str(&format!("  selector: {:?}\n", rng.pick(&SELECTORS)));
        d.push_str("  types: [Ingress, Egress]\n  ingress:\n");
        for _ in 0..(1 + rng.next() % 3) {
            d.push_str(&rule(rng, ips));
        }
        // Egress mostly open, sometimes constrained, so both directions matter.
        if rng.chance(70) {
            d.push_str("  egress:\n  - action: Allow\n");
        } else {
            d.push_str("  egress:\n");
            d.push_str(&rule(rng, ips));
        }
        docs.push(d);
    }
    docs.join("---\n")
}

#[test]
fn kernel_verdicts_match_the_reference_evaluator() {
    if !calico_testsupport::require_root("kernel_verdicts_match_the_reference_evaluator") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up("d", 2, "local");
    let mut wls = vec![
        Wl {
            id: String::new(),
            ns: "ns1",
            name: "w1",
            host: "host1",
            app: "a",
            tier: "x",
            ip: String::new(),
        },
        Wl {
            id: String::new(),
            ns: "ns1",
            name: "w2",
            host: "host2",
            app: "b",
            tier: "",
            ip: String::new(),
        },
        Wl {
            id: String::new(),
            ns: "ns2",
            name: "w3",
            host: "host1",
            app: "c",
            tier: "y",
            ip: String::new(),
        },
        Wl {
            id: String::new(),
            ns: "ns2",
            name: "w4",
            host: "host2",
            app: "a",
            tier: "",
            ip: String::new(),
        },
    ];
    for w in wls.iter_mut() {
        let mut args = vec![
            "add-workload",
            "--host",
            w.host,
            "--namespace",
            w.ns,
            w.name,
        ];
        let app = format!("app={}", w.app);
        let tier = format!("tier={}", w.tier);
        args.extend(["--label", &app]);
        if !w.tier.is_empty() {
            args.extend(["--label", &tier]);
        }
        let out = lab.ok(&args);
        w.ip = out.split_whitespace().nth(3).unwrap().to_string();
        w.id = format!("{}/{}", w.ns, w.name);
    }
    let ips: Vec<String> = wls.iter().map(|w| w.ip.clone()).collect();
    let weps: String = wls
        .iter()
        .map(|w| {
            let tier = if w.tier.is_empty() { String::new() } else { format!("    tier: {}\n", w.tier) };
            format!(
                "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: {}\n  namespace: {}\n  labels:\n    app: {}\n{tier}spec:\n  node: {}\n  orchestrator: openstack\n  ipNetworks: [{}/32]\n",
                w.name, w.ns, w.app, w.host, w.ip
            )
        })
        .collect::<Vec<_>>()
        .join("---\n");

    let seed: u64 = std::env::var("CALICO_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe);
    let mut rng = Rng(seed);
    let probe = sibling("calico-probe");
    let mut failures = Vec::new();
    let mut checked = 0;
    let (mut allowed, mut denied) = (0, 0);
    for round in 0..4 {
        let pols = policies(&mut rng, &ips);
        // Replace the previous round's policies.
        let _ = lab.run(&["exec", "host1", "true"]);
        for kind in ["globalnetworkpolicies", "networkpolicies"] {
            let listed = lab.calicoctl(&["get", kind, "-A", "-o", "json"], "");
            let v: serde_json::Value = serde_json::from_str(&listed).unwrap();
            for item in v["items"].as_array().cloned().unwrap_or_default() {
                let name = item["metadata"]["name"].as_str().unwrap().to_string();
                let ns = item["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let mut args = vec!["delete", kind, name.as_str()];
                if !ns.is_empty() {
                    args.extend(["-n", ns.as_str()]);
                }
                lab.calicoctl(&args, "");
            }
        }
        lab.calicoctl(&["apply", "-f", "-"], &pols);
        let world = World::from_resources(
            decode_documents(&format!("{pols}---\n{weps}"))
                .unwrap()
                .into_iter()
                .map(|d| {
                    let mut r = d.resource;
                    calico_client::client::prepare(&mut r);
                    r
                }),
        );
        // The agents apply within milliseconds; give them a generous moment.
        std::thread::sleep(Duration::from_millis(1500));
        let mut jobs = Vec::new();
        for s in &wls {
            for d in &wls {
                if s.id != d.id {
                    for p in PORTS {
                        jobs.push((s, d, p));
                    }
                }
            }
        }
        for chunk in jobs.chunks(8) {
            let results: Vec<bool> = std::thread::scope(|sc| {
                let hs: Vec<_> = chunk
                    .iter()
                    .map(|(s, d, p)| {
                        let probe = probe.clone();
                        let lab = &lab;
                        sc.spawn(move || {
                            lab.exec(
                                &s.id,
                                &[
                                    probe.to_str().unwrap(),
                                    "tcp",
                                    &format!("{}:{p}", d.ip),
                                    "--timeout-ms",
                                    "400",
                                ],
                            )
                            .status
                            .success()
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for ((s, d, p), got) in chunk.iter().zip(results) {
                let pkt = Packet {
                    src: s.ip.parse::<IpAddr>().unwrap(),
                    dst: d.ip.parse::<IpAddr>().unwrap(),
                    protocol: 6,
                    src_port: 40000,
                    dst_port: *p,
                    icmp_type: None,
                    icmp_code: None,
                };
                let want = evaluate(&world, &pkt);
                checked += 1;
                if want.allowed {
                    allowed += 1;
                } else {
                    denied += 1;
                }
                // The agents converge asynchronously (and this machine is
                // small and busy): a disagreement must persist to count.
                let got = if want.allowed == got {
                    got
                } else {
                    let mut g = got;
                    for _ in 0..5 {
                        std::thread::sleep(Duration::from_millis(1000));
                        g = lab
                            .exec(
                                &s.id,
                                &[
                                    probe.to_str().unwrap(),
                                    "tcp",
                                    &format!("{}:{p}", d.ip),
                                    "--timeout-ms",
                                    "400",
                                ],
                            )
                            .status
                            .success();
                        if g == want.allowed {
                            eprintln!("round {round}: {} -> {}:{p} converged late", s.id, d.id);
                            break;
                        }
                    }
                    g
                };
                if want.allowed != got {
                    failures.push(format!(
                        "round {round}: {} -> {}:{p}: kernel {} but reference {} ({:?} / {:?})\npolicies:\n{pols}",
                        s.id,
                        d.id,
                        if got { "allowed" } else { "denied" },
                        if want.allowed { "allows" } else { "denies" },
                        want.egress.map(|e| e.by),
                        want.ingress.map(|i| i.by),
                    ));
                }
            }
        }
    }
    eprintln!("differential: {checked} probes ({allowed} expected allowed, {denied} denied), seed {seed:#x}");
    assert!(
        allowed > 0 && denied > 0,
        "the generator should produce both outcomes"
    );
    assert!(
        failures.is_empty(),
        "{} disagreement(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
