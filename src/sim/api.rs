//! The API host: listings, details, sites, tokens, and the gate in front of them
//! (tracking ids, bearer tokens, rate limits, faults, counters).

use std::borrow::Cow;
use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, NaiveDateTime, SubsecRound, Utc};
use serde::Serialize;

use super::content::MediaKind;
use super::counters::Endpoint;
use super::faults::{ApiTarget, FaultAction};
use super::limiter::Verdict;
use super::store::{self, SimRecording};
use super::{Shared, control, later, mangle};
use crate::webex::models::{
    DirectDownloadLinks, ErrorBody, ErrorDetail, Recording, RecordingDetails, Site, SiteList, TokenResponse,
};

/// The id Webex puts in `Trackingid` and in error bodies.
#[derive(Debug, Clone)]
pub(crate) struct TrackingId(pub(crate) String);

pub(crate) const TRACKINGID: &str = "trackingid";
const JSON: &str = "application/json;charset=UTF-8";
const MAX_DEFAULT: usize = 10;
const WINDOW_DEFAULT_DAYS: i64 = 7;
const ADMIN_MAX_SPAN_DAYS: i64 = 30;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/recordings", get(list_user))
        .route("/v1/admin/recordings", get(list_admin))
        .route("/v1/recordings/{id}", get(details))
        .route("/v1/meetingPreferences/sites", get(sites))
        .route("/v1/access_token", post(token))
        .merge(control::router())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

pub(crate) fn new_tracking_id() -> String {
    format!("SIM_{}", uuid::Uuid::new_v4())
}

/// A Webex error response.
pub(crate) fn webex_error(status: StatusCode, tracking_id: &str, message: &str) -> Response {
    let body = ErrorBody {
        message: Some(message.to_string()),
        errors: vec![ErrorDetail { description: message.to_string() }],
        tracking_id: Some(tracking_id.to_string()),
    };
    json_response(status, &body)
}

pub(crate) fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, JSON)], bytes).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot serialize the response: {e}")).into_response(),
    }
}

fn classify(method: &Method, path: &str) -> (Endpoint, Option<ApiTarget>, Option<String>) {
    match (method, path) {
        (&Method::GET, "/v1/recordings") => (Endpoint::List, Some(ApiTarget::List), None),
        (&Method::GET, "/v1/admin/recordings") => (Endpoint::AdminList, Some(ApiTarget::AdminList), None),
        (&Method::GET, "/v1/meetingPreferences/sites") => (Endpoint::Sites, Some(ApiTarget::Sites), None),
        (&Method::POST, "/v1/access_token") => (Endpoint::Token, Some(ApiTarget::Token), None),
        (&Method::GET, p) => match p.strip_prefix("/v1/recordings/") {
            Some(id) if !id.is_empty() && !id.contains('/') => {
                let id = percent_encoding::percent_decode_str(id).decode_utf8_lossy().into_owned();
                (Endpoint::Details, Some(ApiTarget::Details), Some(id))
            }
            _ => (Endpoint::OtherApi, None, None),
        },
        _ => (Endpoint::OtherApi, None, None),
    }
}

/// Tracking id, then (outside `/_sim/`) bearer token, pauses and rate limit, faults;
/// then counting. A listing request counts as in flight from here to its answer.
async fn gate(State(shared): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    let tid = new_tracking_id();
    req.extensions_mut().insert(TrackingId(tid.clone()));
    let path = req.uri().path().to_string();
    if path == "/_sim" || path.starts_with("/_sim/") {
        return with_tracking_id(next.run(req).await, &tid);
    }
    let (endpoint, target, id) = classify(req.method(), &path);
    if let Some(id) = &id {
        shared.counters.details_call(id);
    }
    let _listing = matches!(endpoint, Endpoint::List | Endpoint::AdminList).then(|| shared.counters.listing());
    let site = listing_site(&shared, target, req.uri().query());
    let response = match screen(&shared, req.headers(), target, id.as_deref(), site.as_deref(), &tid) {
        Screened::Refused(refusal) => refusal,
        Screened::Delayed(duration, mut changes) => {
            tokio::select! {
                _ = tokio::time::sleep(duration) => {}
                _ = changes.changed() => {}
                _ = shared.cancel.cancelled() => {}
            }
            next.run(req).await
        }
        Screened::Passed => next.run(req).await,
    };
    shared.counters.request(endpoint, response.status().as_u16());
    with_tracking_id(response, &tid)
}

/// The site a listing request is about: its `siteUrl` (the admin listing without one
/// lists the default site); `None` for other requests and a user listing of all sites.
fn listing_site(shared: &Shared, target: Option<ApiTarget>, query: Option<&str>) -> Option<String> {
    let named = || {
        url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .find(|(k, v)| k == "siteUrl" && !v.is_empty())
            .map(|(_, v)| v.into_owned())
    };
    match target? {
        ApiTarget::AdminList => named().or_else(|| shared.world.sites.get(shared.world.default_site).cloned()),
        ApiTarget::List => named(),
        _ => None,
    }
}

fn with_tracking_id(mut response: Response, tid: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(tid) {
        response.headers_mut().insert(TRACKINGID, value);
    }
    response
}

/// What the gate does with a request before its handler.
enum Screened {
    /// Answered here (401, 429, an API fault).
    Refused(Response),
    /// Handled after this delay, or as soon as the fault rules change.
    Delayed(std::time::Duration, tokio::sync::watch::Receiver<u64>),
    /// Handled now.
    Passed,
}

/// What happens to a request before its handler.
fn screen(
    shared: &Shared,
    headers: &HeaderMap,
    target: Option<ApiTarget>,
    id: Option<&str>,
    site: Option<&str>,
    tid: &str,
) -> Screened {
    if target != Some(ApiTarget::Token) {
        let token = bearer(headers);
        let valid = token.as_deref().is_some_and(|t| shared.auth().access.get(t).is_some_and(|exp| *exp > Utc::now()));
        let Some(token) = token.filter(|_| valid) else {
            return Screened::Refused(webex_error(
                StatusCode::UNAUTHORIZED,
                tid,
                "The request requires a valid access token set in the Authorization request header.",
            ));
        };
        if let Verdict::Limited { retry_after, violation } = shared.limiter().check(&token) {
            shared.counters.rate_limited(violation);
            let mut response = webex_error(
                StatusCode::TOO_MANY_REQUESTS,
                tid,
                "Too many requests have been sent in a given amount of time and the request has been rate limited.",
            );
            if let Ok(value) = HeaderValue::from_str(&retry_after) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return Screened::Refused(response);
        }
    }
    let (fault, changes) = {
        let mut faults = shared.faults();
        let fault = target.and_then(|t| faults.api(t, id, site));
        // Subscribed under the same lock as the pick: a change right after it is seen.
        let changes = faults.changes();
        (fault, changes)
    };
    let Some(fault) = fault else { return Screened::Passed };
    shared.counters.fault(fault.name());
    match fault {
        FaultAction::ApiError { status } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Screened::Refused(webex_error(status, tid, status.canonical_reason().unwrap_or("Simulated failure")))
        }
        FaultAction::Locked { retry_after } => {
            let mut response =
                webex_error(StatusCode::LOCKED, tid, "The requested resource is temporarily unavailable.");
            if let Some(secs) = retry_after {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            Screened::Refused(response)
        }
        FaultAction::Latency { duration } => Screened::Delayed(duration, changes),
        _ => Screened::Passed,
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
}

async fn not_found(req: Request) -> Response {
    let tid = tid_of(&req);
    webex_error(StatusCode::NOT_FOUND, &tid, "The requested resource could not be found.")
}

fn tid_of(req: &Request) -> String {
    req.extensions().get::<TrackingId>().map(|t| t.0.clone()).unwrap_or_else(new_tracking_id)
}

// ---------------------------------------------------------------------------------------
// Listings

#[derive(Clone, Copy, PartialEq, Eq)]
enum Listing {
    User,
    Admin,
}

/// The query of a listing, parsed as the server reads it: unknown names are ignored.
#[derive(Default)]
struct ListQuery {
    pairs: Vec<(String, String)>,
    max: Option<String>,
    from: Option<String>,
    to: Option<String>,
    meeting_id: Option<String>,
    host_email: Option<String>,
    site_url: Option<String>,
    integration_tag: Option<String>,
    topic: Option<String>,
    format: Option<String>,
    service_type: Option<String>,
    status: Option<String>,
    cursor: Option<String>,
}

impl ListQuery {
    fn parse(raw: Option<&str>) -> Self {
        let mut q = ListQuery::default();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let (k, v) = (k.into_owned(), v.into_owned());
            let slot = match k.as_str() {
                "max" => &mut q.max,
                "from" => &mut q.from,
                "to" => &mut q.to,
                "meetingId" => &mut q.meeting_id,
                "hostEmail" => &mut q.host_email,
                "siteUrl" => &mut q.site_url,
                "integrationTag" => &mut q.integration_tag,
                "topic" => &mut q.topic,
                "format" => &mut q.format,
                "serviceType" => &mut q.service_type,
                "status" => &mut q.status,
                "cursor" => &mut q.cursor,
                _ => {
                    q.pairs.push((k, v));
                    continue;
                }
            };
            // NOTE: an empty filter (`topic=`) is read as absent; an empty `max`, `from`
            // or `to` stays and is refused as not a number or not a time.
            let is_filter = !matches!(k.as_str(), "max" | "from" | "to" | "cursor");
            if slot.is_none() && !(is_filter && v.is_empty()) {
                *slot = Some(v.clone());
            }
            if k != "cursor" {
                q.pairs.push((k, v));
            }
        }
        q
    }
}

/// Where a page ends: the window it belongs to and the last item sent.
struct Cursor {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    last_time: DateTime<Utc>,
    last_id: String,
    /// Makes the cursor unlike any other (`endless_next_link`); ignored when read.
    nonce: Option<u64>,
}

impl Cursor {
    fn encode(&self) -> String {
        let nonce = self.nonce.map(|n| format!("n{n}|")).unwrap_or_default();
        hex::encode(format!(
            "{nonce}{}|{}|{}|{}",
            self.from.timestamp_micros(),
            self.to.timestamp_micros(),
            self.last_time.timestamp_micros(),
            self.last_id
        ))
    }

    fn decode(s: &str) -> Option<Self> {
        let text = String::from_utf8(hex::decode(s).ok()?).ok()?;
        // A nonce comes first (`n123|`); a time never starts with `n`.
        let text = match text.strip_prefix('n').and_then(|t| t.split_once('|')) {
            Some((nonce, rest)) if nonce.bytes().all(|b| b.is_ascii_digit()) => rest.to_string(),
            Some(_) => return None,
            None => text,
        };
        let mut parts = text.splitn(4, '|');
        let mut time = || parts.next()?.parse::<i64>().ok().and_then(DateTime::<Utc>::from_timestamp_micros);
        let (from, to, last_time) = (time()?, time()?, time()?);
        let last_id = parts.next()?.to_string();
        Some(Self { from, to, last_time, last_id, nonce: None })
    }
}

/// Reads an ISO 8601 time: with an offset or `Z`, or without one (read as UTC), or a date.
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, format) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc())
}

#[derive(Serialize)]
struct PageOut<'a> {
    items: Vec<Cow<'a, Recording>>,
}

async fn list_user(
    State(shared): State<Arc<Shared>>,
    Extension(TrackingId(tid)): Extension<TrackingId>,
    RawQuery(raw): RawQuery,
) -> Response {
    list(&shared, Listing::User, raw.as_deref(), &tid)
}

async fn list_admin(
    State(shared): State<Arc<Shared>>,
    Extension(TrackingId(tid)): Extension<TrackingId>,
    RawQuery(raw): RawQuery,
) -> Response {
    list(&shared, Listing::Admin, raw.as_deref(), &tid)
}

fn list(shared: &Shared, listing: Listing, raw: Option<&str>, tid: &str) -> Response {
    let bad = |message: &str| webex_error(StatusCode::BAD_REQUEST, tid, message);
    let q = ListQuery::parse(raw);
    let max = match q.max.as_deref() {
        None => MAX_DEFAULT,
        Some(s) => match s.trim().parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => return bad("max must be equal to or greater than 1 and equal to or less than 100."),
        },
    };
    let from = match q.from.as_deref().map(|s| (s, parse_time(s))) {
        None => None,
        Some((_, Some(t))) => Some(t),
        Some((s, None)) => return bad(&format!("Invalid from: '{s}' is not an ISO 8601 date and time.")),
    };
    let to = match q.to.as_deref().map(|s| (s, parse_time(s))) {
        None => None,
        Some((_, Some(t))) => Some(t),
        Some((s, None)) => return bad(&format!("Invalid to: '{s}' is not an ISO 8601 date and time.")),
    };
    let now = Utc::now();
    let week = ChronoDuration::days(WINDOW_DEFAULT_DAYS);
    let (mut from, mut to) = match (from, to) {
        (Some(f), Some(t)) => (f, t),
        (Some(f), None) => (f, f.checked_add_signed(week).unwrap_or(DateTime::<Utc>::MAX_UTC)),
        (None, Some(t)) => (t.checked_sub_signed(week).unwrap_or(DateTime::<Utc>::MIN_UTC), t),
        (None, None) => (now - week, now),
    };
    if from > to {
        return bad("from cannot be after to.");
    }
    if listing == Listing::Admin && to - from > ChronoDuration::days(ADMIN_MAX_SPAN_DAYS) {
        return bad("The interval between from and to must be within 30 days.");
    }
    let cursor = match q.cursor.as_deref() {
        None => None,
        Some(s) => match Cursor::decode(s) {
            Some(c) => Some(c),
            None => return bad("Invalid cursor."),
        },
    };
    if let Some(c) = &cursor {
        // The cursor pins the window of the first page (defaults move with the clock).
        (from, to) = (c.from, c.to);
    }
    let status = q.status.as_deref().unwrap_or("available").to_ascii_lowercase();
    shared.counters.listing_of(&status);
    let topic = q.topic.as_deref().map(str::to_lowercase);
    let meeting = q.meeting_id.as_deref();
    let world = &shared.world;
    if !store::STATUSES.contains(&status.as_str()) {
        return bad(&format!("Invalid status: '{status}'."));
    }
    // Purged recordings: a Compliance Officer's only, and on the user listing only with
    // a meetingId (the contract's description of `status`).
    if status == "purged" {
        if !shared.config.compliance_officer {
            return webex_error(
                StatusCode::FORBIDDEN,
                tid,
                "Purged recordings are listed for a Compliance Officer only.",
            );
        }
        if listing == Listing::User && meeting.is_none() {
            return bad("status=purged needs meetingId.");
        }
    }

    let store = shared.read_store();
    // Which sorted view to walk, and which extra filters apply.
    let mut host_filter: Option<usize> = None;
    let mut site_filter: Option<usize> = None;
    let view: &[Arc<SimRecording>] = match listing {
        Listing::Admin => {
            if meeting.is_some() {
                &store.all
            } else {
                let site = match q.site_url.as_deref() {
                    None => Some(world.default_site),
                    Some(url) => world.sites.iter().position(|s| s.eq_ignore_ascii_case(url)),
                };
                match site {
                    Some(site) => &store.per_site[site],
                    None => &[],
                }
            }
        }
        Listing::User => {
            let other_host = q.host_email.as_deref().filter(|h| !h.eq_ignore_ascii_case(&world.hosts[world.user()]));
            if meeting.is_none()
                && let Some(url) = q.site_url.as_deref()
            {
                site_filter = Some(world.sites.iter().position(|s| s.eq_ignore_ascii_case(url)).unwrap_or(usize::MAX));
            }
            match other_host {
                Some(h) => {
                    host_filter =
                        Some(world.hosts.iter().position(|x| x.eq_ignore_ascii_case(h)).unwrap_or(usize::MAX));
                    &store.all
                }
                None => &store.user,
            }
        }
    };
    let (mut start, end) = match meeting {
        Some(_) => (0, view.len()),
        None => (store::first_before(view, to), store::first_before(view, from)),
    };
    if let Some(c) = &cursor {
        start = start.max(store::first_after(view, (c.last_time, c.last_id.as_str())));
    }
    let passes = |r: &SimRecording| {
        r.visible_at <= now
            && store.status_at(r, now) == status
            && meeting.is_none_or(|m| r.matches_meeting(m))
            && host_filter.is_none_or(|h| r.host == h)
            && site_filter.is_none_or(|s| r.site == s)
            && topic.as_deref().is_none_or(|t| r.topic_lower == t)
            && q.format.as_deref().is_none_or(|f| r.format.eq_ignore_ascii_case(f))
            && q.service_type.as_deref().is_none_or(|s| r.service_type.eq_ignore_ascii_case(s))
            && q.integration_tag.as_deref().is_none_or(|tag| {
                r.user_item.integration_tags.as_ref().is_some_and(|tags| tags.iter().any(|t| t == tag))
            })
    };
    let mut page: Vec<&SimRecording> = Vec::with_capacity(max);
    let mut more = false;
    for rec in view.get(start..end.max(start)).unwrap_or(&[]) {
        if !passes(rec) {
            continue;
        }
        if page.len() == max {
            more = true;
            break;
        }
        page.push(rec);
    }
    let item_of = |r: &'_ SimRecording| match listing {
        Listing::User => r.user_item.clone(),
        Listing::Admin => r.admin_item.clone(),
    };
    let target = match listing {
        Listing::User => ApiTarget::List,
        Listing::Admin => ApiTarget::AdminList,
    };
    let page_ids: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
    let site = match listing {
        Listing::Admin => Some(q.site_url.as_deref().unwrap_or(&world.sites[world.default_site])),
        Listing::User => q.site_url.as_deref(),
    };
    let faults = shared.faults().listing(target, site, &page_ids);
    if let Some(body) = &faults.body {
        shared.counters.fault(body.name());
        let items = match body {
            FaultAction::HugePage { .. } => mangle::joined(
                &page.iter().map(|r| serde_json::to_value(item_of(r)).unwrap_or_default()).collect::<Vec<_>>(),
            ),
            _ => Default::default(),
        };
        return mangle::page_body(body, items, shared.cancel.clone());
    }
    let mut response = if faults.alters_items() {
        // The page as JSON, edited item by item; the stored recordings stay as they are.
        let mut items = Vec::with_capacity(page.len());
        for (index, rec) in page.iter().enumerate() {
            let mut item = item_of(rec);
            item.status = Some(store.status_at(rec, now).to_owned());
            if faults.foreign_url.get(index).copied().unwrap_or(false) {
                item.download_url = Some(trap_download_url(shared, rec));
            }
            let mut value = serde_json::to_value(item).unwrap_or_default();
            if let Some(variant) = faults.items.get(index).copied().flatten() {
                shared.counters.fault("malformed_item");
                mangle::malform(&mut value, variant, rec);
            }
            items.push(value);
        }
        json_response(StatusCode::OK, &serde_json::json!({ "items": items }))
    } else {
        // An item shows the status it has now (a recycle-bin move changes it).
        let items = page
            .iter()
            .map(|r| {
                let item = match listing {
                    Listing::User => &r.user_item,
                    Listing::Admin => &r.admin_item,
                };
                let now_status = store.status_at(r, now);
                if item.status.as_deref() == Some(now_status) {
                    Cow::Borrowed(item)
                } else {
                    Cow::Owned(Recording { status: Some(now_status.to_owned()), ..item.clone() })
                }
            })
            .collect();
        json_response(StatusCode::OK, &PageOut { items })
    };
    let path = match listing {
        Listing::User => "recordings",
        Listing::Admin => "admin/recordings",
    };
    let with_cursor = |cursor: &Cursor| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &q.pairs {
            query.append_pair(k, v);
        }
        query.append_pair("cursor", &cursor.encode());
        query.finish()
    };
    let endless = matches!(faults.next, Some(FaultAction::EndlessNextLink));
    let next_cursor = match page.last() {
        Some(last) if more => {
            Some(Cursor { from, to, last_time: last.create_time, last_id: last.id.clone(), nonce: None })
        }
        // A cursor "after" `to` starts the window again from its first page.
        _ if endless => Some(Cursor { from, to, last_time: to, last_id: String::new(), nonce: None }),
        _ => None,
    };
    let real_next = next_cursor.map(|mut cursor| {
        if endless {
            cursor.nonce = Some(shared.next_nonce());
        }
        with_cursor(&cursor)
    });
    let requested = raw.map(|r| format!("?{r}")).unwrap_or_default();
    if let Some(fault) = &faults.next {
        shared.counters.fault(fault.name());
    }
    let next = match faults.next {
        Some(FaultAction::ForeignNextLink) => Some(match real_next {
            Some(query) => format!("{}/v1/{path}?{query}", shared.trap_base),
            None => format!("{}/v1/{path}{requested}", shared.trap_base),
        }),
        Some(FaultAction::SelfNextLink) => Some(format!("{}/{path}{requested}", shared.api_base)),
        _ => real_next.map(|query| format!("{}/{path}?{query}", shared.api_base)),
    };
    if let Some(next) = next
        && let Ok(value) = HeaderValue::from_str(&format!("<{next}>; rel=\"next\""))
    {
        response.headers_mut().insert(header::LINK, value);
    }
    response
}

/// The recording's `downloadUrl` moved to the trap host (same path and query), or a
/// browser-page URL there when it has none.
fn trap_download_url(shared: &Shared, rec: &SimRecording) -> String {
    match rec.user_item.download_url.as_deref().and_then(|u| u.strip_prefix(shared.site_base.as_str())) {
        Some(path_and_query) => format!("{}{path_and_query}", shared.trap_base),
        None => {
            let site = shared.world.sites[rec.site].split('.').next().unwrap_or("site");
            format!("{}/{site}/lsr.php?RCID={:x}", shared.trap_base, rec.serial)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Details, sites, tokens

async fn details(
    State(shared): State<Arc<Shared>>,
    Extension(TrackingId(tid)): Extension<TrackingId>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let host_email = url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "hostEmail")
        .map(|(_, v)| v.into_owned());
    let now = Utc::now();
    let (rec, status) = {
        let store = shared.read_store();
        let rec = store.get(&id).cloned();
        let status = rec.as_ref().map(|r| store.status_at(r, now).to_owned());
        (rec, status)
    };
    // In the recycle bin: a Compliance Officer still sees it (links included); others
    // do not. Purged: gone for everyone.
    let gone = match status.as_deref() {
        Some("deleted") => !shared.config.compliance_officer,
        Some("purged") => true,
        _ => false,
    };
    let rec = rec.filter(|_| !gone);
    let world = &shared.world;
    let allowed = rec.as_ref().filter(|r| r.visible_at <= now).filter(|r| match &host_email {
        Some(h) => world.hosts[r.host].eq_ignore_ascii_case(h),
        None => r.host == world.user() || r.share_to_me,
    });
    let Some(rec) = allowed else {
        return webex_error(StatusCode::NOT_FOUND, &tid, "The requested resource could not be found.");
    };
    let has_links = !rec.prevent_downloading;
    let fault = shared.faults().link(&rec.id, has_links);
    if let Some(f) = &fault {
        shared.counters.fault(f.name());
    }
    let mut recording = rec.user_item.clone();
    recording.status = status;
    let links = match fault {
        Some(FaultAction::ForeignDownloadUrl) => {
            recording.download_url = Some(trap_download_url(&shared, rec));
            None
        }
        fault => has_links.then(|| links_for(&shared, rec, now, fault)),
    };
    let body = RecordingDetails { recording, temporary_direct_download_links: links };
    json_response(StatusCode::OK, &body)
}

fn links_for(
    shared: &Shared,
    rec: &SimRecording,
    now: DateTime<Utc>,
    fault: Option<FaultAction>,
) -> DirectDownloadLinks {
    let base = match fault {
        Some(FaultAction::ForeignDownloadLink) => &shared.trap_base,
        _ => &shared.site_base,
    };
    let expiry = match fault {
        Some(FaultAction::ExpiredLink) => now - ChronoDuration::seconds(1),
        Some(FaultAction::ExpiringLink { expires_in }) => later(now, expires_in),
        _ => later(now, shared.link_lifetime()),
    }
    .trunc_subsecs(0);
    let expiry_ms = expiry.timestamp_millis();
    let site_id = 2_062_842 + rec.site as u64;
    let common = format!(
        "siteid={site_id}&recordid={}&confid={}&language=en_US&userid={}&serviceRecordID={}",
        rec.serial,
        137_735_449_369_118_342u64 + rec.serial,
        3_516_472 + rec.host as u64,
        rec.serial + 30
    );
    let stamp = now.timestamp_millis();
    let ticket = |kind| shared.tickets.issue(rec.serial, kind, expiry_ms);
    let tail = "islogin=yes&isprevent=no&ispwd=yes";
    DirectDownloadLinks {
        recording_download_link: Some(format!(
            "{base}/nbr/MultiThreadDownloadServlet?{common}&ticket={}&timestamp={stamp}&{tail}",
            ticket(MediaKind::Recording)
        )),
        audio_download_link: Some(format!(
            "{base}/nbr/downloadMedia.do?{common}&ticket={}&timestamp={stamp}&{tail}&mediaType=1",
            ticket(MediaKind::Audio)
        )),
        transcript_download_link: Some(format!(
            "{base}/nbr/downloadMedia.do?{common}&ticket={}&timestamp={stamp}&{tail}&mediaType=2",
            ticket(MediaKind::Transcript)
        )),
        expiration: Some(expiry.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
    }
}

async fn sites(State(shared): State<Arc<Shared>>) -> Response {
    let world = &shared.world;
    let list = SiteList {
        sites: world
            .sites
            .iter()
            .enumerate()
            .map(|(i, url)| Site { site_url: url.clone(), default: i == world.default_site })
            .collect(),
    };
    json_response(StatusCode::OK, &list)
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Extension(TrackingId(tid)): Extension<TrackingId>,
    body: Bytes,
) -> Response {
    let form: std::collections::HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    if field("grant_type") != "refresh_token" {
        return webex_error(StatusCode::BAD_REQUEST, &tid, "unsupported_grant_type: only refresh_token is supported.");
    }
    if field("client_id") != shared.client_id || field("client_secret") != shared.client_secret {
        return webex_error(StatusCode::UNAUTHORIZED, &tid, "invalid_client: unknown client id or wrong secret.");
    }
    let now = Utc::now();
    let config = &shared.config;
    let mut auth = shared.auth();
    let presented = field("refresh_token").to_string();
    let Some(refresh_expiry) = auth.refresh.get(&presented).copied().filter(|exp| *exp > now) else {
        shared.counters.invalid_grant(auth.rotated_out.contains(&presented));
        return webex_error(StatusCode::BAD_REQUEST, &tid, "invalid_grant: the refresh token is invalid or expired.");
    };
    let access_token = super::random_token("SIMAT");
    auth.access.insert(access_token.clone(), later(now, config.access_token_lifetime));
    let (refresh_token, refresh_expiry) = if config.rotate_refresh_tokens {
        auth.refresh.remove(&presented);
        auth.rotated_out.insert(presented.clone());
        let fresh = super::random_token("SIMRT");
        let expiry = later(now, config.refresh_token_lifetime);
        auth.refresh.insert(fresh.clone(), expiry);
        (fresh, expiry)
    } else {
        (presented, refresh_expiry)
    };
    drop(auth);
    shared.counters.token_refresh();
    let response = TokenResponse {
        access_token,
        expires_in: config.access_token_lifetime.as_secs(),
        refresh_token: Some(refresh_token),
        refresh_token_expires_in: Some((refresh_expiry - now).num_seconds().max(0) as u64),
        token_type: "Bearer".into(),
    };
    json_response(StatusCode::OK, &response)
}
