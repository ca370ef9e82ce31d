//! The allocator's system calls: address space reserved or mapped at a
//! huge-page boundary, committed, advised and given back, and the large
//! blocks that are mappings of their own ([`HUGE_BLOCK`] and more).
//!
//! A large block starts on a huge-page boundary so that every whole 2 MiB
//! of it can be a huge page; only its last partial one stays on 4 KiB
//! pages, and of that only what is touched is resident. (malloc's own
//! mapping of a block starts anywhere, which left a partial huge page at
//! both ends: at 400k series 7.3 MiB of the hot large blocks' memory on
//! small pages, docs/performance.md "Memory the host lets go cold".) The
//! end is not rounded up: a huge page there would make resident the
//! untouched capacity of a growing table.

use crate::huge_pages::{Memory, HUGE_PAGE, PAGE};
use crate::small_blocks::FreeLinks;

/// Blocks this large or larger are mappings of their own; smaller ones
/// cannot hold a whole huge page.
pub const HUGE_BLOCK: usize = HUGE_PAGE;

/// `MADV_COLLAPSE` (Linux 6.1): turns the populated small pages of a range
/// into huge pages now, rather than when khugepaged comes by. The `libc`
/// crate does not name it yet.
const MADV_COLLAPSE: libc::c_int = 25;

/// The system calls behind the region ([`Memory`]) and the large blocks.
pub struct Kernel;

impl Kernel {
    /// Reserves `len` bytes of address space aligned to a huge page, with
    /// no access and no swap reserved (committed piece by piece later).
    pub fn reserve(len: usize) -> Option<usize> {
        map_aligned(len, libc::PROT_NONE, libc::MAP_NORESERVE)
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
        advise(addr, len, libc::MADV_HUGEPAGE);
    }

    fn collapse(&mut self, addr: usize, len: usize) {
        // Fails harmlessly on kernels before 6.1 or when no huge page is
        // free: khugepaged collapses the advised range later.
        advise(addr, len, MADV_COLLAPSE);
    }

    fn release(&mut self, addr: usize, len: usize) {
        advise(addr, len, libc::MADV_DONTNEED);
    }
}

impl FreeLinks for Kernel {
    fn next(&self, addr: usize) -> usize {
        // SAFETY: `addr` is a free small block (at least 16 bytes, aligned
        // to 16) whose first word the small blocks wrote with `set_next`.
        #[allow(unsafe_code)]
        unsafe {
            (addr as *const usize).read()
        }
    }

    fn set_next(&mut self, addr: usize, next: usize) {
        // SAFETY: `addr` is a small block just freed: committed memory of
        // at least 16 bytes, aligned to 16, that no one holds any more.
        #[allow(unsafe_code)]
        unsafe {
            (addr as *mut usize).write(next)
        };
    }
}

/// Advice on `[addr, addr + len)`, a range the allocator owns.
fn advise(addr: usize, len: usize, advice: libc::c_int) {
    // SAFETY: advice only: huge pages wanted or made now (same bytes), or
    // a range of free pages (no live block) given back to read as zero.
    #[allow(unsafe_code)]
    unsafe {
        libc::madvise(addr as *mut libc::c_void, len, advice)
    };
}

/// A new private anonymous mapping of `len` bytes (a multiple of [`PAGE`])
/// starting on a huge page, with `prot` and `flags` besides private and
/// anonymous; `None` when the kernel has no room.
fn map_aligned(len: usize, prot: libc::c_int, flags: libc::c_int) -> Option<usize> {
    let padded = len.checked_add(HUGE_PAGE)?;
    // SAFETY: a new mapping at an address of the kernel's choosing; no
    // existing memory is touched.
    #[allow(unsafe_code)]
    let start = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            padded,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
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
    if head > 0 {
        unmap(start, head);
    }
    if tail > 0 {
        unmap(base + len, tail);
    }
    Some(base)
}

/// Unmaps `[addr, addr + len)`, which the allocator mapped and no live
/// block uses.
fn unmap(addr: usize, len: usize) {
    // SAFETY: the caller's: a range of the allocator's own mappings that
    // no one holds.
    #[allow(unsafe_code)]
    unsafe {
        libc::munmap(addr as *mut libc::c_void, len)
    };
}

/// A large block of `size` bytes (at least [`HUGE_BLOCK`]), zeroed,
/// aligned to a huge page and advised for huge pages; null when the
/// kernel has no room.
pub fn map_large(size: usize) -> *mut u8 {
    let Some(len) = size.checked_next_multiple_of(PAGE) else {
        return std::ptr::null_mut();
    };
    match map_aligned(len, libc::PROT_READ | libc::PROT_WRITE, 0) {
        Some(addr) => {
            advise(addr, len, libc::MADV_HUGEPAGE);
            addr as *mut u8
        }
        None => std::ptr::null_mut(),
    }
}

/// Frees the large block at `ptr` of `size` bytes (as mapped).
pub fn unmap_large(ptr: *mut u8, size: usize) {
    if let Some(len) = size.checked_next_multiple_of(PAGE) {
        unmap(ptr as usize, len);
    }
}

/// Resizes the large block at `ptr` from `old` to `new` bytes (both at
/// least [`HUGE_BLOCK`]): where it lies if the address space after it is
/// free, else moved (its pages, not their bytes) to a new range that
/// starts on a huge page. Null when the kernel has no room; the block is
/// then untouched.
pub fn remap_large(ptr: *mut u8, old: usize, new: usize) -> *mut u8 {
    let (Some(old), Some(new)) = (
        old.checked_next_multiple_of(PAGE),
        new.checked_next_multiple_of(PAGE),
    ) else {
        return std::ptr::null_mut();
    };
    if old == new {
        return ptr;
    }
    let addr = ptr as *mut libc::c_void;
    // SAFETY: the caller's block of `old` bytes; without MREMAP_MAYMOVE
    // the kernel only shrinks it or grows it into free address space.
    #[allow(unsafe_code)]
    let resized = unsafe { libc::mremap(addr, old, new, 0) };
    if resized != libc::MAP_FAILED {
        return ptr;
    }
    // A placeholder on a huge page, which the move replaces.
    let Some(target) = map_aligned(new, libc::PROT_NONE, libc::MAP_NORESERVE) else {
        return std::ptr::null_mut();
    };
    // SAFETY: moves the caller's block onto the placeholder just mapped
    // (MREMAP_FIXED unmaps what was there); the block keeps its bytes and
    // its huge-page advice, and its old range is unmapped.
    #[allow(unsafe_code)]
    let moved = unsafe {
        libc::mremap(
            addr,
            old,
            new,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            target as *mut libc::c_void,
        )
    };
    if moved == libc::MAP_FAILED {
        unmap(target, new);
        return std::ptr::null_mut();
    }
    moved as *mut u8
}
