//! Fault rules: what goes wrong, on which requests, how often.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::RetryAfterFormat;
use super::content::{MediaKind, splitmix64};

/// One fault rule. It matches a request when its filters (`endpoint` or `media`, `ids`)
/// match, its `probability` dice (if any) says yes, and it has been applied fewer than
/// `times` times (counted per recording id when `ids` is set, else in total).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct FaultRule {
    /// What happens.
    #[serde(flatten)]
    pub action: FaultAction,
    /// Only requests about these recording ids (details calls, links, downloads).
    /// Empty = any request of the right kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    /// Chance (0..=1) that a matching request gets the fault; absent = always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Apply at most this many times (per id when `ids` is set); absent = forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    /// API faults only: which endpoint. Absent = every `/v1` endpoint but the token one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<FaultEndpoint>,
    /// Download faults only: which file. Absent = the recording file only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<FaultMedia>,
}

impl FaultRule {
    /// A rule that always applies.
    pub fn new(action: FaultAction) -> Self {
        Self { action, ids: Vec::new(), probability: None, times: None, endpoint: None, media: None }
    }

    /// Restricts the rule to these recording ids.
    pub fn ids<I: IntoIterator<Item = S>, S: Into<String>>(mut self, ids: I) -> Self {
        self.ids = ids.into_iter().map(Into::into).collect();
        self
    }

    /// Applies the rule at most `n` times (per id when ids are set).
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    /// Applies the rule with probability `p`.
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = Some(p);
        self
    }

    /// Restricts an API fault to one endpoint.
    pub fn endpoint(mut self, endpoint: FaultEndpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Restricts a download fault to one file kind.
    pub fn media(mut self, media: FaultMedia) -> Self {
        self.media = Some(media);
        self
    }
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// API host: answer with this status (500, 502, 503, 504...) and a Webex error body.
    ApiError {
        /// HTTP status.
        status: u16,
    },
    /// API host: 423 Locked, with `Retry-After` seconds when given.
    Locked {
        /// Seconds for `Retry-After`; absent = no header.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    /// Download: abort the connection after this many body bytes.
    Reset {
        /// Bytes sent before the reset.
        after_bytes: u64,
    },
    /// Download: end the body cleanly after this many bytes, short of `Content-Length`.
    ShortBody {
        /// Bytes sent.
        after_bytes: u64,
    },
    /// Download: pause after this many bytes, then go on.
    Stall {
        /// Bytes sent before the pause.
        after_bytes: u64,
        /// Length of the pause.
        #[serde(with = "humantime_serde")]
        duration: Duration,
    },
    /// Download: a 200 `text/html` login page instead of the media.
    LoginPage,
    /// Download: at most this many bytes per second.
    Throttle {
        /// The cap.
        bytes_per_second: u64,
    },
    /// Details: links whose tickets have already expired (the expiration is in the past).
    ExpiredLink,
    /// Details: links that expire soon.
    ExpiringLink {
        /// Time left on the links.
        #[serde(with = "humantime_serde")]
        expires_in: Duration,
    },
}

impl FaultAction {
    /// The short name used in counters.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ApiError { .. } => "api_error",
            Self::Locked { .. } => "locked",
            Self::Reset { .. } => "reset",
            Self::ShortBody { .. } => "short_body",
            Self::Stall { .. } => "stall",
            Self::LoginPage => "login_page",
            Self::Throttle { .. } => "throttle",
            Self::ExpiredLink => "expired_link",
            Self::ExpiringLink { .. } => "expiring_link",
        }
    }

    fn class(&self) -> Class {
        match self {
            Self::ApiError { .. } | Self::Locked { .. } => Class::Api,
            Self::ExpiredLink | Self::ExpiringLink { .. } => Class::Link,
            _ => Class::Download,
        }
    }
}

/// The API endpoint an API fault is restricted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultEndpoint {
    /// Every `/v1` endpoint, the token endpoint included.
    All,
    /// `GET /v1/recordings`.
    List,
    /// `GET /v1/admin/recordings`.
    AdminList,
    /// `GET /v1/recordings/{id}`.
    Details,
    /// `GET /v1/meetingPreferences/sites`.
    Sites,
    /// `POST /v1/access_token`.
    Token,
}

/// The file a download fault is restricted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultMedia {
    /// Any of the three.
    Any,
    /// The recording file.
    Recording,
    /// The audio track.
    Audio,
    /// The transcript.
    Transcript,
}

/// A burst of 429s: the next `requests` API requests, and/or every API request for
/// `duration`, get 429 with this `Retry-After`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Burst429 {
    /// How many requests get a 429 (absent = no count limit; then `duration` is needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    /// For how long 429s are sent (absent = until `requests` are used up).
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    /// `Retry-After`, whole seconds (at least 1).
    #[serde(default = "default_retry_after")]
    pub retry_after: u64,
    /// How `Retry-After` is written.
    #[serde(default)]
    pub retry_after_format: RetryAfterFormat,
}

fn default_retry_after() -> u64 {
    1
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Api,
    Link,
    Download,
}

/// What the API middleware knows about a request when it consults the faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApiTarget {
    List,
    AdminList,
    Details,
    Sites,
    Token,
}

/// The rules and how often each was used.
pub(crate) struct FaultState {
    rules: Vec<RuleState>,
    dice: u64,
}

struct RuleState {
    rule: FaultRule,
    used: u64,
    used_by_id: HashMap<String, u64>,
}

impl FaultState {
    pub(crate) fn new(rules: Vec<FaultRule>, seed: u64) -> Self {
        let mut state = Self { rules: Vec::new(), dice: splitmix64(seed ^ 0xFA17) };
        state.set(rules);
        state
    }

    pub(crate) fn set(&mut self, rules: Vec<FaultRule>) {
        self.rules = rules.into_iter().map(|rule| RuleState { rule, used: 0, used_by_id: HashMap::new() }).collect();
    }

    pub(crate) fn add(&mut self, rules: Vec<FaultRule>) {
        self.rules.extend(rules.into_iter().map(|rule| RuleState { rule, used: 0, used_by_id: HashMap::new() }));
    }

    pub(crate) fn rules(&self) -> Vec<FaultRule> {
        self.rules.iter().map(|r| r.rule.clone()).collect()
    }

    /// The API fault for a request, if any.
    pub(crate) fn api(&mut self, target: ApiTarget, id: Option<&str>) -> Option<FaultAction> {
        self.pick(Class::Api, id, |rule| match rule.endpoint {
            None => target != ApiTarget::Token,
            Some(FaultEndpoint::All) => true,
            Some(FaultEndpoint::List) => target == ApiTarget::List,
            Some(FaultEndpoint::AdminList) => target == ApiTarget::AdminList,
            Some(FaultEndpoint::Details) => target == ApiTarget::Details,
            Some(FaultEndpoint::Sites) => target == ApiTarget::Sites,
            Some(FaultEndpoint::Token) => target == ApiTarget::Token,
        })
    }

    /// The link fault for a details response about `id`, if any.
    pub(crate) fn link(&mut self, id: &str) -> Option<FaultAction> {
        self.pick(Class::Link, Some(id), |_| true)
    }

    /// The download fault for a download of `media` of `id`, if any.
    pub(crate) fn download(&mut self, id: &str, media: MediaKind) -> Option<FaultAction> {
        self.pick(Class::Download, Some(id), |rule| match rule.media {
            None | Some(FaultMedia::Recording) => media == MediaKind::Recording,
            Some(FaultMedia::Any) => true,
            Some(FaultMedia::Audio) => media == MediaKind::Audio,
            Some(FaultMedia::Transcript) => media == MediaKind::Transcript,
        })
    }

    fn pick(&mut self, class: Class, id: Option<&str>, filter: impl Fn(&FaultRule) -> bool) -> Option<FaultAction> {
        for i in 0..self.rules.len() {
            let rule = &self.rules[i].rule;
            if rule.action.class() != class || !filter(rule) {
                continue;
            }
            if !rule.ids.is_empty() && !id.is_some_and(|id| rule.ids.iter().any(|r| r == id)) {
                continue;
            }
            let per_id = !rule.ids.is_empty();
            let used = match (per_id, id) {
                (true, Some(id)) => self.rules[i].used_by_id.get(id).copied().unwrap_or(0),
                _ => self.rules[i].used,
            };
            if rule.times.is_some_and(|times| used >= times) {
                continue;
            }
            if let Some(p) = rule.probability
                && !self.roll(p)
            {
                continue;
            }
            let state = &mut self.rules[i];
            state.used += 1;
            if let (true, Some(id)) = (per_id, id) {
                *state.used_by_id.entry(id.to_string()).or_insert(0) += 1;
            }
            return Some(state.rule.action.clone());
        }
        None
    }

    fn roll(&mut self, p: f64) -> bool {
        self.dice = splitmix64(self.dice);
        ((self.dice >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_count_per_id_when_ids_are_named() {
        let rule = FaultRule::new(FaultAction::Reset { after_bytes: 1 }).ids(["a", "b"]).times(1);
        let mut state = FaultState::new(vec![rule], 1);
        assert!(state.download("a", MediaKind::Recording).is_some());
        assert!(state.download("a", MediaKind::Recording).is_none());
        assert!(state.download("b", MediaKind::Recording).is_some());
        assert!(state.download("c", MediaKind::Recording).is_none());
        assert!(state.api(ApiTarget::Details, Some("b")).is_none());
    }

    #[test]
    fn rules_parse_from_toml() {
        #[derive(Deserialize)]
        struct Doc {
            faults: Vec<FaultRule>,
        }
        let doc: Doc = toml::from_str(
            r#"
            [[faults]]
            kind = "stall"
            after_bytes = 10
            duration = "2s"
            ids = ["x"]
            times = 1
            [[faults]]
            kind = "api_error"
            status = 503
            probability = 0.5
            endpoint = "list"
            "#,
        )
        .expect("parse");
        assert_eq!(doc.faults[0].action, FaultAction::Stall { after_bytes: 10, duration: Duration::from_secs(2) });
        assert_eq!(doc.faults[1].endpoint, Some(FaultEndpoint::List));
    }
}
