//! Shared test helpers: real Postgres (a fresh database per test), real S3 servers (a
//! fresh prefix per test), SQLite in a temporary directory, settings built the way the
//! binary builds them.
//!
//! The services come from `scripts/with-services`, which exports `WA_TEST_*` variables.
//! A test that needs a service fails (it does not skip) when they are missing.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use webex_archiver::config::{Needs, Settings, Sources};
use webex_archiver::state::{self, State};

/// A `WA_TEST_*` variable, or a failure that says how to run the tests.
pub fn service_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/with-services (see README: Running the tests)")
    })
}

/// A fresh Postgres database, dropped when this guard is dropped.
pub struct PgDatabase {
    /// URL of the database.
    pub url: String,
    name: String,
    admin_url: String,
}

impl PgDatabase {
    /// Creates an empty database.
    pub async fn create() -> Self {
        let admin_url = service_env("WA_TEST_PG_URL");
        let now = chrono::Utc::now().timestamp();
        let name = format!("wa_test_{now}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut admin = connect_admin(&admin_url).await;
        drop_stale(&mut admin, now).await;
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create the test database");
        let mut url = url::Url::parse(&admin_url).expect("WA_TEST_PG_URL is a URL");
        url.set_path(&name);
        Self { url: url.to_string(), name, admin_url }
    }
}

async fn connect_admin(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await.expect("connect to the test Postgres server (WA_TEST_PG_URL)")
}

/// Drops test databases older than two hours (left by killed test runs).
async fn drop_stale(admin: &mut sqlx::PgConnection, now: i64) {
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'wa\\_test\\_%'")
        .fetch_all(&mut *admin)
        .await
        .unwrap_or_default();
    for name in names {
        let created = name.split('_').nth(2).and_then(|t| t.parse::<i64>().ok()).unwrap_or(now);
        if now - created > 7200 {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut *admin).await;
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside a runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                let mut admin = connect_admin(&admin_url).await;
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await;
            });
        })
        .join();
    }
}

/// Which backend a contract test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A state store on a fresh database, and what keeps it alive.
pub struct TestState {
    pub state: State,
    pub url: String,
    _pg: Option<PgDatabase>,
    _dir: Option<tempfile::TempDir>,
}

impl TestState {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Postgres => {
                let db = PgDatabase::create().await;
                let url = db.url.clone();
                let state =
                    state::open(&url.clone().into(), 10, Duration::from_secs(10)).await.expect("open postgres state");
                Self { state, url, _pg: Some(db), _dir: None }
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", dir.path().join("state.db").display());
                let state =
                    state::open(&url.clone().into(), 10, Duration::from_secs(10)).await.expect("open sqlite state");
                Self { state, url, _pg: None, _dir: Some(dir) }
            }
        }
    }
}

/// The S3 servers of the test environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Server {
    S3s,
    Garage,
    /// moto's S3 server, bucket `WA_TEST_MOTO_BUCKET`: Object Lock with a default
    /// retention (GOVERNANCE, 1 day).
    Moto,
}

impl S3Server {
    fn var(self, what: &str) -> String {
        let server = match self {
            S3Server::S3s => "S3S",
            S3Server::Garage => "GARAGE",
            S3Server::Moto => "MOTO",
        };
        service_env(&format!("WA_TEST_{server}_{what}"))
    }

    /// Environment (as the binary would see it) pointing `storage.url` at a fresh prefix.
    pub fn env(self, prefix: &str) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("WEBEX_ARCHIVER__STORAGE__URL".into(), format!("s3://{}/{prefix}", self.var("BUCKET")));
        env.insert("AWS_ENDPOINT_URL".into(), self.var("ENDPOINT"));
        env.insert("AWS_ACCESS_KEY_ID".into(), self.var("ACCESS_KEY"));
        env.insert("AWS_SECRET_ACCESS_KEY".into(), self.var("SECRET_KEY"));
        env.insert("AWS_REGION".into(), self.var("REGION"));
        env.insert("AWS_ALLOW_HTTP".into(), "true".into());
        env
    }
}

/// A unique prefix for one test's objects.
pub fn unique_prefix(test: &str) -> String {
    format!("t-{test}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// Settings loaded exactly like the binary loads them, from an environment map.
pub fn settings_from_env(env: BTreeMap<String, String>, needs: Needs) -> Settings {
    Settings::load(&Sources { file: None, data_dir: None, env }, needs).expect("valid test settings")
}

/// Polls `check` until it returns `Some`, failing after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An operator for `retry` in tests.
pub fn operator() -> webex_archiver::state::Operator {
    webex_archiver::state::Operator { user: "tester".into(), host: "test-host".into() }
}
