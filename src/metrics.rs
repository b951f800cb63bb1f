//! Prometheus metrics (prometheus-client). One registry per process, passed to whoever
//! counts; gauges that describe the database (recordings by state, oldest unarchived)
//! and lifetimes that shrink with time are refreshed when `/metrics` is scraped, the
//! recordings per state from counts shared by replicas and taken at most every few
//! seconds (`recordings_counted_timestamp_seconds` says when).
//!
//! This module depends on no other module of the crate: it offers counters and plain
//! setters, and whoever reads the database (`server`) sets the gauges from it.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label of a recording state.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// `pending`, `archiving`, `archived`, `failed`, `not_downloadable`.
    pub state: String,
}

/// Label of a failure class.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Short class, e.g. `truncated`.
    pub reason: String,
}

/// Labels of an API request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// `list`, `details`, `sites`, `token`, `download`.
    pub endpoint: String,
    /// HTTP status, or `error` when no response came.
    pub status: String,
}

/// Label of a size mismatch.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MismatchLabel {
    /// `listing` (archived bytes differ from the listing's `sizeBytes`), `content_length`
    /// (a body shorter or longer than its `Content-Length`), `short_without_length` (a
    /// body without `Content-Length` under 90% of `sizeBytes`), `storage` (an object read
    /// back after its upload is not what was sent: another size or `sha256` metadata).
    pub kind: String,
}

/// Label of a supervised task.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabel {
    /// `worker` or `discovery`.
    pub task: String,
}

/// Label of a status at the source (`deleted`, `purged`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceStatusLabel {
    /// `deleted` or `purged`.
    pub status: String,
}

/// Label of a discovery scope.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabel {
    /// `user` or `admin:<site>`.
    pub scope: String,
}

/// Label of the build.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type FloatCounter = Counter<f64, AtomicU64>;

/// Every metric of the process. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    recordings: Family<StateLabel, Gauge>,
    discovered: Counter,
    archived: Counter,
    failed: Family<ReasonLabel, Counter>,
    not_downloadable: Counter,
    archived_bytes: Counter,
    transfer_duration: Histogram,
    api_requests: Family<ApiLabels, Counter>,
    rate_limited: Counter,
    paused_seconds: FloatCounter,
    token_refreshes: Counter,
    access_token_expires_in: FloatGauge,
    refresh_token_expires_in: FloatGauge,
    oauth_revoked: Gauge,
    last_pass: Family<ScopeLabel, FloatGauge>,
    lease_recovered: Counter,
    oldest_unarchived_age: FloatGauge,
    size_mismatches: Family<MismatchLabel, Counter>,
    task_panics: Family<TaskLabel, Counter>,
    bad_pages: Family<ScopeLabel, Counter>,
    pass_failed: Family<ScopeLabel, Gauge>,
    quarantined: Gauge,
    gone_at_source: Family<SourceStatusLabel, Gauge>,
    counted_at: FloatGauge,
    runtime_tasks: Gauge,
    expiries: Mutex<TokenExpiries>,
}

#[derive(Default)]
struct TokenExpiries {
    access: Option<DateTime<Utc>>,
    refresh: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered under `webex_archiver_`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("webex_archiver");
        let recordings = Family::<StateLabel, Gauge>::default();
        registry.register("recordings", "Recordings in the database, by archive state", recordings.clone());
        let discovered = Counter::default();
        registry.register("recordings_discovered", "Recordings listed for the first time", discovered.clone());
        let archived = Counter::default();
        registry.register("recordings_archived", "Recordings stored, checked and marked archived", archived.clone());
        let failed = Family::<ReasonLabel, Counter>::default();
        registry.register("recordings_failed", "Recordings that became failed, by reason", failed.clone());
        let not_downloadable = Counter::default();
        registry.register(
            "recordings_not_downloadable",
            "Recordings without any download link for this token",
            not_downloadable.clone(),
        );
        let archived_bytes = Counter::default();
        registry.register("archived_bytes", "Bytes of recording files archived", archived_bytes.clone());
        let transfer_duration = Histogram::new(exponential_buckets(0.05, 2.0, 16));
        registry.register(
            "transfer_duration_seconds",
            "Time to archive one recording, from claim to archived",
            transfer_duration.clone(),
        );
        let api_requests = Family::<ApiLabels, Counter>::default();
        registry.register("api_requests", "Webex requests by endpoint and status", api_requests.clone());
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited",
            "Responses with Retry-After (429, or 423/503 with Retry-After)",
            rate_limited.clone(),
        );
        let paused_seconds = FloatCounter::default();
        registry.register(
            "rate_limit_paused_seconds",
            "Seconds of Retry-After pauses imposed on this process",
            paused_seconds.clone(),
        );
        let token_refreshes = Counter::default();
        registry.register("token_refreshes", "OAuth access-token refreshes", token_refreshes.clone());
        let access_token_expires_in = FloatGauge::default();
        registry.register(
            "access_token_expires_in_seconds",
            "Remaining lifetime of the access token (absent lifetime: 0)",
            access_token_expires_in.clone(),
        );
        let refresh_token_expires_in = FloatGauge::default();
        registry.register(
            "refresh_token_expires_in_seconds",
            "Remaining lifetime of the OAuth refresh token (no OAuth: 0)",
            refresh_token_expires_in.clone(),
        );
        let oauth_revoked = Gauge::default();
        registry.register(
            "oauth_revoked",
            "1 when the token endpoint said the OAuth refresh chain is revoked or expired (re-authorise the integration), else 0",
            oauth_revoked.clone(),
        );
        let last_pass = Family::<ScopeLabel, FloatGauge>::default();
        registry.register(
            "last_successful_pass_timestamp_seconds",
            "Unix time of the last discovery pass that reached its end, per scope",
            last_pass.clone(),
        );
        let lease_recovered = Counter::default();
        registry.register(
            "lease_expiries_recovered",
            "Recordings claimed again after their worker's lease expired",
            lease_recovered.clone(),
        );
        let oldest_unarchived_age = FloatGauge::default();
        registry.register(
            "oldest_unarchived_age_seconds",
            "Age (since createTime) of the oldest recording not archived yet; 0 when none",
            oldest_unarchived_age.clone(),
        );
        let size_mismatches = Family::<MismatchLabel, Counter>::default();
        registry.register(
            "size_mismatches",
            "Downloads whose byte count differed from Content-Length or the listing's sizeBytes, and uploads the store read back otherwise than sent, by kind",
            size_mismatches.clone(),
        );
        let task_panics = Family::<TaskLabel, Counter>::default();
        registry.register(
            "task_panics",
            "Panics caught in an archive worker or the discovery loop (the task was restarted)",
            task_panics.clone(),
        );
        let bad_pages = Family::<ScopeLabel, Counter>::default();
        registry.register(
            "discovery_bad_pages",
            "Listing answers that were not a page (no items array, a foreign or looping next link, too many pages), per scope",
            bad_pages.clone(),
        );
        let pass_failed = Family::<ScopeLabel, Gauge>::default();
        registry.register(
            "discovery_last_pass_failed",
            "1 when the scope's last discovery pass (sync cursor) ended in an error, else 0",
            pass_failed.clone(),
        );
        let quarantined = Gauge::default();
        registry.register(
            "quarantined_items",
            "Listing items that could not be read and wait in quarantine for a person (unreleased entries)",
            quarantined.clone(),
        );
        let gone_at_source = Family::<SourceStatusLabel, Gauge>::default();
        registry.register(
            "recordings_gone_at_source",
            "Recordings seen deleted (recycle bin) or purged in Webex, archived or not",
            gone_at_source.clone(),
        );
        let counted_at = FloatGauge::default();
        registry.register(
            "recordings_counted_timestamp_seconds",
            "When recordings and recordings_gone_at_source were counted (shared by replicas, at most every few seconds)",
            counted_at.clone(),
        );
        let runtime_tasks = Gauge::default();
        registry.register(
            "runtime_tasks",
            "Tokio tasks alive in the process, as of the scrape (flat over months of uptime)",
            runtime_tasks.clone(),
        );
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info.get_or_create(&VersionLabel { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        registry.register("build_info", "Build of the running binary", build_info);
        Self {
            inner: Arc::new(Inner {
                registry,
                recordings,
                discovered,
                archived,
                failed,
                not_downloadable,
                archived_bytes,
                transfer_duration,
                api_requests,
                rate_limited,
                paused_seconds,
                token_refreshes,
                access_token_expires_in,
                refresh_token_expires_in,
                oauth_revoked,
                last_pass,
                lease_recovered,
                oldest_unarchived_age,
                size_mismatches,
                task_panics,
                bad_pages,
                pass_failed,
                quarantined,
                gone_at_source,
                counted_at,
                runtime_tasks,
                expiries: Mutex::new(TokenExpiries::default()),
            }),
        }
    }

    /// Counts recordings listed for the first time.
    pub fn discovered(&self, n: u64) {
        self.inner.discovered.inc_by(n);
    }

    /// Counts an archived recording.
    pub fn archived(&self, bytes: u64, seconds: f64) {
        self.inner.archived.inc();
        self.inner.archived_bytes.inc_by(bytes);
        self.inner.transfer_duration.observe(seconds);
    }

    /// Counts a recording that became failed.
    pub fn failed(&self, reason: &str) {
        self.inner.failed.get_or_create(&ReasonLabel { reason: reason.into() }).inc();
    }

    /// Counts a recording that became not downloadable.
    pub fn not_downloadable(&self) {
        self.inner.not_downloadable.inc();
    }

    /// Counts a Webex request.
    pub fn api_request(&self, endpoint: &str, status: Option<u16>) {
        let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        self.inner.api_requests.get_or_create(&ApiLabels { endpoint: endpoint.into(), status }).inc();
    }

    /// Counts a Retry-After response and the pause it imposed.
    pub fn rate_limited(&self, pause_seconds: f64) {
        self.inner.rate_limited.inc();
        self.inner.paused_seconds.inc_by(pause_seconds.max(0.0));
    }

    /// Counts a token refresh and records the new expiries.
    pub fn token_refreshed(&self, access: Option<DateTime<Utc>>, refresh: Option<DateTime<Utc>>) {
        self.inner.token_refreshes.inc();
        self.set_token_expiries(access, refresh);
    }

    /// Whether the OAuth refresh chain is revoked or expired (final until re-authorised).
    pub fn set_oauth_revoked(&self, revoked: bool) {
        self.inner.oauth_revoked.set(i64::from(revoked));
    }

    /// Records token expiries (refreshed into remaining lifetimes at scrape time).
    pub fn set_token_expiries(&self, access: Option<DateTime<Utc>>, refresh: Option<DateTime<Utc>>) {
        let mut expiries = self.inner.expiries.lock().unwrap_or_else(|e| e.into_inner());
        expiries.access = access;
        if refresh.is_some() {
            expiries.refresh = refresh;
        }
    }

    /// Counts a claim of a recording whose previous lease had expired.
    pub fn lease_recovered(&self) {
        self.inner.lease_recovered.inc();
    }

    /// Counts a download whose size differed (`kind`: see [`MismatchLabel`]).
    pub fn size_mismatch(&self, kind: &str) {
        self.inner.size_mismatches.get_or_create(&MismatchLabel { kind: kind.into() }).inc();
    }

    /// Counts a panic caught in `task` (`worker`, `discovery`).
    pub fn task_panicked(&self, task: &str) {
        self.inner.task_panics.get_or_create(&TaskLabel { task: task.into() }).inc();
    }

    /// Panics caught so far, all tasks together (for `/healthz`).
    pub fn task_panics(&self) -> u64 {
        ["worker", "discovery"]
            .iter()
            .map(|t| self.inner.task_panics.get_or_create(&TaskLabel { task: (*t).into() }).get())
            .sum()
    }

    /// Counts a listing answer of `scope` that was not a page.
    pub fn bad_page(&self, scope: &str) {
        self.inner.bad_pages.get_or_create(&ScopeLabel { scope: scope.into() }).inc();
    }

    /// Sets the number of recordings in `state` (its stored name, e.g. `pending`).
    pub fn set_recordings(&self, state: &str, n: i64) {
        self.inner.recordings.get_or_create(&StateLabel { state: state.into() }).set(n);
    }

    /// Sets the age of the oldest recording not archived yet, in seconds (0 when none;
    /// a negative age, from a clock behind a createTime, counts as 0).
    pub fn set_oldest_unarchived_age(&self, seconds: f64) {
        self.inner.oldest_unarchived_age.set(seconds.max(0.0));
    }

    /// Sets the number of unreleased quarantine entries.
    pub fn set_quarantined(&self, n: i64) {
        self.inner.quarantined.set(n);
    }

    /// Sets the number of recordings seen with `status` (`deleted`, `purged`) at the source.
    pub fn set_gone_at_source(&self, status: &str, n: i64) {
        self.inner.gone_at_source.get_or_create(&SourceStatusLabel { status: status.into() }).set(n);
    }

    /// Sets when the recordings were counted (the counts' age is `now` minus this).
    pub fn set_counted_at(&self, at: DateTime<Utc>) {
        self.inner.counted_at.set(at.timestamp_millis() as f64 / 1e3);
    }

    /// Sets the number of tokio tasks alive in the process.
    pub fn set_runtime_tasks(&self, n: usize) {
        self.inner.runtime_tasks.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets whether the last discovery pass of `scope` (its sync cursor) ended in an error.
    pub fn set_pass_failed(&self, scope: &str, failed: bool) {
        self.inner.pass_failed.get_or_create(&ScopeLabel { scope: scope.into() }).set(i64::from(failed));
    }

    /// Records a successful discovery pass of `scope` that ended at `at` (the gauge keeps
    /// the latest one seen, whatever the order of calls).
    pub fn observe_pass_succeeded(&self, scope: &str, at: DateTime<Utc>) {
        let gauge = self.inner.last_pass.get_or_create(&ScopeLabel { scope: scope.into() });
        let current = gauge.get();
        gauge.set(current.max(at.timestamp_millis() as f64 / 1e3));
    }

    /// The Prometheus text exposition, with time-dependent gauges brought up to date.
    pub fn encode(&self, now: DateTime<Utc>) -> String {
        {
            let expiries = self.inner.expiries.lock().unwrap_or_else(|e| e.into_inner());
            let remaining =
                |t: Option<DateTime<Utc>>| t.map_or(0.0, |t| ((t - now).num_milliseconds() as f64 / 1e3).max(0.0));
            self.inner.access_token_expires_in.set(remaining(expiries.access));
            self.inner.refresh_token_expires_in.set(remaining(expiries.refresh));
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}
