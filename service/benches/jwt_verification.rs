//! What `AUTH_MODE=jwt` adds to each cart request: one token checked by
//! `Authenticator::authorize` (header, key lookup, signature, claims, user claim), for each
//! accepted algorithm with the key from a PEM file, and for RS256 with the key from a cached
//! JWKS. Keys are generated on the spot; `cargo bench -p cart-service --bench
//! jwt_verification` runs it.

// A bench fails loudly on a broken set-up.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::io::Write as _;
use std::time::Duration;

use cart_service::auth::Authenticator;
use cart_service::config::{Cli, Config};
use cart_test_support::jwt::{JwksServer, TestKey, claims, enable_jwt};
use clap::Parser as _;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt as _;

const USER: &str = "u-4711";

/// `authorize` never waits once the key is at hand, so each call is polled once.
fn authorize(auth: &Authenticator, token: &str) {
    auth.authorize(black_box(token), Some(USER))
        .now_or_never()
        .expect("authorize answers without waiting")
        .expect("the token passes");
}

fn config() -> Config {
    let mut config = Cli::parse_from(["cart-service"]).config;
    enable_jwt(&mut config);
    config
}

fn with_key_file(c: &mut Criterion) {
    let mut group = c.benchmark_group("jwt_verify_pem");
    for (name, key) in [
        ("rs256", TestKey::rsa("k")),
        ("es256", TestKey::ec("k")),
        ("eddsa", TestKey::ed("k")),
    ] {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(key.public_pem().as_bytes()).unwrap();
        let mut config = config();
        config.auth.public_key_file = Some(file.path().to_owned());
        let auth = Authenticator::from_config(&config.auth).unwrap().unwrap();
        let token = key.sign(&claims(USER));
        group.bench_function(name, |b| b.iter(|| authorize(&auth, &token)));
    }
    group.finish();
}

fn with_jwks(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let key = TestKey::rsa("k");
    let token = key.sign(&claims(USER));
    let (_server, auth) = runtime.block_on(async {
        let server = JwksServer::start(&[&key]).await;
        let mut config = config();
        config.auth.jwks_url = Some(server.url.parse().unwrap());
        let auth = Authenticator::from_config(&config.auth).unwrap().unwrap();
        // The first call waits for the first fetch; every later one finds the key cached.
        tokio::time::timeout(Duration::from_secs(10), auth.authorize(&token, Some(USER)))
            .await
            .expect("the JWKS is fetched")
            .expect("the token passes");
        (server, auth)
    });
    let mut group = c.benchmark_group("jwt_verify_jwks");
    group.bench_function("rs256", |b| b.iter(|| authorize(&auth, &token)));
    group.finish();
}

criterion_group!(benches, with_key_file, with_jwks);
criterion_main!(benches);
