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
use crate::context::KmemContext;

/// Bytes of an object's entry in its slab's object vector, charged with it.
pub(crate) const OBJCG_BYTES: usize = std::mem::size_of::<*const KmemContext>();
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU16, AtomicU32, AtomicU8, AtomicUsize, Ordering::*};

/// The layout of an object vector of `entries` entries (at most a span's
/// objects, 2^13: never too large for a layout).
fn vector_layout(entries: usize) -> std::alloc::Layout {
    std::alloc::Layout::array::<*const KmemContext>(entries).unwrap_or_else(|_| {
        crate::internal::broken("slab: an object vector longer than a span has objects")
    })
}

/// Why a free failed [`Slab::check_free`]: out of line, off the fast path.
#[cold]
#[inline(never)]
fn bad_free_cause(capacity: usize) -> &'static str {
    if capacity == 0 {
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
}

/// Aligned to a cache line, so that the fields the fast paths read (the
/// first 64 bytes) share one line whichever span the slab describes.
#[repr(C, align(64))]
pub(crate) struct Slab {
    // Hot fields first: the fast paths read these and nothing else.
    local_free: UnsafeCell<usize>,
    used: UnsafeCell<u32>,
    /// Atomic (read and written Relaxed, plain moves on x86) like
    /// `obj_size` and `class`: [`is_object_start`](Self::is_object_start)
    /// reads them for any address, racing with `format` on another thread.
    capacity: AtomicU32,
    /// Objects linked into the free list so far: a fresh slab links a page's
    /// worth and the rest as it is needed (mimalloc's page extension), so a
    /// slab only ever touches the pages its objects use.
    extended: UnsafeCell<u32>,
    /// The object vector of a shared slab (S11): the kmem context of each
    /// slot (null: not charged), kept outside the span it describes. Null
    /// for slabs of isolated caches, which are charged whole.
    objcgs: UnsafeCell<*mut *const KmemContext>,
    /// `ceil(2^32 / obj_size)`: slot index by multiplication (exact for
    /// offsets and sizes below 2^16, as spans and objects are).
    recip: UnsafeCell<u32>,
    /// Entries `objcgs` has room for; the vector outlives span reuse.
    objcgs_cap: UnsafeCell<u32>,
    /// Whether objects count in `slab_reclaimable` (else unreclaimable).
    reclaimable: UnsafeCell<bool>,
    /// Bytes an object of a shared slab is charged: slot plus vector entry.
    charge: UnsafeCell<u32>,
    /// The owning heap's id (`heap::NEXT_TID`), 0 when unowned.
    owner: AtomicUsize,
    thread_free: AtomicUsize,
    /// The cache; atomic because a notifier may read it while the slab is
    /// being reused for another cache (type-stable memory, checked under lock).
    cache: AtomicPtr<Cache>,
    obj_size: AtomicU32,
    /// The root cache's index (the heap slot), set by `format`.
    class: AtomicU16,
    /// A used-up owned slab reopens once `used` falls to this: a quarter of
    /// it free, so that the next refill serves many allocations.
    reopen: UnsafeCell<u32>,
    list: AtomicU8,
    start: *mut u8,
    span_bytes: usize,
    prev: UnsafeCell<*mut Slab>,
    next: UnsafeCell<*mut Slab>,
    /// While the span is free in its pool: when it was freed (milliseconds
    /// of the pool clock), for decay. Pool lock.
    freed_at: UnsafeCell<u64>,
}

// SAFETY: the fields behind UnsafeCell are accessed under the ownership rules
// of the module doc (owner thread, or cache lock, or pool lock); the rest are
// atomics or immutable after the segment is mapped.
unsafe impl Sync for Slab {}
// SAFETY: as above; a slab is plain memory in a segment.
unsafe impl Send for Slab {}

impl Slab {
    pub(crate) fn new(start: *mut u8, span_bytes: usize) -> Slab {
        Slab {
            local_free: UnsafeCell::new(0),
            used: UnsafeCell::new(0),
            capacity: AtomicU32::new(0),
            extended: UnsafeCell::new(0),
            objcgs: UnsafeCell::new(ptr::null_mut()),
            recip: UnsafeCell::new(0),
            objcgs_cap: UnsafeCell::new(0),
            reclaimable: UnsafeCell::new(false),
            charge: UnsafeCell::new(0),
            owner: AtomicUsize::new(0),
            thread_free: AtomicUsize::new(remote::UNOWNED),
            cache: AtomicPtr::new(ptr::null_mut()),
            obj_size: AtomicU32::new(0),
            class: AtomicU16::new(0),
            reopen: UnsafeCell::new(0),
            list: AtomicU8::new(ListKind::None as u8),
            start,
            span_bytes,
            prev: UnsafeCell::new(ptr::null_mut()),
            next: UnsafeCell::new(ptr::null_mut()),
            freed_at: UnsafeCell::new(0),
        }
    }

    /// The span's pages.
    pub(crate) fn pages(&self) -> usize {
        self.span_bytes / crate::PAGE_SIZE
    }

    pub(crate) fn span_bytes(&self) -> usize {
        self.span_bytes
    }

    pub(crate) fn start(&self) -> *mut u8 {
        self.start
    }

    /// Format the fresh span for `cache`'s objects, owned by `owner`, all
    /// free; a shared cache's slab gets an object vector. Returns false, with
    /// the slab untouched, when the vector cannot be allocated.
    ///
    /// # Safety
    /// The slab must be a span just taken from a pool (no other user).
    pub(crate) unsafe fn format(&self, cache: &Cache, obj_size: usize, owner: usize) -> bool {
        let capacity = self.span_bytes / obj_size;
        // SAFETY: exclusive use of a fresh span (caller's contract).
        unsafe {
            if cache.root().shared() {
                if !self.reserve_objcgs(capacity) {
                    return false;
                }
            } else {
                self.release_objcgs();
            }
        }
        // SAFETY: exclusive use of a fresh span (caller's contract).
        unsafe {
            *self.local_free.get() = 0;
            *self.extended.get() = 0;
            *self.used.get() = 0;
            self.capacity.store(capacity as u32, Relaxed);
            self.obj_size.store(obj_size as u32, Relaxed);
            *self.recip.get() = (u32::MAX / obj_size as u32) + 1;
            *self.reclaimable.get() = cache.root().reclaimable;
            *self.charge.get() = (obj_size + OBJCG_BYTES) as u32;
            self.class.store(cache.root().index as u16, Relaxed);
            *self.reopen.get() = (capacity - (capacity / 4).max(1)) as u32;
        }
        // SAFETY: as above; obj_size is set.
        unsafe { self.extend() };
        self.cache
            .store(cache as *const Cache as *mut Cache, Relaxed);
        self.list.store(ListKind::None as u8, Relaxed);
        self.thread_free.store(0, Relaxed);
        self.owner.store(owner, Release);
        true
    }

    /// Link the next page's worth of never-used objects (at least one) into
    /// the empty free list. Returns false when every object is linked.
    ///
    /// # Safety
    /// Exclusive use of the free list (owner, or cache lock while unowned),
    /// and the list is empty.
    #[cold]
    #[inline(never)]
    unsafe fn extend(&self) -> bool {
        // SAFETY: caller's contract; objects are at least 8 bytes and
        // 8-aligned, so each can hold the link; indices stay below capacity.
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

    /// Free the object vector, if any (a span formatted for an isolated
    /// cache has none).
    ///
    /// # Safety
    /// Exclusive use of the slab (a fresh span).
    unsafe fn release_objcgs(&self) {
        // SAFETY: exclusive use (caller's contract); the vector was allocated
        // by reserve_objcgs with `objcgs_cap` entries.
        unsafe {
            let v = *self.objcgs.get();
            if !v.is_null() {
                let layout = vector_layout(*self.objcgs_cap.get() as usize);
                std::alloc::GlobalAlloc::dealloc(&std::alloc::System, v as *mut u8, layout);
            }
            *self.objcgs.get() = ptr::null_mut();
            *self.objcgs_cap.get() = 0;
        }
    }

    /// Give the slab an object vector of at least `capacity` entries. The
    /// vector is metadata of the span, like the slab itself: it is kept for
    /// the span's next use and never freed. Returns false if the system
    /// allocator refuses.
    ///
    /// # Safety
    /// Exclusive use of the slab (a fresh span).
    unsafe fn reserve_objcgs(&self, capacity: usize) -> bool {
        // SAFETY: exclusive use (caller's contract).
        unsafe {
            let old = *self.objcgs_cap.get() as usize;
            let parked = *self.objcgs.get();
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
            *self.objcgs.get() = fresh as *mut *const KmemContext;
            *self.objcgs_cap.get() = capacity as u32;
        }
        true
    }

    /// Bytes an object of this (shared) slab is charged (S11): its slot and
    /// its object-vector entry.
    #[inline(always)]
    pub(crate) fn charge(&self) -> usize {
        // SAFETY: immutable while the slab holds objects.
        unsafe { *self.charge.get() as usize }
    }

    /// The statistic the slab's objects count in.
    #[inline(always)]
    pub(crate) fn slab_kind(&self) -> crate::objstock::SlabKind {
        // SAFETY: immutable while the slab holds objects.
        crate::objstock::SlabKind::of(unsafe { *self.reclaimable.get() })
    }

    /// The context recorded for `obj`, or null (uncharged, or an isolated
    /// cache's slab).
    ///
    /// # Safety
    /// As for [`objcg_slot`](Self::objcg_slot).
    pub(crate) unsafe fn objcg(&self, obj: *mut u8) -> *const KmemContext {
        // SAFETY: caller's contract.
        unsafe { self.objcg_slot(obj).map_or(ptr::null(), |e| *e) }
    }

    /// Record `ctx` as the context charged for `obj` (S11).
    ///
    /// # Safety
    /// `obj` is an object of this slab, of a shared cache, owned by the caller.
    #[inline(always)]
    pub(crate) unsafe fn set_objcg(&self, obj: *mut u8, ctx: *const KmemContext) {
        // SAFETY: caller's contract: the slab has a vector (immutable while
        // it holds objects), and the entry of an object we own is ours.
        unsafe {
            let v = *self.objcgs.get();
            debug_assert!(!v.is_null(), "a shared slab has an object vector");
            *v.add(self.index_of(obj)) = ctx;
        }
    }

    /// The object vector's entry for `obj`, or `None` for a slab charged
    /// whole (isolated cache).
    ///
    /// # Safety
    /// `obj` is an object of this slab; the caller owns the object (it is
    /// allocating or freeing it), so its entry is not written meanwhile.
    #[inline(always)]
    pub(crate) unsafe fn objcg_slot(&self, obj: *mut u8) -> Option<*mut *const KmemContext> {
        // SAFETY: the vector and reciprocal are immutable while the slab
        // holds objects; the index is below capacity for an object of ours.
        unsafe {
            let v = *self.objcgs.get();
            if v.is_null() {
                return None;
            }
            Some(v.add(self.index_of(obj)))
        }
    }

    /// The slot index of `obj`, checked: `Err` with the cause when `obj`
    /// cannot be a live object being freed, because no slab is in use in its
    /// span (`capacity` is 0 for a span never formatted or back in its
    /// pool) or it is not the first byte of a slot. (The `hardened`
    /// feature also knows freed slots of shared slabs, by a mark in their
    /// vector entries.) Cheap enough for every free: the index is the one
    /// the free needs for the object's vector entry anyway.
    #[inline(always)]
    pub(crate) fn check_free(&self, obj: *mut u8) -> Result<usize, &'static str> {
        let off = (obj as usize).wrapping_sub(self.start as usize);
        let index = self.index_of(obj);
        // Immutable while the slab holds objects, which it does if `obj` is
        // one; for a bad pointer, whatever a racing `format` left (we abort
        // either way).
        let (size, capacity) = (self.obj_size(), self.capacity.load(Relaxed) as usize);
        if index < capacity && index * size == off {
            return Ok(index);
        }
        Err(bad_free_cause(capacity))
    }

    /// The vector entry of slot `index`, if the slab has a vector.
    ///
    /// # Safety
    /// `index` is the slot of a live object of this slab.
    #[inline(always)]
    pub(crate) unsafe fn objcg_entry(&self, index: usize) -> Option<*mut *const KmemContext> {
        // SAFETY: the vector is immutable while the slab holds objects and
        // has `capacity` entries, more than `index`.
        unsafe {
            let v = *self.objcgs.get();
            (!v.is_null()).then(|| v.add(index))
        }
    }

    /// Mark the span free (back in its pool): frees into it are bad frees.
    /// Pool lock held; the span holds no object and no thread uses it.
    pub(crate) fn mark_free(&self) {
        self.capacity.store(0, Relaxed);
    }

    /// The slot index of `obj`, by multiplication with the reciprocal.
    #[inline(always)]
    fn index_of(&self, obj: *mut u8) -> usize {
        let off = (obj as usize - self.start as usize) as u64;
        // SAFETY: immutable while the slab holds objects.
        ((off * unsafe { *self.recip.get() } as u64) >> 32) as usize
    }

    #[inline]
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

    pub(crate) fn obj_size(&self) -> usize {
        self.obj_size.load(Relaxed) as usize
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
    #[inline]
    pub(crate) unsafe fn push_local(&self, obj: *mut u8) {
        // SAFETY: as for pop; obj is a dead object of this slab.
        unsafe {
            (obj as *mut usize).write(*self.local_free.get());
            *self.local_free.get() = obj as usize;
            *self.used.get() -= 1;
        }
    }

    /// Free `obj` from a thread that does not own the slab. Returns true
    /// when the cache must be notified ([`remote::push`]).
    pub(crate) fn push_remote(&self, obj: *mut u8, dead_cache: bool) -> bool {
        remote::push(
            &self.thread_free,
            obj as usize,
            // SAFETY: obj is a dead object of this slab: its first word is ours.
            |next| unsafe { (obj as *mut usize).write(next) },
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
        // SAFETY: caller's contract.
        unsafe { *self.used.get() as usize }
    }

    /// Objects the slab holds when full (0: no slab in use in the span).
    pub(crate) fn capacity(&self) -> usize {
        self.capacity.load(Relaxed) as usize
    }

    /// Whether an object can be popped: linked free ones, or ones never
    /// used yet. Owner only, or cache lock held while unowned.
    pub(crate) unsafe fn has_local_free(&self) -> bool {
        // SAFETY: caller's contract.
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
            _ => ListKind::None,
        }
    }

    /// After a local free: whether the owner must move the slab between its
    /// lists (a used-up slab with a quarter free reopens, an emptied one
    /// goes back to its cache). The one extra check of the local free path;
    /// the current slab never needs it.
    #[inline]
    pub(crate) unsafe fn needs_relisting(&self) -> bool {
        let list = self.list.load(Relaxed);
        if list == ListKind::None as u8 {
            return false;
        }
        // SAFETY: the owner reads its own `used`; `reopen` is immutable.
        let used = unsafe { *self.used.get() };
        used == 0 || (list == ListKind::HeapFull as u8 && used <= unsafe { *self.reopen.get() })
    }

    /// The root cache's index.
    pub(crate) fn class(&self) -> usize {
        self.class.load(Relaxed) as usize
    }

    pub(crate) fn set_list(&self, l: ListKind) {
        self.list.store(l as u8, Relaxed);
    }

    pub(crate) unsafe fn list_next(&self) -> *mut Slab {
        // SAFETY: caller holds the lock of the list the slab is on.
        unsafe { *self.next.get() }
    }

    pub(crate) unsafe fn list_prev(&self) -> *mut Slab {
        // SAFETY: as above.
        unsafe { *self.prev.get() }
    }

    pub(crate) unsafe fn set_list_next(&self, s: *mut Slab) {
        // SAFETY: as above.
        unsafe { *self.next.get() = s }
    }

    /// When the free span was freed. Pool lock held.
    pub(crate) unsafe fn freed_at(&self) -> u64 {
        // SAFETY: caller's contract.
        unsafe { *self.freed_at.get() }
    }

    /// Record when the span was freed. Pool lock held.
    pub(crate) unsafe fn set_freed_at(&self, ms: u64) {
        // SAFETY: caller's contract.
        unsafe { *self.freed_at.get() = ms }
    }

    pub(crate) unsafe fn set_list_prev(&self, s: *mut Slab) {
        // SAFETY: as above.
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
    fn push_remote(self, obj: *mut u8, dead_cache: bool) -> bool {
        Slab::push_remote(self, obj, dead_cache)
    }

    #[inline]
    unsafe fn used(self) -> usize {
        // SAFETY: caller's contract.
        unsafe { Slab::used(self) }
    }

    #[inline]
    unsafe fn has_local_free(self) -> bool {
        // SAFETY: caller's contract.
        unsafe { Slab::has_local_free(self) }
    }

    #[inline]
    unsafe fn collect(self, owned: bool) -> usize {
        // SAFETY: caller's contract.
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
