//! The agent's durable storage: a write-ahead log that implements
//! [`tributary_model::Storage`], plus durable per-consumer cursors so
//! remote-write endpoints resume exactly where they were acknowledged.
//!
//! # Layout
//!
//! `<dir>/lock` (unless disabled), `<dir>/cursors.json` (consumer cursors),
//! `<dir>/wal/00000000`, `00000001`, … (segments) and
//! `<dir>/wal/checkpoint.NNNNNNNN/` (series of deleted segments). Segments use
//! Prometheus's wlog framing (32 KiB pages, 7-byte fragment headers,
//! CRC32-Castagnoli, snappy per record) and record encodings, see
//! [`record`].
//!
//! # Write path and fsync policy
//!
//! An [`Appender`](tributary_model::Appender) buffers samples in memory; on
//! commit it encodes one Series record (series not logged yet) and one
//! Samples record and hands both to the OS with a single `write` before
//! `commit` returns, then bumps [`AgentStorage::commit_watch`]. So a process
//! crash (SIGKILL, OOM) loses nothing committed. `fsync` happens at segment
//! rotation, every `fsync_interval` (default 1 s, in the maintenance task,
//! outside the writer lock) and on close. Per-commit fsync would cost
//! milliseconds per scrape on SD cards and cheap SSDs; one second matches
//! the cursor persistence period and Prometheus's own behaviour (which only
//! fsyncs on segment completion). **Worst case on power loss:** the commits
//! of the last `fsync_interval` (plus the fsync's own duration) are lost;
//! the tail they leave is detected as torn and cut on the next open, and
//! cursors that point past the surviving data simply continue at the next
//! segment. Cursor files are written via temp file + fsync + rename +
//! directory fsync, after the WAL fsync of the same tick.
//!
//! A failed write (disk full) returns `AppendError::Storage`, the torn bytes
//! are truncated away and the writer moves to a new segment, so later
//! commits produce a readable WAL even if the truncation itself failed.
//!
//! # Reading
//!
//! [`WalReader`] tails the segments from any [`Position`], never returns a
//! half-written record, skips corrupt pages, and reports segments deleted
//! underneath it as [`Skipped`] gaps instead of failing.
//! [`load_series_before`] tells a resuming consumer the labels of the refs
//! it will meet.
//!
//! # Truncation
//!
//! Periodically (and when the directory exceeds `max_bytes`) the writer
//! starts a new segment and deletes the oldest segments that every consumer
//! has passed and whose newest sample is older than `min_time`; segments
//! with only data older than `max_time`, or the oldest ones while over
//! `max_bytes`, are deleted even if unsent, and each lagging consumer gets
//! the lost samples counted (`dropped()`, metric
//! `tributary_wal_consumer_dropped_samples_total`). Before deleting, a
//! checkpoint of the live series is written; series without data in the
//! kept segments and not seen within `min_time` are forgotten.

mod checkpoint;
mod consumer;
mod error;
mod format;
mod inspect;
mod metrics;
mod reader;
pub mod record;
mod storage;
mod writer;

pub use checkpoint::load_series_before;
pub use consumer::{Consumer, DroppedCounts};
pub use error::WalError;
pub use inspect::{
    inspect, repair, CheckpointInfo, ConsumerBacklog, Damage, RecordCounts, RepairReport,
    SegmentInfo, WalInspection,
};
pub use reader::{Position, Record, SkipReason, Skipped, WalReader};
pub use record::{DecodeError, RecordType, RefSample};
pub use storage::{AgentStorage, ConsumerStats, TruncateStats, WalOptions, WalStats};

/// Size of a WAL page; segment sizes must be a multiple of it.
pub const PAGE_SIZE: u64 = format::PAGE_SIZE;
