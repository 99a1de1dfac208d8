//! Every size path at its limits (DESIGN.md §4, §8): 0, `isize::MAX`,
//! `usize::MAX` and the `u64` limits of the interface files. An overflowing
//! size is `invalid` (or a null block from an allocator), never a wrapped
//! size, a panic or undefined behaviour, and it changes no counter.

use memcg::{global, ErrorKind, Group, KmemPages, MemcgAlloc, SlabCache};
use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static A: MemcgAlloc = MemcgAlloc;

const HUGE: [usize; 5] = [
    isize::MAX as usize - 4095,
    isize::MAX as usize,
    isize::MAX as usize + 1,
    usize::MAX - 4095,
    usize::MAX,
];

fn current(g: &Group) -> u64 {
    global().quiesce();
    g.read("memory.current").unwrap().trim().parse().unwrap()
}

#[test]
fn kmem_pages_refuse_sizes_that_do_not_fit_and_charge_nothing() {
    let g = global().create("/sizes-kmem").unwrap();
    let _in_g = g.enter().unwrap();
    assert_eq!(KmemPages::alloc(0).unwrap_err().kind(), ErrorKind::Invalid);
    for bytes in HUGE {
        let err = KmemPages::alloc(bytes).unwrap_err();
        // Without a limit the charge passes and the system refuses: `again`
        // for what fits a Layout, `invalid` beyond it.
        let want = if bytes <= isize::MAX as usize - 4095 {
            ErrorKind::Again
        } else {
            ErrorKind::Invalid
        };
        assert_eq!(err.kind(), want, "{bytes}: {err}");
        drop(err); // its message is a live object of the group
        assert_eq!(current(&g), 0, "{bytes} left a charge");
    }
    // Under a limit the charge itself fails first.
    g.write("memory.max", "1M").unwrap();
    let err = KmemPages::alloc(isize::MAX as usize - 4095).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Limit);
    drop(err);
    assert_eq!(current(&g), 0);
    let ok = KmemPages::alloc(1).unwrap();
    assert_eq!(ok.pages(), 1);
    drop(ok);
    drop(_in_g);
    global().remove("/sizes-kmem").unwrap();
}

#[test]
fn slab_caches_refuse_object_sizes_that_do_not_fit() {
    assert_eq!(
        SlabCache::new("sizes-zero", 0, false).unwrap_err().kind(),
        ErrorKind::Invalid
    );
    for size in HUGE {
        for isolated in [false, true] {
            let made = if isolated {
                SlabCache::isolated("sizes-huge", size, false)
            } else {
                SlabCache::new("sizes-huge", size, false)
            };
            assert_eq!(made.unwrap_err().kind(), ErrorKind::Invalid, "{size}");
        }
    }
    let c = SlabCache::new("sizes-ok", 100, false).unwrap();
    assert_eq!(c.object_size(), 100);
}

#[test]
fn allocators_return_null_for_blocks_the_system_cannot_hold() {
    let g = global().create("/sizes-alloc").unwrap();
    let _in_g = g.enter().unwrap();
    for size in [isize::MAX as usize - 4095, isize::MAX as usize] {
        for align in [1, 16, 4096, 1 << 20] {
            let Ok(layout) = Layout::from_size_align(size & !(align - 1), align) else {
                continue;
            };
            // SAFETY: a valid non-zero layout; a non-null block is freed below.
            let p = unsafe { A.alloc(layout) };
            assert!(p.is_null(), "{size} bytes aligned to {align}");
            // SAFETY: as above.
            let p = unsafe { A.alloc_zeroed(layout) };
            assert!(p.is_null(), "zeroed {size} bytes aligned to {align}");
        }
    }
    // Growing a live block past what fits fails and keeps the block.
    let small = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: valid layout; the block is freed with it below.
    unsafe {
        let p = A.alloc(small);
        assert!(!p.is_null());
        p.write_bytes(5, 64);
        let q = A.realloc(p, small, isize::MAX as usize - 4095);
        assert!(q.is_null());
        assert_eq!(*p.add(63), 5, "the old block is intact");
        A.dealloc(p, small);
    }
    let mut v: Vec<u8> = Vec::new();
    assert!(v.try_reserve(isize::MAX as usize - 4095).is_err());
    let h = allocator_api2::vec::Vec::<u8, _>::new_in(g.allocator());
    let mut h = h;
    assert!(h.try_reserve(isize::MAX as usize - 4095).is_err());
    drop((v, h));
    memcg::drain_stocks();
    drop(_in_g);
    assert_eq!(current(&g), 0);
    global().remove("/sizes-alloc").unwrap();
}

#[test]
fn interface_files_take_u64_sizes_and_refuse_larger_ones() {
    let g = global().create("/sizes-files").unwrap();
    for file in ["memory.max", "memory.high"] {
        // The largest u64, rounded down to whole pages.
        g.write(file, &u64::MAX.to_string()).unwrap();
        assert_eq!(
            g.read(file).unwrap(),
            format!("{}\n", u64::MAX / 4096 * 4096)
        );
        g.write(file, "16777215T").unwrap_err();
        for bad in [
            "18446744073709551616",
            "17179869184G",
            "17592186044416M",
            "18014398509481984K",
            "99999999999999999999999",
            "-1",
            "",
        ] {
            let before = g.read(file).unwrap();
            let err = g.write(file, bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Invalid, "{file} {bad:?}: {err}");
            assert_eq!(g.read(file).unwrap(), before, "{file} {bad:?} changed it");
        }
        // The largest that fits, with a suffix.
        g.write(file, "17179869183G").unwrap();
        assert_eq!(g.read(file).unwrap(), format!("{}\n", 17179869183u64 << 30));
        g.write(file, "max").unwrap();
    }
    for bytes in ["0", "18446744073709551615", "18446744073709551616"] {
        let r = g.write("memory.reclaim", bytes);
        if bytes == "18446744073709551616" {
            assert_eq!(r.unwrap_err().kind(), ErrorKind::Invalid);
        } else if bytes != "0" {
            assert_eq!(r.unwrap_err().kind(), ErrorKind::Again);
        }
    }
    assert_eq!(memcg::parse_size("16E"), None);
    assert_eq!(memcg::parse_size("17179869184G"), None);
    global().remove("/sizes-files").unwrap();
}
