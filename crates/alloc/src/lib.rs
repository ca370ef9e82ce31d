//! The agent's memory allocation: where its blocks come from, and the C
//! library allocator's knobs, behind a safe API.
//!
//! [`HugePageAlloc`] (the binary's global allocator) keeps its blocks
//! where they can be transparent huge pages, which the host of a virtual
//! machine takes back and gives again a 2 MiB page at a time rather than
//! 4 KiB (see [`huge_pages`]): those under 16 KiB in size classes of their
//! own ([`small_blocks`]), from 16 up to 256 KiB in a region of its own,
//! from 2 MiB in mappings of their own that start on a huge page. Blocks in
//! between (which cannot hold a whole huge page) stay with malloc as they
//! are.
//!
//! glibc's malloc keeps memory the agent has freed: it raises its mmap
//! threshold to the largest mapped block freed so far (up to 32 MiB), so
//! that once a growing table has freed a large block, every later buffer
//! below that size lives in an arena; and it returns an arena's memory
//! only from the top, once a trim threshold (raised with the mmap
//! threshold) is free there. At 400k series that is several MiB of freed
//! but resident memory (docs/performance-history.md). [`pin_thresholds`] fixes
//! both thresholds so that large blocks are mapped on their own and
//! returned when freed; [`trim`] hands the free whole pages inside the
//! arenas back to the kernel.
//!
//! # Audit
//!
//! This is one of the workspace's two crates that may use `unsafe` (the
//! workspace lints forbid it everywhere else; the other is `cmath`).
//!
//! - `mallopt(3)` and `malloc_trim(3)` take integers only (no pointer
//!   crosses the boundary), are documented MT-Safe (they take malloc's own
//!   arena locks), and invalidate no allocation the program holds — they
//!   change where future blocks come from and release pages that hold no
//!   live block. On a C library other than glibc both do nothing and
//!   report so.
//! - The global allocator (`global.rs`) maps one reserved range of address
//!   space (`mmap`), makes pieces of it writable (`mprotect`), advises them
//!   (`madvise`: huge pages, made now or later, or free pages given back),
//!   and hands out disjoint page runs of it under one lock; its bookkeeping
//!   ([`huge_pages::Region`]) is safe code with its own tests. Small blocks
//!   come the same way from a second range ([`small_blocks::SmallBlocks`],
//!   safe code too), whose free lists keep their links in the first word
//!   of each free block: those two reads and writes are `kernel.rs`'s. A block of
//!   2 MiB or more is a whole mapping (`mmap`, `mremap` to grow or move
//!   it, `munmap`), told from malloc's by its size. The system calls are in
//!   `kernel.rs`; the `unsafe` is only they and the `GlobalAlloc` contract.
#![deny(rust_2018_idioms)]

#[cfg(target_os = "linux")]
mod global;
pub mod huge_pages;
#[cfg(target_os = "linux")]
mod kernel;
pub mod small_blocks;

#[cfg(target_os = "linux")]
pub use global::{region_stats, small_stats, HugePageAlloc, LARGE_BLOCK};

/// Fixes glibc's mmap threshold (blocks of at least this size get their
/// own mapping, unmapped when freed) and trim threshold (free memory at an
/// arena's top beyond this is returned), both in bytes, so that neither
/// rises with the program's largest freed block. Returns whether both
/// were set; false off glibc, or if a value does not fit the C `int`.
pub fn pin_thresholds(mmap_threshold: usize, trim_threshold: usize) -> bool {
    imp::set(imp::MMAP_THRESHOLD, mmap_threshold) && imp::set(imp::TRIM_THRESHOLD, trim_threshold)
}

/// Returns the free whole pages of every malloc arena to the kernel.
/// Returns whether any memory was released (false off glibc).
pub fn trim() -> bool {
    imp::trim()
}

/// Whether the operator tuned malloc through its environment (glibc reads
/// it at start); the agent then leaves the thresholds alone.
pub fn tuned_by_environment() -> bool {
    ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
        || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    pub const MMAP_THRESHOLD: libc::c_int = libc::M_MMAP_THRESHOLD;
    pub const TRIM_THRESHOLD: libc::c_int = libc::M_TRIM_THRESHOLD;

    pub fn set(param: libc::c_int, bytes: usize) -> bool {
        let Ok(value) = libc::c_int::try_from(bytes) else {
            return false;
        };
        // SAFETY: mallopt(3) takes two integers and only changes malloc's
        // own parameters under its lock (MT-Safe); no memory is passed.
        #[allow(unsafe_code)]
        let ok = unsafe { libc::mallopt(param, value) };
        ok == 1
    }

    pub fn trim() -> bool {
        // SAFETY: malloc_trim(3) takes an integer (the pad to keep at the
        // top) and releases only pages that hold no allocated block, under
        // each arena's lock (MT-Safe); no memory is passed.
        #[allow(unsafe_code)]
        let released = unsafe { libc::malloc_trim(0) };
        released == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub const MMAP_THRESHOLD: i32 = 0;
    pub const TRIM_THRESHOLD: i32 = 0;

    pub fn set(_param: i32, _bytes: usize) -> bool {
        false
    }

    pub fn trim() -> bool {
        false
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_accepted_and_out_of_range_values_refused() {
        assert!(pin_thresholds(128 * 1024, 128 * 1024));
        assert!(!pin_thresholds(usize::MAX, 128 * 1024));
    }

    #[test]
    fn freed_memory_inside_an_arena_is_given_back() {
        // Many small blocks (below any mmap threshold) fill arena pages;
        // freeing all but a few at the end leaves whole free pages below
        // a live block, which only a trim returns.
        let mut blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 1000]).collect();
        let keep = blocks.split_off(blocks.len() - 8);
        drop(blocks);
        assert!(trim(), "no page was released after freeing ~20 MB");
        drop(keep);
    }
}
