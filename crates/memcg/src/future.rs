//! Layer 6: async tasks that carry their group (S12).
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

use crate::hierarchy::Group;
use crate::task::Scope;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

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
    }

    impl<F> PinnedDrop for InGroup<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            let _scope = Scope::enter(&this.group.inner);
            // Drops the inner future in place: its frees run in the group.
            this.inner.set(None);
        }
    }
}

impl<F> InGroup<F> {
    /// The group the future is bound to.
    pub fn group(&self) -> &Group {
        &self.group
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
        InGroup {
            inner: Some(self),
            group,
        }
    }
}

impl<T: Sized> FutureExt for T {}

impl<F: Future> Future for InGroup<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _scope = Scope::enter(&this.group.inner);
        this.inner
            .as_pin_mut()
            .expect("an InGroup future is polled only before it is dropped")
            .poll(cx)
    }
}

impl<S: futures_core::Stream> futures_core::Stream for InGroup<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.project();
        let _scope = Scope::enter(&this.group.inner);
        this.inner
            .as_pin_mut()
            .expect("an InGroup stream is polled only before it is dropped")
            .poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.as_ref().map_or((0, Some(0)), |s| s.size_hint())
    }
}
