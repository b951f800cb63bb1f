//! Bearer tokens and the refresh-token grant.

use webex_archiver::sim::{Endpoint, SimConfig, SimHandle};
use webex_archiver::webex::models::TokenResponse;

use super::{Resp, assert_webex_error, client, get_as, start};

async fn refresh(sim: &SimHandle, pairs: &[(&str, &str)]) -> Resp {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        form.append_pair(k, v);
    }
    let response = client()
        .post(format!("{}/access_token", sim.api_base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.finish())
        .send()
        .await
        .expect("token request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Resp { status, headers, text: response.text().await.expect("body") }
}

async fn grant(sim: &SimHandle, refresh_token: &str) -> Resp {
    let (id, secret) = (sim.client_id(), sim.client_secret());
    refresh(
        sim,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

fn sites_url(sim: &SimHandle) -> String {
    format!("{}/meetingPreferences/sites", sim.api_base_url())
}

#[tokio::test]
async fn missing_wrong_and_expired_bearer_tokens_get_401() {
    let sim = start(SimConfig { recordings: 0, ..SimConfig::default() }).await;
    assert_webex_error(&get_as(&sites_url(&sim), None).await, 401);
    assert_webex_error(&get_as(&sites_url(&sim), Some("not-a-token")).await, 401);
    assert_eq!(get_as(&sites_url(&sim), Some(&sim.access_token())).await.status, 200);
    sim.expire_access_tokens();
    assert_webex_error(&get_as(&sites_url(&sim), Some(&sim.access_token())).await, 401);
    assert_eq!(sim.counters().requests_with(Endpoint::Sites, 401), 3);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_new_access_tokens_work() {
    let lifetime = std::time::Duration::from_secs(3600);
    let sim = start(SimConfig { recordings: 0, access_token_lifetime: lifetime, ..SimConfig::default() }).await;
    let first = grant(&sim, &sim.refresh_token()).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let first: TokenResponse = serde_json::from_str(&first.text).expect("token response");
    assert_eq!(first.expires_in, 3600);
    assert_eq!(first.refresh_token_expires_in, Some(90 * 86_400));
    let rotated = first.refresh_token.clone().expect("a refresh token");
    assert_ne!(rotated, sim.refresh_token(), "rotated");
    assert_ne!(first.access_token, sim.access_token());
    assert_eq!(get_as(&sites_url(&sim), Some(&first.access_token)).await.status, 200);

    // The old refresh token stopped working; the new one works once.
    assert_webex_error(&grant(&sim, &sim.refresh_token()).await, 400);
    let second = grant(&sim, &rotated).await;
    assert_eq!(second.status, 200);
    assert_webex_error(&grant(&sim, &rotated).await, 400);
    assert_eq!(sim.counters().token_refreshes, 2);

    // The token endpoint needs no bearer, and a new access token outlives an expired one.
    sim.expire_access_tokens();
    let second: TokenResponse = serde_json::from_str(&second.text).expect("token response");
    assert_webex_error(&get_as(&sites_url(&sim), Some(&second.access_token)).await, 401);
    let third = grant(&sim, second.refresh_token.as_deref().expect("refresh")).await;
    let third: TokenResponse = serde_json::from_str(&third.text).expect("token response");
    assert_eq!(get_as(&sites_url(&sim), Some(&third.access_token)).await.status, 200);
}

#[tokio::test]
async fn without_rotation_the_same_refresh_token_comes_back() {
    let sim = start(SimConfig { recordings: 0, rotate_refresh_tokens: false, ..SimConfig::default() }).await;
    for _ in 0..2 {
        let resp = grant(&sim, &sim.refresh_token()).await;
        let token: TokenResponse = serde_json::from_str(&resp.text).expect("token response");
        assert_eq!(token.refresh_token, Some(sim.refresh_token()));
    }
}

#[tokio::test]
async fn bad_grants_are_refused_with_webex_error_bodies() {
    let sim = start(SimConfig { recordings: 0, ..SimConfig::default() }).await;
    let (id, secret, rt) = (sim.client_id(), sim.client_secret(), sim.refresh_token());
    let cases: [(&[(&str, &str)], u16); 4] = [
        (&[("grant_type", "password"), ("client_id", &id), ("client_secret", &secret), ("refresh_token", &rt)], 400),
        (
            &[("grant_type", "refresh_token"), ("client_id", &id), ("client_secret", "wrong"), ("refresh_token", &rt)],
            401,
        ),
        (
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "other"),
                ("client_secret", &secret),
                ("refresh_token", &rt),
            ],
            401,
        ),
        (
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &id),
                ("client_secret", &secret),
                ("refresh_token", "nope"),
            ],
            400,
        ),
    ];
    for (pairs, status) in cases {
        assert_webex_error(&refresh(&sim, pairs).await, status);
    }
    // None of those revoked the real refresh token; an expired one is refused.
    assert_eq!(sim.counters().token_refreshes, 0);
    sim.expire_refresh_tokens();
    assert_webex_error(&grant(&sim, &rt).await, 400);
}
