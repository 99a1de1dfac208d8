//! DESIGN.md §6 layer 6 with a real `#[global_allocator]`: every allocation of
//! std collections on a thread in a group is charged there (S10 for the
//! root), frees come from any thread, removal leaves live allocations usable
//! (S1, S2), and at the end every counter is exactly 0.

use memcg::{global, Hierarchy, LimitPolicy, MemcgAlloc};
use std::collections::HashMap;
use std::sync::{mpsc, Arc};
use std::thread;

#[global_allocator]
static A: MemcgAlloc = MemcgAlloc;

fn current(h: &Hierarchy, path: &str) -> u64 {
    h.quiesce();
    h.read(path, "memory.current")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn stat(h: &Hierarchy, path: &str, key: &str) -> u64 {
    h.quiesce();
    h.read(path, "memory.stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
        .unwrap()
}

/// Every test uses its own subtree of the global hierarchy, removed at the
/// end; the root's totals are checked only by the last one to finish, so
/// tests compare their subtree.
fn subtree(name: &str) -> memcg::Group {
    global().create(&format!("/{name}")).unwrap()
}

fn remove_all(prefix: &str, children: &[&str]) {
    let h = global();
    for c in children {
        h.remove(&format!("/{prefix}/{c}")).unwrap();
    }
    h.quiesce();
}

/// Vec, String, HashMap, Arc and channels in several groups, freed across
/// threads; the groups' totals match what their threads hold, and return to
/// 0 when all is freed and the groups removed.
#[test]
fn std_collections_are_charged_to_the_threads_group() {
    let top = subtree("std");
    let h = global();
    let names = ["a", "b", "c"];
    let (tx, rx) = mpsc::channel::<(usize, Vec<String>, HashMap<u64, Vec<u8>>, Arc<[u8]>)>();
    let makers: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let g = h.create(&format!("/std/{n}")).unwrap();
            let tx = tx.clone();
            thread::spawn(move || {
                let _in = g.enter().unwrap();
                for round in 0..50 {
                    let strings: Vec<String> =
                        (0..100).map(|k| format!("{i}-{round}-{k}")).collect();
                    let map: HashMap<u64, Vec<u8>> =
                        (0..100).map(|k| (k, vec![i as u8; 1000])).collect();
                    let shared: Arc<[u8]> = vec![7u8; 20_000].into();
                    tx.send((i, strings, map, shared)).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let mut kept = Vec::new();
    let mut seen = [0usize; 3];
    for item in rx {
        // Every other item of each group: kept, freed later on another
        // thread; the rest freed here, on this one.
        seen[item.0] += 1;
        if seen[item.0] % 2 == 0 {
            kept.push(item);
        }
    }
    for m in makers {
        m.join().unwrap();
    }
    for n in names {
        let path = format!("/std/{n}");
        assert!(
            current(h, &path) > 25 * (100 * 1000 + 20_000) as u64,
            "{path} holds half of what it made"
        );
        assert_eq!(
            current(h, &path),
            stat(h, &path, "anon") + stat(h, &path, "file") + stat(h, &path, "kernel")
        );
    }
    assert!(current(h, "/std") >= 3 * 25 * 120_000);
    thread::spawn(move || drop(kept)).join().unwrap();
    remove_all("std", &names);
    assert_eq!(
        current(h, "/std"),
        0,
        "everything freed, groups removed: /std back to 0"
    );
    drop(top);
    h.remove("/std").unwrap();
}

/// S1, S2: a removed group's allocations stay usable; their frees uncharge
/// the parent.
#[test]
fn allocations_outlive_their_removed_group() {
    let _top = subtree("outlive");
    let h = global();
    let g = h.create("/outlive/job").unwrap();
    let data: Vec<Vec<u64>> = thread::spawn(move || {
        let _in = g.enter().unwrap();
        (0..100).map(|i| vec![i; 1000]).collect()
    })
    .join()
    .unwrap();
    h.remove("/outlive/job").unwrap();
    assert!(current(h, "/outlive") >= 100 * 8000);
    assert_eq!(
        h.read("/outlive", "cgroup.stat").unwrap(),
        "nr_descendants 0\nnr_dying_descendants 0\n"
    );
    assert_eq!(data[42][999], 42);
    drop(data);
    assert_eq!(current(h, "/outlive"), 0);
    h.remove("/outlive").unwrap();
}

/// A thread that exits hands its slabs and stock back: its group can be
/// removed and reads 0 once its objects are freed.
#[test]
fn thread_exit_hands_everything_back() {
    let _top = subtree("exit");
    let h = global();
    let g = h.create("/exit/t").unwrap();
    let kept = thread::spawn(move || {
        g.attach().unwrap();
        let v: Vec<Box<[u8; 100]>> = (0..1000).map(|_| Box::new([1; 100])).collect();
        v
    })
    .join()
    .unwrap();
    assert_eq!(h.read("/exit/t", "cgroup.procs").unwrap(), "");
    drop(kept);
    h.remove("/exit/t").unwrap();
    assert_eq!(current(h, "/exit"), 0);
    h.remove("/exit").unwrap();
}

/// At memory.max the global allocator overcharges by default (counting
/// events), and a group's `allocator()` fails instead.
#[test]
fn limits_overcharge_globally_and_fail_through_group_allocators() {
    assert_eq!(memcg::limit_policy(), LimitPolicy::Overcharge);
    let _top = subtree("limits");
    let h = global();
    let g = h.create("/limits/g").unwrap();
    g.write("memory.max", "256K").unwrap();
    let g2 = g.clone();
    let big = thread::spawn(move || {
        let _in = g2.enter().unwrap();
        vec![1u8; 1024 * 1024]
    })
    .join()
    .unwrap();
    assert!(current(h, "/limits/g") >= 1024 * 1024, "overcharged");
    // The one allocation over the limit hit it once and failed reclaim once:
    // exactly one `max` and one `oom`, counted on whole lines (`max 1` is
    // not `max 10`).
    let events = h.read("/limits/g", "memory.events").unwrap();
    let count = |key: &str| -> Vec<&str> {
        events
            .lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .collect()
    };
    assert_eq!(
        (count("max"), count("oom")),
        (vec!["1"], vec!["1"]),
        "{events}"
    );
    drop(big);
    let mut v = allocator_api2::vec::Vec::new_in(g.allocator());
    v.extend_from_slice(&[0u8; 128 * 1024]);
    assert!(
        v.try_reserve_exact(256 * 1024).is_err(),
        "a hard limit for the allocator"
    );
    let mut map = hashbrown::HashMap::new_in(g.allocator());
    for i in 0..100u32 {
        map.insert(i, i);
    }
    assert!(current(h, "/limits/g") >= 128 * 1024);
    assert!(current(h, "/limits/g") <= 256 * 1024);
    drop((v, map));
    drop(g);
    // This thread's handle heap still owns a slab per size class it used
    // through g's allocator; hand them back (thread exit would too).
    memcg::slab::flush_thread_cache();
    h.remove("/limits/g").unwrap();
    assert_eq!(current(h, "/limits"), 0);
    h.remove("/limits").unwrap();
}

/// Realloc in place where the block fits; every alignment honoured.
#[test]
fn realloc_and_alignment() {
    use std::alloc::{GlobalAlloc, Layout};
    for align in [1, 8, 16, 32, 64, 128, 4096, 8192, 65536] {
        for size in [1, 24, 100, 4096, 10_000, 100_000] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a valid non-zero layout; freed with the same layout.
            unsafe {
                let p = A.alloc(layout);
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "size {size} align {align}");
                p.write_bytes(0xAB, size);
                A.dealloc(p, layout);
            }
        }
    }
    let mut v: Vec<u8> = Vec::with_capacity(100);
    let before = v.as_ptr();
    v.reserve_exact(110); // same 112-byte class
    assert_eq!(v.as_ptr(), before);
}

/// The allocator works in thread-local destructors, after the thread's own
/// exit hooks may have run: allocations there are served without leaving
/// slabs owned by the dying thread, and the group still drains to 0.
#[test]
fn thread_local_destructors_can_allocate() {
    struct AllocatesOnDrop(Vec<u8>);
    impl Drop for AllocatesOnDrop {
        fn drop(&mut self) {
            let s: String = (0..100)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            let v: Vec<Box<u64>> = (0..100).map(Box::new).collect();
            assert_eq!(s.len() + v.len() + self.0.len(), 100 + 100 + 4096);
        }
    }
    thread_local! {
        static LATE: std::cell::RefCell<Option<AllocatesOnDrop>> = const { std::cell::RefCell::new(None) };
    }
    let _top = subtree("tls");
    let h = global();
    let g = h.create("/tls/t").unwrap();
    thread::spawn(move || {
        g.attach().unwrap();
        LATE.with(|l| *l.borrow_mut() = Some(AllocatesOnDrop(vec![3; 4096])));
    })
    .join()
    .unwrap();
    h.remove("/tls/t").unwrap();
    assert_eq!(current(h, "/tls"), 0);
    h.remove("/tls").unwrap();
}
