//! xmalloc-test (Lever and Boreham, "malloc() Performance in a Multithreaded
//! Linux Environment", USENIX 2000), as mimalloc-bench runs it:
//! `xmalloc-test -w $procs -t 5 -s 64`.
//!
//! `-w` allocator threads and as many releaser threads. An allocator
//! allocates a batch (a block of 4096 pointers, 32 KiB, itself from the
//! allocator), fills it with 4096 fresh 64-byte objects, writing each whole
//! object, and pushes it on a shared stack of at most 100 batches, guarded
//! by a mutex with two condition variables. A releaser pops a batch, frees
//! its 4096 objects and the batch. What it stresses: every object is freed
//! by another thread than the one that allocated it, in bulk, while that
//! thread keeps allocating.
//!
//! The original runs for 5 seconds and reports frees per second; here each
//! allocator thread fills a fixed number of batches ([`Xmalloc::batches`])
//! and the releasers stop once they took them all. One op: one object
//! allocated and freed.

use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{alloc_bytes, free_bytes};
use crate::raw_alloc::RawAlloc;

/// Objects per batch, as in the original.
pub const OBJECTS_PER_BATCH: usize = 4096;

/// xmalloc-test's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Xmalloc {
    /// Allocator threads, and as many releasers (`-w`, `$procs`).
    pub workers: usize,
    /// The objects' size (`-s 64`).
    pub object_size: usize,
    /// Batches each allocator thread fills: the original fills them for 5
    /// seconds (`-t 5`).
    pub batches: usize,
    /// Batches the stack holds at most before allocators wait (100).
    pub stack_limit: usize,
}

impl Xmalloc {
    /// mimalloc-bench's parameters with `workers` workers, one batch each.
    pub fn mimalloc_bench(workers: usize) -> Xmalloc {
        Xmalloc {
            workers,
            object_size: 64,
            batches: 1,
            stack_limit: 100,
        }
    }

    /// The same with `batches` batches per allocator thread.
    pub fn with_batches(self, batches: usize) -> Xmalloc {
        Xmalloc { batches, ..self }
    }

    /// Objects one run allocates and frees.
    pub fn ops(&self) -> u64 {
        (self.workers * self.batches * OBJECTS_PER_BATCH) as u64
    }
}

/// A batch: the pointers of its objects. Allocated from the allocator under
/// test, as the original's `struct batch` is.
#[repr(C)]
struct Batch {
    objects: [*mut u8; OBJECTS_PER_BATCH],
}

const BATCH_SIZE: usize = std::mem::size_of::<Batch>();

/// The shared stack of full batches (their addresses), and how many batches
/// releasers have taken so far.
struct Stack {
    batches: Vec<usize>,
    taken: usize,
}

/// The stack with its lock and the original's two condition variables.
struct Queue {
    stack: Mutex<Stack>,
    not_empty: Condvar,
    not_full: Condvar,
    limit: usize,
    total: usize,
}

impl Queue {
    fn push(&self, batch: usize) {
        let mut st = self.stack.lock().expect("no worker panicked");
        while st.batches.len() >= self.limit {
            st = self.not_full.wait(st).expect("no worker panicked");
        }
        st.batches.push(batch);
        self.not_empty.notify_one();
    }

    /// The next batch, or `None` once every batch of the run was taken.
    fn pop(&self) -> Option<usize> {
        let mut st = self.stack.lock().expect("no worker panicked");
        loop {
            if let Some(batch) = st.batches.pop() {
                st.taken += 1;
                if st.taken == self.total {
                    // The other releasers may be waiting for a batch that
                    // will never come.
                    self.not_empty.notify_all();
                }
                self.not_full.notify_one();
                return Some(batch);
            }
            if st.taken == self.total {
                return None;
            }
            st = self.not_empty.wait(st).expect("no worker panicked");
        }
    }
}

/// Runs xmalloc-test once on `a` and returns the time from the first
/// thread's start to the last thread's end.
pub fn run<A: RawAlloc>(a: &A, p: &Xmalloc) -> Duration {
    assert!(p.object_size > 0 && p.stack_limit > 0);
    let queue = Queue {
        stack: Mutex::new(Stack {
            batches: Vec::with_capacity(p.stack_limit),
            taken: 0,
        }),
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
        limit: p.stack_limit,
        total: p.workers * p.batches,
    };
    let start = Instant::now();
    thread::scope(|s| {
        for _ in 0..p.workers {
            s.spawn(|| release(a, p, &queue));
            s.spawn(|| allocate(a, p, &queue));
        }
    });
    start.elapsed()
}

fn allocate<A: RawAlloc>(a: &A, p: &Xmalloc, queue: &Queue) {
    let _entered = a.enter_allocating_thread();
    for _ in 0..p.batches {
        let batch = alloc_bytes(a, BATCH_SIZE).cast::<Batch>();
        for i in 0..OBJECTS_PER_BATCH {
            let obj = alloc_bytes(a, p.object_size);
            // SAFETY: `obj` is a fresh block of `object_size` bytes (the
            // original writes at most 128 of them); `batch` is a fresh block
            // of one `Batch`, written slot by slot before it is published.
            unsafe {
                obj.write_bytes(i as u8, p.object_size.min(128));
                (&raw mut (*batch).objects[i]).write(obj);
            }
        }
        queue.push(batch as usize);
    }
}

fn release<A: RawAlloc>(a: &A, p: &Xmalloc, queue: &Queue) {
    let _entered = a.enter_allocating_thread();
    while let Some(batch) = queue.pop() {
        let batch = batch as *mut Batch;
        for i in 0..OBJECTS_PER_BATCH {
            // SAFETY: the allocator filled every slot before pushing the
            // batch (the stack's lock orders those writes before this read),
            // and only this releaser took it.
            let obj = unsafe { (&raw const (*batch).objects[i]).read() };
            // SAFETY: each object was allocated with `object_size` and is
            // freed once, by the releaser that took its batch.
            unsafe { free_bytes(a, obj, p.object_size) };
        }
        // SAFETY: the batch was allocated with BATCH_SIZE and is freed once.
        unsafe { free_bytes(a, batch.cast(), BATCH_SIZE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::counting::Counting;

    #[test]
    fn xmalloc_frees_everything_it_allocates() {
        let a = Counting::default();
        let p = Xmalloc {
            workers: 3,
            batches: 5,
            stack_limit: 2,
            ..Xmalloc::mimalloc_bench(3)
        };
        run(&a, &p);
        assert_eq!(a.live_blocks(), 0);
        assert_eq!(a.live_bytes(), 0);
        // Every object, plus one block per batch.
        assert_eq!(
            a.allocations() as u64,
            p.ops() + (p.workers * p.batches) as u64
        );
        // Allocators and releasers alike.
        assert_eq!(a.entered(), 2 * p.workers);
    }

    #[test]
    fn a_batch_is_the_originals_32_kib() {
        assert_eq!(BATCH_SIZE, OBJECTS_PER_BATCH * 8);
        assert_eq!(
            Xmalloc::mimalloc_bench(2).with_batches(3).ops(),
            2 * 3 * 4096
        );
    }
}
