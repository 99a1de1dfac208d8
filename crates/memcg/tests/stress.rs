//! DESIGN.md §8: stress on real threads. Threads charge and free kmem and
//! user pages across groups while another thread creates and removes groups;
//! objects are freed on threads other than the ones that made them. Every
//! loop is bounded by an iteration count; at the end every counter must be
//! exactly 0 and nothing may be left behind.

use memcg::{ErrorKind, Group, Hierarchy, KmemPages, Leftovers, PageKind, UserPage, PAGE_SIZE};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Mutex;
use std::thread;

/// Spawn a test thread. Under `MemcgAlloc` (tests/under_memcg_alloc.rs)
/// whatever it allocates while in a group is charged there, so the
/// bookkeeping of a charged section (result vectors) is allocated before it
/// enters the group, for the exact numbers below to hold there too.
use std::thread::spawn;

/// A small xorshift generator: deterministic per thread, no dependencies.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

enum Obj {
    Kmem(KmemPages),
    Page(UserPage, PageKind),
}

const CHARGERS: usize = 4;
const CHARGER_ROUNDS: usize = 100_000;
/// Objects waiting in the shared pile for another thread to free them.
const PILE_MAX: usize = 512;
const CHURN_MIN: usize = 200;
const CHURN_MAX: usize = 20_000;
const TOPS: usize = 3;

/// State the threads share: handles of groups (live or removed) to charge
/// to, and a pile of objects that any thread may free.
struct Shared {
    h: Hierarchy,
    groups: Mutex<Vec<Group>>,
    pile: Mutex<Vec<Obj>>,
    chargers_done: AtomicUsize,
}

impl Shared {
    fn some_group(&self, rng: &mut Rng) -> Group {
        let groups = self.groups.lock().unwrap();
        groups[rng.below(groups.len())].clone()
    }

    /// Put `obj` on the pile, freeing (here) whatever was at its slot when
    /// the pile is full: mostly an object another thread made.
    fn put(&self, rng: &mut Rng, obj: Obj) {
        let mut pile = self.pile.lock().unwrap();
        if pile.len() < PILE_MAX {
            pile.push(obj);
            return;
        }
        let k = rng.below(pile.len());
        let old = std::mem::replace(&mut pile[k], obj);
        drop(pile);
        drop(old);
    }

    fn free_some(&self, rng: &mut Rng) {
        let taken: Vec<Obj> = {
            let mut pile = self.pile.lock().unwrap();
            let n = rng.below(8).min(pile.len());
            (0..n)
                .map(|_| {
                    let k = rng.below(pile.len());
                    pile.swap_remove(k)
                })
                .collect()
        };
        drop(taken);
    }
}

/// Charge kmem or a user page in the calling thread's group. A charge may
/// fail at a limit the churn thread set; anything else is a bug.
fn charge_here(rng: &mut Rng) -> Option<Obj> {
    let made = match rng.below(3) {
        0 => KmemPages::alloc(1 + rng.below(3 * PAGE_SIZE)).map(Obj::Kmem),
        1 => UserPage::charge(PageKind::Anon).map(|p| Obj::Page(p, PageKind::Anon)),
        _ => UserPage::charge(PageKind::File).map(|p| Obj::Page(p, PageKind::File)),
    };
    match made {
        Ok(obj) => Some(obj),
        Err(e) if e.kind() == ErrorKind::Limit => None,
        Err(e) => panic!("charge: {e}"),
    }
}

fn charger(shared: &Shared, seed: u64) {
    let mut rng = Rng::new(seed);
    for _ in 0..CHARGER_ROUNDS {
        match rng.below(4) {
            // Enter a group (fails if it was removed meanwhile) and charge there.
            0 | 1 => {
                let g = shared.some_group(&mut rng);
                let Ok(_inside) = g.enter() else {
                    assert!(g.is_removed(), "enter a live group");
                    continue;
                };
                for _ in 0..1 + rng.below(4) {
                    if let Some(obj) = charge_here(&mut rng) {
                        shared.put(&mut rng, obj);
                    }
                }
            }
            // Charge a group remotely; a removed one bills its live ancestor (S5).
            2 => {
                let g = shared.some_group(&mut rng);
                match KmemPages::alloc_for(&g, PAGE_SIZE * (1 + rng.below(2))) {
                    Ok(obj) => shared.put(&mut rng, Obj::Kmem(obj)),
                    Err(e) => assert_eq!(e.kind(), ErrorKind::Limit, "alloc_for: {e}"),
                }
            }
            _ => shared.free_some(&mut rng),
        }
    }
    shared.chargers_done.fetch_add(1, Relaxed);
}

/// Create and remove groups below the top-level ones until the chargers are
/// done (at least `CHURN_MIN`, at most `CHURN_MAX` rounds). Returns the paths
/// still live.
fn churn(shared: &Shared) -> Vec<String> {
    let mut rng = Rng::new(0xc4);
    let mut live: Vec<String> = Vec::new();
    for round in 0..CHURN_MAX {
        if round >= CHURN_MIN && shared.chargers_done.load(Relaxed) == CHARGERS {
            break;
        }
        match rng.below(6) {
            0 | 1 => {
                // A child of a top-level group, or of one of those children.
                let parent = if live.is_empty() || rng.below(2) == 0 {
                    format!("/t{}", rng.below(TOPS))
                } else {
                    live[rng.below(live.len())].clone()
                };
                if parent.matches('/').count() >= 3 {
                    continue;
                }
                let path = format!("{parent}/c{round}");
                match shared.h.create(&path) {
                    Ok(g) => {
                        if rng.below(4) == 0 {
                            let limit = if rng.below(2) == 0 {
                                "memory.max"
                            } else {
                                "memory.high"
                            };
                            g.write(limit, &format!("{}K", 4 * (8 + rng.below(64))))
                                .unwrap();
                        }
                        shared.groups.lock().unwrap().push(g);
                        live.push(path);
                    }
                    // The parent was removed meanwhile.
                    Err(e) => assert_eq!(e.kind(), ErrorKind::NotFound, "create {path}: {e}"),
                }
            }
            2 | 3 if !live.is_empty() => {
                // Busy while a charger is inside or it has children: retry later.
                let k = rng.below(live.len());
                match shared.h.remove(&live[k]) {
                    Ok(()) => {
                        live.swap_remove(k);
                    }
                    Err(e) => assert_eq!(e.kind(), ErrorKind::Busy, "remove {}: {e}", live[k]),
                }
            }
            4 => {
                // Forget some handles of removed groups, so they are freed (S1).
                shared
                    .groups
                    .lock()
                    .unwrap()
                    .retain(|g| !g.is_removed() || rng.below(4) == 0);
            }
            _ => {
                let path = format!("/t{}", rng.below(TOPS));
                match shared.h.write(&path, "memory.reclaim", "64K") {
                    Ok(()) => {}
                    Err(e) => assert_eq!(e.kind(), ErrorKind::Again, "reclaim {path}: {e}"),
                }
            }
        }
        thread::yield_now();
    }
    live
}

fn stat_key(stat: &str, key: &str) -> u64 {
    stat.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {key} in {stat}"))
        .parse()
        .unwrap()
}

/// Consistency (DESIGN.md §3), stocks drained: current == anon + file + kernel.
fn assert_consistent(h: &Hierarchy, path: &str) {
    let current: u64 = h
        .read(path, "memory.current")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stat = h.read(path, "memory.stat").unwrap();
    let parts = ["anon", "file", "kernel"].map(|k| stat_key(&stat, k));
    assert_eq!(current, parts.iter().sum::<u64>(), "{path}: {stat}");
}

fn assert_all_zero(h: &Hierarchy) {
    assert_eq!(h.read("/", "memory.current").unwrap(), "0\n");
    let stat = h.read("/", "memory.stat").unwrap();
    assert!(
        stat.lines().all(|l| l.ends_with(" 0")),
        "root memory.stat:\n{stat}"
    );
    assert_eq!(
        h.read("/", "cgroup.stat").unwrap(),
        "nr_descendants 0\nnr_dying_descendants 0\n"
    );
    assert_eq!(h.live_contexts(), 0, "kmem contexts left behind");
    assert_eq!(h.live_caches(), 0, "slab caches left behind");
    assert_eq!(h.leftovers(), Leftovers::default());
}

/// §8, S1, S2, S3, S5, S7: four threads charge kmem and user pages in groups
/// they enter and remotely, and free each other's objects, while groups
/// below them are created and removed and limits reclaim. Afterwards every
/// counter is exactly 0, no group is dying and no kmem context is left.
#[test]
fn counters_return_to_zero_after_charging_across_groups_under_churn() {
    let shared = Shared {
        h: Hierarchy::new(),
        groups: Mutex::new(Vec::new()),
        // Allocated here, in the root: the chargers push in groups.
        pile: Mutex::new(Vec::with_capacity(PILE_MAX)),
        chargers_done: AtomicUsize::new(0),
    };
    for t in 0..TOPS {
        let g = shared.h.create(&format!("/t{t}")).unwrap();
        shared.groups.lock().unwrap().push(g);
    }
    let live = thread::scope(|s| {
        for seed in 0..CHARGERS {
            let shared = &shared;
            thread::Builder::new()
                .name(format!("charger-{seed}"))
                .spawn_scoped(s, move || charger(shared, seed as u64 + 1))
                .unwrap();
        }
        s.spawn(|| churn(&shared)).join().unwrap()
    });
    let Shared {
        h, groups, pile, ..
    } = shared;
    // With the threads gone, the root bills exactly the objects still
    // alive (reclaim may have taken file pages), and its stats add up.
    h.quiesce();
    let mut alive = [0u64; 3];
    for obj in pile.lock().unwrap().iter() {
        match obj {
            Obj::Kmem(k) => alive[0] += k.pages() as u64,
            Obj::Page(p, PageKind::Anon) => alive[1] += u64::from(p.is_live()),
            Obj::Page(p, PageKind::File) => alive[2] += u64::from(p.is_live()),
        }
    }
    let stat = h.read("/", "memory.stat").unwrap();
    let page = PAGE_SIZE as u64;
    assert_eq!(
        ["kernel", "anon", "file"].map(|k| stat_key(&stat, k)),
        alive.map(|n| n * page)
    );
    assert_eq!(
        h.read("/", "memory.current").unwrap(),
        format!("{}\n", alive.iter().sum::<u64>() * page)
    );

    let mut paths = live;
    paths.extend((0..TOPS).map(|t| format!("/t{t}")));
    for p in &paths {
        assert_consistent(&h, p);
    }

    drop(pile);
    paths.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    for p in &paths {
        h.remove(p).unwrap();
    }
    drop(groups);
    h.quiesce();
    assert_all_zero(&h);
}

/// S5: one thread charges `/a/b` remotely, without pause, while the main
/// thread removes `/a/b`. Once removal returns, no charge lands on b: its
/// own `memory.current` and `kernel` never grow again, the charges go to
/// `/a`, and after the frees every counter is 0. The charger runs until
/// well after the removal, and the rounds go on until charges overlapped a
/// removal (a charge began before `remove` returned and ended after it
/// began) in at least `MIN_RACED` of them: the race the test is named for
/// must have happened, not merely been possible.
#[test]
fn no_charge_lands_on_a_group_after_its_removal() {
    const MIN_ROUNDS: usize = 16;
    const MAX_ROUNDS: usize = 2_000;
    const MIN_RACED: usize = 4;
    /// Charges before the removal starts, and at least as many after it.
    const SETTLE: usize = 300;
    const KEEP: usize = 64;
    let mut raced = 0;
    let mut rounds = 0;
    while rounds < MIN_ROUNDS || (raced < MIN_RACED && rounds < MAX_ROUNDS) {
        rounds += 1;
        let h = Hierarchy::new();
        let a = h.create("/a").unwrap();
        let b = h.create("/a/b").unwrap();
        let progress = AtomicUsize::new(0);
        // 0: not yet, 1: `remove` running, 2: `remove` returned.
        let removal = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let (kept, overlapped) = thread::scope(|s| {
            let charger = s.spawn(|| {
                let mut kept = VecDeque::new();
                let mut overlapped = 0;
                let mut i = 0;
                while !stop.load(Relaxed) {
                    let before = removal.load(SeqCst);
                    kept.push_back(KmemPages::alloc_for(&b, 4096).unwrap());
                    let after = removal.load(SeqCst);
                    overlapped += usize::from(before < 2 && after >= 1);
                    if kept.len() > KEEP {
                        kept.pop_front();
                    }
                    i += 1;
                    progress.store(i, Relaxed);
                }
                (kept, overlapped)
            });
            // Remove while the charger is well into its loop.
            while progress.load(Relaxed) < SETTLE {
                thread::yield_now();
            }
            removal.store(1, SeqCst);
            h.remove("/a/b").unwrap();
            removal.store(2, SeqCst);
            let at_removal = progress.load(Relaxed);
            let read = |file: &str, key: Option<&str>| -> u64 {
                let text = b.read(file).unwrap();
                match key {
                    None => text.trim().parse().unwrap(),
                    Some(k) => stat_key(&text, k),
                }
            };
            let current = read("memory.current", None);
            let kernel = read("memory.stat", Some("kernel"));
            // Keep charging through the removed group's context for a
            // while, checking b after each read.
            while progress.load(Relaxed) < at_removal + SETTLE {
                assert!(
                    read("memory.current", None) <= current,
                    "a charge landed on removed b"
                );
                assert!(
                    read("memory.stat", Some("kernel")) <= kernel,
                    "a charge landed on removed b"
                );
            }
            stop.store(true, Relaxed);
            let kept = charger.join().unwrap();
            assert!(read("memory.current", None) <= current);
            assert!(read("memory.stat", Some("kernel")) <= kernel);
            kept
        });
        raced += usize::from(overlapped > 0);
        h.quiesce();
        let billed = format!("{}\n", kept.len() * PAGE_SIZE);
        assert_eq!(
            a.read("memory.current").unwrap(),
            billed,
            "every live charge bills /a"
        );
        assert_eq!(h.read("/", "memory.current").unwrap(), billed);
        drop(kept);
        drop(b);
        h.quiesce();
        assert_eq!(a.read("memory.current").unwrap(), "0\n");
        assert_eq!(
            a.read("cgroup.stat").unwrap(),
            "nr_descendants 0\nnr_dying_descendants 0\n"
        );
        drop(a);
        h.remove("/a").unwrap();
        h.quiesce();
        assert_all_zero(&h);
    }
    assert!(
        raced >= MIN_RACED,
        "charges overlapped a removal in only {raced} of {rounds} rounds"
    );
}

/// S3, S9: the last free of a removed group's object hands its context to
/// the deferred worker thread, which destroys it on its own: with no
/// quiesce and no hierarchy operation to run the work, the context is
/// counted destroyed within a generous liveness bound.
#[test]
fn contexts_destroyed_by_the_deferred_worker_are_counted() {
    let h = Hierarchy::new();
    let a = h.create("/a").unwrap();
    let buffer = KmemPages::alloc_for(&a, 4096).unwrap();
    drop(a);
    h.remove("/a").unwrap();
    h.quiesce();
    assert_eq!(h.live_contexts(), 1, "the buffer keeps /a's context");
    assert_eq!(h.destroyed_contexts(), 0);
    // The last reference: the context is queued and the worker woken. Only
    // the worker may run this hierarchy's deferred work from here on: the
    // loop reads counters and nothing else.
    drop(buffer);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while h.destroyed_contexts() == 0 && std::time::Instant::now() < deadline {
        thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(
        (h.live_contexts(), h.destroyed_contexts()),
        (0, 1),
        "the deferred worker did not destroy the context within 10 s"
    );
    h.quiesce();
    assert_eq!((h.live_contexts(), h.destroyed_contexts()), (0, 1));
}

/// A thread's charge stock goes back when the thread exits (stock.rs, task.rs),
/// also for a thread that only charged remotely and never attached to a
/// group: otherwise the exited thread's pre-charged pages stay billed to the
/// group until some quiesce, and its stock slot is never reused.
#[test]
fn an_exited_remote_charger_hands_back_its_stock() {
    let h = Hierarchy::new();
    let a = h.create("/a").unwrap();
    let a2 = a.clone();
    spawn(move || drop(KmemPages::alloc_for(&a2, 4096).unwrap()))
        .join()
        .unwrap();
    // No quiesce: the thread and everything it charged are gone.
    assert_eq!(a.read("memory.current").unwrap(), "0\n");
}

/// The control for the test above: a thread that attached hands its stock
/// back at exit.
#[test]
fn an_exited_attached_charger_hands_back_its_stock() {
    let h = Hierarchy::new();
    let a = h.create("/a").unwrap();
    let a2 = a.clone();
    spawn(move || {
        let _inside = a2.enter().unwrap();
        drop(KmemPages::alloc_for(&a2, 4096).unwrap());
    })
    .join()
    .unwrap();
    assert_eq!(a.read("memory.current").unwrap(), "0\n");
}
