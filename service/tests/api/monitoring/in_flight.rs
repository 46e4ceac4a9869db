//! `http_server_active_requests` counts requests the service is still working on, so a
//! request whose client went away stops counting at once, not never.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use cart_test_support::cart_service_bin;
use cart_test_support::poll::eventually;
use cart_test_support::process::Service;
use cart_test_support::redis::{RedisServer, unique_user};

/// The POST in-flight gauge as `/metrics` shows it.
async fn posts_in_flight(service: &Service) -> f64 {
    let metrics = reqwest::get(service.url("/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("http_server_active_requests{method=\"POST\"} "))
        .map_or(0.0, |value| value.parse().expect("a gauge value"))
}

#[tokio::test]
async fn a_request_whose_client_disconnects_leaves_the_in_flight_gauge() {
    // A paused Redis and a long response timeout hold the POST inside its handler.
    let redis = RedisServer::start();
    let service = Service::start(
        cart_service_bin!(),
        &[
            ("REDIS_URL", &redis.url()),
            ("REDIS_RESPONSE_TIMEOUT_MS", "30000"),
            ("REQUEST_TIMEOUT_MS", "60000"),
        ],
    )
    .await;
    redis.pause();

    let body = r#"{"product_id":"p-1","quantity":1}"#;
    let address = service.url("");
    let mut client =
        TcpStream::connect(address.trim_start_matches("http://")).expect("connect to the service");
    write!(
        client,
        "POST /v1/cart/{} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        unique_user(),
        body.len()
    )
    .expect("send the request");
    eventually(Duration::from_secs(10), "the POST is in flight", || async {
        posts_in_flight(&service).await >= 1.0
    })
    .await;

    drop(client);

    eventually(
        Duration::from_secs(10),
        "the gauge is back to 0 while Redis is still paused",
        || async { posts_in_flight(&service).await == 0.0 },
    )
    .await;
    redis.resume();
}
