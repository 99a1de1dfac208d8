//! `memcg replay` end to end, through the built binary (DESIGN.md §5).
//!
//! Every `examples/*.mcg` is a specification of the engine: each must replay
//! with exit 0. The other tests pin the command-line contract: exit 2 and
//! `FILE:LINE:` for a syntax error, exit 1 and `(got X, want OP Y)` for a
//! failed expectation, `-` for standard input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository's `examples/` directory.
fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Runs `memcg replay ARGS...` with `stdin` on standard input.
fn replay(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_memcg"))
        .arg("replay")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("memcg starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes())
        .expect("memcg reads its stdin");
    child.wait_with_output().expect("memcg ends")
}

/// Writes `source` to a file named `name` in this test binary's scratch
/// directory and returns its path.
fn script_file(name: &str, source: &str) -> String {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, source).expect("scratch directory is writable");
    path.to_str().expect("scratch path is UTF-8").to_string()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Examples whose expectations are S11's byte counts, which a `hardened`
/// build changes on purpose (every object also pays its vector entry):
/// such a build replays every other example.
const BYTE_EXACT: [&str; 2] = ["kill.mcg", "shared.mcg"];

/// Bytes a `hardened` build charges each shared-slab object beside its slot.
fn entry() -> usize {
    if memcg::slab::HARDENED {
        memcg::slab::VECTOR_ENTRY_BYTES
    } else {
        0
    }
}

#[test]
fn every_example_replays_successfully() {
    let mut examples: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("examples/ exists")
        .map(|entry| entry.expect("examples/ is readable").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "mcg"))
        .collect();
    examples.sort();
    for name in [
        "errors.mcg",
        "freeze.mcg",
        "kill.mcg",
        "limits.mcg",
        "nested.mcg",
        "oom-group-kill.mcg",
        "reclaimable.mcg",
        "seed.mcg",
        "slab.mcg",
        "threads.mcg",
        "user-pages.mcg",
    ] {
        assert!(
            examples.iter().any(|path| path.ends_with(name)),
            "examples/{name} is missing: found {examples:?}"
        );
    }
    let mut failures = Vec::new();
    for example in &examples {
        if memcg::slab::HARDENED && BYTE_EXACT.iter().any(|name| example.ends_with(name)) {
            continue;
        }
        let output = replay(&[example.to_str().expect("UTF-8 path")], "");
        if output.status.code() != Some(0) {
            failures.push(format!(
                "{}: {:?}\n{}",
                example.display(),
                output.status,
                stderr(&output)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_seed_example_replays() {
    let seed = examples_dir().join("seed.mcg");
    let output = replay(&[seed.to_str().expect("UTF-8 path")], "");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn a_syntax_error_exits_2_naming_file_and_line() {
    let file = script_file("syntax.mcg", "mkdir /a\n# comment\nkmem t 4K as k\n");
    let output = replay(&[&file], "");
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.starts_with(&format!("{file}:3: ")),
        "message names FILE:LINE: {message}"
    );
    assert!(message.contains("kmem TASK SIZE COUNT as SET"), "{message}");
}

#[test]
fn no_script_runs_if_any_does_not_parse() {
    let good = script_file("good.mcg", "read / cgroup.stat\n");
    let bad = script_file(
        "bad.mcg",
        "read / cgroup.stat\nexpect / memory.current ~ 0\n",
    );
    let output = replay(&[&good, &bad], "");
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stdout(&output), "", "nothing ran");
    assert!(stderr(&output).starts_with(&format!("{bad}:2: ")));
}

#[test]
fn a_failed_expectation_exits_1_with_got_and_want() {
    let file = script_file(
        "expect.mcg",
        "mkdir /a\n\nexpect /a memory.current   == 4K  # wrong\nmkdir /b\n",
    );
    let output = replay(&[&file], "");
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert_eq!(
        message.trim_end(),
        format!(
            "{file}:3: expect /a memory.current == 4K: /a memory.current (got 0, want == 4096)"
        )
    );
}

#[test]
fn a_failed_expectation_stops_the_script() {
    let output = replay(
        &["-"],
        "mkdir /a\nexpect /a memory.max != max\nread /a memory.max\n",
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stdout(&output),
        "",
        "the read after the failure did not run"
    );
    assert!(stderr(&output).contains("(got max, want != max)"));
}

#[test]
fn a_failed_command_exits_1_naming_the_command() {
    let output = replay(&["-"], "mkdir /a\nmkdir /a\n");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("<stdin>:2: mkdir /a: "),
        "{}",
        stderr(&output)
    );
}

#[test]
fn dash_reads_the_script_from_stdin() {
    let output = replay(
        &["-"],
        "mkdir /a\nwrite /a memory.max 8K\nread /a memory.max\nread /a memory.high\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "8192\nmax\n", "read prints verbatim");
}

#[test]
fn scripts_run_in_order_each_in_a_fresh_hierarchy() {
    let first = script_file("first.mcg", "mkdir /a\nread /a memory.max\n");
    let output = replay(&[&first, "-", &first], "mkdir /a\nread /a memory.current\n");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "max\n0\nmax\n");
}

#[test]
fn expect_fail_requires_exactly_that_error() {
    let passes = replay(&["-"], "mkdir /a\nexpect-fail exists mkdir /a\n");
    assert_eq!(passes.status.code(), Some(0), "{}", stderr(&passes));

    let wrong_kind = replay(&["-"], "mkdir /a\nexpect-fail busy mkdir /a\n");
    assert_eq!(wrong_kind.status.code(), Some(1));
    assert!(
        stderr(&wrong_kind).contains("(got exists, want busy)"),
        "{}",
        stderr(&wrong_kind)
    );

    let succeeded = replay(&["-"], "expect-fail exists mkdir /a\n");
    assert_eq!(succeeded.status.code(), Some(1));
    assert!(
        stderr(&succeeded).contains("(got success, want exists)"),
        "{}",
        stderr(&succeeded)
    );
}

#[test]
fn task_commands_run_on_the_named_thread() {
    // cgroup.procs lists the thread attached to the group, by its name.
    let output = replay(
        &["-"],
        "mkdir /a\ntask worker-1 /a\nread /a cgroup.procs\nexit worker-1\nread /a cgroup.procs\nrmdir /a\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("worker-1"), "{}", stdout(&output));
}

/// S12: a thread spawned by a task starts in the task's group and is listed
/// in its `cgroup.procs` by name; it stays there when the task moves.
#[test]
fn a_spawned_thread_starts_in_its_parents_group_listed_by_name() {
    let output = replay(
        &["-"],
        "mkdir /a\ntask p /a\nspawn child-1 by p\ntask p /\nread /a cgroup.procs\n\
         kmem child-1 4K 2 as k\nexpect /a memory.current == 8K\n\
         expect-fail busy rmdir /a\nexit child-1\nrmdir /a\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "child-1\n");
}

/// §5: a task name that no earlier command made is `not-found`, for
/// `spawn ... by` as for every command.
#[test]
fn spawn_by_an_unknown_task_is_not_found() {
    let output = replay(
        &["-"],
        "expect-fail not-found spawn x by nosuchtask\nthread t\nexit t\n\
         expect-fail not-found spawn x by t\nexpect-fail not-found kmem x 4K 1 as k\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let output = replay(&["-"], "spawn x by nosuchtask\n");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output).trim_end(),
        "<stdin>:1: spawn x by nosuchtask: not-found: no task named `nosuchtask`; \
         start it first with `task`, `thread` or `spawn`"
    );
}

/// `thread` and `spawn` start a thread: a name already running is `exists`
/// (`task` with that name moves the thread instead).
#[test]
fn thread_and_spawn_of_a_running_name_are_exists() {
    let output = replay(
        &["-"],
        "mkdir /a\nthread t\ntask u /a\nexpect-fail exists thread t\n\
         expect-fail exists thread u\nexpect-fail exists spawn t by u\n\
         expect-fail exists spawn u by u\ntask t /a\nexit t\nthread t\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let output = replay(&["-"], "thread t\nthread t\n");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output).trim_end(),
        "<stdin>:2: thread t: exists: task t exists already"
    );
}

/// §5: `rmdir` of the default group is `busy`, until `default /` resets it.
#[test]
fn the_default_group_cannot_be_removed() {
    let output = replay(
        &["-"],
        "mkdir /d\ndefault /d\nexpect-fail busy rmdir /d\ndefault /\nrmdir /d\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let output = replay(&["-"], "mkdir /d\ndefault /d\nrmdir /d\n");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("<stdin>:3: rmdir /d: busy: /d is the default group"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn default_of_a_missing_group_is_not_found() {
    let output = replay(
        &["-"],
        "expect-fail not-found default /nosuchgroup\nmkdir /d\nrmdir /d\n\
         expect-fail not-found default /d\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// S12: a thread never attached charges the default group; `default /`
/// makes it charge the root (nothing) again, and moves nothing charged.
#[test]
fn default_root_resets_what_unattached_threads_charge() {
    let output = replay(
        &["-"],
        "mkdir /d\nthread w\ndefault /d\nkmem w 4K 1 as k\n\
         expect /d memory.current == 4K\ndefault /\nkmem w 4K 2 as k\n\
         expect /d memory.current == 4K\nexpect / memory.current == 4K\n\
         rmdir /d\nfree k\nexpect / memory.current == 0\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// S12: a thread following the default charges a new default from the next
/// allocation command on, even a slab allocation whose fast path would not
/// look (65 objects of 64 bytes, in slabs of /d alone: 2 pages).
#[test]
fn an_allocation_follows_a_new_default_group_at_once() {
    let output = replay(
        &["-"],
        "mkdir /d\nthread w\ncache c 64\nalloc w c 10 as a\ndefault /d\n\
         alloc w c 65 as b\nexpect /d memory.current == 8K\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// S1 for a former default group: the threads that followed it let go of it
/// by the next quiesce, so once removed it is not left dying.
#[test]
fn a_former_default_group_is_freed_once_removed() {
    let output = replay(
        &["-"],
        "mkdir /d\nthread w\ndefault /d\nkmem w 4K 1 as k\nfree k\ndefault /\n\
         rmdir /d\nexpect / cgroup.stat:nr_dying_descendants == 0\n\
         expect / memcg.live_contexts == 0\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// The default group is process-wide, each script's hierarchy is its own:
/// a script's `default` ends with the script, so the next script of the
/// same run sees the root as the default (its threads charge nothing) and
/// may set its own.
#[test]
fn a_scripts_default_group_ends_with_the_script() {
    let sets = script_file(
        "default-sets.mcg",
        "mkdir /d\ndefault /d\nthread w\nkmem w 4K 1 as k\nexpect /d memory.current == 4K\n",
    );
    let follows = script_file(
        "default-follows.mcg",
        "mkdir /d\nthread w\nkmem w 4K 1 as k\nexpect / memory.current == 0\n\
         default /d\nkmem w 4K 1 as k\nexpect /d memory.current == 4K\n",
    );
    let output = replay(&[&sets, &follows, &sets, &follows], "");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// §5 `cache NAME SIZE`: a size no slab can hold is the engine's `invalid`.
#[test]
fn a_cache_of_size_0_or_too_large_is_invalid() {
    let output = replay(
        &["-"],
        "expect-fail invalid cache c 0\n\
         expect-fail invalid cache c 0 reclaimable\n\
         expect-fail invalid cache c 9K\n\
         cache c 8K\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let output = replay(&["-"], "cache dentry 0\n");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output).trim_end(),
        "<stdin>:1: cache dentry 0: invalid: cache dentry: objects need at least 1 byte"
    );
}

/// Root caches are process-wide in the library; each script run has its own
/// cache names all the same.
#[test]
fn two_scripts_of_one_run_may_define_a_cache_differently() {
    let small = script_file(
        "cache-small.mcg",
        "mkdir /a\ntask t /a\ncache c 64\nalloc t c 65 as s\n\
         expect /a memory.current == 8K\n",
    );
    let large = script_file(
        "cache-large.mcg",
        &format!(
            "mkdir /a\ntask t /a\ncache c 256 reclaimable\nalloc t c 65 as s\n\
             expect /a memory.current == 20K\nexpect /a memory.stat:slab_reclaimable == {}\n",
            65 * (256 + entry())
        ),
    );
    let output = replay(&[&small, &large, &small], "");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// Within one script a cache name means one cache; messages use the
/// script's name, not the library's run-qualified one.
#[test]
fn redefining_a_cache_differently_in_one_script_is_exists() {
    let output = replay(
        &["-"],
        "cache c 64\ncache c 64\nexpect-fail exists cache c 128\n\
         expect-fail exists cache c 64 reclaimable\ncache c 128\n",
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output).trim_end(),
        "<stdin>:5: cache c 128: exists: cache c (64 bytes) exists already"
    );
}

#[test]
fn alloc_from_an_unknown_cache_is_a_script_error() {
    let output = replay(&["-"], "mkdir /a\ntask t /a\nalloc t nope 1 as s\n");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output).trim_end(),
        "<stdin>:3: alloc t nope 1 as s: not-found: no cache named `nope`; \
         define it first with `cache nope SIZE`"
    );
    let output = replay(&["-"], "cache c 64\nexpect-fail limit alloc t c 1 as s\n");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no task named `t`")
            && stderr(&output).contains("(got not-found, want limit)"),
        "{}",
        stderr(&output)
    );
}

/// §5: members made before a failed allocation stay in the SET. (S11:
/// 8K holds 128 objects of 64 bytes, each charged its slot in slabs of /a
/// alone; 113 in a `hardened` build, where each pays its vector entry too.)
#[test]
fn a_failed_alloc_keeps_the_objects_made_so_far() {
    let shared = 8192 / (64 + entry());
    let output = replay(
        &["-"],
        &format!(
            "mkdir /a\nwrite /a memory.max 8K\ntask t /a\ncache c 64\n\
             expect-fail limit alloc t c 200 as s\nexpect-live s == {shared}\n\
             free s by t\nexpect-live s == 0\n\
             cache i 64 isolated\nexpect-fail limit alloc t i 200 as j\nexpect-live j == 128\n"
        ),
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn engine_diagnostics_are_read_only_files_of_the_root() {
    let output = replay(
        &["-"],
        "mkdir /a\nread / memcg.live_caches\nread / memcg.live_contexts\n\
         read / memcg.last_removal_slabs\nexpect / memcg.live_contexts == 1\n\
         expect-fail invalid read /a memcg.live_caches\n\
         expect-fail invalid write / memcg.live_caches 0\n\
         expect-fail not-found read /b memcg.live_caches\n\
         expect-fail not-found read / memcg.bogus\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "0\n1\n0\n");
}

#[test]
fn a_missing_script_file_exits_64() {
    let output = replay(&["/nonexistent/script.mcg"], "");
    assert_eq!(output.status.code(), Some(64), "EX_USAGE");
    assert!(stderr(&output).starts_with("/nonexistent/script.mcg: cannot read"));
}
