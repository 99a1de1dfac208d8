//! The page map of large blocks: for the first page of each live block, the
//! kmem context it was charged through (a counted reference) or a mark for
//! "not charged"; 0 everywhere else. Two levels, lock-free: 1 GiB regions,
//! then 4 KiB pages. A region's table is mapped on first use and never
//! unmapped, so a lookup never races with its table going away.
//!
//! An entry is 0 or FREED whenever its page does not start a live block: it
//! is set after the block's run is taken, and marked FREED before the run is
//! released (a second free finds the mark: a double free), then cleared
//! when the run goes back to the OS. So a page-aligned pointer of the system
//! allocator (memory we never mapped, or a run we gave back to the OS)
//! always finds 0.

use crate::group::kmem_context::CtxRef;
use crate::PAGE_SIZE;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::*};

const REGION_SHIFT: usize = 30;
const PAGES_PER_REGION: usize = 1 << (REGION_SHIFT - 12);
const UNCHARGED: usize = 1;
/// The entry of a block freed while its run stays mapped (cached for
/// reuse): a second free of it is a double free. Cleared when the run is
/// unmapped, so a later mapping of the system allocator never sees it.
const FREED: usize = 2;

static REGIONS: [AtomicPtr<AtomicUsize>; 1 << (47 - REGION_SHIFT)] =
    [const { AtomicPtr::new(ptr::null_mut()) }; 1 << (47 - REGION_SHIFT)];

fn slot(addr: usize, create: bool) -> Option<&'static AtomicUsize> {
    let region = REGIONS.get(addr >> REGION_SHIFT)?;
    let mut table = region.load(Acquire);
    if table.is_null() {
        if !create {
            return None;
        }
        let bytes = PAGES_PER_REGION * std::mem::size_of::<AtomicUsize>();
        // SAFETY: an anonymous mapping: zeroed memory is a valid array of
        // AtomicUsize (all 0); it is never unmapped.
        let fresh = unsafe {
            libc::mmap(
                ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if fresh == libc::MAP_FAILED {
            return None;
        }
        let fresh = fresh as *mut AtomicUsize;
        match region.compare_exchange(ptr::null_mut(), fresh, AcqRel, Acquire) {
            Ok(_) => table = fresh,
            Err(won) => {
                // SAFETY: our mapping lost the race and was never shared.
                unsafe { libc::munmap(fresh as *mut libc::c_void, bytes) };
                table = won;
            }
        }
    }
    let page = (addr >> 12) & (PAGES_PER_REGION - 1);
    // SAFETY: the table has PAGES_PER_REGION entries and lives forever.
    Some(unsafe { &*table.add(page) })
}

/// Record the block starting at `addr` and the context it was charged
/// through. Fails only if the page map cannot get memory for its table.
pub(super) fn insert(addr: usize, ctx: Option<CtxRef>) -> Result<(), Option<CtxRef>> {
    let Some(slot) = slot(addr, true) else {
        return Err(ctx);
    };
    let value = ctx.map_or(UNCHARGED, |c| c.into_raw() as usize);
    // Release: a free on another thread that takes the entry sees the block
    // as recorded here.
    slot.store(value, Release);
    Ok(())
}

/// Whether `addr` starts a live large block.
pub(super) fn contains(addr: usize) -> bool {
    addr & (PAGE_SIZE - 1) == 0
        && slot(addr, false).is_some_and(|s| !matches!(s.load(Acquire), 0 | FREED))
}

/// Whether `addr` started a large block that was freed and whose run is
/// still ours.
pub(super) fn was_freed(addr: usize) -> bool {
    addr & (PAGE_SIZE - 1) == 0 && slot(addr, false).is_some_and(|s| s.load(Acquire) == FREED)
}

/// The run at `addr` goes back to the OS: forget its freed mark.
pub(super) fn forget(addr: usize) {
    if let Some(s) = slot(addr, false) {
        let _ = s.compare_exchange(FREED, 0, AcqRel, Relaxed);
    }
}

/// Take the entry of the large block at `addr`: `None` if there is none,
/// `Some(ctx)` (ctx `None` when uncharged) otherwise. Only one caller can
/// take a given entry.
pub(super) fn take(addr: usize) -> Option<Option<CtxRef>> {
    if addr & (PAGE_SIZE - 1) != 0 {
        return None;
    }
    let s = slot(addr, false)?;
    let mut value = s.load(Acquire);
    loop {
        if matches!(value, 0 | FREED) {
            return None;
        }
        match s.compare_exchange_weak(value, FREED, AcqRel, Acquire) {
            Ok(_) => break,
            Err(now) => value = now,
        }
    }
    match value {
        UNCHARGED => Some(None),
        // SAFETY: stored by insert from CtxRef::into_raw, and the exchange
        // to FREED gives it to this caller alone.
        p => Some(Some(unsafe { CtxRef::from_raw(p as *const _) })),
    }
}
