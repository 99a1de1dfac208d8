//! A bounded single-producer single-consumer ring of raw pointers.
//!
//! The `remote` workload hands objects from one thread to another through
//! this ring rather than a channel: a channel parks the waiting side, and a
//! futex wake per batch costs more than the 64 allocations in it, so the
//! workload would time the channel. Here both sides spin briefly and then
//! yield, and a batch is published with one release store.
//!
//! The producer closes the ring when it is done, also when it panics, so a
//! consumer waiting for objects that will never come stops instead of
//! spinning forever.

use std::cell::UnsafeCell;
use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;

/// An index on its own cache line pair, so the producer's and the consumer's
/// stores do not contend for one line.
#[repr(align(128))]
struct Padded(AtomicUsize);

/// The ring. Positions only grow; a position `p` lives in slot `p % capacity`.
pub struct Ring {
    slots: Box<[UnsafeCell<*mut u8>]>,
    /// Next position the consumer reads; written only by the consumer.
    head: Padded,
    /// Next position the producer writes; written only by the producer.
    tail: Padded,
    /// Set by the producer when it will publish nothing more.
    closed: AtomicBool,
}

// SAFETY: a slot is written only by the producer while its position is in
// `tail..head + capacity` and read only by the consumer while it is in
// `head..tail`; the release store of `tail` (resp. `head`) after the writes
// (resp. reads) and the acquire load on the other side order the accesses, so
// no slot is ever accessed by both threads at once. The pointers themselves
// are owned blocks passed from the one thread to the other.
unsafe impl Sync for Ring {}

/// Spins a little, then yields: the other side is usually a few allocations
/// away, but on a loaded 2-core machine it may not be running at all.
fn wait(spins: &mut u32) {
    if *spins < 100 {
        spin_loop();
        *spins += 1;
    } else {
        thread::yield_now();
    }
}

impl Ring {
    /// An empty ring of `capacity` slots.
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "a ring needs a slot");
        Ring {
            slots: (0..capacity)
                .map(|_| UnsafeCell::new(std::ptr::null_mut()))
                .collect(),
            head: Padded(AtomicUsize::new(0)),
            tail: Padded(AtomicUsize::new(0)),
            closed: AtomicBool::new(false),
        }
    }

    /// Producer side: nothing more will be published. Pointers already
    /// published are still handed to the consumer.
    pub fn close(&self) {
        // Release: orders the producer's last `tail` store before the flag.
        self.closed.store(true, Ordering::Release);
    }

    /// Producer side: waits for `len` free slots, fills them with `fill(i)` for
    /// `i` in `0..len`, and publishes them at once.
    ///
    /// # Safety
    ///
    /// Only one thread at a time calls `push_batch`, and `len` is at most the
    /// capacity.
    pub unsafe fn push_batch(&self, len: usize, mut fill: impl FnMut(usize) -> *mut u8) {
        let cap = self.slots.len();
        debug_assert!(len <= cap);
        // Relaxed: only this thread writes `tail`.
        let tail = self.tail.0.load(Ordering::Relaxed);
        let mut spins = 0;
        // Acquire: the consumer's reads of these slots happen before we reuse them.
        while tail + len - self.head.0.load(Ordering::Acquire) > cap {
            wait(&mut spins);
        }
        for i in 0..len {
            // SAFETY: position `tail + i` is free (checked above) and only the
            // producer writes free slots.
            unsafe { *self.slots[(tail + i) % cap].get() = fill(i) };
        }
        // Release: publishes the slot writes above to the consumer.
        self.tail.0.store(tail + len, Ordering::Release);
    }

    /// Consumer side: waits until some pointers are published, passes each to
    /// `take`, frees their slots, and returns how many there were: 0 only
    /// once the ring is closed and empty.
    ///
    /// # Safety
    ///
    /// Only one thread at a time calls `pop_all`.
    pub unsafe fn pop_all(&self, mut take: impl FnMut(*mut u8)) -> usize {
        let cap = self.slots.len();
        // Relaxed: only this thread writes `head`.
        let head = self.head.0.load(Ordering::Relaxed);
        let mut spins = 0;
        // Acquire: pairs with the producer's release of `tail`.
        let tail = loop {
            let tail = self.tail.0.load(Ordering::Acquire);
            if tail != head {
                break tail;
            }
            // Acquire: pairs with `close`; the load of `tail` after it then
            // sees the producer's last publication.
            if self.closed.load(Ordering::Acquire) {
                let tail = self.tail.0.load(Ordering::Acquire);
                if tail == head {
                    return 0;
                }
                break tail;
            }
            wait(&mut spins);
        };
        for pos in head..tail {
            // SAFETY: positions `head..tail` are published and only the
            // consumer reads them.
            take(unsafe { *self.slots[pos % cap].get() });
        }
        // Release: our reads happen before the producer reuses the slots.
        self.head.0.store(tail, Ordering::Release);
        tail - head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pointer_arrives_once_and_in_order() {
        let ring = Ring::new(8);
        let total = 1000;
        thread::scope(|s| {
            s.spawn(|| {
                let mut next = 1;
                while next <= total {
                    let len = 3.min(total + 1 - next);
                    // SAFETY: the only producer; 3 <= capacity.
                    unsafe { ring.push_batch(len, |i| (next + i) as *mut u8) };
                    next += len;
                }
                ring.close();
            });
            let mut expected = 1;
            while expected <= total {
                // SAFETY: the only consumer.
                unsafe {
                    ring.pop_all(|p| {
                        assert_eq!(p as usize, expected);
                        expected += 1;
                    })
                };
            }
            // SAFETY: the only consumer.
            assert_eq!(unsafe { ring.pop_all(|_| panic!("nothing left")) }, 0);
        });
    }

    #[test]
    fn a_closed_empty_ring_stops_its_consumer() {
        let ring = Ring::new(4);
        // SAFETY: the only producer and consumer, one after the other.
        unsafe { ring.push_batch(2, |i| (i + 1) as *mut u8) };
        ring.close();
        let mut got = Vec::new();
        // SAFETY: the only consumer.
        assert_eq!(unsafe { ring.pop_all(|p| got.push(p as usize)) }, 2);
        // SAFETY: as above.
        assert_eq!(unsafe { ring.pop_all(|_| panic!("empty")) }, 0);
        assert_eq!(got, [1, 2]);
    }
}
