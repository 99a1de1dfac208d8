//! `memcg`: the command-line front end of the memcg library.
//!
//! `memcg replay FILE...` drives the real engine with scripts in the language
//! of DESIGN.md §5. Every script is parsed before the first one runs; each
//! runs in a fresh hierarchy. Exit status: 0 when every script succeeds, 1
//! when a command or expectation fails, 2 when a script cannot be read or
//! does not parse.
//!
//! `memcg sim [SCENARIO]` runs a workload on the real engine and reports
//! what dying groups cost (see the `sim` module).

mod replay;
mod script;
mod sim;

use std::io::{self, Read};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Replay {
        /// Script files; `-` reads standard input.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
    },
    /// Run a workload on the real engine and report what dying groups cost.
    Sim(sim::SimArgs),
}

/// Why `memcg` stops.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// A script file could not be read.
    #[error("{file}: cannot read: {source}")]
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
    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Read { .. } | CliError::Syntax(_) => ExitCode::from(2),
            CliError::Failed(_) => ExitCode::from(1),
        }
    }
}

fn main() -> ExitCode {
    let files = match Cli::parse().command {
        Commands::Replay { files } => files,
        Commands::Sim(args) => return sim::main(args),
    };
    match replay_files(&files) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            error.exit_code()
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
            Ok(script::parse(name, &source)?)
        })
        .collect::<Result<Vec<_>, CliError>>()?;
    let mut stdout = io::stdout().lock();
    for script in &scripts {
        replay::run(script, &mut stdout)?;
    }
    Ok(())
}

/// Reads a script: its name for messages, and its text.
fn load(file: &str) -> Result<(&str, String), CliError> {
    let read_error = |source| CliError::Read {
        file: file.to_string(),
        source,
    };
    if file == "-" {
        let mut source = String::new();
        io::stdin()
            .read_to_string(&mut source)
            .map_err(read_error)?;
        Ok(("<stdin>", source))
    } else {
        Ok((file, std::fs::read_to_string(file).map_err(read_error)?))
    }
}
