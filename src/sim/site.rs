//! The site host: temporary direct download links (checked tickets, deterministic
//! content, download faults) and the browser pages of the listing.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::api::{TRACKINGID, new_tracking_id};
use super::content::{CHUNK_SIZE, Content, MediaKind};
use super::counters::Endpoint;
use super::faults::{FaultAction, RedirectTarget};
use super::tickets::TicketError;
use crate::webex::models::{ErrorBody, ErrorDetail};

const RECORDING_PATH: &str = "/nbr/MultiThreadDownloadServlet";
const MEDIA_PATH: &str = "/nbr/downloadMedia.do";
/// Marks the request a same-host `redirect` fault sent: it is not redirected again.
const REDIRECTED: &str = "_simredirect";

const LOGIN_PAGE: &str = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Webex</title></head><body><div id=\"login\"><h1>Sign in to Webex</h1>\
<form method=\"post\" action=\"/idb/oauth2/v1/authorize\"><label>Email address \
<input type=\"email\" name=\"email\"></label><button type=\"submit\">Next</button></form>\
</div></body></html>\n";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(RECORDING_PATH, get(download_recording))
        .route(MEDIA_PATH, get(download_media))
        .route("/{site}/lsr.php", get(login_page))
        .route("/{site}/ldr.php", get(login_page))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Not Found") })
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

/// Tracking id, token-leak detection, counting.
async fn gate(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let tid = new_tracking_id();
    if req.headers().contains_key(header::AUTHORIZATION) {
        shared.counters.token_leak();
    }
    let path = req.uri().path();
    let endpoint = match path {
        RECORDING_PATH => Endpoint::Download,
        MEDIA_PATH => Endpoint::DownloadMedia,
        p if p.ends_with("/lsr.php") || p.ends_with("/ldr.php") => Endpoint::LoginPage,
        _ => Endpoint::OtherSite,
    };
    let mut response = next.run(req).await;
    shared.counters.request(endpoint, response.status().as_u16());
    if !response.headers().contains_key(TRACKINGID)
        && let Ok(value) = HeaderValue::from_str(&tid)
    {
        response.headers_mut().insert(TRACKINGID, value);
    }
    response
}

async fn login_page() -> Response {
    html_login_page()
}

fn html_login_page() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/html;charset=UTF-8")], LOGIN_PAGE).into_response()
}

async fn download_recording(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Response {
    download(&shared, RECORDING_PATH, raw.as_deref(), Some(MediaKind::Recording))
}

async fn download_media(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Response {
    let media_type = param(raw.as_deref(), "mediaType");
    let kind = match media_type.as_deref() {
        Some("1") => Some(MediaKind::Audio),
        Some("2") => Some(MediaKind::Transcript),
        _ => None,
    };
    download(&shared, MEDIA_PATH, raw.as_deref(), kind)
}

fn param(raw: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain;charset=UTF-8")], text).into_response()
}

fn download(shared: &Arc<Shared>, path: &str, raw: Option<&str>, kind: Option<MediaKind>) -> Response {
    let Some(kind) = kind else {
        return plain(StatusCode::BAD_REQUEST, "unknown mediaType");
    };
    let Some(serial) = param(raw, "recordid").and_then(|s| s.parse::<u64>().ok()) else {
        return plain(StatusCode::NOT_FOUND, "unknown recording");
    };
    let Some(ticket) = param(raw, "ticket") else {
        return plain(StatusCode::FORBIDDEN, "ticket required");
    };
    let rec = shared.read_store().by_serial(serial).cloned();
    let Some(rec) = rec else {
        return plain(StatusCode::NOT_FOUND, "unknown recording");
    };
    match shared.tickets.verify(&ticket, serial, kind, chrono::Utc::now().timestamp_millis()) {
        Ok(()) => {}
        Err(TicketError::Expired) => return plain(StatusCode::FORBIDDEN, "ticket expired"),
        Err(TicketError::Forged) => return plain(StatusCode::FORBIDDEN, "invalid ticket"),
    }
    let redirected = param(raw, REDIRECTED).is_some();
    let fault = shared.faults().download(&rec.id, kind, redirected);
    if let Some(f) = &fault {
        shared.counters.fault(f.name());
    }
    match &fault {
        Some(FaultAction::LoginPage) => return html_login_page(),
        Some(FaultAction::Redirect { redirect_to }) => return redirect(shared, path, raw, *redirect_to),
        Some(FaultAction::TextBody { content_type }) => return text_body(content_type),
        Some(FaultAction::JsonBody) => return json_error_as_media(),
        Some(FaultAction::HtmlBody) => {
            return (StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], LOGIN_PAGE).into_response();
        }
        _ => {}
    }
    let (content, ext) = match kind {
        MediaKind::Recording => (
            rec.content(),
            match rec.format.as_str() {
                "MP4" => "mp4",
                "ARF" => "arf",
                _ => "bin",
            },
        ),
        MediaKind::Audio => (Content::audio(&rec.id, rec.size), "m4a"),
        MediaKind::Transcript => (Content::transcript(&rec.id, rec.duration), "vtt"),
    };
    shared.counters.download_started(&rec.id, kind);
    let with_length = !matches!(fault, Some(FaultAction::NoLengthShort { .. }));
    let len = content.len();
    let content_type = content.content_type();
    let stream = DownloadStream {
        shared: shared.clone(),
        id: rec.id.clone(),
        kind,
        content,
        pos: 0,
        fault,
        stalled: false,
        started: Instant::now(),
        cancel: shared.cancel.clone(),
    };
    let body = Body::from_stream(futures::stream::unfold(stream, |mut s| async move {
        let item = s.next_chunk().await?;
        Some((item, s))
    }));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // NOTE: a body from a stream has no Content-Length of its own: hyper sends it chunked
    // unless the header is set here.
    if with_length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}.{ext}\"", rec.id)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// `302` to the same path and query on the trap host, or on the site host marked as
/// redirected (so that it is served).
fn redirect(shared: &Shared, path: &str, raw: Option<&str>, target: RedirectTarget) -> Response {
    let location = match (target, raw) {
        (RedirectTarget::Trap, Some(q)) => format!("{}{path}?{q}", shared.trap_base),
        (RedirectTarget::Trap, None) => format!("{}{path}", shared.trap_base),
        (RedirectTarget::Site, Some(q)) => format!("{}{path}?{q}&{REDIRECTED}=1", shared.site_base),
        (RedirectTarget::Site, None) => format!("{}{path}?{REDIRECTED}=1", shared.site_base),
    };
    match HeaderValue::from_str(&location) {
        Ok(value) => (StatusCode::FOUND, [(header::LOCATION, value)]).into_response(),
        Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot build the redirect"),
    }
}

/// A short text body under the given type (an invalid type is sent as `text/plain`).
fn text_body(content_type: &str) -> Response {
    let lower = content_type.to_ascii_lowercase();
    let body = if lower.contains("json") {
        r#"{"message":"ticket expired"}"#
    } else if lower.contains("html") {
        "<html><body>ticket expired</body></html>"
    } else {
        "ticket expired"
    };
    let value = HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("text/plain"));
    (StatusCode::OK, [(header::CONTENT_TYPE, value)], body).into_response()
}

/// A Webex error document sent as if it were the media.
fn json_error_as_media() -> Response {
    let tid = new_tracking_id();
    let message = "The requested resource could not be found.";
    let body = ErrorBody {
        message: Some(message.to_string()),
        errors: vec![ErrorDetail { description: message.to_string() }],
        tracking_id: Some(tid.clone()),
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut response = (StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response();
    if let Ok(value) = HeaderValue::from_str(&tid) {
        response.headers_mut().insert(TRACKINGID, value);
    }
    response
}

/// One download body: deterministic chunks, with the download fault (if any) applied.
struct DownloadStream {
    shared: Arc<Shared>,
    id: String,
    kind: MediaKind,
    content: Content,
    pos: u64,
    fault: Option<FaultAction>,
    stalled: bool,
    started: Instant,
    cancel: CancellationToken,
}

impl DownloadStream {
    /// NOTE: hyper drops what it has buffered but not yet written when a body fails or
    /// ends short; pausing first lets the bytes sent so far (and the headers) reach the
    /// client, as they would before a real connection reset.
    async fn let_the_connection_flush(&self) {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = self.cancel.cancelled() => {}
        }
    }

    async fn next_chunk(&mut self) -> Option<Result<Bytes, io::Error>> {
        let len = self.content.len();
        if self.pos >= len {
            return None;
        }
        if self.cancel.is_cancelled() {
            self.pos = len;
            return Some(Err(io::Error::new(io::ErrorKind::Interrupted, "simulator shutting down")));
        }
        let mut max = CHUNK_SIZE as u64;
        match self.fault.clone() {
            Some(FaultAction::Reset { after_bytes }) => {
                if self.pos >= after_bytes {
                    self.let_the_connection_flush().await;
                    self.pos = len;
                    return Some(Err(io::Error::new(io::ErrorKind::ConnectionReset, "simulated connection reset")));
                }
                max = max.min(after_bytes - self.pos);
            }
            Some(FaultAction::ShortBody { after_bytes }) => {
                if self.pos >= after_bytes {
                    // End the body early: the connection is closed short of Content-Length.
                    self.let_the_connection_flush().await;
                    self.pos = len;
                    return None;
                }
                max = max.min(after_bytes - self.pos);
            }
            Some(FaultAction::NoLengthShort { after_bytes }) => {
                if self.pos >= after_bytes {
                    // Chunked: ending the stream ends the body cleanly.
                    self.pos = len;
                    return None;
                }
                max = max.min(after_bytes - self.pos);
            }
            Some(FaultAction::Stall { after_bytes, duration }) => {
                if self.pos >= after_bytes && !self.stalled {
                    self.stalled = true;
                    tokio::select! {
                        _ = tokio::time::sleep(duration) => {}
                        _ = self.cancel.cancelled() => {
                            self.pos = len;
                            return Some(Err(io::Error::new(io::ErrorKind::Interrupted, "simulator shutting down")));
                        }
                    }
                } else if self.pos < after_bytes {
                    max = max.min(after_bytes - self.pos);
                }
            }
            Some(FaultAction::Throttle { bytes_per_second }) => {
                let bps = bytes_per_second.max(1);
                max = max.min((bps / 10).max(1));
                let due = self.started + Duration::from_secs_f64(self.pos as f64 / bps as f64);
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => {}
                    _ = self.cancel.cancelled() => {
                        self.pos = len;
                        return Some(Err(io::Error::new(io::ErrorKind::Interrupted, "simulator shutting down")));
                    }
                }
            }
            _ => {}
        }
        let chunk = self.content.chunk(self.pos, max as usize);
        let n = chunk.len() as u64;
        self.pos += n;
        let counters = &self.shared.counters;
        counters.download_bytes(&self.id, self.kind, n);
        if self.pos >= len {
            counters.download_completed(&self.id, self.kind);
        }
        Some(Ok(chunk))
    }
}
