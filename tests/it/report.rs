//! The attestation report (`report`): per-day counts, rows and gaps of a state built
//! through the real `StateStore` API on Postgres and SQLite, its exit status, the CSV
//! form read back, escaping of what came from the network, and the HTML page rendered by
//! headless Chromium showing exactly the JSON form's numbers.
//!
//! NOTE: deletions at the source are set with plain SQL: the deletion sweep's
//! `StateStore` method (issue 14, point 1) is not on main yet.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use webex_archiver::state::{
    ArchivedRecord, CursorKind, ListedRecording, Outcome, QuarantinedItem, RecordingId, ReleasedHow, ScopeKey,
    SourceStatus, State,
};

use crate::helpers::{Backend, TestState};

const LEASE: Duration = Duration::from_secs(60);
/// An id as hostile as the network can send: markup, quotes, a comma, a newline.
const HOSTILE_ID: &str = "<script>alert(\"x\")</script>,'q'\nz";

fn at(d: u32, h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, d, h, m, s).unwrap()
}

fn listed(id: &str, create_time: DateTime<Utc>) -> ListedRecording {
    ListedRecording {
        id: RecordingId(id.into()),
        scope: ScopeKey::admin("acme.webex.com"),
        site_url: Some("acme.webex.com".into()),
        host_email: Some(format!("host-{}@acme.example", id.len())),
        meeting_id: None,
        topic: Some("t".into()),
        format: Some("MP4".into()),
        create_time,
        size_bytes: Some(10),
        listing: json!({"id": id}),
        listed_in: Default::default(),
    }
}

fn archived(id: &str, files: &[(&str, u64)]) -> Outcome {
    let dir = format!("2026/03/{}", id.len());
    let files: Vec<Value> = files
        .iter()
        .map(|(kind, size)| {
            json!({"kind": kind, "key": format!("{dir}/{kind}.bin"), "sha256": format!("{:064x}", size),
                   "size": size, "content_type": "application/octet-stream"})
        })
        .collect();
    Outcome::Archived(ArchivedRecord {
        object_prefix: dir.clone(),
        media_key: files[0]["key"].as_str().unwrap().to_owned(),
        metadata_key: format!("{dir}/metadata.json"),
        sha256: files[0]["sha256"].as_str().unwrap().to_owned(),
        bytes: files[0]["size"].as_i64().unwrap(),
        files: Value::Array(files),
        size_mismatch: false,
        archived_at: at(20, 12, 0, 0),
        metadata_version: None,
        retention: None,
        metadata_retain_until: None,
    })
}

/// The listing items of a deletion sweep that saw `ids` with `status` at the source.
fn seen_at_source(ids: &[(&str, DateTime<Utc>)], status: SourceStatus) -> Vec<ListedRecording> {
    ids.iter()
        .map(|(id, create_time)| {
            let mut item = listed(id, *create_time);
            item.listed_in.status = Some(status);
            item
        })
        .collect()
}

/// Claims every due recording and ends each as `outcomes` says.
async fn finish_all(state: &State, outcomes: &BTreeMap<&str, Outcome>) {
    let claims = state.claim_due("replica-1", LEASE, 100).await.unwrap();
    assert_eq!(claims.len(), outcomes.len());
    for claim in claims {
        let outcome = &outcomes[claim.id.0.as_str()];
        assert!(state.finish(&claim.id, &claim.token, outcome).await.unwrap());
    }
}

/// March 2026, as a compliance team would meet it: archived recordings (one deleted and
/// one purged at the source since), one not downloadable, one failed, one waiting, one
/// lost at the source, one whose id is hostile markup, two unreadable listing items,
/// one released quarantine entry, and recordings just outside the period. The period
/// under test is March 1 to 4 (exclusive); March 10 has only archived recordings.
async fn march(backend: Backend) -> TestState {
    let s = TestState::new(backend).await;
    let state = &s.state;
    let scope = ScopeKey::admin("acme.webex.com");
    let first = [
        listed("a1", at(1, 0, 0, 0)),
        listed("a2", at(1, 23, 59, 59)),
        listed("del", at(1, 9, 0, 0)),
        listed("nd", at(2, 8, 0, 0)),
        listed("f", at(2, 9, 30, 0)),
        listed(HOSTILE_ID, at(2, 11, 0, 0)),
        listed("z", at(10, 9, 0, 0)),
        listed("lost", at(3, 13, 0, 0)),
    ];
    state.record_page(&scope, "o", &first, &[], None).await.unwrap();
    let outcomes = BTreeMap::from([
        ("a1", archived("a1", &[("recording", 1000), ("audio", 200), ("transcript", 30)])),
        ("a2", archived("a2", &[("recording", 4000)])),
        ("del", archived("del", &[("recording", 7)])),
        ("nd", Outcome::NotDownloadable { reason: "prevent downloading".into() }),
        ("f", Outcome::Failed { reason: "http_4xx".into(), message: "gone".into() }),
        (HOSTILE_ID, archived(HOSTILE_ID, &[("recording", 50)])),
        ("z", archived("z", &[("recording", 60)])),
        ("lost", Outcome::Failed { reason: "gone".into(), message: "Webex answered 404".into() }),
    ]);
    finish_all(state, &outcomes).await;
    let later = [
        listed("p", at(3, 12, 0, 0)),
        listed("before", at(1, 0, 0, 0) - chrono::Duration::milliseconds(1)),
        listed("after", at(4, 0, 0, 0)),
    ];
    let unreadable_no_id = QuarantinedItem::new(scope.clone(), None, "no id".into(), r#"{"topic":"?"}"#.into(), None)
        .listed_in(at(1, 0, 0, 0) - chrono::Duration::days(3), at(5, 0, 0, 0));
    let unreadable_time = QuarantinedItem::new(
        scope.clone(),
        Some("qt".into()),
        "createTime is not a time".into(),
        r#"{"id":"qt","createTime":"soon"}"#.into(),
        None,
    )
    .listed_in(at(2, 0, 0, 0), at(9, 0, 0, 0));
    let released = QuarantinedItem::new(scope.clone(), Some("gone".into()), "x".into(), "{}".into(), None)
        .listed_in(at(1, 0, 0, 0), at(8, 0, 0, 0));
    state.record_page(&scope, "o", &later, &[unreadable_no_id, unreadable_time, released.clone()], None).await.unwrap();
    state.release_quarantined(&released.key, None, ReleasedHow::Relisted).await.unwrap();
    // Discovery has listed up to March 3, noon.
    let cursor = state.acquire_cursor(&scope, CursorKind::Sync, "o", LEASE, at(3, 12, 0, 0), None).await.unwrap();
    assert!(cursor.is_some());
    // The deletion sweep sees two archived recordings in the recycle bin (one of them
    // purged since) and the one that failed because Webex no longer had it.
    let deleted = [("del", at(1, 9, 0, 0)), ("a2", at(1, 23, 59, 59)), ("lost", at(3, 13, 0, 0))];
    state.record_page(&scope, "o", &seen_at_source(&deleted, SourceStatus::Deleted), &[], None).await.unwrap();
    let purged = [("del", at(1, 9, 0, 0)), ("lost", at(3, 13, 0, 0))];
    state.record_page(&scope, "o", &seen_at_source(&purged, SourceStatus::Purged), &[], None).await.unwrap();
    s
}

fn binary(url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_webex-archiver"));
    command.env_remove("RUST_LOG").env("WEBEX_ARCHIVER__DATABASE__URL", url);
    command
}

fn report_of(url: &str, args: &[&str]) -> Output {
    binary(url).arg("report").args(args).output().unwrap()
}

fn json_report(url: &str, from: &str, to: &str) -> (Value, Option<i32>) {
    let out = report_of(url, &["--from", from, "--to", to, "--format", "json"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}\nstderr: {}", String::from_utf8_lossy(&out.stderr)));
    (value, out.status.code())
}

fn day(date: &str, counts: [i64; 10]) -> Value {
    let [listed, archived, bytes, nd, failed, quarantined, deleted, purged, lost, hold] = counts;
    json!({"date": date, "listed": listed, "archived": archived, "bytes": bytes, "not_downloadable": nd,
           "failed": failed, "quarantined": quarantined, "deleted_at_source": deleted,
           "purged_at_source": purged, "lost_at_source": lost, "under_hold": hold})
}

async fn the_json_report_counts_each_day_lists_each_recording_and_names_each_gap(backend: Backend) {
    let built_before = Utc::now() - chrono::Duration::seconds(1);
    let s = march(backend).await;
    let (report, code) = json_report(&s.url, "2026-03-01", "2026-03-04");
    assert_eq!(code, Some(1), "the period has gaps: {report}");
    let keys: BTreeSet<&str> = report.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["from", "to", "days", "recordings", "gaps"]));
    let text = String::from_utf8(report_of(&s.url, &["--from", "2026-03-01", "--to", "2026-03-04"]).stdout).unwrap();
    let at = |key: &str| text.find(&format!("\"{key}\":")).unwrap();
    assert!(
        at("from") < at("to")
            && at("to") < at("days")
            && at("days") < at("recordings")
            && at("recordings") < at("gaps"),
        "the members in the documented order: {text}"
    );
    // The opening line, 3 days, a line between, 8 recordings, a line between, 4 gaps, the end.
    assert_eq!(text.lines().count(), 1 + 3 + 1 + 8 + 1 + 4 + 1, "one line per day, recording and gap: {text}");
    assert_eq!(report["from"], "2026-03-01T00:00:00Z");
    assert_eq!(report["to"], "2026-03-04T00:00:00Z");
    assert_eq!(
        report["days"],
        json!([
            //            listed archived bytes nd failed quar del purged lost hold
            day("2026-03-01", [3, 3, 1230 + 4000 + 7, 0, 0, 1, 2, 1, 0, 0]),
            day("2026-03-02", [3, 1, 50, 1, 1, 1, 0, 0, 0, 0]),
            day("2026-03-03", [2, 0, 0, 0, 0, 0, 1, 1, 1, 0]),
        ])
    );
    let rows = report["recordings"].as_array().unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a1", "del", "a2", "nd", "f", HOSTILE_ID, "p", "lost"], "by createTime, in the period only");
    let a1 = &rows[0];
    assert_eq!(a1["state"], "archived");
    assert_eq!(a1["create_time"], "2026-03-01T00:00:00Z");
    assert_eq!(a1["site_url"], "acme.webex.com");
    assert_eq!(a1["host_email"], "host-2@acme.example");
    assert_eq!(a1["archived_at"], "2026-03-20T12:00:00Z");
    assert_eq!(a1["retained_until"], Value::Null);
    assert_eq!(a1["legal_hold"], false);
    assert_eq!(
        a1["files"],
        json!([
            {"kind": "recording", "key": "2026/03/2/recording.bin", "sha256": format!("{:064x}", 1000), "size": 1000},
            {"kind": "audio", "key": "2026/03/2/audio.bin", "sha256": format!("{:064x}", 200), "size": 200},
            {"kind": "transcript", "key": "2026/03/2/transcript.bin", "sha256": format!("{:064x}", 30), "size": 30},
            {"kind": "metadata", "key": "2026/03/2/metadata.json", "sha256": null, "size": null},
        ])
    );
    let del = &rows[1];
    let seen = |v: &Value| v.as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc));
    let (deleted, purged) = (seen(&del["deleted_at_source"]).unwrap(), seen(&del["purged_at_source"]).unwrap());
    assert!(built_before <= deleted && deleted <= purged && purged <= Utc::now(), "when the sweep saw it: {del}");
    assert_eq!(rows[2]["purged_at_source"], Value::Null, "a2 is deleted, not purged");
    assert_eq!(del["state"], "archived", "a deletion at the source changes nothing in the archive");
    let lost = &rows[7];
    assert_eq!(lost["state"], "lost_at_source");
    assert_eq!(lost["files"], json!([]));
    assert_eq!(lost["archived_at"], Value::Null);
    let f = &rows[4];
    assert_eq!((f["state"].as_str(), f["files"].clone()), (Some("failed"), json!([])));
    let quarantine_key = webex_archiver::state::QuarantineKey::for_item(None, r#"{"topic":"?"}"#).0;
    let mut quarantined = vec!["qt".to_owned(), quarantine_key];
    quarantined.sort();
    let mut gaps = vec!["f".to_owned(), "p".to_owned()];
    gaps.extend(quarantined);
    assert_eq!(report["gaps"], json!(gaps), "failed and waiting recordings, then the open quarantine entries");

    // A period where everything is archived has no gap, and says so with exit 0.
    let (clean, code) = json_report(&s.url, "2026-03-10", "2026-03-11T00:00:00Z");
    assert_eq!(code, Some(0), "{clean}");
    assert_eq!(clean["gaps"], json!([]));
    assert_eq!(clean["days"], json!([day("2026-03-10", [1, 1, 60, 0, 0, 0, 0, 0, 0, 0])]));
    // Every day of the range appears, zeros included; an RFC 3339 bound cuts inside a day.
    let (partial, _) = json_report(&s.url, "2026-03-01T09:00:00+00:00", "2026-03-09");
    let days: Vec<&str> = partial["days"].as_array().unwrap().iter().map(|d| d["date"].as_str().unwrap()).collect();
    assert_eq!(
        days,
        [
            "2026-03-01",
            "2026-03-02",
            "2026-03-03",
            "2026-03-04",
            "2026-03-05",
            "2026-03-06",
            "2026-03-07",
            "2026-03-08"
        ]
    );
    assert_eq!(partial["days"][0]["listed"], 2, "a1 (00:00) is before 09:00; del (09:00) and a2 are in");
    assert_eq!(partial["days"][3], day("2026-03-04", [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(partial["days"][5]["listed"], 0);
}

#[tokio::test]
async fn json_report_on_postgres() {
    the_json_report_counts_each_day_lists_each_recording_and_names_each_gap(Backend::Postgres).await;
}

#[tokio::test]
async fn json_report_on_sqlite() {
    the_json_report_counts_each_day_lists_each_recording_and_names_each_gap(Backend::Sqlite).await;
}

async fn the_csv_report_has_the_json_rows_and_quotes_what_the_network_sent(backend: Backend) {
    let s = march(backend).await;
    let (json, _) = json_report(&s.url, "2026-03-01", "2026-03-04");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("march.csv");
    let out =
        report_of(&s.url, &["--from", "2026-03-01", "--to", "2026-03-04", "--format", "csv", "--out"]).status.code();
    assert_eq!(out, Some(2), "--out needs a file");
    let out = binary(&s.url)
        .args(["report", "--from", "2026-03-01", "--to", "2026-03-04", "--format", "csv", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "the report went to the file");
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "id",
            "state",
            "create_time",
            "site_url",
            "host_email",
            "recording_key",
            "recording_sha256",
            "recording_size",
            "audio_key",
            "audio_sha256",
            "audio_size",
            "transcript_key",
            "transcript_sha256",
            "transcript_size",
            "metadata_key",
            "archived_at",
            "deleted_at_source",
            "purged_at_source",
            "retained_until",
            "legal_hold",
        ]
    );
    let rows: Vec<BTreeMap<String, String>> = reader.deserialize().map(|r| r.unwrap()).collect();
    let expected = json["recordings"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len());
    let text =
        |v: &Value| v.as_str().map(str::to_owned).or_else(|| v.as_u64().map(|n| n.to_string())).unwrap_or_default();
    for (row, want) in rows.iter().zip(expected) {
        for field in [
            "id",
            "state",
            "create_time",
            "site_url",
            "host_email",
            "archived_at",
            "deleted_at_source",
            "purged_at_source",
            "retained_until",
        ] {
            assert_eq!(row[field], text(&want[field]), "{field} of {}", want["id"]);
        }
        assert_eq!(row["legal_hold"], "false");
        let files = want["files"].as_array().unwrap();
        for kind in ["recording", "audio", "transcript"] {
            let file = files.iter().find(|f| f["kind"] == kind);
            for what in ["key", "sha256", "size"] {
                assert_eq!(row[&format!("{kind}_{what}")], file.map(|f| text(&f[what])).unwrap_or_default());
            }
        }
        let metadata = files.iter().find(|f| f["kind"] == "metadata");
        assert_eq!(row["metadata_key"], metadata.map(|f| text(&f["key"])).unwrap_or_default());
    }
    assert!(rows.iter().any(|r| r["id"] == HOSTILE_ID), "the hostile id reads back whole");
    let raw = std::fs::read_to_string(&path).unwrap();
    assert!(raw.contains("\"<script>alert(\"\"x\"\")</script>,'q'\nz\""), "quoted as RFC 4180 says: {raw}");
}

#[tokio::test]
async fn csv_report_on_postgres() {
    the_csv_report_has_the_json_rows_and_quotes_what_the_network_sent(Backend::Postgres).await;
}

#[tokio::test]
async fn csv_report_on_sqlite() {
    the_csv_report_has_the_json_rows_and_quotes_what_the_network_sent(Backend::Sqlite).await;
}

#[tokio::test]
async fn bad_periods_are_refused_with_one_message_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    for (from, to, says) in [
        ("2026-03-04", "2026-03-01", "the period is empty: the start must be before the end"),
        ("2026-03-01", "2026-03-01", "the period is empty"),
        ("1026-03-01", "2026-03-01", "a report covers at most 36525"),
        ("March", "2026-03-01", "\"March\" is neither a day"),
        ("2026-03-01", "2026-02-30", "is neither a day"),
    ] {
        let out = report_of(&url, &["--from", from, "--to", to]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{from} {to}: {stderr}");
        assert!(stderr.contains(says), "{from} {to}: {stderr}");
        assert_eq!(stderr.matches("error:").count(), 1, "one message: {stderr}");
        assert!(out.stdout.is_empty());
    }
    assert!(!dir.path().join("state.db").exists(), "arguments are checked before the database is opened");
}

// --- the HTML page, rendered ---

/// The headless Chromium the tests render with (scripts/test installs Debian's
/// `chromium` and exports its path).
fn chromium() -> String {
    std::env::var("WA_TEST_CHROMIUM").unwrap_or_else(|_| {
        panic!("WA_TEST_CHROMIUM is not set: run the tests through scripts/test, which installs chromium")
    })
}

/// The DOM as Chromium built it from `page`, serialised.
fn rendered_dom(page: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium())
        .args(["--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-background-networking"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// An element of a parsed page: its name, attributes and text.
#[derive(Debug)]
struct Element {
    name: String,
    attributes: BTreeMap<String, String>,
    text: String,
}

fn elements(html: &str) -> Vec<Element> {
    use html5ever::tendril::TendrilSink as _;
    use markup5ever_rcdom::{Handle, NodeData, RcDom};
    fn text_of(node: &Handle, out: &mut String) {
        match &node.data {
            NodeData::Text { contents } => out.push_str(&contents.borrow()),
            _ => node.children.borrow().iter().for_each(|c| text_of(c, out)),
        }
    }
    fn walk(node: &Handle, out: &mut Vec<Element>) {
        if let NodeData::Element { name, attrs, .. } = &node.data {
            let mut text = String::new();
            text_of(node, &mut text);
            out.push(Element {
                name: name.local.to_string(),
                attributes: attrs.borrow().iter().map(|a| (a.name.local.to_string(), a.value.to_string())).collect(),
                text,
            });
        }
        node.children.borrow().iter().for_each(|c| walk(c, out));
    }
    let dom = html5ever::parse_document(RcDom::default(), Default::default()).one(html);
    let mut out = Vec::new();
    walk(&dom.document, &mut out);
    out
}

fn number(text: &str) -> i64 {
    text.trim().replace(',', "").parse().unwrap_or_else(|_| panic!("{text:?} is not a number"))
}

async fn the_rendered_page_shows_the_json_numbers(backend: Backend, from: &str, to: &str) {
    let s = march(backend).await;
    let (json, code) = json_report(&s.url, from, to);
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let out = binary(&s.url)
        .args(["report", "--from", from, "--to", to, "--format", "html", "--out"])
        .arg(&page)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), code, "the same exit status as the JSON form");
    let source = std::fs::read_to_string(&page).unwrap();
    let dom = rendered_dom(&page);
    let elements = elements(&dom);

    // Nothing runs, nothing is fetched.
    for e in &elements {
        assert_ne!(e.name, "script", "no script");
        assert_ne!(e.name, "link", "no linked stylesheet or icon");
        for attribute in ["src", "href", "srcset", "action", "poster", "data"] {
            assert!(!e.attributes.contains_key(attribute), "<{} {attribute}=...>: nothing is fetched", e.name);
        }
    }
    let style: String = elements.iter().filter(|e| e.name == "style").map(|e| e.text.as_str()).collect();
    assert!(!style.contains("url(") && !style.contains("@import"), "the stylesheet fetches nothing");
    assert!(!source.contains("<script"), "the hostile id is escaped, not markup");
    assert!(!dom.contains("<script"), "and Chromium built no script from it");

    // The listing has not reached the end of any period tested here: the page says so.
    assert!(dom.contains("Listing not complete for this period"), "{dom}");
    assert!(dom.contains("admin:acme.webex.com</code> up to <span class=\"nowrap\">2026-03-03 12:00:00 UTC"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "warning: recordings of the period may be missing from the report: admin:acme.webex.com \
        is listed only up to 2026-03-03 12:00:00 UTC"
        ),
        "{stderr}"
    );

    // Every day's numbers equal the JSON form's.
    let mut shown: BTreeMap<(String, String), i64> = BTreeMap::new();
    for e in elements.iter().filter(|e| e.attributes.contains_key("data-day")) {
        let key = (e.attributes["data-day"].clone(), e.attributes["data-field"].clone());
        let value = number(&e.attributes["data-value"]);
        if key.1 != "bytes" {
            assert_eq!(number(&e.text), value, "the visible text of {key:?}");
        }
        assert!(shown.insert(key.clone(), value).is_none(), "{key:?} shown once");
    }
    let days = json["days"].as_array().unwrap();
    let fields = [
        "listed",
        "archived",
        "bytes",
        "not_downloadable",
        "failed",
        "quarantined",
        "deleted_at_source",
        "purged_at_source",
        "lost_at_source",
        "under_hold",
    ];
    let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
    for day in days {
        let date = day["date"].as_str().unwrap();
        for field in fields {
            let want = day[field].as_i64().unwrap();
            assert_eq!(shown.remove(&(date.to_owned(), field.to_owned())), Some(want), "{date} {field}");
            *totals.entry(field).or_default() += want;
        }
        let gaps = day["listed"].as_i64().unwrap()
            - day["archived"].as_i64().unwrap()
            - day["not_downloadable"].as_i64().unwrap()
            - day["lost_at_source"].as_i64().unwrap()
            + day["quarantined"].as_i64().unwrap();
        assert_eq!(shown.remove(&(date.to_owned(), "gaps".to_owned())), Some(gaps), "{date} gaps");
    }
    assert!(shown.is_empty(), "no day the JSON form does not have: {shown:?}");
    // The totals, wherever they are shown.
    let gaps = json["gaps"].as_array().unwrap();
    totals.insert("gaps", gaps.len() as i64);
    let mut seen = BTreeSet::new();
    for e in elements.iter().filter(|e| e.attributes.contains_key("data-total")) {
        let field = e.attributes["data-total"].as_str();
        let value = number(&e.attributes["data-value"]);
        assert_eq!(Some(&value), totals.get(field), "total {field}");
        seen.insert(field.to_owned());
    }
    assert_eq!(seen, totals.keys().map(|k| k.to_string()).collect(), "every total is shown");
    // Each gap has its row, first on the page; the recordings follow.
    let gap_rows: Vec<&str> =
        elements.iter().filter_map(|e| e.attributes.get("data-gap")).map(String::as_str).collect();
    let want: Vec<&str> = gaps.iter().map(|g| g.as_str().unwrap()).collect();
    assert_eq!(gap_rows, want, "the gaps, in the JSON form's order");
    let recording_rows: Vec<&str> =
        elements.iter().filter_map(|e| e.attributes.get("data-recording")).map(String::as_str).collect();
    let listed: Vec<&str> = json["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .filter(|id| !want.contains(id))
        .collect();
    assert_eq!(recording_rows, listed, "every other recording of the period, by createTime");
    if gaps.is_empty() {
        assert!(elements.iter().any(|e| e.text.trim() == "No gaps."), "a plain statement");
    }
}

#[tokio::test]
async fn a_page_of_a_period_the_listing_has_passed_has_no_caution_and_one_without_any_listing_has_one() {
    let s = march(Backend::Sqlite).await;
    let page = |from: &str, to: &str| {
        let out = report_of(&s.url, &["--from", from, "--to", to, "--format", "html"]);
        (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let (html, stderr) = page("2026-03-01", "2026-03-03T12:00:00Z");
    assert!(!html.contains("Listing not"), "listed up to the end of the period");
    assert!(!stderr.contains("warning"), "{stderr}");
    let empty = TestState::new(Backend::Sqlite).await;
    let out = report_of(&empty.url, &["--from", "2026-03-01", "--to", "2026-03-02", "--format", "html"]);
    let html = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "no gap in an empty database");
    assert!(html.contains("Listing not started") && html.contains("No gaps"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no discovery pass has run"));
}

#[tokio::test]
async fn the_html_page_with_gaps_shows_the_json_numbers_in_chromium_on_postgres() {
    the_rendered_page_shows_the_json_numbers(Backend::Postgres, "2026-03-01", "2026-03-04").await;
}

#[tokio::test]
async fn the_html_page_of_a_month_shows_the_json_numbers_in_chromium_on_sqlite() {
    the_rendered_page_shows_the_json_numbers(Backend::Sqlite, "2026-02-15", "2026-04-01").await;
}

#[tokio::test]
async fn the_html_page_without_gaps_says_so_in_chromium() {
    the_rendered_page_shows_the_json_numbers(Backend::Sqlite, "2026-03-10", "2026-03-11").await;
}

#[tokio::test]
async fn a_page_of_more_archived_recordings_than_it_lists_counts_them_and_says_so() {
    let s = TestState::new(Backend::Postgres).await;
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(&s.url).await.unwrap();
    // One more archived recording than the page lists one by one (10,000), and one
    // not downloadable.
    sqlx::query(
        "INSERT INTO recordings (id, scope, create_time, listing, state, media_key, metadata_key, sha256, bytes, \
             files, archived_at) \
         SELECT 'bulk-' || i, 'user', timestamptz '2026-05-01 00:00:00+00' + i * interval '1 second', '{}', \
             'archived', 'k/' || i, 'k/' || i || '/metadata.json', 'ab', 10, \
             jsonb_build_array(jsonb_build_object('kind', 'recording', 'key', 'k/' || i, 'sha256', 'ab', 'size', 10)), \
             now() \
         FROM generate_series(1, 10001) AS i",
    )
    .execute(&mut db)
    .await
    .unwrap();
    s.state
        .record_page(&ScopeKey::user(), "o", &[listed("nd", at(1, 0, 0, 0) + chrono::Duration::days(61))], &[], None)
        .await
        .unwrap();
    finish_all(&s.state, &BTreeMap::from([("nd", Outcome::NotDownloadable { reason: "prevented".into() })])).await;
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("may.html");
    let out = binary(&s.url)
        .args(["report", "--from", "2026-05-01", "--to", "2026-05-02", "--format", "html", "--out"])
        .arg(&page)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    let elements = elements(&html);
    let rows: Vec<&str> =
        elements.iter().filter_map(|e| e.attributes.get("data-recording")).map(String::as_str).collect();
    assert_eq!(rows, ["nd"], "archived recordings are counted, not listed");
    assert!(
        html.contains("This period has 10,001 archived recordings, more than this page lists one by one"),
        "{html}"
    );
    let archived: Vec<&str> = elements
        .iter()
        .filter(|e| {
            e.attributes.get("data-field").is_some_and(|f| f == "archived")
                || e.attributes.get("data-total").is_some_and(|f| f == "archived")
        })
        .map(|e| e.attributes["data-value"].as_str())
        .collect();
    assert_eq!(archived, ["10001", "10001", "10001"], "the total, the day and the day table's total");
    // The JSON form still carries every row.
    let (json, code) = json_report(&s.url, "2026-05-01", "2026-05-02");
    assert_eq!(code, Some(0));
    assert_eq!(json["recordings"].as_array().unwrap().len(), 10_002);
}
