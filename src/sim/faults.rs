//! Fault rules: what goes wrong, on which requests, how often.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

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
    /// API and listing faults only: which endpoint. Absent = every `/v1` endpoint but the
    /// token one (listing faults: both listings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<FaultEndpoint>,
    /// Download faults only: which file. Absent = the recording file only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<FaultMedia>,
    /// Only listing requests about these sites (their `siteUrl`; the admin listing without
    /// one lists the default site), case-insensitive. A rule naming sites applies to no
    /// other request (details, site list, token, downloads). Empty = any request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<String>,
}

impl FaultRule {
    /// A rule that always applies.
    pub fn new(action: FaultAction) -> Self {
        Self { action, ids: Vec::new(), probability: None, times: None, endpoint: None, media: None, sites: Vec::new() }
    }

    /// Restricts the rule to listing requests about these sites.
    pub fn sites<I: IntoIterator<Item = S>, S: Into<String>>(mut self, sites: I) -> Self {
        self.sites = sites.into_iter().map(Into::into).collect();
        self
    }

    /// Whether the rule may apply to a request about `site` (`None`: not a listing, or a
    /// user listing of every site).
    fn covers_site(&self, site: Option<&str>) -> bool {
        self.sites.is_empty() || site.is_some_and(|site| self.sites.iter().any(|s| s.eq_ignore_ascii_case(site)))
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
    /// API host: the request is answered only after this delay (and then as it would
    /// have been, other faults excepted: the first matching rule is the only one), or as
    /// soon as the fault rules are replaced or cleared, or the simulator stops. A long
    /// duration makes a request that hangs until the rules change.
    Latency {
        /// The delay.
        #[serde(with = "humantime_serde")]
        duration: Duration,
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
    /// Details: the three `temporaryDirectDownloadLinks` point at the trap host (same
    /// path and query, ticket included).
    ForeignDownloadLink,
    /// Details: no `temporaryDirectDownloadLinks` (as with "Prevent downloading"), and
    /// `downloadUrl` points at the trap host; listings show the same `downloadUrl` for
    /// the recordings the rule covers while it is not used up (listings do not use it up).
    ForeignDownloadUrl,
    /// Listing: one item of the page is altered in the JSON sent (the stored recording is
    /// unchanged). With `ids`, the items of those recordings on whatever page they appear
    /// (`times` counts per id); without, the first item of each matching page.
    MalformedItem {
        /// How the item is altered.
        variant: ItemVariant,
    },
    /// Listing: `200 {}` (no `items`).
    EmptyPage,
    /// Listing: `200 {"items": {"a": 1}}`.
    ItemsNotArray,
    /// Listing: `200 text/html` with the body `<html>proxy error</html>`.
    NotJsonPage,
    /// Listing: the `next` link points at the trap host, with the path and query of the
    /// real next page when there is one, else of the page just requested (so the fault
    /// applies to a last page too).
    ForeignNextLink,
    /// Listing: the `next` link is exactly the URL just requested (a loop).
    SelfNextLink,
    /// Listing: every page has a `next` link with a fresh cursor: the real next page while
    /// there is one, then the window again from its first page, forever (until `times`).
    EndlessNextLink,
    /// Listing: a 200 JSON answer of `bytes` bytes (at least 12), streamed from a fixed
    /// template: `{"items":[`, the page's items repeated, spaces, `]}`.
    HugePage {
        /// Exact body size, bytes (12 at least: `{"items":[]}`).
        bytes: u64,
        /// Send it without `Content-Length` (chunked transfer encoding).
        #[serde(default)]
        chunked: bool,
    },
    /// Download: `302` with a `Location` at the trap host (same path and query), or with
    /// `redirect_to = "site"` at the site host itself, which then serves the file.
    Redirect {
        /// Where the redirect points.
        #[serde(default)]
        redirect_to: RedirectTarget,
    },
    /// Download: `200` with this `Content-Type` and a short text body
    /// (`{"message":"ticket expired"}` for a JSON type, an HTML line for an HTML type,
    /// `ticket expired` otherwise).
    TextBody {
        /// The `Content-Type` sent.
        #[serde(default = "default_text_type")]
        content_type: String,
    },
    /// Download: `200 application/octet-stream` whose body is a Webex JSON error document.
    JsonBody,
    /// Download: `200 application/octet-stream` whose body is an HTML login page.
    HtmlBody,
    /// Download: `200` without `Content-Length` whose body ends cleanly after this many
    /// bytes (chunked), short of the file.
    NoLengthShort {
        /// Bytes sent.
        after_bytes: u64,
    },
}

fn default_text_type() -> String {
    "text/plain".into()
}

/// How a `malformed_item` fault alters a listed item. Never the stored recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemVariant {
    /// `durationSeconds` and `sizeBytes` sent as strings (`"598"`).
    NumberAsString,
    /// `shareToMe` sent as a string (`"true"`, `"false"`; added to admin items too).
    BoolAsString,
    /// `format` `"WEBM"`, `status` `"archived_elsewhere"`, `serviceType` `"NewCenter"`.
    UnknownEnum,
    /// `null` for every field but `id`, `createTime`, `meetingId`, `hostEmail`, `siteUrl`,
    /// `downloadUrl`, `sizeBytes` and `status`: that is `topic`, `meetingSeriesId`,
    /// `scheduledMeetingId`, `timeRecorded`, `hostDisplayName`, `playbackUrl`, `password`,
    /// `format`, `serviceType`, `durationSeconds`, `shareToMe` and `integrationTags`
    /// (added where absent).
    NullFields,
    /// `integrationTags` is the string `"a-tag"` instead of a list.
    StringForList,
    /// No `id`.
    NoId,
    /// `id` is a JSON number (the recording's internal serial, not its id).
    WrongTypeId,
    /// `createTime` is `"yesterday"`.
    BadCreateTime,
    /// The whole item is the JSON string `"item unavailable"`.
    NotAnObject,
}

impl ItemVariant {
    /// Every variant, in declaration order.
    pub const ALL: [ItemVariant; 9] = [
        Self::NumberAsString,
        Self::BoolAsString,
        Self::UnknownEnum,
        Self::NullFields,
        Self::StringForList,
        Self::NoId,
        Self::WrongTypeId,
        Self::BadCreateTime,
        Self::NotAnObject,
    ];

    /// The name used in TOML and JSON (`number_as_string`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NumberAsString => "number_as_string",
            Self::BoolAsString => "bool_as_string",
            Self::UnknownEnum => "unknown_enum",
            Self::NullFields => "null_fields",
            Self::StringForList => "string_for_list",
            Self::NoId => "no_id",
            Self::WrongTypeId => "wrong_type_id",
            Self::BadCreateTime => "bad_create_time",
            Self::NotAnObject => "not_an_object",
        }
    }

    /// Whether a lenient reader can still read the item (only optional fields are odd);
    /// `false` when its id or `createTime` cannot be read (issue 11: quarantined).
    pub fn readable(self) -> bool {
        matches!(
            self,
            Self::NumberAsString | Self::BoolAsString | Self::UnknownEnum | Self::NullFields | Self::StringForList
        )
    }
}

/// Where a `redirect` fault points.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedirectTarget {
    /// The trap host: a host no answer should lead to.
    #[default]
    Trap,
    /// The site host itself, which then serves the file (download faults do not apply
    /// again to the redirected request, marked with `_simredirect=1`).
    Site,
}

impl FaultAction {
    /// The short name used in counters.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ApiError { .. } => "api_error",
            Self::Latency { .. } => "latency",
            Self::Locked { .. } => "locked",
            Self::Reset { .. } => "reset",
            Self::ShortBody { .. } => "short_body",
            Self::Stall { .. } => "stall",
            Self::LoginPage => "login_page",
            Self::Throttle { .. } => "throttle",
            Self::ExpiredLink => "expired_link",
            Self::ExpiringLink { .. } => "expiring_link",
            Self::ForeignDownloadLink => "foreign_download_link",
            Self::ForeignDownloadUrl => "foreign_download_url",
            Self::MalformedItem { .. } => "malformed_item",
            Self::EmptyPage => "empty_page",
            Self::ItemsNotArray => "items_not_array",
            Self::NotJsonPage => "not_json_page",
            Self::ForeignNextLink => "foreign_next_link",
            Self::SelfNextLink => "self_next_link",
            Self::EndlessNextLink => "endless_next_link",
            Self::HugePage { .. } => "huge_page",
            Self::Redirect { .. } => "redirect",
            Self::TextBody { .. } => "text_body",
            Self::JsonBody => "json_body",
            Self::HtmlBody => "html_body",
            Self::NoLengthShort { .. } => "no_length_short",
        }
    }

    fn class(&self) -> Class {
        match self {
            Self::ApiError { .. } | Self::Latency { .. } | Self::Locked { .. } => Class::Api,
            Self::ExpiredLink | Self::ExpiringLink { .. } | Self::ForeignDownloadLink | Self::ForeignDownloadUrl => {
                Class::Link
            }
            Self::MalformedItem { .. } => Class::Item,
            Self::EmptyPage | Self::ItemsNotArray | Self::NotJsonPage | Self::HugePage { .. } => Class::Page,
            Self::ForeignNextLink | Self::SelfNextLink | Self::EndlessNextLink => Class::Next,
            Self::Reset { .. }
            | Self::ShortBody { .. }
            | Self::Stall { .. }
            | Self::LoginPage
            | Self::Throttle { .. }
            | Self::Redirect { .. }
            | Self::TextBody { .. }
            | Self::JsonBody
            | Self::HtmlBody
            | Self::NoLengthShort { .. } => Class::Download,
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
    /// When set, exactly this `Retry-After` value is sent (`"0"`, `"-5"`, `"soon"`, a past
    /// HTTP date, `"99999999999999999999"`...), instead of `retry_after` and
    /// `retry_after_format`. Only a whole number of seconds from 1 to 86,400, or an HTTP
    /// date in the future at most a day away, sets a pause (429s to the token until it
    /// ends, and violations); any other value sets none, so no request after it is a
    /// violation. It must be a valid header value (visible ASCII and spaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_raw: Option<String>,
}

fn default_retry_after() -> u64 {
    1
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Answered (or delayed) before the handler (`api_error`, `latency`, `locked`).
    Api,
    /// Details of one recording (the links it hands out).
    Link,
    /// A download on the site host.
    Download,
    /// A listing's whole body.
    Page,
    /// One item of a listing page.
    Item,
    /// A listing's `next` link.
    Next,
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

/// What happens to one listing page.
#[derive(Debug, Default)]
pub(crate) struct ListingFaults {
    /// Replaces the whole answer.
    pub(crate) body: Option<FaultAction>,
    /// Per item of the page, how it is altered.
    pub(crate) items: Vec<Option<ItemVariant>>,
    /// What the `next` link becomes.
    pub(crate) next: Option<FaultAction>,
    /// Per item of the page, whether its `downloadUrl` points at the trap host.
    pub(crate) foreign_url: Vec<bool>,
}

impl ListingFaults {
    /// Whether the items must be edited as JSON.
    pub(crate) fn alters_items(&self) -> bool {
        self.items.iter().any(Option::is_some) || self.foreign_url.iter().any(|f| *f)
    }
}

/// The rules and how often each was used.
pub(crate) struct FaultState {
    rules: Vec<RuleState>,
    dice: u64,
    /// Bumped whenever the rules are replaced: ends every `latency` wait.
    generation: watch::Sender<u64>,
}

struct RuleState {
    rule: FaultRule,
    used: u64,
    used_by_id: HashMap<String, u64>,
}

impl FaultState {
    pub(crate) fn new(rules: Vec<FaultRule>, seed: u64) -> Self {
        let mut state = Self { rules: Vec::new(), dice: splitmix64(seed ^ 0xFA17), generation: watch::Sender::new(0) };
        state.set(rules);
        state
    }

    pub(crate) fn set(&mut self, rules: Vec<FaultRule>) {
        self.rules = rules.into_iter().map(|rule| RuleState { rule, used: 0, used_by_id: HashMap::new() }).collect();
        self.generation.send_modify(|g| *g += 1);
    }

    /// Tells when the rules are next replaced (`changed()` resolves then).
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub(crate) fn add(&mut self, rules: Vec<FaultRule>) {
        self.rules.extend(rules.into_iter().map(|rule| RuleState { rule, used: 0, used_by_id: HashMap::new() }));
    }

    pub(crate) fn rules(&self) -> Vec<FaultRule> {
        self.rules.iter().map(|r| r.rule.clone()).collect()
    }

    /// The API fault for a request (about the listing of `site`, if it is one), if any.
    pub(crate) fn api(&mut self, target: ApiTarget, id: Option<&str>, site: Option<&str>) -> Option<FaultAction> {
        self.pick(Class::Api, id.as_slice(), site, |rule| match rule.endpoint {
            None => target != ApiTarget::Token,
            Some(FaultEndpoint::All) => true,
            Some(FaultEndpoint::List) => target == ApiTarget::List,
            Some(FaultEndpoint::AdminList) => target == ApiTarget::AdminList,
            Some(FaultEndpoint::Details) => target == ApiTarget::Details,
            Some(FaultEndpoint::Sites) => target == ApiTarget::Sites,
            Some(FaultEndpoint::Token) => target == ApiTarget::Token,
        })
    }

    /// The link fault for a details response about `id`, if any. A recording without
    /// links ("Prevent downloading") can only get `foreign_download_url`.
    pub(crate) fn link(&mut self, id: &str, has_links: bool) -> Option<FaultAction> {
        self.pick(Class::Link, &[id], None, |rule| has_links || rule.action == FaultAction::ForeignDownloadUrl)
    }

    /// The download fault for a download of `media` of `id`, if any. A request that
    /// follows a same-host `redirect` gets no `redirect` again.
    pub(crate) fn download(&mut self, id: &str, media: MediaKind, redirected: bool) -> Option<FaultAction> {
        self.pick(Class::Download, &[id], None, |rule| {
            let media_matches = match rule.media {
                None | Some(FaultMedia::Recording) => media == MediaKind::Recording,
                Some(FaultMedia::Any) => true,
                Some(FaultMedia::Audio) => media == MediaKind::Audio,
                Some(FaultMedia::Transcript) => media == MediaKind::Transcript,
            };
            media_matches && !(redirected && matches!(rule.action, FaultAction::Redirect { .. }))
        })
    }

    /// The faults of one listing page (of `site`, when it lists one) whose items are the
    /// recordings `ids`, in order. The body fault (if any) replaces the page, and then
    /// neither items nor the link are altered (nor their rules used).
    pub(crate) fn listing(&mut self, target: ApiTarget, site: Option<&str>, ids: &[&str]) -> ListingFaults {
        let on_listing = |rule: &FaultRule| match rule.endpoint {
            None | Some(FaultEndpoint::All) => true,
            Some(FaultEndpoint::List) => target == ApiTarget::List,
            Some(FaultEndpoint::AdminList) => target == ApiTarget::AdminList,
            Some(_) => false,
        };
        if let Some(body) = self.pick(Class::Page, ids, site, on_listing) {
            return ListingFaults { body: Some(body), ..ListingFaults::default() };
        }
        let mut items = vec![None; ids.len()];
        for (index, id) in ids.iter().enumerate() {
            // A rule without ids alters only the first item of a page.
            let action =
                self.pick(Class::Item, &[id], site, |rule| on_listing(rule) && (index == 0 || !rule.ids.is_empty()));
            if let Some(FaultAction::MalformedItem { variant }) = action {
                items[index] = Some(variant);
            }
        }
        let next = self.pick(Class::Next, ids, site, on_listing);
        let foreign_url = ids.iter().map(|id| self.foreign_url(target, id)).collect();
        ListingFaults { body: None, items, next, foreign_url }
    }

    /// Whether a `foreign_download_url` rule covers `id` and is not used up (a listing
    /// shows it without using it up; rules with a `probability` are not shown).
    fn foreign_url(&self, target: ApiTarget, id: &str) -> bool {
        self.rules.iter().any(|state| {
            let rule = &state.rule;
            let covered = rule.ids.is_empty() || rule.ids.iter().any(|r| r == id);
            let used = if rule.ids.is_empty() { state.used } else { state.used_by_id.get(id).copied().unwrap_or(0) };
            let endpoint = match rule.endpoint {
                None | Some(FaultEndpoint::All) | Some(FaultEndpoint::Details) => true,
                Some(FaultEndpoint::List) => target == ApiTarget::List,
                Some(FaultEndpoint::AdminList) => target == ApiTarget::AdminList,
                Some(_) => false,
            };
            rule.action == FaultAction::ForeignDownloadUrl
                && rule.sites.is_empty()
                && covered
                && endpoint
                && rule.probability.is_none()
                && rule.times.is_none_or(|times| used < times)
        })
    }

    /// The first rule of `class` that passes `filter`, is about one of `ids` (when it
    /// names ids) and about `site` (when it names sites) and is not used up, after its
    /// dice; used once (for the first of `ids` it names, when it names ids).
    fn pick(
        &mut self,
        class: Class,
        ids: &[&str],
        site: Option<&str>,
        filter: impl Fn(&FaultRule) -> bool,
    ) -> Option<FaultAction> {
        for i in 0..self.rules.len() {
            let state = &self.rules[i];
            let rule = &state.rule;
            if rule.action.class() != class || !filter(rule) || !rule.covers_site(site) {
                continue;
            }
            let per_id = if rule.ids.is_empty() {
                if rule.times.is_some_and(|times| state.used >= times) {
                    continue;
                }
                None
            } else {
                let fresh = ids.iter().find(|id| {
                    rule.ids.iter().any(|r| r == *id)
                        && rule.times.is_none_or(|times| state.used_by_id.get(**id).copied().unwrap_or(0) < times)
                });
                match fresh {
                    Some(id) => Some(id.to_string()),
                    None => continue,
                }
            };
            if let Some(p) = rule.probability
                && !self.roll(p)
            {
                continue;
            }
            let state = &mut self.rules[i];
            state.used += 1;
            if let Some(id) = per_id {
                *state.used_by_id.entry(id).or_insert(0) += 1;
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
        assert!(state.download("a", MediaKind::Recording, false).is_some());
        assert!(state.download("a", MediaKind::Recording, false).is_none());
        assert!(state.download("b", MediaKind::Recording, false).is_some());
        assert!(state.download("c", MediaKind::Recording, false).is_none());
        assert!(state.api(ApiTarget::Details, Some("b"), None).is_none());
    }

    #[test]
    fn a_listing_page_gets_one_body_fault_or_its_item_and_link_faults() {
        let item = |variant| FaultAction::MalformedItem { variant };
        let rules = vec![
            FaultRule::new(item(ItemVariant::NoId)).ids(["b"]).times(1),
            FaultRule::new(item(ItemVariant::NotAnObject)).ids(["c", "b"]).times(1),
            FaultRule::new(item(ItemVariant::BadCreateTime)).endpoint(FaultEndpoint::AdminList).times(1),
            FaultRule::new(FaultAction::ForeignDownloadUrl).ids(["a"]).times(1),
            FaultRule::new(FaultAction::EmptyPage).ids(["z"]).times(1),
            FaultRule::new(FaultAction::SelfNextLink).times(1),
        ];
        let mut state = FaultState::new(rules, 1);
        // Two rules alter two items of one page; the admin-only rule waits.
        let page = state.listing(ApiTarget::List, None, &["a", "b", "c"]);
        assert_eq!(page.body, None);
        assert_eq!(page.items, vec![None, Some(ItemVariant::NoId), Some(ItemVariant::NotAnObject)]);
        assert_eq!(page.next, Some(FaultAction::SelfNextLink));
        assert_eq!(page.foreign_url, vec![true, false, false]);
        // `b` is used up for the first rule; the second rule still has it.
        let page = state.listing(ApiTarget::AdminList, None, &["b", "a"]);
        assert_eq!(
            page.items,
            vec![Some(ItemVariant::NotAnObject), None],
            "ids win; the id-less rule takes index 0 only"
        );
        assert_eq!(page.next, None);
        let page = state.listing(ApiTarget::AdminList, None, &["a", "b"]);
        assert_eq!(page.items, vec![Some(ItemVariant::BadCreateTime), None]);
        assert!(page.foreign_url[0], "listings do not use up foreign_download_url");
        // A body fault replaces the page and uses nothing else up.
        state.add(vec![FaultRule::new(item(ItemVariant::NoId)).ids(["z"])]);
        let page = state.listing(ApiTarget::List, None, &["z"]);
        assert_eq!(page.body, Some(FaultAction::EmptyPage));
        assert!(!page.alters_items());
        assert_eq!(state.listing(ApiTarget::List, None, &["z"]).items, vec![Some(ItemVariant::NoId)]);
        // Details use foreign_download_url up; then listings stop showing it.
        assert_eq!(state.link("a", true), Some(FaultAction::ForeignDownloadUrl));
        assert_eq!(state.listing(ApiTarget::List, None, &["a"]).foreign_url, vec![false]);
        // Listing faults never apply to details or downloads, nor API faults to listings' items.
        assert_eq!(state.api(ApiTarget::Details, Some("z"), None), None);
    }

    #[test]
    fn prevented_recordings_get_only_foreign_download_url_and_redirected_requests_no_redirect() {
        let mut state = FaultState::new(
            vec![
                FaultRule::new(FaultAction::ExpiredLink),
                FaultRule::new(FaultAction::ForeignDownloadUrl),
                FaultRule::new(FaultAction::Redirect { redirect_to: RedirectTarget::Site }),
                FaultRule::new(FaultAction::JsonBody).times(1),
            ],
            1,
        );
        assert_eq!(state.link("p", false), Some(FaultAction::ForeignDownloadUrl));
        assert_eq!(state.link("p", true), Some(FaultAction::ExpiredLink));
        assert_eq!(
            state.download("p", MediaKind::Recording, false),
            Some(FaultAction::Redirect { redirect_to: RedirectTarget::Site })
        );
        assert_eq!(state.download("p", MediaKind::Recording, true), Some(FaultAction::JsonBody));
        assert_eq!(state.download("p", MediaKind::Audio, true), None);
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
