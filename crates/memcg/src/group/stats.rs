//! Per-group statistics and events, kept hierarchically: a change on a group
//! is applied to it and to every ancestor, so reading is one load per key.
//! Statistics are in bytes: slab objects are charged by the byte (S11).

use crate::sync::{AtomicIsize, AtomicUsize, Ordering::Relaxed};

/// The `memory.stat` keys, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stat {
    Anon = 0,
    File = 1,
    /// Page-level kmem (`kmem` in scripts); part of `kernel`.
    Kmem = 2,
    /// Every page charged for kernel memory: page-level kmem, the slab pages
    /// of isolated caches, and the pages that back byte charges of shared
    /// slab objects (S11). Charges of the other kmem kinds add here too.
    Kernel = 3,
    /// Slab memory: the slab pages of isolated caches, or the bytes of live
    /// objects of shared caches (slot plus object-vector entry).
    SlabReclaimable = 4,
    SlabUnreclaimable = 5,
}

impl Stat {
    /// Whether charges of this kind are kernel memory, counted in `kernel`.
    pub(crate) fn is_kmem(self) -> bool {
        matches!(
            self,
            Stat::Kmem | Stat::SlabReclaimable | Stat::SlabUnreclaimable
        )
    }
}

pub(crate) const NR_STATS: usize = 6;

impl Stat {
    /// Every stat, by index.
    pub(crate) const ALL: [Stat; NR_STATS] = [
        Stat::Anon,
        Stat::File,
        Stat::Kmem,
        Stat::Kernel,
        Stat::SlabReclaimable,
        Stat::SlabUnreclaimable,
    ];
}

/// Bytes by [`Stat`], hierarchical.
#[derive(Debug, Default)]
pub(crate) struct Stats([AtomicIsize; NR_STATS]);

impl Stats {
    pub(crate) fn add(&self, stat: Stat, bytes: isize) {
        // Relaxed: statistics publish nothing; a reader racing with a charge
        // may see the counter and the stat a few pages apart, never afterwards.
        self.0[stat as usize].fetch_add(bytes, Relaxed);
    }

    /// Bytes of `stat`, clamped at 0 against transient races.
    pub(crate) fn get(&self, stat: Stat) -> u64 {
        self.0[stat as usize].load(Relaxed).max(0) as u64
    }

    /// All kernel memory: the pages charged for it.
    pub(crate) fn kernel(&self) -> u64 {
        self.get(Stat::Kernel)
    }

    pub(crate) fn slab(&self) -> u64 {
        self.get(Stat::SlabReclaimable) + self.get(Stat::SlabUnreclaimable)
    }
}

/// The `memory.events` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    High = 0,
    Max = 1,
    Oom = 2,
    /// Usage under `memory.low` was reclaimed (S13).
    Low = 3,
    /// The OOM killer killed a killable unit of this group (S14).
    OomKill = 4,
    /// The OOM killer killed this group's whole subtree, for its
    /// `memory.oom.group` (S14).
    OomGroupKill = 5,
}

pub(crate) const NR_EVENTS: usize = 6;

/// The keys in the kernel's order.
pub(crate) const EVENT_NAMES: [(Event, &str); NR_EVENTS] = [
    (Event::Low, "low"),
    (Event::High, "high"),
    (Event::Max, "max"),
    (Event::Oom, "oom"),
    (Event::OomKill, "oom_kill"),
    (Event::OomGroupKill, "oom_group_kill"),
];

/// Event counts of one group: `local` for `memory.events.local`, `hier` for
/// `memory.events` (this group and its descendants).
#[derive(Debug, Default)]
pub(crate) struct Events {
    pub(crate) local: [AtomicUsize; NR_EVENTS],
    pub(crate) hier: [AtomicUsize; NR_EVENTS],
}

impl Events {
    pub(crate) fn local(&self, e: Event) -> usize {
        self.local[e as usize].load(Relaxed)
    }

    pub(crate) fn hier(&self, e: Event) -> usize {
        self.hier[e as usize].load(Relaxed)
    }
}
