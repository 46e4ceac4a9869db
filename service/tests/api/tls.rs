//! Redis over TLS: a real `redis-server` that takes TLS connections only, with certificates
//! from private CAs made in the test. The service trusts such a CA only through
//! `REDIS_CA_FILE` (it is in no system store), checks that the certificate names the host it
//! connects to, and presents a client certificate when the server requires one; a server it
//! cannot trust, or that refuses it, means `/readyz` and the cart routes answer 503. Files
//! it cannot use stop startup with a message naming their variable.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cart_service::config::{Config, PemFile};
use cart_test_support::app::{TestApp, assert_problem, spawn_app_unready, spawn_app_with};
use cart_test_support::poll::never;
use cart_test_support::redis::{RedisServer, RedisTls, unique_user};
use cart_test_support::tls::{Issued, Pki};
use serde_json::json;

use crate::cli::{cart_service, run, stderr};

#[tokio::test]
async fn a_cart_round_trips_over_tls_verified_against_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "private");
    let redis = tls_redis(&pki, &["127.0.0.1"], false);
    let app = spawn_app_with(&redis.url(), trusting(&pki.ca, None)).await;
    let user = unique_user();

    let added = app.add(&user, "p-1", 2).await;
    let cart = app.cart(&user).await;

    assert_eq!(added.status(), 200);
    assert!(redis.url().starts_with("rediss://"), "{}", redis.url());
    assert_eq!(cart["items"], json!([{"product_id": "p-1", "quantity": 2}]));
}

#[tokio::test]
async fn a_server_that_requires_client_certificates_serves_one_with_a_certificate_only() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "private");
    let redis = tls_redis(&pki, &["127.0.0.1"], true);
    let client = pki.issue("client", &["cart-service"]);
    let with = spawn_app_with(&redis.url(), trusting(&pki.ca, Some(&client))).await;
    let without = spawn_app_unready(&redis.url(), trusting(&pki.ca, None), |r| r).await;
    let user = unique_user();

    let added = with.add(&user, "p-1", 1).await;

    assert_eq!(added.status(), 200);
    assert_never_ready(&without, "without a client certificate").await;
    assert_unavailable(&without, &user).await;
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "private");
    let other = Pki::generate(dir.path(), "other");
    let redis = tls_redis(&pki, &["127.0.0.1"], false);
    let trusting_its_ca = spawn_app_with(&redis.url(), trusting(&pki.ca, None)).await;
    let trusting_another = spawn_app_unready(&redis.url(), trusting(&other.ca, None), |r| r).await;
    let public_roots_only = spawn_app_unready(&redis.url(), |_| {}, |r| r).await;
    let user = unique_user();

    let added = trusting_its_ca.add(&user, "p-1", 1).await;

    assert_eq!(added.status(), 200);
    assert_never_ready(&trusting_another, "trusting another CA").await;
    assert_never_ready(&public_roots_only, "trusting the public roots").await;
    assert_unavailable(&trusting_another, &user).await;
    assert_unavailable(&public_roots_only, &user).await;
}

#[tokio::test]
async fn a_server_certificate_for_another_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "private");
    let redis = tls_redis(&pki, &["localhost"], false);
    let by_its_name = redis.url().replace("127.0.0.1", "localhost");
    let named = spawn_app_with(&by_its_name, trusting(&pki.ca, None)).await;
    let by_address = spawn_app_unready(&redis.url(), trusting(&pki.ca, None), |r| r).await;
    let user = unique_user();

    let added = named.add(&user, "p-1", 1).await;

    assert_eq!(added.status(), 200);
    assert_never_ready(&by_address, "at an address its certificate does not name").await;
    assert_unavailable(&by_address, &user).await;
}

#[tokio::test]
async fn tls_files_that_cannot_be_used_stop_startup_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path(), "private");
    let client = pki.issue("client", &["cart-service"]);
    let stranger = pki.issue("stranger", &["someone-else"]);
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not PEM at all\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let tls_url = RedisServer::unused_url().replace("redis://", "rediss://");
    let plain_url = RedisServer::unused_url();
    let cases: [Case; 7] = [
        (&tls_url, &[("REDIS_CA_FILE", &missing)], "REDIS_CA_FILE"),
        (&tls_url, &[("REDIS_CA_FILE", &garbage)], "REDIS_CA_FILE"),
        (
            &tls_url,
            &[("REDIS_CLIENT_CERT_FILE", &client.cert)],
            "REDIS_CLIENT_KEY_FILE",
        ),
        (
            &tls_url,
            &[("REDIS_CLIENT_KEY_FILE", &client.key)],
            "REDIS_CLIENT_CERT_FILE",
        ),
        (
            &tls_url,
            &[
                ("REDIS_CLIENT_CERT_FILE", &client.cert),
                ("REDIS_CLIENT_KEY_FILE", &client.cert),
            ],
            "REDIS_CLIENT_KEY_FILE",
        ),
        (
            &tls_url,
            &[
                ("REDIS_CLIENT_CERT_FILE", &client.cert),
                ("REDIS_CLIENT_KEY_FILE", &stranger.key),
            ],
            "REDIS_CLIENT_KEY_FILE",
        ),
        (&plain_url, &[("REDIS_CA_FILE", &pki.ca)], "REDIS_CA_FILE"),
    ];
    for (url, files, variable) in cases {
        let mut command = cart_service();
        command
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("REDIS_URL", url);
        for (name, path) in files {
            command.env(name, path);
        }

        let output = run(&mut command).await;

        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{files:?}: {message}");
        assert!(
            message.contains(variable),
            "{files:?}: stderr does not name {variable}: {message}"
        );
    }
}

/// A startup that must fail: its `REDIS_URL`, the file variables set, and the variable the
/// message must name.
type Case<'a> = (&'a str, &'a [(&'a str, &'a Path)], &'a str);

/// A Redis that takes TLS connections only, with a certificate from `pki` for `names`.
fn tls_redis(pki: &Pki, names: &[&str], auth_clients: bool) -> RedisServer {
    let server = pki.issue("redis", names);
    RedisServer::start_tls(&RedisTls {
        cert: server.cert,
        key: server.key,
        ca: pki.ca.clone(),
        auth_clients,
    })
}

/// A configuration change: trust `ca` (`REDIS_CA_FILE`), and present `client` if given.
fn trusting(ca: &Path, client: Option<&Issued>) -> impl FnOnce(&mut Config) + use<> {
    let ca: PathBuf = ca.to_owned();
    let client = client.cloned();
    move |config| {
        config.redis.ca_file = Some(PemFile::certificates(&ca).unwrap());
        if let Some(client) = client {
            config.redis.client_cert_file = Some(PemFile::certificates(&client.cert).unwrap());
            config.redis.client_key_file = Some(PemFile::private_key(&client.key).unwrap());
        }
    }
}

/// Watches `/readyz` for long enough to see several connection attempts fail.
async fn assert_never_ready(app: &TestApp, which: &str) {
    never(
        Duration::from_millis(500),
        &format!("the service {which} becomes ready"),
        || async { app.get("/readyz").await.status() == 200 },
    )
    .await;
}

/// `/readyz` and `user`'s cart answer 503 problems.
async fn assert_unavailable(app: &TestApp, user: &str) {
    assert_problem(app.get("/readyz").await, 503).await;
    assert_problem(app.get(&format!("/v1/cart/{user}")).await, 503).await;
}
