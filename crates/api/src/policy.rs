//! Policy kinds: NetworkPolicy, GlobalNetworkPolicy, Profile and Tier, and the
//! rule model they share.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::numorstring::{go_float, Port, Protocol};
use crate::resource::{resource, Spec};
use crate::validate::{check_labels, check_selector, parse_net, FieldErrors, NAME_RULE};

/// The tier policies belong to when they name none.
pub const DEFAULT_TIER: &str = "default";
/// Order of the `default` tier, as upstream.
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Allow,
    Deny,
    Log,
    Pass,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyType {
    Ingress,
    Egress,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IcmpFields {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpPath {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<HttpPath>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccountMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceMatch {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// The source or destination side of a rule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_selector: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<ServiceMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub not_selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccountMatch>,
}

impl EntityRule {
    pub fn is_empty(&self) -> bool {
        *self == EntityRule::default()
    }
    fn has_ports(&self) -> bool {
        !self.ports.is_empty() || !self.not_ports.is_empty()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One ordered policy rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpFields>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<Protocol>,
    #[serde(default, rename = "notICMP", skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<IcmpFields>,
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub source: EntityRule,
    #[serde(default, skip_serializing_if = "EntityRule::is_empty")]
    pub destination: EntityRule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<RuleMetadata>,
}

impl Rule {
    pub fn new(action: Action) -> Rule {
        Rule {
            action,
            ip_version: None,
            protocol: None,
            icmp: None,
            not_protocol: None,
            not_icmp: None,
            source: EntityRule::default(),
            destination: EntityRule::default(),
            http: None,
            metadata: None,
        }
    }
}

/// Where a rule sits: in a namespaced policy (empty namespaceSelector means
/// "my namespace") or a global one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RuleScope {
    Namespaced,
    Global,
}

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

fn check_entity(
    field: &str,
    e: &EntityRule,
    rule_ip_version: Option<i64>,
    errs: &mut FieldErrors,
) -> Option<u8> {
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
    let mut family: Option<u8> = rule_ip_version.map(|v| v as u8);
    for (list_name, list) in [("nets", &e.nets), ("notNets", &e.not_nets)] {
        for (i, n) in list.iter().enumerate() {
            let f = format!("{field}.{list_name}[{i}]");
            match parse_net(n) {
                Ok(net) => {
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
                Err(m) => errs.add(f, m),
            }
        }
    }
    if !e.selector.is_empty() {
        if let Some(sel) = check_selector(&format!("{field}.selector"), &e.selector, errs) {
            if sel.uses_global() {
                errs.add(
                    format!("{field}.selector"),
                    "global() may not be used in a rule selector",
                );
            }
        }
    }
    if !e.not_selector.is_empty() {
        if let Some(sel) = check_selector(&format!("{field}.notSelector"), &e.not_selector, errs) {
            if sel.uses_global() {
                errs.add(
                    format!("{field}.notSelector"),
                    "global() may not be used in a rule selector",
                );
            }
        }
    }
    if !e.namespace_selector.is_empty() {
        if let Some(sel) = check_selector(
            &format!("{field}.namespaceSelector"),
            &e.namespace_selector,
            errs,
        ) {
            if sel.uses_global() && sel.canonical() != "global()" {
                errs.add(
                    format!("{field}.namespaceSelector"),
                    "global() may not be combined with other terms",
                );
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
    if let Some(svc) = &e.services {
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
        }
    }
    family
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
    let has_ports = r.source.has_ports() || r.destination.has_ports();
    if has_ports {
        let ok = r.protocol.as_ref().is_some_and(|p| p.supports_ports());
        if !ok {
            let which = if r.destination.has_ports() {
                "destination"
            } else {
                "source"
            };
            errs.add(
                format!("{field}.protocol"),
                format!("rules that specify ports must set protocol to TCP or UDP or SCTP (the rule has {which} ports)"),
            );
        }
    }
    for (name, icmp, proto) in [
        ("icmp", &r.icmp, &r.protocol),
        ("notICMP", &r.not_icmp, &r.protocol),
    ] {
        if let Some(icmp) = icmp {
            if !proto.as_ref().is_some_and(|p| p.is_icmp()) {
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
    let src = check_entity(&format!("{field}.source"), &r.source, r.ip_version, errs);
    let dst = check_entity(
        &format!("{field}.destination"),
        &r.destination,
        r.ip_version,
        errs,
    );
    if let (Some(a), Some(b)) = (src, dst) {
        if a != b {
            errs.add(
                format!("{field}.destination.nets"),
                "source and destination nets must be of the same IP family",
            );
        }
    }
    if let Some(http) = &r.http {
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
    if let Some(m) = &r.metadata {
        crate::validate::check_annotations(
            &format!("{field}.metadata.annotations"),
            &m.annotations,
            errs,
        );
    }
}

/// Upstream forbids HTTP matches in egress rules (they are enforced by the
/// destination's sidecar, so only ingress makes sense).
fn check_no_http_in_egress(egress: &[Rule], errs: &mut FieldErrors) {
    for (i, r) in egress.iter().enumerate() {
        if r.http.is_some() {
            errs.add(
                format!("spec.egress[{i}].http"),
                "HTTP match is not allowed in egress rules (only in ingress rules)",
            );
        }
    }
}

/// A dotted policy name is `<tier>.<name>`: the part before the first dot
/// must be the policy's tier (upstream rejects other prefixes as
/// "incorrectly formatted"). Names written by integrations (`knp.default.`,
/// `ossg.default.`) are exempt.
fn check_tier_prefix(kind: &str, name: &str, tier: &str, errs: &mut FieldErrors) {
    if name.starts_with("knp.default.") || name.starts_with("ossg.default.") {
        return;
    }
    let tier = if tier.is_empty() { DEFAULT_TIER } else { tier };
    if let Some((prefix, rest)) = name.split_once('.') {
        if prefix != tier {
            errs.add(
                "metadata.name",
                format!(
                    "invalid name {name:?}: a {kind} name may only contain a dot after its tier's name, \
                     and this policy is in tier {tier:?}; use a name without dots (e.g. {:?}) or set spec.tier: {prefix}",
                    format!("{prefix}-{rest}").replace('.', "-")
                ),
            );
        }
    }
}

fn check_rules(field: &str, rules: &[Rule], errs: &mut FieldErrors) {
    for (i, r) in rules.iter().enumerate() {
        check_rule(&format!("{field}[{i}]"), r, errs);
    }
}

/// Upstream's default for `types`: ingress unless the policy has only egress
/// rules; both when it has both.
pub fn default_types(ingress: &[Rule], egress: &[Rule]) -> Vec<PolicyType> {
    match (ingress.is_empty(), egress.is_empty()) {
        (_, true) => vec![PolicyType::Ingress],
        (true, false) => vec![PolicyType::Egress],
        (false, false) => vec![PolicyType::Ingress, PolicyType::Egress],
    }
}

fn check_types(types: &[PolicyType], ingress: &[Rule], egress: &[Rule], errs: &mut FieldErrors) {
    let mut seen = Vec::new();
    for t in types {
        if seen.contains(t) {
            errs.add("spec.types", format!("{t:?} is listed twice"));
        }
        seen.push(*t);
    }
    if !types.is_empty() {
        if !ingress.is_empty() && !types.contains(&PolicyType::Ingress) {
            errs.add(
                "spec.types",
                "the policy has ingress rules but types does not include Ingress",
            );
        }
        if !egress.is_empty() && !types.contains(&PolicyType::Egress) {
            errs.add(
                "spec.types",
                "the policy has egress rules but types does not include Egress",
            );
        }
    }
}

fn check_tier_name(tier: &str, errs: &mut FieldErrors) {
    if !tier.is_empty() && !crate::validate::is_dns1123_label(tier) {
        errs.add(
            "spec.tier",
            format!("invalid tier name {tier:?}: {NAME_RULE}"),
        );
    }
}

fn check_order(order: Option<f64>, errs: &mut FieldErrors) {
    if let Some(o) = order {
        if !o.is_finite() {
            errs.add("spec.order", "order must be a finite number");
        }
    }
}

const PERFORMANCE_HINTS: [&str; 1] = ["AssumeNeededOnEveryNode"];

fn check_hints(hints: &[String], errs: &mut FieldErrors) {
    for (i, h) in hints.iter().enumerate() {
        if !PERFORMANCE_HINTS.contains(&h.as_str()) {
            errs.add(
                format!("spec.performanceHints[{i}]"),
                format!("unknown performance hint {h:?}: expected AssumeNeededOnEveryNode"),
            );
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicySpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tier: String,
    #[serde(default, with = "go_float", skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<PolicyType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<String>,
}

/// The fields NetworkPolicy and GlobalNetworkPolicy share, borrowed, so
/// their defaults and checks are written once.
struct CommonPolicy<'a> {
    kind: &'static str,
    tier: &'a str,
    order: Option<f64>,
    selector: &'a str,
    service_account_selector: &'a str,
    types: &'a [PolicyType],
    ingress: &'a [Rule],
    egress: &'a [Rule],
    performance_hints: &'a [String],
}

fn default_common(
    tier: &mut String,
    types: &mut Vec<PolicyType>,
    ingress: &[Rule],
    egress: &[Rule],
) {
    if tier.is_empty() {
        *tier = DEFAULT_TIER.to_string();
    }
    if types.is_empty() {
        *types = default_types(ingress, egress);
    }
}

fn validate_common(p: CommonPolicy<'_>, meta: &ObjectMeta, errs: &mut FieldErrors) {
    check_tier_name(p.tier, errs);
    check_tier_prefix(p.kind, &meta.name, p.tier, errs);
    check_order(p.order, errs);
    if let Some(sel) = check_selector("spec.selector", p.selector, errs) {
        if sel.uses_global() {
            errs.add(
                "spec.selector",
                "global() may not be used in a policy selector",
            );
        }
    }
    if !p.service_account_selector.is_empty() {
        check_selector(
            "spec.serviceAccountSelector",
            p.service_account_selector,
            errs,
        );
    }
    check_types(p.types, p.ingress, p.egress, errs);
    check_rules("spec.ingress", p.ingress, errs);
    check_rules("spec.egress", p.egress, errs);
    check_no_http_in_egress(p.egress, errs);
    check_hints(p.performance_hints, errs);
}

impl Spec for NetworkPolicySpec {
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        default_common(&mut self.tier, &mut self.types, &self.ingress, &self.egress);
    }
    fn validate(&self, meta: &ObjectMeta, errs: &mut FieldErrors) {
        validate_common(
            CommonPolicy {
                kind: "NetworkPolicy",
                tier: &self.tier,
                order: self.order,
                selector: &self.selector,
                service_account_selector: &self.service_account_selector,
                types: &self.types,
                ingress: &self.ingress,
                egress: &self.egress,
                performance_hints: &self.performance_hints,
            },
            meta,
            errs,
        );
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GlobalNetworkPolicySpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tier: String,
    #[serde(default, with = "go_float", skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<PolicyType>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub do_not_track: bool,
    #[serde(
        default,
        rename = "preDNAT",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub pre_dnat: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub apply_on_forward: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_selector: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace_selector: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performance_hints: Vec<String>,
}

impl Spec for GlobalNetworkPolicySpec {
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        default_common(&mut self.tier, &mut self.types, &self.ingress, &self.egress);
    }
    fn validate(&self, meta: &ObjectMeta, errs: &mut FieldErrors) {
        validate_common(
            CommonPolicy {
                kind: "GlobalNetworkPolicy",
                tier: &self.tier,
                order: self.order,
                selector: &self.selector,
                service_account_selector: &self.service_account_selector,
                types: &self.types,
                ingress: &self.ingress,
                egress: &self.egress,
                performance_hints: &self.performance_hints,
            },
            meta,
            errs,
        );
        if !self.namespace_selector.is_empty() {
            check_selector("spec.namespaceSelector", &self.namespace_selector, errs);
        }
        if self.do_not_track && self.pre_dnat {
            errs.add("spec.preDNAT", "preDNAT and doNotTrack cannot both be true");
        }
        if (self.do_not_track || self.pre_dnat) && !self.apply_on_forward {
            errs.add(
                "spec.applyOnForward",
                "applyOnForward must be true if either preDNAT or doNotTrack is true",
            );
        }
        if self.pre_dnat && !self.egress.is_empty() {
            errs.add("spec.egress", "preDNAT policy cannot have egress rules");
        }
        if self.pre_dnat && self.types.contains(&PolicyType::Egress) {
            errs.add(
                "spec.types",
                "preDNAT policy cannot have Egress in types (preDNAT applies to ingress only)",
            );
        }
    }
}

/// GlobalNetworkPolicy names are single DNS labels (optionally prefixed by a
/// non-default tier's name and a dot).
pub fn check_gnp_name(name: &str, errs: &mut FieldErrors) {
    let last = name.rsplit('.').next().unwrap_or(name);
    let tier_ok = match name.split_once('.') {
        None => true,
        Some((tier, rest)) => crate::validate::is_dns1123_label(tier) && !rest.contains('.'),
    };
    if name.is_empty() {
        errs.add("metadata.name", "name is required");
    } else if !crate::validate::is_dns1123_label(last) || !tier_ok {
        errs.add(
            "metadata.name",
            format!("invalid name {name:?}: a GlobalNetworkPolicy name must be a DNS label (lower case alphanumerics and '-', no dots)"),
        );
    }
}

/// NetworkPolicy names are DNS labels, or subdomains with the `knp.default.`
/// or `ossg.default.` prefixes that Kubernetes and OpenStack integrations
/// write, or tier-prefixed labels.
pub fn check_np_name(name: &str, errs: &mut FieldErrors) {
    let ok = if let Some(rest) = name
        .strip_prefix("knp.default.")
        .or_else(|| name.strip_prefix("ossg.default."))
    {
        crate::validate::is_dns1123_subdomain(rest)
    } else {
        match name.split_once('.') {
            None => crate::validate::is_dns1123_label(name),
            Some((tier, rest)) => {
                crate::validate::is_dns1123_label(tier) && crate::validate::is_dns1123_label(rest)
            }
        }
    };
    if name.is_empty() {
        errs.add("metadata.name", "name is required");
    } else if !ok {
        errs.add(
            "metadata.name",
            format!("invalid name {name:?}: a NetworkPolicy name must be a DNS label (lower case alphanumerics and '-')"),
        );
    }
}

resource!(
    /// Namespaced, ordered policy.
    NetworkPolicy, NetworkPolicySpec, kind = "NetworkPolicy", plural = "networkpolicies",
    namespaced = true, name_rule = check_np_name
);
resource!(
    /// Cluster-wide, ordered policy.
    GlobalNetworkPolicy, GlobalNetworkPolicySpec, kind = "GlobalNetworkPolicy",
    plural = "globalnetworkpolicies", namespaced = false, name_rule = check_gnp_name
);

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<Rule>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels_to_apply: BTreeMap<String, String>,
}

impl Spec for ProfileSpec {
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
        check_rules("spec.ingress", &self.ingress, errs);
        check_rules("spec.egress", &self.egress, errs);
        check_labels("spec.labelsToApply", &self.labels_to_apply, errs);
    }
}

resource!(
    /// Rules and labels shared by the endpoints that list the profile.
    Profile, ProfileSpec, kind = "Profile", plural = "profiles", namespaced = false,
    name_rule = crate::validate::check_name
);

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierDefaultAction {
    Deny,
    Pass,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TierSpec {
    #[serde(default, with = "go_float", skip_serializing_if = "Option::is_none")]
    pub order: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<TierDefaultAction>,
}

impl Spec for TierSpec {
    fn apply_defaults(&mut self, meta: &ObjectMeta) {
        if meta.name == DEFAULT_TIER && self.order.is_none() {
            self.order = Some(DEFAULT_TIER_ORDER);
        }
        if self.default_action.is_none() {
            self.default_action = Some(TierDefaultAction::Deny);
        }
    }
    fn validate(&self, meta: &ObjectMeta, errs: &mut FieldErrors) {
        check_order(self.order, errs);
        if meta.name == DEFAULT_TIER && self.order.is_some_and(|o| o != DEFAULT_TIER_ORDER) {
            errs.add("spec.order", "the default tier's order is fixed at 1000000");
        }
    }
}

fn check_tier_resource_name(name: &str, errs: &mut FieldErrors) {
    if name.is_empty() {
        errs.add("metadata.name", "name is required");
    } else if !crate::validate::is_dns1123_label(name) {
        errs.add(
            "metadata.name",
            format!("invalid tier name {name:?}: must be a DNS label"),
        );
    }
}

resource!(
    /// An ordered group of policies.
    Tier, TierSpec, kind = "Tier", plural = "tiers", namespaced = false,
    name_rule = check_tier_resource_name
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Resource;

    fn gnp(yaml_spec: &str, name: &str) -> GlobalNetworkPolicy {
        let text = format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: {name}\nspec:\n{yaml_spec}"
        );
        let mut p: GlobalNetworkPolicy = serde_yaml::from_str(&text).unwrap();
        p.apply_defaults();
        p
    }

    fn errors(r: &impl Resource) -> Vec<(String, String)> {
        match r.validate() {
            Ok(()) => vec![],
            Err(e) => e.0.into_iter().map(|e| (e.field, e.message)).collect(),
        }
    }

    fn has(errs: &[(String, String)], field: &str, msg: &str) -> bool {
        errs.iter().any(|(f, m)| f == field && m.contains(msg))
    }

    #[test]
    fn dotted_names_must_start_with_the_tier() {
        let e = errors(&gnp("  selector: all()\n", "allow.dns"));
        assert!(
            has(&e, "metadata.name", "invalid name \"allow.dns\""),
            "{e:?}"
        );
        assert!(has(&e, "metadata.name", "\"allow-dns\""), "{e:?}");
        assert!(errors(&gnp("  selector: all()\n", "default.allow-dns")).is_empty());
        assert!(errors(&gnp(
            "  tier: security\n  selector: all()\n",
            "security.block"
        ))
        .is_empty());
        let e = errors(&gnp("  tier: security\n  selector: all()\n", "other.block"));
        assert!(has(&e, "metadata.name", "tier \"security\""), "{e:?}");

        let mut np = NetworkPolicy::new("ossg.default.0f3c-12", NetworkPolicySpec::default());
        np.metadata.namespace = "openstack".into();
        np.apply_defaults();
        assert!(errors(&np).is_empty(), "{:?}", errors(&np));
        np.metadata.name = "security.allow-web".into();
        assert!(has(&errors(&np), "metadata.name", "invalid name"));
    }

    #[test]
    fn port_zero_is_rejected() {
        let p = gnp(
            "  ingress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [80, 0]\n      notPorts: [\"0:10\"]\n",
            "p",
        );
        let e = errors(&p);
        assert!(
            has(
                &e,
                "spec.ingress[0].destination.ports[1]",
                "invalid port 0: port numbers are 1-65535"
            ),
            "{e:?}"
        );
        assert!(
            has(
                &e,
                "spec.ingress[0].destination.notPorts[0]",
                "invalid port 0:10"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn http_rules() {
        let p = gnp(
            "  egress:\n  - action: Allow\n    http:\n      methods: [GET]\n",
            "p",
        );
        assert!(has(
            &errors(&p),
            "spec.egress[0].http",
            "not allowed in egress rules"
        ));
        let p = gnp(
            "  ingress:\n  - action: Allow\n    http:\n      methods: [GET, GET]\n      paths:\n      - exact: foo\n      - prefix: /a?b\n      - prefix: /ok\n",
            "p",
        );
        let e = errors(&p);
        assert!(
            has(&e, "spec.ingress[0].http.methods[1]", "listed twice"),
            "{e:?}"
        );
        assert!(
            has(&e, "spec.ingress[0].http.paths[0]", "must start with '/'"),
            "{e:?}"
        );
        assert!(
            has(&e, "spec.ingress[0].http.paths[1]", "may not contain"),
            "{e:?}"
        );
        assert_eq!(e.len(), 3, "{e:?}");
    }

    #[test]
    fn pre_dnat_is_ingress_only() {
        let p = gnp(
            "  preDNAT: true\n  applyOnForward: true\n  types: [Ingress, Egress]\n  ingress:\n  - action: Deny\n",
            "p",
        );
        assert!(has(
            &errors(&p),
            "spec.types",
            "preDNAT policy cannot have Egress in types"
        ));
    }

    #[test]
    fn icmp_not_protocol_matches_ip_version() {
        let p = gnp(
            "  ingress:\n  - action: Deny\n    notProtocol: ICMPv6\n    ipVersion: 4\n",
            "p",
        );
        assert!(has(
            &errors(&p),
            "spec.ingress[0].ipVersion",
            "notProtocol ICMPv6 requires ipVersion 6"
        ));
    }

    #[test]
    fn rule_annotation_keys_are_checked() {
        let p = gnp(
            "  ingress:\n  - action: Allow\n    metadata:\n      annotations:\n        \"not ok\": x\n",
            "p",
        );
        assert!(has(
            &errors(&p),
            "spec.ingress[0].metadata.annotations.not ok",
            "invalid annotation key"
        ));
    }
}
