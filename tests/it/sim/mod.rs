//! Black-box tests of the Webex simulator: a reqwest client against in-process
//! simulators, one per test.

mod auth;
mod cli;
mod contract;
mod control;
mod downloads;
mod hostile;
mod limits;
mod listing;
mod recycle_bin;

use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::HeaderMap;
use serde_json::Value;
use webex_archiver::sim::{SimConfig, SimHandle, Simulator};

/// A simulator with `n` recordings and otherwise default settings.
pub(crate) async fn start_with(n: usize) -> SimHandle {
    start(SimConfig { recordings: n, ..SimConfig::default() }).await
}

pub(crate) async fn start(config: SimConfig) -> SimHandle {
    Simulator::start(config).await.expect("simulator starts")
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().expect("http client")
}

/// A response, read whole.
pub(crate) struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    /// The `rel="next"` target, which must be an absolute URL (RFC 8288 parsing).
    pub fn next_link(&self) -> Option<String> {
        let value = self.header("link")?;
        let base = url::Url::parse("http://relative-target.invalid/").unwrap();
        let links = http_link::parse_link_header(&value, &base).expect("valid Link header");
        let next = links.into_iter().find(|l| l.rel == "next")?;
        assert_ne!(next.target.host_str(), Some("relative-target.invalid"), "the next link must be absolute: {value}");
        Some(next.target.to_string())
    }
}

/// GET with an optional bearer token.
pub(crate) async fn get_as(url: &str, token: Option<&str>) -> Resp {
    let mut req = client().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let response = req.send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    Resp { status, headers, text }
}

/// GET on the API with the simulator's token; `path_and_query` is relative to `/v1`.
pub(crate) async fn api(sim: &SimHandle, path_and_query: &str) -> Resp {
    get_as(&format!("{}{path_and_query}", sim.api_base_url()), Some(&sim.access_token())).await
}

/// Follows `Link: rel="next"` from `first` (relative to `/v1`) and returns every item
/// and the number of pages; checks each page holds at most `max` items.
pub(crate) async fn list_all(sim: &SimHandle, first: &str, max: usize) -> (Vec<Value>, usize) {
    let mut url = format!("{}{first}", sim.api_base_url());
    let mut items = Vec::new();
    let mut pages = 0;
    loop {
        let resp = get_as(&url, Some(&sim.access_token())).await;
        assert_eq!(resp.status, 200, "{url}: {}", resp.text);
        let page = resp.json()["items"].as_array().expect("items").clone();
        assert!(page.len() <= max, "page of {} items with max={max}", page.len());
        pages += 1;
        items.extend(page);
        match resp.next_link() {
            Some(next) => {
                assert!(next.starts_with(&sim.api_base_url()), "next link is absolute on the API: {next}");
                url = next;
            }
            None => break,
        }
        assert!(pages < 100_000, "paging does not end");
    }
    (items, pages)
}

pub(crate) fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(|i| i["id"].as_str().expect("id").to_string()).collect()
}

/// RFC 3339 with `Z`, percent-encoded for a query string.
pub(crate) fn q(t: DateTime<Utc>) -> String {
    url::form_urlencoded::byte_serialize(t.to_rfc3339_opts(SecondsFormat::Secs, true).as_bytes()).collect()
}

/// Waits until `check` holds, polling, or fails after `within`.
pub(crate) async fn wait_until<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The Webex error body: checks its shape and that its trackingId is the header's.
pub(crate) fn assert_webex_error(resp: &Resp, status: u16) {
    assert_eq!(resp.status, status, "{}", resp.text);
    let body: webex_archiver::webex::models::ErrorBody =
        serde_json::from_str(&resp.text).unwrap_or_else(|e| panic!("error body ({e}): {}", resp.text));
    assert!(body.message.as_deref().is_some_and(|m| !m.is_empty()), "message: {}", resp.text);
    assert!(!body.errors.is_empty() && !body.errors[0].description.is_empty(), "errors: {}", resp.text);
    let header = resp.header("trackingid").expect("Trackingid header");
    assert_eq!(body.tracking_id.as_deref(), Some(header.as_str()));
}
