//! Layer 5b: reclaim. Takes, in order, file pages (oldest first across the
//! subtree), reclaimable objects through shrinkers, and empty slab pages kept
//! for reuse (shrinkers of the last stage). anon pages and plain kmem are not
//! reclaimable.

use crate::group::GroupInner;
use crate::shrinker::{ShrinkControl, ShrinkStage};
use crate::sync::Arc;

/// Reclaim up to `pages` pages from `group` and its online descendants.
/// Returns the pages reclaimed.
pub(crate) fn reclaim(group: &GroupInner, pages: usize) -> usize {
    if pages == 0 {
        return 0;
    }
    let _internal = crate::internal::Internal::enter();
    // Reclaim counts its progress on the page counters: the pages it frees
    // must reach them, not this thread's charge stock (which `memory.high`
    // reclaim, right after a charge, usually still holds).
    crate::stock::flush_local();
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
    let mut freed = 0;
    while freed < pages {
        let oldest = subtree
            .iter()
            .filter_map(|g| g.lru.lock().oldest_file().map(|seq| (seq, g)))
            .min_by_key(|&(seq, _)| seq);
        let Some((seq, g)) = oldest else { break };
        if crate::user::reclaim_file_page(g, seq) {
            freed += 1;
        }
    }
    if freed >= pages {
        return freed;
    }
    let shrinkers = group.common.shrinkers.lock().clone();
    for stage in [ShrinkStage::Objects, ShrinkStage::EmptySlabs] {
        for g in &subtree {
            freed += match stage {
                ShrinkStage::Objects => crate::slab::reclaim_objects(g, pages - freed),
                ShrinkStage::EmptySlabs => crate::slab::reclaim_empty_slabs(g, pages - freed),
            };
            if freed >= pages {
                return freed;
            }
        }
        for s in shrinkers.iter().filter(|s| s.stage() == stage) {
            for g in &subtree {
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
