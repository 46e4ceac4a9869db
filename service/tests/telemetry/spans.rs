//! The span tree of each cart route, its attributes, status and parentage.

use std::time::Duration;

use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::SpanData;

use cart_test_support::app::{spawn_app, spawn_app_unready};
use cart_test_support::poll::{eventually, never};
use cart_test_support::redis::{RedisServer, unique_user};

use crate::support::{captured, get_cart_with_traceparent, spans_of, trace_id_of};

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// Waits for the three spans of one request and checks the SERVER → INTERNAL → CLIENT tree.
async fn assert_tree(
    trace_id: &str,
    server: &str,
    internal: &str,
    commands: &[&str],
    route: &str,
    status: u16,
) {
    let expected = 2 + commands.len();
    eventually(
        Duration::from_secs(5),
        "the request's spans are exported",
        || async { spans_of(trace_id).len() >= expected },
    )
    .await;
    let spans = spans_of(trace_id);
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(spans.len(), expected, "spans: {names:?}");

    let server_span = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .expect("a SERVER span");
    assert_eq!(server_span.name, server);
    assert_eq!(attribute(server_span, "http.route").as_deref(), Some(route));
    assert_eq!(
        attribute(server_span, "http.request.method").as_deref(),
        server.split(' ').next()
    );
    assert_eq!(
        attribute(server_span, "http.response.status_code").as_deref(),
        Some(status.to_string().as_str())
    );
    assert!(attribute(server_span, "url.path").is_some_and(|p| p.starts_with("/v1/cart/")));
    assert_eq!(
        attribute(server_span, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert!(attribute(server_span, "server.port").is_some());

    let internal_span = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Internal)
        .expect("an INTERNAL span");
    assert_eq!(internal_span.name, internal);
    assert_eq!(
        internal_span.parent_span_id,
        server_span.span_context.span_id()
    );

    let mut client_names = Vec::new();
    for client in spans.iter().filter(|s| s.span_kind == SpanKind::Client) {
        assert_eq!(
            client.parent_span_id,
            internal_span.span_context.span_id(),
            "{} is under the INTERNAL span",
            client.name
        );
        assert_eq!(
            attribute(client, "db.system.name").as_deref(),
            Some("redis")
        );
        assert_eq!(
            attribute(client, "db.operation.name").as_deref(),
            Some(client.name.as_ref())
        );
        assert_eq!(
            attribute(client, "server.address").as_deref(),
            Some("127.0.0.1")
        );
        assert!(attribute(client, "server.port").is_some());
        client_names.push(client.name.to_string());
    }
    assert_eq!(client_names, commands);
    for span in &spans {
        assert!(
            !span.name.contains("user-"),
            "span names never hold ids: {}",
            span.name
        );
    }
}

#[tokio::test]
async fn every_cart_route_is_a_server_internal_client_tree() {
    captured();
    let app = spawn_app().await;
    let user = unique_user();
    let cart = format!("/v1/cart/{user}");
    let item = format!("/v1/cart/{user}/items/p-1");
    let route = "/v1/cart/{user_id}";
    let item_route = "/v1/cart/{user_id}/items/{product_id}";

    let add = app.add(&user, "p-1", 2).await;
    assert_tree(
        &trace_id_of(&add),
        "POST /v1/cart/{user_id}",
        "cart.add_item",
        &["EVALSHA"],
        route,
        200,
    )
    .await;

    let keyed = app
        .client
        .post(app.url(&cart))
        .header("Idempotency-Key", "k-1")
        .json(&serde_json::json!({"product_id": "p-2", "quantity": 1}))
        .send()
        .await
        .unwrap();
    let keyed_trace = trace_id_of(&keyed);
    assert_tree(
        &keyed_trace,
        "POST /v1/cart/{user_id}",
        "cart.add_item",
        &["EVALSHA"],
        route,
        200,
    )
    .await;

    let get = app.get(&cart).await;
    assert_tree(
        &trace_id_of(&get),
        "GET /v1/cart/{user_id}",
        "cart.get_cart",
        &["HGETALL"],
        route,
        200,
    )
    .await;

    let put = app
        .client
        .put(app.url(&item))
        .json(&serde_json::json!({"quantity": 4}))
        .send()
        .await
        .unwrap();
    let put_name = "PUT /v1/cart/{user_id}/items/{product_id}";
    assert_tree(
        &trace_id_of(&put),
        put_name,
        "cart.set_item",
        &["EVALSHA"],
        item_route,
        200,
    )
    .await;

    let remove = app.client.delete(app.url(&item)).send().await.unwrap();
    let remove_name = "DELETE /v1/cart/{user_id}/items/{product_id}";
    assert_tree(
        &trace_id_of(&remove),
        remove_name,
        "cart.remove_item",
        &["EVALSHA"],
        item_route,
        204,
    )
    .await;

    let clear = app.client.delete(app.url(&cart)).send().await.unwrap();
    assert_tree(
        &trace_id_of(&clear),
        "DELETE /v1/cart/{user_id}",
        "cart.clear_cart",
        &["DEL"],
        route,
        204,
    )
    .await;
}

#[tokio::test]
async fn an_incoming_traceparent_becomes_the_parent_of_the_server_span() {
    captured();
    let app = spawn_app().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";

    let response = app
        .client
        .get(app.url(&format!("/v1/cart/{}", unique_user())))
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .header("baggage", "tenant=acme")
        .send()
        .await
        .unwrap();

    assert_eq!(
        trace_id_of(&response),
        trace_id,
        "the response continues the caller's trace"
    );
    eventually(Duration::from_secs(5), "spans exported", || async {
        spans_of(trace_id).len() >= 3
    })
    .await;
    let spans = spans_of(trace_id);
    let server = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .unwrap();
    assert_eq!(server.parent_span_id.to_string(), parent);
}

/// The response carries `traceparent`, and `tracestate` only when there is some (the
/// trace-context propagator writes one for every request, empty unless the caller sent
/// one); the caller's `baggage` is never sent back.
#[tokio::test]
async fn responses_carry_tracestate_only_when_it_has_entries_and_never_baggage() {
    captured();
    let app = spawn_app().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01";
    let cart = app.url(&format!("/v1/cart/{}", unique_user()));

    let plain = app.client.get(&cart).send().await.unwrap();
    let with_state = app
        .client
        .get(&cart)
        .header("traceparent", traceparent)
        .header("tracestate", "vendor=opaque")
        .send()
        .await
        .unwrap();
    let with_baggage = app
        .client
        .get(&cart)
        .header("traceparent", traceparent)
        .header("baggage", "tenant=acme")
        .send()
        .await
        .unwrap();

    assert!(plain.headers().contains_key("traceparent"));
    assert!(
        plain.headers().get("tracestate").is_none(),
        "{:?}",
        plain.headers()
    );
    assert!(plain.headers().get("baggage").is_none());
    assert_eq!(with_state.headers()["tracestate"], "vendor=opaque");
    assert!(
        with_baggage.headers().get("baggage").is_none(),
        "baggage echoed: {:?}",
        with_baggage.headers()
    );
    assert!(with_baggage.headers().get("tracestate").is_none());
    assert_eq!(trace_id_of(&with_state), "4bf92f3577b34da6a3ce929d0e0e4737");
}

#[tokio::test]
async fn only_server_errors_mark_the_span_as_error() {
    captured();
    let app = spawn_app().await;
    let mut redis = RedisServer::start();
    let down = spawn_app_unready(&redis.url(), |_| {}, |routes| routes).await;
    down.wait_ready().await;
    redis.kill();

    let rejected = app.add(&unique_user(), "p-1", 0).await;
    let unavailable = down.get(&format!("/v1/cart/{}", unique_user())).await;

    assert_eq!(rejected.status(), 422);
    assert_eq!(unavailable.status(), 503);
    for (response, error) in [(&rejected, false), (&unavailable, true)] {
        let trace_id = trace_id_of(response);
        eventually(Duration::from_secs(5), "server span exported", || async {
            spans_of(&trace_id)
                .iter()
                .any(|s| s.span_kind == SpanKind::Server)
        })
        .await;
        let spans = spans_of(&trace_id);
        let server = spans
            .iter()
            .find(|s| s.span_kind == SpanKind::Server)
            .unwrap();
        assert_eq!(
            matches!(server.status, Status::Error { .. }),
            error,
            "{}: {:?}",
            response.status(),
            server.status
        );
    }
}

#[tokio::test]
async fn probes_and_metrics_are_not_traced() {
    captured();
    let app = spawn_app().await;
    let before = captured().spans.get_finished_spans().unwrap().len();

    for path in ["/livez", "/readyz", "/healthz", "/metrics"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            response.headers().get("traceparent").is_none(),
            "{path} carries no trace"
        );
    }

    let probe_spans = || -> Vec<String> {
        captured().spans.get_finished_spans().unwrap()[before..]
            .iter()
            .filter(|s| {
                s.attributes.iter().any(|kv| {
                    kv.key.as_str() == "url.path"
                        && ["/livez", "/readyz", "/healthz", "/metrics"]
                            .contains(&kv.value.as_str().as_ref())
                }) || s.name == "PING"
            })
            .map(|s| s.name.to_string())
            .collect()
    };
    never(
        Duration::from_millis(200),
        "a probe span is exported",
        || async { !probe_spans().is_empty() },
    )
    .await;
    let new_spans = probe_spans();
    assert!(new_spans.is_empty(), "probe spans: {new_spans:?}");
}

#[tokio::test]
async fn a_caller_that_did_not_sample_gets_no_spans_exported() {
    captured();
    let app = spawn_app().await;
    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4736";

    let (response, header) =
        get_cart_with_traceparent(&app, &format!("00-{trace_id}-00f067aa0ba902b7-00")).await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        trace_id_of(&response),
        trace_id,
        "the trace id still propagates"
    );
    let flags = header.rsplit('-').next().unwrap();
    assert_eq!(flags, "00", "and stays unsampled");
    never(
        Duration::from_millis(200),
        "a span of the unsampled trace is exported",
        || async { !spans_of(trace_id).is_empty() },
    )
    .await;
    assert!(
        spans_of(trace_id).is_empty(),
        "parent-based sampling follows the caller"
    );
}

#[test]
fn no_spans_are_made_below_an_unsampled_request() {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _};
    use opentelemetry::trace::{TraceFlags, TraceId, TraceState};
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    captured();
    let child = || cart_service::telemetry::sampled_child(|| tracing::info_span!("cart.child"));
    let request = |flags| {
        let span = tracing::info_span!("request");
        let caller = SpanContext::new(
            TraceId::from_hex("5bf92f3577b34da6a3ce929d0e0e4737").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            flags,
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(caller));
        span
    };

    assert!(request(TraceFlags::default()).in_scope(child).is_none());
    assert!(!request(TraceFlags::SAMPLED).in_scope(child).is_none());
    assert!(child().is_none(), "outside a request");
}
