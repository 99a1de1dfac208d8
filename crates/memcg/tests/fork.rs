//! DESIGN.md §8: `fork()` in a multi-threaded program leaves the child a
//! working allocator and hierarchy. Three threads create groups, allocate
//! in them through `MemcgAlloc` (small objects, large blocks, kmem pages,
//! slab caches) and remove them, without pause, while the main thread forks
//! 50 times; every child allocates, creates a group, charges it, removes it
//! and exits 0 within its 10-second alarm.

use memcg::{global, KmemPages, MemcgAlloc, SlabCache};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

#[global_allocator]
static A: MemcgAlloc = MemcgAlloc;

const FORKS: usize = 50;

/// What a child does: everything a program does with memcg, then `_exit`.
fn child() -> ! {
    // SAFETY: alarm only schedules SIGALRM, whose default action ends the
    // child if it hangs.
    unsafe { libc::alarm(10) };
    let code = std::panic::catch_unwind(|| {
        let h = global();
        let v: Vec<String> = (0..1000).map(|i| format!("child {i}")).collect();
        let big = vec![1u8; 1 << 20];
        let g = h.create(&format!("/child-{}", std::process::id())).unwrap();
        {
            let _in_g = g.enter().unwrap();
            let mine: Vec<Vec<u8>> = (0..100).map(|i| vec![i as u8; 300]).collect();
            let k = KmemPages::alloc(3 * 4096).unwrap();
            let c = SlabCache::new("fork-child", 96, false).unwrap();
            let o: Vec<_> = (0..100).map(|_| c.alloc().unwrap()).collect();
            memcg::drain_stocks();
            h.quiesce();
            let current: u64 = g.read("memory.current").unwrap().trim().parse().unwrap();
            assert!(current >= 3 * 4096 + 100 * 300, "{current}");
            drop((mine, k, o));
        }
        h.quiesce();
        h.remove(&g.path()).unwrap();
        drop((v, big));
        0
    })
    .unwrap_or(3);
    // SAFETY: ends the child at once, without running the parent's atexit
    // handlers or the test harness.
    unsafe { libc::_exit(code) }
}

#[test]
fn fifty_forks_while_three_threads_churn_groups() {
    let h = global();
    h.create("/fork-churn").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let (stop, rounds) = (stop.clone(), rounds.clone());
            std::thread::spawn(move || {
                let c = SlabCache::new("fork-parent", 200, false).unwrap();
                let mut kept = Vec::new();
                let mut i = 0;
                while !stop.load(Relaxed) {
                    let path = format!("/fork-churn/t{t}-{i}");
                    let g = global().create(&path).unwrap();
                    {
                        let _in_g = g.enter().unwrap();
                        let strings: Vec<String> = (0..200).map(|j| format!("{j}")).collect();
                        let block = vec![0u8; 64 * 1024];
                        let k = KmemPages::alloc(8192).unwrap();
                        let objs: Vec<_> = (0..50).map(|_| c.alloc().unwrap()).collect();
                        kept.push(strings.into_iter().nth(7));
                        drop((block, k, objs));
                    }
                    drop(g);
                    global().remove(&path).unwrap();
                    if kept.len() > 100 {
                        kept.clear();
                    }
                    i += 1;
                    rounds.fetch_add(1, Relaxed);
                }
            })
        })
        .collect();
    let mut failures = Vec::new();
    for n in 0..FORKS {
        // Let the workers get going between forks.
        let before = rounds.load(Relaxed);
        while rounds.load(Relaxed) < before + 2 {
            std::thread::yield_now();
        }
        // SAFETY: the child runs only `child`, which ends in `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            child();
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid);
        let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        if !ok {
            failures.push((n, status));
        }
    }
    stop.store(true, Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(
        failures.is_empty(),
        "children that failed (fork number, wait status; 14 = killed by the alarm): {failures:?}"
    );
    assert!(rounds.load(Relaxed) >= 2 * FORKS);
    h.quiesce();
    h.remove("/fork-churn").unwrap();
}
