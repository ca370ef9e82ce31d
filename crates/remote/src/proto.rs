//! Protobuf wire helpers shared by the 1.0 and 2.0 encoders for the less
//! common payloads (native histograms, exemplars, metadata). Float samples
//! keep their size-precomputing fast paths in the encoders; these helpers
//! write a nested message in place and patch its length prefix afterwards,
//! which costs a short memmove for messages over 127 bytes but never an
//! allocation once the buffer has grown.

use tributary_model::{BucketSpan, HistogramCount, NativeHistogram, Timestamp};

pub(crate) const WIRE_VARINT: u8 = 0;
pub(crate) const WIRE_FIXED64: u8 = 1;
pub(crate) const WIRE_LEN: u8 = 2;

pub(crate) fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub(crate) fn put_key(buf: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(buf, (u64::from(field) << 3) | u64::from(wire));
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// A varint field, omitted when zero (proto3 default).
pub(crate) fn put_uint(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_key(buf, field, WIRE_VARINT);
        put_varint(buf, v);
    }
}

/// An int64 field (two's complement varint), omitted when zero.
pub(crate) fn put_int64(buf: &mut Vec<u8>, field: u32, v: i64) {
    put_uint(buf, field, v as u64);
}

/// A sint32/sint64 field, omitted when zero.
pub(crate) fn put_sint(buf: &mut Vec<u8>, field: u32, v: i64) {
    put_uint(buf, field, zigzag(v));
}

/// A double field, omitted when its bits are zero.
pub(crate) fn put_double(buf: &mut Vec<u8>, field: u32, v: f64) {
    if v.to_bits() != 0 {
        put_double_always(buf, field, v);
    }
}

/// A double that is a member of a oneof: written even when zero, so the
/// receiver sees which member is set.
pub(crate) fn put_double_always(buf: &mut Vec<u8>, field: u32, v: f64) {
    put_key(buf, field, WIRE_FIXED64);
    buf.extend_from_slice(&v.to_bits().to_le_bytes());
}

pub(crate) fn put_string(buf: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        put_key(buf, field, WIRE_LEN);
        put_varint(buf, s.len() as u64);
        buf.extend_from_slice(s.as_bytes());
    }
}

/// Writes a nested message (key, length, body written by `body`).
pub(crate) fn put_message(buf: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    put_key(buf, field, WIRE_LEN);
    let len_at = buf.len();
    buf.push(0);
    let start = buf.len();
    body(buf);
    let len = buf.len() - start;
    if len < 0x80 {
        if let Some(b) = buf.get_mut(len_at) {
            *b = len as u8;
        }
        return;
    }
    let mut prefix = [0u8; 10];
    let mut n = 0;
    let mut v = len as u64;
    while v >= 0x80 {
        prefix[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    prefix[n] = v as u8;
    n += 1;
    buf.splice(len_at..len_at + 1, prefix.iter().take(n).copied());
}

/// A packed repeated uint32 field (label refs), omitted when empty.
pub(crate) fn put_packed_u32(buf: &mut Vec<u8>, field: u32, values: &[u32]) {
    if values.is_empty() {
        return;
    }
    let len: usize = values.iter().map(|v| varint_len(u64::from(*v))).sum();
    put_key(buf, field, WIRE_LEN);
    put_varint(buf, len as u64);
    for v in values {
        put_varint(buf, u64::from(*v));
    }
}

fn put_packed_sint(buf: &mut Vec<u8>, field: u32, values: &[i64]) {
    if values.is_empty() {
        return;
    }
    let len: usize = values.iter().map(|v| varint_len(zigzag(*v))).sum();
    put_key(buf, field, WIRE_LEN);
    put_varint(buf, len as u64);
    for v in values {
        put_varint(buf, zigzag(*v));
    }
}

fn put_packed_double(buf: &mut Vec<u8>, field: u32, values: &[f64]) {
    if values.is_empty() {
        return;
    }
    put_key(buf, field, WIRE_LEN);
    put_varint(buf, (values.len() * 8) as u64);
    for v in values {
        buf.extend_from_slice(&v.to_bits().to_le_bytes());
    }
}

fn put_spans(buf: &mut Vec<u8>, field: u32, spans: &[BucketSpan]) {
    for s in spans {
        put_message(buf, field, |b| {
            put_sint(b, 1, i64::from(s.offset));
            put_uint(b, 2, u64::from(s.length));
        });
    }
}

/// The body of a `Histogram` message; the field numbers are the same in
/// remote write 1.0 and 2.0 (2.0 adds `start_timestamp` = 17, unused).
pub(crate) fn write_histogram(buf: &mut Vec<u8>, h: &NativeHistogram, t: Timestamp) {
    match h.count {
        HistogramCount::Int(c) => {
            put_key(buf, 1, WIRE_VARINT);
            put_varint(buf, c);
        }
        HistogramCount::Float(c) => put_double_always(buf, 2, c),
    }
    put_double(buf, 3, h.sum);
    put_sint(buf, 4, i64::from(h.schema));
    put_double(buf, 5, h.zero_threshold);
    match h.zero_count {
        HistogramCount::Int(c) => {
            put_key(buf, 6, WIRE_VARINT);
            put_varint(buf, c);
        }
        HistogramCount::Float(c) => put_double_always(buf, 7, c),
    }
    put_spans(buf, 8, &h.negative_spans);
    put_packed_sint(buf, 9, &h.negative_deltas);
    put_packed_double(buf, 10, &h.negative_counts);
    put_spans(buf, 11, &h.positive_spans);
    put_packed_sint(buf, 12, &h.positive_deltas);
    put_packed_double(buf, 13, &h.positive_counts);
    put_uint(buf, 14, h.reset_hint as u64);
    put_int64(buf, 15, t);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_get_a_multi_byte_length() {
        let mut buf = Vec::new();
        put_message(&mut buf, 1, |b| b.extend(std::iter::repeat_n(7u8, 300)));
        assert_eq!(&buf[..3], &[0x0a, 0xac, 0x02]);
        assert_eq!(buf.len(), 3 + 300);
        let mut short = Vec::new();
        put_message(&mut short, 2, |b| b.push(1));
        assert_eq!(short, vec![0x12, 1, 1]);
    }
}
