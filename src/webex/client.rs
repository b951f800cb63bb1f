//! The Webex HTTP client: listing pages, site list, recording details, downloads.
//!
//! Every API request passes the Retry-After gate, carries the bearer token only when it
//! goes to the configured API origin (scheme, host and port), follows no redirect, and is
//! retried with jittered exponential backoff when the failure may pass. Downloads go to
//! the site host without the token unless an operator listed that host.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use backoff::backoff::Backoff;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::{HeaderMap, LINK, RETRY_AFTER};
use reqwest::{StatusCode, redirect};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::WebexError;
use super::auth::TokenProvider;
use super::error::parse_retry_after;
use super::gate::RateGate;
use super::hosts::{DownloadHosts, HostNotAllowed};
use super::models::{ErrorBody, PageError, RecordingDetails, Site, SiteList, parse_page};
use crate::config::WebexSettings;
use crate::domain::SourceStatus;
use crate::metrics::Metrics;

/// Page size of every listing request (the contract's maximum).
pub const PAGE_SIZE: u32 = 100;
/// Transient failures of one API request tolerated before giving up.
const MAX_TRANSIENT_RETRIES: u32 = 6;
/// Connect timeout of downloads.
const DOWNLOAD_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirect hops a download may follow (each one checked against `webex.download_hosts`).
const DOWNLOAD_REDIRECTS: usize = 5;
/// The largest listing, details or site-list answer read (bigger ones are refused).
pub const API_BODY_CAP: usize = 32 << 20;
/// The largest error body or token answer read.
pub const SMALL_BODY_CAP: usize = 64 << 10;

/// Which listing to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing<'a> {
    /// `GET /v1/recordings`.
    User,
    /// `GET /v1/admin/recordings?siteUrl=...`.
    Admin {
        /// The site swept.
        site_url: &'a str,
    },
}

/// One answer of a listing, unread: discovery reads its items one at a time, borrowed
/// from the body ([`ListPage::items`]), never as one JSON tree of the whole answer.
#[derive(Clone)]
pub struct ListPage {
    /// The answer's body as received.
    pub body: Bytes,
    /// The `Link rel="next"` URL, if there is a next page (any origin: the caller checks).
    pub next: Option<Url>,
    /// Webex's trackingId of this response.
    pub tracking_id: Option<String>,
}

impl std::fmt::Debug for ListPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // NOTE: the body carries recording passwords: Debug shows only its size.
        f.debug_struct("ListPage")
            .field("body_bytes", &self.body.len())
            .field("next", &self.next.as_ref().map(Url::as_str))
            .field("tracking_id", &self.tracking_id)
            .finish()
    }
}

impl ListPage {
    /// The page's items, as raw JSON text borrowed from the body. An answer that is not a
    /// JSON object with an `items` array is a bad page.
    pub fn items(&self) -> Result<Vec<&serde_json::value::RawValue>, PageError> {
        parse_page(&self.body)
    }
}

/// Why a download could not start.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The link (or a redirect hop) leads to a host `webex.download_hosts` does not allow.
    #[error(transparent)]
    HostNotAllowed(HostNotAllowed),
    /// No response (connection refused or reset, timeout, TLS, too many redirects).
    #[error("no response")]
    Network(#[source] reqwest::Error),
}

/// A body larger than its cap, or one that broke off.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// More than `cap` bytes (announced or received): the rest was not read.
    #[error("the answer is larger than {} KiB; not read further", .cap / 1024)]
    TooLarge {
        /// The cap, in bytes.
        cap: usize,
    },
    /// The connection failed while reading.
    #[error("reading the answer failed")]
    Network(#[source] reqwest::Error),
}

/// Reads a response body, at most `cap` bytes, without buffering more than that.
pub async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Bytes, BodyError> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(BodyError::TooLarge { cap });
    }
    let hint = response.content_length().map_or(16 << 10, |n| usize::try_from(n).unwrap_or(cap));
    let mut body = bytes::BytesMut::with_capacity(hint.min(cap));
    while let Some(chunk) = response.chunk().await.map_err(|e| BodyError::Network(e.without_url()))? {
        if body.len().saturating_add(chunk.len()) > cap {
            return Err(BodyError::TooLarge { cap });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The Webex client.
#[derive(Clone)]
pub struct WebexClient {
    api: reqwest::Client,
    downloads: reqwest::Client,
    base: Url,
    tokens: Arc<TokenProvider>,
    gate: Arc<RateGate>,
    metrics: Metrics,
    bearer_hosts: Vec<String>,
    download_hosts: Arc<DownloadHosts>,
    cancel: CancellationToken,
    /// Set when the last API request ended in a 401 that a refresh could not fix.
    unauthorized: Arc<AtomicBool>,
}

impl std::fmt::Debug for WebexClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebexClient").field("base", &self.base.as_str()).finish_non_exhaustive()
    }
}

/// `base` joined with a relative path segment, keeping base's own path (`.../v1` + `x` = `.../v1/x`).
pub fn join_base(base: &Url, segment: &str) -> Url {
    let mut url = base.clone();
    {
        let mut segments = url.path_segments_mut().expect("http(s) URL has a path");
        segments.pop_if_empty();
        for part in segment.split('/') {
            segments.push(part);
        }
    }
    url
}

/// The trackingId header of a response.
pub fn tracking_id(headers: &HeaderMap) -> Option<String> {
    headers.get("trackingid").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The HTTP client used for API calls and token refreshes: bounded time, no redirects.
pub fn api_http_client(settings: &WebexSettings) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("webex-archiver/", env!("CARGO_PKG_VERSION")))
        .timeout(settings.request_timeout)
        .redirect(redirect::Policy::none())
        .build()
}

impl WebexClient {
    /// A client for `settings`, whose waits end when `cancel` fires.
    pub fn new(
        settings: &WebexSettings,
        stall_timeout: Duration,
        tokens: Arc<TokenProvider>,
        gate: Arc<RateGate>,
        metrics: Metrics,
        cancel: CancellationToken,
    ) -> reqwest::Result<Self> {
        let download_hosts = Arc::new(DownloadHosts::new(&settings.download_hosts));
        let hops = download_hosts.clone();
        let downloads = reqwest::Client::builder()
            .user_agent(concat!("webex-archiver/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(DOWNLOAD_CONNECT_TIMEOUT)
            .read_timeout(stall_timeout)
            // NOTE: direct links serve the file without redirect; allow a few anyway, each
            // hop to an allowed host only. reqwest drops Authorization when a redirect
            // leaves the original host.
            .redirect(redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > DOWNLOAD_REDIRECTS {
                    attempt.error("too many redirects")
                } else if let Err(refused) = hops.check(attempt.url()) {
                    attempt.error(refused)
                } else {
                    attempt.follow()
                }
            }))
            .build()?;
        Ok(Self {
            api: api_http_client(settings)?,
            downloads,
            base: settings.base_url.clone(),
            tokens,
            gate,
            metrics,
            bearer_hosts: settings.download_bearer_hosts.clone(),
            download_hosts,
            cancel,
            unauthorized: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Whether Webex refused the token on the last API request (after a refresh).
    pub fn unauthorized(&self) -> bool {
        self.unauthorized.load(Ordering::Relaxed)
    }

    /// The rule that bounds every Retry-After pause (`webex.max_retry_after`).
    pub fn retry_policy(&self) -> super::gate::RetryPolicy {
        self.gate.policy()
    }

    /// The end of the shared Retry-After pause (in the past when there is none): workers
    /// do not claim new work before it, so a claim's lease is not spent waiting.
    pub async fn paused_until(&self) -> DateTime<Utc> {
        self.gate.until().await
    }

    /// The token provider (for expiries in metrics and status).
    pub fn tokens(&self) -> &Arc<TokenProvider> {
        &self.tokens
    }

    /// The first page URL of a listing window `[from, to)`.
    pub fn list_url(&self, listing: Listing<'_>, from: DateTime<Utc>, to: DateTime<Utc>) -> Url {
        self.list_url_with_status(listing, from, to, None)
    }

    /// The first page's URL of a listing of recordings with `status` at the source
    /// (`deleted`, `purged`); `None` lists the available ones (Webex's default).
    pub fn list_url_with_status(
        &self,
        listing: Listing<'_>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        status: Option<SourceStatus>,
    ) -> Url {
        let mut url = match listing {
            Listing::User => join_base(&self.base, "recordings"),
            Listing::Admin { .. } => join_base(&self.base, "admin/recordings"),
        };
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("from", &from.to_rfc3339_opts(SecondsFormat::Millis, true));
            query.append_pair("to", &to.to_rfc3339_opts(SecondsFormat::Millis, true));
            query.append_pair("max", &PAGE_SIZE.to_string());
            if let Listing::Admin { site_url } = listing {
                query.append_pair("siteUrl", site_url);
            }
            if let Some(status) = status {
                query.append_pair("status", status.as_str());
            }
        }
        url
    }

    /// Fetches one listing page (first page URL, or a `Link rel="next"` URL as given).
    /// The body is not read here: see [`ListPage::items`].
    pub async fn list_page(&self, url: Url) -> Result<ListPage, WebexError> {
        let (body, headers, tracking) = self.get_api("list", url.clone()).await?;
        let next = next_link(&headers, &url).map_err(|problem| WebexError::Parse {
            endpoint: "list",
            problem,
            tracking_id: tracking.clone(),
        })?;
        Ok(ListPage { body, next, tracking_id: tracking })
    }

    /// `GET /v1/meetingPreferences/sites`.
    pub async fn sites(&self) -> Result<Vec<Site>, WebexError> {
        let url = join_base(&self.base, "meetingPreferences/sites");
        let (body, _, tracking) = self.get_api("sites", url).await?;
        let list: SiteList = serde_json::from_slice(&body).map_err(|e| WebexError::Parse {
            endpoint: "sites",
            problem: format!("not a site list: {e}"),
            tracking_id: tracking,
        })?;
        Ok(list.sites)
    }

    /// `GET /v1/recordings/{id}` (admins pass the host's e-mail).
    pub async fn details(&self, id: &str, host_email: Option<&str>) -> Result<RecordingDetails, WebexError> {
        let mut url = join_base(&self.base, "recordings");
        url.path_segments_mut().expect("http(s) URL").push(id);
        if let Some(host) = host_email {
            url.query_pairs_mut().append_pair("hostEmail", host);
        }
        let (body, _, tracking) = self.get_api("details", url).await?;
        serde_json::from_slice(&body).map_err(|e| WebexError::Parse {
            endpoint: "details",
            problem: format!("not a recording: {e}"),
            tracking_id: tracking,
        })
    }

    /// Starts a download of a direct link. The response is returned whatever its status;
    /// the caller decides (a rejected link means fetching the details again). A link, or
    /// a redirect hop, to a host `webex.download_hosts` does not allow is never requested.
    pub async fn download(&self, url: &Url) -> Result<reqwest::Response, FetchError> {
        self.download_hosts.check(url).map_err(FetchError::HostNotAllowed)?;
        let mut request = self.downloads.get(url.clone());
        let host = url.host_str().unwrap_or_default();
        let bearer_host = url.scheme() == "https" && self.bearer_hosts.iter().any(|h| h.eq_ignore_ascii_case(host));
        if bearer_host || self.same_origin(url) {
            let token = self.tokens.bearer(&self.gate, &self.cancel).await.ok();
            if let Some(token) = token {
                request = request.bearer_auth(token.expose_secret());
            }
        }
        let result = request.send().await;
        self.metrics.api_request("download", result.as_ref().ok().map(|r| r.status().as_u16()));
        result.map_err(|e| match refused_hop(&e) {
            Some(refused) => FetchError::HostNotAllowed(refused),
            None => FetchError::Network(e.without_url()),
        })
    }

    fn same_origin(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    /// GET on the API host with gate, token, and retries. Returns the body, headers and trackingId.
    async fn get_api(
        &self,
        endpoint: &'static str,
        mut url: Url,
    ) -> Result<(Bytes, HeaderMap, Option<String>), WebexError> {
        let mut backoff = backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(Duration::from_millis(500))
            .with_max_interval(Duration::from_secs(30))
            .with_randomization_factor(0.5)
            .with_max_elapsed_time(None)
            .build();
        let mut transient_failures = 0u32;
        let mut refreshed = false;
        loop {
            let mut request = self.api.get(url.clone());
            // The bearer token goes only to the configured API origin, never elsewhere.
            // NOTE: fetched before passing the gate: a refresh passes the gate itself.
            let token = if self.same_origin(&url) {
                let token = self.tokens.bearer(&self.gate, &self.cancel).await?;
                request = request.bearer_auth(token.expose_secret());
                Some(token)
            } else {
                None
            };
            let pass = self.gate.wait(&self.cancel).await?;
            let sent = tokio::select! {
                result = request.send() => result,
                _ = self.cancel.cancelled() => return Err(WebexError::Cancelled),
            };
            let response = match sent {
                Ok(response) => response,
                Err(e) => {
                    self.metrics.api_request(endpoint, None);
                    transient_failures += 1;
                    let error = WebexError::Network { endpoint, source: e.without_url() };
                    if transient_failures > MAX_TRANSIENT_RETRIES {
                        return Err(error);
                    }
                    tracing::warn!(endpoint, error = %crate::errors::ErrorChain(&error), "Webex request failed; retrying");
                    self.sleep(backoff.next_backoff().unwrap_or(Duration::from_secs(30))).await?;
                    continue;
                }
            };
            let status = response.status();
            self.metrics.api_request(endpoint, Some(status.as_u16()));
            let headers = response.headers().clone();
            let tracking = tracking_id(&headers);
            let retry_after = headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let rate_limited = status == StatusCode::TOO_MANY_REQUESTS
                || (retry_after.is_some() && matches!(status.as_u16(), 423 | 503));
            if rate_limited {
                let pause = self.gate.rate_limited(retry_after).await;
                drop(pass);
                tracing::warn!(
                    endpoint,
                    status = status.as_u16(),
                    seconds = pause.as_secs_f64(),
                    tracking_id = tracking.as_deref().unwrap_or(""),
                    "Webex asked to slow down; pausing every request (Retry-After, bounded and growing while it lasts)"
                );
                continue;
            }
            self.gate.succeeded();
            drop(pass);
            if status.is_success() {
                let body = tokio::select! {
                    body = read_capped(response, API_BODY_CAP) => body,
                    _ = self.cancel.cancelled() => return Err(WebexError::Cancelled),
                };
                match body {
                    Ok(body) => {
                        self.unauthorized.store(false, Ordering::Relaxed);
                        return Ok((body, headers, tracking));
                    }
                    Err(e @ BodyError::TooLarge { .. }) => {
                        return Err(WebexError::Parse { endpoint, problem: e.to_string(), tracking_id: tracking });
                    }
                    Err(BodyError::Network(source)) => {
                        transient_failures += 1;
                        let error = WebexError::Network { endpoint, source };
                        if transient_failures > MAX_TRANSIENT_RETRIES {
                            return Err(error);
                        }
                        self.sleep(backoff.next_backoff().unwrap_or(Duration::from_secs(30))).await?;
                        continue;
                    }
                }
            }
            let body = tokio::select! {
                body = read_capped(response, SMALL_BODY_CAP) => body.unwrap_or_default(),
                _ = self.cancel.cancelled() => return Err(WebexError::Cancelled),
            };
            let message = error_message(status, &body);

            if status == StatusCode::UNAUTHORIZED {
                if let (false, Some(token)) = (refreshed, token.as_ref()) {
                    refreshed = true;
                    if self.tokens.refused(token, &self.gate, &self.cancel).await? {
                        continue;
                    }
                }
                self.unauthorized.store(true, Ordering::Relaxed);
                return Err(WebexError::Unauthorized { tracking_id: tracking });
            }
            let error = WebexError::Status { endpoint, status: status.as_u16(), message, tracking_id: tracking };
            if error.is_transient() {
                transient_failures += 1;
                if transient_failures > MAX_TRANSIENT_RETRIES {
                    return Err(error);
                }
                if status == StatusCode::GATEWAY_TIMEOUT && endpoint == "list" {
                    // NOTE: Webex documents 504 as "reduce max": retry the page with half as many items.
                    url = halve_max(&url);
                }
                tracing::warn!(endpoint, error = %crate::errors::ErrorChain(&error), "Webex request failed; retrying");
                self.sleep(backoff.next_backoff().unwrap_or(Duration::from_secs(30))).await?;
                continue;
            }
            return Err(error);
        }
    }

    async fn sleep(&self, delay: Duration) -> Result<(), WebexError> {
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            _ = self.cancel.cancelled() => Err(WebexError::Cancelled),
        }
    }
}

/// The refused redirect hop behind a reqwest error, if that is what it is.
fn refused_hop(e: &reqwest::Error) -> Option<HostNotAllowed> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<HostNotAllowed>() {
            return Some(refused.clone());
        }
        source = cause.source();
    }
    None
}

/// Webex's message from an error body, or the status's reason phrase.
pub fn error_message(status: StatusCode, body: &[u8]) -> String {
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
    parsed
        .and_then(|b| {
            let details: Vec<String> = b.errors.into_iter().map(|e| e.description).filter(|d| !d.is_empty()).collect();
            match (b.message, details.is_empty()) {
                (Some(m), true) => Some(m),
                (Some(m), false) => Some(format!("{m} ({})", details.join("; "))),
                (None, false) => Some(details.join("; ")),
                (None, true) => None,
            }
        })
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned())
}

/// The `rel="next"` link of a response, per RFC 8288 (several links, comma separated,
/// commas inside `<...>`, several space-separated relation types, quoted parameters, and
/// targets relative to the request URL).
fn next_link(headers: &HeaderMap, request: &Url) -> Result<Option<Url>, String> {
    let mut next = None;
    for value in headers.get_all(LINK) {
        let text = value.to_str().map_err(|_| "the Link header is not text".to_owned())?;
        let links = http_link::parse_link_header(text, request)
            .map_err(|e| format!("the Link header cannot be parsed: {e}"))?;
        if let Some(link) = links.into_iter().find(|l| l.rel == "next") {
            next = Some(link.target);
        }
    }
    Ok(next)
}

fn halve_max(url: &Url) -> Url {
    let mut out = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            if k == "max" {
                let max = v.parse::<u32>().unwrap_or(PAGE_SIZE);
                (k.into_owned(), (max / 2).max(1).to_string())
            } else {
                (k.into_owned(), v.into_owned())
            }
        })
        .collect();
    out.query_pairs_mut().clear().extend_pairs(pairs);
    out
}

/// Removes `ticket` (and anything like a token) from a URL, for logs.
pub fn redact_url(url: &Url) -> String {
    let mut out = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let secret = k.eq_ignore_ascii_case("ticket") || k.to_ascii_lowercase().contains("token");
            (k.into_owned(), if secret { "***".to_owned() } else { v.into_owned() })
        })
        .collect();
    if pairs.is_empty() {
        out.set_query(None);
    } else {
        out.query_pairs_mut().clear().extend_pairs(pairs);
    }
    out.set_password(None).ok();
    out.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn a_page_s_debug_shows_no_item() {
        let page = ListPage {
            body: Bytes::from_static(br#"{"items":[{"id":"r1","password":"S3cretPw"}]}"#),
            next: None,
            tracking_id: Some("t".into()),
        };
        let shown = format!("{page:?}");
        assert!(!shown.contains("S3cretPw") && shown.contains("body_bytes"), "{shown}");
    }

    #[test]
    fn next_link_among_several() {
        let request = Url::parse("https://webexapis.com/v1/recordings?max=100").unwrap();
        let next = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(LINK, HeaderValue::from_static(value));
            next_link(&headers, &request).unwrap().map(|u| u.to_string())
        };
        assert_eq!(
            next("<https://webexapis.com/v1/recordings?cursor=a>; rel=\"prev\", <https://webexapis.com/v1/recordings?cursor=b>; rel=\"next\"")
                .as_deref(),
            Some("https://webexapis.com/v1/recordings?cursor=b")
        );
        // Several relation types, a comma inside the target, an unquoted rel, a relative target.
        assert_eq!(next("<https://x/v1/r?c=1>; rel=\"next last\"").as_deref(), Some("https://x/v1/r?c=1"));
        assert_eq!(
            next("<https://x/v1/r?format=MP4,ARF&c=2>; rel=next; title=\"a, b\"").as_deref(),
            Some("https://x/v1/r?format=MP4,ARF&c=2")
        );
        assert_eq!(
            next("</v1/recordings?c=3>; rel=\"next\"").as_deref(),
            Some("https://webexapis.com/v1/recordings?c=3")
        );
        assert_eq!(next("<https://x/v1/r?c=1>; rel=\"last\""), None);
        let mut headers = HeaderMap::new();
        headers.insert(LINK, HeaderValue::from_static("no angle brackets; rel=next"));
        assert!(next_link(&headers, &request).is_err(), "a malformed Link header is an error, not the last page");
        assert!(next_link(&HeaderMap::new(), &request).unwrap().is_none());
    }

    #[test]
    fn tickets_are_redacted() {
        let url = Url::parse("https://site/nbr/MultiThreadDownloadServlet?siteid=1&ticket=SECRET%3D&x=2").unwrap();
        let shown = redact_url(&url);
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("siteid=1"));
    }

    #[test]
    fn max_is_halved() {
        let url = Url::parse("https://x/v1/recordings?from=a&max=100").unwrap();
        assert_eq!(halve_max(&url).as_str(), "https://x/v1/recordings?from=a&max=50");
    }

    proptest::proptest! {
        #[test]
        fn any_link_header_is_read_without_panicking(value in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let request = Url::parse("https://webexapis.com/v1/recordings?max=100").unwrap();
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                let mut headers = HeaderMap::new();
                headers.insert(LINK, value);
                let _ = next_link(&headers, &request);
            }
        }

        #[test]
        fn a_next_link_round_trips(
            cursor in "[A-Za-z0-9._~%-]{0,40}",
            other in proptest::sample::select(vec!["prev", "first", "last"]),
            first in proptest::bool::ANY,
        ) {
            let request = Url::parse("https://webexapis.com/v1/recordings?max=100").unwrap();
            let target = Url::parse(&format!("https://webexapis.com/v1/recordings?cursor={cursor}")).unwrap();
            let next = format!("<{target}>; rel=\"next\"");
            let noise = format!("<https://webexapis.com/v1/recordings?x=1>; rel=\"{other}\"");
            let value = if first { format!("{next}, {noise}") } else { format!("{noise}, {next}") };
            let mut headers = HeaderMap::new();
            headers.insert(LINK, HeaderValue::from_str(&value).unwrap());
            proptest::prop_assert_eq!(next_link(&headers, &request).unwrap(), Some(target));
        }

        #[test]
        fn any_error_body_gives_a_message(body in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let message = error_message(StatusCode::BAD_GATEWAY, &body);
            proptest::prop_assert!(!message.is_empty());
        }

        #[test]
        fn an_error_body_message_round_trips(message in "[^\\p{Cc}]{1,80}", tracking in "[A-Z0-9_]{0,20}") {
            let body = serde_json::json!({"message": message, "errors": [], "trackingId": tracking});
            let shown = error_message(StatusCode::BAD_REQUEST, body.to_string().as_bytes());
            proptest::prop_assert_eq!(shown, message);
        }
    }

    #[test]
    fn error_messages_use_the_webex_body() {
        let body = br#"{"message":"Bad from","errors":[{"description":"from is after to"}],"trackingId":"T1"}"#;
        assert_eq!(error_message(StatusCode::BAD_REQUEST, body), "Bad from (from is after to)");
        assert_eq!(error_message(StatusCode::BAD_GATEWAY, b"<html>"), "Bad Gateway");
    }
}
