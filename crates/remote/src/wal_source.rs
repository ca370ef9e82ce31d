//! The adapter between a queue manager and the on-disk WAL: reads records
//! from the endpoint's durable cursor and acknowledges through the WAL
//! consumer. Labels are not read from Series records: the storage's label
//! store holds every series that still has data in the WAL, so a reader
//! starting (or jumping) anywhere resolves every ref it meets without
//! re-reading the checkpoint and earlier segments.
//!
//! Two things move the reader forward past data it has not read: forced
//! truncation (the global byte cap or `max_time` deleted the segments) and
//! the consumer's own byte cap (the WAL moved its cursor). In both cases, as
//! at start, the metadata the storage knows is announced first, since the
//! skipped Metadata records will not be read.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tributary_model::{MetricType, SharedLabelStore};
use tributary_wal::record::{self, RecordType, RefSample};
use tributary_wal::{AgentStorage, Consumer, Position, SkipReason, WalError, WalReader};

use crate::encode::MetricMetadata;
use crate::source::{Acker, DecodedRecord, RecordKind, RecordSource, SourceError};

/// Series per announced metadata record: what is held at once while the
/// known metadata is handed out (16 bytes a series).
const ANNOUNCE_PAGE: usize = 10_000;

/// `last` if it says the same, else a new value that becomes `last`:
/// consecutive series of one family share one allocation.
fn shared_metadata(
    last: &mut Option<Arc<MetricMetadata>>,
    kind: MetricType,
    unit: &str,
    help: &str,
) -> Arc<MetricMetadata> {
    if let Some(m) = last {
        if m.kind == kind && m.unit == unit && m.help == help {
            return Arc::clone(m);
        }
    }
    let m = Arc::new(MetricMetadata {
        kind,
        help: help.to_string(),
        unit: unit.to_string(),
    });
    *last = Some(Arc::clone(&m));
    m
}

pub struct WalSource {
    storage: Arc<AgentStorage>,
    consumer: Consumer,
    reader: WalReader,
    /// Where the announcement of the known metadata goes on (a series
    /// slot), while it is still to be handed out.
    announce: Option<usize>,
    commits: watch::Receiver<u64>,
    samples: Vec<RefSample>,
    /// The consumer's jumps this reader has followed.
    jumps: u64,
}

impl WalSource {
    /// Opens the consumer `name` and positions a reader at its cursor.
    pub fn open(storage: Arc<AgentStorage>, name: &str) -> Result<WalSource, WalError> {
        let consumer = storage.consumer(name)?;
        let jumps = consumer.jumps();
        let start = consumer.position();
        let reader = storage.reader(start)?;
        let commits = storage.commit_watch();
        Ok(WalSource {
            storage,
            consumer,
            reader,
            announce: Some(0),
            commits,
            samples: Vec::new(),
            jumps,
        })
    }
}

/// Decodes one record payload into `out`.
fn decode(samples: &mut Vec<RefSample>, payload: &[u8], out: &mut DecodedRecord) {
    match record::record_type(payload) {
        Some(RecordType::Series) => out.kind = RecordKind::Series,
        Some(RecordType::Samples) => {
            out.kind = RecordKind::Samples;
            samples.clear();
            if let Err(e) = record::decode_samples(payload, samples) {
                out.decode_error = Some(e.to_string());
                return;
            }
            out.samples
                .extend(samples.iter().map(|s| (s.series, s.t, s.v)));
        }
        Some(RecordType::HistogramSamples | RecordType::FloatHistogramSamples) => {
            out.kind = RecordKind::Histograms;
            let mut hs = Vec::new();
            if let Err(e) = record::decode_histograms(payload, &mut hs) {
                out.decode_error = Some(e.to_string());
                return;
            }
            out.histograms
                .extend(hs.into_iter().map(|h| (h.series, h.t, h.h)));
        }
        Some(RecordType::Exemplars) => {
            out.kind = RecordKind::Exemplars;
            let mut xs = Vec::new();
            if let Err(e) = record::decode_exemplars(payload, &mut xs) {
                out.decode_error = Some(e.to_string());
                return;
            }
            out.exemplars
                .extend(xs.into_iter().map(|x| (x.series, x.t, x.v, x.labels)));
        }
        Some(RecordType::Metadata) => {
            out.kind = RecordKind::Metadata;
            let mut ms = Vec::new();
            if let Err(e) = record::decode_metadata(payload, &mut ms) {
                out.decode_error = Some(e.to_string());
                return;
            }
            let mut last = None;
            out.metadata.extend(ms.iter().map(|m| {
                let meta = shared_metadata(&mut last, m.kind, &m.unit, &m.help);
                (m.series, meta)
            }));
        }
        _ => out.kind = RecordKind::Other,
    }
}

impl WalSource {
    /// Fills `out` with one page of the metadata the storage knows of its
    /// live series, from slot `from` on; returns where the next page starts.
    fn announce_metadata(&self, out: &mut DecodedRecord, from: usize) -> Option<usize> {
        out.clear();
        out.kind = RecordKind::Metadata;
        let mut last = None;
        self.storage
            .live_metadata(from, ANNOUNCE_PAGE, |r, kind, unit, help| {
                let m = shared_metadata(&mut last, kind, unit, help);
                out.metadata.push((r, m));
            })
    }
}

impl RecordSource for WalSource {
    type Position = Position;

    fn next_record(&mut self, out: &mut DecodedRecord) -> Result<Option<Position>, SourceError> {
        out.clear();
        if let Some(from) = self.announce {
            self.announce = self.announce_metadata(out, from);
            return Ok(Some(self.reader.position()));
        }
        let jumps = self.consumer.jumps();
        if jumps != self.jumps {
            self.jumps = jumps;
            let acked = self.consumer.position();
            if acked > self.reader.position() {
                // The byte cap or a forced truncation skipped data.
                tracing::warn!(consumer = self.consumer.name(), from = %self.reader.position(), to = %acked, "WAL cursor moved past unsent data (byte cap or retention); resuming there");
                self.reader = self
                    .storage
                    .reader(acked)
                    .map_err(|e| SourceError::Read(e.to_string()))?;
                self.announce = self.announce_metadata(out, 0);
                return Ok(Some(acked));
            }
        }
        let rec = match self.reader.next_record() {
            Ok(None) => return Ok(None),
            Ok(Some(rec)) => rec,
            Err(e) => return Err(SourceError::Read(e.to_string())),
        };
        let end = rec.end;
        if let Some(skipped) = rec.skipped {
            tracing::warn!(consumer = self.consumer.name(), from = %skipped.from, to = %skipped.to, reason = ?skipped.reason, "WAL records skipped");
            if skipped.reason == SkipReason::SegmentsDeleted {
                self.announce = self.announce_metadata(out, 0);
            }
            return Ok(Some(end));
        }
        decode(&mut self.samples, rec.payload, out);
        Ok(Some(end))
    }

    fn label_store(&self) -> SharedLabelStore {
        self.storage.label_store()
    }

    fn acker(&self) -> Acker<Position> {
        let consumer = self.consumer.clone();
        Arc::new(move |p| consumer.ack(p))
    }

    async fn wait_for_data(&mut self, max: Duration) {
        let _ = tokio::time::timeout(max, self.commits.changed()).await;
    }

    fn current_segment(&self) -> Option<u64> {
        Some(u64::from(self.reader.position().segment))
    }

    fn series_gc_generation(&self) -> u64 {
        self.storage.series_gc_generation()
    }

    fn retain_live<V>(&self, map: &mut tributary_model::RefMap<V>) {
        self.storage.retain_live(map);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use prometheus_client::registry::Registry;
    use tributary_model::{Labels, Storage};
    use tributary_wal::WalOptions;

    fn open(dir: &std::path::Path, opts: WalOptions) -> Arc<AgentStorage> {
        AgentStorage::open(dir, opts, &mut Registry::default()).unwrap()
    }

    fn commit(wal: &AgentStorage, t: i64) {
        let mut app = wal.appender();
        let r = app
            .series(&Labels::from_pairs([("__name__", "m")]))
            .unwrap();
        app.append(r, t, t as f64).unwrap();
        app.commit().unwrap();
    }

    /// Reads to the current end of the WAL: the kinds of the records read,
    /// the samples' times, and the position after the last one.
    fn drain(src: &mut WalSource) -> (Vec<RecordKind>, Vec<i64>, Option<Position>) {
        let mut out = DecodedRecord::default();
        let (mut kinds, mut times, mut last) = (Vec::new(), Vec::new(), None);
        for _ in 0..10_000 {
            let Some(p) = src.next_record(&mut out).unwrap() else {
                break;
            };
            kinds.push(out.kind);
            times.extend(out.samples.iter().map(|s| s.1));
            last = Some(p);
        }
        (kinds, times, last)
    }

    /// A reader that has read everything is at the end of the segment a
    /// truncation then deletes; the cursor moves to the next segment's
    /// start. That skips nothing: no jump, no second announcement.
    #[test]
    fn a_truncation_behind_a_caught_up_reader_skips_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path(), WalOptions::default());
        let mut src = WalSource::open(Arc::clone(&wal), "rw").unwrap();
        commit(&wal, 1_000);
        let (kinds, times, end) = drain(&mut src);
        assert_eq!(kinds.first(), Some(&RecordKind::Metadata));
        assert_eq!(times, [1_000]);
        let consumer = wal.consumer("rw").unwrap();
        consumer.ack(end.unwrap());

        let stats = wal.truncate_at(i64::MAX / 2).unwrap();
        assert_eq!(stats.segments_deleted, 1);
        assert!(consumer.position() > end.unwrap());
        let (kinds, _, _) = drain(&mut src);
        assert_eq!(kinds, []);

        commit(&wal, 2_000);
        let (kinds, times, _) = drain(&mut src);
        assert!(!kinds.contains(&RecordKind::Metadata), "{kinds:?}");
        assert_eq!(times, [2_000]);
    }

    /// The consumer's byte cap moves its cursor past data its reader has
    /// not read: the reader resumes there and announces the metadata first.
    #[test]
    fn a_cap_jump_resumes_at_the_cursor_after_an_announcement() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            segment_size: tributary_wal::PAGE_SIZE,
            max_bytes_per_consumer: Some(1),
            ..WalOptions::default()
        };
        let wal = open(dir.path(), opts);
        let mut src = WalSource::open(Arc::clone(&wal), "rw").unwrap();
        let (kinds, _, _) = drain(&mut src);
        assert_eq!(kinds, [RecordKind::Metadata]);
        for t in 0..4_000 {
            commit(&wal, t);
        }
        wal.maintain_now();
        let cursor = wal.consumer("rw").unwrap().position();
        assert!(cursor.segment > 0, "the cap did not move the cursor");
        commit(&wal, 10_000);

        let (kinds, times, _) = drain(&mut src);
        assert_eq!(kinds.first(), Some(&RecordKind::Metadata));
        // What the segment the cursor moved to holds, and what came after.
        let first = times[0];
        assert!(first > 0, "read what the cap skipped");
        let expected: Vec<i64> = (first..4_000).chain([10_000]).collect();
        assert_eq!(times, expected);
    }
}
