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
//! Decoders never panic on malformed input: every read is bounds-checked and a
//! short or inconsistent payload yields a [`DecodeError`].

use tributary_model::{Labels, SeriesRef, Timestamp};

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

/// One float sample addressed by series reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefSample {
    pub series: SeriesRef,
    pub t: Timestamp,
    pub v: f64,
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
    for l in labels.iter() {
        put_uvarint(out, l.name.len() as u64);
        out.extend_from_slice(l.name.as_bytes());
        put_uvarint(out, l.value.len() as u64);
        out.extend_from_slice(l.value.as_bytes());
    }
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

/// Decodes a Samples record, appending to `out`.
pub fn decode_samples(payload: &[u8], out: &mut Vec<RefSample>) -> Result<(), DecodeError> {
    let mut d = Decoder::for_type(payload, RecordType::Samples)?;
    if d.is_empty() {
        return Ok(());
    }
    let base_ref = d.be_u64()? as i64;
    let base_t = d.be_u64()? as i64;
    // The encoder never writes a base without samples.
    if d.is_empty() {
        return Err(DecodeError::Truncated);
    }
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
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

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
        fn samples_round_trip(raw in proptest::collection::vec((1u64..u64::MAX, any::<i64>(), any::<f64>()), 0..50)) {
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
        }
    }
}
