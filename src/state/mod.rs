//! The archive's durable state and work queue, behind one interface with a Postgres
//! and a SQLite implementation. All SQL of the project lives in this module.
//!
//! Rules: every operation is one short statement or one short transaction; nothing is
//! held across network I/O. A claim sets a lease; finishing is another statement that
//! only succeeds for the holder of that lease.
//!
//! Layout: `statements.rs` holds every statement, written once, and the one
//! implementation of [`StateStore`]; `sql.rs` the little that lets one statement run on
//! both databases; `postgres.rs` and `sqlite.rs` only what each database does its own
//! way (types, "now", locking, Postgres's batch forms); `events.rs` the custody log.

mod events;
mod postgres;
mod sql;
mod sqlite;
mod statements;
mod vault;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use futures::stream::BoxStream;
use serde::Serialize;

use crate::config::DatabaseUrl;
use crate::domain::UnknownName;
pub use crate::domain::{ArchiveState, CursorKind, RecordingId, ScopeKey, SourceStatus};
use crate::webex::StoreError;
pub use crate::webex::auth::StoredTokens;
use crate::webex::gate::SharedPause;

pub use events::Event;
pub use postgres::PgState;
pub use sqlite::SqliteState;
pub use vault::{TokenVault, VaultError};

/// A recording as discovery records it (the domain view of a listing item).
#[derive(Debug, Clone, PartialEq)]
pub struct ListedRecording {
    /// Webex id.
    pub id: RecordingId,
    /// Scope that listed it.
    pub scope: ScopeKey,
    /// Site host name.
    pub site_url: Option<String>,
    /// Host e-mail (admin listings).
    pub host_email: Option<String>,
    /// Meeting instance.
    pub meeting_id: Option<String>,
    /// Topic.
    pub topic: Option<String>,
    /// Format as sent (`MP4`, `ARF`, ...).
    pub format: Option<String>,
    /// When Webex produced the file.
    pub create_time: DateTime<Utc>,
    /// Size Webex reports.
    pub size_bytes: Option<i64>,
    /// The listing item without its password.
    pub listing: serde_json::Value,
    /// Where it was listed, for the custody log's `discovered` event.
    pub listed_in: ListedIn,
}

/// Which listing sent a recording: recorded in its `discovered` event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListedIn {
    /// The listing window `[from, to)`.
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Webex's trackingId of the page.
    pub tracking_id: Option<String>,
    /// How it was found when not by a listing page (`quarantine_reread`,
    /// `quarantine_details`).
    pub via: Option<&'static str>,
    /// The listing's `status` when it listed recordings gone at the source (a deletion
    /// sweep): recording the page also records the first time each was seen so.
    pub status: Option<SourceStatus>,
}

/// Who asked for a change by hand (`retry`): recorded in the custody log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operator {
    /// The OS user.
    pub user: String,
    /// The host the command ran on.
    pub host: String,
}

/// A discovery cursor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cursor {
    /// Scope.
    pub scope: ScopeKey,
    /// Which cursor.
    pub kind: CursorKind,
    /// Every window before this instant is listed.
    pub position: DateTime<Utc>,
    /// Backfill range asked for.
    pub range_start: Option<DateTime<Utc>>,
    /// Backfill range end.
    pub range_end: Option<DateTime<Utc>>,
    /// Last pass started.
    pub last_pass_at: Option<DateTime<Utc>>,
    /// Last pass that reached its end.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Error of the last failed pass.
    pub last_error: Option<String>,
    /// Items recorded by this cursor's passes.
    pub items_listed: i64,
    /// Items quarantined by this cursor's passes (they could not be read; stored in the
    /// column `items_skipped`, its name from before quarantine existed).
    pub items_quarantined: i64,
}

/// The last deletion sweep of one scope for one source status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeletionSweep {
    /// Scope.
    pub scope: ScopeKey,
    /// Which listing (`deleted` or `purged`).
    pub status: SourceStatus,
    /// Last sweep started.
    pub last_pass_at: Option<DateTime<Utc>>,
    /// Last sweep that reached its end (or learnt the listing is not permitted).
    pub last_success_at: Option<DateTime<Utc>>,
    /// Why the last sweep did not finish, or why the listing is not permitted.
    pub last_error: Option<String>,
    /// Items the last complete sweep listed.
    pub items_listed: i64,
}

/// How a deletion sweep of one scope and status ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SweepEnd {
    /// Every window listed: `items` recordings were listed with that status.
    Done {
        /// Items listed.
        items: i64,
    },
    /// Webex refuses this token that listing (purged recordings are for Compliance
    /// Officers): done until the next sweep, with why.
    NotPermitted(String),
    /// Stopped by an error: due again at the next pass.
    Failed(String),
}

/// A daily manifest written: one link of the manifests' chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestRow {
    /// Order of writing (1, 2, ...).
    pub seq: i64,
    /// The UTC day of createTime it covers, `YYYY-MM-DD`.
    pub day: String,
    /// 0 for `DD.json`, n for the supplement `DD.n.json`.
    pub part: i64,
    /// Object key, relative to the storage prefix.
    pub key: String,
    /// SHA-256 (hex) of the object's bytes.
    pub sha256: String,
    /// SHA-256 of the manifest written before it.
    pub prev_sha256: Option<String>,
    /// Recordings listed.
    pub recordings: i64,
    /// Files listed (`metadata.json` included).
    pub files: i64,
    /// When it was written.
    pub written_at: DateTime<Utc>,
    /// The store's version id of the object (versioned buckets).
    pub version_id: Option<String>,
    /// Its Object Lock retain-until date, as read back (`storage.object_lock`).
    pub retained_until: Option<DateTime<Utc>>,
}

/// An archived recording that no manifest lists yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Unmanifested {
    /// Recording.
    pub id: RecordingId,
    /// Its createTime.
    pub create_time: DateTime<Utc>,
    /// Its stored files (`metadata.json`'s `files`).
    pub files: serde_json::Value,
    /// Key of its `metadata.json`.
    pub metadata_key: String,
}

/// Moves a cursor with a page, compare-and-set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CursorMove {
    /// Which cursor.
    pub kind: CursorKind,
    /// The position the mover read; the move fails if it changed.
    pub from: DateTime<Utc>,
    /// The new position (the end of the window just listed).
    pub to: DateTime<Utc>,
}

/// What recording a page did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageRecorded {
    /// Recordings seen for the first time.
    pub new: u64,
    /// Recordings seen before (listing fields refreshed).
    pub refreshed: u64,
    /// Quarantine entries released (their recording is now recorded).
    pub released: u64,
}

/// The key of a quarantine entry: the item's recording id when it has a usable string
/// one, else `sha256:<hex>` of its raw text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct QuarantineKey(pub String);

impl QuarantineKey {
    /// The key of an item with this id (if any) and raw text.
    pub fn for_item(id: Option<&str>, raw: &str) -> Self {
        match id {
            Some(id) => Self(id.to_owned()),
            None => {
                use sha2::Digest as _;
                Self(format!("sha256:{}", hex::encode(sha2::Sha256::digest(raw.as_bytes()))))
            }
        }
    }
}

impl fmt::Display for QuarantineKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a quarantine entry stopped needing a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleasedHow {
    /// The stored item reads with the current code: recorded from it.
    Reread,
    /// The recording's details carry what the listing lacked: recorded from them.
    Details,
    /// A later listing sent the item readable.
    Listed,
    /// The recording was already recorded (from an earlier, readable listing).
    AlreadyRecorded,
    /// An item without a usable id: listing its window again no longer sends it as it
    /// was (its recording now reads, and was recorded by that listing, or is gone).
    Relisted,
}

impl ReleasedHow {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reread => "reread",
            Self::Details => "details",
            Self::Listed => "listed",
            Self::AlreadyRecorded => "already_recorded",
            Self::Relisted => "relisted",
        }
    }
}

/// A listing item that could not be read, as a page records it.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantinedItem {
    /// The entry's key.
    pub key: QuarantineKey,
    /// The item's recording id, when it has a usable string one.
    pub recording_id: Option<RecordingId>,
    /// Scope whose listing sent it.
    pub scope: ScopeKey,
    /// Why it could not be read.
    pub reason: String,
    /// The JSON text as sent, without the password (and temporary links).
    pub raw: String,
    /// Webex's trackingId of the page.
    pub tracking_id: Option<String>,
    /// The listing window `[from, to)` whose page sent it.
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl QuarantinedItem {
    /// An entry for an item of `scope`'s listing; the key follows from `id` and `raw`.
    pub fn new(scope: ScopeKey, id: Option<String>, reason: String, raw: String, tracking_id: Option<String>) -> Self {
        let key = QuarantineKey::for_item(id.as_deref(), &raw);
        Self { key, recording_id: id.map(RecordingId), scope, reason, raw, tracking_id, window: None }
    }

    /// The same entry, sent by a page of the window `[from, to)`.
    pub fn listed_in(mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> Self {
        self.window = Some((from, to));
        self
    }
}

/// An unreleased quarantine entry, for `status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarantineRow {
    /// The entry's key (the recording id, or `sha256:...`).
    pub key: QuarantineKey,
    /// The recording id, when the item has one.
    pub recording_id: Option<RecordingId>,
    /// Scope whose listing sent it.
    pub scope: ScopeKey,
    /// Why it could not be read.
    pub reason: String,
    /// Webex's trackingId of the page that last sent it.
    pub tracking_id: Option<String>,
    /// First listed.
    pub first_seen_at: DateTime<Utc>,
    /// Last listed.
    pub last_seen_at: DateTime<Utc>,
    /// Pages that sent it.
    pub seen_count: i64,
    /// What the last re-read found (e.g. the details request's outcome).
    pub check_note: Option<String>,
}

/// An unreleased quarantine entry with its raw text, for re-reading.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineEntry {
    /// What `status` shows of it.
    pub row: QuarantineRow,
    /// The JSON text as sent, without the password.
    pub raw: String,
    /// The listing window `[from, to)` whose page last sent it, when known.
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// A worker's hold on one recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The recording.
    pub id: RecordingId,
    /// Proof of the lease; every later statement checks it.
    pub token: String,
    /// Attempts started, this one included.
    pub attempts: u32,
    /// The previous holder's lease had expired (its worker died).
    pub recovered: bool,
    /// Scope that listed it.
    pub scope: ScopeKey,
    /// Site.
    pub site_url: Option<String>,
    /// Host e-mail, needed by admins to fetch details.
    pub host_email: Option<String>,
    /// When Webex produced it.
    pub create_time: DateTime<Utc>,
    /// Format as listed.
    pub format: Option<String>,
    /// Size as listed.
    pub size_bytes: Option<i64>,
    /// Listing without password.
    pub listing: serde_json::Value,
    /// Seen deleted or purged at the source: a final failure makes it `lost_at_source`.
    pub gone_at_source: bool,
}

/// Where and what an archived recording is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchivedRecord {
    /// The recording's directory key.
    pub object_prefix: String,
    /// Key of the recording file.
    pub media_key: String,
    /// Key of `metadata.json`.
    pub metadata_key: String,
    /// Hex SHA-256 of the recording file.
    pub sha256: String,
    /// Bytes of the recording file.
    pub bytes: i64,
    /// Every stored file (`metadata.json`'s `files`).
    pub files: serde_json::Value,
    /// The byte count differed from the listing's `sizeBytes`.
    pub size_mismatch: bool,
    /// When it was archived.
    pub archived_at: DateTime<Utc>,
    /// The store's version id of `metadata.json` (versioned buckets; recorded in the
    /// `archived` event, not in the row: the files' version ids are in `files`).
    pub metadata_version: Option<String>,
    /// The Object Lock retention applied (`storage.object_lock`): its mode (`GOVERNANCE`
    /// or `COMPLIANCE`) and the earliest retain-until date HEAD read back among the
    /// objects (each file's own is in `files`, `retain_until`). A date already past
    /// means the retention period had ended before the recording was archived, and
    /// nothing was applied. `None` without Object Lock.
    pub retention: Option<(String, DateTime<Utc>)>,
    /// `metadata.json`'s retain-until date as read back (in the event, not the row).
    pub metadata_retain_until: Option<DateTime<Utc>>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Stored and checked.
    Archived(ArchivedRecord),
    /// A failure that may pass: try again at `at` (the attempt counts). Becomes
    /// `failed` instead when attempts are exhausted (decided by the caller).
    Retry {
        /// Next attempt.
        at: DateTime<Utc>,
        /// Short class, e.g. `truncated`.
        reason: String,
        /// What happened.
        message: String,
    },
    /// Not the recording's fault (shutdown, outage, rate limit): the attempt is given back.
    Release {
        /// Next attempt.
        at: DateTime<Utc>,
    },
    /// Final failure.
    Failed {
        /// Short class.
        reason: String,
        /// What happened, with Webex's message and trackingId when there is one.
        message: String,
    },
    /// No download link for this token. Final.
    NotDownloadable {
        /// Why.
        reason: String,
    },
}

/// What a draining worker needs to know when it found nothing to claim: when the next
/// pending recording is due, and when the next lease expires (none: nothing is being
/// archived). Two index lookups, whatever the number of recordings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NextWork {
    /// Earliest scheduled attempt among pending recordings.
    pub due_at: Option<DateTime<Utc>>,
    /// Earliest lease expiry among recordings being archived.
    pub lease_expires_at: Option<DateTime<Utc>>,
}

/// Recordings per state and gone at the source, as last counted into the shared counts
/// ([`StateStore::refresh_counts`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SharedCounts {
    /// When they were counted.
    pub counted_at: DateTime<Utc>,
    /// Recordings per state (every state present, zero included).
    pub counts: BTreeMap<ArchiveState, i64>,
    /// Recordings seen deleted at the source.
    pub deleted_at_source: i64,
    /// Recordings seen purged at the source.
    pub purged_at_source: i64,
}

/// What `/metrics` shows of the database, read without counting the recordings: the
/// shared counts as last taken, and facts that are each a lookup in a small index.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Gauges {
    /// The shared counts; none before the first count.
    pub counts: Option<SharedCounts>,
    /// Oldest recording (by createTime) not yet archived nor final.
    pub oldest_unarchived: Option<(RecordingId, DateTime<Utc>)>,
    /// Unreleased quarantine entries.
    pub quarantined: i64,
    /// Every cursor.
    pub cursors: Vec<Cursor>,
    /// The OAuth tokens' lifetimes, when OAuth is in use.
    pub oauth: Option<TokenStatus>,
}

/// Statements whose query plans `tests/it` checks with `EXPLAIN` on a filled database:
/// each must reach its rows through an index, not by reading the whole table.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planned {
    /// Choosing what a claim takes (Postgres: the whole claim statement).
    Claim,
    /// Marking a recording archived ([`StateStore::finish`] with [`Outcome::Archived`]).
    Finish,
    /// The latest events of the recordings an append to the custody log concerns.
    EventHead,
    /// `status`: recordings and bytes per state.
    StatusCounts,
    /// `status`: the facts counted over a few rows (due, mismatches, gone at the source).
    StatusFacts,
    /// `status` and `/metrics`: the oldest recording not archived.
    OldestUnarchived,
    /// `status`: the latest failures.
    RecentFailures,
    /// A draining worker's question ([`StateStore::next_work`]).
    NextWork,
    /// `verify`'s question about a batch of listed directories
    /// ([`StateStore::claimed_prefixes`]).
    ClaimedPrefixes,
}

/// Counts and facts for `status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusReport {
    /// Recordings per state (every state present, zero included).
    pub counts: BTreeMap<ArchiveState, i64>,
    /// Sum of archived recording bytes.
    pub bytes_archived: i64,
    /// Pending recordings due now.
    pub due_now: i64,
    /// Earliest scheduled attempt among pending recordings.
    pub next_due_at: Option<DateTime<Utc>>,
    /// Oldest recording (by createTime) not yet archived nor final.
    pub oldest_unarchived: Option<(RecordingId, DateTime<Utc>)>,
    /// Recordings whose byte count differed from `sizeBytes`.
    pub size_mismatches: i64,
    /// Leases that expired with their worker gone, summed.
    pub lease_expiries: i64,
    /// Recordings seen deleted at the source (in Webex's recycle bin), at any time.
    pub deleted_at_source: i64,
    /// Recordings seen purged at the source (removed from the recycle bin).
    pub purged_at_source: i64,
    /// Recordings under legal hold. Always 0: legal hold is not built yet.
    pub under_hold: i64,
    /// Every deletion sweep's last outcome.
    pub deletion_sweeps: Vec<DeletionSweep>,
    /// Every cursor.
    pub cursors: Vec<Cursor>,
    /// The latest failures.
    pub recent_failures: Vec<FailureRow>,
    /// Unreleased quarantine entries: listing items that could not be read.
    pub quarantined: i64,
    /// The latest unreleased quarantine entries (as many as failures asked for).
    pub recent_quarantine: Vec<QuarantineRow>,
    /// The shared Retry-After pause, if one is running.
    pub paused_until: Option<DateTime<Utc>>,
    /// The OAuth tokens' lifetimes, when OAuth is in use.
    pub oauth: Option<TokenStatus>,
}

/// Lifetimes of the stored OAuth tokens (never the tokens themselves).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenStatus {
    /// When the current access token expires.
    pub access_expires_at: Option<DateTime<Utc>>,
    /// When the refresh token expires: re-authorise the integration before then.
    pub refresh_expires_at: Option<DateTime<Utc>>,
    /// Refreshes done so far.
    pub refreshes: i64,
}

/// One failed or not-downloadable recording, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct FailureRow {
    /// Recording.
    pub id: RecordingId,
    /// Its state (`failed`, `not_downloadable` or `lost_at_source`).
    pub state: ArchiveState,
    /// Short class.
    pub reason: Option<String>,
    /// Last error.
    pub message: Option<String>,
    /// Attempts used.
    pub attempts: i64,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// An archived recording, for `verify`.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchivedRow {
    /// Recording.
    pub id: RecordingId,
    /// What was stored.
    pub record: ArchivedRecord,
    /// A legal hold is on its objects.
    pub legal_hold: bool,
}

/// A legal hold put on or taken off every version of a recording's objects.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldChange {
    /// On (`hold add`) or off (`hold remove`).
    pub on: bool,
    /// Why, as the operator gave it.
    pub reason: String,
    /// Who.
    pub by: Operator,
    /// The versions changed: `[{"key", "version_id"}]`.
    pub versions: serde_json::Value,
}

/// A recording under legal hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HoldRow {
    /// Recording.
    pub id: RecordingId,
    /// Since when.
    pub since: Option<DateTime<Utc>>,
    /// Who put it on.
    pub by: Option<String>,
    /// Why.
    pub reason: Option<String>,
}

/// A retention lengthened on a recording's object versions (`retention extend`).
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionChange {
    /// The mode kept (`GOVERNANCE` or `COMPLIANCE`).
    pub mode: String,
    /// The new earliest retain-until date among the recording's objects.
    pub until: DateTime<Utc>,
    /// The row's `files` with their new `retain_until`.
    pub files: serde_json::Value,
    /// Who.
    pub by: Operator,
    /// The versions changed: `[{"key", "version_id", "from", "to"}]`.
    pub versions: serde_json::Value,
}

/// One UTC day of `createTime` in the attestation report: what the recordings created
/// that day became. Counted by the database (`GROUP BY` the day).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCounts {
    /// The UTC day.
    pub date: NaiveDate,
    /// Recordings of that day recorded from Webex's listings.
    pub listed: i64,
    /// Of which archived.
    pub archived: i64,
    /// Bytes of every file stored for the archived ones (`files[].size`, without
    /// `metadata.json`).
    pub bytes: i64,
    /// Of which final `not_downloadable`.
    pub not_downloadable: i64,
    /// Of which `failed` (a person must look).
    pub failed: i64,
    /// Of which `pending` or `archiving`.
    pub unfinished: i64,
    /// Of which final `lost_at_source`.
    pub lost_at_source: i64,
    /// Recordings seen deleted (in the recycle bin) at the source, whatever their state.
    pub deleted_at_source: i64,
    /// Recordings seen purged at the source, whatever their state.
    pub purged_at_source: i64,
    /// Of which under legal hold.
    pub under_hold: i64,
}

/// Which recordings of a period [`ReportSnapshot::recordings`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportSelection {
    /// Every recording.
    All,
    /// Those neither archived nor final for a stated reason: `pending`, `archiving`,
    /// `failed`.
    Gaps,
    /// Those final for a stated reason other than being archived: `not_downloadable`,
    /// `lost_at_source`.
    FinalNotArchived,
    /// Those archived or final for a stated reason (everything but the gaps).
    Final,
}

/// A recording's row in the attestation report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRecording {
    /// Webex id.
    pub id: RecordingId,
    /// Its state.
    pub state: ArchiveState,
    /// When Webex produced it.
    pub create_time: DateTime<Utc>,
    /// Site host name.
    pub site_url: Option<String>,
    /// Host e-mail.
    pub host_email: Option<String>,
    /// The stored files (archived ones only): `recording`, `audio`, `transcript`, then
    /// `metadata` (its key only).
    pub files: Vec<ReportFile>,
    /// When it was archived.
    pub archived_at: Option<DateTime<Utc>>,
    /// First seen deleted at the source.
    pub deleted_at_source: Option<DateTime<Utc>>,
    /// First seen purged at the source.
    pub purged_at_source: Option<DateTime<Utc>>,
    /// Short class of the last failure (`failure_reason`), for a person reading a gap.
    pub reason: Option<String>,
    /// The earliest Object Lock retain-until date among its objects.
    pub retained_until: Option<DateTime<Utc>>,
    /// A legal hold is on its objects.
    pub legal_hold: bool,
}

/// One stored file of an archived recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ReportFile {
    /// `recording`, `audio`, `transcript` or `metadata`.
    pub kind: String,
    /// Object key, relative to the storage prefix.
    pub key: String,
    /// Hex SHA-256 of the content (none recorded for `metadata.json`).
    pub sha256: Option<String>,
    /// Bytes (none recorded for `metadata.json`).
    pub size: Option<u64>,
}

/// An unreleased quarantine entry whose listing window overlaps a period (or that has no
/// recorded window): a listed item that could not be read, for the attestation report.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportQuarantine {
    /// The entry's key (the recording id, or `sha256:...`).
    pub key: QuarantineKey,
    /// Scope whose listing sent it.
    pub scope: ScopeKey,
    /// Why it could not be read.
    pub reason: String,
    /// The JSON text as sent, without the password.
    pub raw: String,
    /// The listing window `[from, to)` whose page last sent it, when known.
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// First listed.
    pub first_seen_at: DateTime<Utc>,
}

/// One consistent, read-only view of the database for the attestation report of the
/// period `[from, to)` (by `createTime`): every read sees the same snapshot, so the day
/// counts agree with the rows whatever the daemon does meanwhile.
#[async_trait]
pub trait ReportSnapshot: Send {
    /// The counts of each UTC day of the period that has recordings, in date order.
    async fn days(&mut self) -> StateResult<Vec<DayCounts>>;
    /// Unreleased quarantine entries whose window overlaps the period, or that have no
    /// window, in key order.
    async fn quarantine(&mut self) -> StateResult<Vec<ReportQuarantine>>;
    /// The recordings of the period that `selection` names, by `createTime` then id, as
    /// the database sends them (none is held beyond the one being read).
    fn recordings(&mut self, selection: ReportSelection) -> BoxStream<'_, StateResult<ReportRecording>>;
}

/// Errors of the state layer. Like every error enum of the project, a variant with a
/// source does not repeat it in its message: print them with
/// [`crate::errors::ErrorChain`].
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database could not be reached or answered with an error.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The SQLite file or its directory is unusable.
    #[error("{path}: {problem}")]
    Path {
        /// The file or directory.
        path: String,
        /// What could not be done.
        problem: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A stored JSON value cannot be read.
    #[error("unexpected stored value: stored JSON")]
    StoredJson(#[source] serde_json::Error),
    /// Another replica moved the cursor or took the scope: the caller lost its lease.
    #[error("the discovery cursor of {scope} was moved by another process")]
    LostCursor {
        /// Scope.
        scope: ScopeKey,
    },
    /// A stored value has an impossible shape.
    #[error("unexpected stored value: {0}")]
    Corrupt(String),
}

impl From<UnknownName> for StateError {
    fn from(e: UnknownName) -> Self {
        Self::Corrupt(e.to_string())
    }
}

impl StateError {
    /// Whether this looks like the database being unreachable (worth waiting for),
    /// rather than a bug or a constraint.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(e) => {
                matches!(
                    e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::Tls(_)
                        | sqlx::Error::Protocol(_)
                        | sqlx::Error::WorkerCrashed
                ) || matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| {
                    // Postgres: admin shutdown, cannot connect now, too many connections;
                    // SQLite: busy, locked.
                    matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "53300" | "5" | "6")
                }))
            }
            _ => false,
        }
    }
}

/// Result of the state layer.
pub type StateResult<T> = Result<T, StateError>;

/// The state interface. One implementation per database; the same contract tests run
/// against both.
#[async_trait]
pub trait StateStore: Send + Sync + fmt::Debug {
    /// Applies the embedded migrations (idempotent).
    async fn migrate(&self) -> StateResult<()>;
    /// A trivial query: is the database answering?
    async fn ping(&self) -> StateResult<()>;

    // --- discovery ---

    /// Takes the discovery lease of `(scope, kind)` for `owner`, creating the cursor at
    /// `initial` if it does not exist. For backfill, `range` is the span asked for; a
    /// different span than the stored one restarts the cursor at its start. Returns the
    /// cursor when the lease was taken, `None` when another owner holds it.
    async fn acquire_cursor(
        &self,
        scope: &ScopeKey,
        kind: CursorKind,
        owner: &str,
        ttl: Duration,
        initial: DateTime<Utc>,
        range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> StateResult<Option<Cursor>>;

    /// Extends the discovery lease of `(scope, kind)` held by `owner` by `ttl` from now.
    /// `false` when `owner` no longer holds it (another replica took the scope).
    async fn renew_cursor(&self, scope: &ScopeKey, kind: CursorKind, owner: &str, ttl: Duration) -> StateResult<bool>;

    /// Gives the discovery lease back and records how the pass ended.
    async fn release_cursor(
        &self,
        scope: &ScopeKey,
        kind: CursorKind,
        owner: &str,
        outcome: Result<(), String>,
    ) -> StateResult<()>;

    /// Records one page in one transaction: its readable items as recordings
    /// (idempotently), releasing their open quarantine entries; its unreadable items in
    /// quarantine (a new entry, or the existing one seen again and reopened, unless its
    /// recording is already recorded); and, when given, the cursor move
    /// (compare-and-set against `from`, and only for the lease `owner`). The quarantined
    /// items are counted on the cursor.
    async fn record_page(
        &self,
        scope: &ScopeKey,
        owner: &str,
        items: &[ListedRecording],
        quarantined: &[QuarantinedItem],
        cursor_move: Option<CursorMove>,
    ) -> StateResult<PageRecorded>;

    /// Up to `limit` unreleased quarantine entries of `scope` whose key sorts after
    /// `after`, in key order (to walk them all, batch by batch).
    async fn quarantined(
        &self,
        scope: &ScopeKey,
        after: Option<&QuarantineKey>,
        limit: u32,
    ) -> StateResult<Vec<QuarantineEntry>>;

    /// Releases a quarantine entry in one transaction with recording `recording` (when
    /// given). `released` is 0 when the entry was already released.
    async fn release_quarantined(
        &self,
        key: &QuarantineKey,
        recording: Option<&ListedRecording>,
        how: ReleasedHow,
    ) -> StateResult<PageRecorded>;

    /// Records what re-reading an entry found (shown by `status`).
    async fn note_quarantine_check(&self, key: &QuarantineKey, note: &str) -> StateResult<()>;

    /// Every cursor.
    async fn cursors(&self) -> StateResult<Vec<Cursor>>;

    // --- archiving ---

    /// Claims up to `limit` due recordings (pending and due, or leased with an expired
    /// lease) for `owner`, in one short statement. Starts an attempt on each.
    async fn claim_due(&self, owner: &str, lease: Duration, limit: u32) -> StateResult<Vec<Claim>>;

    /// Extends a lease. `false` when the claim is no longer ours.
    async fn renew_lease(&self, id: &RecordingId, token: &str, lease: Duration) -> StateResult<bool>;

    /// Records where an attempt writes the recording's files (before writing them), so
    /// `verify` knows objects of unfinished recordings are claimed.
    async fn set_object_prefix(&self, id: &RecordingId, token: &str, prefix: &str) -> StateResult<bool>;

    /// Ends an attempt. `false` when the claim is no longer ours (nothing changed).
    async fn finish(&self, id: &RecordingId, token: &str, outcome: &Outcome) -> StateResult<bool>;

    /// Makes recordings due again: every `failed` one (`ids` = None), or the given ids if
    /// they are `failed` or `not_downloadable`. Resets their attempts. Returns how many.
    /// Each gets a `retried` event naming `by`.
    async fn retry(&self, ids: Option<&[RecordingId]>, by: &Operator) -> StateResult<u64>;

    /// Every deletion sweep's last outcome.
    async fn deletion_sweeps(&self) -> StateResult<Vec<DeletionSweep>>;

    /// Records how the deletion sweep of `scope` and `status`, started at `started`, ended.
    async fn note_deletion_sweep(
        &self,
        scope: &ScopeKey,
        status: SourceStatus,
        started: DateTime<Utc>,
        end: &SweepEnd,
    ) -> StateResult<()>;

    // --- daily manifests ---

    /// Takes the manifest writer's lock for `ttl` (one replica writes at a time).
    async fn lock_manifests(&self, owner: &str, ttl: Duration) -> StateResult<bool>;
    /// Releases it.
    async fn unlock_manifests(&self, owner: &str) -> StateResult<()>;
    /// Up to `limit` manifests after position `after`, in the order written.
    async fn manifests(&self, after: i64, limit: u32) -> StateResult<Vec<ManifestRow>>;
    /// The last manifest written.
    async fn last_manifest(&self) -> StateResult<Option<ManifestRow>>;
    /// The earliest createTime in `[from, before)` of an archived recording no manifest
    /// lists.
    async fn next_unmanifested(&self, from: DateTime<Utc>, before: DateTime<Utc>)
    -> StateResult<Option<DateTime<Utc>>>;
    /// Whether a recording with createTime in `[from, to)` is pending or archiving.
    async fn unsettled(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StateResult<bool>;
    /// The archived recordings with createTime in `[from, to)` no manifest lists, by id.
    async fn unmanifested(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StateResult<Vec<Unmanifested>>;
    /// How many manifests cover `day` (`YYYY-MM-DD`) already.
    async fn manifest_parts(&self, day: &str) -> StateResult<i64>;
    /// Records a manifest written (its `seq` is taken as the next one, which it returns)
    /// and that it lists `ids`, in one transaction.
    async fn record_manifest(&self, manifest: &ManifestRow, ids: &[RecordingId]) -> StateResult<i64>;

    // --- custody log ---

    /// Records a verification in the custody log: a `verified` event of no recording
    /// with `summary`, and a `verify_problem` event for each recording with a problem
    /// (`problems`: recording id and what is wrong), in one transaction.
    async fn record_verification(
        &self,
        summary: serde_json::Value,
        problems: &[(RecordingId, serde_json::Value)],
    ) -> StateResult<()>;

    /// A recording's events, oldest first.
    async fn history(&self, id: &RecordingId) -> StateResult<Vec<Event>>;

    /// Up to `limit` events after global position `after`, in order (to walk the global
    /// chain batch by batch).
    async fn events_after(&self, after: i64, limit: u32) -> StateResult<Vec<Event>>;

    /// Up to `limit` events of recordings, ordered by recording then position, after
    /// `(recording, seq)` (to walk every recording's chain batch by batch). Events of no
    /// recording are not included.
    async fn events_by_recording_after(
        &self,
        after: Option<(&RecordingId, i64)>,
        limit: u32,
    ) -> StateResult<Vec<Event>>;

    /// The global chain's head as `events_head` holds it: the last position and its hash.
    async fn events_head(&self) -> StateResult<(i64, Option<String>)>;

    /// When the next pending recording is due and the next lease expires (a draining
    /// worker's question when it found nothing to claim).
    async fn next_work(&self) -> StateResult<NextWork>;

    // --- reports ---

    /// Counts and facts for `status`, exact and taken now (each from an index).
    async fn status(&self, failures: u32) -> StateResult<StatusReport>;

    /// Counts the recordings per state (and those gone at the source) into the shared
    /// counts that [`StateStore::gauges`] reads, when they are older than `every`, or
    /// than 50 times what the last count took if that is longer, and no other process is
    /// counting (for at most `ttl`). Never waits for another process. `true` when it
    /// counted.
    async fn refresh_counts(&self, owner: &str, every: Duration, ttl: Duration) -> StateResult<bool>;

    /// What `/metrics` shows of the database, without counting the recordings.
    async fn gauges(&self) -> StateResult<Gauges>;

    /// The archived recording `id`, or `None` when it is not archived.
    async fn archived_one(&self, id: &RecordingId) -> StateResult<Option<ArchivedRow>>;

    /// Records a legal hold put on or taken off recording `id` (its row and a
    /// `legal_hold_set` / `legal_hold_removed` event). False when `id` is not archived.
    async fn record_legal_hold(&self, id: &RecordingId, change: &HoldChange) -> StateResult<bool>;

    /// The recordings under legal hold, by id.
    async fn holds(&self) -> StateResult<Vec<HoldRow>>;

    /// Records a retention lengthened on recording `id`'s objects (its row and a
    /// `retention_extended` event). False when `id` is not archived.
    async fn record_retention(&self, id: &RecordingId, change: &RetentionChange) -> StateResult<bool>;

    /// Archived recordings: all, or a random sample of `sample`.
    async fn archived(&self, sample: Option<u32>) -> StateResult<Vec<ArchivedRow>>;

    /// Up to `limit` archived recordings with an id after `after`, by id (to walk them all
    /// batch by batch, memory flat in the number of rows).
    async fn archived_after(&self, after: Option<&RecordingId>, limit: u32) -> StateResult<Vec<ArchivedRow>>;

    /// Which of `prefixes` (directory keys) belong to a recording that has written (or is
    /// writing) objects: to find unclaimed objects a batch of listed directories at a
    /// time, memory flat in the number of rows (an index lookup each).
    async fn claimed_prefixes(&self, prefixes: &[String]) -> StateResult<HashSet<String>>;

    /// A read-only snapshot of the period `[from, to)` for the attestation report.
    async fn report(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StateResult<Box<dyn ReportSnapshot>>;

    /// Recordings not in a final state (pending or archiving).
    async fn unfinished(&self, limit: u32) -> StateResult<Vec<(RecordingId, ArchiveState, Option<String>)>>;

    // --- shared rate-limit pause (behind webex::gate::SharedPause) ---

    /// Extends the shared pause to at least `until`.
    async fn pause_until(&self, until: DateTime<Utc>) -> StateResult<()>;
    /// The shared pause's end (may be in the past).
    async fn paused_until(&self) -> StateResult<DateTime<Utc>>;

    // --- OAuth tokens (behind webex::auth::TokenStore) ---

    /// The tokens stored for `client_id`.
    async fn load_tokens(&self, client_id: &str) -> StateResult<Option<StoredTokens>>;
    /// Stores new tokens for `client_id` (and counts a refresh).
    async fn store_tokens(&self, client_id: &str, tokens: &StoredTokens) -> StateResult<()>;
    /// Takes the refresh lock of `client_id` for `ttl` (one replica refreshes at a time).
    async fn lock_refresh(&self, client_id: &str, owner: &str, ttl: Duration) -> StateResult<bool>;
    /// Releases the refresh lock.
    async fn unlock_refresh(&self, client_id: &str, owner: &str) -> StateResult<()>;
}

/// Shared handle to the state store.
pub type State = Arc<dyn StateStore>;

/// Opens the database named by `url` (creating a SQLite file and its directory on first
/// use) and applies the migrations.
pub async fn open(url: &DatabaseUrl, max_connections: u32, acquire_timeout: Duration) -> StateResult<State> {
    let state: State = if url.is_postgres() {
        Arc::new(PgState::connect(url.expose(), max_connections, acquire_timeout).await?)
    } else {
        Arc::new(SqliteState::open(url.expose(), max_connections, acquire_timeout).await?)
    };
    state.migrate().await?;
    Ok(state)
}

// The Webex client shares its Retry-After pause and its OAuth tokens through the state
// store, which it knows only by these two traits: `SharedPause` here, `TokenStore` in
// `vault.rs` (which encrypts the tokens when `database.token_key` is set).

#[async_trait]
impl SharedPause for State {
    async fn pause_until(&self, until: DateTime<Utc>) -> Result<(), StoreError> {
        StateStore::pause_until(self.as_ref(), until).await.map_err(StoreError::from)
    }
    async fn paused_until(&self) -> Result<DateTime<Utc>, StoreError> {
        StateStore::paused_until(self.as_ref()).await.map_err(StoreError::from)
    }
}

/// Milliseconds of a duration, for SQL parameters.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The listing of an item in the state, minus secret fields (the password, and any
/// temporary download links).
pub fn listing_without_secrets(mut item: serde_json::Value) -> serde_json::Value {
    if let Some(obj) = item.as_object_mut() {
        for field in crate::webex::models::SECRET_FIELDS {
            obj.remove(field);
        }
    }
    item
}

/// Deduplicates a page by id (a page naming one id twice would otherwise update a row twice in one statement).
fn unique_by_id(items: &[ListedRecording]) -> Vec<&ListedRecording> {
    let mut seen = HashSet::new();
    items.iter().filter(|i| seen.insert(&i.id)).collect()
}

/// Deduplicates quarantined items by key, the last one winning (as it would row by row).
fn unique_by_key(items: &[QuarantinedItem]) -> Vec<&QuarantinedItem> {
    let mut seen = HashSet::new();
    let mut unique: Vec<&QuarantinedItem> = items.iter().rev().filter(|i| seen.insert(&i.key)).collect();
    unique.reverse();
    unique
}
