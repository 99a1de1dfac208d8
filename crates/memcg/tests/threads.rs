//! S12 with a real `#[global_allocator]`: threads started through memcg's
//! spawn and async tasks bound with `in_group` charge their group wherever
//! they run; frees on another thread or task uncharge the owner; every
//! counter returns to 0. The default group, process-wide, has its own test
//! binary (`default_group.rs`), so that this one's never-attached test
//! threads charge nothing.

use memcg::{global, FutureExt, Group, MemcgAlloc};
use std::collections::HashSet;
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::time::Duration;

#[global_allocator]
static A: MemcgAlloc = MemcgAlloc;

/// A block of whole pages, charged exactly (a large block: no slab slack).
const BLOCK: usize = 256 * 1024;

fn current(g: &Group) -> u64 {
    global().quiesce();
    g.read("memory.current").unwrap().trim().parse().unwrap()
}

/// The group's large blocks: page-level kmem, exact to the byte.
fn kmem(g: &Group) -> u64 {
    global().quiesce();
    g.read("memory.stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("kmem ")?.parse().ok())
        .unwrap()
}

/// The group carries exactly `blocks` blocks of page-level kmem, and its
/// `memory.current` exceeds that by no more than the small objects its
/// threads made besides (thread and channel bookkeeping): `slack` bytes.
fn assert_holds(g: &Group, blocks: usize, slack: u64) {
    let want = (blocks * BLOCK) as u64;
    assert_eq!(kmem(g), want, "{} kmem", g.path());
    let cur = current(g);
    assert!(
        (want..=want + slack).contains(&cur),
        "{}: memory.current {cur}, want {want} + at most {slack}",
        g.path()
    );
}

fn subtree(name: &str) -> Group {
    global().create(&format!("/{name}")).unwrap()
}

fn block() -> Vec<u8> {
    let mut v = Vec::with_capacity(BLOCK);
    v.resize(BLOCK, 1);
    v
}

/// The calling thread hands its object stock back, so that its groups'
/// numbers are exact when another thread reads them.
fn settle() {
    memcg::drain_stocks();
}

#[test]
fn a_spawned_thread_starts_in_its_parents_group_and_stays_when_the_parent_moves() {
    let top = subtree("spawn-inherit");
    let h = global();
    let a = h.create("/spawn-inherit/a").unwrap();
    let b = h.create("/spawn-inherit/b").unwrap();
    let (to_child, child_rx) = mpsc::channel::<()>();
    let (child_tx, from_child) = mpsc::channel::<String>();
    let child = {
        let _in_a = a.enter().unwrap();
        memcg::spawn(move || {
            let first = block();
            settle();
            child_tx.send(global().current_group().path()).unwrap();
            // Wait until the parent moved to /b, then allocate again.
            child_rx.recv().unwrap();
            let second = block();
            settle();
            child_tx.send(global().current_group().path()).unwrap();
            child_rx.recv().unwrap();
            (first, second)
        })
    };
    assert_eq!(from_child.recv().unwrap(), "/spawn-inherit/a");
    assert_holds(&a, 1, 16 << 10);
    // The parent moves to /b; the child stays in /a.
    let in_b = b.enter().unwrap();
    to_child.send(()).unwrap();
    assert_eq!(from_child.recv().unwrap(), "/spawn-inherit/a");
    assert_holds(&a, 2, 16 << 10);
    assert_eq!(kmem(&b), 0);
    // The child is listed in /a, so /a is busy until it exits.
    assert_eq!(
        h.remove("/spawn-inherit/a").unwrap_err().kind(),
        memcg::ErrorKind::Busy
    );
    drop(in_b);
    to_child.send(()).unwrap();
    let (first, second) = child.join().unwrap();
    // Freed on the parent's thread (now in the root): /a is uncharged. The
    // channel's blocks, which the child allocated in /a, go with it.
    drop((first, second));
    assert_eq!(kmem(&a), 0);
    drop((to_child, from_child));
    assert_eq!(current(&a), 0);
    h.remove("/spawn-inherit/a").unwrap();
    h.remove("/spawn-inherit/b").unwrap();
    drop(top);
    h.remove("/spawn-inherit").unwrap();
}

#[test]
fn group_spawn_starts_in_that_group_and_lists_the_thread_before_it_runs() {
    let top = subtree("spawn-into");
    let h = global();
    let g = h.create("/spawn-into/g").unwrap();
    let gate = Arc::new(Barrier::new(2));
    let t = memcg::Builder::new()
        .name("worker-7".into())
        .spawn_in(&g, {
            let gate = gate.clone();
            move || {
                gate.wait();
                let v = block();
                settle();
                (global().current_group().path(), v)
            }
        })
        .unwrap();
    // Listed (and busy) before the thread ran a line of its own.
    assert!(g.read("cgroup.procs").unwrap().contains("worker-7"));
    assert_eq!(
        h.remove("/spawn-into/g").unwrap_err().kind(),
        memcg::ErrorKind::Busy
    );
    gate.wait();
    let (path, v) = t.join().unwrap();
    assert_eq!(path, "/spawn-into/g");
    assert_holds(&g, 1, 16 << 10);
    // The thread exited: it left the group's task list.
    assert_eq!(g.read("cgroup.procs").unwrap(), "");
    drop(v);
    assert_eq!(current(&g), 0);
    h.remove("/spawn-into/g").unwrap();
    // A removed group takes no new thread.
    let err = g.spawn(|| ()).unwrap_err();
    assert_eq!(err.kind(), memcg::ErrorKind::NotFound);
    drop(top);
    h.remove("/spawn-into").unwrap();
}

#[test]
fn a_thread_spawned_from_the_root_stays_in_the_root() {
    let top = subtree("spawn-root");
    let h = global();
    let g = h.create("/spawn-root/g").unwrap();
    let _in_g = g.enter().unwrap();
    let t = memcg::spawn(|| {
        memcg::detach();
        memcg::spawn(|| {
            let v = block();
            settle();
            (global().current_group().path(), v)
        })
        .join()
        .unwrap()
    });
    let (path, v) = t.join().unwrap();
    assert_eq!(path, "/");
    drop(_in_g);
    assert_eq!(current(&g), 0, "the grandchild charged nothing to /g");
    drop(v);
    h.remove("/spawn-root/g").unwrap();
    drop(top);
    h.remove("/spawn-root").unwrap();
}

/// Tasks bound to two groups on a two-worker runtime: each allocates,
/// holds across many yields (so tasks move between workers), and its group
/// carries exactly what its tasks hold; the bytes are freed by tasks of the
/// other group and return to 0 in both; the workers, never attached,
/// charge nothing of their own to either.
#[test]
fn tokio_tasks_charge_their_group_whichever_worker_polls_them() {
    const TASKS: usize = 8;
    let top = subtree("tokio");
    let h = global();
    let groups = [h.create("/tokio/a").unwrap(), h.create("/tokio/b").unwrap()];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let workers_seen = Arc::new(Mutex::new(Vec::<HashSet<std::thread::ThreadId>>::new()));
    let held = Arc::new(tokio::sync::Barrier::new(2 * TASKS + 1));
    let release = Arc::new(tokio::sync::Notify::new());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let mut handles = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        for _ in 0..TASKS {
            let (held, release, tx, seen) = (
                held.clone(),
                release.clone(),
                tx.clone(),
                workers_seen.clone(),
            );
            let task = async move {
                let mut threads = HashSet::new();
                let mut v = block();
                for (round, byte) in v.iter_mut().enumerate().take(200) {
                    threads.insert(std::thread::current().id());
                    if round % 10 == 0 {
                        // A timer wake-up resumes the task on whichever
                        // worker drives the timer: tasks move.
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    } else {
                        tokio::task::yield_now().await;
                    }
                    *byte = round as u8;
                }
                let notified = release.notified();
                held.wait().await;
                notified.await;
                seen.lock().unwrap().push(threads);
                tx.send(v).unwrap();
            };
            handles.push((i, rt.spawn(task.in_group(g.clone()))));
        }
    }
    drop(tx);
    rt.block_on(held.wait());
    // Every task holds its block: the groups carry exactly those.
    for g in &groups {
        assert_holds(g, TASKS, 64 << 10);
    }
    release.notify_waiters();
    // The blocks are freed by tasks bound to the other group, half each.
    let freed = rt.block_on(async {
        let mut freed = 0;
        while let Some(v) = rx.recv().await {
            let g = groups[freed % 2].clone();
            tokio::spawn(async move { drop(v) }.in_group(g))
                .await
                .unwrap();
            freed += 1;
        }
        freed
    });
    assert_eq!(freed, 2 * TASKS);
    for (_, handle) in handles {
        rt.block_on(handle).unwrap();
    }
    let moved = workers_seen
        .lock()
        .unwrap()
        .iter()
        .filter(|t| t.len() > 1)
        .count();
    // The race this test is about: tasks resumed on another worker.
    assert!(
        moved > 0,
        "no task moved between workers; the test proved nothing"
    );
    // What the tasks made besides their blocks (their thread sets, channel
    // blocks, the runtime's queues grown in a poll) goes with its owners.
    drop((workers_seen, held, release, rx));
    drop(rt);
    for g in &groups {
        assert_eq!(current(g), 0, "{}", g.path());
    }
    for g in &groups {
        h.remove(&g.path()).unwrap();
    }
    drop(top);
    h.remove("/tokio").unwrap();
}

/// A bound future is dropped under its group (its frees uncharge there
/// whoever drops it), and a poll restores the worker's own group after.
#[test]
fn a_bound_future_is_dropped_in_its_group_and_restores_the_pollers_group() {
    let top = subtree("drop-in");
    let h = global();
    let g = h.create("/drop-in/g").unwrap();
    let mine = h.create("/drop-in/mine").unwrap();
    // The poller is a thread of /drop-in/mine, so that what it keeps for
    // its lifetime (its runtime, thread-locals) is gone when it is joined.
    let poller = mine
        .spawn({
            let (g, mine) = (g.clone(), mine.clone());
            move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let fut = async move {
                    let v = block();
                    std::future::pending::<()>().await;
                    drop(v);
                }
                .in_group(g.clone());
                let mut fut = Box::pin(fut);
                rt.block_on(async {
                    let polled = tokio::time::timeout(Duration::from_millis(1), &mut fut).await;
                    assert!(polled.is_err(), "the future never completes");
                });
                // After the poll this thread charges /drop-in/mine again.
                assert_eq!(global().current_group().path(), "/drop-in/mine");
                // The runtime's own buffers (its timer wheel) are this
                // thread's, in /drop-in/mine: count from here.
                let base = kmem(&mine);
                let own = block();
                settle();
                assert_eq!(kmem(&mine), base + BLOCK as u64);
                assert_eq!(kmem(&g), BLOCK as u64);
                // Dropping the future here frees its block in /drop-in/g.
                drop(fut);
                settle();
                assert_eq!(kmem(&g), 0);
                assert_eq!(kmem(&mine), base + BLOCK as u64);
                drop(own);
            }
        })
        .unwrap();
    poller.join().unwrap();
    assert_eq!(current(&g), 0);
    assert_eq!(current(&mine), 0);
    h.remove("/drop-in/g").unwrap();
    h.remove("/drop-in/mine").unwrap();
    drop(top);
    h.remove("/drop-in").unwrap();
}

/// A bound future whose group is removed while it is pending charges the
/// live parent, as the group's kmem context does (S5), and does not keep
/// the group from removal.
#[test]
fn a_bound_future_of_a_removed_group_charges_the_parent() {
    let top = subtree("removed-bound");
    let h = global();
    let g = h.create("/removed-bound/g").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let go = Arc::new(tokio::sync::Notify::new());
    let task = rt.spawn(
        {
            let go = go.clone();
            async move {
                let notified = go.notified();
                notified.await;
                let v = block();
                let path = global().current_group().path();
                (v, path)
            }
        }
        .in_group(g.clone()),
    );
    h.remove("/removed-bound/g").unwrap();
    go.notify_one();
    let (v, path) = rt.block_on(task).unwrap();
    assert_eq!(path, "/removed-bound");
    assert_eq!(kmem(&top), BLOCK as u64);
    drop(v);
    assert_eq!(current(&top), 0);
    drop(rt);
    drop(top);
    h.remove("/removed-bound").unwrap();
}

/// A rayon pool whose threads start in a group (`start_handler`): parallel
/// work is charged there, and the pool's exit leaves the group removable.
#[test]
fn a_rayon_pool_started_in_a_group_charges_it() {
    let top = subtree("rayon");
    let h = global();
    let g = h.create("/rayon/pool").unwrap();
    // The pool's threads, kept to be joined: a join returns once the thread
    // has ended, after its thread-locals (memcg's exit hook, which takes it
    // out of its group) were destroyed. The pool's exit handler would be too
    // early a signal: it runs while the thread is still in the group.
    let threads = Arc::new(Mutex::new(Vec::new()));
    let pool = {
        let g = g.clone();
        let threads = threads.clone();
        rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .start_handler(move |_| g.attach().unwrap())
            .exit_handler(|_| memcg::drain_stocks())
            .spawn_handler(move |thread| {
                let handle = std::thread::Builder::new().spawn(|| thread.run())?;
                threads.lock().unwrap().push(handle);
                Ok(())
            })
            .build()
            .unwrap()
    };
    let blocks: Vec<Vec<u8>> = pool.install(|| {
        use rayon::prelude::*;
        let v: Vec<Vec<u8>> = (0..12).into_par_iter().map(|_| block()).collect();
        rayon::broadcast(|_| memcg::drain_stocks());
        v
    });
    // The pool's own buffers (its deques) are page-level kmem of the
    // group too, while the pool lives.
    let pool_own = kmem(&g) - (12 * BLOCK) as u64;
    assert!(pool_own <= 64 << 10, "{pool_own}");
    drop(blocks);
    assert_eq!(kmem(&g), pool_own);
    drop(pool);
    // The pool's threads leave the group as they exit: once they have
    // ended, the group has no task and can be removed.
    let threads = std::mem::take(&mut *threads.lock().unwrap());
    assert_eq!(threads.len(), 3);
    for t in threads {
        t.join().unwrap();
    }
    h.remove("/rayon/pool").unwrap();
    // What the pool's threads kept is freed with them, or reparented to
    // /rayon: the deques' retired buffers wait for crossbeam-epoch's
    // collector, which frees them whenever it runs (they then uncharge
    // /rayon). Nothing but those pool buffers is left.
    assert!(kmem(&top) <= pool_own, "{} > {pool_own}", kmem(&top));
    drop(top);
    h.remove("/rayon").unwrap();
}

/// Events wake a blocking watcher on another thread and an async one, and
/// are coalesced: several events before a look are reported once, with the
/// counters as they are.
#[test]
fn event_watches_wake_blocking_and_async_waiters() {
    let top = subtree("watch");
    let h = global();
    let g = h.create("/watch/g").unwrap();
    g.write("memory.max", "64K").unwrap();
    let mut blocking = g.watch_events();
    let mut watch_async = g.watch_events();
    assert_eq!(blocking.wait_timeout(Duration::from_millis(20)), None);
    let waiter = std::thread::spawn(move || blocking.wait_timeout(Duration::from_secs(30)));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let async_waiter = rt.spawn(async move { watch_async.changed().await });
    {
        let _in_g = g.enter().unwrap();
        // Three failing charges: max and oom three times each.
        for _ in 0..3 {
            assert!(memcg::KmemPages::alloc(1 << 20).is_err());
        }
    }
    // Woken by the first change it saw (max is counted before oom, and a
    // wake-up may come between them: coalescing reports what is there).
    let seen = waiter
        .join()
        .unwrap()
        .expect("the blocking watcher was woken");
    assert!(seen.max >= 1, "{seen:?}");
    let seen_async = rt.block_on(async_waiter).unwrap();
    assert!(seen_async.max >= 1, "{seen_async:?}");
    // Coalesced: a fresh look reports the counters as they are, once.
    let mut late = g.watch_events();
    assert_eq!(late.current(), g.events());
    assert_eq!(g.events().max, 3);
    assert_eq!(g.events().oom, 3);
    assert_eq!(late.wait_timeout(Duration::from_millis(20)), None);
    assert_eq!(top.events().max, 3, "memory.events is hierarchical");
    assert_eq!(top.local_events().max, 0);
    drop(rt);
    h.remove("/watch/g").unwrap();
    drop(top);
    h.remove("/watch").unwrap();
}

/// Listing: the live groups of a hierarchy in path order, a group's
/// children and parent; removed groups are not listed.
#[test]
fn groups_and_children_list_the_live_groups() {
    let h = memcg::Hierarchy::new();
    for p in ["/t", "/t/a", "/t/a/x", "/t/b", "/u"] {
        h.create(p).unwrap();
    }
    assert_eq!(h.paths(), ["/", "/t", "/t/a", "/t/a/x", "/t/b", "/u"]);
    let t = h.get("/t").unwrap();
    let kids: Vec<String> = t.children().iter().map(|g| g.path()).collect();
    assert_eq!(kids, ["/t/a", "/t/b"]);
    assert_eq!(t.parent().unwrap().path(), "/");
    assert!(h.root().parent().is_none());
    h.remove("/t/b").unwrap();
    let kids: Vec<String> = t.children().iter().map(|g| g.path()).collect();
    assert_eq!(kids, ["/t/a"]);
    let all: Vec<String> = h.groups().iter().map(|g| g.path()).collect();
    assert_eq!(all, h.paths());
}
