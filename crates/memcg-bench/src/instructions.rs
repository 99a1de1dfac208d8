//! DESIGN.md §7 "instructions per 64-byte alloc+free pair through a real
//! call of the global allocator": counted by callgrind, one child of the
//! report binary per allocator.
//!
//! Time on a shared 2-core VM varies by tens of percent between runs;
//! instructions do not. The child ([`CHILD_FLAG`]) has the allocator as its
//! global allocator (the report's [`Dispatch`](crate::global::Dispatch),
//! latched from [`CHOICE_ENV`] as for the workloads on the global
//! allocator), warms it up with [`WARM_UP`] pairs, then calls
//! [`counted_pairs`], which is never inlined: each of its pairs is
//! `std::alloc::alloc` and `std::alloc::dealloc` of a 64-byte block, that is
//! real calls of `__rust_alloc` and `__rust_dealloc`, with the pointer passed
//! through `black_box` in between. The child runs under
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect=…`,
//! which counts only while [`counted_pairs`] runs, callees included; the
//! figure is that count over the pairs.
//!
//! What every allocator's figure also holds, the same for each: the loop
//! (an increment, a compare, a branch, the `black_box` store), the two
//! calls, and [`Dispatch`](crate::global::Dispatch)'s load of its choice and
//! table jump in each, into the allocator's own entry. With `memcg` the
//! thread is in a group of [`memcg::global()`] (charged, the §7 figure);
//! with `memcg-root` in none.
//!
//! snmalloc cannot be counted: it reserves a 256 GiB pagemap when it starts,
//! more address space than valgrind gives a program, and aborts.

use std::alloc::{handle_alloc_error, Layout};
use std::hint::black_box;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::contender::{MEMCG_GLOBAL, MEMCG_GLOBAL_ROOT};
use crate::global::{self, GlobalChoice, CHOICE_ENV};

/// The hidden flag that makes the report binary the counted child:
/// `--instructions-child TARGET PAIRS`.
pub const CHILD_FLAG: &str = "--instructions-child";
/// Pairs the child makes before counting: the allocator's caches are warm
/// and its thread state set up.
pub const WARM_UP: u64 = 10_000;
/// Pairs counted.
pub const PAIRS: u64 = 100_000;
/// The block of every pair.
const OBJECT_64: Layout = match Layout::from_size_align(64, 8) {
    Ok(layout) => layout,
    Err(_) => panic!("64-byte layout"),
};
/// The group of [`memcg::global()`] the `memcg` child's thread enters.
const CHILD_GROUP: &str = "/instructions-child";
/// The function callgrind counts in (a pattern: the symbol it demangles to
/// ends in a hash).
const COUNTED: &str = "*instructions::counted_pairs*";

/// One allocator counted: a global allocator, and for memcg whether the
/// thread is in a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// The child's global allocator.
    pub choice: GlobalChoice,
    /// Whether the child's thread enters a group (memcg only).
    pub in_group: bool,
}

impl Target {
    /// Every allocator, in the order of the report's table.
    pub const ALL: [Target; 6] = [
        Target::of(GlobalChoice::Memcg, true),
        Target::of(GlobalChoice::Memcg, false),
        Target::of(GlobalChoice::Mimalloc, false),
        Target::of(GlobalChoice::Jemalloc, false),
        Target::of(GlobalChoice::Snmalloc, false),
        Target::of(GlobalChoice::System, false),
    ];

    const fn of(choice: GlobalChoice, in_group: bool) -> Target {
        Target { choice, in_group }
    }

    /// The name on the child's command line: the allocator's, and
    /// `memcg-root` for memcg in no group.
    pub fn name(self) -> &'static str {
        match (self.choice, self.in_group) {
            (GlobalChoice::Memcg, false) => "memcg-root",
            (choice, _) => choice.name(),
        }
    }

    /// The name of the report's row for the same allocator, as `--allocator`
    /// takes it.
    pub fn row(self) -> &'static str {
        match (self.choice, self.in_group) {
            (GlobalChoice::Memcg, true) => MEMCG_GLOBAL,
            (GlobalChoice::Memcg, false) => MEMCG_GLOBAL_ROOT,
            (choice, _) => choice.name(),
        }
    }

    fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// What callgrind counted for one allocator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InstructionCount {
    /// The allocator.
    pub target: Target,
    /// Instructions per alloc+free pair.
    pub per_pair: f64,
}

/// What the study counted, and what it could not.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counts {
    /// The allocators counted.
    pub counted: Vec<InstructionCount>,
    /// The allocators not counted, with why.
    pub failed: Vec<(Target, String)>,
}

/// Why an allocator's pairs were not counted.
#[derive(Debug, thiserror::Error)]
pub enum InstructionsError {
    /// valgrind could not be started.
    #[error("cannot run valgrind for {target}: {source}")]
    Spawn {
        target: &'static str,
        source: io::Error,
    },
    /// valgrind or the child under it failed. snmalloc always does: it
    /// reserves a 256 GiB pagemap at start, more address space than
    /// valgrind gives a program ("Failed to initialise snmalloc.").
    #[error("valgrind's run for {target} failed ({status}): {stderr:?}")]
    Failed {
        target: &'static str,
        status: ExitStatus,
        stderr: String,
    },
    /// callgrind's output file could not be read.
    #[error("cannot read callgrind's output {path:?} for {target}: {source}")]
    Read {
        target: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// callgrind's output has no total, or a total of nothing: the counted
    /// function was not found by its name.
    #[error("callgrind counted nothing in {COUNTED} for {target} (see {path:?})")]
    NothingCounted { target: &'static str, path: PathBuf },
    /// In the child: the name is no allocator counted here.
    #[error("no allocator {0:?} to count instructions of")]
    UnknownTarget(String),
    /// In the child: the flag and the environment name different allocators.
    #[error("asked for {requested:?} but the global allocator is {actual} (set {CHOICE_ENV})")]
    WrongGlobal {
        requested: &'static str,
        actual: &'static str,
    },
    /// In the `memcg` child: the group could not be made or entered.
    #[error("cannot enter the child's group {CHILD_GROUP}: {0}")]
    Group(#[source] memcg::Error),
}

/// valgrind's version, if it can be run.
pub fn valgrind() -> Option<String> {
    let out = Command::new("valgrind")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// One `alloc`+`dealloc` of a 64-byte block on the global allocator, `n`
/// times.
#[inline(always)]
fn pairs(n: u64) {
    for _ in 0..n {
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc(OBJECT_64) };
        if ptr.is_null() {
            handle_alloc_error(OBJECT_64);
        }
        // The allocator cannot see what happens to the block, so the pair
        // is not elided.
        let ptr = black_box(ptr);
        // SAFETY: allocated above with the same layout, freed once.
        unsafe { std::alloc::dealloc(ptr, OBJECT_64) };
    }
}

/// The pairs callgrind counts: a function of its own that nothing inlines,
/// so that `--toggle-collect` finds it by name.
#[inline(never)]
pub fn counted_pairs(n: u64) {
    pairs(n);
}

/// In the child: checks that the global allocator is `target`'s, enters a
/// group if it asks for one, warms up (those pairs are inlined here, so
/// callgrind does not count them) and makes `n` counted pairs.
pub fn child(target: &str, n: u64) -> Result<(), InstructionsError> {
    let target =
        Target::from_name(target).ok_or_else(|| InstructionsError::UnknownTarget(target.into()))?;
    let actual = global::current();
    if actual != target.choice {
        return Err(InstructionsError::WrongGlobal {
            requested: target.name(),
            actual: actual.name(),
        });
    }
    let group = if target.in_group {
        let group = memcg::global()
            .create(CHILD_GROUP)
            .map_err(InstructionsError::Group)?;
        Some(group)
    } else {
        None
    };
    let _entered = group
        .as_ref()
        .map(|g| g.enter().map_err(InstructionsError::Group))
        .transpose()?;
    pairs(black_box(WARM_UP));
    counted_pairs(black_box(n));
    Ok(())
}

/// In the parent: counts `pairs` pairs of `target` in a child under
/// callgrind; the instructions per pair.
pub fn count(target: Target, pairs: u64) -> Result<f64, InstructionsError> {
    let name = target.name();
    let spawn = |source| InstructionsError::Spawn {
        target: name,
        source,
    };
    let exe = std::env::current_exe().map_err(spawn)?;
    let out_file = std::env::temp_dir().join(format!(
        "memcg-bench-callgrind-{}-{name}.out",
        std::process::id()
    ));
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--collect-atstart=no")
        .arg(format!("--toggle-collect={COUNTED}"))
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(exe)
        .arg(CHILD_FLAG)
        .arg(name)
        .arg(pairs.to_string())
        .env(CHOICE_ENV, target.choice.name())
        .stdin(Stdio::null())
        .output()
        .map_err(spawn)?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&out_file);
        return Err(InstructionsError::Failed {
            target: name,
            status: output.status,
            stderr: own_lines(&String::from_utf8_lossy(&output.stderr)),
        });
    }
    let total = read_total(&out_file).map_err(|source| InstructionsError::Read {
        target: name,
        path: out_file.clone(),
        source,
    })?;
    match total {
        Some(total) if total > 0 => {
            let _ = std::fs::remove_file(&out_file);
            Ok(total as f64 / pairs as f64)
        }
        _ => Err(InstructionsError::NothingCounted {
            target: name,
            path: out_file,
        }),
    }
}

/// What the child itself wrote on stderr, without valgrind's lines
/// (`==PID== …`), on one line.
fn own_lines(stderr: &str) -> String {
    let own: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("=="))
        .collect();
    own.join(" ")
}

/// The instructions (`Ir`, the first event) callgrind collected, from its
/// output's `totals:` line (or `summary:`, which older versions write).
fn read_total(path: &Path) -> io::Result<Option<u64>> {
    Ok(parse_total(&std::fs::read_to_string(path)?))
}

fn parse_total(callgrind_out: &str) -> Option<u64> {
    let line = |prefix: &str| {
        callgrind_out
            .lines()
            .find_map(|l| l.strip_prefix(prefix))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    line("totals:").or_else(|| line("summary:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip_through_their_names() {
        for t in Target::ALL {
            assert_eq!(Target::from_name(t.name()), Some(t));
        }
        assert_eq!(Target::ALL[0].row(), MEMCG_GLOBAL);
        assert_eq!(Target::ALL[1].row(), MEMCG_GLOBAL_ROOT);
        assert_eq!(Target::ALL[2].row(), "mimalloc");
    }

    #[test]
    fn the_total_is_the_first_event_of_the_totals_line() {
        let out = "version: 1\ncmd: x\nevents: Ir\nfn=(1) f\n3 5\nsummary: 7\ntotals: 1234 9\n";
        assert_eq!(parse_total(out), Some(1234));
        assert_eq!(parse_total("summary: 77\n"), Some(77));
        assert_eq!(parse_total("events: Ir\n"), None);
    }

    #[test]
    fn only_the_childs_own_lines_are_kept() {
        let stderr =
            "==1== Callgrind\n==1== Command: x\n\nFailed to initialise snmalloc.\n==1== at 0x1\n";
        assert_eq!(own_lines(stderr), "Failed to initialise snmalloc.");
    }

    #[test]
    fn counted_pairs_free_what_they_allocate() {
        counted_pairs(1000);
    }
}
