//! Label text stored short: hexadecimal identifiers at four bits a digit,
//! frequent words as one-byte codes.
//!
//! The distinct label text is the largest single block of an agent's
//! memory once the series are indexed. In container environments a third
//! of it is lowercase hex — container ids (64 digits), pod UIDs and volume
//! paths (UUIDs), image digests, build revisions, interface suffixes — and
//! most of the rest is the same few words again and again, label names
//! included, which a dictionary trained on the stored text itself
//! ([`Symbols`]) codes in a byte each. [`crate::PairTable`] stores pairs
//! packed and unpacks them only when it has to hand the text out — for a
//! request, the first time the request carries the pair.
//!
//! A packed text is a sequence of
//! - a byte below `0x80`: that ASCII byte;
//! - a byte in `0x80..=0xFC`: the dictionary's symbol `byte − 0x80`;
//! - [`ESCAPE`], then one byte: that byte (the rest of UTF-8);
//! - [`UUID`], then 16 bytes: a lowercase `8-4-4-4-12` UUID;
//! - [`HEX_RUN`], a digit count `n` (`MIN_RUN..=255`), then `⌈n/2⌉` bytes:
//!   `n` lowercase hex digits, high nibble first.
//!
//! It carries no length of its own: the reader knows the unpacked length
//! and stops there. Reading hands the text to a [`Sink`] — a buffer, a
//! hasher, or a comparison with an expected text — so the pair table finds
//! and hashes packed pairs by their text without unpacking them into
//! memory.

use crate::text_symbols::{Symbols, MAX_LEN, MAX_SYMBOLS};

/// Shortest digit run worth a token: two bytes of tag and count, so eight
/// digits take six bytes.
const MIN_RUN: usize = 8;
const MAX_RUN: usize = u8::MAX as usize;
const UUID_LEN: usize = 36;
const UUID_DASHES: [usize; 4] = [8, 13, 18, 23];
const UUID_GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
/// The first symbol code; bytes below are ASCII.
const FIRST_CODE: u8 = 0x80;
const ESCAPE: u8 = 0xFD;
const UUID: u8 = 0xFE;
const HEX_RUN: u8 = 0xFF;
const DIGITS: &[u8; 16] = b"0123456789abcdef";

fn nibble(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn is_uuid_at(v: &[u8], at: usize) -> bool {
    let Some(s) = v.get(at..at + UUID_LEN) else {
        return false;
    };
    UUID_DASHES.iter().all(|&d| s.get(d) == Some(&b'-'))
        && s.iter()
            .enumerate()
            .all(|(i, &b)| UUID_DASHES.contains(&i) || nibble(b).is_some())
}

/// Two hex digits for every byte value.
static DIGIT_PAIRS: [[u8; 2]; 256] = {
    let mut pairs = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [DIGITS[i >> 4], DIGITS[i & 15]];
        i += 1;
    }
    pairs
};

/// Writes the two digits of each of `bytes` over `dst` (twice as long).
fn put_digits(dst: &mut [u8], bytes: &[u8]) {
    for (pair, &b) in dst.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&DIGIT_PAIRS[usize::from(b)]);
    }
}

/// Appends `digits` (lowercase hex only) two a byte.
fn put_nibbles(out: &mut Vec<u8>, digits: impl Iterator<Item = u8>) {
    let mut high = None;
    for d in digits.filter_map(nibble) {
        match high.take() {
            None => high = Some(d),
            Some(h) => out.push(h << 4 | d),
        }
    }
    if let Some(h) = high {
        out.push(h << 4);
    }
}

/// A part of a value, as packing sees it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    Text(&'a [u8]),
    /// A lowercase UUID, 36 bytes.
    Uuid(&'a [u8]),
    /// A run of `MIN_RUN..=MAX_RUN` lowercase hex digits.
    Hex(&'a [u8]),
}

/// Calls `f` with the pieces of `value` in order (text pieces are never
/// empty).
pub(crate) fn for_each_piece<'a>(value: &'a [u8], mut f: impl FnMut(Piece<'a>)) {
    let text = |from: usize, to: usize| value.get(from..to).filter(|t| !t.is_empty());
    let mut text_from = 0;
    let mut at = 0;
    while at < value.len() {
        if is_uuid_at(value, at) {
            if let Some(t) = text(text_from, at) {
                f(Piece::Text(t));
            }
            f(Piece::Uuid(
                value.get(at..at + UUID_LEN).unwrap_or_default(),
            ));
            at += UUID_LEN;
            text_from = at;
            continue;
        }
        let run = value
            .iter()
            .skip(at)
            .take(MAX_RUN)
            .take_while(|&&b| nibble(b).is_some())
            .count();
        if run == 0 {
            at += 1;
            continue;
        }
        // A UUID starting inside the run ("pod" ends in a digit) is worth
        // more than the run: stop the run there.
        let end = (at + 1..at + run)
            .find(|&i| is_uuid_at(value, i))
            .unwrap_or(at + run);
        if end - at >= MIN_RUN {
            if let Some(t) = text(text_from, at) {
                f(Piece::Text(t));
            }
            f(Piece::Hex(value.get(at..end).unwrap_or_default()));
            text_from = end;
        }
        at = end;
    }
    if let Some(t) = text(text_from, value.len()) {
        f(Piece::Text(t));
    }
}

/// Texts up to this long are matched in a stack buffer.
const PADDED_TEXT: usize = 256;

/// Appends `text` coded with `symbols`.
fn put_text(out: &mut Vec<u8>, text: &[u8], symbols: &Symbols) {
    // Followed by MAX_LEN zeros, the text can be read a word at every
    // position without a shorter tail's slow path.
    let mut stack = [0u8; PADDED_TEXT + MAX_LEN];
    let heap: Vec<u8>;
    let padded: &[u8] = match stack.get_mut(..text.len()) {
        Some(head) if text.len() <= PADDED_TEXT => {
            head.copy_from_slice(text);
            &stack
        }
        _ => {
            heap = [text, &[0; MAX_LEN]].concat();
            &heap
        }
    };
    let mut at = 0;
    while let Some(&b) = text.get(at) {
        let head = padded
            .get(at..)
            .and_then(|rest| rest.first_chunk::<MAX_LEN>())
            .map_or(0, |head| u128::from_le_bytes(*head));
        if let Some((code, len)) = symbols.longest_in(head, text.len() - at) {
            out.push(FIRST_CODE + code);
            at += len;
            continue;
        }
        if b >= FIRST_CODE {
            out.push(ESCAPE);
        }
        out.push(b);
        at += 1;
    }
}

/// Appends the packed form of `value` to `out` if it is shorter than the
/// value; returns whether it did (`out` is untouched otherwise).
pub(crate) fn pack(value: &[u8], symbols: &Symbols, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    for_each_piece(value, |piece| match piece {
        Piece::Text(text) => put_text(out, text, symbols),
        Piece::Uuid(uuid) => {
            out.push(UUID);
            put_nibbles(out, uuid.iter().copied());
        }
        Piece::Hex(digits) => {
            out.extend_from_slice(&[HEX_RUN, digits.len() as u8]);
            put_nibbles(out, digits.iter().copied());
        }
    });
    if out.len() - start >= value.len() {
        out.truncate(start);
        return false;
    }
    true
}

/// Where [`unpack`] puts the text it reads.
pub(crate) trait Sink {
    /// Takes the next bytes of the text; false stops the reading, which
    /// then fails.
    fn put(&mut self, text: &[u8]) -> bool;
}

impl Sink for Vec<u8> {
    fn put(&mut self, text: &[u8]) -> bool {
        self.extend_from_slice(text);
        true
    }
}

/// A slice written from its start; refuses what does not fit.
pub(crate) struct SliceSink<'a> {
    dst: &'a mut [u8],
    at: usize,
}

impl<'a> SliceSink<'a> {
    pub fn new(dst: &'a mut [u8]) -> Self {
        SliceSink { dst, at: 0 }
    }
}

impl Sink for SliceSink<'_> {
    fn put(&mut self, text: &[u8]) -> bool {
        let Some(d) = self.dst.get_mut(self.at..self.at + text.len()) else {
            return false;
        };
        d.copy_from_slice(text);
        self.at += text.len();
        true
    }
}

/// Reads a packed value without keeping its text (to find its end).
pub(crate) struct Discard;

impl Sink for Discard {
    fn put(&mut self, _: &[u8]) -> bool {
        true
    }
}

/// Checks the text against the bytes it holds, stopping at the first
/// difference. A complete read of as many bytes as it holds means equal.
pub(crate) struct Expect<'a>(pub &'a [u8]);

impl Sink for Expect<'_> {
    fn put(&mut self, text: &[u8]) -> bool {
        match self.0.strip_prefix(text) {
            Some(rest) => {
                self.0 = rest;
                true
            }
            None => false,
        }
    }
}

impl Sink for xxhash_rust::xxh3::Xxh3 {
    fn put(&mut self, text: &[u8]) -> bool {
        self.update(text);
        true
    }
}

/// How far past the text decoding may write: a symbol is written as its
/// whole padded word, one store instead of a copy of its length.
pub(crate) const OVERSHOOT: usize = MAX_LEN;
/// Texts up to this long are unpacked on the stack.
const STACK_TEXT: usize = 240;

/// Reads a packed value of `len` unpacked bytes from the start of
/// `packed`, handing its text to `out` in one piece (a sink called per
/// token — a hasher updating, a comparison advancing — cost more than the
/// decoding). Returns the packed bytes read; `None` if `packed` is not a
/// packed value that long, or `out` refused the text.
pub(crate) fn unpack(
    packed: &[u8],
    len: usize,
    symbols: &Symbols,
    out: &mut impl Sink,
) -> Option<usize> {
    let mut window = [0u8; STACK_TEXT + OVERSHOOT];
    let mut long = Vec::new();
    let dst = if len <= STACK_TEXT {
        &mut window[..]
    } else {
        long.resize(len + OVERSHOOT, 0);
        &mut long[..]
    };
    let read = decode_into(packed, len, symbols, dst)?;
    out.put(dst.get(..len)?).then_some(read)
}

/// [`unpack`] into the start of `dst`, which has [`OVERSHOOT`] bytes of
/// room past the text (the request encoder's path: decoded in place,
/// into memory the caller keeps initialised, nothing zeroed or copied
/// twice). Returns the packed bytes read; `None` as [`unpack`], or if
/// `dst` is too short.
pub(crate) fn unpack_into(
    packed: &[u8],
    len: usize,
    symbols: &Symbols,
    dst: &mut [u8],
) -> Option<usize> {
    if dst.len() < len + OVERSHOOT {
        return None;
    }
    decode_into(packed, len, symbols, dst)
}

/// Decodes a packed value of `len` bytes into `dst`, which has
/// [`OVERSHOOT`] bytes of room past it; returns the packed bytes read.
fn decode_into(packed: &[u8], len: usize, symbols: &Symbols, dst: &mut [u8]) -> Option<usize> {
    let mut read = 0;
    let mut written = 0;
    while written < len {
        let left = len - written;
        let rest = packed.get(read..)?;
        let into = dst.get_mut(written..)?;
        let (text_len, used) = match *rest.first()? {
            tag @ ..FIRST_CODE => match rest.first_chunk::<8>() {
                // The ASCII bytes up to the next code, up to eight at a time:
                // all eight are stored (`dst` has room past the text), as
                // many as are text are kept. Text between dictionary words
                // is mostly shorter than eight bytes.
                Some(word) => {
                    let codes = u64::from_le_bytes(*word) & ASCII_HIGH_BITS;
                    let n = ((codes.trailing_zeros() / 8) as usize).min(left);
                    into.get_mut(..8)?.copy_from_slice(word);
                    (n, n)
                }
                None => {
                    *into.first_mut()? = tag;
                    (1, 1)
                }
            },
            tag @ FIRST_CODE..ESCAPE => {
                let (word, n) = symbols.padded(tag - FIRST_CODE)?;
                into.get_mut(..word.len())?.copy_from_slice(word);
                (n, 1)
            }
            ESCAPE => {
                *into.first_mut()? = *rest.get(1)?;
                (1, 2)
            }
            _ => put_digit_run(rest, into)?,
        };
        if text_len > left {
            return None;
        }
        written += text_len;
        read += used;
    }
    Some(read)
}

const ASCII_HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Writes the text of the UUID or hex run `rest` starts with at the start
/// of `into`, no further: (text length, packed bytes used).
fn put_digit_run(rest: &[u8], into: &mut [u8]) -> Option<(usize, usize)> {
    let uuid = *rest.first()? == UUID;
    let (digits, skip) = if uuid {
        (32, 1)
    } else {
        (usize::from(*rest.get(1)?), 2)
    };
    let bytes = rest.get(skip..skip + digits.div_ceil(2))?;
    if !uuid {
        let whole = digits / 2;
        put_digits(into.get_mut(..2 * whole)?, bytes.get(..whole)?);
        if digits % 2 == 1 {
            *into.get_mut(digits - 1)? = DIGITS[usize::from(*bytes.get(whole)? >> 4)];
        }
        return Some((digits, skip + bytes.len()));
    }
    let mut text = [0u8; 32];
    put_digits(&mut text, bytes);
    let dashed = into.get_mut(..UUID_LEN)?;
    let (mut from, mut to) = (0, 0);
    for group in UUID_GROUPS {
        dashed
            .get_mut(to..to + group)?
            .copy_from_slice(text.get(from..from + group)?);
        if let Some(dash) = dashed.get_mut(to + group) {
            *dash = b'-';
        }
        from += group;
        to += group + 1;
    }
    Some((UUID_LEN, skip + bytes.len()))
}

/// Unpacks as much of the start of `packed` as fits in `out`, stopping
/// at a UUID or hex run; returns the bytes written. For reading a short
/// prefix (a label's name) without knowing where the value ends: bytes
/// past the value may be read, and whether what was written is enough is
/// the caller's to check.
pub(crate) fn unpack_prefix(packed: &[u8], symbols: &Symbols, out: &mut [u8]) -> usize {
    let mut written = 0;
    let mut bytes = packed.iter();
    while let Some(&b) = bytes.next() {
        let escaped;
        let text = match b {
            ..FIRST_CODE => std::slice::from_ref(&b),
            FIRST_CODE..ESCAPE => match symbols.get(b - FIRST_CODE) {
                Some(text) => text,
                None => break,
            },
            ESCAPE => match bytes.next() {
                Some(&e) => {
                    escaped = e;
                    std::slice::from_ref(&escaped)
                }
                None => break,
            },
            _ => break,
        };
        let Some(room) = out.get_mut(written..) else {
            break;
        };
        let take = text.len().min(room.len());
        room.get_mut(..take)
            .unwrap_or_default()
            .copy_from_slice(text.get(..take).unwrap_or_default());
        written += take;
        if take < text.len() {
            break;
        }
    }
    written
}

const _: () = assert!(FIRST_CODE as usize + MAX_SYMBOLS == ESCAPE as usize);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn round_trip(value: &str) -> Vec<u8> {
        round_trip_with(value, &Symbols::default())
    }

    fn round_trip_with(value: &str, symbols: &Symbols) -> Vec<u8> {
        let mut packed = b"header".to_vec();
        if !pack(value.as_bytes(), symbols, &mut packed) {
            assert_eq!(packed, b"header", "nothing appended when not packed");
            return value.as_bytes().to_vec();
        }
        let body = &packed[6..];
        assert!(body.len() < value.len(), "{value}: packed is not shorter");
        // Bytes after the value (the next entry) are not read.
        let mut with_tail = body.to_vec();
        with_tail.extend_from_slice(b"next entry");
        let mut out = b"prefix".to_vec();
        let read = unpack(&with_tail, value.len(), symbols, &mut out).unwrap();
        assert_eq!(read, body.len());
        assert_eq!(
            unpack(&with_tail, value.len(), symbols, &mut Discard),
            Some(read)
        );
        assert_eq!(&out[6..], value.as_bytes());
        // In place, over bytes that are not zeros.
        let mut dst = vec![0xA5; value.len() + OVERSHOOT];
        let read = unpack_into(&with_tail, value.len(), symbols, &mut dst);
        assert_eq!(read, Some(body.len()));
        assert_eq!(&dst[..value.len()], value.as_bytes());
        let short = &mut dst[..value.len() + OVERSHOOT - 1];
        assert_eq!(unpack_into(&with_tail, value.len(), symbols, short), None);
        body.to_vec()
    }

    #[test]
    fn container_ids_uuids_and_revisions_pack_to_about_half() {
        let id = "/kubepods/burstable/pod3f2a9c1e-7b4d-4e8f-9a0b-1c2d3e4f5a6b/\
                  0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let packed = round_trip(id);
        // 23 + (1 + 16) + 1 + (2 + 32) bytes.
        assert_eq!(packed.len(), 75, "{} of {}", packed.len(), id.len());
        let revision = "4c5f3a1b2e9d8c7f6a5b4c3d2e1f0a9b8c7d6e5f";
        assert_eq!(round_trip(revision).len(), 22);
        // "pod" ends in a hex digit: the UUID still wins.
        let pod = "poddeadbeef-0000-1111-2222-333344445555";
        assert_eq!(round_trip(pod).len(), 3 + 17);
    }

    #[test]
    fn text_without_long_runs_is_left_alone() {
        for v in [
            "",
            "idle",
            "node_cpu_seconds_total",
            "/api/v1/query",
            "abc1234",
            "DEADBEEFDEADBEEF",
            "3f2a9c1-7b4d-4e8f-9a0b-1c2d3e4",
        ] {
            let mut out = Vec::new();
            assert!(!pack(v.as_bytes(), &Symbols::default(), &mut out), "{v}");
            assert!(out.is_empty());
        }
    }

    #[test]
    fn runs_longer_than_a_count_byte_split_and_odd_runs_keep_their_last_digit() {
        let long = "a1".repeat(300);
        round_trip(&long);
        round_trip("x0123456789abcdefy");
        round_trip("012345678");
        round_trip("ünïcödé-0123456789abcdef-ünï");
        // The longest run, and a UUID, each after more text than is
        // unpacked on the stack.
        let hex: String = (0..255).map(|i| char::from(DIGITS[i % 16])).collect();
        for fill in [250, 255, 256, 300, 509] {
            round_trip(&format!("{}{hex}y", "x".repeat(fill)));
            round_trip(&format!(
                "{}3f2a9c1e-7b4d-4e8f-9a0b-1c2d3e4f5a6b",
                "x".repeat(fill)
            ));
        }
    }

    #[test]
    fn a_truncated_or_corrupt_packed_value_is_refused() {
        let none = Symbols::default();
        let mut packed = Vec::new();
        assert!(pack(b"0123456789abcdef", &none, &mut packed));
        assert_eq!(
            unpack(&packed[..packed.len() - 1], 16, &none, &mut Discard),
            None
        );
        assert_eq!(unpack(&packed, 17, &none, &mut Discard), None);
        // A code the dictionary does not have, an escape without its byte.
        assert_eq!(unpack(&[0xF7, 1, 2], 4, &none, &mut Discard), None);
        assert_eq!(unpack(&[b'a', ESCAPE], 2, &none, &mut Discard), None);
        // A symbol longer than what is left of the value.
        let words = Symbols::train(&[b"kubelet".as_slice(); 50]);
        assert_eq!(words.get(0), Some(b"kubelet".as_slice()));
        let mut packed = Vec::new();
        assert!(pack(b"kubeletkubelet", &words, &mut packed));
        assert_eq!(packed, [0x80, 0x80]);
        assert_eq!(unpack(&packed, 10, &words, &mut Discard), None);
        assert_eq!(
            unpack_into(&packed, 10, &words, &mut [0; 10 + OVERSHOOT]),
            None
        );
    }

    proptest! {
        #[test]
        fn any_text_round_trips(
            parts in proptest::collection::vec(
                prop_oneof![
                    "[0-9a-f]{0,80}",
                    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                    "[-/_.a-z0-9]{0,12}",
                    "\\PC{0,6}",
                ],
                0..8,
            )
        ) {
            round_trip(&parts.concat());
        }

        #[test]
        fn any_text_round_trips_with_a_dictionary(
            parts in proptest::collection::vec(
                prop_oneof![
                    "[0-9a-f]{0,40}",
                    "(/var/lib/kubelet|k8s_|/pods/|-exporter|ü|_){1,3}",
                    "[-/_.a-z0-9]{0,12}",
                    "\\PC{0,6}",
                ],
                0..8,
            )
        ) {
            round_trip_with(&parts.concat(), &dictionary());
        }
    }

    fn dictionary() -> Symbols {
        let words = [
            "/var/lib/kubelet/pods/",
            "k8s_api-gateway_api-gateway-",
            "/volumes/kubernetes.io~projected/",
            "prometheus-node-exporter-ünï",
        ];
        let sample: Vec<&[u8]> = words
            .iter()
            .cycle()
            .take(40)
            .map(|w| w.as_bytes())
            .collect();
        Symbols::train(&sample)
    }

    #[test]
    fn words_the_dictionary_knows_take_a_byte_and_the_rest_stays_literal() {
        let d = dictionary();
        let value = "/var/lib/kubelet/pods/3f2a9c1e-7b4d-4e8f-9a0b-1c2d3e4f5a6b/volumes/kubernetes.io~projected/x";
        let packed = round_trip_with(value, &d);
        // 22 + 36 + 33 + 2 bytes: a few codes, the UUID's 17 bytes, "x".
        assert!(
            packed.len() <= 2 + 17 + 3 + 1,
            "{} bytes: {packed:?}",
            packed.len()
        );
        // Bytes above ASCII are escaped, so values of other scripts are
        // stored as they are.
        round_trip_with("ünïcödé", &d);
        let mut out = Vec::new();
        assert!(!pack("ünïcödé".as_bytes(), &d, &mut out));
    }

    #[test]
    fn text_longer_than_the_stack_window_packs_the_same_way_throughout() {
        let d = dictionary();
        let word = "k8s_api-gateway_api-gateway-";
        // Words cross the window's end at byte 256.
        let long = format!("x{}", word.repeat(20));
        let packed = round_trip_with(&long, &d);
        let one = round_trip_with(word, &d);
        assert_eq!(packed.len(), 1 + 20 * one.len(), "{packed:?}");
    }
}
