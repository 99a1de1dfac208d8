//! Layer 1, groups: what a group is and holds (the kernel's
//! `struct mem_cgroup`, `struct obj_cgroup`, `page_counter.c`, and the state
//! half of `mm/memcontrol.c`).
//!
//! Owns: the group itself (here: its tree, lifecycle and references),
//! [`page_counter`], [`stats`] (statistics and events, hierarchical),
//! [`kmem_context`] (the reparentable owners of kmem charges), [`deferred`]
//! (the worker that destroys contexts and wakes watchers), [`events`]
//! (waiting for `memory.events`), [`pressure`] (stall accounting and its
//! triggers), [`lru`] (a group's LRU lists, the data only) and
//! [`shrinker`] (the trait).
//!
//! May import: the crate's leaves only.
//!
//! Groups, their tree and lifecycle.
//!
//! A group is Online until it is removed, then Dying until its last handle is
//! dropped, then Freed. Removal reparents everything the group billed: its
//! kmem context (and the contexts reparented to it before) by one pointer
//! switch each, its user pages by walking its LRU lists. After that, nothing
//! references the group but handles users hold (a [`Group`](crate::Group), a
//! task that was moved out, a page mid-free), so it is freed as soon as those go
//! (S1): the only state left behind is the context.
//!
//! Ownership: the hierarchy's tree holds one `Arc` per online group; a child
//! holds its parent; a context holds its owner. A group holds its own context's
//! base reference, which is dropped when the group is freed.

pub(crate) mod deferred;
pub(crate) mod events;
pub(crate) mod kill;
pub(crate) mod kmem_context;
pub(crate) mod lru;
pub mod page_counter;
pub(crate) mod pressure;
pub(crate) mod shrinker;
pub(crate) mod stats;

use crate::group::kmem_context::{CtxPtr, CtxRef, KmemContext};
use crate::group::lru::Lru;
use crate::group::page_counter::PageCounter;
use crate::group::stats::{Event, Events, Stat, Stats};
use crate::sync::{Arc, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Mutex, Ordering::*};
use std::collections::{BTreeMap, BTreeSet};

/// State shared by a hierarchy's groups and contexts. Holds no group, so that
/// groups may hold it.
pub(crate) struct Common {
    /// A process-unique id, to tell hierarchies apart in per-thread stocks.
    pub(crate) id: u64,
    /// Online groups by path, the kernel's cgroupfs tree.
    pub(crate) tree: Mutex<Tree>,
    /// Serializes owner changes of contexts and their destruction (the seed's
    /// `memcg_slab_mutex`). Taken after `tree`, never on allocation paths.
    pub(crate) ctx_lock: Mutex<()>,
    /// Held while deferred work runs, so that a quiesce returns only after
    /// work the background worker had already taken is done.
    pub(crate) deferred_lock: Mutex<()>,
    /// Contexts whose last reference is gone, to destroy (Treiber stack).
    pub(crate) deferred: AtomicPtr<KmemContext>,
    /// Child slab caches of this hierarchy's groups not yet destroyed.
    pub(crate) caches_live: AtomicUsize,
    /// Dead child caches not yet destroyed, and the slab pages they hold.
    pub(crate) dead_caches: AtomicUsize,
    pub(crate) dead_cache_pages: AtomicUsize,
    /// Slabs the last removal looked at (S8).
    pub(crate) last_removal_slabs: AtomicUsize,
    /// Contexts not yet destroyed.
    pub(crate) contexts_live: AtomicUsize,
    /// Contexts destroyed so far.
    pub(crate) contexts_destroyed: AtomicUsize,
    /// Source of LRU order: every user page takes the next number.
    pub(crate) lru_clock: AtomicU64,
    pub(crate) shrinkers: Mutex<Vec<Arc<dyn crate::group::shrinker::Shrinker>>>,
}

impl Common {
    pub(crate) fn new() -> Arc<Common> {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Arc::new(Common {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            tree: Mutex::new(Tree::default()),
            ctx_lock: Mutex::new(()),
            deferred_lock: Mutex::new(()),
            deferred: AtomicPtr::new(std::ptr::null_mut()),
            last_removal_slabs: AtomicUsize::new(0),
            caches_live: AtomicUsize::new(0),
            dead_caches: AtomicUsize::new(0),
            dead_cache_pages: AtomicUsize::new(0),
            contexts_live: AtomicUsize::new(0),
            contexts_destroyed: AtomicUsize::new(0),
            lru_clock: AtomicU64::new(0),
            shrinkers: Mutex::new(Vec::new()),
        })
    }

    /// Whether destruction work is queued (for the deferred worker, which
    /// skips idle hierarchies without taking their locks).
    pub(crate) fn has_deferred(&self) -> bool {
        !self.deferred.load(Acquire).is_null() || crate::group::deferred::registered_pending()
    }

    /// Run deferred destruction now, in this thread.
    pub(crate) fn run_deferred(this: &Arc<Common>) -> usize {
        crate::group::kmem_context::run_deferred(this)
    }
}

/// The online groups of a hierarchy, by path.
#[derive(Default)]
pub(crate) struct Tree {
    pub(crate) groups: BTreeMap<String, Arc<GroupInner>>,
}

/// Group ids in use, process-wide: slab caches are process-wide and index
/// their per-group slots by id, as the kernel's `memcg_caches[kmemcg_id]`.
struct Ids {
    free: BTreeSet<usize>,
    next: usize,
}

static IDS: std::sync::Mutex<Ids> = std::sync::Mutex::new(Ids {
    free: BTreeSet::new(),
    next: 0,
});

/// The lowest free group id (the kernel's ida): ids are recycled (S10).
pub(crate) fn alloc_id() -> usize {
    let mut ids = crate::sync::lock_std(&IDS);
    if let Some(id) = ids.free.pop_first() {
        return id;
    }
    ids.next += 1;
    ids.next
}

pub(crate) fn free_id(id: usize) {
    let mut ids = crate::sync::lock_std(&IDS);
    ids.free.insert(id);
}

impl Tree {
    /// Online descendants of `path`, in path order (parents before children).
    pub(crate) fn descendants<'a>(
        &'a self,
        path: &str,
    ) -> impl Iterator<Item = &'a Arc<GroupInner>> + 'a {
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        let start = prefix.clone();
        self.groups
            .range(start..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| k.as_str() != "/")
            .map(|(_, g)| g)
    }

    /// Online children of `path`.
    pub(crate) fn children<'a>(
        &'a self,
        path: &'a str,
    ) -> impl Iterator<Item = &'a Arc<GroupInner>> {
        let parent_depth = depth(path);
        self.descendants(path)
            .filter(move |g| depth(&g.path) == parent_depth + 1)
    }
}

fn depth(path: &str) -> usize {
    if path == "/" {
        0
    } else {
        path.matches('/').count()
    }
}

/// A task attached to a group: a thread, by its id and name.
#[derive(Debug, Clone)]
pub(crate) struct TaskEntry {
    pub(crate) id: u64,
    pub(crate) name: String,
}

/// The group proper (the kernel's `struct mem_cgroup`).
pub(crate) struct GroupInner {
    pub(crate) common: Arc<Common>,
    pub(crate) parent: Option<Arc<GroupInner>>,
    pub(crate) path: String,
    /// The kmemcg id: indexes per-group slots; recycled after removal.
    pub(crate) id: usize,
    dying: AtomicBool,
    pub(crate) counter: Arc<PageCounter>,
    pub(crate) stats: Stats,
    pub(crate) events: Events,
    pub(crate) nr_dying_descendants: AtomicUsize,
    /// The group's own kmem context; `None` for the root, which is never charged.
    pub(crate) ctx: Option<CtxRef>,
    /// Contexts reparented to this group (the seed's `ctx->list`). Changed
    /// only with the context lock held.
    reparented: Mutex<Vec<CtxPtr>>,
    pub(crate) lru: Mutex<Lru>,
    pub(crate) tasks: Mutex<Vec<TaskEntry>>,
    /// `memory.min` and `memory.low` in pages (S13).
    pub(crate) min: AtomicUsize,
    pub(crate) low: AtomicUsize,
    /// Reclaim owed to this group's LRU, in thousandths of a page: reclaim
    /// takes pages from the groups of a subtree in proportion to their
    /// unprotected usage, in small rounds, carrying the fractions over.
    pub(crate) reclaim_credit: AtomicU64,
    /// Threads attached to this group and its descendants (for PSI `full`).
    pub(crate) tasks_hier: AtomicUsize,
    /// `memory.pressure`.
    pub(crate) psi: crate::group::pressure::Psi,
    /// `memory.high` throttling owed by a bound future that completed in
    /// the poll that charged over it, in milliseconds: the group's next
    /// bound poll pays it.
    pub(crate) throttle_debt_ms: AtomicU64,
    /// Killable units bound or attached to this group (S14).
    pub(crate) units: std::sync::Mutex<Vec<Arc<kill::Unit>>>,
    /// `memory.oom.group` (S14).
    pub(crate) oom_group: AtomicBool,
    /// `cgroup.freeze` (S15).
    pub(crate) freeze: AtomicBool,
    /// Groups from this one up to the root with `cgroup.freeze` 1: frozen
    /// while above 0. Changed under the tree lock.
    pub(crate) frozen: AtomicUsize,
    /// Wakers of bound futures held by a freeze.
    pub(crate) freeze_waiters: std::sync::Mutex<Vec<std::task::Waker>>,
    /// Bound futures alive in this group and its descendants
    /// (`cgroup.events` `populated`).
    pub(crate) bound_hier: AtomicUsize,
}

impl GroupInner {
    pub(crate) fn new_root(common: Arc<Common>) -> Arc<GroupInner> {
        Arc::new(GroupInner::new(common, None, "/".into(), 0, None))
    }

    /// A new online group below `parent`, with its own context pointing at it.
    pub(crate) fn new_child(parent: &Arc<GroupInner>, path: String, id: usize) -> Arc<GroupInner> {
        let ctx = CtxRef::new(parent.common.clone());
        let group = Arc::new(GroupInner::new(
            parent.common.clone(),
            Some(parent.clone()),
            path,
            id,
            Some(ctx.clone()),
        ));
        // The context's first owner: not yet visible to any other thread.
        ctx.set_owner(group.clone());
        drop(ctx);
        group
    }

    fn new(
        common: Arc<Common>,
        parent: Option<Arc<GroupInner>>,
        path: String,
        id: usize,
        ctx: Option<CtxRef>,
    ) -> GroupInner {
        let counter = Arc::new(PageCounter::new(parent.as_ref().map(|p| p.counter.clone())));
        GroupInner {
            common,
            parent,
            path,
            id,
            dying: AtomicBool::new(false),
            counter,
            stats: Stats::default(),
            events: Events::default(),
            nr_dying_descendants: AtomicUsize::new(0),
            ctx,
            reparented: Mutex::new(Vec::new()),
            lru: Mutex::new(Lru::default()),
            tasks: Mutex::new(Vec::new()),
            min: AtomicUsize::new(0),
            low: AtomicUsize::new(0),
            reclaim_credit: AtomicU64::new(0),
            tasks_hier: AtomicUsize::new(0),
            psi: crate::group::pressure::Psi::default(),
            throttle_debt_ms: AtomicU64::new(0),
            units: std::sync::Mutex::new(Vec::new()),
            oom_group: AtomicBool::new(false),
            freeze: AtomicBool::new(false),
            frozen: AtomicUsize::new(0),
            freeze_waiters: std::sync::Mutex::new(Vec::new()),
            bound_hier: AtomicUsize::new(0),
        }
    }

    pub(crate) fn is_root(&self) -> bool {
        self.parent.is_none()
    }

    /// The live group that owns a removed group's charges now (S2): the one
    /// its kmem context bills (or, without a context, its nearest live
    /// ancestor); `None` while this group is live and owns them itself.
    /// The one place that resolves a dying group.
    pub(crate) fn charges_owner(&self) -> Option<Arc<GroupInner>> {
        if !self.is_dying() {
            return None;
        }
        Some(match &self.ctx {
            Some(ctx) => ctx.with_owner(|o| o.clone()),
            None => {
                let mut g = self.parent.clone();
                while let Some(p) = g.as_ref().filter(|p| p.is_dying()) {
                    g = p.parent.clone();
                }
                g.expect("the root is never removed")
            }
        })
    }

    /// This group if live, else the live group that owns its charges now
    /// ([`charges_owner`](Self::charges_owner)).
    pub(crate) fn live_owner(this: &Arc<Self>) -> Arc<GroupInner> {
        this.charges_owner().unwrap_or_else(|| this.clone())
    }

    /// Whether the group was removed.
    pub(crate) fn is_dying(&self) -> bool {
        self.dying.load(Acquire)
    }

    /// This group and its ancestors, nearest first.
    pub(crate) fn ancestors(&self) -> impl Iterator<Item = &GroupInner> {
        std::iter::successors(Some(self), |g| g.parent.as_deref())
    }

    /// The ancestor `level` steps up (0 is `self`).
    pub(crate) fn ancestor_arc(this: &Arc<Self>, level: usize) -> Arc<GroupInner> {
        let mut g = this.clone();
        for _ in 0..level {
            g = g.parent.clone().expect("level within the chain");
        }
        g
    }

    /// Change the stat `stat` by `bytes` here and in every ancestor.
    pub(crate) fn stat_add(&self, stat: Stat, bytes: isize) {
        for g in self.ancestors() {
            g.stats.add(stat, bytes);
        }
    }

    /// Account `pages` charged (negative: uncharged) of kind `stat`: the
    /// stat itself and, for kernel memory, `kernel`.
    pub(crate) fn stat_pages(&self, stat: Stat, pages: isize) {
        let bytes = pages * crate::PAGE_SIZE as isize;
        for g in self.ancestors() {
            g.stats.add(stat, bytes);
            if stat.is_kmem() {
                g.stats.add(Stat::Kernel, bytes);
            }
        }
    }

    /// Count `event` on this group: locally, and hierarchically here and above.
    pub(crate) fn event(&self, event: Event) {
        self.events.local[event as usize].fetch_add(1, Relaxed);
        for g in self.ancestors() {
            g.events.hier[event as usize].fetch_add(1, Relaxed);
        }
        // Watchers are woken by the deferred worker, never from here: this
        // may run inside the allocator.
        crate::group::events::note_event();
    }

    /// A thread was attached to (`+1`) or left (`-1`) this group: count it
    /// here and in every ancestor.
    pub(crate) fn count_task(&self, delta: isize) {
        for g in self.ancestors() {
            if delta > 0 {
                g.tasks_hier.fetch_add(1, Relaxed);
            } else {
                g.tasks_hier.fetch_sub(1, Relaxed);
            }
        }
    }

    /// A thread charging this group starts (`+1`) or stops (`-1`) stalling
    /// on memory: `memory.pressure` of the group and its ancestors.
    pub(crate) fn stall(&self, delta: isize) {
        for g in self.ancestors() {
            g.psi.change(delta, g.tasks_hier.load(Relaxed));
        }
    }

    /// Take `ctx` off this group's list of reparented contexts, if on it.
    /// Context lock held.
    pub(crate) fn unlist_context(&self, ctx: &KmemContext) {
        let index = ctx.list_index.swap(usize::MAX, Relaxed);
        if index == usize::MAX {
            return;
        }
        let mut list = self.reparented.lock();
        debug_assert!(std::ptr::eq(list[index].get(), ctx));
        list.swap_remove(index);
        if let Some(moved) = list.get(index) {
            moved.get().list_index.store(index, Relaxed);
        }
    }

    /// Run `f` on each context reparented to this group. Context lock held.
    pub(crate) fn for_each_reparented(&self, mut f: impl FnMut(&KmemContext)) {
        for p in self.reparented.lock().iter() {
            f(p.get());
        }
    }

    /// How many contexts of removed groups this group bills.
    pub(crate) fn reparented_contexts(&self) -> usize {
        self.reparented.lock().len()
    }

    /// S4: move this group's context, and every context reparented to it
    /// earlier, to `parent` (the seed's `memcg_reparent_kmem`). One pointer
    /// switch per context; no object is visited. Context lock held.
    pub(crate) fn reparent_contexts(this: &Arc<Self>, parent: &Arc<GroupInner>) {
        let moved = std::mem::take(&mut *this.reparented.lock());
        let own = this.ctx.as_ref().map(|c| CtxPtr::new(c.ctx()));
        let mut plist = parent.reparented.lock();
        for p in moved.into_iter().chain(own) {
            debug_assert_eq!(p.owner_ptr(), Arc::as_ptr(this));
            p.set_owner(parent.clone());
            p.get().list_index.store(plist.len(), Relaxed);
            plist.push(p);
        }
    }

    /// Mark the group removed. Called with the tree lock held, once.
    pub(crate) fn mark_dying(&self) {
        self.dying.store(true, Release);
        for a in self.ancestors().skip(1) {
            a.nr_dying_descendants.fetch_add(1, Relaxed);
        }
    }
}

impl Drop for GroupInner {
    fn drop(&mut self) {
        // Freed: a dying descendant no more. (Online groups are only freed
        // after offline, so every freed non-root group was counted dying.)
        if self.dying.load(Relaxed) {
            for a in self.ancestors().skip(1) {
                a.nr_dying_descendants.fetch_sub(1, Relaxed);
            }
        }
        // `ctx` drops here: its base reference. If no charge holds the context,
        // it goes to the deferred queue.
    }
}

/// The approximate bytes of one group: the struct and what it owns on the
/// heap when it holds nothing (counter, path). Compare with
/// [`context_size`](crate::group::kmem_context::context_size).
pub fn group_size() -> usize {
    std::mem::size_of::<GroupInner>()
        + std::mem::size_of::<PageCounter>()
        + 2 * std::mem::size_of::<usize>() // the counter's Arc header
        + 2 * std::mem::size_of::<usize>() // the group's Arc header
}
