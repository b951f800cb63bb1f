//! Daily manifests: written by `sync` for settled days older than `sync.overlap`, chained,
//! supplemented for late arrivals (never while one of the day's recordings is pending),
//! and checked by `verify --manifests`, which finds missing, changed and unknown objects.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use chrono::{Duration, Utc};
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
