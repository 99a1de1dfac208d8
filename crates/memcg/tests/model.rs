//! DESIGN.md §8: random operation sequences against a reference model, with
//! every counter compared after every step.
//!
//! The model is a tree of group *instances* (a path removed and created again
//! is a new instance) and a list of objects, each billed to one live group.
//! Usage, `memory.stat` and `cgroup.stat` are computed from that list; the
//! model never keeps a counter that could drift. What it encodes:
//!
//! - removal bills a group's objects to its parent: kmem by moving the
//!   context (S4), user pages by walking them (S7); either way an object is
//!   billed to the nearest live ancestor of the group it was charged in, and
//!   ancestors' totals do not change;
//! - a removed group lives on (dying) only while a handle, or a dying
//!   descendant, holds it (S1); a kmem context lives while its group does or
//!   a kmem page or slab object charged through it does (S3);
//! - a charge after removal through a retained handle lands on the nearest
//!   live ancestor (S5); threads in the root charge nothing (S10);
//! - limits, written from DESIGN.md §4 (not from charge.rs or files.rs; the
//!   kernel's behaviour where §4 is silent, as §1 asks):
//!   - a charge is held to the `memory.max` of its group and of every
//!     ancestor; the limit it hits is the nearest one it would exceed;
//!   - a charge that hits a limit counts a `max` event on the group whose
//!     limit it hit (and, in `memory.events`, on its ancestors), never on the
//!     descendant that charged; that group's subtree is reclaimed, and the
//!     charge is tried again; if reclaim frees nothing more and the charge
//!     still does not fit, it failed after reclaim: an `oom` event on that
//!     group, and the charge fails with `limit`. Each reclaim pass asks for
//!     the charge's size (§4 is silent; the kernel's
//!     `try_to_free_mem_cgroup_pages(memcg, nr_pages)`). One charge counts
//!     one `max` per group whose limit it hit ("a charge hit a
//!     `memory.max`");
//!   - reclaim takes file pages in LRU order, oldest first across the
//!     subtree; anon pages and plain kmem are not reclaimable, nor are the
//!     objects of the (non-reclaimable) caches used here, and shared slabs
//!     charge a group no slab pages to give back (S11);
//!   - a charge that fits and leaves groups above their `memory.high` counts
//!     a `high` event on each and reclaims its subtree back toward it,
//!     nearest group first (§4 is silent on the order; the kernel's
//!     `reclaim_high` walks up from the charging group); the page being
//!     charged is not on an LRU until its charge returns;
//!   - a `memory.max` write sets the limit, then reclaims down to it, and if
//!     that fails counts an `oom` event (no `max`) and still succeeds; a
//!     `memory.high` write reclaims down to it as well (§4 is silent; the
//!     kernel's `memory_high_write` does), counting nothing;
//!   - `memory.reclaim` of N bytes reclaims N rounded down to pages from the
//!     subtree, or fails with `again` (having reclaimed what it could).
//!
//! Slab objects (S11) come from shared caches of a few sizes. Each is charged
//! in bytes, its slot plus its object-vector entry, through the context of
//! the group it was allocated in, and is freed on any thread. The model keeps
//! their bytes, never a page count: the page counter sees whole pages only
//! and the sub-page remainder stays with the context, so once every stock is
//! drained a context whose live objects take `b` bytes has exactly
//! `ceil(b / PAGE)` pages charged (what is charged is what its objects use
//! plus a remainder under a page; nothing else can hold bytes of it). From
//! that, for every live group: `slab` is the bytes of the live objects billed
//! to its subtree, `kmem` its kmem pages, `kernel` those pages plus
//! `ceil(b / PAGE)` per context billing the subtree, and `memory.current`
//! includes the same pages, all exact. The §3 consistency rule is checked as
//! written as well (`kernel >= kmem + slab`, and the excess is less than a
//! page per context billing the group, counted exactly: the contexts of the
//! subtree's live groups, of its removed groups still held, and of removed
//! groups whose objects it now bills); the exact check implies it, and it
//! stays as the contract's own statement.
//!
//! Slab allocations run under limits too, modelled exactly rather than kept
//! away from limited groups, because exact usage is what keeps every other
//! check exact: `memory.current` feeds the limit arithmetic, and a model that
//! knew it only within a bound could no longer predict `max` and `oom`
//! events, reclaim, or a limit write's outcome. With every stock empty at
//! the start of a step and only allocations in it, an object charges
//! exactly the whole pages its context's live bytes newly need,
//! `ceil((b + size) / PAGE) - ceil(b / PAGE)` (0 or 1; the stock and the
//! remainder cover the rest, as the kernel's `obj_cgroup_charge`), as one
//! page charge with the limit and high handling above. An allocation of N
//! objects stops at the first failure and keeps the objects made so far.
//!
//! Charge stocks need no modelling, and the model stays exact: every step
//! starts after every worker drained its object stock (slab objects fill
//! one, and under `MemcgAlloc` whatever the worker allocates in a group)
//! and a quiesce, so every stock is empty; a charge that does not fit as a batch of
//! `CHARGE_BATCH` is retried with its exact size before any event is
//! counted, and a batch that fits but would leave a group above its
//! `memory.high` gives its slack back before the high check. So the usage a
//! limit and a high check see is exactly the model's. That is why every
//! operation other than a slab allocation makes at most one charge: a second
//! charge before the quiesce could find the first one's slack still in the
//! stock, fail its exact-size try at a limit that the drained usage would
//! meet, and count a `max` event before draining (as the kernel's
//! `try_charge` does), which no exact model of drained usage predicts. A
//! slab allocation may make several charges, but all of one page, through
//! one context, on one thread: once a batch fits (below every `memory.max`
//! and `memory.high`, or its slack is given back), the next charges take
//! their page from its slack without looking at a limit, and the drained
//! usage the model checks them against is below the batch's, so the model
//! sees no limit or high crossed there either. Within a step, stocks are in
//! play: the allocating thread's object stock serves a multi-object
//! allocation, a thread freeing another group's object adopts its context,
//! and frees of several objects return bytes through the stock. What the
//! model leaves out: `memory.peak` (the batch slack raises it; only
//! `peak >= current` is checked), and writes through the handle of a
//! removed group (see the ignored test at the end).
//!
//! Charges run on a pool of long-lived worker threads, so they are charged
//! where a real thread's group says; frees run on a worker or the test
//! thread, whichever the sequence picks.

use memcg::{
    Error, ErrorKind, Group, Hierarchy, KmemPages, PageKind, SlabCache, SlabObject, UserPage,
    PAGE_SIZE,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use std::collections::BTreeSet;
use std::sync::mpsc;
use std::thread;

/// Spawn a test thread. Under `MemcgAlloc` (tests/under_memcg_alloc.rs)
/// whatever it allocates while in a group is charged there, so the
/// bookkeeping of a charged section (result vectors) is allocated before it
/// enters the group, for the exact numbers below to hold there too.
use std::thread::spawn;

const PAGE: u64 = PAGE_SIZE as u64;
const WORKERS: usize = 3;
const MAX_DEPTH: usize = 3;
/// Object sizes of the shared slab caches (S11).
const SLAB_SIZES: [usize; 3] = [16, 64, 200];
/// Bytes of an object's entry in its slab's object vector: its context's
/// address. S11 charges it with the object.
const ENTRY_BYTES: usize = std::mem::size_of::<usize>();
/// Group names; the last is not a valid name.
const NAMES: [&str; 4] = ["a", "b", "c", "no good"];
const HIGH: usize = 0;
const MAX: usize = 1;
const OOM: usize = 2;
const READ_FILES: [&str; 11] = [
    "memory.current",
    "memory.stat",
    "cgroup.stat",
    "cgroup.procs",
    "memory.max",
    "memory.high",
    "memory.peak",
    "memory.events",
    "memory.events.local",
    "memory.reclaim",
    "memory.bogus",
];

// ---------------------------------------------------------------------------
// Operations

/// Which group an operation targets. Indices pick from lists the model keeps,
/// so every generated sequence is meaningful whatever ran before.
#[derive(Debug, Clone)]
enum Target {
    Root,
    /// A live group other than the root (the root when there is none).
    Live(Index),
    /// The group a worker is in (as `Live` when that is the root).
    Worker(usize, Index),
    /// Any path ever created, or one never created: may be not-found.
    Ever(Index),
    /// A retained handle, perhaps of a removed group (a live one if none).
    Handle(Index),
}

#[derive(Debug, Clone)]
enum Limit {
    Max,
    Bytes(u64),
    Kib(u64),
    /// The group's usage plus this many pages (at least 0) plus `rem` bytes,
    /// so that limits land where they bite.
    Near {
        pages: i64,
        rem: u64,
    },
}

impl Limit {
    /// The text to write and the limit in pages it sets (rounded down;
    /// `None`: no limit), for a group using `usage` pages.
    fn resolve(&self, usage: usize) -> (String, Option<usize>) {
        match *self {
            Limit::Max => ("max".into(), None),
            Limit::Bytes(b) => (b.to_string(), Some((b / PAGE) as usize)),
            Limit::Kib(k) => (format!("{k}K"), Some((k * 1024 / PAGE) as usize)),
            Limit::Near { pages, rem } => {
                let p = (usage as i64 + pages).max(0) as u64;
                ((p * PAGE + rem).to_string(), Some(p as usize))
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// mkdir of a child named `NAMES[name]` under a live group shallower than
    /// `MAX_DEPTH`, keeping the returned handle or not.
    Create {
        parent: Index,
        name: usize,
        keep: bool,
    },
    /// rmdir of a live group, or of any path ever created (or one never).
    Remove {
        path: Target,
    },
    DropHandle {
        handle: Index,
    },
    /// Move a worker thread into a group (`Group::attach`).
    Attach {
        worker: usize,
        to: Target,
    },
    /// A job ends: a worker (one attached to a group, if any is) goes back
    /// to the root (`memcg::detach`), then the group it was in is removed,
    /// while what it charged lives on.
    Retire {
        worker: Index,
    },
    /// `KmemPages::alloc(bytes)` on a worker: charged to the worker's group.
    Kmem {
        worker: usize,
        bytes: usize,
    },
    /// `KmemPages::alloc_for(group, bytes)` on a worker or (`None`) the test thread.
    KmemFor {
        by: Option<usize>,
        group: Target,
        bytes: usize,
    },
    /// `UserPage::charge` on a worker.
    User {
        worker: usize,
        file: bool,
    },
    /// `SlabCache::alloc` of `count` objects of `SLAB_SIZES[cache]` bytes on
    /// a worker, until one fails: charged by the byte to its group (S11).
    /// The worker is one attached to a group, if any is.
    Slab {
        worker: Index,
        cache: usize,
        count: usize,
    },
    /// Drop `count` objects (fewer at the end of the list), from the one
    /// `obj` picks on, on a worker or (`None`) the test thread.
    Free {
        obj: Index,
        count: usize,
        by: Option<usize>,
    },
    SetLimit {
        max: bool,
        at: Target,
        value: Limit,
    },
    Reclaim {
        at: Target,
        bytes: u64,
    },
    Read {
        at: Target,
        file: usize,
    },
}

fn actor() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![Just(None), (0..WORKERS).prop_map(Some)]
}

fn any_target() -> impl Strategy<Value = Target> {
    prop_oneof![
        1 => Just(Target::Root),
        6 => any::<Index>().prop_map(Target::Live),
        1 => any::<Index>().prop_map(Target::Ever),
        2 => any::<Index>().prop_map(Target::Handle),
    ]
}

fn path_target() -> impl Strategy<Value = Target> {
    prop_oneof![
        1 => Just(Target::Root),
        6 => any::<Index>().prop_map(Target::Live),
        4 => (0..WORKERS, any::<Index>()).prop_map(|(w, x)| Target::Worker(w, x)),
        2 => any::<Index>().prop_map(Target::Ever),
    ]
}

fn limit() -> impl Strategy<Value = Limit> {
    prop_oneof![
        2 => Just(Limit::Max),
        2 => (0..=24 * PAGE).prop_map(Limit::Bytes),
        1 => (0..=96u64).prop_map(Limit::Kib),
        6 => (-3..=5i64, prop_oneof![Just(0), 1..PAGE])
            .prop_map(|(pages, rem)| Limit::Near { pages, rem }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<Index>(), prop_oneof![12 => 0..3usize, 1 => Just(3usize)], any::<bool>())
            .prop_map(|(parent, name, keep)| Op::Create { parent, name, keep }),
        3 => prop_oneof![
            1 => Just(Target::Root),
            8 => any::<Index>().prop_map(Target::Live),
            2 => any::<Index>().prop_map(Target::Ever),
        ].prop_map(|path| Op::Remove { path }),
        1 => any::<Index>().prop_map(|handle| Op::DropHandle { handle }),
        5 => (0..WORKERS, any_target()).prop_map(|(worker, to)| Op::Attach { worker, to }),
        2 => any::<Index>().prop_map(|worker| Op::Retire { worker }),
        3 => (0..WORKERS, 1..=5 * PAGE_SIZE).prop_map(|(worker, bytes)| Op::Kmem { worker, bytes }),
        2 => (actor(), any_target(), 1..=5 * PAGE_SIZE)
            .prop_map(|(by, group, bytes)| Op::KmemFor { by, group, bytes }),
        6 => (0..WORKERS, prop::bool::weighted(0.7))
            .prop_map(|(worker, file)| Op::User { worker, file }),
        5 => (any::<Index>(), 0..SLAB_SIZES.len(), prop_oneof![1..=8usize, 9..=64usize])
            .prop_map(|(worker, cache, count)| Op::Slab { worker, cache, count }),
        4 => (any::<Index>(), prop_oneof![3 => Just(1usize), 1 => 2..=24usize], actor())
            .prop_map(|(obj, count, by)| Op::Free { obj, count, by }),
        3 => (prop::bool::weighted(0.7), path_target(), limit())
            .prop_map(|(max, at, value)| Op::SetLimit { max, at, value }),
        1 => (path_target(), 0..=6 * PAGE).prop_map(|(at, bytes)| Op::Reclaim { at, bytes }),
        1 => (path_target(), 0..READ_FILES.len()).prop_map(|(at, file)| Op::Read { at, file }),
    ]
}

// ---------------------------------------------------------------------------
// The reference model

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Kmem,
    Anon,
    File,
    /// An object of a shared slab cache (S11).
    Slab,
}

#[derive(Debug)]
struct MGroup {
    path: String,
    /// The instance this one was created under; `None` for the root.
    parent: Option<usize>,
    live: bool,
    max: Option<usize>,
    high: Option<usize>,
    /// Events by `HIGH`, `MAX`, `OOM`: this group only, and hierarchical.
    local: [u64; 3],
    hier: [u64; 3],
}

#[derive(Debug)]
struct MObj {
    kind: Kind,
    /// Pages charged for it alone; 0 for a slab object, whose bytes are
    /// charged with the rest of its context's (see [`Model::slab_pages`]).
    pages: usize,
    /// A slab object's bytes: its slot and its object-vector entry.
    bytes: usize,
    /// The group billed now; `None` when never accounted (made in the root).
    owner: Option<usize>,
    /// kmem and slab: the group whose context it was charged through.
    ctx: Option<usize>,
    /// File pages: the LRU age, once on the LRU.
    seq: Option<u64>,
    reclaimed: bool,
}

#[derive(Debug)]
struct Model {
    /// Every instance ever created; 0 is the root.
    groups: Vec<MGroup>,
    /// Parallel to the real objects.
    objs: Vec<MObj>,
    /// The group each worker is attached to (0: the root).
    workers: [usize; WORKERS],
    /// The instance of each retained handle, parallel to the real handles.
    handles: Vec<usize>,
    clock: u64,
}

/// What an operation must return.
#[derive(Debug)]
enum Want {
    Ok,
    Kind(ErrorKind),
    Exact(Error),
}

impl Model {
    fn new() -> Model {
        Model {
            groups: vec![MGroup {
                path: "/".into(),
                parent: None,
                live: true,
                max: None,
                high: None,
                local: [0; 3],
                hier: [0; 3],
            }],
            objs: Vec::new(),
            workers: [0; WORKERS],
            handles: Vec::new(),
            clock: 0,
        }
    }

    /// `i` and its ancestors, nearest first.
    fn chain(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(Some(i), |&g| self.groups[g].parent)
    }

    fn is_under(&self, i: usize, ancestor: usize) -> bool {
        self.chain(i).any(|g| g == ancestor)
    }

    fn depth(&self, i: usize) -> usize {
        self.chain(i).count() - 1
    }

    fn live_path(&self, path: &str) -> Option<usize> {
        self.groups.iter().position(|g| g.live && g.path == path)
    }

    fn live_sorted(&self) -> Vec<usize> {
        let mut live: Vec<usize> = (0..self.groups.len())
            .filter(|&i| self.groups[i].live)
            .collect();
        live.sort_by(|&a, &b| self.groups[a].path.cmp(&self.groups[b].path));
        live
    }

    fn ever_paths(&self) -> Vec<String> {
        let mut paths: BTreeSet<String> = self.groups.iter().map(|g| g.path.clone()).collect();
        paths.insert("/never".into());
        paths.into_iter().collect()
    }

    fn nearest_live(&self, i: usize) -> usize {
        self.chain(i)
            .find(|&g| self.groups[g].live)
            .expect("the root is live")
    }

    /// Pages of `kind` (all kinds: `None`) billed to `a` and its descendants,
    /// slab objects aside (see [`slab_pages`](Self::slab_pages)).
    fn billed(&self, a: usize, kind: Option<Kind>) -> usize {
        self.objs
            .iter()
            .filter(|o| !o.reclaimed && kind.is_none_or(|k| o.kind == k))
            .filter(|o| o.owner.is_some_and(|w| self.is_under(w, a)))
            .map(|o| o.pages)
            .sum()
    }

    /// Bytes of live slab objects charged through each context, by the
    /// instance of the group it belongs to.
    fn ctx_bytes(&self) -> Vec<usize> {
        let mut bytes = vec![0; self.groups.len()];
        for o in &self.objs {
            if let (Kind::Slab, Some(c)) = (o.kind, o.ctx) {
                bytes[c] += o.bytes;
            }
        }
        bytes
    }

    /// S11, stocks drained: the pages charged for the slab objects billed to
    /// `a`'s subtree. A context charges whole pages for its objects' bytes
    /// and keeps a sub-page remainder, so `ceil(bytes / PAGE)` each.
    fn slab_pages(&self, a: usize) -> usize {
        self.ctx_bytes()
            .into_iter()
            .enumerate()
            .filter(|&(c, b)| b > 0 && self.is_under(self.nearest_live(c), a))
            .map(|(_, b)| b.div_ceil(PAGE_SIZE))
            .sum()
    }

    /// Bytes of the live slab objects billed to `a`'s subtree: `slab`.
    fn slab_bytes(&self, a: usize) -> usize {
        self.objs
            .iter()
            .filter(|o| o.kind == Kind::Slab && o.owner.is_some_and(|w| self.is_under(w, a)))
            .map(|o| o.bytes)
            .sum()
    }

    fn usage(&self, a: usize) -> usize {
        self.billed(a, None) + self.slab_pages(a)
    }

    fn event(&mut self, i: usize, e: usize) {
        self.groups[i].local[e] += 1;
        let chain: Vec<usize> = self.chain(i).collect();
        for g in chain {
            self.groups[g].hier[e] += 1;
        }
    }

    /// §4 reclaim of `g`'s subtree, up to `pages` pages: file pages in LRU
    /// order, oldest first across the subtree (a page's age is when its
    /// charge put it on an LRU; reparenting, S7, moves it, not its age).
    /// Nothing else here is reclaimable (see the module doc). Returns the
    /// pages freed.
    fn reclaim(&mut self, g: usize, pages: usize) -> usize {
        let mut freed = 0;
        while freed < pages {
            let oldest = (0..self.objs.len())
                .filter(|&k| {
                    let o = &self.objs[k];
                    o.kind == Kind::File
                        && !o.reclaimed
                        && o.seq.is_some()
                        && o.owner.is_some_and(|w| self.is_under(w, g))
                })
                .min_by_key(|&k| self.objs[k].seq);
            let Some(k) = oldest else { break };
            self.objs[k].reclaimed = true;
            freed += 1;
        }
        freed
    }

    /// §4: the group whose `memory.max` a charge of `pages` to `owner` hits:
    /// the nearest of `owner` and its ancestors that it would take above
    /// its limit.
    fn limit_hit(&self, owner: usize, pages: usize) -> Option<usize> {
        self.chain(owner).find(|&g| {
            self.groups[g]
                .max
                .is_some_and(|max| self.usage(g) + pages > max)
        })
    }

    /// A charge of `obj` to `owner` (stocks drained): on success the object
    /// is billed to `owner`; on failure, the group whose limit failed it.
    fn charge(&mut self, owner: usize, obj: MObj) -> Result<(), usize> {
        self.try_charge(owner, obj.pages)?;
        let user = obj.kind != Kind::Kmem;
        self.objs.push(MObj {
            owner: Some(owner),
            seq: None,
            ..obj
        });
        // A user page joins its LRU once its charge returns.
        self.over_high(owner);
        if user {
            self.objs.last_mut().expect("pushed").seq = Some(self.clock);
            self.clock += 1;
        }
        Ok(())
    }

    /// S11: allocate a slab object of `bytes` in `g` (the root: not
    /// accounted). Its context's live bytes grow by `bytes`; the page counter
    /// is charged the whole pages they newly need, as one charge (see the
    /// module doc), and the rest comes from the stock or the remainder. On
    /// failure: the group whose limit failed it, and the pages asked.
    fn charge_slab(&mut self, g: usize, bytes: usize) -> Result<(), (usize, usize)> {
        let accounted = g != 0;
        let mut pages = 0;
        if accounted {
            let had = self.ctx_bytes()[g];
            pages = (had + bytes).div_ceil(PAGE_SIZE) - had.div_ceil(PAGE_SIZE);
            if pages > 0 {
                self.try_charge(g, pages).map_err(|over| (over, pages))?;
            }
        }
        self.objs.push(MObj {
            kind: Kind::Slab,
            pages: 0,
            bytes,
            owner: accounted.then_some(g),
            ctx: accounted.then_some(g),
            seq: None,
            reclaimed: false,
        });
        if pages > 0 {
            self.over_high(g);
        }
        Ok(())
    }

    /// §4 `memory.max` for a charge of `pages` to `owner`: whether they fit
    /// (the caller then bills them), counting events and reclaiming on the
    /// way; on failure, the group whose limit the charge failed at.
    ///
    /// "`max`: a charge hit a `memory.max`"; "`oom`: a charge failed after
    /// reclaim"; both on the group whose limit was hit. Reclaim of that
    /// group's subtree, a pass of `pages` at a time, goes on while it frees
    /// something and the charge does not fit.
    fn try_charge(&mut self, owner: usize, pages: usize) -> Result<(), usize> {
        let mut hit = Vec::new();
        while let Some(over) = self.limit_hit(owner, pages) {
            if !hit.contains(&over) {
                hit.push(over);
                self.event(over, MAX);
            }
            if self.reclaim(over, pages) == 0 {
                self.event(over, OOM);
                return Err(over);
            }
        }
        Ok(())
    }

    /// §4 `memory.high`, after a charge to `owner` that fit: each group from
    /// `owner` up, nearest first, that is above its `memory.high` now counts
    /// a `high` event and has its subtree reclaimed back toward it, best
    /// effort.
    fn over_high(&mut self, owner: usize) {
        let chain: Vec<usize> = self.chain(owner).collect();
        for g in chain {
            let Some(high) = self.groups[g].high else {
                continue;
            };
            let usage = self.usage(g);
            if usage > high {
                self.event(g, HIGH);
                self.reclaim(g, usage - high);
            }
        }
    }

    /// §4, after `limit` was written to `g`'s `memory.max` (`is_max`) or
    /// `memory.high`: reclaim down to it; a `memory.max` that reclaim cannot
    /// reach counts `oom` (the write stands either way).
    fn limit_written(&mut self, g: usize, limit: Option<usize>, is_max: bool) {
        let Some(limit) = limit else { return };
        let usage = self.usage(g);
        if usage > limit {
            self.reclaim(g, usage - limit);
        }
        if is_max && self.usage(g) > limit {
            self.event(g, OOM);
        }
    }

    fn remove(&mut self, i: usize) {
        let parent = self.groups[i].parent;
        self.groups[i].live = false;
        for o in &mut self.objs {
            if o.owner == Some(i) {
                o.owner = parent;
            }
        }
    }

    /// Whether instance `i` is not yet freed: live, or removed but held by a
    /// handle or by a dying child (a child holds its parent).
    fn alive(&self, i: usize) -> bool {
        self.groups[i].live
            || self.handles.contains(&i)
            || (0..self.groups.len()).any(|c| self.groups[c].parent == Some(i) && self.alive(c))
    }

    fn live_descendants(&self, a: usize) -> usize {
        (0..self.groups.len())
            .filter(|&i| i != a && self.groups[i].live && self.is_under(i, a))
            .count()
    }

    fn dying_descendants(&self, a: usize) -> usize {
        (0..self.groups.len())
            .filter(|&i| i != a && !self.groups[i].live && self.alive(i) && self.is_under(i, a))
            .count()
    }

    /// S3: whether instance `i` has a kmem context: while it is live or
    /// held, or kmem pages or slab objects charged through it live (after a
    /// drain, a context without objects has no remainder either).
    fn has_context(&self, i: usize) -> bool {
        i != 0 && (self.alive(i) || self.objs.iter().any(|o| o.ctx == Some(i)))
    }

    /// S3: one context per live group, plus one per removed group that is
    /// still held or still has kmem charged through its context.
    fn contexts(&self) -> usize {
        (1..self.groups.len())
            .filter(|&i| self.has_context(i))
            .count()
    }

    /// §3 Consistency: the kmem contexts billing `a`'s subtree, those of its
    /// live groups and of the removed groups (held, or with objects) whose
    /// charges it bills now.
    fn contexts_billing(&self, a: usize) -> usize {
        (1..self.groups.len())
            .filter(|&i| self.has_context(i) && self.is_under(self.nearest_live(i), a))
            .count()
    }

    /// A worker attached to a group other than the root, if there is one.
    fn pick_worker(&self, x: &Index) -> usize {
        let attached: Vec<usize> = (0..WORKERS).filter(|&w| self.workers[w] != 0).collect();
        match attached.len() {
            0 => x.index(WORKERS),
            n => attached[x.index(n)],
        }
    }

    fn tasks(&self, i: usize) -> usize {
        self.workers.iter().filter(|&&w| w == i).count()
    }

    fn path_of(&self, target: &Target) -> String {
        match target {
            Target::Root => "/".into(),
            Target::Worker(w, _) if self.workers[*w] != 0 => {
                self.groups[self.workers[*w]].path.clone()
            }
            Target::Ever(x) => {
                let paths = self.ever_paths();
                paths[x.index(paths.len())].clone()
            }
            Target::Live(x) | Target::Handle(x) | Target::Worker(_, x) => {
                let live = &self.live_sorted()[1..];
                match live.len() {
                    0 => "/".into(),
                    n => self.groups[live[x.index(n)]].path.clone(),
                }
            }
        }
    }
}

fn events_text(e: [u64; 3]) -> String {
    format!("low 0\nhigh {}\nmax {}\noom {}\n", e[HIGH], e[MAX], e[OOM])
}

fn limit_text(limit: Option<usize>) -> String {
    limit.map_or("max\n".into(), |p| format!("{}\n", p as u64 * PAGE))
}

// ---------------------------------------------------------------------------
// The real thing: a hierarchy, worker threads, objects and handles

type Job = Box<dyn FnOnce() + Send>;

/// A long-lived thread that runs closures sent to it, one at a time.
///
/// Jobs wait in a queue under a mutex and a condition variable, not in a
/// channel: the worker waits in groups, and a channel's first blocking
/// receive allocates its waiter state, which under `MemcgAlloc`
/// (tests/under_memcg_alloc.rs) would be charged to whatever group the
/// worker is in then. Waiting on a condition variable allocates nothing.
struct Worker {
    queue: std::sync::Arc<Queue>,
    thread: Option<thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Queue {
    /// The jobs, and whether the worker is to end.
    jobs: std::sync::Mutex<(std::collections::VecDeque<Job>, bool)>,
    ready: std::sync::Condvar,
}

impl Worker {
    fn spawn(i: usize) -> Worker {
        let queue = std::sync::Arc::new(Queue::default());
        let q = queue.clone();
        let thread = thread::Builder::new()
            .name(format!("model-w{i}"))
            .spawn(move || loop {
                let job = {
                    let mut jobs = q.jobs.lock().unwrap();
                    loop {
                        if let Some(job) = jobs.0.pop_front() {
                            break job;
                        }
                        if jobs.1 {
                            return;
                        }
                        jobs = q.ready.wait(jobs).unwrap();
                    }
                };
                job();
            })
            .expect("spawn a worker");
        Worker {
            queue,
            thread: Some(thread),
        }
    }

    fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        self.start(f)
            .recv()
            .expect("the job panicked on the worker")
    }

    /// Send `f` to the worker; its result arrives on the receiver (a
    /// bounded channel: the worker's send allocates nothing).
    fn start<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> mpsc::Receiver<R> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.queue.jobs.lock().unwrap().0.push_back(job);
        self.queue.ready.notify_one();
        rx
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.queue.jobs.lock().unwrap().1 = true;
        self.queue.ready.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Debug)]
enum Obj {
    Kmem(#[allow(dead_code)] KmemPages),
    Page(UserPage),
    Slab(#[allow(dead_code)] SlabObject),
}

struct Real {
    // Objects and handles go before the hierarchy and the workers.
    objs: Vec<Obj>,
    handles: Vec<Group>,
    workers: Vec<Worker>,
    h: Hierarchy,
    /// Shared caches (S11) of `SLAB_SIZES`, process-wide like every cache.
    caches: [SlabCache; SLAB_SIZES.len()],
}

impl Real {
    fn on<R: Send + 'static>(
        &self,
        by: Option<usize>,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> R {
        match by {
            None => f(),
            Some(w) => self.workers[w].run(f),
        }
    }
}

/// Check `got` against `want`, returning the value on success.
fn check_outcome<T: std::fmt::Debug>(
    op: &Op,
    got: memcg::Result<T>,
    want: &Want,
) -> Result<Option<T>, TestCaseError> {
    match (got, want) {
        (Ok(v), Want::Ok) => Ok(Some(v)),
        (Err(e), Want::Kind(k)) if e.kind() == *k => Ok(None),
        (Err(e), Want::Exact(w)) if e == *w => Ok(None),
        (got, want) => Err(TestCaseError::fail(format!(
            "{op:?}: got {got:?}, want {want:?}"
        ))),
    }
}

/// The group a target names: the model's instance (or the error kind the
/// real side must return), and the real side's handle.
fn resolve(m: &Model, r: &Real, t: &Target) -> (Result<usize, ErrorKind>, memcg::Result<Group>) {
    match t {
        Target::Handle(x) if !m.handles.is_empty() => {
            let k = x.index(m.handles.len());
            (Ok(m.handles[k]), Ok(r.handles[k].clone()))
        }
        _ => {
            let path = m.path_of(t);
            let want = m.live_path(&path).ok_or(ErrorKind::NotFound);
            (want, r.h.get(&path))
        }
    }
}

fn resolve_matches(
    op: &Op,
    want: &Result<usize, ErrorKind>,
    got: &memcg::Result<Group>,
) -> Result<(), TestCaseError> {
    match (want, got) {
        (Ok(_), Ok(_)) => Ok(()),
        (Err(k), Err(e)) if e.kind() == *k => Ok(()),
        _ => Err(TestCaseError::fail(format!(
            "{op:?}: resolving the group: got {got:?}, want {want:?}"
        ))),
    }
}

/// rmdir `path` on both sides and compare what it returns.
fn remove_both(op: &Op, m: &mut Model, r: &mut Real, path: &str) -> Result<(), TestCaseError> {
    let want = match m.live_path(path) {
        Some(0) => Want::Kind(ErrorKind::Invalid),
        None => Want::Kind(ErrorKind::NotFound),
        Some(i) => {
            let children = (0..m.groups.len())
                .filter(|&c| m.groups[c].live && m.groups[c].parent == Some(i))
                .count();
            let tasks = m.tasks(i);
            if children + tasks > 0 {
                Want::Exact(Error::Busy {
                    path: path.to_string(),
                    children,
                    tasks,
                })
            } else {
                Want::Ok
            }
        }
    };
    if check_outcome(op, r.h.remove(path), &want)?.is_some() {
        let i = m.live_path(path).expect("was live");
        m.remove(i);
    }
    Ok(())
}

/// Run one operation on both sides and compare what it returns.
fn step(op: &Op, m: &mut Model, r: &mut Real) -> Result<(), TestCaseError> {
    match op {
        Op::Create { parent, name, keep } => {
            let candidates: Vec<usize> = m
                .live_sorted()
                .into_iter()
                .filter(|&i| m.depth(i) < MAX_DEPTH)
                .collect();
            let p = candidates[parent.index(candidates.len())];
            let parent_path = &m.groups[p].path;
            let path = if p == 0 {
                format!("/{}", NAMES[*name])
            } else {
                format!("{parent_path}/{}", NAMES[*name])
            };
            let want = if NAMES[*name].contains(' ') {
                Want::Kind(ErrorKind::Invalid)
            } else if m.live_path(&path).is_some() {
                Want::Kind(ErrorKind::Exists)
            } else {
                Want::Ok
            };
            if let Some(g) = check_outcome(op, r.h.create(&path), &want)? {
                let i = m.groups.len();
                m.groups.push(MGroup {
                    path,
                    parent: Some(p),
                    live: true,
                    max: None,
                    high: None,
                    local: [0; 3],
                    hier: [0; 3],
                });
                if *keep {
                    m.handles.push(i);
                    r.handles.push(g);
                }
            }
        }
        Op::Remove { path } => remove_both(op, m, r, &m.path_of(path))?,
        Op::Retire { worker } => {
            let worker = m.pick_worker(worker);
            r.workers[worker].run(memcg::detach);
            let was = std::mem::replace(&mut m.workers[worker], 0);
            remove_both(op, m, r, &m.groups[was].path.clone())?;
        }
        Op::DropHandle { handle } => {
            if !m.handles.is_empty() {
                let k = handle.index(m.handles.len());
                m.handles.remove(k);
                r.handles.remove(k);
            }
        }
        Op::Attach { worker, to } => {
            let (want, group) = resolve(m, r, to);
            resolve_matches(op, &want, &group)?;
            if let (Ok(i), Ok(g)) = (want, group) {
                let want = if m.groups[i].live {
                    Want::Ok
                } else {
                    Want::Kind(ErrorKind::NotFound)
                };
                let got = r.workers[*worker].run(move || g.attach());
                if check_outcome(op, got, &want)?.is_some() {
                    m.workers[*worker] = i;
                }
            }
        }
        Op::Kmem { worker, bytes } => {
            let group = m.workers[*worker];
            let bytes = *bytes;
            let got = r.workers[*worker].run(move || KmemPages::alloc(bytes));
            charge_both(
                op,
                m,
                r,
                group,
                group,
                Kind::Kmem,
                bytes,
                got.map(Obj::Kmem),
            )?;
        }
        Op::KmemFor { by, group, bytes } => {
            let (want, handle) = resolve(m, r, group);
            resolve_matches(op, &want, &handle)?;
            if let (Ok(i), Ok(g)) = (want, handle) {
                let bytes = *bytes;
                let got = r.on(*by, move || KmemPages::alloc_for(&g, bytes));
                let owner = m.nearest_live(i);
                charge_both(op, m, r, owner, i, Kind::Kmem, bytes, got.map(Obj::Kmem))?;
            }
        }
        Op::User { worker, file } => {
            let group = m.workers[*worker];
            let (kind, pk) = if *file {
                (Kind::File, PageKind::File)
            } else {
                (Kind::Anon, PageKind::Anon)
            };
            let got = r.workers[*worker].run(move || UserPage::charge(pk));
            charge_both(op, m, r, group, group, kind, PAGE_SIZE, got.map(Obj::Page))?;
        }
        Op::Slab {
            worker,
            cache,
            count,
        } => {
            let worker = m.pick_worker(worker);
            let group = m.workers[worker];
            let cache = r.caches[*cache];
            let (count, bytes) = (*count, cache.slot_size() + ENTRY_BYTES);
            // The result vector is allocated here, in the root: under
            // `MemcgAlloc` the worker charges what it allocates.
            let mut made = Vec::with_capacity(count);
            let (made, got) = r.workers[worker].run(move || {
                for _ in 0..count {
                    match cache.alloc() {
                        Ok(o) => made.push(Obj::Slab(o)),
                        Err(e) => return (made, Err(e)),
                    }
                }
                (made, Ok(()))
            });
            let mut want = Want::Ok;
            let mut fits = 0;
            while fits < count {
                match m.charge_slab(group, bytes) {
                    Ok(()) => fits += 1,
                    Err((over, pages)) => {
                        want = Want::Exact(Error::Limit {
                            path: m.groups[over].path.clone(),
                            pages,
                            max: m.groups[over].max.expect("limited") as u64 * PAGE,
                        });
                        break;
                    }
                }
            }
            let made_len = made.len();
            r.objs.extend(made);
            prop_assert_eq!(made_len, fits, "{:?}: objects made", op);
            check_outcome(op, got, &want)?;
        }
        Op::Free { obj, count, by } => {
            if !m.objs.is_empty() {
                let k = obj.index(m.objs.len());
                let end = (k + count).min(m.objs.len());
                m.objs.drain(k..end);
                let o: Vec<Obj> = r.objs.drain(k..end).collect();
                r.on(*by, move || drop(o));
            }
        }
        Op::SetLimit { max, at, value } => {
            let path = m.path_of(at);
            let file = if *max { "memory.max" } else { "memory.high" };
            let (want, target) = match m.live_path(&path) {
                None => (Want::Kind(ErrorKind::NotFound), None),
                Some(0) => (Want::Kind(ErrorKind::Invalid), None),
                Some(i) => (Want::Ok, Some(i)),
            };
            let (text, pages) = value.resolve(target.map_or(0, |i| m.usage(i)));
            let got = r.h.write(&path, file, &text);
            if check_outcome(op, got, &want)?.is_some() {
                let i = target.expect("live");
                if *max {
                    m.groups[i].max = pages;
                } else {
                    m.groups[i].high = pages;
                }
                m.limit_written(i, pages, *max);
            }
        }
        Op::Reclaim { at, bytes } => {
            let path = m.path_of(at);
            let want = match m.live_path(&path) {
                None => Want::Kind(ErrorKind::NotFound),
                Some(0) => Want::Kind(ErrorKind::Invalid),
                Some(i) => {
                    let pages = (bytes / PAGE) as usize;
                    if m.reclaim(i, pages) < pages {
                        Want::Kind(ErrorKind::Again)
                    } else {
                        Want::Ok
                    }
                }
            };
            let got = r.h.write(&path, "memory.reclaim", &bytes.to_string());
            check_outcome(op, got, &want)?;
        }
        Op::Read { at, file } => {
            let path = m.path_of(at);
            let file = READ_FILES[*file];
            let want = match m.live_path(&path) {
                None => Want::Kind(ErrorKind::NotFound),
                Some(_) if file == "memory.bogus" => Want::Kind(ErrorKind::NotFound),
                Some(_) if file == "memory.reclaim" => Want::Kind(ErrorKind::Invalid),
                Some(0)
                    if file.starts_with("memory.")
                        && !["memory.current", "memory.stat"].contains(&file) =>
                {
                    Want::Kind(ErrorKind::Invalid)
                }
                Some(_) => Want::Ok,
            };
            check_outcome(op, r.h.read(&path, file), &want)?;
        }
    }
    Ok(())
}

/// Compare a charge's outcome with the model's, which charges `owner`
/// through the context of `ctx` (the root: not accounted).
#[allow(clippy::too_many_arguments)]
fn charge_both(
    op: &Op,
    m: &mut Model,
    r: &mut Real,
    owner: usize,
    ctx: usize,
    kind: Kind,
    bytes: usize,
    got: memcg::Result<Obj>,
) -> Result<(), TestCaseError> {
    let pages = bytes.div_ceil(PAGE_SIZE);
    let obj = MObj {
        kind,
        pages,
        bytes: 0,
        owner: None,
        ctx: (kind == Kind::Kmem && ctx != 0).then_some(ctx),
        seq: None,
        reclaimed: false,
    };
    let want = if owner == 0 {
        // The root is never limited; a context reparented to it still
        // charges it (kmem_for a removed top-level group); a root thread does not.
        if ctx == 0 {
            m.objs.push(obj);
        } else {
            m.charge(0, obj).expect("the root has no limit");
        }
        Want::Ok
    } else {
        match m.charge(owner, obj) {
            Ok(()) => Want::Ok,
            Err(over) => Want::Exact(Error::Limit {
                path: m.groups[over].path.clone(),
                pages,
                max: m.groups[over].max.expect("limited") as u64 * PAGE,
            }),
        }
    };
    if let Some(o) = check_outcome(op, got, &want)? {
        r.objs.push(o);
    }
    Ok(())
}

fn key(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no key {key} in {text:?}"))
        .parse()
        .expect("a number")
}

/// Every thread's stocks back: the object stocks of every worker (under
/// `MemcgAlloc`, tests/under_memcg_alloc.rs, anything a worker allocates in a
/// group goes through one, not only slab objects), then the test thread's
/// and every page stock (quiesce), and deferred destruction run.
fn drain(r: &Real) {
    let drained: Vec<_> = (0..WORKERS)
        .map(|w| r.workers[w].start(memcg::drain_stocks))
        .collect();
    for d in drained {
        d.recv().expect("drained");
    }
    r.h.quiesce();
}

/// Drain, then compare every counter of every live group with the model.
fn compare(op: &Op, m: &Model, r: &Real) -> Result<(), TestCaseError> {
    drain(r);
    for i in m.live_sorted() {
        let g = &m.groups[i];
        let path = g.path.as_str();
        let read = |file: &str| {
            r.h.read(path, file)
                .unwrap_or_else(|e| panic!("read {path} {file}: {e}"))
        };
        let current: u64 = read("memory.current").trim().parse().expect("a number");
        let stat = read("memory.stat");
        let (anon, file, kernel) = (key(&stat, "anon"), key(&stat, "file"), key(&stat, "kernel"));
        let want = |kind| m.billed(i, Some(kind)) as u64 * PAGE;
        prop_assert_eq!(
            current,
            m.usage(i) as u64 * PAGE,
            "after {:?}: {} memory.current",
            op,
            path
        );
        prop_assert_eq!(anon, want(Kind::Anon), "after {:?}: {} anon", op, path);
        prop_assert_eq!(file, want(Kind::File), "after {:?}: {} file", op, path);
        let (kmem, slab) = (key(&stat, "kmem"), key(&stat, "slab"));
        prop_assert_eq!(kmem, want(Kind::Kmem), "after {:?}: {} kmem", op, path);
        // S11: bytes of live objects; pages for them, per context.
        prop_assert_eq!(
            slab,
            m.slab_bytes(i) as u64,
            "after {:?}: {} slab",
            op,
            path
        );
        prop_assert_eq!(
            (
                key(&stat, "slab_reclaimable"),
                key(&stat, "slab_unreclaimable")
            ),
            (0, slab),
            "after {:?}: {} slab_reclaimable, slab_unreclaimable",
            op,
            path
        );
        prop_assert_eq!(
            kernel,
            kmem + m.slab_pages(i) as u64 * PAGE,
            "after {:?}: {} kernel (kmem {}, slab {})",
            op,
            path,
            kmem,
            slab
        );
        // §3 Consistency, as stated there.
        prop_assert_eq!(
            current,
            anon + file + kernel,
            "after {:?}: {} consistency",
            op,
            path
        );
        let contexts = m.contexts_billing(i) as u64;
        let excess = kernel.checked_sub(kmem + slab);
        prop_assert!(
            excess.is_some_and(|e| e == 0 || e < contexts * PAGE),
            "after {:?}: {} kernel {} vs kmem {} + slab {}: not within less than a \
             page per context billing it ({})",
            op,
            path,
            kernel,
            kmem,
            slab,
            contexts
        );
        prop_assert_eq!(
            read("cgroup.stat"),
            format!(
                "nr_descendants {}\nnr_dying_descendants {}\n",
                m.live_descendants(i),
                m.dying_descendants(i)
            ),
            "after {:?}: {} cgroup.stat",
            op,
            path
        );
        if i == 0 {
            continue;
        }
        prop_assert_eq!(
            read("memory.events"),
            events_text(g.hier),
            "after {:?}: {} memory.events",
            op,
            path
        );
        prop_assert_eq!(
            read("memory.events.local"),
            events_text(g.local),
            "after {:?}: {} memory.events.local",
            op,
            path
        );
        prop_assert_eq!(
            read("memory.max"),
            limit_text(g.max),
            "after {:?}: {} memory.max",
            op,
            path
        );
        prop_assert_eq!(
            read("memory.high"),
            limit_text(g.high),
            "after {:?}: {} memory.high",
            op,
            path
        );
        let peak: u64 = read("memory.peak").trim().parse().expect("a number");
        prop_assert!(
            peak >= current,
            "after {:?}: {} memory.peak {} < current {}",
            op,
            path,
            peak,
            current
        );
        let mut procs: Vec<String> = read("cgroup.procs").lines().map(str::to_string).collect();
        procs.sort();
        let want: Vec<String> = (0..WORKERS)
            .filter(|&w| m.workers[w] == i)
            .map(|w| format!("model-w{w}"))
            .collect();
        prop_assert_eq!(procs, want, "after {:?}: {} cgroup.procs", op, path);
    }
    prop_assert_eq!(
        r.h.live_contexts(),
        m.contexts(),
        "after {:?}: live_contexts",
        op
    );
    let leftovers = r.h.leftovers();
    let online = m.live_sorted().len() - 1;
    prop_assert_eq!(
        (leftovers.dying_groups, leftovers.dead_contexts),
        (m.dying_descendants(0), m.contexts() - online),
        "after {:?}: leftovers (dying groups, dead contexts)",
        op
    );
    for (k, (mo, ro)) in m.objs.iter().zip(&r.objs).enumerate() {
        if let Obj::Page(p) = ro {
            prop_assert_eq!(
                p.is_live(),
                !mo.reclaimed,
                "after {:?}: page {} is_live",
                op,
                k
            );
        }
    }
    Ok(())
}

/// Run `ops`, comparing after each; then free and remove everything and
/// check that every counter is back to 0 (S2) and no context is left (S3).
fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut m = Model::new();
    let mut r = Real {
        objs: Vec::new(),
        handles: Vec::new(),
        workers: (0..WORKERS).map(Worker::spawn).collect(),
        h: Hierarchy::new(),
        caches: SLAB_SIZES.map(|size| {
            SlabCache::new(&format!("model-{size}"), size, false).expect("a shared cache")
        }),
    };
    for op in ops {
        step(op, &mut m, &mut r)?;
        compare(op, &m, &r)?;
    }
    let objs = std::mem::take(&mut r.objs);
    for (k, o) in objs.into_iter().enumerate() {
        let by = (k % (WORKERS + 1)).checked_sub(1);
        r.on(by, move || drop(o));
    }
    for w in &r.workers {
        w.run(memcg::detach);
    }
    drain(&r);
    let mut live = m.live_sorted();
    live.reverse();
    for i in live.into_iter().filter(|&i| i != 0) {
        r.h.remove(&m.groups[i].path)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    r.handles.clear();
    drain(&r);
    prop_assert_eq!(r.h.read("/", "memory.current").unwrap(), "0\n");
    let stat = r.h.read("/", "memory.stat").unwrap();
    prop_assert!(
        stat.lines().all(|l| l.ends_with(" 0")),
        "root memory.stat: {}",
        stat
    );
    prop_assert_eq!(
        r.h.read("/", "cgroup.stat").unwrap(),
        "nr_descendants 0\nnr_dying_descendants 0\n"
    );
    prop_assert_eq!(r.h.live_contexts(), 0);
    prop_assert_eq!(r.h.leftovers(), memcg::Leftovers::default());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// DESIGN.md §8, S1–S5, S7, S10, S11 and consistency: after every step
    /// of a random sequence, stocks drained, every live group's counters,
    /// stats (slab bytes included), events and descendant counts equal the
    /// reference model's, and after freeing and removing everything all
    /// counters are 0 and nothing is left over.
    #[test]
    fn every_counter_matches_the_reference_model_after_every_step(
        ops in prop::collection::vec(op(), 1..=48)
    ) {
        run(&ops)?;
    }
}

/// Writes through a removed group's handle are outside the model. One of
/// them reaches the wrong group: reclaim of a removed group walks the live
/// groups below its *path*, which after the path is reused belong to its
/// successor. A removed group owns no pages (S7), so it must reclaim nothing.
#[test]
fn reclaim_through_a_removed_groups_handle_leaves_its_successor_alone() {
    let h = Hierarchy::new();
    let old = h.create("/a").unwrap();
    h.remove("/a").unwrap();
    h.create("/a").unwrap();
    let b = h.create("/a/b").unwrap();
    let page = spawn(move || {
        let _in_b = b.enter().unwrap();
        UserPage::charge(PageKind::File).unwrap()
    })
    .join()
    .unwrap();
    let wrote = old.write("memory.reclaim", "4K");
    h.quiesce();
    assert!(
        page.is_live(),
        "the successor's page was reclaimed ({wrote:?})"
    );
    assert_eq!(h.read("/a/b", "memory.current").unwrap(), "4096\n");
}
