//! Compiles v3 rules into dataplane rules (`model::Rule`) and the IP sets
//! they reference.
//!
//! Selector semantics follow upstream's rule conversion: the namespace
//! restriction of a NetworkPolicy (or the rule's `namespaceSelector`) is
//! ANDed into the positive selector as soon as any of `selector`,
//! `notSelector` or `namespaceSelector` is used; `notSelector` itself is not
//! scoped. Named ports resolve against the endpoints the side's positive
//! selector matches (all endpoints if there is none).
//!
//! A rule that cannot be compiled faithfully (bad data, or a match the L3/L4
//! dataplane cannot enforce: `http`, `serviceAccounts`, `services`) becomes
//! a rule that can never match (`protocol` = `notProtocol` = 255), with a
//! warning: it never allows more than asked, and later rules keep their
//! positions (so "rule N" in a verdict is the N-th rule of the resource).

use std::sync::Arc;

use calico_api::numorstring::{Port, Protocol};
use calico_api::policy::{Action as ApiAction, EntityRule, IcmpFields, Rule as ApiRule};
use calico_api::selector::Selector;
use calico_api::validate::parse_net;
use ipnet::IpNet;

use crate::effsel::{EffSel, Scope};
use crate::hash::b64_hash;
use crate::model::{Action, Policy, PolicyId, PortRange, Rule, Side};

/// An IP set a compiled rule needs: the entities matching `sel` contribute
/// their addresses, or with `named_port` their (address, protocol, port)
/// for ports of that name and protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct IpSetDef {
    pub id: String,
    pub sel: EffSel,
    pub named_port: Option<(u8, String)>,
}

impl IpSetDef {
    pub(crate) fn selector(sel: EffSel) -> IpSetDef {
        IpSetDef {
            id: sel.set_id(),
            sel,
            named_port: None,
        }
    }

    pub(crate) fn named_port(sel: EffSel, protocol: u8, name: &str) -> IpSetDef {
        let key = format!("{}\0port={protocol}/{name}", sel.canonical());
        IpSetDef {
            id: format!("s:{}", b64_hash(key.as_bytes(), 38)),
            sel,
            named_port: Some((protocol, name.to_string())),
        }
    }
}

/// A compiled policy or profile and the IP sets its rules reference.
#[derive(Clone, Debug)]
pub(crate) struct Compiled {
    pub policy: Arc<Policy>,
    pub sets: Vec<Arc<IpSetDef>>,
}

/// Compiles the rules of one policy. `namespace` is the namespace of a
/// NetworkPolicy (None for global policies and profiles).
pub(crate) fn compile_policy(
    id: &PolicyId,
    namespace: Option<&str>,
    inbound: &[ApiRule],
    outbound: &[ApiRule],
    warnings: &mut Vec<String>,
) -> Compiled {
    let mut sets: Vec<Arc<IpSetDef>> = Vec::new();
    let mut compile_dir = |dir: &str, rules: &[ApiRule]| -> Vec<Rule> {
        let mut out = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            match compile_rule(id, namespace, dir, i, r, &mut sets) {
                Ok(rule) => out.push(rule),
                Err(why) => {
                    warnings.push(format!(
                        "{id}: {dir} rule {}: {why}; the rule never matches",
                        i + 1
                    ));
                    out.push(never_rule(id, dir, i, r.action));
                }
            }
        }
        out
    };
    let inbound = compile_dir("ingress", inbound);
    let outbound = compile_dir("egress", outbound);
    sets.sort_by(|a, b| a.id.cmp(&b.id));
    sets.dedup_by(|a, b| a.id == b.id);
    Compiled {
        policy: Arc::new(Policy {
            id: id.clone(),
            inbound,
            outbound,
        }),
        sets,
    }
}

/// Protocol number used (as both `protocol` and `notProtocol`) for a rule
/// that can never match.
pub const NEVER_PROTOCOL: u8 = 255;

fn action(a: ApiAction) -> Action {
    match a {
        ApiAction::Allow => Action::Allow,
        ApiAction::Deny => Action::Deny,
        ApiAction::Pass => Action::Pass,
        ApiAction::Log => Action::Log,
    }
}

fn never_rule(id: &PolicyId, dir: &str, index: usize, a: ApiAction) -> Rule {
    Rule {
        action: action(a),
        ip_version: None,
        protocol: Some(NEVER_PROTOCOL),
        not_protocol: Some(NEVER_PROTOCOL),
        icmp_type: None,
        icmp_code: None,
        not_icmp_type: None,
        not_icmp_code: None,
        src: Side::default(),
        dst: Side::default(),
        id: b64_hash(format!("{id}\0{dir}\0{index}\0never").as_bytes(), 16),
    }
}

fn compile_rule(
    id: &PolicyId,
    namespace: Option<&str>,
    dir: &str,
    index: usize,
    r: &ApiRule,
    sets: &mut Vec<Arc<IpSetDef>>,
) -> Result<Rule, String> {
    if r.http.is_some() {
        return Err("HTTP matches are only enforced by application-layer policy".into());
    }
    let ip_version = match r.ip_version {
        None => None,
        Some(v @ (4 | 6)) => Some(v as u8),
        Some(v) => return Err(format!("ipVersion {v} is not 4 or 6")),
    };
    let protocol = r.protocol.as_ref().map(protocol_number).transpose()?;
    let not_protocol = r.not_protocol.as_ref().map(protocol_number).transpose()?;
    let has_ports = |e: &EntityRule| !e.ports.is_empty() || !e.not_ports.is_empty();
    if (has_ports(&r.source) || has_ports(&r.destination))
        && !r.protocol.as_ref().is_some_and(Protocol::supports_ports)
    {
        return Err("rules with ports must set protocol TCP, UDP or SCTP".into());
    }
    let (icmp_type, icmp_code) = icmp(r.icmp.as_ref(), protocol)?;
    let (not_icmp_type, not_icmp_code) = icmp(r.not_icmp.as_ref(), protocol)?;
    let src = compile_side(&r.source, namespace, protocol, sets)?;
    let dst = compile_side(&r.destination, namespace, protocol, sets)?;
    let mut rule = Rule {
        action: action(r.action),
        ip_version,
        protocol,
        not_protocol,
        icmp_type,
        icmp_code,
        not_icmp_type,
        not_icmp_code,
        src,
        dst,
        id: String::new(),
    };
    let text = format!("{id}\0{dir}\0{index}\0{rule:?}");
    rule.id = b64_hash(text.as_bytes(), 16);
    Ok(rule)
}

fn protocol_number(p: &Protocol) -> Result<u8, String> {
    match p.number() {
        0 => Err(format!("unknown protocol {p}")),
        n => Ok(n),
    }
}

fn icmp(f: Option<&IcmpFields>, protocol: Option<u8>) -> Result<(Option<u8>, Option<u8>), String> {
    let Some(f) = f else {
        return Ok((None, None));
    };
    if !matches!(protocol, Some(1 | 58)) {
        return Err("ICMP fields require protocol ICMP or ICMPv6".into());
    }
    let t = f
        .icmp_type
        .map(|t| u8::try_from(t).map_err(|_| format!("ICMP type {t} out of range")))
        .transpose()?;
    let c = f
        .code
        .map(|c| u8::try_from(c).map_err(|_| format!("ICMP code {c} out of range")))
        .transpose()?;
    if c.is_some() && t.is_none() {
        return Err("ICMP code without type".into());
    }
    Ok((t, c))
}

fn parse_sel(field: &str, s: &str) -> Result<Option<Selector>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    Selector::parse(s)
        .map(Some)
        .map_err(|e| format!("invalid {field} {s:?}: {e}"))
}

fn parse_nets(list: &[String]) -> Result<Vec<IpNet>, String> {
    list.iter()
        .map(|n| parse_net(n).map(|n| n.trunc()))
        .collect()
}

fn compile_side(
    e: &EntityRule,
    namespace: Option<&str>,
    protocol: Option<u8>,
    sets: &mut Vec<Arc<IpSetDef>>,
) -> Result<Side, String> {
    if e.service_accounts.is_some() {
        return Err("serviceAccounts matches are not supported".into());
    }
    if e.services.is_some() {
        return Err("services matches are not supported".into());
    }
    let selector = parse_sel("selector", &e.selector)?;
    let not_selector = parse_sel("notSelector", &e.not_selector)?;
    let ns_selector = parse_sel("namespaceSelector", &e.namespace_selector)?;
    let scope = match (&ns_selector, namespace) {
        (Some(s), _) => Some(Scope::from_namespace_selector(s.clone())),
        (None, Some(ns)) => Some(Scope::Namespace(ns.to_string())),
        (None, None) => None,
    };
    let uses_selectors = selector.is_some() || not_selector.is_some() || ns_selector.is_some();
    let positive = match scope {
        Some(scope) if uses_selectors => Some(EffSel::new(selector.unwrap_or_default(), scope)),
        _ => selector.map(|s| EffSel::new(s, Scope::Any)),
    };
    let mut side = Side {
        nets: parse_nets(&e.nets)?,
        not_nets: parse_nets(&e.not_nets)?,
        ..Side::default()
    };
    if let Some(p) = &positive {
        let def = IpSetDef::selector(p.clone());
        side.ip_set = Some(def.id.clone());
        sets.push(Arc::new(def));
    }
    if let Some(s) = not_selector {
        let def = IpSetDef::selector(EffSel::new(s, Scope::Any));
        side.not_ip_sets.push(def.id.clone());
        sets.push(Arc::new(def));
    }
    let port_sel = positive.unwrap_or_else(|| EffSel::new(Selector::all(), Scope::Any));
    for (list, ranges, named) in [
        (&e.ports, &mut side.ports, &mut side.named_port_sets),
        (
            &e.not_ports,
            &mut side.not_ports,
            &mut side.not_named_port_sets,
        ),
    ] {
        for p in list {
            match p {
                Port::Range { min, max } if min <= max => ranges.push(PortRange {
                    min: *min,
                    max: *max,
                }),
                Port::Range { min, max } => return Err(format!("invalid port range {min}:{max}")),
                Port::Named(name) => {
                    let proto = protocol.ok_or("named ports need a protocol")?;
                    let def = IpSetDef::named_port(port_sel.clone(), proto, name);
                    if !named.contains(&def.id) {
                        named.push(def.id.clone());
                    }
                    sets.push(Arc::new(def));
                }
            }
        }
    }
    Ok(side)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PolicyKind;

    fn rule(yaml: &str) -> ApiRule {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn np_id() -> PolicyId {
        PolicyId {
            kind: PolicyKind::NetworkPolicy,
            namespace: "prod".into(),
            name: "p".into(),
        }
    }

    fn compile(ns: Option<&str>, yaml: &str) -> (Compiled, Vec<String>) {
        let mut w = Vec::new();
        let c = compile_policy(&np_id(), ns, &[rule(yaml)], &[], &mut w);
        (c, w)
    }

    fn set<'a>(c: &'a Compiled, id: &str) -> &'a IpSetDef {
        c.sets.iter().find(|s| s.id == id).unwrap()
    }

    #[test]
    fn namespaced_selector_and_unscoped_not_selector() {
        let (c, w) = compile(
            Some("prod"),
            "action: Allow\nsource:\n  selector: app == 'web'\n  notSelector: bad == 'x'\n",
        );
        assert!(w.is_empty(), "{w:?}");
        let r = &c.policy.inbound[0];
        let s = set(&c, r.src.ip_set.as_ref().unwrap());
        assert_eq!(s.sel.scope, Scope::Namespace("prod".into()));
        let n = set(&c, &r.src.not_ip_sets[0]);
        assert_eq!(n.sel.scope, Scope::Any);
        // notSelector alone still limits the source to the namespace.
        let (c, _) = compile(
            Some("prod"),
            "action: Allow\nsource:\n  notSelector: bad == 'x'\n",
        );
        let s = set(&c, c.policy.inbound[0].src.ip_set.as_ref().unwrap());
        assert!(s.sel.sel.is_all());
        assert_eq!(s.sel.scope, Scope::Namespace("prod".into()));
        // No selector fields: no set at all.
        let (c, _) = compile(
            Some("prod"),
            "action: Allow\nsource:\n  nets: [10.0.0.1/24]\n",
        );
        assert!(c.policy.inbound[0].src.ip_set.is_none());
        assert_eq!(
            c.policy.inbound[0].src.nets,
            vec!["10.0.0.0/24".parse::<IpNet>().unwrap()]
        );
        // Global policy: unscoped; namespaceSelector global() = non-namespaced.
        let (c, _) = compile(None, "action: Allow\nsource:\n  selector: a == 'b'\n");
        let s = set(&c, c.policy.inbound[0].src.ip_set.as_ref().unwrap());
        assert_eq!(s.sel.scope, Scope::Any);
        assert_eq!(s.id, Selector::parse("a == 'b'").unwrap().unique_id());
        let (c, _) = compile(
            None,
            "action: Allow\nsource:\n  namespaceSelector: global()\n",
        );
        let s = set(&c, c.policy.inbound[0].src.ip_set.as_ref().unwrap());
        assert_eq!(s.sel.scope, Scope::NonNamespaced);
    }

    #[test]
    fn ports_protocols_icmp() {
        let (c, w) = compile(
            Some("prod"),
            "action: Allow\nprotocol: TCP\ndestination:\n  ports: [80, '1000:2000', http]\n  notPorts: [81]\n",
        );
        assert!(w.is_empty(), "{w:?}");
        let r = &c.policy.inbound[0];
        assert_eq!(r.protocol, Some(6));
        assert_eq!(
            r.dst.ports,
            vec![
                PortRange { min: 80, max: 80 },
                PortRange {
                    min: 1000,
                    max: 2000
                }
            ]
        );
        assert_eq!(r.dst.not_ports, vec![PortRange { min: 81, max: 81 }]);
        let n = set(&c, &r.dst.named_port_sets[0]);
        assert_eq!(n.named_port, Some((6, "http".into())));
        assert!(n.sel.sel.is_all() && n.sel.scope == Scope::Any);
        let (c, w) = compile(
            None,
            "action: Deny\nprotocol: ICMP\nicmp: {type: 8, code: 0}\n",
        );
        assert!(w.is_empty());
        assert_eq!(
            (c.policy.inbound[0].icmp_type, c.policy.inbound[0].icmp_code),
            (Some(8), Some(0))
        );
        // Bad data: a never-matching placeholder with a warning.
        let (c, w) = compile(None, "action: Allow\ndestination:\n  ports: [80]\n");
        let never = |r: &Rule| r.protocol == Some(NEVER_PROTOCOL) && r.not_protocol == r.protocol;
        assert!(never(&c.policy.inbound[0]) && c.sets.is_empty());
        assert_eq!(w.len(), 1, "{w:?}");
        let (c, w) = compile(None, "action: Allow\nsource:\n  selector: 'a =='\n");
        assert!(never(&c.policy.inbound[0]) && w.len() == 1);
    }

    #[test]
    fn rule_ids_are_stable_and_distinct() {
        let r = rule("action: Allow\n");
        let mut w = Vec::new();
        let a = compile_policy(
            &np_id(),
            Some("prod"),
            &[r.clone(), r.clone()],
            std::slice::from_ref(&r),
            &mut w,
        );
        let b = compile_policy(
            &np_id(),
            Some("prod"),
            &[r.clone(), r.clone()],
            &[r],
            &mut w,
        );
        assert_eq!(a.policy, b.policy);
        let ids = [
            &a.policy.inbound[0].id,
            &a.policy.inbound[1].id,
            &a.policy.outbound[0].id,
        ];
        assert_eq!(ids[0].len(), 16);
        assert!(ids[0] != ids[1] && ids[0] != ids[2] && ids[1] != ids[2]);
    }
}
