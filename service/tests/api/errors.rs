//! Every error is application/problem+json, including axum's own rejections, the body
//! limits and timeouts, and panics.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use axum::routing::get;
use serde_json::json;

use cart_test_support::app::{
    TestApp, assert_problem, spawn_app, spawn_app_unready, spawn_app_with,
};
use cart_test_support::redis::{shared_redis_url, unique_user};

/// Sends raw bytes on a fresh connection and returns what the server answers before
/// closing or going quiet for `wait`.
fn raw_exchange(address: &str, request: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(address.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buffer) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..n]);
        if String::from_utf8_lossy(&answer).contains('}') {
            break;
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// POSTs `body` as it is, declared as JSON.
async fn post_json_text(app: &TestApp, url: &str, body: &'static str) -> reqwest::Response {
    app.client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn malformed_json_missing_fields_and_wrong_types_are_400() {
    let app = spawn_app().await;
    let path = app.url(&format!("/v1/cart/{}", unique_user()));
    let bodies = [
        r#"{"product_id": "p-1""#,
        r#"{"product_id": "p-1"}"#,
        r#"{"product_id": "p-1", "quantity": "2"}"#,
        "[]",
    ];

    for body in bodies {
        let response = post_json_text(&app, &path, body).await;
        let problem = assert_problem(response, 400).await;
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| !d.contains("Error {")),
            "{problem}"
        );
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = spawn_app().await;
    let path = app.url(&format!("/v1/cart/{}", unique_user()));

    let plain = app
        .client
        .post(&path)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    let missing = app
        .client
        .post(&path)
        .body(r#"{"product_id":"p-1","quantity":1}"#)
        .send()
        .await
        .unwrap();

    assert_problem(plain, 415).await;
    assert_problem(missing, 415).await;
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_are_405_with_allow() {
    let app = spawn_app().await;

    let unknown = app.get("/v2/nothing").await;
    let wrong_method = app
        .client
        .patch(app.url("/v1/cart/u-1"))
        .send()
        .await
        .unwrap();

    assert_problem(unknown, 404).await;
    let allow = wrong_method
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        allow.contains("GET") && allow.contains("POST") && allow.contains("DELETE"),
        "allow: {allow}"
    );
    assert_problem(wrong_method, 405).await;
}

#[tokio::test]
async fn a_declared_large_body_is_413_before_it_is_sent() {
    let app = spawn_app().await;
    let request = format!(
        "POST /v1/cart/{} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n{{",
        unique_user()
    );
    let address = app.address.clone();

    let started = Instant::now();
    let answer = tokio::task::spawn_blocking(move || {
        raw_exchange(&address, request.as_bytes(), Duration::from_secs(3))
    })
    .await
    .unwrap();

    assert!(answer.starts_with("HTTP/1.1 413"), "answer: {answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "answer: {answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the 413 came without waiting for the body"
    );
}

#[tokio::test]
async fn a_chunked_body_over_16_kib_is_413() {
    let app = spawn_app().await;
    let chunk = "a".repeat(20_000);
    let request = format!(
        "POST /v1/cart/{} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        unique_user(),
        chunk.len()
    );
    let address = app.address.clone();

    let answer = tokio::task::spawn_blocking(move || {
        raw_exchange(&address, request.as_bytes(), Duration::from_secs(3))
    })
    .await
    .unwrap();

    assert!(answer.starts_with("HTTP/1.1 413"), "answer: {answer}");
}

#[tokio::test]
async fn a_body_that_stalls_is_408() {
    let app = spawn_app_with(&shared_redis_url(), |c| {
        c.http.body_timeout = Duration::from_millis(200);
    })
    .await;
    let request = format!(
        "POST /v1/cart/{} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{{\"pro",
        unique_user()
    );
    let address = app.address.clone();

    let answer = tokio::task::spawn_blocking(move || {
        raw_exchange(&address, request.as_bytes(), Duration::from_secs(3))
    })
    .await
    .unwrap();

    assert!(answer.starts_with("HTTP/1.1 408"), "answer: {answer}");
    assert!(
        answer.contains("application/problem+json"),
        "answer: {answer}"
    );
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let app = spawn_app_with(&shared_redis_url(), |c| {
        c.http.header_read_timeout = Duration::from_millis(200);
    })
    .await;
    let address = app.address.clone();

    let started = Instant::now();
    let answer = tokio::task::spawn_blocking(move || {
        raw_exchange(
            &address,
            b"GET /livez HTTP/1.1\r\nHost: x\r\n",
            Duration::from_secs(5),
        )
    })
    .await
    .unwrap();

    assert!(!answer.contains("200 OK"), "answer: {answer}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the connection was closed after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_request_past_its_deadline_is_503_with_retry_after() {
    let app = spawn_app_with(&shared_redis_url(), |c| {
        c.http.request_timeout = Duration::from_millis(100);
    })
    .await;

    let response = app
        .client
        .post(app.url("/stress?cpu_iterations=2000"))
        .send()
        .await
        .unwrap();

    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned()),
        Some("1".into())
    );
    assert_problem(response, 503).await;
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_problem_and_the_service_keeps_serving() {
    let app = spawn_app_unready(
        &shared_redis_url(),
        |_| {},
        |routes| routes.route("/panic", get(panics)),
    )
    .await;
    app.wait_ready().await;
    let user = unique_user();

    let panicked = app.get("/panic").await;
    let next = app.add(&user, "p-1", 1).await;

    let problem = assert_problem(panicked, 500).await;
    assert!(
        !problem.to_string().contains("secret"),
        "the panic message leaked: {problem}"
    );
    assert_eq!(next.status(), 200);
    assert_eq!(
        app.cart(&user).await["items"],
        json!([{"product_id": "p-1", "quantity": 1}])
    );
}

async fn panics() -> &'static str {
    panic!("deliberate test panic with a secret")
}

/// A body error says which field is wrong and what it must be, in words a client can act
/// on: never serde's or Rust's ("invalid type: floating point", "expected i64", a struct
/// name). A whole number out of range, however large, is the 422 that names the bounds.
#[tokio::test]
async fn body_errors_name_the_field_and_what_is_allowed_in_plain_words() {
    let app = spawn_app().await;
    let path = app.url(&format!("/v1/cart/{}", unique_user()));
    let cases = [
        (
            r#"{"product_id":"p-1","quantity":1.5}"#,
            400,
            "quantity: must be a whole number",
        ),
        (
            r#"{"product_id":"p-1","quantity":"2"}"#,
            400,
            "quantity: must be a whole number",
        ),
        (
            r#"{"product_id":1,"quantity":1}"#,
            400,
            "product_id: must be a string of 1 to 64 bytes",
        ),
        (r#"{"product_id":"p-1"}"#, 400, "quantity: is required"),
        ("[1]", 400, "the body must be a JSON object"),
        ("3", 400, "the body must be a JSON object"),
        (
            r#"{"product_id": "p-1""#,
            400,
            "the body ends before its JSON is complete",
        ),
        (
            r#"{"product_id" "p-1"}"#,
            400,
            "the body is not valid JSON (line 1, column",
        ),
        (
            r#"{"product_id":"p-1","quantity":1e20}"#,
            422,
            "quantity: must be between 1 and",
        ),
        (
            r#"{"product_id":"p-1","quantity":99999999999999999999}"#,
            422,
            "quantity: must be between 1 and",
        ),
        (
            r#"{"product_id":"p-1","quantity":-1e300}"#,
            422,
            "quantity: must be between 1 and",
        ),
    ];

    for (body, status, expected) in cases {
        let response = post_json_text(&app, &path, body).await;
        let problem = assert_problem(response, status).await;
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.starts_with(expected), "{body}: {problem}");
        for rust in ["invalid type", "expected", "i64", "u32", "Request", "`"] {
            assert!(!detail.contains(rust), "{body}: {rust:?} in {detail:?}");
        }
    }
}

#[tokio::test]
async fn a_whole_number_written_as_a_float_is_a_quantity() {
    let app = spawn_app().await;
    let user = unique_user();

    let response = app
        .client
        .put(app.url(&format!("/v1/cart/{user}/items/p-1")))
        .header("content-type", "application/json")
        .body(r#"{"quantity":2.0}"#)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(app.cart(&user).await["items"][0]["quantity"], 2);
}
