//! A faithful stand-in for the Webex recordings API, for tests (in-process, many at once)
//! and for manual runs (`webex-archiver simulate`).
//!
//! It serves three hosts on three ports: two as Webex does, and a third no answer should
//! lead to:
//! - the **API host** (`api_base_url()`, e.g. `http://127.0.0.1:PORT/v1`):
//!   `GET /v1/recordings`, `GET /v1/admin/recordings`, `GET /v1/recordings/{id}`,
//!   `GET /v1/meetingPreferences/sites`, `POST /v1/access_token`, per the OpenAPI contract
//!   (`tests/fixtures/webex/recordings.openapi.json`) and `shared/webex-api/NOTES.md`;
//!   plus the simulator's own truth and control endpoints under `/_sim/`;
//! - the **site host** (`site_base_url()`): the temporary direct download links
//!   (`/nbr/MultiThreadDownloadServlet?...&ticket=..` for the recording,
//!   `/nbr/downloadMedia.do?...&mediaType=1|2&ticket=..` for audio and transcript) and
//!   the browser pages of the listing (`/<site>/lsr.php?RCID=..`, a 200 HTML login page);
//! - the **trap host** (`trap_base_url()`): a stranger's server that hostile faults point
//!   `next` links, download links, `downloadUrl`s and redirects at. It answers any method
//!   and path plausibly, so that a client that wrongly goes there appears to succeed:
//!   paths ending in `/recordings` get `200 {"items": []}` (`application/json`), anything
//!   else `200 application/octet-stream` with 4 KiB starting with an MP4 `ftyp` box
//!   ([`trap_body`]). Every request is counted (`trap_requests`, `trap_requests_by_path`
//!   without the query, `trap_token_leaks` for those with an `Authorization` header): a
//!   correct client leaves all of them at 0.
//!
//! # Behaviour
//! - All tokens belong to one user, the first of `hosts`, who is also a site admin.
//!   `/v1/recordings` lists what that user hosts or what was shared with them (all
//!   sites); `/v1/admin/recordings` lists every host's recordings of one site (`siteUrl`,
//!   else the default site). Both filter `createTime` in `[from, to)`, newest first
//!   (ties by id, descending), pages of `max` (1..=100, default 10), the next page as an
//!   absolute URL in `Link: <..>; rel="next"` (original parameters plus an opaque
//!   `cursor` that pins the window). Defaults: only `from` => `to = from + 7d`; only
//!   `to` => `from = to - 7d`; neither => the last 7 days. 400 (Webex error body) for a bad
//!   `max`, an unparsable time, `from` after `to`, a span over 30 days on the admin
//!   endpoint, or a bad cursor. Unknown parameters (`_from`, `max_recordings`) are
//!   ignored, as a server does, and so are empty filters (`topic=`); an empty `max`,
//!   `from` or `to` is a 400. `meetingId` makes the server ignore `from`, `to` and
//!   `siteUrl`. `hostEmail` is honoured by `/v1/recordings` (another host's recordings)
//!   and by the details call; the admin listing has no such parameter and ignores it.
//! - Recordings whose visibility time is in the future ("late arrivals", see
//!   [`SimHandle::add_recording`]) are neither listed nor found yet.
//! - Items of recordings with "Prevent downloading" lack `downloadUrl` (the contract
//!   marks it required and also says it is absent then), and their details lack
//!   `temporaryDirectDownloadLinks`.
//! - Details of a recording the token user may not list are a 404 unless `hostEmail`
//!   names its host.
//! - Every response has a `Trackingid` header; every error body is
//!   `{"message", "errors": [{"description"}], "trackingId"}`.
//! - The site host never asks for a bearer token; every request that carries an
//!   `Authorization` header is counted as a token leak. Tickets are HMAC-SHA-256 of a
//!   per-simulator secret, the file and the expiry: a forged or expired one gets 403.
//! - Content is a pure function of id, kind and size ([`content::Content`]); the expected
//!   SHA-256 is in the truth. `sizeBytes` equals `Content-Length` exactly. `Range` is
//!   ignored (always 200 with the whole file): whether Webex honours it is unverified.
//! - Memory: about 3 KB per recording (100,000 recordings: some 300 MB).
//!
//! # Retry-After violations
//! When a token is sent a 429 at time `S` with a Retry-After ending at `U`, every further
//! request with that token before `U` gets 429 too, and one arriving in
//! `[S + violation_grace, U)` counts as a **violation**. The grace (default 250 ms)
//! forgives requests that were already in flight when the 429 was sent. A 423's
//! Retry-After is advice about one resource and is not tracked.
//!
//! A burst's `retry_after_raw` is sent verbatim (`"0"`, `"-5"`, `"soon"`, a past HTTP
//! date, `"99999999999999999999"`...). It sets a pause, as above, only when it is a whole
//! number of seconds from 1 to 86,400 (digits only) or an HTTP date at most a day ahead;
//! any other value sets none, so nothing after it counts as a violation (the burst itself
//! still answers 429 for as long as it lasts). During a pause the same raw value is
//! repeated.
//!
//! # Scenario file (TOML; every key optional)
//! ```toml
//! seed = 7                      # same seed => same ids, sizes, hosts, relative times
//! recordings = 200              # initial population
//! span = "60d"                  # createTimes spread over this span before `end`
//! # end = "2026-01-31T00:00:00Z" # newest possible createTime (default: start time)
//! size_min = 65536              # bytes
//! size_max = 1048576            # bytes, inclusive
//! # size = 2147483648           # one fixed size for all (wins over min/max)
//! size_overrides = { "0123abcd..." = 5000000 }   # per id (wins over everything)
//! hosts = ["admin@acme.example", "alice@acme.example"]  # the first is the token's user
//! share_to_me_fraction = 0.3    # of the others' recordings, shared with the token's user
//! prevent_downloading_fraction = 0.05
//! prevent_downloading_ids = []
//! deleted_fraction = 0.0        # in the recycle bin (status = deleted)
//! compliance_officer = false    # the token may list purged recordings and fetch deleted ones
//! format_weights = { MP4 = 8, ARF = 1, UPLOADED = 1 }
//! link_lifetime = "3h"
//! access_token_lifetime = "14d"
//! refresh_token_lifetime = "90d"
//! rotate_refresh_tokens = true
//! violation_grace = "250ms"
//! # listen = "127.0.0.1:8080"; site_listen = "127.0.0.1:8081"; trap_listen = "127.0.0.2:8082"
//! # access_token, client_id, client_secret, refresh_token: fixed credentials (default random)
//! hostile = false               # the hostile preset (below); `simulate --hostile`
//!
//! # Moves into (or out of) the recycle bin at given times: status = deleted | purged |
//! # available; `at` an instant, or `after` a span from the start (now when neither).
//! # A deleted recording is listed with status=deleted only, and its details answer 404
//! # except to a Compliance Officer (links included); a purged one is listed with
//! # status=purged (a Compliance Officer only: 403 otherwise; on the user listing only
//! # with a meetingId) and its details answer 404 to everyone.
//! [[recycle_bin]]
//! id = "0123abcd..."
//! status = "deleted"
//! after = "10m"
//!
//! [[sites]]
//! url = "acme.webex.com"
//! default = true
//! [[sites]]
//! url = "acme-eu.webex.com"
//!
//! [rate_limit]                  # per access token; absent = unlimited
//! requests_per_second = 10.0
//! burst = 20
//! retry_after_format = "seconds"   # or "http_date"
//!
//! [burst_429]                   # 429 for the next N API requests and/or for a span
//! requests = 5
//! # duration = "3s"
//! retry_after = 2               # seconds
//! retry_after_format = "seconds"
//! # retry_after_raw = "0"       # sent verbatim instead (see Retry-After violations)
//!
//! # Fault rules, tried in order; the first that matches applies. Common keys:
//! #   ids = [..]         only these recording ids (then `times` counts per id)
//! #   probability = 0.1  dice per matching request (seeded by `seed`)
//! #   times = 2          at most this many times
//! #   endpoint = "list" | "admin_list" | "details" | "sites" | "token" | "all"
//! #                      (API faults; default: every /v1 endpoint but the token one;
//! #                      listing faults: "list" or "admin_list", default both)
//! #   media = "recording" | "audio" | "transcript" | "any"
//! #                      (download faults; default: recording)
//! #   sites = [..]       only listing requests about these sites (`siteUrl`; the admin
//! #                      listing without it: the default site); then no other request
//! [[faults]]
//! kind = "api_error"    # status = 500 | 502 | 503 | 504 | ...
//! status = 503
//! probability = 0.05
//! [[faults]]
//! kind = "latency"      # answered only after this delay, or as soon as the fault rules
//! duration = "2s"       # are replaced or cleared (so "1h" hangs until then)
//! endpoint = "admin_list"
//! sites = ["acme-eu.webex.com"]
//! [[faults]]
//! kind = "locked"       # 423, optional Retry-After seconds
//! retry_after = 2
//! endpoint = "details"
//! times = 1
//! [[faults]]
//! kind = "reset"        # abort the connection after N body bytes
//! after_bytes = 100000
//! ids = ["0123abcd..."]
//! times = 1
//! [[faults]]
//! kind = "short_body"   # end the body after N bytes, short of Content-Length
//! after_bytes = 1000
//! [[faults]]
//! kind = "stall"        # pause mid-body
//! after_bytes = 65536
//! duration = "5s"
//! [[faults]]
//! kind = "login_page"   # 200 text/html instead of the media
//! [[faults]]
//! kind = "throttle"     # at most N bytes/s
//! bytes_per_second = 1000000
//! [[faults]]
//! kind = "expired_link" # details hand out links whose tickets already expired
//! [[faults]]
//! kind = "expiring_link"
//! expires_in = "30s"
//!
//! # Hostile faults (issue 11). Listings (`/v1/recordings`, `/v1/admin/recordings`); the
//! # body faults come first: one of them replaces the page, and then no item or link
//! # rule is used. Otherwise each item gets the first item rule that matches it, and the
//! # page's next link the first link rule that matches.
//! [[faults]]
//! kind = "malformed_item"   # the item as sent, never the stored recording
//! variant = "number_as_string"  # or bool_as_string, unknown_enum, null_fields,
//!                           # string_for_list, no_id, wrong_type_id, bad_create_time,
//!                           # not_an_object (see `ItemVariant`)
//! ids = ["0123abcd..."]     # these recordings' items, on any page (`times` per id);
//!                           # without ids: the first item of each matching page
//! [[faults]]
//! kind = "empty_page"       # 200 {}        (also: items_not_array, 200 {"items": {"a": 1}};
//! times = 1                 # not_json_page, 200 text/html <html>proxy error</html>)
//! [[faults]]
//! kind = "foreign_next_link"  # next -> the trap host, same path and query (always: the
//!                           # real next page's, or on a last page the page's own)
//! [[faults]]
//! kind = "self_next_link"   # next = exactly the URL requested
//! [[faults]]
//! kind = "endless_next_link"  # a next link with a fresh cursor on every page, forever:
//!                           # the real next pages, then the window again from the start
//! [[faults]]
//! kind = "huge_page"        # exactly `bytes` of valid JSON, streamed from a template:
//! bytes = 167772160         # {"items":[ + the page's items repeated + spaces + ]}
//! chunked = true            # no Content-Length
//! # Details:
//! [[faults]]
//! kind = "foreign_download_link"  # the three direct links point at the trap host
//! [[faults]]
//! kind = "foreign_download_url"   # no direct links; downloadUrl at the trap host, in
//!                           # details and (while the rule is not used up) in listings
//! # Downloads (site host; `media` as above):
//! [[faults]]
//! kind = "redirect"         # 302 to the trap host, same path and query
//! redirect_to = "site"      # or back to the site host, which then serves the file
//! [[faults]]
//! kind = "text_body"        # 200, this Content-Type, a short text
//! content_type = "application/json"  # default text/plain
//! [[faults]]
//! kind = "json_body"        # 200 application/octet-stream, a Webex JSON error document
//! [[faults]]
//! kind = "html_body"        # 200 application/octet-stream, an HTML login page
//! [[faults]]
//! kind = "no_length_short"  # 200 without Content-Length, ending cleanly after N bytes
//! after_bytes = 100000
//! ```
//!
//! Every fault applied is counted in `faults_injected` under its `kind`: an item or a
//! page per application, `foreign_download_url` per details answer (listings show it
//! without using it up).
//!
//! # The hostile preset (`hostile = true`, `simulate --hostile`)
//! At start it chooses, by `seed`, 17 distinct recordings among those available,
//! downloadable and listed for the token's user (the start fails when there are fewer;
//! with the other defaults about half the population qualifies, so take 60 recordings or
//! more), and installs, ahead of the
//! scenario's own rules: one `malformed_item` per variant, one `foreign_download_link`,
//! one `foreign_download_url`, one `redirect` to the trap host, one `redirect` to the site
//! host, one `text_body` (`application/json`), one `json_body`, one `html_body`, one
//! `no_length_short` (half the file); then `empty_page`, `not_json_page`,
//! `items_not_array`, `foreign_next_link` and `self_next_link` once each. It replaces
//! `burst_429` with a storm of 429s with `Retry-After: 0` for the first 3 seconds.
//! Every fault is transient (`times = 1`; per id) so that a correct client still archives
//! the recording (after a retry, or a later listing for the items it had to
//! quarantine), except the three that lead only to the trap host (both foreign links and
//! the redirect to the trap host): those are permanent, and the recordings stay refused.
//! [`SimHandle::hostile_plan`] (and `GET /_sim/hostile`) gives the ids, faults, `times`
//! and the outcome a correct client ends with ([`HostilePlan`]). `huge_page` and
//! `endless_next_link` are not part of it (they cost time and memory by design): add them
//! with [`SimHandle::add_fault`].
//!
//! # Control and truth endpoints (API host)
//! - `GET /_sim/recordings[?digests=false]`: the truth, a JSON array of
//!   [`TruthRecording`].
//! - `POST /_sim/recordings` with a [`NewRecording`]: publish a recording (201, its truth).
//! - `GET /_sim/counters`: [`Counters`]; `POST /_sim/counters/reset` zeroes them. Among
//!   them, `listings_in_flight` and `max_listings_in_flight`: how many listing requests
//!   are being answered now, and the most at once (how many sites a client lists
//!   concurrently).
//! - `GET /_sim/hostile`: the [`HostilePlan`] (404 when the preset is off).
//! - `POST /_sim/control` with a [`Control`]; `GET /_sim/control`: the current
//!   [`ControlState`]. Example:
//!   `{"faults": [{"kind": "api_error", "status": 502, "times": 1}],
//!     "burst_429": {"requests": 3, "retry_after": 1, "retry_after_format": "http_date"},
//!     "add_faults": [{"kind": "malformed_item", "variant": "no_id", "times": 1}],
//!     "rate_limit": {"requests_per_second": 5, "burst": 5}, "link_lifetime": "10m",
//!     "expire_access_tokens": true}`.
//!
//! # Throughput
//! One download stream is measured with a release build:
//! `cargo run --release -- simulate --recordings 1 --size 2147483648`, then
//! `curl -o /dev/null -w '%{speed_download}\n' '<recordingDownloadLink>'` (the link from
//! `GET /v1/recordings/{id}`), or `cargo test --release --test it sim::throughput -- --ignored`.

mod api;
mod cli;
pub mod config;
pub mod content;
mod control;
pub mod counters;
pub mod faults;
pub mod hostile;
mod limiter;
mod mangle;
mod site;
mod store;
mod tickets;
mod trap;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

pub use cli::{SimulateArgs, simulate_command};
pub use config::{RateLimit, RetryAfterFormat, SimConfig, SiteConfig};
pub use content::{Content, MediaKind};
pub use control::{Control, ControlState};
pub use counters::{Counters, DownloadCount, Endpoint};
pub use faults::{Burst429, FaultAction, FaultEndpoint, FaultMedia, FaultRule, ItemVariant, RedirectTarget};
pub use hostile::{HostileOutcome, HostilePlan, HostileTarget};
pub use store::{BinMove, NewRecording, TruthRecording};
pub use trap::{TRAP_BODY_LEN, trap_body};

use counters::CounterState;
use faults::FaultState;
use limiter::Limiter;
use store::{Dice, Spec, Store, World};
use tickets::TicketSigner;

/// Why the simulator cannot start or refuses a change.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A listening socket could not be opened.
    #[error("cannot bind the simulator's {host} host to {addr}")]
    Bind {
        /// `API`, `site` or `trap`.
        host: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The configuration contradicts itself.
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    /// A recording to add names an id that exists already.
    #[error("a recording with id {0} exists already")]
    DuplicateId(String),
    /// A recording to add names an unknown site.
    #[error("unknown site {0}")]
    UnknownSite(String),
    /// A recording to add names an unknown host.
    #[error("unknown host {0}")]
    UnknownHost(String),
}

/// Entry point: `Simulator::start(config)`.
pub struct Simulator;

impl Simulator {
    /// Binds the three hosts and serves until the handle is shut down or dropped.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        validate(&config)?;
        let api_addr = config.listen.unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0));
        let site_addr = config.site_listen.unwrap_or(SocketAddr::new(api_addr.ip(), 0));
        // NOTE: the trap host must be another HOST, not only another port: host-based
        // allow-lists (the archiver's `webex.download_hosts`) ignore ports. Beside an API
        // on 127.0.0.1 it takes 127.0.0.2 (Linux routes all of 127.0.0.0/8 to loopback).
        let trap_ip = match api_addr.ip() {
            IpAddr::V4(ip) if ip == Ipv4Addr::LOCALHOST => IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            other => other,
        };
        let trap_addr = config.trap_listen.unwrap_or(SocketAddr::new(trap_ip, 0));
        let (api_listener, api_local) = bind("API", api_addr).await?;
        let (site_listener, site_local) = bind("site", site_addr).await?;
        let (trap_listener, trap_local) = bind("trap", trap_addr).await?;

        let now = Utc::now();
        let default_site = config.sites.iter().position(|s| s.default).unwrap_or(0);
        let world = World {
            sites: config.sites.iter().map(|s| s.url.clone()).collect(),
            default_site,
            hosts: config.hosts.clone(),
            site_base: format!("http://{site_local}"),
        };
        let mut store = Store::new(world.sites.len());
        store::populate(&config, &world, config.end.unwrap_or(now), &mut store);
        for mv in &config.recycle_bin {
            store.schedule(mv, now).map_err(SimError::Config)?;
        }
        let hostile = if config.hostile { Some(hostile::plan(&config, &store, now)?) } else { None };
        let (rules, burst) = match &hostile {
            Some(plan) => {
                let mut rules = plan.rules.clone();
                rules.extend(config.faults.iter().cloned());
                (rules, Some(plan.storm.clone()))
            }
            None => (config.faults.clone(), config.burst_429.clone()),
        };

        let access_token = config.access_token.clone().unwrap_or_else(|| random_token("SIMAT"));
        let refresh_token = config.refresh_token.clone().unwrap_or_else(|| random_token("SIMRT"));
        let client_id = config.client_id.clone().unwrap_or_else(|| random_token("SIMCLIENT"));
        let client_secret = config.client_secret.clone().unwrap_or_else(|| random_token("SIMSECRET"));
        let mut auth = Auth::default();
        auth.access.insert(access_token.clone(), later(now, config.access_token_lifetime));
        auth.refresh.insert(refresh_token.clone(), later(now, config.refresh_token_lifetime));

        let cancel = CancellationToken::new();
        let shared = Arc::new(Shared {
            api_base: format!("http://{api_local}/v1"),
            site_base: world.site_base.clone(),
            trap_base: format!("http://{trap_local}"),
            trap_body: trap::trap_body(),
            world,
            store: RwLock::new(store),
            auth: Mutex::new(auth),
            limiter: Mutex::new(Limiter::new(config.rate_limit.clone(), burst, config.violation_grace)),
            faults: Mutex::new(FaultState::new(rules, config.seed)),
            hostile,
            nonce: AtomicU64::new(0),
            counters: CounterState::default(),
            tickets: TicketSigner::new(rand::random()),
            link_lifetime: Mutex::new(config.link_lifetime),
            client_id,
            client_secret,
            dice: Mutex::new(Dice::new(config.seed ^ 0xADD)),
            config,
            cancel: cancel.clone(),
        });

        let api_router = api::router(shared.clone());
        let site_router = site::router(shared.clone());
        let trap_router = trap::router(shared.clone());
        let api_task = tokio::spawn(serve(api_listener, api_router, cancel.clone(), "API"));
        let site_task = tokio::spawn(serve(site_listener, site_router, cancel.clone(), "site"));
        let trap_task = tokio::spawn(serve(trap_listener, trap_router, cancel.clone(), "trap"));
        tracing::debug!(api = %api_local, site = %site_local, trap = %trap_local, "webex simulator listening");
        Ok(SimHandle {
            shared,
            api_addr: api_local,
            site_addr: site_local,
            trap_addr: trap_local,
            access_token,
            refresh_token,
            tasks: vec![api_task, site_task, trap_task],
            cancel: cancel.clone(),
            _guard: cancel.drop_guard(),
        })
    }
}

async fn bind(host: &'static str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr), SimError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| SimError::Bind { host, addr, source })?;
    let local = listener.local_addr().map_err(|source| SimError::Bind { host, addr, source })?;
    Ok((listener, local))
}

async fn serve(listener: TcpListener, router: axum::Router, cancel: CancellationToken, host: &'static str) {
    let result = axum::serve(listener, router).with_graceful_shutdown(cancel.cancelled_owned()).await;
    if let Err(e) = result {
        tracing::warn!(error = %e, host, "webex simulator stopped serving");
    }
}

fn validate(config: &SimConfig) -> Result<(), SimError> {
    if config.sites.is_empty() {
        return Err(SimError::Config("`sites` must name at least one site".into()));
    }
    if config.hosts.is_empty() {
        return Err(SimError::Config("`hosts` must name at least one host".into()));
    }
    if config.size_min > config.size_max {
        return Err(SimError::Config("`size_min` is larger than `size_max`".into()));
    }
    for (name, value) in [
        ("share_to_me_fraction", config.share_to_me_fraction),
        ("prevent_downloading_fraction", config.prevent_downloading_fraction),
        ("deleted_fraction", config.deleted_fraction),
    ] {
        if !(0.0..=1.0).contains(&value) {
            return Err(SimError::Config(format!("`{name}` must be within 0..=1")));
        }
    }
    if let Some(rate) = &config.rate_limit
        && (rate.requests_per_second <= 0.0 || rate.requests_per_second.is_nan())
    {
        return Err(SimError::Config("`rate_limit.requests_per_second` must be positive".into()));
    }
    if let Some(raw) = config.burst_429.as_ref().and_then(|b| b.retry_after_raw.as_deref())
        && axum::http::HeaderValue::from_str(raw).is_err()
    {
        return Err(SimError::Config("`burst_429.retry_after_raw` is not a valid header value".into()));
    }
    Ok(())
}

/// A running simulator. Dropping it stops the servers (in the background);
/// [`SimHandle::shutdown`] stops them and waits.
pub struct SimHandle {
    shared: Arc<Shared>,
    api_addr: SocketAddr,
    site_addr: SocketAddr,
    trap_addr: SocketAddr,
    access_token: String,
    refresh_token: String,
    tasks: Vec<JoinHandle<()>>,
    cancel: CancellationToken,
    _guard: DropGuard,
}

impl SimHandle {
    /// Base URL of the API, with `/v1`: `http://127.0.0.1:PORT/v1`.
    pub fn api_base_url(&self) -> String {
        self.shared.api_base.clone()
    }

    /// Base URL of the API host without `/v1` (where `/_sim/` lives).
    pub fn api_origin(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// Base URL of the site (download) host: `http://127.0.0.1:PORT`.
    pub fn site_base_url(&self) -> String {
        self.shared.site_base.clone()
    }

    /// Address of the API host.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Address of the site host.
    pub fn site_addr(&self) -> SocketAddr {
        self.site_addr
    }

    /// Base URL of the trap host, a host no answer should lead to:
    /// `http://127.0.0.1:PORT`.
    pub fn trap_base_url(&self) -> String {
        self.shared.trap_base.clone()
    }

    /// Address of the trap host.
    pub fn trap_addr(&self) -> SocketAddr {
        self.trap_addr
    }

    /// What the `hostile` preset installed; `None` when it is off.
    pub fn hostile_plan(&self) -> Option<HostilePlan> {
        self.shared.hostile.clone()
    }

    /// The initial access token (valid for `access_token_lifetime` from start).
    pub fn access_token(&self) -> String {
        self.access_token.clone()
    }

    /// The OAuth client id.
    pub fn client_id(&self) -> String {
        self.shared.client_id.clone()
    }

    /// The OAuth client secret.
    pub fn client_secret(&self) -> String {
        self.shared.client_secret.clone()
    }

    /// The initial refresh token (revoked by its first use when tokens rotate).
    pub fn refresh_token(&self) -> String {
        self.refresh_token.clone()
    }

    /// The site host names, in configuration order.
    pub fn sites(&self) -> Vec<String> {
        self.shared.world.sites.clone()
    }

    /// The token's user (the first host).
    pub fn user_email(&self) -> String {
        self.shared.world.hosts[self.shared.world.user()].clone()
    }

    /// Every recording with its expected SHA-256 (computed on first request, then
    /// cached; a blocking computation proportional to the total size), newest first.
    pub fn truth(&self) -> Vec<TruthRecording> {
        self.shared.truth(true)
    }

    /// Every recording without digests (cheap), newest first.
    pub fn truth_without_digests(&self) -> Vec<TruthRecording> {
        self.shared.truth(false)
    }

    /// One recording's truth, digest included.
    pub fn recording(&self, id: &str) -> Option<TruthRecording> {
        let store = self.shared.read_store();
        let now = Utc::now();
        store.get(id).map(|r| TruthRecording {
            sha256: Some(r.sha256().to_string()),
            status: store.status_at(r, now).to_owned(),
            ..TruthRecording::from(&**r)
        })
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.shared.counters.snapshot()
    }

    /// Zeroes the counters.
    pub fn reset_counters(&self) {
        self.shared.counters.reset();
    }

    /// Replaces the fault rules (and their use counts), the `hostile` preset's included.
    pub fn set_faults(&self, rules: Vec<FaultRule>) {
        self.shared.faults().set(rules);
    }

    /// Appends a fault rule.
    pub fn add_fault(&self, rule: FaultRule) {
        self.shared.faults().add(vec![rule]);
    }

    /// Removes every fault rule, the `hostile` preset's included.
    pub fn clear_faults(&self) {
        self.shared.faults().set(Vec::new());
    }

    /// Starts a burst of 429s.
    pub fn burst_429(&self, burst: Burst429) {
        self.shared.limiter().start_burst(burst);
    }

    /// Sets (or with `None` lifts) the per-token rate limit.
    pub fn set_rate_limit(&self, rate: Option<RateLimit>) {
        self.shared.limiter().set_rate(rate);
    }

    /// Sets the lifetime of links handed out from now on.
    pub fn set_link_lifetime(&self, lifetime: Duration) {
        *self.shared.link_lifetime.lock().unwrap_or_else(|e| e.into_inner()) = lifetime;
    }

    /// Makes every access token issued so far expire now.
    pub fn expire_access_tokens(&self) {
        self.shared.auth().expire_access(Utc::now());
    }

    /// Makes every refresh token issued so far expire now.
    pub fn expire_refresh_tokens(&self) {
        self.shared.auth().expire_refresh(Utc::now());
    }

    /// Authorises the integration again, as a person does in the browser: returns a new
    /// refresh token (what the authorization-code grant hands out), of a new chain.
    pub fn authorize(&self) -> String {
        let token = random_token("SIMRT");
        let expiry = later(Utc::now(), self.shared.config.refresh_token_lifetime);
        self.shared.auth().refresh.insert(token.clone(), expiry);
        token
    }

    /// Applies a control request, as `POST /_sim/control` does; a recycle-bin move that
    /// names no recording or no status is refused (and nothing of the request applied).
    pub fn control(&self, control: Control) -> Result<ControlState, SimError> {
        control::apply(&self.shared, control).map_err(SimError::Config)
    }

    /// Moves recording `id` into (or out of) the recycle bin now: `deleted`, `purged` or
    /// `available`.
    pub fn set_status(&self, id: &str, status: &str) -> Result<(), SimError> {
        let mv = BinMove { id: id.to_owned(), status: status.to_owned(), at: None, after: None };
        self.control(Control { recycle_bin: vec![mv], ..Control::default() }).map(|_| ())
    }

    /// Publishes a recording now (typically with a `create_time` in the past: a late
    /// arrival). Returns its truth (without digest).
    pub fn add_recording(&self, new: NewRecording) -> Result<TruthRecording, SimError> {
        self.shared.add_recording(new)
    }

    /// Stops the three hosts and waits until they have stopped (downloads in flight are cut).
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

/// Access and refresh tokens with their expiry.
#[derive(Default)]
struct Auth {
    access: HashMap<String, DateTime<Utc>>,
    refresh: HashMap<String, DateTime<Utc>>,
    /// Refresh tokens rotated out by a grant (they answer `invalid_grant`).
    rotated_out: HashSet<String>,
}

impl Auth {
    fn expire_access(&mut self, now: DateTime<Utc>) {
        for expiry in self.access.values_mut() {
            *expiry = (*expiry).min(now);
        }
    }

    fn expire_refresh(&mut self, now: DateTime<Utc>) {
        for expiry in self.refresh.values_mut() {
            *expiry = (*expiry).min(now);
        }
    }
}

/// State shared by the three hosts.
pub(crate) struct Shared {
    api_base: String,
    site_base: String,
    trap_base: String,
    trap_body: bytes::Bytes,
    world: World,
    store: RwLock<Store>,
    auth: Mutex<Auth>,
    limiter: Mutex<Limiter>,
    faults: Mutex<FaultState>,
    hostile: Option<HostilePlan>,
    /// Makes every `endless_next_link` cursor new.
    nonce: AtomicU64,
    counters: CounterState,
    tickets: TicketSigner,
    link_lifetime: Mutex<Duration>,
    client_id: String,
    client_secret: String,
    dice: Mutex<Dice>,
    config: SimConfig,
    cancel: CancellationToken,
}

impl Shared {
    fn read_store(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_store(&self) -> std::sync::RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(|e| e.into_inner())
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        self.limiter.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn auth(&self) -> std::sync::MutexGuard<'_, Auth> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_nonce(&self) -> u64 {
        self.nonce.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn link_lifetime(&self) -> Duration {
        *self.link_lifetime.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn truth(&self, digests: bool) -> Vec<TruthRecording> {
        let store = self.read_store();
        let now = Utc::now();
        store
            .all
            .iter()
            .map(|r| TruthRecording {
                sha256: digests.then(|| r.sha256().to_string()),
                status: store.status_at(r, now).to_owned(),
                ..TruthRecording::from(&**r)
            })
            .collect()
    }

    fn add_recording(&self, new: NewRecording) -> Result<TruthRecording, SimError> {
        let world = &self.world;
        let site = match &new.site_url {
            None => world.default_site,
            Some(url) => world
                .sites
                .iter()
                .position(|s| s.eq_ignore_ascii_case(url))
                .ok_or_else(|| SimError::UnknownSite(url.clone()))?,
        };
        let host = match &new.host_email {
            None => world.user(),
            Some(email) => world
                .hosts
                .iter()
                .position(|h| h.eq_ignore_ascii_case(email))
                .ok_or_else(|| SimError::UnknownHost(email.clone()))?,
        };
        let mut dice = self.dice.lock().unwrap_or_else(|e| e.into_inner());
        let mut store = self.write_store();
        let id = new.id.clone().unwrap_or_else(|| dice.hex(16));
        if store.contains(&id) {
            return Err(SimError::DuplicateId(id));
        }
        let size = new.size_bytes.or_else(|| self.config.size_overrides.get(&id).copied()).unwrap_or_else(|| {
            self.config.size.unwrap_or_else(|| dice.range(self.config.size_min, self.config.size_max))
        });
        let spec = Spec {
            serial: store.take_serial(),
            id: id.clone(),
            create_time: new.create_time.trunc_subsecs(3),
            visible_at: new.visible_at.unwrap_or_else(Utc::now),
            site,
            host,
            share_to_me: host != world.user() && new.share_to_me,
            prevent_downloading: new.prevent_downloading,
            format: new.format.clone().unwrap_or_else(|| "MP4".into()),
            status: "available".into(),
            size,
            topic: new.topic.clone(),
            meeting_series: None,
        };
        let mut rec = store::build(spec, world, &mut dice);
        if let Some(meeting) = new.meeting_id {
            rec.user_item.meeting_id = Some(meeting.clone());
            rec.admin_item.meeting_id = Some(meeting);
        }
        let truth = TruthRecording::from(&rec);
        store.insert(rec);
        Ok(truth)
    }
}

fn random_token(prefix: &str) -> String {
    let bytes: [u8; 24] = rand::random();
    format!("{prefix}_{}", hex::encode(bytes))
}

/// `t + d`, saturating at the largest representable time.
fn later(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d).ok().and_then(|d| t.checked_add_signed(d)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}
