//! Rate limits, 429 bursts and Retry-After (both forms), violations, API faults.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use webex_archiver::sim::{
    Burst429, Endpoint, FaultAction, FaultEndpoint, FaultRule, RateLimit, RetryAfterFormat, SimConfig, SimHandle,
};

use super::{Resp, api, assert_webex_error, start};

fn config(grace: Duration) -> SimConfig {
    SimConfig { recordings: 5, violation_grace: grace, ..SimConfig::default() }
}

async fn sites(sim: &SimHandle) -> Resp {
    api(sim, "/meetingPreferences/sites").await
}

fn retry_after_secs(resp: &Resp) -> u64 {
    let value = resp.header("retry-after").expect("Retry-After");
    value.parse::<u64>().unwrap_or_else(|_| panic!("Retry-After in whole seconds: {value}"))
}

#[tokio::test]
async fn the_token_bucket_limits_each_token_with_retry_after_seconds() {
    let sim = start(SimConfig {
        rate_limit: Some(RateLimit {
            requests_per_second: 0.2,
            burst: 3,
            retry_after_format: RetryAfterFormat::Seconds,
        }),
        ..config(Duration::from_secs(30))
    })
    .await;
    for _ in 0..3 {
        assert_eq!(sites(&sim).await.status, 200);
    }
    let limited = sites(&sim).await;
    assert_webex_error(&limited, 429);
    let secs = retry_after_secs(&limited);
    assert!((1..=5).contains(&secs), "Retry-After {secs}");
    let counters = sim.counters();
    assert_eq!(counters.rate_limited, 1);
    assert_eq!(counters.requests_with(Endpoint::Sites, 429), 1);
    assert_eq!(counters.violations, 0, "inside the grace");
    // Lifting the limit (a pause already given still holds).
    sim.set_rate_limit(None);
}

#[tokio::test]
async fn a_request_during_the_pause_is_a_violation_and_one_after_it_is_not() {
    let sim = start(config(Duration::ZERO)).await;
    sim.burst_429(Burst429 {
        requests: Some(1),
        duration: None,
        retry_after: 1,
        retry_after_format: RetryAfterFormat::Seconds,
        retry_after_raw: None,
    });
    let sent = Instant::now();
    let first = sites(&sim).await;
    let received = Instant::now();
    assert_webex_error(&first, 429);
    assert_eq!(retry_after_secs(&first), 1);
    // Too early: 429 again, and counted. (The pause began after `sent`.)
    let early = sites(&sim).await;
    assert!(sent.elapsed() < Duration::from_secs(1), "the early request was sent within the pause");
    assert_webex_error(&early, 429);
    assert_eq!(sim.counters().violations, 1);
    // Waiting out the Retry-After from the moment the 429 arrived is compliant.
    tokio::time::sleep_until((received + Duration::from_millis(1_050)).into()).await;
    assert_eq!(sites(&sim).await.status, 200);
    let counters = sim.counters();
    assert_eq!(counters.violations, 1);
    assert_eq!(counters.rate_limited, 2);
}

#[tokio::test]
async fn requests_in_flight_within_the_grace_are_not_violations() {
    let sim = start(config(Duration::from_secs(30))).await;
    sim.burst_429(Burst429 {
        requests: Some(1),
        duration: None,
        retry_after: 5,
        retry_after_format: RetryAfterFormat::Seconds,
        retry_after_raw: None,
    });
    assert_webex_error(&sites(&sim).await, 429);
    let during = sites(&sim).await;
    assert_webex_error(&during, 429);
    assert!(retry_after_secs(&during) <= 5);
    assert_eq!(sim.counters().violations, 0);
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured_too() {
    let sim = start(config(Duration::ZERO)).await;
    sim.burst_429(Burst429 {
        requests: Some(1),
        duration: None,
        retry_after: 1,
        retry_after_format: RetryAfterFormat::HttpDate,
        retry_after_raw: None,
    });
    let first = sites(&sim).await;
    assert_webex_error(&first, 429);
    let value = first.header("retry-after").expect("Retry-After");
    let until = httpdate::parse_http_date(&value).unwrap_or_else(|e| panic!("an HTTP date ({e}): {value}"));
    let wait = until.duration_since(SystemTime::now()).expect("in the future");
    assert!(wait <= Duration::from_secs(2), "{wait:?}");
    assert_webex_error(&sites(&sim).await, 429);
    assert_eq!(sim.counters().violations, 1);
    // Sleep until the date has passed (plus a little for the clock's coarseness).
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    assert_eq!(sites(&sim).await.status, 200);
    assert_eq!(sim.counters().violations, 1);
}

#[tokio::test]
async fn a_burst_covers_the_next_n_requests_or_a_time_span() {
    let sim = start(config(Duration::from_secs(30))).await;
    // By count: each compliant retry after the pause uses up one of the burst.
    sim.burst_429(Burst429 {
        requests: Some(2),
        duration: None,
        retry_after: 1,
        retry_after_format: RetryAfterFormat::Seconds,
        retry_after_raw: None,
    });
    for _ in 0..2 {
        assert_webex_error(&sites(&sim).await, 429);
        let received = Instant::now();
        tokio::time::sleep_until((received + Duration::from_millis(1_050)).into()).await;
    }
    assert_eq!(sites(&sim).await.status, 200);
    assert_eq!(sim.counters().rate_limited, 2);

    // By time: every request within the span (another token is limited too).
    let control = sim
        .control(webex_archiver::sim::Control {
            burst_429: Some(Burst429 {
                requests: None,
                duration: Some(Duration::from_millis(2_000)),
                retry_after: 1,
                retry_after_format: RetryAfterFormat::Seconds,
                retry_after_raw: None,
            }),
            ..Default::default()
        })
        .expect("a burst is a valid control");
    assert!(control.faults.is_empty());
    let burst_started = Instant::now();
    assert_webex_error(&sites(&sim).await, 429);
    let received = Instant::now();
    tokio::time::sleep_until((received + Duration::from_millis(1_050)).into()).await;
    assert!(burst_started.elapsed() < Duration::from_millis(2_000), "still within the burst's span");
    assert_webex_error(&sites(&sim).await, 429);
    let received = Instant::now();
    // Past both the span and the second pause.
    tokio::time::sleep_until((received + Duration::from_millis(1_050)).into()).await;
    assert_eq!(sites(&sim).await.status, 200);
    assert_eq!(sim.counters().violations, 0);
}

#[tokio::test]
async fn api_errors_apply_the_first_n_times_then_succeed() {
    let sim = start(config(Duration::from_secs(1))).await;
    for status in [500u16, 502, 503, 504] {
        sim.set_faults(vec![FaultRule::new(FaultAction::ApiError { status }).endpoint(FaultEndpoint::List).times(2)]);
        assert_webex_error(&api(&sim, "/recordings").await, status);
        assert_eq!(api(&sim, "/meetingPreferences/sites").await.status, 200, "other endpoints are spared");
        assert_webex_error(&api(&sim, "/recordings").await, status);
        assert_eq!(api(&sim, "/recordings").await.status, 200, "a retry succeeds after {status} x2");
    }
    let counters = sim.counters();
    assert_eq!(counters.faults("api_error"), 8);
    assert_eq!(counters.requests_with(Endpoint::List, 503), 2);
    assert_eq!(counters.requests_with(Endpoint::List, 200), 4);
}

#[tokio::test]
async fn locked_carries_retry_after_for_the_named_recording_only() {
    let sim = start(config(Duration::from_secs(1))).await;
    let visible: Vec<String> =
        sim.truth_without_digests().into_iter().filter(|t| t.visible_to_user).map(|t| t.id).collect();
    let (locked, other) = (visible[0].clone(), visible[1].clone());
    sim.set_faults(vec![FaultRule::new(FaultAction::Locked { retry_after: Some(3) }).ids([locked.clone()]).times(1)]);
    let resp = api(&sim, &format!("/recordings/{locked}")).await;
    assert_webex_error(&resp, 423);
    assert_eq!(retry_after_secs(&resp), 3);
    assert_eq!(api(&sim, &format!("/recordings/{other}")).await.status, 200);
    assert_eq!(api(&sim, &format!("/recordings/{locked}")).await.status, 200);
    let counters = sim.counters();
    assert_eq!(counters.details_calls.get(&locked), Some(&2));
    assert_eq!(counters.details_calls.get(&other), Some(&1));
    assert_eq!(counters.violations, 0, "a 423 is not a rate-limit pause");
}

#[tokio::test]
async fn probability_decides_per_request() {
    let sim = start(config(Duration::from_secs(1))).await;
    sim.set_faults(vec![FaultRule::new(FaultAction::ApiError { status: 503 }).probability(0.0)]);
    for _ in 0..5 {
        assert_eq!(api(&sim, "/meetingPreferences/sites").await.status, 200);
    }
    sim.set_faults(vec![FaultRule::new(FaultAction::ApiError { status: 503 }).probability(1.0)]);
    assert_webex_error(&api(&sim, "/meetingPreferences/sites").await, 503);
    sim.set_faults(vec![FaultRule::new(FaultAction::ApiError { status: 503 }).probability(0.5)]);
    let mut failed = 0;
    for _ in 0..40 {
        if api(&sim, "/meetingPreferences/sites").await.status == 503 {
            failed += 1;
        }
    }
    assert!((5..=35).contains(&failed), "about half fail: {failed}/40");
}

#[tokio::test]
async fn token_endpoint_faults_only_when_asked_for() {
    let sim = start(config(Duration::from_secs(1))).await;
    let grant = |rt: String| {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("client_id", &sim.client_id())
            .append_pair("client_secret", &sim.client_secret())
            .append_pair("refresh_token", &rt)
            .finish();
        let request = super::client()
            .post(format!("{}/access_token", sim.api_base_url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        async move {
            let response = request.send().await.expect("token request");
            let status = response.status().as_u16();
            let json: serde_json::Value = response.json().await.expect("JSON body");
            (status, json["refresh_token"].as_str().map(str::to_string))
        }
    };
    // A rule without `endpoint` spares the token endpoint.
    sim.set_faults(vec![FaultRule::new(FaultAction::ApiError { status: 502 })]);
    assert_webex_error(&sites(&sim).await, 502);
    let (status, rotated) = grant(sim.refresh_token()).await;
    assert_eq!(status, 200);
    let rotated = rotated.expect("a new refresh token");
    // With `endpoint = token` it fails once, then works.
    sim.set_faults(vec![FaultRule::new(FaultAction::ApiError { status: 502 }).endpoint(FaultEndpoint::Token).times(1)]);
    assert_eq!(grant(rotated.clone()).await.0, 502);
    assert_eq!(grant(rotated).await.0, 200);
    assert_eq!(sim.counters().requests_with(Endpoint::Token, 502), 1);
}

#[tokio::test]
async fn faults_may_name_sites_and_latency_holds_a_listing_until_the_rules_change() {
    let sim = start(config(Duration::from_secs(1))).await;
    let [default, eu, apac] = <[String; 3]>::try_from(sim.sites()).expect("three sites");
    let window = "from=2000-01-01T00:00:00Z&to=2000-01-08T00:00:00Z&max=100";
    let admin = |site: Option<&str>| match site {
        Some(site) => format!("/admin/recordings?{window}&siteUrl={site}"),
        None => format!("/admin/recordings?{window}"),
    };
    // A fault naming a site: its listings only (the admin listing without siteUrl lists
    // the default site), never another endpoint.
    sim.set_faults(vec![FaultRule::new(FaultAction::ApiError { status: 503 }).sites([eu.to_uppercase()])]);
    assert_webex_error(&api(&sim, &admin(Some(&eu))).await, 503);
    assert_eq!(api(&sim, &admin(Some(&apac))).await.status, 200);
    assert_eq!(api(&sim, &admin(None)).await.status, 200);
    assert_eq!(api(&sim, &format!("/recordings?{window}&siteUrl={eu}")).await.status, 503, "the user listing too");
    assert_eq!(api(&sim, &format!("/recordings?{window}")).await.status, 200, "all sites: not about eu");
    assert_eq!(sites(&sim).await.status, 200);
    sim.set_faults(vec![FaultRule::new(FaultAction::ApiError { status: 503 }).sites([default.clone()])]);
    assert_webex_error(&api(&sim, &admin(None)).await, 503);

    // Latency: two listings of the held site wait; another site's does not.
    sim.reset_counters();
    sim.set_faults(vec![
        FaultRule::new(FaultAction::Latency { duration: Duration::from_secs(3600) }).sites([apac.clone()]),
    ]);
    let held: Vec<_> = (0..2).map(|_| tokio::spawn(api_owned(&sim, admin(Some(&apac))))).collect();
    let probe = &sim;
    super::wait_until(Duration::from_secs(20), "two held listings", || async move {
        probe.counters().listings_in_flight == 2
    })
    .await;
    assert_eq!(api(&sim, &admin(Some(&eu))).await.status, 200, "another site is answered meanwhile");
    let counters = sim.counters();
    assert_eq!((counters.listings_in_flight, counters.max_listings_in_flight), (2, 3), "{counters:?}");
    assert!(held.iter().all(|h| !h.is_finished()));
    // Replacing the rules answers them, as they would have been answered.
    sim.clear_faults();
    for h in held {
        assert_eq!(h.await.unwrap(), 200);
    }
    let counters = sim.counters();
    assert_eq!(counters.listings_in_flight, 0);
    assert_eq!(counters.faults("latency"), 2);
    assert_eq!(counters.listings_by_status.get("available"), Some(&3), "{counters:?}");
    // A reset starts the maximum again from what is in flight.
    sim.reset_counters();
    assert_eq!(sim.counters().max_listings_in_flight, 0);
    // Listings of the recycle bin are counted apart.
    assert_eq!(api(&sim, &format!("{}&status=deleted", admin(None))).await.status, 200);
    let by_status = sim.counters().listings_by_status;
    assert_eq!(by_status.into_iter().collect::<Vec<_>>(), [("deleted".to_owned(), 1)]);
}

/// The status of a GET on the API (for a task of its own).
fn api_owned(sim: &SimHandle, path_and_query: String) -> impl Future<Output = u16> + Send + 'static {
    let (url, token) = (format!("{}{path_and_query}", sim.api_base_url()), sim.access_token());
    async move { super::get_as(&url, Some(&token)).await.status }
}
