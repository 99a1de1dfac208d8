//! The rows of the report: which allocators run, and how.

use std::alloc::System;
use std::time::Duration;

use mimalloc::MiMalloc;
use snmalloc_rs::SnMalloc;
use tikv_jemallocator::Jemalloc;

use crate::global::GlobalChoice;
use crate::memcg_global::MemcgGlobal;
use crate::raw_alloc::{Peer, RawAlloc};
use crate::slab_alloc::MemcgSlab;
use crate::workload::{self, Workload};

/// Whether a contender counts toward "the fastest peer" of a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// An allocator we compare against; the fastest one is the ratio's 1.00.
    Peer,
    /// One of memcg's own configurations; measured against the peers.
    Own,
}

type RawRunner = Box<dyn Fn(Workload, u64) -> Option<Duration> + Send + Sync>;

/// One allocator as a row of the report.
pub struct Contender {
    name: &'static str,
    role: Role,
    raw: Option<RawRunner>,
    global: Option<GlobalChoice>,
}

impl Contender {
    /// A contender running the raw workloads (`single64`, `churn`, `remote`)
    /// on `alloc`. Each workload is monomorphized for `A` here.
    pub fn raw<A: RawAlloc + Send + 'static>(name: &'static str, role: Role, alloc: A) -> Self {
        let run = move |w: Workload, ops: u64| match w {
            Workload::Single64 => Some(workload::single64(&alloc, ops)),
            Workload::Churn => Some(workload::churn(&alloc, ops)),
            Workload::Remote => Some(workload::remote(&alloc, ops)),
            _ => None,
        };
        Contender {
            name,
            role,
            raw: Some(Box::new(run)),
            global: None,
        }
    }

    /// A contender that only runs the `std` workload, as the global allocator.
    pub fn global_only(name: &'static str, role: Role, choice: GlobalChoice) -> Self {
        Contender {
            name,
            role,
            raw: None,
            global: Some(choice),
        }
    }

    /// Also runs the `std` workload, with `choice` as the global allocator.
    pub fn with_global(mut self, choice: GlobalChoice) -> Self {
        self.global = Some(choice);
        self
    }

    /// The name in the report's allocator column.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether this is a peer or one of ours.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The global allocator the `std` workload runs with, if it runs at all.
    pub fn global(&self) -> Option<GlobalChoice> {
        self.global
    }

    /// Whether this contender has a row for `w`.
    pub fn runs(&self, w: Workload) -> bool {
        if w.on_global_allocator() {
            self.global.is_some()
        } else {
            self.raw.is_some()
        }
    }

    /// Times `ops` operations of raw workload `w`; `None` for a workload on
    /// the global allocator or for a contender without raw workloads.
    pub fn run_raw(&self, w: Workload, ops: u64) -> Option<Duration> {
        self.raw.as_ref().and_then(|run| run(w, ops))
    }
}

/// Every row of the report: the peers, then memcg's own configurations.
pub fn contenders() -> Vec<Contender> {
    let mut all = peers();
    all.extend(own());
    all
}

/// The row of memcg charged to a non-root group.
pub const MEMCG: &str = "memcg";
/// The row of memcg with the thread in the root group (accounting bypassed).
pub const MEMCG_ROOT: &str = "memcg-root";

/// The row of memcg's global allocator, `memcg::MemcgAlloc`, charged to a
/// non-root group of `memcg::global()`.
pub const MEMCG_GLOBAL: &str = "memcg (global allocator)";

/// The row of memcg's global allocator with the allocating thread in no
/// group at all: [`MEMCG_GLOBAL`] with accounting off. On `std`, measured
/// by the [`MEMCG_GLOBAL`] child in turns with its charged runs.
pub const MEMCG_GLOBAL_ROOT: &str = "memcg-root (global allocator)";

/// memcg's own configurations, measured against the peers: [`MEMCG`] (the
/// allocating thread charges a non-root group) and [`MEMCG_ROOT`] (it stays in
/// the root), both on the kmalloc caches ([`MemcgSlab`]); [`MEMCG_GLOBAL`]
/// ([`MemcgGlobal`] on the raw workloads, the child's global allocator on the
/// others), the §7 row; and [`MEMCG_GLOBAL_ROOT`], the same without a group.
pub fn own() -> Vec<Contender> {
    vec![
        Contender::raw(MEMCG, Role::Own, MemcgSlab::charged()),
        Contender::raw(MEMCG_ROOT, Role::Own, MemcgSlab::root()),
        Contender::raw(MEMCG_GLOBAL, Role::Own, MemcgGlobal::charged())
            .with_global(GlobalChoice::Memcg),
        Contender::raw(MEMCG_GLOBAL_ROOT, Role::Own, MemcgGlobal::root()),
    ]
}

/// The peers of DESIGN.md §7, in report order.
pub fn peers() -> Vec<Contender> {
    vec![
        Contender::raw("system", Role::Peer, Peer(System)).with_global(GlobalChoice::System),
        Contender::raw("jemalloc", Role::Peer, Peer(Jemalloc)).with_global(GlobalChoice::Jemalloc),
        Contender::raw("mimalloc", Role::Peer, Peer(MiMalloc)).with_global(GlobalChoice::Mimalloc),
        Contender::raw("snmalloc", Role::Peer, Peer(SnMalloc::new()))
            .with_global(GlobalChoice::Snmalloc),
    ]
}
