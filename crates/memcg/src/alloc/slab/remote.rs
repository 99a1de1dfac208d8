//! The remote-free protocol of a slab (mimalloc's `xthread_free`), on one
//! atomic word: the head of a list of objects freed by threads other than the
//! slab's owner, with the low bit saying whether the slab has an owner.
//!
//! - A remote free pushes the object with a compare-and-swap, keeping the bit.
//!   It must *notify* the slab's cache (take the cache lock) when the slab is
//!   unowned and the list was empty: the slab may have to move from the full
//!   list to the partial list, or, in a dead cache, be collected and freed.
//! - The owner collects the whole list with one swap that keeps it owned.
//! - Giving up or taking ownership swaps in an empty list with the new bit,
//!   collecting what was there; both happen under the cache lock, so a
//!   notifier (which takes that lock) sees the final state.
//!
//! Generic over the atomic so the loom model checks this very code.

use std::sync::atomic::Ordering::*;

/// The bit set while the slab has no owner.
pub(crate) const UNOWNED: usize = 1;

/// The atomic word holding the list; std's or loom's `AtomicUsize`.
pub(crate) trait Word {
    fn load_acquire(&self) -> usize;
    fn swap_acqrel(&self, v: usize) -> usize;
    fn cas_release(&self, current: usize, new: usize) -> Result<usize, usize>;
}

macro_rules! impl_word {
    ($t:ty) => {
        impl Word for $t {
            fn load_acquire(&self) -> usize {
                self.load(Acquire)
            }
            fn swap_acqrel(&self, v: usize) -> usize {
                self.swap(v, AcqRel)
            }
            fn cas_release(&self, current: usize, new: usize) -> Result<usize, usize> {
                self.compare_exchange_weak(current, new, Release, Relaxed)
            }
        }
    };
}

impl_word!(std::sync::atomic::AtomicUsize);
#[cfg(loom)]
impl_word!(loom::sync::atomic::AtomicUsize);

/// Push `obj` (whose first word becomes the link, written by `set_next`).
/// Returns true when the caller must notify the cache: the slab is unowned
/// and this push made the list non-empty, or `always_notify_unowned` (a dead
/// cache, where every free of an unowned slab is collected at once).
pub(crate) fn push(
    word: &impl Word,
    obj: usize,
    set_next: impl Fn(usize),
    always_notify_unowned: bool,
) -> bool {
    debug_assert_eq!(obj & UNOWNED, 0, "objects are at least 8-byte aligned");
    let mut old = word.load_acquire();
    loop {
        set_next(old & !UNOWNED);
        match word.cas_release(old, obj | (old & UNOWNED)) {
            Ok(_) => break,
            Err(now) => old = now,
        }
    }
    old & UNOWNED != 0 && (old & !UNOWNED == 0 || always_notify_unowned)
}

/// Take the whole list and set the ownership bit: `owned` true for the owner
/// collecting or a thread taking ownership, false for giving it up. Returns
/// the list head (0 for empty).
pub(crate) fn take(word: &impl Word, owned: bool) -> usize {
    word.swap_acqrel(if owned { 0 } else { UNOWNED }) & !UNOWNED
}

/// Whether the slab is unowned now (for a notifier under the cache lock).
pub(crate) fn is_unowned(word: &impl Word) -> bool {
    word.load_acquire() & UNOWNED != 0
}
