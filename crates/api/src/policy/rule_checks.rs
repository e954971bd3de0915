//! Validation of one policy rule and its source/destination, as upstream's
//! Go rules and CRD (CEL) rules for `Rule` and `EntityRule` define it.

use ipnet::IpNet;

use super::{Action, EntityRule, IcmpFields, Rule};
use crate::numorstring::Port;
use crate::validate::{check_annotations, check_name_ref, check_selector, FieldErrors};

fn check_icmp(field: &str, icmp: &IcmpFields, errs: &mut FieldErrors) {
    if let Some(t) = icmp.icmp_type {
        if !(0..=254).contains(&t) {
            errs.add(
                format!("{field}.type"),
                format!("ICMP type {t} is out of range 0-254"),
            );
        }
    }
    if let Some(c) = icmp.code {
        if icmp.icmp_type.is_none() {
            errs.add(
                format!("{field}.code"),
                "ICMP code specified without an ICMP type",
            );
        }
        if !(0..=255).contains(&c) {
            errs.add(
                format!("{field}.code"),
                format!("ICMP code {c} is out of range 0-255"),
            );
        }
    }
}

/// Rule nets must be CIDRs (`a.b.c.d/n`), strictly masked, as upstream's
/// `net` field rule and its CIDR parse in the rule check require.
fn parse_rule_net(s: &str) -> Result<IpNet, String> {
    let net: IpNet = s.parse().map_err(|_| {
        format!("{s:?} is not a valid CIDR (expected e.g. 10.0.0.0/16 or 10.0.0.1/32)")
    })?;
    if net.trunc() != net {
        return Err(format!(
            "{s:?} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// Checks the nets and notNets of one side; returns the IP family they fix
/// (starting from the rule's ipVersion or the other side's family).
fn check_nets(
    field: &str,
    e: &EntityRule,
    family: Option<u8>,
    errs: &mut FieldErrors,
) -> Option<u8> {
    let mut family = family;
    for (list_name, list) in [("nets", &e.nets), ("notNets", &e.not_nets)] {
        for (i, n) in list.iter().enumerate() {
            let f = format!("{field}.{list_name}[{i}]");
            let net = match parse_rule_net(n) {
                Ok(net) => net,
                Err(m) => {
                    errs.add(f, m);
                    continue;
                }
            };
            if list_name == "notNets" && net.prefix_len() == 0 {
                errs.add(
                    f.clone(),
                    format!("{n:?} matches every address, so negating it matches no traffic"),
                );
            }
            let fam = if net.addr().is_ipv4() { 4 } else { 6 };
            match family {
                Some(have) if have != fam => errs.add(
                    f,
                    format!(
                        "{n:?} is IPv{fam} but the rule is IPv{have}: all nets of a rule must be one IP family, matching ipVersion"
                    ),
                ),
                _ => family = Some(fam),
            }
        }
    }
    family
}

fn check_selectors(field: &str, e: &EntityRule, errs: &mut FieldErrors) {
    if !e.selector.is_empty() {
        if let Some(sel) = check_selector(&format!("{field}.selector"), &e.selector, errs) {
            if sel.uses_global() {
                errs.add(
                    format!("{field}.selector"),
                    "global() can only be used in a rule's namespaceSelector",
                );
            }
        }
    }
    if !e.not_selector.is_empty() {
        check_selector(&format!("{field}.notSelector"), &e.not_selector, errs);
    }
    if !e.namespace_selector.is_empty() {
        let f = format!("{field}.namespaceSelector");
        if let Some(sel) = check_selector(&f, &e.namespace_selector, errs) {
            if sel.uses_global() && sel.canonical() != "global()" {
                errs.add(f, "global() may not be combined with other terms");
            }
        }
    }
    if let Some(sa) = &e.service_accounts {
        if !sa.selector.is_empty() {
            check_selector(
                &format!("{field}.serviceAccounts.selector"),
                &sa.selector,
                errs,
            );
        }
    }
}

fn check_services(field: &str, e: &EntityRule, errs: &mut FieldErrors) {
    let Some(svc) = &e.services else {
        return;
    };
    if !e.selector.is_empty()
        || !e.not_selector.is_empty()
        || !e.namespace_selector.is_empty()
        || !e.nets.is_empty()
        || !e.not_nets.is_empty()
        || e.service_accounts.is_some()
    {
        errs.add(
            format!("{field}.services"),
            "services cannot be combined with selector, notSelector, namespaceSelector, nets, notNets or serviceAccounts",
        );
    }
    if svc.name.is_empty() {
        errs.add(
            format!("{field}.services.name"),
            "a service name is required",
        );
    } else {
        check_name_ref(
            &format!("{field}.services.name"),
            "service",
            &svc.name,
            errs,
        );
    }
    if !svc.namespace.is_empty() {
        check_name_ref(
            &format!("{field}.services.namespace"),
            "namespace",
            &svc.namespace,
            errs,
        );
    }
}

fn check_port_numbers(field: &str, e: &EntityRule, errs: &mut FieldErrors) {
    for (list_name, list) in [("ports", &e.ports), ("notPorts", &e.not_ports)] {
        for (i, p) in list.iter().enumerate() {
            if let Port::Range { min: 0, .. } = p {
                errs.add(
                    format!("{field}.{list_name}[{i}]"),
                    format!("invalid port {p}: port numbers are 1-65535"),
                );
            }
        }
    }
}

fn check_entity(
    field: &str,
    e: &EntityRule,
    family: Option<u8>,
    errs: &mut FieldErrors,
) -> Option<u8> {
    check_port_numbers(field, e, errs);
    check_selectors(field, e, errs);
    check_services(field, e, errs);
    check_nets(field, e, family, errs)
}

const PORTS_NEED_PROTOCOL: &str =
    "rules that specify ports must set protocol to TCP or UDP or SCTP";

/// Upstream: without a protocol only named ports may be given; with a
/// protocol that has no ports (anything but TCP, UDP, SCTP) none may.
fn check_ports_against_protocol(field: &str, r: &Rule, errs: &mut FieldErrors) {
    for (side, e) in [("source", &r.source), ("destination", &r.destination)] {
        for (list_name, list) in [("ports", &e.ports), ("notPorts", &e.not_ports)] {
            let bad = match &r.protocol {
                None => list.iter().any(|p| !matches!(p, Port::Named(_))),
                Some(p) => !list.is_empty() && !p.supports_ports(),
            };
            if bad {
                let detail = if r.protocol.is_none() {
                    "only named ports may be used without a protocol"
                } else {
                    "this protocol has no ports"
                };
                errs.add(
                    format!("{field}.{side}.{list_name}"),
                    format!("{PORTS_NEED_PROTOCOL} ({detail})"),
                );
            }
        }
    }
}

fn check_icmp_fields(field: &str, r: &Rule, errs: &mut FieldErrors) {
    for (name, icmp) in [("icmp", &r.icmp), ("notICMP", &r.not_icmp)] {
        if let Some(icmp) = icmp {
            if !r.protocol.as_ref().is_some_and(|p| p.is_icmp()) {
                errs.add(
                    format!("{field}.{name}"),
                    "ICMP fields require protocol ICMP or ICMPv6",
                );
            }
            check_icmp(&format!("{field}.{name}"), icmp, errs);
        }
    }
    for (name, proto) in [("protocol", &r.protocol), ("notProtocol", &r.not_protocol)] {
        if let (Some(p), Some(v)) = (proto, r.ip_version) {
            match p.number() {
                1 if v != 4 => errs.add(
                    format!("{field}.ipVersion"),
                    format!("{name} ICMP requires ipVersion 4 (use ICMPv6 for IPv6)"),
                ),
                58 if v != 6 => errs.add(
                    format!("{field}.ipVersion"),
                    format!("{name} ICMPv6 requires ipVersion 6 (use ICMP for IPv4)"),
                ),
                _ => {}
            }
        }
    }
}

fn check_http(field: &str, r: &Rule, errs: &mut FieldErrors) {
    let Some(http) = &r.http else {
        return;
    };
    if r.action != Action::Allow {
        errs.add(
            format!("{field}.http"),
            "HTTP match is only allowed with action Allow",
        );
    }
    if r.protocol.as_ref().is_some_and(|p| p.number() != 6) {
        errs.add(
            format!("{field}.http"),
            "HTTP match requires protocol TCP (or no protocol)",
        );
    }
    for (i, m) in http.methods.iter().enumerate() {
        if http.methods[..i].contains(m) {
            errs.add(
                format!("{field}.http.methods[{i}]"),
                format!("HTTP method {m:?} is listed twice"),
            );
        }
    }
    for (i, p) in http.paths.iter().enumerate() {
        let f = format!("{field}.http.paths[{i}]");
        match (&p.exact, &p.prefix) {
            (Some(v), None) | (None, Some(v)) => {
                if !v.starts_with('/') || v.contains(['?', ' ', '#']) {
                    errs.add(
                        f,
                        format!("invalid HTTP path {v:?}: it must start with '/' and may not contain '?', '#' or spaces"),
                    );
                }
            }
            _ => errs.add(f, "exactly one of exact or prefix is required"),
        }
    }
}

/// Validates one rule at `field` (e.g. `spec.ingress[0]`).
pub fn check_rule(field: &str, r: &Rule, errs: &mut FieldErrors) {
    if let Some(v) = r.ip_version {
        if v != 4 && v != 6 {
            errs.add(
                format!("{field}.ipVersion"),
                format!("ipVersion must be 4 or 6, not {v}"),
            );
        }
    }
    check_ports_against_protocol(field, r, errs);
    check_icmp_fields(field, r, errs);
    let version = r.ip_version.filter(|v| *v == 4 || *v == 6).map(|v| v as u8);
    let src = check_entity(&format!("{field}.source"), &r.source, version, errs);
    check_entity(
        &format!("{field}.destination"),
        &r.destination,
        src.or(version),
        errs,
    );
    if r.destination.services.is_some() && r.destination.has_ports() {
        errs.add(
            format!("{field}.destination.services"),
            "ports and notPorts cannot be specified with services",
        );
    }
    check_http(field, r, errs);
    if let Some(m) = &r.metadata {
        check_annotations(
            &format!("{field}.metadata.annotations"),
            &m.annotations,
            errs,
        );
    }
}
