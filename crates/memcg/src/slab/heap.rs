//! The allocation fast paths: a thread-local heap holding, per root cache,
//! the slab the thread allocates from, bound to the thread's current group.
//!
//! `alloc` pops the current slab's free list; `free` pushes onto it when the
//! calling thread owns the object's slab, or onto the slab's remote-free list
//! otherwise. Neither takes a lock, touches a global atomic, or reads a
//! per-object header; everything else (refills, binding to another group,
//! charging) lives in the slow path.

use super::cache::{Cache, RootCache, MAX_ROOTS};
use super::page::Slab;
use super::segment::Segment;
use crate::error::Result;
use crate::group::GroupInner;
use crate::sync::Arc;
use std::cell::Cell;
use std::ptr::{self, NonNull};

struct Heap {
    /// The group the heap is bound to: a counted reference (`Arc::into_raw`),
    /// or null for the root. Counted so the address cannot be reused by
    /// another group while the heap still holds its caches.
    bound: Cell<*const GroupInner>,
    slabs: [Cell<*const Slab>; MAX_ROOTS],
    /// Counted references to the caches of `bound`, by root index.
    caches: [Cell<*const Cache>; MAX_ROOTS],
    /// Whether the exit hook is registered.
    hooked: Cell<bool>,
}

thread_local! {
    static HEAP: Heap = const {
        Heap {
            bound: Cell::new(ptr::null()),
            slabs: [const { Cell::new(ptr::null()) }; MAX_ROOTS],
            caches: [const { Cell::new(ptr::null()) }; MAX_ROOTS],
            hooked: Cell::new(false),
        }
    };
}

struct ExitHook;

impl Drop for ExitHook {
    fn drop(&mut self) {
        // Thread exit: hand the slabs back to their caches, so that remote
        // frees of their objects are collected and dead caches can die.
        let _ = HEAP.try_with(flush);
    }
}

thread_local! {
    static EXIT_HOOK: ExitHook = const { ExitHook };
}

/// The calling thread's id as slabs record their owner: the address of its
/// heap, unique among live threads (a thread hands its slabs back at exit).
#[inline]
pub(crate) fn thread_id() -> usize {
    HEAP.with(|h| h as *const Heap as usize)
}

/// Allocate an object of `root`'s size, charged to the calling thread's group.
#[inline]
pub(crate) fn alloc(root: &'static RootCache) -> Result<NonNull<u8>> {
    HEAP.with(|h| {
        if h.bound.get() == crate::task::current_ptr() {
            let s = h.slabs[root.index].get();
            // SAFETY: a non-null slab in our heap is owned by this thread,
            // so its free list is ours.
            if let Some(obj) = unsafe { s.as_ref().and_then(|s| s.pop()) } {
                // SAFETY: pop returns object addresses, never null.
                return Ok(unsafe { NonNull::new_unchecked(obj) });
            }
        }
        alloc_slow(h, root)
    })
}

/// Free an object allocated by [`alloc`], from any thread.
///
/// # Safety
/// `obj` must be a live object of ours, freed once.
#[inline]
pub(crate) unsafe fn free(obj: *mut u8) {
    // SAFETY: caller's contract: obj lies in one of our segments.
    let slab = unsafe { Segment::of(obj as usize).slab_of(obj as usize) };
    if slab.owner() == thread_id() {
        // SAFETY: we own the slab, so its free list is ours.
        unsafe { slab.push_local(obj) };
        return;
    }
    free_remote(slab, obj);
}

#[cold]
fn free_remote(slab: &'static Slab, obj: *mut u8) {
    // Read before the push: once pushed, the object may be collected and the
    // slab reused. The cache stays valid memory (caches are type-stable) and
    // `notify` checks the slab under the cache lock.
    let cache = slab.cache();
    if slab.push_remote(obj, cache.is_dead()) {
        cache.notify(slab);
    }
}

#[cold]
fn alloc_slow(h: &Heap, root: &'static RootCache) -> Result<NonNull<u8>> {
    if !h.hooked.get() {
        h.hooked.set(true);
        EXIT_HOOK.with(|_| {});
    }
    let current = crate::task::current_ptr();
    if h.bound.get() != current {
        flush(h);
        bind(h);
    }
    let tid = h as *const Heap as usize;
    let i = root.index;
    // SAFETY: slabs in our heap are live slabs we own.
    if let Some(s) = unsafe { h.slabs[i].get().as_ref() } {
        // SAFETY: our own slab: collect the frees other threads made.
        if unsafe { s.collect(true) } > 0 {
            // SAFETY: as above; collect left free objects.
            let obj = unsafe { s.pop() }.expect("collected objects");
            // SAFETY: objects are never at address 0.
            return Ok(unsafe { NonNull::new_unchecked(obj) });
        }
        h.slabs[i].set(ptr::null());
        // SAFETY: we own the exhausted slab and give it back.
        unsafe { s.cache().release(s) };
    }
    // SAFETY: caches in our heap are counted references.
    let cache = match unsafe { h.caches[i].get().as_ref() } {
        Some(c) => c,
        None => {
            // SAFETY: `bound` is a counted reference or null.
            let group = unsafe { h.bound.get().as_ref() };
            let c = match group {
                // A group removed while we were bound (hierarchy teardown):
                // allocate where its context bills now.
                Some(g) if g.is_dying() => {
                    let owner = g.ctx.as_ref().map(|c| c.with_owner(|o| o.clone()));
                    root.cache_for(owner.as_deref())
                }
                g => root.cache_for(g),
            };
            h.caches[i].set(c);
            c
        }
    };
    let slab = cache.refill(tid)?;
    h.slabs[i].set(slab);
    // SAFETY: refill returns a slab we own, with free objects.
    let obj = unsafe { slab.pop() }.expect("a refilled slab has free objects");
    // SAFETY: objects are never at address 0.
    Ok(unsafe { NonNull::new_unchecked(obj) })
}

/// Bind the heap to the calling thread's current group.
fn bind(h: &Heap) {
    let group = crate::task::current_group();
    h.bound.set(group.map_or(ptr::null(), Arc::into_raw));
}

/// Give every slab and cache back and unbind.
fn flush(h: &Heap) {
    for i in 0..MAX_ROOTS {
        let c = h.caches[i].replace(ptr::null());
        let s = h.slabs[i].replace(ptr::null());
        // SAFETY: our own slab.
        if let Some(s) = unsafe { s.as_ref() } {
            // SAFETY: we own it and give it back.
            unsafe { s.cache().release(s) };
        }
        // SAFETY: a counted reference taken in alloc_slow.
        if let Some(c) = unsafe { c.as_ref() } {
            c.put();
        }
    }
    let b = h.bound.replace(ptr::null());
    if !b.is_null() {
        // SAFETY: a counted reference from `bind`.
        drop(unsafe { Arc::from_raw(b) });
    }
}

/// Give the calling thread's slabs back (before it changes group for good,
/// or so that a test sees caches settle).
pub(crate) fn flush_local() {
    let _ = HEAP.try_with(flush);
}
