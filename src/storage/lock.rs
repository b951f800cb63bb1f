//! S3 Object Lock: the few S3 calls object_store does not make, signed with its own
//! credentials and SigV4 signer (`AwsAuthorizer`), against the same endpoint and bucket.
//! There is no second S3 client on the data path: objects are written by object_store,
//! then their retention and legal hold are set here, on the exact version written.
//!
//! - `PUT ?retention&versionId=` and `PUT ?legal-hold&versionId=` (with `Content-MD5`, which
//!   S3 requires for both);
//! - `HEAD ?versionId=`, which returns a version's `x-amz-object-lock-*` headers (the one
//!   read every store here implements: moto has no `GET ?retention`);
//! - `GET ?versions&prefix=`, every version of a key, for legal holds;
//! - `GET ?object-lock` and `GET ?versioning`, the bucket's posture.
//!
//! Every answer is read with a cap, XML is parsed leniently, and an S3 error is reported
//! as its status, code and message (never a header: nothing signed is shown).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use md5::{Digest as _, Md5};
use object_store::aws::{AwsAuthorizer, AwsCredentialProvider};
use object_store::client::HttpRequestBody;
use object_store::path::Path;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::StorageError;
use crate::config::{LockMode, ObjectLockSettings};

/// Largest S3 answer read (a page of 1,000 versions is about 400 KiB).
const MAX_ANSWER: usize = 4 << 20;
/// Time limit of one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// What S3 leaves unencoded in a key (RFC 3986 unreserved characters and `/`), as
/// object_store and the SigV4 canonical URI do.
const KEY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');
/// The same for a query value (`/` encoded too).
const QUERY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The Object Lock state of one object version, as its HEAD reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionLock {
    /// The version id HEAD answered for.
    pub version: Option<String>,
    /// Retention mode, when the version has one.
    pub mode: Option<LockMode>,
    /// Retained until, when the version has a retention.
    pub retain_until: Option<DateTime<Utc>>,
    /// Whether a legal hold is on.
    pub legal_hold: bool,
}

impl VersionLock {
    /// Whether this version is retained in `mode` (or stricter) until at least `until`.
    pub fn covers(&self, mode: LockMode, until: DateTime<Utc>) -> bool {
        self.mode.is_some_and(|m| m.covers(mode)) && self.retain_until.is_some_and(|u| u >= until.trunc_subsecs(0))
    }
}

/// The bucket's Object Lock and versioning configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BucketPosture {
    /// Object Lock is enabled on the bucket.
    pub object_lock: bool,
    /// The default retention's mode, if the bucket has one.
    pub default_mode: Option<LockMode>,
    /// The default retention's period in days (a period in years is converted, 365 days
    /// each, as S3 counts them).
    pub default_days: Option<u32>,
    /// Versioning status: `Enabled`, `Suspended`, or `None` when never enabled.
    pub versioning: Option<String>,
    /// Why Object Lock reads as off when the store does not implement it at all.
    pub note: Option<String>,
}

/// A bucket's posture judged against `storage.object_lock`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct PostureCheck {
    /// Mismatches with the settings: configuration errors, each naming the setting.
    pub errors: Vec<String>,
    /// What leaves the archive less protected than it could be.
    pub warnings: Vec<String>,
}

impl BucketPosture {
    /// Judges this posture of `bucket` against the settings: with a retention mode, the
    /// bucket must have Object Lock (hence versioning); without one, a bucket without
    /// Object Lock is only a warning.
    pub fn check(&self, bucket: &str, settings: ObjectLockSettings) -> PostureCheck {
        let mut check = PostureCheck::default();
        let why = self.note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default();
        let versioned = self.versioning.as_deref() == Some("Enabled");
        match settings.mode {
            LockMode::None => {
                if !self.object_lock {
                    check.warnings.push(format!(
                        "{bucket} has no Object Lock{why}: anyone with write access to it can change or delete the \
                         archive (storage.object_lock.mode = \"none\")"
                    ));
                }
            }
            mode => {
                let name = format!("{mode:?}").to_lowercase();
                if !self.object_lock {
                    check.errors.push(format!(
                        "storage.object_lock.mode = \"{name}\", but {bucket} has no Object Lock{why}: create the bucket \
                         with Object Lock enabled (see the README), or set mode = \"none\""
                    ));
                } else if !versioned {
                    check.errors.push(format!(
                        "storage.object_lock.mode = \"{name}\", but versioning of {bucket} is {}: Object Lock needs it \
                         enabled",
                        self.versioning.as_deref().unwrap_or("off")
                    ));
                }
                if self.default_mode == Some(LockMode::Compliance) && mode == LockMode::Governance {
                    check.warnings.push(format!(
                        "{bucket}'s default retention is COMPLIANCE: objects are retained in compliance mode even \
                         though storage.object_lock.mode = \"governance\""
                    ));
                }
            }
        }
        if self.object_lock && !versioned && settings.mode == LockMode::None {
            check.warnings.push(format!("{bucket} has Object Lock but versioning is not enabled"));
        }
        check
    }
}

/// Signs and sends the Object Lock calls of one bucket.
#[derive(Clone)]
pub struct LockClient {
    http: reqwest::Client,
    credentials: AwsCredentialProvider,
    region: Arc<str>,
    /// The bucket's URL, without a trailing `/`: `https://host/bucket` (path style) or
    /// `https://bucket.host` (virtual-hosted style).
    bucket_url: Arc<str>,
    sign_payload: bool,
}

impl fmt::Debug for LockClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockClient").field("bucket_url", &self.bucket_url).finish_non_exhaustive()
    }
}

impl LockClient {
    /// A client for `bucket` at `endpoint` (`None`: AWS S3 in `region`).
    pub(super) fn new(
        credentials: AwsCredentialProvider,
        endpoint: Option<&str>,
        region: &str,
        bucket: &str,
        virtual_hosted: bool,
        sign_payload: bool,
    ) -> Result<Self, reqwest::Error> {
        let bucket_url = match (endpoint, virtual_hosted) {
            (Some(endpoint), true) => endpoint.trim_end_matches('/').to_owned(),
            (Some(endpoint), false) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        let http = reqwest::Client::builder().timeout(CALL_TIMEOUT).build()?;
        Ok(Self { http, credentials, region: region.into(), bucket_url: bucket_url.into(), sign_payload })
    }

    fn object_url(&self, key: &Path, query: &str) -> String {
        let key = utf8_percent_encode(key.as_ref(), KEY_ENCODE);
        if query.is_empty() {
            format!("{}/{key}", self.bucket_url)
        } else {
            format!("{}/{key}?{query}", self.bucket_url)
        }
    }

    fn version_query(name: &str, version: Option<&str>) -> String {
        match version {
            Some(v) => format!("{name}&versionId={}", utf8_percent_encode(v, QUERY_ENCODE)),
            None => name.to_owned(),
        }
    }

    /// Sets the retention of one version (`None`: the current one).
    pub async fn put_retention(
        &self,
        key: &Path,
        version: Option<&str>,
        mode: LockMode,
        until: DateTime<Utc>,
    ) -> Result<(), StorageError> {
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            mode.s3_name(),
            until.trunc_subsecs(0).format("%Y-%m-%dT%H:%M:%S%.3fZ")
        );
        let url = self.object_url(key, &Self::version_query("retention", version));
        self.send(http::Method::PUT, &url, Bytes::from(body), "set retention", key).await.map(drop)
    }

    /// Turns the legal hold of one version on or off.
    pub async fn put_legal_hold(&self, key: &Path, version: Option<&str>, on: bool) -> Result<(), StorageError> {
        let body = format!(
            "<LegalHold xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>{}</Status></LegalHold>",
            if on { "ON" } else { "OFF" }
        );
        let url = self.object_url(key, &Self::version_query("legal-hold", version));
        self.send(http::Method::PUT, &url, Bytes::from(body), "set legal hold", key).await.map(drop)
    }

    /// The lock state of one version (`None`: the current one); `Ok(None)` when there is
    /// no such version.
    pub async fn head(&self, key: &Path, version: Option<&str>) -> Result<Option<VersionLock>, StorageError> {
        let query = version.map(|v| format!("versionId={}", utf8_percent_encode(v, QUERY_ENCODE))).unwrap_or_default();
        let url = self.object_url(key, &query);
        match self.send(http::Method::HEAD, &url, Bytes::new(), "read object lock", key).await {
            Ok((headers, _)) => Ok(Some(lock_from_headers(&headers))),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every version id of exactly `key` (not of other keys it prefixes), delete markers
    /// left out.
    pub async fn versions(&self, key: &Path) -> Result<Vec<String>, StorageError> {
        let mut found = Vec::new();
        let mut markers: Option<(String, String)> = None;
        // A bound on pages: a key with more than 1,000,000 versions is not the archiver's.
        for _ in 0..1_000 {
            let mut query = format!("versions&prefix={}", utf8_percent_encode(key.as_ref(), QUERY_ENCODE));
            if let Some((k, v)) = &markers {
                query.push_str(&format!(
                    "&key-marker={}&version-id-marker={}",
                    utf8_percent_encode(k, QUERY_ENCODE),
                    utf8_percent_encode(v, QUERY_ENCODE)
                ));
            }
            let url = format!("{}?{query}", self.bucket_url);
            let (_, body) = self.send(http::Method::GET, &url, Bytes::new(), "list versions", key).await?;
            let page = parse_versions(&body).map_err(|problem| self.problem("list versions", key, problem))?;
            found.extend(page.versions.into_iter().filter(|v| v.key == key.as_ref()).map(|v| v.version_id));
            match (page.is_truncated, page.next_key_marker, page.next_version_id_marker) {
                (true, Some(k), Some(v)) if markers.as_ref() != Some(&(k.clone(), v.clone())) => {
                    markers = Some((k, v));
                }
                (true, ..) => return Err(self.problem("list versions", key, "a truncated page gave no next marker")),
                (false, ..) => return Ok(found),
            }
        }
        Err(self.problem("list versions", key, "more than 1,000 pages of versions"))
    }

    /// The bucket's Object Lock configuration and versioning.
    pub async fn posture(&self) -> Result<BucketPosture, StorageError> {
        let bucket = Path::from("");
        let url = format!("{}?object-lock", self.bucket_url);
        let (object_lock, default_mode, default_days, note) = match self
            .send(http::Method::GET, &url, Bytes::new(), "read the bucket's Object Lock configuration", &bucket)
            .await
        {
            Ok((_, body)) => {
                let config = parse_lock_configuration(&body)
                    .map_err(|problem| self.problem("read the bucket's Object Lock configuration", &bucket, problem))?;
                (config.enabled, config.mode, config.days, None)
            }
            Err(StorageError::ObjectLock { status: Some(status), code, .. })
                if status == 404 || status == 501 || code.as_deref() == Some("NotImplemented") =>
            {
                let note = match code.as_deref() {
                    Some("ObjectLockConfigurationNotFoundError") => None,
                    Some(code) => Some(format!("the store answered {status} {code}")),
                    None => Some(format!("the store answered {status}")),
                };
                (false, None, None, note)
            }
            Err(e) => return Err(e),
        };
        let url = format!("{}?versioning", self.bucket_url);
        let versioning =
            match self.send(http::Method::GET, &url, Bytes::new(), "read the bucket's versioning", &bucket).await {
                Ok((_, body)) => {
                    parse_versioning(&body).map_err(|p| self.problem("read the bucket's versioning", &bucket, p))?
                }
                Err(StorageError::ObjectLock { status: Some(404 | 501), .. }) => None,
                Err(StorageError::ObjectLock { code: Some(code), .. }) if code == "NotImplemented" => None,
                Err(e) => return Err(e),
            };
        Ok(BucketPosture { object_lock, default_mode, default_days, versioning, note })
    }

    fn problem(&self, operation: &'static str, key: &Path, problem: impl Into<String>) -> StorageError {
        StorageError::ObjectLock {
            operation,
            key: self.describe(key),
            status: None,
            code: None,
            message: problem.into(),
        }
    }

    fn describe(&self, key: &Path) -> String {
        if key.as_ref().is_empty() { self.bucket_url.to_string() } else { format!("{}/{key}", self.bucket_url) }
    }

    /// Signs and sends one call; returns the answer's headers and (capped) body, or the
    /// S3 error it carried.
    async fn send(
        &self,
        method: http::Method,
        url: &str,
        body: Bytes,
        operation: &'static str,
        key: &Path,
    ) -> Result<(http::HeaderMap, Bytes), StorageError> {
        let credential = self.credentials.get_credential().await.map_err(|e| StorageError::Store {
            operation,
            key: self.describe(key),
            source: e,
        })?;
        let mut builder = http::Request::builder().method(method.clone()).uri(url);
        if !body.is_empty() {
            let md5 = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&body));
            builder = builder.header("content-md5", md5).header("content-type", "application/xml");
        }
        let mut request = builder
            .body(HttpRequestBody::from(body.clone()))
            .map_err(|e| self.problem(operation, key, format!("cannot build the request: {e}")))?;
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .with_sign_payload(self.sign_payload || !body.is_empty())
            .try_authorize(&mut request, None)
            .map_err(|e| StorageError::Store { operation, key: self.describe(key), source: e })?;
        let mut call = self.http.request(method.clone(), url).headers(request.headers().clone());
        if !body.is_empty() {
            call = call.body(body);
        }
        let network = |e: reqwest::Error| self.problem(operation, key, format!("no answer: {}", e.without_url()));
        let mut response = call.send().await.map_err(network)?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut read = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(network)? {
            if read.len() + chunk.len() > MAX_ANSWER {
                return Err(self.problem(operation, key, format!("the answer is larger than {MAX_ANSWER} bytes")));
            }
            read.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok((headers, Bytes::from(read)));
        }
        let error = parse_error(&read);
        if status == http::StatusCode::NOT_FOUND && method == http::Method::HEAD {
            return Err(StorageError::NotFound { key: self.describe(key) });
        }
        if status == http::StatusCode::NOT_FOUND && matches!(error.code.as_deref(), Some("NoSuchKey" | "NoSuchVersion"))
        {
            return Err(StorageError::NotFound { key: self.describe(key) });
        }
        Err(StorageError::ObjectLock {
            operation,
            key: self.describe(key),
            status: Some(status.as_u16()),
            code: error.code,
            message: error.message.unwrap_or_default(),
        })
    }
}

/// Reads the `x-amz-object-lock-*` and `x-amz-version-id` headers of a HEAD; what cannot
/// be read counts as absent.
pub fn lock_from_headers(headers: &http::HeaderMap) -> VersionLock {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    VersionLock {
        version: text("x-amz-version-id").map(str::to_owned),
        mode: text("x-amz-object-lock-mode").and_then(LockMode::from_s3_name),
        retain_until: text("x-amz-object-lock-retain-until-date").and_then(parse_s3_time),
        legal_hold: text("x-amz-object-lock-legal-hold").is_some_and(|v| v.eq_ignore_ascii_case("ON")),
    }
}

/// An S3 timestamp: RFC 3339 (`2033-01-01T00:00:00.000Z`, what AWS sends), or the
/// HTTP-date form some stores send in headers.
pub fn parse_s3_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| httpdate::parse_http_date(text.trim()).ok().map(DateTime::<Utc>::from))
}

/// An S3 error document's code and message (each at most 200 characters, control
/// characters dropped).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct S3ErrorBody {
    /// `Code`.
    pub code: Option<String>,
    /// `Message`.
    pub message: Option<String>,
}

fn clip(text: String) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// Reads an S3 error document; anything unreadable gives no code.
pub fn parse_error(body: &[u8]) -> S3ErrorBody {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Error {
        code: Option<String>,
        message: Option<String>,
    }
    match std::str::from_utf8(body).ok().and_then(|t| quick_xml::de::from_str::<Error>(t).ok()) {
        Some(e) => S3ErrorBody { code: e.code.map(clip), message: e.message.map(clip) },
        None => S3ErrorBody::default(),
    }
}

/// A bucket's Object Lock configuration, as read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LockConfiguration {
    /// `ObjectLockEnabled` is `Enabled`.
    pub enabled: bool,
    /// The default retention's mode.
    pub mode: Option<LockMode>,
    /// The default retention's period in days (`Years` × 365).
    pub days: Option<u32>,
}

/// Reads a `GetObjectLockConfiguration` answer.
pub fn parse_lock_configuration(body: &[u8]) -> Result<LockConfiguration, String> {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Retention {
        mode: Option<String>,
        days: Option<String>,
        years: Option<String>,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase", default)]
    struct Rule {
        default_retention: Option<Retention>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Configuration {
        #[serde(default)]
        object_lock_enabled: Option<String>,
        #[serde(default)]
        rule: Option<Rule>,
    }
    let text = std::str::from_utf8(body).map_err(|_| "the Object Lock configuration is not UTF-8".to_owned())?;
    let config: Configuration =
        quick_xml::de::from_str(text).map_err(|e| clip(format!("unreadable Object Lock configuration: {e}")))?;
    let retention = config.rule.and_then(|r| r.default_retention).unwrap_or_default();
    let number = |v: Option<String>| v.and_then(|v| v.trim().parse::<u32>().ok());
    let days = number(retention.days).or_else(|| number(retention.years).map(|y| y.saturating_mul(365)));
    Ok(LockConfiguration {
        enabled: config.object_lock_enabled.is_some_and(|v| v.trim() == "Enabled"),
        mode: retention.mode.as_deref().and_then(LockMode::from_s3_name),
        days,
    })
}

/// Reads a `GetBucketVersioning` answer: its `Status`, if any.
pub fn parse_versioning(body: &[u8]) -> Result<Option<String>, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Versioning {
        #[serde(default)]
        status: Option<String>,
    }
    let text = std::str::from_utf8(body).map_err(|_| "the versioning configuration is not UTF-8".to_owned())?;
    let v: Versioning =
        quick_xml::de::from_str(text).map_err(|e| clip(format!("unreadable versioning configuration: {e}")))?;
    Ok(v.status.map(|s| clip(s.trim().to_owned())).filter(|s| !s.is_empty()))
}

/// One page of `ListObjectVersions`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct VersionsPage {
    /// The versions listed (delete markers left out).
    pub versions: Vec<ListedVersion>,
    /// More pages follow.
    pub is_truncated: bool,
    /// Where the next page starts.
    pub next_key_marker: Option<String>,
    /// Where the next page starts.
    pub next_version_id_marker: Option<String>,
}

/// One version listed.
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListedVersion {
    /// Its key.
    pub key: String,
    /// Its version id.
    pub version_id: String,
}

/// Reads a `ListObjectVersions` page.
pub fn parse_versions(body: &[u8]) -> Result<VersionsPage, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Result {
        #[serde(default)]
        is_truncated: Option<String>,
        #[serde(default)]
        next_key_marker: Option<String>,
        #[serde(default)]
        next_version_id_marker: Option<String>,
        #[serde(default, rename = "Version")]
        versions: Vec<ListedVersion>,
    }
    let text = std::str::from_utf8(body).map_err(|_| "the version list is not UTF-8".to_owned())?;
    let page: Result = quick_xml::de::from_str(text).map_err(|e| clip(format!("unreadable version list: {e}")))?;
    Ok(VersionsPage {
        versions: page.versions,
        is_truncated: page.is_truncated.is_some_and(|t| t.trim() == "true"),
        next_key_marker: page.next_key_marker.filter(|m| !m.is_empty()),
        next_version_id_marker: page.next_version_id_marker.filter(|m| !m.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn settings(mode: LockMode) -> ObjectLockSettings {
        ObjectLockSettings {
            mode,
            retention: Duration::from_secs(86_400 * 365),
            retain_from: crate::config::RetainFrom::CreateTime,
        }
    }

    #[test]
    fn a_posture_is_judged_against_the_settings() {
        let locked = BucketPosture {
            object_lock: true,
            default_mode: Some(LockMode::Compliance),
            default_days: Some(1),
            versioning: Some("Enabled".into()),
            note: None,
        };
        assert_eq!(locked.check("s3://b", settings(LockMode::Compliance)), PostureCheck::default());
        let governance = locked.check("s3://b", settings(LockMode::Governance));
        assert!(governance.errors.is_empty() && governance.warnings.len() == 1, "{governance:?}");
        let plain =
            BucketPosture { object_lock: false, default_mode: None, default_days: None, versioning: None, note: None };
        let check = plain.check("s3://b", settings(LockMode::Compliance));
        assert_eq!(check.errors.len(), 1);
        assert!(
            check.errors[0].starts_with("storage.object_lock.mode = \"compliance\", but s3://b has no Object Lock"),
            "{check:?}"
        );
        let none = plain.check("s3://b", settings(LockMode::None));
        assert!(none.errors.is_empty() && none.warnings[0].contains("has no Object Lock"), "{none:?}");
        let suspended = BucketPosture { versioning: Some("Suspended".into()), ..locked };
        assert!(
            suspended.check("s3://b", settings(LockMode::Governance)).errors[0]
                .contains("versioning of s3://b is Suspended")
        );
    }

    #[test]
    fn a_lock_configuration_is_read_with_its_default_retention() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>COMPLIANCE</Mode><Years>7</Years></DefaultRetention></Rule></ObjectLockConfiguration>"#;
        let config = parse_lock_configuration(xml).unwrap();
        assert_eq!(config, LockConfiguration { enabled: true, mode: Some(LockMode::Compliance), days: Some(2555) });
        let bare =
            br#"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>"#;
        assert_eq!(
            parse_lock_configuration(bare).unwrap(),
            LockConfiguration { enabled: true, mode: None, days: None }
        );
        assert!(parse_lock_configuration(b"<Nope").is_err());
    }

    #[test]
    fn a_version_list_keeps_versions_and_markers() {
        let xml = br#"<ListVersionsResult><IsTruncated>true</IsTruncated><NextKeyMarker>a/b</NextKeyMarker><NextVersionIdMarker>v2</NextVersionIdMarker>
<Version><Key>a/b</Key><VersionId>v1</VersionId><IsLatest>true</IsLatest></Version>
<DeleteMarker><Key>a/b</Key><VersionId>d1</VersionId></DeleteMarker>
<Version><Key>a/bc</Key><VersionId>v2</VersionId></Version></ListVersionsResult>"#;
        let page = parse_versions(xml).unwrap();
        assert!(page.is_truncated);
        assert_eq!(page.next_key_marker.as_deref(), Some("a/b"));
        assert_eq!(page.versions.iter().map(|v| v.version_id.as_str()).collect::<Vec<_>>(), ["v1", "v2"]);
        let empty =
            parse_versions(b"<ListVersionsResult><IsTruncated>false</IsTruncated></ListVersionsResult>").unwrap();
        assert_eq!(empty, VersionsPage::default());
    }

    #[test]
    fn lock_headers_are_read_and_bad_ones_count_as_absent() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-amz-object-lock-mode", "GOVERNANCE".parse().unwrap());
        headers.insert("x-amz-object-lock-retain-until-date", "2033-01-01T00:00:00.000Z".parse().unwrap());
        headers.insert("x-amz-object-lock-legal-hold", "ON".parse().unwrap());
        headers.insert("x-amz-version-id", "v1".parse().unwrap());
        let lock = lock_from_headers(&headers);
        assert_eq!(lock.mode, Some(LockMode::Governance));
        assert_eq!(lock.retain_until, "2033-01-01T00:00:00Z".parse().ok());
        assert!(lock.legal_hold);
        assert!(lock.covers(LockMode::Governance, "2032-12-31T23:59:59.5Z".parse().unwrap()));
        assert!(!lock.covers(LockMode::Compliance, "2030-01-01T00:00:00Z".parse().unwrap()));
        assert!(!lock.covers(LockMode::Governance, "2033-01-01T00:00:01Z".parse().unwrap()));
        headers.insert("x-amz-object-lock-mode", "SOMETHING".parse().unwrap());
        headers.insert("x-amz-object-lock-retain-until-date", "tomorrow".parse().unwrap());
        let lock = lock_from_headers(&headers);
        assert_eq!((lock.mode, lock.retain_until), (None, None));
    }

    #[test]
    fn an_s3_error_document_gives_its_code() {
        let body = b"<Error><Code>InvalidRequest</Code><Message>Bucket is missing Object Lock\nConfiguration</Message></Error>";
        let e = parse_error(body);
        assert_eq!(e.code.as_deref(), Some("InvalidRequest"));
        assert_eq!(e.message.as_deref(), Some("Bucket is missing Object LockConfiguration"));
        assert_eq!(parse_error(b"\xff\xfe"), S3ErrorBody::default());
    }

    #[test]
    fn keys_are_encoded_like_s3_canonical_uris() {
        let key = Path::parse("site/2024/a b+c=~_/metadata.json").unwrap();
        assert_eq!(utf8_percent_encode(key.as_ref(), KEY_ENCODE).to_string(), "site/2024/a%20b%2Bc%3D~_/metadata.json");
    }

    proptest! {
        #[test]
        fn any_answer_is_read_without_panicking(body in proptest::collection::vec(any::<u8>(), 0..400), text in ".{0,300}") {
            let _ = parse_lock_configuration(&body);
            let _ = parse_versions(&body);
            let _ = parse_versioning(&body);
            let _ = parse_error(&body);
            for wrapped in [
                format!("<ObjectLockConfiguration>{text}</ObjectLockConfiguration>"),
                format!("<ListVersionsResult>{text}</ListVersionsResult>"),
                format!("<Error><Code>{text}</Code></Error>"),
            ] {
                let _ = parse_lock_configuration(wrapped.as_bytes());
                let _ = parse_versions(wrapped.as_bytes());
                let e = parse_error(wrapped.as_bytes());
                prop_assert!(e.code.map_or(0, |c| c.chars().count()) <= 200);
            }
            let _ = parse_s3_time(&text);
        }

        #[test]
        fn a_version_list_round_trips(ids in proptest::collection::vec("[A-Za-z0-9._-]{1,40}", 0..20), truncated in any::<bool>()) {
            let mut xml = format!("<ListVersionsResult><IsTruncated>{truncated}</IsTruncated>");
            for id in &ids {
                xml.push_str(&format!("<Version><Key>k</Key><VersionId>{id}</VersionId></Version>"));
            }
            xml.push_str("</ListVersionsResult>");
            let page = parse_versions(xml.as_bytes()).unwrap();
            prop_assert_eq!(page.is_truncated, truncated);
            prop_assert_eq!(page.versions.into_iter().map(|v| v.version_id).collect::<Vec<_>>(), ids);
        }
    }
}
