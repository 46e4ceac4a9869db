//! End to end against a real Jaeger v2: the `cart-service` binary exports OTLP (gRPC and
//! http/protobuf) to a `jaeger` process this test starts, and the test reads the trace
//! back through Jaeger's query API: the span tree, the caller's parent span and the
//! service's resource attributes. Also: SIGTERM exports spans that were still batched, and
//! an `https://` endpoint with a private CA, a client certificate and gzip ([`tls`]).
//!
//! The `jaeger` binary is built by `cargo xtask tools` into `target/tools/bin` (or named by
//! `JAEGER_BIN`); without it these tests fail and say how to get it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tls;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cart_test_support::cart_service_bin;
use cart_test_support::port::free_port;
use cart_test_support::process::Service;
use cart_test_support::redis::unique_user;
use serde_json::Value;

/// A Jaeger v2 all-in-one with in-memory storage on free loopback ports; killed on drop.
struct Jaeger {
    child: Child,
    grpc_port: u16,
    http_port: u16,
    query_port: u16,
}

impl Jaeger {
    /// Starts Jaeger on four free ports and waits for its query API. A free port can be
    /// taken by another test's process between being found and being bound: Jaeger then
    /// exits, and it is started again on other ports.
    async fn start() -> Self {
        Self::start_with(None).await
    }

    /// [`Jaeger::start`], with `overlay` merged over the project's configuration.
    async fn start_with(overlay: Option<&Path>) -> Self {
        for _ in 0..5 {
            if let Some(jaeger) = Self::try_start(overlay).await {
                return jaeger;
            }
        }
        panic!("jaeger exited at startup five times (its output is above)");
    }

    async fn try_start(overlay: Option<&Path>) -> Option<Self> {
        let binary = jaeger_binary();
        let (grpc_port, http_port, query_port, query_grpc_port) =
            (free_port(), free_port(), free_port(), free_port());
        let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/jaeger.yaml");
        let child = Command::new(&binary)
            .arg("--config")
            .arg(&config)
            .args(
                overlay
                    .iter()
                    .flat_map(|path| ["--config".as_ref(), path.as_os_str()]),
            )
            .env("JAEGER_OTLP_GRPC_PORT", grpc_port.to_string())
            .env("JAEGER_OTLP_HTTP_PORT", http_port.to_string())
            .env("JAEGER_QUERY_PORT", query_port.to_string())
            .env("JAEGER_QUERY_GRPC_PORT", query_grpc_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
        let mut jaeger = Self {
            child,
            grpc_port,
            http_port,
            query_port,
        };
        let started = Instant::now();
        while !reqwest::get(jaeger.query("/api/services"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            if jaeger.child.try_wait().is_ok_and(|status| status.is_some()) {
                return None;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "jaeger did not start within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(jaeger)
    }

    fn query(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.query_port)
    }

    /// Whether Jaeger holds any span of the trace.
    async fn has_trace(&self, trace_id: &str) -> bool {
        let response = reqwest::get(self.query(&format!("/api/traces/{trace_id}")))
            .await
            .unwrap();
        let body: Value = response.json().await.unwrap_or_default();
        body["data"][0]["spans"]
            .as_array()
            .is_some_and(|spans| !spans.is_empty())
    }

    /// Polls Jaeger until the trace holds at least `spans` spans; returns the trace.
    async fn trace(&self, trace_id: &str, spans: usize) -> Value {
        let started = Instant::now();
        loop {
            if let Ok(response) = reqwest::get(self.query(&format!("/api/traces/{trace_id}"))).await
                && let Ok(body) = response.json::<Value>().await
                && body["data"][0]["spans"]
                    .as_array()
                    .is_some_and(|s| s.len() >= spans)
            {
                return body["data"][0].clone();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "trace {trace_id} did not reach jaeger with {spans} spans"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn jaeger_binary() -> PathBuf {
    let binary = std::env::var_os("JAEGER_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools/bin/jaeger"),
        PathBuf::from,
    );
    assert!(
        binary.is_file(),
        "jaeger not found at {}: the end-to-end trace tests need a real Jaeger v2; build it with \
         `cargo xtask tools` (go builds it from the Go module proxy) or set JAEGER_BIN",
        binary.display()
    );
    binary
}

fn random_hex(bytes: usize) -> String {
    use std::fmt::Write as _;
    (0..bytes).fold(String::new(), |mut hex, _| {
        let _ = write!(hex, "{:02x}", rand::random::<u8>());
        hex
    })
}

/// The tag `key` of a Jaeger span or process, as a string.
fn tag(item: &Value, key: &str) -> Option<String> {
    item["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| match &t["value"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
}

fn span<'a>(trace: &'a Value, operation: &str) -> &'a Value {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["operationName"] == operation)
        .unwrap_or_else(|| panic!("no span {operation:?} in {trace:#}"))
}

fn parent_of(span: &Value) -> Option<String> {
    span["references"]
        .as_array()?
        .iter()
        .find(|r| r["refType"] == "CHILD_OF")
        .map(|r| r["spanID"].as_str().unwrap().to_owned())
}

async fn add_with_traceparent(
    service: &Service,
    trace_id: &str,
    parent: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(service.url(&format!("/v1/cart/{}", unique_user())))
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .json(&serde_json::json!({"product_id": "p-1", "quantity": 1}))
        .send()
        .await
        .unwrap()
}

fn otel_env(endpoint: &str, protocol: &str, delay_ms: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", delay_ms.to_owned()),
        ("POD_NAME", "cart-e2e-0".to_owned()),
        ("NODE_NAME", "node-e2e".to_owned()),
        ("POD_NAMESPACE", "e2e".to_owned()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=e2e".to_owned(),
        ),
    ]
}

async fn start_service(env: &[(&'static str, String)]) -> Service {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Service::start(cart_service_bin!(), &env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reaches_jaeger_as_the_full_span_tree_with_resource_attributes() {
    let jaeger = Jaeger::start().await;
    let endpoint = format!("http://127.0.0.1:{}", jaeger.grpc_port);
    let service = start_service(&otel_env(&endpoint, "grpc", "100")).await;
    let (trace_id, parent) = (random_hex(16), random_hex(8));

    let response = add_with_traceparent(&service, &trace_id, &parent).await;

    assert_eq!(response.status(), 200);
    let trace = jaeger.trace(&trace_id, 3).await;
    let server = span(&trace, "POST /v1/cart/{user_id}");
    let internal = span(&trace, "cart.add_item");
    let client = span(&trace, "EVALSHA");
    assert_eq!(
        parent_of(server).as_deref(),
        Some(parent.as_str()),
        "the caller's span is the parent"
    );
    assert_eq!(
        parent_of(internal),
        server["spanID"].as_str().map(str::to_owned)
    );
    assert_eq!(
        parent_of(client),
        internal["spanID"].as_str().map(str::to_owned)
    );
    assert_eq!(tag(server, "span.kind").as_deref(), Some("server"));
    assert_eq!(
        tag(server, "http.route").as_deref(),
        Some("/v1/cart/{user_id}")
    );
    assert_eq!(
        tag(server, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(tag(internal, "span.kind").as_deref(), Some("internal"));
    assert_eq!(tag(client, "span.kind").as_deref(), Some("client"));
    assert_eq!(tag(client, "db.system.name").as_deref(), Some("redis"));
    let process = &trace["processes"][server["processID"].as_str().unwrap()];
    assert_eq!(process["serviceName"], "cart-service");
    for (key, value) in [
        ("k8s.pod.name", "cart-e2e-0"),
        ("k8s.node.name", "node-e2e"),
        ("k8s.namespace.name", "e2e"),
        ("deployment.environment.name", "e2e"),
        ("service.version", env!("CARGO_PKG_VERSION")),
    ] {
        assert_eq!(
            tag(process, key).as_deref(),
            Some(value),
            "resource attribute {key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_export_works_too() {
    let jaeger = Jaeger::start().await;
    let endpoint = format!("http://127.0.0.1:{}", jaeger.http_port);
    let service = start_service(&otel_env(&endpoint, "http/protobuf", "100")).await;
    let (trace_id, parent) = (random_hex(16), random_hex(8));

    add_with_traceparent(&service, &trace_id, &parent).await;

    let trace = jaeger.trace(&trace_id, 3).await;
    span(&trace, "cart.add_item");
}

/// The traces-only variables win over the general ones, and their endpoint is used as it
/// is: the general ones point at nothing, over gRPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_traces_endpoint_and_protocol_win_over_the_general_ones() {
    let jaeger = Jaeger::start().await;
    let mut env = otel_env("http://127.0.0.1:9", "grpc", "100");
    env.extend([
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            format!("http://127.0.0.1:{}/v1/traces", jaeger.http_port),
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "http/protobuf".to_owned(),
        ),
    ]);
    let service = start_service(&env).await;
    let (trace_id, parent) = (random_hex(16), random_hex(8));

    add_with_traceparent(&service, &trace_id, &parent).await;

    let trace = jaeger.trace(&trace_id, 3).await;
    span(&trace, "cart.add_item");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exports_the_spans_still_batched() {
    let jaeger = Jaeger::start().await;
    let endpoint = format!("http://127.0.0.1:{}", jaeger.grpc_port);
    // A batch delay far beyond the test: only the shutdown flush can deliver the spans.
    let mut service = start_service(&otel_env(&endpoint, "grpc", "600000")).await;
    let (trace_id, parent) = (random_hex(16), random_hex(8));
    add_with_traceparent(&service, &trace_id, &parent).await;

    service.terminate();
    let (status, _) = service.wait_exit(Duration::from_secs(10)).await;

    assert!(status.success(), "exit status {status}: {}", service.log());
    let trace = jaeger.trace(&trace_id, 3).await;
    span(&trace, "POST /v1/cart/{user_id}");
}
