//! The scrape cache: raw series text → series reference.
//!
//! Keyed by a 128-bit hash of the series' raw bytes as exposed (name and
//! label block), so a series seen before costs one hash and one lookup —
//! no label parsing, merging or relabeling — and an entry costs ~40 bytes
//! whatever the label set's length. With 128 bits a collision among even
//! millions of series is far less likely than a disk error, so keys are not
//! verified against the text.
//!
//! Staleness is tracked here too: each entry remembers the iteration it was
//! last seen in, and a series seen in the previous successful scrape but not
//! in this one gets a staleness marker — no second set of series is kept.

use hashbrown::HashMap;
use tributary_model::SeriesRef;

/// Entries unseen for this many scrapes are forgotten.
const EVICT_AFTER_ITERATIONS: u32 = 10;

#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheEntry {
    /// `SeriesRef::NONE` when metric relabeling dropped the series.
    pub series: SeriesRef,
    pub last_iter: u32,
    /// The iteration before `last_iter` (to know, after a failed scrape
    /// touched it, whether the series was current).
    pub prev_iter: u32,
    /// False for series with an exposed timestamp (not staleness-tracked
    /// unless `track_timestamps_staleness`).
    pub stale_tracked: bool,
    /// A native histogram series: its staleness marker is a stale
    /// histogram, not a float.
    pub histogram: bool,
    /// The newest timestamp appended to the series by this target
    /// (`i64::MIN` before the first): a created-timestamp zero sample is
    /// only written when the created timestamp is newer, as Prometheus
    /// only writes one newer than the series' last sample. Kept here rather
    /// than asked of the storage, whose out-of-order window would otherwise
    /// let the same old zero sample in again on every scrape. (Fits in the
    /// padding the 16-byte-aligned key leaves in each map slot.)
    pub last_t: i64,
}

/// A series that went stale, and whether it is a native histogram series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StaleSeries {
    pub series: SeriesRef,
    pub histogram: bool,
}

#[derive(Debug, Default)]
pub struct ScrapeCache {
    entries: HashMap<u128, CacheEntry>,
    /// The iteration being appended now (starts at 1; 0 means "never").
    iter: u32,
    /// The iteration whose series are current: their absence in the next
    /// successful scrape makes them stale. 0 after a failed scrape.
    current: u32,
}

pub(crate) fn key(raw: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(raw)
}

impl ScrapeCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Starts a new scrape iteration.
    pub(crate) fn begin(&mut self) -> u32 {
        self.iter = self.iter.wrapping_add(1).max(1);
        self.iter
    }

    pub(crate) fn get_mut(&mut self, k: u128) -> Option<&mut CacheEntry> {
        self.entries.get_mut(&k)
    }

    pub(crate) fn insert(&mut self, k: u128, entry: CacheEntry) {
        self.entries.insert(k, entry);
    }

    /// Ends a successful scrape: returns the series that went stale (seen in
    /// the previous successful scrape, absent now) into `stale`, forgets
    /// long-unseen entries, and makes this iteration current.
    pub(crate) fn finish_success(&mut self, stale: &mut Vec<StaleSeries>) {
        self.collect_stale(stale, false);
        self.current = self.iter;
    }

    /// Ends a failed scrape: every series of the last successful scrape goes
    /// stale, and none is current until the next success.
    pub(crate) fn finish_failure(&mut self, stale: &mut Vec<StaleSeries>) {
        self.collect_stale(stale, true);
        self.current = 0;
    }

    /// The series a removed target marks stale at the end of its run.
    pub(crate) fn current_series(&self, out: &mut Vec<StaleSeries>) {
        if self.current == 0 {
            return;
        }
        out.extend(
            self.entries
                .values()
                .filter(|e| e.last_iter == self.current && e.stale_tracked && !e.series.is_none())
                .map(|e| StaleSeries {
                    series: e.series,
                    histogram: e.histogram,
                }),
        );
    }

    fn collect_stale(&mut self, stale: &mut Vec<StaleSeries>, failed: bool) {
        stale.clear();
        let (iter, current) = (self.iter, self.current);
        self.entries.retain(|_, e| {
            let was_current = current != 0
                && (e.last_iter == current || (e.last_iter == iter && e.prev_iter == current));
            let seen_now = e.last_iter == iter;
            if was_current && (failed || !seen_now) && e.stale_tracked && !e.series.is_none() {
                stale.push(StaleSeries {
                    series: e.series,
                    histogram: e.histogram,
                });
            }
            iter.wrapping_sub(e.last_iter) <= EVICT_AFTER_ITERATIONS
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `last_t` rides in the padding of the map slot: an entry with its
    /// 16-byte-aligned key costs no more than before the field existed.
    #[test]
    fn map_slot_stays_48_bytes() {
        assert!(std::mem::size_of::<(u128, CacheEntry)>() <= 48);
    }
}
