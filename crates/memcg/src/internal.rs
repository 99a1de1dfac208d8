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
    let mut buf = [0u8; 256];
    let mut n = 0;
    let mut put = |bytes: &[u8]| {
        for &b in bytes {
            if n < buf.len() {
                buf[n] = b;
                n += 1;
            }
        }
    };
    put(b"memcg: bad free of 0x");
    let digits = b"0123456789abcdef";
    for shift in (0..16).rev() {
        put(&[digits[(addr >> (shift * 4)) & 15]]);
    }
    put(b": ");
    put(cause.as_bytes());
    put(b"\n");
    // SAFETY: writes `n` initialised bytes of a live buffer to stderr.
    unsafe { libc::write(2, buf.as_ptr().cast(), n) };
    std::process::abort()
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
