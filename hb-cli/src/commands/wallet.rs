//! `hb-cli wallet new|address`.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use ao_core::wallet::Wallet;

/// Wallet commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum WalletCommand {
    /// Generate an RSA-4096 Arweave wallet (JWK, file mode 0600) and print its address.
    New {
        /// Where to write it.
        #[arg(default_value = "wallet.json")]
        file: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the address of a wallet file.
    Address {
        /// The wallet (JWK).
        #[arg(default_value = "hb-data/wallet.json")]
        file: PathBuf,
    },
}

impl WalletCommand {
    pub(crate) fn execute(self) -> Result<()> {
        match self {
            Self::New { file, force } => {
                if file.exists() && !force {
                    bail!("{} exists; pass --force to overwrite it", file.display());
                }
                let wallet = Wallet::generate()?;
                wallet
                    .save(&file)
                    .with_context(|| format!("writing {}", file.display()))?;
                println!("{}", wallet.address_string());
            }
            Self::Address { file } => {
                let wallet =
                    Wallet::load(&file).with_context(|| format!("loading {}", file.display()))?;
                println!("{}", wallet.address_string());
            }
        }
        Ok(())
    }
}
