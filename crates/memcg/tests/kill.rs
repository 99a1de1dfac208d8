//! S14 and S15: killable units, `cgroup.kill`, the OOM killer with
//! `memory.oom.group`, `cgroup.freeze` and `cgroup.events`, through
//! `MemcgAlloc` and tokio where a test says so.

use memcg::{FutureExt, Hierarchy, Killed, KmemPages, MemcgAlloc};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

#[global_allocator]
static A: MemcgAlloc = MemcgAlloc;

/// Tests share the global hierarchy and its counters: one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn read(h: &Hierarchy, path: &str, file: &str) -> String {
    h.read(path, file).unwrap()
}

fn key(h: &Hierarchy, path: &str, file: &str, key: &str) -> u64 {
    read(h, path, file)
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{path} {file} has no {key}"))
}

fn current(h: &Hierarchy, path: &str) -> u64 {
    h.quiesce();
    read(h, path, "memory.current").trim().parse().unwrap()
}

/// Wait until `cond` holds, polling; panics after many tries (a bound on
/// tries, not an assertion on time).
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("never: {what}");
}

/// A waker that counts its wakes.
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn poll_once<F: Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
    std::pin::Pin::new(f).poll(&mut Context::from_waker(waker))
}

/// What the killed future held: its drop records the group it ran in.
struct Holder {
    #[allow(clippy::vec_box)] // 1000 small objects, each its own allocation
    small: Vec<Box<[u8; 100]>>,
    big: Vec<u8>,
    /// Set in its drop if it ran in `/kill-future` (compared without
    /// allocating: a string kept from the group would stay charged).
    dropped_in_group: Arc<AtomicBool>,
}

impl Drop for Holder {
    fn drop(&mut self) {
        let here = memcg::global().current_group().path() == "/kill-future";
        self.dropped_in_group.store(here, SeqCst);
        assert!(self.small.len() + self.big.len() > 0);
    }
}

/// S14 through `MemcgAlloc` and tokio: a killed future is woken, its next
/// poll drops the inner future inside its group and completes with
/// `Err(Killed)`, and every byte it held comes back; `populated` follows
/// the bound future's life.
#[test]
fn a_killed_future_drops_its_inner_future_inside_its_group_and_its_bytes_come_back() {
    let _serial = serial();
    let h = memcg::global();
    let g = h.create("/kill-future").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    // What the runtime's workers keep from a first poll in the group (their
    // lazily made thread-locals), so that the request's own bytes are what
    // is measured.
    for _ in 0..2 {
        let warm = async {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(async move { tx.send(()) });
            let _ = rx.await;
        };
        assert_eq!(
            rt.block_on(rt.spawn(warm.in_group_killable(g.clone())))
                .unwrap(),
            Ok(())
        );
    }
    let before = current(h, "/kill-future");
    let dropped_in_group = Arc::new(AtomicBool::new(false));
    let (_never, rx) = tokio::sync::oneshot::channel::<()>();
    let request = {
        let dropped_in_group = dropped_in_group.clone();
        async move {
            let holder = Holder {
                small: (0..1000).map(|_| Box::new([1u8; 100])).collect(),
                big: vec![7u8; 1 << 20],
                dropped_in_group,
            };
            let _ = rx.await;
            drop(holder);
        }
    };
    let handle = rt.spawn(request.in_group_killable(g.clone()));
    eventually("the request holds its memory", || {
        current(h, "/kill-future") > before + (1 << 20)
    });
    assert_eq!(
        read(h, "/kill-future", "cgroup.events"),
        "populated 1\nfrozen 0\n"
    );
    assert_eq!(g.kill(), 1);
    assert_eq!(rt.block_on(handle).unwrap(), Err(Killed));
    assert!(dropped_in_group.load(SeqCst), "dropped outside its group");
    assert_eq!(current(h, "/kill-future"), before);
    assert_eq!(
        read(h, "/kill-future", "cgroup.events"),
        "populated 0\nfrozen 0\n"
    );
    drop(rt);
    h.remove("/kill-future").unwrap();
}

/// `cgroup.kill` kills the units bound to the subtree at that moment, not
/// those bound later, and not units of other groups; a stream yields one
/// `Err(Killed)`, then ends.
#[test]
fn cgroup_kill_takes_the_units_of_the_subtree_at_that_moment() {
    let h = Hierarchy::new();
    let a = h.create("/a").unwrap();
    let b = h.create("/a/b").unwrap();
    let other = h.create("/other").unwrap();
    let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
    let mut fa = Box::pin(std::future::pending::<()>().in_group_killable(a.clone()));
    let mut fb = Box::pin(std::future::pending::<()>().in_group_killable(b.clone()));
    let mut fo = Box::pin(std::future::pending::<()>().in_group_killable(other.clone()));
    assert!(fa
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    h.write("/a", "cgroup.kill", "1").unwrap();
    assert!(fa.is_killed() && fb.is_killed() && !fo.is_killed());
    assert_eq!(poll_once(&mut fa, &waker), Poll::Ready(Err(Killed)));
    assert_eq!(poll_once(&mut fb, &waker), Poll::Ready(Err(Killed)));
    assert!(poll_once(&mut fo, &waker).is_pending());
    // Bound after the kill: not killed.
    let mut later = Box::pin(async { 7 }.in_group_killable(b.clone()));
    assert_eq!(poll_once(&mut later, &waker), Poll::Ready(Ok(7)));
    // A stream: one Err, then the end.
    let mut items = Box::pin(futures_stream(3).in_group_killable(b.clone()));
    b.kill();
    let mut next = || {
        let cx = &mut Context::from_waker(&waker);
        futures_core::Stream::poll_next(items.as_mut(), cx)
    };
    assert_eq!(next(), Poll::Ready(Some(Err(Killed))));
    assert_eq!(next(), Poll::Ready(None));
    // No kill events: cgroup.kill is not the OOM killer.
    assert_eq!(key(&h, "/a", "memory.events", "oom_kill"), 0);
}

/// A stream of `n` numbers.
fn futures_stream(n: usize) -> impl futures_core::Stream<Item = usize> {
    struct Numbers(usize, usize);
    impl futures_core::Stream for Numbers {
        type Item = usize;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<usize>> {
            if self.0 == self.1 {
                return Poll::Ready(None);
            }
            self.0 += 1;
            Poll::Ready(Some(self.0))
        }
    }
    Numbers(0, n)
}

/// The OOM killer (S14): a charge the parent's `memory.max` cannot take
/// kills the units of the child with the largest `memory.current` among
/// those with killable units (a larger child without units is passed
/// over), counts `oom_kill` exactly (locally and up the tree), and kills
/// nobody more while that victim lives on; with `memory.oom.group` on the
/// parent, the parent's whole subtree is killed and `oom_group_kill`
/// counted on it. The charge that set off the kill still fails.
#[test]
fn an_oom_kills_the_largest_group_with_killable_units_and_oom_group_takes_the_subtree() {
    let h = Hierarchy::new();
    let p = h.create("/p").unwrap();
    p.write("memory.max", "1M").unwrap(); // 256 pages
    let a = h.create("/p/a").unwrap();
    let b = h.create("/p/b").unwrap();
    let c = h.create("/p/c").unwrap();
    let held_a = KmemPages::alloc_for(&a, 100 * 4096).unwrap();
    let held_b = KmemPages::alloc_for(&b, 50 * 4096).unwrap();
    let held_c = KmemPages::alloc_for(&c, 101 * 4096).unwrap();
    let fa = Box::pin(std::future::pending::<()>().in_group_killable(a.clone()));
    let fb = Box::pin(std::future::pending::<()>().in_group_killable(b.clone()));
    let local = |path: &str, k: &str| key(&h, path, "memory.events.local", k);

    assert!(
        KmemPages::alloc_for(&b, 10 * 4096).is_err(),
        "the charge still fails"
    );
    assert!(fa.is_killed(), "a is the largest with killable units");
    assert!(!fb.is_killed());
    assert_eq!(local("/p/a", "oom_kill"), 1);
    assert_eq!(local("/p/b", "oom_kill"), 0);
    assert_eq!(local("/p/c", "oom_kill"), 0);
    assert_eq!(key(&h, "/p", "memory.events", "oom_kill"), 1);
    assert_eq!(key(&h, "/p", "memory.events", "oom"), 1);

    // The victim lives on (never polled): another OOM kills nobody.
    assert!(KmemPages::alloc_for(&b, 10 * 4096).is_err());
    assert!(!fb.is_killed());
    assert_eq!(key(&h, "/p", "memory.events", "oom_kill"), 1);
    assert_eq!(key(&h, "/p", "memory.events", "oom"), 2);

    // The victim ends and gives its memory back; memory.oom.group on the
    // parent: the next OOM takes the subtree.
    drop(fa);
    drop(held_a);
    p.write("memory.oom.group", "1").unwrap();
    let fa2 = Box::pin(std::future::pending::<()>().in_group_killable(a.clone()));
    assert!(KmemPages::alloc_for(&c, 110 * 4096).is_err());
    assert!(fa2.is_killed() && fb.is_killed());
    assert_eq!(local("/p", "oom_group_kill"), 1);
    assert_eq!(local("/p/a", "oom_group_kill"), 0);
    assert_eq!(local("/p/a", "oom_kill"), 2);
    assert_eq!(local("/p/b", "oom_kill"), 1);
    assert_eq!(key(&h, "/p", "memory.events", "oom_kill"), 3);
    assert_eq!(key(&h, "/p", "memory.events", "oom_group_kill"), 1);
    drop((fa2, fb, held_b, held_c));
}

/// No killable unit in the domain: an OOM kills nothing, exactly as
/// before (the charge fails, `oom` is counted, no `oom_kill`).
#[test]
fn an_oom_without_killable_units_kills_nothing() {
    let h = Hierarchy::new();
    let p = h.create("/p").unwrap();
    p.write("memory.max", "64K").unwrap();
    let a = h.create("/p/a").unwrap();
    let plain = Box::pin(std::future::pending::<()>().in_group(a.clone()));
    let held = KmemPages::alloc_for(&a, 16 * 4096).unwrap();
    assert!(KmemPages::alloc_for(&a, 4096).is_err());
    assert_eq!(key(&h, "/p", "memory.events", "oom"), 1);
    assert_eq!(key(&h, "/p", "memory.events", "oom_kill"), 0);
    drop((plain, held));
}

/// S15 through tokio: a frozen group's bound futures (its children's too)
/// are not polled; a thaw resumes them; `cgroup.events` `frozen` is exact
/// on the group and below; a kill overrides a freeze.
#[test]
fn freeze_holds_polls_and_thaw_resumes_them() {
    let h = Hierarchy::new();
    let f = h.create("/f").unwrap();
    let c = h.create("/f/c").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let polls = Arc::new(AtomicUsize::new(0));
    let spinning = {
        let polls = polls.clone();
        async move {
            loop {
                polls.fetch_add(1, SeqCst);
                tokio::task::yield_now().await;
            }
        }
    };
    let task = rt.spawn(spinning.in_group(c.clone()));
    eventually("the task runs", || polls.load(SeqCst) > 100);
    f.freeze(true);
    assert_eq!(read(&h, "/f", "cgroup.events"), "populated 1\nfrozen 1\n");
    assert_eq!(read(&h, "/f/c", "cgroup.events"), "populated 1\nfrozen 1\n");
    assert_eq!(read(&h, "/f", "cgroup.freeze"), "1\n");
    assert_eq!(read(&h, "/f/c", "cgroup.freeze"), "0\n");
    // A poll under way when the freeze came may finish; then none.
    std::thread::sleep(Duration::from_millis(50));
    let held = polls.load(SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(polls.load(SeqCst), held, "a frozen future was polled");
    // A killable future of the frozen group: the kill overrides the freeze.
    let killable = rt.spawn(std::future::pending::<()>().in_group_killable(c.clone()));
    std::thread::sleep(Duration::from_millis(20));
    c.kill();
    assert_eq!(rt.block_on(killable).unwrap(), Err(Killed));
    f.freeze(false);
    assert_eq!(read(&h, "/f/c", "cgroup.events"), "populated 1\nfrozen 0\n");
    eventually("the thaw resumes polls", || polls.load(SeqCst) > held);
    task.abort();
    let _ = rt.block_on(task);
    drop(rt);
    assert_eq!(read(&h, "/f", "cgroup.events"), "populated 0\nfrozen 0\n");
}

/// S14 for threads: a thread in its group as a killable unit sees
/// `Err(Killed)` at its next `check_killed()` after a kill, and only while
/// it stays there; a frozen group's thread waits in `check_killed()` until
/// thawed, and a kill ends the wait. `populated` counts attached threads.
#[test]
fn a_killed_thread_sees_err_at_its_next_check_killed() {
    let h = Hierarchy::new();
    let t = h.create("/t").unwrap();
    let elsewhere = h.create("/elsewhere").unwrap();
    let rounds = Arc::new(AtomicUsize::new(0));
    let in_place = Arc::new(AtomicBool::new(false));
    let worker = {
        let (t, elsewhere, rounds, in_place) = (
            t.clone(),
            elsewhere.clone(),
            rounds.clone(),
            in_place.clone(),
        );
        std::thread::spawn(move || {
            let guard = t.enter_killable().unwrap();
            in_place.store(true, SeqCst);
            let seen = loop {
                if let Err(e) = memcg::check_killed() {
                    break e;
                }
                rounds.fetch_add(1, SeqCst);
                std::thread::sleep(Duration::from_millis(1));
            };
            // Moving clears it.
            let moved = elsewhere.enter().unwrap();
            let after_move = memcg::check_killed();
            drop(moved);
            drop(guard);
            (seen, after_move)
        })
    };
    eventually("the worker is in", || {
        in_place.load(SeqCst) && rounds.load(SeqCst) > 5
    });
    assert_eq!(read(&h, "/t", "cgroup.events"), "populated 1\nfrozen 0\n");
    // Frozen: the worker waits in check_killed.
    t.freeze(true);
    std::thread::sleep(Duration::from_millis(50));
    let held = rounds.load(SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(rounds.load(SeqCst), held, "a frozen thread went on");
    // The kill ends the wait.
    assert_eq!(t.kill(), 1);
    let (seen, after_move) = worker.join().unwrap();
    assert_eq!(seen, Killed);
    assert_eq!(after_move, Ok(()));
    t.freeze(false);
    assert_eq!(read(&h, "/t", "cgroup.events"), "populated 0\nfrozen 0\n");
}

/// A thread that thaws goes on; `throttle_point` is a safe point too.
#[test]
fn a_thawed_thread_goes_on() {
    let h = Hierarchy::new();
    let g = h.create("/g").unwrap();
    g.freeze(true);
    let done = Arc::new(AtomicBool::new(false));
    let worker = {
        let (g, done) = (g.clone(), done.clone());
        std::thread::spawn(move || {
            let _in = g.enter().unwrap();
            memcg::throttle_point();
            done.store(true, SeqCst);
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !done.load(SeqCst),
        "a thread went past a safe point while frozen"
    );
    g.freeze(false);
    worker.join().unwrap();
    assert!(done.load(SeqCst));
}

/// A frozen group that is removed lets its futures go: no thaw could
/// reach it any more (they run where its charges go, its parent).
#[test]
fn removing_a_frozen_group_releases_its_futures() {
    let h = Hierarchy::new();
    let g = h.create("/gone").unwrap();
    g.freeze(true);
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let mut f = Box::pin(async { 5 }.in_group(g.clone()));
    assert!(poll_once(&mut f, &waker).is_pending(), "frozen");
    h.remove("/gone").unwrap();
    h.quiesce();
    eventually("the removal wakes it", || count.0.load(SeqCst) > 0);
    assert_eq!(poll_once(&mut f, &waker), Poll::Ready(5));
}
