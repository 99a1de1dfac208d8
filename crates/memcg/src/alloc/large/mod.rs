//! Large blocks, the global allocator's sizes above
//! [`KMALLOC_MAX`](crate::alloc::slab::KMALLOC_MAX) (and its alignments above a
//! page): page-level kmem in cached, reusable runs (DESIGN.md §6: "large
//! blocks from cached spans, not one `mmap` per allocation").
//!
//! A *block* is what the caller gets; a *run* is the whole pages mapped from
//! the OS that hold it. Blocks under [`DIRECT_PAGES`] pages (8 MiB) live in
//! runs of a few fixed lengths (bins); a freed run goes to a cache of free
//! runs, reused by the next block of its bin, and returned to the OS when
//! the cache is over [`CACHE_BYTES`] or the run has been idle for the decay
//! time ([`DEFAULT_DECAY`], see [`set_decay`]). Bigger blocks, and blocks
//! aligned beyond a page, are mapped one by one and unmapped when freed.
//! Why 8 MiB: it is jemalloc's default `oversize_threshold`, from which it
//! serves blocks out of a dedicated arena; filling such a block costs its
//! user 2048 page faults or more, next to which one `mmap` is noise; and
//! one of them would take a quarter of the cache. Below it sit the tables
//! of the maps and vectors programs rebuild (a `HashMap` of 100k small
//! entries peaks at a 6 MiB table), whose page faults the cache saves.
//!
//! Charging is per block, not per run: a block is charged its requested
//! size in whole pages through a kmem context (the calling thread's group's
//! or an allocator handle's), recorded in a lock-free page map by the
//! block's first address, and uncharged through that context when freed,
//! whichever group it bills by then (S2). Free runs in the cache are charged
//! to nobody, like the slab pools' free spans: the allocator's own reserve.
//!
//! ```
//! use memcg::MemcgAlloc;
//! use std::alloc::{GlobalAlloc, Layout};
//!
//! let layout = Layout::from_size_align(100_000, 8).unwrap();
//! // SAFETY: a valid layout of non-zero size; each block is freed once,
//! // with the layout it was allocated with.
//! unsafe {
//!     let first = MemcgAlloc.alloc(layout);
//!     MemcgAlloc.dealloc(first, layout);
//!     // The run just freed serves the next block of its size.
//!     let again = MemcgAlloc.alloc(layout);
//!     assert_eq!(again, first);
//!     MemcgAlloc.dealloc(again, layout);
//! }
//! assert!(memcg::large::stats().cached_runs >= 1);
//! memcg::large::trim();
//! assert_eq!(memcg::large::stats().cached_bytes, 0);
//! ```

mod map;
mod runs;

use crate::group::kmem_context::CtxRef;
use crate::group::stats::Stat;
use crate::PAGE_SIZE;
use std::alloc::Layout;
use std::ptr;
use std::time::Duration;

pub(crate) use runs::decay_if_due;
pub use runs::{CACHE_BYTES, DEFAULT_DECAY, DIRECT_PAGES};

/// What the large-block allocator holds and has done, process-wide.
/// Counters only grow; the cache figures are a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Free runs in the cache.
    pub cached_runs: usize,
    /// Their bytes (at most [`CACHE_BYTES`]).
    pub cached_bytes: usize,
    /// Blocks served from a cached run.
    pub reused: u64,
    /// Runs and direct blocks mapped from the OS.
    pub os_maps: u64,
    /// Runs and direct blocks returned to the OS.
    pub os_unmaps: u64,
}

/// The large-block allocator's figures now.
pub fn stats() -> Stats {
    let (cached_runs, cached_bytes, reused) = runs::cache_counts();
    let (os_maps, os_unmaps) = runs::os_counts();
    Stats {
        cached_runs,
        cached_bytes,
        reused,
        os_maps,
        os_unmaps,
    }
}

/// Return every cached free run to the OS now, as its decay would later;
/// returns the bytes unmapped. Blocks in use are not affected.
pub fn trim() -> usize {
    flush_local();
    runs::trim()
}

/// Set how long a free run stays cached with no block reusing it; returns
/// the previous setting. `Duration::ZERO` caches nothing: every freed run is
/// unmapped at once. Runs already idle longer than `decay` are unmapped now;
/// later ones are when the cache is next used, or a slab span is next taken
/// from the span pools (there is no timer).
pub fn set_decay(decay: Duration) -> Duration {
    runs::set_decay(decay)
}

/// Runs of at most this many pages are kept one per thread before the
/// shared cache: a thread that frees and allocates blocks of one size in a
/// loop (buffers, a growing `Vec`) takes no lock and shares no line.
const LOCAL_PAGES: usize = 16;

/// The calling thread's one kept run: `(address, bin)`, or `None`. Given
/// back at thread exit ([`Exit::LargeRun`](crate::lifecycle::Exit::LargeRun)).
struct LocalRun(std::cell::Cell<Option<(usize, usize)>>);

thread_local! {
    static LOCAL: LocalRun = const { LocalRun(std::cell::Cell::new(None)) };
}

/// A run of `bin` from the calling thread's slot, if it holds one.
fn take_local(bin: usize) -> Option<usize> {
    LOCAL
        .try_with(|l| match l.0.get() {
            Some((addr, b)) if b == bin => {
                l.0.set(None);
                Some(addr)
            }
            _ => None,
        })
        .ok()
        .flatten()
}

/// Keep a freed run of `bin` in the calling thread's slot if it is small
/// and the slot is free; returns false if the caller must give it back.
fn keep_local(addr: usize, bin: usize) -> bool {
    runs::bin_pages(bin) <= LOCAL_PAGES
        && crate::lifecycle::arm_exit(crate::lifecycle::Exit::LargeRun, flush_local)
        && LOCAL
            .try_with(|l| {
                let free = l.0.get().is_none();
                if free {
                    l.0.set(Some((addr, bin)));
                }
                free
            })
            .unwrap_or(false)
}

/// Give the calling thread's kept run back to the shared cache (trim,
/// thread exit).
fn flush_local() {
    let _ = LOCAL.try_with(|l| {
        if let Some((addr, bin)) = l.0.take() {
            // SAFETY: a free run the thread kept; nothing uses it.
            unsafe { runs::put(addr, bin) };
        }
    });
}

/// The pages charged for a block of `layout`.
/// The most pages a block may span: `isize::MAX` bytes, rounded down.
const MAX_PAGES: usize = isize::MAX as usize / PAGE_SIZE;

fn pages_of(layout: Layout) -> usize {
    layout.size().max(1).div_ceil(PAGE_SIZE)
}

/// The bin of a block of `layout` with `pages` pages, or `None` for a block
/// mapped directly.
fn bin_for(layout: Layout, pages: usize) -> Option<usize> {
    (layout.align() <= PAGE_SIZE && pages < DIRECT_PAGES).then(|| runs::bin_of(pages))
}

/// Allocate a large block for `layout`, charged through `ctx` (forced over a
/// limit when `nofail`), zeroed if asked. Null if the charge fails or the OS
/// refuses memory. The caller is internal (charging may reclaim).
pub(crate) fn alloc(layout: Layout, ctx: Option<CtxRef>, nofail: bool, zeroed: bool) -> *mut u8 {
    let pages = pages_of(layout);
    if pages > MAX_PAGES {
        // Rounded up to whole pages it would pass isize::MAX bytes: no
        // mapping can hold it, and no counter may be charged for it.
        return ptr::null_mut();
    }
    if let Some(ctx) = &ctx {
        if crate::accounting::charge::charge(ctx, pages, Stat::Kmem, nofail).is_err() {
            return ptr::null_mut();
        }
    }
    let bin = bin_for(layout, pages);
    let run = match bin {
        Some(bin) => take_local(bin)
            .map(|a| (a, true))
            .or_else(|| runs::take(bin)),
        None => runs::map(pages * PAGE_SIZE, layout.align().max(PAGE_SIZE)).map(|a| (a, false)),
    };
    let Some((addr, dirty)) = run else {
        if let Some(ctx) = &ctx {
            crate::accounting::charge::uncharge(ctx, pages, Stat::Kmem);
        }
        return ptr::null_mut();
    };
    if zeroed && dirty {
        // SAFETY: the run is ours, mapped and writable for at least `pages`
        // pages, which hold layout.size() bytes.
        unsafe { ptr::write_bytes(addr as *mut u8, 0, layout.size()) };
    }
    if let Err(ctx) = map::insert(addr, ctx) {
        // SAFETY: the run was taken above and never handed out.
        unsafe { release(addr, bin, pages) };
        if let Some(ctx) = &ctx {
            crate::accounting::charge::uncharge(ctx, pages, Stat::Kmem);
        }
        return ptr::null_mut();
    }
    addr as *mut u8
}

/// Free `ptr` if it is a large block: its run goes back to the cache (or to
/// the OS) and its pages are uncharged through the context recorded for it.
/// Returns false, touching nothing, if `ptr` is not a live large block.
///
/// # Safety
/// If `ptr` is a live large block, it was allocated with `layout` (or
/// reallocated in place to it) and is not used after this call.
pub(crate) unsafe fn free(ptr: *mut u8, layout: Layout) -> bool {
    let Some(ctx) = map::take(ptr as usize) else {
        return false;
    };
    let pages = pages_of(layout);
    // SAFETY: the entry we took proves a live block at ptr, allocated by
    // `alloc` with this layout's page count (the caller's contract), so its
    // run has the length `bin_for` gives; the caller no longer uses it.
    unsafe { release(ptr as usize, bin_for(layout, pages), pages) };
    if let Some(ctx) = ctx {
        let _internal = crate::reentrancy::Internal::enter();
        crate::accounting::charge::uncharge(&ctx, pages, Stat::Kmem);
    }
    true
}

/// Whether `ptr` starts a live large block.
pub(crate) fn contains(ptr: *const u8) -> bool {
    map::contains(ptr as usize)
}

/// Whether `ptr` started a large block already freed (its run is cached):
/// freeing it again is a double free.
pub(crate) fn was_freed(ptr: *const u8) -> bool {
    map::was_freed(ptr as usize)
}

/// Give back the run of a block of `pages` pages in `bin` (`None`: mapped
/// directly).
///
/// # Safety
/// `addr` is such a run, taken by [`alloc`], and nothing uses it any more.
unsafe fn release(addr: usize, bin: Option<usize>, pages: usize) {
    match bin {
        Some(bin) if keep_local(addr, bin) => {}
        // SAFETY: this fn's contract: `addr` is the run of bin `bin` that
        // `alloc` took (from `runs::take`, directly or through a thread's kept
        // run, which came from it too), and nothing uses it any more; and
        // `keep_local` declined it, so no thread's slot holds it either. That
        // is what `runs::put` asks.
        Some(bin) => unsafe { runs::put(addr, bin) },
        None => runs::unmap(addr, pages * PAGE_SIZE),
    }
}
