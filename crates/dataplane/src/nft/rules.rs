//! Compiled policy rules → nft rules.
//!
//! Two steps. First every model rule is expanded into *atoms*: one per
//! address family it can match (a rule with family-specific matches is split
//! per family and dropped for a family it cannot match; an atom of one family
//! always carries that family, explicitly when no `ip`/`ip6` expression
//! implies it), and one per alternative of a side's ports (a numeric list OR
//! each named-port set).
//!
//! Second, consecutive rules with the same terminal action (Allow, Deny,
//! Pass) form a *run*. Within a run the order of rules does not matter: the
//! first match and any later match lead to the same verdict. So atoms of a
//! run that differ only in addresses, protocol and ports are merged into one
//! nft rule with a set lookup (`ip saddr . meta l4proto . th dport { … }`),
//! which costs the same for 1 or 1,000 rules. Set elements are made disjoint
//! first (the kernel rejects overlapping intervals). Log rules end a run;
//! anything with a negative match, ICMP fields or a named port is rendered as
//! its own rule. Rules the calculation marked as never matching are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use calico_calc::model::{Action, IpSetId, PortRange, Rule, Side};
use ipnet::IpNet;

use super::backend::net_text;
use super::render::{aggregate, ipset_name, SetKind, SetRef, MARK_ACCEPT, MARK_PASS};
use super::table::{sanitize_comment, RuleSpec};

/// Protocols whose header starts with 16-bit source and destination ports;
/// `th dport` is only meaningful for them.
const PORT_PROTOCOLS: [u8; 4] = [6, 17, 132, 136];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Fam {
    V4,
    V6,
}

impl Fam {
    fn of(n: &IpNet) -> Fam {
        match n {
            IpNet::V4(_) => Fam::V4,
            IpNet::V6(_) => Fam::V6,
        }
    }
    fn ip(self) -> &'static str {
        match self {
            Fam::V4 => "ip",
            Fam::V6 => "ip6",
        }
    }
    fn nfproto(self) -> &'static str {
        match self {
            Fam::V4 => "ipv4",
            Fam::V6 => "ipv6",
        }
    }
    fn is_v6(self) -> bool {
        self == Fam::V6
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum SideId {
    Src,
    Dst,
}

impl SideId {
    fn letter(self) -> &'static str {
        match self {
            SideId::Src => "s",
            SideId::Dst => "d",
        }
    }
}

/// One alternative of a side's positive port match.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PortAlt {
    Any,
    Ranges(Vec<PortRange>),
    Named(IpSetId),
}

/// One side of an atom, already filtered to the atom's family.
#[derive(Clone, Debug)]
struct AtomSide {
    nets: Vec<IpNet>,
    not_nets: Vec<IpNet>,
    ip_set: Option<IpSetId>,
    not_ip_sets: Vec<IpSetId>,
    not_named: Vec<IpSetId>,
    not_ports: Vec<PortRange>,
    port: PortAlt,
}

impl AtomSide {
    fn has_negations(&self) -> bool {
        !self.not_nets.is_empty()
            || !self.not_ip_sets.is_empty()
            || !self.not_named.is_empty()
            || !self.not_ports.is_empty()
    }
    /// Whether the side's text contains an `ip`/`ip6` address expression,
    /// which implies the family.
    fn has_addr_expr(&self) -> bool {
        !self.nets.is_empty()
            || !self.not_nets.is_empty()
            || self.ip_set.is_some()
            || !self.not_ip_sets.is_empty()
            || !self.not_named.is_empty()
            || matches!(self.port, PortAlt::Named(_))
    }
}

/// A rule restricted to one family (or none) and one port alternative per side.
#[derive(Clone, Debug)]
struct Atom {
    fam: Option<Fam>,
    protocol: Option<u8>,
    /// Ports are matched without a protocol: restrict to port protocols.
    port_guard: bool,
    not_protocol: Option<u8>,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
    not_icmp_type: Option<u8>,
    not_icmp_code: Option<u8>,
    src: AtomSide,
    dst: AtomSide,
}

fn is_never(rule: &Rule) -> bool {
    rule.protocol.is_some() && rule.protocol == rule.not_protocol
}

fn side_is_family_specific(s: &Side) -> bool {
    !s.nets.is_empty()
        || !s.not_nets.is_empty()
        || s.ip_set.is_some()
        || !s.not_ip_sets.is_empty()
        || !s.named_port_sets.is_empty()
        || !s.not_named_port_sets.is_empty()
}

/// The families a rule can match, or `[None]` when it has no
/// family-specific match at all.
fn families(rule: &Rule) -> Vec<Option<Fam>> {
    let mut fams = vec![Fam::V4, Fam::V6];
    match rule.ip_version {
        Some(4) => fams.retain(|f| *f == Fam::V4),
        Some(6) => fams.retain(|f| *f == Fam::V6),
        _ => {}
    }
    match rule.protocol {
        Some(1) => fams.retain(|f| *f == Fam::V4),
        Some(58) => fams.retain(|f| *f == Fam::V6),
        _ => {}
    }
    for side in [&rule.src, &rule.dst] {
        if !side.nets.is_empty() {
            fams.retain(|f| side.nets.iter().any(|n| Fam::of(n) == *f));
        }
    }
    let specific = rule.ip_version.is_some()
        || rule.icmp_type.is_some()
        || rule.not_icmp_type.is_some()
        || side_is_family_specific(&rule.src)
        || side_is_family_specific(&rule.dst);
    if specific {
        fams.into_iter().map(Some).collect()
    } else {
        vec![None]
    }
}

/// The port alternatives of a side: numeric ranges OR each named set.
fn port_alts(side: &Side) -> Vec<PortAlt> {
    let mut alts = Vec::new();
    if !side.ports.is_empty() {
        alts.push(PortAlt::Ranges(side.ports.clone()));
    }
    alts.extend(side.named_port_sets.iter().cloned().map(PortAlt::Named));
    if alts.is_empty() {
        alts.push(PortAlt::Any);
    }
    alts
}

/// A side filtered to a family; None when its positive nets leave nothing.
fn filter_side(side: &Side, fam: Option<Fam>, port: PortAlt) -> Option<AtomSide> {
    let of_fam = |nets: &[IpNet]| match fam {
        Some(f) => aggregate(nets.iter().filter(|n| Fam::of(n) == f).copied()),
        None => Vec::new(),
    };
    let nets = of_fam(&side.nets);
    if !side.nets.is_empty() && nets.is_empty() {
        return None;
    }
    if !side.not_ports.is_empty() && complement(&side.not_ports).is_empty() {
        return None; // every port is excluded
    }
    Some(AtomSide {
        nets,
        not_nets: of_fam(&side.not_nets),
        ip_set: side.ip_set.clone(),
        not_ip_sets: side.not_ip_sets.clone(),
        not_named: side.not_named_port_sets.clone(),
        not_ports: side.not_ports.clone(),
        port,
    })
}

fn atoms(rule: &Rule) -> Vec<Atom> {
    let port_guard = rule.protocol.is_none()
        && [&rule.src, &rule.dst]
            .iter()
            .any(|s| !s.ports.is_empty() || !s.not_ports.is_empty());
    let mut out = Vec::new();
    for fam in families(rule) {
        for sp in port_alts(&rule.src) {
            for dp in port_alts(&rule.dst) {
                let (Some(src), Some(dst)) = (
                    filter_side(&rule.src, fam, sp.clone()),
                    filter_side(&rule.dst, fam, dp),
                ) else {
                    continue;
                };
                out.push(Atom {
                    fam,
                    protocol: rule.protocol,
                    port_guard,
                    not_protocol: rule.not_protocol,
                    icmp_type: rule.icmp_type,
                    icmp_code: rule.icmp_code,
                    not_icmp_type: rule.not_icmp_type,
                    not_icmp_code: rule.not_icmp_code,
                    src,
                    dst,
                });
            }
        }
    }
    out
}

fn net_list(nets: &[IpNet]) -> String {
    if nets.len() == 1 {
        net_text(&nets[0])
    } else {
        let items: Vec<String> = nets.iter().map(net_text).collect();
        format!("{{ {} }}", items.join(", "))
    }
}

fn range_text(p: &PortRange) -> String {
    if p.min == p.max {
        p.min.to_string()
    } else {
        format!("{}-{}", p.min, p.max)
    }
}

fn port_list(ports: &[PortRange]) -> String {
    let items: Vec<String> = ports.iter().map(range_text).collect();
    if items.len() == 1 {
        items[0].clone()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

/// The terminal (or, for Log, non-terminal) statement of a rule.
fn action_text(action: Action, profile: bool, log_prefix: &str) -> String {
    match (action, profile) {
        (Action::Allow, _) => format!("counter meta mark set meta mark | {MARK_ACCEPT} return"),
        (Action::Deny, _) => "counter drop".to_string(),
        (Action::Pass, false) => format!("counter meta mark set meta mark | {MARK_PASS} return"),
        (Action::Pass, true) => "counter return".to_string(),
        (Action::Log, _) => format!("counter log prefix \"{} \"", sanitize_comment(log_prefix)),
    }
}

/// Matches of an atom as nft text (ending in a space when not empty).
fn atom_text(a: &Atom, refs: &mut BTreeSet<SetRef>) -> String {
    let mut m = String::new();
    if let Some(f) = a.fam {
        if !a.src.has_addr_expr() && !a.dst.has_addr_expr() {
            let _ = write!(m, "meta nfproto {} ", f.nfproto());
        }
    }
    if let Some(p) = a.protocol {
        let _ = write!(m, "meta l4proto {p} ");
    } else if a.port_guard {
        m.push_str("meta l4proto { 6, 17, 132, 136 } ");
    }
    if let Some(p) = a.not_protocol {
        let _ = write!(m, "meta l4proto != {p} ");
    }
    let icmp = if a.fam == Some(Fam::V6) {
        "icmpv6"
    } else {
        "icmp"
    };
    if let Some(t) = a.icmp_type {
        let _ = write!(m, "{icmp} type {t} ");
        if let Some(c) = a.icmp_code {
            let _ = write!(m, "{icmp} code {c} ");
        }
    }
    if let Some(t) = a.not_icmp_type {
        match a.not_icmp_code {
            Some(c) => {
                let _ = write!(m, "{icmp} type . {icmp} code != {{ {t} . {c} }} ");
            }
            None => {
                let _ = write!(m, "{icmp} type != {t} ");
            }
        }
    }
    let fam = a.fam.unwrap_or(Fam::V4);
    for (side, id) in [(&a.src, SideId::Src), (&a.dst, SideId::Dst)] {
        side_fixed_text(&mut m, side, id, fam, refs);
    }
    for (side, id) in [(&a.src, SideId::Src), (&a.dst, SideId::Dst)] {
        side_port_text(&mut m, side, id, fam, refs);
    }
    m
}

/// Address matches and negated ports of one side.
fn side_fixed_text(
    m: &mut String,
    side: &AtomSide,
    id: SideId,
    fam: Fam,
    refs: &mut BTreeSet<SetRef>,
) {
    let addr = format!("{} {}addr", fam.ip(), id.letter());
    let port = format!("th {}port", id.letter());
    let v6 = fam.is_v6();
    if !side.nets.is_empty() {
        let _ = write!(m, "{addr} {} ", net_list(&side.nets));
    }
    if !side.not_nets.is_empty() {
        let _ = write!(m, "{addr} != {} ", net_list(&side.not_nets));
    }
    if let Some(set) = &side.ip_set {
        refs.insert((set.clone(), SetKind::Addr));
        let _ = write!(m, "{addr} @{} ", ipset_name(set, SetKind::Addr, v6));
    }
    for set in &side.not_ip_sets {
        refs.insert((set.clone(), SetKind::Addr));
        let _ = write!(m, "{addr} != @{} ", ipset_name(set, SetKind::Addr, v6));
    }
    for set in &side.not_named {
        refs.insert((set.clone(), SetKind::NamedPort));
        let _ = write!(
            m,
            "{addr} . meta l4proto . {port} != @{} ",
            ipset_name(set, SetKind::NamedPort, v6)
        );
    }
    if !side.not_ports.is_empty() {
        // As the complement, never `!=`: nft 1.0.6 merges `th sport != A
        // th dport != B` into one 32-bit `!=`, which matches when either
        // differs (found by the differential test).
        let _ = write!(m, "{port} {} ", port_list(&complement(&side.not_ports)));
    }
}

/// The ports (0–65535) outside `ranges`.
fn complement(ranges: &[PortRange]) -> Vec<PortRange> {
    let mut sorted = ranges.to_vec();
    sorted.sort();
    let mut out = Vec::new();
    let mut next: u32 = 0;
    for r in sorted {
        if (r.min as u32) > next {
            out.push(PortRange {
                min: next as u16,
                max: r.min - 1,
            });
        }
        next = next.max(r.max as u32 + 1);
    }
    if next <= u16::MAX as u32 {
        out.push(PortRange {
            min: next as u16,
            max: u16::MAX,
        });
    }
    out
}

/// The positive port alternative of one side.
fn side_port_text(
    m: &mut String,
    side: &AtomSide,
    id: SideId,
    fam: Fam,
    refs: &mut BTreeSet<SetRef>,
) {
    let port = format!("th {}port", id.letter());
    match &side.port {
        PortAlt::Any => {}
        PortAlt::Ranges(r) => {
            let _ = write!(m, "{port} {} ", port_list(r));
        }
        PortAlt::Named(set) => {
            refs.insert((set.clone(), SetKind::NamedPort));
            let _ = write!(
                m,
                "{} {}addr . meta l4proto . {port} @{} ",
                fam.ip(),
                id.letter(),
                ipset_name(set, SetKind::NamedPort, fam.is_v6())
            );
        }
    }
}

/// nft rules for one model rule, without merging (Log rules, and tests).
pub fn rule_specs(
    rule: &Rule,
    profile: bool,
    label: &str,
    log_prefix: &str,
    refs: &mut BTreeSet<SetRef>,
) -> Vec<RuleSpec> {
    let action = action_text(rule.action, profile, log_prefix);
    let comment = format!("{label} {}", rule.id);
    atoms(rule)
        .iter()
        .map(|a| RuleSpec::commented(format!("{}{action}", atom_text(a, refs)), comment.clone()))
        .collect()
}

/// nft rules for a policy's rules in one direction, runs merged.
pub fn policy_rules(
    rules: &[Rule],
    profile: bool,
    label: &str,
    log_prefix: &str,
    refs: &mut BTreeSet<SetRef>,
) -> Vec<RuleSpec> {
    let live: Vec<&Rule> = rules.iter().filter(|r| !is_never(r)).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < live.len() {
        let action = live[i].action;
        let mut j = i + 1;
        if action != Action::Log {
            while j < live.len() && live[j].action == action {
                j += 1;
            }
        }
        out.extend(run_specs(&live[i..j], profile, label, log_prefix, refs));
        i = j;
    }
    out
}

/// What an atom's address dimension is in a merged rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum AddrKey {
    None,
    Nets(SideId),
    Set(SideId, IpSetId),
}

/// Atoms with equal keys merge into one rule with one set lookup.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct MergeKey {
    fam: Option<Fam>,
    addr: AddrKey,
    /// Protocol is a dimension (explicit, or implied by ports).
    proto: bool,
    port: Option<SideId>,
}

/// The merge key of an atom, or None when it must stay a rule of its own.
fn merge_key(a: &Atom) -> Option<MergeKey> {
    let plain = a.not_protocol.is_none()
        && a.icmp_type.is_none()
        && a.not_icmp_type.is_none()
        && !a.src.has_negations()
        && !a.dst.has_negations();
    if !plain {
        return None;
    }
    let mut addr = AddrKey::None;
    let mut port = None;
    for (side, id) in [(&a.src, SideId::Src), (&a.dst, SideId::Dst)] {
        let this = match (&side.ip_set, side.nets.is_empty()) {
            (None, true) => AddrKey::None,
            (None, false) => AddrKey::Nets(id),
            (Some(set), true) => AddrKey::Set(id, set.clone()),
            (Some(_), false) => return None,
        };
        if this != AddrKey::None {
            if addr != AddrKey::None {
                return None;
            }
            addr = this;
        }
        match side.port {
            PortAlt::Any => {}
            PortAlt::Named(_) => return None,
            PortAlt::Ranges(_) => {
                if port.is_some() {
                    return None;
                }
                port = Some(id);
            }
        }
    }
    let proto = a.protocol.is_some() || port.is_some();
    if addr == AddrKey::None && !proto {
        return None; // matches everything of its family: nothing to merge
    }
    Some(MergeKey {
        fam: a.fam,
        addr,
        proto,
        port,
    })
}

enum Item {
    Single(Box<Atom>, String),
    Group(MergeKey),
}

fn run_specs(
    run: &[&Rule],
    profile: bool,
    label: &str,
    log_prefix: &str,
    refs: &mut BTreeSet<SetRef>,
) -> Vec<RuleSpec> {
    let action = action_text(run[0].action, profile, log_prefix);
    let mut items = Vec::new();
    let mut groups: BTreeMap<MergeKey, Vec<(Atom, String)>> = BTreeMap::new();
    for rule in run {
        for atom in atoms(rule) {
            match merge_key(&atom) {
                Some(k) => {
                    let members = groups.entry(k.clone()).or_default();
                    if members.is_empty() {
                        items.push(Item::Group(k));
                    }
                    members.push((atom, rule.id.clone()));
                }
                None => items.push(Item::Single(Box::new(atom), rule.id.clone())),
            }
        }
    }
    let mut out = Vec::new();
    for item in items {
        let (text, comment) = match item {
            Item::Single(atom, id) => (atom_text(&atom, refs), format!("{label} {id}")),
            Item::Group(k) => {
                let members = &groups[&k];
                if members.len() == 1 {
                    let (atom, id) = &members[0];
                    (atom_text(atom, refs), format!("{label} {id}"))
                } else {
                    let first = &members[0].1;
                    let last = &members[members.len() - 1].1;
                    let comment = format!("{label} {first}..{last} ({} merged)", members.len());
                    (group_text(&k, members, refs), comment)
                }
            }
        };
        out.push(RuleSpec::commented(format!("{text}{action}"), comment));
    }
    out
}

/// One element of a merged set: any of its parts may be absent.
type Elem = (Option<IpNet>, Option<u8>, Option<PortRange>);

fn group_text(k: &MergeKey, members: &[(Atom, String)], refs: &mut BTreeSet<SetRef>) -> String {
    let fam = k.fam.unwrap_or(Fam::V4);
    let mut m = String::new();
    let mut dims = Vec::new();
    match &k.addr {
        AddrKey::None => {
            if let Some(f) = k.fam {
                let _ = write!(m, "meta nfproto {} ", f.nfproto());
            }
        }
        AddrKey::Nets(side) => dims.push(format!("{} {}addr", fam.ip(), side.letter())),
        AddrKey::Set(side, set) => {
            refs.insert((set.clone(), SetKind::Addr));
            let _ = write!(
                m,
                "{} {}addr @{} ",
                fam.ip(),
                side.letter(),
                ipset_name(set, SetKind::Addr, fam.is_v6())
            );
        }
    }
    if k.proto {
        dims.push("meta l4proto".into());
    }
    if let Some(side) = k.port {
        dims.push(format!("th {}port", side.letter()));
    }
    let inputs: Vec<MemberValues> = members.iter().map(|(a, _)| member_values(a, k)).collect();
    let elems = disjoint_elements(&inputs);
    if dims.is_empty() || elems.is_empty() {
        // Every member is the same set lookup with nothing else to match.
        return m;
    }
    let texts: Vec<String> = elems.iter().map(elem_text).collect();
    let _ = write!(m, "{} {{ {} }} ", dims.join(" . "), texts.join(", "));
    m
}

/// The values an atom contributes to each dimension of its group.
struct MemberValues {
    nets: Option<Vec<IpNet>>,
    protos: Option<Vec<u8>>,
    ports: Option<Vec<PortRange>>,
}

fn member_values(a: &Atom, k: &MergeKey) -> MemberValues {
    let nets = match &k.addr {
        AddrKey::Nets(SideId::Src) => Some(a.src.nets.clone()),
        AddrKey::Nets(SideId::Dst) => Some(a.dst.nets.clone()),
        _ => None,
    };
    let protos = k.proto.then(|| match a.protocol {
        Some(p) => vec![p],
        None => PORT_PROTOCOLS.to_vec(),
    });
    let ports = k.port.map(|side| {
        let s = if side == SideId::Src { &a.src } else { &a.dst };
        match &s.port {
            PortAlt::Ranges(r) => r.clone(),
            _ => Vec::new(),
        }
    });
    MemberValues {
        nets,
        protos,
        ports,
    }
}

fn elem_text((net, proto, port): &Elem) -> String {
    let parts: Vec<String> = [
        net.as_ref().map(net_text),
        proto.map(|p| p.to_string()),
        port.as_ref().map(range_text),
    ]
    .into_iter()
    .flatten()
    .collect();
    parts.join(" . ")
}

/// The union of the members' (nets × protocols × ports) as disjoint
/// elements: per protocol, the port axis is cut at every range boundary;
/// each piece gets the aggregate of the nets of the members covering it, and
/// neighbouring pieces with equal nets are joined again.
fn disjoint_elements(members: &[MemberValues]) -> Vec<Elem> {
    let mut by_proto: BTreeMap<Option<u8>, Vec<&MemberValues>> = BTreeMap::new();
    for mv in members {
        match &mv.protos {
            Some(ps) => ps
                .iter()
                .for_each(|p| by_proto.entry(Some(*p)).or_default().push(mv)),
            None => by_proto.entry(None).or_default().push(mv),
        }
    }
    let mut out = Vec::new();
    for (proto, mvs) in by_proto {
        let has_ports = mvs.iter().any(|m| m.ports.is_some());
        if !has_ports {
            for net in union_nets(mvs.iter().copied()) {
                out.push((net, proto, None));
            }
            continue;
        }
        for (range, nets) in port_pieces(&mvs) {
            for net in nets {
                out.push((net, proto, Some(range)));
            }
        }
    }
    out
}

/// The aggregated nets of some members; `[None]` when the group has no
/// address dimension.
fn union_nets<'a>(mvs: impl Iterator<Item = &'a MemberValues>) -> Vec<Option<IpNet>> {
    let mut any_nets = false;
    let mut nets = Vec::new();
    for mv in mvs {
        if let Some(n) = &mv.nets {
            any_nets = true;
            nets.extend(n.iter().copied());
        }
    }
    if any_nets {
        aggregate(nets).into_iter().map(Some).collect()
    } else {
        vec![None]
    }
}

/// Disjoint port ranges with the nets that cover each, neighbours with
/// equal nets joined.
fn port_pieces(mvs: &[&MemberValues]) -> Vec<(PortRange, Vec<Option<IpNet>>)> {
    let ranges = |m: &MemberValues| m.ports.clone().unwrap_or_default();
    let mut cuts: BTreeSet<u32> = BTreeSet::new();
    for m in mvs {
        for r in ranges(m) {
            cuts.insert(r.min as u32);
            cuts.insert(r.max as u32 + 1);
        }
    }
    let cuts: Vec<u32> = cuts.into_iter().collect();
    let mut pieces: Vec<(PortRange, Vec<Option<IpNet>>)> = Vec::new();
    for w in cuts.windows(2) {
        let (lo, hi) = (w[0], w[1] - 1);
        let covering = mvs
            .iter()
            .filter(|m| {
                ranges(m)
                    .iter()
                    .any(|r| r.min as u32 <= lo && hi <= r.max as u32)
            })
            .copied();
        let mut covering = covering.peekable();
        if covering.peek().is_none() {
            continue;
        }
        let nets = union_nets(covering);
        let range = PortRange {
            min: lo as u16,
            max: hi as u16,
        };
        match pieces.last_mut() {
            Some((prev, prev_nets)) if prev.max as u32 + 1 == lo && *prev_nets == nets => {
                prev.max = range.max;
            }
            _ => pieces.push((range, nets)),
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn values(nets: &[&str], protos: &[u8], ports: &[(u16, u16)]) -> MemberValues {
        MemberValues {
            nets: (!nets.is_empty()).then(|| nets.iter().map(|n| net(n)).collect()),
            protos: Some(protos.to_vec()),
            ports: (!ports.is_empty()).then(|| {
                ports
                    .iter()
                    .map(|&(min, max)| PortRange { min, max })
                    .collect()
            }),
        }
    }

    #[test]
    fn negated_ports_render_as_their_complement() {
        let r = |min, max| PortRange { min, max };
        assert_eq!(complement(&[r(80, 80)]), vec![r(0, 79), r(81, 65535)]);
        assert_eq!(complement(&[r(1, 1023), r(0, 0)]), vec![r(1024, 65535)]);
        assert_eq!(
            complement(&[r(5, 9), r(7, 20), r(65535, 65535)]),
            vec![r(0, 4), r(21, 65534)]
        );
        assert!(complement(&[r(0, 65535)]).is_empty());
    }

    #[test]
    fn overlapping_members_become_disjoint_elements() {
        let elems = disjoint_elements(&[
            values(&["10.0.0.0/8"], &[6], &[(80, 90)]),
            values(&["10.1.0.0/16"], &[6], &[(85, 100)]),
            values(&["192.168.0.1/32"], &[17], &[(53, 53)]),
        ]);
        let texts: Vec<String> = elems.iter().map(elem_text).collect();
        assert_eq!(
            texts,
            vec![
                "10.0.0.0/8 . 6 . 80-90",
                "10.1.0.0/16 . 6 . 91-100",
                "192.168.0.1 . 17 . 53",
            ]
        );
    }

    #[test]
    fn adjacent_pieces_with_equal_nets_are_joined() {
        let elems = disjoint_elements(&[
            values(&["10.0.0.0/24"], &[6], &[(1, 10)]),
            values(&["10.0.0.0/24"], &[6], &[(5, 20)]),
            values(&["10.0.1.0/24"], &[6], &[(30, 30)]),
        ]);
        let texts: Vec<String> = elems.iter().map(elem_text).collect();
        assert_eq!(
            texts,
            vec!["10.0.0.0/24 . 6 . 1-20", "10.0.1.0/24 . 6 . 30"]
        );
    }
}
