//! Discovery: list recordings on sliding windows and record them, idempotently.
//!
//! A pass lists each scope from `cursor - sync.overlap` up to now, in windows of at most
//! `sync.window`, always sending `from`, `to` and `max=100`, and follows `Link rel="next"`
//! to the end. Each page is recorded in one transaction; the last page of a window moves
//! the cursor to the window's end in that same transaction (compare-and-set, for the
//! holder of the scope's discovery lease only), so a crash never skips a window and two
//! replicas never list one scope at once. `backfill` does the same on its own cursor over
//! an older range.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{Scope, SyncSettings};
use crate::metrics::Metrics;
use crate::state::{CursorKind, CursorMove, ListedRecording, RecordingId, ScopeKey, State, StateError};
use crate::supervise::{TestHook, catch_panic};
use crate::webex::models::Recording;
use crate::webex::{Listing, WebexClient, WebexError};

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// Listing a window failed (after the client's retries).
    #[error("listing {scope} window [{from}, {to}) failed: {source}")]
    Window {
        /// Scope.
        scope: ScopeKey,
        /// Window start.
        from: DateTime<Utc>,
        /// Window end.
        to: DateTime<Utc>,
        /// What Webex did.
        #[source]
        source: WebexError,
    },
    /// A page that does not follow the contract.
    #[error("listing {scope} window [{from}, {to}): {problem}{}", .tracking_id.as_ref().map(|t| format!(" (trackingId {t})")).unwrap_or_default())]
    BadPage {
        /// Scope.
        scope: ScopeKey,
        /// Window start.
        from: DateTime<Utc>,
        /// Window end.
        to: DateTime<Utc>,
        /// What is wrong.
        problem: String,
        /// Webex's trackingId of the page.
        tracking_id: Option<String>,
    },
    /// The site list could not be read.
    #[error("reading the site list failed: {0}")]
    Sites(#[source] WebexError),
    /// The state database failed.
    #[error("recording discovery in the database failed: {0}")]
    State(#[from] StateError),
    /// Shutdown interrupted the pass.
    #[error("discovery interrupted by shutdown")]
    Cancelled,
    /// The pass panicked (a bug): its lease was released.
    #[error("the pass panicked (a bug; please report it): {0}")]
    Panicked(String),
}

/// What one scope's pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScopeReport {
    /// Scope.
    pub scope: String,
    /// Windows listed to their end.
    pub windows: u64,
    /// Pages read.
    pub pages: u64,
    /// Recordings seen for the first time.
    pub new: u64,
    /// Recordings seen again.
    pub refreshed: u64,
    /// Items without an id, skipped.
    pub skipped: u64,
    /// Another replica held the scope, so this pass left it alone.
    pub busy: bool,
    /// The cursor after the pass.
    pub position: Option<DateTime<Utc>>,
    /// Why this scope's pass stopped (the other scopes went on).
    pub error: Option<String>,
}

/// Progress of a pass, reported after every window.
#[derive(Debug, Clone, Copy)]
pub struct WindowDone {
    /// Windows finished in this scope's pass.
    pub windows_done: u64,
    /// Windows this scope's pass will list in all.
    pub windows_total: u64,
    /// Recordings seen so far in this pass (new and seen again).
    pub recordings: u64,
    /// End of the window just finished.
    pub position: DateTime<Utc>,
}

/// The discovery side of the archiver.
#[derive(Debug, Clone)]
pub struct Discovery {
    state: State,
    webex: WebexClient,
    settings: SyncSettings,
    scope: Scope,
    site_urls: Vec<String>,
    owner: String,
    metrics: Metrics,
    hook: Option<TestHook>,
}

impl Discovery {
    /// Discovery for the given listing scope. `owner` names this process in leases.
    pub fn new(
        state: State,
        webex: WebexClient,
        settings: SyncSettings,
        scope: Scope,
        site_urls: Vec<String>,
        owner: String,
        metrics: Metrics,
    ) -> Self {
        Self { state, webex, settings, scope, site_urls, owner, metrics, hook: None }
    }

    /// Calls `hook` with the scope at the start of every scope's pass (tests use it to
    /// make a pass panic).
    #[doc(hidden)]
    pub fn with_test_hook(mut self, hook: TestHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// The scopes swept: `user`, or one `admin:<site>` per configured (or listed) site.
    pub async fn scopes(&self) -> Result<Vec<ScopeKey>, DiscoveryError> {
        match self.scope {
            Scope::User => Ok(vec![ScopeKey::user()]),
            Scope::Admin if !self.site_urls.is_empty() => {
                Ok(self.site_urls.iter().map(|s| ScopeKey::admin(s)).collect())
            }
            Scope::Admin => {
                let sites = self.webex.sites().await.map_err(|e| match e {
                    WebexError::Cancelled => DiscoveryError::Cancelled,
                    e => DiscoveryError::Sites(e),
                })?;
                Ok(sites.iter().map(|s| ScopeKey::admin(&s.site_url)).collect())
            }
        }
    }

    /// One pass over every scope, from each sync cursor up to now. A scope whose pass
    /// fails is reported (its cursor keeps the error) and the other scopes go on; only
    /// shutdown and a failing site list stop the whole pass.
    pub async fn poll_once(
        &self,
        cancel: &CancellationToken,
        progress: &(dyn Fn(&ScopeKey, WindowDone) + Send + Sync),
    ) -> Result<Vec<ScopeReport>, DiscoveryError> {
        // Window edges are sent to Webex with millisecond precision and stored in both
        // databases exactly: keep every instant at whole milliseconds.
        let now = Utc::now().trunc_subsecs(3);
        let since = self.settings.since.resolve(now).trunc_subsecs(3);
        self.sweep_all(CursorKind::Sync, since, now, None, cancel, progress).await
    }

    /// Lists `[since, until)` on the backfill cursors (resuming where a previous run with the
    /// same range stopped).
    pub async fn backfill(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        cancel: &CancellationToken,
        progress: &(dyn Fn(&ScopeKey, WindowDone) + Send + Sync),
    ) -> Result<Vec<ScopeReport>, DiscoveryError> {
        let (since, until) = (since.trunc_subsecs(3), until.min(Utc::now()).trunc_subsecs(3));
        self.sweep_all(CursorKind::Backfill, since, until, Some((since, until)), cancel, progress).await
    }

    async fn sweep_all(
        &self,
        kind: CursorKind,
        initial: DateTime<Utc>,
        end: DateTime<Utc>,
        range: Option<(DateTime<Utc>, DateTime<Utc>)>,
        cancel: &CancellationToken,
        progress: &(dyn Fn(&ScopeKey, WindowDone) + Send + Sync),
    ) -> Result<Vec<ScopeReport>, DiscoveryError> {
        let mut reports = Vec::new();
        for scope in self.scopes().await? {
            match self.sweep(&scope, kind, initial, end, range, cancel, progress).await {
                Ok(report) => reports.push(report),
                Err(DiscoveryError::Cancelled) => return Err(DiscoveryError::Cancelled),
                Err(e) => {
                    tracing::error!(scope = %scope, error = %e, "this scope's pass stopped; the other scopes go on");
                    reports.push(ScopeReport {
                        scope: scope.0.clone(),
                        error: Some(e.to_string()),
                        ..Default::default()
                    });
                }
            }
        }
        Ok(reports)
    }

    #[allow(clippy::too_many_arguments)]
    async fn sweep(
        &self,
        scope: &ScopeKey,
        kind: CursorKind,
        initial: DateTime<Utc>,
        end: DateTime<Utc>,
        range: Option<(DateTime<Utc>, DateTime<Utc>)>,
        cancel: &CancellationToken,
        progress: &(dyn Fn(&ScopeKey, WindowDone) + Send + Sync),
    ) -> Result<ScopeReport, DiscoveryError> {
        let lease = self.settings.discovery_lease;
        let mut report = ScopeReport { scope: scope.0.clone(), ..Default::default() };
        let Some(cursor) = self.state.acquire_cursor(scope, kind, &self.owner, lease, initial, range).await? else {
            tracing::info!(scope = %scope, "another replica is listing this scope; leaving it to it");
            report.busy = true;
            return Ok(report);
        };
        let held = async {
            if let Some(hook) = &self.hook {
                hook.call(&scope.0);
            }
            self.sweep_held(
                scope,
                kind,
                cursor.position,
                cursor.last_success_at.is_some(),
                end,
                range,
                cancel,
                progress,
                &mut report,
            )
            .await
        };
        // NOTE: a panic is a bug, but it must not strand the scope's lease: it ends this
        // scope's pass with an error, the lease is released, the other scopes go on.
        let result = catch_panic(held).await.unwrap_or_else(|message| {
            self.metrics.task_panicked("discovery");
            tracing::error!(scope = %scope, panic = %message, "a discovery pass panicked; its lease is released");
            Err(DiscoveryError::Panicked(message))
        });
        let outcome = result.as_ref().map(|_| ()).map_err(|e| e.to_string());
        if let Err(e) = self.state.release_cursor(scope, kind, &self.owner, outcome).await {
            tracing::warn!(scope = %scope, error = %e, "cannot release the discovery lease; it expires by itself");
        }
        result.map(|()| report)
    }

    #[allow(clippy::too_many_arguments)]
    async fn sweep_held(
        &self,
        scope: &ScopeKey,
        kind: CursorKind,
        mut position: DateTime<Utc>,
        passed_before: bool,
        end: DateTime<Utc>,
        range: Option<(DateTime<Utc>, DateTime<Utc>)>,
        cancel: &CancellationToken,
        progress: &(dyn Fn(&ScopeKey, WindowDone) + Send + Sync),
        report: &mut ScopeReport,
    ) -> Result<(), DiscoveryError> {
        let overlap = if kind == CursorKind::Sync && passed_before { self.settings.overlap } else { Duration::ZERO };
        let start = position - chrono::Duration::from_std(overlap).unwrap_or_default();
        let window = chrono::Duration::from_std(self.settings.window).unwrap_or(chrono::Duration::days(7));
        let windows_total = if end > start {
            ((end - start).num_milliseconds() as f64 / window.num_milliseconds() as f64).ceil() as u64
        } else {
            0
        };
        let listing = match scope.0.strip_prefix("admin:") {
            Some(site_url) => Listing::Admin { site_url },
            None => Listing::User,
        };
        let mut from = start;
        while from < end {
            if cancel.is_cancelled() {
                return Err(DiscoveryError::Cancelled);
            }
            let to = (from + window).min(end);
            // Keep the scope's lease while a long pass goes on.
            if self
                .state
                .acquire_cursor(scope, kind, &self.owner, self.settings.discovery_lease, position, range)
                .await?
                .is_none()
            {
                return Err(DiscoveryError::State(StateError::LostCursor { scope: scope.clone() }));
            }
            let seen = self.list_window(scope, listing, kind, from, to, &mut position, report).await?;
            report.windows += 1;
            progress(scope, WindowDone { windows_done: report.windows, windows_total, recordings: seen, position: to });
            from = to;
        }
        report.position = Some(position);
        Ok(())
    }

    /// Lists one window to its last page. Returns the recordings seen so far in the pass.
    #[allow(clippy::too_many_arguments)]
    async fn list_window(
        &self,
        scope: &ScopeKey,
        listing: Listing<'_>,
        kind: CursorKind,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        position: &mut DateTime<Utc>,
        report: &mut ScopeReport,
    ) -> Result<u64, DiscoveryError> {
        let mut url = self.webex.list_url(listing, from, to);
        loop {
            let page = self.webex.list_page(url).await.map_err(|e| match e {
                WebexError::Cancelled => DiscoveryError::Cancelled,
                WebexError::Parse { problem, tracking_id, .. } => {
                    DiscoveryError::BadPage { scope: scope.clone(), from, to, problem, tracking_id }
                }
                source => DiscoveryError::Window { scope: scope.clone(), from, to, source },
            })?;
            report.pages += 1;
            let mut items = Vec::with_capacity(page.items.len());
            let mut skipped = 0u64;
            for value in page.items {
                match listed(scope, value) {
                    Ok(Some(item)) => items.push(item),
                    Ok(None) => {
                        skipped += 1;
                        tracing::warn!(scope = %scope, tracking_id = page.tracking_id.as_deref().unwrap_or(""), "a listed item has no id; skipped");
                    }
                    Err(problem) => {
                        return Err(DiscoveryError::BadPage {
                            scope: scope.clone(),
                            from,
                            to,
                            problem,
                            tracking_id: page.tracking_id,
                        });
                    }
                }
            }
            // The window's last page moves the cursor, in the same transaction.
            let cursor_move = match &page.next {
                None if to > *position => Some(CursorMove { kind, from: *position, to }),
                _ => None,
            };
            let recorded = self.state.record_page(scope, &self.owner, &items, skipped, cursor_move).await?;
            if let Some(m) = cursor_move {
                *position = m.to;
            }
            self.metrics.discovered(recorded.new);
            report.new += recorded.new;
            report.refreshed += recorded.refreshed;
            report.skipped += skipped;
            match page.next {
                Some(next) => url = next,
                None => return Ok(report.new + report.refreshed),
            }
        }
    }
}

/// The domain view of one listing item: `Ok(None)` when it has no id (skipped, counted).
fn listed(scope: &ScopeKey, value: serde_json::Value) -> Result<Option<ListedRecording>, String> {
    let recording = Recording::from_value(&value).map_err(|e| format!("an item does not follow the contract: {e}"))?;
    let Some(id) = recording.id.filter(|id| !id.is_empty()) else {
        return Ok(None);
    };
    let create_time = recording.create_time.ok_or_else(|| format!("recording {id} has no createTime"))?;
    Ok(Some(ListedRecording {
        id: RecordingId(id),
        scope: scope.clone(),
        site_url: recording.site_url,
        host_email: recording.host_email,
        meeting_id: recording.meeting_id,
        topic: recording.topic,
        format: recording.format,
        create_time,
        size_bytes: recording.size_bytes.and_then(|s| i64::try_from(s).ok()),
        listing: crate::state::listing_without_secrets(value),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_without_an_id_are_skipped_and_passwords_dropped() {
        let scope = ScopeKey::user();
        let item = serde_json::json!({"id": "r1", "createTime": "2026-11-01T10:00:00Z", "password": "S3cret",
            "format": "SOMETHING_NEW", "futureField": [1, 2]});
        let recorded = listed(&scope, item).unwrap().expect("an item with an id is recorded");
        assert_eq!(recorded.id.0, "r1");
        assert_eq!(recorded.format.as_deref(), Some("SOMETHING_NEW"));
        assert!(recorded.listing.get("password").is_none(), "the password is never stored");
        assert!(recorded.listing.get("futureField").is_some(), "unknown fields are kept");
        assert!(listed(&scope, serde_json::json!({"createTime": "2026-11-01T10:00:00Z"})).unwrap().is_none());
        assert!(listed(&scope, serde_json::json!({"id": "", "createTime": "2026-11-01T10:00:00Z"})).unwrap().is_none());
    }

    #[test]
    fn an_item_that_breaks_the_contract_fails_the_page() {
        let scope = ScopeKey::user();
        assert!(listed(&scope, serde_json::json!({"id": "r1"})).unwrap_err().contains("no createTime"));
        assert!(listed(&scope, serde_json::json!({"id": "r1", "createTime": "yesterday"})).is_err());
        assert!(listed(&scope, serde_json::json!({"id": 5, "createTime": "2026-11-01T10:00:00Z"})).is_err());
    }
}
