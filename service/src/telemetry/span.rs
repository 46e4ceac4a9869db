//! The spans of a request, made with the OpenTelemetry SDK directly.
//!
//! A request's spans were `tracing` spans turned into OpenTelemetry spans by
//! tracing-opentelemetry: every span passed through the subscriber's registry and each of
//! its layers, on creation and on every poll, and cost the request's worker 7 us for the
//! three spans of a sampled `add` (perf, 64 connections). Here the SDK's tracer makes
//! them, and the span a request is in is carried in a thread local, set while its future
//! is polled ([`Within`]): children find their parent there, log lines their ids.
//!
//! An unsampled request has no spans, only the ids it logs and answers with.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context as TaskContext, Poll};

use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt as _, TraceId, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

/// The tracer every span is made by; set once with the tracer provider.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Makes `provider` the one spans go to. The first call wins, as with the global
/// subscriber.
pub fn install(provider: &SdkTracerProvider) {
    use opentelemetry::trace::TracerProvider as _;
    let _ = TRACER.set(provider.tracer("cart-service"));
}

/// The tracer, once [`install`]ed.
pub(super) fn tracer() -> Option<&'static SdkTracer> {
    TRACER.get()
}

/// What the request polled on this thread is in.
#[derive(Debug, Clone)]
pub enum Current {
    /// A sampled request: the context of its innermost open span.
    Sampled(Context),
    /// An unsampled request's trace id and its own span id.
    Unsampled(TraceId, SpanId),
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// The trace and span id of the request running on this thread: a sampled request's
/// innermost span, or an unsampled request's own ids.
#[must_use]
pub fn current_ids() -> Option<(TraceId, SpanId)> {
    CURRENT.with_borrow(|current| match current {
        Some(Current::Sampled(context)) => {
            let span = context.span();
            let span_context = span.span_context();
            Some((span_context.trace_id(), span_context.span_id()))
        }
        Some(Current::Unsampled(trace_id, span_id)) => Some((*trace_id, *span_id)),
        None => None,
    })
}

/// Runs `f` with `current` as this thread's request (for code that is not a future).
pub fn in_request<R>(current: Current, f: impl FnOnce() -> R) -> R {
    let mut current = Some(current);
    let _entered = Entered::swap(&mut current);
    f()
}

/// A child of the current span, when the request running on this thread is sampled:
/// `kind`, named `name`, with the `attributes` (asked for only then). The span ends when
/// the last clone of the returned context is dropped.
pub fn child(
    name: &'static str,
    kind: SpanKind,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) -> Option<Context> {
    CURRENT.with_borrow(|current| {
        let Some(Current::Sampled(parent)) = current else {
            return None;
        };
        let tracer = TRACER.get()?;
        let span = tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes())
            .start_with_context(tracer, parent);
        Some(parent.with_span(span))
    })
}

/// `future`, polled with `current` as this thread's request (nothing changes when it is
/// `None`).
pub fn within<F: Future>(current: Option<Current>, future: F) -> Within<F> {
    Within {
        inner: future,
        current,
    }
}

/// Futures that run in an INTERNAL span of their own.
pub trait InSpan: Future + Sized {
    /// Runs `self` in an INTERNAL span named `name` under the current span, when the
    /// request is sampled; the span ends with the future.
    fn in_span(self, name: &'static str) -> Within<Self> {
        let span = child(name, SpanKind::Internal, Vec::new);
        within(span.map(Current::Sampled), self)
    }
}

impl<F: Future> InSpan for F {}

pin_project_lite::pin_project! {
    /// The future of [`within`]: each poll runs with its request current on the thread.
    /// What it holds is dropped (ending its span, unless cloned) when it completes.
    pub struct Within<F> {
        #[pin]
        inner: F,
        current: Option<Current>,
    }
}

impl<F: Future> Future for Within<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = self.project();
        if this.current.is_none() {
            return this.inner.poll(cx);
        }
        let result = {
            let _entered = Entered::swap(this.current);
            this.inner.poll(cx)
        };
        if result.is_ready() {
            *this.current = None;
        }
        result
    }
}

/// Puts a request's [`Current`] on the thread and, when dropped (also in a panic), puts
/// back what was there.
pub(super) struct Entered<'a> {
    slot: &'a mut Option<Current>,
}

impl<'a> Entered<'a> {
    pub(super) fn swap(slot: &'a mut Option<Current>) -> Self {
        CURRENT.with_borrow_mut(|current| std::mem::swap(current, slot));
        Self { slot }
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        CURRENT.with_borrow_mut(|current| std::mem::swap(current, self.slot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_request_is_set_while_polled_and_restored_after() {
        let ids = (TraceId::from(1u128), SpanId::from(2u64));
        let mut outer = Some(Current::Unsampled(ids.0, ids.1));
        assert_eq!(current_ids(), None);
        {
            let _entered = Entered::swap(&mut outer);
            assert_eq!(current_ids(), Some(ids));
            let mut inner = Some(Current::Unsampled(TraceId::from(3u128), SpanId::from(4u64)));
            {
                let _entered = Entered::swap(&mut inner);
                assert_eq!(current_ids().unwrap().0, TraceId::from(3u128));
            }
            assert_eq!(current_ids(), Some(ids), "the outer request is back");
            assert!(inner.is_some(), "the inner one is back in its future");
        }
        assert_eq!(current_ids(), None);
        assert!(outer.is_some());
    }

    #[test]
    fn an_unsampled_request_has_no_child_spans() {
        let mut unsampled = Some(Current::Unsampled(TraceId::from(1u128), SpanId::from(2u64)));
        let _entered = Entered::swap(&mut unsampled);
        assert!(child("cart.add_item", SpanKind::Internal, || panic!("not asked")).is_none());
    }
}
