//! `memory.high` throttling (DESIGN §4, issue 12): a thread still over
//! `memory.high` after reclaim owes a delay, computed as the kernel's
//! `calculate_high_delay`, paid at its next safe point (`throttle_point`,
//! leaving an `enter` scope) — never inside a charge — and counted in
//! `memory.pressure`; a bound future pays it between polls, returning
//! `Pending` and being woken later instead of sleeping on its worker.
//! Delays are checked as the values memcg computes, and the stall time as
//! a lower bound (a sleep lasts at least what it is asked): no test here
//! depends on how fast the machine is.

use memcg::{FutureExt, Group, Hierarchy, PageKind, UserPage};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

/// memory.high of 4M (1024 pages); 64 pages over it: an overage of 1/16,
/// for 64 pages charged over it: the kernel's formula gives
/// ((64 << 20) / 1024)^2 * HZ >> 34 = 250 jiffies (ms) per 64-page batch.
const HIGH: &str = "4M";
const EXPECTED: Duration = Duration::from_millis(250);

fn pressure_total_us(g: &Group, line: &str) -> u64 {
    g.read("memory.pressure")
        .unwrap()
        .lines()
        .find(|l| l.starts_with(line))
        .and_then(|l| l.rsplit_once("total=")?.1.parse().ok())
        .unwrap()
}

/// Charge 1024 + 64 anon pages (not reclaimable) in the calling thread's
/// group: the last 64 are charged over memory.high.
fn over_high() -> Vec<UserPage> {
    (0..1024 + 64)
        .map(|_| UserPage::charge(PageKind::Anon).unwrap())
        .collect()
}

#[test]
fn a_thread_over_high_pays_the_kernels_delay_at_its_safe_point() {
    let h = Hierarchy::new();
    let g = h.create("/batch").unwrap();
    g.write("memory.high", HIGH).unwrap();
    let _in_g = g.enter().unwrap();
    let before = pressure_total_us(&g, "some");
    let pages = over_high();
    // The charges only recorded the debt (and reclaimed, counting high
    // events): the thread has not slept yet.
    assert!(g.read("memory.events").unwrap().contains("high "));
    let stalled_in_charges = pressure_total_us(&g, "some") - before;
    let slept = memcg::throttle_point();
    assert_eq!(slept, EXPECTED);
    // Paid once.
    assert_eq!(memcg::throttle_point(), Duration::ZERO);
    let after = pressure_total_us(&g, "some");
    assert!(
        after - before >= stalled_in_charges + EXPECTED.as_micros() as u64,
        "memory.pressure some total grew by {} us",
        after - before
    );
    // One thread, stalled: full as well.
    assert!(pressure_total_us(&g, "full") >= EXPECTED.as_micros() as u64);
    let text = g.read("memory.pressure").unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    for (line, name) in lines.iter().zip(["some", "full"]) {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields[0], name);
        for (f, key) in fields[1..]
            .iter()
            .zip(["avg10=", "avg60=", "avg300=", "total="])
        {
            let v = f.strip_prefix(key).unwrap_or_else(|| panic!("{line}"));
            assert!(v.parse::<f64>().is_ok(), "{line}");
        }
    }
    drop(pages);
}

#[test]
fn leaving_an_enter_scope_is_a_safe_point() {
    let h = Hierarchy::new();
    let g = h.create("/batch").unwrap();
    g.write("memory.high", HIGH).unwrap();
    let before = pressure_total_us(&g, "some");
    let pages = {
        let _in_g = g.enter().unwrap();
        over_high()
    };
    // Paid when the guard dropped: nothing is owed any more.
    assert_eq!(memcg::throttle_point(), Duration::ZERO);
    assert!(pressure_total_us(&g, "some") - before >= EXPECTED.as_micros() as u64);
    drop(pages);
}

#[test]
fn under_high_nothing_is_owed() {
    let h = Hierarchy::new();
    let g = h.create("/calm").unwrap();
    g.write("memory.high", HIGH).unwrap();
    let _in_g = g.enter().unwrap();
    let pages: Vec<_> = (0..1000)
        .map(|_| UserPage::charge(PageKind::Anon).unwrap())
        .collect();
    assert_eq!(memcg::throttle_point(), Duration::ZERO);
    assert_eq!(pressure_total_us(&g, "some"), 0);
    drop(pages);
}

struct Channel(Mutex<mpsc::Sender<()>>);

impl Wake for Channel {
    fn wake(self: Arc<Self>) {
        let _ = self.0.lock().unwrap().send(());
    }
}

/// Charges over memory.high in its first poll, then waits once, then is
/// done; counts its polls.
struct Greedy {
    polls: Arc<AtomicUsize>,
    pages: Vec<UserPage>,
}

impl Future for Greedy {
    type Output = usize;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        let n = self.polls.fetch_add(1, Relaxed);
        if n == 0 {
            self.pages = over_high();
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(self.pages.len())
    }
}

#[test]
fn a_bound_future_is_held_back_between_polls_not_slept_on() {
    let h = Hierarchy::new();
    let g = h.create("/tenant").unwrap();
    g.write("memory.high", HIGH).unwrap();
    let polls = Arc::new(AtomicUsize::new(0));
    let mut fut = Box::pin(
        Greedy {
            polls: polls.clone(),
            pages: Vec::new(),
        }
        .in_group(g.clone()),
    );
    let (tx, rx) = mpsc::channel();
    let waker = Waker::from(Arc::new(Channel(Mutex::new(tx))));
    let mut cx = Context::from_waker(&waker);
    let before = pressure_total_us(&g, "some");
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    assert_eq!(polls.load(Relaxed), 1);
    // The poll charged over high and returned at once: the thread owes
    // nothing (the future does), and the future is held back: polling it
    // again before its penalty ends does not reach the inner future.
    assert_eq!(memcg::throttle_point(), Duration::ZERO);
    let _ = rx.try_recv(); // the inner future's own wake-up
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    assert_eq!(polls.load(Relaxed), 1, "polled while throttled");
    // memcg's timer wakes the task when the penalty is over.
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the throttled future was never woken");
    let mut result = fut.as_mut().poll(&mut cx);
    while result.is_pending() {
        // A wake-up queued before the penalty ended: wait for the next.
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
        result = fut.as_mut().poll(&mut cx);
    }
    assert_eq!(result, Poll::Ready(1024 + 64));
    assert_eq!(polls.load(Relaxed), 2);
    assert!(pressure_total_us(&g, "some") - before >= EXPECTED.as_micros() as u64);
    drop(fut);
}
