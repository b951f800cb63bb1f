//! One library call per command: what `main.rs` invokes after wiring.

use anyhow::Context;

use crate::config::Settings;
use crate::state;

/// Exit status for a configuration error.
pub const EXIT_CONFIG: u8 = 2;
/// Exit status when the command ran but its goal was not met (failures left, mismatches found).
pub const EXIT_INCOMPLETE: u8 = 1;

/// Opens the state database of `settings` (applying migrations).
pub async fn open_state(settings: &Settings) -> anyhow::Result<state::State> {
    state::open(&settings.database.url, settings.database.max_connections, settings.database.acquire_timeout)
        .await
        .with_context(|| format!("opening the database {}", settings.database.url))
}

/// `webex-archiver migrate`: apply the embedded migrations.
pub async fn migrate(settings: &Settings) -> anyhow::Result<u8> {
    open_state(settings).await?;
    tracing::info!(database = %settings.database.url, "database schema is up to date");
    Ok(0)
}

/// `webex-archiver config check`: print the effective configuration, secrets as `***`.
pub fn config_check(settings: &Settings) -> anyhow::Result<u8> {
    print!("{}", settings.to_redacted_toml());
    Ok(0)
}
