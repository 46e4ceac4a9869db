//! The optional monitoring objects: the Grafana dashboard `ConfigMap` and the `PrometheusRule`
//! (off by default, on in `ci/monitoring-values.yaml`), their labels and the SLO values
//! that reach the rules. promtool checks the rules themselves (`chart validate`); the
//! service's tests check that every metric they name is one the service exports.

use std::collections::BTreeMap;
use std::io::Write as _;

use serde_json::Value;

use super::{CustomResource, Rendered, render, render_set, typed};
use crate::chart::CHART;

fn dashboard_config_map(rendered: &Rendered) -> Option<&k8s_openapi::api::core::v1::ConfigMap> {
    rendered
        .config_maps
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some("cart-cart-service-dashboard"))
}

fn labels(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> &BTreeMap<String, String> {
    meta.labels.as_ref().expect("labels")
}

/// Every rule of the `PrometheusRule`, as JSON objects.
fn rules(rule: &CustomResource) -> Vec<&Value> {
    rule.spec["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_array().expect("rules"))
        .collect()
}

/// Renders the chart with a values file holding `yaml` (for values `--set` cannot spell).
fn render_with(yaml: &str) -> Rendered {
    let mut file = tempfile::NamedTempFile::new().expect("temp values file");
    file.write_all(yaml.as_bytes()).expect("write values");
    let rendered = render(&[file.path().to_owned()], &[]).unwrap_or_else(|e| panic!("{e:#}"));
    typed(&rendered).unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn dashboard_rule_and_service_monitor_are_off_by_default() {
    let rendered = render_set("default", &[]);

    assert!(dashboard_config_map(&rendered).is_none());
    assert!(rendered.prometheus_rules.is_empty());
    assert!(rendered.service_monitors.is_empty());
}

#[test]
fn the_dashboard_config_map_carries_the_sidecar_label_and_the_dashboard_file() {
    let rendered = render_set("monitoring", &[]);

    let config_map = dashboard_config_map(&rendered).expect("a dashboard ConfigMap");
    assert_eq!(config_map.metadata.namespace.as_deref(), Some("cart"));
    assert_eq!(labels(&config_map.metadata)["grafana_dashboard"], "1");
    let data = config_map.data.as_ref().expect("data");
    let shipped: Value = serde_json::from_str(&data["cart-service.json"]).expect("JSON");
    let path = crate::workspace_root()
        .join(CHART)
        .join("dashboards/cart-service.json");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(shipped, file);
    assert_eq!(shipped["uid"], "cart-service");
}

#[test]
fn the_sidecar_label_namespace_extra_labels_and_annotations_come_from_values() {
    let rendered = render_set(
        "default",
        &[
            ("grafana.dashboard.enabled", "true"),
            ("grafana.dashboard.label", "example.com/dashboard"),
            ("grafana.dashboard.labelValue", "cart"),
            ("grafana.dashboard.namespace", "monitoring"),
            ("grafana.dashboard.labels.team", "shop"),
            ("grafana.dashboard.annotations.grafana_folder", "Shop"),
        ],
    );

    let config_map = dashboard_config_map(&rendered).expect("a dashboard ConfigMap");
    let labels = labels(&config_map.metadata);
    assert_eq!(labels["example.com/dashboard"], "cart");
    assert!(!labels.contains_key("grafana_dashboard"), "{labels:?}");
    assert_eq!(labels["team"], "shop");
    assert_eq!(config_map.metadata.namespace.as_deref(), Some("monitoring"));
    let annotations = config_map
        .metadata
        .annotations
        .as_ref()
        .expect("annotations");
    assert_eq!(annotations["grafana_folder"], "Shop");
}

#[test]
fn the_dashboard_finds_the_hpa_by_the_job_because_both_bear_the_service_name() {
    let rendered = render_set("default", &[]);

    let service = rendered
        .services
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("cart-cart-service"));
    let hpa = &rendered.hpas[0];

    assert!(
        service.is_some(),
        "the job of the chart's ServiceMonitor is the Service's name"
    );
    assert_eq!(hpa.metadata.name.as_deref(), Some("cart-cart-service"));
    let path = crate::workspace_root()
        .join(CHART)
        .join("dashboards/cart-service.json");
    let dashboard = std::fs::read_to_string(path).unwrap();
    assert!(dashboard.contains(r#"horizontalpodautoscaler=\"$job\""#));
}

#[test]
fn the_rule_records_both_ratios_over_every_window_and_alerts_on_both_slos_twice() {
    let rendered = render_set("monitoring", &[]);

    assert_eq!(rendered.prometheus_rules.len(), 1);
    let rule = &rendered.prometheus_rules[0];
    assert_eq!(rule.metadata.name.as_deref(), Some("cart-cart-service"));
    assert_eq!(rule.metadata.namespace.as_deref(), Some("cart"));
    let rules = rules(rule);
    for window in ["5m", "30m", "1h", "2h", "6h", "1d", "3d"] {
        for ratio in ["errors", "slow"] {
            let name = format!("cart_service:http_request_{ratio}:ratio_rate{window}");
            let recorded = rules.iter().find(|r| r["record"] == name.as_str());
            let expr = recorded.unwrap_or_else(|| panic!("no {name}"))["expr"]
                .as_str()
                .unwrap();
            assert!(
                expr.contains(r#"job="cart-cart-service",namespace="cart",http_route=~"/v1/.+""#),
                "{name}: {expr}"
            );
        }
    }
    let alerts: Vec<(&str, &str)> = rules
        .iter()
        .filter_map(|r| Some((r["alert"].as_str()?, r["labels"]["severity"].as_str()?)))
        .collect();
    assert_eq!(
        alerts,
        [
            ("CartServiceErrorBudgetBurn", "critical"),
            ("CartServiceErrorBudgetBurnSlow", "warning"),
            ("CartServiceLatencyBudgetBurn", "critical"),
            ("CartServiceLatencyBudgetBurnSlow", "warning"),
        ]
    );
}

#[test]
fn slo_targets_threshold_selector_and_labels_come_from_values() {
    let rendered = render_with(
        r#"
prometheusRule:
  enabled: true
  labels: {release: prometheus}
  selector: 'job="cart",namespace="shop"'
  alertLabels: {team: shop}
  runbookUrl: https://example.com/runbook
  slo:
    availability: {target: 99.5}
    latency: {target: 95, thresholdSeconds: 1}
"#,
    );

    let rule = &rendered.prometheus_rules[0];
    assert_eq!(labels(&rule.metadata)["release"], "prometheus");
    let rules = rules(rule);
    let expr = |key: &str, name: &str| -> String {
        let found = rules
            .iter()
            .find(|r| r[key] == name)
            .unwrap_or_else(|| panic!("no {name}"));
        found["expr"].as_str().unwrap().to_owned()
    };
    let slow = expr("record", "cart_service:http_request_slow:ratio_rate5m");
    assert!(
        slow.contains(r#"{job="cart",namespace="shop",http_route=~"/v1/.+""#),
        "{slow}"
    );
    assert!(slow.contains(r"le=~`1(\.0)?`"), "{slow}");
    assert!(expr("alert", "CartServiceErrorBudgetBurn").contains("(14.4 * (1 - 99.5 / 100))"));
    assert!(expr("alert", "CartServiceLatencyBudgetBurnSlow").contains("(3 * (1 - 95 / 100))"));
    for alert in rules.iter().filter(|r| r.get("alert").is_some()) {
        assert_eq!(alert["labels"]["team"], "shop", "{alert}");
        assert_eq!(
            alert["annotations"]["runbook_url"],
            "https://example.com/runbook"
        );
    }
}

/// `helm template` with `sets` must fail, and Helm's own message must contain `named`
/// (the invocation echoed in the error names the value too, so it is left out).
fn assert_rejected(sets: &[(&str, &str)], named: &str) {
    let error = render(&[], sets)
        .map(|_| ())
        .expect_err("helm accepted bad values");
    let message = format!("{error:#}");
    let helm_says = message.split_once("failed:").map_or("", |(_, rest)| rest);
    assert!(
        helm_says.contains(named),
        "the error does not name {named}: {message}"
    );
}

#[test]
fn bad_monitoring_values_fail_helm_with_a_message_naming_the_value() {
    assert_rejected(
        &[("prometheusRule.slo.latency.thresholdSeconds", "0.3")],
        "/prometheusRule/slo/latency/thresholdSeconds",
    );
    assert_rejected(
        &[("prometheusRule.slo.availability.target", "100")],
        "/prometheusRule/slo/availability/target",
    );
    assert_rejected(
        &[("prometheusRule.selector", "{job}")],
        "/prometheusRule/selector",
    );
    assert_rejected(
        &[("grafana.dashboard.label", "a label")],
        "/grafana/dashboard/label",
    );
    assert_rejected(
        &[("grafana.dashboard.enabled", "yes")],
        "/grafana/dashboard/enabled",
    );
}
