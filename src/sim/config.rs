//! The simulator's settings: the population it invents, its tokens, limits and faults.
//! Every field has a default, so an empty TOML file (or `SimConfig::default()`) is a
//! working simulator.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::faults::{Burst429, FaultRule};
use super::store::BinMove;

/// Everything a simulator run is made of. Deserializable from the scenario TOML
/// (see the module documentation of [`crate::sim`] for the format).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Seed of the population and of the fault dice: the same seed gives the same ids,
    /// sizes, hosts and relative times.
    pub seed: u64,
    /// How many recordings exist at start.
    pub recordings: usize,
    /// The createTimes are spread over this span before [`SimConfig::end`].
    #[serde(with = "humantime_serde")]
    pub span: Duration,
    /// The newest createTime possible; `None` = the moment the simulator starts.
    pub end: Option<DateTime<Utc>>,
    /// Smallest generated recording size, bytes.
    pub size_min: u64,
    /// Largest generated recording size, bytes (inclusive).
    pub size_max: u64,
    /// A fixed size for every generated recording (wins over `size_min..=size_max`).
    pub size: Option<u64>,
    /// Sizes of named recording ids, bytes (wins over everything else).
    pub size_overrides: BTreeMap<String, u64>,
    /// The Webex sites; exactly one should be `default` (the first is used otherwise).
    pub sites: Vec<SiteConfig>,
    /// Host e-mail addresses. The first is the token's own user (who is also the admin).
    pub hosts: Vec<String>,
    /// Fraction (0..=1) of the recordings hosted by others that are shared with the
    /// token's user (listed by `/v1/recordings` with `shareToMe: true`).
    pub share_to_me_fraction: f64,
    /// Fraction (0..=1) of recordings with "Prevent downloading" on (details carry no links).
    pub prevent_downloading_fraction: f64,
    /// Recording ids with "Prevent downloading" on, besides the random fraction.
    pub prevent_downloading_ids: Vec<String>,
    /// Fraction (0..=1) of recordings in the recycle bin (`status = deleted`).
    pub deleted_fraction: f64,
    /// Moves into (and out of) the recycle bin at given times: `deleted`, `purged`,
    /// `available`.
    pub recycle_bin: Vec<BinMove>,
    /// The token's user is a Compliance Officer: it may list `status=purged` (the admin
    /// listing; the user listing with a `meetingId` too), and fetch the details (and
    /// links) of recordings in the recycle bin. Others get 403 for purged listings and
    /// 404 for the details of a deleted recording.
    pub compliance_officer: bool,
    /// Relative weights of the recording formats (`MP4`, `ARF`, `UPLOADED`, or any string).
    pub format_weights: BTreeMap<String, u32>,
    /// How long a temporary direct download link (and its tickets) lives.
    #[serde(with = "humantime_serde")]
    pub link_lifetime: Duration,
    /// Lifetime of an access token (the initial one and every issued one).
    #[serde(with = "humantime_serde")]
    pub access_token_lifetime: Duration,
    /// Lifetime of a refresh token.
    #[serde(with = "humantime_serde")]
    pub refresh_token_lifetime: Duration,
    /// Whether each refresh issues a new refresh token and revokes the old one (`true`),
    /// or hands back the same one.
    pub rotate_refresh_tokens: bool,
    /// Per-token request limit on the API host; `None` = unlimited.
    pub rate_limit: Option<RateLimit>,
    /// How long after a 429 a request with the same token is still forgiven (it was
    /// probably already in flight); after that and before the Retry-After has passed,
    /// it counts as a violation.
    #[serde(with = "humantime_serde")]
    pub violation_grace: Duration,
    /// Fault rules, tried in order; the first that matches a request applies (the
    /// `hostile` preset's rules go first).
    pub faults: Vec<FaultRule>,
    /// A burst of 429s active from the start (the `hostile` preset's storm replaces it).
    pub burst_429: Option<Burst429>,
    /// Address of the API host; `None` = `127.0.0.1:0`.
    pub listen: Option<SocketAddr>,
    /// Address of the site (download) host; `None` = the API host's IP, port 0.
    pub site_listen: Option<SocketAddr>,
    /// Address of the trap host (a host no answer should lead to); `None` = another host
    /// (127.0.0.2 beside an API on 127.0.0.1, else the API host's IP), port 0.
    pub trap_listen: Option<SocketAddr>,
    /// Install the `hostile` preset at start: each fault of issue 11 on a subset of the
    /// population chosen by `seed`, and a storm of `Retry-After: 0` (see
    /// [`super::HostilePlan`]). Needs enough recordings listed for the token's user.
    pub hostile: bool,
    /// The initial access token; `None` = a random one.
    pub access_token: Option<String>,
    /// The OAuth client id; `None` = a random one.
    pub client_id: Option<String>,
    /// The OAuth client secret; `None` = a random one.
    pub client_secret: Option<String>,
    /// The initial refresh token; `None` = a random one.
    pub refresh_token: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            recordings: 20,
            span: Duration::from_secs(60 * 86_400),
            end: None,
            size_min: 64 << 10,
            size_max: 1 << 20,
            size: None,
            size_overrides: BTreeMap::new(),
            sites: vec![
                SiteConfig { url: "acme.webex.com".into(), default: true },
                SiteConfig { url: "acme-eu.webex.com".into(), default: false },
                SiteConfig { url: "acme-apac.webex.com".into(), default: false },
            ],
            hosts: vec![
                "admin@acme.example".into(),
                "alice@acme.example".into(),
                "bob@acme.example".into(),
                "carol@acme.example".into(),
            ],
            share_to_me_fraction: 0.3,
            prevent_downloading_fraction: 0.0,
            prevent_downloading_ids: Vec::new(),
            deleted_fraction: 0.0,
            recycle_bin: Vec::new(),
            compliance_officer: false,
            format_weights: BTreeMap::from([("MP4".into(), 8), ("ARF".into(), 1), ("UPLOADED".into(), 1)]),
            link_lifetime: Duration::from_secs(3 * 3600),
            access_token_lifetime: Duration::from_secs(14 * 86_400),
            refresh_token_lifetime: Duration::from_secs(90 * 86_400),
            rotate_refresh_tokens: true,
            rate_limit: None,
            violation_grace: Duration::from_millis(250),
            faults: Vec::new(),
            burst_429: None,
            listen: None,
            site_listen: None,
            trap_listen: None,
            hostile: false,
            access_token: None,
            client_id: None,
            client_secret: None,
            refresh_token: None,
        }
    }
}

impl SimConfig {
    /// Reads a scenario file's text (TOML).
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

/// One Webex site.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Host name, e.g. `acme.webex.com`.
    pub url: String,
    /// The token user's preferred site (what the admin listing uses without `siteUrl`).
    #[serde(default)]
    pub default: bool,
}

/// A token bucket per access token.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Refill rate, requests per second.
    pub requests_per_second: f64,
    /// Bucket size: how many requests may arrive at once.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// How `Retry-After` is written.
    #[serde(default)]
    pub retry_after_format: RetryAfterFormat,
}

fn default_burst() -> u32 {
    1
}

/// How a `Retry-After` header is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryAfterFormat {
    /// Whole seconds, at least 1 (what Webex sends).
    #[default]
    Seconds,
    /// An HTTP date (RFC 9110), rounded up to the next whole second.
    HttpDate,
}
