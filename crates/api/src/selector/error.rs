//! The parse error type shared by the lexer and the parser.

use std::fmt;

/// Longest `found` snippet we keep; a 512-character label or a long literal would otherwise
/// swamp the message (and the structured field) without helping the reader.
const MAX_FOUND_CHARS: usize = 40;

/// Why a selector failed to parse, and where.
///
/// `column` is the 1-based position, counted in characters from the start of the selector
/// text (newlines are ordinary characters), of the offending character. `expected` describes
/// what the parser wanted there, including any context such as `after label "app"`. `found`
/// is the offending source text (truncated to a short snippet), or empty at end of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub column: usize,
    pub expected: String,
    pub found: String,
}

impl ParseError {
    /// Builds an error for the token starting at byte offset `at` of `src`.
    pub(crate) fn new(src: &str, at: usize, expected: impl Into<String>, found: &str) -> Self {
        let column = src[..at].chars().count() + 1;
        let found = match found.char_indices().nth(MAX_FOUND_CHARS) {
            Some((cut, _)) => format!("{}...", &found[..cut]),
            None => found.to_owned(),
        };
        ParseError {
            column,
            expected: expected.into(),
            found,
        }
    }

    /// True if the parser ran out of input (e.g. a missing `)` or operand).
    pub fn at_end_of_input(&self) -> bool {
        self.found.is_empty()
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "expected {} at column {}, found ",
            self.expected, self.column
        )?;
        if self.found.is_empty() {
            f.write_str("end of input")
        } else if self.found.contains('"') {
            // Quote the snippet the way the language itself would.
            write!(f, "'{}'", self.found)
        } else {
            write!(f, "\"{}\"", self.found)
        }
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_counts_characters_not_bytes() {
        let src = "a == \"é\" x";
        let at = src.find('x').unwrap();
        let e = ParseError::new(src, at, "something", "x");
        assert_eq!(e.column, 10);
    }

    #[test]
    fn display_quotes_found_snippet() {
        let e = ParseError::new("ab", 1, "\"==\"", "b");
        assert_eq!(e.to_string(), "expected \"==\" at column 2, found \"b\"");
        let e = ParseError::new("a \"x\"", 2, "\"==\"", "\"x\"");
        assert_eq!(e.to_string(), "expected \"==\" at column 3, found '\"x\"'");
        let e = ParseError::new("a", 1, "\"==\"", "");
        assert!(e.at_end_of_input());
        assert_eq!(
            e.to_string(),
            "expected \"==\" at column 2, found end of input"
        );
    }

    #[test]
    fn long_found_is_truncated() {
        let long = "x".repeat(600);
        let e = ParseError::new(&long, 0, "y", &long);
        assert_eq!(e.found, format!("{}...", "x".repeat(MAX_FOUND_CHARS)));
    }
}
