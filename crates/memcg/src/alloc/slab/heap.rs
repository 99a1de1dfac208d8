//! The thread-local heaps and the slow paths of the slab allocator (the
//! fast paths are in [`fast`](super::fast)). A heap holds, per root cache,
//! the slab the thread allocates from, and an object stock for the context
//! it charges: the thread's current group's, for the main heap; the last
//! handle's group's, for the heap of
//! [`Group::allocator`](crate::Group::allocator) handles. Both heaps share
//! the thread's owner id, so frees on the allocating thread are local
//! whichever heap allocated.
//!
//! As in mimalloc, a thread keeps the slabs it allocated from until it
//! leaves the group: used-up ones on a per-class *full* list, ones its own
//! frees reopened on an *avail* list, so that its frees stay local whichever
//! slab the object is in. A refill takes an avail slab, then looks at the
//! oldest few full ones for remote frees, and only then goes to the cache.
//! A slab the owner's frees empty goes back to the cache at once. Slabs of
//! reclaimable caches are the exception: reclaim frees their objects from
//! other threads, so a used-up one goes back to its cache where reclaim can
//! release it. (The cost: a thread's owned slabs, like SLUB's per-CPU slabs,
//! are reclaimable only once it leaves its group, exits, or trims them.)

use super::cache::{Cache, RootCache, MAX_ROOTS};
use super::fast;
use super::segment::Segment;
use super::slab::{ListKind, Slab, SlabList, MIXED, RECLAIMABLE, VECTOR_ENTRY_BYTES};
use crate::error::{Error, Result};

/// The slow paths' result: the error boxed, so that the whole result fits
/// in two registers. (A 48-byte `Result` goes through memory, and reading
/// it back right after the callee wrote it stalled the refill path.)
pub(crate) type SlowResult = std::result::Result<NonNull<u8>, Box<Error>>;
use crate::accounting::slab_hook::{self, ObjectAccount, SlabKind};
use crate::group::kmem_context::{CtxRef, KmemContext};
use crate::group::GroupInner;
use crate::sync::Arc;
use std::cell::{Cell, RefCell};
use std::ptr::{self, NonNull};

#[repr(C)]
pub(crate) struct Heap {
    /// The thread's slab owner id (see [`NEXT_TID`]), in the main heap
    /// (the handle heap's is unused), assigned at the thread's first slow
    /// path; [`NO_OWNER`] until then, which no slab has.
    pub(super) tid: Cell<usize>,
    /// Pre-charged bytes for objects of shared caches (S11), for the
    /// context every current shared slab serves.
    pub(super) stock: ObjectAccount,
    /// The current slab of each root cache, by root index.
    pub(super) slabs: [Cell<*const Slab>; MAX_ROOTS],
    /// Highest root index with a current slab, plus one: the ones a
    /// context change looks at.
    live: Cell<usize>,
    /// Whether this is the heap of group allocator handles.
    handle: bool,
    /// The remote-free batch (main heap only; see [`free_remote`]).
    batch: RemoteBatch,
    /// Frees of objects of slabs the thread does not own, and the pushes
    /// that took them to their slabs (main heap only).
    remote_frees: Cell<u64>,
    remote_pushes: Cell<u64>,
    /// The reserved segment region as this thread last saw it (base, and
    /// bytes committed), in the main heap: the free path's first test reads
    /// thread-locals only. A free beyond it takes the slower path, which
    /// refreshes it ([`refresh_region`]).
    pub(super) region: Cell<(usize, usize)>,
    /// The group the heap's isolated caches are bound to: a counted
    /// reference (`Arc::into_raw`), or null for the root. Counted so the
    /// address cannot be reused by another group while the heap still holds
    /// its caches. Shared caches do not depend on it.
    bound: Cell<*const GroupInner>,
    /// Counted references to the caches of `bound`, by root index.
    caches: [Cell<*const Cache>; MAX_ROOTS],
    /// Owned slabs other than the current one, by root index. Owner only.
    /// A `RefCell`: a free may run while a slow path of the same thread is
    /// under way (alloc slow path → charge → reclaim → a shrinker → free →
    /// this heap), so no borrow is ever held across a call that may charge,
    /// reclaim or release a slab, and an overlap would be a checked panic,
    /// never two live `&mut`.
    lists: [RefCell<HeapLists>; MAX_ROOTS],
    /// Whether the exit hook is registered.
    hooked: Cell<bool>,
    /// Slow-path sections under way on the heap's thread (see [`Busy`]).
    busy: Cell<u32>,
    /// Set once the thread's exit hook ran: allocations made later (by other
    /// thread-local destructors) must not keep slabs owned by a dying thread.
    exited: Cell<bool>,
}

/// A heap's owned slabs of one class besides the current one.
struct HeapLists {
    /// Slabs with free objects (the owner's frees reopened them).
    avail: SlabList,
    /// Used-up slabs, newest first; remote frees may be waiting on them.
    full: SlabList,
}

impl HeapLists {
    const fn new() -> HeapLists {
        HeapLists {
            avail: SlabList::new(),
            full: SlabList::new(),
        }
    }
}

/// The owner id of a heap that owns nothing yet: no slab is ever owned by
/// it (0 is "unowned").
const NO_OWNER: usize = usize::MAX;

/// Source of heap owner ids: unique in the process, and, because the child
/// of `fork()` inherits the counter, a thread started in the child never
/// gets the id of a thread that existed only in the parent (whose stack and
/// thread-locals glibc may hand it).
static NEXT_TID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// Every heap that may own slabs or hold a stock (its address in its
/// thread's thread-locals), so that the child of `fork()` can give back
/// what the vanished threads' heaps held. Registered at a heap's first slow
/// path, taken off by its thread's exit hook.
static HEAPS: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

/// How many of the oldest full slabs a refill checks for remote frees.
const FULL_SCAN: usize = 4;
/// Used-up slabs a heap keeps per class when its thread leaves a group;
/// older ones go back to the cache (see [`leave_group`]).
const FULL_KEEP: usize = 8;

impl Heap {
    /// The owned-slab lists of class `i`, borrowed for a short section
    /// that calls nothing which could come back to this heap.
    fn lists(&self, i: usize) -> std::cell::RefMut<'_, HeapLists> {
        match self.lists[i].try_borrow_mut() {
            Ok(l) => l,
            Err(_) => crate::reentrancy::broken(
                "slab heap: a thread's owned-slab lists were borrowed twice (a free re-entered a list section)",
            ),
        }
    }

    crate::sync::const_unless_loom! {
    fn new(handle: bool) -> Heap {
        Heap {
            tid: Cell::new(NO_OWNER),
            stock: ObjectAccount::new(),
            slabs: [const { Cell::new(ptr::null()) }; MAX_ROOTS],
            live: Cell::new(0),
            handle,
            region: Cell::new((0, 0)),
            batch: RemoteBatch::new(),
            remote_frees: Cell::new(0),
            remote_pushes: Cell::new(0),
            bound: Cell::new(ptr::null()),
            caches: [const { Cell::new(ptr::null()) }; MAX_ROOTS],
            lists: [const { RefCell::new(HeapLists::new()) }; MAX_ROOTS],
            hooked: Cell::new(false),
            busy: Cell::new(0),
            exited: Cell::new(false),
        }
    }
    }
}

#[cfg(not(loom))]
thread_local! {
    /// The heap of the thread's current group.
    static HEAP: Heap = const { Heap::new(false) };
    /// The heap of `Group::allocator` handles.
    static HANDLE_HEAP: Heap = const { Heap::new(true) };
}

// Under loom the models build their stocks themselves: a heap's atomics
// would outlive one model execution in a thread-local, so no model reaches
// the heaps (see `drain_local`, `drain_all`).
#[cfg(loom)]
thread_local! {
    static HEAP: Heap = Heap::new(false);
    static HANDLE_HEAP: Heap = Heap::new(true);
}

/// The calling thread's heap. `HEAP` is a const thread-local without a
/// destructor, so its address is valid for the whole life of the thread;
/// taking the address in a closure this small keeps `LocalKey::with` inlined
/// on the fast paths, which a closure doing the work would not.
#[inline(always)]
fn heap_ptr() -> *const Heap {
    HEAP.with(|h| h as *const Heap)
}

/// The calling thread's main heap.
#[inline(always)]
pub(crate) fn main<'a>() -> &'a Heap {
    // SAFETY: HEAP is a const thread-local without a destructor, valid for
    // the whole life of the thread, and only used by it; callers do not
    // keep the reference beyond the call they make it in.
    unsafe { &*heap_ptr() }
}

impl Heap {
    /// The list kinds of this heap's owned slabs.
    fn avail_kind(&self) -> ListKind {
        if self.handle {
            ListKind::HandleAvail
        } else {
            ListKind::HeapAvail
        }
    }

    fn full_kind(&self) -> ListKind {
        if self.handle {
            ListKind::HandleFull
        } else {
            ListKind::HeapFull
        }
    }

    /// Make `s` the current slab of root index `i`.
    fn set_current(&self, i: usize, s: &'static Slab) {
        self.slabs[i].set(s);
        if i >= self.live.get() {
            self.live.set(i + 1);
        }
    }
}

/// Thread exit ([`Exit::Heaps`](crate::lifecycle::Exit::Heaps)): both heaps
/// give everything back, and the thread keeps nothing in them afterwards.
fn on_exit() {
    for heap in [&HEAP, &HANDLE_HEAP] {
        let _ = heap.try_with(|h| {
            give_back(h, Slabs::All, Stock::Release);
            h.exited.set(true);
            unregister(h);
        });
    }
}

/// The fast path: an object of `root`'s size from the calling thread's
/// current slab, or `None` when the slow path must run.
#[inline(always)]
pub(crate) fn alloc_fast(root: &'static RootCache) -> Option<NonNull<u8>> {
    if root.isolated {
        HEAP.with(|h| pop(h, root.index, crate::accounting::current::current_ptr()))
    } else {
        let h = main();
        NonNull::new(fast::pop(h, root.index)).or_else(|| pop_special(h, root.index))
    }
}

/// The global allocator's slow path for kmalloc class `class`: null if
/// the allocation fails. Tail-called by the fast path.
#[inline(never)]
pub(crate) fn kmalloc_slow(class: usize) -> *mut u8 {
    let h = main();
    if let Some(obj) = pop_special(h, class) {
        return obj.as_ptr();
    }
    if refill_local(h, class) {
        let obj = fast::pop(h, class);
        if !obj.is_null() {
            return obj;
        }
        if let Some(obj) = pop_special(h, class) {
            return obj.as_ptr();
        }
    }
    alloc_slow_path(super::kmalloc_cache(class).root, true).map_or(ptr::null_mut(), NonNull::as_ptr)
}

/// Give the main heap's current slab of a shared, unreclaimable cache
/// free objects without the slow path's work (no charge, no lock): link
/// more of its never-used slots, collect its remote frees, or make the
/// next owned slab with free objects current. False when only the slow
/// path can help (a refill from the cache, a charge, a reclaimable cache).
fn refill_local(h: &Heap, i: usize) -> bool {
    if h.exited.get() || !h.hooked.get() {
        return false;
    }
    let _busy = Busy::enter(h);
    // SAFETY: slabs in our heap are live slabs we own.
    if let Some(s) = unsafe { h.slabs[i].get().as_ref() } {
        if !s.cache().root().shared() || s.flags() & RECLAIMABLE != 0 {
            return false;
        }
        // SAFETY: our own slab: its lists and counts are ours.
        unsafe {
            if s.free_head() != 0 || s.extend() {
                return true;
            }
            if s.has_remote_frees() && s.collect(true) > 0 {
                return true;
            }
            h.slabs[i].set(ptr::null());
            h.lists(i).full.push(s);
        }
        s.set_list(h.full_kind());
    }
    while let Some(s) = next_owned(h, i) {
        // SAFETY: an owned slab off our lists.
        if unsafe { s.prepare_for(h.stock.ctx()) } {
            h.set_current(i, s);
            return true;
        }
        // SAFETY: ours, on no list.
        unsafe { retire(s) };
    }
    false
}

/// The allocation from a current slab the fast path leaves alone: a mixed
/// one (the object's vector entry records the stock's context, and is
/// charged with it) or a reclaimable one (its bytes count in
/// `slab_reclaimable`). `None` when the slow path must run.
fn pop_special(h: &Heap, index: usize) -> Option<NonNull<u8>> {
    // SAFETY: a non-null slab in our heap is one we own.
    let s = unsafe { h.slabs[index].get().as_ref()? };
    // SAFETY: our own slab.
    let head = unsafe { s.free_head() };
    let flags = s.flags();
    if head == 0 || flags == 0 {
        return None;
    }
    let mixed = flags & MIXED != 0;
    // SAFETY: our own slab: `used` is ours. An emptied mixed slab goes to
    // the slow path, which makes it uniform again.
    if mixed && unsafe { s.used() } == 0 {
        return None;
    }
    let ctx = h.stock.ctx();
    let need = s.obj_size()
        + if mixed && !ctx.is_null() {
            VECTOR_ENTRY_BYTES
        } else {
            0
        };
    if !slab_hook::try_charge(&h.stock, need, SlabKind::of(flags & RECLAIMABLE != 0)) {
        return None;
    }
    // SAFETY: `head` is the head of our slab's free list; a MIXED slab's
    // entry of the object just taken is ours to write. Every current slab
    // serves the stock's context (see `ensure_context`).
    unsafe {
        s.unlink_head(head);
        if mixed {
            s.set_entry(head as *mut u8, ctx);
        }
    }
    NonNull::new(head as *mut u8)
}

/// Allocate an object of `root`'s size, charged to the calling thread's
/// group. Over a limit: fail, or, for the global allocator (`global`),
/// follow its [`LimitPolicy`](crate::accounting::charge::LimitPolicy), read here only.
#[cold]
#[inline(never)]
pub(crate) fn alloc_slow_path(root: &'static RootCache, global: bool) -> SlowResult {
    crate::accounting::current::refresh_default();
    // Callers tried the fast path just before: go straight to the refill.
    HEAP.with(|h| {
        let target = crate::accounting::current::current_ptr();
        let nofail = global
            && crate::accounting::charge::limit_policy()
                == crate::accounting::charge::LimitPolicy::Overcharge;
        alloc_slow(
            h,
            root,
            target,
            nofail,
            crate::accounting::current::current_group,
        )
    })
}

/// Allocate an object of `root`'s size, charged to the calling thread's
/// group (see [`alloc_slow_path`] for `global`).
#[inline]
pub(crate) fn alloc(root: &'static RootCache, global: bool) -> Result<NonNull<u8>> {
    match alloc_fast(root) {
        Some(obj) => Ok(obj),
        None => alloc_slow_path(root, global).map_err(|e| *e),
    }
}

/// Allocate an object of `root`'s size charged to `group`, whatever the
/// calling thread's group. A removed group's allocations go where its
/// context bills now (S5), never into its dead caches (S6).
#[inline]
pub(crate) fn alloc_for(root: &'static RootCache, group: &Arc<GroupInner>) -> SlowResult {
    HANDLE_HEAP.with(|h| {
        if !root.isolated {
            let ctx = group.ctx.as_ref().map_or(ptr::null(), |c| c.as_ptr());
            if h.stock.ctx() == ctx {
                if let Some(obj) =
                    NonNull::new(fast::pop(h, root.index)).or_else(|| pop_special(h, root.index))
                {
                    return Ok(obj);
                }
            }
            return alloc_slow(h, root, Arc::as_ptr(group), false, || Some(group.clone()));
        }
        let live = Some(GroupInner::live_owner(group)).filter(|g| !g.is_root());
        let target = live.as_ref().map_or(ptr::null(), Arc::as_ptr);
        if let Some(obj) = pop(h, root.index, target) {
            return Ok(obj);
        }
        alloc_slow(h, root, target, false, || live)
    })
}

/// The fast path of an isolated cache: pop the current slab of a heap bound
/// to `target`.
#[inline(always)]
fn pop(h: &Heap, index: usize, target: *const GroupInner) -> Option<NonNull<u8>> {
    if h.bound.get() != target {
        return None;
    }
    let s = h.slabs[index].get();
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
    // SAFETY: `obj` is a live object of ours freed once (this fn's
    // contract), which is `fast::free`'s contract.
    unsafe { fast::free(obj) }
}

/// The free of an object of a mixed or reclaimable slab: its context and
/// charged bytes come from its vector entry (or the slab), its statistic
/// from the slab. Tail-called by the fast path.
///
/// # Safety
/// `obj` is a live object of `s`, freed once by the caller.
#[inline(never)]
pub(super) unsafe fn free_special(s: &'static Slab, obj: *mut u8) {
    // SAFETY: `obj` is a live object of `s` the caller is freeing (this
    // fn's contract): its vector entry (or the slab's context, written only
    // while the slab is empty) is not written meanwhile.
    let (ctx, need) = unsafe { s.charged_of(obj) };
    #[cfg(feature = "hardened")]
    if s.flags() & MIXED != 0 {
        // SAFETY: a MIXED slab's entry of a slot being freed by us.
        unsafe {
            let e = s.entry(obj);
            if *e == super::slab::FREED {
                crate::reentrancy::bad_free(obj as usize, "freed twice (a double free)");
            }
            *e = super::slab::FREED;
        }
    }
    let h = main();
    if !ctx.is_null() {
        let kind = SlabKind::of(s.flags() & RECLAIMABLE != 0);
        if !slab_hook::try_uncharge(&h.stock, ctx, need, kind) {
            uncharge_object_slow(h, ctx, need, kind);
        }
    }
    // SAFETY: accounted for; the object goes back to its slab.
    unsafe { fast::release(h, s, obj) }
}

/// The free of an object of a uniform slab whose context the stock's own
/// slot does not take (another context, or the budget is full).
///
/// # Safety
/// `obj` is a live object of `s`, a uniform unreclaimable slab charged
/// through `ctx`, freed once by the caller.
#[cold]
#[inline(never)]
pub(super) unsafe fn free_uncharge_slow(s: &'static Slab, obj: *mut u8, ctx: *const KmemContext) {
    let h = main();
    uncharge_object_slow(h, ctx, s.obj_size(), SlabKind::Unreclaimable);
    // SAFETY: accounted for; the object goes back to its slab.
    unsafe { fast::release(h, s, obj) }
}

/// Abort on a bad free of `obj` into segment `seg`, naming the cause.
#[cold]
#[inline(never)]
pub(super) fn bad_slab_free(seg: &Segment, s: &Slab, obj: *mut u8) -> ! {
    let cause = if seg.in_span(obj as usize) {
        s.bad_free_cause()
    } else {
        "inside a slab segment's header"
    };
    crate::reentrancy::bad_free(obj as usize, cause)
}

/// Give a freed object's bytes back when the fast path could not: through
/// the stock's slow path (its own slot's overflow, or its foreign slot).
#[cold]
#[inline(never)]
fn uncharge_object_slow(h: &Heap, ctx: *const KmemContext, need: usize, kind: SlabKind) {
    let _internal = crate::reentrancy::Internal::enter();
    let _busy = Busy::enter(h);
    // The stock may keep `ctx`: the exit hook must drain it.
    hook_exit(h);
    // SAFETY: `ctx` is the recorded context of the live object being freed,
    // charged `need` bytes.
    unsafe { slab_hook::uncharge(&h.stock, ctx, need, kind) };
    if h.exited.get() {
        // A thread past its exit hook keeps nothing in its stock.
        flush(h);
    }
}

/// Give the bytes of an object never handed out back (a failed slow path).
fn uncharge_object(h: &Heap, ctx: *const KmemContext, need: usize, kind: SlabKind) {
    if !slab_hook::try_uncharge(&h.stock, ctx, need, kind) {
        uncharge_object_slow(h, ctx, need, kind);
    }
}

/// A local free into an owned slab that is not the current one: a used-up
/// slab reopens, an emptied one goes back to its cache.
#[cold]
#[inline(never)]
pub(super) fn local_free_slow(slab: &'static Slab) {
    let on_handle = matches!(slab.list(), ListKind::HandleAvail | ListKind::HandleFull);
    let h: &Heap = if on_handle {
        // SAFETY: HANDLE_HEAP is a const thread-local without a destructor,
        // used by this thread only, for the duration of this call.
        unsafe { &*HANDLE_HEAP.with(|h| h as *const Heap) }
    } else {
        main()
    };
    let _busy = Busy::enter(h);
    let retired = (|| {
        let mut l = h.lists(slab.class());
        // SAFETY: we own the slab (checked by the caller), so it is on the
        // list its kind says, and `used` is ours to read.
        unsafe {
            let empty = slab.used() == 0;
            match slab.list() {
                ListKind::HeapFull | ListKind::HandleFull => {
                    l.full.remove(slab);
                    if empty {
                        return true;
                    }
                    l.avail.push(slab);
                    slab.set_list(h.avail_kind());
                }
                ListKind::HeapAvail | ListKind::HandleAvail if empty => {
                    l.avail.remove(slab);
                    return true;
                }
                _ => {}
            }
        }
        false
    })();
    if retired {
        // SAFETY: taken off our lists above; ours to give back.
        unsafe { retire(slab) };
    }
}

/// Give an owned slab, just taken off the heap's lists, back to its cache.
///
/// # Safety
/// The caller owns `slab` and took it off every heap list.
unsafe fn retire(slab: &'static Slab) {
    slab.set_list(ListKind::None);
    // SAFETY: the caller owns `slab` and took it off every heap list (this
    // fn's contract), as `Cache::release` requires of a slab it takes back.
    unsafe { slab.cache().release(slab) };
}

/// A free of an object of a slab another thread owns (or none does), its
/// bytes already given back. Objects of a shared cache's slab are queued in
/// the thread's *remote batch* while they go to the same slab, and pushed
/// onto its remote list as one chain, with one compare-and-swap, when the
/// next goes elsewhere, the batch is full, or the thread quiesces, leaves
/// its group or exits (snmalloc's message batching). Objects of isolated
/// caches go at once: a dead cache lives until its last object is back.
#[inline(never)]
pub(super) fn free_remote(slab: &'static Slab, obj: *mut u8) {
    let h = main();
    h.remote_frees.set(h.remote_frees.get() + 1);
    let b = &h.batch;
    if ptr::eq(b.slab.get(), slab) {
        // SAFETY: a dead object of ours: its first word is ours, and links
        // it to the batch's chain.
        unsafe { (obj as *mut usize).write(b.head.get()) };
        b.head.set(obj as usize);
        b.len.set(b.len.get() + 1);
        if b.len.get() >= BATCH_MAX {
            flush_batch(h);
        }
        return;
    }
    flush_batch(h);
    if h.exited.get() || !slab.cache().root().shared() {
        h.remote_pushes.set(h.remote_pushes.get() + 1);
        // The cache is read before the push: once pushed, the object may be
        // collected and the slab reused. It stays valid memory (caches are
        // type-stable) and `notify` checks the slab under the cache lock.
        return super::protocol::free_remote(slab.cache(), slab, obj, obj);
    }
    b.head.set(obj as usize);
    b.tail.set(obj as usize);
    b.len.set(1);
    // The chain is whole before the batch names its slab: a fork copying
    // this thread half way leaves the child an empty batch or a whole one.
    store_order();
    b.slab.set(slab);
}

/// Objects a remote batch holds at most.
const BATCH_MAX: u32 = 64;

/// A thread's queue of objects freed into one slab it does not own.
struct RemoteBatch {
    slab: Cell<*const Slab>,
    /// The chain, newest first, linked through first words; `tail` is
    /// the oldest, whose link the push writes.
    head: Cell<usize>,
    tail: Cell<usize>,
    len: Cell<u32>,
}

impl RemoteBatch {
    const fn new() -> RemoteBatch {
        RemoteBatch {
            slab: Cell::new(ptr::null()),
            head: Cell::new(0),
            tail: Cell::new(0),
            len: Cell::new(0),
        }
    }
}

/// Push `h`'s remote batch, if any, onto its slab's remote list.
fn flush_batch(h: &Heap) {
    let b = &h.batch;
    let s = b.slab.replace(ptr::null());
    // SAFETY: a batch's slab holds the batch's objects, so it is in use.
    let Some(s) = (unsafe { s.as_ref() }) else {
        return;
    };
    b.len.set(0);
    h.remote_pushes.set(h.remote_pushes.get() + 1);
    let (head, tail) = (b.head.get() as *mut u8, b.tail.get() as *mut u8);
    super::protocol::free_remote(s.cache(), s, head, tail)
}

/// The calling thread's remote frees and the compare-and-swaps that pushed
/// them (each pushes a batch of one or more objects), since it started.
pub(crate) fn remote_free_counts() -> (u64, u64) {
    let h = main();
    (h.remote_frees.get(), h.remote_pushes.get())
}

#[cold]
fn alloc_slow(
    h: &Heap,
    root: &'static RootCache,
    target: *const GroupInner,
    nofail: bool,
    target_arc: impl FnOnce() -> Option<Arc<GroupInner>>,
) -> SlowResult {
    let _internal = crate::reentrancy::Internal::enter();
    let _busy = Busy::enter(h);
    hook_exit(h);
    let result = if root.isolated {
        if h.bound.get() != target {
            flush_isolated(h);
            h.bound.set(target_arc().map_or(ptr::null(), Arc::into_raw));
        }
        refill_and_pop(h, root, nofail, ptr::null())
    } else {
        let ctx = target_arc().and_then(|g| g.ctx.clone());
        alloc_shared_slow(h, root, ctx.as_ref(), nofail)
    };
    if h.exited.get() {
        // A thread past its exit hook keeps nothing.
        flush(h);
    }
    result
}

/// Register the thread-exit hook that hands the heap back, give the heap
/// its owner id and list it in [`HEAPS`], once. Inside a fork section.
fn hook_exit(h: &Heap) {
    if h.hooked.get() {
        return;
    }
    h.hooked.set(true);
    if !crate::lifecycle::arm_exit(crate::lifecycle::Exit::Heaps, on_exit) {
        h.exited.set(true);
    }
    // One owner id per thread, shared by both heaps (kept in the main one).
    let m = main();
    if m.tid.get() == NO_OWNER {
        m.tid
            .set(NEXT_TID.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    }
    if !h.exited.get() {
        crate::sync::lock_std(&HEAPS).push(h as *const Heap as usize);
        #[cfg(not(loom))]
        {
            static HOOKED: std::sync::Once = std::sync::Once::new();
            HOOKED.call_once(|| {
                crate::lifecycle::on_child(crate::lifecycle::Child::Heaps, after_fork);
                crate::accounting::current::on_switch(context_changed);
                crate::accounting::charge::register_object_drain(|id| drain_all(id, ptr::null()));
            });
        }
    }
}

/// A slow-path section on a heap: while one is under way the heap's lists
/// and stock may be half changed, so the child of a `fork()` that copied
/// the thread in the middle of one leaves that heap alone (its slabs stay
/// owned by an id no thread has again: their objects' frees are never
/// reused, but nothing is corrupted). The count is plain per-thread memory
/// which only the child reads, of a thread that no longer runs: `fork()`
/// copies each thread's stores in program order (a thread writing a page
/// the fork is copying waits for the copy), and the fences keep the
/// compiler and the CPU from moving list changes across the count.
struct Busy<'a>(&'a Heap);

impl<'a> Busy<'a> {
    #[inline]
    fn enter(h: &'a Heap) -> Busy<'a> {
        h.busy.set(h.busy.get() + 1);
        store_order();
        Busy(h)
    }
}

impl Drop for Busy<'_> {
    #[inline]
    fn drop(&mut self) {
        store_order();
        self.0.busy.set(self.0.busy.get() - 1);
    }
}

/// Keep this thread's stores on either side in program order as a `fork()`
/// copy sees them: x86 keeps stores in order (TSO), so only the compiler
/// must not move them; other CPUs need a fence.
#[inline(always)]
fn store_order() {
    #[cfg(target_arch = "x86_64")]
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    #[cfg(not(target_arch = "x86_64"))]
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

/// Drain every other thread's object stocks held for the hierarchy
/// `common_id` (only those holding the context `ctx`, if not null), idle or
/// not (see `ObjStock::drain_remote`): the registry's lock is held
/// throughout, so no heap goes away meanwhile.
pub(crate) fn drain_all(common_id: u64, ctx: *const KmemContext) {
    if cfg!(loom) {
        return;
    }
    let _internal = crate::reentrancy::Internal::enter();
    let own = [
        HEAP.try_with(|h| h as *const Heap as usize).unwrap_or(0),
        HANDLE_HEAP
            .try_with(|h| h as *const Heap as usize)
            .unwrap_or(0),
    ];
    let heaps = crate::sync::lock_std(&HEAPS);
    for &p in heaps.iter().filter(|p| !own.contains(p)) {
        // SAFETY: a registered heap lives in its thread's thread-locals
        // until its exit hook takes it off the registry, which waits for
        // the lock we hold; its stock is built for other threads' drains.
        let h = unsafe { &*(p as *const Heap) };
        h.stock.drain_remote(common_id, ctx);
    }
}

/// Take `h` off [`HEAPS`] (its thread is exiting).
fn unregister(h: &Heap) {
    let me = h as *const Heap as usize;
    crate::sync::lock_std(&HEAPS).retain(|&p| p != me);
}

/// In the child of `fork()`: the heaps of the threads that vanished give
/// their slabs back to their caches (so that frees of their objects, from
/// any thread of the child, are collected and their slots reused), their
/// object stocks back to their contexts and their group reference back.
/// Their fast paths may have stopped half way: a pop or push on one slab
/// leaves that slab's list whole (at worst one object lost, which its slab
/// keeps, and one object's bytes in the stock's statistics). A heap copied
/// in the middle of a slow path ([`Busy`]) is left as it is.
#[cfg(not(loom))]
fn after_fork() {
    let own = [
        HEAP.try_with(|h| h as *const Heap as usize).unwrap_or(0),
        HANDLE_HEAP
            .try_with(|h| h as *const Heap as usize)
            .unwrap_or(0),
    ];
    let others: Vec<usize> = {
        let mut heaps = crate::sync::lock_std(&HEAPS);
        let others = heaps.iter().copied().filter(|p| !own.contains(p)).collect();
        heaps.retain(|p| own.contains(p));
        others
    };
    for p in others {
        // SAFETY: `p` is the heap of a thread that was registered (so its
        // thread-locals were live at the fork) and does not exist in the
        // child: its memory is the vanished thread's static TLS, which glibc
        // keeps with its cached stack until a new thread takes it, after
        // this handler. Nothing else uses the heap now.
        let h = unsafe { &*(p as *const Heap) };
        h.stock.force_unlock();
        if h.busy.get() == 0 {
            give_back(h, Slabs::All, Stock::Release);
        }
        h.exited.set(true);
    }
}

/// Copy the segment region's bounds into the calling thread's heap (a free
/// found an address beyond its copy).
#[inline(never)]
pub(crate) fn refresh_region() {
    let _ = HEAP.try_with(|h| h.region.set(super::segment::region()));
}

/// A shared cache's slow path: make the heap serve `ctx` (its stock and
/// current slabs), charge the object's bytes (refilling the stock), then
/// pop, refilling the slab if needed. The bytes charged are the most an
/// object can take (slot and vector entry); the entry's part goes back to
/// the budget when the slab turns out to have no vector.
fn alloc_shared_slow(
    h: &Heap,
    root: &'static RootCache,
    ctx: Option<&CtxRef>,
    nofail: bool,
) -> SlowResult {
    ensure_context(h, ctx);
    h.stock.refresh_root();
    let ctx_ptr = ctx.map_or(ptr::null(), CtxRef::as_ptr);
    let kind = SlabKind::of(root.reclaimable);
    let need = root.obj_size + VECTOR_ENTRY_BYTES;
    if let Some(ctx) = ctx {
        if !slab_hook::try_charge(&h.stock, need, kind) {
            slab_hook::charge(&h.stock, ctx, need, kind, nofail).map_err(Box::new)?;
        }
    }
    let obj = match current_pop(h, root.index)
        .map_or_else(|| refill_and_pop(h, root, nofail, ctx_ptr), Ok)
    {
        Ok(obj) => obj,
        Err(e) => {
            if !ctx_ptr.is_null() {
                uncharge_object(h, ctx_ptr, need, kind);
            }
            return Err(e);
        }
    };
    // SAFETY: the object is ours, just popped from a shared slab that
    // serves `ctx` (prepared when it became current).
    let s = unsafe { Segment::of(obj.as_ptr() as usize).slab_of(obj.as_ptr() as usize) };
    if s.flags() & MIXED != 0 {
        // SAFETY: a MIXED slab we own; its entry of the object just popped.
        unsafe { s.set_entry(obj.as_ptr(), ctx_ptr) };
    } else if !ctx_ptr.is_null() {
        // No vector: the object is charged its slot only.
        uncharge_object(h, ctx_ptr, VECTOR_ENTRY_BYTES, kind);
    }
    Ok(obj)
}

/// Pop the current slab of root index `i`, extending its free list if
/// needed; an emptied slab serves the stock's context alone again.
fn current_pop(h: &Heap, i: usize) -> Option<NonNull<u8>> {
    // SAFETY: slabs in our heap are live slabs we own.
    let s = unsafe { h.slabs[i].get().as_ref()? };
    // SAFETY: our own slab: `used`, its context and its list are ours.
    unsafe {
        if s.used() == 0 && s.cache().root().shared() {
            s.prepare_for(h.stock.ctx());
        }
        NonNull::new(s.pop()?)
    }
}

/// Make `h` serve allocations charged through `ctx` (`None`: the root): its
/// stock's own slot switches to it, and each current shared slab that
/// cannot serve it (uniform for another context, with objects) goes back to
/// the heap's lists; an empty one is simply retagged.
fn ensure_context(h: &Heap, ctx: Option<&CtxRef>) {
    let p = ctx.map_or(ptr::null(), CtxRef::as_ptr);
    if h.stock.ctx() == p {
        return;
    }
    h.stock.switch(ctx);
    for i in 0..h.live.get() {
        // SAFETY: slabs in our heap are live slabs we own.
        let Some(s) = (unsafe { h.slabs[i].get().as_ref() }) else {
            continue;
        };
        if !s.cache().root().shared() {
            continue;
        }
        // SAFETY: our own slab: `used` and `ctx` are ours.
        unsafe {
            if s.used() == 0 && s.prepare_for(p) {
                continue;
            }
            if s.flags() & MIXED != 0 || s.uniform_ctx() == p {
                continue;
            }
        }
        h.slabs[i].set(ptr::null());
        // SAFETY: our own slab, current (on no list): keep it, listed.
        unsafe { keep_owned(h, i, s) };
    }
}

/// Put `s`, an owned slab taken off the current ones, on the heap's lists.
///
/// # Safety
/// The caller owns `s`, which is on no list.
unsafe fn keep_owned(h: &Heap, i: usize, s: &'static Slab) {
    // SAFETY: the caller owns `s`, on no list (this fn's contract): its
    // free list is ours to read and the heap's lists ours to link it into.
    unsafe {
        if s.has_local_free() {
            h.lists(i).avail.push(s);
            s.set_list(h.avail_kind());
        } else {
            h.lists(i).full.push(s);
            s.set_list(h.full_kind());
        }
    }
}

/// The hook `current::set` calls when the calling thread's context changes
/// (`ctx`: the new one, null in the root): the main heap follows at once,
/// so its fast path never charges the old context.
fn context_changed(ctx: *const KmemContext) {
    let _internal = crate::reentrancy::Internal::enter();
    let _ = HEAP.try_with(|h| {
        if h.exited.get() || h.stock.ctx() == ctx {
            return;
        }
        let _busy = Busy::enter(h);
        // SAFETY: the new context is the one the thread's group holds, and
        // the thread holds that group (current::set just stored it).
        let ctx = (!ctx.is_null()).then(|| unsafe { CtxRef::clone_raw(ctx) });
        ensure_context(h, ctx.as_ref());
    });
}

fn refill_and_pop(
    h: &Heap,
    root: &'static RootCache,
    nofail: bool,
    ctx: *const KmemContext,
) -> SlowResult {
    let tid = main().tid.get();
    let i = root.index;
    // SAFETY: slabs in our heap are live slabs we own.
    if let Some(s) = unsafe { h.slabs[i].get().as_ref() } {
        // SAFETY: our own slab: collect the frees other threads made.
        if s.has_remote_frees() && unsafe { s.collect(true) } > 0 {
            // SAFETY: our own slab, and the collect just moved objects onto
            // its free list.
            let obj = unsafe { s.pop() }.unwrap_or_else(|| {
                crate::reentrancy::broken(
                    "slab heap: a collect that moved objects left none to pop",
                )
            });
            // SAFETY: objects are never at address 0.
            return Ok(unsafe { NonNull::new_unchecked(obj) });
        }
        h.slabs[i].set(ptr::null());
        if root.reclaimable {
            // Reclaim frees these objects from other threads; their slabs
            // must be where reclaim can release them: the cache's lists.
            // SAFETY: we own the used-up slab and give it back.
            unsafe { s.cache().release(s) };
        } else {
            // SAFETY: our own used-up slab, on no list: keep it, on the
            // full list.
            unsafe { h.lists(i).full.push(s) };
            s.set_list(h.full_kind());
        }
    }
    while let Some(s) = next_owned(h, i) {
        // SAFETY: an owned slab off our lists.
        if root.shared() && !unsafe { s.prepare_for(ctx) } {
            // No vector to be had: give it back and look further.
            // SAFETY: ours, on no list.
            unsafe { retire(s) };
            continue;
        }
        h.set_current(i, s);
        // SAFETY: next_owned returns an owned slab with free objects.
        let obj = unsafe { s.pop() }.unwrap_or_else(|| {
            crate::reentrancy::broken(
                "slab heap: an owned slab taken for its free objects has none",
            )
        });
        // SAFETY: objects are never at address 0.
        return Ok(unsafe { NonNull::new_unchecked(obj) });
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
                Some(g) if g.is_dying() => root.cache_for(g.charges_owner().as_deref()),
                g => root.cache_for(g),
            };
            h.caches[i].set(c);
            c
        }
    };
    let slab = loop {
        let slab = cache.refill(tid, nofail).map_err(Box::new)?;
        // SAFETY: refill returns a slab we own.
        if !root.shared() || unsafe { slab.prepare_for(ctx) } {
            break slab;
        }
        // SAFETY: ours, on no list: back to the cache; a fresh one needs
        // no vector.
        unsafe { slab.cache().release(slab) };
    };
    h.set_current(i, slab);
    // SAFETY: refill returns a slab we own, with free objects.
    let obj = unsafe { slab.pop() }.unwrap_or_else(|| {
        crate::reentrancy::broken("slab heap: a slab from a cache refill has no free object")
    });
    // SAFETY: objects are never at address 0.
    Ok(unsafe { NonNull::new_unchecked(obj) })
}

/// An owned slab of class `i` with free objects, taken off the heap's lists:
/// an avail one, or one of the oldest full ones that remote frees reopened.
fn next_owned(h: &Heap, i: usize) -> Option<&'static Slab> {
    let mut l = h.lists(i);
    // SAFETY: our own lists and the slabs on them; `collect` only takes the
    // slab's remote frees and calls nothing that could reach this heap.
    unsafe {
        if let Some(s) = l.avail.first() {
            l.avail.remove(s);
            s.set_list(ListKind::None);
            if s.has_remote_frees() {
                s.collect(true);
            }
            return Some(s);
        }
        for _ in 0..FULL_SCAN.min(l.full.len) {
            let Some(s) = l.full.last() else {
                crate::reentrancy::broken(
                    "slab heap: the full list's length counts a slab it lacks",
                )
            };
            l.full.remove(s);
            if s.has_remote_frees() {
                s.set_list(ListKind::None);
                s.collect(true);
                return Some(s);
            }
            // Nothing freed yet: to the front, so the next refill looks
            // at others.
            l.full.push(s);
        }
    }
    None
}

/// Take the first owned slab of class `i` off the heap's lists (avail ones
/// first), so that the caller can give it back with no borrow held.
fn take_first(h: &Heap, i: usize) -> Option<&'static Slab> {
    let mut l = h.lists(i);
    let l = &mut *l;
    for list in [&mut l.avail, &mut l.full] {
        if let Some(s) = list.first() {
            // SAFETY: a slab on our own list.
            unsafe { list.remove(s) };
            return Some(s);
        }
    }
    None
}

/// Which slabs [`give_back`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slabs {
    /// None (the remote-free batch is pushed all the same).
    None,
    /// Owned slabs left empty (reclaim just freed their objects), so that
    /// shrinking can release them.
    Empty,
    /// A group change: the slabs of isolated caches (they belong to the
    /// bound group), and all but the newest [`FULL_KEEP`] used-up slabs per
    /// class. Shared slabs serve any group, but a thread that moves between
    /// groups (a worker serving many tenants) would otherwise hoard used-up
    /// slabs whose slots other threads free and only it reuses; a thread
    /// that stays in its group keeps them all, so its own frees stay local.
    Isolated,
    /// Every slab and cache, and the bound group (thread exit, a flush).
    All,
}

/// What [`give_back`] does with the heap's object stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stock {
    /// Nothing.
    Keep,
    /// Return its bytes and apply its statistics; it keeps its context.
    Drain,
    /// Drained, and the heap follows the root: the stock lets go of its
    /// context (a removed group's must not be kept alive by an idle handle
    /// heap) and the current slabs serve the root.
    Root,
    /// Drained and let go of its context, the root's endless budget back,
    /// with no current slab left that serves a group (thread exit, a flush:
    /// with [`Slabs::All`]).
    Release,
}

/// The one way a heap gives state back, for every case: thread exit (the
/// [`lifecycle`](crate::lifecycle) stage), the vanished threads' heaps in
/// the child of a fork, a group change, a quiesce, reclaim's trim, a flush.
/// Pushes the remote-free batch, returns `slabs`, then settles the stock as
/// `stock` says.
fn give_back(h: &Heap, slabs: Slabs, stock: Stock) {
    let _busy = Busy::enter(h);
    flush_batch(h);
    match slabs {
        Slabs::None => {}
        Slabs::Empty => trim(h),
        Slabs::Isolated => {
            flush_classes(h, |c| c.root().isolated);
            trim_full(h);
        }
        Slabs::All => flush_classes(h, |_| true),
    }
    match stock {
        Stock::Keep => {}
        Stock::Drain => h.stock.drain(),
        Stock::Root => {
            ensure_context(h, None);
            h.stock.drain();
        }
        Stock::Release => h.stock.release(),
    }
}

/// Give every slab and cache back, return the object stock, and unbind.
fn flush(h: &Heap) {
    give_back(h, Slabs::All, Stock::Release);
}

/// Give back the slabs and caches of isolated caches (they belong to the
/// bound group) and unbind; shared slabs stay.
fn flush_isolated(h: &Heap) {
    flush_classes(h, |c| c.root().isolated);
}

fn flush_classes(h: &Heap, which: impl Fn(&Cache) -> bool) {
    for i in 0..MAX_ROOTS {
        // SAFETY: a counted reference taken in alloc_slow, or null.
        let Some(c) = (unsafe { h.caches[i].get().as_ref() }) else {
            continue;
        };
        if !which(c) {
            continue;
        }
        h.caches[i].set(ptr::null());
        let s = h.slabs[i].replace(ptr::null());
        // SAFETY: our own slab.
        if let Some(s) = unsafe { s.as_ref() } {
            // SAFETY: we own it and give it back.
            unsafe { s.cache().release(s) };
        }
        while let Some(s) = take_first(h, i) {
            // SAFETY: taken off our lists; ours to give back.
            unsafe { retire(s) };
        }
        c.put();
    }
    let b = h.bound.replace(ptr::null());
    if !b.is_null() {
        // SAFETY: a counted reference from `bind`.
        drop(unsafe { Arc::from_raw(b) });
    }
}

/// Both of the calling thread's heaps give state back ([`give_back`]),
/// unless the thread is past its heaps' thread-locals.
fn give_back_local(main: (Slabs, Stock), handle: (Slabs, Stock)) {
    let _internal = crate::reentrancy::Internal::enter();
    let _ = HEAP.try_with(|h| give_back(h, main.0, main.1));
    let _ = HANDLE_HEAP.try_with(|h| give_back(h, handle.0, handle.1));
}

/// Give the calling thread's slabs back (so that a test sees caches
/// settle), and its object stocks.
pub(crate) fn flush_local() {
    give_back_local((Slabs::All, Stock::Release), (Slabs::All, Stock::Release));
}

/// The calling thread leaves its group: its object stock returns, and the
/// slabs of a group change go back ([`Slabs::Isolated`]); the handle heap
/// follows the root.
pub(crate) fn leave_group() {
    give_back_local((Slabs::Isolated, Stock::Drain), (Slabs::None, Stock::Root));
}

/// Return the calling thread's object stocks: exact charges and `slab`
/// statistics for what it allocated (a quiesce on this thread).
pub(crate) fn drain_local() {
    if cfg!(loom) {
        return;
    }
    give_back_local((Slabs::None, Stock::Drain), (Slabs::None, Stock::Root));
}

/// Give back the calling thread's owned slabs that are empty (reclaim just
/// freed their objects), so that shrinking can release them.
pub(crate) fn trim_local() {
    give_back_local((Slabs::Empty, Stock::Keep), (Slabs::Empty, Stock::Keep));
}

/// All but the newest [`FULL_KEEP`] used-up slabs per class go back to
/// their cache. Classes at or above `live` never had a current slab, so
/// their lists are empty: a switch per poll (an `in_group` future) walks
/// the classes in use only.
fn trim_full(h: &Heap) {
    for i in 0..h.live.get() {
        loop {
            let oldest = {
                let mut l = h.lists(i);
                if l.full.len <= FULL_KEEP {
                    break;
                }
                let Some(oldest) = l.full.last() else {
                    crate::reentrancy::broken(
                        "slab heap: the full list's length counts a slab it lacks",
                    )
                };
                // SAFETY: a slab on our own list.
                unsafe { l.full.remove(oldest) };
                oldest
            };
            // SAFETY: taken off our lists; ours to give back.
            unsafe { retire(oldest) };
        }
    }
}

/// Empty owned slabs go back to their caches; the others are listed again
/// by what they hold.
fn trim(h: &Heap) {
    for i in 0..MAX_ROOTS {
        // SAFETY: slabs in our heap are live slabs we own.
        if let Some(s) = unsafe { h.slabs[i].get().as_ref() } {
            // SAFETY: ours; collect first so `used` is exact.
            if unsafe {
                s.collect(true);
                s.used()
            } == 0
            {
                h.slabs[i].set(ptr::null());
                // SAFETY: we own it and give it back; the heap keeps its
                // counted reference on the cache.
                unsafe { s.cache().release(s) };
            }
        }
        let mut owned = Vec::new();
        while let Some(s) = take_first(h, i) {
            owned.push(s);
        }
        for s in owned {
            // SAFETY: taken off our lists: ours to collect, read, give back
            // or list again (no borrow is held while `retire` runs).
            unsafe {
                s.collect(true);
                if s.used() == 0 {
                    retire(s);
                } else if s.has_local_free() {
                    h.lists(i).avail.push(s);
                    s.set_list(h.avail_kind());
                } else {
                    h.lists(i).full.push(s);
                    s.set_list(h.full_kind());
                }
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A broken invariant on an allocator path aborts naming it (DESIGN.md
    /// §8), as a bad free does: here, a second borrow of a heap's lists (a
    /// free re-entering a list section). Runs in a child of this test
    /// binary, which must die by SIGABRT with the message; a `RefCell`
    /// panic would end it with a generic "already borrowed" instead.
    #[test]
    fn a_broken_heap_invariant_aborts_naming_it() {
        if std::env::var("MEMCG_BROKEN_HEAP").is_ok() {
            let h = main();
            let _first = h.lists(0);
            let _second = h.lists(0);
            unreachable!("the second borrow aborts");
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "alloc::slab::heap::tests::a_broken_heap_invariant_aborts_naming_it",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("MEMCG_BROKEN_HEAP", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{:?}: {stderr}",
            out.status
        );
        assert!(
            stderr.contains(
                "memcg: broken invariant: slab heap: a thread's owned-slab lists were borrowed twice"
            ),
            "{stderr}"
        );
    }
}
