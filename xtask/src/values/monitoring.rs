//! Values of the optional monitoring objects: the Prometheus Operator's ServiceMonitor and
//! PrometheusRule (SLO recording rules and burn-rate alerts), and the Grafana dashboard
//! ConfigMap. All three are off by default, since each needs something in the cluster
//! (the operator's CRDs, Grafana's dashboard sidecar) that the chart does not install.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Kubernetes label key, optionally prefixed (`example.com/name`).
const LABEL_KEY_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";

/// A Kubernetes label value (63 characters at most, possibly empty).
const LABEL_VALUE_PATTERN: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$";

/// The ServiceMonitor.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceMonitor {
    /// Create it (needs the Prometheus Operator's CRDs).
    pub enabled: bool,
    /// Scrape interval, for example `30s`.
    #[schemars(pattern(r"^[0-9]+(ms|s|m|h)$"))]
    pub interval: String,
    /// Extra labels, for Prometheus's `serviceMonitorSelector`.
    pub labels: BTreeMap<String, String>,
}

/// Grafana.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Grafana {
    /// The cart-service dashboard, as a ConfigMap for Grafana's dashboard sidecar.
    pub dashboard: GrafanaDashboard,
}

/// The dashboard ConfigMap.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrafanaDashboard {
    /// Ship the dashboard (request rate, errors, latency, Redis latency, in-flight requests, dropped log lines, HPA replicas) for Grafana's sidecar to load.
    pub enabled: bool,
    /// Label key the sidecar selects dashboards by (its `label` setting).
    #[schemars(pattern(LABEL_KEY_PATTERN))]
    pub label: String,
    /// Value of that label (the sidecar's `labelValue`).
    #[schemars(pattern(LABEL_VALUE_PATTERN))]
    pub label_value: String,
    /// Namespace of the ConfigMap, for a sidecar that watches one namespace; empty means the release namespace.
    #[schemars(pattern(r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)?$"))]
    pub namespace: String,
    /// Extra labels on the ConfigMap.
    pub labels: BTreeMap<String, String>,
    /// Annotations on the ConfigMap, for example the sidecar's folder annotation.
    pub annotations: BTreeMap<String, String>,
}

/// The PrometheusRule.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusRule {
    /// Create it: recording rules for the error and slow-request ratios, and multi-window multi-burn-rate alerts on both SLOs (needs the Prometheus Operator's CRDs).
    pub enabled: bool,
    /// Extra labels, for Prometheus's `ruleSelector`.
    pub labels: BTreeMap<String, String>,
    /// PromQL label matchers that select the service's series, such as `job="cart",namespace="shop"`; empty means the release's job and namespace, as the chart's ServiceMonitor scrapes them.
    #[schemars(pattern(r"^[^{}]*$"))]
    pub selector: String,
    /// Extra labels on every alert, for example a team to route by.
    pub alert_labels: BTreeMap<String, String>,
    /// Runbook linked from every alert (`runbook_url` annotation); empty leaves it out.
    #[schemars(pattern(r"^(https?://.+)?$"))]
    pub runbook_url: String,
    /// The service level objectives, each over a 30-day window.
    pub slo: Slo,
}

/// The service level objectives of the cart API (`/v1/...` routes; probes, `/metrics` and `/stress` are left out).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Slo {
    /// Requests answered without a server error.
    pub availability: AvailabilitySlo,
    /// Requests answered fast enough.
    pub latency: LatencySlo,
}

/// The availability SLO.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AvailabilitySlo {
    /// Percent of requests answered without a 5xx; the rest is the error budget the alerts watch.
    #[schemars(range(min = 50.0, max = 99.999))]
    pub target: f64,
}

/// The latency SLO.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LatencySlo {
    /// Percent of requests answered within `thresholdSeconds`.
    #[schemars(range(min = 50.0, max = 99.999))]
    pub target: f64,
    /// The latency threshold in seconds: one of the bucket bounds of `http_server_request_duration_seconds`, since the rules count requests from the bucket at that bound.
    #[schemars(extend("enum" = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]))]
    pub threshold_seconds: f64,
}
