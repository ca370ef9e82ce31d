//! [`LabelStore`]: the label sets of every series, by [`SeriesRef`], as
//! lists of interned pairs.
//!
//! The agent keeps one label set per active series for as long as the WAL
//! may still hold its samples; at hundreds of thousands of series that is
//! most of its memory. Here a set is a varint count followed by
//! [`PairId`]s (2–3 bytes a label, their length in the first byte; see
//! `put_id`) in one shared byte arena, found by the series' slot, and the
//! pair text lives once in a [`PairTable`]. The WAL's
//! series table owns the store; remote-write queues read it (behind a
//! read-write lock, see [`SharedLabelStore`]) to encode each sample's labels
//! straight from the interned wire form.
//!
//! A ref is checked against the generation stored with its set, so a ref
//! of a collected series never reads its successor's labels. Refs replayed
//! from an old WAL that had to be renumbered are followed through
//! [`LabelStore::alias`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use hashbrown::HashTable;

use crate::pairs::{
    get_uvarint, put_uvarint, PairId, PairScratch, PairTable, PairTableFull, StoredLabel,
};
use crate::{arena, Labels, SeriesRef};

/// A store shared between the storage (writer) and its readers.
pub type SharedLabelStore = Arc<parking_lot::RwLock<LabelStore>>;

#[derive(Clone, Copy, Debug)]
struct SetEntry {
    /// Offset of the set in `ids`; `EMPTY` when the slot holds no series.
    offset: u32,
    generation: u32,
}

const EMPTY: u32 = u32::MAX;
const EMPTY_ENTRY: SetEntry = SetEntry {
    offset: EMPTY,
    generation: 0,
};

/// Arena offsets are 32-bit.
const MAX_IDS: usize = u32::MAX as usize;

/// See the module docs.
#[derive(Default)]
pub struct LabelStore {
    pairs: PairTable,
    sets: Vec<SetEntry>,
    ids: Vec<u8>,
    dead_bytes: usize,
    /// Slots, hashed by their set's bytes (interned ids make equal label
    /// sets equal bytes).
    by_labels: HashTable<u32>,
    /// Replayed refs that were given another ref → that ref.
    aliases: HashMap<SeriesRef, SeriesRef>,
    live: usize,
    scratch: PairScratch,
    set_scratch: Vec<u8>,
}

/// The pair ids of one set, in label-name order.
#[derive(Clone)]
pub struct PairIds<'a> {
    rest: &'a [u8],
    left: usize,
}

impl Iterator for PairIds<'_> {
    type Item = PairId;

    fn next(&mut self) -> Option<PairId> {
        if self.left == 0 {
            return None;
        }
        let (id, n) = get_id(self.rest)?;
        self.rest = self.rest.get(n..)?;
        self.left -= 1;
        Some(id)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

/// A pair id as a set stores it: 1, 2, 3 or 5 bytes, little-endian, the
/// low two bits of the first byte saying which (0–2: one to three bytes
/// holding the id above those bits; 3: the id in the four bytes after).
/// As short as a varint for the ids a store hands out (up to 2²² in three
/// bytes, against 2²¹), but read with one load, a shift and a mask: the
/// varint took ~29 instructions an id (six ids a sample) and its length
/// branch, which no predictor learns, mispredicted.
fn put_id(out: &mut Vec<u8>, id: PairId) {
    let v = id << 2;
    match id {
        0..0x40 => out.push(v as u8),
        0x40..0x4000 => out.extend_from_slice(&(v as u16 | 1).to_le_bytes()),
        0x4000..0x40_0000 => out.extend_from_slice(&(v | 2).to_le_bytes()[..3]),
        _ => {
            out.push(3);
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
}

/// Bits of the id in the first four bytes, by length tag.
const ID_MASKS: [u32; 3] = [0x3f, 0x3fff, 0x3f_ffff];

/// Reads the id [`put_id`] wrote at the start of `buf`: (id, bytes).
fn get_id(buf: &[u8]) -> Option<(PairId, usize)> {
    let word = match buf.first_chunk::<4>() {
        Some(word) => u32::from_le_bytes(*word),
        // Near the arena's end: the bytes there, zeros after them.
        None => {
            let mut word = [0u8; 4];
            word.get_mut(..buf.len())?.copy_from_slice(buf);
            u32::from_le_bytes(word)
        }
    };
    let tag = (word & 3) as usize;
    if let Some(mask) = ID_MASKS.get(tag) {
        return (tag < buf.len()).then_some(((word >> 2) & mask, tag + 1));
    }
    let id = buf.get(1..5)?.first_chunk::<4>()?;
    Some((u32::from_le_bytes(*id), 5))
}

fn hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// The bytes of the set starting at `ids[offset]`: count then ids.
fn set_slice(ids: &[u8], offset: u32) -> &[u8] {
    let Some(rest) = ids.get(offset as usize..) else {
        return &[];
    };
    let Some((count, mut len)) = get_uvarint(rest) else {
        return &[];
    };
    for _ in 0..count {
        match rest.get(len..).and_then(get_id) {
            Some((_, n)) => len += n,
            None => return &[],
        }
    }
    rest.get(..len).unwrap_or_default()
}

fn pair_ids(set: &[u8]) -> PairIds<'_> {
    match get_uvarint(set) {
        Some((count, n)) => PairIds {
            rest: set.get(n..).unwrap_or_default(),
            left: count as usize,
        },
        None => PairIds { rest: &[], left: 0 },
    }
}

impl LabelStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new store behind the lock its readers share.
    pub fn shared() -> SharedLabelStore {
        Arc::new(parking_lot::RwLock::new(Self::new()))
    }

    /// Series held.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    pub fn pairs(&self) -> &PairTable {
        &self.pairs
    }

    /// Heap bytes held, for memory accounting.
    pub fn heap_size(&self) -> usize {
        self.pairs.heap_size()
            + self.sets.capacity() * std::mem::size_of::<SetEntry>()
            + self.ids.capacity()
            + self.by_labels.capacity() * (std::mem::size_of::<u32>() + 1)
    }

    fn entry(&self, r: SeriesRef) -> Option<SetEntry> {
        let e = *self.sets.get(r.slot() as usize)?;
        (e.offset != EMPTY && e.generation == r.generation()).then_some(e)
    }

    /// The live ref `r` stands for: itself, or what replay renumbered it to.
    pub fn resolve(&self, r: SeriesRef) -> Option<SeriesRef> {
        if self.entry(r).is_some() {
            return Some(r);
        }
        if self.aliases.is_empty() {
            return None;
        }
        let to = *self.aliases.get(&r)?;
        self.entry(to).map(|_| to)
    }

    /// The pair ids of series `r` (following aliases).
    pub fn pair_ids(&self, r: SeriesRef) -> Option<PairIds<'_>> {
        let r = self.resolve(r)?;
        let e = self.entry(r)?;
        // The iterator stops after the count, so the set's end need not be
        // found first.
        Some(pair_ids(self.ids.get(e.offset as usize..)?))
    }

    /// The labels of series `r`, borrowed from the store unless stored
    /// packed.
    pub fn labels_iter(&self, r: SeriesRef) -> Option<impl Iterator<Item = StoredLabel<'_>> + '_> {
        let ids = self.pair_ids(r)?;
        Some(ids.filter_map(|id| self.pairs.label(id)))
    }

    /// The labels of series `r`, as an owned set.
    pub fn labels(&self, r: SeriesRef) -> Option<Labels> {
        Labels::from_sorted(self.labels_iter(r)?.map(|l| (l.name, l.value)))
    }

    /// The value of `__name__` of series `r`.
    pub fn metric_name(&self, r: SeriesRef) -> Option<Cow<'_, str>> {
        self.labels_iter(r)?
            .find(|l| l.name == crate::METRIC_NAME)
            .map(|l| l.value)
    }

    /// Encodes the ids of `labels` into `set_scratch` if every pair is
    /// interned (without taking references).
    fn encode_existing(&mut self, labels: &Labels) -> bool {
        self.set_scratch.clear();
        put_uvarint(&mut self.set_scratch, labels.len() as u64);
        for l in labels {
            match self.pairs.lookup(l.name, l.value, &mut self.scratch) {
                Some(id) => put_id(&mut self.set_scratch, id),
                None => return false,
            }
        }
        true
    }

    /// The live series with exactly these labels.
    pub fn find(&mut self, labels: &Labels) -> Option<SeriesRef> {
        if !self.encode_existing(labels) {
            return None;
        }
        let (sets, ids, want) = (&self.sets, &self.ids, &self.set_scratch);
        let slot = *self.by_labels.find(hash(want), |&slot| {
            sets.get(slot as usize)
                .is_some_and(|e| e.offset != EMPTY && set_slice(ids, e.offset) == want.as_slice())
        })?;
        let e = self.sets.get(slot as usize)?;
        Some(SeriesRef(u64::from(e.generation) << 32 | u64::from(slot)))
    }

    /// Stores `labels` as series `r`, whose slot must be free.
    pub fn insert(&mut self, r: SeriesRef, labels: &Labels) -> Result<(), PairTableFull> {
        let slot = r.slot() as usize;
        if self.sets.get(slot).is_some_and(|e| e.offset != EMPTY) {
            self.remove_slot(slot);
        }
        self.set_scratch.clear();
        put_uvarint(&mut self.set_scratch, labels.len() as u64);
        let mut taken: Vec<PairId> = Vec::with_capacity(labels.len());
        for l in labels {
            match self.pairs.intern(l.name, l.value, &mut self.scratch) {
                Ok(id) => {
                    taken.push(id);
                    put_id(&mut self.set_scratch, id);
                }
                Err(e) => {
                    for id in taken {
                        self.pairs.release(id);
                    }
                    return Err(e);
                }
            }
        }
        if self.ids.len() + self.set_scratch.len() > MAX_IDS {
            self.compact();
        }
        if self.ids.len() + self.set_scratch.len() > MAX_IDS {
            for id in taken {
                self.pairs.release(id);
            }
            return Err(PairTableFull);
        }
        let offset = self.ids.len() as u32;
        arena::append(&mut self.ids, &self.set_scratch);
        if slot >= self.sets.len() {
            arena::resize_gently(&mut self.sets, slot + 1, EMPTY_ENTRY);
        }
        if let Some(e) = self.sets.get_mut(slot) {
            *e = SetEntry {
                offset,
                generation: r.generation(),
            };
        }
        let (sets, ids) = (&self.sets, &self.ids);
        self.by_labels
            .insert_unique(hash(&self.set_scratch), slot as u32, |&s| {
                sets.get(s as usize)
                    .map_or(0, |e| hash(set_slice(ids, e.offset)))
            });
        self.live += 1;
        Ok(())
    }

    /// Forgets series `r` (and the pairs only it used).
    pub fn remove(&mut self, r: SeriesRef) {
        if self.entry(r).is_some() {
            self.remove_slot(r.slot() as usize);
        }
    }

    fn remove_slot(&mut self, slot: usize) {
        let Some(e) = self.sets.get(slot).copied() else {
            return;
        };
        if e.offset == EMPTY {
            return;
        }
        let set = set_slice(&self.ids, e.offset);
        let h = hash(set);
        self.dead_bytes += set.len();
        for id in pair_ids(set) {
            self.pairs.release(id);
        }
        if let Ok(found) = self.by_labels.find_entry(h, |&s| s as usize == slot) {
            found.remove();
        }
        if let Some(e) = self.sets.get_mut(slot) {
            *e = EMPTY_ENTRY;
        }
        self.live -= 1;
        if arena::should_compact(self.dead_bytes, self.ids.len()) {
            self.compact();
        }
    }

    /// Makes `from` (a ref read back from the WAL) stand for `to`.
    pub fn alias(&mut self, from: SeriesRef, to: SeriesRef) {
        self.aliases.insert(from, to);
    }

    /// Forgets aliases whose target is gone (after garbage collection).
    pub fn prune_aliases(&mut self) {
        let sets = &self.sets;
        self.aliases.retain(|_, to| {
            sets.get(to.slot() as usize)
                .is_some_and(|e| e.offset != EMPTY && e.generation == to.generation())
        });
    }

    /// Rewrites the set arena with only live sets (offsets change, refs
    /// and hashes do not).
    fn compact(&mut self) {
        if self.dead_bytes == 0 {
            return;
        }
        let mut ids = arena::with_live(self.ids.len() - self.dead_bytes);
        for e in self.sets.iter_mut().filter(|e| e.offset != EMPTY) {
            let set = set_slice(&self.ids, e.offset);
            e.offset = ids.len() as u32;
            ids.extend_from_slice(set);
        }
        self.ids = ids;
        self.dead_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn labels(i: usize) -> Labels {
        Labels::from_pairs([("__name__", "m"), ("job", "j"), ("i", &i.to_string())])
    }

    fn r(slot: u64, generation: u64) -> SeriesRef {
        SeriesRef(generation << 32 | slot)
    }

    proptest::proptest! {
        /// Every id reads back as written, whatever follows it, in the
        /// fewest bytes its tag allows.
        #[test]
        fn ids_read_back_as_written(
            id in proptest::prop_oneof![
                proptest::prelude::Just(0u32),
                proptest::prelude::Just(0x3f),
                proptest::prelude::Just(0x40),
                proptest::prelude::Just(0x3fff),
                proptest::prelude::Just(0x4000),
                proptest::prelude::Just(0x3f_ffff),
                proptest::prelude::Just(0x40_0000),
                proptest::prelude::Just(u32::MAX),
                proptest::prelude::any::<u32>(),
                0u32..300_000,
            ],
            after in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..6),
        ) {
            let mut buf = Vec::new();
            put_id(&mut buf, id);
            let len = buf.len();
            let fewest = match id {
                0..0x40 => 1,
                0x40..0x4000 => 2,
                0x4000..0x40_0000 => 3,
                _ => 5,
            };
            proptest::prop_assert_eq!(len, fewest);
            buf.extend_from_slice(&after);
            proptest::prop_assert_eq!(get_id(&buf), Some((id, len)));
        }

        /// A truncated id is refused, not read from bytes past the end.
        #[test]
        fn truncated_ids_are_refused(id in proptest::prelude::any::<u32>()) {
            let mut buf = Vec::new();
            put_id(&mut buf, id);
            for cut in 0..buf.len() {
                proptest::prop_assert_eq!(get_id(&buf[..cut]), None);
            }
        }
    }

    #[test]
    fn sets_round_trip_and_share_pairs() {
        let mut s = LabelStore::new();
        for i in 0..10 {
            s.insert(r(i as u64 + 1, 0), &labels(i)).unwrap();
        }
        assert_eq!(s.len(), 10);
        assert_eq!(s.pairs().len(), 12, "name and job shared by all");
        assert_eq!(s.labels(r(4, 0)), Some(labels(3)));
        assert_eq!(s.metric_name(r(4, 0)).as_deref(), Some("m"));
        assert_eq!(s.find(&labels(7)), Some(r(8, 0)));
        assert_eq!(s.find(&labels(70)), None);
        let mut wire = Vec::new();
        for id in s.pair_ids(r(1, 0)).unwrap() {
            s.pairs().append_wire(id, &mut wire);
        }
        assert!(wire.starts_with(b"\x0a\x0d\x0a\x08__name__\x12\x01m"));
    }

    #[test]
    fn a_stale_generation_reads_nothing() {
        let mut s = LabelStore::new();
        s.insert(r(3, 0), &labels(1)).unwrap();
        s.remove(r(3, 0));
        assert!(s.labels(r(3, 0)).is_none());
        assert_eq!(s.pairs().len(), 0, "pairs released with their last set");
        s.insert(r(3, 1), &labels(2)).unwrap();
        assert!(s.labels(r(3, 0)).is_none(), "old generation");
        assert_eq!(s.labels(r(3, 1)), Some(labels(2)));
        assert_eq!(s.find(&labels(1)), None);
        assert_eq!(s.find(&labels(2)), Some(r(3, 1)));
    }

    #[test]
    fn aliases_lead_to_the_live_series() {
        let mut s = LabelStore::new();
        s.insert(r(2, 0), &labels(1)).unwrap();
        s.alias(SeriesRef(99), r(2, 0));
        assert_eq!(s.labels(SeriesRef(99)), Some(labels(1)));
        s.remove(r(2, 0));
        s.prune_aliases();
        assert!(s.aliases.is_empty());
    }

    #[test]
    fn churn_keeps_the_arenas_bounded() {
        let mut s = LabelStore::new();
        let long = "x".repeat(200);
        for round in 0..40u64 {
            for i in 0..500u64 {
                let l =
                    Labels::from_pairs([("a", format!("{round}-{i}-{long}")), ("b", "c".into())]);
                s.insert(r(i + 1, round), &l).unwrap();
            }
            for i in 0..500u64 {
                s.remove(r(i + 1, round));
            }
        }
        assert!(s.is_empty());
        assert!(s.ids.len() < 1 << 20);
        assert!(s.pairs().is_empty());
    }
}
