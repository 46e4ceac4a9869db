//! The Helm chart's values as Rust types: the one place every value is typed and
//! documented. `cargo xtask gen` turns them into `charts/cart-service/values.schema.json`
//! (JSON Schema draft-07, which Helm enforces on install) and into the chart README's
//! values table, and a test holds `values.yaml` to them with unknown fields denied.
//!
//! Doc comments here are the descriptions users read, so they say what a value does in
//! the running system, not how the template uses it. Field names are the YAML keys.

// The doc comments are the chart's user documentation (schema descriptions, README
// table), written for chart users, not rustdoc: product names stay plain words.
#![allow(clippy::doc_markdown)]

mod components;
mod k8s;
mod monitoring;
mod redis;
mod scalars;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use k8s::{NetworkPolicyEgressRule, NetworkPolicyPeer, Toleration};

pub use components::{Jaeger, LogShipper, OtelCollector, Telemetry, Tests};
pub use monitoring::{Grafana, PrometheusRule, ServiceMonitor};
pub use redis::{ExternalRedis, Redis};
pub use scalars::{Image, Resources};

/// Values for the cart-service chart.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "cart-service chart values")]
pub struct Values {
    /// Overrides the chart name in resource names and the `app.kubernetes.io/name` label.
    pub name_override: String,
    /// Overrides the whole release-and-chart name prefix of every resource.
    pub fullname_override: String,
    /// The cart-service image; an empty tag means the chart's appVersion.
    pub image: Image,
    /// Names of Secrets used to pull images from private registries.
    pub image_pull_secrets: Vec<String>,
    /// Replicas when autoscaling is off; with the HPA on, the HPA owns the count.
    #[schemars(range(min = 1))]
    pub replica_count: u32,
    /// The ServiceAccount of the cart-service pods; its token is never mounted.
    pub service_account: ServiceAccount,
    /// Extra annotations on the cart-service pods.
    pub pod_annotations: BTreeMap<String, String>,
    /// Extra labels on the cart-service pods.
    pub pod_labels: BTreeMap<String, String>,
    /// UID and GID the cart-service container runs as (distroless nonroot is 65532); the restricted profile wants 10000 or more.
    #[schemars(range(min = 10000))]
    pub run_as_user: u32,
    /// The Service in front of the cart-service pods.
    pub service: Service,
    /// Port the service listens on inside the pod (`LISTEN_ADDR`).
    #[schemars(range(min = 1024, max = 65535))]
    pub container_port: u16,
    /// The service's own settings, passed as environment variables.
    pub config: AppConfig,
    /// Bearer-JWT authentication of the cart routes (`AUTH_*`); probes and `/metrics` stay open.
    pub auth: Auth,
    /// The graceful shutdown sequence; the pod's grace period is the sum of the three.
    pub shutdown: Shutdown,
    /// Probes of the cart-service container: startup and liveness on `/livez`, readiness on `/readyz`.
    pub probes: Probes,
    /// CPU and memory requests and limits of the cart-service container.
    pub resources: Resources,
    /// Node labels every pod of the release must match.
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations for every pod of the release.
    pub tolerations: Vec<Toleration>,
    /// Spreading cart-service pods across nodes.
    pub topology_spread: TopologySpread,
    /// The HorizontalPodAutoscaler (autoscaling/v2) of the cart-service Deployment.
    pub autoscaling: Autoscaling,
    /// The PodDisruptionBudget of the cart-service pods.
    pub pod_disruption_budget: PodDisruptionBudget,
    /// NetworkPolicies for every component of the release.
    pub network_policy: NetworkPolicy,
    /// An optional Ingress for the service.
    pub ingress: Ingress,
    /// An optional Prometheus Operator ServiceMonitor for `/metrics`.
    pub service_monitor: ServiceMonitor,
    /// An optional Grafana dashboard for Grafana's dashboard sidecar.
    pub grafana: Grafana,
    /// An optional Prometheus Operator PrometheusRule: SLO recording rules and burn-rate alerts.
    pub prometheus_rule: PrometheusRule,
    /// The Fluent Bit sidecar that ships the service's log file.
    pub log_shipper: LogShipper,
    /// The service's Redis: standalone or a Redis Cluster in the release, or external.
    pub redis: Redis,
    /// A Redis or Redis Cluster outside the release, used in `redis.mode` `external`.
    pub external_redis: ExternalRedis,
    /// Trace export settings of the service (the standard `OTEL_*` variables).
    pub telemetry: Telemetry,
    /// The OpenTelemetry collector the service exports its traces to.
    pub otel_collector: OtelCollector,
    /// Jaeger all-in-one with in-memory storage, fed by the collector.
    pub jaeger: Jaeger,
    /// The `helm test` pods.
    pub tests: Tests,
}

/// The ServiceAccount of the cart-service pods.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceAccount {
    /// Create a ServiceAccount for the service.
    pub create: bool,
    /// Its name; empty means the release fullname (or `default` when not created).
    pub name: String,
    /// Annotations, for example a cloud IAM role.
    pub annotations: BTreeMap<String, String>,
}

/// The Service in front of the cart-service pods.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    /// `ClusterIP`, `NodePort` or `LoadBalancer`.
    #[serde(rename = "type")]
    pub kind: ServiceType,
    /// The Service's port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Fixed node port for `NodePort` (30000-32767); 0 lets Kubernetes choose.
    #[schemars(range(max = 32767))]
    pub node_port: u16,
}

/// How the Service is exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// The service's own settings; each is the environment variable named in its description.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppConfig {
    /// `RUST_LOG`: log filter in `tracing` `EnvFilter` syntax, for example `info,cart_service=debug`.
    #[schemars(length(min = 1))]
    pub rust_log: String,
    /// `LOG_FORMAT`: `json` (one object a line, what the log shipper parses) or `pretty`.
    pub log_format: LogFormat,
    /// `REDIS_RESPONSE_TIMEOUT_MS`: time to wait for each Redis reply before answering 503.
    #[schemars(range(min = 1, max = 60000))]
    pub redis_response_timeout_ms: u32,
    /// `REDIS_CONNECT_TIMEOUT_MS`: time to wait for a new Redis connection.
    #[schemars(range(min = 1, max = 60000))]
    pub redis_connect_timeout_ms: u32,
    /// `REDIS_WAIT_REPLICAS`: replicas each write must reach (Redis `WAIT`) before it is acknowledged; 0 acknowledges once the master has it. Above 0 a master lost just after a write cannot take the write with it, for a round trip to a replica on every write. At most `redis.cluster.replicasPerMaster` in mode `cluster`, and 0 in mode `standalone`, which has no replica.
    #[schemars(range(max = 5))]
    pub redis_wait_replicas: u32,
    /// `REDIS_WAIT_TIMEOUT_MS`: the longest a write waits for those replicas.
    #[schemars(range(min = 1, max = 60000))]
    pub redis_wait_timeout_ms: u32,
    /// `REQUEST_TIMEOUT_MS`: deadline for a whole request; past it the answer is 503.
    #[schemars(range(min = 1, max = 600_000))]
    pub request_timeout_ms: u32,
    /// `HTTP_IDLE_TIMEOUT_MS`: a connection with no request in progress, also one that never sent a byte, is closed after this long.
    #[schemars(range(min = 1, max = 3_600_000))]
    pub http_idle_timeout_ms: u32,
    /// `HTTP_MAX_CONNECTIONS`: most connections one pod keeps open; past it new ones are closed at once, and the open ones are served as before.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub http_max_connections: u32,
    /// `CART_TTL_SECONDS`: lifetime of a cart after its last write; 0 means carts never expire.
    pub cart_ttl_seconds: u64,
    /// `CART_MAX_ITEMS`: most distinct products one cart may hold.
    #[schemars(range(min = 1, max = 100_000))]
    pub cart_max_items: u32,
    /// `CART_MAX_QUANTITY`: most units of one product one cart may hold.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub cart_max_quantity: u32,
    /// `POST /stress`, for HPA demos.
    pub stress: Stress,
    /// Extra environment variables for the service, name to value.
    pub extra_env: BTreeMap<String, String>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// The `/stress` endpoint's limits.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Stress {
    /// `STRESS_ENABLED`: serve `POST /stress`, which burns CPU and memory on request, for HPA demos; when false the route is 404. Off by default: turn it on where load tests run, not in production.
    pub enabled: bool,
    /// `STRESS_MAX_CPU_ITERATIONS`: largest `cpu_iterations` one request may ask for (about 1 ms of CPU each).
    pub max_cpu_iterations: u32,
    /// `STRESS_MAX_MEMORY_MB`: largest `memory_mb` one request may ask for; at most `maxTotalMemoryMb`.
    pub max_memory_mb: u32,
    /// `STRESS_MAX_CONCURRENCY`: stress requests allowed at once; more get 429.
    #[schemars(range(min = 1, max = 1024))]
    pub max_concurrency: u32,
    /// `STRESS_MAX_TOTAL_MEMORY_MB`: MiB all running stress requests may hold together; a request that does not fit gets 429. Keep it well under `resources.limits.memory`, with room for the service itself.
    #[schemars(range(min = 1, max = 1_048_576))]
    pub max_total_memory_mb: u32,
    /// `STRESS_TOKEN`: the bearer token `POST /stress` then requires, from an existing Secret.
    pub token: StressToken,
}

/// Where `STRESS_TOKEN` comes from; the token itself is never a value.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StressToken {
    /// An existing Secret holding the token (visible ASCII, no spaces); empty means no token, so anyone who reaches the service may call `/stress`.
    pub existing_secret: String,
    /// Key of the token in the Secret.
    #[schemars(length(min = 1))]
    pub existing_secret_key: String,
}

/// Bearer-JWT authentication of the cart routes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Auth {
    /// `AUTH_MODE`: `none` leaves the cart routes open; `jwt` requires on each a bearer JWT whose `userClaim` equals the path's user id (401 without a valid token, 403 for another user's). The other values are used only with `jwt`.
    pub mode: AuthMode,
    /// `AUTH_JWKS_URL`: the issuer's JSON Web Key Set (`http://` or `https://`), fetched at startup, every `jwksRefreshSeconds` and when a token names an unknown key; set this or `publicKey`. With NetworkPolicies on, `networkPolicy.extraEgress` must let the pods reach it.
    pub jwks_url: String,
    /// One PEM public key (RSA, P-256 or Ed25519) from a ConfigMap or a Secret, instead of `jwksUrl`; mounted read-only as `AUTH_PUBLIC_KEY_FILE` and read at startup (restart the pods after changing it).
    pub public_key: AuthPublicKey,
    /// `AUTH_ISSUER`: the `iss` every token must name; required with `jwt`.
    pub issuer: String,
    /// `AUTH_AUDIENCE`: the audience every token's `aud` must include; required with `jwt`.
    pub audience: String,
    /// `AUTH_USER_CLAIM`: the claim that must equal the path's `{user_id}`.
    #[schemars(length(min = 1))]
    pub user_claim: String,
    /// `AUTH_LEEWAY_SECONDS`: clock skew allowed when checking `exp` and `nbf`.
    #[schemars(range(max = 300))]
    pub leeway_seconds: u32,
    /// `AUTH_JWKS_REFRESH_SECONDS`: how often the JWKS is fetched again; a failed fetch keeps the last good keys.
    #[schemars(range(min = 1, max = 86_400))]
    pub jwks_refresh_seconds: u32,
}

/// Whether the cart routes need a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    None,
    Jwt,
}

/// Where the PEM public key comes from: one of `configMap` and `secret`, or neither.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthPublicKey {
    /// Name of a ConfigMap in the release's namespace holding the key; empty means none.
    pub config_map: String,
    /// Name of a Secret in the release's namespace holding the key; empty means none.
    pub secret: String,
    /// The entry of the ConfigMap or Secret whose value is the PEM document.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// The graceful shutdown sequence.
#[allow(clippy::struct_field_names)] // the unit is part of each value's name in values.yaml
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Shutdown {
    /// `SHUTDOWN_DRAIN_DELAY_SECONDS`: seconds `/readyz` reports 503 before the listener closes, so endpoints update.
    #[schemars(range(max = 300))]
    pub drain_delay_seconds: u32,
    /// `SHUTDOWN_TIMEOUT_SECONDS`: seconds in-flight requests get once accepting has stopped.
    #[schemars(range(max = 300))]
    pub timeout_seconds: u32,
    /// Seconds added to the grace period for flushing spans and the log file; also the
    /// OTLP export timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`), so one export fits in them.
    #[schemars(range(min = 1, max = 300))]
    pub flush_seconds: u32,
}

/// The three probes of the cart-service container.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probes {
    /// Startup probe on `/livez`: how long a new container may take to serve.
    pub startup: Probe,
    /// Liveness probe on `/livez`: restarts a container that stopped serving HTTP.
    pub liveness: Probe,
    /// Readiness probe on `/readyz`: takes a pod out of the Service while Redis is unreachable or it shuts down.
    pub readiness: Probe,
}

/// Timing of one HTTP probe.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    /// Seconds between probes.
    #[schemars(range(min = 1))]
    pub period_seconds: u32,
    /// Seconds before one probe times out.
    #[schemars(range(min = 1))]
    pub timeout_seconds: u32,
    /// Consecutive failures before Kubernetes acts.
    #[schemars(range(min = 1))]
    pub failure_threshold: u32,
}

/// Spreading pods across nodes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopologySpread {
    /// Prefer spreading cart-service pods across nodes (ScheduleAnyway: never blocks scheduling).
    pub enabled: bool,
    /// Largest allowed difference in pod count between two nodes.
    #[schemars(range(min = 1))]
    pub max_skew: u32,
}

/// The HorizontalPodAutoscaler.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Autoscaling {
    /// Create the HPA; the Deployment then has no `replicas` of its own.
    pub enabled: bool,
    /// Fewest replicas: at least 2, so losing one pod never loses the service.
    #[schemars(range(min = 2))]
    pub min_replicas: u32,
    /// Most replicas; must not be below `minReplicas`.
    #[schemars(range(min = 2))]
    pub max_replicas: u32,
    /// Target average CPU utilisation, percent of the CPU request.
    #[serde(rename = "targetCPUUtilizationPercentage")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: u32,
    /// Target average memory utilisation, percent of the memory request; 0 leaves memory out.
    #[schemars(range(max = 100))]
    pub target_memory_utilization_percentage: u32,
    /// Seconds of lower recommendations before the HPA scales down.
    #[schemars(range(max = 3600))]
    pub scale_down_stabilization_seconds: u32,
}

/// The PodDisruptionBudget.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodDisruptionBudget {
    /// Create it.
    pub enabled: bool,
    /// Pods that must stay available during voluntary disruptions (node drains); below the replica count.
    #[schemars(range(min = 1))]
    pub min_available: u32,
}

/// NetworkPolicies.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicy {
    /// Create them: cart pods take HTTP in and reach only Redis, the collector and DNS; Redis takes clients only from cart pods (and, in mode `cluster`, the other nodes and the hook Job).
    pub enabled: bool,
    /// Peers allowed to scrape redis_exporter's port 9121.
    pub metrics_from: Vec<NetworkPolicyPeer>,
    /// Extra egress rules for the cart pods, for example to an external OTLP endpoint.
    pub extra_egress: Vec<NetworkPolicyEgressRule>,
}

/// The Ingress.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ingress {
    /// Create it.
    pub enabled: bool,
    /// IngressClass name; empty uses the cluster's default class.
    pub class_name: String,
    /// Annotations, for example for the ingress controller or cert-manager.
    pub annotations: BTreeMap<String, String>,
    /// Host names and the path prefixes routed to the service.
    pub hosts: Vec<IngressHost>,
    /// TLS sections: `secretName` and `hosts`.
    pub tls: Vec<IngressTls>,
}

/// One host of the Ingress.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressHost {
    /// The host name.
    pub host: String,
    /// Path prefixes.
    pub paths: Vec<String>,
}

/// One TLS section of the Ingress.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressTls {
    /// Secret holding the certificate and key.
    pub secret_name: String,
    /// Hosts the certificate covers.
    pub hosts: Vec<String>,
}
