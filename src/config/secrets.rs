//! Secrets: values that never reach `Debug`, a log line or `config check`, each with a
//! `*_file` twin read at load time, and the Webex credentials resolved from them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use super::locations::require_https;
use super::{ConfigError, Settings};

/// A secret that may be unset. Empty strings are unset. Never printed.
#[derive(Clone, Default)]
pub struct OptionalSecret(Option<SecretString>);

impl OptionalSecret {
    /// A set secret.
    pub fn new(value: impl Into<String>) -> Self {
        let value: String = value.into();
        if value.is_empty() { Self(None) } else { Self(Some(SecretString::from(value))) }
    }
    /// A set secret, already wrapped (read from a `*_file` twin).
    pub(super) fn from_secret(secret: SecretString) -> Self {
        Self(Some(secret))
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

pub(super) fn serialize_aws_env<S: Serializer>(
    env: &BTreeMap<String, OptionalSecret>,
    s: S,
) -> Result<S::Ok, S::Error> {
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

/// `database.token_key`: the 32 bytes that encrypt the stored OAuth tokens. Never printed.
pub struct TokenKey(SecretBox<[u8; 32]>);

impl TokenKey {
    /// A key of these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(SecretBox::new(Box::new(bytes)))
    }
    /// The key, for the cipher only.
    pub fn expose(&self) -> &SecretBox<[u8; 32]> {
        &self.0
    }
    /// Reads the base64 text of a key; `key` names the setting in the error (which never
    /// quotes the value).
    fn parse(text: &SecretString, key: &str) -> Result<Self, ConfigError> {
        let how = "32 random bytes in base64, e.g. the output of `openssl rand -base64 32`";
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.expose_secret().trim())
            .map_err(|_| ConfigError::new(key, format!("is not base64: it must be {how}")))?;
        let len = bytes.len();
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| ConfigError::new(key, format!("decodes to {len} bytes, not 32: it must be {how}")))?;
        Ok(Self::from_bytes(bytes))
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(***)")
    }
}

impl Settings {
    /// The key encrypting the stored OAuth tokens (`database.token_key` or its file), if
    /// one is configured.
    pub fn token_key(&self) -> Result<Option<TokenKey>, ConfigError> {
        let db = &self.database;
        let Some(text) = secret_or_file(&db.token_key, &db.token_key_file, "database.token_key")? else {
            return Ok(None);
        };
        let key = if db.token_key.is_set() { "database.token_key" } else { "database.token_key_file" };
        TokenKey::parse(&text, key).map(Some)
    }

    /// Whether OAuth credentials are configured (whose tokens the database keeps).
    pub fn uses_oauth(&self) -> bool {
        !self.webex.oauth.client_id.is_empty() || !self.webex.oauth.client_id_file.is_empty()
    }

    /// Settings that work but leave something unprotected, in words an operator can act
    /// on: `config check` prints them and `run` logs them at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.uses_oauth() && !self.database.token_key.is_set() && self.database.token_key_file.is_empty() {
            warnings.push(
                "database.token_key is not set: the OAuth refresh and access tokens are stored in the database \
                 unencrypted, so whoever reads the database or its backups can act as the integration; set \
                 database.token_key or database.token_key_file (32 random bytes in base64: `openssl rand -base64 32`)"
                    .to_owned(),
            );
        }
        warnings.extend(self.database.url.tls_warning());
        warnings
    }

    /// The Webex credentials, with `*_file` values read. `None` when none are configured.
    pub fn credentials(&self) -> Result<Option<Credentials>, ConfigError> {
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
}

pub(super) fn read_file_value(path: &str, key: &str) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(key, format!("cannot read {path}: {}", e.kind())))?;
    let value = text.trim().to_owned();
    if value.is_empty() {
        return Err(ConfigError::new(key, format!("{path} is empty")));
    }
    Ok(value)
}

pub(super) fn secret_or_file(
    value: &OptionalSecret,
    file: &str,
    key: &str,
) -> Result<Option<SecretString>, ConfigError> {
    if let Some(secret) = value.get() {
        return Ok(Some(secret.clone()));
    }
    if file.is_empty() {
        return Ok(None);
    }
    Ok(Some(SecretString::from(read_file_value(file, &format!("{key}_file"))?)))
}

pub(super) fn read_plain_or_file(value: &str, file: &str, key: &str) -> Result<Option<String>, ConfigError> {
    if !value.is_empty() {
        return Ok(Some(value.to_owned()));
    }
    if file.is_empty() {
        return Ok(None);
    }
    read_file_value(file, &format!("{key}_file")).map(Some)
}
