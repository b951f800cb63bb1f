//! Every response the simulator sends validates against the OpenAPI contract's schemas
//! (resolved from the vendored spec file); the contract's and the seed page's examples
//! parse with the project's wire types.

use chrono::{Duration, Utc};
use jsonschema::{Draft, Validator};
use serde_json::{Value, json};
use webex_archiver::sim::{SimConfig, TruthRecording};
use webex_archiver::webex::models::{Recording, RecordingDetails, RecordingPage, SiteList, TokenResponse};

use super::{api, assert_webex_error, get_as, q, start};

const LIST_200: &str = "/paths/~1recordings/get/responses/200/content/application~1json;charset=UTF-8";
const ADMIN_200: &str = "/paths/~1admin~1recordings/get/responses/200/content/application~1json;charset=UTF-8";
const DETAILS_200: &str =
    "/paths/~1recordings~1%7BrecordingId%7D/get/responses/200/content/application~1json;charset=UTF-8";

fn spec() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/webex/recordings.openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("spec file")).expect("spec JSON")
}

/// A validator for the schema at `pointer` inside the spec, refs resolved in the spec.
fn validator_at(pointer: &str) -> Validator {
    validator_for_spec(spec(), pointer)
}

fn validator_for_spec(mut spec: Value, pointer: &str) -> Validator {
    // NOTE: the spec is OpenAPI 3.0, whose schemas are close to draft 4; with draft 4 a
    // `$ref` at the root replaces the (non-schema) rest of the document.
    spec["$ref"] = json!(format!("#{pointer}"));
    jsonschema::options().with_draft(Draft::Draft4).build(&spec).expect("schema builds")
}

fn assert_valid(validator: &Validator, instance: &Value, what: &str) {
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{what} violates the contract: {errors:#?}\n{instance:#}");
}

fn example(pointer: &str) -> Value {
    let pointer = pointer.replace("%7B", "{").replace("%7D", "}");
    spec().pointer(&format!("{pointer}/example")).cloned().expect("example in spec")
}

#[test]
fn the_validators_reject_what_the_contract_forbids() {
    // A test that cannot fail is a defect: the validators must catch real violations.
    let list = validator_at(&format!("{LIST_200}/schema"));
    assert!(!list.is_valid(&json!({"items": [{"id": 5}]})));
    let mut item = example(LIST_200)["items"][0].clone();
    item.as_object_mut().expect("object").remove("shareToMe");
    assert!(!list.is_valid(&json!({ "items": [item] })), "shareToMe is required in the user listing");
    let admin = validator_at(&format!("{ADMIN_200}/schema"));
    let mut item = example(ADMIN_200)["items"][0].clone();
    item.as_object_mut().expect("object").remove("hostEmail");
    assert!(!admin.is_valid(&json!({ "items": [item] })), "hostEmail is required in the admin listing");
    let details = validator_at(&format!("{DETAILS_200}/schema"));
    assert!(!details.is_valid(&json!({"id": "x", "format": "MP4"})));
}

#[test]
fn the_contract_examples_validate_and_parse_with_the_wire_types() {
    for pointer in [LIST_200, ADMIN_200] {
        let ex = example(pointer);
        assert_valid(&validator_at(&format!("{pointer}/schema")), &ex, pointer);
        let page: RecordingPage = serde_json::from_value(ex).expect("page parses");
        assert_eq!(page.items.len(), 3);
        for item in &page.items {
            let rec = Recording::from_value(item).expect("item parses");
            assert!(rec.id.is_some() && rec.create_time.is_some() && rec.size_bytes.is_some());
        }
    }
    let ex = example(DETAILS_200);
    assert_valid(&validator_at(&format!("{DETAILS_200}/schema")), &ex, "details example");
    let details: RecordingDetails = serde_json::from_value(ex).expect("details parse");
    let links = details.temporary_direct_download_links.expect("links");
    assert!(links.recording_download_link.expect("recording link").contains("ticket="));
    assert_eq!(links.expiration.as_deref(), Some("2022-05-01T10:30:25Z"));
}

#[test]
fn the_seed_page_example_parses_with_the_wire_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/webex/list-recordings.txt");
    let text = std::fs::read_to_string(path).expect("seed page");
    let after = &text[text.find("200 / OK").expect("example response marker")..];
    let start = after.find('{').expect("JSON starts");
    let mut depth = 0i32;
    let mut end = None;
    for (i, c) in after[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    end = Some(start + i + 1);
                    break;
                }
            }
            _ => {}
        }
    }
    let json: Value = serde_json::from_str(&after[start..end.expect("JSON ends")]).expect("example is JSON");
    assert_valid(&validator_at(&format!("{LIST_200}/schema")), &json, "seed page example");
    let page: RecordingPage = serde_json::from_value(json).expect("page parses");
    let recs: Vec<Recording> = page.items.iter().map(|i| Recording::from_value(i).expect("item")).collect();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[2].share_to_me, Some(true));
    assert_eq!(recs[0].size_bytes, Some(168_103));
}

/// Checks a listing item of a recording with "Prevent downloading": the only contract
/// violation allowed is the missing `downloadUrl` (the contract requires it and also says
/// it is absent for such recordings).
fn assert_valid_item(validator: &Validator, item: &Value, truth: &TruthRecording, what: &str) {
    if truth.prevent_downloading {
        assert!(item.get("downloadUrl").is_none(), "{what}: no downloadUrl when downloading is prevented");
        let errors: Vec<String> = validator.iter_errors(item).map(|e| e.to_string()).collect();
        assert!(errors.iter().all(|e| e.contains("\"downloadUrl\" is a required property")), "{what}: {errors:?}");
    } else {
        assert_valid(validator, item, what);
    }
}

#[tokio::test]
async fn listings_details_and_sites_follow_the_contract() {
    let sim = start(SimConfig {
        recordings: 40,
        prevent_downloading_fraction: 0.25,
        deleted_fraction: 0.1,
        ..SimConfig::default()
    })
    .await;
    let truth = sim.truth_without_digests();
    assert!(truth.iter().any(|t| t.prevent_downloading) && truth.iter().any(|t| !t.prevent_downloading));
    let by_id = |id: &str| truth.iter().find(|t| t.id == id).expect("listed id is in the truth").clone();
    let item_schema = |name: &str| validator_at(&format!("/components/schemas/{name}"));
    let (from, to) = (Utc::now() - Duration::days(61), Utc::now() + Duration::days(1));

    // User listing: the page schema, then each item.
    let resp = api(&sim, &format!("/recordings?from={}&to={}&max=100", q(from), q(to))).await;
    assert_eq!(resp.status, 200);
    assert!(resp.header("content-type").is_some_and(|c| c.starts_with("application/json")));
    let page = resp.json();
    let items = page["items"].as_array().expect("items");
    assert!(!items.is_empty());
    let page_validator = validator_at(&format!("{LIST_200}/schema"));
    let lenient_page = json!({"items": items.iter().filter(|i| !by_id(i["id"].as_str().unwrap_or("")).prevent_downloading).collect::<Vec<_>>()});
    assert_valid(&page_validator, &lenient_page, "user page");
    let user_item = item_schema("RecordingObject");
    for item in items {
        assert_valid_item(&user_item, item, &by_id(item["id"].as_str().expect("id")), "user item");
        assert!(item.get("hostEmail").is_none() && item.get("hostDisplayName").is_none());
    }

    // Admin listing of every site (30-day windows), items of the admin schema.
    let admin_item = item_schema("RecordingObjectForAdminAndCO");
    let admin_page = validator_at(&format!("{ADMIN_200}/schema"));
    let mut admin_seen = 0;
    for site in sim.sites() {
        for days in [(61, 31), (31, 1), (1, -1)] {
            let (f, t) = (Utc::now() - Duration::days(days.0), Utc::now() - Duration::days(days.1));
            let resp = api(&sim, &format!("/admin/recordings?siteUrl={site}&from={}&to={}&max=100", q(f), q(t))).await;
            assert_eq!(resp.status, 200, "{}", resp.text);
            let page = resp.json();
            let items = page["items"].as_array().expect("items");
            let downloadable: Vec<&Value> =
                items.iter().filter(|i| !by_id(i["id"].as_str().unwrap_or("")).prevent_downloading).collect();
            assert_valid(&admin_page, &json!({ "items": downloadable }), "admin page");
            for item in items {
                admin_seen += 1;
                assert_valid_item(&admin_item, item, &by_id(item["id"].as_str().expect("id")), "admin item");
                assert!(item.get("password").is_none() && item.get("shareToMe").is_none());
            }
        }
    }
    assert!(admin_seen > 0);

    // Details with and without links.
    let details_validator = validator_at(&format!("{DETAILS_200}/schema"));
    let visible: Vec<&TruthRecording> = truth.iter().filter(|t| t.visible_to_user).collect();
    let with_links = visible.iter().find(|t| !t.prevent_downloading).expect("a downloadable recording");
    let resp = api(&sim, &format!("/recordings/{}", with_links.id)).await;
    assert_eq!(resp.status, 200);
    let details = resp.json();
    assert_valid(&details_validator, &details, "details with links");
    let parsed: RecordingDetails = serde_json::from_value(details).expect("details parse");
    assert!(parsed.temporary_direct_download_links.is_some());
    let host = sim.truth_without_digests().into_iter().find(|t| t.prevent_downloading).expect("a prevented one");
    let resp = api(&sim, &format!("/recordings/{}?hostEmail={}", host.id, host.host_email)).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    let details = resp.json();
    assert!(details.get("temporaryDirectDownloadLinks").is_none());
    let errors: Vec<String> = details_validator.iter_errors(&details).map(|e| e.to_string()).collect();
    assert!(errors.iter().all(|e| e.contains("\"downloadUrl\" is a required property")), "{errors:?}");

    // Sites and errors: the contract has no schema for them; they parse with the wire types.
    let resp = api(&sim, "/meetingPreferences/sites").await;
    assert_eq!(resp.status, 200);
    let sites: SiteList = serde_json::from_str(&resp.text).expect("sites parse");
    assert_eq!(sites.sites.len(), 3);
    assert_eq!(sites.sites.iter().filter(|s| s.default).count(), 1);
    assert_eq!(sites.sites[0].site_url, "acme.webex.com");
    let resp = api(&sim, "/recordings/no-such-id").await;
    assert_webex_error(&resp, 404);
}

#[tokio::test]
async fn token_responses_parse_with_the_wire_types() {
    let sim = start(SimConfig { recordings: 0, ..SimConfig::default() }).await;
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "refresh_token")
        .append_pair("client_id", &sim.client_id())
        .append_pair("client_secret", &sim.client_secret())
        .append_pair("refresh_token", &sim.refresh_token())
        .finish();
    let resp = super::client()
        .post(format!("{}/access_token", sim.api_base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("token request");
    assert_eq!(resp.status(), 200);
    let raw: Value = resp.json().await.expect("JSON");
    for key in ["access_token", "expires_in", "refresh_token", "refresh_token_expires_in", "token_type"] {
        assert!(raw.get(key).is_some(), "token response has {key}: {raw}");
    }
    let token: TokenResponse = serde_json::from_value(raw).expect("token response parses");
    assert_eq!(token.token_type, "Bearer");
    let resp = get_as(&format!("{}/meetingPreferences/sites", sim.api_base_url()), Some(&token.access_token)).await;
    assert_eq!(resp.status, 200);
}
