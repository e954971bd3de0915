//! Desired versus actual contents of the one nftables table we own
//! (`table inet calico`), and the diff between them rendered as ONE
//! `nft -f` transaction.
//!
//! The table knows nothing about Calico: it holds named chains (a kind plus
//! an ordered list of rule texts) and named sets/maps (a definition plus
//! elements). Callers replace whole chains and whole element lists; the table
//! remembers which names changed (`dirty`) and, on `apply`, writes only those:
//!
//! * a chain whose content changed is `flush`ed and refilled in place (never
//!   deleted while referenced, never absent between two packets);
//! * set and map elements are added/deleted one by one;
//! * objects nobody wants any more are flushed and deleted at the end of the
//!   same transaction, after every reference to them was removed.
//!
//! ## What "actual" is and how drift is detected cheaply
//!
//! For chains we keep only a *summary* of what the kernel holds: kind, rule
//! count and a content fingerprint (16 hex digits of a SHA-256 over the
//! chain's kind and rules). The fingerprint is written into the comment of
//! the chain's first rule (`"... #0123456789abcdef"`), so reading the kernel
//! back needs no parsing of rule expressions: `nft -j list table` gives each
//! rule's comment, and a chain is in sync iff its kind, rule count and
//! first-rule fingerprint match. A deleted or flushed chain, a deleted or
//! added rule, a replaced first rule, a changed hook/priority/policy all show
//! up. (A rule other than the first edited in place with the same count is
//! not detected; rewriting a rule in place needs a handle-level edit by hand.)
//! For sets and maps the elements are read back and diffed exactly (counts
//! alone would miss a swapped element); an element the parser cannot
//! canonicalise makes the whole set "unknown", which is repaired by
//! `flush set` + re-adding every element in the same transaction.
//!
//! After a successful transaction "actual" is set to "desired" for every
//! object written, so steady-state applies never read the kernel. `resync`
//! (and any failed transaction) makes the next apply list the table again and
//! diff everything.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use super::backend::{ListedTable, NftBackend};
use crate::{ApplyStats, DataplaneError};

/// Family and name of the table; every statement addresses it.
pub const TABLE: &str = "inet calico";

/// Elements of a set (`key -> None`) or map (`key -> Some(value)`), in the
/// canonical text form used in scripts (`198.18.0.1`, `198.18.0.0/24`,
/// `"tap1"`, `6 . 80`, `jump cali-fw-tap1`).
pub type Elems = BTreeMap<String, Option<String>>;

/// At most this many elements per `add element`/`delete element` statement.
const ELEMS_PER_STATEMENT: usize = 500;
/// Rule comments are limited to 128 bytes by nft; keep headroom.
const MAX_COMMENT: usize = 120;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ChainKind {
    /// A chain only reached by `jump`/`goto` (or a verdict map).
    Regular,
    /// A base chain attached to a netfilter hook.
    Base {
        /// `filter` or `nat`.
        ty: String,
        hook: String,
        priority: i32,
        policy: String,
    },
}

impl ChainKind {
    pub fn base(ty: &str, hook: &str, priority: i32) -> Self {
        ChainKind::Base {
            ty: ty.into(),
            hook: hook.into(),
            priority,
            policy: "accept".into(),
        }
    }
}

/// One rule: the nft statement text after `add rule inet calico CHAIN`, and
/// an optional comment (sanitised and length-limited when rendered).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RuleSpec {
    pub body: String,
    pub comment: Option<String>,
}

impl RuleSpec {
    pub fn new(body: impl Into<String>) -> Self {
        RuleSpec {
            body: body.into(),
            comment: None,
        }
    }
    pub fn commented(body: impl Into<String>, comment: impl Into<String>) -> Self {
        RuleSpec {
            body: body.into(),
            comment: Some(comment.into()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSpec {
    pub kind: ChainKind,
    pub rules: Vec<RuleSpec>,
}

impl ChainSpec {
    pub fn regular(rules: Vec<RuleSpec>) -> Self {
        ChainSpec {
            kind: ChainKind::Regular,
            rules,
        }
    }
}

/// Type of a set (`data == None`) or map (`data == Some(type)`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SetDef {
    /// Key type components, joined by ` . ` (e.g. `ipv4_addr`, `inet_proto`).
    pub key: Vec<String>,
    /// Map data type (`verdict`, `ipv4_addr`); None for a plain set.
    pub data: Option<String>,
    pub interval: bool,
}

impl SetDef {
    pub fn set(key: &[&str], interval: bool) -> Self {
        SetDef {
            key: key.iter().map(|s| s.to_string()).collect(),
            data: None,
            interval,
        }
    }
    pub fn map(key: &[&str], data: &str) -> Self {
        SetDef {
            key: key.iter().map(|s| s.to_string()).collect(),
            data: Some(data.into()),
            interval: false,
        }
    }
    fn keyword(&self) -> &'static str {
        if self.data.is_some() {
            "map"
        } else {
            "set"
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetSpec {
    pub def: SetDef,
    /// Free text kept in the set's comment (e.g. the model IP set id).
    pub comment: Option<String>,
    pub elems: Elems,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct DesiredChain {
    spec: ChainSpec,
    hash: String,
}

/// What we know of a chain in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ChainSummary {
    kind: ChainKind,
    len: usize,
    /// Fingerprint parsed from the first rule's comment.
    hash: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ActualSet {
    def: SetDef,
    /// None: the kernel's elements could not be read back exactly.
    elems: Option<Elems>,
}

/// Desired and actual state of `table inet calico`.
#[derive(Debug)]
pub struct Table {
    desired_chains: BTreeMap<String, DesiredChain>,
    desired_sets: BTreeMap<String, SetSpec>,
    actual_chains: BTreeMap<String, ChainSummary>,
    actual_sets: BTreeMap<String, ActualSet>,
    table_exists: bool,
    dirty_chains: BTreeSet<String>,
    dirty_sets: BTreeSet<String>,
    /// List the kernel table before the next diff.
    need_read: bool,
    /// Diff every object (after a read), not only the dirty ones.
    full_diff: bool,
}

impl Default for Table {
    fn default() -> Self {
        Self::new()
    }
}

/// The transaction computed by one diff.
struct Plan {
    script: String,
    statements: usize,
    chains: BTreeSet<String>,
    sets: BTreeSet<String>,
}

impl Table {
    /// An empty desired state; the first apply reads the kernel.
    pub fn new() -> Self {
        Table {
            desired_chains: BTreeMap::new(),
            desired_sets: BTreeMap::new(),
            actual_chains: BTreeMap::new(),
            actual_sets: BTreeMap::new(),
            table_exists: false,
            dirty_chains: BTreeSet::new(),
            dirty_sets: BTreeSet::new(),
            need_read: true,
            full_diff: true,
        }
    }

    /// Want chain `name` with exactly this content.
    pub fn set_chain(&mut self, name: &str, spec: ChainSpec) {
        if let Some(cur) = self.desired_chains.get(name) {
            if cur.spec == spec {
                return;
            }
        }
        let hash = fingerprint(&spec);
        self.desired_chains
            .insert(name.to_string(), DesiredChain { spec, hash });
        self.dirty_chains.insert(name.to_string());
    }

    pub fn remove_chain(&mut self, name: &str) {
        if self.desired_chains.remove(name).is_some() {
            self.dirty_chains.insert(name.to_string());
        }
    }

    /// Want set/map `name` of this type. Keeps the elements if the type is
    /// unchanged, otherwise starts empty.
    pub fn ensure_set(&mut self, name: &str, def: SetDef, comment: Option<String>) {
        match self.desired_sets.get_mut(name) {
            Some(cur) if cur.def == def => {
                cur.comment = comment;
            }
            _ => {
                self.desired_sets.insert(
                    name.to_string(),
                    SetSpec {
                        def,
                        comment,
                        elems: Elems::new(),
                    },
                );
                self.dirty_sets.insert(name.to_string());
            }
        }
    }

    /// Replace the elements of a wanted set (which must have been ensured).
    pub fn set_elements(&mut self, name: &str, elems: Elems) {
        if let Some(cur) = self.desired_sets.get_mut(name) {
            if cur.elems != elems {
                cur.elems = elems;
                self.dirty_sets.insert(name.to_string());
            }
        }
    }

    /// Add or change one element of a wanted set/map.
    pub fn put_element(&mut self, name: &str, key: String, value: Option<String>) {
        if let Some(cur) = self.desired_sets.get_mut(name) {
            if cur.elems.get(&key) != Some(&value) {
                cur.elems.insert(key, value);
                self.dirty_sets.insert(name.to_string());
            }
        }
    }

    pub fn remove_element(&mut self, name: &str, key: &str) {
        if let Some(cur) = self.desired_sets.get_mut(name) {
            if cur.elems.remove(key).is_some() {
                self.dirty_sets.insert(name.to_string());
            }
        }
    }

    pub fn remove_set(&mut self, name: &str) {
        if self.desired_sets.remove(name).is_some() {
            self.dirty_sets.insert(name.to_string());
        }
    }

    /// Re-read the kernel on the next apply and repair whatever differs.
    pub fn resync(&mut self) {
        self.need_read = true;
    }

    pub fn chain(&self, name: &str) -> Option<&ChainSpec> {
        self.desired_chains.get(name).map(|c| &c.spec)
    }

    pub fn set(&self, name: &str) -> Option<&SetSpec> {
        self.desired_sets.get(name)
    }

    pub fn chain_names(&self) -> impl Iterator<Item = &str> {
        self.desired_chains.keys().map(|s| s.as_str())
    }

    pub fn set_names(&self) -> impl Iterator<Item = &str> {
        self.desired_sets.keys().map(|s| s.as_str())
    }

    /// The whole desired table as the script that would create it from
    /// nothing (for golden tests, debugging and benchmarks).
    pub fn desired_script(&self) -> String {
        let mut out = format!("add table {TABLE}\n");
        for (name, s) in &self.desired_sets {
            out.push_str(&set_decl(name, s));
            out.push('\n');
        }
        for (name, c) in &self.desired_chains {
            out.push_str(&chain_decl(name, &c.spec.kind));
            out.push('\n');
        }
        for (name, s) in &self.desired_sets {
            for line in elem_lines("add", name, s.elems.iter().map(|(k, v)| elem_text(k, v))) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        for (name, c) in &self.desired_chains {
            for line in rule_lines(name, c) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    }

    /// Write what differs in one transaction. On error nothing is recorded as
    /// written and the next apply re-reads the kernel.
    pub fn apply<B: NftBackend + ?Sized>(
        &mut self,
        backend: &mut B,
    ) -> Result<ApplyStats, DataplaneError> {
        if self.need_read {
            let listed = backend.list_table()?;
            self.load_actual(listed);
            self.need_read = false;
            self.full_diff = true;
        }
        let plan = self.plan();
        if plan.statements == 0 {
            self.dirty_chains.clear();
            self.dirty_sets.clear();
            self.full_diff = false;
            return Ok(ApplyStats::default());
        }
        tracing::debug!(statements = plan.statements, "nft transaction");
        if let Err(e) = backend.apply(&plan.script) {
            self.need_read = true;
            return Err(e);
        }
        self.commit(&plan);
        Ok(ApplyStats {
            writes: plan.statements,
        })
    }

    /// True if the next apply may write something.
    pub fn is_dirty(&self) -> bool {
        self.need_read || !self.dirty_chains.is_empty() || !self.dirty_sets.is_empty()
    }

    fn load_actual(&mut self, listed: Option<ListedTable>) {
        self.actual_chains.clear();
        self.actual_sets.clear();
        self.table_exists = listed.is_some();
        if let Some(t) = listed {
            for (name, c) in t.chains {
                let hash = c
                    .rule_comments
                    .first()
                    .and_then(|c| c.as_deref())
                    .and_then(parse_fingerprint);
                self.actual_chains.insert(
                    name,
                    ChainSummary {
                        kind: c.kind,
                        len: c.rule_comments.len(),
                        hash,
                    },
                );
            }
            for (name, s) in t.sets {
                self.actual_sets.insert(
                    name,
                    ActualSet {
                        def: s.def,
                        elems: s.elems,
                    },
                );
            }
        }
    }

    fn plan(&self) -> Plan {
        let (chains, sets): (BTreeSet<String>, BTreeSet<String>) = if self.full_diff {
            (
                self.desired_chains
                    .keys()
                    .chain(self.actual_chains.keys())
                    .cloned()
                    .collect(),
                self.desired_sets
                    .keys()
                    .chain(self.actual_sets.keys())
                    .cloned()
                    .collect(),
            )
        } else {
            (self.dirty_chains.clone(), self.dirty_sets.clone())
        };

        // An object whose type changed must be deleted and re-created, which
        // needs every reference to it gone first: rewrite everything then.
        let force = sets.iter().any(|n| {
            matches!((self.desired_sets.get(n), self.actual_sets.get(n)),
                (Some(d), Some(a)) if d.def != a.def)
        }) || chains.iter().any(|n| {
            matches!((self.desired_chains.get(n), self.actual_chains.get(n)),
                (Some(d), Some(a)) if d.spec.kind != a.kind)
        });
        let (chains, sets) = if force {
            (
                self.desired_chains
                    .keys()
                    .chain(self.actual_chains.keys())
                    .cloned()
                    .collect(),
                self.desired_sets
                    .keys()
                    .chain(self.actual_sets.keys())
                    .cloned()
                    .collect::<BTreeSet<_>>(),
            )
        } else {
            (chains, sets)
        };

        // Phases of the transaction, in order:
        // 1 create, 2 flush/unreference, 3 re-create changed types,
        // 4 add elements, 5 add rules, 6 delete stale objects.
        let mut p1 = Vec::new();
        let mut p2 = Vec::new();
        let mut p3 = Vec::new();
        let mut p4 = Vec::new();
        let mut p5 = Vec::new();
        let mut p6 = Vec::new();
        if !self.table_exists {
            p1.push(format!("add table {TABLE}"));
        }
        for name in &sets {
            match (self.desired_sets.get(name), self.actual_sets.get(name)) {
                (Some(d), None) => {
                    p1.push(set_decl(name, d));
                    p4.extend(elem_lines(
                        "add",
                        name,
                        d.elems.iter().map(|(k, v)| elem_text(k, v)),
                    ));
                }
                (Some(d), Some(a)) if d.def != a.def => {
                    p3.push(format!("delete {} {TABLE} {name}", a.def.keyword()));
                    p3.push(set_decl(name, d));
                    p4.extend(elem_lines(
                        "add",
                        name,
                        d.elems.iter().map(|(k, v)| elem_text(k, v)),
                    ));
                }
                (Some(d), Some(a)) => {
                    let refill = force && d.def.data.as_deref() == Some("verdict");
                    match (&a.elems, refill) {
                        (Some(ae), false) => {
                            let removed = ae
                                .iter()
                                .filter(|(k, v)| d.elems.get(*k) != Some(*v))
                                .map(|(k, _)| k.clone());
                            p2.extend(elem_lines("delete", name, removed));
                            let added = d
                                .elems
                                .iter()
                                .filter(|(k, v)| ae.get(*k) != Some(*v))
                                .map(|(k, v)| elem_text(k, v));
                            p4.extend(elem_lines("add", name, added));
                        }
                        _ => {
                            p2.push(format!("flush {} {TABLE} {name}", d.def.keyword()));
                            p4.extend(elem_lines(
                                "add",
                                name,
                                d.elems.iter().map(|(k, v)| elem_text(k, v)),
                            ));
                        }
                    }
                }
                (None, Some(a)) => {
                    p6.push(format!("delete {} {TABLE} {name}", a.def.keyword()));
                }
                (None, None) => {}
            }
        }
        for name in &chains {
            match (self.desired_chains.get(name), self.actual_chains.get(name)) {
                (Some(d), None) => {
                    p1.push(chain_decl(name, &d.spec.kind));
                    p5.extend(rule_lines(name, d));
                }
                (Some(d), Some(a)) if d.spec.kind != a.kind => {
                    p2.push(format!("flush chain {TABLE} {name}"));
                    p3.push(format!("delete chain {TABLE} {name}"));
                    p3.push(chain_decl(name, &d.spec.kind));
                    p5.extend(rule_lines(name, d));
                }
                (Some(d), Some(a)) => {
                    if force || *a != summary(d) {
                        p2.push(format!("flush chain {TABLE} {name}"));
                        p5.extend(rule_lines(name, d));
                    }
                }
                (None, Some(_)) => {
                    p2.push(format!("flush chain {TABLE} {name}"));
                    p6.push(format!("delete chain {TABLE} {name}"));
                }
                (None, None) => {}
            }
        }
        let mut script = String::new();
        let mut statements = 0;
        for line in p1
            .iter()
            .chain(&p2)
            .chain(&p3)
            .chain(&p4)
            .chain(&p5)
            .chain(&p6)
        {
            script.push_str(line);
            script.push('\n');
            statements += 1;
        }
        Plan {
            script,
            statements,
            chains,
            sets,
        }
    }

    fn commit(&mut self, plan: &Plan) {
        self.table_exists = true;
        for name in &plan.chains {
            match self.desired_chains.get(name) {
                Some(d) => {
                    self.actual_chains.insert(name.clone(), summary(d));
                }
                None => {
                    self.actual_chains.remove(name);
                }
            }
        }
        for name in &plan.sets {
            match self.desired_sets.get(name) {
                Some(d) => {
                    self.actual_sets.insert(
                        name.clone(),
                        ActualSet {
                            def: d.def.clone(),
                            elems: Some(d.elems.clone()),
                        },
                    );
                }
                None => {
                    self.actual_sets.remove(name);
                }
            }
        }
        self.dirty_chains.clear();
        self.dirty_sets.clear();
        self.full_diff = false;
    }
}

fn summary(d: &DesiredChain) -> ChainSummary {
    ChainSummary {
        kind: d.spec.kind.clone(),
        len: d.spec.rules.len(),
        hash: if d.spec.rules.is_empty() {
            None
        } else {
            Some(d.hash.clone())
        },
    }
}

/// 16 hex digits of SHA-256 over a chain's kind and rules.
fn fingerprint(spec: &ChainSpec) -> String {
    let mut h = Sha256::new();
    h.update(format!("{:?}\n", spec.kind).as_bytes());
    for r in &spec.rules {
        h.update(r.body.as_bytes());
        h.update([0]);
        if let Some(c) = &r.comment {
            h.update(c.as_bytes());
        }
        h.update([b'\n']);
    }
    hex16(&h.finalize())
}

/// First 16 hex digits of a digest.
pub(crate) fn hex16(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(16);
    for b in bytes.iter().take(8) {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The fingerprint suffix `#<16 hex>` of a first-rule comment.
pub(crate) fn parse_fingerprint(comment: &str) -> Option<String> {
    let (_, tail) = comment.rsplit_once('#')?;
    if tail.len() == 16 && tail.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some(tail.to_string())
    } else {
        None
    }
}

/// Make free text safe inside a double-quoted nft string.
pub(crate) fn sanitize_comment(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '?',
        })
        .collect()
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        s
    } else {
        &s[..max]
    }
}

fn chain_decl(name: &str, kind: &ChainKind) -> String {
    match kind {
        ChainKind::Regular => format!("add chain {TABLE} {name}"),
        ChainKind::Base {
            ty,
            hook,
            priority,
            policy,
        } => format!(
            "add chain {TABLE} {name} {{ type {ty} hook {hook} priority {priority}; policy {policy}; }}"
        ),
    }
}

fn set_decl(name: &str, s: &SetSpec) -> String {
    let mut out = format!(
        "add {} {TABLE} {name} {{ type {}",
        s.def.keyword(),
        s.def.key.join(" . ")
    );
    if let Some(d) = &s.def.data {
        let _ = write!(out, " : {d}");
    }
    out.push(';');
    if s.def.interval {
        out.push_str(" flags interval;");
    }
    if let Some(c) = &s.comment {
        let _ = write!(
            out,
            " comment \"{}\";",
            truncate(&sanitize_comment(c), MAX_COMMENT)
        );
    }
    out.push_str(" }");
    out
}

fn elem_text(k: &str, v: &Option<String>) -> String {
    match v {
        Some(v) => format!("{k} : {v}"),
        None => k.to_string(),
    }
}

fn elem_lines(verb: &str, name: &str, elems: impl Iterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    let flush = |cur: &mut Vec<String>, out: &mut Vec<String>| {
        if !cur.is_empty() {
            out.push(format!(
                "{verb} element {TABLE} {name} {{ {} }}",
                cur.join(", ")
            ));
            cur.clear();
        }
    };
    for e in elems {
        cur.push(e);
        if cur.len() >= ELEMS_PER_STATEMENT {
            flush(&mut cur, &mut out);
        }
    }
    flush(&mut cur, &mut out);
    out
}

fn rule_lines(chain: &str, d: &DesiredChain) -> Vec<String> {
    d.spec
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut comment = r
                .comment
                .as_deref()
                .map(sanitize_comment)
                .unwrap_or_default();
            if i == 0 {
                let room = MAX_COMMENT - 18;
                comment = truncate(&comment, room).to_string();
                if !comment.is_empty() {
                    comment.push(' ');
                }
                comment.push('#');
                comment.push_str(&d.hash);
            } else {
                comment = truncate(&comment, MAX_COMMENT).to_string();
            }
            if comment.is_empty() {
                format!("add rule {TABLE} {chain} {}", r.body)
            } else {
                format!("add rule {TABLE} {chain} {} comment \"{comment}\"", r.body)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_round_trips_through_comment() {
        let spec = ChainSpec::regular(vec![RuleSpec::commented("counter drop", "x \"y\"")]);
        let d = DesiredChain {
            hash: fingerprint(&spec),
            spec,
        };
        let lines = rule_lines("c", &d);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].ends_with(&format!("comment \"x 'y' #{}\"", d.hash)));
        assert_eq!(
            parse_fingerprint(&format!("x 'y' #{}", d.hash)),
            Some(d.hash.clone())
        );
        assert_eq!(parse_fingerprint("no hash here"), None);
    }

    #[test]
    fn elements_are_chunked() {
        let lines = elem_lines("add", "s", (0..1200).map(|i| format!("{i}")));
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("add element inet calico s { 0, 1, "));
    }
}
