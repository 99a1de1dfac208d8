//! Leaf: `fork()` in a multi-threaded program (DESIGN.md §8).
//!
//! The child of `fork()` has one thread: locks and reader sections that
//! other threads held at that moment would stay held forever. So every
//! section of memcg that holds a lock or a context reader section runs
//! inside a *gate*: a `pthread_atfork` prepare handler closes the gate,
//! waits until no thread is inside it (new entries wait at the door), and
//! only then lets `fork()` copy the process: every lock is free and every
//! structure consistent in the child, as jemalloc and mimalloc arrange by
//! taking their locks around fork. The parent and the child reopen the
//! gate; the child also releases the per-thread state it inherited from
//! threads that do not exist in it, in the order
//! [`lifecycle::Child`](crate::lifecycle::Child) states (heaps, charge
//! stocks, tasks, the deferred worker, the throttling timer).
//!
//! The gate counts threads inside it in cache-line-padded stripes, so that
//! threads entering it at once do not share a counter; a thread inside it
//! re-enters without counting again. The fast paths never enter it.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};

const STRIPES: usize = 16;

#[repr(align(64))]
struct Stripe(AtomicUsize);

static INSIDE: [Stripe; STRIPES] = [const { Stripe(AtomicUsize::new(0)) }; STRIPES];
static CLOSED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Gate sections the thread is in (nested), and its stripe.
    static DEPTH: Cell<(u32, u8)> = const { Cell::new((0, u8::MAX)) };
    /// Set on the forking thread from the prepare handler to the parent's or
    /// child's handler: it passes the gate it closed.
    static FORKER: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is forking (it closed the gate itself).
fn is_forker() -> bool {
    FORKER.try_with(|f| f.get()).unwrap_or(false)
}

/// A section inside the gate; leaving it when dropped.
pub(crate) struct Gate {
    stripe: Option<usize>,
}

impl Gate {
    /// Enter the gate, waiting while a `fork()` is being prepared.
    #[inline]
    pub(crate) fn enter() -> Gate {
        let Ok((depth, stripe)) = DEPTH.try_with(|d| d.get()) else {
            // Thread teardown: count in stripe 0, uncached.
            return Gate {
                stripe: Some(enter_stripe(0)),
            };
        };
        if depth > 0 {
            DEPTH.with(|d| d.set((depth + 1, stripe)));
            return Gate { stripe: None };
        }
        let stripe = if stripe == u8::MAX {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            (NEXT.fetch_add(1, Relaxed) % STRIPES) as u8
        } else {
            stripe
        };
        enter_stripe(stripe as usize);
        DEPTH.with(|d| d.set((1, stripe)));
        Gate { stripe: None }
    }
}

#[inline]
fn enter_stripe(i: usize) -> usize {
    loop {
        // SeqCst on both sides (here: count, then look at CLOSED; prepare:
        // close, then sum the counts): one of the two sees the other.
        INSIDE[i].0.fetch_add(1, SeqCst);
        if !CLOSED.load(SeqCst) || is_forker() {
            return i;
        }
        INSIDE[i].0.fetch_sub(1, SeqCst);
        while CLOSED.load(Acquire) {
            std::thread::yield_now();
        }
    }
}

impl Drop for Gate {
    #[inline]
    fn drop(&mut self) {
        if let Some(i) = self.stripe {
            INSIDE[i].0.fetch_sub(1, Release);
            return;
        }
        let _ = DEPTH.try_with(|d| {
            let (depth, stripe) = d.get();
            d.set((depth - 1, stripe));
            if depth == 1 {
                INSIDE[stripe as usize].0.fetch_sub(1, Release);
            }
        });
    }
}

/// Install the `pthread_atfork` handlers, once: the gate, and in the child
/// the release of vanished threads' state ([`crate::lifecycle::Child`]).
pub(crate) fn install() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // SAFETY: the three handlers are `extern "C"` functions that live for
        // the whole process and touch only statics and the calling thread's
        // own thread-locals.
        unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    });
}

/// The forking thread's own gate section (its stripe, and 1 if it is in
/// one), which it cannot wait out.
fn own_section() -> (usize, usize) {
    DEPTH
        .try_with(|d| d.get())
        .map_or((0, 0), |(depth, stripe)| {
            if depth > 0 {
                (stripe as usize, 1)
            } else {
                (0, 0)
            }
        })
}

extern "C" fn prepare() {
    let _ = FORKER.try_with(|f| f.set(true));
    CLOSED.store(true, SeqCst);
    let (own_stripe, own) = own_section();
    loop {
        let inside: usize = INSIDE
            .iter()
            .enumerate()
            .map(|(i, s)| s.0.load(SeqCst) - if i == own_stripe { own } else { 0 })
            .sum();
        if inside == 0 {
            return;
        }
        std::thread::yield_now();
    }
}

extern "C" fn parent() {
    CLOSED.store(false, SeqCst);
    let _ = FORKER.try_with(|f| f.set(false));
}

extern "C" fn child() {
    // Whatever the hooks allocate goes to the system allocator, uncharged.
    let _internal = crate::reentrancy::Internal::enter();
    // Only this thread exists: the counts are its own section.
    let (own_stripe, own) = own_section();
    for (i, s) in INSIDE.iter().enumerate() {
        s.0.store(if i == own_stripe { own } else { 0 }, SeqCst);
    }
    crate::lifecycle::run_child();
    CLOSED.store(false, SeqCst);
    let _ = FORKER.try_with(|f| f.set(false));
}
