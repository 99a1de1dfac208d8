//! Leaf: the re-entrancy flag. While memcg itself runs (a slow path, a
//! hierarchy operation, reclaim, deferred work) the thread is *internal*:
//! the global allocator sends its allocations to the system allocator,
//! uncharged, so memcg never recurses into itself or takes a lock its caller
//! holds. Every layer may set it; none depends on another to do so.

use std::cell::Cell;

thread_local! {
    static INTERNAL: Cell<u32> = const { Cell::new(0) };
}

/// While alive, the thread's allocations bypass memcg (system allocator, not
/// charged). Held by every memcg path that may allocate under its own locks.
pub(crate) struct Internal(());

impl Internal {
    pub(crate) fn enter() -> Internal {
        let _ = INTERNAL.try_with(|c| c.set(c.get() + 1));
        Internal(())
    }
}

impl Drop for Internal {
    fn drop(&mut self) {
        let _ = INTERNAL.try_with(|c| c.set(c.get() - 1));
    }
}

/// A pointer freed into memcg that it never handed out, or handed out and
/// took back already: print what and why (without allocating: this runs
/// inside the allocator) and abort, as glibc's `free(): invalid pointer`.
#[cold]
#[inline(never)]
pub(crate) fn bad_free(addr: usize, cause: &str) -> ! {
    let mut m = Message::new();
    m.put(b"memcg: bad free of 0x");
    m.hex(addr);
    m.put(b": ");
    m.put(cause.as_bytes());
    m.abort()
}

/// An invariant of the allocator or of the per-thread state broke: say
/// which (without allocating: this may run inside the global allocator,
/// where a panic would only abort with a generic message) and abort.
#[cold]
#[inline(never)]
pub(crate) fn broken(invariant: &str) -> ! {
    let mut m = Message::new();
    m.put(b"memcg: broken invariant: ");
    m.put(invariant.as_bytes());
    m.abort()
}

/// A line for stderr in a fixed buffer: nothing is allocated.
struct Message {
    buf: [u8; 256],
    n: usize,
}

impl Message {
    fn new() -> Message {
        Message {
            buf: [0; 256],
            n: 0,
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        for &b in bytes {
            // The last byte is kept for the newline.
            if self.n < self.buf.len() - 1 {
                self.buf[self.n] = b;
                self.n += 1;
            }
        }
    }

    fn hex(&mut self, v: usize) {
        let digits = b"0123456789abcdef";
        for shift in (0..16).rev() {
            self.put(&[digits[(v >> (shift * 4)) & 15]]);
        }
    }

    fn abort(mut self) -> ! {
        self.buf[self.n] = b'\n';
        // SAFETY: writes the `n + 1` initialised bytes of a live buffer to
        // stderr; a failed write changes nothing (we abort either way).
        unsafe { libc::write(2, self.buf.as_ptr().cast(), self.n + 1) };
        std::process::abort()
    }
}

#[inline]
pub(crate) fn is_internal() -> bool {
    INTERNAL.try_with(|c| c.get() != 0).unwrap_or(true)
}

/// Run `f` with the global allocator not charging the calling thread's
/// allocations (they go to the system allocator), as kernel allocations
/// without `__GFP_ACCOUNT`. Explicit charges (kmem pages, user pages, slab
/// caches, group allocators) still count.
pub fn without_accounting<R>(f: impl FnOnce() -> R) -> R {
    let _internal = Internal::enter();
    f()
}
