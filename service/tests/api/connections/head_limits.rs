//! A request head over the service's limits (URI length, header fields) is answered with
//! a 414 or 431 problem+json, over HTTP/1.1 and HTTP/2, instead of hyper's empty answer.

use std::fmt::Write as _;

use cart_service::server::limits::{MAX_HEADER_FIELDS, MAX_URI_BYTES};
use cart_test_support::app::spawn_app;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;

use super::raw::{RawResponse, connect, exchange};

/// Asserts `response` is a problem+json with `status`; returns its body.
fn assert_raw_problem(response: Option<RawResponse>, status: u16) -> serde_json::Value {
    let response = response.expect("an answer before the connection closed");
    assert_eq!(response.status, status, "{}", response.head);
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json"),
        "{}",
        response.head
    );
    let body: serde_json::Value = serde_json::from_str(&response.body).expect("a JSON body");
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

#[tokio::test]
async fn a_10_kib_uri_is_414_problem_json() {
    let app = spawn_app().await;
    let mut stream = connect(&app).await;
    let path = format!("/v1/cart/{}", "a".repeat(10 * 1024));

    let answer = exchange(
        &mut stream,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await;

    let problem = assert_raw_problem(answer, 414);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(&MAX_URI_BYTES.to_string()),
        "{problem}"
    );
}

#[tokio::test]
async fn two_hundred_header_fields_are_431_problem_json() {
    let app = spawn_app().await;
    let mut stream = connect(&app).await;
    let fields = (0..200).fold(String::new(), |mut fields, i| {
        let _ = write!(fields, "x-field-{i}: v\r\n");
        fields
    });

    let answer = exchange(
        &mut stream,
        format!("GET /livez HTTP/1.1\r\nHost: x\r\n{fields}\r\n").as_bytes(),
    )
    .await;

    let problem = assert_raw_problem(answer, 431);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(&MAX_HEADER_FIELDS.to_string()),
        "{problem}"
    );
}

#[tokio::test]
async fn a_64_kib_header_field_is_431_problem_json() {
    let app = spawn_app().await;
    let mut stream = connect(&app).await;
    let value = "v".repeat(64 * 1024);

    let answer = exchange(
        &mut stream,
        format!("GET /livez HTTP/1.1\r\nHost: x\r\nx-big: {value}\r\n\r\n").as_bytes(),
    )
    .await;

    assert_raw_problem(answer, 431);
}

#[tokio::test]
async fn over_http2_too_many_or_too_large_header_fields_are_431_problem_json() {
    let app = spawn_app().await;
    let (mut sender, _connection) = super::raw::h2c(&app).await;
    let many = (0..200).fold(hyper::Request::get(app.url("/livez")), |request, i| {
        request.header(format!("x-field-{i}"), "v")
    });
    let large = hyper::Request::get(app.url("/livez")).header("x-big", "v".repeat(64 * 1024));

    for request in [many, large] {
        let response = sender
            .send_request(request.body(Empty::<Bytes>::new()).unwrap())
            .await
            .expect("an HTTP/2 answer");
        let content_type = response.headers().get("content-type").cloned();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();

        assert_eq!(status, 431, "{body:?}");
        assert_eq!(content_type.unwrap(), "application/problem+json");
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["status"], 431, "{problem}");
    }
}
