//! `/_sim/`: the truth, the counters, and runtime control.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::api::json_response;
use super::config::RateLimit;
use super::faults::{Burst429, FaultRule};
use super::store::{BinMove, NewRecording};
use super::{Shared, SimError};

/// A change to a running simulator (`POST /_sim/control`, [`super::SimHandle::control`]).
/// Every field is optional; absent ones change nothing.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Control {
    /// Replace every fault rule (and their use counts) with these.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub faults: Option<Vec<FaultRule>>,
    /// Append these fault rules.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add_faults: Vec<FaultRule>,
    /// Start a burst of 429s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst_429: Option<Burst429>,
    /// Set the per-token rate limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Lift the rate limit.
    pub rate_limit_off: bool,
    /// Lifetime of links handed out from now on.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub link_lifetime: Option<Duration>,
    /// Expire every access token issued so far.
    pub expire_access_tokens: bool,
    /// Expire every refresh token issued so far.
    pub expire_refresh_tokens: bool,
    /// Zero the counters.
    pub reset_counters: bool,
    /// Move recordings into or out of the recycle bin (`after` counts from now).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recycle_bin: Vec<BinMove>,
}

/// What `POST /_sim/control` and `GET /_sim/control` answer.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ControlState {
    /// The fault rules in force.
    pub faults: Vec<FaultRule>,
    /// Lifetime of new links.
    #[serde(with = "humantime_serde")]
    pub link_lifetime: Duration,
}

pub(crate) fn apply(shared: &Shared, control: Control) -> Result<ControlState, String> {
    if !control.recycle_bin.is_empty() {
        let mut store = shared.write_store();
        let now = chrono::Utc::now();
        for mv in &control.recycle_bin {
            store.schedule(mv, now)?;
        }
    }
    {
        let mut faults = shared.faults();
        if let Some(rules) = control.faults {
            faults.set(rules);
        }
        if !control.add_faults.is_empty() {
            faults.add(control.add_faults);
        }
    }
    {
        let mut limiter = shared.limiter();
        if control.rate_limit_off {
            limiter.set_rate(None);
        }
        if let Some(rate) = control.rate_limit {
            limiter.set_rate(Some(rate));
        }
        if let Some(burst) = control.burst_429 {
            limiter.start_burst(burst);
        }
    }
    if let Some(lifetime) = control.link_lifetime {
        *shared.link_lifetime.lock().unwrap_or_else(|e| e.into_inner()) = lifetime;
    }
    let now = chrono::Utc::now();
    if control.expire_access_tokens {
        shared.auth().expire_access(now);
    }
    if control.expire_refresh_tokens {
        shared.auth().expire_refresh(now);
    }
    if control.reset_counters {
        shared.counters.reset();
    }
    Ok(state(shared))
}

fn state(shared: &Shared) -> ControlState {
    ControlState { faults: shared.faults().rules(), link_lifetime: shared.link_lifetime() }
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/recordings", get(truth).post(add))
        .route("/_sim/counters", get(counters))
        .route("/_sim/counters/reset", post(reset))
        .route("/_sim/control", get(current).post(control))
        .route("/_sim/hostile", get(hostile))
}

async fn hostile(State(shared): State<Arc<Shared>>) -> Response {
    match &shared.hostile {
        Some(plan) => json_response(StatusCode::OK, plan),
        None => json_response(StatusCode::NOT_FOUND, &serde_json::json!({"error": "the hostile preset is off"})),
    }
}

async fn truth(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Response {
    let digests = !url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
        .any(|(k, v)| k == "digests" && (v == "false" || v == "0"));
    let task = tokio::task::spawn_blocking(move || shared.truth(digests));
    match task.await {
        Ok(truth) => json_response(StatusCode::OK, &truth),
        Err(e) => json_response(StatusCode::INTERNAL_SERVER_ERROR, &serde_json::json!({"error": e.to_string()})),
    }
}

async fn add(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let new: NewRecording = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return json_response(StatusCode::BAD_REQUEST, &serde_json::json!({"error": e.to_string()})),
    };
    match shared.add_recording(new) {
        Ok(truth) => json_response(StatusCode::CREATED, &truth),
        Err(e @ SimError::DuplicateId(_)) => {
            json_response(StatusCode::CONFLICT, &serde_json::json!({"error": e.to_string()}))
        }
        Err(e) => json_response(StatusCode::BAD_REQUEST, &serde_json::json!({"error": e.to_string()})),
    }
}

async fn counters(State(shared): State<Arc<Shared>>) -> Response {
    json_response(StatusCode::OK, &shared.counters.snapshot())
}

async fn reset(State(shared): State<Arc<Shared>>) -> Response {
    shared.counters.reset();
    json_response(StatusCode::OK, &shared.counters.snapshot())
}

async fn current(State(shared): State<Arc<Shared>>) -> Response {
    json_response(StatusCode::OK, &state(&shared))
}

async fn control(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<Control>(&body) {
        Ok(c) => match apply(&shared, c) {
            Ok(state) => json_response(StatusCode::OK, &state),
            Err(e) => json_response(StatusCode::BAD_REQUEST, &serde_json::json!({"error": e})),
        },
        Err(e) => json_response(StatusCode::BAD_REQUEST, &serde_json::json!({"error": e.to_string()})),
    }
}
