//! Command-line interface: flags and subcommands. Parsing only; the work is done by
//! library functions that `main.rs` calls.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
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
    /// The daemon: discovery every `sync.poll_interval` and archive workers, until SIGTERM/SIGINT.
    Run,
    /// One discovery pass up to now, then archive until nothing is left; exit 0 when every
    /// recording is archived or not downloadable, 1 when some failed or were left due.
    Sync(SyncArgs),
    /// List older windows on a resumable backfill cursor, then archive what was found.
    Backfill(BackfillArgs),
    /// Counts per state, bytes, cursors, the latest failures.
    Status(StatusArgs),
    /// Make failed recordings due again.
    Retry(RetryArgs),
    /// S3 Object Lock legal holds on archived recordings (every version of every object).
    #[command(subcommand)]
    Hold(HoldCommand),
    /// S3 Object Lock retention of archived recordings.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Re-read archived objects, recompute SHA-256, compare with the database and
    /// metadata.json; report missing, corrupt and unclaimed objects (exit 1 on any).
    Verify(VerifyArgs),
    /// A recording's custody log: what happened to it, oldest first (exit 1 when none).
    History(HistoryArgs),
    /// The attestation report of a period, per UTC day of createTime and per recording,
    /// from the database alone (exit 1 when the period has a gap).
    Report(ReportArgs),
    /// Run the Webex API simulator (for tests, demos, benchmarks); needs no settings.
    Simulate(crate::sim::SimulateArgs),
    /// Archive a simulated Webex org into the embedded default and check the result.
    Demo(DemoArgs),
}

/// `demo` flags.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Recordings in the simulated org.
    #[arg(long, default_value_t = 40)]
    pub recordings: usize,
    /// One size for every recording, in bytes (default: 256 KiB to 4 MiB, varied).
    #[arg(long, value_name = "BYTES")]
    pub size: Option<u64>,
    /// A harsher fault mix: 10% server errors, connection resets and stalls.
    #[arg(long)]
    pub faults: bool,
}

/// `verify` flags.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Check a random sample of N archived recordings (no unclaimed-object scan).
    #[arg(long, value_name = "N", conflicts_with = "all")]
    pub sample: Option<u32>,
    /// Check every archived recording and scan the prefix for unclaimed objects (the default).
    #[arg(long)]
    pub all: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Check the custody log's hash chains instead of the objects (exit 1 on a break).
    #[arg(long, conflicts_with_all = ["sample", "all"])]
    pub log: bool,
    /// Walk the daily manifests' chain and check every object they list is there with its
    /// size (with `--all`, its SHA-256 too); exit 1 on a problem.
    #[arg(long, conflicts_with_all = ["sample", "log"])]
    pub manifests: bool,
}

/// `history` flags.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The recording id.
    pub id: String,
    /// Print `{"id", "events": [...]}` as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `report` flags.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Start of the period (included): a day (2026-03-01, its start in UTC) or an RFC 3339 time.
    #[arg(long, value_name = "T", value_parser = crate::report::parse_time)]
    pub from: DateTime<Utc>,
    /// End of the period (excluded): a day (2026-04-01, its start in UTC) or an RFC 3339 time.
    #[arg(long, value_name = "T", value_parser = crate::report::parse_time)]
    pub to: DateTime<Utc>,
    /// The form: json (for scripts), csv (one row per recording), html (one self-contained page).
    #[arg(long, value_enum, default_value_t = crate::report::Format::Json)]
    pub format: crate::report::Format,
    /// Write the report to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

impl ReportArgs {
    /// The period the flags name, or why they name none (one message naming the flags).
    pub fn period(&self) -> Result<crate::report::Period, String> {
        crate::report::Period::new(self.from, self.to)
            .map_err(|e| format!("--from {} --to {}: {e}", self.from, self.to))
    }
}

/// `sync` flags.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Only list and record recordings; archive nothing.
    #[arg(long)]
    pub discover_only: bool,
}

/// `backfill` flags.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Start of the range: an RFC 3339 time or an age such as "365d".
    #[arg(long, value_parser = parse_since)]
    pub since: crate::config::Since,
    /// End of the range (default: now): an RFC 3339 time or an age.
    #[arg(long, value_parser = parse_since)]
    pub until: Option<crate::config::Since>,
    /// Only list and record recordings; archive nothing.
    #[arg(long)]
    pub discover_only: bool,
}

fn parse_since(text: &str) -> Result<crate::config::Since, String> {
    crate::config::Since::parse(text)
}

/// `status` flags.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON (keys are the state names) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `retry` flags.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct RetryArgs {
    /// Every failed recording.
    #[arg(long)]
    pub failed: bool,
    /// These recordings (failed or not downloadable).
    #[arg(long = "id", value_name = "ID", num_args = 1..)]
    pub ids: Vec<String>,
}

/// `hold` subcommands.
#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Put a legal hold on every version of every object of these recordings; exit 1 when
    /// one could not be held.
    Add(HoldArgs),
    /// Take the legal hold off every version of every object of these recordings.
    Remove(HoldArgs),
    /// The recordings under legal hold: id, since, by whom, why.
    List(HoldListArgs),
}

/// `hold add` / `hold remove` flags.
#[derive(Debug, Args)]
pub struct HoldArgs {
    /// The recordings (archived ones).
    #[arg(long = "id", value_name = "ID", num_args = 1.., required = true)]
    pub ids: Vec<String>,
    /// Why (recorded with the operator in the custody log).
    #[arg(long, value_name = "TEXT", value_parser = non_blank)]
    pub reason: String,
}

/// `hold list` flags.
#[derive(Debug, Args)]
pub struct HoldListArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `retention` subcommands.
#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Lengthen the retention of every version of every object of these recordings to T
    /// (never shortens one); exit 1 when one could not be extended.
    Extend(RetentionExtendArgs),
}

/// `retention extend` flags.
#[derive(Debug, Args)]
pub struct RetentionExtendArgs {
    /// The recordings (archived ones).
    #[arg(long = "id", value_name = "ID", num_args = 1.., required = true)]
    pub ids: Vec<String>,
    /// The new retain-until date: a day (2040-01-01, its start in UTC) or an RFC 3339 time.
    #[arg(long, value_name = "T", value_parser = crate::report::parse_time)]
    pub until: DateTime<Utc>,
}

fn non_blank(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() { Err("must not be empty".into()) } else { Ok(text.chars().take(2_000).collect()) }
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
