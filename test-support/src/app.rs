//! The service in-process: the real router and layers on a free port against a given
//! Redis, with a `reqwest` client aimed at it, and the assertion every error response must
//! pass. [`spawn_app`] is the usual start; the variants adjust the configuration, add
//! routes under the real layers, or skip waiting for Redis.

use std::time::Duration;

use cart_service::auth::Authenticator;
use cart_service::config::{Config, RedisMode};
use cart_service::routes;
use cart_service::startup::Application;
use cart_service::state::AppState;
use cart_service::store::{Limits, RedisConnection, Replication, Store};
use tokio::sync::oneshot;

use crate::poll::eventually;
use crate::redis::{is_cluster_url, shared_redis_url};

/// The service, running in-process on a free port.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The Redis the service uses.
    pub redis_url: String,
    /// A client for the service; tests build requests the helpers do not cover with it.
    pub client: reqwest::Client,
    /// The service's state, for what only the inside can tell (the Redis connections).
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    /// The service's URL for `path`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// POSTs `body` as JSON to `path`.
    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST reaches the service")
    }

    /// GETs `path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET reaches the service")
    }

    /// Adds `quantity` of `product` to `user`'s cart.
    pub async fn add(&self, user: &str, product: &str, quantity: i64) -> reqwest::Response {
        self.post_json(
            &format!("/v1/cart/{user}"),
            &serde_json::json!({"product_id": product, "quantity": quantity}),
        )
        .await
    }

    /// `user`'s cart, asserting the GET succeeds.
    pub async fn cart(&self, user: &str) -> serde_json::Value {
        let response = self.get(&format!("/v1/cart/{user}")).await;
        assert_eq!(response.status(), 200, "GET cart");
        response.json().await.expect("cart body is JSON")
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        eventually(
            Duration::from_secs(5),
            "the service becomes ready",
            || async { self.get("/readyz").await.status() == 200 },
        )
        .await;
    }

    /// Runs the shutdown sequence and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task ends cleanly");
        }
    }
}

/// Starts the service against the shared Redis with default settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&shared_redis_url(), |_| {}).await
}

/// Starts the service against `redis_url`, letting the test adjust the configuration, and
/// waits until it is ready.
pub async fn spawn_app_with(redis_url: &str, adjust: impl FnOnce(&mut Config)) -> TestApp {
    let app = spawn_app_unready(redis_url, adjust, |routes| routes).await;
    app.wait_ready().await;
    app
}

/// Starts the service without waiting for Redis, letting the test adjust the
/// configuration and add routes of its own under the real layers.
pub async fn spawn_app_unready(
    redis_url: &str,
    adjust: impl FnOnce(&mut Config),
    extra: impl FnOnce(axum::Router<AppState>) -> axum::Router<AppState>,
) -> TestApp {
    let mut config = Config::for_local(redis_url);
    // A list of URLs is a cluster's seed nodes (the shared cluster under CART_TEST_REDIS=cluster).
    if is_cluster_url(redis_url) {
        config.redis.mode = RedisMode::Cluster;
    }
    adjust(&mut config);
    config.validate().expect("test configuration is valid");
    let redis = RedisConnection::start(&config).expect("valid redis url");
    let store = Store::new(redis, Limits::from_config(&config))
        .with_replication(Replication::from_config(&config));
    let listener = tokio::net::TcpListener::bind(config.http.listen_addr)
        .await
        .expect("bind a free port");
    let auth = Authenticator::from_config(&config.auth).expect("test auth configuration is valid");
    let state = AppState::new(store, config, auth);
    let (routes, spec) = routes::api(&state).split_for_parts();
    let service = routes::with_layers(extra(routes), &spec, &state);
    let application = Application::with_router(listener, service, state.clone());
    let address = format!("http://{}", application.local_addr());
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        application
            .run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .close();
    });
    TestApp {
        address,
        redis_url: redis_url.to_owned(),
        client: reqwest::Client::new(),
        state,
        stop: Some(stop),
        task: Some(task),
    }
}

/// Asserts a response is an RFC 9457 problem with `status`; returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    assert_eq!(
        content_type.as_deref(),
        Some("application/problem+json"),
        "content type"
    );
    let body: serde_json::Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status, "problem status member: {body}");
    assert!(
        body["type"].is_string() && body["title"].is_string(),
        "type and title: {body}"
    );
    body
}
