//! Pressure triggers: [`Group::pressure_trigger`] and the handle it gives,
//! [`PressureTrigger`] (the kernel's triggers written to `memory.pressure`,
//! as a value). The stall accounting and the evaluation live with the
//! group (`group/pressure.rs`); this is the program's side: the checked
//! arguments, waiting from threads and from async code, and removal on drop.

use crate::error::{Error, Result};
use crate::group::pressure::{Pressure, PressureEvent, Trigger};
use crate::interface::hierarchy::Group;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The shortest window a trigger takes (the kernel's `WINDOW_MIN_US`).
const WINDOW_MIN: Duration = Duration::from_millis(500);
/// The longest window a trigger takes (the kernel's `WINDOW_MAX_US`).
const WINDOW_MAX: Duration = Duration::from_secs(10);

impl Group {
    /// A trigger on this group's `memory.pressure`: it fires when the
    /// group's `pressure` stall time (its threads' and its descendants',
    /// in reclaim and in `memory.high` throttling) within the last `window`
    /// reaches `stall`, at most once per window — the kernel's trigger
    /// `some 150000 1000000` is `(Pressure::Some, 150 ms, 1 s)`.
    ///
    /// `window` must be 500 ms to 10 s and `stall` more than zero and at
    /// most `window`; otherwise [`Error::Invalid`] and no trigger is made.
    /// The trigger lives until its handle is dropped (it holds the group as
    /// a [`Group`] handle does; a removed group stalls no more, so its
    /// triggers stay quiet).
    ///
    /// ```
    /// use memcg::Pressure;
    /// use std::time::Duration;
    ///
    /// let h = memcg::Hierarchy::new();
    /// let g = h.create("/batch").unwrap();
    /// let trigger = g
    ///     .pressure_trigger(Pressure::Some, Duration::from_millis(150), Duration::from_secs(1))
    ///     .unwrap();
    /// assert_eq!(g.pressure_triggers(), 1);
    /// let too_short = g.pressure_trigger(
    ///     Pressure::Full,
    ///     Duration::from_millis(50),
    ///     Duration::from_millis(100),
    /// );
    /// assert_eq!(too_short.unwrap_err().kind(), memcg::ErrorKind::Invalid);
    /// drop(trigger);
    /// assert_eq!(g.pressure_triggers(), 0);
    /// ```
    pub fn pressure_trigger(
        &self,
        pressure: Pressure,
        stall: Duration,
        window: Duration,
    ) -> Result<PressureTrigger> {
        if !(WINDOW_MIN..=WINDOW_MAX).contains(&window) {
            return Err(Error::Invalid(format!(
                "a pressure trigger's window must be {WINDOW_MIN:?} to {WINDOW_MAX:?}, got \
                 {window:?}; pick a window in that range"
            )));
        }
        if stall.is_zero() {
            return Err(Error::Invalid(
                "a pressure trigger's stall must be more than zero; give the stall time \
                 within the window that should fire it"
                    .into(),
            ));
        }
        if stall > window {
            return Err(Error::Invalid(format!(
                "a pressure trigger's stall ({stall:?}) exceeds its window ({window:?}); \
                 give a stall of at most the window, or a longer window"
            )));
        }
        Ok(PressureTrigger {
            trigger: Trigger::register(self.inner.clone(), pressure, stall, window),
            seen: 0,
        })
    }

    /// How many [`PressureTrigger`]s on this group are live: a trigger
    /// counts from [`pressure_trigger`](Self::pressure_trigger) until its
    /// handle is dropped.
    pub fn pressure_triggers(&self) -> usize {
        self.inner.psi.triggers()
    }
}

/// A trigger on a group's `memory.pressure`, made by
/// [`Group::pressure_trigger`]: it fires when the group's stall time within
/// a sliding window reaches a threshold, at most once per window. Dropping
/// it removes the trigger.
///
/// Usable from plain threads ([`wait_timeout`](Self::wait_timeout)) and
/// from async code of any runtime ([`changed`](Self::changed), or as a
/// `futures_core::Stream` whose items are the firings, as
/// [`PressureEvent`]s). Each report is one firing; firings made while
/// nobody looked are reported once, as the latest (the kernel's trigger
/// is a flag too). A crossing is seen within a poll (20 ms) or so, also in
/// the middle of one long stall.
///
/// ```
/// use memcg::{PageKind, Pressure, UserPage};
/// use std::time::Duration;
///
/// let h = memcg::Hierarchy::new();
/// let g = h.create("/batch").unwrap();
/// g.write("memory.high", "4M").unwrap();
/// // 150 ms of stall within 1 s (the kernel's "some 150000 1000000").
/// let mut trigger = g
///     .pressure_trigger(Pressure::Some, Duration::from_millis(150), Duration::from_secs(1))
///     .unwrap();
/// assert!(!trigger.wait_timeout(Duration::from_millis(10)), "no stall yet");
/// let _in_g = g.enter().unwrap();
/// // Anon pages cannot be reclaimed: 64 pages over memory.high owe the
/// // thread 250 ms of throttling, paid at its next safe point.
/// let pages: Vec<_> = (0..1024 + 64)
///     .map(|_| UserPage::charge(PageKind::Anon).unwrap())
///     .collect();
/// memcg::throttle_point();
/// assert!(trigger.wait_timeout(Duration::from_secs(10)));
/// assert!(trigger.last().unwrap().stall >= Duration::from_millis(150));
/// # drop(pages);
/// ```
pub struct PressureTrigger {
    trigger: Arc<Trigger>,
    /// Firings reported so far.
    seen: u64,
}

impl std::fmt::Debug for PressureTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PressureTrigger")
            .field("trigger", &self.trigger)
            .field("seen", &self.seen)
            .finish()
    }
}

impl PressureTrigger {
    /// Block until the trigger fires, at most `timeout`: `true` if it fired
    /// since last reported (or since it was made), `false` if not in time.
    pub fn wait_timeout(&mut self, timeout: Duration) -> bool {
        self.trigger.wait(&mut self.seen, timeout).is_some()
    }

    /// Poll for a firing: `Ready` with it, or `Pending` with the task woken
    /// at the next firing.
    pub fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<PressureEvent> {
        self.trigger.poll(&mut self.seen, cx)
    }

    /// A future of the next firing (or of one not reported yet).
    pub fn changed(&mut self) -> PressureChanged<'_> {
        PressureChanged { trigger: self }
    }

    /// The latest firing, reported or not; `None` before the first.
    pub fn last(&self) -> Option<PressureEvent> {
        self.trigger.last().1
    }

    /// How many times the trigger fired, reported or not.
    pub fn firings(&self) -> u64 {
        self.trigger.last().0
    }

    /// The stall it counts (`some` or `full`).
    pub fn pressure(&self) -> Pressure {
        self.trigger.params().0
    }

    /// Its threshold: the stall time within a window that fires it.
    pub fn stall(&self) -> Duration {
        self.trigger.params().1
    }

    /// Its window.
    pub fn window(&self) -> Duration {
        self.trigger.params().2
    }

    /// The path of the group it watches.
    pub fn path(&self) -> &str {
        &self.trigger.group().path
    }
}

impl Drop for PressureTrigger {
    fn drop(&mut self) {
        self.trigger.unregister();
    }
}

/// The future of [`PressureTrigger::changed`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct PressureChanged<'a> {
    trigger: &'a mut PressureTrigger,
}

impl Future for PressureChanged<'_> {
    type Output = PressureEvent;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<PressureEvent> {
        self.trigger.poll_changed(cx)
    }
}

impl futures_core::Stream for PressureTrigger {
    type Item = PressureEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PressureEvent>> {
        self.poll_changed(cx).map(Some)
    }
}
