//! What listing faults send instead of a well-formed page: altered items, bodies that
//! are not a page, and huge pages streamed from a fixed template.

use std::io;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::faults::{FaultAction, ItemVariant};
use super::store::SimRecording;

const JSON: &str = "application/json;charset=UTF-8";
const HEAD: &[u8] = br#"{"items":["#;
const TAIL: &[u8] = b"]}";
/// Size of the chunks a huge page is sent in (about; a chunk holds whole items).
const HUGE_CHUNK: usize = 64 << 10;

/// Fields `null_fields` sets to `null`.
pub(crate) const NULLED_FIELDS: [&str; 12] = [
    "topic",
    "meetingSeriesId",
    "scheduledMeetingId",
    "timeRecorded",
    "hostDisplayName",
    "playbackUrl",
    "password",
    "format",
    "serviceType",
    "durationSeconds",
    "shareToMe",
    "integrationTags",
];

/// Alters one listed item (as JSON) the way `variant` says.
pub(crate) fn malform(value: &mut Value, variant: ItemVariant, rec: &SimRecording) {
    if variant == ItemVariant::NotAnObject {
        *value = Value::String("item unavailable".into());
        return;
    }
    let Some(item) = value.as_object_mut() else {
        return;
    };
    match variant {
        ItemVariant::NumberAsString => {
            for key in ["durationSeconds", "sizeBytes"] {
                if let Some(field) = item.get_mut(key)
                    && let Some(n) = field.as_u64()
                {
                    *field = Value::String(n.to_string());
                }
            }
        }
        ItemVariant::BoolAsString => {
            let share = item.get("shareToMe").and_then(Value::as_bool).unwrap_or(rec.share_to_me);
            item.insert("shareToMe".into(), Value::String(share.to_string()));
        }
        ItemVariant::UnknownEnum => {
            item.insert("format".into(), Value::String("WEBM".into()));
            item.insert("status".into(), Value::String("archived_elsewhere".into()));
            item.insert("serviceType".into(), Value::String("NewCenter".into()));
        }
        ItemVariant::NullFields => {
            for key in NULLED_FIELDS {
                item.insert(key.into(), Value::Null);
            }
        }
        ItemVariant::StringForList => {
            item.insert("integrationTags".into(), Value::String("a-tag".into()));
        }
        ItemVariant::NoId => {
            item.remove("id");
        }
        ItemVariant::WrongTypeId => {
            item.insert("id".into(), Value::from(rec.serial));
        }
        ItemVariant::BadCreateTime => {
            item.insert("createTime".into(), Value::String("yesterday".into()));
        }
        ItemVariant::NotAnObject => {}
    }
}

/// The answer of a listing body fault. `items` is the page's items, serialized and
/// joined by commas (what `huge_page` repeats).
pub(crate) fn page_body(fault: &FaultAction, items: Bytes, cancel: CancellationToken) -> Response {
    match fault {
        FaultAction::EmptyPage => (StatusCode::OK, [(header::CONTENT_TYPE, JSON)], "{}").into_response(),
        FaultAction::ItemsNotArray => {
            (StatusCode::OK, [(header::CONTENT_TYPE, JSON)], r#"{"items": {"a": 1}}"#).into_response()
        }
        FaultAction::NotJsonPage => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "text/html")], "<html>proxy error</html>").into_response()
        }
        FaultAction::HugePage { bytes, chunked } => huge_page(items, *bytes, *chunked, cancel),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "not a page fault").into_response(),
    }
}

fn huge_page(items: Bytes, bytes: u64, chunked: bool, cancel: CancellationToken) -> Response {
    let body = HugeBody::new(items, bytes);
    let len = body.len();
    let stream = futures::stream::iter(CancellableBody { body, cancel, failed: false });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    if !chunked {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    response
}

/// A huge page as a list of segments, each one template sent a number of times:
/// `{"items":[`, the page's items, `,` + items repeated, spaces, `]}`. Memory: a few
/// templates of at most about [`HUGE_CHUNK`] bytes (or one page of items), whatever the
/// size.
pub(crate) struct HugeBody {
    segments: Vec<(Bytes, u64)>,
    current: usize,
    sent: u64,
}

impl HugeBody {
    /// A body of exactly `max(bytes, 12)` bytes repeating `items` (comma-joined item
    /// JSON; empty for an empty page).
    pub(crate) fn new(items: Bytes, bytes: u64) -> Self {
        let fixed = (HEAD.len() + TAIL.len()) as u64;
        let mut room = bytes.saturating_sub(fixed);
        let mut segments = vec![(Bytes::from_static(HEAD), 1)];
        if !items.is_empty() && items.len() as u64 <= room {
            room -= items.len() as u64;
            segments.push((items.clone(), 1));
            let unit_len = items.len() + 1;
            let per_chunk = (HUGE_CHUNK / unit_len).max(1);
            let mut unit = Vec::with_capacity(per_chunk * unit_len);
            for _ in 0..per_chunk {
                unit.push(b',');
                unit.extend_from_slice(&items);
            }
            let unit = Bytes::from(unit);
            let units = room / unit_len as u64;
            room -= units * unit_len as u64;
            let (full, rest) = (units / per_chunk as u64, (units % per_chunk as u64) as usize);
            segments.push((unit.clone(), full));
            segments.push((unit.slice(..rest * unit_len), 1));
        }
        let spaces = Bytes::from(vec![b' '; HUGE_CHUNK]);
        segments.push((spaces.clone(), room / HUGE_CHUNK as u64));
        segments.push((spaces.slice(..(room % HUGE_CHUNK as u64) as usize), 1));
        segments.push((Bytes::from_static(TAIL), 1));
        segments.retain(|(b, n)| !b.is_empty() && *n > 0);
        Self { segments, current: 0, sent: 0 }
    }

    /// Total length, bytes.
    pub(crate) fn len(&self) -> u64 {
        self.segments.iter().map(|(b, n)| b.len() as u64 * n).sum()
    }
}

impl Iterator for HugeBody {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let (template, times) = self.segments.get(self.current)?;
        let chunk = template.clone();
        self.sent += 1;
        if self.sent >= *times {
            self.current += 1;
            self.sent = 0;
        }
        Some(chunk)
    }
}

/// A huge body that stops (with an error) when the simulator shuts down.
struct CancellableBody {
    body: HugeBody,
    cancel: CancellationToken,
    failed: bool,
}

impl Iterator for CancellableBody {
    type Item = Result<Bytes, io::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.cancel.is_cancelled() {
            self.failed = true;
            return Some(Err(io::Error::new(io::ErrorKind::Interrupted, "simulator shutting down")));
        }
        self.body.next().map(Ok)
    }
}

/// Comma-joined JSON of `items` (what a huge page repeats).
pub(crate) fn joined(items: &[Value]) -> Bytes {
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // NOTE: serializing a `Value` cannot fail (its keys are strings).
        if let Ok(bytes) = serde_json::to_vec(item) {
            out.extend_from_slice(&bytes);
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(body: HugeBody) -> Vec<u8> {
        body.flat_map(|b| b.to_vec()).collect()
    }

    #[test]
    fn huge_bodies_have_the_exact_size_and_are_json() {
        let items = joined(&[serde_json::json!({"id": "a", "n": 1}), serde_json::json!({"id": "b"})]);
        for bytes in [0u64, 12, 13, 40, 41, 1_000, 200_003, 3 << 20] {
            let body = HugeBody::new(items.clone(), bytes);
            let expected = bytes.max(12);
            assert_eq!(body.len(), expected, "len for {bytes}");
            let all = collect(body);
            assert_eq!(all.len() as u64, expected, "bytes for {bytes}");
            let page: Value = serde_json::from_slice(&all).expect("valid JSON");
            let n = page["items"].as_array().expect("items").len();
            assert_eq!(n % 2, 0, "whole copies of the page");
            if bytes >= 1_000 {
                assert!(n > 2, "the items repeat: {n}");
            }
        }
        // An empty page: spaces only.
        let all = collect(HugeBody::new(Bytes::new(), 5_000));
        assert_eq!(all.len(), 5_000);
        assert_eq!(serde_json::from_slice::<Value>(&all).expect("JSON")["items"], serde_json::json!([]));
    }

    #[test]
    fn huge_bodies_come_in_bounded_chunks_from_few_templates() {
        let items = joined(&[serde_json::json!({"id": "x".repeat(300)})]);
        let body = HugeBody::new(items, 160 << 20);
        assert!(body.segments.len() <= 7);
        assert!(body.segments.iter().all(|(b, _)| b.len() <= HUGE_CHUNK + 400));
        assert_eq!(body.map(|b| b.len() as u64).sum::<u64>(), 160 << 20);
    }
}
