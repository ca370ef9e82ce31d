//! Offline inspection and repair of a WAL directory (`tributary check wal`).
//!
//! [`inspect`] reads the latest checkpoint and every segment once and
//! reports, per segment, the records by type, samples, time range and any
//! damage (CRC failures, undecodable records, torn tails); and per consumer
//! cursor (`cursors`) how many bytes and samples it still has to send.
//!
//! [`repair`] cuts out exactly the damaged records and nothing else. A
//! damaged segment is rewritten with only its valid records, re-framed from
//! offset 0, into a temporary file that atomically replaces the original;
//! consumer cursors inside a rewritten segment are moved to the same record
//! boundary in the new layout (a cursor inside a cut region lands on the next
//! good record), so no consumer re-sends or skips anything. This is less
//! destructive than Prometheus's repair, which truncates at the first damage
//! and deletes every later segment. Repair refuses to run while an agent
//! holds the directory's lock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tributary_model::{SeriesRef, Timestamp};

use crate::checkpoint;
use crate::cursor_file::{self, CursorStore};
use crate::error::WalError;
use crate::format;
use crate::metrics::Metrics;
use crate::reader::{Position, SkipReason, WalReader};
use crate::record::{self, RecordType, RefSample};
use crate::writer::{sync_dir, SegmentWriter};

/// Records by type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCounts {
    pub series: u64,
    pub samples: u64,
    pub tombstones: u64,
    pub exemplars: u64,
    pub histograms: u64,
    pub metadata: u64,
    /// Empty records, unknown types and mmap markers.
    pub other: u64,
}

impl RecordCounts {
    fn count(&mut self, t: Option<RecordType>) {
        match t {
            Some(RecordType::Series) => self.series += 1,
            Some(RecordType::Samples) => self.samples += 1,
            Some(RecordType::Tombstones) => self.tombstones += 1,
            Some(RecordType::Exemplars) => self.exemplars += 1,
            Some(RecordType::HistogramSamples | RecordType::FloatHistogramSamples) => {
                self.histograms += 1
            }
            Some(RecordType::Metadata) => self.metadata += 1,
            Some(RecordType::MmapMarkers) | None => self.other += 1,
        }
    }

    fn add(&mut self, o: &RecordCounts) {
        self.series += o.series;
        self.samples += o.samples;
        self.tombstones += o.tombstones;
        self.exemplars += o.exemplars;
        self.histograms += o.histograms;
        self.metadata += o.metadata;
        self.other += o.other;
    }

    pub fn total(&self) -> u64 {
        self.series
            + self.samples
            + self.tombstones
            + self.exemplars
            + self.histograms
            + self.metadata
            + self.other
    }
}

/// A damaged byte range of a segment: records in it are unreadable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub segment: u32,
    /// First damaged byte.
    pub from: u64,
    /// Where reading resumes (the next good record or the segment's end).
    pub to: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct SegmentInfo {
    pub index: u32,
    pub bytes: u64,
    pub records: RecordCounts,
    pub samples: u64,
    /// Native histogram samples (integer and float).
    pub histogram_samples: u64,
    pub exemplars: u64,
    /// Series metadata entries.
    pub metadata: u64,
    pub min_time: Option<Timestamp>,
    pub max_time: Option<Timestamp>,
    pub damage: Vec<Damage>,
}

#[derive(Debug, Clone, Default)]
pub struct CheckpointInfo {
    /// The last segment the checkpoint covers (`checkpoint.NNNNNNNN`).
    pub index: u32,
    pub series: u64,
    /// Unreadable checkpoint records.
    pub corruptions: u64,
}

#[derive(Debug, Clone)]
pub struct ConsumerBacklog {
    pub name: String,
    pub position: Position,
    /// WAL bytes after the cursor.
    pub backlog_bytes: u64,
    /// Samples after the cursor.
    pub backlog_samples: u64,
    /// The cursor points before the oldest segment: data it never
    /// acknowledged was deleted (or the cursor file is from another WAL).
    pub before_oldest_segment: bool,
}

/// What [`inspect`] found.
#[derive(Debug, Clone, Default)]
pub struct WalInspection {
    pub wal_dir: PathBuf,
    pub checkpoint: Option<CheckpointInfo>,
    pub segments: Vec<SegmentInfo>,
    /// Segment numbers missing between the first and the last segment.
    pub missing_segments: Vec<u32>,
    pub records: RecordCounts,
    /// Distinct series defined by the checkpoint and the segments.
    pub series: u64,
    pub samples: u64,
    pub histogram_samples: u64,
    pub exemplars: u64,
    pub metadata: u64,
    pub min_time: Option<Timestamp>,
    pub max_time: Option<Timestamp>,
    pub consumers: Vec<ConsumerBacklog>,
    /// The cursor file is there but holds no readable cursors: the next
    /// start sends every endpoint the WAL from its oldest record.
    pub cursors_damaged: bool,
}

impl WalInspection {
    /// Every damaged range, oldest first.
    pub fn damage(&self) -> impl Iterator<Item = &Damage> {
        self.segments.iter().flat_map(|s| s.damage.iter())
    }

    pub fn is_clean(&self) -> bool {
        self.damage().next().is_none()
            && self.missing_segments.is_empty()
            && self.checkpoint.as_ref().is_none_or(|c| c.corruptions == 0)
    }
}

/// What [`repair`] did.
#[derive(Debug, Clone, Default)]
pub struct RepairReport {
    /// Segments rewritten without their damaged records.
    pub segments_rewritten: Vec<u32>,
    /// Damaged bytes removed.
    pub bytes_cut: u64,
    /// Valid-framed records dropped because their payload was undecodable.
    pub records_dropped: u64,
    /// Cursors moved to the rewritten layout: (consumer, old, new).
    pub cursors_moved: Vec<(String, Position, Position)>,
}

/// Finds the WAL segments and the cursor file for `dir`, which may be the
/// storage directory (`--storage.agent.path`) or its `wal` subdirectory.
fn locate(dir: &Path) -> Result<(PathBuf, PathBuf), WalError> {
    let nested = dir.join("wal");
    if nested.is_dir() {
        return Ok((dir.to_path_buf(), nested));
    }
    if dir.is_dir() {
        let storage = dir
            .parent()
            .map_or_else(|| dir.to_path_buf(), Path::to_path_buf);
        return Ok((storage, dir.to_path_buf()));
    }
    Err(WalError::Io {
        op: "open WAL directory",
        path: dir.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
    })
}

/// Reads the whole WAL under `dir` (storage or `wal` directory) without
/// changing anything.
pub fn inspect(dir: &Path) -> Result<WalInspection, WalError> {
    let (storage_dir, wal_dir) = locate(dir)?;
    let mut out = WalInspection {
        wal_dir: wal_dir.clone(),
        ..WalInspection::default()
    };
    let mut refs: BTreeSet<SeriesRef> = BTreeSet::new();
    let mut corruptions = 0;
    let cp = checkpoint::read_latest_checkpoint(&wal_dir, &mut corruptions, |r, _| {
        refs.insert(r);
    })?;
    if let Some(index) = cp {
        out.checkpoint = Some(CheckpointInfo {
            index,
            series: refs.len() as u64,
            corruptions,
        });
    }
    let segs =
        format::list_segments(&wal_dir).map_err(WalError::io("list WAL segments", &wal_dir))?;
    // Sample counts at record ends, per segment, for the backlog figures.
    let mut sample_marks: BTreeMap<u32, Vec<(u64, u64)>> = BTreeMap::new();
    for &(index, bytes) in &segs {
        let (info, marks) = scan_segment(&wal_dir, index, bytes, &mut refs)?;
        sample_marks.insert(index, marks);
        out.records.add(&info.records);
        out.samples += info.samples;
        out.histogram_samples += info.histogram_samples;
        out.exemplars += info.exemplars;
        out.metadata += info.metadata;
        out.min_time = min_opt(out.min_time, info.min_time);
        out.max_time = max_opt(out.max_time, info.max_time);
        out.segments.push(info);
    }
    out.missing_segments = missing_between(&segs);
    out.series = refs.len() as u64;
    let persisted = cursor_file::read_persisted(&storage_dir);
    out.cursors_damaged = persisted.damaged;
    out.consumers = persisted
        .cursors
        .into_iter()
        .map(|(name, position)| backlog(name, position, &segs, &out.segments, &sample_marks))
        .collect();
    Ok(out)
}

fn min_opt(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) | (None, x) => x,
    }
}

fn max_opt(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) | (None, x) => x,
    }
}

fn missing_between(segs: &[(u32, u64)]) -> Vec<u32> {
    segs.windows(2)
        .flat_map(|w| match w {
            [(a, _), (b, _)] => a.saturating_add(1)..*b,
            _ => 0..0,
        })
        .collect()
}

/// Reads one segment. Returns its summary and, for every record, (end
/// offset, samples up to and including it).
fn scan_segment(
    wal_dir: &Path,
    index: u32,
    bytes: u64,
    refs: &mut BTreeSet<SeriesRef>,
) -> Result<(SegmentInfo, Vec<(u64, u64)>), WalError> {
    let mut info = SegmentInfo {
        index,
        bytes,
        ..SegmentInfo::default()
    };
    let mut marks = Vec::new();
    let mut reader = WalReader::open(wal_dir, Position::new(index, 0))?;
    let mut series = Vec::new();
    let mut samples: Vec<RefSample> = Vec::new();
    let mut histograms = Vec::new();
    let mut exemplars = Vec::new();
    let mut metadata = Vec::new();
    loop {
        let Some(rec) = reader.next_record()? else {
            // The newest segment: a trailing partial record is a torn write.
            if reader.position().segment == index && reader.position().offset < bytes {
                info.damage.push(Damage {
                    segment: index,
                    from: reader.position().offset,
                    to: bytes,
                    reason: "torn record at the end of the newest segment".into(),
                });
            }
            break;
        };
        if rec.start.segment != index {
            break;
        }
        if let Some(skip) = rec.skipped {
            let to = if skip.to.segment == index {
                skip.to.offset.min(bytes)
            } else {
                bytes
            };
            let reason = match skip.reason {
                SkipReason::Corruption => "checksum or framing error",
                SkipReason::SegmentsDeleted => "segment vanished while reading",
            };
            info.damage.push(Damage {
                segment: index,
                from: skip.from.offset,
                to,
                reason: reason.into(),
            });
            if skip.to.segment != index {
                break;
            }
            continue;
        }
        let t = record::record_type(rec.payload);
        info.records.count(t);
        let undecodable = match t {
            Some(RecordType::Series) => {
                series.clear();
                let r = record::decode_series(rec.payload, &mut series);
                refs.extend(series.iter().map(|(r, _)| *r));
                r.err()
            }
            Some(RecordType::Samples) => {
                samples.clear();
                let r = record::decode_samples(rec.payload, &mut samples);
                info.samples += samples.len() as u64;
                for s in &samples {
                    info.min_time = min_opt(info.min_time, Some(s.t));
                    info.max_time = max_opt(info.max_time, Some(s.t));
                }
                r.err()
            }
            Some(RecordType::HistogramSamples | RecordType::FloatHistogramSamples) => {
                histograms.clear();
                let r = record::decode_histograms(rec.payload, &mut histograms);
                info.histogram_samples += histograms.len() as u64;
                for h in &histograms {
                    info.min_time = min_opt(info.min_time, Some(h.t));
                    info.max_time = max_opt(info.max_time, Some(h.t));
                }
                r.err()
            }
            Some(RecordType::Exemplars) => {
                exemplars.clear();
                let r = record::decode_exemplars(rec.payload, &mut exemplars);
                info.exemplars += exemplars.len() as u64;
                r.err()
            }
            Some(RecordType::Metadata) => {
                metadata.clear();
                let r = record::decode_metadata(rec.payload, &mut metadata);
                info.metadata += metadata.len() as u64;
                r.err()
            }
            _ => None,
        };
        if let Some(e) = undecodable {
            info.damage.push(Damage {
                segment: index,
                from: rec.start.offset,
                to: rec.end.offset,
                reason: format!("undecodable record: {e}"),
            });
        }
        marks.push((rec.end.offset, info.samples));
    }
    Ok((info, marks))
}

fn backlog(
    name: String,
    position: Position,
    segs: &[(u32, u64)],
    infos: &[SegmentInfo],
    marks: &BTreeMap<u32, Vec<(u64, u64)>>,
) -> ConsumerBacklog {
    let mut backlog_bytes = 0;
    let mut backlog_samples = 0;
    for (&(index, bytes), info) in segs.iter().zip(infos) {
        if index < position.segment {
            continue;
        }
        if index > position.segment {
            backlog_bytes += bytes;
            backlog_samples += info.samples;
            continue;
        }
        backlog_bytes += bytes.saturating_sub(position.offset);
        let acked = marks
            .get(&index)
            .and_then(|m| {
                m.iter()
                    .take_while(|(end, _)| *end <= position.offset)
                    .last()
            })
            .map_or(0, |(_, n)| *n);
        backlog_samples += info.samples.saturating_sub(acked);
    }
    ConsumerBacklog {
        name,
        position,
        backlog_bytes,
        backlog_samples,
        before_oldest_segment: segs
            .first()
            .is_some_and(|(first, _)| position.segment < *first),
    }
}

/// Cuts the damaged records out of every segment of the WAL under `dir`
/// (see the module docs). Fails with [`WalError::Locked`] while an agent
/// runs on the directory.
pub fn repair(dir: &Path) -> Result<RepairReport, WalError> {
    let (storage_dir, wal_dir) = locate(dir)?;
    let _lock = lock_for_repair(&storage_dir)?;
    let found = inspect(dir)?;
    let mut report = RepairReport::default();
    let (mut cursor_store, persisted) = CursorStore::open(&storage_dir)?;
    let mut cursors = persisted.cursors;
    let newest = found.segments.last().map(|s| s.index);
    for seg in found.segments.iter().filter(|s| !s.damage.is_empty()) {
        let only_torn_tail = Some(seg.index) == newest
            && seg.damage.len() == 1
            && seg.damage.iter().all(|d| d.to == seg.bytes);
        if only_torn_tail {
            cut_tail(&wal_dir, seg, &mut report)?;
        } else {
            rewrite_segment(&wal_dir, seg, &mut cursors, &mut report)?;
        }
    }
    if !report.cursors_moved.is_empty() {
        cursor_store.store(cursors)?;
    }
    Ok(report)
}

/// Holds the storage lock for the duration of a repair.
fn lock_for_repair(storage_dir: &Path) -> Result<fs::File, WalError> {
    let path = storage_dir.join("lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(WalError::io("open lock file", &path))?;
    match fs4::FileExt::try_lock(&f) {
        Ok(()) => Ok(f),
        Err(fs4::TryLockError::WouldBlock) => Err(WalError::Locked(storage_dir.to_path_buf())),
        Err(fs4::TryLockError::Error(e)) => Err(WalError::io("lock", &path)(e)),
    }
}

fn cut_tail(wal_dir: &Path, seg: &SegmentInfo, report: &mut RepairReport) -> Result<(), WalError> {
    let Some(d) = seg.damage.first() else {
        return Ok(());
    };
    let path = format::segment_path(wal_dir, seg.index);
    OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| {
            f.set_len(d.from)?;
            f.sync_all()
        })
        .map_err(WalError::io("cut WAL segment tail", &path))?;
    report.bytes_cut += d.to - d.from;
    report.segments_rewritten.push(seg.index);
    Ok(())
}

/// Rewrites a segment with its valid records only and remaps cursors that
/// point into it.
fn rewrite_segment(
    wal_dir: &Path,
    seg: &SegmentInfo,
    cursors: &mut BTreeMap<String, Position>,
    report: &mut RepairReport,
) -> Result<(), WalError> {
    let tmp_dir = wal_dir.join("repair.tmp");
    if tmp_dir.exists() {
        fs::remove_dir_all(&tmp_dir).map_err(WalError::io("clear repair directory", &tmp_dir))?;
    }
    fs::create_dir(&tmp_dir).map_err(WalError::io("create repair directory", &tmp_dir))?;
    // (old record end, new record end) for every kept record.
    let mut ends: Vec<(u64, u64)> = Vec::new();
    {
        let metrics = Arc::new(Metrics::new());
        // One huge segment: records must stay in this one file.
        let mut writer = SegmentWriter::create(&tmp_dir, seg.index, u64::MAX / 4, true, metrics)?;
        let mut reader = WalReader::open(wal_dir, Position::new(seg.index, 0))?;
        let (mut series, mut samples) = (Vec::new(), Vec::new());
        while let Some(rec) = reader.next_record()? {
            if rec.start.segment != seg.index {
                break;
            }
            if rec.skipped.is_some() {
                if rec.end.segment != seg.index {
                    break;
                }
                continue;
            }
            let valid = match record::record_type(rec.payload) {
                Some(RecordType::Series) => {
                    series.clear();
                    record::decode_series(rec.payload, &mut series).is_ok()
                }
                Some(RecordType::Samples) => {
                    samples.clear();
                    record::decode_samples(rec.payload, &mut samples).is_ok()
                }
                Some(RecordType::HistogramSamples | RecordType::FloatHistogramSamples) => {
                    record::decode_histograms(rec.payload, &mut Vec::new()).is_ok()
                }
                Some(RecordType::Exemplars) => {
                    record::decode_exemplars(rec.payload, &mut Vec::new()).is_ok()
                }
                Some(RecordType::Metadata) => {
                    record::decode_metadata(rec.payload, &mut Vec::new()).is_ok()
                }
                _ => true,
            };
            if !valid {
                report.records_dropped += 1;
                continue;
            }
            let old_end = rec.end.offset;
            let new_end = writer.write_records(&[rec.payload])?;
            ends.push((old_end, new_end.offset));
        }
        writer.sync()?;
    }
    let new_len = ends.last().map_or(0, |(_, n)| *n);
    let from = format::segment_path(&tmp_dir, seg.index);
    let to = format::segment_path(wal_dir, seg.index);
    fs::rename(&from, &to).map_err(WalError::io("replace WAL segment", &to))?;
    sync_dir(wal_dir)?;
    let _ = fs::remove_dir_all(&tmp_dir);
    report.bytes_cut += seg.damage.iter().map(|d| d.to - d.from).sum::<u64>();
    report.segments_rewritten.push(seg.index);
    tracing::warn!(
        segment = seg.index,
        old_bytes = seg.bytes,
        new_bytes = new_len,
        "rewrote damaged WAL segment"
    );

    for (name, pos) in cursors.iter_mut() {
        if pos.segment != seg.index {
            continue;
        }
        // The new end of the last kept record that ended at or before the
        // cursor: everything the consumer acknowledged, and nothing more.
        let new_offset = ends
            .iter()
            .take_while(|(old, _)| *old <= pos.offset)
            .last()
            .map_or(0, |(_, new)| *new);
        let new = Position::new(seg.index, new_offset);
        if new != *pos {
            report.cursors_moved.push((name.clone(), *pos, new));
            *pos = new;
        }
    }
    Ok(())
}

impl fmt::Display for WalInspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "WAL directory: {}", self.wal_dir.display())?;
        match &self.checkpoint {
            Some(c) => writeln!(
                f,
                "checkpoint.{:08}: {} series, {} corrupt records",
                c.index, c.series, c.corruptions
            )?,
            None => writeln!(f, "no checkpoint")?,
        }
        writeln!(
            f,
            "segments: {} ({} bytes){}",
            self.segments.len(),
            self.segments.iter().map(|s| s.bytes).sum::<u64>(),
            if self.missing_segments.is_empty() {
                String::new()
            } else {
                format!(", missing {:?}", self.missing_segments)
            }
        )?;
        for s in &self.segments {
            writeln!(
                f,
                "  {:08}: {} bytes, {} records ({} series, {} samples, {} other), {} samples, time {}..{}",
                s.index,
                s.bytes,
                s.records.total(),
                s.records.series,
                s.records.samples,
                s.records.total() - s.records.series - s.records.samples,
                s.samples,
                s.min_time.map_or("-".into(), |t| t.to_string()),
                s.max_time.map_or("-".into(), |t| t.to_string()),
            )?;
        }
        writeln!(
            f,
            "records: {} series, {} samples, {} tombstones, {} exemplars, {} histograms, {} metadata, {} other",
            self.records.series,
            self.records.samples,
            self.records.tombstones,
            self.records.exemplars,
            self.records.histograms,
            self.records.metadata,
            self.records.other
        )?;
        writeln!(
            f,
            "series: {}, samples: {}, histogram samples: {}, exemplars: {}, metadata entries: {}",
            self.series, self.samples, self.histogram_samples, self.exemplars, self.metadata
        )?;
        for c in &self.consumers {
            writeln!(
                f,
                "consumer {:?}: at {}, backlog {} bytes / {} samples{}",
                c.name,
                c.position,
                c.backlog_bytes,
                c.backlog_samples,
                if c.before_oldest_segment {
                    " (points before the oldest segment: unsent data was deleted)"
                } else {
                    ""
                }
            )?;
        }
        if self.cursors_damaged {
            writeln!(
                f,
                "consumer cursor file damaged: at the next start every endpoint sends the WAL from its oldest record"
            )?;
        }
        let damage: Vec<&Damage> = self.damage().collect();
        if damage.is_empty() {
            writeln!(f, "no corruption found")?;
        }
        for d in damage {
            writeln!(
                f,
                "CORRUPT segment {:08} bytes {}..{}: {}",
                d.segment, d.from, d.to, d.reason
            )?;
        }
        Ok(())
    }
}
