//! Per-token rate limiting, 429 bursts, and the bookkeeping of Retry-After pauses that
//! turns early retries into counted violations.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use super::config::{RateLimit, RetryAfterFormat};
use super::faults::Burst429;

/// The verdict for one API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Go on.
    Allow,
    /// Answer 429 with this `Retry-After` value.
    Limited {
        /// The header value.
        retry_after: String,
        /// The request arrived during a pause it had been told about.
        violation: bool,
    },
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A 429 sent to a token: it was sent at `sent`, and asked for quiet until `until`.
struct Pause {
    sent: Instant,
    until: Instant,
    header: String,
    format: RetryAfterFormat,
}

struct BurstState {
    remaining: Option<u64>,
    until: Option<Instant>,
    retry_after: u64,
    format: RetryAfterFormat,
}

pub(crate) struct Limiter {
    rate: Option<RateLimit>,
    buckets: HashMap<String, Bucket>,
    pauses: HashMap<String, Vec<Pause>>,
    burst: Option<BurstState>,
    grace: Duration,
}

impl Limiter {
    pub(crate) fn new(rate: Option<RateLimit>, burst: Option<Burst429>, grace: Duration) -> Self {
        let mut limiter = Self { rate, buckets: HashMap::new(), pauses: HashMap::new(), burst: None, grace };
        if let Some(b) = burst {
            limiter.start_burst(b);
        }
        limiter
    }

    pub(crate) fn set_rate(&mut self, rate: Option<RateLimit>) {
        self.rate = rate;
        self.buckets.clear();
    }

    pub(crate) fn start_burst(&mut self, burst: Burst429) {
        let now = Instant::now();
        self.burst = Some(BurstState {
            remaining: burst.requests,
            until: burst.duration.map(|d| now + d),
            retry_after: burst.retry_after.max(1),
            format: burst.retry_after_format,
        });
    }

    /// Decides about one request bearing `token`.
    pub(crate) fn check(&mut self, token: &str) -> Verdict {
        let now = Instant::now();
        // 1. A pause in force: 429 again; a violation once the grace has passed.
        if let Some(pauses) = self.pauses.get_mut(token) {
            pauses.retain(|p| p.until > now);
            if let Some(last) = pauses.iter().max_by_key(|p| p.until) {
                let violation = pauses.iter().any(|p| now >= p.sent + self.grace);
                let retry_after = match last.format {
                    RetryAfterFormat::HttpDate => last.header.clone(),
                    RetryAfterFormat::Seconds => whole_seconds(last.until - now).to_string(),
                };
                return Verdict::Limited { retry_after, violation };
            }
        }
        // 2. A burst.
        if let Some(burst) = &mut self.burst {
            let by_count = burst.remaining.is_some_and(|r| r > 0);
            let by_time = burst.until.is_some_and(|u| now < u);
            let active = match (burst.remaining, burst.until) {
                (Some(_), Some(_)) => by_count && by_time,
                (Some(_), None) => by_count,
                (None, Some(_)) => by_time,
                (None, None) => false,
            };
            if active {
                if let Some(r) = &mut burst.remaining {
                    *r -= 1;
                }
                let (secs, format) = (burst.retry_after, burst.format);
                return self.pause(token, now, Duration::from_secs(secs), format);
            }
            self.burst = None;
        }
        // 3. The token bucket.
        if let Some(rate) = &self.rate {
            let per_sec = rate.requests_per_second.max(1e-6);
            let capacity = f64::from(rate.burst.max(1));
            let format = rate.retry_after_format;
            let bucket = self.buckets.entry(token.to_string()).or_insert(Bucket { tokens: capacity, last: now });
            bucket.tokens = (bucket.tokens + (now - bucket.last).as_secs_f64() * per_sec).min(capacity);
            bucket.last = now;
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
            } else {
                let wait = Duration::from_secs_f64((1.0 - bucket.tokens) / per_sec);
                return self.pause(token, now, Duration::from_secs(whole_seconds(wait)), format);
            }
        }
        Verdict::Allow
    }

    fn pause(&mut self, token: &str, now: Instant, wait: Duration, format: RetryAfterFormat) -> Verdict {
        let (until, header) = match format {
            RetryAfterFormat::Seconds => (now + wait, wait.as_secs().max(1).to_string()),
            RetryAfterFormat::HttpDate => {
                // HTTP dates have whole seconds: round the deadline up to the next one.
                let wall = SystemTime::now() + wait;
                let since_epoch = wall.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
                let rounded = SystemTime::UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs() + 1);
                let extra = rounded.duration_since(wall).unwrap_or_default();
                (now + wait + extra, httpdate::fmt_http_date(rounded))
            }
        };
        self.pauses.entry(token.to_string()).or_default().push(Pause {
            sent: now,
            until,
            header: header.clone(),
            format,
        });
        Verdict::Limited { retry_after: header, violation: false }
    }
}

/// Whole seconds, rounded up, at least 1.
fn whole_seconds(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_limits() {
        let rate = RateLimit { requests_per_second: 0.5, burst: 2, retry_after_format: RetryAfterFormat::Seconds };
        let mut l = Limiter::new(Some(rate), None, Duration::from_secs(60));
        assert_eq!(l.check("t"), Verdict::Allow);
        assert_eq!(l.check("t"), Verdict::Allow);
        assert_eq!(l.check("t"), Verdict::Limited { retry_after: "2".into(), violation: false });
        // Another token has its own bucket.
        assert_eq!(l.check("u"), Verdict::Allow);
        // Within the grace: limited, not a violation.
        assert!(matches!(l.check("t"), Verdict::Limited { violation: false, .. }));
    }
}
