//! Idempotency-Key on POST: replay, mismatch, in-flight duplicates, scope and lifetime.

use futures_util::future::join_all;
use serde_json::json;

use cart_test_support::app::{TestApp, assert_problem, spawn_app, spawn_app_with};
use cart_test_support::redis::{redis_client, shared_redis_url, unique_user};

async fn add_with_key(
    app: &TestApp,
    user: &str,
    key: &str,
    product: &str,
    quantity: i64,
) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/cart/{user}")))
        .header("Idempotency-Key", key)
        .json(&json!({"product_id": product, "quantity": quantity}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retry_with_the_same_key_and_body_replays_and_adds_nothing() {
    let app = spawn_app().await;
    let user = unique_user();

    let first = add_with_key(&app, &user, "k-1", "p-1", 2).await;
    let retry = add_with_key(&app, &user, "k-1", "p-1", 2).await;

    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    assert_eq!(retry.status(), 200);
    assert_eq!(
        retry
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    let first_body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(retry.json::<serde_json::Value>().await.unwrap(), first_body);
    assert_eq!(app.cart(&user).await["total_quantity"], 2);
}

#[tokio::test]
async fn the_replay_returns_the_original_total_even_after_later_writes() {
    let app = spawn_app().await;
    let user = unique_user();
    add_with_key(&app, &user, "k-1", "p-1", 2).await;
    app.add(&user, "p-1", 5).await;

    let retry = add_with_key(&app, &user, "k-1", "p-1", 2).await;

    assert_eq!(
        retry.json::<serde_json::Value>().await.unwrap()["quantity"],
        2
    );
    assert_eq!(app.cart(&user).await["total_quantity"], 7);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422_and_changes_nothing() {
    let app = spawn_app().await;
    let user = unique_user();
    add_with_key(&app, &user, "k-1", "p-1", 2).await;

    let other_quantity = add_with_key(&app, &user, "k-1", "p-1", 3).await;
    let other_product = add_with_key(&app, &user, "k-1", "p-2", 2).await;

    let problem = assert_problem(other_quantity, 422).await;
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    assert_problem(other_product, 422).await;
    assert_eq!(
        app.cart(&user).await["items"],
        json!([{"product_id": "p-1", "quantity": 2}])
    );
}

#[tokio::test]
async fn a_duplicate_while_the_first_is_still_running_is_409() {
    let app = spawn_app().await;
    let user = unique_user();
    let mut redis = redis_client(&app.redis_url).await;
    // Arrange the state a first request leaves while it runs: its claim on the key.
    let record = format!("idem:{{{user}}}:k-1");
    let _: () = redis::cmd("HSET")
        .arg(&record)
        .arg(&["fp", "p-1\n2", "state", "pending", "token", "someone-else"])
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis::cmd("EXPIRE")
        .arg(&record)
        .arg(30)
        .query_async(&mut redis)
        .await
        .unwrap();

    let duplicate = add_with_key(&app, &user, "k-1", "p-1", 2).await;

    assert_problem(duplicate, 409).await;
    assert_eq!(app.cart(&user).await["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_add_exactly_once() {
    let app = spawn_app().await;
    let user = unique_user();

    let responses = join_all((0..20).map(|_| add_with_key(&app, &user, "k-1", "p-1", 3))).await;

    for response in responses {
        let status = response.status().as_u16();
        assert!(status == 200 || status == 409, "status {status}");
    }
    assert_eq!(app.cart(&user).await["total_quantity"], 3);
}

#[tokio::test]
async fn keys_are_scoped_to_the_user() {
    let app = spawn_app().await;
    let (alice, bob) = (unique_user(), unique_user());

    add_with_key(&app, &alice, "shared", "p-1", 1).await;
    let bob_first = add_with_key(&app, &bob, "shared", "p-1", 1).await;

    assert!(bob_first.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.cart(&bob).await["total_quantity"], 1);
}

#[tokio::test]
async fn records_live_24_hours() {
    let app = spawn_app().await;
    let user = unique_user();
    let mut redis = redis_client(&app.redis_url).await;

    add_with_key(&app, &user, "k-1", "p-1", 1).await;

    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("idem:{{{user}}}:k-1"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!((86_390..=86_400).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn a_rejected_add_is_not_remembered_so_a_later_retry_runs() {
    let app = spawn_app_with(&shared_redis_url(), |c| c.cart.max_items = 1).await;
    let user = unique_user();
    app.add(&user, "p-1", 1).await;

    let rejected = add_with_key(&app, &user, "k-1", "p-2", 1).await;
    app.client
        .delete(app.url(&format!("/v1/cart/{user}/items/p-1")))
        .send()
        .await
        .unwrap();
    let retried = add_with_key(&app, &user, "k-1", "p-2", 1).await;

    assert_problem(rejected, 422).await;
    assert_eq!(retried.status(), 200);
    assert!(retried.headers().get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn malformed_keys_are_422() {
    let app = spawn_app().await;
    let user = unique_user();
    let too_long = "k".repeat(256);

    for key in ["", "has space", too_long.as_str()] {
        let response = add_with_key(&app, &user, key, "p-1", 1).await;
        let problem = assert_problem(response, 422).await;
        assert_eq!(
            problem["errors"][0]["field"], "Idempotency-Key",
            "key {key:?}"
        );
    }
    assert_eq!(app.cart(&user).await["items"], json!([]));
}
