//! Sequential, tailing reader over the segments of a WAL directory.
//!
//! The reader keeps a window of the current segment in memory (bounded: it
//! drops consumed bytes and reads in chunks) and parses one record at a time.
//! It distinguishes three situations at the end of the bytes it has:
//!
//! * the segment is the newest one: the writer may still be appending, so the
//!   reader reports "at the end" (`Ok(None)`) and never returns a half-written
//!   record;
//! * a newer segment exists: the segment is finished, so a trailing partial
//!   record is a torn write and the reader moves on, reporting the skipped
//!   bytes;
//! * the segment file vanished (truncation deleted it): the reader jumps to the
//!   oldest remaining segment and reports the gap as a [`Skipped`] record.
//!
//! Corrupt bytes (bad CRC, impossible fragment sequence) are skipped by
//! resynchronising at the next page boundary, which loses at most the records
//! that touch the damaged page.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::WalError;
use crate::format::{self, Parsed};
use crate::record::RecordType;
use crate::tail::{Lookup, TailChunk, TailRecord, WalTail};

/// A place in the WAL: a segment index and a byte offset in that segment.
/// Positions order the way records were written.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Debug,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Position {
    pub segment: u32,
    pub offset: u64,
}

impl Position {
    pub const fn new(segment: u32, offset: u64) -> Position {
        Position { segment, offset }
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08}:{}", self.segment, self.offset)
    }
}

/// Why a reader jumped over part of the WAL.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SkipReason {
    /// The segments were deleted (truncation, byte cap) before being read.
    SegmentsDeleted,
    /// The bytes failed their checksum or do not form a record.
    Corruption,
}

/// A gap in what a reader delivered: records in `[from, to)` were lost.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Skipped {
    pub from: Position,
    pub to: Position,
    pub reason: SkipReason,
}

/// One record, or one gap, read from the WAL.
///
/// For a normal record `skipped` is `None` and `payload` holds the
/// decompressed record bytes (first byte = [`RecordType`]). For a gap,
/// `skipped` describes it and `payload` is empty (so `record_type` is `None`).
/// Acknowledging `end` is correct in both cases.
#[derive(Debug)]
pub struct Record<'a> {
    pub start: Position,
    pub end: Position,
    pub payload: &'a [u8],
    pub skipped: Option<Skipped>,
}

/// Read window chunk: large enough to amortise syscalls, small enough that a
/// lagging consumer does not pull a whole segment into memory.
const READ_CHUNK: usize = 256 << 10;
/// Refuse to decompress absurd sizes (a CRC-valid record can't claim this
/// unless written by a foreign tool).
const MAX_RECORD_BYTES: usize = 1 << 30;

/// Reads records from a WAL directory, starting at a position.
pub struct WalReader {
    dir: PathBuf,
    segment: u32,
    file: Option<File>,
    /// Segment bytes from offset `base`.
    buf: Vec<u8>,
    base: u64,
    /// Offset of the next record in `segment`.
    pos: u64,
    scratch: Vec<u8>,
    decoded: Vec<u8>,
    decoder: snap::raw::Decoder,
    /// The writer's in-memory copy of the newest records, if this reader
    /// runs in the writing process.
    tail: Option<Arc<WalTail>>,
    /// The chunk of the record last taken from `tail`, and its index.
    held: Option<(Arc<TailChunk>, usize)>,
    #[cfg(test)]
    pub(crate) from_tail: usize,
}

enum Step {
    Record {
        start: u64,
        end: u64,
        compressed: bool,
    },
    Skip(Skipped),
    AtEnd,
}

impl WalReader {
    /// Opens a reader that will return records starting at `start`. Nothing
    /// has to exist yet: a reader positioned at a future segment waits for it.
    pub fn open(wal_dir: &Path, start: Position) -> Result<WalReader, WalError> {
        if !wal_dir.is_dir() {
            return Err(WalError::Io {
                op: "open WAL directory",
                path: wal_dir.to_path_buf(),
                source: io::Error::new(io::ErrorKind::NotFound, "not a directory"),
            });
        }
        Ok(WalReader {
            dir: wal_dir.to_path_buf(),
            segment: start.segment,
            file: None,
            buf: Vec::new(),
            base: start.offset,
            pos: start.offset,
            scratch: Vec::new(),
            decoded: Vec::new(),
            decoder: snap::raw::Decoder::new(),
            tail: None,
            held: None,
            #[cfg(test)]
            from_tail: 0,
        })
    }

    /// Takes records the writer still holds from memory (see `tail`).
    pub(crate) fn with_tail(mut self, tail: Arc<WalTail>) -> WalReader {
        self.tail = Some(tail);
        self
    }

    /// Where the next record starts.
    pub fn position(&self) -> Position {
        Position::new(self.segment, self.pos)
    }

    /// The next record, a [`Skipped`] gap, or `Ok(None)` at the current end
    /// of the WAL (call again after the next commit).
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, WalError> {
        self.next_filtered(|_| true)
    }

    /// Like [`WalReader::next_record`], but records whose type `want` rejects
    /// are returned with an empty payload and without being decompressed
    /// (their type is read from the compressed bytes).
    pub fn next_filtered(
        &mut self,
        want: impl Fn(Option<RecordType>) -> bool,
    ) -> Result<Option<Record<'_>>, WalError> {
        match self.tail_lookup() {
            Lookup::AtHead => return Ok(None),
            Lookup::Record(chunk, i, r) => return Ok(Some(self.take_from_tail(chunk, i, r, want))),
            Lookup::Unknown => {}
        }
        match self.step()? {
            Step::AtEnd => Ok(None),
            Step::Skip(s) => Ok(Some(Record {
                start: s.from,
                end: s.to,
                payload: &[],
                skipped: Some(s),
            })),
            Step::Record {
                start,
                end,
                compressed,
            } => {
                let seg = self.segment;
                self.pos = end;
                let rec = |payload| Record {
                    start: Position::new(seg, start),
                    end: Position::new(seg, end),
                    payload,
                    skipped: None,
                };
                if !compressed {
                    let wanted = want(
                        self.scratch
                            .first()
                            .copied()
                            .and_then(RecordType::from_byte),
                    );
                    return Ok(Some(rec(if wanted { &self.scratch[..] } else { &[] })));
                }
                let peeked = format::peek_snappy_first_byte(&self.scratch);
                if let Some(t) = peeked {
                    if !want(RecordType::from_byte(t)) {
                        return Ok(Some(rec(&[])));
                    }
                }
                match decompress(&mut self.decoder, &self.scratch, &mut self.decoded) {
                    Ok(()) => Ok(Some(rec(&self.decoded[..]))),
                    Err(reason) => {
                        tracing::warn!(
                            segment = seg,
                            offset = start,
                            reason,
                            "undecodable WAL record skipped"
                        );
                        let s = Skipped {
                            from: Position::new(seg, start),
                            to: Position::new(seg, end),
                            reason: SkipReason::Corruption,
                        };
                        Ok(Some(Record {
                            start: s.from,
                            end: s.to,
                            payload: &[],
                            skipped: Some(s),
                        }))
                    }
                }
            }
        }
    }

    fn step(&mut self) -> Result<Step, WalError> {
        loop {
            if self.file.is_none() {
                if let Some(skip) = self.open_current()? {
                    return Ok(Step::Skip(skip));
                }
                if self.file.is_none() {
                    return Ok(Step::AtEnd);
                }
            }
            self.compact();
            match format::parse_record(&self.buf, self.base, self.pos, &mut self.scratch) {
                Parsed::Record { end, compressed } => {
                    return Ok(Step::Record {
                        start: self.pos,
                        end,
                        compressed,
                    });
                }
                Parsed::Corrupt {
                    at,
                    reason,
                    skip_to,
                } => return self.resync(at, reason, skip_to).map(Step::Skip),
                Parsed::Incomplete { need } => {
                    if self.fill(need)? {
                        continue;
                    }
                    if !self.has_successor() {
                        return Ok(Step::AtEnd);
                    }
                    // The writer finished this segment before creating the
                    // next one; read once more in case it did so after our read.
                    if self.fill(need)? {
                        continue;
                    }
                    let end_of_data = self.base + self.buf.len() as u64;
                    let from = Position::new(self.segment, self.pos);
                    self.advance_segment(self.segment.saturating_add(1));
                    if end_of_data > from.offset {
                        tracing::warn!(
                            segment = from.segment,
                            offset = from.offset,
                            "torn record at end of finished WAL segment skipped"
                        );
                        return Ok(Step::Skip(Skipped {
                            from,
                            to: self.position(),
                            reason: SkipReason::Corruption,
                        }));
                    }
                }
            }
        }
    }

    fn tail_lookup(&self) -> Lookup {
        let Some(tail) = &self.tail else {
            return Lookup::Unknown;
        };
        let pos = self.position();
        if let Some((chunk, i)) = &self.held {
            if let Some(&r) = chunk.record(i + 1).filter(|r| r.prev_end == pos) {
                return Lookup::Record(Arc::clone(chunk), i + 1, r);
            }
        }
        tail.lookup(pos)
    }

    /// Returns `r`, record `i` of `chunk`, which follows the current
    /// position, and leaves the file: a later read from it starts at the
    /// new position.
    fn take_from_tail(
        &mut self,
        chunk: Arc<TailChunk>,
        i: usize,
        r: TailRecord,
        want: impl Fn(Option<RecordType>) -> bool,
    ) -> Record<'_> {
        self.file = None;
        self.buf.clear();
        self.segment = r.end.segment;
        self.pos = r.end.offset;
        self.base = r.end.offset;
        // As the file reader reports it: a record in the next segment
        // starts at that segment's beginning.
        let start = if r.prev_end.segment == r.end.segment {
            r.prev_end
        } else {
            Position::new(r.end.segment, 0)
        };
        #[cfg(test)]
        {
            self.from_tail += 1;
        }
        let (chunk, _) = self.held.insert((chunk, i));
        let payload = chunk.payload(&r);
        let wanted = want(payload.first().copied().and_then(RecordType::from_byte));
        Record {
            start,
            end: r.end,
            payload: if wanted { payload } else { &[] },
            skipped: None,
        }
    }

    /// Opens the current segment, or finds out that it was deleted.
    fn open_current(&mut self) -> Result<Option<Skipped>, WalError> {
        let path = format::segment_path(&self.dir, self.segment);
        match File::open(&path) {
            Ok(mut f) => {
                f.seek(SeekFrom::Start(self.pos))
                    .map_err(WalError::io("seek WAL segment", &path))?;
                self.file = Some(f);
                self.buf.clear();
                self.base = self.pos;
                Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let segs = format::list_segments(&self.dir)
                    .map_err(WalError::io("list WAL segments", &self.dir))?;
                match segs.iter().find(|(i, _)| *i > self.segment) {
                    Some(&(next, _)) => {
                        let from = self.position();
                        self.advance_segment(next);
                        Ok(Some(Skipped {
                            from,
                            to: self.position(),
                            reason: SkipReason::SegmentsDeleted,
                        }))
                    }
                    // Not created yet: wait for the writer.
                    None => Ok(None),
                }
            }
            Err(e) => Err(WalError::io("open WAL segment", path)(e)),
        }
    }

    fn advance_segment(&mut self, next: u32) {
        self.segment = next;
        self.pos = 0;
        self.base = 0;
        self.buf.clear();
        self.file = None;
    }

    /// Skips damaged bytes: resumes right after a fragment whose data failed
    /// its checksum (a following record then validates by its own CRC), else
    /// at the next page start, until something parses as a record or the data
    /// runs out.
    fn resync(
        &mut self,
        at: u64,
        reason: &'static str,
        skip_to: Option<u64>,
    ) -> Result<Skipped, WalError> {
        tracing::warn!(
            segment = self.segment,
            offset = at,
            reason,
            "corrupt WAL record skipped"
        );
        let from = self.position();
        let mut candidate = skip_to.unwrap_or_else(|| format::next_page(at));
        loop {
            self.pos = candidate;
            self.compact();
            match format::parse_record(&self.buf, self.base, candidate, &mut self.scratch) {
                Parsed::Record { .. } => break,
                Parsed::Corrupt { at, skip_to, .. } => {
                    candidate = skip_to.unwrap_or_else(|| format::next_page(at))
                }
                Parsed::Incomplete { need } => {
                    if !self.fill(need)? {
                        break;
                    }
                }
            }
        }
        Ok(Skipped {
            from,
            to: self.position(),
            reason: SkipReason::Corruption,
        })
    }

    /// Drops consumed bytes from the window.
    fn compact(&mut self) {
        let consumed = self.pos.saturating_sub(self.base);
        if consumed == 0 {
            return;
        }
        let n = usize::try_from(consumed)
            .unwrap_or(usize::MAX)
            .min(self.buf.len());
        if n == self.buf.len() {
            // Keep the file offset consistent: a position past the buffered
            // bytes (e.g. a resync target) needs a seek.
            self.buf.clear();
            if self.pos > self.base + n as u64 {
                if let Some(f) = self.file.as_mut() {
                    if f.seek(SeekFrom::Start(self.pos)).is_ok() {
                        self.base = self.pos;
                        return;
                    }
                }
            }
            self.base += n as u64;
            return;
        }
        if n >= READ_CHUNK || n * 2 >= self.buf.len() {
            self.buf.drain(..n);
            self.base += n as u64;
        }
    }

    /// Reads more of the segment so that bytes up to offset `need` are
    /// buffered if the file has them. Returns whether new bytes arrived.
    fn fill(&mut self, need: u64) -> Result<bool, WalError> {
        let Some(f) = self.file.as_mut() else {
            return Ok(false);
        };
        let have_end = self.base + self.buf.len() as u64;
        let want = usize::try_from(need.saturating_sub(have_end)).unwrap_or(usize::MAX);
        let target = want.max(READ_CHUNK);
        // `read_to_end` fills spare capacity without zeroing it first: a
        // tailing reader polls after every commit, and zeroing a 1 MiB
        // chunk per poll showed up as 5 % of the agent's CPU.
        let before = self.buf.len();
        loop {
            match f.take(target as u64).read_to_end(&mut self.buf) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(WalError::io(
                        "read WAL segment",
                        format::segment_path(&self.dir, self.segment),
                    )(e));
                }
            }
        }
        Ok(self.buf.len() > before)
    }

    /// Whether a newer segment exists (so the current one is complete).
    fn has_successor(&self) -> bool {
        if format::segment_path(&self.dir, self.segment.saturating_add(1)).exists() {
            return true;
        }
        // Our segment may have been deleted together with its successors
        // while we held it open.
        if format::segment_path(&self.dir, self.segment).exists() {
            return false;
        }
        format::list_segments(&self.dir)
            .map(|s| s.iter().any(|(i, _)| *i > self.segment))
            .unwrap_or(false)
    }
}

fn decompress(
    dec: &mut snap::raw::Decoder,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), &'static str> {
    let len = snap::raw::decompress_len(input).map_err(|_| "bad snappy header")?;
    if len > MAX_RECORD_BYTES {
        return Err("record too large");
    }
    // Only the part not written before is zeroed: `decompress` overwrites
    // the first `len` bytes.
    out.truncate(len);
    out.resize(len, 0);
    let n = dec.decompress(input, out).map_err(|_| "bad snappy data")?;
    out.truncate(n);
    Ok(())
}
