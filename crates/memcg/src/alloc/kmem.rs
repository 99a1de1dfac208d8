//! Page-level kmem (the kernel's `alloc_kmem_pages`): real memory in
//! whole pages that records the kmem context it was charged through, so that
//! its free uncharges whichever group the context bills by then (S2).

use crate::error::{Error, Result};
use crate::group::kmem_context::CtxRef;
use crate::group::stats::Stat;
use crate::PAGE_SIZE;
use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr::NonNull;

/// A buffer of whole pages of kernel memory, charged to the group of the
/// thread that allocated it. Dropping it frees it, from any thread.
pub struct KmemPages {
    ptr: NonNull<u8>,
    pages: usize,
    ctx: Option<CtxRef>,
}

// SAFETY: KmemPages owns its buffer exclusively (like a Box<[u8]>), and its
// context reference is Send + Sync.
unsafe impl Send for KmemPages {}
// SAFETY: shared access hands out only `&[u8]`.
unsafe impl Sync for KmemPages {}

impl std::fmt::Debug for KmemPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmemPages")
            .field("pages", &self.pages)
            .field("accounted", &self.ctx.is_some())
            .finish()
    }
}

impl KmemPages {
    /// Allocate `bytes` rounded up to whole pages, charged to the calling
    /// thread's group (not charged in the root, S10).
    ///
    /// ```
    /// let h = memcg::Hierarchy::new();
    /// let g = h.create("/job").unwrap();
    /// let _in_job = g.enter().unwrap();
    /// let buf = memcg::KmemPages::alloc(10_000).unwrap();
    /// assert_eq!(buf.pages(), 3);
    /// h.quiesce();
    /// assert_eq!(g.read("memory.current").unwrap(), "12288\n");
    /// ```
    pub fn alloc(bytes: usize) -> Result<KmemPages> {
        crate::accounting::current::refresh_default();
        let ctx = if crate::group::kmem_context::accounting_enabled() {
            crate::accounting::current::current_context()
        } else {
            None
        };
        KmemPages::alloc_charged(bytes, ctx)
    }

    pub(crate) fn alloc_charged(bytes: usize, ctx: Option<CtxRef>) -> Result<KmemPages> {
        if bytes == 0 {
            return Err(Error::Invalid(
                "a kmem allocation needs at least one byte".into(),
            ));
        }
        let pages = bytes.div_ceil(PAGE_SIZE);
        // Whole pages of at most isize::MAX bytes (Layout checks the bound;
        // the multiplication must not wrap before it can).
        let layout = pages
            .checked_mul(PAGE_SIZE)
            .and_then(|len| Layout::from_size_align(len, PAGE_SIZE).ok())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{bytes} bytes is more than a kmem allocation can hold (isize::MAX rounded down to pages)"
                ))
            })?;
        if let Some(ctx) = &ctx {
            crate::accounting::charge::charge(ctx, pages, Stat::Kmem, false)?;
        }
        // SAFETY: the layout has a non-zero size. Zeroed, so the buffer is
        // initialised memory that `as_slice` may hand out.
        let raw = unsafe { System.alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            if let Some(ctx) = &ctx {
                crate::accounting::charge::uncharge(ctx, pages, Stat::Kmem);
            }
            return Err(Error::NoMemory(layout.size()));
        };
        Ok(KmemPages { ptr, pages, ctx })
    }

    /// The size in pages.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// The memory.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr points to pages*PAGE_SIZE initialised (zeroed) bytes that
        // self owns and that live as long as the borrow of self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.pages * PAGE_SIZE) }
    }

    /// The memory, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr points to pages*PAGE_SIZE bytes owned exclusively by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.pages * PAGE_SIZE) }
    }
}

impl Drop for KmemPages {
    fn drop(&mut self) {
        let layout =
            Layout::from_size_align(self.pages * PAGE_SIZE, PAGE_SIZE).unwrap_or_else(|_| {
                crate::reentrancy::broken(
                    "kmem pages: a layout that was valid at allocation is not",
                )
            });
        // SAFETY: allocated by System.alloc_zeroed with this very layout, freed once.
        unsafe { System.dealloc(self.ptr.as_ptr(), layout) };
        if let Some(ctx) = self.ctx.take() {
            crate::accounting::charge::uncharge(&ctx, self.pages, Stat::Kmem);
        }
    }
}
