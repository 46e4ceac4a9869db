//! Redis faults, in-process: the service never waits for Redis at startup, answers a fast
//! 503 (never a hang) while Redis is dead or partitioned, and is serving again within a
//! second or two once Redis is back. Each test owns its own `redis-server`, because it
//! kills or pauses it.

use std::time::{Duration, Instant};

use cart_test_support::app::{TestApp, assert_problem, spawn_app_unready, spawn_app_with};
use cart_test_support::poll::{eventually, never};
use cart_test_support::redis::{RedisServer, unique_user};

/// The Redis response timeout these tests configure: low, so a hang would show quickly.
const RESPONSE_TIMEOUT_MS: u64 = 300;
/// The longest a failing request may take: the response timeout plus generous slack for a
/// loaded two-core machine. A hang (the request deadline is 10 s) is far past it.
const FAST_FAILURE: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_without_redis_serves_at_once_with_fast_503s() {
    let app = spawn_app_unready(&RedisServer::unused_url(), |_| {}, |routes| routes).await;
    let user = unique_user();

    let livez = app.get("/livez").await;
    let readyz = app.get("/readyz").await;
    let (cart, took) = timed(app.get(&format!("/v1/cart/{user}"))).await;

    assert_eq!(livez.status(), 200, "/livez never depends on Redis");
    assert_problem(readyz, 503).await;
    assert!(
        took < Duration::from_millis(500),
        "a cart request without Redis took {took:?}"
    );
    assert_unavailable(cart).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_redis_means_fast_503s_and_the_first_request_after_restart_succeeds() {
    let mut redis = RedisServer::start();
    let (app, user) = app_with_a_cart(&redis).await;

    redis.kill();
    for attempt in 1..=3 {
        let (response, took) = timed(app.get(&format!("/v1/cart/{user}"))).await;
        assert!(
            took < FAST_FAILURE,
            "request {attempt} with Redis dead took {took:?}"
        );
        assert_unavailable(response).await;
    }
    assert_problem(app.get("/readyz").await, 503).await;
    assert_eq!(
        app.get("/livez").await.status(),
        200,
        "/livez never depends on Redis"
    );

    redis.restart();
    let recovered = eventually(
        Duration::from_secs(1),
        "a cart request succeeds after the restart",
        || cart_answers_200(&app, &user),
    )
    .await;

    assert!(
        recovered < Duration::from_secs(1),
        "recovery took {recovered:?}"
    );
    eventually(Duration::from_secs(1), "/readyz is 200 again", || async {
        app.get("/readyz").await.status() == 200
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_redis_means_fast_503s_and_the_service_recovers_on_resume() {
    let redis = RedisServer::start();
    let (app, user) = app_with_a_cart(&redis).await;

    // SIGSTOP: the socket stays open and no reset ever arrives, as in a network partition.
    redis.pause();
    for attempt in 1..=5 {
        let (response, took) = timed(app.get(&format!("/v1/cart/{user}"))).await;
        assert!(
            took < FAST_FAILURE,
            "request {attempt} with Redis paused took {took:?}"
        );
        assert_unavailable(response).await;
    }
    let (readyz, took) = timed(app.get("/readyz")).await;
    assert!(
        took < FAST_FAILURE,
        "/readyz with Redis paused took {took:?}"
    );
    assert_problem(readyz, 503).await;

    redis.resume();
    eventually(
        Duration::from_secs(2),
        "a cart request succeeds after the resume",
        || cart_answers_200(&app, &user),
    )
    .await;

    assert_eq!(
        app.cart(&user).await["items"][0]["quantity"],
        1,
        "the data survived the pause"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_that_comes_up_after_the_service_makes_it_ready_within_a_second() {
    let mut redis = RedisServer::start();
    redis.kill();
    let app = spawn_app_unready(&redis.url(), |_| {}, |routes| routes).await;
    assert_problem(app.get("/readyz").await, 503).await;
    // Let five connection attempts fail (at about 0, 0.1, 0.3, 0.7 and 1.5 s), so the next
    // one is due 1.6 s later: only a request nudging the reconnect makes it within 1 s.
    tokio::time::sleep(Duration::from_millis(1600)).await;

    redis.restart();
    let ready = eventually(
        Duration::from_secs(1),
        "/readyz turns 200 once Redis is up",
        || async { app.get("/readyz").await.status() == 200 },
    )
    .await;

    assert!(ready < Duration::from_secs(1), "readiness took {ready:?}");
    app.stop().await;
}

/// Awaits `request`, also returning how long it took.
async fn timed(request: impl Future<Output = reqwest::Response>) -> (reqwest::Response, Duration) {
    let started = Instant::now();
    let response = request.await;
    (response, started.elapsed())
}

/// Asserts the response is the 503 problem a Redis outage gives, with `Retry-After`.
async fn assert_unavailable(response: reqwest::Response) {
    assert!(
        response.headers().contains_key("retry-after"),
        "503 without Retry-After: {:?}",
        response.headers()
    );
    assert_problem(response, 503).await;
}

async fn cart_answers_200(app: &TestApp, user: &str) -> bool {
    app.get(&format!("/v1/cart/{user}")).await.status() == 200
}

#[tokio::test]
async fn a_password_in_redis_url_authenticates_and_a_wrong_one_is_never_ready() {
    let redis = RedisServer::start_with(&["--requirepass", "s3cr3t"]);
    let port = redis.url().rsplit(':').next().unwrap().to_owned();
    let good = spawn_app_with(&format!("redis://:s3cr3t@127.0.0.1:{port}"), |_| {}).await;
    let bad = spawn_app_unready(&format!("redis://:wrong@127.0.0.1:{port}"), |_| {}, |r| r).await;
    let user = unique_user();

    let added = good.add(&user, "p-1", 1).await;
    never(
        Duration::from_millis(300),
        "the service with a wrong password becomes ready",
        || async { bad.get("/readyz").await.status() == 200 },
    )
    .await;
    let not_ready = bad.get("/readyz").await;
    let refused = bad.get(&format!("/v1/cart/{user}")).await;

    assert_eq!(added.status(), 200);
    assert_problem(not_ready, 503).await;
    let body = assert_problem(refused, 503).await;
    assert!(
        !body.to_string().contains("wrong"),
        "no password in the answer: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_connections_share_the_load_and_all_come_back_after_a_restart() {
    let mut redis = RedisServer::start();
    let app = spawn_app_with(&redis.url(), |c| {
        c.redis.connections = 3;
        c.redis.response_timeout = Duration::from_millis(300);
    })
    .await;
    let user = unique_user();
    let adds = futures_util::future::join_all((0..30).map(|_| app.add(&user, "p-1", 1))).await;
    assert!(adds.iter().all(|r| r.status() == 200));
    assert_eq!(app.cart(&user).await["total_quantity"], 30);

    redis.kill();
    let down = app.get(&format!("/v1/cart/{user}")).await;
    redis.restart();

    assert_eq!(down.status(), 503);
    eventually(
        Duration::from_secs(3),
        "ten requests in a row succeed on every connection",
        || async {
            for _ in 0..10 {
                if app.get(&format!("/v1/cart/{user}")).await.status() != 200 {
                    return false;
                }
            }
            true
        },
    )
    .await;
    assert!(
        app.state.store.connection().is_connected(),
        "all three connections are back"
    );
}

/// The service against `redis`, with a short response timeout and one cart that works.
async fn app_with_a_cart(redis: &RedisServer) -> (TestApp, String) {
    let app = spawn_app_with(&redis.url(), |c| {
        c.redis.response_timeout = Duration::from_millis(RESPONSE_TIMEOUT_MS);
    })
    .await;
    let user = unique_user();
    assert_eq!(
        app.add(&user, "p-1", 1).await.status(),
        200,
        "works before the fault"
    );
    (app, user)
}
