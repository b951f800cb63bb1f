//! End to end: the archiver against the Webex simulator, real Postgres or SQLite, and the
//! real S3 servers (s3s-fs and Garage) or a local directory. Every test checks the
//! archive against the simulator's truth and that no token leaked and no request went
//! out before a Retry-After had passed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use tokio_util::sync::CancellationToken;
use webex_archiver::app::{self, Services, SyncReport};
use webex_archiver::archive::Metadata;
use webex_archiver::config::Needs;
use webex_archiver::sim::{
    Burst429, FaultAction, FaultEndpoint, NewRecording, RateLimit, RetryAfterFormat, SimConfig, SimHandle, Simulator,
    TruthRecording,
};
use webex_archiver::state::{ArchiveState, RecordingId};
use webex_archiver::storage;

use crate::helpers::{Backend, S3Server, TestState, settings_from_env, unique_prefix, wait_for};

/// Where the archive goes in a test.
#[derive(Debug, Clone, Copy)]
pub enum Store {
    S3(S3Server),
    Local,
}

/// One archiver (settings, state, store) against one simulator.
pub struct Harness {
    pub sim: SimHandle,
    pub db: TestState,
    pub env: BTreeMap<String, String>,
    _dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start(backend: Backend, store: Store, scope: &str, config: SimConfig) -> Self {
        let sim = Simulator::start(config).await.expect("start the simulator");
        let db = TestState::new(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let mut env = match store {
            Store::S3(server) => server.env(&unique_prefix("sync")),
            Store::Local => {
                [("WEBEX_ARCHIVER__STORAGE__URL".to_string(), format!("file://{}/archive", dir.path().display()))]
                    .into()
            }
        };
        for (k, v) in [
            ("WEBEX_ARCHIVER__WEBEX__BASE_URL", sim.api_base_url()),
            ("WEBEX_ARCHIVER__WEBEX__DOWNLOAD_HOSTS", "127.0.0.1".into()),
            ("WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN", sim.access_token()),
            ("WEBEX_ARCHIVER__WEBEX__SCOPE", scope.to_owned()),
            ("WEBEX_ARCHIVER__DATABASE__URL", db.url.clone()),
            ("WEBEX_ARCHIVER__SYNC__SINCE", "70d".into()),
            ("WEBEX_ARCHIVER__ARCHIVE__RETRY_BASE", "50ms".into()),
            ("WEBEX_ARCHIVER__ARCHIVE__RETRY_MAX", "500ms".into()),
            ("WEBEX_ARCHIVER__ARCHIVE__STALL_TIMEOUT", "5s".into()),
            ("WEBEX_ARCHIVER__HTTP__LISTEN", String::new()),
        ] {
            env.insert(k.into(), v);
        }
        Self { sim, db, env, _dir: dir }
    }

    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.insert(key.into(), value.into());
        self
    }

    pub async fn services(&self, abort: CancellationToken) -> Services {
        let settings = settings_from_env(self.env.clone(), Needs::Webex);
        Services::with_state(settings, self.db.state.clone(), abort).await.expect("build services")
    }

    pub async fn sync(&self) -> SyncReport {
        let stop = CancellationToken::new();
        let services = self.services(stop.clone()).await;
        app::sync(&services, false, &stop).await.expect("sync runs")
    }

    pub fn store(&self) -> storage::Store {
        storage::Store::from_settings(&settings_from_env(self.env.clone(), Needs::Webex).storage).unwrap()
    }

    /// What the archive must hold: listed for the scope, available, downloadable.
    pub fn expected(&self, admin: bool) -> Vec<TruthRecording> {
        self.sim
            .truth()
            .into_iter()
            .filter(|r| (admin || r.visible_to_user) && r.status == "available" && r.visible_at <= Utc::now())
            .filter(|r| !r.prevent_downloading)
            .collect()
    }

    /// Checks the archive against the truth: every expected recording archived once, with
    /// the simulator's SHA-256, in the store and in metadata.json; nothing else archived.
    pub async fn assert_archive_matches(&self, expected: &[TruthRecording]) {
        let rows = self.db.state.archived(None).await.unwrap();
        let by_id: HashMap<&str, _> = rows.iter().map(|r| (r.id.0.as_str(), &r.record)).collect();
        assert_eq!(rows.len(), by_id.len());
        let expected_ids: HashSet<&str> = expected.iter().map(|r| r.id.as_str()).collect();
        let archived_ids: HashSet<&str> = by_id.keys().copied().collect();
        assert_eq!(archived_ids, expected_ids, "archived set differs from the truth");
        let store = self.store();
        for truth in expected {
            let record = by_id[truth.id.as_str()];
            assert_eq!(Some(&record.sha256), truth.sha256.as_ref(), "{}: SHA-256 in the database", truth.id);
            assert_eq!(record.bytes as u64, truth.size_bytes);
            let metadata: Metadata =
                serde_json::from_slice(&store.get_bytes(&store.key(&record.metadata_key).unwrap()).await.unwrap())
                    .unwrap();
            assert_eq!(metadata.recording_id, truth.id);
            assert_eq!(
                Some(&metadata.files[0].sha256),
                truth.sha256.as_ref(),
                "{}: SHA-256 in metadata.json",
                truth.id
            );
            assert!(metadata.listing.get("password").is_none(), "metadata.json must not keep the recording password");
            assert!(
                record.media_key.starts_with(&truth.create_time.format("%Y/%m/%d/").to_string()),
                "{} is not under its createTime's date",
                record.media_key
            );
        }
        let report = webex_archiver::verify::verify(&self.db.state, &store, None).await.unwrap();
        assert!(report.clean(), "verify found problems: {}", webex_archiver::verify::report_text(&report));
        assert_eq!(report.checked, expected.len());
    }

    /// No token on the site host, no request before a Retry-After had passed.
    pub fn assert_well_behaved(&self) {
        let counters = self.sim.counters();
        assert_eq!(counters.token_leaks, 0, "the bearer token reached the site host");
        assert_eq!(counters.violations, 0, "requests went out before Retry-After had passed");
    }
}

fn config(recordings: usize) -> SimConfig {
    SimConfig { recordings, seed: 42, ..SimConfig::default() }
}

fn counts(report: &SyncReport) -> BTreeMap<ArchiveState, i64> {
    report.status.counts.clone()
}

#[tokio::test]
async fn admin_sync_archives_every_recording_once_on_s3s_and_postgres() {
    // 250 recordings on 3 sites: several pages per site and window.
    let h = Harness::start(Backend::Postgres, Store::S3(S3Server::S3s), "admin", config(250)).await;
    let report = h.sync().await;
    assert_eq!(report.exit, 0, "{report:?}");
    let expected = h.expected(true);
    assert_eq!(expected.len(), 250);
    h.assert_archive_matches(&expected).await;
    h.assert_well_behaved();
    assert_eq!(report.scopes.len(), 3, "one scope per site");
    assert!(report.scopes.iter().map(|s| s.pages).sum::<u64>() > 12, "the windows span several pages");

    // A second sync lists again but downloads nothing.
    let before = h.sim.counters();
    let again = h.sync().await;
    assert_eq!(again.exit, 0);
    let after = h.sim.counters();
    assert_eq!(after.downloads.started, before.downloads.started, "nothing is downloaded twice");
    assert!(after.downloads_by_id.values().all(|d| d.completed == 1));
    // API calls: one details call per recording, list pages amortised.
    let details: u64 = after.details_calls.values().sum();
    assert_eq!(details, 250);
}

#[tokio::test]
async fn user_sync_on_garage_and_sqlite() {
    let h = Harness::start(Backend::Sqlite, Store::S3(S3Server::Garage), "user", config(120)).await;
    let report = h.sync().await;
    assert_eq!(report.exit, 0, "{report:?}");
    let expected = h.expected(false);
    assert!(expected.len() < 120, "the user listing sees only own and shared recordings");
    h.assert_archive_matches(&expected).await;
    h.assert_well_behaved();
}

#[tokio::test]
async fn window_edges_and_late_arrivals() {
    let mut h = Harness::start(Backend::Postgres, Store::Local, "admin", config(0)).await;
    let since: DateTime<Utc> = Utc::now() - chrono::Duration::days(20);
    let since = DateTime::from_timestamp(since.timestamp(), 0).unwrap();
    h.set("WEBEX_ARCHIVER__SYNC__SINCE", &since.to_rfc3339());
    h.set("WEBEX_ARCHIVER__WEBEX__SITE_URLS", "acme.webex.com");
    let week = chrono::Duration::days(7);
    let ms = chrono::Duration::milliseconds(1);
    // Exactly on window boundaries, and one millisecond either side.
    for at in [since, since + week - ms, since + week, since + week + ms, since + week * 2] {
        h.sim
            .add_recording(NewRecording {
                create_time: at,
                site_url: Some("acme.webex.com".into()),
                ..Default::default()
            })
            .unwrap();
    }
    let first = h.sync().await;
    assert_eq!(first.exit, 0, "{first:?}");
    assert_eq!(counts(&first)[&ArchiveState::Archived], 5);

    // Late arrivals: produced hours ago, listed only now. The overlap catches them.
    let late = h
        .sim
        .add_recording(NewRecording {
            create_time: Utc::now() - chrono::Duration::hours(20),
            site_url: Some("acme.webex.com".into()),
            ..Default::default()
        })
        .unwrap();
    let second = h.sync().await;
    assert_eq!(second.exit, 0);
    assert_eq!(counts(&second)[&ArchiveState::Archived], 6);
    assert!(h.db.state.archived(None).await.unwrap().iter().any(|r| r.id.0 == late.id));
    let expected = h.expected(true);
    h.assert_archive_matches(&expected).await;
    let counters = h.sim.counters();
    assert!(counters.downloads_by_id.values().all(|d| d.started == 1), "each edge recording downloaded once");
}

#[tokio::test]
async fn rate_limit_storms_are_honoured_by_every_worker() {
    let mut config = config(60);
    config.rate_limit =
        Some(RateLimit { requests_per_second: 15.0, burst: 5, retry_after_format: RetryAfterFormat::Seconds });
    config.burst_429 = Some(Burst429 {
        requests: Some(5),
        duration: None,
        retry_after: 1,
        retry_after_format: RetryAfterFormat::HttpDate,
        retry_after_raw: None,
    });
    let mut h = Harness::start(Backend::Postgres, Store::S3(S3Server::S3s), "admin", config).await;
    h.set("WEBEX_ARCHIVER__ARCHIVE__CONCURRENCY", "8");
    let report = h.sync().await;
    assert_eq!(report.exit, 0, "{report:?}");
    let counters = h.sim.counters();
    assert!(counters.rate_limited >= 5, "the storm happened: {} 429s", counters.rate_limited);
    h.assert_well_behaved();
    h.assert_archive_matches(&h.expected(true)).await;
}

#[tokio::test]
async fn server_errors_resets_and_truncations_are_retried_to_a_correct_object() {
    let mut config = config(40);
    config.size_min = 200_000;
    config.size_max = 400_000;
    let h = Harness::start(Backend::Postgres, Store::S3(S3Server::S3s), "admin", config).await;
    let ids: Vec<String> = h.sim.truth().iter().map(|r| r.id.clone()).collect();
    h.sim.set_faults(vec![
        webex_archiver::sim::FaultRule::new(FaultAction::ApiError { status: 503 }).probability(0.2),
        webex_archiver::sim::FaultRule::new(FaultAction::ApiError { status: 502 })
            .endpoint(FaultEndpoint::Details)
            .times(3),
        webex_archiver::sim::FaultRule::new(FaultAction::Reset { after_bytes: 50_000 })
            .ids(ids[0..5].to_vec())
            .times(1),
        webex_archiver::sim::FaultRule::new(FaultAction::ShortBody { after_bytes: 70_000 })
            .ids(ids[5..10].to_vec())
            .times(2),
        webex_archiver::sim::FaultRule::new(FaultAction::ExpiredLink).ids(ids[10..15].to_vec()).times(1),
    ]);
    let report = h.sync().await;
    assert_eq!(report.exit, 0, "{report:?}");
    h.assert_archive_matches(&h.expected(true)).await;
    h.assert_well_behaved();
    let counters = h.sim.counters();
    assert!(counters.faults("reset") >= 5 && counters.faults("short_body") >= 10, "{:?}", counters.faults_injected);
    for id in &ids[0..10] {
        assert_eq!(counters.downloads_of(id).completed, 1, "{id}: only the last, complete download finished");
    }
    for id in &ids[10..15] {
        assert!(counters.details_calls[id] >= 2, "{id}: expired links were replaced by fresh ones");
    }
}

#[tokio::test]
async fn login_pages_are_never_stored_and_prevent_downloading_is_final() {
    let mut config = config(12);
    config.prevent_downloading_ids = Vec::new();
    let h = Harness::start(Backend::Sqlite, Store::Local, "admin", config).await;
    let truth = h.sim.truth();
    let html_always = truth[0].id.clone();
    let html_once = truth[1].id.clone();
    h.sim.set_faults(vec![
        webex_archiver::sim::FaultRule::new(FaultAction::LoginPage).ids([html_always.clone()]),
        webex_archiver::sim::FaultRule::new(FaultAction::LoginPage).ids([html_once.clone()]).times(1),
    ]);
    let prevented = h
        .sim
        .add_recording(NewRecording {
            create_time: Utc::now() - chrono::Duration::days(3),
            prevent_downloading: true,
            ..Default::default()
        })
        .unwrap();
    let mut h = h;
    h.set("WEBEX_ARCHIVER__ARCHIVE__MAX_ATTEMPTS", "3");
    let report = h.sync().await;
    assert_eq!(report.exit, 1, "one recording failed for good");
    let states: HashMap<String, ArchiveState> =
        report.status.recent_failures.iter().map(|f| (f.id.0.clone(), f.state)).collect();
    assert_eq!(states.get(&html_always), Some(&ArchiveState::Failed));
    assert_eq!(states.get(&prevented.id), Some(&ArchiveState::NotDownloadable));
    assert_eq!(counts(&report)[&ArchiveState::Archived], 11, "all but the login page");
    // Nothing of the login-page recording reached the store.
    let store = h.store();
    let objects: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(store.list("").unwrap()).await.unwrap();
    assert!(objects.iter().all(|o| !o.location.as_ref().contains(&html_always)), "a login page was stored");
    assert!(objects.iter().any(|o| o.location.as_ref().contains(&html_once)), "the retried one is archived");
    h.assert_well_behaved();

    // `retry --failed` after the site is fixed archives it.
    h.sim.clear_faults();
    assert_eq!(h.db.state.retry(None, &crate::helpers::operator()).await.unwrap(), 1);
    let report = h.sync().await;
    assert_eq!(report.exit, 0, "{report:?}");
    assert_eq!(counts(&report)[&ArchiveState::NotDownloadable], 1, "not_downloadable stays final");
}

#[tokio::test]
async fn an_existing_object_is_never_overwritten() {
    let h = Harness::start(Backend::Postgres, Store::S3(S3Server::Garage), "admin", config(3)).await;
    let truth = h.sim.truth();
    let store = h.store();
    let key_of = |r: &TruthRecording| {
        store.key(&format!("{}/{}/recording.{}", r.create_time.format("%Y/%m/%d"), r.id, ext(&r.format))).unwrap()
    };
    // One key holds other bytes (a conflict), one holds the very same bytes (adopted).
    let conflict = &truth[0];
    store
        .put_create(&key_of(conflict), Bytes::from_static(b"\0\0\0\x18ftypisom not the recording"), "video/mp4", None)
        .await
        .unwrap();
    let same = &truth[1];
    let content = webex_archiver::sim::Content::recording(&same.id, &same.format, same.size_bytes).to_vec();
    store.put_create(&key_of(same), Bytes::from(content), "video/mp4", None).await.unwrap();

    let report = h.sync().await;
    assert_eq!(report.exit, 1);
    let failure = report.status.recent_failures.iter().find(|f| f.id.0 == conflict.id).expect("the conflict failed");
    assert_eq!(failure.reason.as_deref(), Some("conflict"));
    assert_eq!(
        store.get_bytes(&key_of(conflict)).await.unwrap(),
        Bytes::from_static(b"\0\0\0\x18ftypisom not the recording"),
        "the existing object is untouched"
    );
    let archived: Vec<RecordingId> = h.db.state.archived(None).await.unwrap().into_iter().map(|r| r.id).collect();
    assert!(archived.contains(&RecordingId(same.id.clone())), "identical bytes are adopted");
    h.assert_well_behaved();
}

fn ext(format: &str) -> &'static str {
    match format {
        "MP4" => "mp4",
        "ARF" => "arf",
        _ => "bin",
    }
}

#[tokio::test]
async fn restarts_in_discovery_and_archiving_redownload_nothing_archived() {
    let mut config = config(30);
    config.size_min = 300_000;
    config.size_max = 300_000;
    config.faults = vec![webex_archiver::sim::FaultRule::new(FaultAction::Throttle { bytes_per_second: 1_500_000 })];
    let mut h = Harness::start(Backend::Postgres, Store::S3(S3Server::S3s), "admin", config).await;
    h.set("WEBEX_ARCHIVER__SYNC__WINDOW", "2d");

    // Interrupt discovery after its second window.
    let stop = CancellationToken::new();
    let services = h.services(stop.clone()).await;
    let windows = std::sync::atomic::AtomicU64::new(0);
    let result = services
        .discovery
        .poll_once(&stop, &|_, _| {
            if windows.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                stop.cancel();
            }
        })
        .await;
    assert!(result.is_err(), "the pass was interrupted");
    let partial = h.db.state.status(0).await.unwrap().counts[&ArchiveState::Pending];
    assert!(partial < 30, "only part was listed before the interruption ({partial})");

    // Interrupt archiving once a few recordings are archived.
    let stop = CancellationToken::new();
    let services = h.services(stop.clone()).await;
    let progress = services.archiver.progress();
    let run = {
        let services = services.clone();
        let stop = stop.clone();
        tokio::spawn(async move { app::sync(&services, false, &stop).await })
    };
    wait_for("a few archived recordings", Duration::from_secs(60), || {
        let progress = progress.clone();
        async move { (progress.archived.load(std::sync::atomic::Ordering::SeqCst) >= 4).then_some(()) }
    })
    .await;
    stop.cancel();
    let interrupted = run.await.unwrap().unwrap();
    assert_eq!(interrupted.exit, 1, "interrupted work is reported as left");
    let archived_first: Vec<String> = h.db.state.archived(None).await.unwrap().into_iter().map(|r| r.id.0).collect();
    assert!(archived_first.len() >= 4);
    assert_eq!(interrupted.status.counts[&ArchiveState::Archiving], 0, "interrupted transfers were released");

    // A new process finishes the job.
    let report = h.sync().await;
    assert_eq!(report.exit, 0, "{report:?}");
    h.assert_archive_matches(&h.expected(true)).await;
    let counters = h.sim.counters();
    for id in &archived_first {
        assert_eq!(
            counters.downloads_of(id).started,
            1,
            "{id} was archived before the restart and not downloaded again"
        );
    }
    h.assert_well_behaved();
}

#[tokio::test]
async fn backfill_lists_older_history_on_its_own_resumable_cursor() {
    let mut h = Harness::start(Backend::Postgres, Store::Local, "admin", config(0)).await;
    h.set("WEBEX_ARCHIVER__SYNC__SINCE", "30d");
    h.set("WEBEX_ARCHIVER__WEBEX__SITE_URLS", "acme.webex.com");
    let days = |d: i64| Utc::now() - chrono::Duration::days(d);
    for d in [100, 80, 60, 45, 10] {
        h.sim
            .add_recording(NewRecording {
                create_time: days(d),
                site_url: Some("acme.webex.com".into()),
                ..Default::default()
            })
            .unwrap();
    }
    let report = h.sync().await;
    assert_eq!(counts(&report)[&ArchiveState::Archived], 1, "sync alone starts at sync.since");

    // A backfill interrupted after its second window...
    let (since, until) = (days(120).trunc_subsecs(3), days(30).trunc_subsecs(3));
    let stop = CancellationToken::new();
    let services = h.services(stop.clone()).await;
    let windows = std::sync::atomic::AtomicU64::new(0);
    let interrupted = services
        .discovery
        .backfill(since, until, &stop, &|_, _| {
            if windows.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                stop.cancel();
            }
        })
        .await;
    assert!(interrupted.is_err());
    let cursor =
        h.db.state
            .cursors()
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.kind == webex_archiver::state::CursorKind::Backfill)
            .expect("a backfill cursor");
    assert_eq!(cursor.position, since + chrono::Duration::days(14), "two windows were listed");
    assert_eq!(cursor.last_error.as_deref(), Some("discovery interrupted by shutdown"));

    // ...resumes where it stopped, lists the rest, and archives what it found.
    let stop = CancellationToken::new();
    let services = h.services(stop.clone()).await;
    let report = app::backfill(&services, since, until, false, &stop).await.unwrap();
    assert_eq!(report.exit, 0, "{report:?}");
    assert_eq!(report.scopes[0].windows, 11, "13 windows in 90 days, 2 done before");
    assert_eq!(counts(&report)[&ArchiveState::Archived], 5);
    // Run again: nothing left to list.
    let again = app::backfill(&services, since, until, false, &stop).await.unwrap();
    assert_eq!(again.scopes[0].windows, 0);
    h.assert_archive_matches(&h.expected(true)).await;
}

#[tokio::test]
async fn a_failing_window_stops_its_scope_naming_the_window_and_tracking_id_and_the_others_go_on() {
    let mut h = Harness::start(Backend::Sqlite, Store::Local, "admin", config(30)).await;
    h.set("WEBEX_ARCHIVER__WEBEX__SITE_URLS", "acme-eu.webex.com,acme.webex.com");
    // acme-eu's first listing request is refused for good (sites are listed at once:
    // the rule names the site, not the first request).
    h.sim.set_faults(vec![
        webex_archiver::sim::FaultRule::new(FaultAction::ApiError { status: 403 })
            .endpoint(FaultEndpoint::AdminList)
            .sites(["acme-eu.webex.com"])
            .times(1),
    ]);
    let report = h.sync().await;
    assert_eq!(report.exit, 1);
    let error = report.discovery_error.clone().expect("a scope stopped");
    assert!(error.contains("admin:acme-eu.webex.com") && error.contains("window ["), "{error}");
    assert!(error.contains("trackingId SIM_"), "the error names Webex's trackingId: {error}");
    let cursors: HashMap<String, webex_archiver::state::Cursor> =
        h.db.state.cursors().await.unwrap().into_iter().map(|c| (c.scope.0.clone(), c)).collect();
    let failed = &cursors["admin:acme-eu.webex.com"];
    assert!(failed.last_error.as_deref().is_some_and(|e| e.contains("trackingId")) && failed.last_success_at.is_none());
    let healthy = &cursors["admin:acme.webex.com"];
    assert!(healthy.last_error.is_none() && healthy.last_success_at.is_some(), "the other site went on");
    let archived: HashSet<String> = h.db.state.archived(None).await.unwrap().into_iter().map(|r| r.id.0).collect();
    let truth = h.sim.truth();
    let on = |site: &str| truth.iter().filter(|r| r.site_url == site).map(|r| r.id.clone()).collect::<HashSet<_>>();
    assert_eq!(archived, on("acme.webex.com"), "nothing of the failed scope is recorded; all of the other is archived");

    let initial = failed.position;
    let report = h.sync().await;
    assert_eq!(report.exit, 0, "{report:?}");
    let failed =
        h.db.state.cursors().await.unwrap().into_iter().find(|c| c.scope.0 == "admin:acme-eu.webex.com").unwrap();
    assert!(failed.position > initial && failed.last_error.is_none());
    assert_eq!(
        counts(&report)[&ArchiveState::Archived] as usize,
        on("acme.webex.com").len() + on("acme-eu.webex.com").len()
    );
}

#[tokio::test]
async fn audio_and_transcript_are_archived_when_asked_for() {
    let mut config = config(4);
    config.format_weights = [("MP4".to_string(), 1)].into();
    let mut h = Harness::start(Backend::Postgres, Store::S3(S3Server::S3s), "admin", config).await;
    h.set("WEBEX_ARCHIVER__ARCHIVE__INCLUDE", "recording,audio,transcript");
    let report = h.sync().await;
    assert_eq!(report.exit, 0, "{report:?}");
    let store = h.store();
    for row in h.db.state.archived(None).await.unwrap() {
        let truth = h.sim.recording(&row.id.0).unwrap();
        let metadata: Metadata =
            serde_json::from_slice(&store.get_bytes(&store.key(&row.record.metadata_key).unwrap()).await.unwrap())
                .unwrap();
        let by_kind: HashMap<&str, &webex_archiver::archive::FileEntry> =
            metadata.files.iter().map(|f| (f.kind.as_str(), f)).collect();
        assert_eq!(by_kind.len(), 3, "{:?}", metadata.files);
        let audio = webex_archiver::sim::Content::audio(&truth.id, truth.size_bytes);
        let transcript = webex_archiver::sim::Content::transcript(&truth.id, truth.duration_seconds);
        assert_eq!(by_kind["audio"].sha256, audio.sha256_hex());
        assert_eq!(by_kind["transcript"].sha256, transcript.sha256_hex());
        assert!(by_kind["audio"].key.ends_with("/audio.m4a") && by_kind["transcript"].key.ends_with("/transcript.vtt"));
    }
    let report = webex_archiver::verify::verify(&h.db.state, &store, None).await.unwrap();
    assert!(report.clean(), "{}", webex_archiver::verify::report_text(&report));
    h.assert_well_behaved();
}

#[tokio::test]
async fn a_request_ceiling_keeps_below_the_rate_limit() {
    let mut config = config(8);
    config.rate_limit =
        Some(RateLimit { requests_per_second: 5.0, burst: 1, retry_after_format: RetryAfterFormat::Seconds });
    let mut h = Harness::start(Backend::Sqlite, Store::Local, "admin", config).await;
    h.set("WEBEX_ARCHIVER__WEBEX__MAX_REQUESTS_PER_SECOND", "4");
    let report = h.sync().await;
    assert_eq!(report.exit, 0, "{report:?}");
    assert_eq!(h.sim.counters().rate_limited, 0, "the ceiling kept every request under the limit");
}

#[tokio::test]
async fn a_process_that_starts_during_a_shared_pause_waits_for_it() {
    let h = Harness::start(Backend::Postgres, Store::Local, "admin", config(3)).await;
    // Another replica was told Retry-After: 2 s a moment ago.
    let until = Utc::now() + chrono::Duration::seconds(2);
    h.db.state.pause_until(until).await.unwrap();
    let stop = CancellationToken::new();
    let services = h.services(stop.clone()).await;
    let run = tokio::spawn(async move { app::sync(&services, false, &stop).await });
    let api = |c: &webex_archiver::sim::Counters| -> u64 { c.requests.values().flat_map(|m| m.values()).sum() };
    while Utc::now() < until - chrono::Duration::milliseconds(100) {
        assert_eq!(api(&h.sim.counters()), 0, "a request went out during the shared pause");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.exit, 0);
    assert!(api(&h.sim.counters()) > 0);
}

#[tokio::test]
async fn verify_reports_missing_corrupt_and_unclaimed_objects() {
    let h = Harness::start(Backend::Sqlite, Store::Local, "admin", config(3)).await;
    assert_eq!(h.sync().await.exit, 0);
    let store = h.store();
    let rows = h.db.state.archived(None).await.unwrap();
    // Corrupt one recording file, remove another's metadata.json, drop a stray object.
    let corrupt = store.key(&rows[0].record.media_key).unwrap();
    store.delete(&corrupt).await.unwrap();
    store.put_create(&corrupt, Bytes::from_static(b"bit rot"), "video/mp4", None).await.unwrap();
    store.delete(&store.key(&rows[1].record.metadata_key).unwrap()).await.unwrap();
    store
        .put_create(&store.key("2020/01/01/stray/recording.mp4").unwrap(), Bytes::from_static(b"?"), "video/mp4", None)
        .await
        .unwrap();

    let report = webex_archiver::verify::verify(&h.db.state, &store, None).await.unwrap();
    assert!(!report.clean());
    assert_eq!(report.corrupt.len(), 1, "{report:?}");
    assert_eq!(report.corrupt[0].recording_id, rows[0].id.0);
    assert_eq!(report.missing.len(), 1);
    assert_eq!(report.missing[0].key, rows[1].record.metadata_key);
    assert_eq!(report.unclaimed, ["2020/01/01/stray/recording.mp4"]);
    assert_eq!(report.ok, 1);
    // Read one row at a time (batches by id), it finds the same, each recording once.
    let batched = webex_archiver::verify::verify_in_batches(&h.db.state, &store, None, 1).await.unwrap();
    assert_eq!((batched.checked, batched.ok), (3, 1), "{batched:?}");
    assert_eq!((batched.corrupt.len(), batched.missing.len(), batched.unclaimed.len()), (1, 1, 1));
    // A sample checks only recordings, not the prefix.
    let sample = webex_archiver::verify::verify(&h.db.state, &store, Some(3)).await.unwrap();
    assert!(!sample.scanned_for_unclaimed && sample.checked == 3);
    // More objects than one listing batch (the database is asked about 1,000 listed
    // objects at a time): every batch tells claimed directories from unclaimed ones.
    for i in 0..1_200 {
        let key = store.key(&format!("2020/01/02/stray-{i:04}/recording.mp4")).unwrap();
        store.put_create(&key, Bytes::from_static(b"?"), "video/mp4", None).await.unwrap();
    }
    let report = webex_archiver::verify::verify(&h.db.state, &store, None).await.unwrap();
    assert_eq!(report.unclaimed.len(), 1_201, "{:?}", &report.unclaimed[..5.min(report.unclaimed.len())]);
    assert!(report.unclaimed.iter().all(|key| key.contains("/stray")), "a recording's object called unclaimed");
    assert_eq!(report.checked, 3);
}

/// Issue 13, point 4: a claim's lease lives as long as its attempt, not only while bytes
/// flow. The recording's details are answered `423` with a Retry-After four leases long:
/// the whole archiver pauses with the recording claimed. Idle workers do not claim
/// during the pause, and the claimed one's heartbeat keeps its lease, so no other worker
/// takes the recording over when the pause ends, and the wait costs it no attempt.
#[tokio::test]
async fn details_stalled_behind_a_long_shared_pause_keep_their_lease_and_cost_no_attempt() {
    let mut h = Harness::start(
        Backend::Postgres,
        Store::Local,
        "admin",
        SimConfig { recordings: 1, seed: 31, ..SimConfig::default() },
    )
    .await;
    h.set("WEBEX_ARCHIVER__ARCHIVE__LEASE", "1s");
    h.set("WEBEX_ARCHIVER__ARCHIVE__CONCURRENCY", "3");
    let id = h.sim.truth_without_digests()[0].id.clone();
    h.sim.set_faults(vec![
        webex_archiver::sim::FaultRule::new(FaultAction::Locked { retry_after: Some(4) })
            .ids([id.clone()])
            .endpoint(FaultEndpoint::Details)
            .times(1),
    ]);
    let report = h.sync().await;
    assert_eq!(report.exit, 0, "{report:?}");
    h.assert_archive_matches(&h.expected(true)).await;
    assert_eq!(h.sim.counters().details_calls.get(&id).copied(), Some(2), "one refused, one answered");

    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&h.db.url).await.expect("connect");
    let (attempts, lease_expiries): (i64, i64) =
        sqlx::query_as("SELECT attempts::bigint, lease_expiries::bigint FROM recordings WHERE id = $1")
            .bind(&id)
            .fetch_one(&mut db)
            .await
            .expect("the recording's row");
    assert_eq!(lease_expiries, 0, "another worker took the recording over after the pause");
    assert_eq!(attempts, 1, "the pause was counted as a failed attempt");
}

/// Issue 13, point 8: a stop that was asked for is a clean exit, whichever of the
/// supervisor's branches sees it first (the workers end as soon as a stop is requested,
/// and may win the race against the stop itself). It is a race, so it runs many times,
/// with stops at spread-out moments: before the first claim, during discovery, during
/// transfers, and after the work is done. Several runtime threads, so that the workers
/// can end before the supervisor sees the stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_requested_stop_always_exits_zero() {
    let mut h = Harness::start(
        Backend::Sqlite,
        Store::Local,
        "admin",
        SimConfig { recordings: 6, seed: 32, ..SimConfig::default() },
    )
    .await;
    h.set("WEBEX_ARCHIVER__ARCHIVE__CONCURRENCY", "4");
    h.set("WEBEX_ARCHIVER__SHUTDOWN__GRACE", "100ms");
    for round in 0..40u64 {
        let stop = CancellationToken::new();
        let abort = CancellationToken::new();
        let services = h.services(abort.clone()).await;
        let run = tokio::spawn(app::run(services, stop.clone(), abort));
        // 0, 7, 14, ... 273 ms: the stop lands at a different point of the run each round.
        tokio::time::sleep(Duration::from_millis(round * 7)).await;
        stop.cancel();
        let exit = run.await.expect("run panicked").expect("run failed");
        assert_eq!(exit, 0, "round {round}: a requested stop exited {exit}");
    }
}
