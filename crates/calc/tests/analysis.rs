//! `shadowed_allows` on the article's documents.

mod common;

use calico_api::policy::PolicyType;
use calico_api::AnyResource;
use calico_calc::analysis::{shadowed_allows, Shadowing};
use calico_calc::model::{PolicyId, PolicyKind};
use common::{resources, wep, HOST};

const WEB_DB: &str = include_str!("../../../tests/fixtures/article/03-web-db-policy.yaml");
const DENY_ALL_DEFAULT: &str =
    include_str!("../../../tests/fixtures/article/04-deny-all-default.yaml");
const DEFAULT_DENY_ALL: &str =
    include_str!("../../../tests/fixtures/article/05-default-deny-all.yaml");
const FRONTEND: &str = include_str!("../../../tests/fixtures/article/06-frontend-allow-http.yaml");

fn endpoints() -> Vec<calico_api::endpoint::WorkloadEndpoint> {
    resources(
        &(wep("production", "web", HOST, "10.0.0.1/32", &[("app", "web")])
            + &wep(
                "production",
                "db",
                HOST,
                "10.0.0.2/32",
                &[("app", "database")],
            )
            + &wep(
                "frontend",
                "fe",
                HOST,
                "10.0.0.3/32",
                &[("app", "frontend")],
            )),
    )
    .into_iter()
    .filter_map(|r| match r {
        AnyResource::WorkloadEndpoint(w) => Some(w),
        _ => None,
    })
    .collect()
}

fn article() -> Vec<AnyResource> {
    [WEB_DB, DENY_ALL_DEFAULT, DEFAULT_DENY_ALL, FRONTEND]
        .iter()
        .flat_map(|y| resources(y))
        .collect()
}

fn gnp(name: &str) -> PolicyId {
    PolicyId {
        kind: PolicyKind::GlobalNetworkPolicy,
        namespace: String::new(),
        name: name.into(),
    }
}

fn np(ns: &str, name: &str) -> PolicyId {
    PolicyId {
        kind: PolicyKind::NetworkPolicy,
        namespace: ns.into(),
        name: name.into(),
    }
}

#[test]
fn default_deny_all_without_order_shadows_the_allows() {
    let found = shadowed_allows(&article(), &endpoints());
    let expected = vec![
        Shadowing {
            earlier: gnp("default-deny-all"),
            later: np("frontend", "frontend-allow-http"),
            rule: 0,
            direction: PolicyType::Ingress,
        },
        Shadowing {
            earlier: gnp("default-deny-all"),
            later: np("production", "web-db-policy"),
            rule: 0,
            direction: PolicyType::Ingress,
        },
    ];
    assert_eq!(found, expected);
    // Without endpoints the structural check (selector all(), global) still knows.
    assert_eq!(shadowed_allows(&article(), &[]), expected);
    // The staging deny-all sorts before nothing that allows in its namespace.
    assert!(found
        .iter()
        .all(|s| s.earlier != np("staging", "deny-all-default")));
}

#[test]
fn orders_fix_it() {
    let mut docs = article();
    for d in &mut docs {
        match d {
            AnyResource::GlobalNetworkPolicy(p) => p.spec.order = Some(1000.0),
            AnyResource::NetworkPolicy(p) => p.spec.order = Some(100.0),
            _ => {}
        }
    }
    assert!(shadowed_allows(&docs, &endpoints()).is_empty());
}

#[test]
fn only_certain_shadowing_is_reported() {
    let docs = resources(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: a-deny-db}\nspec:\n  selector: app == 'database'\n  ingress: [{action: Deny}]\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: b-conditional}\nspec:\n  selector: all()\n  ingress: [{action: Deny, protocol: TCP}]\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: c-allow-first}\nspec:\n  selector: all()\n  ingress: [{action: Log}, {action: Allow}, {action: Deny}]\n---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: web-db-policy, namespace: production}\nspec:\n  selector: app == 'database'\n  ingress: [{action: Allow}]\n---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: z-web, namespace: production}\nspec:\n  selector: app == 'web'\n  ingress: [{action: Allow}]\n",
    );
    // a-deny-db covers web-db-policy only through the given endpoints; the
    // conditional deny and the deny behind an allow never count.
    assert_eq!(
        shadowed_allows(&docs, &endpoints()),
        vec![Shadowing {
            earlier: gnp("a-deny-db"),
            later: np("production", "web-db-policy"),
            rule: 0,
            direction: PolicyType::Ingress
        }]
    );
    // Without endpoints nothing is certain.
    assert!(shadowed_allows(&docs, &[]).is_empty());
}

#[test]
fn endpoints_are_needed_only_with_an_unconditional_deny() {
    use calico_calc::analysis::any_unconditional_deny;
    let allow_only: Vec<AnyResource> = resources(&format!("{WEB_DB}---\n{FRONTEND}"));
    assert!(!any_unconditional_deny(&allow_only));
    let with_deny: Vec<AnyResource> = resources(&format!("{WEB_DB}---\n{DEFAULT_DENY_ALL}"));
    assert!(any_unconditional_deny(&with_deny));
    // staging's deny-all-default denies all ingress unconditionally too.
    assert!(any_unconditional_deny(&resources(DENY_ALL_DEFAULT)));
}
