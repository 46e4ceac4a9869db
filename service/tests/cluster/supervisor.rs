//! The connection supervisor's promises in cluster mode: startup never waits for the
//! cluster, requests fail fast (503) while no node answers, and the service is serving
//! again by itself once the cluster is back.

use std::time::{Duration, Instant};

use cart_test_support::app::{assert_problem, spawn_app_unready, spawn_app_with};
use cart_test_support::cluster::RedisCluster;
use cart_test_support::poll::eventually;

/// The response timeout these tests configure; a request for a cluster that does not
/// answer fails within twice it (redis-rs's retries included), plus slack for a busy
/// two-core machine.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(300);
const FAST_FAILURE: Duration = Duration::from_millis(1500);

fn kill_all(cluster: &mut RedisCluster) {
    for node in 0..RedisCluster::NODES {
        cluster.kill(node);
    }
}

async fn restart_all(cluster: &mut RedisCluster) {
    for node in 0..RedisCluster::NODES {
        cluster.restart(node);
    }
    cluster.wait_until_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_without_the_cluster_serves_at_once_and_is_ready_once_it_is_up() {
    let mut cluster = RedisCluster::start();
    kill_all(&mut cluster);
    let app = spawn_app_unready(
        &cluster.url(),
        |config| config.redis.response_timeout = RESPONSE_TIMEOUT,
        |routes| routes,
    )
    .await;

    assert_eq!(app.get("/livez").await.status(), 200);
    let started = Instant::now();
    assert_problem(app.get("/readyz").await, 503).await;
    assert_problem(app.get("/v1/cart/nobody").await, 503).await;
    assert!(
        started.elapsed() < FAST_FAILURE,
        "took {:?}",
        started.elapsed()
    );

    restart_all(&mut cluster).await;
    let ready = eventually(
        Duration::from_secs(5),
        "the service becomes ready",
        || async { app.get("/readyz").await.status() == 200 },
    )
    .await;
    eprintln!("ready {:.2} s after the cluster", ready.as_secs_f64());
    assert_eq!(app.add("early-user", "p-1", 1).await.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_outage_gives_fast_503s_and_the_service_recovers_by_itself() {
    let mut cluster = RedisCluster::start();
    let app = spawn_app_with(&cluster.url(), |config| {
        config.redis.response_timeout = RESPONSE_TIMEOUT;
    })
    .await;
    assert_eq!(app.add("outage-user", "p-1", 1).await.status(), 200);

    kill_all(&mut cluster);
    for attempt in 1..=3 {
        let started = Instant::now();
        let response = app.add("outage-user", "p-2", 1).await;
        let took = started.elapsed();
        assert_problem(response, 503).await;
        assert!(took < FAST_FAILURE, "request {attempt} took {took:?}");
    }
    assert_problem(app.get("/readyz").await, 503).await;

    restart_all(&mut cluster).await;
    let recovered = eventually(Duration::from_secs(10), "an add succeeds again", || async {
        app.add("outage-user", "p-3", 1).await.status() == 200
    })
    .await;
    eprintln!(
        "serving {:.2} s after the cluster was back",
        recovered.as_secs_f64()
    );
    eventually(Duration::from_secs(5), "/readyz is 200 again", || async {
        app.get("/readyz").await.status() == 200
    })
    .await;
    app.stop().await;
}
