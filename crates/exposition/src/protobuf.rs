//! The protobuf exposition parser
//! (`application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited`).
//!
//! The body is a stream of varint-length-prefixed `MetricFamily` messages.
//! Like Prometheus, the parser presents it through the text-style entry
//! stream: per non-empty family a HELP entry, a UNIT entry if a unit is set,
//! a TYPE entry, then the samples. Counters, gauges and untyped metrics give
//! one float series each; summaries give `_count`, `_sum` and one series per
//! quantile (`quantile` label); classic histograms give `_count`, `_sum` and
//! one `_bucket` series per bucket (`le` label, with a `+Inf` bucket added
//! when the exposition leaves it out). A histogram with native (exponential)
//! buckets yields one [`NativeHistogram`] entry instead, followed by its
//! classic series only when asked for (`keep_classic_histograms`).
//!
//! Messages are decoded by hand, zero-copy: strings borrow from the body and
//! the per-metric scratch vectors (labels, buckets, quantiles, spans) are
//! reused, so a steady-state scrape allocates nothing per sample. Each
//! metric is decoded once when reached; its series are then served from the
//! decoded fields.
//!
//! The scrape-cache key of a series ([`ProtoParser::key`]) is a canonical
//! byte string built in a reused buffer: the metric name, then per label
//! `0xFF name 0xFF value` (wire order), then for `le`/`quantile` series
//! `0xFE` followed by the eight bytes of the bound. `0xFE`/`0xFF` never
//! occur in UTF-8, so distinct series can never share a key.
//!
//! Positions in errors: `line` is the 1-based index of the metric family
//! message, `column` the 1-based byte offset in the body.

use tributary_model::{
    BucketSpan, HistogramCount, LabelsBuilder, MetricType, NativeHistogram, ResetHint, METRIC_NAME,
};

use crate::error::ParseError;
use crate::number::{format_om_float, NORMAL_NAN_BITS};
use crate::parser::{Entry, Exemplar};
use crate::wire::{
    as_bytes, as_f64, as_str, as_varint, delimited, push_f64s, push_sint64s, zigzag32, Fields,
    WireError, WireValue,
};

/// `io.prometheus.client.MetricType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProtoType {
    Counter,
    Gauge,
    Summary,
    Untyped,
    Histogram,
    GaugeHistogram,
}

impl ProtoType {
    fn from_wire(v: u64) -> Option<ProtoType> {
        Some(match v as i32 {
            0 => ProtoType::Counter,
            1 => ProtoType::Gauge,
            2 => ProtoType::Summary,
            3 => ProtoType::Untyped,
            4 => ProtoType::Histogram,
            5 => ProtoType::GaugeHistogram,
            _ => return None,
        })
    }

    fn metric_type(self) -> MetricType {
        match self {
            ProtoType::Counter => MetricType::Counter,
            ProtoType::Gauge => MetricType::Gauge,
            ProtoType::Summary => MetricType::Summary,
            ProtoType::Untyped => MetricType::Unknown,
            ProtoType::Histogram => MetricType::Histogram,
            ProtoType::GaugeHistogram => MetricType::GaugeHistogram,
        }
    }

    fn is_histogram(self) -> bool {
        matches!(self, ProtoType::Histogram | ProtoType::GaugeHistogram)
    }
}

/// One classic histogram bucket.
#[derive(Debug, Clone, Copy, Default)]
struct ClassicBucket<'a> {
    upper_bound: f64,
    count: u64,
    count_float: f64,
    exemplar: Option<&'a [u8]>,
}

/// The `Histogram` message of the current metric, minus what goes straight
/// into the reused [`NativeHistogram`].
#[derive(Debug, Clone, Default)]
struct HistogramFields<'a> {
    count: u64,
    count_float: f64,
    sum: f64,
    buckets: Vec<ClassicBucket<'a>>,
    created: Option<i64>,
    zero_count: u64,
    zero_count_float: f64,
    exemplars: Vec<&'a [u8]>,
}

/// The decoded `Metric` message being served.
#[derive(Debug, Clone, Default)]
struct MetricFields<'a> {
    labels: Vec<(&'a str, &'a str)>,
    timestamp_ms: i64,
    gauge: f64,
    counter: f64,
    untyped: f64,
    counter_exemplar: Option<&'a [u8]>,
    counter_created: Option<i64>,
    summary_count: u64,
    summary_sum: f64,
    quantiles: Vec<(f64, f64)>,
    summary_created: Option<i64>,
    histogram: HistogramFields<'a>,
}

impl MetricFields<'_> {
    fn clear(&mut self) {
        self.labels.clear();
        self.timestamp_ms = 0;
        self.gauge = 0.0;
        self.counter = 0.0;
        self.untyped = 0.0;
        self.counter_exemplar = None;
        self.counter_created = None;
        self.summary_count = 0;
        self.summary_sum = 0.0;
        self.quantiles.clear();
        self.summary_created = None;
        let h = &mut self.histogram;
        h.count = 0;
        h.count_float = 0.0;
        h.sum = 0.0;
        h.buckets.clear();
        h.created = None;
        h.zero_count = 0;
        h.zero_count_float = 0.0;
        h.exemplars.clear();
    }
}

/// Which series of the current metric is being served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Counter, gauge or untyped value.
    Value,
    /// The native histogram itself.
    Native,
    Count,
    Sum,
    Quantile(usize),
    Bucket(usize),
    /// The `+Inf` bucket the exposition left out.
    InfBucket,
}

/// Where the parser is in the entry stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Read the next family message.
    Family,
    /// HELP was served; UNIT (if any) or TYPE is next.
    AfterHelp,
    /// UNIT was served; TYPE is next.
    AfterUnit,
    /// TYPE was served; the first metric is next.
    AfterType,
    /// A series or histogram of the current metric was served.
    InMetric,
    Done,
}

/// The protobuf pull parser; [`crate::Parser`] delegates to it.
#[derive(Debug, Clone)]
pub(crate) struct ProtoParser<'a> {
    body: &'a [u8],
    max_labels: usize,
    keep_classic: bool,
    /// Offset of the next family message's length prefix.
    pos: usize,
    /// 1-based index of the current family message.
    family_no: usize,
    phase: Phase,
    name: &'a str,
    help: &'a str,
    unit: &'a str,
    kind: ProtoType,
    /// Unread `metric` fields of the current family.
    metrics: Fields<'a>,
    metric: MetricFields<'a>,
    /// Body offset of the current metric message, for errors.
    metric_at: usize,
    native: bool,
    step: Step,
    /// The native histogram of the current metric (valid when `native`).
    histogram: NativeHistogram,
    /// Spare span buffer for compaction.
    scratch_spans: Vec<BucketSpan>,
    key: Vec<u8>,
}

type Res<T> = Result<T, ParseError>;

impl<'a> ProtoParser<'a> {
    pub(crate) fn new(body: &'a [u8], max_labels: usize, keep_classic: bool) -> Self {
        ProtoParser {
            body,
            max_labels,
            keep_classic,
            pos: 0,
            family_no: 0,
            phase: Phase::Family,
            name: "",
            help: "",
            unit: "",
            kind: ProtoType::Untyped,
            metrics: Fields::new(&[], 0),
            metric: MetricFields::default(),
            metric_at: 0,
            native: false,
            step: Step::Value,
            histogram: NativeHistogram::default(),
            scratch_spans: Vec::new(),
            key: Vec::new(),
        }
    }

    pub(crate) fn family_number(&self) -> usize {
        self.family_no
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.family_no.max(1),
            column: offset + 1,
            message: message.into(),
        }
    }

    fn wire_error(&self, e: WireError) -> ParseError {
        self.error(e.offset, e.message)
    }

    /// The next entry; `Ok(None)` at the end of the body.
    pub(crate) fn next(&mut self) -> Res<Option<Entry<'a>>> {
        loop {
            match self.phase {
                Phase::Done => return Ok(None),
                Phase::Family => {
                    if self.pos >= self.body.len() {
                        self.phase = Phase::Done;
                        return Ok(None);
                    }
                    if self.read_family()? {
                        self.phase = Phase::AfterHelp;
                        return Ok(Some(Entry::Help {
                            name: self.name.into(),
                            text: self.help.into(),
                        }));
                    }
                }
                Phase::AfterHelp if !self.unit.is_empty() => {
                    self.phase = Phase::AfterUnit;
                    return Ok(Some(Entry::Unit {
                        name: self.name.into(),
                        unit: self.unit,
                    }));
                }
                Phase::AfterHelp | Phase::AfterUnit => {
                    self.phase = Phase::AfterType;
                    return Ok(Some(Entry::Type {
                        name: self.name.into(),
                        kind: self.kind.metric_type(),
                    }));
                }
                Phase::AfterType => {
                    self.phase = Phase::InMetric;
                    return self.start_metric();
                }
                Phase::InMetric => match self.following_step() {
                    Some(step) => {
                        self.step = step;
                        return Ok(Some(self.serve()));
                    }
                    None => return self.start_metric(),
                },
            }
        }
    }

    /// Decodes the next family message. Returns false for a family without
    /// metrics, which Prometheus skips without looking at it further.
    fn read_family(&mut self) -> Res<bool> {
        let range = delimited(self.body, self.pos).map_err(|e| self.wire_error(e))?;
        self.family_no += 1;
        self.pos = range.end;
        let start = range.start;
        let message = self.body.get(range).unwrap_or_default();
        let mut fields = Fields::new(message, start);
        let (mut name, mut help, mut unit, mut kind) = ("", "", "", 0u64);
        let mut first_metric: Option<usize> = None;
        while let Some((field, value)) = self.wire(fields.next_field())? {
            let at = fields.offset();
            let fail = |msg: String| self.error(at, format!("MetricFamily: {msg}"));
            match field {
                1 => name = as_str(value, "name").map_err(fail)?,
                2 => help = as_str(value, "help").map_err(fail)?,
                3 => kind = as_varint(value, "type").map_err(fail)?,
                4 => {
                    let metric = as_bytes(value, "metric").map_err(fail)?;
                    first_metric.get_or_insert(fields.offset_of(metric));
                }
                5 => unit = as_str(value, "unit").map_err(fail)?,
                _ => {}
            }
        }
        if first_metric.is_none() {
            return Ok(false);
        }
        if name.is_empty() {
            return Err(self.error(start, "invalid metric name: empty"));
        }
        let kind = ProtoType::from_wire(kind).ok_or_else(|| {
            self.error(
                start,
                format!("unknown metric type {kind} for metric {name:?}"),
            )
        })?;
        check_unit(name, unit, kind).map_err(|msg| self.error(start, msg))?;
        self.name = name;
        self.help = help;
        self.unit = unit;
        self.kind = kind;
        self.metrics = Fields::new(message, start);
        Ok(true)
    }

    fn wire<T>(&self, r: Result<T, WireError>) -> Res<T> {
        r.map_err(|e| self.wire_error(e))
    }

    /// Moves to the next metric of the family (or the next family) and
    /// serves its first series.
    fn start_metric(&mut self) -> Res<Option<Entry<'a>>> {
        loop {
            let next = self.metrics.next_field();
            match self.wire(next)? {
                None => {
                    self.phase = Phase::Family;
                    return self.next();
                }
                Some((4, value)) => {
                    let at = self.metrics.offset();
                    let bytes = as_bytes(value, "metric")
                        .map_err(|m| self.error(at, format!("MetricFamily: {m}")))?;
                    self.metric_at = self.metrics.offset_of(bytes);
                    self.decode_metric(bytes)?;
                    break;
                }
                Some(_) => {}
            }
        }
        self.native = self.kind.is_histogram() && self.has_native_buckets();
        self.step = match self.kind {
            ProtoType::Counter | ProtoType::Gauge | ProtoType::Untyped => Step::Value,
            ProtoType::Summary => Step::Count,
            ProtoType::Histogram | ProtoType::GaugeHistogram if self.native => {
                self.build_native_histogram();
                Step::Native
            }
            ProtoType::Histogram | ProtoType::GaugeHistogram => Step::Count,
        };
        Ok(Some(self.serve()))
    }

    /// The step after the current one within this metric, if any.
    fn following_step(&self) -> Option<Step> {
        let m = &self.metric;
        match self.step {
            Step::Value => None,
            Step::Native => {
                (self.keep_classic && !m.histogram.buckets.is_empty()).then_some(Step::Count)
            }
            Step::Count => Some(Step::Sum),
            Step::Sum if self.kind == ProtoType::Summary => {
                (!m.quantiles.is_empty()).then_some(Step::Quantile(0))
            }
            Step::Sum if m.histogram.buckets.is_empty() => Some(Step::InfBucket),
            Step::Sum => Some(Step::Bucket(0)),
            Step::Quantile(i) => (i + 1 < m.quantiles.len()).then_some(Step::Quantile(i + 1)),
            Step::Bucket(i) => {
                let bound = m.histogram.buckets.get(i).map(|b| b.upper_bound);
                if bound == Some(f64::INFINITY) {
                    None
                } else if i + 1 < m.histogram.buckets.len() {
                    Some(Step::Bucket(i + 1))
                } else {
                    Some(Step::InfBucket)
                }
            }
            Step::InfBucket => None,
        }
    }

    /// Rebuilds the cache key for the current step and returns its entry.
    fn serve(&mut self) -> Entry<'a> {
        self.key.clear();
        self.key.extend_from_slice(self.name.as_bytes());
        self.key.extend_from_slice(self.suffix().as_bytes());
        for (name, value) in &self.metric.labels {
            self.key.push(0xff);
            self.key.extend_from_slice(name.as_bytes());
            self.key.push(0xff);
            self.key.extend_from_slice(value.as_bytes());
        }
        if let Some((_, bound)) = self.magic_label() {
            let canonical = if bound.is_nan() {
                NORMAL_NAN_BITS
            } else if bound == 0.0 {
                0
            } else {
                bound.to_bits()
            };
            self.key.push(0xfe);
            self.key.extend_from_slice(&canonical.to_le_bytes());
        }
        if self.step == Step::Native {
            Entry::Histogram
        } else {
            Entry::Series
        }
    }

    fn suffix(&self) -> &'static str {
        match self.step {
            Step::Value | Step::Native => "",
            Step::Count => "_count",
            Step::Sum => "_sum",
            Step::Quantile(_) => "",
            Step::Bucket(_) | Step::InfBucket => "_bucket",
        }
    }

    /// The `quantile` or `le` label of the current series and its bound.
    fn magic_label(&self) -> Option<(&'static str, f64)> {
        match self.step {
            Step::Quantile(i) => self.metric.quantiles.get(i).map(|q| ("quantile", q.0)),
            Step::Bucket(i) => self
                .metric
                .histogram
                .buckets
                .get(i)
                .map(|b| ("le", b.upper_bound)),
            Step::InfBucket => Some(("le", f64::INFINITY)),
            _ => None,
        }
    }

    fn has_native_buckets(&self) -> bool {
        let h = &self.histogram;
        !h.positive_spans.is_empty()
            || !h.negative_spans.is_empty()
            || h.zero_threshold > 0.0
            || self.metric.histogram.zero_count > 0
    }

    // ----- accessors ------------------------------------------------------

    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }

    pub(crate) fn timestamp(&self) -> Option<i64> {
        (self.metric.timestamp_ms != 0).then_some(self.metric.timestamp_ms)
    }

    pub(crate) fn value(&self) -> f64 {
        let m = &self.metric;
        let h = &m.histogram;
        match (self.step, self.kind) {
            (Step::Value, ProtoType::Counter) => m.counter,
            (Step::Value, ProtoType::Gauge) => m.gauge,
            (Step::Value, _) => m.untyped,
            (Step::Native, _) => 0.0,
            (Step::Count, ProtoType::Summary) => m.summary_count as f64,
            (Step::Sum, ProtoType::Summary) => m.summary_sum,
            (Step::Quantile(i), _) => m.quantiles.get(i).map_or(0.0, |q| q.1),
            (Step::Count | Step::InfBucket, _) => prefer_float(h.count_float, h.count),
            (Step::Sum, _) => h.sum,
            (Step::Bucket(i), _) => h
                .buckets
                .get(i)
                .map_or(0.0, |b| prefer_float(b.count_float, b.count)),
        }
    }

    pub(crate) fn metric_name(&self) -> String {
        let mut name = String::with_capacity(self.name.len() + 7);
        name.push_str(self.name);
        name.push_str(self.suffix());
        name
    }

    pub(crate) fn metric_type(&self) -> MetricType {
        self.kind.metric_type()
    }

    pub(crate) fn histogram(&self) -> Option<&NativeHistogram> {
        (self.step == Step::Native).then_some(&self.histogram)
    }

    pub(crate) fn labels(
        &self,
        out: &mut LabelsBuilder,
        on_empty: &mut dyn FnMut(&str),
    ) -> Res<()> {
        out.clear();
        out.set(METRIC_NAME, &self.metric_name());
        let magic = self.magic_label();
        for (name, value) in &self.metric.labels {
            let clashes = magic.is_some_and(|(magic, _)| magic == *name);
            if *name == METRIC_NAME || clashes || out.get(name).is_some() {
                return Err(
                    self.error(self.metric_at, format!("label name {name:?} is not unique"))
                );
            }
            if value.is_empty() {
                on_empty(name);
            }
            out.set(name, value);
        }
        if let Some((name, bound)) = magic {
            out.set(name, &format_om_float(bound));
        }
        Ok(())
    }

    pub(crate) fn created_timestamp(&self) -> Option<i64> {
        let m = &self.metric;
        let created = match self.kind {
            ProtoType::Counter => m.counter_created,
            ProtoType::Summary => m.summary_created,
            ProtoType::Histogram | ProtoType::GaugeHistogram => m.histogram.created,
            ProtoType::Gauge | ProtoType::Untyped => None,
        };
        created.filter(|&ms| ms != 0)
    }

    /// Exemplars of the current entry: the counter's, the bucket's, or for a
    /// native histogram its timestamped exemplars (falling back to the
    /// timestamped exemplars of its classic buckets), as Prometheus does.
    pub(crate) fn exemplars(&self, out: &mut Vec<Exemplar>) {
        let m = &self.metric;
        let h = &m.histogram;
        match self.step {
            Step::Value if self.kind == ProtoType::Counter => {
                out.extend(m.counter_exemplar.and_then(decode_exemplar));
            }
            Step::Bucket(i) => {
                let raw = h.buckets.get(i).and_then(|b| b.exemplar);
                out.extend(raw.and_then(decode_exemplar));
            }
            Step::Native => {
                let timestamped =
                    |raw: &&[u8]| decode_exemplar(raw).filter(|e| e.timestamp.is_some());
                if h.exemplars.is_empty() {
                    let from_buckets = h.buckets.iter().filter_map(|b| b.exemplar.as_ref());
                    out.extend(from_buckets.filter_map(timestamped));
                } else {
                    out.extend(h.exemplars.iter().filter_map(timestamped));
                }
            }
            _ => {}
        }
    }

    // ----- message decoding ----------------------------------------------

    fn decode_metric(&mut self, bytes: &'a [u8]) -> Res<()> {
        self.metric.clear();
        self.histogram.clear();
        let base = self.metric_at;
        let mut fields = Fields::new(bytes, base);
        while let Some((field, value)) = self.wire(fields.next_field())? {
            let at = fields.offset();
            let r = match field {
                1 => self.decode_label(value),
                2 => {
                    as_bytes(value, "gauge").and_then(|b| single_double(b, &mut self.metric.gauge))
                }
                3 => as_bytes(value, "counter").and_then(|b| self.decode_counter(b)),
                4 => as_bytes(value, "summary").and_then(|b| self.decode_summary(b)),
                5 => as_bytes(value, "untyped")
                    .and_then(|b| single_double(b, &mut self.metric.untyped)),
                6 => as_varint(value, "timestamp_ms").map(|v| self.metric.timestamp_ms = v as i64),
                7 => as_bytes(value, "histogram").and_then(|b| self.decode_histogram(b)),
                _ => Ok(()),
            };
            r.map_err(|msg| self.error(at, format!("Metric: {msg}")))?;
        }
        Ok(())
    }

    fn decode_label(&mut self, value: WireValue<'a>) -> Result<(), String> {
        let (name, value) = decode_label_pair(as_bytes(value, "label")?)?;
        if name.is_empty() {
            return Err("invalid label name: empty".into());
        }
        if self.metric.labels.len() >= self.max_labels {
            return Err(format!("more than {} labels", self.max_labels));
        }
        self.metric.labels.push((name, value));
        Ok(())
    }

    fn decode_counter(&mut self, bytes: &'a [u8]) -> Result<(), String> {
        let mut fields = Fields::new(bytes, 0);
        while let Some((field, value)) = fields.next_field().map_err(|e| e.message)? {
            match field {
                1 => self.metric.counter = as_f64(value, "value")?,
                2 => self.metric.counter_exemplar = Some(as_bytes(value, "exemplar")?),
                3 => self.metric.counter_created = Some(timestamp_ms(as_bytes(value, "created")?)?),
                _ => {}
            }
        }
        Ok(())
    }

    fn decode_summary(&mut self, bytes: &'a [u8]) -> Result<(), String> {
        let mut fields = Fields::new(bytes, 0);
        while let Some((field, value)) = fields.next_field().map_err(|e| e.message)? {
            match field {
                1 => self.metric.summary_count = as_varint(value, "sample_count")?,
                2 => self.metric.summary_sum = as_f64(value, "sample_sum")?,
                3 => {
                    let q = decode_quantile(as_bytes(value, "quantile")?)?;
                    self.metric.quantiles.push(q);
                }
                4 => self.metric.summary_created = Some(timestamp_ms(as_bytes(value, "created")?)?),
                _ => {}
            }
        }
        Ok(())
    }

    fn decode_histogram(&mut self, bytes: &'a [u8]) -> Result<(), String> {
        let h = &mut self.metric.histogram;
        let n = &mut self.histogram;
        let mut fields = Fields::new(bytes, 0);
        while let Some((field, value)) = fields.next_field().map_err(|e| e.message)? {
            match field {
                1 => h.count = as_varint(value, "sample_count")?,
                2 => h.sum = as_f64(value, "sample_sum")?,
                3 => h.buckets.push(decode_bucket(as_bytes(value, "bucket")?)?),
                4 => h.count_float = as_f64(value, "sample_count_float")?,
                5 => n.schema = zigzag32(as_varint(value, "schema")?),
                6 => n.zero_threshold = as_f64(value, "zero_threshold")?,
                7 => h.zero_count = as_varint(value, "zero_count")?,
                8 => h.zero_count_float = as_f64(value, "zero_count_float")?,
                9 => n
                    .negative_spans
                    .push(decode_span(as_bytes(value, "negative_span")?)?),
                10 => push_sint64s(value, "negative_delta", &mut n.negative_deltas)?,
                11 => push_f64s(value, "negative_count", &mut n.negative_counts)?,
                12 => n
                    .positive_spans
                    .push(decode_span(as_bytes(value, "positive_span")?)?),
                13 => push_sint64s(value, "positive_delta", &mut n.positive_deltas)?,
                14 => push_f64s(value, "positive_count", &mut n.positive_counts)?,
                15 => h.created = Some(timestamp_ms(as_bytes(value, "created")?)?),
                16 => h.exemplars.push(as_bytes(value, "exemplars")?),
                _ => {}
            }
        }
        Ok(())
    }

    /// Turns the decoded fields into the final native histogram: integer
    /// unless a float count is set, gauge hint for gauge histograms, and
    /// compacted (empty buckets dropped, touching spans merged) as
    /// Prometheus does before ingesting.
    fn build_native_histogram(&mut self) {
        let h = &self.metric.histogram;
        let n = &mut self.histogram;
        let scratch = &mut self.scratch_spans;
        n.sum = h.sum;
        if h.count_float > 0.0 || h.zero_count_float > 0.0 {
            n.count = HistogramCount::Float(h.count_float);
            n.zero_count = HistogramCount::Float(h.zero_count_float);
            n.positive_deltas.clear();
            n.negative_deltas.clear();
            compact_float(&mut n.positive_spans, &mut n.positive_counts, scratch);
            compact_float(&mut n.negative_spans, &mut n.negative_counts, scratch);
        } else {
            n.count = HistogramCount::Int(h.count);
            n.zero_count = HistogramCount::Int(h.zero_count);
            n.positive_counts.clear();
            n.negative_counts.clear();
            compact_deltas(&mut n.positive_spans, &mut n.positive_deltas, scratch);
            compact_deltas(&mut n.negative_spans, &mut n.negative_deltas, scratch);
        }
        n.reset_hint = if self.kind == ProtoType::GaugeHistogram {
            ResetHint::Gauge
        } else {
            ResetHint::Unknown
        };
    }
}

/// Prometheus prefers a set (non-zero) float count over the integer one.
fn prefer_float(float: f64, int: u64) -> f64 {
    if float != 0.0 {
        float
    } else {
        int as f64
    }
}

/// OpenMetrics-style unit check: the unit must be a `_`-separated suffix of
/// the name (before `_total` for counters).
fn check_unit(name: &str, unit: &str, kind: ProtoType) -> Result<(), String> {
    if unit.is_empty() {
        return Ok(());
    }
    let (base, what) = match name.strip_suffix("_total") {
        Some(base) if kind == ProtoType::Counter => (base, "counter"),
        _ => (name, "metric"),
    };
    if base
        .strip_suffix(unit)
        .is_some_and(|rest| rest.ends_with('_'))
    {
        Ok(())
    } else {
        Err(format!("unit {unit:?} not a suffix of {what} {name:?}"))
    }
}

/// A message whose field 1 is a double (`Gauge`, `Untyped`).
fn single_double(bytes: &[u8], out: &mut f64) -> Result<(), String> {
    let mut fields = Fields::new(bytes, 0);
    while let Some((field, value)) = fields.next_field().map_err(|e| e.message)? {
        if field == 1 {
            *out = as_f64(value, "value")?;
        }
    }
    Ok(())
}

fn decode_label_pair(bytes: &[u8]) -> Result<(&str, &str), String> {
    let (mut name, mut value) = ("", "");
    let mut fields = Fields::new(bytes, 0);
    while let Some((field, v)) = fields.next_field().map_err(|e| e.message)? {
        match field {
            1 => name = as_str(v, "label name").map_err(|_| "invalid label name: not UTF-8")?,
            2 => value = as_str(v, "label value").map_err(|_| "invalid label value: not UTF-8")?,
            _ => {}
        }
    }
    Ok((name, value))
}

fn decode_quantile(bytes: &[u8]) -> Result<(f64, f64), String> {
    let (mut quantile, mut value) = (0.0, 0.0);
    let mut fields = Fields::new(bytes, 0);
    while let Some((field, v)) = fields.next_field().map_err(|e| e.message)? {
        match field {
            1 => quantile = as_f64(v, "quantile")?,
            2 => value = as_f64(v, "value")?,
            _ => {}
        }
    }
    Ok((quantile, value))
}

fn decode_bucket(bytes: &[u8]) -> Result<ClassicBucket<'_>, String> {
    let mut bucket = ClassicBucket::default();
    let mut fields = Fields::new(bytes, 0);
    while let Some((field, v)) = fields.next_field().map_err(|e| e.message)? {
        match field {
            1 => bucket.count = as_varint(v, "cumulative_count")?,
            2 => bucket.upper_bound = as_f64(v, "upper_bound")?,
            3 => bucket.exemplar = Some(as_bytes(v, "exemplar")?),
            4 => bucket.count_float = as_f64(v, "cumulative_count_float")?,
            _ => {}
        }
    }
    Ok(bucket)
}

fn decode_span(bytes: &[u8]) -> Result<BucketSpan, String> {
    let mut span = BucketSpan::default();
    let mut fields = Fields::new(bytes, 0);
    while let Some((field, v)) = fields.next_field().map_err(|e| e.message)? {
        match field {
            1 => span.offset = zigzag32(as_varint(v, "offset")?),
            2 => span.length = as_varint(v, "length")? as u32,
            _ => {}
        }
    }
    Ok(span)
}

/// A `google.protobuf.Timestamp` in milliseconds (wrapping on absurd input
/// rather than failing, like Prometheus's integer arithmetic).
fn timestamp_ms(bytes: &[u8]) -> Result<i64, String> {
    let (mut seconds, mut nanos) = (0i64, 0i32);
    let mut fields = Fields::new(bytes, 0);
    while let Some((field, v)) = fields.next_field().map_err(|e| e.message)? {
        match field {
            1 => seconds = as_varint(v, "seconds")? as i64,
            2 => nanos = as_varint(v, "nanos")? as i32,
            _ => {}
        }
    }
    Ok(seconds
        .wrapping_mul(1000)
        .wrapping_add(i64::from(nanos / 1_000_000)))
}

/// Decodes an `Exemplar` message; a malformed one is dropped (exemplars are
/// best effort and never fail a scrape).
fn decode_exemplar(bytes: &[u8]) -> Option<Exemplar> {
    let mut labels = LabelsBuilder::new();
    let mut value = 0.0;
    let mut timestamp = None;
    let mut fields = Fields::new(bytes, 0);
    while let Some((field, v)) = fields.next_field().ok()? {
        match field {
            1 => {
                let (name, val) = decode_label_pair(as_bytes(v, "label").ok()?).ok()?;
                labels.set(name, val);
            }
            2 => value = as_f64(v, "value").ok()?,
            3 => timestamp = Some(timestamp_ms(as_bytes(v, "timestamp").ok()?).ok()?),
            _ => {}
        }
    }
    Some(Exemplar {
        labels: labels.labels(),
        value,
        timestamp,
    })
}

/// Whether the span lengths add up to the number of bucket values.
fn spans_match(spans: &[BucketSpan], buckets: usize) -> bool {
    spans.iter().map(|s| u64::from(s.length)).sum::<u64>() == buckets as u64
}

/// Rewrites spans + bucket values into canonical form: only non-empty
/// buckets (per `keep`), spans merged wherever they touch. Values are
/// compacted in place (`reencode` maps each kept value, e.g. back to a
/// delta); spans are rebuilt in `scratch` and swapped in. Returns false,
/// leaving everything untouched, for inconsistent input (span lengths not
/// matching the bucket count, offsets out of range): the storage's
/// validation rejects such a histogram, as in Prometheus.
fn compact<T: Copy>(
    spans: &mut Vec<BucketSpan>,
    values: &mut Vec<T>,
    scratch: &mut Vec<BucketSpan>,
    keep: impl Fn(T) -> bool,
    mut reencode: impl FnMut(T) -> T,
) -> bool {
    if !spans_match(spans, values.len()) {
        return false;
    }
    scratch.clear();
    let mut index: i64 = 0;
    let mut end_of_last: Option<i64> = None;
    let mut read = 0usize;
    let mut kept = 0usize;
    for (n, span) in spans.iter().enumerate() {
        index = if n == 0 {
            i64::from(span.offset)
        } else {
            index + i64::from(span.offset)
        };
        for _ in 0..span.length {
            let Some(&value) = values.get(read) else {
                return false;
            };
            read += 1;
            if keep(value) {
                let gap = end_of_last.map_or(index, |end| index - end);
                match scratch.last_mut() {
                    Some(last) if gap == 0 => last.length += 1,
                    _ => match i32::try_from(gap) {
                        Ok(offset) => scratch.push(BucketSpan { offset, length: 1 }),
                        Err(_) => return false,
                    },
                }
                end_of_last = Some(index + 1);
                // `kept < read`, so this never overwrites an unread value.
                if let Some(slot) = values.get_mut(kept) {
                    *slot = value;
                }
                kept += 1;
            }
            index += 1;
        }
    }
    values.truncate(kept);
    for v in values.iter_mut() {
        *v = reencode(*v);
    }
    std::mem::swap(spans, scratch);
    true
}

fn compact_float(
    spans: &mut Vec<BucketSpan>,
    counts: &mut Vec<f64>,
    scratch: &mut Vec<BucketSpan>,
) {
    compact(spans, counts, scratch, |v| v != 0.0, |v| v);
}

fn compact_deltas(
    spans: &mut Vec<BucketSpan>,
    deltas: &mut Vec<i64>,
    scratch: &mut Vec<BucketSpan>,
) {
    // Compaction works on absolute counts; re-delta the kept ones after.
    let mut running = 0i64;
    for d in deltas.iter_mut() {
        running = running.wrapping_add(*d);
        *d = running;
    }
    let mut previous = 0i64;
    let to_delta = |v: i64| {
        let delta = v.wrapping_sub(previous);
        previous = v;
        delta
    };
    if !compact(spans, deltas, scratch, |v| v != 0, to_delta) {
        // Left untouched: restore the deltas.
        let mut previous = 0i64;
        for v in deltas.iter_mut() {
            let absolute = *v;
            *v = absolute.wrapping_sub(previous);
            previous = absolute;
        }
    }
}
