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
//! Each entry is kept as remote write 1.0 puts it on the wire: the
//! complete `labels` field of a `prometheus.TimeSeries`,
//! `0x0a len(Label) 0x0a len(name) name 0x12 len(value) value`. Encoding a
//! sample's labels is then one copy per pair, and a request encoder can
//! recognise a repeated pair by its id instead of searching for repeated
//! bytes (see `tributary_remote::encode`) — as far as the encoder can
//! tell. Stored, a pair is packed where that is shorter
//! ([`crate::packed_text`]: hex ids at four bits a digit, frequent words —
//! the label name with its field heads among them — as one-byte codes of a
//! dictionary the table trains on its own text), and unpacked into the
//! request the first time a request carries it. A packed pair leaves out
//! the outer field head too: its length follows from the wire length the
//! entry keeps.
//!
//! The dictionary is trained once the table holds 256 KiB, and again on a
//! sample drawn across the whole table at 4 MiB (the first targets scraped
//! need not look like the rest); each training re-packs every entry (ids do
//! not change), so all entries always use the same dictionary. Re-packing
//! costs about a microsecond a pair (~120 ms at 4 MiB, once), which is why
//! it stops there.
//!
//! The index is keyed by the hash of a pair's wire form, and a candidate
//! is compared by reading its packed form against the wire form: looking a
//! pair up never packs it (packing is the costly direction), only storing
//! a new one does, and a new dictionary leaves the index as it is.
//!
//! Entries are reference-counted by the label sets that use them; a pair
//! nobody uses any more is forgotten, and the arena is compacted once dead
//! bytes outweigh live ones, so churn does not grow it.

use std::borrow::Cow;
use std::cmp::Ordering;

use hashbrown::HashTable;

use crate::packed_text::Sink;
use crate::text_symbols::Symbols;
use crate::{arena, packed_text};

/// An interned label pair; see [`PairTable`].
pub type PairId = u32;

const KEY_LABEL: u8 = 0x0a; // TimeSeries.labels = 1, length-delimited
const KEY_NAME: u8 = 0x0a; // Label.name = 1
const KEY_VALUE: u8 = 0x12; // Label.value = 2

/// Arena offsets are 32-bit; the arena never grows past this.
const MAX_ARENA: usize = u32::MAX as usize;

/// Live stored bytes at which the dictionary is trained. Below the first
/// a dictionary would save little and its sample would be thin.
const TRAIN_AT: [usize; 2] = [256 << 10, 4 << 20];
/// Label text a training reads, drawn evenly from the live entries.
const TRAIN_SAMPLE: usize = 256 << 10;

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Offset of the stored pair in the arena; `FREE` when unused.
    offset: u32,
    /// Its wire length, with [`PACKED`] set if it is stored packed:
    /// an encoder that copies an earlier occurrence needs only this, not
    /// the bytes (which are a cache miss away).
    len: u32,
    /// Label sets using the pair.
    refs: u32,
}

const FREE: u32 = u32::MAX;
const PACKED: u32 = 1 << 31;

impl Entry {
    fn wire_len(self) -> usize {
        (self.len & !PACKED) as usize
    }

    fn is_packed(self) -> bool {
        self.len & PACKED != 0
    }
}

/// Where the parts of a wire form are: the name, and the value's length
/// and first byte.
struct Parts {
    name: std::ops::Range<usize>,
    value_at: usize,
    value_len: usize,
}

fn parts(wire: &[u8]) -> Option<Parts> {
    let (_, n) = get_uvarint(wire.get(1..)?)?;
    let at = 1 + n + 1;
    let (name_len, n) = get_uvarint(wire.get(at..)?)?;
    let name = at + n..at + n + name_len as usize;
    let at = name.end + 1;
    let (value_len, n) = get_uvarint(wire.get(at..)?)?;
    Some(Parts {
        name,
        value_at: at + n,
        value_len: value_len as usize,
    })
}

/// Why a pair could not be interned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("label pair storage is full (4 GiB of distinct label text, or one label over 2 GiB)")]
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
    /// The dictionary every packed pair is coded with.
    symbols: Symbols,
    /// Trainings done, of [`TRAIN_AT`].
    trainings: usize,
}

/// Appends `v` as a protobuf varint (to a buffer, or a hasher).
pub(crate) fn put_uvarint(out: &mut impl Sink, mut v: u64) {
    while v >= 0x80 {
        out.put(&[v as u8 | 0x80]);
        v >>= 7;
    }
    out.put(&[v as u8]);
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

/// Reusable buffers for [`PairTable::lookup`] and [`PairTable::intern`].
#[derive(Debug, Default)]
pub struct PairScratch {
    wire: Vec<u8>,
    packed: Vec<u8>,
}

impl PairScratch {
    /// The stored form [`pack_wire`] chose, by the `len` it returned.
    fn stored(&self, len: u32) -> &[u8] {
        if len & PACKED != 0 {
            &self.packed
        } else {
            &self.wire
        }
    }
}

/// The length of `TimeSeries.labels`' content in a wire form `wire_len`
/// bytes long (key, varint length, content).
fn inner_len(wire_len: usize) -> Option<usize> {
    (1..=5).find_map(|n| {
        let inner = wire_len.checked_sub(1 + n)?;
        (uvarint_len(inner) == n).then_some(inner)
    })
}

/// Encodes `(name, value)`'s wire form into `s.wire`; returns its length,
/// `None` past 2 GiB.
fn put_wire(s: &mut PairScratch, name: &[u8], value: &[u8]) -> Option<u32> {
    let wire = &mut s.wire;
    wire.clear();
    let inner = 2 + uvarint_len(name.len()) + name.len() + uvarint_len(value.len()) + value.len();
    wire.push(KEY_LABEL);
    put_uvarint(wire, inner as u64);
    wire.push(KEY_NAME);
    put_uvarint(wire, name.len() as u64);
    wire.extend_from_slice(name);
    wire.push(KEY_VALUE);
    put_uvarint(wire, value.len() as u64);
    wire.extend_from_slice(value);
    u32::try_from(wire.len()).ok().filter(|&l| l & PACKED == 0)
}

/// Packs what follows the outer field head of `s.wire` (`wire_len` bytes
/// long) into `s.packed`; returns the entry's `len`, with [`PACKED`] if
/// that is the shorter form ([`PairScratch::stored`] then hands it out).
fn pack_wire(s: &mut PairScratch, wire_len: u32, symbols: &Symbols) -> u32 {
    s.packed.clear();
    let inner = inner_len(wire_len as usize)
        .and_then(|n| s.wire.get(s.wire.len() - n..))
        .unwrap_or_default();
    if packed_text::pack(inner, symbols, &mut s.packed) {
        return wire_len | PACKED;
    }
    wire_len
}

/// A stored pair's name and value, borrowed from the table unless the
/// pair was stored packed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLabel<'a> {
    pub name: Cow<'a, str>,
    pub value: Cow<'a, str>,
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
            + self.symbols.heap_size()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.index.capacity() * (std::mem::size_of::<PairId>() + 1)
            + self.free.capacity() * std::mem::size_of::<PairId>()
    }

    fn live(&self, id: PairId) -> Option<Entry> {
        self.entries
            .get(id as usize)
            .filter(|e| e.offset != FREE)
            .copied()
    }

    /// Room [`PairTable::write_wire`] needs past the wire form it writes:
    /// a packed pair is unpacked a whole dictionary word at a time.
    pub const WIRE_SLACK: usize = packed_text::OVERSHOOT;

    /// Appends the pair's wire form, a complete `TimeSeries.labels` field,
    /// to `out` (nothing for an id not in use).
    pub fn append_wire(&self, id: PairId, out: &mut Vec<u8>) {
        if let Some(e) = self.live(id) {
            append_wire(&self.arena, e, &self.symbols, out);
        }
    }

    /// Writes the pair's wire form to the start of `dst`, which has room
    /// for it and [`PairTable::WIRE_SLACK`] bytes more (scribbled over):
    /// for a caller that keeps such room initialised, so that nothing is
    /// zeroed for each pair. Returns its length; 0, and nothing written,
    /// for an id not in use or a `dst` too short.
    pub fn write_wire(&self, id: PairId, dst: &mut [u8]) -> usize {
        self.live(id)
            .and_then(|e| write_wire(&self.arena, e, &self.symbols, dst))
            .unwrap_or(0)
    }

    /// Appends the `len` bytes `write` puts at the start of the room it is
    /// given (`len` + [`PairTable::WIRE_SLACK`] bytes, zeroed first), as
    /// [`PairTable::write_wire`] does: for a buffer that, unlike a reused
    /// one, has no initialised room to write into. `write` returns how many
    /// bytes it wrote; at most `len` of them are kept.
    pub fn append_written(out: &mut Vec<u8>, len: usize, write: impl FnOnce(&mut [u8]) -> usize) {
        let start = out.len();
        out.resize(start + len + PairTable::WIRE_SLACK, 0);
        let n = out.get_mut(start..).map_or(0, write);
        out.truncate(start + n.min(len));
    }

    /// The length of [`PairTable::append_wire`]'s output (0 for an id not
    /// in use).
    pub fn encoded_len(&self, id: PairId) -> usize {
        self.live(id).map_or(0, Entry::wire_len)
    }

    /// `name` compared with the pair's name (an id not in use has an empty
    /// one). The encoder merges external labels by this for every sample,
    /// so a packed name is unpacked onto the stack, not into an allocation.
    pub fn cmp_name(&self, name: &[u8], id: PairId) -> Ordering {
        let Some(e) = self.live(id) else {
            return name.cmp(b"");
        };
        let stored = self.arena.get(e.offset as usize..).unwrap_or_default();
        if !e.is_packed() {
            let own = parts(stored).and_then(|p| stored.get(p.name));
            return name.cmp(own.unwrap_or_default());
        }
        // The packed part starts `KEY_NAME, varint length, name`.
        let mut head = [0u8; 128];
        let n = packed_text::unpack_prefix(stored, &self.symbols, &mut head);
        let head = head.get(..n).unwrap_or_default();
        let own = get_uvarint(head.get(1..).unwrap_or_default())
            .and_then(|(len, k)| head.get(1 + k..1 + k + len as usize));
        if let Some(own) = own {
            return name.cmp(own);
        }
        // A name too long for the buffer, or one holding a hex run.
        let own = self.label(id).map(|l| l.name).unwrap_or_default();
        name.cmp(own.as_bytes())
    }

    /// Name and value of a label's wire form, as
    /// [`PairTable::append_wire`] writes it.
    pub fn split_wire(wire: &[u8]) -> Option<(&[u8], &[u8])> {
        let p = parts(wire)?;
        Some((
            wire.get(p.name)?,
            wire.get(p.value_at..p.value_at + p.value_len)?,
        ))
    }

    /// The pair's name and value. Interned text came from `&str`, so it is
    /// always UTF-8; `None` only for an id not in use.
    pub fn label(&self, id: PairId) -> Option<StoredLabel<'_>> {
        let e = self.live(id)?;
        if !e.is_packed() {
            let wire = self.arena.get(e.offset as usize..)?.get(..e.wire_len())?;
            let (name, value) = Self::split_wire(wire)?;
            return Some(StoredLabel {
                name: Cow::Borrowed(std::str::from_utf8(name).ok()?),
                value: Cow::Borrowed(std::str::from_utf8(value).ok()?),
            });
        }
        let mut wire = Vec::new();
        self.append_wire(id, &mut wire);
        let (name, value) = Self::split_wire(&wire)?;
        let text = |t: &[u8]| String::from_utf8(t.to_vec()).ok().map(Cow::Owned);
        Some(StoredLabel {
            name: text(name)?,
            value: text(value)?,
        })
    }

    /// The id of `(name, value)` if interned, without taking a reference.
    pub fn lookup(&self, name: &str, value: &str, scratch: &mut PairScratch) -> Option<PairId> {
        put_wire(scratch, name.as_bytes(), value.as_bytes())?;
        self.find_wire(&scratch.wire)
    }

    /// The id of the pair whose wire form is `wire`. The index is keyed
    /// by the wire form, not the stored one, so a lookup does not pack
    /// (only a new pair is packed, once) and a new dictionary leaves the
    /// index as it is.
    fn find_wire(&self, wire: &[u8]) -> Option<PairId> {
        let (entries, arena, symbols) = (&self.entries, &self.arena, &self.symbols);
        self.index
            .find(hash(wire), |&id| {
                entries
                    .get(id as usize)
                    .is_some_and(|e| holds(arena, *e, symbols, wire))
            })
            .copied()
    }

    /// Takes a reference to `(name, value)`, interning it if new.
    pub fn intern(
        &mut self,
        name: &str,
        value: &str,
        scratch: &mut PairScratch,
    ) -> Result<PairId, PairTableFull> {
        let wire_len = put_wire(scratch, name.as_bytes(), value.as_bytes()).ok_or(PairTableFull)?;
        if let Some(id) = self.find_wire(&scratch.wire) {
            if let Some(e) = self.entries.get_mut(id as usize) {
                e.refs = e.refs.saturating_add(1);
            }
            return Ok(id);
        }
        let len = pack_wire(scratch, wire_len, &self.symbols);
        let stored = scratch.stored(len);
        if self.arena.len() + stored.len() > MAX_ARENA {
            self.compact();
            if self.arena.len() + stored.len() > MAX_ARENA {
                return Err(PairTableFull);
            }
        }
        let entry = Entry {
            offset: self.arena.len() as u32,
            len,
            refs: 1,
        };
        arena::append(&mut self.arena, stored);
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
        let (entries, arena, symbols) = (&self.entries, &self.arena, &self.symbols);
        self.index.insert_unique(hash(&scratch.wire), id, |&other| {
            entries
                .get(other as usize)
                .map_or(0, |e| wire_hash(arena, *e, symbols))
        });
        self.train_if_due();
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
        let h = wire_hash(&self.arena, e, &self.symbols);
        self.dead_bytes += entry_slice(&self.arena, e, &self.symbols).len();
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
            let bytes = entry_slice(&self.arena, *e, &self.symbols);
            e.offset = arena.len() as u32;
            arena.extend_from_slice(bytes);
        }
        self.arena = arena;
        self.dead_bytes = 0;
    }

    fn train_if_due(&mut self) {
        let live = self.arena.len() - self.dead_bytes;
        if TRAIN_AT.get(self.trainings).is_some_and(|&at| live >= at) {
            self.trainings += 1;
            self.train();
        }
    }

    /// Trains a dictionary on a sample of the live pairs and re-packs
    /// every entry with it. Left as it was if any entry fails to re-pack
    /// (which only a bug could cause).
    fn train(&mut self) {
        let live = || self.entries.iter().filter(|e| e.offset != FREE);
        let text_len: usize = live().map(|e| e.wire_len()).sum();
        let step = (text_len / TRAIN_SAMPLE).max(1);
        let mut wire = Vec::new();
        let mut contents = Vec::new();
        let mut text = Vec::new();
        for e in live().step_by(step) {
            wire.clear();
            append_wire(&self.arena, *e, &self.symbols, &mut wire);
            // What is packed: the name with its field heads, and the value.
            let Some(inner) = inner_len(wire.len()).and_then(|n| wire.get(wire.len() - n..)) else {
                continue;
            };
            contents.push(text.len()..text.len() + inner.len());
            text.extend_from_slice(inner);
        }
        let mut sample = Vec::new();
        for range in contents {
            let content = text.get(range).unwrap_or_default();
            packed_text::for_each_piece(content, |piece| {
                if let packed_text::Piece::Text(t) = piece {
                    sample.push(t);
                }
            });
        }
        let symbols = Symbols::train(&sample);
        if let Some(repacked) = self.repacked(&symbols) {
            self.install(symbols, repacked);
        }
    }

    /// Every live entry stored with `symbols`.
    fn repacked(&self, symbols: &Symbols) -> Option<Repacked> {
        let mut arena = arena::with_live(self.arena.len() - self.dead_bytes);
        let mut placed = Vec::with_capacity(self.len());
        let mut scratch = PairScratch::default();
        for e in self.entries.iter().filter(|e| e.offset != FREE) {
            scratch.wire.clear();
            append_wire(&self.arena, *e, &self.symbols, &mut scratch.wire);
            if scratch.wire.len() != e.wire_len() {
                return None;
            }
            let len = pack_wire(&mut scratch, e.wire_len() as u32, symbols);
            let stored = scratch.stored(len);
            if arena.len() + stored.len() > MAX_ARENA {
                return None;
            }
            placed.push((arena.len() as u32, len));
            arena.extend_from_slice(stored);
        }
        Some(Repacked { arena, placed })
    }

    fn install(&mut self, symbols: Symbols, Repacked { arena, placed }: Repacked) {
        let live = self.entries.iter_mut().filter(|e| e.offset != FREE);
        for (e, (offset, len)) in live.zip(placed) {
            e.offset = offset;
            e.len = len;
        }
        // The index is keyed by the wire forms, which have not changed.
        self.symbols = symbols;
        self.arena = arena;
        self.dead_bytes = 0;
    }
}

/// The arena re-packed with a new dictionary.
struct Repacked {
    arena: Vec<u8>,
    /// Each live entry's (offset, len), in entry order.
    placed: Vec<(u32, u32)>,
}

/// Appends the wire form of entry `e` to `out`.
fn append_wire(arena: &[u8], e: Entry, symbols: &Symbols, out: &mut Vec<u8>) {
    PairTable::append_written(out, e.wire_len(), |dst| {
        write_wire(arena, e, symbols, dst).unwrap_or(0)
    });
}

/// Writes the wire form of entry `e` to the start of `dst` (see
/// [`PairTable::write_wire`]); returns its length.
fn write_wire(arena: &[u8], e: Entry, symbols: &Symbols, dst: &mut [u8]) -> Option<usize> {
    let stored = arena.get(e.offset as usize..)?;
    let len = e.wire_len();
    if dst.len() < len + PairTable::WIRE_SLACK {
        return None;
    }
    if !e.is_packed() {
        dst.get_mut(..len)?.copy_from_slice(stored.get(..len)?);
        return Some(len);
    }
    let inner = inner_len(len)?;
    // The head: the key, then the inner length as a varint, in exactly
    // the bytes before the inner part (`inner_len` found it so).
    let (head, rest) = dst.split_at_mut_checked(len - inner)?;
    let mut head = packed_text::SliceSink::new(head);
    head.put(&[KEY_LABEL]);
    put_uvarint(&mut head, inner as u64);
    packed_text::unpack_into(stored, inner, symbols, rest)?;
    Some(len)
}

/// Whether `e` is a live entry whose wire form is `wire`.
fn holds(arena: &[u8], e: Entry, symbols: &Symbols, wire: &[u8]) -> bool {
    if e.offset == FREE || e.wire_len() != wire.len() {
        return false;
    }
    let stored = arena.get(e.offset as usize..).unwrap_or_default();
    if !e.is_packed() {
        return stored.get(..wire.len()) == Some(wire);
    }
    // Equal lengths, equal outer heads: the packed rest decides.
    let Some(inner) = inner_len(wire.len()) else {
        return false;
    };
    let mut expect = packed_text::Expect(wire.get(wire.len() - inner..).unwrap_or_default());
    packed_text::unpack(stored, inner, symbols, &mut expect).is_some()
}

/// The hash of `e`'s wire form, which the index keeps it under; a packed
/// entry is hashed as it unpacks, without a buffer.
fn wire_hash(arena: &[u8], e: Entry, symbols: &Symbols) -> u64 {
    let stored = arena.get(e.offset as usize..).unwrap_or_default();
    if !e.is_packed() {
        return hash(stored.get(..e.wire_len()).unwrap_or_default());
    }
    let inner = inner_len(e.wire_len()).unwrap_or(0);
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&[KEY_LABEL]);
    put_uvarint(&mut hasher, inner as u64);
    packed_text::unpack(stored, inner, symbols, &mut hasher);
    hasher.digest()
}

/// The stored bytes of `e`. A packed entry's length is not kept (the
/// entry holds its wire length for the encoder): it is found by reading
/// the packed form, which only releasing and compacting do.
fn entry_slice<'a>(arena: &'a [u8], e: Entry, symbols: &Symbols) -> &'a [u8] {
    let stored = arena.get(e.offset as usize..).unwrap_or_default();
    let len = if e.is_packed() {
        inner_len(e.wire_len())
            .and_then(|inner| {
                packed_text::unpack(stored, inner, symbols, &mut packed_text::Discard)
            })
            .unwrap_or(0)
    } else {
        e.wire_len()
    };
    stored.get(..len).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pairs_are_interned_once_and_encoded_as_remote_write_labels() {
        let mut t = PairTable::new();
        let mut s = PairScratch::default();
        let a = t.intern("job", "node", &mut s).unwrap();
        let b = t.intern("instance", "h:9100", &mut s).unwrap();
        assert_eq!(t.intern("job", "node", &mut s).unwrap(), a);
        assert_ne!(a, b);
        assert_eq!(t.len(), 2);
        // field 1 (len 11) { field 1 "job", field 2 "node" }
        let mut wire = Vec::new();
        t.append_wire(a, &mut wire);
        assert_eq!(wire, b"\x0a\x0b\x0a\x03job\x12\x04node");
        assert_eq!(t.encoded_len(a), wire.len());
        let l = t.label(b).unwrap();
        assert_eq!((&*l.name, &*l.value), ("instance", "h:9100"));
        assert!(matches!(l.value, Cow::Borrowed(_)));
        assert_eq!(t.lookup("job", "node", &mut s), Some(a));
        assert_eq!(t.lookup("job", "other", &mut s), None);
    }

    #[test]
    fn long_values_use_multi_byte_lengths() {
        let mut t = PairTable::new();
        let mut s = PairScratch::default();
        let long = "v".repeat(300);
        let id = t.intern("k", &long, &mut s).unwrap();
        let l = t.label(id).unwrap();
        assert_eq!((&*l.name, &*l.value), ("k", long.as_str()));
        assert_eq!(t.encoded_len(id), 1 + 2 + 1 + 1 + 1 + 1 + 2 + 300);
    }

    #[test]
    fn hex_identifiers_are_stored_packed_and_read_back_as_text() {
        let mut t = PairTable::new();
        let mut s = PairScratch::default();
        let id = "/kubepods/burstable/pod3f2a9c1e-7b4d-4e8f-9a0b-1c2d3e4f5a6b/\
                  0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let a = t.intern("id", id, &mut s).unwrap();
        // The wire form's outer head (3 bytes) is left out, the name and
        // its field heads (6 bytes) stay as they are, the value's 124 bytes
        // are packed to 23 + 17 + 1 + 34.
        assert_eq!(t.arena.len(), 6 + 75);
        let plain = t.intern("id", "/kubepods", &mut s).unwrap();
        assert_eq!(t.intern("id", id, &mut s).unwrap(), a);
        assert_eq!(t.lookup("id", id, &mut s), Some(a));
        let wire_len = 1 + 2 + 1 + 1 + 2 + 1 + 1 + id.len();
        let mut wire = b"before".to_vec();
        t.append_wire(a, &mut wire);
        assert_eq!(wire.len() - 6, wire_len);
        assert_eq!(t.encoded_len(a), wire_len);
        assert_eq!(
            PairTable::split_wire(&wire[6..]),
            Some((&b"id"[..], id.as_bytes()))
        );
        assert_eq!(t.label(a).unwrap().name, "id");
        let l = t.label(a).unwrap();
        assert_eq!((&*l.name, &*l.value), ("id", id));
        assert!(matches!(l.value, Cow::Owned(_)));
        // Packed and plain entries side by side survive a compaction.
        t.release(plain);
        t.compact();
        assert_eq!(t.label(a).unwrap().value, id);
        assert_eq!(t.lookup("id", id, &mut s), Some(a));
        t.release(a);
        t.release(a);
        assert!(t.is_empty());
        assert_eq!(t.lookup("id", id, &mut s), None);
    }

    fn mountpoint(i: usize) -> String {
        format!(
            "/var/lib/kubelet/pods/{:08x}-0000-4000-8000-{:012x}/volumes/kubernetes.io~projected/kube-api-access-{}",
            i * 7919,
            i,
            i % 1000
        )
    }

    #[test]
    fn a_dictionary_trained_on_the_stored_text_repacks_every_entry() {
        let mut t = PairTable::new();
        let mut s = PairScratch::default();
        let n = 4000;
        let ids: Vec<PairId> = (0..n)
            .map(|i| t.intern("mountpoint", &mountpoint(i), &mut s).unwrap())
            .collect();
        let wire: usize = ids.iter().map(|&id| t.encoded_len(id)).sum();
        assert_eq!(t.trainings, 1, "trained once 256 KiB were stored");
        assert!(t.symbols.get(0).is_some());
        // Every entry, the ones stored before the training included, reads
        // back as its text, is found, and interns to the same id.
        for (i, &id) in ids.iter().enumerate() {
            let text = mountpoint(i);
            assert_eq!(t.label(id).unwrap().value, text);
            let mut w = Vec::new();
            t.append_wire(id, &mut w);
            assert_eq!(
                PairTable::split_wire(&w),
                Some((&b"mountpoint"[..], text.as_bytes()))
            );
            assert_eq!(w.len(), t.encoded_len(id));
            assert_eq!(t.lookup("mountpoint", &text, &mut s), Some(id), "{i}");
        }
        assert_eq!(
            t.intern("mountpoint", &mountpoint(5), &mut s).unwrap(),
            ids[5]
        );
        // ~126 bytes on the wire a pair; UUID packing alone would store
        // ~107, the dictionary's words bring that under a third.
        assert!(
            t.arena.len() * 3 < wire,
            "{} stored bytes for {wire} on the wire",
            t.arena.len()
        );
        // Releases, a compaction and a new value after the training.
        for &id in &ids[..n / 2] {
            t.release(id);
            t.release(id);
        }
        assert_eq!(t.index.len(), t.len(), "released pairs left the index");
        let late = t.intern("mountpoint", &mountpoint(n + 1), &mut s).unwrap();
        assert_eq!(t.label(late).unwrap().value, mountpoint(n + 1));
        assert_eq!(t.label(ids[n - 1]).unwrap().value, mountpoint(n - 1));
        assert_eq!(t.lookup("mountpoint", &mountpoint(0), &mut s), None);
    }

    #[test]
    fn names_compare_whether_stored_plain_or_packed() {
        let mut t = PairTable::new();
        let mut s = PairScratch::default();
        let long_name = format!("a{}", "n".repeat(200));
        let ids: Vec<(String, PairId)> = (0..3000)
            .flat_map(|i| {
                [
                    ("mountpoint".to_string(), mountpoint(i)),
                    (long_name.clone(), mountpoint(i)),
                    ("job_0123456789abcdef".to_string(), mountpoint(i)),
                    ("job".to_string(), "node".to_string()),
                ]
            })
            .map(|(n, v)| {
                let id = t.intern(&n, &v, &mut s).unwrap();
                (n, id)
            })
            .collect();
        assert_eq!(t.trainings, 1);
        for (n, id) in &ids {
            let n = n.as_bytes();
            assert_eq!(t.cmp_name(n, *id), Ordering::Equal);
            assert_eq!(t.cmp_name(b"a", *id), Ordering::Less);
            assert_eq!(t.cmp_name(b"zz", *id), Ordering::Greater);
            let longer = [n, b"_"].concat();
            assert_eq!(t.cmp_name(&longer, *id), Ordering::Greater);
            assert_eq!(t.cmp_name(&n[..n.len() - 1], *id), Ordering::Less);
        }
        let packed = |id| t.live(id).unwrap().is_packed();
        assert!(packed(ids[0].1) && packed(ids[1].1) && packed(ids[2].1));
        assert!(!packed(ids[3].1), "job=node is stored as it is");
        assert_eq!(t.cmp_name(b"x", 999_999), Ordering::Greater);
    }

    #[test]
    fn released_pairs_are_forgotten_and_their_ids_reused() {
        let mut t = PairTable::new();
        let mut s = PairScratch::default();
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
        let mut s = PairScratch::default();
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
