//! The batch span processor: ended spans join a queue under a mutex, and an export task on
//! the runtime sends them in batches.
//!
//! The SDK's processor for async runtimes sent every ended span through a channel to its
//! task, which woke for each one; on the way the span (some 400 bytes) was copied from
//! the channel to its stream to the batch, about 4 000 instructions of copying and
//! waking a fully sampled `add` (callgrind, README "What the profiles showed"). Here a
//! span is moved into the queue once, and the task wakes when a batch is full, when the
//! schedule delay has passed since the last export, or for a flush.
//!
//! The standard `OTEL_BSP_*` variables set it ([`BatchSettings`]). A full queue drops the
//! span, counts it (`otel_spans_dropped_total` at `/metrics`) and the task says so in a
//! warning, once per export round that saw drops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::Config;

/// Spans dropped because the queue was full, since the process started.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Spans every batch processor dropped because its queue was full.
pub fn dropped_spans() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// When and how much the processor exports: `OTEL_BSP_SCHEDULE_DELAY`,
/// `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` and
/// `OTEL_BSP_EXPORT_TIMEOUT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// The longest a span waits in a queue that holds less than a batch.
    pub schedule_delay: Duration,
    /// Spans queued beyond this many are dropped.
    pub max_queue_size: usize,
    /// Spans per export; at most `max_queue_size`, as the specification asks.
    pub max_export_batch_size: usize,
    /// The longest one export may take before it is abandoned.
    pub export_timeout: Duration,
}

impl BatchSettings {
    /// The settings `config` holds, the batch size cut to the queue size.
    #[must_use]
    pub fn of(config: &Config) -> Self {
        let count = |value: u32| usize::try_from(value).unwrap_or(usize::MAX);
        let max_queue_size = count(config.otel_bsp_max_queue_size);
        Self {
            schedule_delay: Duration::from_millis(config.otel_bsp_schedule_delay),
            max_queue_size,
            max_export_batch_size: count(config.otel_bsp_max_export_batch_size).min(max_queue_size),
            export_timeout: Duration::from_millis(config.otel_bsp_export_timeout),
        }
    }
}

/// A [`SpanProcessor`] that exports ended spans in batches from a task on the Tokio
/// runtime it was made on.
pub struct SpanBatcher<E> {
    shared: Arc<Shared>,
    exporter: Arc<tokio::sync::Mutex<E>>,
}

impl<E> std::fmt::Debug for SpanBatcher<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpanBatcher")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

struct Shared {
    settings: BatchSettings,
    queue: Mutex<Queue>,
    /// Wakes the export task: a batch is full, a span was dropped, or a caller waits.
    wake: Notify,
}

#[derive(Default)]
struct Queue {
    spans: Vec<SpanData>,
    /// Spans dropped since the task last reported drops.
    dropped: u64,
    /// Callers of a flush or the shutdown, answered once every span queued before they
    /// asked has been exported.
    waiting: Vec<SyncSender<OTelSdkResult>>,
    /// Set by the shutdown: spans that end later are not exported.
    shut_down: bool,
    /// Set when the export task has ended, with the shutdown or with its runtime.
    task_ended: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<E: SpanExporter + 'static> SpanBatcher<E> {
    /// Starts the export task. Call inside the Tokio runtime.
    pub fn new(exporter: E, settings: BatchSettings) -> Self {
        let shared = Arc::new(Shared {
            settings,
            queue: Mutex::new(Queue {
                spans: Vec::with_capacity(settings.max_export_batch_size),
                ..Queue::default()
            }),
            wake: Notify::new(),
        });
        let exporter = Arc::new(tokio::sync::Mutex::new(exporter));
        // The guard is an argument, not a local: a task dropped before its first poll
        // has run none of its body.
        tokio::spawn(export_until_shut_down(
            EndsTask(Arc::clone(&shared)),
            Arc::clone(&exporter),
        ));
        Self { shared, exporter }
    }

    /// Wakes the task to export everything queued (and to shut down, when `shut_down`),
    /// and waits up to `timeout` for its answer.
    fn export_all(&self, shut_down: bool, timeout: Duration) -> OTelSdkResult {
        let (answer, answered): (_, Receiver<OTelSdkResult>) = sync_channel(1);
        {
            let mut queue = self.shared.lock();
            if queue.shut_down {
                return Err(OTelSdkError::AlreadyShutdown);
            }
            if queue.task_ended {
                return Err(task_ended());
            }
            queue.shut_down = shut_down;
            queue.waiting.push(answer);
        }
        self.shared.wake.notify_one();
        answered
            .recv_timeout(timeout)
            .unwrap_or_else(|error| match error {
                std::sync::mpsc::RecvTimeoutError::Timeout => Err(OTelSdkError::Timeout(timeout)),
                std::sync::mpsc::RecvTimeoutError::Disconnected => Err(task_ended()),
            })
    }
}

impl<E: SpanExporter + 'static> SpanProcessor for SpanBatcher<E> {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let mut queue = self.shared.lock();
        if queue.shut_down {
            return;
        }
        let settings = &self.shared.settings;
        if queue.spans.len() >= settings.max_queue_size {
            queue.dropped += 1;
            DROPPED.fetch_add(1, Ordering::Relaxed);
            let first = queue.dropped == 1;
            drop(queue);
            if first {
                self.shared.wake.notify_one();
            }
            return;
        }
        queue.spans.push(span);
        let full = queue.spans.len() == settings.max_export_batch_size;
        drop(queue);
        if full {
            self.shared.wake.notify_one();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.export_all(false, self.shared.settings.export_timeout * 2)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.export_all(true, timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called while the provider is built, before any span: nothing holds the lock.
        if let Ok(mut exporter) = self.exporter.try_lock() {
            exporter.set_resource(resource);
        }
    }
}

fn task_ended() -> OTelSdkError {
    OTelSdkError::InternalFailure(
        "the span export task has ended with its runtime: the spans still queued are lost"
            .to_owned(),
    )
}

/// Marks the export task ended when it is dropped, finished or not (a runtime that shuts
/// down drops its tasks), and lets its callers go: their answer will not come.
struct EndsTask(Arc<Shared>);

impl Drop for EndsTask {
    fn drop(&mut self) {
        let mut queue = self.0.lock();
        queue.task_ended = true;
        queue.waiting.clear();
    }
}

/// The export task: waits for a full batch, the schedule delay or a caller, exports
/// what is due batch by batch, answers the callers, and ends after the shutdown.
async fn export_until_shut_down<E: SpanExporter>(
    ends: EndsTask,
    exporter: Arc<tokio::sync::Mutex<E>>,
) {
    let shared = &ends.0;
    let settings = shared.settings;
    let mut deadline = Instant::now() + settings.schedule_delay;
    loop {
        tokio::select! {
            () = shared.wake.notified() => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
        let delay_passed = Instant::now() >= deadline;
        let mut result = Ok(());
        // Spans that leave this round even short of a batch: those queued when the delay
        // had passed, or before the latest caller asked. Spans that end meanwhile wait for
        // a full batch or the next round, so a busy queue still leaves in full batches.
        let mut due = None;
        let mut callers = 0;
        let (waiting, shut_down) = loop {
            let (batch, dropped) = {
                let mut queue = shared.lock();
                if (due.is_none() && delay_passed) || queue.waiting.len() > callers {
                    due = Some(queue.spans.len());
                    callers = queue.waiting.len();
                }
                let dropped = std::mem::take(&mut queue.dropped);
                let count = queue.spans.len();
                let batch =
                    if count >= settings.max_export_batch_size || due.is_some_and(|due| due > 0) {
                        let batch = take_batch(&mut queue.spans, settings.max_export_batch_size);
                        due = due.map(|due| due.saturating_sub(batch.len()));
                        Some(batch)
                    } else {
                        None
                    };
                if batch.is_none() && dropped == 0 {
                    break (std::mem::take(&mut queue.waiting), queue.shut_down);
                }
                (batch, dropped)
            };
            if dropped > 0 {
                tracing::warn!(
                    dropped,
                    max_queue_size = settings.max_queue_size,
                    "the span queue was full: spans were dropped (raise OTEL_BSP_MAX_QUEUE_SIZE, or check the collector)"
                );
            }
            if let Some(batch) = batch {
                let this_one = export(&exporter, batch, settings.export_timeout).await;
                // The callers hear of the round's first failure, not only of its last export.
                if result.is_ok() {
                    result = this_one;
                }
            }
        };
        if delay_passed {
            deadline = Instant::now() + settings.schedule_delay;
        }
        if shut_down {
            let stopped = exporter.lock().await.shutdown();
            for caller in waiting {
                let _ = caller.send(copy(&result).and(copy(&stopped)));
            }
            return;
        }
        for caller in waiting {
            let _ = caller.send(copy(&result));
        }
    }
}

/// `result` again, for one more caller (the SDK's error is not `Clone`).
fn copy(result: &OTelSdkResult) -> OTelSdkResult {
    match result {
        Ok(()) => Ok(()),
        Err(OTelSdkError::Timeout(timeout)) => Err(OTelSdkError::Timeout(*timeout)),
        Err(OTelSdkError::AlreadyShutdown) => Err(OTelSdkError::AlreadyShutdown),
        Err(error) => Err(OTelSdkError::InternalFailure(error.to_string())),
    }
}

/// The first `size` spans of the queue, leaving the queue with room for a batch.
fn take_batch(spans: &mut Vec<SpanData>, size: usize) -> Vec<SpanData> {
    if spans.len() <= size {
        std::mem::replace(spans, Vec::with_capacity(size))
    } else {
        spans.drain(..size).collect()
    }
}

/// Exports `batch`, abandoned after `timeout`; a failure is logged and returned.
async fn export<E: SpanExporter>(
    exporter: &tokio::sync::Mutex<E>,
    batch: Vec<SpanData>,
    timeout: Duration,
) -> OTelSdkResult {
    let spans = batch.len();
    let exporter = exporter.lock().await;
    let result = match tokio::time::timeout(timeout, exporter.export(batch)).await {
        Ok(result) => result,
        Err(_) => Err(OTelSdkError::Timeout(timeout)),
    };
    if let Err(error) = &result {
        tracing::warn!(error = %error, spans, "exporting spans failed; they are lost");
    }
    result
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;

    /// An exporter that keeps the names of the spans it was given, and whether it was
    /// shut down.
    #[derive(Debug, Clone, Default)]
    struct Recorder {
        names: Arc<Mutex<Vec<String>>>,
        shut_down: Arc<AtomicBool>,
        /// How long each export takes.
        takes: Duration,
        /// Exports still to fail, before any succeeds.
        failures: Arc<AtomicU64>,
    }

    impl SpanExporter for Recorder {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            tokio::time::sleep(self.takes).await;
            let failing =
                self.failures
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                        left.checked_sub(1)
                    });
            if failing.is_ok() {
                return Err(OTelSdkError::InternalFailure("collector down".to_owned()));
            }
            let mut names = self.names.lock().unwrap();
            names.extend(batch.into_iter().map(|span| span.name.into_owned()));
            Ok(())
        }

        fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
            self.shut_down.store(true, Ordering::Relaxed);
            Ok(())
        }
    }

    impl Recorder {
        fn names(&self) -> Vec<String> {
            self.names.lock().unwrap().clone()
        }

        /// Waits up to five seconds for `count` exported spans.
        async fn exported(&self, count: usize) -> Vec<String> {
            let started = std::time::Instant::now();
            loop {
                let names = self.names();
                if names.len() >= count || started.elapsed() > Duration::from_secs(5) {
                    return names;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    fn settings(delay_ms: u64, queue: usize, batch: usize) -> BatchSettings {
        BatchSettings {
            schedule_delay: Duration::from_millis(delay_ms),
            max_queue_size: queue,
            max_export_batch_size: batch,
            export_timeout: Duration::from_secs(5),
        }
    }

    fn provider(settings: BatchSettings) -> (SdkTracerProvider, Recorder) {
        let exporter = Recorder::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(SpanBatcher::new(exporter.clone(), settings))
            .build();
        (provider, exporter)
    }

    fn end_spans(provider: &SdkTracerProvider, count: usize) {
        let tracer = provider.tracer("test");
        for index in 0..count {
            tracer.start(format!("span-{index}")).end();
        }
    }

    /// Runs `f` with the provider on a blocking thread, as the service's shutdown does.
    async fn blocking(
        provider: &SdkTracerProvider,
        f: fn(&SdkTracerProvider) -> OTelSdkResult,
    ) -> OTelSdkResult {
        let provider = provider.clone();
        tokio::task::spawn_blocking(move || f(&provider))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_full_batch_leaves_without_waiting_for_the_delay() {
        let (provider, exporter) = provider(settings(600_000, 10, 3));

        end_spans(&provider, 4);

        assert_eq!(
            exporter.exported(3).await,
            ["span-0", "span-1", "span-2"],
            "the fourth waits for the next batch"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(exporter.names().len(), 3);
        assert!(
            blocking(&provider, SdkTracerProvider::shutdown)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn spans_short_of_a_batch_leave_after_the_delay() {
        let (provider, exporter) = provider(settings(50, 10, 5));
        let started = std::time::Instant::now();

        end_spans(&provider, 2);

        assert_eq!(exporter.exported(2).await, ["span-0", "span-1"]);
        assert!(started.elapsed() >= Duration::from_millis(40));
        assert!(
            blocking(&provider, SdkTracerProvider::shutdown)
                .await
                .is_ok()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_flush_and_the_shutdown_export_everything_queued() {
        let (provider, exporter) = provider(settings(600_000, 100, 40));

        end_spans(&provider, 7);
        let flushed = blocking(&provider, SdkTracerProvider::force_flush).await;

        assert!(flushed.is_ok(), "{flushed:?}");
        assert_eq!(exporter.names().len(), 7);
        assert!(!exporter.shut_down.load(Ordering::Relaxed));
        end_spans(&provider, 2);
        let shut = blocking(&provider, SdkTracerProvider::shutdown).await;
        assert!(shut.is_ok(), "{shut:?}");
        assert_eq!(exporter.names().len(), 9);
        assert!(exporter.shut_down.load(Ordering::Relaxed));
        end_spans(&provider, 1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(exporter.names().len(), 9, "nothing after the shutdown");
    }

    /// On one thread, the export task runs only once the flush is awaited: the three
    /// spans leave in that round, as two exports.
    #[tokio::test]
    async fn a_flush_reports_a_failed_export_though_a_later_one_succeeded() {
        let exporter = Recorder {
            failures: Arc::new(AtomicU64::new(1)),
            ..Recorder::default()
        };
        let provider = SdkTracerProvider::builder()
            .with_span_processor(SpanBatcher::new(exporter.clone(), settings(600_000, 10, 2)))
            .build();
        end_spans(&provider, 3);

        let flushed = blocking(&provider, SdkTracerProvider::force_flush).await;

        assert!(flushed.is_err(), "{flushed:?}");
        assert_eq!(
            exporter.names(),
            ["span-2"],
            "the second export went through"
        );
        assert!(
            blocking(&provider, SdkTracerProvider::shutdown)
                .await
                .is_ok()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_full_queue_drops_and_counts_what_does_not_fit() {
        let (provider, exporter) = provider(settings(600_000, 4, 4));
        let before = dropped_spans();

        // The first four fill the queue and a batch; the task may take the batch before
        // the rest arrive, so between 0 and 6 of the next six are dropped.
        end_spans(&provider, 10);
        let shut = blocking(&provider, SdkTracerProvider::shutdown).await;

        assert!(shut.is_ok(), "{shut:?}");
        let sent = exporter.names().len() as u64;
        assert!(sent >= 4, "{sent}");
        assert_eq!(dropped_spans() - before, 10 - sent);
    }

    #[tokio::test(start_paused = true)]
    async fn spans_that_end_during_the_delay_export_wait_for_the_next_round() {
        let exporter = Recorder {
            takes: Duration::from_millis(20),
            ..Recorder::default()
        };
        let provider = SdkTracerProvider::builder()
            .with_span_processor(SpanBatcher::new(exporter.clone(), settings(100, 100, 10)))
            .build();
        end_spans(&provider, 3);

        // The delay passes at 100 ms; its export runs until 120 ms.
        tokio::time::sleep(Duration::from_millis(110)).await;
        end_spans(&provider, 2);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(
            exporter.names().len(),
            3,
            "the two are not chased at 150 ms"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;

        assert_eq!(exporter.names().len(), 5, "the next round took them");
        assert!(
            blocking(&provider, SdkTracerProvider::shutdown)
                .await
                .is_ok()
        );
    }

    #[test]
    fn a_shutdown_after_the_runtime_has_gone_fails_at_once() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (provider, exporter) = runtime.block_on(async { provider(settings(600_000, 10, 5)) });
        end_spans(&provider, 2);
        drop(runtime);
        let started = std::time::Instant::now();

        let shut = provider.shutdown();

        assert!(
            shut.as_ref()
                .unwrap_err()
                .to_string()
                .contains("ended with its runtime"),
            "{shut:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(exporter.names().is_empty());
    }

    #[test]
    fn the_batch_size_is_cut_to_the_queue_size() {
        use clap::Parser as _;
        let mut config = crate::config::Cli::parse_from(["cart-service"]).config;
        config.otel_bsp_max_queue_size = 100;

        assert_eq!(BatchSettings::of(&config).max_export_batch_size, 100);
        config.otel_bsp_max_queue_size = 2048;
        assert_eq!(
            BatchSettings::of(&config),
            BatchSettings {
                schedule_delay: Duration::from_secs(5),
                max_queue_size: 2048,
                max_export_batch_size: 512,
                export_timeout: Duration::from_secs(30),
            }
        );
    }
}
