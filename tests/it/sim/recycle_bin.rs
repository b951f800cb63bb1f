//! The recycle bin: listings honour `status` as the contract says, recordings move to
//! `deleted` and `purged` at given times, and what a Compliance Officer sees.

use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use webex_archiver::sim::{BinMove, SimConfig};

use super::{api, assert_webex_error, ids, list_all, q, start, wait_until};

fn window() -> String {
    let (from, to) = (Utc::now() - Duration::days(29), Utc::now() + Duration::hours(1));
    format!("from={}&to={}&max=100", q(from), q(to))
}

fn admin(site: &str, status: &str) -> String {
    format!("/admin/recordings?siteUrl={site}&{}&status={status}", window())
}

#[tokio::test]
async fn listings_honour_status_and_the_bin_moves_over_time() {
    let config = SimConfig { recordings: 12, span: StdDuration::from_secs(20 * 86_400), ..Default::default() };
    let sim = start(SimConfig { compliance_officer: true, ..config.clone() }).await;
    let truth = sim.truth_without_digests();
    let site = truth[0].site_url.clone();
    let on_site: Vec<_> = truth.into_iter().filter(|r| r.site_url == site).collect();
    assert!(on_site.len() >= 2, "the population has two recordings on one site: {on_site:?}");
    let (deleted, purged) = (on_site[0].id.clone(), on_site[1].id.clone());
    let host = |i: usize| url::form_urlencoded::byte_serialize(on_site[i].host_email.as_bytes()).collect::<String>();
    let all: Vec<String> = on_site.iter().map(|r| r.id.clone()).collect();

    let (available, _) = list_all(&sim, &admin(&site, "available"), 100).await;
    assert_eq!(ids(&available), all);
    sim.set_status(&deleted, "deleted").unwrap();
    sim.set_status(&purged, "purged").unwrap();

    let (available, _) = list_all(&sim, &admin(&site, "available"), 100).await;
    let rest: Vec<String> = all.iter().filter(|id| **id != deleted && **id != purged).cloned().collect();
    assert_eq!(ids(&available), rest, "gone from the default listing");
    let (in_bin, _) = list_all(&sim, &admin(&site, "deleted"), 100).await;
    assert_eq!(ids(&in_bin), [deleted.as_str()]);
    assert_eq!(in_bin[0]["status"], "deleted", "the item carries its status now");
    let (gone, _) = list_all(&sim, &admin(&site, "purged"), 100).await;
    assert_eq!(ids(&gone), [purged.as_str()]);
    assert_eq!(gone[0]["status"], "purged");

    // A Compliance Officer still fetches a deleted recording's details (with links); a
    // purged one is gone for everyone.
    let details = api(&sim, &format!("/recordings/{deleted}?hostEmail={}", host(0))).await;
    assert_eq!(details.status, 200, "{}", details.text);
    assert_eq!(details.json()["status"], "deleted");
    assert!(details.json()["temporaryDirectDownloadLinks"]["recordingDownloadLink"].is_string());
    assert_webex_error(&api(&sim, &format!("/recordings/{purged}?hostEmail={}", host(1))).await, 404);

    // Restored from the bin: listed as available again.
    sim.set_status(&deleted, "available").unwrap();
    let (available, _) = list_all(&sim, &admin(&site, "available"), 100).await;
    assert!(ids(&available).contains(&deleted));

    // A scenario's moves at given times: nothing yet, then the move.
    let later = SimConfig {
        compliance_officer: true,
        recycle_bin: vec![BinMove {
            id: all[0].clone(),
            status: "deleted".into(),
            at: None,
            after: Some(StdDuration::from_millis(300)),
        }],
        ..config
    };
    let sim = start(later).await;
    let (in_bin, _) = list_all(&sim, &admin(&site, "deleted"), 100).await;
    assert!(in_bin.is_empty(), "not moved yet");
    wait_until(StdDuration::from_secs(5), "the scheduled move", || async {
        let (in_bin, _) = list_all(&sim, &admin(&site, "deleted"), 100).await;
        ids(&in_bin) == [all[0].clone()]
    })
    .await;
}

#[tokio::test]
async fn purged_recordings_are_for_compliance_officers_and_bad_moves_are_refused() {
    let sim = start(SimConfig { recordings: 4, ..Default::default() }).await;
    let first = sim.truth_without_digests()[0].clone();
    let id = first.id.clone();
    let site = sim.sites()[0].clone();
    let host: String = url::form_urlencoded::byte_serialize(first.host_email.as_bytes()).collect();
    let details = format!("/recordings/{id}?hostEmail={host}");
    assert_eq!(api(&sim, &details).await.status, 200, "available: its details are served");
    sim.set_status(&id, "deleted").unwrap();
    // Not a Compliance Officer: no purged listing, no details of a deleted recording.
    assert_webex_error(&api(&sim, &admin(&site, "purged")).await, 403);
    assert_webex_error(&api(&sim, &details).await, 404);
    // The user listing: purged needs a Compliance Officer and a meetingId; a status the
    // contract does not name is a 400.
    assert_webex_error(&api(&sim, &format!("/recordings?{}&status=purged", window())).await, 403);
    assert_webex_error(&api(&sim, &format!("/recordings?{}&status=archived", window())).await, 400);

    let officer = start(SimConfig { recordings: 4, compliance_officer: true, ..Default::default() }).await;
    assert_webex_error(&api(&officer, &format!("/recordings?{}&status=purged", window())).await, 400);
    let meeting = officer.truth_without_digests()[0].meeting_id.clone();
    let resp = api(&officer, &format!("/recordings?{}&status=purged&meetingId={meeting}", window())).await;
    assert_eq!(resp.status, 200, "{}", resp.text);

    // Moves naming no recording, or no status, are refused with a reason.
    let e = sim.set_status("no-such-id", "deleted").unwrap_err().to_string();
    assert!(e.contains("no-such-id"), "{e}");
    let e = sim.set_status(&id, "archived").unwrap_err().to_string();
    assert!(e.contains("archived"), "{e}");
    let bad = SimConfig {
        recycle_bin: vec![BinMove { id: "nope".into(), status: "deleted".into(), at: None, after: None }],
        ..Default::default()
    };
    let e = webex_archiver::sim::Simulator::start(bad).await.err().expect("refused").to_string();
    assert!(e.contains("recycle_bin") && e.contains("nope"), "{e}");
}
