//! The OAuth refresh chain cannot be lost: a rotated refresh token is stored before
//! anything uses it (and storing is retried while the database is away), one replica
//! refreshes at a time and only under the lock, after reading the chain again; the
//! refresh margin never turns into refreshing all the time; a revoked chain is final and
//! said so by `/readyz` and a metric.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use url::Url;
use webex_archiver::config::{Credentials, OAuthCredentials, TokenKey};
use webex_archiver::metrics::Metrics;
use webex_archiver::sim::{Endpoint, SimConfig, SimHandle, Simulator};
use webex_archiver::state::TokenVault;
use webex_archiver::webex::auth::{StoredTokens, TokenProvider, TokenStore};
use webex_archiver::webex::gate::{RateGate, RetryPolicy};
use webex_archiver::webex::{StoreError, TokenError, WebexError};

use crate::helpers::{Backend, TestState, wait_for};

/// A token store in front of the real one that can fail, or hold a lock attempt, on
/// demand, and counts what it was asked.
struct Probe {
    inner: Arc<dyn TokenStore>,
    /// Store attempts to fail from now on (`u32::MAX`: all, until changed).
    fail_stores: AtomicU32,
    store_failures: AtomicU32,
    stores: AtomicU32,
    loads: AtomicU32,
    lock_calls: AtomicU32,
    /// When set, the next lock attempt waits for `release` (after signalling `entered`).
    hold_next_lock: AtomicBool,
    entered: Notify,
    release: Notify,
    stored: Mutex<Vec<StoredTokens>>,
}

impl Probe {
    fn new(inner: Arc<dyn TokenStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            fail_stores: AtomicU32::new(0),
            store_failures: AtomicU32::new(0),
            stores: AtomicU32::new(0),
            loads: AtomicU32::new(0),
            lock_calls: AtomicU32::new(0),
            hold_next_lock: AtomicBool::new(false),
            entered: Notify::new(),
            release: Notify::new(),
            stored: Mutex::new(Vec::new()),
        })
    }
}

#[async_trait]
impl TokenStore for Probe {
    async fn load_tokens(&self, client_id: &str) -> Result<Option<StoredTokens>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load_tokens(client_id).await
    }
    async fn store_tokens(&self, client_id: &str, tokens: &StoredTokens) -> Result<(), StoreError> {
        let left = self.fail_stores.load(Ordering::SeqCst);
        if left > 0 {
            if left != u32::MAX {
                self.fail_stores.store(left - 1, Ordering::SeqCst);
            }
            self.store_failures.fetch_add(1, Ordering::SeqCst);
            return Err("the database is away (test)".into());
        }
        self.inner.store_tokens(client_id, tokens).await?;
        self.stored.lock().unwrap().push(tokens.clone());
        self.stores.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn lock_refresh(&self, client_id: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.lock_calls.fetch_add(1, Ordering::SeqCst);
        if self.hold_next_lock.swap(false, Ordering::SeqCst) {
            let released = self.release.notified();
            self.entered.notify_one();
            released.await;
        }
        self.inner.lock_refresh(client_id, owner, ttl).await
    }
    async fn unlock_refresh(&self, client_id: &str, owner: &str) -> Result<(), StoreError> {
        self.inner.unlock_refresh(client_id, owner).await
    }
}

fn credentials(sim: &SimHandle, refresh_token: &str, refresh_ahead: Duration) -> Credentials {
    Credentials::OAuth(OAuthCredentials {
        client_id: sim.client_id(),
        client_secret: SecretString::from(sim.client_secret()),
        refresh_token: SecretString::from(refresh_token.to_owned()),
        token_url: None,
        refresh_ahead,
    })
}

fn provider(sim: &SimHandle, store: Arc<dyn TokenStore>, owner: &str, metrics: &Metrics) -> Arc<TokenProvider> {
    Arc::new(TokenProvider::new(
        credentials(sim, &sim.refresh_token(), Duration::from_secs(600)),
        &Url::parse(&sim.api_base_url()).unwrap(),
        store,
        reqwest::Client::new(),
        owner.to_owned(),
        metrics.clone(),
    ))
}

fn gate() -> Arc<RateGate> {
    Arc::new(RateGate::new(None, 0.0, RetryPolicy { max: Duration::from_secs(5) }, Metrics::new()))
}

async fn sim(access_token_lifetime: Duration) -> SimHandle {
    Simulator::start(SimConfig {
        recordings: 0,
        access_token_lifetime,
        rotate_refresh_tokens: true,
        ..SimConfig::default()
    })
    .await
    .expect("simulator")
}

fn state_store(s: &TestState) -> Arc<dyn TokenStore> {
    TokenVault::shared(s.state.clone(), None).unwrap()
}

#[tokio::test]
async fn a_rotated_refresh_token_is_stored_before_it_is_used_even_when_storing_fails_first() {
    let sim = sim(Duration::from_secs(3600)).await;
    let db = TestState::new(Backend::Sqlite).await;
    let probe = Probe::new(state_store(&db));
    probe.fail_stores.store(3, Ordering::SeqCst);
    let tokens = provider(&sim, probe.clone(), "a", &Metrics::new());
    let cancel = CancellationToken::new();

    let access = tokens.bearer(&gate(), &cancel).await.expect("a token after three failed stores");
    // Not handed out before it was stored: the fourth attempt stored it.
    assert_eq!(probe.store_failures.load(Ordering::SeqCst), 3);
    assert_eq!(probe.stores.load(Ordering::SeqCst), 1);
    let stored = db.state.load_tokens(&sim.client_id()).await.unwrap().expect("stored tokens");
    assert_eq!(stored.access_token.as_deref(), Some(access.expose_secret()));
    assert_ne!(stored.refresh_token, sim.refresh_token(), "the rotated refresh token is the one stored");
    // Storing was retried, not the refresh (which would have presented a rotated-out token).
    let counters = sim.counters();
    assert_eq!(counters.token_refreshes, 1);
    assert_eq!(counters.invalid_grants, 0);

    // The stored chain continues: a 401 leads to a refresh with the stored refresh token.
    assert!(tokens.refused(&access, &gate(), &cancel).await.unwrap());
    let counters = sim.counters();
    assert_eq!((counters.token_refreshes, counters.invalid_grants), (2, 0));
}

#[tokio::test]
async fn storing_is_retried_across_an_outage_and_survives_a_caller_that_gives_up() {
    let sim = sim(Duration::from_secs(3600)).await;
    let db = TestState::new(Backend::Postgres).await;
    let probe = Probe::new(state_store(&db));
    probe.fail_stores.store(u32::MAX, Ordering::SeqCst);
    let tokens = provider(&sim, probe.clone(), "a", &Metrics::new());
    let caller = {
        let tokens = tokens.clone();
        tokio::spawn(async move { tokens.bearer(&gate(), &CancellationToken::new()).await })
    };
    wait_for("storing to fail a few times", Duration::from_secs(30), || async {
        (probe.store_failures.load(Ordering::SeqCst) >= 3).then_some(())
    })
    .await;
    assert!(!caller.is_finished(), "no token is handed out while it cannot be stored");
    assert_eq!(sim.counters().token_refreshes, 1);
    // The caller gives up (a stop, a lost lease): the refresh token Webex issued lives on.
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    // The next caller of this process waits for that refresh instead of starting one
    // with the refresh token it rotated out.
    let loads = probe.loads.load(Ordering::SeqCst);
    let next = {
        let tokens = tokens.clone();
        tokio::spawn(async move { tokens.bearer(&gate(), &CancellationToken::new()).await })
    };
    wait_for("the next caller to read the chain", Duration::from_secs(30), || async {
        (probe.loads.load(Ordering::SeqCst) > loads).then_some(())
    })
    .await;
    probe.fail_stores.store(0, Ordering::SeqCst);
    let next = next.await.unwrap().expect("the next caller gets the refreshed token");
    let stored = wait_for("the tokens stored once the database is back", Duration::from_secs(30), || async {
        db.state.load_tokens(&sim.client_id()).await.ok().flatten()
    })
    .await;
    assert_ne!(stored.refresh_token, sim.refresh_token());
    assert_eq!(stored.access_token.as_deref(), Some(next.expose_secret()));

    // A new process continues the chain from the database, without refreshing again.
    let restarted = provider(&sim, state_store(&db), "b", &Metrics::new());
    let access = restarted.bearer(&gate(), &CancellationToken::new()).await.unwrap();
    assert_eq!(stored.access_token.as_deref(), Some(access.expose_secret()));
    let counters = sim.counters();
    assert_eq!((counters.token_refreshes, counters.invalid_grants), (1, 0));
}

#[tokio::test]
async fn a_replica_that_wins_the_lock_late_reads_the_chain_again_and_does_not_refresh() {
    let sim = sim(Duration::from_secs(3600)).await;
    let db = TestState::new(Backend::Postgres).await;
    let probe_b = Probe::new(state_store(&db));
    let a = provider(&sim, state_store(&db), "a", &Metrics::new());
    let b = provider(&sim, probe_b.clone(), "b", &Metrics::new());

    // B finds no usable token and goes for the lock; it is held there while A refreshes.
    probe_b.hold_next_lock.store(true, Ordering::SeqCst);
    let entered = probe_b.entered.notified();
    let b_task = {
        let b = b.clone();
        tokio::spawn(async move { b.bearer(&gate(), &CancellationToken::new()).await })
    };
    entered.await;
    let a_token = a.bearer(&gate(), &CancellationToken::new()).await.unwrap();
    assert_eq!(sim.counters().token_refreshes, 1);
    probe_b.release.notify_one();
    let b_token = b_task.await.unwrap().unwrap();

    assert_eq!(b_token.expose_secret(), a_token.expose_secret(), "B uses A's tokens");
    let counters = sim.counters();
    assert_eq!((counters.token_refreshes, counters.invalid_grants), (1, 0));

    // Both see the token refused at once: one refresh between them.
    let (gate, cancel) = (gate(), CancellationToken::new());
    let (ra, rb) = tokio::join!(a.refused(&a_token, &gate, &cancel), b.refused(&b_token, &gate, &cancel));
    assert!(ra.unwrap() && rb.unwrap());
    let counters = sim.counters();
    assert_eq!((counters.token_refreshes, counters.invalid_grants), (2, 0));
}

#[tokio::test]
async fn no_replica_refreshes_without_the_lock_and_a_dead_holder_s_lock_expires() {
    let sim = sim(Duration::from_secs(3600)).await;
    let db = TestState::new(Backend::Sqlite).await;
    let probe = Probe::new(state_store(&db));
    let client = sim.client_id();
    // Another replica holds the lock for a long time.
    assert!(db.state.lock_refresh(&client, "other", Duration::from_secs(3600)).await.unwrap());
    let tokens = provider(&sim, probe.clone(), "a", &Metrics::new());
    let caller = {
        let tokens = tokens.clone();
        tokio::spawn(async move { tokens.bearer(&gate(), &CancellationToken::new()).await })
    };
    wait_for("several lock attempts", Duration::from_secs(30), || async {
        (probe.lock_calls.load(Ordering::SeqCst) >= 5).then_some(())
    })
    .await;
    assert!(!caller.is_finished());
    assert_eq!(sim.counters().requests_to(Endpoint::Token), 0, "no refresh without the lock");
    db.state.unlock_refresh(&client, "other").await.unwrap();
    caller.await.unwrap().expect("a token once the lock is free");
    assert_eq!(sim.counters().token_refreshes, 1);

    // A holder that died: its lock expires and the chain goes on.
    let restarted = provider(&sim, probe.clone(), "b", &Metrics::new());
    assert!(db.state.lock_refresh(&client, "dead", Duration::from_secs(1)).await.unwrap());
    let stored = db.state.load_tokens(&client).await.unwrap().unwrap();
    let used = SecretString::from(stored.access_token.clone().unwrap());
    assert!(restarted.refused(&used, &gate(), &CancellationToken::new()).await.unwrap());
    let counters = sim.counters();
    assert_eq!((counters.token_refreshes, counters.invalid_grants), (2, 0));
}

#[tokio::test]
async fn a_refresh_margin_longer_than_the_token_s_life_does_not_refresh_all_the_time() {
    // Tokens live 2 s; refresh_ahead is 10 min. Uncapped, every request would refresh.
    let lifetime = Duration::from_secs(2);
    let sim = sim(lifetime).await;
    let db = TestState::new(Backend::Sqlite).await;
    let tokens = provider(&sim, state_store(&db), "a", &Metrics::new());
    let gate = gate();
    let cancel = CancellationToken::new();
    let start = Instant::now();
    let mut requests = 0u64;
    while start.elapsed() < Duration::from_secs(6) {
        let token = tokens.bearer(&gate, &cancel).await.unwrap();
        requests += 1;
        let sites = reqwest::Client::new()
            .get(format!("{}/meetingPreferences/sites", sim.api_base_url()))
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .unwrap();
        assert_eq!(sites.status(), 200, "a token handed out is valid");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let refreshes = sim.counters().token_refreshes;
    // One refresh per half lifetime, plus the first one.
    let bound = (elapsed / (lifetime.as_secs_f64() / 2.0)).ceil() as u64 + 1;
    assert!(refreshes >= 2, "tokens were refreshed ahead of expiry ({refreshes})");
    assert!(refreshes <= bound, "{refreshes} refreshes for {requests} requests in {elapsed:.1} s (at most {bound})");
    assert!(requests > 4 * bound, "the loop asked often enough to tell ({requests} requests)");
}

#[tokio::test]
async fn a_revoked_chain_is_final_and_says_how_to_re_authorise() {
    let sim = sim(Duration::from_secs(3600)).await;
    let db = TestState::new(Backend::Sqlite).await;
    let metrics = Metrics::new();
    let tokens = provider(&sim, state_store(&db), "a", &metrics);
    sim.expire_refresh_tokens();
    let cancel = CancellationToken::new();
    let error = tokens.bearer(&gate(), &cancel).await.unwrap_err();
    assert!(matches!(&error, WebexError::Token(TokenError::Revoked { .. })), "{error:?}");
    assert!(!error.is_transient(), "a revoked chain is not worth retrying");
    let message = webex_archiver::errors::ErrorChain(&error).to_string();
    assert!(message.contains("invalid_grant"), "{message}");
    assert!(message.contains("webex.oauth.refresh_token"), "{message}");
    assert!(!message.contains(&sim.refresh_token()) && !message.contains(&sim.client_secret()), "{message}");

    // Final: asking again does not go back to the token endpoint.
    for _ in 0..3 {
        assert!(matches!(tokens.bearer(&gate(), &cancel).await, Err(WebexError::Token(TokenError::Revoked { .. }))));
    }
    assert_eq!(sim.counters().requests_to(Endpoint::Token), 1);
    assert_eq!(sim.counters().invalid_grants, 1);
    assert!(tokens.revoked().is_some_and(|r| r.contains("webex.oauth.refresh_token")));
    let scrape = metrics.encode(chrono::Utc::now());
    assert!(scrape.lines().any(|l| l == "webex_archiver_oauth_revoked 1"), "{scrape}");

    // Re-authorised: a new configured refresh token replaces the stored chain.
    let fresh = sim.authorize();
    let renewed = Arc::new(TokenProvider::new(
        credentials(&sim, &fresh, Duration::from_secs(600)),
        &Url::parse(&sim.api_base_url()).unwrap(),
        state_store(&db),
        reqwest::Client::new(),
        "a2".into(),
        Metrics::new(),
    ));
    renewed.bearer(&gate(), &cancel).await.expect("the new chain works");
    assert!(renewed.revoked().is_none());
    assert_eq!(sim.counters().token_refreshes, 1);
}

/// The two stored token columns, as the database holds them.
async fn raw_token_row(db: &TestState, client_id: &str) -> (String, String) {
    let query = "SELECT access_token, refresh_token FROM oauth_tokens WHERE client_id = $1";
    if db.url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let row: (String, String) = sqlx::query_as(query).bind(client_id).fetch_one(&pool).await.unwrap();
        pool.close().await;
        row
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let row: (String, String) = sqlx::query_as(query).bind(client_id).fetch_one(&pool).await.unwrap();
        pool.close().await;
        row
    }
}

async fn tokens_at_rest(backend: Backend) {
    let sim = sim(Duration::from_secs(3600)).await;
    let db = TestState::new(backend).await;
    let client = sim.client_id();
    let key = TokenKey::from_bytes(*b"0123456789abcdef0123456789abcdef");
    let other = TokenKey::from_bytes([9; 32]);

    // Plain text stored before the key was set is still read with the key.
    let plain = provider(&sim, TokenVault::shared(db.state.clone(), None).unwrap(), "a", &Metrics::new());
    let first = plain.bearer(&gate(), &CancellationToken::new()).await.unwrap();
    let (access_raw, _) = raw_token_row(&db, &client).await;
    assert_eq!(access_raw, first.expose_secret(), "without a key the row holds plain text");
    let sealed_store = TokenVault::shared(db.state.clone(), Some(&key)).unwrap();
    let read = sealed_store.load_tokens(&client).await.unwrap().unwrap();
    assert_eq!(read.access_token.as_deref(), Some(first.expose_secret()));

    // With the key, the next refresh stores ciphertext only.
    let sealed = provider(&sim, sealed_store.clone(), "b", &Metrics::new());
    assert!(sealed.refused(&first, &gate(), &CancellationToken::new()).await.unwrap());
    let tokens = sealed_store.load_tokens(&client).await.unwrap().unwrap();
    let (access_raw, refresh_raw) = raw_token_row(&db, &client).await;
    let access = tokens.access_token.clone().unwrap();
    assert!(access_raw.starts_with("v1:") && refresh_raw.starts_with("v1:"), "{access_raw} {refresh_raw}");
    assert!(!access_raw.contains(&access) && !refresh_raw.contains(&tokens.refresh_token));
    assert_ne!(access_raw, refresh_raw);
    // And a restarted process with the key continues the chain.
    let restarted = provider(&sim, TokenVault::shared(db.state.clone(), Some(&key)).unwrap(), "c", &Metrics::new());
    let token = restarted.bearer(&gate(), &CancellationToken::new()).await.unwrap();
    assert_eq!(token.expose_secret(), access);

    // Another key: one clear error naming the setting, never the token.
    let wrong = TokenVault::shared(db.state.clone(), Some(&other)).unwrap();
    let error = wrong.load_tokens(&client).await.unwrap_err().to_string();
    assert!(error.contains("database.token_key"), "{error}");
    let wrong = provider(&sim, wrong, "d", &Metrics::new());
    let error = wrong.bearer(&gate(), &CancellationToken::new()).await.unwrap_err();
    let message = webex_archiver::errors::ErrorChain(&error).to_string();
    assert!(message.contains("database.token_key"), "{message}");
    assert!(!message.contains(&access) && !message.contains(&tokens.refresh_token), "{message}");
    // No key at all, for encrypted rows: named too.
    let none = TokenVault::shared(db.state.clone(), None).unwrap();
    assert!(none.load_tokens(&client).await.unwrap_err().to_string().contains("database.token_key"));
    let counters = sim.counters();
    assert_eq!((counters.token_refreshes, counters.invalid_grants), (2, 0));
}

#[tokio::test]
async fn tokens_at_rest_are_encrypted_with_the_key_on_sqlite() {
    tokens_at_rest(Backend::Sqlite).await;
}

#[tokio::test]
async fn tokens_at_rest_are_encrypted_with_the_key_on_postgres() {
    tokens_at_rest(Backend::Postgres).await;
}

#[tokio::test]
async fn in_a_run_a_revoked_chain_fails_readiness_with_the_fix_and_sets_the_metric() {
    use webex_archiver::app;
    use webex_archiver::state::ArchiveState;

    use crate::sync::{Harness, Store};

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = SimConfig { recordings: 3, rotate_refresh_tokens: true, ..SimConfig::default() };
    let mut h = Harness::start(Backend::Sqlite, Store::Local, "admin", config).await;
    let (client_id, client_secret, refresh_token) = (h.sim.client_id(), h.sim.client_secret(), h.sim.refresh_token());
    h.env.remove("WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN");
    h.set("WEBEX_ARCHIVER__WEBEX__OAUTH__CLIENT_ID", &client_id);
    h.set("WEBEX_ARCHIVER__WEBEX__OAUTH__CLIENT_SECRET", &client_secret);
    h.set("WEBEX_ARCHIVER__WEBEX__OAUTH__REFRESH_TOKEN", &refresh_token);
    h.set("WEBEX_ARCHIVER__SYNC__POLL_INTERVAL", "1s");
    h.set("WEBEX_ARCHIVER__HTTP__LISTEN", &format!("127.0.0.1:{port}"));
    let (stop, abort) = (CancellationToken::new(), CancellationToken::new());
    let services = h.services(abort.clone()).await;
    let task = tokio::spawn(app::run(services.clone(), stop.clone(), abort));
    let state = services.state.clone();
    wait_for("the recordings archived", Duration::from_secs(60), || {
        let state = state.clone();
        async move { (state.status(0).await.ok()?.counts[&ArchiveState::Archived] == 3).then_some(()) }
    })
    .await;

    // The integration is revoked: the next request gets a 401, the refresh invalid_grant.
    h.sim.expire_refresh_tokens();
    h.sim.expire_access_tokens();
    let base = format!("http://127.0.0.1:{port}");
    let body: serde_json::Value = wait_for("/readyz to name the revoked chain", Duration::from_secs(60), || {
        let url = format!("{base}/readyz");
        async move {
            let response = reqwest::get(url).await.ok()?;
            let status = response.status();
            let body: serde_json::Value = response.json().await.ok()?;
            (status == 503 && body["token"].as_str()?.contains("revoked")).then_some(body)
        }
    })
    .await;
    assert_eq!(body["ready"], false);
    let token = body["token"].as_str().unwrap();
    assert!(token.contains("invalid_grant") && token.contains("webex.oauth.refresh_token"), "{token}");
    assert!(!token.contains(&refresh_token) && !token.contains(&client_secret), "{token}");
    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "webex_archiver_oauth_revoked 1"), "{metrics}");

    stop.cancel();
    assert_eq!(task.await.unwrap().unwrap(), 0);
    // Final: the token endpoint was told the dead chain once, never again.
    let counters = h.sim.counters();
    assert_eq!(counters.invalid_grants, 1);
    assert_eq!(counters.rotated_out_refresh_tokens, 0, "the chain was never lost, only revoked");
    assert!(counters.requests_with(Endpoint::Token, 400) == 1);
    h.assert_well_behaved();
}

#[tokio::test]
async fn after_a_stop_storing_is_still_tried_for_a_bounded_grace() {
    let sim = sim(Duration::from_secs(3600)).await;
    let db = TestState::new(Backend::Sqlite).await;
    let client = sim.client_id();
    let bare = |store: Arc<dyn TokenStore>, owner: &str| {
        TokenProvider::new(
            credentials(&sim, &sim.refresh_token(), Duration::from_secs(600)),
            &Url::parse(&sim.api_base_url()).unwrap(),
            store,
            reqwest::Client::new(),
            owner.to_owned(),
            Metrics::new(),
        )
    };

    // The database comes back within the grace: the chain is kept.
    let probe = Probe::new(state_store(&db));
    probe.fail_stores.store(u32::MAX, Ordering::SeqCst);
    let tokens = Arc::new(bare(probe.clone(), "a").with_stop_grace(Duration::from_secs(120)));
    let stop = CancellationToken::new();
    let caller = {
        let (tokens, stop) = (tokens.clone(), stop.clone());
        tokio::spawn(async move { tokens.bearer(&gate(), &stop).await })
    };
    wait_for("storing to fail", Duration::from_secs(30), || async {
        (probe.store_failures.load(Ordering::SeqCst) >= 2).then_some(())
    })
    .await;
    stop.cancel();
    let failures = probe.store_failures.load(Ordering::SeqCst);
    wait_for("more attempts after the stop", Duration::from_secs(30), || async {
        (probe.store_failures.load(Ordering::SeqCst) >= failures + 2).then_some(())
    })
    .await;
    assert!(!caller.is_finished(), "the stop does not drop the unsaved refresh token");
    probe.fail_stores.store(0, Ordering::SeqCst);
    caller.await.unwrap().expect("stored within the grace");
    let kept = db.state.load_tokens(&client).await.unwrap().unwrap();
    assert_ne!(kept.refresh_token, sim.refresh_token());

    // The database stays away past the grace: an error that says the tokens were not stored.
    let probe = Probe::new(state_store(&db));
    probe.fail_stores.store(u32::MAX, Ordering::SeqCst);
    let tokens = bare(probe.clone(), "b").with_stop_grace(Duration::from_millis(300));
    let stop = CancellationToken::new();
    stop.cancel();
    let used = SecretString::from(kept.access_token.clone().unwrap());
    let error = tokens.refused(&used, &gate(), &stop).await.unwrap_err();
    let message = webex_archiver::errors::ErrorChain(&error).to_string();
    assert!(message.contains("cannot store the refreshed tokens"), "{message}");
    assert!(probe.store_failures.load(Ordering::SeqCst) >= 2, "tried more than once");
    assert_eq!(sim.counters().invalid_grants, 0);
}
