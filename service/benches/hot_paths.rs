//! Criterion micro-benchmarks of the pure code every cart request runs, so a regression
//! there shows without Redis or a load generator: id validation, the add request's JSON
//! parsing, the line and cart responses' serialisation, the idempotency fingerprint, the
//! JSON access-log line. `cargo bench -p
//! cart-service` runs them; CI only compiles them (clippy `--all-targets`). Whole-service
//! throughput is `cargo xtask bench`.

use std::hint::black_box;

use cart_service::domain::{Id, add_fingerprint};
use cart_service::routes::cart::{AddItemRequest, CartItem, CartResponse, LineResponse};
use cart_service::routes::metrics::log_access;
use cart_service::telemetry::logs::json_layer;
use cart_service::telemetry::otel;
use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;

fn ids(c: &mut Criterion) {
    let mut group = c.benchmark_group("id");
    group.bench_function("parse_short", |b| {
        b.iter(|| Id::parse("user_id", black_box("u-4711".to_owned())));
    });
    group.bench_function("parse_64_bytes", |b| {
        let long = "a".repeat(64);
        b.iter(|| Id::parse("user_id", black_box(long.clone())));
    });
    group.bench_function("reject_bad_byte", |b| {
        b.iter(|| Id::parse("user_id", black_box("u 4711".to_owned())));
    });
    group.finish();
}

fn json(c: &mut Criterion) {
    let mut group = c.benchmark_group("json");
    let body = br#"{"product_id":"p-42","quantity":2}"#;
    group.bench_function("parse_add_request", |b| {
        b.iter(|| serde_json::from_slice::<AddItemRequest>(black_box(body)));
    });
    let line = LineResponse {
        user_id: "u-4711".to_owned(),
        product_id: "p-42".to_owned(),
        quantity: 3,
    };
    group.bench_function("serialise_line", |b| {
        b.iter(|| serde_json::to_vec(black_box(&line)));
    });
    let cart = CartResponse {
        user_id: "u-4711".to_owned(),
        items: (0..20)
            .map(|i| CartItem {
                product_id: format!("p-{i:02}"),
                quantity: i + 1,
            })
            .collect(),
        total_quantity: 210,
    };
    group.bench_function("serialise_cart_20_lines", |b| {
        b.iter(|| serde_json::to_vec(black_box(&cart)));
    });
    group.finish();
}

fn fingerprint(c: &mut Criterion) {
    let product = Id::parse("product_id", "p-42".to_owned()).unwrap_or_else(|_| unreachable!());
    c.bench_function("idempotency/add_fingerprint", |b| {
        b.iter(|| add_fingerprint(black_box(&product), black_box(3)));
    });
}

fn access_log(c: &mut Criterion) {
    // The access-log middleware's own line, inside a request's span, ids included.
    let provider = SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(otel::layer(&provider))
        .with(json_layer(std::io::sink));
    tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!("request").in_scope(|| {
            c.bench_function("log/access_line_json", |b| {
                b.iter(|| {
                    log_access(
                        black_box("POST"),
                        black_box("/v1/cart/{user_id}"),
                        200,
                        black_box(0.412),
                    );
                });
            });
        });
    });
}

criterion_group!(benches, ids, json, fingerprint, access_log);
criterion_main!(benches);
