//! The small-object paths of issue 17 (DESIGN.md §6, S11): frees on the
//! allocating thread are local whichever heap allocated (a group allocator
//! handle's or the thread's own), and remote frees reach their slab in
//! batches, one atomic operation for many objects, with exact counters.

use allocator_api2::boxed::Box as ABox;
use memcg::{Hierarchy, SlabCache};
use std::thread;

/// `Group::allocator()` objects freed on the thread that allocated them
/// take the local path: the thread owns their slabs (S11's slabs are owned
/// by a thread id both of its heaps share, not by a heap's address).
#[test]
fn group_allocator_frees_on_the_allocating_thread_are_local() {
    let h = Hierarchy::new();
    let g = h.create("/handles").unwrap();
    thread::spawn(move || {
        let a = g.allocator();
        // Warm up: the heap's first slabs and stock.
        drop(ABox::new_in([0u8; 48], a.clone()));
        let before = memcg::slab::remote_free_counts().0;
        let boxes: Vec<_> = (0..2000)
            .map(|i| ABox::new_in([i as u8; 48], a.clone()))
            .collect();
        drop(boxes);
        let after = memcg::slab::remote_free_counts().0;
        assert_eq!(
            after - before,
            0,
            "frees on the allocating thread went remote"
        );
    })
    .join()
    .unwrap();
    h.quiesce();
    assert_eq!(h.read("/handles", "memory.current").unwrap(), "0\n");
}

/// Frees of another thread's objects are batched per destination slab:
/// the freeing thread's pushes are a small fraction of its frees, and
/// every counter is exact once it has quiesced.
#[test]
fn remote_frees_are_pushed_in_batches() {
    let h = Hierarchy::new();
    let a = h.create("/producer").unwrap();
    let b = h.create("/consumer").unwrap();
    let cache = SlabCache::new("fast-path-remote", 64, false).unwrap();
    const N: usize = 4096;
    let objects: Vec<usize> = thread::spawn(move || {
        let _in = a.enter().unwrap();
        (0..N)
            .map(|_| cache.alloc_raw().unwrap().as_ptr() as usize)
            .collect()
    })
    .join()
    .unwrap();
    let h2 = h.clone();
    let (frees, pushes) = thread::spawn(move || {
        let _in = b.enter().unwrap();
        let (f0, p0) = memcg::slab::remote_free_counts();
        for p in objects {
            // SAFETY: each came from alloc_raw and is freed once.
            unsafe { SlabCache::free_raw(std::ptr::NonNull::new(p as *mut u8).unwrap()) };
        }
        h2.quiesce(); // pushes this thread's last batch
        let (f1, p1) = memcg::slab::remote_free_counts();
        (f1 - f0, p1 - p0)
    })
    .join()
    .unwrap();
    assert_eq!(frees, N as u64, "every free was remote");
    assert!(
        pushes * 16 <= frees,
        "{pushes} pushes for {frees} remote frees: not batched"
    );
    h.quiesce();
    for p in ["/producer", "/consumer"] {
        assert_eq!(h.read(p, "memory.current").unwrap(), "0\n", "{p}");
    }
}
