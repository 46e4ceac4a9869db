//! Log sinks, behind one filter (`RUST_LOG`): stdout in `LOG_FORMAT`, and the rotating
//! `LOG_FILE` in JSON for the log-shipper sidecar.
//!
//! JSON lines come from json-subscriber: `timestamp` (RFC 3339, UTC), `level`, `target`,
//! the event's fields (`message` among them) at the top level, and the request's
//! `trace_id` and `span_id`. Each sink writes through a tracing-appender non-blocking
//! writer with a queue and a thread of its own, so a slow pipe or disk never stalls a
//! request, nor the other sink; a full queue drops lines, counted by [`dropped_lines`].

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use json_subscriber::JsonLayer;
use opentelemetry::trace::TraceContextExt as _;
use tracing::Subscriber;
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::time::UtcTime;
use tracing_subscriber::fmt::writer::MakeWriterExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

use super::TelemetryError;
use crate::config::{Config, LogFormat, LogRotation};

/// Lines a sink queues before it drops them (about 5 MiB of access lines): the channel
/// allocates every slot up front, so the default 128 000 cost tens of MiB idle per sink.
const BUFFERED_LINES: usize = 16_384;

type BoxedLayer<S> = Box<dyn Layer<S> + Send + Sync>;

/// Flush the sinks when dropped: every queued line is written before the process exits.
pub type Guards = Vec<WorkerGuard>;

/// Lines dropped so far because a sink could not keep up (a line both stdout and the file
/// dropped counts twice).
#[must_use]
pub fn dropped_lines() -> u64 {
    counters().lock().map_or(0, |counters| {
        counters.iter().map(|c| c.dropped_lines() as u64).sum()
    })
}

/// The log layer, filtered by `RUST_LOG`: stdout in `LOG_FORMAT`, plus `LOG_FILE` in JSON
/// when it is set. A `LOG_FILE` that cannot be opened comes back as the last value, so the
/// caller can warn once logging works.
#[must_use]
pub fn layer<S>(config: &Config) -> (BoxedLayer<S>, Guards, Option<TelemetryError>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    // RUST_LOG's parser has checked the filter; "info" only guards a Config built by hand.
    let filter =
        EnvFilter::try_new(&config.logging.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let mut guards = Guards::new();
    let stdout = non_blocking(Box::new(std::io::stdout()), &mut guards);
    let file = config.logging.file.as_deref().map(|path| {
        open_log_file(
            path,
            config.logging.file_rotation,
            config.logging.file_max_files,
        )
    });
    let (file, file_error) = match file {
        None => (None, None),
        Some(Ok(file)) => (Some(non_blocking(Box::new(file), &mut guards)), None),
        Some(Err(error)) => (None, Some(error)),
    };
    let layer = match (config.logging.format, file) {
        // Each line formatted once and written to both: formatting it for each sink cost
        // `add` at 64 connections 2 µs of CPU a request (perf, default sampling).
        (LogFormat::Json, Some(file)) => json_layer(stdout.and(file)).boxed(),
        (LogFormat::Json, None) => json_layer(stdout).boxed(),
        (LogFormat::Pretty, file) => tracing_subscriber::fmt::layer()
            .pretty()
            .with_timer(UtcTime::rfc_3339())
            .with_writer(stdout)
            .and_then(file.map(json_layer))
            .boxed(),
    };
    (layer.with_filter(filter).boxed(), guards, file_error)
}

/// The JSON line layer writing to `make_writer`; `trace_id` and `span_id` are those of the
/// span the event happens in, read through tracing-opentelemetry (the request's spans
/// are TRACE level and filtered out of this layer, so its own context cannot see them).
pub fn json_layer<S, W>(make_writer: W) -> JsonLayer<S, W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    let mut layer = JsonLayer::new(make_writer);
    layer
        .with_timer("timestamp", UtcTime::rfc_3339())
        .with_level("level")
        .with_target("target")
        .with_flattened_event();
    layer.add_multiple_dynamic_fields(|_event, _context, fields| {
        let context = tracing::Span::current().context();
        let span = context.span();
        let ids = span.span_context();
        if ids.is_valid() {
            let _ = fields.write_field("trace_id", ids.trace_id().to_string());
            let _ = fields.write_field("span_id", ids.span_id().to_string());
        }
    });
    layer
}

/// Opens the rotating appender for `path`: files `<name>.<date>` in its directory,
/// rotated as `rotation` says, at most `max_files` kept.
pub fn open_log_file(
    path: &Path,
    rotation: LogRotation,
    max_files: u32,
) -> Result<RollingFileAppender, TelemetryError> {
    let error = |source: Box<dyn std::error::Error + Send + Sync>| TelemetryError::LogFile {
        path: path.to_owned(),
        source,
    };
    let directory = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| error("not a file name".into()))?;
    std::fs::create_dir_all(directory).map_err(|e| error(e.into()))?;
    let rotation = match rotation {
        LogRotation::Minutely => Rotation::MINUTELY,
        LogRotation::Hourly => Rotation::HOURLY,
        LogRotation::Daily => Rotation::DAILY,
        LogRotation::Never => Rotation::NEVER,
    };
    RollingFileAppender::builder()
        .rotation(rotation)
        .filename_prefix(name)
        .max_log_files(usize::try_from(max_files).unwrap_or(usize::MAX))
        .build(directory)
        .map_err(|e| error(e.into()))
}

/// A lossy non-blocking writer over `sink`, its guard kept in `guards` and its drop
/// counter in [`dropped_lines`]. The worker writes through a `BufWriter`, flushed each
/// time its queue is empty, and then rests ([`Paced`]).
fn non_blocking(sink: Box<dyn std::io::Write + Send>, guards: &mut Guards) -> NonBlocking {
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LINES)
        .lossy(true)
        .finish(Paced(std::io::BufWriter::with_capacity(64 * 1024, sink)));
    if let Ok(mut counters) = counters().lock() {
        counters.push(writer.error_counter());
    }
    guards.push(guard);
    writer
}

/// Rests [`PACE`] after each flush (the worker's, once its queue is empty), so lines arriving
/// meanwhile leave in one write instead of each waking the worker. A/B, `add` at 64
/// connections, default sampling, stdout and `LOG_FILE`: 43 → 28 µs of CPU a request.
struct Paced<W>(W);
/// The longest a line waits for its write; a busy sink writes about this often.
const PACE: std::time::Duration = std::time::Duration::from_millis(5);

impl<W: std::io::Write> std::io::Write for Paced<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.write(bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let flushed = self.0.flush();
        std::thread::sleep(PACE);
        flushed
    }
}

fn counters() -> &'static Mutex<Vec<ErrorCounter>> {
    static COUNTERS: OnceLock<Mutex<Vec<ErrorCounter>>> = OnceLock::new();
    COUNTERS.get_or_init(Default::default)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::sync::Arc;

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    #[test]
    fn the_log_file_keeps_at_most_max_files() {
        let dir = tempfile::tempdir().unwrap();
        for minute in 0..5 {
            let old = format!("cart-service.log.2026-01-01-00-0{minute}");
            std::fs::write(dir.path().join(old), "old\n").unwrap();
        }
        std::fs::write(dir.path().join("unrelated.txt"), "keep me\n").unwrap();
        let path = dir.path().join("cart-service.log");

        let mut appender = open_log_file(&path, LogRotation::Minutely, 3).unwrap();
        writeln!(appender, "{{\"message\":\"new\"}}").unwrap();
        appender.flush().unwrap();

        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut logs = names.iter().filter(|n| n.starts_with("cart-service.log"));
        assert!(logs.clone().count() <= 3, "kept {names:?}");
        assert!(names.contains(&"unrelated.txt".to_owned()), "{names:?}");
        let newest = logs.next_back().unwrap();
        assert!(
            !newest.ends_with("00-04"),
            "the current file is written: {names:?}"
        );
    }

    #[test]
    fn an_unwritable_log_file_is_an_error_not_a_panic() {
        let error = open_log_file(
            Path::new("/proc/cart-service/cart-service.log"),
            LogRotation::Daily,
            7,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("/proc/cart-service"), "{error}");
    }

    #[test]
    fn each_event_is_one_json_line_with_its_fields_at_the_top_level() {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buffer);
        let make_writer = move || Shared(Arc::clone(&sink));
        let subscriber = tracing_subscriber::registry().with(json_layer(make_writer));

        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "access", method = "POST", status = 200_u16, latency_ms = 1.5, "request");
        });

        let text = String::from_utf8(buffer.lock().unwrap().concat()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert_eq!(line["message"], "request");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], "access");
        assert_eq!(line["method"], "POST");
        assert_eq!(line["status"], 200);
        assert_eq!(line["latency_ms"], 1.5);
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(
            timestamp.ends_with('Z') && timestamp.contains('T'),
            "{timestamp}"
        );
        assert!(line.get("trace_id").is_none(), "no span, no ids: {line}");
    }

    #[test]
    fn lines_that_arrive_while_the_sink_rests_leave_in_one_write() {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let mut guards = Guards::new();
        let mut sink = non_blocking(Box::new(Shared(Arc::clone(&writes))), &mut guards);
        for _ in 0..20 {
            sink.write_all(b"line\n").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(guards);
        let writes = writes.lock().unwrap();
        assert_eq!(writes.concat(), b"line\n".repeat(20), "every line written");
        // A sink written and flushed for each line would see 20 writes.
        assert!(writes.len() <= 10, "{} writes", writes.len());
    }

    /// Keeps each write apart.
    struct Shared(Arc<Mutex<Vec<Vec<u8>>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(bytes.to_vec());
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
