//! The Retry-After gate: every request to the API host waits here first.
//!
//! A 429 (or a 423/503 with Retry-After) received by any worker pauses every worker of
//! this process, and, through the state database, every replica sharing it: replicas
//! usually share one token, and Webex's limits are per user, app or org. The pause is
//! read from the database before each request, so a replica that starts during a pause
//! waits too. An optional client-side ceiling (`webex.max_requests_per_second`) keeps
//! below the limit in the first place.
//!
//! Whatever Webex (or a proxy) sends, a pause lasts at least [`MIN_PAUSE`] and at most
//! `webex.max_retry_after` ([`RetryPolicy::pause`]): `Retry-After: 0`, a negative or
//! unreadable value, a date in the past or one that overflows all become a bounded
//! pause. A Retry-After of a second or more is honoured as sent. One that means nothing
//! (absent, `0`, under a second, unreadable) cannot be trusted to space requests: while
//! such 429s follow each other without a success in between, the pauses grow
//! exponentially (with jitter) up to [`MAX_GROWN_PAUSE`]. While the API rate limits, only
//! one request at a time probes it (the others wait for its answer), so a server that
//! always answers `Retry-After: 0` sees a handful of requests a minute, not a tight loop.
//!
//! Replicas share what Webex asked for (bounded), not this growth: a streak is this
//! process's own (another replica's successes are not seen here), and a long pause
//! grown by one replica's unlucky probes must not stop every replica.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::{StoreError, WebexError};
use crate::metrics::Metrics;

/// The shortest pause a Retry-After can impose.
pub const MIN_PAUSE: Duration = Duration::from_secs(1);
/// The pause used when a 429 carries no usable Retry-After (before the growth below).
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(5);
/// The longest pause the growth over a streak of 429s reaches by itself (a longer
/// `Retry-After` is still honoured, up to `webex.max_retry_after`).
pub const MAX_GROWN_PAUSE: Duration = Duration::from_secs(60);

/// Where a Retry-After pause is shared with every replica (the state database). A pause
/// that cannot be shared still holds in this process: errors are logged, not returned.
#[async_trait]
pub trait SharedPause: Send + Sync {
    /// Extends the shared pause to at least `until` (never shortens it).
    async fn pause_until(&self, until: DateTime<Utc>) -> Result<(), StoreError>;
    /// The shared pause's end (may be in the past).
    async fn paused_until(&self) -> Result<DateTime<Utc>, StoreError>;
}

/// How long to pause after a rate-limiting answer: the rule every pause goes through,
/// the one written to the database included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The longest pause (`webex.max_retry_after`).
    pub max: Duration,
}

impl RetryPolicy {
    /// The pause after the `streak`-th consecutive rate-limiting answer (1 = the first
    /// since the last success), given the server's `Retry-After` (`None` when absent or
    /// unreadable) and a jitter draw `jitter` in `[0, 1)`.
    ///
    /// The server's value is honoured, but never below [`MIN_PAUSE`] nor above `max`.
    /// When it means nothing (absent, or under [`MIN_PAUSE`]), from the second
    /// consecutive answer on, the pause is at least 1 s doubled per further answer, up to
    /// [`MAX_GROWN_PAUSE`] (plus up to 25% jitter), so that `Retry-After: 0` cannot make
    /// a tight loop. A value of a second or more is the server's own spacing: it is
    /// followed as sent (growing it would only keep clients away longer than asked).
    pub fn pause(&self, retry_after: Option<Duration>, streak: u32, jitter: f64) -> Duration {
        let max = self.max.max(MIN_PAUSE);
        let asked = retry_after.unwrap_or(DEFAULT_PAUSE);
        let meaningful = retry_after.is_some_and(|d| d >= MIN_PAUSE);
        let floor = if streak >= 2 && !meaningful {
            let grown = MIN_PAUSE.saturating_mul(1u32 << (streak - 2).min(30)).min(MAX_GROWN_PAUSE);
            let jitter = if jitter.is_finite() { jitter.clamp(0.0, 1.0) } else { 0.0 };
            grown.saturating_add(grown.mul_f64(jitter * 0.25).min(max))
        } else {
            MIN_PAUSE
        };
        asked.max(floor).clamp(MIN_PAUSE, max)
    }

    /// `now + pause`, saturating instead of overflowing.
    pub fn until(now: DateTime<Utc>, pause: Duration) -> DateTime<Utc> {
        crate::time::after(now, pause)
    }
}

/// Shared pause and request ceiling for the API host.
pub struct RateGate {
    local_until: Mutex<DateTime<Utc>>,
    shared: Option<Arc<dyn SharedPause>>,
    limiter: Option<DefaultDirectRateLimiter>,
    metrics: Metrics,
    policy: RetryPolicy,
    /// Rate-limiting answers since the last success.
    streak: AtomicU32,
    /// While `streak > 0`, one request at a time probes the API.
    probe: Semaphore,
}

impl std::fmt::Debug for RateGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateGate").field("shared", &self.shared.is_some()).finish_non_exhaustive()
    }
}

/// Permission to send one request. While the API is rate limiting, it holds the single
/// probe slot: keep it until the answer's status is known, then call
/// [`RateGate::succeeded`] or [`RateGate::rate_limited`] and drop it.
#[derive(Debug)]
pub struct Pass<'a> {
    _probe: Option<SemaphorePermit<'a>>,
}

impl RateGate {
    /// A gate; `shared` spreads pauses to other replicas (through the database),
    /// `max_per_second` (0 = none) caps the request rate of this process, `policy` bounds
    /// every pause.
    pub fn new(
        shared: Option<Arc<dyn SharedPause>>,
        max_per_second: f64,
        policy: RetryPolicy,
        metrics: Metrics,
    ) -> Self {
        let limiter = (max_per_second > 0.0).then(|| {
            let quota = if max_per_second >= 1.0 {
                Quota::per_second(NonZeroU32::new(max_per_second.floor() as u32).unwrap_or(NonZeroU32::MIN))
            } else {
                Quota::with_period(Duration::from_secs_f64(1.0 / max_per_second))
                    .unwrap_or(Quota::per_second(NonZeroU32::MIN))
            };
            RateLimiter::direct(quota.allow_burst(NonZeroU32::MIN))
        });
        Self {
            local_until: Mutex::new(DateTime::UNIX_EPOCH),
            shared,
            limiter,
            metrics,
            policy,
            streak: AtomicU32::new(0),
            probe: Semaphore::new(1),
        }
    }

    /// The pause rule of this gate.
    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// Waits until a request may be sent: the request ceiling, every pause this process
    /// or another replica has recorded, and, while the API is rate limiting, the probe slot.
    pub async fn wait(&self, cancel: &CancellationToken) -> Result<Pass<'_>, WebexError> {
        if let Some(limiter) = &self.limiter {
            tokio::select! {
                _ = limiter.until_ready() => {}
                _ = cancel.cancelled() => return Err(WebexError::Cancelled),
            }
        }
        loop {
            self.wait_for_pause(cancel).await?;
            if self.streak.load(Ordering::Acquire) == 0 {
                return Ok(Pass { _probe: None });
            }
            let permit = tokio::select! {
                permit = self.probe.acquire() => permit.map_err(|_| WebexError::Cancelled)?,
                _ = cancel.cancelled() => return Err(WebexError::Cancelled),
            };
            // Another probe may have been refused while this one waited for the slot.
            if self.until().await <= Utc::now() {
                return Ok(Pass { _probe: Some(permit) });
            }
        }
    }

    async fn wait_for_pause(&self, cancel: &CancellationToken) -> Result<(), WebexError> {
        loop {
            let until = self.until().await;
            let now = Utc::now();
            if until <= now {
                return Ok(());
            }
            let wait = (until - now).to_std().unwrap_or(Duration::ZERO).min(self.policy.max);
            tracing::debug!(seconds = wait.as_secs_f64(), "waiting for a Retry-After pause to pass");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => return Err(WebexError::Cancelled),
            }
        }
    }

    /// The API answered without rate limiting: the streak of 429s is over.
    pub fn succeeded(&self) {
        self.streak.store(0, Ordering::Release);
    }

    /// The API answered with a rate limit and `retry_after` (as read, `None` when absent
    /// or unreadable): pauses this process's requests for the pause the policy gives for
    /// this streak, and every replica's, through the database, for what Webex asked
    /// (bounded). Returns this process's pause.
    pub async fn rate_limited(&self, retry_after: Option<Duration>) -> Duration {
        let streak = self.streak.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        let pause = self.policy.pause(retry_after, streak, rand::random::<f64>());
        let now = Utc::now();
        self.pause_here(RetryPolicy::until(now, pause));
        // Other replicas get what Webex asked for, bounded; the growth stays here.
        self.share(RetryPolicy::until(now, self.policy.pause(retry_after, 1, 0.0))).await;
        pause
    }

    /// Pauses every request, here and in every replica, until `until` (never shortens a
    /// running pause; never longer than the policy's maximum from now).
    pub async fn pause_until(&self, until: DateTime<Utc>) {
        self.pause_here(until);
        self.share(until).await;
    }

    /// Pauses this process's requests until `until` (bounded like every pause).
    fn pause_here(&self, until: DateTime<Utc>) {
        let now = Utc::now();
        let until = until.min(RetryPolicy::until(now, self.policy.max));
        let added = {
            let mut local = self.local_until.lock().unwrap_or_else(|e| e.into_inner());
            let previous = *local;
            *local = previous.max(until);
            let from = previous.max(now);
            (until - from).num_milliseconds().max(0) as f64 / 1e3
        };
        self.metrics.rate_limited(added);
    }

    /// Extends the pause every replica reads (bounded like every pause).
    async fn share(&self, until: DateTime<Utc>) {
        let until = until.min(RetryPolicy::until(Utc::now(), self.policy.max));
        if let Some(shared) = &self.shared
            && let Err(e) = shared.pause_until(until).await
        {
            tracing::warn!(error = %crate::errors::ErrorChain(&*e), "cannot share the Retry-After pause through the database; pausing this process only");
        }
    }

    /// The end of the longest known pause, at most the policy's maximum from now (a
    /// pause read from the database is trusted no further than one written by us).
    pub async fn until(&self) -> DateTime<Utc> {
        let local = *self.local_until.lock().unwrap_or_else(|e| e.into_inner());
        let shared = match &self.shared {
            Some(shared) => match shared.paused_until().await {
                Ok(at) => at,
                Err(e) => {
                    tracing::debug!(error = %crate::errors::ErrorChain(&*e), "cannot read the shared Retry-After pause; using this process's");
                    DateTime::UNIX_EPOCH
                }
            },
            None => DateTime::UNIX_EPOCH,
        };
        local.max(shared).min(RetryPolicy::until(Utc::now(), self.policy.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn every_pause_is_between_one_second_and_the_maximum() {
        let policy = RetryPolicy { max: HOUR };
        assert_eq!(policy.pause(Some(Duration::ZERO), 1, 0.0), MIN_PAUSE);
        assert_eq!(policy.pause(Some(Duration::from_millis(10)), 1, 0.9), MIN_PAUSE);
        assert_eq!(policy.pause(Some(Duration::from_secs(7)), 1, 0.5), Duration::from_secs(7));
        assert_eq!(policy.pause(Some(Duration::MAX), 1, 0.5), HOUR);
        assert_eq!(policy.pause(None, 1, 0.0), DEFAULT_PAUSE);
        assert_eq!(policy.pause(Some(Duration::ZERO), u32::MAX, 1.0), MAX_GROWN_PAUSE.mul_f64(1.25));
        assert_eq!(policy.pause(Some(Duration::from_secs(7200)), u32::MAX, 1.0), HOUR);
        assert_eq!(policy.pause(Some(Duration::ZERO), 3, f64::NAN), Duration::from_secs(2));
    }

    #[test]
    fn consecutive_rate_limits_back_off_exponentially() {
        let policy = RetryPolicy { max: HOUR };
        let pauses: Vec<u64> = (1..=10).map(|n| policy.pause(Some(Duration::ZERO), n, 0.0).as_secs()).collect();
        assert_eq!(pauses, [1, 1, 2, 4, 8, 16, 32, 60, 60, 60], "growth stops at MAX_GROWN_PAUSE");
        // Jitter adds at most a quarter, never less than the floor.
        let jittered = policy.pause(Some(Duration::ZERO), 5, 0.999);
        assert!(jittered > Duration::from_secs(8) && jittered < Duration::from_secs(10), "{jittered:?}");
        // A Retry-After longer than the floor wins.
        assert_eq!(policy.pause(Some(Duration::from_secs(30)), 4, 0.0), Duration::from_secs(30));
        // So does one absent (5 s) until the growth passes it.
        assert_eq!(policy.pause(None, 4, 0.0), DEFAULT_PAUSE);
        assert_eq!(policy.pause(None, 9, 0.0), MAX_GROWN_PAUSE);
    }

    #[test]
    fn a_retry_after_of_a_second_or_more_is_followed_as_sent_however_long_the_streak() {
        let policy = RetryPolicy { max: HOUR };
        for streak in [1, 2, 5, 10, 1000] {
            assert_eq!(policy.pause(Some(Duration::from_secs(2)), streak, 0.9), Duration::from_secs(2));
            assert_eq!(policy.pause(Some(Duration::from_millis(1500)), streak, 0.9), Duration::from_millis(1500));
        }
    }

    /// Records the pauses shared with other replicas.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<DateTime<Utc>>>);

    #[async_trait]
    impl SharedPause for Recorder {
        async fn pause_until(&self, until: DateTime<Utc>) -> Result<(), StoreError> {
            self.0.lock().unwrap().push(until);
            Ok(())
        }
        async fn paused_until(&self) -> Result<DateTime<Utc>, StoreError> {
            Ok(DateTime::UNIX_EPOCH)
        }
    }

    #[tokio::test]
    async fn replicas_share_what_webex_asked_not_this_processs_growth() {
        let shared = Arc::new(Recorder::default());
        let gate = RateGate::new(Some(shared.clone()), 0.0, RetryPolicy { max: HOUR }, Metrics::new());
        let before = Utc::now();
        let mut local = Duration::ZERO;
        for _ in 0..8 {
            local = gate.rate_limited(Some(Duration::ZERO)).await;
        }
        // The 8th `Retry-After: 0` in a row: 32 s or more here...
        assert!(local >= Duration::from_secs(32), "{local:?}");
        assert!(gate.until().await >= RetryPolicy::until(before, Duration::from_secs(32)));
        // ...but every replica was asked to wait only what Webex asked for, bounded (1 s).
        let after = Utc::now();
        let shared = shared.0.lock().unwrap();
        assert_eq!(shared.len(), 8);
        for until in shared.iter() {
            assert!(*until >= RetryPolicy::until(before, MIN_PAUSE), "{until}");
            assert!(*until <= RetryPolicy::until(after, MIN_PAUSE), "{until}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_pause_is_bounded(
            asked in proptest::option::of(proptest::num::u64::ANY),
            nanos in 0u32..1_000_000_000,
            streak in proptest::num::u32::ANY,
            jitter in proptest::num::f64::ANY,
            max in 1u64..1_000_000,
        ) {
            let policy = RetryPolicy { max: Duration::from_secs(max) };
            let pause = policy.pause(asked.map(|s| Duration::new(s, nanos)), streak, jitter);
            proptest::prop_assert!(pause >= MIN_PAUSE && pause <= policy.max, "{pause:?}");
            let _ = RetryPolicy::until(Utc::now(), pause);
        }
    }

    #[test]
    fn until_saturates() {
        let now = Utc::now();
        assert_eq!(RetryPolicy::until(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(RetryPolicy::until(DateTime::<Utc>::MAX_UTC, Duration::from_secs(1)), DateTime::<Utc>::MAX_UTC);
    }
}
