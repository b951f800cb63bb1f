//! The trap host: a host no answer should lead to. It stands for an attacker's or a
//! stranger's server that a `next` link, a download link, a `downloadUrl` or a redirect
//! could point at, and answers every request plausibly so that a client which wrongly
//! follows one appears to succeed: listing-looking paths (ending in `/recordings`) get
//! `{"items": []}`, anything else a few KiB of `application/octet-stream` that starts
//! with a valid MP4 `ftyp` box. Every request is counted ([`super::Counters`]'s
//! `trap_requests*` fields).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::Shared;
use super::api::{TRACKINGID, new_tracking_id};
use super::content::Content;

/// Size of the media-looking body, bytes.
pub const TRAP_BODY_LEN: u64 = 4096;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(answer).with_state(shared)
}

/// Whether the trap host answers `path` as a listing.
pub(crate) fn is_listing_path(path: &str) -> bool {
    path.trim_end_matches('/').ends_with("/recordings")
}

/// The media-looking body the trap host serves.
pub fn trap_body() -> Bytes {
    Bytes::from(Content::recording("trap", "MP4", TRAP_BODY_LEN).to_vec())
}

async fn answer(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    shared.counters.trap_request(&path, req.headers().contains_key(header::AUTHORIZATION));
    let mut response = if is_listing_path(&path) {
        (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], r#"{"items": []}"#).into_response()
    } else {
        (StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], shared.trap_body.clone()).into_response()
    };
    if let Ok(value) = HeaderValue::from_str(&new_tracking_id()) {
        response.headers_mut().insert(TRACKINGID, value);
    }
    response
}
