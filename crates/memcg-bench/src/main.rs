//! The report: every allocator on every workload, side by side, in one run.
//!
//! `cargo run --release -p memcg-bench -- [--quick] [--workload NAME]... [--allocator NAME]...`
//! prints a markdown table of median ns/op and each row's ratio to the fastest
//! peer, then memcg's figures against DESIGN.md §7: accounting on vs off,
//! removal time by live objects, and slab utilization with 100 groups
//! churning. Progress goes to stderr, the report to stdout.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::Instant;

use memcg_bench::contender::{contenders, Contender};
use memcg_bench::footprint;
use memcg_bench::global::{self, Charged, Dispatch, CHILD_FLAG};
use memcg_bench::measure::{interleaved, Reps, Spread};
use memcg_bench::removal::{self, Removal};
use memcg_bench::report::{self, Row};
use memcg_bench::utilization::{self, Utilization};
use memcg_bench::workload::Workload;

// Only the `std` workload runs on the global allocator, in a child per
// allocator; see `memcg_bench::global` for why and how the choice is made.
#[global_allocator]
static GLOBAL: Dispatch = Dispatch;

const USAGE: &str = "\
usage: memcg-bench [--quick] [--workload NAME]... [--allocator NAME]...

  --quick           fewer repetitions: the whole report in under a minute
  --workload NAME   run only this workload (repeatable): single64, churn, remote,
                    std, removal, utilization
  --allocator NAME  run only this allocator's rows (repeatable), e.g. to profile
                    one: system, jemalloc, mimalloc, snmalloc, memcg, memcg-root,
                    \"memcg (global allocator)\"
  --ops N           operations per repetition of the raw workloads, instead of
                    their defaults (e.g. small, to count instructions under
                    valgrind)
";

/// The parts of the report that are not rows of the ns/op table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Study {
    /// Removal time of a group with 0 vs 1M live objects.
    Removal,
    /// Slab utilization with 100 groups churning.
    Utilization,
}

impl Study {
    const ALL: [Study; 2] = [Study::Removal, Study::Utilization];

    fn name(self) -> &'static str {
        match self {
            Study::Removal => "removal",
            Study::Utilization => "utilization",
        }
    }
}

/// Operations timed per repetition of each raw workload.
fn ops(w: Workload) -> u64 {
    match w {
        Workload::Single64 => 4_000_000,
        Workload::Churn => 2_000_000,
        Workload::Remote => 2_000_000,
        Workload::Std => memcg_bench::workload::STD_ENTRIES as u64,
    }
}

struct Args {
    quick: bool,
    ops: Option<u64>,
    workloads: Vec<Workload>,
    studies: Vec<Study>,
    allocators: Vec<String>,
    std_child: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        quick: false,
        ops: None,
        workloads: Vec::new(),
        studies: Vec::new(),
        allocators: Vec::new(),
        std_child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--workload" => {
                let name = it.next().ok_or("--workload needs a name")?;
                if let Some(w) = Workload::from_name(&name) {
                    args.workloads.push(w);
                } else if let Some(s) = Study::ALL.into_iter().find(|s| s.name() == name) {
                    args.studies.push(s);
                } else {
                    return Err(format!("no workload {name:?}"));
                }
            }
            "--ops" => {
                let n = it.next().ok_or("--ops needs a number")?;
                let n = n
                    .parse()
                    .map_err(|_| format!("--ops: not a number: {n:?}"))?;
                args.ops = Some(n);
            }
            "--allocator" => {
                args.allocators
                    .push(it.next().ok_or("--allocator needs a name")?);
            }
            CHILD_FLAG => args.std_child = Some(it.next().ok_or("--std-child needs a name")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.workloads.is_empty() && args.studies.is_empty() {
        args.workloads = Workload::ALL.to_vec();
        args.studies = Study::ALL.to_vec();
    }
    Ok(args)
}

/// What one contender measured on one workload.
enum Outcome {
    /// ns per op over the timed repetitions, and, for `std` in a child whose
    /// global allocator charges a group, what the group was charged.
    Measured(Spread, Option<Charged>),
    /// The allocator panicked; the message, and no number.
    Panicked(String),
}

/// Measures workload `w` for every contender that runs it, in contender order.
///
/// Raw workloads take turns within this process (see
/// [`memcg_bench::measure::interleaved`]); `std` runs one child per contender.
/// A contender that panics (an allocator bug) drops out of the workload with
/// its panic message instead of ending the report.
fn measure<'c>(
    contenders: &'c [Contender],
    w: Workload,
    reps: Reps,
    args: &Args,
) -> Result<Vec<(&'c Contender, Outcome)>, String> {
    let runners: Vec<&Contender> = contenders.iter().filter(|c| c.runs(w)).collect();
    if w == Workload::Std {
        let child_args: &[&str] = if args.quick { &["--quick"] } else { &[] };
        return runners
            .into_iter()
            .map(|c| {
                let choice = c.global().expect("runs(Std) implies a global choice");
                let answer = global::run_in_child(choice, child_args).map_err(|e| e.to_string())?;
                Ok((c, Outcome::Measured(answer.ns, answer.charged)))
            })
            .collect();
    }
    let n = args.ops.unwrap_or_else(|| ops(w));
    let mut panics: Vec<Option<String>> = vec![None; runners.len()];
    let spreads = interleaved(reps, runners.len(), |i| {
        if panics[i].is_some() {
            return f64::NAN;
        }
        let run = || {
            runners[i]
                .run_raw(w, n)
                .expect("runs(w) implies a raw runner")
        };
        match panic::catch_unwind(AssertUnwindSafe(run)) {
            Ok(took) => took.as_nanos() as f64 / n as f64,
            Err(payload) => {
                panics[i] = Some(panic_message(payload.as_ref()));
                f64::NAN
            }
        }
    });
    Ok(runners
        .into_iter()
        .zip(spreads)
        .zip(panics)
        .map(|((c, spread), panicked)| match panicked {
            Some(msg) => (c, Outcome::Panicked(msg)),
            None => (c, Outcome::Measured(spread, None)),
        })
        .collect())
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("memcg-bench: {msg}");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let reps = if args.quick { Reps::QUICK } else { Reps::FULL };

    if let Some(requested) = args.std_child {
        return match global::child_answer(&requested, reps) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("memcg-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }

    let started = Instant::now();
    let mut all = contenders();
    if let Some(unknown) = args
        .allocators
        .iter()
        .find(|a| !all.iter().any(|c| c.name() == a.as_str()))
    {
        eprintln!("memcg-bench: no allocator {unknown:?}\n{USAGE}");
        return ExitCode::from(2);
    }
    if !args.allocators.is_empty() {
        all.retain(|c| args.allocators.iter().any(|a| a == c.name()));
    }
    let mut rows = Vec::new();
    let mut charges: Vec<(&'static str, Charged)> = Vec::new();
    for &w in &args.workloads {
        let measured = match measure(&all, w, reps, &args) {
            Ok(measured) => measured,
            Err(e) => {
                eprintln!("memcg-bench: {e}");
                return ExitCode::FAILURE;
            }
        };
        for (c, outcome) in measured {
            let (ns_per_op, panicked) = match outcome {
                Outcome::Measured(ns, charged) => {
                    eprintln!(
                        "{:>8} {:<24} {:>8.1} ns/op (min {:.1}, max {:.1})",
                        w.name(),
                        c.name(),
                        ns.median,
                        ns.min,
                        ns.max
                    );
                    if let Some(charged) = charged {
                        eprintln!(
                            "{:>8} {:<24} memory.peak {} B, memory.current after {} B",
                            w.name(),
                            c.name(),
                            charged.peak,
                            charged.current
                        );
                        charges.push((c.name(), charged));
                    }
                    (ns.median, None)
                }
                Outcome::Panicked(msg) => {
                    eprintln!("{:>8} {:<24} panicked: {msg}", w.name(), c.name());
                    (f64::NAN, Some(msg))
                }
            };
            rows.push(Row {
                workload: w,
                allocator: c.name(),
                role: c.role(),
                ns_per_op,
                panicked,
            });
        }
    }

    let removals: Option<Vec<Removal>> = args.studies.contains(&Study::Removal).then(|| {
        let reps = removal::removal_reps(reps);
        eprintln!(
            "removal: {} live objects vs none, {} timed repetitions",
            removal::LIVE_OBJECTS,
            reps.timed
        );
        removal::measure(reps)
    });
    let utilization: Option<Utilization> = args.studies.contains(&Study::Utilization).then(|| {
        eprintln!("utilization: {} groups churning", utilization::GROUPS);
        utilization::measure()
    });

    let mode = if args.quick { "--quick" } else { "full" };
    println!("# memcg-bench\n");
    print!("{}", report::machine());
    println!(
        "- mode: {mode}: median of {} timed repetitions after {} warm-up; took {:.1} s\n",
        reps.timed,
        reps.warmup,
        started.elapsed().as_secs_f64()
    );
    print!("{}", report::table(&rows));
    if !charges.is_empty() {
        print!(
            "\n## What the std workload charged (memcg as the global allocator)\n\n{}",
            report::charges(&charges)
        );
    }
    let own = report::raw_targets(&rows);
    if own.lines().count() > 2 {
        println!("\n## memcg against the fastest peer (DESIGN.md §7)\n\n{own}");
        println!(
            "## Accounting on vs off: memcg / memcg-root (DESIGN.md §7)\n\n{}",
            report::accounting(&rows)
        );
    }
    if let Some(removals) = &removals {
        println!(
            "## Removal time by live objects (DESIGN.md §7, S8)\n\n\
             Only `Hierarchy::remove` is timed: median of {} repetitions.\n\n{}",
            removal::removal_reps(reps).timed,
            report::removal(removals)
        );
    }
    if let Some(u) = utilization {
        println!(
            "## Slab utilization, {} groups churning (DESIGN.md §7)\n\n{}",
            utilization::GROUPS,
            report::utilization(&u)
        );
    }
    if let Some(removals) = &removals {
        println!(
            "## Bytes pinned by a dead group (DESIGN.md §7, S3)\n\n{}",
            report::pinned(removals, footprint::group_heap_bytes())
        );
    }
    ExitCode::SUCCESS
}
