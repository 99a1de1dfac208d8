//! `oom`: a runaway tenant among well-behaved ones under one parent limit,
//! without killable units, with the OOM killer, and with `memory.oom.group`
//! (S14).
//!
//! `/host` has a `memory.max`; under it sit `tenants` well-behaved tenants,
//! `/host/tenant-K`, and one runaway, `/host/runaway`. Every tenant runs
//! `workers` worker threads, each attached to a group of its own under its
//! tenant's (`/host/runaway/w0`, ...), where it charges page-level kmem
//! buffers ([`KmemPages`], `chunk` bytes each). A working worker keeps
//! `resident` charged and, every round, does one unit of work: it charges
//! buffers of a size drawn from `work`, holds them for its step and frees
//! them; the unit completes when every charge succeeds (a tenant's
//! *progress*). The runaway's first worker leaks: every round it charges
//! more, drawn from `growth`, and frees nothing; its other workers work like
//! the well-behaved ones. Kmem is not reclaimable, so once the leak fills the
//! parent every charge that does not fit fails after reclaim (an `oom` event
//! on `/host`).
//!
//! The same rounds run three times, each on a fresh hierarchy:
//!
//! - `no_kill`: workers attach with [`Group::enter`], so the OOM killer has
//!   nobody to kill (S14: the OOM is counted and the charge fails). The leak
//!   holds the parent at its limit and the neighbours' work fails from then
//!   on.
//! - `kill`: workers attach with [`Group::enter_killable`] (one killable unit
//!   each), `memory.oom.group` 0. The OOM killer picks the group with live
//!   units and the largest `memory.current`, the leak's, and kills its unit.
//! - `group_kill`: the same with `memory.oom.group` 1 on every tenant: the
//!   runaway's whole tenant is killed, every worker of it (one
//!   `oom_group_kill`, one `oom_kill` per unit).
//!
//! A kill only marks a unit: a worker learns of it at its safe point,
//! [`memcg::check_killed`], which it calls before each step and after a
//! charge fails; it then frees what it holds, leaves its group and exits.
//! Its tenant's supervisor (the simulator) starts a new worker
//! `restart_after` rounds later, which starts over: the leak grows back and
//! is killed again.
//!
//! Determinism: the simulator drives the workers one at a time in a fixed
//! order (tenant by tenant, the runaway last, worker by worker), each step
//! ending before the next begins; a killed worker is joined before the next
//! step, and a round is sampled with every worker idle, after
//! [`Hierarchy::quiesce`]. Sizes come from each worker's own stream of the
//! seed ([`super::stream`], keyed by tenant, worker and round, the same in
//! every variant), so the three variants face the same demands, and every
//! sampled value but the timings (`round_ns`) is the same on every run with
//! one seed. What concurrent workers would vary — whose charge meets the
//! limit first, hence in which round an OOM falls — the turn order fixes.

use std::time::Instant;

use indicatif::ProgressBar;
use memcg::{EnterGuard, Group, Hierarchy, KillableGuard, KmemPages};
use serde::Serialize;

use super::plot::{Panel, Series, Unit};
use super::report::{Report, Samples, Table};
use super::scenario::{Oom, Size};
use super::stepper::Stepper;
use super::units::human_bytes;
use super::{stat_bytes, stream, SimError};

/// The sampled columns, in CSV order: one row per variant and round.
const COLUMNS: [&str; 14] = [
    "variant",
    "round",
    "parent_bytes",
    "runaway_bytes",
    "others_bytes",
    "oom_events",
    "kills",
    "group_kills",
    "others_progress",
    "runaway_progress",
    "failed_charges",
    "others_failed_charges",
    "runaway_workers",
    "round_ns",
];

const HOST: &str = "/host";
const RUNAWAY: &str = "/host/runaway";

/// How the tenants' workers meet the OOM killer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Variant {
    /// Plain workers: nothing to kill.
    NoKill,
    /// Killable workers, `memory.oom.group` 0.
    Kill,
    /// Killable workers, `memory.oom.group` 1 on every tenant.
    GroupKill,
}

impl Variant {
    const ALL: [Variant; 3] = [Variant::NoKill, Variant::Kill, Variant::GroupKill];

    fn killable(self) -> bool {
        self != Variant::NoKill
    }

    fn label(self) -> &'static str {
        match self {
            Variant::NoKill => "no kill",
            Variant::Kill => "OOM kill",
            Variant::GroupKill => "OOM group kill",
        }
    }
}

/// The summary of one variant.
#[derive(Debug, Serialize)]
struct VariantSummary {
    variant: Variant,
    /// `/host`'s `memory.events` `oom_kill`: units the OOM killer killed.
    kills: u64,
    /// `/host`'s `memory.events` `oom_group_kill`: whole tenants it killed.
    group_kills: u64,
    /// Units killed outside the runaway tenant (0: the OOM killer stopped
    /// the runaway, not its neighbours).
    others_kills: u64,
    /// `/host`'s `memory.events` `oom`: charges that failed after reclaim.
    oom_events: u64,
    /// Units of work the well-behaved tenants completed.
    others_progress: u64,
    /// Units of work they were given: one per worker and round.
    others_work_units: u64,
    /// Units of work the runaway tenant's working workers completed.
    runaway_progress: u64,
    /// `/host/runaway`'s `memory.peak`.
    runaway_peak: u64,
    /// `/host`'s `memory.peak`.
    parent_peak: u64,
    /// `/host`'s `memory.max`.
    parent_max: u64,
    /// Charges that failed at the limit, every worker's.
    failed_charges: u64,
    /// Those of the well-behaved tenants.
    others_failed_charges: u64,
    /// Workers the supervisors started again after a kill.
    restarts: u64,
    /// The first round with a kill.
    first_kill_round: Option<usize>,
    /// The root's `memory.current` once every worker exited and every group
    /// was removed: must be 0.
    drift_bytes: i128,
}

/// The summary of an oom run (variants `no_kill`, `kill`, `group_kill`).
type Summary = super::report::Summary<Oom, VariantSummary>;

/// What a worker does every round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Keeps its resident buffers and does one unit of work.
    Work,
    /// Charges more and frees nothing.
    Leak,
}

/// One worker's part of the scenario, in chunks.
#[derive(Debug, Clone, Copy)]
struct Plan {
    role: Role,
    chunk: usize,
    resident: usize,
    work: [usize; 2],
    growth: [usize; 2],
    seed: u64,
    /// Its tenant and its index there: the keys of its streams.
    tenant: usize,
    worker: usize,
}

/// What a worker did in one step.
#[derive(Debug, Default, Clone, Copy)]
struct Done {
    /// Units of work completed (0 or 1).
    completed: u64,
    /// Charges that failed at a limit.
    failed: u64,
    /// It was killed: it freed what it held, left its group and exits.
    killed: bool,
}

/// How a worker is attached to its group.
enum Membership {
    // Held for their drop, which leaves the group (and ends the unit).
    Plain(#[allow(dead_code)] EnterGuard),
    Killable(#[allow(dead_code)] KillableGuard),
}

impl Membership {
    fn enter(group: &Group, killable: bool) -> Result<Membership, memcg::Error> {
        Ok(if killable {
            Membership::Killable(group.enter_killable()?)
        } else {
            Membership::Plain(group.enter()?)
        })
    }
}

/// Charge `n` buffers of `chunk` bytes into `into`, stopping at the first
/// that fails at a limit. Whether all were charged.
fn charge(into: &mut Vec<KmemPages>, n: usize, chunk: usize) -> Result<bool, memcg::Error> {
    for _ in 0..n {
        match KmemPages::alloc(chunk) {
            Ok(buffer) => into.push(buffer),
            Err(e) if e.kind() == memcg::ErrorKind::Limit => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

impl Plan {
    /// One step of round `round`, `held` being what the worker keeps.
    fn step(&self, round: usize, held: &mut Vec<KmemPages>) -> Result<Done, memcg::Error> {
        let mut done = Done::default();
        if memcg::check_killed().is_err() {
            done.killed = true;
            return Ok(done);
        }
        let mut rng = stream(
            self.seed,
            &[self.tenant as u64, self.worker as u64, round as u64],
        );
        let all = match self.role {
            Role::Leak => charge(held, rng.usize(self.growth[0]..=self.growth[1]), self.chunk)?,
            Role::Work => {
                // Drawn first, so that a failed resident charge does not
                // shift the stream.
                let n = rng.usize(self.work[0]..=self.work[1]);
                let missing = self.resident.saturating_sub(held.len());
                let mut unit = Vec::with_capacity(n);
                let all = charge(held, missing, self.chunk)? && charge(&mut unit, n, self.chunk)?;
                done.completed = u64::from(all);
                all
            }
        };
        if !all {
            done.failed = 1;
            // A failed charge is where a killed worker learns of it first.
            done.killed = memcg::check_killed().is_err();
        }
        Ok(done)
    }
}

/// A worker thread attached to its group, running one step per order.
type Worker = Stepper<Done>;

/// Start a worker in `group` (a killable unit if `killable`) and wait until
/// it is attached.
fn spawn_worker(group: &Group, killable: bool, plan: Plan) -> Result<Worker, SimError> {
    let name = group.path().trim_start_matches('/').replace('/', "-");
    let g = group.clone();
    let worker = Stepper::start(
        |body| memcg::Builder::new().name(name).spawn(body),
        move |inbox, outbox| {
            let membership = match Membership::enter(&g, killable) {
                Ok(m) => m,
                Err(e) => {
                    let _ = outbox.send(Err(e));
                    return;
                }
            };
            // Ready: attached.
            let _ = outbox.send(Ok(Done::default()));
            let mut held = Vec::new();
            for round in inbox {
                let result = plan.step(round, &mut held);
                if matches!(result, Ok(Done { killed: true, .. })) {
                    // Free, then leave: the unit ends as it leaves, and the
                    // OOM killer may kill again.
                    drop(std::mem::take(&mut held));
                    drop(membership);
                    let _ = outbox.send(result);
                    return;
                }
                if outbox.send(result).is_err() {
                    break;
                }
            }
            drop(held);
            drop(membership);
        },
    )
    .map_err(|e| SimError::engine(format!("spawn for {}", group.path()), e))?;
    match worker.unbidden() {
        Some(Ok(_)) => Ok(worker),
        Some(Err(e)) => Err(SimError::engine(format!("enter {}", group.path()), e)),
        None => panic!("a worker thread died"),
    }
}

/// One worker's place: its group and plan, its thread while it lives.
struct Slot {
    group: Group,
    plan: Plan,
    runaway: bool,
    worker: Option<Worker>,
    /// The round its supervisor starts it again, after a kill.
    restart_at: Option<usize>,
}

/// `file` of `g`, a number of bytes.
fn bytes(g: &Group, file: &str) -> Result<u64, SimError> {
    let text = g
        .read(file)
        .map_err(|e| SimError::engine(format!("read {} {file}", g.path()), e))?;
    Ok(text.trim().parse().unwrap_or(0))
}

/// Whole chunks in `[min, max]` bytes (at least one).
fn chunks([min, max]: [Size; 2], chunk: u64) -> [usize; 2] {
    let lo = min.0.div_ceil(chunk).max(1);
    [lo as usize, (max.0 / chunk).max(lo) as usize]
}

/// Run `variant` on a fresh hierarchy; push a row per round into `samples`.
fn run_variant(
    cfg: &Oom,
    seed: u64,
    variant: Variant,
    samples: &mut Samples,
    progress: &ProgressBar,
) -> Result<VariantSummary, SimError> {
    let h = Hierarchy::new();
    let mkdir = |path: &str| {
        h.create(path)
            .map_err(|e| SimError::engine(format!("mkdir {path}"), e))
    };
    let write = |g: &Group, file: &str, value: &str| {
        g.write(file, value)
            .map_err(|e| SimError::engine(format!("write {} {file}", g.path()), e))
    };
    let host = mkdir(HOST)?;
    write(&host, "memory.max", &cfg.parent_max.0.to_string())?;
    let chunk = cfg.chunk.0;
    let plan = Plan {
        role: Role::Work,
        chunk: chunk as usize,
        resident: cfg.resident.0.div_ceil(chunk) as usize,
        work: chunks(cfg.work, chunk),
        growth: chunks(cfg.growth, chunk),
        seed,
        tenant: 0,
        worker: 0,
    };
    let mut tenants = Vec::new();
    let mut slots = Vec::new();
    for t in 0..=cfg.tenants {
        let runaway = t == cfg.tenants;
        let path = if runaway {
            RUNAWAY.to_string()
        } else {
            format!("{HOST}/tenant-{t}")
        };
        let tenant = mkdir(&path)?;
        if variant == Variant::GroupKill {
            write(&tenant, "memory.oom.group", "1")?;
        }
        for w in 0..cfg.workers {
            let group = mkdir(&format!("{path}/w{w}"))?;
            let role = if runaway && w == 0 {
                Role::Leak
            } else {
                Role::Work
            };
            let plan = Plan {
                role,
                tenant: t,
                worker: w,
                ..plan
            };
            let worker = spawn_worker(&group, variant.killable(), plan)?;
            slots.push(Slot {
                group,
                plan,
                runaway,
                worker: Some(worker),
                restart_at: None,
            });
        }
        tenants.push((tenant, runaway));
    }

    let (mut others_progress, mut runaway_progress) = (0, 0);
    let (mut failed, mut others_failed, mut restarts) = (0, 0, 0);
    let mut first_kill_round = None;
    for round in 0..cfg.rounds {
        progress.set_message(format!("{}: round {round}", variant.label()));
        for slot in &mut slots {
            if slot.worker.is_none() && slot.restart_at == Some(round) {
                slot.worker = Some(spawn_worker(&slot.group, variant.killable(), slot.plan)?);
                slot.restart_at = None;
                restarts += 1;
            }
        }
        let started = Instant::now();
        for slot in &mut slots {
            let Some(worker) = &slot.worker else {
                continue;
            };
            let done = worker.step(round).map_err(|e| {
                SimError::engine(format!("{}, round {round}", slot.group.path()), e)
            })?;
            failed += done.failed;
            if slot.runaway {
                runaway_progress += done.completed;
            } else {
                others_progress += done.completed;
                others_failed += done.failed;
            }
            if done.killed {
                // Joined: it exited, with everything it held freed.
                slot.worker = None;
                slot.restart_at = (cfg.restart_after > 0).then_some(round + cfg.restart_after);
            }
        }
        let round_ns = started.elapsed().as_nanos() as u64;
        h.quiesce();
        let events = host.events();
        if events.oom_kill > 0 && first_kill_round.is_none() {
            first_kill_round = Some(round);
        }
        let runaway = &tenants[cfg.tenants].0;
        let mut others_bytes = 0;
        for (tenant, _) in tenants.iter().filter(|(_, r)| !r) {
            others_bytes += bytes(tenant, "memory.current")?;
        }
        let runaway_workers = slots
            .iter()
            .filter(|s| s.runaway && s.worker.is_some())
            .count();
        samples.push(vec![
            variant as i128,
            round as i128,
            bytes(&host, "memory.current")?.into(),
            bytes(runaway, "memory.current")?.into(),
            others_bytes.into(),
            events.oom.into(),
            events.oom_kill.into(),
            events.oom_group_kill.into(),
            others_progress.into(),
            runaway_progress.into(),
            failed.into(),
            others_failed.into(),
            runaway_workers as i128,
            round_ns.into(),
        ]);
        progress.inc(1);
    }

    let events = host.events();
    let runaway = &tenants[cfg.tenants].0;
    let runaway_kills = runaway.events().oom_kill;
    let (runaway_peak, parent_peak) =
        (bytes(runaway, "memory.peak")?, bytes(&host, "memory.peak")?);
    // Every worker stops, frees and exits; then the groups go, leaves first.
    let mut paths: Vec<String> = slots.iter().map(|s| s.group.path()).collect();
    paths.extend(tenants.iter().map(|(t, _)| t.path()));
    paths.push(HOST.into());
    drop(slots);
    drop(tenants);
    drop(host);
    for path in &paths {
        h.remove(path)
            .map_err(|e| SimError::engine(format!("rmdir {path}"), e))?;
    }
    h.quiesce();
    let drift_bytes = stat_bytes(&h, "memory.current")?;
    Ok(VariantSummary {
        variant,
        kills: events.oom_kill,
        group_kills: events.oom_group_kill,
        others_kills: events.oom_kill - runaway_kills,
        oom_events: events.oom,
        others_progress,
        others_work_units: (cfg.tenants * cfg.workers * cfg.rounds) as u64,
        runaway_progress,
        runaway_peak,
        parent_peak,
        parent_max: cfg.parent_max.0,
        failed_charges: failed,
        others_failed_charges: others_failed,
        restarts,
        first_kill_round,
        drift_bytes,
    })
}

/// Run `cfg`: every variant, one after the other, ticking `progress` once
/// per round.
pub(crate) fn run(cfg: &Oom, seed: u64, progress: &ProgressBar) -> Result<Report, SimError> {
    let started = Instant::now();
    progress.set_length((Variant::ALL.len() * cfg.rounds) as u64);
    let mut samples = Samples::new(&COLUMNS);
    let mut variants = Vec::new();
    for variant in Variant::ALL {
        variants.push(run_variant(cfg, seed, variant, &mut samples, progress)?);
    }
    let failures = variants.iter().flat_map(broken).collect();
    let summary = Summary::new(
        "oom",
        (seed, cfg.rounds),
        variants,
        |v| v.drift_bytes,
        started,
        cfg.clone(),
    );
    Ok(Report {
        title: "memcg sim oom: a runaway tenant, without kills, with the OOM killer, \
                with memory.oom.group"
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

/// The invariants `v` saw broken: drift, the parent's limit, and S14's
/// rules on who may be killed.
fn broken(v: &VariantSummary) -> Vec<String> {
    let label = v.variant.label();
    let mut out = Vec::new();
    if v.drift_bytes != 0 {
        out.push(format!(
            "drift ({label}): the root's memory.current is {} bytes after every worker exited \
             and every group was removed, want 0",
            v.drift_bytes
        ));
    }
    if v.parent_peak > v.parent_max {
        out.push(format!(
            "memory.max ({label}): /host peaked at {} bytes over its limit of {}",
            v.parent_peak, v.parent_max
        ));
    }
    if v.variant == Variant::NoKill && (v.kills > 0 || v.group_kills > 0) {
        out.push(format!(
            "S14 ({label}): no unit is killable, yet oom_kill {} and oom_group_kill {}",
            v.kills, v.group_kills
        ));
    }
    if v.variant == Variant::Kill && v.group_kills > 0 {
        out.push(format!(
            "S14 ({label}): memory.oom.group is 0 everywhere, yet oom_group_kill {}",
            v.group_kills
        ));
    }
    out
}

fn intro(s: &Summary) -> String {
    let p = &s.parameters;
    let b = |size: Size| human_bytes(size.0 as f64);
    let v = |variant: Variant| {
        s.variants
            .iter()
            .find(|x| x.variant == variant)
            .expect("every variant ran")
    };
    let (none, kill, group) = (v(Variant::NoKill), v(Variant::Kill), v(Variant::GroupKill));
    format!(
        "`/host` (memory.max {}) holds {} well-behaved tenants of {} workers each, every \
         worker keeping {} and doing a unit of work of {} to {} per round, and a runaway \
         tenant whose first worker leaks {} to {} per round. Over {} rounds the \
         well-behaved tenants complete {} of their {} units of work with plain workers \
         (the runaway holds the parent at its limit: {} failed charges of theirs), {} with \
         the OOM killer (the leak killed {} times, restarted {} rounds later) and {} with \
         memory.oom.group ({} group kills, {} units).",
        b(p.parent_max),
        p.tenants,
        p.workers,
        b(p.resident),
        b(p.work[0]),
        b(p.work[1]),
        b(p.growth[0]),
        b(p.growth[1]),
        s.rounds,
        none.others_progress,
        none.others_work_units,
        none.others_failed_charges,
        kill.others_progress,
        kill.kills,
        p.restart_after,
        group.others_progress,
        group.group_kills,
        group.kills,
    )
}

fn tables(s: &Summary) -> Vec<Table> {
    let mut t = Table::new(&[
        "variant",
        "kills",
        "group kills",
        "others' progress",
        "others failed",
        "runaway's progress",
        "runaway peak",
        "parent peak",
        "failed charges",
        "restarts",
        "first kill",
    ]);
    let bytes = |b: u64| human_bytes(b as f64);
    for v in &s.variants {
        t.row(vec![
            v.variant.label().into(),
            v.kills.to_string(),
            v.group_kills.to_string(),
            v.others_progress.to_string(),
            v.others_failed_charges.to_string(),
            v.runaway_progress.to_string(),
            bytes(v.runaway_peak),
            bytes(v.parent_peak),
            v.failed_charges.to_string(),
            v.restarts.to_string(),
            v.first_kill_round
                .map_or_else(|| "-".into(), |r| format!("round {r}")),
        ]);
    }
    let mut m = Table::new(&["oom", "value"]);
    m.row(vec![
        "others' units of work".into(),
        s.variants
            .first()
            .map_or(0, |v| v.others_work_units)
            .to_string(),
    ]);
    m.closing_rows(s.drift_bytes, s.elapsed_ms);
    vec![t, m]
}

fn notes() -> Vec<String> {
    [
        "Each row of `samples.csv` is one round of one variant (`variant`: 0 no kill, 1 OOM kill, 2 OOM group kill), sampled with every worker idle after `Hierarchy::quiesce`.",
        "`parent_bytes`, `runaway_bytes`, `others_bytes`: `memory.current` of `/host`, of `/host/runaway`, and of the well-behaved tenants together (charge stocks included).",
        "`oom_events`, `kills`, `group_kills`: `/host`'s `memory.events` `oom` (a charge failed after reclaim), `oom_kill` (a unit killed by the OOM killer) and `oom_group_kill` (a tenant killed whole for its `memory.oom.group`). Cumulative.",
        "`others_progress`, `runaway_progress`: units of work completed (every charge of the unit met), by the well-behaved tenants and by the runaway tenant's working workers; `failed_charges`, `others_failed_charges`: charges that failed at the limit (a step stops at its first). Cumulative.",
        "`runaway_workers`: the runaway tenant's live workers after the round (killed ones are back `restart_after` rounds later).",
        "A kill only marks the units: the runaway frees its memory when its worker reaches its safe point, its next step. When a neighbour's charge is the one that fails, the runaway is killed for it, and the neighbours that charge before the runaway's turn in that round still fail, with no second kill (the victim lives on); so `others_failed_charges` may be above 0 with the OOM killer too, and a kill in a round's last steps shows in the samples of the round after.",
        "`runaway_peak`, `parent_peak` in the summary: `memory.peak`, which sees inside a step, where the samples see its end.",
        "`round_ns`: wall time of the round's steps. Every other column is the same on every run with one seed: the workers take turns.",
    ]
    .map(String::from)
    .to_vec()
}

fn panels(cfg: &Oom, samples: &Samples) -> Vec<Panel> {
    // One colour per variant in every panel: its index in Variant::ALL.
    let per_variant = |column: &str| -> Vec<Series> {
        let i = samples.index(column);
        Variant::ALL
            .iter()
            .map(|&v| {
                let points = samples
                    .rows
                    .iter()
                    .filter(|r| r[0] == v as i128)
                    .map(|r| (r[1] as f64, r[i] as f64))
                    .collect();
                Series::new(v.label(), points)
            })
            .collect()
    };
    let rounds = |title: &str, y_unit: Unit, series: Vec<Series>| Panel {
        title: title.into(),
        x_label: "round".into(),
        y_unit,
        log_x: false,
        log_y: false,
        series,
    };
    // The limit goes in the title: a line of its own would hide the
    // variant that sits on it.
    let parent = format!(
        "Parent's usage (/host memory.current, memory.max {})",
        human_bytes(cfg.parent_max.0 as f64)
    );
    vec![
        rounds(&parent, Unit::Bytes, per_variant("parent_bytes")),
        rounds(
            "Runaway tenant's usage (/host/runaway memory.current)",
            Unit::Bytes,
            per_variant("runaway_bytes"),
        ),
        rounds(
            "Units killed by the OOM killer (oom_kill, cumulative)",
            Unit::Count,
            per_variant("kills"),
        ),
        rounds(
            "Tenants killed whole (oom_group_kill, cumulative)",
            Unit::Count,
            per_variant("group_kills"),
        ),
        rounds(
            "Well-behaved tenants' progress (units of work completed, cumulative)",
            Unit::Count,
            per_variant("others_progress"),
        ),
        rounds(
            "Failed charges (cumulative)",
            Unit::Count,
            per_variant("failed_charges"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_become_whole_chunks() {
        let k = |n: u64| Size(n << 10);
        assert_eq!(chunks([k(512), k(2048)], 64 << 10), [8, 32]);
        assert_eq!(chunks([k(100), k(100)], 64 << 10), [2, 2]);
    }
}
