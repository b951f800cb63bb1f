//! What the simulator saw: requests, 429s, violations, leaks, downloads.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::content::MediaKind;

/// The endpoints requests are counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
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
    /// Any other path on the API host.
    OtherApi,
    /// Site host: `/nbr/MultiThreadDownloadServlet` (recording file).
    Download,
    /// Site host: `/nbr/downloadMedia.do` (audio, transcript).
    DownloadMedia,
    /// Site host: `/<site>/lsr.php` (the browser page).
    LoginPage,
    /// Any other path on the site host.
    OtherSite,
}

/// Starts, completions and bytes of downloads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct DownloadCount {
    /// Bodies that began (a valid ticket, media about to be sent).
    pub started: u64,
    /// Bodies whose every byte was handed to the connection.
    pub completed: u64,
    /// Body bytes handed to the connection.
    pub bytes: u64,
}

/// A snapshot of the counters (`GET /_sim/counters`, [`super::SimHandle::counters`]).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Counters {
    /// Requests per endpoint and HTTP status.
    pub requests: BTreeMap<Endpoint, BTreeMap<u16, u64>>,
    /// 429 responses sent (rate limit, bursts, and requests during a pause).
    pub rate_limited: u64,
    /// Requests whose token had been sent a 429 at `S` with a Retry-After until `U`,
    /// arriving in `[S + violation_grace, U)`.
    pub violations: u64,
    /// Requests to the site host that carried an `Authorization` header.
    pub token_leaks: u64,
    /// Body bytes of all downloads handed to connections.
    pub bytes_served: u64,
    /// Recording-file downloads, all ids together.
    pub downloads: DownloadCount,
    /// Recording-file downloads per recording id.
    pub downloads_by_id: BTreeMap<String, DownloadCount>,
    /// Downloads per file kind (recording, audio, transcript).
    pub media_downloads: BTreeMap<MediaKind, DownloadCount>,
    /// `GET /v1/recordings/{id}` requests per id (any outcome).
    pub details_calls: BTreeMap<String, u64>,
    /// Successful refresh-token grants.
    pub token_refreshes: u64,
    /// Refresh-token grants refused with `invalid_grant` (an unknown, expired or rotated-out
    /// refresh token).
    #[serde(default)]
    pub invalid_grants: u64,
    /// Of those, grants that presented a refresh token this simulator had already rotated
    /// out: the client lost the newest one of its chain.
    #[serde(default)]
    pub rotated_out_refresh_tokens: u64,
    /// Faults applied, per kind (`api_error`, `reset`, ...).
    pub faults_injected: BTreeMap<String, u64>,
    /// Requests to the trap host (a host no answer should lead to), any path and method.
    #[serde(default)]
    pub trap_requests: u64,
    /// Requests to the trap host per path (without the query, which may hold a ticket).
    #[serde(default)]
    pub trap_requests_by_path: BTreeMap<String, u64>,
    /// Requests to the trap host that carried an `Authorization` header.
    #[serde(default)]
    pub trap_token_leaks: u64,
    /// Listing requests (`/v1/recordings`, `/v1/admin/recordings`) being answered now,
    /// from their arrival to their answer (a `latency` fault's delay included).
    #[serde(default)]
    pub listings_in_flight: u64,
    /// The most listing requests answered at once since the start (or the last reset,
    /// which starts again from those in flight then): how many listings a client runs
    /// concurrently.
    #[serde(default)]
    pub max_listings_in_flight: u64,
    /// Listing requests that reached the listing itself (past tokens, rate limits and API
    /// faults), by the `status` they asked for (`available` when absent): which listings
    /// are the recordings and which the recycle bin.
    #[serde(default)]
    pub listings_by_status: BTreeMap<String, u64>,
}

impl Counters {
    /// Requests to `endpoint` answered with `status`.
    pub fn requests_with(&self, endpoint: Endpoint, status: u16) -> u64 {
        self.requests.get(&endpoint).and_then(|m| m.get(&status)).copied().unwrap_or(0)
    }

    /// All requests to `endpoint`.
    pub fn requests_to(&self, endpoint: Endpoint) -> u64 {
        self.requests.get(&endpoint).map(|m| m.values().sum()).unwrap_or(0)
    }

    /// Recording-file downloads of `id`.
    pub fn downloads_of(&self, id: &str) -> DownloadCount {
        self.downloads_by_id.get(id).copied().unwrap_or_default()
    }

    /// How often a fault of kind `name` was applied.
    pub fn faults(&self, name: &str) -> u64 {
        self.faults_injected.get(name).copied().unwrap_or(0)
    }
}

/// One listing request in flight (see [`CounterState::listing`]).
pub(crate) struct InFlight<'a> {
    counters: &'a CounterState,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.counters.with(|c| c.listings_in_flight = c.listings_in_flight.saturating_sub(1));
    }
}

/// The live counters.
#[derive(Default)]
pub(crate) struct CounterState {
    inner: Mutex<Counters>,
    bytes: AtomicU64,
}

impl CounterState {
    fn with<R>(&self, f: impl FnOnce(&mut Counters) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    pub(crate) fn snapshot(&self) -> Counters {
        let mut c = self.with(|c| c.clone());
        c.bytes_served = self.bytes.load(Ordering::Relaxed);
        c
    }

    pub(crate) fn reset(&self) {
        self.with(|c| {
            let in_flight = c.listings_in_flight;
            *c = Counters { listings_in_flight: in_flight, max_listings_in_flight: in_flight, ..Counters::default() };
        });
        self.bytes.store(0, Ordering::Relaxed);
    }

    /// A listing request arrived; it is in flight until the guard is dropped (answered,
    /// or its connection gone).
    pub(crate) fn listing(&self) -> InFlight<'_> {
        self.with(|c| {
            c.listings_in_flight += 1;
            c.max_listings_in_flight = c.max_listings_in_flight.max(c.listings_in_flight);
        });
        InFlight { counters: self }
    }

    pub(crate) fn request(&self, endpoint: Endpoint, status: u16) {
        self.with(|c| *c.requests.entry(endpoint).or_default().entry(status).or_insert(0) += 1);
    }

    pub(crate) fn rate_limited(&self, violation: bool) {
        self.with(|c| {
            c.rate_limited += 1;
            if violation {
                c.violations += 1;
            }
        });
    }

    pub(crate) fn listing_of(&self, status: &str) {
        self.with(|c| *c.listings_by_status.entry(status.to_owned()).or_insert(0) += 1);
    }

    pub(crate) fn token_leak(&self) {
        self.with(|c| c.token_leaks += 1);
    }

    pub(crate) fn details_call(&self, id: &str) {
        self.with(|c| *c.details_calls.entry(id.to_string()).or_insert(0) += 1);
    }

    pub(crate) fn trap_request(&self, path: &str, authorized: bool) {
        self.with(|c| {
            c.trap_requests += 1;
            *c.trap_requests_by_path.entry(path.to_string()).or_insert(0) += 1;
            if authorized {
                c.trap_token_leaks += 1;
            }
        });
    }

    pub(crate) fn token_refresh(&self) {
        self.with(|c| c.token_refreshes += 1);
    }

    pub(crate) fn invalid_grant(&self, rotated_out: bool) {
        self.with(|c| {
            c.invalid_grants += 1;
            if rotated_out {
                c.rotated_out_refresh_tokens += 1;
            }
        });
    }

    pub(crate) fn fault(&self, name: &str) {
        self.with(|c| *c.faults_injected.entry(name.to_string()).or_insert(0) += 1);
    }

    pub(crate) fn download_started(&self, id: &str, media: MediaKind) {
        self.with(|c| {
            c.media_downloads.entry(media).or_default().started += 1;
            if media == MediaKind::Recording {
                c.downloads.started += 1;
                c.downloads_by_id.entry(id.to_string()).or_default().started += 1;
            }
        });
    }

    pub(crate) fn download_bytes(&self, id: &str, media: MediaKind, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.with(|c| {
            c.media_downloads.entry(media).or_default().bytes += n;
            if media == MediaKind::Recording {
                c.downloads.bytes += n;
                c.downloads_by_id.entry(id.to_string()).or_default().bytes += n;
            }
        });
    }

    pub(crate) fn download_completed(&self, id: &str, media: MediaKind) {
        self.with(|c| {
            c.media_downloads.entry(media).or_default().completed += 1;
            if media == MediaKind::Recording {
                c.downloads.completed += 1;
                c.downloads_by_id.entry(id.to_string()).or_default().completed += 1;
            }
        });
    }
}
