//! The agent's durable storage: a write-ahead log that implements
//! [`tributary_model::Storage`], plus durable per-consumer cursors so
//! remote-write endpoints resume exactly where they were acknowledged.
//!
//! # Layout
//!
//! `<dir>/lock` (unless disabled), `<dir>/cursors` (consumer cursors),
//! `<dir>/checkpoint.reserve` (space held for the next checkpoint),
//! `<dir>/wal/00000000`, `00000001`, … (segments) and
//! `<dir>/wal/checkpoint.NNNNNNNN/` (series of deleted segments). Segments use
//! Prometheus's wlog framing (32 KiB pages, 7-byte fragment headers,
//! CRC32-Castagnoli, snappy per record) and record encodings, see
//! [`record`].
//!
//! # Write path and fsync policy
//!
//! An [`Appender`](tributary_model::Appender) buffers samples in memory; on
//! commit it encodes, in this order, one Series record (series not logged
//! yet), one Metadata record (series whose type/help/unit changed since they
//! were last logged), one Samples record, one HistogramSamples and one
//! FloatHistogramSamples record (native histograms, bodies encoded at append
//! time) and one Exemplars record (an exemplar equal to the series' previous
//! one is dropped, as Prometheus does), and hands them to the OS with a
//! single `write` before `commit` returns, then bumps [`AgentStorage::commit_watch`]. So a process
//! crash (SIGKILL, OOM) loses nothing committed. `fsync` happens at segment
//! rotation, every `fsync_interval` (default 1 s, in the maintenance task,
//! outside the writer lock) and on close. Per-commit fsync would cost
//! milliseconds per scrape on SD cards and cheap SSDs; one second matches
//! the cursor persistence period and Prometheus's own behaviour (which only
//! fsyncs on segment completion). **Worst case on power loss:** the commits
//! of the last `fsync_interval` (plus the fsync's own duration) are lost;
//! the tail they leave is detected as torn and cut on the next open, and
//! cursors that point past the surviving data simply continue at the next
//! segment (at the end of the WAL, if past it: also a cursor file kept
//! beside an emptied WAL directory). Cursor files are written via temp
//! file + fsync + rename + directory fsync, after the WAL fsync of the
//! same tick.
//!
//! # Disk full
//!
//! A failed write (ENOSPC, EIO) is cut back off the segment (readers never
//! see torn bytes; the writer moves to a new segment before its next write)
//! and the commit is *kept in memory* instead of being lost: the batch's
//! encoded records wait in a FIFO bounded by `WalOptions::write_buffer_bytes`
//! (default 64 MiB), later commits queue behind it so the WAL keeps commit
//! order, and `commit` succeeds. The maintenance tick retries every
//! `fsync_interval`, writing the oldest buffered commits the filesystem
//! reports room for. When
//! the buffer is full, commits fail and their samples are counted in
//! `tributary_wal_write_buffer_dropped_samples_total`; the buffer's size is
//! `tributary_wal_write_buffer_bytes`. One log line marks the start of an
//! episode, one the first refused commit, one the recovery. Buffered data
//! is not durable: a crash during the episode loses it (it never reached
//! the disk), and `close` reports what it could not write.
//!
//! While commits wait, truncation runs every 10 s instead of every
//! `truncate_frequency`, so what every consumer has sent (and is older
//! than `min_time`) is deleted promptly. That needs a checkpoint written
//! first (see Truncation), so `<dir>/checkpoint.reserve` holds the space
//! for it: a failed checkpoint write deletes the reserve and is retried in
//! its space, and the next maintenance tick takes the reserve again before
//! it writes any buffered commit when both fit, after them when not (the
//! disk is then full of something else; see `reserve`). `close` tries
//! every buffered commit once more.
//!
//! # Reading
//!
//! [`WalReader`] tails the segments from any [`Position`], never returns a
//! half-written record, skips corrupt pages, and reports segments deleted
//! underneath it as [`Skipped`] gaps instead of failing. A reader from
//! [`AgentStorage::reader`] takes the newest records from the writer's
//! memory while it keeps up (`WalOptions::tail_bytes`, see `tail`).
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
//! `tributary_wal_consumer_dropped_samples_total{reason="max_time"|"max_bytes"}`).
//! The counter is an upper bound on loss: samples a queue had already read
//! into memory may still be delivered. Before deleting, a
//! checkpoint of the live series is written (labels only: metadata is
//! logged again by the first scrape after a restart, whose scrape cache is
//! empty); series without data in the
//! kept segments and not seen within `min_time` are forgotten.
//!
//! # Per-consumer byte cap
//!
//! `WalOptions::max_bytes_per_consumer` (with per-name overrides in
//! `consumer_max_bytes`) bounds how far one consumer may lag: every
//! maintenance tick, a consumer with more WAL bytes after its cursor than
//! its cap has its cursor moved to the oldest segment start that brings it
//! under the cap (counted as `reason="consumer_max_bytes"`, logged once per
//! jump). That consumer alone loses its oldest backlog; the others keep
//! theirs, and the skipped segments are reclaimed by regular truncation once
//! every consumer has passed them. Readers notice the moved cursor and
//! resume there.
//!
//! # Inspection and repair
//!
//! [`inspect`] reports segments, records by type, series, samples, damage
//! and per-consumer backlog for `tributary check wal`; [`repair`] cuts
//! exactly the damaged records out (rewriting the segment and moving cursors
//! into the new layout) while no agent holds the directory.

mod checkpoint;
mod consumer;
mod cursor_file;
mod error;
mod format;
mod inspect;
mod metrics;
mod reader;
pub mod record;
mod reserve;
mod series;
mod storage;
mod tail;
mod writer;

pub use checkpoint::load_series_before;
pub use consumer::{Consumer, DroppedCounts};
pub use cursor_file::read_cursors;
pub use error::WalError;
pub use inspect::{
    inspect, repair, CheckpointInfo, ConsumerBacklog, Damage, RecordCounts, RepairReport,
    SegmentInfo, WalInspection,
};
pub use reader::{Position, Record, SkipReason, Skipped, WalReader};
pub use record::{DecodeError, RecordType, RefExemplar, RefHistogram, RefMetadata, RefSample};
pub use storage::{AgentStorage, ConsumerStats, TruncateStats, WalOptions, WalStats};

/// Size of a WAL page; segment sizes must be a multiple of it.
pub const PAGE_SIZE: u64 = format::PAGE_SIZE;
