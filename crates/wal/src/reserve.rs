//! The checkpoint reserve: disk space held back so that truncation can
//! still run once the WAL has filled its disk.
//!
//! Truncation writes the checkpoint *before* it deletes any segment, so that
//! a crash in between leaves every series a later sample refers to
//! resolvable. On a full disk that first write fails, so nothing is deleted,
//! the disk stays full, and every later truncation fails the same way: the
//! agent could never free its own disk, not even after the remote caught up.
//! The reserve breaks that circle. `<dir>/checkpoint.reserve` is a
//! preallocated file sized for the next checkpoint; when a checkpoint write
//! fails, truncation deletes it and writes the checkpoint into the space it
//! held, then deletes segments. The next maintenance tick takes the reserve
//! again, before it writes the commits the full disk refused if both fit
//! (`Shared::write_back_refused`): once given up, the reserve is what lets
//! the next full disk be freed again.
//!
//! The size follows the series count: bytes per series as the last
//! checkpoint took them (before the first, as a sample of the series
//! encodes, measured again each time their number has doubled), a quarter
//! on top, never less than [`MIN_BYTES`]. It grows in steps of half again, and
//! shrinks only when three times too large, so a changing series count does
//! not rewrite it every tick.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The file's name in the storage directory (beside `wal/`, not in it, so
/// that tools listing the WAL directory never meet it).
pub(crate) const FILE_NAME: &str = "checkpoint.reserve";
/// The smallest reserve: a small checkpoint plus the directory entries and
/// the cursor file truncation writes along with it.
pub(crate) const MIN_BYTES: u64 = 1 << 20;
/// Checkpoint bytes per series assumed before anything was measured: a
/// series of ~200 bytes of label text, not compressed.
const GUESS_BYTES_PER_SERIES: u64 = 200;
/// Series encoded to estimate the bytes per series before a checkpoint.
pub(crate) const SAMPLE_SERIES: usize = 1024;
/// Growth and shrinking work in whole units of this.
const STEP: u64 = 64 << 10;

pub(crate) struct CheckpointReserve {
    path: PathBuf,
    /// Bytes the file holds now (0: no file).
    held: u64,
    /// Per series in a checkpoint: measured or estimated.
    bytes_per_series: Option<u64>,
    /// Whether a checkpoint measured `bytes_per_series`.
    measured: bool,
    /// The series count of the last estimate.
    estimated_at: usize,
}

/// Whether `a` and `b` are on one filesystem (taken as yes when either
/// cannot be looked at: then nothing better is known).
fn same_filesystem(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev(),
        _ => true,
    }
}

impl CheckpointReserve {
    /// Adopts the reserve a previous run left in `dir`, if any, counting
    /// only its allocated blocks (a sparse copy of it holds nothing).
    pub(crate) fn open(dir: &Path, wal_dir: &Path) -> CheckpointReserve {
        if !same_filesystem(dir, wal_dir) {
            tracing::warn!(
                dir = %dir.display(),
                wal_dir = %wal_dir.display(),
                "the WAL directory is on another filesystem than its parent: the checkpoint reserve cannot free space for a checkpoint on a full disk"
            );
        }
        let path = dir.join(FILE_NAME);
        let held = File::open(&path).map_or(0, |f| {
            let len = f.metadata().map_or(0, |m| m.len());
            fs4::FileExt::allocated_size(&f).map_or(0, |a| a.min(len))
        });
        CheckpointReserve {
            path,
            held,
            bytes_per_series: None,
            measured: false,
            estimated_at: 0,
        }
    }

    pub(crate) fn held(&self) -> u64 {
        self.held
    }

    /// Notes what a checkpoint of `series` series took on disk.
    pub(crate) fn learn(&mut self, checkpoint_bytes: u64, series: usize) {
        if series > 0 {
            self.bytes_per_series = Some(checkpoint_bytes.div_ceil(series as u64).max(1));
            self.measured = true;
        }
    }

    /// Whether the bytes per series should be estimated (again) for
    /// `series` series: no checkpoint measured them yet, and their number
    /// has doubled since the last estimate.
    pub(crate) fn wants_estimate(&self, series: usize) -> bool {
        !self.measured && series > 0 && series >= self.estimated_at.saturating_mul(2)
    }

    /// Notes an estimate made with `series` series.
    pub(crate) fn estimated(&mut self, bytes_per_series: u64, series: usize) {
        self.bytes_per_series = Some(bytes_per_series);
        self.estimated_at = series;
    }

    /// What a checkpoint of `series` series is expected to need.
    pub(crate) fn target(&self, series: usize) -> u64 {
        let per = self.bytes_per_series.unwrap_or(GUESS_BYTES_PER_SERIES);
        let need = (series as u64).saturating_mul(per);
        round_up(need.saturating_add(need / 4)).max(MIN_BYTES)
    }

    /// Grows the reserve to cover a checkpoint of `series` series, or
    /// shrinks one far larger than that. Returns whether it changed.
    pub(crate) fn ensure(&mut self, series: usize) -> io::Result<bool> {
        let target = self.target(series);
        if (target..=target.saturating_mul(3)).contains(&self.held) {
            return Ok(false);
        }
        self.resize(round_up(target.saturating_add(target / 2)))?;
        Ok(true)
    }

    /// Deletes the reserve; returns the bytes it held.
    pub(crate) fn release(&mut self) -> u64 {
        let held = self.held;
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "deleting the checkpoint reserve failed");
                return 0;
            }
        }
        self.held = 0;
        held
    }

    fn resize(&mut self, len: u64) -> io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.path)?;
        if len < self.held {
            file.set_len(len)?;
            self.held = len;
            return Ok(());
        }
        if let Err(e) = allocate(&file, self.held, len) {
            // Give back what a partial allocation took.
            let _ = file.set_len(self.held);
            return Err(e);
        }
        // A sparse file adopted at open may be longer than what it holds.
        file.set_len(len)?;
        self.held = len;
        Ok(())
    }
}

/// Makes `file` hold `len` bytes of allocated blocks (it holds `from` now).
fn allocate(file: &File, from: u64, len: u64) -> io::Result<()> {
    match fs4::FileExt::allocate(file, len) {
        // The filesystem cannot preallocate (std maps ENOSYS, not
        // EOPNOTSUPP, to `Unsupported`).
        Err(e)
            if e.kind() == io::ErrorKind::Unsupported
                || e.raw_os_error() == Some(libc::EOPNOTSUPP) =>
        {
            write_filler(file, from, len)
        }
        done => done,
    }
}

/// Where the filesystem cannot preallocate, the bytes are written instead:
/// not zeros or a repeated block, which a compressing or deduplicating
/// filesystem would store in next to no space.
fn write_filler(mut file: &File, from: u64, len: u64) -> io::Result<()> {
    use std::io::Seek;
    file.set_len(from)?;
    file.seek(io::SeekFrom::Start(from))?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; STEP as usize];
    let mut at = from;
    while at < len {
        for word in buf.chunks_exact_mut(8) {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = usize::try_from(len - at).map_or(buf.len(), |left| left.min(buf.len()));
        file.write_all(buf.get(..n).unwrap_or(&buf))?;
        at += n as u64;
    }
    // Delayed allocation would otherwise leave the blocks unclaimed.
    file.sync_data()
}

fn round_up(n: u64) -> u64 {
    n.div_ceil(STEP).saturating_mul(STEP)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn grows_with_the_series_in_steps_and_shrinks_only_when_far_too_large() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = CheckpointReserve::open(dir.path(), dir.path());
        assert_eq!(r.held(), 0);
        assert!(r.ensure(10).unwrap());
        assert_eq!(r.held(), round_up(MIN_BYTES + MIN_BYTES / 2));
        let on_disk = |r: &CheckpointReserve| fs::metadata(&r.path).unwrap().len();
        assert_eq!(on_disk(&r), r.held());
        // Within the band: nothing to do.
        assert!(!r.ensure(100).unwrap());

        // Estimated again each time the series double, until measured.
        assert!(r.wants_estimate(1));
        r.estimated(40, 1_000);
        assert!(!r.wants_estimate(1_999));
        assert!(r.wants_estimate(2_000));
        assert_eq!(r.target(100_000), round_up(5_000_000));

        r.learn(50_000_000, 100_000); // 500 bytes a series
        assert!(!r.wants_estimate(1_000_000));
        let target = r.target(100_000);
        assert!(target >= 62_500_000, "{target}");
        assert!(r.ensure(100_000).unwrap());
        assert!(r.held() >= target + target / 2 - STEP);
        assert_eq!(on_disk(&r), r.held());
        let grown = r.held();
        // A few series fewer changes nothing; a tenth of them shrinks it.
        assert!(!r.ensure(90_000).unwrap());
        assert!(r.ensure(10_000).unwrap());
        assert!(r.held() < grown / 3);
        assert_eq!(on_disk(&r), r.held());

        // A restart adopts the file as it is.
        let again = CheckpointReserve::open(dir.path(), dir.path());
        assert_eq!(again.held(), r.held());

        let held = r.held();
        assert_eq!(r.release(), held);
        assert_eq!(r.held(), 0);
        assert!(!r.path.exists());
        assert_eq!(r.release(), 0);
    }

    #[test]
    fn the_reserve_holds_real_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = CheckpointReserve::open(dir.path(), dir.path());
        r.ensure(0).unwrap();
        let f = File::open(&r.path).unwrap();
        let allocated = fs4::FileExt::allocated_size(&f).unwrap();
        assert!(allocated >= r.held(), "{allocated} < {}", r.held());
    }

    #[test]
    fn the_fallback_writes_bytes_that_do_not_compress() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = File::create(&path).unwrap();
        write_filler(&f, 0, 1000).unwrap();
        write_filler(&f, 1000, 3 * STEP + 5).unwrap();
        drop(f);
        let body = fs::read(&path).unwrap();
        assert_eq!(body.len() as u64, 3 * STEP + 5);
        let compressed = snap::raw::Encoder::new().compress_vec(&body).unwrap();
        assert!(compressed.len() > body.len() * 9 / 10);
    }

    #[test]
    fn filesystems_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("wal");
        std::fs::create_dir(&sub).unwrap();
        assert!(same_filesystem(dir.path(), &sub));
        assert!(!same_filesystem(dir.path(), Path::new("/proc/self")));
    }
}
