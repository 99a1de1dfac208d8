//! Async tasks that carry their group (S12).
//!
//! [`FutureExt::in_group`] binds a future (or a stream) to a group: every
//! poll, and the drop of the inner future, runs with the polling thread
//! charging that group, whichever worker thread it is; after each poll the
//! worker's own group is restored (as `tracing::Instrument` does with
//! spans). It works with any runtime, since it only wraps `poll`.
//!
//! The crate docs show it with tokio, rayon and std threads.
//!
//! Exact numbers on a server: a worker keeps, in its object stock, less
//! than a page pre-charged for the last group whose objects it allocated
//! or freed (as the kernel's per-CPU `obj_stock`), also when the free ran
//! outside the task's scope (hyper drops a response body in its
//! connection task). Read `memory.current` exactly after calling
//! [`drain_stocks`](crate::drain_stocks) on the workers, e.g. from tokio's
//! `Builder::on_thread_park`. And what a task's poll hands to a longer-lived
//! owner stays charged to the task's group while it lives: hyper keeps a
//! connection's last response header map to parse the next request into,
//! so build response headers outside the scope if that matters.

use crate::group::GroupInner;
use crate::interface::hierarchy::Group;
use crate::sync::Arc;
use crate::thread::task::Scope;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pin_project_lite::pin_project! {
    /// A future (or stream) bound to a group: see [`FutureExt::in_group`].
    /// `Send` when the inner future is.
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct InGroup<F> {
        // `None` once dropped in place, under the group.
        #[pin]
        inner: Option<F>,
        group: Group,
        // memory.high throttling under way: not polled before it ends.
        throttled: Option<Throttle>,
    }

    impl<F> PinnedDrop for InGroup<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if let Some(t) = this.throttled.take() {
                t.group.stall(-1);
            }
            {
                let _scope = Scope::enter(&this.group.inner);
                // Drops the inner future in place: its frees run in the group.
                this.inner.set(None);
            }
            crate::group::kill::count_bound(&this.group.inner, -1);
        }
    }
}

/// A bound future's `memory.high` penalty: until when, and the group whose
/// `memory.pressure` counts the stall.
struct Throttle {
    until: Instant,
    group: Arc<GroupInner>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("until", &self.until)
            .field("group", &self.group.path)
            .finish()
    }
}

/// Before a poll: whether a throttle (this future's, or a debt its group
/// owes) still holds it back; if so the task is woken when it ends.
fn held_back(throttled: &mut Option<Throttle>, group: &Arc<GroupInner>, cx: &Context<'_>) -> bool {
    if throttled.is_none() {
        let debt = group
            .throttle_debt_ms
            .swap(0, crate::sync::Ordering::Relaxed);
        if debt > 0 {
            start_throttle(throttled, group.clone(), Duration::from_millis(debt), cx);
        }
    }
    let Some(t) = throttled else { return false };
    if Instant::now() < t.until {
        timer::wake_at(t.until, cx.waker().clone());
        return true;
    }
    t.group.stall(-1);
    *throttled = None;
    false
}

fn start_throttle(
    throttled: &mut Option<Throttle>,
    group: Arc<GroupInner>,
    delay: Duration,
    cx: &Context<'_>,
) {
    group.stall(1);
    let until = Instant::now() + delay;
    timer::wake_at(until, cx.waker().clone());
    *throttled = Some(Throttle { until, group });
}

/// After a poll in the group: what the poll owes for charging over
/// `memory.high` (S13's throttling, never a sleep on a runtime worker):
/// a pending future is held back until the penalty ends; one that is done
/// leaves the penalty to its group's next bound poll.
fn after_poll(throttled: &mut Option<Throttle>, pending: bool, cx: &Context<'_>) {
    let Some((g, delay)) = crate::thread::task::over_high_delay() else {
        return;
    };
    if delay.is_zero() {
        return;
    }
    if pending {
        start_throttle(throttled, g, delay, cx);
    } else {
        g.throttle_debt_ms
            .fetch_add(delay.as_millis() as u64, crate::sync::Ordering::Relaxed);
    }
}

/// In the child of `fork()`: the throttling timer thread did not come
/// along; the next throttled future starts another.
#[cfg(not(loom))]
pub(crate) fn after_fork() {
    timer::after_fork();
}

/// The wake-ups of throttled futures: one thread of memcg's, started on
/// first use (and again in the child of a fork), that wakes each at its
/// time. Its locks are taken inside the fork gate, for short sections: the
/// thread sleeps parked, holding none.
mod timer {
    use std::sync::Mutex;
    use std::task::Waker;
    use std::thread::Thread;
    use std::time::Instant;

    static QUEUE: Mutex<Vec<(Instant, Waker)>> = Mutex::new(Vec::new());
    /// The timer thread, once started.
    static THREAD: Mutex<Option<Thread>> = Mutex::new(None);

    pub(super) fn wake_at(at: Instant, waker: Waker) {
        let _internal = crate::reentrancy::Internal::enter();
        crate::sync::lock_std(&QUEUE).push((at, waker));
        let mut thread = crate::sync::lock_std(&THREAD);
        if let Some(t) = &*thread {
            t.unpark();
            return;
        }
        match std::thread::Builder::new()
            .name("memcg-throttle".into())
            .spawn(run)
        {
            Ok(handle) => *thread = Some(handle.thread().clone()),
            Err(_) => {
                // No thread: wake at once (the task polls again and waits
                // out the rest of its penalty then).
                drop(thread);
                let due: Vec<Waker> = crate::sync::lock_std(&QUEUE)
                    .drain(..)
                    .map(|(_, w)| w)
                    .collect();
                due.into_iter().for_each(Waker::wake);
            }
        }
    }

    #[cfg(not(loom))]
    pub(super) fn after_fork() {
        *crate::sync::lock_std(&THREAD) = None;
    }

    fn run() {
        let _internal = crate::reentrancy::Internal::enter();
        loop {
            let now = Instant::now();
            let (due, next) = {
                let mut q = crate::sync::lock_std(&QUEUE);
                let mut due = Vec::new();
                q.retain(|(at, w)| {
                    if *at <= now {
                        due.push(w.clone());
                        false
                    } else {
                        true
                    }
                });
                (due, q.iter().map(|(at, _)| *at).min())
            };
            if !due.is_empty() {
                for w in due {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.wake()));
                }
                continue;
            }
            // A wake_at after the queue was read unparks us: the park
            // returns at once.
            match next {
                Some(next) => std::thread::park_timeout(next.saturating_duration_since(now)),
                None => std::thread::park(),
            }
        }
    }
}

impl<F> InGroup<F> {
    /// The group the future is bound to.
    pub fn group(&self) -> &Group {
        &self.group
    }

    /// Drop the inner value now, inside the group (a kill); a no-op once
    /// dropped.
    pub(crate) fn cancel(self: Pin<&mut Self>) {
        let mut this = self.project();
        if this.inner.is_some() {
            let _scope = Scope::enter(&this.group.inner);
            this.inner.set(None);
        }
    }

    /// Whether the inner value is still there.
    pub(crate) fn is_live(&self) -> bool {
        self.inner.is_some()
    }
}

/// Bind futures and streams to a group (S12). Implemented for every type;
/// [`InGroup`] is a `Future` when the inner value is one, and a
/// `futures_core::Stream` when it is one.
pub trait FutureExt: Sized {
    /// Charge every poll of `self`, and its drop, to `group`, on whatever
    /// thread polls it. The polling thread's own group is restored after
    /// each poll. A removed group's future charges where the group's kmem
    /// context bills (its live ancestor, S5); a bound future does not make
    /// the group busy.
    fn in_group(self, group: Group) -> InGroup<Self> {
        crate::group::kill::count_bound(&group.inner, 1);
        InGroup {
            inner: Some(self),
            group,
            throttled: None,
        }
    }

    /// [`in_group`](Self::in_group), and killable (S14): `cgroup.kill` on
    /// the group or an ancestor, or the OOM killer, wakes the future, and
    /// its next poll drops the inner future inside the group and completes
    /// with `Err(Killed)` (a stream yields one `Err(Killed)`, then ends).
    /// Otherwise the output is `Ok` of the inner one. Like every bound
    /// future it is not polled while the group is frozen (S15); a kill
    /// overrides a freeze.
    ///
    /// ```
    /// use memcg::FutureExt;
    ///
    /// let h = memcg::Hierarchy::new();
    /// let tenant = h.create("/tenant").unwrap();
    /// let request = std::future::pending::<()>().in_group_killable(tenant.clone());
    /// tenant.kill();
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// assert_eq!(rt.block_on(request), Err(memcg::Killed));
    /// ```
    fn in_group_killable(self, group: Group) -> crate::thread::killable::Killable<Self> {
        crate::thread::killable::Killable::new(self.in_group(group))
    }
}

impl<T: Sized> FutureExt for T {}

impl<F> InGroup<F> {
    /// One poll of the inner value in the group: held back while throttled,
    /// then `poll` under the group's scope, then the throttling it owes
    /// (`pending`: whether the inner value will be polled again).
    fn poll_in_group<R>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        poll: impl FnOnce(Pin<&mut F>, &mut Context<'_>) -> Poll<R>,
        pending: impl FnOnce(&Poll<R>) -> bool,
    ) -> Poll<R> {
        let this = self.project();
        // S15: not polled while frozen; the thaw wakes it.
        if crate::group::kill::is_frozen(&this.group.inner)
            && crate::group::kill::hold_for_thaw(&this.group.inner, cx.waker())
        {
            return Poll::Pending;
        }
        if held_back(this.throttled, &this.group.inner, cx) {
            return Poll::Pending;
        }
        let result = {
            let _scope = Scope::enter(&this.group.inner);
            let inner = this
                .inner
                .as_pin_mut()
                .expect("an InGroup is polled only before it is dropped");
            poll(inner, cx)
        };
        after_poll(this.throttled, pending(&result), cx);
        result
    }
}

impl<F: Future> Future for InGroup<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.poll_in_group(cx, F::poll, Poll::is_pending)
    }
}

impl<S: futures_core::Stream> futures_core::Stream for InGroup<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        // A stream that yielded is held back before its next item.
        self.poll_in_group(cx, S::poll_next, |r| !matches!(r, Poll::Ready(None)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.as_ref().map_or((0, Some(0)), |s| s.size_hint())
    }
}
