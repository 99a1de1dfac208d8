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
//!     a `max` on the first group whose limit it hit ("a charge hit a
//!     `memory.max`"), and at most one per group. Whether a charge that
//!     reclaim got under one limit and that then hits another one's counts
//!     `max` there too §4 does not settle (the kernel counts one on every
//!     try that fails); the model admits both;
//!   - reclaim takes file pages; anon pages and plain kmem are not
//!     reclaimable, nor are the objects of the (non-reclaimable) caches used
//!     here, and shared slabs charge a group no slab pages to give back
//!     (S11). It takes them from the groups of the subtree in proportion to
//!     their unprotected usage, in rounds, and within a group oldest first
//!     (a page's age is when its charge put it on an LRU; reparenting, S7,
//!     moves it to its parent's LRU, not its age): see "What reclaim may
//!     choose" below;
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
//! # What reclaim may choose
//!
//! §4: "Across the groups of the subtree it takes from each in proportion to
//! its unprotected usage, in rounds (the kernel's scan balance); within a
//! group, oldest first." Nothing here writes `memory.min` or `memory.low`
//! (tests/protection.rs covers S13), so a group's unprotected share is all
//! of what it can give: the file pages on its own LRU (the engine's
//! published rule scans a group's LRU by `size - size * protection /
//! (usage + 1)`, `size` with no protection; parents and children are
//! separate LRUs, as in the kernel). That fixes the proportions; it leaves
//! open how each round's pages are rounded among the groups (the engine's
//! rounds of 32 pages carry fractional credits over, its rounding of them
//! is its own). So the model does not predict which pages one reclaim call
//! takes. For a call that asks for `n` pages of a subtree whose `G` groups
//! hold `s_g` reclaimable pages, `S` in all, it admits any outcome where
//!
//! - the call takes `t` pages, at least `min(n, S)`, and more than `n` only
//!   by less than a page per group (credits carried over falling due
//!   together): `t <= n + G - 1`;
//! - each group gives `l_g` pages within [`TOLERANCE`] pages of its share of
//!   them, `|l_g - t * s_g / S| < 2`: one page for the fraction carried into
//!   the call, one for the fraction carried out;
//! - each group gives its oldest pages.
//!
//! The model is therefore a relation. An operation that may reclaim runs on
//! the engine first; the model then looks for an execution of it, among
//! those the rules admit, that ends where the engine did: the same result,
//! the same pages reclaimed (`UserPage::is_live`), the same `memory.events`
//! in every live group ([`explain`]). It carries on from that execution's
//! state. When there is none, the test fails and shows the model's own
//! execution (each call's pages shared by largest remainder) next to the
//! engine's. Events, limits and results stay exact: a branch must explain
//! every one of them.
//!
//! # Slab objects and stocks
//!
//! Slab objects (S11) come from shared caches of a few sizes. Each is charged
//! in bytes, its slot plus its object-vector entry where its slab has a
//! vector (which slab an object lands in is the allocator's choice: the
//! model reads which of the two each object got and holds the engine to
//! it), through the context of the group it was allocated in, and is freed
//! on any thread. The model keeps
//! their bytes, never a page count. DESIGN.md's rules for them: byte charges
//! reach the page counter in whole pages, the sub-page remainder stays with
//! the context, a thread's object stock holds one context's pre-charged
//! bytes, and (§3) once stocks are drained `kernel` exceeds kmem pages plus
//! slab bytes by less than a page per context billing the group. So once
//! every stock is drained a context whose live objects take `b` bytes has
//! exactly `ceil(b / PAGE)` pages charged (what is charged is what its
//! objects use plus a remainder under a page), and while stocks hold bytes
//! a context has at most one page more per thread whose stock holds it.
//!
//! Every step is checked three times (see [`Phase`]): first with every
//! stock in play as the step left it (charge stocks, which pre-charge up to
//! `2 * CHARGE_BATCH` pages a thread, and object stocks): `memory.current`
//! at least the drained usage and above it by no more than the stocks can
//! hold, statistics within what stocks may not have applied yet, and the
//! stock-free files (events, limits, procs, `cgroup.stat`) exact; then
//! after a quiesce, which returns every charge stock but leaves the
//! workers' object stocks in play: page statistics exact, `memory.current
//! == anon + file + kernel` exact, and usage above the drained usage by at
//! most a page per worker; then with every stock drained, everything exact.
//!
//! Limits are exact because every step starts with every stock drained. A
//! charge that does not fit as a batch of `CHARGE_BATCH` is retried with its
//! exact size before any event is counted, and a batch that fits but would
//! leave a group above its `memory.high` gives its slack back before the
//! high check, so the usage a limit and a high check see is exactly the
//! model's drained usage. A step's further charges through the same context
//! on the same thread take their pages from the first one's slack without
//! looking at a limit, and the drained usage the model checks them against
//! is below the batch's, so the model sees no limit or high crossed there
//! either: that is why a step that charges several times (file pages one
//! after another, slab objects) charges through one context on one thread.
//! A charge through another context, with that slack still in a stock, could
//! fail its exact-size try at a limit that the drained usage would meet and
//! count a `max` event before draining (as the kernel's `try_charge` does),
//! which no model of drained usage predicts.
//!
//! A slab allocation charges a page when its context's drained bytes would
//! need one more, `ceil((b + size) / PAGE) > ceil(b / PAGE)`. Whether an
//! object that the context's remainder covers may still charge a page first
//! (the kernel's `obj_cgroup_charge` charges before it takes the remainder
//! back into the stock) DESIGN.md leaves open, so the model admits that too,
//! one page ahead at most: it shows only where that page would cross a
//! `memory.max` or `memory.high`, and there the model tries both. An
//! allocation of N objects stops at the first failure and keeps the objects
//! made so far. What the model leaves out: `memory.peak` (the batch slack
//! raises it; only `peak >= current` is checked), and writes through the
//! handle of a removed group (see the test at the end).
//!
//! Charges run on a pool of long-lived worker threads, so they are charged
//! where a real thread's group says; frees run on a worker or the test
//! thread, whichever the sequence picks. Besides single operations the
//! sequences hold sibling scenarios ([`siblings`]): groups side by side
//! with file pages of different sizes and ages, then a reclaim of part of
//! them, where reclaiming oldest first across the subtree and in proportion
//! leave different pages.

use memcg::{
    Error, ErrorKind, Group, Hierarchy, KmemPages, PageKind, SlabCache, SlabObject, UserPage,
    CHARGE_BATCH, PAGE_SIZE,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;

/// Spawn a test thread. Under `MemcgAlloc` (tests/under_memcg_alloc.rs)
/// whatever it allocates while in a group is charged there, so the
/// bookkeeping of a charged section (result vectors) is allocated before it
/// enters the group, for the exact numbers below to hold there too.
use std::thread::spawn;

const PAGE: u64 = PAGE_SIZE as u64;
const WORKERS: usize = 3;
/// Threads whose stocks may hold charges: the workers and the test thread.
const THREADS: u64 = WORKERS as u64 + 1;
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
/// How far, in pages, a group's loss in one reclaim call may be from its
/// share of what the call took (see the module doc): strictly less.
const TOLERANCE: usize = 2;
/// Executions [`explain`] tries before it gives up on an operation.
const MAX_BRANCHES: usize = 20_000;
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
    /// A fixed path, which may not exist (the sibling scenarios).
    Path(String),
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
    /// mkdir of a fixed path, whose parent may not exist (the scenarios).
    Mkdir {
        path: String,
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
    /// `count` file pages charged one after another on a worker, until one
    /// fails: a group's page cache growing.
    Files {
        worker: usize,
        count: usize,
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
        5 => (0..WORKERS, prop::bool::weighted(0.7))
            .prop_map(|(worker, file)| Op::User { worker, file }),
        2 => (0..WORKERS, 2..=8usize).prop_map(|(worker, count)| Op::Files { worker, count }),
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

/// What ends a sibling scenario: a reclaim of part of the siblings' pages.
#[derive(Debug, Clone, Copy)]
enum Squeeze {
    /// `memory.reclaim` of this many pages from the parent.
    Reclaim,
    /// `memory.max` this many pages under the parent's usage.
    Max,
    /// `memory.high` this many pages under the parent's usage.
    High,
}

/// §4's reclaim order where it matters: two or three sibling groups under
/// one parent (made if need be, one or two levels down), a worker in each,
/// file pages charged to them in chunks of different sizes, so that the
/// siblings differ in size and their pages in age; perhaps a `memory.max`
/// on the parent first, so that the later chunks reclaim as they charge;
/// then a reclaim of a quarter, half or three quarters of what they were
/// charged. Taking the oldest pages of the
/// subtree would take them from the sibling charged first; taking in
/// proportion takes from each.
fn siblings() -> impl Strategy<Value = Vec<Op>> {
    (
        (0..3usize, prop::option::of(0..3usize)),
        2..=3usize,
        prop::collection::vec((0..3usize, 1..=10usize), 2..=6),
        prop::option::weighted(0.25, 4..=16i64),
        prop_oneof![
            Just(Squeeze::Reclaim),
            Just(Squeeze::Max),
            Just(Squeeze::High)
        ],
        1..=3u64,
    )
        .prop_map(|(parent, children, chunks, max, squeeze, quarters)| {
            sibling_ops(parent, children, &chunks, max, squeeze, quarters)
        })
}

/// The operations of a sibling scenario: the parent `/NAMES[top]` (or
/// `/NAMES[top]/NAMES[second]`), `children` siblings under it with worker
/// `k` in the `k`th, `chunks` of file pages charged by (sibling, count),
/// perhaps a `memory.max` that many pages above the parent's usage first,
/// then `squeeze` of `quarters` quarters of the pages charged.
fn sibling_ops(
    (top, second): (usize, Option<usize>),
    children: usize,
    chunks: &[(usize, usize)],
    max: Option<i64>,
    squeeze: Squeeze,
    quarters: u64,
) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut parent = format!("/{}", NAMES[top]);
    ops.push(Op::Mkdir {
        path: parent.clone(),
    });
    if let Some(s) = second {
        parent = format!("{parent}/{}", NAMES[s]);
        ops.push(Op::Mkdir {
            path: parent.clone(),
        });
    }
    for (worker, name) in NAMES.iter().enumerate().take(children) {
        let path = format!("{parent}/{name}");
        ops.push(Op::Mkdir { path: path.clone() });
        ops.push(Op::Attach {
            worker,
            to: Target::Path(path),
        });
    }
    if let Some(pages) = max {
        ops.push(Op::SetLimit {
            max: true,
            at: Target::Path(parent.clone()),
            value: Limit::Near { pages, rem: 0 },
        });
    }
    for &(child, count) in chunks {
        ops.push(Op::Files {
            worker: child % children,
            count,
        });
    }
    let charged: u64 = chunks.iter().map(|&(_, n)| n as u64).sum();
    let pages = (charged * quarters / 4).max(1);
    let at = Target::Path(parent);
    let under = Limit::Near {
        pages: -(pages as i64),
        rem: 0,
    };
    ops.push(match squeeze {
        Squeeze::Reclaim => Op::Reclaim {
            at,
            bytes: pages * PAGE,
        },
        Squeeze::Max => Op::SetLimit {
            max: true,
            at,
            value: under,
        },
        Squeeze::High => Op::SetLimit {
            max: false,
            at,
            value: under,
        },
    });
    ops
}

/// A sequence: single operations, with a sibling scenario now and then.
fn sequence() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            14 => op().prop_map(|o| vec![o]),
            1 => siblings(),
        ],
        1..=40,
    )
    .prop_map(|blocks| blocks.into_iter().flatten().collect())
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

#[derive(Debug, Clone)]
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

#[derive(Debug, Clone)]
struct MObj {
    kind: Kind,
    /// Pages charged for it alone; 0 for a slab object, whose bytes are
    /// charged with the rest of its context's (see [`Model::slab_pages`]).
    pages: usize,
    /// A slab object's bytes: its slot, and its object-vector entry if its
    /// slab had a vector.
    bytes: usize,
    /// The group billed now; `None` when never accounted (made in the root).
    owner: Option<usize>,
    /// kmem and slab: the group whose context it was charged through.
    ctx: Option<usize>,
    /// File pages: the LRU age, once on the LRU.
    seq: Option<u64>,
    reclaimed: bool,
}

#[derive(Debug, Clone)]
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
    /// Contexts (by instance) with a page charged ahead of their objects'
    /// bytes in this step ([`Model::charge_slab`]); the drain at the end of
    /// the step gives it back.
    ahead: BTreeSet<usize>,
    /// The groups whose limit the charge being made has hit, in order.
    hit: Vec<usize>,
    /// The execution being tried ([`explain`]).
    run: Run,
}

/// One execution of an operation the model tries: the choices it makes
/// where DESIGN.md admits several outcomes.
#[derive(Debug, Clone, Default)]
struct Run {
    /// The option to take at each choice point, in order; the first past
    /// its end.
    script: Vec<usize>,
    /// How many options each choice point reached had.
    options: Vec<usize>,
    /// The model's state at each choice point reached (a hash).
    states: Vec<u64>,
    /// The first choice point that had no admissible option, or where the
    /// execution could no longer end where the engine did: no such
    /// execution (and what it does after is not one either).
    dead: Option<usize>,
    /// What the engine did, to explain. `None`: the model's own execution,
    /// first options only.
    seen: Option<Rc<Seen>>,
    /// Choice points (index, state) from which every execution was tried
    /// and failed: an execution reaching one again is dead.
    failed: Rc<RefCell<HashSet<(usize, u64)>>>,
    /// What each reclaim call did, for the failure message.
    log: Vec<String>,
}

/// What an operation must return.
#[derive(Debug, Clone)]
enum Want {
    Ok,
    Kind(ErrorKind),
    Exact(Error),
}

impl Want {
    fn admits<T>(&self, got: &memcg::Result<T>) -> bool {
        match (got, self) {
            (Ok(_), Want::Ok) => true,
            (Err(e), Want::Kind(k)) => e.kind() == *k,
            (Err(e), Want::Exact(w)) => e == w,
            _ => false,
        }
    }
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
            ahead: BTreeSet::new(),
            hit: Vec::new(),
            run: Run::default(),
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

    /// Usage of `a`'s subtree with stocks drained; within a step, with the
    /// pages charged ahead of slab objects as well.
    fn usage(&self, a: usize) -> usize {
        let ahead = self
            .ahead
            .iter()
            .filter(|&&c| self.is_under(self.nearest_live(c), a))
            .count();
        self.billed(a, None) + self.slab_pages(a) + ahead
    }

    fn event(&mut self, i: usize, e: usize) {
        self.groups[i].local[e] += 1;
        let chain: Vec<usize> = self.chain(i).collect();
        for g in chain {
            self.groups[g].hier[e] += 1;
        }
    }

    /// Take one of `options`, as the execution's script says: the first
    /// when it says nothing. `None` (and the execution is dead) when there
    /// is no such option.
    fn choose<T>(&mut self, mut options: Vec<T>) -> Option<T> {
        let point = self.run.options.len();
        let state = self.state();
        self.run.states.push(state);
        // Events only grow: past the engine's, the execution cannot end
        // where it did.
        let too_many = self.run.seen.as_ref().is_some_and(|seen| {
            seen.events.iter().any(|&(i, local, hier)| {
                let g = &self.groups[i];
                (0..3).any(|e| g.local[e] > local[e] || g.hier[e] > hier[e])
            })
        });
        let pick = self.run.script.get(point).copied().unwrap_or(0);
        if self.run.dead.is_some()
            || too_many
            || pick >= options.len()
            || self.run.failed.borrow().contains(&(point, state))
        {
            self.run.options.push(0);
            self.run.dead.get_or_insert(point);
            return None;
        }
        self.run.options.push(options.len());
        Some(options.swap_remove(pick))
    }

    /// A hash of everything an operation's course depends on: which
    /// objects live, are reclaimed and where, the events, the limits, the
    /// pages charged ahead, the limits the current charge hit. (Where an
    /// operation is within its course follows from them: the objects it
    /// made so far, the `high` events it counted.)
    fn state(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for o in &self.objs {
            (
                o.kind as u8,
                o.pages,
                o.bytes,
                o.owner,
                o.ctx,
                o.seq,
                o.reclaimed,
            )
                .hash(&mut h);
        }
        for g in &self.groups {
            (g.live, g.max, g.high, g.local, g.hier).hash(&mut h);
        }
        (&self.ahead, &self.hit, self.clock, self.workers).hash(&mut h);
        h.finish()
    }

    /// The LRUs reclaim of `g`'s subtree takes from: each live group of the
    /// subtree that has file pages on its LRU, with them, oldest first.
    fn lrus(&self, g: usize) -> Vec<(usize, Vec<usize>)> {
        let mut lrus: Vec<(usize, Vec<usize>)> = self
            .live_sorted()
            .into_iter()
            .filter(|&x| self.is_under(x, g))
            .map(|x| (x, Vec::new()))
            .collect();
        for (k, o) in self.objs.iter().enumerate() {
            if o.kind != Kind::File || o.reclaimed || o.seq.is_none() {
                continue;
            }
            if let Some(lru) = lrus.iter_mut().find(|(x, _)| Some(*x) == o.owner) {
                lru.1.push(k);
            }
        }
        lrus.retain(|(_, pages)| !pages.is_empty());
        for (_, pages) in &mut lrus {
            pages.sort_by_key(|&k| self.objs[k].seq);
        }
        lrus
    }

    /// §4 reclaim of `g`'s subtree, asked for `pages` pages: file pages from
    /// its groups in proportion to what each holds, oldest first within
    /// each, as the module doc admits. Returns the pages freed.
    fn reclaim(&mut self, g: usize, pages: usize) -> usize {
        if pages == 0 {
            return 0;
        }
        let lrus = self.lrus(g);
        if lrus.is_empty() {
            return 0;
        }
        let sizes: Vec<usize> = lrus.iter().map(|(_, p)| p.len()).collect();
        let options = match &self.run.seen {
            None => vec![apportion(&sizes, pages.min(sizes.iter().sum()))],
            Some(seen) => {
                let gone = &seen.gone;
                // Pages reclaim takes stay gone: a group can give no more
                // than the engine's reclaim took of its oldest pages.
                let room: Vec<usize> = lrus
                    .iter()
                    .map(|(_, p)| {
                        p.iter()
                            .take_while(|&&k| gone.get(k).copied().unwrap_or(false))
                            .count()
                    })
                    .collect();
                admissible(&sizes, &room, pages)
            }
        };
        let Some(take) = self.choose(options) else {
            return 0;
        };
        let log = lrus
            .iter()
            .zip(&take)
            .map(|((x, p), n)| format!("{} {n} of {}", self.groups[*x].path, p.len()))
            .collect::<Vec<_>>()
            .join(", ");
        self.run
            .log
            .push(format!("{} asked {pages}: {log}", self.groups[g].path));
        for ((_, lru), &n) in lrus.iter().zip(&take) {
            for &k in &lru[..n] {
                self.objs[k].reclaimed = true;
            }
        }
        take.iter().sum()
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

    /// A charge of `bytes` (whole pages) of `kind` billed to `owner` through
    /// the context of `ctx` (the root: not accounted): what the engine must
    /// return.
    fn charge_pages(&mut self, owner: usize, ctx: usize, kind: Kind, bytes: usize) -> Want {
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
        if owner == 0 {
            // The root is never limited; a context reparented to it still
            // charges it (kmem_for a removed top-level group); a root thread does not.
            if ctx == 0 {
                self.objs.push(obj);
            } else {
                self.charge(0, obj).expect("the root has no limit");
            }
            return Want::Ok;
        }
        match self.charge(owner, obj) {
            Ok(()) => Want::Ok,
            Err(over) => self.limit_error(over, pages),
        }
    }

    fn limit_error(&self, over: usize, pages: usize) -> Want {
        Want::Exact(Error::Limit {
            path: self.groups[over].path.clone(),
            pages,
            max: self.groups[over].max.expect("limited") as u64 * PAGE,
        })
    }

    /// Whether one more page charged to `g` would cross a `memory.max` or a
    /// `memory.high` of it or an ancestor.
    fn one_more_bites(&self, g: usize) -> bool {
        self.chain(g).any(|x| {
            let usage = self.usage(x) + 1;
            let group = &self.groups[x];
            group.max.is_some_and(|max| usage > max) || group.high.is_some_and(|high| usage > high)
        })
    }

    /// S11: allocate a slab object of `bytes` in `g` (the root: not
    /// accounted). Its context's live bytes grow by `bytes`; the page
    /// counter is charged a page when the drained context would need one
    /// more (one charge, with the limit and high handling above), unless a
    /// page charged ahead covers it; an object the remainder covers may
    /// charge a page ahead (see the module doc). On failure: the group
    /// whose limit failed it, and the pages asked.
    fn charge_slab(&mut self, g: usize, bytes: usize) -> Result<(), (usize, usize)> {
        let accounted = g != 0;
        let mut pages = 0;
        if accounted {
            let had = self.ctx_bytes()[g];
            let needs = (had + bytes).div_ceil(PAGE_SIZE) - had.div_ceil(PAGE_SIZE);
            if needs > 0 {
                // A page charged ahead covers it (objects are under a page).
                if !self.ahead.remove(&g) {
                    pages = needs;
                    self.try_charge(g, pages).map_err(|over| (over, pages))?;
                }
            } else if !self.ahead.contains(&g)
                && self.one_more_bites(g)
                && self.choose(vec![false, true]) == Some(true)
            {
                pages = 1;
                self.try_charge(g, 1).map_err(|over| (over, 1))?;
                self.ahead.insert(g);
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
        self.hit.clear();
        while let Some(over) = self.limit_hit(owner, pages) {
            if !self.hit.contains(&over) {
                // A further limit the same charge hits once reclaim got it
                // under the first: counted there too, or not (see the
                // module doc).
                let count = self.hit.is_empty() || self.choose(vec![true, false]) == Some(true);
                self.hit.push(over);
                if count {
                    self.event(over, MAX);
                }
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
            Target::Path(path) => path.clone(),
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

/// The model's own share of `t` pages among groups holding `sizes`: in
/// proportion, rounded by largest remainder (ties to the earlier group).
fn apportion(sizes: &[usize], t: usize) -> Vec<usize> {
    let total: usize = sizes.iter().sum();
    let mut take: Vec<usize> = sizes.iter().map(|&s| t * s / total).collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(t * sizes[i] % total));
    let mut rest = t - take.iter().sum::<usize>();
    for i in order {
        if rest == 0 {
            break;
        }
        if take[i] < sizes[i] {
            take[i] += 1;
            rest -= 1;
        }
    }
    take
}

/// Every outcome the module doc admits for a reclaim call asked for `n`
/// pages from groups holding `sizes` pages, in which each group gives at
/// most `room` pages: how many each gives. Those closest to taking in
/// proportion to `room` come first: taking all of it (the engine's outcome
/// if this call was the operation's last to take from these groups), or,
/// for a call that takes less, from the groups with the most to give.
fn admissible(sizes: &[usize], room: &[usize], n: usize) -> Vec<Vec<usize>> {
    let total: usize = sizes.iter().sum();
    let most: Vec<usize> = sizes.iter().zip(room).map(|(&s, &r)| s.min(r)).collect();
    // What the groups from `i` on can give together.
    let mut rest = vec![0; sizes.len() + 1];
    for i in (0..sizes.len()).rev() {
        rest[i] = rest[i + 1] + most[i];
    }
    let mut out = Vec::new();
    for t in n.min(total)..=total.min(n + sizes.len() - 1) {
        let mut take = vec![0; sizes.len()];
        fill(
            0,
            t,
            t,
            &mut take,
            &mut out,
            &|i, l, t| l <= most[i] && (l * total).abs_diff(t * sizes[i]) < TOLERANCE * total,
            &rest,
        );
    }
    let room: usize = most.iter().sum();
    out.sort_by_key(|take| {
        let t: usize = take.iter().sum();
        let off: usize = take
            .iter()
            .zip(&most)
            .map(|(&l, &r)| (l * room).abs_diff(t * r))
            .sum();
        (off, t)
    });
    out
}

/// Depth first over the groups, `take[..i]` chosen and `left` pages of the
/// `t` still to give: every way for the groups from `i` on to give them,
/// each group's `l` as `fair(i, l, t)` allows, those from `i` giving at most
/// `rest[i]` together.
fn fill(
    i: usize,
    left: usize,
    t: usize,
    take: &mut Vec<usize>,
    out: &mut Vec<Vec<usize>>,
    fair: &dyn Fn(usize, usize, usize) -> bool,
    rest: &[usize],
) {
    if i == take.len() {
        if left == 0 {
            out.push(take.clone());
        }
        return;
    }
    for l in 0..=left {
        if left - l > rest[i + 1] || !fair(i, l, t) {
            continue;
        }
        take[i] = l;
        fill(i + 1, left - l, t, take, out, fair, rest);
    }
}

fn events_text(e: [u64; 3]) -> String {
    format!(
        "low 0\nhigh {}\nmax {}\noom {}\noom_kill 0\noom_group_kill 0\n",
        e[HIGH], e[MAX], e[OOM]
    )
}

fn limit_text(limit: Option<usize>) -> String {
    limit.map_or("max\n".into(), |p| format!("{}\n", p as u64 * PAGE))
}

// ---------------------------------------------------------------------------
// Explaining what the engine did

/// What an operation that may reclaim left behind, as the engine shows it.
#[derive(Debug)]
struct Seen {
    /// By object: a page no longer live.
    gone: Vec<bool>,
    /// Every live group but the root: `memory.events.local` and
    /// `memory.events` (high, max, oom).
    events: Vec<(usize, [u64; 3], [u64; 3])>,
}

impl Seen {
    fn of(m: &Model, r: &Real) -> Seen {
        let gone = r
            .objs
            .iter()
            .map(|o| matches!(o, Obj::Page(p) if !p.is_live()))
            .collect();
        let events = m
            .live_sorted()
            .into_iter()
            .filter(|&i| i != 0)
            .map(|i| {
                let path = &m.groups[i].path;
                let read = |file: &str| {
                    let text =
                        r.h.read(path, file)
                            .unwrap_or_else(|e| panic!("read {path} {file}: {e}"));
                    [key(&text, "high"), key(&text, "max"), key(&text, "oom")]
                };
                (i, read("memory.events.local"), read("memory.events"))
            })
            .collect();
        Seen { gone, events }
    }

    /// Whether the model's execution ended with the same pages reclaimed and
    /// the same events.
    fn matches(&self, m: &Model) -> bool {
        let pages = (0..self.gone.len().max(m.objs.len())).all(|k| {
            m.objs.get(k).is_some_and(|o| o.reclaimed) == self.gone.get(k).copied().unwrap_or(false)
        });
        pages
            && self
                .events
                .iter()
                .all(|&(i, local, hier)| m.groups[i].local == local && m.groups[i].hier == hier)
    }
}

/// Run an operation that may reclaim on the model, after the engine ran it
/// and returned `got`: find an execution of `sim` that the module doc
/// admits and that ends where the engine did (`accept` judges what `sim`
/// returns, the operation's result), and carry on from its state.
///
/// The executions are tried depth first, each a fresh run from the state
/// before the operation that takes the options its script names, the
/// scripts counted like an odometer. Two things keep that short when an
/// operation reclaims many times (a charge at a limit, page after page):
/// an execution is dropped as soon as it has counted more events than the
/// engine, and a choice point whose every continuation failed is
/// remembered by the model's state there, which is all an operation's
/// course depends on ([`Model::state`]), so that another order of the same
/// choices reaching it is dropped too.
fn explain<W: Debug>(
    op: &Op,
    m: &mut Model,
    r: &Real,
    got: &dyn Debug,
    sim: impl Fn(&mut Model) -> W,
    accept: impl Fn(&W) -> bool,
) -> Result<W, TestCaseError> {
    let seen = Rc::new(Seen::of(m, r));
    let failed = Rc::new(RefCell::new(HashSet::new()));
    let mut script: Vec<usize> = Vec::new();
    for _ in 0..MAX_BRANCHES {
        let mut run = m.clone();
        run.run = Run {
            script: script.clone(),
            seen: Some(seen.clone()),
            failed: failed.clone(),
            ..Run::default()
        };
        let w = sim(&mut run);
        if run.run.dead.is_none() && accept(&w) && seen.matches(&run) {
            run.ahead.clear();
            run.run = Run::default();
            *m = run;
            return Ok(w);
        }
        // The next script: the last choice point with an option left takes
        // its next one, and the points after it start again. A point left
        // behind has had every execution from it tried.
        let (options, states) = (&run.run.options, &run.run.states);
        let mut next: Vec<usize> = (0..options.len())
            .map(|i| script.get(i).copied().unwrap_or(0))
            .collect();
        loop {
            match next.pop() {
                None => {
                    return Err(unexplained(
                        op,
                        m,
                        &seen,
                        got,
                        &sim,
                        "no execution DESIGN.md admits ends where the engine did",
                    ))
                }
                Some(x) if x + 1 < options[next.len()] => {
                    next.push(x + 1);
                    break;
                }
                Some(_) => {
                    let point = next.len();
                    if run.run.dead.is_none_or(|dead| point <= dead) {
                        failed.borrow_mut().insert((point, states[point]));
                    }
                }
            }
        }
        script = next;
    }
    Err(unexplained(
        op,
        m,
        &seen,
        got,
        &sim,
        &format!("no explanation within {MAX_BRANCHES} executions"),
    ))
}

/// The failure of [`explain`]: the model's own execution against what the
/// engine did.
fn unexplained<W: Debug>(
    op: &Op,
    m: &Model,
    seen: &Seen,
    got: &dyn Debug,
    sim: &impl Fn(&mut Model) -> W,
    why: &str,
) -> TestCaseError {
    let mut own = m.clone();
    own.run = Run::default();
    let w = sim(&mut own);
    let mut pages = String::new();
    for k in 0..own.objs.len().max(seen.gone.len()) {
        let before = m.objs.get(k).is_some_and(|o| o.reclaimed);
        let model = own.objs.get(k).is_some_and(|o| o.reclaimed);
        let engine = seen.gone.get(k).copied().unwrap_or(false);
        if before || !(model || engine) {
            continue;
        }
        let (group, age) = own.objs.get(k).map_or(("?".into(), None), |o| {
            (
                o.owner.map_or("?".into(), |g| own.groups[g].path.clone()),
                o.seq,
            )
        });
        pages += &format!(
            "\n    page {k} of {group}, age {age:?}: reclaimed by the model {model}, by the engine {engine}"
        );
    }
    let mut events = String::new();
    for &(i, local, hier) in &seen.events {
        let g = &own.groups[i];
        if g.local != local || g.hier != hier {
            events += &format!(
                "\n    {}: local {:?} hierarchical {:?} by the model, {local:?} {hier:?} by the engine (high, max, oom)",
                g.path, g.local, g.hier
            );
        }
    }
    TestCaseError::fail(format!(
        "{op:?}: {why}.\n  the engine returned {got:?}\n  the model's own execution returns {w:?}\n  \
         its reclaim calls: {:?}\n  pages reclaimed here:{pages}\n  events that differ:{events}",
        own.run.log
    ))
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
                m.groups.push(new_group(path, p));
                if *keep {
                    m.handles.push(i);
                    r.handles.push(g);
                }
            }
        }
        Op::Mkdir { path } => {
            let (parent_path, _) = path.rsplit_once('/').expect("an absolute path");
            let parent = m.live_path(if parent_path.is_empty() {
                "/"
            } else {
                parent_path
            });
            let want = if m.live_path(path).is_some() {
                Want::Kind(ErrorKind::Exists)
            } else if parent.is_none() {
                Want::Kind(ErrorKind::NotFound)
            } else {
                Want::Ok
            };
            if check_outcome(op, r.h.create(path), &want)?.is_some() {
                m.groups
                    .push(new_group(path.clone(), parent.expect("live")));
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
            let got = got.map(|o| r.objs.push(Obj::Kmem(o)));
            let want = explain(
                op,
                m,
                r,
                &got,
                |m| m.charge_pages(group, group, Kind::Kmem, bytes),
                |want| want.admits(&got),
            )?;
            check_outcome(op, got, &want)?;
        }
        Op::KmemFor { by, group, bytes } => {
            let (want, handle) = resolve(m, r, group);
            resolve_matches(op, &want, &handle)?;
            if let (Ok(i), Ok(g)) = (want, handle) {
                let bytes = *bytes;
                let got = r.on(*by, move || KmemPages::alloc_for(&g, bytes));
                let got = got.map(|o| r.objs.push(Obj::Kmem(o)));
                let owner = m.nearest_live(i);
                let want = explain(
                    op,
                    m,
                    r,
                    &got,
                    |m| m.charge_pages(owner, i, Kind::Kmem, bytes),
                    |want| want.admits(&got),
                )?;
                check_outcome(op, got, &want)?;
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
            let got = got.map(|o| r.objs.push(Obj::Page(o)));
            let want = explain(
                op,
                m,
                r,
                &got,
                |m| m.charge_pages(group, group, kind, PAGE_SIZE),
                |want| want.admits(&got),
            )?;
            check_outcome(op, got, &want)?;
        }
        Op::Files { worker, count } => {
            let group = m.workers[*worker];
            let count = *count;
            // The result vector is allocated here, in the root: under
            // `MemcgAlloc` the worker charges what it allocates.
            let mut made = Vec::with_capacity(count);
            let (made, got) = r.workers[*worker].run(move || {
                for _ in 0..count {
                    match UserPage::charge(PageKind::File) {
                        Ok(p) => made.push(Obj::Page(p)),
                        Err(e) => return (made, Err(e)),
                    }
                }
                (made, Ok(()))
            });
            let n = made.len();
            r.objs.extend(made);
            let (_, want) = explain(
                op,
                m,
                r,
                &(n, &got),
                |m| {
                    let mut fits = 0;
                    while fits < count {
                        match m.charge_pages(group, group, Kind::File, PAGE_SIZE) {
                            Want::Ok => fits += 1,
                            want => return (fits, want),
                        }
                    }
                    (fits, Want::Ok)
                },
                |(fits, want)| *fits == n && want.admits(&got),
            )?;
            check_outcome(op, got, &want)?;
        }
        Op::Slab {
            worker,
            cache,
            count,
        } => {
            let worker = m.pick_worker(worker);
            let group = m.workers[worker];
            let cache = r.caches[*cache];
            let (count, slot) = (*count, cache.slot_size());
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
            let n = made.len();
            // S11 leaves to the allocator which slab an object lands in: its
            // charge is its slot, plus its vector entry where that slab has a
            // vector. Read which one each object got, and hold it to that.
            let mut sizes = Vec::with_capacity(n);
            for o in &made {
                let Obj::Slab(o) = o else { unreachable!() };
                let b = o.charged_bytes();
                if group != 0 && b != slot && b != slot + ENTRY_BYTES {
                    return Err(TestCaseError::fail(format!(
                        "{op:?}: an object charged {b} bytes, neither its slot ({slot}) nor its slot and vector entry"
                    )));
                }
                sizes.push(if b == 0 { slot } else { b });
            }
            r.objs.extend(made);
            let (_, want) = explain(
                op,
                m,
                r,
                &(n, &got),
                |m| {
                    let mut fits = 0;
                    while fits < count {
                        let bytes = sizes.get(fits).copied().unwrap_or(slot);
                        match m.charge_slab(group, bytes) {
                            Ok(()) => fits += 1,
                            Err((over, pages)) => return (fits, m.limit_error(over, pages)),
                        }
                    }
                    (fits, Want::Ok)
                },
                |(fits, want)| *fits == n && want.admits(&got),
            )?;
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
            let target = m.live_path(&path);
            let (text, pages) = value.resolve(target.map_or(0, |i| m.usage(i)));
            let got = r.h.write(&path, file, &text);
            let want = explain(
                op,
                m,
                r,
                &got,
                |m| match target {
                    None => Want::Kind(ErrorKind::NotFound),
                    Some(0) => Want::Kind(ErrorKind::Invalid),
                    Some(i) => {
                        if *max {
                            m.groups[i].max = pages;
                        } else {
                            m.groups[i].high = pages;
                        }
                        m.limit_written(i, pages, *max);
                        Want::Ok
                    }
                },
                |want| want.admits(&got),
            )?;
            check_outcome(op, got, &want)?;
        }
        Op::Reclaim { at, bytes } => {
            let path = m.path_of(at);
            let target = m.live_path(&path);
            let got = r.h.write(&path, "memory.reclaim", &bytes.to_string());
            let want = explain(
                op,
                m,
                r,
                &got,
                |m| match target {
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
                },
                |want| want.admits(&got),
            )?;
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

fn new_group(path: String, parent: usize) -> MGroup {
    MGroup {
        path,
        parent: Some(parent),
        live: true,
        max: None,
        high: None,
        local: [0; 3],
        hier: [0; 3],
    }
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

/// Which stocks may still hold charges when the counters are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// As the step left them: every thread's charge stock (pages charged
    /// ahead, and statistics not yet applied) and object stock (bytes
    /// charged ahead, and slab statistics not yet applied).
    AllStocks,
    /// After a quiesce: the charge stocks and the test thread's object
    /// stock are back, the workers' object stocks are not.
    ObjectStocks,
    /// Every stock back: DESIGN.md's numbers are exact.
    Drained,
}

/// Check every step three times: with every stock in play, with the
/// workers' object stocks in play, and drained (see [`Phase`]).
fn compare(op: &Op, m: &Model, r: &Real) -> Result<(), TestCaseError> {
    check(op, m, r, Phase::AllStocks)?;
    r.h.quiesce();
    check(op, m, r, Phase::ObjectStocks)?;
    drain(r);
    check(op, m, r, Phase::Drained)?;
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

/// Compare every counter of every live group with the model, as exactly
/// as `phase` allows.
///
/// A stock holds one context, so at most one per thread holds a context
/// billing a group, and none when no group of its subtree, live or removed,
/// has one. A charge stock holds at most `2 * CHARGE_BATCH` pages, which
/// `memory.current` counts, and its statistics not yet applied stay within
/// `CHARGE_BATCH` pages per statistic; an object stock holds at most a page
/// of bytes, and as much of `slab` not yet applied. Every byte charged through a context is either
/// used by a live object, in a stock, or in the context's sub-page
/// remainder, so `memory.current` is never below the drained usage, and
/// above it by no more than what the stocks can hold: the remainder and
/// the stocks' bytes of a context together make at most one page more than
/// its drained charge per stock holding it.
fn check(op: &Op, m: &Model, r: &Real, phase: Phase) -> Result<(), TestCaseError> {
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
        let (kmem, slab) = (key(&stat, "kmem"), key(&stat, "slab"));
        let want = |kind| m.billed(i, Some(kind)) as u64 * PAGE;
        let usage = m.usage(i) as u64 * PAGE;
        let slab_pages = m.slab_pages(i) as u64 * PAGE;
        // Stocks that may hold a context billing the group: any context
        // whose group is in the subtree or was removed from it, a stock
        // keeping it alive after its last object went.
        let billing = (1..m.groups.len()).any(|c| m.is_under(m.nearest_live(c), i));
        let stocks = match phase {
            _ if !billing => 0,
            Phase::AllStocks => THREADS,
            Phase::ObjectStocks => WORKERS as u64,
            Phase::Drained => 0,
        };
        let charge_stock = if phase == Phase::AllStocks {
            CHARGE_BATCH as u64 * PAGE
        } else {
            0
        };
        let at = |what: &str| format!("after {op:?}, {phase:?}: {path} {what}");
        prop_assert!(
            usage <= current && current - usage <= stocks * (2 * charge_stock + PAGE),
            "{}: {} with {} drained, {} stocks",
            at("memory.current"),
            current,
            usage,
            stocks
        );
        for (name, got, want) in [
            ("anon", anon, want(Kind::Anon)),
            ("file", file, want(Kind::File)),
            ("kmem", kmem, want(Kind::Kmem)),
        ] {
            prop_assert!(
                got.abs_diff(want) <= stocks * charge_stock,
                "{}: {} with {} drained",
                at(name),
                got,
                want
            );
        }
        // S11: bytes of live objects; pages for them, per context.
        let slab_want = m.slab_bytes(i) as u64;
        prop_assert!(
            slab.abs_diff(slab_want) <= stocks * PAGE,
            "{}: {} with {} drained",
            at("slab"),
            slab,
            slab_want
        );
        prop_assert_eq!(
            key(&stat, "slab_reclaimable"),
            0,
            "{}",
            at("slab_reclaimable")
        );
        prop_assert_eq!(
            key(&stat, "slab_unreclaimable"),
            slab,
            "{}",
            at("slab_unreclaimable")
        );
        let kernel_want = want(Kind::Kmem) + slab_pages;
        prop_assert!(
            kernel + stocks * charge_stock >= kernel_want
                && kernel <= kernel_want + stocks * (charge_stock + PAGE),
            "{}: {} with {} drained (kmem {}, slab {})",
            at("kernel"),
            kernel,
            kernel_want,
            kmem,
            slab
        );
        if phase != Phase::AllStocks {
            // §3 Consistency, once the charge stocks' statistics are applied.
            prop_assert_eq!(current, anon + file + kernel, "{}", at("consistency"));
        }
        if phase == Phase::Drained {
            // §3, as stated there: the excess is less than a page per
            // context billing the group, counted exactly: the contexts of
            // the subtree's live groups, of its removed groups still held,
            // and of removed groups whose objects it now bills.
            let contexts = m.contexts_billing(i) as u64;
            let excess = kernel.checked_sub(kmem + slab);
            prop_assert!(
                excess.is_some_and(|e| e == 0 || e < contexts * PAGE),
                "{}: kernel {} vs kmem {} + slab {}: not within less than a \
                 page per context billing it ({})",
                at("consistency"),
                kernel,
                kmem,
                slab,
                contexts
            );
        }
        prop_assert_eq!(
            read("cgroup.stat"),
            format!(
                "nr_descendants {}\nnr_dying_descendants {}\n",
                m.live_descendants(i),
                m.dying_descendants(i)
            ),
            "{}",
            at("cgroup.stat")
        );
        if i == 0 {
            continue;
        }
        prop_assert_eq!(
            read("memory.events"),
            events_text(g.hier),
            "{}",
            at("memory.events")
        );
        prop_assert_eq!(
            read("memory.events.local"),
            events_text(g.local),
            "{}",
            at("memory.events.local")
        );
        prop_assert_eq!(
            read("memory.max"),
            limit_text(g.max),
            "{}",
            at("memory.max")
        );
        prop_assert_eq!(
            read("memory.high"),
            limit_text(g.high),
            "{}",
            at("memory.high")
        );
        let peak: u64 = read("memory.peak").trim().parse().expect("a number");
        prop_assert!(
            peak >= current,
            "{}: {} < current {}",
            at("memory.peak"),
            peak,
            current
        );
        let mut procs: Vec<String> = read("cgroup.procs").lines().map(str::to_string).collect();
        procs.sort();
        let want: Vec<String> = (0..WORKERS)
            .filter(|&w| m.workers[w] == i)
            .map(|w| format!("model-w{w}"))
            .collect();
        prop_assert_eq!(procs, want, "{}", at("cgroup.procs"));
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

/// The cases CI runs are the same on every run (a fixed seed), so that a
/// failure is reproducible and CI is not a lottery; `PROPTEST_RNG_SEED`
/// picks other cases (any seed, or `random`-free exploration by setting a
/// new one per run).
fn seed() -> proptest::test_runner::RngSeed {
    use proptest::test_runner::RngSeed;
    match ProptestConfig::default().rng_seed {
        RngSeed::Random => RngSeed::Fixed(0x6d65_6d63_6700_0017),
        chosen => chosen,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, rng_seed: seed(), ..ProptestConfig::default() })]

    /// DESIGN.md §8, S1–S5, S7, S10, S11, §4's reclaim order and
    /// consistency: after every step of a random sequence, every live
    /// group's counters, stats (slab bytes included), events and descendant
    /// counts are within what stocks may hold of the reference model's with
    /// stocks in play, and equal to them once drained; what reclaim took is
    /// what DESIGN.md admits; after freeing and removing everything all
    /// counters are 0 and nothing is left over.
    #[test]
    fn every_counter_matches_the_reference_model_after_every_step(
        ops in sequence()
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
