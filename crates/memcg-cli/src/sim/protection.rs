//! `protection`: a latency tenant's page cache against a growing batch
//! neighbour under one parent limit, with and without protection (S13).
//!
//! `/host` has a `memory.max`; under it `/host/latency` reads a working set
//! of page cache (file pages) and `/host/batch` grows: anon memory step by
//! step up to a ceiling, and page cache it streams through, new pages every
//! step, so that what it asks for soon exceeds the parent's limit. Reclaim
//! for `/host` takes file pages from both tenants in proportion to their
//! unprotected usage; `memory.high` on the batch reclaims its own pages.
//! Every step the latency tenant first reads back (refaults) a little of
//! what it lost, then the batch grows. Halfway through the run the batch
//! takes a burst of anon memory for one step, more than the parent can give
//! next to the latency tenant's protection.
//!
//! The same steps run three times, each on a fresh hierarchy: `none` (no
//! protection), `low` (`memory.low` on the latency tenant) and `min`
//! (`memory.min`). Without protection the latency tenant keeps what
//! proportional reclaim leaves it. With `memory.low` reclaim takes the
//! batch's page cache first and the latency tenant keeps its working set,
//! except in the burst, when nothing unprotected is left: reclaim then takes
//! protected usage and counts `low` events, and the tenant refaults it back
//! afterwards. With `memory.min` protected usage is never taken: the batch's
//! burst charges fail instead (`oom` events on `/host`).
//!
//! Each tenant is a real thread attached to its group (it charges its own
//! pages), driven step by step by the simulator, which samples with both
//! threads idle: every value but timings is the same on every run (the
//! scenario draws nothing at random; the seed is recorded only). Timings:
//! the wall time of each batch step (reclaim it does, and throttling if the
//! engine throttles there), and, where the engine has `memory.pressure`,
//! its stall totals.

use std::time::Instant;

use indicatif::ProgressBar;
use memcg::{Group, Hierarchy, PageKind, UserPage};
use serde::Serialize;

use super::plot::{Panel, Series, Unit};
use super::report::{Report, Samples, Table};
use super::scenario::Protection;
use super::stepper::Stepper;
use super::units::{human_bytes, human_ns};
use super::{stat_bytes, SimError};

/// The sampled columns, in CSV order: one row per variant and step.
const COLUMNS: [&str; 14] = [
    "variant",
    "step",
    "latency_bytes",
    "latency_low_events",
    "latency_refault_bytes",
    "batch_bytes",
    "batch_anon_bytes",
    "batch_high_events",
    "host_oom_events",
    "batch_failed_bytes",
    "batch_step_ns",
    "batch_some_stall_ns",
    "batch_full_stall_ns",
    "latency_some_stall_ns",
];

const HOST: &str = "/host";
const LATENCY: &str = "/host/latency";
const BATCH: &str = "/host/batch";
const PAGE: u64 = memcg::PAGE_SIZE as u64;

/// How the latency tenant is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Variant {
    None,
    Low,
    Min,
}

impl Variant {
    const ALL: [Variant; 3] = [Variant::None, Variant::Low, Variant::Min];

    /// The interface file that protects the tenant, if any.
    fn file(self) -> Option<&'static str> {
        match self {
            Variant::None => None,
            Variant::Low => Some("memory.low"),
            Variant::Min => Some("memory.min"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Variant::None => "no protection",
            Variant::Low => "memory.low",
            Variant::Min => "memory.min",
        }
    }
}

/// The summary of one variant.
#[derive(Debug, Serialize)]
struct VariantSummary {
    variant: Variant,
    /// The latency tenant's `memory.low` / `memory.min` (0: none).
    protection_bytes: u64,
    /// The latency tenant's `memory.current` after the last step.
    final_latency_bytes: u64,
    /// Its lowest `memory.current` after its working set was read in.
    min_latency_bytes: u64,
    /// `final_latency_bytes` over the smaller of the working set and the
    /// protection (the working set, unprotected).
    kept: f64,
    /// The latency tenant's `memory.events` `low` at the end.
    latency_low_events: u64,
    /// What the latency tenant read back, in all.
    latency_refault_bytes: u64,
    final_batch_bytes: u64,
    peak_batch_bytes: u64,
    /// The batch tenant's `memory.events` `high` at the end.
    batch_high_events: u64,
    /// `/host`'s `memory.events` `oom`: charges that failed at its limit.
    host_oom_events: u64,
    /// Bytes the batch tenant could not charge.
    batch_failed_bytes: u64,
    median_batch_step_ns: u64,
    max_batch_step_ns: u64,
    /// Whether the engine has `memory.pressure` (else the stall totals are 0).
    pressure: bool,
    /// The batch tenant's `memory.pressure` `some` total at the end.
    batch_some_stall_ns: u64,
    /// The latency tenant's `memory.pressure` `some` total at the end.
    latency_some_stall_ns: u64,
    /// The root's `memory.current` once both tenants exited and every group
    /// was removed: must be 0.
    drift_bytes: i128,
}

/// The summary of a protection run (variants `none`, `low`, `min`).
type Summary = super::report::Summary<Protection, VariantSummary>;

/// What a tenant did in one step.
#[derive(Debug, Default, Clone, Copy)]
struct Done {
    /// Bytes charged.
    charged: u64,
    /// Bytes that could not be charged.
    failed: u64,
    /// Anon bytes held at the end of the step.
    anon: u64,
    ns: u64,
}

/// A thread attached to a group, running one step per order.
type Tenant = Stepper<Done>;

/// Start a thread in `group` that runs `step(i)` for every step `i` it is
/// given, holding its pages until it is dropped.
fn spawn_tenant(
    group: &Group,
    mut step: impl FnMut(usize) -> Result<Done, memcg::Error> + Send + 'static,
) -> Result<Tenant, SimError> {
    let name = group.path().trim_start_matches('/').replace('/', "-");
    Stepper::start(
        |body| memcg::Builder::new().name(name).spawn_in(group, body),
        move |inbox, outbox| {
            for i in inbox {
                let t = Instant::now();
                let result = step(i).map(|d| Done {
                    ns: t.elapsed().as_nanos() as u64,
                    ..d
                });
                if outbox.send(result).is_err() {
                    break;
                }
            }
        },
    )
    .map_err(|e| SimError::engine(format!("spawn in {}", group.path()), e))
}

/// Charge up to `pages` pages of `kind` into `into`; stop at the first
/// failure. Returns the pages charged and those that failed.
fn charge(
    into: &mut Vec<UserPage>,
    kind: PageKind,
    pages: usize,
) -> Result<(usize, usize), memcg::Error> {
    for i in 0..pages {
        match UserPage::charge(kind) {
            Ok(page) => into.push(page),
            Err(e) if e.kind() == memcg::ErrorKind::Limit => return Ok((i, pages - i)),
            Err(e) => return Err(e),
        }
    }
    Ok((pages, 0))
}

/// The latency tenant: reads its working set in at step 0, then each step
/// reads back at most `refault` of what reclaim took.
fn latency_step(cfg: &Protection) -> impl FnMut(usize) -> Result<Done, memcg::Error> + Send {
    let (ws, refault) = (cfg.working_set.pages(), cfg.refault.pages());
    let mut pages: Vec<UserPage> = Vec::with_capacity(ws);
    move |i| {
        pages.retain(UserPage::is_live);
        let missing = ws - pages.len();
        let want = if i == 0 {
            missing
        } else {
            missing.min(refault)
        };
        let (charged, failed) = charge(&mut pages, PageKind::File, want)?;
        Ok(Done {
            charged: charged as u64 * PAGE,
            failed: failed as u64 * PAGE,
            ..Done::default()
        })
    }
}

/// The batch tenant: anon memory growing by `batch_anon` per step up to
/// `batch_anon_max`, `batch_file` of new page cache per step, and `burst` of
/// anon memory held for step `burst_step` only.
fn batch_step(
    cfg: &Protection,
    burst_step: usize,
) -> impl FnMut(usize) -> Result<Done, memcg::Error> + Send {
    let (anon_step, anon_max) = (cfg.batch_anon.pages(), cfg.batch_anon_max.pages());
    let (file_step, burst_pages) = (cfg.batch_file.pages(), cfg.burst.pages());
    let mut anon: Vec<UserPage> = Vec::new();
    let mut file: Vec<UserPage> = Vec::new();
    let mut burst: Vec<UserPage> = Vec::new();
    move |i| {
        burst.clear();
        file.retain(UserPage::is_live);
        let target = ((i + 1) * anon_step).min(anon_max);
        let grow = target.saturating_sub(anon.len());
        let (mut charged, mut failed) = charge(&mut anon, PageKind::Anon, grow)?;
        if i == burst_step {
            let (c, f) = charge(&mut burst, PageKind::Anon, burst_pages)?;
            (charged, failed) = (charged + c, failed + f);
        }
        let (c, f) = charge(&mut file, PageKind::File, file_step)?;
        Ok(Done {
            charged: (charged + c) as u64 * PAGE,
            failed: (failed + f) as u64 * PAGE,
            anon: (anon.len() + burst.len()) as u64 * PAGE,
            ns: 0,
        })
    }
}

/// `memory.current` of `g`.
fn current(g: &Group) -> Result<u64, SimError> {
    let text = g
        .read("memory.current")
        .map_err(|e| SimError::engine(format!("read {} memory.current", g.path()), e))?;
    Ok(text.trim().parse().unwrap_or(0))
}

/// The `some` and `full` stall totals of `g`'s `memory.pressure`, in ns;
/// `None` if the engine has no such file.
fn stalls(g: &Group) -> Option<(u64, u64)> {
    let text = g.read("memory.pressure").ok()?;
    Some(parse_stalls(&text))
}

/// The `total=` (µs) of the `some` and `full` lines of a PSI file, in ns.
fn parse_stalls(text: &str) -> (u64, u64) {
    let total = |kind: &str| {
        text.lines()
            .filter(|l| l.split_whitespace().next() == Some(kind))
            .flat_map(str::split_whitespace)
            .find_map(|w| w.strip_prefix("total=")?.parse::<u64>().ok())
            .map_or(0, |us| us.saturating_mul(1000))
    };
    (total("some"), total("full"))
}

/// Run `variant` on a fresh hierarchy; push a row per step into `samples`.
fn run_variant(
    cfg: &Protection,
    variant: Variant,
    samples: &mut Samples,
    progress: &ProgressBar,
) -> Result<VariantSummary, SimError> {
    let h = Hierarchy::new();
    let mkdir = |path: &str| {
        h.create(path)
            .map_err(|e| SimError::engine(format!("mkdir {path}"), e))
    };
    let write = |g: &Group, file: &str, size: u64| {
        g.write(file, &size.to_string())
            .map_err(|e| SimError::engine(format!("write {} {file}", g.path()), e))
    };
    let host = mkdir(HOST)?;
    write(&host, "memory.max", cfg.parent_max.0)?;
    let latency = mkdir(LATENCY)?;
    let batch = mkdir(BATCH)?;
    write(&batch, "memory.high", cfg.batch_high.0)?;
    let protection_bytes = match variant.file() {
        Some(file) => {
            write(&latency, file, cfg.protection.0)?;
            cfg.protection.0
        }
        None => 0,
    };

    let burst_step = cfg.rounds / 2;
    let tenants = (
        spawn_tenant(&latency, latency_step(cfg))?,
        spawn_tenant(&batch, batch_step(cfg, burst_step))?,
    );
    let mut latency_seen = Vec::new();
    let mut batch_seen = Vec::new();
    let mut step_ns = Vec::new();
    let (mut refaulted, mut failed) = (0, 0);
    let mut pressure = false;
    let (mut batch_stall, mut latency_stall) = ((0, 0), (0, 0));
    for i in 0..cfg.rounds {
        progress.set_message(format!("{}: step {i}", variant.label()));
        let step = |t: &Tenant, who: &str| {
            t.step(i)
                .map_err(|e| SimError::engine(format!("{who}, step {i}"), e))
        };
        let l = step(&tenants.0, "latency")?;
        let b = step(&tenants.1, "batch")?;
        if i > 0 {
            refaulted += l.charged;
        }
        failed += b.failed;
        h.quiesce();
        let (lat, bat) = (current(&latency)?, current(&batch)?);
        if let (Some(bs), Some(ls)) = (stalls(&batch), stalls(&latency)) {
            pressure = true;
            (batch_stall, latency_stall) = (bs, ls);
        }
        latency_seen.push(lat);
        batch_seen.push(bat);
        step_ns.push(b.ns);
        samples.push(vec![
            variant as i128,
            i as i128,
            lat.into(),
            latency.events().low.into(),
            refaulted.into(),
            bat.into(),
            b.anon.into(),
            batch.events().high.into(),
            host.events().oom.into(),
            failed.into(),
            b.ns.into(),
            batch_stall.0.into(),
            batch_stall.1.into(),
            latency_stall.0.into(),
        ]);
        progress.inc(1);
    }
    let (latency_low_events, batch_high_events, host_oom_events) =
        (latency.events().low, batch.events().high, host.events().oom);
    drop(tenants);
    drop((latency, batch, host));
    for path in [LATENCY, BATCH, HOST] {
        h.remove(path)
            .map_err(|e| SimError::engine(format!("rmdir {path}"), e))?;
    }
    h.quiesce();
    let drift_bytes = stat_bytes(&h, "memory.current")?;

    let final_latency_bytes = latency_seen.last().copied().unwrap_or(0);
    let goal = match variant {
        Variant::None => cfg.working_set.0,
        _ => cfg.working_set.0.min(cfg.protection.0),
    };
    step_ns.sort_unstable();
    Ok(VariantSummary {
        variant,
        protection_bytes,
        final_latency_bytes,
        min_latency_bytes: latency_seen.iter().copied().min().unwrap_or(0),
        kept: final_latency_bytes as f64 / goal.max(1) as f64,
        latency_low_events,
        latency_refault_bytes: refaulted,
        final_batch_bytes: batch_seen.last().copied().unwrap_or(0),
        peak_batch_bytes: batch_seen.iter().copied().max().unwrap_or(0),
        batch_high_events,
        host_oom_events,
        batch_failed_bytes: failed,
        median_batch_step_ns: step_ns.get(step_ns.len() / 2).copied().unwrap_or(0),
        max_batch_step_ns: step_ns.last().copied().unwrap_or(0),
        pressure,
        batch_some_stall_ns: batch_stall.0,
        latency_some_stall_ns: latency_stall.0,
        drift_bytes,
    })
}

/// Run `cfg`: every variant, one after the other, ticking `progress` once
/// per step.
pub(crate) fn run(cfg: &Protection, seed: u64, progress: &ProgressBar) -> Result<Report, SimError> {
    let started = Instant::now();
    progress.set_length((Variant::ALL.len() * cfg.rounds) as u64);
    let mut samples = Samples::new(&COLUMNS);
    let mut variants = Vec::new();
    for variant in Variant::ALL {
        variants.push(run_variant(cfg, variant, &mut samples, progress)?);
    }
    let mut failures = Vec::new();
    for v in &variants {
        if v.drift_bytes != 0 {
            failures.push(format!(
                "drift ({}): the root's memory.current is {} bytes after both tenants exited and every group was removed, want 0",
                v.variant.label(),
                v.drift_bytes
            ));
        }
    }
    let summary = Summary::new(
        "protection",
        (seed, cfg.rounds),
        variants,
        |v| v.drift_bytes,
        started,
        cfg.clone(),
    );
    Ok(Report {
        title: "memcg sim protection: a protected tenant's page cache against a growing neighbour"
            .into(),
        intro: intro(&summary),
        tables: tables(&summary),
        summary: serde_json::to_string_pretty(&summary).expect("the summary serializes"),
        notes: notes(),
        panels: panels(cfg, &samples),
        samples,
        failures,
    })
}

fn intro(s: &Summary) -> String {
    let p = &s.parameters;
    let kept = |v: Variant| {
        s.variants
            .iter()
            .find(|x| x.variant == v)
            .map_or(0.0, |x| x.kept * 100.0)
    };
    format!(
        "`/host` (memory.max {}) holds a latency tenant reading {} of page cache and a batch \
         tenant (memory.high {}) that grows to {} of anon memory and streams through {} of new \
         page cache per step, with a burst of {} more anon memory at step {}. After {} steps \
         the latency tenant keeps {:.0}% of its working set without protection, {:.0}% of its \
         protection ({}) with memory.low and {:.0}% with memory.min.",
        human_bytes(p.parent_max.0 as f64),
        human_bytes(p.working_set.0 as f64),
        human_bytes(p.batch_high.0 as f64),
        human_bytes(p.batch_anon_max.0 as f64),
        human_bytes(p.batch_file.0 as f64),
        human_bytes(p.burst.0 as f64),
        s.rounds / 2,
        s.rounds,
        kept(Variant::None),
        kept(Variant::Low),
        human_bytes(p.protection.0 as f64),
        kept(Variant::Min),
    )
}

fn tables(s: &Summary) -> Vec<Table> {
    let mut t = Table::new(&[
        "latency tenant",
        "protection",
        "working set, end",
        "kept",
        "lowest",
        "low events",
        "refaulted",
        "batch, end",
        "high events",
        "batch failed",
        "batch step (median)",
        "batch stall",
    ]);
    let bytes = |b: u64| human_bytes(b as f64);
    for v in &s.variants {
        t.row(vec![
            v.variant.label().into(),
            bytes(v.protection_bytes),
            bytes(v.final_latency_bytes),
            format!("{:.0} %", v.kept * 100.0),
            bytes(v.min_latency_bytes),
            v.latency_low_events.to_string(),
            bytes(v.latency_refault_bytes),
            bytes(v.final_batch_bytes),
            v.batch_high_events.to_string(),
            bytes(v.batch_failed_bytes),
            human_ns(v.median_batch_step_ns as f64),
            if v.pressure {
                human_ns(v.batch_some_stall_ns as f64)
            } else {
                "-".into()
            },
        ]);
    }
    let mut m = Table::new(&["protection", "value"]);
    m.closing_rows(s.drift_bytes, s.elapsed_ms);
    vec![t, m]
}

fn notes() -> Vec<String> {
    [
        "Each row of `samples.csv` is one step of one variant (`variant`: 0 none, 1 memory.low, 2 memory.min), sampled with both tenants idle after `Hierarchy::quiesce`.",
        "`latency_bytes`, `batch_bytes`: the tenants' `memory.current`; `batch_anon_bytes`: the anon memory the batch holds (its burst included).",
        "`latency_low_events`, `batch_high_events`, `host_oom_events`: `memory.events` `low` of the latency tenant (reclaim took usage under its memory.low, S13), `high` of the batch, `oom` of `/host` (a charge failed at its memory.max after reclaim). Cumulative.",
        "`latency_refault_bytes`, `batch_failed_bytes`: cumulative: what the latency tenant read back of its working set after reclaim took it, and what the batch could not charge.",
        "`kept`: the latency tenant's final usage over the smaller of its working set and its protection (its working set, unprotected).",
        "`batch_step_ns`: wall time of the batch's step (its charges, the reclaim they run, throttling if any). `*_stall_ns`: the `total=` of the `some`/`full` lines of `memory.pressure`, where the engine has it (else 0). Columns ending in `_ns` are timings; every other column is the same on every run.",
    ]
    .map(String::from)
    .to_vec()
}

fn panels(cfg: &Protection, samples: &Samples) -> Vec<Panel> {
    // One colour per variant in every panel: its index in Variant::ALL.
    let per_variant = |column: &str| -> Vec<Series> {
        Variant::ALL
            .iter()
            .map(|&v| {
                let points = samples
                    .rows
                    .iter()
                    .filter(|r| r[0] == v as i128)
                    .map(|r| (r[1] as f64, r[samples.index(column)] as f64))
                    .collect();
                Series::new(v.label(), points)
            })
            .collect()
    };
    let steps = |title: &str, y_unit: Unit, log_y: bool, series: Vec<Series>| Panel {
        title: title.into(),
        x_label: "step".into(),
        y_unit,
        log_x: false,
        log_y,
        series,
    };
    let mut working_set = per_variant("latency_bytes");
    working_set.push(Series::new(
        "protection (memory.low / memory.min)",
        (0..cfg.rounds)
            .map(|i| (i as f64, cfg.protection.0 as f64))
            .collect(),
    ));
    let mut panels = vec![
        steps(
            "Latency tenant's working set (memory.current)",
            Unit::Bytes,
            false,
            working_set,
        ),
        steps(
            "Latency tenant's low events (memory.events low, cumulative)",
            Unit::Count,
            false,
            per_variant("latency_low_events"),
        ),
        steps(
            "Batch tenant's usage (memory.current)",
            Unit::Bytes,
            false,
            per_variant("batch_bytes"),
        ),
        steps(
            "Batch tenant's high events (memory.events high, cumulative)",
            Unit::Count,
            false,
            per_variant("batch_high_events"),
        ),
        steps(
            "Batch tenant's step time (charges, reclaim, throttling)",
            Unit::Nanos,
            true,
            per_variant("batch_step_ns"),
        ),
    ];
    let stalled = samples
        .rows
        .iter()
        .any(|r| r[samples.index("batch_some_stall_ns")] > 0);
    if stalled {
        panels.push(steps(
            "Batch tenant's memory pressure (memory.pressure some total)",
            Unit::Nanos,
            false,
            per_variant("batch_some_stall_ns"),
        ));
    }
    panels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_totals_come_from_the_psi_lines() {
        let text = "some avg10=0.00 avg60=1.50 avg300=0.20 total=1234\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=56\n";
        assert_eq!(parse_stalls(text), (1_234_000, 56_000));
        assert_eq!(parse_stalls(""), (0, 0));
    }
}
