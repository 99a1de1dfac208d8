//! The lifecycle of per-thread state, in one place: what a thread gives
//! back when it exits, and what the child of a `fork()` releases of the
//! threads that vanished, each in one stated order.
//!
//! The state belongs to the layers (heaps, stocks, tasks, the current
//! group); each *arms* its stage when a thread first holds such state, with
//! the function that gives it back, and the stages run here in the order
//! below. A leaf module: every layer arms through it and none is imported
//! by it, so the order is stated without an upward import.

use std::cell::Cell;
use std::sync::OnceLock;

/// What a thread gives back at exit, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// 1. Its heaps: slabs back to their caches (so that remote frees of
    ///    their objects are collected and dead caches can die), object
    ///    stocks returned — which uncharges pages, so before the charge
    ///    stock.
    Heaps = 0,
    /// 2. Its kept run of large-block pages, back to the shared cache.
    LargeRun,
    /// 3. Its charge stock: pre-charged pages uncharged, statistics applied.
    ChargeStock,
    /// 4. Its tasks: it leaves the group it was attached to (off
    ///    `cgroup.procs`, so the group can be removed), dropping its
    ///    reference.
    Tasks,
    /// 5. Its current group, if it follows the default group, and its entry
    ///    in the registry the child of a fork reads.
    Current,
    /// 6. Its `memory.high` throttling debt, which it will never pay.
    ThrottleDebt,
}

const EXIT_STAGES: usize = 6;

/// What the child of a `fork()` releases of the threads that vanished, in
/// this order, on its one thread (DESIGN.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Child {
    /// 1. Their heaps: slabs back, object stocks drained (which uncharges
    ///    pages, so before the charge stocks).
    Heaps = 0,
    /// 2. Their charge-stock slots: settled and freed.
    ChargeStocks,
    /// 3. Their current groups and task entries.
    Tasks,
    /// 4. The deferred worker: restarted on demand.
    Deferred,
    /// 5. The throttling timer of futures: restarted on demand.
    Futures,
}

const CHILD_STAGES: usize = 5;

/// The function of each exit stage: the same for every thread, set by the
/// first thread that arms it.
static EXIT: [OnceLock<fn()>; EXIT_STAGES] = [const { OnceLock::new() }; EXIT_STAGES];

static CHILD: [OnceLock<fn()>; CHILD_STAGES] = [const { OnceLock::new() }; CHILD_STAGES];

/// The stages armed on this thread; its destructor runs them.
struct Armed(Cell<u8>);

impl Drop for Armed {
    fn drop(&mut self) {
        // Whatever the stages allocate is the system allocator's, uncharged.
        let _internal = crate::reentrancy::Internal::enter();
        let armed = self.0.get();
        for (stage, f) in EXIT.iter().enumerate() {
            if armed & (1 << stage) != 0 {
                if let Some(f) = f.get() {
                    f();
                }
            }
        }
    }
}

thread_local! {
    static ARMED: Armed = const { Armed(Cell::new(0)) };
}

/// Arm `stage` on the calling thread: at its exit, `give_back` runs in the
/// stage's turn. False once the thread is past that point (its exit is
/// running or over): the caller must then keep nothing it would have to
/// give back.
pub(crate) fn arm_exit(stage: Exit, give_back: fn()) -> bool {
    EXIT[stage as usize].get_or_init(|| give_back);
    ARMED
        .try_with(|a| a.0.set(a.0.get() | 1 << stage as u8))
        .is_ok()
}

/// Run `release` in the child of every later `fork()`, in `stage`'s turn.
pub(crate) fn on_child(stage: Child, release: fn()) {
    #[cfg(not(loom))]
    crate::fork::install();
    CHILD[stage as usize].get_or_init(|| release);
}

/// In the child of `fork()`: run the stages registered, in order.
pub(crate) fn run_child() {
    for f in CHILD.iter().filter_map(OnceLock::get) {
        f();
    }
}
