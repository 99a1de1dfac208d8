//! DESIGN.md §8: the allocator works under an address-space limit
//! (`RLIMIT_AS`, `ulimit -v`). Segments come from one reserved range of
//! address space when the system grants it; under a limit the reservation
//! falls back to smaller sizes or to none, and segments mapped one by one
//! (outside the range) serve the rest. Each case runs in a child of this
//! test binary started with the limit already set, so that even the first
//! reservation sees it.

use memcg::{global, MemcgAlloc};
use std::os::unix::process::CommandExt;
use std::process::Command;

#[global_allocator]
static A: MemcgAlloc = MemcgAlloc;

/// In the child: allocate `mib` MiB of 64-byte objects in a group through
/// MemcgAlloc, check the charge, free them, check every counter is 0.
fn child(mib: usize) {
    let h = global();
    let g = h.create("/limited").unwrap();
    let n = (mib << 20) / 64;
    {
        let _in = g.enter().unwrap();
        let objects: Vec<Box<[u8; 64]>> = (0..n).map(|i| Box::new([i as u8; 64])).collect();
        assert!(objects.iter().enumerate().all(|(i, o)| o[63] == i as u8));
        h.quiesce();
        let current: usize = g.read("memory.current").unwrap().trim().parse().unwrap();
        assert!(current >= n * 64, "{current} < {}", n * 64);
        drop(objects);
    }
    h.quiesce();
    assert_eq!(g.read("memory.current").unwrap(), "0\n");
    h.remove("/limited").unwrap();
}

/// Run this test binary's `test` in a child under an address-space limit of
/// `limit` bytes, with `MEMCG_AS_CHILD` set to `mib`.
fn under_limit(test: &str, limit: u64, mib: usize) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--test-threads=1"])
        .env("MEMCG_AS_CHILD", mib.to_string());
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing
    // else between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "the child under a {limit}-byte address-space limit failed ({:?}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn child_mib() -> Option<usize> {
    std::env::var("MEMCG_AS_CHILD").ok()?.parse().ok()
}

/// Under a 1 GiB limit the large reservations are refused and a smaller one
/// (or none) is used; 320 MiB of objects overflow any region it gets into
/// segments mapped one by one, freed through the slower path, exactly.
#[test]
fn small_objects_beyond_the_reserved_range_under_a_1g_limit() {
    if let Some(mib) = child_mib() {
        return child(mib);
    }
    under_limit(
        "small_objects_beyond_the_reserved_range_under_a_1g_limit",
        1 << 30,
        320,
    );
}

/// Under a 200 MiB limit no reservation fits beside the test process: every segment is
/// mapped on its own, and the allocator still serves and counts exactly.
#[test]
fn no_reservation_at_all_under_a_200m_limit() {
    if let Some(mib) = child_mib() {
        return child(mib);
    }
    under_limit("no_reservation_at_all_under_a_200m_limit", 200 << 20, 8);
}
