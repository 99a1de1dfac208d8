//! The report's markdown tables, DESIGN.md §7's targets next to the figures,
//! and the machine it was measured on.

use std::fmt::Write as _;

use crate::contender::{Role, MEMCG, MEMCG_GLOBAL, MEMCG_GLOBAL_ROOT, MEMCG_ROOT};
use crate::global::{Charged, GlobalChoice, Rss};
use crate::instructions::Counts;
use crate::removal::{self, Caches, Case, Removal};
use crate::scaling::Scaling;
use crate::utilization::{self, Utilization};
use crate::workload::Workload;

/// One measured row.
#[derive(Clone, Debug)]
pub struct Row {
    /// The workload measured.
    pub workload: Workload,
    /// The contender's name.
    pub allocator: &'static str,
    /// Whether the row counts toward the fastest peer.
    pub role: Role,
    /// Median nanoseconds per operation (NaN if it panicked).
    pub ns_per_op: f64,
    /// The resident memory of the child process that measured the row, for
    /// the workloads on the global allocator.
    pub rss: Option<Rss>,
    /// The panic message, if the allocator panicked on this workload.
    pub panicked: Option<String>,
}

/// The fastest peer's ns/op for `w`, if any peer ran it without panicking.
pub fn fastest_peer(rows: &[Row], w: Workload) -> Option<f64> {
    rows.iter()
        .filter(|r| r.workload == w && r.role == Role::Peer && r.panicked.is_none())
        .map(|r| r.ns_per_op)
        .min_by(f64::total_cmp)
}

/// The report's table: one line per row, in the order given, with each row's
/// ns/op divided by the fastest peer of its workload.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| workload | allocator | ns/op | ratio to fastest peer |\n|---|---|---:|---:|\n",
    );
    for r in rows {
        if let Some(msg) = &r.panicked {
            let _ = writeln!(
                out,
                "| {} | {} | panicked: {msg} | — |",
                r.workload.name(),
                r.allocator
            );
            continue;
        }
        let ratio = match fastest_peer(rows, r.workload) {
            Some(best) => format!("{:.2}", r.ns_per_op / best),
            None => "—".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {} |",
            r.workload.name(),
            r.allocator,
            r.ns_per_op,
            ratio
        );
    }
    out
}

/// What the group of each child charging one was charged, by workload: its
/// `memory.peak` while the workload ran, and its `memory.current` after
/// (quiesced).
pub fn charges(charges: &[(Workload, &str, Charged)]) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut out = String::from(
        "The child's workload threads are in a group of `memcg::global()`.\n\n\
         | workload | allocator | `memory.peak` MiB | `memory.current` after MiB |\n\
         |---|---|---:|---:|\n",
    );
    for (w, allocator, c) in charges {
        let _ = writeln!(
            out,
            "| {} | {allocator} | {:.2} | {:.2} |",
            w.name(),
            mib(c.peak),
            mib(c.current)
        );
    }
    out
}

/// The ns/op of `allocator` on `w` if it ran: `Err` with the panic message
/// if it panicked.
fn ns_of<'r>(rows: &'r [Row], w: Workload, allocator: &str) -> Option<Result<f64, &'r str>> {
    rows.iter()
        .find(|r| r.workload == w && r.allocator == allocator)
        .map(|r| match &r.panicked {
            Some(msg) => Err(msg.as_str()),
            None => Ok(r.ns_per_op),
        })
}

/// A §7 goal on a figure: at most, or at least, a bound.
#[derive(Clone, Copy, Debug)]
enum Goal {
    AtMost(f64),
    AtLeast(f64),
}

impl Goal {
    fn verdict(self, figure: f64) -> String {
        match self {
            Goal::AtMost(bound) if figure <= bound => "met".to_owned(),
            Goal::AtMost(bound) => {
                format!(
                    "missed: {:.0}% over the goal",
                    (figure / bound - 1.0) * 100.0
                )
            }
            Goal::AtLeast(bound) if figure >= bound => "met".to_owned(),
            Goal::AtLeast(bound) => {
                format!(
                    "missed: {:.1} points under the goal",
                    (bound - figure) * 100.0
                )
            }
        }
    }
}

/// The pairs of rows DESIGN.md §7's "accounting on vs off" compares: the
/// same allocator with the thread in a group, and in none.
pub const ON_OFF_PAIRS: [(&str, &str, &str); 2] = [
    (
        "global allocator (the §7 figure)",
        MEMCG_GLOBAL,
        MEMCG_GLOBAL_ROOT,
    ),
    ("kmalloc caches", MEMCG, MEMCG_ROOT),
];

/// The ratio of `on` to `off` on `w`, if both ran without panicking.
pub fn on_off(rows: &[Row], w: Workload, on: &str, off: &str) -> Option<f64> {
    match (ns_of(rows, w, on)?, ns_of(rows, w, off)?) {
        (Ok(on), Ok(off)) => Some(on / off),
        _ => None,
    }
}

/// DESIGN.md §7 "accounting on vs off": each pair of [`ON_OFF_PAIRS`] on
/// every workload both ran, taking turns in one process; the goal is at
/// most 3% apart. Not the real-world suite: its two rows come from two
/// processes (so that their peak RSS stays apart), and differ by more than
/// the group.
pub fn accounting(rows: &[Row]) -> String {
    let mut out = String::from(
        "| path | workload | in a group ns/op | in no group ns/op | on / off | §7 goal | verdict |\n\
         |---|---|---:|---:|---:|---|---|\n",
    );
    for (path, on_name, off_name) in ON_OFF_PAIRS {
        for w in Workload::ALL.into_iter().filter(|w| !w.is_real_world()) {
            let (Some(on), Some(off)) = (ns_of(rows, w, on_name), ns_of(rows, w, off_name)) else {
                continue;
            };
            let (on, off) = match (on, off) {
                (Ok(on), Ok(off)) => (on, off),
                (Err(msg), _) | (_, Err(msg)) => {
                    let _ = writeln!(
                        out,
                        "| {path} | {} | — | — | — | within 3% | not measured: panicked: {msg} |",
                        w.name()
                    );
                    continue;
                }
            };
            let ratio = on / off;
            // "At most 3% apart" either way: a charged row 3% *faster* is as
            // suspicious as one 3% slower.
            let apart = ratio.max(1.0 / ratio) - 1.0;
            let verdict = if apart <= 0.03 {
                "met".to_owned()
            } else {
                format!("missed: {:.1}% apart", apart * 100.0)
            };
            let _ = writeln!(
                out,
                "| {path} | {} | {on:.1} | {off:.1} | {ratio:.3} | within 3% | {verdict} |",
                w.name(),
            );
        }
    }
    out
}

/// DESIGN.md §7's bound on memcg over the fastest peer for `w` (on the
/// real-world suite, also on its peak RSS over the smallest peer's).
pub fn goal_of(w: Workload) -> f64 {
    match w {
        Workload::Single64 | Workload::Churn => 1.0,
        Workload::Remote => 1.5,
        Workload::Std => 1.1,
        Workload::Larson | Workload::Xmalloc | Workload::Mstress | Workload::CacheScratch => 1.25,
        Workload::Json | Workload::Strings | Workload::Btree => 1.05,
    }
}

/// DESIGN.md §7's bound on `memcg-root (global allocator)` over the fastest
/// peer, on every workload (`root_ratios`, S10).
pub const ROOT_GOAL: f64 = 1.0;

/// The `allocator` row on `w` over the fastest peer, if both ran.
pub fn ratio_to_fastest_peer(rows: &[Row], w: Workload, allocator: &str) -> Option<f64> {
    match ns_of(rows, w, allocator)? {
        Ok(ns) => Some(ns / fastest_peer(rows, w)?),
        Err(_) => None,
    }
}

/// DESIGN.md §7 for every workload: the `memcg (global allocator)` row (the
/// path programs use, the §7 figure) over the fastest peer, with the
/// `memcg` row (the kmalloc caches called directly) beside it where it ran.
pub fn targets(rows: &[Row]) -> String {
    let mut out = String::from(
        "| workload | memcg (global allocator) / fastest peer | memcg (kmalloc caches) / fastest peer | §7 goal | verdict |\n\
         |---|---:|---:|---|---|\n",
    );
    for w in Workload::ALL {
        let Some(ours) = ns_of(rows, w, MEMCG_GLOBAL) else {
            continue;
        };
        let bound = goal_of(w);
        let goal = if bound == 1.0 {
            "no slower than the fastest peer".to_owned()
        } else {
            format!("within {bound}x of the fastest peer")
        };
        let kmalloc =
            ratio_to_fastest_peer(rows, w, MEMCG).map_or("—".to_owned(), |r| format!("{r:.2}"));
        let (ratio, verdict) = match (ours, fastest_peer(rows, w)) {
            (Err(msg), _) => ("—".to_owned(), format!("not measured: panicked: {msg}")),
            (Ok(_), None) => ("—".to_owned(), "not measured: no peer ran".to_owned()),
            (Ok(ns), Some(best)) => (
                format!("{:.2}", ns / best),
                Goal::AtMost(bound).verdict(ns / best),
            ),
        };
        let _ = writeln!(
            out,
            "| {} | {ratio} | {kmalloc} | {goal} | {verdict} |",
            w.name()
        );
    }
    out
}

/// DESIGN.md §7 `root_ratios`: the `memcg-root (global allocator)` row
/// (threads in no group, nothing charged) over the fastest peer, on every
/// workload it ran.
pub fn root_targets(rows: &[Row]) -> String {
    let mut out = String::from(
        "| workload | memcg-root (global allocator) / fastest peer | §7 goal | verdict |\n\
         |---|---:|---|---|\n",
    );
    for w in Workload::ALL {
        let Some(ours) = ns_of(rows, w, MEMCG_GLOBAL_ROOT) else {
            continue;
        };
        let (ratio, verdict) = match (ours, fastest_peer(rows, w)) {
            (Err(msg), _) => ("—".to_owned(), format!("not measured: panicked: {msg}")),
            (Ok(_), None) => ("—".to_owned(), "not measured: no peer ran".to_owned()),
            (Ok(ns), Some(best)) => (
                format!("{:.2}", ns / best),
                Goal::AtMost(ROOT_GOAL).verdict(ns / best),
            ),
        };
        let _ = writeln!(
            out,
            "| {} | {ratio} | no slower than the fastest peer | {verdict} |",
            w.name()
        );
    }
    out
}

/// The smallest peak RSS of a peer's child on `w`, if any peer reported one.
pub fn smallest_peer_rss(rows: &[Row], w: Workload) -> Option<u64> {
    rows.iter()
        .filter(|r| r.workload == w && r.role == Role::Peer && r.panicked.is_none())
        .filter_map(|r| r.rss.map(|rss| rss.peak))
        .min()
}

/// The peak RSS of `allocator`'s child on `w` over the smallest peer's, if
/// both are known.
pub fn rss_ratio(rows: &[Row], w: Workload, allocator: &str) -> Option<f64> {
    let ours = rows
        .iter()
        .find(|r| r.workload == w && r.allocator == allocator && r.panicked.is_none())?
        .rss?
        .peak;
    Some(ours as f64 / smallest_peer_rss(rows, w)? as f64)
}

/// DESIGN.md §7 "real-world": every row of the real-world suite with its
/// time and its child's peak RSS, each over the best peer's, then memcg's
/// global allocator (in a group, and in none) against the goal on both.
pub fn real_world(rows: &[Row]) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let ratio = |x: Option<f64>| x.map_or("—".to_owned(), |x| format!("{x:.2}"));
    let mut out = String::from(
        "| workload | allocator | ns/op | time / fastest peer | peak RSS MiB | RSS at start MiB | \
         peak RSS / smallest peer |\n|---|---|---:|---:|---:|---:|---:|\n",
    );
    for r in rows.iter().filter(|r| r.workload.is_real_world()) {
        let (w, name) = (r.workload, r.allocator);
        if let Some(msg) = &r.panicked {
            let _ = writeln!(
                out,
                "| {} | {name} | panicked: {msg} | — | — | — | — |",
                w.name()
            );
            continue;
        }
        let (peak, start) = r.rss.map_or(("—".to_owned(), "—".to_owned()), |rss| {
            (
                format!("{:.1}", mib(rss.peak)),
                format!("{:.1}", mib(rss.start)),
            )
        });
        let _ = writeln!(
            out,
            "| {} | {name} | {:.1} | {} | {peak} | {start} | {} |",
            w.name(),
            r.ns_per_op,
            ratio(ratio_to_fastest_peer(rows, w, name)),
            ratio(rss_ratio(rows, w, name)),
        );
    }
    out.push_str(
        "\n| workload | row | time / fastest peer | peak RSS / smallest peer | §7 goal | verdict |\n\
         |---|---|---:|---:|---|---|\n",
    );
    for w in Workload::REAL_WORLD {
        for name in [MEMCG_GLOBAL, MEMCG_GLOBAL_ROOT] {
            if ns_of(rows, w, name).is_none() {
                continue;
            }
            let (time, rss) = (
                ratio_to_fastest_peer(rows, w, name),
                rss_ratio(rows, w, name),
            );
            let bound = if name == MEMCG_GLOBAL {
                goal_of(w)
            } else {
                ROOT_GOAL
            };
            let verdict = match (time, rss) {
                (Some(time), Some(rss)) if time <= bound && rss <= goal_of(w) => "met".to_owned(),
                (Some(time), Some(rss)) => format!(
                    "missed: time {}, peak RSS {}",
                    over(time, bound),
                    over(rss, goal_of(w))
                ),
                _ => "not measured".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | {name} | {} | {} | time at most {bound}x, peak RSS at most {}x | {verdict} |",
                w.name(),
                ratio(time),
                ratio(rss),
                goal_of(w),
            );
        }
    }
    out
}

/// How far `figure` is over `bound`, in a verdict that may hold two.
fn over(figure: f64, bound: f64) -> String {
    if figure <= bound {
        "met".to_owned()
    } else {
        format!("{:.0}% over", (figure / bound - 1.0) * 100.0)
    }
}

/// DESIGN.md §7 "instructions per 64-byte alloc+free pair": every allocator
/// counted, over mimalloc's, memcg's rows held to at most mimalloc's; then
/// the allocators not counted, with why.
pub fn instructions(counts: &Counts) -> String {
    let mimalloc = counts
        .counted
        .iter()
        .find(|c| c.target.choice == GlobalChoice::Mimalloc)
        .map(|c| c.per_pair);
    let mut out = String::from(
        "| allocator | instructions per pair | / mimalloc's | §7 goal | verdict |\n\
         |---|---:|---:|---|---|\n",
    );
    for c in &counts.counted {
        let over = mimalloc.map(|m| c.per_pair / m);
        let (goal, verdict) = match (c.target.choice, over) {
            (GlobalChoice::Memcg, Some(over)) => {
                ("at most mimalloc's", Goal::AtMost(1.0).verdict(over))
            }
            (GlobalChoice::Memcg, None) => ("at most mimalloc's", "not measured".to_owned()),
            _ => ("—", String::new()),
        };
        let _ = writeln!(
            out,
            "| {} | {:.1} | {} | {goal} | {verdict} |",
            c.target.row(),
            c.per_pair,
            over.map_or("—".to_owned(), |o| format!("{o:.2}")),
        );
    }
    for (target, why) in &counts.failed {
        let _ = writeln!(out, "| {} | not counted: {why} | — | | |", target.row());
    }
    out
}

/// DESIGN.md §7 removal: every case's median time, its spread and the slabs
/// the removal looked at, then, per cache condition, the ratio of the live
/// case to the empty one (the §7 figure) and to the one with few objects.
pub fn removal(removals: &[Removal]) -> String {
    let mut out = String::from(
        "| CPU caches | group removed | µs (median) | min – max | slabs looked at |\n\
         |---|---|---:|---:|---:|\n",
    );
    for r in removals {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.1} – {:.1} | {} |",
            r.caches.label(),
            r.case.label(),
            r.micros.median,
            r.micros.min,
            r.micros.max,
            r.slabs_looked_at
        );
    }
    out.push_str("\n| CPU caches | ratio | value | goal | verdict |\n|---|---|---:|---|---|\n");
    for caches in Caches::ALL {
        let median = |case| {
            removals
                .iter()
                .find(|r| r.case == case && r.caches == caches)
                .map(|r| r.micros.median)
        };
        let (Some(live), Some(empty), Some(few), Some(fragmented)) = (
            median(Case::Live),
            median(Case::Empty),
            median(Case::Few),
            median(Case::Fragmented),
        ) else {
            continue;
        };
        let _ = write!(
            out,
            "| {c} | {n} fragmented / none (the §7 figure) | {:.2} | within 1.5x (§7) | {} |\n\
             | {c} | {n} in full slabs / none | {:.2} | within 1.5x | {} |\n\
             | {c} | {n} / {} (same cache, 1000x the objects) | {:.2} | no growth (S8) | {} |\n",
            fragmented / empty,
            Goal::AtMost(1.5).verdict(fragmented / empty),
            live / empty,
            Goal::AtMost(1.5).verdict(live / empty),
            removal::FEW_OBJECTS,
            live / few,
            Goal::AtMost(1.5).verdict(live / few),
            n = removal::LIVE_OBJECTS,
            c = caches.label(),
        );
    }
    out
}

/// DESIGN.md §7 slab utilization, with rounding separated from slab waste.
pub fn utilization(u: &Utilization) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let config = u.config.expect("a measured utilization has its config");
    let mut out = format!(
        "{} groups, {} live objects of {}–{} bytes, {} threads, {} rounds of {} \
         replacements per group\n\n",
        config.groups,
        u.objects,
        utilization::SIZES.0,
        utilization::SIZES.1,
        utilization::THREADS,
        utilization::ROUNDS,
        config.live_per_group
    );
    out.push_str("| bytes | MiB |\n|---|---:|\n");
    let _ = writeln!(
        out,
        "| requested by live objects | {:.2} |",
        mib(u.requested_bytes)
    );
    let _ = writeln!(
        out,
        "| live objects at slot size | {:.2} |",
        mib(u.slot_bytes)
    );
    let _ = writeln!(
        out,
        "| `slab`, summed over groups | {:.2} |",
        mib(u.slab_bytes)
    );
    out.push_str("\n| utilization | value | §7 goal | verdict |\n|---|---:|---|---|\n");
    let _ = writeln!(
        out,
        "| requested / slab (the §7 figure) | {:.1}% | at least {:.0}% | {} |",
        u.of_requested() * 100.0,
        config.goal() * 100.0,
        Goal::AtLeast(config.goal()).verdict(u.of_requested())
    );
    let _ = writeln!(
        out,
        "| slot / slab (slab-level waste only) | {:.1}% | | |",
        u.of_slots() * 100.0
    );
    let _ = writeln!(
        out,
        "| requested / slot (size-class rounding only) | {:.1}% | | |",
        u.in_slots() * 100.0
    );
    let _ = writeln!(
        out,
        "| requested / fewest slabs (the best per-group caches can do) | {:.1}% | | |",
        u.best_possible() * 100.0
    );
    let _ = writeln!(
        out,
        "| requested / slab after reclaiming empty slabs | {:.1}% | | |",
        u.requested_bytes as f64 / u.slab_bytes_after_reclaim as f64 * 100.0
    );
    out
}

/// The most a removed group with live objects may leave behind (DESIGN.md
/// §7): its kmem context, at most 128 bytes, and no dead cache.
pub const LEFTOVER_GOAL_BYTES: usize = 128;

/// DESIGN.md §7 "what a removed group with live objects leaves behind": what
/// the group removed with 1M live objects (fragmented) left behind, from
/// `Hierarchy::leftovers` — its kmem context and dead caches, not the slabs
/// holding the objects (charged to the parent) — against §7's goal of its
/// context alone, at most [`LEFTOVER_GOAL_BYTES`]. For scale, the size of a
/// group: measured on the heap (`group_heap`, see [`crate::footprint`]) when
/// possible, and the library's own estimate.
pub fn pinned(removals: &[Removal], group_heap: Option<f64>) -> String {
    let estimate = memcg::group_size();
    let mut out = format!(
        "| bytes | value |\n|---|---:|\n\
         | `memcg::group_size()` (the library's estimate of a group) | {estimate} |\n"
    );
    if let Some(heap) = group_heap {
        let _ = writeln!(
            out,
            "| heap of one online group, measured (glibc `mallinfo2`, 1000 groups) | {heap:.0} |"
        );
    }
    let _ = writeln!(
        out,
        "| `memcg::context_size()` | {} |",
        memcg::context_size()
    );
    let Some(removed) = removals.iter().find(|r| r.case == Case::Fragmented) else {
        return out;
    };
    let l = removed.leftovers;
    let verdict = if l.pinned_bytes <= LEFTOVER_GOAL_BYTES && l.dead_caches == 0 {
        "met".to_owned()
    } else {
        format!(
            "missed: {} B in {} context(s) and {} dead cache(s)",
            l.pinned_bytes, l.dead_contexts, l.dead_caches
        )
    };
    let _ = write!(
        out,
        "| pinned after removing the group with {} live objects \
         ({} context, {} dead cache; `Hierarchy::leftovers().pinned_bytes`) | {} |\n\
         | slab bytes still held by dead caches (charged to the parent) | {} |\n\n\
         | figure | value | §7 goal | verdict |\n|---|---:|---|---|\n\
         | left behind by the removed group | {} B | its context only, at most {LEFTOVER_GOAL_BYTES} B; no cache | {verdict} |\n",
        removal::LIVE_OBJECTS,
        l.dead_contexts,
        l.dead_caches,
        l.pinned_bytes,
        l.dead_cache_slab_bytes,
        l.pinned_bytes,
    );
    out
}

/// DESIGN.md §7 "two threads charging one group": each path's ns per pair
/// with one and two threads, and the throughput ratio.
pub fn scaling(scalings: &[Scaling]) -> String {
    let mut out = String::from(
        "| path | 1 thread ns/pair | 2 threads ns/pair (over both) | throughput 2 / 1 | §7 goal | verdict |\n\
         |---|---:|---:|---:|---|---|\n",
    );
    for s in scalings {
        let ratio = s.ratio();
        let (goal, verdict) = if !s.path.has_goal() {
            ("—", "(what the machine allows)".to_owned())
        } else if ratio >= 1.8 {
            ("at least 1.8x", "met".to_owned())
        } else {
            (
                "at least 1.8x",
                format!("missed: {:.0}% under the goal", (1.0 - ratio / 1.8) * 100.0),
            )
        };
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {ratio:.2} | {goal} | {verdict} |",
            s.path.label(),
            s.one.median,
            s.two.median,
        );
    }
    out
}

/// The CPU model, the cores this process may use, and the compiler, as
/// lines of the report.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let remote = match crate::affinity::two_cpus() {
        Some([producer, consumer]) => {
            format!("producer pinned to cpu {producer}, consumer to cpu {consumer}")
        }
        None => "unpinned (fewer than two cores available)".to_owned(),
    };
    let snmalloc = if env!("MEMCG_BENCH_SNMALLOC_NDEBUG") == "true" {
        "built with -DNDEBUG"
    } else {
        "WARNING: built without -DNDEBUG, so with its debug assertions on; \
         set CXXFLAGS=-DNDEBUG when building this report"
    };
    format!(
        "- cpu: {cpu}, {cores} cores available\n- rustc: {}\n- remote: {remote}\n\
         - snmalloc: {snmalloc}\n",
        env!("MEMCG_BENCH_RUSTC")
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A measured row, for the tests of this module and of `summary`.
    pub(crate) fn row(
        workload: Workload,
        allocator: &'static str,
        role: Role,
        ns_per_op: f64,
    ) -> Row {
        Row {
            workload,
            allocator,
            role,
            ns_per_op,
            rss: None,
            panicked: None,
        }
    }

    #[test]
    fn ratio_is_to_the_fastest_peer_of_the_same_workload() {
        let rows = [
            row(Workload::Single64, "a", Role::Peer, 20.0),
            row(Workload::Single64, "b", Role::Peer, 10.0),
            row(Workload::Single64, "ours", Role::Own, 5.0),
            row(Workload::Churn, "a", Role::Peer, 40.0),
        ];
        let t = table(&rows);
        assert!(t.contains("| single64 | a | 20.0 | 2.00 |"), "{t}");
        assert!(t.contains("| single64 | b | 10.0 | 1.00 |"), "{t}");
        assert!(t.contains("| single64 | ours | 5.0 | 0.50 |"), "{t}");
        assert!(t.contains("| churn | a | 40.0 | 1.00 |"), "{t}");
    }

    #[test]
    fn accounting_compares_charged_with_root_either_way() {
        let rows = [
            row(Workload::Single64, MEMCG, Role::Own, 10.4),
            row(Workload::Single64, MEMCG_ROOT, Role::Own, 10.0),
            row(Workload::Churn, MEMCG, Role::Own, 9.0),
            row(Workload::Churn, MEMCG_ROOT, Role::Own, 10.0),
            row(Workload::Std, MEMCG_GLOBAL, Role::Own, 101.0),
            row(Workload::Std, MEMCG_GLOBAL_ROOT, Role::Own, 100.0),
        ];
        let t = accounting(&rows);
        assert!(
            t.contains(
                "| kmalloc caches | single64 | 10.4 | 10.0 | 1.040 | within 3% | missed: 4.0% apart |"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "| kmalloc caches | churn | 9.0 | 10.0 | 0.900 | within 3% | missed: 11.1% apart |"
            ),
            "{t}"
        );
        assert!(
            t.contains("| global allocator (the §7 figure) | std | 101.0 | 100.0 | 1.010 | within 3% | met |"),
            "{t}"
        );
        assert_eq!(
            on_off(&rows, Workload::Std, MEMCG_GLOBAL, MEMCG_GLOBAL_ROOT),
            Some(1.01)
        );
        assert_eq!(on_off(&rows, Workload::Remote, MEMCG, MEMCG_ROOT), None);
    }

    #[test]
    fn targets_hold_the_global_allocator_row_to_each_workloads_goal() {
        let rows = [
            row(Workload::Larson, "a", Role::Peer, 20.0),
            row(Workload::Larson, "b", Role::Peer, 10.0),
            row(Workload::Larson, MEMCG_GLOBAL, Role::Own, 13.0),
            row(Workload::Single64, "a", Role::Peer, 4.0),
            row(Workload::Single64, MEMCG_GLOBAL, Role::Own, 4.0),
            row(Workload::Single64, MEMCG, Role::Own, 2.0),
        ];
        let t = targets(&rows);
        assert!(
            t.contains("| larson | 1.30 | — | within 1.25x of the fastest peer | missed: 4% over the goal |"),
            "{t}"
        );
        assert!(
            t.contains("| single64 | 1.00 | 0.50 | no slower than the fastest peer | met |"),
            "{t}"
        );
        assert_eq!(
            ratio_to_fastest_peer(&rows, Workload::Larson, MEMCG_GLOBAL),
            Some(1.3)
        );
        assert_eq!(
            ratio_to_fastest_peer(&rows, Workload::Mstress, MEMCG_GLOBAL),
            None
        );
    }

    #[test]
    fn each_workload_has_its_section_7_goal() {
        assert_eq!(goal_of(Workload::Single64), 1.0);
        assert_eq!(goal_of(Workload::Remote), 1.5);
        assert_eq!(goal_of(Workload::Std), 1.1);
        assert_eq!(goal_of(Workload::CacheScratch), 1.25);
    }

    #[test]
    fn a_panicked_row_has_no_number_and_no_say_in_the_fastest_peer() {
        let mut broken = row(Workload::Remote, "b", Role::Peer, f64::NAN);
        broken.panicked = Some("boom".into());
        let mut ours = row(Workload::Remote, MEMCG_GLOBAL, Role::Own, f64::NAN);
        ours.panicked = Some("a refilled slab has free objects".into());
        let rows = [row(Workload::Remote, "a", Role::Peer, 40.0), broken, ours];
        let t = table(&rows);
        assert!(t.contains("| remote | a | 40.0 | 1.00 |"), "{t}");
        assert!(t.contains("| remote | b | panicked: boom | — |"), "{t}");
        assert_eq!(fastest_peer(&rows, Workload::Remote), Some(40.0));
        let targets = targets(&rows);
        assert!(
            targets.contains("not measured: panicked: a refilled slab has free objects"),
            "{targets}"
        );
    }

    #[test]
    fn charges_are_shown_in_mib() {
        let t = charges(&[(
            Workload::Larson,
            "ours",
            Charged {
                peak: 16 << 20,
                current: 1 << 19,
            },
        )]);
        assert!(t.contains("| larson | ours | 16.00 | 0.50 |"), "{t}");
    }

    fn with_rss(mut row: Row, peak: u64) -> Row {
        row.rss = Some(Rss {
            peak,
            start: 4 << 20,
        });
        row
    }

    #[test]
    fn real_world_rows_show_time_and_peak_rss_against_the_best_peers() {
        let mib = 1 << 20;
        let rows = [
            with_rss(row(Workload::Btree, "a", Role::Peer, 10.0), 200 * mib),
            with_rss(row(Workload::Btree, "b", Role::Peer, 20.0), 100 * mib),
            with_rss(
                row(Workload::Btree, MEMCG_GLOBAL, Role::Own, 10.4),
                104 * mib,
            ),
            with_rss(
                row(Workload::Btree, MEMCG_GLOBAL_ROOT, Role::Own, 9.0),
                120 * mib,
            ),
            row(Workload::Std, "a", Role::Peer, 1.0),
        ];
        let t = real_world(&rows);
        assert!(
            t.contains("| btree | b | 20.0 | 2.00 | 100.0 | 4.0 | 1.00 |"),
            "{t}"
        );
        assert!(
            t.contains("| btree | a | 10.0 | 1.00 | 200.0 | 4.0 | 2.00 |"),
            "{t}"
        );
        assert!(!t.contains("| std |"), "{t}");
        assert!(
            t.contains("| btree | memcg (global allocator) | 1.04 | 1.04 | time at most 1.05x, peak RSS at most 1.05x | met |"),
            "{t}"
        );
        assert!(
            t.contains("| btree | memcg-root (global allocator) | 0.90 | 1.20 | time at most 1x, peak RSS at most 1.05x | missed: time met, peak RSS 14% over |"),
            "{t}"
        );
        assert_eq!(smallest_peer_rss(&rows, Workload::Btree), Some(100 * mib));
        assert_eq!(rss_ratio(&rows, Workload::Btree, MEMCG_GLOBAL), Some(1.04));
        assert_eq!(rss_ratio(&rows, Workload::Std, "a"), None, "no RSS");
    }

    #[test]
    fn root_rows_are_held_to_the_fastest_peer() {
        let rows = [
            row(Workload::Churn, "a", Role::Peer, 10.0),
            row(Workload::Churn, MEMCG_GLOBAL_ROOT, Role::Own, 12.0),
            row(Workload::Single64, "a", Role::Peer, 10.0),
            row(Workload::Single64, MEMCG_GLOBAL_ROOT, Role::Own, 9.0),
        ];
        let t = root_targets(&rows);
        assert!(
            t.contains(
                "| churn | 1.20 | no slower than the fastest peer | missed: 20% over the goal |"
            ),
            "{t}"
        );
        assert!(
            t.contains("| single64 | 0.90 | no slower than the fastest peer | met |"),
            "{t}"
        );
    }

    #[test]
    fn instructions_are_held_to_mimallocs() {
        use crate::instructions::{InstructionCount, Target};
        let count = |i: usize, per_pair| InstructionCount {
            target: Target::ALL[i],
            per_pair,
        };
        let counts = Counts {
            counted: vec![count(0, 120.0), count(1, 90.0), count(2, 100.0)],
            failed: vec![(Target::ALL[4], "no address space".to_owned())],
        };
        let t = instructions(&counts);
        assert!(
            t.contains("| memcg (global allocator) | 120.0 | 1.20 | at most mimalloc's | missed: 20% over the goal |"),
            "{t}"
        );
        assert!(
            t.contains(
                "| memcg-root (global allocator) | 90.0 | 0.90 | at most mimalloc's | met |"
            ),
            "{t}"
        );
        assert!(t.contains("| mimalloc | 100.0 | 1.00 | — |  |"), "{t}");
        assert!(
            t.contains("| snmalloc | not counted: no address space |"),
            "{t}"
        );
    }

    #[test]
    fn goals_say_by_how_much_they_are_missed() {
        assert_eq!(Goal::AtMost(1.0).verdict(1.0), "met");
        assert_eq!(Goal::AtMost(2.0).verdict(3.0), "missed: 50% over the goal");
        assert_eq!(Goal::AtLeast(0.85).verdict(0.9), "met");
        assert_eq!(
            Goal::AtLeast(0.85).verdict(0.8),
            "missed: 5.0 points under the goal"
        );
    }
}
