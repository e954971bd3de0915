//! Policy semantics and emission behaviour, scenario by scenario. Every
//! verdict is computed from the compiled output AND by the reference
//! evaluator, and they must agree (see `Harness::verdict`).

mod common;

use calico_calc::model::{EndpointToHostAction, RouteTarget, TierDefault, Update};
use calico_calc::packet::Packet;
use calico_calc::Input;
use common::{ip, wep, Harness, HOST};

const WEB: &str = "10.65.0.1";
const DB: &str = "10.65.0.2";

fn article_endpoints() -> String {
    wep(
        "production",
        "web",
        HOST,
        &format!("{WEB}/32"),
        &[("app", "web")],
    ) + &wep(
        "production",
        "db",
        HOST,
        &format!("{DB}/32"),
        &[("app", "database")],
    )
}

fn by(v: &calico_calc::packet::Verdict) -> (Option<String>, Option<String>) {
    (
        v.egress.as_ref().map(|d| format!("{} {}", d.allowed, d.by)),
        v.ingress
            .as_ref()
            .map(|d| format!("{} {}", d.allowed, d.by)),
    )
}

#[test]
fn article_trap_default_deny_all_sorts_first_without_order() {
    let mut h = Harness::new();
    h.apply(&article_endpoints());
    h.apply(include_str!(
        "../../../tests/fixtures/article/03-web-db-policy.yaml"
    ));
    h.apply(include_str!(
        "../../../tests/fixtures/article/05-default-deny-all.yaml"
    ));
    let v = h.tcp(WEB, DB, 5432);
    assert!(!v.allowed);
    assert_eq!(
        by(&v),
        (
            Some("true GlobalNetworkPolicy default-deny-all (rule 1)".into()),
            Some("false GlobalNetworkPolicy default-deny-all (rule 1)".into())
        )
    );
    // The endpoint lists both policies in one tier, GNP first (by name).
    let db = h
        .state
        .endpoints
        .values()
        .find(|e| e.iface == "tapdb")
        .unwrap();
    let names: Vec<String> = db.tiers[0].ingress.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        names,
        vec![
            "GlobalNetworkPolicy default-deny-all",
            "NetworkPolicy production/web-db-policy"
        ]
    );

    // With explicit orders the allow comes first and web reaches the database.
    h.apply(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: web-db-policy, namespace: production}\nspec:\n  order: 100\n  selector: app == 'database'\n  ingress:\n  - action: Allow\n    source:\n      selector: app == 'web'\n  egress:\n  - action: Allow\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: default-deny-all}\nspec:\n  order: 1000\n  selector: all()\n  ingress:\n  - action: Deny\n  egress:\n  - action: Allow\n",
    );
    let v = h.tcp(WEB, DB, 5432);
    assert!(v.allowed, "{v}");
    assert_eq!(
        by(&v).1,
        Some("true NetworkPolicy production/web-db-policy (rule 1)".into())
    );
    // Anything else into the database still hits the deny-all.
    let v = h.tcp(DB, DB, 5432);
    assert_eq!(
        by(&v).1,
        Some("false GlobalNetworkPolicy default-deny-all (rule 1)".into())
    );
}

#[test]
fn tiers_pass_and_tier_default_actions() {
    let mut h = Harness::new();
    h.apply(&article_endpoints());
    h.apply(
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: security.gate}\nspec:\n  tier: security\n  selector: app == 'database'\n  ingress:\n  - action: Pass\n    source: {selector: app == 'web'}\n  - action: Deny\n    protocol: TCP\n    destination: {ports: [22]}\n---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: allow-web, namespace: production}\nspec:\n  selector: app == 'database'\n  ingress:\n  - action: Allow\n    protocol: TCP\n    destination: {ports: [5432]}\n",
    );
    // web passes the security tier, then the default tier allows 5432.
    let v = h.tcp(WEB, DB, 5432);
    assert_eq!(
        by(&v).1,
        Some("true NetworkPolicy production/allow-web (rule 1)".into())
    );
    // db → db: no pass, 22 denied in tier security; 5432 hits end of tier security.
    assert_eq!(
        by(&h.tcp(DB, DB, 22)).1,
        Some("false GlobalNetworkPolicy security.gate (rule 2)".into())
    );
    assert_eq!(
        by(&h.tcp(DB, DB, 5432)).1,
        Some("false end of tier security".into())
    );
    // A tier whose default action is Pass hands unmatched traffic on.
    h.apply("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100, defaultAction: Pass}\n");
    let db = h
        .state
        .endpoints
        .values()
        .find(|e| e.iface == "tapdb")
        .unwrap();
    assert_eq!(db.tiers[0].name, "security");
    assert_eq!(db.tiers[0].default_action, TierDefault::Pass);
    assert_eq!(
        by(&h.tcp(DB, DB, 5432)).1,
        Some("true NetworkPolicy production/allow-web (rule 1)".into())
    );
    // Pass in the last tier goes to profiles; no profile → denied.
    assert_eq!(
        by(&h.tcp(WEB, DB, 80)).1,
        Some("false end of tier default".into())
    );
    h.delete("NetworkPolicy", "production", "allow-web");
    assert_eq!(by(&h.tcp(WEB, DB, 80)).1, Some("false no profile".into()));
    // Tier order moves the tier after default.
    h.apply("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 2000000}\n");
    h.apply("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: first}\nspec:\n  selector: all()\n  ingress: [{action: Pass}]\n");
    let db = h
        .state
        .endpoints
        .values()
        .find(|e| e.iface == "tapdb")
        .unwrap();
    let tiers: Vec<&str> = db.tiers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tiers, vec!["default", "security"]);
    assert_eq!(
        by(&h.tcp(DB, DB, 22)).1,
        Some("false GlobalNetworkPolicy security.gate (rule 2)".into())
    );
}

#[test]
fn log_continues_and_profiles_only_when_no_policy_applies() {
    let mut h = Harness::new();
    h.apply(
        "apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: allow-all}\nspec:\n  ingress: [{action: Allow}]\n  egress: [{action: Allow}]\n",
    );
    let mut ep = wep(
        "production",
        "db",
        HOST,
        &format!("{DB}/32"),
        &[("app", "database")],
    );
    ep.push_str("  profiles: [allow-all]\n");
    h.apply(
        &(ep + &wep(
            "production",
            "web",
            HOST,
            &format!("{WEB}/32"),
            &[("app", "web")],
        )),
    );
    // No policy: the profile decides the db side; web has neither.
    let v = h.tcp(DB, DB, 1);
    assert_eq!(
        by(&v),
        (
            Some("true Profile allow-all".into()),
            Some("true Profile allow-all".into())
        )
    );
    assert_eq!(by(&h.tcp(WEB, DB, 1)).0, Some("false no profile".into()));
    // An ingress-only policy: ingress ends at its tier, egress still uses the profile.
    h.apply(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: logger, namespace: production}\nspec:\n  selector: app == 'database'\n  ingress:\n  - action: Log\n  - action: Allow\n    protocol: TCP\n    destination: {ports: [5432]}\n",
    );
    assert_eq!(
        by(&h.tcp(DB, DB, 5432)),
        (
            Some("true Profile allow-all".into()),
            Some("true NetworkPolicy production/logger (rule 2)".into())
        )
    );
    assert_eq!(
        by(&h.tcp(DB, DB, 80)).1,
        Some("false end of tier default".into())
    );
    // A Log-only policy still default-denies (issue #3801).
    h.apply(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: logger, namespace: production}\nspec:\n  selector: app == 'database'\n  ingress: [{action: Log}]\n",
    );
    assert_eq!(
        by(&h.tcp(DB, DB, 5432)).1,
        Some("false end of tier default".into())
    );
}

#[test]
fn network_policy_namespace_scoping() {
    let mut h = Harness::new();
    h.apply(
        &(wep("a", "a1", HOST, "10.1.0.1/32", &[("app", "web")])
            + &wep("b", "b1", HOST, "10.1.0.2/32", &[("app", "web")])
            + &wep("a", "db", HOST, "10.1.0.3/32", &[("app", "db")])
            + "---\napiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: kns.b}\nspec:\n  labelsToApply: {team: blue}\n"),
    );
    h.apply(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: db, namespace: a}\nspec:\n  selector: all()\n  ingress:\n  - action: Allow\n    source: {selector: app == 'web'}\n",
    );
    // The NP selects only endpoints of namespace a.
    assert!(h.tcp("10.1.0.1", "10.1.0.3", 1).ingress.unwrap().allowed);
    assert_eq!(
        by(&h.tcp("10.1.0.2", "10.1.0.3", 1)).1,
        Some("false end of tier default".into())
    );
    assert_eq!(
        by(&h.tcp("10.1.0.3", "10.1.0.2", 1)).1,
        Some("false no profile".into())
    );
    // namespaceSelector opens it to namespaces by label.
    h.apply(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: db, namespace: a}\nspec:\n  selector: all()\n  ingress:\n  - action: Allow\n    source: {selector: app == 'web', namespaceSelector: team == 'blue'}\n",
    );
    assert!(h.tcp("10.1.0.2", "10.1.0.3", 1).ingress.unwrap().allowed);
    assert!(!h.tcp("10.1.0.1", "10.1.0.3", 1).ingress.unwrap().allowed);
    // Changing the namespace's labels moves the IP set members.
    h.apply("apiVersion: projectcalico.org/v3\nkind: Profile\nmetadata: {name: kns.b}\nspec:\n  labelsToApply: {team: red}\n");
    assert!(
        h.last
            .iter()
            .all(|u| matches!(u, Update::IpSetDelta { .. })),
        "{:?}",
        h.last
    );
    assert!(!h.tcp("10.1.0.2", "10.1.0.3", 1).ingress.unwrap().allowed);
    // A GNP rule without namespaceSelector matches every namespace; global()
    // only non-namespaced entities.
    h.apply(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  order: 1\n  selector: app == 'db'\n  ingress:\n  - action: Deny\n    source: {selector: app == 'web', namespaceSelector: global()}\n  - action: Allow\n    source: {selector: app == 'web'}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {name: ext, labels: {app: web}}\nspec: {nets: [192.0.2.0/24]}\n",
    );
    assert!(h.tcp("10.1.0.2", "10.1.0.3", 1).ingress.unwrap().allowed);
    assert_eq!(
        by(&h.tcp("192.0.2.9", "10.1.0.3", 1)).1,
        Some("false GlobalNetworkPolicy g (rule 1)".into())
    );
}

#[test]
fn ports_named_ports_icmp_nets() {
    let mut h = Harness::new();
    let mut db = wep("p", "db", HOST, "10.2.0.2/32", &[("app", "db")]);
    db.push_str("  ports:\n  - {name: pg, protocol: TCP, port: 5432}\n");
    h.apply(&(db + &wep("p", "web", HOST, "10.2.0.1/32", &[("app", "web")])));
    h.apply(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: g}\nspec:\n  selector: all()\n  ingress:\n  - action: Deny\n    protocol: ICMP\n    icmp: {type: 8, code: 0}\n  - action: Allow\n    protocol: ICMP\n  - action: Allow\n    protocol: TCP\n    source: {nets: [10.2.0.0/24], notNets: [10.2.0.9/32]}\n    destination: {ports: [pg, '8000:8080'], notPorts: [8008]}\n  - action: Allow\n    protocol: UDP\n    notProtocol: TCP\n    ipVersion: 6\n",
    );
    let p = |sport, dport| Packet::tcp(ip("10.2.0.1"), ip("10.2.0.2"), sport, dport);
    let ingress = |h: &Harness, pkt| h.verdict(pkt).ingress.unwrap().allowed;
    assert!(ingress(&h, p(1, 5432)));
    assert!(!ingress(&h, p(1, 5433)));
    assert!(ingress(&h, p(1, 8001)));
    assert!(!ingress(&h, p(1, 8008)));
    // Named port pg is resolved on the destination: web has no pg.
    assert!(
        !h.verdict(Packet::tcp(ip("10.2.0.2"), ip("10.2.0.1"), 1, 5432))
            .ingress
            .unwrap()
            .allowed
    );
    assert_eq!(
        by(&h.verdict(Packet::icmp(ip("10.2.0.1"), ip("10.2.0.2"), 8, 0))).1,
        Some("false GlobalNetworkPolicy g (rule 1)".into())
    );
    assert_eq!(
        by(&h.verdict(Packet::icmp(ip("10.2.0.1"), ip("10.2.0.2"), 0, 0))).1,
        Some("true GlobalNetworkPolicy g (rule 2)".into())
    );
    assert!(
        !h.verdict(Packet::udp(ip("10.2.0.1"), ip("10.2.0.2"), 1, 53))
            .ingress
            .unwrap()
            .allowed
    );
    // The endpoint's named port moving changes the set, not the policy.
    let mut db = wep("p", "db", HOST, "10.2.0.2/32", &[("app", "db")]);
    db.push_str("  ports:\n  - {name: pg, protocol: TCP, port: 6432}\n");
    h.apply(&db);
    assert!(
        h.last
            .iter()
            .all(|u| matches!(u, Update::IpSetDelta { .. })),
        "{:?}",
        h.last
    );
    assert!(ingress(&h, p(1, 6432)));
    assert!(!ingress(&h, p(1, 5432)));
}

#[test]
fn only_local_endpoints_and_their_policies_are_emitted() {
    let mut h = Harness::new();
    h.apply(
        &(wep("p", "local", HOST, "10.3.0.1/32", &[("app", "a")])
            + &wep("p", "remote", "node2", "10.3.0.2/32", &[("app", "b")])
            + "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: for-b}\nspec:\n  selector: app == 'b'\n  ingress: [{action: Allow, source: {selector: app == 'zzz'}}]\n"),
    );
    assert_eq!(h.state.endpoints.len(), 1);
    assert!(h.state.policies.is_empty());
    assert!(h.state.ip_sets.is_empty());
    // Relabel the local endpoint: the policy and its IP set become active.
    h.apply(&wep("p", "local", HOST, "10.3.0.1/32", &[("app", "b")]));
    assert_eq!(h.state.policies.len(), 1);
    assert_eq!(h.state.ip_sets.len(), 1);
    let kinds: Vec<&str> = h
        .last
        .iter()
        .map(|u| match u {
            Update::IpSetUpsert { .. } => "set",
            Update::PolicyUpsert(_) => "policy",
            Update::EndpointUpsert(_) => "endpoint",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, vec!["set", "policy", "endpoint"]);
    // And back: removals in reverse order.
    h.apply(&wep("p", "local", HOST, "10.3.0.1/32", &[("app", "a")]));
    let kinds: Vec<&str> = h
        .last
        .iter()
        .map(|u| match u {
            Update::IpSetRemove { .. } => "set-",
            Update::PolicyRemove(_) => "policy-",
            Update::EndpointUpsert(_) => "endpoint",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, vec!["endpoint", "policy-", "set-"]);
    // Moving the endpoint off this host removes it.
    h.apply(&wep("p", "local", "node3", "10.3.0.1/32", &[("app", "a")]));
    assert!(h
        .last
        .iter()
        .any(|u| matches!(u, Update::EndpointRemove(_))));
    assert!(h.state.endpoints.is_empty());
}

#[test]
fn label_change_touches_only_what_it_affects() {
    let mut h = Harness::new();
    let mut yaml = String::new();
    for i in 0..50 {
        yaml += &wep(
            "p",
            &format!("e{i}"),
            HOST,
            &format!("10.4.0.{}/32", i + 1),
            &[("app", "web"), ("idx", &i.to_string())],
        );
    }
    yaml += "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: web}\nspec:\n  selector: app == 'web'\n  ingress: [{action: Allow, source: {selector: app == 'web'}}]\n";
    yaml += "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: db}\nspec:\n  selector: app == 'db'\n  ingress: [{action: Allow, source: {selector: app == 'web'}}]\n";
    h.apply(&yaml);
    assert_eq!(h.state.endpoints.len(), 50);
    // One endpoint becomes a db: its endpoint, the set delta, the newly active policy.
    let out = h
        .apply(&wep(
            "p",
            "e7",
            HOST,
            "10.4.0.8/32",
            &[("app", "db"), ("idx", "7")],
        ))
        .to_vec();
    let eps: Vec<_> = out
        .iter()
        .filter(|u| matches!(u, Update::EndpointUpsert(_)))
        .collect();
    assert_eq!(eps.len(), 1, "{out:#?}");
    assert_eq!(out.len(), 3, "{out:#?}");
    assert!(matches!(out[0], Update::IpSetDelta { .. }));
    assert!(matches!(out[1], Update::PolicyUpsert(_)));
    // Re-sending the same resources changes nothing.
    assert!(h
        .apply(&yaml)
        .iter()
        .any(|u| matches!(u, Update::EndpointUpsert(_))));
    assert!(h.apply(&yaml).is_empty());
    // A policy's rules change: only the policy is re-emitted.
    let out = h.apply("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: web}\nspec:\n  selector: app == 'web'\n  ingress: [{action: Allow, protocol: TCP, source: {selector: app == 'web'}}]\n").to_vec();
    assert_eq!(out.len(), 1, "{out:#?}");
    assert!(matches!(out[0], Update::PolicyUpsert(_)));
}

#[test]
fn in_sync_once_and_removals_of_unknown_things_dropped() {
    let mut h = Harness::new();
    let first = h.flush().to_vec();
    assert!(matches!(first[0], Update::Config(_)));
    assert!(matches!(first[1], Update::Pools(_)));
    assert_eq!(first.len(), 2);
    h.calc.on_input(Input::InSync);
    assert_eq!(h.flush(), &[Update::InSync]);
    assert!(h.flush().is_empty());
    assert!(h.delete("WorkloadEndpoint", "p", "never-seen").is_empty());
    assert!(h.delete("GlobalNetworkPolicy", "", "never-seen").is_empty());
    h.calc.on_input(Input::ResourceRemoved {
        kind: "Bogus",
        namespace: String::new(),
        name: "x".into(),
    });
    assert!(h.flush().is_empty());
    assert_eq!(h.calc.take_warnings().len(), 1);
    // Add and delete between flushes: nothing.
    h.calc.on_input(Input::Resource(
        common::resources(&wep("p", "x", HOST, "10.9.0.1/32", &[]))[0].clone(),
    ));
    h.calc.on_input(Input::ResourceRemoved {
        kind: "WorkloadEndpoint",
        namespace: "p".into(),
        name: "x".into(),
    });
    assert!(h.flush().is_empty());
}

#[test]
fn bad_data_is_skipped_with_warnings() {
    let mut h = Harness::new();
    h.apply(&wep("p", "e", HOST, "10.5.0.1/32", &[("app", "x")]));
    h.apply(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: bad-selector}\nspec:\n  selector: app ==\n  ingress: [{action: Allow}]\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: bad-rule}\nspec:\n  selector: all()\n  ingress:\n  - action: Allow\n    destination: {ports: [80]}\n  - action: Allow\n    source: {nets: ['not-a-net']}\n  - action: Allow\n    protocol: TCP\n",
    );
    let w = h.calc.take_warnings();
    assert_eq!(w.len(), 3, "{w:#?}");
    assert!(w.iter().any(|m| m.contains("bad-selector")));
    // The bad rules never match; rule 3 keeps its number.
    assert_eq!(
        by(&h.tcp("10.5.0.1", "10.5.0.1", 80)).1,
        Some("true GlobalNetworkPolicy bad-rule (rule 3)".into())
    );
    assert!(
        !h.verdict(Packet::udp(ip("10.5.0.1"), ip("10.5.0.1"), 1, 80))
            .allowed
    );
}

#[test]
fn routes_vteps_and_neutron_addresses() {
    let mut h = Harness::new();
    let node = |name: &str, ip: &str, tun: &str, mac: &str| {
        format!("---\napiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: {name}}}\nspec:\n  bgp: {{ipv4Address: {ip}/24}}\n  ipv4VXLANTunnelAddr: {tun}\n  vxlanTunnelMACAddr: '{mac}'\n")
    };
    h.apply(
        &(node(HOST, "172.20.0.1", "10.65.0.1", "66:00:00:00:00:01")
            + &node("node2", "172.20.1.2", "10.65.1.1", "66:00:00:00:00:02")
            + "---\napiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.65.0.0/16, vxlanMode: Always, natOutgoing: true}\n"
            + &wep("openstack", "vm1", HOST, "10.65.0.5/32", &[])
            + &wep("openstack", "vm2", "node2", "10.65.7.7/32", &[])),
    );
    h.calc.on_input(Input::Block {
        cidr: "10.65.0.0/26".parse().unwrap(),
        affinity: Some(HOST.into()),
    });
    h.calc.on_input(Input::Block {
        cidr: "10.65.1.0/26".parse().unwrap(),
        affinity: Some("node2".into()),
    });
    h.flush();
    let r = |s: &str| h.state.routes.get(&s.parse().unwrap()).cloned();
    assert_eq!(
        r("10.65.0.5/32"),
        Some(RouteTarget::Local {
            iface: "tapvm1".into()
        })
    );
    assert_eq!(r("10.65.0.0/26"), Some(RouteTarget::Blackhole));
    let via2 = RouteTarget::Vxlan {
        gateway: "10.65.1.1".parse().unwrap(),
    };
    assert_eq!(r("10.65.1.0/26"), Some(via2.clone()));
    assert_eq!(r("10.65.7.7/32"), Some(via2));
    // Both VTEPs, this host's included (the dataplane configures vxlan.calico from it).
    assert_eq!(h.state.vteps.len(), 2);
    assert_eq!(h.state.vteps[HOST].tunnel_ip.to_string(), "10.65.0.1");
    assert_eq!(h.state.vteps["node2"].node_ip, ip("172.20.1.2"));
    assert_eq!(h.state.pools.as_ref().unwrap().len(), 1);
    // Pool to Never: remote routes go (before the VTEP would).
    h.apply("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\nspec: {cidr: 10.65.0.0/16}\n");
    assert_eq!(h.state.routes.len(), 2);
    h.calc.on_input(Input::BlockRemoved {
        cidr: "10.65.0.0/26".parse().unwrap(),
    });
    h.flush();
    assert_eq!(h.state.routes.len(), 1);
}

#[test]
fn config_layers_and_env() {
    let mut h = Harness::new();
    h.calc.set_env_overrides(vec![(
        "FELIX_DEFAULTENDPOINTTOHOSTACTION".into(),
        "Return".into(),
    )]);
    h.apply("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {interfacePrefix: tap, vxlanVNI: 4097}\n---\napiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: node.node1}\nspec: {vxlanVNI: 4098}\n---\napiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: node.other}\nspec: {vxlanVNI: 1}\n");
    let c = h.state.config.clone().unwrap();
    assert_eq!(c.interface_prefixes, vec!["tap"]);
    assert_eq!(c.vxlan_vni, 4098);
    assert_eq!(
        c.default_endpoint_to_host_action,
        EndpointToHostAction::Return
    );
    h.delete("FelixConfiguration", "", "node.node1");
    assert_eq!(h.state.config.as_ref().unwrap().vxlan_vni, 4097);
}
