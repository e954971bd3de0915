//! Evaluates a packet against the COMPILED model — the ordered tiers,
//! policies and IP sets the dataplane programs — with the same rules the
//! dataplane chains implement (calico-core §4):
//!
//! for each tier with policies in the direction: each policy's rules in
//! order; Allow/Deny decide, Pass jumps to the next tier, Log continues; at
//! the end of the tier the tier's default (Deny, or Pass on to the next).
//! After the tiers (only reached by Pass or when no tier applies), the
//! profiles in order (Pass ends that profile); nothing allowed ⇒ drop.

use std::net::IpAddr;

pub use crate::desired::DesiredState;
use crate::model::IpSetMember;
use crate::model::{
    Action, LocalEndpoint, PolicyId, PolicyKind, PortRange, Rule, Side, TierDefault,
};
pub use crate::packet::{Decision, Packet, Verdict};

/// The verdict for `pkt` under `state`.
pub fn evaluate(state: &DesiredState, pkt: &Packet) -> Verdict {
    let find = |ip: IpAddr| {
        state
            .endpoints
            .values()
            .find(|e| e.addrs.iter().any(|a| a.contains(&ip)))
    };
    Verdict::new(
        find(pkt.src).map(|e| decide(state, e, true, pkt)),
        find(pkt.dst).map(|e| decide(state, e, false, pkt)),
    )
}

/// The decision for one endpoint and direction (`egress`: the packet leaves
/// the endpoint).
pub fn decide(state: &DesiredState, ep: &LocalEndpoint, egress: bool, pkt: &Packet) -> Decision {
    let rules_of = |id: &PolicyId| {
        state
            .policies
            .get(id)
            .map(|p| if egress { &p.outbound } else { &p.inbound })
    };
    'tiers: for tier in &ep.tiers {
        let pols = if egress { &tier.egress } else { &tier.ingress };
        if pols.is_empty() {
            continue;
        }
        for id in pols {
            for (i, r) in rules_of(id).into_iter().flatten().enumerate() {
                if !rule_matches(state, r, pkt) {
                    continue;
                }
                let by = || format!("{id} (rule {})", i + 1);
                match r.action {
                    Action::Allow => {
                        return Decision {
                            allowed: true,
                            by: by(),
                        }
                    }
                    Action::Deny => {
                        return Decision {
                            allowed: false,
                            by: by(),
                        }
                    }
                    Action::Pass => continue 'tiers,
                    Action::Log => {}
                }
            }
        }
        if tier.default_action == TierDefault::Deny {
            return Decision {
                allowed: false,
                by: format!("end of tier {}", tier.name),
            };
        }
    }
    'profiles: for name in &ep.profiles {
        let id = PolicyId {
            kind: PolicyKind::Profile,
            namespace: String::new(),
            name: name.clone(),
        };
        for r in rules_of(&id).into_iter().flatten() {
            if !rule_matches(state, r, pkt) {
                continue;
            }
            match r.action {
                Action::Allow => {
                    return Decision {
                        allowed: true,
                        by: id.to_string(),
                    }
                }
                Action::Deny => {
                    return Decision {
                        allowed: false,
                        by: id.to_string(),
                    }
                }
                Action::Pass => continue 'profiles,
                Action::Log => {}
            }
        }
    }
    Decision {
        allowed: false,
        by: "no profile".into(),
    }
}

/// Whether a compiled rule matches a packet.
pub fn rule_matches(state: &DesiredState, r: &Rule, pkt: &Packet) -> bool {
    if r.ip_version.is_some_and(|v| v != pkt.ip_version()) {
        return false;
    }
    if r.protocol.is_some_and(|p| p != pkt.protocol) {
        return false;
    }
    if r.not_protocol.is_some_and(|p| p == pkt.protocol) {
        return false;
    }
    if let Some(t) = r.icmp_type {
        if pkt.icmp_type != Some(t) || r.icmp_code.is_some_and(|c| pkt.icmp_code != Some(c)) {
            return false;
        }
    }
    if let Some(t) = r.not_icmp_type {
        if pkt.icmp_type == Some(t) && r.not_icmp_code.is_none_or(|c| pkt.icmp_code == Some(c)) {
            return false;
        }
    }
    side_matches(state, &r.src, pkt.src, pkt.protocol, pkt.src_port)
        && side_matches(state, &r.dst, pkt.dst, pkt.protocol, pkt.dst_port)
}

fn in_ranges(ranges: &[PortRange], port: u16) -> bool {
    ranges.iter().any(|r| r.min <= port && port <= r.max)
}

fn in_set(state: &DesiredState, id: &str, ip: IpAddr) -> bool {
    state.ip_sets.get(id).is_some_and(|s| {
        s.iter()
            .any(|m| matches!(m, IpSetMember::Net(n) if n.contains(&ip)))
    })
}

fn in_port_set(state: &DesiredState, id: &str, ip: IpAddr, proto: u8, port: u16) -> bool {
    state.ip_sets.get(id).is_some_and(|s| {
        s.iter().any(|m| {
            matches!(m, IpSetMember::NetPort { net, protocol, port: p }
                if net.contains(&ip) && *protocol == proto && *p == port)
        })
    })
}

fn side_matches(state: &DesiredState, s: &Side, ip: IpAddr, proto: u8, port: u16) -> bool {
    if !s.nets.is_empty() && !s.nets.iter().any(|n| n.contains(&ip)) {
        return false;
    }
    if s.not_nets.iter().any(|n| n.contains(&ip)) {
        return false;
    }
    if s.ip_set.as_ref().is_some_and(|id| !in_set(state, id, ip)) {
        return false;
    }
    if s.not_ip_sets.iter().any(|id| in_set(state, id, ip)) {
        return false;
    }
    if (!s.ports.is_empty() || !s.named_port_sets.is_empty())
        && !in_ranges(&s.ports, port)
        && !s
            .named_port_sets
            .iter()
            .any(|id| in_port_set(state, id, ip, proto, port))
    {
        return false;
    }
    if in_ranges(&s.not_ports, port) {
        return false;
    }
    !s.not_named_port_sets
        .iter()
        .any(|id| in_port_set(state, id, ip, proto, port))
}
