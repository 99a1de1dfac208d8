//! What binding a future costs per poll (S12, S14, issue 19): a future
//! that is pending `N` times, then ready, made and polled to completion,
//! bare, bound with `in_group`, and bound with `in_group_killable` (which
//! also keeps the poll's waker for a kill, and registers a unit on its
//! group when made). On a thread in the root, with `MemcgAlloc` as the
//! global allocator, polled with a no-op waker; the future allocates
//! nothing, so this is the wrappers' own cost. `N = 0` is the cost of a
//! whole short request (make, one poll, drop); at `N = 1000` that is spread
//! out and the cost of a poll remains.
//!
//! ```text
//! cargo build --release -p memcg-bench --bin memcg-bench-poll
//! target/release/memcg-bench-poll [--reps R]
//!     ns per poll, the median of 9 timed runs of R futures per row
//! valgrind --tool=callgrind --toggle-collect=poll_killable \
//!     target/release/memcg-bench-poll killable N R
//!     one row, for instruction counts (the functions: poll_bare,
//!     poll_in_group, poll_killable; each runs R futures)
//! ```

use std::future::Future;
use std::hint::black_box;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use memcg::{FutureExt, Group};

#[global_allocator]
static A: memcg::MemcgAlloc = memcg::MemcgAlloc;

/// Pending `self.0` more times, then ready.
struct Countdown(u32);

impl Future for Countdown {
    type Output = u32;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        if self.0 == 0 {
            return Poll::Ready(7);
        }
        self.0 -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Poll `f` until it is ready.
#[inline(always)]
fn complete<F: Future>(f: F) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut f = pin!(f);
    // Opaque to the optimizer: each poll runs, as an executor makes it.
    while black_box(f.as_mut()).poll(&mut cx).is_pending() {}
}

#[inline(never)]
#[no_mangle]
fn poll_bare(n: u32, reps: usize, _: &Group) {
    for _ in 0..reps {
        complete(Countdown(black_box(n)));
    }
}

#[inline(never)]
#[no_mangle]
fn poll_in_group(n: u32, reps: usize, g: &Group) {
    for _ in 0..reps {
        complete(Countdown(black_box(n)).in_group(g.clone()));
    }
}

#[inline(never)]
#[no_mangle]
fn poll_killable(n: u32, reps: usize, g: &Group) {
    for _ in 0..reps {
        complete(Countdown(black_box(n)).in_group_killable(g.clone()));
    }
}

type Row = (&'static str, fn(u32, usize, &Group));

const ROWS: [Row; 3] = [
    ("bare", poll_bare),
    ("in_group", poll_in_group),
    ("killable", poll_killable),
];

fn ns_per_poll(f: fn(u32, usize, &Group), n: u32, reps: usize, g: &Group) -> f64 {
    f(n, reps / 10 + 1, g); // warm up
    let mut runs: Vec<f64> = (0..9)
        .map(|_| {
            let t = Instant::now();
            f(n, reps, g);
            t.elapsed().as_nanos() as f64 / (reps as f64 * (f64::from(n) + 1.0))
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let g = memcg::global().create("/bench-poll").expect("group");
    match args.as_slice() {
        [flag, r] if flag == "--reps" => table(r.parse().unwrap_or(10_000), &g),
        [] => table(10_000, &g),
        [row, n, reps] => {
            let Some(&(_, f)) = ROWS.iter().find(|(name, _)| name == row) else {
                eprintln!("memcg-bench-poll: no row {row}: bare, in_group, killable");
                return std::process::ExitCode::from(2);
            };
            let (Ok(n), Ok(reps)) = (n.parse(), reps.parse()) else {
                eprintln!("memcg-bench-poll: N and R are numbers");
                return std::process::ExitCode::from(2);
            };
            f(n, reps, &g);
        }
        _ => {
            eprintln!("usage: memcg-bench-poll [--reps R] | ROW N R");
            return std::process::ExitCode::from(2);
        }
    }
    std::process::ExitCode::SUCCESS
}

fn table(reps: usize, g: &Group) {
    println!("ns per poll (median of 9 runs); futures pending N times, then ready");
    println!("{:<10} {:>12} {:>12}", "", "N = 0", "N = 1000");
    for (name, f) in ROWS {
        // N = 1000 polls a thousand times more per future: fewer futures.
        let short = ns_per_poll(f, 0, reps, g);
        let long = ns_per_poll(f, 1000, (reps / 100).max(1), g);
        println!("{name:<10} {short:>12.1} {long:>12.1}");
    }
}
