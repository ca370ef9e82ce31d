//! Checkpoints: the label sets of the series still live when segments are
//! deleted, so readers (and replay) can resolve references whose Series
//! records were in deleted segments.
//!
//! `checkpoint.N` covers segments up to and including `N`. It is written into
//! `checkpoint.N.tmp`, fsynced, renamed and the WAL directory fsynced, so a
//! crash leaves either no checkpoint or a complete one. Unlike Prometheus, a
//! checkpoint holds Series records only and is built from the in-memory
//! series table (no re-read of old segments, no memory spike): sample data in
//! deleted segments is either delivered already or counted as dropped.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use tributary_model::{Labels, SeriesRef, SharedLabelStore};

use crate::error::WalError;
use crate::format;
use crate::metrics::Metrics;
use crate::reader::{Position, WalReader};
use crate::record::{self, RecordType};
use crate::writer::{sync_dir, SegmentWriter};

/// Target size of one Series record in a checkpoint.
const BATCH_BYTES: usize = 1 << 20;
/// Series encoded per hold of the label store's read lock.
const CHUNK_SERIES: usize = 4096;

/// Writes `checkpoint.<upto>` with the given series. Returns its size.
pub(crate) fn write_checkpoint(
    wal_dir: &Path,
    upto: u32,
    series: &[SeriesRef],
    store: &SharedLabelStore,
    compress: bool,
) -> Result<u64, WalError> {
    let final_dir = wal_dir.join(format::checkpoint_name(upto));
    let tmp_dir = wal_dir.join(format!("{}.tmp", format::checkpoint_name(upto)));
    if tmp_dir.exists() {
        fs::remove_dir_all(&tmp_dir).map_err(WalError::io("remove stale checkpoint", &tmp_dir))?;
    }
    fs::create_dir(&tmp_dir).map_err(WalError::io("create checkpoint", &tmp_dir))?;
    let size = match write_series(&tmp_dir, series, store, compress) {
        Ok(size) => size,
        Err(e) => {
            // On a full disk, the partial checkpoint holds space the next
            // attempt (or the WAL's own writes) need.
            let _ = fs::remove_dir_all(&tmp_dir);
            return Err(e);
        }
    };
    if final_dir.exists() {
        fs::remove_dir_all(&final_dir)
            .map_err(WalError::io("remove old checkpoint", &final_dir))?;
    }
    fs::rename(&tmp_dir, &final_dir).map_err(WalError::io("rename checkpoint", &final_dir))?;
    sync_dir(wal_dir)?;
    Ok(size)
}

/// Writes the Series records of `series` into a checkpoint directory and
/// syncs it. Returns their size.
fn write_series(
    tmp_dir: &Path,
    series: &[SeriesRef],
    store: &SharedLabelStore,
    compress: bool,
) -> Result<u64, WalError> {
    // Page counters etc. of checkpoint writes are not WAL traffic.
    let scratch_metrics = Arc::new(Metrics::new());
    let mut w = SegmentWriter::create(tmp_dir, 0, u64::MAX, compress, scratch_metrics)?;
    let mut buf = Vec::with_capacity(BATCH_BYTES + 4096);
    // Encoded a batch at a time, so the store's lock is never held across
    // a write.
    for chunk in series.chunks(CHUNK_SERIES) {
        {
            let store = store.read();
            for &r in chunk {
                if buf.is_empty() {
                    buf.push(RecordType::Series as u8);
                }
                record::encode_stored_series(&store, r, &mut buf);
            }
        }
        if buf.len() >= BATCH_BYTES {
            w.write_records(&[&buf])?;
            buf.clear();
        }
    }
    if !buf.is_empty() {
        w.write_records(&[&buf])?;
    }
    let size = w.end().offset;
    w.mark_dirty();
    w.sync()?;
    drop(w);
    sync_dir(tmp_dir)?;
    Ok(size)
}

/// The bytes a series takes in a checkpoint, measured on `sample` (encoded
/// and compressed as a checkpoint would be); `None` for no series.
pub(crate) fn bytes_per_series(
    sample: &[SeriesRef],
    store: &SharedLabelStore,
    compress: bool,
) -> Option<u64> {
    let mut buf = vec![RecordType::Series as u8];
    {
        let store = store.read();
        for &r in sample {
            record::encode_stored_series(&store, r, &mut buf);
        }
    }
    let n = u64::try_from(sample.len()).ok().filter(|n| *n > 0)?;
    let len = if compress {
        snap::raw::Encoder::new()
            .compress_vec(&buf)
            .map_or(buf.len(), |c| c.len().min(buf.len()))
    } else {
        buf.len()
    };
    Some((len as u64).div_ceil(n).max(1))
}

/// Deletes checkpoints older than `keep` and leftover temporary ones.
/// Returns (deleted, failed).
pub(crate) fn delete_checkpoints_before(wal_dir: &Path, keep: u32) -> (u64, u64) {
    let (mut ok, mut failed) = (0, 0);
    let Ok(entries) = fs::read_dir(wal_dir) else {
        return (0, 1);
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix("checkpoint.") else {
            continue;
        };
        let is_tmp = rest.ends_with(".tmp");
        let idx = rest.trim_end_matches(".tmp").parse::<u32>().ok();
        if is_tmp || idx.is_some_and(|i| i < keep) {
            match fs::remove_dir_all(e.path()) {
                Ok(()) => ok += 1,
                Err(err) => {
                    tracing::warn!(path = %e.path().display(), error = %err, "deleting old checkpoint failed");
                    failed += 1;
                }
            }
        }
    }
    (ok, failed)
}

/// Calls `f` for every series of the latest checkpoint, reading it fully.
/// Returns the checkpoint's index, if there is one. Corrupt parts are
/// skipped and counted in `corruptions`.
pub(crate) fn read_latest_checkpoint(
    wal_dir: &Path,
    corruptions: &mut u64,
    mut f: impl FnMut(SeriesRef, Labels),
) -> Result<Option<u32>, WalError> {
    let cps =
        format::list_checkpoints(wal_dir).map_err(WalError::io("list checkpoints", wal_dir))?;
    let Some((idx, path)) = cps.last() else {
        return Ok(None);
    };
    let mut reader = WalReader::open(path, Position::default())?;
    let mut series = Vec::new();
    while let Some(rec) = reader.next_filtered(|t| t == Some(RecordType::Series))? {
        if rec.skipped.is_some() {
            *corruptions += 1;
            continue;
        }
        if rec.payload.is_empty() {
            continue;
        }
        series.clear();
        match record::decode_series(rec.payload, &mut series) {
            Ok(()) => series.drain(..).for_each(|(r, l)| f(r, l)),
            Err(e) => {
                *corruptions += 1;
                tracing::warn!(checkpoint = %path.display(), error = %e, "undecodable checkpoint record skipped");
            }
        }
    }
    Ok(Some(*idx))
}

/// Reports the label set of every series a reader starting at `upto` may
/// meet without having seen its Series record: the latest checkpoint's series
/// plus the Series records of all segments after it, up to `upto`. Sample
/// records are skipped without being decompressed. A ref may be reported
/// more than once (checkpoint and segment); the later report wins.
pub fn load_series_before(
    wal_dir: &Path,
    upto: Position,
    mut f: impl FnMut(SeriesRef, Labels),
) -> Result<(), WalError> {
    let mut corruptions = 0;
    let cp = read_latest_checkpoint(wal_dir, &mut corruptions, &mut f)?;
    let segs =
        format::list_segments(wal_dir).map_err(WalError::io("list WAL segments", wal_dir))?;
    let first = segs
        .iter()
        .map(|(i, _)| *i)
        .find(|i| cp.is_none_or(|c| *i > c));
    let Some(first) = first else {
        return Ok(());
    };
    if first >= upto.segment && !(first == upto.segment && upto.offset > 0) {
        return Ok(());
    }
    let mut reader = WalReader::open(wal_dir, Position::new(first, 0))?;
    let mut series = Vec::new();
    while reader.position() < upto {
        let Some(rec) = reader.next_filtered(|t| t == Some(RecordType::Series))? else {
            break;
        };
        if rec.start >= upto {
            break;
        }
        if rec.skipped.is_some() || rec.payload.is_empty() {
            continue;
        }
        series.clear();
        match record::decode_series(rec.payload, &mut series) {
            Ok(()) => series.drain(..).for_each(|(r, l)| f(r, l)),
            Err(e) => {
                tracing::warn!(position = %rec.start, error = %e, "undecodable Series record skipped")
            }
        }
    }
    Ok(())
}
