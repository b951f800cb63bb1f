//! The state layer at scale (issue 16), for `scripts/bench --only scale`: fills a fresh
//! database with a realistic mix of recordings (the fixtures the plan checks use,
//! `tests/fixtures/scale/`), then times each operation a worker, discovery, `status`,
//! `/metrics` and `verify` run against it, many times, and prints p50 and p99 of each as
//! one JSON object on stdout.
//!
//! ```text
//! cargo bench --bench scale -- --url postgres://127.0.0.1/db --rows 1000000
//! ```
//!
//! The database must exist and be empty (the bench applies the migrations). The
//! measurements change it: claimed recordings are marked archived, listed pages add
//! recordings. Timing is wall time of each call as the archiver makes it (through
//! `StateStore`, over the same pool), on a quiet machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use webex_archiver::state::{
    ArchivedRecord, ListedIn, ListedRecording, Outcome, PgState, RecordingId, ScopeKey, SqliteState, State,
};

/// Sites in the fixture (`'site' || i % 50`).
const SITES: usize = 50;

struct Args {
    url: String,
    rows: i64,
    claims: usize,
    pages: usize,
    page_size: usize,
}

fn args() -> Result<Args, String> {
    let mut out = Args { url: String::new(), rows: 0, claims: 2000, pages: 300, page_size: 100 };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--url" => out.url = value("--url")?,
            "--rows" => out.rows = value("--rows")?.parse().map_err(|e| format!("--rows: {e}"))?,
            "--claims" => out.claims = value("--claims")?.parse().map_err(|e| format!("--claims: {e}"))?,
            "--pages" => out.pages = value("--pages")?.parse().map_err(|e| format!("--pages: {e}"))?,
            // What `cargo bench` adds to every bench's arguments.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if out.url.is_empty() || out.rows <= 0 {
        return Err("usage: scale --url <database url> --rows <n> [--claims <n>] [--pages <n>]".into());
    }
    // The fixture leaves 0.9% of its rows due: claim at most half of them.
    out.claims = out.claims.min(usize::try_from(out.rows / 200).unwrap_or(usize::MAX)).max(1);
    Ok(out)
}

/// Wall times of one operation, in milliseconds.
#[derive(Default)]
struct Timings(Vec<f64>);

impl Timings {
    fn time<T>(&mut self, started: Instant, value: T) -> T {
        self.0.push(started.elapsed().as_secs_f64() * 1000.0);
        value
    }

    /// The `q` quantile (nearest rank).
    fn quantile(&self, q: f64) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    fn summary(&self) -> serde_json::Value {
        if self.0.is_empty() {
            return json!(null);
        }
        json!({"n": self.0.len(), "p50_ms": self.quantile(0.50), "p99_ms": self.quantile(0.99),
               "max_ms": self.quantile(1.0)})
    }
}

/// The custody log's head after the fixture's events.
const EVENTS_HEAD: &str = "UPDATE events_head SET seq = (SELECT max(seq) FROM events), \
                           sha256 = (SELECT sha256 FROM events ORDER BY seq DESC LIMIT 1) WHERE id = 1";

async fn fill(url: &str, rows: i64) -> Result<f64, Box<dyn std::error::Error>> {
    let started = Instant::now();
    if url.starts_with("postgres") {
        let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(url).await?;
        sqlx::query(include_str!("../tests/fixtures/scale/recordings.postgres.sql"))
            .bind(rows)
            .execute(&mut db)
            .await?;
        sqlx::query(include_str!("../tests/fixtures/scale/events.postgres.sql")).execute(&mut db).await?;
        sqlx::query(EVENTS_HEAD).execute(&mut db).await?;
        // As autovacuum leaves a table: statistics, and the visibility map.
        sqlx::query("VACUUM ANALYZE").execute(&mut db).await?;
    } else {
        let db = sqlx::SqlitePool::connect(url).await?;
        let now = Utc::now().timestamp_millis();
        sqlx::query(include_str!("../tests/fixtures/scale/recordings.sqlite.sql"))
            .bind(rows)
            .bind(now)
            .execute(&db)
            .await?;
        sqlx::query(include_str!("../tests/fixtures/scale/events.sqlite.sql")).execute(&db).await?;
        sqlx::query(EVENTS_HEAD).execute(&db).await?;
        sqlx::query("ANALYZE").execute(&db).await?;
        db.close().await;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// The database's size on disk, in bytes (Postgres: the database; SQLite: its pages,
/// the write-ahead log's included).
async fn db_bytes(url: &str) -> Result<i64, Box<dyn std::error::Error>> {
    if url.starts_with("postgres") {
        let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(url).await?;
        Ok(sqlx::query_scalar("SELECT pg_database_size(current_database())").fetch_one(&mut db).await?)
    } else {
        let db = sqlx::SqlitePool::connect(url).await?;
        let bytes = sqlx::query_scalar("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
            .fetch_one(&db)
            .await?;
        db.close().await;
        Ok(bytes)
    }
}

/// A listing item as Webex sends it (the fields the archiver keeps), about 1 KB.
fn listed(page: usize, n: usize, scope: &ScopeKey) -> ListedRecording {
    let id = format!("bench-{page}-{n}");
    let site = format!("site{}.webex.com", page % SITES);
    let create_time = Utc::now() - chrono::Duration::minutes((page * 100 + n) as i64);
    ListedRecording {
        id: RecordingId(id.clone()),
        scope: scope.clone(),
        site_url: Some(site.clone()),
        host_email: Some(format!("host{n}@example.com")),
        meeting_id: Some(format!("{:032x}", page * 1000 + n)),
        topic: Some(format!("Weekly sync {n}")),
        format: Some("MP4".into()),
        create_time,
        size_bytes: Some(20_000_000 + n as i64),
        listing: json!({
            "id": id, "meetingId": format!("{:032x}", page * 1000 + n), "topic": format!("Weekly sync {n}"),
            "createTime": create_time.to_rfc3339(), "timeRecorded": create_time.to_rfc3339(),
            "siteUrl": site, "hostEmail": format!("host{n}@example.com"), "format": "MP4",
            "serviceType": "MeetingCenter", "durationSeconds": 3600, "sizeBytes": 20_000_000 + n,
            "shareToMe": false, "integrationTags": [], "status": "available",
            "playbackUrl": format!("https://site.webex.com/recordingservice/sites/site/recording/playback/{id}"),
            "downloadUrl": format!("https://site.webex.com/recordingservice/sites/site/recording/download/{id}"),
        }),
        listed_in: ListedIn {
            window: Some((create_time, Utc::now())),
            tracking_id: Some("bench".into()),
            ..Default::default()
        },
    }
}

fn archived_record(id: &str) -> ArchivedRecord {
    let prefix = format!("2026/01/01/{id}");
    let sha = "ab".repeat(32);
    ArchivedRecord {
        media_key: format!("{prefix}/recording.mp4"),
        metadata_key: format!("{prefix}/metadata.json"),
        files: json!([{"kind": "recording", "key": format!("{prefix}/recording.mp4"), "sha256": sha,
                       "size": 20_000_000, "content_type": "video/mp4"}]),
        object_prefix: prefix,
        sha256: sha,
        bytes: 20_000_000,
        size_mismatch: false,
        archived_at: Utc::now(),
        metadata_version: None,
        retention: None,
        metadata_retain_until: None,
    }
}

async fn measure(args: &Args) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let timeout = Duration::from_secs(30);
    let state: State = if args.url.starts_with("postgres") {
        Arc::new(PgState::connect(&args.url, 4, timeout).await?)
    } else {
        Arc::new(SqliteState::open(&args.url, 4, timeout).await?)
    };
    state.migrate().await?;
    let fill_s = fill(&args.url, args.rows).await?;
    eprintln!("scale: filled {} recordings in {fill_s:.0} s", args.rows);

    // Growth: bytes per recording archived (its claim and archived events, its files)
    // and per recording discovered (a real listing item and its event), measured on the
    // filled database as the operations below add them.
    let filled_bytes = db_bytes(&args.url).await?;

    // A worker's round: claim one recording, then mark it archived.
    let (mut claim, mut finish) = (Timings::default(), Timings::default());
    for _ in 0..args.claims {
        let started = Instant::now();
        let claimed = claim.time(started, state.claim_due("bench-worker", Duration::from_secs(600), 1).await?);
        let Some(c) = claimed.into_iter().next() else { break };
        let started = Instant::now();
        let done =
            finish.time(started, state.finish(&c.id, &c.token, &Outcome::Archived(archived_record(&c.id.0))).await?);
        if !done {
            return Err(format!("recording {} claimed but not finished", c.id.0).into());
        }
    }
    if claim.0.len() < args.claims {
        return Err(format!("only {} recordings were due; the fill should leave more", claim.0.len()).into());
    }

    let archived_bytes = db_bytes(&args.url).await?;

    // Discovery: pages of new recordings, then the same pages listed again.
    let (mut page_new, mut page_relisted) = (Timings::default(), Timings::default());
    let mut pages = Vec::with_capacity(args.pages);
    for page in 0..args.pages {
        let scope = ScopeKey(format!("admin:site{}", page % SITES));
        let items: Vec<ListedRecording> = (0..args.page_size).map(|n| listed(page, n, &scope)).collect();
        let started = Instant::now();
        let recorded = page_new.time(started, state.record_page(&scope, "bench-discovery", &items, &[], None).await?);
        if recorded.new != args.page_size as u64 {
            return Err(format!("page {page}: {} new of {}", recorded.new, args.page_size).into());
        }
        pages.push((scope, items));
    }
    let discovered_bytes = db_bytes(&args.url).await?;
    for (scope, items) in pages.iter().take(args.pages / 3) {
        let started = Instant::now();
        page_relisted.time(started, state.record_page(scope, "bench-discovery", items, &[], None).await?);
    }

    // The readers: status, /metrics's counts, a draining worker's question, verify's
    // queries.
    let mut status = Timings::default();
    let mut gauges = Timings::default();
    let mut count = Timings::default();
    let mut next_work = Timings::default();
    let mut sample = Timings::default();
    let mut prefixes = Timings::default();
    for round in 0..10 {
        let started = Instant::now();
        status.time(started, state.status(10).await?);
        // `every` zero: a count is due as soon as the last one is 50 times its own
        // duration old; only the calls that counted are timed.
        let started = Instant::now();
        if state.refresh_counts(&format!("bench-{round}"), Duration::ZERO, timeout).await? {
            count.time(started, ());
        }
        for _ in 0..10 {
            let started = Instant::now();
            gauges.time(started, state.gauges().await?);
            let started = Instant::now();
            next_work.time(started, state.next_work().await?);
        }
        let started = Instant::now();
        let rows = sample.time(started, state.archived(Some(100)).await?);
        let dirs: Vec<String> = (0..1000).map(|i| format!("r{}", round * 1000 + i)).collect();
        let started = Instant::now();
        prefixes.time(started, state.claimed_prefixes(&dirs).await?);
        if rows.len() != 100 {
            return Err(format!("a sample of 100 archived recordings returned {}", rows.len()).into());
        }
    }
    Ok(json!({
        "backend": if args.url.starts_with("postgres") { "postgres" } else { "sqlite" },
        "rows": args.rows,
        "fill_s": fill_s,
        "claim": claim.summary(),
        "finish": finish.summary(),
        "page_new": page_new.summary(),
        "page_relisted": page_relisted.summary(),
        "page_size": args.page_size,
        "status": status.summary(),
        "refresh_counts": count.summary(),
        "gauges": gauges.summary(),
        "next_work": next_work.summary(),
        "verify_sample_query": sample.summary(),
        "claimed_prefixes_1000": prefixes.summary(),
        "db_bytes_filled": filled_bytes,
        "db_bytes_per_archived": (archived_bytes - filled_bytes) as f64 / claim.0.len() as f64,
        "db_bytes_per_discovered": (discovered_bytes - archived_bytes) as f64 / (args.pages * args.page_size) as f64,
    }))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    // `cargo test --all-targets` builds and runs every bench, with no arguments or with
    // the test filter: nothing to measure without a database (scripts/bench gives one).
    if !std::env::args().any(|a| a == "--url") {
        eprintln!("scale: no database given; nothing measured (see scripts/bench --only scale)");
        return std::process::ExitCode::SUCCESS;
    }
    let args = match args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("scale: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match measure(&args).await {
        Ok(result) => {
            println!("{result}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scale: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
