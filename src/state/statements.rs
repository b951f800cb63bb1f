//! The state layer's statements, written once for both backends, and the one
//! implementation of [`StateStore`] that runs them (see `sql.rs` for how a backend
//! renders, binds and reads them).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt as _;
use futures::stream::BoxStream;

use super::events::{self, NewEvent, event_columns, event_from_row};
use super::sql::{Backend, Cells, Param, Row, Session, Statement, sql};
use super::{
    ArchiveState, ArchivedRecord, ArchivedRow, Claim, Cursor, CursorKind, CursorMove, DayCounts, DeletionSweep, Event,
    FailureRow, Gauges, HoldChange, HoldRow, ListedRecording, ManifestRow, NextWork, Operator, Outcome, PageRecorded,
    Planned, QuarantineEntry, QuarantineKey, QuarantineRow, QuarantinedItem, RecordingId, ReleasedHow, ReportFile,
    ReportQuarantine, ReportRecording, ReportSelection, ReportSnapshot, RetentionChange, ScopeKey, SharedCounts,
    SourceStatus, StateError, StateResult, StateStore, StatusReport, StoredTokens, SweepEnd, TokenStatus, Unmanifested,
    unique_by_id, unique_by_key,
};
use Param::{Bool, Int, Interval, Json, OptInt, OptText, OptTime, Text, Time};

/// The columns of a [`Cursor`], as a literal for `sql!`.
macro_rules! cursor_columns {
    () => {
        "scope, kind, position, range_start, range_end, last_pass_at, last_success_at, last_error, items_listed, \
         items_skipped"
    };
}

/// The columns of a [`QuarantineRow`], as a literal for `sql!`.
macro_rules! quarantine_columns {
    () => {
        "key, recording_id, scope, reason, tracking_id, first_seen_at, last_seen_at, seen_count, check_note"
    };
}

/// Recordings a claim may start: pending and due (the partial index `recordings_due`).
macro_rules! due_pending {
    () => {
        "state = 'pending' AND next_attempt_at <= {now}"
    };
}

/// Recordings a claim may take over: leased, and the lease expired with its worker gone
/// (the partial index `recordings_leased`).
macro_rules! expired_lease {
    () => {
        "state = 'archiving' AND lease_expires_at < {now}"
    };
}

/// Which recordings a claim takes: pending and due, or leased with an expired lease.
macro_rules! due_recordings {
    () => {
        concat!("(", due_pending!(), ") OR (", expired_lease!(), ")")
    };
}

/// What a claim sets, for lease token `$1` and lease `$2`. `state` and `lease_expiries`
/// on the right are the values before the claim. A claim starts an attempt, except one
/// that takes over an expired lease: that continues the attempt whose worker stopped
/// (a recording's attempts count only its own failures, never a worker's death).
macro_rules! claim_assignments {
    () => {
        "state = 'archiving', lease_owner = $1, lease_expires_at = {now} + $2, \
         attempts = attempts + CASE WHEN state = 'archiving' THEN 0 ELSE 1 END, \
         lease_expiries = lease_expiries + CASE WHEN state = 'archiving' THEN 1 ELSE 0 END, updated_at = {now}"
    };
}

/// The columns of a [`Claim`] (with `id`), as a claim returns them.
macro_rules! claim_columns {
    () => {
        "attempts, scope, site_url, host_email, create_time, format, size_bytes, listing, \
         (deleted_at_source IS NOT NULL OR purged_at_source IS NOT NULL) AS gone_at_source"
    };
}

/// What `retry` sets.
macro_rules! due_again {
    () => {
        "state = 'pending', attempts = 0, next_attempt_at = {now}, updated_at = {now}"
    };
}
pub(super) use {claim_assignments, claim_columns, due_again, due_pending, expired_lease};

/// The state a final attempt leaves: `lost_at_source` when Webex has been seen deleting
/// or purging the recording (it will not serve it again), else `state`.
macro_rules! lost_or {
    ($state:literal) => {
        concat!(
            "CASE WHEN deleted_at_source IS NOT NULL OR purged_at_source IS NOT NULL THEN 'lost_at_source' ELSE '",
            $state,
            "' END"
        )
    };
}

fn manifest_from_row(row: &impl Cells) -> StateResult<ManifestRow> {
    Ok(ManifestRow {
        seq: row.bigint("seq")?,
        day: row.text("day")?,
        part: row.int("part")?,
        key: row.text("key")?,
        sha256: row.text("sha256")?,
        prev_sha256: row.opt_text("prev_sha256")?,
        recordings: row.bigint("recordings")?,
        files: row.bigint("files")?,
        written_at: row.time("written_at")?,
        version_id: row.opt_text("version_id")?,
        retained_until: row.opt_time("retained_until")?,
    })
}

fn cursor_from_row(row: &impl Cells) -> StateResult<Cursor> {
    Ok(Cursor {
        scope: ScopeKey(row.text("scope")?),
        kind: CursorKind::parse(&row.text("kind")?)?,
        position: row.time("position")?,
        range_start: row.opt_time("range_start")?,
        range_end: row.opt_time("range_end")?,
        last_pass_at: row.opt_time("last_pass_at")?,
        last_success_at: row.opt_time("last_success_at")?,
        last_error: row.opt_text("last_error")?,
        items_listed: row.bigint("items_listed")?,
        items_quarantined: row.bigint("items_skipped")?,
    })
}

fn quarantine_from_row(row: &impl Cells) -> StateResult<QuarantineRow> {
    Ok(QuarantineRow {
        key: QuarantineKey(row.text("key")?),
        recording_id: row.opt_text("recording_id")?.map(RecordingId),
        scope: ScopeKey(row.text("scope")?),
        reason: row.text("reason")?,
        tracking_id: row.opt_text("tracking_id")?,
        first_seen_at: row.time("first_seen_at")?,
        last_seen_at: row.time("last_seen_at")?,
        seen_count: row.bigint("seen_count")?,
        check_note: row.opt_text("check_note")?,
    })
}

fn archived_row(row: &impl Cells) -> StateResult<ArchivedRow> {
    Ok(ArchivedRow {
        id: RecordingId(row.text("id")?),
        record: archived_from_row(row)?,
        legal_hold: row.bool("legal_hold")?,
    })
}

fn archived_from_row(row: &impl Cells) -> StateResult<ArchivedRecord> {
    Ok(ArchivedRecord {
        object_prefix: row.text("object_prefix")?,
        media_key: row.text("media_key")?,
        metadata_key: row.text("metadata_key")?,
        sha256: row.text("sha256")?,
        bytes: row.bigint("bytes")?,
        files: row.json("files")?,
        size_mismatch: row.bool("size_mismatch")?,
        archived_at: row.time("archived_at")?,
        metadata_version: None,
        retention: match (row.opt_text("retention_mode")?, row.opt_time("retained_until")?) {
            (Some(mode), Some(until)) => Some((mode, until)),
            _ => None,
        },
        metadata_retain_until: None,
    })
}

/// A claim from a row of [`claim_columns!`] and `id`.
pub(super) fn claim_from_row(row: &impl Cells, token: &str, recovered: bool) -> StateResult<Claim> {
    Ok(Claim {
        id: RecordingId(row.text("id")?),
        token: token.to_owned(),
        attempts: u32::try_from(row.int("attempts")?).unwrap_or(0),
        recovered,
        scope: ScopeKey(row.text("scope")?),
        site_url: row.opt_text("site_url")?,
        host_email: row.opt_text("host_email")?,
        create_time: row.time("create_time")?,
        format: row.opt_text("format")?,
        size_bytes: row.opt_bigint("size_bytes")?,
        listing: row.json("listing")?,
        gone_at_source: row.bool("gone_at_source")?,
    })
}

/// A recording's listing fields, as `$1` to `$10` of the row-by-row upsert (whose
/// update leaves `scope`, `$2`, as first listed).
fn listed_params(item: &ListedRecording) -> [Param<'_>; 10] {
    [
        Text(&item.id.0),
        Text(&item.scope.0),
        OptText(item.site_url.as_deref()),
        OptText(item.host_email.as_deref()),
        OptText(item.meeting_id.as_deref()),
        OptText(item.topic.as_deref()),
        OptText(item.format.as_deref()),
        Time(item.create_time),
        OptInt(item.size_bytes),
        Json(&item.listing),
    ]
}

/// What [`Backend::upsert_recordings`] did.
#[derive(Debug, Default)]
pub(super) struct Upserted {
    /// Counts.
    pub(super) recorded: PageRecorded,
    /// Ids of the recordings inserted.
    pub(super) new: Vec<String>,
    /// Ids of the recordings whose open quarantine entry was released.
    pub(super) released: Vec<String>,
}

impl Upserted {
    /// The `discovered` events of the new recordings, then the `quarantine_released`
    /// events of the entries released.
    pub(super) fn events(&self, items: &[&ListedRecording]) -> Vec<NewEvent> {
        let mut events = discovered_events(items, &self.new);
        events.extend(self.released.iter().map(|id| released_event(id, id, ReleasedHow::Listed)));
        events
    }
}

/// The `quarantine_released` event of entry `key` (of recording `id`), released `how`.
pub(super) fn released_event(id: &str, key: &str, how: ReleasedHow) -> NewEvent {
    NewEvent::of(id, "quarantine_released", serde_json::json!({"key": key, "how": how.as_str()}))
}

/// [`Backend::upsert_recordings`], one statement (or two) per item.
pub(super) async fn upsert_recordings_one_by_one<B: Backend>(
    s: &mut Session<B>,
    items: &[&ListedRecording],
) -> StateResult<Upserted> {
    let mut recorded = PageRecorded::default();
    let mut new = Vec::new();
    let mut released = Vec::new();
    // Most pages release nothing: skip a statement per item when no entry is open.
    let open =
        s.fetch_one(sql!("SELECT EXISTS (SELECT 1 FROM quarantine WHERE released_at IS NULL) AS open"), &[]).await?;
    let open = open.bool("open")?;
    for item in items {
        let listed = listed_params(item);
        let inserted = s
            .execute(
                sql!(
                    "INSERT INTO recordings (id, scope, site_url, host_email, meeting_id, topic, format, create_time, \
                         size_bytes, listing, discovered_at, last_listed_at, next_attempt_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, {now}, {now}, {now}, {now}) \
                     ON CONFLICT (id) DO NOTHING"
                ),
                &listed,
            )
            .await?;
        if inserted == 1 {
            recorded.new += 1;
            new.push(item.id.0.clone());
        } else {
            s.execute(
                sql!(
                    "UPDATE recordings SET site_url = $3, host_email = $4, meeting_id = $5, topic = $6, format = $7, \
                         create_time = $8, size_bytes = $9, listing = $10, last_listed_at = {now} \
                     WHERE id = $1"
                ),
                &listed,
            )
            .await?;
            recorded.refreshed += 1;
        }
        if !open {
            continue;
        }
        let done = s
            .execute(
                sql!(
                    "UPDATE quarantine SET released_at = {now}, released_how = $2 \
                     WHERE recording_id = $1 AND released_at IS NULL"
                ),
                &[Text(&item.id.0), Text(ReleasedHow::Listed.as_str())],
            )
            .await?;
        if done > 0 {
            recorded.released += done;
            released.push(item.id.0.clone());
        }
    }
    Ok(Upserted { recorded, new, released })
}

/// The `discovered` events of the recordings of `items` whose ids are `new`.
pub(super) fn discovered_events(items: &[&ListedRecording], new: &[String]) -> Vec<NewEvent> {
    let new: HashSet<&str> = new.iter().map(String::as_str).collect();
    items
        .iter()
        .filter(|item| new.contains(item.id.0.as_str()))
        .map(|item| {
            let listed_in = &item.listed_in;
            let mut data = serde_json::json!({
                "scope": item.scope.0,
                "create_time": item.create_time,
                "window_from": listed_in.window.map(|w| w.0),
                "window_to": listed_in.window.map(|w| w.1),
                "tracking_id": listed_in.tracking_id,
            });
            if let Some(via) = listed_in.via {
                data["via"] = serde_json::Value::from(via);
            }
            if let Some(status) = listed_in.status {
                data["status"] = serde_json::Value::from(status.as_str());
            }
            NewEvent::of(&item.id.0, "discovered", data)
        })
        .collect()
}

/// Records the first time each item of a deletion sweep's page was seen deleted or
/// purged at the source (one statement per item: such pages are listed once a day), with
/// its event. A recording that had already failed because Webex no longer had it
/// (`gone`) is now known lost at the source.
async fn mark_seen_at_source<B: Backend>(
    s: &mut Session<B>,
    items: &[&ListedRecording],
    events: &mut Vec<NewEvent>,
) -> StateResult<()> {
    for item in items {
        let Some(status) = item.listed_in.status else { continue };
        let id = Text(&item.id.0);
        let first = match status {
            SourceStatus::Deleted => {
                s.execute(
                    sql!(
                        "UPDATE recordings SET deleted_at_source = {now}, updated_at = {now} \
                         WHERE id = $1 AND deleted_at_source IS NULL"
                    ),
                    &[id],
                )
                .await?
            }
            SourceStatus::Purged => {
                s.execute(
                    sql!(
                        "UPDATE recordings SET purged_at_source = {now}, updated_at = {now} \
                         WHERE id = $1 AND purged_at_source IS NULL"
                    ),
                    &[id],
                )
                .await?
            }
        };
        if first == 0 {
            continue;
        }
        let window = item.listed_in.window;
        events.push(NewEvent::of(
            &item.id.0,
            match status {
                SourceStatus::Deleted => "deleted_at_source",
                SourceStatus::Purged => "purged_at_source",
            },
            serde_json::json!({
                "scope": item.scope.0,
                "window_from": window.map(|w| w.0),
                "window_to": window.map(|w| w.1),
                "tracking_id": item.listed_in.tracking_id,
            }),
        ));
        let lost = s
            .execute(
                sql!(
                    "UPDATE recordings SET state = 'lost_at_source', updated_at = {now} \
                     WHERE id = $1 AND state = 'failed' AND failure_reason = 'gone'"
                ),
                &[id],
            )
            .await?;
        if lost == 1 {
            events.push(NewEvent::of(
                &item.id.0,
                "lost_at_source",
                serde_json::json!({"reason": "gone", "previous_state": "failed", "status": status.as_str()}),
            ));
        }
    }
    Ok(())
}

/// The `claimed` event of a claim made with lease token `token` (`<owner>/<uuid>`).
pub(super) fn claimed_event(claim: &Claim, token: &str) -> NewEvent {
    let owner = token.rsplit_once('/').map_or(token, |(owner, _)| owner);
    NewEvent::of(
        &claim.id.0,
        "claimed",
        serde_json::json!({"owner": owner, "attempt": claim.attempts, "recovered": claim.recovered}),
    )
}

/// The `retried` event of a recording made due again by `by`.
pub(super) fn retried_event(id: &str, by: &Operator) -> NewEvent {
    NewEvent::of(id, "retried", serde_json::json!({"user": by.user, "host": by.host}))
}

/// The event of an attempt's end.
fn finished_event(id: &str, outcome: &Outcome) -> NewEvent {
    match outcome {
        Outcome::Archived(rec) => {
            // The store's version ids: null where the bucket is not versioned.
            let files: Vec<serde_json::Value> = rec
                .files
                .as_array()
                .map(|files| {
                    files
                        .iter()
                        .map(|f| {
                            serde_json::json!({
                                "kind": f.get("kind"),
                                "key": f.get("key"),
                                "sha256": f.get("sha256"),
                                "size": f.get("size"),
                                "version_id": f.get("version_id"),
                                "retain_until": f.get("retain_until"),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            NewEvent::of(
                id,
                "archived",
                serde_json::json!({
                    "object_prefix": rec.object_prefix,
                    "media_key": rec.media_key,
                    "metadata_key": rec.metadata_key,
                    "sha256": rec.sha256,
                    "bytes": rec.bytes,
                    "size_mismatch": rec.size_mismatch,
                    "files": files,
                    "metadata_version_id": rec.metadata_version,
                    "metadata_retain_until": rec.metadata_retain_until,
                    "retention": rec.retention.as_ref().map(|(mode, until)| serde_json::json!({"mode": mode, "retain_until": until})),
                }),
            )
        }
        Outcome::Retry { at, reason, message } => NewEvent::of(
            id,
            "attempt_failed",
            serde_json::json!({"reason": reason, "message": message, "next_attempt_at": at}),
        ),
        Outcome::Release { at } => NewEvent::of(id, "released", serde_json::json!({"next_attempt_at": at})),
        Outcome::Failed { reason, message } => {
            NewEvent::of(id, "failed", serde_json::json!({"reason": reason, "message": message}))
        }
        Outcome::NotDownloadable { reason } => {
            NewEvent::of(id, "not_downloadable", serde_json::json!({"reason": reason}))
        }
    }
}

/// Marks recording `$1`, leased with token `$2`, archived with what was stored (`$3` to
/// `$10`, [`archived_params`]).
fn finish_archived() -> &'static Statement {
    sql!(
        "UPDATE recordings SET state = 'archived', lease_owner = NULL, lease_expires_at = NULL, \
             object_prefix = $3, media_key = $4, metadata_key = $5, sha256 = $6, bytes = $7, \
             files = $8, size_mismatch = $9, archived_at = $10, failure_reason = NULL, \
             last_error = NULL, retention_mode = $11, retained_until = $12, updated_at = {now} \
         WHERE id = $1 AND lease_owner = $2 AND state = 'archiving'"
    )
}

/// The values of [`finish_archived`].
fn archived_params<'a>(id: Param<'a>, token: Param<'a>, rec: &'a ArchivedRecord) -> [Param<'a>; 12] {
    [
        id,
        token,
        Text(&rec.object_prefix),
        Text(&rec.media_key),
        Text(&rec.metadata_key),
        Text(&rec.sha256),
        Int(rec.bytes),
        Json(&rec.files),
        Bool(rec.size_mismatch),
        Time(rec.archived_at),
        OptText(rec.retention.as_ref().map(|(mode, _)| mode.as_str())),
        OptTime(rec.retention.as_ref().map(|(_, until)| *until)),
    ]
}

/// How many rows a final attempt's update changed (0 or 1); when the recording became
/// `lost_at_source` rather than `previous`, its event says so.
fn lost_instead(
    row: Option<&impl Cells>,
    event: &mut NewEvent,
    previous: &str,
    reason: &str,
    message: &str,
) -> StateResult<u64> {
    let Some(row) = row else { return Ok(0) };
    if row.text("state")? == ArchiveState::LostAtSource.as_str() {
        event.kind = "lost_at_source";
        event.data = serde_json::json!({"reason": reason, "message": message, "previous_state": previous});
    }
    Ok(1)
}

/// [`Backend::upsert_quarantine`], one statement per item.
pub(super) async fn upsert_quarantine_one_by_one<B: Backend>(
    s: &mut Session<B>,
    items: &[&QuarantinedItem],
) -> StateResult<()> {
    for item in items {
        s.execute(
            sql!(
                "INSERT INTO quarantine (key, recording_id, scope, reason, raw, tracking_id, first_seen_at, \
                     last_seen_at, released_at, released_how, window_from, window_to) \
                 SELECT $1, $2, $3, $4, $5, $6, {now}, {now}, \
                     CASE WHEN r.id IS NULL THEN NULL ELSE {now} END, CASE WHEN r.id IS NULL THEN NULL ELSE $7 END, \
                     $8, $9 \
                 FROM (SELECT 1) AS one LEFT JOIN recordings r ON r.id = $2 WHERE true \
                 ON CONFLICT (key) DO UPDATE SET recording_id = excluded.recording_id, scope = excluded.scope, \
                     reason = excluded.reason, raw = excluded.raw, tracking_id = excluded.tracking_id, \
                     window_from = COALESCE(excluded.window_from, quarantine.window_from), \
                     window_to = COALESCE(excluded.window_to, quarantine.window_to), \
                     last_seen_at = excluded.last_seen_at, seen_count = quarantine.seen_count + 1, \
                     released_at = CASE WHEN excluded.released_at IS NULL THEN NULL \
                         ELSE COALESCE(quarantine.released_at, excluded.released_at) END, \
                     released_how = CASE WHEN excluded.released_at IS NULL THEN NULL \
                         ELSE COALESCE(quarantine.released_how, excluded.released_how) END"
            ),
            &[
                Text(&item.key.0),
                OptText(item.recording_id.as_ref().map(|r| r.0.as_str())),
                Text(&item.scope.0),
                Text(&item.reason),
                Text(&item.raw),
                OptText(item.tracking_id.as_deref()),
                Text(ReleasedHow::AlreadyRecorded.as_str()),
                OptTime(item.window.map(|w| w.0)),
                OptTime(item.window.map(|w| w.1)),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Up to `$1` recordings a claim may take: those whose lease expired first (oldest
/// expiry first), then pending ones by when they are due. Each branch reads its partial
/// index in order and stops at the limit, so choosing costs the same with ten due
/// recordings or a million.
fn claimable() -> &'static Statement {
    sql!(
        "SELECT id, state FROM (SELECT id, state FROM recordings WHERE ",
        expired_lease!(),
        " ORDER BY lease_expires_at LIMIT $1) AS expired \
         UNION ALL \
         SELECT id, state FROM (SELECT id, state FROM recordings WHERE ",
        due_pending!(),
        " ORDER BY next_attempt_at LIMIT $1) AS pending \
         LIMIT $1"
    )
}

/// [`Backend::explain_claim`]: the plan of [`claimable`].
pub(super) async fn explain_claim<B: Backend>(s: &mut Session<B>) -> StateResult<Vec<String>> {
    s.explain(claimable(), &[Int(1)]).await
}

/// [`Backend::claim`] in a transaction: the due recordings, then one claim each (of
/// those still due).
pub(super) async fn claim_in_transaction<B: Backend>(
    backend: &B,
    token: &str,
    lease: Duration,
    limit: u32,
) -> StateResult<Vec<Claim>> {
    let mut s = Session::begin(backend).await?;
    let due = s.fetch_all(claimable(), &[Int(i64::from(limit))]).await?;
    let mut claims = Vec::with_capacity(due.len());
    for row in due {
        let id = row.text("id")?;
        let recovered = row.text("state")? == ArchiveState::Archiving.as_str();
        // Still due: without a lock on what was read (only SQLite's write lock gives
        // one), another claimer may have taken it since.
        let claimed = s
            .fetch_optional(
                sql!(
                    "UPDATE recordings SET ",
                    claim_assignments!(),
                    " WHERE id = $3 AND (",
                    due_recordings!(),
                    ") RETURNING id, ",
                    claim_columns!()
                ),
                &[Text(token), Interval(lease), Text(&id)],
            )
            .await?;
        if let Some(claimed) = claimed {
            claims.push(claim_from_row(&claimed, token, recovered)?);
        }
    }
    let events: Vec<NewEvent> = claims.iter().map(|c| claimed_event(c, token)).collect();
    events::append(&mut s, &events).await?;
    s.commit().await?;
    Ok(claims)
}

/// [`Backend::retry_ids`] in a transaction, one statement per id.
pub(super) async fn retry_ids_one_by_one<B: Backend>(
    backend: &B,
    ids: &[RecordingId],
    by: &Operator,
) -> StateResult<u64> {
    let mut s = Session::begin(backend).await?;
    let mut events = Vec::new();
    for id in ids {
        let done = s
            .execute(
                sql!(
                    "UPDATE recordings SET ",
                    due_again!(),
                    " WHERE id = $1 AND state IN ('failed', 'not_downloadable')"
                ),
                &[Text(&id.0)],
            )
            .await?;
        if done == 1 {
            events.push(retried_event(&id.0, by));
        }
    }
    events::append(&mut s, &events).await?;
    s.commit().await?;
    Ok(events.len() as u64)
}

/// Records a page's unreadable items and the `quarantined` events of those that were
/// not open before and are open now (an item seen again while open adds no event; one
/// whose recording is already recorded is released at once and adds none either).
async fn quarantine_with_events<B: Backend>(
    s: &mut Session<B>,
    unreadable: &[&QuarantinedItem],
    events: &mut Vec<NewEvent>,
) -> StateResult<()> {
    let mut was_open = HashSet::new();
    for item in unreadable {
        if s.fetch_optional(
            sql!("SELECT 1 AS one FROM quarantine WHERE key = $1 AND released_at IS NULL"),
            &[Text(&item.key.0)],
        )
        .await?
        .is_some()
        {
            was_open.insert(&item.key);
        }
    }
    B::upsert_quarantine(s, unreadable).await?;
    for item in unreadable {
        if was_open.contains(&item.key) {
            continue;
        }
        let now_open = s
            .fetch_optional(
                sql!("SELECT 1 AS one FROM quarantine WHERE key = $1 AND released_at IS NULL"),
                &[Text(&item.key.0)],
            )
            .await?
            .is_some();
        if now_open {
            events.push(NewEvent {
                recording_id: item.recording_id.as_ref().map(|r| r.0.clone()),
                kind: "quarantined",
                data: serde_json::json!({
                    "key": item.key.0,
                    "scope": item.scope.0,
                    "reason": item.reason,
                    "tracking_id": item.tracking_id,
                    "window_from": item.window.map(|w| w.0),
                    "window_to": item.window.map(|w| w.1),
                }),
            });
        }
    }
    Ok(())
}

/// Counts a page on its cursor and, when given, moves the cursor (compare-and-set).
async fn move_cursor<B: Backend>(
    s: &mut Session<B>,
    scope: &ScopeKey,
    owner: &str,
    quarantined: i64,
    listed: i64,
    cursor_move: Option<CursorMove>,
) -> StateResult<()> {
    match cursor_move {
        Some(m) => {
            let moved = s
                .execute(
                    sql!(
                        "UPDATE cursors SET position = $4, items_listed = items_listed + $5, \
                             items_skipped = items_skipped + $6 \
                         WHERE scope = $1 AND kind = $2 AND position = $3 AND lease_owner = $7"
                    ),
                    &[
                        Text(&scope.0),
                        Text(m.kind.as_str()),
                        Time(m.from),
                        Time(m.to),
                        Int(listed),
                        Int(quarantined),
                        Text(owner),
                    ],
                )
                .await?;
            if moved != 1 {
                return Err(StateError::LostCursor { scope: scope.clone() });
            }
        }
        None if quarantined > 0 || listed > 0 => {
            s.execute(
                sql!(
                    "UPDATE cursors SET items_listed = items_listed + $3, items_skipped = items_skipped + $4 \
                     WHERE scope = $1 AND lease_owner = $2"
                ),
                &[Text(&scope.0), Text(owner), Int(listed), Int(quarantined)],
            )
            .await?;
        }
        None => {}
    }
    Ok(())
}

/// The columns of a [`ReportRecording`], as a literal for `sql!`. `files` is JSON `null`
/// rather than SQL NULL when absent (one reader for both databases).
macro_rules! report_columns {
    () => {
        "SELECT id, state, create_time, site_url, host_email, COALESCE(files, 'null') AS files, media_key, \
             metadata_key, sha256, bytes, archived_at, deleted_at_source, purged_at_source, failure_reason, \
             retained_until, legal_hold \
         FROM recordings WHERE create_time >= $1 AND create_time < $2"
    };
}

/// The attestation report's snapshot of the period whose bounds are `period` (`$1`, `$2`).
struct Snapshot<B: Backend> {
    session: Session<B>,
    period: [Param<'static>; 2],
}

#[async_trait]
impl<B: Backend> ReportSnapshot for Snapshot<B> {
    async fn days(&mut self) -> StateResult<Vec<DayCounts>> {
        let rows = self
            .session
            .fetch_all(
                sql!(
                    "SELECT {create_date} AS day, count(*) AS listed, \
                         count(CASE WHEN state = 'archived' THEN 1 END) AS archived, \
                         CAST(COALESCE(sum(CASE WHEN state = 'archived' THEN COALESCE({files_size}, bytes) END), 0) \
                             AS BIGINT) AS bytes, \
                         count(CASE WHEN state = 'not_downloadable' THEN 1 END) AS not_downloadable, \
                         count(CASE WHEN state = 'failed' THEN 1 END) AS failed, \
                         count(CASE WHEN state IN ('pending', 'archiving') THEN 1 END) AS unfinished, \
                         count(CASE WHEN state = 'lost_at_source' THEN 1 END) AS lost_at_source, \
                         count(deleted_at_source) AS deleted_at_source, \
                         count(purged_at_source) AS purged_at_source, \
                         count(CASE WHEN legal_hold THEN 1 END) AS under_hold \
                     FROM recordings WHERE create_time >= $1 AND create_time < $2 \
                     GROUP BY day ORDER BY day"
                ),
                &self.period,
            )
            .await?;
        rows.iter()
            .map(|row| {
                let day = row.text("day")?;
                Ok(DayCounts {
                    date: NaiveDate::parse_from_str(&day, "%Y-%m-%d")
                        .map_err(|e| StateError::Corrupt(format!("the day {day:?} of a createTime: {e}")))?,
                    listed: row.bigint("listed")?,
                    archived: row.bigint("archived")?,
                    bytes: row.bigint("bytes")?,
                    not_downloadable: row.bigint("not_downloadable")?,
                    failed: row.bigint("failed")?,
                    unfinished: row.bigint("unfinished")?,
                    lost_at_source: row.bigint("lost_at_source")?,
                    deleted_at_source: row.bigint("deleted_at_source")?,
                    purged_at_source: row.bigint("purged_at_source")?,
                    under_hold: row.bigint("under_hold")?,
                })
            })
            .collect()
    }

    async fn quarantine(&mut self) -> StateResult<Vec<ReportQuarantine>> {
        let rows = self
            .session
            .fetch_all(
                sql!(
                    "SELECT key, scope, reason, raw, window_from, window_to, first_seen_at FROM quarantine \
                     WHERE released_at IS NULL \
                       AND (window_from IS NULL OR window_to IS NULL OR (window_from < $2 AND window_to > $1)) \
                     ORDER BY key"
                ),
                &self.period,
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ReportQuarantine {
                    key: QuarantineKey(row.text("key")?),
                    scope: ScopeKey(row.text("scope")?),
                    reason: row.text("reason")?,
                    raw: row.text("raw")?,
                    window: row.opt_time("window_from")?.zip(row.opt_time("window_to")?),
                    first_seen_at: row.time("first_seen_at")?,
                })
            })
            .collect()
    }

    fn recordings(&mut self, selection: ReportSelection) -> BoxStream<'_, StateResult<ReportRecording>> {
        let statement = match selection {
            ReportSelection::All => sql!(report_columns!(), " ORDER BY create_time, id"),
            ReportSelection::Gaps => {
                sql!(report_columns!(), " AND state IN ('pending', 'archiving', 'failed') ORDER BY create_time, id")
            }
            ReportSelection::FinalNotArchived => {
                sql!(report_columns!(), " AND state IN ('not_downloadable', 'lost_at_source') ORDER BY create_time, id")
            }
            ReportSelection::Final => sql!(
                report_columns!(),
                " AND state IN ('archived', 'not_downloadable', 'lost_at_source') ORDER BY create_time, id"
            ),
        };
        let Self { session, period } = self;
        session.fetch(statement, &period[..]).map(|row| row.and_then(|row| report_recording_from_row(&row))).boxed()
    }
}

/// A recording's report row from a row of [`report_columns!`].
fn report_recording_from_row(row: &impl Cells) -> StateResult<ReportRecording> {
    let id = RecordingId(row.text("id")?);
    let state = ArchiveState::parse(&row.text("state")?)?;
    let mut files = Vec::new();
    if state == ArchiveState::Archived {
        match row.json("files")? {
            serde_json::Value::Array(stored) => {
                for file in stored {
                    files.push(
                        serde_json::from_value::<ReportFile>(file)
                            .map_err(|e| StateError::Corrupt(format!("the stored files of recording {id}: {e}")))?,
                    );
                }
            }
            // Archived before `files` was kept: the recording file is all it has.
            _ => files.push(ReportFile {
                kind: crate::domain::FileKind::Recording.as_str().to_owned(),
                key: row.text("media_key")?,
                sha256: Some(row.text("sha256")?),
                size: Some(u64::try_from(row.bigint("bytes")?).unwrap_or(0)),
            }),
        }
        if let Some(key) = row.opt_text("metadata_key")? {
            files.push(ReportFile { kind: "metadata".to_owned(), key, sha256: None, size: None });
        }
    }
    Ok(ReportRecording {
        id,
        state,
        create_time: row.time("create_time")?,
        site_url: row.opt_text("site_url")?,
        host_email: row.opt_text("host_email")?,
        files,
        archived_at: row.opt_time("archived_at")?,
        deleted_at_source: row.opt_time("deleted_at_source")?,
        purged_at_source: row.opt_time("purged_at_source")?,
        reason: row.opt_text("failure_reason")?,
        retained_until: row.opt_time("retained_until")?,
        legal_hold: row.bool("legal_hold")?,
    })
}

/// Shared counts are taken at most once every this many times what the last count took.
const COUNT_COST_FACTOR: u32 = 50;

/// What [`count_recordings`] counts.
struct Counted {
    counts: BTreeMap<ArchiveState, i64>,
    bytes_archived: i64,
    due_now: i64,
    size_mismatches: i64,
    lease_expiries: i64,
    deleted_at_source: i64,
    purged_at_source: i64,
}

/// Recordings and their bytes per state, from the `(state, bytes)` index alone.
fn state_counts() -> &'static Statement {
    sql!("SELECT state, count(*) AS n, CAST(COALESCE(sum(bytes), 0) AS BIGINT) AS bytes FROM recordings GROUP BY state")
}

/// The facts `status` counts over a few rows, each from a partial index.
fn status_facts() -> &'static Statement {
    sql!(
        "SELECT (SELECT count(*) FROM recordings WHERE ",
        due_pending!(),
        ") AS due_now, \
             (SELECT count(*) FROM recordings WHERE size_mismatch) AS size_mismatches, \
             (SELECT CAST(COALESCE(sum(lease_expiries), 0) AS BIGINT) FROM recordings WHERE lease_expiries > 0) \
                 AS lease_expiries, \
             (SELECT count(*) FROM recordings WHERE deleted_at_source IS NOT NULL) AS deleted_at_source, \
             (SELECT count(*) FROM recordings WHERE purged_at_source IS NOT NULL) AS purged_at_source"
    )
}

/// The oldest recording neither archived nor final for a stated reason.
fn oldest_unarchived() -> &'static Statement {
    sql!(
        "SELECT id, create_time FROM recordings WHERE state IN ('pending', 'archiving', 'failed') \
         ORDER BY create_time LIMIT 1"
    )
}

/// The latest `$1` final failures.
fn recent_failures() -> &'static Statement {
    sql!(
        "SELECT id, state, failure_reason, last_error, attempts, updated_at FROM recordings \
         WHERE state IN ('failed', 'not_downloadable', 'lost_at_source') ORDER BY updated_at DESC LIMIT $1"
    )
}

/// When the next pending recording is due and the next lease expires: the first entry
/// of each partial index.
fn next_work() -> &'static Statement {
    sql!(
        "SELECT (SELECT min(next_attempt_at) FROM recordings WHERE state = 'pending') AS due_at, \
             (SELECT min(lease_expires_at) FROM recordings WHERE state = 'archiving') AS lease_expires_at"
    )
}

/// Counts the recordings: per state, and the facts of [`status_facts`].
async fn count_recordings<B: Backend>(s: &mut Session<B>) -> StateResult<Counted> {
    let mut counts: BTreeMap<ArchiveState, i64> = ArchiveState::ALL.iter().map(|s| (*s, 0)).collect();
    let mut bytes_archived = 0;
    for row in s.fetch_all(state_counts(), &[]).await? {
        let state = ArchiveState::parse(&row.text("state")?)?;
        counts.insert(state, row.bigint("n")?);
        if state == ArchiveState::Archived {
            bytes_archived = row.bigint("bytes")?;
        }
    }
    let facts = s.fetch_one(status_facts(), &[]).await?;
    Ok(Counted {
        counts,
        bytes_archived,
        due_now: facts.bigint("due_now")?,
        size_mismatches: facts.bigint("size_mismatches")?,
        lease_expiries: facts.bigint("lease_expiries")?,
        deleted_at_source: facts.bigint("deleted_at_source")?,
        purged_at_source: facts.bigint("purged_at_source")?,
    })
}

async fn read_next_work<B: Backend>(s: &mut Session<B>) -> StateResult<NextWork> {
    let row = s.fetch_one(next_work(), &[]).await?;
    Ok(NextWork { due_at: row.opt_time("due_at")?, lease_expires_at: row.opt_time("lease_expires_at")? })
}

async fn read_oldest_unarchived<B: Backend>(s: &mut Session<B>) -> StateResult<Option<(RecordingId, DateTime<Utc>)>> {
    s.fetch_optional(oldest_unarchived(), &[])
        .await?
        .map(|row| Ok((RecordingId(row.text("id")?), row.time("create_time")?)))
        .transpose()
}

async fn read_quarantined<B: Backend>(s: &mut Session<B>) -> StateResult<i64> {
    s.fetch_one(sql!("SELECT count(*) AS n FROM quarantine WHERE released_at IS NULL"), &[]).await?.bigint("n")
}

async fn read_oauth<B: Backend>(s: &mut Session<B>) -> StateResult<Option<TokenStatus>> {
    s.fetch_optional(
        sql!(
            "SELECT access_expires_at, refresh_expires_at, refreshes FROM oauth_tokens \
             WHERE refresh_token <> '' ORDER BY refreshed_at DESC LIMIT 1"
        ),
        &[],
    )
    .await?
    .map(|r| -> StateResult<TokenStatus> {
        Ok(TokenStatus {
            access_expires_at: r.opt_time("access_expires_at")?,
            refresh_expires_at: r.opt_time("refresh_expires_at")?,
            refreshes: r.bigint("refreshes")?,
        })
    })
    .transpose()
}

/// Which directories of the JSON array `$1` are some recording's `object_prefix`.
fn claimed_prefixes() -> &'static Statement {
    sql!("SELECT DISTINCT object_prefix FROM recordings WHERE object_prefix IN (SELECT value FROM {texts_of_1})")
}

/// The plan of one of the statements whose plans `tests/it` checks, with representative
/// values.
pub(super) async fn explain<B: Backend>(backend: &B, statement: Planned) -> StateResult<Vec<String>> {
    let mut s = Session::connect(backend).await?;
    let archived = ArchivedRecord {
        object_prefix: "2026/01/01/explain".into(),
        media_key: "2026/01/01/explain/recording.mp4".into(),
        metadata_key: "2026/01/01/explain/metadata.json".into(),
        sha256: "0".repeat(64),
        bytes: 1,
        files: serde_json::json!([]),
        size_mismatch: false,
        archived_at: Utc::now(),
        metadata_version: None,
        retention: None,
        metadata_retain_until: None,
    };
    match statement {
        Planned::Claim => B::explain_claim(&mut s).await,
        Planned::Finish => s.explain(finish_archived(), &archived_params(Text("explain"), Text("t"), &archived)).await,
        Planned::EventHead => s.explain(events::recording_heads(), &[Json(&serde_json::json!(["explain"]))]).await,
        Planned::StatusCounts => s.explain(state_counts(), &[]).await,
        Planned::StatusFacts => s.explain(status_facts(), &[]).await,
        Planned::OldestUnarchived => s.explain(oldest_unarchived(), &[]).await,
        Planned::RecentFailures => s.explain(recent_failures(), &[Int(20)]).await,
        Planned::NextWork => s.explain(next_work(), &[]).await,
        Planned::ClaimedPrefixes => {
            s.explain(claimed_prefixes(), &[Json(&serde_json::json!(["2026/01/01/explain", "2026/01/02/explain"]))])
                .await
        }
    }
}

async fn read_cursors<B: Backend>(s: &mut Session<B>) -> StateResult<Vec<Cursor>> {
    let rows = s.fetch_all(sql!("SELECT ", cursor_columns!(), " FROM cursors ORDER BY scope, kind"), &[]).await?;
    rows.iter().map(cursor_from_row).collect()
}

async fn read_deletion_sweeps<B: Backend>(s: &mut Session<B>) -> StateResult<Vec<DeletionSweep>> {
    let rows = s
        .fetch_all(
            sql!(
                "SELECT scope, status, last_pass_at, last_success_at, last_error, items_listed \
                 FROM deletion_sweeps ORDER BY scope, status"
            ),
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(DeletionSweep {
                scope: ScopeKey(row.text("scope")?),
                status: SourceStatus::parse(&row.text("status")?)?,
                last_pass_at: row.opt_time("last_pass_at")?,
                last_success_at: row.opt_time("last_success_at")?,
                last_error: row.opt_text("last_error")?,
                items_listed: row.bigint("items_listed")?,
            })
        })
        .collect()
}

async fn read_paused_until<B: Backend>(s: &mut Session<B>) -> StateResult<DateTime<Utc>> {
    s.fetch_one(sql!("SELECT paused_until FROM rate_limit WHERE id = 1"), &[]).await?.time("paused_until")
}

/// Runs one statement on a pooled connection (it commits on its own).
async fn execute<B: Backend>(backend: &B, statement: &'static Statement, params: &[Param<'_>]) -> StateResult<u64> {
    Session::connect(backend).await?.execute(statement, params).await
}

/// Runs one query on a pooled connection; every row.
async fn fetch_all<B: Backend>(
    backend: &B,
    statement: &'static Statement,
    params: &[Param<'_>],
) -> StateResult<Vec<Row<B>>> {
    Session::connect(backend).await?.fetch_all(statement, params).await
}

/// Runs one query on a pooled connection that returns a row.
async fn fetch_one<B: Backend>(
    backend: &B,
    statement: &'static Statement,
    params: &[Param<'_>],
) -> StateResult<Row<B>> {
    Session::connect(backend).await?.fetch_one(statement, params).await
}

/// Runs one query on a pooled connection; its first row, if any.
async fn fetch_optional<B: Backend>(
    backend: &B,
    statement: &'static Statement,
    params: &[Param<'_>],
) -> StateResult<Option<Row<B>>> {
    Session::connect(backend).await?.fetch_optional(statement, params).await
}

#[async_trait]
impl<B: Backend> StateStore for B {
    async fn migrate(&self) -> StateResult<()> {
        self.run_migrations().await
    }

    async fn ping(&self) -> StateResult<()> {
        execute(self, sql!("SELECT 1"), &[]).await?;
        Ok(())
    }

    async fn acquire_cursor(
        &self,
        scope: &ScopeKey,
        kind: CursorKind,
        owner: &str,
        ttl: Duration,
        initial: DateTime<Utc>,
        range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> StateResult<Option<Cursor>> {
        let (range_start, range_end) = range.map_or((None, None), |(s, e)| (Some(s), Some(e)));
        let mut s = Session::begin(self).await?;
        s.execute(
            sql!(
                "INSERT INTO cursors (scope, kind, position, range_start, range_end) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (scope, kind) DO NOTHING"
            ),
            &[Text(&scope.0), Text(kind.as_str()), Time(initial), OptTime(range_start), OptTime(range_end)],
        )
        .await?;
        // A different backfill range restarts the cursor at the new start.
        let row = s
            .fetch_optional(
                sql!(
                    "UPDATE cursors SET lease_owner = $3, lease_expires_at = {now} + $4, last_pass_at = {now}, \
                         position = CASE WHEN $5 IS NOT NULL \
                             AND (range_start IS DISTINCT FROM $5 OR range_end IS DISTINCT FROM $6) \
                             THEN $7 ELSE position END, \
                         range_start = COALESCE($5, range_start), range_end = COALESCE($6, range_end) \
                     WHERE scope = $1 AND kind = $2 \
                       AND (lease_owner IS NULL OR lease_owner = $3 OR lease_expires_at < {now}) \
                     RETURNING ",
                    cursor_columns!()
                ),
                &[
                    Text(&scope.0),
                    Text(kind.as_str()),
                    Text(owner),
                    Interval(ttl),
                    OptTime(range_start),
                    OptTime(range_end),
                    Time(initial),
                ],
            )
            .await?;
        let cursor = row.as_ref().map(cursor_from_row).transpose()?;
        s.commit().await?;
        Ok(cursor)
    }

    async fn renew_cursor(&self, scope: &ScopeKey, kind: CursorKind, owner: &str, ttl: Duration) -> StateResult<bool> {
        let renewed = execute(
            self,
            sql!(
                "UPDATE cursors SET lease_expires_at = {now} + $4 \
                 WHERE scope = $1 AND kind = $2 AND lease_owner = $3"
            ),
            &[Text(&scope.0), Text(kind.as_str()), Text(owner), Interval(ttl)],
        )
        .await?;
        Ok(renewed == 1)
    }

    async fn release_cursor(
        &self,
        scope: &ScopeKey,
        kind: CursorKind,
        owner: &str,
        outcome: Result<(), String>,
    ) -> StateResult<()> {
        let error = outcome.err();
        execute(
            self,
            sql!(
                "UPDATE cursors SET lease_owner = NULL, lease_expires_at = NULL, last_error = $4, \
                     last_success_at = CASE WHEN $4 IS NULL THEN {now} ELSE last_success_at END \
                 WHERE scope = $1 AND kind = $2 AND lease_owner = $3"
            ),
            &[Text(&scope.0), Text(kind.as_str()), Text(owner), OptText(error.as_deref())],
        )
        .await?;
        Ok(())
    }

    async fn record_page(
        &self,
        scope: &ScopeKey,
        owner: &str,
        items: &[ListedRecording],
        quarantined: &[QuarantinedItem],
        cursor_move: Option<CursorMove>,
    ) -> StateResult<PageRecorded> {
        let items = unique_by_id(items);
        let unreadable = unique_by_key(quarantined);
        let mut s = Session::begin(self).await?;
        let mut events = Vec::new();
        let recorded = if items.is_empty() {
            PageRecorded::default()
        } else {
            let upserted = B::upsert_recordings(&mut s, &items).await?;
            events.extend(upserted.events(&items));
            mark_seen_at_source(&mut s, &items, &mut events).await?;
            upserted.recorded
        };
        if !unreadable.is_empty() {
            quarantine_with_events(&mut s, &unreadable, &mut events).await?;
        }
        // A deletion sweep's items are not the cursor's: it counts what its windows listed.
        let listed = items.iter().filter(|i| i.listed_in.status.is_none()).count() as i64;
        move_cursor(&mut s, scope, owner, quarantined.len() as i64, listed, cursor_move).await?;
        events::append(&mut s, &events).await?;
        s.commit().await?;
        Ok(recorded)
    }

    async fn quarantined(
        &self,
        scope: &ScopeKey,
        after: Option<&QuarantineKey>,
        limit: u32,
    ) -> StateResult<Vec<QuarantineEntry>> {
        let rows = fetch_all(
            self,
            sql!(
                "SELECT ",
                quarantine_columns!(),
                ", raw, window_from, window_to FROM quarantine \
                 WHERE scope = $1 AND released_at IS NULL AND ($2 IS NULL OR key > $2) \
                 ORDER BY key LIMIT $3"
            ),
            &[Text(&scope.0), OptText(after.map(|k| k.0.as_str())), Int(i64::from(limit))],
        )
        .await?;
        rows.iter()
            .map(|row| {
                let window = row.opt_time("window_from")?.zip(row.opt_time("window_to")?);
                Ok(QuarantineEntry { row: quarantine_from_row(row)?, raw: row.text("raw")?, window })
            })
            .collect()
    }

    async fn release_quarantined(
        &self,
        key: &QuarantineKey,
        recording: Option<&ListedRecording>,
        how: ReleasedHow,
    ) -> StateResult<PageRecorded> {
        let mut s = Session::begin(self).await?;
        // The entry first, so that it is released the way the caller says.
        let released = s
            .execute(
                sql!(
                    "UPDATE quarantine SET released_at = {now}, released_how = $2 \
                     WHERE key = $1 AND released_at IS NULL"
                ),
                &[Text(&key.0), Text(how.as_str())],
            )
            .await?;
        let mut events = Vec::new();
        if released > 0 {
            let id =
                recording.map(|r| r.id.0.clone()).or_else(|| (!key.0.starts_with("sha256:")).then(|| key.0.clone()));
            events.push(match id {
                Some(id) => released_event(&id, &key.0, how),
                None => NewEvent {
                    recording_id: None,
                    kind: "quarantine_released",
                    data: serde_json::json!({"key": key.0, "how": how.as_str()}),
                },
            });
        }
        let mut recorded = match recording {
            Some(recording) => {
                let upserted = B::upsert_recordings(&mut s, &[recording]).await?;
                events.extend(upserted.events(&[recording]));
                upserted.recorded
            }
            None => PageRecorded::default(),
        };
        events::append(&mut s, &events).await?;
        recorded.released += released;
        s.commit().await?;
        Ok(recorded)
    }

    async fn note_quarantine_check(&self, key: &QuarantineKey, note: &str) -> StateResult<()> {
        execute(
            self,
            sql!("UPDATE quarantine SET checked_at = {now}, check_note = $2 WHERE key = $1"),
            &[Text(&key.0), Text(note)],
        )
        .await?;
        Ok(())
    }

    async fn cursors(&self) -> StateResult<Vec<Cursor>> {
        read_cursors(&mut Session::connect(self).await?).await
    }

    async fn claim_due(&self, owner: &str, lease: Duration, limit: u32) -> StateResult<Vec<Claim>> {
        let token = format!("{owner}/{}", uuid::Uuid::new_v4());
        self.claim(&token, lease, limit).await
    }

    async fn renew_lease(&self, id: &RecordingId, token: &str, lease: Duration) -> StateResult<bool> {
        let renewed = execute(
            self,
            sql!(
                "UPDATE recordings SET lease_expires_at = {now} + $3 \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'archiving'"
            ),
            &[Text(&id.0), Text(token), Interval(lease)],
        )
        .await?;
        Ok(renewed == 1)
    }

    async fn set_object_prefix(&self, id: &RecordingId, token: &str, prefix: &str) -> StateResult<bool> {
        let set = execute(
            self,
            sql!(
                "UPDATE recordings SET object_prefix = $3 \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'archiving'"
            ),
            &[Text(&id.0), Text(token), Text(prefix)],
        )
        .await?;
        Ok(set == 1)
    }

    async fn finish(&self, id: &RecordingId, token: &str, outcome: &Outcome) -> StateResult<bool> {
        let mut s = Session::begin(self).await?;
        let mut event = finished_event(&id.0, outcome);
        let (id, token) = (Text(&id.0), Text(token));
        let done = match outcome {
            Outcome::Archived(rec) => s.execute(finish_archived(), &archived_params(id, token, rec)).await?,
            Outcome::Retry { at, reason, message } => {
                s.execute(
                    sql!(
                        "UPDATE recordings SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL, \
                             next_attempt_at = $3, failure_reason = $4, last_error = $5, updated_at = {now} \
                         WHERE id = $1 AND lease_owner = $2 AND state = 'archiving'"
                    ),
                    &[id, token, Time(*at), Text(reason), Text(message)],
                )
                .await?
            }
            Outcome::Release { at } => {
                s.execute(
                    sql!(
                        "UPDATE recordings SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL, \
                             next_attempt_at = $3, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
                             updated_at = {now} \
                         WHERE id = $1 AND lease_owner = $2 AND state = 'archiving'"
                    ),
                    &[id, token, Time(*at)],
                )
                .await?
            }
            Outcome::Failed { reason, message } => {
                let row = s
                    .fetch_optional(
                        sql!(
                            "UPDATE recordings SET state = ",
                            lost_or!("failed"),
                            ", lease_owner = NULL, lease_expires_at = NULL, failure_reason = $3, last_error = $4, \
                                 updated_at = {now} \
                             WHERE id = $1 AND lease_owner = $2 AND state = 'archiving' RETURNING state"
                        ),
                        &[id, token, Text(reason), Text(message)],
                    )
                    .await?;
                lost_instead(row.as_ref(), &mut event, "failed", reason, message)?
            }
            Outcome::NotDownloadable { reason } => {
                let row = s
                    .fetch_optional(
                        sql!(
                            "UPDATE recordings SET state = ",
                            lost_or!("not_downloadable"),
                            ", lease_owner = NULL, lease_expires_at = NULL, failure_reason = 'not_downloadable', \
                                 last_error = $3, updated_at = {now} \
                             WHERE id = $1 AND lease_owner = $2 AND state = 'archiving' RETURNING state"
                        ),
                        &[id, token, Text(reason)],
                    )
                    .await?;
                lost_instead(row.as_ref(), &mut event, "not_downloadable", "not_downloadable", reason)?
            }
        };
        if done == 1 {
            events::append(&mut s, std::slice::from_ref(&event)).await?;
        }
        s.commit().await?;
        Ok(done == 1)
    }

    async fn retry(&self, ids: Option<&[RecordingId]>, by: &Operator) -> StateResult<u64> {
        match ids {
            None => {
                let mut s = Session::begin(self).await?;
                let rows = s
                    .fetch_all(
                        sql!("UPDATE recordings SET ", due_again!(), " WHERE state = 'failed' RETURNING id"),
                        &[],
                    )
                    .await?;
                let events =
                    rows.iter().map(|row| Ok(retried_event(&row.text("id")?, by))).collect::<StateResult<Vec<_>>>()?;
                events::append(&mut s, &events).await?;
                s.commit().await?;
                Ok(events.len() as u64)
            }
            Some(ids) => self.retry_ids(ids, by).await,
        }
    }

    async fn deletion_sweeps(&self) -> StateResult<Vec<DeletionSweep>> {
        read_deletion_sweeps(&mut Session::connect(self).await?).await
    }

    async fn note_deletion_sweep(
        &self,
        scope: &ScopeKey,
        status: SourceStatus,
        started: DateTime<Utc>,
        end: &SweepEnd,
    ) -> StateResult<()> {
        let (scope, status) = (Text(&scope.0), Text(status.as_str()));
        match end {
            SweepEnd::Done { items } => {
                execute(
                    self,
                    sql!(
                        "INSERT INTO deletion_sweeps (scope, status, last_pass_at, last_success_at, last_error, \
                             items_listed) VALUES ($1, $2, $3, {now}, NULL, $4) \
                         ON CONFLICT (scope, status) DO UPDATE SET last_pass_at = $3, last_success_at = {now}, \
                             last_error = NULL, items_listed = $4"
                    ),
                    &[scope, status, Time(started), Int(*items)],
                )
                .await?
            }
            SweepEnd::NotPermitted(why) => {
                execute(
                    self,
                    sql!(
                        "INSERT INTO deletion_sweeps (scope, status, last_pass_at, last_success_at, last_error) \
                             VALUES ($1, $2, $3, {now}, $4) \
                         ON CONFLICT (scope, status) DO UPDATE SET last_pass_at = $3, last_success_at = {now}, \
                             last_error = $4, items_listed = 0"
                    ),
                    &[scope, status, Time(started), Text(why)],
                )
                .await?
            }
            SweepEnd::Failed(why) => {
                execute(
                    self,
                    sql!(
                        "INSERT INTO deletion_sweeps (scope, status, last_pass_at, last_error) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (scope, status) DO UPDATE SET last_pass_at = $3, last_error = $4"
                    ),
                    &[scope, status, Time(started), Text(why)],
                )
                .await?
            }
        };
        Ok(())
    }

    async fn lock_manifests(&self, owner: &str, ttl: Duration) -> StateResult<bool> {
        let locked = execute(
            self,
            sql!(
                "UPDATE manifest_lock SET owner = $1, expires_at = {now} + $2 \
                 WHERE id = 1 AND (owner IS NULL OR owner = $1 OR expires_at < {now})"
            ),
            &[Text(owner), Interval(ttl)],
        )
        .await?;
        Ok(locked == 1)
    }

    async fn unlock_manifests(&self, owner: &str) -> StateResult<()> {
        execute(
            self,
            sql!("UPDATE manifest_lock SET owner = NULL, expires_at = NULL WHERE id = 1 AND owner = $1"),
            &[Text(owner)],
        )
        .await?;
        Ok(())
    }

    async fn manifests(&self, after: i64, limit: u32) -> StateResult<Vec<ManifestRow>> {
        let rows = fetch_all(
            self,
            sql!("SELECT * FROM manifests WHERE seq > $1 ORDER BY seq LIMIT $2"),
            &[Int(after), Int(i64::from(limit))],
        )
        .await?;
        rows.iter().map(manifest_from_row).collect()
    }

    async fn last_manifest(&self) -> StateResult<Option<ManifestRow>> {
        let row = fetch_optional(self, sql!("SELECT * FROM manifests ORDER BY seq DESC LIMIT 1"), &[]).await?;
        row.as_ref().map(manifest_from_row).transpose()
    }

    async fn next_unmanifested(
        &self,
        from: DateTime<Utc>,
        before: DateTime<Utc>,
    ) -> StateResult<Option<DateTime<Utc>>> {
        let row = fetch_one(
            self,
            sql!(
                "SELECT min(create_time) AS t FROM recordings \
                 WHERE state = 'archived' AND manifest_seq IS NULL AND create_time >= $1 AND create_time < $2"
            ),
            &[Time(from), Time(before)],
        )
        .await?;
        row.opt_time("t")
    }

    async fn unsettled(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StateResult<bool> {
        let row = fetch_one(
            self,
            sql!(
                "SELECT EXISTS (SELECT 1 FROM recordings WHERE state IN ('pending', 'archiving') \
                     AND create_time >= $1 AND create_time < $2) AS unsettled"
            ),
            &[Time(from), Time(to)],
        )
        .await?;
        row.bool("unsettled")
    }

    async fn unmanifested(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StateResult<Vec<Unmanifested>> {
        let rows = fetch_all(
            self,
            sql!(
                "SELECT id, create_time, files, metadata_key FROM recordings \
                 WHERE state = 'archived' AND manifest_seq IS NULL AND create_time >= $1 AND create_time < $2 \
                 ORDER BY id"
            ),
            &[Time(from), Time(to)],
        )
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Unmanifested {
                    id: RecordingId(row.text("id")?),
                    create_time: row.time("create_time")?,
                    files: row.json("files")?,
                    metadata_key: row.text("metadata_key")?,
                })
            })
            .collect()
    }

    async fn manifest_parts(&self, day: &str) -> StateResult<i64> {
        fetch_one(self, sql!("SELECT count(*) AS n FROM manifests WHERE day = $1"), &[Text(day)]).await?.bigint("n")
    }

    async fn record_manifest(&self, manifest: &ManifestRow, ids: &[RecordingId]) -> StateResult<i64> {
        let mut s = Session::begin(self).await?;
        let seq =
            s.fetch_one(sql!("SELECT COALESCE(max(seq), 0) + 1 AS seq FROM manifests"), &[]).await?.bigint("seq")?;
        s.execute(
            sql!(
                "INSERT INTO manifests (seq, day, part, key, sha256, prev_sha256, recordings, files, written_at, \
                     version_id, retained_until) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ),
            &[
                Int(seq),
                Text(&manifest.day),
                Int(manifest.part),
                Text(&manifest.key),
                Text(&manifest.sha256),
                OptText(manifest.prev_sha256.as_deref()),
                Int(manifest.recordings),
                Int(manifest.files),
                Time(manifest.written_at),
                OptText(manifest.version_id.as_deref()),
                OptTime(manifest.retained_until),
            ],
        )
        .await?;
        for id in ids {
            s.execute(sql!("UPDATE recordings SET manifest_seq = $2 WHERE id = $1"), &[Text(&id.0), Int(seq)]).await?;
        }
        let event = NewEvent {
            recording_id: None,
            kind: "manifest_written",
            data: serde_json::json!({
                "key": manifest.key,
                "day": manifest.day,
                "part": manifest.part,
                "sha256": manifest.sha256,
                "prev_sha256": manifest.prev_sha256,
                "recordings": manifest.recordings,
                "files": manifest.files,
                "version_id": manifest.version_id,
                "retain_until": manifest.retained_until,
            }),
        };
        events::append(&mut s, &[event]).await?;
        s.commit().await?;
        Ok(seq)
    }

    async fn record_verification(
        &self,
        summary: serde_json::Value,
        problems: &[(RecordingId, serde_json::Value)],
    ) -> StateResult<()> {
        let mut events = vec![NewEvent { recording_id: None, kind: "verified", data: summary }];
        events.extend(problems.iter().map(|(id, data)| NewEvent::of(&id.0, "verify_problem", data.clone())));
        let mut s = Session::begin(self).await?;
        events::append(&mut s, &events).await?;
        s.commit().await?;
        Ok(())
    }

    async fn history(&self, id: &RecordingId) -> StateResult<Vec<Event>> {
        let rows = fetch_all(
            self,
            sql!("SELECT ", event_columns!(), " FROM events WHERE recording_id = $1 ORDER BY seq"),
            &[Text(&id.0)],
        )
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn events_after(&self, after: i64, limit: u32) -> StateResult<Vec<Event>> {
        let rows = fetch_all(
            self,
            sql!("SELECT ", event_columns!(), " FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"),
            &[Int(after), Int(i64::from(limit))],
        )
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn events_by_recording_after(
        &self,
        after: Option<(&RecordingId, i64)>,
        limit: u32,
    ) -> StateResult<Vec<Event>> {
        let rows = match after {
            None => {
                fetch_all(
                    self,
                    sql!(
                        "SELECT ",
                        event_columns!(),
                        " FROM events WHERE recording_id IS NOT NULL ORDER BY recording_id, seq LIMIT $1"
                    ),
                    &[Int(i64::from(limit))],
                )
                .await?
            }
            Some((id, seq)) => {
                fetch_all(
                    self,
                    sql!(
                        "SELECT ",
                        event_columns!(),
                        " FROM events WHERE recording_id IS NOT NULL AND (recording_id, seq) > ($1, $2) \
                         ORDER BY recording_id, seq LIMIT $3"
                    ),
                    &[Text(&id.0), Int(seq), Int(i64::from(limit))],
                )
                .await?
            }
        };
        rows.iter().map(event_from_row).collect()
    }

    async fn events_head(&self) -> StateResult<(i64, Option<String>)> {
        let row = fetch_one(self, sql!("SELECT seq, sha256 FROM events_head WHERE id = 1"), &[]).await?;
        Ok((row.bigint("seq")?, row.opt_text("sha256")?))
    }

    async fn status(&self, failures: u32) -> StateResult<StatusReport> {
        let mut s = Session::connect(self).await?;
        let mut report = StatusReport::default();
        let counted = count_recordings(&mut s).await?;
        report.counts = counted.counts;
        report.bytes_archived = counted.bytes_archived;
        report.deleted_at_source = counted.deleted_at_source;
        report.purged_at_source = counted.purged_at_source;
        report.due_now = counted.due_now;
        report.size_mismatches = counted.size_mismatches;
        report.lease_expiries = counted.lease_expiries;
        // Legal holds are few: counted from their partial index.
        report.under_hold =
            s.fetch_one(sql!("SELECT count(*) AS n FROM recordings WHERE legal_hold"), &[]).await?.bigint("n")?;
        report.next_due_at = read_next_work(&mut s).await?.due_at;
        report.oldest_unarchived = read_oldest_unarchived(&mut s).await?;
        report.cursors = read_cursors(&mut s).await?;
        for row in s.fetch_all(recent_failures(), &[Int(i64::from(failures))]).await? {
            report.recent_failures.push(FailureRow {
                id: RecordingId(row.text("id")?),
                state: ArchiveState::parse(&row.text("state")?)?,
                reason: row.opt_text("failure_reason")?,
                message: row.opt_text("last_error")?,
                attempts: row.int("attempts")?,
                updated_at: row.time("updated_at")?,
            });
        }
        report.quarantined = read_quarantined(&mut s).await?;
        let rows = s
            .fetch_all(
                sql!(
                    "SELECT ",
                    quarantine_columns!(),
                    " FROM quarantine WHERE released_at IS NULL ORDER BY last_seen_at DESC, key LIMIT $1"
                ),
                &[Int(i64::from(failures))],
            )
            .await?;
        report.recent_quarantine = rows.iter().map(quarantine_from_row).collect::<StateResult<_>>()?;
        report.deletion_sweeps = read_deletion_sweeps(&mut s).await?;
        let paused = read_paused_until(&mut s).await?;
        report.paused_until = (paused > Utc::now()).then_some(paused);
        report.oauth = read_oauth(&mut s).await?;
        Ok(report)
    }

    async fn next_work(&self) -> StateResult<NextWork> {
        read_next_work(&mut Session::connect(self).await?).await
    }

    async fn refresh_counts(&self, owner: &str, every: Duration, ttl: Duration) -> StateResult<bool> {
        let mut s = Session::connect(self).await?;
        let took = s.fetch_one(sql!("SELECT count_ms FROM recording_counts WHERE id = 1"), &[]).await?;
        let took = Duration::from_millis(u64::try_from(took.bigint("count_ms")?).unwrap_or(0));
        let every = every.max(took.saturating_mul(COUNT_COST_FACTOR));
        // Whoever finds the counts stale and nobody counting takes the count; the others
        // skip it rather than wait (a single short statement: no lock outlives it).
        let Some(taken) = s
            .fetch_optional(
                sql!(
                    "UPDATE recording_counts SET counting_owner = $1, counting_until = {now} + $2 \
                     WHERE id = 1 AND (counted_at IS NULL OR counted_at <= {now} - $3) \
                       AND (counting_until IS NULL OR counting_until < {now}) \
                     RETURNING {now} AS at"
                ),
                &[Text(owner), Interval(ttl), Interval(every)],
            )
            .await?
        else {
            return Ok(false);
        };
        let at = taken.time("at")?;
        let started = std::time::Instant::now();
        let counted = count_recordings(&mut s).await?;
        let took = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let counts: serde_json::Map<String, serde_json::Value> =
            counted.counts.iter().map(|(state, n)| (state.as_str().to_owned(), (*n).into())).collect();
        let stored = s
            .execute(
                sql!(
                    "UPDATE recording_counts SET counted_at = $2, counts = $3, deleted_at_source = $4, \
                         purged_at_source = $5, count_ms = $6, counting_owner = NULL, counting_until = NULL \
                     WHERE id = 1 AND counting_owner = $1"
                ),
                &[
                    Text(owner),
                    Time(at),
                    Json(&serde_json::Value::Object(counts)),
                    Int(counted.deleted_at_source),
                    Int(counted.purged_at_source),
                    Int(took),
                ],
            )
            .await?;
        Ok(stored == 1)
    }

    async fn gauges(&self) -> StateResult<Gauges> {
        let mut s = Session::connect(self).await?;
        let row = s
            .fetch_one(
                sql!(
                    "SELECT counted_at, counts, deleted_at_source, purged_at_source FROM recording_counts WHERE id = 1"
                ),
                &[],
            )
            .await?;
        let counts = match row.opt_time("counted_at")? {
            None => None,
            Some(counted_at) => {
                let mut counts: BTreeMap<ArchiveState, i64> = ArchiveState::ALL.iter().map(|s| (*s, 0)).collect();
                let stored = row.json("counts")?;
                for (state, n) in stored.as_object().into_iter().flatten() {
                    let n = n.as_i64().ok_or_else(|| StateError::Corrupt(format!("the shared count of {state}")))?;
                    counts.insert(ArchiveState::parse(state)?, n);
                }
                Some(SharedCounts {
                    counted_at,
                    counts,
                    deleted_at_source: row.bigint("deleted_at_source")?,
                    purged_at_source: row.bigint("purged_at_source")?,
                })
            }
        };
        Ok(Gauges {
            counts,
            oldest_unarchived: read_oldest_unarchived(&mut s).await?,
            quarantined: read_quarantined(&mut s).await?,
            cursors: read_cursors(&mut s).await?,
            oauth: read_oauth(&mut s).await?,
        })
    }

    async fn archived(&self, sample: Option<u32>) -> StateResult<Vec<ArchivedRow>> {
        let mut s = Session::connect(self).await?;
        let rows = match sample {
            None => s.fetch_all(sql!("SELECT * FROM recordings WHERE state = 'archived' ORDER BY id"), &[]).await?,
            Some(n) => {
                s.fetch_all(
                    sql!("SELECT * FROM recordings WHERE state = 'archived' ORDER BY random() LIMIT $1"),
                    &[Int(i64::from(n))],
                )
                .await?
            }
        };
        rows.iter().map(archived_row).collect()
    }

    async fn archived_one(&self, id: &RecordingId) -> StateResult<Option<ArchivedRow>> {
        let row =
            fetch_optional(self, sql!("SELECT * FROM recordings WHERE id = $1 AND state = 'archived'"), &[Text(&id.0)])
                .await?;
        row.as_ref().map(archived_row).transpose()
    }

    async fn record_legal_hold(&self, id: &RecordingId, change: &HoldChange) -> StateResult<bool> {
        let mut s = Session::begin(self).await?;
        let who = format!("{}@{}", change.by.user, change.by.host);
        let done = s
            .execute(
                sql!(
                    "UPDATE recordings SET legal_hold = $2, legal_hold_at = {now}, legal_hold_by = $3, \
                         legal_hold_reason = $4, updated_at = {now} \
                     WHERE id = $1 AND state = 'archived'"
                ),
                &[Text(&id.0), Bool(change.on), Text(&who), Text(&change.reason)],
            )
            .await?;
        if done == 1 {
            let kind = if change.on { "legal_hold_set" } else { "legal_hold_removed" };
            let data = serde_json::json!({
                "reason": change.reason,
                "user": change.by.user,
                "host": change.by.host,
                "versions": change.versions,
            });
            events::append(&mut s, &[NewEvent::of(&id.0, kind, data)]).await?;
        }
        s.commit().await?;
        Ok(done == 1)
    }

    async fn holds(&self) -> StateResult<Vec<HoldRow>> {
        let rows = fetch_all(
            self,
            sql!(
                "SELECT id, legal_hold_at, legal_hold_by, legal_hold_reason FROM recordings \
                 WHERE legal_hold ORDER BY id"
            ),
            &[],
        )
        .await?;
        rows.iter()
            .map(|row| {
                Ok(HoldRow {
                    id: RecordingId(row.text("id")?),
                    since: row.opt_time("legal_hold_at")?,
                    by: row.opt_text("legal_hold_by")?,
                    reason: row.opt_text("legal_hold_reason")?,
                })
            })
            .collect()
    }

    async fn record_retention(&self, id: &RecordingId, change: &RetentionChange) -> StateResult<bool> {
        let mut s = Session::begin(self).await?;
        let done = s
            .execute(
                sql!(
                    "UPDATE recordings SET retention_mode = $2, retained_until = $3, files = $4, updated_at = {now} \
                     WHERE id = $1 AND state = 'archived'"
                ),
                &[Text(&id.0), Text(&change.mode), Time(change.until), Json(&change.files)],
            )
            .await?;
        if done == 1 {
            let data = serde_json::json!({
                "mode": change.mode,
                "retain_until": change.until,
                "user": change.by.user,
                "host": change.by.host,
                "versions": change.versions,
            });
            events::append(&mut s, &[NewEvent::of(&id.0, "retention_extended", data)]).await?;
        }
        s.commit().await?;
        Ok(done == 1)
    }

    async fn archived_after(&self, after: Option<&RecordingId>, limit: u32) -> StateResult<Vec<ArchivedRow>> {
        let rows = fetch_all(
            self,
            sql!("SELECT * FROM recordings WHERE state = 'archived' AND id > $1 ORDER BY id LIMIT $2"),
            &[Text(after.map_or("", |id| id.0.as_str())), Int(i64::from(limit))],
        )
        .await?;
        rows.iter().map(archived_row).collect()
    }

    async fn claimed_prefixes(&self, prefixes: &[String]) -> StateResult<HashSet<String>> {
        if prefixes.is_empty() {
            return Ok(HashSet::new());
        }
        let asked = serde_json::Value::from(prefixes);
        let rows = fetch_all(self, claimed_prefixes(), &[Json(&asked)]).await?;
        rows.iter().map(|r| r.text("object_prefix")).collect()
    }

    async fn report(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> StateResult<Box<dyn ReportSnapshot>> {
        let session = Session::read(self).await?;
        Ok(Box::new(Snapshot { session, period: [Time(from), Time(to)] }))
    }

    async fn unfinished(&self, limit: u32) -> StateResult<Vec<(RecordingId, ArchiveState, Option<String>)>> {
        let rows = fetch_all(
            self,
            sql!(
                "SELECT id, state, last_error FROM recordings WHERE state IN ('pending', 'archiving') \
                 ORDER BY create_time LIMIT $1"
            ),
            &[Int(i64::from(limit))],
        )
        .await?;
        rows.iter()
            .map(|r| {
                Ok((RecordingId(r.text("id")?), ArchiveState::parse(&r.text("state")?)?, r.opt_text("last_error")?))
            })
            .collect()
    }

    async fn pause_until(&self, until: DateTime<Utc>) -> StateResult<()> {
        execute(
            self,
            sql!(
                "UPDATE rate_limit SET \
                     paused_until = CASE WHEN paused_until > $1 THEN paused_until ELSE $1 END, \
                     pauses = pauses + 1 \
                 WHERE id = 1"
            ),
            &[Time(until)],
        )
        .await?;
        Ok(())
    }

    async fn paused_until(&self) -> StateResult<DateTime<Utc>> {
        read_paused_until(&mut Session::connect(self).await?).await
    }

    async fn load_tokens(&self, client_id: &str) -> StateResult<Option<StoredTokens>> {
        let row = fetch_optional(
            self,
            sql!(
                "SELECT access_token, access_expires_at, refresh_token, refresh_expires_at, refreshes, \
                     seed_sha256, refreshed_at \
                 FROM oauth_tokens WHERE client_id = $1 AND refresh_token <> ''"
            ),
            &[Text(client_id)],
        )
        .await?;
        row.map(|r| {
            Ok(StoredTokens {
                access_token: r.opt_text("access_token")?,
                access_expires_at: r.opt_time("access_expires_at")?,
                refresh_token: r.text("refresh_token")?,
                refresh_expires_at: r.opt_time("refresh_expires_at")?,
                refreshes: r.bigint("refreshes")?,
                seed_sha256: r.opt_text("seed_sha256")?,
                obtained_at: r.opt_time("refreshed_at")?,
            })
        })
        .transpose()
    }

    async fn store_tokens(&self, client_id: &str, tokens: &StoredTokens) -> StateResult<()> {
        execute(
            self,
            sql!(
                "INSERT INTO oauth_tokens (client_id, access_token, access_expires_at, refresh_token, \
                     refresh_expires_at, refreshes, refreshed_at, seed_sha256) \
                 VALUES ($1, $2, $3, $4, $5, $6, COALESCE($8, {now}), $7) \
                 ON CONFLICT (client_id) DO UPDATE SET access_token = excluded.access_token, \
                     access_expires_at = excluded.access_expires_at, refresh_token = excluded.refresh_token, \
                     refresh_expires_at = excluded.refresh_expires_at, refreshes = excluded.refreshes, \
                     refreshed_at = excluded.refreshed_at, seed_sha256 = excluded.seed_sha256"
            ),
            &[
                Text(client_id),
                OptText(tokens.access_token.as_deref()),
                OptTime(tokens.access_expires_at),
                Text(&tokens.refresh_token),
                OptTime(tokens.refresh_expires_at),
                Int(tokens.refreshes),
                OptText(tokens.seed_sha256.as_deref()),
                OptTime(tokens.obtained_at),
            ],
        )
        .await?;
        Ok(())
    }

    async fn lock_refresh(&self, client_id: &str, owner: &str, ttl: Duration) -> StateResult<bool> {
        let mut s = Session::begin(self).await?;
        s.execute(
            sql!(
                "INSERT INTO oauth_tokens (client_id, refresh_token, refreshed_at) VALUES ($1, '', {now}) \
                 ON CONFLICT (client_id) DO NOTHING"
            ),
            &[Text(client_id)],
        )
        .await?;
        let locked = s
            .execute(
                sql!(
                    "UPDATE oauth_tokens SET lock_owner = $2, lock_expires_at = {now} + $3 \
                     WHERE client_id = $1 AND (lock_owner IS NULL OR lock_owner = $2 OR lock_expires_at < {now})"
                ),
                &[Text(client_id), Text(owner), Interval(ttl)],
            )
            .await?;
        s.commit().await?;
        Ok(locked == 1)
    }

    async fn unlock_refresh(&self, client_id: &str, owner: &str) -> StateResult<()> {
        execute(
            self,
            sql!(
                "UPDATE oauth_tokens SET lock_owner = NULL, lock_expires_at = NULL \
                 WHERE client_id = $1 AND lock_owner = $2"
            ),
            &[Text(client_id), Text(owner)],
        )
        .await?;
        Ok(())
    }
}
