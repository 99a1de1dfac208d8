//! The slab allocator (DESIGN.md §6): shared slabs with byte
//! charges by default (S11), per-group child caches on request (S6).
//!
//! Vocabulary (DESIGN.md §2): a *root cache* is made by name and object size
//! ([`SlabCache::new`], the kernel's `kmem_cache_create`). It gets its memory
//! as *slabs*: spans of 4–64 KiB cut from 4 MiB *segments* mapped from the
//! OS; objects carry no header, and the slab of any object is found by
//! masking its address.
//!
//! - **Shared** (the default): the slabs of a root cache serve every group.
//!   A slab whose objects all belong to one kmem context records it once;
//!   when a second context allocates from it, it gets an *object vector*,
//!   kept outside the span, holding the context of each slot. An object is
//!   charged its slot (plus its vector entry, in a slab with a vector), in
//!   bytes, through the thread's object stock (`accounting::object_stock`, reached
//!   only through the hook `accounting::slab_hook`), and a free from
//!   any thread uncharges the object's own context. A removed group leaves
//!   its context and nothing else (S3).
//! - **Isolated** ([`SlabCache::isolated`], the seed's design): a group's
//!   first allocation makes its *child cache*, found through the root's slot
//!   for the group's id; each slab is charged once, whole, through the child
//!   cache's context. On removal the child cache is dead and lives until
//!   its last object is freed (S6).
//!
//! Module map: `fast` is the fast path (one screen); `heap` the thread's
//! heaps and slow paths; `slab` the slab (`struct Slab`) and its ownership rules; `remote` the lock-free remote-free list; `cache`
//! refills, lists, dead caches and reclaim; `segment` memory from the OS.
//!
//! ```
//! use memcg::{Hierarchy, SlabCache};
//!
//! let h = Hierarchy::new();
//! let job = h.create("/job").unwrap();
//! let dentries = SlabCache::new("doc-dentry", 192, true).unwrap();
//! let objects: Vec<_> = {
//!     let _in_job = job.enter().unwrap();
//!     (0..100).map(|_| dentries.alloc().unwrap()).collect()
//! };
//! h.quiesce();
//! // 100 objects of 192 bytes in slabs of this group alone, each charged
//! // its slot: 19,200 bytes of slab, five pages charged. (A `hardened`
//! // build charges each its vector entry too: 20,000 bytes.)
//! let each = 192 + if memcg::slab::HARDENED { memcg::slab::VECTOR_ENTRY_BYTES } else { 0 };
//! assert_eq!(job.read("memory.current").unwrap(), "20480\n");
//! let stat = job.read("memory.stat").unwrap();
//! assert!(stat.contains(&format!("slab_reclaimable {}\n", 100 * each)));
//! // Reclaimable: memory.reclaim frees them, oldest first.
//! job.write("memory.reclaim", "20K").unwrap();
//! assert!(objects.iter().all(|o| !o.is_live()));
//! ```

pub(crate) mod cache;
pub(crate) mod fast;
pub(crate) mod heap;
#[cfg(all(test, loom))]
mod loom_model;
pub(crate) mod protocol;
pub(crate) mod remote;
pub(crate) mod segment;
#[allow(clippy::module_inception)] // named after the kernel's `struct slab`
pub(crate) mod slab;

use crate::error::{Error, Result};
use crate::group::kmem_context::CtxRef;
use crate::group::GroupInner;
use cache::{ObjRecord, RootCache};
use std::ptr::NonNull;
use std::sync::Arc;

/// A root slab cache: objects of one size, in slabs shared by all groups, or
/// in per-group child caches when made [`isolated`](SlabCache::isolated).
/// Cheap to copy; root caches live for the process.
#[derive(Clone, Copy)]
pub struct SlabCache {
    root: &'static RootCache,
}

impl std::fmt::Debug for SlabCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlabCache")
            .field("name", &self.root.name)
            .field("object_size", &self.root.size)
            .field("reclaimable", &self.root.reclaimable)
            .finish()
    }
}

impl SlabCache {
    /// The root cache `name` of `object_size`-byte objects (at most 8 KiB),
    /// made if new. Its slabs are shared by all groups and each object is
    /// charged by the byte to the group that allocated it (S11).
    /// `reclaimable` caches keep objects made by [`alloc`](Self::alloc) on
    /// an LRU per kmem context that reclaim frees, oldest first (the
    /// kernel's dcache on a per-memcg list_lru). Asking again for the same
    /// name with the same size and kind returns the same cache; with another
    /// size or kind it is an `exists` error.
    pub fn new(name: &str, object_size: usize, reclaimable: bool) -> Result<SlabCache> {
        SlabCache::make(name, object_size, reclaimable, false)
    }

    /// Like [`new`](Self::new), but with per-group child caches, the seed's
    /// design (S6): each group's objects sit in slabs of their own, charged
    /// whole; a removed group's child cache is dead and lives until its last
    /// object is freed. For tenants that must not share slabs.
    pub fn isolated(name: &str, object_size: usize, reclaimable: bool) -> Result<SlabCache> {
        SlabCache::make(name, object_size, reclaimable, true)
    }

    fn make(
        name: &str,
        object_size: usize,
        reclaimable: bool,
        isolated: bool,
    ) -> Result<SlabCache> {
        if name.is_empty() {
            return Err(Error::Invalid("a cache needs a name".into()));
        }
        if object_size == 0 {
            return Err(Error::Invalid(format!(
                "cache {name}: objects need at least one byte"
            )));
        }
        if name.starts_with("kmalloc-") {
            return Err(Error::Invalid(format!(
                "cache {name}: kmalloc-* names are the general size classes; use SlabCache::kmalloc"
            )));
        }
        let _internal = crate::reentrancy::Internal::enter();
        Ok(SlabCache {
            root: cache::root_cache(name, object_size, reclaimable, isolated, None)?,
        })
    }

    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.root.name
    }

    /// The object size asked for.
    pub fn object_size(&self) -> usize {
        self.root.size
    }

    /// The bytes each object takes in its slab (the size rounded up).
    pub fn slot_size(&self) -> usize {
        self.root.obj_size
    }

    /// Whether the cache is reclaimable.
    pub fn is_reclaimable(&self) -> bool {
        self.root.reclaimable
    }

    /// Whether the cache has per-group child caches (S6) rather than shared
    /// slabs (S11).
    pub fn is_isolated(&self) -> bool {
        self.root.isolated
    }

    /// Allocate an object, charged to the calling thread's group (by the
    /// byte, or per slab for an isolated cache).
    /// Dropping the handle frees it, from any thread. In a reclaimable cache
    /// the object is on its group's LRU and reclaim may free it first.
    pub fn alloc(&self) -> Result<SlabObject> {
        let ptr = heap::alloc(self.root, false)?;
        let _internal = crate::reentrancy::Internal::enter();
        let record = if self.root.reclaimable {
            let addr = ptr.as_ptr() as usize;
            // SAFETY: a live object of ours.
            let slab = unsafe { segment::Segment::of(addr).slab_of(addr) };
            if self.root.isolated {
                Some(slab.cache().track(addr))
            } else {
                // SAFETY: our object, just made: its entry is stable.
                let ctx = unsafe { slab.charged_of(ptr.as_ptr()) }.0;
                // Uncharged (the root's) objects are on no LRU: reclaim never
                // targets the root.
                (!ctx.is_null()).then(|| self.root.track(ctx, addr))
            }
        } else {
            None
        };
        Ok(SlabObject { ptr, record })
    }

    /// Allocate an object on the fast path and return its address: no
    /// handle, no LRU. Free it with [`SlabCache::free_raw`].
    #[inline]
    pub fn alloc_raw(&self) -> Result<NonNull<u8>> {
        heap::alloc(self.root, false)
    }

    /// Allocate charged to `group`, whatever the calling thread's group.
    #[inline]
    pub(crate) fn alloc_for(&self, group: &crate::sync::Arc<GroupInner>) -> heap::SlowResult {
        heap::alloc_for(self.root, group)
    }

    /// Free an object made by [`alloc_raw`](Self::alloc_raw), from any thread.
    ///
    /// # Safety
    /// `ptr` must come from `alloc_raw` of some cache and be freed once.
    #[inline]
    pub unsafe fn free_raw(ptr: NonNull<u8>) {
        // SAFETY: this fn's contract is that `ptr` came from `alloc_raw`,
        // that is from `heap::alloc` of some cache, and is freed once, here:
        // so it is a live object of ours, freed once, as `heap::free` asks.
        unsafe { heap::free(ptr.as_ptr()) }
    }

    /// The cache that owns the object at `ptr`, or `None` if `ptr` is not the
    /// start of a slab object of this process (a foreign pointer, detected
    /// without touching its memory).
    pub fn owner_of(ptr: *const u8) -> Option<SlabCache> {
        let addr = ptr as usize;
        if !segment::is_slab_address(addr) {
            return None;
        }
        // SAFETY: the address lies in one of our segments (checked above,
        // with Acquire: its header and slab structs are initialised, and
        // segments are never unmapped).
        let slab = unsafe { segment::Segment::of(addr).slab_of(addr) };
        // Only atomic fields from here (a slab may be formatted by another
        // thread meanwhile): a racing address gets a wrong answer, never a
        // data race. The root comes from the lock-free table, not from the
        // slab's cache, whose identity changes when it is recycled.
        if !slab.is_object_start(addr) {
            return None;
        }
        Some(SlabCache {
            root: cache::root_at(slab.class())?,
        })
    }
}

/// An object of a [`SlabCache`]. Dropping it frees it.
pub struct SlabObject {
    ptr: NonNull<u8>,
    record: Option<Arc<ObjRecord>>,
}

// SAFETY: the object is owned exclusively by the handle (like a Box), and
// frees from any thread are supported.
unsafe impl Send for SlabObject {}
// SAFETY: shared access only reads the address and the record's mutex.
unsafe impl Sync for SlabObject {}

impl std::fmt::Debug for SlabObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlabObject")
            .field("live", &self.is_live())
            .finish()
    }
}

impl SlabObject {
    /// Whether the object still exists (false once reclaim freed it).
    pub fn is_live(&self) -> bool {
        self.record
            .as_ref()
            .is_none_or(|r| *r.addr.lock().unwrap_or_else(|e| e.into_inner()) != 0)
    }

    /// The object's memory, while it is live.
    pub fn as_ptr(&self) -> Option<NonNull<u8>> {
        self.is_live().then_some(self.ptr)
    }

    /// The bytes the object is charged (S11): its slot, plus its
    /// object-vector entry if its slab had a vector (objects of more than
    /// one context) when it was made; 0 for an object not charged (made in
    /// the root, or of an isolated cache, whose slabs are charged whole) or
    /// no longer live.
    pub fn charged_bytes(&self) -> usize {
        let Some(p) = self.as_ptr() else { return 0 };
        let addr = p.as_ptr() as usize;
        // SAFETY: a live object of ours (checked above; the handle owns it,
        // so it stays live during this call): its slab and its entry are
        // stable.
        unsafe {
            segment::Segment::of(addr)
                .slab_of(addr)
                .charged_of(p.as_ptr())
                .1
        }
    }
}

impl Drop for SlabObject {
    fn drop(&mut self) {
        let addr = self.ptr.as_ptr();
        if let Some(rec) = &self.record {
            let _internal = crate::reentrancy::Internal::enter();
            let taken = std::mem::take(&mut *rec.addr.lock().unwrap_or_else(|e| e.into_inner()));
            if taken == 0 {
                return; // reclaimed
            }
            // SAFETY: the object is live (we took it from the record).
            let slab = unsafe { segment::Segment::of(taken).slab_of(taken) };
            slab.cache().root().untrack(slab.cache(), rec);
        }
        // SAFETY: a live object of ours, freed once (the record, if any,
        // gave it to us alone).
        unsafe { heap::free(addr) };
    }
}

/// S6 at removal: kill every child cache of `group`. Returns the slabs
/// looked at (S8: bounded by empty and partial slabs, never by objects).
pub(crate) fn kill_caches(group: &GroupInner) -> usize {
    let Some(ctx) = &group.ctx else { return 0 };
    let mut touched = 0;
    for c in cache::caches_of(ctx) {
        if !c.is_dead() {
            touched += c.kill();
        }
        c.put();
    }
    touched
}

/// Counted references to the caches of `group`'s context and of the
/// contexts reparented to it, and counted references to those contexts.
fn caches_and_contexts(group: &GroupInner) -> (Vec<&'static cache::Cache>, Vec<CtxRef>) {
    let mut caches = Vec::new();
    let mut contexts: Vec<CtxRef> = Vec::new();
    if let Some(ctx) = &group.ctx {
        caches.extend(cache::caches_of(ctx));
        contexts.push(ctx.clone());
    }
    let _ctx_lock = group.common.ctx_lock.lock();
    group.for_each_reparented(|ctx| {
        caches.extend(cache::caches_of(ctx));
        contexts.extend(CtxRef::tryget(ctx));
    });
    (caches, contexts)
}

/// Reclaim reclaimable slab objects billed to `group` (through its context
/// and those reparented to it), oldest first: those of isolated caches, then
/// those of shared caches. Returns pages freed.
pub(crate) fn reclaim_objects(group: &GroupInner, pages: usize) -> usize {
    let (caches, contexts) = caches_and_contexts(group);
    let mut freed = 0;
    for c in caches {
        if freed < pages && c.root().reclaimable {
            freed += c.scan_objects(pages - freed);
        }
        c.put();
    }
    for root in cache::shared_reclaimable() {
        for ctx in &contexts {
            if freed < pages {
                freed += root.scan_objects_of(ctx, group, pages - freed);
            }
        }
    }
    freed
}

/// Release the empty slabs `group`'s isolated caches keep for reuse (and
/// those of the contexts reparented to it). Returns pages freed.
pub(crate) fn reclaim_empty_slabs(group: &GroupInner, pages: usize) -> usize {
    let (caches, _) = caches_and_contexts(group);
    let mut freed = 0;
    for c in caches {
        if freed < pages {
            heap::trim_local();
            freed += c.shrink(0).1;
        }
        c.put();
    }
    freed
}

/// The bytes of one cache's bookkeeping struct (what a dead cache pins
/// besides its slabs).
pub fn cache_size() -> usize {
    std::mem::size_of::<cache::Cache>()
}

/// Bytes of slabs in use in the process, all caches and groups together
/// (spans held by caches or threads, empty ones kept for reuse included):
/// the denominator of slab utilization (DESIGN.md §7).
pub fn slab_bytes_in_use() -> usize {
    segment::span_bytes_in_use()
}

/// The slab holding the object at `ptr`, as its first byte's address and its
/// size in bytes, or `None` if `ptr` is not the start of a slab object of
/// this process (checked without touching its memory). For studies of slab
/// utilization: distinct slabs under a set of live objects.
pub fn slab_of(ptr: *const u8) -> Option<(usize, usize)> {
    SlabCache::owner_of(ptr)?;
    let addr = ptr as usize;
    // SAFETY: owner_of checked that the address is an object of ours.
    let slab = unsafe { segment::Segment::of(addr).slab_of(addr) };
    Some((slab.start() as usize, slab.span_bytes()))
}

/// The calling thread's frees of objects of slabs it does not own (remote
/// frees), and the compare-and-swaps that took them to their slabs: a
/// thread queues such objects per destination slab and pushes each batch
/// (up to 64) with one atomic operation. Counted since the thread started;
/// for tests and studies of the remote path.
pub fn remote_free_counts() -> (u64, u64) {
    heap::remote_free_counts()
}

/// How many times the calling thread's object stock went to the page
/// counter for the thread's own allocations and frees: a refill that
/// charged pages, or an overflow that returned some. Counted since the
/// thread started; for tests and studies of the stock's batching.
pub fn stock_page_trips() -> usize {
    crate::accounting::slab_hook::page_trips(&heap::main().stock)
}

/// How many times another thread's drain settled a thread's own object
/// stock (quiesce, removal, a limit: returned its bytes, or charged those
/// its owner used since an earlier drain), and how many times an owner then
/// found drained bytes used by its fast paths and charged them at its next
/// slow path: the race of the drain handshake, counted.
pub fn remote_drain_counts() -> (usize, usize) {
    crate::accounting::slab_hook::remote_drain_counts()
}

/// Give the calling thread's slabs back to their caches.
pub fn flush_thread_cache() {
    heap::flush_local();
}

/// Bytes of an object's entry in its slab's object vector: an object in a
/// slab with a vector (a mixed slab, or any shared slab when built
/// [`HARDENED`]) is charged this beside its slot (S11).
pub const VECTOR_ENTRY_BYTES: usize = slab::VECTOR_ENTRY_BYTES;

/// Whether this build has the `hardened` feature (DESIGN.md §8): every shared
/// slab then keeps an object vector from its first object, so that a double
/// free is caught, and each object is charged its entry
/// ([`VECTOR_ENTRY_BYTES`]) beside its slot. Scripts and tests that expect
/// S11's byte counts read it to know which counts they get.
pub const HARDENED: bool = cfg!(feature = "hardened");

/// The size classes of [`SlabCache::kmalloc`]: 16-byte steps to 128, then
/// four classes per power of two up to 8 KiB (at most 25% rounding waste).
pub const KMALLOC_SIZES: [usize; 32] = [
    16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024,
    1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192,
];

/// The largest size [`SlabCache::kmalloc`] serves.
pub const KMALLOC_MAX: usize = 8192;

/// Size (in 16-byte steps, rounded up) to class index.
const KMALLOC_INDEX: [u8; KMALLOC_MAX / 16 + 1] = {
    let mut t = [0u8; KMALLOC_MAX / 16 + 1];
    let mut step = 0;
    let mut class = 0;
    while step <= KMALLOC_MAX / 16 {
        while KMALLOC_SIZES[class] < step * 16 {
            class += 1;
        }
        t[step] = class as u8;
        step += 1;
    }
    t
};

static KMALLOC: std::sync::OnceLock<[SlabCache; 32]> = std::sync::OnceLock::new();

/// The kmalloc class (and heap slot) serving `size` bytes.
#[inline(always)]
pub(crate) fn kmalloc_class(size: usize) -> Option<usize> {
    // `size` is at most isize::MAX (a Layout's), so the sum cannot wrap.
    KMALLOC_INDEX.get((size + 15) >> 4).map(|&c| c as usize)
}

/// The kmalloc cache of class `class`.
pub(crate) fn kmalloc_cache(class: usize) -> SlabCache {
    let caches = match KMALLOC.get() {
        Some(caches) => caches,
        None => kmalloc_init(),
    };
    caches[class]
}

/// Make the kmalloc caches, internal: making them allocates, and the global
/// allocator must not come back here for it.
#[cold]
fn kmalloc_init() -> &'static [SlabCache; 32] {
    let _internal = crate::reentrancy::Internal::enter();
    // The allocator's locks are taken inside the fork gate from now on.
    #[cfg(not(loom))]
    crate::fork::install();
    KMALLOC.get_or_init(|| {
        let mut class = 0;
        KMALLOC_SIZES.map(|s| {
            let root = cache::root_cache(&format!("kmalloc-{s}"), s, false, false, Some(class))
                .unwrap_or_else(|_| {
                    crate::reentrancy::broken("slab: the kmalloc size classes could not be made")
                });
            class += 1;
            SlabCache { root }
        })
    })
}

impl SlabCache {
    /// The general-purpose cache for `size`-byte objects (`kmalloc-N`, the
    /// size classes the global allocator uses), or `None` above
    /// [`KMALLOC_MAX`]. Objects are aligned to 16 bytes (8 for size 8 or less).
    #[inline]
    pub fn kmalloc(size: usize) -> Option<SlabCache> {
        Some(kmalloc_cache(kmalloc_class(size)?))
    }
}
