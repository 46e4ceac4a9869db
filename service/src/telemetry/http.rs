//! The request's trace at the edge: axum-tracing-opentelemetry's `OtelAxumLayer` extracts
//! the W3C context (`traceparent`, `tracestate`, `baggage`) and opens the SERVER span with
//! the semantic-convention attributes, named `METHOD route`, its status set from the
//! response; [`inject_trace_headers`] writes the response's `traceparent`.
//!
//! The response side is our own because axum-tracing-opentelemetry's `OtelInResponseLayer`
//! writes an empty `tracestate` on every response (the trace-context propagator's habit)
//! and, through the global propagator, echoes the caller's `baggage` back to it.

use std::collections::HashMap;

use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use axum_tracing_opentelemetry::middleware::OtelAxumLayer;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The SERVER span of every request whose path `traced` accepts.
#[must_use]
pub fn server_span_layer(traced: fn(&str) -> bool) -> OtelAxumLayer {
    OtelAxumLayer::default().filter(traced)
}

/// Writes the request's `traceparent` into the response, and `tracestate` when the
/// request has entries in it. Never `baggage`: it is the caller's own data, and reflecting
/// it would hand back whatever a client (or a proxy in front of it) put there. Runs inside
/// the SERVER span; an untraced request (probes, metrics) gets none.
pub async fn inject_trace_headers(mut response: Response) -> Response {
    let span = tracing::Span::current();
    if span.is_none() {
        return response;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return response;
    }
    let mut fields = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut fields);
    for (name, value) in fields {
        if value.is_empty() {
            continue;
        }
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
