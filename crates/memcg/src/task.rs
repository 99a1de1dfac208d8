//! Tasks: threads attached to groups.
//!
//! A thread's current group lives in a const-initialised thread-local that
//! holds one counted reference (`Arc::into_raw`) or null for the root, so the
//! allocator can read it on every allocation without allocating or
//! registering anything. Attaching registers a thread-exit hook that moves the
//! thread back to the root and hands its charge stock back.

use crate::error::{Error, Result};
use crate::group::{GroupInner, TaskEntry};
use crate::sync::Arc;
use std::cell::Cell;
use std::ptr;

thread_local! {
    static CURRENT: Cell<*const GroupInner> = const { Cell::new(ptr::null()) };
    /// The kmem context of `CURRENT` (null in the root), for the shared-slab
    /// fast path: valid while CURRENT holds the group, which holds it.
    static CURRENT_CTX: Cell<*const crate::context::KmemContext> = const { Cell::new(ptr::null()) };
    static TASK_ID: Cell<u64> = const { Cell::new(0) };
}

#[cfg(not(loom))]
struct ExitHook;

#[cfg(not(loom))]
impl Drop for ExitHook {
    fn drop(&mut self) {
        let _internal = crate::global::Internal::enter();
        // Thread exit: leave the group (so it can be removed) and return the
        // stock's pre-charged pages.
        let _ = CURRENT_CTX.try_with(|c| c.set(ptr::null()));
        let _ = CURRENT.try_with(|c| {
            let old = c.replace(ptr::null());
            release(old);
        });
        crate::stock::drain_local();
    }
}

#[cfg(not(loom))]
thread_local! {
    static EXIT_HOOK: ExitHook = const { ExitHook };
}

fn task_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    TASK_ID.with(|t| {
        if t.get() == 0 {
            t.set(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        }
        t.get()
    })
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
pub(crate) fn current_ctx_ptr() -> *const crate::context::KmemContext {
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

fn release(p: *const GroupInner) {
    if p.is_null() {
        return;
    }
    // SAFETY: p came from Arc::into_raw in `switch`, and CURRENT no longer holds it.
    let g = unsafe { Arc::from_raw(p) };
    let id = task_id();
    let mut tasks = g.tasks.lock();
    if let Some(i) = tasks.iter().position(|t| t.id == id) {
        tasks.remove(i);
    }
}

/// Move the calling thread into `group` (`None`: the root), returning the group
/// it was in. Fails if `group` was removed.
pub(crate) fn switch(group: Option<&Arc<GroupInner>>) -> Result<Option<Arc<GroupInner>>> {
    let _internal = crate::global::Internal::enter();
    let previous = current_group();
    if let Some(g) = group {
        // Checked and registered under the tree lock, so that removal (which
        // checks for tasks under the same lock) cannot miss us (S5 for tasks).
        let _tree = g.common.tree.lock();
        if g.is_dying() {
            return Err(Error::NotFound(format!(
                "{} (removed; attach to a live group)",
                g.path
            )));
        }
        let name = std::thread::current()
            .name()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{:?}", std::thread::current().id()));
        g.tasks.lock().push(TaskEntry {
            id: task_id(),
            name,
        });
        #[cfg(not(loom))]
        EXIT_HOOK.with(|_| {});
    }
    let new = group.map_or(ptr::null(), |g| Arc::into_raw(g.clone()));
    let ctx = group
        .and_then(|g| g.ctx.as_ref())
        .map_or(ptr::null(), |c| c.as_ptr());
    CURRENT_CTX.with(|c| c.set(ctx));
    let old = CURRENT.with(|c| c.replace(new));
    release(old);
    // The thread's object stock and its isolated caches' slabs belong to the
    // group it leaves: hand them back now, so that group's memory is exact,
    // reclaimable, and seen by its removal. Shared slabs stay.
    if old != new {
        crate::slab::heap::leave_group();
    }
    Ok(previous)
}

/// A guard that keeps the calling thread in a group; dropping it moves the
/// thread back to the group it was in before. Made by
/// [`Group::enter`](crate::Group::enter).
#[must_use = "the thread leaves the group when the guard is dropped"]
pub struct EnterGuard {
    previous: Option<Arc<GroupInner>>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl EnterGuard {
    pub(crate) fn new(previous: Option<Arc<GroupInner>>) -> EnterGuard {
        EnterGuard {
            previous,
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        // The previous group may have been removed meanwhile (it had no task
        // while we were away from it); then return to the root.
        if switch(self.previous.as_ref()).is_err() {
            let _ = switch(None);
        }
    }
}

/// Move the calling thread back to the root group, where nothing is charged.
pub fn detach() {
    let _ = switch(None);
}
