//! Runs: whole pages mapped from the OS, each holding one large block, and
//! the cache of free runs that later blocks of a fitting size reuse.
//!
//! A run's length is its *bin*'s page count: exact up to [`EXACT_PAGES`],
//! then four bins per doubling (at most 25% of a run beyond the block, never
//! touched by its user, so never resident on its account). A freed run goes
//! to the cache, uncharged, like the slab pools' free spans; an allocation
//! takes the most recently freed run of its bin (the one most likely still
//! in the CPU caches and backed by memory). A run is never split or merged:
//! the bins are exact, which keeps the cache a few pointer operations under
//! one lock.
//!
//! The cache is bounded twice: by bytes ([`CACHE_BYTES`], the oldest runs go
//! first) and by time: a run idle longer than the decay time (default
//! [`DEFAULT_DECAY`]) is unmapped at the next operation of the cache or the
//! next slab span taken from the span pools (no timer thread), as
//! jemalloc's dirty decay and mimalloc's purge delay.
//! Unmapped, not `MADV_DONTNEED`ed: a decayed run gives the address space
//! back as well, and the cache then holds only runs whose memory a previous
//! block dirtied, so a run taken from it is exactly the case in which
//! `alloc_zeroed` must clear.
//!
//! Bookkeeping lives in the free runs themselves: a [`FreeRun`] header at
//! the start of each, linked into its bin and into one list of all runs in
//! the order they were freed. It is read and written only under the cache
//! lock, and only while the run is free; nothing is allocated.

use crate::PAGE_SIZE;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Blocks of this many pages (8 MiB) or more are not cached: each is mapped
/// for itself and unmapped when freed.
pub const DIRECT_PAGES: usize = 2048;
/// The most bytes of free runs the cache holds: four runs of the largest
/// bin. Cached runs are charged to no group, so the bound is what the cache
/// can add to the process's memory beyond what groups are charged.
pub const CACHE_BYTES: usize = 32 << 20;
/// How long a free run stays cached when no block reuses it by default:
/// between mimalloc's purge delay (10 ms) and jemalloc's dirty decay (10 s),
/// long enough for a program that rebuilds its tables every few tens of
/// milliseconds to keep reusing their runs.
pub const DEFAULT_DECAY: Duration = Duration::from_millis(250);

/// Bins up to this page count are exact.
const EXACT_PAGES: usize = 16;
/// `EXACT_PAGES + 1` exact bins (0 to 2 unused), then 4 per doubling from
/// 16 to 2048 pages.
const NBINS: usize = EXACT_PAGES + 1 + 4 * 7;

/// The bin of a block of `pages` pages, `pages <= DIRECT_PAGES` (blocks
/// reach `DIRECT_PAGES - 1`; runs, `DIRECT_PAGES`).
pub(super) fn bin_of(pages: usize) -> usize {
    debug_assert!((1..=DIRECT_PAGES).contains(&pages));
    if pages <= EXACT_PAGES {
        return pages;
    }
    // 2^k < pages <= 2^(k+1), k >= 4; four bins of 2^(k-2) pages each.
    let k = (usize::BITS - 1 - (pages - 1).leading_zeros()) as usize;
    let quarter = (pages - 1) >> (k - 2); // 4..=7
    EXACT_PAGES + 1 + (k - 4) * 4 + (quarter - 4)
}

/// The page count of the runs of `bin`.
pub(super) fn bin_pages(bin: usize) -> usize {
    if bin <= EXACT_PAGES {
        return bin;
    }
    let i = bin - EXACT_PAGES - 1;
    let k = 4 + i / 4;
    (i % 4 + 5) << (k - 2)
}

/// The header of a free run, at its first byte.
#[repr(C)]
struct FreeRun {
    /// The next run of the same bin, older and newer.
    bin_older: *mut FreeRun,
    bin_newer: *mut FreeRun,
    /// The next run in freeing order, older and newer.
    older: *mut FreeRun,
    newer: *mut FreeRun,
    bin: usize,
    freed_ms: u64,
}

struct Cache {
    /// Per bin, the newest run.
    bins: [*mut FreeRun; NBINS],
    /// All runs in freeing order.
    newest: *mut FreeRun,
    oldest: *mut FreeRun,
    runs: usize,
    bytes: usize,
    reused: u64,
}

// SAFETY: the pointers point to free runs the cache owns (mapped, not in use
// by any block); they are only followed with the cache lock held.
unsafe impl Send for Cache {}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    bins: [ptr::null_mut(); NBINS],
    newest: ptr::null_mut(),
    oldest: ptr::null_mut(),
    runs: 0,
    bytes: 0,
    reused: 0,
});

static DECAY_MS: AtomicU64 = AtomicU64::new(DEFAULT_DECAY.as_millis() as u64);
/// When the oldest cached run decays, in [`now_ms`] time; `u64::MAX` when the
/// cache is empty. A hint for [`decay_if_due`], written under the lock.
static NEXT_DUE_MS: AtomicU64 = AtomicU64::new(u64::MAX);
static OS_MAPS: AtomicU64 = AtomicU64::new(0);
static OS_UNMAPS: AtomicU64 = AtomicU64::new(0);

fn lock() -> impl std::ops::DerefMut<Target = Cache> {
    // Poisoning cannot leave the lists half linked: nothing in the critical
    // sections panics (no allocation, no user code).
    crate::sync::lock_std(&CACHE)
}

/// A coarse monotonic clock in milliseconds (a vDSO read, no syscall).
fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

impl Cache {
    /// Link `run`, just written, as the newest of its bin and of all.
    ///
    /// # Safety
    /// Cache lock held; `run` is a free run of `bin_pages((*run).bin)` pages,
    /// owned by the caller and not linked.
    unsafe fn push(&mut self, run: *mut FreeRun) {
        // SAFETY: by the contract `run` is ours, and every linked run is a
        // mapped free run that the held lock lets us write.
        unsafe {
            let bin = (*run).bin;
            (*run).bin_older = self.bins[bin];
            (*run).bin_newer = ptr::null_mut();
            if let Some(head) = self.bins[bin].as_mut() {
                head.bin_newer = run;
            }
            self.bins[bin] = run;
            (*run).older = self.newest;
            (*run).newer = ptr::null_mut();
            match self.newest.as_mut() {
                Some(head) => head.newer = run,
                None => self.oldest = run,
            }
            self.newest = run;
            self.runs += 1;
            self.bytes += bin_pages(bin) * PAGE_SIZE;
        }
    }

    /// Unlink `run` from both lists; the caller owns it afterwards.
    ///
    /// # Safety
    /// Cache lock held; `run` is linked in this cache.
    unsafe fn unlink(&mut self, run: *mut FreeRun) {
        // SAFETY: `run` and its neighbours are linked free runs, which the
        // held lock lets us read and write.
        unsafe {
            let r = &mut *run;
            match r.bin_newer.as_mut() {
                Some(n) => n.bin_older = r.bin_older,
                None => self.bins[r.bin] = r.bin_older,
            }
            if let Some(o) = r.bin_older.as_mut() {
                o.bin_newer = r.bin_newer;
            }
            match r.newer.as_mut() {
                Some(n) => n.older = r.older,
                None => self.newest = r.older,
            }
            match r.older.as_mut() {
                Some(o) => o.newer = r.newer,
                None => self.oldest = r.newer,
            }
            self.runs -= 1;
            self.bytes -= bin_pages(r.bin) * PAGE_SIZE;
        }
    }

    /// Unlink the oldest runs while the cache is over `max_bytes` or they
    /// are idle for `decay_ms` at `now`; return them chained through `older`
    /// for [`unmap_all`] (which must run after the lock is released).
    fn evict(&mut self, max_bytes: usize, now: u64, decay_ms: u64) -> *mut FreeRun {
        let mut evicted: *mut FreeRun = ptr::null_mut();
        while let Some(run) = ptr::NonNull::new(self.oldest) {
            let run = run.as_ptr();
            // SAFETY: a linked run; lock held.
            let freed = unsafe { (*run).freed_ms };
            if self.bytes <= max_bytes && now.saturating_sub(freed) < decay_ms {
                break;
            }
            // SAFETY: `run` is `self.oldest`, not null, so it is linked in
            // this cache, and `&mut self` is reached only through the CACHE
            // lock's guard: `unlink`'s contract holds. Unlinked, no list
            // reaches the run, and it stays mapped until `unmap_all` (after
            // the lock), so its header is ours alone to reuse as the link of
            // the evicted chain.
            unsafe {
                self.unlink(run);
                (*run).older = evicted;
            }
            evicted = run;
        }
        let due = match self.oldest.is_null() {
            true => u64::MAX,
            // SAFETY: a linked run; lock held.
            false => unsafe { (*self.oldest).freed_ms }.saturating_add(decay_ms),
        };
        NEXT_DUE_MS.store(due, Relaxed);
        evicted
    }
}

/// Give runs unlinked by [`Cache::evict`] back to the OS; returns their bytes.
fn unmap_all(mut run: *mut FreeRun) -> usize {
    let mut bytes = 0;
    while !run.is_null() {
        // SAFETY: `run` was unlinked from the cache by `evict` and handed to
        // us alone; we read its header before unmapping it, and never again.
        let (next, len) = unsafe { ((*run).older, bin_pages((*run).bin) * PAGE_SIZE) };
        unmap(run as usize, len);
        bytes += len;
        run = next;
    }
    bytes
}

/// A run for a block of bin `bin`: cached if there is one (`true`: its
/// memory is dirty), else freshly mapped (`false`: zeroed). `None` if the OS
/// refuses memory.
pub(super) fn take(bin: usize) -> Option<(usize, bool)> {
    let now = now_ms();
    let decay = DECAY_MS.load(Relaxed);
    let (run, evicted) = {
        let mut c = lock();
        let run = c.bins[bin];
        if !run.is_null() {
            // SAFETY: the newest run of the bin is linked; lock held.
            unsafe { c.unlink(run) };
            c.reused += 1;
        }
        (run, c.evict(CACHE_BYTES, now, decay))
    };
    unmap_all(evicted);
    if !run.is_null() {
        return Some((run as usize, true));
    }
    map(bin_pages(bin) * PAGE_SIZE, PAGE_SIZE).map(|addr| (addr, false))
}

/// Give back the run at `addr` of bin `bin`, taken by [`take`]: cached, or
/// unmapped if the cache keeps nothing (a decay time of 0).
///
/// # Safety
/// `addr` is a run of `bin` from [`take`], no longer used by any block.
pub(super) unsafe fn put(addr: usize, bin: usize) {
    let now = now_ms();
    let decay = DECAY_MS.load(Relaxed);
    let run = addr as *mut FreeRun;
    // SAFETY: the run is mapped, writable, at least one page (more than a
    // header) and ours by the contract.
    unsafe {
        run.write(FreeRun {
            bin_older: ptr::null_mut(),
            bin_newer: ptr::null_mut(),
            older: ptr::null_mut(),
            newer: ptr::null_mut(),
            bin,
            freed_ms: now,
        })
    };
    let evicted = {
        let mut c = lock();
        // SAFETY: the header is written and the run ours; lock held.
        unsafe { c.push(run) };
        c.evict(CACHE_BYTES, now, decay)
    };
    unmap_all(evicted);
}

/// Unmap the runs idle past the decay time, if the oldest is. Cheap when
/// none is due (one load, and a clock read if the cache holds runs): for
/// slow paths elsewhere.
pub(crate) fn decay_if_due() {
    let due = NEXT_DUE_MS.load(Relaxed);
    if due == u64::MAX {
        return;
    }
    let now = now_ms();
    if now < due {
        return;
    }
    let evicted = lock().evict(CACHE_BYTES, now, DECAY_MS.load(Relaxed));
    unmap_all(evicted);
}

/// Unmap every cached run; returns their bytes.
pub(super) fn trim() -> usize {
    let evicted = lock().evict(0, now_ms(), DECAY_MS.load(Relaxed));
    unmap_all(evicted)
}

/// Set the decay time; returns the previous one. Runs already idle longer
/// are unmapped now.
pub(super) fn set_decay(decay: Duration) -> Duration {
    let ms = u64::try_from(decay.as_millis()).unwrap_or(u64::MAX);
    let old = DECAY_MS.swap(ms, Relaxed);
    let evicted = lock().evict(CACHE_BYTES, now_ms(), ms);
    unmap_all(evicted);
    Duration::from_millis(old)
}

/// Cached runs, their bytes, and allocations served from the cache so far.
pub(super) fn cache_counts() -> (usize, usize, u64) {
    let c = lock();
    (c.runs, c.bytes, c.reused)
}

/// Mappings made and returned so far, runs and direct blocks alike.
pub(super) fn os_counts() -> (u64, u64) {
    (OS_MAPS.load(Relaxed), OS_UNMAPS.load(Relaxed))
}

/// Map `len` bytes (whole pages) aligned to `align` (a power of two, at
/// least a page), counted. `None` if the OS refuses.
pub(super) fn map(len: usize, align: usize) -> Option<usize> {
    let start = crate::alloc::slab::segment::map_aligned(len, align)?;
    OS_MAPS.fetch_add(1, Relaxed);
    Some(start)
}

/// Unmap `len` bytes at `addr`, mapped by [`map`].
pub(super) fn unmap(addr: usize, len: usize) {
    super::map::forget(addr);
    // SAFETY: callers pass a whole mapping of ours (a run or a direct block)
    // that nothing uses any more.
    unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    OS_UNMAPS.fetch_add(1, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_fits_its_bin_with_at_most_a_quarter_more() {
        for pages in 1..DIRECT_PAGES {
            let bin = bin_of(pages);
            assert!(bin < NBINS);
            let run = bin_pages(bin);
            assert!(run >= pages, "{pages} pages in a run of {run}");
            assert!(run * 4 <= pages * 5 + 3, "{pages} pages in a run of {run}");
            assert_eq!(bin_of(run), bin, "a run's own size is in its bin");
        }
        assert_eq!(bin_pages(NBINS - 1), DIRECT_PAGES);
    }
}
