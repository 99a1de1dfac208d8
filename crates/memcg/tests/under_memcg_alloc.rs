//! The library's own test suites again, with [`memcg::MemcgAlloc`] as the
//! process's global allocator: the engine must work when it is itself the
//! allocator of everything around it (DESIGN.md §6 layer 6, re-entrancy).
//! Test threads run in the root group, so their own allocations are not
//! charged and the suites' exact numbers still hold.

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
