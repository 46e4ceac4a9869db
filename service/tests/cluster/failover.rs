//! A master killed under steady load: its replica takes over, and the service follows by
//! itself. Without `REDIS_WAIT_REPLICAS` the failed slots answer 503 for about the
//! failover's duration; with `REDIS_WAIT_REPLICAS=1` no acknowledged write is lost, and the
//! shard whose replica was promoted refuses writes until it has a replica again.

use std::time::Duration;

use cart_service::config::Config;
use cart_test_support::app::{TestApp, assert_problem, spawn_app_with};
use cart_test_support::cluster::RedisCluster;
use cart_test_support::poll::eventually;

use crate::load::Load;

/// The service on `cluster`, with carts that can hold every line the load adds.
pub async fn app_on(cluster: &RedisCluster, adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_with(&cluster.url(), |config| {
        config.cart.max_items = 100_000;
        adjust(config);
    })
    .await
}

/// After a second of load, kills the master of `user`'s cart and checks that `/readyz`
/// says so; returns once its replica serves, with the time that took from the kill.
async fn kill_the_master_of(cluster: &mut RedisCluster, app: &TestApp, user: &str) -> Duration {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let victim = cluster.master_of(&format!("cart:{{{user}}}"));
    cluster.kill(victim);
    assert_problem(app.get("/readyz").await, 503).await;
    let failover = cluster.wait_for_failover(victim).await;
    eprintln!(
        "node {victim} killed; its replica took over {:.2} s later",
        failover.as_secs_f64()
    );
    failover
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_fails_over_and_the_service_recovers_by_itself() {
    let mut cluster = RedisCluster::start();
    let app = app_on(&cluster, |_| {}).await;
    let load = Load::start(&app, "failover", false);

    let failover = kill_the_master_of(&mut cluster, &app, "failover-0").await;
    let recovered = eventually(Duration::from_secs(5), "/readyz is 200 again", || async {
        app.get("/readyz").await.status() == 200
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outcome = load.stop().await;
    let lost = outcome.lost(&app).await;
    eprintln!(
        "without REDIS_WAIT_REPLICAS: {}; ready {:.2} s after the failover; {} acknowledged \
         lines lost",
        outcome.summary(),
        recovered.as_secs_f64(),
        lost.len()
    );

    let failures = outcome.failures();
    assert!(
        failures.iter().all(|answer| answer.status == 503),
        "every failure is a 503: {}",
        outcome.summary()
    );
    assert!(
        outcome.failing_for() < failover + Duration::from_secs(3),
        "requests failed for longer than the failover took: {}",
        outcome.summary()
    );
    let end = outcome.answers.last().expect("answers").at;
    assert!(
        failures
            .last()
            .is_none_or(|answer| end - answer.at > Duration::from_secs(1)),
        "requests still fail after the failover: {}",
        outcome.summary()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_replicas_no_acknowledged_write_is_lost_in_a_failover() {
    let mut cluster = RedisCluster::start();
    let app = app_on(&cluster, |config| {
        config.redis.wait_replicas = 1;
        config.redis.wait_timeout = Duration::from_millis(250);
    })
    .await;
    let load = Load::start(&app, "durable", false);

    let victim = cluster.master_of("cart:{durable-0}");
    kill_the_master_of(&mut cluster, &app, "durable-0").await;
    // The promoted replica has no replica of its own: its shard refuses writes (503)
    // until the old master is back, as its replica.
    cluster.restart(victim);
    let rejoined = cluster.wait_until_ok().await;
    let writable = eventually(
        Duration::from_secs(10),
        "writes to the failed-over shard are answered 200",
        || async { app.add("durable-0", "probe", 1).await.status() == 200 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outcome = load.stop().await;
    let lost = outcome.lost(&app).await;
    eprintln!(
        "with REDIS_WAIT_REPLICAS=1: {}; old master back as a replica after {:.2} s, writes \
         answered again {:.2} s later; {} acknowledged lines lost",
        outcome.summary(),
        rejoined.as_secs_f64(),
        writable.as_secs_f64(),
        lost.len()
    );

    assert_eq!(
        lost,
        [] as [(String, String); 0],
        "acknowledged lines were lost"
    );
    assert!(
        outcome.failures().iter().all(|answer| answer.status == 503),
        "every failure is a 503: {}",
        outcome.summary()
    );
    app.stop().await;
}
