//! cache-scratch (Hoard's benchmark of passive false sharing, Emery Berger),
//! as mimalloc-bench runs it: `cache-scratch $procs 1000 1 2000000 $procs`
//! (threads, iterations, object size, repetitions, concurrency).
//!
//! The main thread allocates one small object per thread, back to back (so
//! they share a cache line), and hands one to each thread. Each thread frees
//! the object it was given, then 1000 times allocates an object of the same
//! size, writes and reads each of its bytes `repetitions / threads` times,
//! and frees it. An allocator that hands the freed object (or its
//! neighbour) back to the thread that freed it puts two threads' hot objects
//! on one cache line, and every write then bounces the line between cores;
//! one that serves each thread from its own memory does not. What it
//! stresses: where a thread's allocations land after a remote free.
//!
//! The port keeps every parameter but `repetitions`, which is smaller in the
//! report (the writes, not the allocator calls, are the original's run
//! time). One op: one byte written and read.

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use super::{alloc_bytes, free_bytes};
use crate::raw_alloc::RawAlloc;

/// cache-scratch's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheScratch {
    /// Threads (`$procs`).
    pub threads: usize,
    /// Objects each thread allocates, writes and frees (1000).
    pub iterations: usize,
    /// The objects' size in bytes (1).
    pub object_size: usize,
    /// Writes of each byte, shared among the threads (2,000,000).
    pub repetitions: usize,
}

impl CacheScratch {
    /// mimalloc-bench's parameters on `threads` threads.
    pub fn mimalloc_bench(threads: usize) -> CacheScratch {
        CacheScratch {
            threads,
            iterations: 1000,
            object_size: 1,
            repetitions: 2_000_000,
        }
    }

    /// The same with `repetitions` repetitions.
    pub fn with_repetitions(self, repetitions: usize) -> CacheScratch {
        CacheScratch {
            repetitions,
            ..self
        }
    }

    /// Bytes written (and read) in one run.
    pub fn ops(&self) -> u64 {
        (self.threads * self.iterations * (self.repetitions / self.threads) * self.object_size)
            as u64
    }
}

/// Runs cache-scratch once on `a` and returns the time from the threads'
/// start to their end.
pub fn run<A: RawAlloc>(a: &A, p: &CacheScratch) -> Duration {
    assert!(p.threads > 0 && p.object_size > 0);
    let _entered = a.enter_allocating_thread();
    let given: Vec<usize> = (0..p.threads)
        .map(|_| alloc_bytes(a, p.object_size) as usize)
        .collect();
    let start = Instant::now();
    thread::scope(|s| {
        for &obj in &given {
            s.spawn(move || scratch(a, p, obj));
        }
    });
    start.elapsed()
}

fn scratch<A: RawAlloc>(a: &A, p: &CacheScratch, given: usize) {
    let _entered = a.enter_allocating_thread();
    // SAFETY: the main thread allocated it with `object_size` and gave it to
    // this thread alone.
    unsafe { free_bytes(a, given as *mut u8, p.object_size) };
    let repetitions = p.repetitions / p.threads;
    for _ in 0..p.iterations {
        let obj = alloc_bytes(a, p.object_size);
        for _ in 0..repetitions {
            for k in 0..p.object_size {
                // SAFETY: `obj` holds `object_size` bytes. Volatile, as the
                // original's, so every write reaches the cache line.
                unsafe {
                    obj.add(k).write_volatile(k as u8);
                    black_box(obj.add(k).read_volatile().wrapping_add(1));
                }
            }
        }
        // SAFETY: allocated above with `object_size`, freed once.
        unsafe { free_bytes(a, obj, p.object_size) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::counting::Counting;

    #[test]
    fn cache_scratch_frees_everything_it_allocates() {
        let a = Counting::default();
        let p = CacheScratch {
            threads: 3,
            iterations: 10,
            object_size: 8,
            repetitions: 30,
        };
        run(&a, &p);
        assert_eq!(a.live_blocks(), 0);
        assert_eq!(a.live_bytes(), 0);
        assert_eq!(a.allocations(), p.threads * (1 + p.iterations));
        assert_eq!(a.entered(), 1 + p.threads);
        assert_eq!(p.ops(), 3 * 10 * 10 * 8);
    }
}
