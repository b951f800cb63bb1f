//! Loading: the compiled-in defaults, then `--config FILE`, then the environment; and
//! validation, with a message naming the key of the first bad setting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use super::locations::require_https;
use super::secrets::{read_file_value, secret_or_file};
use super::{ConfigError, DEFAULT_TOML, DatabaseUrl, FileKind, LockMode, OptionalSecret, Settings, StorageLocation};

/// Environment prefix of the settings variables.
const ENV_PREFIX: &str = "WEBEX_ARCHIVER";

/// Keys whose environment variable is a comma-separated list.
const LIST_KEYS: &[&str] =
    &["webex.site_urls", "webex.download_bearer_hosts", "webex.download_hosts", "archive.include"];

/// The most scopes one discovery pass may list at once (`sync.site_concurrency`): each
/// holds database connections and a lease, and Webex's limits are shared anyway.
pub const MAX_SITE_CONCURRENCY: usize = 64;

/// The standard S3 client variables passed through to object_store (names as AWS spells them).
const AWS_PASSTHROUGH_PREFIX: &str = "AWS_";

/// Where the settings come from, besides the compiled-in defaults.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// `--config FILE`.
    pub file: Option<PathBuf>,
    /// `--data-dir DIR`, which wins over `data.dir`.
    pub data_dir: Option<PathBuf>,
    /// The process environment (all variables; only ours and `AWS_*` are used).
    pub env: BTreeMap<String, String>,
}

impl Sources {
    /// The sources of a real process: its environment and the given flags.
    pub fn from_process(file: Option<PathBuf>, data_dir: Option<PathBuf>) -> Self {
        Self { file, data_dir, env: std::env::vars().collect() }
    }
}

/// What a command needs beyond a valid settings tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Only the database and the store (migrate, status, retry, verify).
    StateOnly,
    /// Also Webex credentials (run, sync, backfill, config check).
    Webex,
}

impl Settings {
    /// Loads and validates the settings. `needs` says whether Webex credentials must be present.
    pub fn load(sources: &Sources, needs: Needs) -> Result<Self, ConfigError> {
        let mut builder =
            config::Config::builder().add_source(config::File::from_str(DEFAULT_TOML, config::FileFormat::Toml));
        if let Some(file) = &sources.file {
            if !file.is_file() {
                return Err(ConfigError::new(
                    file.display().to_string(),
                    "the configuration file given with --config does not exist or is not a file",
                ));
            }
            let format = match file.extension().and_then(|e| e.to_str()) {
                Some("json") => config::FileFormat::Json,
                Some("yaml" | "yml") => config::FileFormat::Yaml,
                _ => config::FileFormat::Toml,
            };
            builder = builder.add_source(config::File::from(file.as_path()).format(format));
        }
        let ours: config::Map<String, String> = sources
            .env
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut env = config::Environment::with_prefix(ENV_PREFIX)
            .separator("__")
            .list_separator(",")
            .try_parsing(true)
            .source(Some(ours));
        for key in LIST_KEYS {
            env = env.with_list_parse_key(key);
        }
        builder = builder.add_source(env);

        let merged = builder.build().map_err(describe_config_error)?;
        let mut settings: Settings = serde_path_to_error::deserialize(merged).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::new(if key == "." { "configuration".into() } else { key }, clean_serde_message(e.inner()))
        })?;

        settings.storage.aws_env = sources
            .env
            .iter()
            .filter(|(k, _)| k.starts_with(AWS_PASSTHROUGH_PREFIX))
            .map(|(k, v)| (k.clone(), OptionalSecret::new(v.clone())))
            .collect();
        if let Some(dir) = &sources.data_dir {
            settings.data.dir = dir.clone();
        }
        settings.validate(needs)?;
        Ok(settings)
    }

    fn validate(&mut self, needs: Needs) -> Result<(), ConfigError> {
        // Lists given through the environment may carry empty items ("a,,b" or "").
        for list in [&mut self.webex.site_urls, &mut self.webex.download_bearer_hosts] {
            list.retain(|s| !s.trim().is_empty());
        }
        if !matches!(self.webex.base_url.scheme(), "http" | "https") || self.webex.base_url.host().is_none() {
            return Err(ConfigError::new("webex.base_url", "must be an http(s) URL with a host"));
        }
        require_https(&self.webex.base_url, "webex.base_url")?;
        if !self.webex.oauth.token_url.is_empty() {
            let token_url = Url::parse(&self.webex.oauth.token_url)
                .map_err(|e| ConfigError::new("webex.oauth.token_url", format!("not a valid URL: {e}")))?;
            require_https(&token_url, "webex.oauth.token_url")?;
        }
        if self.webex.max_requests_per_second < 0.0 || !self.webex.max_requests_per_second.is_finite() {
            return Err(ConfigError::new(
                "webex.max_requests_per_second",
                "must be 0 (no ceiling) or a positive number",
            ));
        }
        for host in &self.webex.download_bearer_hosts {
            if host.contains('/') || host.contains(':') {
                return Err(ConfigError::new(
                    "webex.download_bearer_hosts",
                    format!("{host:?} must be a bare host name such as \"example.webex.com\""),
                ));
            }
        }
        self.webex.download_hosts.retain(|s| !s.trim().is_empty());
        for pattern in &mut self.webex.download_hosts {
            *pattern = pattern.trim().to_ascii_lowercase();
            check_host_pattern(pattern).map_err(|problem| ConfigError::new("webex.download_hosts", problem))?;
        }
        if self.webex.max_retry_after < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "webex.max_retry_after",
                "must be at least 1s (every Retry-After pause lasts at least one second)",
            ));
        }
        nonzero(self.webex.request_timeout, "webex.request_timeout")?;
        if self.webex.max_pages_per_window == 0 {
            return Err(ConfigError::new("webex.max_pages_per_window", "must be at least 1"));
        }

        // Database URL: from its file, else empty means the embedded SQLite default.
        if self.database.url.expose().is_empty() && !self.database.url_file.is_empty() {
            self.database.url = DatabaseUrl::from(read_file_value(&self.database.url_file, "database.url_file")?);
        }
        if self.database.url.expose().is_empty() {
            let path = self.data.dir.join("state.db");
            self.database.url = DatabaseUrl::from(format!("sqlite://{}", path.display()));
        } else if !(self.database.url.is_postgres() || self.database.url.is_sqlite()) {
            return Err(ConfigError::new(
                "database.url",
                format!("{} is neither a postgres:// nor a sqlite:// URL", self.database.url.redacted()),
            ));
        } else if self.database.url.is_postgres() {
            Url::parse(self.database.url.expose())
                .map_err(|e| ConfigError::new("database.url", format!("not a valid URL: {e}")))?;
        }
        // The token key: read its file and check its form now, so a bad key is a
        // configuration error and not a surprise at the first refresh.
        self.token_key()?;
        if self.database.max_connections == 0 {
            return Err(ConfigError::new("database.max_connections", "must be at least 1"));
        }

        // Storage URL.
        if self.storage.url.is_empty() {
            let dir = absolute(&self.data.dir.join("archive"));
            self.storage.url = Url::from_directory_path(&dir)
                .map_err(|_| {
                    ConfigError::new("data.dir", format!("{} cannot be made into a file:// URL", dir.display()))
                })?
                .to_string();
        }
        StorageLocation::parse(&self.storage.url)?;
        if let Some(id) =
            secret_or_file(&self.storage.access_key_id, &self.storage.access_key_id_file, "storage.access_key_id")?
        {
            self.storage.access_key_id = OptionalSecret::from_secret(id);
        }
        if let Some(key) = secret_or_file(
            &self.storage.secret_access_key,
            &self.storage.secret_access_key_file,
            "storage.secret_access_key",
        )? {
            self.storage.secret_access_key = OptionalSecret::from_secret(key);
        }
        if !matches!(self.storage.allow_http.as_str(), "" | "true" | "false") {
            return Err(ConfigError::new("storage.allow_http", "must be \"true\", \"false\" or empty"));
        }
        if self.storage.part_size < 5 * 1024 * 1024 {
            return Err(ConfigError::new(
                "storage.part_size",
                "must be at least 5242880 bytes (5 MiB), the S3 minimum",
            ));
        }
        if self.storage.upload_concurrency == 0 {
            return Err(ConfigError::new("storage.upload_concurrency", "must be at least 1"));
        }

        let lock = self.storage.object_lock;
        match lock.mode {
            LockMode::None if !lock.retention.is_zero() => {
                return Err(ConfigError::new(
                    "storage.object_lock.retention",
                    "is set but storage.object_lock.mode is \"none\": set a mode, or retention = \"0s\"",
                ));
            }
            LockMode::None => {}
            _ => {
                if lock.retention < Duration::from_secs(86_400)
                    || lock.retention > Duration::from_secs(100 * 366 * 86_400)
                {
                    return Err(ConfigError::new(
                        "storage.object_lock.retention",
                        "must be between 1d and 100y when storage.object_lock.mode is not \"none\"",
                    ));
                }
                if !self.storage.url.starts_with("s3://") {
                    return Err(ConfigError::new(
                        "storage.object_lock.mode",
                        "needs an s3:// storage.url (Object Lock is a feature of S3 buckets)",
                    ));
                }
            }
        }

        if self.sync.window > Duration::from_secs(7 * 86_400) {
            return Err(ConfigError::new("sync.window", "must be at most 7d, the listing's default span"));
        }
        nonzero(self.sync.window, "sync.window")?;
        nonzero(self.sync.poll_interval, "sync.poll_interval")?;
        nonzero(self.sync.discovery_lease, "sync.discovery_lease")?;
        if !(1..=MAX_SITE_CONCURRENCY).contains(&self.sync.site_concurrency) {
            return Err(ConfigError::new(
                "sync.site_concurrency",
                format!("must be between 1 and {MAX_SITE_CONCURRENCY} (scopes listed at once)"),
            ));
        }

        let horizon = self.compliance.deletion_horizon;
        if horizon < Duration::from_secs(86_400) || horizon > Duration::from_secs(3_650 * 86_400) {
            return Err(ConfigError::new(
                "compliance.deletion_horizon",
                "must be between 1d and 3650d (Webex keeps recordings at most 3,600 days)",
            ));
        }

        if self.archive.concurrency == 0 {
            return Err(ConfigError::new("archive.concurrency", "must be at least 1"));
        }
        if self.archive.max_attempts == 0 {
            return Err(ConfigError::new("archive.max_attempts", "must be at least 1"));
        }
        nonzero(self.archive.lease, "archive.lease")?;
        nonzero(self.archive.stall_timeout, "archive.stall_timeout")?;
        if !self.archive.include.contains(&FileKind::Recording) {
            return Err(ConfigError::new("archive.include", "must contain \"recording\""));
        }
        self.archive.include.sort();
        self.archive.include.dedup();
        crate::domain::KeyTemplate::parse(&self.archive.key_template)
            .map_err(|problem| ConfigError::new("archive.key_template", problem))?;

        if !self.http.listen.is_empty() {
            self.http.listen.parse::<std::net::SocketAddr>().map_err(|_| {
                ConfigError::new(
                    "http.listen",
                    format!("{:?} is not an address such as 127.0.0.1:9464", self.http.listen),
                )
            })?;
        }

        // Credentials: read the files now so a missing file is a configuration error.
        if needs == Needs::Webex && self.credentials()?.is_none() {
            return Err(ConfigError::new(
                "webex.access_token",
                "no Webex token: set webex.access_token, webex.access_token_file, or the webex.oauth settings",
            ));
        }
        Ok(())
    }
}

/// Checks one `webex.download_hosts` pattern: a host name, an IP address, or `*.` and a
/// domain of at least two labels.
fn check_host_pattern(pattern: &str) -> Result<(), String> {
    let host = pattern.strip_prefix("*.").unwrap_or(pattern);
    let bad = || {
        format!(
            "{pattern:?} is not a host pattern: use a host name (\"example.webex.com\", \"127.0.0.1\") or \
             \"*.\" and a domain (\"*.webex.com\"), without scheme, port or path"
        )
    };
    if host.is_empty()
        || host.contains('*')
        || host.contains('/')
        || (host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err())
        || host.starts_with('.')
        || host.ends_with('.')
        || host.contains("..")
    {
        return Err(bad());
    }
    if pattern.starts_with("*.") && !host.contains('.') {
        return Err(format!("{pattern:?} is too broad: a wildcard needs a domain of at least two labels"));
    }
    Ok(())
}

fn nonzero(d: Duration, key: &str) -> Result<(), ConfigError> {
    if d.is_zero() { Err(ConfigError::new(key, "must be longer than zero")) } else { Ok(()) }
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf())
    }
}

/// Turns the config crate's errors into a key and a problem.
fn describe_config_error(e: config::ConfigError) -> ConfigError {
    match e {
        config::ConfigError::FileParse { uri, cause } => {
            ConfigError::new(uri.unwrap_or_else(|| "configuration file".into()), format!("cannot be parsed: {cause}"))
        }
        config::ConfigError::Foreign(cause) => ConfigError::new("configuration", cause.to_string()),
        config::ConfigError::NotFound(key) => ConfigError::new(key, "missing"),
        config::ConfigError::Type { key, unexpected, expected, .. } => ConfigError::new(
            key.unwrap_or_else(|| "configuration".into()),
            format!("expected {expected}, found {unexpected}"),
        ),
        other => ConfigError::new("configuration", other.to_string()),
    }
}

/// The deserializer's complaint. Secrets are strings and every string is accepted where
/// a secret is expected, so a type complaint never quotes a secret.
fn clean_serde_message(e: &config::ConfigError) -> String {
    e.to_string()
}
