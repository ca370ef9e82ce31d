//! Go RE2 regular expressions on top of the `regex` crate.
//!
//! Prometheus compiles every relabel regex as `^(?s:<pattern>)$` with Go's
//! `regexp` package. The `regex` crate implements nearly the same syntax and
//! the same leftmost-first match semantics, but a few constructs mean
//! something different, so the pattern is parsed with `regex-syntax` and
//! rewritten before compiling:
//!
//! * `\d \w \s \b` (and their negations) are ASCII-only in Go but
//!   Unicode-aware in Rust. They are replaced by explicit ASCII classes
//!   (`\s` becomes `[\t\n\f\r ]`: Go's `\s` has no vertical tab) and by
//!   `(?-u:\b)`. Explicit classes rather than `(?-u:…)` keep `(?i)` folding
//!   identical to Go (`(?i)\w` matches the Kelvin sign in both).
//! * `\<` and `\>` are word-boundary assertions in Rust but escaped
//!   literals in Go.
//! * Octal escapes (`\123`) exist in Go and are enabled here too.
//!
//! Constructs that only Rust accepts (class set operations, nested classes,
//! the `x`/`u`/`R` flags, `\u` escapes, repeat counts above 1000, capture
//! names with `.`/`[`/`]`) are rejected instead of silently matching
//! differently from Prometheus.
//!
//! The rewrite works on byte spans of the original pattern: the AST is only
//! used to find what to replace, so every other character reaches the
//! `regex` crate exactly as written.

use std::fmt;

use regex_syntax::ast::{
    self, Assertion, AssertionKind, Ast, ClassPerl, ClassPerlKind, ClassSetBinaryOp, ClassSetItem,
    Flag, FlagsItemKind, GroupKind, HexLiteralKind, LiteralKind, RepetitionKind, RepetitionRange,
};

/// Go's maximum repeat count (`regexp/syntax` rejects `a{1001}`).
const MAX_REPEAT: u32 = 1000;

/// Why a pattern could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("error parsing regexp {pattern:?}: {reason}")]
pub struct RegexError {
    /// The pattern as the user wrote it.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A fully anchored regular expression with Go RE2 semantics, as used by
/// relabel rules. Cloning is cheap (the compiled program is shared).
#[derive(Clone)]
pub struct Regex {
    pattern: String,
    compiled: regex::Regex,
}

impl Regex {
    /// The pattern Prometheus uses when a rule sets no `regex`.
    pub const DEFAULT_PATTERN: &'static str = "(.*)";

    /// Compiles `pattern` anchored at both ends with `.` matching newlines,
    /// i.e. Go's `regexp.Compile("^(?s:" + pattern + ")$")`.
    pub fn new(pattern: &str) -> Result<Regex, RegexError> {
        let translated = translate(pattern).map_err(|reason| RegexError {
            pattern: pattern.to_owned(),
            reason,
        })?;
        let compiled = regex::RegexBuilder::new(&format!("^(?s:{translated})$"))
            .octal(true)
            .build()
            .map_err(|e| RegexError {
                pattern: pattern.to_owned(),
                reason: one_line(&e.to_string()),
            })?;
        Ok(Regex {
            pattern: pattern.to_owned(),
            compiled,
        })
    }

    /// The pattern as written, without the implicit anchors.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the whole of `haystack` matches.
    pub fn is_match(&self, haystack: &str) -> bool {
        self.compiled.is_match(haystack)
    }

    /// Capture groups of a whole-string match, if any.
    pub fn captures<'h>(&self, haystack: &'h str) -> Option<regex::Captures<'h>> {
        self.compiled.captures(haystack)
    }

    /// The compiled (anchored, translated) regex.
    pub fn compiled(&self) -> &regex::Regex {
        &self.compiled
    }

    /// True for the default `(.*)` pattern, which matches every value.
    pub fn is_default_pattern(&self) -> bool {
        self.pattern == Self::DEFAULT_PATTERN
    }
}

impl Default for Regex {
    fn default() -> Self {
        match Regex::new(Self::DEFAULT_PATTERN) {
            Ok(re) => re,
            // A constant, valid pattern: compiling it cannot fail.
            Err(e) => unreachable!("default relabel regex failed to compile: {e}"),
        }
    }
}

impl PartialEq for Regex {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

impl Eq for Regex {}

impl fmt::Debug for Regex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Regex").field(&self.pattern).finish()
    }
}

impl fmt::Display for Regex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// The `regex` crate's errors are multi-line diagrams; config errors are
/// reported on one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or(message)
        .to_owned()
}

/// Rewrites a Go pattern into an equivalent `regex`-crate pattern.
fn translate(pattern: &str) -> Result<String, String> {
    let parsed = ast::parse::ParserBuilder::new()
        .octal(true)
        .build()
        .parse(pattern)
        .map_err(|e| e.kind().to_string())?;
    let edits = ast::visit(&parsed, Translator::default())?;
    Ok(apply_edits(pattern, edits))
}

/// Splices replacements into `pattern`. Edits never overlap (they replace
/// leaf nodes), so sorting by start offset is enough.
fn apply_edits(pattern: &str, mut edits: Vec<Edit>) -> String {
    if edits.is_empty() {
        return pattern.to_owned();
    }
    edits.sort_by_key(|e| e.start);
    let mut out = String::with_capacity(pattern.len() + 16 * edits.len());
    let mut pos = 0;
    for edit in edits {
        out.push_str(pattern.get(pos..edit.start).unwrap_or_default());
        out.push_str(edit.replacement);
        pos = edit.end;
    }
    out.push_str(pattern.get(pos..).unwrap_or_default());
    out
}

struct Edit {
    start: usize,
    end: usize,
    replacement: &'static str,
}

#[derive(Default)]
struct Translator {
    edits: Vec<Edit>,
}

impl Translator {
    fn replace(&mut self, span: &ast::Span, replacement: &'static str) {
        self.edits.push(Edit {
            start: span.start.offset,
            end: span.end.offset,
            replacement,
        });
    }

    fn perl_class(&mut self, class: &ClassPerl, inside_brackets: bool) {
        let replacement = match (class.kind.clone(), class.negated, inside_brackets) {
            (ClassPerlKind::Digit, false, false) => "[0-9]",
            (ClassPerlKind::Digit, true, _) => "[^0-9]",
            (ClassPerlKind::Digit, false, true) => "0-9",
            (ClassPerlKind::Word, false, false) => "[0-9A-Za-z_]",
            (ClassPerlKind::Word, true, _) => "[^0-9A-Za-z_]",
            (ClassPerlKind::Word, false, true) => "0-9A-Za-z_",
            (ClassPerlKind::Space, false, false) => r"[\t\n\f\r ]",
            (ClassPerlKind::Space, true, _) => r"[^\t\n\f\r ]",
            (ClassPerlKind::Space, false, true) => r"\t\n\f\r ",
        };
        self.replace(&class.span, replacement);
    }

    fn assertion(&mut self, assertion: &Assertion) {
        let replacement = match assertion.kind {
            AssertionKind::WordBoundary => r"(?-u:\b)",
            AssertionKind::NotWordBoundary => r"(?-u:\B)",
            // Go reads `\b{start}` as `\b` followed by the literal text.
            AssertionKind::WordBoundaryStart => r"(?-u:\b)\{start\}",
            AssertionKind::WordBoundaryEnd => r"(?-u:\b)\{end\}",
            AssertionKind::WordBoundaryStartHalf => r"(?-u:\b)\{start-half\}",
            AssertionKind::WordBoundaryEndHalf => r"(?-u:\b)\{end-half\}",
            // Go treats `\<` and `\>` as escaped punctuation.
            AssertionKind::WordBoundaryStartAngle => "<",
            AssertionKind::WordBoundaryEndAngle => ">",
            AssertionKind::StartLine
            | AssertionKind::EndLine
            | AssertionKind::StartText
            | AssertionKind::EndText => return,
        };
        self.replace(&assertion.span, replacement);
    }
}

fn check_flags(flags: &ast::Flags) -> Result<(), String> {
    for item in &flags.items {
        if let FlagsItemKind::Flag(flag) = item.kind {
            match flag {
                Flag::CaseInsensitive
                | Flag::MultiLine
                | Flag::DotMatchesNewLine
                | Flag::SwapGreed => {}
                Flag::Unicode | Flag::CRLF | Flag::IgnoreWhitespace => {
                    return Err(
                        "invalid or unsupported Perl syntax: flag not supported by RE2".into(),
                    )
                }
            }
        }
    }
    Ok(())
}

fn check_literal(literal: &ast::Literal) -> Result<(), String> {
    match literal.kind {
        LiteralKind::HexFixed(HexLiteralKind::UnicodeShort | HexLiteralKind::UnicodeLong)
        | LiteralKind::HexBrace(HexLiteralKind::UnicodeShort | HexLiteralKind::UnicodeLong) => {
            Err("invalid escape sequence: \\u and \\U are not RE2 syntax".into())
        }
        _ => Ok(()),
    }
}

fn check_capture_name(name: &str) -> Result<(), String> {
    if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!("invalid named capture: {name:?}"))
    }
}

fn check_repetition(kind: &RepetitionKind) -> Result<(), String> {
    let too_large = match kind {
        RepetitionKind::Range(RepetitionRange::Exactly(n) | RepetitionRange::AtLeast(n)) => {
            *n > MAX_REPEAT
        }
        RepetitionKind::Range(RepetitionRange::Bounded(lo, hi)) => {
            *lo > MAX_REPEAT || *hi > MAX_REPEAT
        }
        _ => false,
    };
    if too_large {
        Err("invalid repeat count".into())
    } else {
        Ok(())
    }
}

impl ast::Visitor for Translator {
    type Output = Vec<Edit>;
    type Err = String;

    fn finish(self) -> Result<Vec<Edit>, String> {
        Ok(self.edits)
    }

    fn visit_pre(&mut self, node: &Ast) -> Result<(), String> {
        match node {
            Ast::ClassPerl(class) => self.perl_class(class, false),
            Ast::Assertion(assertion) => self.assertion(assertion),
            Ast::Flags(set) => check_flags(&set.flags)?,
            Ast::Literal(literal) => check_literal(literal)?,
            Ast::Repetition(rep) => check_repetition(&rep.op.kind)?,
            Ast::Group(group) => match &group.kind {
                GroupKind::NonCapturing(flags) => check_flags(flags)?,
                GroupKind::CaptureName { name, .. } => check_capture_name(&name.name)?,
                GroupKind::CaptureIndex(_) => {}
            },
            _ => {}
        }
        Ok(())
    }

    fn visit_class_set_item_pre(&mut self, item: &ClassSetItem) -> Result<(), String> {
        match item {
            ClassSetItem::Perl(class) => self.perl_class(class, true),
            ClassSetItem::Literal(literal) => check_literal(literal)?,
            ClassSetItem::Range(range) => {
                check_literal(&range.start)?;
                check_literal(&range.end)?;
            }
            // In Go a `[` inside a class is a literal; Rust reads a nested
            // class. Refuse rather than match something else.
            ClassSetItem::Bracketed(_) => {
                return Err(
                    "nested character classes are not RE2 syntax (escape '[' as '\\[')".into(),
                )
            }
            _ => {}
        }
        Ok(())
    }

    fn visit_class_set_binary_op_pre(&mut self, _op: &ClassSetBinaryOp) -> Result<(), String> {
        Err("class set operations (&&, --, ~~) are not RE2 syntax".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(p: &str) -> Regex {
        match Regex::new(p) {
            Ok(r) => r,
            Err(e) => panic!("{p:?} should compile: {e}"),
        }
    }

    #[test]
    fn fully_anchored_and_dot_matches_newline() {
        assert!(!re("f|o").is_match("foo"));
        assert!(re("f.*").is_match("foo"));
        assert!(re("line1.*line2").is_match("line1\nline2"));
        assert!(re("").is_match(""));
        assert!(!re("").is_match("a"));
        assert!(re("^metrics$").is_match("metrics"));
    }

    #[test]
    fn perl_classes_are_ascii_only() {
        assert!(re(r"\d").is_match("3"));
        assert!(!re(r"\d").is_match("٣"));
        assert!(re(r"\D").is_match("٣"));
        assert!(!re(r"\w").is_match("é"));
        assert!(re(r"\W").is_match("é"));
        assert!(re(r"\w+").is_match("a_Z9"));
        assert!(!re(r"\s").is_match("\u{2003}"));
        assert!(re(r"\S").is_match("\u{2003}"));
        // Go's \s has no vertical tab.
        assert!(!re(r"\s").is_match("\u{0B}"));
        assert!(re(r"\s").is_match("\t"));
        assert!(re(r"[\d]+").is_match("42"));
        assert!(!re(r"[\d]").is_match("٣"));
        assert!(re(r"[^\d]").is_match("٣"));
        assert!(re(r"[\D]").is_match("٣"));
        assert!(!re(r"[\D]").is_match("4"));
        assert!(re(r"[a\s]+").is_match("a a"));
        assert!(!re(r"[\w]").is_match("é"));
    }

    #[test]
    fn case_folding_matches_go() {
        // Go folds the ASCII class under (?i), so the Kelvin sign matches.
        assert!(re(r"(?i)\w").is_match("\u{212A}"));
        assert!(re(r"(?i)foo").is_match("FoO"));
    }

    #[test]
    fn word_boundary_is_ascii() {
        assert!(re(r".*\bfoo\b.*").is_match("a foo b"));
        // 'é' is not a word character in Go, so there is a boundary.
        assert!(re(r".*é\bfoo").is_match("éfoo"));
        assert!(re(r"a\Bb").is_match("ab"));
    }

    #[test]
    fn angle_escapes_are_literals() {
        assert!(re(r"\<a\>").is_match("<a>"));
    }

    #[test]
    fn octal_escapes_work() {
        assert!(re(r"\101").is_match("A"));
    }

    #[test]
    fn rust_only_syntax_is_rejected() {
        for p in [
            r"[a&&b]",
            r"[a[b]]",
            r"(?x)a",
            r"(?u)a",
            r"\u0041",
            r"a{1001}",
            r"(?P<a.b>x)",
        ] {
            assert!(Regex::new(p).is_err(), "{p:?} must be rejected");
        }
        assert!(Regex::new("a{1000}").is_ok());
    }

    #[test]
    fn errors_name_the_pattern() {
        let err = match Regex::new("(abc") {
            Err(e) => e,
            Ok(_) => panic!("unclosed group must fail"),
        };
        assert_eq!(err.pattern, "(abc");
        assert!(err
            .to_string()
            .starts_with("error parsing regexp \"(abc\": "));
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn keeps_original_pattern() {
        let r = re(r"\d+");
        assert_eq!(r.as_str(), r"\d+");
        assert_eq!(r.to_string(), r"\d+");
        assert!(Regex::default().is_default_pattern());
        assert!(Regex::default().is_match("anything\nat all"));
    }

    #[test]
    fn go_punctuation_escapes_compile() {
        // Go accepts an escaped ASCII non-word character as itself.
        for c in "_/-:@# %='~`,!&".chars() {
            let pattern = format!("\\{c}");
            match Regex::new(&pattern) {
                Ok(re) => assert!(re.is_match(&c.to_string()), "{pattern:?} must match {c:?}"),
                Err(e) => panic!("{pattern:?}: {e}"),
            }
        }
    }
}
