//! `promtool check metrics`-style validation.
//!
//! [`check_metrics`] drives the same [`Parser`] the scrape loop uses and
//! layers on top of it the rules a scrape does not enforce:
//! - OpenMetrics: the semantic rules of the specification (metric family
//!   grouping and name clashes, metadata placement and repetition, counter /
//!   histogram / summary / info / stateset value and label rules, bucket
//!   order and `+Inf` consistency, exemplar placement and size, timestamp
//!   order). This is what makes the OpenMetrics conformance suite pass.
//! - Prometheus text: the stricter rules of the client-side parser promtool
//!   uses (repeated HELP/TYPE, TYPE after samples, non-float `le` /
//!   `quantile`, missing final newline).
//! - For both: promtool's lint warnings (no help, counter suffix, non-base
//!   units). Warnings never make an input invalid.
//!
//! This path is not hot, so it allocates freely.

use std::collections::{HashMap, HashSet};

use tributary_model::{LabelsBuilder, MetricType};

use crate::error::ParseError;
use crate::format::Format;
use crate::number::parse_go_float;
use crate::parser::{allowed_suffixes, Entry, Parser};

/// Exemplar label sets may hold at most this many characters (OpenMetrics).
const MAX_EXEMPLAR_LABEL_RUNES: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The input is invalid.
    Error,
    /// A lint finding; the input is still valid.
    Warning,
}

/// One finding, located by 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The outcome of [`check_metrics`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// The format the input was checked as.
    pub format: Format,
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// True when no problem is an error (warnings allowed).
    pub fn is_valid(&self) -> bool {
        self.errors().next().is_none()
    }

    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Warning)
    }
}

/// Guesses the format of a body when no `Content-Type` is known.
///
/// OpenMetrics when the body is empty (an empty OpenMetrics body is invalid,
/// which is the more useful verdict for a checker) or has a line starting
/// with `# EOF`, unless a `# TYPE` line declares a counter named `*_total`
/// (only Prometheus text names counters that way; some Prometheus text
/// pages end in a `# EOF` comment).
pub fn sniff_format(input: &[u8]) -> Format {
    if looks_like_protobuf(input) {
        return Format::Protobuf;
    }
    if input.is_empty() {
        return Format::OpenMetrics;
    }
    let mut has_eof = false;
    for line in input.split(|&b| b == b'\n') {
        if line.starts_with(b"# EOF") {
            has_eof = true;
        }
        if line.starts_with(b"# TYPE ") && line.ends_with(b"_total counter") {
            return Format::PrometheusText;
        }
    }
    if has_eof {
        Format::OpenMetrics
    } else {
        Format::PrometheusText
    }
}

/// Protobuf when the body starts like a delimited `MetricFamily` (a length
/// prefix, then field 1, the name) and the whole body decodes as one. Text
/// cannot be mistaken for it: a text body that happens to start with such
/// bytes does not survive a full protobuf decode.
fn looks_like_protobuf(input: &[u8]) -> bool {
    let prefix = input.iter().take(5).take_while(|&&b| b >= 0x80).count() + 1;
    if input.get(prefix) != Some(&0x0a) {
        return false;
    }
    let mut parser = Parser::new(Format::Protobuf, input);
    loop {
        match parser.next() {
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

/// Checks an exposition. `format: None` sniffs it (see [`sniff_format`]).
/// Stops at the first syntax error; semantic errors are all collected.
/// Protobuf is checked for what Prometheus rejects while scraping (decode
/// errors, names, label validity and uniqueness); its `line` numbers count
/// metric family messages and its columns are byte offsets.
pub fn check_metrics(input: &[u8], format: Option<Format>) -> CheckReport {
    let format = format.unwrap_or_else(|| sniff_format(input));
    if format == Format::Protobuf {
        return check_protobuf(input);
    }
    let mut checker = Checker::new(format);
    let mut parser = Parser::new(format, input);
    let mut builder = LabelsBuilder::new();
    loop {
        match parser.next() {
            Ok(Some(entry)) => checker.entry(&parser, entry, &mut builder),
            Ok(None) => break,
            Err(e) => {
                checker.parse_error(e);
                break;
            }
        }
    }
    checker.finish(input);
    CheckReport {
        format,
        problems: checker.problems,
    }
}

/// Per-family state while its lines are being read.
#[derive(Debug)]
struct Family {
    name: String,
    kind: MetricType,
    line: usize,
    has_type: bool,
    has_help: bool,
    has_unit: bool,
    saw_sample: bool,
    /// Label sets (without `le`/`quantile`) whose samples are complete.
    done_groups: HashSet<String>,
    group: Option<Group>,
}

/// One metric point of a family: samples sharing labels apart from
/// `le`/`quantile`.
#[derive(Debug, Default)]
struct Group {
    key: String,
    line: usize,
    last_le: Option<f64>,
    last_bucket: Option<f64>,
    inf_bucket: Option<f64>,
    negative_bucket: bool,
    count: Option<f64>,
    sum: Option<f64>,
    last_series: Option<(String, Option<i64>)>,
}

struct Checker {
    format: Format,
    problems: Vec<Problem>,
    current: Option<Family>,
    /// OpenMetrics: names of families already closed.
    closed: HashSet<String>,
    /// OpenMetrics: sample names owned by closed families.
    claimed: HashMap<String, String>,
    /// Prometheus text: per name, (HELP seen, TYPE seen, samples seen).
    prom_seen: HashMap<String, (bool, bool, bool)>,
}

impl Checker {
    fn new(format: Format) -> Self {
        Checker {
            format,
            problems: Vec::new(),
            current: None,
            closed: HashSet::new(),
            claimed: HashMap::new(),
            prom_seen: HashMap::new(),
        }
    }

    fn om(&self) -> bool {
        self.format == Format::OpenMetrics
    }

    fn push(&mut self, severity: Severity, line: usize, message: impl Into<String>) {
        self.problems.push(Problem {
            severity,
            line,
            column: 1,
            message: message.into(),
        });
    }

    fn error(&mut self, line: usize, message: impl Into<String>) {
        self.push(Severity::Error, line, message);
    }

    fn parse_error(&mut self, e: ParseError) {
        self.problems.push(Problem {
            severity: Severity::Error,
            line: e.line,
            column: e.column,
            message: e.message,
        });
    }

    fn entry(&mut self, parser: &Parser<'_>, entry: Entry<'_>, builder: &mut LabelsBuilder) {
        let line = parser.line_number();
        match entry {
            Entry::Type { name, kind } => self.metadata(line, &name, Meta::Type(kind)),
            Entry::Help { name, text } => self.metadata(line, &name, Meta::Help(text.is_empty())),
            Entry::Unit { name, .. } => self.metadata(line, &name, Meta::Unit),
            Entry::Comment(_) => {}
            Entry::Series => self.sample(parser, builder),
            Entry::Histogram => {}
            Entry::Eof => self.close_family(),
        }
    }

    // ----- metadata ------------------------------------------------------

    fn metadata(&mut self, line: usize, name: &str, meta: Meta) {
        if !self.om() {
            self.prom_metadata(line, name, &meta);
        }
        let same = self.current.as_ref().is_some_and(|f| f.name == name);
        if !same {
            self.close_family();
            if self.om() && self.closed.contains(name) {
                self.error(
                    line,
                    format!("metric family {name:?} appears more than once (interleaved)"),
                );
            }
            self.current = Some(Family::new(name, line));
        }
        let om = self.om();
        let Some(family) = self.current.as_mut() else {
            return;
        };
        let mut problems = Vec::new();
        if family.saw_sample && om {
            problems.push(format!("metadata for {name:?} after its samples"));
        }
        match meta {
            Meta::Type(kind) => {
                if family.has_type && om {
                    problems.push(format!("second TYPE line for {name:?}"));
                }
                family.has_type = true;
                family.kind = kind;
            }
            Meta::Help(_) => {
                if family.has_help && om {
                    problems.push(format!("second HELP line for {name:?}"));
                }
                family.has_help = true;
            }
            Meta::Unit => {
                if family.has_unit && om {
                    problems.push(format!("second UNIT line for {name:?}"));
                }
                family.has_unit = true;
            }
        }
        if family.has_unit && matches!(family.kind, MetricType::Info | MetricType::StateSet) {
            problems.push(format!(
                "{} metric {name:?} must not have a unit",
                family.kind.as_str()
            ));
        }
        for p in problems {
            self.error(line, p);
        }
    }

    /// The client-side text parser's rules (what promtool enforces).
    fn prom_metadata(&mut self, line: usize, name: &str, meta: &Meta) {
        let seen = self.prom_seen.entry(name.to_owned()).or_default();
        let problem = match meta {
            Meta::Type(_) if seen.1 => Some("second TYPE line"),
            Meta::Type(_) if seen.2 => Some("TYPE line after samples"),
            Meta::Help(false) if seen.0 => Some("second HELP line"),
            _ => None,
        };
        match meta {
            Meta::Type(_) => seen.1 = true,
            Meta::Help(empty) => seen.0 |= !empty,
            Meta::Unit => {}
        }
        if let Some(p) = problem {
            self.error(line, format!("{p} for metric name {name:?}"));
        }
    }

    // ----- samples -------------------------------------------------------

    fn sample(&mut self, parser: &Parser<'_>, builder: &mut LabelsBuilder) {
        let line = parser.line_number();
        let name = parser.metric_name().into_owned();
        if let Err(e) = parser.fill_labels(builder, false, &mut |_| {}) {
            self.parse_error(e);
            return;
        }
        let suffix = self.family_suffix(&name);
        let suffix = match suffix {
            Some(s) => s,
            None => {
                self.close_family();
                if self.om() && self.closed.contains(&name) {
                    self.error(
                        line,
                        format!("metric family {name:?} appears more than once (interleaved)"),
                    );
                }
                self.current = Some(Family::new(&name, line));
                ""
            }
        };
        let (kind, family_name) = match self.current.as_mut() {
            Some(f) => {
                f.saw_sample = true;
                (f.kind, f.name.clone())
            }
            None => return,
        };
        if !self.om() {
            self.prom_seen.entry(family_name).or_default().2 = true;
            self.prom_sample_rules(line, kind, suffix, builder);
            return;
        }
        let sample = Sample {
            line,
            kind,
            suffix,
            family: &family_name,
            builder,
            parser,
        };
        let mut problems = Vec::new();
        self.group_sample(&sample, &mut problems);
        sample.value_rules(&mut problems);
        sample.exemplar_rules(&mut problems);
        for p in problems {
            self.error(line, p);
        }
    }

    /// The suffix of `name` within the open family, if it belongs there.
    fn family_suffix(&self, name: &str) -> Option<&'static str> {
        let family = self.current.as_ref()?;
        let rest = name.strip_prefix(family.name.as_str())?;
        allowed_suffixes(family.kind, self.format)
            .iter()
            .copied()
            .find(|s| *s == rest)
    }

    fn prom_sample_rules(
        &mut self,
        line: usize,
        kind: MetricType,
        suffix: &str,
        labels: &LabelsBuilder,
    ) {
        let float_label = match (kind, suffix) {
            (MetricType::Summary, "") => Some("quantile"),
            (MetricType::Histogram, "_bucket") => Some("le"),
            _ => None,
        };
        if let Some(label) = float_label {
            let ok = labels
                .get(label)
                .is_some_and(|v| parse_go_float(v.as_bytes()).is_some());
            if !ok {
                self.error(line, format!("expected float as value for {label:?} label"));
            }
        }
    }

    /// Grouping, bucket order and timestamp order within one family.
    fn group_sample(&mut self, s: &Sample<'_, '_>, problems: &mut Vec<String>) {
        let key = group_key(s.builder, s.kind);
        let series_key = format!("{}{key}", s.suffix);
        let Some(family) = self.current.as_mut() else {
            return;
        };
        if family.group.as_ref().is_none_or(|g| g.key != key) {
            if let Some(done) = family.group.take() {
                let kind = family.kind;
                family.done_groups.insert(done.key.clone());
                finish_group(kind, &done, problems);
            }
            if family.done_groups.contains(&key) {
                problems.push(format!("samples of {key} are not grouped together"));
            }
            family.group = Some(Group {
                key: key.clone(),
                line: s.line,
                ..Group::default()
            });
        }
        let Some(group) = family.group.as_mut() else {
            return;
        };
        let (_, ts, value) = s.parser.series();
        if let Some((last_key, last_ts)) = &group.last_series {
            if *last_key == series_key {
                match (last_ts, ts) {
                    (Some(a), Some(b)) if b < *a => {
                        problems.push("timestamps of a series must not go backwards".into())
                    }
                    (Some(_), None) | (None, Some(_)) => problems
                        .push("samples of one series must all or none have a timestamp".into()),
                    _ => {}
                }
            }
        }
        group.last_series = Some((series_key, ts));
        let histogram = matches!(s.kind, MetricType::Histogram | MetricType::GaugeHistogram);
        match s.suffix {
            "_bucket" if histogram => bucket_rules(group, s.builder.get("le"), value, problems),
            "_count" | "_gcount" if histogram => group.count = Some(value),
            "_sum" | "_gsum" if histogram => group.sum = Some(value),
            _ => {}
        }
    }

    fn close_family(&mut self) {
        let Some(mut family) = self.current.take() else {
            return;
        };
        let mut problems = Vec::new();
        if let Some(group) = family.group.take() {
            finish_group(family.kind, &group, &mut problems);
        }
        for p in problems {
            self.error(family.line, p);
        }
        self.lint_family(&family);
        if !self.om() {
            return;
        }
        let mut owned: Vec<String> = allowed_suffixes(family.kind, self.format)
            .iter()
            .map(|s| format!("{}{s}", family.name))
            .collect();
        owned.push(family.name.clone());
        for sample_name in owned {
            if let Some(other) = self.claimed.get(&sample_name) {
                if *other != family.name {
                    let msg = format!(
                        "metric family {:?} clashes with family {other:?} over {sample_name:?}",
                        family.name
                    );
                    self.error(family.line, msg);
                }
            } else {
                self.claimed.insert(sample_name, family.name.clone());
            }
        }
        self.closed.insert(family.name);
    }

    fn lint_family(&mut self, family: &Family) {
        if !family.saw_sample {
            return;
        }
        let name = family.name.as_str();
        if !family.has_help {
            self.push(
                Severity::Warning,
                family.line,
                format!("{name}: no help text"),
            );
        }
        let text_counter = !self.om() && family.kind == MetricType::Counter;
        if text_counter && !name.ends_with("_total") {
            self.push(
                Severity::Warning,
                family.line,
                format!("{name}: counter metrics should have \"_total\" suffix"),
            );
        }
        if family.kind != MetricType::Counter && name.ends_with("_total") {
            self.push(
                Severity::Warning,
                family.line,
                format!("{name}: non-counter metrics should not have \"_total\" suffix"),
            );
        }
        for (unit, base) in NON_BASE_UNITS {
            let infix = format!("_{unit}");
            if name.ends_with(&infix) || name.contains(&format!("{infix}_")) {
                self.push(
                    Severity::Warning,
                    family.line,
                    format!("{name}: use base unit {base:?} instead of {unit:?}"),
                );
            }
        }
    }

    fn finish(&mut self, input: &[u8]) {
        self.close_family();
        let has_errors = self.problems.iter().any(|p| p.severity == Severity::Error);
        if !self.om() && !has_errors && !input.is_empty() && !input.ends_with(b"\n") {
            let line = input.iter().filter(|&&b| b == b'\n').count() + 1;
            self.error(
                line,
                "unexpected end of input stream (missing final newline)",
            );
        }
    }
}

/// Units promtool asks to replace by their base unit.
const NON_BASE_UNITS: &[(&str, &str)] = &[
    ("nanoseconds", "seconds"),
    ("microseconds", "seconds"),
    ("milliseconds", "seconds"),
    ("minutes", "seconds"),
    ("hours", "seconds"),
    ("days", "seconds"),
    ("weeks", "seconds"),
    ("kilobytes", "bytes"),
    ("megabytes", "bytes"),
    ("gigabytes", "bytes"),
    ("terabytes", "bytes"),
    ("kibibytes", "bytes"),
    ("mebibytes", "bytes"),
    ("gibibytes", "bytes"),
    ("centigrade", "celsius"),
    ("fahrenheit", "celsius"),
    ("percent", "ratio"),
];

enum Meta {
    Type(MetricType),
    /// Whether the text was empty.
    Help(bool),
    Unit,
}

impl Family {
    fn new(name: &str, line: usize) -> Self {
        Family {
            name: name.to_owned(),
            kind: MetricType::Unknown,
            line,
            has_type: false,
            has_help: false,
            has_unit: false,
            saw_sample: false,
            done_groups: HashSet::new(),
            group: None,
        }
    }
}

/// The current sample as the OpenMetrics rules see it.
struct Sample<'p, 'a> {
    line: usize,
    kind: MetricType,
    suffix: &'static str,
    family: &'p str,
    builder: &'p LabelsBuilder,
    parser: &'p Parser<'a>,
}

impl Sample<'_, '_> {
    fn value(&self) -> f64 {
        self.parser.series().2
    }

    fn value_rules(&self, problems: &mut Vec<String>) {
        let v = self.value();
        let counter_like = |what: &str, problems: &mut Vec<String>| {
            if v.is_nan() || v < 0.0 {
                problems.push(format!("{what} must be a non-negative number, got {v}"));
            }
        };
        match (self.kind, self.suffix) {
            (MetricType::Counter, "_total") => counter_like("counter value", problems),
            (
                MetricType::Histogram | MetricType::GaugeHistogram,
                "_bucket" | "_count" | "_gcount",
            ) => counter_like("bucket and count values", problems),
            (MetricType::Histogram, "_sum") => counter_like("histogram sum", problems),
            (MetricType::GaugeHistogram, "_gsum") if v.is_nan() => {
                problems.push("gauge histogram sum must not be NaN".into())
            }
            (MetricType::Summary, "_count" | "_sum") => {
                counter_like("summary count and sum", problems)
            }
            (MetricType::Summary, "") => {
                if v < 0.0 {
                    problems.push("summary quantile values must not be negative".into());
                }
                let quantile = self
                    .builder
                    .get("quantile")
                    .and_then(|q| parse_go_float(q.as_bytes()));
                if !quantile.is_some_and(|q| (0.0..=1.0).contains(&q)) {
                    problems.push("summary sample needs a quantile label between 0 and 1".into());
                }
            }
            (MetricType::Info, _) if v != 1.0 => {
                problems.push("info metric value must be 1".into())
            }
            (MetricType::StateSet, _) => {
                if v != 0.0 && v != 1.0 {
                    problems.push("stateset value must be 0 or 1".into());
                }
                if self.builder.get(self.family).is_none() {
                    problems.push(format!(
                        "stateset sample needs a label named {:?}",
                        self.family
                    ));
                }
            }
            _ => {}
        }
    }

    fn exemplar_rules(&self, problems: &mut Vec<String>) {
        let Some(exemplar) = self.parser.exemplar() else {
            return;
        };
        let allowed = matches!(
            (self.kind, self.suffix),
            (MetricType::Counter, "_total")
                | (
                    MetricType::Histogram | MetricType::GaugeHistogram,
                    "_bucket"
                )
        );
        if !allowed {
            problems
                .push("exemplars are only allowed on counter totals and histogram buckets".into());
        }
        let runes: usize = exemplar
            .labels
            .iter()
            .map(|l| l.name.chars().count() + l.value.chars().count())
            .sum();
        if runes > MAX_EXEMPLAR_LABEL_RUNES {
            problems.push(format!(
                "exemplar labels have {runes} characters, more than {MAX_EXEMPLAR_LABEL_RUNES}"
            ));
        }
    }
}

/// Canonical text of the labels that identify a metric point.
fn group_key(builder: &LabelsBuilder, kind: MetricType) -> String {
    let mut b = builder.clone();
    b.del(tributary_model::METRIC_NAME);
    match kind {
        MetricType::Histogram | MetricType::GaugeHistogram => b.del("le"),
        MetricType::Summary => b.del("quantile"),
        _ => {}
    }
    b.labels().to_string()
}

fn bucket_rules(group: &mut Group, le: Option<&str>, value: f64, problems: &mut Vec<String>) {
    let bound = match le {
        Some("+Inf") => f64::INFINITY,
        Some(text) => match parse_go_float(text.as_bytes()) {
            Some(b) if b.is_finite() => b,
            _ => {
                problems.push(format!("invalid bucket bound le={text:?}"));
                return;
            }
        },
        None => {
            problems.push("histogram bucket without le label".into());
            return;
        }
    };
    if group.last_le.is_some_and(|last| bound <= last) {
        problems.push("histogram buckets must be in increasing le order".into());
    }
    if group.last_bucket.is_some_and(|last| value < last) {
        problems.push("histogram bucket values must not decrease".into());
    }
    if bound < 0.0 {
        group.negative_bucket = true;
    }
    if bound.is_infinite() {
        group.inf_bucket = Some(value);
    }
    group.last_le = Some(bound);
    group.last_bucket = Some(value);
}

/// Rules that need all samples of one histogram metric point.
fn finish_group(kind: MetricType, group: &Group, problems: &mut Vec<String>) {
    if !matches!(kind, MetricType::Histogram | MetricType::GaugeHistogram) {
        return;
    }
    let at = group.line;
    let Some(inf) = group.inf_bucket else {
        problems.push(format!(
            "histogram starting at line {at} has no +Inf bucket"
        ));
        return;
    };
    if group.count.is_some() != group.sum.is_some() {
        problems.push(format!(
            "histogram starting at line {at} must have both or neither of count and sum"
        ));
    }
    if group.count.is_some_and(|c| c != inf) {
        problems.push(format!(
            "histogram starting at line {at}: count does not match the +Inf bucket"
        ));
    }
    match (kind, group.sum) {
        (MetricType::Histogram, Some(_)) if group.negative_bucket => problems.push(format!(
            "histogram starting at line {at} has negative buckets and a sum"
        )),
        (MetricType::GaugeHistogram, Some(sum)) if sum < 0.0 && !group.negative_bucket => problems
            .push(format!(
                "gauge histogram starting at line {at} has a negative sum but no negative buckets"
            )),
        _ => {}
    }
}

fn check_protobuf(input: &[u8]) -> CheckReport {
    let mut problems = Vec::new();
    let mut parser = Parser::new(Format::Protobuf, input);
    let mut builder = LabelsBuilder::new();
    let to_problem = |e: ParseError| Problem {
        severity: Severity::Error,
        line: e.line,
        column: e.column,
        message: e.message,
    };
    loop {
        match parser.next() {
            Ok(Some(Entry::Series | Entry::Histogram)) => {
                if let Err(e) = parser.labels(&mut builder) {
                    problems.push(to_problem(e));
                    break;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                problems.push(to_problem(e));
                break;
            }
        }
    }
    CheckReport {
        format: Format::Protobuf,
        problems,
    }
}
