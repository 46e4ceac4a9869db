//! Prometheus metrics at `/metrics`, and the middleware that records HTTP metrics and
//! writes the access log line of every request.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// OpenTelemetry semantic-convention buckets for HTTP durations, in seconds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The process-wide recorder, installed on first use. The `metrics` facade is global by
/// design, so every `Application` in a process (tests start several) shares it.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), DURATION_BUCKETS)
            .map(PrometheusBuilder::build_recorder);
        match recorder {
            Ok(recorder) => {
                let handle = recorder.handle();
                // Fails only if another recorder was installed first; then ours stays empty.
                if metrics::set_global_recorder(recorder).is_err() {
                    tracing::warn!(
                        "a metrics recorder was already installed; /metrics will be empty"
                    );
                }
                metrics::gauge!("build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
                spawn_upkeep(handle.clone());
                handle
            }
            Err(error) => {
                tracing::error!(error = %error, "invalid metrics buckets");
                PrometheusBuilder::new().build_recorder().handle()
            }
        }
    })
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The exporter keeps every histogram sample until upkeep folds it into the buckets; with
/// nobody scraping `/metrics`, memory grew by about 16 bytes a request (114 MiB after a
/// benchmark run). A thread of its own, because the recorder outlives any one runtime.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(error = %error, "cannot start metrics upkeep; histograms fold only when scraped");
    }
}

/// Prometheus text exposition of every metric.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4")))]
pub async fn metrics() -> impl IntoResponse {
    let handle = handle();
    metrics::counter!("log_lines_dropped_total").absolute(crate::telemetry::logs::dropped_lines());
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}

/// Records `http_server_request_duration_seconds` and in-flight requests by route
/// template (never the raw path), and logs one access line per request: info for 1xx-3xx,
/// warn for 4xx, error for 5xx.
pub async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let in_flight = metrics::gauge!("http_server_active_requests", "method" => method.to_string());
    in_flight.increment(1.0);

    let response = next.run(request).await;

    in_flight.decrement(1.0);
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    metrics::histogram!(
        "http_server_request_duration_seconds",
        "http_request_method" => method.to_string(),
        "http_route" => route.clone(),
        "http_response_status_code" => status.to_string(),
    )
    .record(elapsed.as_secs_f64());

    if let Some(operation) = cart_operation(&method, &route) {
        let outcome = match status {
            500.. => "error",
            400.. => "rejected",
            _ => "ok",
        };
        metrics::counter!("cart_operations_total", "operation" => operation, "outcome" => outcome)
            .increment(1);
    }

    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::error!(target: "access", %method, %route, status, latency_ms, "request");
    } else if status >= 400 {
        tracing::warn!(target: "access", %method, %route, status, latency_ms, "request");
    } else {
        tracing::info!(target: "access", %method, %route, status, latency_ms, "request");
    }
    response
}

/// The cart operation a route and method carry out, as named in `cart_operations_total`
/// and in the `cart.<operation>` spans.
fn cart_operation(method: &Method, route: &str) -> Option<&'static str> {
    match (route, method.as_str()) {
        ("/v1/cart/{user_id}", "POST") => Some("add_item"),
        ("/v1/cart/{user_id}", "GET") => Some("get_cart"),
        ("/v1/cart/{user_id}", "DELETE") => Some("clear_cart"),
        ("/v1/cart/{user_id}/items/{product_id}", "PUT") => Some("set_item"),
        ("/v1/cart/{user_id}/items/{product_id}", "DELETE") => Some("remove_item"),
        _ => None,
    }
}
