//! `churn`: jobs come and go on a container host, and what they leave behind,
//! with shared slabs (S11) and with isolated per-group caches (S6).
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
//! Two slab designs run the same churn, each on a fresh hierarchy with caches
//! of its own, under the same seed, so they allocate, keep and free the same
//! objects. *Shared* caches ([`SlabCache::new`], the library's default, as
//! Linux since 5.9) put the objects of every group in the same slabs and
//! charge each by the byte: a removed group leaves only its kmem context, and
//! its survivors sit in slabs the next jobs fill up. *Isolated* caches
//! ([`SlabCache::isolated`], the seed's design) give every group child caches
//! of its own: on removal they become *dead caches* that live, with every
//! slab a survivor is in, until the last survivor is freed. The built-in runs
//! both, shared first, and compares them; a scenario file may pick one.
//!
//! Every `sample_every` rounds, with every job thread joined, the simulator
//! quiesces the hierarchy and samples it: dying groups, the kmem contexts of
//! removed groups still alive, their dead caches and the slabs those hold,
//! the bytes removed groups pin, what a design that keeps a removed group
//! until its last object is freed (the kernel before the seed patch) would
//! pin for the same lifetimes; and the slabs in use in the process
//! ([`memcg::slab::slab_bytes_in_use`], all caches, empty ones kept for
//! reuse included, less those in use when the run started) against the
//! bytes of the live slab objects the simulator holds (their slot sizes,
//! counted from its own objects). Their ratio is slab utilization.
//!
//! Drift, checked at every sample, is the root's `memory.current` (the page
//! counters, charged through the contexts) minus the live charges: the kmem
//! buffers and anon pages the simulator holds, counted by the simulator, plus
//! the pages charged for slab objects, `kernel - kmem` in the root's
//! `memory.stat` (shared-slab objects are charged by the byte and their
//! contexts keep sub-page remainders, isolated caches' slabs whole, so the
//! simulator cannot count them from its objects). At the end, with every
//! survivor freed and every group removed, drift is the root's
//! `memory.current` alone, and must be exactly 0. With shared caches a
//! sample must also show no dead cache and no dead-cache slab (S3).
//!
//! Determinism: what each thread allocates and keeps comes from its own
//! stream of the seed ([`super::stream`]). Which slab an object lands in
//! depends on the order threads take slabs from a cache's lists and give
//! them back, so the job's threads take turns: each in turn frees the
//! survivors dealt to it and allocates; then each in turn frees its
//! short-lived objects and gives its slabs back; the driver frees its share
//! before the job starts. The slabs survivors pin are therefore the same on
//! every run, and so is every sampled value but timings (samples are taken
//! with every thread joined). The threads are real, with their own slabs and
//! remote frees, but they do not race: racing is the stress tests' business.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use fastrand::Rng;
use indicatif::ProgressBar;
use memcg::{Group, Hierarchy, KmemPages, PageKind, SlabCache, SlabObject, UserPage};
use serde::Serialize;

use super::plot::{Panel, Series, Unit};
use super::report::{Report, Samples, Table};
use super::scenario::Churn;
use super::units::{human_bytes, human_ns};
use super::{settle, settle_to_empty, stat_bytes, stream, SimError, PAGE};

/// A slab design: how a cache's objects share slabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Design {
    /// Slabs shared by all groups, objects charged by the byte (S11).
    Shared,
    /// Per-group child caches, dead after removal (S6).
    Isolated,
}

impl Design {
    fn is_isolated(self) -> bool {
        self == Design::Isolated
    }

    /// The column header of the design's values.
    fn title(self) -> &'static str {
        match self {
            Design::Shared => "shared slabs (S11)",
            Design::Isolated => "isolated caches (S6)",
        }
    }

    /// A short name for plot legends and messages.
    fn name(self) -> &'static str {
        match self {
            Design::Shared => "shared",
            Design::Isolated => "isolated",
        }
    }

    /// The design's cache for `spec`. Root caches live for the process and a
    /// name has one design, so isolated caches get names of their own.
    fn cache(self, spec: &super::scenario::CacheSpec) -> memcg::Result<SlabCache> {
        match self {
            Design::Shared => {
                SlabCache::new(&format!("sim/{}", spec.name), spec.size, spec.reclaimable)
            }
            Design::Isolated => SlabCache::isolated(
                &format!("sim/isolated/{}", spec.name),
                spec.size,
                spec.reclaimable,
            ),
        }
    }
}

/// Something a job made that outlives it.
enum Held {
    /// A slab object and its slot size.
    Object(SlabObject, usize),
    Kmem(KmemPages),
    Anon(UserPage),
}

impl Held {
    /// Whether it still exists (reclaim may free reclaimable objects).
    fn is_live(&self) -> bool {
        match self {
            Held::Object(o, _) => o.is_live(),
            Held::Kmem(_) => true,
            Held::Anon(p) => p.is_live(),
        }
    }

    /// The bytes charged for it that the simulator can count itself: kmem
    /// buffers and user pages (slab objects are charged by the byte or by
    /// the slab, and counted from `memory.stat`).
    fn counted_bytes(&self) -> i128 {
        match self {
            Held::Object(..) => 0,
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

    /// The slab bytes it takes: its slot, if it is a live slab object.
    fn object_bytes(&self) -> i128 {
        match self {
            Held::Object(o, slot) if o.is_live() => *slot as i128,
            _ => 0,
        }
    }
}

/// The sampled columns, in CSV order (`samples.csv` puts `isolated` first).
const COLUMNS: [&str; 17] = [
    "round",
    "live_groups",
    "dying_groups",
    "dead_contexts",
    "dead_caches",
    "survivors",
    "pinned_bytes",
    "prepatch_pinned_bytes",
    "dead_slab_bytes",
    "slab_bytes",
    "live_object_bytes",
    "root_current_bytes",
    "live_charge_bytes",
    "drift_bytes",
    "hierarchy_gap_bytes",
    "rmdir_ns",
    "round_ns",
];

/// The summary of a churn run of one design, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Summary {
    scenario: &'static str,
    design: Design,
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
    /// The most slab bytes in use at a sample, all caches.
    peak_slab_bytes: i128,
    /// The most bytes of live slab objects at a sample.
    peak_live_object_bytes: i128,
    /// Live object bytes over slab bytes, the mean over samples.
    mean_slab_utilization: f64,
    /// Slab bytes in use in the process when the run started (another
    /// design's caches keep a few empty slabs): left out of `slab_bytes`.
    start_slab_bytes: i128,
    /// Slab bytes still in use once every object is freed and every group
    /// removed (less `start_slab_bytes`): what the caches keep.
    end_slab_bytes: i128,
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

/// Both designs, as `--json` prints them: the shared run's summary at the
/// top level, the isolated run's beside it.
#[derive(Serialize)]
struct Comparison<'a> {
    #[serde(flatten)]
    shared: &'a Summary,
    isolated: &'a Summary,
    /// `1 - peak_slab_bytes(shared) / peak_slab_bytes(isolated)`.
    slab_saving: f64,
}

/// One design's run: its summary, samples, and the invariants it saw broken.
struct Run {
    summary: Summary,
    samples: Samples,
    failures: Vec<String>,
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

/// Run `cfg` under `seed` with the design it picks, or with both (shared
/// first), ticking `progress` once per round.
pub(crate) fn run(cfg: &Churn, seed: u64, progress: &ProgressBar) -> Result<Report, SimError> {
    let designs = match cfg.isolated {
        Some(false) => vec![Design::Shared],
        Some(true) => vec![Design::Isolated],
        None => vec![Design::Shared, Design::Isolated],
    };
    progress.set_length((cfg.rounds * designs.len()) as u64);
    let runs = designs
        .into_iter()
        .map(|design| run_design(cfg, design, seed, progress))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(report(cfg, &runs))
}

/// Run `cfg` with `design` on a fresh hierarchy.
fn run_design(
    cfg: &Churn,
    design: Design,
    seed: u64,
    progress: &ProgressBar,
) -> Result<Run, SimError> {
    let started = Instant::now();
    let cfg = &Churn {
        isolated: Some(design.is_isolated()),
        ..cfg.clone()
    };
    let h = Hierarchy::new();
    for parent in &cfg.parents {
        create_with_ancestors(&h, parent)?;
    }
    let caches = cfg
        .caches
        .iter()
        .map(|c| {
            design
                .cache(c)
                .map(|cache| (cache, c.objects))
                .map_err(|e| SimError::engine(format!("cache {}", c.name), e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let start_slab_bytes = memcg::slab::slab_bytes_in_use() as i128;
    let mut wheel: VecDeque<Vec<Held>> = VecDeque::new();
    let mut driver_rng = stream(seed, &[u64::MAX]);
    let mut tally = Tally::default();
    let mut samples = Samples::new(&COLUMNS);
    let mut failures = Vec::new();

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
            if driver_rng.f64() < cfg.freed_by_jobs {
                tally.freed_by_jobs += 1;
                for_threads[i % cfg.threads].push(held);
            } else {
                tally.freed_by_simulator += 1;
                for_driver.push(held);
            }
        }

        // The driver, in the root, frees its share first: remote frees.
        drop(for_driver);
        let turns = Turns::new();
        let results = std::thread::scope(|s| {
            let handles: Vec<_> = for_threads
                .into_iter()
                .enumerate()
                .map(|(t, to_free)| {
                    let rng = stream(seed, &[round as u64, t as u64]);
                    let (group, caches, turns) = (&group, &caches, &turns);
                    std::thread::Builder::new()
                        .name(format!("job-{round}.{t}"))
                        .spawn_scoped(s, move || job(group, caches, cfg, (t, rng), to_free, turns))
                        .expect("the OS starts a job thread")
                })
                .collect();
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
            let timings = (last_rmdir, round_started.elapsed());
            let row = sample(&h, cfg, &wheel, round, start_slab_bytes, timings)?;
            check_sample(design, &row, &mut failures);
            progress.set_message(format!(
                "{}: {} dead contexts pin {}, slabs {}",
                design.name(),
                row[col("dead_contexts")],
                human_bytes(row[col("pinned_bytes")] as f64),
                human_bytes(row[col("slab_bytes")] as f64),
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
    let end_slab_bytes = memcg::slab::slab_bytes_in_use() as i128 - start_slab_bytes;
    let drift_bytes = stat_bytes(&h, "memory.current")?;
    if drift_bytes != 0 {
        failures.push(format!(
            "{}: drift: the root's memory.current is {drift_bytes} bytes after every object was freed and every group removed, want 0",
            design.name()
        ));
    }
    if live_contexts != 0 || live_caches != 0 || leftovers != memcg::Leftovers::default() {
        failures.push(format!(
            "{}: leaks at the end: {live_contexts} live contexts, {live_caches} live caches, {leftovers:?}",
            design.name()
        ));
    }

    let ending = Ending {
        start_slab_bytes,
        end_slab_bytes,
        drift_bytes,
        elapsed: started.elapsed(),
    };
    let summary = summarize(cfg, design, seed, &samples, &tally, &h, ending);
    Ok(Run {
        summary,
        samples,
        failures,
    })
}

/// The report of one run, or the comparison of a shared and an isolated one.
fn report(cfg: &Churn, runs: &[Run]) -> Report {
    let designs: Vec<&str> = runs.iter().map(|r| r.summary.design.name()).collect();
    let title = format!(
        "memcg sim churn: {} jobs x {} threads, {:.0}% outlive them; {} slabs",
        cfg.rounds,
        cfg.threads,
        cfg.survive * 100.0,
        designs.join(" vs ")
    );
    let summaries: Vec<&Summary> = runs.iter().map(|r| &r.summary).collect();
    let json = match summaries[..] {
        [shared, isolated] => serde_json::to_string_pretty(&Comparison {
            shared,
            isolated,
            slab_saving: slab_saving(shared, isolated),
        }),
        _ => serde_json::to_string_pretty(summaries[0]),
    };
    let mut columns = vec!["isolated"];
    columns.extend(COLUMNS);
    let mut samples = Samples::new(&columns);
    for run in runs {
        for row in &run.samples.rows {
            let mut r = vec![i128::from(run.summary.design.is_isolated())];
            r.extend_from_slice(row);
            samples.push(r);
        }
    }
    Report {
        title,
        intro: intro(&summaries),
        tables: vec![table(&summaries)],
        summary: json.expect("the summary serializes"),
        notes: notes(),
        panels: panels(runs),
        samples,
        failures: runs.iter().flat_map(|r| r.failures.clone()).collect(),
    }
}

/// What the run shows, for `report.md`.
fn intro(runs: &[&Summary]) -> String {
    let first = runs[0];
    let mut out = format!(
        "{} jobs came and went, {} threads each, under seed {}; {} of their allocations \
         outlived them, for up to {} rounds. Dying groups stayed at {}: a removed group is freed at \
         once (S1), and what it leaves depends on the slab design.",
        first.rounds,
        first.threads,
        first.seed,
        first.survivors,
        first.parameters.lifetime[1],
        first.peak_dying_groups,
    );
    for s in runs {
        let leaves = match s.design {
            Design::Shared => format!(
                "its kmem context ({} B) and no slab (its survivors share slabs with every \
                 group)",
                s.context_size_bytes
            ),
            Design::Isolated => format!(
                "its kmem context and its dead caches (up to {} at once), which keep every \
                 slab a survivor is in",
                s.peak_dead_caches
            ),
        };
        out.push_str(&format!(
            " With {} a removed group leaves {leaves}: slabs in use peaked at {} for at most \
             {} of live objects ({:.0}% used on average).",
            s.design.title(),
            human_bytes(s.peak_slab_bytes as f64),
            human_bytes(s.peak_live_object_bytes as f64),
            s.mean_slab_utilization * 100.0
        ));
    }
    if let [shared, isolated] = runs {
        out.push_str(&format!(
            " Sharing used {:.1}% fewer slabs.",
            slab_saving(shared, isolated) * 100.0
        ));
    }
    out
}

/// What sharing saves: `1 - peak slabs shared / peak slabs isolated`.
fn slab_saving(shared: &Summary, isolated: &Summary) -> f64 {
    if isolated.peak_slab_bytes <= 0 {
        return 0.0;
    }
    1.0 - shared.peak_slab_bytes as f64 / isolated.peak_slab_bytes as f64
}

/// One job thread, `t` of the job's: in its first turn enter the group, free
/// the survivors dealt to it and allocate; in its second (once every thread
/// of the job has allocated) free the short-lived rest, give its slabs back
/// and leave the group. Returns the survivors.
fn job(
    group: &Group,
    caches: &[(SlabCache, usize)],
    cfg: &Churn,
    (t, rng): (usize, Rng),
    to_free: Vec<Held>,
    turns: &Turns,
) -> memcg::Result<JobResult> {
    let made = turns.take(t, || {
        group.enter().and_then(|in_job| {
            // Objects of removed groups, freed from a thread of another group.
            drop(to_free);
            allocate(cfg, caches, rng).map(|made| (in_job, made))
        })
    });
    // Taken even on error, so that the other threads do not wait forever.
    let made = turns.take(cfg.threads + t, || {
        made.map(|(in_job, (kept, short_lived, objects))| {
            // The job ends: its short-lived memory goes, on the thread that
            // made it, and the thread's slabs go back to their caches now
            // rather than at its exit, in turn.
            drop(short_lived);
            memcg::slab::flush_thread_cache();
            drop(in_job);
            (kept, objects)
        })
    });
    let (kept, objects) = made?;
    Ok(JobResult {
        kept,
        objects,
        kmem: cfg.kmem.count as u64,
        anon: cfg.anon_pages as u64,
    })
}

/// The turns of a job's threads: turn `n` runs once turns `0..n` are done.
/// Shared slabs are handed out from lists every thread takes from and gives
/// back to: threads doing so at once would leave survivors in different
/// slabs on every run.
struct Turns {
    done: Mutex<usize>,
    changed: Condvar,
}

impl Turns {
    fn new() -> Turns {
        Turns {
            done: Mutex::new(0),
            changed: Condvar::new(),
        }
    }

    /// Wait for turn `n`, run `f`, and pass the turn on (even if `f` panics).
    fn take<R>(&self, n: usize, f: impl FnOnce() -> R) -> R {
        struct Pass<'a>(&'a Turns);
        impl Drop for Pass<'_> {
            fn drop(&mut self) {
                *self.0.done.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                self.0.changed.notify_all();
            }
        }
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        drop(
            self.changed
                .wait_while(done, |done| *done < n)
                .unwrap_or_else(|e| e.into_inner()),
        );
        let _pass = Pass(self);
        f()
    }
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
        if rng.f64() < cfg.survive {
            kept.push((held, rng.usize(lo..=hi)));
        } else {
            short_lived.push(held);
        }
    };
    let mut objects = 0;
    for &(cache, count) in caches {
        for _ in 0..count {
            result(Held::Object(cache.alloc()?, cache.slot_size()), &mut rng);
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

/// Quiesce and sample the hierarchy after `round`; `timings` are the last
/// rmdir's and the round's.
fn sample(
    h: &Hierarchy,
    cfg: &Churn,
    wheel: &VecDeque<Vec<Held>>,
    round: usize,
    start_slab_bytes: i128,
    (rmdir, round_time): (Duration, Duration),
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
    let slab_bytes = memcg::slab::slab_bytes_in_use() as i128 - start_slab_bytes;
    let object_bytes: i128 = wheel.iter().flatten().map(Held::object_bytes).sum();
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
        slab_bytes,
        object_bytes,
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

/// The invariants of every sample: no drift, a consistent hierarchy, no
/// removed group kept alive (S1: the simulator holds no handle), and, with
/// shared slabs, no cache or slab kept for a removed group (S3).
fn check_sample(design: Design, row: &[i128], failures: &mut Vec<String>) {
    let round = row[col("round")];
    let mut zero = vec![
        ("drift_bytes", "root memory.current minus live charges"),
        (
            "hierarchy_gap_bytes",
            "root memory.current minus its children's",
        ),
        ("dying_groups", "removed groups not yet freed (S1)"),
    ];
    if design == Design::Shared {
        zero.push(("dead_caches", "caches kept for removed groups (S3)"));
        zero.push(("dead_slab_bytes", "slabs kept for removed groups (S3)"));
    }
    for (name, what) in zero {
        let v = row[col(name)];
        if v != 0 {
            failures.push(format!(
                "{}: round {round}: {name} is {v} ({what}), want 0",
                design.name()
            ));
        }
    }
}

/// What the run measured once every group was removed.
struct Ending {
    start_slab_bytes: i128,
    end_slab_bytes: i128,
    drift_bytes: i128,
    elapsed: Duration,
}

fn summarize(
    cfg: &Churn,
    design: Design,
    seed: u64,
    samples: &Samples,
    tally: &Tally,
    h: &Hierarchy,
    ending: Ending,
) -> Summary {
    let Ending {
        start_slab_bytes,
        end_slab_bytes,
        drift_bytes,
        elapsed,
    } = ending;
    let peak = |name: &str| samples.rows.iter().map(|r| r[col(name)]).max().unwrap_or(0);
    let max_abs = |name: &str| {
        samples
            .rows
            .iter()
            .map(|r| r[col(name)].abs())
            .max()
            .unwrap_or(0)
    };
    let ratios: Vec<f64> = samples
        .rows
        .iter()
        .filter(|r| r[col("slab_bytes")] > 0)
        .map(|r| r[col("live_object_bytes")] as f64 / r[col("slab_bytes")] as f64)
        .collect();
    Summary {
        scenario: "churn",
        design,
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
        peak_slab_bytes: peak("slab_bytes"),
        peak_live_object_bytes: peak("live_object_bytes"),
        mean_slab_utilization: ratios.iter().sum::<f64>() / ratios.len().max(1) as f64,
        start_slab_bytes,
        end_slab_bytes,
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

/// The summary for people: a column per design.
fn table(runs: &[&Summary]) -> Table {
    let mut headers = vec!["churn"];
    headers.extend(runs.iter().map(|s| s.design.title()));
    let mut t = Table::new(&headers);
    let mut row = |k: &str, v: &dyn Fn(&Summary) -> String| {
        let mut cells = vec![k.to_string()];
        cells.extend(runs.iter().map(|s| v(s)));
        t.row(cells);
    };
    row("jobs (mkdir, run, rmdir)", &|s| {
        format!("{} x {} threads", s.rounds, s.threads)
    });
    row("slab objects allocated", &|s| {
        s.objects_allocated.to_string()
    });
    row("kmem buffers / anon pages", &|s| {
        format!("{} / {}", s.kmem_buffers_allocated, s.anon_pages_charged)
    });
    row("outlived their job", &|s| s.survivors.to_string());
    row("  freed by other jobs / root / at end", &|s| {
        let at_end =
            s.survivors - s.survivors_freed_by_job_threads - s.survivors_freed_by_simulator;
        format!(
            "{} / {} / {at_end}",
            s.survivors_freed_by_job_threads, s.survivors_freed_by_simulator
        )
    });
    row("peak dying groups (S1)", &|s| {
        s.peak_dying_groups.to_string()
    });
    row("peak dead kmem contexts (= dying groups pre-patch)", &|s| {
        s.peak_dead_contexts.to_string()
    });
    row("peak dead caches", &|s| s.peak_dead_caches.to_string());
    row("size of a group / context / cache", &|s| {
        format!(
            "{} / {} / {} B",
            s.group_size_bytes, s.context_size_bytes, s.cache_size_bytes
        )
    });
    row("peak pinned by removed groups", &|s| {
        human_bytes(s.peak_pinned_bytes as f64)
    });
    row("  pre-patch, same lifetimes", &|s| {
        human_bytes(s.peak_prepatch_pinned_bytes as f64)
    });
    row("peak slabs in use, all caches", &|s| {
        human_bytes(s.peak_slab_bytes as f64)
    });
    row("peak live slab objects", &|s| {
        human_bytes(s.peak_live_object_bytes as f64)
    });
    row("mean slab utilization", &|s| {
        format!("{:.1} %", s.mean_slab_utilization * 100.0)
    });
    row("slabs in use at the end, no object left", &|s| {
        human_bytes(s.end_slab_bytes as f64)
    });
    row("peak slabs of dead caches", &|s| {
        human_bytes(s.peak_dead_slab_bytes as f64)
    });
    row("rmdir mean / max", &|s| {
        format!(
            "{} / {}",
            human_ns(s.rmdir_mean_ns as f64),
            human_ns(s.rmdir_max_ns as f64)
        )
    });
    row("max |drift| over samples", &|s| {
        format!("{} B", s.max_abs_sample_drift_bytes)
    });
    row("drift at the end", &|s| format!("{} B", s.drift_bytes));
    row("run time", &|s| human_ns(s.elapsed_ms as f64 * 1e6));
    if let [shared, isolated] = runs {
        t.row(vec![
            "peak slabs saved by sharing".into(),
            format!("{:.1} %", slab_saving(shared, isolated) * 100.0),
            "-".into(),
        ]);
    }
    t
}

fn notes() -> Vec<String> {
    [
        "Two slab designs run the same jobs under the same seed, each on a fresh hierarchy with caches of its own: *shared* caches (`SlabCache::new`, S11), whose slabs hold objects of every group, each charged by the byte (its slot, plus an 8-byte object-vector entry in a slab holding objects of several groups); and *isolated* caches (`SlabCache::isolated`, the seed's design, S6), with child caches per group, charged by the slab. `samples.csv` has the rows of both, `isolated` 0 or 1.",
        "`dying_groups`: removed groups not yet freed (the root's `nr_dying_descendants`). The simulator keeps no handle, so S1 says 0.",
        "`dead_contexts`: kmem contexts of removed groups, alive while a charge made through them is (`Leftovers::dead_contexts`). Before the seed patch each of these kept its whole group alive: that many dying groups.",
        "`dead_caches`: child caches of removed groups, alive while they hold an object (`Leftovers::dead_caches`). Only isolated caches have them: a removed group leaves no cache behind with shared ones (S3), so this is 0 there, and the simulator checks it.",
        "`pinned_bytes`: what removed groups pin besides live objects: their contexts and the structs of their dead caches (`Leftovers::pinned_bytes`).",
        "`prepatch_pinned_bytes`: the same plus one group (`memcg::group_size()`) per dead context, the pre-patch kernel's cost for the same object lifetimes.",
        "`dead_slab_bytes`: slabs of dead caches, holding the survivors of removed groups (`Leftovers::dead_cache_slab_bytes`), charged to a live ancestor. 0 with shared caches (checked): there survivors sit in slabs every group fills.",
        "`slab_bytes`: slabs in use in the process, all caches (`memcg::slab::slab_bytes_in_use()`, empty slabs kept for reuse included), less those in use when the run started (`start_slab_bytes`: what the first design's caches still hold, see `end_slab_bytes`). `live_object_bytes`: the slot sizes of the live slab objects the simulator holds, counted from its own objects. Both sampled with every job thread joined, so the job's short-lived objects are gone: what stays is what survivors cost. `mean_slab_utilization` is their ratio, averaged over samples; `slab_saving` is `1 - peak_slab_bytes(shared) / peak_slab_bytes(isolated)`.",
        "`end_slab_bytes`: slabs still in use once every object is freed and every group removed. Isolated caches: 0, each dead cache goes with its last slab. Shared caches live on and keep their slabs: those the last objects were freed from by another thread (remote frees) wait on the cache's partial list until a refill reuses them or reclaim shrinks the cache.",
        "`drift_bytes` (per sample): the root's `memory.current` (page counters, charged through kmem contexts) minus the live charges: the kmem buffers and anon pages the simulator holds, counted by the simulator, plus the pages charged for slab objects (`kernel - kmem` in the root's `memory.stat`). Sampled after `quiesce()` with every job thread joined. Must be 0.",
        "`drift_bytes` (summary): the root's `memory.current` after the parents were removed while survivors lived (their contexts move up again, S4), then every survivor freed. Must be exactly 0 (S2).",
        "`hierarchy_gap_bytes`: the root's `memory.current` minus the sum of its children's. Must be 0.",
        "Columns ending in `_ns` are timings; every other column is the same for the same seed.",
    ]
    .map(String::from)
    .to_vec()
}

/// The plot: slabs in use, removed groups and their leftovers, bookkeeping
/// pinned, charges; a line per design where the designs differ.
fn panels(runs: &[Run]) -> Vec<Panel> {
    // The column `col` of every run: one line where the runs agree.
    let lines = |name: &str, col: &str| -> Vec<Series> {
        let points: Vec<Vec<(f64, f64)>> = runs
            .iter()
            .map(|r| r.samples.series("round", col))
            .collect();
        if runs.len() == 1 {
            return vec![Series::new(name, points[0].clone())];
        }
        if points.windows(2).all(|w| w[0] == w[1]) {
            return vec![Series::new(&format!("{name}, both"), points[0].clone())];
        }
        runs.iter()
            .zip(points)
            .map(|(r, p)| Series::new(&format!("{name}, {}", r.summary.design.name()), p))
            .collect()
    };
    let panel = |title: &str, y_unit, log_y, series: Vec<Vec<Series>>| Panel {
        title: title.into(),
        x_label: "round".into(),
        y_unit,
        log_x: false,
        log_y,
        series: series.into_iter().flatten().collect(),
    };
    // The pre-patch kernel had isolated caches: its cost is that run's.
    let prepatch = runs
        .iter()
        .find(|r| r.summary.design.is_isolated())
        .unwrap_or(&runs[0]);
    vec![
        panel(
            "Slabs in use, all caches, against the live objects in them (log scale)",
            Unit::Bytes,
            true,
            vec![
                lines("slabs in use", "slab_bytes"),
                lines("live slab objects", "live_object_bytes"),
            ],
        ),
        panel(
            "Removed groups and what they leave behind",
            Unit::Count,
            false,
            vec![
                lines("dead caches", "dead_caches"),
                lines(
                    "dead kmem contexts = dying groups pre-patch",
                    "dead_contexts",
                ),
                lines("dying groups now (S1)", "dying_groups"),
            ],
        ),
        panel(
            "Bookkeeping pinned by removed groups",
            Unit::Bytes,
            false,
            vec![
                vec![Series::new(
                    "pre-patch: whole groups until their last object",
                    prepatch.samples.series("round", "prepatch_pinned_bytes"),
                )],
                lines("now: contexts + dead caches", "pinned_bytes"),
            ],
        ),
        panel(
            "Charges: root memory.current, equal to the live charges (drift 0)",
            Unit::Bytes,
            false,
            vec![
                lines("root memory.current", "root_current_bytes"),
                lines("drift", "drift_bytes"),
            ],
        ),
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
