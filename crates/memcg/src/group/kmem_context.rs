//! Kmem contexts, the tiny reparentable owners of kmem charges (the
//! seed's `mem_cgroup_kmem_context`, the kernel's later `obj_cgroup`).
//!
//! Every kmem charge records a context, never a group. A context points at the
//! group its charges are billed to and holds one reference on it. When that
//! group is removed, the pointer moves to the parent (and the contexts
//! reparented to the group earlier move with it: the seed's list splice), so
//! the removed group is freed as soon as its last handle goes, while the
//! context lives on until its last charge is uncharged.
//!
//! The owner pointer is read inside a *reader section*, the stand-in for the
//! kernel's RCU read lock: a reader announces itself on one of two counters,
//! then reads the pointer with a read-modify-write; a writer swaps the pointer
//! and waits until both counters have drained before dropping its reference on
//! the old owner. Readers never block and never take a lock. Two counters
//! (selected by an epoch the writer flips) keep a writer from being starved by
//! a steady stream of readers, as in SRCU.
//!
//! The last reference to a context does not destroy it inline: the uncharge
//! that drops it may run inside the allocator or under a caller's lock, so the
//! context is pushed on its hierarchy's deferred queue (the seed's
//! `destroy_work`) with one lock-free push that never allocates.

use crate::group::{Common, GroupInner};
use crate::sync::{spin_wait, Arc, AtomicPtr, AtomicUsize, Ordering::*};
use std::ptr::{self, NonNull};

/// The number of contexts alive in the process, the seed's
/// `memcg_kmem_enabled_key`: while it is 0 no group but the root exists and
/// allocation paths skip accounting altogether (S10).
static LIVE_CONTEXTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether any kmem context exists, i.e. whether accounting can be needed.
#[inline]
pub fn accounting_enabled() -> bool {
    LIVE_CONTEXTS.load(std::sync::atomic::Ordering::Relaxed) != 0
}

/// The bytes of one kmem context: what a removed group leaves behind while
/// its charges live (S3). Compare with [`group_size`](crate::group_size).
pub fn context_size() -> usize {
    std::mem::size_of::<KmemContext>()
}

/// A kmem context. Reached only through [`CtxRef`].
pub(crate) struct KmemContext {
    /// `Arc::into_raw` of the owner group, or null before the first owner is
    /// set. Changed only by [`CtxRef::set_owner`] under the hierarchy's
    /// context lock.
    owner: AtomicUsize,
    /// Readers inside a section, by epoch parity.
    readers: [AtomicUsize; 2],
    epoch: AtomicUsize,
    /// References: the owning group's, one per charged kmem allocation, one per
    /// slab cache, one per charge stock holding it.
    refcnt: AtomicUsize,
    /// Position in the owner's list of reparented contexts, `usize::MAX` when
    /// not listed. Protected by the context lock.
    pub(crate) list_index: AtomicUsize,
    /// Link of the deferred destruction queue.
    next_deferred: AtomicPtr<KmemContext>,
    /// Bytes charged through the context (in whole pages) that no object or
    /// object stock uses: the sub-page remainder of byte charges (S11), the
    /// kernel's `nr_charged_bytes`. It stays with the context, so it moves
    /// with it on reparenting; below a page whenever no stock refill or
    /// drain is running on it.
    pub(crate) nr_bytes: AtomicUsize,
    common: checked::CommonRef,
}

/// The context's reference to its hierarchy, private even to this module, so
/// that every read goes through [`KmemContext::common`]: under loom that
/// read is checked against the context's destruction.
mod checked {
    use crate::group::Common;
    use crate::sync::Arc;

    pub(super) struct CommonRef {
        common: Arc<Common>,
        /// Under loom, destruction writes this cell and every read of
        /// `common` reads it, so the model checker reports a read not
        /// ordered before the destruction (a use after free).
        #[cfg(loom)]
        alive: loom::cell::UnsafeCell<()>,
    }

    impl CommonRef {
        pub(super) fn new(common: Arc<Common>) -> CommonRef {
            CommonRef {
                common,
                #[cfg(loom)]
                alive: loom::cell::UnsafeCell::new(()),
            }
        }

        #[inline]
        pub(super) fn get(&self) -> &Arc<Common> {
            #[cfg(loom)]
            self.alive.with(|_| ());
            &self.common
        }

        /// Under loom: the context is destroyed. Drops the reference and
        /// keeps the cell, so a later read is reported instead of reading
        /// freed memory.
        ///
        /// # Safety
        /// Called once, on a context nobody else can reach; `get` must not
        /// be called afterwards except to be reported.
        #[cfg(loom)]
        pub(super) unsafe fn destroy(&mut self) {
            self.alive.with_mut(|_| ());
            // SAFETY: this fn runs once per context (its contract), and the
            // context is leaked by `free`, so its own drop never runs: the
            // `Arc<Common>` is dropped here and only here. That `get` is not
            // called afterwards is the contract's other half; `alive` reports
            // a `get` that races this destruction, not one ordered after it.
            unsafe { std::ptr::drop_in_place(&mut self.common) };
        }
    }
}

/// A counted reference to a kmem context.
pub(crate) struct CtxRef(NonNull<KmemContext>);

// SAFETY: a KmemContext is only atomics and an Arc<Common> (Send + Sync); the
// owner it points at is a GroupInner, which is Send + Sync. A CtxRef keeps the
// context alive (counted), so sending or sharing it across threads is sound.
unsafe impl Send for CtxRef {}
// SAFETY: through a shared `&CtxRef` a thread reaches only `&KmemContext`
// (`ctx`, `Deref`) and the atomic count (`clone`, `get_refs`, `put_refs`),
// and the context lives while the shared CtxRef holds its count. A
// KmemContext is atomics and an `Arc<Common>`, all Sync; under loom also the
// `alive` cell of `()`, whose every access loom itself checks.
unsafe impl Sync for CtxRef {}

impl CtxRef {
    /// A new context with no owner yet, holding its first reference.
    pub(crate) fn new(common: Arc<Common>) -> CtxRef {
        LIVE_CONTEXTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        common.contexts_live.fetch_add(1, Relaxed);
        let ctx = Box::new(KmemContext {
            owner: AtomicUsize::new(0),
            readers: [AtomicUsize::new(0), AtomicUsize::new(0)],
            epoch: AtomicUsize::new(0),
            refcnt: AtomicUsize::new(1),
            list_index: AtomicUsize::new(usize::MAX),
            next_deferred: AtomicPtr::new(ptr::null_mut()),
            nr_bytes: AtomicUsize::new(0),
            common: checked::CommonRef::new(common),
        });
        CtxRef(NonNull::from(Box::leak(ctx)))
    }

    pub(crate) fn ctx(&self) -> &KmemContext {
        // SAFETY: this reference is counted, so the context is not destroyed
        // (destruction happens only after refcnt reaches 0) while `self` lives.
        unsafe { self.0.as_ref() }
    }

    /// The address of the context, for identity comparisons.
    pub(crate) fn as_ptr(&self) -> *const KmemContext {
        self.0.as_ptr()
    }

    /// Give up this reference without dropping it; see [`CtxRef::from_raw`].
    pub(crate) fn into_raw(self) -> *const KmemContext {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    /// Take `n` more references, one per page charged through an object
    /// stock: a context lives while bytes charged through it do.
    pub(crate) fn get_refs(&self, n: usize) {
        // Relaxed: as for clone.
        self.ctx().refcnt.fetch_add(n, Relaxed);
    }

    /// Drop `n` references taken by [`CtxRef::get_refs`]. Never the last
    /// ones: `self` holds another.
    pub(crate) fn put_refs(&self, n: usize) {
        let before = self.ctx().refcnt.fetch_sub(n, Release);
        debug_assert!(before > n, "page references outnumber the context's");
    }

    /// A new counted reference to the context at `p`.
    ///
    /// # Safety
    /// The context at `p` must be kept alive by a reference the caller can
    /// vouch for until this returns (e.g. the charge of a live object).
    pub(crate) unsafe fn clone_raw(p: *const KmemContext) -> CtxRef {
        // SAFETY: this fn's contract: a reference the caller vouches for
        // keeps the context at `p` alive until we return, so `&*p` is valid,
        // and the count it holds is not 0, so this increment cannot revive a
        // context already queued for destruction.
        let ctx = unsafe { &*p };
        ctx.refcnt.fetch_add(1, Relaxed);
        CtxRef(NonNull::from(ctx))
    }

    /// A counted reference to `ctx` unless its last one is gone (it is then
    /// queued for destruction, though maybe still listed).
    pub(crate) fn tryget(ctx: &KmemContext) -> Option<CtxRef> {
        let mut n = ctx.refcnt.load(Relaxed);
        while n != 0 {
            match ctx.refcnt.compare_exchange_weak(n, n + 1, Relaxed, Relaxed) {
                Ok(_) => return Some(CtxRef(NonNull::from(ctx))),
                Err(seen) => n = seen,
            }
        }
        None
    }

    /// Take back a reference given up by [`CtxRef::into_raw`].
    ///
    /// # Safety
    /// `p` must come from `into_raw` and be taken back at most once.
    pub(crate) unsafe fn from_raw(p: *const KmemContext) -> CtxRef {
        // SAFETY: this fn's contract: `p` came from `into_raw`, which returns
        // the pointer of a `NonNull`, so it is not null; and it is taken back
        // at most once, so the CtxRef made here owns the count `into_raw`
        // gave up, and no other does.
        CtxRef(unsafe { NonNull::new_unchecked(p as *mut KmemContext) })
    }
}

impl Clone for CtxRef {
    fn clone(&self) -> Self {
        // Relaxed: a new reference is made from an existing one, which keeps
        // the context alive; no data is published by the increment.
        self.ctx().refcnt.fetch_add(1, Relaxed);
        CtxRef(self.0)
    }
}

impl Drop for CtxRef {
    fn drop(&mut self) {
        let ctx = self.ctx();
        // Release orders our last uses of the context before the destruction
        // that the thread seeing 0 performs after its acquire fence.
        if ctx.refcnt.fetch_sub(1, Release) != 1 {
            return;
        }
        crate::sync::fence_acquire();
        // S9: never destroy inline. The push neither allocates nor locks.
        // Once it succeeds the context belongs to whoever runs the queue (the
        // worker, or a quiesce on another thread), which may free it and the
        // hierarchy with it at once: nothing of either is read after it.
        let queue = &ctx.common().deferred;
        let node = self.0.as_ptr();
        let mut head = queue.load(Relaxed);
        loop {
            ctx.next_deferred.store(head, Relaxed);
            match queue.compare_exchange_weak(head, node, Release, Relaxed) {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
        crate::group::deferred::after_publish();
        crate::group::deferred::wake();
    }
}

/// Destroy every context on `common`'s deferred queue. Runs in process
/// context (the deferred worker or a quiesce), never inside an uncharge.
/// Returns how many were destroyed.
/// The caller holds an `Arc` on `common`: the contexts destroyed here drop
/// theirs.
pub(crate) fn run_deferred(common: &Arc<Common>) -> usize {
    let _running = common.deferred_lock.lock();
    let mut destroyed = 0;
    loop {
        // Work of the layers above first (dead slab caches): it holds
        // references on contexts.
        let caches = crate::group::deferred::run_registered();
        let contexts = run_deferred_contexts(common);
        destroyed += contexts;
        if caches == 0 && contexts == 0 {
            return destroyed;
        }
    }
}

fn run_deferred_contexts(common: &Arc<Common>) -> usize {
    let mut destroyed = 0;
    let _ctx_lock = common.ctx_lock.lock();
    loop {
        // Take the whole stack at once: no ABA, since nodes are never popped
        // one by one while others push.
        let mut node = common.deferred.swap(ptr::null_mut(), Acquire);
        if node.is_null() {
            return destroyed;
        }
        while !node.is_null() {
            // SAFETY: nodes on the queue are contexts whose refcnt reached 0;
            // nobody else references them, and each is on the queue once. We
            // own the Box from here on.
            let ctx = unsafe { Box::from_raw(node) };
            node = ctx.next_deferred.load(Relaxed);
            destroy(ctx);
            destroyed += 1;
        }
    }
}

/// The seed's `memcg_kmem_context_destroy_func`, with the context lock held.
fn destroy(ctx: Box<KmemContext>) {
    debug_assert_eq!(
        ctx.nr_bytes.load(Relaxed),
        0,
        "bytes charged through a context outlive its last reference"
    );
    let owner = ctx.owner.load(Acquire) as *const GroupInner;
    if !owner.is_null() {
        // SAFETY: the context still holds its counted reference on `owner`;
        // taking it back here is the one place that reference is dropped.
        let owner = unsafe { Arc::from_raw(owner) };
        owner.unlist_context(&ctx);
        drop(owner);
    }
    // Counted before the deferred lock is released, so a quiesce that
    // returns has seen every destruction a concurrent pass made.
    ctx.common().contexts_live.fetch_sub(1, Relaxed);
    ctx.common().contexts_destroyed.fetch_add(1, Relaxed);
    LIVE_CONTEXTS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    free(ctx);
}

#[cfg(not(loom))]
fn free(ctx: Box<KmemContext>) {
    drop(ctx);
}

/// Under loom: mark the context freed for the checker, drop what it owns,
/// and keep its memory, so that a read after destruction is reported by
/// loom instead of reading freed memory.
#[cfg(loom)]
fn free(ctx: Box<KmemContext>) {
    let ctx = Box::leak(ctx);
    // SAFETY: the context is unreachable (its refcnt is 0 and it is off
    // the queue), and this is its one destruction.
    unsafe { ctx.common.destroy() };
}

impl KmemContext {
    /// The state shared with the context's hierarchy.
    #[inline]
    pub(crate) fn common(&self) -> &Arc<Common> {
        self.common.get()
    }

    /// Run `f` on the group the context currently bills, inside a reader
    /// section: the group cannot be freed before `f` returns, though it may be
    /// removed (dying) meanwhile. `f` must not block on the hierarchy's locks.
    #[inline]
    pub(crate) fn with_owner<R>(&self, f: impl FnOnce(&Arc<GroupInner>) -> R) -> R {
        // Inside the fork gate: a fork never copies a section in progress,
        // which the child could not leave.
        #[cfg(not(loom))]
        let _gate = crate::fork::Gate::enter();
        let ctx = self;
        // Acquire pairs with the writer's epoch flip: a reader that sees the
        // flip also sees the new owner, so it may count on either index.
        let e = ctx.epoch.load(Acquire) & 1;
        ctx.readers[e].fetch_add(1, AcqRel);
        // Leaves the section on every exit, a panic in `f` included (a
        // debug assertion of the page counter): a count left behind would
        // make the next owner change wait forever.
        let _leave = LeaveOnDrop(&ctx.readers[e]);
        // A read-modify-write, not a load: if it reads the old owner it is
        // ordered before the writer's swap, which then synchronizes with it,
        // so the writer's later check of `readers` sees our increment.
        let owner = ctx.owner.fetch_add(0, AcqRel) as *const GroupInner;
        debug_assert!(!owner.is_null(), "kmem context used before it has an owner");
        // SAFETY: the context holds a counted reference on `owner` (Arc::into_raw),
        // which a writer drops only after the pointer was replaced and both reader
        // counters were seen at 0 after the replacement (see set_owner); we are
        // counted in `readers[e]`, so the group is alive until we leave. The
        // ManuallyDrop view borrows the context's count without releasing it;
        // clones made by `f` are counts of their own.
        let owner = std::mem::ManuallyDrop::new(unsafe { Arc::from_raw(owner) });
        f(&owner)
    }

    /// Point the context at `owner`, and wait out every reader that may still
    /// see the previous owner before dropping the context's reference on it.
    /// The caller holds the hierarchy's context lock (one writer at a time).
    pub(crate) fn set_owner(&self, owner: Arc<GroupInner>) {
        let ctx = self;
        let new = Arc::into_raw(owner) as usize;
        let old = ctx.owner.swap(new, AcqRel);
        // Both counters: a reader that saw `old` incremented one of them
        // before our swap. Flip first so that readers arriving meanwhile count
        // on the other index and the one we wait on drains.
        for _ in 0..2 {
            let e = ctx.epoch.fetch_add(1, AcqRel) & 1;
            while ctx.readers[e].load(Acquire) != 0 {
                spin_wait();
            }
        }
        if old != 0 {
            // SAFETY: `old` came from Arc::into_raw in a previous set_owner and
            // is dropped exactly once, here (the swap took it out of `owner`);
            // no reader can still use it: both reader counters were seen at 0
            // after the swap, so every section that read `old` has left.
            drop(unsafe { Arc::from_raw(old as *const GroupInner) });
        }
    }

    /// The current owner's address, for identity checks under the context lock.
    pub(crate) fn owner_ptr(&self) -> *const GroupInner {
        self.owner.load(Acquire) as *const GroupInner
    }
}

/// Leaves a reader section when dropped (see [`KmemContext::with_owner`]).
struct LeaveOnDrop<'a>(&'a AtomicUsize);

impl Drop for LeaveOnDrop<'_> {
    fn drop(&mut self) {
        // Release: the section's reads of the owner happen before a writer
        // that sees the count drop frees it.
        self.0.fetch_sub(1, Release);
    }
}

impl std::ops::Deref for CtxRef {
    type Target = KmemContext;

    fn deref(&self) -> &KmemContext {
        self.ctx()
    }
}

/// An uncounted pointer to a context, as kept on an owner's list of
/// reparented contexts. Valid while the context is listed: destruction
/// unlists it first, under the context lock, which every user of the list holds.
#[derive(Clone, Copy)]
pub(crate) struct CtxPtr(NonNull<KmemContext>);

// SAFETY: a CtxPtr is only dereferenced by a thread that holds its
// hierarchy's context lock, while the context is on a reparented list (which
// destruction leaves, under the same lock, before it frees the context) or
// counted by its group (`get`): the pointer is as valid on whichever thread
// holds the lock.
// A KmemContext is atomics and an `Arc<Common>`, all Sync (under loom also
// the `alive` cell of `()`, whose every access loom itself checks).
unsafe impl Send for CtxPtr {}

impl CtxPtr {
    pub(crate) fn new(ctx: &KmemContext) -> CtxPtr {
        CtxPtr(NonNull::from(ctx))
    }

    pub(crate) fn get(&self) -> &KmemContext {
        // SAFETY: every caller (the reparented lists of `group.rs`) holds the
        // hierarchy's context lock, and the pointer is either on a reparented
        // list, whose contexts destruction unlists under that lock before it
        // frees them, or (in `reparent_contexts`) the group's own context,
        // which the group's counted CtxRef keeps alive: either way the
        // context at `self.0` lives until the lock is released.
        unsafe { self.0.as_ref() }
    }
}

impl std::ops::Deref for CtxPtr {
    type Target = KmemContext;

    fn deref(&self) -> &KmemContext {
        self.get()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::{Hierarchy, KmemPages};

    /// S9: the last uncharge does not destroy the context inline. Destruction
    /// needs the context lock; we hold it across the last free, which would
    /// deadlock if the free destroyed inline.
    #[test]
    fn the_last_uncharge_defers_destruction() {
        let h = Hierarchy::new();
        let a = h.create("/a").unwrap();
        let buffer = KmemPages::alloc_for(&a, 4096).unwrap();
        drop(a);
        h.remove("/a").unwrap();
        h.quiesce();
        let common = h.common().clone();
        let live = common.contexts_live.load(super::Relaxed);
        assert_eq!(live, 1);
        {
            let _ctx_lock = common.ctx_lock.lock();
            drop(buffer);
            assert!(!common.deferred.load(super::Acquire).is_null(), "queued");
            assert_eq!(
                common.contexts_live.load(super::Relaxed),
                1,
                "not destroyed inline"
            );
        }
        h.quiesce();
        assert_eq!(common.contexts_live.load(super::Relaxed), 0);
        assert!(common.deferred.load(super::Acquire).is_null());
    }

    /// DESIGN.md §8: a panic under a reader section (a debug assertion of
    /// the page counter, anything `f` runs) leaves the section, so the next
    /// owner change, the group's removal, does not wait forever.
    #[test]
    fn a_panic_in_a_reader_section_leaves_it() {
        let h = Hierarchy::new();
        let a = h.create("/a").unwrap();
        let ctx = a.context().unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ctx.with_owner(|_| panic!("a check failed under the section"))
        }));
        assert!(panicked.is_err());
        let readers: usize = ctx.readers.iter().map(|r| r.load(super::Acquire)).sum();
        if readers != 0 {
            // Dropping these would wait for the leaked reader forever.
            std::mem::forget((ctx, a, h));
            panic!("the panic left the section counted ({readers} readers)");
        }
        drop((ctx, a));
        // Removal switches the context's owner, waiting out its readers.
        h.remove("/a").unwrap();
    }
}
