//! Log lines written inside a request carry that request's trace and span ids.

use std::time::Duration;

use cart_test_support::app::spawn_app;
use cart_test_support::poll::eventually;
use cart_test_support::redis::unique_user;

use crate::support::{captured, get_cart_with_traceparent, log_lines, spans_of, trace_id_of};

#[tokio::test]
async fn the_access_log_line_carries_the_trace_id_of_the_request() {
    captured();
    let app = spawn_app().await;
    let user = unique_user();

    let response = app.add(&user, "p-1", 1).await;
    let trace_id = trace_id_of(&response);

    let access = access_line(&trace_id).await;
    assert_eq!(access["message"], "request");
    assert_eq!(access["method"], "POST");
    assert_eq!(access["route"], "/v1/cart/{user_id}");
    assert_eq!(access["status"], 200);
    assert_eq!(access["level"], "INFO");
    let latency_ms = access["latency_ms"]
        .as_f64()
        .expect("latency_ms is a float");
    let microseconds = latency_ms * 1000.0;
    assert!(
        latency_ms > 0.0 && (microseconds - microseconds.round()).abs() < 1e-6,
        "latency in milliseconds to the microsecond: {latency_ms}"
    );
    let timestamp = access["timestamp"].as_str().unwrap();
    assert!(
        timestamp.ends_with('Z') && timestamp.contains('T'),
        "RFC 3339 UTC: {timestamp}"
    );
    let span_ids: Vec<String> = spans_of(&trace_id)
        .iter()
        .map(|s| s.span_context.span_id().to_string())
        .collect();
    assert!(
        span_ids.contains(&access["span_id"].as_str().unwrap().to_owned()),
        "span_id {} in {span_ids:?}",
        access["span_id"]
    );
}

#[tokio::test]
async fn an_unsampled_request_logs_the_ids_its_traceparent_header_names() {
    captured();
    let app = spawn_app().await;
    let trace_id = "0af7651916cd43dd8448eb211c80319c";

    let (_, header) =
        get_cart_with_traceparent(&app, &format!("00-{trace_id}-b7ad6b7169203331-00")).await;
    let span_id = header.split('-').nth(2).unwrap();

    let access = access_line(trace_id).await;
    assert_eq!(
        access["span_id"], span_id,
        "the response's span id: {header}"
    );
    assert_ne!(
        span_id, "b7ad6b7169203331",
        "a span id of its own, not the caller's"
    );
    assert!(spans_of(trace_id).is_empty(), "and no span is exported");
}

#[tokio::test]
async fn client_errors_log_at_warn_and_lines_outside_requests_have_no_trace_id() {
    captured();
    let app = spawn_app().await;

    let response = app.add(&unique_user(), "p-1", 0).await;
    let trace_id = trace_id_of(&response);
    tracing::info!(target: "outside", "not in a request");

    let access = access_line(&trace_id).await;
    let lines = log_lines();
    assert_eq!(access["level"], "WARN");
    let outside = lines.iter().find(|l| l["target"] == "outside").unwrap();
    assert!(outside.get("trace_id").is_none(), "{outside}");
}

/// Waits for the access line of the request with `trace_id`, and returns it.
async fn access_line(trace_id: &str) -> serde_json::Value {
    let is_access = |l: &serde_json::Value| l["trace_id"] == trace_id && l["target"] == "access";
    eventually(
        Duration::from_secs(5),
        "the access line is logged",
        || async { log_lines().iter().any(is_access) },
    )
    .await;
    log_lines().into_iter().find(is_access).unwrap()
}
