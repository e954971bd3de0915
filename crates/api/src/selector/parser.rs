//! Recursive-descent parser from tokens to the canonical syntax tree.
//!
//! Precedence, lowest first: `||`, `&&`, prefix `!`, then a primary. `!` applies to exactly
//! one primary, so `!a == "x"` means `!(a == "x")`.

use super::ast::{Node, StrOp};
use super::error::ParseError;
use super::lexer::{Lexer, Token, TokenKind, MAX_KEY_LEN};

/// Deepest nesting of parentheses and `!` accepted. Evaluation, printing and dropping the
/// tree all recurse, so an unbounded depth would let a hostile selector overflow the stack.
pub(crate) const MAX_DEPTH: usize = 128;

const PRIMARY: &str = r#"a label, "has(", "all()", "global()", "!" or "(""#;
const OPERATORS: &str = r#""==", "!=", "in", "not in", "contains", "starts with" or "ends with""#;

/// Parses selector text. Empty or whitespace-only text is `all()`.
pub(crate) fn parse(src: &str) -> Result<Node, ParseError> {
    let mut p = Parser {
        lex: Lexer::new(src),
        depth: 0,
    };
    if p.lex.peek()?.kind == TokenKind::Eof {
        return Ok(Node::All);
    }
    let node = p.or_expr()?;
    let t = p.lex.peek()?;
    if t.kind != TokenKind::Eof {
        return Err(p.error(t, r#""&&", "||" or end of input"#));
    }
    Ok(node)
}

struct Parser<'a> {
    lex: Lexer<'a>,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn error(&self, at: Token<'a>, expected: impl Into<String>) -> ParseError {
        ParseError::new(self.lex.src(), at.start, expected, self.lex.text(at))
    }

    /// Consumes the next token if it has exactly the given kind.
    fn eat(&mut self, kind: TokenKind<'_>) -> Result<bool, ParseError> {
        if self.lex.peek()?.kind == kind {
            self.lex.next_token()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Consumes the next token, requiring the given kind.
    fn expect(&mut self, kind: TokenKind<'_>, expected: &str) -> Result<(), ParseError> {
        let t = self.lex.next_token()?;
        if t.kind == kind {
            Ok(())
        } else {
            Err(self.error(t, expected))
        }
    }

    /// Consumes the next token if it is the given keyword.
    fn eat_word(&mut self, word: &str) -> Result<bool, ParseError> {
        self.eat(TokenKind::Word(word))
    }

    fn enter(&mut self, at: Token<'a>) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(at, format!("at most {MAX_DEPTH} levels of nesting")));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<Node, ParseError> {
        let mut parts = vec![self.and_expr()?];
        while self.eat(TokenKind::OrOr)? {
            parts.push(self.and_expr()?);
        }
        Ok(Node::or(parts))
    }

    fn and_expr(&mut self) -> Result<Node, ParseError> {
        let mut parts = vec![self.unary()?];
        while self.eat(TokenKind::AndAnd)? {
            parts.push(self.unary()?);
        }
        Ok(Node::and(parts))
    }

    fn unary(&mut self) -> Result<Node, ParseError> {
        let t = self.lex.peek()?;
        if t.kind != TokenKind::Bang {
            return self.primary();
        }
        self.lex.next_token()?;
        self.enter(t)?;
        let inner = self.unary()?;
        self.depth -= 1;
        Ok(Node::Not(Box::new(inner)))
    }

    fn primary(&mut self) -> Result<Node, ParseError> {
        let t = self.lex.next_token()?;
        match t.kind {
            TokenKind::LParen => {
                self.enter(t)?;
                let inner = self.or_expr()?;
                self.expect(TokenKind::RParen, r#""&&", "||" or ")""#)?;
                self.depth -= 1;
                Ok(inner)
            }
            // A label can never be followed by "(", so "word(" is always a function call and
            // labels named "has", "all" or "global" stay usable in comparisons.
            TokenKind::Word(w) if self.lex.peek()?.kind == TokenKind::LParen => self.function(t, w),
            TokenKind::Word(key) => {
                let key = self.key(t, key)?;
                self.comparison(key)
            }
            _ => Err(self.error(t, PRIMARY)),
        }
    }

    fn function(&mut self, name_tok: Token<'a>, name: &str) -> Result<Node, ParseError> {
        self.lex.next_token()?; // "("
        match name {
            "has" => {
                let t = self.lex.next_token()?;
                let TokenKind::Word(key) = t.kind else {
                    return Err(self.error(t, r#"a label inside "has(...)""#));
                };
                let key = self.key(t, key)?;
                self.expect(TokenKind::RParen, r#"")" to close "has(""#)?;
                Ok(Node::Has(key))
            }
            "all" => {
                self.expect(TokenKind::RParen, r#"")": "all()" takes no arguments"#)?;
                Ok(Node::All)
            }
            "global" => {
                self.expect(TokenKind::RParen, r#"")": "global()" takes no arguments"#)?;
                Ok(Node::Global)
            }
            _ => Err(self.error(name_tok, r#""has(", "all()" or "global()""#)),
        }
    }

    /// Validates a word used as a label key.
    fn key(&self, t: Token<'a>, key: &str) -> Result<Box<str>, ParseError> {
        if key.len() > MAX_KEY_LEN {
            // Keys are ASCII, so the byte offset of the first excess character is exact.
            return Err(ParseError::new(
                self.lex.src(),
                t.start + MAX_KEY_LEN,
                format!("a label of at most {MAX_KEY_LEN} characters"),
                key,
            ));
        }
        Ok(key.into())
    }

    fn comparison(&mut self, key: Box<str>) -> Result<Node, ParseError> {
        let t = self.lex.next_token()?;
        let op = match t.kind {
            TokenKind::EqEq => StrOp::Eq,
            TokenKind::NotEq => StrOp::Ne,
            TokenKind::Word("contains") => StrOp::Contains,
            TokenKind::Word("startswith") => StrOp::StartsWith,
            TokenKind::Word("endswith") => StrOp::EndsWith,
            TokenKind::Word("starts") if self.eat_word("with")? => StrOp::StartsWith,
            TokenKind::Word("ends") if self.eat_word("with")? => StrOp::EndsWith,
            TokenKind::Word("in") => return self.set(key, false, "in"),
            TokenKind::Word("notin") => return self.set(key, true, "not in"),
            TokenKind::Word("not") => {
                let n = self.lex.next_token()?;
                if n.kind != TokenKind::Word("in") {
                    return Err(self.error(n, r#""in" after "not""#));
                }
                return self.set(key, true, "not in");
            }
            TokenKind::Word(w @ ("starts" | "ends")) => {
                let n = self.lex.peek()?;
                return Err(self.error(n, format!(r#""with" after "{w}""#)));
            }
            _ => return Err(self.error(t, format!(r#"{OPERATORS} after label "{key}""#))),
        };
        let value = self.literal(op.spelling())?;
        Ok(Node::Cmp { key, op, value })
    }

    fn literal(&mut self, after: &str) -> Result<Box<str>, ParseError> {
        let t = self.lex.next_token()?;
        match t.kind {
            TokenKind::Str(s) => Ok(s.into()),
            // Comparing two labels is not part of the language; say so rather than just
            // "expected a string".
            TokenKind::Word(_) => Err(self.error(
                t,
                format!(
                    r#"a quoted string after "{after}" (labels can only be compared with literals)"#
                ),
            )),
            _ => Err(self.error(t, format!(r#"a quoted string after "{after}""#))),
        }
    }

    fn set(&mut self, key: Box<str>, negated: bool, op: &str) -> Result<Node, ParseError> {
        self.expect(TokenKind::LBrace, &format!(r#""{{" after "{op}""#))?;
        let mut values = Vec::new();
        if !self.eat(TokenKind::RBrace)? {
            loop {
                values.push(self.literal(if values.is_empty() { "{" } else { "," })?);
                let t = self.lex.next_token()?;
                match t.kind {
                    TokenKind::Comma => {}
                    TokenKind::RBrace => break,
                    _ => return Err(self.error(t, r#""," or "}""#)),
                }
            }
        }
        Ok(Node::set(key, negated, values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> ParseError {
        match parse(src) {
            Ok(n) => panic!("{src:?} parsed as {n}"),
            Err(e) => e,
        }
    }

    fn canon(src: &str) -> String {
        parse(src)
            .unwrap_or_else(|e| panic!("{src:?}: {e}"))
            .to_string()
    }

    #[test]
    fn bare_label_reports_expected_operators() {
        let e = err("app foo");
        assert_eq!(e.column, 5);
        assert_eq!(e.found, "foo");
        assert_eq!(
            e.to_string(),
            r#"expected "==", "!=", "in", "not in", "contains", "starts with" or "ends with" after label "app" at column 5, found "foo""#
        );
        let e = err("app");
        assert_eq!((e.column, e.found.as_str()), (4, ""));
        assert!(e.expected.starts_with(r#""==""#));
    }

    #[test]
    fn literal_on_left_is_rejected() {
        let e = err(r#""a" == "b""#);
        assert_eq!((e.column, e.found.as_str()), (1, r#""a""#));
        assert_eq!(e.expected, PRIMARY);
        let e = err(r#"x == "1" || 'a' == b"#);
        assert_eq!(e.column, 13);
    }

    #[test]
    fn label_vs_label_is_rejected() {
        let e = err("a == b");
        assert_eq!((e.column, e.found.as_str()), (6, "b"));
        assert!(e
            .expected
            .contains("labels can only be compared with literals"));
        let e = err("a in {b}");
        assert_eq!(e.column, 7);
    }

    #[test]
    fn unterminated_string() {
        let e = err(r#"a == "abc"#);
        assert_eq!((e.column, e.found.as_str()), (6, "\"abc"));
        assert!(e.expected.contains("closing \""));
        let e = err("a in {'x', 'y}");
        assert_eq!(e.column, 12);
    }

    #[test]
    fn trailing_garbage() {
        let e = err(r#"a == "1" b"#);
        assert_eq!((e.column, e.found.as_str()), (10, "b"));
        assert_eq!(e.expected, r#""&&", "||" or end of input"#);
        let e = err(r#"a == "1")"#);
        assert_eq!((e.column, e.found.as_str()), (9, ")"));
    }

    #[test]
    fn unbalanced_parens() {
        let e = err(r#"(a == "1""#);
        assert_eq!((e.column, e.found.as_str()), (10, ""));
        assert_eq!(e.expected, r#""&&", "||" or ")""#);
        let e = err("((has(a))");
        assert_eq!(e.column, 10);
        let e = err("()");
        assert_eq!((e.column, e.found.as_str()), (2, ")"));
    }

    #[test]
    fn dangling_operators() {
        assert_eq!(err("has(a) &&").column, 10);
        assert_eq!(err("|| has(a)").column, 1);
        assert_eq!(err("!").column, 2);
        assert_eq!(err("has(a) & has(b)").column, 8);
        let e = err(r#"a = "x""#);
        assert_eq!((e.column, e.found.as_str()), (3, "="));
        assert!(e.expected.contains(r#"after label "a""#));
    }

    #[test]
    fn function_errors() {
        assert_eq!(err("has()").column, 5);
        assert_eq!(err("has(a").column, 6);
        assert_eq!(err("has('a')").column, 5);
        assert_eq!(err("all(x)").column, 5);
        assert_eq!(err("global(").column, 8);
        let e = err("foo(a)");
        assert_eq!((e.column, e.found.as_str()), (1, "foo"));
    }

    #[test]
    fn set_errors() {
        assert_eq!(err(r#"a in "x""#).column, 6);
        assert_eq!(err(r#"a in {"x" "y"}"#).column, 11);
        assert_eq!(err(r#"a in {"x",}"#).column, 11);
        assert_eq!(err(r#"a in {"x""#).column, 10);
        assert_eq!(err(r#"a not {"x"}"#).column, 7);
        assert_eq!(err(r#"a starts "x""#).column, 10);
        assert_eq!(err(r#"a ends"#).column, 7);
    }

    #[test]
    fn not_in_spellings() {
        for src in [
            r#"a not in {"x"}"#,
            r#"a not  in {"x"}"#,
            "a not\tin {'x'}",
            "a not\n in {'x'}",
            r#"a notin {"x"}"#,
            r#"a not in{"x"}"#,
        ] {
            assert_eq!(canon(src), r#"a not in {"x"}"#, "{src:?}");
        }
    }

    #[test]
    fn starts_ends_with_spellings_canonicalise() {
        assert_eq!(canon("a startswith 'x'"), r#"a starts with "x""#);
        assert_eq!(canon("a starts   with 'x'"), r#"a starts with "x""#);
        assert_eq!(canon("a endswith \"x\""), r#"a ends with "x""#);
        assert_eq!(canon("a ends\twith \"x\""), r#"a ends with "x""#);
    }

    #[test]
    fn keywords_are_usable_as_labels() {
        assert_eq!(canon(r#"has == "x""#), r#"has == "x""#);
        assert_eq!(canon(r#"in in {"a"}"#), r#"in in {"a"}"#);
        assert_eq!(canon(r#"not not in {"a"}"#), r#"not not in {"a"}"#);
        assert_eq!(
            canon(r#"all != "x" && has(global)"#),
            r#"all != "x" && has(global)"#
        );
        assert_eq!(
            canon(r#"contains contains "x""#),
            r#"contains contains "x""#
        );
    }

    #[test]
    fn whitespace_is_optional_around_punctuation() {
        assert_eq!(
            canon(r#"a=="1"&&!has(b)||c in{'x','y'}"#),
            r#"(a == "1" && !has(b)) || c in {"x", "y"}"#
        );
        assert_eq!(canon(" has( a ) "), "has(a)");
        assert_eq!(canon("all( )"), "all()");
        assert_eq!(canon("global ()"), "global()");
    }

    #[test]
    fn key_length_limit() {
        let ok = "k".repeat(MAX_KEY_LEN);
        assert_eq!(canon(&format!("has({ok})")), format!("has({ok})"));
        let long = "k".repeat(MAX_KEY_LEN + 1);
        let e = err(&format!("has({long})"));
        assert_eq!(e.column, 4 + MAX_KEY_LEN + 1);
        let e = err(&format!("{long} == 'x'"));
        assert_eq!(e.column, MAX_KEY_LEN + 1);
        assert!(e.expected.contains("512"));
    }

    #[test]
    fn nesting_depth_is_bounded() {
        let ok = format!("{}has(a){}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert_eq!(canon(&ok), "has(a)");
        let deep = format!(
            "{}has(a){}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(err(&deep).column, MAX_DEPTH + 1);
        let bangs = format!("{}has(a)", "!".repeat(MAX_DEPTH + 1));
        assert_eq!(err(&bangs).column, MAX_DEPTH + 1);
        // Depth is about nesting, not length: long flat chains are fine.
        let long = vec!["has(a)"; 10 * MAX_DEPTH].join(" && ");
        assert!(parse(&long).is_ok());
        let nots = vec!["!has(a)"; 10 * MAX_DEPTH].join(" || ");
        assert!(parse(&nots).is_ok());
    }

    #[test]
    fn empty_input_is_all() {
        assert_eq!(parse("").unwrap(), Node::All);
        assert_eq!(parse(" \t\n ").unwrap(), Node::All);
    }
}
