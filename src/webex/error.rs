//! Errors of the Webex client, each classified once: worth retrying, or final. A
//! variant with a source does not repeat it in its message: print them with
//! [`crate::errors::ErrorChain`].

use std::time::Duration;

/// What went wrong talking to Webex. Messages never contain tokens or download tickets
/// (URLs are stripped from transport errors).
#[derive(Debug, thiserror::Error)]
pub enum WebexError {
    /// Webex answered with an error status.
    #[error("{endpoint}: Webex answered {status}: {message}{}", tracking(.tracking_id))]
    Status {
        /// `list`, `details`, `sites`, `token`.
        endpoint: &'static str,
        /// HTTP status.
        status: u16,
        /// Webex's message (from its error body), or the reason phrase.
        message: String,
        /// Webex's trackingId, for support cases.
        tracking_id: Option<String>,
    },
    /// No response (connection refused or reset, timeout, TLS).
    #[error("{endpoint}: no response from Webex")]
    Network {
        /// Endpoint.
        endpoint: &'static str,
        /// Transport error, its URL removed.
        #[source]
        source: reqwest::Error,
    },
    /// A response that does not have the contract's shape.
    #[error("{endpoint}: unreadable response: {problem}{}", tracking(.tracking_id))]
    Parse {
        /// Endpoint.
        endpoint: &'static str,
        /// What is wrong.
        problem: String,
        /// Webex's trackingId.
        tracking_id: Option<String>,
    },
    /// The token was refused again after a refresh (or cannot be refreshed).
    #[error("Webex refused the access token (401) even after a refresh{}: check the token or the OAuth settings", tracking(.tracking_id))]
    Unauthorized {
        /// Webex's trackingId.
        tracking_id: Option<String>,
    },
    /// Obtaining a token from the OAuth endpoint failed.
    #[error("OAuth token refresh failed")]
    Token(#[source] TokenError),
    /// The operation was cancelled by shutdown.
    #[error("cancelled by shutdown")]
    Cancelled,
}

/// Why a token could not be obtained (the source of [`WebexError::Token`]).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token store (the database, shared by every replica) failed.
    #[error("{doing}")]
    Store {
        /// What was being done, e.g. `cannot store the refreshed tokens`.
        doing: &'static str,
        /// The store's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The token endpoint did not answer.
    #[error("no response from the token endpoint")]
    Network(#[source] reqwest::Error),
    /// The token endpoint's answer could not be read (too large, broke off).
    #[error("the token endpoint's answer")]
    Body(#[source] super::client::BodyError),
    /// The token endpoint refused.
    #[error("the token endpoint answered {status}: {message}{}", tracking(.tracking_id))]
    Refused {
        /// HTTP status.
        status: reqwest::StatusCode,
        /// The endpoint's message, from its error body.
        message: String,
        /// Webex's trackingId.
        tracking_id: Option<String>,
    },
    /// A success answer without the token fields.
    #[error("unreadable token response")]
    Unreadable(#[source] serde_json::Error),
    /// The token endpoint said the refresh chain is revoked or expired (`invalid_grant`,
    /// ...). Final: only a person can authorise the integration again.
    #[error(
        "the OAuth refresh token is revoked or expired ({reason}); nothing is archived until the integration is \
         authorised again: obtain a new refresh token, configure it as webex.oauth.refresh_token (or \
         webex.oauth.refresh_token_file) and restart; the stored chain is replaced because the configured token changed"
    )]
    Revoked {
        /// What the token endpoint answered (status, its words, trackingId).
        reason: String,
    },
    /// The task that refreshes the tokens ended abnormally (a bug).
    #[error("the token refresh task ended abnormally")]
    Task(#[source] tokio::task::JoinError),
}

impl TokenError {
    /// A failure of the token store while `doing` something.
    pub fn store(doing: &'static str, source: impl Into<super::StoreError>) -> Self {
        Self::Store { doing, source: source.into() }
    }
}

fn tracking(id: &Option<String>) -> String {
    id.as_ref().map(|t| format!(" (trackingId {t})")).unwrap_or_default()
}

impl WebexError {
    /// Whether trying again later may succeed (network, 5xx, 423/429 without usable
    /// Retry-After). Final errors are other 4xx, contract violations and auth failures.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status >= 500 || *status == 423 || *status == 429 || *status == 408,
            Self::Network { .. } => true,
            Self::Token(TokenError::Revoked { .. }) => false,
            Self::Token(_) => true,
            Self::Parse { .. } | Self::Unauthorized { .. } | Self::Cancelled => false,
        }
    }

    /// The HTTP status, if Webex answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Webex's trackingId, if any.
    pub fn tracking_id(&self) -> Option<&str> {
        match self {
            Self::Status { tracking_id, .. } | Self::Parse { tracking_id, .. } | Self::Unauthorized { tracking_id } => {
                tracking_id.as_deref()
            }
            _ => None,
        }
    }
}

/// Reads a `Retry-After` value as sent: delay-seconds or an HTTP-date, and leniently what
/// servers and proxies send instead (a negative or fractional number, a number too large
/// for any clock). Returns the delay from `now`, unbounded: [`crate::webex::gate::RetryPolicy`]
/// bounds it. `None` when the value means nothing.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(value) {
        // More seconds than a u64 holds is "for ever": the policy caps it.
        return Some(value.parse::<u64>().map_or(Duration::MAX, Duration::from_secs));
    }
    if value.strip_prefix('-').is_some_and(digits) {
        return Some(Duration::ZERO);
    }
    if let Ok(seconds) = value.parse::<f64>()
        && seconds.is_finite()
        && value.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+')
    {
        return Some(Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    proptest::proptest! {
        #[test]
        fn any_retry_after_is_read_without_panicking(value in "\\PC{0,40}", now in 0u64..4_000_000_000) {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now);
            let _ = parse_retry_after(&value, now);
        }

        #[test]
        fn retry_after_round_trips(seconds in 0u64..100_000_000, now in 0u64..3_000_000_000) {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now);
            proptest::prop_assert_eq!(parse_retry_after(&seconds.to_string(), now), Some(Duration::from_secs(seconds)));
            let date = httpdate::fmt_http_date(now + Duration::from_secs(seconds));
            proptest::prop_assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(seconds)));
        }
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(42));
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(42)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(5));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
        assert_eq!(parse_retry_after("-5", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("1.5", now), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("99999999999999999999", now), Some(Duration::MAX));
        assert_eq!(parse_retry_after("inf", now), None);
    }
}
