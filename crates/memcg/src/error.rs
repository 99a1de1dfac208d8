//! The one error type of the engine, with the six kinds scripts name.

use thiserror::Error;

/// A `Result` whose error is [`Error`](enum@Error).
pub type Result<T> = std::result::Result<T, Error>;

/// The kind of an [`Error`](enum@Error), as `memcg replay`'s `expect-fail` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The group has children or tasks.
    Busy,
    /// A group of that path exists already.
    Exists,
    /// No group (or parent) of that path.
    NotFound,
    /// Malformed input: a value, a name, a file, or an operation the root refuses.
    Invalid,
    /// A charge failed at a `memory.max` even after reclaim.
    Limit,
    /// Reclaim could not free what was asked; trying again may succeed.
    Again,
}

impl ErrorKind {
    /// Every kind, in the order DESIGN.md §5 lists them.
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Busy,
        ErrorKind::Exists,
        ErrorKind::NotFound,
        ErrorKind::Invalid,
        ErrorKind::Limit,
        ErrorKind::Again,
    ];

    /// The kind a script names (`busy`, `not-found`, ...).
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The name scripts use: `busy`, `exists`, `not-found`, `invalid`, `limit`, `again`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::Busy => "busy",
            ErrorKind::Exists => "exists",
            ErrorKind::NotFound => "not-found",
            ErrorKind::Invalid => "invalid",
            ErrorKind::Limit => "limit",
            ErrorKind::Again => "again",
        }
    }
}

/// What went wrong, with what a user needs to act on it. An operation that
/// returns an error changed no state, except `again` from `memory.reclaim`,
/// which keeps what it did reclaim (as the kernel's does).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum Error {
    /// `rmdir` of a group in use.
    #[error("busy: {path} has {children} children and {tasks} tasks; remove the children and move the tasks out first")]
    Busy {
        /// The group's path.
        path: String,
        /// Live child groups.
        children: usize,
        /// Attached tasks.
        tasks: usize,
    },
    /// `rmdir` of the default group (S12).
    #[error("busy: {0} is the default group; make another group the default (Hierarchy::set_default_group) first")]
    DefaultGroup(String),
    /// The OS could not start a thread (`EAGAIN` of `pthread_create`).
    #[error("again: the OS could not start a thread ({0}); retry later, or use fewer threads")]
    Spawn(String),
    /// The system refused memory the group's limits allowed.
    #[error("again: the system could not provide {0} bytes now; free memory or ask for less")]
    NoMemory(usize),
    /// `mkdir` of an existing path.
    #[error("exists: {0} exists already")]
    Exists(String),
    /// A path that names no group.
    #[error("not-found: {0} does not exist")]
    NotFound(String),
    /// Malformed input.
    #[error("invalid: {0}")]
    Invalid(String),
    /// A charge failed at a limit after reclaim.
    #[error("limit: charging {pages} pages hit memory.max of {path} ({max} bytes), and reclaim could not make room; raise the limit or free memory")]
    Limit {
        /// The group whose limit failed the charge.
        path: String,
        /// The size of the charge in pages.
        pages: usize,
        /// That group's `memory.max` in bytes.
        max: u64,
    },
    /// Reclaim fell short.
    #[error("again: reclaimed {reclaimed} of {wanted} bytes from {path}; nothing more is reclaimable now")]
    Again {
        /// The group reclaimed from.
        path: String,
        /// Bytes asked for.
        wanted: u64,
        /// Bytes reclaimed.
        reclaimed: u64,
    },
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Busy { .. } | Error::DefaultGroup(_) => ErrorKind::Busy,
            Error::Exists(_) => ErrorKind::Exists,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Invalid(_) => ErrorKind::Invalid,
            Error::Limit { .. } => ErrorKind::Limit,
            Error::Again { .. } | Error::Spawn(_) | Error::NoMemory(_) => ErrorKind::Again,
        }
    }
}
