//! Concurrency exactness: the Lua scripts never lose or over-count an item, and the caps
//! hold under concurrent writers.

use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::{shared_redis_url, spawn_app, spawn_app_with, unique_user};

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
    let app = spawn_app_with(&shared_redis_url(), |c| c.cart_max_quantity = 30).await;
    let user = unique_user();

    let responses = join_all((0..100).map(|_| app.add(&user, "p-1", 1))).await;

    let accepted = responses.iter().filter(|r| r.status() == 200).count();
    let rejected = responses.iter().filter(|r| r.status() == 422).count();
    assert_eq!((accepted, rejected), (30, 70));
    assert_eq!(app.cart(&user).await["total_quantity"], 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_new_lines_never_pass_the_item_cap() {
    let app = spawn_app_with(&shared_redis_url(), |c| c.cart_max_items = 10).await;
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
