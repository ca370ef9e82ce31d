//! The agent's large blocks, kept on transparent huge pages.
//!
//! The agent touches most of its per-series memory once a scrape interval
//! (a target's scrape cache when it is scraped, its label sets when they are
//! encoded into a request) and little of it in between. Where the host
//! takes back guest pages that sat idle for a few seconds (the 2-core KVM
//! guest this is measured on; `docs/performance.md`, "Memory the host lets
//! go cold"), the first touch of such a 4 KiB page costs about 10 µs of the
//! agent's CPU: at 400k series that was a third of it. A 2 MiB page is
//! taken back and touched again as one, so the same memory costs about a
//! five-hundredth as many of those touches.
//!
//! glibc's malloc cannot be asked for huge pages after the process started
//! (`glibc.malloc.hugetlb` is read from the environment at start, and even
//! then leaves its thread arenas on small pages), so blocks of at least
//! [`MIN_BLOCK`] bytes (and below the global allocator's large-block size,
//! which malloc maps on its own) come from one [`Region`] of address space
//! reserved at the first such block and advised `MADV_HUGEPAGE` past its
//! first [`SMALL_PAGES_UNTIL`] bytes (so that an idle agent does not take
//! 2 MiB for a few buffers). Smaller blocks have size classes of their own
//! (`small_blocks`), committed the same way ([`Reservation`]). A block is
//! freed by the allocator that owns its address, whatever its size.
//!
//! The region is a best-fit allocator of 4 KiB page runs: free runs are
//! kept by address (to merge neighbours) and by size (to find the best
//! fit). Whole huge pages inside a free run go back to the kernel
//! (`MADV_DONTNEED`); a huge page that still holds a live block stays,
//! which bounds the memory a freed block can keep to less than 2 MiB at
//! each end of a run.

use std::collections::{BTreeMap, BTreeSet};

/// Blocks this large or larger (and below the global allocator's
/// large-block size) live in the region.
pub const MIN_BLOCK: usize = 16 << 10;

/// The region's unit of allocation.
pub const PAGE: usize = 4 << 10;

/// A transparent huge page on x86-64 and aarch64 (4 KiB base pages).
pub const HUGE_PAGE: usize = 2 << 20;

/// The region's first bytes are not advised for huge pages until
/// [`HEAD_HUGE_FROM`] bytes are committed: an idle agent's few large
/// buffers fit here at 4 KiB a page.
pub const SMALL_PAGES_UNTIL: usize = 4 << 20;

/// Committed this far, the region is a busy agent's, whose first bytes are
/// as hot as the rest (3 of their 4 MiB touched every scrape interval at
/// 400k series): they are then advised and made huge pages as well.
pub const HEAD_HUGE_FROM: usize = 2 * SMALL_PAGES_UNTIL;

/// Address space reserved for the region (not memory: `PROT_NONE`, no swap
/// reserved); beyond it blocks go to malloc.
pub const RESERVE: usize = 64 << 30;

/// What the region needs from the kernel; `Kernel` in production, a
/// recording fake in the tests of the bookkeeping.
pub trait Memory {
    /// Makes `[addr, addr + len)` readable and writable; false on failure.
    fn commit(&mut self, addr: usize, len: usize) -> bool;
    /// Asks for huge pages in `[addr, addr + len)` (advice only).
    fn advise_huge(&mut self, addr: usize, len: usize);
    /// Makes the populated small pages of `[addr, addr + len)` huge pages
    /// now (best effort; the bytes stay).
    fn collapse(&mut self, addr: usize, len: usize);
    /// Gives the memory of `[addr, addr + len)` back; it reads as zero after.
    fn release(&mut self, addr: usize, len: usize);
}

/// How a [`Reservation`] is committed and made huge pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Committed this many bytes at a time (a divisor or a multiple of
    /// [`HUGE_PAGE`]).
    pub commit_step: usize,
    /// The first bytes stay on small pages until `huge_from` are committed.
    pub small_until: usize,
    /// Committed this far, the range is a busy agent's, and its start as
    /// hot as the rest: then it is advised and collapsed too.
    pub huge_from: usize,
}

/// The region's: whole huge pages, its first 4 MiB small until 8 MiB are
/// committed.
pub const REGION_POLICY: Policy = Policy {
    commit_step: HUGE_PAGE,
    small_until: SMALL_PAGES_UNTIL,
    huge_from: HEAD_HUGE_FROM,
};

/// A reserved range of address space, committed from its start
/// ([`Policy::commit_step`] at a time) and advised for huge pages past its
/// first [`Policy::small_until`] bytes, a huge page at a time as each is
/// committed whole; the first bytes too once [`Policy::huge_from`] are
/// committed. A huge page committed in more than one step may hold small
/// pages already, so it is collapsed as it is completed; the part of one
/// that is not committed whole stays on small pages, resident only where
/// touched.
#[derive(Debug)]
pub struct Reservation {
    base: usize,
    reserved: usize,
    committed: usize,
    policy: Policy,
}

impl Reservation {
    /// `[base, base + reserved)`, both aligned to [`HUGE_PAGE`].
    pub fn new(base: usize, reserved: usize, policy: Policy) -> Self {
        debug_assert!(base.is_multiple_of(HUGE_PAGE) && reserved.is_multiple_of(HUGE_PAGE));
        Reservation {
            base,
            reserved,
            committed: 0,
            policy,
        }
    }

    pub fn base(&self) -> usize {
        self.base
    }

    /// Bytes made readable and writable so far.
    pub fn committed(&self) -> usize {
        self.committed
    }

    /// The end of the committed part.
    pub fn top(&self) -> usize {
        self.base + self.committed
    }

    /// Commits at least `size` more bytes; returns the new part,
    /// `(start, len)`.
    pub fn commit_more(&mut self, size: usize, mem: &mut impl Memory) -> Option<(usize, usize)> {
        let len = round_up(size, self.policy.commit_step)?;
        if len > self.reserved - self.committed {
            return None;
        }
        let start = self.top();
        if !mem.commit(start, len) {
            return None;
        }
        let was = self.committed;
        self.committed += len;
        let Policy {
            small_until,
            huge_from,
            ..
        } = self.policy;
        // The huge pages completed by this commit, past the small start.
        let first = (was / HUGE_PAGE * HUGE_PAGE).max(small_until);
        let end = self.committed / HUGE_PAGE * HUGE_PAGE;
        if first < end {
            mem.advise_huge(self.base + first, end - first);
            if !was.is_multiple_of(HUGE_PAGE) && first < was {
                mem.collapse(self.base + first, HUGE_PAGE);
            }
        }
        // Committed only grows: the start is made huge once, as it passes.
        if was < huge_from && self.committed >= huge_from {
            mem.advise_huge(self.base, small_until);
            mem.collapse(self.base, small_until);
        }
        Some((start, len))
    }
}

/// Page runs of a reserved range of address space: which are free, how much
/// of the range is committed, and below which offset memory was ever
/// handed out (above it, it still reads as zero).
#[derive(Debug)]
pub struct Region {
    space: Reservation,
    handed_out: usize,
    by_addr: BTreeMap<usize, usize>,
    by_size: BTreeSet<(usize, usize)>,
    used: usize,
}

/// The occupancy of the region or of the small blocks, for the agent's
/// self-metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occupancy {
    /// Bytes in live blocks (as the region or the size class rounds them).
    pub used: usize,
    /// Bytes of address space made readable and writable.
    pub committed: usize,
}

/// A block the region handed out: where, and whether it may hold old bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub addr: usize,
    pub reused: bool,
}

impl Region {
    /// A region over `[base, base + reserved)`; `base` must be aligned to
    /// [`HUGE_PAGE`] and `reserved` a multiple of it.
    pub fn new(base: usize, reserved: usize) -> Region {
        Region {
            space: Reservation::new(base, reserved, REGION_POLICY),
            handed_out: 0,
            by_addr: BTreeMap::new(),
            by_size: BTreeSet::new(),
            used: 0,
        }
    }

    /// Bytes in live blocks (page-rounded).
    pub fn used(&self) -> usize {
        self.used
    }

    /// Bytes made readable and writable so far.
    pub fn committed(&self) -> usize {
        self.space.committed()
    }

    pub fn stats(&self) -> Occupancy {
        Occupancy {
            used: self.used,
            committed: self.committed(),
        }
    }

    /// A block of `size` bytes (rounded up to whole pages), or `None` when
    /// the reserved range is full or the kernel refuses to commit more.
    pub fn alloc(&mut self, size: usize, mem: &mut impl Memory) -> Option<Block> {
        let size = round_up(size, PAGE)?;
        let (len, addr) = match self.best_fit(size) {
            Some(run) => run,
            None => {
                self.commit_more(size, mem)?;
                self.best_fit(size)?
            }
        };
        self.remove_run(addr, len);
        if len > size {
            self.insert_run(addr + size, len - size);
        }
        self.used += size;
        let offset = addr - self.space.base();
        let reused = offset < self.handed_out;
        self.handed_out = self.handed_out.max(offset + size);
        Some(Block { addr, reused })
    }

    /// Returns the block at `addr` of `size` bytes (as allocated).
    pub fn free(&mut self, addr: usize, size: usize, mem: &mut impl Memory) {
        let Some(size) = round_up(size, PAGE) else {
            return;
        };
        self.used -= size;
        let (start, len) = self.merge_free(addr, size);
        let first_huge = start.next_multiple_of(HUGE_PAGE);
        let end_huge = (start + len) / HUGE_PAGE * HUGE_PAGE;
        if end_huge > first_huge {
            mem.release(first_huge, end_huge - first_huge);
        }
    }

    /// Grows or shrinks the block at `addr` from `old` to `new` bytes where
    /// it lies; false when the pages after it are taken (then the caller
    /// moves it).
    pub fn resize_in_place(
        &mut self,
        addr: usize,
        old: usize,
        new: usize,
        mem: &mut impl Memory,
    ) -> bool {
        let (Some(old), Some(new)) = (round_up(old, PAGE), round_up(new, PAGE)) else {
            return false;
        };
        if new <= old {
            if new < old {
                // The tail is returned as a block of its own.
                self.free(addr + new, old - new, mem);
            }
            return true;
        }
        let (next, extra) = (addr + old, new - old);
        let top = self.space.top();
        let free_after = match self.by_addr.get(&next) {
            Some(&len) => len,
            None if next == top => 0,
            None => return false,
        };
        if free_after < extra {
            // Only the free pages up to the committed end can be added to.
            if next + free_after != top || self.commit_more(extra - free_after, mem).is_none() {
                return false;
            }
        }
        let Some(&len) = self.by_addr.get(&next) else {
            return false;
        };
        self.remove_run(next, len);
        if len > extra {
            self.insert_run(next + extra, len - extra);
        }
        self.used += extra;
        self.handed_out = self.handed_out.max(addr - self.space.base() + new);
        true
    }

    fn best_fit(&self, size: usize) -> Option<(usize, usize)> {
        self.by_size.range((size, 0)..).next().copied()
    }

    /// Commits at least `size` more bytes and adds them to the free runs.
    fn commit_more(&mut self, size: usize, mem: &mut impl Memory) -> Option<()> {
        let (start, len) = self.space.commit_more(size, mem)?;
        self.merge_free(start, len);
        Some(())
    }

    /// Adds `[addr, addr + len)` to the free runs, merged with free
    /// neighbours; returns the merged run.
    fn merge_free(&mut self, addr: usize, len: usize) -> (usize, usize) {
        let (mut start, mut len) = (addr, len);
        if let Some((&prev, &prev_len)) = self.by_addr.range(..start).next_back() {
            if prev + prev_len == start {
                self.remove_run(prev, prev_len);
                start = prev;
                len += prev_len;
            }
        }
        if let Some(&next_len) = self.by_addr.get(&(start + len)) {
            self.remove_run(start + len, next_len);
            len += next_len;
        }
        self.insert_run(start, len);
        (start, len)
    }

    fn insert_run(&mut self, addr: usize, len: usize) {
        self.by_addr.insert(addr, len);
        self.by_size.insert((len, addr));
    }

    fn remove_run(&mut self, addr: usize, len: usize) {
        self.by_addr.remove(&addr);
        self.by_size.remove(&(len, addr));
    }
}

fn round_up(size: usize, to: usize) -> Option<usize> {
    size.checked_next_multiple_of(to)
}

/// A recording fake of the kernel, for the tests of the bookkeeping.
#[cfg(test)]
pub(crate) mod recorder {
    use std::collections::HashMap;

    use super::Memory;
    use crate::small_blocks::FreeLinks;

    /// Records what the bookkeeping asked of the kernel, and keeps the
    /// small blocks' free-list links.
    #[derive(Default)]
    pub struct Recorder {
        pub committed: Vec<(usize, usize)>,
        pub huge: Vec<(usize, usize)>,
        pub collapsed: Vec<(usize, usize)>,
        pub released: Vec<(usize, usize)>,
        pub links: HashMap<usize, usize>,
        pub refuse_commit: bool,
    }

    impl Memory for Recorder {
        fn commit(&mut self, addr: usize, len: usize) -> bool {
            if self.refuse_commit {
                return false;
            }
            self.committed.push((addr, len));
            true
        }
        fn advise_huge(&mut self, addr: usize, len: usize) {
            self.huge.push((addr, len));
        }
        fn collapse(&mut self, addr: usize, len: usize) {
            self.collapsed.push((addr, len));
        }
        fn release(&mut self, addr: usize, len: usize) {
            self.released.push((addr, len));
        }
    }

    impl FreeLinks for Recorder {
        fn next(&self, addr: usize) -> usize {
            self.links[&addr]
        }
        fn set_next(&mut self, addr: usize, next: usize) {
            self.links.insert(addr, next);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::recorder::Recorder;
    use super::*;

    const BASE: usize = 1 << 40;

    fn region() -> Region {
        Region::new(BASE, 64 * HUGE_PAGE)
    }

    #[test]
    fn blocks_are_whole_pages_side_by_side_and_fresh_memory_is_not_reused() {
        let (mut r, mut m) = (region(), Recorder::default());
        let a = r.alloc(MIN_BLOCK + 1, &mut m).unwrap();
        let b = r.alloc(MIN_BLOCK, &mut m).unwrap();
        assert_eq!(
            a,
            Block {
                addr: BASE,
                reused: false
            }
        );
        assert_eq!(
            b,
            Block {
                addr: BASE + MIN_BLOCK + PAGE,
                reused: false
            }
        );
        assert_eq!(r.used(), 2 * MIN_BLOCK + PAGE);
        assert_eq!(m.committed, vec![(BASE, HUGE_PAGE)]);
        r.free(a.addr, MIN_BLOCK + 1, &mut m);
        let c = r.alloc(MIN_BLOCK, &mut m).unwrap();
        assert_eq!(
            c,
            Block {
                addr: BASE,
                reused: true
            },
            "best fit: the freed hole"
        );
    }

    #[test]
    fn the_start_is_advised_for_huge_pages_only_once_the_region_is_a_busy_agents() {
        let (mut r, mut m) = (region(), Recorder::default());
        let below = HEAD_HUGE_FROM - HUGE_PAGE;
        r.alloc(below, &mut m).unwrap();
        assert_eq!(m.committed, vec![(BASE, below)]);
        assert_eq!(
            m.huge,
            vec![(BASE + SMALL_PAGES_UNTIL, below - SMALL_PAGES_UNTIL)]
        );
        assert!(m.collapsed.is_empty());

        r.alloc(2 * HUGE_PAGE, &mut m).unwrap();
        let head = (BASE, SMALL_PAGES_UNTIL);
        assert_eq!(m.huge[1..], [(BASE + below, 2 * HUGE_PAGE), head]);
        assert_eq!(m.collapsed, vec![head]);

        // Once only.
        r.alloc(HUGE_PAGE, &mut m).unwrap();
        assert_eq!(m.huge.len(), 4);
        assert_eq!(m.collapsed.len(), 1);
    }

    #[test]
    fn freed_runs_merge_and_give_back_only_whole_huge_pages() {
        let (mut r, mut m) = (region(), Recorder::default());
        let size = HUGE_PAGE / 2;
        let blocks: Vec<usize> = (0..8)
            .map(|_| r.alloc(size, &mut m).unwrap().addr)
            .collect();
        // Two halves of two huge pages: nothing whole is free yet.
        r.free(blocks[2], size, &mut m);
        r.free(blocks[5], size, &mut m);
        assert!(m.released.is_empty());
        // Their neighbours merge them into whole huge pages.
        r.free(blocks[3], size, &mut m);
        assert_eq!(m.released, vec![(BASE + HUGE_PAGE, HUGE_PAGE)]);
        r.free(blocks[4], size, &mut m);
        assert_eq!(m.released.last(), Some(&(BASE + HUGE_PAGE, 2 * HUGE_PAGE)));
        assert_eq!(r.used(), 4 * size);
        // The whole committed range free again: one run, all of it released.
        for i in [0, 1, 6, 7] {
            r.free(blocks[i], size, &mut m);
        }
        assert_eq!(r.by_addr.len(), 1);
        assert_eq!(m.released.last(), Some(&(BASE, 4 * HUGE_PAGE)));
        assert_eq!(r.used(), 0);
    }

    #[test]
    fn a_block_grows_into_the_free_pages_after_it_and_shrinks_where_it_is() {
        let (mut r, mut m) = (region(), Recorder::default());
        let a = r.alloc(MIN_BLOCK, &mut m).unwrap().addr;
        assert!(
            r.resize_in_place(a, MIN_BLOCK, 3 * HUGE_PAGE, &mut m),
            "grows past the committed end"
        );
        assert_eq!(r.committed(), 3 * HUGE_PAGE);
        assert_eq!(r.used(), 3 * HUGE_PAGE);
        let b = r.alloc(MIN_BLOCK, &mut m).unwrap().addr;
        assert_eq!(b, a + 3 * HUGE_PAGE);
        assert_eq!(r.committed(), 4 * HUGE_PAGE);
        assert!(
            !r.resize_in_place(a, 3 * HUGE_PAGE, 3 * HUGE_PAGE + PAGE, &mut m),
            "b is in the way"
        );
        assert!(r.resize_in_place(a, 3 * HUGE_PAGE, PAGE, &mut m));
        assert_eq!(r.used(), PAGE + MIN_BLOCK);
        assert_eq!(m.released, vec![(BASE + HUGE_PAGE, 2 * HUGE_PAGE)]);
        let c = r.alloc(2 * HUGE_PAGE, &mut m).unwrap();
        assert_eq!(
            c,
            Block {
                addr: a + PAGE,
                reused: true
            }
        );
    }

    #[test]
    fn a_full_reservation_or_a_refused_commit_gives_none() {
        let (mut r, mut m) = (region(), Recorder::default());
        assert!(r.alloc(65 * HUGE_PAGE, &mut m).is_none());
        assert!(r.alloc(usize::MAX - 10, &mut m).is_none());
        m.refuse_commit = true;
        assert!(r.alloc(MIN_BLOCK, &mut m).is_none());
        assert_eq!(r.used(), 0);
    }
}
