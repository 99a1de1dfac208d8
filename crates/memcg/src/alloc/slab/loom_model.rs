//! Model checks of the slab's lock-free parts (DESIGN.md §8), run with
//! `RUSTFLAGS="--cfg loom" cargo test -p memcg --release --lib loom_`.
//!
//! Both protocols are checked as written: [`super::remote`] is generic over
//! loom's atomic, and the list decisions of [`super::protocol`] (remote free
//! and notify, release, shrink, kill, the cache's reference count) are
//! generic over the cache, instantiated here with loom's mutex and atomics
//! on a cache of one slab. What the model supplies are the primitives: the
//! slab's object count and list links, span return and the deferred queue.

use super::protocol::{self, CacheOps, ListOps, SlabOps};
use super::remote::{is_unowned, push, take, UNOWNED};
use super::slab::ListKind;
use loom::cell::UnsafeCell;
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

/// A remote-free batch (a chain of objects one thread freed into the same
/// slab, pushed with one compare-and-swap) races with another thread's
/// single free and the owner's collections: each object is collected
/// exactly once, the chain whole.
#[test]
fn loom_a_remote_free_batch_races_with_a_free_and_collection() {
    model(|| {
        let word = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let batcher = {
            let word = word.clone();
            thread::spawn(move || {
                let (head, tail) = (object(), object());
                set_next(head)(tail);
                assert!(!push(&*word, head, set_next(tail), false));
            })
        };
        let single = {
            let word = word.clone();
            thread::spawn(move || {
                let obj = object();
                assert!(!push(&*word, obj, set_next(obj), false));
            })
        };
        let mut got = drain(take(&*word, true));
        batcher.join().unwrap();
        single.join().unwrap();
        got += drain(take(&*word, true));
        assert_eq!(got, 3);
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

/// One slab of the modelled cache: the real remote-free word, its list
/// (as the real slab keeps it, an atomic read under the cache lock) and its
/// object count, in a loom cell so that loom reports any access not ordered
/// by the cache lock or ownership.
struct ModelSlab {
    thread_free: AtomicUsize,
    owner: AtomicUsize,
    list: AtomicUsize,
    /// Objects in use; the slab holds `CAPACITY`.
    used: UnsafeCell<usize>,
    /// Times its span was returned (must end at exactly 1).
    freed: AtomicUsize,
}

const CAPACITY: usize = 1;

fn kind_of(v: usize) -> ListKind {
    [
        ListKind::None,
        ListKind::Partial,
        ListKind::Full,
        ListKind::Empty,
    ][v]
}

impl SlabOps for &ModelSlab {
    fn list(self) -> ListKind {
        kind_of(self.list.load(Relaxed))
    }
    fn is_unowned(self) -> bool {
        is_unowned(&self.thread_free)
    }
    fn has_remote_frees(self) -> bool {
        self.thread_free.load(Acquire) & !UNOWNED != 0
    }
    fn set_owner(self, owner: usize) {
        self.owner.store(owner, Relaxed);
    }
    fn push_remote(self, head: *mut u8, tail: *mut u8, dead_cache: bool) -> bool {
        push(
            &self.thread_free,
            head as usize,
            set_next(tail as usize),
            dead_cache,
        )
    }
    unsafe fn used(self) -> usize {
        self.used.with(|u| {
            // SAFETY: the caller holds the cache lock or owns the slab.
            unsafe { *u }
        })
    }
    unsafe fn has_local_free(self) -> bool {
        // SAFETY: `used` has this fn's contract (SlabOps): the caller owns
        // the slab, or holds the cache lock while it is unowned, so no write
        // to the count races this read (and loom's cell checks that it does
        // not).
        unsafe { self.used() < CAPACITY }
    }
    unsafe fn collect(self, owned: bool) -> usize {
        let n = drain(take(&self.thread_free, owned));
        self.used.with_mut(|u| {
            // SAFETY: the caller holds the cache lock or owns the slab.
            unsafe { *u -= n }
        });
        n
    }
}

/// A cache with one slab, driven by the real [`protocol`] functions.
struct ModelCache {
    dead: AtomicBool,
    refcnt: AtomicUsize,
    /// Whether the root's slot still holds the cache (and its reference).
    slotted: AtomicBool,
    destroyed: AtomicUsize,
    /// The cache lock.
    lock: Mutex<()>,
    /// How many slabs each list holds (the slab says which it is on), under
    /// the lock: a loom cell, so an access the lock does not order is caught.
    lens: UnsafeCell<[usize; 4]>,
    slab: ModelSlab,
}

/// The cache's lists, lent to the protocol while the cache lock is held.
struct Locked<'a> {
    cache: &'a ModelCache,
}

impl Locked<'_> {
    fn add(&mut self, kind: ListKind, n: isize) {
        self.cache.lens.with_mut(|lens| {
            // SAFETY: `Locked` exists only while the cache lock is held.
            let len = unsafe { &mut (*lens)[kind as usize] };
            *len = len.checked_add_signed(n).expect("list length");
        })
    }
}

impl<'a> ListOps<&'a ModelSlab> for Locked<'a> {
    unsafe fn link(&mut self, s: &'a ModelSlab, kind: ListKind) {
        assert_eq!(s.list(), ListKind::None, "linked twice");
        self.add(kind, 1);
        s.list.store(kind as usize, Relaxed);
    }
    unsafe fn unlink(&mut self, s: &'a ModelSlab) {
        let kind = s.list();
        if kind != ListKind::None {
            self.add(kind, -1);
            s.list.store(ListKind::None as usize, Relaxed);
        }
    }
    fn first(&self, kind: ListKind) -> Option<&'a ModelSlab> {
        (self.cache.slab.list() == kind).then_some(&self.cache.slab)
    }
    fn len(&self, kind: ListKind) -> usize {
        // SAFETY: `Locked` exists only while the cache lock is held.
        self.cache
            .lens
            .with(|lens| unsafe { (*lens)[kind as usize] })
    }
}

impl<'a> CacheOps for &'a ModelCache {
    type Slab = &'a ModelSlab;
    type Lists = Locked<'a>;
    type Flag = AtomicBool;
    type Count = AtomicUsize;

    fn with_lists<R>(self, f: impl FnOnce(&mut Locked<'a>) -> R) -> R {
        let _guard = self.lock.lock().unwrap();
        f(&mut Locked { cache: self })
    }
    fn dead(&self) -> &AtomicBool {
        &self.dead
    }
    fn refcnt(&self) -> &AtomicUsize {
        &self.refcnt
    }
    fn owns(self, s: &'a ModelSlab) -> bool {
        std::ptr::eq(s, &self.slab)
    }
    fn on_killed(self, _l: &mut Locked<'a>) {}
    fn clear_slot(self) -> bool {
        self.slotted.swap(false, AcqRel)
    }
    fn destroy(self) {
        self.destroyed.fetch_add(1, Relaxed);
    }
    unsafe fn free_slab(self, _l: &mut Locked<'a>, s: &'a ModelSlab) {
        // SAFETY: the caller holds the cache lock (`_l`).
        assert_eq!(unsafe { s.used() }, 0, "freed a slab with objects");
        assert_eq!(s.list(), ListKind::None, "freed a listed slab");
        s.freed.fetch_add(1, Relaxed);
        protocol::put(self); // the slab's reference
    }
}

/// A cache holding one slab with its one object in use, referenced by its
/// slot and by the slab; `owned`: the slab is a thread's (unlisted), else
/// unowned and on the full list.
fn one_slab_cache(owned: bool) -> Arc<ModelCache> {
    let cache = Arc::new(ModelCache {
        dead: AtomicBool::new(false),
        refcnt: AtomicUsize::new(2),
        slotted: AtomicBool::new(true),
        destroyed: AtomicUsize::new(0),
        lock: Mutex::new(()),
        lens: UnsafeCell::new([0; 4]),
        slab: ModelSlab {
            thread_free: AtomicUsize::new(if owned { 0 } else { UNOWNED }),
            owner: AtomicUsize::new(owned as usize),
            list: AtomicUsize::new(ListKind::None as usize),
            used: UnsafeCell::new(1),
            freed: AtomicUsize::new(0),
        },
    });
    if !owned {
        let c = &*cache;
        // SAFETY: the slab is unowned and on no list yet.
        c.with_lists(|l| unsafe { l.link(&c.slab, ListKind::Full) });
    }
    cache
}

/// A thread frees the slab's object through the real remote-free path.
fn remote_freer(cache: &Arc<ModelCache>) -> thread::JoinHandle<()> {
    let cache = cache.clone();
    thread::spawn(move || {
        let obj = object();
        let c = &*cache;
        protocol::free_remote(c, &c.slab, obj as *mut u8, obj as *mut u8);
    })
}

/// Every interleaving ends with the slab freed exactly once and the cache
/// destroyed exactly once, with no reference left (no dead cache left
/// behind, no object stranded on an unowned slab).
fn assert_all_gone(cache: &ModelCache) {
    assert_eq!(
        cache.slab.freed.load(Relaxed),
        1,
        "the dead cache's slab was never freed: its last object is stranded"
    );
    assert_eq!(cache.destroyed.load(Relaxed), 1);
    assert_eq!(cache.refcnt.load(Relaxed), 0);
    let _l = cache.lock.lock().unwrap();
    // SAFETY: cache lock held.
    cache.lens.with(|lens| assert_eq!(unsafe { *lens }, [0; 4]));
}

/// The last free of a dead cache's last object, on an unowned full slab,
/// races with the removal that kills the cache: the real `free_remote` (and
/// its `notify`) against the real `kill` (and its shrink and `put`s).
#[test]
fn loom_dead_cache_destruction_races_the_last_free() {
    model(|| {
        let cache = one_slab_cache(false);
        let freer = remote_freer(&cache);
        protocol::kill(&*cache);
        freer.join().unwrap();
        assert_all_gone(&cache);
    });
}

/// The same free races with the slab's owner giving it back (the real
/// `release`: collection and `place`) and then killing the cache.
#[test]
fn loom_dead_cache_release_and_kill_race_the_last_free() {
    model(|| {
        let cache = one_slab_cache(true);
        let freer = remote_freer(&cache);
        // SAFETY: this thread owns the slab, which is on no list.
        unsafe { protocol::release(&*cache, &cache.slab) };
        protocol::kill(&*cache);
        freer.join().unwrap();
        assert_all_gone(&cache);
    });
}

/// Three threads: the owner gives the slab back while the removal kills the
/// cache and another thread frees the slab's last object.
#[test]
fn loom_dead_cache_release_kill_and_last_free_all_race() {
    model(|| {
        let cache = one_slab_cache(true);
        let freer = remote_freer(&cache);
        let owner = {
            let cache = cache.clone();
            // SAFETY: the slab is this thread's until `release` gives it up.
            thread::spawn(move || unsafe { protocol::release(&*cache, &cache.slab) })
        };
        protocol::kill(&*cache);
        freer.join().unwrap();
        owner.join().unwrap();
        assert_all_gone(&cache);
    });
}
