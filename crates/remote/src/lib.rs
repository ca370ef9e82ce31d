//! Remote write (1.0 and 2.0): one queue manager per `remote_write` entry,
//! tailing the WAL from a durable per-queue cursor and delivering to the
//! endpoint. Float samples, native histograms and exemplars each travel as
//! one TimeSeries entry; metadata goes in separate 1.0 metadata requests or
//! inline with 2.0 series (see [`queue`]).
//!
//! Data flow: WAL records → watcher (series cache with external labels and
//! write_relabel applied once per series) → shards (`ref % n`, so per-series
//! order is kept) → batches → hand-written protobuf + snappy → HTTP with
//! unbounded retries on recoverable errors. Every sample is accounted in an
//! in-order [`ack::AckTracker`]; the WAL cursor is advanced only to the end
//! of the last record whose samples (and all earlier ones) were delivered or
//! dropped on purpose, so a crash re-sends (duplicates) but never loses.

pub mod ack;
pub mod client;
pub mod encode;
pub mod encode_v2;
mod h1;
pub mod metrics;
mod proto;
pub mod queue;
mod snappy_stream;
pub mod source;
mod storage;
mod wal_source;

pub use client::{Protocol, SendError, WriteClient, WriteClientSettings};
pub use encode::{
    EncodableSample, EncodeError, ExternalLabels, ItemLabels, LabelPiece, MetricMetadata, Payload,
    WriteRequestEncoder,
};
pub use encode_v2::{WriteRequestV2Encoder, WrittenStats};
pub use metrics::{DropReason, QueueMetrics, RemoteMetrics};
pub use queue::{
    MetadataSettings, QueueManager, QueueSettings, QueueStatus, RelabelFn, SeriesTransform,
};
pub use source::{Acker, DecodedRecord, RecordKind, RecordSource, SourceError};
pub use storage::{RemoteError, RemoteStorage};
pub use wal_source::WalSource;
