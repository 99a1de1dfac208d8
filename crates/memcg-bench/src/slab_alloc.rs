//! memcg's slab allocator as a [`RawAlloc`]: the `memcg` and `memcg-root` rows.
//!
//! Both rows allocate from the general-purpose caches,
//! [`SlabCache::kmalloc`]`(layout.size())`, on the fast path
//! ([`SlabCache::alloc_raw`] and [`SlabCache::free_raw`]). What they differ in
//! is the group the allocating thread is in: `memcg` attaches it to a
//! non-root group of a hierarchy made for the run, so every slab is charged
//! through the thread's stock; `memcg-root` leaves it in the root, where
//! accounting is bypassed (S10). The ratio of the two is DESIGN.md §7's
//! "accounting on vs off".
//!
//! The size-to-cache lookup is done once, into a table indexed by
//! `size / 16` rounded up, so what the workloads time is the allocator and
//! not `kmalloc`'s first-use initialization.

use std::alloc::Layout;
use std::ptr::{self, NonNull};

use memcg::slab::KMALLOC_MAX;
use memcg::{EnterGuard, Group, Hierarchy, SlabCache};

use crate::raw_alloc::RawAlloc;

/// Entries of the size table: one per 16-byte step up to [`KMALLOC_MAX`].
const STEPS: usize = KMALLOC_MAX / 16 + 1;
/// The alignment every kmalloc object has (from 16 bytes on).
const ALIGN: usize = 16;

/// memcg's kmalloc caches, with the allocating thread in a group or the root.
pub struct MemcgSlab {
    /// The cache for sizes in `(16 * (i - 1), 16 * i]`.
    by_step: [SlabCache; STEPS],
    /// The group allocating threads enter; `None` keeps them in the root.
    group: Option<Group>,
}

impl MemcgSlab {
    /// The `memcg` row: allocating threads charge the group `/bench` of a
    /// hierarchy made for this contender.
    pub fn charged() -> MemcgSlab {
        let group = Hierarchy::new()
            .create("/bench")
            .expect("a fresh hierarchy has no /bench");
        MemcgSlab::new(Some(group))
    }

    /// The `memcg-root` row: allocating threads stay in the root group.
    pub fn root() -> MemcgSlab {
        MemcgSlab::new(None)
    }

    fn new(group: Option<Group>) -> MemcgSlab {
        MemcgSlab {
            by_step: std::array::from_fn(|step| {
                SlabCache::kmalloc((step * 16).max(1)).expect("sizes up to KMALLOC_MAX")
            }),
            group,
        }
    }

    /// The cache for `layout`.
    #[inline(always)]
    fn cache(&self, layout: Layout) -> SlabCache {
        // Folded away in the workloads, whose layouts are constant in align.
        assert!(
            layout.align() <= ALIGN,
            "kmalloc objects are {ALIGN}-byte aligned, not {}",
            layout.align()
        );
        self.by_step[layout.size().div_ceil(16)]
    }
}

// SAFETY: `alloc_raw` returns objects of at least `layout.size()` bytes,
// aligned to 16 (checked against `layout.align()` above), valid until
// `free_raw`, which may be called from any thread; objects larger than
// KMALLOC_MAX are refused by the table's bounds check (a panic, not UB).
unsafe impl RawAlloc for MemcgSlab {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.cache(layout).alloc_raw() {
            Ok(obj) => obj.as_ptr(),
            Err(_) => ptr::null_mut(),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: by the caller's contract `ptr` came from `alloc` above, so
        // from `alloc_raw`, is non-null, and is freed once.
        unsafe { SlabCache::free_raw(NonNull::new_unchecked(ptr)) }
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
    fn table_maps_each_size_to_its_kmalloc_cache() {
        let a = MemcgSlab::root();
        for size in 1..=KMALLOC_MAX {
            let layout = Layout::from_size_align(size, 8).unwrap();
            let expected = SlabCache::kmalloc(size).unwrap();
            assert_eq!(a.cache(layout).name(), expected.name(), "size {size}");
            assert!(a.cache(layout).slot_size() >= size);
        }
    }

    #[test]
    fn single_thread_workloads_run_charged_and_in_the_root() {
        // `remote` is left to the report: it pins threads to cores and
        // spins, which a unit test on a shared CI machine should not.
        for a in [MemcgSlab::charged(), MemcgSlab::root()] {
            crate::workload::single64(&a, 1000);
            crate::workload::churn(&a, 1000);
        }
    }

    #[test]
    fn charged_row_bills_its_group() {
        let a = MemcgSlab::charged();
        let layout = Layout::from_size_align(64, 8).unwrap();
        let group = a.group.clone().unwrap();
        let obj = {
            let _in = a.enter_allocating_thread();
            // SAFETY: non-zero size; freed once below.
            unsafe { a.alloc(layout) }
        };
        assert!(!obj.is_null());
        group.hierarchy().quiesce();
        let current: u64 = group
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
