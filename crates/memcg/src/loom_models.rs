//! Model checks of the reparenting races (DESIGN.md §8), run with
//! `RUSTFLAGS="--cfg loom" cargo test -p memcg --release --lib loom_`.
//!
//! Each model builds a small hierarchy inside `loom::model`, so every atomic
//! and lock of the context protocol is permuted; loom also checks that every
//! `Arc` is released by the end (no leaked group or context).

use crate::charge::{charge, uncharge};
use crate::stats::Stat;
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

/// (b) The last uncharge racing with the group's destruction: whichever
/// drops the context's last reference, it is destroyed exactly once, by
/// deferred work, and the counters end at 0 (S2, S9).
#[test]
fn loom_last_uncharge_racing_with_destruction() {
    model(|| {
        let h = Hierarchy::new();
        h.create("/a").unwrap();
        let b = h.create("/a/b").unwrap();
        let object = KmemPages::alloc_for(&b, 1).unwrap();
        drop(b);
        let freer = thread::spawn(move || drop(object));
        h.remove("/a/b").unwrap();
        h.quiesce();
        freer.join().unwrap();
        h.quiesce();
        assert_eq!(usage(&h, "/a"), 0);
        assert_eq!(h.live_contexts(), 1);
        assert_eq!(h.destroyed_contexts(), 1);
    });
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
