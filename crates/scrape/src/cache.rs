//! The scrape cache: raw series text → series reference.
//!
//! Keyed by 80 bits of a hash of the series' raw bytes as exposed (name
//! and label block) and by their length, so a series seen before costs one
//! hash and one lookup — no label parsing, merging or relabeling — and an
//! entry costs 24 bytes whatever the label set's length. With 80 bits the
//! chance of a collision among a million series of one target (of the same
//! length, too) is below 10⁻¹², far less likely than a disk error, so keys
//! are not verified against the text. The length tells the parser where
//! the value of the series expected next starts
//! ([`ScrapeCache::next_len`]).
//!
//! Entries live in a vector in the order the target exposes them. A target
//! exposes its series in the same order every time, so a lookup first tries
//! the slot after the previous hit: a scrape walks the vector front to
//! back. Only when the order changes (or a series is new) is a hash table
//! of positions needed; it is built then, the vector is put back into the
//! target's order at the end of that scrape, and the table is dropped again
//! once a few scrapes went by without it — at 2,000 series a target, the
//! table would otherwise cost more than a quarter of the cache.
//!
//! Staleness is tracked here too: each entry remembers the iteration it was
//! last seen in, and a series seen in the previous successful scrape but not
//! in this one gets a staleness marker — no second set of series is kept.

use hashbrown::HashTable;
use tributary_model::SeriesRef;

/// Entries unseen for this many scrapes are forgotten.
const EVICT_AFTER_ITERATIONS: u32 = 10;
/// Iterations count modulo 2^30.
const ITER_MASK: u32 = (1 << 30) - 1;
/// A slot keeps the low 14 bits of an iteration: entries are evicted after
/// [`EVICT_AFTER_ITERATIONS`], so two iterations a slot compares are never
/// 2^14 apart. The top bits of `Slot::prev` are flags.
const SLOT_ITER_MASK: u16 = (1 << 14) - 1;
const STALE_TRACKED: u16 = 1 << 15;
const HISTOGRAM: u16 = 1 << 14;
/// Scrapes in a row without an index lookup before the index is dropped.
const INDEX_IDLE_SCRAPES: u8 = 3;

/// One cached series (24 bytes: 4-byte words only, so nothing is padded).
#[derive(Debug, Clone, Copy)]
struct Slot {
    key: Key,
    /// The series reference as (low, high) words; `SeriesRef::NONE` when
    /// metric relabeling dropped the series.
    series: [u32; 2],
    /// The iteration it was last seen in ([`slot_iter`]; 0: never).
    last: u16,
    /// `STALE_TRACKED | HISTOGRAM |` the iteration before `last` (to know,
    /// after a failed scrape touched it, whether the series was current).
    prev: u16,
}

/// 80 bits of the series' hash, then its length ([`UNKNOWN_LEN`] from
/// 65,535 bytes on) in the top 16 bits.
type Key = [u32; 3];

const LEN_SHIFT: u32 = 80;
const UNKNOWN_LEN: u16 = u16::MAX;

/// The part of an iteration a slot keeps.
fn slot_iter(iter: u32) -> u16 {
    iter as u16 & SLOT_ITER_MASK
}

fn split_ref(r: SeriesRef) -> [u32; 2] {
    [r.0 as u32, (r.0 >> 32) as u32]
}

impl Slot {
    fn prev_iter(&self) -> u16 {
        self.prev & SLOT_ITER_MASK
    }

    fn series(&self) -> SeriesRef {
        SeriesRef(u64::from(self.series[1]) << 32 | u64::from(self.series[0]))
    }

    /// False for series with an exposed timestamp (not staleness-tracked
    /// unless `track_timestamps_staleness`).
    fn stale_tracked(&self) -> bool {
        self.prev & STALE_TRACKED != 0
    }

    /// A native histogram series: its staleness marker is a stale
    /// histogram, not a float.
    fn histogram(&self) -> bool {
        self.prev & HISTOGRAM != 0
    }

    fn stale_series(&self) -> StaleSeries {
        StaleSeries {
            series: self.series(),
            histogram: self.histogram(),
        }
    }
}

/// A series that went stale, and whether it is a native histogram series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StaleSeries {
    pub series: SeriesRef,
    pub histogram: bool,
}

fn split(k: u128) -> Key {
    [k as u32, (k >> 32) as u32, (k >> 64) as u32]
}

/// The low 64 bits of the key, for the position index.
fn key_hash(k: Key) -> u64 {
    u64::from(k[1]) << 32 | u64::from(k[0])
}

pub(crate) fn key(raw: &[u8]) -> u128 {
    let len = u16::try_from(raw.len()).unwrap_or(UNKNOWN_LEN);
    let hash = xxhash_rust::xxh3::xxh3_128(raw) & !(u128::from(u16::MAX) << LEN_SHIFT);
    hash | u128::from(len) << LEN_SHIFT
}

/// A found entry, to read and update.
pub(crate) struct EntryMut<'a> {
    slot: &'a mut Slot,
    last_t: Option<&'a mut i64>,
}

impl EntryMut<'_> {
    pub fn series(&self) -> SeriesRef {
        self.slot.series()
    }

    pub fn set_series(&mut self, series: SeriesRef) {
        self.slot.series = split_ref(series);
    }

    /// Whether it was already seen in iteration `iter`.
    pub fn seen_in(&self, iter: u32) -> bool {
        self.slot.last == slot_iter(iter)
    }

    /// Marks it seen in iteration `iter`.
    pub fn touch(&mut self, iter: u32, histogram: bool) {
        let flags = self.slot.prev & STALE_TRACKED;
        let h = if histogram { HISTOGRAM } else { 0 };
        self.slot.prev = flags | h | self.slot.last;
        self.slot.last = slot_iter(iter);
    }

    /// The newest timestamp appended to the series by this target
    /// (`i64::MIN` before the first, or when not tracked): a
    /// created-timestamp zero sample is only written when the created
    /// timestamp is newer, as Prometheus only writes one newer than the
    /// series' last sample. Kept here rather than asked of the storage,
    /// whose out-of-order window would otherwise let the same old zero
    /// sample in again on every scrape.
    pub fn last_t(&self) -> i64 {
        self.last_t.as_deref().copied().unwrap_or(i64::MIN)
    }

    pub fn raise_last_t(&mut self, t: i64) {
        if let Some(last) = self.last_t.as_deref_mut() {
            *last = (*last).max(t);
        }
    }
}

/// What a new entry starts with.
pub(crate) struct NewEntry {
    pub series: SeriesRef,
    pub iter: u32,
    pub stale_tracked: bool,
    pub histogram: bool,
    pub last_t: i64,
}

#[derive(Debug, Default)]
pub struct ScrapeCache {
    slots: Vec<Slot>,
    /// Parallel to `slots` when created timestamps are ingested (see
    /// [`EntryMut::last_t`]), empty otherwise.
    last_t: Vec<i64>,
    track_last_t: bool,
    /// Positions in `slots`, hashed by the key's low word (already a hash);
    /// `None` while the exposition order holds.
    index: Option<HashTable<u32>>,
    /// Scrapes in a row that did not need the index.
    index_idle: u8,
    /// Whether the cache was empty when this scrape began.
    began_empty: bool,
    /// Where the next lookup looks first: the slot after the last hit.
    cursor: usize,
    /// Set when this scrape left the vector's order: positions in the
    /// order they were visited (the sequential prefix is implied).
    visits: Option<Vec<u32>>,
    /// The iteration being appended now (starts at 1; 0 means "never").
    iter: u32,
    /// The iteration whose series are current: their absence in the next
    /// successful scrape makes them stale. 0 after a failed scrape.
    current: u32,
}

impl ScrapeCache {
    /// A cache; `track_last_t` keeps each series' newest timestamp (only
    /// needed for created-timestamp zero ingestion).
    pub fn new(track_last_t: bool) -> Self {
        ScrapeCache {
            track_last_t,
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Heap bytes held, for memory accounting.
    pub fn heap_size(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.last_t.capacity() * 8
            + self.index.as_ref().map_or(0, |i| i.capacity() * 5)
    }

    /// Starts a new scrape iteration.
    pub(crate) fn begin(&mut self) -> u32 {
        self.iter = self.iter.wrapping_add(1) & ITER_MASK;
        // 0 in a slot means "never".
        if slot_iter(self.iter) == 0 {
            self.iter += 1;
        }
        self.cursor = 0;
        self.visits = None;
        self.began_empty = self.slots.is_empty();
        self.iter
    }

    /// Notes that the lookup of this scrape left the vector's order.
    fn leave_order(&mut self) {
        if self.visits.is_none() {
            self.visits = Some((0..self.cursor as u32).collect());
        }
    }

    fn position(&mut self, key: Key) -> Option<usize> {
        if self.slots.get(self.cursor).is_some_and(|s| s.key == key) {
            return Some(self.cursor);
        }
        self.leave_order();
        let slots = &self.slots;
        self.index
            .get_or_insert_with(|| build_index(slots))
            .find(key_hash(key), |&i| {
                slots.get(i as usize).is_some_and(|s| s.key == key)
            })
            .map(|&i| i as usize)
    }

    fn visited(&mut self, pos: usize) {
        if let Some(v) = &mut self.visits {
            v.push(pos as u32);
        }
        self.cursor = pos + 1;
    }

    /// Whether `k` is the entry after the last one found — the series a
    /// target exposing its usual order shows next. Looks nowhere else, so
    /// asking about a key that is not there changes nothing.
    pub(crate) fn is_next(&self, k: u128) -> bool {
        self.slots
            .get(self.cursor)
            .is_some_and(|s| s.key == split(k))
    }

    /// The length of the series [`ScrapeCache::is_next`] would accept, if
    /// there is one and it is shorter than 65,535 bytes.
    pub(crate) fn next_len(&self) -> Option<usize> {
        let len = (self.slots.get(self.cursor)?.key[2] >> (LEN_SHIFT - 64)) as u16;
        (len != UNKNOWN_LEN).then_some(usize::from(len))
    }

    pub(crate) fn get_mut(&mut self, k: u128) -> Option<EntryMut<'_>> {
        let pos = self.position(split(k))?;
        // A repeat within one scrape is not a visit of its own.
        if self
            .slots
            .get(pos)
            .is_some_and(|s| s.last != slot_iter(self.iter))
        {
            self.visited(pos);
        } else {
            self.cursor = pos + 1;
        }
        let slot = self.slots.get_mut(pos)?;
        let last_t = self.last_t.get_mut(pos);
        Some(EntryMut { slot, last_t })
    }

    /// Adds a series the last [`ScrapeCache::get_mut`] did not find.
    pub(crate) fn insert(&mut self, k: u128, e: NewEntry) {
        let key = split(k);
        let flags = if e.stale_tracked { STALE_TRACKED } else { 0 }
            | if e.histogram { HISTOGRAM } else { 0 };
        let slot = Slot {
            key,
            series: split_ref(e.series),
            last: slot_iter(e.iter),
            prev: flags,
        };
        let pos = self.slots.len();
        self.slots.push(slot);
        if self.track_last_t {
            self.last_t.push(e.last_t);
        }
        self.leave_order();
        let slots = &self.slots;
        if let Some(index) = &mut self.index {
            index.insert_unique(key_hash(key), pos as u32, |&i| {
                slots.get(i as usize).map_or(0, |s| key_hash(s.key))
            });
        }
        self.visited(pos);
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
        let current = slot_iter(self.current);
        out.extend(
            self.slots
                .iter()
                .filter(|s| s.last == current && s.stale_tracked() && !s.series().is_none())
                .map(Slot::stale_series),
        );
    }

    fn collect_stale(&mut self, stale: &mut Vec<StaleSeries>, failed: bool) {
        stale.clear();
        let (iter, current) = (slot_iter(self.iter), slot_iter(self.current));
        let any_current = self.current != 0;
        for s in &self.slots {
            let was_current =
                any_current && (s.last == current || (s.last == iter && s.prev_iter() == current));
            let seen_now = s.last == iter;
            if was_current && (failed || !seen_now) && s.stale_tracked() && !s.series().is_none() {
                stale.push(s.stale_series());
            }
        }
        if !failed && !stale.is_empty() {
            self.keep_series_seen_now(stale, iter);
        }
        let reordered = self.restore_order();
        let evicted = self.evict(|s| {
            u32::from(iter.wrapping_sub(s.last) & SLOT_ITER_MASK) > EVICT_AFTER_ITERATIONS
        });
        if reordered || evicted {
            self.index = None;
        }
        if self.began_empty {
            // On a target's first scrape the index only told new series
            // from repeats. Kept a few scrapes more, every target's first
            // index would be freed together after the blocks allocated
            // since, leaving holes among them (each in a huge page).
            self.index = None;
        }
        if self.visits.take().is_some() {
            self.index_idle = 0;
        } else {
            self.index_idle = self.index_idle.saturating_add(1);
            if self.index_idle >= INDEX_IDLE_SCRAPES {
                self.index = None;
            }
        }
        // Growth doubles the vectors; give the slack back once the set of
        // series has settled.
        if self.slots.capacity() > self.slots.len() + self.slots.len() / 4 + 16 {
            self.slots.shrink_to_fit();
            self.last_t.shrink_to_fit();
        }
    }

    /// Takes out of `stale` the series this scrape still yielded under
    /// another text (staleness-tracked, as the text that went): a target
    /// that reorders a series' labels between scrapes changes the text the
    /// cache knows it by, not the series. Prometheus tracks staleness per
    /// label set, so it writes no marker there either. Runs only when some
    /// series did go stale.
    fn keep_series_seen_now(&self, stale: &mut Vec<StaleSeries>, iter: u16) {
        let candidates: hashbrown::HashSet<SeriesRef> = stale.iter().map(|s| s.series).collect();
        let seen: hashbrown::HashSet<SeriesRef> = self
            .slots
            .iter()
            .filter(|s| s.last == iter && s.stale_tracked())
            .map(Slot::series)
            .filter(|r| candidates.contains(r))
            .collect();
        if !seen.is_empty() {
            stale.retain(|s| !seen.contains(&s.series));
        }
    }

    /// Puts the slots into the order this scrape visited them (the ones
    /// not visited keep their order, after them), so the next scrape of an
    /// unchanged target walks the vector sequentially again. True if the
    /// order changed.
    fn restore_order(&mut self) -> bool {
        let Some(visits) = &self.visits else {
            return false;
        };
        let in_order = visits.iter().enumerate().all(|(i, &p)| p as usize == i);
        if in_order {
            return false;
        }
        let mut taken = vec![false; self.slots.len()];
        let mut order: Vec<usize> = Vec::with_capacity(self.slots.len());
        for &p in visits {
            if let Some(t) = taken.get_mut(p as usize) {
                if !*t {
                    *t = true;
                    order.push(p as usize);
                }
            }
        }
        order.extend((0..self.slots.len()).filter(|&p| !taken[p]));
        self.slots = order
            .iter()
            .filter_map(|&p| self.slots.get(p).copied())
            .collect();
        if self.track_last_t {
            self.last_t = order
                .iter()
                .map(|&p| self.last_t.get(p).copied().unwrap_or(i64::MIN))
                .collect();
        }
        true
    }

    /// Drops the slots for which `gone` is true, keeping the order. True
    /// if any was dropped.
    fn evict(&mut self, gone: impl Fn(&Slot) -> bool) -> bool {
        let before = self.slots.len();
        if self.track_last_t {
            let mut keep = self.slots.iter().map(|s| !gone(s));
            self.last_t.retain(|_| keep.next().unwrap_or(true));
        }
        self.slots.retain(|s| !gone(s));
        self.slots.len() != before
    }
}

/// A table of positions in `slots`, hashed by the key's low word.
fn build_index(slots: &[Slot]) -> HashTable<u32> {
    let mut index = HashTable::with_capacity(slots.len());
    for (pos, s) in slots.iter().enumerate() {
        index.insert_unique(key_hash(s.key), pos as u32, |&i| {
            slots.get(i as usize).map_or(0, |s| key_hash(s.key))
        });
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot stays at 24 bytes: the per-series cost of the cache at 400k
    /// series.
    #[test]
    fn slot_stays_24_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
    }

    #[test]
    fn the_series_expected_next_tells_its_length() {
        let texts: [&[u8]; 3] = [b"up", &[b'a'; 70_000], b"a{b=\"c\"}"];
        let mut c = ScrapeCache::new(false);
        let mut stale = Vec::new();
        let it = c.begin();
        for (i, t) in texts.iter().enumerate() {
            c.get_mut(key(t));
            c.insert(key(t), new(i as u64 + 1, it));
        }
        c.finish_success(&mut stale);
        c.begin();
        let mut lens = Vec::new();
        for t in texts {
            lens.push(c.next_len());
            assert!(c.is_next(key(t)));
            assert!(c.get_mut(key(t)).is_some());
        }
        assert_eq!(lens, [Some(2), None, Some(8)]);
        assert_eq!(c.next_len(), None, "nothing after the last");
        // Texts of different lengths never share a key.
        assert_ne!(key(b"ab") >> LEN_SHIFT, key(b"abc") >> LEN_SHIFT);
    }

    fn new(series: u64, iter: u32) -> NewEntry {
        NewEntry {
            series: SeriesRef(series),
            iter,
            stale_tracked: true,
            histogram: false,
            last_t: i64::MIN,
        }
    }

    fn k(i: u128) -> u128 {
        i << 70 | i
    }

    #[test]
    fn lookups_in_and_out_of_order_and_eviction_keep_entries_findable() {
        let mut c = ScrapeCache::new(false);
        let mut stale = Vec::new();
        let it = c.begin();
        for i in 0..100u128 {
            assert!(c.get_mut(k(i)).is_none());
            c.insert(k(i), new(i as u64 + 1, it));
        }
        c.finish_success(&mut stale);
        // Reverse order: every lookup misses the cursor and uses the index.
        let it = c.begin();
        for i in (0..100u128).rev() {
            let mut e = c.get_mut(k(i)).unwrap();
            assert_eq!(e.series(), SeriesRef(i as u64 + 1));
            if i % 2 == 0 {
                e.touch(it, false);
            }
        }
        c.finish_success(&mut stale);
        let mut gone: Vec<u64> = stale.iter().map(|s| s.series.0).collect();
        gone.sort_unstable();
        let odd: Vec<u64> = (0..100u64).filter(|i| i % 2 == 1).map(|i| i + 1).collect();
        assert_eq!(gone, odd, "series absent from this scrape go stale");
        // Odd keys unseen for more than the eviction horizon are dropped;
        // even ones stay findable after the compaction.
        for _ in 0..=EVICT_AFTER_ITERATIONS {
            let it = c.begin();
            for i in (0..100u128).step_by(2) {
                c.get_mut(k(i)).unwrap().touch(it, false);
            }
            c.finish_success(&mut stale);
        }
        assert_eq!(c.len(), 50);
        for i in 0..100u128 {
            assert_eq!(c.get_mut(k(i)).is_some(), i % 2 == 0, "key {i}");
        }
    }

    /// Slots keep 14 bits of the iteration: staleness and eviction stay
    /// right across the wrap, and no slot reads as "never seen".
    #[test]
    fn staleness_and_eviction_hold_across_the_slot_iteration_wrap() {
        let mut c = ScrapeCache::new(false);
        c.iter = (1 << 14) - 3;
        let mut stale = Vec::new();
        let it = c.begin();
        for i in 0..4u128 {
            c.get_mut(k(i));
            c.insert(k(i), new(i as u64 + 1, it));
        }
        c.finish_success(&mut stale);
        for round in 0..=EVICT_AFTER_ITERATIONS {
            let it = c.begin();
            assert_ne!(slot_iter(it), 0);
            // Series 0 and 1 stay; 2 leaves after the first round, 3 is
            // seen every other round.
            let keep: &[u128] = if round % 2 == 0 { &[0, 1, 3] } else { &[0, 1] };
            for &i in keep {
                let mut e = c.get_mut(k(i)).unwrap();
                assert!(!e.seen_in(it));
                e.touch(it, false);
                assert!(e.seen_in(it));
            }
            c.finish_success(&mut stale);
            let mut gone: Vec<u64> = stale.iter().map(|s| s.series.0).collect();
            gone.sort_unstable();
            let want: Vec<u64> = match round {
                0 => vec![3],
                r if r % 2 == 1 => vec![4],
                _ => vec![],
            };
            assert_eq!(gone, want, "round {round} (iteration {it})");
        }
        assert!(
            c.get_mut(k(2)).is_none(),
            "unseen past the horizon: evicted"
        );
        assert!(c.get_mut(k(0)).is_some());
        assert!(c.get_mut(k(3)).is_some());
    }

    #[test]
    fn a_changed_order_is_learnt_and_the_index_dropped_once_idle_or_after_a_first_scrape() {
        let mut c = ScrapeCache::new(false);
        let mut stale = Vec::new();
        let order_a: Vec<u128> = (0..50).collect();
        // A new series in the middle, the rest shuffled.
        let mut order_b: Vec<u128> = (0..50).rev().collect();
        order_b.insert(10, 99);
        let scrape = |c: &mut ScrapeCache, order: &[u128], stale: &mut Vec<StaleSeries>| {
            let it = c.begin();
            for &i in order {
                match c.get_mut(k(i)) {
                    Some(mut e) => e.touch(it, false),
                    None => c.insert(k(i), new(i as u64 + 1, it)),
                }
            }
            c.finish_success(stale);
        };
        scrape(&mut c, &order_a, &mut stale);
        assert!(
            c.index.is_none(),
            "a first scrape's index is dropped at its end"
        );
        scrape(&mut c, &order_b, &mut stale);
        assert!(stale.is_empty());
        let keys: Vec<u64> = c.slots.iter().map(|s| s.series().0 - 1).collect();
        let want: Vec<u64> = order_b.iter().map(|&i| i as u64).collect();
        assert_eq!(keys, want, "slots follow the new exposition order");
        for _ in 0..INDEX_IDLE_SCRAPES {
            scrape(&mut c, &order_b, &mut stale);
        }
        assert!(c.index.is_none(), "sequential scrapes need no index");
        scrape(&mut c, &order_a, &mut stale);
        assert_eq!(stale.len(), 1, "only the new series went away");
        assert_eq!(c.len(), 51);
    }

    #[test]
    fn last_t_is_kept_only_when_tracked_and_follows_reordering() {
        let mut c = ScrapeCache::new(true);
        let mut stale = Vec::new();
        let it = c.begin();
        for i in 0..3u128 {
            c.get_mut(k(i));
            c.insert(
                k(i),
                NewEntry {
                    last_t: 100 + i as i64,
                    ..new(i as u64 + 1, it)
                },
            );
        }
        c.finish_success(&mut stale);
        let it = c.begin();
        for i in [2u128, 0, 1] {
            let mut e = c.get_mut(k(i)).unwrap();
            e.touch(it, false);
            e.raise_last_t(50);
        }
        c.finish_success(&mut stale);
        for i in 0..3u128 {
            assert_eq!(c.get_mut(k(i)).unwrap().last_t(), 100 + i as i64);
        }
        let mut untracked = ScrapeCache::new(false);
        let it = untracked.begin();
        untracked.insert(k(1), new(1, it));
        let mut e = untracked.get_mut(k(1)).unwrap();
        e.raise_last_t(5);
        assert_eq!(e.last_t(), i64::MIN);
    }
}
