//! Growth and compaction policy for the byte arenas behind [`PairTable`] and
//! [`LabelStore`](crate::LabelStore), and growth of the per-series arrays
//! indexed by slot.
//!
//! Both arenas only ever append; removed entries leave dead bytes until a
//! compaction rewrites the live ones. `Vec`'s own doubling would leave up to
//! half of a large arena unused right after it grows, and a compaction
//! threshold of "dead > live" could hold as much garbage again: under churn
//! that is memory that moves with the arena's position relative to a power of
//! two rather than with the number of series. Growing by a quarter and
//! compacting once a quarter is dead bounds an arena at about 1.6× its live
//! bytes, at the price of copying each byte a few more times (amortised O(1)).
//!
//! [`PairTable`]: crate::PairTable

/// Dead bytes below this are never worth a compaction pass.
const COMPACT_MIN_DEAD: usize = 64 << 10;

/// The smallest step an arena grows by.
const MIN_GROWTH: usize = 4 << 10;

/// Appends `bytes` to `arena`, growing its capacity by a quarter (not
/// doubling) when it is full.
pub(crate) fn append(arena: &mut Vec<u8>, bytes: &[u8]) {
    let spare = arena.capacity() - arena.len();
    if spare < bytes.len() {
        let step = (arena.len() / 4).max(MIN_GROWTH).max(bytes.len());
        arena.reserve_exact(step);
    }
    arena.extend_from_slice(bytes);
}

/// Resizes `v` to `len` elements (filled with `fill`), growing its
/// capacity by at least a quarter rather than doubling: for the per-series
/// arrays indexed by slot, whose length only ever grows to the peak number
/// of series.
pub fn resize_gently<T: Clone>(v: &mut Vec<T>, len: usize, fill: T) {
    if len > v.capacity() {
        let step = (len - v.len()).max(v.len() / 4).max(64);
        v.reserve_exact(step);
    }
    v.resize(len, fill);
}

/// Whether an arena of `len` bytes, `dead` of them garbage, should be
/// compacted now.
pub(crate) fn should_compact(dead: usize, len: usize) -> bool {
    dead > COMPACT_MIN_DEAD && dead > len / 4
}

/// A fresh arena for `live` bytes with room for a little growth.
pub(crate) fn with_live(live: usize) -> Vec<u8> {
    Vec::with_capacity(live + (live / 8).max(MIN_GROWTH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arena_grows_by_a_quarter_not_by_doubling() {
        let mut a = Vec::new();
        let chunk = [7u8; 100];
        while a.len() < 1 << 20 {
            append(&mut a, &chunk);
        }
        assert!(
            a.capacity() <= a.len() + a.len() / 4 + chunk.len(),
            "{}",
            a.capacity()
        );
        assert!(a.iter().all(|&b| b == 7));
    }

    #[test]
    fn slot_arrays_grow_by_a_quarter() {
        let mut v: Vec<u64> = Vec::new();
        for n in 1..=100_000 {
            resize_gently(&mut v, n, 0);
        }
        assert_eq!(v.len(), 100_000);
        assert!(v.capacity() <= 125_000 + 64, "{}", v.capacity());
    }

    #[test]
    fn compaction_waits_for_a_quarter_of_dead_bytes() {
        assert!(!should_compact(10 << 10, 20 << 10), "below the minimum");
        assert!(!should_compact(200 << 10, 1 << 20));
        assert!(should_compact(300 << 10, 1 << 20));
    }
}
