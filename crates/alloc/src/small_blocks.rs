//! The agent's small blocks (under [`MIN_BLOCK`]), kept where they can be
//! huge pages too.
//!
//! malloc keeps small blocks in per-thread arenas on 4 KiB pages, and
//! cannot be asked for more after the process started. At 400k series its
//! arenas were 3.5 MiB of the memory the agent touched every scrape
//! interval, on small pages the host of a virtual machine takes back and
//! gives again one at a time (`docs/performance.md`, "Memory the host lets
//! go cold"). Here they come from a range of address space of their own,
//! committed like the region ([`Reservation`]) but in smaller steps
//! ([`POLICY`]).
//!
//! A block's size is rounded up to one of [`CLASS_COUNT`] classes (16-byte
//! steps to 128 bytes, then four a doubling: at most a quarter more). Each
//! class carves its blocks from spans of its own ([`span_of`]) and keeps the ones
//! freed on a list threaded through the blocks themselves, which the
//! next block of the class is taken from. Spans are never given back or
//! shared between classes: the memory a class keeps is its peak, as a
//! malloc arena's mostly is; the agent's small blocks are per target and
//! per request, not per series.

use crate::huge_pages::{Block, Memory, Occupancy, Policy, Reservation, MIN_BLOCK, PAGE};

/// The number of size classes.
pub const CLASS_COUNT: usize = 8 + 4 * 7;

/// Each class's blocks are carved from spans of at least this many bytes,
/// and four blocks: a class's last span is partly used, and with 36
/// classes 64 KiB for each would leave up to 2.3 MiB carved and untouched.
pub const MIN_SPAN: usize = 16 << 10;

/// The span a class carves its blocks from: whole pages (spans start on a
/// page, which aligns their blocks), at least [`MIN_SPAN`] and four
/// blocks. Classes from 4 KiB are multiples of 1 KiB, so four of them fill
/// whole pages exactly.
pub fn span_of(class: usize) -> usize {
    (4 * CLASS_SIZES[class]).max(MIN_SPAN)
}

/// Committed 256 KiB at a time, each huge page made as it is committed
/// whole, the first one included: the huge page being filled stays on
/// small pages, resident only where touched. An idle agent's small blocks
/// (a few hundred KiB) so never take a huge page. (In whole huge pages,
/// each resident as a whole, the range took 6 MiB for 3.6 MiB of blocks at
/// 400k series, 2 MiB more than malloc's arenas.)
pub const POLICY: Policy = Policy {
    commit_step: 256 << 10,
    small_until: 0,
    huge_from: 0,
};

/// Address space reserved for small blocks (not memory); beyond it they go
/// to malloc.
pub const RESERVE: usize = 16 << 30;

/// The bytes a block of each class takes.
pub const CLASS_SIZES: [usize; CLASS_COUNT] = class_sizes();

const fn class_sizes() -> [usize; CLASS_COUNT] {
    let mut sizes = [0; CLASS_COUNT];
    let mut i = 0;
    while i < 8 {
        sizes[i] = 16 * (i + 1);
        i += 1;
    }
    let mut doubling = 128;
    while i < CLASS_COUNT {
        let quarter = doubling / 4;
        let mut step = 1;
        while step <= 4 {
            sizes[i] = doubling + step * quarter;
            i += 1;
            step += 1;
        }
        doubling *= 2;
    }
    sizes
}

/// The class of a block of `size` bytes aligned to `align`: the smallest
/// class at least that large whose size is a multiple of the alignment
/// (spans start on a page, so its blocks are aligned). `None` for blocks
/// that are not small, or aligned beyond a page.
pub fn class_of(size: usize, align: usize) -> Option<usize> {
    if size == 0 || size >= MIN_BLOCK || align > PAGE {
        return None;
    }
    let size = size.checked_next_multiple_of(align)?;
    let first = if size <= 128 {
        (size - 1) / 16
    } else {
        let doubling_log = usize::BITS - 1 - (size - 1).leading_zeros();
        let doubling = 1usize << doubling_log;
        let quarter = doubling / 4;
        let step = (size - doubling).div_ceil(quarter);
        8 + (doubling_log as usize - 7) * 4 + step - 1
    };
    (first..CLASS_COUNT).find(|&c| CLASS_SIZES[c].is_multiple_of(align))
}

/// What the small blocks need besides [`Memory`]: the free lists' links,
/// a word at the start of each free block.
pub trait FreeLinks: Memory {
    /// The link stored in the free block at `addr`.
    fn next(&self, addr: usize) -> usize;
    /// Stores `next` in the free block at `addr`.
    fn set_next(&mut self, addr: usize, next: usize);
}

/// The size classes' spans, fresh blocks and free lists.
#[derive(Debug)]
pub struct SmallBlocks {
    space: Reservation,
    /// The end of the spans carved so far.
    carved: usize,
    /// Each class's first free block (0: none).
    free: [usize; CLASS_COUNT],
    /// Each class's never used blocks: from `.0` to `.1` in its last span.
    fresh: [(usize, usize); CLASS_COUNT],
    used: usize,
}

impl SmallBlocks {
    /// Small blocks in `[base, base + reserved)`, both aligned to
    /// [`crate::huge_pages::HUGE_PAGE`].
    pub fn new(base: usize, reserved: usize) -> Self {
        SmallBlocks {
            space: Reservation::new(base, reserved, POLICY),
            carved: base,
            free: [0; CLASS_COUNT],
            fresh: [(0, 0); CLASS_COUNT],
            used: 0,
        }
    }

    pub fn stats(&self) -> Occupancy {
        Occupancy {
            used: self.used,
            committed: self.space.committed(),
        }
    }

    /// A block of `class`: the last one freed, else a fresh one (which
    /// reads as zero). `None` when the reserved range is full or the
    /// kernel refuses to commit more.
    pub fn alloc(&mut self, class: usize, mem: &mut impl FreeLinks) -> Option<Block> {
        let size = *CLASS_SIZES.get(class)?;
        let head = self.free[class];
        if head != 0 {
            self.free[class] = mem.next(head);
            self.used += size;
            return Some(Block {
                addr: head,
                reused: true,
            });
        }
        let (mut next, mut end) = self.fresh[class];
        // A class with no span yet has an empty one, (0, 0).
        if end - next < size {
            let span = span_of(class);
            next = self.carve(span, mem)?;
            end = next + span;
        }
        self.fresh[class] = (next + size, end);
        self.used += size;
        Some(Block {
            addr: next,
            reused: false,
        })
    }

    /// Returns the block of `class` at `addr` to its class's free list.
    pub fn free(&mut self, addr: usize, class: usize, mem: &mut impl FreeLinks) {
        let Some(&size) = CLASS_SIZES.get(class) else {
            return;
        };
        mem.set_next(addr, self.free[class]);
        self.free[class] = addr;
        self.used -= size;
    }

    /// A new span of `len` bytes, committing more of the range if need be.
    fn carve(&mut self, len: usize, mem: &mut impl Memory) -> Option<usize> {
        if self.space.top() - self.carved < len {
            self.space.commit_more(len, mem)?;
        }
        let span = self.carved;
        self.carved += len;
        Some(span)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::huge_pages::recorder::Recorder;
    use crate::huge_pages::HUGE_PAGE;

    const BASE: usize = 1 << 40;

    #[test]
    fn every_small_size_gets_the_smallest_class_that_holds_it() {
        assert_eq!(CLASS_SIZES[..9], [16, 32, 48, 64, 80, 96, 112, 128, 160]);
        assert_eq!(CLASS_SIZES[CLASS_COUNT - 1], MIN_BLOCK);
        for size in 1..MIN_BLOCK {
            let c = class_of(size, 8).unwrap();
            assert!(CLASS_SIZES[c] >= size, "{size}");
            assert!(c == 0 || CLASS_SIZES[c - 1] < size, "{size}");
            assert!(CLASS_SIZES[c] - size <= CLASS_SIZES[c] / 5 + 15, "{size}");
        }
        assert_eq!(class_of(0, 1), None);
        assert_eq!(class_of(MIN_BLOCK, 1), None);
        assert_eq!(class_of(16, 2 * PAGE), None);
    }

    #[test]
    fn an_aligned_block_gets_a_class_that_is_a_multiple_of_its_alignment() {
        for align in [32, 64, 128, 256, 1024, PAGE] {
            for size in [1, 17, 100, 129, 1000, 5000] {
                let c = class_of(size, align).unwrap();
                assert!(CLASS_SIZES[c] >= size);
                assert_eq!(CLASS_SIZES[c] % align, 0, "{size} aligned to {align}");
            }
        }
        assert_eq!(CLASS_SIZES[class_of(100, 64).unwrap()], 128);
        assert_eq!(class_of(MIN_BLOCK - 1, PAGE), Some(CLASS_COUNT - 1));
    }

    #[test]
    fn blocks_are_carved_side_by_side_and_a_freed_one_is_taken_first() {
        let (mut s, mut m) = (SmallBlocks::new(BASE, 64 * HUGE_PAGE), Recorder::default());
        let c = class_of(24, 8).unwrap();
        let a = s.alloc(c, &mut m).unwrap();
        let b = s.alloc(c, &mut m).unwrap();
        assert_eq!(
            (a, b),
            (
                Block {
                    addr: BASE,
                    reused: false
                },
                Block {
                    addr: BASE + 32,
                    reused: false
                }
            )
        );
        // Another class starts a span of its own.
        let other = s.alloc(class_of(1000, 8).unwrap(), &mut m).unwrap();
        assert_eq!(other.addr, BASE + MIN_SPAN);
        assert_eq!(m.committed, vec![(BASE, POLICY.commit_step)]);
        assert_eq!(s.stats().used, 64 + 1024);

        s.free(a.addr, c, &mut m);
        s.free(b.addr, c, &mut m);
        assert_eq!(s.stats().used, 1024);
        let again = [s.alloc(c, &mut m).unwrap(), s.alloc(c, &mut m).unwrap()];
        assert_eq!(again.map(|b| b.addr), [b.addr, a.addr], "last freed first");
        assert!(again.iter().all(|b| b.reused));
        let fresh = s.alloc(c, &mut m).unwrap();
        assert_eq!(
            fresh,
            Block {
                addr: BASE + 64,
                reused: false
            }
        );
    }

    #[test]
    fn spans_hold_four_blocks_or_more_in_whole_pages() {
        for (class, size) in CLASS_SIZES.iter().enumerate() {
            let span = span_of(class);
            assert!(span.is_multiple_of(PAGE) && span >= MIN_SPAN, "{class}");
            assert!(span / size >= 4, "{class}");
        }
        assert_eq!(span_of(0), MIN_SPAN);
        assert_eq!(span_of(CLASS_COUNT - 2), 4 * (14 << 10));
    }

    #[test]
    fn a_full_span_starts_another_and_huge_pages_are_made_as_they_are_committed_whole() {
        let (mut s, mut m) = (SmallBlocks::new(BASE, 64 * HUGE_PAGE), Recorder::default());
        let c = CLASS_COUNT - 2; // 14 KiB, four a span
        let size = CLASS_SIZES[c];
        let addrs: Vec<usize> = (0..5).map(|_| s.alloc(c, &mut m).unwrap().addr).collect();
        let expected: Vec<usize> = (0..5).map(|i| BASE + i * size).collect();
        assert_eq!(addrs, expected, "spans side by side");
        // Committed a step at a time; each huge page is advised and
        // collapsed as it is completed.
        let step = POLICY.commit_step;
        let mut n = 5;
        while s.stats().committed < 2 * HUGE_PAGE && n < 1000 {
            if s.stats().committed < HUGE_PAGE {
                assert!(m.huge.is_empty(), "the first huge page is not whole yet");
            }
            s.alloc(c, &mut m).unwrap();
            n += 1;
        }
        let steps: Vec<(usize, usize)> = (0..2 * HUGE_PAGE / step)
            .map(|i| (BASE + i * step, step))
            .collect();
        assert_eq!(m.committed, steps);
        let made = vec![(BASE, HUGE_PAGE), (BASE + HUGE_PAGE, HUGE_PAGE)];
        assert_eq!(m.huge, made);
        assert_eq!(m.collapsed, made);
        assert!(m.released.is_empty(), "small blocks give nothing back");
    }

    #[test]
    fn a_full_reservation_or_a_refused_commit_gives_none() {
        let (mut s, mut m) = (SmallBlocks::new(BASE, HUGE_PAGE), Recorder::default());
        let c = class_of(MIN_BLOCK - 1, 8).unwrap();
        for _ in 0..HUGE_PAGE / MIN_BLOCK {
            s.alloc(c, &mut m).unwrap();
        }
        assert!(s.alloc(c, &mut m).is_none(), "the range is full");
        let freed = BASE + MIN_BLOCK;
        s.free(freed, c, &mut m);
        assert_eq!(s.alloc(c, &mut m).unwrap().addr, freed, "a freed one still");

        let (mut s, mut m) = (SmallBlocks::new(BASE, HUGE_PAGE), Recorder::default());
        m.refuse_commit = true;
        assert!(s.alloc(0, &mut m).is_none());
        assert_eq!(s.stats().used, 0);
        assert_eq!(s.alloc(CLASS_COUNT, &mut m), None, "no such class");
    }
}
