//! Freed slab memory goes back to the OS when the program goes idle, not
//! only at its next allocation: spans idle beyond the decay time are
//! returned by the deferred worker (jemalloc's background thread), which
//! the freeing thread wakes when dirty spans pass a pool's reserve.

#[global_allocator]
static A: memcg::MemcgAlloc = memcg::MemcgAlloc;

/// The process's resident pages, read without allocating (an allocation
/// could take or free a span and so run the decay itself).
fn resident_pages() -> usize {
    let mut buf = [0u8; 128];
    // SAFETY: open/read/close on a stack buffer of the length given; the
    // path is NUL-terminated.
    let n = unsafe {
        let fd = libc::open(c"/proc/self/statm".as_ptr(), libc::O_RDONLY);
        assert!(fd >= 0, "/proc/self/statm opens");
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    assert!(n > 0, "/proc/self/statm reads");
    // "size resident shared ...": the second field.
    let mut fields = buf[..n as usize].split(|&b| b == b' ');
    fields.next();
    fields
        .next()
        .and_then(|f| std::str::from_utf8(f).ok())
        .and_then(|f| f.parse().ok())
        .expect("statm's second field is the resident page count")
}

#[test]
fn freed_spans_go_back_to_the_os_while_the_program_is_idle() {
    // A hierarchy starts the deferred worker.
    let _g = memcg::global().create("/idle-decay").unwrap();
    const OBJECTS: usize = 1 << 20; // 64 MiB of 64-byte objects
    let mut boxes: Vec<Box<[u8; 64]>> = Vec::with_capacity(OBJECTS);
    boxes.extend((0..OBJECTS).map(|i| Box::new([i as u8; 64])));
    let built = resident_pages();
    boxes.clear();
    // From here on the thread only sleeps and reads /proc without
    // allocating: whatever goes back to the OS, the worker gives back.
    let page = 4096;
    let want = built - (48 << 20) / page;
    let mut now = resident_pages();
    for _ in 0..100 {
        if now <= want {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        now = resident_pages();
    }
    assert!(
        now <= want,
        "{} MiB resident 10 s after freeing 64 MiB of objects ({} MiB before)",
        (now * page) >> 20,
        (built * page) >> 20
    );
}
