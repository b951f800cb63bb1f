//! `/_sim/`: truth, counters and control over HTTP, and the scenario file format.

use serde_json::{Value, json};
use webex_archiver::sim::{Counters, FaultAction, SimConfig, TruthRecording};

use super::{Resp, api, assert_webex_error, client, get_as, start_with};

async fn post_json(url: &str, body: &Value) -> Resp {
    let response = client().post(url).json(body).send().await.expect("POST");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Resp { status, headers, text: response.text().await.expect("body") }
}

#[tokio::test]
async fn truth_and_counters_are_served_without_a_token() {
    let sim = start_with(4).await;
    let origin = sim.api_origin();
    let resp = get_as(&format!("{origin}/_sim/recordings"), None).await;
    assert_eq!(resp.status, 200);
    let truth: Vec<TruthRecording> = serde_json::from_str(&resp.text).expect("truth");
    assert_eq!(truth, sim.truth());
    assert!(truth.iter().all(|t| t.sha256.as_deref().is_some_and(|s| s.len() == 64)));
    let resp = get_as(&format!("{origin}/_sim/recordings?digests=false"), None).await;
    let cheap: Vec<TruthRecording> = serde_json::from_str(&resp.text).expect("truth");
    assert!(cheap.iter().all(|t| t.sha256.is_none()));

    assert_eq!(api(&sim, "/meetingPreferences/sites").await.status, 200);
    let resp = get_as(&format!("{origin}/_sim/counters"), None).await;
    let raw = resp.json();
    assert_eq!(raw["requests"]["sites"]["200"], 1, "{raw}");
    for key in [
        "rate_limited",
        "violations",
        "token_leaks",
        "bytes_served",
        "downloads",
        "downloads_by_id",
        "media_downloads",
        "details_calls",
        "token_refreshes",
        "faults_injected",
    ] {
        assert!(raw.get(key).is_some(), "{key} in {raw}");
    }
    let counters: Counters = serde_json::from_value(raw).expect("counters");
    assert_eq!(counters, sim.counters(), "/_sim requests are not counted");
    let resp = post_json(&format!("{origin}/_sim/counters/reset"), &json!({})).await;
    assert_eq!(resp.status, 200);
    assert_eq!(sim.counters(), Counters::default());
}

#[tokio::test]
async fn control_changes_faults_and_limits_at_runtime() {
    let sim = start_with(2).await;
    let origin = sim.api_origin();
    let resp = post_json(
        &format!("{origin}/_sim/control"),
        &json!({"faults": [{"kind": "api_error", "status": 502, "times": 1, "endpoint": "sites"}]}),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert_eq!(resp.json()["faults"][0]["kind"], "api_error");
    assert_webex_error(&api(&sim, "/meetingPreferences/sites").await, 502);
    assert_eq!(api(&sim, "/meetingPreferences/sites").await.status, 200);

    let resp = post_json(
        &format!("{origin}/_sim/control"),
        &json!({"burst_429": {"requests": 1, "retry_after": 7}, "link_lifetime": "10m"}),
    )
    .await;
    assert_eq!(resp.json()["link_lifetime"], "10m");
    let limited = api(&sim, "/meetingPreferences/sites").await;
    assert_webex_error(&limited, 429);
    assert_eq!(limited.header("retry-after").as_deref(), Some("7"));

    let resp = post_json(&format!("{origin}/_sim/control"), &json!({"expire_access_tokens": true})).await;
    assert_eq!(resp.status, 200);
    let expired = api(&sim, "/meetingPreferences/sites").await;
    assert_webex_error(&expired, 401);

    let resp = post_json(&format!("{origin}/_sim/control"), &json!({"no_such_knob": 1})).await;
    assert_eq!(resp.status, 400, "unknown control fields are refused");
    let resp = get_as(&format!("{origin}/_sim/control"), None).await;
    assert_eq!(resp.json()["faults"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn recordings_can_be_published_over_http() {
    let sim = start_with(0).await;
    let origin = sim.api_origin();
    let created = chrono::Utc::now() - chrono::Duration::days(3);
    let resp = post_json(
        &format!("{origin}/_sim/recordings"),
        &json!({"create_time": created, "id": "late1", "size_bytes": 1234, "format": "ARF"}),
    )
    .await;
    assert_eq!(resp.status, 201, "{}", resp.text);
    let truth: TruthRecording = serde_json::from_str(&resp.text).expect("truth");
    assert_eq!((truth.id.as_str(), truth.size_bytes, truth.format.as_str()), ("late1", 1234, "ARF"));
    let resp = post_json(&format!("{origin}/_sim/recordings"), &json!({"create_time": created, "id": "late1"})).await;
    assert_eq!(resp.status, 409);
    let resp = post_json(
        &format!("{origin}/_sim/recordings"),
        &json!({"create_time": created, "site_url": "nowhere.webex.com"}),
    )
    .await;
    assert_eq!(resp.status, 400);
    assert_eq!(api(&sim, "/recordings/late1").await.status, 200);
}

#[test]
fn the_example_scenario_file_parses() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sim-scenario.example.toml");
    let config = SimConfig::from_toml(&std::fs::read_to_string(path).expect("example scenario")).expect("parses");
    assert!(config.rate_limit.is_some() && config.burst_429.is_some());
    let kinds: Vec<&str> = config.faults.iter().map(|f| f.action.name()).collect();
    for kind in [
        "api_error",
        "locked",
        "reset",
        "short_body",
        "stall",
        "login_page",
        "throttle",
        "expired_link",
        "expiring_link",
        "malformed_item",
        "empty_page",
        "items_not_array",
        "not_json_page",
        "huge_page",
        "foreign_next_link",
        "self_next_link",
        "endless_next_link",
        "foreign_download_link",
        "foreign_download_url",
        "redirect",
        "text_body",
        "json_body",
        "html_body",
        "no_length_short",
    ] {
        assert!(kinds.contains(&kind), "{kind} in the example");
    }
    assert!(matches!(config.faults[0].action, FaultAction::ApiError { status: 503 }));
    assert!(SimConfig::from_toml("recordings = 3\nunknown_key = 1").is_err(), "unknown keys are refused");
    assert_eq!(SimConfig::from_toml("").expect("empty"), SimConfig::default());
}
