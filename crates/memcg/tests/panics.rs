//! DESIGN.md §8: a panic in a program's callback cannot wedge memcg. A
//! shrinker that panics, reached from a charge at a limit (possibly inside
//! an allocator, which must not unwind), frees nothing; the charge fails
//! or succeeds as it would without it, and the group can still be removed.

use memcg::{ErrorKind, Hierarchy, KmemPages, ShrinkControl, Shrinker};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

struct Panicking {
    calls: AtomicUsize,
}

impl Shrinker for Panicking {
    fn scan(&self, sc: &ShrinkControl) -> usize {
        self.calls.fetch_add(1, Relaxed);
        panic!("shrinker bug while reclaiming {}", sc.path);
    }
}

#[test]
fn a_panicking_shrinker_frees_nothing_and_the_group_can_be_removed() {
    let h = Hierarchy::new();
    let shrinker = Arc::new(Panicking {
        calls: AtomicUsize::new(0),
    });
    h.register_shrinker(shrinker.clone());
    let g = h.create("/a").unwrap();
    g.write("memory.max", "8K").unwrap();
    let held = {
        let _in_g = g.enter().unwrap();
        let held = KmemPages::alloc(4096).unwrap();
        // Over the limit: reclaim calls the shrinker, which panics.
        let err = KmemPages::alloc(8192).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Limit);
        held
    };
    assert!(shrinker.calls.load(Relaxed) > 0, "the shrinker never ran");
    // Through an allocator handle, which must return an error, not unwind.
    let mut v = allocator_api2::vec::Vec::<u8, _>::new_in(g.allocator());
    assert!(v.try_reserve(64 * 1024).is_err());
    let calls = shrinker.calls.load(Relaxed);
    // A memory.max write reclaims too.
    g.write("memory.max", "0").unwrap();
    assert!(shrinker.calls.load(Relaxed) > calls);
    assert!(g.read("memory.events").unwrap().contains("oom 3\n"));
    drop((v, held, g));
    h.remove("/a").unwrap();
    h.quiesce();
    assert_eq!(h.read("/", "memory.current").unwrap(), "0\n");
}
