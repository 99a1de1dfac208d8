//! Side-by-side allocator benchmarks for memcg (DESIGN.md §7).
//!
//! Every allocator in a run is a [`Contender`]: a named row of the report that
//! runs the raw workloads ([`workload`]) on an allocator reached through the small
//! [`RawAlloc`] trait, and optionally the workloads on the global allocator
//! with the allocator installed as the process's global allocator ([`global`]).
//!
//! The peers — system, jemalloc, mimalloc, snmalloc — are called through their
//! own `GlobalAlloc` impls on static instances; none of them is installed as this
//! crate's `#[global_allocator]`. The ratio column of the report divides every
//! row by the fastest *peer* of its workload; memcg's own rows are contenders
//! with [`Role::Own`]: `memcg` and `memcg-root`, memcg's kmalloc caches with
//! the allocating thread in a group or in the root ([`MemcgSlab`]), and
//! `memcg (global allocator)`, memcg's `GlobalAlloc` with the thread in a group
//! of `memcg::global()` ([`MemcgGlobal`]), which also runs the workloads on
//! the global allocator and is the row DESIGN.md §7 holds to its goals, and
//! `memcg-root (global allocator)`, the same in no group. A workload
//! lets the allocator attach each allocating thread to its group
//! ([`RawAlloc::enter_allocating_thread`]) before timing it.
//!
//! The workloads on the global allocator — `std` and the ports of
//! mimalloc-bench's larson, xmalloc-test, mstress and cache-scratch
//! ([`ports`]) — and the real-world suite (`json`, `strings`, `btree`:
//! [`real_world`]), which also reports each child's peak RSS, run in a child
//! process per allocator with that allocator as the child's global allocator
//! ([`global`]). [`instructions`] counts the instructions of a 64-byte
//! alloc+free pair through each global allocator, in a child under callgrind.
//!
//! Beside the ns/op table, the report measures what only memcg has:
//! removal time by live objects, with and without fragmented slabs
//! ([`removal`]), slab utilization with many small groups churning
//! ([`utilization`]), the bytes a dead group pins ([`footprint`]) and two
//! threads charging one group against one ([`scaling`]), each next to its
//! DESIGN.md §7 target ([`report`]); `--json` prints the §7 figures as one
//! JSON object ([`summary`]).
//!
//! Each workload is generic over [`RawAlloc`], so it is monomorphized per
//! allocator: the calls being timed are direct calls, not calls through a
//! vtable. Only the per-repetition entry point of a contender is dynamic.
//!
//! A new row is one [`Contender`]:
//!
//! ```
//! use memcg_bench::{Contender, MemcgSlab, Role, Workload};
//!
//! let ours = Contender::raw("memcg", Role::Own, MemcgSlab::charged());
//! let took = ours.run_raw(Workload::Churn, 1_000).expect("churn is a raw workload");
//! assert!(took.as_nanos() > 0);
//! assert!(!ours.runs(Workload::Std)); // no global allocator choice given
//! ```
//!
//! Measurements are taken in turns (every contender's first repetition, then
//! every contender's second, …) and the median is reported; see [`measure`].

pub mod affinity;
pub mod contender;
pub mod footprint;
pub mod global;
pub mod instructions;
pub mod measure;
pub mod memcg_global;
pub mod ports;
pub mod raw_alloc;
pub mod real_world;
pub mod removal;
pub mod report;
pub mod ring;
pub mod scaling;
pub mod slab_alloc;
pub mod summary;
pub mod utilization;
pub mod workload;

pub use contender::{contenders, peers, Contender, Role};
pub use memcg_global::MemcgGlobal;
pub use raw_alloc::{Peer, RawAlloc};
pub use slab_alloc::MemcgSlab;
pub use workload::Workload;
