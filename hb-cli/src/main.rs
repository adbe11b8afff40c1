//! `hb-cli`: the AO-Core node and its operator commands.
//!
//! Exit codes: 0 success, 1 the command failed (the error chain is printed), 2 bad usage.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's allocator: glibc gives freed heap back to the kernel and takes
/// it again, page fault by page fault, at each large allocation (redb allocates a fresh
/// zeroed buffer for every page a checkpoint writes: a fifth of the store's write CPU).
/// mimalloc is built without transparent huge pages (`no_thp`): with them, each span it took
/// back from the kernel came back as a 2 MiB page zeroed in one go, and with 100 busy
/// processes those faults cost a tenth of the node's CPU and its worst latencies.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
