//! Waiting for a group's `memory.events` to change.
//!
//! An event is counted inside charge paths, possibly inside the global
//! allocator, where no user code may run and no lock of a waiter may be
//! taken. So counting only raises a flag and wakes the deferred worker (both
//! read statics only); the worker then notifies every watch, outside the
//! allocator. Changes are coalesced: a watch reports the counters as they
//! are when it looks, once per change it did not see yet.

use crate::group::stats::{Event, EVENT_NAMES};
use crate::group::GroupInner;
use crate::sync::Arc as GroupArc;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::*};
// Watches are not part of the loom models: std's Arc, Weak and locks.
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// A group's `memory.events` counters (`memory.events.local` for
/// [`Group::local_events`](crate::Group::local_events)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MemoryEvents {
    /// Reclaim took usage protected by `memory.low` (S13).
    pub low: u64,
    /// A charge went over `memory.high`.
    pub high: u64,
    /// A charge hit `memory.max`.
    pub max: u64,
    /// A charge failed after reclaim (or a `memory.max` write could not
    /// reclaim down to it).
    pub oom: u64,
    /// The OOM killer killed a killable unit here (S14).
    pub oom_kill: u64,
    /// The OOM killer killed this group's subtree for its
    /// `memory.oom.group` (S14).
    pub oom_group_kill: u64,
}

impl MemoryEvents {
    pub(crate) fn read(g: &GroupInner, local: bool) -> MemoryEvents {
        let get = |e: Event| {
            (if local {
                g.events.local(e)
            } else {
                g.events.hier(e)
            }) as u64
        };
        MemoryEvents {
            low: get(Event::Low),
            high: get(Event::High),
            max: get(Event::Max),
            oom: get(Event::Oom),
            oom_kill: get(Event::OomKill),
            oom_group_kill: get(Event::OomGroupKill),
        }
    }

    /// The counters as `memory.events` prints them: `(key, value)` in the
    /// kernel's order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        EVENT_NAMES.iter().map(move |&(e, name)| {
            let v = match e {
                Event::Low => self.low,
                Event::High => self.high,
                Event::Max => self.max,
                Event::Oom => self.oom,
                Event::OomKill => self.oom_kill,
                Event::OomGroupKill => self.oom_group_kill,
            };
            (name, v)
        })
    }
}

/// Set by [`note_event`], taken by [`deliver`].
static PENDING: AtomicBool = AtomicBool::new(false);

/// Every watch made so far; dropped ones are pruned as deliveries find them.
static WATCHES: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// An event was counted: have the deferred worker notify the watches.
/// Reads and writes statics only; never blocks, never allocates.
pub(crate) fn note_event() {
    #[cfg(not(loom))]
    if !PENDING.swap(true, AcqRel) {
        crate::group::deferred::wake();
    }
}

/// Notify every watch if an event was counted since the last call. Run by
/// the deferred worker, never inside the allocator.
pub(crate) fn deliver() {
    if !PENDING.swap(false, AcqRel) {
        return;
    }
    let watches: Vec<Arc<Shared>> = {
        let mut list = crate::sync::lock_std(&WATCHES);
        list.retain(|w| w.strong_count() > 0);
        list.iter().filter_map(Weak::upgrade).collect()
    };
    let mut wakers = Vec::new();
    for w in &watches {
        let mut state = w.state.lock().unwrap_or_else(|e| e.into_inner());
        state.notified = true;
        wakers.extend(state.waker.take());
        drop(state);
        w.cv.notify_all();
    }
    // Outside every lock: a waker may run a runtime's scheduling code. One
    // that panics does not keep the others from being woken.
    for w in wakers {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.wake()));
    }
}

struct Shared {
    group: GroupArc<GroupInner>,
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Default)]
struct State {
    notified: bool,
    waker: Option<Waker>,
}

/// A subscription to one group's `memory.events` (hierarchical): wakes when
/// they change, coalescing changes that come faster than it looks. Usable
/// from plain threads ([`wait_timeout`](Self::wait_timeout)) and from async
/// code of any runtime ([`changed`](Self::changed), or as a
/// `futures_core::Stream` of [`MemoryEvents`]). Made by
/// [`Group::watch_events`](crate::Group::watch_events).
///
/// ```
/// use std::time::Duration;
///
/// let h = memcg::Hierarchy::new();
/// let g = h.create("/tenant").unwrap();
/// g.write("memory.max", "8K").unwrap();
/// let mut watch = g.watch_events();
/// assert_eq!(watch.wait_timeout(Duration::from_millis(10)), None);
/// let _in_g = g.enter().unwrap();
/// assert!(memcg::KmemPages::alloc(64 * 1024).is_err()); // counts max and oom
/// let seen = watch.wait_timeout(Duration::from_secs(10)).unwrap();
/// assert_eq!((seen.max, seen.oom), (1, 1));
/// ```
pub struct EventWatch {
    shared: Arc<Shared>,
    seen: MemoryEvents,
}

impl std::fmt::Debug for EventWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWatch")
            .field("group", &self.shared.group.path)
            .field("seen", &self.seen)
            .finish()
    }
}

impl EventWatch {
    /// Watch `group`, starting from its counters now.
    pub(crate) fn new(group: GroupArc<GroupInner>) -> EventWatch {
        let _internal = crate::reentrancy::Internal::enter();
        let seen = MemoryEvents::read(&group, false);
        let shared = Arc::new(Shared {
            group,
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        });
        crate::sync::lock_std(&WATCHES).push(Arc::downgrade(&shared));
        EventWatch { shared, seen }
    }

    /// The counters as last reported (or as they were when the watch began).
    pub fn seen(&self) -> MemoryEvents {
        self.seen
    }

    /// The counters now.
    pub fn current(&self) -> MemoryEvents {
        MemoryEvents::read(&self.shared.group, false)
    }

    /// The counters, if they changed since last reported.
    fn take_change(&mut self) -> Option<MemoryEvents> {
        let now = self.current();
        (now != self.seen).then(|| {
            self.seen = now;
            now
        })
    }

    /// Block until the counters change, at most `timeout`; the new counters,
    /// or `None` if they did not change in time.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<MemoryEvents> {
        let deadline = Instant::now() + timeout;
        let shared = self.shared.clone();
        let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            // Read under the lock: a delivery after this read notifies us
            // after we wait (it takes the lock first).
            state.notified = false;
            if let Some(now) = self.take_change() {
                return Some(now);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state = shared
                .cv
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Block until the counters change; the new counters.
    pub fn wait(&mut self) -> MemoryEvents {
        loop {
            if let Some(now) = self.wait_timeout(Duration::from_secs(3600)) {
                return now;
            }
        }
    }

    /// Poll for a change: `Ready` with the new counters, or `Pending` with
    /// the task woken at the next event.
    pub fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<MemoryEvents> {
        let shared = self.shared.clone();
        let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        state.notified = false;
        if let Some(now) = self.take_change() {
            return Poll::Ready(now);
        }
        match &state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// A future of the next change: resolves to the new counters.
    pub fn changed(&mut self) -> Changed<'_> {
        Changed { watch: self }
    }
}

/// The future of [`EventWatch::changed`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Changed<'a> {
    watch: &'a mut EventWatch,
}

impl Future for Changed<'_> {
    type Output = MemoryEvents;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<MemoryEvents> {
        self.watch.poll_changed(cx)
    }
}

impl futures_core::Stream for EventWatch {
    type Item = MemoryEvents;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<MemoryEvents>> {
        self.poll_changed(cx).map(Some)
    }
}
