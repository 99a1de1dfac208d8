//! `churn`: jobs come and go on a container host, and what they leave behind.
//!
//! Each round creates a job group under one of the parents, runs the job's
//! threads in it (real threads, each entering the group), and removes the
//! group. Every thread allocates slab objects from several caches
//! (reclaimable and not), page-level kmem buffers and anon pages; most die
//! with the job, freed by the thread that made them, but a fraction survives
//! the removal: held in a long-lived pool (a time wheel, a deque of rounds)
//! and freed a random number of rounds later, part by the threads of the job
//! running then (other threads, in another group), part by the simulator's
//! own thread in the root.
//!
//! Every `sample_every` rounds, with every job thread joined, the simulator
//! quiesces the hierarchy and samples it: dying groups, the kmem contexts of
//! removed groups still alive, their dead caches, the bytes those pin, and
//! what a design that keeps a removed group until its last object is freed
//! (the kernel before the seed patch) would pin for the same lifetimes.
//!
//! Drift, checked at every sample, is the root's `memory.current` (the page
//! counters, charged through the contexts) minus the live charges: the kmem
//! buffers and anon pages the simulator holds, counted by the simulator, plus
//! the pages charged for slab objects, `kernel - kmem` in the root's
//! `memory.stat` (shared-slab objects are charged by the byte and their
//! contexts keep sub-page remainders, isolated caches' slabs whole, so the
//! simulator cannot count them from its objects). At the end, with every
//! survivor freed and every group removed, drift is the root's
//! `memory.current` alone, and must be exactly 0.
//!
//! Determinism: what each thread allocates and keeps comes from its own
//! stream of the seed (see the rng module), and the job's threads free their
//! short-lived objects only once all of them are done allocating (a barrier),
//! so no thread refills from a slab another thread's frees reopened, and the
//! slabs survivors pin are the same on every run. Samples are taken with
//! every thread joined. Sampled
//! values other than timings are therefore the same on every run.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use memcg::{Group, Hierarchy, KmemPages, PageKind, SlabCache, SlabObject, UserPage};
use serde::Serialize;

use super::plot::{Panel, Series, Unit};
use super::report::{human_bytes, human_ns, Report, Samples, Table};
use super::rng::Rng;
use super::scenario::Churn;
use super::{settle, settle_to_empty, stat_bytes, SimError, PAGE};

/// Something a job made that outlives it.
enum Held {
    Object(SlabObject),
    Kmem(KmemPages),
    Anon(UserPage),
}

impl Held {
    /// Whether it still exists (reclaim may free reclaimable objects).
    fn is_live(&self) -> bool {
        match self {
            Held::Object(o) => o.is_live(),
            Held::Kmem(_) => true,
            Held::Anon(p) => p.is_live(),
        }
    }

    /// The bytes charged for it that the simulator can count itself: kmem
    /// buffers and user pages (slab objects share charged slabs).
    fn counted_bytes(&self) -> i128 {
        match self {
            Held::Object(_) => 0,
            Held::Kmem(k) => (k.pages() * memcg::PAGE_SIZE) as i128,
            Held::Anon(p) => {
                if p.is_live() {
                    PAGE
                } else {
                    0
                }
            }
        }
    }
}

/// The sampled columns, in CSV order.
const COLUMNS: [&str; 15] = [
    "round",
    "live_groups",
    "dying_groups",
    "dead_contexts",
    "dead_caches",
    "survivors",
    "pinned_bytes",
    "prepatch_pinned_bytes",
    "dead_slab_bytes",
    "root_current_bytes",
    "live_charge_bytes",
    "drift_bytes",
    "hierarchy_gap_bytes",
    "rmdir_ns",
    "round_ns",
];

/// The summary of a churn run, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Summary {
    scenario: &'static str,
    seed: u64,
    rounds: usize,
    threads: usize,
    samples: usize,
    objects_allocated: u64,
    kmem_buffers_allocated: u64,
    anon_pages_charged: u64,
    survivors: u64,
    survivors_freed_by_job_threads: u64,
    survivors_freed_by_simulator: u64,
    group_size_bytes: usize,
    context_size_bytes: usize,
    cache_size_bytes: usize,
    peak_dying_groups: i128,
    peak_dead_contexts: i128,
    peak_dead_caches: i128,
    peak_pinned_bytes: i128,
    peak_prepatch_pinned_bytes: i128,
    peak_dead_slab_bytes: i128,
    max_abs_sample_drift_bytes: i128,
    max_abs_hierarchy_gap_bytes: i128,
    rmdir_mean_ns: u64,
    rmdir_max_ns: u64,
    end_live_contexts: usize,
    end_live_caches: usize,
    /// The root's `memory.current` once every survivor is freed and every
    /// group removed: must be 0.
    drift_bytes: i128,
    elapsed_ms: u64,
    parameters: Churn,
}

/// Counts the run keeps as it goes.
#[derive(Default)]
struct Tally {
    objects: u64,
    kmem: u64,
    anon: u64,
    survivors: u64,
    freed_by_jobs: u64,
    freed_by_simulator: u64,
    rmdir_total: Duration,
    rmdir_max: Duration,
}

/// What one job thread hands back: its survivors, each with its lifetime in
/// rounds, and what it allocated.
struct JobResult {
    kept: Vec<(Held, usize)>,
    objects: u64,
    kmem: u64,
    anon: u64,
}

/// Run `cfg` under `seed`, ticking `progress` once per round.
pub(crate) fn run(cfg: &Churn, seed: u64, progress: &ProgressBar) -> Result<Report, SimError> {
    let started = Instant::now();
    let h = Hierarchy::new();
    for parent in &cfg.parents {
        create_with_ancestors(&h, parent)?;
    }
    let caches = cfg
        .caches
        .iter()
        .map(|c| {
            SlabCache::new(&format!("sim/{}", c.name), c.size, c.reclaimable)
                .map(|cache| (cache, c.objects))
                .map_err(|e| SimError::engine(format!("cache {}", c.name), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut wheel: VecDeque<Vec<Held>> = VecDeque::new();
    let mut driver_rng = Rng::derive(seed, &[u64::MAX]);
    let mut tally = Tally::default();
    let mut samples = Samples::new(&COLUMNS);
    let mut failures = Vec::new();

    progress.set_length(cfg.rounds as u64);
    for round in 0..cfg.rounds {
        let round_started = Instant::now();
        let parent = &cfg.parents[round % cfg.parents.len()];
        let path = format!("{parent}/job-{round}");
        let group = h
            .create(&path)
            .map_err(|e| SimError::engine(format!("mkdir {path}"), e))?;

        // Survivors due now: dealt to this job's threads or kept for the driver.
        let due = wheel.pop_front().unwrap_or_default();
        let mut for_threads: Vec<Vec<Held>> = (0..cfg.threads).map(|_| Vec::new()).collect();
        let mut for_driver = Vec::new();
        for (i, held) in due.into_iter().enumerate() {
            if driver_rng.chance(cfg.freed_by_jobs) {
                tally.freed_by_jobs += 1;
                for_threads[i % cfg.threads].push(held);
            } else {
                tally.freed_by_simulator += 1;
                for_driver.push(held);
            }
        }

        let allocated = std::sync::Barrier::new(cfg.threads);
        let results = std::thread::scope(|s| {
            let handles: Vec<_> = for_threads
                .into_iter()
                .enumerate()
                .map(|(t, to_free)| {
                    let rng = Rng::derive(seed, &[round as u64, t as u64]);
                    let (group, caches, allocated) = (&group, &caches, &allocated);
                    std::thread::Builder::new()
                        .name(format!("job-{round}.{t}"))
                        .spawn_scoped(s, move || job(group, caches, cfg, rng, to_free, allocated))
                        .expect("the OS starts a job thread")
                })
                .collect();
            // Meanwhile the driver, in the root, frees its share: remote
            // frees into dead caches while the job allocates.
            drop(for_driver);
            handles
                .into_iter()
                .map(|h| h.join().expect("a job thread does not panic"))
                .collect::<Vec<_>>()
        });
        drop(group);

        let rmdir_started = Instant::now();
        h.remove(&path)
            .map_err(|e| SimError::engine(format!("rmdir {path}"), e))?;
        let last_rmdir = rmdir_started.elapsed();
        tally.rmdir_total += last_rmdir;
        tally.rmdir_max = tally.rmdir_max.max(last_rmdir);

        for result in results {
            let result = result.map_err(|e| SimError::engine(format!("job {path}"), e))?;
            tally.objects += result.objects;
            tally.kmem += result.kmem;
            tally.anon += result.anon;
            for (held, lifetime) in result.kept {
                tally.survivors += 1;
                while wheel.len() < lifetime {
                    wheel.push_back(Vec::new());
                }
                wheel[lifetime - 1].push(held);
            }
        }

        if (round + 1) % cfg.sample_every == 0 || round + 1 == cfg.rounds {
            let row = sample(&h, cfg, &wheel, round, last_rmdir, round_started.elapsed())?;
            check_sample(&row, &mut failures);
            progress.set_message(format!(
                "{} dead contexts pin {}",
                row[col("dead_contexts")],
                human_bytes(row[col("pinned_bytes")] as f64)
            ));
            samples.push(row);
        }
        progress.inc(1);
    }

    // Teardown: parents go first, while survivors still live, so their
    // contexts move up again (S4); then everything is freed.
    let mut parents: Vec<&str> = cfg.parents.iter().flat_map(|p| prefixes(p)).collect();
    parents.sort_by_key(|p| (std::cmp::Reverse(p.len()), *p));
    parents.dedup();
    for p in &parents {
        h.remove(p)
            .map_err(|e| SimError::engine(format!("rmdir {p}"), e))?;
    }
    drop(wheel);
    let (leftovers, live_contexts, live_caches) = settle_to_empty(&h);
    let drift_bytes = stat_bytes(&h, "memory.current")?;
    if drift_bytes != 0 {
        failures.push(format!(
            "drift: the root's memory.current is {drift_bytes} bytes after every object was freed and every group removed, want 0"
        ));
    }
    if live_contexts != 0 || live_caches != 0 || leftovers != memcg::Leftovers::default() {
        failures.push(format!(
            "leaks at the end: {live_contexts} live contexts, {live_caches} live caches, {leftovers:?}"
        ));
    }

    let summary = summarize(
        cfg,
        seed,
        &samples,
        &tally,
        &h,
        drift_bytes,
        started.elapsed(),
    );
    Ok(Report {
        title: format!(
            "memcg sim churn: {} jobs of {} threads, {:.0}% of objects outlive their job",
            cfg.rounds,
            cfg.threads,
            cfg.survive * 100.0
        ),
        tables: vec![table(&summary)],
        summary: serde_json::to_string_pretty(&summary).expect("the summary serializes"),
        notes: notes(),
        panels: panels(&samples),
        samples,
        failures,
    })
}

/// One job thread: enter the group, free the survivors dealt to it, allocate,
/// wait for the job's other threads to finish allocating, keep the
/// survivors, free the rest.
fn job(
    group: &Group,
    caches: &[(SlabCache, usize)],
    cfg: &Churn,
    rng: Rng,
    to_free: Vec<Held>,
    allocated: &std::sync::Barrier,
) -> memcg::Result<JobResult> {
    let made = group.enter().and_then(|in_job| {
        // Objects of removed groups, freed from a thread of another group.
        drop(to_free);
        allocate(cfg, caches, rng).map(|made| (in_job, made))
    });
    // Reached even on error, so that the other threads do not wait forever.
    allocated.wait();
    let (_in_job, (kept, short_lived, objects)) = made?;
    // The job ends: its short-lived memory goes, on the thread that made it.
    drop(short_lived);
    Ok(JobResult {
        kept,
        objects,
        kmem: cfg.kmem.count as u64,
        anon: cfg.anon_pages as u64,
    })
}

/// What one thread made: the survivors with their lifetimes, the
/// short-lived rest, and the number of slab objects.
type Made = (Vec<(Held, usize)>, Vec<Held>, u64);

/// A job thread's allocations, in a fixed order, each drawn to survive or not.
fn allocate(cfg: &Churn, caches: &[(SlabCache, usize)], mut rng: Rng) -> memcg::Result<Made> {
    let [lo, hi] = cfg.lifetime;
    let mut kept = Vec::new();
    let mut short_lived = Vec::new();
    let mut result = |held: Held, rng: &mut Rng| {
        if rng.chance(cfg.survive) {
            kept.push((held, rng.between(lo, hi)));
        } else {
            short_lived.push(held);
        }
    };
    let mut objects = 0;
    for &(cache, count) in caches {
        for _ in 0..count {
            result(Held::Object(cache.alloc()?), &mut rng);
            objects += 1;
        }
    }
    for _ in 0..cfg.kmem.count {
        let mut buffer = KmemPages::alloc(cfg.kmem.size)?;
        buffer.as_mut_slice()[0] = 1;
        result(Held::Kmem(buffer), &mut rng);
    }
    for _ in 0..cfg.anon_pages {
        result(Held::Anon(UserPage::charge(PageKind::Anon)?), &mut rng);
    }
    Ok((kept, short_lived, objects))
}

/// Quiesce and sample the hierarchy after `round`.
fn sample(
    h: &Hierarchy,
    cfg: &Churn,
    wheel: &VecDeque<Vec<Held>>,
    round: usize,
    rmdir: Duration,
    round_time: Duration,
) -> Result<Vec<i128>, SimError> {
    let l = settle(h);
    let root = h.root();
    let read = |g: &Group, file: &str| {
        g.read(file)
            .map_err(|e| SimError::engine(format!("read {} {file}", g.path()), e))
    };
    let current = stat_bytes(h, "memory.current")?;
    let stat = read(&root, "memory.stat")?;
    let slab_pages = key_bytes(&stat, "kernel") - key_bytes(&stat, "kmem");
    let counted: i128 = wheel.iter().flatten().map(Held::counted_bytes).sum();
    let live_charges = counted + slab_pages;
    let mut top_level: Vec<&str> = cfg
        .parents
        .iter()
        .map(|p| p[1..].split('/').next().unwrap_or(""))
        .collect();
    top_level.sort_unstable();
    top_level.dedup();
    let mut children = 0;
    for name in top_level {
        let g = h
            .get(&format!("/{name}"))
            .map_err(|e| SimError::engine(format!("get /{name}"), e))?;
        children += read(&g, "memory.current")?
            .trim()
            .parse::<i128>()
            .unwrap_or(0);
    }
    let live_groups = key_bytes(&read(&root, "cgroup.stat")?, "nr_descendants");
    let survivors = wheel.iter().flatten().filter(|h| h.is_live()).count();
    let pinned = l.pinned_bytes as i128;
    let prepatch = pinned + (l.dead_contexts * memcg::group_size()) as i128;
    Ok(vec![
        round as i128 + 1,
        live_groups,
        l.dying_groups as i128,
        l.dead_contexts as i128,
        l.dead_caches as i128,
        survivors as i128,
        pinned,
        prepatch,
        l.dead_cache_slab_bytes as i128,
        current,
        live_charges,
        current - live_charges,
        current - children,
        rmdir.as_nanos() as i128,
        round_time.as_nanos() as i128,
    ])
}

/// The value of `key` in a keyed file's text (0 when absent).
fn key_bytes(text: &str, key: &str) -> i128 {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

fn col(name: &str) -> usize {
    COLUMNS
        .iter()
        .position(|c| *c == name)
        .expect("a sampled column")
}

/// The invariants of every sample: no drift, a consistent hierarchy, and no
/// removed group kept alive (S1: the simulator holds no handle).
fn check_sample(row: &[i128], failures: &mut Vec<String>) {
    let round = row[col("round")];
    for (name, what) in [
        ("drift_bytes", "root memory.current minus live charges"),
        (
            "hierarchy_gap_bytes",
            "root memory.current minus its children's",
        ),
        ("dying_groups", "removed groups not yet freed (S1)"),
    ] {
        let v = row[col(name)];
        if v != 0 {
            failures.push(format!("round {round}: {name} is {v} ({what}), want 0"));
        }
    }
}

fn summarize(
    cfg: &Churn,
    seed: u64,
    samples: &Samples,
    tally: &Tally,
    h: &Hierarchy,
    drift_bytes: i128,
    elapsed: Duration,
) -> Summary {
    let peak = |name: &str| samples.rows.iter().map(|r| r[col(name)]).max().unwrap_or(0);
    let max_abs = |name: &str| {
        samples
            .rows
            .iter()
            .map(|r| r[col(name)].abs())
            .max()
            .unwrap_or(0)
    };
    Summary {
        scenario: "churn",
        seed,
        rounds: cfg.rounds,
        threads: cfg.threads,
        samples: samples.rows.len(),
        objects_allocated: tally.objects,
        kmem_buffers_allocated: tally.kmem,
        anon_pages_charged: tally.anon,
        survivors: tally.survivors,
        survivors_freed_by_job_threads: tally.freed_by_jobs,
        survivors_freed_by_simulator: tally.freed_by_simulator,
        group_size_bytes: memcg::group_size(),
        context_size_bytes: memcg::context_size(),
        cache_size_bytes: memcg::slab::cache_size(),
        peak_dying_groups: peak("dying_groups"),
        peak_dead_contexts: peak("dead_contexts"),
        peak_dead_caches: peak("dead_caches"),
        peak_pinned_bytes: peak("pinned_bytes"),
        peak_prepatch_pinned_bytes: peak("prepatch_pinned_bytes"),
        peak_dead_slab_bytes: peak("dead_slab_bytes"),
        max_abs_sample_drift_bytes: max_abs("drift_bytes"),
        max_abs_hierarchy_gap_bytes: max_abs("hierarchy_gap_bytes"),
        rmdir_mean_ns: (tally.rmdir_total.as_nanos() / cfg.rounds.max(1) as u128) as u64,
        rmdir_max_ns: tally.rmdir_max.as_nanos() as u64,
        end_live_contexts: h.live_contexts(),
        end_live_caches: h.live_caches(),
        drift_bytes,
        elapsed_ms: elapsed.as_millis() as u64,
        parameters: cfg.clone(),
    }
}

fn table(s: &Summary) -> Table {
    let mut t = Table::new(&["churn", "value"]);
    let mut row = |k: &str, v: String| t.row(vec![k.to_string(), v]);
    row(
        "jobs (mkdir, run, rmdir)",
        format!("{} x {} threads", s.rounds, s.threads),
    );
    row(
        "allocated",
        format!(
            "{} objects, {} kmem buffers, {} anon pages",
            s.objects_allocated, s.kmem_buffers_allocated, s.anon_pages_charged
        ),
    );
    let at_end = s.survivors - s.survivors_freed_by_job_threads - s.survivors_freed_by_simulator;
    row(
        "outlived their job",
        format!(
            "{} (freed later by other jobs' threads: {}, by the root: {}, at the end: {at_end})",
            s.survivors, s.survivors_freed_by_job_threads, s.survivors_freed_by_simulator
        ),
    );
    row("peak dying groups (S1)", s.peak_dying_groups.to_string());
    row(
        "peak dead kmem contexts",
        format!("{} (pre-patch: as many dying groups)", s.peak_dead_contexts),
    );
    row("peak dead caches", s.peak_dead_caches.to_string());
    row(
        "size of a group / a context",
        format!(
            "{} / {} B ({:.0}x)",
            s.group_size_bytes,
            s.context_size_bytes,
            s.group_size_bytes as f64 / s.context_size_bytes.max(1) as f64
        ),
    );
    row(
        "peak pinned by removed groups",
        human_bytes(s.peak_pinned_bytes as f64),
    );
    row(
        "  pre-patch, same lifetimes",
        human_bytes(s.peak_prepatch_pinned_bytes as f64),
    );
    row(
        "peak slabs of dead caches",
        human_bytes(s.peak_dead_slab_bytes as f64),
    );
    row(
        "rmdir mean / max",
        format!(
            "{} / {}",
            human_ns(s.rmdir_mean_ns as f64),
            human_ns(s.rmdir_max_ns as f64)
        ),
    );
    row(
        "max |drift| over samples",
        format!("{} B", s.max_abs_sample_drift_bytes),
    );
    row("drift at the end", format!("{} B", s.drift_bytes));
    row("run time", human_ns(s.elapsed_ms as f64 * 1e6));
    t
}

fn notes() -> Vec<String> {
    [
        "`dying_groups`: removed groups not yet freed (the root's `nr_dying_descendants`). The simulator keeps no handle, so S1 says 0.",
        "`dead_contexts`: kmem contexts of removed groups, alive while a charge made through them is (`Leftovers::dead_contexts`). Before the seed patch each of these kept its whole group alive: that many dying groups.",
        "`pinned_bytes`: what removed groups pin besides live objects: their contexts and the structs of their dead caches (`Leftovers::pinned_bytes`).",
        "`prepatch_pinned_bytes`: the same plus one group (`memcg::group_size()`) per dead context, the pre-patch kernel's cost for the same object lifetimes.",
        "`dead_slab_bytes`: slabs of dead caches, holding the surviving objects (`Leftovers::dead_cache_slab_bytes`); both designs hold these, charged to a live ancestor.",
        "`drift_bytes` (per sample): the root's `memory.current` (page counters, charged through kmem contexts) minus the live charges: the kmem buffers and anon pages the simulator holds, counted by the simulator, plus the pages charged for slab objects (`kernel - kmem` in the root's `memory.stat`). Sampled after `quiesce()` with every job thread joined. Must be 0.",
        "`drift_bytes` (summary): the root's `memory.current` after the parents were removed while survivors lived (their contexts move up again, S4), then every survivor freed. Must be exactly 0 (S2).",
        "`hierarchy_gap_bytes`: the root's `memory.current` minus the sum of its children's. Must be 0.",
        "Columns ending in `_ns` are timings; every other column is the same for the same seed.",
    ]
    .map(String::from)
    .to_vec()
}

fn panels(samples: &Samples) -> Vec<Panel> {
    let s = |name: &str, col: &str| Series::new(name, samples.series("round", col));
    vec![
        Panel {
            title: "Removed groups and what they leave behind".into(),
            x_label: "round".into(),
            y_unit: Unit::Count,
            log_x: false,
            log_y: false,
            series: vec![
                s(
                    "dead kmem contexts = dying groups before the patch",
                    "dead_contexts",
                ),
                s("dead caches", "dead_caches"),
                s("dying groups now (S1)", "dying_groups"),
            ],
        },
        Panel {
            title: "Bookkeeping pinned by removed groups".into(),
            x_label: "round".into(),
            y_unit: Unit::Bytes,
            log_x: false,
            log_y: false,
            series: vec![
                s(
                    "pre-patch: whole groups until their last object",
                    "prepatch_pinned_bytes",
                ),
                s("now: contexts + dead caches", "pinned_bytes"),
            ],
        },
        Panel {
            title: "Charges: root memory.current against the live charges".into(),
            x_label: "round".into(),
            y_unit: Unit::Bytes,
            log_x: false,
            log_y: false,
            series: vec![
                s("root memory.current", "root_current_bytes"),
                s("live charges", "live_charge_bytes"),
                s("slabs of dead caches", "dead_slab_bytes"),
                s("drift", "drift_bytes"),
            ],
        },
    ]
}

/// `/a`, `/a/b`, `/a/b/c` for `/a/b/c`.
fn prefixes(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .skip(1)
        .map(|(i, _)| &path[..i])
        .chain([path])
}

/// `mkdir -p`: create `path` and its missing ancestors.
fn create_with_ancestors(h: &Hierarchy, path: &str) -> Result<(), SimError> {
    for prefix in prefixes(path) {
        match h.create(prefix) {
            Ok(_) => {}
            Err(e) if e.kind() == memcg::ErrorKind::Exists => {}
            Err(e) => return Err(SimError::engine(format!("mkdir {prefix}"), e)),
        }
    }
    Ok(())
}
