//! Model checks of the reparenting races (DESIGN.md §8), run with
//! `RUSTFLAGS="--cfg loom" cargo test -p memcg --release --lib loom_`.
//!
//! Each model builds a small hierarchy inside `loom::model`, so every atomic
//! and lock of the context protocol is permuted; loom also checks that every
//! `Arc` is released by the end (no leaked group or context).

use crate::accounting::charge::{charge, uncharge};
use crate::group::stats::Stat;
use crate::{Hierarchy, KmemPages};
use loom::thread;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(f);
}

fn usage(h: &Hierarchy, path: &str) -> usize {
    h.get(path).unwrap().inner.counter.usage()
}

/// (a) A charge racing with removal ends on a live group: after `rmdir`
/// returns, the removed group's counter never moves again (S5), and the
/// charge is billed to the parent either way.
#[test]
fn loom_charge_racing_with_removal() {
    model(|| {
        let h = Hierarchy::new();
        h.create("/a").unwrap();
        let b = h.create("/a/b").unwrap();
        let ctx = b.context().unwrap();
        // Keep only b's counter: the context's reference is then the last
        // one on b, so a writer that dropped it too early frees b under the
        // charger's feet.
        let b_counter = b.inner.counter.clone();
        drop(b);
        let charger = {
            let ctx = ctx.clone();
            thread::spawn(move || charge(&ctx, 1, Stat::Kmem, false).unwrap())
        };
        h.remove("/a/b").unwrap();
        let b_at_removal = b_counter.usage();
        charger.join().unwrap();
        assert_eq!(b_counter.usage(), b_at_removal);
        assert_eq!(usage(&h, "/a"), 1);
        uncharge(&ctx, 1, Stat::Kmem);
        assert_eq!(usage(&h, "/a"), 0);
        assert_eq!(usage(&h, "/"), 0);
        drop(ctx);
        h.quiesce();
        assert_eq!(h.live_contexts(), 1);
    });
}

/// (b) The last uncharge racing with destruction, through the real drop
/// path, wake-up included (issue 8): the freer drops the context's last
/// reference, which pushes it on the deferred queue and wakes the worker,
/// while the removal's own deferred pass and the worker may destroy it.
/// Under loom a read of a context not ordered before its destruction is
/// reported (`KmemContext::common`), and a wake-up lost or made before the
/// push leaves the worker waiting forever. Whichever thread destroys it, the
/// context is destroyed exactly once and the counters end at 0 (S2, S9).
#[test]
fn loom_last_uncharge_racing_with_destruction() {
    model(|| {
        let h = Hierarchy::new();
        h.create("/a").unwrap();
        let b = h.create("/a/b").unwrap();
        let object = KmemPages::alloc_for(&b, 1).unwrap();
        drop(b);
        let common = h.common().clone();
        let worker = thread::spawn(move || deferred_worker(&common, 1));
        let freer = thread::spawn(move || drop(object));
        h.remove("/a/b").unwrap();
        freer.join().unwrap();
        worker.join().unwrap();
        assert_eq!(usage(&h, "/a"), 0);
        assert_eq!(h.live_contexts(), 1);
        assert_eq!(h.destroyed_contexts(), 1);
    });
}

/// The deferred worker of the models: one pass per wake-up, as the real one
/// ([`crate::group::deferred`]), until `contexts` contexts have been destroyed (by
/// it or by a hierarchy operation's own pass).
fn deferred_worker(common: &crate::sync::Arc<crate::group::Common>, contexts: usize) {
    use crate::sync::Ordering::Relaxed;
    while common.contexts_destroyed.load(Relaxed) < contexts {
        crate::group::deferred::wait_for_wake();
        crate::group::Common::run_deferred(common);
    }
}

/// (c) Nested removal racing with an uncharge through a context reparented
/// earlier: the uncharge lands on whichever group the context bills, and the
/// surviving ancestor ends at 0 (S4).
#[test]
fn loom_nested_removal_racing_with_uncharge() {
    model(|| {
        let h = Hierarchy::new();
        h.create("/a").unwrap();
        h.create("/a/b").unwrap();
        let c = h.create("/a/b/c").unwrap();
        let object = KmemPages::alloc_for(&c, 1).unwrap();
        drop(c);
        h.remove("/a/b/c").unwrap();
        let freer = thread::spawn(move || drop(object));
        h.remove("/a/b").unwrap();
        freer.join().unwrap();
        h.quiesce();
        assert_eq!(usage(&h, "/a"), 0);
        assert_eq!(usage(&h, "/"), 0);
        assert_eq!(h.live_contexts(), 1);
    });
}

/// (d) The object stock's drain handshake (issue 17 item 4) on the real
/// stock: the owner allocates and frees through its fast paths (plain loads
/// and stores of the budget, no read-modify-write) and its slow paths, while
/// another thread drains the stock twice (`drain_remote`, as `quiesce` and
/// removal do for idle or busy threads). Whatever the interleaving, a drain
/// with the owner idle leaves the counters exact: `slab` is the live
/// objects' bytes, the group's usage those bytes rounded up to a page, and
/// the context's remainder the rest. After the owner's stock is released and
/// its objects freed, everything is 0.
#[test]
fn loom_stock_drain_races_the_owner_fast_paths() {
    use crate::accounting::object_stock::{ObjStock, SlabKind::Unreclaimable};
    use crate::sync::{Arc, Ordering::Relaxed};
    const OBJ: usize = 1000;
    fn alloc(stock: &ObjStock, ctx: &crate::group::kmem_context::CtxRef) {
        if !stock.take(OBJ) {
            stock.untake(OBJ);
            stock.charge(ctx, OBJ, Unreclaimable, false).unwrap();
        }
    }
    fn free(stock: &ObjStock, ctx: &crate::group::kmem_context::CtxRef) {
        if !stock.give(ctx.as_ptr(), OBJ) {
            // SAFETY: the model's object was charged OBJ bytes through ctx.
            unsafe { stock.uncharge(ctx.as_ptr(), OBJ, Unreclaimable) };
        }
    }
    // Small enough to check every interleaving (about 7,000), unbounded.
    let mut b = loom::model::Builder::new();
    b.preemption_bound = None;
    b.check(|| {
        let h = Hierarchy::new();
        let ctx = h.create("/a").unwrap().context().unwrap();
        let id = h.common().id;
        let slab = |h: &Hierarchy| {
            h.get("/a")
                .unwrap()
                .inner
                .stats
                .get(Stat::SlabUnreclaimable)
        };
        let stock = Arc::new(ObjStock::new());
        // The owner enters the group (as the heap does on a group change),
        // then makes three objects (the first charges a page) and frees one.
        let owner = {
            let (stock, ctx) = (stock.clone(), ctx.clone());
            thread::spawn(move || {
                stock.switch(Some(&ctx));
                alloc(&stock, &ctx);
                alloc(&stock, &ctx);
                free(&stock, &ctx);
                alloc(&stock, &ctx);
            })
        };
        stock.drain_remote(id, std::ptr::null());
        owner.join().unwrap();
        stock.drain_remote(id, std::ptr::null());
        assert_eq!(slab(&h), 2 * OBJ as u64);
        assert_eq!(usage(&h, "/a"), 1);
        assert_eq!(ctx.nr_bytes.load(Relaxed), crate::PAGE_SIZE - 2 * OBJ);
        // The owner exits (its stock released), then its objects are freed.
        stock.release();
        free(&stock, &ctx);
        free(&stock, &ctx);
        stock.release();
        assert_eq!(slab(&h), 0);
        assert_eq!(usage(&h, "/a"), 0);
        assert_eq!(ctx.nr_bytes.load(Relaxed), 0);
    });
}

/// (e) S14 on the real killable future: a kill (`cgroup.kill`) races a
/// poll of a pending future, and races the poll in which the future
/// completes. Whatever the interleaving, the inner future is dropped exactly
/// once, inside its group; a poll after the kill completes with
/// `Err(Killed)`, and a future that completed first keeps its `Ok`.
#[test]
fn loom_a_kill_races_a_poll_and_the_completion() {
    use crate::group::kill::Killed;
    use crate::sync::{Arc, AtomicUsize, Ordering::SeqCst};
    use crate::FutureExt;
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    /// Ready at its first poll when `ready`, else pending; its drop counts,
    /// and whether it ran in `group`.
    struct Inner {
        ready: bool,
        group: *const crate::group::GroupInner,
        drops: Arc<AtomicUsize>,
        in_group: Arc<AtomicUsize>,
    }
    impl Future for Inner {
        type Output = u8;
        fn poll(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<u8> {
            if self.ready {
                Poll::Ready(7)
            } else {
                Poll::Pending
            }
        }
    }
    impl Drop for Inner {
        fn drop(&mut self) {
            self.drops.fetch_add(1, SeqCst);
            if std::ptr::eq(crate::accounting::current::current_ptr(), self.group) {
                self.in_group.fetch_add(1, SeqCst);
            }
        }
    }
    for ready in [false, true] {
        model(move || {
            let h = Hierarchy::new();
            let g = h.create("/a").unwrap();
            let (drops, in_group) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let inner = Inner {
                ready,
                group: Arc::as_ptr(&g.inner),
                drops: drops.clone(),
                in_group: in_group.clone(),
            };
            let mut f = Box::pin(inner.in_group_killable(g.clone()));
            let killer = {
                let g = g.clone();
                thread::spawn(move || g.kill())
            };
            let waker = Waker::noop();
            let first = f.as_mut().poll(&mut Context::from_waker(waker));
            killer.join().unwrap();
            match first {
                Poll::Ready(Ok(v)) => assert!(ready && v == 7),
                Poll::Ready(Err(Killed)) => {}
                Poll::Pending => {
                    assert!(!ready);
                    let again = f.as_mut().poll(&mut Context::from_waker(waker));
                    assert_eq!(again, Poll::Ready(Err(Killed)));
                }
            }
            drop(f);
            assert_eq!(drops.load(SeqCst), 1, "the inner future dropped once");
            assert_eq!(in_group.load(SeqCst), 1, "inside its group");
        });
    }
}
