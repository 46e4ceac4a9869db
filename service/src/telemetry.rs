//! Logging: one JSON object a line on stdout (or pretty lines for humans), filtered by
//! `RUST_LOG`. Traces, the log file and its rotation come with the observability work.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::time::UtcTime;

use crate::config::{Config, LogFormat};

/// Keeps telemetry alive; dropping it flushes what is buffered.
#[derive(Debug)]
#[must_use = "dropping the guard stops telemetry"]
pub struct TelemetryGuard {
    _private: (),
}

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(config: &Config) -> Result<TelemetryGuard, String> {
    let filter =
        EnvFilter::try_new(&config.rust_log).map_err(|e| format!("invalid RUST_LOG: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(UtcTime::rfc_3339())
        .with_writer(std::io::stdout);
    let result = match config.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.pretty().try_init(),
    };
    result.map_err(|e| format!("could not install the log subscriber: {e}"))?;
    Ok(TelemetryGuard { _private: () })
}
