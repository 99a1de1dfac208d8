//! `removal-cost`: how long `rmdir` takes against what the group leaves
//! behind.
//!
//! A group is created, a thread enters it and allocates N slab objects (or
//! charges N anon pages), leaves, and the group is removed, timed. kmem is
//! reparented by switching the context's pointer: the time does not grow
//! with N (S8). User pages are walked to the parent one by one: the time
//! grows linearly with N (S7).
//!
//! Slab objects are measured in both designs, from two caches of one size.
//! In a shared cache (S11, the default) the objects sit in slabs of all
//! groups and a removal touches no slab at all. In an isolated cache (S6)
//! the removal also kills the group's child cache, which looks only at its
//! empty and partial slabs, never at the full ones: still not N. The
//! engine's own count of the slabs a removal looked at
//! (`last_removal_slabs`) shows both without a clock: 0 for shared caches,
//! a few for isolated ones, whatever N.
//!
//! Every removal starts with cold CPU caches: the simulator first writes a
//! 64 MiB buffer, as large as the most objects measured. Otherwise the
//! memory a large group was just filled with would evict the hierarchy's
//! structures for large counts only, and the clock would measure that.
//!
//! After each measurement the objects are freed from the root (remote frees,
//! into the dead cache for isolated ones, uncharging the parent) and the
//! parent must be back at 0. Measurements run in an order shuffled by the
//! seed, repeated `rounds` times; the report gives medians.

use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use memcg::{Hierarchy, PageKind, SlabCache, SlabObject, UserPage};
use serde::Serialize;

use super::plot::{Panel, Series, Unit};
use super::report::{Report, Samples, Table};
use super::scenario::RemovalCost;
use super::units::human_ns;
use super::{settle_to_empty, stat_bytes, stream, SimError};

/// The sampled columns, in CSV order: one row per measurement, one of
/// `kmem_objects` (shared cache), `isolated_objects` (isolated cache) or
/// `anon_pages` non-zero.
const COLUMNS: [&str; 7] = [
    "rep",
    "kmem_objects",
    "isolated_objects",
    "anon_pages",
    "slabs_looked_at",
    "parent_bytes_after",
    "rmdir_ns",
];

/// The buffer written before each removal to leave the CPU caches cold.
const SWEEP_BYTES: usize = 64 << 20;

const PARENT: &str = "/bench";
const VICTIM: &str = "/bench/victim";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    /// Objects of a shared cache (S11).
    KmemObjects,
    /// Objects of an isolated cache (S6).
    IsolatedObjects,
    AnonPages,
}

/// One measured point of the summary: the median over the repetitions.
#[derive(Debug, Serialize)]
struct Point {
    kind: Kind,
    count: usize,
    median_rmdir_ns: u64,
    min_rmdir_ns: u64,
    slabs_looked_at: usize,
}

/// The summary of a removal-cost run, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Summary {
    scenario: &'static str,
    seed: u64,
    rounds: usize,
    points: Vec<Point>,
    /// Median rmdir time with the most objects over that with the fewest,
    /// shared cache.
    kmem_growth: f64,
    /// The same with an isolated cache.
    isolated_kmem_growth: f64,
    /// Median rmdir time with the most anon pages over that with the fewest.
    anon_growth: f64,
    /// Median rmdir time per anon page at the largest count.
    anon_ns_per_page: f64,
    /// The root's `memory.current` after every object was freed and every
    /// group removed: must be 0.
    drift_bytes: i128,
    elapsed_ms: u64,
    parameters: RemovalCost,
}

/// Run `cfg` under `seed`, ticking `progress` once per measurement.
pub(crate) fn run(
    cfg: &RemovalCost,
    seed: u64,
    progress: &ProgressBar,
) -> Result<Report, SimError> {
    let started = Instant::now();
    let h = Hierarchy::new();
    h.create(PARENT)
        .map_err(|e| SimError::engine(format!("mkdir {PARENT}"), e))?;
    let name = format!("sim/removal-{}", cfg.object_size);
    let shared = SlabCache::new(&name, cfg.object_size, false)
        .map_err(|e| SimError::engine(format!("cache {name}"), e))?;
    let name = format!("sim/removal-isolated-{}", cfg.object_size);
    let isolated = SlabCache::isolated(&name, cfg.object_size, false)
        .map_err(|e| SimError::engine(format!("cache {name}"), e))?;
    let plan: Vec<(Kind, usize)> = cfg
        .objects
        .iter()
        .flat_map(|&n| [(Kind::KmemObjects, n), (Kind::IsolatedObjects, n)])
        .chain(cfg.anon_pages.iter().map(|&n| (Kind::AnonPages, n)))
        .collect();
    progress.set_length((plan.len() * cfg.rounds) as u64);
    let mut rows: Vec<(Kind, usize, usize, usize, i128, Duration)> = Vec::new();
    let mut failures = Vec::new();
    let mut sweep = vec![0u8; SWEEP_BYTES];
    for rep in 0..cfg.rounds {
        let mut order = plan.clone();
        stream(seed, &[rep as u64]).shuffle(&mut order);
        for (kind, count) in order {
            progress.set_message(format!("{count} {}", kind_name(kind)));
            let cache = match kind {
                Kind::IsolatedObjects => isolated,
                _ => shared,
            };
            let (slabs, parent_bytes, time) =
                measure(&h, cache, kind, count, &mut sweep, &mut failures)?;
            rows.push((kind, count, rep, slabs, parent_bytes, time));
            progress.inc(1);
        }
    }
    rows.sort_by_key(|r| (r.0, r.1, r.2));

    h.remove(PARENT)
        .map_err(|e| SimError::engine(format!("rmdir {PARENT}"), e))?;
    settle_to_empty(&h);
    let drift_bytes = stat_bytes(&h, "memory.current")?;
    if drift_bytes != 0 {
        failures.push(format!(
            "drift: the root's memory.current is {drift_bytes} bytes after every object was freed and every group removed, want 0"
        ));
    }

    let mut samples = Samples::new(&COLUMNS);
    for &(kind, count, rep, slabs, parent_bytes, time) in &rows {
        let of = |k| if k == kind { count as i128 } else { 0 };
        samples.push(vec![
            rep as i128,
            of(Kind::KmemObjects),
            of(Kind::IsolatedObjects),
            of(Kind::AnonPages),
            slabs as i128,
            parent_bytes,
            time.as_nanos() as i128,
        ]);
    }
    let points: Vec<Point> = plan_points(&plan)
        .into_iter()
        .map(|(kind, count)| {
            let mut times: Vec<u64> = rows
                .iter()
                .filter(|r| r.0 == kind && r.1 == count)
                .map(|r| r.5.as_nanos() as u64)
                .collect();
            times.sort_unstable();
            let slabs = rows
                .iter()
                .filter(|r| r.0 == kind && r.1 == count)
                .map(|r| r.3)
                .max()
                .unwrap_or(0);
            Point {
                kind,
                count,
                median_rmdir_ns: times[times.len() / 2],
                min_rmdir_ns: times[0],
                slabs_looked_at: slabs,
            }
        })
        .collect();
    let growth = |kind| {
        let of: Vec<&Point> = points.iter().filter(|p| p.kind == kind).collect();
        match (of.first(), of.last()) {
            (Some(lo), Some(hi)) => hi.median_rmdir_ns as f64 / lo.median_rmdir_ns.max(1) as f64,
            _ => 0.0,
        }
    };
    let anon_ns_per_page = points
        .iter()
        .rfind(|p| p.kind == Kind::AnonPages)
        .map_or(0.0, |p| p.median_rmdir_ns as f64 / p.count as f64);
    let summary = Summary {
        scenario: "removal-cost",
        seed,
        rounds: cfg.rounds,
        kmem_growth: growth(Kind::KmemObjects),
        isolated_kmem_growth: growth(Kind::IsolatedObjects),
        anon_growth: growth(Kind::AnonPages),
        anon_ns_per_page,
        points,
        drift_bytes,
        elapsed_ms: started.elapsed().as_millis() as u64,
        parameters: cfg.clone(),
    };
    Ok(Report {
        title: "memcg sim removal-cost: rmdir time against what the group leaves behind".into(),
        intro: String::new(),
        tables: tables(&summary),
        summary: serde_json::to_string_pretty(&summary).expect("the summary serializes"),
        notes: notes(),
        panels: panels(&summary),
        samples,
        failures,
    })
}

/// Create the victim, fill it with `count` of `kind` from a thread inside it,
/// remove it (timed), then free everything and check the parent is back at 0.
/// Returns the slabs the removal looked at, the parent's usage just after the
/// removal, and the removal's time.
fn measure(
    h: &Hierarchy,
    cache: SlabCache,
    kind: Kind,
    count: usize,
    sweep: &mut [u8],
    failures: &mut Vec<String>,
) -> Result<(usize, i128, Duration), SimError> {
    let engine =
        |what: &str, e| SimError::engine(format!("{what} ({count} {})", kind_name(kind)), e);
    let victim = h.create(VICTIM).map_err(|e| engine("mkdir", e))?;
    let mut objects: Vec<SlabObject> = Vec::new();
    let mut pages: Vec<UserPage> = Vec::new();
    {
        let _inside = victim.enter().map_err(|e| engine("enter", e))?;
        match kind {
            Kind::KmemObjects | Kind::IsolatedObjects => {
                objects.reserve_exact(count);
                for _ in 0..count {
                    objects.push(cache.alloc().map_err(|e| engine("alloc", e))?);
                }
            }
            Kind::AnonPages => {
                pages.reserve_exact(count);
                for _ in 0..count {
                    pages.push(UserPage::charge(PageKind::Anon).map_err(|e| engine("charge", e))?);
                }
            }
        }
    }
    drop(victim);
    h.quiesce();
    for line in sweep.chunks_mut(64) {
        line[0] = line[0].wrapping_add(1);
    }
    std::hint::black_box(&sweep);
    let t = Instant::now();
    h.remove(VICTIM).map_err(|e| engine("rmdir", e))?;
    let time = t.elapsed();
    let slabs = h.last_removal_slabs();
    h.quiesce();
    let parent = h.get(PARENT).map_err(|e| engine("get", e))?;
    let read = |g: &memcg::Group| -> Result<i128, SimError> {
        let text = g.read("memory.current").map_err(|e| engine("read", e))?;
        Ok(text.trim().parse().unwrap_or(-1))
    };
    let parent_bytes = read(&parent)?;
    // From this thread, in the root: remote frees (into the dead cache, for
    // an isolated one).
    drop(objects);
    drop(pages);
    // The parent's own context lives on; the victim's must be gone.
    let (leftovers, _, _) = settle_to_empty(h);
    let after = read(&parent)?;
    if after != 0 || leftovers != memcg::Leftovers::default() {
        failures.push(format!(
            "{count} {}: after freeing everything {PARENT} holds {after} bytes, leftovers {leftovers:?}; want 0",
            kind_name(kind)
        ));
    }
    Ok((slabs, parent_bytes, time))
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::KmemObjects => "slab objects (shared cache)",
        Kind::IsolatedObjects => "slab objects (isolated cache)",
        Kind::AnonPages => "anon pages",
    }
}

/// The distinct points of the plan, in kind then count order.
fn plan_points(plan: &[(Kind, usize)]) -> Vec<(Kind, usize)> {
    let mut points = plan.to_vec();
    points.sort_unstable();
    points.dedup();
    points
}

fn tables(s: &Summary) -> Vec<Table> {
    let mut counts: Vec<usize> = s.points.iter().map(|p| p.count).collect();
    counts.sort_unstable();
    counts.dedup();
    let mut t = Table::new(&[
        "left in the group",
        "rmdir: shared slab objects",
        "slabs looked at",
        "rmdir: isolated slab objects",
        "slabs looked at",
        "rmdir: anon pages",
    ]);
    for n in counts {
        let find = |kind| s.points.iter().find(|p| p.kind == kind && p.count == n);
        let time = |p: Option<&Point>| p.map_or("-".into(), |p| human_ns(p.median_rmdir_ns as f64));
        let slabs = |p: Option<&Point>| p.map_or("-".into(), |p| p.slabs_looked_at.to_string());
        let (shared, isolated) = (find(Kind::KmemObjects), find(Kind::IsolatedObjects));
        t.row(vec![
            n.to_string(),
            time(shared),
            slabs(shared),
            time(isolated),
            slabs(isolated),
            time(find(Kind::AnonPages)),
        ]);
    }
    let mut m = Table::new(&["removal-cost", "value"]);
    m.row(vec![
        "shared slab objects: rmdir growth, fewest to most (S8)".into(),
        format!("{:.2}x", s.kmem_growth),
    ]);
    m.row(vec![
        "isolated slab objects: rmdir growth, fewest to most (S8)".into(),
        format!("{:.2}x", s.isolated_kmem_growth),
    ]);
    m.row(vec![
        "anon pages: rmdir growth, fewest to most (S7)".into(),
        format!("{:.0}x", s.anon_growth),
    ]);
    m.row(vec![
        "anon pages: rmdir time per page".into(),
        human_ns(s.anon_ns_per_page),
    ]);
    m.closing_rows(s.drift_bytes, s.elapsed_ms);
    vec![t, m]
}

fn notes() -> Vec<String> {
    [
        "Each row of `samples.csv` is one removal of a group left with `kmem_objects` live objects of a shared slab cache (S11), `isolated_objects` live objects of an isolated one (S6), or `anon_pages` anon pages; `rmdir_ns` is the time of `Hierarchy::remove`, medians in the summary.",
        "`slabs_looked_at`: `Hierarchy::last_removal_slabs()`, the empty and partial slabs of the group's child caches the removal shrank. Shared caches have no child cache: 0. Isolated ones: full slabs are never visited, so it does not grow with the objects (S8).",
        "`parent_bytes_after`: the parent's `memory.current` right after the removal: the removed group's charges, now billed to the parent.",
        "`drift_bytes`: the root's `memory.current` after every object was freed and every group removed. Must be exactly 0.",
        "Columns ending in `_ns` are timings; every other column is the same for the same seed.",
    ]
    .map(String::from)
    .to_vec()
}

fn panels(s: &Summary) -> Vec<Panel> {
    let series = |kind, name: &str, y: &dyn Fn(&Point) -> f64| {
        Series::new(
            name,
            s.points
                .iter()
                .filter(|p| p.kind == kind)
                .map(|p| (p.count as f64, y(p)))
                .collect(),
        )
    };
    vec![
        Panel {
            title: "rmdir time (median) against what the group leaves behind".into(),
            x_label: "live slab objects / anon pages in the removed group".into(),
            y_unit: Unit::Nanos,
            log_x: true,
            log_y: true,
            series: vec![
                series(Kind::AnonPages, "anon pages: walked (S7)", &|p| {
                    p.median_rmdir_ns as f64
                }),
                series(
                    Kind::KmemObjects,
                    "shared slab objects: reparented (S8)",
                    &|p| p.median_rmdir_ns as f64,
                ),
                series(
                    Kind::IsolatedObjects,
                    "isolated slab objects: reparented, cache killed (S8)",
                    &|p| p.median_rmdir_ns as f64,
                ),
            ],
        },
        Panel {
            title: "Work of the removal: anon pages walked, slabs looked at (shared caches: none)"
                .into(),
            x_label: "live slab objects / anon pages in the removed group".into(),
            y_unit: Unit::Count,
            log_x: true,
            log_y: true,
            series: vec![
                series(Kind::AnonPages, "anon pages walked", &|p| p.count as f64),
                series(Kind::IsolatedObjects, "slabs looked at, isolated", &|p| {
                    p.slabs_looked_at as f64
                }),
            ],
        },
    ]
}
