//! Shared test harness: feeds YAML resources to a Calculator, applies every
//! flushed update to a DesiredState (which checks the emission contract),
//! and evaluates packets with both the compiled verdict and the reference.
#![allow(dead_code)]

use std::net::IpAddr;

use calico_api::decode::decode_documents;
use calico_api::AnyResource;
use calico_calc::desired::DesiredState;
use calico_calc::model::Update;
use calico_calc::packet::{Packet, Verdict};
use calico_calc::reference::World;
use calico_calc::{verdict, Calculator, HostIdentity, Input};

pub const HOST: &str = "node1";

pub fn resources(yaml: &str) -> Vec<AnyResource> {
    decode_documents(yaml)
        .unwrap_or_else(|e| panic!("bad test YAML: {e:?}"))
        .into_iter()
        .map(|d| d.resource)
        .collect()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A workload endpoint document.
pub fn wep(ns: &str, name: &str, node: &str, addr: &str, labels: &[(&str, &str)]) -> String {
    let labels: String = labels
        .iter()
        .map(|(k, v)| format!("    {k}: '{v}'\n"))
        .collect();
    let labels = if labels.is_empty() {
        String::new()
    } else {
        format!("  labels:\n{labels}")
    };
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: {name}\n  namespace: {ns}\n{labels}spec:\n  node: {node}\n  orchestrator: openstack\n  interfaceName: tap{name}\n  ipNetworks: ['{addr}']\n"
    )
}

pub struct Harness {
    pub calc: Calculator,
    pub state: DesiredState,
    pub world: World,
    pub last: Vec<Update>,
}

impl Harness {
    pub fn new() -> Harness {
        Harness {
            calc: Calculator::new(HostIdentity {
                node_name: HOST.into(),
                node_ip: None,
            }),
            state: DesiredState::new(),
            world: World {
                local_node: Some(HOST.into()),
                ..World::default()
            },
            last: vec![],
        }
    }

    pub fn flush(&mut self) -> &[Update] {
        self.last = self.calc.flush();
        for u in &self.last {
            self.state.apply(u);
        }
        assert!(
            self.state.violations.is_empty(),
            "contract violations: {:#?}\nupdates: {:#?}",
            self.state.violations,
            self.last
        );
        &self.last
    }

    /// Feeds resources (replacing same-named ones in the reference world).
    pub fn apply(&mut self, yaml: &str) -> &[Update] {
        for r in resources(yaml) {
            self.replace_in_world(&r);
            self.world.add(r.clone());
            self.calc.on_input(Input::Resource(r));
        }
        self.flush()
    }

    pub fn delete(&mut self, kind: &'static str, ns: &str, name: &str) -> &[Update] {
        let w = &mut self.world;
        let keep = |m: &calico_api::ObjectMeta| !(m.namespace == ns && m.name == name);
        match kind {
            "WorkloadEndpoint" => w.workload_endpoints.retain(|x| keep(&x.metadata)),
            "NetworkPolicy" => w.network_policies.retain(|x| keep(&x.metadata)),
            "GlobalNetworkPolicy" => w.global_network_policies.retain(|x| keep(&x.metadata)),
            "Profile" => w.profiles.retain(|x| keep(&x.metadata)),
            "Tier" => w.tiers.retain(|x| keep(&x.metadata)),
            "NetworkSet" => w.network_sets.retain(|x| keep(&x.metadata)),
            "GlobalNetworkSet" => w.global_network_sets.retain(|x| keep(&x.metadata)),
            "HostEndpoint" => w.host_endpoints.retain(|x| keep(&x.metadata)),
            _ => {}
        }
        self.calc.on_input(Input::ResourceRemoved {
            kind,
            namespace: ns.into(),
            name: name.into(),
        });
        self.flush()
    }

    fn replace_in_world(&mut self, r: &AnyResource) {
        let m = r.metadata().clone();
        let keep = |x: &calico_api::ObjectMeta| !(x.namespace == m.namespace && x.name == m.name);
        let w = &mut self.world;
        match r {
            AnyResource::WorkloadEndpoint(_) => w.workload_endpoints.retain(|x| keep(&x.metadata)),
            AnyResource::NetworkPolicy(_) => w.network_policies.retain(|x| keep(&x.metadata)),
            AnyResource::GlobalNetworkPolicy(_) => {
                w.global_network_policies.retain(|x| keep(&x.metadata))
            }
            AnyResource::Profile(_) => w.profiles.retain(|x| keep(&x.metadata)),
            AnyResource::Tier(_) => w.tiers.retain(|x| keep(&x.metadata)),
            AnyResource::NetworkSet(_) => w.network_sets.retain(|x| keep(&x.metadata)),
            AnyResource::GlobalNetworkSet(_) => w.global_network_sets.retain(|x| keep(&x.metadata)),
            AnyResource::HostEndpoint(_) => w.host_endpoints.retain(|x| keep(&x.metadata)),
            _ => {}
        }
    }

    /// Evaluates with the compiled model and asserts the reference agrees.
    pub fn verdict(&self, pkt: Packet) -> Verdict {
        let v = verdict::evaluate(&self.state, &pkt);
        let r = calico_calc::reference::evaluate(&self.world, &pkt);
        assert_eq!(v, r, "compiled verdict vs reference for {pkt:?}");
        v
    }

    pub fn tcp(&self, src: &str, dst: &str, port: u16) -> Verdict {
        self.verdict(Packet::tcp(ip(src), ip(dst), 40000, port))
    }
}
