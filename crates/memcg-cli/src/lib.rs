//! The library behind the `memcg` command: the `memcg replay` script
//! language (DESIGN.md §5) — its parser ([`script`]), its runner
//! ([`replay`]), the text of `memcg replay --help` ([`help`]) and the exit
//! statuses of the binary ([`Exit`]).
//!
//! It is a library so that fuzz targets and tests can drive the parser and
//! the runner without a process per input; the binary is a thin shell over
//! it.
//!
//! ```
//! let script = memcg_cli::script::parse("doc.mcg", "mkdir /a\nexpect /a memory.current == 0\n")
//!     .unwrap();
//! memcg_cli::replay::run(&script, &mut std::io::sink()).unwrap();
//! ```

#![warn(missing_docs)]

pub mod help;
pub mod replay;
pub mod script;

/// How `memcg` ends: its exit statuses, documented in `memcg replay --help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every script ran and every expectation held.
    Success,
    /// A command or expectation failed: `FILE:LINE: the command: what went
    /// wrong`.
    Failed,
    /// A script does not parse (or is not UTF-8): `FILE:LINE: what is
    /// wrong`; no script ran.
    Syntax,
    /// The command line is wrong (unknown subcommand or flag, missing FILE)
    /// or a FILE cannot be read; no script ran. `EX_USAGE` of sysexits.h.
    Usage,
}

impl Exit {
    /// Every status, in the order of their codes.
    pub const ALL: [Exit; 4] = [Exit::Success, Exit::Failed, Exit::Syntax, Exit::Usage];

    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failed => 1,
            Exit::Syntax => 2,
            Exit::Usage => 64,
        }
    }

    /// What the status means, in a line.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Success => "every script ran and every expectation held",
            Exit::Failed => {
                "a command or expectation failed: FILE:LINE: the command: what went wrong"
            }
            Exit::Syntax => {
                "a script does not parse or is not UTF-8: FILE:LINE: what is wrong; nothing ran"
            }
            Exit::Usage => {
                "usage error: unknown subcommand or flag, no FILE, or a FILE that cannot be read; nothing ran"
            }
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        std::process::ExitCode::from(exit.code())
    }
}
