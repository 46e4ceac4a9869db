//! Telemetry: logs and traces on the ecosystem's crates, set up once by [`init`] and
//! flushed by the returned guard.
//!
//! - Traces ([`otel`], [`http`] for the SERVER span): tracing-opentelemetry spans, exported
//!   by opentelemetry-otlp through the SDK's batch processor when an endpoint is set.
//!   Without one, requests are still sampled, so logs and `traceparent` carry real ids.
//! - Logs ([`logs`]): JSON (json-subscriber) or pretty lines on stdout, the same JSON in
//!   the rotating `LOG_FILE`, through tracing-appender's non-blocking writers.
//!
//! Each has its own filter, so `RUST_LOG=warn` quiets the logs without losing traces.

pub mod http;
pub mod logs;
pub mod otel;
pub mod throttle;

use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::Config;

/// Why telemetry could not be set up; each message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A variable's value cannot be used.
    #[error("invalid {variable}: {reason}")]
    Invalid {
        variable: &'static str,
        reason: String,
    },
    /// A file a variable names (a certificate or key) cannot be read.
    #[error("cannot read {variable} {path}: {source}")]
    File {
        variable: &'static str,
        path: String,
        source: std::io::Error,
    },
    /// `LOG_FILE` cannot be opened (logging then goes on to stdout only).
    #[error("cannot open LOG_FILE {path}: {source}")]
    LogFile {
        path: std::path::PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The OTLP exporter refused its configuration.
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// Another global subscriber was installed first.
    #[error("cannot install the log subscriber: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// Keeps telemetry alive; [`TelemetryGuard::flush_spans`] exports the spans still
/// batched, and dropping the guard does that too and then flushes the log writers.
#[derive(Debug)]
#[must_use = "dropping the guard stops telemetry"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    _logs: logs::Guards,
}

impl TelemetryGuard {
    /// Exports the spans still batched, then stops the exporter; the log writers stay
    /// open until the guard drops. Blocks: call it from a blocking context.
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

/// `make`'s span inside a sampled trace, else none: the spans below a request's SERVER span
/// cost microseconds each, and an unsampled trace never shows them (nor do the probes).
pub fn sampled_child(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    let current = tracing::Span::current();
    if !current.is_none() && current.context().span().span_context().is_sampled() {
        make()
    } else {
        tracing::Span::none()
    }
}

/// Installs the global subscriber and the W3C propagator; call once, before anything logs,
/// inside the Tokio runtime (the gRPC exporter's channel is spawned on it).
pub fn init(config: &Config) -> Result<TelemetryGuard, TelemetryError> {
    otel::check_environment(|name| std::env::var(name).ok())?;
    let provider = otel::provider(config)?;
    otel::install_propagator();
    let (logs, guards, file_error) = logs::layer(config);
    tracing_subscriber::registry()
        .with(otel::layer(&provider))
        .with(logs)
        .try_init()?;
    if let Some(error) = file_error {
        tracing::warn!(error = %error, "LOG_FILE cannot be written; logging to stdout only");
    }
    Ok(TelemetryGuard {
        provider: Some(provider),
        _logs: guards,
    })
}
