//! The command-line contract of `memcg replay`, through the built binary:
//! every script-level failure has one of the six error kinds of DESIGN.md
//! §5 (so `expect-fail KIND` can match it), SIZEs take suffixes in either
//! case (§4), the caps on one command, the exit statuses (0, 1, 2, 64) and
//! `--help`, which lists all of them.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use memcg_cli::replay::{MAX_BYTES, MAX_MEMBERS};
use memcg_cli::script::{ErrorName, Op, COMMANDS};
use memcg_cli::Exit;

/// Runs `memcg ARGS...` with `stdin` on standard input.
fn memcg(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_memcg"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("memcg starts");
    // memcg may exit before reading (a usage error): a broken pipe is fine.
    let _ = child.stdin.take().expect("stdin is piped").write_all(stdin);
    child.wait_with_output().expect("memcg ends")
}

/// `memcg replay -` with `script` on standard input.
fn replay(script: &str) -> Output {
    memcg(&["replay", "-"], script.as_bytes())
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A script that makes `/a` with a child `/a/b`, task `t` in `/a/b`, task
/// `u` in `/a`, cache `c`, set `k` with one kmem buffer, and `/d`, which
/// is the default group.
const SETUP: &str = "\
mkdir /a
mkdir /a/b
mkdir /d
task t /a/b
thread u
task u /a
cache c 64
kmem t 4K 1 as k
default /d
";

/// (kind, command): the command fails with that kind after [`SETUP`].
const CASES: &[(&str, &str)] = &[
    // A task, set or cache name no earlier command made (§5), in every
    // command that names one; a group, file or key that does not exist.
    ("not-found", "free nosuchset"),
    ("not-found", "free nosuchset 1"),
    ("not-found", "free nosuchset by t"),
    ("not-found", "free k by nosuchtask"),
    ("not-found", "expect-live nosuchset == 0"),
    ("not-found", "alloc nosuchtask c 1 as s"),
    ("not-found", "alloc t nosuchcache 1 as s"),
    ("not-found", "kmem nosuchtask 4K 1 as s"),
    ("not-found", "anon nosuchtask 4K as s"),
    ("not-found", "file nosuchtask 4K as s"),
    ("not-found", "exit nosuchtask"),
    ("not-found", "spawn x by nosuchtask"),
    ("not-found", "task x /nosuch"),
    ("not-found", "mkdir /nosuch/child"),
    ("not-found", "rmdir /nosuch"),
    ("not-found", "default /nosuch"),
    ("not-found", "read /nosuch memory.current"),
    ("not-found", "read /a memory.bogus"),
    ("not-found", "write /nosuch memory.max 1M"),
    ("not-found", "expect /nosuch memory.current == 0"),
    (
        "not-found",
        "expect /a memory.current == (/nosuch memory.current)",
    ),
    ("not-found", "expect /a memory.stat:nosuchkey == 0"),
    // Writing a read-only file, a malformed value, a bad name, limits on
    // the root, a size that overflows, rmdir /, too few live members, no
    // single number where one is compared, work over the caps.
    ("invalid", "write /a memory.current 0"),
    ("invalid", "write /a memory.max lots"),
    ("invalid", "write /a memory.max 99999999999999999999"),
    ("invalid", "write /a memory.max 17179869184G"),
    ("invalid", "write / memory.max 1M"),
    ("invalid", "write / memcg.live_caches 0"),
    ("invalid", "read /a memcg.live_caches"),
    ("invalid", "mkdir /a/b@c"),
    ("invalid", "rmdir /"),
    ("invalid", "free k 2"),
    ("invalid", "free k 2 by t"),
    ("invalid", "cache z 0"),
    ("invalid", "cache z 9K"),
    ("invalid", "cache z 99999999999999999999"),
    ("invalid", "kmem t 99999999999999999999 1 as s"),
    ("invalid", "kmem t 4K 99999999999999999999 as s"),
    ("invalid", "anon t 17179869184G as s"),
    ("invalid", "file t 17179869184g as s"),
    ("invalid", "free k 99999999999999999999"),
    (
        "invalid",
        "expect /a memory.current == 99999999999999999999",
    ),
    ("invalid", "expect-live k == 99999999999999999999"),
    ("invalid", "expect /a cgroup.procs == 0"),
    ("invalid", "expect /a memory.stat == 0"),
    ("invalid", "alloc t c 18446744073709551615 as s"),
    ("invalid", "alloc t c 1048577 as s"),
    ("invalid", "kmem t 4K 18446744073709551615 as s"),
    ("invalid", "kmem t 4K 1048577 as s"),
    ("invalid", "kmem t 1G 2 as s"),
    ("invalid", "kmem t 1025M 1 as s"),
    ("invalid", "anon t 1025M as s"),
    ("invalid", "file t 2G as s"),
    // A group with children or tasks; the default group.
    ("busy", "rmdir /a"),
    ("busy", "rmdir /a/b"),
    ("busy", "rmdir /d"),
    // A group, running task name or cache that exists already.
    ("exists", "mkdir /a"),
    ("exists", "mkdir /"),
    ("exists", "thread t"),
    ("exists", "spawn u by t"),
    ("exists", "cache c 128"),
    // A limit; reclaim that falls short.
    // (With /a/b memory.max at 8K, written for this case only.)
    ("limit", "kmem t 4K 3 as s"),
    ("again", "write /a memory.reclaim 1M"),
];

/// The commands of [`CASES`] that are syntax errors outside `expect-fail`
/// (exit 2 before anything runs): inside it, a bad name and a number too
/// large for 64 bits are data for the engine.
const SYNTAX_ERRORS_OUTSIDE_EXPECT_FAIL: &[&str] = &[
    "mkdir /a/b@c",
    "cache z 99999999999999999999",
    "kmem t 99999999999999999999 1 as s",
    "kmem t 4K 99999999999999999999 as s",
    "anon t 17179869184G as s",
    "file t 17179869184g as s",
    "free k 99999999999999999999",
    "expect /a memory.current == 99999999999999999999",
    "expect-live k == 99999999999999999999",
];

/// §5: every failure of a command maps to one of the six kinds, so that
/// `expect-fail KIND` matches it, and the failure's message starts with
/// that kind (or, for the few of [`SYNTAX_ERRORS_OUTSIDE_EXPECT_FAIL`], the
/// bare command is a syntax error). One case per way to fail.
#[test]
fn every_command_failure_has_its_error_kind() {
    let mut wrong = Vec::new();
    for &(kind, command) in CASES {
        let setup = if kind == "limit" {
            format!("{SETUP}write /a/b memory.max 8K\n")
        } else {
            SETUP.to_string()
        };
        let matched = replay(&format!("{setup}expect-fail {kind} {command}\n"));
        if matched.status.code() != Some(0) {
            wrong.push(format!(
                "expect-fail {kind} {command}: {:?} {}",
                matched.status,
                stderr(&matched)
            ));
        }
        let bare = replay(&format!("{setup}{command}\n"));
        let message = stderr(&bare);
        let as_wanted = if SYNTAX_ERRORS_OUTSIDE_EXPECT_FAIL.contains(&command) {
            bare.status.code() == Some(2) && message.starts_with("<stdin>:10: ")
        } else {
            bare.status.code() == Some(1) && message.contains(&format!(": {kind}: "))
        };
        if !as_wanted {
            wrong.push(format!("{command}: {:?} {message}", bare.status));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Every kind is provoked by some case above.
#[test]
fn the_cases_cover_every_error_kind() {
    for kind in ErrorName::ALL {
        assert!(
            CASES.iter().any(|&(k, _)| k == kind.as_str()),
            "no case for {kind}"
        );
    }
}

/// A command over a cap does nothing: no member made, nothing charged.
#[test]
fn a_command_over_the_caps_allocates_nothing() {
    let output = replay(&format!(
        "mkdir /a\ntask t /a\ncache c 8K\n\
         expect-fail invalid kmem t 4K {} as k\n\
         expect-fail invalid alloc t c {} as s\n\
         expect-fail invalid anon t {} as a\n\
         expect /a memory.current == 0\n\
         expect-fail not-found expect-live k == 0\n\
         expect-fail not-found expect-live s == 0\n\
         kmem t 4K 2 as k\nexpect-live k == 2\n",
        MAX_MEMBERS + 1,
        MAX_BYTES / 8192 + 1,
        MAX_BYTES + 1,
    ));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let message = stderr(&replay("thread t\nkmem t 4K 2000000 as k\n"));
    assert!(
        message.contains("at most 1048576 members") && message.contains("split the work"),
        "{message}"
    );
}

/// An expectation that does not hold is no error kind: `expect-fail`
/// around it fails, saying so.
#[test]
fn a_failed_expectation_has_no_error_kind() {
    let output = replay("expect-fail invalid expect / memory.current == 1\n");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("(got a failure of no kind, want invalid)"),
        "{}",
        stderr(&output)
    );
    let output = replay("expect-fail busy free nosuchset\n");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("(got not-found, want busy)"),
        "{}",
        stderr(&output)
    );
}

/// §4: K, M and G in either case, in `write` as in `expect` and the
/// allocation commands.
#[test]
fn sizes_take_suffixes_in_either_case_everywhere() {
    let output = replay(
        "mkdir /a\nwrite /a memory.max 1g\nexpect /a memory.max == 1G\n\
         expect /a memory.max == 1g\nexpect /a memory.max == 1048576k\n\
         expect /a memory.max == 1024m\ntask t /a\nkmem t 4k 2 as k\nanon t 8k as a\n\
         cache c 1k\nalloc t c 1 as o\nexpect /a memory.stat:kmem == 8k\n\
         expect /a memory.stat:anon == 8k\nexpect /a memory.current ~ 20k 25\n",
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn usage_errors_exit_64() {
    let dir = env!("CARGO_TARGET_TMPDIR");
    for args in [
        &["replay"][..],
        &["frobnicate"],
        &[],
        &["replay", "--bogus", "-"],
        &["replay", "/nonexistent/script.mcg"],
        &["replay", dir],
        &["sim", "--rounds", "0"],
    ] {
        let output = memcg(args, b"");
        assert_eq!(
            output.status.code(),
            Some(64),
            "memcg {args:?}: {}",
            stderr(&output)
        );
    }
    let output = memcg(&["replay", "/nonexistent/script.mcg"], b"");
    assert!(
        stderr(&output).starts_with("/nonexistent/script.mcg: cannot read"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn help_and_version_exit_0() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["--version"],
        &["replay", "--help"],
        &["replay", "-h"],
        &["help", "replay"],
    ] {
        let output = memcg(args, b"");
        assert_eq!(output.status.code(), Some(0), "memcg {args:?}");
        assert!(!output.stdout.is_empty(), "memcg {args:?} prints");
    }
}

#[test]
fn a_script_that_is_not_utf8_is_a_syntax_error_naming_the_line() {
    let output = memcg(&["replay", "-"], b"mkdir /a\nmkdir /\xff\n");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).starts_with("<stdin>:2: not UTF-8"),
        "{}",
        stderr(&output)
    );
}

/// `memcg replay --help` lists every command the parser knows with its
/// synopsis, the operators, the error kinds, the caps and the exit codes.
#[test]
fn replay_help_lists_commands_operators_errors_caps_and_exit_codes() {
    let output = memcg(&["replay", "--help"], b"");
    let help = String::from_utf8(output.stdout).expect("help is UTF-8");
    for command in COMMANDS {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(command.synopsis)),
            "--help lacks `{}`:\n{help}",
            command.synopsis
        );
    }
    for op in Op::ALL {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(op.as_str())),
            "--help lacks {op}:\n{help}"
        );
    }
    for kind in ErrorName::ALL {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(kind.as_str())),
            "--help lacks {kind}:\n{help}"
        );
    }
    for exit in Exit::ALL {
        let line = format!("{:<3} {}", exit.code(), exit.meaning());
        assert!(help.contains(&line), "--help lacks `{line}`:\n{help}");
    }
    assert!(help.contains(&MAX_MEMBERS.to_string()), "{help}");
    assert!(help.contains(&MAX_BYTES.to_string()), "{help}");
}

/// S14, §5: a task `cgroup.kill` ended is `not-found` in every command that
/// names a task, with a message that says it was killed; `task` with its
/// name starts a new one.
#[test]
fn a_killed_tasks_commands_are_not_found() {
    let setup = "mkdir /a\ntask k /a killable\ntask p /a\ncache c 64\n\
                 kmem k 4K 1 as s\nwrite /a cgroup.kill 1\n";
    let commands = [
        "alloc k c 1 as s",
        "kmem k 4K 1 as s",
        "anon k 4K as s",
        "file k 4K as s",
        "free s by k",
        "spawn x by k",
        "exit k",
    ];
    let mut wrong = Vec::new();
    for command in commands {
        let matched = replay(&format!("{setup}expect-fail not-found {command}\n"));
        if matched.status.code() != Some(0) {
            wrong.push(format!(
                "expect-fail not-found {command}: {}",
                stderr(&matched)
            ));
        }
        let bare = replay(&format!("{setup}{command}\n"));
        let message = stderr(&bare);
        let want = "not-found: task `k` was killed (cgroup.kill or the OOM killer)";
        if bare.status.code() != Some(1) || !message.contains(want) {
            wrong.push(format!("{command}: {:?} {message}", bare.status));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let again = replay(&format!(
        "{setup}task k /a\nkmem k 4K 1 as s\nexpect-live s == 1\n"
    ));
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
}

/// S14, §5: the charge that sets off an OOM kill still fails `limit`, and
/// the victim has ended and freed its members before the next command:
/// the very next line sees the memory back and the task gone.
#[test]
fn an_oom_kill_fails_the_charge_and_frees_the_victim_before_the_next_command() {
    let script = "mkdir /p\nwrite /p memory.max 64K\nmkdir /p/v\nmkdir /p/c\n\
                  task v /p/v killable\ntask c /p/c\nkmem v 4K 12 as big\n\
                  expect-fail limit kmem c 4K 8 as small\n\
                  expect /p memory.current == 16K\nexpect-live big == 0\n\
                  expect-live small == 4\nexpect /p/v memory.events:oom_kill == 1\n\
                  expect-fail not-found kmem v 4K 1 as big\nkmem c 4K 12 as small\n";
    let output = replay(script);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    // Without expect-fail, the charge's failure is `limit`, naming the limit.
    let output = replay("mkdir /p\nwrite /p memory.max 8K\ntask v /p killable\nkmem v 4K 3 as k\n");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("<stdin>:4: kmem v 4K 3 as k: limit: "),
        "{}",
        stderr(&output)
    );
}

/// S15, §5: every command that runs on a task of a frozen group (frozen
/// there or above) fails `again` and does nothing; reads go on; after the
/// thaw the same commands run.
#[test]
fn commands_for_a_frozen_task_are_again() {
    let setup = "mkdir /f\nmkdir /f/c\nmkdir /g\ntask t /f/c killable\ncache c 64\n\
                 kmem t 4K 1 as s\nwrite /f cgroup.freeze 1\n";
    let commands = [
        "alloc t c 1 as s",
        "kmem t 4K 1 as s",
        "anon t 4K as s",
        "file t 4K as s",
        "free s by t",
        "spawn x by t",
        "task t /g",
        "task t /g killable",
        "exit t",
    ];
    let mut wrong = Vec::new();
    for command in commands {
        let matched = replay(&format!(
            "{setup}expect-fail again {command}\nexpect-live s == 1\n\
             expect /f memory.current == 4K\nread /f/c cgroup.procs\n\
             write /f cgroup.freeze 0\n{command}\n"
        ));
        if matched.status.code() != Some(0) {
            wrong.push(format!("expect-fail again {command}: {}", stderr(&matched)));
        }
        let bare = replay(&format!("{setup}{command}\n"));
        let message = stderr(&bare);
        let want = "again: task `t` is frozen: /f/c has cgroup.freeze 1 on it or an ancestor";
        if bare.status.code() != Some(1) || !message.contains(want) {
            wrong.push(format!("{command}: {:?} {message}", bare.status));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// §5: `killable` is the only word `task` takes after PATH; a misspelling
/// is a syntax error naming FILE:LINE, and nothing runs.
#[test]
fn a_misspelled_killable_is_a_syntax_error_naming_file_and_line() {
    let output = replay("mkdir /a\ntask t /a killabel\nread / cgroup.stat\n");
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty(), "nothing ran");
    assert_eq!(
        stderr(&output).trim_end(),
        "<stdin>:2: expected `killable`, found `killabel`; usage: task NAME PATH [killable]"
    );
}
