//! Dropping the last handle of a hierarchy removes every group, as by
//! `rmdir` (hierarchy.rs): objects that outlive it stay usable and billed
//! through their kmem contexts, and once they are freed the contexts, the
//! groups and the hierarchy itself are gone (S1, S2, S3, S9).
//!
//! Its own binary, with one test: what it checks is process-wide. Whether
//! any kmem context exists ([`memcg::accounting_enabled`], the seed's static
//! key) and the bytes live in the heap, which a counting global allocator
//! over the system one reports; no other test may allocate meanwhile.

use memcg::{Hierarchy, KmemPages, PageKind, UserPage};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The system allocator, counting the bytes live in it.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call forwards to the system allocator with the caller's
// arguments; the counter has no effect on what is returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        }
        p
    }
}

#[global_allocator]
static A: Counting = Counting;

/// What a hierarchy's groups made and left alive.
struct Objects {
    kmem: Vec<KmemPages>,
    pages: Vec<UserPage>,
}

/// A hierarchy `/a/b` whose thread in `/a/b` charged kmem pages and anon
/// pages; the hierarchy is dropped with the objects alive, which are then
/// used and returned.
fn drop_a_hierarchy_with_objects_alive() -> Objects {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    let b = h.create("/a/b").unwrap();
    let objects = std::thread::spawn(move || {
        b.attach().unwrap();
        let kmem: Vec<_> = (0..3).map(|_| KmemPages::alloc(4096).unwrap()).collect();
        let pages: Vec<_> = (0..2)
            .map(|_| UserPage::charge(PageKind::Anon).unwrap())
            .collect();
        memcg::detach();
        Objects { kmem, pages }
    })
    .join()
    .unwrap();
    h.quiesce();
    assert_eq!(h.read("/a", "memory.current").unwrap(), "20480\n");
    assert!(memcg::accounting_enabled());
    drop(h);
    let mut objects = objects;
    // The groups are gone, the objects are not: their memory is still theirs
    // and their contexts (the static key counts them) still live.
    assert!(
        memcg::accounting_enabled(),
        "the objects' contexts were destroyed under them"
    );
    for (k, o) in objects.kmem.iter_mut().enumerate() {
        o.as_mut_slice().fill(k as u8 + 1);
    }
    assert!(objects
        .kmem
        .iter()
        .enumerate()
        .all(|(k, o)| o.as_slice().iter().all(|&x| x == k as u8 + 1)));
    assert!(objects.pages.iter().all(UserPage::is_live));
    objects
}

/// Bytes live in the heap once dead hierarchies are forgotten: registering
/// a hierarchy prunes the deferred worker's weak references to dead ones
/// (which hold their allocation); the one registered here stays, in every
/// measurement alike.
fn settled_live_bytes() -> isize {
    drop(Hierarchy::new());
    LIVE_BYTES.load(Relaxed)
}

/// Wait, at most 10 s (liveness only), until no kmem context exists and the
/// heap is back to `baseline` bytes (`None`: until no context exists).
/// Returns what it saw last.
fn settle(baseline: Option<isize>) -> (bool, isize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = (memcg::accounting_enabled(), settled_live_bytes());
        let done = !seen.0 && baseline.is_none_or(|b| seen.1 == b);
        if done || Instant::now() >= deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

const WARM_UP_ROUNDS: usize = 3;

/// Dropping the last handle of a hierarchy removes every group; objects
/// that outlive it stay usable, and freeing them destroys the last kmem
/// contexts (by deferred work: no handle is left to quiesce with), after
/// which nothing of the hierarchy remains in the heap.
#[test]
fn a_hierarchy_can_be_dropped_with_objects_alive() {
    assert!(!memcg::accounting_enabled(), "no group exists yet");
    // Warm-up rounds start what lives for the process (the deferred worker,
    // registries that grow once), so that a later round can be measured:
    // from the second round on, one round leaves the heap as it found it.
    for _ in 0..WARM_UP_ROUNDS {
        drop(drop_a_hierarchy_with_objects_alive());
        assert!(!settle(None).0, "a kmem context outlived its objects");
    }
    let baseline = settled_live_bytes();

    let objects = drop_a_hierarchy_with_objects_alive();
    let held = settled_live_bytes();
    assert!(
        held > baseline,
        "the objects' contexts and groups are held: {held} vs {baseline} bytes"
    );
    drop(objects);
    let (contexts, bytes) = settle(Some(baseline));
    assert!(!contexts, "a kmem context outlived its objects");
    assert_eq!(
        bytes,
        baseline,
        "the dropped hierarchy left {} bytes in the heap",
        bytes - baseline
    );
}
