//! The operational routes: probes, `/metrics` and `/openapi.json` (`/stress` has its own
//! file).

use cart_test_support::app::{TestApp, spawn_app, spawn_app_with};
use cart_test_support::redis::{shared_redis_url, unique_user};

#[tokio::test]
async fn healthz_reports_redis_pod_node_and_version() {
    let app = spawn_app_with(&shared_redis_url(), |c| {
        c.pod.name = "cart-7d9f".into();
        c.pod.node = "node-a".into();
    })
    .await;

    let response = app.get("/healthz").await;

    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"status": "ok", "redis": "ok", "pod": "cart-7d9f", "node": "node-a",
                           "version": env!("CARGO_PKG_VERSION")})
    );
}

#[tokio::test]
async fn livez_and_readyz_answer_200_when_redis_is_up() {
    let app = spawn_app().await;

    assert_eq!(app.get("/livez").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
}

type Scrape = openmetrics_parser::MetricsExposition<
    openmetrics_parser::PrometheusType,
    openmetrics_parser::PrometheusValue,
>;

/// `/metrics`, parsed as Prometheus exposition text.
async fn scrape(app: &TestApp) -> Scrape {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    openmetrics_parser::prometheus::parse_prometheus(&text)
        .unwrap_or_else(|e| panic!("invalid Prometheus exposition ({e:?}):\n{text}"))
}

/// The summed value (histograms: count) of the family's samples whose labels include all of `labels`.
fn sample(scrape: &Scrape, family: &str, labels: &[(&str, &str)]) -> f64 {
    use openmetrics_parser::PrometheusValue as V;
    let Some(family) = scrape.families.get(family) else {
        return 0.0;
    };
    family
        .iter_samples()
        .filter(|s| {
            let set = s.get_labelset().unwrap();
            labels
                .iter()
                .all(|(k, v)| set.get_label_value(k) == Some(*v))
        })
        .map(|s| match &s.value {
            V::Counter(c) => c.value.as_f64(),
            V::Gauge(v) | V::Unknown(v) => v.as_f64(),
            #[allow(clippy::cast_precision_loss)]
            V::Histogram(h) => h.count.unwrap_or(0) as f64,
            V::Summary(_) => 0.0,
        })
        .sum::<f64>()
        + 0.0
}

#[tokio::test]
async fn metrics_parse_and_move_as_requests_are_made() {
    let app = spawn_app().await;
    let user = unique_user();
    let before = scrape(&app).await;

    app.add(&user, "p-1", 1).await;
    app.add(&user, "p-1", 0).await;
    let after = scrape(&app).await;

    let http = [
        ("http_route", "/v1/cart/{user_id}"),
        ("http_request_method", "POST"),
        ("http_response_status_code", "200"),
    ];
    let ops_ok = [("operation", "add_item"), ("outcome", "ok")];
    let ops_rejected = [("operation", "add_item"), ("outcome", "rejected")];
    for (metric, labels) in [
        ("http_server_request_duration_seconds", &http[..]),
        ("cart_operations_total", &ops_ok[..]),
        ("cart_operations_total", &ops_rejected[..]),
        (
            "redis_command_duration_seconds",
            &[("command", "EVALSHA")][..],
        ),
    ] {
        let (was, is) = (
            sample(&before, metric, labels),
            sample(&after, metric, labels),
        );
        assert!(
            is >= was + 1.0,
            "{metric} {labels:?} moved from {was} to {is}"
        );
    }
    let build_info = sample(
        &after,
        "build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
    );
    assert!(
        (build_info - 1.0).abs() < f64::EPSILON,
        "build_info {build_info}"
    );
    for family in after.families.values() {
        for s in family.iter_samples() {
            let set = s.get_labelset().unwrap();
            assert!(
                set.iter_values().all(|v| !v.contains(&user)),
                "raw paths never become labels"
            );
        }
    }
    assert!(after.families.contains_key("http_server_active_requests"));
}

#[tokio::test]
async fn openapi_describes_every_route_and_nothing_else() {
    let app = spawn_app().await;
    let expected = [
        ("post", "/v1/cart/{user_id}"),
        ("get", "/v1/cart/{user_id}"),
        ("delete", "/v1/cart/{user_id}"),
        ("put", "/v1/cart/{user_id}/items/{product_id}"),
        ("delete", "/v1/cart/{user_id}/items/{product_id}"),
        ("get", "/healthz"),
        ("get", "/livez"),
        ("get", "/readyz"),
        ("post", "/stress"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
    ];

    let response = app.get("/openapi.json").await;

    assert_eq!(response.status(), 200);
    let doc: serde_json::Value = response.json().await.unwrap();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    documented.sort();
    let mut wanted: Vec<(String, String)> = expected
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    wanted.sort();
    assert_eq!(documented, wanted);
    for (method, path) in &wanted {
        let url = app.url(
            &path
                .replace("{user_id}", "u-1")
                .replace("{product_id}", "p-1"),
        );
        let request = app
            .client
            .request(method.to_uppercase().parse().unwrap(), url);
        let status = request.send().await.unwrap().status().as_u16();
        assert!(
            status != 404 && status != 405,
            "{method} {path} is documented but answers {status}"
        );
    }
}
