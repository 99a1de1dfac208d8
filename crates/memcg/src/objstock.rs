//! Layer 3: per-thread object stocks (the kernel's `obj_stock`), for byte
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
//! thrash the own slot. Both slots keep under [`STOCK_MAX`] bytes; the page
//! counter sees whole pages only, in the cold paths here: a refill charges
//! pages, an overflow or a drain uncharges whole pages and leaves the
//! sub-page remainder with the context (`nr_bytes`, the kernel's
//! `nr_charged_bytes`), which moves with it on reparenting.
//!
//! Every page charged through a stock holds a reference on its context, so a
//! context lives while any byte charged through it does: an object alive in
//! a shared slab keeps its context alive without a per-object count.
//!
//! Stocks are drained on a group change, at thread exit, by
//! `flush_thread_cache` and by a quiesce on their own thread.

use crate::charge;
use crate::context::{CtxRef, KmemContext};
use crate::error::Result;
use crate::stats::Stat;
use crate::sync::Ordering::*;
use crate::PAGE_SIZE;
use std::cell::Cell;
use std::ptr;

/// The most pre-charged bytes a slot keeps: beyond it, whole pages go back
/// (the kernel drains an obj_stock above a page too). So the slack all
/// stocks hold for a group is under two pages per thread, which a charge at
/// the group's limit cannot drain from other threads.
pub(crate) const STOCK_MAX: usize = PAGE_SIZE;

/// The budget of the own slot in the root: never runs out in practice
/// (refreshed by the slow path when it falls below half).
const ROOT_BUDGET: isize = 1 << 60;

/// One thread's object stock. Owner thread only (it lives in thread-locals).
pub(crate) struct ObjStock {
    /// The own slot's budget (see the module doc). The allocation fast path
    /// subtracts first and goes slow when the result is negative; the free
    /// fast path adds first and goes slow above [`STOCK_MAX`]: the slow
    /// paths take the fast path's change back before anything else.
    budget: Cell<isize>,
    /// The own slot's context: a counted reference (`CtxRef::into_raw`), or
    /// null (the root: endless budget, nothing charged).
    ctx: Cell<*const KmemContext>,
    /// `budget` plus the bytes of objects already in the statistics: the
    /// statistics lag by `base - budget`.
    base: Cell<isize>,
    /// Of that lag, the bytes of reclaimable objects (`slab_reclaimable`;
    /// the rest is `slab_unreclaimable`).
    reclaimable: Cell<isize>,
    /// The foreign slot: a counted context reference or null, the bytes
    /// its objects' frees gave back, and their statistics.
    fctx: Cell<*const KmemContext>,
    fbytes: Cell<usize>,
    fslab: [Cell<isize>; 2],
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

impl ObjStock {
    pub(crate) const fn new() -> ObjStock {
        ObjStock {
            budget: Cell::new(ROOT_BUDGET),
            ctx: Cell::new(ptr::null()),
            base: Cell::new(ROOT_BUDGET),
            reclaimable: Cell::new(0),
            fctx: Cell::new(ptr::null()),
            fbytes: Cell::new(0),
            fslab: [Cell::new(0), Cell::new(0)],
        }
    }

    /// The allocation fast path: take `need` bytes from the budget; false
    /// when it ran out, with the bytes taken anyway (the slow path calls
    /// [`untake`](Self::untake) first).
    #[inline(always)]
    pub(crate) fn take(&self, need: usize) -> bool {
        let b = self.budget.get() - need as isize;
        self.budget.set(b);
        b >= 0
    }

    /// Undo a failed [`take`](Self::take).
    #[inline(always)]
    pub(crate) fn untake(&self, need: usize) {
        self.budget.set(self.budget.get() + need as isize);
    }

    /// The free fast path: give `need` bytes of an object charged through
    /// `ctx` back to the budget, if `ctx` is the own slot's and the budget
    /// stays under [`STOCK_MAX`]; false otherwise, with nothing changed.
    #[inline(always)]
    pub(crate) fn give(&self, ctx: *const KmemContext, need: usize) -> bool {
        if self.ctx.get() != ctx {
            return false;
        }
        let b = self.budget.get() + need as isize;
        if b > STOCK_MAX as isize {
            return false;
        }
        self.budget.set(b);
        true
    }

    /// The own slot's context (null: the root).
    #[inline(always)]
    pub(crate) fn ctx(&self) -> *const KmemContext {
        self.ctx.get()
    }

    /// Count `bytes` (negative: freed) of reclaimable objects among those
    /// the own slot's budget paid for or took back.
    #[inline]
    pub(crate) fn note_reclaimable(&self, bytes: isize) {
        self.reclaimable.set(self.reclaimable.get() + bytes);
    }

    /// Make the own slot serve `ctx` (`None`: the root), draining what it
    /// held for another context. A new group context starts with an empty
    /// budget: the first allocation charges.
    pub(crate) fn switch(&self, ctx: Option<&CtxRef>) {
        let p = ctx.map_or(ptr::null(), CtxRef::as_ptr);
        if self.ctx.get() == p {
            return;
        }
        self.drain_own();
        if let Some(ctx) = ctx {
            self.ctx.set(ctx.clone().into_raw());
            self.budget.set(0);
            self.base.set(0);
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
        self.switch(Some(ctx));
        self.flush_stat_batched();
        let need = need as isize;
        if self.budget.get() < need {
            let rem = ctx.nr_bytes.swap(0, AcqRel) as isize;
            self.add_precharged(rem);
        }
        if self.budget.get() < need {
            let pages = (need - self.budget.get()) as usize;
            let pages = pages.div_ceil(PAGE_SIZE);
            // Reclaim at a limit may free objects on this very thread, which
            // come back to this stock: hold its contents aside meanwhile and
            // drain whatever those frees leave in it.
            let held = self.take_own();
            let charged = charge::charge(ctx, pages, Stat::Kernel, nofail);
            self.drain_own();
            self.put_own(held);
            charged?;
            ctx.get_refs(pages);
            self.add_precharged((pages * PAGE_SIZE) as isize);
        }
        self.budget.set(self.budget.get() - need);
        if kind == SlabKind::Reclaimable {
            self.note_reclaimable(need);
        }
        Ok(())
    }

    /// Bytes charged (or taken from the context's remainder) join the
    /// budget: not object bytes, so `base` moves with them.
    fn add_precharged(&self, bytes: isize) {
        self.budget.set(self.budget.get() + bytes);
        self.base.set(self.base.get() + bytes);
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
        if self.ctx.get() == ctx {
            // Overflow: keep the sub-page remainder, return whole pages.
            self.budget.set(self.budget.get() + need as isize);
            if kind == SlabKind::Reclaimable {
                self.note_reclaimable(-(need as isize));
            }
            self.flush_stat_batched();
            let b = self.budget.get().max(0) as usize;
            let pages = b / PAGE_SIZE;
            if pages > 0 {
                self.add_precharged(-((pages * PAGE_SIZE) as isize));
                // SAFETY: the own slot holds a counted reference.
                let c = unsafe { CtxRef::clone_raw(ctx) };
                uncharge_pages(&c, pages);
            }
            return;
        }
        if self.fctx.get() != ctx {
            self.drain_foreign();
            // SAFETY: the object's charge keeps the context alive (its pages
            // hold references), and the clone is taken before the bytes are
            // given up.
            self.fctx.set(unsafe { CtxRef::clone_raw(ctx) }.into_raw());
        }
        let cell = &self.fslab[kind as usize];
        cell.set(cell.get() - need as isize);
        self.fbytes.set(self.fbytes.get() + need);
        if self.fbytes.get() > STOCK_MAX {
            let pages = self.fbytes.get() / PAGE_SIZE;
            self.fbytes.set(self.fbytes.get() % PAGE_SIZE);
            // SAFETY: the foreign slot holds a counted reference.
            let c = unsafe { CtxRef::clone_raw(ctx) };
            self.flush_foreign_stat(&c);
            uncharge_pages(&c, pages);
        }
    }

    /// Return every pre-charged byte: apply the statistics, uncharge whole
    /// pages, leave the remainders with the contexts. The own slot keeps its
    /// context with an empty budget (the heap's current slabs still serve
    /// it); the foreign slot lets go of its.
    pub(crate) fn drain(&self) {
        let p = self.ctx.get();
        if !p.is_null() {
            self.flush_stat();
            let budget = self.budget.replace(0).max(0) as usize;
            self.base.set(0);
            // SAFETY: the own slot's counted reference keeps the context
            // alive; the view is not dropped.
            let ctx = std::mem::ManuallyDrop::new(unsafe { CtxRef::from_raw(p) });
            return_bytes(&ctx, budget);
        }
        self.drain_foreign();
    }

    /// [`drain`](Self::drain), and let go of the own slot's context too: the
    /// root's endless budget is back. The caller's heap must then hold no
    /// current slab uniform for another context (thread exit, a flush).
    pub(crate) fn release(&self) {
        self.drain_own();
        self.drain_foreign();
    }

    /// Refresh the root's budget when it has run low (slow paths).
    pub(crate) fn refresh_root(&self) {
        if self.ctx.get().is_null() && self.budget.get() < ROOT_BUDGET / 2 {
            self.budget.set(ROOT_BUDGET);
            self.base.set(ROOT_BUDGET);
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
    /// returns its context reference (raw) and budget.
    fn take_own(&self) -> (*const KmemContext, isize) {
        self.flush_stat();
        let p = self.ctx.replace(ptr::null());
        let budget = self.budget.replace(ROOT_BUDGET);
        self.base.set(ROOT_BUDGET);
        self.reclaimable.set(0);
        (p, if p.is_null() { 0 } else { budget })
    }

    /// Put back what [`take_own`](Self::take_own) returned, into an empty
    /// own slot.
    fn put_own(&self, (p, budget): (*const KmemContext, isize)) {
        if p.is_null() {
            return;
        }
        self.ctx.set(p);
        self.budget.set(budget);
        self.base.set(budget);
    }

    fn drain_foreign(&self) {
        let p = self.fctx.replace(ptr::null());
        if p.is_null() {
            return;
        }
        // SAFETY: the foreign slot's counted reference, taken out once.
        let ctx = unsafe { CtxRef::from_raw(p) };
        self.flush_foreign_stat(&ctx);
        return_bytes(&ctx, self.fbytes.replace(0));
    }

    /// Apply the own slot's pending statistics once they are a page's worth
    /// (or any reclaimable bytes are pending: those are rare and exact).
    fn flush_stat_batched(&self) {
        let lag = self.base.get() - self.budget.get();
        if lag.unsigned_abs() >= PAGE_SIZE || self.reclaimable.get() != 0 {
            self.flush_stat();
        }
    }

    /// Apply the own slot's pending statistics.
    fn flush_stat(&self) {
        let p = self.ctx.get();
        let lag = self.base.get() - self.budget.get();
        self.base.set(self.budget.get());
        let reclaimable = self.reclaimable.replace(0);
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
            let delta = self.fslab[kind as usize].replace(0);
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

/// Uncharge `pages` from whatever group `ctx` bills now, and drop the
/// references those pages held (never the last: the caller holds `ctx`).
fn uncharge_pages(ctx: &CtxRef, pages: usize) {
    if pages > 0 {
        charge::uncharge(ctx, pages, Stat::Kernel);
        ctx.put_refs(pages);
    }
}
