//! The report: every allocator on every workload, side by side, in one run.
//!
//! `cargo run --release -p memcg-bench -- [--quick] [--workload NAME]...`
//! prints a markdown table of median ns/op and each row's ratio to the fastest
//! peer. Progress goes to stderr, the report to stdout.

use std::process::ExitCode;
use std::time::Instant;

use memcg_bench::contender::{contenders, Contender};
use memcg_bench::global::{self, Dispatch, CHILD_FLAG};
use memcg_bench::measure::{interleaved, Reps, Spread};
use memcg_bench::report::{self, Row};
use memcg_bench::workload::Workload;

// Only the `std` workload runs on the global allocator, in a child per
// allocator; see `memcg_bench::global` for why and how the choice is made.
#[global_allocator]
static GLOBAL: Dispatch = Dispatch;

const USAGE: &str = "\
usage: memcg-bench [--quick] [--workload NAME]...

  --quick          fewer repetitions: the whole report in under a minute
  --workload NAME  run only this workload (repeatable): single64, churn, remote, std
";

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
    workloads: Vec<Workload>,
    std_child: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        quick: false,
        workloads: Vec::new(),
        std_child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--workload" => {
                let name = it.next().ok_or("--workload needs a name")?;
                let w = Workload::from_name(&name).ok_or(format!("no workload {name:?}"))?;
                args.workloads.push(w);
            }
            CHILD_FLAG => args.std_child = Some(it.next().ok_or("--std-child needs a name")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.workloads.is_empty() {
        args.workloads = Workload::ALL.to_vec();
    }
    Ok(args)
}

/// Measures workload `w` for every contender that runs it, in contender order.
///
/// Raw workloads take turns within this process (see
/// [`memcg_bench::measure::interleaved`]); `std` runs one child per contender.
fn measure(
    contenders: &[Contender],
    w: Workload,
    reps: Reps,
    quick: bool,
) -> Result<Vec<(&Contender, Spread)>, String> {
    let runners: Vec<&Contender> = contenders.iter().filter(|c| c.runs(w)).collect();
    let spreads = if w == Workload::Std {
        let child_args: &[&str] = if quick { &["--quick"] } else { &[] };
        runners
            .iter()
            .map(|c| {
                let choice = c.global().expect("runs(Std) implies a global choice");
                global::run_in_child(choice, child_args).map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        let n = ops(w);
        interleaved(reps, runners.len(), |i| {
            let took = runners[i]
                .run_raw(w, n)
                .expect("runs(w) implies a raw runner");
            took.as_nanos() as f64 / n as f64
        })
    };
    Ok(runners.into_iter().zip(spreads).collect())
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
    let all = contenders();
    let mut rows = Vec::new();
    for &w in &args.workloads {
        let measured = match measure(&all, w, reps, args.quick) {
            Ok(measured) => measured,
            Err(e) => {
                eprintln!("memcg-bench: {e}");
                return ExitCode::FAILURE;
            }
        };
        for (c, ns) in measured {
            eprintln!(
                "{:>8} {:<24} {:>8.1} ns/op (min {:.1}, max {:.1})",
                w.name(),
                c.name(),
                ns.median,
                ns.min,
                ns.max
            );
            rows.push(Row {
                workload: w,
                allocator: c.name(),
                role: c.role(),
                ns_per_op: ns.median,
            });
        }
    }

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
    ExitCode::SUCCESS
}
