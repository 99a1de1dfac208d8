//! The program-facing handles: [`Hierarchy`] and [`Group`], and the group
//! lifecycle operations (create, remove, teardown).

use crate::error::{Error, Result};
use crate::group::{Common, GroupInner, Tree};
use crate::sync::Arc;
use crate::thread::task::EnterGuard;

/// A tree of groups with a root, independent of every other hierarchy.
///
/// Cloning is cheap and shares the tree. When the last `Hierarchy` and
/// [`Group`] handle of a tree is dropped, every remaining group is removed as
/// by `rmdir` (tasks still attached find themselves in a dying group, whose
/// charges go to the root).
#[derive(Clone)]
pub struct Hierarchy {
    shared: Arc<Shared>,
}

struct Shared {
    common: Arc<Common>,
    root: Arc<GroupInner>,
}

/// A handle on one group. Cheap to clone, `Send + Sync`. Holding one keeps a
/// removed group dying (counted in its ancestors' `nr_dying_descendants`)
/// until the handle is dropped; it does not keep the group online.
#[derive(Clone)]
pub struct Group {
    pub(crate) inner: Arc<GroupInner>,
    hierarchy: Hierarchy,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("path", &self.inner.path)
            .field("removed", &self.inner.is_dying())
            .finish()
    }
}

impl std::fmt::Debug for Hierarchy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hierarchy")
            .field("id", &self.shared.common.id)
            .finish()
    }
}

impl Default for Hierarchy {
    fn default() -> Self {
        Hierarchy::new()
    }
}

impl Hierarchy {
    /// A new hierarchy holding only its root group.
    pub fn new() -> Hierarchy {
        let _internal = crate::reentrancy::Internal::enter();
        // The layers below call up through hooks, installed by the front end.
        crate::accounting::charge::register_reclaim(crate::reclaim::reclaim);
        let common = Common::new();
        let root = GroupInner::new_root(common.clone());
        common.tree.lock().groups.insert("/".into(), root.clone());
        #[cfg(not(loom))]
        {
            // fork(): the child resets what other threads held (DESIGN §8).
            use crate::lifecycle::{on_child, Child};
            on_child(
                Child::ChargeStocks,
                crate::accounting::charge_stock::after_fork,
            );
            on_child(Child::Deferred, crate::group::deferred::after_fork);
            on_child(Child::Tasks, crate::thread::task::after_fork);
            on_child(Child::Futures, crate::thread::future::after_fork);
            crate::group::deferred::register(&common);
        }
        Hierarchy {
            shared: Arc::new(Shared { common, root }),
        }
    }

    pub(crate) fn common(&self) -> &Arc<Common> {
        &self.shared.common
    }

    /// The root group: not charged, no limits.
    pub fn root(&self) -> Group {
        self.group(self.shared.root.clone())
    }

    fn group(&self, inner: Arc<GroupInner>) -> Group {
        Group {
            inner,
            hierarchy: self.clone(),
        }
    }

    /// Create the group `path` (`mkdir`). Its parent must exist.
    ///
    /// ```
    /// let h = memcg::Hierarchy::new();
    /// h.create("/tenants").unwrap();
    /// let a = h.create("/tenants/a").unwrap();
    /// assert_eq!(a.path(), "/tenants/a");
    /// assert_eq!(h.create("/tenants/a").unwrap_err().kind(), memcg::ErrorKind::Exists);
    /// ```
    pub fn create(&self, path: &str) -> Result<Group> {
        let _internal = crate::reentrancy::Internal::enter();
        let (parent_path, _name) = split_path(path)?;
        #[cfg(not(loom))]
        crate::group::deferred::ensure_worker();
        self.run_deferred();
        let mut tree = self.common().tree.lock();
        if tree.groups.contains_key(path) {
            return Err(Error::Exists(path.into()));
        }
        let parent = tree
            .groups
            .get(parent_path)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("{parent_path} (the parent of {path})")))?;
        let id = crate::group::alloc_id();
        let inner = GroupInner::new_child(&parent, path.to_string(), id);
        crate::group::kill::inherit(&parent, &inner);
        tree.groups.insert(path.to_string(), inner.clone());
        drop(tree);
        Ok(self.group(inner))
    }

    /// The online group `path`.
    pub fn get(&self, path: &str) -> Result<Group> {
        let _internal = crate::reentrancy::Internal::enter();
        if path != "/" {
            split_path(path)?;
        }
        let inner = self.common().tree.lock().groups.get(path).cloned();
        inner
            .map(|g| self.group(g))
            .ok_or_else(|| Error::NotFound(path.into()))
    }

    /// Remove the group `path` (`rmdir`): busy while it has children or
    /// tasks. Its kmem contexts are reparented (one pointer each, no walk over
    /// objects: S4, S8) and its user pages walked to the parent (S7). The
    /// group is freed once no handle to it remains (S1).
    pub fn remove(&self, path: &str) -> Result<()> {
        let _internal = crate::reentrancy::Internal::enter();
        if path == "/" {
            return Err(Error::Invalid("the root group cannot be removed".into()));
        }
        split_path(path)?;
        let mut tree = self.common().tree.lock();
        let group = tree
            .groups
            .get(path)
            .cloned()
            .ok_or_else(|| Error::NotFound(path.into()))?;
        if crate::accounting::current::is_default(&group) {
            return Err(Error::DefaultGroup(path.into()));
        }
        let children = tree.children(path).count();
        let tasks = group.tasks.lock().len();
        if children > 0 || tasks > 0 {
            return Err(Error::Busy {
                path: path.into(),
                children,
                tasks,
            });
        }
        offline(self.common(), &mut tree, &group);
        drop(tree);
        // Every stock caching the removed group's context returns its bytes
        // and lets go of it, idle threads' included (DESIGN.md §8).
        let ctx = group.ctx.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        crate::accounting::charge_stock::drain_all(self.common().id);
        crate::alloc::slab::heap::drain_all(self.common().id, ctx);
        drop(group);
        self.run_deferred();
        Ok(())
    }

    /// Read the interface file `file` of group `path`.
    pub fn read(&self, path: &str, file: &str) -> Result<String> {
        self.get(path)?.read(file)
    }

    /// Write `value` to the interface file `file` of group `path`.
    pub fn write(&self, path: &str, file: &str, value: &str) -> Result<()> {
        self.get(path)?.write(file, value)
    }

    /// Drain every thread's charge stock and object stock held for this
    /// hierarchy, idle threads' included (the kernel's `drain_all_stock`),
    /// and run deferred destruction. After it, for every live group
    /// `memory.current == anon + file + kernel`, and `memory.current` and
    /// `slab` are exact for every thread that did not allocate or free
    /// meanwhile; a thread that is busy allocating while this drains settles
    /// the bytes it used from its drained stock at its next slow path.
    pub fn quiesce(&self) {
        let _internal = crate::reentrancy::Internal::enter();
        #[cfg(not(loom))]
        crate::group::deferred::ensure_worker();
        crate::alloc::slab::heap::drain_local();
        crate::accounting::charge::drain_all_stocks(self.common().id);
        self.run_deferred();
    }

    fn run_deferred(&self) {
        Common::run_deferred(self.common());
    }

    /// Register a shrinker, called for each group of a subtree under reclaim.
    pub fn register_shrinker(&self, shrinker: Arc<dyn crate::group::shrinker::Shrinker>) {
        let _internal = crate::reentrancy::Internal::enter();
        self.common().shrinkers.lock().push(shrinker);
    }

    /// kmem contexts of this hierarchy not yet destroyed: one per online
    /// group, plus those of removed groups whose charges are still alive.
    pub fn live_contexts(&self) -> usize {
        self.common()
            .contexts_live
            .load(crate::sync::Ordering::Relaxed)
    }

    /// Slabs the last removal looked at: its empty and partial slabs, never
    /// the full ones, so the work does not grow with live objects (S8).
    pub fn last_removal_slabs(&self) -> usize {
        self.common()
            .last_removal_slabs
            .load(crate::sync::Ordering::Relaxed)
    }

    /// Child slab caches of this hierarchy not yet destroyed: those of online
    /// groups, and dead ones that still hold objects (S6).
    pub fn live_caches(&self) -> usize {
        self.common()
            .caches_live
            .load(crate::sync::Ordering::Relaxed)
    }

    /// What removed groups leave behind now (S3): the contexts and dead
    /// caches that outlive their groups, and the bytes they pin.
    pub fn leftovers(&self) -> Leftovers {
        let _internal = crate::reentrancy::Internal::enter();
        use crate::sync::Ordering::Relaxed;
        let c = self.common();
        let online = c.tree.lock().groups.len() - 1; // the root has no context
        let dead_contexts = c.contexts_live.load(Relaxed).saturating_sub(online);
        let dead_caches = c.dead_caches.load(Relaxed);
        Leftovers {
            dying_groups: self.shared.root.nr_dying_descendants.load(Relaxed),
            dead_contexts,
            dead_caches,
            dead_cache_slab_bytes: c.dead_cache_pages.load(Relaxed) * crate::PAGE_SIZE,
            pinned_bytes: dead_contexts * crate::group::kmem_context::context_size()
                + dead_caches * crate::alloc::slab::cache_size(),
        }
    }

    /// Make `group` the default group (`None` or the root: the root again).
    /// Threads never attached to a group — those started by
    /// `std::thread::spawn` in libraries you do not control, and what they
    /// spawn — charge the default group (S12). Threads already running
    /// follow a change at their next allocation slow path (a new slab or a
    /// large block), or at once when they call into memcg.
    ///
    /// One allocation charges one group, so the default is process-wide:
    /// setting one here while another hierarchy has one is `invalid`.
    /// Removing the default group is `busy`.
    ///
    /// ```
    /// let h = memcg::Hierarchy::new();
    /// let pool = h.create("/pool").unwrap();
    /// h.set_default_group(Some(&pool)).unwrap();
    /// let charged = std::thread::spawn({
    ///     let h = h.clone();
    ///     move || h.current_group().path()
    /// });
    /// assert_eq!(charged.join().unwrap(), "/pool");
    /// assert_eq!(h.remove("/pool").unwrap_err().kind(), memcg::ErrorKind::Busy);
    /// h.set_default_group(None).unwrap();
    /// h.remove("/pool").unwrap();
    /// ```
    pub fn set_default_group(&self, group: Option<&Group>) -> Result<()> {
        let _internal = crate::reentrancy::Internal::enter();
        let target = group.filter(|g| !g.inner.is_root());
        if let Some(g) = target {
            if !Arc::ptr_eq(&g.inner.common, self.common()) {
                return Err(Error::Invalid(format!(
                    "{} belongs to another hierarchy; pass a group of this one",
                    g.inner.path
                )));
            }
        }
        // Checked and set under the tree lock, so that a removal (which
        // checks for the default under the same lock) cannot slip between.
        let tree = self.common().tree.lock();
        if let Some(g) = target {
            if g.inner.is_dying() {
                return Err(Error::NotFound(format!(
                    "{} (removed; pick a live group)",
                    g.inner.path
                )));
            }
        }
        let mine = self.common().clone();
        let old = crate::accounting::current::set_default(
            target.map(|g| g.inner.clone()),
            |old| match old {
                Some(o) if !Arc::ptr_eq(&o.common, &mine) => Err(Error::Invalid(format!(
                    "another hierarchy's group {} is the default group; clear it there first",
                    o.path
                ))),
                _ => Ok(()),
            },
        )?;
        drop(tree);
        drop(old);
        crate::accounting::current::refresh_default();
        Ok(())
    }

    /// The default group of this hierarchy (the root unless set).
    pub fn default_group(&self) -> Group {
        let _internal = crate::reentrancy::Internal::enter();
        match crate::accounting::current::default_group() {
            Some(g) if Arc::ptr_eq(&g.common, self.common()) => self.group(g),
            _ => self.root(),
        }
    }

    /// The group of this hierarchy the calling thread charges now: the one
    /// it is attached to, the default group if it never was, or the root
    /// (attached elsewhere, or detached). A thread in a group removed
    /// meanwhile charges where that group's kmem context bills now.
    pub fn current_group(&self) -> Group {
        let _internal = crate::reentrancy::Internal::enter();
        crate::accounting::current::refresh_default();
        let g = crate::accounting::current::current_group()
            .filter(|g| Arc::ptr_eq(&g.common, self.common()))
            .map(|g| GroupInner::live_owner(&g));
        match g {
            Some(g) => self.group(g),
            None => self.root(),
        }
    }

    /// Every online group of this hierarchy, the root first, then in path
    /// order (a parent before its children).
    pub fn groups(&self) -> Vec<Group> {
        let _internal = crate::reentrancy::Internal::enter();
        let all: Vec<_> = self.common().tree.lock().groups.values().cloned().collect();
        all.into_iter().map(|g| self.group(g)).collect()
    }

    /// The paths of every online group, as [`groups`](Self::groups) orders them.
    pub fn paths(&self) -> Vec<String> {
        let _internal = crate::reentrancy::Internal::enter();
        self.common().tree.lock().groups.keys().cloned().collect()
    }

    /// kmem contexts of this hierarchy destroyed so far (by deferred work).
    pub fn destroyed_contexts(&self) -> usize {
        self.common()
            .contexts_destroyed
            .load(crate::sync::Ordering::Relaxed)
    }
}

/// What removed groups leave behind, from [`Hierarchy::leftovers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Leftovers {
    /// Removed groups still held by a handle (`nr_dying_descendants` of the root).
    pub dying_groups: usize,
    /// kmem contexts of removed groups, alive while their charges are.
    pub dead_contexts: usize,
    /// Dead slab caches, alive while they hold objects.
    pub dead_caches: usize,
    /// Slab bytes held by dead caches (charged to live ancestors).
    pub dead_cache_slab_bytes: usize,
    /// Bytes of bookkeeping pinned by removed groups: their contexts and dead
    /// caches' structs (not the slabs, which hold live objects).
    pub pinned_bytes: usize,
}

/// Take `group` offline: the kernel's `css_offline` with the seed's
/// reparenting. Tree lock held.
fn offline(common: &Common, tree: &mut Tree, group: &Arc<GroupInner>) {
    let parent = group.parent.clone().expect("the root is never offlined");
    tree.groups.remove(&group.path);
    group.mark_dying();
    let slabs = crate::alloc::slab::kill_caches(group);
    common
        .last_removal_slabs
        .store(slabs, crate::sync::Ordering::Relaxed);
    {
        let _ctx_lock = common.ctx_lock.lock();
        GroupInner::reparent_contexts(group, &parent);
    }
    crate::reclaim::user::reparent_pages(group, &parent);
    crate::group::kill::on_removal(group, &parent);
    crate::group::free_id(group.id);
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _internal = crate::reentrancy::Internal::enter();
        // Teardown, children before parents: reverse path order.
        let mut tree = self.common.tree.lock();
        let groups: Vec<_> = tree
            .groups
            .iter()
            .rev()
            .filter(|(p, _)| p.as_str() != "/")
            .map(|(_, g)| g.clone())
            .collect();
        for g in &groups {
            offline(&self.common, &mut tree, g);
        }
        tree.groups.clear();
        drop(tree);
        // The default group goes with its hierarchy.
        let mine = self.common.clone();
        let _ = crate::accounting::current::set_default(None, |old| match old {
            Some(o) if Arc::ptr_eq(&o.common, &mine) => Ok(()),
            _ => Err(()),
        });
        drop(groups);
        Common::run_deferred(&self.common);
    }
}

impl Group {
    /// The group's path.
    pub fn path(&self) -> String {
        let _internal = crate::reentrancy::Internal::enter();
        self.inner.path.clone()
    }

    /// The group's kmemcg id (recycled after removal, S10).
    pub fn id(&self) -> usize {
        self.inner.id
    }

    /// Whether the group was removed.
    pub fn is_removed(&self) -> bool {
        self.inner.is_dying()
    }

    /// The hierarchy the group belongs to.
    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hierarchy
    }

    /// Attach the calling thread to this group until the guard is dropped,
    /// which moves it back where it was. Guards nest.
    pub fn enter(&self) -> Result<EnterGuard> {
        let _internal = crate::reentrancy::Internal::enter();
        let previous = crate::thread::task::place();
        crate::thread::task::switch(self.target())?;
        Ok(EnterGuard::new(previous))
    }

    /// Move the calling thread into this group for good (until it moves
    /// again or exits; [`detach`](crate::detach) moves it to the root).
    pub fn attach(&self) -> Result<()> {
        let _internal = crate::reentrancy::Internal::enter();
        crate::thread::task::switch(self.target()).map(drop)
    }

    fn target(&self) -> Option<&Arc<GroupInner>> {
        (!self.inner.is_root()).then_some(&self.inner)
    }

    /// The group's online children, in path order.
    pub fn children(&self) -> Vec<Group> {
        let _internal = crate::reentrancy::Internal::enter();
        let tree = self.inner.common.tree.lock();
        let children: Vec<_> = tree.children(&self.inner.path).cloned().collect();
        drop(tree);
        children
            .into_iter()
            .map(|g| self.hierarchy.group(g))
            .collect()
    }

    /// The group's `memory.events` counters (this group and its descendants).
    pub fn events(&self) -> crate::MemoryEvents {
        crate::MemoryEvents::read(&self.inner, false)
    }

    /// The group's `memory.events.local` counters (this group only).
    pub fn local_events(&self) -> crate::MemoryEvents {
        crate::MemoryEvents::read(&self.inner, true)
    }

    /// Subscribe to changes of the group's `memory.events` (see
    /// [`EventWatch`](crate::EventWatch)).
    pub fn watch_events(&self) -> crate::EventWatch {
        crate::EventWatch::new(self.inner.clone())
    }

    /// The group's parent (`None` for the root).
    pub fn parent(&self) -> Option<Group> {
        self.inner.parent.clone().map(|p| self.hierarchy.group(p))
    }

    /// Read an interface file (DESIGN.md §4), e.g. `memory.current`.
    pub fn read(&self, file: &str) -> Result<String> {
        let _internal = crate::reentrancy::Internal::enter();
        crate::interface::files::read(&self.inner, file)
    }

    /// Write an interface file, e.g. `memory.max`.
    pub fn write(&self, file: &str, value: &str) -> Result<()> {
        let _internal = crate::reentrancy::Internal::enter();
        crate::interface::files::write(&self.inner, file, value)
    }

    /// An allocator charging this group from any thread, failing at its
    /// limit: `allocator_api2::vec::Vec::new_in(group.allocator())`.
    pub fn allocator(&self) -> crate::GroupAllocator {
        crate::GroupAllocator::new(self.clone())
    }

    /// A counted reference to the group's kmem context (`None` for the root).
    pub(crate) fn context(&self) -> Option<crate::group::kmem_context::CtxRef> {
        self.inner.ctx.clone()
    }

    /// How many kmem contexts of removed groups this group bills now: its
    /// removed descendants whose kmem is still alive (the seed's `ctx->list`).
    pub fn reparented_contexts(&self) -> usize {
        self.inner.reparented_contexts()
    }
}

/// Check `path` and split it into its parent's path and its name.
fn split_path(path: &str) -> Result<(&str, &str)> {
    if path == "/" {
        return Err(Error::Exists("/ (the root)".into()));
    }
    let invalid = |why: &str| Error::Invalid(format!("bad path {path:?}: {why}"));
    if !path.starts_with('/') {
        return Err(invalid("paths are absolute, like /a/b"));
    }
    let (parent, name) = path.rsplit_once('/').expect("starts with /");
    for component in path[1..].split('/') {
        if component.is_empty() {
            return Err(invalid("empty component"));
        }
        if component == "." || component == ".." {
            return Err(invalid("'.' and '..' are not group names"));
        }
        if !component
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(invalid("group names use only A-Z a-z 0-9 _ . -"));
        }
    }
    Ok((if parent.is_empty() { "/" } else { parent }, name))
}

impl crate::KmemPages {
    /// Allocate `bytes` rounded up to whole pages, charged to `group`
    /// whatever thread calls (the kernel's remote charging with
    /// `set_active_memcg`). If `group` was removed, the charge goes to the
    /// live ancestor its kmem context now bills (S5).
    pub fn alloc_for(group: &Group, bytes: usize) -> Result<crate::KmemPages> {
        crate::KmemPages::alloc_charged(bytes, group.context())
    }
}

/// The process-wide hierarchy that [`MemcgAlloc`](crate::MemcgAlloc) charges: a thread in one
/// of its groups (by [`Group::enter`](crate::Group::enter) or
/// [`attach`](crate::Group::attach)) is charged there.
pub fn global() -> &'static crate::Hierarchy {
    static GLOBAL: std::sync::OnceLock<crate::Hierarchy> = std::sync::OnceLock::new();
    GLOBAL.get_or_init(|| {
        let _internal = crate::reentrancy::Internal::enter();
        crate::Hierarchy::new()
    })
}
