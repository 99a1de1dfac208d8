//! DESIGN.md §3, one test (or more) per semantic, on real threads.

use memcg::{ErrorKind, Hierarchy, KmemPages, PageKind, UserPage};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;

/// Spawn a test thread. Under `MemcgAlloc` (tests/under_memcg_alloc.rs)
/// whatever it allocates while in a group is charged there, so the
/// bookkeeping of a charged section (result vectors) is allocated before it
/// enters the group, for the exact numbers below to hold there too.
use std::thread::spawn;

fn current(h: &Hierarchy, path: &str) -> u64 {
    h.quiesce();
    h.read(path, "memory.current")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn key(h: &Hierarchy, path: &str, file: &str, key: &str) -> u64 {
    h.quiesce();
    let text = h.read(path, file).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{path} {file} has no key {key}: {text}"))
        .parse()
        .unwrap()
}

/// Allocate `n` kmem buffers of one page on a thread attached to `path`,
/// then end the thread (so the group has no task).
fn kmem_on_task(h: &Hierarchy, path: &str, n: usize) -> Vec<KmemPages> {
    let g = h.get(path).unwrap();
    spawn(move || {
        let mut v = Vec::with_capacity(n);
        g.attach().unwrap();
        v.extend((0..n).map(|_| KmemPages::alloc(4096).unwrap()));
        memcg::detach();
        v
    })
    .join()
    .unwrap()
}

fn user_pages_on_task(h: &Hierarchy, path: &str, kind: PageKind, n: usize) -> Vec<UserPage> {
    let g = h.get(path).unwrap();
    spawn(move || {
        let mut v = Vec::with_capacity(n);
        let _in = g.enter().unwrap();
        v.extend((0..n).map(|_| UserPage::charge(kind).unwrap()));
        v
    })
    .join()
    .unwrap()
}

/// S1: removing a group whose kmem objects live does not keep it alive:
/// with no handle left it is not dying but gone (no dying descendant
/// anywhere, no dying group left over), while its 100 objects are still
/// alive and billed to the parent, and only its kmem context stays behind
/// (S3).
#[test]
fn removed_group_is_freed_while_objects_live() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    h.create("/a/b").unwrap();
    let mut objects = kmem_on_task(&h, "/a/b", 100);
    h.remove("/a/b").unwrap();
    h.quiesce();
    assert_eq!(key(&h, "/a", "cgroup.stat", "nr_dying_descendants"), 0);
    assert_eq!(key(&h, "/", "cgroup.stat", "nr_dying_descendants"), 0);
    let left = h.leftovers();
    assert_eq!(
        (left.dying_groups, left.dead_contexts, left.pinned_bytes),
        (0, 1, memcg::context_size()),
        "b is freed; only its context stays: {left:?}"
    );
    assert_eq!(h.get("/a/b").unwrap_err().kind(), ErrorKind::NotFound);
    // The objects live on, charged to the parent, and their memory is theirs.
    assert_eq!(current(&h, "/a"), 100 * 4096);
    assert_eq!(key(&h, "/a", "memory.stat", "kernel"), 100 * 4096);
    for (k, o) in objects.iter_mut().enumerate() {
        o.as_mut_slice().fill(k as u8);
    }
    assert!(objects
        .iter()
        .enumerate()
        .all(|(k, o)| o.as_slice().iter().all(|&b| b == k as u8)));
    drop(objects);
    h.quiesce();
    assert_eq!(current(&h, "/a"), 0);
    assert_eq!(h.leftovers(), memcg::Leftovers::default());
}

/// S1: a handle keeps a removed group dying until it is dropped.
#[test]
fn a_handle_keeps_a_removed_group_dying_until_dropped() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    let b = h.create("/a/b").unwrap();
    let _objects = kmem_on_task(&h, "/a/b", 3);
    h.remove("/a/b").unwrap();
    assert!(b.is_removed());
    assert_eq!(key(&h, "/a", "cgroup.stat", "nr_dying_descendants"), 1);
    assert_eq!(key(&h, "/", "cgroup.stat", "nr_dying_descendants"), 1);
    drop(b);
    assert_eq!(key(&h, "/a", "cgroup.stat", "nr_dying_descendants"), 0);
    assert_eq!(key(&h, "/", "cgroup.stat", "nr_dying_descendants"), 0);
}

/// S2: frees after removal uncharge the parent and its ancestors, from any
/// thread; at the end every counter is exactly 0.
#[test]
fn uncharges_of_reparented_objects_go_to_the_parent() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    h.create("/a/b").unwrap();
    let mut objects = kmem_on_task(&h, "/a/b", 10);
    h.remove("/a/b").unwrap();
    objects.truncate(4);
    assert_eq!(current(&h, "/a"), 4 * 4096);
    assert_eq!(current(&h, "/"), 4 * 4096);
    assert_eq!(key(&h, "/a", "memory.stat", "kernel"), 4 * 4096);
    spawn(move || drop(objects)).join().unwrap();
    assert_eq!(current(&h, "/a"), 0);
    assert_eq!(current(&h, "/"), 0);
    assert_eq!(key(&h, "/", "memory.stat", "kernel"), 0);
}

/// S3: only the context stays pending, and it is destroyed with the last
/// object. A context is a small fraction of a group.
#[test]
fn only_the_context_stays_pending_and_dies_with_the_last_object() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    h.create("/a/b").unwrap();
    assert_eq!(h.live_contexts(), 2);
    let objects = kmem_on_task(&h, "/a/b", 5);
    h.remove("/a/b").unwrap();
    h.quiesce();
    assert_eq!(h.live_contexts(), 2, "b's context lives with its objects");
    assert_eq!(h.get("/a").unwrap().reparented_contexts(), 1);
    drop(objects);
    h.quiesce();
    assert_eq!(h.live_contexts(), 1, "the last free destroyed b's context");
    assert_eq!(h.get("/a").unwrap().reparented_contexts(), 0);
    let (group, context) = (memcg::group_size(), memcg::context_size());
    println!("a group is {group} bytes, a kmem context {context} bytes");
    assert!(
        context * 3 < group,
        "a dead group leaves a fraction of itself"
    );
}

/// S4: contexts reparented to a group move again when it is removed; no
/// object is visited.
#[test]
fn nested_removal_moves_reparented_contexts_again() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    h.create("/a/b").unwrap();
    h.create("/a/b/c").unwrap();
    let in_c = kmem_on_task(&h, "/a/b/c", 3);
    let in_b = kmem_on_task(&h, "/a/b", 2);
    h.remove("/a/b/c").unwrap();
    assert_eq!(h.get("/a/b").unwrap().reparented_contexts(), 1);
    assert_eq!(current(&h, "/a/b"), 5 * 4096);
    h.remove("/a/b").unwrap();
    let a = h.get("/a").unwrap();
    assert_eq!(a.reparented_contexts(), 2);
    assert_eq!(current(&h, "/a"), 5 * 4096);
    drop(in_c);
    assert_eq!(current(&h, "/a"), 2 * 4096);
    drop(in_b);
    assert_eq!(current(&h, "/a"), 0);
    assert_eq!(a.reparented_contexts(), 0);
    assert_eq!(h.live_contexts(), 1);
}

/// S5: a charge through the context of a removed group lands on the live
/// ancestor the context now bills, and none lands on the removed group.
#[test]
fn a_charge_after_removal_lands_on_the_live_ancestor() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    let b = h.create("/a/b").unwrap();
    let before = KmemPages::alloc_for(&b, 4096).unwrap();
    h.remove("/a/b").unwrap();
    h.quiesce();
    let b_after_removal = b.read("memory.current").unwrap();
    let after = KmemPages::alloc_for(&b, 3 * 4096).unwrap();
    h.quiesce();
    assert_eq!(b.read("memory.current").unwrap(), b_after_removal);
    assert_eq!(current(&h, "/a"), 4 * 4096);
    drop((before, after));
    assert_eq!(current(&h, "/a"), 0);
}

/// S5 with real threads: charges racing with removal, counters exact after.
/// The race must have happened, not merely been possible: the rounds go on
/// until in one of them a charge overlapped the removal (it began before
/// `remove` returned and ended after `remove` began), as in tests/stress.rs.
#[test]
fn charges_racing_with_removal_keep_counters_exact() {
    const CHARGES: usize = 200;
    const MIN_ROUNDS: usize = 20;
    const MAX_ROUNDS: usize = 1_000;
    let mut raced = 0;
    let mut rounds = 0;
    while rounds < MIN_ROUNDS || (raced == 0 && rounds < MAX_ROUNDS) {
        rounds += 1;
        let h = Hierarchy::new();
        h.create("/a").unwrap();
        let b = h.create("/a/b").unwrap();
        let progress = Arc::new(AtomicUsize::new(0));
        // 0: not yet, 1: `remove` running, 2: `remove` returned.
        let removal = Arc::new(AtomicUsize::new(0));
        let charger = {
            let (b, progress, removal) = (b.clone(), progress.clone(), removal.clone());
            spawn(move || {
                let mut objects = Vec::with_capacity(CHARGES);
                let mut overlapped = 0;
                for i in 1..=CHARGES {
                    let before = removal.load(SeqCst);
                    objects.push(KmemPages::alloc_for(&b, 4096).unwrap());
                    let after = removal.load(SeqCst);
                    overlapped += usize::from(before < 2 && after >= 1);
                    progress.store(i, Relaxed);
                }
                (objects, overlapped)
            })
        };
        // Remove once the charger is charging.
        while progress.load(Relaxed) == 0 && !charger.is_finished() {
            thread::yield_now();
        }
        removal.store(1, SeqCst);
        h.remove("/a/b").unwrap();
        removal.store(2, SeqCst);
        h.quiesce();
        let b_at_removal = b.read("memory.current").unwrap();
        let (objects, overlapped) = charger.join().unwrap();
        raced += usize::from(overlapped > 0);
        h.quiesce();
        assert_eq!(b.read("memory.current").unwrap(), b_at_removal);
        assert_eq!(current(&h, "/a"), (CHARGES * 4096) as u64);
        drop(objects);
        assert_eq!(current(&h, "/a"), 0);
        assert_eq!(current(&h, "/"), 0);
    }
    assert!(
        raced > 0,
        "no charge overlapped a removal in {rounds} rounds"
    );
}

/// S7: user pages are walked to the parent; the dead group holds none and
/// the ancestors' totals do not change.
#[test]
fn user_pages_are_walked_to_the_parent_on_removal() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    let b = h.create("/a/b").unwrap();
    let anon = user_pages_on_task(&h, "/a/b", PageKind::Anon, 3);
    let file = user_pages_on_task(&h, "/a/b", PageKind::File, 2);
    let before: Vec<u64> = ["anon", "file"]
        .iter()
        .map(|k| key(&h, "/a", "memory.stat", k))
        .collect();
    h.remove("/a/b").unwrap();
    h.quiesce();
    assert_eq!(b.read("memory.current").unwrap(), "0\n");
    assert!(b
        .read("memory.stat")
        .unwrap()
        .starts_with("anon 0\nfile 0\n"));
    let after: Vec<u64> = ["anon", "file"]
        .iter()
        .map(|k| key(&h, "/a", "memory.stat", k))
        .collect();
    assert_eq!(before, after);
    assert_eq!(after, vec![3 * 4096, 2 * 4096]);
    // The moved file pages are the parent's to reclaim now.
    h.write("/a", "memory.reclaim", "8K").unwrap();
    assert_eq!(key(&h, "/a", "memory.stat", "file"), 0);
    assert!(file.iter().all(|p| !p.is_live()));
    drop((anon, file));
    assert_eq!(current(&h, "/a"), 0);
}

/// S10: the root's threads are not charged.
#[test]
fn threads_in_the_root_are_not_charged() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    let root_objects: Vec<_> = (0..4).map(|_| KmemPages::alloc(4096).unwrap()).collect();
    let root_page = UserPage::charge(PageKind::Anon).unwrap();
    assert_eq!(current(&h, "/"), 0);
    assert!(root_page.is_live());
    drop((root_objects, root_page));
    assert_eq!(current(&h, "/"), 0);
}

/// Consistency: memory.current == anon + file + kernel for every live group
/// once stocks are drained, and kernel >= slab.
#[test]
fn current_is_the_sum_of_its_stats() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    h.create("/a/b").unwrap();
    h.create("/a/c").unwrap();
    let _k = kmem_on_task(&h, "/a/b", 7);
    let _u = user_pages_on_task(&h, "/a/c", PageKind::Anon, 5);
    let _f = user_pages_on_task(&h, "/a/b", PageKind::File, 3);
    for path in ["/", "/a", "/a/b", "/a/c"] {
        let sum: u64 = ["anon", "file", "kernel"]
            .iter()
            .map(|k| key(&h, path, "memory.stat", k))
            .sum();
        assert_eq!(current(&h, path), sum, "{path}");
        assert!(key(&h, path, "memory.stat", "kernel") >= key(&h, path, "memory.stat", "slab"));
    }
    assert_eq!(current(&h, "/a"), 15 * 4096);
}

/// The charge stock: a thread's first charge pre-charges a batch, quiesce
/// hands it back.
#[test]
fn a_stock_precharges_a_batch_and_drains_on_quiesce() {
    let h = Hierarchy::new();
    let a = h.create("/a").unwrap();
    let g = a.clone();
    // A barrier, not a channel: its wait allocates nothing, which under
    // `MemcgAlloc` would be charged in the group.
    let step = std::sync::Arc::new(std::sync::Barrier::new(2));
    let t = {
        let step = step.clone();
        spawn(move || {
            let _in = g.enter().unwrap();
            let page = KmemPages::alloc(4096).unwrap();
            step.wait();
            step.wait();
            drop(page);
        })
    };
    step.wait();
    let usage: u64 = a.read("memory.current").unwrap().trim().parse().unwrap();
    assert_eq!(usage, memcg::CHARGE_BATCH as u64 * 4096);
    assert_eq!(current(&h, "/a"), 4096);
    step.wait();
    t.join().unwrap();
    assert_eq!(current(&h, "/a"), 0);
}

/// memory.max: a charge over the limit fails with `limit`, after reclaiming
/// file pages; the events land on the limited group and its ancestors.
#[test]
fn a_charge_over_max_reclaims_file_pages_then_fails() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    h.create("/a/b").unwrap();
    h.write("/a", "memory.max", "40K").unwrap();
    let b = h.get("/a/b").unwrap();
    let (file, anon, err) = spawn(move || {
        let (mut file, mut anon) = (Vec::with_capacity(4), Vec::with_capacity(10));
        let _in = b.enter().unwrap();
        file.extend((0..4).map(|_| UserPage::charge(PageKind::File).unwrap()));
        anon.extend((0..10).map_while(|_| UserPage::charge(PageKind::Anon).ok()));
        let err = UserPage::charge(PageKind::Anon).unwrap_err();
        (file, anon, err)
    })
    .join()
    .unwrap();
    assert_eq!(anon.len(), 10, "file pages made room for anon");
    assert!(file.iter().all(|p| !p.is_live()));
    assert_eq!(err.kind(), ErrorKind::Limit);
    assert_eq!(current(&h, "/a"), 40 * 1024);
    assert_eq!(key(&h, "/a", "memory.events.local", "oom"), 1);
    assert_eq!(key(&h, "/a/b", "memory.events.local", "max"), 0);
    assert_eq!(key(&h, "/", "cgroup.stat", "nr_descendants"), 2);
    assert!(key(&h, "/a", "memory.events", "max") >= 1);
    assert_eq!(h.read("/a", "memory.max").unwrap(), "40960\n");
}

/// memory.high: crossing it counts a `high` event and reclaims back toward it.
#[test]
fn crossing_high_counts_an_event_and_reclaims() {
    let h = Hierarchy::new();
    let a = h.create("/a").unwrap();
    h.write("/a", "memory.high", "100K").unwrap();
    let pages = spawn(move || {
        let _in = a.enter().unwrap();
        (0..40)
            .map(|_| UserPage::charge(PageKind::File).unwrap())
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    assert!(key(&h, "/a", "memory.events", "high") >= 1);
    assert!(current(&h, "/a") <= 100 * 1024);
    assert!(pages.iter().any(|p| !p.is_live()));
}

/// memory.max writes reclaim down to the limit, or count `oom` and still
/// succeed; memory.reclaim fails with `again` when it falls short.
#[test]
fn limit_writes_reclaim_and_report_shortfalls() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    let _file = user_pages_on_task(&h, "/a", PageKind::File, 4);
    let _anon = user_pages_on_task(&h, "/a", PageKind::Anon, 4);
    h.write("/a", "memory.max", "20K").unwrap();
    assert_eq!(current(&h, "/a"), 5 * 4096, "3 of 4 file pages reclaimed");
    h.write("/a", "memory.max", "8K").unwrap();
    assert_eq!(current(&h, "/a"), 4 * 4096);
    assert_eq!(key(&h, "/a", "memory.events", "oom"), 1);
    let err = h.write("/a", "memory.reclaim", "4K").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Again);
    h.write("/a", "memory.peak", "reset").unwrap();
    assert_eq!(h.read("/a", "memory.peak").unwrap(), "16384\n");
}

/// Interface file values: rounding down, `max`, suffixes, typed errors that
/// change nothing.
#[test]
fn interface_files_parse_and_reject_as_the_kernel() {
    let h = Hierarchy::new();
    h.create("/a").unwrap();
    h.write("/a", "memory.max", "10000").unwrap();
    assert_eq!(h.read("/a", "memory.max").unwrap(), "8192\n");
    h.write("/a", "memory.max", "1M\n").unwrap();
    assert_eq!(h.read("/a", "memory.max").unwrap(), "1048576\n");
    for bad in ["", "-1", "1.5M", "12X", "maxx"] {
        let err = h.write("/a", "memory.max", bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{bad:?}");
    }
    assert_eq!(h.read("/a", "memory.max").unwrap(), "1048576\n");
    h.write("/a", "memory.max", "max").unwrap();
    assert_eq!(h.read("/a", "memory.max").unwrap(), "max\n");
    let kind = |r: memcg::Result<()>| r.unwrap_err().kind();
    assert_eq!(kind(h.write("/", "memory.max", "1M")), ErrorKind::Invalid);
    assert_eq!(
        kind(h.write("/a", "memory.current", "1")),
        ErrorKind::Invalid
    );
    assert_eq!(kind(h.write("/a", "memory.nope", "1")), ErrorKind::NotFound);
    assert_eq!(kind(h.remove("/")), ErrorKind::Invalid);
    assert_eq!(kind(h.remove("/zzz")), ErrorKind::NotFound);
    assert_eq!(kind(h.create("/a").map(drop)), ErrorKind::Exists);
    assert_eq!(kind(h.create("/x/y").map(drop)), ErrorKind::NotFound);
    assert_eq!(kind(h.create("/bad name").map(drop)), ErrorKind::Invalid);
    assert_eq!(kind(h.create("relative").map(drop)), ErrorKind::Invalid);
    h.create("/a/b").unwrap();
    let err = h.remove("/a").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy);
    assert!(err.to_string().contains("1 children"), "{err}");
    assert_eq!(
        h.read("/a", "memory.events").unwrap(),
        "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n"
    );
    // S14, S15: the flags take 0 or 1, cgroup.kill only 1 and is write-only,
    // cgroup.events is read-only; the root has none of them.
    assert_eq!(
        kind(h.write("/a", "memory.oom.group", "2")),
        ErrorKind::Invalid
    );
    assert_eq!(
        kind(h.write("/a", "cgroup.freeze", "yes")),
        ErrorKind::Invalid
    );
    assert_eq!(kind(h.write("/a", "cgroup.kill", "0")), ErrorKind::Invalid);
    assert_eq!(
        kind(h.read("/a", "cgroup.kill").map(drop)),
        ErrorKind::Invalid
    );
    assert_eq!(
        kind(h.write("/a", "cgroup.events", "1")),
        ErrorKind::Invalid
    );
    assert_eq!(kind(h.write("/", "cgroup.kill", "1")), ErrorKind::Invalid);
    assert_eq!(h.read("/a", "memory.oom.group").unwrap(), "0\n");
    assert_eq!(h.read("/a", "cgroup.freeze").unwrap(), "0\n");
    assert_eq!(
        h.read("/a", "cgroup.events").unwrap(),
        "populated 0\nfrozen 0\n"
    );
}

/// Tasks: cgroup.procs lists attached threads; rmdir is busy while one is in.
#[test]
fn a_group_with_tasks_is_busy_and_lists_them() {
    let h = Hierarchy::new();
    let a = h.create("/a").unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let t = thread::Builder::new()
        .name("worker-1".into())
        .spawn(move || {
            a.attach().unwrap();
            tx.send(()).unwrap();
            go_rx.recv().unwrap();
        })
        .unwrap();
    rx.recv().unwrap();
    assert_eq!(h.read("/a", "cgroup.procs").unwrap(), "worker-1\n");
    assert_eq!(h.remove("/a").unwrap_err().kind(), ErrorKind::Busy);
    go_tx.send(()).unwrap();
    t.join().unwrap();
    // Thread exit moved the task out.
    assert_eq!(h.read("/a", "cgroup.procs").unwrap(), "");
    h.remove("/a").unwrap();
}

/// Enter guards nest and restore the previous group.
#[test]
fn enter_guards_nest() {
    let h = Hierarchy::new();
    let a = h.create("/a").unwrap();
    let b = h.create("/b").unwrap();
    spawn(move || {
        let _in_a = a.enter().unwrap();
        let x = KmemPages::alloc(4096).unwrap();
        let y = {
            let _in_b = b.enter().unwrap();
            KmemPages::alloc(4096).unwrap()
        };
        let z = KmemPages::alloc(4096).unwrap();
        (x, y, z)
    })
    .join()
    .map(|objects| {
        assert_eq!(current(&h, "/a"), 2 * 4096);
        assert_eq!(current(&h, "/b"), 4096);
        drop(objects);
    })
    .unwrap();
}

/// Charges and uncharges through a thread's stock keep their statistics as
/// per-thread deltas (issue 9, item 4); a quiesce on another thread applies
/// them, so `memory.stat` is exact while the charging thread still lives.
#[test]
fn stock_statistics_are_exact_after_quiesce_from_another_thread() {
    let h = Hierarchy::new();
    let g = h.create("/a").unwrap();
    // Barriers, not channels: their waits allocate nothing, which under
    // `MemcgAlloc` would be charged in the group.
    let step = std::sync::Arc::new(std::sync::Barrier::new(2));
    let worker = {
        let step = step.clone();
        spawn(move || {
            let mut held = Vec::with_capacity(10);
            let _in = g.enter().unwrap();
            held.extend((0..10).map(|_| KmemPages::alloc(4096).unwrap()));
            step.wait(); // made
            step.wait(); // checked
            held.clear();
            step.wait(); // freed
            step.wait(); // checked
        })
    };
    step.wait();
    assert_eq!(key(&h, "/a", "memory.stat", "kmem"), 10 * 4096);
    assert_eq!(key(&h, "/a", "memory.stat", "kernel"), 10 * 4096);
    assert_eq!(current(&h, "/a"), 10 * 4096);
    step.wait();
    step.wait();
    assert_eq!(key(&h, "/a", "memory.stat", "kmem"), 0);
    assert_eq!(current(&h, "/a"), 0);
    step.wait();
    worker.join().unwrap();
}
