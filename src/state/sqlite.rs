//! SQLite: the embedded default for a first run or one small node. WAL mode, a busy
//! timeout, and claims in `BEGIN IMMEDIATE` transactions, so several workers of one
//! process (or a few processes on one host) never claim the same recording.
//!
//! Times are integer milliseconds since the Unix epoch (UTC) and come from this host's
//! clock, read once per operation; JSON is stored as text. Every statement is shared
//! (`statements.rs`), batch forms included: they run row by row in the transaction,
//! except the custody log's rows, inserted in one statement from a JSON array.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::events::{EventRow, event_columns};
use super::sql::{Backend, Call, Cells, Now, Param, Session, sql};
use super::{Planned, StateError, StateResult, millis, statements};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a statement waits for another writer before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The SQLite state store.
#[derive(Debug, Clone)]
pub struct SqliteState {
    pool: SqlitePool,
    path: PathBuf,
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
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

    /// The plan of one of the statements whose plans `tests/it` checks.
    #[doc(hidden)]
    pub async fn explain(&self, statement: Planned) -> StateResult<Vec<String>> {
        statements::explain(self, statement).await
    }
}

fn describe_open_error(path: &Path, e: sqlx::Error) -> StateError {
    StateError::Path { path: path.display().to_string(), problem: "cannot open the SQLite database", source: e.into() }
}

/// A shared statement with its values bound as SQLite stores them.
fn query(call: Call<'_>) -> Query<'_, Sqlite, SqliteArguments<'_>> {
    call.values().fold(sqlx::query(call.sql), |query, value| match value {
        Param::Text(v) => query.bind(v),
        Param::OptText(v) => query.bind(v),
        Param::Int(v) => query.bind(v),
        Param::OptInt(v) => query.bind(v),
        Param::Bool(v) => query.bind(v),
        Param::Time(v) => query.bind(v.timestamp_millis()),
        Param::OptTime(v) => query.bind(v.map(|t| t.timestamp_millis())),
        Param::Interval(v) => query.bind(millis(v)),
        Param::Json(v) => query.bind(v.to_string()),
    })
}

impl Cells for SqliteRow {
    fn text(&self, column: &str) -> StateResult<String> {
        Ok(self.try_get(column)?)
    }
    fn opt_text(&self, column: &str) -> StateResult<Option<String>> {
        Ok(self.try_get(column)?)
    }
    fn int(&self, column: &str) -> StateResult<i64> {
        Ok(self.try_get(column)?)
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
        Ok(at(self.try_get(column)?))
    }
    fn opt_time(&self, column: &str) -> StateResult<Option<DateTime<Utc>>> {
        Ok(self.try_get::<Option<i64>, _>(column)?.map(at))
    }
    fn json(&self, column: &str) -> StateResult<serde_json::Value> {
        serde_json::from_str(self.try_get::<&str, _>(column)?).map_err(StateError::StoredJson)
    }
}

impl Backend for SqliteState {
    type Db = Sqlite;
    const SLOT: usize = 1;
    const NOW: Now = Now::Param;
    const EXPRESSIONS: &'static [(&'static str, &'static str)] = &[
        ("{create_date}", "strftime('%Y-%m-%d', create_time / 1000, 'unixepoch')"),
        ("{texts_of_1}", "json_each($1)"),
        (
            "{files_size}",
            "CASE WHEN json_type(files) = 'array' THEN (SELECT COALESCE(sum(CAST(json_extract(f.value, '$.size') \
             AS INTEGER)), 0) FROM json_each(files) AS f) END",
        ),
    ];
    const EXPLAIN: (&'static str, &'static str) = ("EXPLAIN QUERY PLAN", "detail");

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn begin(&self) -> sqlx::Result<Transaction<'static, Sqlite>> {
        // NOTE: BEGIN IMMEDIATE takes the write lock up front, so a read-then-write
        // transaction cannot fail half-way because another writer got there first.
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    async fn begin_read(&self) -> sqlx::Result<Transaction<'static, Sqlite>> {
        // NOTE: a deferred transaction takes no lock until it reads; in WAL mode it then
        // reads one snapshot to its end while writers go on.
        self.pool.begin_with("BEGIN DEFERRED").await
    }

    async fn run_migrations(&self) -> StateResult<()> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(inner) => describe_open_error(&self.path, inner),
            other => StateError::Migrate(other),
        })
    }

    async fn execute(conn: &mut SqliteConnection, call: Call<'_>) -> sqlx::Result<u64> {
        Ok(query(call).execute(conn).await?.rows_affected())
    }

    async fn fetch_all(conn: &mut SqliteConnection, call: Call<'_>) -> sqlx::Result<Vec<SqliteRow>> {
        query(call).fetch_all(conn).await
    }

    async fn fetch_optional(conn: &mut SqliteConnection, call: Call<'_>) -> sqlx::Result<Option<SqliteRow>> {
        query(call).fetch_optional(conn).await
    }

    fn fetch<'c>(conn: &'c mut SqliteConnection, call: Call<'c>) -> BoxStream<'c, sqlx::Result<SqliteRow>> {
        query(call).fetch(conn)
    }

    /// One statement for every event: the rows as one JSON array of arrays, taken apart
    /// by `json_each` (each statement is a round trip to the connection's thread). `data`
    /// travels as a JSON string, so the stored text is the one that was hashed.
    async fn insert_events(s: &mut Session<Self>, rows: &[EventRow<'_>]) -> StateResult<()> {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!([
                    r.seq,
                    r.recording_id,
                    r.kind,
                    r.at.timestamp_millis(),
                    r.data.to_string(),
                    r.prev_sha256,
                    r.prev_global_sha256,
                    r.sha256
                ])
            })
            .collect();
        s.execute(
            sql!(
                "INSERT INTO events (",
                event_columns!(),
                ") SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), \
                     json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'), \
                     json_extract(value, '$[6]'), json_extract(value, '$[7]') \
                 FROM json_each($1)"
            ),
            &[Param::Json(&serde_json::Value::Array(rows))],
        )
        .await?;
        Ok(())
    }
}
