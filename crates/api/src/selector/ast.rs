//! Selector syntax tree: evaluation against labels and the canonical printer.
//!
//! The tree is built once at parse time and is already canonical (same-operator chains are
//! flattened, set members sorted and de-duplicated), so printing it gives the canonical form
//! and structural equality is equality of canonical forms. Strings are `Box<str>` rather than
//! `String` to keep nodes small; evaluation only borrows them, so it never allocates.

use std::fmt::{self, Write};

use super::Labels;

/// The string comparisons that take a single literal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum StrOp {
    Eq,
    Ne,
    Contains,
    StartsWith,
    EndsWith,
}

impl StrOp {
    pub(crate) fn spelling(self) -> &'static str {
        match self {
            StrOp::Eq => "==",
            StrOp::Ne => "!=",
            StrOp::Contains => "contains",
            StrOp::StartsWith => "starts with",
            StrOp::EndsWith => "ends with",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Node {
    All,
    Global,
    Has(Box<str>),
    Cmp {
        key: Box<str>,
        op: StrOp,
        value: Box<str>,
    },
    /// `key in {..}` or, with `negated`, `key not in {..}`. `values` is sorted and
    /// de-duplicated so membership is a binary search.
    Set {
        key: Box<str>,
        negated: bool,
        values: Box<[Box<str>]>,
    },
    Not(Box<Node>),
    /// At least two children, none of which is itself an `And`.
    And(Box<[Node]>),
    /// At least two children, none of which is itself an `Or`.
    Or(Box<[Node]>),
}

impl Node {
    /// Builds a set node, putting the members into canonical order.
    pub(crate) fn set(key: Box<str>, negated: bool, mut values: Vec<Box<str>>) -> Node {
        values.sort_unstable();
        values.dedup();
        Node::Set {
            key,
            negated,
            values: values.into_boxed_slice(),
        }
    }

    /// Builds an `&&` node, splicing in children that are themselves `&&` (associativity),
    /// so `(a && b) && c` and `a && (b && c)` share one canonical form.
    pub(crate) fn and(children: Vec<Node>) -> Node {
        Self::chain(children, true)
    }

    /// Builds an `||` node; see [`Node::and`].
    pub(crate) fn or(children: Vec<Node>) -> Node {
        Self::chain(children, false)
    }

    fn chain(mut children: Vec<Node>, is_and: bool) -> Node {
        if children.len() == 1 {
            return children.pop().expect("one child");
        }
        let mut flat = Vec::with_capacity(children.len());
        for child in children {
            match child {
                Node::And(grand) if is_and => flat.extend(grand.into_vec()),
                Node::Or(grand) if !is_and => flat.extend(grand.into_vec()),
                other => flat.push(other),
            }
        }
        let flat = flat.into_boxed_slice();
        if is_and {
            Node::And(flat)
        } else {
            Node::Or(flat)
        }
    }

    /// Evaluates the node. Absent labels make every positive test false and `!=` / `not in`
    /// true, mirroring "the label does not have that value".
    pub(crate) fn eval<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        match self {
            Node::All | Node::Global => true,
            Node::Has(key) => labels.get(key).is_some(),
            Node::Cmp { key, op, value } => match (labels.get(key), op) {
                (None, StrOp::Ne) => true,
                (None, _) => false,
                (Some(v), StrOp::Eq) => v == &**value,
                (Some(v), StrOp::Ne) => v != &**value,
                (Some(v), StrOp::Contains) => v.contains(&**value),
                (Some(v), StrOp::StartsWith) => v.starts_with(&**value),
                (Some(v), StrOp::EndsWith) => v.ends_with(&**value),
            },
            Node::Set {
                key,
                negated,
                values,
            } => {
                let present = labels
                    .get(key)
                    .is_some_and(|v| values.binary_search_by(|m| (**m).cmp(v)).is_ok());
                present != *negated
            }
            Node::Not(inner) => !inner.eval(labels),
            Node::And(children) => children.iter().all(|c| c.eval(labels)),
            Node::Or(children) => children.iter().any(|c| c.eval(labels)),
        }
    }

    pub(crate) fn uses_global(&self) -> bool {
        match self {
            Node::Global => true,
            Node::Not(inner) => inner.uses_global(),
            Node::And(children) | Node::Or(children) => children.iter().any(Node::uses_global),
            _ => false,
        }
    }

    /// Label constraints implied by this node on its own (not under `!` or `||`): every
    /// returned `(key, value)` must hold for the node to match — `Some(v)` means the label
    /// must equal `v`, `None` that it must merely be present.
    pub(crate) fn push_required<'a>(&'a self, out: &mut Vec<(&'a str, Option<&'a str>)>) {
        match self {
            Node::Has(key) => out.push((key, None)),
            Node::Cmp { key, op, value } => match op {
                StrOp::Eq => out.push((key, Some(value))),
                StrOp::Ne => {}
                StrOp::Contains | StrOp::StartsWith | StrOp::EndsWith => out.push((key, None)),
            },
            Node::Set {
                key,
                negated: false,
                values,
            } => match &values[..] {
                [only] => out.push((key, Some(only))),
                _ => out.push((key, None)),
            },
            Node::And(children) => children.iter().for_each(|c| c.push_required(out)),
            _ => {}
        }
    }

    /// Writes the canonical form. `nested` is true when the node is an operand of `!`, `&&`
    /// or `||`; and/or chains are then parenthesised so the structure reads unambiguously.
    fn write(&self, f: &mut fmt::Formatter<'_>, nested: bool) -> fmt::Result {
        match self {
            Node::All => f.write_str("all()"),
            Node::Global => f.write_str("global()"),
            Node::Has(key) => write!(f, "has({key})"),
            Node::Cmp { key, op, value } => {
                write!(f, "{key} {} ", op.spelling())?;
                write_literal(f, value)
            }
            Node::Set {
                key,
                negated,
                values,
            } => {
                write!(f, "{key} {}in {{", if *negated { "not " } else { "" })?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_literal(f, v)?;
                }
                f.write_char('}')
            }
            Node::Not(inner) => {
                f.write_char('!')?;
                inner.write(f, true)
            }
            Node::And(children) => write_chain(f, children, " && ", nested),
            Node::Or(children) => write_chain(f, children, " || ", nested),
        }
    }
}

fn write_chain(
    f: &mut fmt::Formatter<'_>,
    children: &[Node],
    sep: &str,
    nested: bool,
) -> fmt::Result {
    if nested {
        f.write_char('(')?;
    }
    for (i, c) in children.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        c.write(f, true)?;
    }
    if nested {
        f.write_char(')')?;
    }
    Ok(())
}

/// Double quotes unless the value itself contains one. A parsed value can never contain both
/// quote characters, since literals have no escapes.
fn write_literal(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    let q = if value.contains('"') { '\'' } else { '"' };
    write!(f, "{q}{value}{q}")
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cmp(key: &str, op: StrOp, value: &str) -> Node {
        Node::Cmp {
            key: key.into(),
            op,
            value: value.into(),
        }
    }

    #[test]
    fn node_stays_compact() {
        // Guard against accidental growth: every node is walked on every evaluation.
        assert!(
            std::mem::size_of::<Node>() <= 40,
            "{}",
            std::mem::size_of::<Node>()
        );
    }

    #[test]
    fn chains_flatten_only_same_operator() {
        let a = cmp("a", StrOp::Eq, "1");
        let b = cmp("b", StrOp::Eq, "2");
        let c = cmp("c", StrOp::Eq, "3");
        let inner = Node::and(vec![a.clone(), b.clone()]);
        let n = Node::and(vec![inner.clone(), c.clone()]);
        assert_eq!(n, Node::And(vec![a.clone(), b.clone(), c.clone()].into()));
        let n = Node::or(vec![inner.clone(), c.clone()]);
        assert_eq!(n, Node::Or(vec![inner, c].into()));
        assert_eq!(Node::and(vec![a.clone()]), a);
    }

    #[test]
    fn set_is_sorted_and_deduplicated() {
        let n = Node::set("k".into(), false, vec!["b".into(), "a".into(), "b".into()]);
        assert_eq!(n.to_string(), r#"k in {"a", "b"}"#);
        let n = Node::set("k".into(), true, vec![]);
        assert_eq!(n.to_string(), "k not in {}");
    }

    #[test]
    fn literal_quoting() {
        assert_eq!(cmp("k", StrOp::Eq, "it's").to_string(), r#"k == "it's""#);
        assert_eq!(
            cmp("k", StrOp::Eq, r#"say "hi""#).to_string(),
            r#"k == 'say "hi"'"#
        );
        assert_eq!(cmp("k", StrOp::Eq, "").to_string(), r#"k == """#);
    }

    #[test]
    fn nested_chains_are_parenthesised_top_level_is_not() {
        let a = cmp("a", StrOp::Eq, "1");
        let b = cmp("b", StrOp::Eq, "2");
        let c = cmp("c", StrOp::Eq, "3");
        let and = Node::and(vec![a.clone(), b.clone()]);
        assert_eq!(and.to_string(), r#"a == "1" && b == "2""#);
        let or = Node::or(vec![and.clone(), c.clone()]);
        assert_eq!(or.to_string(), r#"(a == "1" && b == "2") || c == "3""#);
        let not = Node::Not(Box::new(and));
        assert_eq!(not.to_string(), r#"!(a == "1" && b == "2")"#);
        let not = Node::Not(Box::new(Node::Not(Box::new(Node::Has("x".into())))));
        assert_eq!(not.to_string(), "!!has(x)");
    }

    #[test]
    fn eval_missing_label_semantics() {
        let empty: BTreeMap<String, String> = BTreeMap::new();
        for (op, expect) in [
            (StrOp::Eq, false),
            (StrOp::Ne, true),
            (StrOp::Contains, false),
            (StrOp::StartsWith, false),
            (StrOp::EndsWith, false),
        ] {
            assert_eq!(cmp("k", op, "").eval(&empty), expect, "{op:?}");
        }
        assert!(!Node::set("k".into(), false, vec!["".into()]).eval(&empty));
        assert!(Node::set("k".into(), true, vec!["".into()]).eval(&empty));
        assert!(!Node::Has("k".into()).eval(&empty));
        assert!(Node::All.eval(&empty));
        assert!(Node::Global.eval(&empty));
    }

    #[test]
    fn required_labels_only_from_top_level_conjunction() {
        let n = Node::and(vec![
            cmp("a", StrOp::Eq, "1"),
            Node::Has("b".into()),
            cmp("c", StrOp::Ne, "x"),
            Node::Not(Box::new(Node::Has("d".into()))),
            Node::or(vec![Node::Has("e".into()), Node::Has("f".into())]),
            Node::set("g".into(), false, vec!["only".into()]),
            Node::set("h".into(), false, vec!["x".into(), "y".into()]),
            cmp("i", StrOp::StartsWith, "p"),
        ]);
        let mut out = Vec::new();
        n.push_required(&mut out);
        assert_eq!(
            out,
            vec![
                ("a", Some("1")),
                ("b", None),
                ("g", Some("only")),
                ("h", None),
                ("i", None)
            ]
        );
    }
}
