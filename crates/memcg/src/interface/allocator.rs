//! [`GroupAllocator`], the `allocator_api2` handles of
//! [`Group::allocator`](crate::Group::allocator): collections charged to one
//! group whatever thread uses them.

use crate::alloc::global::{free_any, large_alloc, small_class};
use std::alloc::Layout;

/// An [`Allocator`](allocator_api2::alloc::Allocator) that charges one group,
/// whatever thread calls it, and fails with `AllocError` at the group's
/// limit (after reclaim): hard per-group limits for collections.
/// Made by [`Group::allocator`](crate::Group::allocator).
///
/// Each thread allocating through handles keeps, for the last group it used
/// that way, its current slab of each size class: after that group is
/// removed they return to its (dead) caches when the thread allocates
/// through another group's handle, exits, or calls
/// [`flush_thread_cache`](crate::alloc::slab::flush_thread_cache).
///
/// ```
/// use allocator_api2::vec::Vec;
///
/// let h = memcg::Hierarchy::new();
/// let tenant = h.create("/tenant").unwrap();
/// tenant.write("memory.max", "64K").unwrap();
/// let mut v: Vec<u8, _> = Vec::new_in(tenant.allocator());
/// v.extend_from_slice(&[1; 32 * 1024]);
/// assert!(v.try_reserve(1 << 20).is_err()); // over memory.max
/// h.quiesce();
/// assert_eq!(tenant.read("memory.current").unwrap(), "32768\n");
/// ```
#[derive(Clone, Debug)]
pub struct GroupAllocator {
    group: crate::Group,
}

impl GroupAllocator {
    pub(crate) fn new(group: crate::Group) -> GroupAllocator {
        GroupAllocator { group }
    }

    /// The group charged.
    pub fn group(&self) -> &crate::Group {
        &self.group
    }
}

// SAFETY: blocks come from the slab classes or large blocks, sized and
// aligned for the layout (see small_class and crate::alloc::large), valid until
// deallocated, and any handle of the same group may free them (frees go by
// address, not by handle).
unsafe impl allocator_api2::alloc::Allocator for GroupAllocator {
    fn allocate(
        &self,
        layout: Layout,
    ) -> Result<std::ptr::NonNull<[u8]>, allocator_api2::alloc::AllocError> {
        use allocator_api2::alloc::AllocError;
        let p = if layout.size() == 0 {
            // A dangling, aligned pointer: nothing to charge.
            std::ptr::NonNull::new(layout.align() as *mut u8).ok_or(AllocError)?
        } else {
            match small_class(layout) {
                Some(class) => crate::alloc::slab::kmalloc_cache(class)
                    .alloc_for(&self.group.inner)
                    .map_err(|_| AllocError)?,
                None => {
                    let p = large_alloc(layout, false, self.group.context(), false);
                    std::ptr::NonNull::new(p).ok_or(AllocError)?
                }
            }
        };
        Ok(std::ptr::NonNull::slice_from_raw_parts(p, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: std::ptr::NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: allocated by `allocate` with this layout.
            unsafe { free_any(ptr.as_ptr(), layout) }
        }
    }
}
