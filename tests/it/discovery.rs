//! Discovery against upstreams that misbehave: odd fields, pages that are not pages,
//! items that cannot be read, `next` links that loop or leave the API's origin, and long
//! windows slowed down by 429s. Malformed answers come from a small stand-in for the
//! Webex API (a few lines of axum, scripted per test); the long window comes from the
//! project's simulator. Real Postgres and SQLite.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use webex_archiver::app::{self, Services, SyncReport};
use webex_archiver::config::{Needs, Settings, Sources};
use webex_archiver::discovery::BAD_PAGE_TRIES;
use webex_archiver::sim::{
    Burst429, Endpoint, FaultAction, FaultEndpoint, FaultRule, RateLimit, RetryAfterFormat, SimConfig,
};
use webex_archiver::state::{
    ArchiveState, Cursor, CursorKind, ListedRecording, QuarantinedItem, RecordingId, ScopeKey,
};

use crate::helpers::{Backend, TestState, settings_from_env, wait_for};
use crate::sync::{Harness, Store};

/// One request the stand-in received.
#[derive(Debug, Clone)]
struct Asked {
    /// Path, e.g. `/v1/admin/recordings`.
    path: String,
    /// Query parameters.
    query: BTreeMap<String, String>,
    /// Path and query as sent (what a `next` link names).
    target: String,
}

impl Asked {
    fn site(&self) -> &str {
        self.query.get("siteUrl").map_or("", String::as_str)
    }
    fn is_list(&self) -> bool {
        self.path.ends_with("/recordings") && self.query.contains_key("from")
    }
}

/// What the stand-in answers.
struct Answer {
    status: u16,
    body: String,
    next: Option<String>,
    delay: Duration,
}

impl Answer {
    fn json(body: &Value) -> Self {
        Self { status: 200, body: body.to_string(), next: None, delay: Duration::ZERO }
    }
    fn text(body: &str) -> Self {
        Self { status: 200, body: body.into(), next: None, delay: Duration::ZERO }
    }
    fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
    fn next(mut self, url: String) -> Self {
        self.next = Some(url);
        self
    }
}

type Script = dyn Fn(&Asked) -> Answer + Send + Sync;

struct Shared {
    asked: Mutex<Vec<Asked>>,
    script: Mutex<Arc<Script>>,
}

/// A stand-in for the Webex API on a random port, answering what its script says.
struct StandIn {
    /// `http://127.0.0.1:<port>`.
    origin: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StandIn {
    async fn start() -> Self {
        let shared = Arc::new(Shared {
            asked: Mutex::new(Vec::new()),
            script: Mutex::new(Arc::new(|_: &Asked| Answer::json(&json!({"items": []})))),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the stand-in");
        let addr: SocketAddr = listener.local_addr().expect("address");
        let app = axum::Router::new().fallback(answer).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { origin: format!("http://{addr}"), shared, task }
    }

    /// The API base URL to configure.
    fn base(&self) -> String {
        format!("{}/v1", self.origin)
    }

    /// An absolute URL on the stand-in.
    fn url(&self, target: &str) -> String {
        format!("{}{target}", self.origin)
    }

    fn script(&self, script: impl Fn(&Asked) -> Answer + Send + Sync + 'static) {
        *self.shared.script.lock().unwrap() = Arc::new(script);
    }

    fn asked(&self) -> Vec<Asked> {
        self.shared.asked.lock().unwrap().clone()
    }
}

async fn answer(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let uri = request.uri();
    let asked = Asked {
        path: uri.path().to_owned(),
        query: uri
            .query()
            .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default(),
        target: uri.path_and_query().map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
    };
    let n = {
        let mut all = shared.asked.lock().unwrap();
        all.push(asked.clone());
        all.len()
    };
    let script = shared.script.lock().unwrap().clone();
    let answer = script(&asked);
    tokio::time::sleep(answer.delay).await;
    let mut response = (StatusCode::from_u16(answer.status).unwrap(), answer.body).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/json;charset=UTF-8"));
    headers.insert("trackingid", HeaderValue::from_str(&format!("STANDIN_{n}")).unwrap());
    if let Some(next) = answer.next {
        headers.insert("link", HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")).unwrap());
    }
    response
}

/// A listing item as Webex sends it.
fn item(id: &str, created: DateTime<Utc>) -> Value {
    json!({
        "id": id, "topic": format!("topic of {id}"), "createTime": created.to_rfc3339(), "format": "MP4",
        "sizeBytes": 1000, "durationSeconds": 60, "hostEmail": "host@acme.test", "siteUrl": "acme.webex.com",
        "status": "available"
    })
}

fn hours_ago(h: i64) -> DateTime<Utc> {
    (Utc::now() - chrono::Duration::hours(h)).trunc_subsecs(0)
}

/// One archiver, discovery only, against the stand-in.
struct Setup {
    db: TestState,
    env: BTreeMap<String, String>,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn new(backend: Backend, upstream: &StandIn, scope: &str) -> Self {
        let db = TestState::new(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let mut env = BTreeMap::new();
        for (k, v) in [
            ("WEBEX_ARCHIVER__WEBEX__BASE_URL", upstream.base()),
            ("WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN", "stand-in-token".into()),
            ("WEBEX_ARCHIVER__WEBEX__SCOPE", scope.into()),
            ("WEBEX_ARCHIVER__DATABASE__URL", db.url.clone()),
            ("WEBEX_ARCHIVER__STORAGE__URL", format!("file://{}/archive", dir.path().display())),
            // One window per pass.
            ("WEBEX_ARCHIVER__SYNC__SINCE", "2d".into()),
            // The stand-in upstream answers every listing alike, whatever its `status`:
            // a deletion sweep would take its pages for the recycle bin.
            ("WEBEX_ARCHIVER__COMPLIANCE__DELETION_SWEEP", "0s".into()),
            ("WEBEX_ARCHIVER__HTTP__LISTEN", String::new()),
        ] {
            env.insert(k.into(), v);
        }
        Self { db, env, _dir: dir }
    }

    fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.insert(key.into(), value.into());
        self
    }

    async fn services(&self) -> Services {
        let settings = settings_from_env(self.env.clone(), Needs::Webex);
        Services::with_state(settings, self.db.state.clone(), CancellationToken::new()).await.expect("services")
    }

    /// One `sync --discover-only`.
    async fn discover(&self) -> (Services, SyncReport) {
        let services = self.services().await;
        let stop = CancellationToken::new();
        let report = app::sync(&services, true, &stop).await.expect("sync runs");
        (services, report)
    }

    async fn cursors(&self) -> HashMap<String, Cursor> {
        self.db.state.cursors().await.unwrap().into_iter().map(|c| (c.scope.0.clone(), c)).collect()
    }

    /// Every recording as recorded (through a claim, which shows what workers would see).
    async fn recorded(&self) -> HashMap<String, webex_archiver::state::Claim> {
        let claims = self.db.state.claim_due("test", Duration::from_secs(60), 1000).await.unwrap();
        claims.into_iter().map(|c| (c.id.0.clone(), c)).collect()
    }
}

/// The value of a metric sample (name with labels, exactly as exposed), as a scrape
/// would show it now.
async fn metric(services: &Services, sample: &str) -> Option<f64> {
    let gauges = services.state.gauges().await.expect("gauges");
    webex_archiver::server::observe_gauges(&services.metrics, &gauges, Utc::now());
    let text = services.metrics.encode(Utc::now());
    text.lines().find_map(|l| l.strip_prefix(sample).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

#[tokio::test]
async fn a_page_with_odd_fields_records_every_item_on_postgres() {
    let upstream = StandIn::start().await;
    let mut odd = item("r-odd", hours_ago(2));
    odd["durationSeconds"] = json!("598");
    let mut lenient = item("r-lenient", hours_ago(3));
    lenient["shareToMe"] = json!("true");
    lenient["integrationTags"] = json!("x");
    lenient["format"] = json!({"unexpected": "object"});
    lenient["status"] = json!("SOMETHING_NEW");
    lenient["sizeBytes"] = json!(null);
    let mut nul = item("r-nul", hours_ago(4));
    // NOTE: Postgres text cannot hold NUL; such a topic must not fail the page.
    nul["topic"] = json!("before\u{0}after");
    let page = json!({"items": [item("r-plain", hours_ago(1)), odd, lenient, nul]});
    upstream.script(move |_| Answer::json(&page));
    let setup = Setup::new(Backend::Postgres, &upstream, "user").await;

    let (_, report) = setup.discover().await;
    assert_eq!(report.exit, 0, "{report:?}");
    assert!(report.discovery_error.is_none());
    assert_eq!(report.status.counts[&ArchiveState::Pending], 4, "every item of the page is recorded");
    assert_eq!(report.status.quarantined, 0);
    let recorded = setup.recorded().await;
    assert_eq!(recorded["r-odd"].listing["durationSeconds"], "598", "the listing is stored as sent");
    assert_eq!(recorded["r-lenient"].format, None, "an object where a string was expected is ignored");
    assert_eq!(recorded["r-lenient"].size_bytes, None);
    assert_eq!(recorded["r-nul"].listing["topic"], "before\u{FFFD}after");
    let cursor = &setup.cursors().await["user"];
    assert!(cursor.last_success_at.is_some() && cursor.last_error.is_none());
    assert!(cursor.position > hours_ago(1), "the cursor moved to the end of the window");
    assert_eq!((cursor.items_listed, cursor.items_quarantined), (4, 0));
}

#[tokio::test]
async fn an_answer_without_items_does_not_move_the_cursor_and_shows_in_status_on_sqlite() {
    let upstream = StandIn::start().await;
    upstream.script(|_| Answer::text("{}"));
    let setup = Setup::new(Backend::Sqlite, &upstream, "user").await;

    let (services, report) = setup.discover().await;
    assert_eq!(report.exit, 1, "{report:?}");
    let error = report.discovery_error.clone().expect("the scope's pass failed");
    assert!(error.contains("user") && error.contains("window [") && error.contains("bad page"), "{error}");
    assert!(error.contains("`items` array") && error.contains("trackingId STANDIN_"), "{error}");
    let lists = upstream.asked().iter().filter(|a| a.is_list()).count();
    assert_eq!(lists as u32, BAD_PAGE_TRIES, "the window was listed again, a few times");
    let cursor = setup.cursors().await["user"].clone();
    assert!(cursor.position < hours_ago(47), "the cursor did not move: {}", cursor.position);
    assert!(cursor.last_success_at.is_none());
    assert!(cursor.last_error.as_deref().is_some_and(|e| e.contains("bad page") && e.contains("STANDIN_")));
    let text = app::status_text(&report.status, Utc::now());
    assert!(text.contains("last error: listing user window ["), "{text}");
    assert_eq!(metric(&services, "webex_archiver_discovery_bad_pages_total{scope=\"user\"}").await, Some(3.0));
    assert_eq!(metric(&services, "webex_archiver_discovery_last_pass_failed{scope=\"user\"}").await, Some(1.0));

    // Once the answers are pages again, the same window is listed and the cursor moves.
    let page = json!({"items": [item("r1", hours_ago(30))]});
    upstream.script(move |_| Answer::json(&page));
    let (services, report) = setup.discover().await;
    assert_eq!(report.exit, 0, "{report:?}");
    let after = setup.cursors().await["user"].clone();
    assert!(after.position > cursor.position && after.last_error.is_none());
    assert_eq!(report.status.counts[&ArchiveState::Pending], 1, "the recording older than any overlap is found");
    assert_eq!(metric(&services, "webex_archiver_discovery_last_pass_failed{scope=\"user\"}").await, Some(0.0));
}

#[tokio::test]
async fn an_item_without_an_id_is_quarantined_and_counted_and_the_other_scopes_go_on() {
    let upstream = StandIn::start().await;
    // The same answer on every pass: an item without an id is known by its text.
    let acme = json!({"items": [
        {"topic": "no id", "createTime": hours_ago(5).to_rfc3339(), "password": "S3cret"},
        item("acme-1", hours_ago(6)),
    ]});
    let other = json!({"items": [item("other-1", hours_ago(7))]});
    upstream.script(move |asked| match asked.site() {
        "acme.webex.com" => Answer::json(&acme),
        "broken.webex.com" => Answer::json(&json!({"items": "not a list"})),
        "other.webex.com" => Answer::json(&other),
        _ => Answer::text("{}").status(404),
    });
    let mut setup = Setup::new(Backend::Postgres, &upstream, "admin").await;
    setup.set("WEBEX_ARCHIVER__WEBEX__SITE_URLS", "acme.webex.com,broken.webex.com,other.webex.com");

    let (services, report) = setup.discover().await;
    let by_scope: HashMap<&str, _> = report.scopes.iter().map(|s| (s.scope.as_str(), s)).collect();
    assert!(by_scope["admin:acme.webex.com"].error.is_none(), "a quarantined item does not fail its scope");
    assert_eq!(by_scope["admin:acme.webex.com"].quarantined, 1);
    assert!(by_scope["admin:broken.webex.com"].error.as_deref().is_some_and(|e| e.contains("`items` array")));
    assert!(by_scope["admin:other.webex.com"].error.is_none(), "the other scopes go on");
    assert_eq!(report.status.counts[&ArchiveState::Pending], 2);
    let cursors = setup.cursors().await;
    assert!(cursors["admin:acme.webex.com"].last_success_at.is_some(), "the cursor moved past the quarantined item");
    assert_eq!(cursors["admin:acme.webex.com"].items_quarantined, 1);

    let status = app::status_json(&report.status);
    assert_eq!(status["quarantined"], 1);
    let entry = &status["recent_quarantine"][0];
    assert!(entry["key"].as_str().is_some_and(|k| k.starts_with("sha256:")), "{entry}");
    assert_eq!(entry["reason"], "the item has no id");
    assert!(entry["tracking_id"].as_str().is_some_and(|t| t.starts_with("STANDIN_")));
    assert!(entry["last_seen_at"].is_string());
    let text = app::status_text(&report.status, Utc::now());
    assert!(text.contains("Quarantine (1 listed item(s)") && text.contains("the item has no id"), "{text}");
    assert_eq!(metric(&services, "webex_archiver_quarantined_items").await, Some(1.0));
    assert_eq!(
        metric(&services, "webex_archiver_discovery_last_pass_failed{scope=\"admin:broken.webex.com\"}").await,
        Some(1.0)
    );
    assert_eq!(
        metric(&services, "webex_archiver_discovery_last_pass_failed{scope=\"admin:acme.webex.com\"}").await,
        Some(0.0)
    );
    assert_eq!(report.exit, 1, "sync says something was left");

    // Listed again: still one entry, seen twice, its raw text without the password.
    let (_, report) = setup.discover().await;
    assert_eq!(report.status.quarantined, 1);
    assert_eq!(report.status.recent_quarantine[0].seen_count, 2);
    let entries = setup.db.state.quarantined(&ScopeKey::admin("acme.webex.com"), None, 10).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert!(entries[0].raw.contains("no id") && !entries[0].raw.contains("S3cret"), "{}", entries[0].raw);
}

#[tokio::test]
async fn an_item_with_an_unreadable_create_time_is_recorded_from_its_details() {
    let upstream = StandIn::start().await;
    let created = hours_ago(8);
    upstream.script(move |asked| match asked.path.as_str() {
        "/v1/admin/recordings" => Answer::json(&json!({"items": [
            {"id": "r-bad", "createTime": "yesterday", "hostEmail": "h@acme.test", "topic": "kept",
             "password": "S3cret", "futureField": 1},
            {"id": "r-gone", "hostEmail": "h@acme.test"},
            item("r-good", hours_ago(9)),
        ]})),
        "/v1/recordings/r-bad" if asked.query.get("hostEmail").map(String::as_str) == Some("h@acme.test") => {
            Answer::json(&json!({
                "id": "r-bad", "createTime": created.to_rfc3339(), "topic": "kept", "sizeBytes": "5000",
                "hostEmail": "h@acme.test", "format": "MP4", "password": "S3cret",
                "temporaryDirectDownloadLinks": {"recordingDownloadLink": "https://x/nbr?ticket=SECRETTICKET"}
            }))
        }
        _ => Answer::json(&json!({"message": "not found", "trackingId": "GONE"})).status(404),
    });
    let mut setup = Setup::new(Backend::Postgres, &upstream, "admin").await;
    setup.set("WEBEX_ARCHIVER__WEBEX__SITE_URLS", "acme.webex.com");

    let (_, report) = setup.discover().await;
    assert!(report.discovery_error.is_none(), "{report:?}");
    assert_eq!(report.scopes[0].quarantined, 2);
    assert_eq!(report.scopes[0].released, 1, "r-bad was released");
    assert_eq!(report.status.quarantined, 1, "only r-gone stays quarantined");
    let gone = &report.status.recent_quarantine[0];
    assert_eq!(gone.recording_id, Some(RecordingId("r-gone".into())));
    assert_eq!(gone.reason, "the item has no createTime");
    assert!(gone.check_note.as_deref().is_some_and(|n| n.contains("404")), "{gone:?}");
    // The release is in r-bad's custody log, after its quarantine and its discovery.
    let kinds: Vec<String> =
        setup.db.state.history(&RecordingId("r-bad".into())).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["quarantined", "quarantine_released", "discovered"], "{kinds:?}");

    let recorded = setup.recorded().await;
    assert_eq!(recorded.len(), 2);
    let bad = &recorded["r-bad"];
    assert_eq!(bad.create_time, created, "the details are authoritative for createTime");
    assert_eq!((bad.size_bytes, bad.host_email.as_deref()), (Some(5000), Some("h@acme.test")));
    assert_eq!(bad.listing["topic"], "kept");
    assert_eq!(bad.listing["futureField"], 1, "the listing's other fields are kept");
    let stored = bad.listing.to_string();
    assert!(!stored.contains("SECRETTICKET") && !stored.contains("S3cret"), "{stored}");
    assert!(bad.listing.get("temporaryDirectDownloadLinks").is_none());
    let details = |id: &str| upstream.asked().iter().filter(|a| a.path == format!("/v1/recordings/{id}")).count();
    assert_eq!((details("r-bad"), details("r-gone")), (1, 1), "one details request per entry and pass");

    // Next pass: r-gone is tried again (once); r-bad, still unreadable in the listing, is
    // already recorded and needs no request.
    let (_, report) = setup.discover().await;
    assert_eq!(report.status.quarantined, 1);
    assert_eq!((details("r-bad"), details("r-gone")), (1, 2));
}

#[tokio::test]
async fn an_entry_the_current_code_reads_is_released_at_the_next_pass() {
    let upstream = StandIn::start().await;
    let setup = Setup::new(Backend::Sqlite, &upstream, "user").await;
    // Quarantined by an older version that could not read "598" as a number.
    let raw = item("r-old", hours_ago(30)).to_string().replace("\"durationSeconds\":60", "\"durationSeconds\":\"598\"");
    let entry = QuarantinedItem::new(
        ScopeKey::user(),
        Some("r-old".into()),
        "durationSeconds is not a number".into(),
        raw,
        Some("T".into()),
    );
    let lease = setup
        .db
        .state
        .acquire_cursor(&ScopeKey::user(), CursorKind::Sync, "old", Duration::from_secs(60), hours_ago(48), None)
        .await
        .unwrap();
    assert!(lease.is_some());
    let no_items: &[ListedRecording] = &[];
    setup.db.state.record_page(&ScopeKey::user(), "old", no_items, &[entry], None).await.unwrap();
    setup.db.state.release_cursor(&ScopeKey::user(), CursorKind::Sync, "old", Ok(())).await.unwrap();
    assert_eq!(setup.db.state.status(0).await.unwrap().quarantined, 1);

    let (_, report) = setup.discover().await;
    assert_eq!(report.exit, 0, "{report:?}");
    assert_eq!(report.status.quarantined, 0);
    assert_eq!(report.scopes[0].released, 1);
    let recorded = setup.recorded().await;
    assert_eq!(recorded["r-old"].listing["durationSeconds"], "598");
    assert!(upstream.asked().iter().all(|a| a.is_list()), "no details were needed");
}

#[tokio::test]
async fn loops_foreign_links_and_endless_windows_end_as_bad_pages() {
    let upstream = StandIn::start().await;
    let foreign = StandIn::start().await;
    let me = upstream.origin.clone();
    let elsewhere = foreign.url("/v1/admin/recordings?cursor=stolen");
    upstream.script(move |asked| {
        let page = |id: &str| Answer::json(&json!({"items": [item(id, hours_ago(10))]}));
        let cursor = asked.query.get("cursor").cloned().unwrap_or_default();
        match asked.site() {
            // Page 1 -> page 2 -> page 1 again.
            "loop.webex.com" if cursor.is_empty() => page("loop-1").next(format!("{me}{}&cursor=2", asked.target)),
            "loop.webex.com" => page("loop-2").next(format!("{me}{}", asked.target.replace("&cursor=2", ""))),
            "foreign.webex.com" => page("foreign-1").next(elsewhere.clone()),
            // A new next link forever.
            "endless.webex.com" => {
                let n: u32 = cursor.parse().unwrap_or(0);
                let target = asked.target.replace(&format!("&cursor={cursor}"), "");
                page(&format!("endless-{n}")).next(format!("{me}{target}&cursor={}", n + 1))
            }
            _ => page("fine-1"),
        }
    });
    let mut setup = Setup::new(Backend::Sqlite, &upstream, "admin").await;
    setup.set("WEBEX_ARCHIVER__WEBEX__SITE_URLS", "loop.webex.com,foreign.webex.com,endless.webex.com,fine.webex.com");
    setup.set("WEBEX_ARCHIVER__WEBEX__MAX_PAGES_PER_WINDOW", "3");

    let (services, report) = setup.discover().await;
    let errors: HashMap<&str, String> =
        report.scopes.iter().map(|s| (s.scope.as_str(), s.error.clone().unwrap_or_default())).collect();
    assert!(errors["admin:loop.webex.com"].contains("a loop"), "{errors:?}");
    assert!(errors["admin:foreign.webex.com"].contains("not to the API's origin"), "{errors:?}");
    assert!(errors["admin:foreign.webex.com"].contains(&foreign.origin), "it names the origin only");
    assert!(!errors["admin:foreign.webex.com"].contains("stolen"), "never the link's path or query");
    assert!(errors["admin:endless.webex.com"].contains("more than 3 pages"), "{errors:?}");
    assert!(errors["admin:fine.webex.com"].is_empty(), "{errors:?}");
    for scope in ["loop", "foreign", "endless"] {
        assert!(errors[format!("admin:{scope}.webex.com").as_str()].contains("bad page"));
    }

    assert!(foreign.asked().is_empty(), "the foreign host was never requested");
    let lists = |site: &str| upstream.asked().iter().filter(|a| a.is_list() && a.site() == site).count() as u32;
    assert_eq!(lists("loop.webex.com"), 2 * BAD_PAGE_TRIES, "two pages per try, the loop never followed");
    assert_eq!(lists("foreign.webex.com"), BAD_PAGE_TRIES);
    assert_eq!(lists("endless.webex.com"), 3, "a window too long to list is not listed again");

    let cursors = setup.cursors().await;
    for site in ["loop", "foreign", "endless"] {
        let cursor = &cursors[&format!("admin:{site}.webex.com")];
        assert!(cursor.last_success_at.is_none() && cursor.position < hours_ago(47), "{site}: the cursor stayed");
    }
    assert!(cursors["admin:fine.webex.com"].last_success_at.is_some());
    // What the pages did hold is recorded all the same (nothing read is thrown away).
    let recorded = setup.recorded().await;
    for id in ["loop-1", "loop-2", "foreign-1", "endless-0", "endless-2", "fine-1"] {
        assert!(recorded.contains_key(id), "{id}");
    }
    assert!(!recorded.contains_key("endless-3"), "page 4 was never requested");
    assert_eq!(
        metric(&services, "webex_archiver_discovery_bad_pages_total{scope=\"admin:endless.webex.com\"}").await,
        Some(1.0)
    );
}

#[tokio::test]
async fn a_long_window_slowed_by_429s_keeps_its_lease() {
    let mut config =
        SimConfig { recordings: 600, seed: 7, span: Duration::from_secs(3 * 86_400), ..SimConfig::default() };
    config.rate_limit =
        Some(RateLimit { requests_per_second: 1.0, burst: 1, retry_after_format: RetryAfterFormat::Seconds });
    let mut h = Harness::start(Backend::Postgres, Store::Local, "admin", config).await;
    h.set("WEBEX_ARCHIVER__SYNC__SINCE", "4d");
    h.set("WEBEX_ARCHIVER__SYNC__DISCOVERY_LEASE", "1s");
    let stop = CancellationToken::new();
    let services = h.services(stop.clone()).await;
    let pass = {
        let services = services.clone();
        let stop = stop.clone();
        tokio::spawn(async move { app::sync(&services, true, &stop).await })
    };

    // Another replica tries to take every scope while this one lists it.
    let state = h.db.state.clone();
    let mut stolen = Vec::new();
    let mut tries = 0u32;
    while !pass.is_finished() {
        for cursor in state.cursors().await.unwrap() {
            let listing =
                cursor.last_pass_at.is_some() && cursor.last_success_at.is_none() && cursor.last_error.is_none();
            if !listing {
                continue;
            }
            tries += 1;
            let taken = state
                .acquire_cursor(
                    &cursor.scope,
                    CursorKind::Sync,
                    "intruder",
                    Duration::from_secs(60),
                    cursor.position,
                    None,
                )
                .await
                .unwrap();
            // Taken from a pass that had not ended: the lease was lost halfway.
            if let Some(c) = taken {
                if c.last_success_at.is_none() && c.last_error.is_none() {
                    stolen.push(c.scope.0.clone());
                }
                state.release_cursor(&c.scope, CursorKind::Sync, "intruder", Ok(())).await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = pass.await.unwrap().unwrap();
    assert!(stolen.is_empty(), "another replica took over a window halfway: {stolen:?}");
    assert!(tries > 20, "the intruder tried while the windows were listed ({tries} tries)");
    assert_eq!(report.exit, 0, "{report:?}");
    let pages: u64 = report.scopes.iter().map(|s| s.pages).sum();
    assert!(pages > report.scopes.len() as u64, "windows of several pages: {pages}");
    assert!(h.sim.counters().rate_limited > 3, "the window was slowed down by 429s");
    let now = Utc::now();
    let listed = h.sim.truth().iter().filter(|r| r.status == "available" && r.visible_at <= now).count() as i64;
    assert_eq!(report.status.counts[&ArchiveState::Pending], listed, "every recording was listed");
}

#[test]
fn max_pages_per_window_must_be_at_least_one() {
    let env: BTreeMap<String, String> =
        [("WEBEX_ARCHIVER__WEBEX__MAX_PAGES_PER_WINDOW".to_string(), "0".to_string())].into();
    let error = Settings::load(&Sources { file: None, data_dir: None, env }, Needs::StateOnly).unwrap_err();
    assert_eq!(error.key, "webex.max_pages_per_window");
    let settings = settings_from_env(BTreeMap::new(), Needs::StateOnly);
    assert_eq!(settings.webex.max_pages_per_window, 10_000, "the default");
}

static EMPTY: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| json!({"items": []}));

#[tokio::test]
async fn an_item_without_an_id_is_found_again_by_listing_its_window_again() {
    // NOTE: an item whose id cannot be read can only be found again in its window's
    // listing. Once the cursor has moved past that window (beyond sync.overlap), the
    // regular sweep never lists it again: the next pass lists the window itself.
    let upstream = StandIn::start().await;
    let created = hours_ago(24 * 10);
    // The stand-in answers like Webex: the item only in a window that holds its createTime.
    let covers = move |asked: &Asked| {
        let time = |k: &str| asked.query.get(k).and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        time("from").is_some_and(|f| f <= created) && time("to").is_some_and(|t| created < t)
    };
    let broken = json!({"items": [{"topic": "the id is lost", "createTime": created.to_rfc3339()}]});
    upstream.script(move |asked| Answer::json(if covers(asked) { &broken } else { &EMPTY }));
    let mut setup = Setup::new(Backend::Sqlite, &upstream, "user").await;
    setup.set("WEBEX_ARCHIVER__SYNC__SINCE", "20d");
    setup.set("WEBEX_ARCHIVER__SYNC__OVERLAP", "1d");
    let (_, report) = setup.discover().await;
    assert_eq!(report.status.quarantined, 1);

    // Webex now sends the same recording readable; the sweep (the last day) misses it.
    let fixed = json!({"items": [item("found-again", created)]});
    upstream.script(move |asked| Answer::json(if covers(asked) { &fixed } else { &EMPTY }));
    let (_, report) = setup.discover().await;
    assert_eq!(report.status.quarantined, 0, "{:?}", report.status.recent_quarantine);
    assert_eq!(report.status.counts[&ArchiveState::Pending], 1, "{report:?}");
    assert!(setup.recorded().await.contains_key("found-again"), "the recording was recorded");
    let scope = report.scopes.iter().find(|s| s.scope == "user").unwrap();
    assert_eq!(scope.released, 1);
}

// --- Many sites: concurrency, a site that hangs or fails, the shared gate -----------------

/// A simulator with `sites` sites (`s0.webex.com` the default), `recordings` recordings
/// produced within the last day (one window per site), and an archiver that lists up to
/// `concurrency` of them at once, discovery only (`Harness::services`), without deletion
/// sweeps unless a test turns them on.
async fn many_sites(sites: usize, recordings: usize, concurrency: usize) -> Harness {
    let config = SimConfig {
        recordings,
        seed: 16,
        span: Duration::from_secs(86_400),
        sites: (0..sites)
            .map(|i| webex_archiver::sim::SiteConfig { url: format!("s{i}.webex.com"), default: i == 0 })
            .collect(),
        deleted_fraction: 0.0,
        ..SimConfig::default()
    };
    let mut h = Harness::start(Backend::Postgres, Store::Local, "admin", config).await;
    h.set("WEBEX_ARCHIVER__SYNC__SINCE", "2d");
    h.set("WEBEX_ARCHIVER__SYNC__SITE_CONCURRENCY", &concurrency.to_string());
    h.set("WEBEX_ARCHIVER__COMPLIANCE__DELETION_SWEEP", "0s");
    h
}

/// A rule that makes the admin listings of `sites` (every site's when empty) hang until
/// the fault rules change.
fn hang<'a>(sites: impl IntoIterator<Item = &'a str>) -> FaultRule {
    FaultRule::new(FaultAction::Latency { duration: Duration::from_secs(3600) })
        .endpoint(FaultEndpoint::AdminList)
        .sites(sites)
}

/// Sets the simulator's `faults`, then runs `sync --discover-only` in a task of its own,
/// stopped by the token returned (the client's own stop, `abort`, never fires).
async fn discover_with(
    h: &Harness,
    faults: Vec<FaultRule>,
) -> (CancellationToken, tokio::task::JoinHandle<SyncReport>) {
    h.sim.set_faults(faults);
    let stop = CancellationToken::new();
    let services = h.services(CancellationToken::new()).await;
    let pass = {
        let stop = stop.clone();
        tokio::spawn(async move { app::sync(&services, true, &stop).await.expect("sync runs") })
    };
    (stop, pass)
}

/// The ids of the recordings recorded so far (claimed, so call it once, at the end).
async fn recorded_ids(h: &Harness) -> HashSet<String> {
    let claims = h.db.state.claim_due("test", Duration::from_secs(60), 100_000).await.unwrap();
    claims.into_iter().map(|c| c.id.0).collect()
}

/// The ids of the recordings the admin listing of `site` shows.
fn listed_on(h: &Harness, site: &str) -> HashSet<String> {
    let now = Utc::now();
    h.sim
        .truth_without_digests()
        .into_iter()
        .filter(|r| r.site_url == site && r.status == "available" && r.visible_at <= now)
        .map(|r| r.id)
        .collect()
}

#[tokio::test]
async fn a_site_that_hangs_or_fails_does_not_hold_back_the_other_sites_cursors() {
    let h = many_sites(8, 400, 3).await;
    let sites = h.sim.sites();
    let (hanging, failing) = (sites[0].clone(), sites[1].clone());
    // The first site's listing hangs (until the rules change); the second one's is refused.
    let refuse = FaultRule::new(FaultAction::ApiError { status: 403 }).endpoint(FaultEndpoint::AdminList);
    let (_stop, pass) = discover_with(&h, vec![hang([hanging.as_str()]), refuse.sites([failing.clone()])]).await;

    // While the first site's listing hangs, every other site is listed and its cursor moves.
    let state = h.db.state.clone();
    let others: Vec<String> = sites[2..].iter().map(|s| format!("admin:{s}")).collect();
    let cursors = wait_for("the other sites' cursors to move", Duration::from_secs(60), || {
        let (state, others) = (state.clone(), others.clone());
        async move {
            let cursors: HashMap<String, Cursor> =
                state.cursors().await.unwrap().into_iter().map(|c| (c.scope.0.clone(), c)).collect();
            others.iter().all(|s| cursors.get(s).is_some_and(|c| c.last_success_at.is_some())).then_some(cursors)
        }
    })
    .await;
    assert!(!pass.is_finished(), "the pass still waits for the hanging site");
    assert_eq!(h.sim.counters().listings_in_flight, 1, "only the hanging site's listing is in flight");
    let hanging_cursor = &cursors[&format!("admin:{hanging}")];
    assert!(hanging_cursor.last_success_at.is_none(), "the hanging site's cursor has not moved");
    let failed = &cursors[&format!("admin:{failing}")];
    assert!(failed.last_error.as_deref().is_some_and(|e| e.contains("403")), "{failed:?}");
    for scope in &others {
        assert!(cursors[scope].position > hours_ago(1), "{scope}: the cursor moved to the end of the pass");
    }

    // The hanging listing is answered: the pass ends, its reports in the order of the sites.
    h.sim.clear_faults();
    let report = tokio::time::timeout(Duration::from_secs(60), pass).await.expect("the pass ends").unwrap();
    let order: Vec<String> = report.scopes.iter().map(|s| s.scope.clone()).collect();
    assert_eq!(order, sites.iter().map(|s| format!("admin:{s}")).collect::<Vec<_>>(), "reports in a stable order");
    for scope in &report.scopes {
        let failing_one = scope.scope == format!("admin:{failing}");
        assert_eq!(scope.error.is_some(), failing_one, "{scope:?}");
    }
    let recorded = recorded_ids(&h).await;
    for site in &sites {
        let listed = listed_on(&h, site);
        assert!(!listed.is_empty(), "{site} has recordings");
        if *site == failing {
            assert!(listed.is_disjoint(&recorded), "{site} was refused: nothing of it is recorded");
        } else {
            assert!(listed.is_subset(&recorded), "every recording of {site} is recorded");
        }
    }
}

#[tokio::test]
async fn no_more_than_site_concurrency_sites_are_listed_at_once() {
    for concurrency in [1usize, 3] {
        let h = many_sites(6, 120, concurrency).await;
        // Every listing hangs until the rules change: the sites listed at once pile up.
        let (_stop, pass) = discover_with(&h, vec![hang([])]).await;
        let sim = &h.sim;
        wait_for("the first listings to hang", Duration::from_secs(60), || async move {
            (sim.counters().listings_in_flight == concurrency as u64).then_some(())
        })
        .await;
        // Only the scopes being listed have started (a cursor row each).
        assert_eq!(h.db.state.cursors().await.unwrap().len(), concurrency, "scopes started");
        h.sim.clear_faults();
        let report = tokio::time::timeout(Duration::from_secs(60), pass).await.expect("the pass ends").unwrap();
        assert_eq!(report.scopes.len(), 6);
        assert!(report.scopes.iter().all(|s| s.error.is_none() && s.windows == 1), "{:?}", report.scopes);
        // Counted by the simulator: never more listings at once than the setting.
        assert_eq!(h.sim.counters().max_listings_in_flight, concurrency as u64, "site_concurrency = {concurrency}");
        let recorded = recorded_ids(&h).await;
        for site in h.sim.sites() {
            assert!(listed_on(&h, &site).is_subset(&recorded), "{site}");
        }
    }
}

#[tokio::test]
async fn shutdown_stops_a_pass_whose_site_hangs_and_releases_its_lease() {
    let h = many_sites(4, 80, 2).await;
    let hanging = h.sim.sites()[0].clone();
    // The client's own stop (`abort`) never fires here: only the pass's does.
    let (stop, pass) = discover_with(&h, vec![hang([hanging.as_str()])]).await;
    let state = h.db.state.clone();
    wait_for("the other sites to be listed", Duration::from_secs(60), || {
        let state = state.clone();
        async move {
            (state.cursors().await.unwrap().iter().filter(|c| c.last_success_at.is_some()).count() == 3).then_some(())
        }
    })
    .await;
    assert_eq!(h.sim.counters().listings_in_flight, 1, "the hanging site's listing is in flight");

    stop.cancel();
    let report = tokio::time::timeout(Duration::from_secs(10), pass).await.expect("shutdown ends the pass").unwrap();
    assert!(report.discovery_error.as_deref().is_some_and(|e| e.contains("shutdown")), "{report:?}");
    // The hanging site's lease was released: another replica takes the scope at once.
    let scope = ScopeKey(format!("admin:{hanging}"));
    let taken =
        h.db.state
            .acquire_cursor(&scope, CursorKind::Sync, "another", Duration::from_secs(60), hours_ago(48), None)
            .await;
    assert!(taken.unwrap().is_some(), "the lease of the interrupted scope is free");
}

#[tokio::test]
async fn sites_listed_at_once_keep_to_the_request_ceiling_and_one_retry_after_pause() {
    // The ceiling: the simulator allows 6 requests/s (bursts of 2); four sites listed at
    // once without the client's ceiling of 4/s would send their first pages together.
    let h = many_sites(4, 40, 4).await;
    h.sim.set_rate_limit(Some(RateLimit {
        requests_per_second: 6.0,
        burst: 2,
        retry_after_format: RetryAfterFormat::Seconds,
    }));
    let mut h = h;
    h.set("WEBEX_ARCHIVER__WEBEX__MAX_REQUESTS_PER_SECOND", "4");
    let stop = CancellationToken::new();
    let services = h.services(CancellationToken::new()).await;
    let report = app::sync(&services, true, &stop).await.unwrap();
    assert!(report.scopes.iter().all(|s| s.error.is_none()), "{:?}", report.scopes);
    let counters = h.sim.counters();
    assert_eq!(counters.rate_limited, 0, "no request beyond the ceiling: {counters:?}");

    // The pause: a 429 to the first listing pauses every site's (the sites are named, so
    // the first request is a listing, among the four sent at once).
    let mut h = many_sites(6, 60, 4).await;
    h.set("WEBEX_ARCHIVER__WEBEX__SITE_URLS", &h.sim.sites().join(","));
    h.sim.burst_429(Burst429 {
        requests: Some(1),
        duration: None,
        retry_after: 1,
        retry_after_format: RetryAfterFormat::Seconds,
        retry_after_raw: None,
    });
    let services = h.services(CancellationToken::new()).await;
    let report = app::sync(&services, true, &stop).await.unwrap();
    assert!(report.scopes.iter().all(|s| s.error.is_none()), "{:?}", report.scopes);
    let counters = h.sim.counters();
    assert_eq!(counters.requests_to(Endpoint::Sites), 0);
    assert!(counters.rate_limited >= 1, "{counters:?}");
    assert_eq!(counters.violations, 0, "no site sent a request during the pause: {counters:?}");
    let recorded = recorded_ids(&h).await;
    for site in h.sim.sites() {
        assert!(listed_on(&h, &site).is_subset(&recorded), "{site}");
    }
}
