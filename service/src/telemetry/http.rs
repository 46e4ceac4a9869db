//! The request's trace, decided at the edge.
//!
//! [`TraceLayer`] extracts the W3C context (`traceparent`, `tracestate`, `baggage`) with the
//! global propagator, asks the configured sampler once, and only for a sampled request
//! builds the SERVER span (with `tracing-opentelemetry-instrumentation-sdk`'s semantic
//! conventions). An unsampled request still gets a trace id and a span id of its own: they
//! go into the `traceparent` response header and into every log line written while the
//! request runs, but no `tracing` span is created for it. A server span for each unsampled
//! request cost a fifth of the service's CPU under load (perf, `add` at 64 connections).
//!
//! The SDK's own sampler ([`super::otel::provider_builder`]) records every SERVER span,
//! since only sampled requests make one; it applies the configured sampler to the rest.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context as TaskContext, Poll, ready};

use axum::extract::MatchedPath;
use axum::http::{HeaderMap, Request, Response};
use opentelemetry::Context;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::trace::{
    IdGenerator as _, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample as _,
};
use tower::{Layer, Service};
use tracing_opentelemetry_instrumentation_sdk::http as otel_http;

/// The sampler every request is decided by; set once with the tracer provider. Until
/// then, every request is sampled (as the SDK's default, parent-based always-on, would).
static HEAD_SAMPLER: OnceLock<Sampler> = OnceLock::new();

/// Makes `sampler` the one requests are decided by. The first call wins, as with the
/// global subscriber.
pub fn set_head_sampler(sampler: Sampler) {
    let _ = HEAD_SAMPLER.set(sampler);
}

thread_local! {
    /// The ids of the unsampled request being polled on this thread, if any.
    static CURRENT: Cell<Option<(TraceId, SpanId)>> = const { Cell::new(None) };
}

/// The trace and span id of the unsampled request running on this thread (a sampled one's
/// are in its span).
#[must_use]
pub fn unsampled_ids() -> Option<(TraceId, SpanId)> {
    CURRENT.with(Cell::get)
}

/// Traces the requests whose path `filter` accepts; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct TraceLayer {
    filter: fn(&str) -> bool,
}

impl TraceLayer {
    #[must_use]
    pub fn new(filter: fn(&str) -> bool) -> Self {
        Self { filter }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace {
            inner,
            filter: self.filter,
        }
    }
}

/// The service [`TraceLayer`] makes.
#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
    filter: fn(&str) -> bool,
}

impl<S, B, ResBody> Service<Request<B>> for Trace<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Error: std::error::Error + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TraceFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if !(self.filter)(request.uri().path()) {
            return TraceFuture {
                inner: self.inner.call(request),
                trace: Traced::Not,
            };
        }
        let parent = extract(request.headers());
        let trace_id = trace_id_of(&parent);
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("", MatchedPath::as_str);
        let trace = if sampled(&parent, trace_id, request.method().as_str(), route) {
            let span = server_span(&request, route);
            if span.is_disabled() {
                // No OpenTelemetry layer installed: nothing is recorded, but the request
                // still gets ids of its own.
                unsampled(&parent, trace_id)
            } else {
                let _ = tracing_opentelemetry::OpenTelemetrySpanExt::set_parent(&span, parent);
                Traced::Sampled(span)
            }
        } else {
            unsampled(&parent, trace_id)
        };
        let inner = {
            let _entered = trace.enter();
            self.inner.call(request)
        };
        TraceFuture { inner, trace }
    }
}

/// The SERVER span of a sampled request, with the semantic-convention attributes DESIGN.md
/// lists (status code and error status are recorded with the response). It is a TRACE span
/// under `otel::tracing`, as the instrumentation SDK's are, so `RUST_LOG` cannot drop it.
fn server_span<B>(request: &Request<B>, route: &str) -> tracing::Span {
    let method = request.method().as_str();
    let name = if route.is_empty() {
        method.to_owned()
    } else {
        format!("{method} {route}")
    };
    tracing::trace_span!(
        target: "otel::tracing",
        "HTTP request",
        otel.name = name.as_str(),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        http.route = route,
        http.response.status_code = tracing::field::Empty,
        url.path = request.uri().path(),
        url.scheme = request.uri().scheme_str().unwrap_or("http"),
        network.protocol.version = %otel_http::http_flavor(request.version()),
    )
}

/// The parent context, when the request carries one (the propagator is skipped otherwise).
fn extract(headers: &HeaderMap) -> Context {
    if headers.contains_key("traceparent") || headers.contains_key("baggage") {
        otel_http::extract_context(headers)
    } else {
        Context::new()
    }
}

/// The parent's trace id, or a new one for a request that starts a trace.
fn trace_id_of(parent: &Context) -> TraceId {
    let parent_span = parent.span();
    let parent_context = parent_span.span_context();
    if parent_context.is_valid() {
        parent_context.trace_id()
    } else {
        RandomIdGenerator::default().new_trace_id()
    }
}

/// Whether the configured sampler records this request's trace.
fn sampled(parent: &Context, trace_id: TraceId, method: &str, route: &str) -> bool {
    let Some(sampler) = HEAD_SAMPLER.get() else {
        return true;
    };
    let name = if route.is_empty() { method } else { route };
    let result = sampler.should_sample(Some(parent), trace_id, name, &SpanKind::Server, &[], &[]);
    result.decision == SamplingDecision::RecordAndSample
}

/// An unsampled request: its trace (the parent's or the one it starts), the parent's
/// trace state, a span id of its own.
fn unsampled(parent: &Context, trace_id: TraceId) -> Traced {
    let parent_span = parent.span();
    let parent_context = parent_span.span_context();
    let trace_state = if parent_context.is_valid() {
        parent_context.trace_state().clone()
    } else {
        TraceState::default()
    };
    Traced::Unsampled(SpanContext::new(
        trace_id,
        RandomIdGenerator::default().new_span_id(),
        TraceFlags::NOT_SAMPLED,
        false,
        trace_state,
    ))
}

enum Traced {
    /// A path that is not traced (probes, metrics).
    Not,
    Sampled(tracing::Span),
    Unsampled(SpanContext),
}

impl Traced {
    fn enter(&self) -> Entered<'_> {
        match self {
            Self::Not => Entered::Nothing,
            Self::Sampled(span) => Entered::Span(span.enter()),
            Self::Unsampled(context) => {
                let previous = CURRENT
                    .with(|current| current.replace(Some((context.trace_id(), context.span_id()))));
                Entered::Ids(previous)
            }
        }
    }
}

/// Undoes [`Traced::enter`] when dropped, also when the inner future panics.
enum Entered<'a> {
    Nothing,
    /// Held for its own drop, which exits the span.
    Span(#[allow(dead_code)] tracing::span::Entered<'a>),
    Ids(Option<(TraceId, SpanId)>),
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        if let Self::Ids(previous) = self {
            CURRENT.with(|current| current.set(*previous));
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Trace`].
    pub struct TraceFuture<F> {
        #[pin]
        inner: F,
        trace: Traced,
    }
}

impl<F, ResBody, E> Future for TraceFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    E: std::error::Error + 'static,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let entered = this.trace.enter();
        let mut result = ready!(this.inner.poll(cx));
        drop(entered);
        match &*this.trace {
            Traced::Not => {}
            Traced::Sampled(span) => {
                otel_http::http_server::update_span_from_response_or_error(span, &result);
                if let Ok(response) = &mut result {
                    let context = tracing_opentelemetry::OpenTelemetrySpanExt::context(span);
                    otel_http::inject_context(&context, response.headers_mut());
                }
            }
            Traced::Unsampled(span_context) => {
                if let Ok(response) = &mut result {
                    let context = Context::new().with_remote_span_context(span_context.clone());
                    otel_http::inject_context(&context, response.headers_mut());
                }
            }
        }
        Poll::Ready(result)
    }
}
