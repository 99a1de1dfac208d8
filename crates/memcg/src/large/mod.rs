//! Layer 4c: large blocks, the global allocator's sizes above
//! [`KMALLOC_MAX`](crate::slab::KMALLOC_MAX) (and its alignments above a
//! page): page-level kmem, each block mapped from the OS for itself.
//!
//! Charging is per block: a block is charged its requested size in whole
//! pages through a kmem context (the calling thread's group's or an
//! allocator handle's), recorded in a lock-free page map by the block's
//! first address, and uncharged through that context when freed, whichever
//! group it bills by then (S2).

mod map;

use crate::context::CtxRef;
use crate::stats::Stat;
use crate::PAGE_SIZE;
use std::alloc::Layout;
use std::ptr;

/// The pages charged for a block of `layout`.
fn pages_of(layout: Layout) -> usize {
    layout.size().max(1).div_ceil(PAGE_SIZE)
}

/// Allocate a large block for `layout`, charged through `ctx` (forced over a
/// limit when `nofail`), zeroed if asked (a fresh mapping is). Null if the
/// charge fails or the OS refuses memory. The caller is internal (charging
/// may reclaim).
pub(crate) fn alloc(layout: Layout, ctx: Option<CtxRef>, nofail: bool, _zeroed: bool) -> *mut u8 {
    let pages = pages_of(layout);
    if let Some(ctx) = &ctx {
        if crate::charge::charge(ctx, pages, Stat::Kmem, nofail).is_err() {
            return ptr::null_mut();
        }
    }
    let Some(addr) = map_pages(pages * PAGE_SIZE, layout.align().max(PAGE_SIZE)) else {
        if let Some(ctx) = &ctx {
            crate::charge::uncharge(ctx, pages, Stat::Kmem);
        }
        return ptr::null_mut();
    };
    if let Err(ctx) = map::insert(addr, ctx) {
        unmap_pages(addr, pages * PAGE_SIZE);
        if let Some(ctx) = &ctx {
            crate::charge::uncharge(ctx, pages, Stat::Kmem);
        }
        return ptr::null_mut();
    }
    addr as *mut u8
}

/// Free `ptr` if it is a large block: its pages go back to the OS and are
/// uncharged through the context recorded for it. Returns false, touching
/// nothing, if `ptr` is not a live large block.
///
/// # Safety
/// If `ptr` is a live large block, it was allocated with `layout` (or
/// reallocated in place to it) and is not used after this call.
pub(crate) unsafe fn free(ptr: *mut u8, layout: Layout) -> bool {
    let Some(ctx) = map::take(ptr as usize) else {
        return false;
    };
    let pages = pages_of(layout);
    // The entry we took proves a live block at ptr, mapped by `alloc` with
    // this layout's page count (the caller's contract).
    unmap_pages(ptr as usize, pages * PAGE_SIZE);
    if let Some(ctx) = ctx {
        let _internal = crate::global::Internal::enter();
        crate::charge::uncharge(&ctx, pages, Stat::Kmem);
    }
    true
}

/// Whether `ptr` starts a live large block.
pub(crate) fn contains(ptr: *const u8) -> bool {
    map::contains(ptr as usize)
}

/// Map `len` bytes (whole pages) aligned to `align` (a power of two, at
/// least a page). `None` if the OS refuses.
fn map_pages(len: usize, align: usize) -> Option<usize> {
    let map_len = len.checked_add(align - PAGE_SIZE)?;
    // SAFETY: an anonymous private mapping, ours alone; the misaligned head
    // and the tail beyond `len` are unmapped at once, leaving exactly
    // [start, start + len) mapped.
    unsafe {
        let raw = libc::mmap(
            ptr::null_mut(),
            map_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if raw == libc::MAP_FAILED {
            return None;
        }
        let raw = raw as usize;
        let start = (raw + align - 1) & !(align - 1);
        if start > raw {
            libc::munmap(raw as *mut libc::c_void, start - raw);
        }
        let end = raw + map_len;
        if end > start + len {
            libc::munmap((start + len) as *mut libc::c_void, end - start - len);
        }
        Some(start)
    }
}

/// Unmap `len` bytes at `addr`, mapped by [`map_pages`].
fn unmap_pages(addr: usize, len: usize) {
    // SAFETY: callers pass a whole mapping of ours that nothing uses any
    // more.
    unsafe { libc::munmap(addr as *mut libc::c_void, len) };
}
