//! Remote-write 1.0 request encoding, written by hand.
//!
//! A `prometheus.WriteRequest` is produced straight from packed [`Labels`]
//! into a reused buffer and then snappy-compressed (block format, as the
//! spec requires; the framed stream format would be rejected by receivers)
//! into a second reused buffer. prost's generated structs would own a
//! `String` per label per sample; writing the wire format directly avoids
//! every per-sample allocation.
//!
//! Like Prometheus, every sample gets its own `TimeSeries` entry, even when
//! a batch holds several samples of one series. Grouping would save bytes
//! before compression, but snappy removes most of the repeated label bytes
//! anyway, and keeping Prometheus's exact shape means receivers that (wrongly)
//! assume one sample per series entry behave the same with us.
//!
//! Wire shapes used (field number, wire type):
//! - WriteRequest: `timeseries` = 1, length-delimited.
//! - TimeSeries: `labels` = 1 (Label), `samples` = 2 (Sample),
//!   `exemplars` = 3 (Exemplar), `histograms` = 4 (Histogram).
//! - Exemplar: `labels` = 1, `value` = 2, `timestamp` = 3.
//! - WriteRequest `metadata` = 3 (MetricMetadata: `type` = 1,
//!   `metric_family_name` = 2, `help` = 4, `unit` = 5), sent in separate
//!   metadata-only requests ([`WriteRequestEncoder::encode_metadata`]).
//! - Label: `name` = 1, `value` = 2 (strings).
//! - Sample: `value` = 1 (double, fixed64), `timestamp` = 2 (int64 varint).
//!
//! Zero-valued scalars are omitted, as proto3 encoders do.

use tributary_model::{Labels, MetricType, NativeHistogram, Timestamp};

use crate::proto;
use crate::proto::{put_varint, varint_len};

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;

const fn key(field: u8, wire: u8) -> u8 {
    (field << 3) | wire
}

const KEY_WRITE_REQUEST_TIMESERIES: u8 = key(1, WIRE_LEN);
const KEY_TIMESERIES_LABEL: u8 = key(1, WIRE_LEN);
const KEY_TIMESERIES_SAMPLE: u8 = key(2, WIRE_LEN);
const KEY_LABEL_NAME: u8 = key(1, WIRE_LEN);
const KEY_LABEL_VALUE: u8 = key(2, WIRE_LEN);
const KEY_SAMPLE_VALUE: u8 = key(1, WIRE_FIXED64);
const KEY_SAMPLE_TIMESTAMP: u8 = key(2, WIRE_VARINT);

/// Why a request could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("write request of {0} bytes is too large to snappy-compress")]
    TooLarge(usize),
    #[error("snappy compression failed: {0}")]
    Snappy(#[from] snap::Error),
}

/// What one TimeSeries entry carries besides its labels.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    Sample(f64),
    Histogram(&'a NativeHistogram),
    /// An exemplar: its own labels and value (its time is the item's).
    Exemplar(&'a Labels, f64),
}

/// The metadata of a series' metric family.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricMetadata {
    pub kind: MetricType,
    pub help: String,
    pub unit: String,
}

/// One item to send (a float sample unless [`EncodableSample::payload`]
/// says otherwise), with the final (external-labelled, relabelled) label
/// set of its series.
pub trait EncodableSample {
    fn labels(&self) -> &Labels;
    fn timestamp(&self) -> Timestamp;
    fn value(&self) -> f64;
    fn payload(&self) -> Payload<'_> {
        Payload::Sample(self.value())
    }
    /// Sent inline by remote write 2.0 only.
    fn metadata(&self) -> Option<&MetricMetadata> {
        None
    }
}

/// Encodes and compresses write requests, reusing its buffers between calls.
/// One per shard.
pub struct WriteRequestEncoder {
    proto: Vec<u8>,
    compressed: Vec<u8>,
    snappy: snap::raw::Encoder,
}

impl Default for WriteRequestEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl WriteRequestEncoder {
    pub fn new() -> Self {
        Self {
            proto: Vec::new(),
            compressed: Vec::new(),
            snappy: snap::raw::Encoder::new(),
        }
    }

    /// Encodes `samples` (one TimeSeries each) and returns the
    /// snappy-compressed body, valid until the next call.
    pub fn encode<'a, S: EncodableSample + 'a>(
        &mut self,
        samples: impl IntoIterator<Item = &'a S>,
    ) -> Result<&[u8], EncodeError> {
        self.proto.clear();
        for s in samples {
            match s.payload() {
                Payload::Sample(v) => {
                    write_timeseries(&mut self.proto, s.labels(), s.timestamp(), v)
                }
                other => write_other_timeseries(&mut self.proto, s.labels(), s.timestamp(), other),
            }
        }
        self.compress()
    }

    /// Encodes a metadata-only request (`metadata` = 3) of `(metric family
    /// name, metadata)` pairs and returns the compressed body.
    pub fn encode_metadata<'a>(
        &mut self,
        items: impl IntoIterator<Item = (&'a str, &'a MetricMetadata)>,
    ) -> Result<&[u8], EncodeError> {
        self.proto.clear();
        for (family, m) in items {
            proto::put_message(&mut self.proto, 3, |b| {
                proto::put_uint(b, 1, m.kind as u64);
                proto::put_string(b, 2, family);
                proto::put_string(b, 4, &m.help);
                proto::put_string(b, 5, &m.unit);
            });
        }
        self.compress()
    }

    /// The uncompressed protobuf of the last [`WriteRequestEncoder::encode`].
    pub fn last_uncompressed(&self) -> &[u8] {
        &self.proto
    }

    fn compress(&mut self) -> Result<&[u8], EncodeError> {
        snappy_into(&mut self.snappy, &self.proto, &mut self.compressed)
    }
}

/// Length of a length-delimited field (key + length prefix + payload).
fn len_field_size(payload: usize) -> usize {
    1 + varint_len(payload as u64) + payload
}

fn label_message_len(name: &str, value: &str) -> usize {
    len_field_size(name.len()) + len_field_size(value.len())
}

fn sample_message_len(t: Timestamp, v: f64) -> usize {
    let value = if v.to_bits() != 0 { 1 + 8 } else { 0 };
    // int64 is encoded as the two's-complement u64, so negatives take 10 bytes.
    let ts = if t != 0 { 1 + varint_len(t as u64) } else { 0 };
    value + ts
}

/// Up to two field keys with their varint lengths, assembled on the stack.
#[derive(Default)]
struct FieldHead {
    bytes: [u8; 24],
    len: usize,
}

impl FieldHead {
    fn push(&mut self, b: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn len_field(&mut self, key: u8, payload_len: usize) {
        self.push(key);
        let mut v = payload_len as u64;
        while v >= 0x80 {
            self.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.push(v as u8);
    }

    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

fn put_len_field(buf: &mut Vec<u8>, key: u8, payload_len: usize) {
    buf.push(key);
    put_varint(buf, payload_len as u64);
}

fn put_string_field(buf: &mut Vec<u8>, key: u8, s: &str) {
    put_len_field(buf, key, s.len());
    buf.extend_from_slice(s.as_bytes());
}

fn write_timeseries(buf: &mut Vec<u8>, labels: &Labels, t: Timestamp, v: f64) {
    // Sizes are computed first because protobuf prefixes each nested message
    // with its length; walking the packed labels twice is cheaper than
    // encoding into a scratch buffer and copying.
    let labels_len: usize = labels
        .iter()
        .map(|l| len_field_size(label_message_len(l.name, l.value)))
        .sum();
    let sample_len = sample_message_len(t, v);
    let series_len = labels_len + len_field_size(sample_len);

    buf.reserve(len_field_size(series_len));
    put_len_field(buf, KEY_WRITE_REQUEST_TIMESERIES, series_len);
    for l in labels {
        // Keys and lengths go through a stack buffer: one append per run
        // of small fields instead of a capacity check per byte.
        let mut head = FieldHead::default();
        head.len_field(KEY_TIMESERIES_LABEL, label_message_len(l.name, l.value));
        head.len_field(KEY_LABEL_NAME, l.name.len());
        buf.extend_from_slice(head.as_bytes());
        buf.extend_from_slice(l.name.as_bytes());
        let mut head = FieldHead::default();
        head.len_field(KEY_LABEL_VALUE, l.value.len());
        buf.extend_from_slice(head.as_bytes());
        buf.extend_from_slice(l.value.as_bytes());
    }
    put_len_field(buf, KEY_TIMESERIES_SAMPLE, sample_len);
    if v.to_bits() != 0 {
        buf.push(KEY_SAMPLE_VALUE);
        buf.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    if t != 0 {
        buf.push(KEY_SAMPLE_TIMESTAMP);
        put_varint(buf, t as u64);
    }
}

/// A TimeSeries carrying a histogram (field 4) or an exemplar (field 3).
fn write_other_timeseries(buf: &mut Vec<u8>, labels: &Labels, t: Timestamp, payload: Payload<'_>) {
    proto::put_message(buf, 1, |b| {
        write_labels(b, 1, labels);
        match payload {
            Payload::Histogram(h) => proto::put_message(b, 4, |b| proto::write_histogram(b, h, t)),
            Payload::Exemplar(ex_labels, v) => proto::put_message(b, 3, |b| {
                write_labels(b, 1, ex_labels);
                proto::put_double(b, 2, v);
                proto::put_int64(b, 3, t);
            }),
            Payload::Sample(v) => proto::put_message(b, 2, |b| {
                proto::put_double(b, 1, v);
                proto::put_int64(b, 2, t);
            }),
        }
    });
}

/// Repeated `Label` messages in field `field`.
fn write_labels(buf: &mut Vec<u8>, field: u32, labels: &Labels) {
    for l in labels {
        proto::put_key(buf, field, proto::WIRE_LEN);
        put_varint(buf, label_message_len(l.name, l.value) as u64);
        put_string_field(buf, KEY_LABEL_NAME, l.name);
        put_string_field(buf, KEY_LABEL_VALUE, l.value);
    }
}

/// Snappy block-compresses `proto` into the reused `out` buffer.
pub(crate) fn snappy_into<'a>(
    snappy: &mut snap::raw::Encoder,
    proto: &[u8],
    out: &'a mut Vec<u8>,
) -> Result<&'a [u8], EncodeError> {
    let max = snap::raw::max_compress_len(proto.len());
    if max == 0 && !proto.is_empty() {
        return Err(EncodeError::TooLarge(proto.len()));
    }
    if out.len() < max {
        out.resize(max, 0);
    }
    let n = snappy.compress(proto, out)?;
    Ok(out.get(..n).unwrap_or_default())
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    struct S(Labels, i64, f64);
    impl EncodableSample for S {
        fn labels(&self) -> &Labels {
            &self.0
        }
        fn timestamp(&self) -> Timestamp {
            self.1
        }
        fn value(&self) -> f64 {
            self.2
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct PbWriteRequest {
        #[prost(message, repeated, tag = "1")]
        timeseries: Vec<PbTimeSeries>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct PbTimeSeries {
        #[prost(message, repeated, tag = "1")]
        labels: Vec<PbLabel>,
        #[prost(message, repeated, tag = "2")]
        samples: Vec<PbSample>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct PbLabel {
        #[prost(string, tag = "1")]
        name: String,
        #[prost(string, tag = "2")]
        value: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct PbSample {
        #[prost(double, tag = "1")]
        value: f64,
        #[prost(int64, tag = "2")]
        timestamp: i64,
    }

    fn decode(body: &[u8]) -> PbWriteRequest {
        let raw = snap::raw::Decoder::new()
            .decompress_vec(body)
            .expect("valid snappy block");
        PbWriteRequest::decode(raw.as_slice()).expect("valid protobuf")
    }

    #[test]
    fn encodes_one_timeseries_per_sample_with_sorted_labels() {
        let l = Labels::from_pairs([("job", "x"), ("__name__", "up")]);
        let samples = [S(l.clone(), 1000, 1.0), S(l, 2000, 0.0)];
        let mut enc = WriteRequestEncoder::new();
        let req = decode(enc.encode(&samples).expect("encodes"));
        assert_eq!(req.timeseries.len(), 2);
        let names: Vec<_> = req.timeseries[0]
            .labels
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(names, ["__name__", "job"]);
        assert_eq!(req.timeseries[1].samples[0].timestamp, 2000);
        assert_eq!(req.timeseries[1].samples[0].value, 0.0);
    }

    #[test]
    fn stale_nan_bits_survive() {
        let samples = [S(
            Labels::from_pairs([("__name__", "a")]),
            -5,
            tributary_model::STALE_NAN,
        )];
        let mut enc = WriteRequestEncoder::new();
        let req = decode(enc.encode(&samples).expect("encodes"));
        let s = &req.timeseries[0].samples[0];
        assert_eq!(s.value.to_bits(), tributary_model::STALE_NAN_BITS);
        assert_eq!(s.timestamp, -5);
    }

    #[test]
    fn empty_batch_is_an_empty_request() {
        let mut enc = WriteRequestEncoder::new();
        let req = decode(enc.encode::<S>([]).expect("encodes"));
        assert!(req.timeseries.is_empty());
    }

    proptest! {
        #[test]
        fn round_trips_through_prost(
            series in proptest::collection::vec(
                (proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,20}", "\\PC{1,40}", 1..8),
                 any::<i64>(), any::<f64>()),
                0..40)
        ) {
            let samples: Vec<S> = series
                .iter()
                .map(|(m, t, v)| S(Labels::from_pairs(m.iter()), *t, *v))
                .collect();
            let mut enc = WriteRequestEncoder::new();
            let req = decode(enc.encode(&samples).expect("encodes"));
            prop_assert_eq!(req.timeseries.len(), samples.len());
            for (ts, s) in req.timeseries.iter().zip(&samples) {
                let got: Vec<(&str, &str)> =
                    ts.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
                let want: Vec<(&str, &str)> = s.0.iter().map(|l| (l.name, l.value)).collect();
                prop_assert_eq!(got, want);
                prop_assert_eq!(ts.samples.len(), 1);
                prop_assert_eq!(ts.samples[0].timestamp, s.1);
                prop_assert_eq!(ts.samples[0].value.to_bits(), s.2.to_bits());
            }
        }
    }
}
