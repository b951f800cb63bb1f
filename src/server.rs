//! The operations endpoint of `run`: `/healthz` (liveness), `/readyz` (readiness, with a
//! JSON body naming the failed check) and `/metrics` (Prometheus text format).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::State as AxumState;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::domain::CursorKind;
use crate::metrics::Metrics;
use crate::state::{Gauges, State};
use crate::storage::Store;
use crate::webex::WebexClient;

/// Time limit of each readiness check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the recordings are counted for `/metrics` at most, across every replica
/// (longer when a count is slow: see `StateStore::refresh_counts`).
const COUNTS_EVERY: Duration = Duration::from_secs(5);
/// How long a count may take before another replica may take it over.
const COUNTING_TTL: Duration = Duration::from_secs(60);

/// Liveness flags the long-running loops keep up.
#[derive(Debug, Default)]
pub struct Liveness {
    /// Set when a loop ended unexpectedly (panic or early exit).
    pub broken: AtomicBool,
}

/// What the endpoint reads.
#[derive(Clone)]
pub struct Endpoint {
    /// State database.
    pub state: State,
    /// The object store holding the archive.
    pub store: Store,
    /// Webex client (token lifetimes, last authentication outcome).
    pub webex: WebexClient,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Loops' liveness.
    pub liveness: Arc<Liveness>,
    /// /readyz fails when the last successful pass is older than this.
    pub max_pass_age: Duration,
    /// When the process started (a fresh process is given `max_pass_age` for its first pass).
    pub started_at: DateTime<Utc>,
}

/// Serves the endpoint on `listener` until `cancel` fires, and meanwhile keeps the shared
/// counts that `/metrics` shows fresh ([`keep_counts`]).
pub async fn serve(listener: TcpListener, endpoint: Endpoint, cancel: CancellationToken) -> std::io::Result<()> {
    let counting_stop = cancel.child_token();
    let counting = tokio::spawn(keep_counts(endpoint.state.clone(), counting_stop.clone()));
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(endpoint);
    let served = axum::serve(listener, app).with_graceful_shutdown(cancel.cancelled_owned()).await;
    counting_stop.cancel();
    let _ = counting.await;
    served
}

/// Counts the recordings into the shared counts every [`COUNTS_EVERY`] when they are
/// stale and no other replica is counting, until `cancel` fires. A scrape only reads
/// them: counting a million rows on every scrape would make each scrape as slow as the
/// count, and N replicas N times as costly.
async fn keep_counts(state: State, cancel: CancellationToken) {
    let owner = format!("metrics-{}", uuid::Uuid::new_v4().simple());
    loop {
        tokio::select! {
            counted = state.refresh_counts(&owner, COUNTS_EVERY, COUNTING_TTL) => {
                if let Err(e) = counted {
                    // The database's outages are reported by /readyz and the workers.
                    tracing::debug!(error = %crate::errors::ErrorChain(&e), "cannot count the recordings for /metrics");
                }
            }
            _ = cancel.cancelled() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(COUNTS_EVERY) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

async fn healthz(AxumState(endpoint): AxumState<Endpoint>) -> Response {
    let panics = endpoint.metrics.task_panics();
    if endpoint.liveness.broken.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "a worker or discovery loop has stopped\n").into_response()
    } else if panics > 0 {
        // Still alive: each panicking task was restarted. The count says a bug was hit.
        let body = format!(
            "ok; {panics} task panic(s) caught and restarted (webex_archiver_task_panics_total; see the logs)\n"
        );
        (StatusCode::OK, body).into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

/// The readiness report: each check is "ok" or says what failed.
#[derive(Debug, Serialize)]
pub struct Readiness {
    /// All checks passed.
    pub ready: bool,
    /// Database answers.
    pub database: String,
    /// Store answers.
    pub store: String,
    /// Token usable.
    pub token: String,
    /// Last successful discovery pass recent enough.
    pub discovery: String,
    /// The bucket's Object Lock posture matches `storage.object_lock`.
    pub object_lock: String,
}

async fn readyz(AxumState(endpoint): AxumState<Endpoint>) -> Response {
    let report = readiness(&endpoint).await;
    let status = if report.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(report)).into_response()
}

/// Runs the readiness checks.
pub async fn readiness(endpoint: &Endpoint) -> Readiness {
    let now = Utc::now();
    let database = match tokio::time::timeout(CHECK_TIMEOUT, endpoint.state.ping()).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => format!("unavailable: {}", crate::errors::ErrorChain(&e)),
        Err(_) => "unavailable: no answer within 5 s".to_owned(),
    };
    let store = match tokio::time::timeout(CHECK_TIMEOUT, endpoint.store.probe()).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => format!("unavailable: {}", crate::errors::ErrorChain(&e)),
        Err(_) => "unavailable: no answer within 5 s".to_owned(),
    };
    let token = token_check(endpoint, now).await;
    let discovery = match tokio::time::timeout(CHECK_TIMEOUT, endpoint.state.cursors()).await {
        Ok(Ok(cursors)) => {
            let sync: Vec<_> = cursors.iter().filter(|c| c.kind == CursorKind::Sync).collect();
            let oldest = sync.iter().map(|c| c.last_success_at).min().flatten();
            let limit = chrono::Duration::from_std(endpoint.max_pass_age).unwrap_or_default();
            match oldest {
                Some(at) if now - at <= limit => "ok".to_owned(),
                Some(at) => {
                    format!("the last successful pass of a scope was at {at}, older than {:?}", endpoint.max_pass_age)
                }
                None if now - endpoint.started_at <= limit => "ok (first pass under way)".to_owned(),
                None => format!("no successful discovery pass in {:?}", endpoint.max_pass_age),
            }
        }
        Ok(Err(e)) => format!("unknown: {}", crate::errors::ErrorChain(&e)),
        Err(_) => "unknown: the database did not answer".to_owned(),
    };
    let wanted = endpoint.store.object_lock().retention().is_some();
    let object_lock = match tokio::time::timeout(CHECK_TIMEOUT, endpoint.store.check_posture()).await {
        Ok(Ok((_, check))) if !check.errors.is_empty() => format!("mismatch: {}", check.errors.join("; ")),
        Ok(Ok((_, check))) if !check.warnings.is_empty() => format!("ok (warning: {})", check.warnings.join("; ")),
        Ok(Ok(_)) => "ok".to_owned(),
        Ok(Err(e)) if wanted => format!("unknown: {}", crate::errors::ErrorChain(&e)),
        Ok(Err(e)) => format!("ok (unknown: {})", crate::errors::ErrorChain(&e)),
        Err(_) if wanted => "unknown: no answer within 5 s".to_owned(),
        Err(_) => "ok (unknown: no answer within 5 s)".to_owned(),
    };
    let ready = [&database, &store, &token, &discovery, &object_lock].iter().all(|c| c.starts_with("ok"));
    Readiness { ready, database, store, token, discovery, object_lock }
}

async fn token_check(endpoint: &Endpoint, now: DateTime<Utc>) -> String {
    if let Some(revoked) = endpoint.webex.tokens().revoked() {
        return revoked;
    }
    if endpoint.webex.unauthorized() {
        return "refused: Webex answered 401 to the last request, even after a refresh".into();
    }
    let (access, refresh) = endpoint.webex.tokens().expiries().await;
    if refresh.is_some_and(|r| r <= now) {
        return format!("the OAuth refresh token expired at {}", refresh.unwrap_or(now));
    }
    if access.is_some_and(|a| a <= now) && refresh.is_none() {
        return "the access token has expired".into();
    }
    "ok".into()
}

async fn metrics(AxumState(endpoint): AxumState<Endpoint>) -> Response {
    let now = Utc::now();
    let (mut access, mut refresh) = endpoint.webex.tokens().expiries().await;
    match tokio::time::timeout(CHECK_TIMEOUT, endpoint.state.gauges()).await {
        Ok(Ok(gauges)) => {
            observe_gauges(&endpoint.metrics, &gauges, now);
            // Another replica may hold the newest tokens: the database knows their lifetimes.
            if let Some(oauth) = &gauges.oauth {
                access = access.max(oauth.access_expires_at);
                refresh = refresh.max(oauth.refresh_expires_at);
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %crate::errors::ErrorChain(&e), "metrics: cannot read the database; database gauges are stale")
        }
        Err(_) => tracing::warn!("metrics: the database did not answer; database gauges are stale"),
    }
    endpoint.metrics.set_token_expiries(access, refresh);
    endpoint.metrics.set_runtime_tasks(tokio::runtime::Handle::current().metrics().num_alive_tasks());
    let body = endpoint.metrics.encode(now);
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
        .into_response()
}

/// Sets the database-derived gauges: recordings per state and gone at the source (as
/// last counted, once they have been), the oldest unarchived recording's age, quarantined
/// items, and per scope whether the last pass failed and when the last one succeeded.
pub fn observe_gauges(metrics: &Metrics, gauges: &Gauges, now: DateTime<Utc>) {
    if let Some(counted) = &gauges.counts {
        for (state, n) in &counted.counts {
            metrics.set_recordings(state.as_str(), *n);
        }
        metrics.set_gone_at_source("deleted", counted.deleted_at_source);
        metrics.set_gone_at_source("purged", counted.purged_at_source);
        metrics.set_counted_at(counted.counted_at);
    }
    let age = gauges.oldest_unarchived.as_ref().map_or(0.0, |(_, t)| (now - *t).num_milliseconds() as f64 / 1e3);
    metrics.set_oldest_unarchived_age(age);
    metrics.set_quarantined(gauges.quarantined);
    for cursor in &gauges.cursors {
        if cursor.kind == CursorKind::Sync {
            metrics.set_pass_failed(&cursor.scope.0, cursor.last_error.is_some());
        }
        if let Some(at) = cursor.last_success_at {
            metrics.observe_pass_succeeded(&cursor.scope.0, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ArchiveState, RecordingId, ScopeKey};
    use crate::state::{Cursor, SharedCounts};

    fn cursor(scope: &str, kind: CursorKind, success: Option<DateTime<Utc>>, error: Option<&str>) -> Cursor {
        Cursor {
            scope: ScopeKey(scope.into()),
            kind,
            position: DateTime::UNIX_EPOCH,
            range_start: None,
            range_end: None,
            last_pass_at: None,
            last_success_at: success,
            last_error: error.map(str::to_owned),
            items_listed: 0,
            items_quarantined: 0,
        }
    }

    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.parse().ok()))
    }

    #[test]
    fn the_gauges_set_the_database_metrics() {
        let now: DateTime<Utc> = "2026-11-27T12:00:00Z".parse().unwrap();
        let earlier: DateTime<Utc> = "2026-11-27T11:00:00Z".parse().unwrap();
        let mut counts = SharedCounts {
            counted_at: "2026-11-27T11:59:58Z".parse().unwrap(),
            deleted_at_source: 4,
            purged_at_source: 1,
            ..Default::default()
        };
        counts.counts.insert(ArchiveState::Pending, 5);
        counts.counts.insert(ArchiveState::NotDownloadable, 2);
        let mut gauges = Gauges {
            counts: None,
            oldest_unarchived: Some((RecordingId("r1".into()), "2026-11-27T11:59:00Z".parse().unwrap())),
            quarantined: 3,
            cursors: vec![
                cursor("user", CursorKind::Sync, Some(earlier), Some("boom")),
                cursor("admin:a", CursorKind::Backfill, None, Some("backfill errors are not the live edge's")),
            ],
            oauth: None,
        };
        let metrics = Metrics::new();
        // Not counted yet: no recordings gauge rather than a false zero.
        observe_gauges(&metrics, &gauges, now);
        assert_eq!(sample(&metrics.encode(now), "webex_archiver_recordings{state=\"pending\"}"), None);
        gauges.counts = Some(counts);
        observe_gauges(&metrics, &gauges, now);
        // A later read with an older success does not move the pass timestamp back.
        gauges.cursors[0].last_success_at = Some("2026-11-27T10:00:00Z".parse().unwrap());
        observe_gauges(&metrics, &gauges, now);

        let text = metrics.encode(now);
        assert_eq!(
            sample(&text, "webex_archiver_recordings_counted_timestamp_seconds"),
            Some(now.timestamp() as f64 - 2.0)
        );
        assert_eq!(sample(&text, "webex_archiver_recordings{state=\"pending\"}"), Some(5.0));
        assert_eq!(sample(&text, "webex_archiver_recordings{state=\"not_downloadable\"}"), Some(2.0));
        assert_eq!(sample(&text, "webex_archiver_oldest_unarchived_age_seconds"), Some(60.0));
        assert_eq!(sample(&text, "webex_archiver_quarantined_items"), Some(3.0));
        assert_eq!(sample(&text, "webex_archiver_recordings_gone_at_source{status=\"deleted\"}"), Some(4.0));
        assert_eq!(sample(&text, "webex_archiver_recordings_gone_at_source{status=\"purged\"}"), Some(1.0));
        assert_eq!(sample(&text, "webex_archiver_discovery_last_pass_failed{scope=\"user\"}"), Some(1.0));
        assert_eq!(sample(&text, "webex_archiver_discovery_last_pass_failed{scope=\"admin:a\"}"), None);
        assert_eq!(
            sample(&text, "webex_archiver_last_successful_pass_timestamp_seconds{scope=\"user\"}"),
            Some(earlier.timestamp() as f64)
        );
    }
}
