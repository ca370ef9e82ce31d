//! On-disk framing: segment files, 32 KiB pages and record fragments.
//!
//! A record (already snappy-compressed when that makes it smaller) is split
//! into fragments that never cross a page boundary. Each fragment has a 7-byte
//! header: a type byte (`FULL`, `FIRST`, `MIDDLE`, `LAST` in bits 0–2, plus
//! `0x08` when the record is snappy-compressed), the fragment length as a
//! big-endian u16 and the CRC32-Castagnoli of the fragment bytes as a
//! big-endian u32. When fewer than 8 bytes are left in a page the rest of the
//! page is zero-filled (a zero type byte means "page terminated"). This is
//! Prometheus's wlog framing, which gives two properties the reader relies on:
//! every page starts at a fragment boundary (so a corrupt region can be
//! skipped by resynchronising at the next page), and a torn write at the end of
//! a file shows up as an incomplete fragment rather than as a valid record.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub(crate) const PAGE_SIZE: u64 = 32 * 1024;
pub(crate) const HEADER_SIZE: u64 = 7;
const FLAG_SNAPPY: u8 = 0x08;
const TYPE_MASK: u8 = 0x07;
const PAGE_TERM: u8 = 0;
const FULL: u8 = 1;
const FIRST: u8 = 2;
const MIDDLE: u8 = 3;
const LAST: u8 = 4;

/// The file name of segment `n`: 8-digit zero-padded decimal.
pub(crate) fn segment_name(n: u32) -> String {
    format!("{n:08}")
}

pub(crate) fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(segment_name(n))
}

fn parse_index(name: &str) -> Option<u32> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// Segment indexes and sizes in `dir`, ascending. Other entries are ignored.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<(u32, u64)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(idx) = entry.file_name().to_str().and_then(parse_index) else {
            continue;
        };
        match entry.metadata() {
            Ok(m) if m.is_file() => out.push((idx, m.len())),
            Ok(_) => {}
            // Deleted by truncation between read_dir and stat.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Completed checkpoint directories (`checkpoint.NNNNNNNN`), ascending.
pub(crate) fn list_checkpoints(dir: &Path) -> io::Result<Vec<(u32, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(idx) = name
            .to_str()
            .and_then(|n| n.strip_prefix("checkpoint."))
            .and_then(parse_index)
        else {
            continue;
        };
        out.push((idx, entry.path()));
    }
    out.sort_unstable_by_key(|(i, _)| *i);
    Ok(out)
}

pub(crate) fn checkpoint_name(n: u32) -> String {
    format!("checkpoint.{n:08}")
}

/// Appends the framed form of `data` to `out`, as written at segment offset
/// `offset`, and returns the offset after it.
pub(crate) fn frame_record(
    out: &mut Vec<u8>,
    mut offset: u64,
    data: &[u8],
    compressed: bool,
) -> u64 {
    let flag = if compressed { FLAG_SNAPPY } else { 0 };
    let mut rest = data;
    let mut first = true;
    loop {
        let page_left = PAGE_SIZE - offset % PAGE_SIZE;
        if page_left <= HEADER_SIZE {
            out.resize(out.len() + page_left as usize, 0);
            offset += page_left;
            continue;
        }
        let room = (page_left - HEADER_SIZE) as usize;
        let n = rest.len().min(room);
        let (chunk, tail) = rest.split_at(n);
        let kind = match (first, tail.is_empty()) {
            (true, true) => FULL,
            (true, false) => FIRST,
            (false, true) => LAST,
            (false, false) => MIDDLE,
        };
        out.push(kind | flag);
        // A fragment never exceeds a page, so its length fits in u16.
        out.extend_from_slice(&(n as u16).to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(chunk).to_be_bytes());
        out.extend_from_slice(chunk);
        offset += HEADER_SIZE + n as u64;
        rest = tail;
        first = false;
        if rest.is_empty() {
            return offset;
        }
    }
}

/// The number of bytes `frame_record` would emit for `len` data bytes at
/// `offset`.
pub(crate) fn framed_len(offset: u64, len: usize) -> u64 {
    let mut off = offset;
    let mut rest = len as u64;
    loop {
        let page_left = PAGE_SIZE - off % PAGE_SIZE;
        if page_left <= HEADER_SIZE {
            off += page_left;
            continue;
        }
        let n = rest.min(page_left - HEADER_SIZE);
        off += HEADER_SIZE + n;
        rest -= n;
        if rest == 0 {
            return off - offset;
        }
    }
}

/// The outcome of parsing one record at a segment offset.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A whole, CRC-valid record ends at `end`; its (possibly compressed)
    /// bytes are in the scratch buffer.
    Record { end: u64, compressed: bool },
    /// The bytes end before the record does; `need` is the offset up to which
    /// bytes are required to make progress.
    Incomplete { need: u64 },
    /// The bytes at `at` cannot start or continue a record. `skip_to` is the
    /// end of the offending fragment when its header looked sane (only the
    /// data failed), the first place worth trying to resynchronise.
    Corrupt {
        at: u64,
        reason: &'static str,
        skip_to: Option<u64>,
    },
}

/// Parses the record starting at segment offset `start`. `buf` holds the
/// segment's bytes from offset `base`. The record's data is collected into
/// `scratch`.
pub(crate) fn parse_record(buf: &[u8], base: u64, start: u64, scratch: &mut Vec<u8>) -> Parsed {
    scratch.clear();
    let mut off = start;
    let mut in_record = false;
    let mut compressed = false;
    loop {
        let page_left = PAGE_SIZE - off % PAGE_SIZE;
        if page_left <= HEADER_SIZE && !in_record {
            // Padding at the end of a page; the writer zero-fills it only when
            // the next fragment is written, so it may not exist yet.
            if available(buf, base, off) < page_left {
                return Parsed::Incomplete {
                    need: off + page_left,
                };
            }
            off += page_left;
            continue;
        }
        let Some(head) = slice(buf, base, off, HEADER_SIZE) else {
            return Parsed::Incomplete {
                need: off + HEADER_SIZE,
            };
        };
        let kind = head[0] & TYPE_MASK;
        if kind == PAGE_TERM && !in_record {
            if head[0] != 0 {
                return Parsed::Corrupt {
                    at: off,
                    reason: "invalid page terminator",
                    skip_to: None,
                };
            }
            // The rest of the page is padding.
            if available(buf, base, off) < page_left {
                return Parsed::Incomplete {
                    need: off + page_left,
                };
            }
            off += page_left;
            continue;
        }
        if head[0] & !(TYPE_MASK | FLAG_SNAPPY) != 0 || kind > LAST || kind == PAGE_TERM {
            return Parsed::Corrupt {
                at: off,
                reason: "invalid fragment type",
                skip_to: None,
            };
        }
        let len = u64::from(u16::from_be_bytes([head[1], head[2]]));
        if HEADER_SIZE + len > page_left {
            return Parsed::Corrupt {
                at: off,
                reason: "fragment crosses page boundary",
                skip_to: None,
            };
        }
        let fragment_end = Some(off + HEADER_SIZE + len);
        let this_compressed = head[0] & FLAG_SNAPPY != 0;
        match (in_record, kind) {
            (false, FULL | FIRST) => compressed = this_compressed,
            (true, MIDDLE | LAST) if this_compressed == compressed => {}
            (false, _) => {
                return Parsed::Corrupt {
                    at: off,
                    reason: "fragment continues no record",
                    skip_to: fragment_end,
                }
            }
            (true, _) => {
                return Parsed::Corrupt {
                    at: off,
                    reason: "record not terminated",
                    skip_to: None,
                }
            }
        }
        let want_crc = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
        let Some(data) = slice(buf, base, off + HEADER_SIZE, len) else {
            return Parsed::Incomplete {
                need: off + HEADER_SIZE + len,
            };
        };
        if crc32c::crc32c(data) != want_crc {
            return Parsed::Corrupt {
                at: off,
                reason: "checksum mismatch",
                skip_to: fragment_end,
            };
        }
        scratch.extend_from_slice(data);
        off += HEADER_SIZE + len;
        if kind == FULL || kind == LAST {
            return Parsed::Record {
                end: off,
                compressed,
            };
        }
        in_record = true;
    }
}

/// Bytes of `buf` (starting at segment offset `base`) at or after `off`.
fn available(buf: &[u8], base: u64, off: u64) -> u64 {
    (base + buf.len() as u64).saturating_sub(off)
}

fn slice(buf: &[u8], base: u64, off: u64, len: u64) -> Option<&[u8]> {
    let from = usize::try_from(off.checked_sub(base)?).ok()?;
    let to = from.checked_add(usize::try_from(len).ok()?)?;
    buf.get(from..to)
}

/// The next page boundary strictly after `off`: where a reader resumes after
/// corruption, since every page starts with a fragment header.
pub(crate) fn next_page(off: u64) -> u64 {
    (off / PAGE_SIZE + 1) * PAGE_SIZE
}

/// The record type of snappy-compressed record bytes without decompressing
/// them: a snappy block starts with the uncompressed length (uvarint) followed
/// by a literal (nothing precedes it that a copy could refer to), so the first
/// literal byte is the record's type byte.
pub(crate) fn peek_snappy_first_byte(data: &[u8]) -> Option<u8> {
    let (_, n) = crate::record::get_uvarint(data)?;
    let tag = *data.get(n)?;
    if tag & 0x03 != 0 {
        return None;
    }
    let extra = match tag >> 2 {
        60 => 1,
        61 => 2,
        62 => 3,
        63 => 4,
        _ => 0,
    };
    data.get(n + 1 + extra).copied()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn framed_len_matches_frame_record() {
        for offset in [
            0,
            5,
            PAGE_SIZE - 8,
            PAGE_SIZE - 7,
            PAGE_SIZE - 1,
            3 * PAGE_SIZE + 100,
        ] {
            for len in [1, 7, 100, PAGE_SIZE as usize, 3 * PAGE_SIZE as usize + 5] {
                let data = vec![0xAB; len];
                let mut out = Vec::new();
                let end = frame_record(&mut out, offset, &data, false);
                assert_eq!(out.len() as u64, end - offset);
                assert_eq!(framed_len(offset, len), end - offset);
            }
        }
    }

    #[test]
    fn parse_round_trips_and_detects_truncation_and_flips() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let start = PAGE_SIZE - 20;
        let mut out = Vec::new();
        let end = frame_record(&mut out, start, &data, false);
        let mut scratch = Vec::new();
        assert_eq!(
            parse_record(&out, start, start, &mut scratch),
            Parsed::Record {
                end,
                compressed: false
            }
        );
        assert_eq!(scratch, data);
        for cut in [0, 3, 20, 40_000, out.len() - 1] {
            assert!(matches!(
                parse_record(&out[..cut], start, start, &mut scratch),
                Parsed::Incomplete { .. }
            ));
        }
        let mut flipped = out.clone();
        flipped[50_000] ^= 0x10;
        assert!(matches!(
            parse_record(&flipped, start, start, &mut scratch),
            Parsed::Corrupt { .. }
        ));
    }

    #[test]
    fn peek_finds_type_byte_in_snappy_data() {
        for len in [1usize, 50, 70, 400, 70_000] {
            let mut raw = vec![2u8];
            raw.extend((0..len).map(|i| (i % 7) as u8));
            let c = snap::raw::Encoder::new()
                .compress_vec(&raw)
                .unwrap_or_default();
            assert_eq!(peek_snappy_first_byte(&c), Some(2), "len {len}");
        }
    }
}
