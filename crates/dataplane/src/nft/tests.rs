//! PolicyManager against the fake backend: rendering golden checks,
//! incremental diffs, restart reconcile, drift repair, errors.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use calico_calc::model::{
    Action, Encap, EndpointKey, EndpointToHostAction, IpSetMember, LocalEndpoint, Policy, PolicyId,
    PolicyKind, Pool, PortRange, Rule, Side, TierDefault, TierPolicies, Update,
};
use ipnet::IpNet;

use super::render::{self, ipset_name, policy_chain_name, Dir, SetKind};
use super::{FakeNft, PolicyManager};
use crate::Manager;

// ---------------------------------------------------------------- fixtures

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn rule(action: Action, id: &str) -> Rule {
    Rule {
        action,
        ip_version: None,
        protocol: None,
        not_protocol: None,
        icmp_type: None,
        icmp_code: None,
        not_icmp_type: None,
        not_icmp_code: None,
        src: Side::default(),
        dst: Side::default(),
        id: id.into(),
    }
}

fn np(ns: &str, name: &str) -> PolicyId {
    PolicyId {
        kind: PolicyKind::NetworkPolicy,
        namespace: ns.into(),
        name: name.into(),
    }
}

fn gnp(name: &str) -> PolicyId {
    PolicyId {
        kind: PolicyKind::GlobalNetworkPolicy,
        namespace: String::new(),
        name: name.into(),
    }
}

fn policy(id: PolicyId, inbound: Vec<Rule>, outbound: Vec<Rule>) -> Update {
    Update::PolicyUpsert(Arc::new(Policy {
        id,
        inbound,
        outbound,
    }))
}

fn profile(name: &str, inbound: Vec<Rule>, outbound: Vec<Rule>) -> Update {
    policy(render::profile_id(name), inbound, outbound)
}

fn tier(name: &str, ingress: Vec<PolicyId>, egress: Vec<PolicyId>) -> TierPolicies {
    TierPolicies {
        name: name.into(),
        default_action: TierDefault::Deny,
        ingress,
        egress,
    }
}

fn ep(
    ns: &str,
    name: &str,
    iface: &str,
    addr: &str,
    tiers: Vec<TierPolicies>,
    profiles: &[&str],
) -> LocalEndpoint {
    LocalEndpoint {
        key: EndpointKey {
            namespace: ns.into(),
            name: name.into(),
        },
        iface: iface.into(),
        mac: None,
        addrs: vec![net(addr)],
        allow_spoofed: vec![],
        tiers,
        profiles: profiles.iter().map(|s| s.to_string()).collect(),
        nats: vec![],
    }
}

fn ep_up(e: LocalEndpoint) -> Update {
    Update::EndpointUpsert(Arc::new(e))
}

fn ipset(id: &str, members: &[&str]) -> Update {
    Update::IpSetUpsert {
        id: id.into(),
        members: members.iter().map(|m| IpSetMember::Net(net(m))).collect(),
    }
}

/// The article's web-db-policy (production): database ingress only from web.
fn web_db_updates() -> Vec<Update> {
    let pid = np("production", "web-db-policy");
    let mut allow_from_web = rule(Action::Allow, "in0");
    allow_from_web.src.ip_set = Some("s:web".into());
    vec![
        ipset("s:web", &["198.18.0.1/32"]),
        policy(
            pid.clone(),
            vec![allow_from_web],
            vec![rule(Action::Allow, "out0")],
        ),
        profile(
            "allow-all",
            vec![rule(Action::Allow, "p-in")],
            vec![rule(Action::Allow, "p-out")],
        ),
        ep_up(ep(
            "production",
            "web",
            "tapweb",
            "198.18.0.1/32",
            vec![],
            &["allow-all"],
        )),
        ep_up(ep(
            "production",
            "db",
            "tapdb",
            "198.18.0.2/32",
            vec![tier("default", vec![pid.clone()], vec![pid])],
            &["allow-all"],
        )),
    ]
}

fn manager_with(updates: &[Update]) -> (PolicyManager<FakeNft>, FakeNft) {
    let fake = FakeNft::new();
    let mut pm = PolicyManager::new(fake.clone());
    for u in updates {
        pm.on_update(u);
    }
    pm.apply().expect("apply");
    (pm, fake)
}

fn rules(fake: &FakeNft, chain: &str) -> Vec<String> {
    fake.state()
        .rules(chain)
        .unwrap_or_else(|| panic!("chain {chain} missing"))
}

fn assert_no_table_wide_ops(fake: &FakeNft) {
    for s in fake.scripts() {
        assert!(!s.contains("flush ruleset"), "{s}");
        assert!(!s.contains("delete table"), "{s}");
        assert!(!s.contains("flush table"), "{s}");
    }
}

const ACCEPT: &str = "counter meta mark set meta mark | 0x00010000 return";

// ---------------------------------------------------------------- golden

#[test]
fn golden_web_db_policy() {
    let (_pm, fake) = manager_with(&web_db_updates());
    let pid = np("production", "web-db-policy");
    let pi = policy_chain_name(&pid, Dir::Ingress);
    let po = policy_chain_name(&pid, Dir::Egress);
    let s4 = ipset_name("s:web", SetKind::Addr, false);
    let s6 = ipset_name("s:web", SetKind::Addr, true);
    assert_eq!(
        rules(&fake, &pi),
        vec![
            format!("ip saddr @{s4} {ACCEPT} comment \"production/web-db-policy in0\""),
            format!("ip6 saddr @{s6} {ACCEPT} comment \"production/web-db-policy in0\""),
        ]
    );
    assert_eq!(
        rules(&fake, &po),
        vec![format!(
            "{ACCEPT} comment \"production/web-db-policy out0\""
        )]
    );
    assert_eq!(fake.state().elements(&s4).unwrap(), vec!["198.18.0.1"]);
    assert_eq!(fake.state().elements(&s6).unwrap(), Vec::<String>::new());

    let pri = policy_chain_name(&render::profile_id("allow-all"), Dir::Ingress);
    assert_eq!(
        rules(&fake, "cali-tw-tapdb"),
        vec![
            "ct state invalid counter drop comment \"invalid\"".to_string(),
            "meta mark set meta mark & 0xfffcffff comment \"clear accept and pass marks\"".into(),
            format!("jump {pi} comment \"production/web-db-policy\""),
            "meta mark & 0x00010000 == 0x00010000 return comment \"policy accepted\"".into(),
            "meta mark & 0x00020000 == 0 counter drop comment \"tier default: no policy passed\""
                .into(),
            format!("jump {pri} comment \"profile allow-all\""),
            "meta mark & 0x00010000 == 0x00010000 return comment \"profile accepted\"".into(),
            "counter drop comment \"no profile matched\"".into(),
        ]
    );
    // web has no policies: straight to profiles.
    assert_eq!(
        rules(&fake, "cali-tw-tapweb")[2..],
        [
            format!("jump {pri} comment \"profile allow-all\""),
            "meta mark & 0x00010000 == 0x00010000 return comment \"profile accepted\"".into(),
            "counter drop comment \"no profile matched\"".into(),
        ]
    );
    assert_eq!(
        rules(&fake, "cali-sp-tapdb"),
        vec![
            "ip saddr 198.18.0.2 return comment \"own IPv4 source\"",
            "ip6 saddr fe80::/10 return comment \"own IPv6 source\"",
            "ip saddr 0.0.0.0 udp sport 68 udp dport 67 return comment \"DHCPv4 discovery\"",
            "ip6 saddr :: meta l4proto 58 return comment \"IPv6 DAD\"",
            "counter drop comment \"spoofed source address\"",
        ]
    );
    let st = fake.state();
    assert_eq!(
        st.elements(render::MAP_FROM_WL).unwrap(),
        vec![
            "\"tapdb\" : jump cali-fw-tapdb",
            "\"tapweb\" : jump cali-fw-tapweb"
        ]
    );
    assert_eq!(
        st.elements(render::MAP_TO_WL).unwrap(),
        vec![
            "\"tapdb\" : goto cali-tw-tapdb",
            "\"tapweb\" : goto cali-tw-tapweb"
        ]
    );
    assert_eq!(
        rules(&fake, render::CHAIN_FORWARD),
        vec![
            "ct state established,related accept comment \"conntrack fast path\"",
            "iifname vmap @cali-from-wl",
            "oifname vmap @cali-to-wl",
            "oifname \"cali*\" counter drop comment \"unknown workload interface\"",
        ]
    );
    assert_no_table_wide_ops(&fake);
}

#[test]
fn golden_deny_all_default_and_frontend_http() {
    let deny = np("staging", "deny-all-default");
    let http = np("frontend", "frontend-allow-http");
    let mut allow80 = rule(Action::Allow, "r80");
    allow80.protocol = Some(6);
    allow80.dst.ports = vec![PortRange { min: 80, max: 80 }];
    let (_pm, fake) = manager_with(&[
        policy(
            deny.clone(),
            vec![rule(Action::Deny, "d0")],
            vec![rule(Action::Allow, "a0")],
        ),
        policy(http.clone(), vec![allow80], vec![]),
        ep_up(ep(
            "staging",
            "s1",
            "caliS1",
            "198.18.1.1/32",
            vec![tier("default", vec![deny.clone()], vec![deny.clone()])],
            &[],
        )),
        ep_up(ep(
            "frontend",
            "f1",
            "caliF1",
            "198.18.2.1/32",
            vec![tier("default", vec![http.clone()], vec![])],
            &[],
        )),
    ]);
    assert_eq!(
        rules(&fake, &policy_chain_name(&deny, Dir::Ingress)),
        vec!["counter drop comment \"staging/deny-all-default d0\""]
    );
    assert_eq!(
        rules(&fake, &policy_chain_name(&http, Dir::Ingress)),
        vec![format!(
            "meta l4proto 6 th dport 80 {ACCEPT} comment \"frontend/frontend-allow-http r80\""
        )]
    );
    // The frontend policy has no egress rules and the endpoint no egress
    // policy: egress falls to profiles; with none, dropped.
    assert!(!fake
        .state()
        .chains
        .contains_key(&policy_chain_name(&http, Dir::Egress)));
    assert_eq!(
        rules(&fake, "cali-fw-caliF1")[2..],
        ["counter drop comment \"no profile matched\"".to_string()]
    );
}

#[test]
fn tiers_pass_log_and_profiles() {
    let t1p = gnp("t1-pol");
    let t2a = gnp("t2-a");
    let t2b = np("ns", "t2-b");
    let mut pass_tcp = rule(Action::Pass, "p1");
    pass_tcp.protocol = Some(6);
    let (_pm, fake) = manager_with(&[
        policy(t1p.clone(), vec![rule(Action::Log, "l0"), pass_tcp], vec![]),
        policy(t2a.clone(), vec![rule(Action::Deny, "x")], vec![]),
        policy(t2b.clone(), vec![rule(Action::Allow, "y")], vec![]),
        profile("prof", vec![rule(Action::Pass, "pp")], vec![]),
        ep_up(ep(
            "ns",
            "e",
            "cali1",
            "198.18.3.1/32",
            vec![
                TierPolicies {
                    name: "security".into(),
                    default_action: TierDefault::Pass,
                    ingress: vec![t1p.clone()],
                    egress: vec![],
                },
                tier("default", vec![t2a.clone(), t2b.clone()], vec![]),
            ],
            &["prof"],
        )),
    ]);
    let c = |id: &PolicyId| policy_chain_name(id, Dir::Ingress);
    assert_eq!(
        rules(&fake, "cali-tw-cali1")[2..],
        [
            format!("jump {} comment \"t1-pol\"", c(&t1p)),
            "meta mark & 0x00010000 == 0x00010000 return comment \"policy accepted\"".into(),
            // Tier default Pass: no drop; next tier clears the pass mark.
            "meta mark set meta mark & 0xfffdffff comment \"start of tier default\"".into(),
            format!("jump {} comment \"t2-a\"", c(&t2a)),
            "meta mark & 0x00010000 == 0x00010000 return comment \"policy accepted\"".into(),
            format!(
                "meta mark & 0x00020000 == 0 jump {} comment \"ns/t2-b\"",
                c(&t2b)
            ),
            "meta mark & 0x00010000 == 0x00010000 return comment \"policy accepted\"".into(),
            "meta mark & 0x00020000 == 0 counter drop comment \"tier default: no policy passed\""
                .into(),
            format!(
                "jump {} comment \"profile prof\"",
                policy_chain_name(&render::profile_id("prof"), Dir::Ingress)
            ),
            "meta mark & 0x00010000 == 0x00010000 return comment \"profile accepted\"".into(),
            "counter drop comment \"no profile matched\"".into(),
        ]
    );
    assert_eq!(
        rules(&fake, &c(&t1p)),
        vec![
            "counter log prefix \"calico-packet \" comment \"t1-pol l0\"".to_string(),
            "meta l4proto 6 counter meta mark set meta mark | 0x00020000 return comment \"t1-pol p1\"".into(),
        ]
    );
    // Pass in a profile just ends that profile.
    assert_eq!(
        rules(
            &fake,
            &policy_chain_name(&render::profile_id("prof"), Dir::Ingress)
        ),
        vec!["counter return comment \"profile prof pp\""]
    );
}

#[test]
fn rule_matches_render_per_family() {
    let mut refs = BTreeSet::new();
    let mut r = rule(Action::Allow, "r");
    r.protocol = Some(17);
    r.src.nets = vec![
        net("198.18.0.0/24"),
        net("198.18.0.7/32"),
        net("2001:db8::/64"),
    ];
    r.src.not_nets = vec![net("198.18.0.128/25")];
    r.dst.ports = vec![
        PortRange { min: 53, max: 53 },
        PortRange {
            min: 1000,
            max: 2000,
        },
    ];
    r.dst.named_port_sets = vec!["s:np".into()];
    r.dst.not_ports = vec![PortRange {
        min: 1500,
        max: 1500,
    }];
    let out = super::rules::rule_specs(&r, false, "p", "calico-packet", &mut refs);
    let bodies: Vec<&str> = out.iter().map(|r| r.body.as_str()).collect();
    let n4 = ipset_name("s:np", SetKind::NamedPort, false);
    let n6 = ipset_name("s:np", SetKind::NamedPort, true);
    assert_eq!(
        bodies,
        vec![
            format!("meta l4proto 17 ip saddr 198.18.0.0/24 ip saddr != 198.18.0.128/25 th dport {{ 0-1499, 1501-65535 }} th dport {{ 53, 1000-2000 }} {ACCEPT}"),
            format!("meta l4proto 17 ip saddr 198.18.0.0/24 ip saddr != 198.18.0.128/25 th dport {{ 0-1499, 1501-65535 }} ip daddr . meta l4proto . th dport @{n4} {ACCEPT}"),
            format!("meta l4proto 17 ip6 saddr 2001:db8::/64 th dport {{ 0-1499, 1501-65535 }} th dport {{ 53, 1000-2000 }} {ACCEPT}"),
            format!("meta l4proto 17 ip6 saddr 2001:db8::/64 th dport {{ 0-1499, 1501-65535 }} ip6 daddr . meta l4proto . th dport @{n6} {ACCEPT}"),
        ]
    );
    assert!(refs.contains(&("s:np".to_string(), SetKind::NamedPort)));

    // ICMP: protocol 1 is IPv4 only; ICMPv6 only IPv6; notICMP type+code.
    let mut icmp = rule(Action::Deny, "i");
    icmp.protocol = Some(1);
    icmp.icmp_type = Some(8);
    icmp.icmp_code = Some(0);
    let out = super::rules::rule_specs(&icmp, false, "p", "x", &mut refs);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].body,
        "meta nfproto ipv4 meta l4proto 1 icmp type 8 icmp code 0 counter drop"
    );
    let mut icmp6 = rule(Action::Deny, "i6");
    icmp6.protocol = Some(58);
    icmp6.not_icmp_type = Some(128);
    icmp6.not_icmp_code = Some(0);
    let out = super::rules::rule_specs(&icmp6, false, "p", "x", &mut refs);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].body,
        "meta nfproto ipv6 meta l4proto 58 icmpv6 type . icmpv6 code != { 128 . 0 } counter drop"
    );
    // ip_version 6 with IPv4 nets cannot match anything.
    let mut never = rule(Action::Allow, "n");
    never.ip_version = Some(6);
    never.dst.nets = vec![net("198.18.0.0/24")];
    assert!(super::rules::rule_specs(&never, false, "p", "x", &mut refs).is_empty());
    // ip_version 4 alone: one IPv4 rule.
    let mut v4 = rule(Action::Allow, "v4");
    v4.ip_version = Some(4);
    v4.dst.not_ip_sets = vec!["s:x".into()];
    let out = super::rules::rule_specs(&v4, false, "p", "x", &mut refs);
    assert_eq!(
        out.iter().map(|r| r.body.clone()).collect::<Vec<_>>(),
        vec![format!(
            "ip daddr != @{} {ACCEPT}",
            ipset_name("s:x", SetKind::Addr, false)
        )]
    );
}

/// The fail-open found by the differential check: `notNets` of one family
/// must not leave the other family's copy of the rule unguarded.
#[test]
fn every_family_copy_carries_its_family() {
    let mut refs = BTreeSet::new();
    let mut r = rule(Action::Allow, "r");
    r.protocol = Some(6);
    r.src.not_nets = vec![net("198.19.0.0/24")];
    let bodies: Vec<String> = super::rules::rule_specs(&r, false, "p", "x", &mut refs)
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(
        bodies,
        vec![
            format!("meta l4proto 6 ip saddr != 198.19.0.0/24 {ACCEPT}"),
            format!("meta nfproto ipv6 meta l4proto 6 {ACCEPT}"),
        ]
    );
    // ipVersion alone, and a negated selector of the other family's set.
    let mut v6 = rule(Action::Deny, "v6");
    v6.ip_version = Some(6);
    let out = super::rules::rule_specs(&v6, false, "p", "x", &mut refs);
    assert_eq!(out[0].body, "meta nfproto ipv6 counter drop");
}

#[test]
fn runs_of_same_action_merge_into_one_set_lookup() {
    let mut refs = BTreeSet::new();
    let sg = |cidr: &str, lo: u16, hi: u16, id: &str| {
        let mut r = rule(Action::Allow, id);
        r.ip_version = Some(4);
        r.protocol = Some(6);
        r.src.nets = vec![net(cidr)];
        r.dst.ports = vec![PortRange { min: lo, max: hi }];
        r
    };
    let mut log = rule(Action::Log, "log");
    log.protocol = Some(17);
    let rules = vec![
        sg("10.0.0.0/8", 80, 90, "a"),
        sg("10.1.0.0/16", 85, 100, "b"),
        sg("192.0.2.1/32", 22, 22, "c"),
        log,
        sg("10.0.0.0/8", 443, 443, "d"),
        rule(Action::Deny, "e"),
    ];
    let out = super::rules::policy_rules(&rules, false, "p", "pfx", &mut refs);
    let texts: Vec<String> = out.iter().map(|r| r.body.clone()).collect();
    assert_eq!(
        texts,
        vec![
            format!("ip saddr . meta l4proto . th dport {{ 192.0.2.1 . 6 . 22, 10.0.0.0/8 . 6 . 80-90, 10.1.0.0/16 . 6 . 91-100 }} {ACCEPT}"),
            "meta l4proto 17 counter log prefix \"pfx \"".to_string(),
            format!("meta l4proto 6 ip saddr 10.0.0.0/8 th dport 443 {ACCEPT}"),
            "counter drop".to_string(),
        ]
    );
    assert_eq!(out[0].comment.as_deref(), Some("p a..c (3 merged)"));
}

// ---------------------------------------------------------------- incremental

#[test]
fn unchanged_flush_writes_nothing() {
    let (mut pm, fake) = manager_with(&web_db_updates());
    let n = fake.scripts().len();
    for u in web_db_updates() {
        pm.on_update(&u);
    }
    assert_eq!(pm.apply().unwrap().writes, 0);
    assert_eq!(pm.apply().unwrap().writes, 0);
    assert_eq!(fake.scripts().len(), n, "no transaction for a no-op");
    assert_eq!(
        fake.list_count(),
        1,
        "steady state never re-reads the kernel"
    );
}

#[test]
fn label_change_is_only_element_updates() {
    let (mut pm, fake) = manager_with(&web_db_updates());
    // A second endpoint gains app=web: the calc sends a member delta.
    pm.on_update(&Update::IpSetDelta {
        id: "s:web".into(),
        added: [IpSetMember::Net(net("198.18.0.9/32"))].into(),
        removed: BTreeSet::new(),
    });
    let stats = pm.apply().unwrap();
    let s4 = ipset_name("s:web", SetKind::Addr, false);
    let last = fake.scripts().last().unwrap().clone();
    assert_eq!(
        last,
        format!("add element inet calico {s4} {{ 198.18.0.9 }}\n")
    );
    assert_eq!(stats.writes, 1);
    // And the label goes away again.
    pm.on_update(&Update::IpSetDelta {
        id: "s:web".into(),
        added: BTreeSet::new(),
        removed: [IpSetMember::Net(net("198.18.0.9/32"))].into(),
    });
    pm.apply().unwrap();
    assert_eq!(
        fake.scripts().last().unwrap(),
        &format!("delete element inet calico {s4} {{ 198.18.0.9 }}\n")
    );
    // A full upsert that overlaps aggregates (no overlapping elements).
    pm.on_update(&ipset(
        "s:web",
        &["198.18.0.0/31", "198.18.0.1/32", "198.18.0.4/32"],
    ));
    pm.apply().unwrap();
    assert_eq!(
        fake.state().elements(&s4).unwrap(),
        vec!["198.18.0.0/31", "198.18.0.4"]
    );
}

#[test]
fn policy_change_rewrites_only_its_chain() {
    let (mut pm, fake) = manager_with(&web_db_updates());
    let pid = np("production", "web-db-policy");
    let mut allow = rule(Action::Allow, "in0");
    allow.src.ip_set = Some("s:web".into());
    allow.protocol = Some(6);
    pm.on_update(&policy(
        pid.clone(),
        vec![allow],
        vec![rule(Action::Allow, "out0")],
    ));
    pm.apply().unwrap();
    let script = fake.scripts().last().unwrap().clone();
    let pi = policy_chain_name(&pid, Dir::Ingress);
    assert!(
        script.starts_with(&format!("flush chain inet calico {pi}\n")),
        "{script}"
    );
    for line in script.lines() {
        assert!(line.contains(&pi), "unexpected statement {line}");
    }
}

#[test]
fn chains_and_sets_are_refcounted() {
    let pid = np("production", "web-db-policy");
    let pi = policy_chain_name(&pid, Dir::Ingress);
    let s4 = ipset_name("s:web", SetKind::Addr, false);
    // Policy and set known, but no endpoint uses them: nothing programmed.
    let mut updates = web_db_updates();
    let db = updates.pop().unwrap();
    let (mut pm, fake) = manager_with(&updates);
    assert!(!fake.state().chains.contains_key(&pi));
    assert!(!fake.state().sets.contains_key(&s4));
    pm.on_update(&db);
    pm.apply().unwrap();
    assert!(fake.state().chains.contains_key(&pi));
    assert!(fake.state().sets.contains_key(&s4));
    // Endpoint gone: its chains, dispatch entries, policy chains and sets go.
    pm.on_update(&Update::EndpointRemove(EndpointKey {
        namespace: "production".into(),
        name: "db".into(),
    }));
    pm.apply().unwrap();
    let st = fake.state();
    assert!(!st.chains.contains_key(&pi));
    assert!(!st.chains.contains_key("cali-tw-tapdb"));
    assert!(!st.sets.contains_key(&s4));
    assert_eq!(
        st.elements(render::MAP_TO_WL).unwrap(),
        vec!["\"tapweb\" : goto cali-tw-tapweb"]
    );
    assert_eq!(
        pm.programmed_policy_chains(),
        2,
        "only the profile's two chains remain"
    );
}

#[test]
fn interface_rename_moves_chains() {
    let (mut pm, fake) = manager_with(&web_db_updates());
    let mut web = ep(
        "production",
        "web",
        "tapweb2",
        "198.18.0.1/32",
        vec![],
        &["allow-all"],
    );
    web.allow_spoofed = vec![net("198.18.9.0/24")];
    pm.on_update(&ep_up(web));
    pm.apply().unwrap();
    let st = fake.state();
    assert!(!st.chains.contains_key("cali-tw-tapweb"));
    assert!(st.chains.contains_key("cali-tw-tapweb2"));
    assert_eq!(
        st.rules("cali-sp-tapweb2").unwrap()[0],
        "ip saddr { 198.18.0.1, 198.18.9.0/24 } return comment \"own IPv4 source\""
    );
}

#[test]
fn config_pools_and_floating_ips() {
    let mut cfg = render::default_host_config();
    cfg.interface_prefixes = vec!["tap".into()];
    cfg.default_endpoint_to_host_action = EndpointToHostAction::Accept;
    let mut e = ep("openstack", "vm", "tap1234", "198.18.0.5/32", vec![], &[]);
    e.nats = vec![(
        "198.18.0.5".parse::<IpAddr>().unwrap(),
        "192.0.2.100".parse::<IpAddr>().unwrap(),
    )];
    let pool = |cidr: &str, nat| Pool {
        name: cidr.into(),
        cidr: net(cidr),
        nat_outgoing: nat,
        vxlan: Encap::Always,
        ipip: Encap::Never,
        disabled: false,
    };
    let (_pm, fake) = manager_with(&[
        Update::Config(cfg),
        Update::Pools(vec![
            pool("198.18.0.0/16", true),
            pool("2001:db8::/48", false),
        ]),
        ep_up(e),
    ]);
    let st = fake.state();
    assert_eq!(
        st.elements(render::SET_POOLS4).unwrap(),
        vec!["198.18.0.0/16"]
    );
    assert_eq!(
        st.elements(render::SET_POOLS6).unwrap(),
        vec!["2001:db8::/48"]
    );
    assert_eq!(
        st.elements(render::SET_MASQ4).unwrap(),
        vec!["198.18.0.0/16"]
    );
    assert!(st.elements(render::SET_MASQ6).unwrap().is_empty());
    assert_eq!(
        st.elements(render::MAP_FIP_DNAT4).unwrap(),
        vec!["192.0.2.100 : 198.18.0.5"]
    );
    assert_eq!(
        st.elements(render::MAP_FIP_SNAT4).unwrap(),
        vec!["198.18.0.5 : 192.0.2.100"]
    );
    let input = st.rules(render::CHAIN_INPUT).unwrap();
    assert!(input.contains(
        &"iifname \"tap*\" goto cali-wl-to-host comment \"workload to host\"".to_string()
    ));
    let wl = st.rules(render::CHAIN_WL_TO_HOST).unwrap();
    assert!(wl.contains(
        &"meta nfproto ipv4 udp sport 68 udp dport 67 accept comment \"DHCPv4 (OpenStack)\""
            .to_string()
    ));
    assert_eq!(
        wl.last().unwrap(),
        "accept comment \"defaultEndpointToHostAction Accept\""
    );
    // VXLAN pool: workloads may not send VXLAN.
    assert!(st
        .rules("cali-fw-tap1234")
        .unwrap()
        .contains(&"udp dport 4789 counter drop comment \"VXLAN from workload\"".to_string()));
    assert!(st
        .elements(render::SET_FAILSAFE_IN)
        .unwrap()
        .contains(&"6 . 22".to_string()));
}

// ---------------------------------------------------------------- restart / drift / errors

#[test]
fn restart_with_same_state_writes_nothing() {
    let (_pm, fake) = manager_with(&web_db_updates());
    let before = fake.state();
    let mut pm2 = PolicyManager::new(fake.clone());
    for u in web_db_updates() {
        pm2.on_update(&u);
    }
    let n = fake.scripts().len();
    assert_eq!(pm2.apply().unwrap().writes, 0);
    assert_eq!(fake.scripts().len(), n);
    assert_eq!(fake.state(), before);
}

#[test]
fn restart_reconciles_only_differences() {
    let (_pm, fake) = manager_with(&web_db_updates());
    // The previous instance left a stale endpoint + policy, a stale set, a
    // missing element and an extra one.
    let s4 = ipset_name("s:web", SetKind::Addr, false);
    fake.run_by_hand(&format!(
        "add chain inet calico cali-pi-stale\n\
         add set inet calico s4-stale {{ type ipv4_addr; flags interval; }}\n\
         add rule inet calico cali-pi-stale ip saddr @s4-stale accept\n\
         add chain inet calico cali-tw-tapold\n\
         add rule inet calico cali-tw-tapold jump cali-pi-stale\n\
         add element inet calico cali-to-wl {{ \"tapold\" : goto cali-tw-tapold }}\n\
         delete element inet calico {s4} {{ 198.18.0.1 }}\n\
         add element inet calico {s4} {{ 198.18.0.66 }}\n"
    ))
    .unwrap();
    let (_pm2, _) = {
        let mut pm2 = PolicyManager::new(fake.clone());
        for u in web_db_updates() {
            pm2.on_update(&u);
        }
        pm2.apply().unwrap();
        (pm2, ())
    };
    let script = fake.scripts().last().unwrap().clone();
    let lines: Vec<&str> = script.lines().collect();
    assert_eq!(
        lines,
        vec![
            "delete element inet calico cali-to-wl { \"tapold\" }".to_string(),
            format!("delete element inet calico {s4} {{ 198.18.0.66 }}"),
            "flush chain inet calico cali-pi-stale".into(),
            "flush chain inet calico cali-tw-tapold".into(),
            format!("add element inet calico {s4} {{ 198.18.0.1 }}"),
            "delete set inet calico s4-stale".into(),
            "delete chain inet calico cali-pi-stale".into(),
            "delete chain inet calico cali-tw-tapold".into(),
        ]
    );
    let (_, fresh) = manager_with(&web_db_updates());
    assert_eq!(
        fake.state(),
        fresh.state(),
        "reconciled to exactly the desired table"
    );
}

#[test]
fn drift_is_repaired_on_resync() {
    let (mut pm, fake) = manager_with(&web_db_updates());
    let good = fake.state();
    let pid = np("production", "web-db-policy");
    let pi = policy_chain_name(&pid, Dir::Ingress);
    let s4 = ipset_name("s:web", SetKind::Addr, false);
    fake.run_by_hand(&format!(
        "flush chain inet calico {pi}\n\
         flush chain inet calico cali-FORWARD\n\
         delete chain inet calico cali-FORWARD\n\
         delete element inet calico {s4} {{ 198.18.0.1 }}\n"
    ))
    .unwrap();
    // A rule appended by someone else to a chain we own.
    fake.run_by_hand("add rule inet calico cali-tw-tapweb accept\n")
        .unwrap();
    // Without resync the manager trusts its model: nothing is written.
    assert_eq!(pm.apply().unwrap().writes, 0);
    pm.resync();
    let stats = pm.apply().unwrap();
    assert_eq!(fake.state(), good);
    let script = fake.scripts().last().unwrap().clone();
    assert!(
        !script.contains("cali-tw-tapdb"),
        "untouched chains are not rewritten:\n{script}"
    );
    assert!(stats.writes > 0 && stats.writes < 20, "{script}");
    // The repair is itself verified on the next resync: nothing to do.
    pm.resync();
    assert_eq!(pm.apply().unwrap().writes, 0);
}

#[test]
fn table_deleted_by_hand_is_recreated() {
    let (mut pm, fake) = manager_with(&web_db_updates());
    let good = fake.state();
    fake.mutate(|s| *s = Default::default());
    pm.resync();
    pm.apply().unwrap();
    assert_eq!(fake.state(), good);
}

#[test]
fn failed_apply_stays_dirty_and_retries() {
    let fake = FakeNft::new();
    let mut pm = PolicyManager::new(fake.clone());
    for u in web_db_updates() {
        pm.on_update(&u);
    }
    fake.fail_next_apply(
        "/dev/stdin:3:1-20: Error: Could not process rule: No buffer space available",
    );
    let err = pm.apply().unwrap_err().to_string();
    assert!(err.contains("No buffer space available"), "{err}");
    assert!(!fake.state().table_exists);
    let stats = pm.apply().unwrap();
    assert!(stats.writes > 10);
    let (_, fresh) = manager_with(&web_db_updates());
    assert_eq!(fake.state(), fresh.state());
}

#[test]
fn changed_set_type_is_recreated_with_referencing_chains() {
    let (mut pm, fake) = manager_with(&web_db_updates());
    let good = fake.state();
    let s4 = ipset_name("s:web", SetKind::Addr, false);
    // Simulate an older schema: same name, different type.
    fake.mutate(|s| {
        let set = s.sets.get_mut(&s4).unwrap();
        set.def.interval = false;
    });
    pm.resync();
    pm.apply().unwrap();
    assert_eq!(fake.state(), good);
}

#[test]
fn benchmark_shape_thousand_policies_one_endpoint() {
    let ids: Vec<PolicyId> = (0..1000).map(|i| gnp(&format!("pol-{i}"))).collect();
    let mut updates: Vec<Update> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let mut r = rule(Action::Allow, &format!("r{i}"));
            r.protocol = Some(6);
            r.dst.ports = vec![PortRange {
                min: 1000 + i as u16,
                max: 1000 + i as u16,
            }];
            r.src.ip_set = Some(format!("s:{}", i % 10));
            policy(id.clone(), vec![r], vec![])
        })
        .collect();
    for i in 0..10 {
        updates.push(ipset(&format!("s:{i}"), &[&format!("198.18.{i}.0/24")]));
    }
    updates.push(ep_up(ep(
        "ns",
        "e",
        "cali1",
        "198.18.100.1/32",
        vec![tier("default", ids.clone(), vec![])],
        &[],
    )));
    let (pm, fake) = manager_with(&updates);
    assert_eq!(pm.programmed_policy_chains(), 1000);
    assert_eq!(fake.state().sets.len(), render::static_sets().len() + 20);
}
