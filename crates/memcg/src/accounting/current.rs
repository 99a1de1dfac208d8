//! The calling thread's group, in a const-initialised thread-local
//! read without allocating or registering anything. The cell holds one
//! counted reference (`Arc::into_raw`) or null for the root. The allocation
//! fast path does not read it: the slab layer's heap follows every change
//! through the hook [`set`] calls ([`on_switch`]). Only the front end
//! (`task`) moves a thread, through [`set`].
//!
//! A thread never attached (and never detached) *follows the default group*
//! (S12): the group a hierarchy made its default with
//! `Hierarchy::set_default_group`, or the root. Such a thread picks the
//! default up in [`refresh_default`], which the slow paths of every
//! allocation call: a thread's first allocation of each kind is a slow one,
//! so a thread started after the default was set charges it from its first
//! byte, and one already running follows a change at its next slow path.
//! The fast path reads nothing shared to find out (S10).

use crate::group::kmem_context::KmemContext;
use crate::group::GroupInner;
use crate::sync::Arc;
use std::cell::Cell;
use std::ptr;

thread_local! {
    static CURRENT: Cell<*const GroupInner> = const { Cell::new(ptr::null()) };
    /// Whether the thread follows the default group: never attached to a
    /// group (nor detached to the root) by the front end.
    static FOLLOWS_DEFAULT: Cell<bool> = const { Cell::new(true) };
    /// The [`DEFAULT_GEN`] the thread's group was last resolved at.
    static DEFAULT_SEEN: Cell<u64> = const { Cell::new(0) };
}

/// The process's default group: hierarchies share it, because one
/// allocation charges one group (a thread is in one group, as a process is in
/// one cgroup of the unified hierarchy). `None`: the root.
static DEFAULT: std::sync::Mutex<Option<Arc<GroupInner>>> = std::sync::Mutex::new(None);

/// Bumped by every change of [`DEFAULT`]; 0 means "never set", which every
/// thread has seen.
static DEFAULT_GEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Thread exit ([`Exit::Current`](crate::lifecycle::Exit::Current)): drop
/// the thread's group reference when it follows the default group
/// (attached threads left theirs in the tasks' stage), and take the thread
/// off [`THREADS`].
fn on_exit() {
    if FOLLOWS_DEFAULT.try_with(|f| f.get()).unwrap_or(false) {
        drop(set(None));
    }
    unregister();
}

/// Arm [`on_exit`]; false once the thread is past its exit.
fn arm_exit() -> bool {
    crate::lifecycle::arm_exit(crate::lifecycle::Exit::Current, on_exit)
}

/// The `CURRENT` cells (their addresses) of the threads that ever held a
/// group, so that the child of `fork()` can drop the references the
/// threads that vanished held ([`release_vanished`]). A thread is listed
/// at its first move into a group and taken off at its exit.
static THREADS: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

thread_local! {
    /// 0: not in [`THREADS`]; 1: listed; 2: exited, never listed again.
    static LISTED: Cell<u8> = const { Cell::new(0) };
}

/// List the calling thread in [`THREADS`], once (it is about to hold a
/// group reference in `CURRENT`). Not during thread teardown.
fn register() {
    if LISTED.try_with(|l| l.get()).unwrap_or(2) != 0 || !arm_exit() {
        return;
    }
    let _internal = crate::reentrancy::Internal::enter();
    let me = CURRENT.with(|c| c as *const Cell<*const GroupInner> as usize);
    crate::sync::lock_std(&THREADS).push(me);
    LISTED.with(|l| l.set(1));
}

/// Take the calling thread off [`THREADS`] for good (thread exit).
fn unregister() {
    if LISTED.try_with(|l| l.replace(2)).unwrap_or(2) != 1 {
        return;
    }
    let me = CURRENT
        .try_with(|c| c as *const Cell<*const GroupInner> as usize)
        .unwrap_or(0);
    crate::sync::lock_std(&THREADS).retain(|&p| p != me);
}

/// In the child of `fork()`, where the calling thread is the only one: drop
/// the group references the other listed threads held, so that a group one
/// of them was in can be freed once removed (S1). The caller also takes
/// them off the groups' task lists.
#[cfg(not(loom))]
pub(crate) fn release_vanished() {
    let me = CURRENT
        .try_with(|c| c as *const Cell<*const GroupInner> as usize)
        .unwrap_or(0);
    let others: Vec<usize> = {
        let mut threads = crate::sync::lock_std(&THREADS);
        let others = threads.iter().copied().filter(|&p| p != me).collect();
        threads.retain(|&p| p == me);
        others
    };
    for p in others {
        // SAFETY: `p` is the CURRENT cell of a listed thread, which was
        // alive at the fork (exiting threads take themselves off first) and
        // does not exist in the child: its thread-locals stay mapped with its
        // cached stack until a new thread takes that stack, after the fork
        // handlers. A non-null value is a counted reference from `set`; a
        // thread stopped inside `set` may have left one reference in a
        // register instead, which is leaked, never dropped twice.
        let cell = unsafe { &*(p as *const Cell<*const GroupInner>) };
        let g = cell.replace(ptr::null());
        if !g.is_null() {
            // SAFETY: a non-null value in a CURRENT cell is always a counted
            // reference that `set` made with `Arc::into_raw` (a thread stopped
            // inside `set` leaves the one in flight in a register, not in the
            // cell). `replace` left null in the cell and its thread is gone,
            // so this is the only `from_raw` of that count: dropped once.
            drop(unsafe { Arc::from_raw(g) });
        }
    }
}

/// The default group now (`None`: the root).
pub(crate) fn default_group() -> Option<Arc<GroupInner>> {
    crate::sync::lock_std(&DEFAULT).clone()
}

/// Make `group` the default group (`None`: the root), if `check` accepts the
/// one in place; returns the one replaced. Threads following the default
/// move to it at their next slow path.
pub(crate) fn set_default<E>(
    group: Option<Arc<GroupInner>>,
    check: impl FnOnce(Option<&Arc<GroupInner>>) -> Result<(), E>,
) -> Result<Option<Arc<GroupInner>>, E> {
    let mut slot = crate::sync::lock_std(&DEFAULT);
    check(slot.as_ref())?;
    let old = std::mem::replace(&mut *slot, group);
    DEFAULT_GEN.fetch_add(1, std::sync::atomic::Ordering::Release);
    drop(slot);
    Ok(old)
}

/// Whether `g` is the default group.
pub(crate) fn is_default(g: &GroupInner) -> bool {
    crate::sync::lock_std(&DEFAULT)
        .as_ref()
        .is_some_and(|d| ptr::eq(Arc::as_ptr(d), g))
}

/// Whether the calling thread follows the default group.
pub(crate) fn follows_default() -> bool {
    FOLLOWS_DEFAULT.try_with(|f| f.get()).unwrap_or(false)
}

/// Set whether the calling thread follows the default group; a thread that
/// starts following it again resolves it at once (see [`refresh_default`]).
pub(crate) fn set_follows_default(follows: bool) {
    let _ = FOLLOWS_DEFAULT.try_with(|f| f.set(follows));
    if follows {
        let _ = DEFAULT_SEEN.try_with(|s| s.set(u64::MAX));
    }
}

/// Set whether the calling thread follows the default group, keeping its
/// group as it is (a scope restoring the group it resolved before).
pub(crate) fn keep_follows_default(follows: bool) {
    let _ = FOLLOWS_DEFAULT.try_with(|f| f.set(follows));
}

/// Move a thread that follows the default group to the current default, if
/// it changed since the thread last looked. Called by allocation slow paths
/// and the front end; cheap when nothing changed (two thread-local reads and
/// one load of a counter written only by `set_default_group`).
#[inline]
pub(crate) fn refresh_default() {
    if !FOLLOWS_DEFAULT.try_with(|f| f.get()).unwrap_or(false) {
        return;
    }
    let gen = DEFAULT_GEN.load(std::sync::atomic::Ordering::Acquire);
    if DEFAULT_SEEN.try_with(|s| s.get()).unwrap_or(gen) != gen {
        adopt_default(gen);
    }
}

#[cold]
#[inline(never)]
fn adopt_default(gen: u64) {
    let _internal = crate::reentrancy::Internal::enter();
    // A thread in teardown keeps what it has.
    if !arm_exit() {
        return;
    }
    let _ = DEFAULT_SEEN.try_with(|s| s.set(gen));
    let group = default_group().filter(|g| !g.is_root());
    // A removed default (its hierarchy was dropped) bills where its
    // context does now: the live ancestor.
    let group = group.map(|g| GroupInner::live_owner(&g));
    drop(set(group.filter(|g| !g.is_root())));
}

/// The allocator's hook for a change of the calling thread's context (the
/// slab layer's heap follows it), registered from above.
static ON_SWITCH: std::sync::atomic::AtomicPtr<()> =
    std::sync::atomic::AtomicPtr::new(ptr::null_mut());

/// Register `hook`, called by [`set`] with the thread's new context (null:
/// the root) after every change of its group.
pub(crate) fn on_switch(hook: fn(*const KmemContext)) {
    ON_SWITCH.store(hook as *mut (), std::sync::atomic::Ordering::Release);
}

/// Make `group` (`None`: the root) the calling thread's group; returns the
/// reference to the group it was in. A no-op returning `None` during thread
/// teardown, once the cells are gone.
pub(crate) fn set(group: Option<Arc<GroupInner>>) -> Option<Arc<GroupInner>> {
    if group.is_some() {
        register();
    }
    let ctx = group
        .as_ref()
        .and_then(|g| g.ctx.as_ref())
        .map_or(ptr::null(), |c| c.as_ptr());
    let new = group.map_or(ptr::null(), Arc::into_raw);
    let old = CURRENT.try_with(|c| c.replace(new)).unwrap_or(ptr::null());
    let hook = ON_SWITCH.load(std::sync::atomic::Ordering::Acquire);
    if !hook.is_null() {
        // SAFETY: a non-null ON_SWITCH was stored by `on_switch` from a
        // `fn(*const KmemContext)`.
        let hook: fn(*const KmemContext) = unsafe { std::mem::transmute(hook) };
        hook(ctx);
    }
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

/// A counted reference to the calling thread's group's kmem context, `None`
/// in the root: without touching the group's count.
#[inline]
pub(crate) fn current_context() -> Option<crate::group::kmem_context::CtxRef> {
    let p = CURRENT.try_with(|c| c.get()).unwrap_or(ptr::null());
    // SAFETY: CURRENT holds a counted reference (Arc::into_raw) that only
    // this thread releases, by `set`; nothing between this read and the
    // clone below calls `set` (a field read and a context clone, which only
    // counts), so the group is alive for both.
    let g = unsafe { p.as_ref() }?;
    g.ctx.clone()
}
