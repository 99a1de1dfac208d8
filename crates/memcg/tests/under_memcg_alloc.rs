//! The library's own test suites again, with [`memcg::MemcgAlloc`] as the
//! process's global allocator: the engine must work when it is itself the
//! allocator of everything around it (DESIGN.md §6 layer 6, re-entrancy).
//! The suites' charged threads run with accounting on: whatever they
//! allocate in a group goes through `MemcgAlloc` and is charged there, so
//! only the library's own bookkeeping (its internal sections) escapes
//! accounting. The suites allocate their own bookkeeping (result vectors,
//! the stress test's pile) before entering a group and synchronise charged
//! threads with barriers, which allocate nothing, so their exact numbers
//! hold here too: an engine path that allocated for itself while charging
//! would show as a mismatch.

#[global_allocator]
static A: memcg::MemcgAlloc = memcg::MemcgAlloc;

#[path = "semantics.rs"]
mod semantics;

#[path = "slab.rs"]
mod slab;

#[path = "stress.rs"]
mod stress;

#[path = "model.rs"]
mod model;
