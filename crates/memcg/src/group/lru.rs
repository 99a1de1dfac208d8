//! A group's LRU lists of user pages, the data only (the kernel's
//! `lruvec`). [`user`](crate::reclaim::user) (reclaim/) charges pages, puts them on
//! these lists, reclaims file pages from them and walks them at removal.

use crate::group::stats::Stat;
use crate::group::GroupInner;
use crate::sync::{Arc, Mutex};
use std::collections::BTreeMap;

/// The kind of a user page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PageKind {
    /// Anonymous memory: charged, never reclaimed.
    Anon,
    /// Page cache: charged, reclaimed under pressure oldest first.
    File,
}

impl PageKind {
    pub(crate) fn stat(self) -> Stat {
        match self {
            PageKind::Anon => Stat::Anon,
            PageKind::File => Stat::File,
        }
    }
}

/// The bookkeeping of one page: its current group (`None` once freed or
/// reclaimed), kind and LRU position.
pub(crate) struct PageRecord {
    pub(crate) owner: Mutex<Option<Arc<GroupInner>>>,
    pub(crate) kind: PageKind,
    pub(crate) seq: u64,
}

/// A group's LRU lists, keyed by age (a hierarchy-wide clock), oldest first.
#[derive(Default)]
pub(crate) struct Lru {
    pub(crate) anon: BTreeMap<u64, Arc<PageRecord>>,
    pub(crate) file: BTreeMap<u64, Arc<PageRecord>>,
}

impl Lru {
    pub(crate) fn list(&mut self, kind: PageKind) -> &mut BTreeMap<u64, Arc<PageRecord>> {
        match kind {
            PageKind::Anon => &mut self.anon,
            PageKind::File => &mut self.file,
        }
    }

    /// The age of the oldest file page, if any.
    pub(crate) fn oldest_file(&self) -> Option<u64> {
        self.file.keys().next().copied()
    }
}
