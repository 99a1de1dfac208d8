//! memcg's global allocator as a [`RawAlloc`]: the `memcg (global allocator)`
//! row of the raw workloads.
//!
//! Like the peers, [`MemcgAlloc`] is called through its `GlobalAlloc` impl on
//! a static instance, without being this process's global allocator. What a
//! program gets from `#[global_allocator] static A: MemcgAlloc` is the same
//! code path: the re-entrancy check, the size class lookup from the layout,
//! then the slab fast path (or page-level kmem above `KMALLOC_MAX`). The
//! allocating thread enters a non-root group of [`memcg::global()`], the
//! hierarchy `MemcgAlloc` charges, made for the run, so every slab is charged.
//!
//! This row differs from `memcg` (which calls the kmalloc caches through a
//! size table) by what the global allocator adds on top of the caches.
//! [`MemcgGlobal::root`] is the same allocator with the allocating thread in
//! no group at all (the root, where nothing is charged, S10): the
//! `memcg-root (global allocator)` row, DESIGN.md §7's "accounting off".

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};

use memcg::{EnterGuard, Group, MemcgAlloc};

use crate::raw_alloc::RawAlloc;

/// The instance called, as a program's `#[global_allocator]` would be.
static MEMCG_ALLOC: MemcgAlloc = MemcgAlloc;

/// [`MemcgAlloc`] with the allocating thread in its own group of
/// [`memcg::global()`], or in none.
pub struct MemcgGlobal {
    group: Option<Group>,
}

impl MemcgGlobal {
    /// A fresh group `/bench-global-N` of [`memcg::global()`] (one per
    /// instance, since the hierarchy is process-wide) that allocating threads
    /// enter.
    pub fn charged() -> MemcgGlobal {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let group = memcg::global()
            .create(&format!("/bench-global-{n}"))
            .expect("each instance names a new group");
        MemcgGlobal { group: Some(group) }
    }

    /// Allocating threads stay in no group: nothing is charged.
    pub fn root() -> MemcgGlobal {
        MemcgGlobal { group: None }
    }

    /// The group allocating threads enter, if any.
    pub fn group(&self) -> Option<&Group> {
        self.group.as_ref()
    }
}

// SAFETY: `MemcgAlloc`'s `GlobalAlloc` impl makes the promises `RawAlloc`
// asks for, freeing from any thread included (frees go by address); the
// forwarding passes the caller's guarantees on unchanged.
unsafe impl RawAlloc for MemcgGlobal {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract (non-zero size).
        unsafe { MEMCG_ALLOC.alloc(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract (`ptr` is live and from MEMCG_ALLOC).
        unsafe { MEMCG_ALLOC.dealloc(ptr, layout) }
    }

    fn enter_allocating_thread(&self) -> Option<EnterGuard> {
        self.group
            .as_ref()
            .map(|g| g.enter().expect("the bench group is never removed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_thread_workloads_run() {
        for a in [MemcgGlobal::charged(), MemcgGlobal::root()] {
            crate::workload::single64(&a, 1000);
            crate::workload::churn(&a, 1000);
        }
    }

    #[test]
    fn allocations_are_charged_to_the_group() {
        let a = MemcgGlobal::charged();
        let layout = Layout::from_size_align(64, 8).unwrap();
        let obj = {
            let _in = a.enter_allocating_thread();
            // SAFETY: non-zero size; freed once below.
            unsafe { a.alloc(layout) }
        };
        assert!(!obj.is_null());
        memcg::global().quiesce();
        let current: u64 = a
            .group()
            .unwrap()
            .read("memory.current")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(current >= 4096, "one slab charged, got {current}");
        // SAFETY: allocated above, freed once.
        unsafe { a.dealloc(obj, layout) };
    }
}
