//! DESIGN.md §8 stress through the path programs take: `MemcgAlloc` as the
//! global allocator, several threads that each create a group, enter it,
//! allocate small objects and blocks over 8 KiB, leave, and remove the group
//! while some of what they made lives on; the survivors are freed later, on
//! another thread. Kmem contexts then die from frees racing with removals
//! and with the deferred worker (S1, S2, S9), which is where a context used
//! to be read after it was queued for destruction (issue 8).
//!
//! Bounded rounds (`MEMCG_CHURN_ROUNDS` overrides the default); at the end
//! every counter is exactly 0 and no context, cache or group is left.

use memcg::{global, Leftovers, MemcgAlloc};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static A: MemcgAlloc = MemcgAlloc;

const CHURNERS: usize = 3;
const STRINGS: usize = 2_000;
const KEEP_EVERY: usize = 50;

fn rounds() -> usize {
    std::env::var("MEMCG_CHURN_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

/// What a round leaves alive past its group's removal.
struct Survivors {
    strings: Vec<String>,
    block: Vec<u8>,
}

/// One round in group `path`: the workload of the bug report, plus a block
/// over 8 KiB that survives.
fn round(path: &str) -> Survivors {
    let h = global();
    let g = h.create(path).unwrap();
    let survivors = {
        let _in = g.enter().unwrap();
        let mut strings = Vec::new();
        for k in 0..STRINGS {
            let s = format!("{path}:{k}");
            if k % KEEP_EVERY == 0 {
                strings.push(s);
            } else {
                black_box(s);
            }
        }
        black_box(vec![1u8; 256 << 10]);
        Survivors {
            strings,
            block: vec![2u8; 12 << 10],
        }
    };
    drop(g);
    h.remove(path).unwrap();
    survivors
}

#[test]
fn groups_churned_on_threads_through_memcg_alloc_end_at_zero() {
    let h = global();
    let rounds = rounds();
    let (tx, rx) = mpsc::channel::<Survivors>();
    // Frees what other threads' removed groups left, in arrival order.
    let freer = thread::spawn(move || {
        let mut freed = 0;
        for s in rx {
            assert!(s.strings.iter().all(|x| x.contains(':')));
            assert!(s.block.iter().all(|&b| b == 2));
            freed += 1;
        }
        freed
    });
    static OUTLIVED: AtomicUsize = AtomicUsize::new(0);
    // Joined one by one (not scoped): a join returns once the thread's
    // exit hooks, which drain its stocks, have run.
    let churners: Vec<_> = (0..CHURNERS)
        .map(|n| {
            let tx = tx.clone();
            thread::spawn(move || {
                for i in 0..rounds {
                    let s = round(&format!("/churn{n}-{i}"));
                    // Now and then free on this thread instead: the last
                    // uncharge then races with the others' removals here.
                    if i % 4 == 3 {
                        drop(s);
                    } else {
                        tx.send(s).unwrap();
                    }
                    if h.leftovers().dead_contexts > 0 {
                        OUTLIVED.fetch_add(1, Relaxed);
                    }
                }
            })
        })
        .collect();
    for c in churners {
        c.join().unwrap();
    }
    drop(tx);
    let freed = freer.join().unwrap();
    assert_eq!(freed, CHURNERS * rounds - CHURNERS * (rounds / 4));
    // The race this test is for happened: contexts outlived their groups
    // and died from frees on other threads.
    assert!(OUTLIVED.load(Relaxed) > 0, "no context outlived its group");
    h.quiesce();
    assert_eq!(
        h.leftovers(),
        Leftovers::default(),
        "every removed group's context died with its last object"
    );
    assert_eq!(h.live_contexts(), 0);
    assert_eq!(h.live_caches(), 0);
    assert!(h.destroyed_contexts() >= CHURNERS * rounds);
    assert_eq!(h.read("/", "memory.current").unwrap(), "0\n");
    for line in h.read("/", "memory.stat").unwrap().lines() {
        assert!(line.ends_with(" 0"), "memory.stat not at 0: {line}");
    }
    assert_eq!(
        h.read("/", "cgroup.stat").unwrap(),
        "nr_descendants 0\nnr_dying_descendants 0\n"
    );
}
