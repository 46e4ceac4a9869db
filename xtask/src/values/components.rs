//! Values of the components around the service: the log shipper, the OpenTelemetry
//! collector, Jaeger and the `helm test` pods (Redis has `redis.rs` to itself).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::scalars::{Image, Quantity, Resources};

/// The log-shipper sidecar.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogShipper {
    /// Run it, as a native sidecar (an init container with `restartPolicy: Always`) tailing `LOG_FILE`; off means logs go to stdout only.
    pub enabled: bool,
    /// `fluent-bit` parses the JSON lines and sends them to `outputs`, remembering its file offsets across restarts; `tail` (busybox `tail -F`) streams them to the sidecar's stdout for the node's log agent.
    #[serde(rename = "type")]
    pub kind: ShipperKind,
    /// The Fluent Bit image (type `fluent-bit`).
    pub image: Image,
    /// The busybox image of type `tail`.
    pub tail_image: Image,
    /// `sizeLimit` of the emptyDir shared with the service for its daily-rotated log files.
    pub log_volume_size_limit: Quantity,
    /// Fluent Bit `[OUTPUT]` sections; the default prints every record to the sidecar's stdout.
    #[schemars(length(min = 1))]
    pub outputs: String,
    /// Requests and limits of the sidecar.
    pub resources: Resources,
}

/// Which program ships the log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ShipperKind {
    FluentBit,
    Tail,
}

/// Trace export of the service.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Telemetry {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` when `otelCollector.enabled` is false; empty means no export.
    pub otlp_endpoint: String,
    /// The `deployment.environment.name` resource attribute.
    #[schemars(length(min = 1))]
    pub environment: String,
    /// `OTEL_TRACES_SAMPLER`, such as `parentbased_traceidratio` or `always_on`.
    #[schemars(length(min = 1))]
    pub sampler: String,
    /// `OTEL_TRACES_SAMPLER_ARG`: the fraction of new traces sampled, as a string.
    #[schemars(pattern(r"^(0(\.[0-9]+)?|1(\.0+)?)$"))]
    pub sampler_arg: String,
}

/// The OpenTelemetry collector.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OtelCollector {
    /// Run it (OTLP gRPC 4317 and HTTP 4318, memory_limiter, batch 512 / 5 s, debug exporter) and point the service at it.
    pub enabled: bool,
    /// The collector image (opentelemetry-collector-contrib).
    pub image: Image,
    /// Collector replicas.
    #[schemars(range(min = 1))]
    pub replicas: u32,
    /// `memory_limiter` limit in MiB; keep it below the memory limit.
    #[serde(rename = "memoryLimitMiB")]
    #[schemars(range(min = 16))]
    pub memory_limit_mib: u32,
    /// Requests and limits of the collector.
    pub resources: Resources,
}

/// Jaeger all-in-one.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Jaeger {
    /// Run it and have the collector export traces to it (needs `otelCollector.enabled`); UI on port 16686.
    pub enabled: bool,
    /// The Jaeger v2 image.
    pub image: Image,
    /// Requests and limits of Jaeger.
    pub resources: Resources,
}

/// The `helm test` pods.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tests {
    /// Their image; it needs `sh` and `curl`.
    pub image: Image,
}
