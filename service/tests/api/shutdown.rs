//! The shutdown sequence of the real binary on SIGTERM: readiness off, drain while still
//! accepting, stop accepting, let in-flight requests finish (idle keep-alive connections
//! are closed, not waited on) within `SHUTDOWN_TIMEOUT_SECONDS`, exit 0.
//!
//! Each test runs `cart-service` as a child process against the shared Redis, with its
//! log in a temp file that failing assertions quote; the child is killed on drop, so a
//! failing test leaves nothing running.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cart_test_support::cart_service_bin;
use cart_test_support::poll::eventually;
use cart_test_support::process::Service;
use cart_test_support::redis::unique_user;
use serde_json::json;

/// Slack on top of every shutdown deadline, for a loaded two-core machine.
const SLACK: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_zero() {
    // A small request and a shutdown timeout far past it: on a slow machine a longer one
    // outlived the default 5 s timeout and was cut off (the client saw IncompleteMessage).
    // Exiting within 5 s now also shows the process exits once the request is done,
    // instead of waiting the timeout out.
    let mut service =
        Service::start(cart_service_bin!(), &[("SHUTDOWN_TIMEOUT_SECONDS", "30")]).await;
    let stress = tokio::spawn(
        reqwest::Client::new()
            .post(service.url("/stress?cpu_iterations=100"))
            .send(),
    );
    wait_until_a_post_is_in_flight(&service).await;

    let signalled = service.terminate();
    let response = stress
        .await
        .expect("stress task")
        .expect("the stress request gets an answer");
    let (status, exited) = service.wait_exit(Duration::from_secs(10)).await;

    assert_eq!(response.status(), 200, "{}", service.log());
    let report: serde_json::Value = response.json().await.expect("stress body is JSON");
    assert_eq!(report["cpu_iterations"], 100, "{report}");
    assert!(status.success(), "exit status {status}: {}", service.log());
    let took = exited - signalled;
    assert!(took < Duration::from_secs(5) + SLACK, "exit took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_idle_keep_alive_connections_instead_of_waiting() {
    let mut service =
        Service::start(cart_service_bin!(), &[("SHUTDOWN_TIMEOUT_SECONDS", "5")]).await;
    let mut idle = TcpStream::connect(("127.0.0.1", service.port)).expect("connect to the service");
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    idle.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send a request");
    let first = read_response(&mut idle);
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    let signalled = service.terminate();
    let (status, exited) = service.wait_exit(Duration::from_secs(5) + SLACK).await;
    let after_shutdown = idle.read(&mut [0u8; 64]);

    assert!(status.success(), "exit status {status}: {}", service.log());
    let took = exited - signalled;
    assert!(
        took < Duration::from_secs(2),
        "exit took {took:?}: the idle connection was waited on"
    );
    assert_eq!(
        after_shutdown.ok(),
        Some(0),
        "the server closed the kept-alive connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_off_then_drains_then_stops_accepting_then_exits() {
    let mut service = Service::start(
        cart_service_bin!(),
        &[("SHUTDOWN_DRAIN_DELAY_SECONDS", "1")],
    )
    .await;
    // A fresh connection per request, so every answer proves the listener still accepts.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("build a client");
    let user = unique_user();
    // A request kept in flight by withholding half its body, so the process outlives the
    // drain and "stopped accepting" can be told apart from "exited".
    let body = json!({"product_id": "p-1", "quantity": 2}).to_string();
    let (head, tail) = body.split_at(body.len() / 2);
    let mut in_flight =
        TcpStream::connect(("127.0.0.1", service.port)).expect("connect to the service");
    in_flight
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    write!(
        in_flight,
        "POST /v1/cart/{user} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{head}",
        body.len()
    )
    .expect("send the request head");

    let signalled = service.terminate();
    let readiness_off = eventually_status(
        &client,
        &service.url("/readyz"),
        503,
        Duration::from_millis(500),
    )
    .await;
    let livez = client
        .get(service.url("/livez"))
        .send()
        .await
        .expect("/livez during the drain");
    let cart = client
        .get(service.url(&format!("/v1/cart/{user}")))
        .send()
        .await
        .expect("cart during the drain");
    let drained_until = signalled.elapsed();
    let refused_after =
        wait_until_refused(service.port, Duration::from_secs(1) + SLACK).await - signalled;
    let alive_when_refused = service.is_running();
    in_flight
        .write_all(tail.as_bytes())
        .expect("send the rest of the body");
    let finished = read_response(&mut in_flight);
    let (status, _) = service.wait_exit(SLACK).await;

    assert!(
        readiness_off,
        "/readyz did not turn 503 after SIGTERM: {}",
        service.log()
    );
    assert_eq!(livez.status(), 200, "/livez during the drain");
    assert_eq!(cart.status(), 200, "a cart request during the drain");
    assert!(
        drained_until < Duration::from_secs(1),
        "the checks ran past the drain delay ({drained_until:?})"
    );
    assert!(
        refused_after >= Duration::from_millis(900),
        "stopped accepting before the drain delay: {refused_after:?}"
    );
    assert!(
        alive_when_refused,
        "the process exited before the in-flight request finished: {}",
        service.log()
    );
    assert!(
        finished.starts_with("HTTP/1.1 200"),
        "the in-flight request: {finished}"
    );
    assert!(status.success(), "exit status {status}: {}", service.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_shutdown_timeout_does_not_keep_the_process_alive() {
    let mut service =
        Service::start(cart_service_bin!(), &[("SHUTDOWN_TIMEOUT_SECONDS", "1")]).await;
    // Seconds of CPU in a debug build: far past the 1 s deadline.
    let stress = tokio::spawn(
        reqwest::Client::new()
            .post(service.url("/stress?cpu_iterations=5000"))
            .send(),
    );
    wait_until_a_post_is_in_flight(&service).await;

    let signalled = service.terminate();
    let (status, exited) = service.wait_exit(Duration::from_secs(10)).await;
    let abandoned = stress.await.expect("stress task");

    assert!(status.success(), "exit status {status}: {}", service.log());
    let took = exited - signalled;
    assert!(
        took < Duration::from_secs(1) + SLACK,
        "exit took {took:?}, past SHUTDOWN_TIMEOUT_SECONDS=1: {}",
        service.log()
    );
    assert!(
        abandoned.is_err(),
        "the abandoned request got an answer: {abandoned:?}"
    );
}

/// Polls `url` until it answers `status`; false if it does not within `limit`.
async fn eventually_status(
    client: &reqwest::Client,
    url: &str,
    status: u16,
    limit: Duration,
) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status() == status)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Connects to `port` every 20 ms until the connection is refused; returns when it was.
async fn wait_until_refused(port: u16, limit: Duration) -> Instant {
    let started = Instant::now();
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_err() {
            return Instant::now();
        }
        assert!(
            started.elapsed() < limit,
            "port {port} still accepts connections after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads one HTTP/1.1 response (head and `Content-Length` body) from `stream`.
fn read_response(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let read = stream.read(&mut chunk).expect("read the response");
        assert!(
            read > 0,
            "connection closed mid-response: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&received);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|line| {
                    line.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .map_or(0, |v| v.parse::<usize>().expect("numeric Content-Length"));
            if received.len() >= head_end + 4 + length {
                return text.into_owned();
            }
        }
    }
}

/// Polls `/metrics` until the service is inside a POST handler: a fixed sleep let a loaded
/// machine signal before the request was read, and an unread request is closed, not served.
async fn wait_until_a_post_is_in_flight(service: &Service) {
    let client = reqwest::Client::new();
    eventually(
        Duration::from_secs(10),
        "a POST is in flight (http_server_active_requests)",
        || async {
            let metrics = client
                .get(service.url("/metrics"))
                .send()
                .await
                .expect("GET /metrics")
                .text()
                .await
                .expect("metrics text");
            metrics.lines().any(|line| {
                line.starts_with("http_server_active_requests{method=\"POST\"}")
                    && !line.ends_with(" 0")
            })
        },
    )
    .await;
}
