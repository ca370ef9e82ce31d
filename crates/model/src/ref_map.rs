//! [`RefMap`]: a map from [`SeriesRef`] to a value, stored as an array
//! indexed by the ref's slot.
//!
//! Every forwarded sample looks up its series' labels by ref. With the
//! storage's dense `generation << 32 | slot` refs an array lookup replaces a
//! hash probe into a table of hundreds of thousands of entries (a cache miss
//! per sample) and costs 4 bytes of generation per entry instead of a
//! hash table's key, control byte and spare capacity. Refs that do not fit
//! the array (a slot beyond [`RefMap::DENSE_SLOTS`], or a slot already held
//! by another generation) go to a small overflow hash map, so any ref works.

use std::collections::HashMap;

use crate::SeriesRef;

/// A map keyed by series reference; see the module docs.
#[derive(Debug, Clone)]
pub struct RefMap<V> {
    dense: Vec<Option<(u32, V)>>,
    overflow: HashMap<u64, V>,
    len: usize,
}

impl<V> Default for RefMap<V> {
    fn default() -> Self {
        RefMap {
            dense: Vec::new(),
            overflow: HashMap::new(),
            len: 0,
        }
    }
}

impl<V> RefMap<V> {
    /// Slots below this are kept in the array.
    pub const DENSE_SLOTS: u32 = 1 << 26;

    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, r: SeriesRef) -> Option<&V> {
        if let Some(Some((g, v))) = self.dense.get(r.slot() as usize) {
            if *g == r.generation() {
                return Some(v);
            }
        }
        if self.overflow.is_empty() {
            return None;
        }
        self.overflow.get(&r.0)
    }

    pub fn get_mut(&mut self, r: SeriesRef) -> Option<&mut V> {
        let slot = r.slot() as usize;
        let in_dense = matches!(self.dense.get(slot), Some(Some((g, _))) if *g == r.generation());
        if in_dense {
            return self.dense.get_mut(slot)?.as_mut().map(|(_, v)| v);
        }
        self.overflow.get_mut(&r.0)
    }

    /// Inserts or replaces; returns the previous value of `r`.
    pub fn insert(&mut self, r: SeriesRef, value: V) -> Option<V> {
        let slot = r.slot();
        if slot < Self::DENSE_SLOTS {
            let idx = slot as usize;
            if idx >= self.dense.len() {
                self.dense.resize_with(idx + 1, || None);
            }
            if let Some(cell) = self.dense.get_mut(idx) {
                match cell {
                    Some((g, v)) if *g == r.generation() => {
                        return Some(std::mem::replace(v, value));
                    }
                    // A newer generation takes the slot over: the old ref's
                    // series is gone from the storage.
                    Some((g, _)) if *g < r.generation() => {
                        *cell = Some((r.generation(), value));
                        return None;
                    }
                    None => {
                        *cell = Some((r.generation(), value));
                        self.len += 1;
                        return None;
                    }
                    Some(_) => {}
                }
            }
        }
        let old = self.overflow.insert(r.0, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, r: SeriesRef) -> Option<V> {
        let slot = r.slot() as usize;
        if let Some(cell) = self.dense.get_mut(slot) {
            if matches!(cell, Some((g, _)) if *g == r.generation()) {
                self.len -= 1;
                return cell.take().map(|(_, v)| v);
            }
        }
        let old = self.overflow.remove(&r.0);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Keeps only the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(SeriesRef, &V) -> bool) {
        let mut removed = 0;
        for (slot, cell) in self.dense.iter_mut().enumerate() {
            if let Some((g, v)) = cell {
                if !keep(SeriesRef(u64::from(*g) << 32 | slot as u64), v) {
                    *cell = None;
                    removed += 1;
                }
            }
        }
        let before = self.overflow.len();
        self.overflow.retain(|r, v| keep(SeriesRef(*r), v));
        self.len -= removed + (before - self.overflow.len());
    }

    pub fn clear(&mut self) {
        self.dense.clear();
        self.overflow.clear();
        self.len = 0;
    }

    /// Every entry, dense slots first.
    pub fn iter(&self) -> impl Iterator<Item = (SeriesRef, &V)> + '_ {
        let dense = self.dense.iter().enumerate().filter_map(|(slot, cell)| {
            let (g, v) = cell.as_ref()?;
            Some((SeriesRef(u64::from(*g) << 32 | slot as u64), v))
        });
        dense.chain(self.overflow.iter().map(|(r, v)| (SeriesRef(*r), v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(generation: u32, slot: u32) -> SeriesRef {
        SeriesRef(u64::from(generation) << 32 | u64::from(slot))
    }

    #[test]
    fn generations_of_one_slot_are_different_keys() {
        let mut m = RefMap::new();
        assert_eq!(m.insert(r(0, 3), "a"), None);
        assert_eq!(m.get(r(0, 3)), Some(&"a"));
        assert_eq!(m.get(r(1, 3)), None);
        // The newer generation replaces the older one in place.
        assert_eq!(m.insert(r(1, 3), "b"), None);
        assert_eq!(m.get(r(0, 3)), None);
        assert_eq!(m.get(r(1, 3)), Some(&"b"));
        assert_eq!(m.len(), 1);
        // An older generation arriving late goes to the overflow map.
        assert_eq!(m.insert(r(0, 3), "late"), None);
        assert_eq!(m.get(r(0, 3)), Some(&"late"));
        assert_eq!(m.get(r(1, 3)), Some(&"b"));
        assert_eq!(m.len(), 2);
        assert_eq!(m.remove(r(1, 3)), Some("b"));
        assert_eq!(m.remove(r(0, 3)), Some("late"));
        assert!(m.is_empty());
    }

    #[test]
    fn huge_refs_use_the_overflow_map() {
        let mut m = RefMap::new();
        let huge = SeriesRef(u64::MAX);
        m.insert(huge, 1);
        m.insert(r(0, 1), 2);
        *m.get_mut(huge).unwrap_or(&mut 0) += 10;
        assert_eq!(m.get(huge), Some(&11));
        let mut all: Vec<_> = m.iter().map(|(k, v)| (k, *v)).collect();
        all.sort();
        assert_eq!(all, vec![(r(0, 1), 2), (huge, 11)]);
        assert_eq!(m.insert(r(0, 1), 5), Some(2));
        assert_eq!(m.len(), 2);
        m.retain(|k, _| k != huge);
        assert_eq!(m.len(), 1);
        assert_eq!(m.get(huge), None);
        m.retain(|_, v| *v != 5);
        assert!(m.is_empty() && m.get(r(0, 1)).is_none());
    }
}
