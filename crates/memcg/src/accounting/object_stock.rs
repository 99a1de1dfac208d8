//! Per-thread object stocks (the kernel's `obj_stock`), for byte
//! charges of shared slab objects (S11).
//!
//! A stock has two slots. The *own* slot caches the context the thread
//! allocates for and a *budget*: bytes already charged through it and not
//! yet used. An allocation subtracts its object's bytes from the budget and
//! a free of an object of that context adds them back: one thread-local
//! add each, no compare of the context on allocation (the heap keeps its
//! slabs in step with the slot's context). The `slab` statistics are not
//! counted per object: the bytes objects took since the last flush are the
//! budget's fall (`base - budget`), applied when a slow path passes anyway,
//! so at most about a page of them is pending (Waiman Long's 2021 batching
//! of obj_stock statistics). In the root the own slot has no context and an
//! endless budget: nothing is charged and the statistics are never applied
//! (S10).
//!
//! The *foreign* slot takes the frees of another context's objects (a
//! thread freeing what another tenant allocated), so that such frees do not
//! thrash the own slot. The page counter sees whole pages only, in the cold
//! paths here: a refill charges pages, an overflow or a drain uncharges
//! whole pages and leaves the sub-page remainder with the context
//! (`nr_bytes`, the kernel's `nr_charged_bytes`), which moves with it on
//! reparenting.
//!
//! The own slot keeps room on both sides after each trip to the page
//! counter: its budget lives in `0..=`[`STOCK_MAX`] (two pages), a refill
//! leaves it just under one page and an overflow just over one page. A
//! thread that frees and allocates objects of mixed sizes moves its budget
//! in a random walk, which then needs about a page's worth of net change to
//! go to the page counter again. (With a one-page window, as the kernel's
//! obj_stock has, a refill leaves the budget near the top and an overflow
//! near the bottom, and a churn of mixed sizes crossed back at once: about
//! one page-counter trip per 16 replacements, `tests/stock_batching.rs`.)
//! The foreign slot keeps under [`FOREIGN_MAX`].
//!
//! Every page charged through a stock holds a reference on its context, so a
//! context lives while any byte charged through it does: an object alive in
//! a shared slab keeps its context alive without a per-object count.
//!
//! Stocks are drained on a group change, at thread exit, by
//! `flush_thread_cache` and by a quiesce on their own thread.

use crate::accounting::charge;
use crate::error::Result;
use crate::group::kmem_context::{CtxRef, KmemContext};
use crate::group::stats::Stat;
use crate::sync::Ordering::*;
use crate::sync::{const_unless_loom, AtomicBool, AtomicIsize, AtomicPtr, AtomicUsize};
use crate::PAGE_SIZE;
use std::ptr;

/// The most pre-charged bytes the own slot keeps: beyond it, whole pages go
/// back but one (see the module doc). So the slack a thread's stock holds
/// for a group is at most three pages, which a charge at the group's limit
/// drains (`drain_remote`) before it reclaims.
pub(crate) const STOCK_MAX: usize = 2 * PAGE_SIZE;

/// The most bytes the foreign slot keeps: it only takes frees, so it needs
/// no room below.
const FOREIGN_MAX: usize = PAGE_SIZE;

/// Drains by other threads that settled an own slot's budget (returned its
/// bytes, or charged those its owner used since an earlier drain), and owner
/// settlements that found drained bytes used by their fast paths meanwhile
/// (the race the handshake resolves). For tests and studies.
pub(crate) static REMOTE_DRAINS: [std::sync::atomic::AtomicUsize; 2] = [
    std::sync::atomic::AtomicUsize::new(0),
    std::sync::atomic::AtomicUsize::new(0),
];

/// The budget of the own slot in the root: never runs out in practice
/// (refreshed by the slow path when it falls below half).
const ROOT_BUDGET: isize = 1 << 60;

/// One thread's object stock. It lives in the thread's heap; the owner uses
/// it, and another thread may drain it ([`drain_remote`](Self::drain_remote)).
///
/// The fields are atomics read and written Relaxed, plain moves: the fast
/// paths load and store `budget` (and load `ctx`) without a read-modify-write
/// or a fence. Everything else happens under `lock`, which the owner takes
/// in its slow paths and a drainer takes for the whole drain: a drainer never
/// writes `budget` or the own slot's context, which the fast paths use. It
/// settles the budget as it reads it — returns those bytes to the page
/// counter, or, if the owner used bytes an earlier drain returned, charges
/// them — and records the budget in `drained`, which the owner's next slow
/// path takes off its own ([`reconcile`](Self::reconcile)), charging at once
/// whatever its fast paths used after the read. An idle owner's stock is
/// thus drained exactly; a busy one's at worst lags by the bytes it
/// allocated after the read, until its next slow path. The foreign slot is
/// only touched under the lock, so a drainer empties it and drops its
/// context.
pub(crate) struct ObjStock {
    /// The own slot's budget (see the module doc). The allocation fast path
    /// subtracts first and goes slow when the result is negative; the free
    /// fast path adds first and goes slow above [`STOCK_MAX`]: the slow
    /// paths take the fast path's change back before anything else.
    budget: AtomicIsize,
    /// The own slot's context: a counted reference (`CtxRef::into_raw`), or
    /// null (the root: endless budget, nothing charged).
    ctx: AtomicPtr<KmemContext>,
    /// `budget` plus the bytes of objects already in the statistics: the
    /// statistics lag by `base - budget`. Under the lock.
    base: AtomicIsize,
    /// Of that lag, the bytes of reclaimable objects (`slab_reclaimable`;
    /// the rest is `slab_unreclaimable`). Added to without the lock (with a
    /// read-modify-write: reclaimable objects only), taken under it.
    reclaimable: AtomicIsize,
    /// The budget the last drainer settled, which the owner has not taken
    /// off its budget yet (0: none). Under the lock.
    drained: AtomicIsize,
    /// The foreign slot: a counted context reference or null, the bytes
    /// its objects' frees gave back, and their statistics. Under the lock.
    fctx: AtomicPtr<KmemContext>,
    fbytes: AtomicUsize,
    fslab: [AtomicIsize; 2],
    /// Serializes the owner's slow paths with drainers.
    lock: AtomicBool,
    /// How many times the own slot went to the page counter for its owner's
    /// allocations and frees (a refill charged pages, an overflow returned
    /// some). Written by the owner under the lock; for tests and studies.
    trips: AtomicUsize,
}

/// Which `slab_*` statistic an object counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlabKind {
    Unreclaimable = 0,
    Reclaimable = 1,
}

impl SlabKind {
    pub(crate) fn of(reclaimable: bool) -> SlabKind {
        if reclaimable {
            SlabKind::Reclaimable
        } else {
            SlabKind::Unreclaimable
        }
    }

    fn stat(self) -> Stat {
        match self {
            SlabKind::Unreclaimable => Stat::SlabUnreclaimable,
            SlabKind::Reclaimable => Stat::SlabReclaimable,
        }
    }
}

#[inline(always)]
fn get(a: &AtomicIsize) -> isize {
    a.load(Relaxed)
}

#[inline(always)]
fn set(a: &AtomicIsize, v: isize) {
    a.store(v, Relaxed)
}

/// The stock's lock, held outside the fork gate (see `lock_plain`).
struct PlainLocked<'a>(&'a ObjStock);

impl Drop for PlainLocked<'_> {
    fn drop(&mut self) {
        self.0.lock.store(false, Release);
    }
}

/// The stock's lock, held for a slow-path section, inside the fork gate
/// (entered first, left last): a fork waits for the section, and the
/// section never waits at a closed gate while it holds the lock, which a
/// drainer inside the gate may be waiting for.
struct Locked<'a>(
    &'a ObjStock,
    #[cfg(not(loom))]
    #[allow(dead_code)]
    crate::fork::Gate,
);

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.0.lock.store(false, Release);
    }
}

impl ObjStock {
    const_unless_loom! {
    pub(crate) fn new() -> ObjStock {
        ObjStock {
            budget: AtomicIsize::new(ROOT_BUDGET),
            ctx: AtomicPtr::new(ptr::null_mut()),
            base: AtomicIsize::new(ROOT_BUDGET),
            reclaimable: AtomicIsize::new(0),
            drained: AtomicIsize::new(0),
            fctx: AtomicPtr::new(ptr::null_mut()),
            fbytes: AtomicUsize::new(0),
            fslab: [AtomicIsize::new(0), AtomicIsize::new(0)],
            lock: AtomicBool::new(false),
            trips: AtomicUsize::new(0),
        }
    }
    }

    /// Take the lock (uncontended but while a drainer works on this stock),
    /// then take back what drainers returned.
    fn locked(&self) -> Locked<'_> {
        let l = self.lock_only();
        self.reconcile();
        l
    }

    /// Take the lock outside the fork gate, for a section that only moves
    /// the stock's own fields and calls nothing that could wait at the gate
    /// (so a drainer inside the gate never waits on a holder that waits for
    /// the gate). A fork copying such a section leaves the lock held and the
    /// section half done: the child's `force_unlock` frees it, and a half
    /// done section miscounts one object's bytes at worst.
    fn lock_plain(&self) -> PlainLocked<'_> {
        while self
            .lock
            .compare_exchange_weak(false, true, Acquire, Relaxed)
            .is_err()
        {
            crate::sync::spin_wait();
        }
        PlainLocked(self)
    }

    /// In the child of `fork()`: the stock's thread vanished; release its
    /// lock whatever it was doing.
    pub(crate) fn force_unlock(&self) {
        self.lock.store(false, Release);
    }

    /// Take the lock, inside the fork gate.
    fn lock_only(&self) -> Locked<'_> {
        #[cfg(not(loom))]
        let gate = crate::fork::Gate::enter();
        while self
            .lock
            .compare_exchange_weak(false, true, Acquire, Relaxed)
            .is_err()
        {
            crate::sync::spin_wait();
        }
        Locked(
            self,
            #[cfg(not(loom))]
            gate,
        )
    }

    /// Owner, under the lock: take the bytes drainers returned off the
    /// budget; if the fast paths used them meanwhile, charge them now
    /// (forced: they are already in objects).
    fn reconcile(&self) {
        let r = self.drained.swap(0, Relaxed);
        if r == 0 {
            return;
        }
        set(&self.budget, get(&self.budget) - r);
        set(&self.base, get(&self.base) - r);
        let deficit = -get(&self.budget);
        let p = self.ctx.load(Relaxed);
        if deficit > 0 && !p.is_null() {
            REMOTE_DRAINS[1].fetch_add(1, Relaxed);
            let pages = (deficit as usize).div_ceil(PAGE_SIZE);
            // SAFETY: the own slot's counted reference keeps the context
            // alive; the view is not dropped.
            let ctx = std::mem::ManuallyDrop::new(unsafe { CtxRef::from_raw(p) });
            charge::charge_forced(&ctx, pages, Stat::Kernel);
            ctx.get_refs(pages);
            self.add_precharged((pages * PAGE_SIZE) as isize);
        }
    }

    /// The allocation fast path: take `need` bytes from the budget; false
    /// when it ran out, with the bytes taken anyway (the slow path calls
    /// [`untake`](Self::untake) first).
    #[inline(always)]
    pub(crate) fn take(&self, need: usize) -> bool {
        let b = get(&self.budget) - need as isize;
        set(&self.budget, b);
        b >= 0
    }

    /// Undo a failed [`take`](Self::take).
    #[inline(always)]
    pub(crate) fn untake(&self, need: usize) {
        set(&self.budget, get(&self.budget) + need as isize);
    }

    /// The free fast path: give `need` bytes of an object charged through
    /// `ctx` back to the budget, if `ctx` is the own slot's and the budget
    /// stays under [`STOCK_MAX`]; false otherwise, with nothing changed.
    #[inline(always)]
    pub(crate) fn give(&self, ctx: *const KmemContext, need: usize) -> bool {
        if !ptr::eq(self.ctx.load(Relaxed), ctx) {
            return false;
        }
        let b = get(&self.budget) + need as isize;
        if b > STOCK_MAX as isize {
            return false;
        }
        set(&self.budget, b);
        true
    }

    /// The own slot's context (null: the root).
    #[inline(always)]
    pub(crate) fn ctx(&self) -> *const KmemContext {
        self.ctx.load(Relaxed)
    }

    /// Count `bytes` (negative: freed) of reclaimable objects among those
    /// the own slot's budget paid for or took back.
    #[inline]
    pub(crate) fn note_reclaimable(&self, bytes: isize) {
        self.reclaimable.fetch_add(bytes, Relaxed);
    }

    /// Make the own slot serve `ctx` (`None`: the root), draining what it
    /// held for another context. A new group context starts with an empty
    /// budget: the first allocation charges.
    pub(crate) fn switch(&self, ctx: Option<&CtxRef>) {
        let _l = self.locked();
        self.switch_locked(ctx);
    }

    fn switch_locked(&self, ctx: Option<&CtxRef>) {
        let p = ctx.map_or(ptr::null(), CtxRef::as_ptr);
        if self.ctx() == p {
            return;
        }
        self.drain_own();
        if let Some(ctx) = ctx {
            self.ctx.store(ctx.clone().into_raw() as *mut _, Relaxed);
            set(&self.budget, 0);
            set(&self.base, 0);
        }
    }

    /// Charge `need` bytes through `ctx` for a new object (the own slot
    /// switches to `ctx` if needed): take the context's sub-page remainder,
    /// and charge whole pages for the rest (S5: to a live group; at a limit:
    /// reclaim, then fail or, with `nofail`, overcharge). On success the
    /// bytes are taken from the budget.
    #[cold]
    #[inline(never)]
    pub(crate) fn charge(
        &self,
        ctx: &CtxRef,
        need: usize,
        kind: SlabKind,
        nofail: bool,
    ) -> Result<()> {
        let need = need as isize;
        let pages = {
            let _l = self.locked();
            self.switch_locked(Some(ctx));
            self.flush_stat_batched();
            if get(&self.budget) < need {
                let rem = ctx.nr_bytes.swap(0, AcqRel) as isize;
                self.add_precharged(rem);
            }
            if get(&self.budget) >= need {
                set(&self.budget, get(&self.budget) - need);
                if kind == SlabKind::Reclaimable {
                    self.note_reclaimable(need);
                }
                return Ok(());
            }
            ((need - get(&self.budget)) as usize).div_ceil(PAGE_SIZE)
        };
        // Reclaim at a limit may free objects on this very thread, which
        // come back to this stock: hold its contents aside meanwhile (and
        // the lock released: those frees take it) and drain whatever those
        // frees leave in it.
        let held = {
            let _l = self.locked();
            self.take_own()
        };
        let charged = charge::charge(ctx, pages, Stat::Kernel, nofail);
        let _l = self.locked();
        self.count_trip();
        self.drain_own();
        self.put_own(held);
        charged?;
        ctx.get_refs(pages);
        self.add_precharged((pages * PAGE_SIZE) as isize);
        set(&self.budget, get(&self.budget) - need);
        if kind == SlabKind::Reclaimable {
            self.note_reclaimable(need);
        }
        Ok(())
    }

    fn count_trip(&self) {
        self.trips.store(self.trips.load(Relaxed) + 1, Relaxed);
    }

    /// How many times the own slot went to the page counter for its owner's
    /// allocations and frees (see the field).
    pub(crate) fn page_trips(&self) -> usize {
        self.trips.load(Relaxed)
    }

    /// Bytes charged (or taken from the context's remainder) join the
    /// budget: not object bytes, so `base` moves with them.
    fn add_precharged(&self, bytes: isize) {
        set(&self.budget, get(&self.budget) + bytes);
        set(&self.base, get(&self.base) + bytes);
    }

    /// Give back the bytes of a freed object the fast path did not take:
    /// its context is not the own slot's, or the budget overflowed. `ctx` is
    /// alive: the object's bytes are still charged through it, and we take a
    /// reference before they are not.
    ///
    /// # Safety
    /// `ctx` is the context recorded for a live object being freed by the
    /// caller, and `need` its charged bytes.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn uncharge(&self, ctx: *const KmemContext, need: usize, kind: SlabKind) {
        // The common case, a free of another context's object that the
        // foreign slot caches with room: no gate, no settling.
        if !ptr::eq(self.ctx(), ctx) {
            let _l = self.lock_plain();
            let fbytes = self.fbytes.load(Relaxed) + need;
            if ptr::eq(self.fctx.load(Relaxed), ctx) && fbytes <= FOREIGN_MAX {
                self.fbytes.store(fbytes, Relaxed);
                let cell = &self.fslab[kind as usize];
                set(cell, get(cell) - need as isize);
                return;
            }
        }
        let _l = self.locked();
        if self.ctx() == ctx {
            // Overflow: return whole pages but one, keeping a page and the
            // sub-page remainder (room on both sides, see the module doc).
            set(&self.budget, get(&self.budget) + need as isize);
            if kind == SlabKind::Reclaimable {
                self.note_reclaimable(-(need as isize));
            }
            self.flush_stat_batched();
            let b = get(&self.budget).max(0) as usize;
            let pages = (b / PAGE_SIZE).saturating_sub(1);
            if pages > 0 {
                self.count_trip();
                self.add_precharged(-((pages * PAGE_SIZE) as isize));
                // SAFETY: the own slot holds a counted reference.
                let c = unsafe { CtxRef::clone_raw(ctx) };
                uncharge_pages(&c, pages);
            }
            return;
        }
        if !ptr::eq(self.fctx.load(Relaxed), ctx) {
            self.drain_foreign();
            // SAFETY: the object's charge keeps the context alive (its pages
            // hold references), and the clone is taken before the bytes are
            // given up.
            let c = unsafe { CtxRef::clone_raw(ctx) };
            self.fctx.store(c.into_raw() as *mut _, Relaxed);
        }
        let cell = &self.fslab[kind as usize];
        set(cell, get(cell) - need as isize);
        let fbytes = self.fbytes.load(Relaxed) + need;
        self.fbytes.store(fbytes % PAGE_SIZE, Relaxed);
        if fbytes > FOREIGN_MAX {
            // SAFETY: the foreign slot holds a counted reference.
            let c = unsafe { CtxRef::clone_raw(ctx) };
            self.flush_foreign_stat(&c);
            uncharge_pages(&c, fbytes / PAGE_SIZE);
        } else {
            self.fbytes.store(fbytes, Relaxed);
        }
    }

    /// Return every pre-charged byte: apply the statistics, uncharge whole
    /// pages, leave the remainders with the contexts. The own slot keeps its
    /// context with an empty budget (the heap's current slabs still serve
    /// it); the foreign slot lets go of its.
    pub(crate) fn drain(&self) {
        let _l = self.locked();
        let p = self.ctx();
        if !p.is_null() {
            self.flush_stat();
            let budget = self.budget.swap(0, Relaxed).max(0) as usize;
            set(&self.base, 0);
            // SAFETY: the own slot's counted reference keeps the context
            // alive; the view is not dropped.
            let ctx = std::mem::ManuallyDrop::new(unsafe { CtxRef::from_raw(p) });
            return_bytes(&ctx, budget);
        }
        self.drain_foreign();
    }

    /// Another thread drains this stock, whose owner may be running (see
    /// the type's doc), for each slot whose context belongs to the
    /// hierarchy `common_id` (and is `only`, unless null): the own slot's
    /// budget goes back to the page counter and its statistics are applied;
    /// the foreign slot is emptied and lets go of its context.
    pub(crate) fn drain_remote(&self, common_id: u64, only: *const KmemContext) {
        let _l = self.lock_only();
        let p = self.ctx();
        // SAFETY: the own slot's counted reference keeps the context alive
        // while we hold the lock (the owner drops it only under the lock);
        // the view is not dropped.
        let own =
            (!p.is_null()).then(|| std::mem::ManuallyDrop::new(unsafe { CtxRef::from_raw(p) }));
        let wanted = |c: &CtxRef| {
            c.common().id == common_id && (only.is_null() || ptr::eq(c.as_ptr(), only))
        };
        if let Some(ctx) = own.as_deref().filter(|c| wanted(c)) {
            // The owner's fast paths may move the budget meanwhile: what we
            // read is what we return, and the owner settles the rest.
            let budget = get(&self.budget);
            let lag = get(&self.base) - budget;
            let reclaimable = self.reclaimable.swap(0, Relaxed);
            set(&self.base, budget);
            if lag != 0 || reclaimable != 0 {
                ctx.with_owner(|g| {
                    g.stat_add(Stat::SlabUnreclaimable, lag - reclaimable);
                    g.stat_add(Stat::SlabReclaimable, reclaimable);
                });
            }
            // The owner will take the whole budget we read off its own
            // (`drained`): return it, less what earlier drains returned
            // already; if the owner used some of those meanwhile (the budget
            // is now below them), charge those bytes here, so an idle
            // owner's stock ends exact.
            let settle = budget - get(&self.drained);
            if settle != 0 {
                REMOTE_DRAINS[0].fetch_add(1, Relaxed);
                set(&self.drained, budget);
                if settle > 0 {
                    return_bytes(ctx, settle as usize);
                } else {
                    charge_bytes(ctx, settle.unsigned_abs());
                }
            }
        }
        let f = self.fctx.load(Relaxed);
        if !f.is_null() {
            // SAFETY: the foreign slot's counted reference keeps its context
            // alive while we hold the lock (the owner drops it only under
            // the lock); the view is not dropped.
            let fctx = std::mem::ManuallyDrop::new(unsafe { CtxRef::from_raw(f) });
            if wanted(&fctx) {
                self.drain_foreign();
            }
        }
    }

    /// [`drain`](Self::drain), and let go of the own slot's context too: the
    /// root's endless budget is back. The caller's heap must then hold no
    /// current slab uniform for another context (thread exit, a flush).
    pub(crate) fn release(&self) {
        let _l = self.locked();
        self.drain_own();
        self.drain_foreign();
    }

    /// Refresh the root's budget when it has run low (slow paths).
    pub(crate) fn refresh_root(&self) {
        if self.ctx().is_null() && get(&self.budget) < ROOT_BUDGET / 2 {
            let _l = self.locked();
            set(&self.budget, ROOT_BUDGET);
            set(&self.base, ROOT_BUDGET);
        }
    }

    fn drain_own(&self) {
        let (p, budget) = self.take_own();
        if p.is_null() {
            return;
        }
        // SAFETY: a non-null own context is the slot's counted reference,
        // taken out of the cell exactly once by `take_own`.
        let ctx = unsafe { CtxRef::from_raw(p) };
        return_bytes(&ctx, budget.max(0) as usize);
    }

    /// Empty the own slot (statistics applied), leaving the root's budget;
    /// returns its context reference (raw) and budget. Under the lock.
    fn take_own(&self) -> (*const KmemContext, isize) {
        self.flush_stat();
        let p = self.ctx.swap(ptr::null_mut(), Relaxed) as *const KmemContext;
        let budget = self.budget.swap(ROOT_BUDGET, Relaxed);
        set(&self.base, ROOT_BUDGET);
        self.reclaimable.store(0, Relaxed);
        (p, if p.is_null() { 0 } else { budget })
    }

    /// Put back what [`take_own`](Self::take_own) returned, into an empty
    /// own slot. Under the lock.
    fn put_own(&self, (p, budget): (*const KmemContext, isize)) {
        if p.is_null() {
            return;
        }
        self.ctx.store(p as *mut _, Relaxed);
        set(&self.budget, budget);
        set(&self.base, budget);
    }

    fn drain_foreign(&self) {
        let p = self.fctx.swap(ptr::null_mut(), Relaxed);
        if p.is_null() {
            return;
        }
        // SAFETY: the foreign slot's counted reference, taken out once.
        let ctx = unsafe { CtxRef::from_raw(p) };
        self.flush_foreign_stat(&ctx);
        return_bytes(&ctx, self.fbytes.swap(0, Relaxed));
    }

    /// Apply the own slot's pending statistics once they are a page's worth
    /// (or any reclaimable bytes are pending: those are rare and exact).
    fn flush_stat_batched(&self) {
        let lag = get(&self.base) - get(&self.budget);
        if lag.unsigned_abs() >= PAGE_SIZE || get(&self.reclaimable) != 0 {
            self.flush_stat();
        }
    }

    /// Apply the own slot's pending statistics. Under the lock.
    fn flush_stat(&self) {
        let p = self.ctx();
        let lag = get(&self.base) - get(&self.budget);
        set(&self.base, get(&self.budget));
        let reclaimable = self.reclaimable.swap(0, Relaxed);
        if p.is_null() || (lag == 0 && reclaimable == 0) {
            return;
        }
        // SAFETY: the own slot's counted reference keeps the context alive;
        // the view is not dropped.
        let ctx = std::mem::ManuallyDrop::new(unsafe { CtxRef::from_raw(p) });
        ctx.with_owner(|g| {
            if lag - reclaimable != 0 {
                g.stat_add(Stat::SlabUnreclaimable, lag - reclaimable);
            }
            if reclaimable != 0 {
                g.stat_add(Stat::SlabReclaimable, reclaimable);
            }
        });
    }

    fn flush_foreign_stat(&self, ctx: &CtxRef) {
        for kind in [SlabKind::Unreclaimable, SlabKind::Reclaimable] {
            let delta = self.fslab[kind as usize].swap(0, Relaxed);
            if delta != 0 {
                ctx.with_owner(|g| g.stat_add(kind.stat(), delta));
            }
        }
    }
}

/// `bytes` charged through `ctx` are unused: whole pages are uncharged, the
/// remainder joins the context's, whose whole pages are uncharged as well.
fn return_bytes(ctx: &CtxRef, bytes: usize) {
    uncharge_pages(ctx, bytes / PAGE_SIZE);
    let rem = bytes % PAGE_SIZE;
    if rem == 0 {
        return;
    }
    let mut now = ctx.nr_bytes.fetch_add(rem, AcqRel) + rem;
    while now >= PAGE_SIZE {
        let pages = now / PAGE_SIZE;
        match ctx
            .nr_bytes
            .compare_exchange_weak(now, now - pages * PAGE_SIZE, AcqRel, Acquire)
        {
            Ok(_) => {
                uncharge_pages(ctx, pages);
                return;
            }
            Err(seen) => now = seen,
        }
    }
}

/// `bytes` already in objects were not charged through `ctx` (a drained
/// stock's owner used them): take them from the context's sub-page
/// remainder, force-charge whole pages for the rest (the objects exist: no
/// limit can refuse them), and leave what those pages hold over as the
/// remainder.
fn charge_bytes(ctx: &CtxRef, bytes: usize) {
    let rem = ctx.nr_bytes.swap(0, AcqRel);
    let pages = bytes.saturating_sub(rem).div_ceil(PAGE_SIZE);
    if pages > 0 {
        charge::charge_forced(ctx, pages, Stat::Kernel);
        ctx.get_refs(pages);
    }
    return_bytes(ctx, rem + pages * PAGE_SIZE - bytes);
}

/// Uncharge `pages` from whatever group `ctx` bills now, and drop the
/// references those pages held (never the last: the caller holds `ctx`).
fn uncharge_pages(ctx: &CtxRef, pages: usize) {
    if pages > 0 {
        charge::uncharge(ctx, pages, Stat::Kernel);
        ctx.put_refs(pages);
    }
}
