//! Per-thread charge stocks (the kernel's `memcg_stock`).
//!
//! A stock holds pages already charged through one kmem context, so most
//! charges take pages from the thread's own stock instead of walking the page
//! counters. A refill charges [`CHARGE_BATCH`] pages at once.
//!
//! Slack, bounded: each thread's stock holds at most `2 * CHARGE_BATCH`
//! pages, which `memory.current` of the stock's group (and ancestors)
//! includes but `memory.stat` does not. Uncharges through the stock's
//! context go back into it, and the statistics of charges and uncharges
//! made through the stock are kept as per-thread deltas, applied when the
//! stock drains or a delta passes `CHARGE_BATCH` pages: the common charge
//! and uncharge touch only the thread's own slot (item 4 of issue 9). [`drain_all`] returns every stock of a hierarchy,
//! as the kernel's `drain_all_stock`; a charge that fails at a limit drains
//! before it reclaims, so limits stop exactly.
//!
//! Stocks live in a process-wide registry of slots so that other threads can
//! drain them; a slot's owner and a drainer serialize on a one-bit lock in the
//! slot, which is uncontended except while a drain runs. Slots are never
//! freed: a thread that exits hands its slot to the next new thread.

use crate::group::kmem_context::{CtxRef, KmemContext};
use crate::group::stats::{Stat, NR_STATS};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicPtr, AtomicUsize, Ordering::*};

/// Pages charged per stock refill (the kernel's `MEMCG_CHARGE_BATCH`).
pub const CHARGE_BATCH: usize = 64;

struct Slot {
    lock: AtomicBool,
    in_use: AtomicBool,
    /// A counted context reference (`CtxRef::into_raw`) or null.
    ctx: AtomicPtr<KmemContext>,
    pages: AtomicUsize,
    /// Pages of each [`Stat`] charged (positive) or uncharged through the
    /// stock and not yet applied to the context's owner.
    deltas: [AtomicIsize; NR_STATS],
    next: AtomicPtr<Slot>,
}

/// What a drained slot held.
struct Taken {
    ctx: CtxRef,
    pages: usize,
    deltas: [isize; NR_STATS],
}

impl Taken {
    /// Uncharge the pages and apply the statistics, to whatever group the
    /// context bills now.
    fn settle(self) {
        self.ctx.with_owner(|g| {
            if self.pages > 0 {
                g.counter.uncharge(self.pages);
            }
            apply_to(g, &self.deltas);
        });
    }
}

static SLOTS: AtomicPtr<Slot> = AtomicPtr::new(std::ptr::null_mut());

thread_local! {
    static MY_SLOT: Cell<*const Slot> = const { Cell::new(std::ptr::null()) };
}

impl Slot {
    fn lock(&self) {
        while self
            .lock
            .compare_exchange_weak(false, true, Acquire, Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
    }

    fn unlock(&self) {
        self.lock.store(false, Release);
    }

    /// Empty the slot, returning its context, pages and deltas. Slot lock
    /// held.
    fn take(&self) -> Option<Taken> {
        let p = self.ctx.swap(std::ptr::null_mut(), Relaxed);
        let pages = self.pages.swap(0, Relaxed);
        let deltas = std::array::from_fn(|i| self.deltas[i].swap(0, Relaxed));
        if p.is_null() {
            return None;
        }
        // SAFETY: non-null `ctx` is a reference given up by CtxRef::into_raw in
        // `refill`, and the swap above took it out of the slot exactly once.
        let ctx = unsafe { CtxRef::from_raw(p) };
        Some(Taken { ctx, pages, deltas })
    }

    /// Count `pages` of `stat` in the slot's deltas; returns the deltas to
    /// apply now if one passed `CHARGE_BATCH` pages. Slot lock held.
    fn count(&self, stat: Stat, pages: isize) -> Option<[isize; NR_STATS]> {
        let d = self.deltas[stat as usize].fetch_add(pages, Relaxed) + pages;
        (d.unsigned_abs() > CHARGE_BATCH)
            .then(|| std::array::from_fn(|i| self.deltas[i].swap(0, Relaxed)))
    }
}

/// The calling thread's slot, claimed on first use; `None` once the thread
/// is past its exit hook (a slot claimed then would never be handed back:
/// callers charge and uncharge the counters directly instead).
fn my_slot() -> Option<&'static Slot> {
    MY_SLOT
        .try_with(|s| {
            if s.get().is_null() {
                // The hook first: if it cannot be registered, the thread is
                // tearing down, and claiming would leak the slot.
                crate::lifecycle::arm_exit(crate::lifecycle::Exit::ChargeStock, drain_local)
                    .then_some(())?;
                s.set(claim_slot());
            }
            // SAFETY: slots are leaked and never freed, so any slot pointer is
            // valid for 'static.
            Some(unsafe { &*s.get() })
        })
        .ok()
        .flatten()
}

fn claim_slot() -> *const Slot {
    let _internal = crate::reentrancy::Internal::enter();
    let mut p = SLOTS.load(Acquire);
    while !p.is_null() {
        // SAFETY: slots are never freed.
        let slot = unsafe { &*p };
        if slot
            .in_use
            .compare_exchange(false, true, Acquire, Relaxed)
            .is_ok()
        {
            return slot;
        }
        p = slot.next.load(Relaxed);
    }
    let slot: &'static Slot = Box::leak(Box::new(Slot {
        lock: AtomicBool::new(false),
        in_use: AtomicBool::new(true),
        ctx: AtomicPtr::new(std::ptr::null_mut()),
        pages: AtomicUsize::new(0),
        deltas: std::array::from_fn(|_| AtomicIsize::new(0)),
        next: AtomicPtr::new(std::ptr::null_mut()),
    }));
    let mut head = SLOTS.load(Relaxed);
    loop {
        slot.next.store(head, Relaxed);
        match SLOTS.compare_exchange_weak(head, slot as *const _ as *mut _, Release, Relaxed) {
            Ok(_) => return slot,
            Err(h) => head = h,
        }
    }
}

/// Take `pages` of `stat` from the calling thread's stock if it holds that
/// many for `ctx`; the statistic is counted in the stock's deltas.
pub(crate) fn consume(ctx: &CtxRef, pages: usize, stat: Stat) -> bool {
    with_slot_for(ctx, stat, pages as isize, |slot| {
        let hit = slot.pages.load(Relaxed) >= pages;
        if hit {
            slot.pages.fetch_sub(pages, Relaxed);
        }
        hit
    })
}

/// Give `pages` of `stat` charged through `ctx` back into the calling
/// thread's stock, if it holds `ctx` and has room; the caller uncharges
/// them itself otherwise.
pub(crate) fn uncharge_cached(ctx: &CtxRef, pages: usize, stat: Stat) -> bool {
    with_slot_for(ctx, stat, -(pages as isize), |slot| {
        let hit = slot.pages.load(Relaxed) + pages <= 2 * CHARGE_BATCH;
        if hit {
            slot.pages.fetch_add(pages, Relaxed);
        }
        hit
    })
}

/// Under the calling thread's slot lock, if the slot holds `ctx`: run `f`,
/// and if it took or gave back pages, count `delta` pages of `stat`.
fn with_slot_for(ctx: &CtxRef, stat: Stat, delta: isize, f: impl FnOnce(&Slot) -> bool) -> bool {
    let Some(slot) = my_slot() else { return false };
    slot.lock();
    let hit = std::ptr::eq(slot.ctx.load(Relaxed), ctx.as_ptr()) && f(slot);
    let flush = if hit { slot.count(stat, delta) } else { None };
    slot.unlock();
    if let Some(deltas) = flush {
        apply(ctx, deltas);
    }
    hit
}

/// Apply statistics deltas to the group `ctx` bills now.
fn apply(ctx: &CtxRef, deltas: [isize; NR_STATS]) {
    ctx.with_owner(|g| apply_to(g, &deltas));
}

fn apply_to(g: &crate::group::GroupInner, deltas: &[isize; NR_STATS]) {
    for (i, &d) in deltas.iter().enumerate() {
        if d != 0 {
            g.stat_pages(Stat::ALL[i], d);
        }
    }
}

/// Put `pages` charged through `ctx` into the calling thread's stock,
/// draining what it held for another context first. Without a stock (thread
/// teardown), the pages are uncharged at once.
pub(crate) fn refill(ctx: &CtxRef, pages: usize) {
    let Some(slot) = my_slot() else {
        ctx.with_owner(|g| g.counter.uncharge(pages));
        return;
    };
    slot.lock();
    let old = if std::ptr::eq(slot.ctx.load(Relaxed), ctx.as_ptr()) {
        None
    } else {
        let old = slot.take();
        slot.ctx.store(ctx.clone().into_raw() as *mut _, Relaxed);
        old
    };
    slot.pages.fetch_add(pages, Relaxed);
    let overflow = slot.pages.load(Relaxed) > 2 * CHARGE_BATCH;
    let extra = if overflow { slot.take() } else { None };
    slot.unlock();
    for taken in old.into_iter().chain(extra) {
        taken.settle();
    }
}

/// Return the calling thread's stock (thread exit, tests).
pub(crate) fn drain_local() {
    let Ok(p) = MY_SLOT.try_with(|s| s.replace(std::ptr::null())) else {
        return;
    };
    if p.is_null() {
        return;
    }
    // SAFETY: slots are never freed.
    let slot = unsafe { &*p };
    slot.lock();
    let taken = slot.take();
    slot.unlock();
    slot.in_use.store(false, Release);
    if let Some(taken) = taken {
        taken.settle();
    }
}

/// Return the calling thread's stock but keep its slot (reclaim: uncharges
/// made meanwhile must reach the counters, not the stock).
pub(crate) fn flush_local() {
    let Some(p) = MY_SLOT.try_with(|s| s.get()).ok().filter(|p| !p.is_null()) else {
        return;
    };
    // SAFETY: slots are never freed.
    let slot = unsafe { &*p };
    slot.lock();
    let taken = slot.take();
    slot.unlock();
    if let Some(taken) = taken {
        taken.settle();
    }
}

/// In the child of `fork()`, where the forking thread is the only one: the
/// slots of the threads that vanished are released (a lock one of them held
/// at the fork would be held forever), their pages uncharged and their
/// statistics applied, and the slots freed for the child's new threads. A
/// slot section only moves atomics, so what a vanished thread left half
/// done can at worst miscount its own pre-charged pages, never corrupt
/// memory.
#[cfg(not(loom))]
pub(crate) fn after_fork() {
    let mine = MY_SLOT.try_with(|s| s.get()).unwrap_or(std::ptr::null());
    let mut p = SLOTS.load(Acquire);
    while !p.is_null() {
        // SAFETY: slots are never freed.
        let slot = unsafe { &*p };
        if !std::ptr::eq(slot, mine) && slot.in_use.load(Acquire) {
            slot.unlock();
            let taken = slot.take();
            slot.in_use.store(false, Release);
            if let Some(taken) = taken {
                taken.settle();
            }
        }
        p = slot.next.load(Relaxed);
    }
}

/// Return every thread's stock held for contexts of the hierarchy `common_id`.
pub(crate) fn drain_all(common_id: u64) {
    let mut p = SLOTS.load(Acquire);
    while !p.is_null() {
        // SAFETY: slots are never freed.
        let slot = unsafe { &*p };
        // Inside the fork gate from taking the slot to settling what it
        // held: a fork copying us half way would lose those pages.
        #[cfg(not(loom))]
        let _gate = crate::fork::Gate::enter();
        slot.lock();
        let ctx = slot.ctx.load(Relaxed);
        // SAFETY: a non-null ctx in a locked slot is a counted reference the
        // slot owns; reading its hierarchy id does not outlive the lock.
        let ours = !ctx.is_null() && unsafe { (&*ctx).common().id } == common_id;
        let taken = if ours { slot.take() } else { None };
        slot.unlock();
        if let Some(taken) = taken {
            taken.settle();
        }
        p = slot.next.load(Relaxed);
    }
}
