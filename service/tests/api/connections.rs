//! The HTTP layer under the router, over raw sockets: a connection with no request in
//! progress is closed after `HTTP_IDLE_TIMEOUT_MS` (also before its first byte, and over
//! HTTP/2), but never while a request is in progress; past `HTTP_MAX_CONNECTIONS` a new
//! connection is refused while the open ones are served. The request-head limits are in
//! [`head_limits`].

mod head_limits;
mod raw;

use std::time::{Duration, Instant};

use cart_test_support::app::{spawn_app_unready, spawn_app_with};
use cart_test_support::poll::eventually;
use cart_test_support::redis::shared_redis_url;
use http_body_util::Empty;
use hyper::body::Bytes;
use tokio::task::JoinSet;

use raw::{closed_within, connect, get};

/// The idle timeout of these tests; hyper's header-read timeout is set far past it, so
/// only the idle timer can close a connection in time.
const IDLE: Duration = Duration::from_millis(500);

/// How long past the timeout a loaded two-core machine may take to close every socket.
const SLACK: Duration = Duration::from_secs(10);

fn idle_config(config: &mut cart_service::Config) {
    config.http.idle_timeout = IDLE;
    config.http.header_read_timeout = Duration::from_mins(1);
}

#[tokio::test]
async fn connections_that_never_send_a_byte_are_closed_once_idle_for_the_timeout() {
    let app = spawn_app_with(&shared_redis_url(), idle_config).await;
    let mut sockets = JoinSet::new();

    for _ in 0..300 {
        // Taken before the connect, so before the server's accept starts the timer.
        let opened = Instant::now();
        let stream = connect(&app).await;
        sockets.spawn(async move {
            closed_within(stream, IDLE + SLACK)
                .await
                .map(|t| t - opened)
        });
    }
    let held: Vec<Option<Duration>> = sockets.join_all().await;

    let open = held.iter().filter(|h| h.is_none()).count();
    assert_eq!(
        open,
        0,
        "{open} of 300 silent sockets still open after {:?}",
        IDLE + SLACK
    );
    let shortest = held.iter().flatten().min().copied().unwrap_or_default();
    assert!(
        shortest >= IDLE,
        "a silent socket was closed after {shortest:?}, before {IDLE:?}"
    );
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_once_idle_for_the_timeout_after_its_request() {
    let app = spawn_app_with(&shared_redis_url(), idle_config).await;
    let mut stream = connect(&app).await;

    let asked = Instant::now();
    let answer = get(&mut stream, "/livez").await;
    let closed = closed_within(stream, IDLE + SLACK).await;

    assert_eq!(answer.map(|r| r.status), Some(200));
    let held = closed.expect("the idle keep-alive connection was closed") - asked;
    assert!(
        held >= IDLE,
        "closed {held:?} after the request, before {IDLE:?}"
    );
}

#[tokio::test]
async fn a_request_in_progress_longer_than_the_idle_timeout_is_answered() {
    let app = spawn_app_unready(&shared_redis_url(), idle_config, |routes| {
        routes.route("/slow", get_slow())
    })
    .await;
    app.wait_ready().await;
    let mut stream = connect(&app).await;

    let slow = get(&mut stream, "/slow").await;
    let after = get(&mut stream, "/livez").await;

    assert_eq!(slow.map(|r| (r.status, r.body)), Some((200, "slow".into())));
    assert_eq!(
        after.map(|r| r.status),
        Some(200),
        "the connection stayed open"
    );
}

fn get_slow() -> axum::routing::MethodRouter<cart_service::state::AppState> {
    axum::routing::get(|| async {
        tokio::time::sleep(IDLE * 3).await;
        "slow"
    })
}

#[tokio::test]
async fn an_http2_connection_is_closed_once_idle_for_the_timeout() {
    let app = spawn_app_with(&shared_redis_url(), idle_config).await;
    let (mut sender, connection) = raw::h2c(&app).await;

    let request = hyper::Request::get(app.url("/livez"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let asked = Instant::now();
    let response = sender
        .send_request(request)
        .await
        .expect("an HTTP/2 answer");
    let ended = tokio::time::timeout(IDLE + SLACK, connection).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    let result = ended.expect("the server closed the idle HTTP/2 connection");
    assert!(result.unwrap().is_ok(), "a clean close (GOAWAY)");
    let held = asked.elapsed();
    assert!(
        held >= IDLE,
        "closed {held:?} after the request, before {IDLE:?}"
    );
}

#[tokio::test]
async fn past_the_connection_cap_a_new_connection_is_refused_and_the_open_ones_are_served() {
    // Not waited ready: the harness's pooled client would hold one of the four places.
    let config = |c: &mut cart_service::Config| {
        c.http.max_connections = 4;
        c.http.header_read_timeout = Duration::from_mins(1);
    };
    let app = spawn_app_unready(&shared_redis_url(), config, |routes| routes).await;
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut stream = connect(&app).await;
        // An answer proves the server accepted it and holds one of the four places.
        assert_eq!(
            get(&mut stream, "/livez").await.map(|r| r.status),
            Some(200)
        );
        open.push(stream);
    }

    let refused = closed_within(connect(&app).await, SLACK).await;
    let mut answers = Vec::new();
    for stream in &mut open {
        answers.push(get(stream, "/livez").await.map(|r| r.status));
    }
    let metrics = get(&mut open[0], "/metrics")
        .await
        .expect("/metrics answer")
        .body;

    assert!(refused.is_some(), "the fifth connection was not closed");
    assert_eq!(answers, [Some(200); 4], "the open connections are served");
    assert!(
        metrics.contains("# HELP http_server_connections_refused_total "),
        "{metrics}"
    );
    assert!(refused_total(&metrics) >= 1, "{metrics}");
    drop(open.pop());
    eventually(
        SLACK,
        "a place freed by a closed connection is taken",
        || async {
            let mut stream = connect(&app).await;
            get(&mut stream, "/livez")
                .await
                .is_some_and(|r| r.status == 200)
        },
    )
    .await;
}

/// The value of `http_server_connections_refused_total` in a Prometheus text exposition.
fn refused_total(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("http_server_connections_refused_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}
