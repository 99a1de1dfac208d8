//! The page map of large blocks: for the first page of each live block, the
//! kmem context it was charged through (a counted reference) or a mark for
//! "not charged"; 0 everywhere else. Two levels, lock-free: 1 GiB regions,
//! then 4 KiB pages. A region's table is mapped on first use and never
//! unmapped, so a lookup never races with its table going away.
//!
//! An entry is 0 whenever its page does not start a live block: it is set
//! after the block's run is taken and cleared before the run is released.
//! So a page-aligned pointer of the system allocator (memory we never
//! mapped, or a run we gave back to the OS) always finds 0.

use crate::context::CtxRef;
use crate::PAGE_SIZE;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering::*};

const REGION_SHIFT: usize = 30;
const PAGES_PER_REGION: usize = 1 << (REGION_SHIFT - 12);
const UNCHARGED: usize = 1;

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
    addr & (PAGE_SIZE - 1) == 0 && slot(addr, false).is_some_and(|s| s.load(Acquire) != 0)
}

/// Take the entry of the large block at `addr`: `None` if there is none,
/// `Some(ctx)` (ctx `None` when uncharged) otherwise. Only one caller can
/// take a given entry.
pub(super) fn take(addr: usize) -> Option<Option<CtxRef>> {
    if addr & (PAGE_SIZE - 1) != 0 {
        return None;
    }
    let value = slot(addr, false)?.swap(0, AcqRel);
    match value {
        0 => None,
        UNCHARGED => Some(None),
        // SAFETY: stored by insert from CtxRef::into_raw, and the swap to 0
        // gives it to this caller alone.
        p => Some(Some(unsafe { CtxRef::from_raw(p as *const _) })),
    }
}
