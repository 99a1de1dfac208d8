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

fn stat(h: &Hierarchy, path: &str, key: &str) -> u64 {
    h.read(path, "memory.stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
        .unwrap()
}

fn current(h: &Hierarchy, path: &str) -> u64 {
    h.read(path, "memory.current")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A thread that stays idle after its last allocation or free, holding
/// what its object stock cached: `park` runs it until `work` is done and
/// keeps it waiting (in `group`, if given) until the returned guard drops.
fn idle_thread<T: Send + 'static>(
    group: Option<memcg::Group>,
    work: impl FnOnce() -> T + Send + 'static,
) -> (T, impl Drop) {
    use std::sync::mpsc;
    let (done_tx, done_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let t = thread::spawn(move || {
        let _in = group.map(|g| g.enter().unwrap());
        let out = work();
        done_tx.send(out).unwrap();
        let _ = stop_rx.recv();
    });
    struct Stop<J: FnMut()>(J);
    impl<J: FnMut()> Drop for Stop<J> {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    let mut t = Some(t);
    let mut stop_tx = Some(stop_tx);
    let out = done_rx.recv().unwrap();
    (
        out,
        Stop(move || {
            drop(stop_tx.take());
            if let Some(t) = t.take() {
                t.join().unwrap();
            }
        }),
    )
}

/// DESIGN.md §8: `quiesce()` drains every thread's object stock, idle ones
/// included: an idle thread in its group holds no pre-charged bytes and no
/// pending statistics after another thread's quiesce — `slab` is exactly
/// the live bytes, `memory.current` exactly their pages.
#[test]
fn quiesce_drains_an_idle_threads_object_stock() {
    let h = Hierarchy::new();
    let g = h.create("/idle-owner").unwrap();
    let cache = SlabCache::new("fast-path-idle-owner", 200, false).unwrap();
    const N: usize = 37; // 7,400 bytes: not a whole number of pages
    let (objects, stop) = idle_thread(Some(g), move || {
        (0..N)
            .map(|_| cache.alloc_raw().unwrap().as_ptr() as usize)
            .collect::<Vec<_>>()
    });
    h.quiesce();
    // Each object is charged its slot (S11); under `hardened` every shared
    // slab keeps a vector, so its 8-byte entry too.
    let per = cache.slot_size() + if cfg!(feature = "hardened") { 8 } else { 0 };
    let live = (N * per) as u64;
    assert_eq!(stat(&h, "/idle-owner", "slab"), live);
    assert_eq!(current(&h, "/idle-owner"), live.div_ceil(4096) * 4096);
    for p in objects {
        // SAFETY: from alloc_raw, freed once.
        unsafe { SlabCache::free_raw(std::ptr::NonNull::new(p as *mut u8).unwrap()) };
    }
    h.quiesce();
    assert_eq!(current(&h, "/idle-owner"), 0);
    assert_eq!(stat(&h, "/idle-owner", "slab"), 0);
    drop(stop);
}

/// DESIGN.md §8: a consumer thread that freed another group's objects and
/// went idle keeps that group's context and bytes in its object stock; a
/// quiesce on another thread drains it (exact 0), and so does the removal of
/// the group: nothing is left, not even the context.
#[test]
fn an_idle_consumers_stock_is_drained_by_quiesce_and_by_removal() {
    let h = Hierarchy::new();
    h.create("/p").unwrap();
    for (i, path) in ["/p/a", "/p/b"].into_iter().enumerate() {
        let g = h.create(path).unwrap();
        let cache = SlabCache::new(&format!("fast-path-consumer-{i}"), 216, false).unwrap();
        let objects: Vec<usize> = {
            let _in = g.enter().unwrap();
            (0..55)
                .map(|_| cache.alloc_raw().unwrap().as_ptr() as usize)
                .collect()
        };
        // The consumer frees them all and stays idle, in the root.
        let ((), stop) = idle_thread(None, move || {
            for p in objects {
                // SAFETY: from alloc_raw, freed once.
                unsafe { SlabCache::free_raw(std::ptr::NonNull::new(p as *mut u8).unwrap()) };
            }
        });
        drop(g);
        if i == 0 {
            h.quiesce();
            assert_eq!(current(&h, path), 0, "{path}: the idle consumer's stock");
            assert_eq!(stat(&h, path, "slab"), 0);
            h.remove(path).unwrap();
        } else {
            h.remove(path).unwrap();
            // No quiesce of other threads here: the removal drained them.
            memcg::drain_stocks();
            assert_eq!(current(&h, "/p"), 0, "the removal left bytes charged");
            assert_eq!(stat(&h, "/p", "slab"), 0);
            assert_eq!(h.leftovers(), memcg::Leftovers::default(), "a context left");
        }
        drop(stop);
    }
}
