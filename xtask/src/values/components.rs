//! Values of the components around the service: the log shipper, Redis (in the release
//! or external), the OpenTelemetry collector, Jaeger and the `helm test` pods.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::scalars::{Image, Quantity, RedisMemory, Resources};

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

/// Redis in the release.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Redis {
    /// Run Redis as a StatefulSet in the release; false needs `externalRedis.host`.
    pub enabled: bool,
    /// The Redis image.
    pub image: Image,
    /// Redis port.
    #[schemars(range(min = 1024, max = 65535))]
    pub port: u16,
    /// UID and GID Redis runs as (10000 or more).
    #[schemars(range(min = 10000))]
    pub run_as_user: u32,
    /// Authentication; a password is always required.
    pub auth: RedisAuth,
    /// `maxmemory` of the dataset, such as `200mb`; the policy is `noeviction`, so a full Redis refuses writes rather than dropping carts.
    pub maxmemory: RedisMemory,
    /// `appendfsync` of the append-only file.
    pub appendfsync: AppendFsync,
    /// The data volume.
    pub persistence: RedisPersistence,
    /// Requests and limits of Redis (and of its ACL init container); keep the memory limit above `maxmemory`.
    pub resources: Resources,
    /// The redis_exporter sidecar.
    pub exporter: RedisExporter,
}

/// The Redis password.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisAuth {
    /// An existing Secret holding the password (URL-safe characters); empty means the chart creates one with a random password, kept across upgrades and on uninstall.
    pub existing_secret: String,
    /// Key of the password in the Secret.
    #[schemars(length(min = 1))]
    pub existing_secret_key: String,
}

/// How often Redis fsyncs the append-only file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AppendFsync {
    Everysec,
    Always,
    No,
}

/// The Redis data volume.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisPersistence {
    /// Keep the data on a PersistentVolumeClaim; off means an emptyDir, lost with the pod.
    pub enabled: bool,
    /// Size of the volume (or the emptyDir's `sizeLimit`), such as `1Gi`.
    pub size: Quantity,
    /// StorageClass; empty uses the cluster default.
    pub storage_class: String,
}

/// The redis_exporter sidecar.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisExporter {
    /// Run it (Prometheus metrics on port 9121).
    pub enabled: bool,
    /// The redis_exporter image.
    pub image: Image,
    /// Requests and limits of the exporter.
    pub resources: Resources,
}

/// A Redis outside the release.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalRedis {
    /// Host name of the Redis; required when `redis.enabled` is false.
    pub host: String,
    /// Its port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Database number.
    #[schemars(range(max = 15))]
    pub database: u32,
    /// Connect over TLS (`rediss://`), verifying the server's certificate and name.
    pub tls: bool,
    /// TLS files from an existing Secret, for a Redis whose certificate comes from a private CA or that requires a client certificate.
    pub tls_secret: RedisTlsSecret,
    /// Secret holding its password (URL-safe characters); empty means no password.
    pub existing_secret: String,
    /// Key of the password in that Secret.
    #[schemars(length(min = 1))]
    pub existing_secret_key: String,
}

/// An existing Secret with TLS files for the external Redis, under the keys cert-manager
/// writes (`ca.crt`, `tls.crt`, `tls.key`); the files chosen here are mounted read-only into
/// the service's pods, which read them at startup (a renewed certificate needs a restart).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisTlsSecret {
    /// Name of the Secret; empty means none: the server is verified against the public roots and no client certificate is presented. Needs `externalRedis.tls`.
    pub name: String,
    /// Verify the server against the Secret's `ca.crt` (`REDIS_CA_FILE`) instead of the public roots.
    pub ca: bool,
    /// Present the Secret's `tls.crt` and `tls.key` as a client certificate (`REDIS_CLIENT_CERT_FILE`, `REDIS_CLIENT_KEY_FILE`), for a Redis that requires one.
    pub client_certificate: bool,
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
