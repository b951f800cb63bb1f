//! The state layer's contract, run against both backends (Postgres and SQLite) by the
//! `contract!` macro at the bottom: one suite, two databases.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use webex_archiver::state::{
    ArchiveState, ArchivedRecord, CursorKind, CursorMove, ListedRecording, Outcome, QuarantineKey, QuarantinedItem,
    RecordingId, ReleasedHow, ScopeKey, StateError, StoredTokens,
};

use crate::helpers::{TestState, wait_for};

fn t(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

fn listed(id: &str, created: DateTime<Utc>, topic: &str) -> ListedRecording {
    ListedRecording {
        id: RecordingId(id.into()),
        scope: ScopeKey::user(),
        site_url: Some("acme.webex.com".into()),
        host_email: Some("alice@acme.test".into()),
        meeting_id: Some("m1".into()),
        topic: Some(topic.into()),
        format: Some("MP4".into()),
        create_time: created,
        size_bytes: Some(1000),
        listing: serde_json::json!({"id": id, "topic": topic}),
        listed_in: Default::default(),
    }
}

fn archived_record(prefix: &str) -> ArchivedRecord {
    ArchivedRecord {
        object_prefix: prefix.into(),
        media_key: format!("{prefix}/recording.mp4"),
        metadata_key: format!("{prefix}/metadata.json"),
        sha256: "ab".repeat(32),
        bytes: 1000,
        files: serde_json::json!([{"kind": "recording"}]),
        size_mismatch: false,
        archived_at: Utc::now(),
        metadata_version: None,
        retention: None,
        metadata_retain_until: None,
    }
}

const OWNER: &str = "owner-a";
const LEASE: Duration = Duration::from_secs(60);

/// Takes the scope's discovery lease (creating its cursor at `t(1, 0)`).
async fn lease_scope(s: &TestState) -> webex_archiver::state::Cursor {
    s.state
        .acquire_cursor(&ScopeKey::user(), CursorKind::Sync, OWNER, LEASE, t(1, 0), None)
        .await
        .unwrap()
        .expect("lease is free")
}

async fn seed(s: &TestState, ids: &[&str]) {
    lease_scope(s).await;
    let items: Vec<_> = ids.iter().enumerate().map(|(i, id)| listed(id, t(2, i as u32 % 24), "topic")).collect();
    s.state.record_page(&ScopeKey::user(), OWNER, &items, &[], None).await.unwrap();
}

pub async fn pages_are_recorded_idempotently(s: TestState) {
    lease_scope(&s).await;
    let scope = ScopeKey::user();
    let first = vec![listed("a", t(2, 1), "one"), listed("b", t(2, 2), "two"), listed("a", t(2, 1), "one")];
    let recorded = s.state.record_page(&scope, OWNER, &first, &[unreadable(None, "{}")], None).await.unwrap();
    assert_eq!((recorded.new, recorded.refreshed), (2, 0), "a duplicate id in one page is recorded once");

    // Seen again with a changed topic: refreshed, state untouched.
    let claim = s.state.claim_due("w", LEASE, 1).await.unwrap().pop().unwrap();
    let again = vec![listed("a", t(2, 1), "renamed"), listed("b", t(2, 2), "two"), listed("c", t(2, 3), "three")];
    let recorded = s.state.record_page(&scope, OWNER, &again, &[], None).await.unwrap();
    assert_eq!((recorded.new, recorded.refreshed), (1, 2));
    let status = s.state.status(10).await.unwrap();
    assert_eq!(status.counts[&ArchiveState::Archiving], 1, "re-listing must not reset a claimed recording");
    assert_eq!(status.counts[&ArchiveState::Pending], 2);
    assert!(s.state.renew_lease(&claim.id, &claim.token, LEASE).await.unwrap());
    let cursor = s.state.cursors().await.unwrap().pop().unwrap();
    assert_eq!(cursor.items_quarantined, 1);
}

pub async fn cursor_moves_by_compare_and_set_for_the_lease_holder(s: TestState) {
    let scope = ScopeKey::user();
    let cursor = lease_scope(&s).await;
    assert_eq!(cursor.position, t(1, 0));
    // Another replica cannot take the scope while it is leased.
    let other = s.state.acquire_cursor(&scope, CursorKind::Sync, "owner-b", LEASE, t(1, 0), None).await.unwrap();
    assert!(other.is_none());
    // A move from a stale position fails and records nothing.
    let stale = CursorMove { kind: CursorKind::Sync, from: t(1, 5), to: t(8, 0) };
    let err = s.state.record_page(&scope, OWNER, &[listed("x", t(3, 0), "x")], &[], Some(stale)).await.unwrap_err();
    assert!(matches!(err, StateError::LostCursor { .. }), "{err}");
    assert_eq!(
        s.state.status(0).await.unwrap().counts[&ArchiveState::Pending],
        0,
        "the page rolled back with the cursor"
    );
    // A move by another owner fails too.
    let good = CursorMove { kind: CursorKind::Sync, from: t(1, 0), to: t(8, 0) };
    let err = s.state.record_page(&scope, "owner-b", &[], &[], Some(good)).await.unwrap_err();
    assert!(matches!(err, StateError::LostCursor { .. }));
    // The holder's move from the right position succeeds, with the page.
    s.state.record_page(&scope, OWNER, &[listed("x", t(3, 0), "x")], &[], Some(good)).await.unwrap();
    let cursor = s.state.cursors().await.unwrap().pop().unwrap();
    assert_eq!(cursor.position, t(8, 0));
    assert_eq!(cursor.items_listed, 1);
    // Released: success recorded, and the other replica may take it.
    s.state.release_cursor(&scope, CursorKind::Sync, OWNER, Ok(())).await.unwrap();
    let cursor = s.state.cursors().await.unwrap().pop().unwrap();
    assert!(cursor.last_success_at.is_some() && cursor.last_error.is_none());
    let taken = s.state.acquire_cursor(&scope, CursorKind::Sync, "owner-b", LEASE, t(1, 0), None).await.unwrap();
    assert_eq!(
        taken.expect("free after release").position,
        t(8, 0),
        "the initial position only applies to a new cursor"
    );
    s.state.release_cursor(&scope, CursorKind::Sync, "owner-b", Err("boom".into())).await.unwrap();
    let cursor = s.state.cursors().await.unwrap().pop().unwrap();
    assert_eq!(cursor.last_error.as_deref(), Some("boom"));
}

pub async fn an_expired_discovery_lease_can_be_taken_over(s: TestState) {
    let scope = ScopeKey::user();
    s.state
        .acquire_cursor(&scope, CursorKind::Sync, OWNER, Duration::from_millis(50), t(1, 0), None)
        .await
        .unwrap()
        .unwrap();
    let state = s.state.clone();
    let scope2 = scope.clone();
    wait_for("the discovery lease to expire", Duration::from_secs(10), || {
        let state = state.clone();
        let scope = scope2.clone();
        async move { state.acquire_cursor(&scope, CursorKind::Sync, "owner-b", LEASE, t(1, 0), None).await.unwrap() }
    })
    .await;
    let late = CursorMove { kind: CursorKind::Sync, from: t(1, 0), to: t(2, 0) };
    assert!(s.state.record_page(&scope, OWNER, &[], &[], Some(late)).await.is_err(), "the old holder lost the cursor");
}

pub async fn backfill_cursor_restarts_when_the_range_changes(s: TestState) {
    let scope = ScopeKey::admin("acme.webex.com");
    let range = (t(1, 0), t(20, 0));
    let c = s
        .state
        .acquire_cursor(&scope, CursorKind::Backfill, OWNER, LEASE, t(1, 0), Some(range))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.position, t(1, 0));
    let step = CursorMove { kind: CursorKind::Backfill, from: t(1, 0), to: t(8, 0) };
    s.state.record_page(&scope, OWNER, &[], &[], Some(step)).await.unwrap();
    s.state.release_cursor(&scope, CursorKind::Backfill, OWNER, Err("interrupted".into())).await.unwrap();
    // Same range: resumes.
    let c = s
        .state
        .acquire_cursor(&scope, CursorKind::Backfill, OWNER, LEASE, t(1, 0), Some(range))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c.position, t(8, 0));
    s.state.release_cursor(&scope, CursorKind::Backfill, OWNER, Ok(())).await.unwrap();
    // Another range: starts over at its start.
    let other = (t(3, 0), t(20, 0));
    let c = s
        .state
        .acquire_cursor(&scope, CursorKind::Backfill, OWNER, LEASE, t(3, 0), Some(other))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.position, c.range_start), (t(3, 0), Some(t(3, 0))));
    // The sync cursor of the same scope is separate.
    let sync = s.state.acquire_cursor(&scope, CursorKind::Sync, OWNER, LEASE, t(25, 0), None).await.unwrap().unwrap();
    assert_eq!(sync.position, t(25, 0));
}

pub async fn claims_are_exclusive_under_concurrency(s: TestState) {
    let ids: Vec<String> = (0..40).map(|i| format!("rec-{i:02}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    seed(&s, &id_refs).await;
    let state = s.state.clone();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let state = state.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claims = state.claim_due(&format!("worker-{worker}"), LEASE, 2).await.unwrap();
                if claims.is_empty() {
                    return mine;
                }
                mine.extend(claims.into_iter().map(|c| c.id.0));
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 40, "every recording claimed exactly once: {all:?}");
    assert_eq!(unique.len(), 40);
    assert!(s.state.claim_due("late", LEASE, 10).await.unwrap().is_empty(), "leased recordings are not due");
}

pub async fn an_expired_lease_makes_the_recording_due_again(s: TestState) {
    seed(&s, &["r1"]).await;
    let first = s.state.claim_due("dead-worker", Duration::from_millis(50), 1).await.unwrap().pop().unwrap();
    assert_eq!((first.attempts, first.recovered), (1, false));
    let state = s.state.clone();
    let second = wait_for("the lease to expire", Duration::from_secs(10), || {
        let state = state.clone();
        async move { state.claim_due("live-worker", LEASE, 1).await.unwrap().pop() }
    })
    .await;
    assert_eq!(second.id, first.id);
    assert!(second.recovered, "the claim says the previous worker died");
    // Issue 13: a worker's death is not the recording's failure; the take-over continues
    // the attempt (counted apart, in `lease_expiries`).
    assert_eq!(second.attempts, 1, "taking over an expired lease counted as an attempt");
    // The dead worker's token no longer works.
    assert!(!s.state.renew_lease(&first.id, &first.token, LEASE).await.unwrap());
    assert!(!s.state.finish(&first.id, &first.token, &Outcome::Archived(archived_record("p"))).await.unwrap());
    assert_eq!(s.state.status(0).await.unwrap().lease_expiries, 1);
}

pub async fn outcomes_are_recorded_only_for_the_lease_holder(s: TestState) {
    seed(&s, &["r1", "r2", "r3", "r4", "r5"]).await;
    let claim = |_: ()| async { s.state.claim_due("w", LEASE, 1).await.unwrap().pop().unwrap() };

    let c = claim(()).await;
    assert!(!s.state.finish(&c.id, "not-the-token", &Outcome::Archived(archived_record("x"))).await.unwrap());
    assert!(s.state.set_object_prefix(&c.id, &c.token, "2026/11/02/r").await.unwrap());
    assert!(s.state.finish(&c.id, &c.token, &Outcome::Archived(archived_record("2026/11/02/r"))).await.unwrap());
    assert!(
        !s.state.finish(&c.id, &c.token, &Outcome::Failed { reason: "x".into(), message: "y".into() }).await.unwrap(),
        "a finished claim cannot be finished twice"
    );

    let c = claim(()).await;
    let later = Utc::now() + chrono::Duration::hours(1);
    assert!(
        s.state
            .finish(&c.id, &c.token, &Outcome::Retry { at: later, reason: "truncated".into(), message: "short".into() })
            .await
            .unwrap()
    );

    let c = claim(()).await;
    assert!(s.state.finish(&c.id, &c.token, &Outcome::Release { at: t(1, 0) }).await.unwrap());
    let again = claim(()).await;
    assert_eq!(again.id, c.id);
    assert_eq!(again.attempts, 1, "a release gives the attempt back");
    assert!(
        s.state
            .finish(&again.id, &again.token, &Outcome::NotDownloadable { reason: "prevent downloading".into() })
            .await
            .unwrap()
    );

    let c = claim(()).await;
    assert!(
        s.state
            .finish(&c.id, &c.token, &Outcome::Failed { reason: "http_400".into(), message: "bad".into() })
            .await
            .unwrap()
    );

    let status = s.state.status(10).await.unwrap();
    assert_eq!(status.counts[&ArchiveState::Archived], 1);
    assert_eq!(status.counts[&ArchiveState::Pending], 2, "the retried one and the untouched one");
    assert_eq!(status.counts[&ArchiveState::NotDownloadable], 1);
    assert_eq!(status.counts[&ArchiveState::Failed], 1);
    assert_eq!(status.bytes_archived, 1000);
    assert_eq!(status.due_now, 1, "the retried one is scheduled an hour later");
    assert_eq!(status.recent_failures.len(), 2);
    let failed = status.recent_failures.iter().find(|f| f.state == ArchiveState::Failed).unwrap();
    assert_eq!((failed.reason.as_deref(), failed.message.as_deref()), (Some("http_400"), Some("bad")));
    assert!(status.oldest_unarchived.is_some());

    let archived = s.state.archived(None).await.unwrap();
    assert_eq!(archived.len(), 1);
    assert_eq!(archived[0].record.media_key, "2026/11/02/r/recording.mp4");
    assert_eq!(archived[0].record.sha256, "ab".repeat(32));
    let asked = ["2026/11/02/r".to_owned(), "2026/11/02/nobody".to_owned(), "2026/11/02/r".to_owned()];
    let claimed = s.state.claimed_prefixes(&asked).await.unwrap();
    assert_eq!(claimed, ["2026/11/02/r".to_owned()].into_iter().collect(), "only the recorded directory");
    assert!(s.state.claimed_prefixes(&[]).await.unwrap().is_empty());
    let unfinished = s.state.unfinished(10).await.unwrap();
    assert_eq!(unfinished.len(), 2);
}

pub async fn retry_makes_failed_recordings_due(s: TestState) {
    seed(&s, &["f1", "f2", "nd"]).await;
    for _ in 0..3 {
        let c = s.state.claim_due("w", LEASE, 1).await.unwrap().pop().unwrap();
        let outcome = if c.id.0 == "nd" {
            Outcome::NotDownloadable { reason: "no links".into() }
        } else {
            Outcome::Failed { reason: "x".into(), message: "y".into() }
        };
        assert!(s.state.finish(&c.id, &c.token, &outcome).await.unwrap());
    }
    assert_eq!(
        s.state.retry(None, &crate::helpers::operator()).await.unwrap(),
        2,
        "--failed leaves not_downloadable alone"
    );
    assert_eq!(
        s.state
            .retry(Some(&[RecordingId("nd".into()), RecordingId("unknown".into())]), &crate::helpers::operator())
            .await
            .unwrap(),
        1
    );
    let status = s.state.status(0).await.unwrap();
    assert_eq!(status.counts[&ArchiveState::Pending], 3);
    let c = s.state.claim_due("w", LEASE, 1).await.unwrap().pop().unwrap();
    assert_eq!(c.attempts, 1, "retry resets attempts");
}

pub async fn the_rate_limit_pause_is_shared_and_never_shortened(s: TestState) {
    assert!(s.state.paused_until().await.unwrap() < Utc::now());
    let far = Utc::now() + chrono::Duration::seconds(30);
    s.state.pause_until(far).await.unwrap();
    s.state.pause_until(far - chrono::Duration::seconds(20)).await.unwrap();
    let until = s.state.paused_until().await.unwrap();
    assert_eq!(until.timestamp_millis(), far.timestamp_millis());
    assert!(s.state.status(0).await.unwrap().paused_until.is_some());
}

pub async fn oauth_tokens_persist_and_refreshes_are_serialised(s: TestState) {
    assert!(s.state.load_tokens("client").await.unwrap().is_none());
    assert!(s.state.lock_refresh("client", "a", LEASE).await.unwrap());
    assert!(!s.state.lock_refresh("client", "b", LEASE).await.unwrap(), "one refresher at a time");
    assert!(s.state.load_tokens("client").await.unwrap().is_none(), "a lock alone stores no token");
    let tokens = StoredTokens {
        access_token: Some("access-1".into()),
        access_expires_at: Some(t(3, 0)),
        refresh_token: "refresh-2".into(),
        refresh_expires_at: Some(t(30, 0)),
        refreshes: 1,
        seed_sha256: Some("seed".into()),
        obtained_at: Some(t(2, 0)),
    };
    s.state.store_tokens("client", &tokens).await.unwrap();
    s.state.unlock_refresh("client", "a").await.unwrap();
    assert!(s.state.lock_refresh("client", "b", LEASE).await.unwrap());
    let loaded = s.state.load_tokens("client").await.unwrap().unwrap();
    assert_eq!(loaded, tokens);
    assert!(!format!("{loaded:?}").contains("refresh-2"), "Debug hides tokens");
}

fn unreadable(id: Option<&str>, raw: &str) -> QuarantinedItem {
    QuarantinedItem::new(
        ScopeKey::user(),
        id.map(str::to_owned),
        "createTime is not a time".into(),
        raw.into(),
        Some("TRACK-1".into()),
    )
}

pub async fn quarantine_is_recorded_with_the_page_and_counted(s: TestState) {
    lease_scope(&s).await;
    let scope = ScopeKey::user();
    let bad_time = unreadable(Some("q1"), r#"{"id":"q1","createTime":"yesterday"}"#);
    let no_id = unreadable(None, r#"{"topic":"no id"}"#);
    assert_eq!(no_id.key, QuarantineKey::for_item(None, r#"{"topic":"no id"}"#));
    let good = CursorMove { kind: CursorKind::Sync, from: t(1, 0), to: t(8, 0) };
    let recorded = s
        .state
        .record_page(&scope, OWNER, &[listed("a", t(2, 0), "a")], &[bad_time.clone(), no_id.clone()], Some(good))
        .await
        .unwrap();
    assert_eq!((recorded.new, recorded.released), (1, 0));
    let cursor = s.state.cursors().await.unwrap().pop().unwrap();
    assert_eq!((cursor.position, cursor.items_listed, cursor.items_quarantined), (t(8, 0), 1, 2));
    let status = s.state.status(10).await.unwrap();
    assert_eq!(status.quarantined, 2);
    assert_eq!(status.counts[&ArchiveState::Pending], 1, "the readable item of the page is recorded");
    let row = status.recent_quarantine.iter().find(|q| q.key.0 == "q1").expect("listed in status");
    assert_eq!(row.recording_id, Some(RecordingId("q1".into())));
    assert_eq!(
        (row.reason.as_str(), row.tracking_id.as_deref(), row.seen_count),
        ("createTime is not a time", Some("TRACK-1"), 1)
    );
    assert!(status.recent_quarantine.iter().any(|q| q.key == no_id.key && q.recording_id.is_none()));
    assert!(s.state.status(0).await.unwrap().recent_quarantine.is_empty(), "the list is as long as asked for");

    // Idempotent: seen again, counted once, its count and last sighting updated.
    s.state.record_page(&scope, OWNER, &[], &[bad_time.clone(), bad_time.clone()], None).await.unwrap();
    let status = s.state.status(10).await.unwrap();
    assert_eq!(status.quarantined, 2);
    let row = status.recent_quarantine.iter().find(|q| q.key.0 == "q1").unwrap();
    assert_eq!(row.seen_count, 2, "a page naming an item twice counts one sighting");
    assert!(row.last_seen_at >= row.first_seen_at);

    // Re-reading walks the scope's entries in key order, batch by batch, with their raw text.
    let first = s.state.quarantined(&scope, None, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    let rest = s.state.quarantined(&scope, Some(&first[0].row.key), 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert!(first[0].row.key < rest[0].row.key);
    let q1 = first.iter().chain(&rest).find(|e| e.row.key.0 == "q1").unwrap();
    assert_eq!(q1.raw, r#"{"id":"q1","createTime":"yesterday"}"#);
    assert!(s.state.quarantined(&ScopeKey::admin("other"), None, 10).await.unwrap().is_empty());

    // A note on what re-reading found.
    s.state.note_quarantine_check(&no_id.key, "details: 404").await.unwrap();
    let status = s.state.status(10).await.unwrap();
    let row = status.recent_quarantine.iter().find(|q| q.key == no_id.key).unwrap();
    assert_eq!(row.check_note.as_deref(), Some("details: 404"));

    // Released with a recording in one step; releasing twice releases nothing.
    let recorded = s.state.release_quarantined(&no_id.key, None, ReleasedHow::Reread).await.unwrap();
    assert_eq!(recorded.released, 1);
    let again = s.state.release_quarantined(&no_id.key, None, ReleasedHow::Reread).await.unwrap();
    assert_eq!(again.released, 0);
    let recorded = s
        .state
        .release_quarantined(&bad_time.key, Some(&listed("q1", t(3, 0), "from details")), ReleasedHow::Details)
        .await
        .unwrap();
    assert_eq!((recorded.new, recorded.released), (1, 1));
    let status = s.state.status(10).await.unwrap();
    assert_eq!((status.quarantined, status.counts[&ArchiveState::Pending]), (0, 2));
    assert!(s.state.quarantined(&scope, None, 10).await.unwrap().is_empty());

    // Listed unreadable again while its recording is recorded: nothing is lost, no one needs to look.
    s.state.record_page(&scope, OWNER, &[], std::slice::from_ref(&bad_time), None).await.unwrap();
    assert_eq!(s.state.status(10).await.unwrap().quarantined, 0);
}

pub async fn a_later_readable_listing_releases_the_entry(s: TestState) {
    lease_scope(&s).await;
    let scope = ScopeKey::user();
    let entry = unreadable(Some("late"), r#"{"id":"late","createTime":"2026-11-02T25:00:00Z"}"#);
    s.state.record_page(&scope, OWNER, &[], std::slice::from_ref(&entry), None).await.unwrap();
    assert_eq!(s.state.status(0).await.unwrap().quarantined, 1);
    let recorded = s.state.record_page(&scope, OWNER, &[listed("late", t(2, 1), "fixed")], &[], None).await.unwrap();
    assert_eq!((recorded.new, recorded.released), (1, 1), "released by the page that lists it readable");
    assert_eq!(s.state.status(0).await.unwrap().quarantined, 0);
    assert_eq!(s.state.release_quarantined(&entry.key, None, ReleasedHow::Reread).await.unwrap().released, 0);
    // A page that rolls back (a lost cursor) quarantines nothing either.
    let other = unreadable(None, "[1]");
    let stale = CursorMove { kind: CursorKind::Sync, from: t(1, 5), to: t(8, 0) };
    assert!(s.state.record_page(&scope, OWNER, &[], &[other], Some(stale)).await.is_err());
    assert_eq!(s.state.status(0).await.unwrap().quarantined, 0, "the quarantine rolled back with the page");
}

pub async fn renew_cursor_keeps_the_lease_for_its_owner_only(s: TestState) {
    let scope = ScopeKey::user();
    // NOTE: long enough that a renewal delayed by a loaded machine still lands in time.
    let short = Duration::from_secs(2);
    s.state.acquire_cursor(&scope, CursorKind::Sync, OWNER, short, t(1, 0), None).await.unwrap().unwrap();
    // Renewed again and again, the lease outlives its first length many times over.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        assert!(s.state.renew_cursor(&scope, CursorKind::Sync, OWNER, short).await.unwrap());
        let other = s.state.acquire_cursor(&scope, CursorKind::Sync, "owner-b", LEASE, t(1, 0), None).await.unwrap();
        assert!(other.is_none(), "another replica took a renewed lease");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!s.state.renew_cursor(&scope, CursorKind::Sync, "owner-b", LEASE).await.unwrap(), "not the owner");
    assert!(
        !s.state.renew_cursor(&scope, CursorKind::Backfill, OWNER, LEASE).await.unwrap(),
        "another cursor of the scope"
    );
    // Not renewed, it expires and is taken over; the old owner cannot renew it back.
    let state = s.state.clone();
    let scope2 = scope.clone();
    wait_for("the discovery lease to expire", Duration::from_secs(10), || {
        let state = state.clone();
        let scope = scope2.clone();
        async move { state.acquire_cursor(&scope, CursorKind::Sync, "owner-b", LEASE, t(1, 0), None).await.unwrap() }
    })
    .await;
    assert!(!s.state.renew_cursor(&scope, CursorKind::Sync, OWNER, LEASE).await.unwrap(), "the lease was lost");
}

pub async fn next_work_tells_a_draining_worker_what_is_left(s: TestState) {
    let next = s.state.next_work().await.unwrap();
    assert_eq!((next.due_at, next.lease_expires_at), (None, None), "nothing at all: a drain ends");
    seed(&s, &["r1", "r2"]).await;
    let next = s.state.next_work().await.unwrap();
    assert!(next.due_at.is_some_and(|at| at <= Utc::now()), "due now: {next:?}");
    assert_eq!(next.lease_expires_at, None);

    let first = s.state.claim_due("w", LEASE, 1).await.unwrap().pop().unwrap();
    let later = Utc::now() + chrono::Duration::hours(1);
    let retry = Outcome::Retry { at: later, reason: "truncated".into(), message: "short".into() };
    assert!(s.state.finish(&first.id, &first.token, &retry).await.unwrap());
    let second = s.state.claim_due("w", LEASE, 1).await.unwrap().pop().unwrap();
    let next = s.state.next_work().await.unwrap();
    assert_eq!(next.due_at.map(|t| t.timestamp_millis()), Some(later.timestamp_millis()), "the retry, not before");
    assert!(next.lease_expires_at.is_some_and(|at| at > Utc::now()), "one is being archived: {next:?}");

    assert!(s.state.finish(&second.id, &second.token, &Outcome::Archived(archived_record("p"))).await.unwrap());
    let next = s.state.next_work().await.unwrap();
    assert_eq!(next.lease_expires_at, None, "nothing is being archived any more");
}

pub async fn an_expired_lease_is_taken_over_before_new_work(s: TestState) {
    seed(&s, &["r1", "r2"]).await;
    // NOTE: long enough to outlast the next claim on a loaded machine.
    let dead = s.state.claim_due("dead-worker", Duration::from_secs(2), 1).await.unwrap().pop().unwrap();
    // The other one is given back, due since long before the dead worker's claim.
    let other = s.state.claim_due("w", LEASE, 1).await.unwrap().pop().unwrap();
    assert!(s.state.finish(&other.id, &other.token, &Outcome::Release { at: t(1, 0) }).await.unwrap());
    let state = s.state.clone();
    wait_for("the lease to expire", Duration::from_secs(10), || {
        let state = state.clone();
        async move {
            let next = state.next_work().await.unwrap();
            next.lease_expires_at.filter(|at| *at < Utc::now() - chrono::Duration::milliseconds(5))
        }
    })
    .await;
    // A pending recording is due too, and was due first: the dead worker's comes first.
    let claim = s.state.claim_due("live-worker", LEASE, 1).await.unwrap().pop().unwrap();
    assert_eq!((&claim.id, claim.recovered), (&dead.id, true));
    let claim = s.state.claim_due("live-worker", LEASE, 1).await.unwrap().pop().unwrap();
    assert_eq!((&claim.id, claim.recovered), (&other.id, false));
}

/// Sets the shared counts' bookkeeping as another process would leave it.
async fn plant_counting(s: &TestState, owner: &str, until: DateTime<Utc>, count_ms: i64) {
    let statement = "UPDATE recording_counts SET counting_owner = $1, counting_until = $2, count_ms = $3";
    if s.url.starts_with("postgres") {
        let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&s.url).await.unwrap();
        sqlx::query(statement).bind(owner).bind(until).bind(count_ms).execute(&mut db).await.unwrap();
    } else {
        let db = sqlx::SqlitePool::connect(&s.url).await.unwrap();
        sqlx::query(statement).bind(owner).bind(until.timestamp_millis()).bind(count_ms).execute(&db).await.unwrap();
    }
}

pub async fn shared_counts_are_taken_by_one_process_at_most_so_often(s: TestState) {
    const TTL: Duration = Duration::from_secs(60);
    let gauges = s.state.gauges().await.unwrap();
    assert_eq!(gauges.counts, None, "never counted: nothing to show rather than zeros");
    seed(&s, &["r1", "r2", "r3"]).await;
    let claim = s.state.claim_due("w", LEASE, 1).await.unwrap().pop().unwrap();
    assert!(s.state.finish(&claim.id, &claim.token, &Outcome::Archived(archived_record("p"))).await.unwrap());
    let before = Utc::now();
    assert!(s.state.refresh_counts("a", Duration::ZERO, TTL).await.unwrap());
    let counted = s.state.gauges().await.unwrap().counts.expect("counted");
    let status = s.state.status(0).await.unwrap();
    assert_eq!(counted.counts, status.counts, "the shared counts are status's counts");
    assert_eq!((counted.counts[&ArchiveState::Pending], counted.counts[&ArchiveState::Archived]), (2, 1));
    assert!(counted.counted_at >= before - chrono::Duration::seconds(1) && counted.counted_at <= Utc::now());

    // Fresh enough: not counted again, and reading them counts nothing.
    seed(&s, &["r4"]).await;
    assert!(!s.state.refresh_counts("b", Duration::from_secs(3600), TTL).await.unwrap());
    let gauges = s.state.gauges().await.unwrap();
    assert_eq!(gauges.counts.expect("counted").counts[&ArchiveState::Pending], 2, "a read does not count");
    assert!(gauges.oldest_unarchived.is_some(), "what is one index lookup is read live");

    // Another process is counting: skipped at once, not waited for.
    plant_counting(&s, "c", Utc::now() + chrono::Duration::hours(1), 0).await;
    let started = std::time::Instant::now();
    assert!(!s.state.refresh_counts("b", Duration::ZERO, TTL).await.unwrap());
    assert!(started.elapsed() < Duration::from_secs(5), "waited for the other counter");
    // Its claim expired (it died counting): taken over.
    plant_counting(&s, "c", Utc::now() - chrono::Duration::seconds(1), 0).await;
    assert!(s.state.refresh_counts("b", Duration::ZERO, TTL).await.unwrap());
    assert_eq!(s.state.gauges().await.unwrap().counts.unwrap().counts[&ArchiveState::Pending], 3);

    // A slow count spaces the next ones out (50 times what it took), whatever is asked.
    plant_counting(&s, "", Utc::now() - chrono::Duration::seconds(1), 3_600_000).await;
    assert!(!s.state.refresh_counts("b", Duration::ZERO, TTL).await.unwrap());
}

pub async fn migrations_apply_twice(s: TestState) {
    s.state.migrate().await.unwrap();
    s.state.migrate().await.unwrap();
    s.state.ping().await.unwrap();
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::helpers::TestState::new(crate::helpers::Backend::Postgres).await).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::helpers::TestState::new(crate::helpers::Backend::Sqlite).await).await
                }
            )*
        }
    };
}

contract!(
    pages_are_recorded_idempotently,
    cursor_moves_by_compare_and_set_for_the_lease_holder,
    an_expired_discovery_lease_can_be_taken_over,
    backfill_cursor_restarts_when_the_range_changes,
    claims_are_exclusive_under_concurrency,
    an_expired_lease_makes_the_recording_due_again,
    outcomes_are_recorded_only_for_the_lease_holder,
    retry_makes_failed_recordings_due,
    the_rate_limit_pause_is_shared_and_never_shortened,
    oauth_tokens_persist_and_refreshes_are_serialised,
    quarantine_is_recorded_with_the_page_and_counted,
    a_later_readable_listing_releases_the_entry,
    renew_cursor_keeps_the_lease_for_its_owner_only,
    next_work_tells_a_draining_worker_what_is_left,
    an_expired_lease_is_taken_over_before_new_work,
    shared_counts_are_taken_by_one_process_at_most_so_often,
    migrations_apply_twice,
);
