//! Runs a parsed [`Script`] against the real engine (DESIGN.md §5).
//!
//! Every `task` is a real OS thread, named after the task, that attaches
//! itself to its group. Commands for a task are boxed closures sent to it over
//! a channel; the script's thread waits for each result, so a script runs
//! strictly in order while every charge and free happens on the thread the
//! script names. The script's own thread never leaves the root group: a run
//! detaches it first, so it does not follow a default group either.
//!
//! S12 threads are tasks too. A `thread` is started with `std::thread` and
//! never attached, so it follows the default group. A `spawn NAME by TASK`
//! thread is started by TASK's thread with [`memcg::Builder`], so it starts
//! where TASK is: in its group (listed in `cgroup.procs` before it runs), in
//! the root, or following the default group. Either kind is then a task like
//! any other: `task NAME PATH` moves it, `exit NAME` ends it. A name already
//! running is `exists` for both (`task` with such a name moves it instead).
//! A thread following the default picks a change up at its next call into
//! memcg; every allocation command and every quiesce makes that call first
//! ([`Hierarchy::current_group`]), so scripted numbers stay exact even for
//! slab objects, whose fast path does not look.
//!
//! The default group is process-wide, while each run has its own hierarchy.
//! So a run whose script has a `default` or a `thread` command (the only
//! ones that set the default or depend on it) holds `DEFAULT_LOCK` from
//! start to end, and ends by making the root the default again, whether the
//! script passed or failed. Runs of one process (`memcg replay a.mcg b.mcg`,
//! or scripts run on several threads in-process) then never see each
//! other's default. Runs without those commands take no lock: all their
//! charges come from attached threads, which a default does not move.
//!
//! A SET owns the objects a script allocated (slab objects, kmem buffers,
//! user pages) and frees them oldest first. Reclaim may drop file pages and
//! objects of reclaimable caches behind the script's back; such members no
//! longer count and are forgotten when next looked at.
//!
//! Root slab caches are process-wide and interned by name in the library, so
//! each run gets its own namespace: the script's cache `c` is the library's
//! `c@RUN`, with RUN unique in the process. Two scripts of one `memcg replay`
//! may then define `c` with different sizes. Messages speak of `c`.
//!
//! Kills and freezes (S14, S15). `task NAME PATH killable` makes the task's
//! thread a killable unit ([`memcg::Group::enter_killable`], the guard kept
//! on the thread); the flag belongs to the line: a later `task NAME PATH`
//! without `killable` makes it a plain attached task, which no kill
//! reaches (a thread that left its killable scope is no unit any more, as
//! [`memcg::check_killed`] defines). `spawn` starts a plain task too: a
//! unit is made only by a `killable` line. After every command (and after
//! `expect-fail` around it) each killable task's thread goes to its safe
//! point, [`memcg::check_killed`]; a killed task frees, on its own thread
//! and so inside its group, every member it made that is still live (a
//! killed process's memory is freed), and ends, before the next command
//! runs. A command naming it is then `not-found`; `task` with its name
//! starts a new task. The charge that set off an OOM kill still fails
//! `limit`. A kill is in the engine's hands alone: the runner only asks.
//!
//! A command for a task whose group is frozen (`cgroup.freeze` 1 on it or
//! an ancestor) fails `again` before it reaches the thread, for every
//! command that runs on it: the allocation commands, `free ... by`,
//! `spawn ... by`, `task` moving it (out of the frozen group or not) and
//! `exit` (a frozen thread cannot end itself; `cgroup.kill` ends a killable
//! one, a kill overrides a freeze). Moving a task into a frozen group, or
//! starting one there, is allowed; it is then frozen. The runner's own
//! work on a frozen thread (draining its stocks before a read, asking after
//! a kill) never waits for a thaw: a task thread runs the memory.high
//! safe point ([`memcg::throttle_point`]) after a command only while its
//! group is not frozen, and a frozen thread is asked whether it was killed
//! without waiting (see `killed_here`), so a script never hangs on a
//! freeze.
//!
//! The `memcg.*` files of the root (see the script module) are answered here,
//! from the hierarchy's own counters, not by the engine's interface files.
//!
//! Every failure of a command has one of the six error kinds of §5
//! ([`RunError::kind`]), so `expect-fail` can match it; only an expectation
//! that does not hold (and a task that died, a bug) has none. One allocation
//! command makes at most [`MAX_MEMBERS`] members and [`MAX_BYTES`] bytes;
//! more is `invalid` with nothing allocated, so that no script line can run
//! for hours or exhaust memory.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

use memcg::{
    Group, Hierarchy, KillableGuard, KmemPages, PageKind, SlabCache, SlabObject, UserPage,
};

use crate::script::{Command, ErrorName, FileRef, Op, Script, Statement, Value};

/// Bytes per page; `anon` and `file` make one SET member per started page.
const PAGE_SIZE: u64 = memcg::PAGE_SIZE as u64;

/// The most members one allocation command (`alloc`, `kmem`, `anon`,
/// `file`) may make: COUNT, or SIZE in pages. More is `invalid` before
/// anything is allocated, so that a typo cannot make a script loop for
/// hours, or fill memory when no limit stops it. Split larger work over
/// several commands.
pub const MAX_MEMBERS: u64 = 1 << 20;

/// The most bytes one allocation command may ask for: COUNT × object size
/// for `alloc`, COUNT × SIZE rounded up to pages for `kmem`, SIZE rounded up
/// to pages for `anon` and `file`. More is `invalid`, as for
/// [`MAX_MEMBERS`].
pub const MAX_BYTES: u64 = 1 << 30;

/// A command or expectation that failed: prints as
/// `FILE:LINE: the command: what went wrong`.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {text}: {error}")]
pub struct Failure {
    /// The script file.
    pub file: Arc<str>,
    /// 1-based line number.
    pub line: usize,
    /// The command as written.
    pub text: String,
    /// What went wrong.
    pub error: Box<RunError>,
}

/// Why one command failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The engine refused; `expect-fail` matches these by kind.
    #[error(transparent)]
    Engine(#[from] memcg::Error),
    /// A command named a task that is not running (`not-found` to
    /// `expect-fail`).
    #[error("not-found: no task named `{0}`; start it first with `task`, `thread` or `spawn`")]
    NoTask(String),
    /// A command named a task that a kill ended (S14; `not-found` to
    /// `expect-fail`, as a task no command made).
    #[error("not-found: task `{0}` was killed (cgroup.kill or the OOM killer) and has ended; `task {0} PATH` starts it again")]
    Killed(String),
    /// A command for a task whose group is frozen (S15; `again` to
    /// `expect-fail`): it is refused before it reaches the thread.
    #[error("again: task `{task}` is frozen: {group} has cgroup.freeze 1 on it or an ancestor; write cgroup.freeze 0 there first")]
    Frozen {
        /// The task.
        task: String,
        /// The group it is in.
        group: String,
    },
    /// A command named a set that no allocation has created (`not-found`
    /// to `expect-fail`).
    #[error("not-found: no set named `{0}`; an allocation command `... as {0}` makes it")]
    NoSet(String),
    /// `alloc` named a cache that no `cache` command has created
    /// (`not-found` to `expect-fail`).
    #[error("not-found: no cache named `{0}`; define it first with `cache {0} SIZE`")]
    NoCache(String),
    /// A SIZE or number too large for 64 bits inside `expect-fail`
    /// ([`Command::Overflow`]; `invalid` to `expect-fail`).
    #[error("invalid: `{0}` does not fit in 64 bits")]
    Overflow(String),
    /// An allocation command over [`MAX_MEMBERS`] or [`MAX_BYTES`]
    /// (`invalid` to `expect-fail`).
    #[error("invalid: {command} would make {members} members of {bytes} bytes in all; one command makes at most {MAX_MEMBERS} members and {MAX_BYTES} bytes: split the work over several commands")]
    TooMuch {
        /// The command word.
        command: &'static str,
        /// Members it would make (saturated at `u64::MAX`).
        members: u64,
        /// Bytes it would ask for (saturated at `u64::MAX`).
        bytes: u64,
    },
    /// The OS refused to start a task's thread (`again` to `expect-fail`).
    #[error("again: cannot start thread `{name}`: {source}; retry with fewer threads")]
    Spawn {
        /// The task.
        name: String,
        /// Why.
        source: io::Error,
    },
    /// A task's thread panicked; the panic message went to stderr.
    #[error("task `{0}` died")]
    TaskDied(String),
    /// Printing a `read` failed.
    #[error("cannot print: {0}")]
    Output(#[from] io::Error),
    /// A keyed file lacks the key an expectation names (`not-found` to
    /// `expect-fail`, as a file that does not exist).
    #[error("not-found: {at} has no key `{key}`; `read` the file to see its keys")]
    NoKey {
        /// The file.
        at: String,
        /// The key.
        key: String,
    },
    /// A file an expectation reads does not hold a single number or `max`
    /// (`invalid` to `expect-fail`).
    #[error("invalid: {at} is not a number or `max`: {content:?}; name a key of a keyed file (FILE:KEY)")]
    NotANumber {
        /// The file (and key).
        at: String,
        /// What it holds.
        content: String,
    },
    /// `free SET COUNT` with fewer than COUNT live members (`invalid` to
    /// `expect-fail`, DESIGN.md §5); nothing is freed.
    #[error("invalid: `{set}` has too few live members (got {live}, want >= {count})")]
    TooFewLive {
        /// The set.
        set: String,
        /// Its live members.
        live: usize,
        /// The count asked for.
        count: u64,
    },
    /// An `expect` or `expect-live` that does not hold.
    #[error("{subject} (got {got}, want {op} {want})")]
    Mismatch {
        /// What was measured.
        subject: String,
        /// Its value.
        got: Amount,
        /// The comparison.
        op: Op,
        /// The value compared with, and tolerance or source where needed.
        want: Want,
    },
    /// `expect-fail` around a command that succeeded.
    #[error("succeeded but must fail (got success, want {0})")]
    Succeeded(ErrorName),
    /// `expect-fail` around a command that failed with another kind.
    #[error("wrong error: {error} (got {got}, want {want})")]
    WrongError {
        /// The failure.
        error: Box<RunError>,
        /// Its kind.
        got: ErrorName,
        /// The kind required.
        want: ErrorName,
    },
    /// `expect-fail` around a command whose failure has no kind: an
    /// expectation that does not hold (write the opposite comparison
    /// instead), or a task that died.
    #[error("{error} (got a failure of no kind, want {want})")]
    Kindless {
        /// The failure.
        error: Box<RunError>,
        /// The kind required.
        want: ErrorName,
    },
}

impl RunError {
    /// The error kind `expect-fail` matches: the engine's, `not-found` for
    /// a task, set, cache or key that no earlier command made, or a task a
    /// kill ended (§5), `invalid` for what §5 and §4 call so (too few live
    /// members, a size that overflows, a file that holds no single number,
    /// work over the caps), `again` when the OS refuses a thread or the
    /// task is frozen. `None` for what is not an error of a command: an
    /// expectation that does not hold, a task that died (a bug: its panic
    /// is on stderr), output that cannot be written.
    pub fn kind(&self) -> Option<ErrorName> {
        match self {
            RunError::Engine(error) => Some(error.kind()),
            RunError::NoTask(_)
            | RunError::Killed(_)
            | RunError::NoSet(_)
            | RunError::NoCache(_)
            | RunError::NoKey { .. } => Some(ErrorName::NotFound),
            RunError::Overflow(_)
            | RunError::TooMuch { .. }
            | RunError::NotANumber { .. }
            | RunError::TooFewLive { .. } => Some(ErrorName::Invalid),
            RunError::Spawn { .. } | RunError::Frozen { .. } => Some(ErrorName::Again),
            RunError::TaskDied(_)
            | RunError::Output(_)
            | RunError::Mismatch { .. }
            | RunError::Succeeded(_)
            | RunError::WrongError { .. }
            | RunError::Kindless { .. } => None,
        }
    }
}

/// A value read from an interface file: a number, or `max`, which is greater
/// than every number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Amount {
    /// Bytes, or a count for event and stat files that count things.
    Number(u64),
    /// No limit.
    Max,
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Number(n) => write!(f, "{n}"),
            Amount::Max => f.write_str("max"),
        }
    }
}

/// The wanted side of a comparison, as printed in a [`RunError::Mismatch`].
#[derive(Debug)]
pub struct Want {
    /// The resolved value.
    pub value: Amount,
    /// The tolerance in percent of `~`.
    pub tolerance: Option<u64>,
    /// The file the value was read from, for `(PATH FILE[:KEY])`.
    pub source: Option<Box<FileRef>>,
}

impl fmt::Display for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.value)?;
        if let Some(tolerance) = self.tolerance {
            write!(f, " {tolerance}")?;
        }
        if let Some(source) = &self.source {
            write!(f, " from ({source})")?;
        }
        Ok(())
    }
}

/// Whether `got OP want` holds; `tolerance` is the percentage of `~`.
///
/// `~` is the kernel selftests' `values_close`: `|a - b| <= (a + b) / 100 *
/// TOL` in integer arithmetic, computed in `u128` so that no sum overflows.
/// `max` is close only to `max`.
pub fn holds(got: Amount, op: Op, want: Amount, tolerance: u64) -> bool {
    match op {
        Op::Eq => got == want,
        Op::Ne => got != want,
        Op::Lt => got < want,
        Op::Le => got <= want,
        Op::Gt => got > want,
        Op::Ge => got >= want,
        Op::Close => match (got, want) {
            (Amount::Number(a), Amount::Number(b)) => {
                let (a, b) = (u128::from(a), u128::from(b));
                a.abs_diff(b) <= (a + b) / 100 * u128::from(tolerance)
            }
            (got, want) => got == want,
        },
    }
}

/// Runs `script` in a fresh [`Hierarchy`], printing what `read` reads to
/// `out`. Stops at the first failure. All task threads are ended, all SET
/// members freed and the default group reset before this returns, whatever
/// the outcome. The calling thread is detached to the root first.
pub fn run(script: &Script, out: &mut impl Write) -> Result<(), Failure> {
    let lock = script.statements.iter().any(|s| uses_default(&s.command));
    let mut replay = Replay::new(out, lock);
    for statement in &script.statements {
        replay
            .execute(&statement.command)
            .and_then(|()| replay.reap_killed())
            .map_err(|error| failure(statement, error))?;
    }
    Ok(())
}

/// Held by every run that sets the process-wide default group or has
/// threads that follow it; see the module docs.
static DEFAULT_LOCK: Mutex<()> = Mutex::new(());

/// Whether `command` sets the default group (`default`) or starts a thread
/// that follows it (`thread`; what such a thread spawns needs a `thread`
/// first).
fn uses_default(command: &Command) -> bool {
    match command {
        Command::Default { .. } | Command::Thread { .. } => true,
        Command::ExpectFail { command, .. } => uses_default(command),
        _ => false,
    }
}

fn failure(statement: &Statement, error: RunError) -> Failure {
    Failure {
        file: statement.file.clone(),
        line: statement.line,
        text: statement.text.clone(),
        error: Box::new(error),
    }
}

/// Work for a task thread.
type Job = Box<dyn FnOnce() + Send>;

/// A running task: a named thread serving [`Job`]s until its channel closes.
struct Task {
    jobs: mpsc::Sender<Job>,
    thread: JoinHandle<()>,
    /// Unique in the run, unlike the name (a name is free again once its
    /// task ends): the members the task made carry it.
    id: u64,
    /// Placed by `task NAME PATH killable` and not moved since: a killable
    /// unit (S14), asked after every command whether a kill reached it.
    killable: bool,
}

thread_local! {
    /// On a killable task's thread: the guard that keeps it a killable unit
    /// in its group (S14).
    static KILLABLE: RefCell<Option<KillableGuard>> = const { RefCell::new(None) };
}

/// The body of a task thread: runs jobs in order; when the channel closes it
/// ends a killable scope (which returns it to the root), leaves its group
/// and ends.
fn serve(queue: mpsc::Receiver<Job>) {
    for job in queue {
        job();
    }
    drop(KILLABLE.with(|k| k.borrow_mut().take()));
    memcg::detach();
}

/// On a task thread: attach it to `group`, as a killable unit when
/// `killable` (S14). A killable scope it was in ends first; the thread
/// enters a new one from the root, so that ending it (a move, the end of
/// the thread) never puts the thread back into a group it left.
fn place(group: &Group, killable: bool) -> memcg::Result<()> {
    drop(KILLABLE.with(|k| k.borrow_mut().take()));
    if !killable {
        return group.attach();
    }
    memcg::detach();
    let guard = group.enter_killable()?;
    KILLABLE.with(|k| *k.borrow_mut() = Some(guard));
    Ok(())
}

/// Whether `group` is frozen: `cgroup.freeze` 1 on it or an ancestor, as
/// its `cgroup.events` says (S15). The root has no such file and is never
/// frozen.
fn is_frozen(group: &Group) -> bool {
    group
        .read("cgroup.events")
        .is_ok_and(|events| events.lines().any(|line| line == "frozen 1"))
}

/// On a task thread, after a command: the memory.high safe point
/// ([`memcg::throttle_point`]), unless the thread's group is frozen, where
/// it would wait for a thaw that only the script, waiting for this command,
/// can write. (Nothing freezes meanwhile: only the script's thread does.)
fn safe_point(hierarchy: &Hierarchy) {
    if !is_frozen(&hierarchy.current_group()) {
        memcg::throttle_point();
    }
}

/// On a task thread, at the runner's safe point after each command: whether
/// a kill reached this thread's killable unit (S14), by
/// [`memcg::check_killed`]. That waits while the thread's group is frozen
/// unless the unit was killed (a kill overrides a freeze), so a frozen
/// thread calls it only when its guard says killed
/// ([`KillableGuard::is_killed`](memcg::KillableGuard::is_killed), which
/// does not wait).
fn killed_here(hierarchy: &Hierarchy) -> bool {
    KILLABLE.with(|k| {
        let k = k.borrow();
        let Some(guard) = k.as_ref() else {
            return false;
        };
        if is_frozen(&hierarchy.current_group()) && !guard.is_killed() {
            return false;
        }
        memcg::check_killed().is_err()
    })
}

impl Task {
    /// Starts thread `name` with `std::thread`: never attached, it follows
    /// the default group until a job attaches it.
    fn spawn(name: &str, id: u64) -> Result<Task, RunError> {
        Task::start(id, |body| {
            thread::Builder::new()
                .name(name.to_string())
                .spawn(body)
                .map_err(|source| RunError::Spawn {
                    name: name.to_string(),
                    source,
                })
        })
    }

    /// `spawn NAME by TASK`: this task's thread (`self`, named `parent`)
    /// starts thread `name` through memcg's spawn, so it starts where this
    /// one is (S12). The new task is a plain one, whatever this one is.
    fn spawn_child(
        &self,
        parent: &str,
        name: &str,
        id: u64,
        hierarchy: &Hierarchy,
    ) -> Result<Task, RunError> {
        let name = name.to_string();
        Task::start(id, |body| {
            let started = self.command(parent, hierarchy, move || {
                memcg::Builder::new().name(name).spawn(body)
            })?;
            Ok(started?)
        })
    }

    /// Starts a task thread with `launch`, which runs the body it is given
    /// on a new thread.
    fn start(
        id: u64,
        launch: impl FnOnce(Job) -> Result<JoinHandle<()>, RunError>,
    ) -> Result<Task, RunError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = launch(Box::new(move || serve(queue)))?;
        Ok(Task {
            jobs,
            thread,
            id,
            killable: false,
        })
    }

    /// Runs a script command's `work` on the task's thread, then the
    /// thread's safe point ([`safe_point`]), and waits for both: the next
    /// command never races a throttled thread.
    fn command<R: Send + 'static>(
        &self,
        name: &str,
        hierarchy: &Hierarchy,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, RunError> {
        let hierarchy = hierarchy.clone();
        self.run(name, move || {
            let result = work();
            safe_point(&hierarchy);
            result
        })
    }

    /// Runs `work` on the task's thread and waits for its result.
    fn run<R: Send + 'static>(
        &self,
        name: &str,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, RunError> {
        let (reply, result) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            // The script thread waits on `result`; it is gone only if the
            // script itself is unwinding, and then nobody wants the value.
            let _ = reply.send(work());
        });
        let died = || RunError::TaskDied(name.to_string());
        self.jobs.send(job).map_err(|_| died())?;
        result.recv().map_err(|_| died())
    }

    /// Closes the channel and waits for the thread to leave its group and end.
    fn end(self, name: &str) -> Result<(), RunError> {
        drop(self.jobs);
        self.thread
            .join()
            .map_err(|_| RunError::TaskDied(name.to_string()))
    }
}

/// A SET member and the task that made it ([`Task::id`]): a killed task
/// frees its members (S14).
struct Owned {
    maker: u64,
    member: Member,
}

/// Something a SET owns; dropping it frees it on the dropping thread.
enum Member {
    Slab(SlabObject),
    Kmem(#[allow(dead_code, reason = "owned only to be freed when dropped")] KmemPages),
    Page(UserPage),
}

impl Member {
    /// Whether the member still holds memory: reclaim may have dropped a file
    /// page or an object of a reclaimable cache.
    fn is_live(&self) -> bool {
        match self {
            Member::Slab(object) => object.is_live(),
            Member::Kmem(_) => true,
            Member::Page(page) => page.is_live(),
        }
    }
}

/// Numbers the runs of this process, to give each its own cache namespace.
static RUNS: AtomicU64 = AtomicU64::new(0);

/// A cache as the script knows it: the library's cache, and the name the
/// script gave it.
#[derive(Clone)]
struct ScriptCache {
    cache: SlabCache,
    name: Arc<str>,
    /// The object size the script asked for.
    size: u64,
}

impl ScriptCache {
    fn unqualify(&self, error: memcg::Error) -> memcg::Error {
        unqualify(error, self.cache.name(), &self.name)
    }
}

/// `error` with the library's run-qualified cache name replaced by the
/// script's name, so that messages speak the script's language.
fn unqualify(error: memcg::Error, qualified: &str, name: &str) -> memcg::Error {
    let plain = |text: String| text.replace(qualified, name);
    match error {
        memcg::Error::Invalid(text) => memcg::Error::Invalid(plain(text)),
        memcg::Error::Exists(text) => memcg::Error::Exists(plain(text)),
        memcg::Error::NotFound(text) => memcg::Error::NotFound(plain(text)),
        other => other,
    }
}

/// The hierarchy-wide diagnostics a script reads as files of the root.
const ENGINE_FILES: [&str; 3] = [
    "memcg.live_caches",
    "memcg.live_contexts",
    "memcg.last_removal_slabs",
];

/// The state of one script run.
struct Replay<'a, W: Write> {
    hierarchy: Hierarchy,
    /// This run's number, which qualifies its cache names in the library.
    run: u64,
    tasks: BTreeMap<String, Task>,
    /// The next [`Task::id`].
    next_task: u64,
    /// Names of tasks a kill ended and no command started again, for the
    /// message of their `not-found`.
    killed: HashSet<String>,
    caches: HashMap<String, ScriptCache>,
    sets: HashMap<String, VecDeque<Owned>>,
    out: &'a mut W,
    /// [`DEFAULT_LOCK`], for a run that uses the default group. Declared
    /// last, so it is released after everything else is dropped.
    default_lock: Option<MutexGuard<'static, ()>>,
}

impl<'a, W: Write> Replay<'a, W> {
    /// A run with a fresh hierarchy; `uses_default` takes [`DEFAULT_LOCK`]
    /// (waiting for any other run that holds it).
    fn new(out: &'a mut W, uses_default: bool) -> Self {
        // A failed run (a panic in a task) does not make the lock useless:
        // every holder resets the default when dropped, even then.
        let default_lock =
            uses_default.then(|| DEFAULT_LOCK.lock().unwrap_or_else(|e| e.into_inner()));
        // §5: the script's own thread is in the root group, and charges
        // nothing even when the script sets a default group.
        memcg::detach();
        Replay {
            hierarchy: Hierarchy::new(),
            run: RUNS.fetch_add(1, Ordering::Relaxed),
            tasks: BTreeMap::new(),
            next_task: 0,
            killed: HashSet::new(),
            caches: HashMap::new(),
            sets: HashMap::new(),
            out,
            default_lock,
        }
    }

    fn execute(&mut self, command: &Command) -> Result<(), RunError> {
        match command {
            Command::Mkdir { path } => {
                self.hierarchy.create(path)?;
            }
            Command::Rmdir { path } => self.hierarchy.remove(path)?,
            Command::Write { path, file, value } => {
                if ENGINE_FILES.contains(&file.as_str()) {
                    self.hierarchy.get(path)?;
                    return Err(memcg::Error::Invalid(format!("{file} is read-only")).into());
                }
                self.hierarchy.write(path, file, value)?;
            }
            Command::Read { path, file } => {
                self.quiesce()?;
                let content = self.read_file(path, file)?;
                self.out.write_all(content.as_bytes())?;
                self.out.flush()?;
            }
            Command::Task {
                name,
                path,
                killable,
            } => self.task(name, path, *killable)?,
            Command::Thread { name } => {
                self.name_is_free(name)?;
                let task = Task::spawn(name, self.task_id())?;
                self.add_task(name, task);
            }
            Command::Spawn { name, by } => {
                self.task_ref(by)?;
                self.name_is_free(name)?;
                let id = self.task_id();
                let task = self
                    .thawed(by)?
                    .spawn_child(by, name, id, &self.hierarchy)?;
                self.add_task(name, task);
            }
            Command::Default { path } => {
                let group = self.hierarchy.get(path)?;
                self.hierarchy.set_default_group(Some(&group))?;
            }
            Command::Exit { name } => {
                self.thawed(name)?;
                let task = self.tasks.remove(name).expect("thawed() found it");
                task.end(name)?;
            }
            Command::Cache {
                name,
                size,
                reclaimable,
                isolated,
            } => self.cache(name, *size, *reclaimable, *isolated)?,
            Command::Alloc {
                task,
                cache,
                count,
                set,
            } => {
                self.task_ref(task)?;
                let cache = self
                    .caches
                    .get(cache)
                    .cloned()
                    .ok_or_else(|| RunError::NoCache(cache.clone()))?;
                let bytes = count.saturating_mul(cache.size);
                self.allocate("alloc", task, set, *count, bytes, move || {
                    cache
                        .cache
                        .alloc()
                        .map(Member::Slab)
                        .map_err(|error| cache.unqualify(error))
                })?;
            }
            Command::Kmem {
                task,
                size,
                count,
                set,
            } => {
                // A size beyond the address space cannot be allocated anyway;
                // saturating lets the engine say so with its own error.
                let each = usize::try_from(*size).unwrap_or(usize::MAX);
                let bytes = count.saturating_mul(pages_of(*size).saturating_mul(PAGE_SIZE));
                self.allocate("kmem", task, set, *count, bytes, move || {
                    KmemPages::alloc(each).map(Member::Kmem)
                })?;
            }
            Command::Anon { task, size, set } => {
                let pages = pages_of(*size);
                let bytes = pages.saturating_mul(PAGE_SIZE);
                self.allocate("anon", task, set, pages, bytes, || {
                    UserPage::charge(PageKind::Anon).map(Member::Page)
                })?;
            }
            Command::File { task, size, set } => {
                let pages = pages_of(*size);
                let bytes = pages.saturating_mul(PAGE_SIZE);
                self.allocate("file", task, set, pages, bytes, || {
                    UserPage::charge(PageKind::File).map(Member::Page)
                })?;
            }
            Command::Free { set, count, by } => self.free(set, *count, by.as_deref())?,
            Command::Expect {
                actual,
                op,
                expected,
                tolerance,
            } => self.expect(actual, *op, expected, *tolerance)?,
            Command::ExpectLive {
                set,
                op,
                count,
                tolerance,
            } => {
                self.quiesce()?;
                let live = self.live(set)?;
                let got = Amount::Number(live as u64);
                let want = Amount::Number(*count);
                if !holds(got, *op, want, tolerance.unwrap_or(0)) {
                    return Err(RunError::Mismatch {
                        subject: format!("live members of `{set}`"),
                        got,
                        op: *op,
                        want: Want {
                            value: want,
                            tolerance: *tolerance,
                            source: None,
                        },
                    });
                }
            }
            Command::ExpectFail { error, command } => {
                let want = *error;
                return match self.execute(command) {
                    Ok(()) => Err(RunError::Succeeded(want)),
                    Err(error) => match error.kind() {
                        Some(got) if got == want => Ok(()),
                        Some(got) => Err(RunError::WrongError {
                            error: Box::new(error),
                            got,
                            want,
                        }),
                        None => Err(RunError::Kindless {
                            error: Box::new(error),
                            want,
                        }),
                    },
                };
            }
            Command::Overflow { token } => return Err(RunError::Overflow(token.clone())),
        }
        Ok(())
    }

    /// `task NAME PATH [killable]`: moves a running task (not a frozen
    /// one), or starts one that attaches itself; killable or not as this
    /// line says. A new thread that cannot attach is ended again.
    fn task(&mut self, name: &str, path: &str, killable: bool) -> Result<(), RunError> {
        let group = self.hierarchy.get(path)?;
        if self.tasks.contains_key(name) {
            let placed = self
                .thawed(name)?
                .command(name, &self.hierarchy, move || place(&group, killable))?;
            let task = self.tasks.get_mut(name).expect("thawed() found it");
            // A failed move ended the killable scope all the same.
            task.killable = killable && placed.is_ok();
            return Ok(placed?);
        }
        let mut task = Task::spawn(name, self.task_id())?;
        match task.command(name, &self.hierarchy, move || place(&group, killable)) {
            Ok(Ok(())) => {
                task.killable = killable;
                self.add_task(name, task);
                Ok(())
            }
            Ok(Err(error)) => {
                task.end(name)?;
                Err(error.into())
            }
            Err(error) => {
                // The thread died; joining only collects its panic.
                let _ = task.end(name);
                Err(error)
            }
        }
    }

    /// A new [`Task::id`].
    fn task_id(&mut self) -> u64 {
        self.next_task += 1;
        self.next_task
    }

    /// Lists a task just started; its name no longer speaks of a kill.
    fn add_task(&mut self, name: &str, task: Task) {
        self.killed.remove(name);
        self.tasks.insert(name.to_string(), task);
    }

    /// `not-found` for a task name that is not running.
    fn no_task(&self, name: &str) -> RunError {
        if self.killed.contains(name) {
            RunError::Killed(name.to_string())
        } else {
            RunError::NoTask(name.to_string())
        }
    }

    /// Task `name`, for a command that runs on its thread: `again` if its
    /// group is frozen (S15), found out before any command reaches the
    /// thread, so that the thread never waits for a thaw.
    fn thawed(&self, name: &str) -> Result<&Task, RunError> {
        let task = self.task_ref(name)?;
        let hierarchy = self.hierarchy.clone();
        let group = task.run(name, move || hierarchy.current_group())?;
        if is_frozen(&group) {
            return Err(RunError::Frozen {
                task: name.to_string(),
                group: group.path().to_string(),
            });
        }
        Ok(task)
    }

    /// §5, S14: after every command, each killable task's thread looks at
    /// its safe point whether a kill reached it ([`killed_here`]). A killed
    /// task frees every member it made that is still live, on its own
    /// thread (so inside its group, as a killed process's memory is freed),
    /// and ends; the runner waits for both, so the next command sees it
    /// gone.
    fn reap_killed(&mut self) -> Result<(), RunError> {
        let killable: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, task)| task.killable)
            .map(|(name, _)| name.clone())
            .collect();
        for name in killable {
            let hierarchy = self.hierarchy.clone();
            if !self.tasks[&name].run(&name, move || killed_here(&hierarchy))? {
                continue;
            }
            let task = self.tasks.remove(&name).expect("listed above");
            let made = self.take_members_of(task.id);
            task.run(&name, move || drop(made))?;
            task.end(&name)?;
            self.killed.insert(name);
        }
        Ok(())
    }

    /// Takes every member task `maker` made out of the sets, live or not
    /// (reclaim may have dropped some); the others keep their order.
    fn take_members_of(&mut self, maker: u64) -> Vec<Owned> {
        let mut made = Vec::new();
        for members in self.sets.values_mut() {
            let (mine, others): (VecDeque<Owned>, VecDeque<Owned>) = std::mem::take(members)
                .into_iter()
                .partition(|owned| owned.maker == maker);
            made.extend(mine);
            *members = others;
        }
        made
    }

    /// `thread` and `spawn`: a task name must not be running already.
    fn name_is_free(&self, name: &str) -> Result<(), RunError> {
        if self.tasks.contains_key(name) {
            return Err(memcg::Error::Exists(format!("task {name}")).into());
        }
        Ok(())
    }

    /// §5: before each `read`, `expect` and `expect-live`, every task's
    /// stocks are drained (on its own thread: object stocks are thread-local)
    /// and deferred destruction has run, so scripted numbers are exact. A
    /// task following the default group moves to the current one first, so
    /// it no longer holds a group that stopped being the default.
    fn quiesce(&mut self) -> Result<(), RunError> {
        for (name, task) in &self.tasks {
            let hierarchy = self.hierarchy.clone();
            task.run(name, move || {
                follow_default(&hierarchy);
                memcg::drain_stocks();
            })?;
        }
        self.hierarchy.quiesce();
        Ok(())
    }

    /// `cache NAME SIZE [reclaimable] [isolated]`: makes this run's cache
    /// NAME, or finds it again when the same size and kind were asked for
    /// before.
    fn cache(
        &mut self,
        name: &str,
        size: u64,
        reclaimable: bool,
        isolated: bool,
    ) -> Result<(), RunError> {
        if size == 0 {
            return Err(memcg::Error::Invalid(format!(
                "cache {name}: objects need at least 1 byte"
            ))
            .into());
        }
        let qualified = format!("{name}@{}", self.run);
        let script_size = size;
        // A size beyond the address space is too large for a slab anyway;
        // saturating lets the engine say so with its own error.
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let name: Arc<str> = Arc::from(name);
        let make = if isolated {
            SlabCache::isolated
        } else {
            SlabCache::new
        };
        let cache = make(&qualified, size, reclaimable)
            .map_err(|error| unqualify(error, &qualified, &name))?;
        self.caches.insert(
            name.to_string(),
            ScriptCache {
                cache,
                name,
                size: script_size,
            },
        );
        Ok(())
    }

    /// Makes `count` members on `task`'s thread and appends them to `set`.
    /// Members made before a failure stay in the set. `command` asking for
    /// more than [`MAX_MEMBERS`] members or [`MAX_BYTES`] bytes in all is
    /// `invalid`, with nothing made.
    fn allocate(
        &mut self,
        command: &'static str,
        task: &str,
        set: &str,
        count: u64,
        bytes: u64,
        make: impl Fn() -> memcg::Result<Member> + Send + 'static,
    ) -> Result<(), RunError> {
        self.task_ref(task)?;
        if count > MAX_MEMBERS || bytes > MAX_BYTES {
            return Err(RunError::TooMuch {
                command,
                members: count,
                bytes,
            });
        }
        let thread = self.thawed(task)?;
        let maker = thread.id;
        let hierarchy = self.hierarchy.clone();
        let (made, error) = thread.command(task, &self.hierarchy, move || {
            follow_default(&hierarchy);
            let mut made = Vec::new();
            for _ in 0..count {
                match make() {
                    Ok(member) => made.push(member),
                    Err(error) => return (made, Some(error)),
                }
            }
            (made, None)
        })?;
        self.sets
            .entry(set.to_string())
            .or_default()
            .extend(made.into_iter().map(|member| Owned { maker, member }));
        match error {
            None => Ok(()),
            Some(error) => Err(error.into()),
        }
    }

    /// Frees the oldest `count` (default: all) live members of `set` on
    /// `by`'s thread (default: this one). Nothing is freed if there are too
    /// few, or if `by` is frozen.
    fn free(&mut self, set: &str, count: Option<u64>, by: Option<&str>) -> Result<(), RunError> {
        if let Some(task) = by {
            self.task_ref(task)?;
        }
        let live = self.live(set)?;
        let take = match count {
            None => live,
            Some(count) => match usize::try_from(count) {
                Ok(take) if take <= live => take,
                _ => {
                    return Err(RunError::TooFewLive {
                        set: set.to_string(),
                        live,
                        count,
                    });
                }
            },
        };
        if let Some(task) = by {
            self.thawed(task)?;
        }
        let batch: Vec<Owned> = self.set(set)?.drain(..take).collect();
        match by {
            None => drop(batch),
            Some(task) => {
                let thread = self.task_ref(task)?;
                thread.command(task, &self.hierarchy, move || drop(batch))?;
            }
        }
        Ok(())
    }

    /// The live members of `set`, forgetting those reclaim dropped.
    fn set(&mut self, set: &str) -> Result<&mut VecDeque<Owned>, RunError> {
        let members = self
            .sets
            .get_mut(set)
            .ok_or_else(|| RunError::NoSet(set.to_string()))?;
        members.retain(|owned| owned.member.is_live());
        Ok(members)
    }

    fn live(&mut self, set: &str) -> Result<usize, RunError> {
        Ok(self.set(set)?.len())
    }

    fn task_ref(&self, name: &str) -> Result<&Task, RunError> {
        self.tasks.get(name).ok_or_else(|| self.no_task(name))
    }

    fn expect(
        &mut self,
        actual: &FileRef,
        op: Op,
        expected: &Value,
        tolerance: Option<u64>,
    ) -> Result<(), RunError> {
        self.quiesce()?;
        let got = self.read_amount(actual)?;
        let (value, source) = match expected {
            Value::Size(n) => (Amount::Number(*n), None),
            Value::Max => (Amount::Max, None),
            Value::Ref(source) => (self.read_amount(source)?, Some(Box::new(source.clone()))),
        };
        if holds(got, op, value, tolerance.unwrap_or(0)) {
            return Ok(());
        }
        Err(RunError::Mismatch {
            subject: actual.to_string(),
            got,
            op,
            want: Want {
                value,
                tolerance,
                source,
            },
        })
    }

    /// Reads an interface file, or one of the `memcg.*` diagnostics of the
    /// root.
    fn read_file(&self, path: &str, file: &str) -> Result<String, RunError> {
        if !ENGINE_FILES.contains(&file) {
            return Ok(self.hierarchy.read(path, file)?);
        }
        if self.hierarchy.get(path)?.path() != "/" {
            return Err(memcg::Error::Invalid(format!(
                "{file} counts the whole hierarchy: read it on /, not {path}"
            ))
            .into());
        }
        let h = &self.hierarchy;
        let value = match file {
            "memcg.live_caches" => h.live_caches(),
            "memcg.live_contexts" => h.live_contexts(),
            "memcg.last_removal_slabs" => h.last_removal_slabs(),
            _ => unreachable!("ENGINE_FILES lists every name"),
        };
        Ok(format!("{value}\n"))
    }

    /// Reads one number (or `max`) from a file, or from a key of a keyed file.
    fn read_amount(&self, at: &FileRef) -> Result<Amount, RunError> {
        let content = self.read_file(&at.path, &at.file)?;
        let value = match &at.key {
            None => content.trim(),
            Some(key) => content
                .lines()
                .find_map(|line| {
                    let (k, v) = line.split_once(' ')?;
                    (k == key).then(|| v.trim())
                })
                .ok_or_else(|| RunError::NoKey {
                    at: format!("{} {}", at.path, at.file),
                    key: key.clone(),
                })?,
        };
        match value {
            "max" => Ok(Amount::Max),
            number => number
                .parse()
                .map(Amount::Number)
                .map_err(|_| RunError::NotANumber {
                    at: at.to_string(),
                    content: content.clone(),
                }),
        }
    }
}

/// Pages of `size` bytes, rounded up.
fn pages_of(size: u64) -> u64 {
    size.div_ceil(PAGE_SIZE)
}

/// Moves the calling thread to the current default group if it follows the
/// default and the default changed: a call into memcg does that at once,
/// while a slab allocation's fast path would not look.
fn follow_default(hierarchy: &Hierarchy) {
    drop(hierarchy.current_group());
}

impl<W: Write> Drop for Replay<'_, W> {
    /// Ends every task thread (each leaves its group first), then frees what
    /// the sets still hold, on this thread, and makes the root the default
    /// group again if this run may have changed it.
    fn drop(&mut self) {
        for (name, task) in std::mem::take(&mut self.tasks) {
            // A task that died already reported its panic on stderr.
            let _ = task.end(&name);
        }
        self.sets.clear();
        if self.default_lock.is_some() {
            // Only fails when another hierarchy's group is the default,
            // which this run did not set and must not clear.
            let _ = self.hierarchy.set_default_group(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(source: &str) -> Result<(), Failure> {
        let script = crate::script::parse("t.mcg", source).expect("the script parses");
        run(&script, &mut io::sink())
    }

    /// A script whose numbers hold only if no other run's default group
    /// leaks into it, nor its own into another run.
    const OWN_DEFAULT: &str = "\
mkdir /d
thread w
kmem w 4K 1 as k
expect / memory.current == 0
default /d
spawn w2 by w
kmem w 4K 2 as k
kmem w2 4K 1 as k
expect /d memory.current == 12K
default /
kmem w 4K 1 as k
expect /d memory.current == 12K
default /d
";

    /// S12 with runs in parallel threads of one process, as tests run: runs
    /// that use the process-wide default group take turns, so each sees
    /// only its own.
    #[test]
    fn runs_on_parallel_threads_each_see_only_their_own_default() {
        let runs: Vec<_> = (0..4)
            .map(|_| {
                thread::spawn(|| {
                    for _ in 0..10 {
                        replay(OWN_DEFAULT)?;
                    }
                    Ok::<(), Failure>(())
                })
            })
            .collect();
        for run in runs {
            run.join().expect("a run does not panic").unwrap();
        }
    }

    /// A failed script resets the default group as well as a successful one.
    #[test]
    fn a_failed_run_resets_the_default_group() {
        let failed = replay("mkdir /d\ndefault /d\nexpect /d memory.current == 4K\n");
        assert!(failed.is_err());
        replay(OWN_DEFAULT).unwrap();
    }

    const N: fn(u64) -> Amount = Amount::Number;

    #[test]
    fn max_is_greater_than_every_number() {
        assert!(holds(Amount::Max, Op::Gt, N(u64::MAX), 0));
        assert!(holds(N(u64::MAX), Op::Lt, Amount::Max, 0));
        assert!(holds(Amount::Max, Op::Eq, Amount::Max, 0));
        assert!(holds(Amount::Max, Op::Ne, N(0), 0));
    }

    #[test]
    fn exact_operators_compare_numbers() {
        let cases = [
            (Op::Eq, [false, true, false]),
            (Op::Ne, [true, false, true]),
            (Op::Lt, [true, false, false]),
            (Op::Le, [true, true, false]),
            (Op::Gt, [false, false, true]),
            (Op::Ge, [false, true, true]),
        ];
        for (op, expected) in cases {
            let got = [1, 2, 3].map(|a| holds(N(a), op, N(2), 0));
            assert_eq!(got, expected, "{op}");
        }
    }

    #[test]
    fn close_is_values_close_of_the_kernel_selftests() {
        // (100 + 105) / 100 * 5 = 10 >= 5
        assert!(holds(N(100), Op::Close, N(105), 5));
        // (100 + 112) / 100 * 5 = 10 < 12
        assert!(!holds(N(100), Op::Close, N(112), 5));
        // Integer division first: (50 + 52) / 100 * 1 = 1 < 2.
        assert!(!holds(N(50), Op::Close, N(52), 1));
        assert!(holds(N(30 << 20), Op::Close, N(31 << 20), 5));
        assert!(holds(N(0), Op::Close, N(0), 0));
        assert!(!holds(N(0), Op::Close, N(1), 100));
    }

    #[test]
    fn close_does_not_overflow() {
        assert!(holds(N(u64::MAX), Op::Close, N(u64::MAX - 1), 1));
        assert!(!holds(N(u64::MAX), Op::Close, N(0), 99));
    }

    #[test]
    fn max_is_close_only_to_max() {
        assert!(holds(Amount::Max, Op::Close, Amount::Max, 0));
        assert!(!holds(Amount::Max, Op::Close, N(u64::MAX), 100));
    }

    #[test]
    fn mismatch_prints_got_and_want() {
        let error = RunError::Mismatch {
            subject: "/a memory.current".into(),
            got: N(8192),
            op: Op::Close,
            want: Want {
                value: N(409600),
                tolerance: Some(5),
                source: None,
            },
        };
        assert_eq!(
            error.to_string(),
            "/a memory.current (got 8192, want ~ 409600 5)"
        );
    }
}
