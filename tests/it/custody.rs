//! The custody log: what a sync records per recording, the two hash chains, the
//! append-only triggers, tampering found by `verify --log`, concurrent appenders, and
//! `history --json`.

use std::process::Command;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use webex_archiver::sim::{NewRecording, SimConfig};
use webex_archiver::state::{ListedIn, ListedRecording, Outcome, RecordingId, ScopeKey, State};
use webex_archiver::verify::{verify_log, verify_log_in_batches};

use crate::helpers::{Backend, TestState, operator};
use crate::sync::{Harness, Store};

const LEASE: Duration = Duration::from_secs(60);

fn listed(id: &str) -> ListedRecording {
    ListedRecording {
        id: RecordingId(id.into()),
        scope: ScopeKey::user(),
        site_url: None,
        host_email: None,
        meeting_id: None,
        topic: Some("t".into()),
        format: Some("MP4".into()),
        create_time: Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap(),
        size_bytes: Some(10),
        listing: serde_json::json!({"id": id}),
        listed_in: Default::default(),
    }
}

async fn types(state: &State, id: &str) -> Vec<String> {
    state.history(&RecordingId(id.into())).await.unwrap().into_iter().map(|e| e.kind).collect()
}

/// The binary, on the given database, for commands that need only the state.
fn binary(url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_webex-archiver"));
    command.env_remove("RUST_LOG").env("WEBEX_ARCHIVER__DATABASE__URL", url);
    command
}

async fn a_sync_records_discovered_claimed_archived_per_recording(backend: Backend) {
    let config = SimConfig { recordings: 4, seed: 7, prevent_downloading_ids: Vec::new(), ..Default::default() };
    let h = Harness::start(backend, Store::Local, "admin", config).await;
    let prevented = h
        .sim
        .add_recording(NewRecording {
            create_time: Utc::now() - chrono::Duration::days(2),
            prevent_downloading: true,
            ..Default::default()
        })
        .unwrap();
    let report = h.sync().await;
    assert_eq!(report.exit, 0, "{report:?}");
    let state = &h.db.state;
    let truth: Vec<_> =
        h.sim.truth().into_iter().filter(|r| r.status == "available" && r.visible_at <= Utc::now()).collect();
    assert_eq!(truth.len(), 5);
    let mut total = 0;
    for recording in &truth {
        let events = state.history(&RecordingId(recording.id.clone())).await.unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        let last = if recording.id == prevented.id { "not_downloadable" } else { "archived" };
        assert_eq!(kinds, ["discovered", "claimed", last], "{}", recording.id);
        // The recording's chain links each event to the one before it.
        assert_eq!(events[0].prev_sha256, None);
        for pair in events.windows(2) {
            assert_eq!(pair[1].prev_sha256.as_deref(), Some(pair[0].sha256.as_str()));
            assert!(pair[0].seq < pair[1].seq);
        }
        assert_eq!(events[0].data["scope"], format!("admin:{}", recording.site_url));
        assert!(events[0].data["window_from"].is_string(), "the listing window is recorded: {}", events[0].data);
        assert_eq!(events[1].data["attempt"], 1);
        if last == "archived" {
            let data = &events[2].data;
            assert_eq!(data["sha256"].as_str(), recording.sha256.as_deref());
            assert_eq!(data["bytes"].as_u64(), Some(recording.size_bytes));
            assert_eq!(data["files"][0]["sha256"].as_str(), recording.sha256.as_deref());
            assert!(data["files"][0]["key"].is_string(), "{data}");
        }
        total += events.len() as u64;
    }
    let log = verify_log(state).await.unwrap();
    assert!(log.intact(), "{}", webex_archiver::verify::log_report_text(&log));
    // Every other event is a daily manifest written (of no recording).
    let manifests = report.manifests.len() as u64;
    assert!(manifests > 0, "the sync wrote manifests for its settled days");
    assert_eq!(log.events, total + manifests, "every event belongs to a recording or is a manifest");
    assert_eq!(log.recordings, 5);
    assert_eq!(state.events_head().await.unwrap().0, (total + manifests) as i64);
}

#[tokio::test]
async fn a_sync_records_the_expected_events_on_sqlite() {
    a_sync_records_discovered_claimed_archived_per_recording(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_sync_records_the_expected_events_on_postgres() {
    a_sync_records_discovered_claimed_archived_per_recording(Backend::Postgres).await;
}

async fn failures_and_an_operator_retry_are_recorded(backend: Backend) {
    let s = TestState::new(backend).await;
    s.state.record_page(&ScopeKey::user(), "o", &[listed("a"), listed("b")], &[], None).await.unwrap();
    // A page listing them again records nothing new.
    s.state.record_page(&ScopeKey::user(), "o", &[listed("a")], &[], None).await.unwrap();
    let claims = s.state.claim_due("replica-1", LEASE, 10).await.unwrap();
    assert_eq!(claims.len(), 2);
    for claim in &claims {
        let outcome = Outcome::Failed { reason: "http_4xx".into(), message: "gone".into() };
        assert!(s.state.finish(&claim.id, &claim.token, &outcome).await.unwrap());
    }
    // A finish by a lost lease changes nothing and records nothing.
    assert!(!s.state.finish(&claims[0].id, "someone-else/x", &Outcome::Release { at: Utc::now() }).await.unwrap());
    assert_eq!(s.state.retry(Some(&[RecordingId("a".into())]), &operator()).await.unwrap(), 1);
    let a = s.state.history(&RecordingId("a".into())).await.unwrap();
    let kinds: Vec<&str> = a.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["discovered", "claimed", "failed", "retried"]);
    assert_eq!(a[1].data["owner"], "replica-1");
    assert_eq!(a[2].data["reason"], "http_4xx");
    assert_eq!(a[3].data, serde_json::json!({"user": "tester", "host": "test-host"}));
    assert_eq!(types(&s.state, "b").await, ["discovered", "claimed", "failed"]);
    assert_eq!(s.state.retry(None, &operator()).await.unwrap(), 1, "b is the one failed left");
    assert_eq!(types(&s.state, "b").await, ["discovered", "claimed", "failed", "retried"]);
    // Read 3 at a time: the chains are checked across batches.
    let log = verify_log_in_batches(&s.state, 3).await.unwrap();
    assert!(log.intact(), "{}", webex_archiver::verify::log_report_text(&log));
    assert_eq!(log.events, 8);
}

#[tokio::test]
async fn failures_and_retries_are_recorded_on_sqlite() {
    failures_and_an_operator_retry_are_recorded(Backend::Sqlite).await;
}

#[tokio::test]
async fn failures_and_retries_are_recorded_on_postgres() {
    failures_and_an_operator_retry_are_recorded(Backend::Postgres).await;
}

/// Appends of many events at once (a page of new recordings; a retry of recordings that
/// already have chains) keep both chains, in order, with text that needs escaping kept
/// byte for byte (SQLite inserts the batch from one JSON array).
async fn batched_appends_keep_both_chains(backend: Backend) {
    let s = TestState::new(backend).await;
    let odd = "naïve \"quoted\" \\ tab\t newline\n 😀 ";
    let items: Vec<ListedRecording> = (0..50)
        .map(|i| ListedRecording {
            listed_in: ListedIn { tracking_id: Some(format!("{odd}{i}")), ..Default::default() },
            ..listed(&format!("r{i:02}"))
        })
        .collect();
    assert_eq!(s.state.record_page(&ScopeKey::user(), "o", &items, &[], None).await.unwrap().new, 50);
    let claims = s.state.claim_due("replica-1", LEASE, 50).await.unwrap();
    assert_eq!(claims.len(), 50);
    for claim in &claims {
        let outcome = Outcome::Failed { reason: "http_4xx".into(), message: "gone".into() };
        assert!(s.state.finish(&claim.id, &claim.token, &outcome).await.unwrap());
    }
    // One append of 50 events, each continuing a chain that already has three.
    assert_eq!(s.state.retry(None, &operator()).await.unwrap(), 50);
    for i in [0, 17, 49] {
        let events = s.state.history(&RecordingId(format!("r{i:02}"))).await.unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["discovered", "claimed", "failed", "retried"], "r{i:02}");
        assert_eq!(events[0].prev_sha256, None);
        for pair in events.windows(2) {
            assert_eq!(pair[1].prev_sha256.as_deref(), Some(pair[0].sha256.as_str()), "r{i:02}");
        }
        assert_eq!(events[0].data["tracking_id"], format!("{odd}{i}"));
    }
    let log = verify_log_in_batches(&s.state, 16).await.unwrap();
    assert!(log.intact(), "{}", webex_archiver::verify::log_report_text(&log));
    assert_eq!(log.events, 200);
    assert_eq!(log.recordings, 50);
}

#[tokio::test]
async fn batched_appends_keep_both_chains_on_sqlite() {
    batched_appends_keep_both_chains(Backend::Sqlite).await;
}

#[tokio::test]
async fn batched_appends_keep_both_chains_on_postgres() {
    batched_appends_keep_both_chains(Backend::Postgres).await;
}

async fn events_table(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await.unwrap()
}

#[tokio::test]
async fn postgres_refuses_update_delete_and_truncate_and_verify_names_a_tampered_seq() {
    let s = TestState::new(Backend::Postgres).await;
    s.state.record_page(&ScopeKey::user(), "o", &[listed("a"), listed("b"), listed("c")], &[], None).await.unwrap();
    assert_eq!(s.state.claim_due("replica-1", LEASE, 10).await.unwrap().len(), 3, "seq 4 to 6");
    let mut conn = events_table(&s.url).await;
    for statement in
        ["UPDATE events SET type = 'x' WHERE seq = 2", "DELETE FROM events WHERE seq = 2", "TRUNCATE events"]
    {
        let err = sqlx::query(statement).execute(&mut conn).await.expect_err(statement);
        assert!(err.to_string().contains("append-only"), "{statement}: {err}");
    }
    let out = binary(&s.url).args(["verify", "--log"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // Only by disabling the trigger (a superuser or the table's owner) can a row change.
    sqlx::query("ALTER TABLE events DISABLE TRIGGER events_no_update_or_delete").execute(&mut conn).await.unwrap();
    sqlx::query("UPDATE events SET data = '{\"scope\": \"forged\"}' WHERE seq = 2").execute(&mut conn).await.unwrap();
    let out = binary(&s.url).args(["verify", "--log"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("seq 2 recording b") && stdout.contains("edited"), "{stdout}");
    // A removal breaks the global chain where the gap is.
    sqlx::query("DELETE FROM events WHERE seq = 5").execute(&mut conn).await.unwrap();
    let report = verify_log_in_batches(&s.state, 1).await.unwrap();
    assert!(report.breaks.iter().any(|b| b.seq == 2 && b.detail.contains("edited")), "{:?}", report.breaks);
    assert!(
        report.breaks.iter().any(|b| b.seq == 6 && b.detail.contains("seq 6 follows seq 4: events are missing")),
        "{:?}",
        report.breaks
    );
    assert!(report.breaks.iter().any(|b| b.seq == 6 && b.detail.contains("prev_global_sha256")), "{:?}", report.breaks);
    // And removing the last event leaves the head pointing past the end.
    sqlx::query("DELETE FROM events WHERE seq = 6").execute(&mut conn).await.unwrap();
    let report = verify_log(&s.state).await.unwrap();
    assert!(report.breaks.iter().any(|b| b.seq == 6 && b.detail.contains("head")), "{:?}", report.breaks);
}

#[tokio::test]
async fn sqlite_refuses_update_and_delete_and_verify_names_a_tampered_seq() {
    let s = TestState::new(Backend::Sqlite).await;
    s.state.record_page(&ScopeKey::user(), "o", &[listed("a"), listed("b"), listed("c")], &[], None).await.unwrap();
    let pool = sqlx::SqlitePool::connect(&s.url).await.unwrap();
    for statement in ["UPDATE events SET type = 'x' WHERE seq = 2", "DELETE FROM events WHERE seq = 2"] {
        let err = sqlx::query(statement).execute(&pool).await.expect_err(statement);
        assert!(err.to_string().contains("append-only"), "{statement}: {err}");
    }
    let out = binary(&s.url).args(["verify", "--log"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // Whoever can write the file can drop the triggers: verify still finds the edit.
    sqlx::query("DROP TRIGGER events_no_update").execute(&pool).await.unwrap();
    sqlx::query("UPDATE events SET data = '{\"scope\":\"forged\"}' WHERE seq = 3").execute(&pool).await.unwrap();
    let out = binary(&s.url).args(["verify", "--log", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["breaks"][0]["seq"], 3, "{report}");
    assert_eq!(report["breaks"][0]["recording_id"], "c", "{report}");
    // Re-hashing the edited event moves the break to the link after it, never hides it.
    let edited = s.state.events_after(2, 1).await.unwrap().remove(0);
    sqlx::query("UPDATE events SET sha256 = $1 WHERE seq = 3").bind(edited.digest()).execute(&pool).await.unwrap();
    let report = verify_log(&s.state).await.unwrap();
    assert!(!report.intact());
    assert!(report.breaks.iter().all(|b| b.seq != 3 || b.chain != "global" || !b.detail.contains("edited")));
    assert!(report.breaks.iter().any(|b| b.detail.contains("head")), "{:?}", report.breaks);
}

#[tokio::test]
async fn concurrent_replicas_keep_one_valid_global_chain() {
    let s = TestState::new(Backend::Postgres).await;
    let mut tasks = Vec::new();
    for replica in 0..2 {
        // A state of its own: its own pool, as another replica would have.
        let state = webex_archiver::state::open(&s.url.clone().into(), 4, Duration::from_secs(10)).await.unwrap();
        tasks.push(tokio::spawn(async move {
            for page in 0..10 {
                let items: Vec<ListedRecording> = (0..3).map(|i| listed(&format!("r{replica}-{page}-{i}"))).collect();
                state.record_page(&ScopeKey::user(), "o", &items, &[], None).await.unwrap();
                for claim in state.claim_due(&format!("replica-{replica}"), LEASE, 2).await.unwrap() {
                    let outcome = Outcome::NotDownloadable { reason: "test".into() };
                    assert!(state.finish(&claim.id, &claim.token, &outcome).await.unwrap());
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let log = verify_log_in_batches(&s.state, 7).await.unwrap();
    assert!(log.intact(), "{}", webex_archiver::verify::log_report_text(&log));
    assert_eq!(log.recordings, 60);
    let claimed = s.state.events_after(0, 10_000).await.unwrap().iter().filter(|e| e.kind == "claimed").count();
    assert_eq!(log.events, 60 + 2 * claimed as u64, "a discovered event each, a claimed and a final per claim");
}

#[tokio::test]
async fn history_json_has_the_documented_shape() {
    let s = TestState::new(Backend::Sqlite).await;
    s.state.record_page(&ScopeKey::user(), "o", &[listed("a")], &[], None).await.unwrap();
    let claim = s.state.claim_due("replica-1", LEASE, 1).await.unwrap().remove(0);
    s.state.finish(&claim.id, &claim.token, &Outcome::NotDownloadable { reason: "no link".into() }).await.unwrap();
    let out = binary(&s.url).args(["history", "a", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["events", "id"]);
    assert_eq!(json["id"], "a");
    let events = json["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    for event in events {
        let mut keys: Vec<&str> = event.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["at", "data", "prev_sha256", "seq", "sha256", "type"]);
    }
    assert_eq!(events[0]["prev_sha256"], serde_json::Value::Null);
    assert_eq!(events[1]["prev_sha256"], events[0]["sha256"]);
    assert_eq!(events[2]["type"], "not_downloadable");
    assert_eq!(events[2]["data"]["reason"], "no link");
    // An unknown recording has no history: exit 1.
    let out = binary(&s.url).args(["history", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn the_retry_command_records_the_os_user_and_host() {
    let s = TestState::new(Backend::Sqlite).await;
    s.state.record_page(&ScopeKey::user(), "o", &[listed("a")], &[], None).await.unwrap();
    let claim = s.state.claim_due("replica-1", LEASE, 1).await.unwrap().remove(0);
    s.state.finish(&claim.id, &claim.token, &Outcome::NotDownloadable { reason: "no link".into() }).await.unwrap();
    let out = binary(&s.url).args(["retry", "--id", "a"]).env("USER", "auditor-7").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let events = s.state.history(&RecordingId("a".into())).await.unwrap();
    let retried = events.last().unwrap();
    assert_eq!(retried.kind, "retried");
    assert_eq!(retried.data["user"], "auditor-7");
    assert!(retried.data["host"].as_str().is_some_and(|h| !h.is_empty() && h != "unknown"), "{}", retried.data);
}

async fn quarantine_opens_are_recorded_once(backend: Backend) {
    use webex_archiver::state::{QuarantinedItem, ReleasedHow};
    let s = TestState::new(backend).await;
    let item = |id: Option<&str>, raw: &str| {
        QuarantinedItem::new(ScopeKey::user(), id.map(str::to_owned), "bad createTime".into(), raw.into(), None)
    };
    let with_id = item(Some("q1"), r#"{"id":"q1"}"#);
    let no_id = item(None, r#"{"topic":"no id"}"#);
    let page = [with_id.clone(), no_id.clone()];
    s.state.record_page(&ScopeKey::user(), "o", &[], &page, None).await.unwrap();
    // Seen again while open: nothing new happened to it.
    s.state.record_page(&ScopeKey::user(), "o", &[], &page, None).await.unwrap();
    let events = s.state.events_after(0, 100).await.unwrap();
    let quarantined: Vec<_> = events.iter().filter(|e| e.kind == "quarantined").collect();
    assert_eq!(quarantined.len(), 2, "{events:?}");
    assert_eq!(quarantined[0].recording_id, Some(RecordingId("q1".into())));
    assert_eq!(quarantined[0].data["reason"], "bad createTime");
    assert_eq!(quarantined[1].recording_id, None, "an item with no usable id has no recording");
    assert_eq!(quarantined[1].data["key"], no_id.key.0);
    // Its details make it readable: recorded, with how it was found.
    let mut from_details = listed("q1");
    from_details.listed_in.via = Some("quarantine_details");
    s.state.release_quarantined(&with_id.key, Some(&from_details), ReleasedHow::Details).await.unwrap();
    let history = s.state.history(&RecordingId("q1".into())).await.unwrap();
    let kinds: Vec<&str> = history.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["quarantined", "quarantine_released", "discovered"]);
    assert_eq!((history[1].data["key"].as_str(), history[1].data["how"].as_str()), (Some("q1"), Some("details")));
    assert_eq!(history[2].data["via"], "quarantine_details");
    assert_eq!(history[2].prev_sha256.as_deref(), Some(history[1].sha256.as_str()));
    let log = verify_log(&s.state).await.unwrap();
    assert!(log.intact(), "{}", webex_archiver::verify::log_report_text(&log));
    assert_eq!((log.events, log.recordings), (4, 1));
}

#[tokio::test]
async fn quarantine_opens_are_recorded_once_on_sqlite() {
    quarantine_opens_are_recorded_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn quarantine_opens_are_recorded_once_on_postgres() {
    quarantine_opens_are_recorded_once(Backend::Postgres).await;
}

/// `verify` leaves its result in the custody log: one `verified` event with the counts
/// and who ran it, and a `verify_problem` event on each recording with a problem.
#[tokio::test]
async fn a_verification_is_recorded_with_each_problem_on_its_recording() {
    let config = SimConfig { recordings: 3, seed: 31, ..Default::default() };
    let h = Harness::start(Backend::Sqlite, Store::Local, "admin", config).await;
    assert_eq!(h.sync().await.exit, 0);
    let state = &h.db.state;
    let rows = state.archived(None).await.unwrap();
    let victim = &rows[0];
    let store = h.store();
    store.delete(&store.key(&victim.record.media_key).unwrap()).await.unwrap();

    let settings = crate::helpers::settings_from_env(h.env.clone(), webex_archiver::config::Needs::StateOnly);
    assert_eq!(webex_archiver::app::verify(&settings, None, true).await.unwrap(), 1, "a missing file is a problem");
    let events = state.history(&victim.id).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(last.kind, "verify_problem");
    assert_eq!(last.data["problem"], "missing");
    assert_eq!(last.data["key"], victim.record.media_key);
    for other in &rows[1..] {
        assert_ne!(types(state, &other.id.0).await.last().map(String::as_str), Some("verify_problem"));
    }
    let all = state.events_after(0, 1000).await.unwrap();
    let verified: Vec<_> = all.iter().filter(|e| e.kind == "verified").collect();
    assert_eq!(verified.len(), 1);
    let summary = &verified[0].data;
    assert_eq!(
        (summary["what"].as_str(), summary["checked"].as_u64(), summary["missing"].as_u64()),
        (Some("objects"), Some(3), Some(1))
    );
    assert!(summary["user"].is_string() && summary["host"].is_string(), "{summary}");
    assert_eq!(verified[0].recording_id, None);
    let log = verify_log(state).await.unwrap();
    assert!(log.intact(), "{}", webex_archiver::verify::log_report_text(&log));
}
