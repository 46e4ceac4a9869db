//! The request's trace, decided at the edge.
//!
//! [`TraceLayer`] extracts the W3C context (`traceparent`, `tracestate`, `baggage`) with the
//! global propagator and starts the SERVER span with the SDK's tracer, whose sampler
//! decides once for the whole request. A sampled request's span gets the semantic-convention
//! attributes DESIGN.md lists (with `tracing-opentelemetry-instrumentation-sdk`'s helpers)
//! and becomes the parent of the request's other spans ([`super::span`]). An unsampled
//! request keeps only the span's ids: they go into the `traceparent` response header and
//! into every log line written while the request runs.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use axum::extract::MatchedPath;
use axum::http::uri::Authority;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::propagation::Injector;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceState,
    Tracer as _,
};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator, SdkTracer};
use tower::{Layer, Service};
use tracing_opentelemetry_instrumentation_sdk::http as otel_http;

use super::span::{self, Current, Entered, Within};

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
                inner: span::within(None, self.inner.call(request)),
                trace: Traced::Not,
            };
        }
        let parent = extract(request.headers());
        let trace = start(span::tracer(), &parent, &request);
        let mut current = trace.current();
        let inner = {
            let _entered = Entered::swap(&mut current);
            self.inner.call(request)
        };
        TraceFuture {
            inner: span::within(current, inner),
            trace,
        }
    }
}

/// The request's SERVER span, started with the SDK's sampler deciding; only a sampled one
/// is kept, named `METHOD route` and given its attributes (status code and error status
/// come with the response).
fn start<B>(tracer: Option<&SdkTracer>, parent: &Context, request: &Request<B>) -> Traced {
    let Some(tracer) = tracer else {
        // No tracer installed: nothing is recorded, but the request gets ids of its own.
        return unsampled(parent);
    };
    let mut server = tracer
        .span_builder("HTTP request")
        .with_kind(SpanKind::Server)
        .start_with_context(tracer, parent);
    if !server.span_context().is_valid() {
        // The provider is shut down (the process is draining): ids of its own, as above.
        return unsampled(parent);
    }
    if !server.span_context().is_sampled() {
        return Traced::Unsampled(server.span_context().clone());
    }
    let method = request.method().as_str();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("", MatchedPath::as_str);
    server.update_name(if route.is_empty() {
        method.to_owned()
    } else {
        format!("{method} {route}")
    });
    if let Some(authority) = host(request) {
        server.set_attribute(KeyValue::new("server.address", authority.host().to_owned()));
        if let Some(port) = authority.port_u16() {
            server.set_attribute(KeyValue::new("server.port", i64::from(port)));
        }
    }
    server.set_attributes([
        KeyValue::new("http.request.method", method.to_owned()),
        KeyValue::new("http.route", route.to_owned()),
        KeyValue::new("url.path", request.uri().path().to_owned()),
        KeyValue::new(
            "url.scheme",
            request.uri().scheme_str().unwrap_or("http").to_owned(),
        ),
        KeyValue::new(
            "network.protocol.version",
            otel_http::http_flavor(request.version()),
        ),
    ]);
    Traced::Sampled(parent.with_span(server))
}

/// The server the request was sent to: the URI's authority (HTTP/2) or the `Host` header.
fn host<B>(request: &Request<B>) -> Option<Authority> {
    if let Some(authority) = request.uri().authority() {
        return Some(authority.clone());
    }
    request
        .headers()
        .get(axum::http::header::HOST)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The parent context, when the request carries one (the propagator is skipped otherwise).
fn extract(headers: &HeaderMap) -> Context {
    if headers.contains_key("traceparent") || headers.contains_key("baggage") {
        otel_http::extract_context(headers)
    } else {
        Context::new()
    }
}

/// An unsampled request without a tracer: the parent's trace (or a new one), the parent's
/// trace state, a span id of its own.
fn unsampled(parent: &Context) -> Traced {
    let parent_span = parent.span();
    let parent_context = parent_span.span_context();
    let ids = RandomIdGenerator::default();
    let (trace_id, trace_state) = if parent_context.is_valid() {
        (
            parent_context.trace_id(),
            parent_context.trace_state().clone(),
        )
    } else {
        (ids.new_trace_id(), TraceState::default())
    };
    Traced::Unsampled(SpanContext::new(
        trace_id,
        ids.new_span_id(),
        TraceFlags::NOT_SAMPLED,
        false,
        trace_state,
    ))
}

enum Traced {
    /// A path that is not traced (probes, metrics).
    Not,
    /// The context holding the request's SERVER span.
    Sampled(Context),
    Unsampled(SpanContext),
}

impl Traced {
    /// What the request's future runs in.
    fn current(&self) -> Option<Current> {
        match self {
            Self::Not => None,
            Self::Sampled(context) => Some(Current::Sampled(context.clone())),
            Self::Unsampled(span_context) => Some(Current::Unsampled(
                span_context.trace_id(),
                span_context.span_id(),
            )),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Trace`]: the inner future polled within the request
    /// ([`span::within`]), then the response recorded on the server span.
    pub struct TraceFuture<F> {
        #[pin]
        inner: Within<F>,
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
        let mut result = ready!(this.inner.poll(cx));
        match &*this.trace {
            Traced::Not => {}
            Traced::Sampled(context) => {
                let server = context.span();
                match &mut result {
                    Ok(response) => {
                        let status = response.status();
                        server.set_attribute(KeyValue::new(
                            "http.response.status_code",
                            i64::from(status.as_u16()),
                        ));
                        if status.is_server_error() {
                            server.set_status(Status::error(""));
                        }
                        inject(server.span_context(), Some(context), response.headers_mut());
                    }
                    Err(error) => server.set_status(Status::error(error.to_string())),
                }
                server.end();
            }
            Traced::Unsampled(span_context) => {
                if let Ok(response) = &mut result {
                    inject(span_context, None, response.headers_mut());
                }
            }
        }
        Poll::Ready(result)
    }
}

/// Writes `traceparent` for `span_context` into a response's headers, and the global
/// propagator's other headers (`tracestate`, `baggage`) when there are any: from
/// `context`, the request's, when it has one.
fn inject(span_context: &SpanContext, context: Option<&Context>, headers: &mut HeaderMap) {
    if !span_context.is_valid() {
        return;
    }
    // The trace-context propagator formats the same 55 bytes through `format!` and
    // `{:032x}`: a twentieth of a request's instructions (callgrind).
    headers.insert(
        HeaderName::from_static("traceparent"),
        traceparent(span_context),
    );
    let baggage = context.is_some_and(|context| !context.baggage().is_empty());
    if span_context.trace_state().header().is_empty() && !baggage {
        return;
    }
    let remote;
    let context = if let Some(context) = context {
        context
    } else {
        remote = Context::new().with_remote_span_context(span_context.clone());
        &remote
    };
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(context, &mut ResponseHeaders(headers));
    });
}

/// The W3C `traceparent` of a span: `00-<trace id>-<span id>-<flags>`, lowercase hex.
fn traceparent(span_context: &SpanContext) -> HeaderValue {
    let mut value = [0u8; 55];
    value[..3].copy_from_slice(b"00-");
    super::format::hex(&mut value[3..35], &span_context.trace_id().to_bytes());
    value[35] = b'-';
    super::format::hex(&mut value[36..52], &span_context.span_id().to_bytes());
    value[52] = b'-';
    let flags = span_context.trace_flags() & TraceFlags::SAMPLED;
    super::format::hex(&mut value[53..55], &[flags.to_u8()]);
    HeaderValue::from_bytes(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The propagator's headers under static names, without the empty ones: the trace-context
/// propagator writes a `tracestate` for every request, empty unless the caller sent one.
/// (Parsing each name and sending the empty header cost a tenth of what injecting did.)
struct ResponseHeaders<'a>(&'a mut HeaderMap);

impl Injector for ResponseHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        if value.is_empty() {
            return;
        }
        let name = match key {
            "traceparent" => HeaderName::from_static("traceparent"),
            "tracestate" => HeaderName::from_static("tracestate"),
            "baggage" => HeaderName::from_static("baggage"),
            other => match HeaderName::from_bytes(other.as_bytes()) {
                Ok(name) => name,
                Err(_) => return,
            },
        };
        if let Ok(value) = HeaderValue::try_from(value) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;

    #[test]
    fn traceparent_is_what_the_trace_context_propagator_writes() {
        for flags in [TraceFlags::SAMPLED, TraceFlags::default()] {
            let span_context = SpanContext::new(
                TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128),
                SpanId::from(0x00f0_67aa_0ba9_02b7_u64),
                flags,
                true,
                TraceState::default(),
            );
            let mut expected = HashMap::new();
            TraceContextPropagator::new().inject_context(
                &Context::new().with_remote_span_context(span_context.clone()),
                &mut expected,
            );

            assert_eq!(traceparent(&span_context), expected["traceparent"]);
        }
    }

    fn ids(trace: &Traced) -> Option<SpanContext> {
        match trace {
            Traced::Unsampled(span_context) => Some(span_context.clone()),
            Traced::Sampled(context) => Some(context.span().span_context().clone()),
            Traced::Not => None,
        }
    }

    #[test]
    fn a_request_gets_valid_ids_without_a_tracer_and_after_shutdown() {
        let request = Request::get("/v1/cart/u-1").body(()).unwrap();
        let provider = SdkTracerProvider::builder().build();
        let tracer = provider.tracer("test");

        let sampled = start(Some(&tracer), &Context::new(), &request);
        assert!(matches!(sampled, Traced::Sampled(_)));
        let no_tracer = start(None, &Context::new(), &request);
        provider.shutdown().unwrap();
        let after_shutdown = start(Some(&tracer), &Context::new(), &request);

        for trace in [no_tracer, after_shutdown] {
            let span_context = ids(&trace).unwrap();
            assert!(matches!(trace, Traced::Unsampled(_)));
            assert!(span_context.is_valid(), "{span_context:?}");
        }
    }
}
