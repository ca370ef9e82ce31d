//! `$1` / `${1}` / `${name}` templates with Go's `Regexp.Expand` rules.
//!
//! A template is parsed once, when the rule is built, against the rule's
//! regex: numbered and named references are resolved to group indices, and
//! references to groups that do not exist are dropped (they expand to
//! nothing). Expanding at relabel time is then a walk over literal pieces and
//! group indices.
//!
//! Go's rules, which differ in details from `regex::Captures::expand`:
//! * `$$` is a literal `$`;
//! * a name is the longest run of Unicode letters, decimal digits and `_`
//!   (`$1x` is the group *named* `1x`, which never exists);
//! * `${name}` needs the same characters and a closing brace;
//! * a name of ASCII digits is a group number, unless it has a leading zero
//!   or is too large, in which case it is looked up as a name;
//! * a `$` that starts no valid reference is copied literally.

use std::borrow::Cow;
use std::sync::LazyLock;

use crate::regex::Regex;

/// Go stops parsing a group number once it reaches 1e8.
const MAX_GROUP_NUMBER: usize = 100_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Group(usize),
}

/// A parsed replacement or target-label template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
    /// The full expansion when the template references no group.
    literal: Option<String>,
}

impl Template {
    pub(crate) fn parse(template: &str, regex: &Regex) -> Template {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        while let Some(dollar) = rest.find('$') {
            text.push_str(&rest[..dollar]);
            rest = &rest[dollar + 1..];
            if let Some(after) = rest.strip_prefix('$') {
                text.push('$');
                rest = after;
                continue;
            }
            let Some((reference, after)) = parse_reference(rest) else {
                text.push('$');
                continue;
            };
            rest = after;
            if let Some(index) = resolve(reference, regex) {
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Group(index));
            }
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        let literal = if pieces.iter().all(|p| matches!(p, Piece::Text(_))) {
            Some(
                pieces
                    .iter()
                    .map(|p| match p {
                        Piece::Text(t) => t.as_str(),
                        Piece::Group(_) => "",
                    })
                    .collect(),
            )
        } else {
            None
        };
        Template { pieces, literal }
    }

    /// The expansion, if it does not depend on the match.
    pub(crate) fn literal(&self) -> Option<&str> {
        self.literal.as_deref()
    }

    /// Expands against a match. Borrows when the template is literal.
    pub(crate) fn expand<'s>(&'s self, caps: &regex::Captures<'_>) -> Cow<'s, str> {
        if let Some(lit) = &self.literal {
            return Cow::Borrowed(lit);
        }
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Group(i) => {
                    if let Some(m) = caps.get(*i) {
                        out.push_str(m.as_str());
                    }
                }
            }
        }
        Cow::Owned(out)
    }
}

/// A reference after a `$`: the name and the unparsed rest, or `None` when
/// the `$` starts no valid reference.
fn parse_reference(s: &str) -> Option<(&str, &str)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let name_len = body
        .char_indices()
        .find(|&(_, c)| !is_name_char(c))
        .map_or(body.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, after) = body.split_at(name_len);
    if braced {
        let after = after.strip_prefix('}')?;
        return Some((name, after));
    }
    Some((name, after))
}

/// Go's `unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_'`.
fn is_name_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    static LETTER_OR_DIGIT: LazyLock<Option<regex::Regex>> =
        LazyLock::new(|| regex::Regex::new(r"^[\p{L}\p{Nd}]$").ok());
    match &*LETTER_OR_DIGIT {
        Some(re) => re.is_match(c.encode_utf8(&mut [0; 4])),
        None => c.is_alphabetic(),
    }
}

/// The group index a reference means, or `None` when it names no group.
fn resolve(name: &str, regex: &Regex) -> Option<usize> {
    match group_number(name) {
        Some(n) => (n < regex.compiled().captures_len()).then_some(n),
        None => regex
            .compiled()
            .capture_names()
            .position(|n| n == Some(name)),
    }
}

fn group_number(name: &str) -> Option<usize> {
    if name.len() > 1 && name.starts_with('0') {
        return None;
    }
    let mut n: usize = 0;
    for b in name.bytes() {
        if !b.is_ascii_digit() || n >= MAX_GROUP_NUMBER {
            return None;
        }
        n = n * 10 + usize::from(b - b'0');
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(template: &str, pattern: &str, input: &str) -> String {
        let re = Regex::new(pattern).unwrap_or_else(|e| panic!("{e}"));
        let t = Template::parse(template, &re);
        let caps = re
            .captures(input)
            .unwrap_or_else(|| panic!("{pattern:?} must match {input:?}"));
        t.expand(&caps).into_owned()
    }

    #[test]
    fn go_expand_rules() {
        let p = "(a)(b)(?P<name>c)";
        assert_eq!(expand("$1", p, "abc"), "a");
        assert_eq!(expand("${2}x", p, "abc"), "bx");
        assert_eq!(expand("$1x", p, "abc"), "", "$1x names group '1x'");
        assert_eq!(expand("$name-${name}", p, "abc"), "c-c");
        assert_eq!(expand("$$1", p, "abc"), "$1");
        assert_eq!(expand("$", p, "abc"), "$");
        assert_eq!(expand("${", p, "abc"), "${");
        assert_eq!(expand("${}", p, "abc"), "${}");
        assert_eq!(expand("${1", p, "abc"), "${1");
        assert_eq!(expand("$-", p, "abc"), "$-");
        assert_eq!(expand("$9", p, "abc"), "");
        assert_eq!(expand("$01", p, "abc"), "", "leading zero is a name");
        assert_eq!(expand("$0", p, "abc"), "abc");
        assert_eq!(expand("$99999999999999999999", p, "abc"), "");
        assert_eq!(expand("${1}${3}", p, "abc"), "ac");
        assert_eq!(expand("plain", p, "abc"), "plain");
        assert_eq!(
            expand("$é", p, "abc"),
            "",
            "unicode letters continue a name"
        );
    }

    #[test]
    fn unmatched_optional_group_is_empty() {
        assert_eq!(expand("[$1][$2]", "(a)|(b)", "b"), "[][b]");
    }

    #[test]
    fn literal_detection() {
        let re = Regex::default();
        assert_eq!(Template::parse("prod", &re).literal(), Some("prod"));
        assert_eq!(Template::parse("a$$b", &re).literal(), Some("a$b"));
        assert_eq!(Template::parse("x$2", &re).literal(), Some("x"));
        assert_eq!(Template::parse("$1", &re).literal(), None);
    }
}
