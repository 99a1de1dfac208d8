//! Tasks: threads attached to groups.
//!
//! A thread's current group lives in [`current`](crate::accounting::current), read by the
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

static NEXT_TASK_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Thread exit ([`Exit::Tasks`](crate::lifecycle::Exit::Tasks)): leave the
/// group the thread is attached to, so it can be removed.
fn on_exit() {
    if let Some(old) = crate::accounting::current::set(None) {
        release(old);
    }
}

/// The thread now holds a group it must leave at exit.
fn arm_exit() {
    #[cfg(not(loom))]
    crate::lifecycle::arm_exit(crate::lifecycle::Exit::Tasks, on_exit);
}

fn task_id() -> u64 {
    TASK_ID.with(|t| {
        if t.get() == 0 {
            t.set(new_task_id());
        }
        t.get()
    })
}

/// In the child of `fork()`, where the calling thread is the only one (as in
/// Linux): the threads that vanished leave their groups, so those can be
/// removed, and drop their group references. Reservations of threads that
/// were being spawned go too: those threads never start in the child.
#[cfg(not(loom))]
pub(crate) fn after_fork() {
    crate::accounting::current::release_vanished();
    let own = TASK_ID.try_with(|t| t.get()).unwrap_or(0);
    for common in crate::group::deferred::hierarchies() {
        let groups: Vec<Arc<GroupInner>> = common.tree.lock().groups.values().cloned().collect();
        for g in groups {
            let gone = {
                let mut tasks = g.tasks.lock();
                let before = tasks.len();
                tasks.retain(|t| t.id == own);
                before - tasks.len()
            };
            for _ in 0..gone {
                g.count_task(-1);
            }
        }
    }
}

/// The thread left `g`: take it off the group's task list.
fn release(g: Arc<GroupInner>) {
    let id = task_id();
    let mut tasks = g.tasks.lock();
    if let Some(i) = tasks.iter().position(|t| t.id == id) {
        tasks.remove(i);
        g.count_task(-1);
    }
}

/// Where a thread was before a move: its group (`None`: the root) and
/// whether it followed the default group (S12).
pub(crate) struct Place {
    group: Option<Arc<GroupInner>>,
    follows_default: bool,
}

/// Where the calling thread is now.
pub(crate) fn place() -> Place {
    crate::accounting::current::refresh_default();
    Place {
        group: crate::accounting::current::current_group(),
        follows_default: crate::accounting::current::follows_default(),
    }
}

/// Put the calling thread back at `place`. A group removed meanwhile (it had
/// no task while we were away from it) sends the thread to the root.
pub(crate) fn restore(place: &Place) {
    if place.follows_default {
        // Leave for the root, then follow the default group again.
        let _ = switch(None);
        crate::accounting::current::set_follows_default(true);
        crate::accounting::current::refresh_default();
    } else if switch(place.group.as_ref()).is_err() {
        let _ = switch(None);
    }
}

/// Move the calling thread into `group` (`None`: the root), returning the group
/// it was in. Fails if `group` was removed. The thread no longer follows
/// the default group.
pub(crate) fn switch(group: Option<&Arc<GroupInner>>) -> Result<Option<Arc<GroupInner>>> {
    let _internal = crate::reentrancy::Internal::enter();
    crate::accounting::current::refresh_default();
    let previous = crate::accounting::current::current_group();
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
        g.count_task(1);
        arm_exit();
    }
    crate::accounting::current::set_follows_default(false);
    let new = group.map_or(ptr::null(), Arc::as_ptr);
    let old = crate::accounting::current::set(group.cloned()).map_or(ptr::null(), |o| {
        let p = Arc::as_ptr(&o);
        release(o);
        p
    });
    // The thread's object stock and its isolated caches' slabs belong to the
    // group it leaves: hand them back now, so that group's memory is exact,
    // reclaimable, and seen by its removal. Shared slabs stay.
    if old != new {
        crate::alloc::slab::heap::leave_group();
    }
    Ok(previous)
}

/// A guard that keeps the calling thread in a group; dropping it moves the
/// thread back to where it was before (a group, the root, or following the
/// default group). Made by [`Group::enter`](crate::Group::enter).
#[must_use = "the thread leaves the group when the guard is dropped"]
pub struct EnterGuard {
    previous: Place,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl EnterGuard {
    pub(crate) fn new(previous: Place) -> EnterGuard {
        EnterGuard {
            previous,
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        restore(&self.previous);
        // Leaving a scope is a safe point for memory.high throttling.
        throttle_point();
    }
}

/// A task id for a thread not started yet: it takes it over at its start
/// ([`start_reserved`]), so its entry can be listed before it runs.
fn new_task_id() -> u64 {
    NEXT_TASK_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// List a thread about to start in `g`'s tasks, so that `g` cannot be
/// removed before the thread runs (it is busy from now on). Fails if `g` was
/// removed. Returns the thread's task id.
pub(crate) fn reserve(g: &Arc<GroupInner>, name: Option<&str>) -> Result<u64> {
    let _internal = crate::reentrancy::Internal::enter();
    let _tree = g.common.tree.lock();
    if g.is_dying() {
        return Err(Error::NotFound(format!(
            "{} (removed; spawn into a live group)",
            g.path
        )));
    }
    let id = new_task_id();
    g.tasks.lock().push(TaskEntry {
        id,
        name: name.map_or_else(|| format!("spawned-{id}"), str::to_string),
    });
    g.count_task(1);
    Ok(id)
}

/// Take back a reservation whose thread never started.
pub(crate) fn unreserve(g: &Arc<GroupInner>, id: u64) {
    let _internal = crate::reentrancy::Internal::enter();
    let mut tasks = g.tasks.lock();
    if let Some(i) = tasks.iter().position(|t| t.id == id) {
        tasks.remove(i);
        g.count_task(-1);
    }
}

/// At the start of a thread spawned into `g` with the reservation `id`:
/// take the id and enter the group. Runs on the new thread.
pub(crate) fn start_reserved(g: Arc<GroupInner>, id: u64) {
    let _internal = crate::reentrancy::Internal::enter();
    TASK_ID.with(|t| t.set(id));
    if let Some(name) = std::thread::current().name() {
        if let Some(t) = g.tasks.lock().iter_mut().find(|t| t.id == id) {
            t.name = name.to_string();
        }
    }
    arm_exit();
    crate::accounting::current::set_follows_default(false);
    drop(crate::accounting::current::set(Some(g)));
}

/// At the start of a thread spawned by a thread attached to the root: stay
/// there, not following the default group.
pub(crate) fn start_in_root() {
    crate::accounting::current::set_follows_default(false);
}

/// Where a spawned thread starts: with its parent (see [`Place`]).
pub(crate) enum Start {
    /// Follow the default group, as a thread never attached.
    Default,
    /// The root, not following the default.
    Root,
    /// A group, with the task id reserved there.
    Group(Arc<GroupInner>, u64),
}

impl Start {
    /// Where a thread spawned by the calling thread starts (S12): where the
    /// calling thread is. A group removed under it (its hierarchy was
    /// dropped) gives way to the live group its context bills.
    pub(crate) fn inherit(name: Option<&str>) -> Start {
        let here = place();
        if here.follows_default {
            return Start::Default;
        }
        let Some(mut g) = here.group else {
            return Start::Root;
        };
        loop {
            match reserve(&g, name) {
                Ok(id) => return Start::Group(g, id),
                Err(_) => match g.charges_owner() {
                    Some(owner) if !owner.is_root() => g = owner,
                    _ => return Start::Root,
                },
            }
        }
    }

    /// Start in `g` (the root: [`Start::Root`]); fails if `g` was removed.
    pub(crate) fn into(g: &Arc<GroupInner>, name: Option<&str>) -> Result<Start> {
        if g.is_root() {
            return Ok(Start::Root);
        }
        Ok(Start::Group(g.clone(), reserve(g, name)?))
    }

    /// On the new thread, before its closure runs.
    pub(crate) fn apply(self) {
        match self {
            Start::Default => {}
            Start::Root => start_in_root(),
            Start::Group(g, id) => start_reserved(g, id),
        }
    }

    /// The thread could not be started: take the reservation back.
    pub(crate) fn cancel(self) {
        if let Start::Group(g, id) = self {
            unreserve(&g, id);
        }
    }
}

/// What a poll (or drop) of a future bound to a group runs under: the
/// calling thread charges that group until the scope ends, then returns to
/// where it was. Lighter than [`switch`]: the future is not listed in the
/// group's tasks (a bound future does not keep its group from removal; after
/// removal it charges where the group's context bills, S5).
pub(crate) struct Scope {
    previous: Option<Option<Arc<GroupInner>>>,
    follows_default: bool,
    entered: *const GroupInner,
}

impl Scope {
    /// Enter `g` on the calling thread.
    pub(crate) fn enter(g: &Arc<GroupInner>) -> Scope {
        let _internal = crate::reentrancy::Internal::enter();
        let target = Some(GroupInner::live_owner(g)).filter(|o| !o.is_root());
        let entered = target.as_ref().map_or(ptr::null(), Arc::as_ptr);
        let follows_default = crate::accounting::current::follows_default();
        if crate::accounting::current::current_ptr() == entered {
            // Already there (a nested scope, or a worker attached to `g`).
            return Scope {
                previous: None,
                follows_default,
                entered,
            };
        }
        crate::accounting::current::keep_follows_default(false);
        Scope {
            previous: Some(crate::accounting::current::set(target)),
            follows_default,
            entered,
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let Some(previous) = self.previous.take() else {
            return;
        };
        let _internal = crate::reentrancy::Internal::enter();
        if let Some(left) = crate::accounting::current::set(previous) {
            if !ptr::eq(Arc::as_ptr(&left), self.entered) {
                // The future attached the thread elsewhere meanwhile: that
                // group listed the thread, and no longer has it.
                release(left);
            }
        }
        crate::accounting::current::keep_follows_default(self.follows_default);
        // The thread's object stock keeps what it pre-charged for the group
        // (less than a page), as the kernel's per-CPU obj_stock does across
        // task switches: the next poll of a task of that group allocates
        // without touching a shared counter. It is handed back when the
        // thread next charges another group, drains its stocks
        // (`memcg::drain_stocks`), or exits.
    }
}

/// What the calling thread owes for charging over `memory.high`, after one
/// more reclaim of the groups over it: the group and the delay (zero if the
/// reclaim brought the penalty under 10 ms). Taken: asking again gives none.
pub(crate) fn over_high_delay() -> Option<(Arc<GroupInner>, std::time::Duration)> {
    let (g, pages) = crate::accounting::charge::take_over_high()?;
    let _internal = crate::reentrancy::Internal::enter();
    // The kernel retries reclaim before it sleeps.
    for a in g.ancestors() {
        let (usage, high) = (a.counter.usage(), a.counter.high());
        if usage > high {
            crate::reclaim::reclaim(a, usage - high);
        }
    }
    let delay = crate::accounting::charge::high_delay(&g, pages);
    Some((g, delay))
}

/// A safe point: if the calling thread charged over a group's
/// `memory.high` and reclaim could not bring the group back under it, the
/// thread sleeps here as the kernel's over-high penalty (growing with the
/// square of the overage, at most 2 s; nothing under 10 ms), counted as a
/// memory stall in the group's `memory.pressure`. Returns the time slept.
///
/// memcg calls it itself where a thread may wait: when an
/// [`EnterGuard`] is dropped and after a script command; an
/// [`InGroup`](crate::InGroup) future is delayed between polls instead
/// (it returns `Pending` and is woken later: a runtime's worker never
/// sleeps). Call it in long loops that allocate without leaving a scope.
///
/// ```
/// let h = memcg::Hierarchy::new();
/// let g = h.create("/batch").unwrap();
/// g.write("memory.high", "64K").unwrap();
/// let _in_g = g.enter().unwrap();
/// // Anon pages cannot be reclaimed: the group stays over memory.high.
/// let pages: Vec<_> = (0..64)
///     .map(|_| memcg::UserPage::charge(memcg::PageKind::Anon).unwrap())
///     .collect();
/// let slept = memcg::throttle_point();
/// assert!(slept > std::time::Duration::ZERO);
/// assert!(g.read("memory.pressure").unwrap().starts_with("some avg10="));
/// # drop(pages);
/// ```
pub fn throttle_point() -> std::time::Duration {
    // S15: a frozen group's attached threads wait here until thawed.
    if let Some(g) = crate::accounting::current::current_group() {
        // A kill overrides the freeze.
        crate::group::kill::wait_while_frozen(&g, crate::thread::killable::killed_here);
    }
    let Some((g, delay)) = over_high_delay() else {
        return std::time::Duration::ZERO;
    };
    if delay.is_zero() {
        return delay;
    }
    g.stall(1);
    std::thread::sleep(delay);
    g.stall(-1);
    delay
}

/// Move the calling thread to the root group, where nothing is charged —
/// not even to a default group (see
/// [`Hierarchy::set_default_group`](crate::Hierarchy::set_default_group)).
pub fn detach() {
    let _ = switch(None);
}
