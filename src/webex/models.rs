//! Wire types: what Webex sends and receives, as the OpenAPI contract and
//! `shared/webex-api/NOTES.md` describe it. They stay apart from the domain types the
//! archive stores.
//!
//! Reading is lenient wherever Webex (or a proxy in between) may send something odd, and
//! strict only where a wrong guess would lose a recording:
//! - a listing page must be a JSON object with an `items` array ([`parse_page`]); its
//!   items are kept as raw JSON text borrowed from the body, and read one at a time;
//! - an item must be an object with a non-empty string `id` and a readable `createTime`
//!   ([`read_item`]); any other item is returned as [`ItemRead::Unreadable`], to be
//!   quarantined, never failing the page;
//! - every optional field is read leniently: a number or boolean sent as a string, an
//!   unknown enum value (enum-like fields are plain strings), an unexpected `null`, a
//!   string where a list was expected, an object where a string was expected: accepted
//!   or ignored, never fatal. Unknown fields are ignored (and kept in the stored listing).
//!
//! Serialization is unaffected by the leniency (the simulator serializes these types):
//! every field keeps its type, and is written as before.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// Most items a listing page may hold. Webex sends at most `max` (100); a page with more
/// than this is refused as a bad page, so a hostile answer cannot make discovery hold
/// millions of items at once.
pub const MAX_ITEMS_PER_PAGE: usize = 10_000;

/// Longest recording id accepted, in bytes. Webex ids are a few dozen characters; a
/// longer one is quarantined (an index entry cannot hold an arbitrary length).
pub const MAX_ID_BYTES: usize = 512;

/// Fields never kept from what Webex sends: the recording password and the temporary
/// download links (their tickets are secrets, and they expire within hours).
pub const SECRET_FIELDS: [&str; 2] = ["password", "temporaryDirectDownloadLinks"];

/// One page of `GET /v1/recordings` or `GET /v1/admin/recordings`, as an owned tree.
///
/// For tools and tests that hold a small page. Discovery reads pages with
/// [`parse_page`], which borrows each item from the body instead of building a tree of
/// the whole answer.
#[derive(Clone, Default, Deserialize, Serialize)]
pub struct RecordingPage {
    /// The recordings of this page, newest `createTime` first. Required.
    pub items: Vec<Value>,
}

impl std::fmt::Debug for RecordingPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // NOTE: items as sent carry recording passwords: Debug shows only how many.
        f.debug_struct("RecordingPage").field("items", &self.items.len()).finish()
    }
}

/// Why a listing answer is not a page.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// Not a JSON object at all (an array, a string, HTML, nothing...).
    #[error("the answer is not a JSON object (it starts with {start:?})")]
    NotAnObject {
        /// The first characters of the answer.
        start: String,
    },
    /// A JSON object, but without an `items` array (missing, `null`, another type, twice),
    /// or not valid JSON.
    #[error("the answer is not a JSON object with an `items` array")]
    NoItems(#[source] serde_json::Error),
    /// More items than any page may hold.
    #[error("the page holds more than {MAX_ITEMS_PER_PAGE} items")]
    TooManyItems,
}

/// Reads a listing answer: a JSON object with an `items` array (other members are
/// ignored). Returns each item as raw JSON text borrowed from `body`, unread.
pub fn parse_page(body: &[u8]) -> Result<Vec<&RawValue>, PageError> {
    let first = body.iter().position(|b| !b.is_ascii_whitespace());
    if first.map(|i| body[i]) != Some(b'{') {
        let rest = first.map_or(&[][..], |i| &body[i..]);
        let start = String::from_utf8_lossy(&rest[..rest.len().min(32)]).into_owned();
        return Err(PageError::NotAnObject { start });
    }
    #[derive(Deserialize)]
    struct RawPage<'a> {
        #[serde(borrow, deserialize_with = "bounded_items")]
        items: Vec<&'a RawValue>,
    }
    match serde_json::from_slice::<RawPage<'_>>(body) {
        Ok(page) => Ok(page.items),
        Err(e) if e.to_string().contains(TOO_MANY_ITEMS) => Err(PageError::TooManyItems),
        Err(e) => Err(PageError::NoItems(e)),
    }
}

const TOO_MANY_ITEMS: &str = "too many items in one page";

/// The `items` array, refusing more than [`MAX_ITEMS_PER_PAGE`] entries as it reads.
fn bounded_items<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<&'de RawValue>, D::Error> {
    struct Items;
    impl<'de> Visitor<'de> for Items {
        type Value = Vec<&'de RawValue>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of items")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(128));
            while let Some(item) = seq.next_element::<&'de RawValue>()? {
                if items.len() == MAX_ITEMS_PER_PAGE {
                    return Err(de::Error::custom(TOO_MANY_ITEMS));
                }
                items.push(item);
            }
            Ok(items)
        }
    }
    d.deserialize_seq(Items)
}

/// What reading one listing item gave.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemRead {
    /// An object with a usable id and `createTime`: a recording.
    Readable(Box<ReadableItem>),
    /// Anything else: kept raw and quarantined, never failing its page.
    Unreadable(UnreadableItem),
}

/// A listing item that reads as a recording.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadableItem {
    /// The recording id (non-empty, at most [`MAX_ID_BYTES`]).
    pub id: String,
    /// When Webex produced the file.
    pub create_time: DateTime<Utc>,
    /// Every known field, read leniently.
    pub recording: Recording,
    /// The item as sent, without [`SECRET_FIELDS`] (and without the fields in `dropped`).
    pub listing: Value,
    /// Fields whose value no JSON tree can hold (a number beyond `f64`, nesting deeper
    /// than 128 levels): left out of `listing`.
    pub dropped: Vec<String>,
}

/// A listing item that does not read as a recording.
#[derive(Debug, Clone, PartialEq)]
pub struct UnreadableItem {
    /// The item's id, when it has a usable string one.
    pub id: Option<String>,
    /// The item's `hostEmail`, when it is a string (admins fetch details with it).
    pub host_email: Option<String>,
    /// What is wrong, for a person.
    pub reason: String,
    /// The JSON text as sent, without [`SECRET_FIELDS`] when it is an object.
    pub raw: String,
}

/// Reads one listing item (the JSON text of one entry of `items`, or a quarantined
/// item's stored text). Never fails: what does not read as a recording comes back as
/// [`ItemRead::Unreadable`] with the reason.
pub fn read_item(raw: &str) -> ItemRead {
    let (members, raw) = match Members::read(raw) {
        Ok(read) => read,
        Err(unreadable) => return ItemRead::Unreadable(unreadable),
    };
    let host_email = members.listing.get("hostEmail").and_then(Value::as_str).map(str::to_owned);
    let unreadable = |id: Option<String>, reason: String| {
        ItemRead::Unreadable(UnreadableItem { id, host_email: host_email.clone(), reason, raw: raw.clone() })
    };
    let id = match members.id() {
        Ok(id) => id,
        Err(reason) => return unreadable(None, reason),
    };
    let Members { mut listing, dropped, unrepresentable } = members;
    listing.values_mut().for_each(strip_nul);
    let listing = Value::Object(listing);
    let recording = match Recording::deserialize(&listing) {
        Ok(recording) => recording,
        Err(e) => return unreadable(Some(id), format!("the item cannot be read: {e}")),
    };
    let Some(create_time) = recording.create_time else {
        let reason = match listing.get("createTime") {
            None if unrepresentable.contains("createTime") => "createTime cannot be read".to_owned(),
            None => "the item has no createTime".to_owned(),
            Some(value) => format!("createTime is not a time: {}", excerpt(value)),
        };
        return unreadable(Some(id), reason);
    };
    ItemRead::Readable(Box::new(ReadableItem { id, create_time, recording, listing, dropped }))
}

/// Reads an item that did not read from its listing alone, with its recording's details
/// (`GET /v1/recordings/{id}`), which are authoritative for every field they carry,
/// `createTime` first. The listing's other fields are kept; the details' temporary links
/// never are. `None` when the item has no usable id or the details no readable
/// `createTime` either.
pub fn read_with_details(item: &UnreadableItem, details: &RecordingDetails) -> Option<ReadableItem> {
    let id = item.id.clone()?;
    let create_time = details.recording.create_time?;
    let (mut listing, dropped) = match Members::read(&item.raw) {
        Ok((members, _)) => (members.listing, members.dropped),
        Err(_) => (serde_json::Map::new(), Vec::new()),
    };
    if let Ok(Value::Object(fields)) = serde_json::to_value(&details.recording) {
        listing.extend(fields);
    }
    for field in SECRET_FIELDS {
        listing.remove(field);
    }
    listing.insert("id".into(), Value::String(id.clone()));
    listing.values_mut().for_each(strip_nul);
    let listing = Value::Object(listing);
    let recording = Recording::deserialize(&listing).ok()?;
    Some(ReadableItem { id, create_time, recording, listing, dropped })
}

/// The top-level members of an item, each read on its own.
struct Members {
    /// Every member a JSON tree can hold, secrets left out.
    listing: serde_json::Map<String, Value>,
    /// Members no JSON tree can hold.
    dropped: Vec<String>,
    /// The same names, for lookups.
    unrepresentable: std::collections::BTreeSet<String>,
}

impl Members {
    /// Reads the top level of `raw`; returns the members and the raw text to keep (as
    /// sent, without [`SECRET_FIELDS`]).
    fn read(raw: &str) -> Result<(Self, String), UnreadableItem> {
        let text = raw.trim();
        let unreadable = |reason: String| UnreadableItem { id: None, host_email: None, reason, raw: text.to_owned() };
        if !text.starts_with('{') {
            return Err(unreadable(format!("the item is not a JSON object but {}", json_kind(text))));
        }
        // The top level only: each member stays raw text, so that one member no JSON tree
        // can hold costs that member, not the item.
        let mut members: BTreeMap<String, &RawValue> = serde_json::from_str(text)
            .map_err(|e| unreadable(format!("the item is not a readable JSON object: {e}")))?;
        let mut had_secret = false;
        for field in SECRET_FIELDS {
            had_secret |= members.remove(field).is_some();
        }
        let raw = if had_secret { serde_json::to_string(&members).unwrap_or_default() } else { text.to_owned() };
        let mut listing = serde_json::Map::new();
        let mut dropped = Vec::new();
        for (name, value) in members {
            match serde_json::from_str::<Value>(value.get()) {
                Ok(value) => {
                    listing.insert(name.replace('\0', "\u{FFFD}"), value);
                }
                Err(_) => dropped.push(name),
            }
        }
        let unrepresentable = dropped.iter().cloned().collect();
        Ok((Self { listing, dropped, unrepresentable }, raw))
    }

    /// The item's id, or why it has no usable one.
    fn id(&self) -> Result<String, String> {
        match self.listing.get("id") {
            Some(Value::String(id)) if id.is_empty() => Err("the item's id is empty".into()),
            Some(Value::String(id)) if id.len() > MAX_ID_BYTES => {
                Err(format!("the item's id is longer than {MAX_ID_BYTES} bytes"))
            }
            Some(Value::String(id)) if id.chars().any(char::is_control) => {
                Err(format!("the item's id holds control characters: {}", excerpt(&Value::String(id.clone()))))
            }
            Some(Value::String(id)) => Ok(id.clone()),
            Some(other) => Err(format!("the item's id is not a string but {}: {}", value_kind(other), excerpt(other))),
            None if self.unrepresentable.contains("id") => Err("the item's id cannot be read".into()),
            None => Err("the item has no id".into()),
        }
    }
}

/// Replaces NUL characters in every string of `value` (Postgres text cannot hold them).
fn strip_nul(value: &mut Value) {
    // NOTE: serde_json refuses nesting deeper than 128 levels, so this recursion is bounded.
    match value {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
        Value::Array(items) => items.iter_mut().for_each(strip_nul),
        Value::Object(members) => {
            if members.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(members);
                members.extend(old.into_iter().map(|(k, v)| (k.replace('\0', "\u{FFFD}"), v)));
            }
            members.values_mut().for_each(strip_nul);
        }
        _ => {}
    }
}

fn json_kind(text: &str) -> &'static str {
    match text.chars().next() {
        Some('[') => "an array",
        Some('"') => "a string",
        Some('t' | 'f') => "a boolean",
        Some('n') => "null",
        Some('-' | '0'..='9') => "a number",
        _ => "something else",
    }
}

fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A short JSON rendering of a value, for reasons shown to a person.
fn excerpt(value: &Value) -> String {
    const MAX: usize = 80;
    let text = value.to_string();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// Reads a time as Webex may send it: RFC 3339, or an ISO 8601 variant (no seconds, no
/// fraction, `+hhmm` or `+hh` offsets, a space for `T`, the basic format). A time without
/// an offset is read as UTC, which every Webex time is. A date alone is not a time.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if text.is_empty() || text.len() > 64 {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    const DATE_TIMES: [&str; 6] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y%m%dT%H%M%S%.f",
        "%Y%m%dT%H%M",
    ];
    for format in DATE_TIMES {
        if let Ok(t) = DateTime::parse_from_str(text, &format!("{format}%#z")) {
            return Some(t.with_timezone(&Utc));
        }
    }
    let naive = text.strip_suffix(['Z', 'z']).unwrap_or(text);
    DATE_TIMES.iter().find_map(|format| NaiveDateTime::parse_from_str(naive, format).ok()).map(|t| t.and_utc())
}

/// A recording as listed (`RecordingObject` / `RecordingObjectForAdminAndCO`). Every
/// field is optional and read leniently; [`read_item`] decides whether an item is usable.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recording {
    /// Opaque recording id. Required by the contract; only a string is an id.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_id")]
    pub id: Option<String>,
    /// Ended meeting instance.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_string")]
    pub meeting_id: Option<String>,
    /// Scheduled meeting instance.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_string")]
    pub scheduled_meeting_id: Option<String>,
    /// Meeting series.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_string")]
    pub meeting_series_id: Option<String>,
    /// Free text chosen by the host: may hold anything, slashes and `..` included.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_string")]
    pub topic: Option<String>,
    /// When the file was produced (after the meeting); the listing window filters on it.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_time")]
    pub create_time: Option<DateTime<Utc>>,
    /// When recording started.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_time")]
    pub time_recorded: Option<DateTime<Utc>>,
    /// Admin listing only: host's display name.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_string")]
    pub host_display_name: Option<String>,
    /// Admin listing only: host's e-mail, needed to fetch details as an admin.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_string")]
    pub host_email: Option<String>,
    /// Site host name, e.g. `example.webex.com`.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_string")]
    pub site_url: Option<String>,
    /// Browser page (`lsr.php`): HTML behind a login, not the file.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_link")]
    pub download_url: Option<String>,
    /// Browser playback page.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_link")]
    pub playback_url: Option<String>,
    /// The recording's password (a secret: never logged, never archived; `Debug` hides it).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_password")]
    pub password: Option<RecordingPassword>,
    /// `MP4`, `ARF`, `UPLOADED`, or a value Webex adds later.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_string")]
    pub format: Option<String>,
    /// `MeetingCenter`, `EventCenter`, ... or a later value.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_string")]
    pub service_type: Option<String>,
    /// Duration in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_u64")]
    pub duration_seconds: Option<u64>,
    /// Size in bytes as Webex reports it (exactness unverified).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_u64")]
    pub size_bytes: Option<u64>,
    /// User listing only: shared with the caller.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_bool")]
    pub share_to_me: Option<bool>,
    /// Integration keys.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_strings")]
    pub integration_tags: Option<Vec<String>>,
    /// `available`, `deleted`, `purged`, or a later value.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_string")]
    pub status: Option<String>,
}

impl Recording {
    /// Reads one listing item's fields, leniently. Fails only when `value` is not an
    /// object; whether the item is usable (id, `createTime`) is [`read_item`]'s decision.
    pub fn from_value(value: &Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(value)
    }
}

/// A recording's password, as Webex sends it: a secret that `Debug` never shows.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct RecordingPassword(String);

impl RecordingPassword {
    /// A password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }
    /// The password itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RecordingPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordingPassword(***)")
    }
}

/// `GET /v1/recordings/{id}`: the listing fields plus the temporary direct links.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordingDetails {
    /// Everything the listing has.
    #[serde(flatten)]
    pub recording: Recording,
    /// Absent when "Prevent downloading" is on and the token is not a compliance officer's.
    /// Anything but an object here reads as absent.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_links")]
    pub temporary_direct_download_links: Option<DirectDownloadLinks>,
}

impl RecordingDetails {
    /// Reads a details answer. Fails only when the body is not a JSON object.
    pub fn parse(body: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

/// Temporary links on the site host; each carries its own `ticket` (a secret). Each
/// field is a string or absent: anything else reads as absent.
#[derive(Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectDownloadLinks {
    /// The MP4/ARF file.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_link")]
    pub recording_download_link: Option<String>,
    /// The audio track.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_link")]
    pub audio_download_link: Option<String>,
    /// The transcript.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_link")]
    pub transcript_download_link: Option<String>,
    /// When all three links stop working (ISO 8601).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "lenient_link")]
    pub expiration: Option<String>,
}

impl std::fmt::Debug for DirectDownloadLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // NOTE: the links carry download tickets; Debug shows only which are present.
        f.debug_struct("DirectDownloadLinks")
            .field("recording", &self.recording_download_link.is_some())
            .field("audio", &self.audio_download_link.is_some())
            .field("transcript", &self.transcript_download_link.is_some())
            .field("expiration", &self.expiration)
            .finish()
    }
}

/// `GET /v1/meetingPreferences/sites`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct SiteList {
    /// The caller's sites.
    #[serde(default)]
    pub sites: Vec<Site>,
}

/// One Webex site.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Site {
    /// Host name, e.g. `example.webex.com`.
    pub site_url: String,
    /// The caller's preferred site.
    #[serde(default)]
    pub default: bool,
}

/// Webex's error body: `{"message", "errors": [{"description"}], "trackingId"}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Details.
    #[serde(default)]
    pub errors: Vec<ErrorDetail>,
    /// Webex's id of the request, for support cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_id: Option<String>,
}

/// One entry of [`ErrorBody::errors`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ErrorDetail {
    /// What went wrong.
    #[serde(default)]
    pub description: String,
}

/// Response of `POST /v1/access_token` (refresh-token grant).
#[derive(Clone, Deserialize, Serialize)]
pub struct TokenResponse {
    /// New access token (secret).
    pub access_token: String,
    /// Access token lifetime, seconds.
    pub expires_in: u64,
    /// Refresh token to use next time (secret; may differ from the one sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Refresh token lifetime, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_expires_in: Option<u64>,
    /// Always `Bearer`.
    #[serde(default)]
    pub token_type: String,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("refresh_token_expires_in", &self.refresh_token_expires_in)
            .finish_non_exhaustive()
    }
}

// The lenient readers below take any value (through `Value`, so they work inside
// `#[serde(flatten)]` too) and turn what does not fit into `None`.

fn lenient_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

fn lenient_link<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    lenient_id(d)
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    })
}

fn lenient_password<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RecordingPassword>, D::Error> {
    Ok(lenient_string(d)?.map(RecordingPassword))
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().and_then(whole_u64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<u64>().ok().or_else(|| s.parse::<f64>().ok().and_then(whole_u64))
        }
        _ => None,
    })
}

/// A non-negative finite float that fits a `u64`, truncated.
fn whole_u64(f: f64) -> Option<u64> {
    // NOTE: 2^64 as f64 is exact; anything below it converts without saturating.
    (0.0..18_446_744_073_709_551_616.0).contains(&f).then_some(f as u64)
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => Some(b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        Value::Number(n) => match n.as_u64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        _ => None,
    })
}

fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => parse_time(&s),
        _ => None,
    })
}

fn lenient_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => Some(
            items
                .into_iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                })
                .collect(),
        ),
        Value::String(s) if !s.trim().is_empty() => Some(vec![s]),
        _ => None,
    })
}

fn lenient_links<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DirectDownloadLinks>, D::Error> {
    Ok(match Value::deserialize(d)? {
        value @ Value::Object(_) => DirectDownloadLinks::deserialize(value).ok(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_recording_password_never_reaches_debug() {
        let body = br#"{"id":"r1","createTime":"2026-11-01T10:00:00Z","password":"S3cretPw",
            "temporaryDirectDownloadLinks":{"recordingDownloadLink":"https://s.example/?ticket=T0pSecret"}}"#;
        let details = RecordingDetails::parse(body).unwrap();
        assert_eq!(details.recording.password.as_ref().map(RecordingPassword::expose), Some("S3cretPw"));
        let page = RecordingPage { items: vec![serde_json::from_slice(body).unwrap()] };
        let item = read_item(std::str::from_utf8(body).unwrap());
        let shown = format!("{details:?} {:?} {:#?} {page:?} {item:?}", details.recording, details.recording);
        assert!(!shown.contains("S3cretPw") && !shown.contains("T0pSecret"), "{shown}");
        assert!(shown.contains("RecordingPassword(***)"), "{shown}");
        // Served (by the simulator) and read back, it is the plain string.
        let served = serde_json::to_value(&details.recording).unwrap();
        assert_eq!(served["password"], "S3cretPw");
    }

    fn readable(value: Value) -> ReadableItem {
        match read_item(&value.to_string()) {
            ItemRead::Readable(item) => *item,
            ItemRead::Unreadable(item) => panic!("{value} should read: {}", item.reason),
        }
    }

    fn unreadable(text: &str) -> UnreadableItem {
        match read_item(text) {
            ItemRead::Unreadable(item) => item,
            ItemRead::Readable(item) => panic!("{text} should not read: {item:?}"),
        }
    }

    #[test]
    fn unknown_fields_and_enum_values_are_accepted() {
        let item = json!({
            "id": "abc", "format": "WEBM", "status": "archived-somewhere", "newField": {"x": 1},
            "createTime": "2020-07-13T17:11:35Z", "sizeBytes": 12.0
        });
        let rec = Recording::from_value(&item).expect("lenient parse");
        assert_eq!(rec.format.as_deref(), Some("WEBM"));
        assert_eq!(rec.size_bytes, Some(12));
        let item = readable(item);
        assert_eq!(item.listing["newField"], json!({"x": 1}), "unknown fields are kept");
    }

    #[test]
    fn optional_fields_of_the_wrong_type_are_accepted_or_ignored() {
        let item = readable(json!({
            "id": "r1", "createTime": "2026-11-01T10:00:00Z",
            "durationSeconds": "598", "sizeBytes": " 1024 ", "shareToMe": "true",
            "integrationTags": "x", "topic": {"nested": true}, "meetingId": 12345,
            "format": null, "timeRecorded": 17, "hostEmail": ["a"], "siteUrl": false,
            "downloadUrl": 5, "status": "SOMETHING_NEW"
        }));
        let r = &item.recording;
        assert_eq!(r.duration_seconds, Some(598));
        assert_eq!(r.size_bytes, Some(1024));
        assert_eq!(r.share_to_me, Some(true));
        assert_eq!(r.integration_tags, Some(vec!["x".to_owned()]));
        assert_eq!(r.topic, None, "an object where a string was expected is ignored");
        assert_eq!(r.meeting_id.as_deref(), Some("12345"));
        assert_eq!((r.format.as_ref(), r.time_recorded, r.host_email.as_ref()), (None, None, None));
        assert_eq!(r.site_url.as_deref(), Some("false"));
        assert_eq!((r.download_url.as_ref(), r.status.as_deref()), (None, Some("SOMETHING_NEW")));
        assert_eq!(item.listing["durationSeconds"], "598", "the stored listing is what Webex sent");

        let r = readable(json!({"id": "r2", "createTime": "2026-11-01T10:00:00Z", "durationSeconds": -3,
            "sizeBytes": "1e3", "shareToMe": "maybe", "integrationTags": [1, "a", null, {"b": 2}]}))
        .recording;
        assert_eq!((r.duration_seconds, r.size_bytes, r.share_to_me), (None, Some(1000), None));
        assert_eq!(r.integration_tags, Some(vec!["1".to_owned(), "a".to_owned()]));
    }

    #[test]
    fn webex_times_are_read_in_their_iso_8601_variants() {
        let at = |s: &str| parse_time(s).map(|t| t.to_rfc3339());
        let whole = Some("2020-07-13T17:11:00+00:00".to_owned());
        for text in [
            "2020-07-13T17:11:00Z",
            "2020-07-13T17:11:00.000Z",
            "2020-07-13T17:11Z",
            "2020-07-13T17:11",
            "2020-07-13T17:11:00",
            "2020-07-13 17:11:00Z",
            "2020-07-13T19:11:00+02:00",
            "2020-07-13T19:11:00+0200",
            "2020-07-13T19:11+02",
            "20200713T171100Z",
            " 2020-07-13t17:11:00z ",
        ] {
            assert_eq!(at(text), whole, "{text}");
        }
        assert_eq!(at("2020-07-13T17:11:35.250Z"), Some("2020-07-13T17:11:35.250+00:00".to_owned()));
        for text in ["", "yesterday", "2020-07-13", "2020-13-45T99:00:00Z", "17:11", "2020-07-13T17:11:00Zjunk"] {
            assert_eq!(at(text), None, "{text}");
        }
    }

    #[test]
    fn items_without_a_usable_id_or_create_time_are_unreadable_with_the_reason() {
        let cases = [
            (r#"{"createTime":"2026-11-01T10:00:00Z"}"#, "no id", None),
            (r#"{"id":"","createTime":"2026-11-01T10:00:00Z"}"#, "id is empty", None),
            (r#"{"id":5,"createTime":"2026-11-01T10:00:00Z"}"#, "id is not a string but a number: 5", None),
            (r#"{"id":null}"#, "id is not a string but null", None),
            (r#"{"id":"r1"}"#, "no createTime", Some("r1")),
            (r#"{"id":"r1","createTime":"yesterday"}"#, "createTime is not a time: \"yesterday\"", Some("r1")),
            (r#"{"id":"r1","createTime":null}"#, "createTime is not a time: null", Some("r1")),
            (r#"{"id":"r1","createTime":1e400}"#, "createTime cannot be read", Some("r1")),
            (r#"[1,2]"#, "not a JSON object but an array", None),
            (r#""x""#, "not a JSON object but a string", None),
            (r#"null"#, "not a JSON object but null", None),
            (r#"{"id":"r1""#, "not a readable JSON object", None),
        ];
        for (text, reason, id) in cases {
            let item = unreadable(text);
            assert!(item.reason.contains(reason), "{text}: {}", item.reason);
            assert_eq!(item.id.as_deref(), id, "{text}");
            assert_eq!(item.raw, text, "kept as sent");
        }
        let long = format!(r#"{{"id":"{}","createTime":"2026-11-01T10:00:00Z"}}"#, "x".repeat(MAX_ID_BYTES + 1));
        assert!(unreadable(&long).reason.contains("longer than"));
    }

    #[test]
    fn secrets_never_reach_the_listing_nor_the_raw_text() {
        let text = r#"{"id":"r1","password":"S3cret","hostEmail":"h@x","temporaryDirectDownloadLinks":{"recordingDownloadLink":"https://s/?ticket=T"}}"#;
        let item = unreadable(text);
        assert!(!item.raw.contains("S3cret") && !item.raw.contains("ticket"), "{}", item.raw);
        assert_eq!(item.host_email.as_deref(), Some("h@x"));
        let item = readable(json!({"id": "r1", "createTime": "2026-11-01T10:00:00Z", "password": "S3cret"}));
        assert!(item.listing.get("password").is_none());
        assert_eq!(item.recording.password, None);
    }

    #[test]
    fn members_no_tree_can_hold_cost_only_themselves() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let text =
            format!(r#"{{"id":"r1","createTime":"2026-11-01T10:00:00Z","deep":{deep},"huge":1e400,"t":"a\u0000b"}}"#);
        let item = match read_item(&text) {
            ItemRead::Readable(item) => item,
            ItemRead::Unreadable(item) => panic!("{}", item.reason),
        };
        assert_eq!(item.dropped, ["deep", "huge"]);
        assert_eq!(item.listing["t"], "a\u{FFFD}b", "NUL characters are replaced");
    }

    #[test]
    fn pages_need_an_items_array() {
        assert_eq!(parse_page(br#"{"items": [{"id": "a"}, 5, "x"], "other": 1}"#).unwrap().len(), 3);
        assert_eq!(parse_page(b" {\"items\": []} ").unwrap().len(), 0);
        for bad in [&b"{}"[..], b"{\"items\": null}", b"{\"items\": {}}", b"[]", b"", b"<html>", b"{\"items\": [1,]}"] {
            assert!(parse_page(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(matches!(parse_page(b"{\"items\": [], \"items\": []}"), Err(PageError::NoItems(_))));
        let many = format!("{{\"items\": [{}1]}}", "1,".repeat(MAX_ITEMS_PER_PAGE));
        assert!(matches!(parse_page(many.as_bytes()), Err(PageError::TooManyItems)));
    }

    #[test]
    fn details_links_are_lenient_too() {
        let details = RecordingDetails::parse(
            br#"{"id":"r1","createTime":"2026-11-01T10:00Z","durationSeconds":"12",
                "temporaryDirectDownloadLinks":{"recordingDownloadLink":"https://s/r?ticket=T","audioDownloadLink":7,"expiration":null}}"#,
        )
        .unwrap();
        assert_eq!(details.recording.duration_seconds, Some(12));
        assert!(details.recording.create_time.is_some());
        let links = details.temporary_direct_download_links.unwrap();
        assert!(links.recording_download_link.is_some() && links.audio_download_link.is_none());
        let details = RecordingDetails::parse(br#"{"id":"r1","temporaryDirectDownloadLinks":"none"}"#).unwrap();
        assert!(details.temporary_direct_download_links.is_none());
        assert!(RecordingDetails::parse(b"[1]").is_err() && RecordingDetails::parse(b"<html>").is_err());
    }

    #[test]
    fn serialization_is_unchanged() {
        let rec = Recording {
            id: Some("r1".into()),
            create_time: parse_time("2026-11-01T10:00:00Z"),
            duration_seconds: Some(5),
            share_to_me: Some(false),
            integration_tags: Some(vec!["a".into()]),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&rec).unwrap(),
            json!({"id": "r1", "createTime": "2026-11-01T10:00:00Z", "durationSeconds": 5, "shareToMe": false,
                "integrationTags": ["a"]})
        );
    }

    #[test]
    fn links_debug_hides_tickets() {
        let links = DirectDownloadLinks {
            recording_download_link: Some("https://s/nbr/x?ticket=SECRETTICKET".into()),
            ..Default::default()
        };
        assert!(!format!("{links:?}").contains("SECRETTICKET"));
    }
}

/// Property tests: every parser fed by the network, fed arbitrary input.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Names Webex uses (so that arbitrary objects often hit the typed fields), and others.
    const NAMES: [&str; 24] = [
        "id",
        "meetingId",
        "scheduledMeetingId",
        "meetingSeriesId",
        "topic",
        "createTime",
        "timeRecorded",
        "hostDisplayName",
        "hostEmail",
        "siteUrl",
        "downloadUrl",
        "playbackUrl",
        "password",
        "format",
        "serviceType",
        "durationSeconds",
        "sizeBytes",
        "shareToMe",
        "integrationTags",
        "status",
        "temporaryDirectDownloadLinks",
        "recordingDownloadLink",
        "expiration",
        "items",
    ];

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![3 => proptest::sample::select(&NAMES[..]).prop_map(str::to_owned), 1 => ".{0,12}"]
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
            ".{0,24}".prop_map(Value::String),
            "[0-9]{1,20}(\\.[0-9]{0,3})?".prop_map(Value::String),
            "(true|false|TRUE|1|0|yes)".prop_map(Value::String),
            "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,9})?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?"
                .prop_map(Value::String),
        ]
    }

    /// Any JSON value, nested up to 8 levels.
    fn json_value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(8, 96, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(name(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Mostly objects with Webex's field names, sometimes anything else.
    fn item() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => prop::collection::btree_map(name(), json_value(), 0..12)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            1 => json_value(),
        ]
    }

    /// JSON text nested far deeper than serde_json's recursion limit.
    fn deep_text() -> impl Strategy<Value = String> {
        (0usize..3000, any::<bool>()).prop_map(|(depth, arrays)| {
            if arrays {
                format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
            } else {
                format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
            }
        })
    }

    fn text_id() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_/.%+-][A-Za-z0-9_/.%+ -]{0,40}"
    }

    fn time() -> impl Strategy<Value = DateTime<Utc>> {
        // 1970 to 2200, to the nanosecond.
        (0i64..7_258_118_400, 0u32..1_000_000_000)
            .prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap_or(DateTime::UNIX_EPOCH))
    }

    fn text() -> impl Strategy<Value = Option<String>> {
        prop::option::of("[^\u{0}]{0,20}")
    }

    /// A recording as a valid listing item carries it (no password: it is never kept).
    fn recording() -> impl Strategy<Value = Recording> {
        (
            (text_id(), time(), prop::option::of(time()), text(), text(), text(), text(), text()),
            (text(), text(), text(), prop::option::of(any::<u64>()), prop::option::of(any::<u64>())),
            (prop::option::of(any::<bool>()), prop::option::of(prop::collection::vec("[^\u{0}]{0,8}", 0..4)), text()),
        )
            .prop_map(|((id, created, recorded, meeting, topic, host, email, site), rest, more)| {
                let (download, format, service, duration, size) = rest;
                let (share, tags, status) = more;
                Recording {
                    id: Some(id),
                    meeting_id: meeting,
                    scheduled_meeting_id: None,
                    meeting_series_id: None,
                    topic,
                    create_time: Some(created),
                    time_recorded: recorded,
                    host_display_name: host,
                    host_email: email,
                    site_url: site,
                    download_url: download,
                    playback_url: None,
                    password: None,
                    format,
                    service_type: service,
                    duration_seconds: duration,
                    size_bytes: size,
                    share_to_me: share,
                    integration_tags: tags,
                    status,
                }
            })
    }

    proptest! {
        #[test]
        fn the_page_parser_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(items) = parse_page(&body) {
                for raw in items {
                    let _ = read_item(raw.get());
                }
            }
        }

        #[test]
        fn the_page_parser_never_panics_on_damaged_pages(
            items in prop::collection::vec(item(), 0..4),
            cut in any::<prop::sample::Index>(),
            junk in prop::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut body = serde_json::to_vec(&json!({ "items": items })).unwrap_or_default();
            let at = cut.index(body.len() + 1);
            body.splice(at..at, junk);
            if let Ok(items) = parse_page(&body) {
                for raw in items {
                    let _ = read_item(raw.get());
                }
            }
        }

        #[test]
        fn a_page_of_n_items_yields_n_entries(items in prop::collection::vec(item(), 0..12)) {
            let body = serde_json::to_vec(&json!({ "items": items, "other": {"x": 1} })).unwrap_or_default();
            let raw = parse_page(&body).expect("a well-formed page");
            prop_assert_eq!(raw.len(), items.len());
            let (mut readable, mut unreadable) = (0, 0);
            for (raw, item) in raw.iter().zip(&items) {
                match read_item(raw.get()) {
                    ItemRead::Readable(read) => {
                        readable += 1;
                        prop_assert_eq!(Some(read.id.as_str()), item.get("id").and_then(Value::as_str));
                        prop_assert!(read.listing.get("password").is_none());
                    }
                    ItemRead::Unreadable(read) => {
                        unreadable += 1;
                        prop_assert!(!read.reason.is_empty());
                        prop_assert!(serde_json::from_str::<&RawValue>(&read.raw).is_ok(), "raw stays JSON");
                    }
                }
            }
            prop_assert_eq!(readable + unreadable, items.len());
        }

        #[test]
        fn the_item_reader_never_panics_on_text(text in ".{0,256}") {
            let _ = read_item(&text);
        }

        #[test]
        fn the_item_reader_and_the_page_parser_never_panic_on_deep_nesting(text in deep_text()) {
            let _ = read_item(&text);
            let _ = read_item(&format!("{{\"id\":\"r\",\"createTime\":\"2026-01-01T00:00:00Z\",\"x\":{text}}}"));
            if let Ok(items) = parse_page(format!("{{\"items\":[{text}]}}").as_bytes()) {
                for raw in items {
                    let _ = read_item(raw.get());
                }
            }
            let _ = RecordingDetails::parse(text.as_bytes());
        }

        #[test]
        fn a_valid_item_round_trips(recording in recording(), extra in json_value()) {
            let mut value = serde_json::to_value(&recording).expect("serializes");
            value["futureField"] = extra.clone();
            value["password"] = json!("S3cret");
            let read = match read_item(&value.to_string()) {
                ItemRead::Readable(read) => read,
                ItemRead::Unreadable(item) => return Err(TestCaseError::fail(item.reason)),
            };
            prop_assert_eq!(Some(&read.id), recording.id.as_ref());
            prop_assert_eq!(Some(read.create_time), recording.create_time);
            prop_assert_eq!(&read.recording, &recording);
            prop_assert!(read.listing.get("password").is_none());
            prop_assert!(read.listing.get("futureField").is_some());
        }

        #[test]
        fn the_details_parser_never_panics(
            body in prop::collection::vec(any::<u8>(), 0..256),
            value in item(),
            links in json_value(),
        ) {
            let _ = RecordingDetails::parse(&body);
            let _ = RecordingDetails::parse(value.to_string().as_bytes());
            let mut with_links = value;
            if let Some(object) = with_links.as_object_mut() {
                object.insert("temporaryDirectDownloadLinks".into(), links);
            }
            if let Ok(details) = RecordingDetails::parse(with_links.to_string().as_bytes()) {
                let unreadable = UnreadableItem {
                    id: Some("r1".into()),
                    host_email: None,
                    reason: String::new(),
                    raw: with_links.to_string(),
                };
                if let Some(read) = read_with_details(&unreadable, &details) {
                    prop_assert!(read.listing.get("temporaryDirectDownloadLinks").is_none());
                    prop_assert_eq!(read.id, "r1");
                }
            }
        }

        #[test]
        fn details_round_trip(recording in recording()) {
            let details = RecordingDetails {
                recording,
                temporary_direct_download_links: Some(DirectDownloadLinks {
                    recording_download_link: Some("https://site/nbr?ticket=T".into()),
                    expiration: Some("2026-01-01T00:00:00Z".into()),
                    ..Default::default()
                }),
            };
            let text = serde_json::to_vec(&details).expect("serializes");
            prop_assert_eq!(RecordingDetails::parse(&text).expect("parses"), details);
        }
    }
}
