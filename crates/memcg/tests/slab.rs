//! The slab allocator with isolated (per-group) caches: S6, S8, remote
//! frees, reclaim of reclaimable caches, and removal while threads allocate.
//! Shared slabs with byte charges (S11) are in tests/shared_slabs.rs.

use memcg::{ErrorKind, Hierarchy, SlabCache, SlabObject};
use std::thread;

/// Spawn a test thread. Under `MemcgAlloc` (tests/under_memcg_alloc.rs)
/// whatever it allocates while in a group is charged there, so the
/// bookkeeping of a charged section (result vectors) is allocated before it
/// enters the group, for the exact numbers below to hold there too.
use std::thread::spawn;

fn num(h: &Hierarchy, path: &str, file: &str) -> u64 {
    h.quiesce();
    let text = h.read(path, file).unwrap();
    let (file, key) = (text.as_str(), file);
    file.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{key}: {file}"))
}

fn stat(h: &Hierarchy, path: &str, key: &str) -> u64 {
    h.quiesce();
    h.read(path, "memory.stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
        .unwrap()
}

/// Allocate `n` objects of `cache` on a thread attached to `path`; the thread
/// ends, so its current slab goes back to the cache.
fn alloc_on_task(h: &Hierarchy, path: &str, cache: SlabCache, n: usize) -> Vec<SlabObject> {
    let g = h.get(path).unwrap();
    spawn(move || {
        let mut v = Vec::with_capacity(n);
        let _in = g.enter().unwrap();
        v.extend((0..n).map(|_| cache.alloc().unwrap()));
        v
    })
    .join()
    .unwrap()
}

/// Slabs of an isolated cache are charged once each, as slab pages, and
/// counted in `kernel`.
#[test]
fn slabs_are_charged_per_page_and_reported_as_slab() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    let cache = SlabCache::isolated("test-per-page", 64, false).unwrap();
    let objects = alloc_on_task(&h, "/a", cache, 100); // 64 per 4 KiB slab
    assert_eq!(num(&h, "/a", "memory.current"), 2 * 4096);
    assert_eq!(stat(&h, "/a", "slab_unreclaimable"), 2 * 4096);
    assert_eq!(stat(&h, "/a", "slab"), 2 * 4096);
    assert_eq!(stat(&h, "/a", "kernel"), 2 * 4096);
    drop(objects);
    // A live cache keeps emptied slabs for reuse until reclaim wants them.
    assert!(num(&h, "/a", "memory.current") <= 2 * 4096);
    drain(&h, "/a");
}

/// Reclaim every byte `path` holds (empty slabs kept for reuse included) and
/// check it worked.
fn drain(h: &Hierarchy, path: &str) {
    let current = num(h, path, "memory.current");
    h.write(path, "memory.reclaim", &current.to_string())
        .unwrap();
    assert_eq!(num(h, path, "memory.current"), 0);
}

/// S6: a removed group's caches are dead: empty slabs are released at once,
/// the rest stays charged to the parent until the last object goes, then the
/// cache is destroyed. A new group never gets the dead cache.
#[test]
fn dead_caches_live_until_their_last_object_then_die() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    h.create("/a/b").unwrap();
    let cache = SlabCache::isolated("test-dead", 64, false).unwrap();
    let mut objects = alloc_on_task(&h, "/a/b", cache, 64 * 4);
    assert_eq!(num(&h, "/a", "memory.current"), 4 * 4096);
    // Free the first two slabs' objects: they go back as remote frees.
    let rest = objects.split_off(128);
    drop(objects);
    assert_eq!(h.live_caches(), 1);
    h.remove("/a/b").unwrap();
    assert_eq!(
        num(&h, "/a", "memory.current"),
        2 * 4096,
        "emptied slabs released at removal"
    );
    assert_eq!(h.live_caches(), 1, "the dead cache holds objects");
    // A new group allocates from a fresh cache, never the dead one.
    h.create("/a/c").unwrap();
    let fresh = alloc_on_task(&h, "/a/c", cache, 1);
    assert_eq!(num(&h, "/a/c", "memory.current"), 4096);
    assert_eq!(h.live_caches(), 2);
    drop(rest);
    assert_eq!(num(&h, "/a", "memory.current"), 4096);
    assert_eq!(
        h.live_caches(),
        1,
        "the dead cache died with its last object"
    );
    drop(fresh);
    h.remove("/a/c").unwrap();
    h.quiesce();
    assert_eq!(h.live_caches(), 0);
    assert_eq!(num(&h, "/a", "memory.current"), 0);
    assert_eq!(h.live_contexts(), 1);
}

/// S8: removal looks at empty and partial slabs only, so its work is the same
/// with 100k live objects as with none.
#[test]
fn removal_work_does_not_grow_with_live_objects() {
    let h = Hierarchy::new();
    let cache = SlabCache::isolated("test-s8", 32, false).unwrap();
    h.create("/empty").unwrap();
    h.remove("/empty").unwrap();
    let none = h.last_removal_slabs();
    h.create("/full").unwrap();
    let objects = alloc_on_task(&h, "/full", cache, 100_000);
    h.remove("/full").unwrap();
    let many = h.last_removal_slabs();
    assert!(
        many <= none + 1,
        "{many} slabs looked at with 100k objects, {none} with none"
    );
    assert_eq!(
        num(&h, "/", "memory.current"),
        (100_000usize.div_ceil(128) * 4096) as u64
    );
    drop(objects);
    assert_eq!(num(&h, "/", "memory.current"), 0);
}

/// Remote frees: objects made on one thread and freed on another are
/// collected, and the counters end exact.
#[test]
fn remote_frees_are_collected() {
    let h = Hierarchy::new();
    let a = h.create("/a").unwrap();
    let cache = SlabCache::new("test-remote", 128, false).unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<SlabObject>>(4);
    let consumer = spawn(move || {
        for batch in rx {
            drop(batch);
        }
    });
    let producer = spawn(move || {
        let _in = a.enter().unwrap();
        for _ in 0..200 {
            tx.send((0..100).map(|_| cache.alloc().unwrap()).collect())
                .unwrap();
        }
    });
    producer.join().unwrap();
    consumer.join().unwrap();
    // Slabs the consumer emptied wait, charged, on the partial list for the
    // next refill (as SLUB's partial slabs do); reclaim collects them.
    drain(&h, "/a");
    h.remove("/a").unwrap();
    assert_eq!(num(&h, "/", "memory.current"), 0);
    assert_eq!(h.live_caches(), 0);
}

/// Reclaim took `objects` (in the order they were made) oldest first: the
/// freed ones are exactly the first few, none of them younger than a live
/// one. Returns how many were freed.
fn assert_oldest_first(objects: &[SlabObject]) -> usize {
    let gone = objects.iter().take_while(|o| !o.is_live()).count();
    let younger: Vec<usize> = (gone..objects.len())
        .filter(|&i| !objects[i].is_live())
        .collect();
    assert!(
        younger.is_empty(),
        "objects 0..{gone} were freed, object {gone} lives, and {} younger ones \
         (objects {} to {}) were freed",
        younger.len(),
        younger[0],
        younger[younger.len() - 1],
    );
    gone
}

/// Objects of reclaimable caches are freed oldest first by memory.reclaim,
/// memory.max and memory.high; unreclaimable ones make a charge fail.
#[test]
fn reclaimable_caches_are_shrunk_under_pressure() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    let dentry = SlabCache::isolated("test-dentry", 256, true).unwrap(); // 16 per slab
    let mut objects = alloc_on_task(&h, "/a", dentry, 16 * 8);
    assert_eq!(stat(&h, "/a", "slab_reclaimable"), 8 * 4096);
    h.write("/a", "memory.reclaim", "8K").unwrap();
    assert!(num(&h, "/a", "memory.current") <= 6 * 4096);
    // Oldest first: the objects freed are the first ones made, however
    // many went.
    let gone = assert_oldest_first(&objects);
    assert!(
        0 < gone && gone < objects.len(),
        "reclaim freed {gone} of 128"
    );
    // Under memory.max new objects push old ones out.
    h.write("/a", "memory.max", "16K").unwrap();
    objects.extend(alloc_on_task(&h, "/a", dentry, 16 * 8));
    assert!(num(&h, "/a", "memory.current") <= 16 * 1024);
    // Every old object went before any new one, and the newest live.
    let gone = assert_oldest_first(&objects);
    assert!(16 * 8 < gone && gone < objects.len(), "{gone} of 256 freed");
    // Unreclaimable objects cannot make room.
    let plain = SlabCache::new("test-plain", 256, false).unwrap();
    let g = h.get("/a").unwrap();
    let err = spawn(move || {
        let _in = g.enter().unwrap();
        let mut v = Vec::new();
        loop {
            match plain.alloc() {
                Ok(o) => v.push(o),
                Err(e) => return (v, e),
            }
        }
    })
    .join()
    .unwrap();
    assert_eq!(err.1.kind(), ErrorKind::Limit);
    assert!(
        objects.iter().all(|o| !o.is_live()),
        "reclaim took every dentry first"
    );
    drop(err);
    drop(objects);
    drain(&h, "/a");
}

/// Several threads allocate from a group, leaving and entering it, while it
/// is removed; every counter ends at exactly 0.
#[test]
fn threads_allocating_while_their_group_is_removed() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    let b = h.create("/a/b").unwrap();
    let cache = SlabCache::new("test-race", 48, false).unwrap();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let b = b.clone();
            spawn(move || {
                let mut kept = Vec::new();
                for round in 0..200 {
                    // Once b is removed, entering fails and the thread
                    // allocates in the root.
                    let _in = b.enter().ok();
                    for _ in 0..50 {
                        kept.push(cache.alloc().unwrap());
                    }
                    if round % 3 == 0 {
                        kept.drain(..kept.len() / 2);
                    }
                }
                kept
            })
        })
        .collect();
    drop(b);
    while h.remove("/a/b").is_err() {
        thread::yield_now();
    }
    let kept: Vec<Vec<SlabObject>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    // Free on other threads than the makers.
    spawn(move || drop(kept)).join().unwrap();
    assert_eq!(num(&h, "/a", "memory.current"), 0);
    assert_eq!(num(&h, "/", "memory.current"), 0);
    assert_eq!(h.live_caches(), 0);
    assert_eq!(h.live_contexts(), 1);
}

/// A pointer that is not a slab object is told apart without touching it.
#[test]
fn foreign_pointers_are_detected() {
    let local = 5u64;
    assert!(SlabCache::owner_of(&local as *const u64 as *const u8).is_none());
    use std::alloc::{GlobalAlloc, Layout, System};
    let layout = Layout::from_size_align(64, 16).unwrap();
    // SAFETY: a valid layout; freed below with the same layout.
    let foreign = unsafe { System.alloc(layout) };
    assert!(SlabCache::owner_of(foreign).is_none());
    // SAFETY: allocated above by System with this layout.
    unsafe { System.dealloc(foreign, layout) };
    let cache = SlabCache::new("test-owner", 64, false).unwrap();
    let obj = cache.alloc().unwrap();
    let p = obj.as_ptr().unwrap().as_ptr();
    assert_eq!(SlabCache::owner_of(p).unwrap().name(), "test-owner");
    assert!(SlabCache::owner_of(p.wrapping_add(1)).is_none());
}

/// Creating a cache again with the same name: same cache, or `exists`.
#[test]
fn caches_are_interned_by_name() {
    let a = SlabCache::new("test-intern", 100, false).unwrap();
    let b = SlabCache::new("test-intern", 100, false).unwrap();
    assert_eq!(a.slot_size(), b.slot_size());
    let err = SlabCache::new("test-intern", 200, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Exists);
    assert_eq!(
        SlabCache::new("test-huge", 1 << 20, false)
            .unwrap_err()
            .kind(),
        ErrorKind::Invalid
    );
}

/// kmalloc classes: every size maps to the smallest class that holds it.
#[test]
fn kmalloc_sizes_map_to_the_smallest_fitting_class() {
    for size in [1, 8, 16, 17, 100, 128, 129, 1000, 4096, 4097, 8192] {
        let c = SlabCache::kmalloc(size).unwrap();
        assert!(c.object_size() >= size, "{size}");
        let smaller = memcg::slab::KMALLOC_SIZES
            .iter()
            .filter(|&&s| s < c.object_size())
            .all(|&s| s < size);
        assert!(smaller, "{size} -> {}", c.object_size());
    }
    assert!(SlabCache::kmalloc(8193).is_none());
}

/// S3: what a removed group leaves: its context and dead cache, until the
/// last object goes; then nothing.
#[test]
fn leftovers_of_removed_groups_are_reported_and_vanish() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    h.create("/a/b").unwrap();
    let cache = SlabCache::isolated("test-leftovers", 64, false).unwrap();
    let objects = alloc_on_task(&h, "/a/b", cache, 100);
    h.remove("/a/b").unwrap();
    h.quiesce();
    let left = h.leftovers();
    assert_eq!(left.dying_groups, 0);
    assert_eq!(left.dead_contexts, 1);
    assert_eq!(left.dead_caches, 1);
    assert_eq!(left.dead_cache_slab_bytes, 2 * 4096);
    assert_eq!(
        left.pinned_bytes,
        memcg::context_size() + memcg::slab::cache_size()
    );
    drop(objects);
    h.quiesce();
    assert_eq!(h.leftovers(), memcg::Leftovers::default());
}
