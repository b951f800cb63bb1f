//! One file's transfer: link -> download -> check -> hash -> streamed upload.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::{Archiver, AttemptError, FileEntry};
use crate::config::FileKind;
use crate::state::Claim;
use crate::storage::{StorageError, Upload};
use crate::webex::client::{FetchError, redact_url};
use crate::webex::gate::RetryPolicy;
use crate::webex::models::{DirectDownloadLinks, RecordingDetails};

/// Links with less than this left are replaced before use.
const LINK_MIN_REMAINING: chrono::TimeDelta = chrono::TimeDelta::minutes(10);
/// Times one attempt fetches fresh links after a link was refused.
const LINK_REFRESHES: u32 = 2;
/// Bytes looked at before deciding whether a body is media or a text document.
const SNIFF_BYTES: usize = 512;
/// A body without `Content-Length` shorter than this share of the listing's `sizeBytes`
/// is a truncated download (`sizeBytes` may be approximate, so not any difference).
const MIN_SHARE_WITHOUT_LENGTH: f64 = 0.9;

/// A file stored (or adopted) for a recording.
#[derive(Debug, Clone)]
pub(crate) struct StoredFile {
    pub(crate) entry: FileEntry,
    /// The store's version id (versioned buckets only).
    pub(crate) version: Option<String>,
}

/// What a download produced.
struct Downloaded {
    sha256: String,
    size: u64,
    content_type: String,
}

/// Where a download's bytes go.
enum Sink<'a> {
    /// Into a new object.
    Upload(&'a mut Upload),
    /// Nowhere: only hashed (to compare with an object already stored).
    HashOnly,
}

/// One attempt's view of a recording: its current details and links.
pub(crate) struct Session<'a> {
    archiver: &'a Archiver,
    claim: &'a Claim,
    abort: &'a CancellationToken,
    details: Option<RecordingDetails>,
    /// The listing's `downloadUrl` was requested in this attempt (at most once).
    fallback_tried: bool,
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl<'a> Session<'a> {
    pub(crate) fn new(archiver: &'a Archiver, claim: &'a Claim, abort: &'a CancellationToken) -> Self {
        Self { archiver, claim, abort, details: None, fallback_tried: false }
    }

    /// Fetches the details (with fresh links) just before downloading.
    async fn refresh_details(&mut self) -> Result<(), AttemptError> {
        let host = if self.archiver.admin { self.claim.host_email.as_deref() } else { None };
        let details = self.archiver.webex.details(&self.claim.id.0, host).await.map_err(AttemptError::from_webex)?;
        self.details = Some(details);
        Ok(())
    }

    fn links(&self) -> Option<&DirectDownloadLinks> {
        self.details.as_ref().and_then(|d| d.temporary_direct_download_links.as_ref())
    }

    /// The direct link for `kind`: `None` when there is none, an error when it is not a URL.
    fn link_for(&self, kind: FileKind) -> Option<Result<Url, String>> {
        let links = self.links()?;
        let text = match kind {
            FileKind::Recording => links.recording_download_link.as_ref(),
            FileKind::Audio => links.audio_download_link.as_ref(),
            FileKind::Transcript => links.transcript_download_link.as_ref(),
        }?;
        Some(Url::parse(text).map_err(|e| format!("the {} link is not a URL ({e})", kind.as_str())))
    }

    fn links_expiring(&self) -> bool {
        let expiration = self
            .links()
            .and_then(|l| l.expiration.as_deref())
            .and_then(|e| DateTime::parse_from_rfc3339(e).ok())
            .map(|e| e.with_timezone(&Utc));
        expiration.is_some_and(|e| e - Utc::now() < LINK_MIN_REMAINING)
    }

    /// Stores one file of the recording under `dir`. `Ok(None)` when an optional file
    /// (audio, transcript) has no link.
    pub(crate) async fn store_file(&mut self, kind: FileKind, dir: &str) -> Result<Option<StoredFile>, AttemptError> {
        if self.details.is_none() || self.links_expiring() {
            self.refresh_details().await?;
            if self.links_expiring() {
                // Fresh links that are already short-lived: use them anyway.
                tracing::debug!(recording_id = %self.claim.id, "fresh download links expire within 10 minutes");
            }
        }
        let mut refreshes = 0;
        // The first refusal is the one worth recording: later ones (fresh links, the
        // fallback's login page) only confirm it.
        let mut first_refusal: Option<String> = None;
        loop {
            let attempt = match self.link_for(kind) {
                Some(Ok(link)) => self.store_from(kind, dir, &link).await,
                Some(Err(not_a_url)) => Err(AttemptError::LinkRejected(not_a_url)),
                None if kind != FileKind::Recording => {
                    tracing::info!(recording_id = %self.claim.id, kind = kind.as_str(), "no link for this file; skipped");
                    return Ok(None);
                }
                None => return self.store_from_fallback(dir, first_refusal).await.map(Some),
            };
            match attempt {
                Err(AttemptError::LinkRejected(why)) if refreshes < LINK_REFRESHES => {
                    refreshes += 1;
                    tracing::info!(recording_id = %self.claim.id, reason = %why, "download link refused; fetching fresh links");
                    first_refusal.get_or_insert(why);
                    self.refresh_details().await?;
                }
                Err(AttemptError::LinkRejected(why)) => {
                    let first = first_refusal.unwrap_or_else(|| why.clone());
                    return Err(AttemptError::transient(
                        "link_rejected",
                        format!("the download link was refused: {first}; fresh links were refused too ({why})"),
                    ));
                }
                Err(e) => return Err(e),
                Ok(file) => return Ok(Some(file)),
            }
        }
    }

    /// Without direct links, the listing's `downloadUrl` is tried, at most once per
    /// attempt, and kept only if it yields media (it normally answers a browser login
    /// page). `first_refusal` is what happened to the direct links before they vanished.
    async fn store_from_fallback(
        &mut self,
        dir: &str,
        first_refusal: Option<String>,
    ) -> Result<StoredFile, AttemptError> {
        let no_links =
            "no direct download link for this token (\"Prevent downloading\" is on, or the token may not download it)";
        let refused = |first: Option<String>, then: String| match first {
            Some(first) => {
                AttemptError::transient("link_rejected", format!("the download link was refused: {first}; then {then}"))
            }
            None => AttemptError::NotDownloadable(format!("{no_links}; {then}")),
        };
        let download_url = self
            .details
            .as_ref()
            .and_then(|d| d.recording.download_url.clone())
            .or_else(|| self.claim.listing.get("downloadUrl").and_then(|v| v.as_str()).map(str::to_owned));
        let Some(url) = download_url.and_then(|u| Url::parse(&u).ok()) else {
            return Err(refused(first_refusal, "there is no usable downloadUrl either".into()));
        };
        if self.fallback_tried {
            return Err(refused(first_refusal, "its downloadUrl was already refused in this attempt".into()));
        }
        self.fallback_tried = true;
        match self.store_from(FileKind::Recording, dir, &url).await {
            Ok(file) => Ok(file),
            Err(AttemptError::LinkRejected(why)) => {
                Err(refused(first_refusal, format!("its downloadUrl is a browser page, not the file ({why})")))
            }
            Err(e) => Err(e),
        }
    }

    /// Downloads `link` into `dir/<kind>.<ext>`, or, when that object exists already,
    /// adopts it if it holds the same bytes.
    async fn store_from(&mut self, kind: FileKind, dir: &str, link: &Url) -> Result<StoredFile, AttemptError> {
        let response = self.open(link, kind).await?;
        let content_type = media_type(response.headers(), kind, self.claim.format.as_deref());
        let relative =
            format!("{dir}/{}.{}", kind.as_str(), extension(kind, self.claim.format.as_deref(), &content_type));
        let store = &self.archiver.store;
        let key = store.key(&relative).map_err(AttemptError::storage_final)?;

        let existing = match store.head(&key).await {
            Ok(existing) => existing,
            Err(e) => return Err(self.storage_failure(e).await),
        };
        let (downloaded, version) = match existing {
            Some(info) => {
                // A previous attempt (or another replica) stored it: compare, never overwrite.
                let got = self.receive(response, kind, Sink::HashOnly).await?;
                let stored_sha = match info.sha256 {
                    Some(sha) => sha,
                    None => self.hash_stored(&key).await?,
                };
                if stored_sha != got.sha256 {
                    return Err(AttemptError::failed(
                        "conflict",
                        format!(
                            "{} already exists with SHA-256 {stored_sha}, but Webex serves {}; refusing to overwrite it",
                            store.describe(&key),
                            got.sha256
                        ),
                    ));
                }
                tracing::info!(recording_id = %self.claim.id, key = %relative, "adopting the identical object already stored");
                (got, info.version)
            }
            None => {
                let mut upload = match store.start_upload(&key, &content_type).await {
                    Ok(upload) => upload,
                    Err(e) => return Err(self.storage_failure(e).await),
                };
                let got = match self.receive(response, kind, Sink::Upload(&mut upload)).await {
                    Ok(got) => got,
                    Err(e) => {
                        upload.abort().await;
                        return Err(e);
                    }
                };
                // Read back: the store must hold exactly the bytes hashed.
                match upload.finish(&got.sha256, got.size).await {
                    Ok(version) => (got, version),
                    Err(e) => return Err(self.storage_failure(e).await),
                }
            }
        };
        Ok(StoredFile {
            entry: FileEntry {
                kind,
                key: relative,
                sha256: downloaded.sha256,
                size: downloaded.size,
                content_type: downloaded.content_type,
            },
            version,
        })
    }

    /// Sends the GET and sorts out the status.
    async fn open(&self, link: &Url, kind: FileKind) -> Result<reqwest::Response, AttemptError> {
        let response = tokio::select! {
            r = self.archiver.webex.download(link) => r,
            _ = self.abort.cancelled() => return Err(AttemptError::Cancelled),
        };
        let response = response.map_err(|e| match e {
            FetchError::HostNotAllowed(refused) => AttemptError::failed("download_host_not_allowed", refused),
            FetchError::Network(e) => AttemptError::transient(
                "network",
                AttemptError::context(format!("download of {}", redact_url(link)), e),
            ),
        })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(|v| crate::webex::parse_retry_after(v, std::time::SystemTime::now()));
        match status {
            200..=299 => match not_media_type(response.headers(), kind) {
                Some(served) => Err(AttemptError::LinkRejected(format!(
                    "the site answered Content-Type {served} instead of the file (a login or error page)"
                ))),
                None => Ok(response),
            },
            401 | 403 | 404 | 410 => Err(AttemptError::LinkRejected(format!("the site answered {status}"))),
            429 | 503 if retry_after.is_some() => {
                let policy = self.archiver.webex.retry_policy();
                let pause = policy.pause(retry_after.flatten(), 1, 0.0);
                Err(AttemptError::RetryAt(RetryPolicy::until(Utc::now(), pause)))
            }
            408 | 429 | 500..=599 => {
                Err(AttemptError::transient("http_5xx", format!("the site answered {status} for {}", redact_url(link))))
            }
            _ => Err(AttemptError::failed(
                &format!("http_{status}"),
                format!("the site answered {status} for {}", redact_url(link)),
            )),
        }
    }

    /// Streams the body into the sink while hashing and counting, checking what arrives.
    async fn receive(
        &mut self,
        response: reqwest::Response,
        kind: FileKind,
        mut sink: Sink<'_>,
    ) -> Result<Downloaded, AttemptError> {
        let expected = response.content_length();
        let content_type = media_type(response.headers(), kind, self.claim.format.as_deref());
        let expect_mp4 = kind == FileKind::Recording && self.claim.format.as_deref() == Some("MP4");
        let mut stream = response.bytes_stream();
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        // The first bytes are held back until they show media, not a text document.
        let mut head: Vec<u8> = Vec::with_capacity(SNIFF_BYTES);
        let mut held: Vec<Bytes> = Vec::new();
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                _ = self.abort.cancelled() => return Err(AttemptError::Cancelled),
            };
            let chunk: Bytes = match next {
                None => {
                    if !held.is_empty() {
                        check_head(&head, expect_mp4)?;
                        self.send(&mut sink, std::mem::take(&mut held)).await?;
                    }
                    break;
                }
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    let e = e.without_url();
                    let reason = match expected {
                        _ if e.is_timeout() => "stalled",
                        Some(expected) if size < expected => "truncated",
                        _ => "connection_reset",
                    };
                    return Err(AttemptError::transient(
                        reason,
                        AttemptError::context(format!("the download broke off after {size} bytes"), e),
                    ));
                }
            };
            hasher.update(&chunk);
            size = size.saturating_add(chunk.len() as u64);
            self.archiver.progress.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            if head.len() < SNIFF_BYTES {
                let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
                held.push(chunk);
                if head.len() < SNIFF_BYTES {
                    continue;
                }
                check_head(&head, expect_mp4)?;
                self.send(&mut sink, std::mem::take(&mut held)).await?;
            } else {
                self.send(&mut sink, vec![chunk]).await?;
            }
        }
        match (expected, self.claim.size_bytes.and_then(|s| u64::try_from(s).ok())) {
            (Some(expected), _) if size != expected => {
                self.archiver.metrics.size_mismatch("content_length");
                return Err(AttemptError::transient(
                    "truncated",
                    format!("received {size} of the {expected} bytes announced by Content-Length"),
                ));
            }
            (None, Some(listed))
                if kind == FileKind::Recording && (size as f64) < listed as f64 * MIN_SHARE_WITHOUT_LENGTH =>
            {
                self.archiver.metrics.size_mismatch("short_without_length");
                return Err(AttemptError::transient(
                    "truncated",
                    format!(
                        "received {size} bytes without Content-Length, less than 90% of the {listed} bytes the listing announces"
                    ),
                ));
            }
            _ => {}
        }
        Ok(Downloaded { sha256: hex::encode(hasher.finalize()), size, content_type })
    }

    /// Hands chunks to the sink (nowhere when only hashing).
    async fn send(&self, sink: &mut Sink<'_>, chunks: Vec<Bytes>) -> Result<(), AttemptError> {
        if let Sink::Upload(upload) = sink {
            for chunk in chunks {
                if let Err(e) = upload.write(chunk).await {
                    return Err(self.storage_failure(e).await);
                }
            }
        }
        Ok(())
    }

    /// SHA-256 of an object already in the store, streamed.
    async fn hash_stored(&self, key: &object_store::path::Path) -> Result<String, AttemptError> {
        let mut stream = match self.archiver.store.get_stream(key).await {
            Ok(s) => s,
            Err(e) => return Err(self.storage_failure(e).await),
        };
        let mut hasher = Sha256::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => hasher.update(&chunk),
                Err(e) => return Err(self.storage_failure(e).await),
            }
        }
        Ok(hex::encode(hasher.finalize()))
    }

    async fn storage_failure(&self, e: StorageError) -> AttemptError {
        self.archiver.storage_failure(e).await
    }
}

/// Rejects a text document (an HTML login page, an XML or JSON error) or, for MP4, a file
/// without an `ftyp` box at byte 4. `head` is the body's first [`SNIFF_BYTES`] (or all of
/// it, when shorter).
fn check_head(head: &[u8], expect_mp4: bool) -> Result<(), AttemptError> {
    if let Some(document) = text_document(head) {
        return Err(AttemptError::LinkRejected(format!("the body is {document}, not the file")));
    }
    if expect_mp4 && head.len() >= 8 && &head[4..8] != b"ftyp" {
        return Err(AttemptError::transient("not_media", "the body is not an MP4 file (no ftyp box at byte 4)"));
    }
    Ok(())
}

/// What kind of text document `head` begins, if it is one: printable text (UTF-8, no
/// control bytes but whitespace) whose first character opens markup or JSON. Media, even
/// media whose first byte happens to be `<` or `{`, holds control bytes within its first
/// few hundred bytes.
pub(crate) fn text_document(head: &[u8]) -> Option<&'static str> {
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let printable = |b: &u8| (*b >= 0x20 && *b != 0x7F) || matches!(b, b'\t' | b'\n' | b'\r' | b'\x0C');
    if !text.iter().all(printable) {
        return None;
    }
    // A multi-byte character cut at the end of the sample is still text.
    let valid = match std::str::from_utf8(text) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    };
    if !valid {
        return None;
    }
    match text.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'<') => Some("an HTML or XML page (a login or error page)"),
        Some(b'{' | b'[') => Some("a JSON document (an error answer)"),
        _ => None,
    }
}

/// The served Content-Type, when it says the body is not the file: HTML or JSON for any
/// file, and any `text/*` for a recording or audio file (transcripts are text).
fn not_media_type(headers: &reqwest::header::HeaderMap, kind: FileKind) -> Option<String> {
    let served = headers.get(reqwest::header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = served.split(';').next().unwrap_or(served).trim().to_ascii_lowercase();
    let document = essence == "text/html"
        || essence == "application/xhtml+xml"
        || essence == "application/json"
        || essence.ends_with("+json");
    let text = essence.starts_with("text/") && kind != FileKind::Transcript;
    (document || text).then_some(essence)
}

/// The content type to record: the served one, else one implied by the format.
fn media_type(headers: &reqwest::header::HeaderMap, kind: FileKind, format: Option<&str>) -> String {
    let served = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty() && v != "application/octet-stream");
    served.unwrap_or_else(|| {
        match (kind, format) {
            (FileKind::Recording, Some("MP4")) => "video/mp4",
            (FileKind::Transcript, _) => "text/vtt",
            _ => "application/octet-stream",
        }
        .to_owned()
    })
}

/// File extension from the format (recording) or the content type.
fn extension(kind: FileKind, format: Option<&str>, content_type: &str) -> &'static str {
    match (kind, format) {
        (FileKind::Recording, Some("MP4")) => return "mp4",
        (FileKind::Recording, Some("ARF")) => return "arf",
        _ => {}
    }
    match content_type {
        "video/mp4" => "mp4",
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" => "m4a",
        "audio/mpeg" | "audio/mp3" => "mp3",
        "audio/wav" | "audio/x-wav" => "wav",
        "text/vtt" => "vtt",
        "text/plain" => "txt",
        "application/json" => "json",
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_pages_and_non_mp4_are_refused() {
        assert!(matches!(check_head(b"  <!DOCTYPE html>", false), Err(AttemptError::LinkRejected(_))));
        assert!(matches!(check_head(b"{\"message\": \"ticket expired\"}", false), Err(AttemptError::LinkRejected(_))));
        assert!(matches!(
            check_head(b"\xEF\xBB\xBF\r\n<html><body>Sign in", false),
            Err(AttemptError::LinkRejected(_))
        ));
        assert!(matches!(check_head(b"\0\0\0\x20ftypisom", true), Ok(())));
        assert!(matches!(check_head(b"\0\0\0\x20moovisom", true), Err(AttemptError::Transient { .. })));
        assert!(matches!(check_head(b"\0\0\0\x20moovisom", false), Ok(())));
    }

    #[test]
    fn media_that_starts_like_markup_is_media() {
        // NOTE: an ARF or UPLOADED file is opaque bytes: about one in 128 starts with `<`
        // or `{`. Only a text document is refused.
        let mut arf = vec![b'<'];
        arf.extend((0..600u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        assert!(matches!(check_head(&arf[..SNIFF_BYTES], false), Ok(())));
        arf[0] = b'{';
        assert!(matches!(check_head(&arf[..SNIFF_BYTES], false), Ok(())));
        assert_eq!(text_document(b"WEBVTT\n\n00:00.000 --> 00:01.000\nHello"), None);
        assert_eq!(text_document("<p>caf\u{e9}".as_bytes().split_last().unwrap().1), text_document(b"<p>"));
    }

    proptest::proptest! {
        #[test]
        fn any_body_head_is_judged_without_panicking(head in proptest::collection::vec(proptest::num::u8::ANY, 0..600), mp4 in proptest::bool::ANY) {
            let _ = check_head(&head, mp4);
        }
    }

    #[test]
    fn extensions_follow_format_then_content_type() {
        assert_eq!(extension(FileKind::Recording, Some("MP4"), "application/octet-stream"), "mp4");
        assert_eq!(extension(FileKind::Recording, Some("ARF"), "video/mp4"), "arf");
        assert_eq!(extension(FileKind::Recording, Some("UPLOADED"), "video/mp4"), "mp4");
        assert_eq!(extension(FileKind::Audio, None, "audio/mpeg"), "mp3");
        assert_eq!(extension(FileKind::Transcript, None, "text/vtt"), "vtt");
        assert_eq!(extension(FileKind::Recording, Some("NEWFORMAT"), "weird/type"), "bin");
    }
}
