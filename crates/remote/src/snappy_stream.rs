//! A snappy block written while the protobuf is produced, with copies for
//! the label pairs the request already carries.
//!
//! Remote write 1.0 repeats every label of every sample, and snappy earns
//! its ratio by finding those repeats again with a hash of every input
//! position — the single biggest CPU cost of forwarding a sample, more than
//! encoding it. The encoder here already knows where the repeats are: a
//! label pair comes from the [`tributary_model::PairTable`] with an id, so
//! the second time an id appears in a request its bytes are emitted as a
//! snappy *copy* of the first occurrence (offset, length) instead of being
//! searched for. Runs of pairs that were adjacent before too (same offset)
//! become one copy. Everything else (series headers, values, a new
//! timestamp) is a literal.
//!
//! What is left as literal — mostly label values seen for the first time,
//! which share prefixes and fragments with each other (pod names, container
//! ids, mount points) — goes through a small snappy-style matcher over the
//! request's earlier literal bytes, so first occurrences compress about as
//! well as snappy would compress them, at the cost of hashing only the
//! word starts of those bytes rather than every position of the whole
//! request (see [`next_word_start`]).
//!
//! The output is an ordinary snappy block (varint length, then literal and
//! copy elements): any decoder reads it. Copies use 2- or 4-byte offsets,
//! which the format allows up to the whole decoded length (the reference
//! encoder only emits offsets within 64 KiB because it compresses in
//! 64 KiB blocks; decoders do not assume that).

use bytes::Bytes;
use tributary_model::PairTable;

/// Ids remembered per request: a direct-mapped table, so a collision only
/// costs a literal where a copy was possible.
const SEEN_BITS: u32 = 10;
const SEEN_SLOTS: usize = 1 << SEEN_BITS;
/// Room left before the elements for the length varint written at the end.
const HEADER_ROOM: usize = 10;
/// Longest copy one element can express.
const MAX_COPY: usize = 64;
/// Literal elements are cut at this length (tag + 2 length bytes).
const MAX_LITERAL: usize = 1 << 16;
/// The literal matcher's hash table: 4-byte sequences → where last seen.
const LIT_BITS: u32 = 12;
const LIT_SLOTS: usize = 1 << LIT_BITS;
/// Shortest match worth a copy element (3 bytes) instead of literal bytes.
const MIN_MATCH: usize = 5;

/// An earlier occurrence of keyed bytes in the request: uncompressed
/// position + 1 (0 = none) and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Occurrence {
    pub at: u32,
    pub len: u32,
}

#[derive(Clone, Copy)]
struct Seen {
    key: u32,
    /// Uncompressed position + 1 (0 = empty).
    pos: u32,
    /// The bytes' length, so the encoder need not look it up again.
    len: u32,
}

const EMPTY: Seen = Seen {
    key: 0,
    pos: 0,
    len: 0,
};

/// The request's literal bytes, in a buffer kept at the longest request's
/// length: the bytes past [`History::len`] stay initialised (an earlier
/// request's text), so a first occurrence is unpacked straight into them
/// without zeroing room for it first (a `memset` for each, 1.4 % of the
/// encoder's instructions).
#[derive(Default)]
struct History {
    buf: Vec<u8>,
    len: usize,
}

impl History {
    fn len(&self) -> usize {
        self.len
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.append_with(bytes.len(), |dst| put_bytes(dst, bytes));
    }

    /// Appends the `len` bytes `write` puts at the start of the buffer it
    /// is given, which has [`PairTable::WIRE_SLACK`] bytes of room past
    /// them; `write` returns how many it put there (`len` at most is kept).
    fn append_with(&mut self, len: usize, write: impl FnOnce(&mut [u8]) -> usize) {
        let need = self.len + len + PairTable::WIRE_SLACK;
        if self.buf.len() < need {
            // Zeroed once, up to the longest request's text, then written
            // over (the capacity still grows by doubling).
            self.buf.resize(need, 0);
        }
        let n = self.buf.get_mut(self.len..need).map_or(0, write);
        self.len += n.min(len);
    }
}

/// See the module docs. Reused across requests.
pub(crate) struct SnappyStream {
    out: Vec<u8>,
    /// Uncompressed bytes so far.
    pos: usize,
    /// A copy not yet written: (offset, length).
    copy: Option<(usize, usize)>,
    seen: Box<[Seen]>,
    /// The last timestamp written (zeros after its length), its length
    /// and where.
    last_ts: [u8; 16],
    last_ts_len: usize,
    last_ts_pos: usize,
    /// Every literal byte of the request, in order; those from `pending`
    /// on are not written out yet.
    history: History,
    pending: usize,
    /// Ranges of `history` (not written yet) worth searching for repeats.
    matchable: Vec<(u32, u32)>,
    /// The written literal runs: (start in `history`, uncompressed
    /// position). A run is contiguous in both; consecutive runs are not.
    runs: Vec<(u32, u32)>,
    /// 4-byte sequences of literal text → where last seen: the index in
    /// `history` + 1 (low word) and the index of its run in `runs` (high
    /// word), so a candidate is located without searching `runs`.
    lit_seen: Box<[u64]>,
    /// A sent request's buffer, handed back for the next block.
    spare: Option<Vec<u8>>,
}

impl Default for SnappyStream {
    fn default() -> Self {
        SnappyStream {
            out: Vec::new(),
            pos: 0,
            copy: None,
            seen: vec![EMPTY; SEEN_SLOTS].into_boxed_slice(),
            last_ts: [0; 16],
            last_ts_len: 0,
            last_ts_pos: 0,
            history: History::default(),
            pending: 0,
            matchable: Vec::new(),
            runs: Vec::new(),
            lit_seen: vec![0; LIT_SLOTS].into_boxed_slice(),
            spare: None,
        }
    }
}

/// `bytes` as a little-endian word, read in two 8-byte halves (see
/// [`SnappyStream::sample`]).
fn word_of(bytes: &[u8; 16]) -> u128 {
    let (lo, hi) = (bytes.first_chunk::<8>(), bytes.last_chunk::<8>());
    let half = |h: Option<&[u8; 8]>| u128::from(u64::from_le_bytes(h.copied().unwrap_or_default()));
    half(lo) | (half(hi) << 64)
}

fn slot_of(key: u32) -> usize {
    (key.wrapping_mul(0x9E37_79B1) >> (32 - SEEN_BITS)) as usize
}

impl SnappyStream {
    /// Starts a new request.
    pub fn reset(&mut self) {
        self.out.clear();
        self.out.resize(HEADER_ROOM, 0);
        self.pos = 0;
        self.copy = None;
        self.seen.fill(EMPTY);
        self.last_ts_len = 0;
        self.last_ts_pos = 0;
        self.history.clear();
        self.pending = 0;
        self.matchable.clear();
        self.runs.clear();
        self.lit_seen.fill(0);
    }

    /// Bytes with no identity of their own that may repeat earlier text
    /// of the request (label text): searched for repeats when written.
    pub fn literal(&mut self, bytes: &[u8]) {
        self.literal_with(bytes.len(), |dst| put_bytes(dst, bytes));
    }

    /// [`SnappyStream::literal`] for the `len` bytes `write` puts at the
    /// start of the buffer it is given (see [`History::append_with`]).
    fn literal_with(&mut self, len: usize, write: impl FnOnce(&mut [u8]) -> usize) {
        self.flush_copy();
        let before = self.history.len();
        self.history.append_with(len, write);
        self.pos += self.history.len() - before;
        let (start, end) = (before as u32, self.history.len() as u32);
        match self.matchable.last_mut() {
            Some((_, e)) if *e == start => *e = end,
            _ => self.matchable.push((start, end)),
        }
    }

    /// Bytes not worth searching (lengths, sample values).
    pub fn plain(&mut self, bytes: &[u8]) {
        self.flush_copy();
        self.history.extend_from_slice(bytes);
        self.pos += bytes.len();
    }

    /// [`SnappyStream::keyed_at`] looking `key` up itself.
    #[cfg(test)]
    pub fn keyed(&mut self, key: u32, len: usize, write: impl FnOnce(&mut [u8]) -> usize) {
        let at = self.find(key).map_or(0, |o| o.at);
        self.keyed_at(key, len, at, write);
    }

    /// `len` bytes identified by `key` (always the same bytes for one key
    /// within a request): a copy of the occurrence `at` (what
    /// [`SnappyStream::find`] said of `key` earlier in the request), a
    /// literal that `write` puts in the buffer it is given (see
    /// [`History::append_with`]) if `at` is 0. The request encoder looks
    /// every pair up once, for its length, before it writes the pairs; keys
    /// written in between may have taken the slot over, but the bytes at
    /// the older occurrence are still the same bytes, so it stays a valid
    /// source.
    pub fn keyed_at(
        &mut self,
        key: u32,
        len: usize,
        at: u32,
        write: impl FnOnce(&mut [u8]) -> usize,
    ) {
        let here = self.pos;
        let offset = here.saturating_sub((at as usize).saturating_sub(1));
        if at != 0 && offset <= u32::MAX as usize && len > 0 {
            self.copy_from(offset, len);
        } else {
            self.literal_with(len, write);
        }
        // Remember the newest occurrence: nearer copies get shorter offsets.
        if let (Some(s), Ok(p), Ok(l)) = (
            self.seen.get_mut(slot_of(key)),
            u32::try_from(here + 1),
            u32::try_from(len),
        ) {
            *s = Seen {
                key,
                pos: p,
                len: l,
            };
        }
    }

    /// Where and how long `key`'s bytes last were in this request, while
    /// the table still holds it. An interned pair's length is a cache miss
    /// away in the pair table; most pairs of a request repeat one already
    /// in it, whose length is here.
    pub fn find(&self, key: u32) -> Option<Occurrence> {
        let s = self.seen.get(slot_of(key))?;
        (s.pos != 0 && s.key == key).then_some(Occurrence {
            at: s.pos,
            len: s.len,
        })
    }

    /// Bytes likely equal to the previous call's or the last sample's
    /// timestamp (one per scrape): a copy when they are.
    #[cfg(test)]
    pub fn repeated(&mut self, bytes: &[u8]) {
        let mut padded = [0u8; 16];
        match padded.get_mut(..bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.timestamp((&padded, bytes.len()));
            }
            None => {
                self.plain(bytes);
                self.last_ts_len = 0;
            }
        }
    }

    /// A sample's timestamp (the first `.1` bytes, zeros after them),
    /// likely the previous one's: then a copy. Compared as a whole array,
    /// not as a slice (a call to `memcmp`).
    fn timestamp(&mut self, (ts, len): (&[u8; 16], usize)) {
        let here = self.pos;
        let offset = here.saturating_sub(self.last_ts_pos);
        if len != 0
            && len == self.last_ts_len
            && *ts == self.last_ts
            && (1..=u32::MAX as usize).contains(&offset)
        {
            self.copy_from(offset, len);
        } else {
            self.plain(ts.get(..len).unwrap_or_default());
            self.last_ts = *ts;
            self.last_ts_len = len;
        }
        self.last_ts_pos = here;
    }

    /// A sample's head (the first `.1` bytes of `head`) and value (the
    /// first `.1` bytes of `value`) as one literal, then its timestamp
    /// (likewise), a copy of the previous one where it repeats.
    ///
    /// Every sample of a request starts so. With no literal pending (the
    /// series before ended in a copy, as nearly all do) the literal is
    /// written straight out, assembled from fixed-size pieces: through the
    /// literal buffer it cost a copy in, a run entry and a flush (with the
    /// narrower label list, 8 % of the encoder's instructions in the
    /// agent). Its bytes are never a match source: the matcher only
    /// searches label text.
    pub fn sample(
        &mut self,
        (head, head_len): (&[u8; 16], usize),
        (value, value_len): (&[u8; 16], usize),
        ts: (&[u8; 16], usize),
    ) {
        let n = head_len + value_len;
        if self.history.len() != self.pending || n == 0 || head_len > 16 || value_len > 16 {
            self.plain(head.get(..head_len).unwrap_or_default());
            self.plain(value.get(..value_len).unwrap_or_default());
            self.timestamp(ts);
            return;
        }
        self.flush_copy();
        // Tag, head and value as one word: a series' head is three bytes
        // and a value eleven, so nearly always 16 bytes or fewer, written
        // with one store and the excess cut off. Each part is read as two
        // 8-byte halves, as it was written: assembled on the stack and
        // read back 16 bytes at a time, as before, the loads overlapped
        // narrower stores, which the CPU cannot forward to a load — half
        // of `write_head`'s time was spent waiting there.
        let start = self.out.len();
        if n < 16 {
            let head = word_of(head) & ((1u128 << (8 * head_len)) - 1);
            let value = word_of(value)
                .checked_shl(8 * (1 + head_len) as u32)
                .unwrap_or(0);
            let lit = u128::from(((n - 1) as u8) << 2) | (head << 8) | value;
            self.out.extend_from_slice(&lit.to_le_bytes());
        } else {
            self.out.push(((n - 1) as u8) << 2);
            self.out.extend_from_slice(head);
            self.out.truncate(start + 1 + head_len);
            self.out.extend_from_slice(value);
        }
        self.out.truncate(start + 1 + n);
        self.pos += n;
        self.timestamp(ts);
    }

    /// `len` bytes equal to those `offset` (1..=u32::MAX) bytes back.
    fn copy_from(&mut self, offset: usize, len: usize) {
        if self.history.len() > self.pending {
            self.flush_literal();
        }
        match &mut self.copy {
            // Same distance back = the source continues where the last
            // copy's source ended.
            Some((o, l)) if *o == offset => *l += len,
            _ => {
                self.flush_copy();
                self.copy = Some((offset, len));
            }
        }
        self.pos += len;
    }

    fn flush_copy(&mut self) {
        let Some((offset, len)) = self.copy.take() else {
            return;
        };
        put_copies(&mut self.out, offset, len);
    }

    /// Writes the pending literal bytes, as copies where their matchable
    /// spans repeat earlier literal text of the request.
    fn flush_literal(&mut self) {
        let (start, end) = (self.pending, self.history.len());
        if end == start {
            return;
        }
        let start_pos = self.pos - (end - start);
        let mut emitted = start;
        if let (Ok(s32), Ok(p32), Ok(_)) = (
            u32::try_from(start),
            u32::try_from(start_pos),
            u32::try_from(self.pos),
        ) {
            self.runs.push((s32, p32));
            let spans = std::mem::take(&mut self.matchable);
            // Uncompressed position of history index 0, were the run
            // extended back to it.
            let run_base = start_pos.wrapping_sub(start);
            for &(from, to) in &spans {
                emitted = self.match_span(from as usize, to as usize, run_base, emitted);
            }
            self.matchable = spans;
        }
        emit_literal(&mut self.out, self.history.bytes().get(emitted..end));
        self.matchable.clear();
        self.pending = end;
    }

    /// Uncompressed position of history index `at`, which is in run `i`,
    /// and the end of that run.
    fn locate(&self, at: usize, i: usize) -> Option<(usize, usize)> {
        let (h, p) = *self.runs.get(i)?;
        let at_in_run = at.checked_sub(h as usize)?;
        let end = match self.runs.get(i + 1) {
            Some(&(next, _)) => next as usize,
            None => self.history.len(),
        };
        Some((p as usize + at_in_run, end))
    }

    /// Runs the matcher over `history[from..to]` (pending, the last run,
    /// where index `i` is at uncompressed position `run_base + i`),
    /// writing the literal bytes from `emitted` up to each match and the
    /// match as copies. Returns how far the literal is written.
    fn match_span(&mut self, from: usize, to: usize, run_base: usize, mut emitted: usize) -> usize {
        let mut at = from.max(emitted);
        // The run being written is the last one.
        let run = (self.runs.len().saturating_sub(1) as u64) << 32;
        let history = self.history.bytes();
        while at + 4 <= to {
            let Some(quad) = load_u32(history, at) else {
                break;
            };
            let slot = (quad.wrapping_mul(0x1E35_A7BD) >> (32 - LIT_BITS)) as usize;
            let seen = match self.lit_seen.get_mut(slot) {
                Some(e) => std::mem::replace(e, run | (at as u64 + 1)),
                None => break,
            };
            let prev = (seen & 0xffff_ffff) as usize;
            let found = (prev != 0 && load_u32(history, prev - 1) == Some(quad))
                .then(|| self.locate(prev - 1, (seen >> 32) as usize))
                .flatten();
            let Some((c_pos, c_end)) = found else {
                at = next_probe(history, at, quad, to);
                continue;
            };
            let m = 4 + match_len(history, prev + 3, c_end, at + 4, to);
            let offset = run_base.wrapping_add(at).saturating_sub(c_pos);
            if m < MIN_MATCH || offset == 0 {
                at = next_probe(history, at, quad, to);
                continue;
            }
            emit_literal(&mut self.out, history.get(emitted..at));
            put_copies(&mut self.out, offset, m);
            at += m;
            emitted = at;
        }
        emitted
    }

    /// The finished block. The buffer it was written in goes with it (the
    /// request body is sent from it, not copied out of it); the stream
    /// writes the next block into the buffer last given to
    /// [`SnappyStream::recycle`], or a new one of the same capacity.
    pub fn finish(&mut self) -> Bytes {
        self.flush_copy();
        self.flush_literal();
        let mut header = [0u8; HEADER_ROOM];
        let mut n = 0;
        let mut v = self.pos as u64;
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if let Some(slot) = header.get_mut(n) {
                *slot = if v == 0 { b } else { b | 0x80 };
            }
            n += 1;
            if v == 0 || n == HEADER_ROOM {
                break;
            }
        }
        let start = HEADER_ROOM - n;
        if let (Some(dst), Some(src)) = (self.out.get_mut(start..HEADER_ROOM), header.get(..n)) {
            dst.copy_from_slice(src);
        }
        let next = self
            .spare
            .take()
            .unwrap_or_else(|| Vec::with_capacity(self.out.capacity()));
        let block = Bytes::from(std::mem::replace(&mut self.out, next));
        block.slice(start.min(block.len())..)
    }

    /// Takes back a block [`SnappyStream::finish`] returned, once sent, to
    /// write a later block into: a request is ~110 KB at 2,000 samples,
    /// and a fresh buffer each time came back from the allocator as pages
    /// the kernel had to fault in and zero again (3 % of the agent's CPU
    /// at 400k series). A block still shared elsewhere is left alone.
    pub fn recycle(&mut self, block: Bytes) {
        let Ok(mut buf) = block.try_into_mut() else {
            return;
        };
        // Emptied first, so that turning it back into a `Vec` moves nothing.
        buf.clear();
        let buf = Vec::from(buf);
        if buf.capacity() >= self.out.capacity() {
            self.spare = Some(buf);
        }
    }

    /// Uncompressed bytes written so far.
    #[cfg(test)]
    pub fn uncompressed_len(&self) -> usize {
        self.pos
    }
}

/// Bytes after which the matcher looks for a repeat: protobuf heads and
/// lengths, and the punctuation that separates the words of label values
/// (`/`, `-`, `.`, `"`, space, `_`).
const fn is_separator(b: u8) -> bool {
    b < 0x30 || b == b'_'
}

/// The first position in `at..to` that follows a separator (`to` if none).
///
/// The matcher only hashes such positions (and the one after each match):
/// repeats in label values start at word boundaries (a pod name inside a
/// container name, a path prefix, a shared UUID), while hashing every
/// position of every hex id and name was most of the matcher's time. On a
/// farm page (2,000 series) this hashes 7.9k positions a request instead
/// of 24.8k and saves 99.5 % of the bytes it saved before
/// (`scripts/sim_literal_matcher.py`).
fn next_word_start(buf: &[u8], at: usize, to: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const UNDERSCORE: u64 = ONES * b'_' as u64;
    // Scanning the bytes before each candidate position.
    let mut i = at.saturating_sub(1);
    let end = to.saturating_sub(1);
    while i + 8 <= end {
        let Some(word) = buf.get(i..i + 8).and_then(|b| b.try_into().ok()) else {
            break;
        };
        let x = u64::from_le_bytes(word);
        // High bit of each byte below 0x30: its low seven bits plus 0x50
        // stay below 0x80 (no carry leaves a byte), and its own high bit is
        // clear.
        let below = !(((x & !HIGH) + ONES * 0x50) | x) & HIGH;
        // Bytes equal to '_': the classic zero-byte test on x ^ '_', exact
        // for the lowest such byte, which is the only one used.
        let y = x ^ UNDERSCORE;
        let underscore = y.wrapping_sub(ONES) & !y & HIGH;
        let hits = below | underscore;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize + 1;
        }
        i += 8;
    }
    while i < end {
        if buf.get(i).is_some_and(|&b| is_separator(b)) {
            return i + 1;
        }
        i += 1;
    }
    to
}

/// Where the matcher probes next after nothing matched the four bytes
/// `quad` at `at`: the next word start, or past the run of hex digits and
/// dashes `at` is in if it follows a dash and `quad` is hex digits.
///
/// An identifier nothing earlier matched (a container id, a UUID new to
/// the request) matches nowhere further in either, but its dashes made
/// each UUID group a word start of its own: five probes a UUID, which
/// found nothing. A run's second group is still probed: an identifier
/// seen before may have started no word there (`pod<uid>` in a cgroup
/// path, then `_<uid>_` in a container name), while its later groups
/// did. On a farm page this probes 23 % fewer positions and saves as
/// many bytes (`scripts/sim_literal_matcher.py`).
fn next_probe(buf: &[u8], at: usize, quad: u32, to: usize) -> usize {
    let after_dash = at.checked_sub(1).and_then(|i| buf.get(i)) == Some(&b'-');
    // Four digits '0' above the quad's four bytes.
    if after_dash && hex_digits(0x3030_3030_0000_0000 | u64::from(quad)) == u64::MAX {
        return hex_run_end(buf, at + 4, to);
    }
    next_word_start(buf, at + 1, to)
}

/// Per byte of `x`, all ones where it is a lowercase hex digit.
fn hex_digits(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Bytes of seven bits: `v + (0x80 - lo)` sets a byte's high bit iff
    // it is at least `lo`, and no carry crosses into the next byte.
    let v = x & !HIGH;
    let at_least = |lo: u8| (v + ONES * u64::from(0x80 - lo)) & HIGH;
    let digit = at_least(b'0') & !at_least(b'9' + 1);
    let letter = at_least(b'a') & !at_least(b'f' + 1);
    // Bytes with the high bit set (UTF-8) are neither.
    let hex = (digit | letter) & !(x & HIGH);
    (hex >> 7) * 0xff
}

/// The end of the run of lowercase hex digits and dashes from `at` (`to`
/// at most).
fn hex_run_end(buf: &[u8], mut at: usize, to: usize) -> usize {
    const DASHES: u64 = 0x2d2d_2d2d_2d2d_2d2d;
    while at + 8 <= to {
        let Some(word) = buf.get(at..at + 8).and_then(|b| b.try_into().ok()) else {
            break;
        };
        let x = u64::from_le_bytes(word);
        // A dash is a zero byte of `x ^ DASHES`; the high bit of
        // `(y & 0x7f..) + 0x7f..` is clear for those alone among bytes
        // below 0x80, and `| y` rules out the others.
        let y = x ^ DASHES;
        let low = 0x7f7f_7f7f_7f7f_7f7f;
        let dash = !(((y & low) + low) | y | low) >> 7;
        let ok = hex_digits(x) | (dash * 0xff);
        if ok != u64::MAX {
            return at + ((!ok).trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while buf
        .get(at)
        .is_some_and(|&b| at < to && (b == b'-' || hex_digits(u64::from(b)) & 0xff != 0))
    {
        at += 1;
    }
    at
}

/// `bytes` at the start of `dst`: their length, 0 (nothing written) if
/// `dst` is too short.
pub(crate) fn put_bytes(dst: &mut [u8], bytes: &[u8]) -> usize {
    match dst.get_mut(..bytes.len()) {
        Some(d) => {
            d.copy_from_slice(bytes);
            bytes.len()
        }
        None => 0,
    }
}

fn load_u32(buf: &[u8], at: usize) -> Option<u32> {
    match buf.get(at..at + 4) {
        Some(&[a, b, c, d]) => Some(u32::from_le_bytes([a, b, c, d])),
        _ => None,
    }
}

/// How many bytes from `buf[b..b_end]` equal those from `buf[a..a_end]`.
fn match_len(buf: &[u8], a: usize, a_end: usize, b: usize, b_end: usize) -> usize {
    let limit = a_end.saturating_sub(a).min(b_end.saturating_sub(b));
    let (Some(x), Some(y)) = (buf.get(a..a + limit), buf.get(b..b + limit)) else {
        return 0;
    };
    let mut n = 0;
    for (p, q) in x.chunks_exact(8).zip(y.chunks_exact(8)) {
        let (p, q) = (
            u64::from_le_bytes(p.try_into().unwrap_or([0; 8])),
            u64::from_le_bytes(q.try_into().unwrap_or([0; 8])),
        );
        if p != q {
            return n + ((p ^ q).trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    let tail = x.get(n..).unwrap_or_default().iter();
    n + tail
        .zip(y.get(n..).unwrap_or_default())
        .take_while(|(p, q)| p == q)
        .count()
}

/// Literal elements for `bytes`.
///
/// Most literals are a series' header and value, a dozen bytes: one tag
/// byte, no chunking, written inline — as a call, saving and restoring
/// the registers the chunking loop needs cost over a third of the work.
#[inline(always)]
fn emit_literal(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    let bytes = bytes.unwrap_or_default();
    if (1..=60).contains(&bytes.len()) {
        put_literal_tag(out, bytes.len());
        out.extend_from_slice(bytes);
        return;
    }
    emit_long_literal(out, bytes);
}

#[inline(never)]
fn emit_long_literal(out: &mut Vec<u8>, bytes: &[u8]) {
    for chunk in bytes.chunks(MAX_LITERAL) {
        put_literal_tag(out, chunk.len());
        out.extend_from_slice(chunk);
    }
}

/// Copy elements for `len` bytes `offset` back: one, inline, for the
/// common copy of at most [`MAX_COPY`] bytes.
#[inline(always)]
fn put_copies(out: &mut Vec<u8>, offset: usize, len: usize) {
    match len {
        0 => {}
        1..=MAX_COPY => put_copy(out, offset, len),
        _ => put_long_copies(out, offset, len),
    }
}

#[inline(never)]
fn put_long_copies(out: &mut Vec<u8>, offset: usize, mut len: usize) {
    while len > 0 {
        let n = len.min(MAX_COPY);
        put_copy(out, offset, n);
        len -= n;
    }
}

// The short-literal path in `emit_literal` costs ~2 % more encoder
// instructions when this is a call (callgrind).
#[inline(always)]
fn put_literal_tag(out: &mut Vec<u8>, len: usize) {
    let n = len - 1;
    if n < 60 {
        out.push((n as u8) << 2);
    } else if n < 1 << 8 {
        out.extend_from_slice(&[60 << 2, n as u8]);
    } else {
        let [a, b] = (n as u16).to_le_bytes();
        out.extend_from_slice(&[61 << 2, a, b]);
    }
}

// One fixed-size `extend_from_slice` per element rather than a `push` per
// byte: −14 % instructions in `put_copies` (callgrind).
#[inline(always)]
fn put_copy(out: &mut Vec<u8>, offset: usize, len: usize) {
    if (4..12).contains(&len) && offset < 2048 {
        let tag = (((offset >> 8) as u8) << 5) | (((len - 4) as u8) << 2) | 1;
        out.extend_from_slice(&[tag, offset as u8]);
    } else if offset < 1 << 16 {
        let [a, b] = (offset as u16).to_le_bytes();
        out.extend_from_slice(&[(((len - 1) as u8) << 2) | 2, a, b]);
    } else {
        let [a, b, c, d] = (offset as u32).to_le_bytes();
        out.extend_from_slice(&[(((len - 1) as u8) << 2) | 3, a, b, c, d]);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn decode(block: &[u8]) -> Vec<u8> {
        snap::raw::Decoder::new().decompress_vec(block).unwrap()
    }

    #[test]
    fn repeated_keys_become_copies_that_decode_to_the_same_bytes() {
        let mut s = SnappyStream::default();
        s.reset();
        let a = b"\x0a\x0bjob=node-exporter-long-value";
        let b = b"\x0a\x05instance=h1";
        let mut want = Vec::new();
        for i in 0..100u8 {
            s.literal(&[i, i]);
            want.extend_from_slice(&[i, i]);
            s.keyed(1, a.len(), |o| put_bytes(o, a));
            want.extend_from_slice(a);
            s.keyed(2, b.len(), |o| put_bytes(o, b));
            want.extend_from_slice(b);
            s.repeated(b"\x10\x80\x90\xa0\xb0\xc0\x01");
            want.extend_from_slice(b"\x10\x80\x90\xa0\xb0\xc0\x01");
        }
        let block = s.finish();
        assert_eq!(decode(&block), want);
        assert!(
            block.len() < want.len() / 4,
            "{} bytes for {}",
            block.len(),
            want.len()
        );
    }

    #[test]
    fn a_keyed_length_is_known_until_the_next_request_or_a_colliding_key() {
        let mut s = SnappyStream::default();
        s.reset();
        let known_len = |s: &SnappyStream, key| s.find(key).map(|o| o.len);
        assert_eq!(known_len(&s, 1), None);
        s.keyed(1, 5, |o| put_bytes(o, b"abcde"));
        assert_eq!(known_len(&s, 1), Some(5));
        assert_eq!(known_len(&s, 2), None);
        // A key in the same slot takes it over.
        let rival = (2..u32::MAX).find(|&k| slot_of(k) == slot_of(1)).unwrap();
        s.keyed(rival, 3, |o| put_bytes(o, b"xyz"));
        assert_eq!(known_len(&s, 1), None);
        assert_eq!(known_len(&s, rival), Some(3));
        s.reset();
        assert_eq!(known_len(&s, rival), None);
    }

    #[test]
    fn long_and_far_copies_use_every_element_form() {
        let mut s = SnappyStream::default();
        s.reset();
        let big: Vec<u8> = (0..200u32).map(|i| (i * 7) as u8).collect();
        let filler = vec![9u8; 70_000];
        let mut want = Vec::new();
        s.keyed(7, big.len(), |o| put_bytes(o, &big));
        want.extend_from_slice(&big);
        s.keyed(8, 7, |o| put_bytes(o, b"abcdefg"));
        want.extend_from_slice(b"abcdefg");
        s.keyed(8, 7, |o| put_bytes(o, b"abcdefg"));
        want.extend_from_slice(b"abcdefg");
        s.literal(&filler);
        want.extend_from_slice(&filler);
        s.keyed(7, big.len(), |o| put_bytes(o, &big));
        want.extend_from_slice(&big);
        assert_eq!(decode(&s.finish()), want);
    }

    #[test]
    fn repeats_inside_literals_become_copies() {
        let mut s = SnappyStream::default();
        s.reset();
        let mut want = Vec::new();
        for i in 0..50 {
            let text = format!("/kubepods/burstable/pod{i:04}-c393-7e37/search-indexer-{i}");
            s.literal(text.as_bytes());
            want.extend_from_slice(text.as_bytes());
            s.keyed(1, 17, |o| put_bytes(o, b"a pair in between"));
            want.extend_from_slice(b"a pair in between");
        }
        let block = s.finish();
        assert_eq!(decode(&block), want);
        assert!(
            block.len() < want.len() / 3,
            "{} of {}",
            block.len(),
            want.len()
        );
    }

    proptest! {
        /// Literal text drawn from a small alphabet with separators (many
        /// repeats, matches across and within runs, overlapping copies).
        #[test]
        fn repetitive_literals_round_trip(
            parts in proptest::collection::vec(("[ab/_]{0,40}", any::<bool>()), 0..80)
        ) {
            let mut s = SnappyStream::default();
            s.reset();
            let mut want = Vec::new();
            for (text, keyed) in parts {
                if keyed {
                    s.keyed(3, 8, |o| put_bytes(o, b"kkkkkkkk"));
                    want.extend_from_slice(b"kkkkkkkk");
                }
                s.literal(text.as_bytes());
                want.extend_from_slice(text.as_bytes());
            }
            prop_assert_eq!(decode(&s.finish()), want);
        }
    }

    proptest! {
        /// One stream reused for request after request: nothing an earlier
        /// request left in its tables is taken for this request's bytes.
        #[test]
        fn requests_written_by_one_stream_each_round_trip(
            requests in proptest::collection::vec(
                proptest::collection::vec(("[ab/_]{0,24}", 0u32..4), 0..30),
                1..6,
            )
        ) {
            let mut s = SnappyStream::default();
            for parts in requests {
                s.reset();
                let mut want = Vec::new();
                for (text, key) in parts {
                    if key > 0 {
                        let pair = format!("pair{key}");
                        s.keyed(key, pair.len(), |o| put_bytes(o, pair.as_bytes()));
                        want.extend_from_slice(pair.as_bytes());
                    }
                    s.literal(text.as_bytes());
                    want.extend_from_slice(text.as_bytes());
                }
                prop_assert_eq!(decode(&s.finish()), want);
            }
        }
    }

    #[test]
    fn bytes_written_past_a_literal_are_not_part_of_it() {
        // The pair table unpacks a word at a time and leaves bytes past
        // the text; the next bytes of the request go over them.
        let mut s = SnappyStream::default();
        s.reset();
        s.keyed(1, 4, |o| {
            o[..4 + PairTable::WIRE_SLACK].fill(b'#');
            put_bytes(o, b"pair")
        });
        s.literal(b"next");
        // A writer that claims more than asked for is cut at what was.
        s.keyed(2, 3, |o| put_bytes(o, b"abcdef"));
        s.plain(b"!");
        assert_eq!(decode(&s.finish()), b"pairnextabc!");
    }

    #[test]
    fn a_reused_stream_forgets_the_previous_request() {
        let mut s = SnappyStream::default();
        s.reset();
        for _ in 0..100 {
            s.literal(b"0123456789");
            s.repeated(b"\x10\x01\x02");
            s.keyed(9, 10, |o| put_bytes(o, b"pair bytes"));
        }
        let _ = s.finish();
        // A shorter request with the same timestamp and key: nothing may
        // refer back into the previous one.
        s.reset();
        s.repeated(b"\x10\x01\x02");
        s.keyed(9, 10, |o| put_bytes(o, b"pair bytes"));
        s.literal(b"0123456789");
        assert_eq!(decode(&s.finish()), b"\x10\x01\x02pair bytes0123456789");
    }

    #[test]
    fn a_recycled_block_is_written_into_again_unless_shared() {
        let mut s = SnappyStream::default();
        let request = |s: &mut SnappyStream, text: &[u8]| {
            s.reset();
            s.literal(text);
            s.finish()
        };
        let first = request(&mut s, &[b'a'; 4000]);
        let first_at = first.as_ptr() as usize;
        s.recycle(first);
        let spare_at = s.spare.as_ref().map(|b| b.as_ptr() as usize);
        assert!(
            spare_at.is_some_and(|at| (first_at - HEADER_ROOM..first_at).contains(&at)),
            "spare {spare_at:x?}, recycled block at {first_at:#x}"
        );
        // The stream's own buffer takes the next block, the spare the one
        // after; each decodes to its own text.
        let second = request(&mut s, &[b'b'; 3000]);
        assert!(s.spare.is_none());
        let third = request(&mut s, b"third");
        assert_eq!(decode(&second), vec![b'b'; 3000]);
        assert_eq!(decode(&third), b"third");

        // A block someone still holds is not taken.
        let held = second.clone();
        s.recycle(second);
        assert!(s.spare.is_none());
        assert_eq!(decode(&held), vec![b'b'; 3000]);
    }

    #[test]
    fn hex_digits_are_told_apart_from_every_other_byte() {
        for b in 0..=255u8 {
            let want = b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
            for shift in [0, 8, 32, 56] {
                let got = (hex_digits(u64::from(b) << shift) >> shift) & 0xff;
                assert_eq!(got, if want { 0xff } else { 0 }, "{b:#04x} << {shift}");
            }
        }
    }

    proptest! {
        #[test]
        fn hex_digits_judges_each_byte_alone(x in any::<u64>()) {
            let want = x.to_le_bytes().iter().rev().fold(0u64, |acc, &b| {
                let hex = b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
                acc << 8 | if hex { 0xff } else { 0 }
            });
            prop_assert_eq!(hex_digits(x), want);
        }

        #[test]
        fn a_hex_run_ends_at_its_first_other_byte(
            text in "[0-9a-f,.A-Z_/\\-é]{0,40}",
            from in 0usize..8,
        ) {
            let buf = text.as_bytes();
            let from = from.min(buf.len());
            let is_run = |b: &u8| *b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(b);
            let want = buf[from..].iter().position(|b| !is_run(b)).map_or(buf.len(), |i| from + i);
            prop_assert_eq!(hex_run_end(buf, from, buf.len()), want);
        }
    }

    #[test]
    fn an_identifier_new_to_the_request_is_still_found_again_later() {
        let uuid = "5c8951ca-7268-3d48-4873-27d9e6ca2fb9";
        let id = format!("/kubepods/burstable/pod{uuid}/ce7ca2019f8801468e83e82810af2fb346519fd2a9a00c779de6a6ef5d3364cd");
        let name = format!("k8s_nginx_nginx-ee19af1f05-a8f24_default_{uuid}_0");
        let mut s = SnappyStream::default();
        s.reset();
        s.literal(id.as_bytes());
        s.literal(name.as_bytes());
        let want = format!("{id}{name}");
        let block = s.finish();
        assert_eq!(decode(&block), want.as_bytes());
        // All but the first group of the UUID (27 of its 36 bytes) in
        // `name` is a copy of those in `id`.
        assert!(
            block.len() + 20 < want.len(),
            "{} of {}",
            block.len(),
            want.len()
        );
    }

    #[test]
    fn empty_request() {
        let mut s = SnappyStream::default();
        s.reset();
        assert_eq!(decode(&s.finish()), Vec::<u8>::new());
    }

    proptest! {
        #[test]
        fn word_starts_follow_a_separator_and_none_is_skipped(
            buf in proptest::collection::vec(
                prop_oneof![any::<u8>(), Just(b'_'), Just(b'/'), Just(b'a'), Just(b'0')],
                0..64),
            at in 1usize..64,
            to in 0usize..64,
        ) {
            let to = to.min(buf.len());
            let naive = (at..to).find(|&p| is_separator(buf[p - 1])).unwrap_or(to.max(at));
            prop_assert_eq!(next_word_start(&buf, at, to).max(at), naive);
        }

        /// A sample's head and value of any lengths, whatever their
        /// arrays hold past those lengths, after a copy or a literal.
        #[test]
        fn a_sample_is_its_head_value_and_timestamp(
            head in any::<[u8; 16]>(),
            head_len in 0usize..=16,
            value in any::<[u8; 16]>(),
            value_len in 0usize..=16,
            ts in any::<[u8; 16]>(),
            ts_len in 0usize..=16,
            before in 0u8..3,
        ) {
            let mut s = SnappyStream::default();
            s.reset();
            let mut want = Vec::new();
            match before {
                0 => {}
                1 => s.literal(b"label text"),
                _ => {
                    // The second a copy: the sample follows a copy.
                    s.keyed(1, 4, |o| put_bytes(o, b"pair"));
                    s.keyed(1, 4, |o| put_bytes(o, b"pair"));
                    want.extend_from_slice(b"pairpair");
                }
            }
            if before == 1 {
                want.extend_from_slice(b"label text");
            }
            let mut ts_padded = [0u8; 16];
            ts_padded[..ts_len].copy_from_slice(&ts[..ts_len]);
            s.sample((&head, head_len), (&value, value_len), (&ts_padded, ts_len));
            want.extend_from_slice(&head[..head_len]);
            want.extend_from_slice(&value[..value_len]);
            want.extend_from_slice(&ts[..ts_len]);
            prop_assert_eq!(decode(&s.finish()), want);
        }

        #[test]
        fn any_sequence_round_trips(
            ops in proptest::collection::vec(
                (0u32..20, proptest::collection::vec(any::<u8>(), 0..300), any::<bool>()),
                0..200)
        ) {
            // Each key always stands for the same bytes, as the caller promises.
            let mut bytes_of: std::collections::HashMap<u32, Vec<u8>> = Default::default();
            let mut s = SnappyStream::default();
            s.reset();
            let mut want = Vec::new();
            for (key, bytes, keyed) in ops {
                if key == 0 {
                    s.repeated(&bytes);
                    want.extend_from_slice(&bytes);
                } else if keyed {
                    let b = bytes_of.entry(key).or_insert(bytes).clone();
                    s.keyed(key, b.len(), |o| put_bytes(o, &b));
                    want.extend_from_slice(&b);
                } else {
                    s.literal(&bytes);
                    want.extend_from_slice(&bytes);
                }
            }
            prop_assert_eq!(s.uncompressed_len(), want.len());
            prop_assert_eq!(decode(&s.finish()), want);
        }
    }
}
