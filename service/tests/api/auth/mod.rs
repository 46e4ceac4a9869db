//! `AUTH_MODE=jwt` against real tokens: keys generated here sign them, and the service
//! checks them with a PEM key file (this file) or a JWKS served over HTTP ([`jwks`]).
//! Without `AUTH_MODE` nothing changes.

mod jwks;

use std::io::Write as _;

use serde_json::{Value, json};

use cart_test_support::app::{TestApp, assert_problem, spawn_app, spawn_app_with};
use cart_test_support::jwt::{AUDIENCE, ISSUER, TestKey, claims, enable_jwt};
use cart_test_support::redis::{shared_redis_url, unique_user};

/// The service with `AUTH_MODE=jwt`, trusting `key` through a PEM file.
async fn spawn_with_key_file(
    key: &TestKey,
    adjust: impl FnOnce(&mut cart_service::Config),
) -> TestApp {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(key.public_pem().as_bytes()).unwrap();
    spawn_app_with(&shared_redis_url(), |config| {
        enable_jwt(config);
        config.auth.public_key_file = Some(file.path().to_owned());
        adjust(config);
    })
    .await
}

/// `GET /v1/cart/{user}`, with `token` as the bearer token when there is one.
async fn get_cart(app: &TestApp, user: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.url(&format!("/v1/cart/{user}")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// The `WWW-Authenticate` header of `response`.
fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Asserts `response` is a 401 `invalid_token` problem whose description says `why`.
async fn assert_invalid_token(response: reqwest::Response, why: &str) {
    let challenge = challenge(&response);
    assert!(
        challenge.starts_with(r#"Bearer realm="cart-service", error="invalid_token""#),
        "{challenge}"
    );
    assert!(challenge.contains(why), "{challenge} does not say {why}");
    let body = assert_problem(response, 401).await;
    assert!(body["detail"].as_str().unwrap().contains(why), "{body}");
}

#[tokio::test]
async fn without_auth_mode_the_cart_routes_need_no_token() {
    let app = spawn_app().await;
    let user = unique_user();

    let response = get_cart(&app, &user, None).await;

    assert_eq!(response.status(), 200);
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(
        doc.pointer("/components/securitySchemes").is_none(),
        "{doc}"
    );
}

#[tokio::test]
async fn a_request_without_a_token_is_401_with_a_bearer_challenge() {
    let key = TestKey::ec("k1");
    let app = spawn_with_key_file(&key, |_| {}).await;
    let user = unique_user();

    let none = get_cart(&app, &user, None).await;
    let basic = app
        .client
        .get(app.url(&format!("/v1/cart/{user}")))
        .basic_auth("user", Some("password"))
        .send()
        .await
        .unwrap();

    for response in [none, basic] {
        assert_eq!(challenge(&response), r#"Bearer realm="cart-service""#);
        assert_problem(response, 401).await;
    }
}

#[tokio::test]
async fn a_valid_token_opens_every_cart_route_of_its_user() {
    let key = TestKey::ec("k1");
    let app = spawn_with_key_file(&key, |_| {}).await;
    let user = unique_user();
    let token = key.sign(&claims(&user));
    let cart = app.url(&format!("/v1/cart/{user}"));
    let line = app.url(&format!("/v1/cart/{user}/items/p-1"));

    let add = app
        .client
        .post(&cart)
        .bearer_auth(&token)
        .json(&json!({"product_id": "p-1", "quantity": 2}));
    let set = app
        .client
        .put(&line)
        .bearer_auth(&token)
        .json(&json!({"quantity": 5}));
    let statuses = [
        add.send().await.unwrap().status().as_u16(),
        set.send().await.unwrap().status().as_u16(),
        get_cart(&app, &user, Some(&token)).await.status().as_u16(),
        app.client
            .delete(&line)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        app.client
            .delete(&cart)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
    ];

    assert_eq!(statuses, [200, 200, 200, 204, 204]);
}

#[tokio::test]
async fn rs256_es256_and_eddsa_keys_are_accepted_from_pem_files() {
    for key in [TestKey::rsa("rsa"), TestKey::ec("ec"), TestKey::ed("ed")] {
        let app = spawn_with_key_file(&key, |_| {}).await;
        let user = unique_user();

        let response = get_cart(&app, &user, Some(&key.sign(&claims(&user)))).await;

        assert_eq!(response.status(), 200, "{key:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_token_signed_by_another_key_or_altered_is_401() {
    let key = TestKey::ed("trusted");
    let app = spawn_with_key_file(&key, |_| {}).await;
    let user = unique_user();
    let forged = TestKey::ed("trusted").sign(&claims(&user));
    // Another user's claims under this user's signature.
    let mine: Vec<String> = key
        .sign(&claims(&user))
        .split('.')
        .map(str::to_owned)
        .collect();
    let theirs: Vec<String> = key
        .sign(&claims("someone-else"))
        .split('.')
        .map(str::to_owned)
        .collect();
    let altered = [mine[0].as_str(), theirs[1].as_str(), mine[2].as_str()].join(".");

    for token in [forged, altered] {
        let response = get_cart(&app, &user, Some(&token)).await;
        assert_invalid_token(response, "signature does not verify").await;
    }
    let garbage = get_cart(&app, &user, Some("not-a-jwt")).await;
    assert_invalid_token(garbage, "not a JWT").await;
}

#[tokio::test]
async fn a_token_whose_alg_is_not_its_keys_is_401() {
    // The classic confusion: HS256 with the public key as the shared secret.
    let key = TestKey::rsa("k1");
    let app = spawn_with_key_file(&key, |_| {}).await;
    let user = unique_user();
    let secret = jsonwebtoken::EncodingKey::from_secret(key.public_pem().as_bytes()).unwrap();
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims(&user),
        &secret,
    )
    .unwrap();

    let response = get_cart(&app, &user, Some(&hs256)).await;

    assert_invalid_token(response, "alg").await;
}

#[tokio::test]
async fn an_expired_or_not_yet_valid_token_is_401_beyond_the_leeway() {
    let key = TestKey::ec("k1");
    let app = spawn_with_key_file(&key, |config| {
        config.auth.leeway = std::time::Duration::from_secs(30);
    })
    .await;
    let user = unique_user();
    let now = jsonwebtoken::get_current_timestamp();
    let with = |changes: Value| {
        let mut claims = claims(&user);
        claims
            .as_object_mut()
            .unwrap()
            .extend(changes.as_object().unwrap().clone());
        key.sign(&claims)
    };

    let expired = get_cart(&app, &user, Some(&with(json!({"exp": now - 120})))).await;
    let early = get_cart(&app, &user, Some(&with(json!({"nbf": now + 120})))).await;
    let just_expired = get_cart(&app, &user, Some(&with(json!({"exp": now - 5})))).await;
    let almost_valid = get_cart(&app, &user, Some(&with(json!({"nbf": now + 5})))).await;

    assert_invalid_token(expired, "expired").await;
    assert_invalid_token(early, "not valid yet").await;
    assert_eq!(just_expired.status(), 200, "within the leeway");
    assert_eq!(almost_valid.status(), 200, "within the leeway");
}

#[tokio::test]
async fn a_token_of_another_issuer_or_audience_or_without_them_is_401() {
    let key = TestKey::rsa("k1");
    let app = spawn_with_key_file(&key, |_| {}).await;
    let user = unique_user();
    let with = |field: &str, value: Value| {
        let mut claims = claims(&user);
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(field);
        } else {
            claims[field] = value;
        }
        key.sign(&claims)
    };

    let cases = [
        (with("iss", json!("https://elsewhere.test/")), "issuer"),
        (with("aud", json!("another-service")), "audience"),
        (
            with("aud", json!(["another-service", "a-third"])),
            "audience",
        ),
        (with("iss", Value::Null), "no iss claim"),
        (with("aud", Value::Null), "no aud claim"),
        (with("exp", Value::Null), "no exp claim"),
    ];

    for (token, why) in cases {
        assert_invalid_token(get_cart(&app, &user, Some(&token)).await, why).await;
    }
    let among_others = with("aud", json!(["another-service", AUDIENCE]));
    assert_eq!(
        get_cart(&app, &user, Some(&among_others)).await.status(),
        200
    );
    assert_eq!(claims(&user)["iss"], ISSUER);
}

#[tokio::test]
async fn a_token_of_another_user_is_403_and_changes_nothing() {
    let key = TestKey::ec("k1");
    let app = spawn_with_key_file(&key, |_| {}).await;
    let (owner, intruder) = (unique_user(), unique_user());
    let intruders_token = key.sign(&claims(&intruder));

    let add = app
        .client
        .post(app.url(&format!("/v1/cart/{owner}")))
        .bearer_auth(&intruders_token)
        .json(&json!({"product_id": "p-1", "quantity": 1}))
        .send()
        .await
        .unwrap();

    let challenge = challenge(&add);
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    let body = assert_problem(add, 403).await;
    assert!(body["detail"].as_str().unwrap().contains("sub"), "{body}");
    let owners = get_cart(&app, &owner, Some(&key.sign(&claims(&owner)))).await;
    assert_eq!(owners.json::<Value>().await.unwrap()["items"], json!([]));
}

#[tokio::test]
async fn the_user_claim_can_be_another_claim_than_sub() {
    let key = TestKey::ec("k1");
    let app = spawn_with_key_file(&key, |config| {
        config.auth.user_claim = "customer_id".to_owned();
    })
    .await;
    let user = unique_user();
    let mut by_customer_id = claims("someone-else");
    by_customer_id["customer_id"] = json!(user);

    let accepted = get_cart(&app, &user, Some(&key.sign(&by_customer_id))).await;
    let by_sub_only = get_cart(&app, &user, Some(&key.sign(&claims(&user)))).await;

    assert_eq!(accepted.status(), 200);
    let body = assert_problem(by_sub_only, 403).await;
    assert!(
        body["detail"].as_str().unwrap().contains("customer_id"),
        "{body}"
    );
}

#[tokio::test]
async fn probes_metrics_and_the_openapi_document_stay_open_with_auth_on() {
    let key = TestKey::ec("k1");
    let app = spawn_with_key_file(&key, |_| {}).await;

    for path in ["/livez", "/readyz", "/healthz", "/metrics", "/openapi.json"] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(
        doc.pointer("/components/securitySchemes/bearer"),
        Some(
            &json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": doc.pointer("/components/securitySchemes/bearer/description").unwrap()})
        )
    );
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let secured = operation.get("security") == Some(&json!([{"bearer": []}]));
            assert_eq!(secured, path.starts_with("/v1/cart/"), "{method} {path}");
            // `/stress` has a 401 of its own, for STRESS_TOKEN, not the JWT's.
            assert_eq!(
                operation["responses"].get("401").is_some(),
                secured || path == "/stress",
                "{method} {path}"
            );
            assert_eq!(
                operation["responses"].get("403").is_some(),
                secured,
                "{method} {path}"
            );
        }
    }
}
