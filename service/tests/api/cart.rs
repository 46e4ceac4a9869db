//! The cart routes against a real Redis: totals, ordering, TTL, caps and validation.

use std::time::Duration;

use serde_json::json;

use cart_test_support::app::{assert_problem, spawn_app, spawn_app_with};
use cart_test_support::redis::{redis_client, shared_redis_url, unique_user};

#[tokio::test]
async fn add_item_returns_the_line_total() {
    let app = spawn_app().await;
    let user = unique_user();

    let first = app.add(&user, "p-1", 2).await;
    let second = app.add(&user, "p-1", 3).await;

    assert_eq!(first.status(), 200);
    assert_eq!(
        first.json::<serde_json::Value>().await.unwrap(),
        json!({"user_id": user, "product_id": "p-1", "quantity": 2})
    );
    assert_eq!(
        second.json::<serde_json::Value>().await.unwrap()["quantity"],
        5
    );
}

#[tokio::test]
async fn get_cart_lists_items_sorted_with_their_total() {
    let app = spawn_app().await;
    let user = unique_user();
    for (product, quantity) in [("p-3", 1), ("p-1", 2), ("p-2", 4)] {
        assert_eq!(app.add(&user, product, quantity).await.status(), 200);
    }

    let cart = app.cart(&user).await;

    assert_eq!(
        cart,
        json!({"user_id": user, "total_quantity": 7, "items": [
            {"product_id": "p-1", "quantity": 2},
            {"product_id": "p-2", "quantity": 4},
            {"product_id": "p-3", "quantity": 1},
        ]})
    );
}

#[tokio::test]
async fn unknown_cart_is_empty() {
    let app = spawn_app().await;
    let user = unique_user();

    let cart = app.cart(&user).await;

    assert_eq!(
        cart,
        json!({"user_id": user, "items": [], "total_quantity": 0})
    );
}

#[tokio::test]
async fn clear_cart_removes_everything_and_is_idempotent() {
    let app = spawn_app().await;
    let user = unique_user();
    app.add(&user, "p-1", 2).await;

    let first = app
        .client
        .delete(app.url(&format!("/v1/cart/{user}")))
        .send()
        .await
        .unwrap();
    let second = app
        .client
        .delete(app.url(&format!("/v1/cart/{user}")))
        .send()
        .await
        .unwrap();

    assert_eq!(first.status(), 204);
    assert_eq!(second.status(), 204);
    assert_eq!(app.cart(&user).await["items"], json!([]));
}

#[tokio::test]
async fn put_item_sets_the_quantity_and_zero_removes_the_line() {
    let app = spawn_app().await;
    let user = unique_user();
    app.add(&user, "p-1", 2).await;
    app.add(&user, "p-2", 1).await;
    let item = |product: &str| app.url(&format!("/v1/cart/{user}/items/{product}"));

    let set = app
        .client
        .put(item("p-1"))
        .json(&json!({"quantity": 7}))
        .send()
        .await
        .unwrap();
    let new_line = app
        .client
        .put(item("p-9"))
        .json(&json!({"quantity": 3}))
        .send()
        .await
        .unwrap();
    let removed = app
        .client
        .put(item("p-2"))
        .json(&json!({"quantity": 0}))
        .send()
        .await
        .unwrap();

    assert_eq!(set.status(), 200);
    assert_eq!(
        set.json::<serde_json::Value>().await.unwrap(),
        json!({"user_id": user, "product_id": "p-1", "quantity": 7})
    );
    assert_eq!(new_line.status(), 200);
    assert_eq!(removed.status(), 200);
    assert_eq!(
        removed.json::<serde_json::Value>().await.unwrap()["quantity"],
        0
    );
    assert_eq!(
        app.cart(&user).await["items"],
        json!([{"product_id": "p-1", "quantity": 7}, {"product_id": "p-9", "quantity": 3}])
    );
}

#[tokio::test]
async fn delete_item_removes_one_line_and_is_idempotent() {
    let app = spawn_app().await;
    let user = unique_user();
    app.add(&user, "p-1", 2).await;
    app.add(&user, "p-2", 1).await;
    let item = app.url(&format!("/v1/cart/{user}/items/p-1"));

    let first = app.client.delete(&item).send().await.unwrap();
    let second = app.client.delete(&item).send().await.unwrap();

    assert_eq!(first.status(), 204);
    assert_eq!(second.status(), 204);
    assert_eq!(
        app.cart(&user).await["items"],
        json!([{"product_id": "p-2", "quantity": 1}])
    );
}

#[tokio::test]
async fn add_over_the_line_cap_is_rejected_and_changes_nothing() {
    let app = spawn_app().await;
    let user = unique_user();
    app.add(&user, "p-1", 990).await;

    let over = app.add(&user, "p-1", 10).await;

    let problem = assert_problem(over, 422).await;
    assert_eq!(problem["errors"][0]["field"], "quantity");
    assert_eq!(
        app.cart(&user).await["items"],
        json!([{"product_id": "p-1", "quantity": 990}])
    );
    assert_eq!(
        app.add(&user, "p-1", 9).await.status(),
        200,
        "up to the cap is fine"
    );
}

#[tokio::test]
async fn add_over_the_item_cap_is_rejected_and_changes_nothing() {
    let app = spawn_app_with(&shared_redis_url(), |c| c.cart.max_items = 2).await;
    let user = unique_user();
    app.add(&user, "p-1", 1).await;
    app.add(&user, "p-2", 1).await;

    let third = app.add(&user, "p-3", 1).await;
    let put_third = app
        .client
        .put(app.url(&format!("/v1/cart/{user}/items/p-3")))
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    let existing = app.add(&user, "p-1", 1).await;

    assert_eq!(
        assert_problem(third, 422).await["errors"][0]["field"],
        "product_id"
    );
    assert_problem(put_third, 422).await;
    assert_eq!(existing.status(), 200, "existing lines can still grow");
    assert_eq!(app.cart(&user).await["total_quantity"], 3);
}

#[tokio::test]
async fn invalid_ids_and_quantities_are_422_with_the_field_named() {
    let app = spawn_app().await;
    let long = "x".repeat(65);
    let cases = [
        (
            format!("/v1/cart/{long}"),
            json!({"product_id": "p-1", "quantity": 1}),
            "user_id",
        ),
        (
            "/v1/cart/bad%20id".to_owned(),
            json!({"product_id": "p-1", "quantity": 1}),
            "user_id",
        ),
        (
            "/v1/cart/u-1".to_owned(),
            json!({"product_id": "p/1", "quantity": 1}),
            "product_id",
        ),
        (
            "/v1/cart/u-1".to_owned(),
            json!({"product_id": "", "quantity": 1}),
            "product_id",
        ),
        (
            "/v1/cart/u-1".to_owned(),
            json!({"product_id": "p-1", "quantity": 0}),
            "quantity",
        ),
        (
            "/v1/cart/u-1".to_owned(),
            json!({"product_id": "p-1", "quantity": -3}),
            "quantity",
        ),
        (
            "/v1/cart/u-1".to_owned(),
            json!({"product_id": "p-1", "quantity": 1000}),
            "quantity",
        ),
    ];

    for (path, body, field) in cases {
        let response = app.post_json(&path, &body).await;
        let problem = assert_problem(response, 422).await;
        assert_eq!(problem["errors"][0]["field"], field, "{path} {body}");
    }
    let bad_get = app.get(&format!("/v1/cart/{long}")).await;
    assert_problem(bad_get, 422).await;
}

#[tokio::test]
async fn every_write_sets_and_refreshes_the_ttl() {
    let app = spawn_app_with(&shared_redis_url(), |c| {
        c.cart.ttl = Duration::from_secs(1000);
    })
    .await;
    let mut redis = redis_client(&app.redis_url).await;
    let user = unique_user();
    let key = format!("cart:{{{user}}}");

    app.add(&user, "p-1", 1).await;
    let after_add: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    for write in ["add", "put", "delete-item"] {
        let _: () = redis::cmd("EXPIRE")
            .arg(&key)
            .arg(5)
            .query_async(&mut redis)
            .await
            .unwrap();
        match write {
            "add" => assert_eq!(app.add(&user, "p-2", 1).await.status(), 200),
            "put" => {
                let put = app
                    .client
                    .put(app.url(&format!("/v1/cart/{user}/items/p-2")))
                    .json(&json!({"quantity": 4}));
                assert_eq!(put.send().await.unwrap().status(), 200);
            }
            _ => {
                let delete = app
                    .client
                    .delete(app.url(&format!("/v1/cart/{user}/items/p-2")));
                assert_eq!(delete.send().await.unwrap().status(), 204);
            }
        }
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(ttl > 990, "{write} refreshed the ttl to {ttl}");
    }

    assert!(
        (990..=1000).contains(&after_add),
        "ttl after the first add: {after_add}"
    );
}

#[tokio::test]
async fn a_zero_ttl_means_carts_never_expire() {
    let app = spawn_app_with(&shared_redis_url(), |c| c.cart.ttl = Duration::ZERO).await;
    let mut redis = redis_client(&app.redis_url).await;
    let user = unique_user();

    app.add(&user, "p-1", 1).await;

    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("cart:{{{user}}}"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(ttl, -1);
}

#[tokio::test]
async fn a_quantity_that_is_not_a_number_is_a_500_and_the_connection_stays() {
    let app = spawn_app().await;
    let mut redis = redis_client(&app.redis_url).await;
    let user = unique_user();
    let _: () = redis::cmd("HSET")
        .arg(format!("cart:{{{user}}}"))
        .arg("p-1")
        .arg("many")
        .query_async(&mut redis)
        .await
        .unwrap();

    assert_problem(app.get(&format!("/v1/cart/{user}")).await, 500).await;
    let other = unique_user();
    app.add(&other, "p-1", 1).await;
    assert_eq!(app.cart(&other).await["items"][0]["quantity"], 1);
}
