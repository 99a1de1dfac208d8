//! Killable units, `cgroup.kill`, the OOM killer and `cgroup.freeze`: the
//! group side of S14 and S15 (the kernel's `mm/oom_kill.c` memcg parts,
//! `cgroup_kill`, and the cgroup freezer).
//!
//! A *unit* is what memcg can stop: a future bound with
//! [`in_group_killable`](crate::FutureExt::in_group_killable), or a thread
//! attached with [`Group::enter_killable`](crate::Group::enter_killable). A
//! unit is listed on the group it is bound to; a kill only sets its flag
//! and wakes it, and the unit acts at its next poll or safe point. Nothing
//! is stopped inside the allocator: the OOM killer runs there (a charge
//! that failed), so its wake-ups go to the deferred worker.
//!
//! Freezing: a group's `frozen` count is the number of groups from it up
//! to the root whose `cgroup.freeze` is 1, kept under the tree lock, so a
//! poll reads one atomic. Futures held by a freeze leave their wakers on
//! their group; threads wait on one condition variable.

use crate::group::stats::Event;
use crate::group::{GroupInner, Tree};
use crate::sync::{Arc, AtomicBool, Ordering::*};
use std::sync::{Condvar, Mutex};
use std::task::Waker;
use std::time::Duration;

/// The error of a unit killed by `cgroup.kill` or the OOM killer (S14): a
/// killed future completes with `Err(Killed)`, a killed thread's
/// [`check_killed`](crate::check_killed) returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Killed;

impl std::fmt::Display for Killed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("killed by memcg (cgroup.kill or the OOM killer)")
    }
}

impl std::error::Error for Killed {}

/// One killable unit (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct Unit {
    killed: AtomicBool,
    /// The unit ended (its future dropped, its thread left): it no longer
    /// counts, and its group's list drops it at the next look.
    ended: AtomicBool,
    /// The OOM killer killed it: while it lives on, no other OOM of its
    /// domain kills.
    oom_victim: AtomicBool,
    /// A killable future's waker, from its last poll.
    waker: Mutex<Option<Waker>>,
}

impl Unit {
    /// A new unit, listed on `group`.
    pub(crate) fn register(group: &GroupInner) -> Arc<Unit> {
        let unit = Arc::new(Unit::default());
        let mut units = lock(&group.units);
        units.retain(|u| !u.ended.load(Relaxed));
        units.push(unit.clone());
        unit
    }

    pub(crate) fn is_killed(&self) -> bool {
        self.killed.load(Acquire)
    }

    /// Keep the waker of the poll under way, for a kill to wake.
    pub(crate) fn set_waker(&self, waker: &Waker) {
        let mut w = lock(&self.waker);
        if !w.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *w = Some(waker.clone());
        }
    }

    /// The unit is over; its group's list forgets it.
    pub(crate) fn end(&self) {
        self.ended.store(true, Release);
        lock(&self.waker).take();
    }

    /// Kill it, once: its waker, to wake outside any lock. Counts
    /// `oom_kill` on `group` when `oom`.
    fn kill(&self, group: &GroupInner, oom: bool) -> Option<Waker> {
        if self.ended.load(Acquire) || self.killed.swap(true, AcqRel) {
            return None;
        }
        if oom {
            self.oom_victim.store(true, Release);
            group.event(Event::OomKill);
        }
        // A thread waiting out a freeze sees the kill (under the lock it
        // waits with, so the notice cannot fall between its check and its
        // wait).
        let _l = lock(&FROZEN_THREADS.0);
        FROZEN_THREADS.1.notify_all();
        lock(&self.waker).take()
    }

    fn alive(&self) -> bool {
        !self.ended.load(Acquire)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Units of `g` itself, alive (the list pruned of ended ones).
fn units_of(g: &GroupInner) -> Vec<Arc<Unit>> {
    let mut units = lock(&g.units);
    units.retain(|u| u.alive());
    units.clone()
}

/// `g` and its online descendants.
fn subtree<'a>(
    tree: &'a Tree,
    g: &'a Arc<GroupInner>,
) -> impl Iterator<Item = &'a Arc<GroupInner>> {
    std::iter::once(g).chain(tree.descendants(&g.path))
}

fn wake_all(wakers: Vec<Waker>) {
    for w in wakers {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.wake()));
    }
}

/// `cgroup.kill`: kill every unit bound or attached to `g`'s subtree now
/// (units bound later are not). Returns how many were killed. Not for the
/// allocator: wakes the units at once.
pub(crate) fn kill_subtree(g: &Arc<GroupInner>) -> usize {
    let _internal = crate::reentrancy::Internal::enter();
    let mut wakers = Vec::new();
    let mut n = 0;
    {
        let tree = g.common.tree.lock();
        for d in subtree(&tree, g) {
            for u in units_of(d) {
                if !u.is_killed() && u.alive() {
                    n += 1;
                }
                wakers.extend(u.kill(d, false));
            }
        }
    }
    wake_all(wakers);
    n
}

/// Units killed by the OOM killer whose wake-up waits for the deferred
/// worker (the kill ran inside the allocator).
static OOM_WAKES: Mutex<Vec<Waker>> = Mutex::new(Vec::new());

/// The OOM killer (S14): a charge could not be met under the `memory.max`
/// of `domain` after reclaim; `charging` is the group that charged. Picks
/// the victim among `domain`'s subtree groups with live units of their own:
/// the largest `memory.current`, then the deepest, then `charging`. With
/// `memory.oom.group` on the victim or an ancestor up to `domain`, the
/// highest such group's subtree is killed (`oom_group_kill` on it), else
/// the victim's own units; each killed unit counts `oom_kill`. While an
/// earlier OOM victim of the subtree lives on, nobody is killed. Runs inside
/// the allocator: the victims are woken by the deferred worker.
pub(crate) fn oom_kill(domain: &Arc<GroupInner>, charging: &Arc<GroupInner>) {
    let _internal = crate::reentrancy::Internal::enter();
    let tree = domain.common.tree.lock();
    let groups: Vec<(&Arc<GroupInner>, Vec<Arc<Unit>>)> =
        subtree(&tree, domain).map(|g| (g, units_of(g))).collect();
    if groups
        .iter()
        .flat_map(|(_, us)| us)
        .any(|u| u.oom_victim.load(Acquire) && u.alive())
    {
        // The kernel waits for its victim to exit, too.
        return;
    }
    let depth = |g: &GroupInner| g.ancestors().count();
    let Some((victim, _)) = groups
        .iter()
        .filter(|(_, us)| us.iter().any(|u| !u.is_killed()))
        .max_by_key(|(g, _)| (g.counter.usage(), depth(g), Arc::ptr_eq(g, charging)))
    else {
        return;
    };
    let domain_ptr = Arc::as_ptr(domain);
    let whole = victim
        .ancestors()
        .take_while(|a| !std::ptr::eq(*a, domain_ptr))
        .chain(std::iter::once(&**domain))
        .filter(|a| a.oom_group.load(Relaxed))
        .last();
    let mut wakers = Vec::new();
    match whole {
        Some(top) => {
            top.event(Event::OomGroupKill);
            let top = groups
                .iter()
                .find(|(g, _)| std::ptr::eq(Arc::as_ptr(g), top))
                .map(|(g, _)| *g)
                .unwrap_or(victim);
            for d in subtree(&tree, top) {
                for u in units_of(d) {
                    wakers.extend(u.kill(d, true));
                }
            }
        }
        None => {
            for u in units_of(victim) {
                wakers.extend(u.kill(victim, true));
            }
        }
    }
    drop(tree);
    lock(&OOM_WAKES).extend(wakers);
    crate::group::events::note_event();
}

/// Wake the OOM killer's victims (the deferred worker, outside the
/// allocator).
pub(crate) fn deliver_oom_wakes() {
    let wakers = std::mem::take(&mut *lock(&OOM_WAKES));
    wake_all(wakers);
}

/// Threads waiting out a freeze wait here; a thaw or a kill notifies.
static FROZEN_THREADS: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());

/// `cgroup.freeze` on `g`: `frozen` 1 or 0. Every group of the subtree
/// counts the freezes above it; a thaw wakes the futures and threads it
/// held. Not for the allocator.
pub(crate) fn freeze(g: &Arc<GroupInner>, frozen: bool) {
    let _internal = crate::reentrancy::Internal::enter();
    let mut wakers = Vec::new();
    {
        let tree = g.common.tree.lock();
        if g.freeze.swap(frozen, AcqRel) == frozen {
            return;
        }
        for d in subtree(&tree, g) {
            if frozen {
                d.frozen.fetch_add(1, AcqRel);
            } else if d.frozen.fetch_sub(1, AcqRel) == 1 {
                wakers.append(&mut lock(&d.freeze_waiters));
            }
        }
    }
    if !frozen {
        let _l = lock(&FROZEN_THREADS.0);
        FROZEN_THREADS.1.notify_all();
    }
    wake_all(wakers);
}

/// Whether `g` is frozen: `cgroup.freeze` is 1 on it or an ancestor.
pub(crate) fn is_frozen(g: &GroupInner) -> bool {
    g.frozen.load(Acquire) > 0
}

/// A future bound to `g` found it frozen: leave `waker` for the thaw.
/// False if `g` thawed meanwhile (poll on).
pub(crate) fn hold_for_thaw(g: &GroupInner, waker: &Waker) -> bool {
    let mut waiters = lock(&g.freeze_waiters);
    // Checked under the waiters' lock, which a thaw takes after it lowered
    // the count: a thaw cannot slip between the check and the wait.
    if !is_frozen(g) {
        return false;
    }
    if !waiters.iter().any(|w| w.will_wake(waker)) {
        waiters.push(waker.clone());
    }
    true
}

/// A thread at a safe point in `g`: wait while `g` is frozen, unless
/// `killed` says the thread was killed (a kill overrides a freeze).
pub(crate) fn wait_while_frozen(g: &GroupInner, killed: impl Fn() -> bool) {
    if !is_frozen(g) {
        return;
    }
    let mut l = lock(&FROZEN_THREADS.0);
    while is_frozen(g) && !killed() {
        // Bounded: a thaw racing the check is seen at the next slice.
        l = FROZEN_THREADS
            .1
            .wait_timeout(l, Duration::from_millis(50))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// A new child of `parent` starts with its parent's freezes (called under
/// the tree lock, before the child is visible).
pub(crate) fn inherit(parent: &GroupInner, child: &GroupInner) {
    child.frozen.store(parent.frozen.load(Acquire), Release);
}

/// A bound future (in `g`) begins (`1`) or ends (`-1`): `cgroup.events`
/// `populated` counts them in `g` and its ancestors.
pub(crate) fn count_bound(g: &GroupInner, delta: isize) {
    for a in g.ancestors() {
        if delta > 0 {
            a.bound_hier.fetch_add(1, Relaxed);
        } else {
            a.bound_hier.fetch_sub(1, Relaxed);
        }
    }
}

/// `g` was removed (under the tree lock): its units move to the live group
/// that owns its charges, so a kill of that group's subtree still finds
/// them, and its futures are frozen no more (no thaw could reach a group
/// out of the tree): they run where their charges go.
pub(crate) fn on_removal(g: &GroupInner, owner: &GroupInner) {
    let moved = std::mem::take(&mut *lock(&g.units));
    lock(&owner.units).extend(moved.into_iter().filter(|u| u.alive()));
    g.freeze.store(false, Release);
    g.frozen.store(0, Release);
    let waiters = std::mem::take(&mut *lock(&g.freeze_waiters));
    lock(&OOM_WAKES).extend(waiters);
    crate::group::events::note_event();
    {
        let _l = lock(&FROZEN_THREADS.0);
        FROZEN_THREADS.1.notify_all();
    }
}
