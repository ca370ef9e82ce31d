//! [`HugePageAlloc`], the agent's global allocator: blocks of at least
//! [`MIN_BLOCK`] bytes and less than [`LARGE_BLOCK`] from the huge-page
//! [`Region`]; blocks of [`HUGE_BLOCK`] and more are mappings of their own
//! on huge pages (`kernel`); the rest come from malloc as they are (which
//! maps those of 128 KiB and more on their own: the agent pins its mmap
//! threshold there).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::huge_pages::{Region, RegionStats, HUGE_PAGE, MIN_BLOCK, PAGE, RESERVE};
use crate::kernel::{map_large, remap_large, unmap_large, Kernel, HUGE_BLOCK};

/// Blocks this large or larger are mappings of their own, malloc's (the
/// agent pins malloc's mmap threshold at 128 KiB) or, from
/// [`HUGE_BLOCK`], ours: freed, they go straight back to the kernel, where
/// in the region a short-lived one would leave a hole in the huge pages
/// around it. At 400k series 3 MiB less resident than with a limit of
/// 2 MiB (58.4 against 61.4 MiB).
pub const LARGE_BLOCK: usize = 256 << 10;

/// The global allocator the `tributary` binary installs.
pub struct HugePageAlloc;

enum State {
    /// No large block asked for yet: nothing reserved.
    Unreserved,
    /// The address space could not be reserved; malloc serves every block.
    Unavailable,
    Ready(Region),
}

static STATE: Mutex<State> = Mutex::new(State::Unreserved);

/// The region's bounds, readable without the lock so that freeing a block
/// can tell whose it is. Zero until the region exists.
static BASE: AtomicUsize = AtomicUsize::new(0);
static END: AtomicUsize = AtomicUsize::new(0);

fn owns(ptr: *mut u8) -> bool {
    let base = BASE.load(Ordering::Acquire);
    let addr = ptr as usize;
    base != 0 && addr >= base && addr < END.load(Ordering::Acquire)
}

/// Runs `f` on the region, reserving it first if need be. Blocks are
/// never taken from malloc inside: the region's own bookkeeping allocates
/// only small nodes, which go to malloc without this lock.
fn with_region<T>(f: impl FnOnce(&mut Region) -> Option<T>) -> Option<T> {
    let mut state = STATE.lock().unwrap_or_else(PoisonError::into_inner);
    if let State::Unreserved = *state {
        *state = match Kernel::reserve(RESERVE) {
            Some(base) => {
                END.store(base + RESERVE, Ordering::Release);
                BASE.store(base, Ordering::Release);
                State::Ready(Region::new(base, RESERVE))
            }
            None => State::Unavailable,
        };
    }
    match &mut *state {
        State::Ready(region) => f(region),
        State::Unreserved | State::Unavailable => None,
    }
}

/// The region's bytes in live blocks and committed, once it exists.
pub fn region_stats() -> Option<RegionStats> {
    if BASE.load(Ordering::Acquire) == 0 {
        return None;
    }
    with_region(|r| Some(r.stats()))
}

/// A block for `layout` from the region, zeroed if asked; `None` if the
/// layout is not the region's or the region has no room.
fn region_alloc(layout: Layout, zeroed: bool) -> Option<*mut u8> {
    if !is_region_block(layout.size(), layout.align()) {
        return None;
    }
    let block = with_region(|r| r.alloc(layout.size(), &mut Kernel))?;
    let ptr = block.addr as *mut u8;
    if zeroed && block.reused {
        // SAFETY: the region just handed out `layout.size()` writable bytes
        // at `ptr`, owned by no one else.
        #[allow(unsafe_code)]
        unsafe {
            ptr.write_bytes(0, layout.size())
        };
    }
    Some(ptr)
}

/// Whether a block of this layout is the region's size and alignment.
fn is_region_block(size: usize, align: usize) -> bool {
    (MIN_BLOCK..LARGE_BLOCK).contains(&size) && align <= PAGE
}

/// Whether a block of this layout is a mapping of our own.
fn is_huge_block(size: usize, align: usize) -> bool {
    size >= HUGE_BLOCK && align <= HUGE_PAGE
}

// SAFETY: every block is the region's, told apart by address, or a huge
// block of our own, told apart by its layout's size, or malloc's
// (`System`, returned to it). The region hands out page-aligned, disjoint
// runs of committed memory and a huge block is a whole mapping aligned to
// a huge page (alignment beyond either goes to malloc); a block moved
// between them by `realloc` is copied before it is freed.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
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
        if owns(ptr) {
            with_region(|r| {
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
        if owns(ptr) {
            let in_place = in_region(new_size)
                && with_region(|r| {
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
