//! The storage's series table: a dense, slot-indexed array instead of
//! hash maps keyed by reference.
//!
//! A [`SeriesRef`] is `generation << 32 | slot`. The slot indexes two
//! parallel vectors: a 16-byte [`Hot`] record that every appended sample
//! touches (newest timestamp, newest segment, liveness) and the colder
//! metadata, a 4-byte id of an interned value. Series of one target are
//! created together, so
//! their slots are neighbours and a scrape walks the hot array almost
//! sequentially; a hash map of refs made every append a cache miss (it was
//! a fifth of the agent's CPU at 400k series).
//!
//! Slots of garbage-collected series are reused with the next generation,
//! so a ref never names two different series while any record of the old
//! one can still be read. Fresh slots start at generation 0, which makes the
//! refs of a new table the plain counter 1, 2, 3, … that earlier versions
//! wrote. Slot 0 is never used: ref 0 is [`SeriesRef::NONE`].
//!
//! Label sets live in a [`LabelStore`] shared with the remote-write
//! queues (interned pairs, a few bytes of ids per series); the table keeps
//! only what appends and commits need.

use std::sync::Arc;

use hashbrown::HashMap;
use tributary_model::{
    resize_gently, LabelStore, Labels, PairTableFull, SeriesRef, SharedLabelStore, Timestamp,
};

use crate::storage::SeriesMetadata;

/// Generations use 30 bits; the two top bits of [`Hot::state`] are flags.
const GEN_MASK: u32 = (1 << 30) - 1;
const LIVE: u32 = 1 << 31;
const LOGGED: u32 = 1 << 30;
/// Slots beyond this are not created from replayed refs (a foreign or
/// damaged WAL); such series get a fresh slot instead.
const MAX_SLOT: u64 = 1 << 28;

/// What every sample append reads and writes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hot {
    pub last_ts: Timestamp,
    /// Newest segment holding the Series record or a sample of the series.
    pub last_segment: u32,
    /// `LIVE | LOGGED | generation`.
    state: u32,
}

impl Hot {
    const FREE: Hot = Hot {
        last_ts: Timestamp::MIN,
        last_segment: 0,
        state: 0,
    };

    fn generation(&self) -> u32 {
        self.state & GEN_MASK
    }

    fn is_live(&self) -> bool {
        self.state & LIVE != 0
    }

    /// Whether its Series record has been written.
    pub fn logged(&self) -> bool {
        self.state & LOGGED != 0
    }

    pub fn set_logged(&mut self) {
        self.state |= LOGGED;
    }
}

/// The metadata logged for each slot. The distinct values are stored once
/// and counted by the slots using them: a slot holds a 4-byte index rather
/// than an 8-byte pointer (at 400k series, 1.6 MB less), and a family's
/// value is one allocation however many targets expose it.
#[derive(Default)]
struct SlotMetadata {
    /// Per slot: 0 = none logged yet, else the value's index + 1.
    by_slot: Vec<u32>,
    /// Index → (value, slots using it); `None` when free.
    values: Vec<Option<(Arc<SeriesMetadata>, u32)>>,
    index: HashMap<Arc<SeriesMetadata>, u32>,
    free: Vec<u32>,
}

impl SlotMetadata {
    fn get(&self, slot: usize) -> Option<&Arc<SeriesMetadata>> {
        let idx = self.by_slot.get(slot)?.checked_sub(1)?;
        self.values.get(idx as usize)?.as_ref().map(|(v, _)| v)
    }

    fn set(&mut self, slot: usize, value: &Arc<SeriesMetadata>) {
        if self.get(slot) == Some(value) {
            return;
        }
        // Slots get an entry once metadata is logged for them.
        if self.by_slot.len() <= slot {
            resize_gently(&mut self.by_slot, slot + 1, 0);
        }
        let id = self.acquire(value);
        self.clear(slot);
        if let Some(s) = self.by_slot.get_mut(slot) {
            *s = id;
        }
    }

    fn clear(&mut self, slot: usize) {
        let Some(id) = self.by_slot.get_mut(slot) else {
            return;
        };
        let Some(idx) = std::mem::replace(id, 0).checked_sub(1) else {
            return;
        };
        let Some(entry) = self.values.get_mut(idx as usize) else {
            return;
        };
        if let Some((value, refs)) = entry {
            *refs -= 1;
            if *refs == 0 {
                self.index.remove(&**value);
                *entry = None;
                self.free.push(idx);
            }
        }
    }

    /// The id (index + 1) of `value`, counted once more.
    fn acquire(&mut self, value: &Arc<SeriesMetadata>) -> u32 {
        if let Some(&idx) = self.index.get(value) {
            if let Some(Some((_, refs))) = self.values.get_mut(idx as usize) {
                *refs += 1;
                return idx + 1;
            }
        }
        let entry = Some((Arc::clone(value), 1));
        let idx = match self.free.pop() {
            Some(idx) => {
                self.values[idx as usize] = entry;
                idx
            }
            None => {
                self.values.push(entry);
                (self.values.len() - 1) as u32
            }
        };
        self.index.insert(Arc::clone(value), idx);
        idx + 1
    }
}

fn slot_of(r: SeriesRef) -> u64 {
    r.0 & 0xffff_ffff
}

fn generation_of(r: SeriesRef) -> u64 {
    r.0 >> 32
}

fn make_ref(slot: u32, generation: u32) -> SeriesRef {
    SeriesRef(u64::from(generation) << 32 | u64::from(slot))
}

/// The series table. Not synchronised: the storage keeps it behind a mutex
/// (lock order: table, then its label store).
pub(crate) struct SeriesTable {
    hot: Vec<Hot>,
    metadata: SlotMetadata,
    labels: SharedLabelStore,
    /// Freed slots, reused last-in first-out.
    free: Vec<u32>,
    live: usize,
    /// Hash of the last exemplar accepted per slot (only series that have
    /// exemplars), to drop the repeats a target exposes until its next
    /// observation.
    last_exemplar: HashMap<u32, u64>,
    /// Series removed so far: a reference checked while this was unchanged
    /// still names the same live series.
    removals: u64,
}

impl Default for SeriesTable {
    fn default() -> Self {
        SeriesTable {
            hot: vec![Hot::FREE],
            metadata: SlotMetadata::default(),
            labels: LabelStore::shared(),
            free: Vec::new(),
            live: 0,
            last_exemplar: HashMap::new(),
            removals: 0,
        }
    }
}

/// Where a replayed Series record went.
pub(crate) enum Replayed {
    /// Stored under its own ref.
    Stored,
    /// Its labels already have a series, or its ref could not be used:
    /// data of the replayed ref belongs to this one.
    Alias(SeriesRef),
    /// Empty labels, ref 0, or no room for its labels: ignored.
    Ignored,
}

impl SeriesTable {
    pub fn len(&self) -> usize {
        self.live
    }

    /// The label store, for readers outside the table's lock.
    pub fn label_store(&self) -> &SharedLabelStore {
        &self.labels
    }

    /// The slot of a live series `r`, if `r` names one.
    fn slot(&self, r: SeriesRef) -> Option<usize> {
        let slot = usize::try_from(slot_of(r)).ok()?;
        let hot = self.hot.get(slot)?;
        (hot.is_live() && u64::from(hot.generation()) == generation_of(r)).then_some(slot)
    }

    pub fn hot_mut(&mut self, r: SeriesRef) -> Option<&mut Hot> {
        let slot = self.slot(r)?;
        self.hot.get_mut(slot)
    }

    pub fn hot(&self, r: SeriesRef) -> Option<&Hot> {
        let slot = self.slot(r)?;
        self.hot.get(slot)
    }

    /// The metadata of a live series (`Some(None)`: none logged yet).
    pub fn metadata(&self, r: SeriesRef) -> Option<Option<&Arc<SeriesMetadata>>> {
        let slot = self.slot(r)?;
        Some(self.metadata.get(slot))
    }

    /// Records the metadata logged for a live series; false if `r` is not one.
    pub fn set_metadata(&mut self, r: SeriesRef, value: &Arc<SeriesMetadata>) -> bool {
        let Some(slot) = self.slot(r) else {
            return false;
        };
        self.metadata.set(slot, value);
        true
    }

    /// The label set of a live series.
    pub fn labels(&self, r: SeriesRef) -> Option<Labels> {
        self.slot(r)?;
        self.labels.read().labels(r)
    }

    /// The live series with exactly these labels.
    pub fn find(&self, labels: &Labels) -> Option<SeriesRef> {
        let r = self.labels.write().find(labels)?;
        self.slot(r).map(|_| r)
    }

    /// The series for `labels`, created (not yet logged) if there is none.
    /// Returns whether it was created.
    pub fn get_or_create(&mut self, labels: &Labels) -> Result<(SeriesRef, bool), PairTableFull> {
        if let Some(r) = self.find(labels) {
            return Ok((r, false));
        }
        let slot = self.take_free_slot();
        let r = self.occupy(slot, None, labels, 0, false)?;
        Ok((r, true))
    }

    /// A slot for a new series: a freed one, else a new one at the end.
    fn take_free_slot(&mut self) -> u32 {
        while let Some(slot) = self.free.pop() {
            if self.hot.get(slot as usize).is_some_and(|h| !h.is_live()) {
                return slot;
            }
        }
        let slot = self.hot.len();
        resize_gently(&mut self.hot, slot + 1, Hot::FREE);
        slot as u32
    }

    /// Puts a series into a free `slot`. `generation` None: the next one
    /// after the slot's previous occupant. On error the slot stays free.
    fn occupy(
        &mut self,
        slot: u32,
        generation: Option<u32>,
        labels: &Labels,
        last_segment: u32,
        logged: bool,
    ) -> Result<SeriesRef, PairTableFull> {
        let idx = slot as usize;
        if idx >= self.hot.len() {
            resize_gently(&mut self.hot, idx + 1, Hot::FREE);
        }
        let generation = match generation {
            Some(g) => g,
            // A free slot holds the generation its next occupant gets: 0
            // for a slot never used (refs 1, 2, 3…), one more than the
            // previous occupant's otherwise.
            None => self.hot[idx].generation(),
        };
        let r = make_ref(slot, generation);
        if let Err(e) = self.labels.write().insert(r, labels) {
            self.free.push(slot);
            return Err(e);
        }
        self.hot[idx] = Hot {
            last_ts: Timestamp::MIN,
            last_segment,
            state: LIVE | if logged { LOGGED } else { 0 } | generation,
        };
        self.metadata.clear(idx);
        self.live += 1;
        Ok(r)
    }

    /// Adds a series read back from the WAL (logged, living at least until
    /// `segment`).
    pub fn insert_replayed(&mut self, r: SeriesRef, labels: &Labels, segment: u32) -> Replayed {
        if r.is_none() || labels.is_empty() {
            return Replayed::Ignored;
        }
        if let Some(existing) = self.find(labels) {
            if let Some(h) = self.hot_mut(existing) {
                h.last_segment = h.last_segment.max(segment);
            }
            if existing == r {
                return Replayed::Stored;
            }
            self.labels.write().alias(r, existing);
            return Replayed::Alias(existing);
        }
        let slot = slot_of(r);
        let generation = generation_of(r);
        let usable = slot > 0
            && slot < MAX_SLOT
            && generation <= u64::from(GEN_MASK)
            && self.hot.get(slot as usize).is_none_or(|h| !h.is_live());
        let stored = if usable {
            self.occupy(slot as u32, Some(generation as u32), labels, segment, true)
                .map(|_| Replayed::Stored)
        } else {
            // The ref cannot be represented (or its slot is taken): a fresh
            // series, logged again under its new ref by the next commit.
            let slot = self.take_free_slot();
            self.occupy(slot, None, labels, segment, false)
                .map(Replayed::Alias)
        };
        match stored {
            Ok(Replayed::Alias(to)) => {
                self.labels.write().alias(r, to);
                Replayed::Alias(to)
            }
            Ok(done) => done,
            Err(e) => {
                tracing::error!(series = %r, error = %e, "replayed series dropped");
                Replayed::Ignored
            }
        }
    }

    /// After replay: every unused slot below the end becomes reusable.
    pub fn rebuild_free_list(&mut self) {
        self.free = (1..self.hot.len() as u32)
            .rev()
            .filter(|&s| !self.hot[s as usize].is_live())
            .collect();
    }

    /// How many series were removed so far.
    pub fn removals(&self) -> u64 {
        self.removals
    }

    /// Removes the live series for which `remove` is true; returns how many.
    pub fn remove_where(&mut self, mut remove: impl FnMut(&Hot) -> bool) -> usize {
        let mut removed = 0;
        let mut store = self.labels.write();
        for slot in 1..self.hot.len() {
            let hot = self.hot[slot];
            if !hot.is_live() || !remove(&hot) {
                continue;
            }
            store.remove(make_ref(slot as u32, hot.generation()));
            self.hot[slot].state = (hot.generation() + 1) & GEN_MASK;
            self.metadata.clear(slot);
            self.last_exemplar.remove(&(slot as u32));
            self.free.push(slot as u32);
            removed += 1;
        }
        if removed > 0 {
            store.prune_aliases();
        }
        self.live -= removed;
        self.removals += removed as u64;
        removed
    }

    /// Every live series: (ref, hot, metadata).
    pub fn iter(
        &self,
    ) -> impl Iterator<Item = (SeriesRef, &Hot, Option<&Arc<SeriesMetadata>>)> + '_ {
        self.iter_from(0)
    }

    /// Like [`Self::iter`], from slot `from` on.
    pub fn iter_from(
        &self,
        from: usize,
    ) -> impl Iterator<Item = (SeriesRef, &Hot, Option<&Arc<SeriesMetadata>>)> + '_ {
        let hot = self.hot.get(from..).unwrap_or_default();
        hot.iter()
            .enumerate()
            .filter(|(_, h)| h.is_live())
            .map(move |(i, h)| {
                let slot = from + i;
                (
                    make_ref(slot as u32, h.generation()),
                    h,
                    self.metadata.get(slot),
                )
            })
    }

    /// Every live series' hot record, mutable.
    pub fn hot_iter_mut(&mut self) -> impl Iterator<Item = &mut Hot> + '_ {
        self.hot.iter_mut().filter(|h| h.is_live())
    }

    /// Records the exemplar `hash` for `r`; false if it repeats the last
    /// one (or `r` is not live).
    pub fn note_exemplar(&mut self, r: SeriesRef, hash: u64) -> Option<bool> {
        let slot = self.slot(r)? as u32;
        let last = self.last_exemplar.entry(slot).or_insert(0);
        if *last == hash {
            return Some(false);
        }
        *last = hash;
        Some(true)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn labels(i: usize) -> Labels {
        Labels::from_pairs([("__name__", "m"), ("i", &i.to_string())])
    }

    #[test]
    fn new_table_hands_out_the_plain_counter() {
        let mut t = SeriesTable::default();
        let refs: Vec<u64> = (0..3)
            .map(|i| t.get_or_create(&labels(i)).unwrap().0 .0)
            .collect();
        assert_eq!(refs, [1, 2, 3]);
        assert_eq!(t.get_or_create(&labels(1)).unwrap(), (SeriesRef(2), false));
        assert_eq!(t.len(), 3);
    }

    fn meta(help: &str) -> Arc<SeriesMetadata> {
        Arc::new(SeriesMetadata {
            kind: tributary_model::MetricType::Counter,
            unit: "".into(),
            help: help.into(),
        })
    }

    #[test]
    fn equal_metadata_is_stored_once_and_forgotten_with_its_last_series() {
        let mut t = SeriesTable::default();
        let refs: Vec<SeriesRef> = (0..4)
            .map(|i| t.get_or_create(&labels(i)).unwrap().0)
            .collect();
        assert_eq!(t.metadata(refs[0]), Some(None));
        // Separate allocations of one value, as separate targets log them.
        for &r in &refs[..3] {
            assert!(t.set_metadata(r, &meta("requests")));
        }
        assert!(t.set_metadata(refs[3], &meta("errors")));
        assert_eq!(t.metadata.index.len(), 2);
        let a = t.metadata(refs[0]).unwrap().unwrap();
        assert!(Arc::ptr_eq(a, t.metadata(refs[2]).unwrap().unwrap()));
        assert_eq!(&*t.metadata(refs[3]).unwrap().unwrap().help, "errors");

        // Changing a series' metadata moves its count: "requests" is
        // forgotten with its last user.
        for &r in &refs[..3] {
            assert!(t.set_metadata(r, &meta("errors")));
        }
        assert_eq!(t.metadata.index.len(), 1);
        assert_eq!(t.metadata.free.len(), 1);
        // Every series collected: no value left.
        t.remove_where(|_| true);
        assert!(t.metadata.index.is_empty());
        assert_eq!(t.metadata.free.len(), 2);
        assert!(refs.iter().all(|&r| t.metadata(r).is_none()));
        assert!(!t.set_metadata(refs[0], &meta("x")), "not a live series");

        // A reused slot starts without metadata, and freed ids are reused.
        let r = t.get_or_create(&labels(9)).unwrap().0;
        assert_eq!(t.metadata(r), Some(None));
        t.set_metadata(r, &meta("again"));
        assert_eq!(t.metadata.values.len(), 2);
    }

    /// The per-slot arrays are most of the table's memory at 400k series:
    /// they grow by a quarter, not by doubling.
    #[test]
    fn slot_arrays_grow_by_a_quarter() {
        let mut t = SeriesTable::default();
        let value = meta("m");
        for i in 0..20_000 {
            let (r, _) = t.get_or_create(&labels(i)).unwrap();
            t.set_metadata(r, &value);
        }
        let len = t.hot.len();
        assert!(
            t.hot.capacity() <= len + len / 4 + 64,
            "{}",
            t.hot.capacity()
        );
        assert_eq!(t.metadata.by_slot.len(), len);
        assert!(t.metadata.by_slot.capacity() <= len + len / 4 + 64);
    }

    #[test]
    fn reused_slot_gets_a_new_generation_and_the_old_ref_dies() {
        let mut t = SeriesTable::default();
        let (a, _) = t.get_or_create(&labels(0)).unwrap();
        let (b, _) = t.get_or_create(&labels(1)).unwrap();
        assert_eq!(t.remove_where(|h| h.last_segment == 0 && !h.logged()), 2);
        assert!(t.hot(a).is_none() && t.hot(b).is_none());
        assert!(t.find(&labels(0)).is_none());
        let (c, created) = t.get_or_create(&labels(2)).unwrap();
        assert!(created);
        assert_eq!(slot_of(c), slot_of(b), "last freed slot is reused first");
        assert_eq!(generation_of(c), 1);
        assert!(t.hot(b).is_none(), "the old ref names nothing");
        assert_eq!(t.labels(c).unwrap(), labels(2));
    }

    #[test]
    fn replay_keeps_refs_and_aliases_duplicates_and_foreign_refs() {
        let mut t = SeriesTable::default();
        assert!(matches!(
            t.insert_replayed(SeriesRef(5), &labels(0), 3),
            Replayed::Stored
        ));
        assert!(matches!(
            t.insert_replayed(SeriesRef(9), &labels(0), 4),
            Replayed::Alias(SeriesRef(5))
        ));
        assert_eq!(t.hot(SeriesRef(5)).unwrap().last_segment, 4);
        let huge = SeriesRef(u64::MAX - 1);
        let Replayed::Alias(fresh) = t.insert_replayed(huge, &labels(1), 4) else {
            panic!("foreign ref must be aliased");
        };
        assert!(
            !t.hot(fresh).unwrap().logged(),
            "logged again under its new ref"
        );
        t.rebuild_free_list();
        let (r, _) = t.get_or_create(&labels(2)).unwrap();
        assert!(slot_of(r) < 5, "gaps left by replay are reused");
        assert_eq!(t.len(), 3);
    }
}
