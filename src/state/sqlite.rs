//! SQLite: the embedded default for a first run or one small node. WAL mode, a busy
//! timeout, and claims in `BEGIN IMMEDIATE` transactions, so several workers of one
//! process (or a few processes on one host) never claim the same recording.
//!
//! Times are integer milliseconds since the Unix epoch (UTC) and come from this host's
//! clock.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Transaction};

use super::{
    ArchiveState, ArchivedRecord, ArchivedRow, Claim, Cursor, CursorKind, CursorMove, FailureRow, ListedRecording,
    Outcome, PageRecorded, QuarantineEntry, QuarantineKey, QuarantineRow, QuarantinedItem, RecordingId, ReleasedHow,
    ScopeKey, StateError, StateResult, StateStore, StatusReport, StoredTokens, TokenStatus, millis, unique_by_id,
    unique_by_key,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a statement waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The SQLite state store.
#[derive(Debug, Clone)]
pub struct SqliteState {
    pool: SqlitePool,
    path: PathBuf,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}

fn opt_at(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.map(at)
}

fn now_ms() -> i64 {
    ms(Utc::now())
}

fn json(text: &str) -> StateResult<serde_json::Value> {
    serde_json::from_str(text).map_err(StateError::StoredJson)
}

impl SqliteState {
    /// Opens (creating if missing) the SQLite file named by a `sqlite://` URL.
    pub async fn open(url: &str, max_connections: u32, acquire_timeout: Duration) -> StateResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NOTE: FULL makes each commit durable across power loss, not only process crashes:
            // an archive's state must not forget a recording it reported archived.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let path = options.get_filename().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StateError::Path {
                path: dir.display().to_string(),
                problem: "cannot create the data directory",
                source: e.into(),
            })?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| describe_open_error(&path, e))?;
        Ok(Self { pool, path })
    }

    async fn immediate(&self) -> StateResult<Transaction<'static, sqlx::Sqlite>> {
        // NOTE: BEGIN IMMEDIATE takes the write lock up front, so a read-then-write
        // transaction cannot fail half-way because another writer got there first.
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

fn describe_open_error(path: &Path, e: sqlx::Error) -> StateError {
    StateError::Path { path: path.display().to_string(), problem: "cannot open the SQLite database", source: e.into() }
}

/// The columns of a [`Cursor`], as a literal for `concat!`.
macro_rules! cursor_columns {
    () => {
        "scope, kind, position, range_start, range_end, last_pass_at, last_success_at, last_error, items_listed, \
         items_skipped"
    };
}

fn cursor_from_row(row: &SqliteRow) -> StateResult<Cursor> {
    Ok(Cursor {
        scope: ScopeKey(row.try_get("scope")?),
        kind: CursorKind::parse(row.try_get("kind")?)?,
        position: at(row.try_get("position")?),
        range_start: opt_at(row.try_get("range_start")?),
        range_end: opt_at(row.try_get("range_end")?),
        last_pass_at: opt_at(row.try_get("last_pass_at")?),
        last_success_at: opt_at(row.try_get("last_success_at")?),
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

fn quarantine_from_row(row: &SqliteRow) -> StateResult<QuarantineRow> {
    Ok(QuarantineRow {
        key: QuarantineKey(row.try_get("key")?),
        recording_id: row.try_get::<Option<String>, _>("recording_id")?.map(RecordingId),
        scope: ScopeKey(row.try_get("scope")?),
        reason: row.try_get("reason")?,
        tracking_id: row.try_get("tracking_id")?,
        first_seen_at: at(row.try_get("first_seen_at")?),
        last_seen_at: at(row.try_get("last_seen_at")?),
        seen_count: row.try_get("seen_count")?,
        check_note: row.try_get("check_note")?,
    })
}

/// Inserts recordings or refreshes their listing fields (never their archive state), and
/// releases their open quarantine entries.
async fn upsert_recordings(
    tx: &mut Transaction<'static, sqlx::Sqlite>,
    items: &[&ListedRecording],
    now: i64,
) -> StateResult<PageRecorded> {
    let mut recorded = PageRecorded::default();
    // Most pages release nothing: skip a statement per item when no entry is open.
    let open: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM quarantine WHERE released_at IS NULL)")
        .fetch_one(&mut **tx)
        .await?;
    for item in items {
        let listing = item.listing.to_string();
        let inserted = sqlx::query(
            "INSERT INTO recordings (id, scope, site_url, host_email, meeting_id, topic, format, create_time, \
                 size_bytes, listing, discovered_at, last_listed_at, next_attempt_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?11, ?11) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&item.id.0)
        .bind(&item.scope.0)
        .bind(&item.site_url)
        .bind(&item.host_email)
        .bind(&item.meeting_id)
        .bind(&item.topic)
        .bind(&item.format)
        .bind(ms(item.create_time))
        .bind(item.size_bytes)
        .bind(&listing)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        if inserted.rows_affected() == 1 {
            recorded.new += 1;
        } else {
            sqlx::query(
                "UPDATE recordings SET site_url = ?2, host_email = ?3, meeting_id = ?4, topic = ?5, format = ?6, \
                     create_time = ?7, size_bytes = ?8, listing = ?9, last_listed_at = ?10 WHERE id = ?1",
            )
            .bind(&item.id.0)
            .bind(&item.site_url)
            .bind(&item.host_email)
            .bind(&item.meeting_id)
            .bind(&item.topic)
            .bind(&item.format)
            .bind(ms(item.create_time))
            .bind(item.size_bytes)
            .bind(&listing)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            recorded.refreshed += 1;
        }
        if !open {
            continue;
        }
        let released = sqlx::query(
            "UPDATE quarantine SET released_at = ?2, released_how = ?3 \
             WHERE recording_id = ?1 AND released_at IS NULL",
        )
        .bind(&item.id.0)
        .bind(now)
        .bind(ReleasedHow::Listed.as_str())
        .execute(&mut **tx)
        .await?;
        recorded.released += released.rows_affected();
    }
    Ok(recorded)
}

/// Records unreadable items: a new entry, or the existing one seen again. An entry whose
/// recording is already recorded is released at once (nothing is lost); any other entry
/// seen again is reopened.
async fn upsert_quarantine(
    tx: &mut Transaction<'static, sqlx::Sqlite>,
    items: &[&QuarantinedItem],
    now: i64,
) -> StateResult<()> {
    for item in items {
        sqlx::query(
            "INSERT INTO quarantine (key, recording_id, scope, reason, raw, tracking_id, first_seen_at, \
                 last_seen_at, released_at, released_how, window_from, window_to) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, \
                 CASE WHEN r.id IS NULL THEN NULL ELSE ?7 END, CASE WHEN r.id IS NULL THEN NULL ELSE ?8 END, ?9, ?10 \
             FROM (SELECT 1) LEFT JOIN recordings r ON r.id = ?2 WHERE true \
             ON CONFLICT (key) DO UPDATE SET recording_id = excluded.recording_id, scope = excluded.scope, \
                 reason = excluded.reason, raw = excluded.raw, tracking_id = excluded.tracking_id, \
                 window_from = COALESCE(excluded.window_from, quarantine.window_from), \
                 window_to = COALESCE(excluded.window_to, quarantine.window_to), \
                 last_seen_at = excluded.last_seen_at, seen_count = quarantine.seen_count + 1, \
                 released_at = CASE WHEN excluded.released_at IS NULL THEN NULL \
                     ELSE COALESCE(quarantine.released_at, excluded.released_at) END, \
                 released_how = CASE WHEN excluded.released_at IS NULL THEN NULL \
                     ELSE COALESCE(quarantine.released_how, excluded.released_how) END",
        )
        .bind(&item.key.0)
        .bind(item.recording_id.as_ref().map(|r| r.0.as_str()))
        .bind(&item.scope.0)
        .bind(&item.reason)
        .bind(&item.raw)
        .bind(&item.tracking_id)
        .bind(now)
        .bind(ReleasedHow::AlreadyRecorded.as_str())
        .bind(item.window.map(|w| ms(w.0)))
        .bind(item.window.map(|w| ms(w.1)))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn archived_from_row(row: &SqliteRow) -> StateResult<ArchivedRecord> {
    Ok(ArchivedRecord {
        object_prefix: row.try_get("object_prefix")?,
        media_key: row.try_get("media_key")?,
        metadata_key: row.try_get("metadata_key")?,
        sha256: row.try_get("sha256")?,
        bytes: row.try_get("bytes")?,
        files: json(row.try_get::<&str, _>("files")?)?,
        size_mismatch: row.try_get("size_mismatch")?,
        archived_at: at(row.try_get("archived_at")?),
    })
}

#[async_trait]
impl StateStore for SqliteState {
    async fn migrate(&self) -> StateResult<()> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(inner) => describe_open_error(&self.path, inner),
            other => StateError::Migrate(other),
        })?;
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
        let now = now_ms();
        let (range_start, range_end) = range.map_or((None, None), |(s, e)| (Some(ms(s)), Some(ms(e))));
        let mut tx = self.immediate().await?;
        sqlx::query(
            "INSERT INTO cursors (scope, kind, position, range_start, range_end) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (scope, kind) DO NOTHING",
        )
        .bind(&scope.0)
        .bind(kind.as_str())
        .bind(ms(initial))
        .bind(range_start)
        .bind(range_end)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(concat!(
            "UPDATE cursors SET lease_owner = ?3, lease_expires_at = ?4 + ?5, last_pass_at = ?4, \
                 position = CASE WHEN ?6 IS NOT NULL AND (range_start IS NOT ?6 OR range_end IS NOT ?7) \
                     THEN ?8 ELSE position END, \
                 range_start = COALESCE(?6, range_start), range_end = COALESCE(?7, range_end) \
             WHERE scope = ?1 AND kind = ?2 AND (lease_owner IS NULL OR lease_owner = ?3 OR lease_expires_at < ?4) \
             RETURNING ",
            cursor_columns!()
        ))
        .bind(&scope.0)
        .bind(kind.as_str())
        .bind(owner)
        .bind(now)
        .bind(millis(ttl))
        .bind(range_start)
        .bind(range_end)
        .bind(ms(initial))
        .fetch_optional(&mut *tx)
        .await?;
        let cursor = row.as_ref().map(cursor_from_row).transpose()?;
        tx.commit().await?;
        Ok(cursor)
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
            "UPDATE cursors SET lease_owner = NULL, lease_expires_at = NULL, last_error = ?4, \
                 last_success_at = CASE WHEN ?4 IS NULL THEN ?5 ELSE last_success_at END \
             WHERE scope = ?1 AND kind = ?2 AND lease_owner = ?3",
        )
        .bind(&scope.0)
        .bind(kind.as_str())
        .bind(owner)
        .bind(error)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn renew_cursor(&self, scope: &ScopeKey, kind: CursorKind, owner: &str, ttl: Duration) -> StateResult<bool> {
        let done =
            sqlx::query("UPDATE cursors SET lease_expires_at = ?4 WHERE scope = ?1 AND kind = ?2 AND lease_owner = ?3")
                .bind(&scope.0)
                .bind(kind.as_str())
                .bind(owner)
                .bind(now_ms().saturating_add(millis(ttl)))
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
        let now = now_ms();
        let items = unique_by_id(items);
        let unreadable = unique_by_key(quarantined);
        let mut tx = self.immediate().await?;
        let recorded = upsert_recordings(&mut tx, &items, now).await?;
        upsert_quarantine(&mut tx, &unreadable, now).await?;
        let listed = items.len() as i64;
        let quarantined = quarantined.len() as i64;
        match cursor_move {
            Some(m) => {
                let done = sqlx::query(
                    "UPDATE cursors SET position = ?4, items_listed = items_listed + ?5, \
                         items_skipped = items_skipped + ?6 \
                     WHERE scope = ?1 AND kind = ?2 AND position = ?3 AND lease_owner = ?7",
                )
                .bind(&scope.0)
                .bind(m.kind.as_str())
                .bind(ms(m.from))
                .bind(ms(m.to))
                .bind(listed)
                .bind(quarantined)
                .bind(owner)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Err(StateError::LostCursor { scope: scope.clone() });
                }
            }
            None if quarantined > 0 || listed > 0 => {
                sqlx::query(
                    "UPDATE cursors SET items_listed = items_listed + ?3, items_skipped = items_skipped + ?4 \
                     WHERE scope = ?1 AND lease_owner = ?2",
                )
                .bind(&scope.0)
                .bind(owner)
                .bind(listed)
                .bind(quarantined)
                .execute(&mut *tx)
                .await?;
            }
            None => {}
        }
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
            ", raw, window_from, window_to FROM quarantine WHERE scope = ?1 AND released_at IS NULL AND (?2 IS NULL OR key > ?2) \
             ORDER BY key LIMIT ?3"
        ))
        .bind(&scope.0)
        .bind(after.map(|k| k.0.as_str()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let from: Option<i64> = row.try_get("window_from")?;
                let to: Option<i64> = row.try_get("window_to")?;
                let window = from.zip(to).map(|(from, to)| (at(from), at(to)));
                Ok(QuarantineEntry { row: quarantine_from_row(row)?, raw: row.try_get("raw")?, window })
            })
            .collect()
    }

    async fn release_quarantined(
        &self,
        key: &QuarantineKey,
        recording: Option<&ListedRecording>,
        how: ReleasedHow,
    ) -> StateResult<PageRecorded> {
        let now = now_ms();
        let mut tx = self.immediate().await?;
        // The entry first, so that it is released the way the caller says.
        let done = sqlx::query(
            "UPDATE quarantine SET released_at = ?2, released_how = ?3 WHERE key = ?1 AND released_at IS NULL",
        )
        .bind(&key.0)
        .bind(now)
        .bind(how.as_str())
        .execute(&mut *tx)
        .await?;
        let mut recorded = upsert_recordings(&mut tx, &recording.into_iter().collect::<Vec<_>>(), now).await?;
        recorded.released += done.rows_affected();
        tx.commit().await?;
        Ok(recorded)
    }

    async fn note_quarantine_check(&self, key: &QuarantineKey, note: &str) -> StateResult<()> {
        sqlx::query("UPDATE quarantine SET checked_at = ?2, check_note = ?3 WHERE key = ?1")
            .bind(&key.0)
            .bind(now_ms())
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
        let now = now_ms();
        let mut tx = self.immediate().await?;
        let due = sqlx::query(
            "SELECT id, state FROM recordings \
             WHERE (state = 'pending' AND next_attempt_at <= ?1) OR (state = 'archiving' AND lease_expires_at < ?1) \
             ORDER BY next_attempt_at LIMIT ?2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut claims = Vec::with_capacity(due.len());
        for row in due {
            let id: String = row.try_get("id")?;
            let recovered = row.try_get::<&str, _>("state")? == "archiving";
            let claimed = sqlx::query(
                "UPDATE recordings SET state = 'archiving', lease_owner = ?2, lease_expires_at = ?3 + ?4, \
                     attempts = attempts + 1, lease_expiries = lease_expiries + ?5, updated_at = ?3 \
                 WHERE id = ?1 \
                 RETURNING attempts, scope, site_url, host_email, create_time, format, size_bytes, listing",
            )
            .bind(&id)
            .bind(&token)
            .bind(now)
            .bind(millis(lease))
            .bind(i64::from(recovered))
            .fetch_one(&mut *tx)
            .await?;
            claims.push(Claim {
                id: RecordingId(id),
                token: token.clone(),
                attempts: u32::try_from(claimed.try_get::<i64, _>("attempts")?).unwrap_or(0),
                recovered,
                scope: ScopeKey(claimed.try_get("scope")?),
                site_url: claimed.try_get("site_url")?,
                host_email: claimed.try_get("host_email")?,
                create_time: at(claimed.try_get("create_time")?),
                format: claimed.try_get("format")?,
                size_bytes: claimed.try_get("size_bytes")?,
                listing: json(claimed.try_get::<&str, _>("listing")?)?,
            });
        }
        tx.commit().await?;
        Ok(claims)
    }

    async fn renew_lease(&self, id: &RecordingId, token: &str, lease: Duration) -> StateResult<bool> {
        let done = sqlx::query(
            "UPDATE recordings SET lease_expires_at = ?3 WHERE id = ?1 AND lease_owner = ?2 AND state = 'archiving'",
        )
        .bind(&id.0)
        .bind(token)
        .bind(now_ms() + millis(lease))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_object_prefix(&self, id: &RecordingId, token: &str, prefix: &str) -> StateResult<bool> {
        let done = sqlx::query(
            "UPDATE recordings SET object_prefix = ?3 WHERE id = ?1 AND lease_owner = ?2 AND state = 'archiving'",
        )
        .bind(&id.0)
        .bind(token)
        .bind(prefix)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish(&self, id: &RecordingId, token: &str, outcome: &Outcome) -> StateResult<bool> {
        let now = now_ms();
        let done =
            match outcome {
                Outcome::Archived(rec) => {
                    sqlx::query(
                        "UPDATE recordings SET state = 'archived', lease_owner = NULL, lease_expires_at = NULL, \
                         object_prefix = ?3, media_key = ?4, metadata_key = ?5, sha256 = ?6, bytes = ?7, files = ?8, \
                         size_mismatch = ?9, archived_at = ?10, failure_reason = NULL, last_error = NULL, \
                         updated_at = ?11 \
                     WHERE id = ?1 AND lease_owner = ?2 AND state = 'archiving'",
                    )
                    .bind(&id.0)
                    .bind(token)
                    .bind(&rec.object_prefix)
                    .bind(&rec.media_key)
                    .bind(&rec.metadata_key)
                    .bind(&rec.sha256)
                    .bind(rec.bytes)
                    .bind(rec.files.to_string())
                    .bind(rec.size_mismatch)
                    .bind(ms(rec.archived_at))
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                }
                Outcome::Retry { at, reason, message } => {
                    sqlx::query(
                        "UPDATE recordings SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL, \
                         next_attempt_at = ?3, failure_reason = ?4, last_error = ?5, updated_at = ?6 \
                     WHERE id = ?1 AND lease_owner = ?2 AND state = 'archiving'",
                    )
                    .bind(&id.0)
                    .bind(token)
                    .bind(ms(*at))
                    .bind(reason)
                    .bind(message)
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                }
                Outcome::Release { at } => {
                    sqlx::query(
                        "UPDATE recordings SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL, \
                         next_attempt_at = ?3, attempts = max(attempts - 1, 0), updated_at = ?4 \
                     WHERE id = ?1 AND lease_owner = ?2 AND state = 'archiving'",
                    )
                    .bind(&id.0)
                    .bind(token)
                    .bind(ms(*at))
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                }
                Outcome::Failed { reason, message } => {
                    sqlx::query(
                        "UPDATE recordings SET state = 'failed', lease_owner = NULL, lease_expires_at = NULL, \
                         failure_reason = ?3, last_error = ?4, updated_at = ?5 \
                     WHERE id = ?1 AND lease_owner = ?2 AND state = 'archiving'",
                    )
                    .bind(&id.0)
                    .bind(token)
                    .bind(reason)
                    .bind(message)
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                }
                Outcome::NotDownloadable { reason } => sqlx::query(
                    "UPDATE recordings SET state = 'not_downloadable', lease_owner = NULL, lease_expires_at = NULL, \
                         failure_reason = 'not_downloadable', last_error = ?3, updated_at = ?4 \
                     WHERE id = ?1 AND lease_owner = ?2 AND state = 'archiving'",
                )
                .bind(&id.0)
                .bind(token)
                .bind(reason)
                .bind(now)
                .execute(&self.pool)
                .await?,
            };
        Ok(done.rows_affected() == 1)
    }

    async fn retry(&self, ids: Option<&[RecordingId]>) -> StateResult<u64> {
        let now = now_ms();
        match ids {
            None => Ok(sqlx::query(
                "UPDATE recordings SET state = 'pending', attempts = 0, next_attempt_at = ?1, updated_at = ?1 \
                 WHERE state = 'failed'",
            )
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected()),
            Some(ids) => {
                let mut tx = self.immediate().await?;
                let mut n = 0;
                for id in ids {
                    n += sqlx::query(
                        "UPDATE recordings SET state = 'pending', attempts = 0, next_attempt_at = ?2, updated_at = ?2 \
                         WHERE id = ?1 AND state IN ('failed', 'not_downloadable')",
                    )
                    .bind(&id.0)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
                tx.commit().await?;
                Ok(n)
            }
        }
    }

    async fn status(&self, failures: u32) -> StateResult<StatusReport> {
        let now = now_ms();
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
            "SELECT COALESCE(sum(CASE WHEN state = 'archived' THEN bytes END), 0) AS bytes, \
                 count(CASE WHEN state = 'pending' AND next_attempt_at <= ?1 THEN 1 END) AS due_now, \
                 min(CASE WHEN state = 'pending' THEN next_attempt_at END) AS next_due_at, \
                 count(CASE WHEN size_mismatch THEN 1 END) AS size_mismatches, \
                 COALESCE(sum(lease_expiries), 0) AS lease_expiries \
             FROM recordings",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        report.bytes_archived = row.try_get("bytes")?;
        report.due_now = row.try_get("due_now")?;
        report.next_due_at = opt_at(row.try_get("next_due_at")?);
        report.size_mismatches = row.try_get("size_mismatches")?;
        report.lease_expiries = row.try_get("lease_expiries")?;
        if let Some(row) = sqlx::query(
            "SELECT id, create_time FROM recordings WHERE state IN ('pending', 'archiving', 'failed') \
             ORDER BY create_time LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?
        {
            report.oldest_unarchived = Some((RecordingId(row.try_get("id")?), at(row.try_get("create_time")?)));
        }
        report.cursors = self.cursors().await?;
        for row in sqlx::query(
            "SELECT id, state, failure_reason, last_error, attempts, updated_at FROM recordings \
             WHERE state IN ('failed', 'not_downloadable') ORDER BY updated_at DESC LIMIT ?1",
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
                attempts: row.try_get("attempts")?,
                updated_at: at(row.try_get("updated_at")?),
            });
        }
        report.quarantined = sqlx::query_scalar("SELECT count(*) FROM quarantine WHERE released_at IS NULL")
            .fetch_one(&self.pool)
            .await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            quarantine_columns!(),
            " FROM quarantine WHERE released_at IS NULL ORDER BY last_seen_at DESC, key LIMIT ?1"
        ))
        .bind(i64::from(failures))
        .fetch_all(&self.pool)
        .await?;
        report.recent_quarantine = rows.iter().map(quarantine_from_row).collect::<StateResult<_>>()?;
        let paused = self.paused_until().await?;
        report.paused_until = (paused > Utc::now()).then_some(paused);
        report.oauth = sqlx::query(
            "SELECT access_expires_at, refresh_expires_at, refreshes FROM oauth_tokens \
             WHERE refresh_token <> '' ORDER BY refreshed_at DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?
        .map(|r| -> StateResult<TokenStatus> {
            Ok(TokenStatus {
                access_expires_at: opt_at(r.try_get("access_expires_at")?),
                refresh_expires_at: opt_at(r.try_get("refresh_expires_at")?),
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
                sqlx::query("SELECT * FROM recordings WHERE state = 'archived' ORDER BY random() LIMIT ?1")
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
             ORDER BY create_time LIMIT ?1",
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
        sqlx::query("UPDATE rate_limit SET paused_until = max(paused_until, ?1), pauses = pauses + 1 WHERE id = 1")
            .bind(ms(until))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn paused_until(&self) -> StateResult<DateTime<Utc>> {
        let value: i64 =
            sqlx::query_scalar("SELECT paused_until FROM rate_limit WHERE id = 1").fetch_one(&self.pool).await?;
        Ok(at(value))
    }

    async fn load_tokens(&self, client_id: &str) -> StateResult<Option<StoredTokens>> {
        let row = sqlx::query(
            "SELECT access_token, access_expires_at, refresh_token, refresh_expires_at, refreshes, seed_sha256 \
             FROM oauth_tokens WHERE client_id = ?1 AND refresh_token <> ''",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredTokens {
                access_token: r.try_get("access_token")?,
                access_expires_at: opt_at(r.try_get("access_expires_at")?),
                refresh_token: r.try_get("refresh_token")?,
                refresh_expires_at: opt_at(r.try_get("refresh_expires_at")?),
                refreshes: r.try_get("refreshes")?,
                seed_sha256: r.try_get("seed_sha256")?,
            })
        })
        .transpose()
    }

    async fn store_tokens(&self, client_id: &str, tokens: &StoredTokens) -> StateResult<()> {
        sqlx::query(
            "INSERT INTO oauth_tokens (client_id, access_token, access_expires_at, refresh_token, refresh_expires_at, \
                 refreshes, refreshed_at, seed_sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (client_id) DO UPDATE SET access_token = excluded.access_token, \
                 access_expires_at = excluded.access_expires_at, refresh_token = excluded.refresh_token, \
                 refresh_expires_at = excluded.refresh_expires_at, refreshes = excluded.refreshes, \
                 refreshed_at = excluded.refreshed_at, seed_sha256 = excluded.seed_sha256",
        )
        .bind(client_id)
        .bind(&tokens.access_token)
        .bind(tokens.access_expires_at.map(ms))
        .bind(&tokens.refresh_token)
        .bind(tokens.refresh_expires_at.map(ms))
        .bind(tokens.refreshes)
        .bind(now_ms())
        .bind(&tokens.seed_sha256)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn lock_refresh(&self, client_id: &str, owner: &str, ttl: Duration) -> StateResult<bool> {
        let now = now_ms();
        let mut tx = self.immediate().await?;
        sqlx::query(
            "INSERT INTO oauth_tokens (client_id, refresh_token, refreshed_at) VALUES (?1, '', ?2) \
             ON CONFLICT (client_id) DO NOTHING",
        )
        .bind(client_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(
            "UPDATE oauth_tokens SET lock_owner = ?2, lock_expires_at = ?3 + ?4 \
             WHERE client_id = ?1 AND (lock_owner IS NULL OR lock_owner = ?2 OR lock_expires_at < ?3)",
        )
        .bind(client_id)
        .bind(owner)
        .bind(now)
        .bind(millis(ttl))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn unlock_refresh(&self, client_id: &str, owner: &str) -> StateResult<()> {
        sqlx::query(
            "UPDATE oauth_tokens SET lock_owner = NULL, lock_expires_at = NULL WHERE client_id = ?1 AND lock_owner = ?2",
        )
        .bind(client_id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
