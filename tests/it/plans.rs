//! Query plans on a filled database (issue 16): the statements a worker runs for every
//! recording (the claim, marking it archived, the custody log's head lookup), a draining
//! worker's question, and `status`'s queries reach their rows through an index, not by
//! reading the whole table. Checked with `EXPLAIN` (Postgres) and `EXPLAIN QUERY PLAN`
//! (SQLite) on 100,000 recordings after `ANALYZE`, not by timing: drop an index and the
//! check fails.

use webex_archiver::state::{PgState, Planned, SqliteState};

use crate::helpers::{Backend, TestState};

/// Recordings in the filled database: enough that reading the table is never the
/// planner's cheapest choice when an index answers.
const ROWS: i64 = 100_000;

/// A realistic mix (per thousand: 940 archived, 25 not downloadable, 10 failed, 5 lost at
/// the source, 18 pending, 2 archiving; 3% deleted at the source) over five years, with
/// the `discovered` and final events of each recording.
const FILL_POSTGRES: &str = include_str!("../fixtures/scale/recordings.postgres.sql");

const EVENTS_POSTGRES: &str = include_str!("../fixtures/scale/events.postgres.sql");

/// The same mix in SQLite (times in milliseconds; `$1` rows, `$2` now).
const FILL_SQLITE: &str = include_str!("../fixtures/scale/recordings.sqlite.sql");

const EVENTS_SQLITE: &str = include_str!("../fixtures/scale/events.sqlite.sql");

/// Each statement and the indexes its plan must use (`a|b`: either), in Postgres and in
/// SQLite. SQLite answers the oldest unarchived recording and the latest failures from
/// the `(state, bytes)` index and a sort of those few rows, which its planner finds
/// cheaper after `ANALYZE` than the partial indexes Postgres uses; either way no plan
/// reads the whole table.
const EXPECTED: &[(Planned, &[&str], &[&str])] = &[
    (Planned::Claim, &["recordings_leased", "recordings_due"], &["recordings_leased", "recordings_due"]),
    (Planned::Finish, &["recordings_pkey"], &["sqlite_autoindex_recordings"]),
    (Planned::EventHead, &["events_recording"], &["events_recording"]),
    (Planned::StatusCounts, &["recordings_state_bytes"], &["recordings_state_bytes"]),
    (Planned::StatusFacts, FACTS, FACTS),
    (Planned::OldestUnarchived, &["recordings_unarchived"], &["recordings_unarchived|recordings_state_bytes"]),
    (Planned::RecentFailures, &["recordings_final_failures"], &["recordings_final_failures|recordings_state_bytes"]),
    (Planned::NextWork, &["recordings_due", "recordings_leased"], &["recordings_due", "recordings_leased"]),
    (Planned::ClaimedPrefixes, &["recordings_object_prefix"], &["recordings_object_prefix"]),
];

const FACTS: &[&str] = &[
    "recordings_due",
    "recordings_size_mismatch",
    "recordings_lease_expiries",
    "recordings_deleted_at_source",
    "recordings_purged_at_source",
];

/// A plan line that reads the whole `recordings` or `events` table rather than an index.
fn reads_a_whole_table(line: &str) -> bool {
    let line = line.trim_start_matches([' ', '-', '>']);
    // Postgres: "Seq Scan on recordings  (cost=...)"; SQLite: "SCAN recordings" (with an
    // index it says "SCAN recordings USING [COVERING] INDEX ...", reading only the index).
    ["recordings", "events"]
        .iter()
        .any(|table| line.starts_with(&format!("Seq Scan on {table} ")) || line == format!("SCAN {table}"))
}

async fn check(backend: Backend, explain: impl AsyncFn(Planned) -> Vec<String>) {
    let mut failures = Vec::new();
    for (statement, postgres, sqlite) in EXPECTED {
        let indexes = if backend == Backend::Postgres { postgres } else { sqlite };
        let plan = explain(*statement).await;
        let text = plan.join("\n");
        for index in *indexes {
            if !index.split('|').any(|name| text.contains(name)) {
                failures.push(format!("{statement:?} does not use {index}:\n{text}"));
            }
        }
        if let Some(line) = plan.iter().find(|l| reads_a_whole_table(l)) {
            failures.push(format!("{statement:?} reads a whole table ({}):\n{text}", line.trim()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test]
async fn claim_finish_and_status_use_indexes_on_postgres() {
    let s = TestState::new(Backend::Postgres).await;
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&s.url).await.unwrap();
    sqlx::query(FILL_POSTGRES).bind(ROWS).execute(&mut db).await.unwrap();
    sqlx::query(EVENTS_POSTGRES).execute(&mut db).await.unwrap();
    // As autovacuum leaves a table: statistics, and the visibility map that lets an
    // index answer alone.
    sqlx::query("VACUUM ANALYZE").execute(&mut db).await.unwrap();
    let state = PgState::connect(&s.url, 2, std::time::Duration::from_secs(10)).await.unwrap();
    check(Backend::Postgres, async |statement| state.explain(statement).await.unwrap()).await;
}

#[tokio::test]
async fn claim_finish_and_status_use_indexes_on_sqlite() {
    let s = TestState::new(Backend::Sqlite).await;
    let db = sqlx::SqlitePool::connect(&s.url).await.unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    sqlx::query(FILL_SQLITE).bind(ROWS).bind(now).execute(&db).await.unwrap();
    sqlx::query(EVENTS_SQLITE).execute(&db).await.unwrap();
    sqlx::query("ANALYZE").execute(&db).await.unwrap();
    db.close().await;
    let state = SqliteState::open(&s.url, 2, std::time::Duration::from_secs(10)).await.unwrap();
    check(Backend::Sqlite, async |statement| state.explain(statement).await.unwrap()).await;
}
