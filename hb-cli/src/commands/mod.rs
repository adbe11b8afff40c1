//! The subcommands, one per file.

mod id;
mod module;
mod process;
mod resolve;
mod serve;
mod store;
mod wallet;

use clap::{Parser, Subcommand};

/// An AO-Core node, wire-compatible with HyperBEAM.
#[derive(Debug, Parser)]
#[command(name = "hb-cli", version, about, long_about = None)]
#[command(after_help = "Exit codes: 0 success, 1 the command failed, 2 bad usage.")]
pub(crate) struct Cli {
    /// More logging (-v debug, -vv trace). `RUST_LOG` overrides it, e.g.
    /// `RUST_LOG=ao_http::request=warn,info`.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the node: serve HyperPATH requests over HTTP.
    Serve(serve::ServeCommand),
    /// Resolve one HyperPATH locally and print the result.
    Resolve(resolve::ResolveCommand),
    /// Print the IDs of a message given as JSON or as an HTTP message.
    Id(id::IdCommand),
    /// Add WASM modules to the store and evaluate aos code.
    Module(module::ModuleCommand),
    /// Inspect and maintain the node's store.
    Store(store::StoreCommand),
    /// Create a wallet or print its address.
    #[command(subcommand)]
    Wallet(wallet::WalletCommand),
    /// List the node's processes, or show one (slots, last result).
    Process(process::ProcessCommand),
}

impl Command {
    pub(crate) fn execute(self) -> anyhow::Result<()> {
        match self {
            Self::Serve(c) => c.execute(),
            Self::Resolve(c) => c.execute(),
            Self::Id(c) => c.execute(),
            Self::Wallet(c) => c.execute(),
            Self::Module(c) => c.execute(),
            Self::Store(c) => c.execute(),
            Self::Process(c) => c.execute(),
        }
    }
}

/// Structured logs with `tracing`: level from `-v`, per-module topics from `RUST_LOG`.
pub(crate) fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init();
}
