//! Freed slab memory stays backed for a while (DESIGN.md §7's real-world
//! rows; the segment pools' decay): a program that frees a large structure
//! and builds it again does not fault its pages in a second time. With a
//! hard cap of 16 MiB of dirty spans per pool, a 32 MiB structure came back
//! through about 4,000 page faults each time (the `json` workload: 354k
//! faults, mimalloc's 3k).

#[global_allocator]
static A: memcg::MemcgAlloc = memcg::MemcgAlloc;

/// The calling thread's minor page faults so far.
fn minor_faults() -> i64 {
    // SAFETY: getrusage writes the struct it is given, nothing else.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut u), 0);
        u.ru_minflt
    }
}

#[test]
fn a_freed_structure_is_rebuilt_without_faulting_its_pages_again() {
    const OBJECTS: usize = 512 * 1024; // 32 MiB of 64-byte objects
    let mut boxes: Vec<Box<[u8; 64]>> = Vec::with_capacity(OBJECTS);
    boxes.extend((0..OBJECTS).map(|i| Box::new([i as u8; 64])));
    let first = minor_faults();
    boxes.clear();
    let freed = minor_faults();
    boxes.extend((0..OBJECTS).map(|i| Box::new([i as u8; 64])));
    let again = minor_faults() - freed;
    // 8,192 pages of objects: the second build reuses them (a few faults
    // for whatever else the thread touches).
    assert!(
        again < 256,
        "{again} page faults to rebuild a 32 MiB structure (first build: {first} so far)"
    );
}
