//! What a group costs in memory, measured, for DESIGN.md §7's "bytes pinned
//! by a dead group ... under 1/100 of a group's own size".
//!
//! [`memcg::group_size`] is the library's own estimate of a group (its struct
//! and counter). This measures the heap a group really takes: glibc's count
//! of bytes in use (`mallinfo2`) before and after creating many groups, so
//! the group's path, tree entry, kmem context and whatever else it allocates
//! are all counted. It needs the report process to run on the system
//! allocator, which it does unless `MEMCG_BENCH_GLOBAL` names another.

use memcg::Hierarchy;

use crate::global::{self, GlobalChoice};

/// Groups created to measure one.
const GROUPS: usize = 1_000;

/// glibc's `struct mallinfo2` (glibc 2.33 and later).
#[repr(C)]
#[derive(Default)]
struct MallInfo2 {
    arena: usize,
    ordblks: usize,
    smblks: usize,
    hblks: usize,
    hblkhd: usize,
    usmblks: usize,
    fsmblks: usize,
    uordblks: usize,
    fordblks: usize,
    keepcost: usize,
}

extern "C" {
    fn mallinfo2() -> MallInfo2;
}

/// Heap bytes in use by glibc malloc: small blocks plus mmapped ones.
fn heap_in_use() -> usize {
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct; it
    // takes malloc's own locks.
    let info = unsafe { mallinfo2() };
    info.uordblks + info.hblkhd
}

/// Heap bytes one online group takes, averaged over [`GROUPS`] groups of a
/// fresh hierarchy; `None` when the process's allocator is not glibc's.
pub fn group_heap_bytes() -> Option<f64> {
    if global::current() != GlobalChoice::System {
        return None;
    }
    let h = Hierarchy::new();
    let before = heap_in_use();
    let groups: Vec<_> = (0..GROUPS)
        .map(|i| h.create(&format!("/g{i:04}")).expect("fresh names"))
        .collect();
    // The handles themselves (a Vec of them) are not part of a group.
    let handles = groups.capacity() * std::mem::size_of_val(&groups[0]);
    let after = heap_in_use();
    drop(groups);
    Some((after.saturating_sub(before + handles)) as f64 / GROUPS as f64)
}
