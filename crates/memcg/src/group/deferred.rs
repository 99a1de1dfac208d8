//! The process's deferred-work thread (the seed's `destroy_work` on
//! the kernel's system workqueue).
//!
//! The last reference to a kmem context or a slab cache pushes it on its
//! hierarchy's lock-free queue and then calls [`wake`]. Once the push is
//! visible, the node may be destroyed at any moment by this worker or by a
//! `quiesce` on another thread, and with it the last reference to the
//! hierarchy's `Common`. So the wake-up reads nothing of the node or of its
//! hierarchy: only statics, which live for the process. The worker finds the
//! work by walking the hierarchies registered here, through weak references.
//!
//! It also delivers what groups count on allocator paths to the watchers
//! of `memory.events` and to pressure triggers, which it looks at every
//! few milliseconds while a triggered group stalls.
//!
//! Under `--cfg loom` the worker is a thread of the model: [`wake`] unparks
//! it and it waits in `wait_for_wake`.

/// Make the deferred-work thread run soon. Reads only statics: callable
/// right after publishing a node that another thread may then destroy.
/// Never allocates, never blocks.
pub(crate) fn wake() {
    imp::wake();
}

/// Right after a lock-free publish of a node another thread may destroy:
/// debug builds yield here, so that stress tests hit the window in which a
/// consumer takes and frees the node (a read of the node after this point
/// is a use-after-free those tests then catch). Release builds compile it
/// out; loom permutes the window itself.
#[inline]
pub(crate) fn after_publish() {
    #[cfg(all(debug_assertions, not(loom)))]
    std::thread::yield_now();
}

#[cfg(not(loom))]
pub(crate) use imp::{after_fork, ensure_worker, hierarchies, register};

/// Deferred work of a layer above (the slab layer's dead caches), run by
/// every deferred pass before contexts are destroyed, since its nodes hold
/// context references. The layer registers it; this layer never names it.
#[derive(Clone, Copy)]
pub(crate) struct Work {
    /// Run the work; returns how many nodes it destroyed.
    pub(crate) run: fn() -> usize,
    /// Whether work is queued.
    pub(crate) pending: fn() -> bool,
}

static WORK: std::sync::OnceLock<Work> = std::sync::OnceLock::new();

/// Register the upper layer's deferred work (once; later calls are ignored).
pub(crate) fn register_work(work: Work) {
    let _ = WORK.set(work);
}

/// Run the registered work; 0 if none is registered.
pub(crate) fn run_registered() -> usize {
    WORK.get().map_or(0, |w| (w.run)())
}

/// Whether the registered work has something queued.
pub(crate) fn registered_pending() -> bool {
    WORK.get().is_some_and(|w| (w.pending)())
}

#[cfg(all(loom, test))]
pub(crate) use imp::wait_for_wake;

/// Housekeeping of a layer above that is due a while after it is asked for
/// (the slab layer returns dirty spans idle for its decay time to the OS):
/// the worker runs it about [`TICK_PERIOD`] after [`arm_tick`], and again
/// every period while it returns true. Without it, memory such housekeeping
/// would return stayed with an idle program until its next allocation.
static TICK: std::sync::OnceLock<fn() -> bool> = std::sync::OnceLock::new();

/// Whether the registered tick is due to run (see [`TICK`]).
static TICK_ARMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How long after [`arm_tick`] the worker runs the tick.
pub(crate) const TICK_PERIOD: std::time::Duration = std::time::Duration::from_millis(500);

/// Register the upper layer's tick (once; later calls are ignored) and ask
/// for it to run in about [`TICK_PERIOD`]. Statics only, never allocates:
/// callable inside the allocator. Wakes the worker only when the tick was not
/// asked for already. Without a worker (no hierarchy was made), nothing runs
/// it, as before: the upper layer's own activity does the work.
pub(crate) fn arm_tick(tick: fn() -> bool) {
    use std::sync::atomic::Ordering::*;
    let _ = TICK.set(tick);
    if !TICK_ARMED.load(Relaxed) && !TICK_ARMED.swap(true, AcqRel) {
        wake();
    }
}

/// The worker, after a wait: run the tick if it is asked for and `last`
/// (when the worker last ran it) is a period ago; re-arm it when it wants
/// another. Returns whether it is still asked for.
#[cfg(not(loom))]
fn run_tick(last: &mut std::time::Instant) -> bool {
    use std::sync::atomic::Ordering::*;
    if !TICK_ARMED.load(Acquire) {
        return false;
    }
    if last.elapsed() < TICK_PERIOD {
        return true;
    }
    *last = std::time::Instant::now();
    TICK_ARMED.store(false, Release);
    let again = TICK
        .get()
        .is_some_and(|tick| std::panic::catch_unwind(tick).unwrap_or(false));
    if again {
        TICK_ARMED.store(true, Release);
    }
    again
}

#[cfg(not(loom))]
mod imp {
    use crate::group::Common;
    use crate::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering::*};
    use std::sync::{Mutex, Weak};
    use std::thread::Thread;

    /// Set by [`wake`], cleared by the worker before it looks for work, so
    /// a wake that arrives while it runs makes it run again.
    static PENDING: AtomicBool = AtomicBool::new(false);
    /// The worker's handle (a leaked box), null until it runs, and again
    /// in the child of a fork, where it does not exist.
    static WORKER: AtomicPtr<Thread> = AtomicPtr::new(std::ptr::null_mut());
    static STARTING: AtomicBool = AtomicBool::new(false);
    /// Every hierarchy made so far; dead ones are pruned on registration and
    /// on every pass.
    static HIERARCHIES: Mutex<Vec<Weak<Common>>> = Mutex::new(Vec::new());

    pub(super) fn wake() {
        // Release: the worker's swap acquires it, and so sees the push that
        // came before this call.
        PENDING.store(true, Release);
        // SAFETY: a non-null WORKER is a leaked box, never freed.
        if let Some(t) = unsafe { WORKER.load(Acquire).as_ref() } {
            t.unpark();
        }
    }

    /// Let the worker find `common`'s deferred work; start the worker on
    /// first use. Without a worker (the OS refused a thread), deferred work
    /// still runs at every quiesce and hierarchy operation.
    pub(crate) fn register(common: &Arc<Common>) {
        {
            let mut list = crate::sync::lock_std(&HIERARCHIES);
            list.retain(|w| w.strong_count() > 0);
            list.push(Arc::downgrade(common));
        }
        ensure_worker();
    }

    /// Every hierarchy still alive.
    pub(crate) fn hierarchies() -> Vec<Arc<Common>> {
        crate::sync::lock_std(&HIERARCHIES)
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Start the worker if it does not run (first use, or in the child of a
    /// fork). Without a worker (the OS refused a thread), deferred work still
    /// runs at every quiesce and hierarchy operation.
    pub(crate) fn ensure_worker() {
        if !WORKER.load(Acquire).is_null() || STARTING.swap(true, AcqRel) {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("memcg-deferred".into())
            .spawn(worker);
        match spawned {
            Ok(handle) => {
                let t = Box::into_raw(Box::new(handle.thread().clone()));
                WORKER.store(t, Release);
                // A wake before the handle was set found no thread.
                wake();
            }
            Err(_) => STARTING.store(false, Release),
        }
    }

    /// In the child of `fork()`: the worker did not come along; the next
    /// hierarchy operation starts another.
    pub(crate) fn after_fork() {
        WORKER.store(std::ptr::null_mut(), Release);
        STARTING.store(false, Release);
        PENDING.store(true, Release);
    }

    fn worker() {
        let _internal = crate::reentrancy::Internal::enter();
        let mut last_tick = std::time::Instant::now();
        loop {
            if !PENDING.swap(false, Acquire) {
                // While a group with pressure triggers stalls, its triggers
                // are looked at every POLL (a long stall fires while it
                // lasts); while the upper layer's tick is asked for, it runs
                // every TICK_PERIOD; otherwise only a wake-up brings the
                // worker back.
                let ticking = super::run_tick(&mut last_tick);
                if crate::group::pressure::polling() {
                    std::thread::park_timeout(crate::group::pressure::POLL);
                    let _ = std::panic::catch_unwind(crate::group::pressure::deliver);
                } else if ticking {
                    std::thread::park_timeout(super::TICK_PERIOD);
                } else {
                    std::thread::park();
                }
                continue;
            }
            let live: Vec<Arc<Common>> = {
                let mut list = crate::sync::lock_std(&HIERARCHIES);
                list.retain(|w| w.strong_count() > 0);
                list.iter().filter_map(Weak::upgrade).collect()
            };
            // The worker must outlive any panic of a pass (a debug
            // assertion, a waker): a dead worker would leave destruction to
            // quiesce calls alone and watches unwoken.
            let _ = std::panic::catch_unwind(|| {
                for common in live {
                    if common.has_deferred() {
                        Common::run_deferred(&common);
                    }
                }
            });
            let _ = std::panic::catch_unwind(crate::group::events::deliver);
            let _ = std::panic::catch_unwind(crate::group::kill::deliver_oom_wakes);
            let _ = std::panic::catch_unwind(crate::group::pressure::deliver);
        }
    }
}

#[cfg(loom)]
mod imp {
    loom::lazy_static! {
        /// Park and unpark of the model's worker: a wake-up is a token that
        /// a later wait consumes, as `std::thread::park`.
        static ref WAKE: loom::sync::Notify = loom::sync::Notify::new();
    }

    pub(super) fn wake() {
        WAKE.notify();
    }

    /// The model's worker: block until woken.
    #[cfg(test)]
    pub(crate) fn wait_for_wake() {
        WAKE.wait();
    }
}
