//! The newest records, kept in memory for readers at the head of the WAL.
//!
//! A remote-write queue that keeps up reads every record moments after it
//! was written. From the file that costs, per commit, a read of what was
//! just written, an empty read and a directory lookup to learn that nothing
//! more is there, a CRC check and the record's decompression — bytes the
//! writer still had in hand. So the writer also publishes each commit's
//! records here, uncompressed, once the OS has them; a reader whose
//! position is where a published record begins takes it from here, and
//! one whose position is the end of everything written knows that without
//! a system call. Everything else — a reader behind the window kept here,
//! a commit too large to keep, the first pass after a restart — reads the
//! file as before. The file stays the durable copy: nothing is published
//! that the OS has not accepted.
//!
//! Records are found by where the previous record ended (a reader's
//! position), not where their frame begins: a record may start on the next
//! page, or in the next segment.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::reader::Position;

/// One published record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TailRecord {
    /// Where the record before it ended: the position a reader has when
    /// this record is next.
    pub prev_end: Position,
    pub end: Position,
    /// Its uncompressed payload in [`TailChunk::data`].
    start: u32,
    len: u32,
}

/// The records of one write, in order.
#[derive(Debug, Default)]
pub(crate) struct TailChunk {
    records: Vec<TailRecord>,
    data: Vec<u8>,
}

impl TailChunk {
    pub fn record(&self, i: usize) -> Option<&TailRecord> {
        self.records.get(i)
    }

    pub fn payload(&self, r: &TailRecord) -> &[u8] {
        let start = r.start as usize;
        self.data
            .get(start..start + r.len as usize)
            .unwrap_or_default()
    }

    fn find(&self, prev_end: Position) -> Option<(usize, TailRecord)> {
        self.records
            .iter()
            .enumerate()
            .find(|(_, r)| r.prev_end == prev_end)
            .map(|(i, &r)| (i, r))
    }
}

/// Writes older than this are dropped at the next write, whatever the
/// byte cap: a reader that keeps up takes a write milliseconds after it,
/// and one seconds behind is catching up through the file. An idle agent
/// (a commit every scrape interval) so keeps one or two writes instead of
/// the cap's worth of old ones (256 KiB of its 1.5 MB of heap).
const MAX_AGE: Duration = Duration::from_secs(5);

/// What the tail knows about the record after a position.
pub(crate) enum Lookup {
    /// It is record `i` of the chunk.
    Record(Arc<TailChunk>, usize, TailRecord),
    /// Nothing was written after it.
    AtHead,
    /// Not known here: read the file.
    Unknown,
}

#[derive(Default)]
struct Window {
    /// The kept writes, oldest first, each with when it was published.
    chunks: VecDeque<(Instant, Arc<TailChunk>)>,
    bytes: usize,
    /// The end of everything written, when known.
    head: Option<Position>,
    /// The last chunk that fell out of the window with no reader holding
    /// it, whose buffers the next write is copied into: a write's records
    /// are the size of a scrape's, and allocating and freeing them once
    /// a write kept the allocator sorting its bins.
    spare: Option<TailChunk>,
}

pub(crate) struct WalTail {
    window: Mutex<Window>,
    /// Payload bytes kept at most; a write larger than half of it is not
    /// kept (readers take it from the file).
    cap: usize,
}

impl WalTail {
    pub fn new(cap: usize) -> WalTail {
        WalTail {
            window: Mutex::new(Window::default()),
            cap,
        }
    }

    /// Publishes the records of a write the OS accepted: `payloads[i]`
    /// spans `spans[i]` (previous record's end, its own end).
    pub fn publish(&self, payloads: &[&[u8]], spans: &[(Position, Position)]) {
        self.publish_at(Instant::now(), payloads, spans);
    }

    fn publish_at(&self, now: Instant, payloads: &[&[u8]], spans: &[(Position, Position)]) {
        let Some(&(_, head)) = spans.last() else {
            return;
        };
        let size: usize = payloads.iter().map(|p| p.len()).sum();
        // Offsets in a chunk are 32-bit.
        let keep =
            payloads.len() == spans.len() && size <= self.cap / 2 && u32::try_from(size).is_ok();
        let chunk = keep.then(|| {
            let spare = self.window.lock().spare.take();
            let TailChunk {
                mut records,
                mut data,
            } = spare.unwrap_or_default();
            records.clear();
            data.clear();
            data.reserve(size);
            records.extend(payloads.iter().zip(spans).map(|(p, &(prev_end, end))| {
                let start = data.len() as u32;
                data.extend_from_slice(p);
                TailRecord {
                    prev_end,
                    end,
                    start,
                    len: p.len() as u32,
                }
            }));
            Arc::new(TailChunk { records, data })
        });
        let mut w = self.window.lock();
        w.head = Some(head);
        let Some(chunk) = chunk else {
            return;
        };
        w.bytes += chunk.data.len();
        w.chunks.push_back((now, chunk));
        while let Some(&(published, _)) = w.chunks.front() {
            if w.bytes <= self.cap && now.saturating_duration_since(published) <= MAX_AGE {
                break;
            }
            let Some((_, old)) = w.chunks.pop_front() else {
                break;
            };
            w.bytes -= old.data.len();
            if let Ok(old) = Arc::try_unwrap(old) {
                w.spare = Some(old);
            }
        }
    }

    /// Forgets where the head is (after a failed write, whose torn bytes
    /// only the file reader knows how to pass).
    pub fn invalidate(&self) {
        self.window.lock().head = None;
    }

    pub fn lookup(&self, pos: Position) -> Lookup {
        let w = self.window.lock();
        if w.head == Some(pos) {
            return Lookup::AtHead;
        }
        for (_, chunk) in w.chunks.iter().rev() {
            let (Some(first), Some(last)) = (chunk.records.first(), chunk.records.last()) else {
                continue;
            };
            if pos < first.prev_end {
                continue;
            }
            if pos >= last.end {
                break;
            }
            return match chunk.find(pos) {
                Some((i, r)) => Lookup::Record(Arc::clone(chunk), i, r),
                None => Lookup::Unknown,
            };
        }
        Lookup::Unknown
    }

    #[cfg(test)]
    pub fn kept_bytes(&self) -> usize {
        self.window.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(segment: u32, offset: u64) -> Position {
        Position::new(segment, offset)
    }

    fn payload_at(tail: &WalTail, pos: Position) -> Option<Vec<u8>> {
        match tail.lookup(pos) {
            Lookup::Record(c, _, r) => Some(c.payload(&r).to_vec()),
            _ => None,
        }
    }

    #[test]
    fn records_are_found_by_the_previous_end_across_segments() {
        let tail = WalTail::new(1 << 20);
        tail.publish(&[b"a", b"bb"], &[(p(0, 0), p(0, 8)), (p(0, 8), p(0, 17))]);
        // The next write rotated: its record begins in segment 1.
        tail.publish(&[b"ccc"], &[(p(0, 17), p(1, 10))]);
        assert_eq!(payload_at(&tail, p(0, 0)).as_deref(), Some(&b"a"[..]));
        assert_eq!(payload_at(&tail, p(0, 8)).as_deref(), Some(&b"bb"[..]));
        assert_eq!(payload_at(&tail, p(0, 17)).as_deref(), Some(&b"ccc"[..]));
        assert!(matches!(tail.lookup(p(1, 10)), Lookup::AtHead));
        // Inside a record, or before the window: the file knows.
        assert!(matches!(tail.lookup(p(0, 3)), Lookup::Unknown));
        assert!(matches!(tail.lookup(p(1, 0)), Lookup::Unknown));
    }

    #[test]
    fn the_window_keeps_the_newest_writes_under_its_cap() {
        let tail = WalTail::new(64);
        let data = [7u8; 16];
        let mut end = 0;
        for _ in 0..10 {
            tail.publish(&[&data], &[(p(0, end), p(0, end + 23))]);
            end += 23;
        }
        assert_eq!(tail.kept_bytes(), 64);
        assert!(matches!(tail.lookup(p(0, 0)), Lookup::Unknown));
        assert!(payload_at(&tail, p(0, end - 23)).is_some());
        assert!(payload_at(&tail, p(0, end - 4 * 23)).is_some());
        assert!(payload_at(&tail, p(0, end - 5 * 23)).is_none());
    }

    #[test]
    fn writes_older_than_the_age_limit_are_dropped_at_the_next_write() {
        let tail = WalTail::new(1 << 20);
        let t0 = Instant::now();
        tail.publish_at(t0, &[b"a"], &[(p(0, 0), p(0, 8))]);
        tail.publish_at(t0 + MAX_AGE, &[b"b"], &[(p(0, 8), p(0, 16))]);
        // Both are within the age limit of the newest write.
        assert_eq!(payload_at(&tail, p(0, 0)).as_deref(), Some(&b"a"[..]));
        tail.publish_at(t0 + MAX_AGE * 2, &[b"c"], &[(p(0, 16), p(0, 24))]);
        assert!(matches!(tail.lookup(p(0, 0)), Lookup::Unknown));
        assert_eq!(payload_at(&tail, p(0, 8)).as_deref(), Some(&b"b"[..]));
        assert_eq!(tail.kept_bytes(), 2);
        // An idle agent's next commit, a scrape interval later: only it
        // is kept.
        let later = t0 + MAX_AGE * 2 + Duration::from_secs(15);
        tail.publish_at(later, &[b"d"], &[(p(0, 24), p(0, 32))]);
        assert_eq!(tail.kept_bytes(), 1);
        assert!(matches!(tail.lookup(p(0, 16)), Lookup::Unknown));
        assert_eq!(payload_at(&tail, p(0, 24)).as_deref(), Some(&b"d"[..]));
        assert!(matches!(tail.lookup(p(0, 32)), Lookup::AtHead));
    }

    #[test]
    fn a_write_reuses_the_buffers_of_an_evicted_chunk_only_once_no_reader_holds_it() {
        let tail = WalTail::new(64);
        let mut end = 0;
        let mut held = None;
        for i in 0..12u8 {
            tail.publish(&[&[i; 16]], &[(p(0, end), p(0, end + 23))]);
            if i == 3 {
                // A reader still decoding write 3 while it is evicted.
                held = Some(tail.lookup(p(0, end)));
            }
            end += 23;
        }
        let Some(Lookup::Record(chunk, _, r)) = held else {
            panic!("write 3 was in the window when looked up");
        };
        assert_eq!(chunk.payload(&r), &[3u8; 16][..]);
        assert!(tail.window.lock().spare.is_some());
        for i in 8..12u8 {
            let at = p(0, u64::from(i) * 23);
            assert_eq!(payload_at(&tail, at), Some(vec![i; 16]), "write {i}");
        }
    }

    #[test]
    fn a_large_write_moves_the_head_but_is_read_from_the_file() {
        let tail = WalTail::new(64);
        tail.publish(&[b"x"], &[(p(0, 0), p(0, 8))]);
        tail.publish(&[&[0u8; 33]], &[(p(0, 8), p(0, 48))]);
        assert!(matches!(tail.lookup(p(0, 8)), Lookup::Unknown));
        assert!(matches!(tail.lookup(p(0, 48)), Lookup::AtHead));
        tail.invalidate();
        assert!(matches!(tail.lookup(p(0, 48)), Lookup::Unknown));
    }
}
