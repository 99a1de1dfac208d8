//! Layer 3: per-thread object stocks (the kernel's `obj_stock`), for byte
//! charges of shared slab objects (S11).
//!
//! A stock caches one kmem context, bytes already charged through it and not
//! yet used, and the change of the `slab` statistic not yet applied. An
//! object of a shared cache takes its bytes (slot plus object-vector entry)
//! from the allocating thread's stock, and gives them back to the freeing
//! thread's stock when that stock caches the object's context: both only
//! touch the thread's own cells. The page counter sees whole pages only, in
//! the cold paths here: a refill charges pages, a drain uncharges whole pages
//! and leaves the sub-page remainder with the context (`nr_bytes`, the
//! kernel's `nr_charged_bytes`), which moves with it on reparenting.
//!
//! Every page charged through a stock holds a reference on its context, so a
//! context lives while any byte charged through it does: an object alive in
//! a shared slab keeps its context alive without a per-object count.
//!
//! Stocks are drained on a group change, at thread exit, by
//! `flush_thread_cache` and by a quiesce on their own thread; a thread's
//! undrained stock holds less than [`STOCK_MAX`] bytes of slack and the same
//! bound of unapplied statistics.

use crate::charge;
use crate::context::{CtxRef, KmemContext};
use crate::error::Result;
use crate::stats::Stat;
use crate::sync::Ordering::*;
use crate::PAGE_SIZE;
use std::cell::Cell;
use std::ptr;

/// The most pre-charged bytes a stock keeps: beyond it, whole pages go back
/// (the kernel drains an obj_stock above a page too). So the slack all
/// stocks hold for a group is under a page per thread, which a charge at the
/// group's limit cannot drain from other threads.
pub(crate) const STOCK_MAX: usize = PAGE_SIZE;

/// One thread's object stock. Owner thread only (it lives in thread-locals).
pub(crate) struct ObjStock {
    /// A counted context reference (`CtxRef::into_raw`), or null.
    ctx: Cell<*const KmemContext>,
    /// Bytes charged through `ctx` and not used by any object.
    bytes: Cell<usize>,
    /// Bytes of `slab_unreclaimable` and `slab_reclaimable` (by
    /// [`SlabKind`]) not yet applied to `ctx`'s owner.
    slab: [Cell<isize>; 2],
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
            ctx: Cell::new(ptr::null()),
            bytes: Cell::new(0),
            slab: [Cell::new(0), Cell::new(0)],
        }
    }

    /// Whether the stock holds `need` bytes charged through `ctx`. The fast
    /// path: thread-local cells only.
    #[inline(always)]
    pub(crate) fn can_consume(&self, ctx: *const KmemContext, need: usize) -> bool {
        self.ctx.get() == ctx && self.bytes.get() >= need
    }

    /// Take `need` bytes for a new object, after [`can_consume`](Self::can_consume).
    #[inline(always)]
    pub(crate) fn consume(&self, need: usize, kind: SlabKind) {
        self.bytes.set(self.bytes.get() - need);
        self.add_slab(kind, need as isize);
    }

    #[inline(always)]
    fn add_slab(&self, kind: SlabKind, bytes: isize) {
        let cell = &self.slab[kind as usize];
        cell.set(cell.get() + bytes);
    }

    /// Give back the `need` bytes of a freed object charged through `ctx`,
    /// if the stock caches `ctx` and has room. The fast path.
    #[inline(always)]
    pub(crate) fn try_return(&self, ctx: *const KmemContext, need: usize, kind: SlabKind) -> bool {
        let bytes = self.bytes.get() + need;
        if self.ctx.get() != ctx || bytes > STOCK_MAX {
            return false;
        }
        self.bytes.set(bytes);
        self.add_slab(kind, -(need as isize));
        true
    }

    /// Charge `need` bytes through `ctx` for a new object: switch the stock
    /// to `ctx` (draining what it held), take the context's sub-page
    /// remainder, and charge whole pages for the rest (S5: to a live group;
    /// at a limit: reclaim, then fail or, with `nofail`, overcharge).
    #[cold]
    #[inline(never)]
    pub(crate) fn charge(
        &self,
        ctx: &CtxRef,
        need: usize,
        kind: SlabKind,
        nofail: bool,
    ) -> Result<()> {
        if self.ctx.get() != ctx.as_ptr() {
            self.drain();
            self.ctx.set(ctx.clone().into_raw());
        }
        self.flush_stat(ctx);
        if self.bytes.get() < need {
            self.bytes
                .set(self.bytes.get() + ctx.nr_bytes.swap(0, AcqRel));
        }
        if self.bytes.get() < need {
            let pages = (need - self.bytes.get()).div_ceil(PAGE_SIZE);
            // Reclaim at a limit may free objects on this very thread, which
            // come back to this stock: hold its contents aside meanwhile and
            // drain whatever those frees leave in it.
            let held = (self.ctx.replace(ptr::null()), self.bytes.replace(0));
            let charged = charge::charge(ctx, pages, Stat::Kernel, nofail);
            self.drain();
            self.ctx.set(held.0);
            self.bytes.set(held.1);
            charged?;
            ctx.get_refs(pages);
            self.bytes.set(self.bytes.get() + pages * PAGE_SIZE);
        }
        self.consume(need, kind);
        Ok(())
    }

    /// Give back the bytes of a freed object whose context the stock does
    /// not cache, or that overflow it. `ctx` is alive: the object's bytes
    /// are still charged through it, and we take a reference before they
    /// are not.
    ///
    /// # Safety
    /// `ctx` is the context recorded for a live object being freed by the
    /// caller, and `need` its charged bytes.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn uncharge(
        &self,
        ctx: *const KmemContext,
        need: usize,
        kind: SlabKind,
        adopt: bool,
    ) {
        // SAFETY: the object's charge keeps the context alive (its pages hold
        // references), and the clone is taken before the bytes are given up.
        let ctx = unsafe { CtxRef::clone_raw(ctx) };
        if self.ctx.get() == ctx.as_ptr() {
            // Overflow: keep the sub-page remainder, return whole pages.
            let bytes = self.bytes.get() + need;
            self.add_slab(kind, -(need as isize));
            self.flush_stat(&ctx);
            self.bytes.set(bytes % PAGE_SIZE);
            uncharge_pages(&ctx, bytes / PAGE_SIZE);
        } else if adopt {
            // As the kernel's refill_obj_stock: the stock follows the frees
            // while the thread does not need it for its own allocations.
            self.drain();
            self.bytes.set(need);
            self.add_slab(kind, -(need as isize));
            self.ctx.set(ctx.into_raw());
        } else {
            ctx.with_owner(|g| g.stat_add(kind.stat(), -(need as isize)));
            return_bytes(&ctx, need);
        }
    }

    /// Whether the stock caches `ctx`.
    #[inline(always)]
    pub(crate) fn holds(&self, ctx: *const KmemContext) -> bool {
        self.ctx.get() == ctx
    }

    /// Return everything: apply the statistics, uncharge whole pages, leave
    /// the remainder with the context, drop the reference.
    pub(crate) fn drain(&self) {
        let p = self.ctx.replace(ptr::null());
        if p.is_null() {
            return;
        }
        // SAFETY: a non-null `ctx` is the stock's counted reference, taken
        // out of the cell exactly once here.
        let ctx = unsafe { CtxRef::from_raw(p) };
        self.flush_stat(&ctx);
        return_bytes(&ctx, self.bytes.replace(0));
    }

    fn flush_stat(&self, ctx: &CtxRef) {
        for kind in [SlabKind::Unreclaimable, SlabKind::Reclaimable] {
            let delta = self.slab[kind as usize].replace(0);
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
