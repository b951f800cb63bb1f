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
    /// The header is repeated as it was (an HTTP date, a raw value) rather than
    /// recomputed as the seconds left.
    fixed: bool,
}

/// What a burst sends as `Retry-After`.
enum BurstRetry {
    /// A computed value.
    Computed { secs: u64, format: RetryAfterFormat },
    /// This exact value.
    Raw(String),
}

struct BurstState {
    remaining: Option<u64>,
    until: Option<Instant>,
    retry: BurstRetry,
}

/// The longest pause a raw `Retry-After` value sets; longer ones (and unreadable ones)
/// set none.
const RAW_PAUSE_MAX: Duration = Duration::from_secs(86_400);

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
        let retry = match burst.retry_after_raw {
            Some(raw) => BurstRetry::Raw(raw),
            None => BurstRetry::Computed { secs: burst.retry_after.max(1), format: burst.retry_after_format },
        };
        self.burst = Some(BurstState {
            remaining: burst.requests,
            until: burst.duration.and_then(|d| now.checked_add(d)),
            retry,
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
                let retry_after =
                    if last.fixed { last.header.clone() } else { whole_seconds(last.until - now).to_string() };
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
                return match &burst.retry {
                    BurstRetry::Computed { secs, format } => {
                        let (secs, format) = (*secs, *format);
                        self.pause(token, now, Duration::from_secs(secs), format)
                    }
                    BurstRetry::Raw(raw) => {
                        let raw = raw.clone();
                        self.raw_pause(token, now, raw)
                    }
                };
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
            fixed: format == RetryAfterFormat::HttpDate,
        });
        Verdict::Limited { retry_after: header, violation: false }
    }

    /// A 429 with exactly `raw` as `Retry-After`; a pause only when `raw` reads as one
    /// ([`raw_wait`]).
    fn raw_pause(&mut self, token: &str, now: Instant, raw: String) -> Verdict {
        if let Some(until) = raw_wait(&raw, SystemTime::now()).and_then(|wait| now.checked_add(wait)) {
            self.pauses.entry(token.to_string()).or_default().push(Pause {
                sent: now,
                until,
                header: raw.clone(),
                fixed: true,
            });
        }
        Verdict::Limited { retry_after: raw, violation: false }
    }
}

/// How long a raw `Retry-After` value asks to wait, when the simulator holds the client
/// to it: a whole number of seconds from 1 to 86,400 (digits only), or an HTTP date in
/// the future at most 86,400 s away. `None` for anything else (`0`, `-5`, `soon`, a past
/// date, a number too large), which sets no pause and so can cause no violation.
pub(crate) fn raw_wait(raw: &str, now: SystemTime) -> Option<Duration> {
    let value = raw.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(value.parse::<u64>().ok()?)
    } else {
        httpdate::parse_http_date(value).ok()?.duration_since(now).ok()?
    };
    (!wait.is_zero() && wait <= RAW_PAUSE_MAX).then_some(wait)
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
    fn raw_values_set_a_pause_only_when_they_read_as_a_near_future() {
        let now = SystemTime::now();
        let secs = |s: u64| Some(Duration::from_secs(s));
        assert_eq!(raw_wait("2", now), secs(2));
        assert_eq!(raw_wait(" 86400 ", now), secs(86_400));
        for none in ["0", "-5", "soon", "", "1.5", "+3", "86401", "99999999999999999999", "18446744073709551615"] {
            assert_eq!(raw_wait(none, now), None, "{none:?}");
        }
        let past = httpdate::fmt_http_date(now - Duration::from_secs(60));
        assert_eq!(raw_wait(&past, now), None);
        let soon = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert!(raw_wait(&soon, now).is_some_and(|w| w <= Duration::from_secs(30)));
        let far = httpdate::fmt_http_date(now + Duration::from_secs(2 * 86_400));
        assert_eq!(raw_wait(&far, now), None);
    }

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
