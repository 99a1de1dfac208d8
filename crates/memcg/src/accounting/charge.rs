//! Charging and uncharging through kmem contexts: the stock fast path, the
//! try-charge loop (S5), limit handling with reclaim, and `memory.high`.

use crate::error::{Error, Result};
use crate::group::kmem_context::CtxRef;
use crate::group::page_counter::PAGE_COUNTER_MAX;
use crate::group::stats::{Event, Stat};
use crate::group::GroupInner;
use crate::sync::{spin_wait, Arc};
use crate::PAGE_SIZE;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

/// Reclaim `pages` from a group's subtree, returning the pages freed: the
/// reclaim layer above registers it ([`register_reclaim`]); until then a
/// charge at a limit reclaims nothing.
type ReclaimFn = fn(&GroupInner, usize) -> usize;

static RECLAIM: std::sync::OnceLock<ReclaimFn> = std::sync::OnceLock::new();

/// Let charges at a limit, and `memory.high`, reclaim through `f` (once).
pub(crate) fn register_reclaim(f: ReclaimFn) {
    let _ = RECLAIM.set(f);
}

fn reclaim(group: &GroupInner, pages: usize) -> usize {
    RECLAIM.get().map_or(0, |f| f(group, pages))
}

static DRAIN_OBJECTS: std::sync::OnceLock<fn(u64)> = std::sync::OnceLock::new();

/// Let stock drains reach every thread's object stock through `f` (the
/// slab layer's, registered from above; once).
pub(crate) fn register_object_drain(f: fn(u64)) {
    let _ = DRAIN_OBJECTS.set(f);
}

/// Drain every thread's charge stock and object stock held for the
/// hierarchy `common_id`, idle threads' included (the kernel's
/// `drain_all_stock`): at a limit, on removal, on quiesce.
pub(crate) fn drain_all_stocks(common_id: u64) {
    crate::accounting::charge_stock::drain_all(common_id);
    if let Some(f) = DRAIN_OBJECTS.get() {
        f(common_id);
    }
}

/// How many times a charge that failed at a limit reclaims before it fails.
/// A reclaim pass that frees nothing ends the retries early.
pub const MAX_RECLAIM_RETRIES: usize = 5;

/// Charge `pages` of kind `stat` through `ctx` to whatever live group it bills.
///
/// On a limit: one `max` event on the group whose limit failed, then every
/// stock of the hierarchy is drained, then that group's subtree is reclaimed
/// up to [`MAX_RECLAIM_RETRIES`] times; if the charge still fails, an `oom`
/// event, and the charge fails, or is forced when `nofail` (the kernel's
/// `__GFP_NOFAIL`).
pub(crate) fn charge(ctx: &CtxRef, pages: usize, stat: Stat, nofail: bool) -> Result<()> {
    if stock_consume(ctx, pages, stat) {
        return Ok(());
    }
    let _internal = crate::reentrancy::Internal::enter();
    let mut batch = pages.max(BATCH);
    let mut counted_max = false;
    let mut drained = false;
    let mut retries = MAX_RECLAIM_RETRIES;
    loop {
        let over = match try_charge_owner(ctx, batch, stat, pages) {
            Ok(group) => {
                if batch > pages {
                    // Over a memory.high the batch's slack would hide the
                    // excess from reclaim: keep the exact charge only.
                    if over_high(&group) {
                        group.counter.uncharge(batch - pages);
                    } else {
                        stock_refill(ctx, batch - pages);
                    }
                }
                handle_high(&group, pages);
                return Ok(());
            }
            Err(over) => over,
        };
        // The batch did not fit: retry with the exact amount, so that a
        // limit stops exactly where it is set.
        if batch > pages {
            batch = pages;
            continue;
        }
        if !counted_max {
            over.event(Event::Max);
            counted_max = true;
        }
        if !drained {
            drained = true;
            drain_all_stocks(over.common.id);
            continue;
        }
        if retries > 0 {
            retries -= 1;
            // The charging thread stalls on memory meanwhile (PSI).
            let charged = ctx.with_owner(|g| g.clone());
            charged.stall(1);
            let freed = reclaim(&over, pages);
            charged.stall(-1);
            if freed > 0 {
                continue;
            }
        }
        over.event(Event::Oom);
        // S14: stop a unit of the domain (recorded here, acted on at its
        // next poll or safe point); the charge fails or overcharges as
        // before.
        crate::group::kill::oom_kill(&over, &ctx.with_owner(|g| g.clone()));
        if nofail {
            force_charge(ctx, pages, stat);
            return Ok(());
        }
        return Err(Error::Limit {
            path: over.path.clone(),
            pages,
            max: bytes(over.counter.max()),
        });
    }
}

/// S5: charge the context's owner if it is live, retrying while the context
/// still points at a dying group (the seed's `css_tryget` loop). The charge
/// is made inside the reader section, so once a removal has switched the
/// context and waited out its readers, no charge lands on the removed group.
/// Returns the group charged, or the group whose limit failed.
fn try_charge_owner(
    ctx: &CtxRef,
    batch: usize,
    stat: Stat,
    pages: usize,
) -> std::result::Result<Arc<GroupInner>, Arc<GroupInner>> {
    loop {
        let attempt = ctx.with_owner(|g| {
            if g.is_dying() {
                return None;
            }
            Some(match g.counter.try_charge(batch) {
                Ok(()) => {
                    g.stat_pages(stat, pages as isize);
                    Ok(g.clone())
                }
                Err(level) => Err(GroupInner::ancestor_arc(g, level)),
            })
        });
        match attempt {
            Some(result) => return result,
            // Removal marked the owner dying and is about to switch the
            // context to its parent.
            None => spin_wait(),
        }
    }
}

/// Charge `pages` of `stat` to whatever group `ctx` bills, over any limit
/// and without reclaim: for bytes that are already in objects (an object
/// stock settling what its owner used after another thread drained it).
pub(crate) fn charge_forced(ctx: &CtxRef, pages: usize, stat: Stat) {
    force_charge(ctx, pages, stat)
}

fn force_charge(ctx: &CtxRef, pages: usize, stat: Stat) {
    loop {
        let done = ctx.with_owner(|g| {
            if g.is_dying() {
                return false;
            }
            g.counter.charge(pages);
            g.stat_pages(stat, pages as isize);
            true
        });
        if done {
            return;
        }
        spin_wait();
    }
}

/// Uncharge `pages` of kind `stat` from whatever group `ctx` bills now (S2):
/// into the thread's stock when it holds `ctx`, else from the counters.
pub(crate) fn uncharge(ctx: &CtxRef, pages: usize, stat: Stat) {
    if stock_uncharge(ctx, pages, stat) {
        return;
    }
    ctx.with_owner(|g| {
        g.counter.uncharge(pages);
        g.stat_pages(stat, -(pages as isize));
    });
}

/// After a charge of `pages` to `group`: every group from `group` up whose
/// usage is above its `memory.high` counts a `high` event and is reclaimed
/// back toward it, synchronously and best effort (the thread stalls on
/// memory meanwhile). If the group is still over a `high`, the charge's
/// pages are owed as throttling at the thread's next safe point
/// ([`take_over_high`]): never here, which may be inside the allocator.
pub(crate) fn handle_high(group: &Arc<GroupInner>, pages: usize) {
    let mut stalled = false;
    for g in group.ancestors() {
        let high = g.counter.high();
        if high >= PAGE_COUNTER_MAX {
            continue;
        }
        let usage = g.counter.usage();
        if usage > high {
            g.event(Event::High);
            if !stalled {
                stalled = true;
                group.stall(1);
            }
            reclaim(g, usage - high);
        }
    }
    if stalled {
        group.stall(-1);
        if over_high(group) {
            owe_over_high(group, pages);
        }
    }
}

#[cfg(not(loom))]
thread_local! {
    /// Pages the thread charged over a `memory.high`, and the group it
    /// charged them to (the kernel's `current->memcg_nr_pages_over_high`).
    /// A weak reference: an idle thread's debt never keeps a removed group
    /// from being freed (S1).
    static OVER_HIGH: std::cell::RefCell<Option<(std::sync::Weak<GroupInner>, usize)>> =
        const { std::cell::RefCell::new(None) };
}

#[cfg(not(loom))]
fn owe_over_high(group: &Arc<GroupInner>, pages: usize) {
    // A thread past its exit owes nothing: it will never pay.
    if !crate::lifecycle::arm_exit(crate::lifecycle::Exit::ThrottleDebt, forget_over_high) {
        return;
    }
    let _ = OVER_HIGH.try_with(|o| {
        let Ok(mut o) = o.try_borrow_mut() else {
            return;
        };
        match &mut *o {
            Some((g, n)) if std::ptr::eq(g.as_ptr(), Arc::as_ptr(group)) => *n += pages,
            other => *other = Some((Arc::downgrade(group), pages)),
        }
    });
}

/// Thread exit ([`Exit::ThrottleDebt`](crate::lifecycle::Exit::ThrottleDebt)):
/// the debt is forgotten.
#[cfg(not(loom))]
fn forget_over_high() {
    drop(take_over_high());
}

#[cfg(loom)]
fn owe_over_high(_group: &Arc<GroupInner>, _pages: usize) {}

/// What the calling thread owes for charging over `memory.high`: the group
/// (if it still exists) and the pages, taken (a safe point pays it).
#[cfg(not(loom))]
pub(crate) fn take_over_high() -> Option<(Arc<GroupInner>, usize)> {
    let (g, pages) = OVER_HIGH
        .try_with(|o| o.try_borrow_mut().ok().and_then(|mut o| o.take()))
        .ok()
        .flatten()?;
    Some((g.upgrade()?, pages))
}

#[cfg(loom)]
pub(crate) fn take_over_high() -> Option<(Arc<GroupInner>, usize)> {
    None
}

/// The delay for `pages` charged over `memory.high` by a thread of `group`,
/// as the kernel's `calculate_high_delay`: the largest overage of the group
/// and its ancestors, `(usage - high) / high` in 20-bit fixed point, squared
/// and scaled so that the delay grows quadratically with the overage,
/// times the charge's size against a batch of `CHARGE_BATCH` pages;
/// at most 2 s, nothing under 10 ms.
pub(crate) fn high_delay(group: &GroupInner, pages: usize) -> std::time::Duration {
    const HZ: u128 = 1000;
    let max_overage = group
        .ancestors()
        .filter_map(|g| {
            let (usage, high) = (g.counter.usage(), g.counter.high());
            (high < PAGE_COUNTER_MAX && usage > high)
                .then(|| (((usage - high) as u128) << 20) / high.max(1) as u128)
        })
        .max()
        .unwrap_or(0);
    let penalty = (max_overage * max_overage * HZ) >> 20 >> 14;
    let jiffies = (penalty * pages as u128 / crate::accounting::charge_stock::CHARGE_BATCH as u128)
        .min(2 * HZ);
    if jiffies <= HZ / 100 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::from_millis(jiffies as u64)
}

fn over_high(group: &GroupInner) -> bool {
    group
        .ancestors()
        .any(|g| g.counter.usage() > g.counter.high())
}

pub(crate) fn bytes(pages: usize) -> u64 {
    if pages >= PAGE_COUNTER_MAX {
        u64::MAX
    } else {
        pages as u64 * PAGE_SIZE as u64
    }
}

#[cfg(not(loom))]
fn stock_consume(ctx: &CtxRef, pages: usize, stat: Stat) -> bool {
    crate::accounting::charge_stock::consume(ctx, pages, stat)
}

#[cfg(not(loom))]
fn stock_uncharge(ctx: &CtxRef, pages: usize, stat: Stat) -> bool {
    crate::accounting::charge_stock::uncharge_cached(ctx, pages, stat)
}

#[cfg(not(loom))]
fn stock_refill(ctx: &CtxRef, pages: usize) {
    crate::accounting::charge_stock::refill(ctx, pages)
}

// Under loom the process-wide stock registry would outlive each model run;
// the models check the context protocol, so they charge exact amounts.
#[cfg(not(loom))]
const BATCH: usize = crate::accounting::charge_stock::CHARGE_BATCH;

#[cfg(loom)]
const BATCH: usize = 1;

#[cfg(loom)]
fn stock_consume(_: &CtxRef, _: usize, _: Stat) -> bool {
    false
}

#[cfg(loom)]
fn stock_uncharge(_: &CtxRef, _: usize, _: Stat) -> bool {
    false
}

#[cfg(loom)]
fn stock_refill(_: &CtxRef, _: usize) {
    unreachable!("no batches under loom")
}

/// What the global allocator does when a charge would exceed `memory.max`
/// and reclaim cannot make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitPolicy {
    /// Charge anyway, past the limit, counting the `max` and `oom` events
    /// (the kernel's `__GFP_NOFAIL`). The default: a Rust global allocator
    /// that returns null aborts the process, and most programs would rather
    /// see the group over its limit in `memory.events` than die; use
    /// [`Group::allocator`](crate::Group::allocator) for hard limits.
    Overcharge,
    /// Return null: Rust then calls `handle_alloc_error`, which aborts.
    Fail,
}

static POLICY: AtomicU8 = AtomicU8::new(0);

/// Set the global allocator's [`LimitPolicy`].
pub fn set_limit_policy(policy: LimitPolicy) {
    POLICY.store(policy as u8, Relaxed);
}

/// The global allocator's [`LimitPolicy`].
pub fn limit_policy() -> LimitPolicy {
    match POLICY.load(Relaxed) {
        0 => LimitPolicy::Overcharge,
        _ => LimitPolicy::Fail,
    }
}
