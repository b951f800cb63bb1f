//! The settings tree: one struct per section of `config/default.toml`, which documents
//! every key with its default and unit.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use super::{DatabaseUrl, FileKind, OptionalSecret, Scope};

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
    /// Evidence for compliance: deletions at the source.
    pub compliance: ComplianceSettings,
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
    /// Key (32 bytes, base64) encrypting the stored OAuth tokens; empty = unencrypted.
    pub token_key: OptionalSecret,
    /// File holding the token key.
    pub token_key_file: String,
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
    /// S3 additional checksum sent with every PUT and part: "crc64nvme" or "sha256".
    pub checksum: ChecksumAlgorithm,
    /// Multipart part size, bytes.
    pub part_size: usize,
    /// Parts in flight per upload.
    pub upload_concurrency: usize,
    /// S3 Object Lock retention applied to every object written.
    pub object_lock: ObjectLockSettings,
    /// The `AWS_*` variables of the environment, collected here so that nothing else
    /// reads the environment. Values are treated as secrets.
    #[serde(skip_deserializing, serialize_with = "super::secrets::serialize_aws_env")]
    pub aws_env: BTreeMap<String, OptionalSecret>,
}

/// `[storage.object_lock]`: the S3 Object Lock retention the archiver applies to every
/// object version it writes, and checks the bucket for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectLockSettings {
    /// `none`, `governance` or `compliance`.
    pub mode: LockMode,
    /// How long each object is retained (from `retain_from`).
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// What the retention period counts from.
    pub retain_from: RetainFrom,
}

impl ObjectLockSettings {
    /// The mode and period to apply, when Object Lock is on.
    pub fn retention(&self) -> Option<(LockMode, Duration)> {
        (self.mode != LockMode::None).then_some((self.mode, self.retention))
    }
}

/// An S3 Object Lock retention mode (or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// No retention applied by the archiver.
    None,
    /// Users with `s3:BypassGovernanceRetention` may shorten or remove it.
    Governance,
    /// No one can shorten or remove it, not even the account's root user.
    Compliance,
}

impl LockMode {
    /// The S3 name (`GOVERNANCE`, `COMPLIANCE`), `NONE` for none.
    pub fn s3_name(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Governance => "GOVERNANCE",
            Self::Compliance => "COMPLIANCE",
        }
    }

    /// Reads an S3 mode name (case-insensitive).
    pub fn from_s3_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_uppercase().as_str() {
            "GOVERNANCE" => Some(Self::Governance),
            "COMPLIANCE" => Some(Self::Compliance),
            _ => None,
        }
    }

    /// Whether an object in mode `self` is retained at least as strictly as `wanted`
    /// asks (compliance covers governance).
    pub fn covers(self, wanted: LockMode) -> bool {
        match wanted {
            Self::None => true,
            Self::Governance => self != Self::None,
            Self::Compliance => self == Self::Compliance,
        }
    }
}

/// What an object's retention period counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetainFrom {
    /// The recording's `createTime` (the meeting): every copy of it ends together.
    CreateTime,
    /// The time it was archived.
    ArchivedAt,
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

/// The S3 additional checksum (`x-amz-checksum-*`) every PUT and every part carries, so
/// that the store refuses bytes changed on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumAlgorithm {
    /// CRC-64/NVME: cheap, and a whole-object checksum even for multipart uploads.
    Crc64nvme,
    /// SHA-256, for stores that do not know CRC-64/NVME.
    Sha256,
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
    /// Scopes (sites of the admin listing) listed at once by one pass. At least 1.
    pub site_concurrency: usize,
}

/// `[compliance]`
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ComplianceSettings {
    /// Time between deletion sweeps of a scope (`0s` = never).
    #[serde(with = "humantime_serde")]
    pub deletion_sweep: Duration,
    /// How far back a deletion sweep lists (by createTime).
    #[serde(with = "humantime_serde")]
    pub deletion_horizon: Duration,
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

impl Settings {
    /// The effective configuration as TOML, secrets shown as `***`.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
    }
}
