//! The report: every allocator on every workload, side by side, in one run.
//!
//! `cargo run --release -p memcg-bench -- [--quick] [--json] [--workload NAME]... [--allocator NAME]...`
//! prints a markdown table of median ns/op and each row's ratio to the fastest
//! peer, then memcg's figures against DESIGN.md §7: the §7 ratios, the
//! real-world suite's time and peak RSS, accounting on vs off, instructions
//! per alloc+free pair (under valgrind), removal time by live objects (with
//! fragmented slabs), slab utilization with many small groups churning,
//! bytes pinned by a dead group and two threads charging one group. With
//! `--json` it prints only the §7 figures, as one JSON object. Progress goes
//! to stderr, the report to stdout.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::Instant;

use memcg_bench::contender::{contenders, Contender, Role, MEMCG_GLOBAL_ROOT};
use memcg_bench::footprint;
use memcg_bench::global::{self, ChildAnswer, Dispatch, Rss, CHILD_FLAG, NO_GROUP_FLAG};
use memcg_bench::instructions::{self, Counts, InstructionCount, Target};
use memcg_bench::measure::{interleaved, Reps, Spread};
use memcg_bench::ports::{self, Scale};
use memcg_bench::removal::{self, Removal};
use memcg_bench::report::{self, Row};
use memcg_bench::scaling::{self, Scaling};
use memcg_bench::summary::Summary;
use memcg_bench::utilization::{self, Utilization};
use memcg_bench::workload::Workload;

// Only the workloads on the global allocator (`std`, the ports and the
// real-world suite) and the instruction counts use it, in a child per
// allocator and workload; see `memcg_bench::global` for why and how the
// choice is made.
#[global_allocator]
static GLOBAL: Dispatch = Dispatch;

const USAGE: &str = "\
usage: memcg-bench [--quick] [--json] [--workload NAME]... [--allocator NAME]...

  --quick           less work: the whole report in two to three minutes on 2 cores
  --json            print only DESIGN.md §7's figures, as one JSON object
  --workload NAME   run only this workload or study (repeatable): single64,
                    churn, remote, std, larson, xmalloc, mstress, cache-scratch,
                    json, strings, btree, instructions (needs valgrind),
                    removal, utilization, scaling
  --allocator NAME  run only this allocator's rows (repeatable), e.g. to profile
                    one: system, jemalloc, mimalloc, snmalloc, memcg, memcg-root,
                    \"memcg (global allocator)\", \"memcg-root (global allocator)\"
  --ops N           operations per repetition of the raw workloads, instead of
                    their defaults (e.g. small, to count instructions under
                    valgrind)
";

/// The parts of the report that are not rows of the ns/op table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Study {
    /// Removal time of a group with 0 vs 1M live objects, fragmented or not.
    Removal,
    /// Slab utilization with 100 groups x 1,000 objects and 1,000 x 100.
    Utilization,
    /// Two threads charging one group vs one.
    Scaling,
    /// Instructions per 64-byte alloc+free pair on each global allocator,
    /// counted by callgrind.
    Instructions,
}

impl Study {
    const ALL: [Study; 4] = [
        Study::Instructions,
        Study::Removal,
        Study::Utilization,
        Study::Scaling,
    ];

    fn name(self) -> &'static str {
        match self {
            Study::Instructions => "instructions",
            Study::Removal => "removal",
            Study::Utilization => "utilization",
            Study::Scaling => "scaling",
        }
    }
}

/// Operations timed per repetition of each raw workload (the workloads on
/// the global allocator have their own scale, [`Scale`]).
fn ops(w: Workload) -> u64 {
    match w {
        Workload::Single64 => 4_000_000,
        Workload::Churn => 2_000_000,
        Workload::Remote => 2_000_000,
        _ => 0,
    }
}

struct Args {
    quick: bool,
    json: bool,
    ops: Option<u64>,
    workloads: Vec<Workload>,
    studies: Vec<Study>,
    allocators: Vec<String>,
    /// In a child: the allocator and the workload to run.
    child: Option<(String, String)>,
    /// In a `memcg` child: keep the workload's threads in no group.
    child_no_group: bool,
    /// In a child under callgrind: the allocator and the pairs to count.
    instructions_child: Option<(String, u64)>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        quick: false,
        json: false,
        ops: None,
        workloads: Vec::new(),
        studies: Vec::new(),
        allocators: Vec::new(),
        child: None,
        child_no_group: false,
        instructions_child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--json" => args.json = true,
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
            CHILD_FLAG => {
                let allocator = it.next().ok_or("--global-child needs an allocator")?;
                let workload = it.next().ok_or("--global-child needs a workload")?;
                args.child = Some((allocator, workload));
            }
            NO_GROUP_FLAG => args.child_no_group = true,
            instructions::CHILD_FLAG => {
                let target = it.next().ok_or("--instructions-child needs an allocator")?;
                let n = it.next().ok_or("--instructions-child needs a number")?;
                let n = n
                    .parse()
                    .map_err(|_| format!("--instructions-child: not a number: {n:?}"))?;
                args.instructions_child = Some((target, n));
            }
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
    /// ns per op over the timed repetitions, and, from a child, what else it
    /// measured: what its group was charged, ns per op with the thread in no
    /// group, resident memory.
    Measured(ChildAnswer),
    /// The allocator panicked, or its child failed; the message, and no
    /// number.
    Panicked(String),
}

/// Measures workload `w` for every contender that runs it, in contender order.
///
/// Raw workloads take turns within this process (see
/// [`memcg_bench::measure::interleaved`]); the workloads on the global
/// allocator run one child per contender. A contender that panics or whose
/// child fails (an allocator bug) drops out of the workload with its message
/// instead of ending the report.
fn measure<'c>(
    contenders: &'c [Contender],
    w: Workload,
    reps: Reps,
    args: &Args,
) -> Vec<(&'c Contender, Outcome)> {
    let runners: Vec<&Contender> = contenders.iter().filter(|c| c.runs(w)).collect();
    if w.on_global_allocator() {
        let child_args: &[&str] = if args.quick { &["--quick"] } else { &[] };
        return runners
            .into_iter()
            .map(|c| {
                let choice = c.global().expect("runs(w) implies a global choice");
                let outcome = match global::run_in_child(choice, w, child_args) {
                    Ok(answer) => Outcome::Measured(answer),
                    Err(e) => Outcome::Panicked(e.to_string()),
                };
                (c, outcome)
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
    runners
        .into_iter()
        .zip(spreads)
        .zip(panics)
        .map(|((c, spread), panicked)| match panicked {
            Some(msg) => (c, Outcome::Panicked(msg)),
            None => (c, Outcome::Measured(ChildAnswer::ns_only(spread))),
        })
        .collect()
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
    let scale = if args.quick {
        Scale::quick()
    } else {
        Scale::full()
    };

    if let Some((target, n)) = &args.instructions_child {
        return match instructions::child(target, *n) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("memcg-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some((allocator, workload)) = &args.child {
        let no_group = args.child_no_group;
        return match global::child_answer(allocator, workload, no_group, reps, &scale) {
            Ok(lines) => {
                println!("{lines}");
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
    let mut charges = Vec::new();
    for &w in &args.workloads {
        for (c, outcome) in measure(&all, w, reps, &args) {
            let mut root_row = None;
            let (ns_per_op, rss, panicked) = match outcome {
                Outcome::Measured(answer) => {
                    progress(w, c.name(), answer.ns, answer.rss);
                    if let Some(charged) = answer.charged {
                        eprintln!(
                            "{:>13} {:<29} memory.peak {} B, memory.current after {} B",
                            w.name(),
                            c.name(),
                            charged.peak,
                            charged.current
                        );
                        charges.push((w, c.name(), charged));
                    }
                    if let Some(root) = answer.root_ns {
                        // The runs in no group: accounting off.
                        progress(w, MEMCG_GLOBAL_ROOT, root, answer.root_rss);
                        root_row = Some(Row {
                            workload: w,
                            allocator: MEMCG_GLOBAL_ROOT,
                            role: Role::Own,
                            ns_per_op: root.median,
                            rss: answer.root_rss,
                            panicked: None,
                        });
                    }
                    (answer.ns.median, answer.rss, None)
                }
                Outcome::Panicked(msg) => {
                    eprintln!("{:>13} {:<29} panicked: {msg}", w.name(), c.name());
                    (f64::NAN, None, Some(msg))
                }
            };
            rows.push(Row {
                workload: w,
                allocator: c.name(),
                role: c.role(),
                ns_per_op,
                rss,
                panicked,
            });
            // After the row it came with, as on the raw workloads.
            rows.extend(root_row);
        }
    }

    let counts = args
        .studies
        .contains(&Study::Instructions)
        .then(|| count_instructions(&args));
    let removals: Option<Vec<Removal>> = args.studies.contains(&Study::Removal).then(|| {
        let reps = removal::removal_reps(reps);
        eprintln!(
            "removal: {} live objects (also fragmented) vs none, {} timed repetitions",
            removal::LIVE_OBJECTS,
            reps.timed
        );
        removal::measure(reps)
    });
    let utilizations: Vec<Utilization> = if args.studies.contains(&Study::Utilization) {
        utilization::Config::ALL
            .into_iter()
            .map(|config| {
                eprintln!("utilization: {}", config.label());
                utilization::measure(config)
            })
            .collect()
    } else {
        Vec::new()
    };
    let scalings: Vec<Scaling> = if args.studies.contains(&Study::Scaling) {
        eprintln!("scaling: one vs two threads charging one group");
        let s = scaling::measure(reps, args.quick);
        for s in &s {
            eprintln!(
                "scaling: {}: 1 thread {:.1} ns/pair, 2 threads {:.1} ns/pair: {:.2}x",
                s.path.label(),
                s.one.median,
                s.two.median,
                s.ratio()
            );
        }
        s
    } else {
        Vec::new()
    };
    eprintln!("took {:.1} s", started.elapsed().as_secs_f64());

    if args.json {
        let counted = match &counts {
            Some(Ok(counts)) => counts.counted.as_slice(),
            _ => &[],
        };
        let summary = Summary::new(
            &rows,
            removals.as_deref(),
            &utilizations,
            &scalings,
            counted,
        );
        println!("{}", summary.to_json());
        return ExitCode::SUCCESS;
    }

    let mode = if args.quick { "--quick" } else { "full" };
    println!("# memcg-bench\n");
    print!("{}", report::machine());
    println!(
        "- mode: {mode}: median of {} timed repetitions after {} warm-up; took {:.1} s",
        reps.timed,
        reps.warmup,
        started.elapsed().as_secs_f64()
    );
    println!(
        "- ports of mimalloc-bench: {} threads; {:?}\n",
        ports::threads(),
        scale
    );
    print!("{}", report::table(&rows));
    if !charges.is_empty() {
        print!(
            "\n## What the workloads on memcg's global allocator charged\n\n{}",
            report::charges(&charges)
        );
    }
    let targets = report::targets(&rows);
    if targets.lines().count() > 2 {
        println!(
            "\n## memcg (global allocator) against the fastest peer (DESIGN.md §7)\n\n{targets}"
        );
        let root = report::root_targets(&rows);
        if root.lines().count() > 2 {
            println!(
                "## memcg-root (global allocator), threads in no group, against the fastest \
                 peer (DESIGN.md §7 `root_ratios`, S10)\n\n{root}"
            );
        }
        println!(
            "## Accounting on vs off: in a group / in no group (DESIGN.md §7)\n\n{}",
            report::accounting(&rows)
        );
    }
    if rows.iter().any(|r| r.workload.is_real_world()) {
        let real_world = report::real_world(&rows);
        println!(
            "## Real-world programs: time and peak RSS (DESIGN.md §7)\n\n\
             Each row is a fresh child process with the allocator as its global \
             allocator; peak RSS is its `VmHWM` after all repetitions (binary, \
             runtime and the workload's input included), \"at start\" its `VmRSS` \
             before the first. Time ratios divide by the fastest peer, RSS ratios \
             by the smallest peer peak.\n\n{real_world}"
        );
    }
    match &counts {
        Some(Ok(counts)) => println!(
            "## Instructions per 64-byte alloc+free pair (DESIGN.md §7)\n\n\
             callgrind's count over {} pairs of `std::alloc::alloc` + `dealloc` \
             (real calls of the global allocator) after {} untimed, loop and \
             global-allocator dispatch included (the same few instructions for \
             every allocator).\n\n{}",
            instructions::PAIRS,
            instructions::WARM_UP,
            report::instructions(counts)
        ),
        Some(Err(why)) => println!(
            "## Instructions per 64-byte alloc+free pair (DESIGN.md §7)\n\nNot measured: {why}.\n"
        ),
        None => {}
    }
    if let Some(removals) = &removals {
        println!(
            "## Removal time by live objects (DESIGN.md §7, S8)\n\n\
             Only `Hierarchy::remove` is timed: median of {} repetitions.\n\n{}",
            removal::removal_reps(reps).timed,
            report::removal(removals)
        );
    }
    for u in &utilizations {
        println!(
            "## Slab utilization, {} churning (DESIGN.md §7)\n\n{}",
            u.config.map_or_else(String::new, |c| c.label()),
            report::utilization(u)
        );
    }
    if let Some(removals) = &removals {
        println!(
            "## Bytes pinned by a dead group (DESIGN.md §7, S3)\n\n{}",
            report::pinned(removals, footprint::group_heap_bytes())
        );
    }
    if !scalings.is_empty() {
        println!(
            "## Two threads charging one group vs one (DESIGN.md §7)\n\n{}",
            report::scaling(&scalings)
        );
    }
    ExitCode::SUCCESS
}

/// One measured row on stderr, with its child's peak RSS on the real-world
/// suite.
fn progress(w: Workload, allocator: &str, ns: Spread, rss: Option<Rss>) {
    let rss = match rss {
        Some(rss) if w.is_real_world() => {
            format!(", peak RSS {:.1} MiB", rss.peak as f64 / (1024.0 * 1024.0))
        }
        _ => String::new(),
    };
    eprintln!(
        "{:>13} {:<29} {:>8.1} ns/op (min {:.1}, max {:.1}){rss}",
        w.name(),
        allocator,
        ns.median,
        ns.min,
        ns.max
    );
}

/// The instructions study: every allocator `--allocator` selects (all if it
/// selects none), each counted under callgrind; `Err` saying why if valgrind
/// cannot be run.
fn count_instructions(args: &Args) -> Result<Counts, String> {
    let Some(version) = instructions::valgrind() else {
        eprintln!("instructions: skipped: valgrind is not installed");
        return Err("valgrind is not installed (`valgrind --version` failed)".to_owned());
    };
    let mut counts = Counts::default();
    for target in Target::ALL {
        if !args.allocators.is_empty() && !args.allocators.iter().any(|a| a == target.row()) {
            continue;
        }
        match instructions::count(target, instructions::PAIRS) {
            Ok(per_pair) => {
                eprintln!(
                    "instructions: {:<29} {per_pair:>6.1} per pair ({version})",
                    target.row()
                );
                counts.counted.push(InstructionCount { target, per_pair });
            }
            Err(e) => {
                eprintln!("instructions: {:<29} not counted: {e}", target.row());
                counts.failed.push((target, e.to_string()));
            }
        }
    }
    Ok(counts)
}
