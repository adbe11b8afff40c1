//! `hb-cli`: the AO-Core node and its operator commands.
//!
//! Exit codes: 0 success, 1 the command failed (the error chain is printed), 2 bad usage.

use std::process::ExitCode;

use clap::Parser;

mod commands;
mod config;
mod node;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    commands::init_tracing(cli.verbose);
    match cli.command.execute() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
