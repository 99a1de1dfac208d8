//! Layer 4, reclaim: taking memory back (the kernel's `mm/vmscan.c`
//! memcg parts, `memory.reclaim`, and protection `memory.min`/`low`).
//!
//! Owns: reclaim itself (here) and [`user`] (user pages, the LRU pages
//! reclaim takes). May import: the leaves, `group/`, `accounting/`,
//! `alloc/` (emptied slabs to release). Charging reaches reclaim through the
//! hook the interface registers.
//!
//! Reclaim (DESIGN.md §4). Takes, in order, file pages,
//! reclaimable objects through shrinkers, and empty slab pages kept for
//! reuse (shrinkers of the last stage), skipping usage protected by
//! `memory.min`/`memory.low` (S13). File pages are taken across the
//! subtree's groups in proportion to each group's unprotected usage, in
//! rounds (the kernel's scan balance), and oldest first within a group.
//! anon pages and plain kmem are not reclaimable.

pub(crate) mod user;

use crate::group::shrinker::{ShrinkControl, ShrinkStage};
use crate::group::stats::Event;
use crate::group::GroupInner;
use crate::sync::Arc;

/// Reclaim up to `pages` pages from `group` and its online descendants.
/// Returns the pages reclaimed.
pub(crate) fn reclaim(group: &GroupInner, pages: usize) -> usize {
    if pages == 0 {
        return 0;
    }
    let _internal = crate::reentrancy::Internal::enter();
    // Reclaim counts its progress on the page counters: the pages it frees
    // must reach them, not this thread's charge stock (which `memory.high`
    // reclaim, right after a charge, usually still holds).
    crate::accounting::charge_stock::flush_local();
    let subtree: Vec<Arc<GroupInner>> = {
        let tree = group.common.tree.lock();
        match tree.groups.get(&group.path) {
            // Online: the group and its online descendants.
            Some(g) if std::ptr::eq(&**g, group) => std::iter::once(g)
                .chain(tree.descendants(&group.path))
                .cloned()
                .collect(),
            // Removed (reached through a handle): what it billed has moved
            // to its parent, and its path may name another group by now.
            _ => return 0,
        }
    };
    let parents = parent_indices(&subtree);
    let mut freed = 0;
    // S13, as the kernel's do_try_to_free_pages: a first pass skips usage
    // under memory.low; only if it freed nothing, a second pass takes it,
    // counting a `low` event each time it visits such a group. Usage under
    // memory.min is never taken. The reclaim root's own protection never
    // counts (so memory.reclaim on a group ignores it).
    for low_reclaim in [false, true] {
        let mut pass = Pass {
            subtree: &subtree,
            parents: &parents,
            low_reclaim,
            low_skipped: false,
        };
        freed += pass.file(pages - freed);
        if freed < pages {
            freed += pass.kmem(pages - freed);
        }
        if freed > 0 || !pass.low_skipped {
            break;
        }
    }
    freed
}

/// One pass of reclaim over a subtree (the reclaim root first, parents
/// before children): whether it may take usage under memory.low, and
/// whether it skipped some.
struct Pass<'a> {
    subtree: &'a [Arc<GroupInner>],
    parents: &'a [Option<usize>],
    low_reclaim: bool,
    low_skipped: bool,
}

/// Pages a reclaim round takes at most (the kernel's `SWAP_CLUSTER_MAX`):
/// small rounds, with protection recomputed between them, make the groups'
/// shares follow their unprotected usage as it shrinks.
const ROUND: usize = 32;

/// For each group of `subtree` (the reclaim root first, parents before
/// children), the index of its parent within it.
fn parent_indices(subtree: &[Arc<GroupInner>]) -> Vec<Option<usize>> {
    let index: std::collections::HashMap<*const GroupInner, usize> = subtree
        .iter()
        .enumerate()
        .map(|(i, g)| (Arc::as_ptr(g), i))
        .collect();
    subtree
        .iter()
        .enumerate()
        .map(|(i, g)| {
            if i == 0 {
                return None;
            }
            let p = g.parent.as_ref().map(Arc::as_ptr)?;
            index.get(&p).copied()
        })
        .collect()
}

/// Effective protection (emin, elow) in pages of every group of `subtree`
/// against reclaim rooted at `subtree[0]`, as the kernel's
/// `mem_cgroup_calculate_protection`: the root has none; its children have
/// what they set; deeper groups get what they claim and use, bounded by
/// their parent's effective protection, shared out in proportion to the
/// siblings' protected usage when they claim more than it.
pub(crate) fn effective_protection(
    subtree: &[Arc<GroupInner>],
    parents: &[Option<usize>],
) -> Vec<(usize, usize)> {
    use crate::sync::Ordering::Relaxed;
    let usage: Vec<usize> = subtree.iter().map(|g| g.counter.usage()).collect();
    // Children's protected usage, per parent: min(usage, setting).
    let mut children_min = vec![0usize; subtree.len()];
    let mut children_low = vec![0usize; subtree.len()];
    for (i, g) in subtree.iter().enumerate() {
        if let Some(p) = parents[i] {
            children_min[p] += usage[i].min(g.min.load(Relaxed));
            children_low[p] += usage[i].min(g.low.load(Relaxed));
        }
    }
    let mut eff = vec![(0usize, 0usize); subtree.len()];
    for (i, g) in subtree.iter().enumerate() {
        let Some(p) = parents[i] else { continue };
        let (min, low) = (g.min.load(Relaxed), g.low.load(Relaxed));
        eff[i] = if p == 0 {
            (min, low)
        } else {
            (
                share(usage[i], min, eff[p].0, children_min[p]),
                share(usage[i], low, eff[p].1, children_low[p]),
            )
        };
    }
    eff
}

/// The kernel's `effective_protection` (without recursive protection).
fn share(usage: usize, setting: usize, parent_effective: usize, siblings: usize) -> usize {
    let protected = usage.min(setting);
    if siblings > parent_effective {
        (protected as u128 * parent_effective as u128 / siblings as u128) as usize
    } else {
        protected
    }
}

impl Pass<'_> {
    /// What the pass may do to group `i` of the subtree, given the effective
    /// protections `eff`: `None` to skip it, or the protection that scales
    /// its share down.
    fn protection_of(&mut self, i: usize, eff: &[(usize, usize)]) -> Option<usize> {
        if i == 0 {
            return Some(0);
        }
        let g = &self.subtree[i];
        let usage = g.counter.usage();
        let (emin, elow) = eff[i];
        if emin >= usage {
            return None;
        }
        if elow >= usage {
            if !self.low_reclaim {
                self.low_skipped = true;
                return None;
            }
            g.event(Event::Low);
        }
        Some(if self.low_reclaim {
            emin
        } else {
            emin.max(elow)
        })
    }

    /// File pages, oldest first within each group, from the groups in
    /// proportion to their unprotected usage (the kernel's proportional
    /// protection: a group's LRU is scanned by `size - size * protection /
    /// (usage + 1)`), in rounds of [`ROUND`] pages with protection recomputed
    /// between rounds. Each round costs a look at each group of the subtree and
    /// the pages it takes, never a walk over an LRU.
    fn file(&mut self, pages: usize) -> usize {
        use crate::sync::Ordering::Relaxed;
        let subtree = self.subtree;
        let mut freed = 0;
        while freed < pages {
            let eff = effective_protection(subtree, self.parents);
            let mut weights: Vec<(usize, u64)> = Vec::new();
            for (i, g) in subtree.iter().enumerate() {
                let lru = g.lru.lock().file.len();
                if lru == 0 {
                    continue;
                }
                let Some(prot) = self.protection_of(i, &eff) else {
                    continue;
                };
                let usage = g.counter.usage().max(prot);
                let w = if prot > 0 {
                    let scaled = lru - (lru as u128 * prot as u128 / (usage as u128 + 1)) as usize;
                    scaled.max(ROUND.min(lru))
                } else {
                    lru
                };
                weights.push((i, w as u64));
            }
            let total: u64 = weights.iter().map(|&(_, w)| w).sum();
            if total == 0 {
                break;
            }
            let want = (pages - freed).min(ROUND) as u64;
            let mut round = 0;
            let mut best: Option<(u64, usize)> = None;
            for &(i, w) in &weights {
                let g = &subtree[i];
                let credit = g.reclaim_credit.load(Relaxed) + want * w * 1000 / total;
                let take = (credit / 1000) as usize;
                g.reclaim_credit.store(credit - take as u64 * 1000, Relaxed);
                round += take_file_pages(g, take);
                if best.is_none_or(|(c, _)| credit % 1000 > c) {
                    best = Some((credit % 1000, i));
                }
            }
            if round == 0 {
                // Every share was a fraction: the group owed the most gives one.
                if let Some((_, i)) = best {
                    round += take_file_pages(&subtree[i], 1);
                }
            }
            if round == 0 {
                break;
            }
            freed += round;
        }
        freed
    }

    /// Reclaimable slab objects (through shrinkers) and empty slab pages kept
    /// for reuse, group by group, skipping protected groups as file reclaim does.
    fn kmem(&mut self, pages: usize) -> usize {
        let subtree = self.subtree;
        let Some(first) = subtree.first() else {
            return 0;
        };
        let shrinkers = first.common.shrinkers.lock().clone();
        let eff = effective_protection(subtree, self.parents);
        let eligible: Vec<&Arc<GroupInner>> = (0..subtree.len())
            .filter(|&i| self.protection_of(i, &eff).is_some())
            .map(|i| &subtree[i])
            .collect();
        let mut freed = 0;
        for stage in [ShrinkStage::Objects, ShrinkStage::EmptySlabs] {
            for g in &eligible {
                freed += match stage {
                    ShrinkStage::Objects => crate::alloc::slab::reclaim_objects(g, pages - freed),
                    ShrinkStage::EmptySlabs => {
                        crate::alloc::slab::reclaim_empty_slabs(g, pages - freed)
                    }
                };
                if freed >= pages {
                    return freed;
                }
            }
            for s in shrinkers.iter().filter(|s| s.stage() == stage) {
                for g in &eligible {
                    let sc = ShrinkControl {
                        group_id: g.id,
                        path: g.path.clone(),
                        nr_pages: pages - freed,
                    };
                    // A program's callback, possibly reached from inside the
                    // global allocator, which must not unwind: a panicking
                    // shrinker freed nothing (the panic hook has reported it).
                    freed += std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.scan(&sc)))
                        .unwrap_or(0);
                    if freed >= pages {
                        return freed;
                    }
                }
            }
        }
        freed
    }
}

/// Reclaim up to `n` of `g`'s oldest file pages; returns how many.
fn take_file_pages(g: &GroupInner, n: usize) -> usize {
    let mut took = 0;
    while took < n {
        let Some(seq) = g.lru.lock().oldest_file() else {
            break;
        };
        if crate::reclaim::user::reclaim_file_page(g, seq) {
            took += 1;
        }
    }
    took
}
