//! `memcg sim [SCENARIO]`: workloads on the real engine that show what dying
//! groups cost, with and without kmem context reparenting, and what limits,
//! protection and the OOM killer do for neighbours.
//!
//! A scenario is built in (`churn`, the default, `removal-cost`,
//! `protection` and `oom`) or read from a TOML file ([`scenario`]). It runs on a fresh [`Hierarchy`] with real
//! threads and real slab allocations, under a seed that fixes every choice it
//! makes, so that two runs with one seed sample the same values (timings
//! apart). A progress bar goes to stderr; the summary goes to stdout, as a
//! table or, with `--json`, as JSON; `--out DIR` writes `report.svg`,
//! `samples.csv` and `report.md`.
//!
//! The first two compare the library's two slab designs: shared caches
//! (S11, the default: a removed group leaves only its kmem context) and
//! isolated per-group caches (S6: a removed group also leaves dead caches,
//! with their slabs, until its last object is freed). `churn` runs the same
//! jobs once per design, each on a fresh hierarchy, and reports them side by
//! side (a scenario file may pick one); `removal-cost` removes groups left
//! with objects of either kind of cache. `protection` is about reclaim, not
//! removal: a latency tenant's page cache against a growing neighbour under
//! one parent limit, without protection, with `memory.low` and with
//! `memory.min` (S13). `oom` is about stopping a tenant: a runaway among
//! well-behaved tenants under one parent limit, with plain workers, with
//! killable ones under the OOM killer, and with `memory.oom.group` (S14).
//!
//! Every random choice comes from [`fastrand::Rng`] streams named by the seed
//! and the part of the run that draws them ([`stream`]).
//!
//! Exit status: 0 when every invariant held (drift 0 at every sample and at
//! the end), 1 when one broke or the engine refused an operation, 2 when the
//! scenario cannot be read or is invalid.

mod churn;
mod oom;
mod plot;
mod protection;
mod removal_cost;
mod report;
mod scenario;
mod stepper;
mod units;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use memcg::{Hierarchy, Leftovers};

use report::Report;
use scenario::{Scenario, ScenarioError};

/// Bytes of a page, as the samples count them.
const PAGE: i128 = memcg::PAGE_SIZE as i128;

/// The options of `memcg sim`.
#[derive(Debug, clap::Args)]
pub(crate) struct SimArgs {
    /// `churn` (jobs come and go, leaving objects behind; shared slab caches
    /// against isolated ones), `removal-cost`
    /// (rmdir time against live objects and pages), `protection` (a
    /// protected tenant's page cache against a growing neighbour), `oom` (a
    /// runaway tenant without kills, with the OOM killer, with
    /// memory.oom.group), or a TOML scenario file (see examples/*.toml).
    #[arg(value_name = "SCENARIO", default_value = "churn")]
    scenario: String,
    /// Seed of every random choice: the same seed samples the same values.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Rounds: jobs for churn (per slab design), repetitions for
    /// removal-cost, steps for protection and oom (per variant).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    rounds: Option<u64>,
    /// Write report.svg, samples.csv and report.md into DIR.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Why `memcg sim` stops.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SimError {
    /// The scenario cannot be read or is invalid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The engine refused an operation the scenario needs.
    #[error("{during}: {source}")]
    Engine {
        /// The operation.
        during: String,
        /// The engine's error.
        source: memcg::Error,
    },
    /// A report file could not be written.
    #[error("--out: cannot write {0}")]
    Output(String),
}

impl SimError {
    pub(crate) fn engine(during: impl Into<String>, source: memcg::Error) -> SimError {
        SimError::Engine {
            during: during.into(),
            source,
        }
    }

    fn exit_code(&self) -> ExitCode {
        match self {
            SimError::Scenario(_) => ExitCode::from(2),
            SimError::Engine { .. } | SimError::Output(_) => ExitCode::from(1),
        }
    }
}

/// Run `memcg sim` with `args`.
pub(crate) fn main(args: SimArgs) -> ExitCode {
    match run(&args) {
        Ok(report) if report.failures.is_empty() => ExitCode::SUCCESS,
        Ok(report) => {
            for failure in &report.failures {
                eprintln!("memcg sim: {failure}");
            }
            ExitCode::from(1)
        }
        Err(error) => {
            eprintln!("memcg sim: {error}");
            error.exit_code()
        }
    }
}

fn run(args: &SimArgs) -> Result<Report, SimError> {
    let mut scenario = scenario::load(&args.scenario)?;
    if let Some(rounds) = args.rounds {
        scenario.set_rounds(rounds as usize);
    }
    let progress = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    progress.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {wide_msg} {elapsed}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    progress.set_prefix(format!("memcg sim {}", args.scenario));
    progress.enable_steady_tick(Duration::from_millis(200));
    let report = match &scenario {
        Scenario::Churn(c) => churn::run(c, args.seed, &progress),
        Scenario::RemovalCost(r) => removal_cost::run(r, args.seed, &progress),
        Scenario::Protection(p) => protection::run(p, args.seed, &progress),
        Scenario::Oom(o) => oom::run(o, args.seed, &progress),
    };
    progress.finish_and_clear();
    let report = report?;
    if let Some(dir) = &args.out {
        report
            .write(dir, &command_line(args))
            .map_err(SimError::Output)?;
    }
    if args.json {
        println!("{}", report.summary);
    } else {
        print!("{}", report.to_text());
    }
    Ok(report)
}

/// The command that reproduces this run, for `report.md`.
fn command_line(args: &SimArgs) -> String {
    let mut cmd = format!("memcg sim {} --seed {}", args.scenario, args.seed);
    if let Some(rounds) = args.rounds {
        cmd.push_str(&format!(" --rounds {rounds}"));
    }
    cmd
}

/// Quiesce and read what removed groups leave behind. `quiesce` waits for
/// deferred destruction the background worker already took, so one is enough.
pub(crate) fn settle(h: &Hierarchy) -> Leftovers {
    h.quiesce();
    h.leftovers()
}

/// After a run freed everything removed groups held: quiesce, and return the
/// leftovers, live contexts and live caches then (expected: none, one context
/// per online group, no cache).
pub(crate) fn settle_to_empty(h: &Hierarchy) -> (Leftovers, usize, usize) {
    h.quiesce();
    (h.leftovers(), h.live_contexts(), h.live_caches())
}

/// The root's `file` (a single number of bytes) as an integer.
pub(crate) fn stat_bytes(h: &Hierarchy, file: &str) -> Result<i128, SimError> {
    let text = h
        .read("/", file)
        .map_err(|e| SimError::engine(format!("read / {file}"), e))?;
    Ok(text.trim().parse().unwrap_or(-1))
}

/// The random stream of one part of a run, named by `keys` (a round and a
/// thread, a repetition): the same for the same seed and keys, whatever the
/// other parts drew, so that what a job thread allocates does not depend on
/// how the threads interleave.
pub(crate) fn stream(seed: u64, keys: &[u64]) -> fastrand::Rng {
    // Each key is folded in through one draw of a generator seeded with it;
    // the multiply spreads small keys (0, 1, 2) over all 64 bits first.
    let state = keys.iter().fold(seed, |state, &k| {
        fastrand::Rng::with_seed(state ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15)).u64(..)
    });
    fastrand::Rng::with_seed(state)
}

#[cfg(test)]
mod tests {
    use super::stream;

    #[test]
    fn a_stream_is_named_by_the_seed_and_its_keys_in_order() {
        let draw = |seed, keys: &[u64]| -> Vec<u64> {
            let mut rng = stream(seed, keys);
            (0..4).map(|_| rng.u64(..)).collect()
        };
        assert_eq!(draw(7, &[3, 1]), draw(7, &[3, 1]));
        assert_ne!(draw(7, &[3, 1]), draw(8, &[3, 1]));
        assert_ne!(draw(7, &[1, 0]), draw(7, &[0, 1]));
        assert_ne!(draw(7, &[0]), draw(7, &[]));
    }
}
