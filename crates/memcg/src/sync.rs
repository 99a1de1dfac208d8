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

/// A mutex whose `lock` never reports poisoning.
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(Inner<T>);

/// The guard of [`Mutex`].
pub(crate) type MutexGuard<'a, T> = InnerGuard<'a, T>;

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex(Inner::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
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
