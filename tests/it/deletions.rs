//! Deletion tracking at the source: the simulator's recycle bin (moves over time,
//! `deleted` and `purged`), the deletion sweep of `sync`, `lost_at_source`, and that a
//! deletion at the source leaves the archive as it was.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use webex_archiver::app;
use webex_archiver::sim::SimConfig;
use webex_archiver::state::{ArchiveState, RecordingId, SourceStatus, State};
use webex_archiver::storage;

use crate::helpers::{Backend, S3Server};
use crate::sync::{Harness, Store};

/// Event types of a recording's custody log, oldest first.
async fn types(state: &State, id: &str) -> Vec<String> {
    state.history(&RecordingId(id.into())).await.unwrap().into_iter().map(|e| e.kind).collect()
}

/// Every object of the archive with its size and SHA-256 metadata (what must never change).
async fn objects(store: &storage::Store) -> BTreeMap<String, (u64, Option<String>)> {
    let metas: Vec<_> = store.list("").unwrap().try_collect().await.unwrap();
    let mut out = BTreeMap::new();
    for meta in metas {
        let head = store.head(&meta.location).await.unwrap().expect("a listed object is there");
        out.insert(meta.location.to_string(), (head.size, head.sha256));
    }
    out
}

async fn deletions_are_tracked_and_the_archive_is_left_alone(backend: Backend, store: Store) {
    let config = SimConfig { recordings: 6, seed: 11, compliance_officer: true, ..Default::default() };
    let mut h = Harness::start(backend, store, "admin", config).await;
    h.set("WEBEX_ARCHIVER__SYNC__SINCE", "70d");
    let truth = h.sim.truth();
    let (in_bin, purged) = (&truth[0].id, &truth[1].id);
    // Before the archiver ever sees them: one goes to the recycle bin (a Compliance
    // Officer still fetches it), one is purged (gone for everyone).
    h.sim.set_status(in_bin, "deleted").unwrap();
    h.sim.set_status(purged, "purged").unwrap();

    let report = h.sync().await;
    assert_eq!(report.exit, 0, "a recording lost at the source is final, with its reason: {report:?}");
    let state = &h.db.state.clone();
    let status = app::status_json(&report.status);
    assert_eq!(status["archived"], 5, "{status}");
    assert_eq!(status["lost_at_source"], 1, "{status}");
    assert_eq!(status["deleted_at_source"], 1, "{status}");
    assert_eq!(status["purged_at_source"], 1, "{status}");
    assert_eq!(status["under_hold"], 0, "{status}");
    assert_eq!(status["quarantined"], 0, "{status}");
    // Deleted: found by the sweep (never in the available listing), still archived.
    assert_eq!(types(state, in_bin).await, ["discovered", "deleted_at_source", "claimed", "archived"]);
    // Purged: found by the sweep, tried once, lost.
    assert_eq!(types(state, purged).await, ["discovered", "purged_at_source", "claimed", "lost_at_source"]);
    let lost = state.history(&RecordingId(purged.clone())).await.unwrap();
    assert_eq!(lost[3].data["reason"], "gone", "{}", lost[3].data);
    assert_eq!(lost[0].data["status"], "purged", "the discovery names the listing: {}", lost[0].data);
    let sweeps = &report.status.deletion_sweeps;
    assert_eq!(sweeps.len(), 2 * 3, "both statuses on each of the three sites: {sweeps:?}");
    assert!(sweeps.iter().all(|s| s.last_success_at.is_some() && s.last_error.is_none()), "{sweeps:?}");
    let listed: i64 = sweeps.iter().filter(|s| s.status == SourceStatus::Purged).map(|s| s.items_listed).sum();
    assert_eq!(listed, 1);

    // Later: an archived recording goes to the recycle bin, then is purged.
    let archived_id = &truth[2].id;
    let archive = h.store();
    let before = objects(&archive).await;
    assert!(!before.is_empty());
    h.sim.set_status(archived_id, "deleted").unwrap();
    // Not due yet (24 h after the last sweep): nothing is seen.
    let report = h.sync().await;
    assert_eq!(app::status_json(&report.status)["deleted_at_source"], 1);
    // Due at every pass from now on.
    h.set("WEBEX_ARCHIVER__COMPLIANCE__DELETION_SWEEP", "1ms");
    let report = h.sync().await;
    assert_eq!(app::status_json(&report.status)["deleted_at_source"], 2, "{:?}", report.status.deletion_sweeps);
    h.sim.set_status(archived_id, "purged").unwrap();
    let report = h.sync().await;
    assert_eq!(report.exit, 0);
    let status = app::status_json(&report.status);
    assert_eq!(status["purged_at_source"], 2, "{status}");
    assert_eq!(status["archived"], 5, "an archived recording stays archived: {status}");
    assert_eq!(
        types(state, archived_id).await,
        ["discovered", "claimed", "archived", "deleted_at_source", "purged_at_source"]
    );
    assert_eq!(objects(&archive).await, before, "a deletion at the source changes nothing in the archive");
    let log = webex_archiver::verify::verify_log(state).await.unwrap();
    assert!(log.intact(), "{}", webex_archiver::verify::log_report_text(&log));
}

#[tokio::test]
async fn deletions_at_the_source_on_postgres_and_s3() {
    deletions_are_tracked_and_the_archive_is_left_alone(Backend::Postgres, Store::S3(S3Server::S3s)).await;
}

#[tokio::test]
async fn deletions_at_the_source_on_sqlite() {
    deletions_are_tracked_and_the_archive_is_left_alone(Backend::Sqlite, Store::Local).await;
}

/// Without a Compliance Officer's token: the purged listing is refused (noted, not an
/// error), and a recording in the recycle bin cannot be fetched: it is lost at the source.
async fn without_a_compliance_officer(backend: Backend) {
    let config = SimConfig { recordings: 4, seed: 12, ..Default::default() };
    let mut h = Harness::start(backend, Store::Local, "admin", config).await;
    // One site at a time, so that the refusal is known before the next site's sweep.
    h.set("WEBEX_ARCHIVER__SYNC__SITE_CONCURRENCY", "1");
    let truth = h.sim.truth();
    let in_bin = &truth[0].id;
    h.sim.set_status(in_bin, "deleted").unwrap();

    let stop = tokio_util::sync::CancellationToken::new();
    let services = h.services(stop.clone()).await;
    let report = app::sync(&services, false, &stop).await.unwrap();
    assert_eq!(report.exit, 0, "{report:?}");
    // Lost at the source is not a failure: the failure counter (and its alert) stay quiet.
    let metrics = services.metrics.encode(chrono::Utc::now());
    assert!(!metrics.contains("webex_archiver_recordings_failed_total{"), "{metrics}");
    let status = app::status_json(&report.status);
    assert_eq!(status["archived"], 3, "{status}");
    assert_eq!(status["lost_at_source"], 1, "{status}");
    assert_eq!(status["failed"], 0, "{status}");
    let row = report.status.recent_failures.iter().find(|f| f.id.0 == *in_bin).expect("listed with the failures");
    assert_eq!(row.state, ArchiveState::LostAtSource);
    assert_eq!(row.reason.as_deref(), Some("gone"));
    let purged: Vec<_> = report.status.deletion_sweeps.iter().filter(|s| s.status == SourceStatus::Purged).collect();
    assert_eq!(purged.len(), 3);
    for sweep in purged {
        let note = sweep.last_error.as_deref().unwrap_or_default();
        assert!(note.contains("Compliance Officer"), "{sweep:?}");
        assert!(sweep.last_success_at.is_some(), "a refusal is an answer, not a failure to retry hourly");
    }
    // The role is the token's, not a site's: once refused, the other sites are not asked.
    let asked = h.sim.counters().listings_by_status;
    assert_eq!(asked.get("purged"), Some(&1), "purged listings asked: {asked:?}");
    assert!(asked.get("deleted").is_some_and(|n| *n >= 3 * 14), "every site's recycle bin is listed: {asked:?}");
    // The refusal is not a pass failure: every cursor is clean.
    assert!(report.status.cursors.iter().all(|c| c.last_error.is_none()), "{:?}", report.status.cursors);
    assert!(report.scopes.iter().all(|s| s.error.is_none()));
}

#[tokio::test]
async fn without_a_compliance_officer_on_postgres() {
    without_a_compliance_officer(Backend::Postgres).await;
}

#[tokio::test]
async fn without_a_compliance_officer_on_sqlite() {
    without_a_compliance_officer(Backend::Sqlite).await;
}

/// The user listing: deleted recordings only (purged ones need a meetingId there), in
/// 7-day windows over the horizon.
#[tokio::test]
async fn the_user_scope_sweeps_the_recycle_bin_in_seven_day_windows() {
    let config = SimConfig { recordings: 8, seed: 13, share_to_me_fraction: 1.0, ..Default::default() };
    let mut h = Harness::start(Backend::Sqlite, Store::Local, "user", config).await;
    h.set("WEBEX_ARCHIVER__COMPLIANCE__DELETION_HORIZON", "70d");
    let truth = h.sim.truth();
    let mine = truth.iter().find(|r| r.visible_to_user).expect("a recording the user sees");
    h.sim.set_status(&mine.id, "deleted").unwrap();
    let before = h.sim.counters().requests_to(webex_archiver::sim::Endpoint::List);
    let report = h.sync().await;
    let status = app::status_json(&report.status);
    assert_eq!(status["deleted_at_source"], 1, "{status}");
    let sweeps = &report.status.deletion_sweeps;
    assert_eq!(sweeps.len(), 1, "{sweeps:?}");
    assert_eq!(sweeps[0].status, SourceStatus::Deleted);
    // 70 days: 10 windows of the available listing (since = 70d) and 10 of the recycle bin.
    let requests = h.sim.counters().requests_to(webex_archiver::sim::Endpoint::List) - before;
    assert_eq!(requests, 20, "one page per window");
}
