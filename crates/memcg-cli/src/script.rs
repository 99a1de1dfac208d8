//! The `memcg replay` script language (DESIGN.md §5): syntax tree and parser.
//!
//! A script is parsed whole before anything runs, so a typo on the last line
//! costs nothing. The parser is purely syntactic: whether a task or a set
//! exists, or whether a group name is acceptable to the engine, is decided
//! when the script runs.
//!
//! One deliberate leniency: inside `expect-fail`, paths and file names only
//! have to be non-empty tokens (paths absolute). That is what lets a script
//! state `expect-fail invalid mkdir /a/b@c`: a bad name is data for the engine
//! to reject, not a mistake in the script. Likewise a SIZE or number too
//! large for 64 bits is a syntax error, except inside `expect-fail`, where
//! the command parses as [`Command::Overflow`] and fails with `invalid` when
//! run (`expect-fail invalid kmem t 99999999999999999999 1 as k`).
//!
//! SIZE accepts `K`, `M` and `G` in either case (DESIGN.md §4), everywhere:
//! `cache`, `kmem`, `anon`, `file` and the VALUE of `expect`. COUNT, N and
//! TOL (a percentage) are plain integers.
//!
//! Two extensions of §5, neither changing its syntax:
//!
//! - `expect-live SET ~ N TOL` takes a tolerance like `expect`, since `~` is
//!   one of the operators the contract lists.
//! - The root has three read-only files more, the engine's own diagnostics
//!   for S1, S3, S6 and S8, readable by `read` and `expect` (also inside a
//!   `(PATH FILE)` reference) like any other single-number file:
//!   `memcg.live_caches` (child slab caches not yet destroyed: those of
//!   online groups, and dead ones still holding objects),
//!   `memcg.live_contexts` (kmem contexts not yet destroyed: one per online
//!   group, plus those of removed groups whose charges live on) and
//!   `memcg.last_removal_slabs` (the slabs the last `rmdir` looked at: never
//!   the full ones, so it does not grow with live objects). They count the
//!   whole hierarchy, so they exist on `/` only; on another group they are
//!   `invalid`, as is writing them. For example
//!   `expect / memcg.live_caches == 0`. Caveat: the quiesce before a read
//!   does not yet wait for a cache destruction that the engine's background
//!   worker has already begun, so right after the last object of a dead
//!   cache is freed the first two may still count it for a moment.
//!
//! Cache names are the script's own: each run has its own namespace, so two
//! scripts of one `memcg replay` may define `cache c` with different sizes.
//! Within a run, defining a cache again with the same size and kind is a
//! no-op, with another size or kind it is `exists`; a SIZE of 0, or one too
//! large for a slab (over 8K), is `invalid`.

use std::fmt;
use std::sync::Arc;

/// A whole parsed script: one [`Statement`] per non-blank, non-comment line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The file the script came from, as named on the command line.
    pub file: Arc<str>,
    /// The commands, in order of appearance.
    pub statements: Vec<Statement>,
}

/// One command together with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The script file, for `FILE:LINE:` messages.
    pub file: Arc<str>,
    /// 1-based line number.
    pub line: usize,
    /// The command text, comment and surrounding blanks removed.
    pub text: String,
    /// The parsed command.
    pub command: Command,
}

/// A command of the script language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `mkdir PATH`: create a group.
    Mkdir {
        /// The group to create.
        path: String,
    },
    /// `rmdir PATH`: remove a group.
    Rmdir {
        /// The group to remove.
        path: String,
    },
    /// `write PATH FILE VALUE`: write an interface file.
    Write {
        /// The group.
        path: String,
        /// The interface file, e.g. `memory.max`.
        file: String,
        /// The value, passed to the engine verbatim.
        value: String,
    },
    /// `read PATH FILE`: print an interface file verbatim.
    Read {
        /// The group.
        path: String,
        /// The interface file.
        file: String,
    },
    /// `task NAME PATH [killable]`: start thread NAME attached to PATH, or
    /// move it there.
    Task {
        /// The thread's name.
        name: String,
        /// The group to attach it to.
        path: String,
        /// A killable unit (S14): `cgroup.kill` and the OOM killer can kill
        /// it. Per line: a move without `killable` makes it a plain task.
        killable: bool,
    },
    /// `thread NAME`: start thread NAME never attached; it charges the
    /// hierarchy's default group (S12).
    Thread {
        /// The thread's name.
        name: String,
    },
    /// `spawn NAME by TASK`: TASK's thread starts thread NAME through
    /// memcg's spawn, so NAME starts where TASK is (S12).
    Spawn {
        /// The new thread's name.
        name: String,
        /// The thread that starts it.
        by: String,
    },
    /// `default PATH`: make PATH the hierarchy's default group (`/` resets).
    Default {
        /// The group; `/` makes the root the default again.
        path: String,
    },
    /// `exit NAME`: end thread NAME.
    Exit {
        /// The thread's name.
        name: String,
    },
    /// `cache NAME SIZE [reclaimable] [isolated]`: create a slab cache.
    Cache {
        /// The cache's name.
        name: String,
        /// Object size in bytes.
        size: u64,
        /// Whether its objects can be reclaimed through a shrinker.
        reclaimable: bool,
        /// Per-group child caches (S6) instead of shared slabs (S11).
        isolated: bool,
    },
    /// `alloc TASK CACHE COUNT as SET`: allocate slab objects.
    Alloc {
        /// The allocating thread.
        task: String,
        /// The cache to allocate from.
        cache: String,
        /// How many objects.
        count: u64,
        /// The set that collects them.
        set: String,
    },
    /// `kmem TASK SIZE COUNT as SET`: allocate page-level kmem buffers.
    Kmem {
        /// The allocating thread.
        task: String,
        /// Bytes per buffer, rounded up to whole pages by the engine.
        size: u64,
        /// How many buffers.
        count: u64,
        /// The set that collects them.
        set: String,
    },
    /// `anon TASK SIZE as SET`: charge anon user pages.
    Anon {
        /// The charging thread.
        task: String,
        /// Bytes, one member per (started) page.
        size: u64,
        /// The set that collects them.
        set: String,
    },
    /// `file TASK SIZE as SET`: charge file user pages (reclaimable).
    File {
        /// The charging thread.
        task: String,
        /// Bytes, one member per (started) page.
        size: u64,
        /// The set that collects them.
        set: String,
    },
    /// `free SET [COUNT] [by TASK]`: free live members, oldest first.
    Free {
        /// The set to free from.
        set: String,
        /// How many live members; all of them when absent.
        count: Option<u64>,
        /// The thread that frees; the script's own thread when absent.
        by: Option<String>,
    },
    /// `expect PATH FILE[:KEY] OP VALUE [TOL]`: compare an interface value.
    Expect {
        /// The value read.
        actual: FileRef,
        /// The comparison.
        op: Op,
        /// What it is compared with.
        expected: Value,
        /// Tolerance in percent; present exactly when `op` is [`Op::Close`].
        tolerance: Option<u64>,
    },
    /// `expect-live SET OP N [TOL]`: count the live members of a set.
    ExpectLive {
        /// The set.
        set: String,
        /// The comparison.
        op: Op,
        /// The number of members compared with.
        count: u64,
        /// Tolerance in percent; present exactly when `op` is [`Op::Close`].
        tolerance: Option<u64>,
    },
    /// `expect-fail ERROR COMMAND...`: COMMAND must fail with ERROR.
    ExpectFail {
        /// The error kind required.
        error: ErrorName,
        /// The command that must fail.
        command: Box<Command>,
    },
    /// A command inside `expect-fail` with a SIZE or number that does not
    /// fit in 64 bits. Outside `expect-fail` that is a syntax error; inside
    /// it is data for the engine, and running it fails with `invalid`
    /// (DESIGN.md §5: "a size that overflows") having done nothing.
    Overflow {
        /// The first token that overflows.
        token: String,
    },
}

/// `PATH FILE[:KEY]`: one number in an interface file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// The group.
    pub path: String,
    /// The interface file.
    pub file: String,
    /// The key of a keyed file (`memory.stat:anon`); `None` for a file that
    /// holds a single value.
    pub key: Option<String>,
}

impl fmt::Display for FileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.path, self.file)?;
        if let Some(key) = &self.key {
            write!(f, ":{key}")?;
        }
        Ok(())
    }
}

/// The right-hand side of `expect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A literal size in bytes (or a plain count for event files).
    Size(u64),
    /// `max`: no limit, greater than every number.
    Max,
    /// `(PATH FILE[:KEY])`: the current value of another file.
    Ref(FileRef),
}

/// A comparison operator of `expect` and `expect-live`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `~`: equal within a tolerance in percent, as the kernel selftests'
    /// `values_close`.
    Close,
}

impl Op {
    /// Every operator, in the order DESIGN.md §5 lists them.
    pub const ALL: [Op; 7] = [Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge, Op::Close];

    /// The operator as written in scripts.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Close => "~",
        }
    }

    fn parse(token: &str) -> Option<Op> {
        Some(match token {
            "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "~" => Op::Close,
            _ => return None,
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The ERROR of `expect-fail`: the engine's error kinds, by their script names.
pub use memcg::ErrorKind as ErrorName;

/// A script that does not parse: prints as `FILE:LINE: what is wrong`,
/// followed by the synopsis of the command when the command is known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {problem}{}", usage.map(|u| format!("; usage: {u}")).unwrap_or_default())]
pub struct SyntaxError {
    /// The script file.
    pub file: Arc<str>,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with the line.
    pub problem: Problem,
    /// The synopsis of the command at fault (the inner one of `expect-fail`).
    pub usage: Option<&'static str>,
}

/// What is wrong with a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The first word is not a command.
    #[error("unknown command `{0}`")]
    UnknownCommand(String),
    /// An argument is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// More arguments than the command takes.
    #[error("unexpected `{0}`")]
    Extra(String),
    /// A keyword was expected (`as`, `by`, `reclaimable`).
    #[error("expected `{keyword}`, found `{found}`")]
    Keyword {
        /// The keyword.
        keyword: &'static str,
        /// What was there instead.
        found: String,
    },
    /// Not a SIZE.
    #[error("bad size `{0}`: want an integer with an optional K, M or G suffix (either case)")]
    Size(String),
    /// A SIZE that does not fit in 64 bits.
    #[error("size `{0}` is too large: it does not fit in 64 bits")]
    SizeOverflow(String),
    /// The line is not valid UTF-8.
    #[error("not UTF-8 text: save the script as UTF-8")]
    NotUtf8,
    /// A number (COUNT, N, TOL) that does not fit in 64 bits.
    #[error("{what} `{token}` is too large: it does not fit in 64 bits")]
    NumberOverflow {
        /// Which number (COUNT, N, TOL).
        what: &'static str,
        /// The token.
        token: String,
    },
    /// Not a count.
    #[error("bad {what} `{token}`: want a non-negative integer")]
    Number {
        /// Which number (COUNT, N, TOL).
        what: &'static str,
        /// The token.
        token: String,
    },
    /// Not an absolute path of valid group names.
    #[error("bad path `{0}`: want `/` or `/name/...` with names of [A-Za-z0-9_.-]")]
    Path(String),
    /// Not a valid task, set, cache or file name.
    #[error("bad {what} `{token}`: want a name of [A-Za-z0-9_.-]")]
    Name {
        /// Which name (TASK, SET, FILE, ...).
        what: &'static str,
        /// The token.
        token: String,
    },
    /// Not a comparison operator.
    #[error("bad operator `{0}`: want one of == != < <= > >= ~")]
    Op(String),
    /// `~` without a tolerance.
    #[error("`~` needs a tolerance in percent after the value")]
    MissingTolerance,
    /// A tolerance after an exact operator.
    #[error("a tolerance `{0}` is only allowed after `~`")]
    UnexpectedTolerance(String),
    /// A `(PATH FILE[:KEY])` reference that is not closed or has the wrong shape.
    #[error("bad reference `{0}`: want (PATH FILE[:KEY])")]
    Reference(String),
    /// Not an error kind.
    #[error("unknown error `{0}`: want one of busy exists not-found invalid limit again")]
    ErrorName(String),
}

/// Parses a whole script. `file` names it in messages.
///
/// Blank lines and comments produce no statement; every other line produces
/// exactly one, or the first syntax error stops the parse.
pub fn parse(file: &str, source: &str) -> Result<Script, SyntaxError> {
    let file: Arc<str> = Arc::from(file);
    let mut statements = Vec::new();
    for (index, raw) in source.lines().enumerate() {
        let line = index + 1;
        let text = raw.split('#').next().unwrap_or("").trim();
        if text.is_empty() {
            continue;
        }
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let command =
            parse_command(&tokens, Strictness::Strict).map_err(|(problem, usage)| SyntaxError {
                file: file.clone(),
                line,
                problem,
                usage,
            })?;
        statements.push(Statement {
            file: file.clone(),
            line,
            text: tokens.join(" "),
            command,
        });
    }
    Ok(Script { file, statements })
}

/// Parses a script given as bytes, as read from a file: like [`parse`],
/// and a line that is not UTF-8 is a syntax error ([`Problem::NotUtf8`]) at
/// that line.
pub fn parse_bytes(file: &str, source: &[u8]) -> Result<Script, SyntaxError> {
    match std::str::from_utf8(source) {
        Ok(text) => parse(file, text),
        Err(error) => {
            let valid = &source[..error.valid_up_to()];
            Err(SyntaxError {
                file: Arc::from(file),
                line: 1 + valid.iter().filter(|&&b| b == b'\n').count(),
                problem: Problem::NotUtf8,
                usage: None,
            })
        }
    }
}

/// Parses a SIZE: an integer with an optional `K`, `M` or `G` suffix, either
/// case (powers of 1024), as DESIGN.md §4 and the engine's
/// [`memcg::parse_size`] accept.
pub fn parse_size(token: &str) -> Result<u64, Problem> {
    let (digits, unit) = match token.as_bytes().last() {
        Some(b'K' | b'k') => (&token[..token.len() - 1], 1u64 << 10),
        Some(b'M' | b'm') => (&token[..token.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&token[..token.len() - 1], 1 << 30),
        _ => (token, 1),
    };
    let number = parse_digits(digits).ok_or_else(|| Problem::Size(token.to_string()))?;
    number
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| Problem::SizeOverflow(token.to_string()))
}

/// `Some(None)` for digits that overflow, `None` for something that is not
/// digits at all.
fn parse_digits(digits: &str) -> Option<Option<u64>> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().ok())
}

/// Whether names and paths are checked against the script grammar, or passed
/// through for the engine to judge (inside `expect-fail`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Strictness {
    Strict,
    Lenient,
}

/// What is wrong with a command, and the synopsis of the command at fault
/// (`None` for an unknown command).
type Flaw = (Problem, Option<&'static str>);

/// The tokens of one command, consumed left to right.
struct Args<'a> {
    tokens: std::slice::Iter<'a, &'a str>,
    strictness: Strictness,
    /// In lenient mode, the first SIZE or number that did not fit in 64
    /// bits (read as `u64::MAX` so that parsing goes on).
    overflow: Option<String>,
}

impl<'a> Args<'a> {
    fn next(&mut self, what: &'static str) -> Result<&'a str, Problem> {
        self.tokens.next().copied().ok_or(Problem::Missing(what))
    }

    fn peek(&self) -> Option<&'a str> {
        self.tokens.clone().next().copied()
    }

    fn rest(&mut self) -> Vec<&'a str> {
        self.tokens.by_ref().copied().collect()
    }

    fn finish(&mut self) -> Result<(), Problem> {
        match self.tokens.next() {
            None => Ok(()),
            Some(token) => Err(Problem::Extra(token.to_string())),
        }
    }

    fn keyword(&mut self, keyword: &'static str) -> Result<(), Problem> {
        let found = self.next(keyword)?;
        if found == keyword {
            Ok(())
        } else {
            Err(Problem::Keyword {
                keyword,
                found: found.to_string(),
            })
        }
    }

    fn path(&mut self) -> Result<String, Problem> {
        let token = self.next("PATH")?;
        check_path(token, self.strictness)
    }

    fn name(&mut self, what: &'static str) -> Result<String, Problem> {
        let token = self.next(what)?;
        check_name(what, token, Strictness::Strict)
    }

    fn file(&mut self) -> Result<String, Problem> {
        let token = self.next("FILE")?;
        check_name("FILE", token, self.strictness)
    }

    fn size(&mut self) -> Result<u64, Problem> {
        let token = self.next("SIZE")?;
        self.tolerate_overflow(parse_size(token))
    }

    fn number(&mut self, what: &'static str) -> Result<u64, Problem> {
        let token = self.next(what)?;
        self.tolerate_overflow(parse_number(what, token))
    }

    /// Inside `expect-fail`, a SIZE or number too large for 64 bits is data
    /// for the engine (`invalid` when run): remembered, read as `u64::MAX`.
    fn tolerate_overflow(&mut self, parsed: Result<u64, Problem>) -> Result<u64, Problem> {
        match parsed {
            Err(Problem::SizeOverflow(token) | Problem::NumberOverflow { token, .. })
                if self.strictness == Strictness::Lenient =>
            {
                self.overflow.get_or_insert(token);
                Ok(u64::MAX)
            }
            other => other,
        }
    }

    fn op(&mut self) -> Result<Op, Problem> {
        let token = self.next("OP")?;
        Op::parse(token).ok_or_else(|| Problem::Op(token.to_string()))
    }

    /// `as SET`
    fn as_set(&mut self) -> Result<String, Problem> {
        self.keyword("as")?;
        self.name("SET")
    }
}

fn parse_number(what: &'static str, token: &str) -> Result<u64, Problem> {
    match parse_digits(token) {
        Some(Some(n)) => Ok(n),
        Some(None) => Err(Problem::NumberOverflow {
            what,
            token: token.to_string(),
        }),
        None => Err(Problem::Number {
            what,
            token: token.to_string(),
        }),
    }
}

fn is_name(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn check_name(what: &'static str, token: &str, strictness: Strictness) -> Result<String, Problem> {
    if strictness == Strictness::Lenient || is_name(token) {
        Ok(token.to_string())
    } else {
        Err(Problem::Name {
            what,
            token: token.to_string(),
        })
    }
}

fn check_path(token: &str, strictness: Strictness) -> Result<String, Problem> {
    let valid = match strictness {
        Strictness::Lenient => token.starts_with('/'),
        Strictness::Strict => {
            token == "/"
                || token
                    .strip_prefix('/')
                    .is_some_and(|rest| rest.split('/').all(is_name))
        }
    };
    if valid {
        Ok(token.to_string())
    } else {
        Err(Problem::Path(token.to_string()))
    }
}

/// `FILE[:KEY]`
fn parse_file_key(
    token: &str,
    strictness: Strictness,
) -> Result<(String, Option<String>), Problem> {
    match token.split_once(':') {
        None => Ok((check_name("FILE", token, strictness)?, None)),
        Some((file, key)) => Ok((
            check_name("FILE", file, strictness)?,
            Some(check_name("KEY", key, Strictness::Strict)?),
        )),
    }
}

/// VALUE of `expect`: SIZE, `max`, or `(PATH FILE[:KEY])` (which spans two
/// tokens, or more if written with inner blanks).
fn parse_value(args: &mut Args<'_>) -> Result<Value, Problem> {
    let first = args.next("VALUE")?;
    if first == "max" {
        return Ok(Value::Max);
    }
    let Some(open) = first.strip_prefix('(') else {
        return args.tolerate_overflow(parse_size(first)).map(Value::Size);
    };
    let mut inner = Vec::new();
    let mut token = open;
    loop {
        if let Some(last) = token.strip_suffix(')') {
            inner.push(last);
            break;
        }
        inner.push(token);
        token = args
            .tokens
            .next()
            .ok_or_else(|| Problem::Reference(format!("({}", inner.join(" "))))?;
    }
    let words: Vec<&str> = inner.into_iter().filter(|t| !t.is_empty()).collect();
    let written = || format!("({})", words.join(" "));
    let [path, file] = words[..] else {
        return Err(Problem::Reference(written()));
    };
    let path = check_path(path, args.strictness)?;
    let (file, key) = parse_file_key(file, args.strictness)?;
    Ok(Value::Ref(FileRef { path, file, key }))
}

fn parse_command(tokens: &[&str], strictness: Strictness) -> Result<Command, Flaw> {
    let (&name, rest) = tokens.split_first().expect("the caller skips blank lines");
    let usage = usage(name).ok_or_else(|| (Problem::UnknownCommand(name.to_string()), None))?;
    let mut args = Args {
        tokens: rest.iter(),
        strictness,
        overflow: None,
    };
    if name == "expect-fail" {
        return parse_expect_fail(&mut args).map_err(|problem| (problem, Some(usage)))?;
    }
    let command = parse_arguments(name, &mut args)
        .and_then(|command| args.finish().map(|()| command))
        .map_err(|problem| (problem, Some(usage)))?;
    Ok(match args.overflow {
        Some(token) => Command::Overflow { token },
        None => command,
    })
}

/// `expect-fail ERROR COMMAND...`: the outer result is a problem with ERROR
/// or a missing COMMAND; the inner one is the inner command's own.
fn parse_expect_fail(args: &mut Args<'_>) -> Result<Result<Command, Flaw>, Problem> {
    let token = args.next("ERROR")?;
    let error = ErrorName::from_name(token).ok_or_else(|| Problem::ErrorName(token.to_string()))?;
    let inner = args.rest();
    if inner.is_empty() {
        return Err(Problem::Missing("COMMAND"));
    }
    Ok(
        parse_command(&inner, Strictness::Lenient).map(|command| Command::ExpectFail {
            error,
            command: Box::new(command),
        }),
    )
}

/// `[TOL]` after the value of `expect` and `expect-live`: required by `~`,
/// refused after any other operator.
fn parse_tolerance(op: Op, args: &mut Args<'_>) -> Result<Option<u64>, Problem> {
    match (op, args.peek()) {
        (Op::Close, Some(_)) => args.number("TOL").map(Some),
        (Op::Close, None) => Err(Problem::MissingTolerance),
        (_, Some(token)) if parse_digits(token).is_some() => {
            Err(Problem::UnexpectedTolerance(token.to_string()))
        }
        (_, _) => Ok(None),
    }
}

/// The arguments of every command but `expect-fail`.
fn parse_arguments(name: &str, args: &mut Args<'_>) -> Result<Command, Problem> {
    let strictness = args.strictness;
    let command = match name {
        "mkdir" => Command::Mkdir { path: args.path()? },
        "rmdir" => Command::Rmdir { path: args.path()? },
        "write" => Command::Write {
            path: args.path()?,
            file: args.file()?,
            value: args.next("VALUE")?.to_string(),
        },
        "read" => Command::Read {
            path: args.path()?,
            file: args.file()?,
        },
        "task" => {
            let name = args.name("NAME")?;
            let path = args.path()?;
            let killable = args.peek().is_some();
            if killable {
                args.keyword("killable")?;
            }
            Command::Task {
                name,
                path,
                killable,
            }
        }
        "thread" => Command::Thread {
            name: args.name("NAME")?,
        },
        "spawn" => {
            let name = args.name("NAME")?;
            args.keyword("by")?;
            Command::Spawn {
                name,
                by: args.name("TASK")?,
            }
        }
        "default" => Command::Default { path: args.path()? },
        "exit" => Command::Exit {
            name: args.name("NAME")?,
        },
        "cache" => {
            let name = args.name("NAME")?;
            let size = args.size()?;
            let reclaimable = args.peek().is_some_and(|t| t != "isolated");
            if reclaimable {
                args.keyword("reclaimable")?;
            }
            let isolated = args.peek().is_some();
            if isolated {
                args.keyword("isolated")?;
            }
            Command::Cache {
                name,
                size,
                reclaimable,
                isolated,
            }
        }
        "alloc" => Command::Alloc {
            task: args.name("TASK")?,
            cache: args.name("CACHE")?,
            count: args.number("COUNT")?,
            set: args.as_set()?,
        },
        "kmem" => Command::Kmem {
            task: args.name("TASK")?,
            size: args.size()?,
            count: args.number("COUNT")?,
            set: args.as_set()?,
        },
        "anon" => Command::Anon {
            task: args.name("TASK")?,
            size: args.size()?,
            set: args.as_set()?,
        },
        "file" => Command::File {
            task: args.name("TASK")?,
            size: args.size()?,
            set: args.as_set()?,
        },
        "free" => {
            let set = args.name("SET")?;
            let count = match args.peek() {
                Some(token) if token != "by" => Some(args.number("COUNT")?),
                _ => None,
            };
            let by = match args.peek() {
                Some(_) => {
                    args.keyword("by")?;
                    Some(args.name("TASK")?)
                }
                None => None,
            };
            Command::Free { set, count, by }
        }
        "expect" => {
            let path = args.path()?;
            let (file, key) = parse_file_key(args.next("FILE[:KEY]")?, strictness)?;
            let op = args.op()?;
            let expected = parse_value(args)?;
            let tolerance = parse_tolerance(op, args)?;
            Command::Expect {
                actual: FileRef { path, file, key },
                op,
                expected,
                tolerance,
            }
        }
        "expect-live" => {
            let set = args.name("SET")?;
            let op = args.op()?;
            let count = args.number("N")?;
            Command::ExpectLive {
                set,
                op,
                count,
                tolerance: parse_tolerance(op, args)?,
            }
        }
        _ => unreachable!("usage() knows every command"),
    };
    Ok(command)
}

/// A command of the language as DESIGN.md §5 lists it: the parser's
/// synopsis in error messages and `memcg replay --help` both come from
/// [`COMMANDS`], so they cannot drift apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// The command word, e.g. `kmem`.
    pub name: &'static str,
    /// The synopsis, e.g. `kmem TASK SIZE COUNT as SET`.
    pub synopsis: &'static str,
    /// What it does, in a line.
    pub summary: &'static str,
}

const fn spec(name: &'static str, synopsis: &'static str, summary: &'static str) -> CommandSpec {
    CommandSpec {
        name,
        synopsis,
        summary,
    }
}

/// Every command the parser knows, in the order of DESIGN.md §5.
pub const COMMANDS: [CommandSpec; 18] = [
    spec("mkdir", "mkdir PATH", "create a group"),
    spec(
        "rmdir",
        "rmdir PATH",
        "remove a group (busy if it has children or tasks)",
    ),
    spec("write", "write PATH FILE VALUE", "write an interface file"),
    spec(
        "read",
        "read PATH FILE",
        "print the file's content verbatim",
    ),
    spec(
        "task",
        "task NAME PATH [killable]",
        "start thread NAME attached to PATH, or move it there; \
         killable: cgroup.kill and the OOM killer may kill it",
    ),
    spec(
        "thread",
        "thread NAME",
        "start thread NAME never attached: it charges the default group",
    ),
    spec(
        "spawn",
        "spawn NAME by TASK",
        "TASK's thread starts thread NAME through memcg's spawn, in TASK's group",
    ),
    spec(
        "default",
        "default PATH",
        "make PATH the hierarchy's default group (`/` resets)",
    ),
    spec("exit", "exit NAME", "end thread NAME"),
    spec(
        "cache",
        "cache NAME SIZE [reclaimable] [isolated]",
        "create a slab cache of SIZE-byte objects (1 to 8K); shared slabs unless isolated",
    ),
    spec(
        "alloc",
        "alloc TASK CACHE COUNT as SET",
        "TASK allocates COUNT objects from CACHE",
    ),
    spec(
        "kmem",
        "kmem TASK SIZE COUNT as SET",
        "TASK allocates COUNT page-level kmem buffers of SIZE bytes, rounded up to pages",
    ),
    spec(
        "anon",
        "anon TASK SIZE as SET",
        "TASK charges SIZE bytes of anon pages (one member per page)",
    ),
    spec(
        "file",
        "file TASK SIZE as SET",
        "TASK charges SIZE bytes of file pages (reclaimable)",
    ),
    spec(
        "free",
        "free SET [COUNT] [by TASK]",
        "free COUNT (default: all) live members of SET, oldest first, on TASK's thread",
    ),
    spec(
        "expect",
        "expect PATH FILE[:KEY] OP VALUE [TOL]",
        "compare a file's value; VALUE is a SIZE, `max` or (PATH FILE[:KEY])",
    ),
    spec(
        "expect-live",
        "expect-live SET OP N [TOL]",
        "compare the number of live members of SET",
    ),
    spec(
        "expect-fail",
        "expect-fail ERROR COMMAND...",
        "COMMAND must fail with ERROR",
    ),
];

/// The synopsis of a command; `None` for a word that is not a command.
fn usage(command: &str) -> Option<&'static str> {
    COMMANDS
        .iter()
        .find(|spec| spec.name == command)
        .map(|spec| spec.synopsis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Command {
        let script = parse("t.mcg", line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert_eq!(script.statements.len(), 1, "{line:?}");
        script.statements.into_iter().next().unwrap().command
    }

    fn problem(line: &str) -> Problem {
        match parse("t.mcg", line) {
            Ok(script) => panic!("{line:?} parsed as {:?}", script.statements),
            Err(e) => {
                assert_eq!(e.line, 1);
                e.problem
            }
        }
    }

    fn s(text: &str) -> String {
        text.to_string()
    }

    fn file_ref(path: &str, file: &str, key: Option<&str>) -> FileRef {
        FileRef {
            path: s(path),
            file: s(file),
            key: key.map(s),
        }
    }

    #[test]
    fn sizes_are_integers_with_binary_suffixes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("30M"), Ok(30 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("17179869183G"), Ok(17179869183 << 30));
    }

    /// DESIGN.md §4: suffixes in either case, as the engine's own parser,
    /// everywhere a SIZE appears (`expect` VALUEs included).
    #[test]
    fn size_suffixes_take_either_case_as_the_engine_does() {
        for (token, bytes) in [("4k", 4096), ("30m", 30 << 20), ("1g", 1 << 30)] {
            assert_eq!(parse_size(token), Ok(bytes), "{token}");
            assert_eq!(memcg::parse_size(token), Some(bytes), "{token}");
        }
        assert_eq!(
            one("expect /a memory.max == 1g"),
            Command::Expect {
                actual: file_ref("/a", "memory.max", None),
                op: Op::Eq,
                expected: Value::Size(1 << 30),
                tolerance: None,
            }
        );
        assert_eq!(
            one("kmem t 8k 2 as k"),
            Command::Kmem {
                task: s("t"),
                size: 8192,
                count: 2,
                set: s("k"),
            }
        );
        assert_eq!(
            one("cache c 1k"),
            Command::Cache {
                name: s("c"),
                size: 1024,
                reclaimable: false,
                isolated: false,
            }
        );
    }

    /// A SIZE or COUNT too large for 64 bits is a syntax error, but inside
    /// `expect-fail` it is data: the command runs as `invalid` (§5).
    #[test]
    fn an_overflow_is_a_syntax_error_except_inside_expect_fail() {
        assert_eq!(
            problem("kmem t 99999999999999999999 1 as k"),
            Problem::SizeOverflow(s("99999999999999999999"))
        );
        assert_eq!(
            problem("kmem t 4K 99999999999999999999 as k"),
            Problem::NumberOverflow {
                what: "COUNT",
                token: s("99999999999999999999"),
            }
        );
        for (line, token) in [
            ("kmem t 99999999999999999999 1 as k", "99999999999999999999"),
            ("anon t 17179869184G as a", "17179869184G"),
            ("free k 99999999999999999999", "99999999999999999999"),
            ("expect / memory.current == 17179869184g", "17179869184g"),
        ] {
            assert_eq!(
                one(&format!("expect-fail invalid {line}")),
                Command::ExpectFail {
                    error: ErrorName::Invalid,
                    command: Box::new(Command::Overflow { token: s(token) }),
                },
                "{line}"
            );
        }
        // Any other mistake in the command is still a syntax error.
        assert_eq!(
            problem("expect-fail invalid kmem t 99999999999999999999 1 to k"),
            Problem::Keyword {
                keyword: "as",
                found: s("to"),
            }
        );
    }

    /// The synopses of error messages and of `--help` are one table, and
    /// the parser knows every command in it (and no other).
    #[test]
    fn every_command_of_the_table_parses_and_no_other() {
        for spec in COMMANDS {
            assert!(
                spec.synopsis.starts_with(&format!("{} ", spec.name)),
                "{spec:?}"
            );
            // Missing arguments, not an unknown command (nor a panic).
            let error = parse("t.mcg", spec.name).unwrap_err();
            assert_eq!(error.usage, Some(spec.synopsis), "{}", spec.name);
            assert!(
                !matches!(error.problem, Problem::UnknownCommand(_)),
                "{}",
                spec.name
            );
        }
        assert_eq!(problem("mkdir2 /a"), Problem::UnknownCommand(s("mkdir2")));
    }

    #[test]
    fn a_line_that_is_not_utf8_is_a_syntax_error_at_that_line() {
        let error = parse_bytes("t.mcg", b"mkdir /a\n# ok\nmkdir /\xff\n").unwrap_err();
        assert_eq!((error.line, error.problem), (3, Problem::NotUtf8));
        assert!(parse_bytes("t.mcg", b"mkdir /a\n").is_ok());
    }

    #[test]
    fn malformed_sizes_are_rejected() {
        for bad in [
            "", "K", "k", "4KB", "4kb", "-1", "1.5M", "0x10", "max", " 4", "4T",
        ] {
            assert_eq!(parse_size(bad), Err(Problem::Size(s(bad))), "{bad:?}");
        }
        assert_eq!(
            parse_size("17179869184G"),
            Err(Problem::SizeOverflow(s("17179869184G")))
        );
        assert_eq!(
            parse_size("99999999999999999999"),
            Err(Problem::SizeOverflow(s("99999999999999999999")))
        );
    }

    #[test]
    fn blank_lines_and_comments_make_no_statements() {
        let script = parse("t.mcg", "\n  # a comment\n\t\nmkdir /a # trailing\n#\n").unwrap();
        assert_eq!(&*script.file, "t.mcg");
        assert_eq!(
            script.statements,
            vec![Statement {
                file: Arc::from("t.mcg"),
                line: 4,
                text: s("mkdir /a"),
                command: Command::Mkdir { path: s("/a") },
            }]
        );
    }

    #[test]
    fn statement_text_is_normalized_to_single_spaces() {
        let script = parse("t.mcg", "  kmem\tt  4K 100 as   k   # comment").unwrap();
        assert_eq!(script.statements[0].text, "kmem t 4K 100 as k");
    }

    #[test]
    fn group_commands() {
        assert_eq!(
            one("mkdir /a/b-1/c_2.x"),
            Command::Mkdir {
                path: s("/a/b-1/c_2.x")
            }
        );
        assert_eq!(one("rmdir /"), Command::Rmdir { path: s("/") });
        assert_eq!(
            one("write /a memory.max 1M"),
            Command::Write {
                path: s("/a"),
                file: s("memory.max"),
                value: s("1M"),
            }
        );
        assert_eq!(
            one("read / memory.stat"),
            Command::Read {
                path: s("/"),
                file: s("memory.stat"),
            }
        );
    }

    #[test]
    fn task_commands() {
        assert_eq!(
            one("task t /a/b"),
            Command::Task {
                name: s("t"),
                path: s("/a/b"),
                killable: false,
            }
        );
        assert_eq!(one("exit t"), Command::Exit { name: s("t") });
    }

    /// S14: `task NAME PATH killable`; any other word after PATH is a
    /// syntax error naming the keyword.
    #[test]
    fn a_task_may_be_killable() {
        assert_eq!(
            one("task t /a killable"),
            Command::Task {
                name: s("t"),
                path: s("/a"),
                killable: true,
            }
        );
        assert_eq!(
            problem("task t /a killabel"),
            Problem::Keyword {
                keyword: "killable",
                found: s("killabel"),
            }
        );
        assert_eq!(problem("task t /a killable now"), Problem::Extra(s("now")));
        assert_eq!(
            parse("t.mcg", "task t /a killabel")
                .unwrap_err()
                .to_string(),
            "t.mcg:1: expected `killable`, found `killabel`; usage: task NAME PATH [killable]"
        );
    }

    /// S12: `thread`, `spawn ... by` and `default`.
    #[test]
    fn thread_commands() {
        assert_eq!(one("thread w-1"), Command::Thread { name: s("w-1") });
        assert_eq!(
            one("spawn child by t"),
            Command::Spawn {
                name: s("child"),
                by: s("t"),
            }
        );
        assert_eq!(one("default /a/b"), Command::Default { path: s("/a/b") });
        assert_eq!(one("default /"), Command::Default { path: s("/") });
        assert_eq!(
            one("expect-fail not-found spawn c by nobody"),
            Command::ExpectFail {
                error: ErrorName::NotFound,
                command: Box::new(Command::Spawn {
                    name: s("c"),
                    by: s("nobody"),
                }),
            }
        );
    }

    #[test]
    fn thread_commands_are_checked() {
        assert_eq!(problem("thread"), Problem::Missing("NAME"));
        assert_eq!(problem("thread w /a"), Problem::Extra(s("/a")));
        assert_eq!(
            problem("thread w@1"),
            Problem::Name {
                what: "NAME",
                token: s("w@1"),
            }
        );
        assert_eq!(problem("spawn c"), Problem::Missing("by"));
        assert_eq!(
            problem("spawn c from t"),
            Problem::Keyword {
                keyword: "by",
                found: s("from"),
            }
        );
        assert_eq!(problem("spawn c by"), Problem::Missing("TASK"));
        assert_eq!(problem("spawn c by t u"), Problem::Extra(s("u")));
        assert_eq!(
            problem("spawn c by t/1"),
            Problem::Name {
                what: "TASK",
                token: s("t/1"),
            }
        );
        assert_eq!(problem("default"), Problem::Missing("PATH"));
        assert_eq!(problem("default a"), Problem::Path(s("a")));
        assert_eq!(problem("default /a /b"), Problem::Extra(s("/b")));
        let usage = |line: &str| parse("t.mcg", line).unwrap_err().usage;
        assert_eq!(usage("thread"), Some("thread NAME"));
        assert_eq!(usage("spawn c"), Some("spawn NAME by TASK"));
        assert_eq!(usage("default"), Some("default PATH"));
    }

    #[test]
    fn allocation_commands() {
        assert_eq!(
            one("cache c 64"),
            Command::Cache {
                name: s("c"),
                size: 64,
                reclaimable: false,
                isolated: false,
            }
        );
        assert_eq!(
            one("cache dentry 192 reclaimable"),
            Command::Cache {
                name: s("dentry"),
                size: 192,
                reclaimable: true,
                isolated: false,
            }
        );
        assert_eq!(
            one("cache c 64 isolated"),
            Command::Cache {
                name: s("c"),
                size: 64,
                reclaimable: false,
                isolated: true,
            }
        );
        assert_eq!(
            one("cache d 64 reclaimable isolated"),
            Command::Cache {
                name: s("d"),
                size: 64,
                reclaimable: true,
                isolated: true,
            }
        );
        assert_eq!(
            one("alloc t c 1000 as objs"),
            Command::Alloc {
                task: s("t"),
                cache: s("c"),
                count: 1000,
                set: s("objs"),
            }
        );
        assert_eq!(
            one("kmem t 4K 100 as k"),
            Command::Kmem {
                task: s("t"),
                size: 4096,
                count: 100,
                set: s("k"),
            }
        );
        assert_eq!(
            one("anon t 1M as a"),
            Command::Anon {
                task: s("t"),
                size: 1 << 20,
                set: s("a"),
            }
        );
        assert_eq!(
            one("file t 8K as f"),
            Command::File {
                task: s("t"),
                size: 8192,
                set: s("f"),
            }
        );
    }

    #[test]
    fn free_takes_an_optional_count_and_an_optional_task() {
        let free = |count, by: Option<&str>| Command::Free {
            set: s("k"),
            count,
            by: by.map(s),
        };
        assert_eq!(one("free k"), free(None, None));
        assert_eq!(one("free k 10"), free(Some(10), None));
        assert_eq!(one("free k by u"), free(None, Some("u")));
        assert_eq!(one("free k 10 by u"), free(Some(10), Some("u")));
    }

    #[test]
    fn expect_compares_a_file_or_a_key_with_a_value() {
        assert_eq!(
            one("expect /a memory.current == 400K"),
            Command::Expect {
                actual: file_ref("/a", "memory.current", None),
                op: Op::Eq,
                expected: Value::Size(400 << 10),
                tolerance: None,
            }
        );
        assert_eq!(
            one("expect /a cgroup.stat:nr_dying_descendants == 0"),
            Command::Expect {
                actual: file_ref("/a", "cgroup.stat", Some("nr_dying_descendants")),
                op: Op::Eq,
                expected: Value::Size(0),
                tolerance: None,
            }
        );
        assert_eq!(
            one("expect /a memory.max == max"),
            Command::Expect {
                actual: file_ref("/a", "memory.max", None),
                op: Op::Eq,
                expected: Value::Max,
                tolerance: None,
            }
        );
    }

    #[test]
    fn every_operator_parses() {
        for (token, op) in [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<", Op::Lt),
            ("<=", Op::Le),
            (">", Op::Gt),
            (">=", Op::Ge),
        ] {
            let Command::Expect { op: parsed, .. } =
                one(&format!("expect / memory.current {token} 0"))
            else {
                panic!("not an expect");
            };
            assert_eq!(parsed, op);
            assert_eq!(op.as_str(), token);
        }
    }

    #[test]
    fn close_takes_a_tolerance_in_percent() {
        assert_eq!(
            one("expect /a memory.current ~ 30M 5"),
            Command::Expect {
                actual: file_ref("/a", "memory.current", None),
                op: Op::Close,
                expected: Value::Size(30 << 20),
                tolerance: Some(5),
            }
        );
        assert_eq!(
            problem("expect /a memory.current ~ 30M"),
            Problem::MissingTolerance
        );
        assert_eq!(
            problem("expect /a memory.current == 30M 5"),
            Problem::UnexpectedTolerance(s("5"))
        );
        assert_eq!(
            problem("expect /a memory.current ~ 30M 5%"),
            Problem::Number {
                what: "TOL",
                token: s("5%"),
            }
        );
    }

    #[test]
    fn expect_can_reference_another_file() {
        let expected = Value::Ref(file_ref("/a", "memory.stat", Some("anon")));
        for line in [
            "expect /a/b memory.current <= (/a memory.stat:anon)",
            "expect /a/b memory.current <= ( /a memory.stat:anon )",
        ] {
            let Command::Expect {
                expected: parsed, ..
            } = one(line)
            else {
                panic!("not an expect");
            };
            assert_eq!(parsed, expected, "{line}");
        }
        assert_eq!(
            one("expect /a memory.peak ~ (/a memory.current) 10"),
            Command::Expect {
                actual: file_ref("/a", "memory.peak", None),
                op: Op::Close,
                expected: Value::Ref(file_ref("/a", "memory.current", None)),
                tolerance: Some(10),
            }
        );
    }

    #[test]
    fn malformed_references_are_rejected() {
        assert_eq!(
            problem("expect /a memory.current == (/b memory.current"),
            Problem::Reference(s("(/b memory.current"))
        );
        assert_eq!(
            problem("expect /a memory.current == (/b)"),
            Problem::Reference(s("(/b)"))
        );
        assert_eq!(
            problem("expect /a memory.current == (/b memory.current x)"),
            Problem::Reference(s("(/b memory.current x)"))
        );
        assert_eq!(
            problem("expect /a memory.current == (b memory.current)"),
            Problem::Path(s("b"))
        );
    }

    #[test]
    fn expect_live_counts_set_members() {
        assert_eq!(
            one("expect-live f < 256"),
            Command::ExpectLive {
                set: s("f"),
                op: Op::Lt,
                count: 256,
                tolerance: None,
            }
        );
        assert_eq!(
            one("expect-live f ~ 256 5"),
            Command::ExpectLive {
                set: s("f"),
                op: Op::Close,
                count: 256,
                tolerance: Some(5),
            }
        );
        assert_eq!(problem("expect-live f ~ 256"), Problem::MissingTolerance);
        assert_eq!(
            problem("expect-live f == 256 5"),
            Problem::UnexpectedTolerance(s("5"))
        );
        assert_eq!(
            problem("expect-live f == 1K"),
            Problem::Number {
                what: "N",
                token: s("1K"),
            }
        );
    }

    #[test]
    fn expect_fail_wraps_any_command() {
        assert_eq!(
            one("expect-fail busy rmdir /a"),
            Command::ExpectFail {
                error: ErrorName::Busy,
                command: Box::new(Command::Rmdir { path: s("/a") }),
            }
        );
        assert_eq!(
            one("expect-fail limit anon t 1M as a"),
            Command::ExpectFail {
                error: ErrorName::Limit,
                command: Box::new(Command::Anon {
                    task: s("t"),
                    size: 1 << 20,
                    set: s("a"),
                }),
            }
        );
        for name in ErrorName::ALL {
            let line = format!("expect-fail {name} mkdir /a");
            assert!(
                matches!(one(&line), Command::ExpectFail { error, .. } if error == name),
                "{line}"
            );
        }
    }

    #[test]
    fn expect_fail_leaves_bad_names_for_the_engine_to_judge() {
        assert_eq!(
            one("expect-fail invalid mkdir /a/b@c"),
            Command::ExpectFail {
                error: ErrorName::Invalid,
                command: Box::new(Command::Mkdir { path: s("/a/b@c") }),
            }
        );
        assert_eq!(
            one("expect-fail invalid write /a no*such 1"),
            Command::ExpectFail {
                error: ErrorName::Invalid,
                command: Box::new(Command::Write {
                    path: s("/a"),
                    file: s("no*such"),
                    value: s("1"),
                }),
            }
        );
        assert_eq!(problem("mkdir /a/b@c"), Problem::Path(s("/a/b@c")));
        // Still a relative path is a mistake in the script, not a test of the engine.
        assert_eq!(
            problem("expect-fail invalid mkdir a"),
            Problem::Path(s("a"))
        );
    }

    #[test]
    fn unknown_commands_and_errors_are_rejected() {
        assert_eq!(problem("mkdri /a"), Problem::UnknownCommand(s("mkdri")));
        assert_eq!(
            problem("expect-fail oops mkdir /a"),
            Problem::ErrorName(s("oops"))
        );
        assert_eq!(problem("expect-fail busy"), Problem::Missing("COMMAND"));
        assert_eq!(
            problem("expect-fail busy frobnicate"),
            Problem::UnknownCommand(s("frobnicate"))
        );
    }

    #[test]
    fn arity_is_checked() {
        assert_eq!(problem("mkdir"), Problem::Missing("PATH"));
        assert_eq!(problem("mkdir /a /b"), Problem::Extra(s("/b")));
        assert_eq!(problem("kmem t 4K 100"), Problem::Missing("as"));
        assert_eq!(
            problem("kmem t 4K 100 to k"),
            Problem::Keyword {
                keyword: "as",
                found: s("to"),
            }
        );
        assert_eq!(
            problem("free k 10 on u"),
            Problem::Keyword {
                keyword: "by",
                found: s("on"),
            }
        );
        assert_eq!(
            problem("cache c 64 shrinkable"),
            Problem::Keyword {
                keyword: "reclaimable",
                found: s("shrinkable"),
            }
        );
        assert_eq!(problem("write /a memory.max 1 M"), Problem::Extra(s("M")));
    }

    #[test]
    fn a_bad_command_is_reported_with_its_synopsis() {
        let usage = |line: &str| parse("t.mcg", line).unwrap_err().usage;
        assert_eq!(usage("kmem t 4K as k"), Some("kmem TASK SIZE COUNT as SET"));
        assert_eq!(usage("free k by"), Some("free SET [COUNT] [by TASK]"));
        assert_eq!(usage("expect-fail"), Some("expect-fail ERROR COMMAND..."));
        // Inside expect-fail, the synopsis is the inner command's.
        assert_eq!(usage("expect-fail busy rmdir"), Some("rmdir PATH"));
        assert_eq!(usage("mkdri /a"), None);
        assert_eq!(
            parse("t.mcg", "kmem t 4K as k").unwrap_err().to_string(),
            "t.mcg:1: bad COUNT `as`: want a non-negative integer; \
             usage: kmem TASK SIZE COUNT as SET"
        );
        assert_eq!(
            parse("t.mcg", "mkdri /a").unwrap_err().to_string(),
            "t.mcg:1: unknown command `mkdri`"
        );
    }

    #[test]
    fn paths_are_absolute_with_valid_names() {
        for bad in ["a", "/a/", "//", "/a//b", "/b@", "/ä"] {
            let line = format!("mkdir {bad}");
            assert_eq!(problem(&line), Problem::Path(s(bad)), "{line:?}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(
            problem("task t@1 /a"),
            Problem::Name {
                what: "NAME",
                token: s("t@1"),
            }
        );
        assert_eq!(
            problem("kmem t 4K 1 as k/1"),
            Problem::Name {
                what: "SET",
                token: s("k/1"),
            }
        );
        assert_eq!(
            problem("expect /a memory.stat:an$on == 0"),
            Problem::Name {
                what: "KEY",
                token: s("an$on"),
            }
        );
    }

    #[test]
    fn numbers_are_checked() {
        assert_eq!(problem("kmem t 4X 1 as k"), Problem::Size(s("4X")));
        assert_eq!(
            problem("kmem t 4K -1 as k"),
            Problem::Number {
                what: "COUNT",
                token: s("-1"),
            }
        );
        assert_eq!(
            problem("free k all"),
            Problem::Number {
                what: "COUNT",
                token: s("all"),
            }
        );
    }

    #[test]
    fn a_syntax_error_names_file_and_line() {
        let error =
            parse("seed.mcg", "mkdir /a\n\n# fine so far\nmkdir /a b\nbogus\n").unwrap_err();
        assert_eq!(error.line, 4);
        assert_eq!(
            error.to_string(),
            "seed.mcg:4: unexpected `b`; usage: mkdir PATH"
        );
    }

    #[test]
    fn the_design_example_parses() {
        let source = "\
mkdir /a
mkdir /a/b
task t /a/b
kmem t 4K 100 as k
exit t
rmdir /a/b
expect /a cgroup.stat:nr_dying_descendants == 0
expect /a memory.current == 400K
free k
expect /a memory.current == 0
";
        let script = parse("seed.mcg", source).unwrap();
        let lines: Vec<usize> = script.statements.iter().map(|s| s.line).collect();
        assert_eq!(lines, (1..=10).collect::<Vec<_>>());
    }
}
