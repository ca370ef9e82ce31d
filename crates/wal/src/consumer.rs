//! Durable per-consumer cursors.
//!
//! Every remote-write endpoint owns a named cursor: the WAL position up to
//! which it has delivered (acknowledged) data. Cursors live in memory as
//! small mutexes and are persisted together by the maintenance task (see
//! `cursor_file`).
//! A cursor persisted past the durable end of the WAL (power loss lost the
//! tail) is harmless: the reader finds a finished segment shorter than the
//! offset and moves on to the next segment.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;

use crate::metrics::Metrics;
use crate::reader::Position;

/// Samples a consumer lost to forced truncation, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DroppedCounts {
    /// Deleted because older than `max_time`.
    pub max_time: u64,
    /// Deleted because the WAL exceeded `max_bytes`.
    pub max_bytes: u64,
    /// Skipped because this consumer's own backlog exceeded its byte cap
    /// (`max_bytes_per_consumer`).
    pub consumer_max_bytes: u64,
}

pub(crate) struct ConsumerState {
    pub name: String,
    pub position: Mutex<Position>,
    pub dropped_max_time: Counter,
    pub dropped_max_bytes: Counter,
    pub dropped_consumer_cap: Counter,
    /// Most WAL bytes this consumer may lag behind; older data is skipped.
    pub max_backlog_bytes: Option<u64>,
    /// Bumped on every change so persistence can skip unchanged cursors.
    generation: Arc<AtomicU64>,
    /// Bumped whenever the WAL moves the cursor past data its reader has
    /// not read yet (see [`Consumer::jumps`]).
    jumps: AtomicU64,
}

impl ConsumerState {
    pub(crate) fn new(
        name: &str,
        position: Position,
        metrics: &Metrics,
        max_backlog_bytes: Option<u64>,
        generation: Arc<AtomicU64>,
    ) -> ConsumerState {
        ConsumerState {
            name: name.to_owned(),
            position: Mutex::new(position),
            dropped_max_time: metrics.dropped_counter(name, "max_time"),
            dropped_max_bytes: metrics.dropped_counter(name, "max_bytes"),
            dropped_consumer_cap: metrics.dropped_counter(name, "consumer_max_bytes"),
            max_backlog_bytes,
            generation,
            jumps: AtomicU64::new(0),
        }
    }

    /// Moves the cursor forward to `to` past unread data: the reader must
    /// resume there instead of reading on.
    pub(crate) fn jump(&self, to: Position) {
        self.advance(to);
        self.jumps.fetch_add(1, Ordering::Release);
    }

    /// Moves the cursor forward (never back).
    pub(crate) fn advance(&self, to: Position) {
        let mut p = self.position.lock();
        if to > *p {
            *p = to;
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A durable cursor over the WAL for one consumer (remote-write endpoint).
#[derive(Clone)]
pub struct Consumer {
    pub(crate) state: Arc<ConsumerState>,
}

impl Consumer {
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The last acknowledged position: where a reader resumes.
    pub fn position(&self) -> Position {
        *self.state.position.lock()
    }

    /// Declares everything before `upto` delivered. Positions only move
    /// forward. Persisted by the maintenance task (about every second) and on
    /// close.
    pub fn ack(&self, upto: Position) {
        self.state.advance(upto);
    }

    /// How often the WAL has moved the cursor past data not acknowledged
    /// (this consumer's byte cap, or truncation deleting unsent samples).
    /// A reader that sees it change resumes at [`Consumer::position`]. A
    /// cursor that truncation moves from the end of a deleted segment to
    /// the start of the next skipped nothing and is not counted.
    pub fn jumps(&self) -> u64 {
        self.state.jumps.load(Ordering::Acquire)
    }

    /// Samples this consumer lost because forced truncation deleted them
    /// before they were acknowledged.
    pub fn dropped(&self) -> DroppedCounts {
        DroppedCounts {
            max_time: self.state.dropped_max_time.get(),
            max_bytes: self.state.dropped_max_bytes.get(),
            consumer_max_bytes: self.state.dropped_consumer_cap.get(),
        }
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.name())
            .field("position", &self.position())
            .finish()
    }
}
