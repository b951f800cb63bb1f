//! The one typed settings tree: `config/default.toml` compiled in, then an optional
//! file, then `WEBEX_ARCHIVER__SECTION__KEY` environment variables.
//!
//! Nothing outside this module reads the environment: the standard `AWS_*`
//! variables are collected here too and handed to the storage layer.
//!
//! One file per concern: `settings.rs` the tree, `load.rs` its loading and validation,
//! `secrets.rs` the secrets and their `*_file` twins, `locations.rs` the database and
//! storage URLs. This module depends on no other module of the crate but `domain` and
//! `time`.

mod load;
mod locations;
mod secrets;
mod settings;

pub use crate::domain::{FileKind, Scope};
pub use load::{Needs, Sources};
pub use locations::{DatabaseUrl, StorageLocation, is_loopback};
pub use secrets::{Credentials, OAuthCredentials, OptionalSecret, TokenKey};
pub use settings::{
    ArchiveSettings, ChecksumAlgorithm, ComplianceSettings, DataSettings, DatabaseSettings, HttpSettings, LockMode,
    LogFormat, LogSettings, OAuthSettings, ObjectLockSettings, RetainFrom, Settings, ShutdownSettings, SignPayload,
    Since, StorageSettings, SyncSettings, WebexSettings,
};

/// The defaults, compiled into the binary; also the operator's reference.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// A bad configuration: which key, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {key}: {problem}")]
pub struct ConfigError {
    /// Dotted key, e.g. `webex.base_url`, or the file that could not be read.
    pub key: String,
    /// What is wrong, in words an operator can act on. Never contains a secret.
    pub problem: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self { key: key.into(), problem: problem.into() }
    }
}

/// Who runs this command, for the custody log: the OS user (`USER`, `LOGNAME`, else
/// `uid:<n>` from `/proc/self/status`) and the host name (`/proc/sys/kernel/hostname`,
/// `/etc/hostname`, else `HOSTNAME`). `unknown` when nothing says.
pub fn operator_identity() -> (String, String) {
    fn clean(value: String) -> Option<String> {
        let value: String = value.trim().chars().filter(|c| !c.is_control()).take(256).collect();
        (!value.is_empty()).then_some(value)
    }
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().and_then(clean))
        .or_else(|| {
            let status = std::fs::read_to_string("/proc/self/status").ok()?;
            let uid = status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.to_owned();
            Some(format!("uid:{uid}"))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok().and_then(clean))
        .or_else(|| std::env::var("HOSTNAME").ok().and_then(clean))
        .unwrap_or_else(|| "unknown".to_owned());
    (user, host)
}
