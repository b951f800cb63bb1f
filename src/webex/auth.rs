//! Bearer tokens: a static one, or OAuth2 refresh-token grants.
//!
//! With OAuth, the access token is refreshed ahead of its expiry and once after a 401.
//! Every refresh token Webex returns is stored in the database before it is used, so a
//! restart (or another replica) continues with the newest one; one replica refreshes at
//! a time (a lock row), the others pick the result up from the database.

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
use super::models::{ErrorBody, TokenResponse};
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
}

impl fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredTokens")
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .field("refreshes", &self.refreshes)
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
    /// Takes the refresh lock of `client_id` for `ttl`; `false` when another owner holds it.
    async fn lock_refresh(&self, client_id: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError>;
    /// Releases the refresh lock.
    async fn unlock_refresh(&self, client_id: &str, owner: &str) -> Result<(), StoreError>;
}

/// How long a replica may hold the refresh lock.
const REFRESH_LOCK: Duration = Duration::from_secs(60);
/// How long to wait for another replica's refresh before refreshing anyway.
const REFRESH_WAIT: Duration = Duration::from_secs(30);

/// Where bearer tokens come from.
pub struct TokenProvider {
    kind: Kind,
}

enum Kind {
    Static(SecretString),
    OAuth(Box<OAuth>),
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
            Credentials::OAuth(credentials) => Kind::OAuth(Box::new(OAuth {
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
            })),
        };
        Self { kind }
    }

    /// The token to send now (refreshing it first when it is about to expire).
    pub async fn bearer(&self, gate: &RateGate, cancel: &CancellationToken) -> Result<SecretString, WebexError> {
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
        gate: &RateGate,
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
}

impl OAuth {
    fn usable(&self, tokens: &StoredTokens, refused: Option<&SecretString>) -> Option<SecretString> {
        let access = tokens.access_token.as_ref()?;
        if refused.is_some_and(|r| r.expose_secret() == access) {
            return None;
        }
        let expires = tokens.access_expires_at?;
        (crate::time::before(expires, self.credentials.refresh_ahead) > Utc::now())
            .then(|| SecretString::from(access.clone()))
    }

    async fn bearer(
        &self,
        gate: &RateGate,
        cancel: &CancellationToken,
        refused: Option<&SecretString>,
    ) -> Result<SecretString, WebexError> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref().and_then(|t| self.usable(t, refused)) {
            return Ok(token);
        }
        let client_id = self.credentials.client_id.as_str();
        let deadline = tokio::time::Instant::now() + REFRESH_WAIT;
        loop {
            // Another replica (or an earlier run) may have refreshed already. Tokens that
            // descend from another configured refresh token are ignored: an operator who
            // configures a new one (re-authorisation) means it.
            let stored = self
                .store
                .load_tokens(client_id)
                .await
                .map_err(|e| WebexError::Token(TokenError::store("cannot read the stored tokens", e)))?
                .filter(|t| t.seed_sha256.as_deref() == Some(self.seed_sha256.as_str()));
            if let Some(token) = stored.as_ref().and_then(|t| self.usable(t, refused)) {
                self.metrics.set_token_expiries(
                    stored.as_ref().and_then(|t| t.access_expires_at),
                    stored.as_ref().and_then(|t| t.refresh_expires_at),
                );
                *current = stored;
                return Ok(token);
            }
            let locked = self
                .store
                .lock_refresh(client_id, &self.owner, REFRESH_LOCK)
                .await
                .map_err(|e| WebexError::Token(TokenError::store("cannot take the refresh lock", e)))?;
            if locked || tokio::time::Instant::now() >= deadline {
                let result = self.refresh(stored, gate, cancel).await;
                if locked && let Err(e) = self.store.unlock_refresh(client_id, &self.owner).await {
                    tracing::warn!(error = %crate::errors::ErrorChain(&*e), "cannot release the token refresh lock; it expires by itself");
                }
                let tokens = result?;
                let token = SecretString::from(tokens.access_token.clone().unwrap_or_default());
                *current = Some(tokens);
                return Ok(token);
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = cancel.cancelled() => return Err(WebexError::Cancelled),
            }
        }
    }

    async fn refresh(
        &self,
        stored: Option<StoredTokens>,
        gate: &RateGate,
        cancel: &CancellationToken,
    ) -> Result<StoredTokens, WebexError> {
        let refresh_token = stored
            .as_ref()
            .map(|t| t.refresh_token.clone())
            .unwrap_or_else(|| self.credentials.refresh_token.expose_secret().to_owned());
        gate.wait(cancel).await?;
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", self.credentials.client_id.as_str()),
            ("client_secret", self.credentials.client_secret.expose_secret()),
            ("refresh_token", refresh_token.as_str()),
        ];
        let response = self
            .http
            .post(self.token_url.clone())
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
            let message = serde_json::from_slice::<ErrorBody>(&body).ok().and_then(|b| b.message).unwrap_or_default();
            return Err(WebexError::Token(TokenError::Refused { status, message, tracking_id }));
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
        let tokens = StoredTokens {
            access_token: Some(parsed.access_token.clone()),
            access_expires_at: Some(seconds(parsed.expires_in)),
            // NOTE: Webex may rotate the refresh token; keep whichever came back, else the old one.
            refresh_token: parsed.refresh_token.clone().unwrap_or(refresh_token),
            refresh_expires_at: parsed
                .refresh_token_expires_in
                .map(seconds)
                .or_else(|| stored.as_ref().and_then(|t| t.refresh_expires_at)),
            refreshes: stored.as_ref().map_or(0, |t| t.refreshes) + 1,
            seed_sha256: Some(self.seed_sha256.clone()),
        };
        // The new refresh token is durable before anyone uses the new access token: a crash
        // now cannot strand the process with a refresh token Webex has already retired.
        self.store
            .store_tokens(&self.credentials.client_id, &tokens)
            .await
            .map_err(|e| WebexError::Token(TokenError::store("cannot store the refreshed tokens", e)))?;
        self.metrics.token_refreshed(tokens.access_expires_at, tokens.refresh_expires_at);
        tracing::info!(
            access_expires_at = ?tokens.access_expires_at,
            refresh_expires_at = ?tokens.refresh_expires_at,
            "refreshed the Webex access token"
        );
        Ok(tokens)
    }
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

    proptest::proptest! {
        #[test]
        fn any_token_answer_is_read_without_panicking(body in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = serde_json::from_slice::<TokenResponse>(&body);
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
