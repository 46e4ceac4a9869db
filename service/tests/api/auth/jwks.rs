//! Keys from a JWKS served by a real HTTP server in the test: rotation, the refresh
//! interval, the limit on fetches that unknown `kid`s cause, and what happens while the
//! endpoint fails.

use std::time::Duration;

use cart_test_support::app::{TestApp, assert_problem, spawn_app_with};
use cart_test_support::jwt::{JwksServer, TestKey, claims, enable_jwt};
use cart_test_support::poll::{eventually, never};
use cart_test_support::redis::{shared_redis_url, unique_user};

use super::{assert_invalid_token, get_cart};

/// The service with `AUTH_MODE=jwt` trusting `server`'s key set, refreshed every `refresh`
/// and on an unknown `kid` at most once per `min_refresh`.
async fn spawn_with_jwks(server: &JwksServer, refresh: u64, min_refresh: u64) -> TestApp {
    spawn_app_with(&shared_redis_url(), |config| {
        enable_jwt(config);
        config.auth.jwks_url = Some(server.url.parse().unwrap());
        config.auth.jwks_refresh = Duration::from_secs(refresh);
        config.auth.jwks_min_refresh = Duration::from_secs(min_refresh);
    })
    .await
}

/// The status of `GET /v1/cart/{user}` with a token for `user` signed by `key`.
async fn status_with(app: &TestApp, key: &TestKey, user: &str) -> u16 {
    get_cart(app, user, Some(&key.sign(&claims(user))))
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn after_a_rotation_the_new_key_is_accepted_at_once_and_the_removed_one_refused() {
    let (old, new) = (TestKey::rsa("2026-01"), TestKey::ec("2026-02"));
    let server = JwksServer::start(&[&old]).await;
    let app = spawn_with_jwks(&server, 3600, 0).await;
    let user = unique_user();
    assert_eq!(status_with(&app, &old, &user).await, 200);

    server.set_keys(&[&new]);

    // The unknown kid makes the service fetch the set again before it answers.
    assert_eq!(status_with(&app, &new, &user).await, 200);
    let response = get_cart(&app, &user, Some(&old.sign(&claims(&user)))).await;
    assert_invalid_token(response, "kid").await;
}

#[tokio::test]
async fn the_key_set_is_fetched_again_on_its_interval() {
    let (leaving, staying) = (TestKey::ed("leaving"), TestKey::ed("staying"));
    let server = JwksServer::start(&[&leaving, &staying]).await;
    let app = spawn_with_jwks(&server, 1, 3600).await;
    let user = unique_user();
    assert_eq!(status_with(&app, &leaving, &user).await, 200);

    server.set_keys(&[&staying]);

    eventually(
        Duration::from_secs(10),
        "the removed key is refused",
        || async { status_with(&app, &leaving, &user).await == 401 },
    )
    .await;
    assert_eq!(status_with(&app, &staying, &user).await, 200);
}

#[tokio::test]
async fn tokens_with_unknown_kids_cannot_make_the_service_hammer_the_jwks() {
    let key = TestKey::ec("known");
    let server = JwksServer::start(&[&key]).await;
    let app = spawn_with_jwks(&server, 3600, 60).await;
    let user = unique_user();
    assert_eq!(status_with(&app, &key, &user).await, 200);
    let before = server.fetches();

    for n in 0..20 {
        let stranger = TestKey::ec(&format!("made-up-{n}"));
        assert_eq!(status_with(&app, &stranger, &user).await, 401);
    }

    assert!(
        server.fetches() <= before + 1,
        "{} fetches for 20 unknown kids",
        server.fetches() - before
    );
}

#[tokio::test]
async fn while_the_jwks_endpoint_fails_the_last_good_keys_stay_in_use() {
    let key = TestKey::rsa("k1");
    let server = JwksServer::start(&[&key]).await;
    let app = spawn_with_jwks(&server, 1, 0).await;
    let user = unique_user();
    assert_eq!(status_with(&app, &key, &user).await, 200);

    server.set_failing(true);
    let failed_from = server.fetches();

    eventually(Duration::from_secs(10), "two refreshes fail", || async {
        server.fetches() >= failed_from + 2
    })
    .await;
    never(
        Duration::from_millis(1500),
        "the token is refused",
        || async { status_with(&app, &key, &user).await != 200 },
    )
    .await;
}

#[tokio::test]
async fn until_the_key_set_is_first_fetched_tokens_get_503_then_pass() {
    let key = TestKey::ec("k1");
    let server = JwksServer::start(&[&key]).await;
    server.set_failing(true);
    let app = spawn_with_jwks(&server, 3600, 0).await;
    let user = unique_user();

    let response = get_cart(&app, &user, Some(&key.sign(&claims(&user)))).await;

    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    assert_problem(response, 503).await;
    server.set_failing(false);
    assert_eq!(status_with(&app, &key, &user).await, 200);
}
