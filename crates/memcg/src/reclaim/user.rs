//! User pages (the kernel's anon and file LRU pages).
//!
//! Unlike kmem, a user page records its group directly and sits on the
//! group's LRU list; removal walks the lists and moves every page to the
//! parent (S7, the contrast the seed draws). File pages are reclaimable (oldest
//! first within a group, groups in proportion: see `reclaim`); anon pages
//! are not (there is no swap).

use crate::error::Result;
use crate::group::lru::{PageKind, PageRecord};
use crate::group::GroupInner;
use crate::sync::{Arc, Mutex, Ordering::Relaxed};

/// One page of user memory charged to the group of the thread that made it.
///
/// Dropping it frees it; a file page may be reclaimed before that, after which
/// [`is_live`](UserPage::is_live) is false and dropping it does nothing.
pub struct UserPage {
    /// `None` for a page made in the root group, which nothing accounts.
    record: Option<Arc<PageRecord>>,
}

impl std::fmt::Debug for UserPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserPage")
            .field("accounted", &self.record.is_some())
            .field("live", &self.is_live())
            .finish()
    }
}

impl UserPage {
    /// Charge one page of `kind` to the calling thread's group and put it on
    /// that group's LRU. In the root group the page is not charged (S10).
    ///
    /// Fails with [`Limit`](crate::ErrorKind::Limit) when the group or an
    /// ancestor is at `memory.max` and reclaim cannot make room.
    pub fn charge(kind: PageKind) -> Result<UserPage> {
        crate::accounting::current::refresh_default();
        let Some(group) = crate::accounting::current::current_group() else {
            return Ok(UserPage { record: None });
        };
        let ctx = group
            .ctx
            .as_ref()
            .expect("tasks are attached to non-root groups only");
        crate::accounting::charge::charge(ctx, 1, kind.stat(), false)?;
        let _internal = crate::reentrancy::Internal::enter();
        // The charge went to the context's owner: the group itself while it is
        // online (a thread can only be attached to an online group).
        let owner = ctx.with_owner(|g| g.clone());
        let record = Arc::new(PageRecord {
            owner: Mutex::new(Some(owner.clone())),
            kind,
            seq: owner.common.lru_clock.fetch_add(1, Relaxed),
        });
        owner
            .lru
            .lock()
            .list(kind)
            .insert(record.seq, record.clone());
        Ok(UserPage {
            record: Some(record),
        })
    }

    /// Whether the page is still live (false once reclaimed).
    pub fn is_live(&self) -> bool {
        self.record
            .as_ref()
            .is_none_or(|r| r.owner.lock().is_some())
    }
}

impl Drop for UserPage {
    fn drop(&mut self) {
        let Some(r) = &self.record else { return };
        let _internal = crate::reentrancy::Internal::enter();
        // The owner may change under us (reparenting): lock the LRU of the
        // group we saw, then check the page is still there.
        loop {
            let Some(group) = r.owner.lock().clone() else {
                return;
            };
            let mut lru = group.lru.lock();
            let mut owner = r.owner.lock();
            if !owner.as_ref().is_some_and(|o| Arc::ptr_eq(o, &group)) {
                continue;
            }
            lru.list(r.kind).remove(&r.seq);
            *owner = None;
            drop(owner);
            drop(lru);
            uncharge(&group, r.kind, 1);
            return;
        }
    }
}

fn uncharge(group: &GroupInner, kind: PageKind, pages: usize) {
    group.counter.uncharge(pages);
    group.stat_pages(kind.stat(), -(pages as isize));
}

/// S7: move every user page of `child` to `parent`, walking the lists. The
/// parent and its ancestors keep their totals; the child's own counter and
/// stats drop by what moved. Called at removal, tree lock held.
pub(crate) fn reparent_pages(child: &GroupInner, parent: &Arc<GroupInner>) -> usize {
    let mut clru = child.lru.lock();
    let mut plru = parent.lru.lock();
    let mut moved = 0;
    for kind in [PageKind::Anon, PageKind::File] {
        let pages = std::mem::take(clru.list(kind));
        let n = pages.len();
        for (seq, rec) in pages {
            *rec.owner.lock() = Some(parent.clone());
            plru.list(kind).insert(seq, rec);
        }
        child.counter.uncharge_below(&parent.counter, n);
        child
            .stats
            .add(kind.stat(), -((n * crate::PAGE_SIZE) as isize));
        moved += n;
    }
    moved
}

/// Reclaim the oldest file page of `group`, if its oldest is `seq`. Returns
/// whether a page was reclaimed.
pub(crate) fn reclaim_file_page(group: &GroupInner, seq: u64) -> bool {
    let mut lru = group.lru.lock();
    let Some(rec) = lru.file.remove(&seq) else {
        return false;
    };
    *rec.owner.lock() = None;
    drop(lru);
    uncharge(group, PageKind::File, 1);
    true
}
