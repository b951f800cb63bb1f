//! Command-line interface: flags and subcommands. Parsing only; the work is done by
//! library functions that `main.rs` calls.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Keeps a complete, verifiable archive of Webex meeting recordings in S3-compatible storage.
#[derive(Debug, Parser)]
#[command(name = "webex-archiver", version, about, long_about = None)]
pub struct Cli {
    /// Settings file (TOML) applied over the compiled-in defaults; see config/default.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the embedded SQLite state and local archive (overrides `data.dir`).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the embedded database migrations to `database.url`.
    Migrate,
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run the Webex API simulator (for tests and manual runs); needs no settings.
    Simulate(crate::sim::SimulateArgs),
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the settings and print the effective configuration (secrets as ***).
    Check(ConfigCheckArgs),
}

/// `config check` flags.
#[derive(Debug, Args)]
pub struct ConfigCheckArgs {}
