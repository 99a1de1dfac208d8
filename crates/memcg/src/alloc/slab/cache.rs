//! Root caches and their per-group child caches (the seed's `kmem_cache` with
//! `memcg_params`).
//!
//! A root cache is created by name and object size and lives for the process.
//! Its per-group child caches are made on a group's first allocation and
//! found through the root's slot array indexed by group id (the seed's
//! `memcg_caches[]`). A child cache bills its slabs through its group's kmem
//! context, one charge per slab; the root's own cache (for threads in the
//! root group) bills nothing.
//!
//! On removal of its group a child cache is *killed* (S6): marked dead, taken
//! out of its root's slot so no new allocation reaches it, and shrunk; it
//! lives on until its last slab is freed, then it is destroyed by deferred
//! work (S9). Caches are type-stable: destroyed ones are recycled, never
//! freed, so a thread that freed an object may still lock its old cache.

use super::protocol::{self, CacheOps, ListOps};
use super::segment::{alloc_span, free_span, SPAN_SHIFTS};
use super::slab::{ListKind, Slab, SlabList};
use crate::accounting::slab_hook;
use crate::error::{Error, Result};
use crate::group::kmem_context::{CtxRef, KmemContext};
use crate::group::stats::Stat;
use crate::group::GroupInner;
use std::cell::UnsafeCell;
use std::collections::{BTreeMap, HashMap};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};

/// Root caches a process can have (the per-thread heap has one slot each).
pub(crate) const MAX_ROOTS: usize = 256;
/// Empty slabs a live cache keeps for reuse.
pub(crate) const EMPTY_KEEP: usize = 2;

fn lock<T>(m: &Mutex<T>) -> impl std::ops::DerefMut<Target = T> + '_ {
    crate::sync::lock_std(m)
}

/// A root cache: name, object size, span size, and per-group slots.
pub(crate) struct RootCache {
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) size: usize,
    pub(crate) obj_size: usize,
    pub(crate) pool: usize,
    pub(crate) reclaimable: bool,
    /// Per-group child caches (S6, the seed's design) instead of shared
    /// slabs with per-object charges (S11, the default).
    pub(crate) isolated: bool,
    /// The cache of threads in the root group (isolated), or of everyone
    /// (shared). Its slabs are not charged: a shared cache charges objects.
    pub(crate) own: &'static Cache,
    /// Child caches by group id; each non-null entry holds a reference.
    slots: Mutex<Vec<*const Cache>>,
    /// Objects of a shared reclaimable cache, oldest first, by the address
    /// of the context they are charged through (the kernel's per-memcg
    /// list_lru). A removed group's list stays with its context, which
    /// reclaim of the ancestor it bills reaches.
    lrus: Mutex<Lrus>,
}

type Lru = BTreeMap<u64, Arc<ObjRecord>>;
type Lrus = HashMap<usize, Lru>;

// SAFETY: the slot pointers are caches (Sync), and the vector is only used
// under its mutex.
unsafe impl Send for RootCache {}
// SAFETY: every field but the slot vector is Sync of itself (`own` is a
// `&'static Cache`, and `Cache` is Sync below). The vector's `*const Cache`
// entries are read and written only under its mutex, and each non-null one
// points at a leaked `Cache` that is never freed and is Sync, so a thread
// that reads an entry through a shared `&RootCache` may use it as any other.
unsafe impl Sync for RootCache {}

static ROOTS: Mutex<Vec<&'static RootCache>> = Mutex::new(Vec::new());

/// The object size and span pool for `size`-byte objects: sizes round up to
/// 8 bytes (16 from 16 on, so objects of 16 bytes or more are 16-aligned),
/// spans are the smallest that hold 8 objects with at most 1/8 wasted.
pub(crate) fn geometry(size: usize) -> Option<(usize, usize)> {
    let obj = if size <= 8 {
        8
    } else {
        size.checked_next_multiple_of(16)?
    };
    SPAN_SHIFTS.iter().enumerate().find_map(|(pool, &shift)| {
        let span = 1usize << shift;
        let n = span / obj;
        (n >= 8 && (span - n * obj) * 8 <= span).then_some((obj, pool))
    })
}

/// The root cache called `name` for `size`-byte objects, made if new.
/// Creating the same name, size and kind again returns the same cache.
/// Heap slots `0..KMALLOC_CLASSES` belong to the kmalloc classes, in order,
/// so the global allocator finds its slab by size alone.
pub(crate) const KMALLOC_CLASSES: usize = 32;

/// The root cache called `name` for `size`-byte objects, made if new; a
/// kmalloc class passes its reserved slot.
pub(crate) fn root_cache(
    name: &str,
    size: usize,
    reclaimable: bool,
    isolated: bool,
    kmalloc_class: Option<usize>,
) -> Result<&'static RootCache> {
    let (obj_size, pool) = geometry(size.max(1)).ok_or_else(|| {
        Error::Invalid(format!(
            "cache {name}: objects of {size} bytes are too large for a slab; use kmem pages"
        ))
    })?;
    let mut roots = lock(&ROOTS);
    if let Some(r) = roots.iter().find(|r| r.name == name) {
        if r.size == size && r.reclaimable == reclaimable && r.isolated == isolated {
            return Ok(r);
        }
        return Err(Error::Exists(format!(
            "cache {name} ({} bytes{}{})",
            r.size,
            if r.reclaimable { ", reclaimable" } else { "" },
            if r.isolated && !r.reclaimable {
                ", isolated"
            } else {
                ""
            }
        )));
    }
    let named = roots.iter().filter(|r| r.index >= KMALLOC_CLASSES).count();
    let index = match kmalloc_class {
        Some(class) => class,
        None if KMALLOC_CLASSES + named == MAX_ROOTS => {
            return Err(Error::Invalid(format!(
                "cache {name}: a process has at most {} named slab caches",
                MAX_ROOTS - KMALLOC_CLASSES
            )));
        }
        None => KMALLOC_CLASSES + named,
    };
    register_deferred();
    let own = Cache::make(None, 0, None);
    let root: &'static RootCache = Box::leak(Box::new(RootCache {
        index,
        name: name.to_string(),
        size,
        obj_size,
        pool,
        reclaimable,
        isolated,
        own,
        slots: Mutex::new(Vec::new()),
        lrus: Mutex::new(HashMap::new()),
    }));
    // SAFETY: `own` is not shared yet.
    unsafe { own.set_root(root) };
    roots.push(root);
    // Release: a thread that finds the root by index sees it whole.
    BY_INDEX[index].store(root as *const RootCache as *mut RootCache, Release);
    Ok(root)
}

/// Root caches by index, for lookups from any address without a lock
/// ([`root_at`]); set once per index, never cleared (roots live forever).
static BY_INDEX: [AtomicPtr<RootCache>; MAX_ROOTS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; MAX_ROOTS];

/// The root cache of index `index`, if one was made.
pub(crate) fn root_at(index: usize) -> Option<&'static RootCache> {
    // SAFETY: a non-null entry is a leaked root, published with Release
    // after it was written; roots are never freed.
    unsafe { BY_INDEX.get(index)?.load(Acquire).as_ref() }
}

impl RootCache {
    /// Whether objects of all groups share slabs and are charged by the
    /// byte (S11).
    #[inline]
    pub(crate) fn shared(&self) -> bool {
        !self.isolated
    }

    /// The child cache of `group` (a live group, or the root when `None`),
    /// made on first use, or the shared cache; returns a counted reference.
    pub(crate) fn cache_for(&'static self, group: Option<&GroupInner>) -> &'static Cache {
        let Some(group) = group.filter(|g| !g.is_root() && self.isolated) else {
            self.own.get();
            return self.own;
        };
        let mut slots = lock(&self.slots);
        if let Some(&c) = slots.get(group.id) {
            // SAFETY: slot entries are live caches holding the slot's reference.
            if let Some(c) = unsafe { c.as_ref() } {
                c.get();
                return c;
            }
        }
        let Some(ctx) = group.ctx.clone() else {
            crate::reentrancy::broken("slab cache: a non-root group without a kmem context")
        };
        ctx.common().caches_live.fetch_add(1, Relaxed);
        let cache = Cache::make(Some(self), group.id, Some(ctx.clone()));
        cache.get(); // the caller's reference, beside the slot's
        if slots.len() <= group.id {
            slots.resize(group.id + 1, ptr::null());
        }
        slots[group.id] = cache;
        drop(slots);
        lock(&CTX_CACHES)
            .entry(ctx_key(&ctx))
            .or_default()
            .push(cache);
        // A removal that began meanwhile may have missed this cache: it marks
        // the group dying before it lists the context's caches.
        if group.is_dying() {
            cache.kill();
        }
        cache
    }

    /// Put a new object of this shared reclaimable cache, charged through
    /// `ctx`, on that context's LRU.
    pub(crate) fn track(&self, ctx: *const KmemContext, addr: usize) -> Arc<ObjRecord> {
        let rec = Arc::new(ObjRecord {
            addr: Mutex::new(addr),
            seq: LRU_CLOCK.fetch_add(1, Relaxed),
            lru_key: ctx as usize,
        });
        lock(&self.lrus)
            .entry(ctx as usize)
            .or_default()
            .insert(rec.seq, rec.clone());
        rec
    }

    /// Take `rec` off the LRU it is on (this root's, or its cache's).
    pub(crate) fn untrack(&self, cache: &Cache, rec: &ObjRecord) {
        if rec.lru_key == 0 {
            lock(&cache.lru).remove(&rec.seq);
            return;
        }
        let mut lrus = lock(&self.lrus);
        if let Some(lru) = lrus.get_mut(&rec.lru_key) {
            lru.remove(&rec.seq);
            if lru.is_empty() {
                lrus.remove(&rec.lru_key);
            }
        }
    }

    /// Reclaim objects charged through `ctx`, oldest first, until `group`
    /// (which `ctx` bills) has `pages` fewer pages charged, or none is left.
    /// Returns the pages uncharged.
    pub(crate) fn scan_objects_of(
        &'static self,
        ctx: &KmemContext,
        group: &GroupInner,
        pages: usize,
    ) -> usize {
        let key = ctx as *const KmemContext as usize;
        let before = group.counter.usage();
        let freed = || before.saturating_sub(group.counter.usage());
        while freed() < pages {
            let batch: Vec<Arc<ObjRecord>> = {
                let mut lrus = lock(&self.lrus);
                let Some(lru) = lrus.get_mut(&key) else { break };
                let batch: Vec<_> = std::iter::from_fn(|| lru.pop_first().map(|(_, r)| r))
                    .take(64)
                    .collect();
                if lru.is_empty() {
                    lrus.remove(&key);
                }
                batch
            };
            free_records(batch);
            // The frees went to this thread's object stock: give the bytes
            // back so that whole pages are uncharged now.
            super::heap::drain_local();
        }
        freed()
    }

    fn clear_slot(&self, id: usize, cache: &Cache) -> bool {
        let mut slots = lock(&self.slots);
        match slots.get_mut(id) {
            Some(slot) if ptr::eq(*slot, cache) => {
                *slot = ptr::null();
                true
            }
            _ => false,
        }
    }
}

/// An object of a reclaimable cache, on an LRU.
pub(crate) struct ObjRecord {
    /// The object's address, 0 once freed or reclaimed.
    pub(crate) addr: Mutex<usize>,
    pub(crate) seq: u64,
    /// The context whose list in its root's `lrus` holds the record (shared
    /// cache), or 0: the child cache's own LRU (isolated cache).
    lru_key: usize,
}

/// Free the objects of records taken off an LRU (reclaim). A record whose
/// address is 0 was freed by its owner meanwhile.
fn free_records(batch: Vec<Arc<ObjRecord>>) {
    for rec in batch {
        let addr = std::mem::take(&mut *lock(&rec.addr));
        if addr != 0 {
            // SAFETY: a tracked address is a live object of ours, and taking
            // it from the record makes us its only freer.
            unsafe { super::heap::free(addr as *mut u8) };
        }
    }
}

/// The shared reclaimable root caches.
pub(crate) fn shared_reclaimable() -> Vec<&'static RootCache> {
    lock(&ROOTS)
        .iter()
        .filter(|r| r.reclaimable && r.shared())
        .copied()
        .collect()
}

/// A cache's slab lists, under its lock.
pub(crate) struct Lists {
    partial: SlabList,
    full: SlabList,
    empty: SlabList,
}

impl Lists {
    fn of(&mut self, kind: ListKind) -> &mut SlabList {
        match kind {
            ListKind::Partial => &mut self.partial,
            ListKind::Full => &mut self.full,
            ListKind::Empty => &mut self.empty,
            ListKind::None
            | ListKind::HeapAvail
            | ListKind::HeapFull
            | ListKind::HandleAvail
            | ListKind::HandleFull => crate::reentrancy::broken(
                "slab cache: a slab owned by a thread taken as on a cache list",
            ),
        }
    }
}

impl ListOps<&'static Slab> for Lists {
    #[inline]
    unsafe fn link(&mut self, slab: &'static Slab, kind: ListKind) {
        // SAFETY: the caller holds the cache lock; the slab is on no list.
        unsafe { self.of(kind).push(slab) };
        slab.set_list(kind);
    }

    #[inline]
    unsafe fn unlink(&mut self, slab: &'static Slab) {
        let kind = slab.list();
        if kind != ListKind::None {
            // SAFETY: the caller holds the cache lock; the slab is on `kind`.
            unsafe { self.of(kind).remove(slab) };
            slab.set_list(ListKind::None);
        }
    }

    #[inline]
    fn first(&self, kind: ListKind) -> Option<&'static Slab> {
        match kind {
            ListKind::Partial => self.partial.first(),
            ListKind::Full => self.full.first(),
            ListKind::Empty => self.empty.first(),
            _ => None,
        }
    }

    #[inline]
    fn len(&self, kind: ListKind) -> usize {
        match kind {
            ListKind::Partial => self.partial.len,
            ListKind::Full => self.full.len,
            ListKind::Empty => self.empty.len,
            _ => 0,
        }
    }
}

/// What identifies a cache; changed only while the cache is unused.
struct Ident {
    root: *const RootCache,
    group_id: usize,
    ctx: Option<CtxRef>,
}

/// A child cache (or a root's own cache).
pub(crate) struct Cache {
    refcnt: AtomicUsize,
    dead: AtomicBool,
    ident: UnsafeCell<Ident>,
    lists: Mutex<Lists>,
    /// Objects of reclaimable caches, oldest first.
    lru: Mutex<BTreeMap<u64, Arc<ObjRecord>>>,
    /// Pages of the slabs this cache holds.
    pages: AtomicUsize,
    /// Link of the deferred-destruction queue and of the recycling list.
    pub(crate) next: AtomicPtr<Cache>,
}

// SAFETY: `ident` is written only while the cache has no user (made, or
// recycled after destruction), all else is atomics or mutexes.
unsafe impl Sync for Cache {}
// SAFETY: the one field that is not Send of itself is `ident`, for its
// `root` pointer: it points at a leaked `RootCache`, which is never freed and
// is Sync, so it means the same on any thread; `ident.ctx` is a `CtxRef`,
// which is Send, and the slab links in `lists` are a Send `SlabList`.
unsafe impl Send for Cache {}

/// The child caches billing through each kmem context (the seed's
/// `ctx->slab_caches`), live and dead, by the context's address. An entry
/// goes when the context's last cache is destroyed; the caches hold
/// references on the context, so its address is not reused meanwhile.
static CTX_CACHES: Mutex<BTreeMap<usize, Vec<&'static Cache>>> = Mutex::new(BTreeMap::new());

/// Caches whose last reference is gone, to destroy (a Treiber stack), and
/// the lock a pass over it holds, so that a quiesce returns only after the
/// destructions another thread's pass had taken.
static DEFERRED: AtomicPtr<Cache> = AtomicPtr::new(ptr::null_mut());
static DEFERRED_PASS: Mutex<()> = Mutex::new(());

fn ctx_key(ctx: &KmemContext) -> usize {
    ctx as *const KmemContext as usize
}

static RECYCLED: Mutex<Vec<&'static Cache>> = Mutex::new(Vec::new());
static LRU_CLOCK: AtomicU64 = AtomicU64::new(0);

impl Cache {
    fn make(
        root: Option<&'static RootCache>,
        group_id: usize,
        ctx: Option<CtxRef>,
    ) -> &'static Cache {
        let ident = Ident {
            root: root.map_or(ptr::null(), |r| r as *const RootCache),
            group_id,
            ctx,
        };
        if let Some(c) = lock(&RECYCLED).pop() {
            // SAFETY: a recycled cache has no user: no slab, no slot, no heap.
            unsafe { *c.ident.get() = ident };
            c.dead.store(false, Relaxed);
            c.refcnt.store(1, Release);
            return c;
        }
        Box::leak(Box::new(Cache {
            refcnt: AtomicUsize::new(1),
            dead: AtomicBool::new(false),
            ident: UnsafeCell::new(ident),
            lists: Mutex::new(Lists {
                partial: SlabList::default(),
                full: SlabList::default(),
                empty: SlabList::default(),
            }),
            lru: Mutex::new(BTreeMap::new()),
            pages: AtomicUsize::new(0),
            next: AtomicPtr::new(ptr::null_mut()),
        }))
    }

    /// Point the cache, just made, at its root.
    ///
    /// # Safety
    /// No other thread reads the cache's `ident` yet: it comes straight from
    /// [`Cache::make`] and no slot, slab, heap or root refers to it.
    unsafe fn set_root(&self, root: &'static RootCache) {
        // SAFETY: by this fn's contract nothing reads `ident` meanwhile
        // (`root_cache` calls it on `own` before the root holding `own` goes
        // on ROOTS or in BY_INDEX, its only ways to other threads; a stale
        // remote free may still lock a recycled cache, but reads its `ident`
        // only for a slab it owns, and `own` owns none yet): this write
        // through the UnsafeCell races no read.
        unsafe { (*self.ident.get()).root = root };
    }

    fn ident(&self) -> &Ident {
        // SAFETY: the ident changes only while the cache has no user; every
        // caller here holds a reference or owns a slab of it.
        unsafe { &*self.ident.get() }
    }

    pub(crate) fn root(&self) -> &'static RootCache {
        // SAFETY: set at creation before any use; roots live forever.
        unsafe { &*self.ident().root }
    }

    pub(crate) fn ctx(&self) -> Option<&CtxRef> {
        self.ident().ctx.as_ref()
    }

    pub(crate) fn is_dead(&'static self) -> bool {
        protocol::is_dead(self)
    }

    /// Slab pages held (charged, unless this is a root's own cache).
    pub(crate) fn pages(&self) -> usize {
        self.pages.load(Relaxed)
    }

    pub(crate) fn get(&self) {
        self.refcnt.fetch_add(1, Relaxed);
    }

    /// Take a reference unless the cache is being destroyed.
    pub(crate) fn tryget(&self) -> bool {
        let mut n = self.refcnt.load(Relaxed);
        while n != 0 {
            match self
                .refcnt
                .compare_exchange_weak(n, n + 1, Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
        false
    }

    /// Drop a reference; the last one queues the cache for destruction (S9).
    pub(crate) fn put(&'static self) {
        protocol::put(self)
    }

    /// Queue the cache, whose last reference is gone, for destruction.
    fn queue_destroyed(&'static self) {
        // Once the push succeeds, deferred work on another thread may destroy
        // the cache and drop its context, and with it the hierarchy: nothing
        // of them is read after it.
        debug_assert!(
            self.ctx().is_some(),
            "a root's own cache is never destroyed"
        );
        let mut head = DEFERRED.load(Relaxed);
        loop {
            self.next.store(head, Relaxed);
            match DEFERRED.compare_exchange_weak(
                head,
                self as *const Cache as *mut Cache,
                Release,
                Relaxed,
            ) {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
        crate::group::deferred::after_publish();
        crate::group::deferred::wake();
    }

    fn stat(&self) -> Stat {
        if self.root().reclaimable {
            Stat::SlabReclaimable
        } else {
            Stat::SlabUnreclaimable
        }
    }

    /// A slab with free objects for thread `tid`: a partial one, an empty
    /// one, or a new one (charged; forced over a limit when `nofail`). Owned
    /// by `tid` on return.
    pub(crate) fn refill(&'static self, tid: usize, nofail: bool) -> Result<&'static Slab> {
        {
            let mut l = lock(&self.lists);
            while let Some(s) = l.partial.first().or_else(|| l.empty.first()) {
                // SAFETY: cache lock held; taking ownership collects the
                // remote frees. A listed partial or empty slab has free
                // objects; check anyway, and file a full one where it belongs.
                unsafe {
                    l.unlink(s);
                    s.set_owner(tid);
                    s.collect(true);
                    if s.has_local_free() {
                        return Ok(s);
                    }
                    s.set_owner(0);
                    s.collect(false);
                    protocol::place(self, &mut *l, s);
                }
            }
        }
        self.new_slab(tid, nofail)
    }

    fn new_slab(&'static self, tid: usize, nofail: bool) -> Result<&'static Slab> {
        let root = self.root();
        let pages = (1 << SPAN_SHIFTS[root.pool]) / crate::PAGE_SIZE;
        if let Some(ctx) = self.ctx() {
            slab_hook::charge_pages(ctx, pages, self.stat(), nofail)?;
        }
        let Some(slab) = alloc_span(root.pool) else {
            if let Some(ctx) = self.ctx() {
                slab_hook::uncharge_pages(ctx, pages, self.stat());
            }
            return Err(Error::Invalid(format!(
                "cache {}: the operating system refused memory",
                root.name
            )));
        };
        self.get();
        {
            let _l = lock(&self.lists);
            self.pages.fetch_add(pages, Relaxed);
            if let (true, Some(ctx)) = (self.is_dead(), self.ctx()) {
                ctx.common().dead_cache_pages.fetch_add(pages, Relaxed);
            }
        }
        // SAFETY: a span fresh from the pool is ours alone.
        if !unsafe { slab.format(self, root.obj_size, tid) } {
            let _l = lock(&self.lists);
            // SAFETY: the unformatted span is on no list and holds nothing;
            // free_slab returns it and undoes the charge and the reference.
            unsafe { self.free_slab(slab) };
            return Err(Error::Invalid(format!(
                "cache {}: the system allocator refused an object vector",
                root.name
            )));
        }
        Ok(slab)
    }

    /// Its owner gives `slab` up: collect its remote frees and put it on the
    /// list its fill says, or free it.
    ///
    /// # Safety
    /// The caller owns `slab`, a slab of this cache, on no list.
    pub(crate) unsafe fn release(&'static self, slab: &'static Slab) {
        // SAFETY: `protocol::release` asks what this fn's contract gives:
        // the caller owns `slab`, a slab of this cache, and it is on no list,
        // so no other thread links, unlinks or collects it until `release`
        // gives it up under the cache lock.
        unsafe { protocol::release(self, slab) }
    }

    /// Return an empty, unlisted slab's span and uncharge it.
    ///
    /// # Safety
    /// Cache lock held; this cache took `slab`'s span (counted its pages,
    /// charged them, holds a reference for it), and no object, owner or list
    /// uses the span any more.
    unsafe fn free_slab(&'static self, slab: &'static Slab) {
        let pages = slab.pages();
        // SAFETY: the slab is empty and on no list: nobody uses the span.
        unsafe { free_span(slab) };
        if let Some(ctx) = self.ctx() {
            slab_hook::uncharge_pages(ctx, pages, self.stat());
            if self.is_dead() {
                ctx.common().dead_cache_pages.fetch_sub(pages, Relaxed);
            }
        }
        self.pages.fetch_sub(pages, Relaxed);
        self.put();
    }

    /// Free empty slabs, and partial ones that remote frees emptied, keeping
    /// `keep` empty ones. Never touches full slabs or owned ones. Returns the
    /// slabs looked at and the pages freed.
    pub(crate) fn shrink(&'static self, keep: usize) -> (usize, usize) {
        let mut l = lock(&self.lists);
        let before = self.pages();
        let touched = protocol::shrink_locked(self, &mut *l, keep);
        (touched, before - self.pages())
    }

    /// S6: the group is gone. Mark the cache dead, take it out of its root's
    /// slot, and shrink it ([`protocol::kill`]). Returns the slabs looked at.
    pub(crate) fn kill(&'static self) -> usize {
        protocol::kill(self)
    }

    /// Track a new object of an isolated reclaimable cache.
    pub(crate) fn track(&self, addr: usize) -> Arc<ObjRecord> {
        let rec = Arc::new(ObjRecord {
            addr: Mutex::new(addr),
            seq: LRU_CLOCK.fetch_add(1, Relaxed),
            lru_key: 0,
        });
        lock(&self.lru).insert(rec.seq, rec.clone());
        rec
    }

    /// Reclaim objects oldest first until `pages` pages are freed or none is
    /// left (the shrinker of a reclaimable cache). Returns pages freed.
    pub(crate) fn scan_objects(&'static self, pages: usize) -> usize {
        // Pages go back as the frees empty slabs (notify) and as shrinking
        // releases emptied ones: count them by the cache's pages.
        let start = self.pages();
        let freed = || start.saturating_sub(self.pages());
        while freed() < pages {
            let batch: Vec<Arc<ObjRecord>> = {
                let mut lru = lock(&self.lru);
                std::iter::from_fn(|| lru.pop_first().map(|(_, r)| r))
                    .take(64)
                    .collect()
            };
            if batch.is_empty() {
                break;
            }
            free_records(batch);
            super::heap::trim_local();
            self.shrink(EMPTY_KEEP);
        }
        freed()
    }
}

impl CacheOps for &'static Cache {
    type Slab = &'static Slab;
    type Lists = Lists;
    type Flag = AtomicBool;
    type Count = AtomicUsize;

    #[inline]
    fn with_lists<R>(self, f: impl FnOnce(&mut Lists) -> R) -> R {
        f(&mut lock(&self.lists))
    }

    #[inline]
    fn dead(&self) -> &AtomicBool {
        &self.dead
    }

    #[inline]
    fn refcnt(&self) -> &AtomicUsize {
        &self.refcnt
    }

    #[inline]
    fn owns(self, slab: &'static Slab) -> bool {
        ptr::eq(slab.cache(), self)
    }

    fn on_killed(self, _l: &mut Lists) {
        if let Some(ctx) = self.ctx() {
            ctx.common().dead_caches.fetch_add(1, Relaxed);
            ctx.common()
                .dead_cache_pages
                .fetch_add(self.pages(), Relaxed);
        }
    }

    fn clear_slot(self) -> bool {
        self.root().clear_slot(self.ident().group_id, self)
    }

    fn destroy(self) {
        self.queue_destroyed()
    }

    #[inline]
    unsafe fn free_slab(self, _l: &mut Lists, slab: &'static Slab) {
        // SAFETY: the trait's contract gives what `Cache::free_slab` asks:
        // the caller holds this cache's lock (`_l`, the lists, is reached only
        // through its guard), and `slab` is a slab of this cache (made by its
        // `new_slab`, which counted and charged the span and took a
        // reference), empty, unowned and on no list.
        unsafe { Cache::free_slab(self, slab) }
    }
}

/// Destroy the caches on the deferred queue: unlist them from their
/// context, drop their context reference, recycle them. Returns how many.
/// Registered with the deferred-work layer below, which runs it before it
/// destroys contexts (caches hold context references).
fn run_deferred() -> usize {
    let _pass = lock(&DEFERRED_PASS);
    let mut n = 0;
    loop {
        let mut c = DEFERRED.swap(ptr::null_mut(), Acquire);
        if c.is_null() {
            return n;
        }
        while !c.is_null() {
            // SAFETY: queued caches have no reference left; we own them.
            let cache: &'static Cache = unsafe { &*c };
            c = cache.next.load(Relaxed);
            {
                let l = lock(&cache.lists);
                debug_assert!(l.partial.len + l.full.len + l.empty.len == 0);
            }
            // SAFETY: no user is left; the ident is ours to change.
            let ident = unsafe { &mut *cache.ident.get() };
            if let Some(ctx) = ident.ctx.take() {
                ctx.common().caches_live.fetch_sub(1, Relaxed);
                if cache.is_dead() {
                    ctx.common().dead_caches.fetch_sub(1, Relaxed);
                }
                let mut map = lock(&CTX_CACHES);
                if let Some(list) = map.get_mut(&ctx_key(&ctx)) {
                    list.retain(|&p| !ptr::eq(p, cache));
                    if list.is_empty() {
                        map.remove(&ctx_key(&ctx));
                    }
                }
                drop(map);
                drop(ctx);
            }
            lock(&RECYCLED).push(cache);
            n += 1;
        }
    }
}

/// Whether caches wait on the deferred queue.
fn deferred_pending() -> bool {
    !DEFERRED.load(Acquire).is_null()
}

/// Let the deferred-work layer run cache destruction; once.
fn register_deferred() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        crate::group::deferred::register_work(crate::group::deferred::Work {
            run: run_deferred,
            pending: deferred_pending,
        })
    });
}

/// Counted references to the caches of `ctx` (live and dead).
pub(crate) fn caches_of(ctx: &KmemContext) -> Vec<&'static Cache> {
    lock(&CTX_CACHES)
        .get(&ctx_key(ctx))
        .map(|list| list.iter().copied().filter(|c| c.tryget()).collect())
        .unwrap_or_default()
}
