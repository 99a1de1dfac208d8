//! Layer 5b: reclaim. Takes, in order, file pages (oldest first across the
//! subtree), reclaimable objects through shrinkers, and empty slab pages kept
//! for reuse (shrinkers of the last stage). anon pages and plain kmem are not
//! reclaimable.

use crate::group::GroupInner;
use crate::sync::Arc;

/// Which pass of reclaim a [`Shrinker`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ShrinkStage {
    /// Reclaimable objects (the kernel's dcache and inode caches on list_lru).
    Objects,
    /// Empty slab pages kept for reuse.
    EmptySlabs,
}

/// What a shrinker is asked to reclaim.
#[derive(Debug, Clone)]
pub struct ShrinkControl {
    /// The kmemcg id of the group whose memory to reclaim.
    pub group_id: usize,
    /// The group's path.
    pub path: String,
    /// Pages wanted.
    pub nr_pages: usize,
}

/// A per-group reclaim callback (the kernel's memcg-aware shrinker).
///
/// `scan` frees memory charged to the group (freeing uncharges it) and
/// returns the pages it uncharged. It runs without any of the hierarchy's
/// locks held and may free objects, but must not charge.
pub trait Shrinker: Send + Sync {
    /// The pass this shrinker belongs to.
    fn stage(&self) -> ShrinkStage {
        ShrinkStage::Objects
    }

    /// Free up to `sc.nr_pages` pages of the group's reclaimable memory.
    fn scan(&self, sc: &ShrinkControl) -> usize;
}

/// Reclaim up to `pages` pages from `group` and its online descendants.
/// Returns the pages reclaimed.
pub(crate) fn reclaim(group: &GroupInner, pages: usize) -> usize {
    if pages == 0 {
        return 0;
    }
    let _internal = crate::global::Internal::enter();
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
            freed += crate::slab::reclaim_group(g, pages - freed, stage);
            if freed >= pages {
                return freed;
            }
        }
        for s in shrinkers.iter().filter(|s| s.stage() == stage) {
            for g in &subtree {
                freed += s.scan(&ShrinkControl {
                    group_id: g.id,
                    path: g.path.clone(),
                    nr_pages: pages - freed,
                });
                if freed >= pages {
                    return freed;
                }
            }
        }
    }
    freed
}
