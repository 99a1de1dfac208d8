//! The drain handshake of object stocks under load (issue 17 item 4,
//! DESIGN.md §8): drains race busy owners' fast paths, and whenever the
//! owners stop, one more drain leaves every counter exact.

use memcg::{Hierarchy, SlabCache};
use std::thread;

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

/// The drain handshake under load: two threads allocate and free through a
/// shared cache in a group while the main thread drains their stocks again
/// and again (quiesce), racing their fast paths; the owners settle what
/// they used of drained bytes at their next slow path. The threads stop
/// every few thousand operations, and then one quiesce makes every counter
/// exact: `slab` is the bytes of the live objects, `memory.current` and
/// `kernel` those bytes rounded up to a page — with the owners idle, the
/// drain itself charges what they used of bytes an earlier drain returned
/// (without that, `memory.current` stays below the live bytes until the
/// owner's next slow path, which an idle thread never takes). The run
/// goes on until an owner was seen using drained bytes (the race), within
/// a bound on the phases, never on time.
#[test]
fn drains_racing_busy_owners_keep_counters_exact() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
    use std::sync::{Arc, Barrier};
    const OWNERS: usize = 2;
    const ROUNDS: usize = 4000;
    let h = Hierarchy::new();
    let g = h.create("/busy").unwrap();
    let cache = SlabCache::new("drain-race-busy", 100, false).unwrap();
    // What one object is charged (S11): its slot; under `hardened` every
    // shared slab keeps an object vector, so its 8-byte entry too.
    let slot = cache.slot_size() + if cfg!(feature = "hardened") { 8 } else { 0 };
    let stop = Arc::new(AtomicBool::new(false));
    let paused = Arc::new(AtomicUsize::new(0));
    let live_bytes = Arc::new(AtomicUsize::new(0));
    // Owners wait at `pause` once the main thread saw them all stopped, and
    // at `resume` while it checks.
    let pause = Arc::new(Barrier::new(OWNERS + 1));
    let resume = Arc::new(Barrier::new(OWNERS + 1));
    let owners: Vec<_> = (0..OWNERS as u64)
        .map(|seed| {
            let (g, stop, paused, live_bytes) =
                (g.clone(), stop.clone(), paused.clone(), live_bytes.clone());
            let (pause, resume) = (pause.clone(), resume.clone());
            thread::spawn(move || {
                let _in = g.enter().unwrap();
                let mut live = Vec::with_capacity(4096);
                let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ seed;
                while !stop.load(Acquire) {
                    for _ in 0..ROUNDS {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        if live.len() < 2000 && (!x.is_multiple_of(3) || live.is_empty()) {
                            live.push(cache.alloc_raw().unwrap());
                            live_bytes.fetch_add(slot, Relaxed);
                        } else {
                            let p = live.swap_remove((x as usize / 3) % live.len());
                            live_bytes.fetch_sub(slot, Relaxed);
                            // SAFETY: from alloc_raw, freed once.
                            unsafe { SlabCache::free_raw(p) };
                        }
                    }
                    paused.fetch_add(1, Release);
                    pause.wait();
                    resume.wait();
                }
                for p in live {
                    // SAFETY: from alloc_raw, freed once.
                    unsafe { SlabCache::free_raw(p) };
                }
            })
        })
        .collect();
    let (took0, settled0) = memcg::slab::remote_drain_counts();
    let mut phases = 0;
    let mut drains = 0;
    loop {
        // Drain while the owners run.
        while paused.load(Acquire) < OWNERS {
            h.quiesce();
            drains += 1;
        }
        pause.wait();
        paused.store(0, Relaxed);
        phases += 1;
        // The owners are idle: one drain makes every counter exact.
        h.quiesce();
        let live = live_bytes.load(Relaxed) as u64;
        let at = format!("phase {phases}, {drains} drains");
        assert_eq!(stat(&h, "/busy", "slab"), live, "slab at {at}");
        assert_eq!(
            current(&h, "/busy"),
            live.next_multiple_of(4096),
            "memory.current at {at}"
        );
        assert_eq!(stat(&h, "/busy", "kernel"), live.next_multiple_of(4096));
        let raced = memcg::slab::remote_drain_counts().1 > settled0;
        let done = (raced && phases >= 20) || phases == 5000;
        stop.store(done, Release);
        resume.wait();
        if done {
            break;
        }
    }
    for o in owners {
        o.join().unwrap();
    }
    let (took, settled) = memcg::slab::remote_drain_counts();
    eprintln!(
        "{phases} phases, {drains} drains: {} settled a budget, {} owners settled drained bytes",
        took - took0,
        settled - settled0
    );
    assert!(took > took0, "no drain settled a busy owner's budget");
    assert!(
        settled > settled0,
        "no owner ever used drained bytes before settling: the race never happened"
    );
    h.quiesce();
    assert_eq!(current(&h, "/busy"), 0);
    assert_eq!(stat(&h, "/busy", "slab"), 0);
    assert_eq!(stat(&h, "/busy", "kernel"), 0);
}
