//! What the two backends share, and the one place each says how it differs.
//!
//! Every statement of the state layer is written once (see `statements.rs`) and run by
//! one implementation of [`StateStore`](super::StateStore) over a small [`Backend`]
//! trait. A backend (`postgres.rs`, `sqlite.rs`) supplies only what differs:
//!
//! - **Placeholders:** none. Statements use `$1`, `$2`, ...: Postgres's own style, which
//!   the SQLite driver also accepts (it binds `$NNN` by number).
//! - **Expressions written differently:** a few named expressions (`{create_date}`,
//!   `{files_size}`, see [`Backend::EXPRESSIONS`]) are rendered in each database's own
//!   words, as `{now}` is.
//! - **"Now":** statements write `{now}`. Postgres renders it `now()`, so time comes
//!   from the database and replicas agree on leases; SQLite renders it as one more
//!   parameter, bound to the host's clock read once per [`Session`] (one operation),
//!   as the SQLite backend always did.
//! - **Times, durations and JSON:** values are passed as typed [`Param`]s, which each
//!   backend encodes (`timestamptz`, `interval`, `jsonb` in Postgres; integer
//!   milliseconds and text in SQLite), and rows are read through [`Cells`], which
//!   decodes them back.
//! - **Locking:** [`Backend::begin`] opens the transaction of a read-then-write
//!   sequence (SQLite takes its write lock up front: `BEGIN IMMEDIATE`).
//! - **Batch forms:** [`Backend`]'s hooks (`upsert_recordings`, `upsert_quarantine`,
//!   `claim`, `retry_ids`) default to a portable row-by-row form in a transaction;
//!   Postgres overrides them with single statements (`UNNEST` arrays, `xmax = 0`,
//!   `ANY`, `FOR UPDATE SKIP LOCKED`). `insert_events` has no portable form: each
//!   backend inserts a batch of custody events in one statement (`UNNEST`, `json_each`).
//!
//! Why this shape, and not another:
//! - sqlx's `Any` driver knows neither `timestamptz`, `jsonb` nor arrays: it would have
//!   meant a new schema and giving up the batch forms.
//! - Code generic over `sqlx::Database` needs a where-clause per bound type and
//!   executor, repeated on every helper (Rust does not imply them), and such futures
//!   trip `async_trait`'s `Send` requirement in ways that are hard to read.
//! - A backend that only renders, binds and decodes stays concrete: it calls sqlx with
//!   its own types, so the shared code needs no sqlx bounds at all, and what differs
//!   between the databases is visible in two short files.
//!
//! Rendering happens once per statement and backend (cached in the statement's
//! `static`), so the shared form costs nothing per call but a match per bound value.

use std::fmt;
use std::future::Future;
use std::ops::DerefMut;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use futures::stream::BoxStream;
use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool, Transaction};

use super::events::EventRow;
use super::{Claim, ListedRecording, Operator, QuarantinedItem, RecordingId, StateError, StateResult, statements};
use statements::Upserted;

/// A statement written once for both backends: `$1`, `$2`, ... for parameters and
/// `{now}` for the current time. Declare it with [`sql!`], which keeps it in a
/// `static` so that each backend renders it once.
pub(super) struct Statement {
    text: &'static str,
    rendered: [OnceLock<Rendered>; 2],
}

/// A statement as one backend runs it.
#[derive(Debug)]
struct Rendered {
    sql: String,
    /// Parameters the caller binds (the highest `$n` of the statement).
    arity: usize,
    /// The backend binds "now" as parameter `arity + 1`.
    binds_now: bool,
}

impl Statement {
    /// A statement from its text (see [`sql!`]).
    pub(super) const fn new(text: &'static str) -> Self {
        Self { text, rendered: [OnceLock::new(), OnceLock::new()] }
    }

    /// The statement as backend `B` runs it, rendered on first use.
    fn rendered<B: Backend>(&'static self) -> &'static Rendered {
        self.rendered[B::SLOT].get_or_init(|| render(&expand(self.text, B::EXPRESSIONS), B::NOW))
    }

    /// The SQL text for backend `B`, to bind by hand (a backend's own batch forms).
    /// Only for a backend that binds no "now" (Postgres).
    pub(super) fn text<B: Backend>(&'static self) -> &'static str {
        let rendered = self.rendered::<B>();
        debug_assert!(!rendered.binds_now, "{:?} needs a bound now: run it through a Session", rendered.sql);
        &rendered.sql
    }
}

/// A [`Statement`] in a `static` of its own, from string literals (and macros that
/// expand to them, such as `cursor_columns!()`), as `concat!` takes them.
macro_rules! sql {
    ($($part:tt)+) => {{
        static STATEMENT: $crate::state::sql::Statement = $crate::state::sql::Statement::new(concat!($($part)+));
        &STATEMENT
    }};
}
pub(super) use sql;

/// How a backend says "now" in a statement.
#[derive(Debug, Clone, Copy)]
pub(super) enum Now {
    /// An SQL expression evaluated by the database.
    Sql(&'static str),
    /// A parameter bound to the time the [`Session`] began.
    Param,
}

fn render(text: &str, now: Now) -> Rendered {
    let arity = highest_placeholder(text);
    let (now_text, binds_now) = match now {
        Now::Sql(expression) => (expression.to_owned(), false),
        Now::Param => (format!("${}", arity + 1), text.contains("{now}")),
    };
    Rendered { sql: text.replace("{now}", &now_text), arity, binds_now }
}

/// A statement with each named expression of `expressions` written out.
fn expand(text: &str, expressions: &[(&str, &str)]) -> String {
    expressions.iter().fold(text.to_owned(), |text, (name, expression)| text.replace(name, expression))
}

/// The highest `$n` of a statement.
fn highest_placeholder(text: &str) -> usize {
    text.split('$')
        .skip(1)
        .filter_map(|rest| {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            rest[..digits].parse::<usize>().ok()
        })
        .max()
        .unwrap_or(0)
}

/// A value bound to a statement, by what it means; each backend encodes it its own way.
#[derive(Debug, Clone, Copy)]
pub(super) enum Param<'a> {
    /// Text.
    Text(&'a str),
    /// Text or NULL.
    OptText(Option<&'a str>),
    /// An integer.
    Int(i64),
    /// An integer or NULL.
    OptInt(Option<i64>),
    /// A boolean.
    Bool(bool),
    /// An instant.
    Time(DateTime<Utc>),
    /// An instant or NULL.
    OptTime(Option<DateTime<Utc>>),
    /// A span of time, added to instants (milliseconds are kept, as `millis` does).
    Interval(Duration),
    /// A JSON document.
    Json(&'a serde_json::Value),
}

/// One statement ready to run: its text for the backend and every value, in order.
#[derive(Debug, Clone, Copy)]
pub(super) struct Call<'a> {
    /// The SQL text.
    pub(super) sql: &'a str,
    params: &'a [Param<'a>],
    now: Option<DateTime<Utc>>,
}

impl<'a> Call<'a> {
    /// The values to bind, in order ("now" last, when the backend binds it).
    pub(super) fn values(self) -> impl Iterator<Item = Param<'a>> {
        self.params.iter().copied().chain(self.now.map(Param::Time))
    }
}

/// Reads a row's columns as the domain wants them; each backend decodes its own types.
pub(super) trait Cells {
    /// A text column.
    fn text(&self, column: &str) -> StateResult<String>;
    /// A nullable text column.
    fn opt_text(&self, column: &str) -> StateResult<Option<String>>;
    /// An `INTEGER` column (32 bits in Postgres).
    fn int(&self, column: &str) -> StateResult<i64>;
    /// A `BIGINT` column, a `count(*)` or a sum cast to `BIGINT`.
    fn bigint(&self, column: &str) -> StateResult<i64>;
    /// A nullable `BIGINT` column.
    fn opt_bigint(&self, column: &str) -> StateResult<Option<i64>>;
    /// A boolean column.
    fn bool(&self, column: &str) -> StateResult<bool>;
    /// An instant.
    fn time(&self, column: &str) -> StateResult<DateTime<Utc>>;
    /// A nullable instant.
    fn opt_time(&self, column: &str) -> StateResult<Option<DateTime<Utc>>>;
    /// A JSON document.
    fn json(&self, column: &str) -> StateResult<serde_json::Value>;
}

/// A database's row type.
pub(super) type Row<B> = <<B as Backend>::Db as Database>::Row;
/// A database's connection type.
pub(super) type Connection<B> = <<B as Backend>::Db as Database>::Connection;

/// What one database does its own way. Implemented by [`PgState`](super::PgState) and
/// [`SqliteState`](super::SqliteState); everything else is shared.
pub(super) trait Backend: fmt::Debug + Send + Sync + Sized + 'static {
    /// The sqlx database.
    type Db: Database<Row: Cells>;
    /// Which of a [`Statement`]'s two cached renderings is this backend's (0 or 1).
    const SLOT: usize;
    /// How statements say "now".
    const NOW: Now;
    /// Expressions the two databases write differently, by the name statements use:
    /// `{create_date}`, the UTC day of `create_time` as `YYYY-MM-DD` text; `{texts_of_1}`,
    /// the text elements of the JSON array `$1` as a table of one column, `value`; `{files_size}`,
    /// the sum of the `size` members of the JSON array `files` (0 for an empty array,
    /// NULL when `files` is not an array).
    const EXPRESSIONS: &'static [(&'static str, &'static str)];
    /// What asks the database for a statement's plan without running it, and the column
    /// of each line of its answer.
    const EXPLAIN: (&'static str, &'static str);

    /// The connection pool.
    fn pool(&self) -> &Pool<Self::Db>;
    /// Begins the transaction of a read-then-write sequence (claiming, moving a cursor
    /// with its page, taking a lease that may not exist yet).
    fn begin(&self) -> impl Future<Output = sqlx::Result<Transaction<'static, Self::Db>>> + Send;
    /// Begins a read-only transaction that sees one snapshot of the database from its
    /// first statement to its end, and takes no write lock (the attestation report).
    fn begin_read(&self) -> impl Future<Output = sqlx::Result<Transaction<'static, Self::Db>>> + Send;
    /// Applies the embedded migrations.
    fn run_migrations(&self) -> impl Future<Output = StateResult<()>> + Send;

    /// Runs a statement; the number of rows it changed.
    fn execute(conn: &mut Connection<Self>, call: Call<'_>) -> impl Future<Output = sqlx::Result<u64>> + Send;
    /// Runs a query; every row.
    fn fetch_all(
        conn: &mut Connection<Self>,
        call: Call<'_>,
    ) -> impl Future<Output = sqlx::Result<Vec<Row<Self>>>> + Send;
    /// Runs a query; its first row, if any.
    fn fetch_optional(
        conn: &mut Connection<Self>,
        call: Call<'_>,
    ) -> impl Future<Output = sqlx::Result<Option<Row<Self>>>> + Send;

    /// Runs a query; its rows as they arrive, none held beyond the one being read.
    fn fetch<'c>(conn: &'c mut Connection<Self>, call: Call<'c>) -> BoxStream<'c, sqlx::Result<Row<Self>>>;

    // --- batch forms: portable by default ---

    /// Inserts recordings or refreshes their listing fields (never their archive state),
    /// and releases their open quarantine entries. `items` has no id twice. Also returns
    /// the ids of the recordings it inserted (their `discovered` events follow) and of
    /// those whose quarantine entry it released (their `quarantine_released` events).
    fn upsert_recordings(
        s: &mut Session<Self>,
        items: &[&ListedRecording],
    ) -> impl Future<Output = StateResult<Upserted>> + Send {
        statements::upsert_recordings_one_by_one(s, items)
    }

    /// Records unreadable items: a new entry, or the existing one seen again. An entry
    /// whose recording is already recorded is released at once (nothing is lost); any
    /// other entry seen again is reopened. `items` has no key twice.
    fn upsert_quarantine(
        s: &mut Session<Self>,
        items: &[&QuarantinedItem],
    ) -> impl Future<Output = StateResult<()>> + Send {
        statements::upsert_quarantine_one_by_one(s, items)
    }

    /// Claims up to `limit` due recordings with lease token `token`, appending their
    /// `claimed` events in the same transaction.
    fn claim(&self, token: &str, lease: Duration, limit: u32) -> impl Future<Output = StateResult<Vec<Claim>>> + Send {
        statements::claim_in_transaction(self, token, lease, limit)
    }

    /// The plan of what a claim runs to choose its recordings (see [`Session::explain`]).
    fn explain_claim(s: &mut Session<Self>) -> impl Future<Output = StateResult<Vec<String>>> + Send {
        statements::explain_claim(s)
    }

    /// Inserts the custody log's rows in one statement (each backend has its own way of
    /// passing many rows at once).
    fn insert_events(s: &mut Session<Self>, rows: &[EventRow<'_>]) -> impl Future<Output = StateResult<()>> + Send;

    /// Makes the given `failed` or `not_downloadable` recordings due again, appending
    /// their `retried` events (by `by`) in the same transaction.
    fn retry_ids(&self, ids: &[RecordingId], by: &Operator) -> impl Future<Output = StateResult<u64>> + Send {
        statements::retry_ids_one_by_one(self, ids, by)
    }
}

/// The connection of one operation: pooled (each statement commits on its own) or a
/// transaction; and the operation's clock, for backends that bind "now".
pub(super) struct Session<B: Backend> {
    conn: Held<B::Db>,
    now: DateTime<Utc>,
}

enum Held<DB: Database> {
    Pooled(PoolConnection<DB>),
    Transaction(Transaction<'static, DB>),
}

impl<B: Backend> Session<B> {
    /// A pooled connection: each statement commits on its own.
    pub(super) async fn connect(backend: &B) -> StateResult<Self> {
        Ok(Self { conn: Held::Pooled(backend.pool().acquire().await?), now: Utc::now() })
    }

    /// A transaction (see [`Backend::begin`]); dropped without [`Session::commit`], it
    /// rolls back.
    pub(super) async fn begin(backend: &B) -> StateResult<Self> {
        Ok(Self { conn: Held::Transaction(backend.begin().await?), now: Utc::now() })
    }

    /// A read-only transaction on one snapshot (see [`Backend::begin_read`]).
    pub(super) async fn read(backend: &B) -> StateResult<Self> {
        Ok(Self { conn: Held::Transaction(backend.begin_read().await?), now: Utc::now() })
    }

    /// Commits the transaction (nothing to do for a pooled connection).
    pub(super) async fn commit(self) -> StateResult<()> {
        if let Held::Transaction(tx) = self.conn {
            tx.commit().await?;
        }
        Ok(())
    }

    /// The connection, for a backend's own statements.
    pub(super) fn connection(&mut self) -> &mut Connection<B> {
        match &mut self.conn {
            Held::Pooled(conn) => conn.deref_mut(),
            Held::Transaction(tx) => tx.deref_mut(),
        }
    }

    fn call<'a>(&self, statement: &'static Statement, params: &'a [Param<'a>]) -> Call<'a> {
        let rendered = statement.rendered::<B>();
        // NOTE: sqlx's SQLite driver binds a parameter it was given no value for as NULL,
        // without an error: a statement and its values must agree, and tests check it.
        debug_assert_eq!(params.len(), rendered.arity, "parameters of {:?}", rendered.sql);
        Call { sql: &rendered.sql, params, now: rendered.binds_now.then_some(self.now) }
    }

    /// Runs a statement; the number of rows it changed.
    pub(super) async fn execute(&mut self, statement: &'static Statement, params: &[Param<'_>]) -> StateResult<u64> {
        let call = self.call(statement, params);
        Ok(B::execute(self.connection(), call).await?)
    }

    /// Runs a query; every row.
    pub(super) async fn fetch_all(
        &mut self,
        statement: &'static Statement,
        params: &[Param<'_>],
    ) -> StateResult<Vec<Row<B>>> {
        let call = self.call(statement, params);
        Ok(B::fetch_all(self.connection(), call).await?)
    }

    /// Runs a query; its first row, if any.
    pub(super) async fn fetch_optional(
        &mut self,
        statement: &'static Statement,
        params: &[Param<'_>],
    ) -> StateResult<Option<Row<B>>> {
        let call = self.call(statement, params);
        Ok(B::fetch_optional(self.connection(), call).await?)
    }

    /// Runs a query; its rows as they arrive.
    pub(super) fn fetch<'s>(
        &'s mut self,
        statement: &'static Statement,
        params: &'s [Param<'s>],
    ) -> BoxStream<'s, StateResult<Row<B>>> {
        let call = self.call(statement, params);
        B::fetch(self.connection(), call).map(|row| row.map_err(StateError::from)).boxed()
    }

    /// The database's plan of a statement with these values, one line per row of its
    /// answer (`EXPLAIN` in Postgres, `EXPLAIN QUERY PLAN` in SQLite): planned, not run.
    pub(super) async fn explain(
        &mut self,
        statement: &'static Statement,
        params: &[Param<'_>],
    ) -> StateResult<Vec<String>> {
        let call = self.call(statement, params);
        let (explain, column) = B::EXPLAIN;
        let text = format!("{explain} {}", call.sql);
        let rows = B::fetch_all(self.connection(), Call { sql: &text, ..call }).await?;
        rows.iter().map(|row| row.text(column)).collect()
    }

    /// Runs a query that returns a row.
    pub(super) async fn fetch_one(
        &mut self,
        statement: &'static Statement,
        params: &[Param<'_>],
    ) -> StateResult<Row<B>> {
        Ok(self.fetch_optional(statement, params).await?.ok_or(sqlx::Error::RowNotFound)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_rendered_as_sql_or_as_the_next_parameter() {
        let text = "UPDATE t SET a = $2, at = {now} + $3 WHERE id = $1 AND until < {now}";
        let pg = render(text, Now::Sql("now()"));
        assert_eq!(pg.sql, "UPDATE t SET a = $2, at = now() + $3 WHERE id = $1 AND until < now()");
        assert_eq!((pg.arity, pg.binds_now), (3, false));
        let sqlite = render(text, Now::Param);
        assert_eq!(sqlite.sql, "UPDATE t SET a = $2, at = $4 + $3 WHERE id = $1 AND until < $4");
        assert_eq!((sqlite.arity, sqlite.binds_now), (3, true));
    }

    #[test]
    fn named_expressions_are_written_in_each_database_s_words() {
        let text = "SELECT {create_date} AS day, {files_size} AS size FROM recordings WHERE id = $1";
        let pg = render(&expand(text, super::super::PgState::EXPRESSIONS), Now::Sql("now()"));
        assert!(pg.sql.contains("to_char(create_time AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day"), "{}", pg.sql);
        assert!(pg.sql.contains("jsonb_array_elements(files)"), "{}", pg.sql);
        let sqlite = render(&expand(text, super::super::SqliteState::EXPRESSIONS), Now::Param);
        assert!(sqlite.sql.contains("strftime('%Y-%m-%d', create_time / 1000, 'unixepoch') AS day"), "{}", sqlite.sql);
        assert!(sqlite.sql.contains("json_each(files)"), "{}", sqlite.sql);
        for rendered in [pg, sqlite] {
            assert!(!rendered.sql.contains('{'), "every name is written out: {}", rendered.sql);
            assert_eq!(rendered.arity, 1);
        }
    }

    #[test]
    fn a_statement_without_now_binds_only_its_parameters() {
        let sqlite = render("SELECT $10, $9 FROM t", Now::Param);
        assert_eq!(sqlite.sql, "SELECT $10, $9 FROM t");
        assert_eq!((sqlite.arity, sqlite.binds_now), (10, false));
        assert_eq!(render("SELECT 1", Now::Param).arity, 0);
    }
}
