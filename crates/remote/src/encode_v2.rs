//! Remote-write 2.0 request encoding (`io.prometheus.write.v2.Request`),
//! written by hand like the 1.0 encoder.
//!
//! Every label name and value is interned once per request into the
//! request's symbol table (`symbols[0]` is always the empty string, as the
//! spec requires) and series refer to them by index, which is where 2.0
//! saves bytes over 1.0. The table is an arena `String` plus a
//! `hashbrown::HashTable` of indexes hashed by content, so after the first
//! requests warm the buffers up, encoding allocates nothing: no per-sample,
//! per-label or per-symbol allocation.
//!
//! Wire shapes used (field number, wire type):
//! - Request: `symbols` = 4 (string), `timeseries` = 5 (TimeSeries).
//! - TimeSeries: `labels_refs` = 1 (packed uint32), `samples` = 2 (Sample),
//!   `histograms` = 3 (Histogram, same fields as 1.0), `exemplars` = 4
//!   (Exemplar: `labels_refs` = 1, `value` = 2, `timestamp` = 3),
//!   `metadata` = 5 (Metadata: `type` = 1, `help_ref` = 3, `unit_ref` = 4)
//!   when the series' metadata is known. Created timestamps are omitted
//!   (the WAL does not carry them), which means "unknown" to the receiver.
//! - Sample: `value` = 1 (double), `timestamp` = 2 (int64).
//!
//! Like Prometheus, each sample gets its own TimeSeries entry.

use bytes::Bytes;
use std::hash::{BuildHasher, Hasher};

use hashbrown::HashTable;
use tributary_model::Timestamp;

use crate::encode::snappy_into;
use crate::encode::{EncodableSample, EncodeError, Payload};
use crate::proto;
use crate::proto::{put_varint, varint_len};

/// `Content-Type` of a 2.0 request.
pub const CONTENT_TYPE_V2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
/// `X-Prometheus-Remote-Write-Version` of a 2.0 request.
pub const VERSION_V2: &str = "2.0.0";

const KEY_REQUEST_SYMBOLS: u8 = (4 << 3) | 2;
const KEY_REQUEST_TIMESERIES: u8 = (5 << 3) | 2;
const KEY_TIMESERIES_LABEL_REFS: u8 = (1 << 3) | 2;
const KEY_TIMESERIES_SAMPLE: u8 = (2 << 3) | 2;
const KEY_SAMPLE_VALUE: u8 = (1 << 3) | 1;
const KEY_SAMPLE_TIMESTAMP: u8 = 2 << 3;

/// The per-request symbol table.
#[derive(Default)]
struct Symbols {
    arena: String,
    /// (start, len) of each symbol in `arena`, by symbol index.
    spans: Vec<(u32, u32)>,
    index: HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Symbols {
    fn clear(&mut self) {
        self.arena.clear();
        self.spans.clear();
        self.index.clear();
        self.intern("");
    }

    fn get(&self, i: u32) -> &str {
        let (start, len) = self.spans.get(i as usize).copied().unwrap_or((0, 0));
        self.arena
            .get(start as usize..(start + len) as usize)
            .unwrap_or("")
    }

    fn hash(hasher: &hashbrown::DefaultHashBuilder, s: &str) -> u64 {
        let mut h = hasher.build_hasher();
        h.write(s.as_bytes());
        h.finish()
    }

    /// The index of `s`, added if new.
    fn intern(&mut self, s: &str) -> u32 {
        let hash = Self::hash(&self.hasher, s);
        let (arena, spans) = (&self.arena, &self.spans);
        let lookup = |i: &u32| {
            let (start, len) = spans.get(*i as usize).copied().unwrap_or((0, 0));
            arena.get(start as usize..(start + len) as usize) == Some(s)
        };
        if let Some(i) = self.index.find(hash, lookup) {
            return *i;
        }
        let i = self.spans.len() as u32;
        self.spans.push((self.arena.len() as u32, s.len() as u32));
        self.arena.push_str(s);
        let hasher = &self.hasher;
        let (arena, spans) = (&self.arena, &self.spans);
        self.index.insert_unique(hash, i, |j| {
            let (start, len) = spans.get(*j as usize).copied().unwrap_or((0, 0));
            Self::hash(
                hasher,
                arena
                    .get(start as usize..(start + len) as usize)
                    .unwrap_or(""),
            )
        });
        i
    }
}

/// Encodes and compresses 2.0 write requests, reusing its buffers. One per
/// shard.
pub struct WriteRequestV2Encoder {
    symbols: Symbols,
    refs: Vec<u32>,
    exemplar_refs: Vec<u32>,
    series: Vec<u8>,
    proto: Vec<u8>,
    compressed: Vec<u8>,
    snappy: snap::raw::Encoder,
}

impl Default for WriteRequestV2Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl WriteRequestV2Encoder {
    pub fn new() -> Self {
        Self {
            symbols: Symbols::default(),
            refs: Vec::new(),
            exemplar_refs: Vec::new(),
            series: Vec::new(),
            proto: Vec::new(),
            compressed: Vec::new(),
            snappy: snap::raw::Encoder::new(),
        }
    }

    /// Encodes `samples` (one TimeSeries each) and returns the
    /// snappy-compressed body.
    pub fn encode<'a, S: EncodableSample<'a>>(
        &mut self,
        samples: impl IntoIterator<Item = S>,
    ) -> Result<Bytes, EncodeError> {
        self.symbols.clear();
        self.series.clear();
        for s in samples {
            self.refs.clear();
            for l in s.labels().pieces().map(|p| p.label()) {
                let name = self.symbols.intern(&l.name);
                let value = self.symbols.intern(&l.value);
                self.refs.push(name);
                self.refs.push(value);
            }
            match (s.payload(), s.metadata()) {
                (Payload::Sample(v), None) => {
                    write_timeseries(&mut self.series, &self.refs, s.timestamp(), v)
                }
                (payload, metadata) => self.write_full_timeseries(s.timestamp(), payload, metadata),
            }
        }
        self.proto.clear();
        for i in 0..self.symbols.spans.len() as u32 {
            let sym = self.symbols.get(i);
            self.proto.push(KEY_REQUEST_SYMBOLS);
            put_varint(&mut self.proto, sym.len() as u64);
            self.proto.extend_from_slice(sym.as_bytes());
        }
        self.proto.extend_from_slice(&self.series);
        self.compress()
    }

    /// A TimeSeries with a histogram or exemplar and/or inline metadata;
    /// `self.refs` holds its label refs.
    fn write_full_timeseries(
        &mut self,
        t: Timestamp,
        payload: Payload<'_>,
        metadata: Option<&crate::encode::MetricMetadata>,
    ) {
        self.exemplar_refs.clear();
        if let Payload::Exemplar(labels, _) = payload {
            for l in labels {
                let name = self.symbols.intern(l.name);
                let value = self.symbols.intern(l.value);
                self.exemplar_refs.push(name);
                self.exemplar_refs.push(value);
            }
        }
        let meta = metadata.map(|m| {
            (
                m.kind as u64,
                self.symbols.intern(&m.help),
                self.symbols.intern(&m.unit),
            )
        });
        let (refs, exemplar_refs) = (&self.refs, &self.exemplar_refs);
        proto::put_message(&mut self.series, 5, |b| {
            proto::put_packed_u32(b, 1, refs);
            match payload {
                Payload::Sample(v) => proto::put_message(b, 2, |b| {
                    proto::put_double(b, 1, v);
                    proto::put_int64(b, 2, t);
                }),
                Payload::Histogram(h) => {
                    proto::put_message(b, 3, |b| proto::write_histogram(b, h, t))
                }
                Payload::Exemplar(_, v) => proto::put_message(b, 4, |b| {
                    proto::put_packed_u32(b, 1, exemplar_refs);
                    proto::put_double(b, 2, v);
                    proto::put_int64(b, 3, t);
                }),
            }
            if let Some((kind, help, unit)) = meta {
                proto::put_message(b, 5, |b| {
                    proto::put_uint(b, 1, kind);
                    proto::put_uint(b, 3, u64::from(help));
                    proto::put_uint(b, 4, u64::from(unit));
                });
            }
        });
    }

    /// The uncompressed protobuf of the last encode.
    pub fn last_uncompressed(&self) -> &[u8] {
        &self.proto
    }

    fn compress(&mut self) -> Result<Bytes, EncodeError> {
        snappy_into(&mut self.snappy, &self.proto, &mut self.compressed)
    }
}

fn write_timeseries(buf: &mut Vec<u8>, refs: &[u32], t: Timestamp, v: f64) {
    let refs_len: usize = refs.iter().map(|r| varint_len(u64::from(*r))).sum();
    let sample_len =
        if v.to_bits() != 0 { 9 } else { 0 } + if t != 0 { 1 + varint_len(t as u64) } else { 0 };
    let mut series_len = 1 + varint_len(sample_len as u64) + sample_len;
    if !refs.is_empty() {
        series_len += 1 + varint_len(refs_len as u64) + refs_len;
    }
    buf.push(KEY_REQUEST_TIMESERIES);
    put_varint(buf, series_len as u64);
    if !refs.is_empty() {
        buf.push(KEY_TIMESERIES_LABEL_REFS);
        put_varint(buf, refs_len as u64);
        for r in refs {
            put_varint(buf, u64::from(*r));
        }
    }
    buf.push(KEY_TIMESERIES_SAMPLE);
    put_varint(buf, sample_len as u64);
    if v.to_bits() != 0 {
        buf.push(KEY_SAMPLE_VALUE);
        buf.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    if t != 0 {
        buf.push(KEY_SAMPLE_TIMESTAMP);
        put_varint(buf, t as u64);
    }
}

/// What a 2.0 receiver reported in its `X-Prometheus-Remote-Write-*-Written`
/// response headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WrittenStats {
    pub samples: u64,
    pub histograms: u64,
    pub exemplars: u64,
    /// At least one of the headers was present.
    pub confirmed: bool,
}

impl WrittenStats {
    /// Parses the response headers; absent or unparsable headers count 0.
    pub fn from_headers(headers: &http::HeaderMap) -> WrittenStats {
        let mut out = WrittenStats::default();
        let mut get = |name: &str| -> u64 {
            match headers.get(name).and_then(|v| v.to_str().ok()) {
                Some(v) => {
                    out.confirmed = true;
                    v.trim().parse().unwrap_or(0)
                }
                None => 0,
            }
        };
        let samples = get("X-Prometheus-Remote-Write-Samples-Written");
        let histograms = get("X-Prometheus-Remote-Write-Histograms-Written");
        let exemplars = get("X-Prometheus-Remote-Write-Exemplars-Written");
        WrittenStats {
            samples,
            histograms,
            exemplars,
            confirmed: out.confirmed,
        }
    }

    /// The spec's safety rule: a 2xx that confirms writing nothing of a
    /// non-empty request most likely comes from a 1.0-only receiver that
    /// ignored the content type, so the batch must not count as delivered.
    /// Without any header the receiver made no statement; the 2xx stands.
    pub fn contradicts_success(&self, sent_samples: u64) -> bool {
        self.confirmed && sent_samples > 0 && self.samples + self.histograms + self.exemplars == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tributary_model::Labels;

    /// The published `io.prometheus.write.v2` messages (the fields used).
    mod v2 {
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Request {
            #[prost(string, repeated, tag = "4")]
            pub symbols: Vec<String>,
            #[prost(message, repeated, tag = "5")]
            pub timeseries: Vec<TimeSeries>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct TimeSeries {
            #[prost(uint32, repeated, tag = "1")]
            pub labels_refs: Vec<u32>,
            #[prost(message, repeated, tag = "2")]
            pub samples: Vec<Sample>,
            #[prost(int64, tag = "6")]
            pub created_timestamp: i64,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct Sample {
            #[prost(double, tag = "1")]
            pub value: f64,
            #[prost(int64, tag = "2")]
            pub timestamp: i64,
        }
    }

    struct S(Labels, i64, f64);
    impl<'a> EncodableSample<'a> for &'a S {
        fn labels(&self) -> crate::encode::ItemLabels<'a> {
            crate::encode::ItemLabels::Owned(&self.0)
        }
        fn timestamp(&self) -> Timestamp {
            self.1
        }
        fn value(&self) -> f64 {
            self.2
        }
    }

    fn decode(body: &[u8]) -> v2::Request {
        let raw = snap::raw::Decoder::new().decompress_vec(body).unwrap();
        prost::Message::decode(raw.as_slice()).unwrap()
    }

    #[test]
    fn round_trips_through_the_published_proto_with_a_shared_symbol_table() {
        let samples = vec![
            S(
                Labels::from_pairs([("__name__", "up"), ("job", "a")]),
                1_700_000_000_123,
                1.0,
            ),
            S(
                Labels::from_pairs([("__name__", "up"), ("job", "b")]),
                -5,
                0.0,
            ),
            S(
                Labels::from_pairs([("__name__", "x"), ("job", "a")]),
                0,
                f64::NAN,
            ),
        ];
        let mut enc = WriteRequestV2Encoder::new();
        // Twice: the second request must not inherit the first's symbols.
        for _ in 0..2 {
            let req = decode(&enc.encode(&samples).unwrap());
            assert_eq!(
                req.symbols,
                vec!["", "__name__", "up", "job", "a", "b", "x"]
            );
            assert_eq!(req.timeseries.len(), 3);
            for (ts, s) in req.timeseries.iter().zip(&samples) {
                let labels: Vec<(&str, &str)> = ts
                    .labels_refs
                    .chunks(2)
                    .map(|p| {
                        (
                            req.symbols[p[0] as usize].as_str(),
                            req.symbols[p[1] as usize].as_str(),
                        )
                    })
                    .collect();
                let want: Vec<(&str, &str)> = s.0.iter().map(|l| (l.name, l.value)).collect();
                assert_eq!(labels, want);
                assert_eq!(ts.samples.len(), 1);
                assert_eq!(ts.samples[0].timestamp, s.1);
                assert_eq!(ts.samples[0].value.to_bits(), s.2.to_bits());
            }
        }
        let small = decode(&enc.encode(&samples[..1]).unwrap());
        assert_eq!(small.symbols, vec!["", "__name__", "up", "job", "a"]);
    }

    #[test]
    fn written_headers_rule() {
        let mut h = http::HeaderMap::new();
        let none = WrittenStats::from_headers(&h);
        assert!(!none.confirmed);
        assert!(!none.contradicts_success(10));
        h.insert(
            "X-Prometheus-Remote-Write-Samples-Written",
            "0".parse().unwrap(),
        );
        let zero = WrittenStats::from_headers(&h);
        assert!(zero.confirmed);
        assert!(zero.contradicts_success(10));
        assert!(!zero.contradicts_success(0));
        h.insert(
            "X-Prometheus-Remote-Write-Samples-Written",
            "10".parse().unwrap(),
        );
        assert!(!WrittenStats::from_headers(&h).contradicts_success(10));
    }
}
