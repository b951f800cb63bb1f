//! The site host: content, tickets, leaks, download faults, download counters.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use webex_archiver::sim::{
    Content, Endpoint, FaultAction, FaultMedia, FaultRule, MediaKind, NewRecording, SimConfig, SimHandle,
};
use webex_archiver::webex::models::{DirectDownloadLinks, RecordingDetails};

use super::{api, assert_webex_error, client, get_as, start};

/// A simulator with `n` MP4 recordings of `size` bytes, all the user's own.
async fn sim_with(n: usize, size: u64) -> SimHandle {
    start(SimConfig {
        recordings: n,
        size: Some(size),
        format_weights: [("MP4".to_string(), 1)].into(),
        hosts: vec!["me@acme.example".into()],
        ..SimConfig::default()
    })
    .await
}

async fn fetch_links(sim: &SimHandle, id: &str) -> DirectDownloadLinks {
    let resp = api(sim, &format!("/recordings/{id}")).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    let details: RecordingDetails = serde_json::from_str(&resp.text).expect("details");
    details.temporary_direct_download_links.expect("links")
}

fn first_id(sim: &SimHandle) -> String {
    sim.truth_without_digests()[0].id.clone()
}

/// Downloads `url`; returns the status, content type, Content-Length, the bytes received
/// and whether the body ended with an error.
async fn fetch(url: &str) -> (u16, String, Option<u64>, Vec<u8>, bool) {
    let mut response = client().get(url).send().await.expect("download starts");
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let length = response.content_length();
    let mut body = Vec::new();
    let mut failed = false;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    (status, content_type, length, body, failed)
}

#[tokio::test]
async fn downloads_are_deterministic_and_match_the_truth() {
    let sim = sim_with(2, 700_001).await;
    let id = first_id(&sim);
    let truth = sim.recording(&id).expect("truth");
    let links = fetch_links(&sim, &id).await;
    let url = links.recording_download_link.expect("recording link");
    assert!(url.starts_with(&sim.site_base_url()), "links sit on the site host");
    let (status, content_type, length, body, failed) = fetch(&url).await;
    assert_eq!((status, failed), (200, false));
    assert_eq!(content_type, "video/mp4");
    assert_eq!(length, Some(truth.size_bytes));
    assert_eq!(body.len() as u64, truth.size_bytes);
    assert_eq!(&body[4..8], b"ftyp");
    assert!([b"isom", b"mp42"].contains(&&body[8..12].try_into().expect("4 bytes")));
    assert_eq!(Some(hex::encode(Sha256::digest(&body))), truth.sha256);
    // Anyone can recompute it from id, format and size.
    assert_eq!(Content::recording(&id, "MP4", truth.size_bytes).sha256_hex(), truth.sha256.clone().expect("sha"));
    // A second download is byte-identical; another recording differs.
    let (_, _, _, again, _) = fetch(&url).await;
    assert!(again == body);
    let other = sim.truth()[1].clone();
    assert_ne!(other.sha256, truth.sha256);

    // Audio and transcript: their own content and types.
    let (status, content_type, _, audio, _) = fetch(&links.audio_download_link.expect("audio")).await;
    assert_eq!((status, content_type.as_str()), (200, "audio/mp4"));
    assert_eq!(&audio[4..8], b"ftyp");
    assert_eq!(audio, Content::audio(&id, truth.size_bytes).to_vec());
    let (status, content_type, _, vtt, _) = fetch(&links.transcript_download_link.expect("transcript")).await;
    assert_eq!((status, content_type.as_str()), (200, "text/vtt"));
    assert!(vtt.starts_with(b"WEBVTT"));

    let counters = sim.counters();
    assert_eq!(counters.downloads_of(&id).completed, 2);
    assert_eq!(counters.downloads.completed, 2);
    assert_eq!(counters.media_downloads.get(&MediaKind::Audio).map(|c| c.completed), Some(1));
    assert_eq!(counters.media_downloads.get(&MediaKind::Transcript).map(|c| c.completed), Some(1));
    assert_eq!(counters.bytes_served, 2 * truth.size_bytes + audio.len() as u64 + vtt.len() as u64);
    assert_eq!(counters.details_calls.get(&id), Some(&1));
    assert_eq!(counters.requests_with(Endpoint::Download, 200), 2);
    assert_eq!(counters.requests_with(Endpoint::DownloadMedia, 200), 2);
}

#[tokio::test]
async fn links_expire_after_the_link_lifetime() {
    let sim = sim_with(1, 1000).await;
    let id = first_id(&sim);
    let before = Utc::now();
    let links = fetch_links(&sim, &id).await;
    let expiration: DateTime<Utc> = links.expiration.as_deref().expect("expiration").parse().expect("ISO 8601");
    let lifetime = (expiration - before).num_seconds();
    assert!((3 * 3600 - 2..=3 * 3600).contains(&lifetime), "about 3 hours: {lifetime}s");
    // A short lifetime: the link works, then (once expired) gets 403.
    // (The expiration has whole seconds, so 2 s leave at least 1 s.)
    sim.set_link_lifetime(Duration::from_secs(2));
    let links = fetch_links(&sim, &id).await;
    let url = links.recording_download_link.expect("link");
    assert_eq!(fetch(&url).await.0, 200);
    super::wait_until(Duration::from_secs(5), "the link expires", || {
        let url = url.clone();
        async move { fetch(&url).await.0 == 403 }
    })
    .await;
}

#[tokio::test]
async fn forged_swapped_and_missing_tickets_get_403() {
    let sim = sim_with(2, 1000).await;
    let id = first_id(&sim);
    let links = fetch_links(&sim, &id).await;
    let url = url::Url::parse(links.recording_download_link.as_deref().expect("link")).expect("URL");
    let ticket = url.query_pairs().find(|(k, _)| k == "ticket").map(|(_, v)| v.into_owned()).expect("ticket");
    let with_ticket = |t: &str| {
        let mut u = url.clone();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .into_owned()
            .filter_map(|(k, v)| match k.as_str() {
                "ticket" if t.is_empty() => None,
                "ticket" => Some((k, t.to_string())),
                _ => Some((k, v)),
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
        u.to_string()
    };
    let mut forged = ticket.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).expect("hex");
    assert_eq!(fetch(&with_ticket(&forged)).await.0, 403, "forged");
    assert_eq!(fetch(&with_ticket("")).await.0, 403, "missing");
    // The audio ticket does not open the recording.
    let audio = url::Url::parse(links.audio_download_link.as_deref().expect("audio")).expect("URL");
    let audio_ticket = audio.query_pairs().find(|(k, _)| k == "ticket").map(|(_, v)| v.into_owned()).expect("t");
    assert_eq!(fetch(&with_ticket(&audio_ticket)).await.0, 403, "ticket of another file");
    // Nor does it open another recording.
    let other = sim.truth_without_digests()[1].clone();
    let other_links = super::api(&sim, &format!("/recordings/{}", other.id)).await.json();
    let other_url = other_links["temporaryDirectDownloadLinks"]["recordingDownloadLink"].as_str().expect("link");
    let other_ticket = url::Url::parse(other_url)
        .expect("URL")
        .query_pairs()
        .find(|(k, _)| k == "ticket")
        .map(|(_, v)| v.into_owned())
        .expect("t");
    assert_eq!(fetch(&with_ticket(&other_ticket)).await.0, 403);
    assert_eq!(fetch(&with_ticket(&ticket)).await.0, 200, "the real one works");
    assert_eq!(sim.counters().requests_with(Endpoint::Download, 403), 4);
}

#[tokio::test]
async fn expired_and_expiring_link_faults() {
    let sim = sim_with(1, 1000).await;
    let id = first_id(&sim);
    sim.set_faults(vec![
        FaultRule::new(FaultAction::ExpiredLink).ids([id.clone()]).times(1),
        FaultRule::new(FaultAction::ExpiringLink { expires_in: Duration::from_secs(30) }).times(1),
    ]);
    let expired = fetch_links(&sim, &id).await;
    let expiration: DateTime<Utc> = expired.expiration.as_deref().expect("exp").parse().expect("time");
    assert!(expiration <= Utc::now());
    assert_eq!(fetch(expired.recording_download_link.as_deref().expect("link")).await.0, 403);
    let soon = fetch_links(&sim, &id).await;
    let expiration: DateTime<Utc> = soon.expiration.as_deref().expect("exp").parse().expect("time");
    let left = (expiration - Utc::now()).num_seconds();
    assert!((25..=30).contains(&left), "expires soon: {left}s");
    assert_eq!(fetch(soon.recording_download_link.as_deref().expect("link")).await.0, 200);
    let normal = fetch_links(&sim, &id).await;
    let expiration: DateTime<Utc> = normal.expiration.as_deref().expect("exp").parse().expect("time");
    assert!((expiration - Utc::now()).num_minutes() > 170);
    let counters = sim.counters();
    assert_eq!((counters.faults("expired_link"), counters.faults("expiring_link")), (1, 1));
}

#[tokio::test]
async fn authorization_headers_on_the_site_host_are_counted_as_leaks() {
    let sim = sim_with(1, 1000).await;
    let id = first_id(&sim);
    let url = fetch_links(&sim, &id).await.recording_download_link.expect("link");
    assert_eq!(fetch(&url).await.0, 200);
    assert_eq!(sim.counters().token_leaks, 0);
    let resp = client().get(&url).bearer_auth(sim.access_token()).send().await.expect("download");
    assert_eq!(resp.status(), 200, "the site host neither needs nor refuses it");
    let login = get_as(&format!("{}/acme/lsr.php?RCID=1", sim.site_base_url()), Some("x")).await;
    assert_eq!(login.status, 200);
    assert_eq!(sim.counters().token_leaks, 2);
}

#[tokio::test]
async fn the_listing_download_url_is_an_html_login_page() {
    let sim = sim_with(1, 1000).await;
    let item = api(&sim, "/recordings?max=1&from=2000-01-01&to=2100-01-01").await.json()["items"][0].clone();
    let page_url = item["downloadUrl"].as_str().expect("downloadUrl");
    assert!(page_url.starts_with(&sim.site_base_url()) && page_url.contains("/lsr.php?RCID="));
    let (status, content_type, _, body, _) = fetch(page_url).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"));
    assert!(body.starts_with(b"<!DOCTYPE html"));
    assert_eq!(sim.counters().requests_with(Endpoint::LoginPage, 200), 1);
    assert_eq!(sim.counters().downloads.started, 0);
}

#[tokio::test]
async fn prevent_downloading_means_no_links_and_details_need_the_right_host() {
    let sim = start(SimConfig { recordings: 40, prevent_downloading_fraction: 0.3, ..SimConfig::default() }).await;
    let truth = sim.truth_without_digests();
    let prevented = truth.iter().find(|t| t.prevent_downloading && t.visible_to_user).expect("prevented");
    let resp = api(&sim, &format!("/recordings/{}", prevented.id)).await;
    assert_eq!(resp.status, 200);
    assert!(resp.json().get("temporaryDirectDownloadLinks").is_none());
    assert!(resp.json().get("downloadUrl").is_none());
    // Someone else's recording that is not shared: 404 unless hostEmail names its host.
    let foreign = truth.iter().find(|t| !t.visible_to_user).expect("a foreign recording");
    assert_webex_error(&api(&sim, &format!("/recordings/{}", foreign.id)).await, 404);
    assert_webex_error(&api(&sim, &format!("/recordings/{}?hostEmail={}", foreign.id, sim.user_email())).await, 404);
    let resp = api(&sim, &format!("/recordings/{}?hostEmail={}", foreign.id, foreign.host_email)).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_webex_error(&api(&sim, "/recordings/0000").await, 404);
}

#[tokio::test]
async fn reset_fault_cuts_the_body_then_a_retry_succeeds() {
    let sim = sim_with(2, 600_000).await;
    let id = first_id(&sim);
    sim.set_faults(vec![FaultRule::new(FaultAction::Reset { after_bytes: 300_000 }).ids([id.clone()]).times(1)]);
    let url = fetch_links(&sim, &id).await.recording_download_link.expect("link");
    let (status, _, length, body, failed) = fetch(&url).await;
    assert_eq!((status, length), (200, Some(600_000)));
    assert!(failed, "the body ends with an error");
    assert!(body.len() <= 300_000, "{} bytes", body.len());
    let (_, _, _, body, failed) = fetch(&url).await;
    assert!(!failed && body.len() == 600_000);
    let counters = sim.counters();
    assert_eq!(counters.downloads_of(&id).started, 2);
    assert_eq!(counters.downloads_of(&id).completed, 1);
    assert_eq!(counters.faults("reset"), 1);
    // Another recording is not affected.
    let other = sim.truth_without_digests()[1].id.clone();
    let url = fetch_links(&sim, &other).await.recording_download_link.expect("link");
    assert!(!fetch(&url).await.4);
}

#[tokio::test]
async fn short_body_ends_before_content_length() {
    let sim = sim_with(1, 500_000).await;
    let id = first_id(&sim);
    sim.set_faults(vec![FaultRule::new(FaultAction::ShortBody { after_bytes: 1_000 })]);
    let url = fetch_links(&sim, &id).await.recording_download_link.expect("link");
    let (status, _, length, body, failed) = fetch(&url).await;
    assert_eq!((status, length), (200, Some(500_000)));
    assert!(body.len() < 500_000 && body.len() <= 1_000, "{} bytes", body.len());
    assert!(failed, "a client sees the short body as an error");
    assert_eq!(sim.counters().downloads_of(&id).completed, 0);
}

#[tokio::test]
async fn stall_pauses_mid_body_then_goes_on() {
    let sim = sim_with(1, 300_000).await;
    let id = first_id(&sim);
    sim.set_faults(vec![FaultRule::new(FaultAction::Stall {
        after_bytes: 100_000,
        duration: Duration::from_millis(1_500),
    })]);
    let url = fetch_links(&sim, &id).await.recording_download_link.expect("link");
    let mut response = client().get(&url).send().await.expect("download");
    let mut received = 0usize;
    while received < 100_000 {
        received += response.chunk().await.expect("chunk").expect("more").len();
    }
    assert_eq!(received, 100_000, "the stall starts exactly after 100000 bytes");
    // Nothing more arrives for a while...
    let waiting = tokio::time::timeout(Duration::from_millis(300), response.chunk()).await;
    assert!(waiting.is_err(), "the body is stalled");
    // ...then the rest.
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        received += chunk.len();
    }
    assert_eq!(received, 300_000);
    assert_eq!(sim.counters().faults("stall"), 1);
    assert_eq!(sim.counters().downloads_of(&id).completed, 1);
}

#[tokio::test]
async fn login_page_fault_answers_html_instead_of_media() {
    let sim = sim_with(1, 5_000).await;
    let id = first_id(&sim);
    sim.set_faults(vec![FaultRule::new(FaultAction::LoginPage).times(1)]);
    let url = fetch_links(&sim, &id).await.recording_download_link.expect("link");
    let (status, content_type, _, body, _) = fetch(&url).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(body.starts_with(b"<"));
    let (_, content_type, _, body, _) = fetch(&url).await;
    assert_eq!((content_type.as_str(), body.len()), ("video/mp4", 5_000));
    assert_eq!(sim.counters().downloads_of(&id).started, 1, "the login page is no download");
}

#[tokio::test]
async fn throttle_caps_the_rate_of_the_chosen_media() {
    let sim = sim_with(1, 40_000).await;
    let id = first_id(&sim);
    sim.set_faults(vec![
        FaultRule::new(FaultAction::Throttle { bytes_per_second: 50_000 }).media(FaultMedia::Transcript),
        FaultRule::new(FaultAction::Throttle { bytes_per_second: 50_000 }),
    ]);
    let links = fetch_links(&sim, &id).await;
    let started = Instant::now();
    let (status, _, _, body, _) = fetch(links.recording_download_link.as_deref().expect("link")).await;
    assert_eq!((status, body.len()), (200, 40_000));
    // 40 kB at 50 kB/s cannot take less than about 0.7 s (the first tenth goes at once).
    assert!(started.elapsed() >= Duration::from_millis(650), "{:?}", started.elapsed());
    // Neither rule covers the audio track.
    let (status, _, _, _, _) = fetch(links.audio_download_link.as_deref().expect("audio")).await;
    assert_eq!(status, 200);
    assert_eq!(sim.counters().faults("throttle"), 1);
}

#[tokio::test]
async fn no_recording_is_counted_complete_unless_fully_served() {
    let sim = sim_with(3, 10_000).await;
    let all = sim.truth_without_digests();
    for t in &all {
        let url = fetch_links(&sim, &t.id).await.recording_download_link.expect("link");
        assert!(!fetch(&url).await.4);
    }
    let late = sim
        .add_recording(NewRecording {
            create_time: Utc::now() - chrono::Duration::days(1),
            size_bytes: Some(12_345),
            ..NewRecording::default()
        })
        .expect("add");
    let url = fetch_links(&sim, &late.id).await.recording_download_link.expect("link");
    let (_, _, _, body, _) = fetch(&url).await;
    assert_eq!(Some(hex::encode(Sha256::digest(&body))), sim.recording(&late.id).expect("truth").sha256);
    let counters = sim.counters();
    assert_eq!(counters.downloads.completed, 4);
    assert!(counters.downloads_by_id.values().all(|c| c.completed == 1 && c.started == 1));
}

/// One stream's throughput. Run with
/// `cargo test --release --test it -- --ignored sim::downloads::throughput --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run it by hand in release mode"]
async fn throughput() {
    let size: u64 = 2 << 30;
    let sim = sim_with(1, size).await;
    let id = first_id(&sim);
    let url = fetch_links(&sim, &id).await.recording_download_link.expect("link");
    let started = Instant::now();
    let mut response = client().get(&url).send().await.expect("download");
    let mut received = 0u64;
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        received += chunk.len() as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(received, size);
    println!("{received} bytes in {secs:.2}s: {:.2} GB/s", received as f64 / secs / 1e9);
}
