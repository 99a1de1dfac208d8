//! The shrinker interface (the kernel's memcg-aware shrinkers): what
//! a program registers on a hierarchy so that reclaim (layer 4, `reclaim/`) can free its
//! reclaimable memory, group by group.

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
