//! Daily manifests: written by `sync` for settled days older than `sync.overlap`, chained,
//! supplemented for late arrivals (never while one of the day's recordings is pending),
//! and checked by `verify --manifests`, which finds missing, changed and unknown objects.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use chrono::{Duration, DurationRound, Utc};
use tokio_util::sync::CancellationToken;
use webex_archiver::manifest::{Manifest, manifest_key, verify_manifests};
use webex_archiver::sim::{FaultAction, FaultRule, SimConfig};
use webex_archiver::state::{ArchiveState, RecordingId};
use webex_archiver::storage;

use crate::helpers::{Backend, S3Server};
use crate::sync::{Harness, Store};

async fn read(store: &storage::Store, key: &str) -> (Bytes, Manifest) {
    let bytes = store.get_bytes(&store.key(key).unwrap()).await.unwrap();
    let manifest = serde_json::from_slice(&bytes).unwrap();
    (bytes, manifest)
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

async fn manifests_cover_settled_days_and_late_arrivals(backend: Backend, store: Store) {
    let config = SimConfig { recordings: 12, seed: 21, ..Default::default() };
    let mut h = Harness::start(backend, store, "admin", config).await;
    h.set("WEBEX_ARCHIVER__ARCHIVE__MAX_ATTEMPTS", "2");
    let cutoff = (Utc::now() - Duration::days(2)).date_naive();
    let settled: Vec<_> = h.expected(true).into_iter().filter(|r| r.create_time.date_naive() < cutoff).collect();
    // One recording of a day with others fails for now (the site serves a login page).
    let day_of = |r: &webex_archiver::sim::TruthRecording| r.create_time.date_naive();
    let retried = settled
        .iter()
        .find(|r| settled.iter().filter(|o| day_of(o) == day_of(r)).count() >= 2)
        .expect("a settled day with two recordings")
        .clone();
    h.sim.set_faults(vec![FaultRule::new(FaultAction::LoginPage).ids([retried.id.clone()])]);
    let report = h.sync().await;
    assert_eq!(report.status.counts[&ArchiveState::Failed], 1, "{report:?}");
    assert!(report.manifest_error.is_none(), "{report:?}");
    let archive = h.store();

    // Every day older than the overlap (2 days) with archived recordings has its manifest,
    // listing exactly that day's archived recordings; younger days have none yet. A
    // failed recording does not hold its day back (it is settled), nor is it listed.
    let mut by_day: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in settled.iter().filter(|r| r.id != retried.id) {
        by_day.entry(r.create_time.format("%Y-%m-%d").to_string()).or_default().insert(r.id.clone());
    }
    assert!(by_day.len() >= 3, "the population spans several settled days: {by_day:?}");
    let written: BTreeSet<String> = report.manifests.iter().cloned().collect();
    let day_start =
        |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let expected_keys: BTreeSet<String> = by_day.keys().map(|d| manifest_key(day_start(d), 0)).collect();
    assert_eq!(written, expected_keys);

    // One chain, in the order written; each lists its day's files with their digests.
    let mut previous: Option<(String, String)> = None;
    for key in &report.manifests {
        let (bytes, manifest) = read(&archive, key).await;
        assert_eq!(manifest.part, 0);
        assert_eq!(manifest.previous.as_ref().map(|p| (p.key.clone(), p.sha256.clone())), previous, "{key}");
        let ids: BTreeSet<String> = manifest.recordings.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, by_day[&manifest.date], "{key}");
        for recording in &manifest.recordings {
            let truth = h.sim.recording(&recording.id).unwrap();
            let kinds: Vec<&str> = recording.files.iter().map(|f| f.kind.as_str()).collect();
            assert_eq!(kinds, ["recording", "metadata"]);
            assert_eq!(Some(&recording.files[0].sha256), truth.sha256.as_ref());
            assert_eq!(recording.files[0].size, truth.size_bytes);
            let metadata = archive.get_bytes(&archive.key(&recording.files[1].key).unwrap()).await.unwrap();
            assert_eq!(recording.files[1].sha256, sha256(&metadata));
        }
        previous = Some((key.clone(), sha256(&bytes)));
    }
    let check = verify_manifests(&h.db.state, &archive, true).await.unwrap();
    assert!(check.intact(), "{:?}", check.problems);
    assert_eq!(check.manifests as usize, expected_keys.len());
    // Each manifest written is in the custody log, with its digest and link.
    let events = h.db.state.events_after(0, 10_000).await.unwrap();
    let logged: Vec<_> = events.iter().filter(|e| e.kind == "manifest_written").collect();
    assert_eq!(logged.iter().map(|e| e.data["key"].as_str().unwrap()).collect::<Vec<_>>(), report.manifests);
    assert_eq!(logged.last().unwrap().data["sha256"].as_str(), previous.as_ref().map(|p| p.1.as_str()));
    // The archive's own verify does not count manifests as unclaimed objects.
    let verify = webex_archiver::verify::verify(&h.db.state, &archive, None).await.unwrap();
    assert!(verify.clean(), "{}", webex_archiver::verify::report_text(&verify));

    // The site is fixed and an operator retries the failed one: while it is pending, its
    // day gets no supplement.
    h.sim.clear_faults();
    let id = RecordingId(retried.id.clone());
    assert_eq!(h.db.state.retry(Some(std::slice::from_ref(&id)), &crate::helpers::operator()).await.unwrap(), 1);
    let stop = CancellationToken::new();
    let services = h.services(stop.clone()).await;
    let none = services.manifests.write_due(Utc::now()).await.unwrap();
    assert!(none.is_empty(), "a day with a pending recording gets no manifest: {none:?}");
    // Archived: the supplement lists it alone, chained after the last manifest.
    let report = h.sync().await;
    assert_eq!(report.exit, 0, "{report:?}");
    let supplement = manifest_key(retried.create_time, 1);
    assert_eq!(report.manifests, std::slice::from_ref(&supplement));
    let (_, manifest) = read(&archive, &supplement).await;
    assert_eq!(manifest.part, 1);
    assert_eq!(manifest.recordings.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [retried.id.as_str()]);
    assert_eq!(manifest.previous.map(|p| p.key), previous.map(|p| p.0));
    let check = verify_manifests(&h.db.state, &archive, false).await.unwrap();
    assert!(check.intact(), "{:?}", check.problems);

    // Tampering: a listed object removed, a manifest rewritten, an unknown manifest.
    let first = report_first(&expected_keys);
    let victim = read(&archive, &first).await.1.recordings[0].files[0].key.clone();
    archive.delete(&archive.key(&victim).unwrap()).await.unwrap();
    let (bytes, _) = read(&archive, &first).await;
    let mut edited = bytes.to_vec();
    edited.extend_from_slice(b"\n");
    archive.delete(&archive.key(&first).unwrap()).await.unwrap();
    archive.put_create(&archive.key(&first).unwrap(), Bytes::from(edited), "application/json", None).await.unwrap();
    let stray = "manifests/1999/01/01.json";
    archive
        .put_create(&archive.key(stray).unwrap(), Bytes::from_static(b"{}"), "application/json", None)
        .await
        .unwrap();
    let check = verify_manifests(&h.db.state, &archive, false).await.unwrap();
    let problems = check.problems.join("\n");
    assert!(problems.contains(&victim) && problems.contains("missing"), "{problems}");
    assert!(problems.contains(&first) && problems.contains("SHA-256"), "{problems}");
    assert!(problems.contains(stray) && problems.contains("does not know"), "{problems}");
    assert_eq!(check.problems.len(), 3, "{problems}");
}

fn report_first(keys: &BTreeSet<String>) -> String {
    keys.iter().next().unwrap().clone()
}

#[tokio::test]
async fn manifests_on_postgres_and_s3() {
    manifests_cover_settled_days_and_late_arrivals(Backend::Postgres, Store::S3(S3Server::S3s)).await;
}

#[tokio::test]
async fn manifests_on_sqlite_and_a_directory() {
    manifests_cover_settled_days_and_late_arrivals(Backend::Sqlite, Store::Local).await;
}

/// A writer that stopped between storing a manifest and recording it (here: a database
/// restored from before the manifests were written, over the same bucket): the next one
/// adopts the object when it is the manifest it would write (every field but when it
/// was written), and stops with an error naming the key when it is anything else.
#[tokio::test]
async fn a_stored_but_unrecorded_manifest_is_adopted_only_when_it_is_the_same() {
    // One fixed population, so that both archivers see the same recordings on the same days.
    let end = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    let config = SimConfig { recordings: 8, seed: 22, end: Some(end), ..Default::default() };
    let first = Harness::start(Backend::Sqlite, Store::Local, "admin", config.clone()).await;
    let report = first.sync().await;
    assert_eq!(report.exit, 0, "{report:?}");
    assert!(!report.manifests.is_empty());
    let archive = first.store();
    let written: Vec<(String, Bytes)> = {
        let mut out = Vec::new();
        for key in &report.manifests {
            out.push((key.clone(), read(&archive, key).await.0));
        }
        out
    };

    // The same bucket, an empty database: every object is adopted, the manifests too.
    let mut second = Harness::start(Backend::Sqlite, Store::Local, "admin", config.clone()).await;
    second.set("WEBEX_ARCHIVER__STORAGE__URL", &first.env["WEBEX_ARCHIVER__STORAGE__URL"]);
    let report = second.sync().await;
    assert_eq!(report.exit, 0, "{report:?}");
    assert_eq!(report.manifests, written.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>());
    let rows = second.db.state.manifests(0, 100).await.unwrap();
    for ((key, bytes), row) in written.iter().zip(&rows) {
        assert_eq!((&row.key, &row.sha256), (key, &sha256(bytes)), "the database records the object that is there");
        assert_eq!(&read(&archive, key).await.0, bytes, "adopted, not rewritten");
    }
    let check = verify_manifests(&second.db.state, &archive, true).await.unwrap();
    assert!(check.intact(), "{:?}", check.problems);

    // Anything else at the key of the first manifest to write: the chain stops there.
    let mut third = Harness::start(Backend::Sqlite, Store::Local, "admin", config).await;
    third.set("WEBEX_ARCHIVER__STORAGE__URL", &first.env["WEBEX_ARCHIVER__STORAGE__URL"]);
    let (key, bytes) = &written[0];
    let mut other: Manifest = serde_json::from_slice(bytes).unwrap();
    other.recordings[0].files[0].sha256 = "0".repeat(64);
    let other = Bytes::from(serde_json::to_vec(&other).unwrap());
    archive.delete(&archive.key(key).unwrap()).await.unwrap();
    archive.put_create(&archive.key(key).unwrap(), other.clone(), "application/json", None).await.unwrap();
    let report = third.sync().await;
    assert_eq!(report.exit, 1, "{report:?}");
    let error = report.manifest_error.as_deref().unwrap_or_default();
    assert!(error.contains(key.as_str()) && error.contains("not the manifest"), "{error}");
    assert!(report.manifests.is_empty(), "the chain stops at the conflict: {:?}", report.manifests);
    assert_eq!(read(&archive, key).await.0, other, "the object in the way is left as it is");
}
