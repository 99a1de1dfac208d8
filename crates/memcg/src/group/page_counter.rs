//! The lockless hierarchical page counter (the kernel's
//! `mm/page_counter.c`).
//!
//! A counter counts pages and links to its parent; every charge walks from the
//! counter to the root. Nothing here takes a lock: `usage` moves by atomic
//! add/sub, limits and watermarks are plain atomic words. Callers serialize
//! nothing, at the price of the bounded inaccuracies noted at each line.

use crate::sync::{Arc, AtomicUsize, Ordering::Relaxed};

/// "No limit": the value of `max` and `high` until one is set.
pub const PAGE_COUNTER_MAX: usize = usize::MAX / 2;

/// A hierarchical counter of pages with a hard limit (`max`), a soft limit
/// (`high`), a high watermark (`peak`) and a count of failed charges.
#[derive(Debug)]
pub struct PageCounter {
    usage: AtomicUsize,
    max: AtomicUsize,
    high: AtomicUsize,
    watermark: AtomicUsize,
    failcnt: AtomicUsize,
    parent: Option<Arc<PageCounter>>,
}

impl PageCounter {
    /// A counter at zero with no limits, below `parent` if given.
    pub fn new(parent: Option<Arc<PageCounter>>) -> Self {
        PageCounter {
            usage: AtomicUsize::new(0),
            max: AtomicUsize::new(PAGE_COUNTER_MAX),
            high: AtomicUsize::new(PAGE_COUNTER_MAX),
            watermark: AtomicUsize::new(0),
            failcnt: AtomicUsize::new(0),
            parent,
        }
    }

    /// The parent counter, if any.
    pub fn parent(&self) -> Option<&PageCounter> {
        self.parent.as_deref()
    }

    /// Pages charged to this counter and its descendants.
    pub fn usage(&self) -> usize {
        self.usage.load(Relaxed)
    }

    /// The hard limit in pages.
    pub fn max(&self) -> usize {
        self.max.load(Relaxed)
    }

    /// The soft limit in pages.
    pub fn high(&self) -> usize {
        self.high.load(Relaxed)
    }

    /// The highest usage seen since creation or the last [`reset_peak`](Self::reset_peak).
    pub fn peak(&self) -> usize {
        self.watermark.load(Relaxed)
    }

    /// How many charges failed at this counter's limit.
    pub fn failcnt(&self) -> usize {
        self.failcnt.load(Relaxed)
    }

    /// Set the hard limit. Usage may exceed it afterwards: the caller reclaims.
    pub fn set_max(&self, pages: usize) {
        self.max.store(pages.min(PAGE_COUNTER_MAX), Relaxed);
    }

    /// Set the soft limit.
    pub fn set_high(&self, pages: usize) {
        self.high.store(pages.min(PAGE_COUNTER_MAX), Relaxed);
    }

    /// Restart the watermark from the current usage.
    pub fn reset_peak(&self) {
        // A charge racing with the reset may be lost from the new watermark;
        // the kernel accepts the same for a value only read by humans.
        self.watermark.store(self.usage(), Relaxed);
    }

    /// Charge `nr` pages here and in every ancestor, ignoring limits (the
    /// kernel's `__GFP_NOFAIL` path).
    pub fn charge(&self, nr: usize) {
        let mut c = Some(self);
        while let Some(counter) = c {
            let new = counter.usage.fetch_add(nr, Relaxed) + nr;
            counter.raise_watermark(new);
            c = counter.parent();
        }
    }

    /// Charge `nr` pages here and in every ancestor if no limit is exceeded.
    ///
    /// Returns `Err(level)` naming the counter whose limit failed the charge,
    /// as the number of steps up from `self` (0 is `self`); nothing stays
    /// charged then.
    pub fn try_charge(&self, nr: usize) -> Result<(), usize> {
        let mut c = Some(self);
        let mut level = 0;
        while let Some(counter) = c {
            // Charge speculatively to avoid an expensive compare-and-swap. If a
            // bigger charge fails, it may falsely lock out a racing smaller one
            // until it backs out; the error is limited to the difference.
            let new = counter.usage.fetch_add(nr, Relaxed) + nr;
            if new > counter.max() {
                counter.usage.fetch_sub(nr, Relaxed);
                // Racy with other failures, but only ever counts up.
                counter.failcnt.fetch_add(1, Relaxed);
                self.cancel_levels(level, nr);
                return Err(level);
            }
            counter.raise_watermark(new);
            c = counter.parent();
            level += 1;
        }
        Ok(())
    }

    /// Uncharge `nr` pages here and in every ancestor.
    pub fn uncharge(&self, nr: usize) {
        let mut c = Some(self);
        while let Some(counter) = c {
            counter.cancel(nr);
            c = counter.parent();
        }
    }

    /// Uncharge `nr` pages from this counter and its ancestors below
    /// `ancestor`, leaving `ancestor` and those above it charged: the charge
    /// moves into `ancestor`. `ancestor` must be an ancestor of `self`.
    pub fn uncharge_below(&self, ancestor: &PageCounter, nr: usize) {
        let mut c = Some(self);
        while let Some(counter) = c {
            if std::ptr::eq(counter, ancestor) {
                return;
            }
            counter.cancel(nr);
            c = counter.parent();
        }
        debug_assert!(false, "uncharge_below: not an ancestor");
    }

    fn cancel_levels(&self, levels: usize, nr: usize) {
        let mut c = Some(self);
        for _ in 0..levels {
            let Some(counter) = c else {
                crate::reentrancy::broken("page counter: a charged level is above the root")
            };
            counter.cancel(nr);
            c = counter.parent();
        }
    }

    fn cancel(&self, nr: usize) {
        let old = self.usage.fetch_sub(nr, Relaxed);
        // An underflow is a bookkeeping bug upstream; like the kernel's WARN,
        // repair the counter rather than leave it near usize::MAX.
        if old < nr {
            debug_assert!(false, "page counter underflow: {old} - {nr}");
            self.usage.fetch_add(nr - old, Relaxed);
        }
    }

    fn raise_watermark(&self, new: usize) {
        // Racy, but a watermark that misses a concurrent higher value by a few
        // pages is acceptable, and it avoids a compare-and-swap on every charge.
        if new > self.watermark.load(Relaxed) {
            self.watermark.store(new, Relaxed);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn chain() -> (Arc<PageCounter>, Arc<PageCounter>, PageCounter) {
        let root = Arc::new(PageCounter::new(None));
        let mid = Arc::new(PageCounter::new(Some(root.clone())));
        let leaf = PageCounter::new(Some(mid.clone()));
        (root, mid, leaf)
    }

    #[test]
    fn charge_reaches_every_ancestor() {
        let (root, mid, leaf) = chain();
        leaf.charge(3);
        assert_eq!((leaf.usage(), mid.usage(), root.usage()), (3, 3, 3));
        leaf.uncharge(3);
        assert_eq!((leaf.usage(), mid.usage(), root.usage()), (0, 0, 0));
    }

    #[test]
    fn try_charge_names_the_failing_level_and_backs_out() {
        let (root, mid, leaf) = chain();
        mid.set_max(4);
        assert_eq!(leaf.try_charge(3), Ok(()));
        assert_eq!(leaf.try_charge(2), Err(1));
        assert_eq!((leaf.usage(), mid.usage(), root.usage()), (3, 3, 3));
        assert_eq!((leaf.failcnt(), mid.failcnt()), (0, 1));
        assert_eq!(leaf.try_charge(1), Ok(()));
        assert_eq!(mid.usage(), 4);
    }

    #[test]
    fn forced_charge_ignores_limits_and_raises_peak() {
        let (_root, mid, leaf) = chain();
        mid.set_max(1);
        leaf.charge(5);
        assert_eq!(mid.usage(), 5);
        assert_eq!(mid.peak(), 5);
        leaf.uncharge(4);
        assert_eq!(mid.peak(), 5);
        mid.reset_peak();
        assert_eq!(mid.peak(), 1);
    }

    #[test]
    fn uncharge_below_moves_a_charge_into_the_ancestor() {
        let (root, mid, leaf) = chain();
        leaf.charge(2);
        leaf.uncharge_below(&mid, 2);
        assert_eq!((leaf.usage(), mid.usage(), root.usage()), (0, 2, 2));
    }
}
