//! The slab: one span of objects of one size, and its metadata (kept in the
//! segment header, never in the span: no per-object header).
//!
//! Ownership decides who may touch what:
//! - While a thread owns the slab (it is the thread's current slab for its
//!   cache), only that thread touches `local_free` and `used`; other threads
//!   free through the atomic `thread_free` list ([`remote`](super::remote)).
//! - While unowned, the slab sits on one of its cache's lists, and the cache
//!   lock protects `local_free`, `used` and the list links.
//! - A free span in a pool: the pool lock protects the links.

use super::cache::Cache;
use super::remote;
use crate::group::kmem_context::KmemContext;

/// Bytes of an object's entry in its slab's object vector, charged with it.
pub(crate) const VECTOR_ENTRY_BYTES: usize = std::mem::size_of::<*const KmemContext>();
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU16, AtomicU32, AtomicU8, AtomicUsize, Ordering::*};

/// The layout of an object vector of `entries` entries (at most a span's
/// objects, 2^13: never too large for a layout).
fn vector_layout(entries: usize) -> std::alloc::Layout {
    std::alloc::Layout::array::<*const KmemContext>(entries).unwrap_or_else(|_| {
        crate::reentrancy::broken("slab: an object vector longer than a span has objects")
    })
}

/// Why a free failed [`Slab::is_live_slot`]: out of line, off the fast path.
#[cold]
#[inline(never)]
fn bad_free_cause(limit: usize) -> &'static str {
    if limit == 0 {
        "no slab is in use there (a foreign pointer, or a free after the slab went away)"
    } else {
        "not the start of an object (an interior pointer)"
    }
}

/// The vector entry of a freed slot of a shared slab under the `hardened`
/// feature (contexts are aligned, so no context has this address): a second
/// free of the slot finds it and aborts.
#[cfg(feature = "hardened")]
pub(crate) const FREED: *const KmemContext = std::ptr::without_provenance(1);

/// Which list an unowned slab is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ListKind {
    /// A thread's current slab, or a free span: on no list.
    None,
    Partial,
    Full,
    Empty,
    /// Owned by a thread, with free objects, waiting to become current.
    HeapAvail,
    /// Owned by a thread, used up; remote frees may be waiting on it.
    HeapFull,
    /// As `HeapAvail`, in the thread's heap of group allocator handles.
    HandleAvail,
    /// As `HeapFull`, in the thread's heap of group allocator handles.
    HandleFull,
}

/// Aligned to a cache line: every field the fast paths read (alloc and
/// free, local or remote, uniform slab) is in the first 64 bytes; the rest
/// is for slow paths and mixed slabs.
#[repr(C, align(64))]
pub(crate) struct Slab {
    // Line 0: the fast paths.
    local_free: UnsafeCell<usize>,
    used: UnsafeCell<u32>,
    /// [`MIXED`] | [`RECLAIMABLE`]; 0 for the common slab (one context, or
    /// none, not reclaimable), which the fast paths serve without a branch
    /// more. Atomic: a remote free reads it while the owner makes the slab
    /// mixed (Release there, Acquire here: it then sees the vector filled).
    flags: AtomicU8,
    list: AtomicU8,
    /// The root cache's index (the heap slot), set by `format`.
    class: AtomicU16,
    /// The slot size: the bytes an object is charged (plus its vector entry
    /// when that entry was charged). Atomic (Relaxed: plain moves) like
    /// `limit`, `capacity` and `class`: [`is_object_start`](Self::is_object_start)
    /// reads them for any address, racing with `format` on another thread.
    obj_size: AtomicU32,
    /// `capacity * obj_size`: the bytes of the span slots cover; 0 while no
    /// slab is in use in the span (never formatted, or back in its pool).
    limit: AtomicU32,
    /// The kmem context of every object of a uniform slab (not [`MIXED`]);
    /// null: the objects are not charged (the root's, or an isolated cache's
    /// slab, charged whole). Written by the owner only while the slab holds
    /// no object, so every reader holds an object allocated after the write.
    ctx: UnsafeCell<*const KmemContext>,
    /// The owning thread's id (`heap::NEXT_TID`), 0 when unowned.
    owner: AtomicUsize,
    start: *mut u8,
    /// `u64::MAX / obj_size + 1`: an offset below 2^32 is a multiple of the
    /// slot size iff `offset * divc < divc` (wrapping; Lemire, Kaser and
    /// Kurz, "Faster remainder by direct computation", 2019): the bad-free
    /// check in one multiplication.
    divc: UnsafeCell<u64>,
    /// A local free moves the slab between its owner's lists once `used`
    /// falls below this: 0 for a current slab (never), 1 for an owned slab
    /// with free objects (when it empties), a quarter free for a used-up one
    /// (see [`set_list`](Self::set_list)). One compare on the free path.
    relist: AtomicU32,
    /// `ceil(2^32 / obj_size)`: slot index by multiplication (exact for
    /// offsets and sizes below 2^16, as spans and objects are), for the
    /// object vector of a mixed slab.
    recip: UnsafeCell<u32>,
    // Line 1: slow paths, mixed slabs, lists.
    /// The object vector (S11), kept outside the span it describes, made
    /// when a second context allocates from the slab: each slot's kmem
    /// context, with [`ENTRY_CHARGED`] set when the object was charged its
    /// entry too. Kept with the span for its next use.
    vector: UnsafeCell<*mut *const KmemContext>,
    thread_free: AtomicUsize,
    /// The cache; atomic because a notifier may read it while the slab is
    /// being reused for another cache (type-stable memory, checked under lock).
    cache: AtomicPtr<Cache>,
    prev: UnsafeCell<*mut Slab>,
    next: UnsafeCell<*mut Slab>,
    span_bytes: u32,
    capacity: AtomicU32,
    /// Entries `vector` has room for.
    vector_cap: UnsafeCell<u32>,
    /// Objects linked into the free list so far: a fresh slab links a page's
    /// worth and the rest as it is needed (mimalloc's page extension), so a
    /// slab only ever touches the pages its objects use.
    extended: UnsafeCell<u32>,
    /// A used-up owned slab reopens once `used` falls to this: a quarter of
    /// it free, so that the next refill serves many allocations.
    reopen: UnsafeCell<u32>,
    /// While the span is free in its pool: when it was freed (milliseconds
    /// of the pool clock, wrapping), for decay. Pool lock.
    freed_at: UnsafeCell<u32>,
}

const _: () = assert!(std::mem::size_of::<Slab>() == 128, "two cache lines");

/// [`Slab::flags`]: the slab has an object vector in use: its objects
/// belong to more than one context (or the `hardened` feature is on).
pub(crate) const MIXED: u8 = 1;
/// [`Slab::flags`]: objects count in `slab_reclaimable`.
pub(crate) const RECLAIMABLE: u8 = 2;

/// The mark in an object-vector entry of an object that was charged its
/// entry's bytes (allocated while the slab had a vector); objects that were
/// in the slab when it became mixed were not. Contexts are aligned, so the
/// low bit is free.
pub(crate) const ENTRY_CHARGED: usize = 1;

// SAFETY: the fields behind UnsafeCell are accessed under the ownership rules
// of the module doc (owner thread, or cache lock, or pool lock); the rest are
// atomics or immutable after the segment is mapped.
unsafe impl Sync for Slab {}
// SAFETY: a slab is plain memory in a segment, not tied to the thread that made it; its UnsafeCell fields follow the same ownership rules on any thread (owner, cache lock or pool lock), the rest are atomics or immutable.
unsafe impl Send for Slab {}

impl Slab {
    pub(crate) fn new(start: *mut u8, span_bytes: usize) -> Slab {
        Slab {
            local_free: UnsafeCell::new(0),
            used: UnsafeCell::new(0),
            flags: AtomicU8::new(0),
            list: AtomicU8::new(ListKind::None as u8),
            class: AtomicU16::new(0),
            obj_size: AtomicU32::new(0),
            limit: AtomicU32::new(0),
            ctx: UnsafeCell::new(ptr::null()),
            owner: AtomicUsize::new(0),
            start,
            divc: UnsafeCell::new(0),
            relist: AtomicU32::new(0),
            recip: UnsafeCell::new(0),
            vector: UnsafeCell::new(ptr::null_mut()),
            thread_free: AtomicUsize::new(remote::UNOWNED),
            cache: AtomicPtr::new(ptr::null_mut()),
            prev: UnsafeCell::new(ptr::null_mut()),
            next: UnsafeCell::new(ptr::null_mut()),
            span_bytes: span_bytes as u32,
            capacity: AtomicU32::new(0),
            vector_cap: UnsafeCell::new(0),
            extended: UnsafeCell::new(0),
            reopen: UnsafeCell::new(0),
            freed_at: UnsafeCell::new(0),
        }
    }

    /// The span's pages.
    pub(crate) fn pages(&self) -> usize {
        self.span_bytes() / crate::PAGE_SIZE
    }

    pub(crate) fn span_bytes(&self) -> usize {
        self.span_bytes as usize
    }

    pub(crate) fn start(&self) -> *mut u8 {
        self.start
    }

    /// Format the fresh span for `cache`'s objects, owned by `owner`, all
    /// free. A shared cache's slab starts uniform, with no context (the
    /// owner sets one with [`prepare_for`](Self::prepare_for)) and no
    /// object vector; under the `hardened` feature every shared slab keeps
    /// a vector, whose entries mark freed slots. Returns false, with the
    /// slab untouched, when a vector cannot be allocated.
    ///
    /// # Safety
    /// The slab must be a span just taken from a pool (no other user).
    pub(crate) unsafe fn format(&self, cache: &Cache, obj_size: usize, owner: usize) -> bool {
        let capacity = self.span_bytes() / obj_size;
        let root = cache.root();
        let mut flags = 0;
        if root.shared() && root.reclaimable {
            flags |= RECLAIMABLE;
        }
        if root.shared() && cfg!(feature = "hardened") {
            flags |= MIXED;
            // SAFETY: exclusive use of a fresh span (caller's contract).
            if !unsafe { self.reserve_vector(capacity) } {
                return false;
            }
        }
        // SAFETY: exclusive use of a fresh span (caller's contract): no
        // other thread reads these fields until the slab is published by
        // the Release store of `owner` or the cache lock.
        unsafe {
            *self.local_free.get() = 0;
            *self.extended.get() = 0;
            *self.used.get() = 0;
            *self.ctx.get() = ptr::null();
            *self.divc.get() = u64::MAX / obj_size as u64 + 1;
            *self.recip.get() = (u32::MAX / obj_size as u32) + 1;
            *self.reopen.get() = (capacity - (capacity / 4).max(1)) as u32;
        }
        self.capacity.store(capacity as u32, Relaxed);
        self.obj_size.store(obj_size as u32, Relaxed);
        self.limit.store((capacity * obj_size) as u32, Relaxed);
        self.class.store(root.index as u16, Relaxed);
        self.flags.store(flags, Relaxed);
        // SAFETY: exclusive use of the fresh span; obj_size and capacity are
        // set and the free list is empty.
        unsafe { self.extend() };
        self.cache
            .store(cache as *const Cache as *mut Cache, Relaxed);
        self.set_list(ListKind::None);
        self.thread_free.store(0, Relaxed);
        self.owner.store(owner, Release);
        true
    }

    /// Make the owned slab serve allocations charged through `ctx` (null:
    /// uncharged) from its free list (S11): an empty slab becomes uniform
    /// for `ctx`; a uniform one for another context becomes mixed, its
    /// vector filled with that context for every slot (the live objects
    /// keep what they were charged: their entries are not marked
    /// [`ENTRY_CHARGED`]). Returns false if the system allocator refuses
    /// the vector.
    ///
    /// # Safety
    /// The caller owns the slab (or holds its cache lock while unowned);
    /// a slab of a shared cache.
    pub(crate) unsafe fn prepare_for(&self, ctx: *const KmemContext) -> bool {
        // SAFETY: the caller owns the slab: `used`, `ctx` and the vector are
        // its to read and write; remote frees read `ctx` only for objects
        // that are live (so not while `used` is 0) and the vector only
        // after the Release store of MIXED below.
        unsafe {
            let flags = self.flags.load(Relaxed);
            if *self.used.get() == 0 {
                *self.ctx.get() = ctx;
                if flags & MIXED != 0 && !cfg!(feature = "hardened") {
                    self.flags.store(flags & !MIXED, Relaxed);
                }
                return true;
            }
            if flags & MIXED != 0 || *self.ctx.get() == ctx {
                return true;
            }
            let capacity = self.capacity();
            if !self.reserve_vector(capacity) {
                return false;
            }
            let v = *self.vector.get();
            let old = *self.ctx.get();
            for i in 0..capacity {
                *v.add(i) = old;
            }
        }
        self.flags.fetch_or(MIXED, Release);
        true
    }

    /// The context and the bytes charged for the live object `obj` of
    /// this slab (null and 0 when it is not charged), after
    /// [`is_live_slot`](Self::is_live_slot) passed. The free path, for any slab
    /// kind: the fast paths inline the uniform case themselves.
    ///
    /// # Safety
    /// `obj` is a live object of this slab that the caller is freeing (or
    /// holds), so its entry is stable.
    #[inline]
    pub(crate) unsafe fn charged_of(&self, obj: *mut u8) -> (*const KmemContext, usize) {
        if self.flags.load(Acquire) & MIXED == 0 {
            // SAFETY: `ctx` is written only while the slab holds no object,
            // and `obj` is live (the caller's contract).
            let ctx = unsafe { *self.ctx.get() };
            return (ctx, if ctx.is_null() { 0 } else { self.obj_size() });
        }
        // SAFETY: a MIXED slab's vector has `capacity` entries, filled
        // before the flag was published (the Acquire load above); `obj` is
        // a live slot of this slab, so its entry is below capacity and not
        // written meanwhile.
        let e = unsafe { *self.entry(obj) } as usize;
        let ctx = (e & !ENTRY_CHARGED) as *const KmemContext;
        let bytes = if ctx.is_null() {
            0
        } else if e & ENTRY_CHARGED != 0 {
            self.obj_size() + VECTOR_ENTRY_BYTES
        } else {
            self.obj_size()
        };
        (ctx, bytes)
    }

    /// The vector entry of `obj` in a MIXED slab.
    ///
    /// # Safety
    /// The slab is MIXED (its vector has `capacity` entries) and `obj` is a
    /// slot of it.
    #[inline(always)]
    pub(crate) unsafe fn entry(&self, obj: *mut u8) -> *mut *const KmemContext {
        // SAFETY: the slab is MIXED (this fn's contract), so its vector has
        // `capacity` entries, and `obj` is a slot of it, whose index is
        // below capacity: the entry is inside the vector.
        unsafe { (*self.vector.get()).add(self.index_of(obj)) }
    }

    /// Record the context `obj`, just allocated from this MIXED slab, is
    /// charged to; a charged object pays for its entry too.
    ///
    /// # Safety
    /// As [`entry`](Self::entry); the caller owns the slab and just popped
    /// `obj`.
    #[inline(always)]
    pub(crate) unsafe fn set_entry(&self, obj: *mut u8, ctx: *const KmemContext) {
        let e = if ctx.is_null() {
            0
        } else {
            ctx as usize | ENTRY_CHARGED
        };
        // SAFETY: a MIXED slab the caller owns, `obj` just popped from it
        // (this fn's contract): the entry of that slot is inside the vector
        // and no other thread reads or writes it until the object is freed.
        unsafe { *self.entry(obj) = e as *const KmemContext };
    }

    /// The uniform context (see the field).
    ///
    /// # Safety
    /// The caller holds a live object of the slab, or owns it.
    #[inline(always)]
    pub(crate) unsafe fn uniform_ctx(&self) -> *const KmemContext {
        // SAFETY: the caller owns the slab or holds one of its live objects
        // (this fn's contract); `ctx` is written only by the owner while
        // the slab holds no object, so not meanwhile.
        unsafe { *self.ctx.get() }
    }

    /// [`MIXED`] | [`RECLAIMABLE`]. Acquire (a plain load on x86): a
    /// remote reader of a MIXED slab then sees its vector filled.
    #[inline(always)]
    pub(crate) fn flags(&self) -> u8 {
        self.flags.load(Acquire)
    }

    /// Link the next page's worth of never-used objects (at least one) into
    /// the empty free list. Returns false when every object is linked.
    ///
    /// # Safety
    /// Exclusive use of the free list (owner, or cache lock while unowned),
    /// and the list is empty.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn extend(&self) -> bool {
        // SAFETY: the caller has exclusive use of the free list, which is
        // empty (this fn's contract); the slots linked are below capacity,
        // inside the span, at least 8 bytes and 8-aligned, so each holds
        // its link.
        unsafe {
            let (from, capacity) = (*self.extended.get() as usize, self.capacity());
            if from == capacity {
                return false;
            }
            let size = self.obj_size();
            let to = capacity.min(from + (crate::PAGE_SIZE / size).max(1));
            let mut head = 0usize;
            for i in (from..to).rev() {
                let obj = self.start.add(i * size);
                (obj as *mut usize).write(head);
                head = obj as usize;
            }
            *self.local_free.get() = head;
            *self.extended.get() = to as u32;
        }
        true
    }

    /// Give the slab an object vector of at least `capacity` entries. The
    /// vector is metadata of the span, like the slab itself: it is kept for
    /// the span's next use and never freed. Returns false if the system
    /// allocator refuses.
    ///
    /// # Safety
    /// Exclusive use of the slab (a fresh span).
    unsafe fn reserve_vector(&self, capacity: usize) -> bool {
        // SAFETY: exclusive use (caller's contract).
        unsafe {
            let old = *self.vector_cap.get() as usize;
            let parked = *self.vector.get();
            if old >= capacity && !parked.is_null() {
                return true;
            }
            let layout = vector_layout(capacity);
            // The vector is unaccounted allocator metadata (the kernel keeps
            // obj_exts out of the accounted kmalloc-cg-* caches likewise).
            let fresh = std::alloc::GlobalAlloc::alloc(&std::alloc::System, layout);
            if fresh.is_null() {
                return false;
            }
            if !parked.is_null() {
                let old_layout = vector_layout(old);
                std::alloc::GlobalAlloc::dealloc(
                    &std::alloc::System,
                    parked as *mut u8,
                    old_layout,
                );
            }
            *self.vector.get() = fresh as *mut *const KmemContext;
            *self.vector_cap.get() = capacity as u32;
        }
        true
    }

    /// Whether `obj` can be a live object being freed: `Err` with the cause
    /// when no slab is in use in its span (`limit` is 0 for a span never
    /// formatted or back in its pool) or it is not the first byte of a slot.
    /// (The `hardened` feature also knows freed slots, by a mark in their
    /// vector entries.) One multiplication and two compares: cheap enough
    /// for every free.
    #[inline(always)]
    pub(crate) fn is_live_slot(&self, obj: *mut u8) -> bool {
        let off = (obj as usize).wrapping_sub(self.start as usize);
        // The limits are immutable while the slab holds objects, which it
        // does if `obj` is one; for a bad pointer, whatever a racing
        // `format` left (we abort either way).
        let limit = self.limit.load(Relaxed) as usize;
        // SAFETY: `divc` is written by `format` only, before the slab holds
        // an object; for a bad pointer into a span being formatted, a stale
        // value only changes which abort message is printed.
        let divc = unsafe { *self.divc.get() };
        off < limit && (off as u64).wrapping_mul(divc) < divc
    }

    /// Why `obj` failed [`is_live_slot`](Self::is_live_slot).
    #[cold]
    pub(crate) fn bad_free_cause(&self) -> &'static str {
        bad_free_cause(self.limit.load(Relaxed) as usize)
    }

    /// Mark the span free (back in its pool): frees into it are bad frees.
    /// Pool lock held; the span holds no object and no thread uses it.
    pub(crate) fn mark_free(&self) {
        self.limit.store(0, Relaxed);
        self.capacity.store(0, Relaxed);
    }

    /// The slot index of `obj`, by multiplication with the reciprocal.
    #[inline(always)]
    pub(crate) fn index_of(&self, obj: *mut u8) -> usize {
        let off = (obj as usize - self.start as usize) as u64;
        // SAFETY: immutable while the slab holds objects.
        ((off * unsafe { *self.recip.get() } as u64) >> 32) as usize
    }

    #[inline(always)]
    pub(crate) fn owner(&self) -> usize {
        self.owner.load(Relaxed)
    }

    /// The cache the slab belongs to.
    #[inline]
    pub(crate) fn cache(&self) -> &'static Cache {
        // SAFETY: set by `format` before the slab holds any object; caches are
        // type-stable (never freed, only recycled), so the reference is valid
        // memory even if the slab has been reused since.
        unsafe { &*self.cache.load(Relaxed) }
    }

    #[inline(always)]
    pub(crate) fn obj_size(&self) -> usize {
        self.obj_size.load(Relaxed) as usize
    }

    /// The first linked free object, 0 if none (the fast path: no
    /// extension). Owner only.
    ///
    /// # Safety
    /// The caller owns the slab.
    #[inline(always)]
    pub(crate) unsafe fn free_head(&self) -> usize {
        // SAFETY: the owner alone touches `local_free` (caller's contract).
        unsafe { *self.local_free.get() }
    }

    /// Take `head`, the first free object ([`free_head`](Self::free_head)),
    /// off the free list and count it used.
    ///
    /// # Safety
    /// The caller owns the slab and `head` is its current non-zero head.
    #[inline(always)]
    pub(crate) unsafe fn unlink_head(&self, head: usize) {
        // SAFETY: the owner's list (caller's contract); a listed object's
        // first word is the link to the next one.
        unsafe {
            *self.local_free.get() = *(head as *const usize);
            *self.used.get() += 1;
        }
    }

    /// Pop a free object. Owner only (or cache lock held while unowned).
    #[inline]
    pub(crate) unsafe fn pop(&self) -> Option<*mut u8> {
        // SAFETY: by the caller's contract we have exclusive use of the list;
        // a listed object's first word is the next link.
        unsafe {
            let mut head = *self.local_free.get();
            if head == 0 {
                if !self.extend() {
                    return None;
                }
                head = *self.local_free.get();
            }
            *self.local_free.get() = *(head as *const usize);
            *self.used.get() += 1;
            Some(head as *mut u8)
        }
    }

    /// Push a free object. Owner only (or cache lock held while unowned).
    #[inline(always)]
    pub(crate) unsafe fn push_local(&self, obj: *mut u8) {
        // SAFETY: the caller owns the slab (this fn's contract), so the free list is its alone; `obj` is a dead object of this slab, at least 8 bytes and 8-aligned, so its first word can hold the link.
        unsafe {
            (obj as *mut usize).write(*self.local_free.get());
            *self.local_free.get() = obj as usize;
            *self.used.get() -= 1;
        }
    }

    /// Free `obj` from a thread that does not own the slab. Returns true
    /// when the cache must be notified ([`remote::push`]).
    pub(crate) fn push_remote(&self, head: *mut u8, tail: *mut u8, dead_cache: bool) -> bool {
        remote::push(
            &self.thread_free,
            head as usize,
            // SAFETY: `head..=tail` is a chain of dead objects of this slab,
            // linked through their first words; the tail's is ours to write.
            |next| unsafe { (tail as *mut usize).write(next) },
            dead_cache,
        )
    }

    /// Move remotely freed objects to the local list; `owned` says whether
    /// the slab stays (or becomes) owned. Returns how many moved.
    ///
    /// # Safety
    /// Owner only, or the cache lock held while changing ownership.
    pub(crate) unsafe fn collect(&self, owned: bool) -> usize {
        let mut obj = remote::take(&self.thread_free, owned);
        let mut n = 0;
        // SAFETY: the taken list is ours alone; links are first words.
        unsafe {
            while obj != 0 {
                let next = *(obj as *const usize);
                (obj as *mut usize).write(*self.local_free.get());
                *self.local_free.get() = obj;
                obj = next;
                n += 1;
            }
            *self.used.get() -= n as u32;
        }
        n
    }

    /// Whether remote frees wait on the list.
    pub(crate) fn has_remote_frees(&self) -> bool {
        self.thread_free.load(Acquire) & !remote::UNOWNED != 0
    }

    pub(crate) fn is_unowned(&self) -> bool {
        remote::is_unowned(&self.thread_free)
    }

    pub(crate) fn set_owner(&self, owner: usize) {
        self.owner.store(owner, Relaxed);
    }

    /// Objects in use. Owner only, or cache lock held while unowned.
    pub(crate) unsafe fn used(&self) -> usize {
        // SAFETY: the caller owns the slab or holds its cache lock while unowned (this fn's contract): no other thread writes `used` meanwhile.
        unsafe { *self.used.get() as usize }
    }

    /// Objects the slab holds when full (0: no slab in use in the span).
    pub(crate) fn capacity(&self) -> usize {
        self.capacity.load(Relaxed) as usize
    }

    /// Whether an object can be popped: linked free ones, or ones never
    /// used yet. Owner only, or cache lock held while unowned.
    pub(crate) unsafe fn has_local_free(&self) -> bool {
        // SAFETY: the caller owns the slab or holds its cache lock while unowned (this fn's contract): no other thread writes the list head or `extended` meanwhile.
        unsafe { *self.local_free.get() != 0 || (*self.extended.get() as usize) < self.capacity() }
    }

    /// Which cache list the slab is on. Stable under the cache lock.
    pub(crate) fn list(&self) -> ListKind {
        match self.list.load(Relaxed) {
            1 => ListKind::Partial,
            2 => ListKind::Full,
            3 => ListKind::Empty,
            4 => ListKind::HeapAvail,
            5 => ListKind::HeapFull,
            6 => ListKind::HandleAvail,
            7 => ListKind::HandleFull,
            _ => ListKind::None,
        }
    }

    /// After a local free: whether the owner must move the slab between its
    /// lists (a used-up slab with a quarter free reopens, an emptied one
    /// goes back to its cache). The one extra check of the local free path;
    /// the current slab never needs it.
    #[inline(always)]
    pub(crate) unsafe fn needs_relisting(&self) -> bool {
        // SAFETY: the owner reads its own `used` (caller's contract).
        unsafe { *self.used.get() < self.relist.load(Relaxed) }
    }

    /// The root cache's index.
    pub(crate) fn class(&self) -> usize {
        self.class.load(Relaxed) as usize
    }

    pub(crate) fn set_list(&self, l: ListKind) {
        let relist = match l {
            ListKind::HeapAvail | ListKind::HandleAvail => 1,
            // SAFETY: `reopen` is written by `format` only, before the slab
            // is owned and listed.
            ListKind::HeapFull | ListKind::HandleFull => (unsafe { *self.reopen.get() }) + 1,
            _ => 0,
        };
        self.relist.store(relist, Relaxed);
        self.list.store(l as u8, Relaxed);
    }

    pub(crate) unsafe fn list_next(&self) -> *mut Slab {
        // SAFETY: caller holds the lock of the list the slab is on.
        unsafe { *self.next.get() }
    }

    pub(crate) unsafe fn list_prev(&self) -> *mut Slab {
        // SAFETY: the caller holds the lock of the list the slab is on (this fn's contract): no other thread writes the link meanwhile.
        unsafe { *self.prev.get() }
    }

    pub(crate) unsafe fn set_list_next(&self, s: *mut Slab) {
        // SAFETY: the caller holds the lock of the list the slab is on (this fn's contract): no other thread reads or writes the link meanwhile.
        unsafe { *self.next.get() = s }
    }

    /// When the free span was freed. Pool lock held.
    pub(crate) unsafe fn freed_at(&self) -> u32 {
        // SAFETY: the caller holds the pool lock (this fn's contract), which every writer of `freed_at` holds.
        unsafe { *self.freed_at.get() }
    }

    /// Record when the span was freed. Pool lock held.
    pub(crate) unsafe fn set_freed_at(&self, ms: u32) {
        // SAFETY: the caller holds the pool lock (this fn's contract): no other thread reads or writes `freed_at` meanwhile.
        unsafe { *self.freed_at.get() = ms }
    }

    pub(crate) unsafe fn set_list_prev(&self, s: *mut Slab) {
        // SAFETY: the caller holds the lock of the list the slab is on (this fn's contract): no other thread reads or writes the link meanwhile.
        unsafe { *self.prev.get() = s }
    }

    /// Whether `addr` is the start of an object of this slab.
    pub(crate) fn is_object_start(&self, addr: usize) -> bool {
        let off = addr.wrapping_sub(self.start as usize);
        // Atomic reads: for an address that is no live object of the
        // caller's, a racing `format` may change them, giving a wrong answer
        // for that address, never a data race.
        let size = self.obj_size();
        size != 0 && off.is_multiple_of(size) && off / size < self.capacity.load(Relaxed) as usize
    }
}

impl super::protocol::SlabOps for &'static Slab {
    #[inline]
    fn list(self) -> ListKind {
        Slab::list(self)
    }

    #[inline]
    fn is_unowned(self) -> bool {
        Slab::is_unowned(self)
    }

    #[inline]
    fn has_remote_frees(self) -> bool {
        Slab::has_remote_frees(self)
    }

    #[inline]
    fn set_owner(self, owner: usize) {
        Slab::set_owner(self, owner)
    }

    #[inline]
    fn push_remote(self, head: *mut u8, tail: *mut u8, dead_cache: bool) -> bool {
        Slab::push_remote(self, head, tail, dead_cache)
    }

    #[inline]
    unsafe fn used(self) -> usize {
        // SAFETY: the trait's contract for `used` is `Slab::used`'s (owner, or cache lock while unowned), which the caller keeps.
        unsafe { Slab::used(self) }
    }

    #[inline]
    unsafe fn has_local_free(self) -> bool {
        // SAFETY: the trait's contract for `has_local_free` is `Slab::has_local_free`'s (owner, or cache lock while unowned), which the caller keeps.
        unsafe { Slab::has_local_free(self) }
    }

    #[inline]
    unsafe fn collect(self, owned: bool) -> usize {
        // SAFETY: the trait's contract for `collect` is `Slab::collect`'s (owner, or cache lock while changing ownership), which the caller keeps.
        unsafe { Slab::collect(self, owned) }
    }
}

/// An intrusive doubly linked list of slabs, under its owner's lock.
pub(crate) struct SlabList {
    head: *mut Slab,
    tail: *mut Slab,
    pub(crate) len: usize,
}

impl Default for SlabList {
    fn default() -> Self {
        SlabList::new()
    }
}

// SAFETY: the list only holds pointers to slabs (Sync); it is used by one
// thread at a time (inside the cache mutex, or by the heap's owner).
unsafe impl Send for SlabList {}

impl SlabList {
    pub(crate) const fn new() -> SlabList {
        SlabList {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            len: 0,
        }
    }

    /// The slab pushed longest ago.
    pub(crate) fn last(&self) -> Option<&'static Slab> {
        // SAFETY: listed slabs are live spans of mapped segments.
        unsafe { self.tail.as_ref() }
    }

    pub(crate) unsafe fn push(&mut self, s: &Slab) {
        let sp = s as *const Slab as *mut Slab;
        // SAFETY: the caller holds the list's lock and s is on no list.
        unsafe {
            s.set_list_prev(ptr::null_mut());
            s.set_list_next(self.head);
            if !self.head.is_null() {
                (*self.head).set_list_prev(sp);
            }
        }
        if self.tail.is_null() {
            self.tail = sp;
        }
        self.head = sp;
        self.len += 1;
    }

    pub(crate) unsafe fn remove(&mut self, s: &Slab) {
        // SAFETY: the caller holds the list's lock and s is on this list.
        unsafe {
            let (prev, next) = (s.list_prev(), s.list_next());
            if prev.is_null() {
                self.head = next;
            } else {
                (*prev).set_list_next(next);
            }
            if next.is_null() {
                self.tail = prev;
            } else {
                (*next).set_list_prev(prev);
            }
        }
        self.len -= 1;
    }

    pub(crate) fn first(&self) -> Option<&'static Slab> {
        // SAFETY: listed slabs are live spans of mapped segments.
        unsafe { self.head.as_ref() }
    }
}
