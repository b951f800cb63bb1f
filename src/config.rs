//! The one typed settings tree: `config/default.toml` compiled in, then an optional
//! file, then `WEBEX_ARCHIVER__SECTION__KEY` environment variables.
//!
//! Nothing outside this module reads the environment: the standard `AWS_*`
//! variables are collected here too and handed to the storage layer.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

pub use crate::domain::{FileKind, Scope};

/// The defaults, compiled into the binary; also the operator's reference.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Environment prefix of the settings variables.
const ENV_PREFIX: &str = "WEBEX_ARCHIVER";

/// Keys whose environment variable is a comma-separated list.
const LIST_KEYS: &[&str] =
    &["webex.site_urls", "webex.download_bearer_hosts", "webex.download_hosts", "archive.include"];

/// The standard S3 client variables passed through to object_store (names as AWS spells them).
const AWS_PASSTHROUGH_PREFIX: &str = "AWS_";

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

/// A secret that may be unset. Empty strings are unset. Never printed.
#[derive(Clone, Default)]
pub struct OptionalSecret(Option<SecretString>);

impl OptionalSecret {
    /// A set secret.
    pub fn new(value: impl Into<String>) -> Self {
        let value: String = value.into();
        if value.is_empty() { Self(None) } else { Self(Some(SecretString::from(value))) }
    }
    /// The secret, if set.
    pub fn get(&self) -> Option<&SecretString> {
        self.0.as_ref()
    }
    /// Whether a value is set.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }
}

impl fmt::Debug for OptionalSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_set() { "***" } else { "" })
    }
}

impl<'de> Deserialize<'de> for OptionalSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::new(String::deserialize(d)?))
    }
}

impl Serialize for OptionalSecret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.is_set() { "***" } else { "" })
    }
}

/// The whole settings tree, validated.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Embedded defaults' directory.
    pub data: DataSettings,
    /// The Webex API and its credentials.
    pub webex: WebexSettings,
    /// The state database.
    pub database: DatabaseSettings,
    /// The object store holding the archive.
    pub storage: StorageSettings,
    /// Discovery.
    pub sync: SyncSettings,
    /// Transfers.
    pub archive: ArchiveSettings,
    /// Graceful shutdown.
    pub shutdown: ShutdownSettings,
    /// Health and metrics endpoint.
    pub http: HttpSettings,
    /// Logging.
    pub log: LogSettings,
}

/// `[data]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataSettings {
    /// Directory of the embedded SQLite state and local archive.
    pub dir: PathBuf,
}

/// `[webex]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebexSettings {
    /// API base, e.g. `https://webexapis.com/v1`.
    pub base_url: Url,
    /// Static bearer token.
    pub access_token: OptionalSecret,
    /// File holding the static bearer token.
    pub access_token_file: String,
    /// Listing to sweep.
    pub scope: Scope,
    /// Sites for the admin scope; empty = all.
    pub site_urls: Vec<String>,
    /// Client-side ceiling on API requests per second (0 = none).
    pub max_requests_per_second: f64,
    /// Hosts that may receive the bearer token on downloads (over https only).
    pub download_bearer_hosts: Vec<String>,
    /// Host patterns download links (and their redirects) may lead to: `example.webex.com`
    /// or `*.webex.com`; plain http only to a loopback address listed here.
    pub download_hosts: Vec<String>,
    /// Longest pause a `Retry-After` (or a run of 429s) may impose.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
    /// Time limit of one API request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Most listing pages followed in one window before it ends as a bad page (a loop
    /// that no `next` link repeats exactly). At least 1.
    pub max_pages_per_window: u32,
    /// OAuth2 refresh settings.
    pub oauth: OAuthSettings,
}

/// `[webex.oauth]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSettings {
    /// Client id (empty = OAuth not used).
    pub client_id: String,
    /// File holding the client id.
    pub client_id_file: String,
    /// Client secret.
    pub client_secret: OptionalSecret,
    /// File holding the client secret.
    pub client_secret_file: String,
    /// Initial refresh token.
    pub refresh_token: OptionalSecret,
    /// File holding the initial refresh token.
    pub refresh_token_file: String,
    /// Token endpoint; empty = `<base_url>/access_token`.
    pub token_url: String,
    /// Refresh when less than this remains.
    #[serde(with = "humantime_serde")]
    pub refresh_ahead: Duration,
}

/// `[database]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Database URL (may hold a password); empty = `url_file`, else SQLite in `data.dir`.
    pub url: DatabaseUrl,
    /// File holding the database URL.
    pub url_file: String,
    /// Pool size.
    pub max_connections: u32,
    /// Time limit to get a connection.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

/// A database URL whose password never reaches `Debug`, `Display` or `config check`.
#[derive(Clone, Default)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL itself, password included: for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether the URL names a Postgres server.
    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres://") || self.0.starts_with("postgresql://")
    }
    /// Whether the URL names a SQLite file.
    pub fn is_sqlite(&self) -> bool {
        self.0.starts_with("sqlite:")
    }
    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        match Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            _ => self.0.clone(),
        }
    }
}

impl From<String> for DatabaseUrl {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(String::deserialize(d)?))
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    /// `s3://bucket/prefix` or `file:///path`; empty = `data.dir/archive`.
    pub url: String,
    /// S3 endpoint override.
    pub endpoint: String,
    /// S3 region override.
    pub region: String,
    /// S3 access key id override.
    pub access_key_id: OptionalSecret,
    /// File holding the S3 access key id.
    pub access_key_id_file: String,
    /// S3 secret key override.
    pub secret_access_key: OptionalSecret,
    /// File holding the S3 secret key.
    pub secret_access_key_file: String,
    /// Plain-HTTP override: "", "true" or "false".
    pub allow_http: String,
    /// Payload signing: "auto", "always" or "never".
    pub sign_payload: SignPayload,
    /// Multipart part size, bytes.
    pub part_size: usize,
    /// Parts in flight per upload.
    pub upload_concurrency: usize,
    /// The `AWS_*` variables of the environment, collected here so that nothing else
    /// reads the environment. Values are treated as secrets.
    #[serde(skip_deserializing, serialize_with = "serialize_aws_env")]
    pub aws_env: BTreeMap<String, OptionalSecret>,
}

/// Whether upload bodies are covered by the S3 request signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignPayload {
    /// Over plain-HTTP endpoints only.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The `AWS_*` variables that are not secrets and may be shown by `config check`.
const AWS_PUBLIC: &[&str] = &[
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ALLOW_HTTP",
    "AWS_BUCKET",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
    "AWS_CONDITIONAL_PUT",
];

fn serialize_aws_env<S: Serializer>(env: &BTreeMap<String, OptionalSecret>, s: S) -> Result<S::Ok, S::Error> {
    let shown: BTreeMap<&str, String> = env
        .iter()
        .map(|(k, v)| {
            let value = match v.get() {
                Some(secret) if AWS_PUBLIC.contains(&k.as_str()) => secret.expose_secret().to_owned(),
                Some(_) => "***".to_owned(),
                None => String::new(),
            };
            (k.as_str(), value)
        })
        .collect();
    shown.serialize(s)
}

/// Where the first discovery pass starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// A fixed instant.
    At(DateTime<Utc>),
    /// An age before "now".
    Ago(Duration),
}

impl Since {
    /// Parses an RFC 3339 time or a humantime age ("90d").
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Ok(at) = DateTime::parse_from_rfc3339(text) {
            return Ok(Self::At(at.with_timezone(&Utc)));
        }
        humantime::parse_duration(text)
            .map(Self::Ago)
            .map_err(|_| format!("{text:?} is neither an RFC 3339 time nor an age such as \"90d\""))
    }
    /// The instant this names, seen from `now`.
    pub fn resolve(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match *self {
            Self::At(at) => at,
            Self::Ago(age) => crate::time::before(now, age),
        }
    }
}

impl<'de> Deserialize<'de> for Since {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Since {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::At(at) => s.serialize_str(&at.to_rfc3339()),
            Self::Ago(age) => s.serialize_str(&humantime::format_duration(*age).to_string()),
        }
    }
}

/// `[sync]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSettings {
    /// Start of the first pass.
    pub since: Since,
    /// Listing window width (at most 7 days).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Re-listed span before the cursor.
    #[serde(with = "humantime_serde")]
    pub overlap: Duration,
    /// Time between passes of `run`.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Discovery lease of one scope.
    #[serde(with = "humantime_serde")]
    pub discovery_lease: Duration,
}

/// `[archive]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSettings {
    /// Transfers at once.
    pub concurrency: usize,
    /// Attempts before `failed`.
    pub max_attempts: u32,
    /// First retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// Lease without progress.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Files kept per recording.
    pub include: Vec<FileKind>,
    /// Object key template of a recording's directory.
    pub key_template: String,
    /// Longest silence of a download.
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
}

/// `[shutdown]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownSettings {
    /// Time for in-flight transfers after a stop signal.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
}

/// `[http]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Listen address; empty = off.
    pub listen: String,
    /// Readiness limit on the last successful pass.
    #[serde(with = "humantime_serde")]
    pub ready_max_pass_age: Duration,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Line format.
    pub format: LogFormat,
    /// Filter when RUST_LOG is unset.
    pub filter: String,
}

/// The credentials the Webex client uses, resolved from settings and files.
#[derive(Clone)]
pub enum Credentials {
    /// A fixed bearer token.
    Static(SecretString),
    /// An OAuth2 refresh-token grant.
    OAuth(OAuthCredentials),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Static(_) => f.write_str("Credentials::Static(***)"),
            Self::OAuth(o) => write!(
                f,
                "Credentials::OAuth(client_id={}, token_url={})",
                o.client_id,
                o.token_url.as_ref().map_or("<webex.base_url>/access_token", Url::as_str)
            ),
        }
    }
}

/// Resolved OAuth2 settings.
#[derive(Clone)]
pub struct OAuthCredentials {
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: SecretString,
    /// Refresh token from the configuration (the database may hold a newer one).
    pub refresh_token: SecretString,
    /// Token endpoint as configured (https, or http to a loopback address); `None` when
    /// `webex.oauth.token_url` is empty, which means `<webex.base_url>/access_token` (the
    /// Webex client resolves it: see `webex::auth::token_endpoint`).
    pub token_url: Option<Url>,
    /// Refresh margin.
    pub refresh_ahead: Duration,
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
            self.database.url = DatabaseUrl(read_file_value(&self.database.url_file, "database.url_file")?);
        }
        if self.database.url.expose().is_empty() {
            let path = self.data.dir.join("state.db");
            self.database.url = DatabaseUrl(format!("sqlite://{}", path.display()));
        } else if !(self.database.url.is_postgres() || self.database.url.is_sqlite()) {
            return Err(ConfigError::new(
                "database.url",
                format!("{} is neither a postgres:// nor a sqlite:// URL", self.database.url.redacted()),
            ));
        } else if self.database.url.is_postgres() {
            Url::parse(self.database.url.expose())
                .map_err(|e| ConfigError::new("database.url", format!("not a valid URL: {e}")))?;
        }
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
            self.storage.access_key_id = OptionalSecret(Some(id));
        }
        if let Some(key) = secret_or_file(
            &self.storage.secret_access_key,
            &self.storage.secret_access_key_file,
            "storage.secret_access_key",
        )? {
            self.storage.secret_access_key = OptionalSecret(Some(key));
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

        if self.sync.window > Duration::from_secs(7 * 86_400) {
            return Err(ConfigError::new("sync.window", "must be at most 7d, the listing's default span"));
        }
        nonzero(self.sync.window, "sync.window")?;
        nonzero(self.sync.poll_interval, "sync.poll_interval")?;
        nonzero(self.sync.discovery_lease, "sync.discovery_lease")?;

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
        if needs == Needs::Webex && self.resolve_credentials()?.is_none() {
            return Err(ConfigError::new(
                "webex.access_token",
                "no Webex token: set webex.access_token, webex.access_token_file, or the webex.oauth settings",
            ));
        }
        Ok(())
    }

    /// The Webex credentials, with `*_file` values read. `None` when none are configured.
    pub fn credentials(&self) -> Result<Option<Credentials>, ConfigError> {
        self.resolve_credentials()
    }

    fn resolve_credentials(&self) -> Result<Option<Credentials>, ConfigError> {
        let oauth = &self.webex.oauth;
        let client_id = read_plain_or_file(&oauth.client_id, &oauth.client_id_file, "webex.oauth.client_id")?;
        if let Some(client_id) = client_id {
            let client_secret =
                secret_or_file(&oauth.client_secret, &oauth.client_secret_file, "webex.oauth.client_secret")?
                    .ok_or_else(|| {
                        ConfigError::new("webex.oauth.client_secret", "required when webex.oauth.client_id is set")
                    })?;
            let refresh_token =
                secret_or_file(&oauth.refresh_token, &oauth.refresh_token_file, "webex.oauth.refresh_token")?
                    .ok_or_else(|| {
                        ConfigError::new("webex.oauth.refresh_token", "required when webex.oauth.client_id is set")
                    })?;
            let token_url = if oauth.token_url.is_empty() {
                None
            } else {
                let url = Url::parse(&oauth.token_url)
                    .map_err(|e| ConfigError::new("webex.oauth.token_url", format!("not a valid URL: {e}")))?;
                require_https(&url, "webex.oauth.token_url")?;
                Some(url)
            };
            return Ok(Some(Credentials::OAuth(OAuthCredentials {
                client_id,
                client_secret,
                refresh_token,
                token_url,
                refresh_ahead: oauth.refresh_ahead,
            })));
        }
        Ok(secret_or_file(&self.webex.access_token, &self.webex.access_token_file, "webex.access_token")?
            .map(Credentials::Static))
    }

    /// The storage location named by `storage.url`.
    pub fn storage_location(&self) -> StorageLocation {
        StorageLocation::parse(&self.storage.url).expect("validated at load")
    }

    /// The effective configuration as TOML, secrets shown as `***`.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
    }
}

/// Where the archive lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageLocation {
    /// An S3 bucket and a key prefix (without leading or trailing `/`, maybe empty).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix.
        prefix: String,
    },
    /// A local directory.
    File {
        /// Absolute directory path.
        path: PathBuf,
    },
}

impl StorageLocation {
    /// Parses `s3://bucket/prefix` or `file:///path`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let url = Url::parse(text)
            .map_err(|e| ConfigError::new("storage.url", format!("{text:?} is not a valid URL: {e}")))?;
        match url.scheme() {
            "s3" => {
                let bucket = url.host_str().unwrap_or_default().to_owned();
                if bucket.is_empty() {
                    return Err(ConfigError::new("storage.url", "an s3:// URL needs a bucket: s3://bucket/prefix"));
                }
                let prefix = url.path().trim_matches('/').to_owned();
                // NOTE: the URL parser silently resolves "a/../b"; refuse it instead of guessing.
                let raw_path = text.splitn(4, '/').nth(3).unwrap_or_default();
                if raw_path.split('/').any(|p| p == ".." || p == ".")
                    || prefix.split('/').any(|p| p == ".." || p == ".")
                {
                    return Err(ConfigError::new("storage.url", "the prefix may not contain \".\" or \"..\" segments"));
                }
                Ok(Self::S3 { bucket, prefix })
            }
            "file" => {
                let path = url.to_file_path().map_err(|_| {
                    ConfigError::new("storage.url", format!("{text:?} is not an absolute file:// path"))
                })?;
                Ok(Self::File { path })
            }
            other => {
                Err(ConfigError::new("storage.url", format!("scheme {other:?} is not supported; use s3:// or file://")))
            }
        }
    }
}

/// Whether a URL's host is a loopback address (`127.0.0.0/8`, `::1`) or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Secrets and listings travel only over https, except to this machine (tests, the
/// simulator, a local proxy).
fn require_https(url: &Url, key: &str) -> Result<(), ConfigError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        other => Err(ConfigError::new(
            key,
            format!(
                "must be an https:// URL ({other}:// is allowed only to a loopback address such as 127.0.0.1): \
                 tokens and recordings would travel unprotected"
            ),
        )),
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

fn read_file_value(path: &str, key: &str) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(key, format!("cannot read {path}: {}", e.kind())))?;
    let value = text.trim().to_owned();
    if value.is_empty() {
        return Err(ConfigError::new(key, format!("{path} is empty")));
    }
    Ok(value)
}

fn secret_or_file(value: &OptionalSecret, file: &str, key: &str) -> Result<Option<SecretString>, ConfigError> {
    if let Some(secret) = value.get() {
        return Ok(Some(secret.clone()));
    }
    if file.is_empty() {
        return Ok(None);
    }
    Ok(Some(SecretString::from(read_file_value(file, &format!("{key}_file"))?)))
}

fn read_plain_or_file(value: &str, file: &str, key: &str) -> Result<Option<String>, ConfigError> {
    if !value.is_empty() {
        return Ok(Some(value.to_owned()));
    }
    if file.is_empty() {
        return Ok(None);
    }
    read_file_value(file, &format!("{key}_file")).map(Some)
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
