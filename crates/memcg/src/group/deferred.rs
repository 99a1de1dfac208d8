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
        loop {
            if !PENDING.swap(false, Acquire) {
                // While a group with pressure triggers stalls, its triggers
                // are looked at every POLL (a long stall fires while it
                // lasts); otherwise only a wake-up brings the worker back.
                if crate::group::pressure::polling() {
                    std::thread::park_timeout(crate::group::pressure::POLL);
                    let _ = std::panic::catch_unwind(crate::group::pressure::deliver);
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
