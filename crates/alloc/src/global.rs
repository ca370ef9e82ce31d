//! [`HugePageAlloc`], the agent's global allocator: blocks under
//! [`MIN_BLOCK`] bytes from the [`SmallBlocks`]' size classes; blocks of at
//! least [`MIN_BLOCK`] bytes and less than [`LARGE_BLOCK`] from the
//! huge-page [`Region`]; blocks of [`HUGE_BLOCK`] and more are mappings of
//! their own on huge pages (`kernel`); the rest come from malloc as they
//! are (which maps those of 128 KiB and more on their own: the agent pins
//! its mmap threshold there), and so do small ones aligned beyond a page.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::huge_pages::{Block, Occupancy, Region, HUGE_PAGE, MIN_BLOCK, PAGE, RESERVE};
use crate::kernel::{map_large, remap_large, unmap_large, Kernel, HUGE_BLOCK};
use crate::small_blocks::{self, class_of, SmallBlocks};

/// Blocks this large or larger are mappings of their own, malloc's (the
/// agent pins malloc's mmap threshold at 128 KiB) or, from
/// [`HUGE_BLOCK`], ours: freed, they go straight back to the kernel, where
/// in the region a short-lived one would leave a hole in the huge pages
/// around it. At 400k series 3 MiB less resident than with a limit of
/// 2 MiB (58.4 against 61.4 MiB).
pub const LARGE_BLOCK: usize = 256 << 10;

/// The global allocator the `tributary` binary installs.
pub struct HugePageAlloc;

enum State<T> {
    /// No block asked for yet: nothing reserved.
    Unreserved,
    /// The address space could not be reserved; malloc serves the blocks.
    Unavailable,
    Ready(T),
}

/// A range of address space reserved at its first block, and the
/// bookkeeping of the blocks in it, under one lock.
struct Space<T> {
    state: Mutex<State<T>>,
    /// The range's bounds, readable without the lock so that freeing a
    /// block can tell whose it is. Zero until the range is reserved.
    base: AtomicUsize,
    end: AtomicUsize,
    reserve: usize,
    make: fn(usize, usize) -> T,
}

/// Blocks of [`MIN_BLOCK`] up to [`LARGE_BLOCK`].
static REGION: Space<Region> = Space::new(RESERVE, Region::new);

/// Blocks under [`MIN_BLOCK`]. The region's bookkeeping allocates its
/// nodes here under the region's lock; the small blocks allocate nothing,
/// so the two locks are only ever taken in that order.
static SMALL: Space<SmallBlocks> = Space::new(small_blocks::RESERVE, SmallBlocks::new);

impl<T> Space<T> {
    const fn new(reserve: usize, make: fn(usize, usize) -> T) -> Self {
        Space {
            state: Mutex::new(State::Unreserved),
            base: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            reserve,
            make,
        }
    }

    fn owns(&self, ptr: *mut u8) -> bool {
        let base = self.base.load(Ordering::Acquire);
        let addr = ptr as usize;
        base != 0 && addr >= base && addr < self.end.load(Ordering::Acquire)
    }

    fn reserved(&self) -> bool {
        self.base.load(Ordering::Acquire) != 0
    }

    /// Runs `f` on the bookkeeping, reserving the range first if need be.
    fn with<R>(&self, f: impl FnOnce(&mut T) -> Option<R>) -> Option<R> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let State::Unreserved = *state {
            *state = match Kernel::reserve(self.reserve) {
                Some(base) => {
                    self.end.store(base + self.reserve, Ordering::Release);
                    self.base.store(base, Ordering::Release);
                    State::Ready((self.make)(base, self.reserve))
                }
                None => State::Unavailable,
            };
        }
        match &mut *state {
            State::Ready(space) => f(space),
            State::Unreserved | State::Unavailable => None,
        }
    }
}

/// The region's bytes in live blocks and committed, once it exists.
pub fn region_stats() -> Option<Occupancy> {
    if !REGION.reserved() {
        return None;
    }
    REGION.with(|r| Some(r.stats()))
}

/// The small blocks' bytes in live blocks and committed, once they exist.
pub fn small_stats() -> Option<Occupancy> {
    if !SMALL.reserved() {
        return None;
    }
    SMALL.with(|s| Some(s.stats()))
}

/// A small block for `layout`, zeroed if asked; `None` if the layout is
/// not small or the small blocks' range has no room.
fn small_alloc(layout: Layout, zeroed: bool) -> Option<*mut u8> {
    let class = class_of(layout.size(), layout.align())?;
    let block = SMALL.with(|s| s.alloc(class, &mut Kernel))?;
    Some(handed_out(block, layout, zeroed))
}

/// A block for `layout` from the region, zeroed if asked; `None` if the
/// layout is not the region's or the region has no room.
fn region_alloc(layout: Layout, zeroed: bool) -> Option<*mut u8> {
    if !is_region_block(layout.size(), layout.align()) {
        return None;
    }
    let block = REGION.with(|r| r.alloc(layout.size(), &mut Kernel))?;
    Some(handed_out(block, layout, zeroed))
}

/// The pointer to a block just handed out for `layout`, zeroed if asked
/// and it may hold old bytes (fresh memory reads as zero).
fn handed_out(block: Block, layout: Layout, zeroed: bool) -> *mut u8 {
    let ptr = block.addr as *mut u8;
    if zeroed && block.reused {
        // SAFETY: the small blocks or the region just handed out at least
        // `layout.size()` writable bytes at `ptr`, owned by no one else.
        #[allow(unsafe_code)]
        unsafe {
            ptr.write_bytes(0, layout.size())
        };
    }
    ptr
}

/// Whether a block of this layout is the region's size and alignment.
fn is_region_block(size: usize, align: usize) -> bool {
    (MIN_BLOCK..LARGE_BLOCK).contains(&size) && align <= PAGE
}

/// Whether a block of this layout is a mapping of our own.
fn is_huge_block(size: usize, align: usize) -> bool {
    size >= HUGE_BLOCK && align <= HUGE_PAGE
}

// SAFETY: every block is a small one or the region's, told apart by
// address, or a huge block of our own, told apart by its layout's size, or
// malloc's (`System`, returned to it). The small blocks are disjoint pieces
// of committed memory of their class's size, aligned to the layout's
// alignment (`class_of`); the region hands out page-aligned, disjoint runs
// of committed memory and a huge block is a whole mapping aligned to a huge
// page (alignment beyond any of them goes to malloc); a block moved between
// them by `realloc` is copied before it is freed.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(ptr) = small_alloc(layout, false) {
            return ptr;
        }
        if let Some(ptr) = region_alloc(layout, false) {
            return ptr;
        }
        if is_huge_block(layout.size(), layout.align()) {
            return map_large(layout.size());
        }
        // SAFETY: the caller's layout contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if let Some(ptr) = small_alloc(layout, true) {
            return ptr;
        }
        if let Some(ptr) = region_alloc(layout, true) {
            return ptr;
        }
        if is_huge_block(layout.size(), layout.align()) {
            // A fresh mapping reads as zero.
            return map_large(layout.size());
        }
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if SMALL.owns(ptr) {
            // A small block's layout always has a class (it was given one).
            if let Some(class) = class_of(layout.size(), layout.align()) {
                SMALL.with(|s| {
                    s.free(ptr as usize, class, &mut Kernel);
                    Some(())
                });
            }
        } else if REGION.owns(ptr) {
            REGION.with(|r| {
                r.free(ptr as usize, layout.size(), &mut Kernel);
                Some(())
            });
        } else if is_huge_block(layout.size(), layout.align()) {
            unmap_large(ptr, layout.size());
        } else {
            // SAFETY: neither the region's nor ours, so malloc's, with
            // this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_size = layout.size();
        let in_region = |size| is_region_block(size, layout.align());
        let huge = |size| is_huge_block(size, layout.align());
        if SMALL.owns(ptr) {
            if class_of(new_size, layout.align()) == class_of(old_size, layout.align()) {
                return ptr;
            }
        } else if REGION.owns(ptr) {
            let in_place = in_region(new_size)
                && REGION
                    .with(|r| {
                        r.resize_in_place(ptr as usize, old_size, new_size, &mut Kernel)
                            .then_some(())
                    })
                    .is_some();
            if in_place {
                return ptr;
            }
        } else if huge(old_size) {
            if huge(new_size) {
                return remap_large(ptr, old_size, new_size);
            }
        } else if !in_region(new_size) && !huge(new_size) {
            // SAFETY: malloc's block, the caller's contract passed on.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // Moved between the region, our mappings and malloc, or within
        // the region.
        // SAFETY: `new_size` with the old alignment is a valid layout (the
        // caller's contract for `realloc`).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a non-zero size (the caller's contract).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct and at least this long;
            // the old one is freed only after the copy.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, old_size.min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}
