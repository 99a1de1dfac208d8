//! DESIGN.md §8: a pointer freed into the allocator that is not a live
//! block aborts with a message naming the address and the cause, instead of
//! corrupting a free list or reaching the system allocator. Each case runs
//! in a child process (this test binary again, with `MEMCG_BAD_FREE` naming
//! the case), which must die by SIGABRT with that message.

use memcg::MemcgAlloc;
use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;

#[global_allocator]
static A: MemcgAlloc = MemcgAlloc;

/// Run `case` in a child; return its stderr after checking it aborted.
fn aborts(test: &str, case: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("MEMCG_BAD_FREE", case)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{case}: the child did not abort ({:?}); stderr:\n{stderr}",
        out.status
    );
    stderr
}

/// In the child: do the bad free of `case`, if this is the child.
fn child_case() -> Option<String> {
    std::env::var("MEMCG_BAD_FREE").ok()
}

/// The address the child said it would free.
fn target_of(stderr: &str) -> &str {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("target "))
        .expect("the child printed its target")
}

fn hex(p: *const u8) -> String {
    format!("0x{:016x}", p as usize)
}

#[test]
fn an_interior_pointer_into_a_slab_object_aborts_naming_it() {
    let layout = Layout::from_size_align(64, 8).unwrap();
    if let Some(case) = child_case() {
        assert_eq!(case, "interior");
        // SAFETY: a valid layout; the bad free below is the point.
        unsafe {
            let p = A.alloc(layout);
            eprintln!("target {}", hex(p.add(8)));
            A.dealloc(p.add(8), layout);
        }
        unreachable!("the bad free returned");
    }
    let stderr = aborts(
        "an_interior_pointer_into_a_slab_object_aborts_naming_it",
        "interior",
    );
    let target = target_of(&stderr);
    assert!(
        stderr.contains(&format!(
            "memcg: bad free of {target}: not the start of an object (an interior pointer)"
        )),
        "{stderr}"
    );
}

#[test]
fn a_pointer_into_a_segment_header_aborts() {
    let layout = Layout::from_size_align(64, 8).unwrap();
    if child_case().is_some() {
        // SAFETY: as above.
        unsafe {
            let p = A.alloc(layout);
            // Segments are 4 MiB aligned; their header is at the start.
            let header = (p as usize & !((4 << 20) - 1)) + 16;
            A.dealloc(header as *mut u8, layout);
        }
        unreachable!("the bad free returned");
    }
    let stderr = aborts("a_pointer_into_a_segment_header_aborts", "header");
    assert!(
        stderr.contains("inside a slab segment's header"),
        "{stderr}"
    );
}

#[test]
fn a_large_block_freed_twice_aborts() {
    let layout = Layout::from_size_align(64 * 1024, 8).unwrap();
    if child_case().is_some() {
        // SAFETY: as above.
        unsafe {
            let p = A.alloc(layout);
            eprintln!("target {}", hex(p));
            A.dealloc(p, layout);
            A.dealloc(p, layout);
        }
        unreachable!("the double free returned");
    }
    let stderr = aborts("a_large_block_freed_twice_aborts", "large");
    let target = target_of(&stderr);
    assert!(
        stderr.contains(&format!(
            "memcg: bad free of {target}: a large block freed twice (a double free)"
        )),
        "{stderr}"
    );
}

/// The `hardened` feature: a slab object freed twice aborts too.
#[cfg(feature = "hardened")]
#[test]
fn hardened_a_slab_object_freed_twice_aborts() {
    let layout = Layout::from_size_align(64, 8).unwrap();
    if child_case().is_some() {
        // SAFETY: as above.
        unsafe {
            let p = A.alloc(layout);
            eprintln!("target {}", hex(p));
            A.dealloc(p, layout);
            A.dealloc(p, layout);
        }
        unreachable!("the double free returned");
    }
    let stderr = aborts("hardened_a_slab_object_freed_twice_aborts", "double");
    let target = target_of(&stderr);
    assert!(
        stderr.contains(&format!(
            "memcg: bad free of {target}: freed twice (a double free)"
        )),
        "{stderr}"
    );
}

/// Good frees are not flagged: every slot of a slab, all sizes, freed in
/// another order than allocated, from another thread too.
#[test]
fn valid_frees_of_every_class_pass_the_checks() {
    if child_case().is_some() {
        return;
    }
    for size in [8, 16, 24, 48, 64, 96, 100, 256, 1000, 4096, 8192, 20000] {
        let v: Vec<Vec<u8>> = (0..500).map(|i| vec![i as u8; size]).collect();
        let (odd, even): (Vec<_>, Vec<_>) =
            v.into_iter().enumerate().partition(|(i, _)| i % 2 == 1);
        drop(even);
        std::thread::spawn(move || drop(odd)).join().unwrap();
    }
}
