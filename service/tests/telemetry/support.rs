//! The binary's telemetry: the service's tracing-opentelemetry layer over an in-memory
//! exporter, and its JSON log layer into a buffer.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use cart_service::config::{Config, SamplerName};
use cart_service::telemetry::{logs, otel};
use cart_test_support::app::TestApp;
use cart_test_support::redis::unique_user;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// What the subscriber captured.
pub struct Captured {
    pub spans: InMemorySpanExporter,
    pub logs: Arc<Mutex<Vec<u8>>>,
}

/// Installs the subscriber once (100 % sampling) and returns what it captures.
pub fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let mut config = Config::for_local("redis://127.0.0.1:1");
        config.telemetry.sampler = SamplerName::ParentbasedAlwaysOn;
        let spans = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(otel::sampler(&config.telemetry))
            .with_resource(otel::resource(&config))
            .with_simple_exporter(spans.clone())
            .build();
        otel::install_propagator();
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buffer);
        let make_writer = move || SharedWriter(Arc::clone(&sink));
        tracing_subscriber::registry()
            .with(otel::layer(&provider))
            .with(logs::json_layer(make_writer))
            .try_init()
            .expect("install the test subscriber");
        // The provider must outlive every test: leak it with the subscriber.
        std::mem::forget(provider);
        Captured {
            spans,
            logs: buffer,
        }
    })
}

/// The finished spans of one trace.
pub fn spans_of(trace_id: &str) -> Vec<SpanData> {
    captured()
        .spans
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|span| span.span_context.trace_id().to_string() == trace_id)
        .collect()
}

/// The log lines captured so far, parsed.
pub fn log_lines() -> Vec<serde_json::Value> {
    let bytes = captured().logs.lock().unwrap().clone();
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"))
        })
        .collect()
}

/// A GET of a fresh user's cart carrying `traceparent`; returns the response and its own
/// `traceparent` header.
pub async fn get_cart_with_traceparent(
    app: &TestApp,
    traceparent: &str,
) -> (reqwest::Response, String) {
    let response = app
        .client
        .get(app.url(&format!("/v1/cart/{}", unique_user())))
        .header("traceparent", traceparent)
        .send()
        .await
        .unwrap();
    let header = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    (response, header)
}

/// The trace id in a response's `traceparent` header.
pub fn trace_id_of(response: &reqwest::Response) -> String {
    let header = response
        .headers()
        .get("traceparent")
        .unwrap_or_else(|| panic!("no traceparent on {} response", response.status()))
        .to_str()
        .unwrap();
    header.split('-').nth(1).unwrap().to_owned()
}

struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
