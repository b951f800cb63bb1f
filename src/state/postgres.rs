//! Postgres: the production backend, shared by any number of replicas. Time comes from
//! the database (`now()`), so replicas agree on leases whatever their clocks say.
//!
//! What is Postgres's own: how values are typed (`timestamptz`, `interval`, `jsonb`),
//! and the batch forms that make a page one statement per table and a claim one
//! statement (`UNNEST` arrays, `xmax = 0`, `ANY`, `FOR UPDATE SKIP LOCKED`). The
//! statements themselves are shared (`statements.rs`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use sqlx::postgres::types::PgInterval;
use sqlx::postgres::{PgArguments, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Postgres, Row, Transaction};

use super::events;
use super::sql::{Backend, Call, Cells, Now, Param, Session, Statement, sql};
use super::statements::{
    self, Upserted, claim_assignments, claim_columns, claim_from_row, claimed_event, due_again, due_pending,
    expired_lease, retried_event,
};
use super::{
    Claim, ListedRecording, Operator, PageRecorded, Planned, QuarantinedItem, RecordingId, ReleasedHow, StateResult,
    millis,
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

    /// The plan of one of the statements whose plans `tests/it` checks.
    #[doc(hidden)]
    pub async fn explain(&self, statement: Planned) -> StateResult<Vec<String>> {
        statements::explain(self, statement).await
    }
}

/// The claim, for lease token `$1`, lease `$2` and at most `$3` recordings: recordings
/// whose lease expired first (their worker died; oldest expiry first), then pending ones
/// by when they are due. Each branch reads its partial index in order and stops at the
/// limit (the second runs only when the first found too few), so a claim costs the same
/// with ten due recordings or a million. The rows are locked and skipped by concurrent
/// claimers (`FOR UPDATE SKIP LOCKED`). Postgres refuses `FOR UPDATE` beside `UNION`,
/// hence the two sub-selects.
fn claim_statement() -> &'static Statement {
    sql!(
        "WITH due AS ( \
         SELECT * FROM (SELECT id, state AS old_state FROM recordings WHERE ",
        expired_lease!(),
        " ORDER BY lease_expires_at LIMIT $3 FOR UPDATE SKIP LOCKED) AS expired \
         UNION ALL \
         SELECT * FROM (SELECT id, state AS old_state FROM recordings WHERE ",
        due_pending!(),
        " ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) AS pending \
         LIMIT $3) \
         UPDATE recordings SET ",
        claim_assignments!(),
        " FROM due WHERE recordings.id = due.id RETURNING recordings.id, due.old_state, ",
        claim_columns!()
    )
}

/// A shared statement with its values bound as Postgres types.
fn query(call: Call<'_>) -> Query<'_, Postgres, PgArguments> {
    call.values().fold(sqlx::query(call.sql), |query, value| match value {
        Param::Text(v) => query.bind(v),
        Param::OptText(v) => query.bind(v),
        Param::Int(v) => query.bind(v),
        Param::OptInt(v) => query.bind(v),
        Param::Bool(v) => query.bind(v),
        Param::Time(v) => query.bind(v),
        Param::OptTime(v) => query.bind(v),
        // Whole milliseconds, as `millis` counts them everywhere else.
        Param::Interval(v) => {
            query.bind(PgInterval { months: 0, days: 0, microseconds: millis(v).saturating_mul(1000) })
        }
        Param::Json(v) => query.bind(v),
    })
}

impl Cells for PgRow {
    fn text(&self, column: &str) -> StateResult<String> {
        Ok(self.try_get(column)?)
    }
    fn opt_text(&self, column: &str) -> StateResult<Option<String>> {
        Ok(self.try_get(column)?)
    }
    fn int(&self, column: &str) -> StateResult<i64> {
        Ok(i64::from(self.try_get::<i32, _>(column)?))
    }
    fn bigint(&self, column: &str) -> StateResult<i64> {
        Ok(self.try_get(column)?)
    }
    fn opt_bigint(&self, column: &str) -> StateResult<Option<i64>> {
        Ok(self.try_get(column)?)
    }
    fn bool(&self, column: &str) -> StateResult<bool> {
        Ok(self.try_get(column)?)
    }
    fn time(&self, column: &str) -> StateResult<DateTime<Utc>> {
        Ok(self.try_get(column)?)
    }
    fn opt_time(&self, column: &str) -> StateResult<Option<DateTime<Utc>>> {
        Ok(self.try_get(column)?)
    }
    fn json(&self, column: &str) -> StateResult<serde_json::Value> {
        Ok(self.try_get(column)?)
    }
}

impl Backend for PgState {
    type Db = Postgres;
    const SLOT: usize = 0;
    const NOW: Now = Now::Sql("now()");
    const EXPRESSIONS: &'static [(&'static str, &'static str)] = &[
        ("{create_date}", "to_char(create_time AT TIME ZONE 'UTC', 'YYYY-MM-DD')"),
        ("{texts_of_1}", "jsonb_array_elements_text($1)"),
        (
            "{files_size}",
            "CASE WHEN jsonb_typeof(files) = 'array' THEN (SELECT COALESCE(sum(CAST(f.value ->> 'size' AS BIGINT)), 0) \
             FROM jsonb_array_elements(files) AS f) END",
        ),
    ];
    const EXPLAIN: (&'static str, &'static str) = ("EXPLAIN", "QUERY PLAN");

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self) -> sqlx::Result<Transaction<'static, Postgres>> {
        self.pool.begin().await
    }

    async fn begin_read(&self) -> sqlx::Result<Transaction<'static, Postgres>> {
        // NOTE: without REPEATABLE READ each statement would see its own snapshot, and a
        // report's day counts could disagree with its rows.
        self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await
    }

    async fn run_migrations(&self) -> StateResult<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn execute(conn: &mut PgConnection, call: Call<'_>) -> sqlx::Result<u64> {
        Ok(query(call).execute(conn).await?.rows_affected())
    }

    async fn fetch_all(conn: &mut PgConnection, call: Call<'_>) -> sqlx::Result<Vec<PgRow>> {
        query(call).fetch_all(conn).await
    }

    async fn fetch_optional(conn: &mut PgConnection, call: Call<'_>) -> sqlx::Result<Option<PgRow>> {
        query(call).fetch_optional(conn).await
    }

    fn fetch<'c>(conn: &'c mut PgConnection, call: Call<'c>) -> BoxStream<'c, sqlx::Result<PgRow>> {
        query(call).fetch(conn)
    }

    /// One statement for the whole page, and one for its quarantine releases.
    async fn upsert_recordings(s: &mut Session<Self>, items: &[&ListedRecording]) -> StateResult<Upserted> {
        let mut recorded = PageRecorded::default();
        let mut new = Vec::new();
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
            sql!(
                "INSERT INTO recordings (id, scope, site_url, host_email, meeting_id, topic, format, create_time, \
                     size_bytes, listing) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                     $7::text[], $8::timestamptz[], $9::int8[], $10::jsonb[]) \
                 ON CONFLICT (id) DO UPDATE SET site_url = EXCLUDED.site_url, host_email = EXCLUDED.host_email, \
                     meeting_id = EXCLUDED.meeting_id, topic = EXCLUDED.topic, format = EXCLUDED.format, \
                     create_time = EXCLUDED.create_time, size_bytes = EXCLUDED.size_bytes, \
                     listing = EXCLUDED.listing, last_listed_at = {now} \
                 RETURNING id, (xmax = 0) AS inserted"
            )
            .text::<Self>(),
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
        .fetch_all(s.connection())
        .await?;
        for row in rows {
            if row.try_get::<bool, _>("inserted")? {
                recorded.new += 1;
                new.push(row.try_get::<String, _>("id")?);
            } else {
                recorded.refreshed += 1;
            }
        }
        // Their quarantine entries (an earlier, unreadable listing) need no one any more.
        let done = sqlx::query(
            sql!(
                "UPDATE quarantine SET released_at = {now}, released_how = $2 \
                 WHERE recording_id = ANY($1) AND released_at IS NULL RETURNING recording_id"
            )
            .text::<Self>(),
        )
        .bind(&ids)
        .bind(ReleasedHow::Listed.as_str())
        .fetch_all(s.connection())
        .await?;
        recorded.released = done.len() as u64;
        let mut released: Vec<String> =
            done.iter().map(|row| row.try_get::<String, _>("recording_id")).collect::<Result<_, _>>()?;
        released.sort();
        released.dedup();
        Ok(Upserted { recorded, new, released })
    }

    /// One statement for the page's unreadable items.
    async fn upsert_quarantine(s: &mut Session<Self>, items: &[&QuarantinedItem]) -> StateResult<()> {
        let keys: Vec<&str> = items.iter().map(|i| i.key.0.as_str()).collect();
        let ids: Vec<Option<&str>> = items.iter().map(|i| i.recording_id.as_ref().map(|r| r.0.as_str())).collect();
        let scopes: Vec<&str> = items.iter().map(|i| i.scope.0.as_str()).collect();
        let reasons: Vec<&str> = items.iter().map(|i| i.reason.as_str()).collect();
        let raws: Vec<&str> = items.iter().map(|i| i.raw.as_str()).collect();
        let tracking: Vec<Option<&str>> = items.iter().map(|i| i.tracking_id.as_deref()).collect();
        let window_from: Vec<Option<DateTime<Utc>>> = items.iter().map(|i| i.window.map(|w| w.0)).collect();
        let window_to: Vec<Option<DateTime<Utc>>> = items.iter().map(|i| i.window.map(|w| w.1)).collect();
        sqlx::query(
            sql!(
                "INSERT INTO quarantine (key, recording_id, scope, reason, raw, tracking_id, window_from, window_to, \
                     released_at, released_how) \
                 SELECT u.key, u.recording_id, u.scope, u.reason, u.raw, u.tracking_id, u.window_from, u.window_to, \
                     CASE WHEN r.id IS NULL THEN NULL ELSE {now} END, CASE WHEN r.id IS NULL THEN NULL ELSE $7 END \
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                     $8::timestamptz[], $9::timestamptz[]) \
                     AS u(key, recording_id, scope, reason, raw, tracking_id, window_from, window_to) \
                 LEFT JOIN recordings r ON r.id = u.recording_id \
                 ON CONFLICT (key) DO UPDATE SET recording_id = EXCLUDED.recording_id, scope = EXCLUDED.scope, \
                     reason = EXCLUDED.reason, raw = EXCLUDED.raw, tracking_id = EXCLUDED.tracking_id, \
                     window_from = COALESCE(EXCLUDED.window_from, quarantine.window_from), \
                     window_to = COALESCE(EXCLUDED.window_to, quarantine.window_to), \
                     last_seen_at = {now}, seen_count = quarantine.seen_count + 1, \
                     released_at = CASE WHEN EXCLUDED.released_at IS NULL THEN NULL \
                         ELSE COALESCE(quarantine.released_at, EXCLUDED.released_at) END, \
                     released_how = CASE WHEN EXCLUDED.released_at IS NULL THEN NULL \
                         ELSE COALESCE(quarantine.released_how, EXCLUDED.released_how) END"
            )
            .text::<Self>(),
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
        .execute(s.connection())
        .await?;
        Ok(())
    }

    /// One statement ([`claim_statement`]): replicas never wait for each other nor take
    /// the same recording.
    async fn claim(&self, token: &str, lease: Duration, limit: u32) -> StateResult<Vec<Claim>> {
        // A transaction: the claimed events commit with the claims.
        let mut s = Session::begin(self).await?;
        let rows = s
            .fetch_all(claim_statement(), &[Param::Text(token), Param::Interval(lease), Param::Int(i64::from(limit))])
            .await?;
        let claims = rows
            .iter()
            .map(|row| claim_from_row(row, token, row.text("old_state")? == "archiving"))
            .collect::<StateResult<Vec<_>>>()?;
        let claimed: Vec<_> = claims.iter().map(|c| claimed_event(c, token)).collect();
        events::append(&mut s, &claimed).await?;
        s.commit().await?;
        Ok(claims)
    }

    async fn explain_claim(s: &mut Session<Self>) -> StateResult<Vec<String>> {
        s.explain(claim_statement(), &[Param::Text("explain"), Param::Interval(Duration::from_secs(60)), Param::Int(1)])
            .await
    }

    /// One statement for every event.
    async fn insert_events(s: &mut Session<Self>, rows: &[events::EventRow<'_>]) -> StateResult<()> {
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        let ids: Vec<Option<&str>> = rows.iter().map(|r| r.recording_id).collect();
        let kinds: Vec<&str> = rows.iter().map(|r| r.kind).collect();
        let ats: Vec<DateTime<Utc>> = rows.iter().map(|r| r.at).collect();
        let data: Vec<&serde_json::Value> = rows.iter().map(|r| r.data).collect();
        let prevs: Vec<Option<&str>> = rows.iter().map(|r| r.prev_sha256.as_deref()).collect();
        let globals: Vec<Option<&str>> = rows.iter().map(|r| r.prev_global_sha256.as_deref()).collect();
        let hashes: Vec<&str> = rows.iter().map(|r| r.sha256.as_str()).collect();
        sqlx::query(
            sql!(
                "INSERT INTO events (",
                events::event_columns!(),
                ") SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::timestamptz[], $5::jsonb[], \
                     $6::text[], $7::text[], $8::text[])"
            )
            .text::<Self>(),
        )
        .bind(&seqs)
        .bind(&ids)
        .bind(&kinds)
        .bind(&ats)
        .bind(&data)
        .bind(&prevs)
        .bind(&globals)
        .bind(&hashes)
        .execute(s.connection())
        .await?;
        Ok(())
    }

    /// One statement for every id.
    async fn retry_ids(&self, ids: &[RecordingId], by: &Operator) -> StateResult<u64> {
        let ids: Vec<&str> = ids.iter().map(|i| i.0.as_str()).collect();
        let mut s = Session::begin(self).await?;
        let rows = sqlx::query(
            sql!(
                "UPDATE recordings SET ",
                due_again!(),
                " WHERE id = ANY($1) AND state IN ('failed', 'not_downloadable') RETURNING id"
            )
            .text::<Self>(),
        )
        .bind(&ids)
        .fetch_all(s.connection())
        .await?;
        let retried = rows
            .iter()
            .map(|row| Ok(retried_event(&row.try_get::<String, _>("id")?, by)))
            .collect::<StateResult<Vec<_>>>()?;
        events::append(&mut s, &retried).await?;
        s.commit().await?;
        Ok(retried.len() as u64)
    }
}
