//! Pressure stall information of a group (`memory.pressure`, the
//! kernel's PSI format): how long the group's threads were stalled on
//! memory, in reclaim they ran for a charge and in `memory.high`
//! throttling. `some`: at least one thread of the group (or a descendant)
//! stalled; `full`: all of them, counting the threads attached to the
//! subtree (a thread not attached there, such as a task bound with
//! `in_group`, counts as one). Totals in microseconds; `avg10`, `avg60`,
//! `avg300` are the percentage of time stalled, as exponentially decaying
//! averages over 10 s, 60 s and 300 s, updated at every stall change and
//! every read (the kernel updates them every 2 s; the windows are the same).
//!
//! # Triggers
//!
//! A trigger (the kernel's `memory.pressure` trigger, `some 150000 1000000`)
//! fires when the group's `some` or `full` stall time within the last window
//! reaches a threshold, at most once per window. Stall changes happen on
//! charge paths, possibly inside the global allocator, where no user code
//! may run and no lock of a waiter may be taken. So a change only publishes
//! the new totals (a seqlock the change's own lock serializes) and, when the
//! group has triggers, wakes the deferred worker (statics only). Triggers are
//! evaluated outside the allocator, from the published totals, never under
//! the group's lock: by the deferred worker after each change and every
//! [`POLL`] while a triggered group stalls or a firing is held back (the
//! kernel's `psi_rtpoll_worker`; a single long stall fires while it lasts),
//! and by a waiter when it looks.
//!
//! The window slides: the stall within `(now - window, now]` is the total
//! now less the total at `now - window`, interpolated between the samples a
//! trigger keeps (one per 1/[`SLOTS`] of its window at most, taken when it
//! looks). A stall is looked at when it starts and every poll while it
//! lasts, so the count is right to within 1/[`SLOTS`] of the window. A crossing
//! within a window of the last firing is held back and fired when that
//! window ends (as the kernel's `pending_event`: rate-limited, not dropped).

use crate::group::GroupInner;
use crate::sync::Arc as GroupArc;
use crate::sync::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering::*};
// Triggers are not part of the loom models: std's Arc, locks and atomics.
use std::sync::{Arc, Condvar};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

const WINDOWS: [f64; 3] = [10.0, 60.0, 300.0];

/// How often the deferred worker looks at the triggers while a triggered
/// group stalls (or a firing is held back): the delay of a firing in the
/// middle of a stall.
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// A trigger keeps at most one sample of the stall total per
/// `window / SLOTS`.
const SLOTS: u64 = 32;

/// One group's stall state.
#[derive(Debug)]
pub(crate) struct Psi {
    state: Mutex<State>,
    /// The totals as of the last change, for triggers.
    published: Published,
    /// Time zero of the published times.
    epoch: Instant,
    /// Live triggers on this group.
    triggers: AtomicUsize,
}

#[derive(Debug)]
struct State {
    /// Threads stalled now.
    stalled: usize,
    /// When `stalled` (or the task count) last changed.
    since: Instant,
    /// Threads attached to the subtree at the last change.
    tasks: usize,
    some_ns: u64,
    full_ns: u64,
    /// [some, full] x WINDOWS, in percent.
    avg: [[f64; 3]; 2],
    avg_at: Instant,
    avg_some_ns: u64,
    avg_full_ns: u64,
}

impl Default for Psi {
    fn default() -> Psi {
        let now = Instant::now();
        Psi {
            state: Mutex::new(State {
                stalled: 0,
                since: now,
                tasks: 0,
                some_ns: 0,
                full_ns: 0,
                avg: [[0.0; 3]; 2],
                avg_at: now,
                avg_some_ns: 0,
                avg_full_ns: 0,
            }),
            published: Published::default(),
            epoch: now,
            triggers: AtomicUsize::new(0),
        }
    }
}

impl State {
    /// Whether `full` stall goes on: every thread of the subtree stalls.
    fn full(&self) -> bool {
        self.stalled > 0 && self.stalled >= self.tasks.max(1)
    }

    /// Account the time since the last change, then fold it into the averages.
    fn advance(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.since).as_nanos() as u64;
        if self.stalled > 0 {
            self.some_ns += dt;
            if self.full() {
                self.full_ns += dt;
            }
        }
        self.since = now;
        let span = now.saturating_duration_since(self.avg_at).as_secs_f64();
        if span <= 0.0 {
            return;
        }
        let pct = [
            (self.some_ns - self.avg_some_ns) as f64 / (span * 1e9) * 100.0,
            (self.full_ns - self.avg_full_ns) as f64 / (span * 1e9) * 100.0,
        ];
        for (k, p) in pct.iter().enumerate() {
            for (w, window) in WINDOWS.iter().enumerate() {
                let keep = (-span / window).exp();
                self.avg[k][w] = self.avg[k][w] * keep + p.min(100.0) * (1.0 - keep);
            }
        }
        self.avg_at = now;
        self.avg_some_ns = self.some_ns;
        self.avg_full_ns = self.full_ns;
    }
}

impl Psi {
    /// A thread of the group starts (`+1`) or stops (`-1`) stalling; `tasks`
    /// is the number of threads attached to the group's subtree now. May run
    /// inside the allocator: allocates nothing, takes only this group's lock.
    pub(crate) fn change(&self, delta: isize, tasks: usize) {
        let mut s = self.state.lock();
        s.advance(Instant::now());
        s.stalled = s.stalled.saturating_add_signed(delta);
        s.tasks = tasks;
        self.published.publish(&s, self.epoch);
        drop(s);
        // Relaxed: a trigger registered concurrently looks at the totals
        // itself once registered, so a wake-up missed here loses nothing.
        if self.triggers.load(Relaxed) > 0 {
            note_change();
        }
    }

    /// The `memory.pressure` text.
    pub(crate) fn render(&self) -> String {
        let mut s = self.state.lock();
        // The published totals stay right: advancing moves `since` and the
        // totals together, along the same line.
        s.advance(Instant::now());
        let line = |name: &str, avg: &[f64; 3], total_ns: u64| {
            format!(
                "{name} avg10={:.2} avg60={:.2} avg300={:.2} total={}\n",
                avg[0],
                avg[1],
                avg[2],
                total_ns / 1000
            )
        };
        line("some", &s.avg[0], s.some_ns) + &line("full", &s.avg[1], s.full_ns)
    }

    /// How many triggers are registered on this group.
    pub(crate) fn triggers(&self) -> usize {
        self.triggers.load(Relaxed)
    }

    /// The time `at`, in nanoseconds since the group's time zero.
    fn clock(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_nanos() as u64
    }
}

/// The totals of a group's stall as of its last change, readable without
/// its lock: a seqlock whose one writer at a time is the holder of the
/// group's lock. Readers retry while a change writes (a few stores).
#[derive(Debug, Default)]
struct Published {
    /// Odd while a change writes.
    seq: AtomicU64,
    some_ns: AtomicU64,
    full_ns: AtomicU64,
    /// When the change was, in nanoseconds since the group's time zero.
    since_ns: AtomicU64,
    /// Which stalls go on since then: bit 0 `some`, bit 1 `full`.
    on: AtomicU8,
}

/// A consistent copy of [`Published`].
#[derive(Clone, Copy)]
struct Totals {
    some_ns: u64,
    full_ns: u64,
    since_ns: u64,
    on: u8,
}

impl Totals {
    /// Whether `kind` stall goes on.
    fn stalling(&self, kind: Pressure) -> bool {
        self.on & kind.bit() != 0
    }

    /// The total `kind` stall at `now_ns`: time goes on counting while a
    /// stall lasts.
    fn at(&self, kind: Pressure, now_ns: u64) -> u64 {
        let base = match kind {
            Pressure::Some => self.some_ns,
            Pressure::Full => self.full_ns,
        };
        if self.stalling(kind) {
            base + now_ns.saturating_sub(self.since_ns)
        } else {
            base
        }
    }
}

impl Published {
    /// Write `s` (just advanced to `s.since`). The group's lock is held.
    fn publish(&self, s: &State, epoch: Instant) {
        let seq = self.seq.load(Relaxed);
        self.seq.store(seq.wrapping_add(1), Relaxed);
        // Orders the odd count before the data: a reader that sees any new
        // datum sees the odd count (or later) on its second read.
        fence(Release);
        self.some_ns.store(s.some_ns, Relaxed);
        self.full_ns.store(s.full_ns, Relaxed);
        let since = s.since.saturating_duration_since(epoch).as_nanos() as u64;
        self.since_ns.store(since, Relaxed);
        let mut on = 0;
        if s.stalled > 0 {
            on |= Pressure::Some.bit();
        }
        if s.full() {
            on |= Pressure::Full.bit();
        }
        self.on.store(on, Relaxed);
        self.seq.store(seq.wrapping_add(2), Release);
    }

    fn read(&self) -> Totals {
        loop {
            let seq = self.seq.load(Acquire);
            if seq & 1 == 0 {
                let t = Totals {
                    some_ns: self.some_ns.load(Relaxed),
                    full_ns: self.full_ns.load(Relaxed),
                    since_ns: self.since_ns.load(Relaxed),
                    on: self.on.load(Relaxed),
                };
                // Orders the data before the second read of the count: an
                // unchanged count means no change wrote in between.
                fence(Acquire);
                if self.seq.load(Relaxed) == seq {
                    return t;
                }
            }
            std::thread::yield_now();
        }
    }
}

/// Which stall a [`PressureTrigger`](crate::PressureTrigger) counts: the
/// first word of a kernel `memory.pressure` trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pressure {
    /// Time during which at least one thread of the group (or of a
    /// descendant) stalled on memory.
    Some,
    /// Time during which every thread attached to the group's subtree
    /// stalled at once.
    Full,
}

impl Pressure {
    fn bit(self) -> u8 {
        match self {
            Pressure::Some => 1,
            Pressure::Full => 2,
        }
    }
}

/// One firing of a [`PressureTrigger`](crate::PressureTrigger).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PressureEvent {
    /// The stall time within the window when the trigger fired, or when
    /// it crossed the threshold if that was more (a crossing held back by
    /// the once-per-window rule, after a stall that ended): at least the
    /// trigger's threshold.
    pub stall: Duration,
    /// When the trigger fired. Two firings of a trigger are at least its
    /// window apart.
    pub at: Instant,
}

/// How many triggers are live, in every group: [`deliver`] has nothing to
/// do without one.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Whether the last [`deliver`] found a triggered group stalling or a
/// firing held back: the worker then looks again after [`POLL`]. Written
/// and read by the worker only.
static POLLING: AtomicBool = AtomicBool::new(false);

/// Every live trigger. Never locked on allocator paths.
static TRIGGERS: std::sync::Mutex<Vec<Arc<Trigger>>> = std::sync::Mutex::new(Vec::new());

/// A triggered group's stall changed: have the deferred worker look.
/// Reads and writes statics only; never blocks, never allocates.
fn note_change() {
    #[cfg(not(loom))]
    crate::group::deferred::wake();
}

/// Look at every trigger: fire those whose threshold was reached, wake
/// their waiters. Run by the deferred worker, never inside the allocator.
pub(crate) fn deliver() {
    if LIVE.load(Acquire) == 0 {
        POLLING.store(false, Relaxed);
        return;
    }
    let triggers: Vec<Arc<Trigger>> = crate::sync::lock_std(&TRIGGERS).clone();
    let mut polling = false;
    for t in &triggers {
        polling |= t.look_and_wake();
    }
    POLLING.store(polling, Relaxed);
}

/// Whether the deferred worker should look at the triggers again after
/// [`POLL`] without being woken.
pub(crate) fn polling() -> bool {
    POLLING.load(Relaxed)
}

/// One trigger: its parameters, its view of the group's stall over the last
/// window, and its waiters.
pub(crate) struct Trigger {
    group: GroupArc<GroupInner>,
    kind: Pressure,
    threshold_ns: u64,
    window_ns: u64,
    /// Never taken on allocator paths: the worker and the handle's owner
    /// take it to look and to wait.
    state: std::sync::Mutex<TriggerState>,
    cv: Condvar,
    live: AtomicBool,
}

impl std::fmt::Debug for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trigger")
            .field("group", &self.group.path)
            .field("kind", &self.kind)
            .field("stall", &Duration::from_nanos(self.threshold_ns))
            .field("window", &Duration::from_nanos(self.window_ns))
            .finish()
    }
}

struct TriggerState {
    /// `(time, total stall)` in nanoseconds, oldest first: one sample at or
    /// before a window ago, then at most one per `window / SLOTS`.
    samples: VecDeque<(u64, u64)>,
    /// A crossing held back because the last firing is less than a window
    /// ago: the stall within the window when it was seen.
    pending: Option<u64>,
    last_fire: Option<u64>,
    /// Firings so far, and the last one.
    fired: u64,
    last: Option<PressureEvent>,
    /// The task of the last [`Trigger::poll`] that found nothing.
    waker: Option<Waker>,
}

impl Trigger {
    /// Register a trigger on `group`. The caller checked the arguments:
    /// `0 < stall <= window`.
    pub(crate) fn register(
        group: GroupArc<GroupInner>,
        kind: Pressure,
        stall: Duration,
        window: Duration,
    ) -> Arc<Trigger> {
        let _internal = crate::reentrancy::Internal::enter();
        let window_ns = window.as_nanos() as u64;
        let now = Instant::now();
        let total = group.psi.published.read().at(kind, group.psi.clock(now));
        let mut samples = VecDeque::with_capacity(SLOTS as usize + 2);
        samples.push_back((group.psi.clock(now), total));
        let trigger = Arc::new(Trigger {
            kind,
            threshold_ns: stall.as_nanos() as u64,
            window_ns,
            state: std::sync::Mutex::new(TriggerState {
                samples,
                pending: None,
                last_fire: None,
                fired: 0,
                last: None,
                waker: None,
            }),
            cv: Condvar::new(),
            live: AtomicBool::new(true),
            group,
        });
        trigger.group.psi.triggers.fetch_add(1, Relaxed);
        crate::sync::lock_std(&TRIGGERS).push(trigger.clone());
        LIVE.fetch_add(1, Release);
        // A stall may be under way: have the worker start polling.
        note_change();
        trigger
    }

    /// Take the trigger off its group; it never fires again. Idempotent.
    pub(crate) fn unregister(self: &Arc<Self>) {
        if !self.live.swap(false, AcqRel) {
            return;
        }
        let _internal = crate::reentrancy::Internal::enter();
        crate::sync::lock_std(&TRIGGERS).retain(|t| !Arc::ptr_eq(t, self));
        self.group.psi.triggers.fetch_sub(1, Relaxed);
        LIVE.fetch_sub(1, Release);
    }

    /// The group it watches.
    pub(crate) fn group(&self) -> &GroupArc<GroupInner> {
        &self.group
    }

    /// What it counts, its threshold and its window.
    pub(crate) fn params(&self) -> (Pressure, Duration, Duration) {
        (
            self.kind,
            Duration::from_nanos(self.threshold_ns),
            Duration::from_nanos(self.window_ns),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TriggerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Evaluate the trigger now (its state locked): fire if the stall within
    /// the last window reached the threshold and the last firing is a window
    /// ago. Returns whether it fired, and whether it needs another look
    /// without a stall change (its group stalls, or a firing is held back).
    fn look(&self, s: &mut TriggerState) -> (bool, bool) {
        let totals = self.group.psi.published.read();
        // Taken after the read: no earlier than the change the read saw.
        let now = self.group.psi.clock(Instant::now());
        let total = totals.at(self.kind, now);
        let growth = s.growth(now, total, self.window_ns);
        if s.pending.is_none() && growth >= self.threshold_ns && self.live.load(Acquire) {
            s.pending = Some(growth);
        }
        let fired = match s.pending {
            Some(seen) if s.last_fire.is_none_or(|f| now >= f + self.window_ns) => {
                s.pending = None;
                s.last_fire = Some(now);
                s.fired += 1;
                s.last = Some(PressureEvent {
                    stall: Duration::from_nanos(seen.max(growth)),
                    at: self.group.psi.epoch + Duration::from_nanos(now),
                });
                true
            }
            _ => false,
        };
        let again = totals.stalling(self.kind) || s.pending.is_some();
        (fired, again)
    }

    /// The worker's look: evaluate, and on a firing wake the waiters.
    /// Returns whether the trigger needs another look without a change.
    fn look_and_wake(&self) -> bool {
        let mut s = self.lock();
        let (fired, again) = self.look(&mut s);
        let waker = if fired { s.waker.take() } else { None };
        drop(s);
        if fired {
            self.cv.notify_all();
        }
        // Outside the lock: a waker may run a runtime's scheduling code.
        if let Some(w) = waker {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.wake()));
        }
        again
    }

    /// A firing after the `seen`-th, if any: the latest (firings not looked
    /// at are reported once, as the kernel's event flag). Advances `seen`.
    fn take(s: &TriggerState, seen: &mut u64) -> Option<PressureEvent> {
        (s.fired > *seen).then(|| {
            *seen = s.fired;
            s.last.expect("a firing was recorded")
        })
    }

    /// Block until a firing after the `seen`-th, at most `timeout`. Looks
    /// itself every [`POLL`] while the group stalls (every second
    /// otherwise), so it does not depend on the worker.
    pub(crate) fn wait(&self, seen: &mut u64, timeout: Duration) -> Option<PressureEvent> {
        let deadline = Instant::now().checked_add(timeout);
        let mut s = self.lock();
        loop {
            let (_, again) = self.look(&mut s);
            if let Some(e) = Self::take(&s, seen) {
                return Some(e);
            }
            let slice = if again { POLL } else { Duration::from_secs(1) };
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => slice,
            };
            if left.is_zero() {
                return None;
            }
            // A firing by the worker notifies after taking the lock, so
            // not before this wait begins.
            s = self
                .cv
                .wait_timeout(s, left.min(slice))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Poll for a firing after the `seen`-th: `Pending` with the task woken
    /// at the next firing (the worker looks while the group stalls).
    pub(crate) fn poll(&self, seen: &mut u64, cx: &mut Context<'_>) -> Poll<PressureEvent> {
        let mut s = self.lock();
        self.look(&mut s);
        if let Some(e) = Self::take(&s, seen) {
            return Poll::Ready(e);
        }
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The last firing, and how many there were.
    pub(crate) fn last(&self) -> (u64, Option<PressureEvent>) {
        let s = self.lock();
        (s.fired, s.last)
    }
}

impl TriggerState {
    /// The stall within `(now - window, now]`, given the total now; records
    /// the sample. The total at `now - window` is interpolated between the
    /// samples around it (exact while the total grows evenly between them:
    /// samples are dense while the group stalls and the worker polls).
    fn growth(&mut self, now: u64, total: u64, window: u64) -> u64 {
        let start = now.saturating_sub(window);
        // Keep one sample at or before the window's start.
        while self.samples.len() > 1 && self.samples[1].0 <= start {
            self.samples.pop_front();
        }
        let (t0, v0) = self.samples[0];
        let (t1, v1) = self.samples.get(1).copied().unwrap_or((now, total));
        let at_start = if t0 >= start || t1 <= t0 {
            // The trigger is younger than its window: count from its start.
            v0
        } else {
            let span = (t1 - t0) as u128;
            v0 + ((v1.saturating_sub(v0)) as u128 * (start - t0) as u128 / span) as u64
        };
        let newest = self.samples.back().map_or(0, |&(t, _)| t);
        if now >= newest + window / SLOTS && self.samples.len() < self.samples.capacity() {
            self.samples.push_back((now, total));
        }
        total.saturating_sub(at_start)
    }
}
