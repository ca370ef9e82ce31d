//! In-order acknowledgement watermark over WAL records.
//!
//! The WAL cursor of a queue may only move past a record once every sample
//! read from it *and from every earlier record* has been delivered or
//! deliberately dropped. Shards finish batches out of order (one shard may be
//! retrying while another succeeds), so each record read by the watcher is
//! registered with the number of samples it put into the shards, shards
//! report completions per record, and the watermark is the end position of
//! the longest fully-completed prefix of records.
//!
//! Records are identified by a sequence number assigned at registration;
//! the pending records form a deque indexed by `seq - first_seq`, so a
//! completion is O(1) and advancing the watermark is amortised O(1).

use std::collections::VecDeque;

/// Tracks outstanding samples per record and the acknowledged watermark.
#[derive(Debug)]
pub struct AckTracker<P> {
    /// Sequence number of `pending[0]`.
    first_seq: u64,
    pending: VecDeque<Pending<P>>,
    watermark: Option<P>,
}

#[derive(Debug)]
struct Pending<P> {
    end: P,
    outstanding: usize,
}

impl<P: Copy> Default for AckTracker<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Copy> AckTracker<P> {
    pub fn new() -> Self {
        Self {
            first_seq: 0,
            pending: VecDeque::new(),
            watermark: None,
        }
    }

    /// Registers a record ending at `end` whose `samples` samples are about
    /// to be enqueued. Returns its sequence number, and the new watermark if
    /// registering an empty record advanced it.
    pub fn register(&mut self, end: P, samples: usize) -> (u64, Option<P>) {
        let seq = self.first_seq + self.pending.len() as u64;
        self.pending.push_back(Pending {
            end,
            outstanding: samples,
        });
        (seq, self.advance())
    }

    /// Marks `n` samples of record `seq` as done (sent or dropped on
    /// purpose). Returns the new watermark if it moved.
    pub fn complete(&mut self, seq: u64, n: usize) -> Option<P> {
        let idx = seq.checked_sub(self.first_seq)?;
        let p = self.pending.get_mut(usize::try_from(idx).ok()?)?;
        p.outstanding = p.outstanding.saturating_sub(n);
        self.advance()
    }

    fn advance(&mut self) -> Option<P> {
        let mut moved = None;
        while self.pending.front().is_some_and(|p| p.outstanding == 0) {
            if let Some(p) = self.pending.pop_front() {
                self.first_seq += 1;
                moved = Some(p.end);
            }
        }
        if moved.is_some() {
            self.watermark = moved;
        }
        moved
    }

    /// The end position of the last record whose samples (and all before)
    /// are done.
    pub fn watermark(&self) -> Option<P> {
        self.watermark
    }

    /// Samples enqueued but not yet done.
    pub fn outstanding(&self) -> usize {
        self.pending.iter().map(|p| p.outstanding).sum()
    }
}

/// Per-batch record accounting: consecutive runs of (record seq, count).
/// Samples are enqueued in record order, so runs stay short (one entry per
/// record touched by the batch) and no per-sample bookkeeping is kept.
#[derive(Debug, Default, Clone)]
pub struct RecordRuns {
    runs: Vec<(u64, usize)>,
}

impl RecordRuns {
    /// `n` more items of record `seq`.
    pub fn push_n(&mut self, seq: u64, n: usize) {
        if n == 0 {
            return;
        }
        match self.runs.last_mut() {
            Some((s, count)) if *s == seq => *count += n,
            _ => self.runs.push((seq, n)),
        }
    }

    pub fn clear(&mut self) {
        self.runs.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        self.runs.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_waits_for_the_oldest_record() {
        let mut t = AckTracker::<u32>::new();
        let (a, w) = t.register(10, 2);
        assert_eq!(w, None);
        let (b, _) = t.register(20, 1);
        // Later record finishes first: no movement.
        assert_eq!(t.complete(b, 1), None);
        assert_eq!(t.complete(a, 1), None);
        assert_eq!(t.complete(a, 1), Some(20));
        assert_eq!(t.watermark(), Some(20));
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn empty_records_advance_immediately_when_at_front() {
        let mut t = AckTracker::<u32>::new();
        assert_eq!(t.register(5, 0).1, Some(5));
        let (s, _) = t.register(6, 1);
        assert_eq!(t.register(7, 0).1, None);
        assert_eq!(t.complete(s, 1), Some(7));
    }

    #[test]
    fn unknown_sequence_is_ignored() {
        let mut t = AckTracker::<u32>::new();
        assert_eq!(t.complete(42, 1), None);
        let (s, _) = t.register(1, 1);
        assert_eq!(t.complete(s, 1), Some(1));
        assert_eq!(t.complete(s, 1), None);
    }

    #[test]
    fn runs_merge_consecutive_records() {
        let mut r = RecordRuns::default();
        for (s, n) in [(1, 1), (1, 1), (2, 2), (2, 0), (2, 1), (4, 1), (4, 0)] {
            r.push_n(s, n);
        }
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![(1, 2), (2, 3), (4, 1)]);
    }
}
