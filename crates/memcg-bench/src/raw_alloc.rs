//! The allocator abstraction the workloads run on.

use std::alloc::{GlobalAlloc, Layout};

/// An allocator the raw workloads can run on: the two calls they make.
///
/// # Safety
///
/// Implementors promise what `GlobalAlloc` promises: `alloc` returns null or a
/// block valid for `layout` until it is passed to `dealloc`, and a block may be
/// freed from any thread (the `remote` workload frees on another thread than
/// the one that allocated).
pub unsafe trait RawAlloc: Sync {
    /// Allocates a block for `layout`; null on failure.
    ///
    /// # Safety
    ///
    /// `layout` has a non-zero size.
    unsafe fn alloc(&self, layout: Layout) -> *mut u8;

    /// Frees a block returned by [`RawAlloc::alloc`] on this allocator.
    ///
    /// # Safety
    ///
    /// `ptr` came from `self.alloc(layout)` with this same `layout` and has not
    /// been freed yet.
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout);

    /// Called by a workload on each thread that allocates, before that
    /// thread's timed loop; the thread keeps the guard until it is done.
    /// memcg's `memcg` row attaches the thread to its group here; every other
    /// allocator leaves the thread where it is (the default).
    fn enter_allocating_thread(&self) -> Option<memcg::EnterGuard> {
        None
    }
}

/// A peer allocator, called through its `GlobalAlloc` impl without being the
/// process's global allocator.
pub struct Peer<A>(pub A);

// SAFETY: a `GlobalAlloc` impl makes exactly the promises `RawAlloc` asks for,
// including freeing from any thread, since a global allocator is shared by all
// threads; the forwarding below passes the caller's guarantees on unchanged.
unsafe impl<A: GlobalAlloc + Sync> RawAlloc for Peer<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract (non-zero size).
        unsafe { self.0.alloc(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract (`ptr` is live and from `self.0`).
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

/// The process's global allocator (`std::alloc::alloc`), whichever it is,
/// with the allocating threads in `group` if one is given: what the ports
/// run on in a child process whose global allocator is the one measured
/// (see [`crate::global`]).
pub struct ProcessGlobal {
    group: Option<memcg::Group>,
}

impl ProcessGlobal {
    /// The global allocator; allocating threads enter `group`, if any (a
    /// group of `memcg::global()`, for memcg's global allocator to charge).
    pub fn new(group: Option<memcg::Group>) -> ProcessGlobal {
        ProcessGlobal { group }
    }
}

// SAFETY: `std::alloc::alloc` and `dealloc` reach the process's
// `#[global_allocator]` (or `System`), which is a `GlobalAlloc` and so makes
// the promises `RawAlloc` asks for; the caller's guarantees pass on unchanged.
unsafe impl RawAlloc for ProcessGlobal {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract (non-zero size).
        unsafe { std::alloc::alloc(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract (`ptr` is live and from `alloc`).
        unsafe { std::alloc::dealloc(ptr, layout) }
    }

    fn enter_allocating_thread(&self) -> Option<memcg::EnterGuard> {
        self.group
            .as_ref()
            .map(|g| g.enter().expect("the child's group is never removed"))
    }
}
