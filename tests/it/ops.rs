//! Operations: the daemon's endpoint (/healthz, /readyz, /metrics agreeing with status),
//! OAuth refresh over many token lifetimes, and graceful shutdown.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use webex_archiver::app::{self, Services};
use webex_archiver::sim::{FaultAction, FaultRule, NewRecording, SimConfig};
use webex_archiver::state::ArchiveState;

use crate::helpers::{Backend, S3Server, wait_for};
use crate::sync::{Harness, Store};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `run` in the background; returns the stop token and the join handle.
async fn start_run(h: &Harness) -> (CancellationToken, tokio::task::JoinHandle<anyhow::Result<u8>>, Services) {
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();
    let services = h.services(abort.clone()).await;
    let task = {
        let services = services.clone();
        let stop = stop.clone();
        tokio::spawn(async move { app::run(services, stop, abort).await })
    };
    (stop, task, services)
}

async fn all_archived(services: &Services, n: i64) {
    let state = services.state.clone();
    wait_for("every recording archived", Duration::from_secs(90), || {
        let state = state.clone();
        async move {
            let status = state.status(0).await.ok()?;
            (status.counts[&ArchiveState::Archived] >= n).then_some(())
        }
    })
    .await;
}

fn scrape(text: &str) -> HashMap<String, f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text");
    let mut out = HashMap::new();
    for sample in scrape.samples {
        let mut labels: Vec<String> = sample.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        out.insert(format!("{}{{{}}}", sample.metric, labels.join(",")), value);
    }
    out
}

#[tokio::test]
async fn run_serves_health_readiness_and_metrics_that_agree_with_status() {
    let port = free_port();
    let mut h = Harness::start(
        Backend::Postgres,
        Store::S3(S3Server::S3s),
        "admin",
        SimConfig { recordings: 15, ..SimConfig::default() },
    )
    .await;
    h.set("WEBEX_ARCHIVER__HTTP__LISTEN", &format!("127.0.0.1:{port}"));
    let (stop, task, services) = start_run(&h).await;
    all_archived(&services, 15).await;

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = wait_for("readiness", Duration::from_secs(30), || {
        let http = http.clone();
        let base = base.clone();
        async move {
            let response = http.get(format!("{base}/readyz")).send().await.ok()?;
            let ok = response.status() == 200;
            let body: serde_json::Value = response.json().await.ok()?;
            ok.then_some(body)
        }
    })
    .await;
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["database"], "ok");
    assert_eq!(ready["store"], "ok");

    let response = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert!(response.headers()["content-type"].to_str().unwrap().contains("openmetrics-text"));
    // The recordings per state are counted every few seconds, not at each scrape: wait for
    // the count that follows the last recording archived.
    let text = wait_for("the shared counts to count every recording archived", Duration::from_secs(60), || {
        let http = http.clone();
        let base = base.clone();
        async move {
            let text = http.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
            (scrape(&text).get("webex_archiver_recordings{state=archived}") == Some(&15.0)).then_some(text)
        }
    })
    .await;
    let metrics = scrape(&text);
    let counted_at = metrics["webex_archiver_recordings_counted_timestamp_seconds{}"];
    assert!(counted_at > 1.7e9 && counted_at <= Utc::now().timestamp() as f64 + 1.0, "{text}");
    let status = services.state.status(0).await.unwrap();
    for (state, n) in &status.counts {
        let key = format!("webex_archiver_recordings{{state={}}}", state.as_str());
        assert_eq!(metrics.get(&key).copied(), Some(*n as f64), "{key} disagrees with status:\n{text}");
    }
    // The scrape counts the process's tasks (the server's, the workers', discovery's):
    // what the soak bench watches over months of uptime.
    assert!(metrics["webex_archiver_runtime_tasks{}"] >= 2.0, "{text}");
    assert_eq!(metrics["webex_archiver_recordings_archived_total{}"], 15.0);
    assert_eq!(metrics["webex_archiver_recordings_discovered_total{}"], 15.0);
    assert_eq!(metrics["webex_archiver_archived_bytes_total{}"], status.bytes_archived as f64);
    assert!(metrics["webex_archiver_api_requests_total{endpoint=details,status=200}"] >= 15.0);
    for site in h.sim.sites() {
        let key = format!("webex_archiver_last_successful_pass_timestamp_seconds{{scope=admin:{site}}}");
        assert!(metrics.get(&key).copied().unwrap_or(0.0) > 1.7e9, "{key} missing:\n{text}");
    }
    assert_eq!(metrics["webex_archiver_oldest_unarchived_age_seconds{}"], 0.0);
    assert!(text.contains("webex_archiver_transfer_duration_seconds_bucket"), "{text}");

    stop.cancel();
    assert_eq!(task.await.unwrap().unwrap(), 0, "a clean stop exits 0");
    h.assert_well_behaved();
}

#[tokio::test]
async fn readiness_names_the_failed_check() {
    let port = free_port();
    let dead_s3 = free_port();
    let mut h =
        Harness::start(Backend::Sqlite, Store::Local, "user", SimConfig { recordings: 0, ..SimConfig::default() })
            .await;
    h.set("WEBEX_ARCHIVER__HTTP__LISTEN", &format!("127.0.0.1:{port}"));
    h.set("WEBEX_ARCHIVER__STORAGE__URL", "s3://nowhere/archive");
    h.set("AWS_ENDPOINT_URL", &format!("http://127.0.0.1:{dead_s3}"));
    h.set("AWS_ALLOW_HTTP", "true");
    h.set("AWS_ACCESS_KEY_ID", "x");
    h.set("AWS_SECRET_ACCESS_KEY", "y");
    h.set("AWS_REGION", "us-east-1");
    let (stop, task, _) = start_run(&h).await;
    let body: serde_json::Value = wait_for("/readyz to answer", Duration::from_secs(60), || async move {
        let response = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await.ok()?;
        assert_eq!(response.status(), 503);
        response.json().await.ok()
    })
    .await;
    assert_eq!(body["ready"], false);
    assert_eq!(body["database"], "ok");
    assert!(body["store"].as_str().unwrap().starts_with("unavailable"), "{body}");
    stop.cancel();
    assert_eq!(task.await.unwrap().unwrap(), 0);
}

#[tokio::test]
async fn oauth_keeps_a_run_going_over_many_token_lifetimes() {
    let config = SimConfig {
        recordings: 10,
        access_token_lifetime: Duration::from_secs(3),
        rotate_refresh_tokens: true,
        ..SimConfig::default()
    };
    let mut h = Harness::start(Backend::Postgres, Store::Local, "admin", config).await;
    let (client_id, client_secret, refresh_token) = (h.sim.client_id(), h.sim.client_secret(), h.sim.refresh_token());
    h.env.remove("WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN");
    h.set("WEBEX_ARCHIVER__WEBEX__OAUTH__CLIENT_ID", &client_id);
    h.set("WEBEX_ARCHIVER__WEBEX__OAUTH__CLIENT_SECRET", &client_secret);
    h.set("WEBEX_ARCHIVER__WEBEX__OAUTH__REFRESH_TOKEN", &refresh_token);
    h.set("WEBEX_ARCHIVER__WEBEX__OAUTH__REFRESH_AHEAD", "1s");
    h.set("WEBEX_ARCHIVER__SYNC__POLL_INTERVAL", "1s");
    let (stop, task, services) = start_run(&h).await;

    // 36 s: twelve access-token lifetimes, with new recordings arriving all along and one
    // forced expiry (the next request gets a 401 and must be saved by one refresh).
    let start = std::time::Instant::now();
    let mut added = 0;
    while start.elapsed() < Duration::from_secs(36) {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        h.sim
            .add_recording(NewRecording {
                create_time: Utc::now() - chrono::Duration::minutes(5),
                ..Default::default()
            })
            .unwrap();
        added += 1;
        if added == 10 {
            h.sim.expire_access_tokens();
        }
    }
    all_archived(&services, 10 + added).await;
    stop.cancel();
    assert_eq!(task.await.unwrap().unwrap(), 0);
    let status = services.state.status(10).await.unwrap();
    assert_eq!(status.counts[&ArchiveState::Failed], 0, "{:?}", status.recent_failures);
    let counters = h.sim.counters();
    assert!(counters.token_refreshes >= 10, "only {} refreshes in 12 lifetimes", counters.token_refreshes);
    // `status` shows the refresh token's lifetime (and never the token).
    let oauth = status.oauth.clone().expect("status reports the OAuth tokens");
    assert!(oauth.refresh_expires_at.expect("a refresh-token lifetime") > Utc::now() + chrono::Duration::days(80));
    assert_eq!(oauth.refreshes as u64, counters.token_refreshes);
    let text = app::status_text(&status, Utc::now());
    assert!(text.contains("refresh token until"), "{text}");
    assert!(!text.contains(&refresh_token));
    assert!(!services.webex.unauthorized());

    // The refresh tokens rotated: the configured one is revoked, the newest is in the
    // database, and a restarted process uses it.
    let report = h.sync().await;
    assert_eq!(report.exit, 0, "a restart continues with the stored refresh token: {report:?}");
    h.assert_well_behaved();
}

#[tokio::test]
async fn shutdown_lets_transfers_finish_within_the_grace_and_releases_the_rest() {
    let config = SimConfig {
        recordings: 2,
        size: Some(12 << 20),
        faults: vec![FaultRule::new(FaultAction::Throttle { bytes_per_second: 4_000_000 })],
        ..SimConfig::default()
    };
    // Generous grace: the in-flight transfers finish, then the process exits 0.
    let mut h = Harness::start(Backend::Postgres, Store::S3(S3Server::S3s), "admin", config.clone()).await;
    h.set("WEBEX_ARCHIVER__SHUTDOWN__GRACE", "30s");
    let (stop, task, services) = start_run(&h).await;
    let progress = services.archiver.progress();
    // Both recordings claimed (a stop ends claiming: one still pending at the stop
    // would rightly stay pending) and bytes flowing.
    wait_for("both transfers under way", Duration::from_secs(30), || {
        let progress = progress.clone();
        let state = services.state.clone();
        async move {
            let claimed = state.status(0).await.ok()?.counts.get(&ArchiveState::Archiving).copied().unwrap_or(0);
            (claimed == 2 && progress.bytes.load(std::sync::atomic::Ordering::SeqCst) > 1 << 20).then_some(())
        }
    })
    .await;
    stop.cancel();
    assert_eq!(task.await.unwrap().unwrap(), 0);
    assert_eq!(services.state.status(0).await.unwrap().counts[&ArchiveState::Archived], 2, "finished within the grace");

    // Tiny grace: the transfers are aborted, their leases released without counting an
    // attempt, and nothing is left in the store.
    let mut h = Harness::start(Backend::Postgres, Store::S3(S3Server::S3s), "admin", config).await;
    h.set("WEBEX_ARCHIVER__SHUTDOWN__GRACE", "200ms");
    let (stop, task, services) = start_run(&h).await;
    let progress = services.archiver.progress();
    wait_for("transfers under way", Duration::from_secs(30), || {
        let progress = progress.clone();
        async move { (progress.bytes.load(std::sync::atomic::Ordering::SeqCst) > 18 << 20).then_some(()) }
    })
    .await;
    let stopping = std::time::Instant::now();
    stop.cancel();
    assert_eq!(task.await.unwrap().unwrap(), 0);
    assert!(stopping.elapsed() < Duration::from_secs(5), "the grace bounds the stop");
    let status = services.state.status(0).await.unwrap();
    assert_eq!(status.counts[&ArchiveState::Pending], 2, "aborted transfers are released");
    assert_eq!(status.counts[&ArchiveState::Archiving], 0);
    let claims = services.state.claim_due("check", Duration::from_secs(60), 2).await.unwrap();
    assert!(claims.iter().all(|c| c.attempts == 1), "the aborted attempt was given back: {claims:?}");
    let objects: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(h.store().list("").unwrap()).await.unwrap();
    assert!(objects.is_empty(), "an aborted upload left {objects:?}");
}

/// `run` sweeps the recycle bin too (due at its first pass, then every
/// `compliance.deletion_sweep`), and writes the daily manifests after its passes.
#[tokio::test]
async fn run_sweeps_deletions_at_the_source_and_writes_manifests() {
    let config = SimConfig { recordings: 5, seed: 41, compliance_officer: true, ..Default::default() };
    let mut h = Harness::start(Backend::Postgres, Store::Local, "admin", config).await;
    h.set("WEBEX_ARCHIVER__SYNC__POLL_INTERVAL", "200ms");
    h.set("WEBEX_ARCHIVER__COMPLIANCE__DELETION_SWEEP", "1ms");
    let truth = h.sim.truth();
    h.sim.set_status(&truth[0].id, "deleted").unwrap();
    let (stop, task, services) = start_run(&h).await;
    // The recording in the recycle bin is found by the first pass's sweep and archived.
    all_archived(&services, 5).await;
    let state = services.state.clone();
    let seen = |n: i64| {
        let state = state.clone();
        move || {
            let state = state.clone();
            async move { (state.status(0).await.ok()?.deleted_at_source >= n).then_some(()) }
        }
    };
    wait_for("the first deletion seen", Duration::from_secs(30), seen(1)).await;
    // Deleted while `run` goes on: a later pass's sweep sees it; it stays archived.
    h.sim.set_status(&truth[1].id, "deleted").unwrap();
    wait_for("the second deletion seen", Duration::from_secs(30), seen(2)).await;
    let status = services.state.status(0).await.unwrap();
    assert_eq!(status.counts[&ArchiveState::Archived], 5);
    // The pass after the archives writes the manifests of the settled days.
    let state = services.state.clone();
    wait_for("a manifest written by run", Duration::from_secs(30), || {
        let state = state.clone();
        async move { state.last_manifest().await.ok().flatten() }
    })
    .await;
    stop.cancel();
    assert_eq!(task.await.unwrap().unwrap(), 0);
}
