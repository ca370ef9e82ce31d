//! Located configuration errors.
//!
//! Every problem found while loading a configuration becomes one
//! [`ConfigError`] carrying the file, the 1-based line and column of the
//! offending YAML node, and the dotted field path (`scrape_configs[0].scrape_timeout`).
//! Loading collects all of them into [`ConfigErrors`] instead of stopping at
//! the first one, so an operator can fix a file in one pass.

use std::fmt;

/// A position in a YAML source, 1-based. `line == 0` means "unknown"
/// (e.g. a problem with the file as a whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

/// One located configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as given to the loader (display form).
    pub file: String,
    pub position: Position,
    /// Dotted field path of the offending field, empty for the document root.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.position.line > 0 {
            write!(f, ":{}", self.position.line)?;
            if self.position.column > 0 {
                write!(f, ":{}", self.position.column)?;
            }
        }
        f.write_str(": ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// All problems found in one load, in source order. Never empty when
/// returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    pub(crate) fn single(error: ConfigError) -> Self {
        ConfigErrors {
            errors: vec![error],
        }
    }

    /// True when any error message contains `needle` (handy in tests and for
    /// callers that map specific failures).
    pub fn contains(&self, needle: &str) -> bool {
        self.errors.iter().any(|e| e.to_string().contains(needle))
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
