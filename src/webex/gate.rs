//! The Retry-After gate: every request to the API host waits here first.
//!
//! A 429 (or a 423/503 with Retry-After) received by any worker pauses every worker of
//! this process, and, through the state database, every replica sharing it: replicas
//! usually share one token, and Webex's limits are per user, app or org. The pause is
//! read from the database before each request, so a replica that starts during a pause
//! waits too. An optional client-side ceiling (`webex.max_requests_per_second`) keeps
//! below the limit in the first place.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use super::WebexError;
use crate::metrics::Metrics;
use crate::state::State;

/// Shared pause and request ceiling for the API host.
pub struct RateGate {
    local_until: Mutex<DateTime<Utc>>,
    shared: Option<State>,
    limiter: Option<DefaultDirectRateLimiter>,
    metrics: Metrics,
}

impl std::fmt::Debug for RateGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateGate").field("shared", &self.shared.is_some()).finish_non_exhaustive()
    }
}

impl RateGate {
    /// A gate; `shared` spreads pauses through the database, `max_per_second` (0 = none)
    /// caps the request rate of this process.
    pub fn new(shared: Option<State>, max_per_second: f64, metrics: Metrics) -> Self {
        let limiter = (max_per_second > 0.0).then(|| {
            let quota = if max_per_second >= 1.0 {
                Quota::per_second(NonZeroU32::new(max_per_second.floor() as u32).unwrap_or(NonZeroU32::MIN))
            } else {
                Quota::with_period(Duration::from_secs_f64(1.0 / max_per_second))
                    .unwrap_or(Quota::per_second(NonZeroU32::MIN))
            };
            RateLimiter::direct(quota.allow_burst(NonZeroU32::MIN))
        });
        Self { local_until: Mutex::new(DateTime::UNIX_EPOCH), shared, limiter, metrics }
    }

    /// Waits until a request may be sent: the request ceiling, then every pause this
    /// process or another replica has recorded.
    pub async fn wait(&self, cancel: &CancellationToken) -> Result<(), WebexError> {
        if let Some(limiter) = &self.limiter {
            tokio::select! {
                _ = limiter.until_ready() => {}
                _ = cancel.cancelled() => return Err(WebexError::Cancelled),
            }
        }
        loop {
            let until = self.until().await;
            let now = Utc::now();
            if until <= now {
                return Ok(());
            }
            let wait = (until - now).to_std().unwrap_or(Duration::ZERO);
            tracing::debug!(seconds = wait.as_secs_f64(), "waiting for a Retry-After pause to pass");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => return Err(WebexError::Cancelled),
            }
        }
    }

    /// Pauses every request until `until` (never shortens a running pause).
    pub async fn pause_until(&self, until: DateTime<Utc>) {
        let added = {
            let mut local = self.local_until.lock().unwrap_or_else(|e| e.into_inner());
            let previous = *local;
            *local = previous.max(until);
            let from = previous.max(Utc::now());
            (until - from).num_milliseconds().max(0) as f64 / 1e3
        };
        self.metrics.rate_limited(added);
        if let Some(state) = &self.shared
            && let Err(e) = state.pause_until(until).await
        {
            tracing::warn!(error = %e, "cannot share the Retry-After pause through the database; pausing this process only");
        }
    }

    /// The end of the longest known pause.
    pub async fn until(&self) -> DateTime<Utc> {
        let local = *self.local_until.lock().unwrap_or_else(|e| e.into_inner());
        let shared = match &self.shared {
            Some(state) => match state.paused_until().await {
                Ok(at) => at,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the shared Retry-After pause; using this process's");
                    DateTime::UNIX_EPOCH
                }
            },
            None => DateTime::UNIX_EPOCH,
        };
        local.max(shared)
    }
}
