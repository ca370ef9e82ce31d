//! Byte-level scanning shared by both formats: identifiers, quoted strings,
//! label blocks and unescaping.
//!
//! Everything here works on one line (the parser splits on `\n` first) and
//! returns borrowed, still-escaped slices; unescaping happens only when a
//! caller asks for labels, so the cache-hit path never copies.

use std::borrow::Cow;

/// Quoted strings up to this length are scanned byte by byte.
const SHORT_QUOTED: usize = 24;

/// A scanning failure: byte offset in the line and a static description.
pub(crate) type ScanError = (usize, &'static str);

/// Character classes of legacy names, one table lookup per byte on the
/// hot path instead of a chain of range comparisons.
const LABEL_START: u8 = 1;
const LABEL_CHAR: u8 = 2;
const METRIC_START: u8 = 4;
const METRIC_CHAR: u8 = 8;

const fn name_classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let alpha = c.is_ascii_alphabetic() || c == b'_';
        let digit = c.is_ascii_digit();
        let mut class = 0;
        if alpha {
            class |= LABEL_START | LABEL_CHAR | METRIC_START | METRIC_CHAR;
        }
        if digit {
            class |= LABEL_CHAR | METRIC_CHAR;
        }
        if c == b':' {
            class |= METRIC_START | METRIC_CHAR;
        }
        table[b] = class;
        b += 1;
    }
    table
}

static NAME_CLASSES: [u8; 256] = name_classes();

/// Bytes a label value may hold on the fast path: ASCII except `"` (the
/// end), `\\` (an escape) and `\n` (the end of the line, when scanning a
/// whole body rather than one line).
const fn plain_value_bytes() -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 128 {
        table[b] = !matches!(b as u8, b'"' | b'\\' | b'\n');
        b += 1;
    }
    table
}

static PLAIN_VALUE_BYTES: [bool; 256] = plain_value_bytes();

fn is_plain_value_byte(b: u8) -> bool {
    PLAIN_VALUE_BYTES[usize::from(b)]
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `x` equal to `b`, exact for the lowest
/// such byte (a borrow can only flag bytes above a true match).
fn bytes_equal(x: u64, b: u8) -> u64 {
    let y = x ^ (ONES * u64::from(b));
    y.wrapping_sub(ONES) & !y & HIGHS
}

/// The index of the first byte at or after `i` that is not a plain value
/// byte (see [`plain_value_bytes`]), or `line.len()`. Label values are
/// most of a page's bytes (pod names, container ids, mount points), so
/// this looks at eight at a time (SWAR): 17 % fewer instructions to parse
/// a farm page than with a table lookup per byte (callgrind,
/// `benches/parse.rs`).
fn plain_value_end(line: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = line.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let special =
            (x & HIGHS) | bytes_equal(x, b'"') | bytes_equal(x, b'\\') | bytes_equal(x, b'\n');
        if special != 0 {
            return i + (special.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while line.get(i).is_some_and(|&b| is_plain_value_byte(b)) {
        i += 1;
    }
    i
}

fn has_class(b: u8, class: u8) -> bool {
    NAME_CLASSES[usize::from(b)] & class != 0
}

pub(crate) fn is_metric_name_start(b: u8) -> bool {
    has_class(b, METRIC_START)
}

fn is_metric_name_char(b: u8) -> bool {
    has_class(b, METRIC_CHAR)
}

fn is_label_name_start(b: u8) -> bool {
    has_class(b, LABEL_START)
}

fn is_label_name_char(b: u8) -> bool {
    has_class(b, LABEL_CHAR)
}

/// Length of the legacy metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) at `s`.
pub(crate) fn metric_name_len(s: &[u8]) -> usize {
    match s.first() {
        Some(&b) if is_metric_name_start(b) => {
            1 + s[1..]
                .iter()
                .take_while(|&&b| is_metric_name_char(b))
                .count()
        }
        _ => 0,
    }
}

fn label_name_len(s: &[u8]) -> usize {
    match s.first() {
        Some(&b) if is_label_name_start(b) => {
            1 + s[1..]
                .iter()
                .take_while(|&&b| is_label_name_char(b))
                .count()
        }
        _ => 0,
    }
}

/// Scans a double-quoted string starting at `line[start] == '"'`. Returns the
/// offset just past the closing quote. A backslash escapes any next byte
/// (which escapes are meaningful is decided when unescaping).
pub(crate) fn quoted_end(line: &[u8], start: usize) -> Result<usize, ScanError> {
    let mut i = start + 1;
    // Most label values are short: a plain byte loop beats setting up a
    // vectorised search for them. Longer ones fall through to memchr.
    let short = line.get(i..).unwrap_or_default().iter().take(SHORT_QUOTED);
    for &b in short {
        match b {
            b'"' => return Ok(i + 1),
            b'\\' => break,
            _ => i += 1,
        }
    }
    loop {
        match memchr::memchr2(b'"', b'\\', line.get(i..).unwrap_or_default()) {
            None => return Err((line.len(), "unterminated quoted string")),
            Some(off) => {
                i += off;
                if line.get(i) == Some(&b'"') {
                    return Ok(i + 1);
                }
                if i + 1 >= line.len() {
                    return Err((line.len(), "unterminated quoted string"));
                }
                i += 2;
            }
        }
    }
}

/// Unescapes a label value or quoted name: `\\`, `\"` and `\n` are
/// replaced; any other backslash sequence is kept verbatim (Prometheus's
/// replacer semantics). Borrows when there is nothing to replace.
pub(crate) fn unescape_label(raw: &[u8]) -> Cow<'_, str> {
    unescape(raw, true)
}

/// Unescapes HELP text. The Prometheus text format knows `\\` and `\n`;
/// OpenMetrics additionally `\"`.
pub(crate) fn unescape_help(raw: &[u8], with_quote: bool) -> Cow<'_, str> {
    unescape(raw, with_quote)
}

fn unescape(raw: &[u8], with_quote: bool) -> Cow<'_, str> {
    // Callers only pass slices already checked to be UTF-8; the lossy
    // conversion is only a fallback, `from_utf8` is much faster on the
    // (typically ASCII) valid input.
    let text = match std::str::from_utf8(raw) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(raw),
    };
    if memchr::memchr(b'\\', raw).is_none() {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if with_quote => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// A name found by [`scan_name`]: (raw name without quotes, consumed
/// length, whether it was quoted).
pub(crate) type ScannedName<'a> = (&'a [u8], usize, bool);

/// A name at the start of `s`: either a legacy identifier or a quoted
/// UTF-8 string.
pub(crate) fn scan_name(
    s: &[u8],
    legacy_len: fn(&[u8]) -> usize,
) -> Result<Option<ScannedName<'_>>, ScanError> {
    if s.first() == Some(&b'"') {
        let end = quoted_end(s, 0)?;
        let inner = &s[1..end - 1];
        if inner.is_empty() {
            return Err((0, "empty quoted name"));
        }
        if std::str::from_utf8(inner).is_err() {
            return Err((0, "invalid UTF-8 in quoted name"));
        }
        return Ok(Some((inner, end, true)));
    }
    let n = legacy_len(s);
    if n == 0 {
        return Ok(None);
    }
    Ok(Some((&s[..n], n, false)))
}

/// Fast path for the common shape of a lenient (Prometheus text) label
/// block, starting just after `{`: legacy label names, `="`, values of
/// ASCII bytes other than `"`, `\\` and `\n`, single commas between pairs (a
/// trailing one allowed), no blanks. Returns the offset just past `}`.
///
/// `None` means the block has something else (blanks, quoted names,
/// escapes, non-ASCII values, more than `max_labels` pairs, an error): the
/// caller then runs [`LabelScanner`] over it, so what is accepted or
/// rejected, and with which message, never depends on this function.
pub(crate) fn simple_label_block(line: &[u8], mut i: usize, max_labels: usize) -> Option<usize> {
    let mut count = 0usize;
    loop {
        let b = *line.get(i)?;
        if b == b'}' {
            return Some(i + 1);
        }
        if !is_label_name_start(b) {
            return None;
        }
        i += 1;
        while is_label_name_char(*line.get(i)?) {
            i += 1;
        }
        if line.get(i..i + 2)? != b"=\"" {
            return None;
        }
        i += 2;
        i = plain_value_end(line, i);
        if line.get(i) != Some(&b'"') {
            return None;
        }
        i += 1;
        count += 1;
        if count > max_labels {
            return None;
        }
        match *line.get(i)? {
            b',' => i += 1,
            b'}' => return Some(i + 1),
            _ => return None,
        }
    }
}

/// One item of a label block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LabelItem<'a> {
    /// A bare quoted string: the metric name in the UTF-8 syntax.
    MetricName(&'a [u8]),
    /// A `name="value"` pair, both still escaped.
    Pair { name: &'a [u8], value: &'a [u8] },
}

/// Iterates the label block of one line, starting just after `{`.
///
/// Lenient mode follows Prometheus's text parser (whitespace anywhere,
/// optional commas, trailing comma); strict mode follows OpenMetrics (no
/// whitespace, exactly one comma between items, no trailing comma).
#[derive(Clone)]
pub(crate) struct LabelScanner<'a> {
    line: &'a [u8],
    pub(crate) pos: usize,
    strict: bool,
    after_comma: bool,
    done: bool,
}

impl<'a> LabelScanner<'a> {
    pub(crate) fn new(line: &'a [u8], after_brace: usize, strict: bool) -> Self {
        LabelScanner {
            line,
            pos: after_brace,
            strict,
            after_comma: false,
            done: false,
        }
    }

    fn skip_ws(&mut self) {
        if !self.strict {
            while matches!(self.line.get(self.pos), Some(b' ' | b'\t')) {
                self.pos += 1;
            }
        }
    }

    /// The next item, `Ok(None)` after the closing brace (then `pos` is
    /// just past it).
    pub(crate) fn next_item(&mut self) -> Result<Option<LabelItem<'a>>, ScanError> {
        if self.done {
            return Ok(None);
        }
        self.skip_ws();
        let rest = self.line.get(self.pos..).unwrap_or_default();
        if rest.first() == Some(&b'}') {
            if self.strict && self.after_comma {
                return Err((self.pos, "unexpected '}' after ','"));
            }
            self.pos += 1;
            self.done = true;
            return Ok(None);
        }
        let (name, len, quoted) = match scan_name(rest, label_name_len) {
            Ok(Some(found)) => found,
            Ok(None) => return Err((self.pos, "expected label name")),
            Err((off, msg)) => return Err((self.pos + off, msg)),
        };
        self.pos += len;
        self.skip_ws();
        let next = self.line.get(self.pos).copied();
        if quoted && matches!(next, Some(b',' | b'}')) {
            self.after_separator();
            return Ok(Some(LabelItem::MetricName(name)));
        }
        if next != Some(b'=') {
            return Err((self.pos, "expected '=' after label name"));
        }
        self.pos += 1;
        self.skip_ws();
        if self.line.get(self.pos) != Some(&b'"') {
            return Err((self.pos, "expected quoted label value"));
        }
        let end = quoted_end(self.line, self.pos)?;
        let value = &self.line[self.pos + 1..end - 1];
        if !value.is_ascii() && std::str::from_utf8(value).is_err() {
            return Err((self.pos, "invalid UTF-8 label value"));
        }
        self.pos = end;
        self.skip_ws();
        if self.strict && !matches!(self.line.get(self.pos), Some(b',' | b'}')) {
            return Err((self.pos, "expected ',' or '}' after label value"));
        }
        self.after_separator();
        Ok(Some(LabelItem::Pair { name, value }))
    }

    /// Consumes one optional comma after an item.
    fn after_separator(&mut self) {
        self.after_comma = false;
        if self.line.get(self.pos) == Some(&b',') {
            self.pos += 1;
            self.after_comma = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(block: &str, strict: bool) -> Result<Vec<LabelItem<'_>>, ScanError> {
        let mut s = LabelScanner::new(block.as_bytes(), 0, strict);
        let mut out = Vec::new();
        while let Some(item) = s.next_item()? {
            out.push(item);
        }
        Ok(out)
    }

    #[test]
    fn lenient_and_strict_label_blocks() {
        assert_eq!(
            items(r#" a = "1" b="2" , }"#, false).map(|v| v.len()),
            Ok(2)
        );
        assert!(items(r#" a = "1"}"#, true).is_err());
        assert!(items(r#"a="1",}"#, true).is_err());
        assert!(items(r#"a="1",}"#, false).is_ok());
        assert!(items(r#",a="1"}"#, false).is_err());
        assert!(items(r#"a="1",,b="2"}"#, false).is_err());
        assert!(items(r#"a="1"b="2"}"#, true).is_err());
        assert_eq!(
            items(r#""x.y",a="1"}"#, true),
            Ok(vec![
                LabelItem::MetricName(b"x.y"),
                LabelItem::Pair {
                    name: b"a",
                    value: b"1"
                }
            ])
        );
        assert!(items(r#"a="unterminated}"#, false).is_err());
        assert!(items(r#"a='1'}"#, false).is_err());
        assert!(items(r#"A}"#, false).is_err());
        assert!(items(r#"=""}"#, false).is_err());
    }

    #[test]
    fn unescaping() {
        assert_eq!(unescape_label(br#"base\"v\\al\nue"#), "base\"v\\al\nue");
        assert_eq!(unescape_label(br#"b\\a\z"#), "b\\a\\z");
        assert_eq!(unescape_help(br#"a\"b"#, false), "a\\\"b");
        assert_eq!(unescape_help(br#"a\"b"#, true), "a\"b");
        assert!(matches!(unescape_label(b"plain"), Cow::Borrowed("plain")));
    }

    fn plain_value_end_bytewise(line: &[u8], mut i: usize) -> usize {
        while line.get(i).is_some_and(|&b| is_plain_value_byte(b)) {
            i += 1;
        }
        i
    }

    #[test]
    fn plain_value_end_stops_at_each_special_byte_in_every_lane() {
        for special in [b'"', b'\\', b'\n', 0x80, 0xc3, 0xff] {
            for at in 0..20 {
                let mut line = vec![b'a'; 24];
                line[at] = special;
                assert_eq!(plain_value_end(&line, 0), at, "{special:#x} at {at}");
                // Above it, the byte a borrow out of the match can flag
                // falsely (`special ^ 1`) and another special byte: the
                // first still wins.
                line[at + 1] = special ^ 1;
                line[at + 2] = b'"';
                assert_eq!(plain_value_end(&line, 0), at, "{special:#x} at {at}");
                // The borrow-prone byte alone is judged by the table.
                line[at] = b'a';
                line[at + 2] = b'a';
                assert_eq!(
                    plain_value_end(&line, 0),
                    plain_value_end_bytewise(&line, 0),
                    "{:#x} at {}",
                    special ^ 1,
                    at + 1
                );
            }
        }
        assert_eq!(plain_value_end(b"abcdefghijk", 3), 11);
    }

    proptest::proptest! {
        #[test]
        fn plain_value_end_matches_the_byte_table(
            line in proptest::collection::vec(
                proptest::sample::select(
                    &[b'a', b'a', b'a', b'a', b'a', b'0', 0x7f, 0x00, 0x01, b'"', b'\\', b'\n', 0x80, 0xe9][..],
                ),
                0..80,
            ),
            from in 0usize..90,
        ) {
            proptest::prop_assert_eq!(plain_value_end(&line, from), plain_value_end_bytewise(&line, from));
        }
    }
}
