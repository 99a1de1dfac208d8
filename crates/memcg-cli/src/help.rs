//! The text of `memcg replay --help`: the language, its operators, its
//! error kinds, the caps on one command and the exit statuses, generated
//! from the tables the parser and the runner use ([`COMMANDS`], [`Op::ALL`],
//! [`ErrorName::ALL`], [`MAX_MEMBERS`], [`MAX_BYTES`], [`Exit::ALL`]), so
//! that the help cannot drift from what a script may say.

use std::fmt::Write;

use crate::replay::{MAX_BYTES, MAX_MEMBERS};
use crate::script::{ErrorName, Op, COMMANDS};
use crate::Exit;

/// What provokes each error kind, in a line.
fn provoked_by(kind: ErrorName) -> &'static str {
    match kind {
        ErrorName::Busy => "rmdir of a group with children or tasks, or of the default group",
        ErrorName::Exists => {
            "mkdir of an existing group; a task or thread name already running; \
             a cache redefined with another size or kind"
        }
        ErrorName::NotFound => {
            "a group, file or KEY that does not exist; a task, set or cache name \
             that no earlier command made; a task a kill ended"
        }
        ErrorName::Invalid => {
            "writing a read-only file, a malformed value, a bad name, limits on the root, \
             a size that overflows, rmdir /, free SET N with fewer than N live members, \
             one command over the caps below"
        }
        ErrorName::Limit => {
            "a charge failed at a memory.max even after reclaim (also when it set off \
             an OOM kill)"
        }
        ErrorName::Again => {
            "memory.reclaim fell short; the system or OS refused memory or a thread; \
             a command for a task of a frozen group"
        }
    }
}

/// What an operator means.
fn op_meaning(op: Op) -> &'static str {
    match op {
        Op::Eq => "equal",
        Op::Ne => "not equal",
        Op::Lt => "less than",
        Op::Le => "at most",
        Op::Gt => "greater than",
        Op::Ge => "at least",
        Op::Close => "close: takes TOL, a percentage; |a - b| <= (a + b) / 100 * TOL",
    }
}

/// The body of `memcg replay --help`, after clap's usage and arguments.
pub fn replay_help() -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let mut line = |s: String| {
        let _ = writeln!(text, "{s}");
    };
    line("Script language (DESIGN.md §5): one command per line; `#` starts a comment.".into());
    line(String::new());
    line("Commands:".into());
    let width = COMMANDS.iter().map(|c| c.synopsis.len()).max().unwrap_or(0);
    for command in COMMANDS {
        line(format!(
            "  {:width$}  {}",
            command.synopsis, command.summary
        ));
    }
    line(String::new());
    line(
        "SIZE: an integer with an optional K, M or G suffix, either case (powers of 1024). \
         PATH: absolute, `/` is the root. Names: [A-Za-z0-9_.-]+. \
         COUNT, N, TOL: plain integers."
            .into(),
    );
    line(String::new());
    line(
        "Kills and freezes (S14, S15): `task NAME PATH killable` makes NAME a killable \
         unit, for that line only (a move without `killable` makes it a plain task; \
         `spawn` starts plain tasks). `write PATH cgroup.kill 1` or an OOM kill (the \
         charge still fails `limit`) kills units; after every command a killed task \
         frees every member it made that is still live and ends, and a command naming \
         it is `not-found`. While `cgroup.freeze` is 1 on a task's group or an \
         ancestor, every command that runs on the task fails `again` (the allocation \
         commands, `free ... by`, `spawn ... by`, `task` moving it, `exit`); a kill \
         still ends a frozen killable task."
            .into(),
    );
    line(String::new());
    line("Operators (OP of expect and expect-live):".into());
    for op in Op::ALL {
        line(format!("  {:3} {}", op.as_str(), op_meaning(op)));
    }
    line(String::new());
    line("Errors (ERROR of expect-fail):".into());
    for kind in ErrorName::ALL {
        line(format!("  {:10} {}", kind.as_str(), provoked_by(kind)));
    }
    line(String::new());
    line(format!(
        "Caps: one alloc, kmem, anon or file command makes at most {MAX_MEMBERS} members \
         (COUNT, or SIZE in pages) and asks for at most {MAX_BYTES} bytes ({} GiB) in all; \
         more is `invalid` before anything is allocated.",
        MAX_BYTES >> 30
    ));
    line(String::new());
    line("Exit status:".into());
    for exit in Exit::ALL {
        line(format!("  {:<3} {}", exit.code(), exit.meaning()));
    }
    text
}
