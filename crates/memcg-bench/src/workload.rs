//! The workloads of DESIGN.md §7, each timing only its own steady-state loop.
//!
//! A raw workload takes an allocator and a number of operations and returns the
//! time those operations took; setup (filling the live set) and teardown are
//! not timed. Every object is written once after allocation, as a program
//! would, which also keeps an allocation/free pair from being optimized away.

use std::alloc::{handle_alloc_error, Layout};
use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use fastrand::Rng;

use crate::affinity;
use crate::raw_alloc::RawAlloc;
use crate::ring::Ring;

/// One row group of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Alloc+free of one 64-byte object, single thread. One op: one pair.
    Single64,
    /// [`CHURN_LIVE`] live objects of 16–256 bytes, replaced at random. One op:
    /// free a random slot and allocate a new object of random size into it.
    Churn,
    /// One thread allocates 64-byte objects in batches, another, on another
    /// core, frees them. One op: one object allocated and freed.
    Remote,
    /// Build and drop a `HashMap<String, Vec<u8>>` of [`STD_ENTRIES`] entries with
    /// the allocator as the global one. One op: one entry.
    Std,
    /// mimalloc-bench's larson, ported ([`crate::ports::larson`]), on the
    /// global allocator. One op: one replacement.
    Larson,
    /// mimalloc-bench's xmalloc-test, ported ([`crate::ports::xmalloc`]), on
    /// the global allocator. One op: one object allocated and freed.
    Xmalloc,
    /// mimalloc-bench's mstress, ported ([`crate::ports::mstress`]), on the
    /// global allocator. One op: one allocation.
    Mstress,
    /// mimalloc-bench's cache-scratch, ported ([`crate::ports::cache_scratch`]),
    /// on the global allocator. One op: one byte written and read.
    CacheScratch,
    /// Parse a generated JSON document into a `serde_json::Value`, keep a
    /// few subtrees, drop the rest, then them ([`crate::real_world::json`]).
    /// One op: one JSON value.
    Json,
    /// Build `String`s of varied lengths, sort them, drop them
    /// ([`crate::real_world::strings`]). One op: one string.
    Strings,
    /// Fill a `BTreeMap<u64, String>`, then empty it in random order
    /// ([`crate::real_world::btree`]). One op: one insert or remove.
    Btree,
}

impl Workload {
    /// All workloads, in report order.
    pub const ALL: [Workload; 11] = [
        Workload::Single64,
        Workload::Churn,
        Workload::Remote,
        Workload::Std,
        Workload::Larson,
        Workload::Xmalloc,
        Workload::Mstress,
        Workload::CacheScratch,
        Workload::Json,
        Workload::Strings,
        Workload::Btree,
    ];

    /// The real-world suite ([`crate::real_world`]), whose rows also report
    /// the child's peak RSS.
    pub const REAL_WORLD: [Workload; 3] = [Workload::Json, Workload::Strings, Workload::Btree];

    /// The name printed in the report and accepted by `--workload`.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Single64 => "single64",
            Workload::Churn => "churn",
            Workload::Remote => "remote",
            Workload::Std => "std",
            Workload::Larson => "larson",
            Workload::Xmalloc => "xmalloc",
            Workload::Mstress => "mstress",
            Workload::CacheScratch => "cache-scratch",
            Workload::Json => "json",
            Workload::Strings => "strings",
            Workload::Btree => "btree",
        }
    }

    /// Whether the workload runs on the process's global allocator, in a
    /// child process per allocator ([`crate::global`]), rather than on a
    /// [`RawAlloc`] in the report's process.
    pub fn on_global_allocator(self) -> bool {
        !matches!(
            self,
            Workload::Single64 | Workload::Churn | Workload::Remote
        )
    }

    /// Whether the workload is one of the real-world suite
    /// ([`Workload::REAL_WORLD`]).
    pub fn is_real_world(self) -> bool {
        Workload::REAL_WORLD.contains(&self)
    }

    /// The workload called `name`, if any.
    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }
}

/// Live objects in the churn workload.
pub const CHURN_LIVE: usize = 100_000;
/// Entries in the std workload's map.
pub const STD_ENTRIES: usize = 100_000;
/// Objects handed over at once in the remote workload.
pub const REMOTE_BATCH: usize = 64;

const CHURN_SEED: u64 = 0x6d65_6d63_6763_6875; // "memcgchu"
const OBJECT_64: Layout = match Layout::from_size_align(64, 8) {
    Ok(layout) => layout,
    Err(_) => panic!("64-byte layout"),
};

/// Allocates `layout` on `a` and writes its first byte.
#[inline(always)]
fn alloc_touched<A: RawAlloc>(a: &A, layout: Layout, byte: u8) -> *mut u8 {
    // SAFETY: every layout used here has a non-zero size.
    let ptr = unsafe { a.alloc(layout) };
    if ptr.is_null() {
        handle_alloc_error(layout);
    }
    // SAFETY: `ptr` is a fresh block of at least one byte.
    unsafe { ptr.write(byte) };
    ptr
}

/// `ops` alloc+free pairs of one 64-byte object on one thread.
pub fn single64<A: RawAlloc>(a: &A, ops: u64) -> Duration {
    let _entered = a.enter_allocating_thread();
    let start = Instant::now();
    for i in 0..ops {
        let ptr = black_box(alloc_touched(a, OBJECT_64, i as u8));
        // SAFETY: `ptr` was just allocated with `OBJECT_64` and is freed once.
        unsafe { a.dealloc(ptr, OBJECT_64) };
    }
    start.elapsed()
}

fn churn_layout(rng: &mut Rng) -> Layout {
    let size = rng.usize(16..=256);
    Layout::from_size_align(size, 8).expect("churn sizes are small")
}

/// `ops` random replacements in a set of [`CHURN_LIVE`] live objects of
/// 16–256 bytes. Filling and emptying the set are not timed.
pub fn churn<A: RawAlloc>(a: &A, ops: u64) -> Duration {
    let _entered = a.enter_allocating_thread();
    let mut rng = Rng::with_seed(CHURN_SEED);
    let mut live: Vec<(*mut u8, Layout)> = (0..CHURN_LIVE)
        .map(|i| {
            let layout = churn_layout(&mut rng);
            (alloc_touched(a, layout, i as u8), layout)
        })
        .collect();

    let start = Instant::now();
    for i in 0..ops {
        let slot = &mut live[rng.usize(..CHURN_LIVE)];
        // SAFETY: each slot holds a live block allocated with its layout.
        unsafe { a.dealloc(slot.0, slot.1) };
        let layout = churn_layout(&mut rng);
        *slot = (alloc_touched(a, layout, i as u8), layout);
    }
    let elapsed = start.elapsed();

    for (ptr, layout) in live {
        // SAFETY: as above; the set is dropped with the loop.
        unsafe { a.dealloc(ptr, layout) };
    }
    elapsed
}

/// Pointers the ring holds: a few batches of slack lets both threads run
/// without waiting on each other.
const REMOTE_RING: usize = 16 * REMOTE_BATCH;

/// Closes the ring when the producer is done, also when it unwinds.
struct CloseOnDrop<'a>(&'a Ring);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// `objects` 64-byte objects allocated on one thread and freed on another,
/// handed over in batches of [`REMOTE_BATCH`] through a [`Ring`]. The two
/// threads are pinned to two different cores when the process may use two
/// (see [`crate::affinity`]). Only the producer enters the allocator's group
/// ([`RawAlloc::enter_allocating_thread`]): the consumer just frees. Timed
/// from the producer's first allocation to the consumer's last free;
/// spawning, pinning and entering are not timed. A panic on either thread is
/// passed on to the caller with its own message.
pub fn remote<A: RawAlloc>(a: &A, objects: u64) -> Duration {
    let ring = Ring::new(REMOTE_RING);
    let ready = Barrier::new(2);
    let cpus = affinity::two_cpus();
    thread::scope(|s| {
        let producer = s.spawn(|| {
            let _close = CloseOnDrop(&ring);
            if let Some([cpu, _]) = cpus {
                affinity::pin_current_thread(cpu);
            }
            ready.wait();
            // After the barrier, so that a failure here cannot leave the
            // consumer waiting at it.
            let _entered = a.enter_allocating_thread();
            let start = Instant::now();
            let mut sent = 0;
            while sent < objects {
                let len = (objects - sent).min(REMOTE_BATCH as u64);
                // SAFETY: this is the ring's only producer; a batch fits.
                unsafe {
                    ring.push_batch(len as usize, |i| {
                        alloc_touched(a, OBJECT_64, (sent as usize + i) as u8)
                    })
                };
                sent += len;
            }
            start
        });
        let consumer = s.spawn(|| {
            if let Some([_, cpu]) = cpus {
                affinity::pin_current_thread(cpu);
            }
            ready.wait();
            let mut freed = 0;
            while freed < objects {
                // SAFETY: this is the ring's only consumer. Each pointer was
                // allocated with `OBJECT_64` by the producer, which gave it up
                // when it published it; it is freed once, here.
                let n = unsafe { ring.pop_all(|ptr| a.dealloc(ptr, OBJECT_64)) };
                if n == 0 {
                    break; // the producer stopped early: its join says why
                }
                freed += n as u64;
            }
            Instant::now()
        });
        let start = producer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let end = consumer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        end - start
    })
}

/// Builds and drops a `HashMap<String, Vec<u8>>` of `entries` entries on the
/// global allocator, whichever it is; the map grows as it would in a program.
pub fn std_map(entries: usize) -> Duration {
    use std::collections::HashMap;

    let start = Instant::now();
    let mut map = HashMap::new();
    for i in 0..entries {
        map.insert(format!("key-{i}"), vec![i as u8; 8 + i % 120]);
    }
    drop(black_box(map));
    start.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw_alloc::Peer;
    use std::alloc::System;

    #[test]
    fn workload_names_round_trip() {
        for w in Workload::ALL {
            assert_eq!(Workload::from_name(w.name()), Some(w));
        }
    }

    #[test]
    fn only_the_three_raw_workloads_run_in_the_report_process() {
        let raw: Vec<_> = Workload::ALL
            .into_iter()
            .filter(|w| !w.on_global_allocator())
            .collect();
        assert_eq!(raw, [Workload::Single64, Workload::Churn, Workload::Remote]);
    }

    #[test]
    fn raw_workloads_run_on_a_peer() {
        let a = Peer(System);
        single64(&a, 1000);
        churn(&a, 1000);
        remote(&a, 1000);
        std_map(1000);
    }
}
