//! `calico-bench calc`: the incremental calculation (`calico-calc`) on one
//! host with 10,000 local workload endpoints and 1,000 policies.
//!
//! The world is OpenStack-shaped: every endpoint is in namespace `openstack`
//! with 1-3 security-group labels (of 300 groups) plus `app` (of 100),
//! `tier`, `env` and `team` labels. Policies: 300 security-group
//! NetworkPolicies (`ossg.default.<sg>`, remote-group and CIDR rules, as
//! networking-calico writes them), 550 app NetworkPolicies (several share a
//! selector), 150 GlobalNetworkPolicies over env/team (some in a `security`
//! tier with Pass/Log/Deny). Times are wall clock for `on_input` + `flush`;
//! building the inputs is not timed.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Result;
use calico_api::endpoint::{EndpointPort, WorkloadEndpoint, WorkloadEndpointSpec};
use calico_api::numorstring::{Port, Protocol};
use calico_api::policy::{
    Action, EntityRule, GlobalNetworkPolicy, GlobalNetworkPolicySpec, NetworkPolicy,
    NetworkPolicySpec, Rule, Tier, TierSpec,
};
use calico_api::AnyResource;
use calico_calc::model::Update;
use calico_calc::{Calculator, HostIdentity, Input};

const ENDPOINTS: usize = 10_000;
const SGS: usize = 300;
const APPS: usize = 100;
const HOST: &str = "compute-1";
const NS: &str = "openstack";

/// Deterministic xorshift, so every run builds the same world.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn sg_label(sg: usize) -> String {
    format!("sg.projectcalico.org/openstack-{sg:04x}")
}

fn endpoint(i: usize, rng: &mut Rng, app: usize) -> WorkloadEndpoint {
    let mut labels = BTreeMap::new();
    for _ in 0..1 + rng.below(3) {
        let sg = rng.below(SGS);
        labels.insert(sg_label(sg), format!("sg-{sg}"));
    }
    labels.insert("app".into(), format!("app{app}"));
    labels.insert("tier".into(), ["web", "app", "db"][i % 3].into());
    labels.insert(
        "env".into(),
        ["prod", "staging", "dev"][rng.below(3)].into(),
    );
    labels.insert("team".into(), format!("team{}", rng.below(20)));
    let mut w = WorkloadEndpoint::new(
        format!("{HOST}-openstack-vm{i}-port{i}"),
        WorkloadEndpointSpec {
            orchestrator: "openstack".into(),
            node: HOST.into(),
            interface_name: format!("tap{i:011x}"),
            ip_networks: vec![format!(
                "10.{}.{}.{}/32",
                64 + i / 65536,
                (i / 256) % 256,
                i % 256
            )],
            profiles: vec![format!("kns.{NS}")],
            ports: if i.is_multiple_of(4) {
                vec![EndpointPort {
                    name: "http".into(),
                    protocol: Protocol::Name("TCP".into()),
                    port: 8080,
                    host_port: None,
                    host_ip: String::new(),
                }]
            } else {
                vec![]
            },
            ..Default::default()
        },
    );
    w.metadata.namespace = NS.into();
    w.metadata.labels = labels;
    w
}

fn tcp(ports: Vec<Port>, source: EntityRule) -> Rule {
    let mut r = Rule::new(Action::Allow);
    r.protocol = Some(Protocol::Name("TCP".into()));
    r.destination.ports = ports;
    r.source = source;
    r
}

fn from(selector: String) -> EntityRule {
    EntityRule {
        selector,
        ..Default::default()
    }
}

fn np(name: String, order: Option<f64>, selector: String, ingress: Vec<Rule>) -> AnyResource {
    let mut p = NetworkPolicy::new(
        name,
        NetworkPolicySpec {
            order,
            selector,
            ingress,
            egress: vec![Rule::new(Action::Allow)],
            ..Default::default()
        },
    );
    p.metadata.namespace = NS.into();
    AnyResource::NetworkPolicy(p)
}

fn policies(rng: &mut Rng) -> Vec<AnyResource> {
    let mut out = Vec::new();
    // Security groups, as networking-calico writes them.
    for sg in 0..SGS {
        let remote = rng.below(SGS);
        out.push(np(
            format!("ossg.default.{sg:04x}"),
            None,
            format!("has({})", sg_label(sg)),
            vec![
                from(format!("has({})", sg_label(remote))).into_rule(),
                tcp(
                    vec![Port::Range { min: 22, max: 22 }],
                    EntityRule {
                        nets: vec!["192.0.2.0/24".into()],
                        ..Default::default()
                    },
                ),
                tcp(
                    vec![Port::Range {
                        min: 8000,
                        max: 8100,
                    }],
                    from(format!("has({})", sg_label(sg))),
                ),
            ],
        ));
    }
    // App policies; every fifth shares its selector with the previous one.
    let mut app = 0;
    for i in 0..550 {
        if i % 5 != 4 {
            app = rng.below(APPS);
        }
        let client = rng.below(APPS);
        out.push(np(
            format!("app-{i}"),
            Some(100.0 + (i % 10) as f64),
            format!(
                "app == 'app{app}' && tier == '{}'",
                ["web", "app", "db"][i % 3]
            ),
            vec![
                tcp(
                    vec![Port::single(443), Port::Named("http".into())],
                    from(format!("app == 'app{client}'")),
                ),
                tcp(
                    vec![Port::single(5432)],
                    from(format!("app == 'app{app}' && tier == 'app'")),
                ),
            ],
        ));
    }
    // Global policies: a security tier over env/team, and default-tier ones.
    out.push(AnyResource::Tier(Tier::new(
        "security",
        TierSpec {
            order: Some(100.0),
            default_action: None,
        },
    )));
    for i in 0..150usize {
        let security = i.is_multiple_of(3);
        let selector = if i.is_multiple_of(2) {
            format!("env == '{}'", ["prod", "staging", "dev"][i % 3])
        } else {
            format!("team == 'team{}'", i % 20)
        };
        let mut log = Rule::new(Action::Log);
        log.protocol = Some(Protocol::Name("TCP".into()));
        let mut deny = Rule::new(Action::Deny);
        deny.source.nets = vec![format!("198.51.{}.0/24", i % 256)];
        let pass = Rule::new(Action::Pass);
        out.push(AnyResource::GlobalNetworkPolicy(GlobalNetworkPolicy::new(
            if security {
                format!("security.g{i}")
            } else {
                format!("g{i}")
            },
            GlobalNetworkPolicySpec {
                tier: if security {
                    "security".into()
                } else {
                    String::new()
                },
                order: Some(i as f64),
                selector,
                ingress: if security {
                    vec![log, deny, pass]
                } else {
                    vec![log, deny]
                },
                ..Default::default()
            },
        )));
    }
    out
}

trait IntoRule {
    fn into_rule(self) -> Rule;
}

impl IntoRule for EntityRule {
    fn into_rule(self) -> Rule {
        let mut r = Rule::new(Action::Allow);
        r.source = self;
        r
    }
}

/// A `/proc/self/status` figure in KiB (`VmHWM`, `VmRSS`).
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn timed(calc: &mut Calculator, inputs: Vec<Input>) -> (f64, Vec<Update>) {
    let t = Instant::now();
    for i in inputs {
        calc.on_input(i);
    }
    let out = calc.flush();
    (t.elapsed().as_secs_f64() * 1000.0, out)
}

fn summary(out: &[Update]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for u in out {
        let k = match u {
            Update::Config(_) => "config",
            Update::Pools(_) => "pools",
            Update::IpSetUpsert { .. } => "set+",
            Update::IpSetDelta { .. } => "setΔ",
            Update::IpSetRemove { .. } => "set-",
            Update::PolicyUpsert(_) => "policy+",
            Update::PolicyRemove(_) => "policy-",
            Update::EndpointUpsert(_) => "endpoint+",
            Update::EndpointRemove(_) => "endpoint-",
            Update::VtepUpsert(_) | Update::VtepRemove { .. } => "vtep",
            Update::RouteUpsert(_) => "route+",
            Update::RouteRemove { .. } => "route-",
            Update::InSync => "insync",
        };
        *counts.entry(k).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!("{} updates ({})", out.len(), parts.join(", "))
}

pub fn run() -> Result<()> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let rss_start = status_kib("VmRSS:");
    let mut inputs: Vec<Input> = (0..ENDPOINTS)
        .map(|i| {
            let app = rng.below(APPS);
            Input::Resource(AnyResource::WorkloadEndpoint(endpoint(i, &mut rng, app)))
        })
        .collect();
    let pols = policies(&mut rng);
    let n_pols = pols.len();
    // Keep only what the later steps change; the rest lives in `inputs`.
    let mut w = match &inputs[4242] {
        Input::Resource(AnyResource::WorkloadEndpoint(w)) => w.clone(),
        _ => unreachable!(),
    };
    let unchanged = inputs[1].clone();
    let mut gnp = pols
        .iter()
        .find_map(|p| match p {
            AnyResource::GlobalNetworkPolicy(g) if g.metadata.name == "g2" => Some(g.clone()),
            _ => None,
        })
        .expect("g2 exists");
    inputs.extend(pols.into_iter().map(Input::Resource));
    inputs.push(Input::InSync);
    let rss_inputs = status_kib("VmRSS:");

    let mut calc = Calculator::new(HostIdentity {
        node_name: HOST.into(),
        node_ip: None,
    });
    let (cold, out) = timed(&mut calc, inputs);
    let warnings = calc.take_warnings();
    println!(
        "calc: cold start, {ENDPOINTS} local endpoints + {n_pols} policies/tiers: {cold:.1} ms, {}",
        summary(&out)
    );
    if !warnings.is_empty() {
        println!("calc: {} warnings, first: {}", warnings.len(), warnings[0]);
    }
    drop(out);
    let rss_cold = status_kib("VmRSS:");

    // One endpoint's labels change: new app, one security group swapped.
    w.metadata.labels.insert("app".into(), "app7".into());
    let old_sg = w
        .metadata
        .labels
        .keys()
        .find(|k| k.starts_with("sg."))
        .cloned()
        .unwrap_or_default();
    w.metadata.labels.remove(&old_sg);
    w.metadata.labels.insert(sg_label(17), "sg-17".into());
    let (label_ms, out) = timed(
        &mut calc,
        vec![Input::Resource(AnyResource::WorkloadEndpoint(w))],
    );
    println!(
        "calc: one label change: {label_ms:.3} ms, {}",
        summary(&out)
    );

    // One policy's rules change (a GNP selecting ~a third of the endpoints).
    gnp.spec.ingress[1].source.nets = vec!["203.0.113.0/24".into()];
    let (rules_ms, out) = timed(
        &mut calc,
        vec![Input::Resource(AnyResource::GlobalNetworkPolicy(
            gnp.clone(),
        ))],
    );
    println!(
        "calc: one policy rule change (selects ~3,300 endpoints): {rules_ms:.3} ms, {}",
        summary(&out)
    );

    // The same policy's order changes: every endpoint it selects is re-resolved.
    gnp.spec.order = Some(0.5);
    let (order_ms, out) = timed(
        &mut calc,
        vec![Input::Resource(AnyResource::GlobalNetworkPolicy(gnp))],
    );
    println!(
        "calc: the same policy's order changes: {order_ms:.1} ms, {}",
        summary(&out)
    );

    // Re-sending an unchanged endpoint costs nothing downstream.
    let (noop_ms, out) = timed(&mut calc, vec![unchanged]);
    println!(
        "calc: unchanged endpoint re-sent: {noop_ms:.3} ms, {}",
        summary(&out)
    );

    println!(
        "calc: memory: peak RSS (VmHWM) {:.1} MiB; RSS {:.1} MiB at start, {:.1} MiB with the inputs built, {:.1} MiB after the cold start (inputs consumed)",
        mib(status_kib("VmHWM:")),
        mib(rss_start),
        mib(rss_inputs),
        mib(rss_cold)
    );
    Ok(())
}
