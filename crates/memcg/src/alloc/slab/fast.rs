//! The fast paths of the slab allocator: allocation and free of a small
//! object, charged or in the root, on one screen. Everything else (refills,
//! other contexts, remote frees, list moves) is a tail call into
//! [`heap`](super::heap).
//!
//! Who owns what. A thread's [`Heap`] is its own: its object stock (the
//! budget of pre-charged bytes for the context it allocates for) and its
//! *current* slab per cache, which it owns. Every current slab serves the
//! stock's context: it is empty, uniform for that context, or mixed (an
//! object vector records each object's context); the heap retires the
//! others when the context changes. So an allocation pops the current
//! slab's free list and takes the object's bytes from the budget, and reads
//! no context. A free finds the slab from the address (the reserved region,
//! then arithmetic), checks the pointer starts a slot, gives the object's
//! bytes back to the budget when the slab is uniform for the stock's
//! context (or charges nothing), and pushes the object on the slab's local
//! list when the thread owns it. No lock, no shared atomic, no fence, no
//! per-object header (DESIGN.md §6); the slab's `flags` are 0 for the common
//! slab, so one compare sends mixed and reclaimable slabs to the slower
//! paths.

use super::heap::{self, Heap};
use super::segment::Segment;
use super::slab::Slab;
use crate::accounting::slab_hook::{self, SlabKind};

/// Allocate an object from the cache of heap slot `index` (a kmalloc class
/// is its own slot) on `h`, charged through `h`'s stock context; null when
/// the slow path must run (the caller tail-calls it).
#[inline(always)]
pub(crate) fn pop(h: &Heap, index: usize) -> *mut u8 {
    let s = h.slabs[index].get();
    if s.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: a non-null slab in our heap is one we own: its free list,
    // `used` and `ctx` are ours.
    let s = unsafe { &*s };
    // SAFETY: a slab in our heap is one we own, so its free list is ours.
    let obj = unsafe { s.free_head() };
    if obj == 0 || s.flags() != 0 {
        return std::ptr::null_mut();
    }
    if !slab_hook::try_charge(&h.stock, s.obj_size(), SlabKind::Unreclaimable) {
        return std::ptr::null_mut();
    }
    // SAFETY: `obj` is the head of our slab's free list.
    unsafe { s.unlink_head(obj) };
    obj as *mut u8
}

/// The global allocator's allocation of kmalloc class `class`: null only if
/// the slow path fails.
#[inline(always)]
pub(crate) fn kmalloc(class: usize) -> *mut u8 {
    let obj = pop(heap::main(), class);
    if !obj.is_null() {
        return obj;
    }
    heap::kmalloc_slow(class)
}

/// Free `obj`, an object of one of our slabs (found from the address, in
/// the reserved region or not), from any thread.
///
/// # Safety
/// `obj` is a live object of ours, freed once. A pointer that is not the
/// start of a slot of a slab in use aborts with its cause.
#[inline(always)]
pub(crate) unsafe fn free(obj: *mut u8) {
    // SAFETY: `obj` is a live object of ours (this fn's contract), so it
    // lies in one of our segments, whose
    // header is initialised; every address of a segment maps to one of its
    // slab structs (the header's own spans' structs are never formatted).
    let (seg, s) = unsafe {
        let seg = Segment::of(obj as usize);
        (seg, seg.slab_of(obj as usize))
    };
    if !s.is_live_slot(obj) {
        heap::bad_slab_free(seg, s, obj);
    }
    let h = heap::main();
    if s.flags() != 0 {
        // SAFETY: a live object of ours being freed once.
        return unsafe { heap::free_special(s, obj) };
    }
    // SAFETY: a uniform slab's context is written only while it holds no
    // object, and `obj` is live.
    let ctx = unsafe { s.uniform_ctx() };
    if !ctx.is_null()
        && !slab_hook::try_uncharge(&h.stock, ctx, s.obj_size(), SlabKind::Unreclaimable)
    {
        // SAFETY: `obj` is a live object of `s` being freed once (this fn's
        // contract), of a uniform unreclaimable slab charged through `ctx`.
        return unsafe { heap::free_uncharge_slow(s, obj, ctx) };
    }
    // SAFETY: `obj` is a live object of `s` freed once (this fn's
    // contract), and its bytes were given back just above.
    unsafe { release(h, s, obj) }
}

/// Whether `addr` lies in the segment region as the calling thread last saw
/// it (two thread-local reads; see `Heap::region`).
#[inline(always)]
pub(crate) fn in_region(addr: usize) -> bool {
    let (base, committed) = heap::main().region.get();
    addr.wrapping_sub(base) < committed
}

/// Give `obj`, uncharged already, back to its slab: onto the local list if
/// the thread owns the slab (either of its heaps: both share the owner id),
/// else onto the slab's remote list.
///
/// # Safety
/// `obj` is a live object of `s`, freed once, its bytes already given back.
#[inline(always)]
pub(crate) unsafe fn release(h: &Heap, s: &'static Slab, obj: *mut u8) {
    if s.owner() == h.tid.get() {
        // SAFETY: we own the slab: its free list and `used` are ours.
        unsafe {
            s.push_local(obj);
            if s.needs_relisting() {
                return heap::local_free_slow(s);
            }
        }
        return;
    }
    heap::free_remote(s, obj)
}
