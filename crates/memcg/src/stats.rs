//! Per-group statistics and events, kept hierarchically: a change on a group
//! is applied to it and to every ancestor, so reading is one load per key.

use crate::sync::{AtomicIsize, AtomicUsize, Ordering::Relaxed};

/// Pages by kind, the `memory.stat` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stat {
    Anon = 0,
    File = 1,
    /// Page-level kmem (`kmem` in scripts); part of `kernel`.
    Kmem = 2,
    SlabReclaimable = 3,
    SlabUnreclaimable = 4,
}

const NR_STATS: usize = 5;

/// Page counts by [`Stat`], hierarchical.
#[derive(Debug, Default)]
pub(crate) struct Stats([AtomicIsize; NR_STATS]);

impl Stats {
    pub(crate) fn add(&self, stat: Stat, pages: isize) {
        // Relaxed: statistics publish nothing; a reader racing with a charge
        // may see the counter and the stat a few pages apart, never afterwards.
        self.0[stat as usize].fetch_add(pages, Relaxed);
    }

    /// Pages of `stat`, clamped at 0 against transient races.
    pub(crate) fn get(&self, stat: Stat) -> u64 {
        self.0[stat as usize].load(Relaxed).max(0) as u64
    }

    /// All kernel memory: page-level kmem plus slab.
    pub(crate) fn kernel(&self) -> u64 {
        self.get(Stat::Kmem) + self.slab()
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
}

pub(crate) const EVENT_NAMES: [(Event, &str); 3] = [
    (Event::High, "high"),
    (Event::Max, "max"),
    (Event::Oom, "oom"),
];

/// Event counts of one group: `local` for `memory.events.local`, `hier` for
/// `memory.events` (this group and its descendants).
#[derive(Debug, Default)]
pub(crate) struct Events {
    pub(crate) local: [AtomicUsize; 3],
    pub(crate) hier: [AtomicUsize; 3],
}

impl Events {
    pub(crate) fn local(&self, e: Event) -> usize {
        self.local[e as usize].load(Relaxed)
    }

    pub(crate) fn hier(&self, e: Event) -> usize {
        self.hier[e as usize].load(Relaxed)
    }
}
