//! The pull parser.
//!
//! The body is split into lines with `memchr`; each call to
//! [`Parser::next`] consumes lines until it can yield an [`Entry`]. For a
//! series line the whole line is validated (name, label block, value,
//! timestamp, exemplar) but only byte offsets are kept: [`Parser::series`]
//! hands out the raw `name{labels}` bytes as a scrape-cache key, and the
//! label block is walked a second time, unescaped and copied, only when the
//! caller asks through [`Parser::labels`] (a cache miss).

use std::borrow::Cow;
use std::cell::Cell;
use std::ops::Range;

use tributary_model::{Labels, LabelsBuilder, MetricType, NativeHistogram, METRIC_NAME};

use crate::error::ParseError;
use crate::format::Format;
use crate::number::{
    format_om_float, parse_fast_decimal_prefix, parse_go_float, parse_int_timestamp,
    parse_om_timestamp, parse_value,
};
use crate::protobuf::ProtoParser;
use crate::scan::{
    is_metric_name_start, metric_name_len, scan_name, simple_label_block, unescape_help,
    unescape_label, LabelItem, LabelScanner, ScanError,
};

/// Labels allowed on one series before the line is rejected: it bounds the
/// quadratic cost of duplicate detection on hostile input.
pub const DEFAULT_MAX_LABELS_PER_SERIES: usize = 2048;

/// How many following lines [`Parser::created_timestamp`] inspects at most
/// (the search also stops at the end of the current metric point).
const CREATED_LOOKAHEAD_LINES: usize = 4096;

/// Tuning knobs; the defaults match a Prometheus scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParserOptions {
    /// OpenMetrics only: do not yield `<family>_created` lines of counter,
    /// summary and histogram families as series (Prometheus does this when
    /// created-timestamp ingestion is on; they are then only visible through
    /// [`Parser::created_timestamp`]).
    pub skip_created_series: bool,
    /// Series with more labels than this are a parse error.
    pub max_labels_per_series: usize,
    /// Protobuf only: also yield the classic `_count`/`_sum`/`_bucket`
    /// series of a histogram that has native buckets
    /// (`always_scrape_classic_histograms`).
    pub keep_classic_histograms: bool,
}

impl Default for ParserOptions {
    fn default() -> Self {
        ParserOptions {
            skip_created_series: false,
            max_labels_per_series: DEFAULT_MAX_LABELS_PER_SERIES,
            keep_classic_histograms: false,
        }
    }
}

/// One parsed line (or, for OpenMetrics, the terminating `# EOF`).
#[derive(Debug, Clone, PartialEq)]
pub enum Entry<'a> {
    /// A sample; read it with [`Parser::series`], [`Parser::labels`] etc.
    Series,
    /// A native histogram sample (protobuf only); read it with
    /// [`Parser::histogram`], its key and labels as for a series.
    Histogram,
    Type {
        name: Cow<'a, str>,
        kind: MetricType,
    },
    /// HELP with its text unescaped.
    Help {
        name: Cow<'a, str>,
        text: Cow<'a, str>,
    },
    Unit {
        name: Cow<'a, str>,
        unit: &'a str,
    },
    /// Any other comment line, verbatim (Prometheus text only).
    Comment(&'a [u8]),
    /// `# EOF` (OpenMetrics only); `next` returns `Ok(None)` afterwards.
    Eof,
}

/// An OpenMetrics exemplar attached to the current series.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    /// Milliseconds.
    pub timestamp: Option<i64>,
}

/// Byte range of a name in the body, with whether it came from a quoted
/// string (and so may need unescaping).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct NameSpan {
    range: Range<usize>,
    quoted: bool,
}

/// What one [`Parser::created_timestamp`] look-ahead found, kept so that
/// the following lines of the same metric point (a histogram's buckets,
/// `_count`, `_sum`) reuse it instead of scanning ahead again: every line
/// strictly between `from` and `end` was walked by that scan and has the
/// same labels (ignoring `le`/`quantile`), so its own scan would stop at the
/// same line with the same answer.
#[derive(Debug, Clone, Copy)]
struct CreatedMemo {
    /// Offset of the line the scan started from.
    from: usize,
    /// Offset of the line the scan stopped at (the `_created` line, or the
    /// line that ended the metric point).
    end: usize,
    value: Option<i64>,
}

#[derive(Debug, Clone)]
struct ExemplarSpan {
    /// Offset of the first byte after `{` in the body.
    labels_start: usize,
    value: f64,
    timestamp: Option<i64>,
}

/// A sample line as [`Parser::guess_series`] read it.
#[derive(Debug, Clone, Copy)]
pub struct GuessedSeries<'a> {
    /// The series bytes, if the guess is right: the scrape-cache key.
    pub series: &'a [u8],
    pub value: f64,
    pub timestamp: Option<i64>,
    /// Offsets of the line and of the next one.
    start: usize,
    end: usize,
}

/// A zero-copy pull parser over one exposition body.
#[derive(Clone)]
pub struct Parser<'a> {
    body: &'a [u8],
    format: Format,
    options: ParserOptions,
    /// Offset of the next unread line.
    pos: usize,
    /// 1-based number of the line last read.
    line_no: usize,
    /// Offset of the line last read.
    line_start: usize,
    finished: bool,
    series: Range<usize>,
    name: NameSpan,
    /// Offset just after `{` of the series label block, if any.
    labels_start: Option<usize>,
    /// The series came from [`Parser::take_guessed`]: `name` and
    /// `labels_start` are not set, [`Parser::name_and_labels`] derives them.
    name_guessed: bool,
    value: f64,
    timestamp: Option<i64>,
    exemplar: Option<ExemplarSpan>,
    family: NameSpan,
    family_type: MetricType,
    /// The protobuf parser, for [`Format::Protobuf`] bodies.
    proto: Option<Box<ProtoParser<'a>>>,
    /// Whether [`Parser::prom_simple_series`] may take lines (always, except
    /// in tests that check it against the general path).
    simple_path: bool,
    /// The last created-timestamp look-ahead (OpenMetrics); interior
    /// mutability because the lookup is a read-only query for callers.
    created_memo: Cell<Option<CreatedMemo>>,
}

impl<'a> Parser<'a> {
    pub fn new(format: Format, body: &'a [u8]) -> Self {
        Self::with_options(format, body, ParserOptions::default())
    }

    pub fn with_options(format: Format, body: &'a [u8], options: ParserOptions) -> Self {
        let proto = (format == Format::Protobuf).then(|| {
            Box::new(ProtoParser::new(
                body,
                options.max_labels_per_series,
                options.keep_classic_histograms,
            ))
        });
        Parser {
            body,
            format,
            options,
            pos: 0,
            line_no: 0,
            line_start: 0,
            finished: false,
            series: 0..0,
            name: NameSpan::default(),
            labels_start: None,
            name_guessed: false,
            value: 0.0,
            timestamp: None,
            exemplar: None,
            family: NameSpan::default(),
            family_type: MetricType::Unknown,
            proto,
            simple_path: true,
            created_memo: Cell::new(None),
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// 1-based number of the line the last entry came from (for protobuf:
    /// of the metric family message).
    pub fn line_number(&self) -> usize {
        match &self.proto {
            Some(p) => p.family_number(),
            None => self.line_no,
        }
    }

    /// Advances to the next entry. `Ok(None)` at the end of the body. After
    /// an error the parser is finished.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        if self.finished {
            return Ok(None);
        }
        let result = match &mut self.proto {
            Some(p) => p.next(),
            None => self.advance(),
        };
        if !matches!(result, Ok(Some(ref e)) if *e != Entry::Eof) {
            self.finished = true;
        }
        result
    }

    fn advance(&mut self) -> Result<Option<Entry<'a>>, ParseError> {
        loop {
            if self.pos >= self.body.len() {
                return match self.format {
                    Format::OpenMetrics => Err(self.error_at(0, "data does not end with # EOF")),
                    Format::PrometheusText | Format::Protobuf => Ok(None),
                };
            }
            if self.format == Format::PrometheusText
                && self.simple_path
                && self.prom_simple_series()
            {
                return Ok(Some(Entry::Series));
            }
            let (line, next_pos) = self.take_line();
            let entry = match self.format {
                Format::OpenMetrics => self.om_line(line, next_pos)?,
                Format::PrometheusText | Format::Protobuf => self.prom_line(line)?,
            };
            self.pos = next_pos;
            match entry {
                LineResult::Entry(e) => return Ok(Some(e)),
                LineResult::Skip => continue,
                LineResult::End => return Ok(None),
            }
        }
    }

    fn take_line(&mut self) -> (&'a [u8], usize) {
        let rest = &self.body[self.pos..];
        self.line_no += 1;
        self.line_start = self.pos;
        match memchr::memchr(b'\n', rest) {
            Some(n) => (&rest[..n], self.pos + n + 1),
            None => (rest, self.body.len()),
        }
    }

    fn error_at(&self, column_offset: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line_no.max(1),
            column: column_offset + 1,
            message: message.into(),
        }
    }

    fn scan_error(&self, (offset, message): ScanError) -> ParseError {
        self.error_at(offset, message)
    }

    // ----- Prometheus text -------------------------------------------------

    fn prom_line(&mut self, line: &'a [u8]) -> Result<LineResult<'a>, ParseError> {
        let start = skip_blanks(line, 0);
        match line.get(start) {
            None => Ok(LineResult::Skip),
            // Prometheus's lexer treats a NUL at the start of a token as the
            // end of the input.
            Some(0) => Ok(LineResult::End),
            Some(b'#') => self.prom_comment(line, start),
            Some(_) => {
                self.prom_series(line, start)?;
                Ok(LineResult::Entry(Entry::Series))
            }
        }
    }

    fn prom_comment(&mut self, line: &'a [u8], hash: usize) -> Result<LineResult<'a>, ParseError> {
        let after_ws = skip_blanks(line, hash + 1);
        let is_help = keyword_then_blank(line, after_ws, b"HELP");
        let is_type = keyword_then_blank(line, after_ws, b"TYPE");
        if after_ws == hash + 1 || !(is_help || is_type) {
            return Ok(LineResult::Entry(Entry::Comment(&line[hash..])));
        }
        let name_at = skip_blanks(line, after_ws + 4);
        let (name, rest_at) =
            self.meta_name(line, name_at, if is_help { "HELP" } else { "TYPE" })?;
        let rest = &line[rest_at..];
        // The lexer hands over the rest of the line minus its first byte; a
        // rest made only of blanks lexes as whitespace and yields no text.
        let text = if rest.iter().all(|b| matches!(b, b' ' | b'\t')) {
            &rest[rest.len()..]
        } else {
            &rest[1..]
        };
        if is_type {
            let kind = match text {
                b"counter" => MetricType::Counter,
                b"gauge" => MetricType::Gauge,
                b"histogram" => MetricType::Histogram,
                b"summary" => MetricType::Summary,
                b"untyped" => MetricType::Unknown,
                _ => {
                    return Err(self.error_at(
                        rest_at,
                        format!("invalid metric type {:?}", String::from_utf8_lossy(text)),
                    ))
                }
            };
            self.set_family(name.clone(), kind);
            return Ok(LineResult::Entry(Entry::Type {
                name: self.span_str(&name),
                kind,
            }));
        }
        if std::str::from_utf8(text).is_err() {
            return Err(self.error_at(rest_at, "help text is not valid UTF-8"));
        }
        Ok(LineResult::Entry(Entry::Help {
            name: self.span_str(&name),
            text: unescape_help(text, false),
        }))
    }

    /// Fast path for the most common Prometheus text line, parsed straight
    /// from the body without splitting it off first:
    /// `name[{simple labels}] value[ timestamp]\n` with a legacy name, the
    /// label block shape of [`simple_label_block`], single spaces and a
    /// value that [`parse_fast_decimal_prefix`] handles. On success the
    /// series is recorded exactly as [`Parser::prom_series`] would record
    /// it, the line is consumed and `true` returned. Otherwise nothing
    /// changes and the general path takes the line, so this decides
    /// nothing about what is valid.
    fn prom_simple_series(&mut self) -> bool {
        let start = self.pos;
        let rest = self.body.get(start..).unwrap_or_default();
        let name_len = metric_name_len(rest);
        if name_len == 0 {
            return false;
        }
        let mut i = name_len;
        let mut labels_start = None;
        if rest.get(i) == Some(&b'{') {
            match simple_label_block(rest, i + 1, self.options.max_labels_per_series) {
                Some(end) => {
                    labels_start = Some(start + i + 1);
                    i = end;
                }
                None => return false,
            }
        }
        let series_end = i;
        if rest.get(i) != Some(&b' ') {
            return false;
        }
        i += 1;
        let Some((value, value_len)) = parse_fast_decimal_prefix(&rest[i..]) else {
            return false;
        };
        i += value_len;
        let mut timestamp = None;
        if rest.get(i) == Some(&b' ') {
            i += 1;
            let ts_start = i;
            let mut ts: i64 = 0;
            while let Some(d) = rest
                .get(i)
                .map(|b| b.wrapping_sub(b'0'))
                .filter(|d| *d <= 9)
            {
                match ts.checked_mul(10).and_then(|t| t.checked_add(i64::from(d))) {
                    Some(t) => ts = t,
                    None => return false,
                }
                i += 1;
            }
            if i == ts_start {
                return false;
            }
            timestamp = Some(ts);
        }
        let next_pos = match rest.get(i) {
            None => start + i,
            Some(b'\n') => start + i + 1,
            Some(_) => return false,
        };
        self.line_no += 1;
        self.line_start = start;
        self.pos = next_pos;
        self.name = NameSpan {
            range: start..start + name_len,
            quoted: false,
        };
        self.labels_start = labels_start;
        self.name_guessed = false;
        self.series = start..start + series_end;
        self.value = value;
        self.timestamp = timestamp;
        self.exemplar = None;
        true
    }

    /// Prometheus text: the next line read from its end as
    /// `series value[ timestamp]` — split at its last space (or the one
    /// before, when the series' `}` precedes it), value and timestamp in
    /// the forms [`Parser::prom_simple_series`] takes — without looking at
    /// the series bytes at all. Nothing is decided about them: only a
    /// caller that knows them as a whole series parsed before (its scrape
    /// cache holds them) may take the line with [`Parser::take_guessed`].
    /// That is sound because a valid series is self-delimiting: followed by
    /// a space and a value, the general parser splits the line the same
    /// way. Otherwise the caller goes on with [`Parser::next`].
    pub fn guess_series(&self) -> Option<GuessedSeries<'a>> {
        let (start, rest) = self.guessable_line()?;
        let (line, end) = match memchr::memchr(b'\n', rest) {
            Some(n) => (&rest[..n], start + n + 1),
            None => (rest, self.body.len()),
        };
        let last = memchr::memrchr(b' ', line)?;
        let (head, tail) = (&line[..last], &line[last + 1..]);
        let timestamped = match head.last() {
            Some(b'}') => None,
            _ => memchr::memrchr(b' ', head).filter(|&i| i > 0 && head[i - 1] == b'}'),
        };
        let (series, value, timestamp) = match timestamped {
            None => (head, tail, None),
            Some(i) => (&head[..i], &head[i + 1..], Some(parse_int_timestamp(tail)?)),
        };
        let (value, _) = parse_fast_decimal_prefix(value).filter(|&(_, n)| n == value.len())?;
        Some(GuessedSeries {
            series,
            value,
            timestamp,
            start,
            end,
        })
    }

    /// [`Parser::guess_series`] for a line whose series is expected to be
    /// `len` bytes long (the scrape cache knows the length of the series
    /// it expects next): the value is read right after them, so the line
    /// is not searched for its end nor for its last space. `None` when the
    /// line is not `len` bytes of series, one space, a plain decimal value
    /// and optionally one space and an integer timestamp — the caller then
    /// parses it the usual way.
    pub fn guess_series_of_len(&self, len: usize) -> Option<GuessedSeries<'a>> {
        let (start, rest) = self.guessable_line()?;
        if rest.get(len) != Some(&b' ') {
            return None;
        }
        let series = rest.get(..len)?;
        // The line's end is found by reading the value (and timestamp), not
        // searched for: it must come right after them.
        let after = rest.get(len + 1..)?;
        let (value, mut n) = parse_fast_decimal_prefix(after)?;
        let timestamp = match after.get(n) {
            Some(b' ') => {
                let digits = after.get(n + 1..)?;
                let count = digits.iter().take_while(|b| b.is_ascii_digit()).count();
                n += 1 + count;
                Some(parse_int_timestamp(digits.get(..count)?)?)
            }
            _ => None,
        };
        let end = match after.get(n) {
            None => self.body.len(),
            Some(b'\n') => start + len + 1 + n + 1,
            Some(_) => return None,
        };
        Some(GuessedSeries {
            series,
            value,
            timestamp,
            start,
            end,
        })
    }

    /// Where the next line starts and the body from there, if it may be
    /// guessed at: a Prometheus text page on the simple path, and a line
    /// starting with a metric name (comments, blank lines and `{`-first
    /// series go the general way).
    fn guessable_line(&self) -> Option<(usize, &'a [u8])> {
        if self.format != Format::PrometheusText || self.finished || !self.simple_path {
            return None;
        }
        let rest = self.body.get(self.pos..)?;
        rest.first()
            .is_some_and(|&b| is_metric_name_start(b))
            .then_some((self.pos, rest))
    }

    /// Takes the line [`Parser::guess_series`] read, as [`Parser::next`]
    /// would have returned it as an [`Entry::Series`].
    pub fn take_guessed(&mut self, g: &GuessedSeries<'a>) {
        self.line_no += 1;
        self.line_start = g.start;
        self.pos = g.end;
        self.series = g.start..g.start + g.series.len();
        self.name_guessed = true;
        self.value = g.value;
        self.timestamp = g.timestamp;
        self.exemplar = None;
    }

    /// The series' name and the offset after its `{`, derived from the
    /// series bytes after [`Parser::take_guessed`] (only when asked: a
    /// cache hit needs neither).
    fn name_and_labels(&self) -> (NameSpan, Option<usize>) {
        if !self.name_guessed {
            return (self.name.clone(), self.labels_start);
        }
        let series = self.body.get(self.series.clone()).unwrap_or_default();
        let name_len = metric_name_len(series);
        let brace = skip_blanks(series, name_len);
        let labels = (series.get(brace) == Some(&b'{')).then_some(self.series.start + brace + 1);
        let name = NameSpan {
            range: self.series.start..self.series.start + name_len,
            quoted: false,
        };
        (name, labels)
    }

    fn prom_series(&mut self, line: &'a [u8], start: usize) -> Result<(), ParseError> {
        self.reset_series();
        let mut i = start;
        let name_len = metric_name_len(&line[i..]);
        if name_len > 0 {
            self.name = self.span(i..i + name_len, false);
            i = skip_blanks(line, i + name_len);
        } else if line.get(i) != Some(&b'{') {
            return Err(self.error_at(i, "expected a valid start token"));
        }
        let mut series_end = start + name_len;
        if line.get(i) == Some(&b'{') {
            let simple = if name_len > 0 {
                simple_label_block(line, i + 1, self.options.max_labels_per_series)
            } else {
                None
            };
            i = match simple {
                Some(end) => {
                    self.labels_start = Some(self.line_start + i + 1);
                    end
                }
                None => self.label_block(line, i, false, name_len == 0)?,
            };
            series_end = i;
        }
        if self.name.range.is_empty() {
            return Err(self.error_at(i, "metric name not set"));
        }
        self.series = self.line_start + start..self.line_start + series_end;
        let i = skip_blanks(line, i);
        let value_len = line[i..]
            .iter()
            .take_while(|&&b| !matches!(b, b' ' | b'\t' | b'{'))
            .count();
        if value_len == 0 {
            return Err(self.error_at(i, "expected value after metric"));
        }
        self.value = parse_value(&line[i..i + value_len])
            .ok_or_else(|| self.error_at(i, "expected a valid float value"))?;
        let i = skip_blanks(line, i + value_len);
        if i == line.len() {
            return Ok(());
        }
        let ts_len = line[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if ts_len == 0 {
            return Err(self.error_at(i, "expected timestamp or new record"));
        }
        self.timestamp = Some(
            parse_int_timestamp(&line[i..i + ts_len])
                .ok_or_else(|| self.error_at(i, "timestamp out of range"))?,
        );
        let end = skip_blanks(line, i + ts_len);
        if end != line.len() {
            return Err(self.error_at(end, "expected next entry after timestamp"));
        }
        Ok(())
    }

    // ----- OpenMetrics -----------------------------------------------------

    fn om_line(&mut self, line: &'a [u8], next_pos: usize) -> Result<LineResult<'a>, ParseError> {
        match line.first() {
            Some(b'#') => self.om_comment(line, next_pos),
            Some(&b) if b == b'{' || crate::scan::is_metric_name_start(b) || b == b'"' => {
                self.om_series(line)?;
                if self.options.skip_created_series && self.is_created_series_of_family() {
                    return Ok(LineResult::Skip);
                }
                Ok(LineResult::Entry(Entry::Series))
            }
            _ => Err(self.error_at(0, "expected a valid start token")),
        }
    }

    fn om_comment(
        &mut self,
        line: &'a [u8],
        next_pos: usize,
    ) -> Result<LineResult<'a>, ParseError> {
        if line == b"# EOF" {
            if next_pos < self.body.len() {
                return Err(self.error_at(line.len(), "unexpected data after # EOF"));
            }
            return Ok(LineResult::Entry(Entry::Eof));
        }
        let keyword = line.get(2..6).unwrap_or_default();
        let known = matches!(keyword, b"HELP" | b"TYPE" | b"UNIT");
        if !line.starts_with(b"# ") || !known || line.get(6) != Some(&b' ') {
            return Err(self.error_at(0, "expected HELP, TYPE, UNIT or EOF after '# '"));
        }
        let label = match keyword {
            b"HELP" => "HELP",
            b"TYPE" => "TYPE",
            _ => "UNIT",
        };
        let (name, rest_at) = self.meta_name(line, 7, label)?;
        if line.get(rest_at) != Some(&b' ') {
            return Err(self.error_at(rest_at, format!("expected text in {label}")));
        }
        let text = &line[rest_at + 1..];
        match keyword {
            b"TYPE" => {
                let kind = std::str::from_utf8(text)
                    .ok()
                    .filter(|t| *t != "untyped")
                    .and_then(MetricType::from_type_word)
                    .ok_or_else(|| {
                        self.error_at(
                            rest_at + 1,
                            format!("invalid metric type {:?}", String::from_utf8_lossy(text)),
                        )
                    })?;
                self.set_family(name.clone(), kind);
                Ok(LineResult::Entry(Entry::Type {
                    name: self.span_str(&name),
                    kind,
                }))
            }
            b"HELP" => {
                if std::str::from_utf8(text).is_err() {
                    return Err(self.error_at(rest_at + 1, "help text is not valid UTF-8"));
                }
                Ok(LineResult::Entry(Entry::Help {
                    name: self.span_str(&name),
                    text: unescape_help(text, true),
                }))
            }
            _ => {
                let unit = std::str::from_utf8(text)
                    .map_err(|_| self.error_at(rest_at + 1, "unit is not valid UTF-8"))?;
                let metric = self.span_str(&name);
                if !unit.is_empty()
                    && !metric
                        .strip_suffix(unit)
                        .is_some_and(|m| m.ends_with('_') && m.len() > 1)
                {
                    return Err(self.error_at(
                        rest_at + 1,
                        format!("unit {unit:?} not a suffix of metric {metric:?}"),
                    ));
                }
                Ok(LineResult::Entry(Entry::Unit { name: metric, unit }))
            }
        }
    }

    fn om_series(&mut self, line: &'a [u8]) -> Result<(), ParseError> {
        self.reset_series();
        let name_len = metric_name_len(line);
        if name_len > 0 {
            self.name = self.span(0..name_len, false);
        } else if line.first() != Some(&b'{') {
            return Err(self.error_at(0, "expected a valid start token"));
        }
        let mut i = name_len;
        if line.get(i) == Some(&b'{') {
            i = self.label_block(line, i, true, name_len == 0)?;
        }
        if self.name.range.is_empty() {
            return Err(self.error_at(i, "metric name not set"));
        }
        self.series = self.line_start..self.line_start + i;
        let (value, i) = self.om_token(line, i, "expected value after metric")?;
        self.value = parse_value(value)
            .ok_or_else(|| self.error_at(i - value.len(), "expected a valid float value"))?;
        if i == line.len() {
            return Ok(());
        }
        if line[i..].starts_with(b" # {") {
            return self.om_exemplar(line, i + 4);
        }
        let (ts, i) = self.om_token(line, i, "expected timestamp")?;
        self.timestamp = Some(
            parse_om_timestamp(ts)
                .ok_or_else(|| self.error_at(i - ts.len(), "invalid timestamp"))?,
        );
        if i == line.len() {
            return Ok(());
        }
        if line[i..].starts_with(b" # {") {
            return self.om_exemplar(line, i + 4);
        }
        Err(self.error_at(i, "expected end of line or exemplar after timestamp"))
    }

    /// `' ' [^ ]+` at `i`: returns the token and the offset after it.
    fn om_token(
        &self,
        line: &'a [u8],
        i: usize,
        what: &str,
    ) -> Result<(&'a [u8], usize), ParseError> {
        if line.get(i) != Some(&b' ') {
            return Err(self.error_at(i, what));
        }
        let len = line[i + 1..].iter().take_while(|&&b| b != b' ').count();
        if len == 0 {
            return Err(self.error_at(i + 1, what));
        }
        Ok((&line[i + 1..i + 1 + len], i + 1 + len))
    }

    fn om_exemplar(&mut self, line: &'a [u8], after_brace: usize) -> Result<(), ParseError> {
        let mut scanner = LabelScanner::new(line, after_brace, true);
        let mut count = 0usize;
        while let Some(item) = scanner.next_item().map_err(|e| self.scan_error(e))? {
            if let LabelItem::MetricName(_) = item {
                return Err(
                    self.error_at(scanner.pos, "metric name not allowed in exemplar labels")
                );
            }
            count += 1;
            if count > self.options.max_labels_per_series {
                return Err(self.error_at(scanner.pos, "too many exemplar labels"));
            }
        }
        let (value, i) = self.om_token(line, scanner.pos, "expected exemplar value")?;
        let value = parse_value(value)
            .ok_or_else(|| self.error_at(i - value.len(), "invalid exemplar value"))?;
        let mut timestamp = None;
        if i < line.len() {
            let (ts, end) = self.om_token(line, i, "expected exemplar timestamp")?;
            timestamp = Some(
                parse_om_timestamp(ts)
                    .ok_or_else(|| self.error_at(i + 1, "invalid exemplar timestamp"))?,
            );
            if end != line.len() {
                return Err(self.error_at(end, "expected end of line after exemplar timestamp"));
            }
        }
        self.exemplar = Some(ExemplarSpan {
            labels_start: self.line_start + after_brace,
            value,
            timestamp,
        });
        Ok(())
    }

    // ----- shared pieces ---------------------------------------------------

    /// The metric name of a HELP/TYPE/UNIT line at `at`; returns it and the
    /// offset after it.
    fn meta_name(
        &self,
        line: &'a [u8],
        at: usize,
        keyword: &str,
    ) -> Result<(NameSpan, usize), ParseError> {
        match scan_name(&line[at.min(line.len())..], metric_name_len) {
            Ok(Some((raw, len, quoted))) => {
                let offset = if quoted { at + 1 } else { at };
                Ok((self.span(offset..offset + raw.len(), quoted), at + len))
            }
            Ok(None) => Err(self.error_at(at, format!("expected metric name after {keyword}"))),
            Err((off, msg)) => Err(self.error_at(at + off, msg)),
        }
    }

    /// Validates a label block whose `{` is at `brace`; records a quoted
    /// metric name if `name_inside`. Returns the offset after `}`.
    fn label_block(
        &mut self,
        line: &'a [u8],
        brace: usize,
        strict: bool,
        name_inside: bool,
    ) -> Result<usize, ParseError> {
        self.labels_start = Some(self.line_start + brace + 1);
        let mut scanner = LabelScanner::new(line, brace + 1, strict);
        let mut count = 0usize;
        while let Some(item) = scanner.next_item().map_err(|e| self.scan_error(e))? {
            match item {
                LabelItem::MetricName(raw) => {
                    if !name_inside || !self.name.range.is_empty() {
                        return Err(self.error_at(scanner.pos, "metric name already set"));
                    }
                    let offset = raw.as_ptr() as usize - line.as_ptr() as usize;
                    self.name = self.span(offset..offset + raw.len(), true);
                }
                LabelItem::Pair { .. } => {
                    count += 1;
                    if count > self.options.max_labels_per_series {
                        return Err(self.error_at(scanner.pos, "too many labels"));
                    }
                }
            }
        }
        Ok(scanner.pos)
    }

    fn span(&self, in_line: Range<usize>, quoted: bool) -> NameSpan {
        NameSpan {
            range: self.line_start + in_line.start..self.line_start + in_line.end,
            quoted,
        }
    }

    fn span_str(&self, span: &NameSpan) -> Cow<'a, str> {
        let raw = &self.body[span.range.clone()];
        if span.quoted {
            unescape_label(raw)
        } else {
            // Legacy names are ASCII, so this always borrows.
            match std::str::from_utf8(raw) {
                Ok(name) => Cow::Borrowed(name),
                Err(_) => String::from_utf8_lossy(raw),
            }
        }
    }

    fn reset_series(&mut self) {
        self.name = NameSpan::default();
        self.labels_start = None;
        self.name_guessed = false;
        self.timestamp = None;
        self.exemplar = None;
    }

    fn set_family(&mut self, name: NameSpan, kind: MetricType) {
        self.family = name;
        self.family_type = kind;
    }

    // ----- accessors for the current series ------------------------------

    /// The raw series bytes, the timestamp in milliseconds and the value of
    /// the current series (or histogram, whose value is 0). For text the
    /// bytes are the name and label block exactly as on the wire; for
    /// protobuf a canonical encoding of name and labels. Either way they
    /// identify the series within a target: use them as the cache key.
    pub fn series(&self) -> (&[u8], Option<i64>, f64) {
        match &self.proto {
            Some(p) => (p.key(), p.timestamp(), p.value()),
            None => (&self.body[self.series.clone()], self.timestamp, self.value),
        }
    }

    /// The native histogram of the current [`Entry::Histogram`].
    pub fn histogram(&self) -> Option<&NativeHistogram> {
        self.proto.as_ref().and_then(|p| p.histogram())
    }

    /// The metric name of the current series, unescaped.
    pub fn metric_name(&self) -> Cow<'a, str> {
        match &self.proto {
            Some(p) => Cow::Owned(p.metric_name()),
            None => self.span_str(&self.name_and_labels().0),
        }
    }

    /// Writes the labels of the current series, `__name__` included and all
    /// values unescaped, into `out` (cleared first). `le` of histogram and
    /// `quantile` of summary families are normalised like Prometheus does
    /// (`1` becomes `1.0`). Errors on a repeated label name.
    pub fn labels(&self, out: &mut LabelsBuilder) -> Result<(), ParseError> {
        self.fill_labels(out, true, &mut |_| {})
    }

    /// [`Parser::labels`], also listing in `empty` the names exposed with
    /// an empty value, which `out` leaves out: with `honor_labels` such a
    /// label still stops the target's label of that name from being
    /// attached (`{instance=""}` on a Pushgateway, as Prometheus's
    /// `lset.Has` sees it).
    pub fn labels_noting_empty(
        &self,
        out: &mut LabelsBuilder,
        empty: &mut Vec<String>,
    ) -> Result<(), ParseError> {
        empty.clear();
        self.fill_labels(out, true, &mut |name| empty.push(name.to_owned()))
    }

    /// [`Parser::labels`] with the `le`/`quantile` normalisation optional
    /// (the checker needs the values as written), calling `on_empty` with
    /// the name of each label exposed with an empty value.
    pub(crate) fn fill_labels(
        &self,
        out: &mut LabelsBuilder,
        normalize: bool,
        on_empty: &mut dyn FnMut(&str),
    ) -> Result<(), ParseError> {
        if let Some(p) = &self.proto {
            return p.labels(out, on_empty);
        }
        out.clear();
        out.set(METRIC_NAME, &self.metric_name());
        let Some(start) = self.name_and_labels().1 else {
            return Ok(());
        };
        let strict = self.format == Format::OpenMetrics;
        let kind = if normalize {
            self.metric_type()
        } else {
            MetricType::Unknown
        };
        let mut scanner = LabelScanner::new(self.body, start, strict);
        while let Ok(Some(item)) = scanner.next_item() {
            let LabelItem::Pair { name, value } = item else {
                continue;
            };
            let name = unescape_label(name);
            if name == METRIC_NAME || out.get(&name).is_some() {
                return Err(ParseError {
                    line: self.line_no,
                    column: 1,
                    message: format!("label name {name:?} is not unique"),
                });
            }
            let value = unescape_label(value);
            if value.is_empty() {
                on_empty(&name);
            }
            match normalized_float_label(kind, &name, &value) {
                Some(normal) => out.set(&name, &normal),
                None => out.set(&name, &value),
            }
        }
        Ok(())
    }

    /// The exemplar of the current series (OpenMetrics, protobuf), if any;
    /// the first one for a native histogram.
    pub fn exemplar(&self) -> Option<Exemplar> {
        if let Some(p) = &self.proto {
            let mut all = Vec::new();
            p.exemplars(&mut all);
            return all.into_iter().next();
        }
        let span = self.exemplar.as_ref()?;
        let mut builder = LabelsBuilder::new();
        let mut scanner = LabelScanner::new(self.body, span.labels_start, true);
        while let Ok(Some(item)) = scanner.next_item() {
            if let LabelItem::Pair { name, value } = item {
                builder.set(&unescape_label(name), &unescape_label(value));
            }
        }
        Some(Exemplar {
            labels: builder.labels(),
            value: span.value,
            timestamp: span.timestamp,
        })
    }

    /// Whether the current entry carries an exemplar (without building it).
    pub fn has_exemplar(&self) -> bool {
        match &self.proto {
            Some(p) => {
                let mut found = Vec::new();
                p.exemplars(&mut found);
                !found.is_empty()
            }
            None => self.exemplar.is_some(),
        }
    }

    /// Appends all exemplars of the current entry to `out`: at most one for
    /// a series, any number for a native histogram (only timestamped ones,
    /// as Prometheus keeps).
    pub fn exemplars(&self, out: &mut Vec<Exemplar>) {
        match &self.proto {
            Some(p) => p.exemplars(out),
            None => out.extend(self.exemplar()),
        }
    }

    /// The type of the family the current series belongs to: the last
    /// `# TYPE` if the series name is that family's name plus a suffix the
    /// type allows, otherwise unknown.
    pub fn metric_type(&self) -> MetricType {
        if let Some(p) = &self.proto {
            return p.metric_type();
        }
        match self.family_suffix() {
            Some(_) => self.family_type,
            None => MetricType::Unknown,
        }
    }

    /// The suffix of the current series name relative to the current
    /// family (`""` for the family name itself), if it belongs to it.
    fn family_suffix(&self) -> Option<&'static str> {
        let (name, _) = self.name_and_labels();
        if self.family.range.is_empty() || name.range.is_empty() {
            return None;
        }
        let suffixes = allowed_suffixes(self.family_type, self.format);
        if !self.family.quoted && !name.quoted {
            // Both legacy (ASCII) names: compare the raw bytes.
            let rest = self
                .body
                .get(name.range.clone())?
                .strip_prefix(self.body.get(self.family.range.clone())?)?;
            return suffixes.iter().copied().find(|s| s.as_bytes() == rest);
        }
        let family = self.span_str(&self.family);
        let name = self.metric_name();
        let rest = name.strip_prefix(family.as_ref())?;
        suffixes.iter().copied().find(|s| *s == rest)
    }

    fn is_created_series_of_family(&self) -> bool {
        matches!(
            self.family_type,
            MetricType::Counter | MetricType::Summary | MetricType::Histogram
        ) && self.family_suffix() == Some("_created")
    }

    /// OpenMetrics: the `<family>_created` value (in milliseconds) that
    /// belongs to the current series, found by looking ahead within the
    /// family for a `_created` line with the same labels (ignoring `le` and
    /// `quantile`). `None` for other formats, types, or when absent.
    pub fn created_timestamp(&self) -> Option<i64> {
        if let Some(p) = &self.proto {
            return p.created_timestamp();
        }
        if self.format != Format::OpenMetrics
            || !matches!(
                self.family_type,
                MetricType::Counter | MetricType::Summary | MetricType::Histogram
            )
        {
            return None;
        }
        if self.family_suffix()? == "_created" {
            return None;
        }
        let here = self.line_start;
        if let Some(m) = self.created_memo.get() {
            if m.from < here && here < m.end {
                return m.value;
            }
        }
        let mut ahead = self.clone();
        ahead.options.skip_created_series = false;
        let memo = |value: Option<i64>, end: usize| {
            self.created_memo.set(Some(CreatedMemo {
                from: here,
                end,
                value,
            }));
            value
        };
        for _ in 0..CREATED_LOOKAHEAD_LINES {
            match ahead.next() {
                Ok(Some(Entry::Series)) => {}
                _ => return memo(None, ahead.line_start),
            }
            if ahead.family_suffix().is_none() || !self.same_labels_ignoring_bucket(&ahead) {
                // OpenMetrics keeps a metric point's lines together, so a
                // line of another family or point ends the search. (Prometheus
                // scans on to the next `_created` line of the family, which
                // only differs for expositions that split a point, and costs
                // a scan of the whole family for every series of a family
                // without `_created` lines.)
                return memo(None, ahead.line_start);
            }
            if ahead.family_suffix() == Some("_created") {
                // Truncated towards zero, as Prometheus converts it.
                let ms = ahead.value * 1000.0;
                return memo(ms.is_finite().then_some(ms as i64), ahead.line_start);
            }
        }
        // Gave up: a later line of the point may still reach the
        // `_created` line, so nothing is remembered.
        None
    }

    fn same_labels_ignoring_bucket(&self, created: &Parser<'a>) -> bool {
        let pairs = |p: &Parser<'a>| {
            let mut scanner = p.labels_start.map(|s| LabelScanner::new(p.body, s, true));
            std::iter::from_fn(move || loop {
                match scanner.as_mut()?.next_item() {
                    Ok(Some(LabelItem::Pair { name, value }))
                        if name != b"le" && name != b"quantile" =>
                    {
                        return Some((name, value))
                    }
                    Ok(Some(_)) => continue,
                    _ => return None,
                }
            })
        };
        pairs(self).eq(pairs(created))
    }
}

enum LineResult<'a> {
    Entry(Entry<'a>),
    Skip,
    End,
}

fn skip_blanks(line: &[u8], mut i: usize) -> usize {
    while matches!(line.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

fn keyword_then_blank(line: &[u8], at: usize, keyword: &[u8]) -> bool {
    line.get(at..).is_some_and(|r| r.starts_with(keyword))
        && matches!(line.get(at + keyword.len()), Some(b' ' | b'\t'))
}

/// Sample-name suffixes a family of the given type owns.
pub(crate) fn allowed_suffixes(kind: MetricType, format: Format) -> &'static [&'static str] {
    let om = format == Format::OpenMetrics;
    match kind {
        MetricType::Counter if om => &["_total", "_created"],
        MetricType::Counter => &["", "_total"],
        MetricType::Histogram if om => &["_bucket", "_count", "_sum", "_created"],
        MetricType::Histogram => &["_bucket", "_count", "_sum"],
        MetricType::GaugeHistogram => &["_bucket", "_gcount", "_gsum"],
        MetricType::Summary if om => &["", "_count", "_sum", "_created"],
        MetricType::Summary => &["", "_count", "_sum"],
        MetricType::Info => &["_info"],
        MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[""],
    }
}

/// Prometheus rewrites `le` (histograms) and `quantile` (summaries) to the
/// OpenMetrics float spelling so that `1` and `1.0` are one series.
fn normalized_float_label(kind: MetricType, name: &str, value: &str) -> Option<String> {
    let applies = (kind == MetricType::Histogram && name == "le")
        || (kind == MetricType::Summary && name == "quantile");
    if !applies {
        return None;
    }
    parse_go_float(value.as_bytes()).map(format_om_float)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Everything observable about one step of the parser, and whether
    /// there are more.
    fn observe(parser: &mut Parser<'_>) -> (String, bool) {
        let entry = parser.next();
        describe(parser, entry)
    }

    fn describe(
        parser: &Parser<'_>,
        entry: Result<Option<Entry<'_>>, ParseError>,
    ) -> (String, bool) {
        let mut out = format!("{entry:?} line={}", parser.line_number());
        let more = matches!(entry, Ok(Some(_)));
        if let Ok(Some(Entry::Series)) = entry {
            let (key, ts, value) = parser.series();
            let mut labels = LabelsBuilder::new();
            let filled = parser.labels(&mut labels);
            let pairs: Vec<_> = labels
                .iter()
                .map(|l| format!("{}={}", l.name, l.value))
                .collect();
            out += &format!(
                " key={key:?} ts={ts:?} value={:x} name={} type={:?} labels={filled:?} {pairs:?}",
                value.to_bits(),
                parser.metric_name(),
                parser.metric_type(),
            );
        }
        (out, more)
    }

    fn trace(body: &[u8], simple_path: bool) -> Vec<String> {
        let mut parser = Parser::new(Format::PrometheusText, body);
        parser.simple_path = simple_path;
        let mut steps = Vec::new();
        loop {
            let (step, more) = observe(&mut parser);
            steps.push(step);
            if !more {
                return steps;
            }
        }
    }

    fn assert_same(body: &[u8]) {
        assert_eq!(
            trace(body, true),
            trace(body, false),
            "body {:?}",
            String::from_utf8_lossy(body)
        );
    }

    /// A trace that takes every line [`Parser::guess_series`] reads as a
    /// series the general parse of the same body produced (as a scrape
    /// cache would know it).
    ///
    /// With `by_len`, lines are read with [`Parser::guess_series_of_len`]
    /// at every length a known series has — more guesses than a cache,
    /// which expects one series, would try.
    fn trace_guessing(body: &[u8], by_len: bool) -> Vec<String> {
        let mut known = std::collections::HashSet::new();
        let mut general = Parser::new(Format::PrometheusText, body);
        while let Ok(Some(e)) = general.next() {
            if e == Entry::Series {
                known.insert(general.series().0.to_vec());
            }
        }
        let mut lens: Vec<usize> = known.iter().map(Vec::len).collect();
        lens.sort_unstable();
        lens.dedup();
        let mut parser = Parser::new(Format::PrometheusText, body);
        let mut steps = Vec::new();
        loop {
            let guessed = if by_len {
                lens.iter()
                    .filter_map(|&len| parser.guess_series_of_len(len))
                    .find(|g| known.contains(g.series))
            } else {
                parser.guess_series().filter(|g| known.contains(g.series))
            };
            let (step, more) = match guessed {
                Some(g) => {
                    parser.take_guessed(&g);
                    describe(&parser, Ok(Some(Entry::Series)))
                }
                None => observe(&mut parser),
            };
            steps.push(step);
            if !more {
                return steps;
            }
        }
    }

    fn assert_guesses_agree(body: &[u8]) {
        for by_len in [false, true] {
            assert_eq!(
                trace_guessing(body, by_len),
                trace(body, true),
                "by_len {by_len}, body {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn guessed_lines_read_as_parsed_lines() {
        let body = "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 4 1700000000000\n\
            h_count 4\nh_sum 1.5 17\na {b=\"c\"} 1\na{b=\"} 2\"} 3\na{b=\"x\"} 1 \na{b=\"x\"}  2\n\
            a{b=\"x\"} 1\r\na{b=\"x\"} NaN\na{b=\"x\"} 1 2 3\n# TYPE s summary\ns{quantile=\"1\"} 1\n\
            a{b=\"x\"} 7\nh_sum 2.5 18\nh_count 5\n";
        assert_guesses_agree(body.as_bytes());
        // The guess is taken where the series is known, and not elsewhere.
        let mut p = Parser::new(Format::PrometheusText, body.as_bytes());
        let mut guessed = Vec::new();
        while !p.finished {
            if let Some(g) = p.guess_series() {
                guessed.push(String::from_utf8_lossy(g.series).into_owned());
            }
            if p.next().is_err() {
                break;
            }
        }
        assert!(
            guessed.contains(&"h_bucket{le=\"+Inf\"}".to_owned()),
            "{guessed:?}"
        );
        assert!(guessed.contains(&"a {b=\"c\"}".to_owned()), "{guessed:?}");
        assert!(guessed.contains(&"a{b=\"} 2\"}".to_owned()), "{guessed:?}");
    }

    #[test]
    fn a_line_is_read_at_the_series_length_it_was_expected_to_have() {
        let body = b"h_sum 1.5 17\na{b=\"x y\"} 2\na{b=\"x\"} 3";
        let mut p = Parser::new(Format::PrometheusText, body);
        let g = p.guess_series_of_len(5).expect("h_sum");
        assert_eq!(
            (g.series, g.value, g.timestamp),
            (&b"h_sum"[..], 1.5, Some(17))
        );
        // The length of another series: not a series, a space and a value.
        assert!(p.guess_series_of_len(3).is_none());
        assert!(p.guess_series_of_len(6).is_none());
        p.take_guessed(&g);
        let g = p.guess_series_of_len(10).expect("a space in a label value");
        assert_eq!((g.series, g.value), (&b"a{b=\"x y\"}"[..], 2.0));
        p.take_guessed(&g);
        let g = p
            .guess_series_of_len(8)
            .expect("the last line, unterminated");
        assert_eq!(
            (g.series, g.value, g.timestamp),
            (&b"a{b=\"x\"}"[..], 3.0, None)
        );
        p.take_guessed(&g);
        assert_eq!(p.next().ok(), Some(None));
    }

    #[test]
    fn simple_path_agrees_on_handwritten_lines() {
        let lines: &[&str] = &[
            "a 1\n",
            "a 1",
            "a{} 1\n",
            "a{b=\"c\"} 1.5e+03 123\n",
            "a{b=\"c\",} 1\n",
            "a{b=\"c\",,d=\"e\"} 1\n",
            "a{b=\"c\"d=\"e\"} 1\n",
            "a{b=\"c\",b=\"d\"} 1\n",
            "a{b=\"c\\\"d\"} 1\n",
            "a{b=\"c\\nd\"} 1\n",
            "a{b=\"\u{e9}\"} 1\n",
            "a{b=\"c\n\"} 1\n",
            "a{b=\"c\"} 1 \n",
            "a{b=\"c\"}  1\n",
            "a{b=\"c\"}\t1\n",
            "a{b=\"c\"} 1\r\n",
            "a{b=\"c\"} 1x\n",
            "a{b=\"c\"} 1e\n",
            "a{b=\"c\"} 1e99999\n",
            "a{b=\"c\"} 12345678901234567890\n",
            "a{b=\"c\"} 9007199254740993\n",
            "a{b=\"c\"} 1e23\n",
            "a{b=\"c\"} 1e-23\n",
            "a{b=\"c\"} -0\n",
            "a{b=\"c\"} +.5\n",
            "a{b=\"c\"} .\n",
            "a{b=\"c\"} NaN\n",
            "a{b=\"c\"} -Inf 5\n",
            "a 1 99999999999999999999\n",
            "a 1 9223372036854775807\n",
            "a 1 -5\n",
            "a 1 5 6\n",
            "a 1 5{\n",
            "a{\"q\"} 1\n",
            "{\"a.b\",c=\"d\"} 1\n",
            "a {b=\"c\"} 1\n",
            "a{ b=\"c\"} 1\n",
            "a{b =\"c\"} 1\n",
            "a{b=\"c\"\n",
            "a{b=\"c",
            "a{1=\"c\"} 1\n",
            "a\x00 1\n",
            "# HELP a x\n# TYPE a counter\na_total{b=\"1\"} 3\n",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 4\n",
            "# TYPE \"h.x\" summary\n{\"h.x\",quantile=\"1\"} 3\n",
            "# TYPE h summary\nh{quantile=\"1\"} 3\nh_sum 1\nh_count 2\n",
        ];
        for line in lines {
            assert_same(line.as_bytes());
        }
        let many: String = (0..=DEFAULT_MAX_LABELS_PER_SERIES)
            .map(|i| format!("l{i}=\"v\","))
            .collect();
        assert_same(format!("a{{{many}}} 1\n").as_bytes());
    }

    fn fragment() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "a",
            "b_c",
            ":",
            "1",
            "0",
            "9",
            ".",
            "e",
            "E",
            "+",
            "-",
            "{",
            "}",
            "=",
            "\"",
            ",",
            " ",
            "\t",
            "\n",
            "\\",
            "#",
            "\u{e9}",
            "\x00",
            "\r",
            "le",
            "NaN",
            "Inf",
            "x=\"y\"",
            "1.5e+03",
            " 123",
            "# TYPE a counter\n",
            "a_total",
        ])
    }

    proptest! {
        #[test]
        fn simple_path_agrees_with_general_path(parts in prop::collection::vec(fragment(), 0..40)) {
            assert_same(parts.concat().as_bytes());
            assert_guesses_agree(parts.concat().as_bytes());
        }

        #[test]
        fn simple_path_agrees_on_series_shaped_lines(
            name in "[a-z_:][a-z0-9_:]{0,5}",
            labels in prop::collection::vec(("[a-z_][a-z0-9_]{0,3}", "[ -~]{0,4}"), 0..4),
            value in "[-+]?[0-9]{0,21}(\\.[0-9]{0,4})?([eE][-+]?[0-9]{0,6})?",
            ts in prop::option::of("[0-9]{1,20}"),
        ) {
            let block: Vec<_> = labels.iter().map(|(n, v)| format!("{n}=\"{v}\"")).collect();
            let ts = ts.map(|t| format!(" {t}")).unwrap_or_default();
            let body = format!("{name}{{{}}} {value}{ts}\n{name} {value}\n", block.join(","));
            assert_same(body.as_bytes());
            // Each line twice: the second is taken by guessing.
            let twice = format!("{body}{body}");
            assert_guesses_agree(twice.as_bytes());
        }
    }

    /// The look-ahead memo answers the later lines of a metric point
    /// without changing any answer: each point gets its own `_created`, a
    /// point without one gets none, and skipping `_created` lines does not
    /// change what the other lines see.
    #[test]
    fn created_timestamp_memo_is_per_point() {
        let body = "# TYPE h histogram\n\
            h_bucket{a=\"1\",le=\"1\"} 1\nh_bucket{a=\"1\",le=\"2\"} 1\nh_bucket{a=\"1\",le=\"+Inf\"} 1\n\
            h_count{a=\"1\"} 1\nh_sum{a=\"1\"} 1\nh_created{a=\"1\"} 10\n\
            h_bucket{a=\"2\",le=\"+Inf\"} 1\nh_count{a=\"2\"} 1\nh_sum{a=\"2\"} 1\n\
            h_bucket{a=\"3\",le=\"+Inf\"} 1\nh_count{a=\"3\"} 1\nh_created{a=\"3\"} 30.5\n\
            # TYPE c counter\nc_total 1\nc_created 40\n# EOF\n";
        for skip in [false, true] {
            let options = ParserOptions {
                skip_created_series: skip,
                ..ParserOptions::default()
            };
            let mut p = Parser::with_options(Format::OpenMetrics, body.as_bytes(), options);
            let mut seen = Vec::new();
            while let Some(e) = p.next().expect("valid") {
                if e != Entry::Series {
                    continue;
                }
                let mut b = LabelsBuilder::new();
                p.labels(&mut b).expect("labels");
                let key = format!("{}{}", p.metric_name(), b.get("a").unwrap_or(""));
                // Asked twice: the memo must answer as the scan did.
                let first = p.created_timestamp();
                assert_eq!(first, p.created_timestamp());
                seen.push((key, first));
            }
            let expect: Vec<(String, Option<i64>)> = [
                ("h_bucket1", Some(10_000)),
                ("h_bucket1", Some(10_000)),
                ("h_bucket1", Some(10_000)),
                ("h_count1", Some(10_000)),
                ("h_sum1", Some(10_000)),
                ("h_created1", None),
                ("h_bucket2", None),
                ("h_count2", None),
                ("h_sum2", None),
                ("h_bucket3", Some(30_500)),
                ("h_count3", Some(30_500)),
                ("h_created3", None),
                ("c_total", Some(40_000)),
                ("c_created", None),
            ]
            .into_iter()
            .filter(|(k, _)| !(skip && k.contains("_created")))
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            assert_eq!(seen, expect, "skip_created_series={skip}");
        }
    }
}
