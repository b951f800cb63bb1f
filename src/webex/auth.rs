//! Bearer tokens: a static one, or OAuth2 refresh-token grants.
//!
//! With OAuth, the access token is refreshed ahead of its expiry (by `refresh_ahead`,
//! at most half the token's lifetime) and once after a 401. The refresh chain cannot be
//! lost:
//!
//! - One replica refreshes at a time, and only while it holds the refresh lock (a row in
//!   the database with a TTL, so a dead holder frees it). A replica that finds the lock
//!   taken waits for it; it never refreshes without it.
//! - After taking the lock, a replica reads the stored chain again: if another replica
//!   refreshed meanwhile, it uses those tokens and does not refresh.
//! - The refresh, from the request to the token endpoint to storing its answer, runs in
//!   a task of its own: a caller that gives up (a stop, a lost lease) cannot drop the new
//!   refresh token Webex has just issued. Storing it is retried, with backoff, for as
//!   long as the database is away; nothing uses the new access token before it is
//!   stored. When the process is asked to stop while it still cannot store it, it logs
//!   an error and keeps trying for [`PERSIST_GRACE_AFTER_STOP`] more before giving up.
//! - An answer saying the chain is revoked or expired (`invalid_grant`, ...) is final:
//!   no retry, [`TokenProvider::revoked`] says why (for `/readyz`), the
//!   `webex_archiver_oauth_revoked` gauge is 1, and the message says how to re-authorise.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::client::join_base;
use super::gate::RateGate;
use super::models::TokenResponse;
use super::{StoreError, TokenError, WebexError};
use crate::config::{Credentials, OAuthCredentials};
use crate::metrics::Metrics;

/// OAuth tokens kept in a [`TokenStore`] (the database), so a restart uses the newest
/// refresh token.
#[derive(Clone, PartialEq)]
pub struct StoredTokens {
    /// Current access token, if one was obtained.
    pub access_token: Option<String>,
    /// Its expiry.
    pub access_expires_at: Option<DateTime<Utc>>,
    /// The refresh token to use next.
    pub refresh_token: String,
    /// Its expiry.
    pub refresh_expires_at: Option<DateTime<Utc>>,
    /// Refreshes done so far.
    pub refreshes: i64,
    /// SHA-256 (hex) of the configured refresh token this chain started from.
    pub seed_sha256: Option<String>,
    /// When these tokens were obtained (with `access_expires_at`, the access token's
    /// lifetime, which caps the refresh margin). `None`: the store's "now" when stored.
    pub obtained_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredTokens")
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .field("refreshes", &self.refreshes)
            .field("obtained_at", &self.obtained_at)
            .finish_non_exhaustive()
    }
}

/// Where OAuth tokens are kept (the state database), so that a restart, or another
/// replica, continues with the newest refresh token, and one replica refreshes at a time.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// The tokens stored for `client_id`.
    async fn load_tokens(&self, client_id: &str) -> Result<Option<StoredTokens>, StoreError>;
    /// Stores new tokens for `client_id` (and counts a refresh).
    async fn store_tokens(&self, client_id: &str, tokens: &StoredTokens) -> Result<(), StoreError>;
    /// Takes (or, for the same owner, renews) the refresh lock of `client_id` for `ttl`;
    /// `false` when another owner holds it.
    async fn lock_refresh(&self, client_id: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError>;
    /// Releases the refresh lock.
    async fn unlock_refresh(&self, client_id: &str, owner: &str) -> Result<(), StoreError>;
}

/// How long a replica may hold the refresh lock: longer than reading the chain, one
/// token request ([`TOKEN_REQUEST_TIMEOUT`]) and storing the answer.
const REFRESH_LOCK: Duration = Duration::from_secs(60);
/// Time limit of one request to the token endpoint.
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a replica that waits for another's refresh looks again.
const LOCK_POLL: Duration = Duration::from_millis(200);
/// After a stop is requested, how long the process keeps trying to store a refresh token
/// Webex has issued before it gives up (and the chain is lost).
pub const PERSIST_GRACE_AFTER_STOP: Duration = Duration::from_secs(30);
/// Longest pause between two attempts to store new tokens.
const PERSIST_RETRY_MAX: Duration = Duration::from_secs(2);

/// Where bearer tokens come from.
pub struct TokenProvider {
    kind: Kind,
}

enum Kind {
    Static(SecretString),
    OAuth(Arc<OAuth>),
}

struct OAuth {
    credentials: OAuthCredentials,
    /// The token endpoint, resolved from the credentials and `webex.base_url`.
    token_url: Url,
    store: Arc<dyn TokenStore>,
    http: reqwest::Client,
    owner: String,
    metrics: Metrics,
    current: Mutex<Option<StoredTokens>>,
    /// SHA-256 of the configured refresh token.
    seed_sha256: String,
    /// Why the chain is revoked, once the token endpoint said so (final).
    revoked: std::sync::Mutex<Option<String>>,
    /// How long storing new tokens is still tried after a stop.
    stop_grace: Duration,
    /// Held by the one refresh task of this process at a time.
    refreshing: Mutex<()>,
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Static(_) => "TokenProvider::Static(***)",
            Kind::OAuth(_) => "TokenProvider::OAuth(***)",
        })
    }
}

/// Where OAuth tokens are refreshed: `webex.oauth.token_url` when configured, else
/// `<base_url>/access_token`.
pub fn token_endpoint(credentials: &OAuthCredentials, base_url: &Url) -> Url {
    credentials.token_url.clone().unwrap_or_else(|| join_base(base_url, "access_token"))
}

/// How long before its expiry an access token is refreshed: `refresh_ahead`, but at most
/// half of the token's lifetime (else a token that lives less than `refresh_ahead`
/// would be refreshed on every request).
pub fn refresh_margin(
    refresh_ahead: Duration,
    obtained_at: Option<DateTime<Utc>>,
    expires_at: DateTime<Utc>,
) -> Duration {
    let Some(obtained_at) = obtained_at else { return refresh_ahead };
    let lifetime = (expires_at - obtained_at).to_std().unwrap_or(Duration::ZERO);
    refresh_ahead.min(lifetime / 2)
}

impl TokenProvider {
    /// A provider for the configured credentials, against the API at `base_url`
    /// (`webex.base_url`), keeping OAuth tokens in `store`. `owner` names this process in
    /// locks.
    pub fn new(
        credentials: Credentials,
        base_url: &Url,
        store: Arc<dyn TokenStore>,
        http: reqwest::Client,
        owner: String,
        metrics: Metrics,
    ) -> Self {
        let kind = match credentials {
            Credentials::Static(token) => Kind::Static(token),
            Credentials::OAuth(credentials) => Kind::OAuth(Arc::new(OAuth {
                seed_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                    credentials.refresh_token.expose_secret().as_bytes(),
                )),
                token_url: token_endpoint(&credentials, base_url),
                credentials,
                store,
                http,
                owner,
                metrics,
                current: Mutex::new(None),
                revoked: std::sync::Mutex::new(None),
                stop_grace: PERSIST_GRACE_AFTER_STOP,
                refreshing: Mutex::new(()),
            })),
        };
        Self { kind }
    }

    /// How long, after a stop, storing a refresh token Webex issued is still tried
    /// (default [`PERSIST_GRACE_AFTER_STOP`]).
    pub fn with_stop_grace(mut self, grace: Duration) -> Self {
        if let Kind::OAuth(oauth) = &mut self.kind
            && let Some(oauth) = Arc::get_mut(oauth)
        {
            oauth.stop_grace = grace;
        }
        self
    }

    /// The token to send now (refreshing it first when it is about to expire).
    pub async fn bearer(&self, gate: &Arc<RateGate>, cancel: &CancellationToken) -> Result<SecretString, WebexError> {
        match &self.kind {
            Kind::Static(token) => Ok(token.clone()),
            Kind::OAuth(oauth) => oauth.bearer(gate, cancel, None).await,
        }
    }

    /// Webex refused `used` with 401: refresh it if possible. Returns whether a new token
    /// is available (false for a static token).
    pub async fn refused(
        &self,
        used: &SecretString,
        gate: &Arc<RateGate>,
        cancel: &CancellationToken,
    ) -> Result<bool, WebexError> {
        match &self.kind {
            Kind::Static(_) => Ok(false),
            Kind::OAuth(oauth) => {
                let fresh = oauth.bearer(gate, cancel, Some(used)).await?;
                Ok(fresh.expose_secret() != used.expose_secret())
            }
        }
    }

    /// Expiries of the current tokens (access, refresh), for metrics and `status`.
    pub async fn expiries(&self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        match &self.kind {
            Kind::Static(_) => (None, None),
            Kind::OAuth(oauth) => {
                let current = oauth.current.lock().await;
                current.as_ref().map_or((None, None), |t| (t.access_expires_at, t.refresh_expires_at))
            }
        }
    }

    /// Why the OAuth refresh chain is unusable for good (revoked or expired), with what
    /// to do about it; `None` while it works (and for a static token).
    pub fn revoked(&self) -> Option<String> {
        match &self.kind {
            Kind::Static(_) => None,
            Kind::OAuth(oauth) => oauth.revoked_error().map(|e| e.to_string()),
        }
    }
}

/// What a refresh under the lock came to.
enum Refreshed {
    /// New (or another replica's newer) tokens.
    Tokens(StoredTokens),
    /// The stored chain moved while the token endpoint refused ours: read it again.
    ChainMoved,
    /// Another replica holds the refresh lock.
    Busy,
}

impl OAuth {
    fn usable(&self, tokens: &StoredTokens, refused: Option<&str>) -> Option<SecretString> {
        let access = tokens.access_token.as_ref()?;
        if refused.is_some_and(|r| r == access) {
            return None;
        }
        let expires = tokens.access_expires_at?;
        let margin = refresh_margin(self.credentials.refresh_ahead, tokens.obtained_at, expires);
        (crate::time::before(expires, margin) > Utc::now()).then(|| SecretString::from(access.clone()))
    }

    fn revoked_error(&self) -> Option<TokenError> {
        let revoked = self.revoked.lock().unwrap_or_else(|e| e.into_inner()).clone();
        revoked.map(|reason| TokenError::Revoked { reason })
    }

    /// The stored chain, if it descends from the configured refresh token. Tokens that
    /// descend from another one are ignored: an operator who configures a new refresh
    /// token (re-authorisation) means it.
    async fn load(&self) -> Result<Option<StoredTokens>, WebexError> {
        Ok(self
            .store
            .load_tokens(&self.credentials.client_id)
            .await
            .map_err(|e| WebexError::Token(TokenError::store("cannot read the stored tokens", e)))?
            .filter(|t| t.seed_sha256.as_deref() == Some(self.seed_sha256.as_str())))
    }

    fn adopt(&self, current: &mut Option<StoredTokens>, tokens: StoredTokens) {
        self.metrics.set_token_expiries(tokens.access_expires_at, tokens.refresh_expires_at);
        *current = Some(tokens);
    }

    async fn bearer(
        self: &Arc<Self>,
        gate: &Arc<RateGate>,
        cancel: &CancellationToken,
        refused: Option<&SecretString>,
    ) -> Result<SecretString, WebexError> {
        let refused = refused.map(|r| r.expose_secret().to_owned());
        let mut current = self.current.lock().await;
        if let Some(e) = self.revoked_error() {
            return Err(WebexError::Token(e));
        }
        if let Some(token) = current.as_ref().and_then(|t| self.usable(t, refused.as_deref())) {
            return Ok(token);
        }
        loop {
            // Another replica (or an earlier run) may have refreshed already.
            if let Some(stored) = self.load().await?
                && let Some(token) = self.usable(&stored, refused.as_deref())
            {
                self.adopt(&mut current, stored);
                return Ok(token);
            }
            // Wait for the Retry-After pause before taking the lock, not while holding it.
            gate.wait(cancel).await?;
            // A task of its own takes the lock and does the work (and releases the lock),
            // whatever happens to this caller: a refresh token Webex issues is never
            // dropped with a cancelled future. In this process, one such task at a time:
            // a caller that gave up leaves its task running, and the next one waits for
            // it (the database lock alone would let this process in twice).
            let task = {
                let this = Arc::clone(self);
                let refused = refused.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    let _one_at_a_time = this.refreshing.lock().await;
                    let locked = this
                        .store
                        .lock_refresh(&this.credentials.client_id, &this.owner, REFRESH_LOCK)
                        .await
                        .map_err(|e| WebexError::Token(TokenError::store("cannot take the refresh lock", e)))?;
                    if !locked {
                        return Ok(Refreshed::Busy);
                    }
                    let result = this.refresh_locked(refused.as_deref(), &cancel).await;
                    if let Err(e) = this.store.unlock_refresh(&this.credentials.client_id, &this.owner).await {
                        tracing::warn!(error = %crate::errors::ErrorChain(&*e), "cannot release the token refresh lock; it expires by itself");
                    }
                    result
                })
            };
            let result = match task.await {
                Ok(result) => result,
                Err(e) => Err(WebexError::Token(TokenError::Task(e))),
            };
            match result {
                Ok(Refreshed::Tokens(tokens)) => {
                    let token = SecretString::from(tokens.access_token.clone().unwrap_or_default());
                    self.adopt(&mut current, tokens);
                    return Ok(token);
                }
                Ok(Refreshed::ChainMoved) => continue,
                Ok(Refreshed::Busy) => {
                    // Another replica is refreshing: wait for its tokens (or for its lock
                    // to expire, if it died). Never refresh without the lock.
                    tokio::select! {
                        _ = tokio::time::sleep(LOCK_POLL) => {}
                        _ = cancel.cancelled() => return Err(WebexError::Cancelled),
                    }
                }
                Err(e) => {
                    if let WebexError::Token(TokenError::Revoked { reason }) = &e {
                        *self.revoked.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.clone());
                        self.metrics.set_oauth_revoked(true);
                        tracing::error!(error = %crate::errors::ErrorChain(&e), "the OAuth refresh chain is revoked or expired; nothing can be archived until the integration is authorised again");
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Holding the refresh lock: reads the chain again, and refreshes it unless another
    /// replica did meanwhile.
    async fn refresh_locked(&self, refused: Option<&str>, cancel: &CancellationToken) -> Result<Refreshed, WebexError> {
        let stored = self.load().await?;
        if let Some(stored) = stored.as_ref()
            && self.usable(stored, refused).is_some()
        {
            return Ok(Refreshed::Tokens(stored.clone()));
        }
        let presented = stored
            .as_ref()
            .map(|t| t.refresh_token.clone())
            .unwrap_or_else(|| self.credentials.refresh_token.expose_secret().to_owned());
        match self.refresh(stored.as_ref(), &presented).await {
            Ok(tokens) => {
                self.persist(&tokens, cancel).await?;
                self.metrics.token_refreshed(tokens.access_expires_at, tokens.refresh_expires_at);
                tracing::info!(
                    access_expires_at = ?tokens.access_expires_at,
                    refresh_expires_at = ?tokens.refresh_expires_at,
                    "refreshed the Webex access token"
                );
                Ok(Refreshed::Tokens(tokens))
            }
            Err(e @ WebexError::Token(TokenError::Revoked { .. })) => {
                // Before calling the chain lost: if the stored refresh token is no longer
                // the one presented (a replica whose lock had expired stored a newer one
                // meanwhile), the chain is alive; use it.
                match self.load().await {
                    Ok(Some(now)) if now.refresh_token != presented => Ok(Refreshed::ChainMoved),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// One request to the token endpoint with `presented`.
    async fn refresh(&self, stored: Option<&StoredTokens>, presented: &str) -> Result<StoredTokens, WebexError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", self.credentials.client_id.as_str()),
            ("client_secret", self.credentials.client_secret.expose_secret()),
            ("refresh_token", presented),
        ];
        let response = self
            .http
            .post(self.token_url.clone())
            .timeout(TOKEN_REQUEST_TIMEOUT)
            .form(&form)
            .send()
            .await
            .map_err(|e| WebexError::Token(TokenError::Network(e.without_url())))?;
        let status = response.status();
        self.metrics.api_request("token", Some(status.as_u16()));
        let tracking_id = super::client::tracking_id(response.headers());
        let body = super::client::read_capped(response, super::client::SMALL_BODY_CAP)
            .await
            .map_err(|e| WebexError::Token(TokenError::Body(e)))?;
        if !status.is_success() {
            let refusal = read_refusal(&body);
            if refusal.chain_is_dead(status) {
                let tracking = tracking_id.as_ref().map(|t| format!(" (trackingId {t})")).unwrap_or_default();
                return Err(WebexError::Token(TokenError::Revoked {
                    reason: format!("the token endpoint answered {status}: {}{tracking}", refusal.message),
                }));
            }
            return Err(WebexError::Token(TokenError::Refused { status, message: refusal.message, tracking_id }));
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| WebexError::Token(TokenError::Unreadable(e)))?;
        let now = Utc::now();
        // NOTE: lifetimes come from the network: a huge one saturates, it cannot overflow.
        let seconds = |s: u64| {
            i64::try_from(s)
                .ok()
                .and_then(chrono::Duration::try_seconds)
                .and_then(|d| now.checked_add_signed(d))
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        };
        Ok(StoredTokens {
            access_token: Some(parsed.access_token.clone()),
            access_expires_at: Some(seconds(parsed.expires_in)),
            // NOTE: Webex may rotate the refresh token; keep whichever came back, else the old one.
            refresh_token: parsed.refresh_token.clone().unwrap_or_else(|| presented.to_owned()),
            refresh_expires_at: parsed
                .refresh_token_expires_in
                .map(seconds)
                .or_else(|| stored.and_then(|t| t.refresh_expires_at)),
            refreshes: stored.map_or(0, |t| t.refreshes) + 1,
            seed_sha256: Some(self.seed_sha256.clone()),
            obtained_at: Some(now),
        })
    }

    /// Stores new tokens before anything uses them, trying again while the store is away:
    /// until it works, or, once `cancel` (a stop) fires, for `stop_grace`.
    async fn persist(&self, tokens: &StoredTokens, cancel: &CancellationToken) -> Result<(), WebexError> {
        let mut delay = Duration::from_millis(100);
        let mut failures = 0u32;
        let mut give_up_at = None;
        loop {
            let error = match self.store.store_tokens(&self.credentials.client_id, tokens).await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(failures, "stored the refreshed OAuth tokens after the database came back");
                    }
                    return Ok(());
                }
                Err(e) => e,
            };
            failures += 1;
            if cancel.is_cancelled() {
                let deadline = *give_up_at.get_or_insert_with(|| tokio::time::Instant::now() + self.stop_grace);
                if tokio::time::Instant::now() >= deadline {
                    tracing::error!(
                        error = %crate::errors::ErrorChain(&*error),
                        "GIVING UP: the refresh token Webex issued could not be stored before the stop; \
                         the stored chain is stale and the next refresh will fail with invalid_grant: \
                         re-authorise the integration (configure a new webex.oauth.refresh_token)"
                    );
                    return Err(WebexError::Token(TokenError::store("cannot store the refreshed tokens", error)));
                }
                tracing::error!(
                    error = %crate::errors::ErrorChain(&*error),
                    grace_s = self.stop_grace.as_secs_f64(),
                    "stopping, but the refresh token Webex just issued is not stored yet; \
                     still trying (it is the only copy: a restart with the stored one would need re-authorisation)"
                );
            } else if failures == 1 || failures.is_multiple_of(20) {
                tracing::warn!(
                    error = %crate::errors::ErrorChain(&*error),
                    failures,
                    "cannot store the refreshed OAuth tokens; keeping them in memory and trying again until the database answers"
                );
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(PERSIST_RETRY_MAX);
        }
    }
}

/// What a token endpoint said when it refused: its words, leniently read from a Webex
/// error body (`message`, `errors[].description`) or an OAuth one (`error`,
/// `error_description`).
struct Refusal {
    message: String,
    words: String,
}

impl Refusal {
    /// Whether the answer says the refresh chain is revoked or expired: final.
    fn chain_is_dead(&self, status: reqwest::StatusCode) -> bool {
        matches!(status.as_u16(), 400 | 401)
            && ["invalid_grant", "invalid_token", "expired", "revoked"].iter().any(|w| self.words.contains(w))
    }
}

fn read_refusal(body: &[u8]) -> Refusal {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_owned);
    let mut parts: Vec<String> = ["error", "error_description", "message"]
        .iter()
        .filter_map(|k| text(value.get(*k)))
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(errors) = value.get("errors").and_then(|e| e.as_array()) {
        parts.extend(errors.iter().filter_map(|e| text(e.get("description"))).filter(|s| !s.is_empty()));
    }
    parts.dedup();
    // NOTE: from the network: bounded before it reaches a message.
    let mut message: String = parts.join("; ").chars().take(300).collect();
    if message.is_empty() {
        message = "(no readable error body)".into();
    }
    Refusal { words: message.to_lowercase(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth(token_url: Option<&str>) -> OAuthCredentials {
        OAuthCredentials {
            client_id: "cid".into(),
            client_secret: SecretString::from("secret"),
            refresh_token: SecretString::from("refresh"),
            token_url: token_url.map(|u| Url::parse(u).unwrap()),
            refresh_ahead: Duration::from_secs(60),
        }
    }

    #[test]
    fn the_token_endpoint_is_the_configured_one_else_under_the_base_url() {
        let base = Url::parse("https://webexapis.com/v1").unwrap();
        assert_eq!(token_endpoint(&oauth(None), &base).as_str(), "https://webexapis.com/v1/access_token");
        let base = Url::parse("http://127.0.0.1:8080/v1/").unwrap();
        assert_eq!(token_endpoint(&oauth(None), &base).as_str(), "http://127.0.0.1:8080/v1/access_token");
        let configured = "https://idbroker.webex.com/idb/oauth2/v1/access_token";
        assert_eq!(token_endpoint(&oauth(Some(configured)), &base).as_str(), configured);
    }

    #[test]
    fn the_refresh_margin_is_at_most_half_the_token_s_lifetime() {
        let obtained: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let ahead = Duration::from_secs(600);
        let short = obtained + chrono::Duration::seconds(20);
        assert_eq!(refresh_margin(ahead, Some(obtained), short), Duration::from_secs(10));
        let long = obtained + chrono::Duration::days(14);
        assert_eq!(refresh_margin(ahead, Some(obtained), long), ahead);
        // An expiry before the token was obtained (a skewed clock): refresh when it expires.
        let past = obtained - chrono::Duration::seconds(5);
        assert_eq!(refresh_margin(ahead, Some(obtained), past), Duration::ZERO);
        assert_eq!(refresh_margin(ahead, None, short), ahead);
    }

    #[test]
    fn refusals_that_say_the_chain_is_dead_are_told_apart() {
        use reqwest::StatusCode;
        let webex = br#"{"message":"invalid_grant: the refresh token is invalid or expired.","trackingId":"t"}"#;
        assert!(read_refusal(webex).chain_is_dead(StatusCode::BAD_REQUEST));
        let oauth = br#"{"error":"invalid_grant","error_description":"Token revoked"}"#;
        let refusal = read_refusal(oauth);
        assert!(refusal.chain_is_dead(StatusCode::BAD_REQUEST));
        assert_eq!(refusal.message, "invalid_grant; Token revoked");
        let nested = br#"{"message":"Bad request","errors":[{"description":"Refresh token has EXPIRED"}]}"#;
        assert!(read_refusal(nested).chain_is_dead(StatusCode::UNAUTHORIZED));
        // A wrong client secret, a server error, or an unreadable body are not final.
        assert!(!read_refusal(br#"{"message":"invalid_client"}"#).chain_is_dead(StatusCode::UNAUTHORIZED));
        assert!(!read_refusal(webex).chain_is_dead(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!read_refusal(b"<html>").chain_is_dead(StatusCode::BAD_REQUEST));
        assert_eq!(read_refusal(b"").message, "(no readable error body)");
        let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(10_000));
        assert_eq!(read_refusal(long.as_bytes()).message.len(), 300);
    }

    proptest::proptest! {
        #[test]
        fn any_token_answer_is_read_without_panicking(body in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = serde_json::from_slice::<TokenResponse>(&body);
            let _ = read_refusal(&body);
        }

        #[test]
        fn a_token_answer_round_trips(
            access in "[A-Za-z0-9_-]{1,60}",
            expires_in in proptest::num::u64::ANY,
            refresh in proptest::option::of("[A-Za-z0-9_-]{1,60}"),
            refresh_expires_in in proptest::option::of(proptest::num::u64::ANY),
        ) {
            let sent = TokenResponse {
                access_token: access,
                expires_in,
                refresh_token: refresh,
                refresh_token_expires_in: refresh_expires_in,
                token_type: "Bearer".into(),
            };
            let read: TokenResponse = serde_json::from_slice(&serde_json::to_vec(&sent).unwrap()).unwrap();
            proptest::prop_assert_eq!(read.access_token, sent.access_token);
            proptest::prop_assert_eq!(read.expires_in, sent.expires_in);
            proptest::prop_assert_eq!(read.refresh_token, sent.refresh_token);
            proptest::prop_assert_eq!(read.refresh_token_expires_in, sent.refresh_token_expires_in);
        }
    }
}
