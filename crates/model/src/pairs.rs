//! Interned label pairs, each stored once, in remote-write wire form.
//!
//! Across the series of an agent most label *pairs* repeat: `job`,
//! `instance`, `__name__`, a container's id on every metric of that
//! container. A [`PairTable`] keeps each distinct `(name, value)` once and
//! hands out a 32-bit [`PairId`]; a series' label set is then a short list
//! of ids ([`crate::LabelStore`]). At 400k series of node/cAdvisor-like
//! targets there are ~0.45 distinct pairs per series, so this stores the
//! label text about twice less than one packed set per series, and the ids
//! take 2–3 bytes each.
//!
//! Each entry is kept exactly as remote write 1.0 puts it on the wire: the
//! complete `labels` field of a `prometheus.TimeSeries`,
//! `0x0a len(Label) 0x0a len(name) name 0x12 len(value) value`. Encoding a
//! sample's labels is then one copy per pair, and a request encoder can
//! recognise a repeated pair by its id instead of searching for repeated
//! bytes (see `tributary_remote::encode`).
//!
//! Entries are reference-counted by the label sets that use them; a pair
//! nobody uses any more is forgotten, and the arena is compacted once dead
//! bytes outweigh live ones, so churn does not grow it.

use hashbrown::HashTable;

use crate::{arena, Label};

/// An interned label pair; see [`PairTable`].
pub type PairId = u32;

const KEY_LABEL: u8 = 0x0a; // TimeSeries.labels = 1, length-delimited
const KEY_NAME: u8 = 0x0a; // Label.name = 1
const KEY_VALUE: u8 = 0x12; // Label.value = 2

/// Arena offsets are 32-bit; the arena never grows past this.
const MAX_ARENA: usize = u32::MAX as usize;

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Offset of the encoded pair in the arena; `FREE` when unused.
    offset: u32,
    /// Its length: an encoder that copies an earlier occurrence needs only
    /// this, not the bytes (which are a cache miss away).
    len: u32,
    /// Label sets using the pair.
    refs: u32,
}

const FREE: u32 = u32::MAX;

/// Why a pair could not be interned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("label pair storage is full (4 GiB of distinct label text)")]
pub struct PairTableFull;

/// The interned pairs. Not synchronised; see the module docs.
#[derive(Default)]
pub struct PairTable {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    /// Ids, hashed by their encoded bytes.
    index: HashTable<PairId>,
    free: Vec<PairId>,
    dead_bytes: usize,
}

/// Appends `v` as a protobuf varint.
pub(crate) fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Reads a varint at the start of `buf`: (value, bytes used).
pub(crate) fn get_uvarint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn uvarint_len(v: usize) -> usize {
    let bits = usize::BITS - (v | 1).leading_zeros();
    bits.div_ceil(7) as usize
}

/// Writes the wire form of `(name, value)` into `buf` (cleared first).
fn encode_pair(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    buf.clear();
    let inner = 2 + uvarint_len(name.len()) + name.len() + uvarint_len(value.len()) + value.len();
    buf.push(KEY_LABEL);
    put_uvarint(buf, inner as u64);
    buf.push(KEY_NAME);
    put_uvarint(buf, name.len() as u64);
    buf.extend_from_slice(name);
    buf.push(KEY_VALUE);
    put_uvarint(buf, value.len() as u64);
    buf.extend_from_slice(value);
}

/// Splits an encoded entry into its name and value bytes.
fn split_entry(entry: &[u8]) -> Option<(&[u8], &[u8])> {
    let (_, n) = get_uvarint(entry.get(1..)?)?;
    let rest = entry.get(1 + n..)?;
    let (nl, n) = get_uvarint(rest.get(1..)?)?;
    let name_start = 1 + n;
    let name = rest.get(name_start..name_start + nl as usize)?;
    let rest = rest.get(name_start + nl as usize..)?;
    let (vl, n) = get_uvarint(rest.get(1..)?)?;
    let value = rest.get(1 + n..1 + n + vl as usize)?;
    Some((name, value))
}

fn hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

impl PairTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Pairs in use.
    pub fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held (arena, entries, index), for memory accounting.
    pub fn heap_size(&self) -> usize {
        self.arena.capacity()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.index.capacity() * (std::mem::size_of::<PairId>() + 1)
            + self.free.capacity() * std::mem::size_of::<PairId>()
    }

    /// The pair's wire form: a complete `TimeSeries.labels` field. Empty for
    /// an id not in use.
    pub fn encoded(&self, id: PairId) -> &[u8] {
        match self.entries.get(id as usize) {
            Some(e) if e.offset != FREE => entry_slice(&self.arena, *e),
            _ => &[],
        }
    }

    /// The length of [`PairTable::encoded`] (0 for an id not in use).
    pub fn encoded_len(&self, id: PairId) -> usize {
        match self.entries.get(id as usize) {
            Some(e) if e.offset != FREE => e.len as usize,
            _ => 0,
        }
    }

    /// The pair's name and value as bytes.
    pub fn name_value(&self, id: PairId) -> Option<(&[u8], &[u8])> {
        split_entry(self.encoded(id))
    }

    /// Name and value of a pair's wire form (as [`PairTable::encoded`]
    /// returns it).
    pub fn split_wire(wire: &[u8]) -> Option<(&[u8], &[u8])> {
        split_entry(wire)
    }

    /// The pair as a [`Label`]. Interned text came from `&str`, so it is
    /// always UTF-8; `None` only for an id not in use.
    pub fn label(&self, id: PairId) -> Option<Label<'_>> {
        let (n, v) = self.name_value(id)?;
        Some(Label {
            name: std::str::from_utf8(n).ok()?,
            value: std::str::from_utf8(v).ok()?,
        })
    }

    /// The id of `(name, value)` if interned, without taking a reference.
    /// `scratch` is a reusable encoding buffer.
    pub fn lookup(&self, name: &str, value: &str, scratch: &mut Vec<u8>) -> Option<PairId> {
        encode_pair(scratch, name.as_bytes(), value.as_bytes());
        self.find_encoded(scratch)
    }

    fn find_encoded(&self, encoded: &[u8]) -> Option<PairId> {
        let (entries, arena) = (&self.entries, &self.arena);
        self.index
            .find(hash(encoded), |&id| {
                entries.get(id as usize).is_some_and(|e| {
                    e.offset != FREE
                        && arena
                            .get(e.offset as usize..)
                            .and_then(|rest| rest.get(..encoded.len()))
                            == Some(encoded)
                })
            })
            .copied()
    }

    /// Takes a reference to `(name, value)`, interning it if new.
    pub fn intern(
        &mut self,
        name: &str,
        value: &str,
        scratch: &mut Vec<u8>,
    ) -> Result<PairId, PairTableFull> {
        encode_pair(scratch, name.as_bytes(), value.as_bytes());
        if let Some(id) = self.find_encoded(scratch) {
            if let Some(e) = self.entries.get_mut(id as usize) {
                e.refs = e.refs.saturating_add(1);
            }
            return Ok(id);
        }
        if self.arena.len() + scratch.len() > MAX_ARENA {
            self.compact();
            if self.arena.len() + scratch.len() > MAX_ARENA {
                return Err(PairTableFull);
            }
        }
        let entry = Entry {
            offset: self.arena.len() as u32,
            len: scratch.len() as u32,
            refs: 1,
        };
        arena::append(&mut self.arena, scratch);
        let id = match self.free.pop() {
            Some(id) => {
                if let Some(e) = self.entries.get_mut(id as usize) {
                    *e = entry;
                }
                id
            }
            None => {
                self.entries.push(entry);
                (self.entries.len() - 1) as PairId
            }
        };
        let (entries, arena) = (&self.entries, &self.arena);
        self.index.insert_unique(hash(scratch), id, |&other| {
            entries
                .get(other as usize)
                .map_or(0, |e| hash(entry_slice(arena, *e)))
        });
        Ok(id)
    }

    /// Drops one reference to `id`; the pair is forgotten with its last.
    pub fn release(&mut self, id: PairId) {
        let Some(e) = self.entries.get_mut(id as usize) else {
            return;
        };
        if e.offset == FREE {
            return;
        }
        e.refs = e.refs.saturating_sub(1);
        if e.refs > 0 {
            return;
        }
        let e = *e;
        let bytes = entry_slice(&self.arena, e);
        let h = hash(bytes);
        self.dead_bytes += bytes.len();
        if let Ok(found) = self.index.find_entry(h, |&other| other == id) {
            found.remove();
        }
        if let Some(slot) = self.entries.get_mut(id as usize) {
            slot.offset = FREE;
        }
        self.free.push(id);
        if arena::should_compact(self.dead_bytes, self.arena.len()) {
            self.compact();
        }
    }

    /// Rewrites the arena with only the live entries (ids do not change).
    fn compact(&mut self) {
        if self.dead_bytes == 0 {
            return;
        }
        let mut arena = arena::with_live(self.arena.len() - self.dead_bytes);
        for e in self.entries.iter_mut().filter(|e| e.offset != FREE) {
            let bytes = entry_slice(&self.arena, *e);
            e.offset = arena.len() as u32;
            arena.extend_from_slice(bytes);
        }
        self.arena = arena;
        self.dead_bytes = 0;
    }
}

fn entry_slice(arena: &[u8], e: Entry) -> &[u8] {
    let start = e.offset as usize;
    arena.get(start..start + e.len as usize).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pairs_are_interned_once_and_encoded_as_remote_write_labels() {
        let mut t = PairTable::new();
        let mut s = Vec::new();
        let a = t.intern("job", "node", &mut s).unwrap();
        let b = t.intern("instance", "h:9100", &mut s).unwrap();
        assert_eq!(t.intern("job", "node", &mut s).unwrap(), a);
        assert_ne!(a, b);
        assert_eq!(t.len(), 2);
        // field 1 (len 11) { field 1 "job", field 2 "node" }
        assert_eq!(t.encoded(a), b"\x0a\x0b\x0a\x03job\x12\x04node");
        let l = t.label(b).unwrap();
        assert_eq!((l.name, l.value), ("instance", "h:9100"));
        assert_eq!(t.lookup("job", "node", &mut s), Some(a));
        assert_eq!(t.lookup("job", "other", &mut s), None);
    }

    #[test]
    fn long_values_use_multi_byte_lengths() {
        let mut t = PairTable::new();
        let mut s = Vec::new();
        let long = "v".repeat(300);
        let id = t.intern("k", &long, &mut s).unwrap();
        let l = t.label(id).unwrap();
        assert_eq!((l.name, l.value), ("k", long.as_str()));
        assert_eq!(t.encoded(id).len(), 1 + 2 + 1 + 1 + 1 + 1 + 2 + 300);
    }

    #[test]
    fn released_pairs_are_forgotten_and_their_ids_reused() {
        let mut t = PairTable::new();
        let mut s = Vec::new();
        let a = t.intern("a", "1", &mut s).unwrap();
        t.intern("a", "1", &mut s).unwrap();
        t.release(a);
        assert_eq!(t.lookup("a", "1", &mut s), Some(a), "one reference left");
        t.release(a);
        assert_eq!(t.lookup("a", "1", &mut s), None);
        assert!(t.is_empty());
        assert!(t.label(a).is_none());
        let b = t.intern("b", "2", &mut s).unwrap();
        assert_eq!(b, a, "freed id reused");
        assert_eq!(t.label(b).unwrap().value, "2");
    }

    #[test]
    fn churn_compacts_the_arena_and_keeps_live_pairs_intact() {
        let mut t = PairTable::new();
        let mut s = Vec::new();
        let keep = t.intern("keep", "me", &mut s).unwrap();
        let value = "x".repeat(1000);
        for round in 0..50 {
            let ids: Vec<PairId> = (0..100)
                .map(|i| {
                    t.intern("n", &format!("{round}-{i}-{value}"), &mut s)
                        .unwrap()
                })
                .collect();
            for id in ids {
                t.release(id);
            }
        }
        assert_eq!(t.len(), 1);
        assert!(
            t.arena.len() < 1 << 20,
            "arena {} bytes after churn",
            t.arena.len()
        );
        assert_eq!(t.label(keep).unwrap().value, "me");
        assert_eq!(t.lookup("keep", "me", &mut s), Some(keep));
    }
}
