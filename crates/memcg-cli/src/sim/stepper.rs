//! A thread that runs one step per order and reports each: the tenants of
//! `memcg sim protection` and the workers of `memcg sim oom`, which the main
//! thread steps round by round so that every run of a seed is the same.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;

/// What a step reports: a scenario's own record, or the engine's error.
pub(super) type Report<D> = Result<D, memcg::Error>;

/// A stepping thread: orders go in, one report per order comes out.
pub(super) struct Stepper<D> {
    orders: Option<Sender<usize>>,
    reports: Receiver<Report<D>>,
    thread: Option<JoinHandle<()>>,
}

impl<D: Send + 'static> Stepper<D> {
    /// Start `body` on a thread made by `spawn` (a `memcg::Builder`, which
    /// attaches it where the scenario wants): `body` receives the step
    /// numbers and sends its reports, and ends when the orders stop.
    pub(super) fn start(
        spawn: impl FnOnce(Box<dyn FnOnce() + Send>) -> memcg::Result<JoinHandle<()>>,
        body: impl FnOnce(Receiver<usize>, Sender<Report<D>>) + Send + 'static,
    ) -> memcg::Result<Stepper<D>> {
        let (orders, inbox) = channel();
        let (outbox, reports) = channel();
        let thread = spawn(Box::new(move || body(inbox, outbox)))?;
        Ok(Stepper {
            orders: Some(orders),
            reports,
            thread: Some(thread),
        })
    }

    /// The next report the thread sends without an order (a worker's
    /// "attached"); `None` once the thread is gone.
    pub(super) fn unbidden(&self) -> Option<Report<D>> {
        self.reports.recv().ok()
    }

    /// Run step `i` and wait for its report.
    pub(super) fn step(&self, i: usize) -> Report<D> {
        let sent = self.orders.as_ref().is_some_and(|o| o.send(i).is_ok());
        match self.reports.recv() {
            Ok(report) if sent => report,
            _ => panic!("a sim thread died"),
        }
    }
}

impl<D> Drop for Stepper<D> {
    /// Stop the thread (if it still runs) and join it: what it held is
    /// freed, and its charge stock given back, by the time this returns.
    fn drop(&mut self) {
        self.orders = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
