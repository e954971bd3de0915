//! Policy on the real kernel: the real calculation (`calico-calc`) and the
//! real nftables dataplane programming a host namespace with dual-stack
//! workloads (see `topology.rs`).
//!
//! - `differential`: random policies over every match field, each kernel
//!   verdict compared with the reference evaluator.
//! - `conntrack`: an address given up by an endpoint loses its flows.

mod conntrack;
mod differential;
mod generate;
mod topology;

use calico_api::decode::decode_documents;
use calico_api::AnyResource;
use calico_calc::input::{HostIdentity, Input};
use calico_calc::Calculator;
use calico_dataplane::nft::{CommandNft, PolicyManager};
use calico_dataplane::{CommandConntrack, ConntrackManager, Manager};

use topology::{Topology, Workload};

const NODE: &str = "h";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether the test can run here; under CI=true a missing prerequisite is
/// a failure, elsewhere a counted skip.
fn prerequisites_met(test: &str, tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root".to_string());
    }
    for tool in tools {
        let found = std::process::Command::new(tool).arg("-V").output().is_ok();
        if !found {
            missing.push(format!("`{tool}`"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!("needs {}", missing.join(", "));
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {why} (CI=true: a missing prerequisite fails the test)"
    );
    println!("SKIP: {test}: {why}");
    false
}

/// The WorkloadEndpoint of a workload, with the given profiles.
fn workload_resource_with(w: &Workload, profiles: &str) -> AnyResource {
    let labels: String = w
        .labels
        .iter()
        .map(|(k, v)| format!("    {k}: {v}\n"))
        .collect();
    let doc = format!(
        "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: {NODE}-openstack-{name}-eth0\n  namespace: {ns}\n  labels:\n{labels}spec:\n  node: {NODE}\n  orchestrator: openstack\n  workload: {name}\n  endpoint: eth0\n  interfaceName: {iface}\n  ipNetworks: [{v4}/32, '{v6}/128']\n  profiles: [{profiles}]\n  ports:\n  - {{name: http, port: 80, protocol: TCP}}\n  - {{name: dns, port: 53, protocol: UDP}}\n  - {{name: pg, port: 5432, protocol: TCP}}\n",
        name = w.name,
        ns = w.namespace,
        iface = w.iface,
        v4 = w.v4,
        v6 = w.v6,
    );
    let mut r = decode_documents(&doc).unwrap().pop().unwrap().resource;
    r.apply_defaults();
    r.validate().unwrap();
    r
}

/// The WorkloadEndpoint as the differential test uses it.
fn workload_resource(w: &Workload) -> AnyResource {
    workload_resource_with(w, &format!("kns.{}, open", w.namespace))
}

/// The calculation and the dataplane of the simulated host.
struct Host {
    calc: Calculator,
    nft: PolicyManager<CommandNft>,
    conntrack: ConntrackManager<CommandConntrack>,
    applied: Vec<AnyResource>,
}

impl Host {
    /// The workloads' endpoints plus `extra` resources, programmed.
    fn new(topo: &Topology, extra: &[AnyResource]) -> Host {
        let mut calc = Calculator::new(HostIdentity {
            node_name: NODE.into(),
            node_ip: None,
        });
        for w in &topo.workloads {
            calc.on_input(Input::Resource(workload_resource(w)));
        }
        for r in extra {
            calc.on_input(Input::Resource(r.clone()));
        }
        calc.on_input(Input::InSync);
        let mut host = Host {
            calc,
            nft: PolicyManager::new(CommandNft::in_netns(topo.host.clone())),
            conntrack: ConntrackManager::new(CommandConntrack::in_netns(topo.host.clone())),
            applied: Vec::new(),
        };
        host.flush();
        host
    }

    /// Hands the calculation's changes to the dataplane and applies them,
    /// conntrack last (as the agent does).
    fn flush(&mut self) {
        for u in self.calc.flush() {
            self.nft.on_update(&u);
            self.conntrack.on_update(&u);
        }
        self.nft.apply().expect("nft apply");
        self.conntrack.apply().expect("conntrack clean-up");
    }

    /// Replaces the previous round's resources with `world` and programs it.
    fn program(&mut self, world: &[AnyResource]) {
        for r in self.applied.drain(..) {
            let m = r.metadata();
            self.calc.on_input(Input::ResourceRemoved {
                kind: r.kind(),
                namespace: m.namespace.clone(),
                name: m.name.clone(),
            });
        }
        for r in world {
            self.calc.on_input(Input::Resource(r.clone()));
            self.applied.push(r.clone());
        }
        self.flush();
    }
}
