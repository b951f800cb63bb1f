//! Issue 11's hostile upstream: the trap host, every hostile fault (the exact JSON,
//! headers, links and bodies sent), raw Retry-After values, huge pages streamed, and the
//! `hostile` preset (deterministic for a seed, and doing what its plan says).

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use chrono::Utc;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION, TRANSFER_ENCODING};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use webex_archiver::sim::{
    Burst429, Content, Endpoint, FaultAction, FaultEndpoint, FaultRule, HostileOutcome, ItemVariant, RedirectTarget,
    RetryAfterFormat, SimConfig, SimError, SimHandle, Simulator, TRAP_BODY_LEN,
};
use webex_archiver::webex::models::ErrorBody;

use super::{Resp, api, assert_webex_error, client, get_as, q, start, wait_until};

/// A window that holds the whole default population (60 days back).
fn wide() -> String {
    format!("from={}&to={}", q(Utc::now() - chrono::Duration::days(61)), q(Utc::now() + chrono::Duration::days(1)))
}

fn sim_config(recordings: usize) -> SimConfig {
    SimConfig { recordings, violation_grace: Duration::ZERO, ..SimConfig::default() }
}

/// The user listing of the whole population in one page.
async fn user_page(sim: &SimHandle) -> Resp {
    api(sim, &format!("/recordings?{}&max=100", wide())).await
}

fn items(resp: &Resp) -> Vec<Value> {
    resp.json()["items"].as_array().expect("items").clone()
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

/// A response read whole, as bytes.
struct Raw {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: reqwest::header::HeaderName) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }
}

async fn fetch_with(client: &reqwest::Client, url: &str) -> Raw {
    let response = client.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap_or_else(|e| panic!("body of {url}: {e}")).to_vec();
    Raw { status, headers, body }
}

async fn details(sim: &SimHandle, id: &str) -> Value {
    let resp = api(sim, &format!("/recordings/{id}")).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    resp.json()
}

fn recording_link(details: &Value) -> String {
    details["temporaryDirectDownloadLinks"]["recordingDownloadLink"].as_str().expect("recording link").to_string()
}

/// The path and query of a URL (what the trap host must be asked for).
fn path_and_query(url: &str) -> String {
    let url = url::Url::parse(url).expect("URL");
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    }
}

/// Ids of the user-visible, downloadable recordings, newest first.
fn downloadable(sim: &SimHandle) -> Vec<String> {
    sim.truth_without_digests()
        .into_iter()
        .filter(|t| t.visible_to_user && !t.prevent_downloading)
        .map(|t| t.id)
        .collect()
}

/// What the issue's lenient reader must cope with, stated independently of the simulator.
fn expected_item(clean: &Value, variant: ItemVariant) -> Value {
    let mut item = clean.clone();
    let fields = item.as_object_mut().expect("an object");
    match variant {
        ItemVariant::NumberAsString => {
            for key in ["durationSeconds", "sizeBytes"] {
                let n = fields[key].as_u64().expect("a number");
                fields.insert(key.into(), json!(n.to_string()));
            }
        }
        ItemVariant::BoolAsString => {
            let share = fields["shareToMe"].as_bool().expect("a bool");
            fields.insert("shareToMe".into(), json!(share.to_string()));
        }
        ItemVariant::UnknownEnum => {
            fields.insert("format".into(), json!("WEBM"));
            fields.insert("status".into(), json!("archived_elsewhere"));
            fields.insert("serviceType".into(), json!("NewCenter"));
        }
        ItemVariant::NullFields => {
            for key in [
                "topic",
                "meetingSeriesId",
                "scheduledMeetingId",
                "timeRecorded",
                "hostDisplayName",
                "playbackUrl",
                "password",
                "format",
                "serviceType",
                "durationSeconds",
                "shareToMe",
                "integrationTags",
            ] {
                fields.insert(key.into(), Value::Null);
            }
        }
        ItemVariant::StringForList => {
            fields.insert("integrationTags".into(), json!("a-tag"));
        }
        ItemVariant::NoId => {
            fields.remove("id");
        }
        ItemVariant::WrongTypeId => {
            // The number is the simulator's own; the test checks its type apart.
            fields.remove("id");
        }
        ItemVariant::BadCreateTime => {
            fields.insert("createTime".into(), json!("yesterday"));
        }
        ItemVariant::NotAnObject => return json!("item unavailable"),
    }
    item
}

/// Checks `got` is `clean` altered as `variant` says (a `wrong_type_id` id is the
/// simulator's own number).
fn assert_altered(got: &Value, clean: &Value, variant: ItemVariant) {
    let expected = expected_item(clean, variant);
    if variant == ItemVariant::WrongTypeId {
        assert!(got["id"].is_u64(), "a JSON number: {got}");
        assert_eq!(without_id(got), expected, "{variant:?}");
    } else {
        assert_eq!(*got, expected, "{variant:?}");
    }
}

fn without_id(item: &Value) -> Value {
    let mut item = item.clone();
    if let Some(fields) = item.as_object_mut() {
        fields.remove("id");
    }
    item
}

/// Resident memory of this process, bytes (Linux).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .expect("VmRSS");
    kib * 1024
}

// ---------------------------------------------------------------------------------------
// The trap host

#[tokio::test]
async fn the_trap_host_answers_every_request_plausibly_and_counts_it() {
    let sim = start(sim_config(2)).await;
    let trap = sim.trap_base_url();
    assert_eq!(trap, format!("http://{}", sim.trap_addr()));
    assert!(trap != sim.site_base_url() && trap != sim.api_origin());

    for path in ["/v1/recordings?cursor=abc&max=100", "/v1/admin/recordings/"] {
        let resp = get_as(&format!("{trap}{path}"), None).await;
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("content-type").as_deref(), Some("application/json"));
        assert_eq!(resp.json(), json!({"items": []}), "a listing-looking path: {path}");
    }
    let media = fetch_with(&client(), &format!("{trap}/nbr/MultiThreadDownloadServlet?ticket=t&recordid=1")).await;
    assert_eq!(media.status, 200);
    assert_eq!(media.header(CONTENT_TYPE).as_deref(), Some("application/octet-stream"));
    assert_eq!(media.body.len() as u64, TRAP_BODY_LEN);
    assert_eq!(&media.body[4..8], b"ftyp", "an MP4 ftyp box first");
    let posted = client()
        .post(format!("{trap}/acme/lsr.php?RCID=1"))
        .bearer_auth(sim.access_token())
        .body("x")
        .send()
        .await
        .expect("POST");
    assert_eq!(posted.status(), 200);
    let deleted = client().delete(format!("{trap}/anything/at/all")).send().await.expect("DELETE");
    assert_eq!(deleted.status(), 200);

    let counters = sim.counters();
    assert_eq!(counters.trap_requests, 5);
    assert_eq!(counters.trap_requests_by_path.get("/v1/recordings"), Some(&1));
    assert_eq!(counters.trap_requests_by_path.get("/nbr/MultiThreadDownloadServlet"), Some(&1));
    assert_eq!(counters.trap_requests_by_path.get("/anything/at/all"), Some(&1));
    assert_eq!(counters.trap_token_leaks, 1, "the POST carried a bearer token");
    assert!(counters.requests.is_empty(), "the trap host is neither the API nor the site host");
    sim.reset_counters();
    assert_eq!(sim.counters().trap_requests, 0);
}

// ---------------------------------------------------------------------------------------
// Listing items

#[tokio::test]
async fn malformed_items_alter_exactly_the_named_items_in_the_json_sent() {
    let sim = start(sim_config(60)).await;
    let clean = items(&user_page(&sim).await);
    assert!(clean.len() > ItemVariant::ALL.len(), "{} items", clean.len());
    let truth_before = sim.truth_without_digests();
    for (k, variant) in ItemVariant::ALL.into_iter().enumerate() {
        let index = k + 1;
        let id = clean[index]["id"].as_str().expect("id").to_string();
        sim.set_faults(vec![FaultRule::new(FaultAction::MalformedItem { variant }).ids([id.clone()]).times(1)]);
        let resp = user_page(&sim).await;
        assert_eq!(resp.status, 200);
        let got = items(&resp);
        assert_eq!(got.len(), clean.len());
        for (j, (g, c)) in got.iter().zip(&clean).enumerate() {
            if j != index {
                assert_eq!(g, c, "{variant:?}: item {j} is untouched");
            }
        }
        assert_altered(&got[index], &clean[index], variant);
        // `times = 1` per id: the next listing is clean, and the recording never changed.
        assert_eq!(items(&user_page(&sim).await), clean, "{variant:?} applies once");
        assert_eq!(details(&sim, &id).await["id"], json!(id));
    }
    assert_eq!(sim.truth_without_digests(), truth_before, "the stored recordings are unchanged");
    assert_eq!(sim.counters().faults("malformed_item"), ItemVariant::ALL.len() as u64);
}

#[tokio::test]
async fn a_malformed_item_rule_with_ids_follows_the_item_across_pages_and_listings() {
    let sim = start(sim_config(30)).await;
    let clean = items(&user_page(&sim).await);
    let id = clean[7]["id"].as_str().expect("id").to_string();
    let site = sim.recording(&id).expect("truth").site_url;
    sim.set_faults(vec![
        FaultRule::new(FaultAction::MalformedItem { variant: ItemVariant::BadCreateTime }).ids([id.clone()]).times(2),
    ]);
    // With pages of 5, the item is on page 2: page 1 is clean.
    let first = api(&sim, &format!("/recordings?{}&max=5", wide())).await;
    assert_eq!(items(&first), clean[..5].to_vec());
    let second = get_as(&first.next_link().expect("a next page"), Some(&sim.access_token())).await;
    let page = items(&second);
    assert_eq!(page[2]["createTime"], "yesterday");
    assert_eq!(page[2]["id"], json!(id));
    // The admin listing of its site shows it altered too (the second of two times)...
    let created = sim.recording(&id).expect("truth").create_time;
    let window =
        format!("from={}&to={}", q(created - chrono::Duration::days(1)), q(created + chrono::Duration::days(1)));
    let admin = api(&sim, &format!("/admin/recordings?siteUrl={site}&{window}&max=100")).await;
    let found = items(&admin).into_iter().find(|i| i["id"] == json!(id)).map(|i| i["createTime"].clone());
    assert_eq!(found, Some(json!("yesterday")));
    // ...and then nowhere.
    assert_eq!(items(&user_page(&sim).await), clean);
    assert_eq!(sim.counters().faults("malformed_item"), 2);
}

#[tokio::test]
async fn a_malformed_item_rule_without_ids_alters_the_first_item_of_each_page() {
    let sim = start(sim_config(60)).await;
    let clean = items(&user_page(&sim).await);
    sim.set_faults(vec![
        FaultRule::new(FaultAction::MalformedItem { variant: ItemVariant::NoId })
            .endpoint(FaultEndpoint::List)
            .times(2),
    ]);
    let mut url = format!("{}/recordings?{}&max=4", sim.api_base_url(), wide());
    let mut seen = Vec::new();
    for page_number in 0..3 {
        let resp = get_as(&url, Some(&sim.access_token())).await;
        let page = items(&resp);
        let first_has_id = page[0].get("id").is_some();
        assert_eq!(first_has_id, page_number == 2, "page {page_number}: {}", page[0]);
        assert!(page[1..].iter().all(|i| i.get("id").is_some()), "only the first item");
        assert_eq!(without_id(&page[0]), without_id(&clean[seen.len()]));
        seen.extend(page);
        url = resp.next_link().expect("a next page");
    }
    assert!(seen.len() < clean.len(), "three full pages of four");
    assert_eq!(sim.counters().faults("malformed_item"), 2);
}

// ---------------------------------------------------------------------------------------
// Listing bodies and next links

#[tokio::test]
async fn bad_page_bodies_replace_the_answer_once_each() {
    let sim = start(sim_config(5)).await;
    sim.set_faults(vec![
        FaultRule::new(FaultAction::EmptyPage).endpoint(FaultEndpoint::AdminList).times(1),
        FaultRule::new(FaultAction::ItemsNotArray).times(1),
        FaultRule::new(FaultAction::NotJsonPage).times(1),
    ]);
    // The user listing skips the admin-only rule: it gets the second one.
    let resp = user_page(&sim).await;
    assert_eq!((resp.status, resp.text.as_str()), (200, r#"{"items": {"a": 1}}"#));
    assert!(resp.header("content-type").is_some_and(|t| t.starts_with("application/json")));
    assert!(resp.header("trackingid").is_some());
    assert!(resp.header("link").is_none());
    let resp = api(&sim, "/admin/recordings").await;
    assert_eq!((resp.status, resp.text.as_str()), (200, "{}"));
    assert!(resp.header("content-type").is_some_and(|t| t.starts_with("application/json")));
    let resp = user_page(&sim).await;
    assert_eq!((resp.status, resp.text.as_str()), (200, "<html>proxy error</html>"));
    assert_eq!(resp.header("content-type").as_deref(), Some("text/html"));
    // All used up.
    let resp = user_page(&sim).await;
    assert!(resp.json()["items"].is_array());
    let counters = sim.counters();
    assert_eq!(
        (counters.faults("empty_page"), counters.faults("items_not_array"), counters.faults("not_json_page")),
        (1, 1, 1)
    );
    assert_eq!(counters.requests_with(Endpoint::List, 200), 3);
    // Details are no listing.
    sim.set_faults(vec![FaultRule::new(FaultAction::EmptyPage)]);
    let id = downloadable(&sim)[0].clone();
    assert_eq!(details(&sim, &id).await["id"], json!(id));
}

#[tokio::test]
async fn foreign_next_links_point_at_the_trap_host_with_the_same_path_and_query() {
    let sim = start(sim_config(30)).await;
    let first = format!("{}/recordings?{}&max=5", sim.api_base_url(), wide());
    let clean = get_as(&first, Some(&sim.access_token())).await;
    let real_next = clean.next_link().expect("a next page");

    sim.set_faults(vec![FaultRule::new(FaultAction::ForeignNextLink).times(2)]);
    let resp = get_as(&first, Some(&sim.access_token())).await;
    assert_eq!(items(&resp), items(&clean), "the items are the same");
    let next = resp.next_link().expect("a next link");
    assert_eq!(next, format!("{}{}", sim.trap_base_url(), path_and_query(&real_next)));
    // On a last page (everything in one page), the page's own path and query.
    let last = format!("/recordings?{}&max=100", wide());
    let resp = api(&sim, &last).await;
    assert_eq!(resp.next_link(), Some(format!("{}/v1{last}", sim.trap_base_url())));
    // A client that follows it gets an empty listing from the trap host.
    let followed = get_as(&next, Some(&sim.access_token())).await;
    assert_eq!(followed.json(), json!({"items": []}));
    let counters = sim.counters();
    assert_eq!(counters.trap_requests_by_path.get("/v1/recordings"), Some(&1));
    assert_eq!(counters.trap_token_leaks, 1);
    assert_eq!(counters.faults("foreign_next_link"), 2);
    // Used up: the real link again, and none on the last page.
    assert_eq!(get_as(&first, Some(&sim.access_token())).await.next_link(), Some(real_next));
    assert_eq!(api(&sim, &last).await.next_link(), None);
}

#[tokio::test]
async fn a_self_next_link_is_exactly_the_url_requested() {
    let sim = start(sim_config(30)).await;
    sim.set_faults(vec![FaultRule::new(FaultAction::SelfNextLink).endpoint(FaultEndpoint::AdminList).times(1)]);
    let site = sim.sites()[0].clone();
    let url = format!("{}/admin/recordings?siteUrl={site}&max=2&topic=&odd=%20x", sim.api_base_url());
    let resp = get_as(&url, Some(&sim.access_token())).await;
    assert_eq!(resp.status, 200);
    let link = resp.header("link").expect("Link");
    assert_eq!(link, format!("<{url}>; rel=\"next\""));
    assert_eq!(resp.next_link().as_deref(), Some(url.as_str()));
    // Following it gives the same page, now with the real next link (or none).
    let again = get_as(&url, Some(&sim.access_token())).await;
    assert_eq!(items(&again), items(&resp));
    assert_ne!(again.next_link().as_deref(), Some(url.as_str()));
}

#[tokio::test]
async fn an_endless_next_link_never_ends_and_every_cursor_is_new() {
    let sim = start(sim_config(30)).await;
    let window = items(&user_page(&sim).await);
    sim.set_faults(vec![FaultRule::new(FaultAction::EndlessNextLink)]);
    assert!(window.len() < 30, "the window fits in {} pages of 5", window.len().div_ceil(5));
    let mut url = format!("{}/recordings?{}&max=5", sim.api_base_url(), wide());
    let mut urls = HashSet::new();
    let mut ids = Vec::new();
    for _ in 0..25 {
        assert!(urls.insert(url.clone()), "a URL seen before: {url}");
        let resp = get_as(&url, Some(&sim.access_token())).await;
        assert_eq!(resp.status, 200, "{}", resp.text);
        ids.extend(items(&resp).iter().map(|i| i["id"].as_str().expect("id").to_string()));
        url = resp.next_link().expect("always a next link");
        assert!(url.starts_with(&sim.api_base_url()), "on the API host: {url}");
    }
    let distinct: HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), window.len(), "every item of the window, over and over");
    assert!(ids.len() > 2 * window.len(), "items repeat: {} of {}", ids.len(), window.len());
    assert_eq!(sim.counters().faults("endless_next_link"), 25);
}

#[tokio::test]
async fn a_huge_page_of_160_mib_streams_chunked_with_flat_memory() {
    const SIZE: u64 = 160 << 20;
    let sim = start(sim_config(30)).await;
    let page_ids: HashSet<String> =
        items(&user_page(&sim).await).iter().map(|i| i["id"].as_str().expect("id").to_string()).collect();
    sim.set_faults(vec![FaultRule::new(FaultAction::HugePage { bytes: SIZE, chunked: true }).times(1)]);
    let before = rss();
    let mut response = client()
        .get(format!("{}/recordings?{}&max=100", sim.api_base_url(), wide()))
        .bearer_auth(sim.access_token())
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 200);
    assert!(response.headers().get(CONTENT_LENGTH).is_none(), "no Content-Length");
    assert_eq!(response.headers().get(TRANSFER_ENCODING).and_then(|v| v.to_str().ok()), Some("chunked"));
    assert!(response.headers().get(CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json")));
    let (mut received, mut head, mut tail, mut peak) = (0u64, Vec::new(), Vec::new(), before);
    let mut chunks = 0u64;
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        if head.len() < 4096 {
            head.extend_from_slice(&chunk[..chunk.len().min(4096 - head.len())]);
        }
        tail = chunk[chunk.len().saturating_sub(2)..].to_vec();
        received += chunk.len() as u64;
        chunks += 1;
        if chunks.is_multiple_of(64) {
            peak = peak.max(rss());
        }
    }
    assert_eq!(received, SIZE, "exactly the bytes asked for");
    assert!(head.starts_with(br#"{"items":[{"#), "{}", String::from_utf8_lossy(&head[..40]));
    assert_eq!(tail, b"]}");
    // The first item is a whole, valid listing item of the page.
    let first_item_end = head.windows(3).position(|w| w == b"},{").expect("items repeat") + 1;
    let first: Value = serde_json::from_slice(&head[10..first_item_end]).expect("a JSON item");
    assert!(page_ids.contains(first["id"].as_str().expect("id")));
    let growth = peak.saturating_sub(before);
    assert!(growth < 80 << 20, "memory grew by {} MiB while 160 MiB streamed", growth >> 20);
    assert_eq!(sim.counters().faults("huge_page"), 1);
}

#[tokio::test]
async fn a_huge_page_with_content_length_is_one_valid_json_page() {
    const SIZE: u64 = 3 << 20;
    let sim = start(sim_config(30)).await;
    let clean = items(&user_page(&sim).await);
    sim.set_faults(vec![FaultRule::new(FaultAction::HugePage { bytes: SIZE, chunked: false }).times(1)]);
    let response = client()
        .get(format!("{}/recordings?{}&max=100", sim.api_base_url(), wide()))
        .bearer_auth(sim.access_token())
        .send()
        .await
        .expect("GET");
    assert_eq!(response.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()), Some("3145728"));
    let body = response.bytes().await.expect("body");
    assert_eq!(body.len() as u64, SIZE);
    let page: Value = serde_json::from_slice(&body).expect("valid JSON");
    let got = page["items"].as_array().expect("items");
    assert!(got.len() > 10 * clean.len(), "{} items", got.len());
    assert_eq!(got.len() % clean.len(), 0, "whole copies of the page");
    assert_eq!(got[..clean.len()], clean[..], "the page's items, repeated");
}

// ---------------------------------------------------------------------------------------
// Retry-After as given

#[tokio::test]
async fn raw_retry_after_values_are_sent_verbatim_and_only_a_near_future_counts() {
    let sim = start(sim_config(2)).await;
    let sites = || api(&sim, "/meetingPreferences/sites");
    let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(3600));
    for raw in ["0", "-5", "soon", past.as_str(), "99999999999999999999", "86401"] {
        sim.burst_429(Burst429 {
            requests: Some(2),
            duration: None,
            retry_after: 7,
            retry_after_format: RetryAfterFormat::Seconds,
            retry_after_raw: Some(raw.to_string()),
        });
        for _ in 0..2 {
            let resp = sites().await;
            assert_webex_error(&resp, 429);
            assert_eq!(resp.header("retry-after").as_deref(), Some(raw));
        }
        assert_eq!(sites().await.status, 200, "{raw:?} sets no pause: the burst alone decides");
    }
    assert_eq!(sim.counters().violations, 0);
    assert_eq!(sim.counters().rate_limited, 12);

    // A positive number of seconds holds the client to it, as `retry_after` does.
    sim.burst_429(Burst429 {
        requests: Some(1),
        duration: None,
        retry_after: 1,
        retry_after_format: RetryAfterFormat::Seconds,
        retry_after_raw: Some("2".into()),
    });
    let resp = sites().await;
    assert_eq!(resp.header("retry-after").as_deref(), Some("2"));
    let early = sites().await;
    assert_webex_error(&early, 429);
    assert_eq!(early.header("retry-after").as_deref(), Some("2"), "the same value while the pause lasts");
    assert_eq!(sim.counters().violations, 1);

    // Over JSON (`POST /_sim/control`), a future HTTP date: held to it too.
    let sim = start(sim_config(2)).await;
    let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    let control = client()
        .post(format!("{}/_sim/control", sim.api_origin()))
        .json(&json!({"burst_429": {"requests": 1, "retry_after_raw": soon}}))
        .send()
        .await
        .expect("POST");
    assert_eq!(control.status(), 200);
    let resp = api(&sim, "/meetingPreferences/sites").await;
    assert_eq!(resp.header("retry-after"), Some(soon));
    assert_webex_error(&api(&sim, "/meetingPreferences/sites").await, 429);
    assert_eq!(sim.counters().violations, 1);
}

#[tokio::test]
async fn a_raw_retry_after_that_is_no_header_value_is_refused_at_start() {
    let config = SimConfig {
        burst_429: Some(Burst429 {
            requests: Some(1),
            duration: None,
            retry_after: 1,
            retry_after_format: RetryAfterFormat::Seconds,
            retry_after_raw: Some("1\r\nX-Injected: yes".into()),
        }),
        ..sim_config(1)
    };
    match Simulator::start(config).await {
        Err(SimError::Config(message)) => assert!(message.contains("retry_after_raw"), "{message}"),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("an invalid header value was accepted"),
    }
}

// ---------------------------------------------------------------------------------------
// Details and downloads

#[tokio::test]
async fn a_foreign_download_link_points_every_link_at_the_trap_host() {
    let sim = start(sim_config(10)).await;
    let ids = downloadable(&sim);
    let (target, other) = (ids[0].clone(), ids[1].clone());
    sim.set_faults(vec![FaultRule::new(FaultAction::ForeignDownloadLink).ids([target.clone()]).times(1)]);
    assert!(recording_link(&details(&sim, &other).await).starts_with(&sim.site_base_url()), "others are spared");
    let foreign = details(&sim, &target).await;
    let links = foreign["temporaryDirectDownloadLinks"].as_object().expect("links").clone();
    for key in ["recordingDownloadLink", "audioDownloadLink", "transcriptDownloadLink"] {
        let link = links[key].as_str().expect("link");
        assert!(link.starts_with(&format!("{}/nbr/", sim.trap_base_url())), "{key}: {link}");
        assert!(link.contains("ticket="), "the same query, ticket included: {link}");
    }
    let normal = details(&sim, &target).await;
    let (foreign_link, normal_link) = (recording_link(&foreign), recording_link(&normal));
    assert!(normal_link.starts_with(&sim.site_base_url()), "times = 1");
    assert_eq!(url::Url::parse(&foreign_link).expect("URL").path(), url::Url::parse(&normal_link).expect("URL").path());
    // Following it "succeeds" on the trap host: no download happened.
    let got = fetch_with(&client(), &foreign_link).await;
    assert_eq!((got.status, got.body.len() as u64), (200, TRAP_BODY_LEN));
    let counters = sim.counters();
    assert_eq!(counters.trap_requests_by_path.get("/nbr/MultiThreadDownloadServlet"), Some(&1));
    assert_eq!(counters.downloads.started, 0);
    assert_eq!(counters.faults("foreign_download_link"), 1);
}

#[tokio::test]
async fn a_foreign_download_url_removes_the_links_and_moves_the_page_to_the_trap_host() {
    let sim = start(sim_config(10)).await;
    let clean = items(&user_page(&sim).await);
    let target = clean[1]["id"].as_str().expect("id").to_string();
    sim.set_faults(vec![FaultRule::new(FaultAction::ForeignDownloadUrl).ids([target.clone()])]);
    let clean_url = clean[1]["downloadUrl"].as_str().expect("downloadUrl").to_string();
    let trap_url = format!("{}{}", sim.trap_base_url(), path_and_query(&clean_url));
    // The listing shows it (without using the rule up), and nothing else changes.
    for _ in 0..2 {
        let got = items(&user_page(&sim).await);
        for (g, c) in got.iter().zip(&clean) {
            if g["id"] == json!(target) {
                let mut expected = c.clone();
                expected["downloadUrl"] = json!(trap_url);
                assert_eq!(*g, expected);
            } else {
                assert_eq!(g, c);
            }
        }
    }
    // Details: no direct links at all, and the same downloadUrl; every time (no `times`).
    for _ in 0..2 {
        let d = details(&sim, &target).await;
        assert!(d.get("temporaryDirectDownloadLinks").is_none(), "{d}");
        assert_eq!(d["downloadUrl"], json!(trap_url));
    }
    let page = fetch_with(&client(), &trap_url).await;
    assert_eq!((page.status, page.body.len() as u64), (200, TRAP_BODY_LEN), "the trap serves media-looking bytes");
    assert_eq!(sim.counters().faults("foreign_download_url"), 2, "counted per details answer");
    // With `times`, listings stop showing it once details used it up.
    sim.set_faults(vec![FaultRule::new(FaultAction::ForeignDownloadUrl).ids([target.clone()]).times(1)]);
    assert!(details(&sim, &target).await.get("temporaryDirectDownloadLinks").is_none());
    assert_eq!(items(&user_page(&sim).await), clean);
    assert!(details(&sim, &target).await.get("temporaryDirectDownloadLinks").is_some());
}

#[tokio::test]
async fn a_redirect_points_at_the_trap_host_with_the_same_path_and_query() {
    let sim = start(sim_config(3)).await;
    let id = downloadable(&sim)[0].clone();
    sim.set_faults(vec![FaultRule::new(FaultAction::Redirect { redirect_to: RedirectTarget::Trap }).ids([id.clone()])]);
    let link = recording_link(&details(&sim, &id).await);
    let got = fetch_with(&no_redirects(), &link).await;
    assert_eq!(got.status, 302);
    assert_eq!(got.header(LOCATION), Some(format!("{}{}", sim.trap_base_url(), path_and_query(&link))));
    // A client that follows redirects anywhere ends on the trap host, apparently fine.
    let followed = fetch_with(&client(), &link).await;
    assert_eq!((followed.status, followed.body.len() as u64), (200, TRAP_BODY_LEN));
    assert_eq!(&followed.body[4..8], b"ftyp");
    let counters = sim.counters();
    assert_eq!(counters.trap_requests, 1);
    assert_eq!(counters.requests_with(Endpoint::Download, 302), 2);
    assert_eq!(counters.downloads.started, 0);
    assert_eq!(counters.faults("redirect"), 2);
}

#[tokio::test]
async fn a_redirect_to_the_site_host_then_serves_the_file() {
    let sim = start(sim_config(3)).await;
    let id = downloadable(&sim)[0].clone();
    // No `times`: the redirected request must not be redirected again.
    sim.set_faults(vec![FaultRule::new(FaultAction::Redirect { redirect_to: RedirectTarget::Site })]);
    let link = recording_link(&details(&sim, &id).await);
    let got = fetch_with(&no_redirects(), &link).await;
    assert_eq!(got.status, 302);
    let location = got.header(LOCATION).expect("Location");
    assert!(location.starts_with(&format!("{}/nbr/MultiThreadDownloadServlet?", sim.site_base_url())), "{location}");
    assert!(location.contains("_simredirect=1"));
    let followed = fetch_with(&client(), &link).await;
    assert_eq!(followed.status, 200);
    let truth = sim.recording(&id).expect("truth");
    assert_eq!(followed.header(CONTENT_LENGTH), Some(truth.size_bytes.to_string()));
    assert_eq!(Some(hex::encode(Sha256::digest(&followed.body))), truth.sha256);
    let counters = sim.counters();
    assert_eq!(counters.downloads_of(&id).completed, 1);
    assert_eq!(counters.trap_requests, 0);
}

/// What a body must be.
type BodyCheck = Box<dyn Fn(&[u8])>;

#[tokio::test]
async fn bodies_that_are_not_media_say_so_or_lie_about_their_type() {
    let sim = start(sim_config(3)).await;
    let id = downloadable(&sim)[0].clone();
    let truth = sim.recording(&id).expect("truth");
    let file = Content::recording(&id, &truth.format, truth.size_bytes);
    let cases: Vec<(FaultAction, &str, BodyCheck)> = vec![
        (
            FaultAction::TextBody { content_type: "text/plain".into() },
            "text/plain",
            Box::new(|b| assert_eq!(b, b"ticket expired")),
        ),
        (
            FaultAction::TextBody { content_type: "application/json".into() },
            "application/json",
            Box::new(|b| assert_eq!(b, br#"{"message":"ticket expired"}"#)),
        ),
        (
            FaultAction::JsonBody,
            "application/octet-stream",
            Box::new(|b| {
                let error: ErrorBody = serde_json::from_slice(b).expect("a Webex error document");
                assert!(error.message.is_some() && !error.errors.is_empty() && error.tracking_id.is_some());
            }),
        ),
        (
            FaultAction::HtmlBody,
            "application/octet-stream",
            Box::new(|b| {
                assert!(b.starts_with(b"<!DOCTYPE html>"), "{}", String::from_utf8_lossy(b));
                assert!(String::from_utf8_lossy(b).contains("Sign in"));
            }),
        ),
    ];
    for (fault, content_type, check) in cases {
        let name = fault.name();
        sim.set_faults(vec![FaultRule::new(fault).ids([id.clone()]).times(1)]);
        let link = recording_link(&details(&sim, &id).await);
        let got = fetch_with(&client(), &link).await;
        assert_eq!(got.status, 200, "{name}");
        assert_eq!(got.header(CONTENT_TYPE).as_deref(), Some(content_type), "{name}");
        assert_eq!(got.header(CONTENT_LENGTH), Some(got.body.len().to_string()), "{name}");
        check(&got.body);
        if name == "json_body" {
            let error: ErrorBody = serde_json::from_slice(&got.body).expect("error");
            let header = got.header(reqwest::header::HeaderName::from_static("trackingid"));
            assert_eq!(error.tracking_id, header, "one tracking id");
        }
        // `times = 1`: then the media.
        let media = fetch_with(&client(), &link).await;
        assert_eq!(media.header(CONTENT_TYPE).as_deref(), Some(file.content_type()), "{name}");
        assert_eq!(media.body, file.to_vec(), "{name}");
    }
    let counters = sim.counters();
    assert_eq!((counters.faults("text_body"), counters.faults("json_body"), counters.faults("html_body")), (2, 1, 1));
    assert_eq!(counters.downloads_of(&id).started, 4, "only the real bodies are downloads");
}

#[tokio::test]
async fn a_no_length_short_body_ends_cleanly_without_content_length() {
    let config = SimConfig { size: Some(300_000), ..sim_config(2) };
    let sim = start(config).await;
    let id = downloadable(&sim)[0].clone();
    sim.set_faults(vec![
        FaultRule::new(FaultAction::NoLengthShort { after_bytes: 100_000 }).ids([id.clone()]).times(1),
    ]);
    let link = recording_link(&details(&sim, &id).await);
    let truth = sim.recording(&id).expect("truth");
    let full = Content::recording(&id, &truth.format, truth.size_bytes).to_vec();
    // `bytes()` fails on a body that ends short of its Content-Length; this one has none.
    let short = fetch_with(&client(), &link).await;
    assert_eq!(short.status, 200);
    assert_eq!(short.header(CONTENT_LENGTH), None);
    assert_eq!(short.header(TRANSFER_ENCODING).as_deref(), Some("chunked"));
    assert_eq!(short.body.len(), 100_000);
    assert_eq!(short.body[..], full[..100_000], "the first bytes of the real file");
    let whole = fetch_with(&client(), &link).await;
    assert_eq!(whole.header(CONTENT_LENGTH), Some("300000".into()));
    assert_eq!(whole.body, full);
    let counters = sim.counters();
    assert_eq!(counters.downloads_of(&id).started, 2);
    assert_eq!(counters.downloads_of(&id).completed, 1, "the short one is not complete");
    assert_eq!(counters.faults("no_length_short"), 1);
}

// ---------------------------------------------------------------------------------------
// Formats

#[tokio::test]
async fn every_new_fault_parses_from_toml_and_over_post_sim_control() {
    #[derive(serde::Deserialize)]
    struct Doc {
        faults: Vec<FaultRule>,
    }
    let doc: Doc = toml::from_str(
        r#"
        [[faults]]
        kind = "malformed_item"
        variant = "number_as_string"
        ids = ["a"]
        times = 1
        [[faults]]
        kind = "empty_page"
        endpoint = "admin_list"
        [[faults]]
        kind = "items_not_array"
        [[faults]]
        kind = "not_json_page"
        [[faults]]
        kind = "foreign_next_link"
        [[faults]]
        kind = "self_next_link"
        [[faults]]
        kind = "endless_next_link"
        [[faults]]
        kind = "huge_page"
        bytes = 167772160
        chunked = true
        [[faults]]
        kind = "foreign_download_link"
        [[faults]]
        kind = "foreign_download_url"
        [[faults]]
        kind = "redirect"
        [[faults]]
        kind = "redirect"
        redirect_to = "site"
        [[faults]]
        kind = "text_body"
        [[faults]]
        kind = "text_body"
        content_type = "application/json"
        [[faults]]
        kind = "json_body"
        [[faults]]
        kind = "html_body"
        [[faults]]
        kind = "no_length_short"
        after_bytes = 1000
        "#,
    )
    .expect("parses");
    let expected = vec![
        FaultRule::new(FaultAction::MalformedItem { variant: ItemVariant::NumberAsString }).ids(["a"]).times(1),
        FaultRule::new(FaultAction::EmptyPage).endpoint(FaultEndpoint::AdminList),
        FaultRule::new(FaultAction::ItemsNotArray),
        FaultRule::new(FaultAction::NotJsonPage),
        FaultRule::new(FaultAction::ForeignNextLink),
        FaultRule::new(FaultAction::SelfNextLink),
        FaultRule::new(FaultAction::EndlessNextLink),
        FaultRule::new(FaultAction::HugePage { bytes: 160 << 20, chunked: true }),
        FaultRule::new(FaultAction::ForeignDownloadLink),
        FaultRule::new(FaultAction::ForeignDownloadUrl),
        FaultRule::new(FaultAction::Redirect { redirect_to: RedirectTarget::Trap }),
        FaultRule::new(FaultAction::Redirect { redirect_to: RedirectTarget::Site }),
        FaultRule::new(FaultAction::TextBody { content_type: "text/plain".into() }),
        FaultRule::new(FaultAction::TextBody { content_type: "application/json".into() }),
        FaultRule::new(FaultAction::JsonBody),
        FaultRule::new(FaultAction::HtmlBody),
        FaultRule::new(FaultAction::NoLengthShort { after_bytes: 1000 }),
    ];
    assert_eq!(doc.faults, expected);
    let variants: Vec<String> = ItemVariant::ALL
        .iter()
        .map(|v| {
            let rule: FaultRule =
                toml::from_str(&format!("kind = \"malformed_item\"\nvariant = \"{}\"", v.as_str())).expect("variant");
            assert_eq!(rule.action, FaultAction::MalformedItem { variant: *v });
            v.as_str().to_string()
        })
        .collect();
    assert_eq!(variants.len(), 9);

    // The same rules over HTTP, as JSON; they come back as they went.
    let sim = start(sim_config(1)).await;
    let resp = client()
        .post(format!("{}/_sim/control", sim.api_origin()))
        .json(&json!({ "faults": serde_json::to_value(&expected).expect("JSON") }))
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), 200);
    let state: Value = resp.json().await.expect("state");
    let rules: Vec<FaultRule> = serde_json::from_value(state["faults"].clone()).expect("rules");
    assert_eq!(rules, expected);
    assert_eq!(
        state["faults"][0],
        json!({"kind": "malformed_item", "variant": "number_as_string", "ids": ["a"], "times": 1})
    );
    let bad = client()
        .post(format!("{}/_sim/control", sim.api_origin()))
        .json(&json!({"faults": [{"kind": "malformed_item", "variant": "upside_down"}]}))
        .send()
        .await
        .expect("POST");
    assert_eq!(bad.status(), 400, "an unknown variant is refused");
}

// ---------------------------------------------------------------------------------------
// The hostile preset

fn hostile(seed: u64) -> SimConfig {
    SimConfig { seed, recordings: 60, hostile: true, ..sim_config(0) }
}

#[tokio::test]
async fn the_hostile_preset_is_deterministic_for_a_seed_and_covers_every_fault() {
    let a = start(hostile(5)).await;
    let plan = a.hostile_plan().expect("a plan");
    let b = start(hostile(5)).await;
    assert_eq!(b.hostile_plan(), Some(plan.clone()), "the same seed, the same plan");
    let c = start(hostile(6)).await;
    let other = c.hostile_plan().expect("a plan");
    assert_ne!(
        other.targets.iter().map(|t| &t.id).collect::<Vec<_>>(),
        plan.targets.iter().map(|t| &t.id).collect::<Vec<_>>(),
        "another seed, another choice"
    );

    // One distinct, eligible recording per fault.
    let truth = a.truth_without_digests();
    let ids: HashSet<&str> = plan.targets.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids.len(), plan.targets.len(), "distinct recordings");
    assert_eq!(plan.targets.len(), 17);
    for target in &plan.targets {
        let t = truth.iter().find(|t| t.id == target.id).expect("in the population");
        assert!(t.visible_to_user && !t.prevent_downloading && t.status == "available", "{t:?}");
    }
    for variant in ItemVariant::ALL {
        let id = plan.id_with_variant(variant).expect("each variant");
        let target = plan.target(&id).expect("target");
        assert_eq!(target.times, Some(1));
        assert_eq!(target.quarantined_first, !variant.readable());
        assert_eq!(target.outcome, HostileOutcome::Archived);
    }
    for kind in ["text_body", "json_body", "html_body", "no_length_short"] {
        let ids = plan.ids_with(kind);
        assert_eq!(ids.len(), 1, "{kind}");
        assert_eq!(plan.target(&ids[0]).map(|t| (t.times, t.outcome)), Some((Some(1), HostileOutcome::Archived)));
    }
    assert_eq!(plan.ids_with("redirect").len(), 2, "one to the trap host, one to the site host");
    let mut refused = plan.refused_ids();
    refused.sort();
    let mut expected: Vec<String> = plan
        .targets
        .iter()
        .filter(|t| {
            matches!(
                t.fault,
                FaultAction::ForeignDownloadLink
                    | FaultAction::ForeignDownloadUrl
                    | FaultAction::Redirect { redirect_to: RedirectTarget::Trap }
            )
        })
        .map(|t| t.id.clone())
        .collect();
    expected.sort();
    assert_eq!(refused, expected, "the foreign links stay refused");
    assert!(plan.targets.iter().filter(|t| t.outcome == HostileOutcome::Refused).all(|t| t.times.is_none()));
    assert_eq!(plan.archived_ids().len() + refused.len(), 17);
    assert_eq!(plan.quarantined_first_ids().len(), 4);
    let no_length = plan.target(&plan.ids_with("no_length_short")[0]).expect("target");
    let size = truth.iter().find(|t| t.id == no_length.id).expect("truth").size_bytes;
    assert_eq!(no_length.fault, FaultAction::NoLengthShort { after_bytes: size / 2 });

    // Installed first, and published.
    let state = get_as(&format!("{}/_sim/control", a.api_origin()), None).await.json();
    let rules: Vec<FaultRule> = serde_json::from_value(state["faults"].clone()).expect("rules");
    assert_eq!(rules, plan.rules);
    let kinds: Vec<&str> = plan.rules.iter().map(|r| r.action.name()).collect();
    for kind in ["empty_page", "not_json_page", "items_not_array", "foreign_next_link", "self_next_link"] {
        let rule = plan.rules.iter().find(|r| r.action.name() == kind).expect(kind);
        assert_eq!(rule.times, Some(1), "{kind} once");
    }
    assert!(kinds.contains(&"malformed_item"));
    let published = get_as(&format!("{}/_sim/hostile", a.api_origin()), None).await;
    assert_eq!(serde_json::from_str::<webex_archiver::sim::HostilePlan>(&published.text).expect("plan"), plan);
    assert_eq!(plan.storm.retry_after_raw.as_deref(), Some("0"));

    // Without the preset: no plan.
    let plain = start(sim_config(3)).await;
    assert!(plain.hostile_plan().is_none());
    assert_eq!(get_as(&format!("{}/_sim/hostile", plain.api_origin()), None).await.status, 404);
    // Too small a population is refused with a message that says what to do.
    match Simulator::start(SimConfig { recordings: 10, ..hostile(5) }).await {
        Err(SimError::Config(message)) => assert!(message.contains("raise `recordings`"), "{message}"),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("10 recordings cannot hold 17 faults"),
    }
}

#[tokio::test]
async fn the_hostile_preset_does_what_its_plan_says() {
    let started = Instant::now();
    let sim = start(hostile(11)).await;
    let plan = sim.hostile_plan().expect("a plan");
    // The storm: 429 with `Retry-After: 0`, every request, for a few seconds.
    let first = user_page(&sim).await;
    assert_webex_error(&first, 429);
    assert_eq!(first.header("retry-after").as_deref(), Some("0"));
    wait_until(Duration::from_secs(10), "the storm ends", || async {
        api(&sim, "/meetingPreferences/sites").await.status == 200
    })
    .await;
    assert!(started.elapsed() >= Duration::from_secs(2), "the storm lasted a few seconds");
    let counters = sim.counters();
    assert!(counters.rate_limited >= 2);
    assert_eq!(counters.violations, 0, "`Retry-After: 0` sets no pause");

    // The first three listing answers are bad pages, in the plan's order.
    assert_eq!(user_page(&sim).await.text, "{}");
    assert_eq!(user_page(&sim).await.text, "<html>proxy error</html>");
    assert_eq!(user_page(&sim).await.text, r#"{"items": {"a": 1}}"#);
    // Then a page with every item variant once, and a next link to the trap host...
    let query = format!("/recordings?{}&max=100", wide());
    let page = api(&sim, &query).await;
    assert_eq!(page.next_link(), Some(format!("{}/v1{query}", sim.trap_base_url())));
    let altered = items(&page);
    // ...in the order of the clean page, which the next answer shows (with a link to itself).
    let again = api(&sim, &query).await;
    assert_eq!(again.next_link(), Some(format!("{}{query}", sim.api_base_url())));
    let clean = items(&again);
    assert_eq!(altered.len(), clean.len());
    let position = |id: &str| clean.iter().position(|i| i["id"] == json!(id)).expect("listed for the user");
    for variant in ItemVariant::ALL {
        let id = plan.id_with_variant(variant).expect("variant");
        assert_altered(&altered[position(&id)], &clean[position(&id)], variant);
    }
    // The foreign downloadUrl is permanent; every other item of the second answer is as
    // the truth has it.
    let foreign_url = plan.ids_with("foreign_download_url")[0].clone();
    for item in &clean {
        let url = item["downloadUrl"].as_str().expect("downloadUrl");
        let on_trap = url.starts_with(&sim.trap_base_url());
        assert_eq!(on_trap, item["id"] == json!(foreign_url), "{item}");
        assert!(item["createTime"].as_str().is_some_and(|t| t != "yesterday"));
    }

    // Details: foreign links stay foreign; the rest is transient.
    let foreign_link = plan.ids_with("foreign_download_link")[0].clone();
    for _ in 0..2 {
        assert!(recording_link(&details(&sim, &foreign_link).await).starts_with(&sim.trap_base_url()));
        assert!(details(&sim, &foreign_url).await.get("temporaryDirectDownloadLinks").is_none());
    }
    let redirects = plan.ids_with("redirect");
    for id in redirects {
        let to_trap = plan.target(&id).map(|t| t.outcome) == Some(HostileOutcome::Refused);
        let link = recording_link(&details(&sim, &id).await);
        let first = fetch_with(&no_redirects(), &link).await;
        assert_eq!(first.status, 302);
        let second = fetch_with(&no_redirects(), &link).await;
        assert_eq!(second.status, if to_trap { 302 } else { 200 }, "to the trap: {to_trap}");
    }
    for kind in ["text_body", "json_body", "html_body", "no_length_short"] {
        let id = plan.ids_with(kind)[0].clone();
        let truth = sim.recording(&id).expect("truth");
        let link = recording_link(&details(&sim, &id).await);
        let bad = fetch_with(&client(), &link).await;
        assert_ne!(Some(hex::encode(Sha256::digest(&bad.body))), truth.sha256, "{kind}: not the file");
        let good = fetch_with(&client(), &link).await;
        assert_eq!(Some(hex::encode(Sha256::digest(&good.body))), truth.sha256, "{kind}: then the file");
    }
    let counters = sim.counters();
    assert_eq!(counters.trap_requests, 0, "nothing followed a foreign link");
    assert_eq!(counters.violations, 0);
    assert_eq!(counters.faults("malformed_item"), 9);
}
