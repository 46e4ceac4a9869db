//! The live table `hpa-demo` prints: one row per change of the HorizontalPodAutoscaler,
//! computed from its spec (min, max, CPU target) and status (current and desired
//! replicas, measured CPU). A missing CPU measurement shows as `<unknown>`, as kubectl
//! shows it, which almost always means metrics-server is not installed or not ready yet.

use std::fmt;
use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, MetricTarget, MetricValueStatus};

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub elapsed: Duration,
    pub current: i32,
    pub desired: i32,
    pub min: i32,
    pub max: i32,
    /// Average CPU utilisation in percent of requests, when metrics-server reported one.
    pub cpu: Option<i32>,
    pub cpu_target: Option<i32>,
}

impl Row {
    pub fn from_hpa(hpa: &HorizontalPodAutoscaler, elapsed: Duration) -> Self {
        let spec = &hpa.spec;
        let status = hpa.status.as_ref();
        let cpu_target = spec
            .metrics
            .as_ref()
            .into_iter()
            .flatten()
            .filter_map(|metric| metric.resource.as_ref())
            .find(|resource| resource.name == "cpu")
            .and_then(|resource| utilization_target(&resource.target));
        let cpu = status
            .and_then(|status| status.current_metrics.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|metric| metric.resource.as_ref())
            .find(|resource| resource.name == "cpu")
            .and_then(|resource| utilization(&resource.current));
        Self {
            elapsed,
            current: status.and_then(|s| s.current_replicas).unwrap_or(0),
            desired: status.map_or(0, |s| s.desired_replicas),
            min: spec.min_replicas.unwrap_or(1),
            max: spec.max_replicas,
            cpu,
            cpu_target,
        }
    }

    /// The HPA runs as many replicas as it may.
    pub fn at_max(&self) -> bool {
        self.max > 0 && self.current >= self.max
    }

    /// The HPA wants fewer replicas than run: the scale-down has begun.
    pub fn scaling_down(&self) -> bool {
        self.desired < self.current
    }

    /// The header line above the rows.
    pub fn header() -> &'static str {
        "  time   replicas (current/desired, min..max)   cpu (current/target)"
    }
}

/// `   45s   3/5  (1..10)   cpu 87%/60%`.
impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let percent =
            |value: Option<i32>| value.map_or_else(|| "<unknown>".to_owned(), |v| format!("{v}%"));
        let replicas = format!("{}/{}", self.current, self.desired);
        let range = format!("({}..{})", self.min, self.max);
        write!(
            f,
            "  {:>4}s   {replicas:>5}  {range:<9}                   cpu {}/{}",
            self.elapsed.as_secs(),
            percent(self.cpu),
            percent(self.cpu_target)
        )
    }
}

fn utilization_target(target: &MetricTarget) -> Option<i32> {
    target.average_utilization
}

fn utilization(current: &MetricValueStatus) -> Option<i32> {
    current.average_utilization
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::needless_pass_by_value)] // tests: panic on failure; json! literals
mod tests {
    use serde_json::json;

    use super::*;

    fn hpa(status: serde_json::Value) -> HorizontalPodAutoscaler {
        serde_json::from_value(json!({
            "metadata": {"name": "cart-cart-service"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cart-cart-service"},
                "minReplicas": 1,
                "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 80}}},
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                ],
            },
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn row_reads_replicas_and_cpu_against_its_target() {
        let scaling = hpa(json!({
            "currentReplicas": 2, "desiredReplicas": 4,
            "currentMetrics": [
                {"type": "Resource", "resource": {"name": "memory", "current": {"averageUtilization": 30}}},
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 143, "averageValue": "143m"}}},
            ],
        }));

        let row = Row::from_hpa(&scaling, Duration::from_secs(45));

        assert_eq!(
            row,
            Row {
                elapsed: Duration::from_secs(45),
                current: 2,
                desired: 4,
                min: 1,
                max: 5,
                cpu: Some(143),
                cpu_target: Some(60)
            }
        );
        assert_eq!(
            row.to_string(),
            "    45s     2/4  (1..5)                      cpu 143%/60%"
        );
        assert!(!row.at_max() && !row.scaling_down());
    }

    #[test]
    fn row_without_cpu_metrics_shows_unknown_as_kubectl_does() {
        let no_metrics = hpa(json!({"currentReplicas": 1, "desiredReplicas": 1}));

        let row = Row::from_hpa(&no_metrics, Duration::from_secs(3));

        assert_eq!(row.cpu, None);
        assert!(row.to_string().ends_with("cpu <unknown>/60%"), "{row}");
    }

    #[test]
    fn row_knows_when_the_hpa_is_at_max_and_when_it_scales_down() {
        let at_max = Row::from_hpa(
            &hpa(json!({"currentReplicas": 5, "desiredReplicas": 5})),
            Duration::ZERO,
        );
        let shrinking = Row::from_hpa(
            &hpa(json!({"currentReplicas": 5, "desiredReplicas": 3})),
            Duration::ZERO,
        );

        assert!(at_max.at_max() && !at_max.scaling_down());
        assert!(shrinking.scaling_down());
    }

    #[test]
    fn row_of_an_hpa_without_status_is_zero_replicas() {
        let mut fresh = hpa(json!({"desiredReplicas": 0}));
        fresh.status = None;

        let row = Row::from_hpa(&fresh, Duration::ZERO);

        assert_eq!((row.current, row.desired, row.max), (0, 0, 5));
    }
}
