//! The adapter between a queue manager and the on-disk WAL: reads records
//! from the endpoint's durable cursor, first announcing every series
//! defined before the cursor (checkpoint + earlier segments), and
//! acknowledges through the WAL consumer.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tributary_model::{Labels, SeriesRef};
use tributary_wal::record::{self, RecordType, RefSample};
use tributary_wal::{AgentStorage, Consumer, Position, WalError, WalReader};

use crate::source::{Acker, DecodedRecord, RecordKind, RecordSource, SourceError};

pub struct WalSource {
    storage: Arc<AgentStorage>,
    consumer: Consumer,
    reader: WalReader,
    /// Series defined before the cursor, handed out as the first record.
    bootstrap: Option<Vec<(SeriesRef, Labels)>>,
    commits: watch::Receiver<u64>,
    samples: Vec<RefSample>,
}

impl WalSource {
    /// Opens the consumer `name` and positions a reader at its cursor.
    pub fn open(storage: Arc<AgentStorage>, name: &str) -> Result<WalSource, WalError> {
        let consumer = storage.consumer(name)?;
        let start = consumer.position();
        let mut series = Vec::new();
        tributary_wal::load_series_before(storage.wal_dir(), start, |r, l| series.push((r, l)))?;
        // Share the in-memory label buffers where the storage still has them.
        for (r, l) in series.iter_mut() {
            if let Some(shared) = storage.series_labels(*r) {
                *l = shared;
            }
        }
        let reader = WalReader::open(storage.wal_dir(), start)?;
        let commits = storage.commit_watch();
        Ok(WalSource {
            storage,
            consumer,
            reader,
            bootstrap: Some(series),
            commits,
            samples: Vec::new(),
        })
    }
}

/// Decodes one record payload into `out`, sharing label buffers with the
/// storage's live series where possible.
fn decode(storage: &AgentStorage, samples: &mut Vec<RefSample>, payload: &[u8], out: &mut DecodedRecord) {
    match record::record_type(payload) {
        Some(RecordType::Series) => {
            out.kind = RecordKind::Series;
            if let Err(e) = record::decode_series(payload, &mut out.series) {
                out.decode_error = Some(e.to_string());
                return;
            }
            for (r, l) in out.series.iter_mut() {
                if let Some(shared) = storage.series_labels(*r) {
                    *l = shared;
                }
            }
        }
        Some(RecordType::Samples) => {
            out.kind = RecordKind::Samples;
            samples.clear();
            if let Err(e) = record::decode_samples(payload, samples) {
                out.decode_error = Some(e.to_string());
                return;
            }
            out.samples.extend(samples.iter().map(|s| (s.series, s.t, s.v)));
        }
        _ => out.kind = RecordKind::Other,
    }
}

impl RecordSource for WalSource {
    type Position = Position;

    fn next_record(&mut self, out: &mut DecodedRecord) -> Result<Option<Position>, SourceError> {
        out.clear();
        if let Some(series) = self.bootstrap.take() {
            out.kind = RecordKind::Series;
            out.series = series;
            return Ok(Some(self.consumer.position()));
        }
        let rec = match self.reader.next_record() {
            Ok(None) => return Ok(None),
            Ok(Some(rec)) => rec,
            Err(e) => return Err(SourceError::Read(e.to_string())),
        };
        let end = rec.end;
        if let Some(skipped) = rec.skipped {
            tracing::warn!(consumer = self.consumer.name(), from = %skipped.from, to = %skipped.to, reason = ?skipped.reason, "WAL records skipped");
            return Ok(Some(end));
        }
        decode(&self.storage, &mut self.samples, rec.payload, out);
        Ok(Some(end))
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
}
