//! Idempotency-Key on POST: replay, mismatch, concurrent duplicates, retries after a Redis
//! fault, scope and lifetime.

use std::time::Duration;

use cart_service::config::Config;
use futures_util::future::join_all;
use serde_json::json;

use cart_test_support::app::{TestApp, assert_problem, spawn_app, spawn_app_with};
use cart_test_support::poll::{eventually, never};
use cart_test_support::redis::{RedisServer, redis_client, shared_redis_url, unique_user};

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

/// The response's `Idempotent-Replayed` header.
fn replayed(response: &reqwest::Response) -> Option<&str> {
    response
        .headers()
        .get("idempotent-replayed")
        .map(|v| v.to_str().unwrap())
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
async fn a_claim_left_by_an_earlier_version_does_not_block_the_key() {
    let app = spawn_app().await;
    let user = unique_user();
    let mut redis = redis_client(&app.redis_url).await;
    // Arrange what a request of a version that claimed keys in a step of its own leaves
    // when it fails between its claim and its add: a pending claim with its token.
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

    let retry = add_with_key(&app, &user, "k-1", "p-1", 2).await;
    let again = add_with_key(&app, &user, "k-1", "p-1", 2).await;

    assert_eq!(retry.status(), 200);
    assert_eq!(replayed(&retry), None);
    assert_eq!(replayed(&again), Some("true"));
    assert_eq!(app.cart(&user).await["total_quantity"], 2);
    // Without its token, that version's own add finds the claim lost and changes nothing.
    let token: Option<String> = redis::cmd("HGET")
        .arg(&record)
        .arg("token")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(token, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_on_two_replicas_add_once_and_all_get_200() {
    let redis = RedisServer::start();
    let slow_redis_is_fine = |c: &mut Config| c.redis.response_timeout = Duration::from_secs(5);
    let replicas = [
        spawn_app_with(&redis.url(), slow_redis_is_fine).await,
        spawn_app_with(&redis.url(), slow_redis_is_fine).await,
    ];
    let user = unique_user();
    let mut admin = redis_client(&redis.url()).await;
    // Redis holds every client's commands for a moment, so the duplicates reach it together
    // instead of one after another, as when many clients retry at once.
    let _: () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "300"])
        .query_async(&mut admin)
        .await
        .unwrap();

    let responses =
        join_all((0..40).map(|i| add_with_key(&replicas[i % 2], &user, "k-1", "p-1", 3))).await;

    let mut originals = 0;
    for response in responses {
        assert_eq!(response.status(), 200, "every duplicate gets the result");
        if replayed(&response).is_none() {
            originals += 1;
        }
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["quantity"], 3, "{body}");
    }
    assert_eq!(originals, 1, "exactly one response is not a replay");
    assert_eq!(replicas[0].cart(&user).await["total_quantity"], 3);
}

/// The fault behind the issue: a request cut off by a Redis stall after its command was
/// sent, so the client cannot tell whether it ran. Its retries must not be turned away
/// once Redis is back, and the units must be added exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_add_cut_off_by_a_redis_stall_succeeds_on_retry_soon_after_recovery_and_adds_once()
{
    let redis = RedisServer::start();
    let app = spawn_app_with(&redis.url(), |c| {
        c.redis.response_timeout = Duration::from_millis(300);
    })
    .await;
    let user = unique_user();
    // Loads the script, so the stalled request's command is not refused with NOSCRIPT.
    let warm_up = add_with_key(&app, &user, "k-0", "p-0", 1).await;
    assert_eq!(warm_up.status(), 200, "works before the fault");

    // SIGSTOP: the commands wait unread in Redis's socket and run once it resumes. The
    // client keeps retrying through a 2 s stall: its first attempts time out, and the third
    // timeout retires the connection, so recovery includes a reconnect.
    redis.pause();
    never(
        Duration::from_secs(2),
        "a keyed add answers other than 503 while Redis is stalled",
        || async { add_with_key(&app, &user, "k-1", "p-1", 3).await.status() != 503 },
    )
    .await;
    redis.resume();
    let recovered = eventually(
        Duration::from_secs(2),
        "a retry with the same key answers 200 after Redis resumes (409: the key is still held)",
        || async { add_with_key(&app, &user, "k-1", "p-1", 3).await.status() == 200 },
    )
    .await;
    eprintln!(
        "first successful idempotent retry {:.3} s after Redis resumed",
        recovered.as_secs_f64()
    );

    let again = add_with_key(&app, &user, "k-1", "p-1", 3).await;
    assert_eq!(replayed(&again), Some("true"));
    assert_eq!(
        again.json::<serde_json::Value>().await.unwrap()["quantity"],
        3
    );
    assert_eq!(
        app.cart(&user).await["items"],
        json!([{"product_id": "p-0", "quantity": 1}, {"product_id": "p-1", "quantity": 3}]),
        "the stalled add and its retries added 3 units once"
    );
    assert!(
        recovered < Duration::from_secs(1),
        "the first successful retry came {recovered:?} after Redis resumed"
    );
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
