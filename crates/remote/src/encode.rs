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
//!   `exemplars` = 3 (Exemplar), `histograms` = 4 (Histogram). The sample
//!   (or histogram, or exemplar) is written before the labels — decoders
//!   accept fields in any order, as protobuf requires, and the snappy
//!   stream then needs one literal element per sample, not two.
//! - Exemplar: `labels` = 1, `value` = 2, `timestamp` = 3.
//! - WriteRequest `metadata` = 3 (MetricMetadata: `type` = 1,
//!   `metric_family_name` = 2, `help` = 4, `unit` = 5), sent in separate
//!   metadata-only requests ([`WriteRequestEncoder::encode_metadata`]).
//! - Label: `name` = 1, `value` = 2 (strings).
//! - Sample: `value` = 1 (double, fixed64), `timestamp` = 2 (int64 varint).
//!
//! Zero-valued scalars are omitted, as proto3 encoders do.

use std::borrow::Cow;

use bytes::Bytes;
use tributary_model::{
    Label, Labels, MetricType, NativeHistogram, PairId, PairIds, PairTable, StoredLabel, Timestamp,
};

use crate::proto;
use crate::proto::{put_varint, varint_len};
use crate::snappy_stream::{put_bytes, Occurrence, SnappyStream};

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

/// Keys of external labels in the request stream: the top of the id space,
/// which a [`PairTable`] never reaches.
const EXTERNAL_KEY_BASE: u32 = u32::MAX - 4096;

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

/// A queue's external labels, sorted by name, with their wire form.
#[derive(Debug, Clone, Default)]
pub struct ExternalLabels {
    entries: Vec<ExternalLabel>,
}

#[derive(Debug, Clone)]
struct ExternalLabel {
    name: String,
    wire: Vec<u8>,
}

impl ExternalLabels {
    pub fn new(labels: &Labels) -> Self {
        let entries = labels
            .iter()
            .take((u32::MAX - EXTERNAL_KEY_BASE) as usize)
            .map(|l| {
                let mut wire = Vec::new();
                write_label_field(&mut wire, l);
                ExternalLabel {
                    name: l.name.to_owned(),
                    wire,
                }
            })
            .collect();
        ExternalLabels { entries }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Where an item's labels come from.
#[derive(Clone)]
pub enum ItemLabels<'a> {
    /// A finished set (already with external labels and relabeling).
    Owned(&'a Labels),
    /// A series' interned pairs, external labels merged in by name (the
    /// series' own label wins, as in Prometheus).
    Stored {
        pairs: &'a PairTable,
        ids: PairIds<'a>,
        external: &'a ExternalLabels,
    },
}

/// One label of an item: an interned pair, an external label (wire bytes
/// with their key), or text.
#[derive(Clone, Copy)]
pub enum LabelPiece<'a> {
    Pair { id: u32, pairs: &'a PairTable },
    External { key: u32, bytes: &'a [u8] },
    Text(Label<'a>),
}

impl<'a> LabelPiece<'a> {
    /// Length of the piece's `TimeSeries.labels` field, and where the
    /// request already carries it (`at` 0: nowhere the sink knows of).
    fn find<S: Sink>(&self, sink: &S) -> Occurrence {
        let unseen = |len: usize| Occurrence {
            at: 0,
            len: len as u32,
        };
        match self {
            LabelPiece::Pair { id, pairs } => find_pair(sink, pairs, *id),
            LabelPiece::External { key, bytes } => {
                sink.find(*key).unwrap_or_else(|| unseen(bytes.len()))
            }
            LabelPiece::Text(l) => unseen(len_field_size(label_message_len(l.name, l.value))),
        }
    }

    /// Name and value (interned text is UTF-8 by construction), owned
    /// only for a pair stored packed.
    pub fn label(&self) -> StoredLabel<'a> {
        let borrowed = |name, value| StoredLabel {
            name: Cow::Borrowed(name),
            value: Cow::Borrowed(value),
        };
        match *self {
            LabelPiece::Text(l) => borrowed(l.name, l.value),
            LabelPiece::Pair { id, pairs, .. } => {
                pairs.label(id).unwrap_or_else(|| borrowed("", ""))
            }
            LabelPiece::External { bytes, .. } => {
                let (n, v) = PairTable::split_wire(bytes).unwrap_or_default();
                borrowed(
                    std::str::from_utf8(n).unwrap_or_default(),
                    std::str::from_utf8(v).unwrap_or_default(),
                )
            }
        }
    }
}

impl<'a> ItemLabels<'a> {
    /// The labels in name order.
    pub fn pieces(&self) -> Pieces<'a> {
        match self {
            ItemLabels::Owned(l) => Pieces(PiecesInner::Owned(l.iter())),
            ItemLabels::Stored {
                pairs,
                ids,
                external,
            } => Pieces(PiecesInner::Stored {
                pairs,
                ids: ids.clone(),
                next: None,
                external: &external.entries,
            }),
        }
    }
}

/// Iterator of an item's [`LabelPiece`]s.
#[derive(Clone)]
pub struct Pieces<'a>(PiecesInner<'a>);

#[derive(Clone)]
enum PiecesInner<'a> {
    Owned(tributary_model::LabelsIter<'a>),
    Stored {
        pairs: &'a PairTable,
        ids: PairIds<'a>,
        /// A stored pair read but not handed out yet.
        next: Option<u32>,
        external: &'a [ExternalLabel],
    },
}

impl<'a> Iterator for Pieces<'a> {
    type Item = LabelPiece<'a>;

    fn next(&mut self) -> Option<LabelPiece<'a>> {
        match &mut self.0 {
            PiecesInner::Owned(it) => it.next().map(LabelPiece::Text),
            PiecesInner::Stored {
                pairs,
                ids,
                next,
                external,
            } => {
                let stored = next.take().or_else(|| ids.next());
                let Some((ext, rest)) = external.split_first() else {
                    return stored.map(|id| LabelPiece::Pair { id, pairs });
                };
                let ext_piece = LabelPiece::External {
                    key: u32::MAX - rest.len() as u32,
                    bytes: &ext.wire,
                };
                let Some(id) = stored else {
                    *external = rest;
                    return Some(ext_piece);
                };
                match pairs.cmp_name(ext.name.as_bytes(), id) {
                    std::cmp::Ordering::Less => {
                        *next = Some(id);
                        *external = rest;
                        Some(ext_piece)
                    }
                    std::cmp::Ordering::Equal => {
                        *external = rest;
                        Some(LabelPiece::Pair { id, pairs })
                    }
                    std::cmp::Ordering::Greater => Some(LabelPiece::Pair { id, pairs }),
                }
            }
        }
    }
}

/// One item to send (a float sample unless [`EncodableSample::payload`]
/// says otherwise) with the labels of its series, borrowed for `'a` (the
/// encoding of one request).
pub trait EncodableSample<'a> {
    fn labels(&self) -> ItemLabels<'a>;
    fn timestamp(&self) -> Timestamp;
    fn value(&self) -> f64;
    fn payload(&self) -> Payload<'a> {
        Payload::Sample(self.value())
    }
    /// Sent inline by remote write 2.0 only.
    fn metadata(&self) -> Option<&'a MetricMetadata> {
        None
    }
}

/// Where encoded bytes go: straight into a protobuf buffer, or into a
/// [`SnappyStream`] that turns repeated keyed bytes into copies.
trait Sink {
    /// Label text.
    fn text(&mut self, bytes: &[u8]);
    /// Framing and values.
    fn raw(&mut self, bytes: &[u8]);
    /// `len` bytes identified by `key`, which `write` puts at the start of
    /// a buffer of at least `len` + [`PairTable::WIRE_SLACK`] bytes when
    /// they are needed, returning how many it wrote; `at` is what
    /// [`Sink::find`] said of `key` earlier in the request (0: not found).
    fn keyed(&mut self, key: u32, len: usize, at: u32, write: impl FnOnce(&mut [u8]) -> usize);
    /// A TimeSeries entry's head, its sample up to the timestamp and the
    /// timestamp.
    fn sample(&mut self, head: &FieldHead, value: &FieldHead, ts: &FieldHead) {
        self.raw(head.as_bytes());
        self.raw(value.as_bytes());
        self.raw(ts.as_bytes());
    }
    /// An earlier [`Sink::keyed`] call's bytes with `key` in this request,
    /// where the sink still knows them.
    fn find(&self, _key: u32) -> Option<Occurrence> {
        None
    }
}

impl Sink for Vec<u8> {
    fn text(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn raw(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn keyed(&mut self, _key: u32, len: usize, _at: u32, write: impl FnOnce(&mut [u8]) -> usize) {
        PairTable::append_written(self, len, write);
    }
}

impl Sink for SnappyStream {
    fn text(&mut self, bytes: &[u8]) {
        self.literal(bytes);
    }
    fn raw(&mut self, bytes: &[u8]) {
        self.plain(bytes);
    }
    fn keyed(&mut self, key: u32, len: usize, at: u32, write: impl FnOnce(&mut [u8]) -> usize) {
        SnappyStream::keyed_at(self, key, len, at, write);
    }
    fn sample(&mut self, head: &FieldHead, value: &FieldHead, ts: &FieldHead) {
        SnappyStream::sample(
            self,
            (&head.bytes, head.len),
            (&value.bytes, value.len),
            (&ts.bytes, ts.len),
        );
    }
    fn find(&self, key: u32) -> Option<Occurrence> {
        SnappyStream::find(self, key)
    }
}

/// Encodes and compresses write requests, reusing its buffers between calls.
/// One per shard.
pub struct WriteRequestEncoder {
    proto: Vec<u8>,
    compressed: Vec<u8>,
    snappy: snap::raw::Encoder,
    stream: SnappyStream,
    /// The non-label part of the TimeSeries being written.
    tail: Vec<u8>,
    /// [`ItemScratch::pairs`] between requests, for its memory.
    pairs: Vec<(PairId, Occurrence)>,
}

impl Default for WriteRequestEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl WriteRequestEncoder {
    pub fn new() -> Self {
        WriteRequestEncoder {
            proto: Vec::new(),
            compressed: Vec::new(),
            snappy: snap::raw::Encoder::new(),
            stream: SnappyStream::default(),
            tail: Vec::new(),
            pairs: Vec::new(),
        }
    }

    /// Encodes `samples` (one TimeSeries each) and returns the
    /// snappy-compressed body.
    ///
    /// When every item's labels are interned (the queue's normal case) the
    /// request is written as a snappy stream with copies for repeated pairs
    /// (see [`crate::snappy_stream`]); items with owned labels have no ids
    /// to match, so such a batch is encoded plainly and compressed by snappy.
    pub fn encode<'a, S: EncodableSample<'a>>(
        &mut self,
        samples: impl IntoIterator<Item = S, IntoIter: Clone>,
    ) -> Result<Bytes, EncodeError> {
        let samples = samples.into_iter();
        // One item's labels, gathered once: their total length heads the
        // TimeSeries entry.
        let mut scratch = ItemScratch {
            pairs: std::mem::take(&mut self.pairs),
            ..ItemScratch::default()
        };
        // Optimistically one pass as a stream: finding an item's labels
        // costs a label-store lookup, so a separate pass to check that all
        // are interned would cost as many. An item with owned labels ends
        // the attempt and the batch is encoded plainly from the start.
        self.stream.reset();
        let mut interned = true;
        for s in samples.clone() {
            let labels = s.labels();
            if !matches!(labels, ItemLabels::Stored { .. }) {
                interned = false;
                break;
            }
            write_item(&mut self.stream, &mut self.tail, &mut scratch, &s, labels);
        }
        self.pairs = std::mem::take(&mut scratch.pairs);
        if interned {
            return Ok(self.stream.finish());
        }
        self.encode_plain(samples)
    }

    /// Takes back a body [`WriteRequestEncoder::encode`] returned, once it
    /// is sent, so that the next request is written into the same memory.
    pub fn recycle(&mut self, body: Bytes) {
        self.stream.recycle(body);
    }

    /// Encodes `samples` as plain protobuf compressed by snappy: for
    /// batches known to hold items with owned labels, where the stream of
    /// [`WriteRequestEncoder::encode`] would be abandoned.
    pub fn encode_plain<'a, S: EncodableSample<'a>>(
        &mut self,
        samples: impl IntoIterator<Item = S>,
    ) -> Result<Bytes, EncodeError> {
        let mut scratch = ItemScratch::default();
        self.proto.clear();
        for s in samples {
            write_item(
                &mut self.proto,
                &mut self.tail,
                &mut scratch,
                &s,
                s.labels(),
            );
        }
        self.compress()
    }

    /// Encodes a metadata-only request (`metadata` = 3) of `(metric family
    /// name, metadata)` pairs and returns the compressed body.
    pub fn encode_metadata<'a>(
        &mut self,
        items: impl IntoIterator<Item = (&'a str, &'a MetricMetadata)>,
    ) -> Result<Bytes, EncodeError> {
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

    fn compress(&mut self) -> Result<Bytes, EncodeError> {
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

/// A field key with its varint length, assembled in a register and stored
/// once: written byte by byte, the copy that follows read the bytes back
/// wider than they were stored and stalled on store forwarding (4 % of the
/// encoder's samples in a profile at 400k series). The bytes after `len`
/// are zeros.
#[derive(Clone, Copy, Default)]
pub(crate) struct FieldHead {
    bytes: [u8; 16],
    len: usize,
}

impl FieldHead {
    fn new(key: u8, payload_len: usize) -> Self {
        Self::with_varint(key, payload_len as u64)
    }

    /// The key followed by `v` as a varint (a length, or a varint field's
    /// value).
    fn with_varint(key: u8, mut v: u64) -> Self {
        // Nearly every length is under 2^14, one or two varint bytes:
        // assembled in a 64-bit word, where the general loop below shifts
        // a 128-bit one (several instructions a shift).
        if v < 1 << 14 {
            let (word, len) = match v {
                0..0x80 => (u64::from(key) | v << 8, 2),
                _ => (u64::from(key) | (v & 0x7f | 0x80) << 8 | (v >> 7) << 16, 3),
            };
            return FieldHead {
                bytes: u128::from(word).to_le_bytes(),
                len,
            };
        }
        // A key byte and at most 10 varint bytes fit the 16.
        let mut word = u128::from(key);
        let mut len = 1;
        while v >= 0x80 {
            word |= u128::from(v as u8 | 0x80) << (8 * len);
            len += 1;
            v >>= 7;
        }
        word |= u128::from(v as u8) << (8 * len);
        FieldHead {
            bytes: word.to_le_bytes(),
            len: len + 1,
        }
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

/// One `TimeSeries.labels` field for a label given as text.
fn write_label_field(buf: &mut Vec<u8>, l: Label<'_>) {
    put_len_field(
        buf,
        KEY_TIMESERIES_LABEL,
        label_message_len(l.name, l.value),
    );
    put_string_field(buf, KEY_LABEL_NAME, l.name);
    put_string_field(buf, KEY_LABEL_VALUE, l.value);
}

fn write_text_label<S: Sink>(sink: &mut S, l: Label<'_>) {
    let head = FieldHead::new(KEY_TIMESERIES_LABEL, label_message_len(l.name, l.value));
    sink.raw(head.as_bytes());
    sink.raw(FieldHead::new(KEY_LABEL_NAME, l.name.len()).as_bytes());
    sink.text(l.name.as_bytes());
    sink.raw(FieldHead::new(KEY_LABEL_VALUE, l.value.len()).as_bytes());
    sink.text(l.value.as_bytes());
}

/// Reused per request by [`write_item`]: an item's labels with their wire
/// lengths, gathered once because their total heads the TimeSeries entry,
/// and the last timestamp's field.
#[derive(Default)]
struct ItemScratch<'a> {
    /// An item's labels in general: each with its length and where the
    /// request already carries it (see [`LabelPiece::find`]).
    pieces: Vec<(LabelPiece<'a>, Occurrence)>,
    /// The common case, stored pairs and no external labels, kept narrow:
    /// each pair id with its earlier occurrence in the request (`at` 0 and
    /// the pair table's length if none), looked up once for both the
    /// entry's length and the copy.
    pairs: Vec<(PairId, Occurrence)>,
    /// The last timestamp encoded, and its field: the samples of a scrape
    /// share one, and its varint took a loop of six steps to size and
    /// six more to write for every sample.
    ts: (Timestamp, FieldHead),
}

impl ItemScratch<'_> {
    /// The `Sample.timestamp` field for `t` (empty for 0, which proto3
    /// leaves out).
    fn timestamp_field(&mut self, t: Timestamp) -> &FieldHead {
        if self.ts.0 != t {
            self.ts = (
                t,
                if t == 0 {
                    FieldHead::default()
                } else {
                    FieldHead::with_varint(KEY_SAMPLE_TIMESTAMP, t as u64)
                },
            );
        }
        &self.ts.1
    }
}

/// Where the request already carries pair `id` (the sink knows its length
/// then), or its length from the pair table with `at` 0: a pair's length
/// is a cache miss away in the table, and most pairs of a request repeat
/// one already in it (items borrow the table for the whole request, so an
/// id means the same pair throughout it).
fn find_pair<S: Sink>(sink: &S, pairs: &PairTable, id: PairId) -> Occurrence {
    sink.find(id).unwrap_or_else(|| Occurrence {
        at: 0,
        len: pairs.encoded_len(id) as u32,
    })
}

/// One TimeSeries entry: the sample, histogram or exemplar, then the
/// labels (the entry's length covers both, so a histogram or exemplar is
/// encoded into `tail` first, a float sample into fixed arrays).
fn write_item<'a, S: Sink, E: EncodableSample<'a>>(
    sink: &mut S,
    tail: &mut Vec<u8>,
    scratch: &mut ItemScratch<'a>,
    item: &E,
    labels: ItemLabels<'a>,
) {
    let t = item.timestamp();
    tail.clear();
    // A float sample's timestamp goes last (kept apart from `tail`), so
    // the samples of one scrape repeat it as a copy.
    let mut sample = None;
    match item.payload() {
        Payload::Sample(v) => {
            let ts = scratch.timestamp_field(t);
            // The sample's field head and value as one word (stored
            // whole, not byte by byte: see `SnappyStream::sample`); the
            // sample message's length (at most 9 + 11) is one byte.
            let bits = v.to_bits();
            let (field, field_len) = match bits {
                0 => (0, 0),
                _ => (u128::from(KEY_SAMPLE_VALUE) | (u128::from(bits) << 8), 9),
            };
            let len = 2 + field_len;
            let word = u128::from(KEY_TIMESERIES_SAMPLE)
                | (u128::from((field_len + ts.len) as u8) << 8)
                | (field << 16);
            let value = FieldHead {
                bytes: word.to_le_bytes(),
                len,
            };
            sample = Some((value, *ts));
        }
        Payload::Histogram(h) => proto::put_message(tail, 4, |b| proto::write_histogram(b, h, t)),
        Payload::Exemplar(ex_labels, v) => proto::put_message(tail, 3, |b| {
            for l in ex_labels {
                write_label_field(b, l);
            }
            proto::put_double(b, 2, v);
            proto::put_int64(b, 3, t);
        }),
    }
    match labels {
        ItemLabels::Stored {
            pairs,
            ids,
            external,
        } if external.is_empty() => {
            let list = &mut scratch.pairs;
            list.clear();
            let mut labels_len = 0;
            for id in ids {
                let found = find_pair(sink, pairs, id);
                labels_len += found.len as usize;
                list.push((id, found));
            }
            write_head(sink, tail, sample, labels_len);
            for &(id, found) in list.iter() {
                sink.keyed(id, found.len as usize, found.at, |dst| {
                    pairs.write_wire(id, dst)
                });
            }
        }
        labels => {
            let pieces = &mut scratch.pieces;
            pieces.clear();
            pieces.extend(labels.pieces().map(|p| (p, p.find(sink))));
            let labels_len = pieces.iter().map(|(_, found)| found.len as usize).sum();
            write_head(sink, tail, sample, labels_len);
            for &(piece, found) in pieces.iter() {
                let (len, at) = (found.len as usize, found.at);
                match piece {
                    LabelPiece::Pair { id, pairs } => {
                        sink.keyed(id, len, at, |dst| pairs.write_wire(id, dst))
                    }
                    LabelPiece::External { key, bytes } => {
                        sink.keyed(key, len, at, |dst| put_bytes(dst, bytes))
                    }
                    LabelPiece::Text(l) => write_text_label(sink, l),
                }
            }
        }
    }
}

/// A TimeSeries entry's head and its sample, which go before its labels
/// (protobuf fields may come in any order, and decoders read them so): the
/// entry's head and value are then one literal, and the timestamp's copy
/// runs straight into the labels' copies — one literal element per sample
/// instead of two.
fn write_head<S: Sink>(
    sink: &mut S,
    tail: &[u8],
    sample: Option<(FieldHead, FieldHead)>,
    labels_len: usize,
) {
    let Some((value, ts)) = sample else {
        sink.raw(FieldHead::new(KEY_WRITE_REQUEST_TIMESERIES, labels_len + tail.len()).as_bytes());
        sink.raw(tail);
        return;
    };
    let head = FieldHead::new(
        KEY_WRITE_REQUEST_TIMESERIES,
        labels_len + value.len + ts.len,
    );
    sink.sample(&head, &value, &ts);
}

/// Snappy block-compresses `proto` through the reused `out` buffer and
/// returns the block as the request body (a copy: snappy needs its worst
/// case as room, so `out` is kept rather than handed over).
pub(crate) fn snappy_into(
    snappy: &mut snap::raw::Encoder,
    proto: &[u8],
    out: &mut Vec<u8>,
) -> Result<Bytes, EncodeError> {
    let max = snap::raw::max_compress_len(proto.len());
    if max == 0 && !proto.is_empty() {
        return Err(EncodeError::TooLarge(proto.len()));
    }
    if out.len() < max {
        out.resize(max, 0);
    }
    let n = snappy.compress(proto, out)?;
    Ok(Bytes::copy_from_slice(out.get(..n).unwrap_or_default()))
}

#[cfg(test)]
#[allow(clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;

    struct S(Labels, i64, f64);
    impl<'a> EncodableSample<'a> for &'a S {
        fn labels(&self) -> ItemLabels<'a> {
            ItemLabels::Owned(&self.0)
        }
        fn timestamp(&self) -> Timestamp {
            self.1
        }
        fn value(&self) -> f64 {
            self.2
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct PbWriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<PbTimeSeries>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct PbTimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<PbLabel>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<PbSample>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct PbLabel {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct PbSample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }

    pub(crate) fn decode(body: &[u8]) -> PbWriteRequest {
        let raw = snap::raw::Decoder::new()
            .decompress_vec(body)
            .expect("valid snappy block");
        PbWriteRequest::decode(raw.as_slice()).expect("valid protobuf")
    }

    #[test]
    fn field_head_matches_the_varint_writer_at_every_length() {
        let mut lens: Vec<usize> = (0..64).map(|b| 1usize << b).collect();
        lens.extend(lens.clone().iter().map(|l| l.wrapping_sub(1)));
        lens.extend([0, 127, 128, 300, usize::MAX]);
        for len in lens {
            let mut expected = Vec::new();
            put_len_field(&mut expected, KEY_TIMESERIES_LABEL, len);
            assert_eq!(
                FieldHead::new(KEY_TIMESERIES_LABEL, len).as_bytes(),
                expected,
                "{len}"
            );
        }
    }

    #[test]
    fn encodes_one_timeseries_per_sample_with_sorted_labels() {
        let l = Labels::from_pairs([("job", "x"), ("__name__", "up")]);
        let samples = [S(l.clone(), 1000, 1.0), S(l, 2000, 0.0)];
        let mut enc = WriteRequestEncoder::new();
        let req = decode(&enc.encode(&samples).expect("encodes"));
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
        let req = decode(&enc.encode(&samples).expect("encodes"));
        let s = &req.timeseries[0].samples[0];
        assert_eq!(s.value.to_bits(), tributary_model::STALE_NAN_BITS);
        assert_eq!(s.timestamp, -5);
    }

    #[test]
    fn empty_batch_is_an_empty_request() {
        let mut enc = WriteRequestEncoder::new();
        let req = decode(&enc.encode::<&S>([]).expect("encodes"));
        assert!(req.timeseries.is_empty());
    }

    /// A stored series as the queue hands it to the encoder.
    struct Stored<'a> {
        store: &'a tributary_model::LabelStore,
        external: &'a ExternalLabels,
        r: tributary_model::SeriesRef,
        t: i64,
        v: f64,
    }
    impl<'a> EncodableSample<'a> for &Stored<'a> {
        fn labels(&self) -> ItemLabels<'a> {
            ItemLabels::Stored {
                pairs: self.store.pairs(),
                ids: self.store.pair_ids(self.r).expect("stored"),
                external: self.external,
            }
        }
        fn timestamp(&self) -> Timestamp {
            self.t
        }
        fn value(&self) -> f64 {
            self.v
        }
    }

    fn snappy_decode(body: &[u8]) -> Vec<u8> {
        snap::raw::Decoder::new()
            .decompress_vec(body)
            .expect("valid snappy block")
    }

    /// A batch item with either kind of labels.
    enum Mixed<'a> {
        Owned(&'a S),
        Stored(&'a Stored<'a>),
    }
    impl<'a> EncodableSample<'a> for &Mixed<'a> {
        fn labels(&self) -> ItemLabels<'a> {
            match **self {
                Mixed::Owned(s) => s.labels(),
                Mixed::Stored(s) => s.labels(),
            }
        }
        fn timestamp(&self) -> Timestamp {
            match **self {
                Mixed::Owned(s) => s.timestamp(),
                Mixed::Stored(s) => s.timestamp(),
            }
        }
        fn value(&self) -> f64 {
            match **self {
                Mixed::Owned(s) => s.value(),
                Mixed::Stored(s) => s.value(),
            }
        }
    }

    #[test]
    fn a_stream_abandoned_at_an_item_with_owned_labels_leaves_nothing_behind() {
        let mut store = tributary_model::LabelStore::new();
        let stored_labels = Labels::from_pairs([("__name__", "a"), ("job", "j")]);
        store
            .insert(tributary_model::SeriesRef(1), &stored_labels)
            .expect("insert");
        let external = ExternalLabels::default();
        let stored = Stored {
            store: &store,
            external: &external,
            r: tributary_model::SeriesRef(1),
            t: 1_700_000_000_000,
            v: 1.0,
        };
        let owned = S(
            Labels::from_pairs([("__name__", "b")]),
            1_700_000_000_001,
            2.0,
        );
        // The owned item comes after many written to the stream.
        let before = 40;
        let mut batch: Vec<Mixed<'_>> = (0..before).map(|_| Mixed::Stored(&stored)).collect();
        batch.push(Mixed::Owned(&owned));
        batch.push(Mixed::Stored(&stored));
        let mut enc = WriteRequestEncoder::new();
        let req = decode(&enc.encode(&batch).expect("encodes"));
        let names: Vec<&str> = req
            .timeseries
            .iter()
            .map(|ts| ts.labels[0].value.as_str())
            .collect();
        let mut expected = vec!["a"; before];
        expected.extend(["b", "a"]);
        assert_eq!(names, expected);
        assert_eq!(req.timeseries[1].labels.len(), 2);
        assert_eq!(req.timeseries[before].samples[0].value, 2.0);
        // The next, all-interned batch is streamed as by a fresh encoder:
        // the abandoned stream left nothing behind.
        let interned = [Mixed::Stored(&stored), Mixed::Stored(&stored)];
        let after = enc.encode(&interned).expect("encodes").to_vec();
        let fresh = WriteRequestEncoder::new()
            .encode(&interned)
            .expect("encodes")
            .to_vec();
        assert_eq!(after, fresh);
    }

    /// The requests the interned path and the plain path (fed the final
    /// label sets: the series' labels, then the external labels they
    /// lack) encode for `picks` of (series index, time offset, value).
    fn interned_and_plain(
        store: &tributary_model::LabelStore,
        labels: &[Labels],
        ext_labels: &Labels,
        picks: impl Iterator<Item = (usize, i64, f64)>,
    ) -> (Vec<u8>, Vec<u8>) {
        let ext = ExternalLabels::new(ext_labels);
        let stored: Vec<Stored<'_>> = picks
            .map(|(i, t, v)| Stored {
                store,
                external: &ext,
                r: tributary_model::SeriesRef((i % labels.len()) as u64 + 1),
                t: 1_700_000_000_000 + t,
                v,
            })
            .collect();
        let owned: Vec<S> = stored
            .iter()
            .map(|s| {
                let mut b = labels[s.r.0 as usize - 1].to_builder();
                for l in ext_labels {
                    if b.get(l.name).is_none() {
                        b.set(l.name, l.value);
                    }
                }
                S(b.labels(), s.t, s.v)
            })
            .collect();
        let mut enc = WriteRequestEncoder::new();
        let fast = snappy_decode(&enc.encode(&stored).expect("encodes"));
        let plain = snappy_decode(&enc.encode(&owned).expect("encodes"));
        (fast, plain)
    }

    /// The same with a store big enough for its pair table to train its
    /// dictionary: names and values packed, external labels merged in
    /// between stored names.
    #[test]
    fn labels_packed_with_a_trained_dictionary_encode_as_owned_ones() {
        let mut store = tributary_model::LabelStore::new();
        let labels: Vec<Labels> = (0..4000u64)
            .map(|i| {
                let pod = format!("{:08x}-0000-4000-8000-{:012x}", i * 7919, i);
                Labels::from_pairs([
                    ("__name__", "container_memory_working_set_bytes".to_string()),
                    ("container", format!("api-gateway-{}", i % 7)),
                    ("id", format!("/kubepods/burstable/pod{pod}/{:064x}", i * 31)),
                    (
                        "mountpoint",
                        format!("/var/lib/kubelet/pods/{pod}/volumes/kubernetes.io~projected/kube-api-access-{i}"),
                    ),
                    ("namespace", "payments-prod".to_string()),
                    ("pod", format!("api-gateway-6ff4fb27c7-{i:05x}")),
                ])
            })
            .collect();
        for (i, l) in labels.iter().enumerate() {
            store
                .insert(tributary_model::SeriesRef(i as u64 + 1), l)
                .expect("insert");
        }
        let ext_labels = Labels::from_pairs([("cluster", "eu-1"), ("node", "n1"), ("zone", "a")]);
        let picks = (0..600).map(|k| (k * 13, k as i64, k as f64));
        let (fast, plain) = interned_and_plain(&store, &labels, &ext_labels, picks);
        assert!(fast == plain, "the interned path's request differs");
    }

    proptest! {
        /// The interned path (snappy stream with copies, external labels
        /// merged, values with hex ids stored packed) produces exactly the
        /// protobuf of the plain path fed the final label sets.
        #[test]
        fn interned_labels_encode_to_the_same_request_as_owned_ones(
            sets in proptest::collection::vec(
                proptest::collection::btree_map(
                    "[a-d]{1,2}",
                    prop_oneof![
                        "[x-z]{1,3}",
                        "[x-z/]{0,3}[0-9a-f]{6,70}[x-z/]{0,3}",
                        "pod[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/[0-9a-f]{64}",
                    ],
                    1..6,
                ),
                1..20,
            ),
            external in proptest::collection::btree_map("[a-e]{1,2}", "[x-z]{1,3}", 0..3),
            picks in proptest::collection::vec((0usize..20, -3i64..3, any::<f64>()), 0..120),
        ) {
            let mut store = tributary_model::LabelStore::new();
            let labels: Vec<Labels> = sets.iter().map(|m| Labels::from_pairs(m.iter())).collect();
            for (i, l) in labels.iter().enumerate() {
                store.insert(tributary_model::SeriesRef(i as u64 + 1), l).expect("insert");
            }
            let ext_labels = Labels::from_pairs(external.iter());
            let (fast, plain) = interned_and_plain(&store, &labels, &ext_labels, picks.into_iter());
            prop_assert_eq!(fast, plain);
        }

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
            let req = decode(&enc.encode(&samples).expect("encodes"));
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
