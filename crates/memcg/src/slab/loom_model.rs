//! Model checks of the slab's lock-free parts (DESIGN.md §8), run with
//! `RUSTFLAGS="--cfg loom" cargo test -p memcg --release --lib loom_`.
//!
//! The remote-free list is checked as written ([`super::remote`] is generic
//! over loom's atomic). The dead-cache race is checked on a model of
//! `Cache::notify` and `Cache::kill` with loom's mutex: the same steps, on
//! one slab, without the allocator around them.

use super::remote::{push, take, UNOWNED};
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use loom::sync::{Arc, Mutex};
use loom::thread;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

/// Objects are 8-aligned words; the list links through their first word.
fn object() -> usize {
    Box::into_raw(Box::new(0usize)) as usize
}

fn set_next(obj: usize) -> impl Fn(usize) {
    // SAFETY: obj is a live Box<usize> of this model.
    move |next| unsafe { *(obj as *mut usize) = next }
}

/// Walk a taken list, freeing the objects; returns how many.
fn drain(mut head: usize) -> usize {
    let mut n = 0;
    while head != 0 {
        // SAFETY: listed objects are live boxes, each listed once.
        let b = unsafe { Box::from_raw(head as *mut usize) };
        head = *b;
        n += 1;
    }
    n
}

/// Two remote frees racing with the owner's collections: every object is
/// collected exactly once, and an owned slab never asks for notification.
#[test]
fn loom_remote_frees_race_with_owner_collection() {
    model(|| {
        let word = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let pushers: Vec<_> = (0..2)
            .map(|_| {
                let word = word.clone();
                thread::spawn(move || {
                    let obj = object();
                    assert!(!push(&*word, obj, set_next(obj), false));
                })
            })
            .collect();
        let mut got = drain(take(&*word, true));
        for p in pushers {
            p.join().unwrap();
        }
        got += drain(take(&*word, true));
        assert_eq!(got, 2);
    });
}

/// The owner gives the slab up while a remote free races: the object is
/// either collected by the owner, or left on an unowned list whose pusher
/// was told to notify the cache. Never stranded without a notification.
#[test]
fn loom_giving_up_ownership_never_strands_a_free() {
    model(|| {
        let word = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let pusher = {
            let word = word.clone();
            thread::spawn(move || {
                let obj = object();
                push(&*word, obj, set_next(obj), false)
            })
        };
        let collected = drain(take(&*word, false));
        let notified = pusher.join().unwrap();
        let left = word.load(Acquire);
        assert_eq!(left & UNOWNED, UNOWNED);
        if collected == 1 {
            assert_eq!(left, UNOWNED);
            assert!(!notified);
        } else {
            assert!(
                notified,
                "an object left on an unowned list needs its cache told"
            );
            assert_eq!(drain(take(&*word, false)), 1);
        }
    });
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum List {
    Full,
    Partial,
    Freed,
}

struct CacheModel {
    dead: AtomicBool,
    refcnt: AtomicUsize,
    destroyed: AtomicUsize,
    /// (used objects, list of the one slab), under the cache lock.
    lists: Mutex<(usize, List)>,
    thread_free: loom::sync::atomic::AtomicUsize,
}

impl CacheModel {
    fn put(&self) {
        if self.refcnt.fetch_sub(1, AcqRel) == 1 {
            self.destroyed.fetch_add(1, Relaxed);
        }
    }

    /// `Cache::place` for an unowned, unlisted slab.
    fn place(&self, l: &mut (usize, List)) {
        if l.0 == 0 && self.dead.load(Acquire) {
            l.1 = List::Freed;
            self.put(); // the slab's reference
        } else {
            l.1 = List::Partial;
        }
    }

    /// `Cache::notify`.
    fn notify(&self) {
        let mut l = self.lists.lock().unwrap();
        if l.1 == List::Freed || self.thread_free.load(Acquire) & UNOWNED == 0 {
            return;
        }
        if self.dead.load(Acquire) {
            l.0 -= drain(take(&self.thread_free, false));
            self.place(&mut l);
        } else if l.1 == List::Full {
            l.1 = List::Partial;
        }
    }

    /// `Cache::kill`: dead, slot reference dropped, partial slabs shrunk.
    fn kill(&self) {
        self.dead.store(true, Release);
        {
            let mut l = self.lists.lock().unwrap();
            if l.1 == List::Partial {
                l.0 -= drain(take(&self.thread_free, false));
                self.place(&mut l);
            }
        }
        self.put(); // the slot's reference
    }
}

/// The last free of a dead cache's last object races with the removal that
/// kills the cache: the slab is freed exactly once and the cache destroyed
/// exactly once, in every interleaving (no dead cache left behind).
#[test]
fn loom_dead_cache_destruction_races_the_last_free() {
    model(|| {
        let cache = Arc::new(CacheModel {
            dead: AtomicBool::new(false),
            refcnt: AtomicUsize::new(2), // the slot and the slab
            destroyed: AtomicUsize::new(0),
            lists: Mutex::new((1, List::Full)),
            thread_free: loom::sync::atomic::AtomicUsize::new(UNOWNED),
        });
        let freer = {
            let cache = cache.clone();
            thread::spawn(move || {
                let obj = object();
                let dead = cache.dead.load(Acquire);
                if push(&cache.thread_free, obj, set_next(obj), dead) {
                    cache.notify();
                }
            })
        };
        cache.kill();
        freer.join().unwrap();
        assert_eq!(cache.lists.lock().unwrap().1, List::Freed);
        assert_eq!(cache.destroyed.load(Relaxed), 1);
        assert_eq!(cache.refcnt.load(Relaxed), 0);
    });
}
