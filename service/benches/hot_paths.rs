//! Criterion micro-benchmarks of the pure code every cart request runs, so a regression
//! there shows without Redis or a load generator: id validation, the add request's JSON
//! parsing, the line and cart responses' serialisation, the idempotency fingerprint, the
//! JSON access-log line and the OTLP encoding of a batch of spans. `cargo bench -p
//! cart-service` runs them; CI only compiles them (clippy `--all-targets`). Whole-service
//! throughput is `cargo xtask bench`.

use std::hint::black_box;

use cart_service::domain::{Id, add_fingerprint};
use cart_service::routes::cart::{AddItemRequest, CartItem, CartResponse, LineResponse};
use cart_service::routes::metrics::log_access;
use cart_service::telemetry::logs::json_layer;
use cart_service::telemetry::otlp::RequestEncoder;
use cart_service::telemetry::span::{self, Current};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use prost::Message as _;
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
        b.iter(|| black_box(&cart).to_json());
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
    let subscriber = tracing_subscriber::registry().with(json_layer(std::io::sink));
    // The access-log middleware's own line, inside a request.
    let request = Current::Unsampled(TraceId::from(0x4bf9_2f35_77b3_4da6u128), SpanId::from(7u64));
    tracing::subscriber::with_default(subscriber, || {
        span::in_request(request, || {
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

/// A full batch (512 spans, the batch processor's default) of sampled `add` requests, each
/// the tree the service makes: SERVER with its eight HTTP attributes, INTERNAL
/// `cart.add_item`, CLIENT `EVALSHA`. Ours writes the request's bytes; the SDK's exporter
/// converts the batch into opentelemetry-proto structs and has prost encode them (its
/// clone of the batch before that is left out here). 28 µs against 270 to 285 µs when
/// written.
/// The benches run on the system allocator, not the service's mimalloc, which makes the
/// allocating side look somewhat slower than it is in the service.
fn otlp(c: &mut Criterion) {
    let resource = Resource::builder_empty()
        .with_service_name("cart-service")
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("deployment.environment.name", "production"),
            KeyValue::new("k8s.pod.name", "cart-service-7d9c8b6f5-x2x7q"),
            KeyValue::new("k8s.node.name", "node-3"),
            KeyValue::new("k8s.namespace.name", "shop"),
        ])
        .build();
    let batch: Vec<SpanData> = (0..).flat_map(add_request_spans).take(512).collect();
    let mut group = c.benchmark_group("otlp");
    group.throughput(Throughput::Elements(512));
    let mut encoder = RequestEncoder::new(&resource);
    let mut out = Vec::new();
    group.bench_function("encode_512_spans", |b| {
        b.iter(|| {
            out.clear();
            encoder.encode(black_box(&batch), &mut out);
            out.len()
        });
    });
    let proto_resource = ResourceAttributesWithSchema::from(&resource);
    group.bench_function("proto_encode_512_spans", |b| {
        b.iter_batched(
            || batch.clone(),
            |batch| {
                ExportTraceServiceRequest {
                    resource_spans: group_spans_by_resource_and_scope(batch, &proto_resource),
                }
                .encode_to_vec()
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

/// The three spans of the `request`th `POST /v1/cart/{user_id}`, children first, as
/// they end.
fn add_request_spans(request: u64) -> [SpanData; 3] {
    let trace = TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_0000 + u128::from(request));
    let (server, internal, client) = (request * 3 + 1, request * 3 + 2, request * 3 + 3);
    let start = std::time::SystemTime::now();
    let span = |id: u64, parent: u64, kind: SpanKind, name: &'static str, attributes| SpanData {
        span_context: SpanContext::new(
            trace,
            SpanId::from(id),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ),
        parent_span_id: SpanId::from(parent),
        parent_span_is_remote: false,
        span_kind: kind,
        name: name.into(),
        start_time: start,
        end_time: start + std::time::Duration::from_micros(412),
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("cart-service").build(),
    };
    [
        span(
            client,
            internal,
            SpanKind::Client,
            "EVALSHA",
            vec![
                KeyValue::new("db.system.name", "redis"),
                KeyValue::new("db.operation.name", "EVALSHA"),
                KeyValue::new("server.address", "redis-master.shop.svc".to_owned()),
                KeyValue::new("server.port", 6379),
            ],
        ),
        span(
            internal,
            server,
            SpanKind::Internal,
            "cart.add_item",
            Vec::new(),
        ),
        span(
            server,
            0,
            SpanKind::Server,
            "POST /v1/cart/{user_id}",
            vec![
                KeyValue::new("server.address", "cart-service".to_owned()),
                KeyValue::new("server.port", 8080),
                KeyValue::new("http.request.method", "POST".to_owned()),
                KeyValue::new("http.route", "/v1/cart/{user_id}".to_owned()),
                KeyValue::new("url.path", format!("/v1/cart/u-{request}")),
                KeyValue::new("url.scheme", "http".to_owned()),
                KeyValue::new("network.protocol.version", "1.1"),
                KeyValue::new("http.response.status_code", 200),
            ],
        ),
    ]
}

criterion_group!(benches, ids, json, fingerprint, access_log, otlp);
criterion_main!(benches);
