//! Discovery: list recordings on sliding windows and record them, idempotently.
//!
//! A pass lists each scope from `cursor - sync.overlap` up to now, in windows of at most
//! `sync.window`, always sending `from`, `to` and `max=100`, and follows `Link rel="next"`
//! to the end. Each page is recorded in one transaction; the last page of a window moves
//! the cursor to the window's end in that same transaction (compare-and-set, for the
//! holder of the scope's discovery lease only), so a crash never skips a window and two
//! replicas never list one scope at once. The lease is renewed before every page and
//! while a page waits (a long Retry-After pause), so another replica never takes over a
//! window halfway. `backfill` does the same on its own cursor over an older range.
//!
//! Scopes are listed concurrently, up to `sync.site_concurrency` at once (in one task:
//! the work is waiting on Webex and the database), each under its own lease: a site whose
//! listing hangs or fails holds one slot, never another site's cursor. Every request of
//! every scope goes through the one client, so through the shared Retry-After gate and
//! `webex.max_requests_per_second`. The reports come back in the order of the scopes.
//! Shutdown cuts the request a scope waits on (its lease is released) and starts no other
//! scope.
//!
//! No listing can break a pass:
//! - an answer that is not a page (no `items` array, a `next` link to another origin or
//!   back to a page already fetched, more than `webex.max_pages_per_window` pages) is a
//!   bad page: the window is listed again a few times with backoff, then the scope's
//!   pass stops with an error naming the window and the trackingId, the cursor stays,
//!   and the other scopes go on;
//! - an item that cannot be read is quarantined in the page's transaction (kept raw, with
//!   its reason and trackingId) and the rest of the page is recorded;
//! - at the start and at the end of each scope's pass, the scope's quarantine is read
//!   again with the current code; an entry with an id but no readable listing is read
//!   with its recording's details (once per pass, at most [`DETAILS_PER_PASS`] per scope),
//!   which are authoritative for `createTime`. What reads is recorded and released.
//!
//! Deletions at the source: when a scope's sync pass has listed its windows and its
//! deletion sweep is due (`compliance.deletion_sweep` after the last complete one, and at
//! once when there is none), the same lease lists `compliance.deletion_horizon` again with
//! `status=deleted` and, on the admin listing, `status=purged` (30-day windows on the admin
//! listing, 7-day ones on the user listing, which shows purged recordings only with a
//! `meetingId`). Each page is recorded like any other (a recording never seen is recorded,
//! pending: a Compliance Officer's token may still fetch it), and the first time each
//! recording is seen deleted or purged is recorded with it. The cursors never move with
//! these listings. A refused `purged` listing (not a Compliance Officer) is noted, not an
//! error, and not asked of the other scopes of that pass (the role is the token's); a
//! failing sweep is the scope's error and is due again within the hour.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backoff::backoff::Backoff;
use chrono::{DateTime, SubsecRound, Utc};
use futures::StreamExt as _;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::config::{ComplianceSettings, SyncSettings};
use crate::domain::{CursorKind, RecordingId, Scope, ScopeKey, SourceStatus};
use crate::errors::ErrorChain;
use crate::metrics::Metrics;
use crate::state::{
    Cursor, CursorMove, DeletionSweep, ListedIn, ListedRecording, PageRecorded, QuarantineEntry, QuarantineKey,
    QuarantinedItem, ReleasedHow, State, StateError, SweepEnd,
};
use crate::supervise::{TestHook, catch_panic};
use crate::webex::models::{ItemRead, PageError, ReadableItem, read_item, read_with_details};
use crate::webex::{Listing, WebexClient, WebexError};

/// Default of `webex.max_pages_per_window`.
pub const DEFAULT_MAX_PAGES_PER_WINDOW: u32 = 10_000;
/// Listings of one window within a pass when its answers are bad pages.
pub const BAD_PAGE_TRIES: u32 = 3;
/// Pause before listing a window again after a bad page; doubles (with jitter) each try.
const BAD_PAGE_RETRY: Duration = Duration::from_secs(1);
/// Details requests for quarantined items, per scope and pass.
pub const DETAILS_PER_PASS: usize = 100;
/// Quarantine entries read from the database at once when re-reading them.
const REREAD_BATCH: u32 = 100;
/// Windows listed again per scope and pass to find items without a usable id again.
pub const RELIST_WINDOWS_PER_PASS: usize = 10;

/// Width of a deletion sweep's windows on the admin listing (its longest span).
const ADMIN_DELETION_WINDOW: Duration = Duration::from_secs(30 * 86_400);
/// Width of a deletion sweep's windows on the user listing (its default span).
const USER_DELETION_WINDOW: Duration = Duration::from_secs(7 * 86_400);
/// A deletion sweep that failed is due again after this (or `compliance.deletion_sweep`
/// if shorter).
const DELETION_SWEEP_RETRY: Duration = Duration::from_secs(3_600);

/// The note of a deletion sweep refused the purged listing.
const PURGED_REFUSED: &str = "Webex refuses this token the purged recordings (a Compliance Officer's token sees them)";

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// Listing a window failed (after the client's retries).
    #[error("listing {scope} window [{from}, {to}) failed")]
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
    /// An answer that is not a page, still after the window was listed again.
    #[error("listing {scope} window [{from}, {to}): bad page{}", .tracking_id.as_ref().map(|t| format!(" (trackingId {t})")).unwrap_or_default())]
    BadPage {
        /// Scope.
        scope: ScopeKey,
        /// Window start.
        from: DateTime<Utc>,
        /// Window end.
        to: DateTime<Utc>,
        /// What is wrong.
        #[source]
        problem: PageProblem,
        /// Webex's trackingId of the page.
        tracking_id: Option<String>,
    },
    /// The site list could not be read.
    #[error("reading the site list failed")]
    Sites(#[source] WebexError),
    /// The state database failed.
    #[error("recording discovery in the database failed")]
    State(#[from] StateError),
    /// Shutdown interrupted the pass.
    #[error("discovery interrupted by shutdown")]
    Cancelled,
    /// The pass panicked (a bug): its lease was released.
    #[error("the pass panicked (a bug; please report it): {0}")]
    Panicked(String),
}

/// What makes a listing answer a bad page.
#[derive(Debug, thiserror::Error)]
pub enum PageProblem {
    /// The body is not a JSON object with an `items` array.
    #[error(transparent)]
    NotAPage(PageError),
    /// The client could not read the answer as a page (e.g. its Link header).
    #[error("{0}")]
    Unreadable(String),
    /// A `next` link to another scheme, host or port than `webex.base_url`'s.
    #[error("the next link leads to {origin}, not to the API's origin {expected}; it was not followed")]
    ForeignNext {
        /// Scheme, host and port of the link (nothing more: no path, no query).
        origin: String,
        /// The API's.
        expected: String,
    },
    /// A `next` link back to a page already fetched in this window.
    #[error("the next link of page {page} leads back to a page already fetched in this window (a loop)")]
    Loop {
        /// Pages fetched in the window so far.
        page: u64,
    },
    /// More pages than `webex.max_pages_per_window`.
    #[error("the window has more than {max} pages (webex.max_pages_per_window)")]
    TooManyPages {
        /// The setting.
        max: u32,
    },
}

impl PageProblem {
    /// Whether listing the window again may help: not for a window too long to list,
    /// which would cost as many requests again.
    fn worth_retrying(&self) -> bool {
        !matches!(self, Self::TooManyPages { .. })
    }
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
    /// Listed items that could not be read, quarantined.
    pub quarantined: u64,
    /// Quarantine entries released (their recording is now recorded).
    pub released: u64,
    /// Items listed by this pass's deletion sweep with `status=deleted`.
    pub seen_deleted: u64,
    /// Items listed by this pass's deletion sweep with `status=purged`.
    pub seen_purged: u64,
    /// Answers that were not a page (each try counted).
    pub bad_pages: u64,
    /// Another replica held the scope, so this pass left it alone.
    pub busy: bool,
    /// The cursor after the pass.
    pub position: Option<DateTime<Utc>>,
    /// Why this scope's pass stopped (the other scopes went on).
    pub error: Option<String>,
    /// Quarantine keys sent by the pages read (to release entries a window re-listed
    /// without them).
    #[serde(skip)]
    seen_quarantine: HashSet<QuarantineKey>,
}

impl ScopeReport {
    fn count(&mut self, recorded: PageRecorded) {
        self.new += recorded.new;
        self.refreshed += recorded.refreshed;
        self.released += recorded.released;
    }
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
    max_pages_per_window: u32,
    compliance: Option<ComplianceSettings>,
}

/// One scope's pass: what it lists and what drives it. Built once per scope and handed
/// down to every window and re-read of the pass.
#[derive(Clone, Copy)]
struct ScopePass<'a> {
    /// The scope listed.
    scope: &'a ScopeKey,
    /// The cursor the pass moves.
    kind: CursorKind,
    /// Shutdown: the pass stops at the next page.
    cancel: &'a CancellationToken,
    /// Told after every window.
    progress: &'a (dyn Fn(&ScopeKey, WindowDone) + Send + Sync),
    /// The source status listed by a deletion sweep; `None` for the available
    /// recordings (the only listings that move the cursor).
    status: Option<SourceStatus>,
    /// Set when a scope of this pass was refused the purged listing: the role is the
    /// token's, so the other scopes do not ask again in this pass.
    purged_refused: &'a AtomicBool,
}

/// What a pass lists: up to `end`, from the cursor, which starts at `initial` when it
/// does not exist yet; for backfill, `range` is the span asked for.
#[derive(Debug, Clone, Copy)]
struct Span {
    initial: DateTime<Utc>,
    end: DateTime<Utc>,
    range: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// A listing window `[from, to)`.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

/// What re-reading the quarantine may still spend in one scope's pass.
#[derive(Debug)]
struct RereadBudget {
    /// Entries whose details were fetched in this pass (once each).
    checked: HashSet<QuarantineKey>,
    /// Details requests left.
    details_left: usize,
}

impl Default for RereadBudget {
    fn default() -> Self {
        Self { checked: HashSet::new(), details_left: DETAILS_PER_PASS }
    }
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
        Self {
            state,
            webex,
            settings,
            scope,
            site_urls,
            owner,
            metrics,
            max_pages_per_window: DEFAULT_MAX_PAGES_PER_WINDOW,
            hook: None,
            compliance: None,
        }
    }

    /// Sweeps each scope for deletions at the source as `settings` say (off without it).
    pub fn with_deletion_sweep(mut self, settings: ComplianceSettings) -> Self {
        self.compliance = Some(settings);
        self
    }

    /// Sets `webex.max_pages_per_window` (at least 1).
    pub fn with_max_pages_per_window(mut self, max: u32) -> Self {
        self.max_pages_per_window = max.max(1);
        self
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
        self.sweep_all(CursorKind::Sync, Span { initial: since, end: now, range: None }, cancel, progress).await
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
        let span = Span { initial: since, end: until, range: Some((since, until)) };
        self.sweep_all(CursorKind::Backfill, span, cancel, progress).await
    }

    /// Sweeps every scope, up to `sync.site_concurrency` at once, each under its own lease
    /// (a scope that hangs or fails holds one slot and nothing else: the others' cursors
    /// move on). The reports come back in the order of the scopes. Shutdown lets the
    /// scopes being listed stop at their next step (releasing their leases) and starts no
    /// other.
    async fn sweep_all(
        &self,
        kind: CursorKind,
        span: Span,
        cancel: &CancellationToken,
        progress: &(dyn Fn(&ScopeKey, WindowDone) + Send + Sync),
    ) -> Result<Vec<ScopeReport>, DiscoveryError> {
        let scopes = self.scopes().await?;
        let purged_refused = AtomicBool::new(false);
        let purged_refused = &purged_refused;
        let mut reports: Vec<Option<ScopeReport>> = vec![None; scopes.len()];
        // NOTE: each future owns its scope: a closure over `&ScopeKey` would have to be
        // general over that lifetime, which the compiler cannot prove for a Send future.
        let mut passes = futures::stream::iter(scopes.into_iter().enumerate())
            .map(|(index, scope)| async move {
                let pass = ScopePass { scope: &scope, kind, cancel, progress, status: None, purged_refused };
                (index, self.sweep_scope(pass, span).await)
            })
            .buffer_unordered(self.settings.site_concurrency.max(1));
        let mut cancelled = false;
        // NOTE: every pass started is driven to its end, even after a shutdown: dropping
        // one halfway would leave its lease to expire instead of releasing it.
        while let Some((index, outcome)) = passes.next().await {
            match outcome {
                Some(report) => reports[index] = Some(report),
                None => cancelled = true,
            }
        }
        if cancelled || cancel.is_cancelled() {
            return Err(DiscoveryError::Cancelled);
        }
        Ok(reports.into_iter().flatten().collect())
    }

    /// One scope's pass and its report; `None` when shutdown stopped it (or came first).
    async fn sweep_scope(&self, pass: ScopePass<'_>, span: Span) -> Option<ScopeReport> {
        let ScopePass { scope, cancel, .. } = pass;
        if cancel.is_cancelled() {
            return None;
        }
        let mut report = ScopeReport { scope: scope.0.clone(), ..Default::default() };
        match self.sweep(pass, span, &mut report).await {
            Ok(()) => Some(report),
            Err(DiscoveryError::Cancelled) => None,
            Err(e) => {
                tracing::error!(scope = %scope, error = %ErrorChain(&e), "this scope's pass stopped; the other scopes go on");
                report.error = Some(ErrorChain(&e).to_string());
                Some(report)
            }
        }
    }

    async fn sweep(&self, pass: ScopePass<'_>, span: Span, report: &mut ScopeReport) -> Result<(), DiscoveryError> {
        let ScopePass { scope, kind, .. } = pass;
        let lease = self.settings.discovery_lease;
        let acquired = self.state.acquire_cursor(scope, kind, &self.owner, lease, span.initial, span.range).await?;
        let Some(cursor) = acquired else {
            tracing::info!(scope = %scope, "another replica is listing this scope; leaving it to it");
            report.busy = true;
            return Ok(());
        };
        let held = async {
            if let Some(hook) = &self.hook {
                hook.call(&scope.0);
            }
            let mut budget = RereadBudget::default();
            // Windows this pass lists anyway need no listing of their own.
            let overlap = if kind == CursorKind::Sync && cursor.last_success_at.is_some() {
                self.settings.overlap
            } else {
                Duration::ZERO
            };
            let swept_from = crate::time::before(cursor.position, overlap);
            let mut result = self.reread_quarantine(pass, &mut budget, Some(swept_from), report).await;
            if result.is_ok() {
                result = self.sweep_held(pass, &cursor, span.end, report).await;
            }
            if result.is_ok() {
                result = self.release_relisted(scope, swept_from, span.end, report).await;
            }
            if result.is_ok() && kind == CursorKind::Sync {
                result = self.sweep_deletions(pass, report).await;
            }
            // Items quarantined during this pass: their details, now rather than next pass.
            if !matches!(result, Err(DiscoveryError::Cancelled | DiscoveryError::State(StateError::LostCursor { .. })))
            {
                match self.reread_quarantine(pass, &mut budget, None, report).await {
                    Err(e) if result.is_ok() => result = Err(e),
                    Err(e) => {
                        tracing::warn!(scope = %scope, error = %ErrorChain(&e), "re-reading the quarantine failed too")
                    }
                    Ok(()) => {}
                }
            }
            result
        };
        // NOTE: a panic is a bug, but it must not strand the scope's lease: it ends this
        // scope's pass with an error, the lease is released, the other scopes go on.
        let result = catch_panic(held).await.unwrap_or_else(|message| {
            self.metrics.task_panicked("discovery");
            tracing::error!(scope = %scope, panic = %message, "a discovery pass panicked; its lease is released");
            Err(DiscoveryError::Panicked(message))
        });
        let outcome = result.as_ref().map(|_| ()).map_err(|e| ErrorChain(e).to_string());
        if let Err(e) = self.state.release_cursor(scope, kind, &self.owner, outcome).await {
            tracing::warn!(scope = %scope, error = %ErrorChain(&e), "cannot release the discovery lease; it expires by itself");
        }
        result
    }

    /// Lists the windows from the cursor (less the overlap after a first success) to `end`.
    async fn sweep_held(
        &self,
        pass: ScopePass<'_>,
        cursor: &Cursor,
        end: DateTime<Utc>,
        report: &mut ScopeReport,
    ) -> Result<(), DiscoveryError> {
        let ScopePass { scope, kind, cancel, progress, .. } = pass;
        let mut position = cursor.position;
        let passed_before = cursor.last_success_at.is_some();
        let overlap = if kind == CursorKind::Sync && passed_before { self.settings.overlap } else { Duration::ZERO };
        let start = crate::time::before(position, overlap);
        let window = chrono::Duration::from_std(self.settings.window).unwrap_or(chrono::Duration::days(7));
        let windows_total = if end > start {
            ((end - start).num_milliseconds() as f64 / window.num_milliseconds() as f64).ceil() as u64
        } else {
            0
        };
        let mut from = start;
        while from < end {
            if cancel.is_cancelled() {
                return Err(DiscoveryError::Cancelled);
            }
            let to = crate::time::after(from, self.settings.window).min(end);
            let seen = self.list_window(pass, Window { from, to }, &mut position, report).await?;
            report.windows += 1;
            progress(scope, WindowDone { windows_done: report.windows, windows_total, recordings: seen, position: to });
            from = to;
        }
        report.position = Some(position);
        Ok(())
    }

    /// Lists one window to its last page; a window whose answer is a bad page is listed
    /// again, a few times with backoff. Returns the recordings seen so far in the pass.
    async fn list_window(
        &self,
        pass: ScopePass<'_>,
        window: Window,
        position: &mut DateTime<Utc>,
        report: &mut ScopeReport,
    ) -> Result<u64, DiscoveryError> {
        let ScopePass { scope, cancel, .. } = pass;
        let mut backoff = backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(BAD_PAGE_RETRY)
            .with_multiplier(2.0)
            .with_randomization_factor(0.5)
            .with_max_interval(Duration::from_secs(60))
            .with_max_elapsed_time(None)
            .build();
        let mut tries = 0;
        loop {
            tries += 1;
            let error = match self.list_window_once(pass, window, position, report).await {
                Err(error @ DiscoveryError::BadPage { .. }) => error,
                other => return other,
            };
            report.bad_pages += 1;
            self.metrics.bad_page(&scope.0);
            let retry = matches!(&error, DiscoveryError::BadPage { problem, .. } if problem.worth_retrying());
            if !retry || tries >= BAD_PAGE_TRIES {
                return Err(error);
            }
            let delay = backoff.next_backoff().unwrap_or(BAD_PAGE_RETRY);
            tracing::warn!(scope = %scope, error = %ErrorChain(&error), retry_in_s = delay.as_secs_f64(), "a bad page; listing the window again");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cancel.cancelled() => return Err(DiscoveryError::Cancelled),
            }
        }
    }

    /// Lists one window once, from its first page.
    async fn list_window_once(
        &self,
        pass: ScopePass<'_>,
        window: Window,
        position: &mut DateTime<Utc>,
        report: &mut ScopeReport,
    ) -> Result<u64, DiscoveryError> {
        let ScopePass { scope, kind, cancel, .. } = pass;
        let Window { from, to } = window;
        let listing = listing_of(scope);
        let bad =
            |problem, tracking_id| DiscoveryError::BadPage { scope: scope.clone(), from, to, problem, tracking_id };
        let mut url = self.webex.list_url_with_status(listing, from, to, pass.status);
        let origin = url.origin();
        let mut fetched: HashSet<Url> = HashSet::new();
        let mut pages = 0u64;
        loop {
            if cancel.is_cancelled() {
                return Err(DiscoveryError::Cancelled);
            }
            self.renew(scope, kind).await?;
            fetched.insert(url.clone());
            pages += 1;
            let page = self.with_lease(pass, self.webex.list_page(url)).await?.map_err(|e| match e {
                WebexError::Cancelled => DiscoveryError::Cancelled,
                WebexError::Parse { problem, tracking_id, .. } => bad(PageProblem::Unreadable(problem), tracking_id),
                source => DiscoveryError::Window { scope: scope.clone(), from, to, source },
            })?;
            report.pages += 1;
            let tracking_id = page.tracking_id.clone();
            let raw_items = page.items().map_err(|e| bad(PageProblem::NotAPage(e), tracking_id.clone()))?;
            let mut items = Vec::with_capacity(raw_items.len());
            let mut quarantined = Vec::new();
            for raw in raw_items {
                match read_item(raw.get()) {
                    ItemRead::Readable(item) => {
                        if !item.dropped.is_empty() {
                            tracing::warn!(scope = %scope, recording_id = %item.id, fields = ?item.dropped, "fields no JSON tree can hold are left out of the stored listing");
                        }
                        items.push(listed(
                            scope,
                            *item,
                            ListedIn {
                                window: Some((from, to)),
                                tracking_id: tracking_id.clone(),
                                via: None,
                                status: pass.status,
                            },
                        ));
                    }
                    ItemRead::Unreadable(item) => {
                        let entry =
                            QuarantinedItem::new(scope.clone(), item.id, item.reason, item.raw, tracking_id.clone())
                                .listed_in(from, to);
                        report.seen_quarantine.insert(entry.key.clone());
                        tracing::warn!(scope = %scope, key = %entry.key, reason = %entry.reason, tracking_id = tracking_id.as_deref().unwrap_or(""), "a listed item cannot be read; quarantined");
                        quarantined.push(entry);
                    }
                }
            }
            // A next link that is not followed means this page is not the window's last.
            let next = page.next.map(|next| {
                if next.origin() != origin {
                    Err(PageProblem::ForeignNext {
                        origin: next.origin().ascii_serialization(),
                        expected: origin.ascii_serialization(),
                    })
                } else if fetched.contains(&next) {
                    Err(PageProblem::Loop { page: pages })
                } else if pages >= u64::from(self.max_pages_per_window) {
                    Err(PageProblem::TooManyPages { max: self.max_pages_per_window })
                } else {
                    Ok(next)
                }
            });
            // The window's last page moves the cursor, in the same transaction (never a
            // deletion sweep's).
            let cursor_move = match &next {
                None if to > *position && pass.status.is_none() => Some(CursorMove { kind, from: *position, to }),
                _ => None,
            };
            let recorded = self.state.record_page(scope, &self.owner, &items, &quarantined, cursor_move).await?;
            if let Some(m) = cursor_move {
                *position = m.to;
            }
            self.metrics.discovered(recorded.new);
            report.count(recorded);
            report.quarantined += quarantined.len() as u64;
            match pass.status {
                Some(SourceStatus::Deleted) => report.seen_deleted += items.len() as u64,
                Some(SourceStatus::Purged) => report.seen_purged += items.len() as u64,
                None => {}
            }
            match next {
                None => return Ok(report.new + report.refreshed),
                Some(Ok(next)) => url = next,
                Some(Err(problem)) => return Err(bad(problem, tracking_id)),
            }
        }
    }

    /// The scope's deletion sweep, for each source status its listing offers, when due.
    async fn sweep_deletions(&self, pass: ScopePass<'_>, report: &mut ScopeReport) -> Result<(), DiscoveryError> {
        let Some(settings) = self.compliance.filter(|c| !c.deletion_sweep.is_zero()) else { return Ok(()) };
        let scope = pass.scope;
        let (statuses, width): (&[SourceStatus], Duration) = match listing_of(scope) {
            Listing::User => (&[SourceStatus::Deleted], USER_DELETION_WINDOW),
            Listing::Admin { .. } => (&SourceStatus::ALL, ADMIN_DELETION_WINDOW),
        };
        let last = self.state.deletion_sweeps().await?;
        for &status in statuses {
            let now = Utc::now().trunc_subsecs(3);
            let row = last.iter().find(|r| r.scope == *scope && r.status == status);
            if !deletion_sweep_due(row, settings.deletion_sweep, now) {
                continue;
            }
            if status == SourceStatus::Purged && pass.purged_refused.load(Ordering::Relaxed) {
                // NOTE: no request: another site of this pass was refused, and the
                // Compliance Officer role is the token's (org-wide), not a site's.
                let end =
                    SweepEnd::NotPermitted(format!("{PURGED_REFUSED}; not asked again for this site in this pass"));
                self.state.note_deletion_sweep(scope, status, now, &end).await?;
                continue;
            }
            let before = (report.seen_deleted, report.seen_purged);
            let pass = ScopePass { status: Some(status), ..pass };
            let mut position = now;
            let mut from = crate::time::before(now, settings.deletion_horizon);
            let mut result = Ok(());
            while from < now && result.is_ok() {
                let to = crate::time::after(from, width).min(now);
                result = self.list_window(pass, Window { from, to }, &mut position, report).await.map(|_| ());
                from = to;
            }
            let listed = (report.seen_deleted - before.0) + (report.seen_purged - before.1);
            let end = match &result {
                Ok(()) => SweepEnd::Done { items: listed as i64 },
                Err(DiscoveryError::Cancelled) => return Err(DiscoveryError::Cancelled),
                Err(DiscoveryError::Window { source: WebexError::Status { status: 403, .. }, .. })
                    if status == SourceStatus::Purged =>
                {
                    pass.purged_refused.store(true, Ordering::Relaxed);
                    SweepEnd::NotPermitted(PURGED_REFUSED.into())
                }
                Err(e) => SweepEnd::Failed(ErrorChain(e).to_string()),
            };
            match &end {
                SweepEnd::Done { items } => {
                    tracing::info!(scope = %scope, status = status.as_str(), items, "deletion sweep done")
                }
                SweepEnd::NotPermitted(why) => tracing::warn!(scope = %scope, status = status.as_str(), "{why}"),
                SweepEnd::Failed(why) => {
                    tracing::warn!(scope = %scope, status = status.as_str(), error = %why, "deletion sweep stopped")
                }
            }
            self.state.note_deletion_sweep(scope, status, now, &end).await?;
            if let SweepEnd::Failed(_) = end {
                return result;
            }
        }
        Ok(())
    }

    /// Reads the scope's unreleased quarantine entries again: one that reads now is
    /// recorded and released; one with an id is read with its details, once per pass,
    /// within the pass's budget. With `relist_before` (where this pass's sweep starts),
    /// the windows of entries that still do not read, and that the sweep does not cover
    /// whole, are listed again (a few per pass): an item without a usable id can only be found
    /// again that way. Such an entry that its window's new listing no longer sends is
    /// released: its recording now reads (and that listing recorded it) or is gone.
    async fn reread_quarantine(
        &self,
        pass: ScopePass<'_>,
        budget: &mut RereadBudget,
        relist_before: Option<DateTime<Utc>>,
        report: &mut ScopeReport,
    ) -> Result<(), DiscoveryError> {
        let ScopePass { scope, cancel, .. } = pass;
        let mut after: Option<QuarantineKey> = None;
        let mut windows: BTreeSet<(DateTime<Utc>, DateTime<Utc>)> = BTreeSet::new();
        loop {
            let batch = self.state.quarantined(scope, after.as_ref(), REREAD_BATCH).await?;
            let Some(last) = batch.last() else { break };
            after = Some(last.row.key.clone());
            for entry in batch {
                if cancel.is_cancelled() {
                    return Err(DiscoveryError::Cancelled);
                }
                let window = entry.window;
                let released = self.reread(pass, entry, budget, report).await?;
                if let (false, Some(window), Some(before)) = (released, window, relist_before)
                    && window.0 < before
                {
                    windows.insert(window);
                }
            }
        }
        for (from, to) in windows.into_iter().rev().take(RELIST_WINDOWS_PER_PASS) {
            // A position at or after the window's end: listing it again never moves the cursor.
            let mut position = to;
            match self.list_window(pass, Window { from, to }, &mut position, report).await {
                Ok(_) => self.release_relisted(scope, from, to, report).await?,
                Err(e @ (DiscoveryError::BadPage { .. } | DiscoveryError::Window { .. })) => {
                    tracing::warn!(scope = %scope, error = %ErrorChain(&e), "listing a quarantined item's window again failed; next pass");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// After `[from, to)` was listed to its end in this pass: releases the scope's entries
    /// without a usable id, sent by a page within that span, that this pass's pages did
    /// not send again (entries with an id are released by the page that lists them
    /// readable).
    async fn release_relisted(
        &self,
        scope: &ScopeKey,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        report: &mut ScopeReport,
    ) -> Result<(), DiscoveryError> {
        let mut after: Option<QuarantineKey> = None;
        let mut gone = Vec::new();
        loop {
            let batch = self.state.quarantined(scope, after.as_ref(), REREAD_BATCH).await?;
            let Some(last) = batch.last() else { break };
            after = Some(last.row.key.clone());
            gone.extend(
                batch
                    .into_iter()
                    .filter(|e| e.row.recording_id.is_none() && !report.seen_quarantine.contains(&e.row.key))
                    .filter(|e| e.window.is_some_and(|(f, t)| from <= f && t <= to))
                    .map(|e| e.row.key),
            );
        }
        for key in &gone {
            let recorded = self.state.release_quarantined(key, None, ReleasedHow::Relisted).await?;
            report.count(recorded);
            tracing::info!(scope = %scope, key = %key, "its window no longer lists this unreadable item; released");
        }
        Ok(())
    }

    /// Reads one entry again; `true` when it was released.
    async fn reread(
        &self,
        pass: ScopePass<'_>,
        entry: QuarantineEntry,
        budget: &mut RereadBudget,
        report: &mut ScopeReport,
    ) -> Result<bool, DiscoveryError> {
        let ScopePass { scope, kind, .. } = pass;
        let key = &entry.row.key;
        let item = match read_item(&entry.raw) {
            ItemRead::Readable(item) => {
                self.release_readable(scope, &entry, *item, ReleasedHow::Reread, report).await?;
                tracing::info!(scope = %scope, key = %key, "a quarantined item reads now; recorded and released");
                return Ok(true);
            }
            ItemRead::Unreadable(item) => item,
        };
        let Some(id) = item.id.as_deref() else { return Ok(false) };
        if budget.details_left == 0 || !budget.checked.insert(key.clone()) {
            return Ok(false);
        }
        budget.details_left -= 1;
        self.renew(scope, kind).await?;
        // NOTE: admins fetch details with the host's e-mail, as the archive workers do.
        let host_email = item.host_email.as_deref().filter(|_| scope.0.starts_with("admin:"));
        let note = match self.with_lease(pass, self.webex.details(id, host_email)).await? {
            Err(WebexError::Cancelled) => return Err(DiscoveryError::Cancelled),
            Err(e) => format!("details: {}", ErrorChain(&e)),
            Ok(details) => match read_with_details(&item, &details) {
                Some(readable) => {
                    self.release_readable(scope, &entry, readable, ReleasedHow::Details, report).await?;
                    tracing::info!(scope = %scope, key = %key, "a quarantined item reads with its details; recorded and released");
                    return Ok(true);
                }
                None => "details: no readable createTime either".to_owned(),
            },
        };
        tracing::warn!(scope = %scope, key = %key, reason = %item.reason, note = %note, "a quarantined item stays quarantined");
        self.state.note_quarantine_check(key, &note).await?;
        Ok(false)
    }

    /// Records a quarantined `entry` that now reads as `item` and releases it, in one
    /// transaction (the `discovered` event names `how` it was read).
    async fn release_readable(
        &self,
        scope: &ScopeKey,
        entry: &QuarantineEntry,
        item: ReadableItem,
        how: ReleasedHow,
        report: &mut ScopeReport,
    ) -> Result<(), DiscoveryError> {
        let via = match how {
            ReleasedHow::Details => "quarantine_details",
            _ => "quarantine_reread",
        };
        let listed_in =
            ListedIn { window: entry.window, tracking_id: entry.row.tracking_id.clone(), via: Some(via), status: None };
        let recorded =
            self.state.release_quarantined(&entry.row.key, Some(&listed(scope, item, listed_in)), how).await?;
        self.metrics.discovered(recorded.new);
        report.count(recorded);
        Ok(())
    }

    /// Renews the scope's discovery lease; an error when another replica took it.
    async fn renew(&self, scope: &ScopeKey, kind: CursorKind) -> Result<(), DiscoveryError> {
        if self.state.renew_cursor(scope, kind, &self.owner, self.settings.discovery_lease).await? {
            Ok(())
        } else {
            Err(DiscoveryError::State(StateError::LostCursor { scope: scope.clone() }))
        }
    }

    /// Runs `work` (a request, which may wait out long Retry-After pauses) while renewing
    /// the scope's discovery lease every third of its length. Shutdown ends the wait
    /// (the request is dropped): a listing that hangs does not hold the pass.
    async fn with_lease<F: Future>(&self, pass: ScopePass<'_>, work: F) -> Result<F::Output, DiscoveryError> {
        let ScopePass { scope, kind, cancel, .. } = pass;
        let every = (self.settings.discovery_lease / 3).max(Duration::from_millis(50));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return Ok(out),
                _ = cancel.cancelled() => return Err(DiscoveryError::Cancelled),
                _ = tick.tick() => match self.state.renew_cursor(scope, kind, &self.owner, self.settings.discovery_lease).await {
                    Ok(true) => {}
                    Ok(false) => return Err(DiscoveryError::State(StateError::LostCursor { scope: scope.clone() })),
                    // The page's own transaction will tell if the database stays away.
                    Err(e) => tracing::warn!(scope = %scope, error = %ErrorChain(&e), "cannot renew the discovery lease; trying again"),
                },
            }
        }
    }
}

/// The listing a scope is swept with.
/// Whether a deletion sweep is due: never done, or `every` after the last complete one;
/// after a failed one, not before [`DELETION_SWEEP_RETRY`] (or `every` if shorter).
fn deletion_sweep_due(row: Option<&DeletionSweep>, every: Duration, now: DateTime<Utc>) -> bool {
    let Some(row) = row else { return true };
    let passed = |at: Option<DateTime<Utc>>, after: Duration| at.is_none_or(|at| crate::time::after(at, after) <= now);
    passed(row.last_success_at, every) && passed(row.last_pass_at, every.min(DELETION_SWEEP_RETRY))
}

fn listing_of(scope: &ScopeKey) -> Listing<'_> {
    match scope.0.strip_prefix("admin:") {
        Some(site_url) => Listing::Admin { site_url },
        None => Listing::User,
    }
}

/// The domain view of a readable listing item.
fn listed(scope: &ScopeKey, item: ReadableItem, listed_in: ListedIn) -> ListedRecording {
    let recording = item.recording;
    ListedRecording {
        id: RecordingId(item.id),
        scope: scope.clone(),
        site_url: recording.site_url,
        host_email: recording.host_email,
        meeting_id: recording.meeting_id,
        topic: recording.topic,
        format: recording.format,
        create_time: item.create_time,
        size_bytes: recording.size_bytes.and_then(|s| i64::try_from(s).ok()),
        listing: crate::state::listing_without_secrets(item.listing),
        listed_in,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(value: serde_json::Value) -> ItemRead {
        read_item(&value.to_string())
    }

    #[test]
    fn readable_items_keep_unknown_fields_and_drop_passwords() {
        let scope = ScopeKey::user();
        let item = serde_json::json!({"id": "r1", "createTime": "2026-11-01T10:00:00Z", "password": "S3cret",
            "format": "SOMETHING_NEW", "futureField": [1, 2], "sizeBytes": "2048"});
        let ItemRead::Readable(item) = read(item) else { panic!("readable") };
        let recorded = listed(&scope, *item, ListedIn::default());
        assert_eq!(recorded.id.0, "r1");
        assert_eq!(recorded.format.as_deref(), Some("SOMETHING_NEW"));
        assert_eq!(recorded.size_bytes, Some(2048));
        assert!(recorded.listing.get("password").is_none(), "the password is never stored");
        assert!(recorded.listing.get("futureField").is_some(), "unknown fields are kept");
    }

    #[test]
    fn quarantine_keys_are_the_id_or_the_digest_of_the_raw_text() {
        let scope = ScopeKey::user();
        let ItemRead::Unreadable(item) = read(serde_json::json!({"id": "r1", "createTime": "yesterday"})) else {
            panic!("unreadable")
        };
        let entry = QuarantinedItem::new(scope.clone(), item.id, item.reason, item.raw, None);
        assert_eq!(entry.key.0, "r1");
        assert_eq!(entry.recording_id, Some(RecordingId("r1".into())));
        let ItemRead::Unreadable(item) = read(serde_json::json!({"topic": "no id"})) else { panic!("unreadable") };
        let entry = QuarantinedItem::new(scope, item.id, item.reason, item.raw.clone(), None);
        assert!(entry.key.0.starts_with("sha256:") && entry.key.0.len() == 7 + 64, "{}", entry.key);
        assert_eq!(entry.key, QuarantineKey::for_item(None, &item.raw), "the key follows from the raw text");
        assert_eq!(entry.recording_id, None);
    }

    #[test]
    fn only_a_window_too_long_to_list_is_not_listed_again() {
        assert!(!PageProblem::TooManyPages { max: 1 }.worth_retrying());
        assert!(PageProblem::Loop { page: 2 }.worth_retrying());
        assert!(PageProblem::Unreadable("x".into()).worth_retrying());
    }

    #[test]
    fn a_deletion_sweep_is_due_first_then_after_its_interval_and_an_hour_after_a_failure() {
        use chrono::TimeZone;
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap();
        let day = Duration::from_secs(86_400);
        let row = |pass_h: Option<i64>, success_h: Option<i64>| DeletionSweep {
            scope: ScopeKey::user(),
            status: SourceStatus::Deleted,
            last_pass_at: pass_h.map(|h| now - chrono::Duration::hours(h)),
            last_success_at: success_h.map(|h| now - chrono::Duration::hours(h)),
            last_error: None,
            items_listed: 0,
        };
        assert!(deletion_sweep_due(None, day, now), "never swept: due at the first pass");
        assert!(!deletion_sweep_due(Some(&row(Some(23), Some(23))), day, now));
        assert!(deletion_sweep_due(Some(&row(Some(24), Some(24))), day, now));
        // The last one failed (no success since): again after an hour, not before.
        assert!(!deletion_sweep_due(Some(&row(Some(0), Some(30))), day, now));
        assert!(deletion_sweep_due(Some(&row(Some(1), Some(30))), day, now));
        assert!(deletion_sweep_due(Some(&row(Some(1), None)), day, now));
        // An interval shorter than the hour bounds the retry too.
        assert!(deletion_sweep_due(Some(&row(Some(0), Some(0))), Duration::ZERO, now));
    }
}
