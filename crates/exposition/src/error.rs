//! Error types of the crate.

use std::fmt;

/// A syntax or semantic error in an exposition body, located by 1-based
/// line and column (the column counts bytes from the start of the line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {}, column {}",
            self.message, self.line, self.column
        )
    }
}

impl std::error::Error for ParseError {}

/// Why a scrape response's `Content-Type` does not select a parser.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsupportedContentType {
    #[error("non-compliant scrape target sending blank Content-Type")]
    Empty,
    #[error("cannot parse Content-Type {content_type:?}: {reason}")]
    Malformed {
        content_type: String,
        reason: &'static str,
    },
    #[error("received unsupported Content-Type {0:?}")]
    Unknown(String),
}
