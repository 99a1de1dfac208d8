//! Random allocation and removal sequences (DESIGN.md §8, S1, S2, S4, S11):
//! bytes decode to operations on a small hierarchy — create and remove
//! groups, enter and leave them, allocate and free kmem pages and objects
//! of a shared and an isolated slab cache (freed here or on another
//! thread), write `memory.max`. At the end everything is freed and every
//! group removed: after a quiesce every counter of the root is 0 and no
//! group is left dying.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use memcg::{EnterGuard, Hierarchy, KmemPages, SlabCache, SlabObject};

/// The groups an input may name, parents before children.
const PATHS: [&str; 6] = ["/a", "/b", "/a/x", "/a/y", "/b/z", "/a/x/q"];
/// The `memory.max` values an input may write.
const LIMITS: [&str; 6] = ["0", "4K", "8K", "64K", "1M", "max"];
/// Bounds that keep one input fast and small.
const MAX_OPS: usize = 512;
const MAX_LIVE: usize = 4096;

/// LeakSanitizer suppressions. A shared slab's object vector is malloc'd
/// and parked in the slab's span header for the span's next use, by design
/// never freed; the header is mmap'd memory, which LeakSanitizer does not
/// scan, so it would report every vector as leaked.
#[no_mangle]
pub extern "C" fn __lsan_default_suppressions() -> *const std::ffi::c_char {
    c"leak:reserve_objcgs\n".as_ptr()
}

/// The caches, made once: root caches are process-wide.
fn caches() -> &'static [SlabCache; 3] {
    static CACHES: OnceLock<[SlabCache; 3]> = OnceLock::new();
    CACHES.get_or_init(|| {
        [
            SlabCache::new("fuzz-64", 64, false).expect("cache"),
            SlabCache::new("fuzz-192r", 192, true).expect("cache"),
            SlabCache::isolated("fuzz-iso-96", 96, false).expect("cache"),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let hierarchy = Hierarchy::new();
    let mut guard: Option<EnterGuard> = None;
    let mut kmem: Vec<KmemPages> = Vec::new();
    let mut objects: Vec<SlabObject> = Vec::new();
    for op in data.chunks_exact(2).take(MAX_OPS) {
        let (code, arg) = (op[0] % 11, usize::from(op[1]));
        let path = PATHS[arg % PATHS.len()];
        match code {
            0 => drop(hierarchy.create(path)),
            1 => drop(hierarchy.remove(path)),
            2 => {
                guard = None;
                if let Ok(group) = hierarchy.get(path) {
                    guard = group.enter().ok();
                }
            }
            3 => guard = None,
            4 if kmem.len() < MAX_LIVE => {
                if let Ok(pages) = KmemPages::alloc(1 + arg % 3 * 4096 + arg) {
                    kmem.push(pages);
                }
            }
            5 if !kmem.is_empty() => drop(kmem.swap_remove(arg % kmem.len())),
            6 if objects.len() < MAX_LIVE => {
                let cache = &caches()[arg % 3];
                for _ in 0..1 + arg % 16 {
                    match cache.alloc() {
                        Ok(object) => objects.push(object),
                        Err(_) => break,
                    }
                }
            }
            7 if !objects.is_empty() => drop(objects.swap_remove(arg % objects.len())),
            8 => {
                drop(hierarchy.write(path, "memory.max", LIMITS[arg / PATHS.len() % LIMITS.len()]))
            }
            9 if !objects.is_empty() => {
                // A remote free: another thread frees the object.
                let object = objects.swap_remove(arg % objects.len());
                std::thread::spawn(move || drop(object))
                    .join()
                    .expect("free");
            }
            10 => hierarchy.quiesce(),
            _ => {}
        }
    }
    drop(guard);
    drop(kmem);
    drop(objects);
    for path in PATHS.iter().rev() {
        match hierarchy.remove(path) {
            Ok(()) => {}
            Err(error) => assert_eq!(error.kind(), memcg::ErrorKind::NotFound, "{path}: {error}"),
        }
    }
    hierarchy.quiesce();
    assert_eq!(hierarchy.read("/", "memory.current").expect("root"), "0\n");
    let stat = hierarchy.read("/", "memory.stat").expect("root");
    for line in stat.lines() {
        assert!(
            line.ends_with(" 0"),
            "memory.stat of / after freeing all: {stat}"
        );
    }
    assert_eq!(
        hierarchy.read("/", "cgroup.stat").expect("root"),
        "nr_descendants 0\nnr_dying_descendants 0\n"
    );
});
