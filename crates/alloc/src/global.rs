//! [`HugePageAlloc`], the agent's global allocator: blocks of at least
//! [`MIN_BLOCK`] bytes and less than [`LARGE_BLOCK`] from the huge-page
//! [`Region`]; larger ones from malloc, which maps each on its own (the
//! agent pins its mmap threshold far below), advised for huge pages; the
//! rest from malloc as they are.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::huge_pages::{Memory, Region, RegionStats, HUGE_PAGE, MIN_BLOCK, PAGE, RESERVE};

/// Blocks this large or larger are malloc's own mappings (the agent pins
/// malloc's mmap threshold at 128 KiB), advised for huge pages: freed, they
/// go straight back to the kernel, where in the region a short-lived one
/// would leave a hole in the huge pages around it. At 400k series 3 MiB
/// less resident than with a limit of 2 MiB (58.4 against 61.4 MiB).
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
    if !(MIN_BLOCK..LARGE_BLOCK).contains(&layout.size()) || layout.align() > PAGE {
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

// SAFETY: every block is either malloc's (`System`, returned to it) or the
// region's, told apart by address; the region hands out page-aligned,
// disjoint runs of committed memory (alignment above a page goes to
// malloc), and a block moved by `realloc` is copied before it is freed.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match region_alloc(layout, false) {
            Some(ptr) => ptr,
            // SAFETY: the caller's layout contract, passed on.
            None => advise_large(unsafe { System.alloc(layout) }, layout.size()),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match region_alloc(layout, true) {
            Some(ptr) => ptr,
            // SAFETY: as above.
            None => advise_large(unsafe { System.alloc_zeroed(layout) }, layout.size()),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if owns(ptr) {
            with_region(|r| {
                r.free(ptr as usize, layout.size(), &mut Kernel);
                Some(())
            });
        } else {
            // SAFETY: not the region's, so malloc's, with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_size = layout.size();
        if owns(ptr) {
            let in_place = (MIN_BLOCK..LARGE_BLOCK).contains(&new_size)
                && with_region(|r| {
                    r.resize_in_place(ptr as usize, old_size, new_size, &mut Kernel)
                        .then_some(())
                })
                .is_some();
            if in_place {
                return ptr;
            }
        } else if !(MIN_BLOCK..LARGE_BLOCK).contains(&new_size) || layout.align() > PAGE {
            // SAFETY: malloc's block, the caller's contract passed on.
            return advise_large(unsafe { System.realloc(ptr, layout, new_size) }, new_size);
        }
        // Moved between the two, or within the region.
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

/// Advises malloc's block at `ptr` for huge pages if it is a large one:
/// the whole pages it spans, so that malloc's own mapping of it stays one
/// mapping (which its `realloc` moves with `mremap`). Returns `ptr`.
fn advise_large(ptr: *mut u8, size: usize) -> *mut u8 {
    if size >= LARGE_BLOCK && !ptr.is_null() {
        let start = ptr as usize / PAGE * PAGE;
        let end = (ptr as usize).saturating_add(size).next_multiple_of(PAGE);
        Kernel.advise_huge(start, end - start);
    }
    ptr
}

/// The region's memory calls.
struct Kernel;

impl Kernel {
    /// Reserves `len` bytes of address space aligned to a huge page, with
    /// no access and no swap reserved (committed piece by piece later).
    fn reserve(len: usize) -> Option<usize> {
        let padded = len.checked_add(HUGE_PAGE)?;
        // SAFETY: a new private anonymous mapping at an address of the
        // kernel's choosing; no existing memory is touched.
        #[allow(unsafe_code)]
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                padded,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return None;
        }
        let start = start as usize;
        let base = start.next_multiple_of(HUGE_PAGE);
        let (head, tail) = (base - start, start + padded - (base + len));
        // SAFETY: the unaligned ends of the mapping just made, which
        // nothing uses.
        #[allow(unsafe_code)]
        unsafe {
            if head > 0 {
                libc::munmap(start as *mut libc::c_void, head);
            }
            if tail > 0 {
                libc::munmap((base + len) as *mut libc::c_void, tail);
            }
        }
        Some(base)
    }
}

impl Memory for Kernel {
    fn commit(&mut self, addr: usize, len: usize) -> bool {
        // SAFETY: a range inside the region's own reservation, not yet
        // handed out.
        #[allow(unsafe_code)]
        let rc = unsafe {
            libc::mprotect(
                addr as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        rc == 0
    }

    fn advise_huge(&mut self, addr: usize, len: usize) {
        // SAFETY: advice on the region's committed range; no data changes.
        #[allow(unsafe_code)]
        unsafe {
            libc::madvise(addr as *mut libc::c_void, len, libc::MADV_HUGEPAGE)
        };
    }

    fn release(&mut self, addr: usize, len: usize) {
        // SAFETY: a range of free pages inside the region (no live block),
        // which reads as zero afterwards.
        #[allow(unsafe_code)]
        unsafe {
            libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED)
        };
    }
}
