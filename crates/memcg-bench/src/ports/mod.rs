//! Ports of mimalloc-bench's multi-threaded workloads (DESIGN.md §7):
//! [`larson`], [`xmalloc`], [`mstress`] and [`cache_scratch`].
//!
//! Each port keeps what its original measures — the sizes, the live set,
//! which thread allocates and which frees, threads that exit with their
//! objects still alive — and differs in one way: the originals run for a
//! fixed time and count operations, the ports do a fixed amount of work and
//! time it, so one run is one repetition of the report and ns/op compares
//! allocators directly. The scale of each (how much work) is set per report
//! mode in [`Scale`]; the module of each port says how its parameters map to
//! mimalloc-bench's command line.
//!
//! The ports are generic over [`RawAlloc`] and make every allocation they time
//! through it. The report runs each in a child process per allocator, on
//! [`ProcessGlobal`](crate::raw_alloc::ProcessGlobal): the process's global
//! allocator, as mimalloc-bench runs the C programs under `LD_PRELOAD`. Their
//! bookkeeping (`Vec`s of pointers, a queue) also uses the global allocator,
//! as the originals' does. Every thread a port runs on calls
//! [`RawAlloc::enter_allocating_thread`] before its first allocation, so with
//! memcg every one of them is in the child's group.
//!
//! Every port frees everything it allocates before it returns (the tests
//! check it with a counting allocator).

use std::alloc::{handle_alloc_error, Layout};

use crate::raw_alloc::RawAlloc;
use crate::real_world::RealWorld;

pub mod cache_scratch;
pub mod larson;
pub mod mstress;
pub mod xmalloc;

pub use cache_scratch::CacheScratch;
pub use larson::Larson;
pub use mstress::Mstress;
pub use xmalloc::Xmalloc;

/// The alignment the ports ask for: what C's `malloc` callers may assume for
/// these sizes, as the churn workload does.
pub(crate) const ALIGN: usize = 8;

/// The threads a port runs, as mimalloc-bench passes `$procs` (the cores the
/// process may use): at least 2, so objects always cross threads, and at
/// most 8, so a big machine does not make the report long.
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8)
}

/// The work each workload on the global allocator does in one repetition:
/// each port, and the real-world suite ([`crate::real_world`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scale {
    /// larson's parameters.
    pub larson: Larson,
    /// xmalloc-test's parameters.
    pub xmalloc: Xmalloc,
    /// mstress's parameters.
    pub mstress: Mstress,
    /// cache-scratch's parameters.
    pub cache_scratch: CacheScratch,
    /// The sizes of `json`, `strings` and `btree`.
    pub real_world: RealWorld,
}

impl Scale {
    /// `--quick`: each port's repetition takes a few tenths of a second on 2
    /// cores, so the four ports on five allocators stay within a minute.
    pub fn quick() -> Scale {
        let threads = threads();
        Scale {
            larson: Larson::mimalloc_bench(threads).with_generations(2),
            xmalloc: Xmalloc::mimalloc_bench(threads).with_batches(200),
            mstress: Mstress::mimalloc_bench(threads).with_iterations(10),
            cache_scratch: CacheScratch::mimalloc_bench(threads).with_repetitions(100_000),
            real_world: RealWorld::quick(),
        }
    }

    /// The default report: twice the quick work per repetition.
    pub fn full() -> Scale {
        let threads = threads();
        Scale {
            larson: Larson::mimalloc_bench(threads).with_generations(4),
            xmalloc: Xmalloc::mimalloc_bench(threads).with_batches(400),
            mstress: Mstress::mimalloc_bench(threads).with_iterations(20),
            cache_scratch: CacheScratch::mimalloc_bench(threads).with_repetitions(200_000),
            real_world: RealWorld::full(),
        }
    }
}

/// Allocates `size` bytes (aligned to [`ALIGN`]) on `a`; aborts through
/// `handle_alloc_error` on failure, as the originals `assert` they got memory.
#[inline]
pub(crate) fn alloc_bytes<A: RawAlloc>(a: &A, size: usize) -> *mut u8 {
    let layout = layout(size);
    // SAFETY: every size the ports ask for is at least 1.
    let ptr = unsafe { a.alloc(layout) };
    if ptr.is_null() {
        handle_alloc_error(layout);
    }
    ptr
}

/// Frees `ptr`, allocated by [`alloc_bytes`] on `a` with `size`.
///
/// # Safety
///
/// `ptr` came from `alloc_bytes(a, size)` and is freed once.
#[inline]
pub(crate) unsafe fn free_bytes<A: RawAlloc>(a: &A, ptr: *mut u8, size: usize) {
    // SAFETY: the caller's contract.
    unsafe { a.dealloc(ptr, layout(size)) }
}

#[inline]
fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, ALIGN).expect("port sizes are far below isize::MAX")
}

#[cfg(test)]
pub(crate) mod counting {
    //! An allocator for tests that counts what is live, and how many threads
    //! entered it.

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

    use crate::raw_alloc::RawAlloc;

    /// The system allocator, counting live blocks and bytes and the calls to
    /// `enter_allocating_thread`.
    #[derive(Default)]
    pub struct Counting {
        live_blocks: AtomicIsize,
        live_bytes: AtomicIsize,
        allocations: AtomicUsize,
        entered: AtomicUsize,
    }

    impl Counting {
        /// Blocks allocated and not freed.
        pub fn live_blocks(&self) -> isize {
            self.live_blocks.load(Ordering::Relaxed)
        }

        /// Bytes allocated and not freed.
        pub fn live_bytes(&self) -> isize {
            self.live_bytes.load(Ordering::Relaxed)
        }

        /// Allocations made.
        pub fn allocations(&self) -> usize {
            self.allocations.load(Ordering::Relaxed)
        }

        /// Threads that entered (calls to `enter_allocating_thread`).
        pub fn entered(&self) -> usize {
            self.entered.load(Ordering::Relaxed)
        }
    }

    // SAFETY: forwards to `System`, which makes every promise `RawAlloc` asks.
    unsafe impl RawAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            self.live_blocks.fetch_add(1, Ordering::Relaxed);
            self.live_bytes
                .fetch_add(layout.size() as isize, Ordering::Relaxed);
            self.allocations.fetch_add(1, Ordering::Relaxed);
            // SAFETY: forwarded caller contract.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            self.live_blocks.fetch_sub(1, Ordering::Relaxed);
            self.live_bytes
                .fetch_sub(layout.size() as isize, Ordering::Relaxed);
            // SAFETY: forwarded caller contract.
            unsafe { System.dealloc(ptr, layout) }
        }

        fn enter_allocating_thread(&self) -> Option<memcg::EnterGuard> {
            self.entered.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}
