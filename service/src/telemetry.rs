//! Logging: one JSON object a line on stdout (or pretty lines for humans), filtered by
//! `RUST_LOG`, and the same JSON lines in `LOG_FILE` when it is set, for a log-shipper
//! sidecar. Traces come with the observability work.
//!
//! The file is written by tracing-appender's non-blocking writer, rotated daily: a slow or
//! full disk drops lines instead of stalling requests. A file that cannot be opened at all
//! degrades to stdout only, with one warning.

use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::time::UtcTime;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Config, LogFormat};

/// Rotated log files kept beside the current one.
pub const MAX_LOG_FILES: usize = 7;

/// Keeps telemetry alive; dropping it flushes the log file.
#[derive(Debug)]
#[must_use = "dropping the guard stops writing the log file"]
pub struct TelemetryGuard {
    _file: Option<WorkerGuard>,
}

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(config: &Config) -> Result<TelemetryGuard, String> {
    let filter =
        EnvFilter::try_new(&config.rust_log).map_err(|e| format!("invalid RUST_LOG: {e}"))?;
    let stdout = match config.log_format {
        LogFormat::Json => json_layer(std::io::stdout).boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .pretty()
            .with_timer(UtcTime::rfc_3339())
            .boxed(),
    };
    let (file, file_error) = match config.log_file.as_deref().map(open_log_file) {
        Some(Ok(appender)) => (Some(appender), None),
        Some(Err(error)) => (None, Some(error)),
        None => (None, None),
    };
    let (file_layer, guard) = match file {
        Some(appender) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            (Some(json_layer(writer)), Some(guard))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stdout)
        .with(file_layer)
        .try_init()
        .map_err(|e| format!("could not install the log subscriber: {e}"))?;
    if let Some(error) = file_error {
        tracing::warn!(error = %error, "LOG_FILE cannot be written; logging to stdout only");
    }
    Ok(TelemetryGuard { _file: guard })
}

fn json_layer<S, W>(writer: W) -> impl Layer<S> + Send + Sync
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_timer(UtcTime::rfc_3339())
        .with_writer(writer)
}

fn open_log_file(path: &Path) -> Result<RollingFileAppender, String> {
    let directory = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{} is not a file name", path.display()))?;
    std::fs::create_dir_all(directory)
        .map_err(|e| format!("cannot create {}: {e}", directory.display()))?;
    RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(name)
        .max_log_files(MAX_LOG_FILES)
        .build(directory)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}
