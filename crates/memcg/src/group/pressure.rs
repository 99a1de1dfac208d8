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

use crate::sync::Mutex;
use std::time::Instant;

const WINDOWS: [f64; 3] = [10.0, 60.0, 300.0];

/// One group's stall state.
#[derive(Debug)]
pub(crate) struct Psi(Mutex<State>);

#[derive(Debug)]
struct State {
    /// Threads stalled now.
    stalled: usize,
    /// When `stalled` (or the task count) last changed.
    since: Instant,
    /// Threads attached to the subtree at the last change.
    tasks: usize,
    some_us: f64,
    full_us: f64,
    /// [some, full] x WINDOWS, in percent.
    avg: [[f64; 3]; 2],
    avg_at: Instant,
    avg_some_us: f64,
    avg_full_us: f64,
}

impl Default for Psi {
    fn default() -> Psi {
        let now = Instant::now();
        Psi(Mutex::new(State {
            stalled: 0,
            since: now,
            tasks: 0,
            some_us: 0.0,
            full_us: 0.0,
            avg: [[0.0; 3]; 2],
            avg_at: now,
            avg_some_us: 0.0,
            avg_full_us: 0.0,
        }))
    }
}

impl State {
    /// Account the time since the last change, then fold it into the averages.
    fn advance(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.since).as_secs_f64() * 1e6;
        if self.stalled > 0 {
            self.some_us += dt;
            if self.stalled >= self.tasks.max(1) {
                self.full_us += dt;
            }
        }
        self.since = now;
        let span = now.saturating_duration_since(self.avg_at).as_secs_f64();
        if span <= 0.0 {
            return;
        }
        let pct = [
            (self.some_us - self.avg_some_us) / (span * 1e6) * 100.0,
            (self.full_us - self.avg_full_us) / (span * 1e6) * 100.0,
        ];
        for (k, p) in pct.iter().enumerate() {
            for (w, window) in WINDOWS.iter().enumerate() {
                let keep = (-span / window).exp();
                self.avg[k][w] = self.avg[k][w] * keep + p.min(100.0) * (1.0 - keep);
            }
        }
        self.avg_at = now;
        self.avg_some_us = self.some_us;
        self.avg_full_us = self.full_us;
    }
}

impl Psi {
    /// A thread of the group starts (`+1`) or stops (`-1`) stalling; `tasks`
    /// is the number of threads attached to the group's subtree now.
    pub(crate) fn change(&self, delta: isize, tasks: usize) {
        let mut s = self.0.lock();
        s.advance(Instant::now());
        s.stalled = s.stalled.saturating_add_signed(delta);
        s.tasks = tasks;
    }

    /// The `memory.pressure` text.
    pub(crate) fn render(&self) -> String {
        let mut s = self.0.lock();
        s.advance(Instant::now());
        let line = |name: &str, avg: &[f64; 3], total: f64| {
            format!(
                "{name} avg10={:.2} avg60={:.2} avg300={:.2} total={}\n",
                avg[0], avg[1], avg[2], total as u64
            )
        };
        line("some", &s.avg[0], s.some_us) + &line("full", &s.avg[1], s.full_us)
    }
}
