//! Issue 11 item 3: a free that re-enters the slab heap of the very thread
//! whose allocation slow path is under way (alloc slow path → charge at a
//! limit → reclaim → a shrinker → free → the same heap's lists). The heap's
//! owned-slab lists are `RefCell`s borrowed only for short sections: an
//! overlap would panic here (a checked error), never be two live `&mut`.

use memcg::{Hierarchy, KmemPages, ShrinkControl, Shrinker, SlabCache, SlabObject};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Frees, oldest first, objects the allocating thread made, from inside
/// that thread's charge.
struct FreesOwnObjects {
    objects: Mutex<Vec<SlabObject>>,
    freed: AtomicUsize,
}

impl Shrinker for FreesOwnObjects {
    fn scan(&self, sc: &ShrinkControl) -> usize {
        let mut objects = self.objects.lock().unwrap();
        let n = (sc.nr_pages * 4096 / 512).min(objects.len());
        let before = objects.len();
        objects.drain(..n);
        self.freed.fetch_add(before - objects.len(), Relaxed);
        n * 512 / 4096
    }
}

fn churn_at_the_limit(isolated: bool) {
    let h = Hierarchy::new();
    let shrinker = Arc::new(FreesOwnObjects {
        objects: Mutex::new(Vec::new()),
        freed: AtomicUsize::new(0),
    });
    h.register_shrinker(shrinker.clone());
    let name = format!("reentry-{isolated}");
    let cache = if isolated {
        SlabCache::isolated(&name, 512, false).unwrap()
    } else {
        SlabCache::new(&name, 512, false).unwrap()
    };
    let g = h.create("/a").unwrap();
    g.write("memory.max", "256K").unwrap();
    {
        let _in_g = g.enter().unwrap();
        // Ten times the limit's worth: every refill past the limit reclaims,
        // and the shrinker frees into this thread's heap meanwhile.
        for _ in 0..5000 {
            match cache.alloc() {
                Ok(o) => shrinker.objects.lock().unwrap().push(o),
                Err(e) => {
                    assert_eq!(e.kind(), memcg::ErrorKind::Limit);
                    // A page-level charge also reclaims through the shrinker.
                    drop(KmemPages::alloc(4096));
                }
            }
        }
    }
    assert!(
        shrinker.freed.load(Relaxed) > 1000,
        "{}",
        shrinker.freed.load(Relaxed)
    );
    shrinker.objects.lock().unwrap().clear();
    memcg::slab::flush_thread_cache();
    drop(g);
    // Removal shrinks an isolated cache's empty slabs kept for reuse.
    h.remove("/a").unwrap();
    h.quiesce();
    assert_eq!(h.read("/", "memory.current").unwrap(), "0\n");
}

#[test]
fn a_shrinker_freeing_into_the_charging_threads_heap_shared_cache() {
    churn_at_the_limit(false);
}

#[test]
fn a_shrinker_freeing_into_the_charging_threads_heap_isolated_cache() {
    churn_at_the_limit(true);
}
