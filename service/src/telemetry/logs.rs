//! Log sinks: stdout in `LOG_FORMAT` and the rotating `LOG_FILE` in JSON ([`JsonLayer`]),
//! behind one filter (`RUST_LOG`).
//!
//! Both sinks go through tracing-appender's non-blocking writer: formatting happens on
//! the request's thread, writing on a thread of each sink's own, so a slow pipe or disk
//! never stalls a request, nor the other sink. JSON lines from Tokio workers reach the
//! writers in batches ([`super::batch`]). When a sink's queue is full, lines are dropped
//! and counted ([`dropped_lines`], exported as `log_lines_dropped_total`).

use std::path::Path;
use std::sync::OnceLock;

use tracing::Subscriber;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::filter::{FilterExt as _, filter_fn};
use tracing_subscriber::fmt::time::UtcTime;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{Config, LogFormat, LogRotation};

use super::batch::{Batched, FlushGuard};
pub use super::format::JsonLayer;

/// Messages a sink queues before it starts dropping lines, when its messages are lines
/// (the pretty format): about 5 MiB of lines. The channel allocates and touches every
/// slot up front (tracing-appender's default of 128 000 cost 5 MiB of resident memory per
/// sink, idle).
const BUFFERED_LINES: usize = 16_384;

/// Messages a sink queues before it starts dropping lines, when its messages are the
/// batches of [`Batched`] (up to [`super::batch::PENDING_BYTES`] and a chunk each): at
/// most 8.5 MiB a sink, about 36 000 access lines. Counted in lines, as before batches, a
/// stalled stdout let 16 384 of them, 256 MiB and more, pile up: the pod's memory, not its
/// logs, would have given way.
const BUFFERED_BATCHES: usize = 32;

type BoxedLayer<S> = Box<dyn Layer<S> + Send + Sync>;

/// Lines dropped so far because a sink could not keep up (a line both stdout and the file
/// dropped counts twice).
#[must_use]
pub fn dropped_lines() -> u64 {
    let messages = counters().lock().map_or(0, |c| {
        c.iter().map(|c| c.dropped_lines() as u64).sum::<u64>()
    });
    messages + super::batch::dropped_in_batches()
}

/// Keeps the log sinks open; dropping it writes out every line still held or queued.
#[derive(Debug, Default)]
pub struct Guards {
    // Fields drop in order: the batches go to the writers before the writers stop.
    batches: Vec<FlushGuard>,
    writers: Vec<WorkerGuard>,
}

/// The log layer, filtered by `RUST_LOG`: stdout in `LOG_FORMAT`, plus `LOG_FILE` in JSON
/// when it is set. With JSON on stdout, each line is formatted once and written to both
/// sinks. A `LOG_FILE` that cannot be opened is returned as the last value, so the caller
/// can warn once logging works.
#[allow(clippy::type_complexity)]
pub fn layer<S>(config: &Config) -> Result<(BoxedLayer<S>, Guards, Option<String>), String>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let filter =
        EnvFilter::try_new(&config.rust_log).map_err(|e| format!("invalid RUST_LOG: {e}"))?;
    let (file, file_error) = match config.log_file.as_deref() {
        None => (None, None),
        Some(path) => {
            match open_log_file(path, config.log_file_rotation, config.log_file_max_files) {
                Ok(appender) => (Some(appender), None),
                Err(error) => (None, Some(error)),
            }
        }
    };
    let mut guards = Guards::default();
    let mut sink = |writer, limit| {
        let (writer, guard) = non_blocking(writer, limit);
        guards.writers.push(guard);
        writer
    };
    // JSON lines take their ids from the request, not from span fields: the JSON layer
    // sees events only.
    let layer = match (config.log_format, file) {
        // Each line is formatted once; stdout and the file each have a queue and a writer
        // thread of their own, so a stdout nobody reads does not stop the file the log
        // shipper reads, nor a slow disk stdout.
        (LogFormat::Json, file) => {
            let mut writers = vec![sink(Box::new(std::io::stdout()), BUFFERED_BATCHES)];
            writers.extend(file.map(|file| sink(Box::new(file), BUFFERED_BATCHES)));
            // Lines of Tokio workers reach the writers in batches.
            let (batched, flush) = Batched::new(writers)
                .map_err(|e| format!("cannot start the log-flush thread: {e}"))?;
            guards.batches.push(flush);
            json_layer(batched)
                .with_filter(filter.and(filter_fn(is_event)))
                .boxed()
        }
        (LogFormat::Pretty, file) => tracing_subscriber::fmt::layer()
            .pretty()
            .with_timer(UtcTime::rfc_3339())
            .with_writer(sink(Box::new(std::io::stdout()), BUFFERED_LINES))
            .and_then(file.map(|file| json_layer(sink(Box::new(file), BUFFERED_LINES))))
            .with_filter(filter)
            .boxed(),
    };
    Ok((layer, guards, file_error))
}

fn is_event(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.is_event()
}

/// A [`JsonLayer`] writing to `writer`.
pub fn json_layer<S, W>(writer: W) -> impl Layer<S> + Send + Sync
where
    S: Subscriber,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    JsonLayer::new(writer)
}

/// Opens the rotating appender for `path`: files `<name>.<date>` in its directory,
/// rotated as `rotation` says, at most `max_files` kept.
pub fn open_log_file(
    path: &Path,
    rotation: LogRotation,
    max_files: u32,
) -> Result<RollingFileAppender, String> {
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
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

/// A non-blocking writer over `sink` that queues at most `limit` messages. The worker
/// thread writes through a `BufWriter` and flushes each time it has drained the queue, so
/// lines that queue up under load leave in one write instead of one system call each.
fn non_blocking(
    sink: Box<dyn std::io::Write + Send>,
    limit: usize,
) -> (tracing_appender::non_blocking::NonBlocking, WorkerGuard) {
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(limit)
        .lossy(true)
        .finish(std::io::BufWriter::with_capacity(64 * 1024, sink));
    if let Ok(mut counters) = counters().lock() {
        counters.push(writer.error_counter());
    }
    (writer, guard)
}

fn counters() -> &'static std::sync::Mutex<Vec<ErrorCounter>> {
    static COUNTERS: OnceLock<std::sync::Mutex<Vec<ErrorCounter>>> = OnceLock::new();
    COUNTERS.get_or_init(Default::default)
}

#[cfg(test)]
mod file_tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn the_log_file_keeps_at_most_max_files() {
        let dir = tempfile::tempdir().unwrap();
        for minute in 0..5 {
            std::fs::write(
                dir.path()
                    .join(format!("cart-service.log.2026-01-01-00-0{minute}")),
                "old\n",
            )
            .unwrap();
        }
        std::fs::write(dir.path().join("unrelated.txt"), "keep me\n").unwrap();

        let mut appender = open_log_file(
            &dir.path().join("cart-service.log"),
            LogRotation::Minutely,
            3,
        )
        .unwrap();
        writeln!(appender, "{{\"message\":\"new\"}}").unwrap();
        appender.flush().unwrap();

        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let logs: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with("cart-service.log"))
            .collect();
        assert!(logs.len() <= 3, "kept {logs:?}");
        assert!(names.contains(&"unrelated.txt".to_owned()), "{names:?}");
        let newest = logs.last().unwrap();
        assert!(
            !newest.ends_with("2026-01-01-00-04"),
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
        .unwrap_err();
        assert!(error.contains("/proc/cart-service"), "{error}");
    }
}
