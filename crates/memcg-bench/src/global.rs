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
//! The dispatch costs every call one relaxed load, a table jump and a jump
//! into the allocator's own out-of-line entry ([`OutOfLine`]), the same for
//! every allocator.
//!
//! With [`GlobalChoice::Memcg`] every thread of the child's workload enters a
//! group of [`memcg::global()`] made for the run, so everything the workload
//! allocates is charged there; the child reports the group's `memory.peak`
//! beside its timings, which shows the charges are real. On `std` the memcg
//! child also times the workload with its thread in no group, in turns with
//! the charged runs: DESIGN.md §7's accounting on vs off, measured in one
//! process so that only the group differs. On the real-world suite
//! ([`crate::real_world`]) every child also reports its peak RSS, so the
//! `memcg` child runs only charged, and a second `memcg` child
//! ([`NO_GROUP_FLAG`]) runs the same workload with its thread in no group:
//! two runs in one process would mix their peaks.

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
use crate::real_world;
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
/// The line prefix, on the child's stdout, of its peak RSS (`VmHWM`) after
/// the workload's last run and its RSS (`VmRSS`) before the first, in bytes.
const RSS: &str = "rss ";
/// The group of [`memcg::global()`] the `memcg` child's workload threads enter.
const CHILD_GROUP: &str = "/global-child";
/// The hidden flag, after [`CHILD_FLAG`]'s, that keeps the `memcg` child's
/// workload threads in no group: the `memcg-root (global allocator)` row of
/// the real-world suite.
pub const NO_GROUP_FLAG: &str = "--in-no-group";

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

    /// The choice stored as `value`; `None` for [`UNSET`] (or garbage).
    /// A `match`, not an index into [`GlobalChoice::ALL`]: the compiler
    /// folds it into [`Dispatch`]'s own `match`, one jump table in all.
    #[inline]
    fn from_u8(value: u8) -> Option<GlobalChoice> {
        match value {
            1 => Some(GlobalChoice::System),
            2 => Some(GlobalChoice::Jemalloc),
            3 => Some(GlobalChoice::Mimalloc),
            4 => Some(GlobalChoice::Snmalloc),
            5 => Some(GlobalChoice::Memcg),
            _ => None,
        }
    }
}

const UNSET: u8 = 0;
static CHOICE: AtomicU8 = AtomicU8::new(UNSET);

/// The allocator this process forwards to, latched on first use.
#[inline]
pub fn current() -> GlobalChoice {
    // Relaxed: the value is a pure function of the environment at startup, so
    // a thread that still sees UNSET computes and stores the same value.
    GlobalChoice::from_u8(CHOICE.load(Ordering::Relaxed)).unwrap_or_else(latch)
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

/// Calls the same method of the chosen allocator, each behind a call of its
/// own ([`OutOfLine`]); before the choice is latched, calls `$first`.
macro_rules! dispatch {
    ($method:ident($($arg:expr),*), $first:ident) => {
        match GlobalChoice::from_u8(CHOICE.load(Ordering::Relaxed)) {
            Some(GlobalChoice::System) => OutOfLine(System).$method($($arg),*),
            Some(GlobalChoice::Jemalloc) => OutOfLine(Jemalloc).$method($($arg),*),
            Some(GlobalChoice::Mimalloc) => OutOfLine(MiMalloc).$method($($arg),*),
            Some(GlobalChoice::Snmalloc) => OutOfLine(SnMalloc).$method($($arg),*),
            Some(GlobalChoice::Memcg) => OutOfLine(MemcgAlloc).$method($($arg),*),
            None => $first($($arg),*),
        }
    };
}

// SAFETY: each call forwards to one allocator's own `GlobalAlloc` impl with
// the caller's arguments unchanged, and the choice never changes once made, so
// every block is freed or resized by the allocator that allocated it.
unsafe impl GlobalAlloc for Dispatch {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { dispatch!(alloc(layout), first_alloc) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { dispatch!(alloc_zeroed(layout), first_alloc_zeroed) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract; `ptr` came from the same choice.
        unsafe { dispatch!(dealloc(ptr, layout), first_dealloc) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded caller contract; `ptr` came from the same choice.
        unsafe { dispatch!(realloc(ptr, layout, new_size), first_realloc) }
    }
}

// The process's first call latches the choice, then makes the call. Out of
// line, so that the dispatch above needs no registers saved around a call
// and reaches every allocator by a jump. Only an allocation can come first
// (a block to free or resize was allocated after the latch), but each
// method has its way in.

#[cold]
#[inline(never)]
unsafe fn first_alloc(layout: Layout) -> *mut u8 {
    latch();
    // SAFETY: forwarded caller contract.
    unsafe { Dispatch.alloc(layout) }
}

#[cold]
#[inline(never)]
unsafe fn first_alloc_zeroed(layout: Layout) -> *mut u8 {
    latch();
    // SAFETY: forwarded caller contract.
    unsafe { Dispatch.alloc_zeroed(layout) }
}

#[cold]
#[inline(never)]
unsafe fn first_dealloc(ptr: *mut u8, layout: Layout) {
    latch();
    // SAFETY: forwarded caller contract.
    unsafe { Dispatch.dealloc(ptr, layout) }
}

#[cold]
#[inline(never)]
unsafe fn first_realloc(ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    latch();
    // SAFETY: forwarded caller contract.
    unsafe { Dispatch.realloc(ptr, layout, new_size) }
}

/// An allocator behind calls of its own: what [`Dispatch`] reaches each
/// allocator through.
///
/// Inlined into `Dispatch`, an allocator's Rust code (memcg's paths,
/// `System`'s `posix_memalign` branch) would make `__rust_alloc` save the
/// registers and stack it needs on every allocator's calls: five pushes and
/// pops per call, measured by callgrind, before this. Out of line, every
/// allocator is one table jump from `__rust_alloc`, and its own code is
/// compiled as it would be in `__rust_alloc` of a program that installs it
/// (one jump more than there).
struct OutOfLine<A>(A);

// SAFETY: forwards to `A`'s impl with the caller's arguments unchanged.
unsafe impl<A: GlobalAlloc> GlobalAlloc for OutOfLine<A> {
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.alloc(layout) }
    }

    #[inline(never)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { self.0.alloc_zeroed(layout) }
    }

    #[inline(never)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract; `ptr` came from `self.0`.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    #[inline(never)]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded caller contract; `ptr` came from `self.0`.
        unsafe { self.0.realloc(ptr, layout, new_size) }
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
    /// ns per op with the workload's thread in no group: in turns with the
    /// charged runs (`memcg` on `std`), or in a second child (`memcg` on the
    /// real-world suite).
    pub root_ns: Option<Spread>,
    /// The child's resident memory, when `/proc/self/status` tells it. On
    /// `std`, the `memcg` child's covers the runs in no group too.
    pub rss: Option<Rss>,
    /// The resident memory of the second child that measured `root_ns`
    /// (`memcg` on the real-world suite).
    pub root_rss: Option<Rss>,
}

impl ChildAnswer {
    /// An answer with only a time: a raw workload's, measured in this process.
    pub fn ns_only(ns: Spread) -> ChildAnswer {
        ChildAnswer {
            ns,
            charged: None,
            root_ns: None,
            rss: None,
            root_rss: None,
        }
    }
}

/// A child's resident memory, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rss {
    /// `VmHWM` after the workload's last run: the most the child ever had
    /// resident, binary, runtime and allocator included.
    pub peak: u64,
    /// `VmRSS` just before the workload's first run: what the child had
    /// resident before the workload allocated anything.
    pub start: u64,
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
/// (e.g. `--quick`). With `memcg` on the real-world suite, a second child
/// measures the same with its thread in no group.
pub fn run_in_child(
    choice: GlobalChoice,
    w: Workload,
    child_args: &[&str],
) -> Result<ChildAnswer, ChildError> {
    let mut answer = one_child(choice, w, child_args, false)?;
    if choice == GlobalChoice::Memcg && w.is_real_world() {
        let root = one_child(choice, w, child_args, true)?;
        answer.root_ns = Some(root.ns);
        answer.root_rss = root.rss;
    }
    Ok(answer)
}

/// Runs one child: workload `w` with `choice` as its global allocator, its
/// threads in no group if `no_group`.
fn one_child(
    choice: GlobalChoice,
    w: Workload,
    child_args: &[&str],
    no_group: bool,
) -> Result<ChildAnswer, ChildError> {
    let (allocator, workload) = (choice.name(), w.name());
    // Errors name the row the child measures.
    let row = if no_group { "memcg-root" } else { allocator };
    let spawn = |source| ChildError::Spawn {
        allocator: row,
        workload,
        source,
    };
    let exe = std::env::current_exe().map_err(spawn)?;
    let output = Command::new(exe)
        .arg(CHILD_FLAG)
        .arg(allocator)
        .arg(workload)
        .args(no_group.then_some(NO_GROUP_FLAG))
        .args(child_args)
        .env(CHOICE_ENV, allocator)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(spawn)?;
    if !output.status.success() {
        return Err(ChildError::Failed {
            allocator: row,
            workload,
            status: output.status,
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let find = |prefix: &str| stdout.lines().find_map(|line| line.strip_prefix(prefix));
    let ns = find(ANSWER)
        .and_then(parse_answer)
        .ok_or_else(|| ChildError::NoAnswer {
            allocator: row,
            workload,
            stdout: stdout.to_string(),
        })?;
    Ok(ChildAnswer {
        ns,
        charged: find(CHARGED)
            .and_then(parse_pair)
            .map(|(peak, current)| Charged { peak, current }),
        root_ns: find(ROOT_ANSWER).and_then(parse_answer),
        rss: find(RSS)
            .and_then(parse_pair)
            .map(|(peak, start)| Rss { peak, start }),
        root_rss: None,
    })
}

/// Two numbers of bytes.
fn parse_pair(numbers: &str) -> Option<(u64, u64)> {
    let mut it = numbers.split_whitespace().map(|n| n.parse::<u64>().ok());
    Some((it.next()??, it.next()??))
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
        Workload::Json => {
            // The document is the program's input: made before the clock
            // starts, by the same thread, in the same group.
            let _entered = a.enter_allocating_thread();
            let doc = real_world::json_document(scale.real_world.json_bytes);
            let rounds = scale.real_world.json_rounds;
            let took = (0..rounds).map(|_| real_world::json(&doc)).sum();
            (took, doc.values * rounds as u64)
        }
        Workload::Strings => {
            let _entered = a.enter_allocating_thread();
            let n = scale.real_world.strings;
            (real_world::strings(n), n as u64)
        }
        Workload::Btree => {
            let _entered = a.enter_allocating_thread();
            let n = scale.real_world.btree_entries;
            (real_world::btree(n), 2 * n as u64)
        }
        Workload::Single64 | Workload::Churn | Workload::Remote => return None,
    })
}

/// A `kB` field of `/proc/self/status` (`VmHWM`, `VmRSS`), in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

/// The [`RSS`] line: the peak now, and `start`, if both are known.
fn rss_line(start: Option<u64>) -> String {
    match (status_bytes("VmHWM"), start) {
        (Some(peak), Some(start)) => format!("\n{RSS}{peak} {start}"),
        _ => String::new(),
    }
}

/// In the child: checks that the global allocator is the `requested` one,
/// runs `workload` and returns the lines to print on stdout. With `memcg`
/// and not `no_group`, the workload's threads run in a group of
/// [`memcg::global()`], whose charges make a line of their own; on `std`,
/// another line is the same workload with the thread in no group, timed in
/// turns with the first. The last line is the child's resident memory.
pub fn child_answer(
    requested: &str,
    workload: &str,
    no_group: bool,
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
    if choice != GlobalChoice::Memcg || no_group {
        let a = ProcessGlobal::new(None);
        let start = status_bytes("VmRSS");
        let ns = interleaved(reps, 1, |_| time(&a)).remove(0);
        return Ok(line(ANSWER, ns) + &rss_line(start));
    }
    let group = memcg::global()
        .create(CHILD_GROUP)
        .map_err(ChildError::Group)?;
    // Fail here, not in a worker thread, if the group cannot be entered.
    drop(group.enter().map_err(ChildError::Group)?);
    let charged = ProcessGlobal::new(Some(group.clone()));
    let start = status_bytes("VmRSS");
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
    out.push_str(&rss_line(start));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_name_is_spelled_once() {
        assert_eq!(CHOICE_ENV_C.to_str(), Ok(CHOICE_ENV));
        assert_eq!(GlobalChoice::from_u8(UNSET), None);
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
        assert_eq!(parse_pair("16777216 4096"), Some((16 << 20, 4096)));
        assert_eq!(parse_pair("1"), None);
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
            real_world: real_world::RealWorld {
                json_bytes: 16 << 10,
                json_rounds: 2,
                strings: 1000,
                btree_entries: 1000,
            },
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
    fn this_process_knows_its_resident_memory() {
        // In this order: reading the file allocates, so what is resident
        // may grow between the reads, and the peak is never below it.
        let now = status_bytes("VmRSS");
        let peak = status_bytes("VmHWM");
        assert!(peak.is_some_and(|p| p >= now.unwrap()), "{peak:?} {now:?}");
        assert!(rss_line(Some(1)).starts_with(&format!("\n{RSS}")));
    }

    #[test]
    fn choices_round_trip_through_names_and_bytes() {
        for c in GlobalChoice::ALL {
            assert_eq!(GlobalChoice::from_name(c.name().as_bytes()), Some(c));
            assert_eq!(GlobalChoice::from_u8(c as u8), Some(c));
        }
    }
}
