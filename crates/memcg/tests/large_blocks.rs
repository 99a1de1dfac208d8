//! Large blocks (above `KMALLOC_MAX`) through a real `#[global_allocator]`:
//! they come from cached, reusable runs of pages (DESIGN.md §6), yet each is
//! charged exactly its requested size in whole pages as `kmem`, and
//! uncharged through the context recorded for it, even after its group is
//! removed (S2). The run cache is reused, bounded, and decays.
//!
//! The cache is process-wide, so the tests of this file take [`SERIAL`]:
//! what one observes of the cache is not disturbed by another.

use memcg::large::{self, CACHE_BYTES, DIRECT_PAGES};
use memcg::{global, Group, MemcgAlloc, PAGE_SIZE};
use std::alloc::{GlobalAlloc, Layout};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

#[global_allocator]
static A: MemcgAlloc = MemcgAlloc;

static SERIAL: Mutex<()> = Mutex::new(());

/// Serialize with the other tests of this file, with the cache keeping runs
/// for an hour (so that no run decays while a test looks at it), and the
/// default decay restored afterwards.
struct Serial {
    _guard: MutexGuard<'static, ()>,
}

fn serial() -> Serial {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    large::set_decay(Duration::from_secs(3600));
    Serial { _guard: guard }
}

impl Drop for Serial {
    fn drop(&mut self) {
        // Give back the run this test's thread keeps for itself too: left to
        // the thread's exit, it could reach the shared cache in the middle
        // of the next test's counts.
        large::trim();
        large::set_decay(large::DEFAULT_DECAY);
    }
}

/// Sizes above `KMALLOC_MAX`: page boundaries on both sides, exact and
/// rounded bins, the largest cached bin, and direct mappings.
const SIZES: [usize; 14] = [
    8193,
    10_000,
    12_288,
    16_385,
    50_000,
    65_536,
    65_537,
    100_000,
    300_000,
    1 << 20,
    (1 << 20) + 1,
    3_000_000,
    (DIRECT_PAGES - 1) * PAGE_SIZE,
    DIRECT_PAGES * PAGE_SIZE + 1,
];

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).unwrap()
}

fn pages_bytes(size: usize) -> u64 {
    (size.div_ceil(PAGE_SIZE) * PAGE_SIZE) as u64
}

fn read(g: &Group, file: &str, key: Option<&str>) -> u64 {
    global().quiesce();
    let text = g.read(file).unwrap();
    match key {
        None => text.trim().parse().unwrap(),
        Some(key) => text
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
            .unwrap(),
    }
}

/// The group's usage and `kmem` stat, in bytes.
fn charged(g: &Group) -> (u64, u64) {
    (
        read(g, "memory.current", None),
        read(g, "memory.stat", Some("kmem")),
    )
}

/// The pattern byte at offset `i` for `seed`.
fn pattern(seed: u8, i: usize) -> u8 {
    seed.wrapping_add((i % 251) as u8)
}

/// Write the pattern of `seed` every 509 bytes and at the last byte.
///
/// # Safety
/// `p` is valid for `size` bytes, `size >= 1`.
unsafe fn fill(p: *mut u8, size: usize, seed: u8) {
    for i in (0..size).step_by(509).chain([size - 1]) {
        // SAFETY: i < size.
        unsafe { p.add(i).write(pattern(seed, i)) };
    }
}

/// Check the pattern [`fill`] wrote over `size` bytes, over the first
/// `kept` of them.
///
/// # Safety
/// `p` is valid for `kept` bytes, `1 <= kept <= size`.
unsafe fn check(p: *const u8, size: usize, kept: usize, seed: u8) {
    let last = (size == kept).then_some(size - 1);
    for i in (0..kept).step_by(509).chain(last) {
        // SAFETY: i < kept.
        assert_eq!(unsafe { p.add(i).read() }, pattern(seed, i), "byte {i}");
    }
}

/// Blocks of every size, allocated in a group, freed in part, reallocated
/// from the cached runs, then freed: after each step `kmem` and
/// `memory.current` are exactly the page-rounded sizes of the live blocks,
/// and 0 at the end. Reused runs change nothing in what is charged.
#[test]
fn large_blocks_are_charged_exactly_their_pages() {
    let _serial = serial();
    let g = global().create("/exact").unwrap();
    let mut live: [(usize, usize); SIZES.len()] = [(0, 0); SIZES.len()];
    for round in 0..3u8 {
        {
            let _in = g.enter().unwrap();
            for (slot, &size) in live.iter_mut().zip(&SIZES) {
                // SAFETY: a valid layout of non-zero size.
                let p = unsafe { A.alloc(layout(size)) };
                assert!(!p.is_null());
                // SAFETY: a fresh block of `size` bytes.
                unsafe { fill(p, size, round) };
                *slot = (p as usize, size);
            }
        }
        let all: u64 = SIZES.iter().map(|&s| pages_bytes(s)).sum();
        assert_eq!(charged(&g), (all, all), "round {round}: all live");
        // Free every other block; on the next round they come back from the
        // cache (or fresh mappings for the direct ones).
        let mut kept = 0;
        for (i, &(p, size)) in live.iter().enumerate() {
            // SAFETY: a live block of ours with this layout.
            unsafe { check(p as *const u8, size, size, round) };
            if i % 2 == 0 {
                // SAFETY: allocated above with this layout, freed once.
                unsafe { A.dealloc(p as *mut u8, layout(size)) };
            } else {
                kept += pages_bytes(size);
            }
        }
        assert_eq!(charged(&g), (kept, kept), "round {round}: half freed");
        for (i, &(p, size)) in live.iter().enumerate() {
            if i % 2 == 1 {
                // SAFETY: the blocks still live, freed once.
                unsafe { A.dealloc(p as *mut u8, layout(size)) };
            }
        }
        assert_eq!(charged(&g), (0, 0), "round {round}: all freed");
    }
    drop(g);
    global().remove("/exact").unwrap();
}

/// A group's allocator handle charges its large blocks to the group whatever
/// thread allocates, here one in the root.
#[test]
fn handle_allocations_charge_the_handles_group() {
    let _serial = serial();
    let g = global().create("/handle").unwrap();
    let mut v: allocator_api2::vec::Vec<u8, _> =
        allocator_api2::vec::Vec::with_capacity_in(100_000, g.allocator());
    v.extend_from_slice(&[5; 100_000]);
    assert_eq!(charged(&g), (pages_bytes(100_000), pages_bytes(100_000)));
    drop(v);
    assert_eq!(charged(&g), (0, 0));
    drop(g);
    global().remove("/handle").unwrap();
}

/// A freed run serves the next block of its bin, any size in the bin: the
/// same address comes back, no new mapping is made, and `reused` counts it.
#[test]
fn a_freed_run_is_reused_for_the_next_block_of_its_bin() {
    let _serial = serial();
    // 100_000 bytes are 25 pages, in the bin of 28-page runs, as 110_000
    // bytes (27 pages) are.
    let (small, big) = (layout(100_000), layout(110_000));
    // SAFETY: valid layouts of non-zero size; each block freed once with
    // the layout it was allocated with.
    unsafe {
        let first = A.alloc(small);
        A.dealloc(first, small);
        let before = large::stats();
        let second = A.alloc(big);
        let after = large::stats();
        assert_eq!(second, first, "the same run");
        assert_eq!(after.os_maps, before.os_maps, "no new mapping");
        assert_eq!(after.reused, before.reused + 1);
        assert_eq!(after.cached_runs, before.cached_runs - 1);
        A.dealloc(second, big);
    }
}

/// `alloc_zeroed` of a reused run reads zero over the whole block, though
/// the run's previous block wrote all of it.
#[test]
fn alloc_zeroed_of_a_reused_run_reads_zero() {
    let _serial = serial();
    for size in [9000, 110_000, 5 << 20] {
        let l = layout(size);
        // SAFETY: valid layouts; each block freed once with its layout.
        unsafe {
            let dirty = A.alloc(l);
            dirty.write_bytes(0xAB, size);
            A.dealloc(dirty, l);
            let reused = large::stats().reused;
            let zeroed = A.alloc_zeroed(l);
            assert_eq!(zeroed, dirty, "{size}: the dirty run is reused");
            // Runs of up to 16 pages are reused from the thread's own slot,
            // which the shared cache's count does not see.
            let shared = if size > 64 << 10 { 1 } else { 0 };
            assert_eq!(large::stats().reused, reused + shared);
            let bytes = std::slice::from_raw_parts(zeroed, size);
            assert!(bytes.iter().all(|&b| b == 0), "{size}: zeroed");
            A.dealloc(zeroed, l);
        }
    }
}

/// realloc keeps the contents through growing and shrinking across sizes:
/// slab to large, between bins, to and from direct mappings; and stays in
/// place when the page count does not change.
#[test]
fn realloc_preserves_contents_across_sizes() {
    let _serial = serial();
    let steps = [
        100,
        9000,
        12_000,
        20_000,
        20_400,
        300_000,
        5 << 20,
        (9 << 20) + 100,
        (9 << 20) + 4000,
        2_000_000,
        50_000,
        8193,
        5000,
        64,
    ];
    // SAFETY: every realloc passes the block's current layout and a
    // non-zero new size; the last block is freed once.
    unsafe {
        let mut size = steps[0];
        let mut p = A.alloc(layout(size));
        fill(p, size, 7);
        for &next in &steps[1..] {
            let old = p;
            p = A.realloc(p, layout(size), next);
            assert!(!p.is_null());
            check(p, size, size.min(next), 7);
            if size > 8192 && next > 8192 && size.div_ceil(PAGE_SIZE) == next.div_ceil(PAGE_SIZE) {
                assert_eq!(p, old, "{size} -> {next}: same pages, in place");
            }
            size = next;
            fill(p, size, 7);
        }
        A.dealloc(p, layout(size));
    }
    let mut v: Vec<u64> = Vec::new();
    for i in 0..2_000_000u64 {
        v.push(i);
    }
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
}

/// The cache holds at most `CACHE_BYTES`, the oldest runs going first; a
/// decay time of 0 empties it and keeps nothing; `trim` empties it at once.
#[test]
fn the_cache_stays_within_its_bound() {
    let _serial = serial();
    large::trim();
    let l = layout(1 << 20); // 256 pages: runs of 256 pages, 1 MiB
    let n = CACHE_BYTES / (1 << 20) + 8;
    let mut blocks = Vec::with_capacity(n);
    for _ in 0..n {
        // SAFETY: a valid layout.
        blocks.push(unsafe { A.alloc(l) });
    }
    let before = large::stats();
    for &p in &blocks {
        // SAFETY: allocated above with `l`, freed once.
        unsafe { A.dealloc(p, l) };
        assert!(large::stats().cached_bytes <= CACHE_BYTES);
    }
    let after = large::stats();
    assert_eq!(after.cached_bytes, CACHE_BYTES, "full, not over");
    assert_eq!(after.os_unmaps - before.os_unmaps, 8, "the oldest 8 went");

    assert_eq!(large::trim(), CACHE_BYTES);
    assert_eq!(large::stats().cached_runs, 0);

    // SAFETY: valid layouts; each block freed once.
    unsafe {
        let p = A.alloc(l);
        A.dealloc(p, l);
        assert_eq!(large::stats().cached_bytes, 1 << 20);
        large::set_decay(Duration::ZERO);
        assert_eq!(large::stats().cached_bytes, 0, "decayed at once");
        let p = A.alloc(l);
        A.dealloc(p, l);
        assert_eq!(large::stats().cached_bytes, 0, "nothing kept");
    }
}

/// A run idle past the decay time is unmapped at the next operation of the
/// cache, while a later one stays. (The sleep only guarantees that the decay
/// time has passed; nothing is timed.)
#[test]
fn idle_runs_decay() {
    let _serial = serial();
    large::trim();
    // Above 16 pages: runs that go to the shared cache, not the thread's slot.
    let (old, new) = (layout(80_000), layout(200_000));
    // SAFETY: valid layouts; each block freed once.
    unsafe {
        let p = A.alloc(old);
        A.dealloc(p, old);
        assert_eq!(large::stats().cached_runs, 1);
        let unmaps = large::stats().os_unmaps;
        large::set_decay(Duration::from_millis(30));
        thread::sleep(Duration::from_millis(100));
        // Another bin's block: the cache runs its decay.
        let q = A.alloc(new);
        let s = large::stats();
        assert_eq!(s.cached_runs, 0, "the idle run decayed");
        assert_eq!(s.os_unmaps, unmaps + 1);
        large::set_decay(Duration::from_secs(3600));
        A.dealloc(q, new);
        assert_eq!(large::stats().cached_runs, 1, "a fresh run stays");
    }
    large::trim();
}

/// A program that stops making large blocks still sees its idle runs go:
/// the slab allocator's slow path (a new slab span) runs the decay too.
#[test]
fn idle_runs_decay_when_only_small_objects_are_made() {
    let _serial = serial();
    large::trim();
    let l = layout(80_000); // above the thread's own slot (16 pages)
                            // SAFETY: a valid layout; freed once.
    unsafe {
        let p = A.alloc(l);
        A.dealloc(p, l);
    }
    assert_eq!(large::stats().cached_runs, 1);
    large::set_decay(Duration::from_millis(30));
    thread::sleep(Duration::from_millis(100));
    // 4 MiB of 4 KiB objects: more slabs than any cache keeps empty, so new
    // spans are taken from the pools.
    let small: Vec<Box<[u8; 4096]>> = (0..1024).map(|_| Box::new([1; 4096])).collect();
    assert_eq!(
        large::stats().cached_runs,
        0,
        "decayed without a large block"
    );
    drop(small);
}

/// S1, S2: blocks of a removed group stay usable; freed on another thread,
/// they uncharge the parent, down to exactly 0.
#[test]
fn blocks_freed_after_their_group_is_removed_uncharge_the_parent() {
    let _serial = serial();
    let parent = global().create("/s2").unwrap();
    let child = global().create("/s2/job").unwrap();
    let sizes = [9000, 70_000, 1 << 20, 9 << 20];
    let mut blocks: Vec<Box<[u8]>> = Vec::with_capacity(sizes.len());
    let blocks = thread::spawn(move || {
        let _in = child.enter().unwrap();
        for (i, &size) in sizes.iter().enumerate() {
            blocks.push(vec![i as u8 + 1; size].into_boxed_slice());
        }
        blocks
    })
    .join()
    .unwrap();
    global().remove("/s2/job").unwrap();
    global().quiesce();
    assert_eq!(
        parent.read("cgroup.stat").unwrap(),
        "nr_descendants 0\nnr_dying_descendants 0\n"
    );
    let all: u64 = sizes.iter().map(|&s| pages_bytes(s)).sum();
    assert_eq!(read(&parent, "memory.stat", Some("kmem")), all);
    assert!(blocks
        .iter()
        .enumerate()
        .all(|(i, b)| b[b.len() - 1] == i as u8 + 1));
    thread::spawn(move || drop(blocks)).join().unwrap();
    assert_eq!(charged(&parent), (0, 0));
    drop(parent);
    global().remove("/s2").unwrap();
}

/// Several threads in several groups make and free blocks of many sizes at
/// once, some freed on other threads, sharing the cache: the cache stays in
/// its bound and every group returns to exactly 0.
#[test]
fn threads_share_the_cache_and_every_counter_returns_to_zero() {
    let _serial = serial();
    let top = global().create("/share").unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Vec<u8>>>(4);
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let g = global().create(&format!("/share/{t}")).unwrap();
            let tx = tx.clone();
            thread::spawn(move || {
                let _in = g.enter().unwrap();
                let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ t as u64;
                for _ in 0..50 {
                    let batch: Vec<Vec<u8>> = (0..8)
                        .map(|_| {
                            seed ^= seed << 13;
                            seed ^= seed >> 7;
                            seed ^= seed << 17;
                            // Mostly under 256 KiB, one in eight up to 3 MiB.
                            let range = if seed.is_multiple_of(8) {
                                3 << 20
                            } else {
                                1 << 18
                            };
                            vec![t as u8; 8193 + (seed >> 3) as usize % range]
                        })
                        .collect();
                    assert!(large::stats().cached_bytes <= CACHE_BYTES);
                    if seed.is_multiple_of(2) {
                        drop(batch);
                    } else {
                        tx.send(batch).unwrap();
                    }
                }
            })
        })
        .collect();
    drop(tx);
    for batch in rx {
        assert!(batch.iter().all(|b| b.iter().all(|&x| x == b[0])));
    }
    for w in workers {
        w.join().unwrap();
    }
    assert!(large::stats().cached_bytes <= CACHE_BYTES);
    for t in 0..4 {
        global().remove(&format!("/share/{t}")).unwrap();
    }
    assert_eq!(charged(&top), (0, 0));
    drop(top);
    global().remove("/share").unwrap();
}

/// A run of up to 16 pages freed by a thread is kept in the thread's own
/// slot and reused by its next block of the same bin, without the shared
/// cache (no lock, no shared line: two threads charging large blocks scale).
#[test]
fn a_small_run_is_reused_from_the_threads_own_slot() {
    let _serial = serial();
    let l = layout(40_000); // 10 pages
                            // SAFETY: a valid layout; each block freed once.
    unsafe {
        let p = A.alloc(l);
        A.dealloc(p, l);
        let shared = large::stats();
        let q = A.alloc(l);
        assert_eq!(q, p, "the thread's own run comes back");
        let after = large::stats();
        assert_eq!(after.reused, shared.reused, "not through the shared cache");
        assert_eq!(after.cached_runs, shared.cached_runs);
        A.dealloc(q, l);
    }
}
