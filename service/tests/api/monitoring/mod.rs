//! `/metrics` as operators meet it: every metric family the service exports has its
//! `# HELP`, and every metric the chart's Grafana dashboard and SLO rules query is one the
//! service really exports (kube-state-metrics' names excepted, by an explicit list), so a
//! renamed metric cannot leave an empty panel or an alert that never fires.

mod exposition;
mod in_flight;
mod queries;

use std::collections::{BTreeMap, BTreeSet};

use cart_test_support::app::{TestApp, spawn_app};
use cart_test_support::redis::unique_user;

use exposition::Exposition;
use queries::{dashboard_queries, metric_names, recorded_names, rule_queries};

/// Metrics the dashboard reads from kube-state-metrics, not from the service.
const KUBE_STATE_METRICS: [&str; 4] = [
    "kube_horizontalpodautoscaler_status_current_replicas",
    "kube_horizontalpodautoscaler_status_desired_replicas",
    "kube_horizontalpodautoscaler_spec_min_replicas",
    "kube_horizontalpodautoscaler_spec_max_replicas",
];

/// Every family the service is meant to export, once each kind of request has been made.
const FAMILIES: [&str; 6] = [
    "http_server_request_duration_seconds",
    "http_server_active_requests",
    "cart_operations_total",
    "redis_command_duration_seconds",
    "log_lines_dropped_total",
    "build_info",
];

/// The chart, whose dashboard and rules the tests read.
pub const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/cart-service");

#[tokio::test]
async fn every_exported_metric_family_has_a_help_line() {
    let app = spawn_app().await;

    let exposition = exercise_and_scrape(&app).await;

    for family in FAMILIES {
        assert!(
            exposition.types.contains_key(family),
            "{family} is not exported"
        );
    }
    for sample in &exposition.samples {
        assert!(
            exposition.family_of(sample).is_some(),
            "{sample} has no # TYPE"
        );
    }
    let undescribed: Vec<&String> = exposition
        .types
        .keys()
        .filter(|family| exposition.helps.get(*family).is_none_or(String::is_empty))
        .collect();
    assert!(undescribed.is_empty(), "no # HELP for {undescribed:?}");
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_rules_query_is_exported() {
    let app = spawn_app().await;
    let (dashboard, rules) = (dashboard_queries(), rule_queries());
    let recorded = recorded_names();

    let exposition = exercise_and_scrape(&app).await;

    let used: BTreeMap<String, &str> = dashboard
        .iter()
        .map(|q| (q, "dashboard"))
        .chain(rules.iter().map(|q| (q, "rules")))
        .flat_map(|(query, source)| metric_names(query).into_iter().map(move |n| (n, source)))
        .collect();
    assert!(
        used.len() >= FAMILIES.len(),
        "too few names found: {used:?}"
    );
    let unknown: Vec<(&String, &&str)> = used
        .iter()
        .filter(|(name, _)| {
            !exposition.samples.contains(*name)
                && !KUBE_STATE_METRICS.contains(&name.as_str())
                && !recorded.contains(*name)
        })
        .collect();
    assert!(unknown.is_empty(), "queried but not exported: {unknown:?}");
    for name in KUBE_STATE_METRICS {
        assert!(
            used.contains_key(name),
            "{name} is exempt but no query uses it"
        );
    }
}

#[tokio::test]
async fn every_exported_metric_family_is_on_the_dashboard() {
    let app = spawn_app().await;
    let used: BTreeSet<String> = dashboard_queries()
        .iter()
        .flat_map(|q| metric_names(q))
        .collect();

    let exposition = exercise_and_scrape(&app).await;

    let missing: Vec<&String> = exposition
        .types
        .keys()
        .filter(|family| {
            !used
                .iter()
                .any(|name| exposition.family_of(name).as_deref() == Some(family.as_str()))
        })
        .collect();
    assert!(missing.is_empty(), "not on the dashboard: {missing:?}");
}

#[tokio::test]
async fn the_latency_thresholds_the_chart_allows_are_the_exported_bucket_bounds() {
    let app = spawn_app().await;
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{CHART}/values.schema.json")).unwrap(),
    )
    .unwrap();
    let allowed: Vec<f64> = schema
        .pointer("/properties/prometheusRule/properties/slo/properties/latency/properties/thresholdSeconds/enum")
        .and_then(serde_json::Value::as_array)
        .expect("thresholdSeconds has an enum")
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();

    let exposition = exercise_and_scrape(&app).await;

    let bounds: BTreeSet<String> = exposition
        .bucket_bounds("http_server_request_duration_seconds_bucket")
        .into_iter()
        .filter(|le| le != "+Inf")
        .collect();
    let mut exported: Vec<f64> = bounds.iter().map(|le| le.parse().unwrap()).collect();
    exported.sort_by(f64::total_cmp);
    assert_eq!(allowed, exported);
}

/// Makes a request of each kind, so every metric has a sample, then scrapes `/metrics`.
async fn exercise_and_scrape(app: &TestApp) -> Exposition {
    let user = unique_user();
    assert_eq!(app.add(&user, "p-1", 2).await.status(), 200);
    assert_eq!(app.add(&user, "p-1", 0).await.status(), 422);
    app.cart(&user).await;
    let item = app.url(&format!("/v1/cart/{user}/items/p-1"));
    let body = serde_json::json!({"quantity": 3});
    assert_eq!(
        app.client
            .put(&item)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(app.client.delete(&item).send().await.unwrap().status(), 204);
    let cart = app.url(&format!("/v1/cart/{user}"));
    assert_eq!(app.client.delete(&cart).send().await.unwrap().status(), 204);
    for path in [
        "/healthz",
        "/livez",
        "/readyz",
        "/openapi.json",
        "/no-such-route",
    ] {
        app.get(path).await;
    }
    let stress = app.url("/stress?cpu_iterations=1");
    app.client.post(&stress).send().await.unwrap();

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    Exposition::parse(&response.text().await.unwrap())
}
