//! Locations: the state database's URL (whose password is a secret) and the archive's
//! storage URL, and the rule that secrets travel over https only.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use super::{ConfigError, Settings};

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
    /// The URL with its password replaced by `***`: the userinfo's, and a `password`
    /// query parameter's. A URL that cannot be parsed is shown only when it cannot hold
    /// a password.
    pub fn redacted(&self) -> String {
        let Ok(mut url) = Url::parse(&self.0) else {
            let lower = self.0.to_ascii_lowercase();
            return if lower.contains('@') || lower.contains("password") {
                "*** (a database URL that cannot be parsed)".to_owned()
            } else {
                self.0.clone()
            };
        };
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        if url.query_pairs().any(|(k, _)| k.eq_ignore_ascii_case("password")) {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k.eq_ignore_ascii_case("password") { "***".to_owned() } else { v.into_owned() };
                    (k.into_owned(), v)
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.to_string()
    }

    /// Why a Postgres URL leaves the connection unprotected: a server that is not on
    /// this machine, reached without `sslmode=verify-full` (TLS that checks the server's
    /// certificate and name). `None` for SQLite, a local server, or verify-full.
    pub fn tls_warning(&self) -> Option<String> {
        if !self.is_postgres() {
            return None;
        }
        let url = Url::parse(&self.0).ok()?;
        let param =
            |name: &str| url.query_pairs().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.into_owned());
        // libpq's `host` parameter wins over the URL's host (a socket directory, often).
        let host = param("host").or_else(|| url.host_str().map(str::to_owned)).unwrap_or_default();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let local = bare.is_empty()
            || bare.starts_with('/')
            || bare.eq_ignore_ascii_case("localhost")
            || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let mode = param("sslmode").or_else(|| param("ssl-mode"));
        if local || mode.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("verify-full")) {
            return None;
        }
        let asked = mode.map(|m| format!(" (it asks for sslmode={m})")).unwrap_or_default();
        Some(format!(
            "database.url: the Postgres server {host} is not on this machine and the URL does not ask for \
             sslmode=verify-full{asked}: the connection, which carries the OAuth tokens and the archive's state, can \
             be read or altered in transit; add sslmode=verify-full (and sslrootcert=<CA file> when the server's \
             certificate is not from a public CA)"
        ))
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
pub(super) fn require_https(url: &Url, key: &str) -> Result<(), ConfigError> {
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

impl Settings {
    /// The storage location named by `storage.url`.
    pub fn storage_location(&self) -> StorageLocation {
        StorageLocation::parse(&self.storage.url).expect("validated at load")
    }
}
