//! The huge-page global allocator against the real kernel: blocks keep
//! their bytes through growth and moves between malloc, the region and
//! large mappings; large blocks and the region past its start are advised
//! for huge pages; freed huge pages leave the resident set; zeroed blocks
//! are zero even over reused memory; small blocks take their class's size,
//! keep their alignment and are shared between threads.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout};
use tributary_alloc::huge_pages::{HUGE_PAGE, MIN_BLOCK, PAGE, SMALL_PAGES_UNTIL};

use tributary_alloc::small_blocks::{class_of, CLASS_SIZES};
use tributary_alloc::{region_stats, small_stats, HugePageAlloc, LARGE_BLOCK};

#[global_allocator]
static ALLOC: HugePageAlloc = HugePageAlloc;

/// The tests assert where blocks land, so they take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The smaps entry of the mapping holding `addr`: its Rss in KiB and its
/// VmFlags.
fn mapping_of(addr: usize) -> (u64, String) {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    let (mut rss, mut flags) = (None, None);
    for line in smaps.lines() {
        let head = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = head.split_once('-') {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                if inside {
                    break;
                }
                inside = addr >= a && addr < b;
                continue;
            }
        }
        if !inside {
            continue;
        }
        if let Some(v) = line.strip_prefix("Rss:") {
            rss = Some(v.trim().trim_end_matches("kB").trim().parse().unwrap());
        }
        if let Some(v) = line.strip_prefix("VmFlags:") {
            flags = Some(v.trim().to_string());
        }
    }
    (
        rss.expect("no mapping holds the address"),
        flags.unwrap_or_default(),
    )
}

#[test]
fn blocks_keep_their_bytes_moving_between_malloc_the_region_and_large_mappings() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let small = vec![7u8; MIN_BLOCK - 1];

    // Growing from small through the region to a large block, bytes kept.
    let mut v: Vec<u64> = Vec::new();
    let mut in_region = false;
    for i in 0..(LARGE_BLOCK as u64) {
        v.push(i);
        let stats = region_stats();
        in_region |=
            stats.is_some_and(|s| s.used >= v.capacity() * 8 && v.capacity() * 8 >= MIN_BLOCK);
    }
    assert!(in_region, "the vector never lived in the region");
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));

    // A large block is malloc's own mapping, advised for huge pages.
    let (_, flags) = mapping_of(v.as_ptr() as usize + v.len() * 4);
    assert!(flags.split(' ').any(|f| f == "hg"), "not advised: {flags}");

    // Shrunk below the threshold, a block moves back to malloc intact.
    v.truncate(100);
    v.shrink_to_fit();
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
    assert_eq!(small.len(), MIN_BLOCK - 1);
}

#[test]
fn the_region_gives_whole_free_huge_pages_back_and_zeroes_reused_memory() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Enough blocks just below the large size to reach past the region's
    // small-page start, each written.
    let blocks: Vec<Vec<u8>> = (0..(2 * SMALL_PAGES_UNTIL / (LARGE_BLOCK / 2) + 4))
        .map(|i| vec![i as u8 | 1; LARGE_BLOCK / 2])
        .collect();
    let last = blocks.last().unwrap().as_ptr() as usize;
    let (rss_before, flags) = mapping_of(last);
    assert!(flags.split(' ').any(|f| f == "hg"), "not advised: {flags}");
    // Committed past HEAD_HUGE_FROM, the region's start is advised too.
    let (_, flags) = mapping_of(blocks[0].as_ptr() as usize);
    assert!(
        flags.split(' ').any(|f| f == "hg"),
        "start not advised: {flags}"
    );
    let used_before = region_stats().unwrap().used;
    drop(blocks);
    let (rss_after, _) = mapping_of(last);
    assert!(
        rss_before >= rss_after + 4 * 1024,
        "resident {rss_before} KiB before the free, {rss_after} after"
    );
    assert!(region_stats().unwrap().used + 4 * SMALL_PAGES_UNTIL / 2 <= used_before);

    // A zeroed block over reused memory is zero.
    let dirty = vec![0xffu8; 4 * MIN_BLOCK];
    let addr = dirty.as_ptr() as usize;
    drop(dirty);
    let zeroed = vec![0u8; 4 * MIN_BLOCK];
    assert_eq!(zeroed.as_ptr() as usize, addr, "best fit reuses the hole");
    assert!(zeroed.iter().all(|&b| b == 0));
}

#[test]
fn threads_allocate_and_free_large_blocks_concurrently() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                for i in 0..200usize {
                    let size = MIN_BLOCK + (i * 7919 + t * 104_729) % (256 << 10);
                    let mut b = vec![t as u8; size];
                    b[size - 1] = i as u8;
                    if i % 3 == 0 {
                        kept.push(b);
                    }
                }
                kept.iter().enumerate().all(|(k, b)| {
                    b[..b.len() - 1].iter().all(|&x| x == t as u8)
                        && b[b.len() - 1] == (k * 3) as u8
                })
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap());
    }
}

fn pattern(len: usize) -> impl Iterator<Item = u8> {
    (0..len).map(|i| (i % 251) as u8)
}

#[test]
fn a_huge_block_starts_on_a_huge_page_through_growth_moves_and_shrinking() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let len = HUGE_PAGE + 5;
    let mut v: Vec<u8> = Vec::with_capacity(len);
    v.extend(pattern(len));
    let first = v.as_ptr() as usize;
    assert_eq!(first % HUGE_PAGE, 0, "a huge block starts on a huge page");
    let (_, flags) = mapping_of(first);
    assert!(flags.split(' ').any(|f| f == "hg"), "not advised: {flags}");

    // A page taken right after the block: it cannot grow where it is.
    let end = (first + v.capacity()).next_multiple_of(PAGE);
    // SAFETY: a new mapping at a fixed address that fails rather than
    // replace anything there.
    #[allow(unsafe_code)]
    let blocker = unsafe {
        libc::mmap(
            end as *mut libc::c_void,
            PAGE,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    assert_eq!(blocker as usize, end, "the page after the block was taken");
    v.reserve_exact(2 * HUGE_PAGE);
    let moved = v.as_ptr() as usize;
    assert_ne!(moved, first, "grown past a taken page, the block moves");
    assert_eq!(moved % HUGE_PAGE, 0, "moved, it starts on a huge page");
    assert!(v.iter().copied().eq(pattern(len)), "bytes kept by the move");
    let (_, flags) = mapping_of(moved + HUGE_PAGE);
    assert!(flags.split(' ').any(|f| f == "hg"), "advice lost: {flags}");
    // SAFETY: the page this test mapped, which nothing else uses.
    #[allow(unsafe_code)]
    unsafe {
        libc::munmap(blocker, PAGE)
    };

    // Shrunk, it stays where it is; shrunk below a huge page, it goes to
    // malloc, bytes kept.
    v.extend(pattern(HUGE_PAGE));
    v.truncate(len);
    v.shrink_to_fit();
    assert_eq!(v.as_ptr() as usize, moved);
    assert!(v.iter().copied().eq(pattern(len)));
    v.truncate(LARGE_BLOCK);
    v.shrink_to_fit();
    assert!(v.iter().copied().eq(pattern(LARGE_BLOCK)));
}

#[test]
fn small_blocks_take_their_class_size_and_a_freed_one_is_reused_zeroed() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let used = || small_stats().unwrap().used;
    let before = used();
    let blocks: Vec<Box<[u8; 100]>> = (0..1000).map(|i| Box::new([i as u8; 100])).collect();
    let grown = used() - before;
    // The blocks and the vector of them (8,000 bytes: class 8 KiB); other
    // threads (the test harness) may allocate or free meanwhile, a little.
    let expected = 1000 * 112 + 8192;
    assert!(
        (expected - 4096..expected + 4096).contains(&grown),
        "1,000 blocks of 100 bytes (class 112) and their vector took {grown}"
    );
    assert!(blocks
        .iter()
        .enumerate()
        .all(|(i, b)| b.iter().all(|&x| x == i as u8)));
    drop(blocks);
    assert!(used() <= before + 4096);

    let layout = Layout::from_size_align(200, 8).unwrap();
    // SAFETY: a valid non-zero layout; each block is freed once, with it.
    #[allow(unsafe_code)]
    unsafe {
        let dirty = ALLOC.alloc(layout);
        dirty.write_bytes(0xff, 200);
        ALLOC.dealloc(dirty, layout);
        let zeroed = ALLOC.alloc_zeroed(layout);
        assert_eq!(zeroed, dirty, "the last block freed is taken first");
        assert!(std::slice::from_raw_parts(zeroed, 200)
            .iter()
            .all(|&b| b == 0));
        ALLOC.dealloc(zeroed, layout);
    }
}

#[test]
fn a_small_block_grows_in_its_class_where_it_is_and_keeps_its_bytes_moving_out() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut v: Vec<u8> = Vec::with_capacity(100);
    v.extend(pattern(100));
    let first = v.as_ptr();
    v.reserve_exact(12);
    assert_eq!(v.as_ptr(), first, "112 bytes are the same class");
    for size in [113, 500, 4000, MIN_BLOCK - 1, MIN_BLOCK, 3 * MIN_BLOCK] {
        v.reserve_exact(size - v.len());
        v.extend(pattern(size).skip(v.len()));
        assert!(v.iter().copied().eq(pattern(size)), "grown to {size}");
    }
    v.truncate(50);
    v.shrink_to_fit();
    assert!(v.iter().copied().eq(pattern(50)), "shrunk back to small");
}

#[test]
fn aligned_small_blocks_are_aligned() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for align in [16, 32, 64, 128, 512, PAGE] {
        for size in [1, 24, 100, 1000, 5000, MIN_BLOCK - 1] {
            let layout = Layout::from_size_align(size, align).unwrap();
            assert!(CLASS_SIZES[class_of(size, align).unwrap()].is_multiple_of(align));
            // SAFETY: a valid non-zero layout, freed once with it.
            #[allow(unsafe_code)]
            unsafe {
                let p = ALLOC.alloc(layout);
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "{size} bytes aligned to {align}");
                p.write_bytes(0xab, size);
                ALLOC.dealloc(p, layout);
            }
        }
    }
    // Aligned beyond a page: malloc's.
    let layout = Layout::from_size_align(100, 2 * PAGE).unwrap();
    // SAFETY: as above.
    #[allow(unsafe_code)]
    unsafe {
        let p = ALLOC.alloc(layout);
        assert_eq!(p as usize % (2 * PAGE), 0);
        ALLOC.dealloc(p, layout);
    }
}

#[test]
fn threads_share_small_blocks_allocating_and_freeing_each_others() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let producers: Vec<_> = (0..3)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..20_000usize {
                    let size = 2 + (i * 7919 + t * 104_729) % (MIN_BLOCK - 2);
                    let mut b = vec![t as u8; size];
                    b[0] = (i % 251) as u8;
                    if i % 2 == 0 {
                        tx.send(b).unwrap();
                    }
                }
            })
        })
        .collect();
    drop(tx);
    // Freed on this thread, which allocated none of them.
    let mut received = 0;
    for b in rx {
        assert!(b[1..].iter().all(|&x| x == b[1]) && b[1] < 3);
        received += 1;
    }
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(received, 30_000);
}
