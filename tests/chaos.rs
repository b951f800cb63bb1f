//! The chaos suite: three `webex-archiver run` processes share one Postgres database and
//! one Garage bucket while the simulator injects faults (server errors, 429 bursts,
//! resets, truncations and stalls mid-download). The harness SIGKILLs a daemon at random
//! moments (at least ten times) and restarts it, restarts Garage once and Postgres once,
//! then checks that every downloadable recording is archived exactly once with the right
//! SHA-256, that `verify --all` is clean, that no request went out before a Retry-After
//! had passed, that no token reached the download host, and that no recording was
//! downloaded to completion more than twice. It prints these figures.
//!
//! A second variant runs the same schedule with OAuth: access tokens that live 4 s,
//! refresh tokens rotated at every refresh, the tokens encrypted at rest; it also checks
//! that no refresh token was lost (none rotated out was presented again) and that the
//! token endpoint never answered `invalid_grant`.
//!
//! It restarts the Postgres cluster, so it runs alone, after the rest of the suite:
//! `scripts/test` runs it as `cargo test --test chaos -- --ignored --nocapture`.

#[path = "it/helpers.rs"]
mod helpers;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use webex_archiver::sim::{Burst429, FaultAction, FaultRule, RetryAfterFormat, SimConfig, Simulator};
use webex_archiver::state::{self, ArchiveState};

use helpers::{PgDatabase, service_env};

const DAEMONS: usize = 3;
const KILLS: usize = 10;
const RECORDINGS: usize = 120;
const DEADLINE: Duration = Duration::from_secs(300);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_port(port: u16, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "{what} did not open port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A Garage server of the test's own, so that the test can restart it.
struct Garage {
    bin: String,
    config: PathBuf,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

const GARAGE_KEY: &str = "GKchaostestkey01";
const GARAGE_SECRET: &str = "chaos-garage-secret-0123456789abcdef";

impl Garage {
    fn start(dir: &Path) -> Self {
        let port = free_port();
        let rpc = free_port();
        std::fs::create_dir_all(dir.join("meta")).unwrap();
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("garage.toml");
        let secret: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{m}\"\ndata_dir = \"{d}\"\ndb_engine = \"lmdb\"\nreplication_factor = 1\n\
                 metadata_fsync = false\ndata_fsync = false\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\n[s3_api]\n\
                 api_bind_addr = \"127.0.0.1:{port}\"\ns3_region = \"garage\"\nroot_domain = \".s3.garage.localhost\"\n",
                m = dir.join("meta").display(),
                d = dir.join("data").display(),
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut garage =
            Self { bin: service_env("WA_TEST_GARAGE_BIN"), config, port, child: None, log: dir.join("garage.log") };
        garage.spawn();
        garage
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(&self.bin)
            .args(["-c", self.config.to_str().unwrap(), "server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", GARAGE_KEY)
            .env("GARAGE_DEFAULT_SECRET_KEY", GARAGE_SECRET)
            .env("GARAGE_DEFAULT_BUCKET", "chaos")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start garage");
        self.child = Some(child);
        wait_port(self.port, "garage");
    }

    fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn();
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Daemon {
    child: Child,
    log: PathBuf,
}

/// A failed assertion must not leave daemons running (they would hold leases and load
/// the machine for whatever runs next).
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_daemon(env: &HashMap<String, String>, log: &Path) -> Daemon {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_webex-archiver"))
        .arg("run")
        .env_clear()
        .envs(env)
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("start a daemon");
    Daemon { child, log: log.to_path_buf() }
}

/// Restarts the Postgres cluster `WA_CHAOS_PG_CLUSTER` (default `main`, the one
/// `WA_TEST_PG_URL` points at in `scripts/test`; another cluster lets a developer repeat
/// the suite while other tests use `main`).
fn restart_postgres() {
    let cluster = std::env::var("WA_CHAOS_PG_CLUSTER").unwrap_or_else(|_| "main".into());
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("/etc/postgresql")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .next()
        .expect("a Postgres cluster");
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, &cluster, "restart"])
        .status()
        .expect("pg_ctlcluster");
    assert!(status.success(), "restarting Postgres failed");
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts Postgres: run alone, as scripts/test does"]
async fn chaos_nothing_lost_nothing_duplicated() {
    chaos(Credentials::Static).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts Postgres: run alone, as scripts/test does"]
async fn chaos_with_oauth_no_refresh_token_lost_no_invalid_grant() {
    chaos(Credentials::OAuth).await;
}

/// How the daemons authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credentials {
    /// The simulator's long-lived access token.
    Static,
    /// OAuth: 4-second access tokens, a refresh token rotated at every refresh.
    OAuth,
}

/// Lifetime of the simulator's access tokens in the OAuth variant.
const OAUTH_ACCESS_LIFETIME: Duration = Duration::from_secs(4);

async fn chaos(credentials: Credentials) {
    let oauth = credentials == Credentials::OAuth;
    let seed: u64 = std::env::var("WA_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("chaos ({credentials:?}): seed {seed} (set WA_CHAOS_SEED to replay the schedule)");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();

    let config = SimConfig {
        seed,
        recordings: RECORDINGS,
        size_min: 1 << 20,
        size_max: 4 << 20,
        prevent_downloading_fraction: 0.03,
        faults: vec![
            FaultRule::new(FaultAction::ApiError { status: 503 }).probability(0.1),
            FaultRule::new(FaultAction::Reset { after_bytes: 300_000 }).probability(0.04),
            FaultRule::new(FaultAction::ShortBody { after_bytes: 500_000 }).probability(0.04),
            FaultRule::new(FaultAction::Stall { after_bytes: 100_000, duration: Duration::from_millis(800) })
                .probability(0.03),
            // Slow enough that kills land in the middle of transfers.
            FaultRule::new(FaultAction::Throttle { bytes_per_second: 4_000_000 }),
        ],
        access_token_lifetime: if oauth { OAUTH_ACCESS_LIFETIME } else { SimConfig::default().access_token_lifetime },
        rotate_refresh_tokens: true,
        ..SimConfig::default()
    };
    let sim = Simulator::start(config).await.expect("simulator");
    let db = PgDatabase::create().await;
    let mut garage = Garage::start(&dir.path().join("garage"));

    let mut env: HashMap<String, String> = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("RUST_LOG", "info,sqlx=warn".into()),
        ("WEBEX_ARCHIVER__LOG__FORMAT", "json".into()),
        ("WEBEX_ARCHIVER__WEBEX__BASE_URL", sim.api_base_url()),
        ("WEBEX_ARCHIVER__WEBEX__DOWNLOAD_HOSTS", "127.0.0.1".into()),
        ("WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN", sim.access_token()),
        ("WEBEX_ARCHIVER__WEBEX__SCOPE", "admin".into()),
        ("WEBEX_ARCHIVER__DATABASE__URL", db.url.clone()),
        ("WEBEX_ARCHIVER__DATABASE__ACQUIRE_TIMEOUT", "3s".into()),
        ("WEBEX_ARCHIVER__STORAGE__URL", "s3://chaos/archive".into()),
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", garage.port)),
        ("AWS_ACCESS_KEY_ID", GARAGE_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY", GARAGE_SECRET.into()),
        ("AWS_REGION", "garage".into()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("WEBEX_ARCHIVER__SYNC__SINCE", "70d".into()),
        ("WEBEX_ARCHIVER__SYNC__POLL_INTERVAL", "3s".into()),
        ("WEBEX_ARCHIVER__SYNC__DISCOVERY_LEASE", "10s".into()),
        ("WEBEX_ARCHIVER__ARCHIVE__LEASE", "6s".into()),
        ("WEBEX_ARCHIVER__ARCHIVE__MAX_ATTEMPTS", "30".into()),
        ("WEBEX_ARCHIVER__ARCHIVE__RETRY_BASE", "200ms".into()),
        ("WEBEX_ARCHIVER__ARCHIVE__RETRY_MAX", "2s".into()),
        ("WEBEX_ARCHIVER__ARCHIVE__STALL_TIMEOUT", "5s".into()),
        ("WEBEX_ARCHIVER__SHUTDOWN__GRACE", "5s".into()),
        ("WEBEX_ARCHIVER__HTTP__LISTEN", String::new()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if oauth {
        env.remove("WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN");
        for (k, v) in [
            ("WEBEX_ARCHIVER__WEBEX__OAUTH__CLIENT_ID", sim.client_id()),
            ("WEBEX_ARCHIVER__WEBEX__OAUTH__CLIENT_SECRET", sim.client_secret()),
            ("WEBEX_ARCHIVER__WEBEX__OAUTH__REFRESH_TOKEN", sim.refresh_token()),
            // 32 bytes, base64: the stored tokens are encrypted.
            ("WEBEX_ARCHIVER__DATABASE__TOKEN_KEY", "Y2hhb3MtdG9rZW4ta2V5LTAxMjM0NTY3ODlhYmNkZWY=".to_owned()),
        ] {
            env.insert(k.to_owned(), v);
        }
    }

    let mut daemons: Vec<Daemon> =
        (0..DAEMONS).map(|i| spawn_daemon(&env, &dir.path().join(format!("daemon-{i}.log")))).collect();
    let state = state::open(&db.url.clone().into(), 4, Duration::from_secs(5)).await.expect("open the state");
    let truth = sim.truth();
    let downloadable: Vec<_> = truth.iter().filter(|r| !r.prevent_downloading && r.status == "available").collect();
    let prevented = truth.len() - downloadable.len();

    // The schedule: kills at random moments, Garage restarted after the 3rd, Postgres after
    // the 6th, 429 bursts now and then; until every recording is final and 10 kills are done.
    let mut kills = 0;
    let mut garage_restarts = 0;
    let mut postgres_restarts = 0;
    let mut bursts = 0;
    loop {
        assert!(
            started.elapsed() < DEADLINE,
            "chaos did not converge in {DEADLINE:?}; daemon logs:\n{}",
            daemons.iter().map(|d| tail(&d.log)).collect::<Vec<_>>().join("\n---\n")
        );
        tokio::time::sleep(Duration::from_millis(rng.random_range(700..2500))).await;
        if rng.random_range(0..3) == 0 {
            // The next 3 to 11 requests within 5 s are refused, as a real storm ends with
            // time: a burst that only requests could end would outlive a client that
            // backs off, since a new one starts every few seconds (no extra draw from
            // `rng`, so seeds replay the same schedule).
            sim.burst_429(Burst429 {
                requests: Some(rng.random_range(3..12)),
                duration: Some(Duration::from_secs(5)),
                retry_after: rng.random_range(1..3),
                retry_after_format: if rng.random_range(0..2) == 0 {
                    RetryAfterFormat::Seconds
                } else {
                    RetryAfterFormat::HttpDate
                },
                retry_after_raw: None,
            });
            bursts += 1;
        }
        if kills < KILLS {
            let victim = rng.random_range(0..DAEMONS);
            let daemon = &mut daemons[victim];
            daemon.child.kill().expect("SIGKILL a daemon");
            let _ = daemon.child.wait();
            kills += 1;
            if kills == 3 {
                garage.restart();
                garage_restarts += 1;
            }
            if kills == 6 {
                restart_postgres();
                postgres_restarts += 1;
            }
            let log = daemon.log.clone();
            *daemon = spawn_daemon(&env, &log);
            continue;
        }
        let Ok(status) = state.status(0).await else { continue };
        let final_count = status.counts[&ArchiveState::Archived]
            + status.counts[&ArchiveState::NotDownloadable]
            + status.counts[&ArchiveState::Failed];
        if final_count as usize == truth.len() {
            break;
        }
    }
    let converged = started.elapsed();

    // A graceful stop: SIGTERM, exit 0 within the grace.
    for daemon in &daemons {
        Command::new("kill").args(["-TERM", &daemon.child.id().to_string()]).status().unwrap();
    }
    for daemon in &mut daemons {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = daemon.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "a daemon did not stop within the grace:\n{}", tail(&daemon.log));
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.success(), "a daemon exited with {status} after SIGTERM:\n{}", tail(&daemon.log));
    }

    // Every downloadable recording archived exactly once, with the right SHA-256.
    let status = state.status(50).await.unwrap();
    let rows = state.archived(None).await.unwrap();
    let archived: HashMap<&str, &state::ArchivedRecord> = rows.iter().map(|r| (r.id.0.as_str(), &r.record)).collect();
    assert_eq!(status.counts[&ArchiveState::Failed], 0, "failures: {:?}", status.recent_failures);
    assert_eq!(archived.len(), downloadable.len(), "archived {} of {}", archived.len(), downloadable.len());
    for truth in &downloadable {
        let record = archived.get(truth.id.as_str()).unwrap_or_else(|| panic!("{} is not archived", truth.id));
        assert_eq!(Some(&record.sha256), truth.sha256.as_ref(), "{}: wrong SHA-256", truth.id);
    }
    assert_eq!(status.counts[&ArchiveState::NotDownloadable] as usize, prevented);

    // verify --all through the binary: the store re-read, nothing missing, corrupt or unclaimed.
    let verify = Command::new(env!("CARGO_BIN_EXE_webex-archiver"))
        .args(["verify", "--all", "--json"])
        .env_clear()
        .envs(&env)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).expect("verify --json prints JSON");
    assert!(verify.status.success(), "verify --all found problems: {report:#}");
    assert_eq!(report["checked"], downloadable.len());
    assert_eq!(report["unclaimed"].as_array().map(Vec::len), Some(0));

    let counters = sim.counters();
    let max_completed = counters.downloads_by_id.values().map(|d| d.completed).max().unwrap_or(0);
    let total_completed: u64 = counters.downloads_by_id.values().map(|d| d.completed).sum();
    println!("chaos ({credentials:?}): figures");
    println!(
        "  recordings                 {} ({} downloadable, {prevented} prevent-downloading)",
        truth.len(),
        downloadable.len()
    );
    println!("  archived exactly once      {} with the simulator's SHA-256", archived.len());
    println!("  verify --all               clean ({} checked, 0 unclaimed)", report["checked"]);
    println!("  daemons                    {DAEMONS}, SIGKILLed {kills} times and restarted");
    println!("  S3 (Garage) restarts       {garage_restarts}");
    println!("  Postgres restarts          {postgres_restarts}");
    println!("  429 bursts / 429s sent     {bursts} / {}", counters.rate_limited);
    println!("  requests before Retry-After had passed: {}", counters.violations);
    println!("  tokens seen on the site host: {}", counters.token_leaks);
    println!("  faults injected            {:?}", counters.faults_injected);
    println!(
        "  downloads completed        {total_completed} for {} recordings; at most {max_completed} per recording",
        downloadable.len()
    );
    println!("  leases recovered           {}", status.lease_expiries);
    println!("  converged in               {:.1} s", converged.as_secs_f64());
    if oauth {
        println!(
            "  OAuth                      {} refreshes ({} s access tokens), {} invalid_grant, {} rotated-out refresh tokens presented",
            counters.token_refreshes,
            OAUTH_ACCESS_LIFETIME.as_secs(),
            counters.invalid_grants,
            counters.rotated_out_refresh_tokens
        );
    }
    assert_eq!(counters.violations, 0, "requests went out before a Retry-After had passed");
    assert_eq!(counters.token_leaks, 0, "the bearer token reached the download host");
    assert!(max_completed <= 2, "a recording was downloaded to completion {max_completed} times");
    if oauth {
        assert!(counters.token_refreshes > 0, "the OAuth variant refreshed no token");
        assert_eq!(counters.rotated_out_refresh_tokens, 0, "a refresh token was lost: a rotated-out one was presented");
        assert_eq!(counters.invalid_grants, 0, "the token endpoint answered invalid_grant");
        assert_eq!(counters.requests_with(webex_archiver::sim::Endpoint::Token, 400), 0);
    }
    sim.shutdown().await;
}
