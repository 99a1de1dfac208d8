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

use memcg::{global, ErrorKind, Group, KmemPages, Leftovers, MemcgAlloc, SlabCache, SlabObject};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Mutex};
use std::thread;

/// Both tests check the whole global hierarchy at their end: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

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
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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

/// A small xorshift generator: deterministic per thread, no allocation.
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

/// What a charger makes in a group, through the three paths of §8.
#[allow(dead_code)] // held for their charges, not read
enum Made {
    /// Through `MemcgAlloc`: small objects and blocks over 8 KiB.
    Heap(Vec<u8>),
    Boxed(Box<[u64; 6]>),
    Slab(SlabObject),
    Kmem(KmemPages),
}

const MIX_CHARGERS: usize = 3;
const MIX_ROUNDS: usize = 20_000;
const MIX_PILE: usize = 256;

/// What the mixed stress's threads share. Its vectors are allocated by the
/// test thread, in the root, before any charger runs.
struct Mix {
    groups: Mutex<Vec<Group>>,
    pile: Mutex<Vec<Made>>,
    cache: SlabCache,
    done: AtomicBool,
    /// Objects made in a group below `/mix`, and groups removed.
    made_below: AtomicUsize,
    removed: AtomicUsize,
}

impl Mix {
    /// Keep `made` on the pile, freeing here what it replaces: mostly
    /// another thread's object, charged to another (perhaps removed) group.
    fn keep(&self, rng: &mut Rng, made: Made) {
        let mut pile = self.pile.lock().unwrap();
        if pile.len() < MIX_PILE {
            pile.push(made);
            return;
        }
        let k = rng.below(MIX_PILE);
        let old = std::mem::replace(&mut pile[k], made);
        drop(pile);
        drop(old);
    }
}

/// Make one object in the calling thread's group. A slab object or kmem
/// pages may fail at a limit; `MemcgAlloc` overcharges (its default).
fn make(mix: &Mix, rng: &mut Rng) -> Option<Made> {
    let made = match rng.below(5) {
        0 => Ok(Made::Heap(vec![7u8; 1 + rng.below(256)])),
        1 => Ok(Made::Heap(vec![8u8; 8192 + rng.below(12 << 10)])),
        2 => Ok(Made::Boxed(Box::new([rng.below(100) as u64; 6]))),
        3 => mix.cache.alloc().map(Made::Slab),
        _ => KmemPages::alloc(1 + rng.below(2 * 4096)).map(Made::Kmem),
    };
    match made {
        Ok(m) => Some(m),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::Limit, "{e}");
            None
        }
    }
}

fn mix_charger(mix: &Mix, seed: u64) {
    let mut rng = Rng::new(seed);
    for _ in 0..MIX_ROUNDS {
        let g = {
            let groups = mix.groups.lock().unwrap();
            groups[rng.below(groups.len())].clone()
        };
        let Ok(inside) = g.enter() else {
            assert!(g.is_removed(), "enter a live group");
            continue;
        };
        for _ in 0..1 + rng.below(4) {
            if let Some(made) = make(mix, &mut rng) {
                if g.path() != "/mix" {
                    mix.made_below.fetch_add(1, Relaxed);
                }
                if rng.below(3) == 0 {
                    drop(made);
                } else {
                    mix.keep(&mut rng, made);
                }
            }
        }
        drop(inside);
        drop(g);
    }
}

/// Create and remove groups under `/mix` (two levels), now and then with a
/// limit, until the chargers are done. Returns the paths still live.
fn mix_churn(mix: &Mix) -> Vec<String> {
    let h = global();
    let mut rng = Rng::new(0x5eed);
    let mut live: Vec<String> = Vec::new();
    let mut round = 0;
    while !mix.done.load(Relaxed) {
        round += 1;
        match rng.below(5) {
            0 | 1 => {
                let parent = match live.iter().filter(|p| p.matches('/').count() == 2).count() {
                    0 => "/mix".to_string(),
                    _ if rng.below(2) == 0 => "/mix".to_string(),
                    _ => live[rng.below(live.len())].clone(),
                };
                if parent.matches('/').count() > 2 {
                    continue;
                }
                let path = format!("{parent}/g{round}");
                match h.create(&path) {
                    Ok(g) => {
                        if rng.below(4) == 0 {
                            let file = ["memory.max", "memory.high"][rng.below(2)];
                            g.write(file, &format!("{}K", 64 + 16 * rng.below(32)))
                                .unwrap();
                        }
                        mix.groups.lock().unwrap().push(g);
                        live.push(path);
                    }
                    Err(e) => assert_eq!(e.kind(), ErrorKind::NotFound, "create {path}: {e}"),
                }
            }
            2 | 3 if !live.is_empty() => {
                let k = rng.below(live.len());
                match h.remove(&live[k]) {
                    Ok(()) => {
                        live.swap_remove(k);
                        mix.removed.fetch_add(1, Relaxed);
                    }
                    Err(e) => assert_eq!(e.kind(), ErrorKind::Busy, "remove {}: {e}", live[k]),
                }
            }
            _ => {
                // Forget some handles of removed groups, so they are freed (S1).
                let mut groups = mix.groups.lock().unwrap();
                let mut k = 0;
                groups.retain(|g| {
                    k += 1;
                    k == 1 || !g.is_removed() || rng.below(2) == 0
                });
            }
        }
        thread::yield_now();
    }
    live
}

fn stat_is_zero(path: &str) {
    let h = global();
    assert_eq!(h.read(path, "memory.current").unwrap(), "0\n", "{path}");
    for line in h.read(path, "memory.stat").unwrap().lines() {
        assert!(line.ends_with(" 0"), "{path} memory.stat not at 0: {line}");
    }
}

/// DESIGN.md §8 stress: charged threads allocate through `MemcgAlloc`
/// (small objects and large blocks), from a shared slab cache and as kmem
/// pages, in groups that another thread creates, limits and removes
/// meanwhile; objects are freed on other threads, in other (often removed)
/// groups. At the end, everything freed and the threads gone, every counter
/// of every group left is exactly 0, then with the groups removed nothing is
/// left: no dying group, no kmem context beyond the online groups', no
/// dead cache, and the root's counters are 0.
#[test]
fn memcg_alloc_slab_and_kmem_across_churning_groups_end_at_zero() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let h = global();
    let top = h.create("/mix").unwrap();
    let mix = Mix {
        groups: Mutex::new(Vec::with_capacity(4096)),
        pile: Mutex::new(Vec::with_capacity(MIX_PILE)),
        cache: SlabCache::new("churn-mix", 96, false).unwrap(),
        done: AtomicBool::new(false),
        made_below: AtomicUsize::new(0),
        removed: AtomicUsize::new(0),
    };
    mix.groups.lock().unwrap().push(top.clone());
    let live = thread::scope(|s| {
        let churn = s.spawn(|| mix_churn(&mix));
        let chargers: Vec<_> = (0..MIX_CHARGERS)
            .map(|n| {
                let mix = &mix;
                s.spawn(move || mix_charger(mix, n as u64 + 1))
            })
            .collect();
        for c in chargers {
            c.join().unwrap();
        }
        mix.done.store(true, Relaxed);
        churn.join().unwrap()
    });
    let Mix {
        groups,
        pile,
        made_below,
        removed,
        ..
    } = mix;
    // The churn happened under the charges.
    assert!(made_below.into_inner() > 0, "nothing was made below /mix");
    assert!(removed.into_inner() > 0, "no group was removed");
    drop(pile);
    h.quiesce();
    let mut paths = live;
    paths.push("/mix".into());
    paths.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    for p in &paths {
        stat_is_zero(p);
    }
    drop(groups);
    drop(top);
    h.quiesce();
    assert_eq!(
        h.read("/mix", "cgroup.stat").unwrap(),
        format!(
            "nr_descendants {}\nnr_dying_descendants 0\n",
            paths.len() - 1
        )
    );
    assert_eq!(
        h.live_contexts(),
        h.paths().len() - 1,
        "one context per online group"
    );
    for p in &paths {
        h.remove(p).unwrap();
    }
    h.quiesce();
    assert_eq!(h.leftovers(), Leftovers::default());
    assert_eq!(
        h.live_contexts(),
        h.paths().len() - 1,
        "one context per online group"
    );
    assert_eq!(h.paths(), vec!["/".to_string()]);
    stat_is_zero("/");
    assert_eq!(
        h.read("/", "cgroup.stat").unwrap(),
        "nr_descendants 0\nnr_dying_descendants 0\n"
    );
}
