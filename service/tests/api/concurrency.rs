//! Concurrency exactness: the Lua scripts never lose or over-count an item, and the caps
//! hold under concurrent writers.

use std::time::Duration;

use cart_service::config::Config;
use cart_service::store::RedisConnection;
use futures_util::future::join_all;
use serde_json::json;

use cart_test_support::app::{spawn_app, spawn_app_with};
use cart_test_support::poll::eventually;
use cart_test_support::redis::{RedisServer, redis_client, shared_redis_url, unique_user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_adds_to_one_line_total_exactly_fifty() {
    let app = spawn_app().await;
    let user = unique_user();

    let statuses = join_all((0..50).map(|_| app.add(&user, "p-1", 1))).await;

    assert!(
        statuses.iter().all(|r| r.status() == 200),
        "every add succeeded"
    );
    assert_eq!(
        app.cart(&user).await["items"],
        json!([{"product_id": "p-1", "quantity": 50}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_adds_never_pass_the_quantity_cap() {
    let app = spawn_app_with(&shared_redis_url(), |c| c.cart.max_quantity = 30).await;
    let user = unique_user();

    let responses = join_all((0..100).map(|_| app.add(&user, "p-1", 1))).await;

    let accepted = responses.iter().filter(|r| r.status() == 200).count();
    let rejected = responses.iter().filter(|r| r.status() == 422).count();
    assert_eq!((accepted, rejected), (30, 70));
    assert_eq!(app.cart(&user).await["total_quantity"], 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_new_lines_never_pass_the_item_cap() {
    let app = spawn_app_with(&shared_redis_url(), |c| c.cart.max_items = 10).await;
    let user = unique_user();

    let responses = join_all((0..100).map(|i| {
        let product = format!("p-{i}");
        let user = user.clone();
        let app = &app;
        async move { app.add(&user, &product, 1).await }
    }))
    .await;

    let accepted = responses.iter().filter(|r| r.status() == 200).count();
    assert_eq!(accepted, 10);
    let cart = app.cart(&user).await;
    assert_eq!(cart["items"].as_array().map(Vec::len), Some(10));
    assert_eq!(cart["total_quantity"], 10);
}

/// The connection's reason to exist: commands that handlers issue together reach Redis
/// together. On a one-worker runtime (a pod of the chart) tokio runs a just-woken task
/// next, so without coalescing redis-rs's connection task wrote each command alone and
/// Redis read 64 times for 64 commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn commands_issued_together_reach_redis_in_a_few_reads() {
    let redis = RedisServer::start();
    let mut config = Config::for_local(&redis.url());
    config.redis.connections = 1;
    let connection = RedisConnection::start(&config).unwrap();
    eventually(Duration::from_secs(5), "connected", || async {
        connection.is_connected()
    })
    .await;
    let mut probe = redis_client(&redis.url()).await;
    let reads = |info: String| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix("total_reads_processed:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("INFO stats has total_reads_processed")
    };
    let mut info_stats = redis::cmd("INFO");
    info_stats.arg("stats");
    let before = reads(info_stats.query_async(&mut probe).await.unwrap());

    // Spawned from a task on the worker, as a request's handler would be.
    let issuing = connection.clone();
    tokio::spawn(async move {
        let commands = (0..64).map(|_| {
            let connection = issuing.clone();
            tokio::spawn(async move {
                connection
                    .run("PING", |mut c| async move {
                        redis::cmd("PING").query_async::<()>(&mut c).await
                    })
                    .await
            })
        });
        for result in join_all(commands).await {
            result.unwrap().unwrap();
        }
    })
    .await
    .unwrap();

    let after = reads(info_stats.query_async(&mut probe).await.unwrap());
    // The probe's own INFO is one of the reads.
    let reads_for_64 = after - before - 1;
    assert!(
        reads_for_64 <= 8,
        "64 commands took {reads_for_64} reads in Redis: they were not written together"
    );
}
