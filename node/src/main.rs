//! The `loom` binary: `loom run` starts a node, `loom config check` validates and prints the
//! resolved configuration, `loom version` prints the build. Errors before logging is up are one
//! plain line on stderr and a non-zero exit.

mod cli;
mod migrations;
mod run;
mod services;
mod shutdown;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

/// Exit code for a configuration error.
const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure to start or a fatal failure while running.
const EXIT_FAILURE: u8 = 1;

/// Prints one line to stderr. The only place Loom writes to stderr.
pub(crate) fn fatal_line(message: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "loom: error: {message}");
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Run(args) => run::main(args),
        cli::Command::Config { command: cli::ConfigCommand::Check(args) } => cli::config_check(args),
        cli::Command::Version => cli::version(),
    }
}
