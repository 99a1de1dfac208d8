//! Tasks: threads attached to groups.
//!
//! A thread's current group lives in [`current`](crate::current), read by the
//! allocator on every allocation; this front end moves threads between
//! groups, keeps each group's task list, and registers a thread-exit hook that
//! moves the thread back to the root and hands its charge stock back.

use crate::error::{Error, Result};
use crate::group::{GroupInner, TaskEntry};
use crate::sync::Arc;
use std::cell::Cell;
use std::ptr;

thread_local! {
    static TASK_ID: Cell<u64> = const { Cell::new(0) };
}

#[cfg(not(loom))]
struct ExitHook;

#[cfg(not(loom))]
impl Drop for ExitHook {
    fn drop(&mut self) {
        let _internal = crate::internal::Internal::enter();
        // Thread exit: leave the group (so it can be removed) and return the
        // stock's pre-charged pages.
        if let Some(old) = crate::current::set(None) {
            release(old);
        }
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

/// The thread left `g`: take it off the group's task list.
fn release(g: Arc<GroupInner>) {
    let id = task_id();
    let mut tasks = g.tasks.lock();
    if let Some(i) = tasks.iter().position(|t| t.id == id) {
        tasks.remove(i);
    }
}

/// Move the calling thread into `group` (`None`: the root), returning the group
/// it was in. Fails if `group` was removed.
pub(crate) fn switch(group: Option<&Arc<GroupInner>>) -> Result<Option<Arc<GroupInner>>> {
    let _internal = crate::internal::Internal::enter();
    let previous = crate::current::current_group();
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
    let new = group.map_or(ptr::null(), Arc::as_ptr);
    let old = crate::current::set(group.cloned()).map_or(ptr::null(), |o| {
        let p = Arc::as_ptr(&o);
        release(o);
        p
    });
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
