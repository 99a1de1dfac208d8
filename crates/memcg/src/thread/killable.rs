//! Killable futures and threads (S14), and the safe point where threads
//! learn of a kill or wait out a freeze (S15).
//!
//! A Rust task cannot be killed from outside, but a future can be dropped
//! at a poll boundary and a thread can be told at a safe point: a kill
//! (`cgroup.kill`, the OOM killer) only marks the unit and wakes it
//! ([`crate::group::kill`]); the [`Killable`] future drops its inner future
//! inside its group at its next poll, and a thread sees `Err(Killed)` at its
//! next [`check_killed`].

use crate::group::kill::{self, Killed, Unit};
use crate::group::GroupInner;
use crate::interface::hierarchy::Group;
use crate::sync::Arc;
use crate::thread::future::InGroup;
use crate::thread::task::EnterGuard;
use crate::Result;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    /// A future (or stream) bound to a group and killable: see
    /// [`FutureExt::in_group_killable`](crate::FutureExt::in_group_killable).
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct Killable<F> {
        #[pin]
        inner: InGroup<F>,
        unit: Arc<Unit>,
        // Completed, or killed and reported: polled no more.
        done: bool,
    }

    impl<F> PinnedDrop for Killable<F> {
        fn drop(this: Pin<&mut Self>) {
            // The inner future drops (in its group) with `inner`, after this.
            this.unit.end();
        }
    }
}

impl<F> Killable<F> {
    pub(crate) fn new(inner: InGroup<F>) -> Killable<F> {
        let unit = Unit::register(&inner.group().inner);
        Killable {
            inner,
            unit,
            done: false,
        }
    }

    /// The group the future is bound to.
    pub fn group(&self) -> &Group {
        self.inner.group()
    }

    /// Whether a kill reached it (it may not have been polled since).
    pub fn is_killed(&self) -> bool {
        self.unit.is_killed()
    }

    /// Before a poll: `true` if the unit was killed, in which case the inner
    /// value was dropped inside its group and the unit ended. Otherwise the
    /// poll's waker is kept for a kill to wake.
    fn killed_now(self: Pin<&mut Self>, cx: &Context<'_>) -> bool {
        let this = self.project();
        if !this.unit.is_killed() {
            this.unit.set_waker(cx.waker());
            // A kill between the check and the waker's keeping took the old
            // waker (or none): look again now that the new one is kept.
            if !this.unit.is_killed() {
                return false;
            }
        }
        this.inner.cancel();
        this.unit.end();
        *this.done = true;
        true
    }
}

impl<F: Future> Future for Killable<F> {
    type Output = std::result::Result<F::Output, Killed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.done {
            // Polled after completion: stay pending rather than panic.
            return Poll::Pending;
        }
        if self.as_mut().killed_now(cx) {
            return Poll::Ready(Err(Killed));
        }
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        *this.done = true;
        this.unit.end();
        Poll::Ready(Ok(out))
    }
}

impl<S: futures_core::Stream> futures_core::Stream for Killable<S> {
    type Item = std::result::Result<S::Item, Killed>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.as_mut().killed_now(cx) {
            return Poll::Ready(Some(Err(Killed)));
        }
        let this = self.project();
        match std::task::ready!(this.inner.poll_next(cx)) {
            Some(item) => Poll::Ready(Some(Ok(item))),
            None => {
                *this.done = true;
                this.unit.end();
                Poll::Ready(None)
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done || !self.inner.is_live() {
            return (0, Some(0));
        }
        let (lo, hi) = self.inner.size_hint();
        (lo, hi.and_then(|h| h.checked_add(1)))
    }
}

thread_local! {
    /// The calling thread's killable unit, and the group it was attached
    /// with: a kill counts while the thread stays in that group.
    static KILLABLE: RefCell<Option<(Arc<Unit>, Arc<GroupInner>)>> = const { RefCell::new(None) };
}

/// A thread's safe point for S14 and S15: `Err(Killed)` if the thread
/// entered its group with [`Group::enter_killable`] and a kill reached it
/// (`cgroup.kill` on the group or an ancestor, or the OOM killer), for as
/// long as it stays in that group; leaving the scope or moving clears it.
/// While the thread's group is frozen, it waits here until thawed (a kill
/// ends the wait). Cheap when neither applies: call it between units of
/// work.
///
/// ```
/// let h = memcg::Hierarchy::new();
/// let job = h.create("/job").unwrap();
/// let _in = job.enter_killable().unwrap();
/// assert!(memcg::check_killed().is_ok());
/// job.kill();
/// assert_eq!(memcg::check_killed(), Err(memcg::Killed));
/// ```
pub fn check_killed() -> std::result::Result<(), Killed> {
    if let Some(g) = crate::accounting::current::current_group() {
        kill::wait_while_frozen(&g, killed_here);
    }
    if killed_here() {
        return Err(Killed);
    }
    Ok(())
}

/// Whether the calling thread is a killable unit of the group it is in,
/// and was killed.
pub(crate) fn killed_here() -> bool {
    let here = crate::accounting::current::current_ptr();
    KILLABLE
        .try_with(|k| {
            k.borrow()
                .as_ref()
                .is_some_and(|(u, g)| std::ptr::eq(Arc::as_ptr(g), here) && u.is_killed())
        })
        .unwrap_or(false)
}

/// Keeps a thread in a group as a killable unit; made by
/// [`Group::enter_killable`]. Dropping it ends the unit and moves the
/// thread back.
#[must_use = "the thread leaves the group when the guard is dropped"]
pub struct KillableGuard {
    // Dropped first: the unit ends while the thread is still in the group.
    previous: Option<(Arc<Unit>, Arc<GroupInner>)>,
    unit: Arc<Unit>,
    _enter: EnterGuard,
}

impl std::fmt::Debug for KillableGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KillableGuard")
            .field("killed", &self.unit.is_killed())
            .finish()
    }
}

impl KillableGuard {
    /// Whether a kill reached this thread's unit, without waiting (unlike
    /// [`check_killed`], which waits out a freeze).
    pub fn is_killed(&self) -> bool {
        self.unit.is_killed()
    }
}

impl Drop for KillableGuard {
    fn drop(&mut self) {
        self.unit.end();
        let previous = self.previous.take();
        let _ = KILLABLE.try_with(|k| *k.borrow_mut() = previous);
    }
}

impl Group {
    /// [`enter`](Group::enter), as a killable unit (S14): `cgroup.kill` on
    /// this group or an ancestor, or the OOM killer, makes the thread's
    /// [`check_killed`] return `Err(Killed)` while it stays here.
    pub fn enter_killable(&self) -> Result<KillableGuard> {
        let enter = self.enter()?;
        let group =
            crate::accounting::current::current_group().unwrap_or_else(|| self.inner.clone());
        let unit = Unit::register(&group);
        let previous = KILLABLE
            .try_with(|k| k.borrow_mut().replace((unit.clone(), group)))
            .ok()
            .flatten();
        Ok(KillableGuard {
            previous,
            unit,
            _enter: enter,
        })
    }

    /// Kill every killable unit bound or attached to this group's subtree
    /// now, as writing `1` to `cgroup.kill` (S14). Returns how many.
    pub fn kill(&self) -> usize {
        kill::kill_subtree(&self.inner)
    }

    /// Freeze (`true`) or thaw this group's subtree, as writing
    /// `cgroup.freeze` (S15).
    pub fn freeze(&self, frozen: bool) {
        kill::freeze(&self.inner, frozen)
    }
}
