//! Policy kinds: NetworkPolicy, GlobalNetworkPolicy, Profile and Tier, and the
//! rule model they share.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;
use crate::numorstring::{go_float, Port, Protocol};
use crate::resource::{resource, Spec};
use crate::validate::{check_labels, check_selector, FieldErrors, NAME_RULE};

mod rule_checks;
pub use rule_checks::check_rule;

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

/// Checks that depend on a rule's direction: HTTP matches only in ingress
/// rules (the destination's sidecar enforces them); service matches only on
/// the remote side (egress destination, ingress source); and in a global
/// policy a service match must name its namespace.
fn check_direction_rules(global: bool, ingress: &[Rule], egress: &[Rule], errs: &mut FieldErrors) {
    for (i, r) in egress.iter().enumerate() {
        if r.http.is_some() {
            errs.add(
                format!("spec.egress[{i}].http"),
                "HTTP match is not allowed in egress rules (only in ingress rules)",
            );
        }
    }
    let misplaced = [
        ("egress", egress, "source", "egress rule source"),
        (
            "ingress",
            ingress,
            "destination",
            "ingress rule destination",
        ),
    ];
    for (dir, rules, side, what) in misplaced {
        for (i, r) in rules.iter().enumerate() {
            let e = if side == "source" {
                &r.source
            } else {
                &r.destination
            };
            if e.services.is_some() {
                errs.add(
                    format!("spec.{dir}[{i}].{side}.services"),
                    format!("services are not allowed in an {what}"),
                );
            }
        }
    }
    if !global {
        return;
    }
    let remote = [
        ("egress", egress, "destination"),
        ("ingress", ingress, "source"),
    ];
    for (dir, rules, side) in remote {
        for (i, r) in rules.iter().enumerate() {
            let e = if side == "source" {
                &r.source
            } else {
                &r.destination
            };
            if e.services.as_ref().is_some_and(|s| s.namespace.is_empty()) {
                errs.add(
                    format!("spec.{dir}[{i}].{side}.services.namespace"),
                    "a service match in a global policy must specify a namespace",
                );
            }
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

/// Upstream rejects repeated types, but (unlike older releases) accepts
/// types that leave out a direction the policy has rules for: such rules are
/// simply not enforced, which lets one policy serve old and new Felixes.
fn check_types(types: &[PolicyType], errs: &mut FieldErrors) {
    for (i, t) in types.iter().enumerate() {
        if types[..i].contains(t) {
            errs.add("spec.types", format!("{t:?} is listed twice"));
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
        } else if hints[..i].contains(h) {
            errs.add(
                format!("spec.performanceHints[{i}]"),
                format!("performance hint {h:?} is listed twice"),
            );
        }
    }
}

/// A policy-level selector: valid syntax and no global(), which only a
/// rule's namespaceSelector may use.
fn check_policy_selector(field: &str, s: &str, errs: &mut FieldErrors) {
    if s.is_empty() {
        return;
    }
    if let Some(sel) = check_selector(field, s, errs) {
        if sel.uses_global() {
            errs.add(
                field,
                "global() may not be used in a policy selector (only in a rule's namespaceSelector)",
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

fn validate_common(p: CommonPolicy<'_>, errs: &mut FieldErrors) {
    check_tier_name(p.tier, errs);
    check_order(p.order, errs);
    check_policy_selector("spec.selector", p.selector, errs);
    check_policy_selector(
        "spec.serviceAccountSelector",
        p.service_account_selector,
        errs,
    );
    check_types(p.types, errs);
    check_rules("spec.ingress", p.ingress, errs);
    check_rules("spec.egress", p.egress, errs);
    let global = p.kind == "GlobalNetworkPolicy";
    check_direction_rules(global, p.ingress, p.egress, errs);
    check_hints(p.performance_hints, errs);
}

impl Spec for NetworkPolicySpec {
    fn apply_defaults(&mut self, _meta: &ObjectMeta) {
        default_common(&mut self.tier, &mut self.types, &self.ingress, &self.egress);
    }
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
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
    fn validate(&self, _meta: &ObjectMeta, errs: &mut FieldErrors) {
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
            errs,
        );
        check_policy_selector("spec.namespaceSelector", &self.namespace_selector, errs);
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

/// GlobalNetworkPolicy names: a name label, optionally after another label
/// and one dot; at most 253 characters.
pub fn check_gnp_name(name: &str, errs: &mut FieldErrors) {
    use crate::validate::{check_name_length, is_name_label, NAME_MAX_LEN};
    let ok = match name.split_once('.') {
        None => is_name_label(name),
        Some((first, rest)) => is_name_label(first) && is_name_label(rest),
    };
    if name.is_empty() {
        errs.add("metadata.name", "name is required");
    } else if check_name_length(name, NAME_MAX_LEN, errs) && !ok {
        errs.add(
            "metadata.name",
            format!("invalid name {name:?}: a GlobalNetworkPolicy name is lower case alphanumerics and '-', with at most one dot"),
        );
    }
}

/// NetworkPolicy names: a name label, optionally followed by one dot and
/// another label, or any resource name after the `knp.default.` or
/// `ossg.default.` prefixes that Kubernetes and OpenStack integrations
/// write; at most 253 characters.
pub fn check_np_name(name: &str, errs: &mut FieldErrors) {
    use crate::validate::{check_name_length, is_name_label, is_name_pattern, NAME_MAX_LEN};
    let ok = if let Some(rest) = name
        .strip_prefix("knp.default.")
        .or_else(|| name.strip_prefix("ossg.default."))
    {
        is_name_pattern(rest)
    } else {
        match name.split_once('.') {
            None => is_name_label(name),
            Some((first, rest)) => is_name_label(first) && is_name_label(rest),
        }
    };
    if name.is_empty() {
        errs.add("metadata.name", "name is required");
    } else if check_name_length(name, NAME_MAX_LEN, errs) && !ok {
        errs.add(
            "metadata.name",
            format!("invalid name {name:?}: a NetworkPolicy name is lower case alphanumerics and '-', with at most one dot"),
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
        let builtin = BUILTIN_TIERS.iter().find(|(n, _, _)| *n == meta.name);
        if let Some((name, order, action)) = builtin {
            if self.order != Some(*order) {
                errs.add(
                    "spec.order",
                    format!("the {name:?} tier's order is fixed at {order}"),
                );
            }
            if self.default_action != Some(*action) {
                errs.add(
                    "spec.defaultAction",
                    format!("the {name:?} tier must have default action {action:?}"),
                );
            }
        }
    }
}

/// Tiers whose order and default action upstream fixes.
const BUILTIN_TIERS: [(&str, f64, TierDefaultAction); 3] = [
    (DEFAULT_TIER, DEFAULT_TIER_ORDER, TierDefaultAction::Deny),
    ("kube-admin", 1_000.0, TierDefaultAction::Pass),
    ("kube-baseline", 10_000_000.0, TierDefaultAction::Pass),
];

/// Tier names appear inside policy names and labels, so they are single
/// name labels of at most 63 characters.
fn check_tier_resource_name(name: &str, errs: &mut FieldErrors) {
    if name.is_empty() {
        errs.add("metadata.name", "name is required");
    } else if crate::validate::check_name_length(name, 63, errs)
        && !crate::validate::is_name_label(name)
    {
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

    /// Current upstream allows one dot in a policy name whatever the tier
    /// (older releases required the tier's name before it).
    #[test]
    fn policy_names_may_have_one_dot() {
        for name in ["allow.dns", "default.allow-dns", "other.block"] {
            let e = errors(&gnp("  tier: security\n  selector: all()\n", name));
            assert!(e.is_empty(), "{name}: {e:?}");
        }
        let e = errors(&gnp("  selector: all()\n", "a.b.c"));
        assert!(has(&e, "metadata.name", "at most one dot"), "{e:?}");

        let mut np = NetworkPolicy::new("ossg.default.0f3c-12", NetworkPolicySpec::default());
        np.metadata.namespace = "openstack".into();
        np.apply_defaults();
        assert!(errors(&np).is_empty(), "{:?}", errors(&np));
        np.metadata.name = "security.allow-web".into();
        assert!(errors(&np).is_empty(), "{:?}", errors(&np));
        np.metadata.name = "security.allow.web".into();
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
