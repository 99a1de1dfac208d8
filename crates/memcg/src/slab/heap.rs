//! The allocation fast paths: a thread-local heap holding, per root cache,
//! the slab the thread allocates from, bound to the thread's current group.
//! A second heap serves [`Group::allocator`](crate::Group::allocator)
//! handles, bound to the last handle's group.
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
    /// Set once the thread's exit hook ran: allocations made later (by other
    /// thread-local destructors) must not keep slabs owned by a dying thread.
    exited: Cell<bool>,
}

impl Heap {
    const fn new() -> Heap {
        Heap {
            bound: Cell::new(ptr::null()),
            slabs: [const { Cell::new(ptr::null()) }; MAX_ROOTS],
            caches: [const { Cell::new(ptr::null()) }; MAX_ROOTS],
            hooked: Cell::new(false),
            exited: Cell::new(false),
        }
    }
}

thread_local! {
    /// The heap of the thread's current group.
    static HEAP: Heap = const { Heap::new() };
    /// The heap of `Group::allocator` handles.
    static HANDLE_HEAP: Heap = const { Heap::new() };
}

struct ExitHook;

impl Drop for ExitHook {
    fn drop(&mut self) {
        // Thread exit: hand the slabs back to their caches, so that remote
        // frees of their objects are collected and dead caches can die.
        for heap in [&HEAP, &HANDLE_HEAP] {
            let _ = heap.try_with(|h| {
                flush(h);
                h.exited.set(true);
            });
        }
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

/// The fast path: an object of `root`'s size from the calling thread's
/// current slab, or `None` when the slow path must run. Returns in a
/// register; the fallible slow path stays out of line.
#[inline(always)]
pub(crate) fn alloc_fast(root: &'static RootCache) -> Option<NonNull<u8>> {
    HEAP.with(|h| pop(h, root, crate::task::current_ptr()))
}

/// Allocate an object of `root`'s size, charged to the calling thread's
/// group. Over a limit: fail, or, for the global allocator (`global`),
/// follow its [`LimitPolicy`](crate::LimitPolicy), read here only.
#[cold]
#[inline(never)]
pub(crate) fn alloc_slow_path(root: &'static RootCache, global: bool) -> Result<NonNull<u8>> {
    HEAP.with(|h| {
        let target = crate::task::current_ptr();
        if let Some(obj) = pop(h, root, target) {
            return Ok(obj);
        }
        let nofail = global && crate::limit_policy() == crate::LimitPolicy::Overcharge;
        alloc_slow(h, root, target, nofail, crate::task::current_group)
    })
}

/// Allocate an object of `root`'s size, charged to the calling thread's
/// group (see [`alloc_slow_path`] for `global`).
#[inline]
pub(crate) fn alloc(root: &'static RootCache, global: bool) -> Result<NonNull<u8>> {
    match alloc_fast(root) {
        Some(obj) => Ok(obj),
        None => alloc_slow_path(root, global),
    }
}

/// Allocate an object of `root`'s size charged to `group`, whatever the
/// calling thread's group.
#[inline]
pub(crate) fn alloc_for(root: &'static RootCache, group: &Arc<GroupInner>) -> Result<NonNull<u8>> {
    HANDLE_HEAP.with(|h| {
        let target = Arc::as_ptr(group);
        if let Some(obj) = pop(h, root, target) {
            return Ok(obj);
        }
        alloc_slow(h, root, target, false, || Some(group.clone()))
    })
}

/// The fast path: pop the current slab of a heap bound to `target`.
#[inline(always)]
fn pop(h: &Heap, root: &'static RootCache, target: *const GroupInner) -> Option<NonNull<u8>> {
    if h.bound.get() != target {
        return None;
    }
    let s = h.slabs[root.index].get();
    // SAFETY: a non-null slab in our heap is owned by this thread, so its
    // free list is ours.
    let obj = unsafe { s.as_ref()?.pop()? };
    // SAFETY: pop returns object addresses, never null.
    Some(unsafe { NonNull::new_unchecked(obj) })
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
fn alloc_slow(
    h: &Heap,
    root: &'static RootCache,
    target: *const GroupInner,
    nofail: bool,
    target_arc: impl FnOnce() -> Option<Arc<GroupInner>>,
) -> Result<NonNull<u8>> {
    let _internal = crate::global::Internal::enter();
    if !h.hooked.get() {
        h.hooked.set(true);
        if EXIT_HOOK.try_with(|_| {}).is_err() {
            h.exited.set(true);
        }
    }
    if h.bound.get() != target {
        flush(h);
        h.bound.set(target_arc().map_or(ptr::null(), Arc::into_raw));
    }
    let result = refill_and_pop(h, root, nofail);
    if h.exited.get() {
        // A thread past its exit hook keeps nothing.
        flush(h);
    }
    result
}

fn refill_and_pop(h: &Heap, root: &'static RootCache, nofail: bool) -> Result<NonNull<u8>> {
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
    let slab = cache.refill(tid, nofail)?;
    h.slabs[i].set(slab);
    // SAFETY: refill returns a slab we own, with free objects.
    let obj = unsafe { slab.pop() }.expect("a refilled slab has free objects");
    // SAFETY: objects are never at address 0.
    Ok(unsafe { NonNull::new_unchecked(obj) })
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
    let _internal = crate::global::Internal::enter();
    let _ = HEAP.try_with(flush);
    let _ = HANDLE_HEAP.try_with(flush);
}

/// Give back the calling thread's current slabs that are empty (reclaim just
/// freed their objects), so that shrinking can release them.
pub(crate) fn trim_local() {
    for heap in [&HEAP, &HANDLE_HEAP] {
        let _ = heap.try_with(|h| {
            for cell in &h.slabs {
                // SAFETY: slabs in our heap are live slabs we own.
                let Some(s) = (unsafe { cell.get().as_ref() }) else {
                    continue;
                };
                // SAFETY: we own the slab; collect first so `used` is exact.
                if unsafe {
                    s.collect(true);
                    s.used()
                } == 0
                {
                    cell.set(ptr::null());
                    // SAFETY: we own it and give it back; the heap keeps its
                    // counted reference on the cache.
                    unsafe { s.cache().release(s) };
                }
            }
        });
    }
}
