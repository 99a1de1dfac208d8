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
use super::page::{ListKind, Slab, SlabList, OBJCG_BYTES};
use super::segment::Segment;
use crate::error::{Error, Result};

/// The slow paths' result: the error boxed, so that the whole result fits
/// in two registers. (A 48-byte `Result` goes through memory, and reading
/// it back right after the callee wrote it stalled the refill path.)
pub(crate) type SlowResult = std::result::Result<NonNull<u8>, Box<Error>>;
use crate::context::{CtxRef, KmemContext};
use crate::group::GroupInner;
use crate::objstock::{ObjStock, SlabKind};
use crate::sync::Arc;
use std::cell::{Cell, RefCell};
use std::ptr::{self, NonNull};

struct Heap {
    /// The slab owner id of this heap (see [`NEXT_TID`]), assigned at its
    /// first slow path; [`NO_OWNER`] until then, which no slab has.
    tid: Cell<usize>,
    /// The group the heap's isolated caches are bound to: a counted
    /// reference (`Arc::into_raw`), or null for the root. Counted so the
    /// address cannot be reused by another group while the heap still holds
    /// its caches. Shared caches do not depend on it.
    bound: Cell<*const GroupInner>,
    /// Pre-charged bytes for objects of shared caches (S11).
    stock: ObjStock,
    slabs: [Cell<*const Slab>; MAX_ROOTS],
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
            Err(_) => crate::internal::broken(
                "slab heap: a thread's owned-slab lists were borrowed twice (a free re-entered a list section)",
            ),
        }
    }

    const fn new() -> Heap {
        Heap {
            tid: Cell::new(NO_OWNER),
            bound: Cell::new(ptr::null()),
            stock: ObjStock::new(),
            slabs: [const { Cell::new(ptr::null()) }; MAX_ROOTS],
            caches: [const { Cell::new(ptr::null()) }; MAX_ROOTS],
            lists: [const { RefCell::new(HeapLists::new()) }; MAX_ROOTS],
            hooked: Cell::new(false),
            busy: Cell::new(0),
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

/// The calling thread's heap. `HEAP` is a const thread-local without a
/// destructor, so its address is valid for the whole life of the thread;
/// taking the address in a closure this small keeps `LocalKey::with` inlined
/// on the fast paths, which a closure doing the work would not.
#[inline(always)]
fn heap_ptr() -> *const Heap {
    HEAP.with(|h| h as *const Heap)
}

struct ExitHook;

impl Drop for ExitHook {
    fn drop(&mut self) {
        // Thread exit: hand the slabs back to their caches, so that remote
        // frees of their objects are collected and dead caches can die.
        let _internal = crate::internal::Internal::enter();
        for heap in [&HEAP, &HANDLE_HEAP] {
            let _ = heap.try_with(|h| {
                let _busy = Busy::enter(h);
                flush(h);
                h.exited.set(true);
                unregister(h);
            });
        }
    }
}

thread_local! {
    static EXIT_HOOK: ExitHook = const { ExitHook };
}

/// The fast path: an object of `root`'s size from the calling thread's
/// current slab, or `None` when the slow path must run. Returns in a
/// register; the fallible slow path stays out of line.
#[inline(always)]
pub(crate) fn alloc_fast(root: &'static RootCache) -> Option<NonNull<u8>> {
    if root.isolated {
        HEAP.with(|h| pop(h, root.index, crate::current::current_ptr()))
    } else {
        let kind = SlabKind::of(root.reclaimable);
        // SAFETY: the thread's own heap, used on this thread only.
        let h = unsafe { &*heap_ptr() };
        pop_shared(h, root.index, crate::current::current_ctx_ptr(), kind)
    }
}

/// [`alloc_fast`] for a shared cache by heap slot (a kmalloc class is its
/// own slot): an object charged through the thread's context.
#[inline(always)]
pub(crate) fn alloc_fast_index(index: usize) -> Option<NonNull<u8>> {
    // SAFETY: the thread's own heap, used on this thread only.
    let h = unsafe { &*heap_ptr() };
    pop_shared(
        h,
        index,
        crate::current::current_ctx_ptr(),
        SlabKind::Unreclaimable,
    )
}

/// Allocate an object of `root`'s size, charged to the calling thread's
/// group. Over a limit: fail, or, for the global allocator (`global`),
/// follow its [`LimitPolicy`](crate::charge::LimitPolicy), read here only.
#[cold]
#[inline(never)]
pub(crate) fn alloc_slow_path(root: &'static RootCache, global: bool) -> SlowResult {
    crate::current::refresh_default();
    // Callers tried the fast path just before: go straight to the refill.
    HEAP.with(|h| {
        let target = crate::current::current_ptr();
        let nofail =
            global && crate::charge::limit_policy() == crate::charge::LimitPolicy::Overcharge;
        alloc_slow(h, root, target, nofail, crate::current::current_group)
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
            if let Some(obj) = pop_shared(h, root.index, ctx, SlabKind::of(root.reclaimable)) {
                return Ok(obj);
            }
            return alloc_slow(h, root, Arc::as_ptr(group), false, || Some(group.clone()));
        }
        let live = if group.is_dying() {
            group.ctx.as_ref().map(|c| c.with_owner(|o| o.clone()))
        } else {
            Some(group.clone())
        };
        let live = live.filter(|g| !g.is_root());
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

/// The fast path of a shared cache (S11): pop the current slab, take the
/// object's bytes from the stock, record its context in the object vector.
#[inline(always)]
fn pop_shared(
    h: &Heap,
    index: usize,
    ctx: *const KmemContext,
    kind: SlabKind,
) -> Option<NonNull<u8>> {
    // SAFETY: a non-null slab in our heap is owned by this thread, so its
    // free list is ours.
    let s = unsafe { h.slabs[index].get().as_ref()? };
    let need = s.charge();
    if !ctx.is_null() && !h.stock.can_consume(ctx, need) {
        return None;
    }
    // SAFETY: as above.
    let obj = unsafe { s.pop()? };
    if !ctx.is_null() {
        h.stock.consume(need, kind);
    }
    // SAFETY: a shared cache's slab has an object vector; the object is
    // ours (just popped), so its entry is ours to write.
    unsafe { s.set_objcg(obj, ctx) };
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
    let seg = unsafe { Segment::of(obj as usize) };
    // SAFETY: every address of a segment maps to one of its slab structs
    // (the header's spans' structs are never formatted: capacity 0).
    let slab = unsafe { seg.slab_of(obj as usize) };
    let index = match slab.check_free(obj) {
        Ok(index) => index,
        Err(cause) => bad_slab_free(seg, obj, cause),
    };
    // SAFETY: the thread's own heap, used on this thread only.
    let h = unsafe { &*heap_ptr() };
    // S11: uncharge the object's own context, read before the object is
    // pushed back (after that, its entry may belong to a new object).
    // SAFETY: a live object of this slab, ours to free; its entry was
    // written when it was made.
    if let Some(entry) = unsafe { slab.objcg_entry(index) } {
        // SAFETY: as above.
        let ctx = unsafe { *entry };
        #[cfg(feature = "hardened")]
        {
            if ctx == super::page::FREED {
                crate::internal::bad_free(obj as usize, "freed twice (a double free)");
            }
            // SAFETY: the entry of the live object being freed, ours now.
            unsafe { *entry = super::page::FREED };
        }
        if !ctx.is_null() {
            let (need, kind) = (slab.charge(), slab.slab_kind());
            if !h.stock.try_return(ctx, need, kind) {
                uncharge_object_slow(h, ctx, need, kind);
            }
        }
    }
    if slab.owner() == h.tid.get() {
        // SAFETY: we own the slab, so its free list and count are ours.
        unsafe {
            slab.push_local(obj);
            if slab.needs_relisting() {
                local_free_slow(slab);
            }
        }
        return;
    }
    free_remote(slab, obj);
}

/// Abort on a bad free of `obj` into segment `seg`, naming the cause.
#[cold]
#[inline(never)]
fn bad_slab_free(seg: &Segment, obj: *mut u8, cause: &'static str) -> ! {
    let cause = if seg.in_span(obj as usize) {
        cause
    } else {
        "inside a slab segment's header"
    };
    crate::internal::bad_free(obj as usize, cause)
}

/// Give a freed object's bytes back when the thread's stock does not cache
/// its context or has no room: through the stock (adopting the context when
/// the thread does not need the stock for its own group), or through the
/// context's shared remainder.
#[cold]
#[inline(never)]
fn uncharge_object_slow(h: &Heap, ctx: *const KmemContext, need: usize, kind: SlabKind) {
    let _internal = crate::internal::Internal::enter();
    let _busy = Busy::enter(h);
    // The stock may adopt `ctx`: the exit hook must drain it. A thread past
    // its exit hook keeps nothing in its stock.
    hook_exit(h);
    let current = crate::current::current_ctx_ptr();
    let adopt = !h.exited.get() && (current.is_null() || !h.stock.holds(current));
    // SAFETY: `ctx` is the recorded context of the live object being freed,
    // charged `need` bytes.
    unsafe { h.stock.uncharge(ctx, need, kind, adopt) };
}

/// Give the bytes of an object never handed out back (a failed slow path).
fn uncharge_object(ctx: *const KmemContext, need: usize, kind: SlabKind) {
    HEAP.with(|h| {
        if !h.stock.try_return(ctx, need, kind) {
            uncharge_object_slow(h, ctx, need, kind);
        }
    })
}

/// A local free into an owned slab that is not the current one: a used-up
/// slab reopens, an emptied one goes back to its cache.
#[cold]
fn local_free_slow(slab: &'static Slab) {
    // SAFETY: the thread's own heap, used on this thread only.
    let h = unsafe { &*heap_ptr() };
    let _busy = Busy::enter(h);
    let retired = (|| {
        let mut l = h.lists(slab.class());
        // SAFETY: we own the slab (checked by the caller), so it is on the
        // list its kind says, and `used` is ours to read.
        unsafe {
            let empty = slab.used() == 0;
            match slab.list() {
                ListKind::HeapFull => {
                    l.full.remove(slab);
                    if empty {
                        return true;
                    }
                    l.avail.push(slab);
                    slab.set_list(ListKind::HeapAvail);
                }
                ListKind::HeapAvail if empty => {
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
    // SAFETY: caller's contract.
    unsafe { slab.cache().release(slab) };
}

#[cold]
fn free_remote(slab: &'static Slab, obj: *mut u8) {
    // Read before the push: once pushed, the object may be collected and the
    // slab reused. The cache stays valid memory (caches are type-stable) and
    // `notify` checks the slab under the cache lock.
    super::protocol::free_remote(slab.cache(), slab, obj)
}

#[cold]
fn alloc_slow(
    h: &Heap,
    root: &'static RootCache,
    target: *const GroupInner,
    nofail: bool,
    target_arc: impl FnOnce() -> Option<Arc<GroupInner>>,
) -> SlowResult {
    let _internal = crate::internal::Internal::enter();
    let _busy = Busy::enter(h);
    hook_exit(h);
    let result = if root.isolated {
        if h.bound.get() != target {
            flush_isolated(h);
            h.bound.set(target_arc().map_or(ptr::null(), Arc::into_raw));
        }
        refill_and_pop(h, root, nofail)
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
    if EXIT_HOOK.try_with(|_| {}).is_err() {
        h.exited.set(true);
    }
    h.tid
        .set(NEXT_TID.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    if !h.exited.get() {
        crate::sync::lock_std(&HEAPS).push(h as *const Heap as usize);
        #[cfg(not(loom))]
        {
            static HOOKED: std::sync::Once = std::sync::Once::new();
            HOOKED.call_once(|| crate::fork::on_child(after_fork));
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
    fn enter(h: &'a Heap) -> Busy<'a> {
        h.busy.set(h.busy.get() + 1);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        Busy(h)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.0.busy.set(self.0.busy.get() - 1);
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
        if h.busy.get() == 0 {
            flush(h);
        }
        h.exited.set(true);
    }
}

/// A shared cache's slow path: charge the object's bytes (refilling the
/// stock), then pop, refilling the slab if needed.
fn alloc_shared_slow(
    h: &Heap,
    root: &'static RootCache,
    ctx: Option<&CtxRef>,
    nofail: bool,
) -> SlowResult {
    let need = root.obj_size + OBJCG_BYTES;
    let kind = SlabKind::of(root.reclaimable);
    if let Some(ctx) = ctx {
        if h.stock.can_consume(ctx.as_ptr(), need) {
            h.stock.consume(need, kind);
        } else {
            h.stock.charge(ctx, need, kind, nofail).map_err(Box::new)?;
        }
    }
    let ctx_ptr = ctx.map_or(ptr::null(), CtxRef::as_ptr);
    // SAFETY: slabs in our heap are live slabs we own.
    let popped = match unsafe { h.slabs[root.index].get().as_ref() } {
        // SAFETY: our own slab.
        Some(s) => unsafe { s.pop() }.map(|p| {
            // SAFETY: objects are never at address 0.
            unsafe { NonNull::new_unchecked(p) }
        }),
        None => None,
    };
    let obj = match popped.map_or_else(|| refill_and_pop(h, root, nofail), Ok) {
        Ok(obj) => obj,
        Err(e) => {
            if !ctx_ptr.is_null() {
                uncharge_object(ctx_ptr, need, kind);
            }
            return Err(e);
        }
    };
    // SAFETY: the object is ours, in a shared slab (with a vector).
    unsafe {
        Segment::of(obj.as_ptr() as usize)
            .slab_of(obj.as_ptr() as usize)
            .set_objcg(obj.as_ptr(), ctx_ptr)
    };
    Ok(obj)
}

fn refill_and_pop(h: &Heap, root: &'static RootCache, nofail: bool) -> SlowResult {
    let tid = h.tid.get();
    let i = root.index;
    // SAFETY: slabs in our heap are live slabs we own.
    if let Some(s) = unsafe { h.slabs[i].get().as_ref() } {
        // SAFETY: our own slab: collect the frees other threads made.
        if s.has_remote_frees() && unsafe { s.collect(true) } > 0 {
            // SAFETY: as above; collect left free objects.
            let obj = unsafe { s.pop() }.unwrap_or_else(|| {
                crate::internal::broken("slab heap: a collect that moved objects left none to pop")
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
            s.set_list(ListKind::HeapFull);
        }
    }
    if let Some(s) = next_owned(h, i) {
        h.slabs[i].set(s);
        // SAFETY: next_owned returns an owned slab with free objects.
        let obj = unsafe { s.pop() }.unwrap_or_else(|| {
            crate::internal::broken("slab heap: an owned slab taken for its free objects has none")
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
    let slab = cache.refill(tid, nofail).map_err(Box::new)?;
    h.slabs[i].set(slab);
    // SAFETY: refill returns a slab we own, with free objects.
    let obj = unsafe { slab.pop() }.unwrap_or_else(|| {
        crate::internal::broken("slab heap: a slab from a cache refill has no free object")
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
                crate::internal::broken("slab heap: the full list's length counts a slab it lacks")
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

/// Give every slab and cache back, return the object stock, and unbind.
fn flush(h: &Heap) {
    flush_classes(h, |_| true);
    h.stock.drain();
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

/// Give the calling thread's slabs back (before it changes group for good,
/// or so that a test sees caches settle), and its object stocks.
pub(crate) fn flush_local() {
    let _internal = crate::internal::Internal::enter();
    for heap in [&HEAP, &HANDLE_HEAP] {
        let _ = heap.try_with(|h| {
            let _busy = Busy::enter(h);
            flush(h)
        });
    }
}

/// The calling thread leaves its group: return its object stocks and the
/// slabs of its isolated caches. Its shared slabs serve any group, but a
/// thread that moves between groups (a worker serving many tenants) would
/// otherwise hoard used-up slabs whose slots other threads free and only it
/// reuses: all but the newest [`FULL_KEEP`] per class go back to their cache,
/// where other threads' frees reopen them for everyone. A thread that stays
/// in its group keeps them all, so its own frees stay local.
pub(crate) fn leave_group() {
    let _internal = crate::internal::Internal::enter();
    let _ = HEAP.try_with(|h| {
        let _busy = Busy::enter(h);
        flush_isolated(h);
        h.stock.drain();
        for i in 0..MAX_ROOTS {
            loop {
                let oldest = {
                    let mut l = h.lists(i);
                    if l.full.len <= FULL_KEEP {
                        break;
                    }
                    let Some(oldest) = l.full.last() else {
                        crate::internal::broken(
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
    });
    let _ = HANDLE_HEAP.try_with(|h| {
        let _busy = Busy::enter(h);
        h.stock.drain()
    });
}

/// Return the calling thread's object stocks: exact charges and `slab`
/// statistics for what it allocated (a quiesce on this thread).
pub(crate) fn drain_local() {
    let _internal = crate::internal::Internal::enter();
    for heap in [&HEAP, &HANDLE_HEAP] {
        let _ = heap.try_with(|h| {
            let _busy = Busy::enter(h);
            h.stock.drain()
        });
    }
}

/// Give back the calling thread's owned slabs that are empty (reclaim just
/// freed their objects), so that shrinking can release them.
pub(crate) fn trim_local() {
    for heap in [&HEAP, &HANDLE_HEAP] {
        let _ = heap.try_with(|h| {
            let _busy = Busy::enter(h);
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
                        // SAFETY: we own it and give it back; the heap keeps
                        // its counted reference on the cache.
                        unsafe { s.cache().release(s) };
                    }
                }
                let mut owned = Vec::new();
                while let Some(s) = take_first(h, i) {
                    owned.push(s);
                }
                for s in owned {
                    // SAFETY: taken off our lists: ours to collect, read,
                    // give back or list again (no borrow is held while
                    // `retire` runs).
                    unsafe {
                        s.collect(true);
                        if s.used() == 0 {
                            retire(s);
                        } else if s.has_local_free() {
                            h.lists(i).avail.push(s);
                            s.set_list(ListKind::HeapAvail);
                        } else {
                            h.lists(i).full.push(s);
                            s.set_list(ListKind::HeapFull);
                        }
                    }
                }
            }
        });
    }
}
