//! Tokeniser for selector text.
//!
//! The lexer is deliberately context-free: every run of label characters becomes a `Word`,
//! whether it is later used as a label key (`app`), a function name (`has`) or an operator
//! keyword (`in`, `not`, `contains`, `starts`, `with`, ...). Only the parser knows which role a
//! word plays at a given position, so a label may legitimately be called `in` or `has`.
//!
//! Tokens are produced lazily (one token of look-ahead) so that an error is always reported
//! at the first problem in the text, not at some later unterminated string.

use super::error::ParseError;

/// Longest label key the language allows.
pub(crate) const MAX_KEY_LEN: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenKind<'a> {
    /// A run of `[a-zA-Z0-9_./-]`: a label key or a keyword, decided by the parser.
    Word(&'a str),
    /// A quoted string literal; the payload excludes the quotes.
    Str(&'a str),
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    EqEq,
    NotEq,
    Bang,
    AndAnd,
    OrOr,
    /// A character that starts no token (including a lone `=`, `&` or `|`). It is handed to
    /// the parser rather than rejected here so the error can say what was expected instead.
    Invalid,
    Eof,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Token<'a> {
    pub kind: TokenKind<'a>,
    /// Byte offsets of the token's source text.
    pub start: usize,
    pub end: usize,
}

pub(crate) fn is_label_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'-')
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

pub(crate) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    peeked: Option<Token<'a>>,
}

impl<'a> Lexer<'a> {
    pub fn new(src: &'a str) -> Self {
        Lexer {
            src,
            pos: 0,
            peeked: None,
        }
    }

    pub fn src(&self) -> &'a str {
        self.src
    }

    /// The source text of a token (what an error message shows as "found").
    pub fn text(&self, tok: Token<'a>) -> &'a str {
        &self.src[tok.start..tok.end]
    }

    pub fn peek(&mut self) -> Result<Token<'a>, ParseError> {
        if let Some(t) = self.peeked {
            return Ok(t);
        }
        let t = self.scan()?;
        self.peeked = Some(t);
        Ok(t)
    }

    pub fn next_token(&mut self) -> Result<Token<'a>, ParseError> {
        let t = self.peek()?;
        self.peeked = None;
        Ok(t)
    }

    fn scan(&mut self) -> Result<Token<'a>, ParseError> {
        let bytes = self.src.as_bytes();
        while self.pos < bytes.len() && is_space(bytes[self.pos]) {
            self.pos += 1;
        }
        let start = self.pos;
        let Some(&c) = bytes.get(start) else {
            return Ok(Token {
                kind: TokenKind::Eof,
                start,
                end: start,
            });
        };
        let next = bytes.get(start + 1).copied();
        let (kind, len) = match c {
            b'(' => (TokenKind::LParen, 1),
            b')' => (TokenKind::RParen, 1),
            b'{' => (TokenKind::LBrace, 1),
            b'}' => (TokenKind::RBrace, 1),
            b',' => (TokenKind::Comma, 1),
            b'=' if next == Some(b'=') => (TokenKind::EqEq, 2),
            b'!' if next == Some(b'=') => (TokenKind::NotEq, 2),
            b'!' => (TokenKind::Bang, 1),
            b'&' if next == Some(b'&') => (TokenKind::AndAnd, 2),
            b'|' if next == Some(b'|') => (TokenKind::OrOr, 2),
            b'"' | b'\'' => {
                // No escapes: the literal runs to the next matching quote. Quotes are ASCII, so
                // byte search is safe in UTF-8 text.
                let Some(len) = bytes[start + 1..].iter().position(|&b| b == c) else {
                    return Err(ParseError::new(
                        self.src,
                        start,
                        format!("a closing {} to end this string literal", c as char),
                        &self.src[start..],
                    ));
                };
                let body = &self.src[start + 1..start + 1 + len];
                (TokenKind::Str(body), len + 2)
            }
            c if is_label_char(c) => {
                let len = bytes[start..]
                    .iter()
                    .position(|&b| !is_label_char(b))
                    .unwrap_or(bytes.len() - start);
                (TokenKind::Word(&self.src[start..start + len]), len)
            }
            _ => {
                // Span one whole (possibly multi-byte) character.
                let len = self.src[start..].chars().next().map_or(1, char::len_utf8);
                (TokenKind::Invalid, len)
            }
        };
        self.pos = start + len;
        Ok(Token {
            kind,
            start,
            end: self.pos,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::TokenKind::*;
    use super::*;

    fn kinds(src: &str) -> Vec<TokenKind<'_>> {
        let mut lx = Lexer::new(src);
        let mut out = Vec::new();
        loop {
            let t = lx.next_token().unwrap();
            out.push(t.kind);
            if t.kind == Eof {
                return out;
            }
        }
    }

    #[test]
    fn tokenises_every_punctuation() {
        assert_eq!(
            kinds("( ) { } , == != ! && ||"),
            vec![LParen, RParen, LBrace, RBrace, Comma, EqEq, NotEq, Bang, AndAnd, OrOr, Eof]
        );
    }

    #[test]
    fn words_include_dots_slashes_dashes() {
        assert_eq!(
            kinds("projectcalico.org/namespace==sg.projectcalico.org/openstack-a_b"),
            vec![
                Word("projectcalico.org/namespace"),
                EqEq,
                Word("sg.projectcalico.org/openstack-a_b"),
                Eof
            ]
        );
    }

    #[test]
    fn both_quote_styles_without_escapes() {
        assert_eq!(
            kinds(r#""a'b" 'c"d' """#),
            vec![Str("a'b"), Str("c\"d"), Str(""), Eof]
        );
    }

    #[test]
    fn whitespace_includes_tabs_and_newlines() {
        assert_eq!(kinds(" \t\r\na\n"), vec![Word("a"), Eof]);
    }

    #[test]
    fn lone_operator_characters_are_invalid_tokens() {
        assert_eq!(
            kinds("= & | @"),
            vec![Invalid, Invalid, Invalid, Invalid, Eof]
        );
        let mut lx = Lexer::new("é");
        let t = lx.next_token().unwrap();
        assert_eq!((t.kind, lx.text(t)), (Invalid, "é"));
    }

    #[test]
    fn unterminated_string_reports_opening_quote() {
        let mut lx = Lexer::new("a == 'abc");
        lx.next_token().unwrap();
        lx.next_token().unwrap();
        let e = lx.next_token().unwrap_err();
        assert_eq!(e.column, 6);
        assert_eq!(e.found, "'abc");
    }

    #[test]
    fn spans_cover_source_text() {
        let mut lx = Lexer::new("  ab != 'x'");
        let t = lx.next_token().unwrap();
        assert_eq!((t.start, t.end), (2, 4));
        let t = lx.next_token().unwrap();
        assert_eq!(lx.text(t), "!=");
        let t = lx.next_token().unwrap();
        assert_eq!(lx.text(t), "'x'");
    }
}
