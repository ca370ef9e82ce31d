//! Inflating a gzip'd scrape body under the body cap.
//!
//! The whole compressed body is in memory when it is inflated (it was read
//! under the same cap), so the common case — one gzip member — is inflated
//! by libdeflate in a single call straight into a buffer of the size the
//! gzip trailer announces. On real pages that is 2–3× as fast as the
//! streaming zlib-rs decoder (`benches/gzip.rs`), and libdeflate checks
//! the CRC32 with a SIMD implementation rather than zlib-rs's scalar one.
//!
//! The trailer's size (ISIZE) is only a claim: a target can lie in it, a
//! body can hold several members (ISIZE then describes only the last one)
//! or be corrupt. The one-shot result is kept only when libdeflate
//! succeeded *and* the member it inflated provably spans the whole body;
//! anything else is inflated again by the streaming flate2 decoder, which
//! handles every valid gzip body, enforces the cap as it writes, and
//! reports corruption. So a lie costs at most a second inflate, bounded by
//! the cap; it never truncates a body nor lets it grow past the cap.

use std::cell::RefCell;
use std::io::Write;

use libdeflater::Decompressor;

use super::{CappedWriter, FetchError};
use crate::buffers::BodyBuf;

/// Bytes of the gzip trailer: CRC32, then ISIZE (both little-endian u32).
const TRAILER_LEN: usize = 8;
/// The smallest gzip member: a 10-byte header, the shortest deflate
/// stream (2 bytes), the trailer.
const MIN_MEMBER_LEN: usize = 10 + 2 + TRAILER_LEN;
/// DEFLATE cannot expand more than 1032:1 (a 258-byte match per two
/// bits). A body announcing more than this ratio of its length is lying
/// or damaged, and must not make us allocate its claim.
const MAX_DEFLATE_RATIO: u64 = 1032;

thread_local! {
    // A decompressor is ~10 KiB of tables that libdeflate allocates and
    // clears: once per worker thread, not once per scrape.
    static DECOMPRESSOR: RefCell<Decompressor> = RefCell::new(Decompressor::new());
}

/// Inflates the gzip body `gz` into `out` (its old body dropped). Fails
/// with [`FetchError::BodySizeLimit`] when the inflated body would reach
/// `cap` bytes, and with [`FetchError::Gzip`] when `gz` is not valid gzip
/// (bad header, corrupt data, CRC or size mismatch, truncation).
pub fn inflate_gzip(gz: &[u8], out: &mut BodyBuf, cap: u64) -> Result<(), FetchError> {
    out.clear();
    if inflate_one_shot(gz, out, cap)? {
        return Ok(());
    }
    inflate_gzip_streaming(gz, out, cap)
}

/// Inflates through flate2's streaming multi-member decoder, writing into
/// `out` (its old body dropped) only while it stays under `cap`. This was
/// the only path before the one-shot one; it remains the fallback for
/// every body the one-shot path cannot vouch for.
pub fn inflate_gzip_streaming(gz: &[u8], out: &mut BodyBuf, cap: u64) -> Result<(), FetchError> {
    let mut dec = flate2::write::MultiGzDecoder::new(CappedWriter::new(out.appender(), cap));
    match dec.write_all(gz).and_then(|()| dec.try_finish()) {
        Ok(()) => Ok(()),
        Err(_) if dec.get_ref().exceeded => Err(FetchError::BodySizeLimit),
        Err(e) => Err(FetchError::Gzip(e.to_string())),
    }
}

/// Tries the single-call inflate. `Ok(true)`: `out` holds the whole body.
/// `Ok(false)`: the result cannot be trusted and `out` is empty.
fn inflate_one_shot(gz: &[u8], out: &mut BodyBuf, cap: u64) -> Result<bool, FetchError> {
    let Some(announced) = announced_size(gz) else {
        return Ok(false);
    };
    // A size no gzip body of this length can inflate to is no size at all
    // but a damaged body (a truncated one ends in compressed data, not in
    // a trailer): the streaming decoder will tell what is wrong with it.
    if u64::from(announced) > (gz.len() as u64).saturating_mul(MAX_DEFLATE_RATIO) {
        return Ok(false);
    }
    // The real size is ISIZE + k·2³², never less: a body announcing the
    // cap or more would fail anyway, so fail before inflating anything.
    if u64::from(announced) >= cap {
        return Err(FetchError::BodySizeLimit);
    }
    let Ok(size) = usize::try_from(announced) else {
        return Ok(false);
    };
    // The pooled body buffer already holds a page's worth of initialised
    // bytes: written over, not zeroed first.
    let dst = out.overwrite(size);
    // libdeflate fails with InsufficientSpace when the body is larger than
    // announced and with BadData when it is smaller or corrupt (it checks
    // the first member's CRC32 and ISIZE against what it produced). Only
    // when it wrote exactly `size` bytes is every byte of `dst` this body's.
    let inflated = DECOMPRESSOR.with(|d| d.borrow_mut().gzip_decompress(gz, dst));
    match inflated {
        Ok(n) if n == size && is_single_member(gz, announced) => Ok(true),
        _ => {
            out.clear();
            Ok(false)
        }
    }
}

/// The ISIZE of the gzip trailer at the end of `gz`, if `gz` starts like a
/// gzip member and is long enough to hold one. Anything else is left to
/// the streaming decoder, which reports the real error.
fn announced_size(gz: &[u8]) -> Option<u32> {
    if gz.len() < MIN_MEMBER_LEN || !gz.starts_with(&[0x1f, 0x8b, 0x08]) {
        return None;
    }
    let tail: [u8; 4] = gz[gz.len() - 4..].try_into().ok()?;
    Some(u32::from_le_bytes(tail))
}

/// Whether the member libdeflate just inflated ends exactly at the end of
/// `gz`. libdeflate's safe API does not say how many input bytes it read,
/// and silently ignores whatever follows the first member (more members,
/// or garbage). But it did check that the 4 bytes right after the first
/// member's deflate stream and CRC hold `announced`; if those 4 bytes occur
/// nowhere in `gz` except at its very end, the member must end there.
/// A false alarm (the pattern also occurring inside the compressed data,
/// odds about body length / 2³²; or in the header, for sizes under 256)
/// only costs a streaming inflate.
fn is_single_member(gz: &[u8], announced: u32) -> bool {
    // Every start offset except the final one, gz.len() - 4.
    let before_end = &gz[..gz.len() - 1];
    memchr::memmem::find(before_end, &announced.to_le_bytes()).is_none()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const CAP: u64 = 1 << 20;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn page(lines: usize) -> Vec<u8> {
        (0..lines)
            .map(|i| {
                format!(
                    "http_requests_total{{code=\"{}\",path=\"/api/{i}\"}} {}\n",
                    200 + i % 5,
                    i * 37
                )
            })
            .collect::<String>()
            .into_bytes()
    }

    /// A body buffer that held a longer body before.
    fn stale() -> BodyBuf {
        let mut out = BodyBuf::default();
        out.appender().extend_from_slice(&page(3000));
        out
    }

    fn set_isize(gz: &mut [u8], size: u32) {
        let n = gz.len();
        gz[n - 4..].copy_from_slice(&size.to_le_bytes());
    }

    #[test]
    fn one_shot_inflates_a_single_member() {
        let body = page(2000);
        let gz = gzip(&body);
        let mut out = BodyBuf::default();
        assert!(inflate_one_shot(&gz, &mut out, CAP).unwrap());
        assert_eq!(out.as_slice(), body);
        let mut out = stale();
        inflate_gzip(&gz, &mut out, CAP).unwrap();
        assert_eq!(out.as_slice(), body);
    }

    #[test]
    fn empty_body_inflates_to_nothing() {
        let mut out = stale();
        inflate_gzip(&gzip(b""), &mut out, CAP).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn multi_member_bodies_are_inflated_whole() {
        let (a, b) = (page(300), page(50));
        // Identical members: the first member's trailer equals the last
        // one's, so only the single-member check tells them apart.
        let twice = [gzip(&a), gzip(&a)].concat();
        let mut out = vec![0; a.len()];
        // What the single-member check is for: libdeflate alone reports
        // success, having silently ignored the second member.
        assert_eq!(
            Decompressor::new().gzip_decompress(&twice, &mut out),
            Ok(a.len())
        );
        for (first, second) in [(&a, &a), (&a, &b), (&b, &a)] {
            let gz = [gzip(first), gzip(second)].concat();
            let mut out = BodyBuf::default();
            assert!(!inflate_one_shot(&gz, &mut out, CAP).unwrap());
            inflate_gzip(&gz, &mut out, CAP).unwrap();
            assert_eq!(out.as_slice(), [first.as_slice(), second].concat());
        }
    }

    #[test]
    fn announced_size_at_or_over_the_cap_fails_at_once() {
        let gz = gzip(&page(2000));
        assert!(gz.len() as u64 * MAX_DEFLATE_RATIO > 2 * CAP);
        for size in [CAP, CAP + 1, 2 * CAP] {
            let mut lying = gz.clone();
            set_isize(&mut lying, size as u32);
            let mut out = BodyBuf::default();
            let err = inflate_gzip(&lying, &mut out, CAP).unwrap_err();
            assert!(matches!(err, FetchError::BodySizeLimit), "{err}");
            assert_eq!(out.capacity(), 0, "inflated or allocated anyway");
        }
    }

    #[test]
    fn lying_small_size_on_a_bomb_stays_capped() {
        let mut bomb = gzip(&vec![0u8; 4 << 20]);
        set_isize(&mut bomb, 100);
        let mut out = BodyBuf::default();
        let err = inflate_gzip(&bomb, &mut out, CAP).unwrap_err();
        assert!(matches!(err, FetchError::BodySizeLimit), "{err}");
        assert!(out.len() < CAP as usize);
    }

    #[test]
    fn lying_size_within_the_cap_is_a_gzip_error() {
        let body = page(100);
        let gz = gzip(&body);
        for size in [1, body.len() as u32 - 1, body.len() as u32 + 1, 100_000] {
            let mut lying = gz.clone();
            set_isize(&mut lying, size);
            let mut out = BodyBuf::default();
            let err = inflate_gzip(&lying, &mut out, CAP).unwrap_err();
            assert!(matches!(err, FetchError::Gzip(_)), "{size}: {err}");
            // Into a buffer holding an earlier, longer body: the failed
            // one-shot attempt leaves none of it visible.
            let mut out = stale();
            assert!(!inflate_one_shot(&lying, &mut out, CAP).unwrap());
            assert!(out.is_empty());
        }
    }

    #[test]
    fn a_reused_buffer_holds_exactly_the_new_body() {
        let mut out = stale();
        for lines in [2000, 10, 2500, 0] {
            let body = page(lines);
            inflate_gzip(&gzip(&body), &mut out, CAP).unwrap();
            assert_eq!(out.as_slice(), body);
        }
    }

    #[test]
    fn implausible_size_is_not_allocated() {
        // 20-odd bytes cannot inflate to 900 KiB, nor 4 GiB: the claim is
        // refused before allocating it, and the streaming decoder reports
        // the lie as the corruption it is.
        for size in [900 << 10, u32::MAX] {
            let mut gz = gzip(b"x");
            set_isize(&mut gz, size);
            let mut out = BodyBuf::default();
            assert!(!inflate_one_shot(&gz, &mut out, CAP).unwrap());
            assert_eq!(out.capacity(), 0);
            let err = inflate_gzip(&gz, &mut out, CAP).unwrap_err();
            assert!(matches!(err, FetchError::Gzip(_)), "{size}: {err}");
        }
    }

    #[test]
    fn corrupt_bodies_are_gzip_errors() {
        let gz = gzip(&page(500));
        let n = gz.len();
        let mut bad_crc = gz.clone();
        bad_crc[n - 8] ^= 1;
        let mut bad_data = gz.clone();
        bad_data[n / 2] ^= 0x55;
        let cases: [(&str, &[u8]); 6] = [
            ("crc", &bad_crc),
            ("data", &bad_data),
            ("truncated trailer", &gz[..n - 3]),
            ("truncated data", &gz[..n / 2]),
            ("trailing zeros", &[gz.as_slice(), &[0; 8]].concat()),
            ("not gzip", b"metric 1\nmetric 2\nmetric 3\n"),
        ];
        for (what, body) in cases {
            let mut out = BodyBuf::default();
            match inflate_gzip(body, &mut out, CAP) {
                Err(FetchError::Gzip(_)) => {}
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn body_reaching_the_cap_is_refused_on_both_paths() {
        let body = page(1000);
        let gz = gzip(&body);
        let exact = body.len() as u64;
        let mut out = BodyBuf::default();
        for inflate in [inflate_gzip, inflate_gzip_streaming] {
            assert!(matches!(
                inflate(&gz, &mut out, exact),
                Err(FetchError::BodySizeLimit)
            ));
            inflate(&gz, &mut out, exact + 1).unwrap();
            assert_eq!(out.as_slice(), body);
        }
    }
}
