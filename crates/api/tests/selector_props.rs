//! Property tests for the selector language.
//!
//! Random expressions are generated as a test-local tree, printed as selector text with
//! random (but valid) spacing, quoting, spelling and redundant parentheses, and then parsed by
//! the library. The tree also has its own reference evaluator written here, independently of
//! the library, so `matches` is checked against the language's stated semantics rather than
//! against itself.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};

use calico_api::selector::{Labels, LabelsWithParent, Selector};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Allocation counting, to check that evaluation never allocates. Counted per thread so that
// tests running in parallel do not disturb each other.

struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

// ---------------------------------------------------------------------------------------------
// Test-local expression tree.

/// Small pools so that random label maps often hit the keys and values a selector mentions.
/// Keys include the language's keywords, which must still work as label names.
const KEYS: &[&str] = &[
    "a",
    "app",
    "projectcalico.org/namespace",
    "sg.projectcalico.org/openstack-3f_a.b",
    "in",
    "has",
    "not",
    "all",
    "contains",
];
const VALUES: &[&str] = &[
    "",
    "x",
    "y",
    "xy",
    "yx",
    "xyx",
    "hello world",
    "it's",
    r#"say "hi""#,
    "é",
    "x\ty",
];

#[derive(Clone, Copy, Debug)]
enum Op {
    Eq,
    Ne,
    Contains,
    StartsWith,
    EndsWith,
}

/// `style` bytes pick among equivalent spellings when printing; they never change meaning.
#[derive(Clone, Debug)]
enum Expr {
    All(u8),
    Global(u8),
    Has(&'static str, u8),
    Cmp(&'static str, Op, &'static str, u8),
    Set(&'static str, bool, Vec<&'static str>, u8),
    Not(Box<Expr>),
    /// Redundant parentheses around the operand.
    Group(Box<Expr>, u8),
    And(Box<Expr>, Box<Expr>, u8),
    Or(Box<Expr>, Box<Expr>, u8),
}

fn eval(e: &Expr, labels: &BTreeMap<String, String>) -> bool {
    let get = |k: &str| labels.get(k).map(String::as_str);
    match e {
        Expr::All(_) | Expr::Global(_) => true,
        Expr::Has(k, _) => get(k).is_some(),
        Expr::Cmp(k, op, v, _) => match (get(k), op) {
            (None, Op::Ne) => true,
            (None, _) => false,
            (Some(x), Op::Eq) => x == *v,
            (Some(x), Op::Ne) => x != *v,
            (Some(x), Op::Contains) => x.contains(v),
            (Some(x), Op::StartsWith) => x.starts_with(v),
            (Some(x), Op::EndsWith) => x.ends_with(v),
        },
        Expr::Set(k, negated, vs, _) => {
            let found = get(k).is_some_and(|x| vs.contains(&x));
            if *negated {
                !found
            } else {
                found
            }
        }
        Expr::Not(inner) => !eval(inner, labels),
        Expr::Group(inner, _) => eval(inner, labels),
        Expr::And(a, b, _) => eval(a, labels) && eval(b, labels),
        Expr::Or(a, b, _) => eval(a, labels) || eval(b, labels),
    }
}

fn uses_global(e: &Expr) -> bool {
    match e {
        Expr::Global(_) => true,
        Expr::Not(i) | Expr::Group(i, _) => uses_global(i),
        Expr::And(a, b, _) | Expr::Or(a, b, _) => uses_global(a) || uses_global(b),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Printing with random valid surface syntax.

/// Optional whitespace chosen by two bits of `style`.
fn ws(style: u8, shift: u8) -> &'static str {
    ["", " ", "\t", " \n "][usize::from((style >> shift) & 3)]
}

/// Whitespace that must be present (between two words).
fn ws1(style: u8, shift: u8) -> &'static str {
    match ws(style, shift) {
        "" => " ",
        s => s,
    }
}

fn quote(v: &str, style: u8) -> String {
    let single = v.contains('"') || (!v.contains('\'') && style & 0x80 != 0);
    if single {
        format!("'{v}'")
    } else {
        format!("\"{v}\"")
    }
}

/// Binding strength: `||` 1, `&&` 2, everything else 3.
fn prec(e: &Expr) -> u8 {
    match e {
        Expr::Or(..) => 1,
        Expr::And(..) => 2,
        _ => 3,
    }
}

fn operand(e: &Expr, min_prec: u8, out: &mut String) {
    if prec(e) < min_prec {
        out.push('(');
        print(e, out);
        out.push(')');
    } else {
        print(e, out);
    }
}

fn print(e: &Expr, out: &mut String) {
    match e {
        Expr::All(s) => out.push_str(&format!("all({})", ws(*s, 0))),
        Expr::Global(s) => out.push_str(&format!("global{}({})", ws(*s, 2), ws(*s, 0))),
        Expr::Has(k, s) => out.push_str(&format!("has({}{k}{})", ws(*s, 0), ws(*s, 2))),
        Expr::Cmp(k, op, v, s) => {
            let lit = quote(v, *s);
            let text = match op {
                Op::Eq => format!("{k}{}=={}{lit}", ws(*s, 0), ws(*s, 2)),
                Op::Ne => format!("{k}{}!={}{lit}", ws(*s, 0), ws(*s, 2)),
                Op::Contains => format!("{k}{}contains{}{lit}", ws1(*s, 0), ws(*s, 2)),
                Op::StartsWith if s & 0x40 != 0 => {
                    format!("{k}{}startswith{}{lit}", ws1(*s, 0), ws(*s, 2))
                }
                Op::StartsWith => format!(
                    "{k}{}starts{}with{}{lit}",
                    ws1(*s, 0),
                    ws1(*s, 4),
                    ws(*s, 2)
                ),
                Op::EndsWith if s & 0x40 != 0 => {
                    format!("{k}{}endswith{}{lit}", ws1(*s, 0), ws(*s, 2))
                }
                Op::EndsWith => {
                    format!("{k}{}ends{}with{}{lit}", ws1(*s, 0), ws1(*s, 4), ws(*s, 2))
                }
            };
            out.push_str(&text);
        }
        Expr::Set(k, negated, vs, s) => {
            let op = match (negated, s & 0x40 != 0) {
                (false, _) => "in".to_string(),
                (true, true) => "notin".to_string(),
                (true, false) => format!("not{}in", ws(*s, 4)),
            };
            let items: Vec<String> = vs.iter().map(|v| quote(v, *s)).collect();
            let sep = format!("{},{}", ws(*s, 2), ws(*s, 4));
            out.push_str(&format!(
                "{k}{}{op}{}{{{}}}",
                ws1(*s, 0),
                ws(*s, 2),
                items.join(&sep)
            ));
        }
        Expr::Not(inner) => {
            out.push('!');
            operand(inner, 3, out);
        }
        Expr::Group(inner, s) => {
            out.push('(');
            out.push_str(ws(*s, 0));
            print(inner, out);
            out.push_str(ws(*s, 2));
            out.push(')');
        }
        Expr::And(a, b, s) => {
            operand(a, 2, out);
            out.push_str(&format!("{}&&{}", ws(*s, 0), ws(*s, 2)));
            operand(b, 2, out);
        }
        Expr::Or(a, b, s) => {
            operand(a, 1, out);
            out.push_str(&format!("{}||{}", ws(*s, 0), ws(*s, 2)));
            operand(b, 1, out);
        }
    }
}

fn text(e: &Expr) -> String {
    let mut s = String::new();
    print(e, &mut s);
    s
}

// ---------------------------------------------------------------------------------------------
// Strategies.

fn key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(KEYS)
}

fn value() -> impl Strategy<Value = &'static str> {
    prop::sample::select(VALUES)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Eq),
        Just(Op::Ne),
        Just(Op::Contains),
        Just(Op::StartsWith),
        Just(Op::EndsWith),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        1 => any::<u8>().prop_map(Expr::All),
        1 => any::<u8>().prop_map(Expr::Global),
        3 => (key(), any::<u8>()).prop_map(|(k, s)| Expr::Has(k, s)),
        6 => (key(), op(), value(), any::<u8>()).prop_map(|(k, o, v, s)| Expr::Cmp(k, o, v, s)),
        3 => (key(), any::<bool>(), prop::collection::vec(value(), 0..4), any::<u8>())
            .prop_map(|(k, n, vs, s)| Expr::Set(k, n, vs, s)),
    ];
    leaf.prop_recursive(5, 40, 2, |inner| {
        prop_oneof![
            2 => inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            1 => (inner.clone(), any::<u8>()).prop_map(|(e, s)| Expr::Group(Box::new(e), s)),
            3 => (inner.clone(), inner.clone(), any::<u8>())
                .prop_map(|(a, b, s)| Expr::And(Box::new(a), Box::new(b), s)),
            3 => (inner.clone(), inner, any::<u8>())
                .prop_map(|(a, b, s)| Expr::Or(Box::new(a), Box::new(b), s)),
        ]
    })
}

fn label_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        key().prop_map(String::from),
        value().prop_map(String::from),
        0..6,
    )
}

fn parse(s: &str) -> Selector {
    Selector::parse(s).unwrap_or_else(|e| panic!("{s:?} failed to parse: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Printing is canonical: re-parsing the canonical text gives an equal selector that
    /// prints identically and has the same ID.
    #[test]
    fn canonical_form_is_a_fixed_point(e in expr()) {
        let src = text(&e);
        let sel = parse(&src);
        let canon = sel.to_string();
        let again = parse(&canon);
        prop_assert_eq!(&again, &sel, "source {:?}", src);
        prop_assert_eq!(again.to_string(), canon.clone());
        prop_assert_eq!(again.canonical(), canon);
        prop_assert_eq!(again.unique_id(), sel.unique_id());
    }

    /// `matches` agrees with the reference evaluator, for the parsed text and its canonical
    /// form, over both map types.
    #[test]
    fn matches_agrees_with_reference(e in expr(), maps in prop::collection::vec(label_map(), 1..8)) {
        let src = text(&e);
        let sel = parse(&src);
        let canon = parse(&sel.to_string());
        for labels in &maps {
            let expected = eval(&e, labels);
            prop_assert_eq!(sel.matches(labels), expected, "{:?} on {:?}", src, labels);
            prop_assert_eq!(canon.matches(labels), expected, "canonical {} on {:?}", canon, labels);
            let hashed: HashMap<String, String> = labels.clone().into_iter().collect();
            prop_assert_eq!(sel.matches(&hashed), expected);
        }
    }

    /// `!` negates any selector, whether applied to the source text or the canonical text.
    #[test]
    fn bang_negates(e in expr(), labels in label_map()) {
        let src = text(&e);
        let sel = parse(&src);
        let neg = parse(&format!("!({src})"));
        prop_assert_eq!(neg.matches(&labels), !sel.matches(&labels));
        let neg_canon = parse(&format!("!({sel})"));
        prop_assert_eq!(&neg_canon, &neg);
        // "!" binds tighter than "&&"/"||", so without parentheses it negates only the first
        // operand; with a leaf it must still negate the whole thing.
        if matches!(e, Expr::Cmp(..) | Expr::Set(..) | Expr::Has(..)) {
            prop_assert_eq!(parse(&format!("!{src}")).matches(&labels), !eval(&e, &labels));
        }
    }

    /// Evaluation borrows only: no allocation on any path.
    #[test]
    fn matches_does_not_allocate(e in expr(), labels in label_map()) {
        let sel = parse(&text(&e));
        let hashed: HashMap<String, String> = labels.clone().into_iter().collect();
        let parent = BTreeMap::new();
        let layered = LabelsWithParent::new(&labels, &parent);
        let before = allocations();
        let r = (sel.matches(&labels), sel.matches(&hashed), sel.matches(&layered));
        let after = allocations();
        prop_assert_eq!(after, before, "allocated while evaluating {}", sel);
        prop_assert_eq!(r.0, r.1);
        prop_assert_eq!(r.0, r.2);
    }

    /// Layered labels behave exactly like the merged map with own labels winning.
    #[test]
    fn labels_with_parent_is_an_overlay(e in expr(), own in label_map(), parent in label_map()) {
        let sel = parse(&text(&e));
        let mut merged = parent.clone();
        merged.extend(own.clone());
        let layered = LabelsWithParent::new(&own, &parent);
        for k in KEYS {
            prop_assert_eq!(layered.get(k), merged.get(*k).map(String::as_str));
        }
        prop_assert_eq!(sel.matches(&layered), eval(&e, &merged));
    }

    /// Every label reported as required really is present (with that value) on a match.
    #[test]
    fn required_labels_are_necessary(e in expr(), maps in prop::collection::vec(label_map(), 1..8)) {
        let sel = parse(&text(&e));
        for labels in maps.iter().filter(|l| sel.matches(*l)) {
            for (k, v) in sel.required_labels() {
                let got = labels.get(k).map(String::as_str);
                prop_assert!(got.is_some(), "{} matched {:?} without {}", sel, labels, k);
                if let Some(v) = v {
                    prop_assert_eq!(got, Some(v));
                }
            }
        }
    }

    #[test]
    fn predicates_agree_with_tree(e in expr()) {
        let sel = parse(&text(&e));
        prop_assert_eq!(sel.uses_global(), uses_global(&e));
        prop_assert_eq!(sel.is_all(), sel.to_string() == "all()");
        let id = sel.unique_id();
        prop_assert!(id.starts_with("s:") && id.len() == 40, "{}", id);
    }

    /// Arbitrary text over the selector alphabet never panics the parser; whatever parses
    /// has a stable canonical form, and errors point inside (or just past) the text.
    #[test]
    fn arbitrary_text_never_panics(src in r#"[ab!&|=(){}'", .\-/]{0,12}|(has|in|not|all|\(|\)|!|&&|\|\||==|!=|\{|\}|,|'x'|"y"| |a|contains|starts|with|global){0,12}"#) {
        match Selector::parse(&src) {
            Ok(sel) => {
                let canon = sel.to_string();
                let again = parse(&canon);
                prop_assert_eq!(&again, &sel);
                prop_assert_eq!(again.to_string(), canon);
            }
            Err(err) => {
                prop_assert!(err.column >= 1 && err.column <= src.chars().count() + 1, "{:?}: {}", src, err);
                prop_assert!(!err.expected.is_empty());
                let needle = format!("at column {}", err.column);
                prop_assert!(err.to_string().contains(&needle), "{}", err);
            }
        }
    }
}
