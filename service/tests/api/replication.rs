//! Writes that wait for a replica (`REDIS_WAIT_REPLICAS`), and scripts Redis has forgotten
//! (NOSCRIPT). Each test owns its Redis servers, because it pauses them or flushes scripts.

use std::time::{Duration, Instant};

use cart_test_support::app::{assert_problem, spawn_app_with};
use cart_test_support::poll::eventually;
use cart_test_support::redis::{RedisServer, redis_client, unique_user};
use redis::AsyncCommands as _;

const WAIT_TIMEOUT: Duration = Duration::from_millis(300);

/// The port of a `redis://127.0.0.1:<port>` URL.
fn port(url: &str) -> String {
    url.rsplit(':').next().expect("a port").to_owned()
}

/// A primary and a replica of it, once the replica has synchronised.
async fn primary_with_replica() -> (RedisServer, RedisServer) {
    let primary = RedisServer::start();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port(&primary.url())]);
    let mut client = redis_client(&replica.url()).await;
    eventually(Duration::from_secs(10), "the replica is in sync", || {
        let mut client = client.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut client)
                .await
                .unwrap_or_default();
            info.contains("master_link_status:up")
        }
    })
    .await;
    let _: () = redis::cmd("PING").query_async(&mut client).await.unwrap();
    (primary, replica)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_answered_once_a_replica_has_it_and_503_when_none_confirms_it() {
    let (primary, replica) = primary_with_replica().await;
    let app = spawn_app_with(&primary.url(), |config| {
        config.redis.wait_replicas = 1;
        config.redis.wait_timeout = WAIT_TIMEOUT;
    })
    .await;
    let user = unique_user();
    let mut on_replica = redis_client(&replica.url()).await;

    assert_eq!(app.add(&user, "p-1", 2).await.status(), 200);
    let held: Option<u32> = on_replica
        .hget(format!("cart:{{{user}}}"), "p-1")
        .await
        .unwrap();
    assert_eq!(
        held,
        Some(2),
        "the replica has the write when it is answered"
    );

    // SIGSTOP: the replica never acknowledges, as when it is lost or partitioned.
    replica.pause();
    let started = Instant::now();
    let unconfirmed = app.add(&user, "p-1", 1).await;
    let took = started.elapsed();
    let body = assert_problem(unconfirmed, 503).await;
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("no replica confirmed")),
        "{body}"
    );
    assert!(
        took >= WAIT_TIMEOUT && took < WAIT_TIMEOUT + Duration::from_secs(1),
        "the unconfirmed write took {took:?}"
    );
    let refused = app.add(&user, "p-1", 5000).await;
    assert_eq!(
        refused.status(),
        422,
        "a refusal changes nothing and needs no replica"
    );
    let started = Instant::now();
    assert_eq!(
        app.cart(&user).await["items"][0]["quantity"],
        3,
        "reads do not wait"
    );
    assert!(
        started.elapsed() < WAIT_TIMEOUT,
        "a read waited for a replica"
    );

    replica.resume();
    eventually(
        Duration::from_secs(5),
        "writes are answered 200 again",
        || async { app.add(&user, "p-2", 1).await.status() == 200 },
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_redis_has_forgotten_are_loaded_again() {
    let redis = RedisServer::start();
    let app = spawn_app_with(&redis.url(), |_| {}).await;
    let user = unique_user();
    assert_eq!(app.add(&user, "p-1", 1).await.status(), 200);

    let mut client = redis_client(&redis.url()).await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut client)
        .await
        .unwrap();
    let keyed = app
        .client
        .post(app.url(&format!("/v1/cart/{user}")))
        .header("Idempotency-Key", "after-flush")
        .json(&serde_json::json!({"product_id": "p-1", "quantity": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 200, "add after SCRIPT FLUSH");
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut client)
        .await
        .unwrap();
    let set = app
        .client
        .put(app.url(&format!("/v1/cart/{user}/items/p-1")))
        .json(&serde_json::json!({"quantity": 7}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200, "set after SCRIPT FLUSH");
    assert_eq!(app.cart(&user).await["items"][0]["quantity"], 7);
    app.stop().await;
}
