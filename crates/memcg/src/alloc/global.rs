//! Memcg for any Rust program. [`MemcgAlloc`] is a global allocator
//! that charges every allocation to the calling thread's group; the
//! [`Internal`] guard keeps the library's own bookkeeping out of it.
//!
//! ```no_run
//! #[global_allocator]
//! static A: memcg::MemcgAlloc = memcg::MemcgAlloc;
//!
//! let tenant = memcg::global().create("/tenant").unwrap();
//! tenant.write("memory.max", "64M").unwrap();
//! let _in_tenant = tenant.enter().unwrap();
//! let v = vec![0u8; 1 << 20]; // charged to /tenant
//! # drop(v);
//! ```
//!
//! Small sizes (up to [`KMALLOC_MAX`](crate::alloc::slab::KMALLOC_MAX)) come from the
//! slab size classes; larger ones are [large blocks](crate::alloc::large): page-level
//! kmem in cached runs of whole pages, whose context is recorded in a page
//! map (not in a header).
//!
//! Re-entrancy: while memcg itself runs (a slow path, a hierarchy operation,
//! reclaim, deferred work) the thread is *internal*, and allocations go to
//! the system allocator, uncharged, taking no lock of ours. Frees tell the
//! three kinds apart by address: slab segments and large blocks are ours
//! (both found in lock-free maps), anything else is the system's.

use crate::accounting::charge::{limit_policy, LimitPolicy};
use crate::alloc::slab::{segment, KMALLOC_MAX};
use crate::group::kmem_context::CtxRef;
use crate::reentrancy::{is_internal, Internal};
use crate::PAGE_SIZE;
use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// The memcg global allocator: every allocation is charged to the calling
/// thread's group in [`global()`](crate::global) (nothing in the root). Sizes up to 8 KiB
/// come from the kmalloc slab classes, larger ones are page-level kmem. While
/// memcg itself runs, allocations go to the system allocator uncharged, so
/// the allocator never recurses or takes a lock its caller holds; see
/// [`LimitPolicy`] for what happens at `memory.max`.
///
/// ```no_run
/// #[global_allocator]
/// static A: memcg::MemcgAlloc = memcg::MemcgAlloc;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MemcgAlloc;

/// The kmalloc class serving `layout`, if a slab one does.
#[inline(always)]
pub(crate) fn small_class(layout: Layout) -> Option<usize> {
    if layout.align() <= 16 {
        crate::alloc::slab::kmalloc_class(layout.size())
    } else if layout.align() <= KMALLOC_MAX {
        // Power-of-two classes from 64 up are aligned to their size.
        crate::alloc::slab::kmalloc_class(
            layout
                .size()
                .max(layout.align())
                .next_power_of_two()
                .max(64),
        )
    } else {
        None
    }
}

/// The slot size of kmalloc class `class`.
fn class_size(class: usize) -> usize {
    crate::alloc::slab::KMALLOC_SIZES[class]
}

// SAFETY: every block returned is either a slab object of at least
// layout.size() bytes aligned to layout.align() (see small_class), a large
// block of whole pages aligned as asked (zeroed for alloc_zeroed; see
// crate::alloc::large), or the system allocator's; dealloc routes each back to
// where it came from by its address.
unsafe impl GlobalAlloc for MemcgAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_internal() {
            // SAFETY: `layout` has a non-zero size (GlobalAlloc::alloc's
            // contract), which is System.alloc's contract too.
            return unsafe { System.alloc(layout) };
        }
        match small_class(layout) {
            Some(class) => crate::alloc::slab::fast::kmalloc(class),
            None => large_alloc_global(layout),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with `layout` and is freed
        // once (GlobalAlloc::dealloc's contract), which is free_any's.
        unsafe { free_any(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_internal() {
            // SAFETY: `layout` has a non-zero size (GlobalAlloc's contract),
            // which is System.alloc_zeroed's contract too.
            return unsafe { System.alloc_zeroed(layout) };
        }
        match small_class(layout) {
            Some(class) => {
                let p = crate::alloc::slab::fast::kmalloc(class);
                if !p.is_null() {
                    // SAFETY: a slab object of at least layout.size() bytes.
                    unsafe { ptr::write_bytes(p, 0, layout.size()) };
                }
                p
            }
            // Cleared only if its run was reused: fresh mappings are zero.
            None => large_alloc(
                layout,
                limit_policy() == LimitPolicy::Overcharge,
                None,
                true,
            ),
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // In place when the block already fits: same slab class, or the same
        // number of pages of a large block.
        // SAFETY: the new layout is valid by GlobalAlloc's contract.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if is_slab(ptr) {
            if let (Some(old), Some(new)) = (small_class(layout), small_class(new_layout)) {
                if class_size(old) == class_size(new) {
                    return ptr;
                }
            }
        } else if crate::alloc::large::contains(ptr)
            && layout.size().div_ceil(PAGE_SIZE) == new_size.div_ceil(PAGE_SIZE)
            && new_size > KMALLOC_MAX
        {
            return ptr;
        }
        // SAFETY: `new_layout` has a non-zero size (realloc's contract:
        // `new_size` > 0) and a valid alignment (the old layout's).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller size; distinct.
            unsafe {
                ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[inline]
fn is_slab(p: *mut u8) -> bool {
    segment::is_slab_address(p as usize)
}

/// The global allocator's large blocks: out of line, so that the small
/// path keeps no frame.
#[inline(never)]
fn large_alloc_global(layout: Layout) -> *mut u8 {
    large_alloc(
        layout,
        limit_policy() == LimitPolicy::Overcharge,
        None,
        false,
    )
}

/// Free a block from any of the three sources: a slab object in the
/// reserved region on the inline fast path, anything else out of line.
///
/// # Safety
/// `ptr` came from [`MemcgAlloc`] (or a [`GroupAllocator`](crate::GroupAllocator)) with `layout`,
/// and is freed once.
#[inline(always)]
pub(crate) unsafe fn free_any(ptr: *mut u8, layout: Layout) {
    if crate::alloc::slab::fast::in_region(ptr as usize) {
        // SAFETY: the address lies in a committed segment of ours, and the
        // caller frees a block we handed out, once: a slab object.
        unsafe { crate::alloc::slab::fast::free(ptr) };
    } else {
        // SAFETY: `ptr` came from us with `layout` and is freed once (this
        // fn's contract), which is free_outside's contract.
        unsafe { free_outside(ptr, layout) };
    }
}

/// [`free_any`] outside the reserved region: slab objects of segments
/// mapped one by one (no region, or it was used up), large blocks, and the
/// system allocator's.
///
/// # Safety
/// As [`free_any`].
#[inline(never)]
unsafe fn free_outside(ptr: *mut u8, layout: Layout) {
    crate::alloc::slab::heap::refresh_region();
    if is_slab(ptr) {
        // SAFETY: a segment of ours holds the address (its map bit is set),
        // and the caller frees a block we handed out, once.
        unsafe { crate::alloc::slab::heap::free(ptr) };
    } else {
        // SAFETY: `ptr` came from us with `layout`, freed once (this fn's
        // contract), and is no slab object: free_not_slab's contract.
        unsafe { free_not_slab(ptr, layout) };
    }
}

/// The rest of [`free_any`], out of line: large blocks and the system's.
///
/// # Safety
/// As [`free_any`], for a pointer outside our slab segments.
#[inline(never)]
unsafe fn free_not_slab(ptr: *mut u8, layout: Layout) {
    // SAFETY: ptr came from us with this layout: a large block, or (when
    // `free` finds none) the system allocator's.
    unsafe {
        if !crate::alloc::large::free(ptr, layout) {
            if crate::alloc::large::was_freed(ptr) {
                crate::reentrancy::bad_free(
                    ptr as usize,
                    "a large block freed twice (a double free)",
                );
            }
            System.dealloc(ptr, layout);
        }
    }
}

/// Allocate a large block (see [`crate::alloc::large`]), charged through the
/// calling thread's group's context (or `ctx` if given).
pub(crate) fn large_alloc(
    layout: Layout,
    nofail: bool,
    ctx: Option<CtxRef>,
    zeroed: bool,
) -> *mut u8 {
    let _internal = Internal::enter();
    crate::accounting::current::refresh_default();
    let ctx = ctx.or_else(|| {
        if crate::group::kmem_context::accounting_enabled() {
            crate::accounting::current::current_context()
        } else {
            None
        }
    });
    crate::alloc::large::alloc(layout, ctx, nofail, zeroed)
}
