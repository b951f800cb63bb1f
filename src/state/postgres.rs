//! Postgres: the production backend, shared by any number of replicas. Time comes from
//! the database (`now()`), so replicas agree on leases whatever their clocks say.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Row, Transaction};

use super::{
    ArchiveState, ArchivedRecord, ArchivedRow, Claim, Cursor, CursorKind, CursorMove, FailureRow, ListedRecording,
    Outcome, PageRecorded, QuarantineEntry, QuarantineKey, QuarantineRow, QuarantinedItem, RecordingId, ReleasedHow,
    ScopeKey, StateError, StateResult, StateStore, StatusReport, StoredTokens, TokenStatus, millis, unique_by_id,
    unique_by_key,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The Postgres state store.
#[derive(Debug, Clone)]
pub struct PgState {
    pool: PgPool,
}

impl PgState {
    /// Connects a pool (lazily: an unreachable server shows on first use, so a daemon can
    /// start during an outage and wait).
    pub async fn connect(url: &str, max_connections: u32, acquire_timeout: Duration) -> StateResult<Self> {
        let pool =
            PgPoolOptions::new().max_connections(max_connections).acquire_timeout(acquire_timeout).connect_lazy(url)?;
        Ok(Self { pool })
    }
}

/// The columns of a [`Cursor`], as a literal for `concat!`.
macro_rules! cursor_columns {
    () => {
        "scope, kind, position, range_start, range_end, last_pass_at, last_success_at, last_error, items_listed, \
         items_skipped"
    };
}

fn cursor_from_row(row: &PgRow) -> StateResult<Cursor> {
    Ok(Cursor {
        scope: ScopeKey(row.try_get("scope")?),
        kind: CursorKind::parse(row.try_get("kind")?)?,
        position: row.try_get("position")?,
        range_start: row.try_get("range_start")?,
        range_end: row.try_get("range_end")?,
        last_pass_at: row.try_get("last_pass_at")?,
        last_success_at: row.try_get("last_success_at")?,
        last_error: row.try_get("last_error")?,
        items_listed: row.try_get("items_listed")?,
        items_quarantined: row.try_get("items_skipped")?,
    })
}

/// The columns of a [`QuarantineRow`], as a literal for `concat!`.
macro_rules! quarantine_columns {
    () => {
        "key, recording_id, scope, reason, tracking_id, first_seen_at, last_seen_at, seen_count, check_note"
    };
}

fn quarantine_from_row(row: &PgRow) -> StateResult<QuarantineRow> {
    Ok(QuarantineRow {
        key: QuarantineKey(row.try_get("key")?),
        recording_id: row.try_get::<Option<String>, _>("recording_id")?.map(RecordingId),
        scope: ScopeKey(row.try_get("scope")?),
        reason: row.try_get("reason")?,
        tracking_id: row.try_get("tracking_id")?,
        first_seen_at: row.try_get("first_seen_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        seen_count: row.try_get("seen_count")?,
        check_note: row.try_get("check_note")?,
    })
}

/// Inserts recordings or refreshes their listing fields (never their archive state).
async fn upsert_recordings(
    tx: &mut Transaction<'static, sqlx::Postgres>,
    items: &[&ListedRecording],
) -> StateResult<PageRecorded> {
    let mut recorded = PageRecorded::default();
    if items.is_empty() {
        return Ok(recorded);
    }
    let mut ids = Vec::with_capacity(items.len());
    let mut scopes = Vec::with_capacity(items.len());
    let mut sites = Vec::with_capacity(items.len());
    let mut hosts = Vec::with_capacity(items.len());
    let mut meetings = Vec::with_capacity(items.len());
    let mut topics = Vec::with_capacity(items.len());
    let mut formats = Vec::with_capacity(items.len());
    let mut created = Vec::with_capacity(items.len());
    let mut sizes = Vec::with_capacity(items.len());
    let mut listings = Vec::with_capacity(items.len());
    for item in items {
        ids.push(item.id.0.as_str());
        scopes.push(item.scope.0.as_str());
        sites.push(item.site_url.as_deref());
        hosts.push(item.host_email.as_deref());
        meetings.push(item.meeting_id.as_deref());
        topics.push(item.topic.as_deref());
        formats.push(item.format.as_deref());
        created.push(item.create_time);
        sizes.push(item.size_bytes);
        listings.push(&item.listing);
    }
    // NOTE: `xmax = 0` is true for a freshly inserted row and false for an updated
    // one: Postgres's way to tell the two apart in one upsert.
    let rows = sqlx::query(
        "INSERT INTO recordings (id, scope, site_url, host_email, meeting_id, topic, format, create_time, \
             size_bytes, listing) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::timestamptz[], $9::int8[], $10::jsonb[]) \
         ON CONFLICT (id) DO UPDATE SET site_url = EXCLUDED.site_url, host_email = EXCLUDED.host_email, \
             meeting_id = EXCLUDED.meeting_id, topic = EXCLUDED.topic, format = EXCLUDED.format, \
             create_time = EXCLUDED.create_time, size_bytes = EXCLUDED.size_bytes, \
             listing = EXCLUDED.listing, last_listed_at = now() \
         RETURNING (xmax = 0) AS inserted",
    )
    .bind(&ids)
    .bind(&scopes)
    .bind(&sites)
    .bind(&hosts)
    .bind(&meetings)
    .bind(&topics)
    .bind(&formats)
    .bind(&created)
    .bind(&sizes)
    .bind(&listings)
    .fetch_all(&mut **tx)
    .await?;
    for row in rows {
        if row.try_get::<bool, _>("inserted")? {
            recorded.new += 1;
        } else {
            recorded.refreshed += 1;
        }
    }
    // Their quarantine entries (an earlier, unreadable listing) need no one any more.
    let done = sqlx::query(
        "UPDATE quarantine SET released_at = now(), released_how = $2 \
         WHERE recording_id = ANY($1) AND released_at IS NULL",
    )
    .bind(&ids)
    .bind(ReleasedHow::Listed.as_str())
    .execute(&mut **tx)
    .await?;
    recorded.released = done.rows_affected();
    Ok(recorded)
}

/// Records unreadable items: a new entry, or the existing one seen again. An entry whose
/// recording is already recorded is released at once (nothing is lost); any other entry
/// seen again is reopened.
async fn upsert_quarantine(
    tx: &mut Transaction<'static, sqlx::Postgres>,
    items: &[&QuarantinedItem],
) -> StateResult<()> {
    if items.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = items.iter().map(|i| i.key.0.as_str()).collect();
    let ids: Vec<Option<&str>> = items.iter().map(|i| i.recording_id.as_ref().map(|r| r.0.as_str())).collect();
    let scopes: Vec<&str> = items.iter().map(|i| i.scope.0.as_str()).collect();
    let reasons: Vec<&str> = items.iter().map(|i| i.reason.as_str()).collect();
    let raws: Vec<&str> = items.iter().map(|i| i.raw.as_str()).collect();
    let tracking: Vec<Option<&str>> = items.iter().map(|i| i.tracking_id.as_deref()).collect();
    let window_from: Vec<Option<DateTime<Utc>>> = items.iter().map(|i| i.window.map(|w| w.0)).collect();
    let window_to: Vec<Option<DateTime<Utc>>> = items.iter().map(|i| i.window.map(|w| w.1)).collect();
    sqlx::query(
        "INSERT INTO quarantine (key, recording_id, scope, reason, raw, tracking_id, window_from, window_to, \
             released_at, released_how) \
         SELECT u.key, u.recording_id, u.scope, u.reason, u.raw, u.tracking_id, u.window_from, u.window_to, \
             CASE WHEN r.id IS NULL THEN NULL ELSE now() END, CASE WHEN r.id IS NULL THEN NULL ELSE $7 END \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $8::timestamptz[], $9::timestamptz[]) \
             AS u(key, recording_id, scope, reason, raw, tracking_id, window_from, window_to) \
         LEFT JOIN recordings r ON r.id = u.recording_id \
         ON CONFLICT (key) DO UPDATE SET recording_id = EXCLUDED.recording_id, scope = EXCLUDED.scope, \
             reason = EXCLUDED.reason, raw = EXCLUDED.raw, tracking_id = EXCLUDED.tracking_id, \
             window_from = COALESCE(EXCLUDED.window_from, quarantine.window_from), \
             window_to = COALESCE(EXCLUDED.window_to, quarantine.window_to), \
             last_seen_at = now(), seen_count = quarantine.seen_count + 1, \
             released_at = CASE WHEN EXCLUDED.released_at IS NULL THEN NULL \
                 ELSE COALESCE(quarantine.released_at, EXCLUDED.released_at) END, \
             released_how = CASE WHEN EXCLUDED.released_at IS NULL THEN NULL \
                 ELSE COALESCE(quarantine.released_how, EXCLUDED.released_how) END",
    )
    .bind(&keys)
    .bind(&ids)
    .bind(&scopes)
    .bind(&reasons)
    .bind(&raws)
    .bind(&tracking)
    .bind(ReleasedHow::AlreadyRecorded.as_str())
    .bind(&window_from)
    .bind(&window_to)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn archived_from_row(row: &PgRow) -> StateResult<ArchivedRecord> {
    Ok(ArchivedRecord {
        object_prefix: row.try_get("object_prefix")?,
        media_key: row.try_get("media_key")?,
        metadata_key: row.try_get("metadata_key")?,
        sha256: row.try_get("sha256")?,
        bytes: row.try_get("bytes")?,
        files: row.try_get("files")?,
        size_mismatch: row.try_get("size_mismatch")?,
        archived_at: row.try_get("archived_at")?,
    })
}

async fn move_cursor(
    tx: &mut Transaction<'static, sqlx::Postgres>,
    scope: &ScopeKey,
    owner: &str,
    quarantined: u64,
    listed: u64,
    cursor_move: Option<CursorMove>,
) -> StateResult<()> {
    match cursor_move {
        Some(m) => {
            let done = sqlx::query(
                "UPDATE cursors SET position = $4, items_listed = items_listed + $5, items_skipped = items_skipped + $6 \
                 WHERE scope = $1 AND kind = $2 AND position = $3 AND lease_owner = $7",
            )
            .bind(&scope.0)
            .bind(m.kind.as_str())
            .bind(m.from)
            .bind(m.to)
            .bind(listed as i64)
            .bind(quarantined as i64)
            .bind(owner)
            .execute(&mut **tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StateError::LostCursor { scope: scope.clone() });
            }
        }
        None if quarantined > 0 || listed > 0 => {
            sqlx::query(
                "UPDATE cursors SET items_listed = items_listed + $3, items_skipped = items_skipped + $4 \
                 WHERE scope = $1 AND lease_owner = $2",
            )
            .bind(&scope.0)
            .bind(owner)
            .bind(listed as i64)
            .bind(quarantined as i64)
            .execute(&mut **tx)
            .await?;
        }
        None => {}
    }
    Ok(())
}

#[async_trait]
impl StateStore for PgState {
    async fn migrate(&self) -> StateResult<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> StateResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
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
        sqlx::query(
            "INSERT INTO cursors (scope, kind, position, range_start, range_end) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (scope, kind) DO NOTHING",
        )
        .bind(&scope.0)
        .bind(kind.as_str())
        .bind(initial)
        .bind(range_start)
        .bind(range_end)
        .execute(&self.pool)
        .await?;
        // A different backfill range restarts the cursor at the new start.
        let row = sqlx::query(concat!(
            "UPDATE cursors SET lease_owner = $3, lease_expires_at = now() + $4 * interval '1 millisecond', \
                 last_pass_at = now(), \
                 position = CASE WHEN $5::timestamptz IS NOT NULL \
                     AND (range_start IS DISTINCT FROM $5 OR range_end IS DISTINCT FROM $6) THEN $7 ELSE position END, \
                 range_start = COALESCE($5, range_start), range_end = COALESCE($6, range_end) \
             WHERE scope = $1 AND kind = $2 \
               AND (lease_owner IS NULL OR lease_owner = $3 OR lease_expires_at < now()) \
             RETURNING ",
            cursor_columns!()
        ))
        .bind(&scope.0)
        .bind(kind.as_str())
        .bind(owner)
        .bind(millis(ttl))
        .bind(range_start)
        .bind(range_end)
        .bind(initial)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(cursor_from_row).transpose()
    }

    async fn release_cursor(
        &self,
        scope: &ScopeKey,
        kind: CursorKind,
        owner: &str,
        outcome: Result<(), String>,
    ) -> StateResult<()> {
        let error = outcome.err();
        sqlx::query(
            "UPDATE cursors SET lease_owner = NULL, lease_expires_at = NULL, last_error = $4, \
                 last_success_at = CASE WHEN $4::text IS NULL THEN now() ELSE last_success_at END \
             WHERE scope = $1 AND kind = $2 AND lease_owner = $3",
        )
        .bind(&scope.0)
        .bind(kind.as_str())
        .bind(owner)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn renew_cursor(&self, scope: &ScopeKey, kind: CursorKind, owner: &str, ttl: Duration) -> StateResult<bool> {
        let done = sqlx::query(
            "UPDATE cursors SET lease_expires_at = now() + $4 * interval '1 millisecond' \
             WHERE scope = $1 AND kind = $2 AND lease_owner = $3",
        )
        .bind(&scope.0)
        .bind(kind.as_str())
        .bind(owner)
        .bind(millis(ttl))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
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
        let mut tx = self.pool.begin().await?;
        let recorded = upsert_recordings(&mut tx, &items).await?;
        upsert_quarantine(&mut tx, &unreadable).await?;
        move_cursor(&mut tx, scope, owner, quarantined.len() as u64, items.len() as u64, cursor_move).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    async fn quarantined(
        &self,
        scope: &ScopeKey,
        after: Option<&QuarantineKey>,
        limit: u32,
    ) -> StateResult<Vec<QuarantineEntry>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            quarantine_columns!(),
            ", raw, window_from, window_to FROM quarantine WHERE scope = $1 AND released_at IS NULL AND ($2::text IS NULL OR key > $2) \
             ORDER BY key LIMIT $3"
        ))
        .bind(&scope.0)
        .bind(after.map(|k| k.0.as_str()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let from: Option<DateTime<Utc>> = row.try_get("window_from")?;
                let to: Option<DateTime<Utc>> = row.try_get("window_to")?;
                Ok(QuarantineEntry { row: quarantine_from_row(row)?, raw: row.try_get("raw")?, window: from.zip(to) })
            })
            .collect()
    }

    async fn release_quarantined(
        &self,
        key: &QuarantineKey,
        recording: Option<&ListedRecording>,
        how: ReleasedHow,
    ) -> StateResult<PageRecorded> {
        let mut tx = self.pool.begin().await?;
        // The entry first, so that it is released the way the caller says.
        let done = sqlx::query(
            "UPDATE quarantine SET released_at = now(), released_how = $2 WHERE key = $1 AND released_at IS NULL",
        )
        .bind(&key.0)
        .bind(how.as_str())
        .execute(&mut *tx)
        .await?;
        let mut recorded = upsert_recordings(&mut tx, &recording.into_iter().collect::<Vec<_>>()).await?;
        recorded.released += done.rows_affected();
        tx.commit().await?;
        Ok(recorded)
    }

    async fn note_quarantine_check(&self, key: &QuarantineKey, note: &str) -> StateResult<()> {
        sqlx::query("UPDATE quarantine SET checked_at = now(), check_note = $2 WHERE key = $1")
            .bind(&key.0)
            .bind(note)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn cursors(&self) -> StateResult<Vec<Cursor>> {
        let rows = sqlx::query(concat!("SELECT ", cursor_columns!(), " FROM cursors ORDER BY scope, kind"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(cursor_from_row).collect()
    }

    async fn claim_due(&self, owner: &str, lease: Duration, limit: u32) -> StateResult<Vec<Claim>> {
        let token = format!("{owner}/{}", uuid::Uuid::new_v4());
        let rows = sqlx::query(
            "WITH due AS ( \
                 SELECT id, state AS old_state FROM recordings \
                 WHERE (state = 'pending' AND next_attempt_at <= now()) \
                    OR (state = 'archiving' AND lease_expires_at < now()) \
                 ORDER BY next_attempt_at \
                 LIMIT $3 \
                 FOR UPDATE SKIP LOCKED) \
             UPDATE recordings r SET state = 'archiving', lease_owner = $1, \
                 lease_expires_at = now() + $2 * interval '1 millisecond', attempts = r.attempts + 1, \
                 lease_expiries = r.lease_expiries + CASE WHEN due.old_state = 'archiving' THEN 1 ELSE 0 END, \
                 updated_at = now() \
             FROM due WHERE r.id = due.id \
             RETURNING r.id, r.attempts, due.old_state, r.scope, r.site_url, r.host_email, r.create_time, r.format, \
                 r.size_bytes, r.listing",
        )
        .bind(&token)
        .bind(millis(lease))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Claim {
                    id: RecordingId(row.try_get("id")?),
                    token: token.clone(),
                    attempts: u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(0),
                    recovered: row.try_get::<String, _>("old_state")? == "archiving",
                    scope: ScopeKey(row.try_get("scope")?),
                    site_url: row.try_get("site_url")?,
                    host_email: row.try_get("host_email")?,
                    create_time: row.try_get("create_time")?,
                    format: row.try_get("format")?,
                    size_bytes: row.try_get("size_bytes")?,
                    listing: row.try_get("listing")?,
                })
            })
            .collect()
    }

    async fn renew_lease(&self, id: &RecordingId, token: &str, lease: Duration) -> StateResult<bool> {
        let done = sqlx::query(
            "UPDATE recordings SET lease_expires_at = now() + $3 * interval '1 millisecond' \
             WHERE id = $1 AND lease_owner = $2 AND state = 'archiving'",
        )
        .bind(&id.0)
        .bind(token)
        .bind(millis(lease))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_object_prefix(&self, id: &RecordingId, token: &str, prefix: &str) -> StateResult<bool> {
        let done = sqlx::query(
            "UPDATE recordings SET object_prefix = $3 WHERE id = $1 AND lease_owner = $2 AND state = 'archiving'",
        )
        .bind(&id.0)
        .bind(token)
        .bind(prefix)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish(&self, id: &RecordingId, token: &str, outcome: &Outcome) -> StateResult<bool> {
        let query = match outcome {
            Outcome::Archived(rec) => sqlx::query(
                "UPDATE recordings SET state = 'archived', lease_owner = NULL, lease_expires_at = NULL, \
                     object_prefix = $3, media_key = $4, metadata_key = $5, sha256 = $6, bytes = $7, files = $8, \
                     size_mismatch = $9, archived_at = $10, failure_reason = NULL, last_error = NULL, updated_at = now() \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'archiving'",
            )
            .bind(&id.0)
            .bind(token)
            .bind(&rec.object_prefix)
            .bind(&rec.media_key)
            .bind(&rec.metadata_key)
            .bind(&rec.sha256)
            .bind(rec.bytes)
            .bind(&rec.files)
            .bind(rec.size_mismatch)
            .bind(rec.archived_at),
            Outcome::Retry { at, reason, message } => sqlx::query(
                "UPDATE recordings SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL, \
                     next_attempt_at = $3, failure_reason = $4, last_error = $5, updated_at = now() \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'archiving'",
            )
            .bind(&id.0)
            .bind(token)
            .bind(*at)
            .bind(reason)
            .bind(message),
            Outcome::Release { at } => sqlx::query(
                "UPDATE recordings SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL, \
                     next_attempt_at = $3, attempts = GREATEST(attempts - 1, 0), updated_at = now() \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'archiving'",
            )
            .bind(&id.0)
            .bind(token)
            .bind(*at),
            Outcome::Failed { reason, message } => sqlx::query(
                "UPDATE recordings SET state = 'failed', lease_owner = NULL, lease_expires_at = NULL, \
                     failure_reason = $3, last_error = $4, updated_at = now() \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'archiving'",
            )
            .bind(&id.0)
            .bind(token)
            .bind(reason)
            .bind(message),
            Outcome::NotDownloadable { reason } => sqlx::query(
                "UPDATE recordings SET state = 'not_downloadable', lease_owner = NULL, lease_expires_at = NULL, \
                     failure_reason = 'not_downloadable', last_error = $3, updated_at = now() \
                 WHERE id = $1 AND lease_owner = $2 AND state = 'archiving'",
            )
            .bind(&id.0)
            .bind(token)
            .bind(reason),
        };
        Ok(query.execute(&self.pool).await?.rows_affected() == 1)
    }

    async fn retry(&self, ids: Option<&[RecordingId]>) -> StateResult<u64> {
        let done = match ids {
            None => sqlx::query(
                "UPDATE recordings SET state = 'pending', attempts = 0, next_attempt_at = now(), updated_at = now() \
                     WHERE state = 'failed'",
            )
            .execute(&self.pool)
            .await?,
            Some(ids) => {
                let ids: Vec<&str> = ids.iter().map(|i| i.0.as_str()).collect();
                sqlx::query(
                    "UPDATE recordings SET state = 'pending', attempts = 0, next_attempt_at = now(), updated_at = now() \
                     WHERE id = ANY($1) AND state IN ('failed', 'not_downloadable')",
                )
                .bind(&ids)
                .execute(&self.pool)
                .await?
            }
        };
        Ok(done.rows_affected())
    }

    async fn status(&self, failures: u32) -> StateResult<StatusReport> {
        let mut report = StatusReport::default();
        for state in ArchiveState::ALL {
            report.counts.insert(state, 0);
        }
        for row in
            sqlx::query("SELECT state, count(*) AS n FROM recordings GROUP BY state").fetch_all(&self.pool).await?
        {
            report.counts.insert(ArchiveState::parse(row.try_get("state")?)?, row.try_get("n")?);
        }
        let row = sqlx::query(
            "SELECT COALESCE(sum(bytes) FILTER (WHERE state = 'archived'), 0)::int8 AS bytes, \
                 count(*) FILTER (WHERE state = 'pending' AND next_attempt_at <= now()) AS due_now, \
                 min(next_attempt_at) FILTER (WHERE state = 'pending') AS next_due_at, \
                 count(*) FILTER (WHERE size_mismatch) AS size_mismatches, \
                 COALESCE(sum(lease_expiries), 0)::int8 AS lease_expiries \
             FROM recordings",
        )
        .fetch_one(&self.pool)
        .await?;
        report.bytes_archived = row.try_get("bytes")?;
        report.due_now = row.try_get("due_now")?;
        report.next_due_at = row.try_get("next_due_at")?;
        report.size_mismatches = row.try_get("size_mismatches")?;
        report.lease_expiries = row.try_get("lease_expiries")?;
        if let Some(row) = sqlx::query(
            "SELECT id, create_time FROM recordings WHERE state IN ('pending', 'archiving', 'failed') \
             ORDER BY create_time LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?
        {
            report.oldest_unarchived = Some((RecordingId(row.try_get("id")?), row.try_get("create_time")?));
        }
        report.cursors = self.cursors().await?;
        for row in sqlx::query(
            "SELECT id, state, failure_reason, last_error, attempts, updated_at FROM recordings \
             WHERE state IN ('failed', 'not_downloadable') ORDER BY updated_at DESC LIMIT $1",
        )
        .bind(i64::from(failures))
        .fetch_all(&self.pool)
        .await?
        {
            report.recent_failures.push(FailureRow {
                id: RecordingId(row.try_get("id")?),
                state: ArchiveState::parse(row.try_get("state")?)?,
                reason: row.try_get("failure_reason")?,
                message: row.try_get("last_error")?,
                attempts: i64::from(row.try_get::<i32, _>("attempts")?),
                updated_at: row.try_get("updated_at")?,
            });
        }
        report.quarantined = sqlx::query_scalar("SELECT count(*) FROM quarantine WHERE released_at IS NULL")
            .fetch_one(&self.pool)
            .await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            quarantine_columns!(),
            " FROM quarantine WHERE released_at IS NULL ORDER BY last_seen_at DESC, key LIMIT $1"
        ))
        .bind(i64::from(failures))
        .fetch_all(&self.pool)
        .await?;
        report.recent_quarantine = rows.iter().map(quarantine_from_row).collect::<StateResult<_>>()?;
        let paused: DateTime<Utc> = self.paused_until().await?;
        report.paused_until = (paused > Utc::now()).then_some(paused);
        report.oauth = sqlx::query(
            "SELECT access_expires_at, refresh_expires_at, refreshes FROM oauth_tokens \
             WHERE refresh_token <> '' ORDER BY refreshed_at DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?
        .map(|r| -> StateResult<TokenStatus> {
            Ok(TokenStatus {
                access_expires_at: r.try_get("access_expires_at")?,
                refresh_expires_at: r.try_get("refresh_expires_at")?,
                refreshes: r.try_get("refreshes")?,
            })
        })
        .transpose()?;
        Ok(report)
    }

    async fn archived(&self, sample: Option<u32>) -> StateResult<Vec<ArchivedRow>> {
        let rows = match sample {
            None => {
                sqlx::query("SELECT * FROM recordings WHERE state = 'archived' ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?
            }
            Some(n) => {
                sqlx::query("SELECT * FROM recordings WHERE state = 'archived' ORDER BY random() LIMIT $1")
                    .bind(i64::from(n))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|row| Ok(ArchivedRow { id: RecordingId(row.try_get("id")?), record: archived_from_row(row)? }))
            .collect()
    }

    async fn archived_prefixes(&self) -> StateResult<HashSet<String>> {
        let rows = sqlx::query("SELECT object_prefix FROM recordings WHERE object_prefix IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("object_prefix")?)).collect()
    }

    async fn unfinished(&self, limit: u32) -> StateResult<Vec<(RecordingId, ArchiveState, Option<String>)>> {
        let rows = sqlx::query(
            "SELECT id, state, last_error FROM recordings WHERE state IN ('pending', 'archiving') \
             ORDER BY create_time LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((RecordingId(r.try_get("id")?), ArchiveState::parse(r.try_get("state")?)?, r.try_get("last_error")?))
            })
            .collect()
    }

    async fn pause_until(&self, until: DateTime<Utc>) -> StateResult<()> {
        sqlx::query(
            "UPDATE rate_limit SET paused_until = GREATEST(paused_until, $1), pauses = pauses + 1 WHERE id = 1",
        )
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn paused_until(&self) -> StateResult<DateTime<Utc>> {
        Ok(sqlx::query_scalar("SELECT paused_until FROM rate_limit WHERE id = 1").fetch_one(&self.pool).await?)
    }

    async fn load_tokens(&self, client_id: &str) -> StateResult<Option<StoredTokens>> {
        let row = sqlx::query(
            "SELECT access_token, access_expires_at, refresh_token, refresh_expires_at, refreshes, seed_sha256 \
             FROM oauth_tokens WHERE client_id = $1 AND refresh_token <> ''",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredTokens {
                access_token: r.try_get("access_token")?,
                access_expires_at: r.try_get("access_expires_at")?,
                refresh_token: r.try_get("refresh_token")?,
                refresh_expires_at: r.try_get("refresh_expires_at")?,
                refreshes: r.try_get("refreshes")?,
                seed_sha256: r.try_get("seed_sha256")?,
            })
        })
        .transpose()
    }

    async fn store_tokens(&self, client_id: &str, tokens: &StoredTokens) -> StateResult<()> {
        sqlx::query(
            "INSERT INTO oauth_tokens (client_id, access_token, access_expires_at, refresh_token, refresh_expires_at, \
                 refreshes, seed_sha256) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (client_id) DO UPDATE SET access_token = EXCLUDED.access_token, \
                 access_expires_at = EXCLUDED.access_expires_at, refresh_token = EXCLUDED.refresh_token, \
                 refresh_expires_at = EXCLUDED.refresh_expires_at, refreshes = EXCLUDED.refreshes, \
                 seed_sha256 = EXCLUDED.seed_sha256, refreshed_at = now()",
        )
        .bind(client_id)
        .bind(&tokens.access_token)
        .bind(tokens.access_expires_at)
        .bind(&tokens.refresh_token)
        .bind(tokens.refresh_expires_at)
        .bind(tokens.refreshes)
        .bind(&tokens.seed_sha256)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn lock_refresh(&self, client_id: &str, owner: &str, ttl: Duration) -> StateResult<bool> {
        sqlx::query(
            "INSERT INTO oauth_tokens (client_id, refresh_token) VALUES ($1, '') ON CONFLICT (client_id) DO NOTHING",
        )
        .bind(client_id)
        .execute(&self.pool)
        .await?;
        let done = sqlx::query(
            "UPDATE oauth_tokens SET lock_owner = $2, lock_expires_at = now() + $3 * interval '1 millisecond' \
             WHERE client_id = $1 AND (lock_owner IS NULL OR lock_owner = $2 OR lock_expires_at < now())",
        )
        .bind(client_id)
        .bind(owner)
        .bind(millis(ttl))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn unlock_refresh(&self, client_id: &str, owner: &str) -> StateResult<()> {
        sqlx::query(
            "UPDATE oauth_tokens SET lock_owner = NULL, lock_expires_at = NULL WHERE client_id = $1 AND lock_owner = $2",
        )
        .bind(client_id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
