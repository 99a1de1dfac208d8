//! Layer 3: the calling thread's group and kmem context, in const-initialised
//! thread-locals the allocator reads on every allocation without allocating
//! or registering anything. The group cell holds one counted reference
//! (`Arc::into_raw`) or null for the root; the context cell caches that
//! group's context for the shared-slab fast path. Only the front end
//! (`task`) moves a thread, through [`set`].

use crate::context::KmemContext;
use crate::group::GroupInner;
use crate::sync::Arc;
use std::cell::Cell;
use std::ptr;

thread_local! {
    static CURRENT: Cell<*const GroupInner> = const { Cell::new(ptr::null()) };
    /// The kmem context of `CURRENT` (null in the root): valid while CURRENT
    /// holds the group, which holds it.
    static CURRENT_CTX: Cell<*const KmemContext> = const { Cell::new(ptr::null()) };
}

/// Make `group` (`None`: the root) the calling thread's group; returns the
/// reference to the group it was in. A no-op returning `None` during thread
/// teardown, once the cells are gone.
pub(crate) fn set(group: Option<Arc<GroupInner>>) -> Option<Arc<GroupInner>> {
    let ctx = group
        .as_ref()
        .and_then(|g| g.ctx.as_ref())
        .map_or(ptr::null(), |c| c.as_ptr());
    let new = group.map_or(ptr::null(), Arc::into_raw);
    let _ = CURRENT_CTX.try_with(|c| c.set(ctx));
    let old = CURRENT.try_with(|c| c.replace(new)).unwrap_or(ptr::null());
    // SAFETY: a non-null value of CURRENT came from Arc::into_raw here, and
    // the cell no longer holds it.
    (!old.is_null()).then(|| unsafe { Arc::from_raw(old) })
}

/// The calling thread's group, `None` in the root.
pub(crate) fn current_group() -> Option<Arc<GroupInner>> {
    CURRENT
        .try_with(|c| {
            let p = c.get();
            if p.is_null() {
                return None;
            }
            // SAFETY: CURRENT holds a counted reference (Arc::into_raw) that only
            // this thread releases, so the group is alive; the ManuallyDrop view
            // is cloned into a count of its own and never dropped.
            let view = std::mem::ManuallyDrop::new(unsafe { Arc::from_raw(p) });
            Some(Arc::clone(&view))
        })
        .ok()
        .flatten()
}

/// The calling thread's group as a raw pointer (null for the root), for
/// identity checks on the allocation fast path.
#[inline]
pub(crate) fn current_ptr() -> *const GroupInner {
    CURRENT.with(|c| c.get())
}

/// The calling thread's kmem context as a raw pointer (null in the root),
/// for the shared-slab fast path.
#[inline]
pub(crate) fn current_ctx_ptr() -> *const KmemContext {
    CURRENT_CTX.with(|c| c.get())
}

/// Run `f` with the calling thread's group, without touching its count.
#[inline]
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&GroupInner>) -> R) -> R {
    let p = CURRENT.try_with(|c| c.get()).unwrap_or(ptr::null());
    // SAFETY: as in current_group: the thread's own counted reference keeps
    // the group alive while the thread does not change CURRENT, and `f` cannot
    // (attach takes the tree lock and is not reachable from allocation paths).
    f(unsafe { p.as_ref() })
}
