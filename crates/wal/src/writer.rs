//! The segment writer: frames records into pages and writes each commit with
//! one `write` call.
//!
//! A failed write is undone by truncating the file back to the last good end;
//! the writer then moves to a fresh segment before the next write, so byte
//! offsets that a reader may already have seen are never reused. If even the
//! truncation fails, the torn bytes stay in a finished segment where readers
//! and replay recognise and skip them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::error::WalError;
use crate::format;
use crate::metrics::Metrics;
use crate::reader::Position;

pub(crate) struct SegmentWriter {
    dir: PathBuf,
    segment: u32,
    file: Arc<File>,
    /// Bytes of `segment` handed to the OS.
    offset: u64,
    /// Where the last record written ends. Unlike [`SegmentWriter::end`],
    /// not moved by a rotation, so the next record's span starts there: a
    /// reader at the end of the previous segment finds its successor in
    /// memory instead of meeting the (possibly deleted) segment's end.
    last_end: Position,
    segment_size: u64,
    compress: bool,
    encoder: snap::raw::Encoder,
    compressed: Vec<u8>,
    out: Vec<u8>,
    /// Per record of the last successful [`SegmentWriter::write_records`]:
    /// where the record before it ended, and where it ends.
    spans: Vec<(Position, Position)>,
    /// Set after a failed write: start a new segment before writing again.
    needs_rotation: bool,
    /// Written since the last fsync.
    dirty: bool,
    metrics: Arc<Metrics>,
    /// Test hook: fail the next N writes as if the disk were full.
    #[cfg(test)]
    pub(crate) fail_writes: u32,
}

impl SegmentWriter {
    /// Starts writing a new, empty segment `segment` in `dir`.
    pub(crate) fn create(
        dir: &Path,
        segment: u32,
        segment_size: u64,
        compress: bool,
        metrics: Arc<Metrics>,
    ) -> Result<SegmentWriter, WalError> {
        let file = create_segment(dir, segment)?;
        metrics.segment_current.set(i64::from(segment));
        Ok(SegmentWriter {
            dir: dir.to_path_buf(),
            segment,
            file: Arc::new(file),
            offset: 0,
            last_end: Position::new(segment, 0),
            segment_size,
            compress,
            encoder: snap::raw::Encoder::new(),
            compressed: Vec::new(),
            out: Vec::new(),
            spans: Vec::new(),
            needs_rotation: false,
            dirty: false,
            metrics,
            #[cfg(test)]
            fail_writes: 0,
        })
    }

    /// The end of the written data: where the next record will start (or an
    /// earlier position, if that record triggers a new segment).
    pub(crate) fn end(&self) -> Position {
        Position::new(self.segment, self.offset)
    }

    pub(crate) fn segment(&self) -> u32 {
        self.segment
    }

    /// Writes `records` (each a full payload) in order and returns the end
    /// position. The whole batch goes to the OS in one write per segment
    /// touched.
    pub(crate) fn write_records(&mut self, records: &[&[u8]]) -> Result<Position, WalError> {
        self.spans.clear();
        let written = self.frame_and_write(records);
        if written.is_err() {
            self.spans.clear();
        }
        written
    }

    fn frame_and_write(&mut self, records: &[&[u8]]) -> Result<Position, WalError> {
        let mut prev_end = self.last_end;
        if self.needs_rotation {
            self.rotate()?;
        }
        self.out.clear();
        let mut pending_end = self.offset;
        for payload in records {
            let compressed_len = self.compress_into_scratch(payload);
            let len = format::framed_len(pending_end, compressed_len.unwrap_or(payload.len()));
            if pending_end > 0 && pending_end + len > self.segment_size {
                // Records never span segments; an oversized record gets a
                // segment of its own rather than an error.
                self.flush_out(pending_end)?;
                self.rotate()?;
                pending_end = 0;
            }
            let data: &[u8] = match compressed_len {
                Some(n) => self.compressed.get(..n).unwrap_or(payload),
                None => payload,
            };
            let compressed = compressed_len.is_some() && data.len() < payload.len();
            pending_end = format::frame_record(&mut self.out, pending_end, data, compressed);
            let end = Position::new(self.segment, pending_end);
            self.spans.push((prev_end, end));
            prev_end = end;
        }
        self.flush_out(pending_end)?;
        Ok(self.end())
    }

    /// Where each record of the last successful write began (the previous
    /// record's end) and ended; empty after a failed one.
    pub(crate) fn last_spans(&self) -> &[(Position, Position)] {
        &self.spans
    }

    /// Compresses `payload` into the scratch buffer; the compressed length
    /// if that shrank it. The scratch buffer only ever grows: zeroing it to
    /// the worst-case size for every record cost more than compressing.
    fn compress_into_scratch(&mut self, payload: &[u8]) -> Option<usize> {
        if !self.compress {
            return None;
        }
        let max = snap::raw::max_compress_len(payload.len());
        if self.compressed.len() < max {
            self.compressed.resize(max, 0);
        }
        match self.encoder.compress(payload, &mut self.compressed) {
            Ok(n) if n < payload.len() => Some(n),
            _ => None,
        }
    }

    /// Writes the framed bytes in `out` (ending at segment offset `end`).
    fn flush_out(&mut self, end: u64) -> Result<(), WalError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self.write_out();
        self.out.clear();
        match result {
            Ok(()) => {
                let pages_before = self.offset / format::PAGE_SIZE;
                self.offset = end;
                self.last_end = Position::new(self.segment, end);
                self.dirty = true;
                self.metrics.page_flushes.inc();
                self.metrics
                    .completed_pages
                    .inc_by(end / format::PAGE_SIZE - pages_before);
                Ok(())
            }
            Err(e) => {
                self.metrics.writes_failed.inc();
                self.needs_rotation = true;
                // Best effort: cut the torn bytes so the segment ends cleanly.
                if let Err(te) = self.file.set_len(self.offset) {
                    tracing::warn!(segment = self.segment, error = %te, "could not cut failed WAL write; readers will skip the torn bytes");
                }
                Err(WalError::io("write WAL segment", self.path())(e))
            }
        }
    }

    fn write_out(&mut self) -> std::io::Result<()> {
        #[cfg(test)]
        if self.fail_writes > 0 {
            self.fail_writes -= 1;
            // Simulate a short write followed by ENOSPC.
            let half = self.out.len() / 2;
            (&*self.file).write_all(&self.out[..half])?;
            return Err(std::io::Error::other("simulated: no space left on device"));
        }
        (&*self.file).write_all(&self.out)
    }

    fn path(&self) -> PathBuf {
        format::segment_path(&self.dir, self.segment)
    }

    /// Finishes the current segment (fsync) and starts the next one.
    pub(crate) fn rotate(&mut self) -> Result<(), WalError> {
        self.sync()?;
        let next = self.segment.saturating_add(1);
        let file = create_segment(&self.dir, next)?;
        self.file = Arc::new(file);
        self.segment = next;
        self.offset = 0;
        self.needs_rotation = false;
        self.metrics.segment_current.set(i64::from(next));
        Ok(())
    }

    /// The file to fsync if anything was written since the last sync; lets
    /// the caller fsync without holding the writer lock.
    pub(crate) fn take_dirty(&mut self) -> Option<Arc<File>> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        Some(Arc::clone(&self.file))
    }

    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// fsyncs the current segment now.
    pub(crate) fn sync(&mut self) -> Result<(), WalError> {
        if let Some(f) = self.take_dirty() {
            if let Err(e) = sync_file(&f, &self.metrics) {
                self.dirty = true;
                return Err(WalError::io("fsync WAL segment", self.path())(e));
            }
        }
        Ok(())
    }
}

/// fsyncs a segment, recording the duration.
pub(crate) fn sync_file(f: &File, metrics: &Metrics) -> std::io::Result<()> {
    let start = Instant::now();
    let r = f.sync_data();
    metrics
        .fsync_duration
        .observe(start.elapsed().as_secs_f64());
    r
}

fn create_segment(dir: &Path, segment: u32) -> Result<File, WalError> {
    let path = format::segment_path(dir, segment);
    let file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(WalError::io("create WAL segment", &path))?;
    // Make the new directory entry durable, or a power loss could lose a
    // segment whose data was fsynced.
    sync_dir(dir)?;
    Ok(file)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(WalError::io("fsync directory", dir))
}
