//! Listings: paging, windows, defaults, exact query strings, filters, 400s, late arrivals.

use std::collections::HashSet;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use webex_archiver::sim::{NewRecording, SimConfig};

use super::{api, assert_webex_error, ids, list_all, q, start, start_with, wait_until};

fn at(t: DateTime<Utc>) -> NewRecording {
    NewRecording { create_time: t, visible_at: Some(Utc::now() - Duration::seconds(1)), ..NewRecording::default() }
}

#[tokio::test]
async fn paging_returns_every_recording_of_a_window_exactly_once() {
    let sim = start_with(60).await;
    let truth = sim.truth_without_digests();
    // The population has createTime ties (recordings of one meeting); they must not be
    // lost or repeated at page boundaries.
    let times: HashSet<_> = truth.iter().map(|t| t.create_time).collect();
    assert!(times.len() < truth.len(), "the population has ties");
    let (from, to) = (Utc::now() - Duration::days(61), Utc::now() + Duration::days(1));

    let mut expected: Vec<_> = truth.iter().filter(|t| t.visible_to_user).collect();
    expected.sort_by(|a, b| (b.create_time, &b.id).cmp(&(a.create_time, &a.id)));
    let expected_ids: Vec<String> = expected.iter().map(|t| t.id.clone()).collect();
    for max in [1usize, 7, 100] {
        let (items, pages) = list_all(&sim, &format!("/recordings?from={}&to={}&max={max}", q(from), q(to)), max).await;
        assert_eq!(ids(&items), expected_ids, "user listing with max={max}");
        assert_eq!(pages, expected_ids.len().div_ceil(max).max(1), "pages with max={max}");
    }

    // Admin: one site at a time, 30-day windows.
    let site = sim.sites()[1].clone();
    let mut expected: Vec<_> = truth.iter().filter(|t| t.site_url == site).collect();
    expected.sort_by(|a, b| (b.create_time, &b.id).cmp(&(a.create_time, &a.id)));
    let expected_ids: Vec<String> = expected.iter().map(|t| t.id.clone()).collect();
    for max in [1usize, 7, 100] {
        let mut got = Vec::new();
        let mut t = to;
        while t > from {
            let f = t - Duration::days(30);
            let (items, _) =
                list_all(&sim, &format!("/admin/recordings?siteUrl={site}&from={}&to={}&max={max}", q(f), q(t)), max)
                    .await;
            got.extend(ids(&items));
            t = f;
        }
        assert_eq!(got, expected_ids, "admin listing with max={max}");
    }
}

#[tokio::test]
async fn window_edges_follow_from_inclusive_to_exclusive() {
    let sim = start_with(0).await;
    let from = (Utc::now() - Duration::days(3)).trunc_subsecs(0);
    let to = from + Duration::hours(1);
    let before = sim.add_recording(at(from - Duration::seconds(1))).expect("add").id;
    let at_from = sim.add_recording(at(from)).expect("add").id;
    let inside = sim.add_recording(at(from + Duration::minutes(30))).expect("add").id;
    let at_to = sim.add_recording(at(to)).expect("add").id;
    let (items, _) = list_all(&sim, &format!("/recordings?from={}&to={}&max=100", q(from), q(to)), 100).await;
    assert_eq!(ids(&items), vec![inside, at_from], "newest first, [from, to)");
    // Moving the window by one second flips both edges.
    let (items, _) = list_all(
        &sim,
        &format!("/recordings?from={}&to={}", q(from - Duration::seconds(1)), q(to + Duration::seconds(1))),
        10,
    )
    .await;
    let got = ids(&items);
    assert!(got.contains(&before) && got.contains(&at_to) && got.len() == 4, "{got:?}");
}

#[tokio::test]
async fn missing_from_or_to_take_the_spec_defaults() {
    let sim = start_with(0).await;
    let anchor = (Utc::now() - Duration::days(40)).trunc_subsecs(0);
    let in_after = sim.add_recording(at(anchor + Duration::days(6))).expect("add").id;
    let out_after = sim.add_recording(at(anchor + Duration::days(8))).expect("add").id;
    let in_before = sim.add_recording(at(anchor - Duration::days(6))).expect("add").id;
    let _out_before = sim.add_recording(at(anchor - Duration::days(8))).expect("add").id;
    let recent = sim.add_recording(at(Utc::now() - Duration::days(1))).expect("add").id;
    let old = sim.add_recording(at(Utc::now() - Duration::days(8))).expect("add").id;

    // Only `from`: to = from + 7 days (not now).
    let resp = api(&sim, &format!("/recordings?from={}", q(anchor))).await;
    assert_eq!(ids(resp.json()["items"].as_array().expect("items")), vec![in_after.clone()]);
    assert!(!ids(resp.json()["items"].as_array().expect("items")).contains(&out_after));
    // Only `to`: from = to - 7 days.
    let resp = api(&sim, &format!("/recordings?to={}", q(anchor))).await;
    assert_eq!(ids(resp.json()["items"].as_array().expect("items")), vec![in_before]);
    // Neither: the last 7 days.
    let resp = api(&sim, "/recordings").await;
    assert_eq!(ids(resp.json()["items"].as_array().expect("items")), vec![recent.clone()]);
    assert_ne!(recent, old);
}

#[tokio::test]
async fn misspelled_parameters_are_ignored_like_a_server_does() {
    let sim = start_with(0).await;
    let mut recent = Vec::new();
    for i in 0..12 {
        recent.push(sim.add_recording(at(Utc::now() - Duration::hours(i + 1))).expect("add").id);
    }
    let old = sim.add_recording(at(Utc::now() - Duration::days(25))).expect("add").id;
    let wide = q(Utc::now() - Duration::days(30));
    // The Python SDK bug: `_from` and `max_recordings` are not `from` and `max`.
    let resp = api(&sim, &format!("/recordings?_from={wide}&max_recordings=100")).await;
    assert_eq!(resp.status, 200);
    let got = ids(resp.json()["items"].as_array().expect("items"));
    assert_eq!(got, recent[..10].to_vec(), "default max (10), not max_recordings");
    assert!(!got.contains(&old), "default window (7 days), not _from");
    assert!(resp.next_link().is_some());
    // The Go SDK bug: `To` is not `to`, so to = from + 7 days and only the old one is in.
    let resp = api(&sim, &format!("/recordings?from={wide}&To={}&max=100", q(Utc::now()))).await;
    assert_eq!(ids(resp.json()["items"].as_array().expect("items")), vec![old.clone()]);
    // Spelled right, both work.
    let resp = api(&sim, &format!("/recordings?from={wide}&to={}&max=100", q(Utc::now()))).await;
    let got = ids(resp.json()["items"].as_array().expect("items"));
    assert_eq!(got.len(), 13);
    assert_eq!(got.last(), Some(&old));
}

#[tokio::test]
async fn invalid_parameters_get_400_with_a_webex_error_body() {
    let sim = start_with(3).await;
    let now = Utc::now();
    let cases = [
        "/recordings?max=0".to_string(),
        "/recordings?max=101".to_string(),
        "/recordings?max=ten".to_string(),
        "/recordings?max=".to_string(),
        "/recordings?from=yesterday".to_string(),
        "/recordings?to=2026-13-45T00:00:00Z".to_string(),
        // An unencoded `+` in the offset decodes to a space: not a time.
        "/recordings?from=2026-01-01T00:00:00+01:00".to_string(),
        format!("/recordings?from={}&to={}", q(now), q(now - Duration::seconds(1))),
        format!("/admin/recordings?from={}&to={}", q(now - Duration::days(31)), q(now)),
        "/recordings?cursor=zz".to_string(),
    ];
    for case in &cases {
        let resp = api(&sim, case).await;
        assert_webex_error(&resp, 400);
    }
    // The limits themselves are fine.
    for ok in [
        "/recordings?max=1".to_string(),
        "/recordings?max=100".to_string(),
        "/recordings?from=2026-01-01T00:00:00%2B01:00".to_string(),
        format!("/recordings?from={}&to={}", q(now), q(now)),
        format!("/admin/recordings?from={}&to={}", q(now - Duration::days(30)), q(now)),
        format!("/recordings?from={}&to={}", q(now - Duration::days(90)), q(now)),
    ] {
        let resp = api(&sim, &ok).await;
        assert_eq!(resp.status, 200, "{ok}: {}", resp.text);
    }
}

#[tokio::test]
async fn next_link_is_absolute_carries_the_parameters_and_is_absent_on_the_last_page() {
    let sim = start_with(0).await;
    let base = Utc::now() - Duration::days(10);
    for i in 0..5 {
        sim.add_recording(at(base + Duration::days(1) + Duration::hours(i))).expect("add");
    }
    // Only `from`: `to` defaults to from + 7 days, and the cursor keeps that window.
    let first = format!("/recordings?from={}&max=2&topic=&extra=kept", q(base));
    let resp = api(&sim, &first).await;
    let next = resp.next_link().expect("a next page");
    let url = url::Url::parse(&next).expect("absolute URL");
    assert_eq!((url.scheme(), url.host_str()), ("http", Some("127.0.0.1")));
    assert_eq!(url.port(), Some(sim.api_addr().port()));
    assert_eq!(url.path(), "/v1/recordings");
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    for key in ["from", "max", "topic", "extra", "cursor"] {
        assert!(pairs.iter().any(|(k, _)| k == key), "{key} in {next}");
    }
    let (items, pages) = list_all(&sim, &first, 2).await;
    assert_eq!((items.len(), pages), (5, 3), "the last page has no Link");
    // A page that is exactly full and last has no Link either.
    let resp = api(&sim, &format!("/recordings?from={}&max=5", q(base))).await;
    assert_eq!(resp.json()["items"].as_array().map(Vec::len), Some(5));
    assert!(resp.next_link().is_none());
}

#[tokio::test]
async fn meeting_id_overrides_the_window_and_site() {
    let sim = start_with(30).await;
    let target = sim.truth_without_digests().into_iter().find(|t| t.visible_to_user).expect("a visible recording");
    let other_site = sim.sites().into_iter().find(|s| *s != target.site_url).expect("another site");
    let long_ago = q(Utc::now() - Duration::days(400));
    let resp =
        api(&sim, &format!("/recordings?meetingId={}&from={long_ago}&siteUrl={other_site}", target.meeting_id)).await;
    assert_eq!(resp.status, 200);
    assert!(ids(resp.json()["items"].as_array().expect("items")).contains(&target.id));
    let resp = api(&sim, &format!("/admin/recordings?meetingId={}&siteUrl={other_site}", target.meeting_id)).await;
    assert!(ids(resp.json()["items"].as_array().expect("items")).contains(&target.id));
}

#[tokio::test]
async fn filters_select_what_the_spec_says() {
    let sim = start(SimConfig { recordings: 0, ..SimConfig::default() }).await;
    let t = Utc::now() - Duration::days(2);
    let user = sim.user_email();
    let add = |n: NewRecording| sim.add_recording(n).expect("add").id;
    let weekly = add(NewRecording { topic: Some("Board Review Q4".into()), ..at(t) });
    let arf = add(NewRecording { format: Some("ARF".into()), ..at(t - Duration::minutes(1)) });
    let eu = add(NewRecording { site_url: Some("acme-eu.webex.com".into()), ..at(t - Duration::minutes(2)) });
    let shared = add(NewRecording {
        host_email: Some("alice@acme.example".into()),
        share_to_me: true,
        ..at(t - Duration::minutes(3))
    });
    let hidden = add(NewRecording { host_email: Some("bob@acme.example".into()), ..at(t - Duration::minutes(4)) });
    let window = format!("from={}&to={}&max=100", q(t - Duration::days(1)), q(t + Duration::days(1)));
    let list = |query: String| {
        let sim = &sim;
        async move {
            let resp = api(sim, &query).await;
            assert_eq!(resp.status, 200, "{query}: {}", resp.text);
            ids(resp.json()["items"].as_array().expect("items"))
        }
    };

    let all = list(format!("/recordings?{window}")).await;
    assert_eq!(all, vec![weekly.clone(), arf.clone(), eu.clone(), shared.clone()], "the user sees own + shared");
    assert_eq!(list(format!("/recordings?{window}&topic=board%20REVIEW%20q4")).await, vec![weekly.clone()]);
    assert_eq!(list(format!("/recordings?{window}&format=ARF")).await, vec![arf.clone()]);
    assert_eq!(list(format!("/recordings?{window}&siteUrl=acme-eu.webex.com")).await, vec![eu.clone()]);
    assert_eq!(list(format!("/recordings?{window}&hostEmail=bob@acme.example")).await, vec![hidden.clone()]);
    assert_eq!(list(format!("/recordings?{window}&hostEmail={user}")).await.len(), 4);
    assert!(list(format!("/recordings?{window}&status=deleted")).await.is_empty());
    let services = list(format!("/recordings?{window}&serviceType=MeetingCenter")).await.len()
        + list(format!("/recordings?{window}&serviceType=EventCenter")).await.len()
        + list(format!("/recordings?{window}&serviceType=TrainingCenter")).await.len()
        + list(format!("/recordings?{window}&serviceType=SupportCenter")).await.len();
    assert_eq!(services, 4, "serviceType partitions the listing");

    // shareToMe marks the shared one only.
    let resp = api(&sim, &format!("/recordings?{window}")).await;
    for item in resp.json()["items"].as_array().expect("items") {
        assert_eq!(item["shareToMe"].as_bool(), Some(item["id"] == shared.as_str()));
    }
    // Admin: the default site without siteUrl, every host's recordings.
    let admin = list(format!("/admin/recordings?{window}")).await;
    assert_eq!(admin, vec![weekly, arf, shared, hidden]);
    assert_eq!(list(format!("/admin/recordings?{window}&siteUrl=acme-eu.webex.com")).await, vec![eu]);
}

#[tokio::test]
async fn integration_tags_and_deleted_status_filter() {
    let sim = start(SimConfig { recordings: 60, deleted_fraction: 0.3, ..SimConfig::default() }).await;
    let truth = sim.truth_without_digests();
    let window = format!("from={}&to={}&max=100", q(Utc::now() - Duration::days(61)), q(Utc::now()));
    let deleted: Vec<String> =
        truth.iter().filter(|t| t.visible_to_user && t.status == "deleted").map(|t| t.id.clone()).collect();
    assert!(!deleted.is_empty());
    let resp = api(&sim, &format!("/recordings?{window}&status=deleted")).await;
    let got = ids(resp.json()["items"].as_array().expect("items"));
    assert_eq!(got.iter().collect::<HashSet<_>>(), deleted.iter().collect::<HashSet<_>>());
    let resp = api(&sim, &format!("/recordings?{window}")).await;
    let items = resp.json()["items"].as_array().expect("items").clone();
    assert!(items.iter().all(|i| i["status"] == "available"));
    let tagged = items.iter().find(|i| i.get("integrationTags").is_some()).expect("a tagged recording");
    let tag = tagged["integrationTags"][0].as_str().expect("tag");
    let resp = api(&sim, &format!("/recordings?{window}&integrationTag={tag}")).await;
    assert_eq!(ids(resp.json()["items"].as_array().expect("items")), vec![tagged["id"].as_str().expect("id")]);
}

#[tokio::test]
async fn late_arrivals_appear_only_once_visible() {
    let sim = start_with(0).await;
    let created = Utc::now() - Duration::days(2);
    let later = sim
        .add_recording(NewRecording {
            create_time: created,
            visible_at: Some(Utc::now() + Duration::milliseconds(400)),
            ..NewRecording::default()
        })
        .expect("add");
    let window = format!("/recordings?from={}&to={}", q(created - Duration::days(1)), q(Utc::now()));
    let resp = api(&sim, &window).await;
    assert!(resp.json()["items"].as_array().expect("items").is_empty(), "not visible yet");
    assert_webex_error(&api(&sim, &format!("/recordings/{}", later.id)).await, 404);
    wait_until(StdDuration::from_secs(5), "the late arrival is listed", || {
        let (sim, window, id) = (&sim, &window, &later.id);
        async move { ids(api(sim, window).await.json()["items"].as_array().expect("items")).contains(id) }
    })
    .await;
    assert_eq!(api(&sim, &format!("/recordings/{}", later.id)).await.status, 200);
}

/// Run with `cargo test --release --test it -- --ignored sim::listing::listing_speed`.
#[tokio::test]
#[ignore = "a measurement, not a check: run it by hand"]
async fn listing_speed() {
    let sim = start_with(100_000).await;
    let expected = sim.truth_without_digests().iter().filter(|t| t.visible_to_user).count();
    let started = std::time::Instant::now();
    let (items, _) = list_all(
        &sim,
        &format!("/recordings?from={}&to={}&max=100", q(Utc::now() - Duration::days(61)), q(Utc::now())),
        100,
    )
    .await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(items.len(), expected);
    println!("listed {} items in {secs:.2}s: {:.0} items/s", items.len(), items.len() as f64 / secs);
}
