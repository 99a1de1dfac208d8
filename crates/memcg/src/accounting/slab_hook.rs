//! The one hook between the slab allocator and accounting (the kernel's
//! `memcg_slab_post_alloc_hook` and `memcg_slab_free_hook` between
//! `slub.c` and `memcontrol.c`): the slab layer charges an object and
//! uncharges an object through this module, and knows nothing else of how
//! bytes are charged.
//!
//! A thread's heap holds its [`ObjectAccount`] (the object stock: a budget of
//! bytes pre-charged for the context the heap serves) without looking into
//! it, and a slab records an object's context as an opaque pointer (in the
//! slab while it is uniform, in its object vector once mixed). The slab
//! pages of isolated (per-group) caches are charged whole, through
//! [`charge_pages`] and [`uncharge_pages`]. Each object hook has
//! an inline attempt that touches only the account — the fast paths' — and
//! a cold completion the slow paths call when the attempt fails.

use crate::error::Result;
use crate::group::kmem_context::{CtxRef, KmemContext};
use crate::group::stats::Stat;

pub(crate) use super::object_stock::{ObjStock as ObjectAccount, SlabKind};

/// Charge an object of `bytes` (its slot, plus its vector entry where it has
/// one) to the account's context, from the budget: false, with nothing
/// changed, when the budget does not cover it (then [`charge`]).
#[inline(always)]
pub(crate) fn try_charge(a: &ObjectAccount, bytes: usize, kind: SlabKind) -> bool {
    if !a.take(bytes) {
        a.untake(bytes);
        return false;
    }
    if kind == SlabKind::Reclaimable {
        a.note_reclaimable(bytes as isize);
    }
    true
}

/// Charge an object of `bytes` to `ctx`, whatever the budget holds: the
/// account switches to `ctx` if needed and charges whole pages (at a limit:
/// reclaim, then fail, or with `nofail` overcharge).
#[cold]
#[inline(never)]
pub(crate) fn charge(
    a: &ObjectAccount,
    ctx: &CtxRef,
    bytes: usize,
    kind: SlabKind,
    nofail: bool,
) -> Result<()> {
    a.charge(ctx, bytes, kind, nofail)
}

/// Uncharge a freed object of `bytes` charged to `ctx`, into the budget
/// when `ctx` is the account's and the budget has room: false, with
/// nothing changed, otherwise (then [`uncharge`]).
#[inline(always)]
pub(crate) fn try_uncharge(
    a: &ObjectAccount,
    ctx: *const KmemContext,
    bytes: usize,
    kind: SlabKind,
) -> bool {
    if !a.give(ctx, bytes) {
        return false;
    }
    if kind == SlabKind::Reclaimable {
        a.note_reclaimable(-(bytes as isize));
    }
    true
}

/// Uncharge a freed object of `bytes` charged to `ctx`, whatever the
/// budget holds: another context's object, or a budget full.
///
/// # Safety
/// `ctx` is the context recorded for a live object the caller is freeing,
/// and `bytes` what it was charged.
#[cold]
#[inline(never)]
pub(crate) unsafe fn uncharge(
    a: &ObjectAccount,
    ctx: *const KmemContext,
    bytes: usize,
    kind: SlabKind,
) {
    // SAFETY: this fn's contract is `ObjStock::uncharge`'s.
    unsafe { a.uncharge(ctx, bytes, kind) }
}

/// Charge `pages` whole slab pages of an isolated (per-group) cache to
/// `ctx` (the kernel's `memcg_charge_slab` before shared slabs).
pub(crate) fn charge_pages(ctx: &CtxRef, pages: usize, stat: Stat, nofail: bool) -> Result<()> {
    super::charge::charge(ctx, pages, stat, nofail)
}

/// Uncharge `pages` slab pages of an isolated cache charged to `ctx`.
pub(crate) fn uncharge_pages(ctx: &CtxRef, pages: usize, stat: Stat) {
    super::charge::uncharge(ctx, pages, stat)
}

/// Drains of accounts by other threads, and owners' settlements of drained
/// bytes they used (see `memcg::slab::remote_drain_counts`).
pub(crate) fn remote_drain_counts() -> (usize, usize) {
    use std::sync::atomic::Ordering::Relaxed;
    let d = &super::object_stock::REMOTE_DRAINS;
    (d[0].load(Relaxed), d[1].load(Relaxed))
}

/// How many times `a` went to the page counter for its owner's objects (a
/// refill charged pages, an overflow returned some).
pub(crate) fn page_trips(a: &ObjectAccount) -> usize {
    a.page_trips()
}
