//! The queue manager's view of the WAL.
//!
//! Keeping this a small trait lets the queue logic (series cache, sharding,
//! acknowledgement) be tested against an in-memory log, and confines every
//! detail of the on-disk format to the adapter in [`crate::wal_source`].

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tributary_model::{Labels, NativeHistogram, RefMap, SeriesRef, SharedLabelStore, Timestamp};

use crate::encode::MetricMetadata;

/// Acknowledges a WAL position (see [`RecordSource::acker`]).
pub type Acker<P> = Arc<dyn Fn(P) + Send + Sync>;

/// One record, decoded into reused buffers.
#[derive(Debug, Default)]
pub struct DecodedRecord {
    pub kind: RecordKind,
    pub samples: Vec<(SeriesRef, Timestamp, f64)>,
    pub histograms: Vec<(SeriesRef, Timestamp, NativeHistogram)>,
    /// (series, time, value, exemplar labels).
    pub exemplars: Vec<(SeriesRef, Timestamp, f64, Labels)>,
    /// The latest metadata of series (from Metadata records, and for the
    /// series announced at start, from the storage's memory).
    pub metadata: Vec<(SeriesRef, Arc<MetricMetadata>)>,
    /// Set when the record could not be decoded: it is skipped (counted in
    /// `record_decode_failures_total`) but its position still advances.
    pub decode_error: Option<String>,
}

impl DecodedRecord {
    pub fn clear(&mut self) {
        self.kind = RecordKind::Other;
        self.samples.clear();
        self.histograms.clear();
        self.exemplars.clear();
        self.metadata.clear();
        self.decode_error = None;
    }
}

/// What a record carried (for `records_read_total{type}`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Series,
    Samples,
    Histograms,
    Exemplars,
    Metadata,
    /// Anything the queue does not forward (tombstones, …).
    #[default]
    Other,
}

/// Why reading the WAL failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The record could not be decoded; it is skipped and counted.
    #[error("decoding WAL record: {0}")]
    Decode(String),
    /// The WAL could not be read; the watcher waits and retries.
    #[error("reading WAL: {0}")]
    Read(String),
}

/// A durable, resumable reader of the WAL for one consumer.
pub trait RecordSource: Send + 'static {
    /// A position in the WAL (the end of a record).
    type Position: Copy + Debug + Send + Sync + 'static;

    /// Reads the next record after the previous one into `out`, returning
    /// the position just past it; `Ok(None)` at the current end of the log.
    /// The first record returned carries the metadata known of the series
    /// defined before the consumer's cursor (their Metadata records will not
    /// be read). Series records carry nothing: labels are in
    /// [`RecordSource::label_store`].
    fn next_record(
        &mut self,
        out: &mut DecodedRecord,
    ) -> Result<Option<Self::Position>, SourceError>;

    /// The label sets of every series whose records can still be read,
    /// by ref.
    fn label_store(&self) -> SharedLabelStore;

    /// A handle, callable from any shard, that persists "everything up to
    /// `pos` is done"; after a restart reading resumes from the last
    /// acknowledged position.
    fn acker(&self) -> Acker<Self::Position>;

    /// Waits until new records may be available (a commit happened) or
    /// `max` elapsed.
    fn wait_for_data(&mut self, max: Duration) -> impl Future<Output = ()> + Send;

    /// Segment currently being read (for `prometheus_wal_watcher_current_segment`).
    fn current_segment(&self) -> Option<u64> {
        None
    }

    /// Bytes between the acknowledged cursor and the end of the WAL, if known.
    fn backlog_bytes(&self) -> Option<u64> {
        None
    }

    /// A counter the source bumps when series it announced are gone for
    /// good (WAL truncation collected them); 0 for sources that never drop.
    fn series_gc_generation(&self) -> u64 {
        0
    }

    /// Keeps only the entries of `map` for series the source still has;
    /// the queue calls it when [`RecordSource::series_gc_generation`]
    /// changed, so its per-series maps do not grow with churn.
    fn retain_live<V>(&self, _map: &mut RefMap<V>) {}
}
