//! The process-wide Prometheus recorder, and cached metric handles for the hot paths.

use std::collections::HashMap;
use std::sync::{OnceLock, RwLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// OpenTelemetry semantic-convention buckets for HTTP durations, in seconds.
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The process-wide recorder, installed on first use. The `metrics` facade is global by
/// design, so every `Application` in a process (tests start several) shares it.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), DURATION_BUCKETS)
            .map(PrometheusBuilder::build_recorder);
        match recorder {
            Ok(recorder) => {
                let handle = recorder.handle();
                // Fails only if another recorder was installed first; then ours stays empty.
                if metrics::set_global_recorder(recorder).is_err() {
                    tracing::warn!(
                        "a metrics recorder was already installed; /metrics will be empty"
                    );
                }
                describe();
                metrics::gauge!("build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
                spawn_upkeep(handle.clone());
                handle
            }
            Err(error) => {
                tracing::error!(error = %error, "invalid metrics buckets");
                PrometheusBuilder::new().build_recorder().handle()
            }
        }
    })
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The exporter keeps every histogram sample until upkeep folds it into the buckets; with
/// nobody scraping `/metrics`, memory grew by about 16 bytes a request (114 MiB after a
/// benchmark run). A thread of its own, because the recorder outlives any one runtime.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(error = %error, "cannot start metrics upkeep; histograms fold only when scraped");
    }
}

/// The handle `key` names in `cache`, made by `make` the first time.
pub(crate) fn cached<K, H>(cache: &RwLock<HashMap<K, H>>, key: K, make: impl FnOnce() -> H) -> H
where
    K: std::hash::Hash + Eq,
    H: Clone,
{
    if let Ok(map) = cache.read()
        && let Some(handle) = map.get(&key)
    {
        return handle.clone();
    }
    let handle = make();
    if let Ok(mut map) = cache.write() {
        map.entry(key).or_insert_with(|| handle.clone());
    }
    handle
}

/// Gives every metric the service exports its `# HELP` text and unit; a metric added
/// without a description here fails the exposition test in `tests/api`.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        "http_server_request_duration_seconds",
        Unit::Seconds,
        "Duration of HTTP server requests, by method, route template and status code"
    );
    describe_gauge!(
        "http_server_active_requests",
        Unit::Count,
        "HTTP server requests being served now, by method"
    );
    describe_gauge!(
        "http_server_open_connections",
        Unit::Count,
        "HTTP connections open now, HTTP/1.1 and HTTP/2 together (at most HTTP_MAX_CONNECTIONS)"
    );
    describe_counter!(
        "http_server_connections_refused_total",
        Unit::Count,
        "Connections closed as soon as they were accepted because HTTP_MAX_CONNECTIONS were open"
    );
    describe_counter!(
        "cart_operations_total",
        Unit::Count,
        "Cart operations by operation and outcome: ok, rejected (4xx) or error (5xx)"
    );
    describe_histogram!(
        "redis_command_duration_seconds",
        Unit::Seconds,
        "Duration of Redis commands as the service waits for them, by command"
    );
    describe_counter!(
        "log_lines_dropped_total",
        Unit::Count,
        "Log lines dropped because a log sink could not keep up (stdout and LOG_FILE count apart)"
    );
    describe_gauge!(
        "build_info",
        "Always 1: the version label names the running build"
    );
}
