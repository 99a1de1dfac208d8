//! The synchronization primitives memcg is built on, swappable for loom's.
//!
//! Under `--cfg loom` these resolve to `loom::sync`, so the model checker can
//! permute every atomic and lock operation of the reparenting protocol. Normal
//! builds get `std::sync`. The `Mutex` wrapper hides the poisoning API: a panic
//! while holding one of our locks leaves counters that are still well formed
//! (every critical section updates them with single atomic operations), so the
//! next holder may continue.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(loom)]
pub(crate) use loom::sync::Arc;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    AtomicBool, AtomicIsize, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;

#[cfg(loom)]
use loom::sync::{Mutex as Inner, MutexGuard as InnerGuard};
#[cfg(not(loom))]
use std::sync::{Mutex as Inner, MutexGuard as InnerGuard};

/// A mutex whose `lock` never reports poisoning, held inside the fork gate
/// (see [`crate::fork`]): no `fork()` copies the process while it is held.
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(Inner<T>);

/// The guard of [`Mutex`].
#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = InnerGuard<'a, T>;

/// The guard of [`Mutex`].
#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = Gated<InnerGuard<'a, T>>;

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex(Inner::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(loom))]
        let gate = crate::fork::Gate::enter();
        let guard = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        #[cfg(not(loom))]
        let guard = Gated { guard, _gate: gate };
        guard
    }
}

/// A lock guard held inside the fork gate, entered before the lock was
/// taken and left after it is released (fields drop in order).
#[cfg(not(loom))]
pub(crate) struct Gated<G> {
    guard: G,
    _gate: crate::fork::Gate,
}

#[cfg(not(loom))]
impl<G> Gated<G> {
    /// Enter the gate, then take the lock with `lock`.
    pub(crate) fn lock(lock: impl FnOnce() -> G) -> Gated<G> {
        let gate = crate::fork::Gate::enter();
        Gated {
            guard: lock(),
            _gate: gate,
        }
    }
}

#[cfg(not(loom))]
impl<G: std::ops::Deref> std::ops::Deref for Gated<G> {
    type Target = G::Target;

    fn deref(&self) -> &G::Target {
        &self.guard
    }
}

#[cfg(not(loom))]
impl<G: std::ops::DerefMut> std::ops::DerefMut for Gated<G> {
    fn deref_mut(&mut self) -> &mut G::Target {
        &mut self.guard
    }
}

/// Lock a std mutex inside the fork gate, ignoring poisoning: for the
/// statics that must be const-initialised.
#[cfg(not(loom))]
pub(crate) fn lock_std<T>(m: &std::sync::Mutex<T>) -> Gated<std::sync::MutexGuard<'_, T>> {
    Gated::lock(|| m.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Lock a std mutex, ignoring poisoning (loom builds have no fork gate).
#[cfg(loom)]
pub(crate) fn lock_std<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An acquire fence, loom's under `--cfg loom`.
pub(crate) fn fence_acquire() {
    #[cfg(loom)]
    loom::sync::atomic::fence(Ordering::Acquire);
    #[cfg(not(loom))]
    std::sync::atomic::fence(Ordering::Acquire);
}

/// Back off inside a wait loop whose other side is a short critical section.
pub(crate) fn spin_wait() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    {
        std::hint::spin_loop();
        std::thread::yield_now();
    }
}

/// A `const fn` in normal builds, a plain `fn` under loom, whose atomics
/// cannot be built in constants (for types holding [`AtomicIsize`] and its
/// kin that live in const thread-locals).
macro_rules! const_unless_loom {
    ($(#[$m:meta])* $v:vis fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty $body:block) => {
        #[cfg(not(loom))]
        $(#[$m])* $v const fn $name($($arg: $ty),*) -> $ret $body
        #[cfg(loom)]
        $(#[$m])* $v fn $name($($arg: $ty),*) -> $ret $body
    };
}
pub(crate) use const_unless_loom;
