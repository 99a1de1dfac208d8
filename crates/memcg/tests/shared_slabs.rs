//! Shared slabs with per-object kmem contexts, the default (DESIGN.md S11, and
//! S3 and S8 with it): objects of all groups share slabs, each is charged in
//! bytes through the thread's object stock — its slot, plus its object-vector
//! entry where the slab has a vector (a second context allocated from it) —
//! and a removed group leaves its context and nothing more.

use memcg::{Hierarchy, Leftovers, SlabCache, SlabObject, PAGE_SIZE};
use std::thread;

/// Bytes one object of `cache` is charged in a slab of one context (no
/// object vector): its slot.
fn charged(cache: SlabCache) -> u64 {
    // Under `hardened` every shared slab keeps a vector (its entries mark
    // freed slots), so every object pays its entry.
    cache.slot_size() as u64 + if memcg::slab::HARDENED { ENTRY } else { 0 }
}

/// Bytes of an object-vector entry, charged with each object allocated
/// into a slab that has a vector.
const ENTRY: u64 = memcg::slab::VECTOR_ENTRY_BYTES as u64;

fn num(h: &Hierarchy, path: &str, file: &str) -> u64 {
    h.quiesce();
    h.read(path, file).unwrap().trim().parse().unwrap()
}

fn stat(h: &Hierarchy, path: &str, key: &str) -> u64 {
    h.quiesce();
    h.read(path, "memory.stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
        .unwrap()
}

/// Allocate `n` objects of `cache` on a thread in `path`, which then exits
/// (its stock drained).
fn alloc_on_task(h: &Hierarchy, path: &str, cache: SlabCache, n: usize) -> Vec<SlabObject> {
    let g = h.get(path).unwrap();
    thread::spawn(move || {
        memcg::without_accounting(|| {
            let _in = g.enter().unwrap();
            (0..n).map(|_| cache.alloc().unwrap()).collect()
        })
    })
    .join()
    .unwrap()
}

/// S11: `slab` counts the bytes of live objects, `kernel` the whole pages
/// charged for them; the difference is the context's sub-page remainder.
#[test]
fn objects_are_charged_by_the_byte() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    let cache = SlabCache::new("shared-bytes", 64, false).unwrap();
    assert!(!cache.is_isolated());
    let objects = alloc_on_task(&h, "/a", cache, 100);
    let bytes = 100 * charged(cache);
    assert_eq!(stat(&h, "/a", "slab"), bytes);
    assert_eq!(stat(&h, "/a", "slab_unreclaimable"), bytes);
    let pages = bytes.div_ceil(PAGE_SIZE as u64) * PAGE_SIZE as u64;
    assert_eq!(stat(&h, "/a", "kernel"), pages);
    assert_eq!(num(&h, "/a", "memory.current"), pages);
    drop(objects);
    assert_eq!(stat(&h, "/a", "slab"), 0);
    assert_eq!(
        num(&h, "/a", "memory.current"),
        0,
        "no slab page stays charged"
    );
}

/// S11: objects of different groups sit side by side in one slab.
#[test]
#[cfg_attr(
    feature = "hardened",
    ignore = "hardened: every shared slab keeps a vector from the start, so none turns mixed"
)]
fn groups_share_slabs() {
    let h = Hierarchy::new();
    let a = h.create("/a").unwrap();
    let b = h.create("/b").unwrap();
    let cache = SlabCache::new("shared-side-by-side", 64, false).unwrap();
    let (x, y) = memcg::without_accounting(|| {
        let x = {
            let _in = a.enter().unwrap();
            cache.alloc_raw().unwrap()
        };
        let y = {
            let _in = b.enter().unwrap();
            cache.alloc_raw().unwrap()
        };
        (x, y)
    });
    assert_eq!(
        y.as_ptr() as usize - x.as_ptr() as usize,
        cache.slot_size(),
        "the next slot of the same slab"
    );
    assert_eq!(num(&h, "/a", "memory.current"), PAGE_SIZE as u64);
    assert_eq!(num(&h, "/b", "memory.current"), PAGE_SIZE as u64);
    // The slab was /a's alone when x was made: x pays its slot; y, made
    // once /b shares the slab (now with a vector), pays its entry too.
    assert_eq!(stat(&h, "/a", "slab"), charged(cache));
    assert_eq!(stat(&h, "/b", "slab"), charged(cache) + ENTRY);
    // SAFETY: both came from alloc_raw and are freed once.
    unsafe {
        SlabCache::free_raw(x);
        SlabCache::free_raw(y);
    }
    assert_eq!(num(&h, "/a", "memory.current"), 0);
    assert_eq!(num(&h, "/b", "memory.current"), 0);
}

/// S11: a free from any thread, in any group, uncharges the object's own
/// context, not the freeing thread's.
#[test]
fn a_free_uncharges_the_objects_own_context() {
    let h = Hierarchy::new();
    for p in ["/a", "/b", "/c"] {
        h.create(p).unwrap();
    }
    let cache = SlabCache::new("shared-any-thread", 128, false).unwrap();
    let mut objects = alloc_on_task(&h, "/a", cache, 500);
    objects.extend(alloc_on_task(&h, "/b", cache, 300));
    assert_eq!(stat(&h, "/a", "slab"), 500 * charged(cache));
    // /b's objects that landed in /a's partial slab (then mixed) pay their
    // vector entry too; the rest sit in slabs of /b alone.
    let b = stat(&h, "/b", "slab");
    assert!((300 * charged(cache)..=300 * (charged(cache) + ENTRY)).contains(&b));
    assert_eq!((b - 300 * charged(cache)) % ENTRY, 0, "{b}");
    let c = h.get("/c").unwrap();
    thread::spawn(move || {
        memcg::without_accounting(|| {
            let _in = c.enter().unwrap();
            drop(objects);
        })
    })
    .join()
    .unwrap();
    for p in ["/a", "/b", "/c"] {
        assert_eq!(num(&h, p, "memory.current"), 0, "{p}");
        assert_eq!(stat(&h, p, "slab"), 0, "{p}");
    }
}

/// S3, S8: a removed group with live objects leaves its kmem context only:
/// no slab, no cache; removal looks at no slab. The context's sub-page
/// remainder moves with it to the parent, and everything returns to 0.
#[test]
fn a_removed_group_leaves_only_its_context() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    h.create("/a/b").unwrap();
    let cache = SlabCache::new("shared-leftovers", 48, false).unwrap();
    let objects = alloc_on_task(&h, "/a/b", cache, 100_000);
    let charged_pages = num(&h, "/a/b", "memory.current");
    h.remove("/a/b").unwrap();
    assert_eq!(h.last_removal_slabs(), 0, "S8: no slab looked at");
    h.quiesce();
    assert_eq!(
        h.leftovers(),
        Leftovers {
            dying_groups: 0,
            dead_contexts: 1,
            dead_caches: 0,
            dead_cache_slab_bytes: 0,
            pinned_bytes: memcg::context_size(),
        }
    );
    assert!(
        memcg::context_size() <= 128,
        "§7: a context is at most 128 B"
    );
    assert_eq!(num(&h, "/a", "memory.current"), charged_pages);
    assert_eq!(stat(&h, "/a", "slab"), 100_000 * charged(cache));
    drop(objects);
    assert_eq!(num(&h, "/a", "memory.current"), 0);
    assert_eq!(stat(&h, "/a", "slab"), 0);
    assert_eq!(h.leftovers(), Leftovers::default());
}

/// S11: a slab keeps one context while all its objects share it and makes
/// its object vector only when a second context allocates from it; once
/// its objects are all gone it serves one context again, without a vector
/// charge.
#[test]
#[cfg_attr(
    feature = "hardened",
    ignore = "hardened: every shared slab keeps a vector from the start, so none turns mixed"
)]
fn a_slab_turns_mixed_when_a_second_group_allocates_and_back_when_empty() {
    let h = Hierarchy::new();
    let a = h.create("/a").unwrap();
    let b = h.create("/b").unwrap();
    let cache = SlabCache::new("shared-mixed-and-back", 96, false).unwrap();
    let slot = charged(cache);
    memcg::without_accounting(|| {
        let in_a: Vec<_> = {
            let _in = a.enter().unwrap();
            (0..5).map(|_| cache.alloc_raw().unwrap()).collect()
        };
        assert_eq!(stat(&h, "/a", "slab"), 5 * slot, "uniform: slots only");
        let in_b = {
            let _in = b.enter().unwrap();
            cache.alloc_raw().unwrap()
        };
        let slab = memcg::slab::slab_of(in_a[0].as_ptr()).unwrap();
        assert_eq!(memcg::slab::slab_of(in_b.as_ptr()), Some(slab), "same slab");
        assert_eq!(stat(&h, "/b", "slab"), slot + ENTRY, "mixed: the entry too");
        assert_eq!(
            stat(&h, "/a", "slab"),
            5 * slot,
            "earlier objects unchanged"
        );
        // SAFETY: every pointer came from alloc_raw and is freed once.
        unsafe {
            for p in in_a {
                SlabCache::free_raw(p);
            }
            SlabCache::free_raw(in_b);
        }
        assert_eq!(num(&h, "/a", "memory.current"), 0);
        assert_eq!(num(&h, "/b", "memory.current"), 0);
        // Emptied, the slab serves /b alone again: no entry is charged.
        let again = {
            let _in = b.enter().unwrap();
            cache.alloc_raw().unwrap()
        };
        assert_eq!(
            memcg::slab::slab_of(again.as_ptr()),
            Some(slab),
            "the same slab"
        );
        assert_eq!(stat(&h, "/b", "slab"), slot, "uniform again");
        // SAFETY: from alloc_raw, freed once.
        unsafe { SlabCache::free_raw(again) };
    });
    assert_eq!(num(&h, "/b", "memory.current"), 0);
}

/// Consistency (§3) with byte charges: `memory.current == anon + file +
/// kernel`, `kernel >= slab`, and kernel exceeds slab by less than a page
/// per context billing the group.
#[test]
fn kernel_exceeds_slab_by_less_than_a_page_per_context() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    let cache = SlabCache::new("shared-consistency", 200, false).unwrap();
    let mut kept = Vec::new();
    for (i, n) in [3usize, 77, 1000, 5].into_iter().enumerate() {
        let path = format!("/a/{i}");
        h.create(&path).unwrap();
        kept.push(alloc_on_task(&h, &path, cache, n));
        if i % 2 == 0 {
            h.remove(&path).unwrap(); // its context bills /a now
        }
    }
    let contexts = 5; // /a, the two live children, the two reparented
    let current = num(&h, "/a", "memory.current");
    let kernel = stat(&h, "/a", "kernel");
    let slab = stat(&h, "/a", "slab");
    assert_eq!(
        current,
        stat(&h, "/a", "anon") + stat(&h, "/a", "file") + kernel
    );
    assert!(kernel >= slab);
    assert!(
        kernel - slab < contexts * PAGE_SIZE as u64,
        "{kernel} - {slab}"
    );
    drop(kept);
    assert_eq!(num(&h, "/a", "memory.current"), 0);
}

/// A handle bound to a removed group never allocates into its dead caches
/// (S6), and with shared slabs charges the live ancestor (S5).
#[test]
fn a_handle_of_a_removed_group_charges_the_live_ancestor() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    let b = h.create("/a/b").unwrap();
    let handle = b.allocator();
    let mut v: allocator_api2::vec::Vec<u64, _> = allocator_api2::vec::Vec::new_in(handle.clone());
    v.push(1);
    drop(b);
    h.remove("/a/b").unwrap();
    let before = h.live_caches();
    let w: allocator_api2::vec::Vec<u8, _> =
        allocator_api2::vec::Vec::with_capacity_in(4000, handle.clone());
    assert_eq!(h.live_caches(), before, "no cache made for a removed group");
    assert!(num(&h, "/a", "memory.current") >= 4096);
    drop((v, w, handle));
    assert_eq!(num(&h, "/a", "memory.current"), 0);
}

/// Reclaimable objects of a shared cache sit on their context's LRU:
/// `memory.reclaim` frees a group's oldest ones, and after the group's
/// removal the parent's reclaim reaches them through the reparented context.
#[test]
fn shared_reclaimable_objects_are_reclaimed_per_context() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    h.create("/a/b").unwrap();
    h.create("/a/c").unwrap();
    let dentries = SlabCache::new("shared-dentry", 192, true).unwrap();
    assert!(!dentries.is_isolated());
    let b_objects = alloc_on_task(&h, "/a/b", dentries, 200);
    let c_objects = alloc_on_task(&h, "/a/c", dentries, 200);
    assert_eq!(
        stat(&h, "/a/b", "slab_reclaimable"),
        200 * charged(dentries)
    );
    h.write("/a/b", "memory.reclaim", "8K").unwrap();
    let gone = b_objects.iter().filter(|o| !o.is_live()).count();
    assert!(
        gone >= 8192 / charged(dentries) as usize,
        "{gone} reclaimed"
    );
    assert!(
        b_objects.iter().take(gone).all(|o| !o.is_live()),
        "oldest first"
    );
    assert!(c_objects.iter().all(SlabObject::is_live), "/a/c untouched");
    h.remove("/a/b").unwrap();
    let current = num(&h, "/a", "memory.current");
    h.write("/a", "memory.reclaim", &current.to_string())
        .unwrap();
    assert!(b_objects.iter().all(|o| !o.is_live()));
    assert!(c_objects.iter().all(|o| !o.is_live()));
    assert_eq!(num(&h, "/a", "memory.current"), 0);
    assert_eq!(stat(&h, "/a", "slab"), 0);
    drop((b_objects, c_objects));
    assert_eq!(h.leftovers(), Leftovers::default());
}

/// Another thread's object stock holds under a page of a group's slack: a
/// group whose objects were all freed elsewhere still has room under its
/// `memory.max` (a stock that kept several pages made this charge fail).
#[test]
fn frees_on_another_thread_leave_under_a_page_of_slack() {
    use std::sync::mpsc;
    let h = Hierarchy::new();
    let a = h.create("/a").unwrap();
    a.write("memory.max", "8K").unwrap();
    let cache = SlabCache::new("shared-slack", 200, false).unwrap();
    let (to_worker, jobs) = mpsc::channel::<Option<Vec<SlabObject>>>();
    let (to_test, made) = mpsc::channel::<memcg::Result<Vec<SlabObject>>>();
    let worker = thread::spawn(move || {
        memcg::without_accounting(|| {
            let _in = a.enter().unwrap();
            for job in jobs {
                let n = if job.is_some() { 1 } else { 37 };
                let objects: memcg::Result<Vec<_>> = (0..n).map(|_| cache.alloc()).collect();
                memcg::drain_stocks();
                to_test.send(objects).unwrap();
            }
        })
    });
    to_worker.send(None).unwrap();
    let objects = made.recv().unwrap().unwrap();
    assert_eq!(
        num(&h, "/a", "memory.current"),
        8192,
        "37 x 208 bytes: two pages"
    );
    // Freed on a thread in the root, whose stock takes the bytes back; the
    // thread stays alive (an exit would drain its stock).
    let (freed, wait_freed) = mpsc::channel();
    let (end, ended) = mpsc::channel::<()>();
    let freer = thread::spawn(move || {
        memcg::without_accounting(|| {
            drop(objects);
            freed.send(()).unwrap();
            ended.recv().unwrap();
        })
    });
    wait_freed.recv().unwrap();
    to_worker.send(Some(Vec::new())).unwrap();
    let one = made.recv().unwrap();
    assert!(
        one.is_ok(),
        "a group holding nothing charges a page: {one:?}"
    );
    drop(one);
    drop(to_worker);
    worker.join().unwrap();
    end.send(()).unwrap();
    freer.join().unwrap();
    assert_eq!(num(&h, "/a", "memory.current"), 0);
}

/// A thread that leaves its group keeps only a few used-up slabs per size
/// class: the rest go back to the shared cache, so slots other threads free
/// in them are reused by any thread (slab utilization, DESIGN.md §7), while
/// the thread itself stays alive.
#[test]
fn a_thread_leaving_its_group_hands_back_its_used_up_slabs() {
    use std::collections::BTreeSet;
    use std::sync::mpsc;
    let h = Hierarchy::new();
    let a = h.create("/a").unwrap();
    let cache = SlabCache::new("shared-hoard", 64, false).unwrap();
    let (made, objects) = mpsc::channel::<Vec<SlabObject>>();
    let (end, ended) = mpsc::channel::<()>();
    let owner = thread::spawn(move || {
        memcg::without_accounting(|| {
            let objects: Vec<SlabObject> = {
                let _in = a.enter().unwrap();
                (0..64 * 40).map(|_| cache.alloc().unwrap()).collect()
            }; // leaves /a here, and stays alive
            made.send(objects).unwrap();
            ended.recv().unwrap();
        })
    });
    let objects = objects.recv().unwrap();
    let slabs: BTreeSet<usize> = objects
        .iter()
        .map(|o| {
            memcg::slab::slab_of(o.as_ptr().unwrap().as_ptr())
                .unwrap()
                .0
        })
        .collect();
    assert!(slabs.len() >= 40);
    drop(objects); // frees from this thread, into the owner's used-up slabs
    let reused = thread::spawn(move || {
        memcg::without_accounting(|| {
            let o = cache.alloc_raw().unwrap();
            let slab = memcg::slab::slab_of(o.as_ptr()).unwrap().0;
            // SAFETY: allocated just above, freed once.
            unsafe { SlabCache::free_raw(o) };
            slab
        })
    })
    .join()
    .unwrap();
    assert!(
        slabs.contains(&reused),
        "another thread reuses a slab the owner handed back"
    );
    end.send(()).unwrap();
    owner.join().unwrap();
}

/// `memory.high` reclaim right after a charge takes about the excess: the
/// pages it frees reach the counters, not the charging thread's charge
/// stock (which used to swallow up to two batches of them, so reclaim went
/// on freeing objects).
#[test]
fn high_reclaim_frees_about_the_excess() {
    let h = Hierarchy::new();
    let a = h.create("/a").unwrap();
    let cache = SlabCache::new("shared-high", 248, true).unwrap();
    let gone = thread::spawn(move || {
        memcg::without_accounting(|| {
            let _in = a.enter().unwrap();
            let objects: Vec<SlabObject> = (0..4000).map(|_| cache.alloc().unwrap()).collect();
            // Read without a quiesce: the thread's stock keeps its pages.
            let used: u64 = a.read("memory.current").unwrap().trim().parse().unwrap();
            let high = used + 50 * PAGE_SIZE as u64;
            a.write("memory.high", &high.to_string()).unwrap();
            let one_more = cache.alloc().unwrap();
            // 100 pages: about 50 over memory.high.
            let k = memcg::KmemPages::alloc(100 * PAGE_SIZE).unwrap();
            let gone = objects.iter().filter(|o| !o.is_live()).count();
            drop((k, one_more, objects));
            gone
        })
    })
    .join()
    .unwrap();
    let per_page = PAGE_SIZE / 264; // 248-byte objects take 256 + 8 bytes
    assert!(gone >= 40 * per_page, "{gone} objects reclaimed");
    assert!(
        gone <= 70 * per_page,
        "{gone} objects reclaimed for about 50 pages over memory.high"
    );
}
