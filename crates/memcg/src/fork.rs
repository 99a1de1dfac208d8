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
//! gate; the child also resets per-thread state it inherited from threads
//! that do not exist in it (registered hooks: charge-stock slot locks, the
//! deferred worker, which restarts on demand). Other threads' heaps and
//! stocks become orphans: their pre-charged pages are drained by the
//! child's next quiesce, their slabs stay owned (objects freed into them
//! are not reused).
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

/// The most hooks [`on_child`] keeps (one per layer that owns per-thread
/// state; a fixed array, so that the child's handler allocates nothing).
const MAX_HOOKS: usize = 16;

/// What the child of a fork must release or reset, registered by the layers
/// that own such state (they are above this leaf), in registration order.
static CHILD_HOOKS: [AtomicUsize; MAX_HOOKS] = [const { AtomicUsize::new(0) }; MAX_HOOKS];
static NHOOKS: AtomicUsize = AtomicUsize::new(0);

/// Run `hook` in the child of every later `fork()`, before the gate
/// reopens (the child has one thread then). Installs the fork handlers on
/// first use. Registering a hook twice keeps one.
pub(crate) fn on_child(hook: fn()) {
    install();
    // Inside the gate: no fork copies a half-registered hook.
    let _gate = Gate::enter();
    static REGISTER: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = REGISTER.lock().unwrap_or_else(|e| e.into_inner());
    let n = NHOOKS.load(Acquire);
    if CHILD_HOOKS[..n]
        .iter()
        .any(|h| h.load(Relaxed) == hook as usize)
    {
        return;
    }
    if n == MAX_HOOKS {
        crate::reentrancy::broken("fork: more child hooks than fork::MAX_HOOKS");
    }
    CHILD_HOOKS[n].store(hook as usize, Relaxed);
    NHOOKS.store(n + 1, Release);
}

/// Install the `pthread_atfork` handlers, once.
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
    for hook in &CHILD_HOOKS[..NHOOKS.load(Acquire)] {
        let hook = hook.load(Relaxed);
        // SAFETY: every non-zero entry below NHOOKS was stored by `on_child`
        // from a `fn()` before NHOOKS (Release) counted it.
        let hook: fn() = unsafe { std::mem::transmute::<usize, fn()>(hook) };
        hook();
    }
    CLOSED.store(false, SeqCst);
    let _ = FORKER.try_with(|f| f.set(false));
}
