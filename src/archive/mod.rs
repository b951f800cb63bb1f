//! Archiving: claim a due recording, fetch its details, stream each file into the store
//! while hashing it, check what arrived, write `metadata.json`, and only then mark the
//! recording archived.
//!
//! One attempt never holds a database transaction across network I/O: the claim is one
//! short statement that sets a lease, the lease is renewed while the attempt lives, and the
//! attempt ends with one statement that succeeds only for the lease holder.

mod error;
mod transfer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use backoff::backoff::Backoff;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use crate::domain::{KeyInputs, KeyTemplate};
pub use error::{AttemptError, Cause};
use transfer::StoredFile;

use crate::config::{ArchiveSettings, FileKind, LockMode};
use crate::errors::ErrorChain;
use crate::metrics::Metrics;
use crate::state::{ArchivedRecord, Claim, Outcome, RecordingId, State};
use crate::storage::{StorageError, Store};
use crate::supervise::{TestHook, catch_panic};
use crate::webex::WebexClient;

/// Name of the file that describes a recording's directory.
pub const METADATA_FILE: &str = "metadata.json";
/// Version tag of `metadata.json`'s layout.
pub const METADATA_SCHEMA: &str = "webex-archiver/metadata/v1";

/// `metadata.json`: the archive describes itself without the database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Layout version.
    pub schema: String,
    /// Webex recording id.
    pub recording_id: String,
    /// The listing object as Webex sent it, without the recording password.
    pub listing: serde_json::Value,
    /// Every stored file.
    pub files: Vec<FileEntry>,
    /// When the recording was archived (UTC).
    pub archived_at: DateTime<Utc>,
    /// The listing's `sizeBytes` differed from the bytes received.
    pub size_mismatch: bool,
    /// Version of the archiver that wrote it.
    pub archiver_version: String,
}

/// One stored file of a recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// `recording`, `audio` or `transcript`.
    pub kind: FileKind,
    /// Object key, relative to the storage prefix.
    pub key: String,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// Content type as served.
    pub content_type: String,
}

/// Counters a progress display reads.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes received by transfers (including ones that later failed).
    pub bytes: AtomicU64,
    /// Recordings that reached archived.
    pub archived: AtomicU64,
    /// Recordings that reached failed or not_downloadable.
    pub finished_otherwise: AtomicU64,
}

/// The Object Lock retention put on a recording's objects.
struct Retained {
    mode: LockMode,
    /// The earliest retain-until date read back (the one asked for when none was applied).
    until: DateTime<Utc>,
    /// Each object's retain-until date as read back, by relative key.
    per_key: BTreeMap<String, DateTime<Utc>>,
}

/// The archiving side: everything an attempt needs.
#[derive(Clone)]
pub struct Archiver {
    pub(crate) state: State,
    pub(crate) webex: WebexClient,
    pub(crate) store: Store,
    pub(crate) settings: ArchiveSettings,
    pub(crate) template: Arc<KeyTemplate>,
    pub(crate) owner: String,
    pub(crate) admin: bool,
    pub(crate) metrics: Metrics,
    pub(crate) progress: Arc<Progress>,
    hook: Option<TestHook>,
}

impl std::fmt::Debug for Archiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archiver").field("owner", &self.owner).field("store", &self.store).finish_non_exhaustive()
    }
}

/// What an [`Archiver`] is built from.
pub struct ArchiverParts {
    /// The state database and work queue.
    pub state: State,
    /// The Webex client (details and downloads).
    pub webex: WebexClient,
    /// The archive store.
    pub store: Store,
    /// `archive.*` settings.
    pub settings: ArchiveSettings,
    /// This process's lease owner name.
    pub owner: String,
    /// Admin scope: details are fetched with the host's e-mail (`hostEmail`).
    pub admin: bool,
    /// Metrics registry.
    pub metrics: Metrics,
}

impl Archiver {
    /// An archiver. Fails when `archive.key_template` does not parse.
    pub fn new(parts: ArchiverParts) -> Result<Self, String> {
        let ArchiverParts { state, webex, store, settings, owner, admin, metrics } = parts;
        let template = KeyTemplate::parse(&settings.key_template)?;
        Ok(Self {
            state,
            webex,
            store,
            settings,
            template: Arc::new(template),
            owner,
            admin,
            metrics,
            progress: Arc::new(Progress::default()),
            hook: None,
        })
    }

    /// Calls `hook` with the recording id at the start of every attempt (tests use it
    /// to make an attempt panic).
    #[doc(hidden)]
    pub fn with_test_hook(mut self, hook: TestHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// The counters a progress display reads.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Claims one due recording, archives it and records the outcome. `Ok(None)` when
    /// nothing is due; `Ok(Some((id, outcome)))` when `outcome` was recorded for `id`.
    /// An `Err` says why no result of the recording's own was recorded: an outage
    /// ([`AttemptError::is_outage`]: the worker should wait; a claim is given back when
    /// the database allows, else its lease expires) or [`AttemptError::LostLease`]
    /// (another worker holds the recording; its result stands).
    /// `abort` interrupts the transfer (the recording is released, not failed).
    pub async fn archive_next(
        &self,
        abort: &CancellationToken,
    ) -> Result<Option<(RecordingId, Outcome)>, AttemptError> {
        let Some(claim) = self.state.claim_due(&self.owner, self.settings.lease, 1).await?.pop() else {
            return Ok(None);
        };
        if claim.recovered {
            self.metrics.lease_recovered();
            tracing::info!(recording_id = %claim.id, "claimed a recording whose previous worker's lease expired");
        }
        let started = Instant::now();
        // The lease is renewed for as long as the attempt lives (details, waits on the
        // Retry-After gate, the download, completing the upload, re-hashing an object
        // already stored), not only while bytes flow: an attempt that waits is not dead.
        let attempt = async {
            // NOTE: a panic is a bug, but it must not strand the claim or stop the worker:
            // it counts as a failed attempt (so a recording that always panics ends
            // `failed`, not in a loop), and the worker goes on.
            match catch_panic(self.attempt(&claim, abort)).await {
                Ok(result) => result,
                Err(message) => {
                    self.metrics.task_panicked("worker");
                    tracing::error!(recording_id = %claim.id, panic = %message, "an archive attempt panicked; its claim is given back and the worker goes on");
                    Err(AttemptError::transient(
                        "panic",
                        format!("the attempt panicked (a bug; please report it): {message}"),
                    ))
                }
            }
        };
        let result = tokio::select! {
            result = attempt => result,
            () = self.keep_lease(&claim) => Err(AttemptError::LostLease),
        };
        let (outcome, stopped) = self.outcome(&claim, result);
        let kept = self.finish(&claim, &outcome).await?;
        if !kept || matches!(stopped, Some(AttemptError::LostLease)) {
            tracing::warn!(recording_id = %claim.id, "another worker took this recording over; its result stands");
            return Err(stopped.filter(AttemptError::is_outage).unwrap_or(AttemptError::LostLease));
        }
        if let Some(outage) = stopped {
            return Err(outage);
        }
        match &outcome {
            Outcome::Archived(record) => {
                let bytes = u64::try_from(record.bytes).unwrap_or(0);
                self.metrics.archived(bytes, started.elapsed().as_secs_f64());
                self.progress.archived.fetch_add(1, Ordering::Relaxed);
                tracing::info!(recording_id = %claim.id, bytes, seconds = started.elapsed().as_secs_f64(), "archived");
            }
            // Webex was seen deleting it: the statement made it `lost_at_source`, which the
            // state gauge counts; it is neither a failure nor a recording without links.
            Outcome::Failed { .. } | Outcome::NotDownloadable { .. } if claim.gone_at_source => {
                tracing::warn!(recording_id = %claim.id, "deleted or purged in Webex before it could be archived: lost at the source");
                self.progress.finished_otherwise.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failed { reason, .. } => {
                self.metrics.failed(reason);
                self.progress.finished_otherwise.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::NotDownloadable { .. } => {
                self.metrics.not_downloadable();
                self.progress.finished_otherwise.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Retry { .. } | Outcome::Release { .. } => {}
        }
        Ok(Some((claim.id, outcome)))
    }

    /// Renews `claim`'s lease every third of its length; returns only when another worker
    /// holds the recording (then the attempt is dropped, which aborts its upload). While
    /// the database is away, renewing is tried again at the next tick: the outcome's
    /// statement checks the lease anyway.
    async fn keep_lease(&self, claim: &Claim) {
        let every = (self.settings.lease / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            match self.state.renew_lease(&claim.id, &claim.token, self.settings.lease).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(recording_id = %claim.id, error = %ErrorChain(&e), "cannot renew the lease; trying again");
                }
            }
        }
    }

    /// What to record for an attempt's result, and the error to hand to the caller when
    /// the attempt stopped for a reason that is not the recording's (an outage, a lost
    /// lease).
    fn outcome(&self, claim: &Claim, result: Result<ArchivedRecord, AttemptError>) -> (Outcome, Option<AttemptError>) {
        let now = Utc::now();
        let error = match result {
            Ok(record) => return (Outcome::Archived(record), None),
            Err(e) => e,
        };
        match error {
            AttemptError::NotDownloadable(reason) => {
                tracing::warn!(recording_id = %claim.id, reason = %reason, "not downloadable with this token");
                (Outcome::NotDownloadable { reason }, None)
            }
            AttemptError::Final { ref reason, .. } => {
                let message = ErrorChain(&error).to_string();
                tracing::error!(recording_id = %claim.id, reason = %reason, error = %message, "archiving failed for good");
                (Outcome::Failed { reason: reason.clone(), message }, None)
            }
            // A refusal that got this far is one fresh links could not cure (the attempt
            // handles the others): it may pass later.
            AttemptError::Transient { .. } | AttemptError::LinkRejected(_) => {
                let reason = match &error {
                    AttemptError::Transient { reason, .. } => reason.clone(),
                    _ => "link_rejected".to_owned(),
                };
                if claim.attempts >= self.settings.max_attempts {
                    let message = format!("gave up after {} attempts; last: {}", claim.attempts, ErrorChain(&error));
                    tracing::error!(recording_id = %claim.id, reason = %reason, error = %message, "archiving failed for good");
                    (Outcome::Failed { reason, message }, None)
                } else {
                    let message = ErrorChain(&error).to_string();
                    let at = crate::time::after(now, self.retry_delay(claim.attempts));
                    tracing::warn!(recording_id = %claim.id, attempt = claim.attempts, reason = %reason, error = %message, retry_at = %at, "attempt failed; will retry");
                    (Outcome::Retry { at, reason, message }, None)
                }
            }
            AttemptError::RetryAt(at) => (Outcome::Release { at }, None),
            AttemptError::Database(_) | AttemptError::StoreUnreachable(_) | AttemptError::Auth(_) => {
                let at = crate::time::after(now, Duration::from_secs(5));
                (Outcome::Release { at }, Some(error))
            }
            AttemptError::Cancelled => (Outcome::Release { at: now }, None),
            AttemptError::LostLease => (Outcome::Release { at: now }, Some(AttemptError::LostLease)),
        }
    }

    /// Records the outcome, retrying while the database is briefly unreachable (a
    /// finished upload should not be redone because of a database restart).
    async fn finish(&self, claim: &Claim, outcome: &Outcome) -> Result<bool, AttemptError> {
        let mut backoff = backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(Duration::from_millis(200))
            .with_max_interval(Duration::from_secs(5))
            .with_max_elapsed_time(Some(self.settings.lease))
            .build();
        loop {
            match self.state.finish(&claim.id, &claim.token, outcome).await {
                Ok(kept) => return Ok(kept),
                Err(e) if e.is_unavailable() => match backoff.next_backoff() {
                    Some(delay) => {
                        tracing::warn!(recording_id = %claim.id, error = %ErrorChain(&e), "cannot record the attempt's outcome yet; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(e.into()),
                },
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Delay before attempt `attempts + 1`: exponential from `retry_base`, capped at
    /// `retry_max`, with jitter.
    fn retry_delay(&self, attempts: u32) -> Duration {
        let mut backoff = backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(self.settings.retry_base)
            .with_max_interval(self.settings.retry_max)
            .with_randomization_factor(0.3)
            .with_max_elapsed_time(None)
            .build();
        let mut delay = self.settings.retry_base;
        for _ in 0..attempts.max(1) {
            delay = backoff.next_backoff().unwrap_or(self.settings.retry_max);
        }
        delay.min(self.settings.retry_max)
    }

    /// One attempt: details, files, metadata.
    async fn attempt(&self, claim: &Claim, abort: &CancellationToken) -> Result<ArchivedRecord, AttemptError> {
        if let Some(hook) = &self.hook {
            hook.call(&claim.id.0);
        }
        let dir = self.template.render(KeyInputs {
            id: &claim.id.0,
            create_time: claim.create_time,
            site_url: claim.site_url.as_deref(),
        });
        if !self.state.set_object_prefix(&claim.id, &claim.token, &dir).await? {
            return Err(AttemptError::LostLease);
        }
        let mut session = transfer::Session::new(self, claim, abort);
        let mut files: Vec<StoredFile> = Vec::new();
        for kind in &self.settings.include {
            if let Some(file) = session.store_file(*kind, &dir).await? {
                files.push(file);
            }
        }
        let main = files
            .iter()
            .find(|f| f.entry.kind == FileKind::Recording)
            .ok_or_else(|| AttemptError::NotDownloadable("no recording file".into()))?
            .clone();
        let size_mismatch = claim.size_bytes.is_some_and(|listed| u64::try_from(listed).ok() != Some(main.entry.size));
        if size_mismatch {
            self.metrics.size_mismatch("listing");
            tracing::warn!(
                recording_id = %claim.id,
                listed = claim.size_bytes,
                received = main.entry.size,
                "the recording's size differs from the listing's sizeBytes (recorded)"
            );
        }
        let metadata = Metadata {
            schema: METADATA_SCHEMA.into(),
            recording_id: claim.id.0.clone(),
            listing: crate::state::listing_without_secrets(claim.listing.clone()),
            files: files.iter().map(|f| f.entry.clone()).collect(),
            archived_at: Utc::now(),
            size_mismatch,
            archiver_version: env!("CARGO_PKG_VERSION").into(),
        };
        let metadata_key = format!("{dir}/{METADATA_FILE}");
        let (metadata, metadata_version) = self.store_metadata(&metadata_key, metadata).await?;
        // Object Lock: every version written (or adopted) is retained before the
        // recording counts as archived.
        let mut objects: Vec<(&str, Option<&str>)> =
            files.iter().map(|f| (f.entry.key.as_str(), f.version.as_deref())).collect();
        objects.push((metadata_key.as_str(), metadata_version.as_deref()));
        let retained = self.retain(claim, metadata.archived_at, &objects).await?;
        let retained_until = |key: &str| retained.as_ref().and_then(|r| r.per_key.get(key).copied());
        // The row's `files`: metadata.json's, each with the store's version id and the
        // retain-until date read back.
        let files: Vec<serde_json::Value> = metadata
            .files
            .iter()
            .map(|entry| {
                let mut value = serde_json::to_value(entry).unwrap_or_default();
                let version = files.iter().find(|f| f.entry.key == entry.key).and_then(|f| f.version.clone());
                value["version_id"] = serde_json::Value::from(version);
                if retained.is_some() {
                    value["retain_until"] = serde_json::to_value(retained_until(&entry.key)).unwrap_or_default();
                }
                value
            })
            .collect();
        Ok(ArchivedRecord {
            object_prefix: dir,
            media_key: main.entry.key.clone(),
            metadata_key: metadata_key.clone(),
            sha256: main.entry.sha256.clone(),
            bytes: i64::try_from(main.entry.size).unwrap_or(i64::MAX),
            files: serde_json::Value::Array(files),
            size_mismatch,
            archived_at: metadata.archived_at,
            metadata_version,
            metadata_retain_until: retained_until(&metadata_key),
            retention: retained.map(|r| (r.mode.s3_name().to_owned(), r.until)),
        })
    }

    /// Applies `storage.object_lock` to each stored version of a recording (relative key,
    /// version id) and reads it back (`storage::Store::retain`). `None` without Object
    /// Lock. A recording whose retention period ended before it was archived gets none
    /// (S3 refuses a date in the past): it is recorded with that date and no per-object
    /// dates.
    async fn retain(
        &self,
        claim: &Claim,
        archived_at: DateTime<Utc>,
        objects: &[(&str, Option<&str>)],
    ) -> Result<Option<Retained>, AttemptError> {
        let Some((mode, _)) = self.store.object_lock().retention() else { return Ok(None) };
        let Some(until) = self.store.retain_until(claim.create_time, archived_at) else { return Ok(None) };
        let mut retained = Retained { mode, until, per_key: BTreeMap::new() };
        if until <= Utc::now() {
            tracing::info!(recording_id = %claim.id, retain_until = %until, "the retention period has already ended; no retention applied");
            return Ok(Some(retained));
        }
        for (relative, version) in objects {
            let key = self.store.key(relative).map_err(AttemptError::storage_final)?;
            match self.store.retain(&key, *version, until).await {
                Ok(read) => {
                    let read_until = read.retain_until.unwrap_or(until);
                    retained.until = retained.until.min(read_until);
                    retained.per_key.insert((*relative).to_owned(), read_until);
                }
                Err(e @ StorageError::RetentionNotApplied { .. }) => {
                    return Err(AttemptError::transient("retention_not_applied", e));
                }
                Err(e) => return Err(self.storage_failure(e).await),
            }
        }
        Ok(Some(retained))
    }

    /// Writes `metadata.json` create-only. One already there is adopted when it describes
    /// the same files; anything else is a conflict.
    async fn store_metadata(
        &self,
        relative: &str,
        metadata: Metadata,
    ) -> Result<(Metadata, Option<String>), AttemptError> {
        let key = self.store.key(relative).map_err(AttemptError::storage_final)?;
        let body = serde_json::to_vec_pretty(&metadata)
            .map_err(|e| AttemptError::failed("metadata", AttemptError::context("metadata.json", e)))?;
        let digest = transfer::sha256_hex(&body);
        match self.store.put_create(&key, Bytes::from(body), "application/json", Some(&digest)).await {
            Ok(version) => Ok((metadata, version)),
            Err(StorageError::AlreadyExists { key: shown }) => {
                let (existing, version) = match self.store.get_versioned(&key).await {
                    Ok(read) => read,
                    Err(e) => return Err(self.storage_failure(e).await),
                };
                match serde_json::from_slice::<Metadata>(&existing) {
                    Ok(found) if found.recording_id == metadata.recording_id && found.files == metadata.files => {
                        tracing::info!(key = %shown, "adopting the metadata.json already stored for the same files");
                        Ok((found, version))
                    }
                    _ => Err(AttemptError::failed(
                        "conflict",
                        format!("{shown} already exists and describes other content; refusing to overwrite it"),
                    )),
                }
            }
            Err(e) => Err(self.storage_failure(e).await),
        }
    }

    /// Classifies a storage failure, asking the store whether it is reachable at all: an
    /// unreachable store is an outage (the attempt is given back, not counted), a store
    /// that answers but refused is this attempt's failure.
    pub(crate) async fn storage_failure(&self, e: StorageError) -> AttemptError {
        match e {
            StorageError::AlreadyExists { key } => AttemptError::failed(
                "conflict",
                format!("{key} already exists with other content; refusing to overwrite it"),
            ),
            // The store took the upload but does not hold what was sent: this attempt's
            // failure (the object was deleted), retried like others.
            e @ StorageError::Mismatch { .. } => {
                self.metrics.size_mismatch("storage");
                AttemptError::transient("storage_mismatch", e)
            }
            e => {
                let probe = tokio::time::timeout(Duration::from_secs(30), self.store.probe()).await;
                if probe.is_ok_and(|r| r.is_ok()) {
                    AttemptError::transient("storage", e)
                } else {
                    AttemptError::StoreUnreachable(e)
                }
            }
        }
    }
}

/// Runs `workers` archive loops until `stop` fires (or, with `drain`, until no recording
/// is pending or being archived). `abort` cuts in-flight transfers short.
pub async fn run_workers(
    archiver: &Archiver,
    workers: usize,
    stop: &CancellationToken,
    abort: &CancellationToken,
    drain: bool,
    idle: Duration,
) {
    let mut tasks = tokio::task::JoinSet::new();
    let mut ids = std::collections::HashMap::new();
    let spawn = |tasks: &mut tokio::task::JoinSet<()>, worker: usize| {
        let archiver = archiver.clone();
        let stop = stop.clone();
        let abort = abort.clone();
        tasks.spawn(async move { worker_loop(worker, &archiver, &stop, &abort, drain, idle).await }).id()
    };
    for worker in 0..workers {
        ids.insert(spawn(&mut tasks, worker), worker);
    }
    while let Some(ended) = tasks.join_next_with_id().await {
        // Attempts catch their own panics; this catches one in the loop around them.
        if let Err(e) = ended
            && e.is_panic()
        {
            let worker = ids.remove(&e.id()).unwrap_or(0);
            let message = crate::supervise::panic_message(e.into_panic().as_ref());
            archiver.metrics.task_panicked("worker");
            tracing::error!(worker, panic = %message, "an archive worker panicked; starting it again");
            if !stop.is_cancelled() {
                ids.insert(spawn(&mut tasks, worker), worker);
            }
        }
    }
}

async fn worker_loop(
    worker: usize,
    archiver: &Archiver,
    stop: &CancellationToken,
    abort: &CancellationToken,
    drain: bool,
    idle: Duration,
) {
    let mut outage_backoff: Option<backoff::ExponentialBackoff> = None;
    while !stop.is_cancelled() {
        // No new claims while Webex asks every client to wait: a claim would only spend
        // its lease (and the recording's place in the queue) waiting on the gate.
        let paused = (archiver.webex.paused_until().await - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        if !paused.is_zero() {
            tracing::debug!(worker, seconds = paused.as_secs_f64(), "not claiming while the Retry-After pause lasts");
            tokio::select! {
                _ = tokio::time::sleep(paused) => {}
                _ = stop.cancelled() => {}
            }
            continue;
        }
        match archiver.archive_next(abort).await {
            // A lost lease is another worker's business: this one goes on.
            Ok(Some(_)) | Err(AttemptError::LostLease) => {
                if outage_backoff.take().is_some() {
                    tracing::info!(worker, "archiving resumed");
                }
            }
            Ok(None) => {
                if outage_backoff.take().is_some() {
                    tracing::info!(worker, "archiving resumed");
                }
                let wait = if drain {
                    // Two index lookups, however many recordings the database holds.
                    match archiver.state.next_work().await {
                        Ok(next) => match next.due_at {
                            None if next.lease_expires_at.is_none() => return,
                            Some(at) => (at - Utc::now())
                                .to_std()
                                .unwrap_or(Duration::ZERO)
                                .clamp(Duration::from_millis(50), idle),
                            None => idle.min(Duration::from_millis(500)),
                        },
                        Err(_) => idle,
                    }
                } else {
                    idle
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => {}
                }
            }
            Err(e) => {
                let backoff = outage_backoff.get_or_insert_with(|| {
                    backoff::ExponentialBackoffBuilder::new()
                        .with_initial_interval(Duration::from_millis(500))
                        .with_max_interval(Duration::from_secs(30))
                        .with_max_elapsed_time(None)
                        .build()
                });
                let delay = backoff.next_backoff().unwrap_or(Duration::from_secs(30));
                tracing::warn!(worker, error = %ErrorChain(&e), retry_in_s = delay.as_secs_f64(), "archiving paused by an outage; waiting");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stop.cancelled() => {}
                }
            }
        }
    }
}
