//! Telemetry: logs and traces, set up once by [`init`], flushed by the returned guard.
//!
//! - Logs ([`logs`]): one JSON object a line on stdout (or pretty lines), filtered by
//!   `RUST_LOG`, each line written inside a request carrying its `trace_id` and `span_id`;
//!   the same lines in `LOG_FILE` through a non-blocking, rotating writer.
//! - Traces ([`otel`], [`span`], [`span_batch`], [`otlp`]): a sampled request's spans,
//!   made with the OpenTelemetry SDK and exported over OTLP by a batch processor of our
//!   own when `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT` is set (over gRPC by an exporter of
//!   our own too). Without
//!   it nothing is exported, but requests are still sampled so logs and the `traceparent`
//!   response header carry real ids.
//!
//! The two are independent: `RUST_LOG=warn` quiets the logs without losing traces.

pub mod batch;
pub mod format;
pub mod http;
pub mod logs;
pub mod otel;
pub mod otlp;
pub mod span;
pub mod span_batch;

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::Config;

pub use otel::{resource_attributes, sampler};
pub use span::InSpan;

/// Keeps telemetry alive; [`TelemetryGuard::flush_spans`] exports the span batch, and
/// dropping the guard does that too and then flushes the log sinks.
#[derive(Debug)]
#[must_use = "dropping the guard stops telemetry"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    /// Flush the log sinks when dropped.
    _logs: logs::Guards,
}

impl TelemetryGuard {
    /// Exports the spans still batched, then stops the exporter; the log sinks stay open
    /// until the guard drops. Blocks: call it from a blocking context (`spawn_blocking`).
    pub fn flush_spans(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(error = %error, "flushing spans at shutdown failed");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.flush_spans();
    }
}

/// Installs the global subscriber and propagator. Call once, inside the Tokio runtime,
/// before anything logs.
pub fn init(config: &Config) -> Result<TelemetryGuard, String> {
    let provider = otel::provider(config)?;
    span::install(&provider);
    otel::install_propagator();
    let (logs, log_guards, file_error) = logs::layer(config)?;
    tracing_subscriber::registry()
        .with(logs)
        .try_init()
        .map_err(|e| format!("could not install the log subscriber: {e}"))?;
    if let Some(error) = file_error {
        tracing::warn!(error = %error, "LOG_FILE cannot be written; logging to stdout only");
    }
    Ok(TelemetryGuard {
        provider: Some(provider),
        _logs: log_guards,
    })
}
