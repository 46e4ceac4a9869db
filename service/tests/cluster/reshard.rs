//! Slots moved between masters (`redis-cli --cluster reshard`) while load runs: redis-rs
//! follows the MOVED and ASK redirections and retries TRYAGAIN, so no request fails.

use std::time::Duration;

use cart_test_support::cluster::RedisCluster;

use crate::failover::app_on;
use crate::load::Load;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_under_load_fails_no_request_and_loses_no_line() {
    let cluster = RedisCluster::start();
    let app = app_on(&cluster, |_| {}).await;
    // Keyed adds: each script touches the cart and an idempotency record, two keys of one
    // slot, the case a half-migrated slot answers TRYAGAIN to.
    let load = Load::start(&app, "reshard", true);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let masters = cluster.slot_map().masters();
    let (from, to) = (masters[0], masters[1]);
    let before = cluster.slot_map().slots_of(to).len();
    let took = cluster.start_reshard(from, to, 2000).await.wait().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcome = load.stop().await;
    let lost = outcome.lost(&app).await;
    eprintln!(
        "2000 slots moved in {:.2} s under load: {}; {} acknowledged lines lost",
        took.as_secs_f64(),
        outcome.summary(),
        lost.len()
    );

    assert_eq!(
        cluster.slot_map().slots_of(to).len(),
        before + 2000,
        "slots moved"
    );
    assert!(outcome.failures().is_empty(), "{}", outcome.summary());
    assert_eq!(
        lost,
        [] as [(String, String); 0],
        "acknowledged lines were lost"
    );
    app.stop().await;
}
