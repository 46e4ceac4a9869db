//! `/metrics`, and the middleware that records the HTTP metrics and writes the access log
//! line of every request.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Gauge, Histogram};

/// Prometheus text exposition of every metric.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4")))]
pub async fn metrics() -> impl IntoResponse {
    let handle = crate::metrics::handle();
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
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method_label = method_label(&method);
    let in_flight = crate::metrics::cached(
        &IN_FLIGHT,
        method_label,
        || metrics::gauge!("http_server_active_requests", "method" => method_label),
    );
    let in_flight = InFlight::enter(in_flight);

    let response = next.run(request).await;

    drop(in_flight);
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let handles = http_handles(method_label, route, status);
    handles.duration.record(elapsed.as_secs_f64());
    if let Some(operations) = &handles.operations {
        operations.increment(1);
    }

    // Whole microseconds: `1.924`, not the `1.9244100000000002` the raw nanoseconds print.
    #[allow(clippy::cast_precision_loss)] // a request's microseconds fit f64 exactly
    let latency_ms = elapsed.as_micros() as f64 / 1000.0;
    log_access(method.as_str(), route, status, latency_ms);
    response
}

/// One request counted in `http_server_active_requests`, until it is dropped: when the
/// response is ready, or when the client went away and hyper dropped the request's future.
struct InFlight(Gauge);

impl InFlight {
    fn enter(gauge: Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The access-log line of one request: info for 1xx-3xx, warn for 4xx, error for 5xx.
/// Every field is a plain value, so strings and numbers reach the JSON line without going
/// through `core::fmt` (a `%` field or a format-string message would).
pub fn log_access(method: &str, route: &str, status: u16, latency_ms: f64) {
    if status >= 500 {
        tracing::error!(target: "access", message = "request", method, route, status, latency_ms);
    } else if status >= 400 {
        tracing::warn!(target: "access", message = "request", method, route, status, latency_ms);
    } else {
        tracing::info!(target: "access", message = "request", method, route, status, latency_ms);
    }
}

/// The handles one (method, route, status) records into.
#[derive(Clone)]
struct HttpHandles {
    duration: Histogram,
    operations: Option<Counter>,
}

/// Handles by method and status, then route. Building the label set and asking the
/// registry for each metric of each request cost about a microsecond (perf, `add` at 64
/// connections); a handle found here costs a read lock and a few compares.
type HttpCache = RwLock<HashMap<(&'static str, u16), Vec<(Box<str>, HttpHandles)>>>;
static HTTP: LazyLock<HttpCache> = LazyLock::new(Default::default);
static IN_FLIGHT: LazyLock<RwLock<HashMap<&'static str, Gauge>>> = LazyLock::new(Default::default);

/// The method as a metric label: the standard ones by name, any other as `_OTHER` (as the
/// semantic conventions say), so a client inventing methods cannot grow the label set.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method.as_str())
        .unwrap_or("_OTHER")
}

fn http_handles(method: &'static str, route: &str, status: u16) -> HttpHandles {
    let key = (method, status);
    if let Ok(cache) = HTTP.read()
        && let Some((_, handles)) = cache
            .get(&key)
            .and_then(|routes| routes.iter().find(|(r, _)| &**r == route))
    {
        return handles.clone();
    }
    let handles = HttpHandles {
        duration: metrics::histogram!(
            "http_server_request_duration_seconds",
            "http_request_method" => method,
            "http_route" => route.to_owned(),
            "http_response_status_code" => status.to_string(),
        ),
        operations: cart_operation(method, route).map(|operation| {
            let outcome = match status {
                500.. => "error",
                400.. => "rejected",
                _ => "ok",
            };
            metrics::counter!("cart_operations_total", "operation" => operation, "outcome" => outcome)
        }),
    };
    if let Ok(mut cache) = HTTP.write() {
        let routes = cache.entry(key).or_default();
        if !routes.iter().any(|(r, _)| &**r == route) {
            routes.push((route.into(), handles.clone()));
        }
    }
    handles
}

/// The cart operation a route and method carry out, as named in `cart_operations_total`
/// and in the `cart.<operation>` spans.
fn cart_operation(method: &str, route: &str) -> Option<&'static str> {
    match (route, method) {
        ("/v1/cart/{user_id}", "POST") => Some("add_item"),
        ("/v1/cart/{user_id}", "GET") => Some("get_cart"),
        ("/v1/cart/{user_id}", "DELETE") => Some("clear_cart"),
        ("/v1/cart/{user_id}/items/{product_id}", "PUT") => Some("set_item"),
        ("/v1/cart/{user_id}/items/{product_id}", "DELETE") => Some("remove_item"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        assert_eq!(
            method_label(&Method::from_bytes(b"BREW").unwrap()),
            "_OTHER"
        );
    }
}
