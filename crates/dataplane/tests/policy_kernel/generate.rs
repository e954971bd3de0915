//! Random, valid v3 policy resources over the test's workloads, covering
//! every match field a rule has: nets, notNets, selector, notSelector,
//! namespaceSelector, ports, notPorts, named ports, protocol and notProtocol,
//! ICMP type/code and their negations, ipVersion; Allow, Deny, Pass and Log;
//! two tiers (one whose default is Pass); GlobalNetworkPolicy and
//! NetworkPolicy, with and without egress; and profile rules.

use calico_api::decode::decode_documents;
use calico_api::AnyResource;

use super::topology::Workload;

/// A small deterministic generator, so a seed reproduces a failure.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const SELECTORS: [&str; 8] = [
    "all()",
    "app == 'a'",
    "app == 'b'",
    "app in {'a', 'c'}",
    "has(role)",
    "role != 'x'",
    "!has(role)",
    "env == 'prod'",
];

const NS_SELECTORS: [&str; 4] = [
    "all()",
    "projectcalico.org/name == 'ns1'",
    "team == 'blue'",
    "!has(team)",
];

/// Numeric ports and named ports; the probes use 80, 81, 5432 (TCP) and
/// 53, 5432 (UDP).
const PORT_LISTS: [&str; 9] = [
    "[80]",
    "[81]",
    "[5432]",
    "['80:81']",
    "[80, 5432]",
    "[53]",
    "[http]",
    "[dns, pg]",
    "['1:1023']",
];

/// The nets a rule may name: single workloads of either family, ranges
/// covering some of them, and a mix.
fn nets(rng: &mut Rng, wls: &[Workload]) -> String {
    let w = rng.pick(wls);
    let choice = rng.below(6);
    match choice {
        0 => format!("[{}/32]", w.v4),
        1 => format!("['{}/128']", w.v6),
        2 => format!("[{}/32, '{}/128']", w.v4, rng.pick(wls).v6),
        3 => "[198.18.10.0/29]".to_string(),
        4 => "['fd00:10::/125']".to_string(),
        _ => "[198.19.0.0/24]".to_string(),
    }
}

fn entity(rng: &mut Rng, wls: &[Workload], with_ports: bool, global: bool) -> String {
    let mut e = String::new();
    if rng.chance(25) {
        e.push_str(&format!("      nets: {}\n", nets(rng, wls)));
    }
    if rng.chance(25) {
        e.push_str(&format!("      notNets: {}\n", nets(rng, wls)));
    }
    if rng.chance(30) {
        e.push_str(&format!("      selector: {:?}\n", rng.pick(&SELECTORS)));
    }
    if rng.chance(15) {
        e.push_str(&format!(
            "      notSelector: {:?}\n",
            rng.pick(&SELECTORS[1..])
        ));
    }
    if global && rng.chance(15) || !global && rng.chance(5) {
        e.push_str(&format!(
            "      namespaceSelector: {:?}\n",
            rng.pick(&NS_SELECTORS)
        ));
    }
    if with_ports {
        let key = if rng.chance(25) { "notPorts" } else { "ports" };
        e.push_str(&format!("      {key}: {}\n", rng.pick(&PORT_LISTS)));
    }
    e
}

fn icmp_fields(rng: &mut Rng, v6: bool) -> String {
    let types: &[u8] = if v6 { &[128, 129, 1] } else { &[8, 0, 3] };
    let t = rng.pick(types);
    if rng.chance(50) {
        format!("{{type: {t}, code: {}}}", rng.below(2))
    } else {
        format!("{{type: {t}}}")
    }
}

/// One rule as YAML list item (indented for `spec.ingress`/`egress`).
pub fn rule(rng: &mut Rng, wls: &[Workload], global: bool) -> String {
    let action = *rng.pick(&[
        "Allow", "Allow", "Allow", "Allow", "Deny", "Pass", "Pass", "Log",
    ]);
    let mut r = format!("  - action: {action}\n");
    let protocol = *rng.pick(&["", "", "", "TCP", "TCP", "UDP", "ICMP", "ICMPv6", "6"]);
    if !protocol.is_empty() {
        r.push_str(&format!("    protocol: {protocol}\n"));
    }
    if rng.chance(10) {
        let np = rng.pick(&["TCP", "UDP", "ICMP"]);
        r.push_str(&format!("    notProtocol: {np}\n"));
    }
    if rng.chance(20) {
        r.push_str(&format!("    ipVersion: {}\n", rng.pick(&[4, 6])));
    }
    let icmp_v6 = match protocol {
        "ICMP" => Some(false),
        "ICMPv6" => Some(true),
        _ => None,
    };
    if let Some(v6) = icmp_v6 {
        if rng.chance(50) {
            r.push_str(&format!("    icmp: {}\n", icmp_fields(rng, v6)));
        } else if rng.chance(30) {
            r.push_str(&format!("    notICMP: {}\n", icmp_fields(rng, v6)));
        }
    }
    let portable = matches!(protocol, "TCP" | "UDP" | "6");
    let src_ports = portable && rng.chance(15);
    let src = entity(rng, wls, src_ports, global);
    let dst_ports = portable && rng.chance(60);
    let dst = entity(rng, wls, dst_ports, global);
    if !src.is_empty() {
        r.push_str(&format!("    source:\n{src}"));
    }
    if !dst.is_empty() {
        r.push_str(&format!("    destination:\n{dst}"));
    }
    r
}

fn rules(rng: &mut Rng, wls: &[Workload], global: bool, max: u64) -> String {
    (0..1 + rng.below(max))
        .map(|_| rule(rng, wls, global))
        .collect()
}

/// One policy document: tier `default` or `t1`, global or namespaced.
fn policy(rng: &mut Rng, wls: &[Workload], i: usize) -> String {
    let global = rng.chance(40);
    let tier = if rng.chance(35) { "t1" } else { "default" };
    let name = if tier == "default" {
        format!("diff-{i}")
    } else {
        format!("t1.diff-{i}")
    };
    let mut d = if global {
        format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: {name}\nspec:\n")
    } else {
        let ns = rng.pick(&["ns1", "ns2"]);
        format!("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n")
    };
    d.push_str(&format!("  tier: {tier}\n"));
    if rng.chance(60) {
        d.push_str(&format!("  order: {}\n", rng.below(5) * 10));
    }
    d.push_str(&format!("  selector: {:?}\n", rng.pick(&SELECTORS)));
    if global && rng.chance(20) {
        d.push_str(&format!(
            "  namespaceSelector: {:?}\n",
            rng.pick(&NS_SELECTORS)
        ));
    }
    let mut ingress = rules(rng, wls, global, 4);
    let mut egress = rules(rng, wls, global, 3);
    // A closing catch-all keeps both verdicts common (and shadows nothing
    // the generator cares about: earlier rules still decide first).
    for list in [&mut ingress, &mut egress] {
        if rng.chance(40) {
            let last = *rng.pick(&["  - action: Allow\n", "  - action: Pass\n"]);
            list.push_str(last);
        }
    }
    match rng.below(10) {
        // Ingress only: egress not policed by this policy.
        0..=3 => d.push_str(&format!("  types: [Ingress]\n  ingress:\n{ingress}")),
        // Both types, no egress rules: egress denied by the tier.
        4 => d.push_str(&format!(
            "  types: [Ingress, Egress]\n  ingress:\n{ingress}"
        )),
        5..=7 => d.push_str(&format!(
            "  types: [Ingress, Egress]\n  ingress:\n{ingress}  egress:\n{egress}"
        )),
        _ => d.push_str(&format!("  types: [Egress]\n  egress:\n{egress}")),
    }
    d
}

/// The namespace profiles `kns.ns1`/`kns.ns2`: labels for namespaceSelector.
fn namespace_profiles() -> Vec<String> {
    [("kns.ns1", "team: blue"), ("kns.ns2", "team: red")]
        .iter()
        .map(|(name, labels)| format!(
            "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata:\n  name: {name}\nspec:\n  labelsToApply:\n    {labels}\n"
        ))
        .collect()
}

/// Profile `open`, which every workload carries after its namespace's: random
/// rules ending in an Allow most of the time, so profiles decide some packets.
fn open_profile(rng: &mut Rng, wls: &[Workload]) -> String {
    let mut d = "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata:\n  name: open\nspec:\n"
        .to_string();
    d.push_str(&format!("  ingress:\n{}", rules(rng, wls, true, 2)));
    if rng.chance(70) {
        d.push_str("  - action: Allow\n");
    }
    d.push_str(&format!("  egress:\n{}", rules(rng, wls, true, 2)));
    if rng.chance(80) {
        d.push_str("  - action: Allow\n");
    }
    d
}

fn tiers(rng: &mut Rng) -> String {
    let default = if rng.chance(30) { "Pass" } else { "Deny" };
    format!("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: t1\nspec:\n  order: 100\n  defaultAction: {default}\n")
}

/// Decodes and validates one document; None if the generator produced
/// something the API rejects (it then draws again).
fn valid(doc: &str) -> Option<AnyResource> {
    let mut r = decode_documents(doc).ok()?.pop()?.resource;
    if r.info().namespaced && r.metadata().namespace.is_empty() {
        r.metadata_mut().namespace = "default".into();
    }
    r.apply_defaults();
    r.validate().ok()?;
    Some(r)
}

/// A random valid world: tier, profiles and 2–6 policies. Returns the
/// resources and their YAML (printed when a verdict disagrees).
pub fn world(rng: &mut Rng, wls: &[Workload]) -> (Vec<AnyResource>, String) {
    let mut docs = vec![tiers(rng)];
    docs.extend(namespace_profiles());
    loop {
        let open = open_profile(rng, wls);
        if valid(&open).is_some() {
            docs.push(open);
            break;
        }
    }
    let want = 2 + rng.below(5) as usize;
    let mut i = 0;
    while docs.len() < want + 4 {
        docs.push(policy(rng, wls, i));
        i += 1;
        if valid(docs.last().unwrap()).is_none() {
            docs.pop();
        }
    }
    let mut out = Vec::new();
    for d in &docs {
        out.push(valid(d).unwrap_or_else(|| panic!("invalid fixed document:\n{d}")));
    }
    (out, docs.join("---\n"))
}
