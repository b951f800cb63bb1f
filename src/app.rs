//! One library call per command: what `main.rs` invokes after wiring. Each command builds
//! its dependencies from the settings and hands them to the long-running pieces
//! (discovery, archive workers, HTTP endpoint), which take cancellation tokens.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::archive::{self, Archiver, ArchiverParts};
use crate::config::Settings;
use crate::discovery::{Discovery, ScopeReport};
use crate::domain::{ArchiveState, RecordingId, Scope};
use crate::manifest::ManifestWriter;
use crate::metrics::Metrics;
use crate::progress::ProgressDisplay;
use crate::server::{Endpoint, Liveness};
use crate::state::{self, State, StatusReport, TokenVault};
use crate::storage::Store;
use crate::supervise::catch_panic;
use crate::webex::WebexClient;
use crate::webex::auth::TokenProvider;
use crate::webex::client::api_http_client;
use crate::webex::gate::{RateGate, RetryPolicy};

/// The bucket's Object Lock posture does not match `storage.object_lock`: a
/// configuration error (exit 2), each line naming the setting.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct PostureMismatch(pub Vec<String>);

/// Reads the bucket's Object Lock posture and judges it against `storage.object_lock`:
/// a mismatch is a [`PostureMismatch`]; warnings are logged. With `mode = "none"`, a
/// posture that cannot be read is only a warning (some S3-compatible stores do not
/// answer these calls); with a mode, it is an error.
pub async fn check_posture(store: &Store) -> anyhow::Result<Option<crate::storage::BucketPosture>> {
    let wanted = store.object_lock().retention().is_some();
    match store.check_posture().await {
        Ok((posture, check)) => {
            for warning in &check.warnings {
                tracing::warn!("{warning}");
            }
            if !check.errors.is_empty() {
                return Err(PostureMismatch(check.errors).into());
            }
            Ok(posture)
        }
        Err(e) if !wanted => {
            tracing::warn!(error = %crate::errors::ErrorChain(&e), "cannot read the bucket's Object Lock configuration");
            Ok(None)
        }
        Err(e) => Err(anyhow::Error::new(e).context("reading the bucket's Object Lock configuration")),
    }
}

/// Exit status for a configuration error.
pub const EXIT_CONFIG: u8 = 2;
/// Exit status when the command ran but its goal was not met (failures left, mismatches found).
pub const EXIT_INCOMPLETE: u8 = 1;
/// How long an idle worker waits before looking for due recordings again.
const IDLE_POLL: Duration = Duration::from_secs(2);

/// Opens the state database of `settings` (applying migrations).
pub async fn open_state(settings: &Settings) -> anyhow::Result<State> {
    state::open(&settings.database.url, settings.database.max_connections, settings.database.acquire_timeout)
        .await
        .with_context(|| format!("opening the database {}", settings.database.url))
}

/// Everything a syncing command needs, built from the settings.
#[derive(Clone)]
pub struct Services {
    /// The settings.
    pub settings: Arc<Settings>,
    /// State database.
    pub state: State,
    /// The archive store.
    pub store: Store,
    /// The Webex client.
    pub webex: WebexClient,
    /// Discovery.
    pub discovery: Discovery,
    /// Archive workers' shared context.
    pub archiver: Archiver,
    /// Writes the daily manifests when they are due.
    pub manifests: ManifestWriter,
    /// Metrics registry.
    pub metrics: Metrics,
}

impl Services {
    /// Builds the services. `abort` ends every wait of the Webex client (hard stop).
    pub async fn build(settings: Settings, abort: CancellationToken) -> anyhow::Result<Self> {
        for warning in settings.warnings() {
            tracing::warn!("{warning}");
        }
        let state = open_state(&settings).await?;
        Self::with_state(settings, state, abort).await
    }

    /// Builds the services on an already opened state (tests, demo).
    pub async fn with_state(settings: Settings, state: State, abort: CancellationToken) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let metrics = Metrics::new();
        let store = Store::from_settings(&settings.storage).context("building the archive store")?;
        check_posture(&store).await?;
        let owner = format!("wa-{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let credentials = settings.credentials()?.context("no Webex credentials are configured")?;
        let gate = Arc::new(RateGate::new(
            Some(Arc::new(state.clone())),
            settings.webex.max_requests_per_second,
            RetryPolicy { max: settings.webex.max_retry_after },
            metrics.clone(),
        ));
        let http = api_http_client(&settings.webex).context("building the HTTP client")?;
        let token_key = settings.token_key()?;
        let token_store = TokenVault::shared(state.clone(), token_key.as_ref()).context("database.token_key")?;
        let tokens = Arc::new(TokenProvider::new(
            credentials,
            &settings.webex.base_url,
            token_store,
            http,
            owner.clone(),
            metrics.clone(),
        ));
        let webex =
            WebexClient::new(&settings.webex, settings.archive.stall_timeout, tokens, gate, metrics.clone(), abort)
                .context("building the HTTP client")?;
        let discovery = Discovery::new(
            state.clone(),
            webex.clone(),
            settings.sync.clone(),
            settings.webex.scope,
            settings.webex.site_urls.clone(),
            owner.clone(),
            metrics.clone(),
        )
        .with_max_pages_per_window(settings.webex.max_pages_per_window)
        .with_deletion_sweep(settings.compliance);
        let manifests = ManifestWriter::new(state.clone(), store.clone(), owner.clone(), settings.sync.overlap);
        let archiver = Archiver::new(ArchiverParts {
            state: state.clone(),
            webex: webex.clone(),
            store: store.clone(),
            settings: settings.archive.clone(),
            owner,
            admin: settings.webex.scope == Scope::Admin,
            metrics: metrics.clone(),
        })
        .map_err(|e| anyhow::anyhow!("archive.key_template: {e}"))?;
        Ok(Self { settings, state, store, webex, discovery, archiver, manifests, metrics })
    }
}

/// `webex-archiver migrate`: apply the embedded migrations.
pub async fn migrate(settings: &Settings) -> anyhow::Result<u8> {
    open_state(settings).await?;
    tracing::info!(database = %settings.database.url, "database schema is up to date");
    Ok(0)
}

/// `webex-archiver config check`: print the effective configuration, secrets as `***`,
/// and on stderr a warning for each setting that leaves something unprotected; then read
/// the bucket's Object Lock posture: a mismatch with `storage.object_lock` exits 2.
pub async fn config_check(settings: &Settings) -> anyhow::Result<u8> {
    print!("{}", settings.to_redacted_toml());
    for warning in settings.warnings() {
        eprintln!("warning: {warning}");
    }
    if !settings.storage.url.starts_with("s3://") {
        // A directory archive: no bucket to read (and nothing to create by checking).
        return Ok(0);
    }
    let store = Store::from_settings(&settings.storage).context("building the archive store")?;
    match store.check_posture().await {
        Ok((posture, check)) => {
            if let Some(posture) = posture {
                eprintln!("storage: {}", describe_posture(&posture));
            }
            for warning in &check.warnings {
                eprintln!("warning: {warning}");
            }
            for error in &check.errors {
                eprintln!("error: {error}");
            }
            Ok(if check.errors.is_empty() { 0 } else { EXIT_CONFIG })
        }
        Err(e) if store.object_lock().retention().is_none() => {
            eprintln!("warning: cannot read the bucket's Object Lock configuration: {}", crate::errors::ErrorChain(&e));
            Ok(0)
        }
        Err(e) => Err(anyhow::Error::new(e).context("reading the bucket's Object Lock configuration")),
    }
}

/// One line on a bucket's Object Lock posture.
pub fn describe_posture(posture: &crate::storage::BucketPosture) -> String {
    let lock = if posture.object_lock {
        match (posture.default_mode, posture.default_days) {
            (Some(mode), Some(days)) => {
                format!("Object Lock enabled, default retention {} {days} days", mode.s3_name())
            }
            _ => "Object Lock enabled, no default retention".to_owned(),
        }
    } else {
        format!("no Object Lock{}", posture.note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default())
    };
    format!("{lock}; versioning {}", posture.versioning.as_deref().unwrap_or("never enabled"))
}

/// What `sync` and `backfill` did, for their callers (the demo, tests).
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// Per scope discovery results.
    pub scopes: Vec<ScopeReport>,
    /// Discovery error, if a pass stopped.
    pub discovery_error: Option<String>,
    /// The state after archiving.
    pub status: StatusReport,
    /// Recordings left pending or archiving (when interrupted).
    pub left: Vec<RecordingId>,
    /// Daily manifests written by this run (`manifests/YYYY/MM/DD[.n].json`).
    pub manifests: Vec<String>,
    /// Why writing the daily manifests stopped, if it did.
    pub manifest_error: Option<String>,
    /// Exit status: 0 all archived or not downloadable, 1 otherwise.
    pub exit: u8,
}

/// One discovery pass up to now, then archive until nothing is left to do.
pub async fn sync(services: &Services, discover_only: bool, stop: &CancellationToken) -> anyhow::Result<SyncReport> {
    let display = ProgressDisplay::start("sync", services.archiver.progress());
    let pass = services.discovery.poll_once(stop, &|scope, done| display.window(scope, done)).await;
    let (scopes, discovery_error) = discovery_outcome(pass);
    finish_sync(services, scopes, discovery_error, discover_only, stop, display).await
}

/// Lists `[since, until)` on the backfill cursors, then archives what it found.
pub async fn backfill(
    services: &Services,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    discover_only: bool,
    stop: &CancellationToken,
) -> anyhow::Result<SyncReport> {
    let display = ProgressDisplay::start("backfill", services.archiver.progress());
    let pass = services.discovery.backfill(since, until, stop, &|scope, done| display.window(scope, done)).await;
    let (scopes, discovery_error) = discovery_outcome(pass);
    finish_sync(services, scopes, discovery_error, discover_only, stop, display).await
}

/// The scopes of a pass and, if any stopped (or the whole pass did), why.
fn discovery_outcome(
    pass: Result<Vec<ScopeReport>, crate::discovery::DiscoveryError>,
) -> (Vec<ScopeReport>, Option<String>) {
    match pass {
        Ok(scopes) => {
            let errors: Vec<&str> = scopes.iter().filter_map(|s| s.error.as_deref()).collect();
            let error = (!errors.is_empty()).then(|| errors.join("; "));
            (scopes, error)
        }
        Err(e) => {
            tracing::error!(error = %crate::errors::ErrorChain(&e), "discovery pass failed");
            (Vec::new(), Some(crate::errors::ErrorChain(&e).to_string()))
        }
    }
}

async fn finish_sync(
    services: &Services,
    scopes: Vec<ScopeReport>,
    discovery_error: Option<String>,
    discover_only: bool,
    stop: &CancellationToken,
    display: ProgressDisplay,
) -> anyhow::Result<SyncReport> {
    for scope in scopes.iter().filter(|s| s.error.is_none()) {
        tracing::info!(scope = %scope.scope, windows = scope.windows, pages = scope.pages, new = scope.new, seen_again = scope.refreshed, quarantined = scope.quarantined, "discovery pass done");
    }
    if !discover_only && !stop.is_cancelled() {
        let status = services.state.status(0).await?;
        display.set_total(pending_total(&status));
        // `stop` both stops claiming and cuts transfers: a one-shot command has no grace.
        archive::run_workers(&services.archiver, services.settings.archive.concurrency, stop, stop, true, IDLE_POLL)
            .await;
    }
    display.finish();
    let (manifests, manifest_error) = if discover_only || stop.is_cancelled() {
        (Vec::new(), None)
    } else {
        match services.manifests.write_due(Utc::now()).await {
            Ok(written) => (written.into_iter().map(|m| m.key).collect(), None),
            Err(e) => {
                tracing::error!(error = %crate::errors::ErrorChain(&e), "writing the daily manifests stopped");
                (Vec::new(), Some(crate::errors::ErrorChain(&e).to_string()))
            }
        }
    };
    let status = services.state.status(20).await?;
    let left: Vec<RecordingId> = if discover_only {
        Vec::new()
    } else {
        services.state.unfinished(1000).await?.into_iter().map(|(id, _, _)| id).collect()
    };
    let failed = status.counts.get(&ArchiveState::Failed).copied().unwrap_or(0);
    // Quarantined listing items are recordings not archived either, until a person looks.
    let exit = if discovery_error.is_some()
        || manifest_error.is_some()
        || failed > 0
        || !left.is_empty()
        || status.quarantined > 0
    {
        EXIT_INCOMPLETE
    } else {
        0
    };
    Ok(SyncReport { scopes, discovery_error, status, left, manifests, manifest_error, exit })
}

fn pending_total(status: &StatusReport) -> u64 {
    [ArchiveState::Pending, ArchiveState::Archiving]
        .iter()
        .map(|s| status.counts.get(s).copied().unwrap_or(0))
        .sum::<i64>()
        .max(0) as u64
}

/// Prints what `sync`/`backfill` left undone to stderr (stdout stays clean for scripts).
pub fn report_sync(report: &SyncReport) {
    let counts = &report.status.counts;
    let n = |s| counts.get(&s).copied().unwrap_or(0);
    eprintln!(
        "archived {}, not downloadable {}, failed {}, pending {}, archiving {}",
        n(ArchiveState::Archived),
        n(ArchiveState::NotDownloadable),
        n(ArchiveState::Failed),
        n(ArchiveState::Pending),
        n(ArchiveState::Archiving)
    );
    if let Some(e) = &report.discovery_error {
        eprintln!("discovery stopped: {e}");
    }
    for key in &report.manifests {
        eprintln!("manifest written: {key}");
    }
    if let Some(e) = &report.manifest_error {
        eprintln!("daily manifests stopped: {e}");
    }
    if report.status.quarantined > 0 {
        eprintln!(
            "quarantined: {} listed item(s) could not be read; `status` shows them (a person must look)",
            report.status.quarantined
        );
    }
    for failure in report.status.recent_failures.iter().filter(|f| f.state == ArchiveState::Failed) {
        eprintln!(
            "failed: {} ({}): {}",
            failure.id,
            failure.reason.as_deref().unwrap_or("?"),
            failure.message.as_deref().unwrap_or("")
        );
    }
    for id in &report.left {
        eprintln!("left due: {id}");
    }
}

/// `webex-archiver status`: the state of the archive, as text or JSON on stdout.
pub async fn status(settings: &Settings, json: bool) -> anyhow::Result<u8> {
    let state = open_state(settings).await?;
    let report = state.status(20).await?;
    let lock = object_lock_status(settings).await;
    if json {
        let mut out = status_json(&report);
        out["object_lock"] = serde_json::to_value(&lock).unwrap_or_default();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", status_text(&report, Utc::now()));
        print!("{}", lock.text());
    }
    Ok(0)
}

/// The Object Lock part of `status`: the settings, the bucket's posture and what is wrong
/// with it.
#[derive(Debug, Serialize)]
pub struct ObjectLockStatus {
    /// `storage.object_lock.mode`.
    pub mode: crate::config::LockMode,
    /// `storage.object_lock.retention`, in days.
    pub retention_days: f64,
    /// The bucket's posture (`null` for a `file://` archive, or when it cannot be read).
    pub bucket: Option<crate::storage::BucketPosture>,
    /// Mismatches with the settings (configuration errors).
    pub errors: Vec<String>,
    /// What leaves the archive less protected than it could be.
    pub warnings: Vec<String>,
}

impl ObjectLockStatus {
    fn text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "Object Lock");
        let setting = match self.mode {
            crate::config::LockMode::None => "none".to_owned(),
            mode => format!("{} for {} days", mode.s3_name(), self.retention_days),
        };
        let _ = writeln!(out, "  {:<18}{setting}", "setting");
        if let Some(bucket) = &self.bucket {
            let _ = writeln!(out, "  {:<18}{}", "bucket", describe_posture(bucket));
        }
        for e in &self.errors {
            let _ = writeln!(out, "  ERROR: {e}");
        }
        for w in &self.warnings {
            let _ = writeln!(out, "  warning: {w}");
        }
        out
    }
}

/// Reads the bucket's posture for `status` (within 10 s; what fails is a warning).
pub async fn object_lock_status(settings: &Settings) -> ObjectLockStatus {
    let lock = settings.storage.object_lock;
    let mut status = ObjectLockStatus {
        mode: lock.mode,
        retention_days: lock.retention.as_secs_f64() / 86_400.0,
        bucket: None,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    if !settings.storage.url.starts_with("s3://") {
        // A directory archive: no bucket to read (and nothing to create by checking).
        return status;
    }
    let store = match Store::from_settings(&settings.storage) {
        Ok(store) => store,
        Err(e) => {
            status.warnings.push(format!("cannot build the archive store: {}", crate::errors::ErrorChain(&e)));
            return status;
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), store.check_posture()).await {
        Ok(Ok((posture, check))) => {
            status.bucket = posture;
            status.errors = check.errors;
            status.warnings = check.warnings;
        }
        Ok(Err(e)) => status
            .warnings
            .push(format!("cannot read the bucket's Object Lock configuration: {}", crate::errors::ErrorChain(&e))),
        Err(_) => status.warnings.push("the store did not answer within 10 s".to_owned()),
    }
    status
}

/// The JSON form of `status`: one key per state name, then the details.
pub fn status_json(report: &StatusReport) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (state, n) in &report.counts {
        out.insert(state.as_str().into(), (*n).into());
    }
    out.insert("bytes_archived".into(), report.bytes_archived.into());
    out.insert("due_now".into(), report.due_now.into());
    out.insert("next_due_at".into(), serde_json::to_value(report.next_due_at).unwrap_or_default());
    out.insert(
        "oldest_unarchived".into(),
        report
            .oldest_unarchived
            .as_ref()
            .map(|(id, t)| serde_json::json!({"id": id, "create_time": t}))
            .unwrap_or_default(),
    );
    out.insert("deleted_at_source".into(), report.deleted_at_source.into());
    out.insert("purged_at_source".into(), report.purged_at_source.into());
    out.insert("under_hold".into(), report.under_hold.into());
    out.insert("deletion_sweeps".into(), serde_json::to_value(&report.deletion_sweeps).unwrap_or_default());
    out.insert("size_mismatches".into(), report.size_mismatches.into());
    out.insert("lease_expiries".into(), report.lease_expiries.into());
    out.insert("paused_until".into(), serde_json::to_value(report.paused_until).unwrap_or_default());
    out.insert("oauth".into(), serde_json::to_value(&report.oauth).unwrap_or_default());
    out.insert("cursors".into(), serde_json::to_value(&report.cursors).unwrap_or_default());
    out.insert("recent_failures".into(), serde_json::to_value(&report.recent_failures).unwrap_or_default());
    out.insert("quarantined".into(), report.quarantined.into());
    out.insert("recent_quarantine".into(), serde_json::to_value(&report.recent_quarantine).unwrap_or_default());
    serde_json::Value::Object(out)
}

/// The text form of `status`.
pub fn status_text(report: &StatusReport, now: DateTime<Utc>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "Recordings");
    for (state, n) in &report.counts {
        let _ = writeln!(out, "  {:<18}{n}", state.as_str());
    }
    let _ = writeln!(
        out,
        "  {:<18}{} ({:.1} GiB)",
        "bytes archived",
        report.bytes_archived,
        report.bytes_archived as f64 / (1u64 << 30) as f64
    );
    let _ = writeln!(out, "  {:<18}{}", "due now", report.due_now);
    if let Some((id, t)) = &report.oldest_unarchived {
        let _ = writeln!(out, "  {:<18}{id} (created {t}, {} h ago)", "oldest unarchived", (now - *t).num_hours());
    }
    if report.size_mismatches > 0 {
        let _ = writeln!(out, "  {:<18}{}", "size mismatches", report.size_mismatches);
    }
    let _ = writeln!(out, "  {:<18}{}", "deleted at source", report.deleted_at_source);
    let _ = writeln!(out, "  {:<18}{}", "purged at source", report.purged_at_source);
    if report.under_hold > 0 {
        let _ = writeln!(out, "  {:<18}{} (hold list)", "under legal hold", report.under_hold);
    }
    if let Some(until) = report.paused_until {
        let _ = writeln!(out, "  {:<18}until {until} (Retry-After)", "paused");
    }
    if let Some(oauth) = &report.oauth {
        let _ = writeln!(out, "OAuth ({} refreshes)", oauth.refreshes);
        if let Some(at) = oauth.access_expires_at {
            let _ = writeln!(out, "  {:<18}{at}", "access token until");
        }
        if let Some(at) = oauth.refresh_expires_at {
            let days = (at - now).num_days();
            let warning = if days < 14 { "  RE-AUTHORISE THE INTEGRATION SOON" } else { "" };
            let _ = writeln!(out, "  {:<18}{at} (in {days} days){warning}", "refresh token until");
        }
    }
    let _ = writeln!(out, "Cursors");
    if report.cursors.is_empty() {
        let _ = writeln!(out, "  (none yet: no discovery pass has run)");
    }
    for c in &report.cursors {
        let _ = writeln!(
            out,
            "  {:<28}{:<9} at {}  last success {}{}{}",
            c.scope.0,
            format!("{:?}", c.kind).to_lowercase(),
            c.position.format("%Y-%m-%d %H:%M:%S"),
            c.last_success_at.map_or("never".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
            if c.items_quarantined > 0 { format!("  quarantined {}", c.items_quarantined) } else { String::new() },
            c.last_error.as_ref().map(|e| format!("  last error: {e}")).unwrap_or_default()
        );
    }
    if !report.deletion_sweeps.is_empty() {
        let _ = writeln!(out, "Deletion sweeps");
    }
    for d in &report.deletion_sweeps {
        let _ = writeln!(
            out,
            "  {:<28}{:<9} last success {}  listed {}{}",
            d.scope.0,
            d.status.as_str(),
            d.last_success_at.map_or("never".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
            d.items_listed,
            d.last_error.as_ref().map(|e| format!("  note: {e}")).unwrap_or_default()
        );
    }
    if report.quarantined > 0 {
        let _ = writeln!(
            out,
            "Quarantine ({} listed item(s) could not be read and wait for a person; the latest:)",
            report.quarantined
        );
        for q in &report.recent_quarantine {
            let _ = writeln!(
                out,
                "  {}  {}  {}  trackingId {}  last seen {}{}",
                q.key,
                q.scope,
                q.reason,
                q.tracking_id.as_deref().unwrap_or("-"),
                q.last_seen_at.format("%Y-%m-%d %H:%M:%S"),
                q.check_note.as_ref().map(|n| format!("  ({n})")).unwrap_or_default()
            );
        }
    }
    if !report.recent_failures.is_empty() {
        let _ = writeln!(out, "Latest failures");
        for f in &report.recent_failures {
            let _ = writeln!(
                out,
                "  {}  {}  {}  {}",
                f.id,
                f.state.as_str(),
                f.reason.as_deref().unwrap_or("-"),
                f.message.as_deref().unwrap_or("")
            );
        }
    }
    out
}

/// `webex-archiver verify`: re-read and check archived objects; 1 on any mismatch.
pub async fn verify(settings: &Settings, sample: Option<u32>, json: bool) -> anyhow::Result<u8> {
    let state = open_state(settings).await?;
    let store = Store::from_settings(&settings.storage).context("building the archive store")?;
    let report = crate::verify::verify(&state, &store, sample).await?;
    let (user, host) = crate::config::operator_identity();
    let problems: Vec<(RecordingId, serde_json::Value)> = report
        .problems()
        .into_iter()
        .flat_map(|(what, list)| {
            list.iter().map(move |p| {
                (
                    RecordingId(p.recording_id.clone()),
                    serde_json::json!({"problem": what, "key": p.key, "detail": p.detail}),
                )
            })
        })
        .collect();
    let summary = serde_json::json!({
        "what": "objects",
        "sample": sample,
        "checked": report.checked,
        "ok": report.ok,
        "missing": report.missing.len(),
        "corrupt": report.corrupt.len(),
        "metadata": report.metadata.len(),
        "retention": report.retention.len(),
        "unclaimed": report.unclaimed.len(),
        "user": user,
        "host": host,
    });
    state.record_verification(summary, &problems).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", crate::verify::report_text(&report));
    }
    Ok(if report.clean() { 0 } else { EXIT_INCOMPLETE })
}

/// `webex-archiver verify --manifests [--all]`: walk the daily manifests; 1 on a problem.
pub async fn verify_manifests(settings: &Settings, digests: bool, json: bool) -> anyhow::Result<u8> {
    let state = open_state(settings).await?;
    let store = Store::from_settings(&settings.storage).context("building the archive store")?;
    let report = crate::manifest::verify_manifests(&state, &store, digests).await?;
    let (user, host) = crate::config::operator_identity();
    let summary = serde_json::json!({
        "what": "manifests",
        "digests": digests,
        "manifests": report.manifests,
        "files": report.files,
        "problems": report.problems,
        "user": user,
        "host": host,
    });
    state.record_verification(summary, &[]).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", crate::manifest::manifest_report_text(&report));
    }
    Ok(if report.intact() { 0 } else { EXIT_INCOMPLETE })
}

/// `webex-archiver verify --log`: check the custody log's hash chains; 1 on a break.
pub async fn verify_log(settings: &Settings, json: bool) -> anyhow::Result<u8> {
    let state = open_state(settings).await?;
    let report = crate::verify::verify_log(&state).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", crate::verify::log_report_text(&report));
    }
    Ok(if report.intact() { 0 } else { EXIT_INCOMPLETE })
}

/// `webex-archiver history ID`: a recording's custody events, oldest first; 1 when it
/// has none.
pub async fn history(settings: &Settings, id: String, json: bool) -> anyhow::Result<u8> {
    let state = open_state(settings).await?;
    let id = RecordingId(id);
    let events = state.history(&id).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&history_json(&id, &events))?);
    } else {
        for e in &events {
            println!(
                "{:>8}  {}  {:<16} {}",
                e.seq,
                e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                e.kind,
                e.data
            );
        }
    }
    if events.is_empty() {
        eprintln!("no events for recording {id}");
        return Ok(EXIT_INCOMPLETE);
    }
    Ok(0)
}

/// The JSON form of `history`: `{"id", "events": [{"seq", "type", "at", "data",
/// "prev_sha256", "sha256"}]}`.
pub fn history_json(id: &RecordingId, events: &[state::Event]) -> serde_json::Value {
    let events: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            serde_json::json!({
                "seq": e.seq,
                "type": e.kind,
                "at": e.at,
                "data": e.data,
                "prev_sha256": e.prev_sha256,
                "sha256": e.sha256,
            })
        })
        .collect();
    serde_json::json!({"id": id, "events": events})
}

/// `webex-archiver report`: the attestation report of `period` in `format`, on stdout or
/// into `out`; 1 when the period has a gap. A report that could not be finished leaves
/// no file behind (an auditor must never be handed half of one).
pub async fn report(
    settings: &Settings,
    period: crate::report::Period,
    format: crate::report::Format,
    out: Option<&std::path::Path>,
) -> anyhow::Result<u8> {
    use std::io::BufWriter;
    let state = open_state(settings).await?;
    let written = match out {
        None => crate::report::write(&state, period, format, BufWriter::new(std::io::stdout())).await,
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("--out {}: cannot create the file", path.display()))?;
            let written = crate::report::write(&state, period, format, BufWriter::new(file)).await;
            // Only a regular file is removed (never /dev/null or a pipe).
            if written.is_err() && std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
                let _ = std::fs::remove_file(path);
            }
            written
        }
    };
    let summary = written.context("making the report")?;
    eprintln!(
        "report {} to {}: {} recording(s), {} archived, {} gap(s)",
        period.from.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        period.to.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        summary.recordings,
        summary.archived,
        summary.gaps
    );
    for behind in &summary.listing_behind {
        eprintln!("warning: recordings of the period may be missing from the report: {behind}");
    }
    Ok(if summary.gaps > 0 { EXIT_INCOMPLETE } else { 0 })
}

/// `webex-archiver retry`: make failed recordings due again.
pub async fn retry(settings: &Settings, ids: Option<Vec<String>>) -> anyhow::Result<u8> {
    let state = open_state(settings).await?;
    let ids: Option<Vec<RecordingId>> = ids.map(|ids| ids.into_iter().map(RecordingId).collect());
    let (user, host) = crate::config::operator_identity();
    let n = state.retry(ids.as_deref(), &state::Operator { user, host }).await?;
    eprintln!("{n} recording(s) are due again");
    Ok(if ids.is_some_and(|ids| n < ids.len() as u64) { EXIT_INCOMPLETE } else { 0 })
}

/// `webex-archiver hold add|remove`: set or clear the legal hold of each recording; exit
/// 1 when one could not be changed (the others are done).
pub async fn hold(settings: &Settings, ids: Vec<String>, on: bool, reason: &str) -> anyhow::Result<u8> {
    let (state, store, by) = object_lock_command(settings).await?;
    let mut failed = 0;
    for id in ids.into_iter().map(RecordingId) {
        let done = crate::retention::set_legal_hold(&state, &store, &id, on, reason, &by).await;
        failed += said(done.map(|done| {
            format!("{id}: legal hold {} on {} object version(s)", if on { "set" } else { "removed" }, done.versions)
        }));
    }
    Ok(if failed > 0 { EXIT_INCOMPLETE } else { 0 })
}

/// What `hold` and `retention` start from: the state, the store (its posture checked)
/// and the operator.
async fn object_lock_command(settings: &Settings) -> anyhow::Result<(State, Store, state::Operator)> {
    let state = open_state(settings).await?;
    let store = Store::from_settings(&settings.storage).context("building the archive store")?;
    check_posture(&store).await?;
    let (user, host) = crate::config::operator_identity();
    Ok((state, store, state::Operator { user, host }))
}

/// Prints what a change did to one recording, or why it failed; 1 when it failed.
fn said(result: Result<String, crate::retention::RetentionError>) -> u32 {
    match result {
        Ok(line) => {
            eprintln!("{line}");
            0
        }
        Err(e) => {
            eprintln!("error: {}", crate::errors::ErrorChain(&e));
            1
        }
    }
}

/// `webex-archiver hold list`: the recordings under legal hold.
pub async fn hold_list(settings: &Settings, json: bool) -> anyhow::Result<u8> {
    let state = open_state(settings).await?;
    let holds = state.holds().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&holds)?);
    } else if holds.is_empty() {
        println!("no recording is under legal hold");
    } else {
        for h in &holds {
            println!(
                "{}  since {}  by {}  reason: {}",
                h.id,
                h.since.map_or("-".to_owned(), |t| t.to_rfc3339()),
                h.by.as_deref().unwrap_or("-"),
                h.reason.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(0)
}

/// `webex-archiver retention extend`: lengthen each recording's retention to `until`;
/// exit 1 when one could not be extended (the others are done).
pub async fn retention_extend(settings: &Settings, ids: Vec<String>, until: DateTime<Utc>) -> anyhow::Result<u8> {
    let (state, store, by) = object_lock_command(settings).await?;
    let mut failed = 0;
    for id in ids.into_iter().map(RecordingId) {
        let done = crate::retention::extend_retention(&state, &store, &id, until, &by).await;
        failed += said(done.map(|done| {
            format!(
                "{id}: retention extended on {} object version(s); {} already retained until then or later",
                done.versions, done.unchanged
            )
        }));
    }
    Ok(if failed > 0 { EXIT_INCOMPLETE } else { 0 })
}

/// `webex-archiver run`: discovery every `sync.poll_interval`, archive workers, and the
/// operations endpoint, until `stop` fires; then in-flight transfers get `shutdown.grace`
/// before they are aborted and their leases released.
pub async fn run(services: Services, stop: CancellationToken, abort: CancellationToken) -> anyhow::Result<u8> {
    let settings = services.settings.clone();
    let liveness = Arc::new(Liveness::default());
    let server_stop = CancellationToken::new();
    let server = if settings.http.listen.is_empty() {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(&settings.http.listen)
            .await
            .with_context(|| format!("http.listen: cannot listen on {}", settings.http.listen))?;
        tracing::info!(address = %settings.http.listen, "serving /healthz, /readyz and /metrics");
        let endpoint = Endpoint {
            state: services.state.clone(),
            store: services.store.clone(),
            webex: services.webex.clone(),
            metrics: services.metrics.clone(),
            liveness: liveness.clone(),
            max_pass_age: settings.http.ready_max_pass_age,
            started_at: Utc::now(),
        };
        let server_stop = server_stop.clone();
        Some(tokio::spawn(async move { crate::server::serve(listener, endpoint, server_stop).await }))
    };
    let mut discovery = {
        let services = services.clone();
        let stop = stop.clone();
        tokio::spawn(async move { discovery_loop(&services, &stop).await })
    };
    let mut workers = {
        let archiver = services.archiver.clone();
        let stop = stop.clone();
        let abort = abort.clone();
        let n = settings.archive.concurrency;
        tokio::spawn(async move { archive::run_workers(&archiver, n, &stop, &abort, false, IDLE_POLL).await })
    };
    let mut exit = 0;
    let mut discovery_done = false;
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = &mut discovery => {
            discovery_done = true;
            if !stop.is_cancelled() {
                tracing::error!("the discovery loop ended unexpectedly; stopping");
                liveness.broken.store(true, std::sync::atomic::Ordering::Relaxed);
                exit = EXIT_INCOMPLETE;
                stop.cancel();
            }
        }
        _ = &mut workers => {
            // NOTE: workers end as soon as a stop is requested; this branch may win the
            // race against `stop.cancelled()`. Only an end nobody asked for is a crash.
            if !stop.is_cancelled() {
                tracing::error!("the archive workers ended unexpectedly; stopping");
                liveness.broken.store(true, std::sync::atomic::Ordering::Relaxed);
                exit = EXIT_INCOMPLETE;
                stop.cancel();
            }
        }
    }
    tracing::info!(
        grace_s = settings.shutdown.grace.as_secs_f64(),
        "stopping: no new claims; letting in-flight transfers finish"
    );
    if !workers.is_finished() {
        let grace = tokio::time::sleep(settings.shutdown.grace);
        tokio::pin!(grace);
        tokio::select! {
            _ = &mut workers => {}
            _ = &mut grace => {
                tracing::warn!("shutdown grace elapsed: aborting the remaining transfers and releasing their leases");
                abort.cancel();
                let _ = (&mut workers).await;
            }
        }
    }
    abort.cancel();
    if !discovery_done {
        let _ = discovery.await;
    }
    server_stop.cancel();
    if let Some(server) = server {
        let _ = server.await;
    }
    tracing::info!("stopped");
    Ok(exit)
}

async fn discovery_loop(services: &Services, stop: &CancellationToken) {
    let interval = services.settings.sync.poll_interval;
    while !stop.is_cancelled() {
        let pass = catch_panic(services.discovery.poll_once(stop, &|_, _| {})).await.unwrap_or_else(|message| {
            services.metrics.task_panicked("discovery");
            Err(crate::discovery::DiscoveryError::Panicked(message))
        });
        match pass {
            Ok(reports) => {
                for r in reports.iter().filter(|r| r.error.is_none()) {
                    tracing::info!(scope = %r.scope, new = r.new, seen_again = r.refreshed, pages = r.pages, busy = r.busy, "discovery pass done");
                }
            }
            Err(crate::discovery::DiscoveryError::Cancelled) => break,
            Err(e) => {
                tracing::error!(error = %crate::errors::ErrorChain(&e), "discovery pass failed; the next pass starts again from the cursor")
            }
        }
        // The days whose recordings are all settled get their manifest (errors are
        // logged; the next pass tries again).
        if let Err(e) = services.manifests.write_due(Utc::now()).await {
            tracing::error!(error = %crate::errors::ErrorChain(&e), "writing the daily manifests stopped; the next pass tries again");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.cancelled() => {}
        }
    }
}
