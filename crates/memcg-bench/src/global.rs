//! The workloads on the global allocator — `std` and the mimalloc-bench
//! ports ([`crate::ports`]) — with each allocator as the process's global
//! allocator.
//!
//! std's `HashMap`, `String` and `Vec` allocate through the global allocator,
//! and a process has exactly one. We could time `hashbrown` and
//! `allocator_api2` collections with an `_in` allocator instead, but there is
//! no `String` with an allocator parameter, and that would time other
//! collections than the ones programs use. The ports, like mimalloc-bench's
//! C programs run under `LD_PRELOAD`, call the global allocator and keep
//! their bookkeeping on it. So the report re-executes itself once per
//! allocator and workload (`--global-child NAME WORKLOAD`, with
//! [`CHOICE_ENV`] naming the same allocator), and the child's global
//! allocator is [`Dispatch`], which forwards every call to the allocator
//! chosen once, at the process's first allocation.
//!
//! Why the environment and not the flag: the Rust runtime may allocate before
//! `main` runs, and a block must be freed by the allocator that made it. So the
//! choice is latched from the environment by the very first allocation, which
//! reads it with `getenv` (that does not allocate), and never changes after;
//! the flag only tells `main` what to run, and the child checks both agree.
//!
//! The dispatch costs every call one relaxed load and a predictable branch,
//! the same for every allocator.
//!
//! With [`GlobalChoice::Memcg`] every thread of the child's workload enters a
//! group of [`memcg::global()`] made for the run, so everything the workload
//! allocates is charged there; the child reports the group's `memory.peak`
//! beside its timings, which shows the charges are real. On `std` the memcg
//! child also times the workload with its thread in no group, in turns with
//! the charged runs: DESIGN.md §7's accounting on vs off, measured in one
//! process so that only the group differs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::{c_char, CStr};
use std::io;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use memcg::MemcgAlloc;
use mimalloc::MiMalloc;
use snmalloc_rs::SnMalloc;
use tikv_jemallocator::Jemalloc;

use crate::measure::{interleaved, Reps, Spread};
use crate::ports::{self, Scale};
use crate::raw_alloc::{ProcessGlobal, RawAlloc};
use crate::workload::{std_map, Workload, STD_ENTRIES};

/// The environment variable that names the child's global allocator.
pub const CHOICE_ENV: &str = "MEMCG_BENCH_GLOBAL";
/// [`CHOICE_ENV`] as `getenv` takes it.
const CHOICE_ENV_C: &CStr = c"MEMCG_BENCH_GLOBAL";
/// The hidden flag that makes the report binary a child running one workload
/// on one global allocator: `--global-child ALLOCATOR WORKLOAD`.
pub const CHILD_FLAG: &str = "--global-child";
/// The line prefix of the child's answer on stdout, followed by the min,
/// median and max ns per op.
const ANSWER: &str = "ns_per_op ";
/// The line prefix, on the child's stdout, of what its group was charged (only
/// with [`GlobalChoice::Memcg`]): `memory.peak` and `memory.current` after
/// the workload's last run, in bytes.
const CHARGED: &str = "charged ";
/// The line prefix, on the `memcg` child's stdout for `std`, of the min,
/// median and max ns per op with the thread in no group.
const ROOT_ANSWER: &str = "ns_per_op_root ";
/// The group of [`memcg::global()`] the `memcg` child's workload threads enter.
const CHILD_GROUP: &str = "/global-child";

/// An allocator [`Dispatch`] can forward to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum GlobalChoice {
    /// `std::alloc::System` (glibc malloc here); also what runs when the
    /// environment names nothing.
    System = 1,
    /// `tikv_jemallocator::Jemalloc`.
    Jemalloc = 2,
    /// `mimalloc::MiMalloc`.
    Mimalloc = 3,
    /// `snmalloc_rs::SnMalloc`.
    Snmalloc = 4,
    /// `memcg::MemcgAlloc`, charging the group the workload thread entered.
    Memcg = 5,
}

impl GlobalChoice {
    /// Every choice.
    pub const ALL: [GlobalChoice; 5] = [
        GlobalChoice::System,
        GlobalChoice::Jemalloc,
        GlobalChoice::Mimalloc,
        GlobalChoice::Snmalloc,
        GlobalChoice::Memcg,
    ];

    /// The name used in [`CHOICE_ENV`], the child flag and the report.
    pub fn name(self) -> &'static str {
        match self {
            GlobalChoice::System => "system",
            GlobalChoice::Jemalloc => "jemalloc",
            GlobalChoice::Mimalloc => "mimalloc",
            GlobalChoice::Snmalloc => "snmalloc",
            GlobalChoice::Memcg => "memcg",
        }
    }

    fn from_name(name: &[u8]) -> Option<GlobalChoice> {
        GlobalChoice::ALL
            .into_iter()
            .find(|c| c.name().as_bytes() == name)
    }

    fn from_u8(value: u8) -> GlobalChoice {
        GlobalChoice::ALL[usize::from(value) - 1]
    }
}

const UNSET: u8 = 0;
static CHOICE: AtomicU8 = AtomicU8::new(UNSET);

/// The allocator this process forwards to, latched on first use.
#[inline]
pub fn current() -> GlobalChoice {
    // Relaxed: the value is a pure function of the environment at startup, so
    // a thread that still sees UNSET computes and stores the same value.
    match CHOICE.load(Ordering::Relaxed) {
        UNSET => latch(),
        value => GlobalChoice::from_u8(value),
    }
}

#[cold]
fn latch() -> GlobalChoice {
    extern "C" {
        fn getenv(name: *const c_char) -> *const c_char;
    }
    // SAFETY: the name is NUL-terminated; getenv does not allocate. We get here
    // on the process's first allocation, before any thread could change the
    // environment (and this binary never does).
    let value = unsafe { getenv(CHOICE_ENV_C.as_ptr()) };
    let choice = if value.is_null() {
        GlobalChoice::System
    } else {
        // SAFETY: getenv returned a NUL-terminated string that lives as long
        // as the environment is not modified.
        let name = unsafe { CStr::from_ptr(value) }.to_bytes();
        // An unknown name falls back to System; the child's check reports it.
        GlobalChoice::from_name(name).unwrap_or(GlobalChoice::System)
    };
    CHOICE.store(choice as u8, Ordering::Relaxed);
    choice
}

/// A global allocator that forwards to the allocator named by [`CHOICE_ENV`].
/// The report binary installs it; nothing else should.
pub struct Dispatch;

// SAFETY: each call forwards to one allocator's own `GlobalAlloc` impl with
// the caller's arguments unchanged, and the choice never changes once made, so
// every block is freed or resized by the allocator that allocated it.
unsafe impl GlobalAlloc for Dispatch {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe {
            match current() {
                GlobalChoice::System => System.alloc(layout),
                GlobalChoice::Jemalloc => Jemalloc.alloc(layout),
                GlobalChoice::Mimalloc => MiMalloc.alloc(layout),
                GlobalChoice::Snmalloc => SnMalloc.alloc(layout),
                GlobalChoice::Memcg => MemcgAlloc.alloc(layout),
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe {
            match current() {
                GlobalChoice::System => System.alloc_zeroed(layout),
                GlobalChoice::Jemalloc => Jemalloc.alloc_zeroed(layout),
                GlobalChoice::Mimalloc => MiMalloc.alloc_zeroed(layout),
                GlobalChoice::Snmalloc => SnMalloc.alloc_zeroed(layout),
                GlobalChoice::Memcg => MemcgAlloc.alloc_zeroed(layout),
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract; `ptr` came from the same choice.
        unsafe {
            match current() {
                GlobalChoice::System => System.dealloc(ptr, layout),
                GlobalChoice::Jemalloc => Jemalloc.dealloc(ptr, layout),
                GlobalChoice::Mimalloc => MiMalloc.dealloc(ptr, layout),
                GlobalChoice::Snmalloc => SnMalloc.dealloc(ptr, layout),
                GlobalChoice::Memcg => MemcgAlloc.dealloc(ptr, layout),
            }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded caller contract; `ptr` came from the same choice.
        unsafe {
            match current() {
                GlobalChoice::System => System.realloc(ptr, layout, new_size),
                GlobalChoice::Jemalloc => Jemalloc.realloc(ptr, layout, new_size),
                GlobalChoice::Mimalloc => MiMalloc.realloc(ptr, layout, new_size),
                GlobalChoice::Snmalloc => SnMalloc.realloc(ptr, layout, new_size),
                GlobalChoice::Memcg => MemcgAlloc.realloc(ptr, layout, new_size),
            }
        }
    }
}

/// Why a child on the global allocator gave no number.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// The report binary could not be found or started again.
    #[error("cannot start the {workload} child for {allocator}: {source}")]
    Spawn {
        allocator: &'static str,
        workload: &'static str,
        source: io::Error,
    },
    /// The child ran but did not succeed.
    #[error("the {workload} child for {allocator} failed: {status}")]
    Failed {
        allocator: &'static str,
        workload: &'static str,
        status: std::process::ExitStatus,
    },
    /// The child's stdout held no answer line.
    #[error("the {workload} child for {allocator} printed no `{ANSWER}` line: {stdout:?}")]
    NoAnswer {
        allocator: &'static str,
        workload: &'static str,
        stdout: String,
    },
    /// In the `memcg` child: the group to charge could not be made or entered.
    #[error("cannot enter the child's group {CHILD_GROUP}: {0}")]
    Group(#[source] memcg::Error),
    /// In the child: the flag and the environment name different allocators.
    #[error("asked for {requested:?} but the global allocator is {actual} (set {CHOICE_ENV})")]
    WrongGlobal {
        requested: String,
        actual: &'static str,
    },
    /// In the child: the workload named is not one on the global allocator.
    #[error("{0:?} is not a workload on the global allocator")]
    NotGlobal(String),
}

/// What a child on the global allocator measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChildAnswer {
    /// ns per op over the timed repetitions.
    pub ns: Spread,
    /// What the child's group was charged, when its global allocator charges
    /// one (`memcg`).
    pub charged: Option<Charged>,
    /// ns per op with the workload's thread in no group, in turns with the
    /// charged runs (`memcg` on `std` only).
    pub root_ns: Option<Spread>,
}

/// The `memcg` child's group after the workload, quiesced: bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Charged {
    /// `memory.peak`: the most the group was charged at once.
    pub peak: u64,
    /// `memory.current` once the last map was dropped.
    pub current: u64,
}

/// In the parent: runs workload `w` in a child with `choice` as its global
/// allocator and returns what the child measured. `child_args` are passed on
/// (e.g. `--quick`).
pub fn run_in_child(
    choice: GlobalChoice,
    w: Workload,
    child_args: &[&str],
) -> Result<ChildAnswer, ChildError> {
    let (allocator, workload) = (choice.name(), w.name());
    let spawn = |source| ChildError::Spawn {
        allocator,
        workload,
        source,
    };
    let exe = std::env::current_exe().map_err(spawn)?;
    let output = Command::new(exe)
        .arg(CHILD_FLAG)
        .arg(allocator)
        .arg(workload)
        .args(child_args)
        .env(CHOICE_ENV, allocator)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(spawn)?;
    if !output.status.success() {
        return Err(ChildError::Failed {
            allocator,
            workload,
            status: output.status,
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let ns = stdout
        .lines()
        .find_map(|line| parse_answer(line.strip_prefix(ANSWER)?))
        .ok_or_else(|| ChildError::NoAnswer {
            allocator,
            workload,
            stdout: stdout.to_string(),
        })?;
    let charged = stdout
        .lines()
        .find_map(|line| parse_charged(line.strip_prefix(CHARGED)?));
    let root_ns = stdout
        .lines()
        .find_map(|line| parse_answer(line.strip_prefix(ROOT_ANSWER)?));
    Ok(ChildAnswer {
        ns,
        charged,
        root_ns,
    })
}

fn parse_charged(numbers: &str) -> Option<Charged> {
    let mut it = numbers.split_whitespace().map(|n| n.parse::<u64>().ok());
    let (peak, current) = (it.next()??, it.next()??);
    Some(Charged { peak, current })
}

fn parse_answer(numbers: &str) -> Option<Spread> {
    let mut it = numbers.split_whitespace().map(|n| n.parse::<f64>().ok());
    let (min, median, max) = (it.next()??, it.next()??, it.next()??);
    Some(Spread { min, median, max })
}

/// Runs workload `w` once on `a` (the process's global allocator) at
/// `scale`: the time of its timed part and the ops done in it. `None` for a
/// raw workload, which does not run on the global allocator.
pub fn run_once(w: Workload, a: &ProcessGlobal, scale: &Scale) -> Option<(Duration, u64)> {
    Some(match w {
        Workload::Std => {
            let _entered = a.enter_allocating_thread();
            (std_map(STD_ENTRIES), STD_ENTRIES as u64)
        }
        Workload::Larson => (ports::larson::run(a, &scale.larson), scale.larson.ops()),
        Workload::Xmalloc => (ports::xmalloc::run(a, &scale.xmalloc), scale.xmalloc.ops()),
        Workload::Mstress => (ports::mstress::run(a, &scale.mstress), scale.mstress.ops()),
        Workload::CacheScratch => (
            ports::cache_scratch::run(a, &scale.cache_scratch),
            scale.cache_scratch.ops(),
        ),
        Workload::Single64 | Workload::Churn | Workload::Remote => return None,
    })
}

/// In the child: checks that the global allocator is the `requested` one,
/// runs `workload` and returns the lines to print on stdout. With `memcg`,
/// the workload's threads run in a group of [`memcg::global()`], whose
/// charges make the second line; on `std`, the third line is the same
/// workload with the thread in no group, timed in turns with the first.
pub fn child_answer(
    requested: &str,
    workload: &str,
    reps: Reps,
    scale: &Scale,
) -> Result<String, ChildError> {
    let choice = current();
    if choice.name() != requested {
        return Err(ChildError::WrongGlobal {
            requested: requested.to_owned(),
            actual: choice.name(),
        });
    }
    let w = Workload::from_name(workload)
        .filter(|w| w.on_global_allocator())
        .ok_or_else(|| ChildError::NotGlobal(workload.to_owned()))?;
    let line = |prefix: &str, ns: Spread| format!("{prefix}{} {} {}", ns.min, ns.median, ns.max);
    let time = |a: &ProcessGlobal| {
        let (took, ops) = run_once(w, a, scale).expect("a workload on the global allocator");
        took.as_nanos() as f64 / ops as f64
    };
    if choice != GlobalChoice::Memcg {
        let a = ProcessGlobal::new(None);
        let ns = interleaved(reps, 1, |_| time(&a)).remove(0);
        return Ok(line(ANSWER, ns));
    }
    let group = memcg::global()
        .create(CHILD_GROUP)
        .map_err(ChildError::Group)?;
    // Fail here, not in a worker thread, if the group cannot be entered.
    drop(group.enter().map_err(ChildError::Group)?);
    let charged = ProcessGlobal::new(Some(group.clone()));
    let mut out = if w == Workload::Std {
        let root = ProcessGlobal::new(None);
        let spreads = interleaved(reps, 2, |i| time(if i == 0 { &charged } else { &root }));
        format!(
            "{}\n{}",
            line(ANSWER, spreads[0]),
            line(ROOT_ANSWER, spreads[1])
        )
    } else {
        line(ANSWER, interleaved(reps, 1, |_| time(&charged)).remove(0))
    };
    memcg::global().quiesce();
    let bytes = |file| -> Result<u64, ChildError> {
        let value = group.read(file).map_err(ChildError::Group)?;
        Ok(value
            .trim()
            .parse()
            .expect("memory.peak and memory.current are numbers of bytes"))
    };
    let (peak, current) = (bytes("memory.peak")?, bytes("memory.current")?);
    out.push_str(&format!("\n{CHARGED}{peak} {current}"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_name_is_spelled_once() {
        assert_eq!(CHOICE_ENV_C.to_str(), Ok(CHOICE_ENV));
    }

    #[test]
    fn answer_line_parses_back() {
        let line = format!("{ANSWER}1.5 2 3.25");
        let spread = parse_answer(line.strip_prefix(ANSWER).unwrap());
        assert_eq!(
            spread,
            Some(Spread {
                min: 1.5,
                median: 2.0,
                max: 3.25
            })
        );
        assert_eq!(parse_answer("1 2"), None);
        assert_eq!(
            parse_charged("16777216 4096"),
            Some(Charged {
                peak: 16 << 20,
                current: 4096
            })
        );
        assert_eq!(parse_charged("1"), None);
    }

    #[test]
    fn the_root_answer_has_its_own_prefix() {
        let stdout = format!("{ANSWER}1 2 3\n{ROOT_ANSWER}4 5 6\n{CHARGED}7 8");
        let root = stdout
            .lines()
            .find_map(|line| parse_answer(line.strip_prefix(ROOT_ANSWER)?));
        assert_eq!(root.map(|s| s.median), Some(5.0));
        let ns = stdout
            .lines()
            .find_map(|line| parse_answer(line.strip_prefix(ANSWER)?));
        assert_eq!(ns.map(|s| s.median), Some(2.0), "not the root line");
    }

    #[test]
    fn run_once_runs_exactly_the_workloads_on_the_global_allocator() {
        let tiny = Scale {
            larson: ports::Larson {
                chunks_per_thread: 20,
                rounds: 2,
                ..ports::Larson::mimalloc_bench(2)
            },
            xmalloc: ports::Xmalloc::mimalloc_bench(2),
            mstress: ports::Mstress {
                scale: 1,
                ..ports::Mstress::mimalloc_bench(2).with_iterations(1)
            },
            cache_scratch: ports::CacheScratch::mimalloc_bench(2).with_repetitions(4),
        };
        let a = ProcessGlobal::new(None);
        for w in Workload::ALL {
            let ran = run_once(w, &a, &tiny);
            assert_eq!(ran.is_some(), w.on_global_allocator(), "{}", w.name());
            if let Some((_, ops)) = ran {
                assert!(ops > 0, "{}", w.name());
            }
        }
    }

    #[test]
    fn choices_round_trip_through_names_and_bytes() {
        for c in GlobalChoice::ALL {
            assert_eq!(GlobalChoice::from_name(c.name().as_bytes()), Some(c));
            assert_eq!(GlobalChoice::from_u8(c as u8), c);
        }
    }
}
