//! larson (Larson and Krishnan, "Memory Allocation for Long-Running Server
//! Applications", ISMM 1998), as mimalloc-bench runs it:
//! `larson 5 8 1000 5000 100 4141 $procs`.
//!
//! A server's threads each own a slice of 5000 live blocks of 8–999 bytes
//! and replace a random one at a time: free it, allocate a block of a random
//! size in its place, write its first two bytes. A thread lives for 100
//! rounds of its slice (500,000 replacements), then starts its successor on
//! the same slice and exits, so every generation frees blocks that a thread
//! now gone allocated (the first generation: blocks the main thread
//! allocated in the warm-up). What it stresses: frees of objects whose
//! allocating thread is dead, and the reuse of a dead thread's memory.
//!
//! The original replaces blocks for 5 seconds, starting generation after
//! generation, and reports replacements per second; here each slice lives
//! through a fixed number of generations ([`Larson::generations`]) and the
//! time is taken from the first generation's start to the last one's exit
//! (thread start and exit included, as in the original). The main thread's
//! warm-up is the original's, untimed: allocate every slice's blocks,
//! shuffle them across slices, then 4 random replacements per block.
//! One op: one replacement (a free and an allocation).

use std::thread::{self, Scope};
use std::time::{Duration, Instant};

use fastrand::Rng;

use super::{alloc_bytes, free_bytes};
use crate::raw_alloc::RawAlloc;

/// larson's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Larson {
    /// Threads, each with its slice (`$procs`).
    pub threads: usize,
    /// Smallest block size (8).
    pub min_size: usize,
    /// Blocks are smaller than this (1000).
    pub max_size: usize,
    /// Live blocks per thread (5000).
    pub chunks_per_thread: usize,
    /// Rounds of its slice a thread does before its successor takes over (100).
    pub rounds: usize,
    /// Threads that live one after the other on each slice: the original
    /// starts them for 5 seconds.
    pub generations: usize,
    /// The random seed (4141).
    pub seed: u64,
}

impl Larson {
    /// mimalloc-bench's parameters on `threads` threads, one generation.
    pub fn mimalloc_bench(threads: usize) -> Larson {
        Larson {
            threads,
            min_size: 8,
            max_size: 1000,
            chunks_per_thread: 5000,
            rounds: 100,
            generations: 1,
            seed: 4141,
        }
    }

    /// The same with `generations` generations per slice.
    pub fn with_generations(self, generations: usize) -> Larson {
        Larson {
            generations,
            ..self
        }
    }

    /// Replacements one run times.
    pub fn ops(&self) -> u64 {
        (self.threads * self.generations * self.chunks_per_thread * self.rounds) as u64
    }

    fn random_size(&self, rng: &mut Rng) -> usize {
        rng.usize(self.min_size..self.max_size)
    }
}

/// A live block: its address and size.
#[derive(Clone, Copy)]
struct Block {
    addr: usize,
    size: usize,
}

/// Runs larson once on `a` and returns the time of the timed part.
pub fn run<A: RawAlloc>(a: &A, p: &Larson) -> Duration {
    assert!(p.min_size >= 2, "each block's first two bytes are written");
    assert!(p.max_size > p.min_size);
    let _entered = a.enter_allocating_thread();
    let mut rng = Rng::with_seed(p.seed);
    let mut blocks = warm_up(a, p, &mut rng);
    let rngs: Vec<Rng> = (0..p.threads).map(|_| rng.fork()).collect();

    let start = Instant::now();
    thread::scope(|s| {
        for (slice, rng) in blocks.chunks_mut(p.chunks_per_thread).zip(rngs) {
            generation(s, a, p, slice, rng, 1);
        }
    });
    let elapsed = start.elapsed();

    for b in blocks {
        // SAFETY: every slot holds a live block of its size.
        unsafe { free_bytes(a, b.addr as *mut u8, b.size) };
    }
    elapsed
}

/// Starts the thread of generation `n` on `slice`: it replaces blocks for
/// [`Larson::rounds`] rounds of its slice, starts generation `n + 1` unless
/// it is the last, and exits.
fn generation<'scope, 'env, A: RawAlloc>(
    s: &'scope Scope<'scope, 'env>,
    a: &'env A,
    p: &'env Larson,
    slice: &'env mut [Block],
    mut rng: Rng,
    n: usize,
) {
    s.spawn(move || {
        {
            let _entered = a.enter_allocating_thread();
            for _ in 0..p.rounds * slice.len() {
                let victim = &mut slice[rng.usize(..slice.len())];
                // SAFETY: the slot holds a live block of its size; it is
                // replaced at once.
                unsafe { free_bytes(a, victim.addr as *mut u8, victim.size) };
                let size = p.random_size(&mut rng);
                let ptr = alloc_bytes(a, size);
                // SAFETY: a fresh block of at least `min_size >= 2` bytes.
                unsafe {
                    ptr.write_volatile(b'a');
                    ptr.add(1).write_volatile(b'b');
                }
                *victim = Block {
                    addr: ptr as usize,
                    size,
                };
            }
        }
        if n < p.generations {
            generation(s, a, p, slice, rng, n + 1);
        }
    });
}

/// The original's warm-up on the main thread: allocate every block, shuffle
/// them across the slices, then replace 4 blocks per block at random.
fn warm_up<A: RawAlloc>(a: &A, p: &Larson, rng: &mut Rng) -> Vec<Block> {
    let n = p.threads * p.chunks_per_thread;
    let mut blocks: Vec<Block> = (0..n)
        .map(|_| {
            let size = p.random_size(rng);
            Block {
                addr: alloc_bytes(a, size) as usize,
                size,
            }
        })
        .collect();
    rng.shuffle(&mut blocks);
    for _ in 0..4 * n {
        let victim = &mut blocks[rng.usize(..n)];
        // SAFETY: the slot holds a live block of its size; replaced at once.
        unsafe { free_bytes(a, victim.addr as *mut u8, victim.size) };
        let size = p.random_size(rng);
        *victim = Block {
            addr: alloc_bytes(a, size) as usize,
            size,
        };
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::counting::Counting;

    fn small() -> Larson {
        Larson {
            threads: 3,
            chunks_per_thread: 50,
            rounds: 4,
            generations: 3,
            ..Larson::mimalloc_bench(3)
        }
    }

    #[test]
    fn larson_frees_everything_it_allocates() {
        let a = Counting::default();
        let p = small();
        run(&a, &p);
        assert_eq!(a.live_blocks(), 0);
        assert_eq!(a.live_bytes(), 0);
        let warm_up = 5 * p.threads * p.chunks_per_thread;
        assert_eq!(a.allocations() as u64, warm_up as u64 + p.ops());
    }

    #[test]
    fn every_generation_of_every_slice_enters_the_allocator() {
        let a = Counting::default();
        let p = small();
        run(&a, &p);
        // The main thread, then each thread of each slice.
        assert_eq!(a.entered(), 1 + p.threads * p.generations);
    }

    #[test]
    fn ops_are_replacements_of_all_generations() {
        let p = Larson::mimalloc_bench(2).with_generations(3);
        assert_eq!(p.ops(), 2 * 3 * 5000 * 100);
    }
}
