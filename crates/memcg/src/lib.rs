//! # memcg: Linux memory cgroups inside a Rust process
//!
//! A program builds a tree of groups (tenants, jobs, queries), attaches
//! threads to them, and every page those threads charge is billed to the
//! group and all its ancestors, held to their limits, reclaimed under
//! pressure, and reported through the kernel's cgroup v2 files
//! (`memory.current`, `memory.max`, `memory.stat`, ...).
//!
//! The heart of it is the kernel patch "memcg: reparent kmem context on memcg
//! offline": a group can be removed while kernel memory it allocated lives
//! on. Every kmem charge records a tiny *kmem context*, not the group; removal
//! points the context at the parent, so the group is freed at once and only
//! the context stays until the last object goes.
//!
//! ```
//! use memcg::{Hierarchy, KmemPages};
//!
//! let h = Hierarchy::new();
//! h.create("/a").unwrap();
//! let b = h.create("/a/b").unwrap();
//! let buffers: Vec<KmemPages> = {
//!     let _in_b = b.enter().unwrap();
//!     (0..100).map(|_| KmemPages::alloc(4096).unwrap()).collect()
//! };
//! drop(b);
//! h.remove("/a/b").unwrap();
//! h.quiesce();
//! // The removed group is gone although its memory lives on (S1)...
//! assert_eq!(h.read("/a", "cgroup.stat").unwrap(),
//!            "nr_descendants 0\nnr_dying_descendants 0\n");
//! // ...and its charges now sit with the parent.
//! assert_eq!(h.read("/a", "memory.current").unwrap(), "409600\n");
//! drop(buffers);
//! assert_eq!(h.read("/a", "memory.current").unwrap(), "0\n");
//! ```
//!
//! ## Threads and async tasks carry their group (S12)
//!
//! A thread charges the group it is attached to ([`Group::enter`],
//! [`Group::attach`]). Threads it starts through [`spawn`] (or
//! [`Builder`], or [`Group::spawn`] into a given group) start there too;
//! threads never attached — a library's pool started with
//! `std::thread::spawn` — charge the hierarchy's default group
//! ([`Hierarchy::set_default_group`], the root unless set). An async task
//! bound with [`FutureExt::in_group`] charges its group on every poll and
//! on drop, on whichever worker thread runs it.
//!
//! - **std**: `memcg::spawn(f)` where you would write `std::thread::spawn(f)`.
//! - **tokio**: `tokio::spawn(fut.in_group(tenant))`; the runtime's own
//!   threads follow the default group, or pick one with
//!   `Builder::on_thread_start(move || group.attach().unwrap())`.
//! - **rayon**: `ThreadPoolBuilder::start_handler(move |_| group.attach().unwrap())`.
//!
//! ```
//! use memcg::FutureExt;
//!
//! let h = memcg::Hierarchy::new();
//! let tenant = h.create("/tenant").unwrap();
//! let rt = tokio::runtime::Builder::new_multi_thread()
//!     .worker_threads(2)
//!     .build()
//!     .unwrap();
//! let h2 = h.clone();
//! let task = rt.spawn(
//!     async move {
//!         tokio::task::yield_now().await; // may resume on the other worker
//!         h2.current_group().path()
//!     }
//!     .in_group(tenant.clone()),
//! );
//! assert_eq!(rt.block_on(task).unwrap(), "/tenant");
//!
//! let pool = rayon::ThreadPoolBuilder::new()
//!     .num_threads(2)
//!     .start_handler({
//!         let tenant = tenant.clone();
//!         move |_| tenant.attach().unwrap()
//!     })
//!     .build()
//!     .unwrap();
//! assert_eq!(pool.install(|| h.current_group().path()), "/tenant");
//! ```
//!
//! Groups are listed with [`Hierarchy::groups`] and [`Group::children`];
//! [`Group::watch_events`] wakes a thread or a task when a group's
//! `memory.events` change, and a [`Group::pressure_trigger`] when its
//! threads stalled on memory for a given time within a window.
//!
//! A runaway tenant is stopped, not the process (S14, S15): bind each
//! request with [`FutureExt::in_group_killable`]; `cgroup.kill` (or
//! [`Group::kill`]) and the OOM killer, when a charge cannot be met under a
//! `memory.max` after reclaim, wake it, and its next poll drops the request
//! inside its group and yields `Err(Killed)` (with the feature `tower`,
//! `KillableLayer` does this for every request of a service). With
//! `memory.oom.group` 1 a group's requests die together; `cgroup.freeze`
//! ([`Group::freeze`]) holds them unpolled; threads learn at
//! [`check_killed`].
//!
//! ```
//! use memcg::FutureExt;
//!
//! let h = memcg::Hierarchy::new();
//! let tenant = h.create("/tenant").unwrap();
//! tenant.write("memory.oom.group", "1").unwrap();
//! let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! let request = async { 42 }.in_group_killable(tenant.clone());
//! assert_eq!(rt.block_on(request), Ok(42));
//! let runaway = std::future::pending::<()>().in_group_killable(tenant.clone());
//! tenant.write("cgroup.kill", "1").unwrap();
//! assert_eq!(rt.block_on(runaway), Err(memcg::Killed));
//! ```
//!
//! Layers, each on the ones before it (DESIGN.md §6): the
//! [page counter](page_counter); groups ([`Hierarchy`], [`Group`]); kmem
//! contexts and per-thread charge stocks; page-level kmem ([`KmemPages`]),
//! the [slab allocator](slab) with shared slabs and byte charges
//! ([`SlabCache`]; per-group caches on request) and
//! [large blocks](large) in cached runs of pages; user pages ([`UserPage`]) with reclaim
//! ([`Shrinker`]); and the front ends: the global allocator [`MemcgAlloc`]
//! over [`global()`], and [`Group::allocator`] handles for `allocator_api2`
//! collections. With the feature `prometheus`, `metrics` exposes every
//! group's files to a `prometheus-client` registry.
//!
//! `unsafe` lives in the allocator layer (`alloc/`: `slab`, `large`,
//! `kmem`, `global`) and in the kmem context pointer: the context's owner
//! pointer and the counted context references kept as raw pointers by the
//! charge and object stocks and the thread's current group
//! (`group/kmem_context`, `accounting/charge_stock`, `accounting/object_stock`,
//! `accounting/current`); besides, three FFI calls (`pthread_atfork` in
//! `fork`, `write` in `reentrancy`, the deferred worker's thread handle) and
//! the `Allocator` impl of [`GroupAllocator`]. Every block says why it is
//! sound. `ARCHITECTURE.md` maps the folders, the flow of an allocation, a
//! removal and a reclaim, and where each semantic lives.

#![warn(missing_docs)]
// Under loom the charge stocks are bypassed, which leaves their code unused.
#![cfg_attr(loom, allow(dead_code))]

// The leaves every layer uses.
mod error;
mod fork;
mod lifecycle;
mod reentrancy;
mod sync;

// The layers, bottom up (DESIGN.md §6; each folder's doc says what it owns
// and may import, `tests/layers.rs` checks it).
mod accounting;
mod alloc;
mod group;
mod interface;
mod reclaim;
mod thread;

#[cfg(all(test, loom))]
mod loom_models;

pub use accounting::charge::MAX_RECLAIM_RETRIES;
pub use accounting::charge::{limit_policy, set_limit_policy, LimitPolicy};
pub use accounting::charge_stock::CHARGE_BATCH;
pub use alloc::global::MemcgAlloc;
pub use alloc::kmem::KmemPages;
pub use alloc::slab::{SlabCache, SlabObject};
pub use alloc::{large, slab};
pub use error::{Error, ErrorKind, Result};
pub use group::events::{Changed, EventWatch, MemoryEvents};
pub use group::group_size;
pub use group::kill::Killed;
pub use group::kmem_context::{accounting_enabled, context_size};
pub use group::lru::PageKind;
pub use group::page_counter;
pub use group::pressure::{Pressure, PressureEvent};
pub use group::shrinker::{ShrinkControl, ShrinkStage, Shrinker};
pub use interface::allocator::GroupAllocator;
pub use interface::files::parse_size;
pub use interface::hierarchy::global;
pub use interface::hierarchy::{Group, Hierarchy, Leftovers};
#[cfg(feature = "prometheus")]
pub use interface::metrics;
pub use interface::triggers::{PressureChanged, PressureTrigger};
pub use reclaim::user::UserPage;
pub use reentrancy::without_accounting;
pub use thread::future::{FutureExt, InGroup};
pub use thread::killable::{check_killed, Killable, KillableGuard};
pub use thread::spawn::{spawn, Builder};
pub use thread::task::{detach, throttle_point, EnterGuard};
#[cfg(feature = "tower")]
pub use thread::tower::{
    KillableError, KillableLayer, KillableResponseFuture, KillableService, KilledAsError, OnKilled,
};

/// The page size: counters count pages, files report bytes.
pub const PAGE_SIZE: usize = 4096;

/// Return the calling thread's object stocks (S11): the bytes pre-charged
/// for its shared-slab objects, and its pending `slab` statistics. A thread's
/// stocks are also drained when it changes group, exits, or quiesces a
/// hierarchy; call this on a long-lived thread before reading exact numbers
/// from another one.
pub fn drain_stocks() {
    alloc::slab::heap::drain_local();
}

#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
struct ReadmeDoctests;
