//! Side-by-side allocator benchmarks for memcg (DESIGN.md §7).
//!
//! Every allocator in a run is a [`Contender`]: a named row of the report that
//! runs the raw workloads ([`workload`]) on an allocator reached through the small
//! [`RawAlloc`] trait, and optionally the `std` workload with the allocator
//! installed as the process's global allocator ([`global`]).
//!
//! The peers — system, jemalloc, mimalloc, snmalloc — are called through their
//! own `GlobalAlloc` impls on static instances; none of them is installed as this
//! crate's `#[global_allocator]`. The ratio column of the report divides every
//! row by the fastest *peer* of its workload, so rows for memcg's own allocator
//! (`memcg`, `memcg-root`, `memcg (global allocator)`) are added as contenders
//! with [`Role::Own`] and need no change to the workloads or the report.
//!
//! Each workload is generic over [`RawAlloc`], so it is monomorphized per
//! allocator: the calls being timed are direct calls, not calls through a
//! vtable. Only the per-repetition entry point of a contender is dynamic.
//!
//! A new row is one [`Contender`]; here the system allocator stands in for
//! one of ours:
//!
//! ```
//! use memcg_bench::{Contender, Peer, Role, Workload};
//! use std::alloc::System;
//!
//! let ours = Contender::raw("memcg", Role::Own, Peer(System));
//! let took = ours.run_raw(Workload::Churn, 1_000).expect("churn is a raw workload");
//! assert!(took.as_nanos() > 0);
//! assert!(!ours.runs(Workload::Std)); // no global allocator choice given
//! ```
//!
//! Measurements are taken in turns (every contender's first repetition, then
//! every contender's second, …) and the median is reported; see [`measure`].

pub mod affinity;
pub mod contender;
pub mod global;
pub mod measure;
pub mod raw_alloc;
pub mod report;
pub mod ring;
pub mod rng;
pub mod workload;

pub use contender::{contenders, peers, Contender, Role};
pub use raw_alloc::{Peer, RawAlloc};
pub use workload::Workload;
