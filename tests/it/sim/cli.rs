//! `webex-archiver simulate` as a process: the first stdout line says where and how.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::get_as;

#[tokio::test]
async fn simulate_prints_its_coordinates_first_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_webex-archiver"))
        .args(["simulate", "--recordings", "4", "--seed", "9", "--size", "2048"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    let mut reader = BufReader::new(stdout);
    let read = reader.read_line(&mut line);
    tokio::time::timeout(std::time::Duration::from_secs(20), read).await.expect("a first line in time").expect("read");
    let banner: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
    for key in [
        "api_base_url",
        "site_base_url",
        "trap_base_url",
        "access_token",
        "client_id",
        "client_secret",
        "refresh_token",
    ] {
        assert!(banner[key].as_str().is_some_and(|s| !s.is_empty()), "{key} in {line}");
    }
    assert_eq!(banner["hostile"], false);
    assert_eq!(banner["recordings"], 4);
    let api = banner["api_base_url"].as_str().expect("api");
    assert!(api.starts_with("http://127.0.0.1:") && api.ends_with("/v1"));
    assert_ne!(banner["site_base_url"].as_str().expect("site"), api.trim_end_matches("/v1"));
    let trap = banner["trap_base_url"].as_str().expect("trap");
    assert!(trap != banner["site_base_url"] && trap != api.trim_end_matches("/v1"));
    let token = banner["access_token"].as_str().expect("token");
    let resp = get_as(&format!("{api}/recordings?from=2000-01-01&to=2100-01-01&max=100"), Some(token)).await;
    assert_eq!(resp.status, 200);
    let resp = get_as(&format!("{}/_sim/recordings?digests=false", api.trim_end_matches("/v1")), None).await;
    let truth = resp.json();
    assert!(truth.as_array().expect("truth").iter().all(|t| t["size_bytes"] == 2048));
    child.kill().await.expect("stop");
}

#[tokio::test]
async fn simulate_hostile_installs_the_preset_and_publishes_its_plan() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_webex-archiver"))
        .args(["simulate", "--hostile", "--recordings", "60", "--seed", "3", "--size", "2048"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    let mut reader = BufReader::new(stdout);
    let read = reader.read_line(&mut line);
    tokio::time::timeout(std::time::Duration::from_secs(20), read).await.expect("a first line in time").expect("read");
    let banner: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
    assert_eq!(banner["hostile"], true);
    let origin = banner["api_base_url"].as_str().expect("api").trim_end_matches("/v1").to_string();
    let plan = get_as(&format!("{origin}/_sim/hostile"), None).await;
    assert_eq!(plan.status, 200);
    let plan: webex_archiver::sim::HostilePlan = serde_json::from_str(&plan.text).expect("a plan");
    assert_eq!((plan.seed, plan.targets.len()), (3, 17));
    // The storm is on.
    let token = banner["access_token"].as_str().expect("token");
    let api = banner["api_base_url"].as_str().expect("api");
    let limited = get_as(&format!("{api}/meetingPreferences/sites"), Some(token)).await;
    assert_eq!((limited.status, limited.header("retry-after").as_deref()), (429, Some("0")));
    child.kill().await.expect("stop");
}
