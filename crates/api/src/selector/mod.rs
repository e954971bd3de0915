//! Calico selector language.
//!
//! A selector is a boolean expression over an entity's labels, e.g.
//! `role == "db" && !has(quarantine) || projectcalico.org/namespace in {"a", "b"}`.
//! [`Selector::parse`] checks and normalises the text once; [`Selector::matches`] then
//! evaluates it against any [`Labels`] source without allocating, which matters because a
//! label index evaluates every candidate selector on every endpoint label change.
//!
//! Layout: `lexer` turns text into tokens, `parser` builds the tree, `ast` holds the tree with
//! its evaluator and canonical printer, `error` the shared [`ParseError`].

mod ast;
mod error;
mod lexer;
mod parser;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

use sha2::{Digest, Sha224};

pub use error::ParseError;

/// Read access to a set of labels (key → value).
pub trait Labels {
    fn get(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).map(String::as_str)
    }
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(String::as_str)
    }
}

impl<L: Labels + ?Sized> Labels for &L {
    fn get(&self, key: &str) -> Option<&str> {
        (**self).get(key)
    }
}

/// An entity's own labels layered over labels it inherits (a profile's `labelsToApply`, a
/// namespace's labels). Own labels win on conflict. Lookup is a borrow of both sources, so
/// no merged map has to be built per evaluation.
#[derive(Clone, Copy, Debug)]
pub struct LabelsWithParent<'a, A: ?Sized, B: ?Sized> {
    pub own: &'a A,
    pub parent: &'a B,
}

impl<'a, A: Labels + ?Sized, B: Labels + ?Sized> LabelsWithParent<'a, A, B> {
    pub fn new(own: &'a A, parent: &'a B) -> Self {
        LabelsWithParent { own, parent }
    }
}

impl<A: Labels + ?Sized, B: Labels + ?Sized> Labels for LabelsWithParent<'_, A, B> {
    fn get(&self, key: &str) -> Option<&str> {
        self.own.get(key).or_else(|| self.parent.get(key))
    }
}

/// A parsed selector.
///
/// Two selectors compare equal (and hash equally) exactly when their canonical forms are
/// equal: parsing normalises quoting, spacing, `startswith`/`endswith` spelling, redundant
/// parentheses, `&&`/`||` associativity and set member order.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    root: ast::Node,
}

impl Selector {
    /// Parses selector text. Empty or whitespace-only text means `all()`.
    pub fn parse(s: &str) -> Result<Selector, ParseError> {
        parser::parse(s).map(|root| Selector { root })
    }

    /// The selector that matches everything.
    pub fn all() -> Selector {
        Selector {
            root: ast::Node::All,
        }
    }

    /// Evaluates the selector against `labels`. Never allocates.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.root.eval(labels)
    }

    /// True for `all()` (and hence for an empty selector).
    pub fn is_all(&self) -> bool {
        self.root == ast::Node::All
    }

    /// True if the selector is exactly `global()`.
    pub fn is_global(&self) -> bool {
        self.root == ast::Node::Global
    }

    /// True if `global()` appears anywhere in the selector.
    pub fn uses_global(&self) -> bool {
        self.root.uses_global()
    }

    /// Stable identifier derived from the canonical form: `s:` followed by the unpadded
    /// base64url SHA-224 of the canonical text (38 characters). Used to share one IP set
    /// between all rules with the same selector.
    pub fn unique_id(&self) -> String {
        let digest = Sha224::digest(self.canonical().as_bytes());
        let mut id = String::with_capacity(40);
        id.push_str("s:");
        base64url_nopad(&digest, &mut id);
        id
    }

    /// The canonical text; identical to `Display`. Parsing it yields an equal selector.
    pub fn canonical(&self) -> String {
        self.to_string()
    }

    /// Label constraints that every match must satisfy, for indexing selectors by label.
    ///
    /// Only the top-level `&&` chain (or a lone top-level term) contributes: `(key,
    /// Some(value))` for `key == value` and single-member `key in {value}`, `(key, None)` for
    /// `has(key)` and the other tests that require the label to exist (`in`, `contains`,
    /// `starts with`, `ends with`). Empty means no label is required (e.g. `all()`, `||`,
    /// `!`, `!=`), so the selector must be checked against every entity.
    pub fn required_labels(&self) -> Vec<(&str, Option<&str>)> {
        let mut out = Vec::new();
        self.root.push_required(&mut out);
        out
    }
}

impl Default for Selector {
    fn default() -> Self {
        Selector::all()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.root, f)
    }
}

/// Shows the canonical text, which is far more readable in assertion failures than the tree.
impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Selector({self})")
    }
}

impl FromStr for Selector {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

/// RFC 4648 §5 base64url without padding (a whole dependency is not worth 15 lines).
fn base64url_nopad(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        // 1 input byte gives 2 output characters, 2 give 3, 3 give 4.
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 0x3f) as usize]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(s: &str) -> Selector {
        Selector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Asserts the selector's verdict on an entity that has `key=value` and on one without it.
    fn check(src: &str, key: &str, value: &str, with: bool, without: bool) {
        let s = sel(src);
        assert_eq!(
            s.matches(&labels(&[(key, value)])),
            with,
            "{src} on {key}={value}"
        );
        assert_eq!(
            s.matches(&labels(&[("other", value)])),
            without,
            "{src} without {key}"
        );
    }

    #[test]
    fn every_operator_and_missing_label_semantics() {
        check(r#"a == "x""#, "a", "x", true, false);
        check(r#"a == "x""#, "a", "y", false, false);
        check(r#"a != "x""#, "a", "x", false, true);
        check(r#"a != "x""#, "a", "y", true, true);
        check(r#"a in {"x", "y"}"#, "a", "y", true, false);
        check(r#"a in {"x", "y"}"#, "a", "z", false, false);
        check("a in {}", "a", "", false, false);
        check(r#"a not in {"x", "y"}"#, "a", "x", false, true);
        check(r#"a not in {"x", "y"}"#, "a", "z", true, true);
        check("a not in {}", "a", "", true, true);
        check(r#"a contains "ell""#, "a", "hello", true, false);
        check(r#"a contains "elx""#, "a", "hello", false, false);
        check(r#"a contains """#, "a", "", true, false);
        check(r#"a starts with "he""#, "a", "hello", true, false);
        check(r#"a starts with "lo""#, "a", "hello", false, false);
        check(r#"a ends with "lo""#, "a", "hello", true, false);
        check(r#"a ends with "he""#, "a", "hello", false, false);
        check("has(a)", "a", "", true, false);
        check("!has(a)", "a", "", false, true);
        check("all()", "a", "x", true, true);
        check("global()", "a", "x", true, true);
        check("", "a", "x", true, true);
    }

    #[test]
    fn quote_styles_are_equivalent() {
        assert_eq!(sel("a == 'x'"), sel(r#"a == "x""#));
        check(r#"a == 'say "hi"'"#, "a", r#"say "hi""#, true, false);
        check(r#"a == "it's""#, "a", "it's", true, false);
        assert_eq!(sel(r#"a == 'say "hi"'"#).to_string(), r#"a == 'say "hi"'"#);
        assert_eq!(sel("a in {'x'}").to_string(), r#"a in {"x"}"#);
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let s = sel(r#"a == "1" || b == "2" && c == "3""#);
        assert_eq!(s.to_string(), r#"a == "1" || (b == "2" && c == "3")"#);
        assert!(s.matches(&labels(&[("a", "1")])));
        assert!(!s.matches(&labels(&[("b", "2")])));
        assert!(s.matches(&labels(&[("b", "2"), ("c", "3")])));
        let s = sel(r#"a == "1" && b == "2" || c == "3""#);
        assert_eq!(s.to_string(), r#"(a == "1" && b == "2") || c == "3""#);
        assert!(s.matches(&labels(&[("c", "3")])));
        assert!(!s.matches(&labels(&[("a", "1")])));
        let s = sel(r#"(a == "1" || b == "2") && c == "3""#);
        assert!(!s.matches(&labels(&[("a", "1")])));
        assert!(s.matches(&labels(&[("a", "1"), ("c", "3")])));
    }

    #[test]
    fn bang_binds_to_one_primary() {
        let s = sel(r#"!a == "x""#);
        assert_eq!(s, sel(r#"!(a == "x")"#));
        assert_eq!(s.to_string(), r#"!a == "x""#);
        assert!(s.matches(&labels(&[])));
        assert!(!s.matches(&labels(&[("a", "x")])));
        let s = sel("!has(a) && has(b)");
        assert_eq!(s.to_string(), "!has(a) && has(b)");
        assert!(s.matches(&labels(&[("b", "")])));
        assert!(!s.matches(&labels(&[("a", ""), ("b", "")])));
        let s = sel("!(has(a) && has(b))");
        assert!(s.matches(&labels(&[("b", "")])));
        assert!(s.matches(&labels(&[])));
        assert_eq!(s.to_string(), "!(has(a) && has(b))");
        let s = sel("!!has(a)");
        assert!(s.matches(&labels(&[("a", "")])));
        assert!(!s.matches(&labels(&[])));
    }

    #[test]
    fn canonical_form() {
        for (input, expected) in [
            ("", "all()"),
            ("  ", "all()"),
            ("all()", "all()"),
            ("((has(a)))", "has(a)"),
            ("has(a)&&has(b)&&has(c)", "has(a) && has(b) && has(c)"),
            ("(has(a) && has(b)) && has(c)", "has(a) && has(b) && has(c)"),
            ("has(a) || (has(b) || has(c))", "has(a) || has(b) || has(c)"),
            (
                "has(a) && (has(b) || has(c))",
                "has(a) && (has(b) || has(c))",
            ),
            ("!(!has(a))", "!!has(a)"),
            ("!(has(a) || has(b))", "!(has(a) || has(b))"),
            (r#"a in {"z", 'a', "m", "a"}"#, r#"a in {"a", "m", "z"}"#),
            (r#"a notin {"b","b"}"#, r#"a not in {"b"}"#),
            (
                "a startswith 'p' || a endswith 's'",
                r#"a starts with "p" || a ends with "s""#,
            ),
        ] {
            let s = sel(input);
            assert_eq!(s.to_string(), expected, "{input:?}");
            assert_eq!(s.canonical(), expected);
            assert_eq!(sel(expected), s, "{input:?} re-parse");
            assert_eq!(sel(expected).to_string(), expected);
        }
    }

    #[test]
    fn keys_with_dots_and_slashes() {
        let s = sel(
            r#"projectcalico.org/namespace == "openstack" && has(sg.projectcalico.org/openstack-3f2a_b)"#,
        );
        let l = labels(&[
            ("projectcalico.org/namespace", "openstack"),
            ("sg.projectcalico.org/openstack-3f2a_b", "web"),
        ]);
        assert!(s.matches(&l));
        assert!(!s.matches(&labels(&[("projectcalico.org/namespace", "openstack")])));
    }

    #[test]
    fn predicates() {
        assert!(sel("").is_all());
        assert!(sel("all()").is_all());
        assert!(Selector::all().is_all());
        assert!(Selector::default().is_all());
        assert!(!sel("has(a)").is_all());
        assert!(sel("global()").is_global());
        assert!(sel("global()").uses_global());
        assert!(!sel("global() && has(a)").is_global());
        assert!(sel("has(a) || !global()").uses_global());
        assert!(!sel("has(global)").uses_global());
    }

    #[test]
    fn from_str_and_debug() {
        let s: Selector = "has(a)".parse().unwrap();
        assert_eq!(format!("{s:?}"), "Selector(has(a))");
        assert!("has(".parse::<Selector>().is_err());
    }

    #[test]
    fn unique_id_is_stable_and_canonical() {
        let a = sel(r#"a == 'x' && has(b)"#);
        let b = sel(r#"(a=="x")&&has( b )"#);
        let id = a.unique_id();
        assert_eq!(id, b.unique_id());
        assert_eq!(id.len(), 40);
        assert!(id.starts_with("s:"));
        assert!(id[2..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(id, sel(r#"a == "y" && has(b)"#).unique_id());
        // Pinned so that an accidental change to the canonical printer or the hash shows up:
        // IP set names derived from these IDs must survive upgrades.
        // Vectors computed independently (Python hashlib + base64.urlsafe_b64encode).
        assert_eq!(id, "s:RXcXp8l9-tn72chCuMZLK0N8k6WR59x_w1knwQ");
        assert_eq!(
            sel("").unique_id(),
            "s:yAKsl-CNoToGJvI4pNl6xXkWbnkbEnlK7IRXBA"
        );
    }

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = String::new();
            base64url_nopad(input.as_bytes(), &mut out);
            assert_eq!(out, expected);
        }
        let mut out = String::new();
        base64url_nopad(&[0xfb, 0xff], &mut out);
        assert_eq!(out, "-_8");
    }

    #[test]
    fn labels_with_parent_prefers_own() {
        let own = labels(&[("a", "own")]);
        let parent: HashMap<String, String> = [("a", "parent"), ("b", "parent")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let l = LabelsWithParent::new(&own, &parent);
        assert_eq!(l.get("a"), Some("own"));
        assert_eq!(l.get("b"), Some("parent"));
        assert_eq!(l.get("c"), None);
        assert!(sel(r#"a == "own" && b == "parent""#).matches(&l));
        assert!(!sel(r#"a == "parent""#).matches(&l));
        // Works through references and trait objects too.
        let dynl: &dyn Labels = &l;
        assert!(sel("has(b)").matches(dynl));
        assert!(sel("has(b)").matches(&&l));
    }

    #[test]
    fn required_labels_for_index() {
        let s = sel(r#"role == "db" && has(tier) && !has(x) && env != "prod""#);
        assert_eq!(
            s.required_labels(),
            vec![("role", Some("db")), ("tier", None)]
        );
        assert_eq!(sel(r#"a == "1""#).required_labels(), vec![("a", Some("1"))]);
        assert!(sel(r#"a == "1" || b == "2""#).required_labels().is_empty());
        assert!(sel("all()").required_labels().is_empty());
    }
}
