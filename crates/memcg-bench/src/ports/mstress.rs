//! mstress (mimalloc's stress test, Daan Leijen), as mimalloc-bench runs it:
//! `mstress $procs 50 25` (threads, scale, iterations).
//!
//! In each iteration every thread starts fresh and, until it has made
//! `100 * scale * (tid % 8 + 1)` short-lived and half as many retained
//! allocations: allocates (more than half of the steps) a block of 1–16
//! words into its working set, or else a block of 1–64 words it retains to
//! the end; frees a random block of its working set (two steps in three); and
//! swaps a random block of its working set with a random slot of a transfer
//! array of 1000 slots shared by all threads (one step in four), so blocks
//! move between threads. A block is 1% of the time 100x larger, 0.1% 1000x,
//! 0.01% 10000x (up to 5 MiB). Every block is filled with a pattern when
//! allocated and checked when freed. Between iterations the main thread
//! frees half of the transfer array at random, so blocks outlive the threads
//! that made them; after the last it frees all of it. What it stresses:
//! cross-thread frees, threads that come and go, and a few large blocks
//! among many small ones.
//!
//! The chances are the original's `pick() % 100 <= p` (so "1%" is 2 in
//! 100). The port differs only in its random generator and in the scale:
//! [`Mstress::iterations`] is smaller in the report. One op: one allocation
//! (each block is also freed once).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use fastrand::Rng;

use super::{alloc_bytes, free_bytes};
use crate::raw_alloc::RawAlloc;

/// Slots of the transfer array, as in the original.
pub const TRANSFERS: usize = 1000;

/// The pattern's key: each word `i` of a block of `n` words holds
/// `(n - i) ^ COOKIE`, so word 0 also records the block's size.
const COOKIE: usize = 0xbf58_476d_1ce4_e5b9;
const WORD: usize = std::mem::size_of::<usize>();

/// mstress's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mstress {
    /// Threads per iteration (`$procs`).
    pub threads: usize,
    /// Allocations per thread, in hundreds, times `tid % 8 + 1` (50).
    pub scale: usize,
    /// Iterations, each with fresh threads (25).
    pub iterations: usize,
}

impl Mstress {
    /// mimalloc-bench's parameters on `threads` threads.
    pub fn mimalloc_bench(threads: usize) -> Mstress {
        Mstress {
            threads,
            scale: 50,
            iterations: 25,
        }
    }

    /// The same with `iterations` iterations.
    pub fn with_iterations(self, iterations: usize) -> Mstress {
        Mstress { iterations, ..self }
    }

    /// Short-lived allocations thread `tid` makes per iteration; it also
    /// retains half as many.
    fn allocs(&self, tid: usize) -> usize {
        100 * self.scale * (tid % 8 + 1)
    }

    /// Allocations one run makes.
    pub fn ops(&self) -> u64 {
        let per_iteration: usize = (0..self.threads)
            .map(|tid| {
                let allocs = self.allocs(tid);
                allocs + allocs / 2
            })
            .sum();
        (per_iteration * self.iterations) as u64
    }
}

/// The original's `chance(perc)`: true when a number in `0..100` is at most
/// `perc`.
fn chance(perc: u32, rng: &mut Rng) -> bool {
    rng.u32(..100) <= perc
}

/// Allocates a block of `items` words (sometimes many more) filled with the
/// pattern, and returns its address.
fn alloc_items<A: RawAlloc>(a: &A, mut items: usize, rng: &mut Rng) -> usize {
    if chance(1, rng) {
        if chance(1, rng) {
            items *= 10_000;
        } else if chance(10, rng) {
            items *= 1_000;
        } else {
            items *= 100;
        }
    }
    if items == 40 {
        items += 1; // the original avoids the size glibc's threads use
    }
    let p = alloc_bytes(a, items * WORD).cast::<usize>();
    for i in 0..items {
        // SAFETY: the block holds `items` words, aligned to a word.
        unsafe { p.add(i).write((items - i) ^ COOKIE) };
    }
    p as usize
}

/// Checks the pattern of the block at `addr` (0 for none) and frees it.
/// Panics on a broken pattern: the allocator handed out memory twice.
///
/// # Safety
///
/// `addr` is 0 or a live block from [`alloc_items`] on `a`, freed once.
unsafe fn free_items<A: RawAlloc>(a: &A, addr: usize) {
    if addr == 0 {
        return;
    }
    let p = addr as *const usize;
    // SAFETY: a live block of at least one word.
    let items = unsafe { p.read() } ^ COOKIE;
    for i in 0..items {
        // SAFETY: the block holds `items` words (its first word says so).
        let word = unsafe { p.add(i).read() };
        assert_eq!(
            word ^ COOKIE,
            items - i,
            "memory corruption in block {addr:#x} at word {i}"
        );
    }
    // SAFETY: the caller's contract; allocated with `items` words.
    unsafe { free_bytes(a, addr as *mut u8, items * WORD) };
}

/// One thread of one iteration.
fn stress<A: RawAlloc>(a: &A, p: &Mstress, tid: usize, transfer: &[AtomicUsize]) {
    let _entered = a.enter_allocating_thread();
    let mut rng = Rng::with_seed(((tid + 1) * 43) as u64);
    let mut allocs = p.allocs(tid);
    let mut retain = allocs / 2;
    let mut data: Vec<usize> = Vec::new();
    let mut retained: Vec<usize> = Vec::with_capacity(retain);
    while allocs > 0 || retain > 0 {
        if retain == 0 || (chance(50, &mut rng) && allocs > 0) {
            allocs -= 1;
            let items = 1 << rng.u32(..5);
            data.push(alloc_items(a, items, &mut rng));
        } else {
            let items = 1 << rng.u32(..7);
            retained.push(alloc_items(a, items, &mut rng));
            retain -= 1;
        }
        if chance(66, &mut rng) && !data.is_empty() {
            let idx = rng.usize(..data.len());
            // SAFETY: the slot holds 0 or a live block; emptied at once.
            unsafe { free_items(a, std::mem::take(&mut data[idx])) };
        }
        if chance(25, &mut rng) && !data.is_empty() {
            let idx = rng.usize(..data.len());
            let slot = rng.usize(..TRANSFERS);
            // AcqRel: the block's pattern, written by the thread that put it
            // there, is read by whoever takes it out.
            data[idx] = transfer[slot].swap(data[idx], Ordering::AcqRel);
        }
    }
    for addr in retained.into_iter().chain(data) {
        // SAFETY: every entry is 0 or a live block owned by this thread.
        unsafe { free_items(a, addr) };
    }
}

/// Runs mstress once on `a` and returns the time of all its iterations.
pub fn run<A: RawAlloc>(a: &A, p: &Mstress) -> Duration {
    let _entered = a.enter_allocating_thread();
    let transfer: Vec<AtomicUsize> = (0..TRANSFERS).map(|_| AtomicUsize::new(0)).collect();
    let mut rng = Rng::with_seed(43 * 43);
    let start = Instant::now();
    for n in 0..p.iterations {
        thread::scope(|s| {
            for tid in 0..p.threads {
                let transfer = &transfer;
                s.spawn(move || stress(a, p, tid, transfer));
            }
        });
        for slot in &transfer {
            if chance(50, &mut rng) || n + 1 == p.iterations {
                // SAFETY: a slot holds 0 or a live block nobody else holds;
                // the threads that could swap it are gone.
                unsafe { free_items(a, slot.swap(0, Ordering::Acquire)) };
            }
        }
    }
    start.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::counting::Counting;

    #[test]
    fn mstress_frees_everything_it_allocates() {
        let a = Counting::default();
        let p = Mstress {
            threads: 3,
            scale: 1,
            iterations: 3,
        };
        run(&a, &p);
        assert_eq!(a.live_blocks(), 0);
        assert_eq!(a.live_bytes(), 0);
        assert_eq!(a.allocations() as u64, p.ops());
        // The main thread, then each thread of each iteration.
        assert_eq!(a.entered(), 1 + p.threads * p.iterations);
    }

    #[test]
    fn some_threads_do_more() {
        let p = Mstress::mimalloc_bench(2);
        // tid 0: 5000 + 2500, tid 1: 10000 + 5000, per iteration.
        assert_eq!(p.ops(), (7_500 + 15_000) * 25);
    }

    #[test]
    #[should_panic(expected = "memory corruption")]
    fn a_broken_pattern_is_caught() {
        let a = Counting::default();
        let mut rng = Rng::with_seed(1);
        let addr = alloc_items(&a, 4, &mut rng);
        // SAFETY: at least 4 words were allocated; the test breaks word 1.
        unsafe { (addr as *mut usize).add(1).write(0) };
        // SAFETY: a live block from alloc_items (leaked by the panic).
        unsafe { free_items(&a, addr) };
    }
}
