//! The scrape cache: raw series text → series reference.
//!
//! Keyed by a 128-bit hash of the series' raw bytes as exposed (name and
//! label block), so a series seen before costs one hash and one lookup —
//! no label parsing, merging or relabeling — and an entry costs ~56 bytes
//! whatever the label set's length. With 128 bits a collision among even
//! millions of series is far less likely than a disk error, so keys are not
//! verified against the text.
//!
//! Entries live in a vector in the order the target exposes them, with a
//! hash table of positions beside it. A target exposes its series in the
//! same order every time, so the lookup first tries the slot after the
//! previous hit: a scrape walks the vector front to back, and the hash
//! table (a cache miss per probe across hundreds of targets) is only asked
//! when the order changes. Eviction compacts the vector, keeping the order.
//!
//! Staleness is tracked here too: each entry remembers the iteration it was
//! last seen in, and a series seen in the previous successful scrape but not
//! in this one gets a staleness marker — no second set of series is kept.

use hashbrown::HashTable;
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

/// One cached series: its key (as two words, so the slot is not padded to
/// 16-byte alignment) and entry.
#[derive(Debug, Clone, Copy)]
struct Slot {
    key: [u64; 2],
    entry: CacheEntry,
}

fn split(k: u128) -> [u64; 2] {
    [k as u64, (k >> 64) as u64]
}

#[derive(Debug, Default)]
pub struct ScrapeCache {
    slots: Vec<Slot>,
    /// Positions in `slots`, hashed by the key's low word (already a hash).
    index: HashTable<u32>,
    /// Where the next lookup looks first: the slot after the last hit.
    cursor: usize,
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
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Starts a new scrape iteration.
    pub(crate) fn begin(&mut self) -> u32 {
        self.iter = self.iter.wrapping_add(1).max(1);
        self.cursor = 0;
        self.iter
    }

    fn position(&self, key: [u64; 2]) -> Option<usize> {
        if self.slots.get(self.cursor).is_some_and(|s| s.key == key) {
            return Some(self.cursor);
        }
        let slots = &self.slots;
        self.index
            .find(key[0], |&i| {
                slots.get(i as usize).is_some_and(|s| s.key == key)
            })
            .map(|&i| i as usize)
    }

    pub(crate) fn get_mut(&mut self, k: u128) -> Option<&mut CacheEntry> {
        let pos = self.position(split(k))?;
        self.cursor = pos + 1;
        self.slots.get_mut(pos).map(|s| &mut s.entry)
    }

    pub(crate) fn insert(&mut self, k: u128, entry: CacheEntry) {
        let key = split(k);
        if let Some(pos) = self.position(key) {
            if let Some(s) = self.slots.get_mut(pos) {
                s.entry = entry;
            }
            self.cursor = pos + 1;
            return;
        }
        let pos = self.slots.len();
        self.slots.push(Slot { key, entry });
        let slots = &self.slots;
        self.index.insert_unique(key[0], pos as u32, |&i| {
            slots.get(i as usize).map_or(0, |s| s.key[0])
        });
        self.cursor = pos + 1;
    }

    /// Rebuilds the position index after the vector was compacted.
    fn reindex(&mut self) {
        self.index.clear();
        self.index.reserve(self.slots.len(), |_| 0);
        let slots = &self.slots;
        for (pos, s) in slots.iter().enumerate() {
            self.index.insert_unique(s.key[0], pos as u32, |&i| {
                slots.get(i as usize).map_or(0, |s| s.key[0])
            });
        }
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
            self.slots
                .iter()
                .map(|s| &s.entry)
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
        let before = self.slots.len();
        self.slots.retain(|s| {
            let e = &s.entry;
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
        if self.slots.len() != before {
            self.reindex();
        }
        // Growth doubles the vector; give the slack back once the set of
        // series has settled.
        if self.slots.capacity() > self.slots.len() + self.slots.len() / 4 + 16 {
            self.slots.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot (key + entry) stays at 48 bytes: the per-series cost of the
    /// cache at 400k series.
    #[test]
    fn slot_stays_48_bytes() {
        assert!(std::mem::size_of::<Slot>() <= 48);
    }

    fn entry(series: u64, iter: u32) -> CacheEntry {
        CacheEntry {
            series: SeriesRef(series),
            last_iter: iter,
            prev_iter: 0,
            stale_tracked: true,
            histogram: false,
            last_t: i64::MIN,
        }
    }

    #[test]
    fn lookups_in_and_out_of_order_and_eviction_keep_entries_findable() {
        let mut c = ScrapeCache::new();
        let mut stale = Vec::new();
        let it = c.begin();
        for k in 0..100u128 {
            c.insert(k << 70 | k, entry(k as u64 + 1, it));
        }
        c.finish_success(&mut stale);
        // Reverse order: every lookup misses the cursor and uses the index.
        let it = c.begin();
        for k in (0..100u128).rev() {
            let e = c.get_mut(k << 70 | k).unwrap();
            assert_eq!(e.series, SeriesRef(k as u64 + 1));
            if k % 2 == 0 {
                e.last_iter = it;
            }
        }
        c.finish_success(&mut stale);
        let mut gone: Vec<u64> = stale.iter().map(|s| s.series.0).collect();
        gone.sort_unstable();
        let odd: Vec<u64> = (0..100u64).filter(|k| k % 2 == 1).map(|k| k + 1).collect();
        assert_eq!(gone, odd, "series absent from this scrape go stale");
        // Odd keys unseen for more than the eviction horizon are dropped;
        // even ones stay findable after the compaction.
        for _ in 0..=EVICT_AFTER_ITERATIONS {
            let it = c.begin();
            for k in (0..100u128).step_by(2) {
                c.get_mut(k << 70 | k).unwrap().last_iter = it;
            }
            c.finish_success(&mut stale);
        }
        assert_eq!(c.len(), 50);
        for k in 0..100u128 {
            assert_eq!(c.get_mut(k << 70 | k).is_some(), k % 2 == 0, "key {k}");
        }
    }
}
