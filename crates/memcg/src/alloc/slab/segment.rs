//! Memory from the operating system: 4 MiB segments, aligned to their size,
//! cut into spans of one size class each (4 to 64 KiB). The span of any
//! address and its slab metadata are found by address arithmetic alone:
//! `segment = addr & !(SEGMENT_SIZE - 1)`, `index = (addr - segment) >> shift`.
//!
//! Spans come from a pool per span size, under a lock taken once per slab
//! (never per object). Freed spans stay backed by memory ("dirty") and are
//! handed out again first, most recently freed first, so a program that
//! frees and rebuilds a large structure faults its pages in once. Dirty
//! spans go back to the OS (`madvise(MADV_DONTNEED)`), oldest first, once
//! they have been idle for [`DECAY_MS`] beyond the [`RESERVE_BYTES`] a pool
//! always keeps, or at once beyond [`DIRTY_MAX_BYTES`]; the pools check on
//! every span taken or freed (jemalloc's and mimalloc's decay), and, while
//! a pool keeps dirty spans beyond its reserve, the deferred worker checks
//! every pool twice a second (jemalloc's background thread), so a program
//! that goes idle after freeing gives the memory back too. The segment
//! itself stays mapped. That keeps slab metadata type-stable (the kernel's
//! `SLAB_TYPESAFE_BY_RCU` idea): a thread that freed an object and then
//! notifies its slab's cache may find the slab reused, but never unmapped,
//! and checks under the cache lock.

use super::slab::Slab;
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Mutex;

pub(crate) const SEGMENT_SHIFT: usize = 22;
pub(crate) const SEGMENT_SIZE: usize = 1 << SEGMENT_SHIFT;
/// Span sizes: 4, 8, 16, 32, 64 KiB.
pub(crate) const SPAN_SHIFTS: [usize; 5] = [12, 13, 14, 15, 16];
/// Bytes of dirty free spans a pool keeps however long they are idle.
pub(crate) const RESERVE_BYTES: usize = 1 << 20;
/// Bytes of dirty free spans beyond which a pool returns the oldest at once.
/// Large enough that a program which frees and rebuilds a structure of
/// hundreds of MiB faults its pages in once (at 16 MiB, the `json`
/// benchmark faulted 354k pages to mimalloc's 3k, and lost a quarter of its
/// time there; `tests/rebuild_faults.rs`); it bounds what a pool keeps when
/// no span is taken or freed for long, since the decay, as jemalloc's
/// without its background thread and mimalloc's, runs on allocator activity.
pub(crate) const DIRTY_MAX_BYTES: usize = 256 << 20;
/// How long a dirty free span beyond the reserve may stay idle.
pub(crate) const DECAY_MS: u64 = 1000;

/// Milliseconds since the pools' first use: the decay clock.
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// The header at the start of every segment, followed by one [`Slab`] per span.
#[repr(C)]
pub(crate) struct Segment {
    pub(crate) span_shift: usize,
    pool: usize,
    nspans: usize,
    /// The first span not covered by the header.
    first: usize,
    /// Free spans; protected by the pool lock.
    free: UnsafeCell<usize>,
}

const HEADER: usize = (std::mem::size_of::<Segment>() + 63) & !63;

/// One bit per possible segment address: lets [`is_slab_address`] reject
/// foreign pointers. 2^(47-22) bits, in bss: pages are touched only where
/// segments are.
static SEGMENT_MAP: [AtomicU64; 1 << (47 - SEGMENT_SHIFT - 6)] =
    [const { AtomicU64::new(0) }; 1 << (47 - SEGMENT_SHIFT - 6)];

fn map_bit(seg: usize) -> (usize, u64) {
    let n = seg >> SEGMENT_SHIFT;
    (n >> 6, 1 << (n & 63))
}

/// Segments come first from one range of address space reserved up front
/// (`PROT_NONE`, nothing committed) and committed a segment at a time, so
/// that a free tells our objects from the rest with one subtraction and one
/// compare (`fast::in_region`, on each thread's copy of the bounds). The reservation is tried at [`REGION_SIZES`]
/// in turn and skipped if all are refused (an address-space limit): then,
/// and once the range is used up, segments are mapped one by one and found
/// through [`SEGMENT_MAP`] alone.
static REGION_BASE: AtomicUsize = AtomicUsize::new(0);
/// Bytes of the region whose segments are initialised (only grows).
static REGION_COMMITTED: AtomicUsize = AtomicUsize::new(0);
/// Bytes of the region handed to segments so far.
static REGION_USED: AtomicUsize = AtomicUsize::new(0);
/// Bytes reserved (0: no region).
static REGION_LEN: AtomicUsize = AtomicUsize::new(0);
/// The reservation sizes tried, largest first.
const REGION_SIZES: [usize; 4] = [16 << 30, 4 << 30, 1 << 30, 256 << 20];

/// The region's base and the bytes of it committed so far.
pub(crate) fn region() -> (usize, usize) {
    (REGION_BASE.load(Relaxed), REGION_COMMITTED.load(Relaxed))
}

/// Reserve the region, once; false if every size was refused.
fn reserve_region() -> bool {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for len in REGION_SIZES {
            // SAFETY: an anonymous PROT_NONE reservation, ours alone: nothing
            // is committed until a segment is made readable and writable.
            let raw = unsafe {
                libc::mmap(
                    ptr::null_mut(),
                    len + SEGMENT_SIZE,
                    libc::PROT_NONE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if raw == libc::MAP_FAILED {
                continue;
            }
            let base = (raw as usize + SEGMENT_SIZE - 1) & !(SEGMENT_SIZE - 1);
            REGION_BASE.store(base, Relaxed);
            REGION_LEN.store(len, Release);
            return;
        }
    });
    REGION_LEN.load(Acquire) != 0
}

/// A segment's worth of the region, committed (readable, writable, zero);
/// `None` when there is no region, it is used up, or the commit is refused.
fn region_segment() -> Option<usize> {
    if !reserve_region() {
        return None;
    }
    let len = REGION_LEN.load(Relaxed);
    let off = REGION_USED.fetch_add(SEGMENT_SIZE, Relaxed);
    if off + SEGMENT_SIZE > len {
        return None;
    }
    let seg = REGION_BASE.load(Relaxed) + off;
    // SAFETY: [seg, seg + SEGMENT_SIZE) lies in our reservation and no one
    // else uses it (each offset is handed out once).
    let ok = unsafe {
        libc::mprotect(
            seg as *mut libc::c_void,
            SEGMENT_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    } == 0;
    ok.then_some(seg)
}

/// Whether `addr` lies in a segment of ours. Acquire, paired with the
/// Release that publishes a segment: a caller that sees the bit sees the
/// segment's header and slab structs initialised (a plain load on x86).
pub(crate) fn is_slab_address(addr: usize) -> bool {
    let seg = addr & !(SEGMENT_SIZE - 1);
    let (word, bit) = map_bit(seg);
    SEGMENT_MAP
        .get(word)
        .is_some_and(|w| w.load(Acquire) & bit != 0)
}

impl Segment {
    /// The segment holding `addr`.
    ///
    /// # Safety
    /// `addr` must lie in a live segment (an object or slab of ours).
    #[inline]
    pub(crate) unsafe fn of(addr: usize) -> &'static Segment {
        // SAFETY: by the caller's contract the masked address is one of our
        // segments, whose header is initialised before it is published and
        // which is never unmapped.
        unsafe { &*((addr & !(SEGMENT_SIZE - 1)) as *const Segment) }
    }

    fn slabs(&self) -> *mut Slab {
        (self as *const Segment as usize + HEADER) as *mut Slab
    }

    /// The slab of the span holding `addr`.
    ///
    /// # Safety
    /// `addr` must lie in a span of this segment.
    #[inline]
    pub(crate) unsafe fn slab_of(&self, addr: usize) -> &'static Slab {
        let index = (addr - self as *const Segment as usize) >> self.span_shift;
        // SAFETY: index < nspans since addr is inside the segment; the slab
        // array was initialised when the segment was mapped.
        unsafe { &*self.slabs().add(index) }
    }

    /// Whether `addr` (in this segment) lies in a span, not in the header.
    #[inline]
    pub(crate) fn in_span(&self, addr: usize) -> bool {
        (addr - self as *const Segment as usize) >> self.span_shift >= self.first
    }

    /// The first byte of span `index`.
    fn span_start(&self, index: usize) -> *mut u8 {
        (self as *const Segment as usize + (index << self.span_shift)) as *mut u8
    }
}

struct PoolInner {
    /// Free spans, linked through their slabs' `next`/`prev`: the `ndirty`
    /// dirty ones first (most recently freed at the head, the oldest at
    /// `dirty_tail`), then the ones returned to the OS or never touched.
    free: *mut Slab,
    dirty_tail: *mut Slab,
    ndirty: usize,
    nfree: usize,
    segments: usize,
}

// SAFETY: the raw pointers point into segments that the pool owns; they are
// only followed with the pool lock held.
unsafe impl Send for PoolInner {}

struct Pool(Mutex<PoolInner>);

static POOLS: [Pool; 5] = [const {
    Pool(Mutex::new(PoolInner {
        free: ptr::null_mut(),
        dirty_tail: ptr::null_mut(),
        ndirty: 0,
        nfree: 0,
        segments: 0,
    }))
}; 5];

/// The spans of a segment of `1 << shift`-byte spans that hold objects: the
/// first ones hold the header and slab metadata.
fn span_range(shift: usize) -> (usize, usize) {
    let nspans = SEGMENT_SIZE >> shift;
    let header_bytes = HEADER + nspans * std::mem::size_of::<Slab>();
    (header_bytes.div_ceil(1 << shift), nspans)
}

/// Bytes of spans in use as slabs (by caches or threads), over every pool:
/// what slab utilization divides by.
pub(crate) fn span_bytes_in_use() -> usize {
    POOLS
        .iter()
        .zip(SPAN_SHIFTS)
        .map(|(pool, shift)| {
            let p = crate::sync::lock_std(&pool.0);
            let (first, nspans) = span_range(shift);
            (p.segments * (nspans - first) - p.nfree) << shift
        })
        .sum()
}

/// Take a free span of size `1 << SPAN_SHIFTS[pool]`; `None` if the OS
/// refuses memory.
pub(crate) fn alloc_span(pool: usize) -> Option<&'static Slab> {
    // A slow path, called with no lock held: let idle large-block runs
    // decay even in a program that has stopped making large blocks.
    crate::alloc::large::decay_if_due();
    let mut p = crate::sync::lock_std(&POOLS[pool].0);
    decay(&mut p, SPAN_SHIFTS[pool], now_ms());
    if p.free.is_null() {
        map_segment(&mut p, pool)?;
    }
    let slab = p.free;
    // SAFETY: a non-null free-list entry is a slab of a mapped segment.
    let slab: &'static Slab = unsafe { &*slab };
    // SAFETY: pool lock held; the slab is free, so its links are the pool's.
    unsafe {
        p.free = slab.list_next();
        if !p.free.is_null() {
            (*p.free).set_list_prev(ptr::null_mut());
        }
        if p.ndirty > 0 {
            // The head was dirty.
            p.ndirty -= 1;
            if p.ndirty == 0 {
                p.dirty_tail = ptr::null_mut();
            }
        }
        let seg = Segment::of(slab as *const Slab as usize);
        *seg.free.get() -= 1;
    }
    p.nfree -= 1;
    Some(slab)
}

/// Return a span taken by [`alloc_span`].
///
/// # Safety
/// `slab` must be a span of ours, no longer used by any cache.
pub(crate) unsafe fn free_span(slab: &'static Slab) {
    // SAFETY: a slab of ours lies in a live segment.
    let seg = unsafe { Segment::of(slab as *const Slab as usize) };
    let mut p = crate::sync::lock_std(&POOLS[seg.pool].0);
    p.nfree += 1;
    let sp = slab as *const Slab as *mut Slab;
    let now = now_ms();
    // SAFETY: pool lock held; the span is on no list and ours to link.
    unsafe {
        // Frees into it are bad frees from now on (Slab::is_live_slot).
        slab.mark_free();
        *seg.free.get() += 1;
        slab.set_freed_at(now as u32);
        slab.set_list_prev(ptr::null_mut());
        slab.set_list_next(p.free);
        if !p.free.is_null() {
            (*p.free).set_list_prev(sp);
        }
    }
    p.free = sp;
    p.ndirty += 1;
    if p.dirty_tail.is_null() {
        p.dirty_tail = sp;
    }
    decay(&mut p, seg.span_shift, now);
    if p.ndirty << seg.span_shift > RESERVE_BYTES {
        // Dirty spans beyond the reserve decay even if the program stops
        // allocating: the deferred worker runs decay_all soon.
        crate::group::deferred::arm_tick(decay_all);
    }
}

/// The deferred worker's tick: every pool returns its dirty spans idle for
/// [`DECAY_MS`] beyond its reserve. True while some pool still keeps dirty
/// spans beyond its reserve (they are not idle long enough yet).
fn decay_all() -> bool {
    let now = now_ms();
    let mut again = false;
    for (pool, shift) in POOLS.iter().zip(SPAN_SHIFTS) {
        let mut p = crate::sync::lock_std(&pool.0);
        decay(&mut p, shift, now);
        again |= p.ndirty << shift > RESERVE_BYTES;
    }
    again
}

/// Return the oldest dirty spans to the OS: beyond [`DIRTY_MAX_BYTES`] at
/// once, beyond [`RESERVE_BYTES`] once idle for [`DECAY_MS`]. They stay in
/// place, now first among the clean ones. Pool lock held.
fn decay(p: &mut PoolInner, shift: usize, now: u64) {
    while p.ndirty > 0 {
        let dirty = p.ndirty << shift;
        // SAFETY: ndirty > 0, so dirty_tail is a free span of this pool.
        let oldest = unsafe { &*p.dirty_tail };
        // SAFETY: pool lock held.
        let idle = (now as u32).wrapping_sub(unsafe { oldest.freed_at() }) as u64;
        if dirty <= RESERVE_BYTES || (dirty <= DIRTY_MAX_BYTES && idle < DECAY_MS) {
            return;
        }
        // SAFETY: the span is free and ours; its pages read back as zeroes
        // when touched again, which `Slab::format` overwrites anyway.
        unsafe {
            libc::madvise(
                oldest.start() as *mut libc::c_void,
                oldest.span_bytes(),
                libc::MADV_DONTNEED,
            );
        }
        p.ndirty -= 1;
        // SAFETY: pool lock held: the links are the pool's.
        p.dirty_tail = if p.ndirty == 0 {
            ptr::null_mut()
        } else {
            unsafe { oldest.list_prev() }
        };
    }
}

/// Map `len` bytes (whole pages) aligned to `align` (a power of two, at
/// least a page), for segments and large runs. `None` if the OS refuses.
pub(crate) fn map_aligned(len: usize, align: usize) -> Option<usize> {
    let map_len = len.checked_add(align - crate::PAGE_SIZE)?;
    // SAFETY: an anonymous private mapping, ours alone; the misaligned head
    // and the tail beyond `len` are unmapped at once, leaving exactly
    // [start, start + len) mapped.
    unsafe {
        let raw = libc::mmap(
            ptr::null_mut(),
            map_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if raw == libc::MAP_FAILED {
            return None;
        }
        let raw = raw as usize;
        let start = (raw + align - 1) & !(align - 1);
        if start > raw {
            libc::munmap(raw as *mut libc::c_void, start - raw);
        }
        let end = raw + map_len;
        if end > start + len {
            libc::munmap((start + len) as *mut libc::c_void, end - start - len);
        }
        Some(start)
    }
}

fn map_segment(p: &mut PoolInner, pool: usize) -> Option<()> {
    let shift = SPAN_SHIFTS[pool];
    let in_region = region_segment();
    let base = match in_region {
        Some(base) => base,
        None => map_aligned(SEGMENT_SIZE, SEGMENT_SIZE)?,
    };
    let (first, nspans) = span_range(shift);
    // SAFETY: the mapping is fresh, zeroed, writable and ours; we initialise
    // the header and every slab before publishing the segment.
    unsafe {
        ptr::write(
            base as *mut Segment,
            Segment {
                span_shift: shift,
                pool,
                nspans,
                first,
                free: UnsafeCell::new(nspans - first),
            },
        );
        let seg = &*(base as *const Segment);
        let slabs = seg.slabs();
        // The header's own spans get slab structs too, never formatted
        // (capacity 0): a bad free into the header finds one and aborts.
        for i in 0..first {
            ptr::write(slabs.add(i), Slab::new(seg.span_start(i), 1 << shift));
        }
        let mut prev: *mut Slab = ptr::null_mut();
        for i in first..nspans {
            let s = slabs.add(i);
            ptr::write(s, Slab::new(seg.span_start(i), 1 << shift));
            (*s).set_list_prev(prev);
            if prev.is_null() {
                p.free = s;
            } else {
                (*prev).set_list_next(s);
            }
            prev = s;
        }
    }
    let (word, bit) = map_bit(base);
    // Release: publishes the header and slab structs written above to every
    // thread that sees the bit (`is_slab_address`).
    SEGMENT_MAP[word].fetch_or(bit, Release);
    if in_region.is_some() {
        // Segments of the region are committed in order, but pools map
        // them concurrently: the committed size is the highest end.
        let end = base + SEGMENT_SIZE - REGION_BASE.load(Relaxed);
        REGION_COMMITTED.fetch_max(end, Release);
    }
    p.segments += 1;
    p.nfree += nspans - first;
    Some(())
}
