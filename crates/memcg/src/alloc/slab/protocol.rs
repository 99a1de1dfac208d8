//! The decisions of a cache's slab lists that race with remote frees: a
//! remote free and its notification, an owner giving a slab back, shrinking,
//! killing a cache, and dropping a cache reference (S6, S9).
//!
//! Written once, generic over the cache, its lists, its slabs and the
//! atomics of the dead flag and the reference count, the way
//! [`remote`](super::remote) is generic over its atomic word: production
//! instantiates them with [`Cache`](super::cache::Cache), its lists and
//! [`Slab`](super::slab::Slab) (std atomics, monomorphised, so nothing is
//! added to any path); the loom model instantiates the very same functions
//! with loom's mutex and atomics on one slab (DESIGN.md §8).
//!
//! What the traits leave to the implementor are the primitives: taking the
//! cache lock, linking a slab on a list, the slab's counters, collecting its
//! remote frees ([`remote::take`](super::remote::take)), returning its span,
//! clearing the root's slot and queueing a destroyed cache.

use super::cache::EMPTY_KEEP;
use super::slab::ListKind;
use std::sync::atomic::Ordering::*;

/// A slab, as the list decisions see it (a reference: `Copy`).
pub(crate) trait SlabOps: Copy {
    /// Which cache list the slab is on; stable under the cache lock.
    fn list(self) -> ListKind;
    fn is_unowned(self) -> bool;
    fn has_remote_frees(self) -> bool;
    fn set_owner(self, owner: usize);
    /// Push `obj` on the remote-free list; true when the cache must be
    /// notified ([`remote::push`](super::remote::push)).
    /// Push the chain `head..=tail` (linked through first words) onto the
    /// remote list with one compare-and-swap.
    fn push_remote(self, head: *mut u8, tail: *mut u8, dead_cache: bool) -> bool;
    /// Objects in use.
    ///
    /// # Safety
    /// Owner only, or the cache lock held while unowned.
    unsafe fn used(self) -> usize;
    /// Whether an object can be popped.
    ///
    /// # Safety
    /// As for [`used`](Self::used).
    unsafe fn has_local_free(self) -> bool;
    /// Move the remote frees to the local list, leaving the slab owned or
    /// not; returns how many moved.
    ///
    /// # Safety
    /// Owner only, or the cache lock held while changing ownership.
    unsafe fn collect(self, owned: bool) -> usize;
}

/// A cache's partial, full and empty lists, under the cache lock.
pub(crate) trait ListOps<S> {
    /// Put `s` on list `kind`.
    ///
    /// # Safety
    /// `s` is an unowned slab of the cache, on no list.
    unsafe fn link(&mut self, s: S, kind: ListKind);
    /// Take `s` off its list, if it is on one.
    ///
    /// # Safety
    /// `s` is a slab of the cache.
    unsafe fn unlink(&mut self, s: S);
    fn first(&self, kind: ListKind) -> Option<S>;
    fn len(&self, kind: ListKind) -> usize;
}

/// The cache's dead flag: std's or loom's `AtomicBool`.
pub(crate) trait Flag {
    fn load_acquire(&self) -> bool;
    fn store_release(&self, v: bool);
}

/// The cache's reference count: std's or loom's `AtomicUsize`.
pub(crate) trait Count {
    /// Drop one; returns the count before.
    fn sub_release(&self) -> usize;
    /// The acquire fence that orders the last drop after all others.
    fn fence_acquire(&self);
}

macro_rules! impl_atomics {
    ($flag:ty, $count:ty, $fence:path) => {
        impl Flag for $flag {
            #[inline]
            fn load_acquire(&self) -> bool {
                self.load(Acquire)
            }
            #[inline]
            fn store_release(&self, v: bool) {
                self.store(v, Release)
            }
        }
        impl Count for $count {
            #[inline]
            fn sub_release(&self) -> usize {
                self.fetch_sub(1, Release)
            }
            #[inline]
            fn fence_acquire(&self) {
                $fence(Acquire)
            }
        }
    };
}

impl_atomics!(
    std::sync::atomic::AtomicBool,
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::fence
);
#[cfg(loom)]
impl_atomics!(
    loom::sync::atomic::AtomicBool,
    loom::sync::atomic::AtomicUsize,
    loom::sync::atomic::fence
);

/// A cache (a reference: `Copy`) with its primitives.
pub(crate) trait CacheOps: Copy {
    type Slab: SlabOps;
    type Lists: ListOps<Self::Slab>;
    type Flag: Flag;
    type Count: Count;

    /// Run `f` with the cache lock held.
    fn with_lists<R>(self, f: impl FnOnce(&mut Self::Lists) -> R) -> R;
    fn dead(&self) -> &Self::Flag;
    fn refcnt(&self) -> &Self::Count;
    /// Whether `s` (type-stable memory, maybe reused) is a slab of this
    /// cache. Cache lock held.
    fn owns(self, s: Self::Slab) -> bool;
    /// Bookkeeping of a cache just marked dead; cache lock held.
    fn on_killed(self, l: &mut Self::Lists);
    /// Take the cache out of its root's slot; true if it was there (the
    /// slot's reference is then the caller's to drop).
    fn clear_slot(self) -> bool;
    /// The last reference is gone: queue the cache for destruction.
    fn destroy(self);
    /// Return an empty, unlisted slab's span, uncharge it and drop the
    /// slab's reference to the cache ([`put`]).
    ///
    /// # Safety
    /// Cache lock held (`l`); `s` is a slab of this cache, empty, unowned
    /// and on no list.
    unsafe fn free_slab(self, l: &mut Self::Lists, s: Self::Slab);
}

#[inline]
pub(crate) fn is_dead<C: CacheOps>(c: C) -> bool {
    c.dead().load_acquire()
}

/// Drop a reference; the last one destroys the cache (S9).
#[inline]
pub(crate) fn put<C: CacheOps>(c: C) {
    if c.refcnt().sub_release() != 1 {
        return;
    }
    c.refcnt().fence_acquire();
    c.destroy();
}

/// Put an unowned slab on the right list, or free it if it is empty and not
/// worth keeping (always, in a dead cache).
///
/// # Safety
/// Cache lock held (`l`); `s` is an unowned slab of `c` on no list.
pub(crate) unsafe fn place<C: CacheOps>(c: C, l: &mut C::Lists, s: C::Slab) {
    // SAFETY: this fn's contract is that the caller holds `c`'s lock (`l`)
    // and `s` is an unowned slab of `c` on no list. So `used` and
    // `has_local_free` may read its counts (cache lock held while unowned);
    // `link` gets an unowned slab of the cache on no list; and `free_slab`
    // gets, besides, an empty one: `used() == 0` just now, and the count
    // cannot change meanwhile, since with no owner only a holder of the
    // cache lock (we are) pops or collects.
    unsafe {
        if s.used() == 0 {
            if is_dead(c) || l.len(ListKind::Empty) >= EMPTY_KEEP {
                c.free_slab(l, s);
            } else {
                l.link(s, ListKind::Empty);
            }
        } else if !s.has_local_free() {
            l.link(s, ListKind::Full);
        } else {
            l.link(s, ListKind::Partial);
        }
    }
}

/// Its owner gives `s` up: collect its remote frees and put it on the list
/// its fill says, or free it.
///
/// # Safety
/// The caller owns `s`, a slab of `c`, on no list.
pub(crate) unsafe fn release<C: CacheOps>(c: C, s: C::Slab) {
    c.with_lists(|l| {
        s.set_owner(0);
        // SAFETY: we own the slab until `collect(false)` gives it up, and we
        // hold the cache lock from there on.
        unsafe {
            s.collect(false);
            place(c, l, s);
        }
    })
}

/// A free of `obj` by a thread that does not own `s`, a slab of `c` (read
/// before the push: once pushed, the object may be collected and the slab
/// reused; caches are type-stable and `notify` checks under the lock).
#[inline]
pub(crate) fn free_remote<C: CacheOps>(c: C, s: C::Slab, head: *mut u8, tail: *mut u8) {
    if s.push_remote(head, tail, is_dead(c)) {
        notify(c, s);
    }
}

/// A remote free found `s` unowned and needing attention. A live cache moves
/// a full slab to the partial list, where any thread's refill collects its
/// remote frees; a dead cache (whose every remote free notifies) collects it
/// and frees it once empty. Slabs that remote frees empty in a live cache
/// are freed by the refill that takes them beyond the empty ones kept, or by
/// shrink.
#[cold]
#[inline(never)]
pub(crate) fn notify<C: CacheOps>(c: C, s: C::Slab) {
    c.with_lists(|l| {
        // The slab may have been taken, or freed and reused, meanwhile; its
        // metadata is type-stable, so checking is safe.
        if !c.owns(s) || !s.is_unowned() || s.list() == ListKind::None {
            return;
        }
        // SAFETY: cache lock held; the slab is unowned and on our lists.
        unsafe {
            if is_dead(c) {
                l.unlink(s);
                s.collect(false);
                place(c, l, s);
            } else if s.list() == ListKind::Full && s.has_remote_frees() {
                // Only with a free object waiting: since the free that called
                // us, a refill may have collected it, used the slab up and
                // put it back as full.
                l.unlink(s);
                l.link(s, ListKind::Partial);
            }
        }
    })
}

/// Free empty slabs, and partial ones that remote frees emptied, keeping
/// `keep` empty ones. Never touches full slabs or owned ones. Returns the
/// slabs looked at.
pub(crate) fn shrink_locked<C: CacheOps>(c: C, l: &mut C::Lists, keep: usize) -> usize {
    let mut touched = 0;
    let mut partial = Vec::with_capacity(l.len(ListKind::Partial));
    while let Some(s) = l.first(ListKind::Partial) {
        // SAFETY: cache lock held; listed slabs are unowned.
        unsafe {
            l.unlink(s);
            s.collect(false);
        }
        partial.push(s);
    }
    for s in partial {
        touched += 1;
        // SAFETY: cache lock held; the slab is unowned and unlisted.
        unsafe { place(c, l, s) };
    }
    while l.len(ListKind::Empty) > keep {
        let Some(s) = l.first(ListKind::Empty) else {
            crate::reentrancy::broken("slab cache: the empty list's length counts a slab it lacks")
        };
        touched += 1;
        // SAFETY: cache lock held; an empty listed slab.
        unsafe {
            l.unlink(s);
            c.free_slab(l, s);
        }
    }
    touched
}

/// S6: the group is gone. Mark the cache dead, take it out of its root's
/// slot, and shrink it. Returns the slabs looked at (S8: never the full
/// ones, so the work does not grow with live objects). The caller holds a
/// reference.
pub(crate) fn kill<C: CacheOps>(c: C) -> usize {
    c.with_lists(|l| {
        c.dead().store_release(true);
        c.on_killed(l);
    });
    if c.clear_slot() {
        put(c); // the slot's reference
    }
    c.with_lists(|l| shrink_locked(c, l, 0))
}
