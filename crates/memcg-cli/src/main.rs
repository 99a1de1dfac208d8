//! `memcg`: the command-line front end of the memcg library.
//!
//! `memcg replay FILE...` drives the real engine with scripts in the language
//! of DESIGN.md §5. Every script is parsed before the first one runs; each
//! runs in a fresh hierarchy. Exit status ([`Exit`]): 0 when every script
//! succeeds, 1 when a command or expectation fails, 2 when a script does not
//! parse (or is not UTF-8), 64 (`EX_USAGE`) for a bad command line or a
//! FILE that cannot be read. `memcg replay --help` lists the language, its
//! error kinds and these statuses.
//!
//! `memcg sim [SCENARIO]` runs a scenario on the real engine (churn,
//! removal cost, protection, OOM kills) and reports and plots what it
//! measured (see the `sim` module).

mod sim;

use std::io::{self, Read};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use memcg_cli::{help, replay, script, Exit};

/// Linux memory cgroups inside a Rust process.
#[derive(Debug, Parser)]
#[command(name = "memcg", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Run scripts against the real engine, in order, each in a fresh hierarchy.
    #[command(after_help = help::replay_help())]
    Replay {
        /// Script files; `-` reads standard input.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
    },
    /// Run a scenario on the real engine (churn, removal cost, protection,
    /// OOM kills) and report and plot what it measured.
    Sim(sim::SimArgs),
}

/// Why `memcg replay` stops.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// A script file could not be read.
    #[error("{file}: cannot read: {source}; name a readable script file, or `-` for stdin")]
    Read {
        /// The file as named on the command line.
        file: String,
        /// Why.
        source: io::Error,
    },
    /// A script does not parse.
    #[error(transparent)]
    Syntax(#[from] script::SyntaxError),
    /// A command or expectation failed.
    #[error(transparent)]
    Failed(#[from] replay::Failure),
}

impl CliError {
    fn exit(&self) -> Exit {
        match self {
            CliError::Read { .. } => Exit::Usage,
            CliError::Syntax(_) => Exit::Syntax,
            CliError::Failed(_) => Exit::Failed,
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // `--help` and `--version` print to stdout and succeed; every
            // other complaint of clap is a usage error (clap would exit 2,
            // which is a syntax error of a script here).
            let exit = if error.use_stderr() {
                Exit::Usage
            } else {
                Exit::Success
            };
            // Nothing useful is left to do if printing fails.
            let _ = error.print();
            return exit.into();
        }
    };
    let files = match cli.command {
        Commands::Replay { files } => files,
        Commands::Sim(args) => return sim::main(args),
    };
    match replay_files(&files) {
        Ok(()) => Exit::Success.into(),
        Err(error) => {
            eprintln!("{error}");
            error.exit().into()
        }
    }
}

/// Parses every script, then runs them in order, stopping at the first
/// failure.
fn replay_files(files: &[String]) -> Result<(), CliError> {
    let scripts = files
        .iter()
        .map(|file| {
            let (name, source) = load(file)?;
            Ok(script::parse_bytes(name, &source)?)
        })
        .collect::<Result<Vec<_>, CliError>>()?;
    let mut stdout = io::stdout().lock();
    for script in &scripts {
        replay::run(script, &mut stdout)?;
    }
    Ok(())
}

/// Reads a script: its name for messages, and its bytes.
fn load(file: &str) -> Result<(&str, Vec<u8>), CliError> {
    let read_error = |source| CliError::Read {
        file: file.to_string(),
        source,
    };
    if file == "-" {
        let mut source = Vec::new();
        io::stdin().read_to_end(&mut source).map_err(read_error)?;
        Ok(("<stdin>", source))
    } else {
        Ok((file, std::fs::read(file).map_err(read_error)?))
    }
}
