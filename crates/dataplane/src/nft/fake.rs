//! In-memory stand-in for the kernel's `table inet calico`, for tests that
//! run without root. It parses the statements our [`Table`](super::Table)
//! writes, applies a whole script atomically (all or nothing, like one
//! `nft -f` transaction) and enforces the kernel rules that matter for
//! ordering: a chain or set must exist before it is referenced, a chain or
//! set still referenced cannot be deleted, deleting a missing element fails,
//! interval elements may not overlap, a map key cannot be re-added with a
//! different value, chain names may not be nft keywords.
//!
//! Clones share the same "kernel", so a second manager can be started on
//! the state a first one left (restart tests).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use ipnet::IpNet;

use super::backend::{ListedChain, ListedSet, ListedTable, NftBackend};
use super::table::{ChainKind, Elems, SetDef};
use crate::DataplaneError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeRule {
    pub body: String,
    pub comment: Option<String>,
}

impl FakeRule {
    /// The rule as `nft list` would print it (without counters).
    pub fn text(&self) -> String {
        match &self.comment {
            Some(c) => format!("{} comment \"{c}\"", self.body),
            None => self.body.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeChain {
    pub kind: ChainKind,
    pub rules: Vec<FakeRule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeSet {
    pub def: SetDef,
    pub elems: Elems,
}

/// The fake kernel table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeState {
    pub table_exists: bool,
    pub chains: BTreeMap<String, FakeChain>,
    pub sets: BTreeMap<String, FakeSet>,
}

impl FakeState {
    /// Rules of a chain as text, with comments minus the fingerprint.
    pub fn rules(&self, chain: &str) -> Option<Vec<String>> {
        self.chains.get(chain).map(|c| {
            c.rules
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    if let Some(c) = &r.comment {
                        if super::table::parse_fingerprint(c).is_some() {
                            let stripped = c[..c.rfind('#').unwrap()].trim_end().to_string();
                            r.comment = (!stripped.is_empty()).then_some(stripped);
                        }
                    }
                    r.text()
                })
                .collect()
        })
    }

    /// Element keys (and values) of a set or map.
    pub fn elements(&self, set: &str) -> Option<Vec<String>> {
        self.sets.get(set).map(|s| {
            s.elems
                .iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k} : {v}"),
                    None => k.clone(),
                })
                .collect()
        })
    }
}

#[derive(Debug, Default)]
struct Inner {
    state: FakeState,
    scripts: Vec<String>,
    lists: usize,
    fail_next: Option<String>,
}

/// In-memory [`NftBackend`].
#[derive(Clone, Debug, Default)]
pub struct FakeNft {
    inner: Arc<Mutex<Inner>>,
}

impl FakeNft {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the current kernel state.
    pub fn state(&self) -> FakeState {
        self.lock().state.clone()
    }

    /// Every script applied through the backend so far.
    pub fn scripts(&self) -> Vec<String> {
        self.lock().scripts.clone()
    }

    /// How many times the table was listed.
    pub fn list_count(&self) -> usize {
        self.lock().lists
    }

    /// Make the next `apply` fail with this message (nothing is applied).
    pub fn fail_next_apply(&self, msg: &str) {
        self.lock().fail_next = Some(msg.to_string());
    }

    /// Apply a script as an administrator would by hand (not recorded).
    pub fn run_by_hand(&self, script: &str) -> Result<(), DataplaneError> {
        let mut g = self.lock();
        let next = run_script(&g.state, script)?;
        g.state = next;
        Ok(())
    }

    /// Change the state directly (drift that no valid script could cause).
    pub fn mutate(&self, f: impl FnOnce(&mut FakeState)) {
        f(&mut self.lock().state)
    }
}

impl NftBackend for FakeNft {
    fn apply(&mut self, script: &str) -> Result<(), DataplaneError> {
        let mut g = self.lock();
        if let Some(msg) = g.fail_next.take() {
            return Err(DataplaneError::Nft(format!("nft -f failed: {msg}")));
        }
        let next = run_script(&g.state, script)?;
        g.state = next;
        g.scripts.push(script.to_string());
        Ok(())
    }

    fn list_table(&mut self) -> Result<Option<ListedTable>, DataplaneError> {
        let mut g = self.lock();
        g.lists += 1;
        if !g.state.table_exists {
            return Ok(None);
        }
        let mut t = ListedTable::default();
        for (name, c) in &g.state.chains {
            t.chains.insert(
                name.clone(),
                ListedChain {
                    kind: c.kind.clone(),
                    rule_comments: c.rules.iter().map(|r| r.comment.clone()).collect(),
                },
            );
        }
        for (name, s) in &g.state.sets {
            t.sets.insert(
                name.clone(),
                ListedSet {
                    def: s.def.clone(),
                    elems: Some(s.elems.clone()),
                },
            );
        }
        Ok(Some(t))
    }
}

const KEYWORDS: &[&str] = &[
    "fwd",
    "jump",
    "goto",
    "accept",
    "drop",
    "return",
    "continue",
    "queue",
    "chain",
    "table",
    "set",
    "map",
    "rule",
    "element",
    "counter",
    "log",
    "ip",
    "ip6",
    "inet",
    "tcp",
    "udp",
    "meta",
    "ct",
    "flush",
    "add",
    "delete",
    "insert",
    "type",
    "hook",
    "priority",
    "policy",
    "filter",
    "nat",
    "vmap",
    "dup",
    "reject",
    "limit",
    "quota",
    "mark",
    "snat",
    "dnat",
    "masquerade",
];

fn err(line: usize, stmt: &str, msg: &str) -> DataplaneError {
    DataplaneError::Nft(format!("/dev/stdin:{line}: Error: {msg}\n{stmt}"))
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '.');
    first_ok
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c))
        && !KEYWORDS.contains(&name)
}

/// Chains and sets a rule body refers to.
fn refs_of(body: &str) -> (Vec<String>, Vec<String>) {
    let mut chains = Vec::new();
    let mut sets = Vec::new();
    let toks: Vec<&str> = body.split_whitespace().collect();
    for (i, t) in toks.iter().enumerate() {
        if (*t == "jump" || *t == "goto") && i + 1 < toks.len() {
            chains.push(toks[i + 1].trim_end_matches(['}', ',', ';']).to_string());
        }
        if let Some(s) = t.strip_prefix('@') {
            sets.push(s.trim_end_matches(['}', ',', ';']).to_string());
        }
    }
    (chains, sets)
}

fn chain_referenced(st: &FakeState, name: &str) -> bool {
    st.chains
        .values()
        .flat_map(|c| &c.rules)
        .any(|r| refs_of(&r.body).0.iter().any(|c| c == name))
        || st.sets.values().flat_map(|s| s.elems.values()).any(|v| {
            v.as_deref()
                .is_some_and(|v| refs_of(v).0.iter().any(|c| c == name))
        })
}

fn set_referenced(st: &FakeState, name: &str) -> bool {
    st.chains
        .values()
        .flat_map(|c| &c.rules)
        .any(|r| refs_of(&r.body).1.iter().any(|s| s == name))
}

/// Split `{ a, b }` contents into items.
fn braces(s: &str) -> Option<Vec<String>> {
    let open = s.find('{')?;
    let close = s.rfind('}')?;
    Some(
        s[open + 1..close]
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect(),
    )
}

fn parse_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// Overlap check for interval sets: address component(s) overlap while the
/// other components are equal.
fn overlaps(a: &str, b: &str) -> bool {
    let pa: Vec<&str> = a.split(" . ").collect();
    let pb: Vec<&str> = b.split(" . ").collect();
    if pa.len() != pb.len() || pa[1..] != pb[1..] {
        return false;
    }
    match (parse_net(pa[0]), parse_net(pb[0])) {
        (Some(x), Some(y)) => x.contains(&y.network()) || y.contains(&x.network()),
        _ => false,
    }
}

fn parse_set_decl(body: &str) -> Option<(SetDef, Option<String>)> {
    let inner = &body[body.find('{')? + 1..body.rfind('}')?];
    let mut key = Vec::new();
    let mut data = None;
    let mut interval = false;
    let mut comment = None;
    for part in inner.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some(t) = part.strip_prefix("type ") {
            let (k, d) = match t.split_once(" : ") {
                Some((k, d)) => (k, Some(d.trim().to_string())),
                None => (t, None),
            };
            key = k.split(" . ").map(|s| s.trim().to_string()).collect();
            data = d;
        } else if part == "flags interval" {
            interval = true;
        } else if let Some(c) = part.strip_prefix("comment ") {
            comment = Some(c.trim_matches('"').to_string());
        } else {
            return None;
        }
    }
    if key.is_empty() {
        return None;
    }
    Some((
        SetDef {
            key,
            data,
            interval,
        },
        comment,
    ))
}

fn parse_chain_kind(rest: &str) -> Option<ChainKind> {
    let Some(open) = rest.find('{') else {
        return Some(ChainKind::Regular);
    };
    let inner = &rest[open + 1..rest.rfind('}')?];
    let mut ty = None;
    let mut hook = None;
    let mut prio = None;
    let mut policy = "accept".to_string();
    for part in inner.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let toks: Vec<&str> = part.split_whitespace().collect();
        match toks.as_slice() {
            ["type", t, "hook", h, "priority", p] => {
                ty = Some(t.to_string());
                hook = Some(h.to_string());
                prio = Some(p.parse::<i32>().ok()?);
            }
            ["policy", p] => policy = p.to_string(),
            _ => return None,
        }
    }
    Some(ChainKind::Base {
        ty: ty?,
        hook: hook?,
        priority: prio?,
        policy,
    })
}

/// Apply a script to a copy of `state`; error on the first bad statement.
fn run_script(state: &FakeState, script: &str) -> Result<FakeState, DataplaneError> {
    let mut st = state.clone();
    for (i, stmt) in script.lines().enumerate() {
        let line = i + 1;
        let stmt = stmt.trim();
        if stmt.is_empty() || stmt.starts_with('#') {
            continue;
        }
        let e = |msg: &str| err(line, stmt, msg);
        if stmt == "add table inet calico" {
            st.table_exists = true;
            continue;
        }
        let Some((verb, rest)) = stmt.split_once(' ') else {
            return Err(e("syntax error"));
        };
        let Some((obj, rest)) = rest.split_once(' ') else {
            return Err(e("syntax error"));
        };
        let Some(rest) = rest.strip_prefix("inet calico ") else {
            return Err(e(
                "fake nft only knows table inet calico (refusing other tables / flush ruleset)",
            ));
        };
        if !st.table_exists {
            return Err(e(
                "Could not process rule: No such file or directory (table)",
            ));
        }
        let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        let name = name.to_string();
        match (verb, obj) {
            ("add", "chain") => {
                if !valid_name(&name) {
                    return Err(e("syntax error (chain name)"));
                }
                let kind = parse_chain_kind(tail).ok_or_else(|| e("syntax error (chain)"))?;
                match st.chains.get(&name) {
                    Some(c) if c.kind != kind && kind != ChainKind::Regular => {
                        return Err(e("Could not process rule: File exists"))
                    }
                    Some(_) => {}
                    None => {
                        st.chains.insert(
                            name,
                            FakeChain {
                                kind,
                                rules: Vec::new(),
                            },
                        );
                    }
                }
            }
            ("flush", "chain") => {
                st.chains
                    .get_mut(&name)
                    .ok_or_else(|| e("Could not process rule: No such file or directory"))?
                    .rules
                    .clear();
            }
            ("delete", "chain") => {
                if !st.chains.contains_key(&name) {
                    return Err(e("Could not process rule: No such file or directory"));
                }
                // Rules of the chain itself go with it.
                let saved = st.chains.remove(&name).unwrap();
                if chain_referenced(&st, &name) {
                    st.chains.insert(name, saved);
                    return Err(e("Could not process rule: Device or resource busy"));
                }
            }
            ("add", "rule") => {
                let (body, comment) = match tail.rfind(" comment \"") {
                    Some(pos) if tail.ends_with('"') => (
                        tail[..pos].to_string(),
                        Some(tail[pos + 10..tail.len() - 1].to_string()),
                    ),
                    _ => (tail.to_string(), None),
                };
                if body.trim().is_empty() {
                    return Err(e("syntax error (empty rule)"));
                }
                if comment.as_ref().is_some_and(|c| c.len() > 128) {
                    return Err(e("comment too long"));
                }
                let (chains, sets) = refs_of(&body);
                for c in chains {
                    if !st.chains.contains_key(&c) {
                        return Err(e(&format!(
                            "Could not process rule: No such file or directory (chain {c})"
                        )));
                    }
                    if matches!(st.chains[&c].kind, ChainKind::Base { .. }) {
                        return Err(e(
                            "Could not process rule: Operation not supported (jump to base chain)",
                        ));
                    }
                }
                for s in sets {
                    if !st.sets.contains_key(&s) {
                        return Err(e(&format!(
                            "Could not process rule: No such file or directory (set {s})"
                        )));
                    }
                }
                st.chains
                    .get_mut(&name)
                    .ok_or_else(|| e("Could not process rule: No such file or directory"))?
                    .rules
                    .push(FakeRule { body, comment });
            }
            ("add", "set") | ("add", "map") => {
                if !valid_name(&name) {
                    return Err(e("syntax error (set name)"));
                }
                let (def, _) = parse_set_decl(tail).ok_or_else(|| e("syntax error (set)"))?;
                if (obj == "map") != def.data.is_some() {
                    return Err(e("syntax error (set/map mismatch)"));
                }
                match st.sets.get(&name) {
                    Some(s) if s.def != def => {
                        return Err(e("Could not process rule: File exists"))
                    }
                    Some(_) => {}
                    None => {
                        st.sets.insert(
                            name,
                            FakeSet {
                                def,
                                elems: Elems::new(),
                            },
                        );
                    }
                }
            }
            ("flush", "set") | ("flush", "map") => {
                st.sets
                    .get_mut(&name)
                    .ok_or_else(|| e("Could not process rule: No such file or directory"))?
                    .elems
                    .clear();
            }
            ("delete", "set") | ("delete", "map") => {
                if !st.sets.contains_key(&name) {
                    return Err(e("Could not process rule: No such file or directory"));
                }
                if set_referenced(&st, &name) {
                    return Err(e("Could not process rule: Device or resource busy"));
                }
                st.sets.remove(&name);
            }
            ("add", "element") | ("delete", "element") => {
                let items = braces(tail).ok_or_else(|| e("syntax error (elements)"))?;
                if items.is_empty() {
                    return Err(e("syntax error (empty element list)"));
                }
                let set = st
                    .sets
                    .get(&name)
                    .ok_or_else(|| e("Could not process rule: No such file or directory"))?
                    .clone();
                let mut elems = set.elems.clone();
                for item in items {
                    let (k, v) = match item.split_once(" : ") {
                        Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
                        None => (item.clone(), None),
                    };
                    if verb == "delete" {
                        if elems.remove(&k).is_none() {
                            return Err(e(
                                "Could not process rule: No such file or directory (element)",
                            ));
                        }
                        continue;
                    }
                    if set.def.data.is_some() != v.is_some() {
                        return Err(e("syntax error (map element)"));
                    }
                    if let Some(v) = &v {
                        for c in refs_of(v).0 {
                            if !st.chains.contains_key(&c) {
                                return Err(e(
                                    "Could not process rule: No such file or directory (chain)",
                                ));
                            }
                        }
                    }
                    match elems.get(&k) {
                        Some(old) if *old != v => {
                            return Err(e("Could not process rule: File exists"))
                        }
                        Some(_) => {}
                        None => {
                            if set.def.interval && elems.keys().any(|x| overlaps(x, &k)) {
                                return Err(e("interval overlaps with an existing one"));
                            }
                            elems.insert(k, v);
                        }
                    }
                }
                st.sets.get_mut(&name).unwrap().elems = elems;
            }
            _ => return Err(e("fake nft: unsupported statement")),
        }
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enforces_references_and_atomicity() {
        let mut f = FakeNft::new();
        f.apply("add table inet calico\nadd chain inet calico a\nadd chain inet calico b\nadd rule inet calico a jump b comment \"x\"\n")
            .unwrap();
        let before = f.state();
        let e = f
            .apply("add chain inet calico c\ndelete chain inet calico b\n")
            .unwrap_err();
        assert!(e.to_string().contains("busy"), "{e}");
        assert_eq!(f.state(), before, "failed script must not change anything");
        f.apply("flush chain inet calico a\ndelete chain inet calico b\n")
            .unwrap();
        assert!(f.apply("add chain inet calico fwd\n").is_err());
        assert!(f
            .apply("add rule inet calico a ip saddr @nope accept\n")
            .is_err());
        f.apply("add set inet calico s { type ipv4_addr; flags interval; }\nadd element inet calico s { 10.0.0.0/8 }\n")
            .unwrap();
        assert!(f
            .apply("add element inet calico s { 10.1.0.0/16 }\n")
            .is_err());
        assert!(f
            .apply("delete element inet calico s { 10.1.0.0/16 }\n")
            .is_err());
        assert!(f.apply("flush ruleset\n").is_err());
    }
}
