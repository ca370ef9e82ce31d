//! Record payload codecs.
//!
//! The layouts follow Prometheus's `tsdb/record` encoding so a segment written
//! here carries the same logical records as one written by Prometheus:
//!
//! * **Series** (type 1): per series `ref` as big-endian u64, label count as
//!   uvarint, then each name and value as uvarint-length-prefixed bytes.
//! * **Samples** (type 2): the first sample's `ref` and `t` as big-endian
//!   u64/i64, then per sample (the first included) the zigzag-varint deltas of
//!   `ref` and `t` against that first sample, and the value's IEEE-754 bits as
//!   big-endian u64.
//!
//! * **Exemplars** (type 4): like Samples, each entry followed by the
//!   exemplar's label set (count, then name/value strings).
//! * **Metadata** (type 6): per series `ref` as uvarint, the metric type
//!   byte (remote write's numbering), a field count and `UNIT`/`HELP`
//!   name/value string pairs.
//! * **HistogramSamples** (type 7) / **FloatHistogramSamples** (type 8):
//!   base `ref`/`t` as in Samples, per entry the two deltas and the
//!   histogram body (reset hint byte, schema, zero threshold, counts, sum,
//!   spans, buckets — integer histograms as varint deltas, float ones as
//!   IEEE-754 bits).
//!
//! Bodies of histograms and exemplars can be encoded at append time
//! ([`encode_histogram_body`], [`encode_exemplar_body`]) into one reusable
//! buffer and framed into a record at commit
//! ([`encode_with_bodies`]), so the append path does not allocate per
//! sample.
//!
//! Decoders never panic on malformed input: every read is bounds-checked and a
//! short or inconsistent payload yields a [`DecodeError`].

use std::ops::Range;

use tributary_model::{
    BucketSpan, HistogramCount, LabelStore, Labels, MetricType, NativeHistogram, PairTable,
    ResetHint, SeriesRef, Timestamp,
};

/// The first byte of every record payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordType {
    Series = 1,
    Samples = 2,
    Tombstones = 3,
    Exemplars = 4,
    MmapMarkers = 5,
    Metadata = 6,
    HistogramSamples = 7,
    FloatHistogramSamples = 8,
}

impl RecordType {
    /// Maps a type byte to a known record type.
    pub fn from_byte(b: u8) -> Option<RecordType> {
        Some(match b {
            1 => RecordType::Series,
            2 => RecordType::Samples,
            3 => RecordType::Tombstones,
            4 => RecordType::Exemplars,
            5 => RecordType::MmapMarkers,
            6 => RecordType::Metadata,
            7 => RecordType::HistogramSamples,
            8 => RecordType::FloatHistogramSamples,
            _ => return None,
        })
    }
}

/// One float sample addressed by series reference (the appenders' type,
/// as a Samples record holds it).
pub use tributary_model::RefSample;

/// One native histogram sample addressed by series reference.
#[derive(Debug, Clone, PartialEq)]
pub struct RefHistogram {
    pub series: SeriesRef,
    pub t: Timestamp,
    pub h: NativeHistogram,
}

/// One exemplar addressed by series reference.
#[derive(Debug, Clone, PartialEq)]
pub struct RefExemplar {
    pub series: SeriesRef,
    pub t: Timestamp,
    pub v: f64,
    pub labels: Labels,
}

/// The metadata of one series as a Metadata record carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefMetadata {
    pub series: SeriesRef,
    pub kind: MetricType,
    pub unit: String,
    pub help: String,
}

/// An entry whose body was pre-encoded into a shared buffer.
#[derive(Debug, Clone)]
pub struct BodyEntry {
    pub series: SeriesRef,
    pub t: Timestamp,
    /// Byte range of the body in the shared buffer.
    pub body: Range<usize>,
}

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record is empty")]
    Empty,
    #[error("expected record type {expected:?}, found type byte {found}")]
    WrongType { expected: RecordType, found: u8 },
    #[error("record truncated")]
    Truncated,
    #[error("malformed varint")]
    BadVarint,
    #[error("label string is not valid UTF-8")]
    BadUtf8,
    #[error("label set is not sorted, unique and non-empty")]
    BadLabels,
    #[error("unknown metric type {0}")]
    BadMetricType(u8),
}

/// The type of a decoded payload, or `None` for an empty or unknown one.
pub fn record_type(payload: &[u8]) -> Option<RecordType> {
    payload.first().copied().and_then(RecordType::from_byte)
}

/// Appends a Series record for `series` to `out`.
pub fn encode_series<'a>(
    series: impl IntoIterator<Item = (SeriesRef, &'a Labels)>,
    out: &mut Vec<u8>,
) {
    out.push(RecordType::Series as u8);
    for (r, labels) in series {
        encode_series_entry(r, labels, out);
    }
}

/// Appends one series to a Series record body (after its type byte).
pub(crate) fn encode_series_entry(r: SeriesRef, labels: &Labels, out: &mut Vec<u8>) {
    out.extend_from_slice(&r.0.to_be_bytes());
    put_uvarint(out, labels.len() as u64);
    for l in labels {
        put_label(out, l.name.as_bytes(), l.value.as_bytes());
    }
}

/// Appends one Series record entry for `r` with its labels read from the
/// store; nothing if the store does not have `r`.
pub(crate) fn encode_stored_series(store: &LabelStore, r: SeriesRef, out: &mut Vec<u8>) {
    let Some(ids) = store.pair_ids(r) else {
        return;
    };
    out.extend_from_slice(&r.0.to_be_bytes());
    put_uvarint(out, ids.clone().count() as u64);
    // Through each pair's wire form: a packed pair unpacks into this one
    // buffer rather than into two strings.
    let mut wire = Vec::new();
    for id in ids {
        wire.clear();
        store.pairs().append_wire(id, &mut wire);
        let (name, value) = PairTable::split_wire(&wire).unwrap_or_default();
        put_label(out, name, value);
    }
}

fn put_label(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    put_uvarint(out, name.len() as u64);
    out.extend_from_slice(name);
    put_uvarint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// Appends a Samples record to `out`. An empty slice encodes only the type
/// byte (which decodes back to no samples).
pub fn encode_samples(samples: &[RefSample], out: &mut Vec<u8>) {
    out.push(RecordType::Samples as u8);
    let Some(first) = samples.first() else {
        return;
    };
    out.extend_from_slice(&first.series.0.to_be_bytes());
    out.extend_from_slice(&first.t.to_be_bytes());
    for s in samples {
        put_varint(out, (s.series.0 as i64).wrapping_sub(first.series.0 as i64));
        put_varint(out, s.t.wrapping_sub(first.t));
        out.extend_from_slice(&s.v.to_bits().to_be_bytes());
    }
}

/// Frames pre-encoded bodies into a record of type `kind` (Exemplars,
/// HistogramSamples or FloatHistogramSamples): base ref/time of the first
/// entry, then per entry the deltas and its body. Nothing is written for an
/// empty `entries`.
pub fn encode_with_bodies(
    kind: RecordType,
    entries: &[BodyEntry],
    bodies: &[u8],
    out: &mut Vec<u8>,
) {
    let Some(first) = entries.first() else {
        return;
    };
    out.push(kind as u8);
    out.extend_from_slice(&first.series.0.to_be_bytes());
    out.extend_from_slice(&first.t.to_be_bytes());
    for e in entries {
        put_varint(out, (e.series.0 as i64).wrapping_sub(first.series.0 as i64));
        put_varint(out, e.t.wrapping_sub(first.t));
        if let Some(b) = bodies.get(e.body.clone()) {
            out.extend_from_slice(b);
        }
    }
}

/// Encodes the body of one histogram (no ref/time). Returns the record type
/// it belongs in: integer histograms go to HistogramSamples, float ones to
/// FloatHistogramSamples.
pub fn encode_histogram_body(h: &NativeHistogram, out: &mut Vec<u8>) -> RecordType {
    out.push(h.reset_hint as u8);
    put_varint(out, i64::from(h.schema));
    out.extend_from_slice(&h.zero_threshold.to_bits().to_be_bytes());
    let float = h.is_float();
    if float {
        out.extend_from_slice(&h.zero_count.as_f64().to_bits().to_be_bytes());
        out.extend_from_slice(&h.count.as_f64().to_bits().to_be_bytes());
    } else {
        put_uvarint(out, int_count(h.zero_count));
        put_uvarint(out, int_count(h.count));
    }
    out.extend_from_slice(&h.sum.to_bits().to_be_bytes());
    put_spans(out, &h.positive_spans);
    put_spans(out, &h.negative_spans);
    if float {
        put_floats(out, &h.positive_counts);
        put_floats(out, &h.negative_counts);
        RecordType::FloatHistogramSamples
    } else {
        put_deltas(out, &h.positive_deltas);
        put_deltas(out, &h.negative_deltas);
        RecordType::HistogramSamples
    }
}

fn int_count(c: HistogramCount) -> u64 {
    match c {
        HistogramCount::Int(v) => v,
        HistogramCount::Float(v) => v as u64,
    }
}

fn put_spans(out: &mut Vec<u8>, spans: &[BucketSpan]) {
    put_uvarint(out, spans.len() as u64);
    for s in spans {
        put_varint(out, i64::from(s.offset));
        put_uvarint(out, u64::from(s.length));
    }
}

fn put_deltas(out: &mut Vec<u8>, deltas: &[i64]) {
    put_uvarint(out, deltas.len() as u64);
    for &d in deltas {
        put_varint(out, d);
    }
}

fn put_floats(out: &mut Vec<u8>, values: &[f64]) {
    put_uvarint(out, values.len() as u64);
    for v in values {
        out.extend_from_slice(&v.to_bits().to_be_bytes());
    }
}

/// Encodes the body of one exemplar (value and labels, no ref/time).
pub fn encode_exemplar_body(v: f64, labels: &Labels, out: &mut Vec<u8>) {
    out.extend_from_slice(&v.to_bits().to_be_bytes());
    put_uvarint(out, labels.len() as u64);
    for l in labels.iter() {
        put_str(out, l.name);
        put_str(out, l.value);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Appends a Metadata record to `out`; nothing for an empty slice.
pub fn encode_metadata(entries: &[RefMetadata], out: &mut Vec<u8>) {
    if entries.is_empty() {
        return;
    }
    out.push(RecordType::Metadata as u8);
    for m in entries {
        encode_metadata_entry(m.series, m.kind, &m.unit, &m.help, out);
    }
}

/// Appends one series' metadata to a Metadata record body.
pub(crate) fn encode_metadata_entry(
    r: SeriesRef,
    kind: MetricType,
    unit: &str,
    help: &str,
    out: &mut Vec<u8>,
) {
    put_uvarint(out, r.0);
    out.push(kind as u8);
    put_uvarint(out, 2);
    put_str(out, "UNIT");
    put_str(out, unit);
    put_str(out, "HELP");
    put_str(out, help);
}

/// Maps the metadata record's type byte back to a metric type.
pub fn metric_type_from_byte(b: u8) -> Option<MetricType> {
    Some(match b {
        0 => MetricType::Unknown,
        1 => MetricType::Counter,
        2 => MetricType::Gauge,
        3 => MetricType::Histogram,
        4 => MetricType::GaugeHistogram,
        5 => MetricType::Summary,
        6 => MetricType::Info,
        7 => MetricType::StateSet,
        _ => return None,
    })
}

/// Decodes a HistogramSamples or FloatHistogramSamples record, appending
/// to `out`.
pub fn decode_histograms(payload: &[u8], out: &mut Vec<RefHistogram>) -> Result<(), DecodeError> {
    let float = record_type(payload) == Some(RecordType::FloatHistogramSamples);
    let expected = if float {
        RecordType::FloatHistogramSamples
    } else {
        RecordType::HistogramSamples
    };
    let mut d = Decoder::for_type(payload, expected)?;
    let Some((base_ref, base_t)) = read_base(&mut d)? else {
        return Ok(());
    };
    while !d.is_empty() {
        let dref = d.varint()?;
        let dt = d.varint()?;
        let h = d.histogram(float)?;
        out.push(RefHistogram {
            series: SeriesRef(base_ref.wrapping_add(dref) as u64),
            t: base_t.wrapping_add(dt),
            h,
        });
    }
    Ok(())
}

/// Decodes an Exemplars record, appending to `out`.
pub fn decode_exemplars(payload: &[u8], out: &mut Vec<RefExemplar>) -> Result<(), DecodeError> {
    let mut d = Decoder::for_type(payload, RecordType::Exemplars)?;
    let Some((base_ref, base_t)) = read_base(&mut d)? else {
        return Ok(());
    };
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    while !d.is_empty() {
        let dref = d.varint()?;
        let dt = d.varint()?;
        let v = f64::from_bits(d.be_u64()?);
        let n = d.uvarint()?;
        pairs.clear();
        for _ in 0..n {
            let name = d.str()?;
            let value = d.str()?;
            pairs.push((name, value));
        }
        // Exemplar label sets may be empty (unlike series).
        let labels = if pairs.is_empty() {
            Labels::default()
        } else {
            Labels::from_sorted(pairs.iter().copied()).ok_or(DecodeError::BadLabels)?
        };
        out.push(RefExemplar {
            series: SeriesRef(base_ref.wrapping_add(dref) as u64),
            t: base_t.wrapping_add(dt),
            v,
            labels,
        });
    }
    Ok(())
}

/// Decodes a Metadata record, appending to `out`. Unknown fields are
/// skipped (newer writers may add some).
pub fn decode_metadata(payload: &[u8], out: &mut Vec<RefMetadata>) -> Result<(), DecodeError> {
    let mut d = Decoder::for_type(payload, RecordType::Metadata)?;
    while !d.is_empty() {
        let series = SeriesRef(d.uvarint()?);
        let type_byte = d.take(1)?.first().copied().unwrap_or(0);
        let kind = metric_type_from_byte(type_byte).ok_or(DecodeError::BadMetricType(type_byte))?;
        let fields = d.uvarint()?;
        let mut unit = "";
        let mut help = "";
        for _ in 0..fields {
            let name = d.str()?;
            let value = d.str()?;
            match name {
                "UNIT" => unit = value,
                "HELP" => help = value,
                _ => {}
            }
        }
        out.push(RefMetadata {
            series,
            kind,
            unit: unit.to_string(),
            help: help.to_string(),
        });
    }
    Ok(())
}

/// Decodes a Series record, appending to `out`.
pub fn decode_series(
    payload: &[u8],
    out: &mut Vec<(SeriesRef, Labels)>,
) -> Result<(), DecodeError> {
    let mut d = Decoder::for_type(payload, RecordType::Series)?;
    // Reused across series so decoding allocates once per label set only.
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    while !d.is_empty() {
        let r = SeriesRef(d.be_u64()?);
        let n = d.uvarint()?;
        pairs.clear();
        for _ in 0..n {
            let name = d.str()?;
            let value = d.str()?;
            pairs.push((name, value));
        }
        let labels = Labels::from_sorted(pairs.iter().copied()).ok_or(DecodeError::BadLabels)?;
        out.push((r, labels));
    }
    Ok(())
}

/// Reads the base reference and timestamp that open every sample-like
/// record (Samples, histograms, Exemplars). `None` for an empty record; the
/// encoder never writes a base without entries after it.
fn read_base(d: &mut Decoder<'_>) -> Result<Option<(i64, i64)>, DecodeError> {
    if d.is_empty() {
        return Ok(None);
    }
    let base_ref = d.be_u64()? as i64;
    let base_t = d.be_u64()? as i64;
    if d.is_empty() {
        return Err(DecodeError::Truncated);
    }
    Ok(Some((base_ref, base_t)))
}

/// Decodes a Samples record, appending to `out`.
pub fn decode_samples(payload: &[u8], out: &mut Vec<RefSample>) -> Result<(), DecodeError> {
    let mut d = Decoder::for_type(payload, RecordType::Samples)?;
    let Some((base_ref, base_t)) = read_base(&mut d)? else {
        return Ok(());
    };
    while !d.is_empty() {
        let dref = d.varint()?;
        let dt = d.varint()?;
        let v = f64::from_bits(d.be_u64()?);
        out.push(RefSample {
            series: SeriesRef(base_ref.wrapping_add(dref) as u64),
            t: base_t.wrapping_add(dt),
            v,
        });
    }
    Ok(())
}

/// Counts the samples of a Samples record without materialising them.
pub(crate) fn count_samples(payload: &[u8]) -> Result<u64, DecodeError> {
    let mut d = Decoder::for_type(payload, RecordType::Samples)?;
    if d.is_empty() {
        return Ok(0);
    }
    d.be_u64()?;
    d.be_u64()?;
    if d.is_empty() {
        return Err(DecodeError::Truncated);
    }
    let mut n = 0;
    while !d.is_empty() {
        d.varint()?;
        d.varint()?;
        d.be_u64()?;
        n += 1;
    }
    Ok(n)
}

pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Reads a uvarint from the front of `buf`: `(value, bytes used)`.
pub(crate) fn get_uvarint(buf: &[u8]) -> Option<(u64, usize)> {
    // A sample's deltas take one byte (the timestamp's, 0 within a scrape)
    // or two (the series', within a target's refs): read those without
    // the loop (a Samples record decoded 96 -> 56 instructions a sample).
    match *buf {
        [a, ..] if a < 0x80 => return Some((u64::from(a), 1)),
        [a, b, ..] if b < 0x80 => return Some((u64::from(a & 0x7f) | u64::from(b) << 7, 2)),
        _ => {}
    }
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The schema number of native histograms with custom buckets.
const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// A bounds-checked cursor over a payload.
struct Decoder<'a> {
    rest: &'a [u8],
}

impl<'a> Decoder<'a> {
    fn for_type(payload: &'a [u8], expected: RecordType) -> Result<Self, DecodeError> {
        let (&found, rest) = payload.split_first().ok_or(DecodeError::Empty)?;
        if found != expected as u8 {
            return Err(DecodeError::WrongType { expected, found });
        }
        Ok(Decoder { rest })
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn be_u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let (v, n) = get_uvarint(self.rest).ok_or(DecodeError::BadVarint)?;
        self.rest = &self.rest[n..];
        Ok(v)
    }

    fn varint(&mut self) -> Result<i64, DecodeError> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn be_f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_bits(self.be_u64()?))
    }

    fn spans(&mut self, out: &mut Vec<BucketSpan>) -> Result<(), DecodeError> {
        let n = self.len_prefix(2)?;
        out.reserve(n);
        for _ in 0..n {
            let offset = i32::try_from(self.varint()?).map_err(|_| DecodeError::BadVarint)?;
            let length = u32::try_from(self.uvarint()?).map_err(|_| DecodeError::BadVarint)?;
            out.push(BucketSpan { offset, length });
        }
        Ok(())
    }

    /// A count prefix, rejected when the rest cannot possibly hold that
    /// many items of at least `min_item` bytes (so a corrupt count cannot
    /// make us reserve gigabytes).
    fn len_prefix(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let n = usize::try_from(self.uvarint()?).map_err(|_| DecodeError::Truncated)?;
        if n.saturating_mul(min_item) > self.rest.len() {
            return Err(DecodeError::Truncated);
        }
        Ok(n)
    }

    fn histogram(&mut self, float: bool) -> Result<NativeHistogram, DecodeError> {
        let mut h = NativeHistogram {
            reset_hint: match self.take(1)?.first().copied().unwrap_or(0) {
                1 => ResetHint::Yes,
                2 => ResetHint::No,
                3 => ResetHint::Gauge,
                _ => ResetHint::Unknown,
            },
            schema: i32::try_from(self.varint()?).map_err(|_| DecodeError::BadVarint)?,
            zero_threshold: self.be_f64()?,
            ..NativeHistogram::default()
        };
        if float {
            h.zero_count = HistogramCount::Float(self.be_f64()?);
            h.count = HistogramCount::Float(self.be_f64()?);
        } else {
            h.zero_count = HistogramCount::Int(self.uvarint()?);
            h.count = HistogramCount::Int(self.uvarint()?);
        }
        h.sum = self.be_f64()?;
        self.spans(&mut h.positive_spans)?;
        self.spans(&mut h.negative_spans)?;
        if float {
            for out in [&mut h.positive_counts, &mut h.negative_counts] {
                let n = self.len_prefix(8)?;
                out.reserve(n);
                for _ in 0..n {
                    out.push(self.be_f64()?);
                }
            }
        } else {
            for out in [&mut h.positive_deltas, &mut h.negative_deltas] {
                let n = self.len_prefix(1)?;
                out.reserve(n);
                for _ in 0..n {
                    out.push(self.varint()?);
                }
            }
        }
        if h.schema == CUSTOM_BUCKETS_SCHEMA {
            // Custom bucket bounds (NHCB); not modelled, skipped so the
            // rest of the record still decodes.
            let n = self.len_prefix(8)?;
            self.take(n * 8)?;
        }
        Ok(h)
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let len = usize::try_from(self.uvarint()?).map_err(|_| DecodeError::Truncated)?;
        let b = self.take(len)?;
        std::str::from_utf8(b).map_err(|_| DecodeError::BadUtf8)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn series_round_trip() {
        let a = Labels::from_pairs([("__name__", "up"), ("job", "x")]);
        let b = Labels::from_pairs([("__name__", "down")]);
        let mut buf = Vec::new();
        encode_series([(SeriesRef(1), &a), (SeriesRef(7), &b)], &mut buf);
        assert_eq!(record_type(&buf), Some(RecordType::Series));
        let mut out = Vec::new();
        decode_series(&buf, &mut out).expect("decodes");
        assert_eq!(out, vec![(SeriesRef(1), a), (SeriesRef(7), b)]);
    }

    #[test]
    fn stored_series_encode_their_text_with_packed_ids_unpacked() {
        let a = Labels::from_pairs([
            ("__name__", "container_cpu_usage_seconds_total"),
            (
                "id",
                "/kubepods/pod3f2a9c1e-7b4d-4e8f-9a0b-1c2d3e4f5a6b/0123456789abcdef0123456789",
            ),
        ]);
        let mut store = LabelStore::new();
        store.insert(SeriesRef(3), &a).unwrap();
        let mut buf = vec![RecordType::Series as u8];
        encode_stored_series(&store, SeriesRef(3), &mut buf);
        let mut want = Vec::new();
        encode_series([(SeriesRef(3), &a)], &mut want);
        assert_eq!(buf, want);
    }

    #[test]
    fn exemplars_and_metadata_round_trip() {
        let mut bodies = Vec::new();
        let l = Labels::from_pairs([("trace_id", "abc")]);
        encode_exemplar_body(2.5, &l, &mut bodies);
        let first = 0..bodies.len();
        let s2 = bodies.len();
        encode_exemplar_body(-1.0, &Labels::default(), &mut bodies);
        let entries = [
            BodyEntry {
                series: SeriesRef(9),
                t: 100,
                body: first,
            },
            BodyEntry {
                series: SeriesRef(4),
                t: 90,
                body: s2..bodies.len(),
            },
        ];
        let mut rec = Vec::new();
        encode_with_bodies(RecordType::Exemplars, &entries, &bodies, &mut rec);
        let mut out = Vec::new();
        decode_exemplars(&rec, &mut out).unwrap();
        assert_eq!(
            out,
            vec![
                RefExemplar {
                    series: SeriesRef(9),
                    t: 100,
                    v: 2.5,
                    labels: l
                },
                RefExemplar {
                    series: SeriesRef(4),
                    t: 90,
                    v: -1.0,
                    labels: Labels::default()
                },
            ]
        );
        let md = vec![RefMetadata {
            series: SeriesRef(3),
            kind: MetricType::Summary,
            unit: "bytes".into(),
            help: "Help with \\ and ünïcode.".into(),
        }];
        let mut rec = Vec::new();
        encode_metadata(&md, &mut rec);
        let mut out = Vec::new();
        decode_metadata(&rec, &mut out).unwrap();
        assert_eq!(out, md);
        for cut in 2..rec.len() {
            assert!(
                decode_metadata(&rec[..cut], &mut Vec::new()).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn truncated_payloads_are_errors_not_panics() {
        let a = Labels::from_pairs([("__name__", "up"), ("job", "x")]);
        let mut buf = Vec::new();
        encode_series([(SeriesRef(1), &a)], &mut buf);
        for cut in 2..buf.len() {
            let mut out = Vec::new();
            assert!(
                decode_series(&buf[..cut], &mut out).is_err(),
                "cut at {cut}"
            );
        }
        let mut s = Vec::new();
        encode_samples(
            &[RefSample {
                series: SeriesRef(3),
                t: 5,
                v: 1.0,
            }],
            &mut s,
        );
        for cut in 2..s.len() {
            let mut out = Vec::new();
            assert!(decode_samples(&s[..cut], &mut out).is_err(), "cut at {cut}");
        }
        assert_eq!(
            decode_samples(&[], &mut Vec::new()),
            Err(DecodeError::Empty)
        );
        assert!(matches!(
            decode_samples(&buf, &mut Vec::new()),
            Err(DecodeError::WrongType { .. })
        ));
    }

    proptest! {
        #[test]
        fn samples_round_trip(raw in proptest::collection::vec((
            // Refs and times near each other too, as a scrape writes them:
            // deltas of one and two varint bytes.
            prop_oneof![1u64..u64::MAX, 1_000u64..20_000],
            prop_oneof![any::<i64>(), 1_700_000_000_000i64..1_700_000_000_010],
            any::<f64>(),
        ), 0..50)) {
            let samples: Vec<RefSample> = raw.iter().map(|&(r, t, v)| RefSample { series: SeriesRef(r), t, v }).collect();
            let mut buf = Vec::new();
            encode_samples(&samples, &mut buf);
            let mut out = Vec::new();
            decode_samples(&buf, &mut out).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(out.len(), samples.len());
            prop_assert_eq!(count_samples(&buf).ok(), Some(samples.len() as u64));
            for (a, b) in out.iter().zip(&samples) {
                prop_assert_eq!(a.series, b.series);
                prop_assert_eq!(a.t, b.t);
                prop_assert_eq!(a.v.to_bits(), b.v.to_bits());
            }
        }

        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_series(&bytes, &mut Vec::new());
            let _ = decode_samples(&bytes, &mut Vec::new());
            let _ = count_samples(&bytes);
            let _ = decode_histograms(&bytes, &mut Vec::new());
            let _ = decode_exemplars(&bytes, &mut Vec::new());
            let _ = decode_metadata(&bytes, &mut Vec::new());
            // The same bytes behind each type byte, so the body parsers run.
            for t in [4u8, 6, 7, 8] {
                let mut typed = vec![t];
                typed.extend_from_slice(&bytes);
                let _ = decode_histograms(&typed, &mut Vec::new());
                let _ = decode_exemplars(&typed, &mut Vec::new());
                let _ = decode_metadata(&typed, &mut Vec::new());
            }
        }

        #[test]
        fn histograms_round_trip(
            raw in proptest::collection::vec((
                1u64..1_000_000, any::<i64>(), -4i32..8, any::<u64>(), any::<f64>(),
                proptest::collection::vec((-5i32..5, 0u32..4), 0..4),
                proptest::collection::vec(any::<i64>(), 0..6),
                any::<bool>(),
            ), 1..10)
        ) {
            let items: Vec<RefHistogram> = raw.iter().map(|(r, t, schema, count, sum, spans, deltas, float)| {
                let spans: Vec<BucketSpan> = spans.iter().map(|&(offset, length)| BucketSpan { offset, length }).collect();
                let mut h = NativeHistogram { schema: *schema, sum: *sum, positive_spans: spans.clone(), negative_spans: spans, reset_hint: ResetHint::Yes, ..NativeHistogram::default() };
                if *float {
                    h.count = HistogramCount::Float(*count as f64);
                    h.zero_count = HistogramCount::Float(0.5);
                    h.positive_counts = deltas.iter().map(|d| *d as f64).collect();
                } else {
                    h.count = HistogramCount::Int(*count);
                    h.zero_count = HistogramCount::Int(3);
                    h.negative_deltas = deltas.clone();
                }
                RefHistogram { series: SeriesRef(*r), t: *t, h }
            }).collect();
            let mut bodies = Vec::new();
            let mut by_kind: [Vec<BodyEntry>; 2] = [Vec::new(), Vec::new()];
            for it in &items {
                let start = bodies.len();
                let kind = encode_histogram_body(&it.h, &mut bodies);
                let idx = usize::from(kind == RecordType::FloatHistogramSamples);
                by_kind[idx].push(BodyEntry { series: it.series, t: it.t, body: start..bodies.len() });
            }
            let mut out = Vec::new();
            for (kind, entries) in [RecordType::HistogramSamples, RecordType::FloatHistogramSamples].into_iter().zip(&by_kind) {
                let mut rec = Vec::new();
                encode_with_bodies(kind, entries, &bodies, &mut rec);
                if !entries.is_empty() {
                    decode_histograms(&rec, &mut out).map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
            }
            let mut want: Vec<&RefHistogram> = items.iter().filter(|h| !h.h.is_float()).collect();
            want.extend(items.iter().filter(|h| h.h.is_float()));
            prop_assert_eq!(out.len(), want.len());
            for (a, b) in out.iter().zip(want) {
                prop_assert_eq!(a.series, b.series);
                prop_assert_eq!(a.t, b.t);
                prop_assert_eq!(a.h.sum.to_bits(), b.h.sum.to_bits());
                prop_assert_eq!(&a.h.positive_spans, &b.h.positive_spans);
                prop_assert_eq!(&a.h.negative_deltas, &b.h.negative_deltas);
                prop_assert_eq!(a.h.positive_counts.len(), b.h.positive_counts.len());
                prop_assert_eq!(a.h.count.as_f64().to_bits(), b.h.count.as_f64().to_bits());
            }
        }
    }
}
